"""How long the lab takes to start and stop 1, 10 and 30 nodes (figures, not assertions).

Usage: python benchmarks/lab_start.py [N ...]   (as root; without the mirror, layer prebuilt)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab import layer
from lab.cluster import Lab


def measure(n: int) -> tuple[float, float]:
    """Seconds to bring n nodes up (sshd accepting on every one) and to stop them."""
    t0 = time.perf_counter()
    the_lab = Lab.up(n, mirror=False, log=lambda msg: None)
    up = time.perf_counter() - t0
    t0 = time.perf_counter()
    the_lab.down()
    return up, time.perf_counter() - t0


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [1, 10, 30]
    layer.ensure(log=lambda msg: None)
    print(f"{'nodes':>5}  {'start s':>8}  {'stop s':>7}")
    for n in sizes:
        up, down = measure(n)
        print(f"{n:>5}  {up:>8.2f}  {down:>7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
