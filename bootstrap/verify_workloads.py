"""verify's workload checks: what a user runs on a new cluster, in a namespace verify creates and
deletes (``verify.namespace``; ``--keep`` leaves it).

- PodNetwork: a busybox pod on every node (DaemonSet ``netcheck``; httpd answers with its node's
  name), and each reaches every other across nodes (``kubectl exec ... wget``).
- DNS: a pod resolves ``kubernetes.default`` and the test Service through cluster DNS.
- NginxNodePort: seed 004's test (``kubectl create deployment nginx``, ``kubectl expose ...
  --type=NodePort``): the NodePort answers HTTP on every node's address, tried from every node,
  and the ClusterIP answers from every node.

Builders return scripts and manifests; judges are pure functions of what those printed.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from dataclasses import dataclass

from .cluster.common import KUBECTL
from .models import Inventory
from .templating import render
from .verify import Outcome, kubernetes_service_ip

TEMPLATES = ("verify/namespace.yaml.j2", "verify/netcheck.yaml.j2", "verify/nginx.yaml.j2")
NETCHECK_LABEL = "app.kubernetes.io/name=netcheck"
PORT = 8080
MARK = "<<verify"


def manifests(inv: Inventory) -> str:
    """The namespace, the netcheck DaemonSet, seed 004's nginx Deployment and NodePort
    Service, for ``kubectl apply -f -``."""
    v = inv.verify
    return "---\n".join(render(t, namespace=v.namespace, busybox=v.busybox_image,
                               nginx=v.nginx_image) for t in TEMPLATES)


def apply_script(inv: Inventory, limit: int) -> str:
    """Apply the manifests (stdin) and wait until netcheck runs on every node and nginx is
    available; on a timeout print the namespace's events and pods, the evidence."""
    ns = shlex.quote(inv.verify.namespace)
    k = f"timeout {limit + 10} {KUBECTL} -n {ns}"
    return (f"{settled(inv, limit)}; {KUBECTL} apply -f - && "
            f"{k} rollout status daemonset/netcheck --timeout={limit}s && "
            f"{k} rollout status deployment/nginx --timeout={limit}s || "
            f"{{ rc=$?; echo '{MARK} events'; {k} get events --sort-by=.lastTimestamp 2>&1 | "
            f"tail -n 15; echo '{MARK} pods'; {k} get pods -o wide 2>&1; exit $rc; }}")


def settled(inv: Inventory, limit: int) -> str:
    """Wait (at most ``limit`` seconds) while verify's namespace of an earlier run is still
    Terminating: the API refuses new objects in it until it is gone."""
    ns = shlex.quote(inv.verify.namespace)
    return (f"i=0; while [ $i -lt {limit} ] && timeout 30 {KUBECTL} get namespace {ns} -o json "
            "2>/dev/null | grep -q '\"phase\": *\"Terminating\"'; do sleep 1; i=$((i+1)); done")


def read_script(inv: Inventory, limit: int) -> str:
    """What the judges need from the API: verify's pods, the nginx and kubernetes Services."""
    ns = shlex.quote(inv.verify.namespace)
    k = f"timeout {limit} {KUBECTL}"
    return (f"echo '{MARK} pods'; {k} -n {ns} get pods -o json 2>&1; "
            f"echo '{MARK} nginx'; {k} -n {ns} get service nginx -o json 2>&1; "
            f"echo '{MARK} kubernetes'; {k} -n default get service kubernetes -o json 2>&1")


def sections(out: str) -> dict[str, str]:
    """Split a script's output at ``<<verify NAME`` lines."""
    found: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith(MARK + " "):
            current = line[len(MARK) + 1:].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {k: "\n".join(v) for k, v in found.items()}


def _json(text: str) -> dict:
    try:
        return json.loads(text)
    except ValueError:
        return {"error": (text.strip().splitlines() or ["no answer"])[-1]}


@dataclass(frozen=True)
class Objects:
    """What read_script found: netcheck pods {name: (node, podIP)}, nginx's ClusterIP and
    NodePort, the kubernetes Service's ClusterIP; ``error`` when the API did not answer."""

    netcheck: dict[str, tuple[str, str]]
    nginx_ip: str
    node_port: int
    kubernetes_ip: str
    error: str = ""


