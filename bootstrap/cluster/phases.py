"""Named phases on one host (kubeadm's style): facts gathered once, pure plans, applied in order.

Like the prepare-nodes steps, with what the cluster commands need on top: secret files fed on
stdin (a bootstrap token never appears in a command line), evidence collected when a phase fails,
and a phase that stops the ones after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import facts as F
from .. import releases, runtimes
from ..engine import (
    ABANDONED,
    CHANGED,
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    OK,
    RUNNING,
    SKIPPED,
    HostResult,
    Runner,
    StepResult,
)
from ..errors import BootstrapError, CommandError, CommandTimeout
from ..interrupt import Interrupted
from ..models import Node
from ..plan import Plan
from ..ssh import Session, run_pool
from ..steps import Target
from ..steps import images as images_step
from .common import error_lines, packages, present, unprepared


@dataclass(frozen=True)
class Phase:
    """``facts(t)`` and a pure ``plan(t, facts)``; ``on_failure(t, session, stderr)`` may run
    read-only diagnostics (and undo a half-done change) and returns the evidence to show."""

    name: str
    doc: str
    facts: Callable[[Target], list[F.Fact]]
    plan: Callable[[Target, F.Facts], Plan]
    on_failure: Callable[[Target, Session, str], str] | None = None


def run_phases(
    runner: Runner,
    session: Session,
    t: Target,
    phases: list[Phase],
    result: HostResult,
    dry_run: bool,
    facts: F.Facts | None = None,
    last: bool = True,
) -> F.Facts:
    """Apply ``phases`` in order on an open session; record each in ``result``. A failed phase
    skips the rest. Changed phases are re-checked at the end (they must have converged), in the
    round trip that releases the node's lease when ``last``. ``facts`` gathered earlier are used
    as they are. Returns the facts from before any change."""
    reporter = runner.reporter
    if facts is None:
        facts = gather(runner, session, t, phases)
    applied: list[tuple[Phase, StepResult]] = []
    for i, phase in enumerate(phases):
        if runner.interrupted:
            for rest in phases[i:]:
                record(runner, result, StepResult(rest.name, NOT_STARTED, message="interrupted"))
            break
        started = time.monotonic()
        plan = phase.plan(t, facts)
        with reporter.running(t.node.name, phase.name) as progress:
            res = _apply(runner, session, phase, plan, dry_run, progress)
        if res.status == FAILED and phase.on_failure is not None and not plan.error:
            evidence = phase.on_failure(t, session, res.diff)
            res.diff = ""
            if evidence.strip():
                reporter.print(
                    f"[{t.node.name}] {phase.name} evidence:\n"
                    + "".join(f"    {ln}\n" for ln in evidence.rstrip().splitlines())
                )
        elif res.status == FAILED:
            res.diff = ""
        res.seconds = time.monotonic() - started
        record(runner, result, res)
        if res.status == CHANGED and not dry_run:
            applied.append((phase, res))
        if res.status in (FAILED, RUNNING):
            status, why = ((SKIPPED, f"not run: {phase.name} failed") if res.status == FAILED
                           else (NOT_STARTED, "interrupted"))
            for rest in phases[i + 1 :]:
                record(runner, result, StepResult(rest.name, status, message=why))
            break
    if applied and not runner.interrupted:
        again = runner.gather(session, [f for p, _ in applied for f in p.facts(t)],
                              last=last)
        for phase, res in applied:
            left = phase.plan(t, again)
            if not left.empty:
                res.status = FAILED
                res.message = f"did not converge: still wants {left.summary() or left.error}"
                reporter.step(t.node.name, res)
    return facts


def record(runner: Runner, result: HostResult, res: StepResult) -> StepResult:
    """Add a phase's result to its host's and show it."""
    result.steps.append(res)
    runner.reporter.step(result.name, res)
    return res


def gather(runner: Runner, session: Session, t: Target, phases: list[Phase]) -> F.Facts:
    """Every fact of ``phases`` in one round trip."""
    return runner.gather(session, [f for p in phases for f in p.facts(t)])


def run_hosts(
    runner: Runner,
    nodes: list[Node],
    phases: Callable[[Node], list[Phase]],
    dry_run: bool,
    results: dict[str, HostResult],
    facts: dict[str, F.Facts] | None = None,
) -> None:
    """``run_phases`` on many hosts in parallel (bounded), each on its own connection; one
    host's failure never stops the others. Appends to ``results[name]`` (created if missing)."""
    facts = facts or {}

    def work(node: Node) -> None:
        result = results.setdefault(node.name, HostResult(node.name))
        session = runner.session(node)
        try:
            run_phases(
                runner, session, Target(runner.inv, node), phases(node), result, dry_run,
                facts.get(node.name),
            )
        except BootstrapError as exc:
            host_failure(result, exc)
            runner.reporter.host_failed(result)
        except Interrupted:
            if not result.steps:
                result.steps += [StepResult(p.name, NOT_STARTED, message="interrupted")
                                 for p in phases(node)]
            result.status = INTERRUPTED
        finally:
            session.close()

    outcome = run_pool(nodes, work, runner.opts.parallel or runner.inv.ssh.parallel)
    for node, exc in outcome.items():
        if isinstance(exc, BaseException):
            result = results.setdefault(node.name, HostResult(node.name))
            host_failure(result, exc)
            runner.reporter.host_failed(result)


