"""The user-facing commands, as library functions the Invoke tasks call."""

from __future__ import annotations

import difflib
import functools
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import endpoints, releases, stages
from .api_endpoint import runs_services
from .checks import parse_ignore
from .engine import FAILED, HostResult, Preflight, Runner, RunOptions
from .errors import BootstrapError, UsageError
from .interrupt import EXIT_CODE, Interrupt
from .inventory import load
from .models import Inventory, Node
from .report import Reporter
from .runinfo import RunInfo
from .steps import prepare_steps
from .workflow import parse_skip


@dataclass
class CommonOptions:
    inventory: str = "inventory.yaml"
    limit: str | None = None
    parallel: int | None = None
    report: str | None = None
    log_dir: str | None = "runs"
    dry_run: bool = False
    ignore: str | None = None
    pull_images: bool = False
    fetch_kubeconfig: str | None = None
    timeout: int | None = None
    yes: bool = False
    break_lease: bool = False
    only: str | None = None
    skip: str | None = None
    keep: bool = False
    dead: bool = False  # reset: the --limit nodes cannot be reached (dead machines)
    allow_quorum_loss: bool = False  # reset: remove etcd members even without a quorum left
    skip_phases: str | None = None  # --skip-phases NAME,...
    kubeadm_ignore: str | None = None  # up: init-master's and join-workers' --ignore
    start: str | None = None  # up: the part to start from (--from)
    program: str = "k8s-bootstrap"  # how the user called the toolkit, for the commands it prints


DEFAULT_TIMEOUT = 300  # seconds to wait for nodes to become Ready


def select_nodes(inv: Inventory, limit: str | None) -> list[Node]:
    """The nodes named by ``--limit`` (comma-separated), or all of them."""
    if not limit:
        return list(inv.nodes)
    names = [n.strip() for n in limit.split(",") if n.strip()]
    known = [n.name for n in inv.nodes]
    for name in names:
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else f" (nodes: {', '.join(known)})"
            raise UsageError(f"--limit: no node named {name!r} in {inv.path}{extra}")
    return [n for n in inv.nodes if n.name in names]


def _finish(
    reporter: Reporter, results: dict[str, HostResult], opts: CommonOptions, title: str,
    runner: Runner,
) -> int:
    """Recap and report; the exit code (130 after Ctrl-C, 1 when a node failed)."""
    runner.close()
    interrupted = runner.interrupted
    if interrupted:
        reporter.print("interrupted")
        title = "RECAP (interrupted: no step or phase started after Ctrl-C)"
    reporter.recap(results, title, interrupted=interrupted)
    if opts.report:
        info = runner.run_info
        run = {"id": info.run_id, "command": info.command, "interrupted": interrupted}
        reporter.write_json(Path(opts.report), results, run)
    if interrupted:
        return EXIT_CODE
    return 1 if any(r.status == FAILED for r in results.values()) else 0


def phase_names(command: str) -> tuple[str, ...]:
    """The phases of a command, in order: what ``--skip-phases`` takes and its help lists."""
    if command == "prepare-nodes":
        names = [s.name for s in prepare_steps(pull_images=True, runtime="docker", proxy=True)]
        names.insert(names.index("docker") + 1, "containerd")
        return tuple(names)
    if command == "init-master":
        from .cluster.init import init_stages

        return stages.phase_names(init_stages([], None, 0))
    if command == "join-workers":
        from .cluster.join import join_stages

        return stages.phase_names(join_stages([], 0))
    if command == "reset":
        from .cluster.reset import reset_stages

        return stages.phase_names(reset_stages())
    if command == "up":
        return tuple(dict.fromkeys(n for part in PARTS[:-1] for n in phase_names(part)))
    return ()


