"""The step engine: per host, gather facts once, plan, apply (or show), then check convergence.

Open SSH connections never exceed the pool size: phase 1 closes each session after its gather,
and phase 2 reconnects only the hosts with something to apply.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import checks, lease, packages, platforms
from . import facts as F
from .errors import (
    BootstrapError,
    CommandError,
    CommandTimeout,
    ConnectError,
    HostError,
    SudoError,
    stderr_excerpt,
)
from .interrupt import Interrupt, Interrupted
from .models import Inventory, Node
from .plan import BACKUP_SUFFIX, Action, Plan, WriteFile
from .report import Reporter
from .runinfo import RunInfo
from .secrets import Secrets
from .ssh import Session, SudoPassword, run_pool
from .steps import Step, Target

MAX_SCRIPT = 100_000  # one argument to `sh -c` may not exceed 128 KiB (MAX_ARG_STRLEN)

OK, CHANGED, FAILED, SKIPPED = "ok", "changed", "failed", "skipped"
# After Ctrl-C: a step whose script was still running when the run stopped waiting for it,
# and a step that never started.
RUNNING, NOT_STARTED = "running", "not-started"
INTERRUPTED = "interrupted"  # a host's status when Ctrl-C stopped its work


@dataclass
class StepResult:
    name: str
    status: str
    seconds: float = 0.0
    message: str = ""
    diff: str = ""
    changes: list[str] = field(default_factory=list)  # what was changed, as the journal says


@dataclass
class HostResult:
    name: str
    status: str = OK
    steps: list[StepResult] = field(default_factory=list)
    message: str = ""

    @property
    def changed(self) -> int:
        return sum(s.status == CHANGED for s in self.steps)


@dataclass
class RunOptions:
    dry_run: bool = False
    parallel: int | None = None


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


def _mirror_node(nodes: list[Node]) -> Node | None:
    """The node that checks the mirrors: the master if selected, else the first node."""
    return next((n for n in nodes if n.is_master), nodes[0] if nodes else None)


def _needs_session(plans: list[tuple[Step, Plan]]) -> bool:
    """Whether a step will run something: a plan with actions before any plan that fails."""
    for _, plan in plans:
        if plan.error:
            return False
        if not plan.empty:
            return True
    return False


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

    def _gather(
        self, node: Node, steps: list[Step], preflight: Preflight | None, mirror_node: bool
    ) -> _Gathered:
        self.interrupt.check()
        t = Target(self.inv, node)
        session = self.session(node)
        try:
            wanted = [*platforms.facts(), *(f for s in steps if not s.skip(t) for f in s.facts(t))]
            if preflight is not None:
                wanted += checks.facts(self.inv, node, mirror_node)
            session.connect()
            before = time.time()
            facts = self.gather(session, wanted)
            offset = (facts.get("time") or 0.0) - (before + time.time()) / 2
            return _Gathered(t, session, facts, offset)
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

    def gather(self, session: Session, facts: list[F.Fact], last: bool = False) -> F.Facts:
        """All facts in one round trip (read-only). A run that changes nodes also reads the
        node's lease: another live run's lease fails the node here, before any change.
        ``last``: the run is done with the node, so the same round trip releases its lease."""
        if self.leasing:
            facts = [*facts, lease.fact(), F.clock()]
        unique = list({f.name: f for f in facts}.values())
        script, nonce = F.script(unique)
        release = last and session.lease is not None and session.lease.taken
        if release:
            script += lease.release_script(self.run_info) + "\n"
        res = session.run(script, what="gather facts", readonly=True)
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
        t, session, facts = g.target, g.session, g.facts
        active = []
        for step in steps:
            reason = step.skip(t)
            if reason:
                self._done(result, StepResult(step.name, SKIPPED, message=reason))
            else:
                active.append(step)
        plans = [(step, _plan(step, t, facts)) for step in active]
        batch, rest = packages.batch([(step.name, plan) for step, plan in plans],
                                     _manager(facts))
        plans = [(step, plan) for (step, _), plan in zip(plans, rest, strict=True)]
        needed = batch is not None or _needs_session(plans)
        if not self.opts.dry_run and needed and not self.interrupted:
            session.connect()
        applied: list[tuple[Step, StepResult]] = []
        for i, (step, plan) in enumerate(plans):
            if self.interrupted:
                for later, _ in plans[i:]:
                    self._done(result, StepResult(later.name, NOT_STARTED, message="interrupted"))
                return
            if batch is not None and i == batch.at:
                res = self._timed(session, t, TRANSACTION, batch.plan)
                self._done(result, res)
                if res.status != CHANGED:  # failed, or given up after Ctrl-C
                    for later, _ in plans[i:]:
                        self._done(result, _after_transaction(later.name, res, batch))
                    return
                if self.interrupted:  # Ctrl-C while it ran: it finished, nothing starts after
                    for later, _ in plans[i:]:
                        self._done(result, StepResult(later.name, NOT_STARTED,
                                                      message=_not_started(later.name, batch)))
                    return
            res = self._timed(session, t, step, plan)
            if batch is not None and step.name in batch.steps and res.status == OK:
                res = StepResult(step.name, CHANGED, res.seconds,
                                 "; ".join(filter(None, [f"in the {packages.NAME} transaction",
                                                         res.message])))
            self._done(result, res)
            if res.status == RUNNING:
                for later, _ in plans[i + 1 :]:
                    self._done(result, StepResult(later.name, NOT_STARTED, message="interrupted"))
                return
            if res.status == CHANGED and not self.opts.dry_run:
                applied.append((step, res))
            if res.status == FAILED:
                for later, _ in plans[i + 1 :]:
                    self._done(
                        result,
                        StepResult(later.name, SKIPPED, message=f"not run: {step.name} failed"),
                    )
                return
        if applied and not self.interrupted:
            self._converge(session, t, applied, result)

    def _timed(self, session: Session, t: Target, step: Step, plan: Plan) -> StepResult:
        started = time.monotonic()
        with self.reporter.running(t.node.name, step.name) as progress:
            res = self._apply(session, step, plan, progress)
        res.seconds = time.monotonic() - started
        return res

    def _apply(
        self, session: Session, step: Step, plan: Plan, progress: Callable[[str], None]
    ) -> StepResult:
        notes = "; ".join(plan.notes)
        if plan.error:
            return StepResult(step.name, FAILED, message=plan.error)
        if plan.empty:
            return StepResult(step.name, OK, message=notes)
        diff = self.secrets.mask(plan.render())
        if self.opts.dry_run:
            return StepResult(step.name, CHANGED, message=f"would: {plan.summary()}", diff=diff)
        script = plan.script(self.journal(session, step.name))
        if len(script) > MAX_SCRIPT:
            return StepResult(step.name, FAILED, message="plan too large to send as one script")
        try:
            session.run(script, what=f"step {step.name} ({plan.summary()})", check=True,
                        stdin=plan.stdin(), progress=progress)
        except CommandError as exc:
            return StepResult(
                step.name, FAILED, message=stderr_excerpt(exc.stderr) or exc.message, diff=diff
            )
        except CommandTimeout as exc:
            return StepResult(step.name, FAILED, message=exc.detail, diff=diff)
        except Interrupted:
            return StepResult(step.name, RUNNING, message=ABANDONED, diff=diff)
        message = "; ".join(filter(None, [plan.summary(), notes]))
        return StepResult(step.name, CHANGED, message=message, diff=diff,
                          changes=plan.changes())

    def _converge(
        self,
        session: Session,
        t: Target,
        applied: list[tuple[Step, StepResult]],
        result: HostResult,
    ) -> None:
        """Re-gather facts; a step that still wants changes did not converge."""
        facts = self.gather(session, [f for s, _ in applied for f in s.facts(t)], last=True)
        for step, res in applied:
            again = _plan(step, t, facts)
            if not again.empty:
                res.status = FAILED
                res.message = f"did not converge: still wants {again.summary() or again.error}"
                self.reporter.step(result.name, res)

    def _done(self, result: HostResult, res: StepResult) -> None:
        result.steps.append(res)
        self.reporter.step(result.name, res)


# The node's one package transaction, shown and journalled like a step (bootstrap.packages).
TRANSACTION = Step(packages.NAME, packages.__doc__ or "", lambda t: [], lambda t, f: Plan())


def _manager(facts: F.Facts) -> str:
    """The node's package manager (yum where the OS is unknown: the steps then fail anyway)."""
    try:
        return platforms.of(facts).release.package_manager
    except platforms.Unsupported:
        return "yum"


