"""Bare Pods, the API side (issue #16; lab/k8s/STATE.md "Bare pods: the API side").

The kube-scheduler's stand-in for bare Pods (kind Pod applied with kubectl): filters as the
default profile does (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity's
nodeSelector, NodeResourcesFit; pkg/scheduler/framework/plugins/...), the FitError message
(pkg/scheduler/framework/types.go FitError.Error(), the preemption PostFilter's text from
1.22), binding (spec.nodeName, a pod IP of the node's subnet) and the scheduler's events;
nodes' capacity/allocatable as the kubelet reports them; the Pod as the API returns it, its
status taken from the node runner's status file (/var/lib/lab-cluster/pods/NS/NAME.json).

The node runner (helper "pods-node") runs what is bound here and removes deleted pods.
Pure functions take the state dict so host-side tests can import this module
(lab/payload_code.py).
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import time
from decimal import ROUND_CEILING, Decimal

from k8s import common, state

PODS_DIR = f"{state.ROOT}/pods"
TIME_SCALE = f"{state.ROOT}/time_scale"
DEFAULT_GRACE = 30  # core/v1 PodSpec.terminationGracePeriodSeconds default
MAX_PODS = 110  # KubeletConfiguration maxPods default
EVICTION_MEMORY = 100 * 1024 * 1024  # evictionHard memory.available default "100Mi"
EVICTION_NODEFS = 0.10  # evictionHard nodefs.available default "10%"
IP_RANGE = (210, 254)  # bare pods' host part in the node's /24 (workloads.py uses .10-.209,
#                        coredns .2/.3): disjoint, so the two never collide
# kubeadm's static pods' requests (cmd/kubeadm/app/phases/controlplane/manifests.go
# ComponentResources("250m") etc., etcd/local.go: cpu 100m, memory 100Mi)
STATIC_REQUESTS = {"kube-apiserver": (250, 0), "kube-controller-manager": (200, 0),
                   "kube-scheduler": (100, 0), "etcd": (100, 100 * 1024 * 1024)}
COREDNS_REQUESTS = (100, 70 * 1024 * 1024)  # kubeadm's CoreDNS Deployment: cpu 100m, 70Mi


# ---- knobs -----------------------------------------------------------------------------------

def time_scale() -> float:
    """Contract 6: /var/lib/lab-cluster/time_scale multiplies every scheduler timing."""
    try:
        with open(TIME_SCALE) as fh:
            value = float(fh.read().strip())
        return value if value > 0 else 1.0
    except (OSError, ValueError):
        return 1.0


def fault(name: str, pod: str) -> bool:
    """An API-side fault knob of faults.json: true (every pod) or a list of pod names."""
    value = state.faults().get(name)
    if value is True:
        return True
    return isinstance(value, list) and pod in value


# ---- quantities --------------------------------------------------------------------------------

_SUFFIX = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50,
           "Ei": 2 ** 60, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
           "": 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15,
           "E": 10 ** 18}


def quantity(text) -> Decimal:
    """A resource.Quantity as an exact number (base units): 100m -> 0.1, 64Mi -> 67108864."""
    if isinstance(text, int | float):
        return Decimal(str(text))
    m = re.fullmatch(r"\s*([+-]?[0-9.]+(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?\s*",
                     str(text))
    if not m:
        raise ValueError("quantities must match the regular expression "
                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    return Decimal(m.group(1)) * _SUFFIX[m.group(2) or ""]


def cpu_milli(text) -> int:
    """CPU in millicores, rounded up as MilliValue() does."""
    return int((quantity(text) * 1000).to_integral_value(rounding=ROUND_CEILING))


def mem_bytes(text) -> int:
    return int(quantity(text).to_integral_value(rounding=ROUND_CEILING))


def container_requests(c: dict) -> tuple[int, int]:
    """(cpu milli, memory bytes) a container requests: requests, else its limits (the API
    server defaults requests to limits when only limits are set)."""
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    cpu = req.get("cpu", lim.get("cpu"))
    mem = req.get("memory", lim.get("memory"))
    return (cpu_milli(cpu) if cpu is not None else 0, mem_bytes(mem) if mem is not None else 0)


def pod_requests(spec: dict) -> tuple[int, int]:
    """What a pod requests (noderesources/fit.go computePodResourceRequest): the sum over
    containers, at least the largest init container's (init containers run one at a time),
    plus spec.overhead."""
    cpu = mem = 0
    for c in spec.get("containers") or []:
        a, b = container_requests(c)
        cpu, mem = cpu + a, mem + b
    for c in spec.get("initContainers") or []:
        a, b = container_requests(c)
        cpu, mem = max(cpu, a), max(mem, b)
    over = spec.get("overhead") or {}
    if "cpu" in over:
        cpu += cpu_milli(over["cpu"])
    if "memory" in over:
        mem += mem_bytes(over["memory"])
    return cpu, mem


# ---- nodes -----------------------------------------------------------------------------------

def machine() -> dict:
    """What the kubelet's cadvisor reads on this machine (every node shares it): CPUs,
    MemTotal (kB), the root filesystem's size."""
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    disk = 0
    with contextlib.suppress(OSError):
        st = os.statvfs("/")
        disk = st.f_blocks * st.f_frsize
    return {"cpus": os.cpu_count() or 1, "mem_kib": mem_kib, "disk": disk}


