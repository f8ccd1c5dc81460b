"""What the network tools inside a bare pod's containers answer (k8s/podrun.py's relay).

A container's `nslookup`, `wget` and `ping` are stand-ins (`/usr/lib/lab/container/net`) that
hand their argv to the node's pod runner; this module answers from the cluster state like the
kubectl stand-in's busybox_nslookup / busybox_wget (k8s/workloads.py `resolve` / `reach`), except
that a wget to a bare pod's IP, or to a Service whose ready endpoint is a bare pod, really
connects: the stand-in runs busybox wget against the pod's loopback address 127.244.X.Y
(lab/k8s/STATE.md "Bare pods: the node runner"). Nothing ever connects outside 127.0.0.0/8.
"""

from __future__ import annotations

import json
import time

from k8s import state, workloads

BUSYBOX_USAGE = "BusyBox v1.36.1 (2023-05-18 22:34:17 UTC) multi-call binary.\n"


def loopback(ip: str) -> str:
    """The loopback address serving pod IP 10.244.X.Y: 127.244.X.Y (same last three octets)."""
    return "127." + ip.split(".", 1)[1] if ip.count(".") == 3 else ""


def bare_pods(data: dict) -> list[dict]:
    """Bound bare Pods: [{ns, name, uid, node, ip, labels, obj, status}] (status: the runner's
    file for that uid, {} before it wrote one)."""
    out = []
    for k, obj in (data.get("objects") or {}).items():
        if obj.get("kind") != "Pod" or not k.startswith("pod/"):
            continue
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        ip = (obj.get("lab") or {}).get("podIP")
        if not spec.get("nodeName") or not ip:
            continue
        ns, name = meta.get("namespace", "default"), meta.get("name", "")
        st = {}
        try:
            with open(f"{state.ROOT}/pods/{ns}/{name}.json") as fh:
                got = json.load(fh)
            if got.get("uid") == meta.get("uid"):
                st = got.get("status") or {}
        except (OSError, ValueError):
            pass
        out.append({"ns": ns, "name": name, "uid": meta.get("uid"), "node": spec["nodeName"],
                    "ip": ip, "labels": meta.get("labels") or {}, "obj": obj, "status": st})
    return out


def pod_ready(p: dict) -> bool:
    st = p["status"]
    if state.faults().get("readiness_ignored"):
        return st.get("phase") == "Running"
    return st.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])


