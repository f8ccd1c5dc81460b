"""The user-facing commands, as library functions the Invoke tasks call."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .checks import parse_ignore
from .engine import FAILED, HostResult, Preflight, Runner, RunOptions
from .errors import UsageError
from .inventory import load
from .models import Inventory, Node
from .report import Reporter
from .steps import prepare_steps


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
    reporter: Reporter, results: dict[str, HostResult], opts: CommonOptions, title: str
) -> int:
    reporter.recap(results, title)
    if opts.report:
        reporter.write_json(Path(opts.report), results)
    return 1 if any(r.status == FAILED for r in results.values()) else 0


def prepare_nodes(
    opts: CommonOptions,
    prompt: Callable[[str], str] | None = None,
    reporter: Reporter | None = None,
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
    runner = Runner(
        inv, reporter, RunOptions(dry_run=opts.dry_run, parallel=opts.parallel), prompt=prompt
    )
    preflight = Preflight(parse_ignore(opts.ignore))
    results = runner.run(nodes, prepare_steps(opts.pull_images), preflight)
    title = "RECAP (dry run: nothing was changed)" if opts.dry_run else "RECAP"
    return _finish(reporter, results, opts, title)


def check(
    opts: CommonOptions,
    prompt: Callable[[str], str] | None = None,
    reporter: Reporter | None = None,
) -> int:
    """Run the preflight checks only: connect, gather, judge; change nothing."""
    inv = load(opts.inventory)
    nodes = select_nodes(inv, opts.limit)
    preflight = Preflight(parse_ignore(opts.ignore))
    reporter = reporter or Reporter(
        log_dir=Path(opts.log_dir) if opts.log_dir else None, command="check"
    )
    runner = Runner(inv, reporter, RunOptions(parallel=opts.parallel), prompt=prompt)
    results = runner.run(nodes, [], preflight)
    return _finish(reporter, results, opts, "RECAP (check: nothing was changed)")
