"""`invoke verify` on the demo's cluster: figures, not assertions.

Builds the demo's 3-node cluster (el8, Docker 20.10.8, Kubernetes 1.20.10; ``--path
containerd``: el9, containerd 1.7.27, 1.30.1), then runs verify: the read-only checks alone, the
workload checks (seed 004), the Pod chapter (seed 000), and everything in one run. Printed per
run: wall time and checks passed (the Pod-chapter checks run at once, so the chapter is one
row). The lab's kubelet timings (probe periods, back-off, grace
periods) run at ``--time-scale`` (default 1.0, real time: what a real cluster would take on
top of its image pulls); container commands such as ``sleep 3`` always run in real time.

Usage: python benchmarks/verify.py [--path docker|containerd] [--time-scale 1.0]   (as root)
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap import commands
from bootstrap import verify as V
from bootstrap.commands import CommonOptions
from bootstrap.report import Reporter
from lab import demo
from lab.cluster import Lab
from lab.inventory import pin

PATHS = {
    "docker": ("el8", {"docker": demo.DOCKER["el8"]}),
    "containerd": ("el9", {"kubernetes": "1.30.1", "runtime": "containerd",
                           "containerd": "1.7.27"}),
}
RUNS = {
    "read-only (Nodes, SystemPods, ProxyMode)": "Nodes,SystemPods,ProxyMode",
    "workloads (PodNetwork, DNS, NginxNodePort)": "PodNetwork,DNS,NginxNodePort",
    f"Pod chapter ({len(V.PODS)} checks)": ",".join(V.PODS),
    f"everything ({len(V.NAMES)} checks)": "",
}


def run(inventory: str, only: str) -> tuple[float, int, int, list[str]]:
    """Wall time, checks passed, checks run, the failed ones."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "verify.json"
        started = time.monotonic()
        commands.verify(CommonOptions(inventory=inventory, log_dir=None, only=only or None,
                                      report=str(report)),
                        reporter=Reporter(out=io.StringIO(), log_dir=None, command="verify"))
        wall = time.monotonic() - started
        checks = json.loads(report.read_text())["checks"] if report.exists() else []
    return (wall, sum(c["ok"] for c in checks), len(checks),
            [c["check"] for c in checks if not c["ok"]])


def main(path: str, scale: float) -> None:
    flavour, pins = PATHS[path]
    lab = Lab.up(3, os=flavour, log=lambda msg: None)
    try:
        pin(lab.inventory_path, lab.mirror_url, **pins)
        (lab.cluster_dir / "time_scale").write_text(f"{scale}\n")
        inv = str(lab.inventory_path)
        for command in (commands.prepare_nodes, commands.init_master, commands.join_workers):
            if command(CommonOptions(inventory=inv, log_dir=None),
                       reporter=Reporter(out=io.StringIO())) != 0:
                sys.exit(f"{command.__name__} failed: no cluster to verify")
        print(f"verify on 3 lab nodes, {path} path, kubelet time scale {scale}")
        print(f"{'run':<46} {'wall s':>7} {'passed':>7}  failed")
        for name, only in RUNS.items():
            wall, ok, total, failed = run(inv, only)
            print(f"{name:<46} {wall:>7.1f} {f'{ok}/{total}':>7}  {', '.join(failed)}")
    finally:
        lab.down()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", choices=sorted(PATHS), default="docker")
    ap.add_argument("--time-scale", type=float, default=1.0)
    args = ap.parse_args()
    main(args.path, args.time_scale)
