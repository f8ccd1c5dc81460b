"""`invoke verify`, part 1: does the cluster the inventory describes work? Named checks, each
judged by a pure function over what kubectl on the master and tools on the nodes print.

Observation is read-only and one round trip per host (the engine's gather): kubectl's JSON on
the master, the proxy's tables on every node. The judges turn that into an Outcome: expected,
observed, the evidence that decided it, and what to look at next when it failed.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from . import facts as F
from .cluster import flannel
from .cluster.common import KUBECTL
from .models import Inventory

DEFAULT_TIMEOUT = 60  # seconds any one observation may take (`timeout` on the node)


@dataclass(frozen=True)
class Outcome:
    check: str
    ok: bool
    expected: str
    observed: str
    evidence: list[str] = field(default_factory=list)
    next: str = ""
    """What to look at next (a failed check only)."""


Observed = dict[str, Any]
"""Facts by name: the master's under their own names, a node's under ``NODE:name``."""


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    master: Callable[[Inventory, int], list[F.Fact]]
    nodes: Callable[[Inventory, int], list[F.Fact]]
    judge: Callable[[Inventory, Observed], Outcome]


# -- observations ---------------------------------------------------------------------------------
def _json(out: str, rc: int) -> dict:
    """kubectl's JSON, or {"error": what it printed} (stderr is folded into stdout)."""
    if rc == 0:
        try:
            return json.loads(out)
        except ValueError:
            pass
    return {"error": (out.strip().splitlines() or [f"exit status {rc}"])[-1]}


def kubectl(name: str, args: str, limit: int) -> F.Fact:
    return F.Fact(name, f"timeout {limit} {KUBECTL} {args} 2>&1", _json)


def _text(out: str, rc: int) -> dict:
    return {"rc": rc, "out": out}


def node_command(name: str, cmd: str, limit: int) -> F.Fact:
    return F.Fact(name, f"timeout {limit} {cmd} 2>&1", _text)


def _nodes_facts(inv: Inventory, limit: int) -> list[F.Fact]:
    return [kubectl("nodes", "get nodes -o json", limit)]


def _pods_facts(inv: Inventory, limit: int) -> list[F.Fact]:
    return [kubectl("pods", "get pods -A -o json", limit)]


def _proxy_master(inv: Inventory, limit: int) -> list[F.Fact]:
    return [kubectl("kube-proxy-config", "-n kube-system get configmap kube-proxy -o json",
                    limit)]


PROXY_TABLES = {
    # mode -> (command on each node, what its output holds for the kubernetes Service)
    "ipvs": "ipvsadm -S -n",
    "iptables": "iptables-save -t nat",
    "nftables": "nft list table ip kube-proxy",
}


def _proxy_nodes(inv: Inventory, limit: int) -> list[F.Fact]:
    return [node_command("proxy-tables", PROXY_TABLES[inv.cluster.proxy_mode], limit)]


def _none(inv: Inventory, limit: int) -> list[F.Fact]:
    return []


# -- judges ---------------------------------------------------------------------------------------
def _error(check: str, expected: str, what: dict, next_: str) -> Outcome:
    return Outcome(check, False, expected, f"kubectl failed: {what['error']}",
                   [what["error"]], next_)