def capacity(data: dict, node: str, mach: dict | None = None) -> tuple[dict, dict]:
    """(status.capacity, status.allocatable) as the kubelet reports them: kubeadm reserves
    nothing (no kubeReserved/systemReserved), so allocatable = capacity - the hard eviction
    thresholds (memory.available 100Mi, nodefs.available 10%). A node's `capacity` in
    state.json (lab-only, tests) overrides cpu/memory/pods."""
    mach = mach or machine()
    cap = {"cpu": str(mach["cpus"]), "ephemeral-storage": f"{mach['disk'] // 1024}Ki",
           "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": f"{mach['mem_kib']}Ki",
           "pods": str(MAX_PODS)}
    cap.update((data.get("nodes", {}).get(node) or {}).get("capacity") or {})
    mem = mem_bytes(cap["memory"]) - EVICTION_MEMORY
    alloc = dict(cap)
    alloc["memory"] = f"{mem // 1024}Ki" if mem % 1024 == 0 else str(mem)
    disk = mem_bytes(cap["ephemeral-storage"])
    alloc["ephemeral-storage"] = str(int(disk - disk * EVICTION_NODEFS))
    return cap, alloc


def node_labels(data: dict, node: str) -> dict:
    """The node's labels: the kubelet's (kubernetes.io/* and the beta.* ones it still sets),
    kubeadm's on a control plane (1.20-1.23 node-role.kubernetes.io/master and control-plane,
    1.24+ control-plane only; node.kubernetes.io/exclude-from-external-load-balancers since
    1.19), then `kubectl label node`'s (state.json nodes[NODE].labels)."""
    info = data.get("nodes", {}).get(node) or {}
    labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": node,
              "kubernetes.io/os": "linux"}
    if info.get("role") == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        if common.minor(data.get("kubernetes_version", "")) < 24:
            labels["node-role.kubernetes.io/master"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    labels.update(info.get("labels") or {})
    for k in info.get("labels_removed") or []:  # `kubectl label node N K-` of a built-in one
        labels.pop(k, None)
    return labels


def node_taints(data: dict, node: str, ready: str | None = None) -> list[dict]:
    """kubeadm's control-plane taint (1.20-1.23 master, 1.24 both, 1.25+ control-plane), the
    cordon's, and the node lifecycle controller's not-ready/unreachable NoSchedule taints
    (READY: the node's Ready status, True|False|Unknown; None: not added)."""
    info = data.get("nodes", {}).get(node) or {}
    minor = common.minor(data.get("kubernetes_version", ""))
    out = []
    if info.get("role") == "control-plane":
        if minor < 25:
            out.append({"effect": "NoSchedule", "key": "node-role.kubernetes.io/master"})
        if minor >= 24:
            out.append({"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"})
    if info.get("unschedulable"):
        out.append({"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable"})
    if ready == "False":
        out.append({"effect": "NoSchedule", "key": "node.kubernetes.io/not-ready"})
    elif ready == "Unknown":
        out.append({"effect": "NoSchedule", "key": "node.kubernetes.io/unreachable"})
    return out


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    """core/v1 Toleration.ToleratesTaint."""
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("key") and t["key"] != taint["key"]:
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists" or (op == "Equal" and t.get("key") and
                              (t.get("value") or "") == (taint.get("value") or "")):
            return True
    return False


# ---- what runs where (for NodeResourcesFit) -------------------------------------------------

def _template_requests(data: dict, key: str) -> tuple[int, int]:
    obj = state.objects(data).get(key) or {}
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return pod_requests(spec)