def _plan(step: Step, t: Target, facts: F.Facts) -> Plan:
    """The step's plan; an OS it has no row for (OperatingSystem ignored) is the step's error."""
    try:
        return step.plan(t, facts)
    except platforms.Unsupported as exc:
        return Plan(error=f"{exc} (the OperatingSystem check was ignored)")


def _after_transaction(name: str, res: StepResult, batch: packages.Batch) -> StepResult:
    """A step after a package transaction that did not complete: failed with the package
    manager's lines when it needed the transaction, else not run."""
    if res.status == RUNNING:
        return StepResult(name, NOT_STARTED, message="interrupted")
    if name in batch.steps:
        return StepResult(name, FAILED, message=f"{packages.NAME}: {res.message}")
    return StepResult(name, SKIPPED, message=f"not run: the {packages.NAME} transaction failed")


def _not_started(name: str, batch: packages.Batch) -> str:
    """Why a step after a completed transaction did not start (Ctrl-C): its packages may be in."""
    if name in batch.steps:
        return f"interrupted (its packages were installed in the {packages.NAME} transaction)"
    return "interrupted"


ABANDONED = ("still running when Ctrl-C was pressed twice: its outcome on the node is "
             "unknown; run again to converge")


def not_started(name: str, steps: list[Step]) -> HostResult:
    """A host that Ctrl-C stopped before its first step."""
    return HostResult(name, INTERRUPTED, [StepResult(s.name, NOT_STARTED, message="interrupted")
                                          for s in steps])


def settle(result: HostResult) -> HostResult:
    """The host's overall status from its steps (interrupted when Ctrl-C stopped any)."""
    if result.status in (FAILED, INTERRUPTED):
        return result
    if any(s.status in (RUNNING, NOT_STARTED) for s in result.steps):
        result.status = INTERRUPTED
    elif any(s.status == FAILED for s in result.steps):
        result.status = FAILED
    else:
        result.status = CHANGED if result.changed else OK
    return result
