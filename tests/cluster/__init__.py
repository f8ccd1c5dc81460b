"""Cluster lifecycle tests over the lab: helpers to run the commands in-process and capture all
they write (console, per-run logs, JSON reports, exception texts)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

from bootstrap import commands
from bootstrap.commands import CommonOptions
from bootstrap.errors import BootstrapError
from bootstrap.interrupt import Interrupt
from bootstrap.report import Reporter
from lab.cluster import Lab
from lab.node import Node
from tests.engine import Run, is_mutating

COMMANDS: dict[str, Callable[..., int]] = {
    "prepare-nodes": commands.prepare_nodes,
    "init-master": commands.init_master,
    "join-workers": commands.join_workers,
    "reset": commands.reset,
    "up": commands.up,
}


class Recorder:
    """Runs toolkit commands against one lab and keeps every text they produced."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.runs: list[Run] = []
        self.errors: list[str] = []
        self.tokens: set[str] = set()
        self.up_runs: tuple[Run, ...] = ()  # the runs of `up` that built the cluster

    def __call__(self, command: str, prompt: Callable[[str], str] | None = None,
                 interrupt: Interrupt | None = None, **opts: object) -> Run:
        n = len(self.runs)
        report = self.workdir / f"{n:02d}-{command}.json"
        out = io.StringIO()
        reporter = Reporter(out=out, log_dir=self.workdir / "logs", command=command,
                            show_diff=bool(opts.get("dry_run")))
        options = CommonOptions(inventory=str(self.lab.inventory_path), report=str(report),
                                log_dir=None, timeout=int(opts.pop("timeout", 120)), **opts)
        try:
            rc = COMMANDS[command](options, prompt=prompt, reporter=reporter,
                                   interrupt=interrupt)
        except BootstrapError as exc:
            self.errors.append(str(exc))
            out.write(f"ERROR: {exc}\n")
            rc = exc.exit_code
        run = Run(rc, out.getvalue(), reporter.log_dir, report)
        self.runs.append(run)
        self.collect_tokens()
        return run

    def collect_tokens(self) -> None:
        """Every bootstrap token the lab's API server holds now (init's and join's)."""
        try:
            data = json.loads((self.lab.cluster_dir / "state.json").read_text())
        except (OSError, ValueError):
            return
        self.tokens |= {t["token"] for t in data.get("tokens", [])}

    def everything(self) -> str:
        return "\n".join([*(r.all_text() for r in self.runs), *self.errors])


_KUBEADM_MUTATING = {"init", "join", "reset", "create", "delete"}
_KUBECTL_MUTATING = {"apply", "create", "delete", "drain", "cordon", "uncordon", "replace",
                     "patch", "label", "taint"}


def changes_cluster(call: dict) -> bool:
    """A stand-in call that changes a node or the cluster (prepare's list plus kubeadm,
    kubectl, ip link, iptables writes)."""
    cmd, argv = call["cmd"], call["argv"]
    words = {a for a in argv if not a.startswith("-")}
    if cmd == "kubeadm":
        return bool(_KUBEADM_MUTATING & words) and "list" not in words
    if cmd == "kubectl":
        return bool(_KUBECTL_MUTATING & words)
    if cmd == "ip":
        return bool({"del", "delete", "add", "set"} & words)
    if cmd == "ipvsadm":  # -S / -L only read
        return any(a in ("-C", "--clear", "-A", "-a", "-D", "-d", "-E", "-e", "-R", "--restore")
                   for a in argv)
    if cmd == "iptables":
        return any(a in ("-F", "-X", "-P", "-A", "-D", "-I", "-N", "--flush") for a in argv)
    return is_mutating(call)


def cluster_changes(node: Node, since: int) -> list[str]:
    return [f"{c['cmd']} {' '.join(c['argv'])}" for c in node.calls()[since:]
            if changes_cluster(c)]


# -- invoke verify on a lab cluster (tests/cluster/conftest.py: the shared verify_cluster) --------
JOIN_FAULT = "error execution phase preflight: injected failure"


def build_with_up(rec: Recorder) -> None:
    """The cluster, by `up`: a first run whose join fails on the last worker (a fault knob:
    its kubeadm fails), then, mended, a second run; both kept in ``rec.up_runs`` for
    test_up_lab.py. The cluster is built, or the session's verify tests fail here."""
    worker = rec.lab.nodes[-1]
    worker.inject_fail("kubeadm", JOIN_FAULT)
    try:
        first = rec("up", only="Nodes")
    finally:
        worker.clear_fail("kubeadm")
    second = rec("up", only="Nodes")
    assert second.rc == 0, first.console + second.console
    rec.up_runs = (first, second)


def verify(rec: Recorder, tmp_path: Path, **opts: object) -> tuple[int, str, dict | None]:
    """Run `invoke verify` in-process on the lab's inventory: exit code, output, JSON report."""
    report = tmp_path / "verify.json"
    out = io.StringIO()
    rc = commands.verify(CommonOptions(inventory=str(rec.lab.inventory_path), log_dir=None,
                                       report=str(report), **opts),  # type: ignore[arg-type]
                         reporter=Reporter(out=out, log_dir=None, command="verify"))
    data = json.loads(report.read_text()) if report.exists() else None
    return rc, out.getvalue(), data


def set_faults(the_lab: Lab, faults: dict | None) -> None:
    """The lab's fault knobs (lab/k8s/STATE.md): write them, or remove them all."""
    path = the_lab.cluster_dir / "faults.json"
    if faults:
        path.write_text(json.dumps(faults))
    elif path.exists():
        path.unlink()


def restore_coredns(the_lab: Lab) -> None:
    """What `kubeadm init phase addon coredns` would do: kubeadm's Deployment is back (the
    lab's state records kubeadm's deleted objects in `deleted`, lab/k8s/STATE.md)."""
    path = the_lab.cluster_dir / "state.json"
    data = json.loads(path.read_text())
    data["deleted"] = [k for k in data.get("deleted", [])
                       if k != "deployment.apps/kube-system/coredns"]
    with open(path, "r+") as fh:  # in place, as the stand-ins rewrite it
        fh.truncate(0)
        fh.write(json.dumps(data, indent=1, sort_keys=True) + "\n")


def members(the_lab: Lab) -> dict[str, bool]:
    """etcd's members by name -> healthy, read on the init node as reset and verify read them."""
    from bootstrap.cluster import etcd
    from bootstrap.inventory import load

    inv = load(str(the_lab.inventory_path))
    master = next(n for n in the_lab.nodes if n.name == inv.init_node.name)
    listed = master.run(etcd.members_command(inv.init_node), timeout=120)
    assert listed.returncode == 0, listed.stderr
    found = etcd.parse_members(listed.stdout)
    health = etcd.parse_health(master.run(etcd.health_command(inv.init_node, found),
                                          timeout=120).stdout)
    return {m.name: any(health.get(u) for u in m.client_urls) for m in found}


def unchanged(rec: Recorder, command: str) -> None:
    """COMMAND runs again and changes nothing on any host (a no-op re-run)."""
    run = rec(command)
    assert run.rc == 0, run.console
    assert not any(s["status"] == "changed" for h in run.report["hosts"].values()
                   for s in h["steps"]), (command, run.console)
