"""The lab's bastion (lab/CONTRACT.md, "Bastion"): the nodes refuse logins that do not come
through it, a direct-tcpip channel of it reaches them, and the files the lab writes for it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import paramiko
import pytest
import yaml

from lab import cluster
from lab.cluster import Lab
from lab.node import Node

pytestmark = pytest.mark.lab


@pytest.fixture
def blab(lab_factory) -> Lab:
    """master1, node1 and the bastion."""
    return lab_factory(2, mirror=False, bastion=True)


def client(the_lab: Lab, address: str, sock=None, user: str = "lab") -> paramiko.SSHClient:
    """A paramiko login with the lab's key, refusing any host key not in its known_hosts."""
    c = paramiko.SSHClient()
    c.load_host_keys(str(the_lab.known_hosts))
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect(address, username=user, key_filename=str(the_lab.key_file), sock=sock, timeout=5,
              banner_timeout=5, auth_timeout=5, allow_agent=False, look_for_keys=False)
    return c


def run(c: paramiko.SSHClient, cmd: str) -> tuple[int, str]:
    _, out, _ = c.exec_command(cmd, timeout=10)
    text = out.read().decode()
    return out.channel.recv_exit_status(), text


def through_bastion(the_lab: Lab, node: Node) -> tuple[paramiko.SSHClient, paramiko.SSHClient]:
    """(bastion client, node client): the node's login tunnelled in a direct-tcpip channel."""
    assert the_lab.bastion is not None
    jump = client(the_lab, the_lab.bastion.address)
    transport = jump.get_transport()
    assert transport is not None
    channel = transport.open_channel("direct-tcpip", (node.address, 22), ("127.0.0.1", 0),
                                     timeout=5)
    return jump, client(the_lab, node.address, sock=channel)


def sshd_log(node: Node) -> str:
    return node.path("/var/log/lab/sshd.log").read_text(errors="replace")


def test_layout_known_hosts_inventory_and_lab_json(blab):
    b = blab.block
    assert [(n.name, n.address) for n in blab.nodes] == [
        (name, f"127.0.{b}.{11 + i}") for i, name in enumerate(cluster.node_names(2))]
    assert blab.bastion is not None
    assert (blab.bastion.name, blab.bastion.address) == ("bastion", f"127.0.{b}.10")
    assert blab.node("bastion") is blab.bastion and blab.bastion.running()
    hosts = {line.split()[0]: line.split(None, 1)[1]
             for line in blab.known_hosts.read_text().splitlines()}
    assert hosts == {n.address: n.host_public_key() for n in blab.all_nodes}
    inv = yaml.safe_load(blab.inventory_path.read_text())  # up writes it through the bastion
    assert inv["ssh"]["bastion"] == {"address": f"127.0.{b}.10"}
    assert inv["ssh"]["user"] == "lab" and inv["ssh"]["key_file"] == str(blab.key_file)
    assert [n["name"] for n in inv["nodes"]] == ["master1", "node1"]
    assert yaml.safe_load(blab.write_inventory(via=None).read_text())["ssh"].get("bastion") \
        is None
    other = Lab.attach(blab.name, blab.root)  # what `lab down` from another process sees
    assert [n.name for n in other.nodes] == ["master1", "node1"]
    assert other.bastion is not None and other.bastion.pid == blab.bastion.pid
    assert other.bastion.sshd_env["LAB_BIND_ADDRESS"] == f"127.0.{b}.10"
    assert other.alive()


def test_a_direct_login_to_a_node_is_refused(blab):
    node = blab.nodes[1]
    for user in ("lab", "root"):
        with pytest.raises(paramiko.AuthenticationException):
            client(blab, node.address, user=user)
    assert "User lab from 127.0.0.1 not allowed because not listed in AllowUsers" \
        in sshd_log(node)


def test_a_login_through_the_bastion_comes_from_its_address(blab):
    node = blab.nodes[1]
    bastion_address = blab.bastion.address
    jump, inner = through_bastion(blab, node)
    try:
        assert run(inner, "id -un; hostname") == (0, "lab\nnode1\n")
        # the shim is sshd's alone: a session on the bastion does not have it
        assert run(jump, "printenv LD_PRELOAD LAB_BIND_ADDRESS; echo $?; hostname") == (
            0, "1\nbastion\n")
    finally:
        inner.close()
        jump.close()
    log = sshd_log(node)
    assert f"Connection from {bastion_address} port " in log
    assert f"Accepted publickey for lab from {bastion_address} port " in log
    # (the lab's readiness probes connect from 127.0.0.1 and go no further than the banner)
    assert "Accepted publickey for lab from 127.0.0.1" not in log
    # and OpenSSH's own client, through lab.ssh (ProxyCommand ssh -W to the bastion)
    res = blab.ssh(blab.nodes[0], "id -un; hostname")
    assert (res.returncode, res.stdout) == (0, "lab\nmaster1\n"), res.stderr


def test_ssh_config_file_and_its_inventory(blab):
    b = blab.block
    inventory = blab.write_inventory(via="ssh_config")
    path = blab.ssh_config_path
    assert path == blab.dir / "ssh_config"
    config = paramiko.SSHConfig.from_path(str(path))
    node1 = config.lookup("node1")
    assert (node1["hostname"], node1["user"], node1["proxyjump"]) == (
        f"127.0.{b}.12", "lab", "bastion")
    assert node1["identityfile"] == [str(blab.key_file)]
    jump = config.lookup("bastion")
    assert (jump["hostname"], jump["user"], jump.get("proxyjump")) == (f"127.0.{b}.10", "lab",
                                                                       None)
    ssh = yaml.safe_load(inventory.read_text())["ssh"]
    assert ssh == {"config_file": str(path), "known_hosts": str(blab.known_hosts),
                   "host_key_policy": "strict", "connect_timeout": 5}
    inv = yaml.safe_load(inventory.read_text())
    assert inv["nodes"][1] == {"name": "node1", "address": f"127.0.{b}.12", "role": "worker"}
    # the file alone is enough for OpenSSH's client (ProxyJump re-reads it for the jump)
    res = subprocess.run(["ssh", "-F", str(path), "node1", "id -un; hostname"],
                         capture_output=True, text=True, timeout=20)
    assert (res.returncode, res.stdout) == (0, "lab\nnode1\n"), res.stderr
    with pytest.raises(cluster.LabError):
        blab.write_inventory(via="jumphost")


def test_down_leaves_no_process_and_no_mount(blab):
    jump, inner = through_bastion(blab, blab.nodes[0])  # open sessions must not keep it alive
    inner.exec_command("sleep 60")
    every = blab.all_nodes
    assert [n.name for n in every] == ["master1", "node1", "bastion"]
    pids = {p for n in every for p in (n.pid, n.unshare_pid)}
    namespaces = {n.pidns for n in every}
    assert None not in pids and None not in namespaces
    lab_dir = blab.dir
    blab.down()
    down = _ticks_now()
    inner.close()
    jump.close()
    assert blab.bastion.pid is None and not lab_dir.exists()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{entry}/ns/pid")
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[19]) > down or fields[0] == "Z":
            continue  # a parallel lab's, started after ours went down (pids, namespace ids)
        assert int(entry) not in pids, f"pid {entry} of a node is still running"
        assert ns not in namespaces, f"pid {entry} is still in a node's namespace"
    for table in ("/proc/1/mounts", "/proc/self/mounts"):
        assert f"{lab_dir}/" not in Path(table).read_text(), f"{table}: a lab mount is left"


def _ticks_now() -> int:
    """Now, in the clock ticks since boot of /proc/PID/stat's start time."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))
