"""Runs an operator can stop and trust, over one 3-node lab in file order: Ctrl-C while the
packages transaction runs (real SIGINT to `invoke`), the journal of what each run changed, two
runs at once, a lease left by a killed run (whose script may live on at the node) and by other
clients, and a remote command that hangs.

Runs are interrupted at a known point (a stand-in blocked by a hang injection), never on a timer.
Every check of a node looks from inside it (its call log, files, processes).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from bootstrap import commands, journal, lease
from bootstrap import facts as F
from bootstrap.commands import CommonOptions
from bootstrap.engine import Runner, RunOptions
from bootstrap.errors import LeaseError
from bootstrap.inventory import load
from bootstrap.report import Reporter
from bootstrap.runinfo import RunInfo

from . import (
    INVOKE,
    ROOT,
    Run,
    assert_noop_rerun,
    is_mutating,
    module_lab,
    prepare,
    press_when_reached,
    write_inventory,
)

pytestmark = pytest.mark.lab

NOT_STARTED_AFTER_PACKAGES = ("ipvs", "docker", "kubernetes-packages", "kubelet")
LEASE_FILE = lease.LEASE


@pytest.fixture(scope="module")
def lab3r():
    with module_lab(3) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        yield the_lab


@pytest.fixture(scope="module")
def memo() -> dict:
    """What one test leaves for the next (the tests run in file order on one lab)."""
    return {}


def sh(node, cmd: str):
    return node.run(cmd, timeout=60)


def journal_rows(node) -> list[dict[str, str]]:
    return journal.parse(sh(node, f"cat {journal.PATH} 2>/dev/null; true").stdout)


def reported_changes(run: Run, host: str) -> list[tuple[str, str]]:
    return [(s["name"], c) for s in run.report["hosts"][host]["steps"] for c in s["changes"]]


def leftovers(node) -> list[str]:
    """Temporary files of the toolkit's writes (mktemp's 6-character suffix), its lease's temp
    file, and any JoinConfiguration."""
    out = sh(node, "find /etc /usr /var /root /home /tmp /run -xdev "
                   r"\( -name '.*.k8s-bootstrap.??????' -o -name 'lease.tmp' "
                   r"-o -name kubeadm-join.yaml \) 2>/dev/null; true").stdout
    return out.split()


def invoke(*args: str) -> subprocess.Popen:
    """`invoke ARGS` from the repository, as a user runs it (its own process, real signals)."""
    return subprocess.Popen([str(INVOKE), *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wrong_hostname(node) -> None:
    """Give the node work in exactly one step (hostname), made without the toolkit."""
    sh(node, f"hostnamectl set-hostname {node.name}-renamed")


def hostname_calls(node, since: float) -> list[list[str]]:
    return [c["argv"] for c in node.calls()
            if c["cmd"] == "hostnamectl" and c["t"] > since and "set-hostname" in c["argv"]]


# -- Ctrl-C ----------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_00_ctrl_c_during_a_check_gives_up_its_gather_at_once(lab3r):
    """`check` only reads: Ctrl-C while the master's mirror check (yum list) hangs returns at
    once, says `interrupted`, exits 130, and nothing of the gather keeps running there."""
    master = lab3r.nodes[0]
    out = io.StringIO()
    rc, stopped_after = press_when_reached(master, "yum", lambda intr: commands.check(
        CommonOptions(inventory=str(lab3r.inventory_path), log_dir=None),
        reporter=Reporter(out=out), interrupt=intr))
    assert stopped_after < 3, stopped_after
    assert rc == 130
    summary, _, rest = out.getvalue().partition("\n")  # the release/runtime line comes first
    assert "container runtime: docker" in summary, out.getvalue()
    assert rest.startswith("interrupted\n\nRECAP (interrupted"), out.getvalue()
    deadline = time.monotonic() + 20
    while [cmd for _, cmd in master.processes() if "yum" in cmd or "k8s-bootstrap" in cmd]:
        assert time.monotonic() < deadline, master.processes()
        time.sleep(0.2)


@pytest.mark.timeout(400)
def test_01_ctrl_c_during_the_packages_transaction_starts_nothing_after_it(lab3r, tmp_path, memo):
    """SIGINT while the packages transaction (yum install) runs on every node, each held by a
    hang injection: the transactions finish, no step starts after them (ipvs first), on any
    node, `interrupted`, the recap that says so, exit 130. Each node is first held in
    bridge-netfilter (modprobe), the step before the transaction, while the hang on yum is set:
    the gather's own yum (the master's mirror check) has run by then, unhindered."""
    report = tmp_path / "report.json"
    for node in lab3r.nodes:
        node.inject_hang("modprobe")
    try:
        proc = invoke("prepare-nodes", "-i", str(lab3r.inventory_path), "--report", str(report),
                      "--log-dir", str(tmp_path / "logs"))
        for node in lab3r.nodes:
            node.wait_reached("modprobe", timeout=240)  # bridge-netfilter, before the packages
            node.inject_hang("yum")
            node.release_hang("modprobe")
        for node in lab3r.nodes:
            node.wait_reached("yum", timeout=240)  # the transaction: yum install ...
        pressed = time.time()
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(1.0)  # the run sees the interrupt while the transactions still hang
    finally:
        for node in lab3r.nodes:
            node.release_hang("modprobe")
            node.release_hang("yum")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "\ninterrupted\n" in out and \
        "RECAP (interrupted: no step or phase started after Ctrl-C)" in out, out
    assert "Traceback" not in out
    data = json.loads(report.read_text())
    assert data["run"]["interrupted"] is True
    for node in lab3r.nodes:
        host = data["hosts"][node.name]
        steps = {s["name"]: s["status"] for s in host["steps"]}
        assert host["status"] == "interrupted", host
        assert steps["bridge-netfilter"] == "changed", steps
        assert steps["packages"] == "changed", steps  # it was running: it finished
        assert all(steps[s] == "not-started" for s in NOT_STARTED_AFTER_PACKAGES), steps
        # inside the node: after the interrupt only the transaction's own yum ran
        after = {c["cmd"] for c in node.calls() if c["t"] > pressed and is_mutating(c)}
        assert after <= {"yum"}, (node.name, after)
        assert not [c for c in node.calls() if c["t"] > pressed and c["cmd"] == "modprobe"]
        assert leftovers(node) == [], node.name
        assert sh(node, f"test -e {LEASE_FILE}").returncode == 1, "the lease is released"
    memo["interrupted"] = Run(130, out, None, report)


@pytest.mark.timeout(400)
def test_02_a_re_run_converges_and_the_journal_lists_exactly_what_was_reported(
        lab3r, tmp_path, memo):
    rerun = prepare(lab3r.inventory_path, tmp_path)
    assert rerun.rc == 0, rerun.console
    first = memo["interrupted"]
    for node in lab3r.nodes:
        assert rerun.statuses(node.name)["docker"] == "changed"
        rows = journal_rows(node)
        got = [(r["step"], r["change"]) for r in rows]
        assert got == reported_changes(first, node.name) + reported_changes(rerun, node.name)
        assert [r["run_id"] for r in rows if r["step"] == "docker"] == \
            [rerun.report["run"]["id"]] * len([1 for s, _ in got if s == "docker"])
        assert {r["command"] for r in rows} == {"prepare-nodes"}
        # a replaced file names the original it kept
        hosts = next(r for r in rows if r["change"] == "write /etc/hosts")
        assert hosts["backup"] == "/etc/hosts.k8s-bootstrap.bak"
        memo.setdefault("journal", {})[node.name] = len(rows)
    assert_noop_rerun(lab3r, tmp_path)
    for node in lab3r.nodes:
        assert len(journal_rows(node)) == memo["journal"][node.name], "a no-op run adds nothing"


# -- one run per node at a time ----------------------------------------------------------------
@pytest.mark.timeout(400)
def test_03_a_second_run_at_the_same_time_is_refused_per_node(lab3r, tmp_path):
    started = time.time()
    for node in lab3r.nodes:
        wrong_hostname(node)
        node.inject_hang("hostnamectl")
    try:
        first = invoke("prepare-nodes", "-i", str(lab3r.inventory_path), "--log-dir",
                       str(tmp_path / "logs"))
        for node in lab3r.nodes:
            node.wait_reached("hostnamectl", timeout=120)
        calls = {n.name: len(n.calls()) for n in lab3r.nodes}
        second = prepare(lab3r.inventory_path, tmp_path)
        for node in lab3r.nodes:  # the second run changed nothing anywhere
            assert [c for c in node.calls()[calls[node.name]:] if is_mutating(c)] == []
    finally:
        for node in lab3r.nodes:
            node.release_hang("hostnamectl")
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert second.rc == 1, second.console
    for node in lab3r.nodes:
        host = second.report["hosts"][node.name]
        assert host["status"] == "failed"
        assert host["message"].startswith("another run is changing this node: prepare-nodes "
                                          "(run "), host
        assert f"pid {first.pid} on " in host["message"] and " since " in host["message"]
        assert "--break-lease" in host["message"]
        # nothing changed twice: one set-hostname after ours, by the first run
        assert hostname_calls(node, started)[1:] == [["set-hostname", node.name]]
        assert sh(node, "hostname").stdout.strip() == node.name


@pytest.mark.timeout(300)
def test_04_a_run_whose_facts_went_stale_changes_nothing(lab3r, tmp_path):
    """Two runs that both read a node before either changed it: the later change is refused
    (the node's generation moved), so no change is applied twice."""
    node = lab3r.nodes[1]
    inv = load(str(lab3r.inventory_path))
    runner = Runner(inv, Reporter(log_dir=None), RunOptions(),
                    run_info=RunInfo.new("prepare-nodes"))
    session = runner.session(inv.node(node.name))
    try:
        runner.gather(session, [F.hostname()])  # this run has read the node
        wrong_hostname(node)
        other = prepare(lab3r.inventory_path, tmp_path, limit=node.name)
        assert other.rc == 0 and other.statuses(node.name)["hostname"] == "changed"
        with pytest.raises(LeaseError) as err:
            session.run("touch /tmp/stale-run-was-here", what="a late change")
        assert f"run {other.report['run']['id']} changed this node after this run read " \
               "its state" in str(err.value)
    finally:
        session.close()
    assert sh(node, "test -e /tmp/stale-run-was-here").returncode == 1


def write_lease(node, **fields: object) -> None:
    text = "".join(f"{k}={v}\\n" for k, v in fields.items())
    sh(node, f"mkdir -p {lease.DIR} && printf '{text}' > {LEASE_FILE}")


def pids(node) -> set[int]:
    """Live processes in the node (pids as it sees them; zombies do not count)."""
    return {pid for pid, _ in node.processes()}


def group_members(node, pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` in the node, read from its /proc."""
    members = []
    for line in sh(node, "cat /proc/[0-9]*/stat 2>/dev/null; true").stdout.splitlines():
        fields = line.rsplit(") ", 1)[-1].split()
        if len(fields) > 2 and fields[0] not in "ZXx" and fields[2] == str(pgid):
            members.append(int(line.split()[0]))
    return members


def wait_until(cond, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.1)


def killed_while_hung(lab3r, node, tmp_path) -> tuple[subprocess.Popen, lease.Holder]:
    """Start prepare-nodes on ``node`` (whose hostnamectl the caller made hang) and SIGKILL it,
    no cleanup of any kind, while the node's script hangs there. Returns the dead run and its
    lease, whose recorded script (and its process group, holding the hung hostnamectl) lives on.
    """
    dead = invoke("prepare-nodes", "-i", str(lab3r.inventory_path), "--limit", node.name,
                  "--log-dir", str(tmp_path / "logs"))
    hung = node.wait_reached("hostnamectl", timeout=120)
    os.killpg(dead.pid, signal.SIGKILL)
    dead.communicate(timeout=30)
    held = lease.parse_holder(sh(node, f"cat {LEASE_FILE}").stdout)
    assert held is not None and held.pid == dead.pid
    assert held.script_pid in pids(node), "the killed run's script still runs on the node"
    assert {r["pid"] for r in hung} <= set(group_members(node, held.script_pgid))
    return dead, held


@pytest.mark.timeout(400)
def test_05_a_lease_left_by_a_killed_run_blocks_until_its_script_on_the_node_ends(
        lab3r, tmp_path):
    """Its process here is gone, its script there hangs: a new run is refused on that node and
    changes nothing; once the script ended, the lease is stale and the next run takes it over."""
    master = lab3r.nodes[0]
    wrong_hostname(master)
    master.inject_hang("hostnamectl")
    try:
        dead, held = killed_while_hung(lab3r, master, tmp_path)
        calls = len(master.calls())
        busy = prepare(lab3r.inventory_path, tmp_path, limit="master1")
        assert [c for c in master.calls()[calls:] if is_mutating(c)] == []
        assert held.script_pid in pids(master), "the refused run left the script alone"
    finally:
        master.release_hang("hostnamectl")
    assert busy.rc == 1, busy.console
    msg = busy.report["hosts"]["master1"]["message"]
    assert msg.startswith(
        f"the node is busy: prepare-nodes run {held.run_id} holds its lease; its process "
        f"{dead.pid} on this machine is gone, but its script still runs on the node as pid "
        f"{held.script_pid} since "), msg
    assert msg.endswith(f"or pass --break-lease to stop it (process group {held.script_pgid})")

    wait_until(lambda: held.script_pid not in pids(master), "the released script ended")
    wrong_hostname(master)  # the released script set the hostname: work again for the next run
    run = prepare(lab3r.inventory_path, tmp_path, limit="master1")
    assert run.rc == 0, run.console
    assert (f"[master1] lease: the lease of prepare-nodes run {held.run_id} is stale (its "
            f"process {dead.pid} on this machine is gone)") in run.console
    assert run.statuses("master1")["hostname"] == "changed"
    assert sh(master, f"test -e {LEASE_FILE}").returncode == 1


@pytest.mark.timeout(400)
def test_06_break_lease_stops_the_script_a_killed_run_left_on_the_node(lab3r, tmp_path):
    """--break-lease on a node where a killed run's script still hangs: it stops that script's
    process group before it changed anything, says so, and does the work itself."""
    master = lab3r.nodes[0]
    wrong_hostname(master)
    master.inject_hang("hostnamectl")
    box: dict = {}
    try:
        _, held = killed_while_hung(lab3r, master, tmp_path)
        worker = threading.Thread(target=lambda: box.update(run=prepare(
            lab3r.inventory_path, tmp_path, limit="master1", break_lease=True)))
        worker.start()
        # still under the hang: only a kill ends that group
        wait_until(lambda: group_members(master, held.script_pgid) == [],
                   f"the killed run's process group {held.script_pgid} stopped")
    finally:
        master.release_hang("hostnamectl")  # the new run's own hostnamectl goes on
    worker.join(120)
    broken = box["run"]
    assert broken.rc == 0, broken.console
    assert (f"[master1] lease: --break-lease: this run stops prepare-nodes run {held.run_id}'s "
            f"script on the node (process group {held.script_pgid}) and takes over its "
            "lease") in broken.console
    assert broken.statuses("master1")["hostname"] == "changed"
    assert [r for r in journal_rows(master)
            if r["run_id"] == held.run_id and r["step"] == "hostname"] == [], \
        "the stopped script changed nothing"
    assert sh(master, "hostname").stdout.strip() == "master1"
    assert sh(master, f"test -e {LEASE_FILE}").returncode == 1


FOREIGN = dict(run_id="20261130-000000-ffffff", command="reset", client="ops-laptop",
               pid=4321, started=1)


@pytest.mark.timeout(400)
def test_07_another_clients_lease_blocks_until_it_expires_or_is_broken(lab3r, tmp_path):
    node = lab3r.nodes[2]
    now = int(sh(node, "date +%s").stdout)
    wrong_hostname(node)
    write_lease(node, **FOREIGN, renewed=now, expires=now + 3600)
    calls = len(node.calls())
    run = prepare(lab3r.inventory_path, tmp_path)
    assert run.rc == 1
    msg = run.report["hosts"][node.name]["message"]
    assert msg.startswith("another run is changing this node: reset (run 20261130-000000-ffffff, "
                          "pid 4321 on ops-laptop) since 1970-01-01 00:00:01 UTC"), msg
    assert [c for c in node.calls()[calls:] if is_mutating(c)] == []
    assert run.report["hosts"]["master1"]["status"] == "ok", "the other nodes go on"

    broken = prepare(lab3r.inventory_path, tmp_path, break_lease=True)
    assert broken.rc == 0, broken.console
    assert f"[{node.name}] lease: --break-lease: this run takes over the lease of reset run " \
           f"{FOREIGN['run_id']}" in broken.console
    assert broken.statuses(node.name)["hostname"] == "changed"

    wrong_hostname(node)
    write_lease(node, **FOREIGN, renewed=now - 7200, expires=now - 1)
    expired = prepare(lab3r.inventory_path, tmp_path)
    assert expired.rc == 0, expired.console
    assert f"lease: the lease of reset run {FOREIGN['run_id']} expired" in expired.console
    assert expired.statuses(node.name)["hostname"] == "changed"
    assert sh(node, f"test -e {LEASE_FILE}").returncode == 1


# -- timeouts ------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_08_a_hanging_command_fails_its_node_at_the_timeout_and_is_stopped_there(
        lab3r, tmp_path):
    inv = write_inventory(lab3r.inventory_path, tmp_path / "inventory.yaml", command_timeout=5)
    master, node1, node2 = lab3r.nodes
    for node in (master, node1, node2):
        wrong_hostname(node)
    node1.inject_hang("hostnamectl")
    try:
        run = prepare(inv, tmp_path)
        left = [cmd for _, cmd in node1.processes() if "hostnamectl" in cmd]
    finally:
        node1.release_hang("hostnamectl")
    assert run.rc == 1, run.console
    step = next(s for s in run.report["hosts"]["node1"]["steps"] if s["name"] == "hostname")
    assert step["status"] == "failed"
    assert step["message"] == ("step hostname (hostnamectl set-hostname node1) ran out of time "
                               "after 5 s (ssh.command_timeout); it was stopped on the node")
    assert set(run.statuses("node1").values()) - {"failed"} == {"skipped"}
    assert left == [], "nothing of the command keeps running on the node"
    for other in (master, node2):
        assert run.statuses(other.name)["hostname"] == "changed"
        assert run.report["hosts"][other.name]["status"] == "changed"
    assert prepare(lab3r.inventory_path, tmp_path).rc == 0  # and it converges afterwards
