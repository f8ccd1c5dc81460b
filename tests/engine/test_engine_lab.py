"""The SSH/step engine over real sshd: parallelism, failures, host keys, unreachable nodes.

One 5-node lab (user `lab`) for the module; every test restores what it changes (ports,
injected failures) and uses its own inventory copy when it needs other ssh settings.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import signal
import threading
import time
from pathlib import Path

import pytest

from bootstrap import facts as F
from bootstrap import ssh as ssh_mod
from bootstrap.engine import Runner, RunOptions, StepResult
from bootstrap.inventory import load
from bootstrap.plan import Plan
from bootstrap.report import Reporter
from bootstrap.steps import Step, base_repo

from . import connections, module_lab, mutating_calls, prepare, write_inventory

pytestmark = pytest.mark.lab
EL7_BASE = "/etc/yum.repos.d/CentOS-Base.repo"  # the file repos.base rewrites on CentOS 7


@pytest.fixture(scope="module")
def lab5():
    with module_lab(5) as the_lab:
        yield the_lab


def probe_step(token: str, command: str = "sleep 0.4") -> Step:
    """A step that runs ``command`` once per node (recording when it ran) and then converges."""
    done = f"/tmp/probe-{token}"

    def facts(t):
        return [F.command(f"probe:{token}", f"cat {done}")]

    def plan(t, facts):
        p = Plan()
        if facts[f"probe:{token}"] is None:
            p.run(f"s=$(date +%s.%N); {command}; e=$(date +%s.%N); echo \"$s $e\" > {done}")
        return p

    return Step("probe", "test probe", facts, plan)


def run_engine(inventory: Path, steps: list[Step], parallel: int, names: list[str] | None = None,
               out: io.StringIO | None = None):
    inv = load(str(inventory))
    nodes = [n for n in inv.nodes if names is None or n.name in names]
    reporter = Reporter(out=out or io.StringIO())
    return Runner(inv, reporter, RunOptions(parallel=parallel)).run(nodes, steps)


def max_overlap(windows: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in windows] + [(e, -1) for _, e in windows])
    now = peak = 0
    for _, delta in events:  # at equal times the end (-1) sorts first: touching is no overlap
        now += delta
        peak = max(peak, now)
    return peak


@pytest.mark.timeout(120)
def test_parallelism_is_bounded(lab5):
    """--parallel 2 on 5 nodes: the nodes' own clocks show at most 2 hosts working at once
    (and 2 really do: the pool is not serial)."""
    token = secrets.token_hex(4)
    started = time.monotonic()
    results = run_engine(lab5.inventory_path, [probe_step(token)], parallel=2)
    elapsed = time.monotonic() - started
    assert {r.status for r in results.values()} == {"changed"}, results
    windows = []
    for node in lab5.nodes:
        start, end = node.run(f"cat /tmp/probe-{token}", check=True).stdout.split()
        windows.append((float(start), float(end)))
    assert max_overlap(windows) == 2, windows
    assert elapsed >= 3 * 0.4  # ceil(5 / 2) rounds of a 0.4 s step, at least


@pytest.mark.timeout(120)
def test_open_connections_are_bounded(lab5, monkeypatch):
    """--parallel 2 on 5 nodes: never more than 2 SSH connections open at once."""
    lock = threading.Lock()
    state = {"open": 0, "peak": 0}
    real_connect, real_close = ssh_mod.Session.connect, ssh_mod.Session.close

    def connect(self):
        was = self.conn is not None
        real_connect(self)
        if not was and self.conn is not None:
            with lock:
                state["open"] += 1
                state["peak"] = max(state["peak"], state["open"])

    def close(self):
        was = self.conn is not None
        real_close(self)
        if was:
            with lock:
                state["open"] -= 1

    monkeypatch.setattr(ssh_mod.Session, "connect", connect)
    monkeypatch.setattr(ssh_mod.Session, "close", close)
    results = run_engine(lab5.inventory_path, [probe_step(secrets.token_hex(4), "true")],
                         parallel=2)
    assert {r.status for r in results.values()} == {"changed"}, results
    assert state["open"] == 0
    assert state["peak"] <= 2, f"{state['peak']} connections open at once with --parallel 2"


@pytest.mark.timeout(120)
def test_only_hosts_with_something_to_apply_reconnect(lab5):
    """Counted in sshd's log: a host whose plans are all empty keeps its one connection and one
    round trip (the facts); a host with a change connects once more for the step and the
    convergence check."""
    token = secrets.token_hex(4)
    idle = {"master1", "node2", "node4"}
    for node in lab5.nodes:
        if node.name in idle:  # the probe already ran there: its plan is empty
            node.run(f"echo 0 0 > /tmp/probe-{token}", check=True)
    conns = {n.name: connections(n) for n in lab5.nodes}
    execs = {n.name: n.exec_requests() for n in lab5.nodes}
    results = run_engine(lab5.inventory_path, [probe_step(token, "true")], parallel=2)
    for node in lab5.nodes:
        spent = (connections(node) - conns[node.name], node.exec_requests() - execs[node.name])
        if node.name in idle:
            assert results[node.name].status == "ok", results[node.name]
            assert spent == (1, 1), (node.name, spent)
        else:
            assert results[node.name].status == "changed", results[node.name]
            assert spent == (2, 3), (node.name, spent)  # facts | step, facts again


@pytest.mark.timeout(120)
def test_a_failing_host_does_not_stop_the_others(lab5):
    """Failing nodes first, --parallel 1: an unreachable node and a failing command on the next
    one; the third node still runs its step."""
    token = secrets.token_hex(4)
    master1, node1, node2 = lab5.nodes[:3]
    master1.close_port()
    node1.inject_fail("hostnamectl", "hostnamectl: injected failure for the test")
    try:
        results = run_engine(
            lab5.inventory_path,
            [probe_step(token, f"touch /tmp/ran-{token}; hostnamectl status >/dev/null")],
            parallel=1, names=["master1", "node1", "node2"])
    finally:
        node1.clear_fail("hostnamectl")
        master1.open_port()
    assert list(results) == ["master1", "node1", "node2"]
    assert results["master1"].status == "failed"
    assert "cannot connect" in results["master1"].message, results["master1"].message
    assert results["node1"].status == "failed"
    step = results["node1"].steps[0]
    assert step.status == "failed" and "injected failure for the test" in step.message
    assert results["node2"].status == "changed"
    assert node1.run(f"test -e /tmp/ran-{token}").returncode == 0  # node1 ran, then failed
    assert node2.run(f"test -s /tmp/probe-{token}").returncode == 0  # node2 completed


@pytest.mark.timeout(120)
def test_an_unreachable_node_fails_fast_with_a_one_line_reason(lab5, tmp_path):
    node = lab5.node("node3")
    node.close_port()
    try:
        started = time.monotonic()
        run = prepare(lab5.inventory_path, tmp_path, dry_run=True, limit="node3")
        elapsed = time.monotonic() - started
    finally:
        node.open_port()
    assert run.rc == 1
    assert elapsed < 5, f"{elapsed:.1f}s: longer than ssh.connect_timeout (5 s)"
    message = run.report["hosts"]["node3"]["message"]
    lines = [ln for ln in run.console.splitlines() if "node3" in ln and "refused" in ln]
    assert lines, run.console
    for text in [message, *lines]:
        assert "\n" not in text
    assert re.search(rf"lab@{re.escape(node.address)}:22: cannot connect: Connection refused",
                     lines[0]), lines


@pytest.mark.timeout(120)
def test_a_node_that_accepts_but_never_answers_times_out_within_connect_timeout(lab5, tmp_path):
    """sshd's listener is frozen: TCP connects, but no SSH banner ever comes."""
    node = lab5.node("node4")
    inventory = write_inventory(lab5.inventory_path, tmp_path / "inv.yaml", connect_timeout=2)
    pid = node.listener_pid()
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        run = prepare(inventory, tmp_path, dry_run=True, limit="node4")
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert run.rc == 1
    assert 1.5 <= elapsed < 2 + 2.5, f"{elapsed:.1f}s with ssh.connect_timeout 2"
    message = run.report["hosts"]["node4"]["message"]
    assert "\n" not in message, message
    assert f"lab@{node.address}:22: no SSH answer within 2s (ssh.connect_timeout)" in message


