"""The cluster commands' phases on a host (kubeadm's style), run by the one loop in
bootstrap/workflow.py: what they add is kubeadm's error lines as a failure's message, evidence
collected when a phase fails, secret files fed on stdin (a bootstrap token never appears in a
command line), and the hosts run in parallel.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from .. import facts as F
from .. import releases, runtimes
from ..engine import (
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    HostResult,
    Runner,
    StepResult,
)
from ..errors import BootstrapError
from ..interrupt import Interrupted
from ..models import Node
from ..plan import Plan
from ..ssh import Session, run_pool
from ..steps import Target
from ..steps import images as images_step
from ..workflow import SKIP_FLAG, SKIPPED, Need, Phase, need_facts, run_host, unmet
from .common import error_lines, packages, present, unprepared


def kubeadm_lines(stderr: str) -> str:
    """A failed phase's message: kubeadm's and kubectl's own error lines, on one line."""
    return " | ".join(ln.strip() for ln in error_lines(stderr))


def cluster_phase(
    name: str, doc: str, facts: Callable[[Target], list[F.Fact]],
    plan: Callable[[Target, F.Facts], Plan],
    on_failure: Callable[[Target, Session, str], str] | None = None,
    needs: tuple[Need, ...] = (),
) -> Phase:
    """A phase of init-master, join-workers or reset: its failure says kubeadm's lines."""
    return Phase(name, doc, facts, plan, on_failure=on_failure, explain=kubeadm_lines,
                 needs=needs)


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
    """Gather (unless ``facts`` were gathered earlier) and run ``phases`` on an open session
    through the one loop (workflow.run_host), ``--skip-phases`` applied. Returns the facts from
    before any change."""
    if facts is None:
        facts = gather(runner, session, t, phases)
    refused = unmet(t, phases, runner.skipped, facts)
    if refused:  # before anything runs on this node
        result.status, result.message = FAILED, f"{SKIP_FLAG}: " + "; ".join(refused)
        runner.reporter.host_failed(result)
        return facts
    run_host(runner, session, t, phases, result, facts, skipped=runner.skipped, last=last)
    return facts


def skipped_or(runner: Runner, name: str, run: Callable[[], StepResult]) -> StepResult:
    """A phase outside the per-host list (wait-ready): skipped by ``--skip-phases``, else run."""
    if name in runner.skipped:
        return StepResult(name, SKIPPED, message=SKIP_FLAG)
    return run()


def record(runner: Runner, result: HostResult, res: StepResult) -> StepResult:
    """Add a phase's result to its host's and show it."""
    result.steps.append(res)
    runner.reporter.step(result.name, res)
    return res


def gather(runner: Runner, session: Session, t: Target, phases: list[Phase]) -> F.Facts:
    """Every fact of ``phases`` in one round trip (not those of phases ``--skip-phases``
    skips, but what decides whether their work is already there)."""
    skipped = runner.skipped
    return runner.gather(session, [*(f for p in phases if p.name not in skipped
                                     for f in p.facts(t)),
                                   *need_facts(t, phases, skipped)])


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

    return cluster_phase("preflight", "prepared, no leftovers", facts, plan)


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

    return cluster_phase("images", images_step.__doc__ or "",
                 lambda t: [*images_step.facts(t), present()], plan)