def judge_nodes(inv: Inventory, seen: Observed) -> Outcome:
    """Every inventory node registered, Ready, at the pinned version, on the configured
    runtime (Node status.conditions, status.nodeInfo: API reference "Node")."""
    version, runtime = f"v{inv.cluster.kubernetes_version}", inv.cluster.runtime
    names = [n.name for n in inv.nodes]
    expected = f"{', '.join(names)} registered, Ready, kubelet {version}, {runtime}"
    got = seen.get("nodes") or {"error": "no answer"}
    if "error" in got:
        return _error("Nodes", expected, got,
                      "is the API server up? on the master: systemctl status kubelet; "
                      "crictl ps -a (or docker ps -a)")
    items = {i["metadata"]["name"]: i for i in got.get("items", [])}
    evidence, bad = [], []
    for name in names:
        node = items.get(name)
        if node is None:
            bad.append(f"{name} not registered")
            evidence.append(f"{name}: not in kubectl get nodes")
            continue
        status = node.get("status", {})
        ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
        info = status.get("nodeInfo", {})
        kubelet, rt = info.get("kubeletVersion", "?"), info.get("containerRuntimeVersion", "?")
        line = f"{name}: Ready={ready.get('status', '?')}"
        if ready.get("status") != "True":
            line += f" ({ready.get('reason', '')}: {ready.get('message', '')})"
            bad.append(f"{name} not Ready")
        if kubelet != version:
            bad.append(f"{name} runs kubelet {kubelet}")
        if not rt.startswith(f"{runtime}://"):
            bad.append(f"{name} runs {rt}")
        evidence.append(f"{line} kubelet {kubelet} {rt}")
    extra = sorted(set(items) - set(names))
    if extra:
        evidence.append(f"also registered, not in the inventory: {', '.join(extra)}")
    if bad:
        first = next(b.split()[0] for b in bad)
        return Outcome("Nodes", False, expected, "; ".join(bad), evidence,
                       f"kubectl describe node {first}; on {first}: journalctl -u kubelet")
    return Outcome("Nodes", True, expected, f"{len(names)} nodes Ready at {version}", evidence)


CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def _pod_state(pod: dict) -> tuple[bool, str]:
    """(running and ready, a short why) from status.phase, conditions and containerStatuses."""
    status = pod.get("status", {})
    phase = status.get("phase", "Unknown")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions", []))
    waiting = [cs.get("state", {}).get("waiting", {}).get("reason")
               for cs in status.get("containerStatuses", []) or []]
    reason = next((w for w in waiting if w), "") or status.get("reason", "")
    restarts = sum(cs.get("restartCount", 0) for cs in status.get("containerStatuses", []) or [])
    why = phase + (f"/{reason}" if reason else "") + (f", {restarts} restarts" if restarts else "")
    return phase == "Running" and ready, why


def judge_system_pods(inv: Inventory, seen: Observed) -> Outcome:
    """kube-system's control plane on every control-plane node, kube-proxy and flannel Running
    on every node, coredns Running (pods found by the labels kubeadm and flannel give them)."""
    ns = flannel.release(inv.network.flannel_version).namespace
    planes = [n.name for n in inv.control_plane]
    expected = ("etcd, kube-apiserver, kube-controller-manager, kube-scheduler on "
                f"{', '.join(planes)}; kube-proxy and flannel ({ns}) on every node; coredns; "
                "all Running and ready")
    got = seen.get("pods") or {"error": "no answer"}
    if "error" in got:
        return _error("SystemPods", expected, got, "is the API server up? kubectl get pods -A")
    pods = got.get("items", [])

    def find(namespace: str, key: str, value: str) -> list[dict]:
        return [p for p in pods if p.get("metadata", {}).get("namespace") == namespace
                and p.get("metadata", {}).get("labels", {}).get(key) == value]

    bad, evidence, look = [], [], ""
    wanted: list[tuple[str, str, str, str, list[str]]] = [
        *(("kube-system", "component", c, c, planes) for c in CONTROL_PLANE),
        ("kube-system", "k8s-app", "kube-proxy", "kube-proxy", [n.name for n in inv.nodes]),
        (ns, "app", "flannel", "flannel", [n.name for n in inv.nodes]),
    ]
    for namespace, key, value, what, where in wanted:
        found = find(namespace, key, value)
        if not found:
            bad.append(f"no {what} pod")
            look = look or f"kubectl -n {namespace} get pods -o wide -l {key}={value}"
            continue
        by_node = {p.get("spec", {}).get("nodeName"): p for p in found}
        for node in where:
            pod = by_node.get(node)
            if pod is None:
                bad.append(f"no {what} pod on {node}")
                look = look or f"kubectl -n {namespace} get pods -o wide -l {key}={value}"
                continue
            ok, why = _pod_state(pod)
            name = pod["metadata"]["name"]
            if not ok:
                bad.append(f"{what} on {node} is {why}")
                look = look or (f"kubectl -n {namespace} describe pod {name}; "
                                f"kubectl -n {namespace} logs {name}")
                evidence.append(f"{namespace}/{name} on {node}: {why}")
    dns = find("kube-system", "k8s-app", "kube-dns")
    running = [p for p in dns if _pod_state(p)[0]]
    if not running:
        bad.append("no coredns pod running" if dns else "no coredns pod")
        evidence += [f"kube-system/{p['metadata']['name']}: {_pod_state(p)[1]}" for p in dns]
        look = look or "kubectl -n kube-system get deployment coredns; kubectl -n kube-system " \
                       "describe pods -l k8s-app=kube-dns"
    if bad:
        return Outcome("SystemPods", False, expected, "; ".join(bad), evidence, look)
    total = 4 * len(planes) + 2 * len(inv.nodes) + len(running)
    return Outcome("SystemPods", True, expected, f"{total} system pods Running and ready",
                   [f"coredns: {len(running)} running"])


