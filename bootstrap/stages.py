"""Stages across nodes: init-master, join-workers and reset are each a list of stages, run by
``run_stages`` (prepare-nodes is one stage of the same loop, with a preflight across its nodes:
engine.Runner.run).

A stage either runs the command's phases on its nodes through the one per-host loop
(workflow.run_host), or an action: a step that is not a plan of files and commands, such as
creating the join token or waiting until nodes are Ready. An action runs on each node's own
session, or on the init node's for each node (``on=INIT``: drain, wait-ready).

Across its nodes a stage runs in one ``order``:
- ``PARALLEL``: every node at once, bounded by ``--parallel``;
- ``SERIAL``: one node at a time, each gathered just before its phases (what the others did is
  seen: control-plane nodes joining one by one);
- ``INIT_FIRST``: the init node alone, then the rest in parallel;
- ``BATCHES``: ``batch`` nodes at a time; a batch with a failed node stops the batches after it.

Values one stage hands the next (the join token, the CA hash, who needs joining) go through the
command's ``Data``; a secret one is masked wherever it could be printed. A stage named in
``--skip-phases`` shows as skipped on its nodes. After a stage fails as a whole (its action on the
init node raised), or after Ctrl-C, only ``cleanup`` stages run (the token's deletion).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import facts as F
from .errors import BootstrapError
from .interrupt import Interrupted
from .models import Node
from .ssh import Session, run_pool
from .workflow import (
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    SKIP_FLAG,
    SKIPPED,
    HostResult,
    Phase,
    StepResult,
    Target,
    need_facts,
    run_host,
    settle,
    unmet,
)

if TYPE_CHECKING:
    from .engine import Runner

PARALLEL, SERIAL, INIT_FIRST, BATCHES = "parallel", "one at a time", "init node first", "batches"
OWN, INIT, LOCAL = "own", "init", "local"  # where an action runs: each node's session, the init
# node's for each node, or here, once (no session: a judgement across nodes, such as preflight)


class Data:
    """What a command's stages share (kubeadm's InitData, JoinData): the nodes it targets, every
    node's result, facts an earlier stage gathered (used once, by the phases that follow), and
    named values. ``set(..., secret=True)`` registers the value to be masked."""

    def __init__(self, runner: Runner, targets: Sequence[Node]) -> None:
        self.runner = runner
        self.inv = runner.inv
        self.targets = list(targets)
        self.results: dict[str, HostResult] = {}
        self.facts: dict[str, F.Facts] = {}
        self._values: dict[str, Any] = {}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def set(self, key: str, value: Any, secret: bool = False) -> None:
        if secret:
            self.runner.secrets.add(str(value))
        self._values[key] = value

    def add(self, key: str, item: Any) -> None:
        """Append ``item`` to the list ``key`` (stages on many nodes at once may add)."""
        with self._lock:
            self._values.setdefault(key, []).append(item)

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def result(self, node: Node | str) -> HostResult:
        name = node if isinstance(node, str) else node.name
        return self.results.setdefault(name, HostResult(name))

    def record(self, node: Node | str, res: StepResult) -> StepResult:
        """Add a step's result to a node's and show it."""
        name = node if isinstance(node, str) else node.name
        self.result(name).steps.append(StepResult(res.name, res.status, res.seconds,
                                                  res.message, res.diff, list(res.changes)))
        self.runner.reporter.step(name, res)
        return res

    def session(self, node: Node, shared: bool = False) -> Session:
        """A node's session for one stage, closed after it (``release``); ``shared``: the one
        kept open for the whole command (the init node's, for its actions), which a later stage
        on that node uses too."""
        if node.name in self._sessions:
            return self._sessions[node.name]
        session = self.runner.session(node)
        if shared:
            self._sessions[node.name] = session
        return session

    def shared(self, session: Session) -> bool:
        return session in self._sessions.values()

    def release(self, session: Session) -> None:
        if not self.shared(session):
            session.close()

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()


def _always(data: Data) -> str | None:
    return None


@dataclass(frozen=True)
class Stage:
    """One stage: ``nodes(data)`` it acts for; either ``phases(t, data)`` run on each node by the
    one loop, or ``action(data, session, nodes)`` (a StepResult recorded on ``nodes``, or None);
    ``when(data)``: a reason not to run it at all; ``cleanup``: runs even after a failure or
    Ctrl-C; ``once``: the action is called once for all its nodes, not per node."""

    name: str
    nodes: Callable[[Data], list[Node]]
    phases: Callable[[Target, Data], list[Phase]] | None = None
    action: Callable[[Data, Session | None, list[Node]], StepResult | None] | None = None
    on: str = OWN
    order: str = PARALLEL
    batch: int = 1
    once: bool = False
    cleanup: bool = False
    when: Callable[[Data], str | None] = _always
    names: tuple[str, ...] = field(default=())  # what --skip-phases knows it by (none: internal)
    transaction: bool = False  # the phases' packages in one transaction (prepare-nodes)
    noun: str = "phase"  # what the phases are called in the log ("step" for prepare-nodes)


def phase_names(stages: Sequence[Stage]) -> tuple[str, ...]:
    """Every name ``--skip-phases`` takes for a command made of ``stages``, in order."""
    return tuple(dict.fromkeys(n for s in stages for n in s.names))


def failed(result: HostResult | None) -> bool:
    """A node a failure or Ctrl-C stopped as a whole (not just one of its phases)."""
    return result is not None and result.status in (FAILED, INTERRUPTED)


def clean(data: Data, nodes: Sequence[Node]) -> list[Node]:
    """The nodes none of whose phases failed so far."""
    return [n for n in nodes if not failed(data.results.get(n.name)) and not any(
        s.status == FAILED for s in data.results.get(n.name, HostResult(n.name)).steps)]


def run_stages(runner: Runner, stages: Sequence[Stage], data: Data) -> dict[str, HostResult]:
    """Run ``stages`` in order; each node's result, settled, init node first."""
    stopped = ""  # why the stages after a failed one do not run
    try:
        for stage in stages:
            if (stopped or runner.interrupted) and not stage.cleanup:
                _not_run(stage, data, stopped)
                continue
            why = stage.when(data)
            if why:
                continue
            try:
                _run(runner, stage, data)
            except Interrupted:
                pass
            except BootstrapError as exc:
                stopped = exc.message
                on = data.inv.init_node if stage.on == INIT else None
                if on is not None:
                    res = data.result(on)
                    res.status, res.message = FAILED, exc.message
                    runner.reporter.host_failed(res)
    finally:
        data.close()
    for node in data.targets:
        res = data.result(node)
        if stopped and not res.steps and res.status != FAILED:
            res.status, res.message = FAILED, f"not run: {stopped}"
    order = [n.name for n in data.inv.nodes if n.name in data.results]
    return {name: settle(data.results[name]) for name in order}


def _nodes(stage: Stage, data: Data, keep: tuple[str, ...] = ()) -> list[Node]:
    """The stage's nodes, without those a failure or Ctrl-C stopped (cleanups keep them)."""
    nodes = stage.nodes(data)  # selectors read values with defaults: a KeyError is a bug
    if stage.cleanup or stage.on == LOCAL:  # a judgement across nodes sees the failed ones too
        return nodes
    return [n for n in nodes if not failed(r := data.results.get(n.name)) or r.status in keep]


def _not_run(stage: Stage, data: Data, stopped: str) -> None:
    """After Ctrl-C: the stage's phases did not start on its nodes (those not failed)."""
    if stopped or stage.on == LOCAL:
        return
    for node in _nodes(stage, data, keep=(INTERRUPTED,)):
        names = ([p.name for p in stage.phases(Target(data.inv, node), data)]
                 if stage.phases is not None else stage.names)
        for name in names:
            data.record(node, StepResult(name, NOT_STARTED, message="interrupted"))


def _run(runner: Runner, stage: Stage, data: Data) -> None:
    nodes = _nodes(stage, data)
    if stage.on == LOCAL:
        assert stage.action is not None
        stage.action(data, None, nodes)
        return
    if not nodes:
        return
    if stage.action is not None and stage.name in runner.skipped:
        for node in nodes:
            data.record(node, StepResult(stage.name, SKIPPED, message=SKIP_FLAG))
        return
    if stage.on == INIT:
        _delegated(runner, stage, data, nodes)
        return
    for group in _groups(stage, data, nodes):
        if runner.interrupted and not stage.cleanup:
            return
        outcome = run_pool(group, lambda n: _on_node(runner, stage, data, n),
                           1 if stage.order == SERIAL
                           else runner.opts.parallel or data.inv.ssh.parallel)
        for node, exc in outcome.items():
            if isinstance(exc, BaseException):  # a bug, not a host problem: still only this host's
                host_failure(data.result(node), exc)
                runner.reporter.host_failed(data.result(node))
        if stage.order == BATCHES and any(failed(data.result(n)) or _step_failed(data, n, stage)
                                          for n in group):
            rest = [n for n in nodes if n not in group and not data.result(n).steps]
            for node in rest:
                for name in stage.names or (stage.name,):
                    data.record(node, StepResult(name, SKIPPED,
                                                 message="not run: a batch before it failed"))
            return


def _groups(stage: Stage, data: Data, nodes: list[Node]) -> list[list[Node]]:
    """The node groups run one after the other (each group in parallel)."""
    if stage.order == INIT_FIRST:
        first = [n for n in nodes if n == data.inv.init_node]
        return [g for g in (first, [n for n in nodes if n not in first]) if g]
    if stage.order == BATCHES:
        size = max(1, stage.batch)
        return [nodes[i:i + size] for i in range(0, len(nodes), size)]
    return [nodes]


def _step_failed(data: Data, node: Node, stage: Stage) -> bool:
    names = set(stage.names or (stage.name,))
    return any(s.status == FAILED and s.name in names for s in data.result(node).steps)


def _on_node(runner: Runner, stage: Stage, data: Data, node: Node) -> None:
    """The stage on one node's session: its phases (the one loop), or its action."""
    result = data.result(node)
    session = data.session(node)
    t = Target(data.inv, node)
    try:
        if stage.phases is not None:
            phases = stage.phases(t, data)
            if runner.interrupted:
                result.steps += [StepResult(p.name, NOT_STARTED, message="interrupted")
                                 for p in phases]
                return
            run_phases(runner, session, t, phases, result, data.facts.pop(node.name, None),
                       last=not data.shared(session), transaction=stage.transaction,
                       noun=stage.noun)
        elif stage.action is not None:
            res = stage.action(data, session, [node])
            if res is not None:
                data.record(node, res)
    except BootstrapError as exc:
        host_failure(result, exc, runner.secrets.mask)
        runner.reporter.host_failed(result)
    except Interrupted:  # in a read-only gather: before the phases, or their convergence check
        if stage.phases is not None and not result.steps:
            result.steps += [StepResult(p.name, NOT_STARTED, message="interrupted")
                             for p in stage.phases(t, data)]
        elif stage.phases is not None:
            result.message = "convergence not checked"
        result.status = INTERRUPTED
    finally:
        data.release(session)


def run_phases(
    runner: Runner,
    session: Session,
    t: Target,
    phases: list[Phase],
    result: HostResult,
    facts: F.Facts | None = None,
    last: bool = True,
    transaction: bool = False,
    noun: str = "phase",
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
    run_host(runner, session, t, phases, result, facts, skipped=runner.skipped, last=last,
             transaction=transaction, noun=noun)
    return facts


def gather(runner: Runner, session: Session, t: Target, phases: list[Phase]) -> F.Facts:
    """Every fact of ``phases`` in one round trip (not those of phases ``--skip-phases``
    skips, but what decides whether their work is already there)."""
    skipped = runner.skipped
    return runner.gather(session, [*(f for p in phases if p.name not in skipped
                                     for f in p.facts(t)),
                                   *need_facts(t, phases, skipped)])


def host_failure(result: HostResult, exc: BaseException,
                 mask: Callable[[str], str] = str) -> None:
    """Record a connection or internal error that ended a host's phases."""
    result.status = FAILED
    result.message = mask(exc.message) if isinstance(exc, BootstrapError) \
        else f"internal error: {exc!r}"


def _delegated(runner: Runner, stage: Stage, data: Data, nodes: list[Node]) -> None:
    """An action on the init node's session, for ``nodes`` (once, or node by node)."""
    assert stage.action is not None
    session = data.session(data.inv.init_node, shared=True)
    for group in ([nodes] if stage.once else [[n] for n in nodes]):
        if runner.interrupted and not stage.cleanup:
            for node in group:
                data.record(node, StepResult(stage.name, NOT_STARTED, message="interrupted"))
            continue
        res = stage.action(data, session, group)
        if res is not None:
            for node in group:
                data.record(node, res)
