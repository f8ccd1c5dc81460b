"""Users' workloads in the lab cluster: applied DaemonSets and Deployments (other than the CNI's
and kubeadm's) become pods, applied Services get a ClusterIP and NodePorts, Endpoints come from
their selectors' ready pods, and cluster DNS names map to ClusterIPs (lab/k8s/STATE.md,
"Workloads"). What a packet from a pod or a node reaches is answered here from this state
(`reach`, `resolve`): nothing ever opens a socket to a cluster address.

Fault knobs (faults.json): `nodeport_down` [node, ...] (NodePorts do not answer on that node's
address), `pod_traffic_dropped` [[a, b], ...] (pod traffic between a and b is dropped both ways).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

from k8s import state

DEFAULT_SUBNET = "10.96.0.0/12"
NODE_PORTS = (30000, 32767)  # kube-apiserver --service-node-port-range default
NGINX_INDEX = (  # nginx 1.27's /usr/share/nginx/html/index.html (615 bytes)
    "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\nhtml { "
    "color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\nfont-family: Tahoma, "
    "Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n"
    "<p>If you see this page, the nginx web server is successfully installed and\nworking. "
    "Further configuration is required.</p>\n\n<p>For online documentation and support please "
    "refer to\n<a href=\"http://nginx.org/\">nginx.org</a>.<br/>\nCommercial support is "
    "available at\n<a href=\"http://nginx.com/\">nginx.com</a>.</p>\n\n<p><em>Thank you for "
    "using nginx.</em></p>\n</body>\n</html>\n")


# ---- fault knobs -----------------------------------------------------------------------------

def nodeport_down(node: str) -> bool:
    return node in (state.faults().get("nodeport_down") or [])


def traffic_dropped(a: str, b: str) -> bool:
    pairs = state.faults().get("pod_traffic_dropped") or []
    return any(isinstance(p, list) and {a, b} == set(p) for p in pairs)


# ---- services --------------------------------------------------------------------------------

def service_net(data: dict) -> ipaddress.IPv4Network:
    try:
        return ipaddress.ip_network((data.get("config", {}) or {}).get("serviceSubnet")
                                    or DEFAULT_SUBNET, strict=False)
    except ValueError:
        return ipaddress.ip_network(DEFAULT_SUBNET)


def domain(data: dict) -> str:
    return (data.get("config", {}) or {}).get("dnsDomain") or "cluster.local"


def builtin_services(data: dict) -> dict[str, dict]:
    """kube-apiserver's default/kubernetes (the subnet's first address) and kubeadm's
    kube-system/kube-dns (its tenth), as the API returns them."""
    if not data.get("cluster_id"):
        return {}
    net = service_net(data)
    api, dns = str(net.network_address + 1), str(net.network_address + 10)
    from k8s import apiserver  # targetPort: the API servers' secure port, not the endpoint's

    port = int(next((r.get("port") for r in apiserver.records(data).values()), 6443) or 6443)
    created = data.get("created", 0)
    return {
        "service/default/kubernetes": {
            "apiVersion": "v1", "kind": "Service", "created": created,
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": api, "clusterIPs": [api],
                     "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": port}]}},
        "service/kube-system/kube-dns": {
            "apiVersion": "v1", "kind": "Service", "created": created,
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service":
                                    "true", "kubernetes.io/name": "KubeDNS"}},
            "spec": {"type": "ClusterIP", "clusterIP": dns, "clusterIPs": [dns],
                     "selector": {"k8s-app": "kube-dns"}, "sessionAffinity": "None",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP",
                                "targetPort": 53},
                               {"name": "metrics", "port": 9153, "protocol": "TCP",
                                "targetPort": 9153}]}},
    }


def services(data: dict) -> dict[str, dict]:
    """Every Service: the built-in ones, then the applied ones (allocated at apply)."""
    applied = {k: v for k, v in (data.get("objects", {}) or {}).items()
               if v.get("kind") == "Service"}
    return {**builtin_services(data), **applied}


def allocate(data: dict, obj: dict, old: dict | None) -> None:
    """What the API server fills in when a Service is created: type ClusterIP, a ClusterIP from
    serviceSubnet (a random free one; kept on update), each port's protocol and targetPort,
    and for NodePort a free port of 30000-32767 per port; sessionAffinity None."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    name = f"{obj['metadata'].get('namespace', 'default')}/{obj['metadata']['name']}"
    others = [s for k, s in services(data).items() if k != f"service/{name}"]
    old_spec = (old or {}).get("spec", {})
    if not spec.get("clusterIP"):
        if old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        else:
            net = service_net(data)
            used = {s["spec"].get("clusterIP") for s in others}
            size = net.num_addresses - 2
            start = int(hashlib.sha256(f"{data.get('cluster_id')}/{name}".encode())
                        .hexdigest(), 16)
            for k in range(size):
                ip = str(net.network_address + 1 + (start + k) % size)
                if ip not in used and not ip.endswith((".0.1", ".0.10")):
                    spec["clusterIP"] = ip
                    break
    if spec.get("clusterIP") and spec["clusterIP"] != "None":
        spec["clusterIPs"] = [spec["clusterIP"]]
    used_ports = {p.get("nodePort") for s in others for p in s["spec"].get("ports") or []}
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                 for p in old_spec.get("ports") or []}
    lo, hi = NODE_PORTS
    for i, port in enumerate(spec.get("ports") or []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if spec["type"] in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
            kept = old_ports.get((port.get("port"), port["protocol"]))
            if kept:
                port["nodePort"] = kept
                continue
            start = int(hashlib.sha256(f"{data.get('cluster_id')}/{name}/{i}".encode())
                        .hexdigest(), 16)
            for k in range(hi - lo + 1):
                candidate = lo + (start + k) % (hi - lo + 1)
                if candidate not in used_ports:
                    port["nodePort"] = candidate
                    used_ports.add(candidate)
                    break


def matches(sel: dict, labels: dict) -> bool:
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def endpoints(data: dict, svc: dict, pods: list[dict]) -> list[dict]:
    """The Service's ready endpoints: [{ip, node, pod, ports: {port name or number: target}}]
    (the kubernetes Service: the API server's address)."""
    meta, spec = svc["metadata"], svc["spec"]
    if meta["name"] == "kubernetes" and meta.get("namespace") == "default":
        from k8s import apiserver  # each API server registers itself (endpoint reconciler)

        return [{"ip": addr, "node": node, "pod": None}
                for node, addr, _ in apiserver.endpoints(data)]
    return [{"ip": p["ip"], "node": p["node"], "pod": p} for p in pods
            if p["namespace"] == meta.get("namespace", "default") and p["ready"]
            and p["phase"] == "Running" and p["ip"]
            and matches(spec.get("selector") or {}, p.get("labels") or {})]


# ---- scheduling ------------------------------------------------------------------------------

def taints(data: dict, node: str) -> list[dict]:
    """The node's taints as kubectl shows them (node_obj), plus the lifecycle controller's."""
    info = data["nodes"][node]
    out = []
    if info.get("role") == "control-plane":
        out.append({"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"})
    if info.get("unschedulable"):
        out.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    return out


def tolerated(tolerations: list[dict], taint: dict) -> bool:
    """core/v1 Toleration.ToleratesTaint: an empty key with Exists matches every taint."""
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        op = t.get("operator", "Equal")
        if op == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
            return True
        if op == "Equal" and t.get("key") == taint["key"] and t.get("value", "") == \
                taint.get("value", ""):
            return True
    return False


def node_labels(data: dict, node: str) -> dict:
    labels = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "kubernetes.io/hostname": node, "beta.kubernetes.io/os": "linux",
              "beta.kubernetes.io/arch": "amd64"}
    if data["nodes"][node].get("role") == "control-plane":
        labels.update({"node-role.kubernetes.io/control-plane": "",
                       "node-role.kubernetes.io/master": ""})
    labels.update(data["nodes"][node].get("labels") or {})  # `kubectl label node`'s
    return labels


