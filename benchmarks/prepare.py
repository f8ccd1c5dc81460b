"""prepare-nodes on 1, 10 and 30 lab nodes: figures, not assertions.

For each lab size, on a fresh lab each: a first run and a no-op re-run of prepare-nodes
(in-process, the library the Invoke task calls), and as the floor the same SSH engine doing only
connect plus one `true` per node. Printed per run:
- wall time;
- SSH connections and round trips (exec requests) per node, from each node's sshd log;
- package transactions per node (`yum install` calls in the node's stand-in call log);
- remote processes per node: PIDs created in the node's PID namespace, sshd and sudo included;
- CPU used on the nodes (all processes in their namespaces), per node;
- client CPU per node: getrusage of the process that ran the toolkit.

With ``--before REV`` the same runs also use the toolkit of commit REV, checked out in a
``git worktree`` beside this one (with this checkout's lab), and the table gives now/before
ratios measured in the same run. Each side runs in its own Python process.

With ``--bastion`` the same runs of this checkout also go through a bastion (a lab with one:
``ssh.bastion``, every node's connection a channel of the bastion's one), beside the direct ones,
with bastion/direct ratios from the same run.

With ``--os el7,el8,el9`` each size runs on labs of each flavour (default el7), the nodes'
docker pinned as `invoke demo` pins it for that release.

Usage: python benchmarks/prepare.py [--before REV] [--bastion] [--os LIST] [N ...]
(as root; default sizes 1 10 30)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# -- one side, in its own process: `prepare.py --side CODE N` prints one JSON line --------------
def side(code: Path, n: int, flavour: str = "el7", via: str = "direct") -> dict:
    import importlib
    import io

    sys.path.insert(0, str(code))  # the toolkit from CODE ...
    importlib.import_module("bootstrap")
    sys.path.insert(0, str(ROOT))  # ... the lab from this checkout
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

    def transactions(node) -> int:
        return sum(c["cmd"] in ("yum", "dnf") and "install" in c["argv"] for c in node.calls())

    def measure(the_lab, work) -> dict:
        nodes = the_lab.nodes
        before = [(x.exec_requests(), connections(x), transactions(x), x.last_pid(),
                   x.cpu_seconds()) for x in nodes]
        c0, t0 = cpu(), time.perf_counter()
        rc = work()
        wall, client = time.perf_counter() - t0, cpu() - c0
        after = [(x.exec_requests(), connections(x), transactions(x), x.last_pid(),
                  x.cpu_seconds()) for x in nodes]
        d = [[a - b for a, b in zip(x, y, strict=True)] for x, y in zip(after, before,
                                                                          strict=True)]
        # after[i][3] is a reading taken after the run: the processes in between, less the
        # reading's own one (pids_created_since would take a third reading and count the second)
        pids = [after[i][3] - before[i][3] - 1 for i in range(len(nodes))]
        return {
            "rc": rc, "wall": wall, "client_ms": client * 1000 / len(nodes),
            "conns": max(x[1] for x in d), "rt_mean": statistics.mean(x[0] for x in d),
            "rt_max": max(x[0] for x in d), "tx": statistics.mean(x[2] for x in d),
            "pids": statistics.mean(pids), "pids_max": max(pids),
            "node_cpu": statistics.mean(x[4] for x in d),
        }

    def prepare(the_lab) -> int:
        out = io.StringIO()
        rc = prepare_nodes(CommonOptions(inventory=str(the_lab.inventory_path), log_dir=None),
                           reporter=Reporter(out=out))
        if rc:
            print(out.getvalue(), file=sys.stderr)
        return rc

    def connect_true(the_lab) -> int:
        inv = load(str(the_lab.inventory_path))
        secrets = Secrets()
        password = SudoPassword(inv.ssh.sudo_password_env, secrets)

        try:  # the bastion's one connection, shared (a toolkit before bastions has none)
            from bootstrap.ssh import Jumps

            jumps = Jumps(inv.ssh)
        except ImportError:
            jumps = None

        def work(node):
            extra = {"jumps": jumps} if jumps is not None else {}
            session = Session(node, inv.ssh, secrets, password, **extra)
            try:
                session.connect()
                if not session.run("true", what="true").ok:
                    raise RuntimeError(f"{node.name}: true failed")
            finally:
                session.close()

        results = run_pool(inv.nodes, work, inv.ssh.parallel)
        if jumps is not None:
            jumps.close()
        return int(any(isinstance(r, BaseException) for r in results.values()))

    from lab import demo
    from lab.inventory import pin

    the_lab = Lab.up(n, log=lambda msg: None, os=flavour, bastion=via == "bastion")
    pin(the_lab.inventory_path, None, docker=demo.DOCKER[flavour])
    if code.resolve() != ROOT:  # an older toolkit may not know `registries` (its old key)
        path = the_lab.inventory_path
        path.write_text(path.read_text().replace("registries: {}\n",
                                                 "docker:\n  registry_mirrors: []\n"))
    try:
        return {
            "first": measure(the_lab, lambda: prepare(the_lab)),
            "noop": measure(the_lab, lambda: prepare(the_lab)),
            "true": measure(the_lab, lambda: connect_true(the_lab)),
        }
    finally:
        the_lab.down()


def run_side(code: Path, n: int, flavour: str = "el7", via: str = "direct") -> dict:
    res = subprocess.run([sys.executable, __file__, "--side", str(code), str(n), flavour, via],
                         capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"{code} on {n} nodes failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


COLUMNS = ("wall s", "conn", "rt", "tx", "procs", "node cpu s", "client ms")


def cells(m: dict) -> list[str]:
    return [f"{m['wall']:.2f}", f"{m['conns']}", f"{m['rt_mean']:.1f}", f"{m['tx']:.1f}",
            f"{m['pids']:.1f}", f"{m['node_cpu']:.2f}", f"{m['client_ms']:.1f}"]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--side"]:
        print(json.dumps(side(Path(argv[1]), int(argv[2]), *argv[3:5])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", help="also measure the toolkit of commit REV")
    ap.add_argument("--os", default="el7", help="comma-separated lab flavours (el7,el8,el9)")
    ap.add_argument("--bastion", action="store_true",
                    help="also run this checkout's toolkit through a bastion (ssh.bastion)")
    ap.add_argument("sizes", nargs="*", type=int, default=[1, 10, 30])
    args = ap.parse_args(argv)
    tree = None
    if args.before:
        tree = Path(tempfile.mkdtemp(prefix="bench-before-"))
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.before],
                       cwd=ROOT, check=True)
    try:
        print("prepare-nodes over the lab (user lab; ssh.parallel 20); per node: connections, "
              "round trips, package transactions, remote processes, node CPU, client CPU")
        head = (f"{'os':<4} {'nodes':>5}  {'side':<6} {'run':<14}"
                + "".join(f"{c:>11}" for c in COLUMNS))
        print(head)
        for flavour, n in itertools.product(args.os.split(","), args.sizes):
            sides = {"now": run_side(ROOT, n, flavour)}
            if tree is not None:
                sides["before"] = run_side(tree, n, flavour)
            if args.bastion:
                sides["bastion"] = run_side(ROOT, n, flavour, "bastion")
            for name, runs in sides.items():
                for run, label in (("first", "first run"), ("noop", "no-op re-run"),
                                   ("true", "connect+true")):
                    print(f"{flavour:<4} {n:>5}  {name:<6} {label:<14}"
                          + "".join(f"{c:>11}" for c in cells(runs[run])), flush=True)
            if "before" in sides:
                now, old = sides["now"], sides["before"]
                for run, label in (("first", "first run"), ("noop", "no-op re-run")):
                    ratio = [now[run][k] / old[run][k] if old[run][k] else float("nan")
                             for k in ("wall", "pids", "node_cpu", "client_ms")]
                    print(f"{n:>5}  now/before {label}: wall {ratio[0]:.2f}x, remote processes "
                          f"{ratio[1]:.2f}x, node CPU {ratio[2]:.2f}x, client CPU "
                          f"{ratio[3]:.2f}x", flush=True)
            if "bastion" in sides:
                now, via = sides["now"], sides["bastion"]
                for run, label in (("first", "first run"), ("noop", "no-op re-run")):
                    print(f"{n:>5}  bastion/direct {label}: wall "
                          f"{via[run]['wall'] / now[run]['wall']:.2f}x, client CPU "
                          f"{via[run]['client_ms'] / now[run]['client_ms']:.2f}x", flush=True)
    finally:
        if tree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main(sys.argv[1:]))