def _runner(
    inv: Inventory, reporter: Reporter, opts: CommonOptions, command: str,
    prompt: Callable[[str], str] | None, interrupt: Interrupt, changes: bool = True,
) -> Runner:
    reporter.print(f"{inv.path}: {releases.summary(inv)}")
    for note in inv.notes:  # an old inventory key and its new name
        reporter.print(f"{inv.path}: note: {note}")
    if opts.dry_run and (inv.ssh.bastion or inv.ssh.config_file or any(n.ssh for n in inv.nodes)):
        for node in inv.nodes:  # where each node's SSH settings came from
            reporter.print(f"ssh: {endpoints.describe(node)}")
    info = RunInfo.new(command, changes=changes and not opts.dry_run,
                       break_lease=opts.break_lease)
    skip = parse_skip(opts.skip_phases, command, phase_names(command))
    dead = frozenset(n.name for n in select_nodes(inv, opts.limit)) if opts.dead else frozenset()
    return Runner(inv, reporter,
                  RunOptions(dry_run=opts.dry_run, parallel=opts.parallel, skip=skip, dead=dead,
                             allow_quorum_loss=opts.allow_quorum_loss),
                  prompt=prompt, run_info=info, interrupt=interrupt)


def _interruptible(command: Callable[..., int]) -> Callable[..., int]:
    """Run ``command(opts, prompt, reporter, interrupt)`` with SIGINT taken as Ctrl-C."""

    @functools.wraps(command)
    def wrapper(
        opts: CommonOptions,
        prompt: Callable[[str], str] | None = None,
        reporter: Reporter | None = None,
        interrupt: Interrupt | None = None,
    ) -> int:
        interrupt = interrupt or Interrupt()
        with interrupt.handling():
            return command(opts, prompt, reporter, interrupt)

    return wrapper


@_interruptible
def prepare_nodes(
    opts: CommonOptions,
    prompt: Callable[[str], str] | None,
    reporter: Reporter | None,
    interrupt: Interrupt,
) -> int:
    """Bring every selected node to the prepared state (or show the plan with dry_run)."""
    if opts.parallel is not None and opts.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    inv = load(opts.inventory)
    nodes = select_nodes(inv, opts.limit)
    reporter = reporter or Reporter(
        log_dir=Path(opts.log_dir) if opts.log_dir else None,
        command="prepare-nodes",
        show_diff=opts.dry_run,
    )
    runner = _runner(inv, reporter, opts, "prepare-nodes", prompt, interrupt)
    preflight = Preflight(parse_ignore(opts.ignore))
    results = runner.run(nodes, prepare_steps(opts.pull_images, inv.cluster.runtime,
                                                runs_services(inv)), preflight)
    return _finish(reporter, results, opts, _title(opts), runner)


@_interruptible
def check(
    opts: CommonOptions,
    prompt: Callable[[str], str] | None,
    reporter: Reporter | None,
    interrupt: Interrupt,
) -> int:
    """Run the preflight checks only: connect, gather, judge; change nothing."""
    inv = load(opts.inventory)
    nodes = select_nodes(inv, opts.limit)
    preflight = Preflight(parse_ignore(opts.ignore))
    reporter = reporter or Reporter(
        log_dir=Path(opts.log_dir) if opts.log_dir else None, command="check"
    )
    runner = _runner(inv, reporter, opts, "check", prompt, interrupt, changes=False)
    results = runner.run(nodes, [], preflight)
    return _finish(reporter, results, opts, "RECAP (check: nothing was changed)", runner)


def _cluster_setup(
    opts: CommonOptions, command: str, prompt: Callable[[str], str] | None,
    reporter: Reporter | None, interrupt: Interrupt,
) -> tuple[Inventory, Runner, Reporter]:
    if opts.parallel is not None and opts.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if opts.timeout is not None and opts.timeout < 1:
        raise UsageError("--timeout must be at least 1 (seconds)")
    inv = load(opts.inventory)
    reporter = reporter or Reporter(
        log_dir=Path(opts.log_dir) if opts.log_dir else None,
        command=command,
        show_diff=opts.dry_run,
    )
    return inv, _runner(inv, reporter, opts, command, prompt, interrupt), reporter


def _kubeadm_ignore(opts: CommonOptions) -> list[str]:
    """``--ignore`` for init/join: kubeadm preflight check names, passed to kubeadm."""
    return [n.strip() for n in (opts.ignore or "").split(",") if n.strip()]


def _title(opts: CommonOptions) -> str:
    return "RECAP (dry run: nothing was changed)" if opts.dry_run else "RECAP"


