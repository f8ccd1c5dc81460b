"""init-master, join-workers and reset on lab clusters of 3 and 10 nodes: figures, not assertions.

For each size, after prepare-nodes: init-master, join-workers (all workers in parallel), a no-op
join-workers, reset, a no-op reset. Printed per command: wall time, and the join's per-worker
figure (wall time / workers) to show that joins run in parallel rather than one after another
(kubespray-style serial joins would grow linearly). The lab's stand-ins are CPU-bound Python on
a 2-core machine, so absolute times say more about the lab than about real nodes; compare
ratios within one run.

Paths (``--paths``, default both): ``docker`` is the seed's (el8, Docker 20.10.8, Kubernetes
1.20.10, as `invoke demo`); ``containerd`` is el9 with containerd.io 1.7.27 and Kubernetes 1.30.1
from the per-minor repo. Their rows are printed side by side with the ratio containerd/docker.

``--ha``: instead, one control plane and two workers beside three control planes and two
workers (load_balancer local, real etcd members), on the containerd path: init-master then has
two control-plane joins, one at a time, each waited for until its API server is ready.

Usage: python benchmarks/cluster.py [N ...] [--paths docker,containerd] [--ha]
(as root; default 3 10)
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap import commands
from bootstrap.commands import CommonOptions
from bootstrap.report import Reporter
from lab import demo
from lab.cluster import Lab
from lab.inventory import control_planes, pin

# path -> (flavour, how its inventory is pinned)
PATHS = {
    "docker": ("el8", {"docker": demo.DOCKER["el8"]}),
    "containerd": ("el9", {"kubernetes": "1.30.1", "runtime": "containerd",
                           "containerd": "1.7.27"}),
}


def timed(fn, inventory: str, **opts) -> tuple[float, int]:
    started = time.monotonic()
    rc = fn(CommonOptions(inventory=inventory, log_dir=None, **opts),
            reporter=Reporter(out=io.StringIO()))
    return time.monotonic() - started, rc


def measure(n: int, path: str, planes: int = 1) -> list[tuple[str, float, int, str]]:
    """The commands' figures on a fresh lab of ``n`` nodes on one path (``planes``: how many of
    them are control planes)."""
    flavour, pins = PATHS[path]
    lab = Lab.up(n, os=flavour, log=lambda msg: None)
    try:
        pin(lab.inventory_path, lab.mirror_url, **pins)
        if planes > 1:
            control_planes(lab.inventory_path, planes)
        inv = str(lab.inventory_path)
        rows = [("prepare-nodes", *timed(commands.prepare_nodes, inv), "")]
        rows.append(("prepare-nodes (no-op)", *timed(commands.prepare_nodes, inv), ""))
        rows.append(("init-master", *timed(commands.init_master, inv), ""))
        wall, rc = timed(commands.join_workers, inv)
        rows.append(("join-workers", wall, rc, f"{wall / max(1, n - planes):.2f} s per worker"))
        rows.append(("join-workers (no-op)", *timed(commands.join_workers, inv), ""))
        rows.append(("reset", *timed(commands.reset, inv, yes=True), ""))
        rows.append(("reset (no-op)", *timed(commands.reset, inv, yes=True), ""))
        return rows
    finally:
        lab.down()


def main(sizes: list[int], paths: list[str]) -> None:
    head = "".join(f" {p + ' s':>14} {'rc':>3}" for p in paths)
    ratio = len(paths) == 2
    print(f"{'nodes':>5} {'command':<22}{head}{'  ratio' if ratio else ''}  note")
    for n in sizes:
        results = {p: measure(n, p) for p in paths}
        for i, (name, *_rest) in enumerate(results[paths[0]]):
            cells = "".join(f" {results[p][i][1]:>14.2f} {results[p][i][2]:>3}" for p in paths)
            r = (f"  {results[paths[1]][i][1] / max(results[paths[0]][i][1], 1e-6):>5.2f}"
                 if ratio else "")
            note = next((results[p][i][3] for p in paths if results[p][i][3]), "")
            print(f"{n:>5} {name:<22}{cells}{r}  {note}")


def main_ha() -> None:
    """1+2 beside 3+2, containerd path, with the ratio."""
    one, three = measure(3, "containerd"), measure(5, "containerd", planes=3)
    print(f"{'command':<22} {'1+2 s':>8} {'rc':>3} {'3+2 s':>8} {'rc':>3}  ratio")
    for a, b in zip(one, three, strict=True):
        print(f"{a[0]:<22} {a[1]:>8.2f} {a[2]:>3} {b[1]:>8.2f} {b[2]:>3}  "
              f"{b[1] / max(a[1], 1e-6):>5.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[3, 10])
    parser.add_argument("--paths", default="docker,containerd",
                        help="comma-separated: " + ", ".join(PATHS))
    parser.add_argument("--ha", action="store_true",
                        help="1 control plane + 2 workers beside 3 + 2 (containerd path)")
    args = parser.parse_args()
    if args.ha:
        main_ha()
        sys.exit(0)
    chosen = [p for p in args.paths.split(",") if p]
    for p in chosen:
        if p not in PATHS:
            parser.error(f"--paths: {p!r} is not one of {', '.join(PATHS)}")
    main(args.sizes, chosen)
