"""reset: take nodes out of the cluster and undo kubeadm, including what ``kubeadm reset`` leaves
(kubeadm#1427): iptables chains, IPVS tables, CNI links and directories, the user's ~/.kube.

A control-plane node leaving a cluster that keeps others (README "HA control planes") is drained
and deleted, then its etcd member is removed through a control plane that stays and checked
gone, then it is reset; the removal is refused when the healthy members left would not be a
majority (etcd's quorum, judged from live health: bootstrap/cluster/etcd.py), unless
``--allow-quorum-loss``. ``--dead``: the named nodes cannot be reached (a dead machine): they are
deleted from the cluster and their members removed, and nothing runs on them.

Each phase plans from facts, so a second run (or a node never initialised) changes nothing.
Node preparation (packages, sysctls, modules, docker) stays in place.
"""

from __future__ import annotations

import re
import shlex
import time

from .. import facts as F
from .. import runtimes
from ..engine import CHANGED, FAILED, OK, HostResult, Runner, StepResult
from ..errors import BootstrapError
from ..models import Node
from ..plan import Plan
from ..ssh import Session
from ..stages import INIT, Data, Stage, run_stages
from ..steps import Target
from . import etcd
from .common import KUBECTL, account, present
from .init import initialised
from .phases import Phase, cluster_phase

CNI_LINKS = ("cni0", "flannel.1", "kube-ipvs0")
CNI_DIRS = ("/etc/cni/net.d", "/var/lib/cni", "/run/flannel")
TABLES = ("filter", "nat", "mangle")
_K8S = re.compile(r"KUBE-|FLANNEL|CNI-|cni0|flannel\.1")


# -- kubeadm reset -------------------------------------------------------------------------------
def _etcd() -> F.Fact:
    return F.command("etcd-data", "ls -A /var/lib/etcd")


def _kubeadm_facts(t: Target) -> list[F.Fact]:
    return [present(), _etcd(), F.command("kubeadm-path", "command -v kubeadm")]


def _kubeadm_plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    found = sorted(facts[present().name])
    if facts["etcd-data"]:
        found.append("/var/lib/etcd/*")
    if not found:
        return p
    if not facts["kubeadm-path"]:
        p.error = f"kubeadm is not installed, yet {', '.join(found)} exist: remove them by hand"
        return p
    p.run(f"kubeadm reset -f{runtimes.cri_flag(t.inv)}", f"found {', '.join(found)}")
    return p


KUBEADM_RESET = cluster_phase("kubeadm-reset", "kubeadm reset -f", _kubeadm_facts, _kubeadm_plan)


# -- iptables ------------------------------------------------------------------------------------
def _iptables() -> F.Fact:
    def parse(out: str, rc: int) -> dict[str, list[str]] | None:
        if rc != 0:
            return None
        tables: dict[str, list[str]] = {}
        current = None
        for ln in out.splitlines():
            if ln.startswith("*"):
                current = tables.setdefault(ln[1:].strip(), [])
            elif current is not None and ln.startswith((":", "-A")):
                current.append(ln.strip())
        return tables

    cmd = "; ".join(f"iptables-save -t {t}" for t in TABLES)
    return F.Fact("iptables", cmd, parse)


def iptables_leftovers(tables: dict[str, list[str]], pod_cidr: str) -> list[str]:
    """Chains and rules Kubernetes, kube-proxy, flannel or CNI left, as ``table: line``."""
    found = []
    for table, lines in tables.items():
        for ln in lines:
            if _K8S.search(ln) or (ln.startswith("-A") and pod_cidr in ln):
                found.append(f"{table}: {ln}")
    return found


def _iptables_plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    tables = facts["iptables"]
    if tables is None:
        return p
    left = iptables_leftovers(tables, t.inv.cluster.pod_network_cidr)
    if not left:
        return p
    lines = [
        # Policies to ACCEPT first: flushing with a DROP policy would cut this SSH session.
        "iptables -P INPUT ACCEPT && iptables -P FORWARD ACCEPT && iptables -P OUTPUT ACCEPT",
        *(f"iptables -t {tb} -F && iptables -t {tb} -X" for tb in TABLES),
    ]
    if t.inv.node_prep.firewall == "keep":
        lines.append("if systemctl is-active -q firewalld; then firewall-cmd --reload; fi")
    p.run(" && ".join(lines), f"{len(left)} Kubernetes chain(s)/rule(s), e.g. {left[0]}",
          label="iptables: policies ACCEPT, then flush and delete chains (filter, nat, mangle)")
    return p