def fits(data: dict, node: str, pod_spec: dict, daemon: bool) -> str:
    """'' when the pod can go to NODE, else the scheduler's reason (1.20 texts). A DaemonSet's
    pods tolerate node.kubernetes.io/unschedulable (the DaemonSet controller adds it)."""
    sel = pod_spec.get("nodeSelector") or {}
    if any(node_labels(data, node).get(k) != v for k, v in sel.items()):
        return "node(s) didn't match node selector"
    for t in taints(data, node):
        if daemon and t["key"] == "node.kubernetes.io/unschedulable":
            continue
        if t["key"] == "node.kubernetes.io/unschedulable":
            return "node(s) were unschedulable"
        if not tolerated(pod_spec.get("tolerations") or [], t):
            return f"node(s) had taint {{{t['key']}: {t.get('value', '')}}}, that the pod " \
                   "didn't tolerate"
    return ""


def user_workloads(data: dict) -> list[tuple[str, dict]]:
    """Applied DaemonSets and Deployments that are not kubeadm's or the CNI's."""
    net = state.cni(data)
    out = []
    for k, obj in sorted((data.get("objects", {}) or {}).items()):
        if obj.get("kind") not in ("DaemonSet", "Deployment"):
            continue
        if k in (state.KUBE_PROXY_DS, state.COREDNS_DEPLOY):
            continue
        if net and obj["kind"] == "DaemonSet" and obj["metadata"]["name"] == net["name"] and \
                obj["metadata"].get("namespace", "default") == net["namespace"]:
            continue
        out.append((k, obj))
    return out


