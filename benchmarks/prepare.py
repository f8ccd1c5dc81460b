"""prepare-nodes on 1, 10 and 30 lab nodes: figures, not assertions.

For each lab size: a first run and a no-op re-run of prepare-nodes (in-process, the library the
Invoke task calls), and, as the baseline, the same SSH engine doing only connect plus one `true`
per node (bootstrap.ssh.Session + run_pool). Printed per run:
- wall time;
- SSH connections and round trips (exec requests) per node, counted in each node's sshd log;
- client CPU seconds per node: getrusage(RUSAGE_SELF) user+sys delta around the run (this
  process only; the nodes are other processes).

Targets (issue 4): a no-op re-run uses one connection and at most 3 round trips per node; its
client-side overhead per node is within 2x that of connect plus `true`.

Usage: python benchmarks/prepare.py [N ...]   (as root; default 1 10 30; user lab, sudo -n)
"""

from __future__ import annotations

import io
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap.commands import CommonOptions, prepare_nodes
from bootstrap.inventory import load
from bootstrap.report import Reporter
from bootstrap.secrets import Secrets
from bootstrap.ssh import Session, SudoPassword, run_pool
from lab.cluster import Lab


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def connections(node) -> int:
    try:
        return node.sshd_log.read_text(errors="replace").count("Accepted publickey for ")
    except OSError:
        return 0


class Measure:
    """Wall, client CPU and per-node sshd counts around one block."""

    def __init__(self, the_lab: Lab) -> None:
        self.lab = the_lab

    def __enter__(self) -> Measure:
        self.execs = [n.exec_requests() for n in self.lab.nodes]
        self.conns = [connections(n) for n in self.lab.nodes]
        self.cpu0, self.t0 = cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = cpu() - self.cpu0
        n = len(self.lab.nodes)
        nodes = self.lab.nodes
        execs = [x.exec_requests() - b for x, b in zip(nodes, self.execs, strict=True)]
        conns = [connections(x) - b for x, b in zip(nodes, self.conns, strict=True)]
        self.rt_max, self.rt_mean = max(execs), statistics.mean(execs)
        self.conn_max = max(conns)
        self.cpu_per_node = self.cpu / n


def prepare(the_lab: Lab) -> tuple[int, int, str]:
    """Exit code, number of changed steps over all nodes, console text."""
    out = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        rc = prepare_nodes(CommonOptions(inventory=str(the_lab.inventory_path), log_dir=None,
                                         report=str(report)),
                           reporter=Reporter(out=out))
        hosts = json.loads(report.read_text())["hosts"].values()
    changed = sum(s["status"] == "changed" for h in hosts for s in h["steps"])
    return rc, changed, out.getvalue()


def connect_true(the_lab: Lab, command: str = "true") -> None:
    """The engine's floor: one Session per node, connect, run `true` (through sudo, as the
    facts are), close; in the same bounded pool."""
    inv = load(str(the_lab.inventory_path))
    secrets = Secrets()
    password = SudoPassword(inv.ssh.sudo_password_env, secrets)

    def work(node):
        session = Session(node, inv.ssh, secrets, password)
        try:
            session.connect()
            res = session.run(command, what=command)
            if not res.ok:
                raise RuntimeError(f"{node.name}: true failed: {res.stderr}")
        finally:
            session.close()

    results = run_pool(inv.nodes, work, inv.ssh.parallel)
    errors = [r for r in results.values() if isinstance(r, BaseException)]
    if errors:
        raise errors[0]


def row(label: str, n: int, m: Measure) -> str:
    return (f"{n:>5}  {label:<20} {m.wall:>7.2f} {m.conn_max:>9} {m.rt_mean:>8.1f} "
            f"{m.rt_max:>6} {m.cpu_per_node * 1000:>10.1f}")


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [1, 10, 30]
    print("prepare-nodes over the lab (user lab; ssh.parallel 20 from the defaults)")
    print(f"{'nodes':>5}  {'run':<20} {'wall s':>7} {'conn/node':>9} {'rt mean':>8} "
          f"{'rt max':>6} {'cpu ms/node':>10}")
    verdicts = []
    for n in sizes:
        the_lab = Lab.up(n, log=lambda msg: None)
        try:
            with Measure(the_lab) as first:
                rc, _, out = prepare(the_lab)
            if rc != 0:
                print(out)
                raise SystemExit(f"first run failed on {n} nodes (exit {rc})")
            print(row("first run", n, first), flush=True)
            with Measure(the_lab) as noop:
                rc, changed, out = prepare(the_lab)
            if rc != 0 or changed:
                print(out)
                raise SystemExit(f"the re-run on {n} nodes was not a no-op (exit {rc})")
            print(row("no-op re-run", n, noop), flush=True)
            floors = []
            for _ in range(3):
                with Measure(the_lab) as floor:
                    connect_true(the_lab)
                floors.append(floor)
            floor = min(floors, key=lambda m: m.cpu)
            print(row("connect + true", n, floor), flush=True)
            # Client CPU grows with how long a remote command runs (Invoke polls every 10 ms
            # while it waits; paramiko's transport thread wakes too). The lab's gather is slow
            # (Python stand-ins, CPU-bound on the nodes), so also show the floor for a command
            # as long as one node's no-op gather (wall / rounds of the pool).
            rounds = -(-n // load(str(the_lab.inventory_path)).ssh.parallel)
            held = noop.wall / rounds
            with Measure(the_lab) as sleeper:
                connect_true(the_lab, f"sleep {held:.2f}")
            print(row(f"connect + sleep {held:.1f}", n, sleeper), flush=True)
            ratio = noop.cpu_per_node / floor.cpu_per_node if floor.cpu_per_node else float("nan")
            verdicts.append(
                f"{n:>3} nodes: no-op re-run {noop.conn_max} connection(s) and at most "
                f"{noop.rt_max} round trip(s) per node (target 1 and <= 3: "
                f"{'met' if noop.conn_max == 1 and noop.rt_max <= 3 else 'MISSED'}); "
                f"client CPU {ratio:.2f}x connect+true (target <= 2x: "
                f"{'met' if ratio <= 2 else 'MISSED'}; "
                f"{noop.cpu_per_node / sleeper.cpu_per_node:.2f}x connect+sleep {held:.1f})"
            )
        finally:
            the_lab.down()
    print()
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