def _apply(
    runner: Runner, session: Session, phase: Phase, plan: Plan, dry_run: bool,
    progress: Callable[[str], None],
) -> StepResult:
    """Run one phase's plan. On failure ``diff`` carries the full stderr for ``on_failure``."""
    mask = runner.secrets.mask
    notes = "; ".join(plan.notes)
    if plan.error:
        return StepResult(phase.name, FAILED, message=plan.error)
    if plan.empty:
        return StepResult(phase.name, OK, message=notes)
    diff = mask(plan.render())
    if dry_run:
        return StepResult(phase.name, CHANGED, message=f"would: {plan.summary()}", diff=diff)
    try:
        session.run(plan.script(runner.journal(session, phase.name)),
                    what=f"phase {phase.name} ({plan.summary()})", check=True,
                    stdin=plan.stdin(), progress=progress)
    except CommandError as exc:
        lines = error_lines(exc.stderr)
        message = " | ".join(ln.strip() for ln in lines) or exc.message
        return StepResult(phase.name, FAILED, message=mask(message), diff=exc.stderr)
    except CommandTimeout as exc:
        return StepResult(phase.name, FAILED, message=mask(exc.detail))
    except Interrupted:
        return StepResult(phase.name, RUNNING, message=ABANDONED)
    message = "; ".join(filter(None, [plan.summary(), notes]))
    return StepResult(phase.name, CHANGED, message=message, diff=diff, changes=plan.changes())


def host_failure(result: HostResult, exc: BaseException) -> None:
    """Record a connection or internal error that ended a host's phases."""
    result.status = FAILED
    if isinstance(exc, BootstrapError):
        result.message = exc.message
    else:
        result.message = f"internal error: {exc!r}"


def preflight_phase(done: Callable[[set[str]], bool], note: str) -> Phase:
    """ok (with ``note``) when ``done(kubeadm files present)``; an error for leftovers of an
    earlier kubeadm run or a node prepare-nodes has not prepared."""

    def plan(t: Target, facts: F.Facts) -> Plan:
        p = Plan()
        found = facts[present().name]
        if done(found):
            p.notes.append(note)
        elif found:
            p.error = (
                f"leftovers of an earlier kubeadm run ({', '.join(sorted(found))}): "
                f"run invoke reset --limit {t.node.name} first"
            )
        else:
            p.error = (unprepared(t.inv, facts[packages().name], facts[_runtime_unit(t).name])
                       or sandbox_mismatch(t, facts.get(SANDBOX.name)))
        return p

    def facts(t: Target) -> list[F.Fact]:
        found = [present(), packages(), _runtime_unit(t)]
        return [*found, SANDBOX] if t.inv.cluster.runtime == "containerd" else found

    return Phase("preflight", "prepared, no leftovers", facts, plan)


def _sandbox(out: str, rc: int) -> str | None:
    """The sandbox image `crictl info` reports (containerd 1.x: .config.sandboxImage; 2.x
    reports none: docs/RELEASE-FACTS.md 5)."""
    try:
        return json.loads(out).get("config", {}).get("sandboxImage") or None
    except (ValueError, AttributeError):
        return None


SANDBOX = F.Fact("sandbox-image", "crictl info 2>/dev/null", _sandbox)


def sandbox_mismatch(t: Target, have: str | None) -> str | None:
    """kubeadm (1.27+) only warns that the runtime's sandbox image "is inconsistent with that
    used by kubeadm", and pods then pull pause from where containerd says, often unreachable
    (kubeasz#1490, kubekey#2492): here it stops init or join, before anything changes."""
    want = releases.pause_image(t.inv.cluster.kubernetes_version, t.inv.cluster.image_repository)
    if not have or have == want:
        return None
    return (f"containerd's sandbox image is {have}, not {want} (what kubeadm "
            f"{t.inv.cluster.kubernetes_version} uses from cluster.image_repository): run "
            f"invoke prepare-nodes --limit {t.node.name}, which writes containerd's config")


def _runtime_unit(t: Target) -> F.Fact:
    """The container runtime's unit (docker or containerd: runtimes.RUNTIMES)."""
    return F.unit(runtimes.of(t.inv).unit)


def images_phase(done: Callable[[set[str]], bool]) -> Phase:
    """kubeadm's images (the pinned coredns fix for 1.21.0-1.21.1) unless ``done``."""

    def plan(t: Target, facts: F.Facts) -> Plan:
        return Plan() if done(facts[present().name]) else images_step.plan(t, facts)

    return Phase("images", images_step.__doc__ or "",
                 lambda t: [*images_step.facts(t), present()], plan)