def ds_nodes(data: dict, obj: dict) -> list[str]:
    spec = (obj.get("spec", {}).get("template") or {}).get("spec") or {}
    return [n for n in sorted(data.get("nodes", {})) if not fits(data, n, spec, True)]


# ---- pods ------------------------------------------------------------------------------------

def familiar(image: str) -> str:
    full = state.qualify(image)
    name = full.rsplit(":", 1)[0]
    return name.removeprefix("docker.io/library/").removeprefix("docker.io/")


def pull_error(data: dict, node: str, image: str) -> str:
    """The kubelet's `Failed to pull image` detail: dockershim relays the daemon's error,
    containerd's CRI its resolver's (texts as docker-ce-cli's and cri-tools' stand-ins)."""
    full = state.qualify(image)
    name = full.rsplit(":", 1)[0]
    repo_known = any(k.rsplit(":", 1)[0] == name for k in state.catalogue())
    if state.node_facts(node).get("runtime") == "containerd":
        head = (f'failed to pull and unpack image "{full}": failed to resolve reference '
                f'"{full}": ')
        if repo_known:
            return f"rpc error: code = NotFound desc = {head}{full}: not found"
        return (f"rpc error: code = Unknown desc = {head}pull access denied, repository does "
                "not exist or may require authorization: server message: insufficient_scope: "
                "authorization failed")
    if repo_known:
        return (f"rpc error: code = Unknown desc = Error response from daemon: manifest for "
                f"{familiar(image)}:{full.rsplit(':', 1)[1]} not found: manifest unknown: "
                "manifest unknown")
    return (f"rpc error: code = Unknown desc = Error response from daemon: pull access denied "
            f"for {familiar(image)}, repository does not exist or may require 'docker login': "
            "denied: requested access to the resource is denied")


def _env(container: dict, node: str, name: str, ns: str) -> dict:
    env = {}
    for e in container.get("env") or []:
        path = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        env[e.get("name", "")] = e.get("value", "") if not path else {
            "spec.nodeName": node, "metadata.name": name, "metadata.namespace": ns}.get(path, "")
    return env


def serves(image: str, container: dict, node: str, name: str, ns: str) -> dict[int, str]:
    """What the container answers over HTTP: {port: body}. busybox running `httpd -p PORT -h
    DIR` after `echo "$VAR" > DIR/index.html` serves VAR's value (verify's netcheck: its node's
    name); nginx serves its welcome page on 80."""
    repo = state.qualify(image).rsplit(":", 1)[0]
    if repo.endswith("/nginx"):
        return {80: NGINX_INDEX}
    if not repo.endswith("/busybox"):
        return {}
    text = " ".join(container.get("command") or []) + " " + " ".join(container.get("args") or [])
    httpd = re.search(r"\bhttpd\b[^;&|]*?-p\s+(\d+)(?:[^;&|]*?-h\s+(\S+))?", text)
    if not httpd:
        return {}
    root = (httpd.group(2) or "/www").rstrip("/")
    body = ""
    echo = re.search(r'echo\s+\\?"?\$\{?(\w+)\}?\\?"?\s*>\s*' + re.escape(root) + r"/index\.html",
                     text)
    if echo:
        body = _env(container, node, name, ns).get(echo.group(1), "") + "\n"
    return {int(httpd.group(1)): body}


