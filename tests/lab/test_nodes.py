"""The lab's nodes: isolation, identity, logins, host keys, reboot, injections, cleanup."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

import lab
from lab.cluster import Lab
from lab.node import Node

pytestmark = pytest.mark.lab


def ssh(the_lab: Lab, node: Node, cmd: str, user: str = "root", input: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess:
    """Run `cmd` on `node` with the real OpenSSH client, strict host key checking."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(the_lab.key_file),
         "-o", f"UserKnownHostsFile={the_lab.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         f"{user}@{node.address}", cmd],
        input=input, capture_output=True, text=True, timeout=timeout)


def connect(the_lab: Lab, node: Node, user: str = "root") -> paramiko.SSHClient:
    """A paramiko client that refuses any host key not in the lab's known_hosts."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(the_lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(node.address, username=user, key_filename=str(the_lab.key_file),
                   timeout=5, allow_agent=False, look_for_keys=False)
    return client


def refused_quickly(address: str) -> float:
    """Seconds until a connection to address:22 is refused (fails the test if it connects)."""
    t0 = time.monotonic()
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((address, 22))
    except ConnectionRefusedError:
        return time.monotonic() - t0
    finally:
        s.close()
    pytest.fail(f"{address}:22 accepted a connection")


@pytest.mark.timeout(240)
def test_fifty_nodes_are_distinct(lab_factory):
    the_lab = lab_factory(50, mirror=False)
    assert [n.name for n in the_lab.nodes[:3]] == ["master1", "node1", "node2"]
    script = ("hostname; grep -v localhost /etc/hosts; cat /sys/class/dmi/id/product_uuid; "
              "cat /sys/class/net/eth0/address; cat /etc/machine-id; "
              "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda n: ssh(the_lab, n, script), the_lab.nodes))
    rows = []
    for node, res in zip(the_lab.nodes, results, strict=True):
        assert res.returncode == 0, f"{node.name}: {res.stderr}"
        hostname, hosts, uuid, mac, machine_id, hostkey = res.stdout.split("\n")[:6]
        assert hostname == node.name
        assert hosts.split() == [node.address, node.name]
        rows.append((hostname, uuid, mac, machine_id, hostkey))
    for column in zip(*rows, strict=True):
        assert len(set(column)) == 50, column
    keys = the_lab.known_hosts.read_text().splitlines()
    assert len({line.split()[2] for line in keys}) == 50


@pytest.mark.timeout(60)
def test_host_key_stable_across_down_and_up(lab_factory):
    first = lab_factory(2, mirror=False)
    name, block = first.name, first.block
    keys = first.known_hosts.read_text()
    first.down()
    second = lab_factory(2, mirror=False, name=name, block=block)
    assert second.known_hosts.read_text() == keys
    assert ssh(second, second.nodes[1], "true").returncode == 0


@pytest.mark.timeout(60)
def test_logins_and_sudo(lab3):
    node = lab3.nodes[0]
    root = ssh(lab3, node, "id -un")
    assert (root.returncode, root.stdout) == (0, "root\n"), root.stderr
    user = ssh(lab3, node, "id -un; sudo -n id -un", user="lab")
    assert (user.returncode, user.stdout) == (0, "lab\nroot\n"), user.stderr
    pw = ssh(lab3, node, "sudo -n true", user="labpw")
    assert pw.returncode == 1 and "password is required" in pw.stderr
    ok = ssh(lab3, node, "sudo -S -p '' id -un", user="labpw", input=lab.SUDO_PASSWORD + "\n")
    assert (ok.returncode, ok.stdout) == (0, "root\n"), ok.stderr
    bad = ssh(lab3, node, "sudo -S -p '' id -un", user="labpw", input="wrong\n")
    assert bad.returncode != 0


@pytest.mark.timeout(60)
def test_centos_identity(lab3):
    node = lab3.nodes[1]
    res = ssh(lab3, node, "cat /etc/centos-release; . /etc/os-release; echo $ID $VERSION_ID; "
                          "grep ^SELINUX= /etc/selinux/config; grep -c ' swap ' /etc/fstab; "
                          "cat /etc/dnf/vars/releasever; rpm -q --whatprovides /bin/bash; "
                          "rpm -q chrony >/dev/null && echo chrony; "
                          "test -e /etc/debian_version || echo no-debian; "
                          "command -v apt-get dpkg nft tc || echo no-debian-tools")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "CentOS Linux release 7.9.2009 (Core)", "centos 7", "SELINUX=enforcing", "1", "7",
        "centos-base-system-7.9.2009-1.el7.noarch", "chrony", "no-debian", "no-debian-tools"]
    units = ssh(lab3, node, "ls /etc/systemd/system/multi-user.target.wants/; "
                            "ls /usr/lib/systemd/system | grep -c iptables")
    assert {"firewalld.service", "chronyd.service", "sshd.service"} <= set(units.stdout.split())
    assert units.stdout.split()[-1] == "0"


@pytest.mark.timeout(60)
def test_nodes_have_their_own_etc(lab3):
    a, b = lab3.nodes[0], lab3.nodes[1]
    assert ssh(lab3, a, "echo only-a > /etc/lab-marker").returncode == 0
    assert ssh(lab3, b, "test -e /etc/lab-marker").returncode == 1
    assert (a.upper / "etc/lab-marker").read_text() == "only-a\n"
    assert not (b.upper / "etc/lab-marker").exists()
    assert a.run("cat /etc/lab-marker").stdout == "only-a\n"


@pytest.mark.timeout(90)
def test_reboot_keeps_disk_and_drops_ram(lab3):
    node = lab3.nodes[2]
    assert ssh(lab3, node, "echo kept > /etc/lab-disk; echo lost > /run/lab-ram; "
                           "echo tmp > /tmp/lab-tmp").returncode == 0
    old_pid = node.pid
    node.reboot()
    assert node.pid != old_pid and not os.path.exists(f"/proc/{old_pid}/root/etc")
    res = ssh(lab3, node, "cat /etc/lab-disk; test -e /run/lab-ram || echo no-run; "
                          "test -e /tmp/lab-tmp || echo no-tmp; hostname")
    assert res.stdout.split() == ["kept", "no-run", "no-tmp", node.name], res.stderr


@pytest.mark.timeout(60)
def test_kill_sshd_drops_sessions_and_refuses(lab3):
    node = lab3.nodes[1]
    client = connect(lab3, node)
    try:
        chan = client.get_transport().open_session()
        chan.exec_command("sleep 30")
        node.kill_sshd()
        deadline = time.monotonic() + 5
        while not chan.closed and not chan.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert chan.closed or chan.exit_status_ready() or not client.get_transport().is_active()
    finally:
        client.close()
    assert refused_quickly(node.address) < 0.5
    assert node.run("hostname").stdout.strip() == node.name  # the node itself is still up
    node.open_port()
    assert ssh(lab3, node, "true").returncode == 0


@pytest.mark.timeout(60)
def test_close_port_and_start_closed(lab_factory):
    the_lab = lab_factory(2, mirror=False, closed=("node1",))
    closed = the_lab.node("node1")
    assert refused_quickly(closed.address) < 0.5
    closed.open_port()
    assert ssh(the_lab, closed, "true").returncode == 0
    master = the_lab.node("master1")
    master.close_port()
    assert refused_quickly(master.address) < 0.5
    master.open_port()
    assert ssh(the_lab, master, "hostname").stdout == "master1\n"


@pytest.mark.timeout(60)
def test_exec_requests_are_counted_from_sshd_log(lab3):
    node = lab3.nodes[0]
    before = node.exec_requests()
    for _ in range(3):
        assert ssh(lab3, node, "true").returncode == 0
    assert node.exec_requests() == before + 3


@pytest.mark.timeout(60)
def test_failure_injection_and_swap(lab3):
    node = lab3.nodes[0]
    node.inject_fail("yum", "Error: injected by the test")
    res = ssh(lab3, node, "yum --version")
    assert res.returncode == 1 and "Error: injected by the test" in res.stderr
    assert any(c["cmd"] == "yum" for c in node.calls())
    node.clear_fail("yum")
    assert ssh(lab3, node, "swapoff -a; cat /proc/swaps | wc -l").stdout == "1\n"
    node.swap_on()
    assert "centos-swap" in ssh(lab3, node, "cat /proc/swaps").stdout


@pytest.mark.timeout(60)
def test_inventory_for_each_user(lab3):
    text = lab3.inventory_path.read_text()
    assert "user: \"lab\"" in text and "host_key_policy: strict" in text
    assert "{name: master1, address: 127.0." in text
    lab3.write_inventory("labpw")
    assert f"sudo_password_env: {lab.SUDO_PASSWORD_ENV}" in lab3.inventory_path.read_text()
    lab3.write_inventory("root")
    assert "user: \"root\"" in lab3.inventory_path.read_text()


def _read(path: str) -> str:
    return Path(path).read_text() if os.path.exists(path) else "<absent>"


def _host_snapshot() -> dict[str, str]:
    snap = {
        "modules": _read("/proc/modules"),
        "swaps": _read("/proc/swaps"),
        "mounts": _read("/proc/self/mounts"),
        "links": subprocess.run(["ip", "-o", "link"], capture_output=True,
                                text=True).stdout,
        "addrs": subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout,
        "hostname": socket.gethostname(),
    }
    for tool in ("iptables-save", "ip6tables-save", "nft"):
        path = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                              text=True).stdout.strip()
        if path:
            args = [path, "list", "ruleset"] if tool == "nft" else [path]
            out = subprocess.run(args, capture_output=True, text=True).stdout
            snap[tool] = "\n".join(ln for ln in out.splitlines() if not ln.startswith("#"))
    for key in ("net/bridge/bridge-nf-call-iptables", "vm/swappiness", "net/ipv4/ip_forward"):
        snap[key] = _read(f"/proc/sys/{key}")
    return snap


@pytest.mark.timeout(90)
def test_host_untouched_by_a_lab_session(lab_factory):
    before = _host_snapshot()
    the_lab = lab_factory(2, mirror=False)
    script = """