def _refused_without_a_session(node, before_exec: int, before_conn: int) -> None:
    assert node.exec_requests() == before_exec  # no command ran
    assert connections(node) == before_conn  # we never even authenticated


@pytest.mark.timeout(60)
def test_strict_host_key_policy_refuses_an_unknown_key(lab5, tmp_path):
    node = lab5.node("node1")
    known = tmp_path / "known_hosts"
    known.write_text("")
    inventory = write_inventory(lab5.inventory_path, tmp_path / "inv.yaml",
                                known_hosts=str(known), host_key_policy="strict")
    execs, conns = node.exec_requests(), connections(node)
    run = prepare(inventory, tmp_path, dry_run=True, limit="node1")
    assert run.rc == 1
    message = run.report["hosts"]["node1"]["message"]
    assert f"unknown host key for {node.address}" in message, message
    assert "accept-new" in message  # says what to do
    assert known.read_text() == ""  # nothing recorded
    _refused_without_a_session(node, execs, conns)


@pytest.mark.timeout(60)
def test_accept_new_records_a_new_key_and_refuses_a_changed_one(lab5, tmp_path):
    node, other = lab5.node("node1"), lab5.node("node2")
    known = tmp_path / "known_hosts"
    known.write_text("")
    inventory = write_inventory(lab5.inventory_path, tmp_path / "inv.yaml",
                                known_hosts=str(known), host_key_policy="accept-new")
    first = prepare(inventory, tmp_path / "a", dry_run=True, limit="node1")
    assert first.rc == 0, first.console
    recorded = known.read_text().splitlines()
    assert recorded == [f"{node.address} {node.host_public_key()}"]

    # The node "changes" its key: the recorded line now holds another valid ed25519 key.
    tampered = f"{node.address} {other.host_public_key()}\n"
    assert other.host_public_key() != node.host_public_key()
    known.write_text(tampered)
    execs, conns = node.exec_requests(), connections(node)
    second = prepare(inventory, tmp_path / "b", dry_run=True, limit="node1")
    assert second.rc == 1
    message = second.report["hosts"]["node1"]["message"]
    assert f"HOST KEY CHANGED for {node.address}" in message, message
    assert known.read_text() == tampered  # accept-new never replaces a known key
    _refused_without_a_session(node, execs, conns)