IPTABLES = cluster_phase("iptables", "iptables rules kubeadm reset leaves", lambda t: [_iptables()],
                 _iptables_plan)


# -- IPVS ----------------------------------------------------------------------------------------
def _ipvs() -> F.Fact:
    return F.Fact(
        "ipvs",
        "ipvsadm -S -n",
        lambda out, rc: [ln for ln in out.splitlines() if ln.startswith("-A")] if rc == 0 else [],
    )


def _ipvs_plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    if facts["ipvs"]:
        p.run("ipvsadm --clear", f"{len(facts['ipvs'])} virtual service(s) left by kube-proxy")
    return p


IPVS = cluster_phase("ipvs", "IPVS tables kubeadm reset leaves", lambda t: [_ipvs()], _ipvs_plan)


# -- nftables (kube-proxy's nftables mode) --------------------------------------------------------
KUBE_PROXY_TABLES = ("ip kube-proxy", "ip6 kube-proxy")
"""The tables kube-proxy's nftables mode keeps (pkg/proxy/nftables: kubeProxyTable in the ip and
ip6 families); kubeadm reset leaves them as it leaves the iptables chains."""


def _nft() -> F.Fact:
    def parse(out: str, rc: int) -> list[str]:
        found = {ln.strip().removeprefix("table ") for ln in out.splitlines()} if rc == 0 else set()
        return [t for t in KUBE_PROXY_TABLES if t in found]

    return F.Fact("nftables", "nft list tables 2>/dev/null", parse)


def _nft_plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    for table in facts["nftables"]:
        p.run(f"nft delete table {table}", f"table {table} left by kube-proxy (nftables mode)")
    return p


NFTABLES = cluster_phase("nftables", "kube-proxy's nftables tables kubeadm reset leaves",
                 lambda t: [_nft()], _nft_plan)


# -- CNI links and directories -------------------------------------------------------------------
def _links() -> F.Fact:
    def parse(out: str, rc: int) -> set[str]:
        names = set()
        for ln in out.splitlines():
            parts = ln.split(":")
            if len(parts) > 2:
                names.add(parts[1].strip().split("@")[0])
        return names

    return F.Fact("links", "ip -o link show", parse)


def _links_plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    for name in CNI_LINKS:
        if name in facts["links"]:
            p.run(f"ip link del {name}")
    return p


LINKS = cluster_phase("cni-links", "cni0, flannel.1, kube-ipvs0", lambda t: [_links()], _links_plan)


def _dirs_plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    found = [d for d in CNI_DIRS if d in facts[present(CNI_DIRS).name]]
    if found:
        p.run(f"rm -rf {' '.join(found)}", "CNI config and state: stale ones break the next init")
    return p


DIRS = cluster_phase("cni-files", "/etc/cni/net.d, /var/lib/cni, /run/flannel",
             lambda t: [present(CNI_DIRS)], _dirs_plan)


# -- the user's ~/.kube --------------------------------------------------------------------------
def _kube_dir(t: Target) -> F.Fact:
    user = shlex.quote(t.user)
    return F.command(
        f"kube-dir:{t.user}",
        f'h=$(getent passwd {user} | cut -d: -f6); [ -n "$h" ] && [ -e "$h/.kube" ] && echo yes',
    )


def _kubeconfig_phase(stamp: str) -> Phase:
    def plan(t: Target, facts: F.Facts) -> Plan:
        p = Plan()
        acct = facts[account(t.user).name]
        if acct is None or not facts[_kube_dir(t).name]:
            return p
        src = shlex.quote(f"{acct.home}/.kube")
        dst = shlex.quote(f"{acct.home}/.kube.k8s-bootstrap-{stamp}.bak")
        p.run(f"mv {src} {dst}", "its config names a cluster that is gone (the seed's x509 trap)")
        return p

    return cluster_phase("kubeconfig", "move the SSH user's ~/.kube to a backup",
                 lambda t: [account(t.user), _kube_dir(t)], plan)


def reset_phases(stamp: str | None = None) -> list[Phase]:
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    return [KUBEADM_RESET, IPTABLES, IPVS, NFTABLES, LINKS, DIRS, _kubeconfig_phase(stamp)]


# -- drain and delete, on the init node ---------------------------------------------------------
def drain_command(node: str, version: tuple[int, int, int]) -> str:
    """``kubectl drain`` then ``delete node``; --delete-emptydir-data replaced
    --delete-local-data in 1.20."""
    data = "--delete-emptydir-data" if version[:2] >= (1, 20) else "--delete-local-data"
    q = shlex.quote(node)
    return (
        f"{KUBECTL} drain {q} --ignore-daemonsets {data} --force --timeout=120s && "
        f"{KUBECTL} delete node {q}"
    )