def pod_ip(data: dict, node: str, taken: set[str], key: str) -> str:
    cidr = state.node_subnet(data, node)
    if not cidr:
        return ""
    net = ipaddress.ip_network(cidr)
    start = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    for k in range(200):
        ip = str(net.network_address + 10 + (start + k) % 200)
        if ip not in taken:
            taken.add(ip)
            return ip
    return ""


def add_pods(data: dict, status: dict, pod, result: list[dict]) -> None:
    """Append the users' workload pods (state.pods' POD builder) to RESULT."""
    cid = data.get("cluster_id", "")
    known = state.catalogue()
    taken = {p["ip"] for p in result if p.get("ip")}
    nodes = data.get("nodes", {})
    for k, obj in user_workloads(data):
        meta = obj["metadata"]
        ns, wname = meta.get("namespace", "default"), meta["name"]
        template = obj.get("spec", {}).get("template") or {}
        spec = template.get("spec") or {}
        tlabels = (template.get("metadata") or {}).get("labels") or {}
        created = obj.get("created", 0)
        daemon = obj["kind"] == "DaemonSet"
        if daemon:
            owner, owner_name = "DaemonSet", wname
            labels = {**tlabels, "controller-revision-hash": state.suffix(cid, k, str(created),
                                                                          n=10),
                      "pod-template-generation": "1"}
            plan = [(f"{wname}-{state.suffix(cid, k, str(created), n)}", n, "")
                    for n in ds_nodes(data, obj)]
        else:
            rs_hash = state.suffix(cid, k, str(created), "rs", n=10)
            owner, owner_name = "ReplicaSet", f"{wname}-{rs_hash}"
            labels = {**tlabels, "pod-template-hash": rs_hash}
            ready = [n for n in sorted(nodes) if status[n]["status"] == "True"
                     and not nodes[n].get("drained") and not fits(data, n, spec, False)]
            plan = []
            for i in range(int(obj.get("spec", {}).get("replicas", 1))):
                name = f"{owner_name}-{state.suffix(cid, k, str(created), str(i))}"
                if ready:
                    plan.append((name, ready[i % len(ready)], ""))
                else:
                    plan.append((name, None, unschedulable(data, status, spec)))
        for name, node, why in plan:
            containers = [{"name": c.get("name", ""), "image": c.get("image", "")}
                          for c in spec.get("containers") or []]
            base = {"labels": dict(labels), "owner_name": owner_name, "host_network":
                    bool(spec.get("hostNetwork")), "workload": k, "containers": containers,
                    "serves": {}}
            if not daemon:
                base["controller"] = f"ReplicaSet/{owner_name}"
            if node is None:
                pod(ns, name, None, "Pending", owner=owner, since=created,
                    events=[("Warning", "FailedScheduling", "default-scheduler", why)], **base)
                continue
            events = [("Normal", "Scheduled", "default-scheduler",
                       f"Successfully assigned {ns}/{name} to {node}")]
            st = status[node]
            if not st["kubelet"]:
                pod(ns, name, node, "Unknown", owner=owner, since=created, events=events, **base)
                continue
            if not st["cni"]:
                events.append(("Warning", "NetworkNotReady", "kubelet",
                               f"network is not ready: {st['message']}"))
                pod(ns, name, node, "Pending", "ContainerCreating", owner=owner, since=created,
                    events=events, waiting={"reason": "ContainerCreating"}, **base)
                continue
            ip = pod_ip(data, node, taken, f"{cid}/{ns}/{name}")
            missing = next((c["image"] for c in containers
                            if state.qualify(c["image"]) not in known), None)
            if missing:
                for c in containers:
                    c["waiting"] = None if c["image"] != missing else {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{missing}"'}
                events += [("Normal", "Pulling", "kubelet", f'Pulling image "{missing}"'),
                           ("Warning", "Failed", "kubelet", f'Failed to pull image "{missing}": '
                            f"{pull_error(data, node, missing)}"),
                           ("Warning", "Failed", "kubelet", "Error: ErrImagePull"),
                           ("Normal", "BackOff", "kubelet", f'Back-off pulling image "{missing}"'),
                           ("Warning", "Failed", "kubelet", "Error: ImagePullBackOff")]
                pod(ns, name, node, "Pending", "ImagePullBackOff", owner=owner, since=created,
                    ip=ip, events=events, **base)
                continue
            for c in spec.get("containers") or []:
                events += [("Normal", "Pulled", "kubelet",
                            f'Container image "{c.get("image", "")}" already present on '
                            "machine"),
                           ("Normal", "Created", "kubelet", f"Created container {c.get('name')}"),
                           ("Normal", "Started", "kubelet", f"Started container {c.get('name')}")]
                base["serves"].update(serves(c.get("image", ""), c, node, name, ns))
            pod(ns, name, node, "Running", owner=owner, since=created, ip=ip, events=events,
                **base)


def unschedulable(data: dict, status: dict, spec: dict) -> str:
    nodes = data.get("nodes", {})
    reasons: dict[str, int] = {}
    for n in sorted(nodes):
        why = fits(data, n, spec, False)
        if not why and status[n]["status"] == "Unknown":
            why = "node(s) had taint {node.kubernetes.io/unreachable: }, that the pod didn't " \
                  "tolerate"
        elif not why and status[n]["status"] != "True":
            why = "node(s) had taint {node.kubernetes.io/not-ready: }, that the pod didn't " \
                  "tolerate"
        elif not why:
            why = "node(s) were unschedulable"  # drained
        reasons[why] = reasons.get(why, 0) + 1
    parts = ", ".join(f"{c} {k}" for k, c in sorted(reasons.items()))
    return f"0/{len(nodes)} nodes are available: {parts}."


# ---- what a packet reaches -------------------------------------------------------------------

def proxy_works(data: dict, node: str) -> bool:
    """kube-proxy programs NODE: its DaemonSet exists, it does not crash, no fault knob."""
    st = state.node_status(data, node)
    return (st["kubelet"] and state.KUBE_PROXY_DS in state.objects(data)
            and not state.kube_proxy_down(node) and state.proxy_problem(data, node) is None)


def pod_network(data: dict, a: str, b: str) -> bool:
    """Pod traffic between nodes A and B gets through: flannel runs on both (the node's CNI
    works) and no fault drops it; on one node the bridge carries it."""
    if a == b:
        return True
    for n in (a, b):
        if n not in data.get("nodes", {}) or not state.node_status(data, n).get("cni"):
            return False
    return not traffic_dropped(a, b)


def node_by_address(data: dict, ip: str) -> str | None:
    return next((n for n, i in sorted(data.get("nodes", {}).items())
                 if i.get("address") == ip), None)


def reach(data: dict, pods: list[dict], src: str, ip: str, port: int, proto: str = "TCP",
          depth: int = 0) -> tuple[str, str]:
    """What a connection from node SRC (its host or one of its pods) to IP:PORT meets:
    ("ok", body) | ("refused", "") | ("timeout", "")."""
    svcs = services(data)
    for svc in svcs.values():
        spec = svc["spec"]
        if spec.get("clusterIP") == ip:
            if not proxy_works(data, src):
                return "timeout", ""  # no DNAT: the packet goes to the default route
            sp = next((p for p in spec.get("ports") or [] if p.get("port") == port
                       and p.get("protocol", "TCP") == proto), None)
            if sp is None:
                return "timeout", ""
            return _to_endpoint(data, pods, src, svc, sp, proto, depth)
    node = node_by_address(data, ip)
    if node is not None:
        for svc in svcs.values():
            sp = next((p for p in svc["spec"].get("ports") or [] if p.get("nodePort") == port
                       and p.get("protocol", "TCP") == proto), None)
            if sp is None:
                continue
            if nodeport_down(node) or not proxy_works(data, node):
                return "refused", ""
            return _to_endpoint(data, pods, node, svc, sp, proto, depth)
        return "refused", ""
    target = next((p for p in pods if p.get("ip") == ip and not p.get("host_network")), None)
    if target is None:
        return "timeout", ""
    if not pod_network(data, src, target["node"]):
        return "timeout", ""
    if target.get("bare"):  # a bare pod's processes serve on 127.244.X.Y (k8s/scheduler.py)
        return loopback_get(target.get("loopback", ""), port) \
            if target["phase"] == "Running" else ("refused", "")
    if target["phase"] != "Running" or not target["ready"]:
        return "refused", ""
    if target.get("labels", {}).get("k8s-app") == "kube-dns" and port == 53:
        return "ok", "dns"
    body = (target.get("serves") or {}).get(port)
    return ("ok", body) if body is not None else ("refused", "")


def loopback_get(addr: str, port: int, timeout: float = 5.0) -> tuple[str, str]:
    """A real `GET /` to a bare pod's loopback address (127.0.0.0/8 only)."""
    import http.client

    if not addr.startswith("127."):
        return "refused", ""
    conn = http.client.HTTPConnection(addr, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        return "ok", conn.getresponse().read().decode(errors="replace")
    except TimeoutError:
        return "timeout", ""
    except (OSError, http.client.HTTPException):
        return "refused", ""
    finally:
        conn.close()


def _to_endpoint(data, pods, via: str, svc: dict, sp: dict, proto: str, depth: int):
    eps = endpoints(data, svc, pods)
    if not eps:
        return "refused", ""  # kube-proxy's REJECT "has no endpoints"
    if eps[0]["pod"] is None:  # the API server: not HTTP over plain TCP; connected is enough
        return "ok", ""
    target = sp.get("targetPort", sp.get("port"))
    if isinstance(target, str):  # a named port: a bare pod's containerPort, else the port
        target = next((int(cp["containerPort"]) for c in (eps[0]["pod"].get("bare_spec") or {})
                       .get("containers") or [] for cp in c.get("ports") or []
                       if cp.get("name") == target), sp["port"])
    if depth > 2:
        return "timeout", ""
    return reach(data, pods, via, eps[0]["ip"], int(target), proto, depth + 1)


def resolve(data: dict, pods: list[dict], src: str, name: str) -> tuple[str, str]:
    """A pod on SRC asks cluster DNS (kube-dns's ClusterIP) for NAME's A record:
    ("ok", ip) | ("nxdomain", "") | ("servfail", "") | ("timeout", "")."""
    dns = builtin_services(data).get("service/kube-system/kube-dns")
    if dns is None:
        return "timeout", ""
    got, _ = reach(data, pods, src, dns["spec"]["clusterIP"], 53, "UDP")
    if got != "ok":
        return "timeout", ""
    fqdn = name.lower().rstrip(".")
    suffix = "." + domain(data)
    if not fqdn.endswith(suffix):
        return "servfail", ""  # coredns forwards to the node's resolv.conf (127.0.0.1)
    for svc in services(data).values():
        meta = svc["metadata"]
        if f"{meta['name']}.{meta.get('namespace', 'default')}.svc{suffix}" == fqdn:
            ip = svc["spec"].get("clusterIP", "")
            return ("ok", ip) if ip and ip != "None" else ("nxdomain", "")
    return "nxdomain", ""


def events(data: dict, pods: list[dict], ns: str) -> list[tuple[str, str, str, str]]:
    """The namespace's events: (type, reason, object, message), oldest first: controllers'
    SuccessfulCreate / ScalingReplicaSet, then each pod's."""
    out = []
    for k, obj in user_workloads(data):
        if obj["metadata"].get("namespace", "default") != ns:
            continue
        mine = [p for p in pods if p.get("workload") == k]
        if obj["kind"] == "Deployment":
            rs = mine[0]["owner_name"] if mine else obj["metadata"]["name"]
            out.append(("Normal", "ScalingReplicaSet", f"deployment/{obj['metadata']['name']}",
                        f"Scaled up replica set {rs} to {obj['spec'].get('replicas', 1)}"))
            out += [("Normal", "SuccessfulCreate", f"replicaset/{rs}",
                     f"Created pod: {p['name']}") for p in mine]
        else:
            out += [("Normal", "SuccessfulCreate", f"daemonset/{obj['metadata']['name']}",
                     f"Created pod: {p['name']}") for p in mine]
    for p in pods:
        if p["namespace"] == ns and p.get("workload"):
            out += [(t, r, f"pod/{p['name']}", m) for t, r, _src, m in p.get("events") or []]
    return out
