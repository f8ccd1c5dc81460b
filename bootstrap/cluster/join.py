"""join-workers, as a list of stages (bootstrap/stages.py): a fresh short-lived token on the init
node, then every worker not yet joined joins in parallel through a JoinConfiguration (mode 0600,
fed on stdin, removed afterwards), then wait, then the token is deleted.

The token never appears on a command line, in a log or in a report: it is read from the master
with its output withheld, registered as a secret, and travels only inside the uploaded file.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Callable

from .. import facts as F
from .. import runtimes
from ..engine import CHANGED, FAILED, OK, RUNNING, HostResult, Runner, StepResult
from ..errors import BootstrapError, CommandError
from ..interrupt import CLEANUP_TIMEOUT
from ..models import Node
from ..plan import Plan
from ..ssh import Session
from ..stages import INIT, Data, Stage, gather, run_stages
from ..steps import Target
from ..steps import images as images_step
from . import worker_kubectl
from .common import ADMIN_CONF, KUBELET_CONF, K, evidence_script, present, undo_script
from .init import initialised, wait_ready
from .kubeadm_config import JOIN_TOKEN_TTL, join_config
from .phases import Phase, cluster_phase, images_phase, kubeadm_lines, preflight_phase

JOIN_FILE = f"{K}/kubeadm-join.yaml"
TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
PLACEHOLDER = "<a fresh bootstrap token, created at run time>"
CA_HASH = F.command(
    "ca-hash",
    f"openssl x509 -pubkey -noout -in {K}/pki/ca.crt | openssl pkey -pubin -outform der "
    "| sha256sum | cut -d' ' -f1",
)
ADMIN_SHA = F.command("admin-conf-sha", f"sha256sum < {ADMIN_CONF} | cut -d' ' -f1")
EXPIRED = ("could not find a JWS signature", "token id", "has expired", "invalid bootstrap token")


def joined(found: set[str]) -> bool:
    return KUBELET_CONF in found


# -- worker phases -------------------------------------------------------------------------------
PREFLIGHT = preflight_phase(joined, f"already joined ({KUBELET_CONF} exists)")
# Only where kubelet would pull coredns under the wrong name (kubeadm#2501, 1.21.0-1.21.1).
IMAGES = images_phase(joined)


def join_command(ignore: list[str]) -> str:
    cmd = f"kubeadm join --config {JOIN_FILE}"
    if ignore:
        cmd += f" --ignore-preflight-errors={shlex.quote(','.join(ignore))}"
    return cmd


def _join_failed(t: Target, session: Session, stderr: str) -> str:
    """After a failed join: evidence, then ``kubeadm reset -f`` if it got past preflight."""
    script = evidence_script(kubectl=False, runtime=t.inv.cluster.runtime) + undo_script(
        "kubeadm join", (KUBELET_CONF, f"{K}/bootstrap-kubelet.conf", f"{K}/pki/ca.crt"),
        session.journal_entry("kubeadm-join", "kubeadm reset -f (undo a half-done join)"),
        runtimes.cri_flag(t.inv),
    )
    return session.run(script, what="collect join evidence", timeout=300).stdout


def join_phase(token: str, ca_hash: str, ignore: list[str], dry_run: bool) -> Phase:
    """Upload the JoinConfiguration (secret, on stdin), join, always remove the file."""

    def plan(t: Target, facts: F.Facts) -> Plan:
        p = Plan()
        if joined(facts[present().name]):
            return p
        q = shlex.quote(JOIN_FILE)
        p.run(f"rm -f {q} {q}.k8s-bootstrap.bak; trap 'rm -f {q}' EXIT",
              label=f"remove {JOIN_FILE} on exit")
        p.write(
            JOIN_FILE,
            join_config(t.inv, t.node, token, ca_hash),
            None,
            mode=0o600,
            secret=not dry_run,
        )
        p.run(join_command(ignore), f"join {t.inv.control_plane_endpoint}")
        return p

    phase = cluster_phase("kubeadm-join", "kubeadm join --config", lambda t: [present()], plan,
                          on_failure=_join_failed)
    return dataclasses.replace(phase, explain=lambda stderr: explain_token(kubeadm_lines(stderr)))


# -- the init node's part -----------------------------------------------------------------------
def _cluster(data: Data, session: Session, nodes: list[Node]) -> None:
    """The init node is initialised; its CA's hash goes to the data (``ca_hash``)."""
    node = data.inv.init_node
    facts = data.runner.gather(session, [present(), CA_HASH, ADMIN_SHA])
    if not initialised(facts[present().name]):
        raise BootstrapError(f"{node.name}: the master is not initialised ({ADMIN_CONF} missing): "
                             "run invoke init-master first")
    if not facts["ca-hash"]:
        raise BootstrapError(f"{node.name}: cannot hash {K}/pki/ca.crt (openssl)")
    data.set("ca_hash", f"sha256:{facts['ca-hash']}")
    data.set("admin_sha", facts[ADMIN_SHA.name] or "")