iptables -P FORWARD ACCEPT; iptables -A INPUT -s 10.0.0.0/8 -j DROP; iptables-save
ip6tables -A INPUT -j DROP
ip link add cni0 type bridge; ip link set lo down; ip addr add 10.9.9.9/24 dev lo
modprobe br_netfilter; modprobe overlay; modprobe ip_vs
sysctl -w net.ipv4.ip_forward=1; sysctl -w net.bridge.bridge-nf-call-iptables=1; sysctl --system
echo 1 > /proc/sys/net/ipv4/ip_forward; echo 0 > /proc/sys/vm/swappiness
swapoff -a; swapon -a; hostname changed-name; hostnamectl set-hostname other
nft flush ruleset; ipvsadm -C; tc qdisc add dev lo root netem delay 100ms; ethtool -K lo tso off
reboot; shutdown -r now; mkswap /tmp/x; rmmod overlay
exit 0
"""
    for node in the_lab.nodes:
        res = ssh(the_lab, node, script)
        assert res.returncode == 0, res.stderr
    the_lab.nodes[0].reboot()
    the_lab.down()
    after = _host_snapshot()
    assert after == before


@pytest.mark.timeout(60)
def test_down_leaves_nothing(lab_factory):
    the_lab = lab_factory(3, mirror=False)
    client = connect(the_lab, the_lab.nodes[0])  # an open session must not keep it alive
    client.exec_command("sleep 60")
    nodes = [(n.pid, n.unshare_pid, n.pidns, _mount_ns(n.pid)) for n in the_lab.nodes]
    lab_dir = the_lab.dir
    down = _ticks_now()  # every process of the lab started before this
    t0 = time.monotonic()
    the_lab.down()
    assert time.monotonic() - t0 < 5
    client.close()
    _assert_gone(nodes, lab_dir, down)


def _mount_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def _ticks_now() -> int:
    """Now, in the clock ticks since boot that /proc/PID/stat's start time counts."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


