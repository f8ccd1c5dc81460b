"""The one phase loop every command runs on a host, and ``--skip-phases``.

A phase (kubeadm's word; prepare-nodes shows its phases as steps) names the facts it needs and
plans purely from them. On one host, with its facts gathered once, the phases are planned, then
applied in order: a failed phase skips the ones after it, Ctrl-C starts none after it, and the
phases that changed something are re-checked at the end (they must have converged). prepare-nodes
runs its packages as one transaction (bootstrap.packages) inside the same loop.

``--skip-phases NAME,...`` takes phases out by name: an unknown name is a usage error listing the
command's phases, a skipped phase shows as skipped, and a phase that needs what a skipped one
leaves on the node is refused before anything runs, unless that is already there (``Need``).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import facts as F
from . import packages, platforms, releases
from .errors import CommandError, CommandTimeout, UsageError, stderr_excerpt
from .interrupt import Interrupted
from .models import Inventory, Node
from .plan import Plan

if TYPE_CHECKING:
    from .engine import Runner
    from .ssh import Session

OK, CHANGED, FAILED, SKIPPED = "ok", "changed", "failed", "skipped"
# After Ctrl-C: a phase whose script was still running when the run stopped waiting for it,
# and a phase that never started.
RUNNING, NOT_STARTED = "running", "not-started"
INTERRUPTED = "interrupted"  # a host's status when Ctrl-C stopped its work
MAX_SCRIPT = 100_000  # one argument to `sh -c` may not exceed 128 KiB (MAX_ARG_STRLEN)
SKIP_FLAG = "--skip-phases"


@dataclass(frozen=True)
class Target:
    """What a phase is computed for: the inventory and one of its nodes, which knows its place:
    its roles, whether it is the init node, and the Kubernetes release row the phases follow.
    (The node's OS release row comes from its facts: ``platforms.of(facts)``.)"""

    inv: Inventory
    node: Node

    @property
    def roles(self) -> frozenset[str]:
        return self.node.roles

    @property
    def user(self) -> str:
        """The user SSH logs in as on this node (its ~/.kube is the one kubeconfig manages)."""
        return self.node.login.user if self.node.login else self.inv.ssh.user

    @property
    def is_init_node(self) -> bool:
        return self.node == self.inv.init_node

    @property
    def release(self) -> releases.Minor:
        """The row of ``cluster.kubernetes_version`` (releases.py)."""
        return releases.release(self.inv.cluster.kubernetes_version)


@dataclass(frozen=True)
class Need:
    """What a phase needs from an earlier one of its command: ``phase`` leaves ``what`` on the
    node; ``met(t, facts)`` says it is there already (so skipping that phase is fine)."""

    phase: str
    what: str
    facts: Callable[[Target], list[F.Fact]]
    met: Callable[[Target, F.Facts], bool]


def _never(t: Target) -> str | None:
    return None


@dataclass(frozen=True)
class Phase:
    """One named phase: ``facts(t)`` and a pure ``plan(t, facts)``; ``skip(t)`` a reason not to
    run on this target; ``on_failure(t, session, stderr)`` may run read-only diagnostics (and
    undo a half-done change) and returns the evidence to show; ``explain(stderr)`` the failure's
    one-line message; ``needs`` what it needs of earlier phases (``--skip-phases``)."""

    name: str
    doc: str
    facts: Callable[[Target], list[F.Fact]]
    plan: Callable[[Target, F.Facts], Plan]
    skip: Callable[[Target], str | None] = _never
    on_failure: Callable[[Target, Session, str], str] | None = None
    explain: Callable[[str], str] = stderr_excerpt
    needs: tuple[Need, ...] = ()


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


# -- --skip-phases -------------------------------------------------------------------------------
def parse_skip(text: str | None, command: str, names: Sequence[str]) -> frozenset[str]:
    """The phase names of ``--skip-phases`` (comma-separated) for ``command``, whose phases are
    ``names``; an unknown one is a usage error that lists them."""
    wanted = [w.strip() for w in (text or "").split(",") if w.strip()]
    for name in wanted:
        if name not in names:
            hint = difflib.get_close_matches(name, names, n=1)
            raise UsageError(
                f"{SKIP_FLAG}: {command} has no phase {name!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; its phases: {', '.join(names)}"
            )
    return frozenset(wanted)


def need_facts(t: Target, phases: Iterable[Phase], skipped: frozenset[str]) -> list[F.Fact]:
    """The facts that decide whether a skipped phase's work is already on the node."""
    return [f for p in phases if p.name not in skipped
            for need in p.needs if need.phase in skipped for f in need.facts(t)]


def unmet(t: Target, phases: Iterable[Phase], skipped: frozenset[str], facts: F.Facts
          ) -> list[str]:
    """Why skipping ``skipped`` cannot work on this node: a phase that runs needs what a
    skipped one leaves, and it is not there. Pure."""
    return [f"{p.name} needs {need.phase} ({need.what}), which {SKIP_FLAG} skips: run without "
            f"skipping {need.phase}"
            for p in phases if p.name not in skipped and not p.skip(t)
            for need in p.needs if need.phase in skipped and not need.met(t, facts)]


# -- the loop ------------------------------------------------------------------------------------
def run_host(
    runner: Runner,
    session: Session,
    t: Target,
    phases: list[Phase],
    result: HostResult,
    facts: F.Facts,
    *,
    skipped: frozenset[str] = frozenset(),
    noun: str = "phase",
    transaction: bool = False,
    last: bool = True,
) -> None:
    """Plan every phase from ``facts``, apply them in order on ``session`` (opened only when
    something is to be applied), record each in ``result``, then check convergence (in the
    round trip that releases the node's lease when ``last``). ``transaction``: the phases'
    packages go in one transaction, before the first phase that installs."""
    dry_run = runner.opts.dry_run
    active: list[Phase] = []
    for phase in phases:
        reason = f"{SKIP_FLAG}" if phase.name in skipped else phase.skip(t)
        if reason:
            _record(runner, result, StepResult(phase.name, SKIPPED, message=reason))
        else:
            active.append(phase)
    plans = [(phase, _plan(phase, t, facts)) for phase in active]
    batch = None
    if transaction:
        batch, rest = packages.batch([(p.name, plan) for p, plan in plans], _manager(facts))
        plans = [(p, plan) for (p, _), plan in zip(plans, rest, strict=True)]
    needed = batch is not None or _needs_session(plans)
    if not dry_run and needed and not runner.interrupted:
        session.connect()
    applied: list[tuple[Phase, StepResult]] = []
    for i, (phase, plan) in enumerate(plans):
        if runner.interrupted:
            _not_started(runner, result, plans[i:])
            return
        if batch is not None and i == batch.at:
            res = _timed(runner, session, t, TRANSACTION, batch.plan, noun)
            _record(runner, result, res)
            if res.status != CHANGED:  # failed, or given up after Ctrl-C
                for later, _ in plans[i:]:
                    _record(runner, result, _after_transaction(later.name, res, batch))
                return
            if runner.interrupted:  # Ctrl-C while it ran: it finished, nothing starts after
                _not_started(runner, result, plans[i:], batch)
                return
        res = _timed(runner, session, t, phase, plan, noun)
        if batch is not None and phase.name in batch.steps and res.status == OK:
            res = StepResult(phase.name, CHANGED, res.seconds,
                             "; ".join(filter(None, [f"in the {packages.NAME} transaction",
                                                     res.message])))
        _record(runner, result, res)
        if res.status == RUNNING:
            _not_started(runner, result, plans[i + 1:])
            return
        if res.status == CHANGED and not dry_run:
            applied.append((phase, res))
        if res.status == FAILED:
            for later, _ in plans[i + 1:]:
                _record(runner, result, StepResult(later.name, SKIPPED,
                                                   message=f"not run: {phase.name} failed"))
            return
    if applied and not runner.interrupted:
        again = runner.gather(session, [f for p, _ in applied for f in p.facts(t)], last=last)
        for phase, res in applied:
            left = _plan(phase, t, again)
            if not left.empty:
                res.status = FAILED
                res.message = f"did not converge: still wants {left.summary() or left.error}"
                runner.reporter.step(result.name, res)


def _timed(runner: Runner, session: Session, t: Target, phase: Phase, plan: Plan, noun: str
           ) -> StepResult:
    started = time.monotonic()
    with runner.reporter.running(t.node.name, phase.name) as progress:
        res, stderr = _apply(runner, session, phase, plan, noun, progress)
    if res.status == FAILED and stderr is not None and phase.on_failure is not None:
        evidence = phase.on_failure(t, session, stderr)
        if evidence.strip():
            runner.reporter.print(
                f"[{t.node.name}] {phase.name} evidence:\n"
                + "".join(f"    {ln}\n" for ln in evidence.rstrip().splitlines())
            )
    res.seconds = time.monotonic() - started
    return res


def _apply(runner: Runner, session: Session, phase: Phase, plan: Plan, noun: str,
           progress: Callable[[str], None]) -> tuple[StepResult, str | None]:
    """Run one phase's plan (or show it in a dry run); the stderr of a failed command."""
    mask = runner.secrets.mask
    notes = "; ".join(plan.notes)
    if plan.error:
        return StepResult(phase.name, FAILED, message=plan.error), None
    if plan.empty:
        return StepResult(phase.name, OK, message=notes), None
    diff = mask(plan.render())
    if runner.opts.dry_run:
        return StepResult(phase.name, CHANGED, message=f"would: {plan.summary()}",
                          diff=diff), None
    script = plan.script(runner.journal(session, phase.name))
    if len(script) > MAX_SCRIPT:
        return StepResult(phase.name, FAILED, message="plan too large to send as one script"), None
    try:
        session.run(script, what=f"{noun} {phase.name} ({plan.summary()})", check=True,
                    stdin=plan.stdin(), progress=progress)
    except CommandError as exc:
        return StepResult(phase.name, FAILED,
                          message=mask(phase.explain(exc.stderr) or exc.message)), exc.stderr
    except CommandTimeout as exc:  # its on_failure still looks (and undoes a half-done change)
        return StepResult(phase.name, FAILED, message=mask(exc.detail)), ""
    except Interrupted:
        return StepResult(phase.name, RUNNING, message=ABANDONED, diff=diff), None
    message = "; ".join(filter(None, [plan.summary(), notes]))
    return StepResult(phase.name, CHANGED, message=message, diff=diff,
                      changes=plan.changes()), None


def _record(runner: Runner, result: HostResult, res: StepResult) -> None:
    result.steps.append(res)
    runner.reporter.step(result.name, res)


def _not_started(runner: Runner, result: HostResult, rest: list[tuple[Phase, Plan]],
                 batch: packages.Batch | None = None) -> None:
    """Ctrl-C: the phases of ``rest`` did not start (a transaction that ran installed the
    packages of some of them, and their lines say so)."""
    for phase, _ in rest:
        why = "interrupted"
        if batch is not None and phase.name in batch.steps:
            why = f"interrupted (its packages were installed in the {packages.NAME} transaction)"
        _record(runner, result, StepResult(phase.name, NOT_STARTED, message=why))


def _needs_session(plans: list[tuple[Phase, Plan]]) -> bool:
    """Whether a phase will run something: a plan with actions before any plan that fails."""
    for _, plan in plans:
        if plan.error:
            return False
        if not plan.empty:
            return True
    return False


# The node's one package transaction, shown and journalled like a phase (bootstrap.packages).
TRANSACTION = Phase(packages.NAME, packages.__doc__ or "", lambda t: [], lambda t, f: Plan())


def _manager(facts: F.Facts) -> str:
    """The node's package manager (yum where the OS is unknown: the phases then fail anyway)."""
    try:
        return platforms.of(facts).release.package_manager
    except platforms.Unsupported:
        return "yum"


def _plan(phase: Phase, t: Target, facts: F.Facts) -> Plan:
    """The phase's plan; an OS it has no row for (OperatingSystem ignored) is its error."""
    try:
        return phase.plan(t, facts)
    except platforms.Unsupported as exc:
        return Plan(error=f"{exc} (the OperatingSystem check was ignored)")


def _after_transaction(name: str, res: StepResult, batch: packages.Batch) -> StepResult:
    """A phase after a package transaction that did not complete: failed with the package
    manager's lines when it needed the transaction, else not run."""
    if res.status == RUNNING:
        return StepResult(name, NOT_STARTED, message="interrupted")
    if name in batch.steps:
        return StepResult(name, FAILED, message=f"{packages.NAME}: {res.message}")
    return StepResult(name, SKIPPED, message=f"not run: the {packages.NAME} transaction failed")


ABANDONED = ("still running when Ctrl-C was pressed twice: its outcome on the node is "
             "unknown; run again to converge")


def not_started(name: str, phases: list[Phase]) -> HostResult:
    """A host that Ctrl-C stopped before its first phase."""
    return HostResult(name, INTERRUPTED, [StepResult(p.name, NOT_STARTED, message="interrupted")
                                          for p in phases])


def settle(result: HostResult) -> HostResult:
    """The host's overall status from its phases (interrupted when Ctrl-C stopped any)."""
    if result.status in (FAILED, INTERRUPTED):
        return result
    if any(s.status in (RUNNING, NOT_STARTED) for s in result.steps):
        result.status = INTERRUPTED
    elif any(s.status == FAILED for s in result.steps):
        result.status = FAILED
    else:
        result.status = CHANGED if result.changed else OK
    return result