def _registered(data: Data, session: Session, nodes: list[Node]) -> None:
    """Names of the nodes the cluster knows (``known``), or why the init node cannot tell
    (``unknown``)."""
    try:
        facts = data.runner.gather(
            session,
            [present(), F.Fact("nodes", f"{KUBECTL} get nodes -o name",
                               lambda out, rc: {ln.split("/", 1)[-1] for ln in out.split()}
                               if rc == 0 else None)],
        )
    except BootstrapError as exc:
        data.set("unknown", f"master unreachable ({exc.message})")
        return
    if not initialised(facts[present().name]):
        data.set("unknown", "the master is not initialised")
    elif facts["nodes"] is None:
        data.set("unknown", "the API server does not answer")
    else:
        data.set("known", facts["nodes"])


def _drain(data: Data, session: Session, nodes: list[Node]) -> StepResult:
    """Drain and delete one worker the cluster knows, on the init node."""
    (node,) = nodes
    inv, known = data.inv, data.get("known")
    on = inv.init_node.name
    if known is None:
        return StepResult("drain", OK, message=f"not drained: {data.get('unknown')}")
    if node.name not in known:
        return StepResult("drain", OK, message="not in the cluster")
    command = drain_command(node.name, inv.cluster.version_tuple)
    if data.runner.opts.dry_run:
        return StepResult("drain", CHANGED, message=f"would: on {on}: {command}")
    started = time.monotonic()
    try:
        out = session.run(command, what=f"drain {node.name}", timeout=300,
                          journal=("drain", f"drain and delete node {node.name}"))
    except BootstrapError as exc:
        return StepResult("drain", FAILED, time.monotonic() - started,
                          f"kubectl drain/delete on {on}: {exc.message}")
    seconds = time.monotonic() - started
    if out.ok:
        return StepResult("drain", CHANGED, seconds, f"drained and deleted on {on}")
    return StepResult("drain", FAILED, seconds,
                      f"kubectl drain/delete on {on}: " + _last_line(out.stderr or out.stdout))