def create_token(data: Data, session: Session) -> str:
    """A fresh token with a short TTL, read with its output withheld from every log."""
    res = session.run(
        f"kubeadm token create --ttl {JOIN_TOKEN_TTL} --description 'k8s-bootstrap join-workers'",
        what="create a join token",
        sensitive=True,
        journal=("join-token", f"create a join token (ttl {JOIN_TOKEN_TTL})"),
    )
    token = res.stdout.strip()
    if not res.ok or not TOKEN.match(token):
        raise CommandError(session.name, "kubeadm token create", res.rc, res.stderr)
    return token


def _token(data: Data, session: Session, nodes: list[Node]) -> StepResult:
    """The token goes to the data (``token``, a secret); a dry run only says it would."""
    if data.runner.opts.dry_run:
        return StepResult("join-token", CHANGED,
                          message=f"would: kubeadm token create --ttl {JOIN_TOKEN_TTL}")
    token = create_token(data, session)
    data.set("token", token, secret=True)
    return StepResult("join-token", CHANGED,
                      message=f"token {token.split('.')[0]}.**** valid {JOIN_TOKEN_TTL}")


def _delete_token(data: Data, session: Session, nodes: list[Node]) -> StepResult | None:
    """A cleanup: runs even after Ctrl-C, with a short timeout."""
    token = data.get("token")
    if token is None:
        return None
    tid = token.split(".")[0]
    try:
        res = session.run(f"kubeadm token delete {tid}", what="delete the join token",
                          cleanup=True, timeout=CLEANUP_TIMEOUT,
                          journal=("token-delete", f"delete join token {tid}"))
    except BootstrapError as exc:
        return StepResult("token-delete", FAILED, message=f"could not delete token {tid} "
                          f"({exc.message}); it expires within {JOIN_TOKEN_TTL}")
    if res.ok:
        return StepResult("token-delete", OK, message=f"deleted token {tid}")
    return StepResult("token-delete", FAILED, message=f"could not delete token {tid}; it expires")


def _credentials(data: Data, session: Session, nodes: list[Node]) -> StepResult:
    """The workers' kubeconfig (cluster.kubectl_on_workers), read or issued on the init node."""
    mode = data.inv.cluster.kubectl_on_workers
    if data.runner.opts.dry_run:
        what = (f"cat {ADMIN_CONF}" if mode == "admin"
                else worker_kubectl.view_command(Target(data.inv, data.inv.init_node)))
        data.set("worker_kubeconfig", f"<the {mode} kubeconfig, issued at run time>")
        return StepResult("kubectl-credentials", CHANGED, message=f"would: {what}")
    content = worker_kubectl.credentials(mode, Target(data.inv, data.inv.init_node), session,
                                         data.runner.secrets)
    data.set("worker_kubeconfig", content, secret=True)
    return StepResult("kubectl-credentials", CHANGED,
                      message=f"{mode} kubeconfig for the workers"
                      + (f" (user {worker_kubectl.VIEW_USER}, ClusterRole view)"
                         if mode == "view" else " (cluster-admin)"))


def _credentials_needed(data: Data) -> str | None:
    mode = data.inv.cluster.kubectl_on_workers
    for node in data.targets:
        facts = data.facts.get(node.name)
        if facts is None:
            continue
        have = facts.get(worker_kubectl.state(Target(data.inv, node)).name)
        if worker_kubectl.needs_credentials(mode, have, data.get("admin_sha", "")):
            return None
    return "no worker needs a kubeconfig"


def _wait(timeout: int) -> Callable[[Data, Session, list[Node]], StepResult]:
    def wait(data: Data, session: Session, nodes: list[Node]) -> StepResult:
        t = Target(data.inv, data.inv.init_node)
        return wait_ready(data.runner, session, t, [n.name for n in nodes], timeout)

    return wait


# -- the workers' part ---------------------------------------------------------------------------
def _worker_phases(ignore: list[str]) -> Callable[[Target, Data], list[Phase]]:
    def phases(t: Target, data: Data) -> list[Phase]:
        found = [PREFLIGHT]
        if images_step.coredns_workaround(t):
            found.append(IMAGES)
        dry_run = data.runner.opts.dry_run
        join = join_phase(data.get("token", PLACEHOLDER), data.get("ca_hash", ""), ignore,
                          dry_run)
        kubectl = worker_kubectl.phase(t.inv.cluster.kubectl_on_workers,
                                       data.get("worker_kubeconfig"), data.get("admin_sha", ""),
                                       dry_run)
        return [*found, join, kubectl]

    return phases