def named_port(p: dict, port) -> int | None:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for c in (p["obj"].get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == port:
                return int(cp.get("containerPort"))
    return None


def bare_target(data: dict, src: str, ip: str, port: int) -> tuple[str, str, int] | None:
    """Where a TCP connection from node SRC to IP:PORT goes when a bare pod serves it:
    ("connect", "127.244.X.Y", port) | ("timeout", "", 0) | ("refused", "", 0); None when no
    bare pod is involved (workloads.reach answers)."""
    bare = bare_pods(data)
    for p in bare:
        if p["ip"] == ip:
            if not workloads.pod_network(data, src, p["node"]):
                return "timeout", "", 0
            if p["status"].get("phase") != "Running":
                return "refused", "", 0
            return "connect", loopback(ip), port
    for svc in workloads.services(data).values():
        spec = svc["spec"]
        if spec.get("clusterIP") != ip:
            continue
        sel = spec.get("selector") or {}
        ns = svc["metadata"].get("namespace", "default")
        eps = [p for p in bare if p["ns"] == ns and workloads.matches(sel, p["labels"])
               and pod_ready(p)]
        if not eps:
            return None
        if not workloads.proxy_works(data, src):
            return "timeout", "", 0
        sp = next((x for x in spec.get("ports") or [] if x.get("port") == port
                   and x.get("protocol", "TCP") == "TCP"), None)
        if sp is None:
            return "timeout", "", 0
        target = named_port(eps[0], sp.get("targetPort", sp.get("port")))
        if target is None:
            return "refused", "", 0
        if not workloads.pod_network(data, src, eps[0]["node"]):
            return "timeout", "", 0
        return "connect", loopback(eps[0]["ip"]), target
    return None


def _pods(data: dict) -> list[dict]:
    try:
        return state.pods(data)
    except Exception:
        return []


def resolve(data: dict, pods: list[dict], me: dict, host: str) -> tuple[str, str]:
    """getaddrinfo in a pod: resolv.conf searches <ns>.svc.<domain>, svc.<domain>, <domain>
    (ndots:5), then the name as given."""
    dom = workloads.domain(data)
    names = [] if host.endswith(".") else [f"{host}.{me['ns']}.svc.{dom}", f"{host}.svc.{dom}",
                                            f"{host}.{dom}"]
    last = "nxdomain"
    for n in [*names, host]:
        got, ip = workloads.resolve(data, pods, me["node"], n)
        if got == "ok":
            return "ok", ip
        if got == "timeout":
            last = "timeout"
    return last, ""


def nslookup(data: dict, me: dict, args: list[str]):
    """busybox 1.36 nslookup NAME (texts as the kubectl stand-in's busybox_nslookup)."""
    names = [a for a in args if not a.startswith("-")]
    if not names or len(names) > 2:
        return 1, "", BUSYBOX_USAGE
    if len(names) == 2:
        return 1, "", "nslookup (lab): a server argument is not simulated\n"
    name = names[0]
    dns = str(workloads.service_net(data).network_address + 10)
    head = f"Server:\t\t{dns}\nAddress:\t{dns}:53\n\n"
    got, ip = workloads.resolve(data, _pods(data), me["node"], name)
    if got == "timeout":
        time.sleep(5)  # busybox's default -timeout=5
        return 1, ";; connection timed out; no servers could be reached\n\n", ""
    if got == "ok":
        return 0, head + f"Name:\t{name}\nAddress: {ip}\n\n", ""
    return 1, head + f"** server can't find {name}: {got.upper()}\n\n", ""


def is_ip(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(x.isdigit() for x in parts)


def wget(data: dict, me: dict, args: list[str]):
    """busybox 1.36 wget: http only; -q, -O FILE|-, -T SEC. Returns (rc, out, err) or
    ("exec", argv, (from, to, timeout)): run busybox wget with ARGV (without -T: Debian's
    busybox 1.35 wget segfaults on a refused connection with -T; the stand-in runs it under
    `timeout`), then rewrite FROM to TO in its messages (the pod's loopback address back to
    its cluster address)."""
    quiet, target, timeout, url, url_i = False, None, 900.0, "", -1
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-q", "--quiet"):
            quiet = True
        elif a in ("-O", "-T", "-Y", "-U", "--header"):
            i += 1
            val = args[i] if i < len(args) else ""
            if a == "-O":
                target = val
            elif a == "-T":
                try:
                    timeout = float(val)
                except ValueError:
                    return 1, "", f"wget: invalid number '{val}'\n"
        elif a.startswith("-"):
            return 1, "", f"wget (lab): option {a} is not simulated in a lab pod\n"
        else:
            url, url_i = a, i
        i += 1
    if not url:
        return 1, "", BUSYBOX_USAGE
    if not url.startswith("http://"):
        return 1, "", f"wget (lab): {url} is not simulated (http only)\n"
    hostport, _, path = url[7:].partition("/")
    host, _, port_s = hostport.partition(":")
    port = int(port_s) if port_s.isdigit() else 80
    ip = host
    pods = _pods(data)
    if not is_ip(host):
        if host == "localhost":
            ip = "127.0.0.1"
        else:
            got, ip = resolve(data, pods, me, host)
            if got != "ok":
                return 1, "", f"wget: bad address '{host}'\n"
    if ip.startswith("127.") or ip == me["ip"]:  # the pod's own network namespace
        new = list(args)
        new[url_i] = f"http://{loopback(me['ip'])}:{port}/{path}"
        return "exec", _no_t(new), (loopback(me["ip"]), host if not is_ip(host) else me["ip"],
                                    timeout)
    err = "" if quiet else f"Connecting to {hostport} ({ip}:{port})\n"
    bare = bare_target(data, me["node"], ip, port)
    if bare is not None and bare[0] == "connect":
        new = list(args)
        new[url_i] = f"http://{bare[1]}:{bare[2]}/{path}"
        return "exec", _no_t(new), (bare[1], ip, timeout)
    got = (bare[0], "") if bare is not None else workloads.reach(data, pods, me["node"], ip, port)
    if got[0] == "timeout":
        time.sleep(timeout)
        return 1, "", err + "wget: download timed out\n"
    if got[0] == "refused":
        return 1, "", err + f"wget: can't connect to remote host ({ip}): Connection refused\n"
    if path not in ("", "index.html"):
        return 1, "", err + "wget: server returned error: HTTP/1.1 404 Not Found\n"
    if target == "-":
        return 0, got[1], err
    return 0, "", err + ("" if quiet else f"saving to '{target or 'index.html'}'\n")


def _no_t(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "-T":
            skip = True
        else:
            out.append(a)
    return out


def ping(data: dict, me: dict, args: list[str]):
    """busybox ping: the name resolves like getaddrinfo in the pod; then, as with no route
    (the lab has no ICMP path), sendto fails."""
    hosts = [a for a in args if not a.startswith("-")]
    if not hosts:
        return 1, "", BUSYBOX_USAGE
    host = hosts[-1]
    ip = host
    if not is_ip(host):
        got, ip = resolve(data, _pods(data), me, host)
        if got != "ok":
            return 1, "", f"ping: bad address '{host}'\n"
    return 1, f"PING {host} ({ip}): 56 data bytes\n", "ping: sendto: Network is unreachable\n"


def answer(data: dict, me: dict, argv: list[str]):
    tool, args = (argv[0] if argv else ""), argv[1:]
    if tool == "nslookup":
        return nslookup(data, me, args)
    if tool == "wget":
        return wget(data, me, args)
    if tool in ("ping", "ping6"):
        return ping(data, me, args)
    return 1, "", f"{tool} (lab): not simulated in a lab pod\n"