@pytest.mark.timeout(180)
def test_a_failed_yum_clean_after_a_base_repo_change_is_retried_by_the_next_run(lab5):
    """yum fails at `yum clean metadata`, after the repo file was written: the next run (file
    already right) still cleans, and the run after that changes nothing."""
    node = lab5.node("node2")
    path, marker = EL7_BASE, base_repo.PENDING
    node.run(f"echo '# edited by the test' >> {path}", check=True)  # base-repo has work to do

    def run() -> StepResult:
        results = run_engine(lab5.inventory_path, [base_repo.STEP], parallel=1, names=["node2"])
        return results["node2"].steps[0]

    node.inject_fail("yum", "yum: injected failure for the test")
    try:
        calls = len(node.calls())
        step = run()
    finally:
        node.clear_fail("yum")
    assert step.status == "failed" and "injected failure for the test" in step.message, step
    assert mutating_calls(node, since=calls) == ["yum clean metadata -q"]  # it was tried
    assert f"baseurl={lab5.mirror_url}base/" in node.run(f"cat {path}", check=True).stdout
    assert node.run(f"test -e {marker}").returncode == 0  # the clean is still owed

    calls = len(node.calls())
    step = run()
    assert step.status == "changed", step
    assert mutating_calls(node, since=calls) == ["yum clean metadata -q"]  # retried, and passed
    assert node.run(f"test -e {marker}").returncode != 0

    calls = len(node.calls())
    step = run()
    assert step.status == "ok", step
    assert mutating_calls(node, since=calls) == []