def _assert_gone(nodes: list[tuple[int, int, str, str]], lab_dir: Path, down: int) -> None:
    """No process that started before the lab began to go down (``down``, in ticks) is left in
    the nodes' pid or mount namespaces, and this machine's own mount table has none of the lab's
    mounts. A lab a parallel test starts later may reuse the freed address block (so the same
    directory name) and the kernel's namespace numbers, once ours are freed: its processes
    started after ``down``."""
    namespaces = {ns for _, _, ns, _ in nodes}
    mount_namespaces = {m for *_, m in nodes if m}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{entry}/ns/pid")
            mnt = os.readlink(f"/proc/{entry}/ns/mnt")
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, started = fields[0], int(fields[19])
        if started > down:
            continue
        if state != "Z":
            assert ns not in namespaces, f"pid {entry} still in a node's namespace"
            assert int(entry) not in {p for pid, upid, *_ in nodes for p in (pid, upid)}
        assert mnt not in mount_namespaces, f"pid {entry} still in a node's mount namespace"
    for table in ("/proc/1/mounts", "/proc/self/mounts"):
        assert str(lab_dir) not in Path(table).read_text(), f"{table} still has a lab mount"
    if lab_dir.exists():  # only as another lab's, reusing the freed block's name
        other = json.loads((lab_dir / "lab.json").read_text())
        ours = {pid for pid, *_ in nodes}
        assert not ours & {n.get("pid") for n in other.get("nodes", [])}, "the lab is still up"


