"""join-workers: a fresh short-lived token on the master, then every worker not yet joined joins
in parallel through a JoinConfiguration (mode 0600, fed on stdin, removed afterwards), then wait.

The token never appears on a command line, in a log or in a report: it is read from the master
with its output withheld, registered as a secret, and travels only inside the uploaded file.
"""

from __future__ import annotations

import re
import shlex
import threading

from .. import facts as F
from .. import runtimes
from ..engine import (
    CHANGED,
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    OK,
    RUNNING,
    HostResult,
    Runner,
    StepResult,
    settle,
)
from ..errors import BootstrapError, CommandError
from ..interrupt import CLEANUP_TIMEOUT, Interrupted
from ..models import Node
from ..plan import Plan
from ..ssh import Session, run_pool
from ..steps import Target
from ..steps import images as images_step
from .common import ADMIN_CONF, KUBELET_CONF, K, evidence_script, present, undo_script
from .init import initialised, wait_ready
from .kubeadm_config import JOIN_TOKEN_TTL, join_config
from .phases import (
    Phase,
    cluster_phase,
    gather,
    host_failure,
    images_phase,
    preflight_phase,
    record,
    run_hosts,
    skipped_or,
)

JOIN_FILE = f"{K}/kubeadm-join.yaml"
TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
PLACEHOLDER = "<a fresh bootstrap token, created at run time>"
CA_HASH = F.command(
    "ca-hash",
    f"openssl x509 -pubkey -noout -in {K}/pki/ca.crt | openssl pkey -pubin -outform der "
    "| sha256sum | cut -d' ' -f1",
)
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

    return cluster_phase("kubeadm-join", "kubeadm join --config", lambda t: [present()], plan,
                 on_failure=_join_failed)