def objects(out: str) -> Objects:
    parts = sections(out)
    pods, svc, kube = (_json(parts.get(k, "")) for k in ("pods", "nginx", "kubernetes"))
    error = next((d["error"] for d in (pods, svc, kube) if "error" in d), "")
    netcheck = {
        p["metadata"]["name"]: (p.get("spec", {}).get("nodeName", ""),
                                p.get("status", {}).get("podIP", ""))
        for p in pods.get("items", [])
        if p.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/name") == "netcheck"}
    ports = svc.get("spec", {}).get("ports", [{}])
    return Objects(netcheck, svc.get("spec", {}).get("clusterIP", ""),
                   int(ports[0].get("nodePort", 0) or 0) if ports else 0,
                   kube.get("spec", {}).get("clusterIP", ""), error)


def exec_script(inv: Inventory, found: Objects, limit: int) -> str:
    """From every netcheck pod, wget every other one; from the first, nslookup the kubernetes
    and nginx Services. The probes run at the same time; then each result is printed under its
    own ``<<verify`` line, followed by its exit status."""
    ns = shlex.quote(inv.verify.namespace)
    k = f"timeout {limit} {KUBECTL} -n {ns} exec"
    probes: list[tuple[str, str]] = []
    pods = sorted(found.netcheck)
    for src in pods:
        for dst in pods:
            if dst != src:
                ip = found.netcheck[dst][1]
                probes.append((f"wget {src} {dst}",
                               f"{k} {src} -- wget -q -O - -T 5 http://{ip}:{PORT}/"))
    if pods:
        probes += [(f"nslookup {name}", f"{k} {pods[0]} -- nslookup {name}")
                   for name in names(inv)]
    if not probes:
        return "true"
    lines = ["d=$(mktemp -d /tmp/k8s-bootstrap-verify.XXXXXX)"]
    lines += [f'{{ {cmd} > "$d/{i}" 2>&1; echo $? > "$d/{i}.rc"; }} &'
              for i, (_key, cmd) in enumerate(probes)]
    lines.append("wait")
    lines += [f"echo '{MARK} {key}'; cat \"$d/{i}\"; echo \"{MARK} rc $(cat \"$d/{i}.rc\")\""
              for i, (key, _cmd) in enumerate(probes)]
    lines.append('rm -rf "$d"')
    return "\n".join(lines)


def names(inv: Inventory) -> tuple[str, str]:
    """The names DNS must resolve (the cluster domain kubeadm sets: cluster.local)."""
    return ("kubernetes.default.svc.cluster.local",
            f"nginx.{inv.verify.namespace}.svc.cluster.local")


def results(out: str) -> dict[str, tuple[int, str]]:
    """``<<verify KEY`` output ``<<verify rc N`` -> {KEY: (N, output)}."""
    found: dict[str, tuple[int, str]] = {}
    key, lines = None, []
    for line in out.splitlines():
        if line.startswith(MARK + " rc ") and key is not None:
            rc = line[len(MARK) + 4:].strip()
            found[key] = (int(rc) if rc.lstrip("-").isdigit() else -1, "\n".join(lines))
            key, lines = None, []
        elif line.startswith(MARK + " "):
            key, lines = line[len(MARK) + 1:].strip(), []
        else:
            lines.append(line)
    return found


def curl_script(inv: Inventory, found: Objects, limit: int) -> str:
    """Run on each node: the NodePort on every node's address, and the ClusterIP."""
    targets = [f"{n.internal_address}:{found.node_port}" for n in inv.nodes]
    targets.append(f"{found.nginx_ip}:80")
    return "\n".join(
        f"echo '{MARK} curl {t}'; code=$(curl -s -o /dev/null -m {min(limit, 10)} "
        f"-w '%{{http_code}}' http://{t}/ 2>&1); rc=$?; echo \"$code\"; "
        f"echo \"{MARK} rc $rc\"" for t in targets)


# -- judges ---------------------------------------------------------------------------------------
def judge_pod_network(inv: Inventory, found: Objects, got: dict[str, tuple[int, str]]
                      ) -> Outcome:
    nodes = [n.name for n in inv.nodes]
    expected = (f"a netcheck pod on each of {', '.join(nodes)}, each reaching every other on "
                f"port {PORT} (wget gets the other pod's node name)")
    if found.error:
        return Outcome("PodNetwork", False, expected, f"kubectl failed: {found.error}",
                       [found.error], "kubectl get pods -A")
    where = {node: name for name, (node, _ip) in found.netcheck.items()}
    missing = [n for n in nodes if n not in where]
    bad, evidence = [f"no netcheck pod on {n}" for n in missing], []
    pairs = 0
    for key, (rc, out) in sorted(got.items()):
        if not key.startswith("wget "):
            continue
        _, src, dst = key.split()
        src_node, (dst_node, dst_ip) = found.netcheck[src][0], found.netcheck[dst]
        pairs += 1
        if rc != 0 or out.strip() != dst_node:
            said = [ln for ln in out.strip().splitlines()
                    if not ln.startswith("command terminated")]  # kubectl's own line
            why = f"{said[0] if said else 'no output'} (exit {rc})"
            bad.append(f"{src_node} -> {dst_node} fails")
            evidence.append(f"{src} ({src_node}) -> {dst_ip}:{PORT} ({dst_node}): {why}")
    if bad:
        first = next((b for b in bad if "->" in b), bad[0])
        hint = ("flannel's pod on the two nodes (kubectl -n kube-flannel logs ...), the "
                "nodes' FORWARD policy and the VXLAN port (8472/udp) between them"
                if "->" in first else f"kubectl -n {inv.verify.namespace} describe daemonset "
                                      "netcheck")
        return Outcome("PodNetwork", False, expected, "; ".join(bad), evidence, hint)
    return Outcome("PodNetwork", True, expected,
                   f"{len(found.netcheck)} pods, {pairs} pairs answered", evidence)


def _addresses(nslookup: str) -> list[str]:
    """The answer's addresses in busybox's nslookup output (after the ``Name:`` line; the
    first ``Address`` lines are the server's)."""
    out, answered = [], False
    for line in nslookup.splitlines():
        if line.startswith("Name:"):
            answered = True
        elif answered and line.startswith("Address"):
            out.append(line.split(":", 1)[1].strip().split()[0])
    return out


def judge_dns(inv: Inventory, found: Objects, got: dict[str, tuple[int, str]]) -> Outcome:
    kube_name, nginx_name = names(inv)
    kube_ip = found.kubernetes_ip or kubernetes_service_ip(inv.cluster.service_cidr)
    want = {kube_name: kube_ip, nginx_name: found.nginx_ip}
    expected = f"{kube_name} -> {kube_ip}, {nginx_name} -> {found.nginx_ip or '(its ClusterIP)'}"
    if found.error or not found.netcheck:
        why = found.error or "no netcheck pod to ask from"
        return Outcome("DNS", False, expected, why, [why], "kubectl get pods -A")
    bad, evidence = [], []
    for name, ip in want.items():
        rc, out = got.get(f"nslookup {name}", (-1, "not run"))
        addresses = _addresses(out)
        evidence.append(f"nslookup {name}: {', '.join(addresses) or out.strip()[-120:]}")
        if rc != 0 or ip not in addresses:
            bad.append(f"{name} -> {', '.join(addresses) or 'no answer'}")
    if bad:
        return Outcome("DNS", False, expected, "; ".join(bad), evidence,
                       "kubectl -n kube-system get pods -l k8s-app=kube-dns; kubectl -n "
                       "kube-system logs -l k8s-app=kube-dns; the pods' /etc/resolv.conf")
    return Outcome("DNS", True, expected, "both names resolve to their ClusterIPs", evidence)


def judge_nodeport(inv: Inventory, found: Objects,
                   got: dict[str, dict[str, tuple[int, str]]]) -> Outcome:
    """``got``: node -> {"curl TARGET": (rc, output)}, HTTP 200 expected everywhere."""
    expected = ("nginx's NodePort answers HTTP 200 on every node's address from every node, and "
                "its ClusterIP from every node")
    if found.error or not found.node_port:
        why = found.error or "the nginx Service has no NodePort"
        return Outcome("NginxNodePort", False, expected, why, [why],
                       f"kubectl -n {inv.verify.namespace} get service nginx -o yaml")
    bad, evidence, tried = [], [], 0
    for node in inv.nodes:
        answers = got.get(node.name)
        if answers is None:
            bad.append(f"{node.name} unreachable")
            continue
        for key, (rc, out) in sorted(answers.items()):
            tried += 1
            code = out.strip().splitlines()[0] if out.strip() else ""
            if code != "200":
                target = key.split(" ", 1)[1]
                bad.append(f"{node.name} -> {target}: {code or 'no answer'}")
                evidence.append(f"from {node.name}: curl http://{target}/ exit {rc}, "
                                f"HTTP {code or '-'}")
    if bad:
        port = found.node_port
        return Outcome("NginxNodePort", False, expected, "; ".join(bad), evidence,
                       f"kube-proxy on the node that did not answer (kubectl -n kube-system get "
                       f"pods -o wide -l k8s-app=kube-proxy), its rules for port {port}, and "
                       f"kubectl -n {inv.verify.namespace} get endpoints nginx")
    return Outcome("NginxNodePort", True, expected,
                   f"{tried} requests answered 200 (NodePort {found.node_port}, ClusterIP "
                   f"{found.nginx_ip})", evidence)


def run(runner, inv: Inventory, wanted: list[str], limit: int, keep: bool) -> list[Outcome]:
    """Create the workloads, observe, judge, and delete the namespace (unless ``keep``), also
    after a failure or Ctrl-C. ``runner`` is the engine's (sessions, parallelism)."""
    from .errors import BootstrapError
    from .ssh import run_pool

    session = runner.session(inv.init_node)
    try:
        try:
            started = session.run(apply_script(inv, limit), stdin=manifests(inv), scratch=True,
                                  what="verify: apply the workloads and wait",
                                  timeout=2 * limit + 60)
        except BootstrapError as exc:
            return _all_failed(inv, wanted, f"master unreachable: {exc.message}")
        if not started.ok:
            parts = sections(started.stdout)
            lines = (started.stdout.split(MARK, 1)[0].strip().splitlines() or [""])
            why = f"the workloads did not start in {limit}s: {lines[-1]}"
            evidence = [ln for k in ("events", "pods") for ln in parts.get(k, "").splitlines()]
            return _all_failed(inv, wanted, why, evidence[-20:])
        found = objects(session.run(read_script(inv, limit), readonly=True,
                                    what="verify: read the workloads").stdout)
        out: list[Outcome] = []
        if {"PodNetwork", "DNS"} & set(wanted) and not found.error:
            got = results(session.run(exec_script(inv, found, limit), readonly=True,
                                      what="verify: kubectl exec",
                                      timeout=limit * (len(found.netcheck) ** 2 + 2)).stdout)
        else:
            got = {}
        if "PodNetwork" in wanted:
            out.append(judge_pod_network(inv, found, got))
        if "DNS" in wanted:
            out.append(judge_dns(inv, found, got))
        if "NginxNodePort" in wanted:
            def curl(node):
                s = runner.session(node)
                try:
                    return results(s.run(curl_script(inv, found, limit), readonly=True,
                                         what="verify: curl").stdout)
                finally:
                    s.close()

            answers = {} if found.error else run_pool(
                list(inv.nodes), curl, runner.opts.parallel or inv.ssh.parallel)
            out.append(judge_nodeport(inv, found, {
                n.name: a for n, a in answers.items() if not isinstance(a, BaseException)}))
        return out
    finally:
        if not keep:
            delete_namespace(session, inv)
        session.close()


def delete_namespace(session, inv: Inventory) -> None:
    """Delete verify's namespace and what is in it (not waiting), also after Ctrl-C."""
    from .errors import BootstrapError

    ns = shlex.quote(inv.verify.namespace)
    with contextlib.suppress(BootstrapError):
        session.run(f"{KUBECTL} delete namespace {ns} --wait=false --ignore-not-found",
                    scratch=True, cleanup=True, what="verify: delete its namespace", timeout=60)


def _all_failed(inv: Inventory, wanted: list[str], why: str,
                evidence: list[str] | None = None) -> list[Outcome]:
    found = Objects({}, "", 0, "", why)
    judges = {"PodNetwork": lambda: judge_pod_network(inv, found, {}),
              "DNS": lambda: judge_dns(inv, found, {}),
              "NginxNodePort": lambda: judge_nodeport(inv, found, {})}
    out = []
    for name in wanted:
        o = judges[name]()
        out.append(Outcome(o.check, False, o.expected, why, evidence or [why],
                           f"kubectl -n {inv.verify.namespace} get events; kubectl -n "
                           f"{inv.verify.namespace} describe pods (images: "
                           f"{inv.verify.busybox_image}, {inv.verify.nginx_image})"))
    return out
