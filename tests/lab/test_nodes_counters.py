"""Node counters for benchmarks: `Node.last_pid/pids_created_since` (processes created in the
node) and `Node.cpu_seconds` (CPU time used inside the node). See lab/CONTRACT.md."""

from __future__ import annotations

import subprocess
import time

import pytest

from lab.node import NodeError
from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]
BURN = ("python3 -c 'import time\nt = time.process_time()\n"
        "while time.process_time() - t < 0.6: pass'")


def ssh(lab, node, script: str, user: str = "lab", timeout: float = 60):
    return lab.ssh(node, script, user, timeout)


@pytest.fixture(scope="module")
def lab():
    with module_lab(1) as the_lab:
        yield the_lab


@pytest.fixture
def node(lab):
    return lab.nodes[0]


def test_last_pid_counts_the_processes_a_command_creates(node):
    a = node.last_pid()
    b = node.last_pid()
    assert b == a + 1  # the first reading's own process
    assert node.pids_created_since(b) == 0
    mark = node.last_pid()
    node.run("/bin/true; /bin/true; /bin/true")  # Node.run's shell + 3 forks (dash)
    assert node.pids_created_since(mark) == 4
    mark = node.last_pid()
    node.run("/bin/sh -c '/bin/true; /bin/true; /bin/true'")  # + the inner shell
    assert node.pids_created_since(mark) == 5
    mark = node.last_pid()
    node.run("true; true; true")  # builtins: no fork
    assert node.pids_created_since(mark) == 1


def test_last_pid_counts_sshd_and_sudo(lab, node):
    mark = node.last_pid()
    assert ssh(lab, node, "/bin/true").returncode == 0
    plain = node.pids_created_since(mark)
    mark = node.last_pid()
    assert ssh(lab, node, "sudo -n /bin/true").returncode == 0
    with_sudo = node.pids_created_since(mark)
    # sshd forks and re-executes per connection, then the login shell, then /bin/true
    assert plain >= 4
    assert with_sudo >= plain + 1  # sudo itself (and whatever it forks)


def test_cpu_seconds_grows_with_a_cpu_burning_command_over_ssh(lab, node):
    before = node.cpu_seconds()
    assert before > 0  # the boot (stand-ins in Python) ran inside the node
    r = ssh(lab, node, BURN)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while (grown := node.cpu_seconds() - before) < 0.6 and time.monotonic() < deadline:
        time.sleep(0.05)  # the session's processes are reaped inside the node
    assert 0.6 <= grown < 5


def test_cpu_seconds_of_a_node_run_command_counts_only_while_it_runs(node):
    """Documented caveat: what `Node.run` starts is reaped by nsenter, outside the node."""
    before = node.cpu_seconds()
    # what Node.run does, without waiting: nsenter forks the shell into the node
    proc = subprocess.Popen(["nsenter", "-t", str(node.pid), "-p", "-m", "--", "/bin/sh", "-c",
                             BURN.replace("0.6", "1.5")])
    try:
        deadline = time.monotonic() + 10
        while (grown := node.cpu_seconds() - before) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert grown >= 0.3  # counted while it runs
    finally:
        assert proc.wait(timeout=30) == 0  # it ends on its own after 1.5 s of CPU
    assert node.cpu_seconds() - before < 0.2  # reaped outside the node: no longer counted


def test_counters_need_a_running_node(lab_factory):
    the_lab = lab_factory(1, mirror=False)
    node = the_lab.nodes[0]
    node.stop()
    with pytest.raises(NodeError):
        node.last_pid()
    with pytest.raises(NodeError):
        node.cpu_seconds()