def used(data: dict, pods: list[dict]) -> dict[str, list]:
    """{node: [cpu milli, memory bytes, pod count]} of the pods bound to each node: kubeadm's
    static pods, coredns, the DaemonSets' and Deployments' pods (their templates' requests),
    bare pods (not in a terminal phase: the scheduler's cache drops those)."""
    out: dict[str, list] = {n: [0, 0, 0] for n in data.get("nodes", {})}
    net = state.cni(data)
    net_key = f"daemonset.apps/{net['namespace']}/{net['name']}" if net else ""
    for p in pods:
        node = p.get("node")
        if not node or node not in out:
            continue
        if p.get("bare"):
            if p["phase"] in ("Succeeded", "Failed"):
                continue
            try:
                req = pod_requests(p["bare_spec"])
            except ValueError:
                req = (0, 0)
        elif p["owner"] == "Node":
            req = STATIC_REQUESTS.get((p.get("labels") or {}).get("component", ""), (0, 0))
        elif (p.get("labels") or {}).get("k8s-app") == "kube-dns":
            req = COREDNS_REQUESTS
        elif p.get("workload"):
            req = _template_requests(data, p["workload"])
        elif p["owner"] == "DaemonSet" and p.get("owner_name") == (net or {}).get("name"):
            req = _template_requests(data, net_key)
        elif p["owner"] == "DaemonSet":
            req = _template_requests(data, f"daemonset.apps/{p['namespace']}/{p['owner_name']}")
        else:
            req = (0, 0)
        out[node][0] += req[0]
        out[node][1] += req[1]
        out[node][2] += 1
    return out


# ---- the scheduling cycle --------------------------------------------------------------------

def _texts(minor: int) -> dict:
    """The filters' reasons per release (plugins' ErrReason* constants)."""
    return {
        "unschedulable": "node(s) were unschedulable",
        "nodename": "node(s) didn't match the requested node name",
        # nodeaffinity: 1.20 "node(s) didn't match node selector"; later releases
        "selector": ("node(s) didn't match node selector" if minor < 21
                     else "node(s) didn't match Pod's node affinity/selector"),
        # tainttoleration: "had taint {k: v}, that the pod didn't tolerate" until 1.24,
        # "had untolerated taint {k: v}" from 1.25
        "taint": ("node(s) had taint {{{}: {}}}, that the pod didn't tolerate" if minor < 25
                  else "node(s) had untolerated taint {{{}: {}}}"),
    }