def kubernetes_service_ip(service_cidr: str) -> str:
    """The kubernetes Service's ClusterIP: the first address of the service range (the API
    server allocates it: kubernetes.io "Service ClusterIP allocation")."""
    return str(ipaddress.ip_network(service_cidr, strict=False).network_address + 1)


def _mode_in_config(cm: dict) -> str | None:
    text = (cm.get("data") or {}).get("config.conf", "")
    try:
        conf = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return None
    return conf.get("mode") if isinstance(conf, dict) else None


def _has_service(mode: str, out: str, vip: str) -> bool:
    if mode == "ipvs":
        return f"-A -t {vip}:443 " in out + " "
    if mode == "iptables":
        return f"-d {vip}/32" in out and "KUBE-SERVICES" in out
    return vip in out  # nftables: the service-ips map holds it


def judge_proxy_mode(inv: Inventory, seen: Observed) -> Outcome:
    """kube-proxy's ConfigMap says the configured mode, and every node's tables of that mode
    hold the kubernetes Service (ipvsadm's virtual server, the KUBE-SERVICES rule, or the
    nftables kube-proxy table)."""
    mode = inv.cluster.proxy_mode
    vip = kubernetes_service_ip(inv.cluster.service_cidr)
    expected = f"mode {mode}; the kubernetes Service {vip}:443 in every node's {mode} tables"
    cm = seen.get("kube-proxy-config") or {"error": "no answer"}
    if "error" in cm:
        return _error("ProxyMode", expected, cm,
                      "kubectl -n kube-system get configmap kube-proxy -o yaml")
    have = _mode_in_config(cm)
    evidence = [f"configmap kube-proxy: mode {have!r}"]
    bad = [] if have == mode else [f"kube-proxy's config says mode {have!r}"]
    for node in inv.nodes:
        got = seen.get(f"{node.name}:proxy-tables")
        if got is None or got.get("unreachable"):
            bad.append(f"{node.name} unreachable")
            continue
        cmd = PROXY_TABLES[mode].split()[0]
        if got["rc"] != 0 or not _has_service(mode, got["out"], vip):
            bad.append(f"{node.name} has no {vip}:443 in its {mode} tables")
            last = (got["out"].strip().splitlines() or ["(empty)"])[-1]
            evidence.append(f"{node.name}: {cmd} exit {got['rc']}: {last}")
    if bad:
        names = {n.name for n in inv.nodes}
        node = next((b.split()[0] for b in bad if b.split()[0] in names), "")
        hint = ("kubectl -n kube-system get pods -o wide -l k8s-app=kube-proxy, then the logs "
                f"of the one on {node}" if node else
                "kubectl -n kube-system get configmap kube-proxy -o yaml; the kubeadm config's "
                "KubeProxyConfiguration")
        return Outcome("ProxyMode", False, expected, "; ".join(bad), evidence, hint)
    return Outcome("ProxyMode", True, expected,
                   f"mode {mode}; {vip}:443 on all {len(inv.nodes)} nodes", evidence)