@_interruptible
def init_master(
    opts: CommonOptions,
    prompt: Callable[[str], str] | None,
    reporter: Reporter | None,
    interrupt: Interrupt,
) -> int:
    """kubeadm init on the init node from a rendered config, kubeconfig, flannel; the other
    control planes joined one at a time (``--limit``: only these); wait Ready."""
    from .cluster.init import init_master as run

    inv, runner, reporter = _cluster_setup(opts, "init-master", prompt, reporter, interrupt)
    planes = None
    if opts.limit:
        chosen = select_nodes(inv, opts.limit)
        workers = [n.name for n in chosen if not n.is_control_plane]
        if workers:
            raise UsageError(f"--limit: {', '.join(workers)} not a control-plane node: "
                             "init-master sets up the control planes (join-workers the workers)")
        planes = chosen
    results = run(
        runner, _kubeadm_ignore(opts), opts.fetch_kubeconfig, opts.timeout or DEFAULT_TIMEOUT,
        planes,
    )
    return _finish(reporter, results, opts, _title(opts), runner)


@_interruptible
def join_workers(
    opts: CommonOptions,
    prompt: Callable[[str], str] | None,
    reporter: Reporter | None,
    interrupt: Interrupt,
) -> int:
    """Join every worker not yet joined (``--limit``: only these), then wait until Ready."""
    from .cluster.join import join_workers as run

    inv, runner, reporter = _cluster_setup(opts, "join-workers", prompt, reporter, interrupt)
    workers = [n for n in select_nodes(inv, opts.limit) if not n.is_control_plane]
    if opts.limit and inv.init_node.name in [x.strip() for x in opts.limit.split(",")]:
        raise UsageError(
            f"--limit: {inv.init_node.name} is the master; join-workers joins workers only "
            "(init-master sets up the master)"
        )
    if not workers:
        raise UsageError(f"no workers in {inv.path}: nothing to join")
    results = run(runner, workers, _kubeadm_ignore(opts), opts.timeout or DEFAULT_TIMEOUT)
    return _finish(reporter, results, opts, _title(opts), runner)


@_interruptible
def reset(
    opts: CommonOptions,
    prompt: Callable[[str], str] | None,
    reporter: Reporter | None,
    interrupt: Interrupt,
) -> int:
    """Drain, delete and reset the selected nodes (all by default) after typing cluster.name."""
    from .cluster.reset import reset as run

    if opts.dead and not opts.limit:
        raise UsageError("--dead needs --limit: name the nodes that cannot be reached")
    inv, runner, reporter = _cluster_setup(opts, "reset", prompt, reporter, interrupt)
    targets = select_nodes(inv, opts.limit)
    _removable(inv, targets, opts)
    if not opts.dry_run and not opts.yes:
        names = ", ".join(n.name for n in targets)
        question = (
            f"reset will remove {names} from cluster {inv.cluster.name!r} and undo kubeadm "
            f"there.\nType the cluster name ({inv.cluster.name}) to go on: "
        )
        if prompt is None:
            if not sys.stdin.isatty():
                raise UsageError(
                    "reset needs a confirmation: run it at a terminal, or pass --yes"
                )
            prompt = input
        if prompt(question).strip() != inv.cluster.name:
            raise UsageError("reset: not confirmed; nothing was changed")
    results = run(runner, targets)
    return _finish(reporter, results, opts, _title(opts), runner)


def _removable(inv: Inventory, targets: list[Node], opts: CommonOptions) -> None:
    """A partial removal of control planes: one at a time, never the init node first."""
    planes = [n for n in targets if n.is_control_plane]
    if not planes or len(planes) == len(inv.control_plane):
        if opts.dead and planes:
            raise UsageError("--dead with every control plane: nothing would stay to remove "
                             "the members through; reset the cluster without --dead")
        return
    if inv.init_node in planes:
        raise UsageError(
            f"--limit: {inv.init_node.name} is the init node (the first control plane listed), "
            "through which the others are managed; list another control plane first in the "
            f"inventory, then remove {inv.init_node.name}")
    if len(planes) > 1:
        raise UsageError(
            f"--limit: {', '.join(n.name for n in planes)}: reset removes one control plane at "
            "a time (etcd's health is judged again between removals): --limit "
            f"{planes[0].name}, then the next")