def filter_node(data: dict, node: str, spec: dict, name: str, ready: str,
                use: list, alloc: dict) -> tuple[list[str], bool]:
    """Run the filters on NODE: ([reasons], resolvable). An empty list: the pod fits. The
    first failing plugin ends the node's run (RunFilterPlugins). Order: 1.20's default
    profile NodeUnschedulable, NodeResourcesFit, NodeName, NodePorts, NodeAffinity, ...,
    TaintToleration; 1.22+ NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
    NodePorts, NodeResourcesFit. resolvable: preemption could help (only the fit)."""
    minor = common.minor(data.get("kubernetes_version", ""))
    texts = _texts(minor)
    info = data["nodes"][node]
    tolerations = spec.get("tolerations") or []
    ignore_sel = fault("node_selector_ignored", name)

    def unsched():
        if info.get("unschedulable") and not tolerates(
                tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
            return [texts["unschedulable"]]
        return []

    def nodename():
        want = spec.get("nodeName")
        return [texts["nodename"]] if want and want != node and not ignore_sel else []

    def taint():
        for t in node_taints(data, node, ready):
            if t["key"] == "node.kubernetes.io/unschedulable":
                continue  # NodeUnschedulable's
            if t["effect"] in ("NoSchedule", "NoExecute") and not tolerates(tolerations, t):
                return [texts["taint"].format(t["key"], t.get("value", ""))]
        return []

    def selector():
        sel = spec.get("nodeSelector") or {}
        labels = node_labels(data, node)
        if not ignore_sel and any(labels.get(k) != v for k, v in sel.items()):
            return [texts["selector"]]
        return []

    def fit():
        if fault("scheduler_ignores_requests", name):
            return []
        cpu, mem = pod_requests(spec)
        out = []
        if use[2] + 1 > int(alloc.get("pods", MAX_PODS)):
            out.append("Too many pods")
        if cpu and use[0] + cpu > cpu_milli(alloc["cpu"]):
            out.append("Insufficient cpu")
        if mem and use[1] + mem > mem_bytes(alloc["memory"]):
            out.append("Insufficient memory")
        return out

    order = ([unsched, fit, nodename, selector, taint] if minor < 22
             else [unsched, nodename, taint, selector, fit])
    for f in order:
        why = f()
        if why:
            return why, f is fit
    return [], False


def fit_error(n_nodes: int, reasons: dict[str, int], preempt: dict[str, int],
              minor: int) -> str:
    """FitError.Error(): `0/N nodes are available: <count reason, ...>.` with the histogram's
    strings sorted (sortReasonsHistogram), then from 1.22 the DefaultPreemption PostFilter's
    message `preemption: 0/N nodes are available: ...`. (Some releases print a doubled period
    after it, `pod..`; not reproduced: which ones is unconfirmed.)"""
    parts = sorted(f"{c} {r}" for r, c in reasons.items())
    msg = f"0/{n_nodes} nodes are available: {', '.join(parts)}."
    if minor >= 22:
        pparts = sorted(f"{c} {r}" for r, c in preempt.items())
        msg += f" preemption: 0/{n_nodes} nodes are available: {', '.join(pparts)}."
    return msg


def schedule_one(data: dict, obj: dict, pods: list[dict]) -> tuple[str | None, str]:
    """(node, '') when the pod can be bound, else (None, FailedScheduling message).
    Least allocated among the feasible nodes (NodeResourcesLeastAllocated), ties by name."""
    spec = obj.get("spec") or {}
    name = obj["metadata"]["name"]
    nodes = sorted(data.get("nodes", {}))
    minor = common.minor(data.get("kubernetes_version", ""))
    use = used(data, pods)
    mach = machine()
    reasons: dict[str, int] = {}
    preempt: dict[str, int] = {}
    feasible = []
    for n in nodes:
        ready = state.node_status(data, n)["status"]
        _, alloc = capacity(data, n, mach)
        why, resolvable = filter_node(data, n, spec, name, ready, use[n], alloc)
        if not why:
            feasible.append((n, alloc))
            continue
        for r in why:
            reasons[r] = reasons.get(r, 0) + 1
        p = ("No preemption victims found for incoming pod" if resolvable
             else "Preemption is not helpful for scheduling")
        preempt[p] = preempt.get(p, 0) + 1
    if fault("node_selector_ignored", name) and feasible:
        # the fault: the nodeSelector/nodeName asked for is ignored, the pod goes to the first
        # feasible node in name order that is not the one asked for, when there is one
        sel = spec.get("nodeSelector") or {}
        others = [n for n, _ in feasible if n != spec.get("nodeName") and
                  (not sel or any(node_labels(data, n).get(k) != v for k, v in sel.items()))]
        return (others or [feasible[0][0]])[0], ""
    if not feasible:
        return None, fit_error(len(nodes), reasons, preempt, minor) if nodes else \
            "no nodes available to schedule pods"
    cpu, mem = pod_requests(spec)

    def score(item):
        n, alloc = item
        c, m = cpu_milli(alloc["cpu"]) or 1, mem_bytes(alloc["memory"]) or 1
        free = ((c - use[n][0] - cpu) / c + (m - use[n][1] - mem) / m) / 2
        return (-round(free, 6), n)
    return sorted(feasible, key=score)[0][0], ""


# ---- events (state.json `events`, core/v1 Event as the API shows an events/v1 event) --------

def _micro(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def record_event(data: dict, obj: dict, etype: str, reason: str, action: str, msg: str,
                 now: float | None = None) -> None:
    """The scheduler's events go through the events.k8s.io/v1 recorder (since 1.19): read as
    core/v1 they carry eventTime, reportingComponent/reportingInstance, action, `source: {}`,
    no count/firstTimestamp/lastTimestamp; an isomorphic repeat becomes a `series`."""
    now = time.time() if now is None else now
    meta = obj["metadata"]
    evs = data.setdefault("events", [])
    for e in evs:
        io = e["involvedObject"]
        if (io.get("uid") == meta.get("uid") and e["reason"] == reason
                and e["message"] == msg and e["type"] == etype):
            series = e.setdefault("series", {"count": 1})
            series["count"] += 1
            series["lastObservedTime"] = _micro(now)
            return
    cp = data.get("control_plane", "")
    evs.append({
        "apiVersion": "v1", "kind": "Event", "action": action, "eventTime": _micro(now),
        "firstTimestamp": None, "lastTimestamp": None,
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                           "namespace": meta.get("namespace", "default"),
                           "uid": meta.get("uid", "")},
        "message": msg, "reason": reason,
        "metadata": {"name": f"{meta['name']}.{int(now * 1e9):x}",
                     "namespace": meta.get("namespace", "default"),
                     "uid": state.uid(data.get("cluster_id", ""), "event", meta["name"],
                                      str(now)),
                     "creationTimestamp": state.rfc3339(now)},
        "reportingComponent": "default-scheduler",
        "reportingInstance": f"default-scheduler-{cp}" if cp else "default-scheduler",
        "source": {}, "type": etype})


def runner_events(ns: str, name: str, uid: str) -> list[dict]:
    """The node runner's events of one pod (contract 3), [] when none or stale."""
    try:
        with open(f"{PODS_DIR}/{ns}/{name}.events.json") as fh:
            evs = json.load(fh)
    except (OSError, ValueError):
        return []
    return [e for e in evs if isinstance(e, dict)
            and (e.get("involvedObject") or {}).get("uid") in (uid, None, "")]


def event_time(e: dict) -> float:
    """When an event last happened (epoch), whichever field its API carries."""
    text = (e.get("series") or {}).get("lastObservedTime") or e.get("lastTimestamp") \
        or e.get("eventTime") or e.get("firstTimestamp") or ""
    try:
        return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return 0.0


# ---- binding, retries -------------------------------------------------------------------------

def bare_objects(data: dict) -> dict[str, dict]:
    return {k: v for k, v in (data.get("objects") or {}).items() if v.get("kind") == "Pod"}


def allocate_ip(data: dict, node: str) -> str:
    """A free address .210-.254 of NODE's podCIDR among the bare pods bound there. The first
    one tried depends on the cluster (labs running at once share this machine's loopback
    addresses: the same node name gets the same subnet in two labs), and an address whose
    127.244 twin already has a listening socket on this machine is skipped."""
    cidr = state.node_subnet(data, node)
    if not cidr:
        return ""
    net = ipaddress.ip_network(cidr)
    taken = {(o.get("lab") or {}).get("podIP") for o in bare_objects(data).values()}
    busy = listening()
    size = IP_RANGE[1] - IP_RANGE[0] + 1
    start = int(hashlib.sha256(str(data.get("cluster_id", "")).encode()).hexdigest(), 16)
    free = []
    for k in range(size):
        ip = str(net.network_address + IP_RANGE[0] + (start + k) % size)
        if ip not in taken:
            free.append(ip)
            if "127." + ip.split(".", 1)[1] not in busy:
                return ip
    return free[0] if free else ""


def listening() -> set[str]:
    """Local addresses with a listening TCP socket (/proc/net/tcp, this network namespace)."""
    out = set()
    with contextlib.suppress(OSError), open("/proc/net/tcp") as fh:
        for line in list(fh)[1:]:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "0A":  # TCP_LISTEN
                addr = parts[1].split(":")[0]
                out.add(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


def created(data: dict, obj: dict, now: float | None = None) -> None:
    """What the API server fills in when a Pod is created: uid, creationTimestamp."""
    now = time.time() if now is None else now
    meta = obj["metadata"]
    meta["uid"] = state.uid(data.get("cluster_id", ""), "pod", meta.get("namespace", ""),
                            meta["name"], str(now))
    meta["creationTimestamp"] = state.rfc3339(now)
    obj.setdefault("lab", {})["created"] = now


def fingerprint(data: dict) -> str:
    """What a pending pod's retry depends on (the scheduler's queue moves unschedulable pods
    back on node add/update and assigned-pod delete events)."""
    parts = []
    for n in sorted(data.get("nodes", {})):
        info = data["nodes"][n]
        parts.append([n, node_labels(data, n), bool(info.get("unschedulable")),
                      state.node_status(data, n)["status"], info.get("capacity")])
    parts.append(sorted(k for k, o in bare_objects(data).items()
                        if (o.get("spec") or {}).get("nodeName")))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def backoff(attempts: int) -> float:
    """podInitialBackoffDuration 1s doubling to podMaxBackoffDuration 10s."""
    return min(2.0 ** max(attempts - 1, 0), 10.0)


def flush_interval(data: dict) -> float:
    """How long a pod stays in the unschedulable queue without an event: 60s (1.20-1.21
    unschedulableQTimeInterval), podMaxInUnschedulablePodsDuration 5m from 1.22."""
    return 60.0 if common.minor(data.get("kubernetes_version", "")) < 22 else 300.0


def due(data: dict, obj: dict, now: float, fp: str | None = None) -> bool:
    """A pending pod is tried again: never tried, or its back-off passed and the cluster
    changed, or the unschedulable queue's flush interval passed."""
    lab = obj.get("lab") or {}
    if (obj.get("spec") or {}).get("nodeName") or obj["metadata"].get("deletionTimestamp"):
        return False
    if "tried" not in lab:
        return True
    scale = time_scale()
    since = now - lab["tried"]
    if since >= flush_interval(data) * scale:
        return True
    if since < backoff(lab.get("attempts", 1)) * scale:
        return False
    return (fp or fingerprint(data)) != lab.get("fingerprint")


def schedule(data: dict, now: float | None = None, only: set[str] | None = None) -> list[str]:
    """One pass of the scheduler over the due pending bare pods (in creation order), inside
    state.update(). Binds or records FailedScheduling; returns the keys bound."""
    now = time.time() if now is None else now
    bound = []
    fp = fingerprint(data)
    pending = sorted(((k, o) for k, o in bare_objects(data).items()
                      if (only is None or k in only) and due(data, o, now, fp)),
                     key=lambda ko: ((ko[1].get("lab") or {}).get("created", 0), ko[0]))
    for k, obj in pending:
        if (obj.get("spec") or {}).get("schedulerName", "default-scheduler") != \
                "default-scheduler":
            continue
        node, why = schedule_one(data, obj, state.pods(data))
        lab = obj.setdefault("lab", {})
        if node is None:
            lab["tried"] = now
            lab["attempts"] = lab.get("attempts", 0) + 1
            lab["fingerprint"] = fp
            lab["unschedulable"] = why
            record_event(data, obj, "Warning", "FailedScheduling", "Scheduling", why, now)
            continue
        bind(data, obj, node, now)
        fp = fingerprint(data)
        bound.append(k)
    return bound


def bind(data: dict, obj: dict, node: str, now: float | None = None,
         scheduled: bool = True) -> None:
    """The binding: spec.nodeName, the lab's podIP (contract 1), the Scheduled event (not for a
    pod created with nodeName: the scheduler never saw it)."""
    now = time.time() if now is None else now
    obj.setdefault("spec", {})["nodeName"] = node
    lab = obj.setdefault("lab", {})
    lab.pop("unschedulable", None)
    lab["bound"] = now
    lab["podIP"] = allocate_ip(data, node)
    lab["scheduled"] = scheduled
    if scheduled:
        meta = obj["metadata"]
        record_event(data, obj, "Normal", "Scheduled", "Binding",
                     f"Successfully assigned {meta.get('namespace', 'default')}/"
                     f"{meta['name']} to {node}", now)


def admit(data: dict, obj: dict, now: float | None = None) -> None:
    """A Pod just created by kubectl apply: nodeName set by the user bypasses the scheduler
    (unless the node_selector_ignored fault sends it elsewhere); others wait for schedule()."""
    created(data, obj, now)
    want = (obj.get("spec") or {}).get("nodeName")
    if want and not fault("node_selector_ignored", obj["metadata"]["name"]):
        bind(data, obj, want, now, scheduled=False)
    elif want:
        del obj["spec"]["nodeName"]


def retry(now: float | None = None) -> None:
    """Every kubectl run: a scheduling pass when some pending pod is due (the lock is taken
    only then)."""
    now = time.time() if now is None else now
    data = state.load()
    if not any(due(data, o, now) for o in bare_objects(data).values()) and \
            not empty_terminating(data):
        return
    with state.update() as cur:
        for k in empty_terminating(cur):  # the namespace controller's last step
            del cur["objects"][k]
        schedule(cur, now)


def empty_terminating(data: dict) -> list[str]:
    """Keys of Terminating namespaces with nothing left in them."""
    objs = data.get("objects") or {}
    used_ns = {v["metadata"].get("namespace") for v in objs.values()}
    return [k for k, v in objs.items() if v.get("kind") == "Namespace"
            and v["metadata"].get("deletionTimestamp") and v["metadata"]["name"] not in used_ns]


# ---- deletion --------------------------------------------------------------------------------

def mark_deleted(objs: dict, k: str, grace: int | None = None,
                 now: float | None = None) -> bool:
    """Graceful deletion of a bare Pod (registry/core/pod strategy CheckGracefulDelete):
    deletionTimestamp = now + grace, deletionGracePeriodSeconds; the node runner stops it and
    removes the object. An unbound pod, a pod in a terminal phase or grace 0 goes at once.
    Returns True when the object is gone now."""
    now = time.time() if now is None else now
    obj = objs[k]
    spec = obj.get("spec") or {}
    st = status_file(obj) or {}
    if grace is None:
        grace = int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
    if not spec.get("nodeName") or grace == 0 or \
            (st.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        del objs[k]
        return True
    meta = obj["metadata"]
    if not meta.get("deletionTimestamp"):
        meta["deletionTimestamp"] = state.rfc3339(now + grace)
        meta["deletionGracePeriodSeconds"] = grace
    return False


# ---- the Pod as the API returns it -----------------------------------------------------------

def status_file(obj: dict) -> dict | None:
    """The runner's {uid, status} for this pod (contract 2), None when absent or stale."""
    meta = obj["metadata"]
    try:
        with open(f"{PODS_DIR}/{meta.get('namespace', 'default')}/{meta['name']}.json") as fh:
            got = json.load(fh)
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) and got.get("uid") == meta.get("uid") else None


def qos_class(spec: dict) -> str:
    """pkg/apis/core/v1/helper/qos GetPodQOS (requests default to limits)."""
    cs = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in cs:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or quantity(req.get(r, lim[r])) != quantity(lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _pull_policy(image: str) -> str:
    tail = image.rsplit("/", 1)[-1]
    if "@" in tail:
        return "IfNotPresent"
    return "Always" if ":" not in tail or tail.endswith(":latest") else "IfNotPresent"


def _container_defaults(c: dict) -> dict:
    c = dict(c)
    c.setdefault("imagePullPolicy", _pull_policy(c.get("image", "")))
    c.setdefault("resources", {})
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c["resources"] = dict(c["resources"])
    res = c["resources"]
    if res.get("limits") and not res.get("requests"):  # requests default to limits
        res["requests"] = dict(res["limits"])
    elif res.get("limits"):
        res["requests"] = {**{k: v for k, v in res["limits"].items()}, **res["requests"]}
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    return c


def api_spec(spec: dict) -> dict:
    """The PodSpec with the API server's defaults and admission's default tolerations."""
    out = json.loads(json.dumps(spec))
    out["containers"] = [_container_defaults(c) for c in out.get("containers") or []]
    if out.get("initContainers"):
        out["initContainers"] = [_container_defaults(c) for c in out["initContainers"]]
    for k, v in (("dnsPolicy", "ClusterFirst"), ("enableServiceLinks", True),
                 ("preemptionPolicy", "PreemptLowerPriority"), ("priority", 0),
                 ("restartPolicy", "Always"), ("schedulerName", "default-scheduler"),
                 ("securityContext", {}), ("serviceAccount", "default"),
                 ("serviceAccountName", "default"),
                 ("terminationGracePeriodSeconds", DEFAULT_GRACE)):
        out.setdefault(k, v)
    tol = list(out.get("tolerations") or [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key and t.get("effect") == "NoExecute" for t in tol):
            tol.append({"effect": "NoExecute", "key": key, "operator": "Exists",
                        "tolerationSeconds": 300})  # DefaultTolerationSeconds admission
    out["tolerations"] = tol
    for v in out.get("volumes") or []:
        if isinstance(v.get("hostPath"), dict):
            v["hostPath"].setdefault("type", "")
    return out


def api_pod(data: dict, obj: dict) -> dict:
    """A bare Pod as `kubectl get pod -o json` shows it: the stored object with the API's
    defaults; status from the runner's file, else Pending (PodScheduled True once bound,
    False Unschedulable with the scheduler's message before)."""
    meta = {k: v for k, v in obj["metadata"].items()}
    meta.setdefault("namespace", "default")
    spec = api_spec(obj.get("spec") or {})
    got = status_file(obj)
    lab = obj.get("lab") or {}
    ts = meta.get("creationTimestamp", state.rfc3339(lab.get("created", 0)))
    if got and isinstance(got.get("status"), dict):
        status = dict(got["status"])
    elif spec.get("nodeName") and not lab.get("scheduled"):
        status = {"phase": "Pending"}  # created with nodeName: the kubelet posts the first status
    elif spec.get("nodeName"):
        status = {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": state.rfc3339(lab.get("bound", 0))}]}
    else:
        status = {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": lab.get("unschedulable", ""), "lastProbeTime": None,
             "lastTransitionTime": state.rfc3339(lab.get("tried", lab.get("created", 0)))}]}
        if "unschedulable" not in lab:  # not tried yet: no condition (the queue holds it)
            status = {"phase": "Pending"}
    with contextlib.suppress(ValueError):  # kubectl refuses bad quantities at apply
        status.setdefault("qosClass", qos_class(obj.get("spec") or {}))
    meta["creationTimestamp"] = ts
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": status}


def ready_condition(status: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def print_row(pod: dict) -> tuple[str, str, int, str]:
    """kubectl's printPod (pkg/printers/internalversion/printers.go): READY, STATUS, restarts,
    the last restart's time ('' when none)."""
    spec, st = pod["spec"], pod["status"]
    total = len(spec.get("containers") or [])
    ready_n = 0
    restarts = 0
    last = ""
    reason = st.get("reason") or st.get("phase", "Pending")
    initializing = False
    inits = st.get("initContainerStatuses") or []
    n_init = len(spec.get("initContainers") or [])
    for i, c in enumerate(inits):
        restarts += int(c.get("restartCount", 0))
        term = (c.get("state") or {}).get("terminated")
        wait = (c.get("state") or {}).get("waiting")
        if term and term.get("exitCode", 0) == 0:
            continue
        if term:
            reason = ("Init:" + term["reason"]) if term.get("reason") else (
                f"Init:Signal:{term['signal']}" if term.get("signal")
                else f"Init:ExitCode:{term.get('exitCode', 0)}")
        elif wait and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break
    if not initializing:
        restarts = 0
        has_running = False
        for c in reversed(st.get("containerStatuses") or []):
            restarts += int(c.get("restartCount", 0))
            lt = ((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            if lt and lt > last:
                last = lt
            s = c.get("state") or {}
            if (s.get("waiting") or {}).get("reason"):
                reason = s["waiting"]["reason"]
            elif s.get("terminated") and s["terminated"].get("reason"):
                reason = s["terminated"]["reason"]
            elif s.get("terminated"):
                t = s["terminated"]
                reason = f"Signal:{t['signal']}" if t.get("signal") else \
                    f"ExitCode:{t.get('exitCode', 0)}"
            elif c.get("ready") and s.get("running"):
                has_running = True
                ready_n += 1
        if reason == "Completed" and has_running:
            reason = "Running" if ready_condition(st) else "NotReady"
    if pod["metadata"].get("deletionTimestamp") and st.get("reason") == "NodeLost":
        reason = "Unknown"
    elif pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return f"{ready_n}/{total}", reason, restarts, last


# ---- pods for state.pods() (internal dicts: endpoints, reach, kubectl) -----------------------

def add_pods(data: dict, result: list[dict]) -> None:
    """Append the bare pods to state.pods()'s list in its internal shape (plus `bare`: the
    object's key, `bare_spec`, `api`: the Pod as the API shows it)."""
    nodes = data.get("nodes", {})
    lost: dict[str, bool] = {}
    for k, obj in sorted(bare_objects(data).items()):
        meta = obj["metadata"]
        pod = api_pod(data, obj)
        st = pod["status"]
        node = (obj.get("spec") or {}).get("nodeName")
        if node in nodes and node not in lost:
            lost[node] = state.node_status(data, node)["status"] == "Unknown"
        if lost.get(node):  # the node lifecycle controller's MarkPodsNotReady
            st["conditions"] = [dict(c, status="False") if c.get("type") == "Ready" else c
                                for c in st.get("conditions") or []]
        phase = st.get("phase", "Pending")
        ready = ready_condition(st) and phase == "Running"
        _, reason, _, _ = print_row(pod)
        conts = []
        by_name = {c.get("name"): c for c in st.get("containerStatuses") or []}
        for c in (obj.get("spec") or {}).get("containers") or []:
            cs = by_name.get(c.get("name"), {})
            conts.append({"name": c.get("name", ""), "image": c.get("image", ""),
                          "ready": bool(cs.get("ready")),
                          "restarts": int(cs.get("restartCount", 0)),
                          "waiting": (cs.get("state") or {}).get("waiting")})
        ip = st.get("podIP") or (obj.get("lab") or {}).get("podIP", "") if node else ""
        result.append({
            "namespace": meta.get("namespace", "default"), "name": meta["name"], "node": node,
            "phase": phase, "reason": reason, "owner": "", "owner_name": "",
            "created": (obj.get("lab") or {}).get("created", 0), "ip": ip,
            "host_ip": nodes.get(node, {}).get("address", "") if node else "",
            "host_network": False, "uid": meta.get("uid", ""), "containers": conts,
            "ready": ready, "labels": dict(meta.get("labels") or {}), "bare": k,
            "bare_spec": obj.get("spec") or {}, "api": pod,
            "terminating": bool(meta.get("deletionTimestamp")),
            "loopback": "127." + ip.split(".", 1)[1] if ip else "", "serves": None})


def endpoint_split(pods: list[dict], svc: dict) -> tuple[list[dict], list[dict]]:
    """(ready, not ready) pods a Service selects (the endpoints controller: pods with an IP,
    not terminating, not in a terminal phase; Ready -> addresses, else notReadyAddresses).
    The readiness_ignored fault lists every selected pod as ready."""
    from k8s import workloads

    meta, spec = svc["metadata"], svc.get("spec") or {}
    ns = meta.get("namespace", "default")
    ready, unready = [], []
    for p in pods:
        if p["namespace"] != ns or not p.get("ip") or p.get("terminating") or \
                p["phase"] in ("Succeeded", "Failed"):
            continue
        if not workloads.matches(spec.get("selector") or {}, p.get("labels") or {}):
            continue
        if p["ready"] or fault("readiness_ignored", p["name"]):
            ready.append(p)
        else:
            unready.append(p)
    return ready, unready