# -- etcd and the endpoint -----------------------------------------------------------------------
def _etcd_facts(inv: Inventory, limit: int) -> list[F.Fact]:
    """The members and every member's health, through the init node's etcd pod (stdout only:
    etcdctl writes its retries on stderr as JSON lines too)."""
    from .cluster import etcd

    via = inv.init_node

    def members(out: str, rc: int) -> dict:
        try:
            return {"members": etcd.parse_members(out)}
        except (ValueError, KeyError):
            return {"error": (out.strip().splitlines() or [f"exit status {rc}"])[-1]}

    health = etcd.etcdctl(via, "endpoint health --cluster -w json")
    return [F.Fact("etcd-members", f"timeout {limit} {etcd.members_command(via)} 2>/dev/null",
                   members),
            F.Fact("etcd-health", f"timeout {limit} {health} 2>/dev/null",
                   lambda out, rc: etcd.parse_health(out))]


def judge_etcd(inv: Inventory, seen: Observed) -> Outcome:
    """Exactly one member per control-plane node, named after it, each healthy; no other."""
    planes = [n.name for n in inv.control_plane]
    expected = f"one healthy etcd member for each of {', '.join(planes)}, and no other"
    got = seen.get("etcd-members") or {"error": "no answer"}
    if "error" in got:
        return _error("Etcd", expected, got, f"kubectl -n kube-system logs etcd-"
                                             f"{inv.init_node.name}")
    from .cluster import etcd

    health = seen.get("etcd-health") or {}
    members = got["members"]
    bad, evidence = [], []
    for m in members:
        ok = any(health.get(u) for u in m.client_urls)
        evidence.append(f"member {m.id} {m.name or '(never started)'} "
                        f"{', '.join(m.client_urls) or '-'}: {'healthy' if ok else 'unhealthy'}")
        if not m.name:
            bad.append(f"member {m.id} ({', '.join(m.peer_urls)}) was added but never started")
        elif m.name not in planes:
            bad.append(f"member {m.name} is not a control plane of the inventory")
        elif not ok:
            bad.append(f"{m.name}'s member is unhealthy")
    for name in planes:
        if etcd.member_of(inv.node(name), members) is None:
            bad.append(f"{name} has no member")
    if bad:
        return Outcome("Etcd", False, expected, "; ".join(bad), evidence,
                       "a leftover member: invoke reset --limit NODE (--dead when it is gone); "
                       "an unhealthy one: kubectl -n kube-system logs etcd-NODE on it")
    return Outcome("Etcd", True, expected, f"{len(members)} members, all healthy", evidence)


def _endpoint_nodes(inv: Inventory, limit: int) -> list[F.Fact]:
    from .cluster.common import KUBELET_CONF

    return [node_command("endpoint", f"kubectl --kubeconfig {KUBELET_CONF} get --raw=/readyz",
                         limit)]


def judge_endpoint(inv: Inventory, seen: Observed) -> Outcome:
    """Every node reaches an API server through the endpoint (its kubelet's kubeconfig names
    it), and that one is ready."""
    endpoint = inv.control_plane_endpoint
    expected = f"https://{endpoint}/readyz answers ok from every node"
    bad, evidence = [], []
    for node in inv.nodes:
        got = seen.get(f"{node.name}:endpoint")
        if got is None or got.get("unreachable"):
            bad.append(f"{node.name} unreachable")
            continue
        text = got["out"].strip()
        if got["rc"] != 0 or text.splitlines()[-1:] != ["ok"]:
            last = (text.splitlines() or ["(nothing)"])[-1]
            bad.append(f"{node.name}: {last}")
            evidence.append(f"{node.name}: exit {got['rc']}: {last}")
    if bad:
        how = {"local": "its /etc/hosts line for the endpoint and, on a worker, haproxy "
                        "(systemctl status haproxy)",
               "external": "your load balancer and DNS",
               "none": "the init node's API server"}[inv.load_balancer]
        return Outcome("Endpoint", False, expected, "; ".join(bad), evidence,
                       f"on the node named: {how}")
    return Outcome("Endpoint", True, expected,
                   f"{len(inv.nodes)} nodes reach {endpoint}", evidence)