@_interruptible
def verify(
    opts: CommonOptions,
    prompt: Callable[[str], str] | None,
    reporter: Reporter | None,
    interrupt: Interrupt,
) -> int:
    """Check that the cluster the inventory describes works (bootstrap/verify.py); it creates
    only its namespace, a node label and a hook directory, removed afterwards.
    Exit 1 when a check fails."""
    from . import verify as V
    from . import verify_objects as O
    from . import verify_pods as P
    from . import verify_workloads as W

    names = V.selected(opts.only, opts.skip)
    checks = V.select(opts.only, opts.skip)
    workloads = [n for n in names if n in V.WORKLOADS]
    objects = [n for n in names if n in V.OBJECTS]
    pods = [n for n in names if n in V.PODS]
    failover = "ControlPlaneFailover" in names
    if opts.timeout is not None and opts.timeout < 1:
        raise UsageError("--timeout must be at least 1 (seconds)")
    limit = opts.timeout or V.DEFAULT_TIMEOUT
    inv = load(opts.inventory)
    reporter = reporter or Reporter(log_dir=Path(opts.log_dir) if opts.log_dir else None,
                                    command="verify")
    if opts.dry_run:
        reporter.print(f"{inv.path}: {releases.summary(inv)}")
        for text in V.dry_run_lines(inv, checks, limit):
            reporter.print(text)
        if workloads:
            reporter.print(f"would: on {inv.init_node.name}: $ {W.apply_script(inv, limit)}\n"
                           f"  with stdin:\n{W.manifests(inv)}")
            reporter.print(f"would: on {inv.init_node.name}: kubectl exec wget between the "
                           "netcheck pods, nslookup from one; on every node: curl the NodePort "
                           "and the ClusterIP; then $ kubectl delete namespace "
                           f"{inv.verify.namespace}"
                           + (" (not with --keep)" if opts.keep else ""))
        if objects:
            reporter.print(O.dry_run_text(inv, limit, opts.keep, last=not pods))
        if pods:
            reporter.print(P.dry_run_text(inv, pods, limit, opts.keep))
        if failover:
            from . import verify_failover as FO

            reporter.print(FO.dry_run_text(inv, limit))
        reporter.print(f"verify --dry-run: {len(names)} checks ({', '.join(names)}); nothing "
                       "was read or created")
        return 0
    runner = _runner(inv, reporter, opts, "verify", prompt, interrupt, changes=failover)
    started = time.monotonic()
    try:
        outcomes = V.run(runner, inv, checks, workloads, objects, pods, limit, opts.keep,
                         failover)
    finally:
        runner.close()
    if runner.interrupted:  # the workloads' own cleanup (namespace, label, files) already ran
        reporter.print("interrupted: verify stopped; what it created was removed")
        return EXIT_CODE
    for outcome in outcomes:
        reporter.print(V.line(outcome))
    failed = [o.check for o in outcomes if not o.ok]
    reporter.print(f"verify: {len(outcomes)} checks, {len(outcomes) - len(failed)} passed"
                   + (f", failed: {', '.join(failed)}" if failed else ""))
    if opts.report:
        Path(opts.report).write_text(
            json.dumps(V.report(outcomes, time.monotonic() - started), indent=2) + "\n")
    return 1 if failed else 0


PARTS = ("prepare-nodes", "init-master", "join-workers", "verify")
"""What ``up`` runs, in this order: each part is the command of that name."""


@dataclass
class PartResult:
    """One part of ``up``: its exit code (None: not run) and why it was not run."""

    name: str
    code: int | None = None
    seconds: float = 0.0
    note: str = ""

    @property
    def status(self) -> str:
        if self.code is None:
            return "skipped" if self.note else "not run"
        return {0: "ok", EXIT_CODE: "interrupted"}.get(self.code, "failed")


def _part_options(opts: CommonOptions, part: str) -> CommonOptions:
    """The flags of ``up`` that apply to one part, as that command takes them."""
    names = phase_names(part)
    skip = ",".join(n.strip() for n in (opts.skip_phases or "").split(",") if n.strip() in names)
    common = {"inventory": opts.inventory, "log_dir": opts.log_dir, "dry_run": opts.dry_run,
              "skip_phases": skip or None}
    lease_flags = {"break_lease": opts.break_lease}
    if part == "prepare-nodes":
        return CommonOptions(**common, **lease_flags, parallel=opts.parallel, ignore=opts.ignore,
                             pull_images=opts.pull_images)
    if part == "init-master":
        return CommonOptions(**common, **lease_flags, ignore=opts.kubeadm_ignore,
                             timeout=opts.timeout, fetch_kubeconfig=opts.fetch_kubeconfig)
    if part == "join-workers":
        return CommonOptions(**common, **lease_flags, parallel=opts.parallel,
                             ignore=opts.kubeadm_ignore, timeout=opts.timeout)
    return CommonOptions(**common, parallel=opts.parallel, only=opts.only, skip=opts.skip)


