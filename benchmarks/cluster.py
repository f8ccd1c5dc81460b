"""init-master, join-workers and reset on lab clusters of 3 and 10 nodes: figures, not assertions.

For each size, after prepare-nodes: init-master, join-workers (all workers in parallel), a no-op
join-workers, reset, a no-op reset. Printed per command: wall time, and the join's per-worker
figure (wall time / workers) to show that joins run in parallel rather than one after another
(kubespray-style serial joins would grow linearly). The lab's stand-ins are CPU-bound Python on
a 2-core machine, so absolute times say more about the lab than about real nodes; compare
ratios within one run.

Usage: python benchmarks/cluster.py [N ...]   (as root; default 3 10)
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap import commands
from bootstrap.commands import CommonOptions
from bootstrap.report import Reporter
from lab.cluster import Lab


def timed(fn, inventory: str, **opts) -> tuple[float, int]:
    started = time.monotonic()
    rc = fn(CommonOptions(inventory=inventory, log_dir=None, **opts),
            reporter=Reporter(out=io.StringIO()))
    return time.monotonic() - started, rc


def main(sizes: list[int]) -> None:
    print(f"{'nodes':>5} {'command':<22} {'wall s':>8} {'rc':>3}  note")
    for n in sizes:
        lab = Lab.up(n, log=lambda msg: None)
        try:
            inv = str(lab.inventory_path)
            rows = [("prepare-nodes", *timed(commands.prepare_nodes, inv), "")]
            rows.append(("init-master", *timed(commands.init_master, inv), ""))
            wall, rc = timed(commands.join_workers, inv)
            rows.append(("join-workers", wall, rc, f"{wall / max(1, n - 1):.2f} s per worker"))
            rows.append(("join-workers (no-op)", *timed(commands.join_workers, inv), ""))
            rows.append(("reset", *timed(commands.reset, inv, yes=True), ""))
            rows.append(("reset (no-op)", *timed(commands.reset, inv, yes=True), ""))
        finally:
            lab.down()
        for name, wall, rc, note in rows:
            print(f"{n:>5} {name:<22} {wall:>8.2f} {rc:>3}  {note}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [3, 10])