CHECKS: list[Check] = [
    Check("Nodes", "every inventory node registered, Ready, pinned version and runtime",
          _nodes_facts, _none, judge_nodes),
    Check("SystemPods", "control plane, kube-proxy and flannel on every node, coredns",
          _pods_facts, _none, judge_system_pods),
    Check("ProxyMode", "kube-proxy's configured mode is the one in effect on every node",
          _proxy_master, _proxy_nodes, judge_proxy_mode),
    Check("Etcd", "one healthy etcd member per control-plane node, and no other",
          _etcd_facts, _none, judge_etcd),
    Check("Endpoint", "the API endpoint answers /readyz from every node",
          _none, _endpoint_nodes, judge_endpoint),
]
WORKLOADS = ("PodNetwork", "DNS", "NginxNodePort")
"""The checks that run workloads (bootstrap/verify_workloads.py), after the read-only ones."""
OBJECTS = ("ObjectManagement",)
"""Seed 004's three ways to manage objects (bootstrap/verify_objects.py)."""
PODS = ("NoCommand", "CommandArgs", "Env", "ContainerPort", "Resources", "InitContainers",
        "LifecycleHooks", "LivenessProbes", "ReadinessProbe", "RestartPolicy", "NodePlacement")
"""Seed 000's Pod chapter (bootstrap/verify_pods.py), last."""
DISRUPTIVE = ("ControlPlaneFailover",)
"""Checks that stop something (bootstrap/verify_failover.py): run only when ``--only`` names
them, last."""
NAMES = [*(c.name for c in CHECKS), *WORKLOADS, *OBJECTS, *PODS, *DISRUPTIVE]


def selected(only: str | None, skip: str | None) -> list[str]:
    """The check names ``--only`` / ``--skip`` leave (comma-separated, any case), in order."""
    from .errors import UsageError

    known = {n.lower(): n for n in NAMES}

    def names(text: str | None, flag: str) -> set[str]:
        out = set()
        for n in (x.strip() for x in (text or "").split(",") if x.strip()):
            if n.lower() not in known:
                raise UsageError(f"{flag}: unknown check {n!r} (checks: {', '.join(NAMES)})")
            out.add(known[n.lower()])
        return out

    chosen, skipped = names(only, "--only"), names(skip, "--skip")
    return [n for n in NAMES if (n in chosen or (not chosen and n not in DISRUPTIVE))
            and n not in skipped]


def select(only: str | None, skip: str | None) -> list[Check]:
    """The read-only checks among ``selected``."""
    names = selected(only, skip)
    return [c for c in CHECKS if c.name in names]


def plan(inv: Inventory, checks: list[Check], limit: int) -> dict[str, list[F.Fact]]:
    """host -> the facts to read there (the master's checks, then each node's)."""
    hosts: dict[str, dict[str, F.Fact]] = {n.name: {} for n in inv.nodes}
    for check in checks:
        for fact in check.master(inv, limit):
            hosts[inv.init_node.name][fact.name] = fact
        for node in inv.nodes:
            for fact in check.nodes(inv, limit):
                hosts[node.name][f"{node.name}:{fact.name}"] = F.Fact(
                    f"{node.name}:{fact.name}", fact.command, fact.parse)
    return {h: list(f.values()) for h, f in hosts.items() if f}


def line(o: Outcome) -> str:
    """One report line per check: verdict, expected, observed; evidence and next below it."""
    text = f"[{'PASS' if o.ok else 'FAIL'}] {o.check}: expected {o.expected}; observed {o.observed}"
    text += "".join(f"\n    {e}" for e in o.evidence)
    if not o.ok and o.next:
        text += f"\n    next: {o.next}"
    return text


def report(outcomes: list[Outcome], seconds: float) -> dict:
    return {"passed": all(o.ok for o in outcomes), "seconds": round(seconds, 2),
            "checks": [asdict(o) for o in outcomes]}


def dry_run_lines(inv: Inventory, checks: list[Check], limit: int) -> list[str]:
    out = []
    for host, found in plan(inv, checks, limit).items():
        out += [f"would: on {host}: $ {f.command}" for f in found]
    return out