@_interruptible
def up(
    opts: CommonOptions,
    prompt: Callable[[str], str] | None,
    reporter: Reporter | None,
    interrupt: Interrupt,
) -> int:
    """The whole cluster: prepare-nodes, init-master, join-workers, verify, stopping at the first
    part that exits non-zero (``--from`` starts at a later part). Each part keeps its own rules
    (one node's failure does not stop the others inside prepare-nodes). A summary and the
    command to resume close the run."""
    start = opts.start or PARTS[0]
    if start not in PARTS:
        hint = difflib.get_close_matches(start, PARTS, n=1)
        raise UsageError(f"--from {start!r}: not a part of up"
                         + (f" (did you mean {hint[0]!r}?)" if hint else "")
                         + f"; the parts: {', '.join(PARTS)}")
    if opts.parallel is not None and opts.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    parse_skip(opts.skip_phases, "up", phase_names("up"))  # each part takes the names it has
    inv = load(opts.inventory)  # a bad inventory stops up before any part
    say = reporter.print if reporter is not None else functools.partial(print, flush=True)
    commands = {"prepare-nodes": prepare_nodes, "init-master": init_master,
                "join-workers": join_workers, "verify": verify}
    results = [PartResult(p, note="before --from" if PARTS.index(p) < PARTS.index(start)
                          else "") for p in PARTS]
    todo = [r for r in results if not r.note]
    if not any(not n.is_control_plane for n in inv.nodes):
        results[PARTS.index("join-workers")].note = "no workers in the inventory"
    for i, part in enumerate(todo):
        if part.note:
            continue
        if interrupt.requested:
            break
        say(f"\nup: {part.name} ({i + 1}/{len(todo)})")
        started = time.monotonic()
        try:
            part.code = commands[part.name](_part_options(opts, part.name), prompt, reporter,
                                            interrupt)
        except BootstrapError as exc:
            say(f"{part.name}: {exc}")
            part.code = exc.exit_code or 1
        part.seconds = time.monotonic() - started
        if part.code and not opts.dry_run:
            break
    say(_up_summary(results, opts, interrupt.requested))
    if interrupt.requested:
        return EXIT_CODE
    return next((r.code for r in results if r.code), 0)


def _up_summary(results: list[PartResult], opts: CommonOptions, interrupted: bool) -> str:
    """What up did, part by part, and how to go on."""
    lines = ["", "UP" + (" (dry run: nothing was changed)" if opts.dry_run else "")]
    width = max(len(r.name) for r in results)
    for r in results:
        line = f"  {r.name:<{width}}  {r.status:<11}"
        if r.code is not None:
            line += f" {r.seconds:7.1f} s" + (f"  (exit {r.code})" if r.code else "")
        elif r.note:
            line += f"  ({r.note})"
        lines.append(line)
    stopped = next((r for r in results if r.code), None)
    if opts.dry_run:
        return "\n".join(lines)
    if interrupted:
        where = next((r for r in results if r.code == EXIT_CODE), None)
        resume = where or next((r for r in results if r.code is None and not r.note), None)
        lines.append("up: interrupted (Ctrl-C): no part started after it"
                     + (f"; resume with: {_resume(opts, resume.name)}" if resume else ""))
    elif stopped is not None:
        lines.append(f"up: stopped: {stopped.name} failed; fix what it reported above, then "
                     f"resume with: {_resume(opts, stopped.name)} (running up again from the "
                     "start is safe too: every part changes only what is not yet done)")
    else:
        lines.append("up: done: the cluster is up and verify passed"
                     if any(r.name == "verify" and r.code == 0 for r in results)
                     else "up: done")
    return "\n".join(lines)


def _resume(opts: CommonOptions, part: str) -> str:
    """The command that starts up again at ``part``."""
    words = [opts.program, "up", "-i", opts.inventory]
    if part != PARTS[0]:
        words += ["--from", part]
    return " ".join(shlex.quote(w) for w in words)
