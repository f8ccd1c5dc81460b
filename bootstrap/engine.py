"""The engine: gathers every host's facts (one round trip each), judges preflight, then runs the
phases on each host through the one loop in workflow.py; sessions, leases and the journal.

Open SSH connections never exceed the pool size: phase 1 closes each session after its gather,
and phase 2 reconnects only the hosts with something to apply.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from . import checks, lease, platforms, workflow
from . import facts as F
from .errors import (
    BootstrapError,
    CommandError,
    ConnectError,
    HostError,
    SudoError,
)
from .interrupt import Interrupt, Interrupted
from .models import Inventory, Node
from .plan import BACKUP_SUFFIX, Action, WriteFile
from .report import Reporter
from .runinfo import RunInfo
from .secrets import Secrets
from .ssh import Result, Session, SudoPassword, run_pool
from .steps import Step, Target
from .workflow import (  # noqa: F401 (the results' shapes, re-exported for the commands)
    ABANDONED,
    CHANGED,
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    OK,
    RUNNING,
    SKIPPED,
    HostResult,
    StepResult,
    not_started,
    run_host,
    settle,
)


@dataclass
class RunOptions:
    dry_run: bool = False
    parallel: int | None = None
    skip: frozenset[str] = frozenset()  # --skip-phases: names of phases not to run


@dataclass
class _Gathered:
    """A host with every fact of the run and its clock offset from ours; its session is closed
    (phase 2 reopens it only to apply)."""

    target: Target
    session: Session
    facts: F.Facts
    offset: float


@dataclass
class Preflight:
    """Which preflight errors the user chose to ignore (``--ignore``)."""

    ignore: set[str] = field(default_factory=set)

    def ignored(self, f: checks.Finding) -> bool:
        return f.severity == checks.ERROR and ("all" in self.ignore or f.check in self.ignore)

    def blocking(self, findings: list[checks.Finding]) -> list[checks.Finding]:
        """The errors that stand (not ignored)."""
        return [f for f in findings if f.severity == checks.ERROR and not self.ignored(f)]

    def passes(self, findings: list[checks.Finding], reporter: Reporter) -> bool:
        """Print the findings; True when no error stands."""
        for f in sorted(findings, key=lambda f: (f.severity != checks.ERROR, f.node, f.check)):
            reporter.print(f.line(self.ignored(f)))
        blocking = self.blocking(findings)
        if blocking:
            names = ",".join(sorted({f.check for f in blocking}))
            reporter.print(
                f"preflight: {len(blocking)} error(s); nothing was changed. Fix them, "
                f"or skip a check with --ignore {names}"
            )
            return False
        reporter.print(
            f"preflight: passed ({len(findings)} warning(s) or ignored error(s))"
            if findings
            else "preflight: passed"
        )
        return True


def _clock_offset(facts: F.Facts, res: Result) -> float:
    """The node's clock minus ours. The clock is read first in the gather, so it ran between
    sending the script and its first bytes coming back: the middle of that, not of the whole
    gather, which takes seconds on the node that asks the mirrors (its midpoint made healthy
    nodes fail ClockSkew)."""
    node_time = facts.get(F.clock().name)
    if node_time is None:
        return 0.0
    back = res.first_out if res.first_out is not None else res.sent + res.seconds
    return node_time - (res.sent + back) / 2


def _mirror_node(nodes: list[Node]) -> Node | None:
    """The node that checks the mirrors: a control-plane node if selected, else the first."""
    return next((n for n in nodes if n.is_control_plane), nodes[0] if nodes else None)


def _reason(exc: object) -> str:
    if isinstance(exc, HostError):
        return exc.detail
    if isinstance(exc, BootstrapError):
        return exc.message
    return f"internal error: {exc!r}"


class Runner:
    """Runs a list of steps on many hosts, each host on its own SSH session, in a bounded pool."""

    def __init__(
        self,
        inv: Inventory,
        reporter: Reporter,
        opts: RunOptions,
        secrets: Secrets | None = None,
        prompt: Callable[[str], str] | None = None,
        run_info: RunInfo | None = None,
        interrupt: Interrupt | None = None,
    ) -> None:
        self.inv = inv
        self.reporter = reporter
        self.opts = opts
        self.secrets = secrets or Secrets()
        self.password = SudoPassword(inv.ssh.sudo_password_env, self.secrets, prompt)
        self.reporter.secrets = self.secrets
        self.run_info = run_info or RunInfo.new("run", changes=not opts.dry_run)
        self.interrupt = interrupt or Interrupt()
        # A run that changes nodes takes a lease on each node it changes (not dry runs).
        self.leasing = self.run_info.changes and not opts.dry_run
        self.leases: dict[str, lease.NodeLease] = {}
        self._leases_lock = threading.Lock()
        self.skipped: frozenset[str] = opts.skip

    def session(self, node: Node) -> Session:
        node_lease = None
        if self.leasing:
            with self._leases_lock:
                node_lease = self.leases.setdefault(node.name, lease.NodeLease())
        return Session(
            node, self.inv.ssh, self.secrets, self.password,
            log=self.reporter.host_log(node.name), run_info=self.run_info,
            interrupt=self.interrupt, node_lease=node_lease,
        )

    @property
    def interrupted(self) -> bool:
        return self.interrupt.requested

    def journal(self, session: Session, step: str) -> Callable[[Action], str]:
        """The journal entry of each action of ``step`` (nothing in a dry run)."""

        def entry(a: Action) -> str:
            backup = a.path + BACKUP_SUFFIX if isinstance(a, WriteFile) else None
            return session.journal_entry(step, a.describe(), backup)

        return entry

    def run(
        self, nodes: list[Node], steps: list[Step], preflight: Preflight | None = None
    ) -> dict[str, HostResult]:
        """Phase 1 connects, gathers every fact (one round trip a node) and disconnects;
        preflight judges the facts across nodes; phase 2 plans from them and reconnects only
        the hosts with something to apply. An error in preflight changes nothing."""
        parallel = self.opts.parallel or self.inv.ssh.parallel
        mirror_node = _mirror_node(nodes)
        gathered = run_pool(
            nodes, lambda n: self._gather(n, steps, preflight, n is mirror_node), parallel
        )
        results: dict[str, HostResult] = {}
        ready: dict[str, _Gathered] = {}
        findings: list[checks.Finding] = []
        for node in nodes:
            got = gathered[node]
            if isinstance(got, _Gathered):
                ready[node.name] = got
                continue
            if isinstance(got, Interrupted):
                results[node.name] = not_started(node.name, steps)
                continue
            res = HostResult(node.name, FAILED, message=_reason(got))
            results[node.name] = res
            if preflight is not None and isinstance(got, (ConnectError, SudoError)):
                check = "Sudo" if isinstance(got, SudoError) else "SSHReachable"
                findings.append(checks.Finding(check, checks.ERROR, node.name, res.message))
            else:
                self.reporter.host_failed(res)
        if self.interrupted:
            for name in ready:
                results[name] = not_started(name, steps)
            return {n.name: results[n.name] for n in nodes}
        if self._refuse_skips(ready, steps, results):
            return {n.name: results[n.name] for n in nodes}
        if preflight is not None:
            findings += checks.evaluate(
                self.inv,
                {n: g.facts for n, g in ready.items()},
                {n: g.offset for n, g in ready.items()},
            )
            if not preflight.passes(findings, self.reporter):
                for name in ready:
                    results[name] = HostResult(name, FAILED, message="not run: preflight failed")
                return {n.name: results[n.name] for n in nodes}
        if not steps:  # a check only
            for name in ready:
                errors = [f.message for f in preflight.blocking(findings) if f.node == name]
                results[name] = HostResult(
                    name, FAILED if errors else OK, message="; ".join(errors)
                )
            return {n.name: results[n.name] for n in nodes}
        applied = run_pool(
            [n for n in nodes if n.name in ready],
            lambda n: self._host(ready[n.name], steps),
            parallel,
        )
        for node, res in applied.items():
            if isinstance(res, BaseException):
                # A bug, not a host problem: still only this host's failure.
                res = HostResult(node.name, FAILED, message=f"internal error: {res!r}")
                self.reporter.host_failed(res)
            results[node.name] = res  # type: ignore[assignment]
        return {n.name: results[n.name] for n in nodes}

    def _refuse_skips(self, ready: dict[str, _Gathered], steps: list[Step],
                      results: dict[str, HostResult]) -> bool:
        """--skip-phases that a node cannot do without: refused on every node before anything
        changes (workflow.unmet)."""
        why = {name: workflow.unmet(g.target, steps, self.skipped, g.facts)
               for name, g in ready.items()}
        why = {name: reasons for name, reasons in why.items() if reasons}
        if not why:
            return False
        for name, reasons in why.items():
            self.reporter.print(f"[{name}] {workflow.SKIP_FLAG}: {'; '.join(reasons)}")
        self.reporter.print(f"{workflow.SKIP_FLAG}: refused on {', '.join(why)}; nothing was "
                            "changed")
        for name in ready:
            results[name] = HostResult(name, FAILED, message="; ".join(why[name]) if name in why
                                       else f"not run: {workflow.SKIP_FLAG} refused elsewhere")
        return True

    def _gather(
        self, node: Node, steps: list[Step], preflight: Preflight | None, mirror_node: bool
    ) -> _Gathered:
        self.interrupt.check()
        t = Target(self.inv, node)
        session = self.session(node)
        try:
            active = [s for s in steps if s.name not in self.skipped and not s.skip(t)]
            wanted = [*platforms.facts(), *(f for s in active for f in s.facts(t)),
                      *workflow.need_facts(t, steps, self.skipped)]
            if preflight is not None:
                wanted += checks.facts(self.inv, node, mirror_node)
            session.connect()
            timing: list[Result] = []
            facts = self.gather(session, wanted, timing=timing)
            return _Gathered(t, session, facts, _clock_offset(facts, timing[0]))
        finally:
            session.close()

    def _host(self, g: _Gathered, steps: list[Step]) -> HostResult:
        result = HostResult(g.target.node.name)
        try:
            self._steps(g, steps, result)
        except BootstrapError as exc:
            result.status = FAILED
            result.message = self.secrets.mask(exc.message)
            self.reporter.host_failed(result)
        except Interrupted:  # during the read-only convergence check
            result.status, result.message = INTERRUPTED, "convergence not checked"
        finally:
            g.session.close()
        return settle(result)

    def gather(self, session: Session, facts: list[F.Fact], last: bool = False,
               timing: list[Result] | None = None) -> F.Facts:
        """All facts in one round trip (read-only). A run that changes nodes also reads the
        node's lease: another live run's lease fails the node here, before any change.
        ``last``: the run is done with the node, so the same round trip releases its lease.
        The node's clock, when asked for, is read first (``timing`` gets the round trip's
        Result: when it was sent, when its first bytes came back)."""
        if self.leasing:
            facts = [*facts, lease.fact(), F.clock()]
        unique = list({f.name: f for f in facts}.values())
        unique.sort(key=lambda f: f.name != F.clock().name)  # stable: the clock first
        script, nonce = F.script(unique)
        release = last and session.lease is not None and session.lease.taken
        if release:
            script += lease.release_script(self.run_info) + "\n"
        res = session.run(script, what="gather facts", readonly=True)
        if timing is not None:
            timing.append(res)
        if release:
            session.lease.taken = False
        try:
            got = F.parse_output(unique, res.stdout, nonce)
        except (ValueError, IndexError) as exc:
            raise CommandError(
                session.name, "gather facts", res.rc, res.stderr or str(exc)
            ) from None
        if self.leasing and session.lease is not None:
            state, now = got.pop(lease.fact().name), got.get(F.clock().name)
            if state is None or now is None:
                raise CommandError(session.name, "read the lease", res.rc, res.stderr)
            state = dataclasses.replace(state, now=int(now))
            verdict = lease.judge(state, self.run_info, session.name)
            if session.lease.seen is None:
                session.lease.seen = state.generation
            if verdict.take_over and verdict.take_over != session.lease.take_over:
                session.lease.take_over = verdict.take_over
                self.reporter.print(f"[{session.name}] lease: {verdict.note}")
        return got

    def _steps(self, g: _Gathered, steps: list[Step], result: HostResult) -> None:
        run_host(self, g.session, g.target, steps, result, g.facts, skipped=self.skipped,
                 noun="step", transaction=True)