def judge_all(inv: Inventory, checks: list[Check], seen: Observed) -> list[Outcome]:
    return [c.judge(inv, seen) for c in checks]


def _observe(checks: list[Check], limit: int) -> Callable[..., None]:
    """One host's facts for the read-only checks, one round trip; a host that cannot be reached
    leaves its facts out (the judges say so) and its reason under ``HOST:unreachable``."""
    from .errors import BootstrapError

    def observe(data: Any, session: Any, nodes: list) -> None:
        (node,) = nodes
        wanted = plan(data.inv, checks, limit)[node.name]
        seen = data.get("seen")
        try:
            seen.update(data.runner.gather(session, wanted))
        except BootstrapError as exc:
            for fact in wanted:
                seen[fact.name] = ({"error": f"{node.name} unreachable: {exc.message}"}
                                   if ":" not in fact.name else {"unreachable": exc.message})

    return observe


def verify_stages(inv: Inventory, checks: list[Check], workloads: list[str], objects: list[str],
                  pods: list[str], limit: int, keep: bool, failover: bool = False) -> list:
    """verify: read every host at once and judge the read-only checks; then the workloads
    (bootstrap/verify_workloads.py), seed 004's object management (verify_objects.py), then the
    Pod chapter's experiments (verify_pods.py), each orchestrated from here, cleaning up after
    itself also after a failure or Ctrl-C (verify's namespace goes with the last of them).
    Every check's result has one shape: ``Outcome``, in the data's ``outcomes``."""
    from . import verify_failover as FO
    from . import verify_objects as O
    from . import verify_pods as P
    from . import verify_workloads as W
    from .stages import LOCAL, Stage

    hosts = plan(inv, checks, limit)

    def judge(data: Any, session: Any, nodes: list) -> None:
        for outcome in judge_all(data.inv, checks, data.get("seen")):
            data.add("outcomes", outcome)

    def workloads_(data: Any, session: Any, nodes: list) -> None:
        later = bool(objects or pods)
        for outcome in W.run(data.runner, data.inv, workloads, limit, keep or later):
            data.add("outcomes", outcome)

    def objects_(data: Any, session: Any, nodes: list) -> None:
        for outcome in O.run(data.runner, data.inv, limit, keep, last=not pods):
            data.add("outcomes", outcome)

    def pods_(data: Any, session: Any, nodes: list) -> None:
        for outcome in P.run(data.runner, data.inv, pods, limit, keep):
            data.add("outcomes", outcome)

    return [
        Stage("observe", lambda d: [n for n in d.inv.nodes if n.name in hosts],
              action=_observe(checks, limit)),
        Stage("judge", lambda d: [], action=judge, on=LOCAL),
        Stage("workloads", lambda d: [], action=workloads_, on=LOCAL,
              when=lambda d: None if workloads else "not chosen"),
        Stage("objects", lambda d: [], action=objects_, on=LOCAL,
              when=lambda d: None if objects else "not chosen"),
        Stage("pods", lambda d: [], action=pods_, on=LOCAL,
              when=lambda d: None if pods else "not chosen"),
        Stage("failover", lambda d: [], on=LOCAL,
              action=lambda d, s, n: d.add("outcomes", FO.run(d.runner, d.inv, limit)),
              when=lambda d: None if failover else "not chosen"),
    ]


def run(runner: Any, inv: Inventory, checks: list[Check], workloads: list[str],
        objects: list[str], pods: list[str], limit: int, keep: bool,
        failover: bool = False) -> list[Outcome]:
    """verify's stages; every check's outcome, in order (none after Ctrl-C stopped them)."""
    from .errors import BootstrapError
    from .stages import Data, run_stages

    data = Data(runner, [])
    data.set("seen", {})
    results = run_stages(runner, verify_stages(inv, checks, workloads, objects, pods, limit,
                                                    keep, failover), data)
    broken = [f"{name}: {r.message}" for name, r in results.items() if r.status == "failed"]
    if broken:  # observe records an unreachable host itself: this is a bug, not the cluster
        raise BootstrapError("verify could not observe: " + "; ".join(broken))
    return data.get("outcomes", [])