def _last_line(text: str) -> str:
    """The last line that says something (kubectl exec's own closing line is not it)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()
             and not ln.startswith("command terminated with exit code")]
    return lines[-1] if lines else "failed"


def leaving(data: Data) -> list[Node]:
    """Control planes that leave a cluster keeping others (not every control plane is reset)."""
    planes = [n for n in data.targets if n.is_control_plane]
    return [] if len(planes) == len(data.inv.control_plane) else planes


def _workers(data: Data) -> list[Node]:
    """The nodes drained and deleted first: targeted workers and leaving control planes."""
    return [n for n in data.targets if not n.is_control_plane or n in leaving(data)]


def _delete_dead(data: Data, session: Session, nodes: list[Node]) -> StepResult:
    """A dead node: deleted from the cluster without a drain (nothing there could evict)."""
    (node,) = nodes
    known = data.get("known")
    if known is not None and node.name not in known:
        return StepResult("drain", OK, message="not in the cluster")
    command = f"{KUBECTL} delete node {shlex.quote(node.name)}"
    if data.runner.opts.dry_run:
        return StepResult("drain", CHANGED, message=f"would: {command} (--dead: no drain)")
    out = session.run(command, what=f"delete node {node.name}", timeout=120,
                      journal=("drain", f"delete node {node.name} (dead)"))
    if out.ok:
        return StepResult("drain", CHANGED, message="deleted (--dead: not drained)")
    return StepResult("drain", FAILED, message="kubectl delete node: "
                      + _last_line(out.stderr or out.stdout))


LIST_TRIES = 3
"""Tries of the member list when kubectl cannot connect (the API endpoint's VIP may be moving,
its holder's haproxy between health checks): 2 s apart."""


def _members(data: Data, session: Session) -> tuple[list[etcd.Member], set[str]]:
    """The members and the IDs of the healthy ones, read through the init node's etcd pod."""
    via = data.inv.init_node
    for attempt in range(LIST_TRIES):  # a connection lost while a VIP moves: ask again
        listed = session.run(etcd.members_command(via), what="list the etcd members",
                             readonly=True, timeout=60)
        if listed.ok or "Unable to connect to the server" not in listed.stderr + listed.stdout:
            break
        if attempt + 1 < LIST_TRIES:
            time.sleep(2)
    if not listed.ok:
        raise BootstrapError(f"{via.name}: cannot list the etcd members: "
                             + _last_line(listed.stderr or listed.stdout))
    members = etcd.parse_members(listed.stdout)
    health = session.run(etcd.health_command(via, members), what="read the etcd members' health",
                         readonly=True, timeout=60)
    return members, etcd.healthy_names(members, etcd.parse_health(health.stdout))


def _quorum(data: Data, session: Session, nodes: list[Node]) -> None:
    """Refuse, before anything changes, a removal that would lose etcd's quorum."""
    members, healthy = _members(data, session)
    data.set("members", members)
    gone = [m for n in leaving(data) if (m := etcd.member_of(n, members)) is not None]
    problem = etcd.removal_problem(members, healthy, gone)
    if problem and not data.runner.opts.allow_quorum_loss:
        raise BootstrapError(f"reset refused: {problem}. Nothing was changed. Bring the "
                             "unhealthy members back first, or pass --allow-quorum-loss if "
                             "losing the cluster's data is what you want")
    if problem:
        data.runner.reporter.print(f"reset: --allow-quorum-loss: {problem}")


def _remove_member(data: Data, session: Session, nodes: list[Node]) -> StepResult:
    """Remove a leaving control plane's etcd member (judged again from live health), and check
    it is gone."""
    (node,) = nodes
    started = time.monotonic()
    members, healthy = _members(data, session)
    member = etcd.member_of(node, members)
    if member is None:
        return StepResult("etcd-member", OK, message="no etcd member")
    problem = etcd.removal_problem(members, healthy, [member])
    if problem and not data.runner.opts.allow_quorum_loss:
        return StepResult("etcd-member", FAILED, message=f"not removed: {problem}")
    if data.runner.opts.dry_run:
        return StepResult("etcd-member", CHANGED, message=f"would: remove member {member.id} "
                          f"through {data.inv.init_node.name}'s etcd")
    out = session.run(etcd.remove_command(data.inv.init_node, member),
                      what=f"remove {node.name}'s etcd member", timeout=60,
                      journal=("etcd-member", f"remove etcd member {member.id} ({node.name})"))
    if not out.ok:
        return StepResult("etcd-member", FAILED, time.monotonic() - started,
                          "etcdctl member remove: " + _last_line(out.stderr or out.stdout))
    after, healthy = _members(data, session)
    if etcd.member_of(node, after) is not None:
        return StepResult("etcd-member", FAILED, time.monotonic() - started,
                          f"member {member.id} is still listed after its removal")
    well = sum(m.id in healthy for m in after)
    return StepResult("etcd-member", CHANGED, time.monotonic() - started,
                      f"removed member {member.id}; {len(after)} left, {well} healthy")


def reset_stages() -> list[Stage]:
    """reset: drain and delete each targeted worker and leaving control plane the cluster knows
    (on the init node, one at a time), remove the leaving control planes' etcd members, then
    reset every target that can be reached, in parallel. A worker whose drain failed is still
    reset: the user asked for it, and kubeadm's own reset does not need the API server."""
    phases = reset_phases()

    def drained(data: Data) -> list[Node]:
        return [n for n in _workers(data) if n.name not in data.runner.opts.dead]

    def dead(data: Data) -> list[Node]:
        return [n for n in data.targets if n.name in data.runner.opts.dead]

    def alive(data: Data) -> list[Node]:
        """The targets to reset: not the dead, and not a control plane whose member is still
        there (a member whose node is reset lowers what etcd survives)."""
        return [n for n in data.targets if n.name not in data.runner.opts.dead
                and not any(s.name == "etcd-member" and s.status == FAILED
                            for s in data.result(n).steps)]

    def drain(data: Data, session: Session, nodes: list[Node]) -> StepResult:
        return _drain(data, session, nodes)

    return [
        Stage("nodes", lambda d: [d.inv.init_node], action=_registered, on=INIT, once=True,
              when=lambda d: None if _workers(d) and "drain" not in d.runner.skipped
              else "no worker to drain"),
        Stage("quorum", lambda d: [d.inv.init_node], action=_quorum, on=INIT, once=True,
              when=lambda d: None if leaving(d) else "no control plane leaves"),
        Stage("drain", drained, action=drain, on=INIT, names=("drain",)),
        Stage("delete", dead, action=_delete_dead, on=INIT),
        Stage("etcd-member", leaving, action=_remove_member, on=INIT, names=("etcd-member",)),
        Stage("reset", alive, phases=lambda t, d: phases,
              names=tuple(p.name for p in phases)),
    ]


def reset(runner: Runner, targets: list[Node]) -> dict[str, HostResult]:
    """Drain/delete (when the init node can), remove leaving members, then reset every target
    that can be reached, in parallel."""
    return run_stages(runner, reset_stages(), Data(runner, targets))