INNER_TEST = """
import json, os, signal, time
import pytest

def _record(the_lab, path):
    nodes = [[n.pid, n.unshare_pid, n.pidns, os.readlink(f"/proc/{n.pid}/ns/mnt")]
             for n in the_lab.nodes]
    uptime = float(open("/proc/uptime").read().split()[0])
    with open(path, "w") as f:  # ticks: before the lab goes down (its processes started before)
        json.dump({"nodes": nodes, "dir": str(the_lab.dir),
                   "ticks": int(uptime * os.sysconf("SC_CLK_TCK"))}, f)

def test_fails_midway(lab_factory):
    _record(lab_factory(2, mirror=False), os.environ["LAB_RECORD"] + ".fail")
    assert False, "failing on purpose"

def test_interrupted(lab_factory):
    _record(lab_factory(2, mirror=False), os.environ["LAB_RECORD"] + ".int")
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
"""


@pytest.mark.timeout(120)
def test_no_leftovers_when_a_test_fails_or_is_interrupted(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    record = tmp_path / "record"
    env = dict(os.environ, LAB_RECORD=str(record), CI="true")
    repo = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = f"{repo}:{env.get('PYTHONPATH', '')}"
    for test, suffix in (("test_fails_midway", ".fail"), ("test_interrupted", ".int")):
        res = subprocess.run(
            [os.path.join(os.path.dirname(os.sys.executable), "pytest"), "-q", "-p",
             "lab.pytest_plugin", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
             "-c", "/dev/null", f"test_inner.py::{test}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
        assert res.returncode != 0, res.stdout
        data = json.loads(Path(f"{record}{suffix}").read_text())
        _assert_gone([tuple(n) for n in data["nodes"]], Path(data["dir"]), data["ticks"])


@pytest.mark.timeout(90)
def test_reboot_reapplies_boot_state(lab3):
    node = lab3.nodes[0]
    setup = ("echo br_netfilter > /etc/modules-load.d/k8s.conf; "
             "printf 'net.bridge.bridge-nf-call-iptables = 1\\nnet.ipv4.ip_forward = 1\\n' "
             "> /etc/sysctl.d/k8s.conf; swapoff -a; systemctl disable firewalld; "
             "sed -i 's/^SELINUX=enforcing/SELINUX=permissive/' /etc/selinux/config")
    assert ssh(lab3, node, setup).returncode == 0
    node.reboot()
    res = ssh(lab3, node, "lsmod | grep -c ^br_netfilter; sysctl -n net.ipv4.ip_forward; "
                          "grep -c centos-swap /proc/swaps; getenforce; "
                          "systemctl is-active firewalld; systemctl is-active chronyd")
    assert res.stdout.split() == ["1", "1", "1", "Permissive", "inactive", "active"], res.stderr
    node.run("sed -i '/ swap /s/^/#/' /etc/fstab", check=True)
    node.reboot()
    assert ssh(lab3, node, "grep -c centos-swap /proc/swaps").stdout == "0\n"


@pytest.mark.timeout(60)
def test_run_as_a_user_inside_the_node(lab3):
    node = lab3.nodes[2]
    res = node.run("id -un; echo $HOME; sudo -n id -un", user="lab")
    assert res.stdout.split() == ["lab", "/home/lab", "root"], res.stderr