def who(phases: Callable[[Target, Data], list[Phase]], todo: str = "todo"
        ) -> Callable[[Data, Session, list[Node]], None]:
    """Each node's facts, gathered for its ``phases`` (one round trip); who is not yet joined
    goes to the data (``todo``)."""

    def gather_one(data: Data, session: Session, nodes: list[Node]) -> None:
        (node,) = nodes
        t = Target(data.inv, node)
        facts = gather(data.runner, session, t, phases(t, data))
        data.facts[node.name] = facts
        if not joined(facts[present().name]):
            data.add(todo, node)

    return gather_one


def _remove_join_file(data: Data, session: Session, nodes: list[Node]) -> None:
    """After Ctrl-C gave up a join: its JoinConfiguration (it holds the token) goes, with a
    short timeout, whatever else happens."""
    name = nodes[0].name
    try:
        session.run(f"rm -f {shlex.quote(JOIN_FILE)}", what=f"remove {JOIN_FILE}",
                    cleanup=True, timeout=CLEANUP_TIMEOUT)
        data.runner.reporter.print(f"[{name}] cleanup: removed {JOIN_FILE}")
    except BootstrapError as exc:
        data.runner.reporter.print(f"[{name}] cleanup: could not remove {JOIN_FILE}: "
                                   f"{exc.message}")


def _init_node(data: Data) -> list[Node]:
    return [data.inv.init_node]


def _todo(data: Data, key: str = "todo") -> list[Node]:
    return [n for n in data.targets if n in data.get(key, [])]


def step(data: Data, node: Node, name: str) -> StepResult | None:
    """A node's result of the phase or action ``name`` in this command, if it ran."""
    return next((s for s in data.result(node).steps if s.name == name), None)



def _joined_now(data: Data) -> list[Node]:
    """Workers in the cluster after the join stage: joined now, or already."""
    ok = []
    for node in data.targets:
        joined_ = step(data, node, "kubeadm-join")
        if data.result(node).status != FAILED and joined_ is not None and joined_.status in (
                OK, CHANGED):
            ok.append(node)
    return ok


def abandoned(data: Data, key: str = "todo") -> list[Node]:
    """The nodes whose join Ctrl-C gave up (their JoinConfiguration may still be there)."""
    return [n for n in _todo(data, key) if (s := step(data, n, "kubeadm-join")) is not None
            and s.status == RUNNING]


def join_stages(ignore: list[str], timeout: int) -> list[Stage]:
    """join-workers: the init node's CA hash; each worker's facts (who needs joining); a token,
    when one does; the joins, in parallel; the wait; the token deleted, whatever happened."""
    return [
        Stage("cluster", _init_node, action=_cluster, on=INIT, once=True),
        Stage("gather", lambda d: d.targets, action=who(_worker_phases(ignore))),
        Stage("join-token", _init_node, action=_token, on=INIT, once=True,
              when=lambda d: None if _todo(d) else "every worker is joined"),
        Stage("kubectl-credentials", _init_node, action=_credentials, on=INIT, once=True,
              when=_credentials_needed),
        Stage("join", lambda d: d.targets, phases=_worker_phases(ignore),
              names=("preflight", "images", "kubeadm-join", "kubectl")),
        Stage("join-files", abandoned, action=_remove_join_file, cleanup=True),
        Stage("wait-ready", _joined_now, action=_wait(timeout), on=INIT, once=True,
              names=("wait-ready",)),
        Stage("token-delete", _init_node, action=_delete_token, on=INIT, once=True,
              cleanup=True),
    ]


def join_workers(runner: Runner, workers: list[Node], ignore: list[str], timeout: int
                 ) -> dict[str, HostResult]:
    """Join ``workers`` (those not yet joined), then wait until every one of them is Ready."""
    data = Data(runner, workers)
    data.result(runner.inv.init_node)  # the init node's line in the recap, first
    results = run_stages(runner, join_stages(ignore, timeout), data)
    if any(step(data, n, "kubeadm-join") for n in workers) and not runner.interrupted:
        todo = _todo(data)
        new = [n.name for n in todo if n in _joined_now(data)]
        old = [n.name for n in _joined_now(data) if n not in todo]
        runner.reporter.print(
            f"join-workers: {'would join' if runner.opts.dry_run else 'joined'} "
            f"{', '.join(new) or 'none'}"
            + (f"; already in the cluster: {', '.join(old)}" if old else "")
        )
    return results


def explain_token(message: str) -> str:
    """A refused token gets the fix, not just kubeadm's words."""
    if any(w in message.lower() for w in EXPIRED):
        return ("the join token was refused (expired or deleted before this node used it): "
                "re-run invoke join-workers, which creates a fresh token. kubeadm: " + message)
    return message