# -- the master's part ---------------------------------------------------------------------------
class Master:
    """The master's session for the run: cluster facts, the token, the wait."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.node = runner.inv.init_node
        self.session = runner.session(self.node)
        self.result = HostResult(self.node.name)
        self.token: str | None = None
        self._lock = threading.Lock()

    def record(self, res: StepResult) -> StepResult:
        return record(self.runner, self.result, res)

    def facts(self) -> F.Facts:
        return self.runner.gather(self.session, [present(), CA_HASH])

    def create_token(self) -> str:
        """A fresh token with a short TTL, read with its output withheld from every log."""
        res = self.session.run(
            f"kubeadm token create --ttl {JOIN_TOKEN_TTL} "
            "--description 'k8s-bootstrap join-workers'",
            what="create a join token",
            sensitive=True,
            journal=("join-token", f"create a join token (ttl {JOIN_TOKEN_TTL})"),
        )
        token = res.stdout.strip()
        if not res.ok or not TOKEN.match(token):
            raise CommandError(self.node.name, "kubeadm token create", res.rc, res.stderr)
        self.runner.secrets.add(token)
        self.token = token
        return token

    def delete_token(self) -> None:
        """A cleanup: runs even after Ctrl-C, with a short timeout."""
        if self.token is None:
            return
        tid = self.token.split(".")[0]
        try:
            res = self.session.run(f"kubeadm token delete {tid}", what="delete the join token",
                                   cleanup=True, timeout=CLEANUP_TIMEOUT,
                                   journal=("token-delete", f"delete join token {tid}"))
        except BootstrapError as exc:
            self.record(StepResult("token-delete", FAILED,
                                   message=f"could not delete token {tid} ({exc.message}); "
                                   f"it expires within {JOIN_TOKEN_TTL}"))
            return
        msg = f"deleted token {tid}" if res.ok else f"could not delete token {tid}; it expires"
        self.record(StepResult("token-delete", OK if res.ok else FAILED, message=msg))


def _reason(res: StepResult | None) -> str:
    return res.message if res else ""


def join_workers(runner: Runner, workers: list[Node], ignore: list[str], timeout: int
                 ) -> dict[str, HostResult]:
    """Join ``workers`` (those not yet joined), then wait until every one of them is Ready."""
    inv, dry_run, reporter = runner.inv, runner.opts.dry_run, runner.reporter
    results: dict[str, HostResult] = {}
    master = Master(runner)
    results[master.node.name] = master.result
    try:
        mfacts = master.facts()
        if not initialised(mfacts[present().name]):
            raise BootstrapError(
                f"{master.node.name}: the master is not initialised ({ADMIN_CONF} missing): "
                "run invoke init-master first"
            )
        ca_hash = f"sha256:{mfacts['ca-hash']}" if mfacts["ca-hash"] else None
        if ca_hash is None:
            raise BootstrapError(f"{master.node.name}: cannot hash {K}/pki/ca.crt (openssl)")
        phases = [PREFLIGHT]
        if workers and images_step.coredns_workaround(Target(inv, workers[0])):
            phases.append(IMAGES)
        # Phase 1: who needs joining (one round trip a worker, connection closed after).
        pre = run_pool(workers, lambda n: _gather(runner, n, phases), _parallel(runner))
        facts: dict[str, F.Facts] = {}
        for node, got in pre.items():
            res = results.setdefault(node.name, HostResult(node.name))
            if isinstance(got, Interrupted):
                res.status = INTERRUPTED
            elif isinstance(got, BaseException):
                host_failure(res, got)
                reporter.host_failed(res)
            else:
                facts[node.name] = got
        todo = [n for n in workers if n.name in facts and not joined(facts[n.name][present().name])]
        token = PLACEHOLDER
        runner.interrupt.check()
        if todo and dry_run:
            master.record(StepResult(
                "join-token", CHANGED,
                message=f"would: kubeadm token create --ttl {JOIN_TOKEN_TTL}",
            ))
        elif todo:
            token = master.create_token()
            master.record(StepResult(
                "join-token", CHANGED,
                message=f"token {token.split('.')[0]}.**** valid {JOIN_TOKEN_TTL}",
            ))
        join = join_phase(token, ca_hash, ignore, dry_run)
        # Phase 2: every worker in parallel; the joined ones only report ok.
        run_hosts(
            runner, [n for n in workers if n.name in facts], lambda n: [*phases, join],
            dry_run, results, facts,
        )
        for node in todo:
            _explain_token(results[node.name], reporter)
        _remove_join_files(runner, [n for n in todo if _abandoned(results[n.name])])
        ready = [n.name for n in workers if n.name in facts and _joined_now(results[n.name])]
        if ready and not runner.interrupted:
            wait = skipped_or(runner, "wait-ready", lambda: wait_ready(
                runner, master.session, Target(inv, master.node), ready, timeout))
            for name in ready:
                res = StepResult(wait.name, wait.status, wait.seconds, wait.message)
                results[name].steps.append(res)
                reporter.step(name, res)
        new = [n.name for n in todo if _joined_now(results[n.name])]
        old = [n for n in ready if n not in new]
        reporter.print(
            f"join-workers: {'would join' if dry_run else 'joined'} {', '.join(new) or 'none'}"
            + (f"; already in the cluster: {', '.join(old)}" if old else "")
        )
    except BootstrapError as exc:
        host_failure(master.result, exc)
        reporter.host_failed(master.result)
        for node in workers:
            res = results.setdefault(node.name, HostResult(node.name))
            if not res.steps and res.status != FAILED:
                res.status, res.message = FAILED, f"not run: {exc.message}"
    except Interrupted:
        for node in workers:
            res = results.setdefault(node.name, HostResult(node.name))
            if not res.steps:
                res.steps.append(StepResult("kubeadm-join", NOT_STARTED, message="interrupted"))
    finally:
        try:
            if not dry_run:
                master.delete_token()
        finally:
            master.session.close()
    order = [master.node.name] + [n.name for n in workers]
    return {name: settle(results[name]) for name in order if name in results}


def _parallel(runner: Runner) -> int:
    return runner.opts.parallel or runner.inv.ssh.parallel


def _gather(runner: Runner, node: Node, phases: list[Phase]) -> F.Facts:
    session = runner.session(node)
    try:
        return gather(runner, session, Target(runner.inv, node), phases)
    finally:
        session.close()


def _abandoned(res: HostResult) -> bool:
    return any(s.name == "kubeadm-join" and s.status == RUNNING for s in res.steps)


def _remove_join_files(runner: Runner, nodes: list[Node]) -> None:
    """After Ctrl-C gave up a join: its JoinConfiguration (it holds the token) goes, with a
    short timeout, whatever else happens."""

    def remove(node: Node) -> None:
        session = runner.session(node)
        try:
            session.run(f"rm -f {shlex.quote(JOIN_FILE)}", what=f"remove {JOIN_FILE}",
                        cleanup=True, timeout=CLEANUP_TIMEOUT)
            runner.reporter.print(f"[{node.name}] cleanup: removed {JOIN_FILE}")
        except BootstrapError as exc:
            runner.reporter.print(f"[{node.name}] cleanup: could not remove {JOIN_FILE}: "
                                  f"{exc.message}")
        finally:
            session.close()

    run_pool(nodes, remove, _parallel(runner))


def _joined_now(res: HostResult) -> bool:
    by_name = {s.name: s for s in res.steps}
    step = by_name.get("kubeadm-join")
    return res.status != FAILED and step is not None and step.status in (OK, CHANGED)


def _explain_token(res: HostResult, reporter) -> None:
    """A refused token gets the fix, not just kubeadm's words."""
    step = next((s for s in res.steps if s.name == "kubeadm-join"), None)
    if step and step.status == FAILED and any(w in step.message.lower() for w in EXPIRED):
        step.message = (
            "the join token was refused (expired or deleted before this node used it): "
            "re-run invoke join-workers, which creates a fresh token. kubeadm: " + step.message
        )
        reporter.print(f"[{res.name}] {step.name} {step.message}")

