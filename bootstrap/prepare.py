"""prepare-nodes and check, as stages (bootstrap/stages.py): every node's facts in one round trip
(its clock read first), preflight judged across the nodes, then the steps on each node through
the one loop, their packages in one transaction. An error in preflight changes nothing.

Open SSH connections never exceed the pool size: the gather closes each session after it, and
the steps reconnect only the nodes with something to apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import checks, platforms, workflow
from .errors import BootstrapError, ConnectError, HostError, SudoError
from .models import Node
from .ssh import Result, Session
from .stages import LOCAL, Data, Stage, run_stages
from .workflow import FAILED, OK, SKIP_FLAG, HostResult, Phase, Target

if TYPE_CHECKING:
    from .engine import Preflight, Runner


def _reason(exc: BootstrapError) -> str:
    return exc.detail if isinstance(exc, HostError) else exc.message


def _mirror_node(nodes: list[Node]) -> Node | None:
    """The node that checks the mirrors: a control-plane node if selected, else the first."""
    return next((n for n in nodes if n.is_control_plane), nodes[0] if nodes else None)


def _gather(steps: list[Phase], preflight: Preflight | None
            ) -> Callable[[Data, Session | None, list[Node]], None]:
    """Every fact of the run on one node, and its clock's offset from ours, into the data; a node
    that cannot be reached is preflight's finding (SSHReachable, Sudo), else its failure."""
    from .engine import clock_offset

    def gather(data: Data, session: Session | None, nodes: list[Node]) -> None:
        assert session is not None
        (node,) = nodes
        runner, t = data.runner, Target(data.inv, node)
        active = [s for s in steps if s.name not in runner.skipped and not s.skip(t)]
        wanted = [*platforms.facts(), *(f for s in active for f in s.facts(t)),
                  *workflow.need_facts(t, steps, runner.skipped)]
        if preflight is not None:
            wanted += checks.facts(data.inv, node, node == _mirror_node(data.targets))
        timing: list[Result] = []
        try:
            session.connect()
            facts = runner.gather(session, wanted, timing=timing)
        except BootstrapError as exc:
            res = data.result(node)
            res.status, res.message = FAILED, _reason(exc)
            if preflight is not None and isinstance(exc, (ConnectError, SudoError)):
                check = "Sudo" if isinstance(exc, SudoError) else "SSHReachable"
                data.add("findings", checks.Finding(check, checks.ERROR, node.name, res.message))
            else:
                runner.reporter.host_failed(res)
            return
        data.facts[node.name] = facts
        data.add("offsets", (node.name, clock_offset(facts, timing[0])))

    return gather


def _judge(steps: list[Phase], preflight: Preflight | None
           ) -> Callable[[Data, Session | None, list[Node]], None]:
    """``--skip-phases`` a node cannot do without, then preflight across the nodes: either
    stops every node before anything changes (raised: the stages after it do not run)."""

    def judge(data: Data, session: Session | None, nodes: list[Node]) -> None:
        runner, inv = data.runner, data.inv
        ready = [n for n in nodes if n.name in data.facts]
        why = {n.name: r for n in ready
               if (r := workflow.unmet(Target(inv, n), steps, runner.skipped, data.facts[n.name]))}
        if why:
            for name, reasons in why.items():
                runner.reporter.print(f"[{name}] {SKIP_FLAG}: {'; '.join(reasons)}")
            runner.reporter.print(f"{SKIP_FLAG}: refused on {', '.join(why)}; nothing was "
                                  "changed")
            for n in ready:
                res = data.result(n)
                res.status = FAILED
                res.message = ("; ".join(why[n.name]) if n.name in why
                               else f"not run: {SKIP_FLAG} refused elsewhere")
            raise BootstrapError(f"{SKIP_FLAG} refused")
        if preflight is None:
            return
        findings = data.get("findings", []) + checks.evaluate(
            inv, {n.name: data.facts[n.name] for n in ready}, dict(data.get("offsets", [])))
        if not preflight.passes(findings, runner.reporter):
            raise BootstrapError("preflight failed")
        if not steps:  # a check only: each node's own errors
            for n in ready:
                errors = [f.message for f in preflight.blocking(findings) if f.node == n.name]
                res = data.result(n)
                res.status, res.message = (FAILED if errors else OK), "; ".join(errors)

    return judge


def prepare_stages(steps: list[Phase], preflight: Preflight | None) -> list[Stage]:
    """gather (every node at once), preflight (here, across them), the steps (every node at
    once, bounded by --parallel; only nodes with something to apply reconnect)."""
    return [
        Stage("gather", lambda d: d.targets, action=_gather(steps, preflight)),
        Stage("preflight", lambda d: d.targets, action=_judge(steps, preflight), on=LOCAL),
        Stage("steps", lambda d: d.targets, phases=lambda t, d: steps, transaction=True,
              noun="step", names=tuple(s.name for s in steps),
              when=lambda d: None if steps else "a check only"),
    ]


def run(runner: Runner, nodes: list[Node], steps: list[Phase], preflight: Preflight | None
        ) -> dict[str, HostResult]:
    """prepare-nodes' stages on ``nodes``; each node's result, in the order given."""
    results = run_stages(runner, prepare_stages(steps, preflight), Data(runner, nodes))
    return {n.name: results[n.name] for n in nodes}
