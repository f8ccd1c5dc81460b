"""The lean gather: facts of one kind come from one command, and parse to the same values as
one command per fact did. Batched outputs are fed in as the real commands print them."""

from __future__ import annotations

import subprocess

import pytest

from bootstrap import facts as F
from bootstrap.plan import FileState

FACTS = [
    F.rpms(["docker-ce", "docker-ce-cli"]),
    F.rpms(["chrony"]),
    F.unit("docker.service"),
    F.unit("iptables.service"),
    F.unit("firewalld.service"),
    F.file("/etc/hosts"),
    F.file("/etc/shadow-unreadable"),
    F.file("/etc/missing"),
    F.sysctl("net.ipv4.ip_forward"),
    F.sysctl("net.bridge.bridge-nf-call-iptables"),
    F.hostname(),
    F.kernel(),
]

HOSTS = "127.0.0.1 localhost\n"
# What each batched command prints on a node where docker-ce is installed but not its CLI, a
# unit is missing and one masked, one file is unreadable and one missing, and br_netfilter is
# not loaded (its sysctl does not exist).
OUTPUTS = {
    "batch:rpm": (
        "package chrony is not installed\n"
        "docker-ce 19.03.15-3.el7\n"
        "package docker-ce-cli is not installed\n", 0),
    "batch:unit": (
        "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n"
        "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n\n"
        "LoadState=masked\nActiveState=inactive\nUnitFileState=masked\n", 0),
    "batch:file": (
        f"{len(HOSTS)} 644 root root /etc/hosts\n\n"
        + " ".join(f"{b:02x}" for b in HOSTS.encode()), 0),
    "batch:sysctl": ("net.ipv4.ip_forward = 0\n", 0),
    "hostname": ("node1\n", 0),
    "kernel": ("3.10.0-1160.el7.x86_64\n", 0),
}
EXPECTED = {
    "rpms:docker-ce,docker-ce-cli": {"docker-ce": "19.03.15-3.el7"},
    "rpms:chrony": {},
    "unit:docker.service": {"exists": True, "enabled": True, "active": True},
    "unit:iptables.service": {"exists": False, "enabled": False, "active": False},
    "unit:firewalld.service": {"exists": True, "enabled": False, "active": False},
    "file:/etc/hosts": FileState(HOSTS, 0o644, "root", "root"),
    "file:/etc/shadow-unreadable": None,
    "file:/etc/missing": None,
    "sysctl:net.ipv4.ip_forward": "0",
    "sysctl:net.bridge.bridge-nf-call-iptables": None,
    "hostname": "node1",
    "kernel": "3.10.0-1160.el7.x86_64",
}


def answer(script: str, nonce: str, outputs: dict[str, tuple[str, int]]) -> str:
    """What the node prints for ``script``, section by section, from ``outputs``."""
    out = []
    for line in script.splitlines():
        if line.startswith("printf '%s\\n' '<<"):
            name = line.split(f"<<{nonce} ", 1)[1].rstrip("'")
            body, rc = outputs[name]
            out.append(f"<<{nonce} {name}\n{body}\n>>{nonce} {rc}\n")
    return "".join(out)


def test_one_command_per_kind():
    script, nonce = F.script(FACTS)
    sections = [ln.split(f"<<{nonce} ", 1)[1].rstrip("'") for ln in script.splitlines()
                if f"<<{nonce} " in ln]
    assert sorted(sections) == sorted(OUTPUTS)
    assert script.count("rpm -q") == 1 and script.count("systemctl show") == 1
    assert script.count("stat -c") == 1 and script.count("sysctl ") == 1
    assert "uname" not in script and "cat " not in script  # the shell reads /proc itself
    assert ("systemctl show -p LoadState,UnitFileState,ActiveState docker.service "
            "iptables.service firewalld.service") in script
    assert "rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}\\n' docker-ce docker-ce-cli chrony" in script


def test_batched_outputs_parse_to_the_same_values():
    script, nonce = F.script(FACTS)
    assert F.parse_output(FACTS, answer(script, nonce, OUTPUTS), nonce) == EXPECTED


@pytest.mark.parametrize(("kind", "output", "error"), [
    ("batch:unit", ("LoadState=loaded\nActiveState=active\n", 0), "gave 1 blocks for 3 units"),
    ("batch:file", ("9999 644 root root /etc/hosts\n\n 61 62", 0),
     "changed while they were read"),
])
def test_a_garbled_batch_is_an_error_not_a_wrong_fact(kind, output, error):
    script, nonce = F.script(FACTS)
    with pytest.raises(ValueError, match=error):
        F.parse_output(FACTS, answer(script, nonce, {**OUTPUTS, kind: output}), nonce)


def test_a_missing_section_is_an_error():
    script, nonce = F.script(FACTS)
    partial = {k: v for k, v in OUTPUTS.items() if k != "batch:sysctl"}
    text = answer(script.replace("batch:sysctl", "x"), nonce, {**partial, "x": ("", 0)})
    with pytest.raises(ValueError, match=r"facts missing .*sysctl:net\.bridge"):
        F.parse_output(FACTS, text, nonce)


def test_the_files_command_reads_regular_readable_files_only(tmp_path):
    """The real command, run here on files in a temporary directory (read-only)."""
    a = tmp_path / "a.conf"
    a.write_text("one\ntwo\n")
    b = tmp_path / "with space"
    b.write_bytes(b"\x00binary\xff")
    empty = tmp_path / "empty"
    empty.write_text("")
    paths = [str(a), str(tmp_path / "missing"), str(tmp_path), str(b), str(empty)]
    res = subprocess.run(["sh", "-c", F.KINDS["file"].command(paths)], capture_output=True,
                         text=True, check=True)
    got = F.KINDS["file"].split(res.stdout, res.returncode, paths)
    parsed = {p: F.file(p).parse(*got[p]) for p in paths}
    assert parsed[str(a)].content == "one\ntwo\n"
    assert parsed[str(a)].owner == "root" and parsed[str(a)].mode == a.stat().st_mode & 0o777
    assert parsed[str(b)].content == "\x00binary\ufffd"
    assert parsed[str(empty)].content == ""
    assert parsed[str(tmp_path / "missing")] is None and parsed[str(tmp_path)] is None


def test_read_facts_print_files_with_shell_builtins_like_cat(tmp_path):
    (tmp_path / "a").write_text("x=1\n  indented\tand tab\nno newline at the end")
    (tmp_path / "b").write_text("second\n")
    got = subprocess.run(["sh", "-c", F.read_command(f"{tmp_path}/*")], capture_output=True,
                         text=True)
    assert got.returncode == 0
    assert got.stdout == "x=1\n  indented\tand tab\nno newline at the end\nsecond\n"
    missing = subprocess.run(["sh", "-c", F.read_command(f"{tmp_path}/none")],
                             capture_output=True, text=True)
    assert (missing.returncode, missing.stdout) == (1, "")


@pytest.mark.parametrize("enforce, mode", [
    ("1", "Enforcing"),
    ("0", "Permissive"),
    (None, "Disabled"),  # selinuxfs not mounted: no enforce file
])
def test_selinux_mode_is_read_from_selinuxfs_like_getenforce(tmp_path, enforce, mode):
    path = tmp_path / "enforce"
    if enforce is not None:
        path.write_text(enforce)
    fact = F.selinux()
    got = subprocess.run(["sh", "-c", fact.command.replace("/sys/fs/selinux/enforce",
                                                           str(path))],
                         capture_output=True, text=True)
    assert fact.parse(got.stdout, got.returncode) == mode


def test_a_listening_port_is_read_from_the_kernels_tables_and_stops_init():
    """Port-6443 and the others, pure: the fact reads this machine's real listener, and the
    control-plane node's check names it. (Lab nodes share the host's network, so a port forced
    in one lab would show in every lab running beside it: this is tested here, not there.)"""
    import socket

    from bootstrap import checks
    from bootstrap.inventory import load_text

    inv = load_text("nodes: [{name: m1, address: 10.0.0.1, role: master}]\n")
    fact = next(f for f in checks.facts(inv, inv.init_node, False) if f.name == "listening")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        script, nonce = F.script([fact])
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout
    assert ("127.0.0.1", port) in F.parse_output([fact], out, nonce)["listening"]
    mapped = "0000000000000000FFFF00000100000A:0050 00000000000000000000000000000000:0000 0A"
    assert checks._listening(f"sl local rem st\n0: {mapped}\n", 0) == {("10.0.0.1", 80)}
    # held on every address, loopback, or this node's own: in use; on another address (another
    # lab node, a container's address on the same host): not this node's business
    listening = {("0.0.0.0", 6443), ("127.0.0.1", 2379), ("10.0.0.1", 2380),
                 ("10.0.0.1", 10250), ("10.0.0.2", 10259), ("127.0.2.11", 10257)}
    facts = {"os-release": {}, "cpus": None, "memory-mb": None, "listening": listening,
             "initialised": None, "packages": (0, None, None), "hostname": "m1", "macs": set(),
             "product-uuid": None}
    found = [f for f in checks.evaluate(inv, {"m1": facts}, {}) if f.check.startswith("Port-")]
    assert [(f.check, f.severity, f.node) for f in found] == [
        (f"Port-{p}", checks.ERROR, "m1") for p in (2379, 2380, 6443, 10250)]
    assert found[2].message == "port 6443 is in use; kubeadm init needs it free"
    facts["initialised"] = "yes"  # an initialised control plane listens there itself
    assert not [f for f in checks.evaluate(inv, {"m1": facts}, {}) if f.check == "Port-6443"]


def test_an_external_endpoint_is_resolved_and_connected_to_before_init():
    """ControlPlaneEndpoint, pure: the fact runs here against a real listening socket, a port
    nothing listens on and a name nothing resolves; the check names the node and the fix."""
    import socket

    from bootstrap import checks
    from bootstrap.inventory import load_text

    def run(endpoint: str, env: dict | None = None) -> str:
        inv = load_text(f"cluster: {{control_plane_endpoint: '{endpoint}'}}\n"
                        "nodes: [{name: m1, address: 10.0.0.1, role: master}]\n")
        assert inv.load_balancer == "external"
        fact = next(f for f in checks.facts(inv, inv.init_node, False) if f.name == "endpoint")
        script, nonce = F.script([fact])
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                             env=env).stdout
        return F.parse_output([fact], out, nonce)["endpoint"]

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert run(f"127.0.0.1:{port}") == "ok"
    assert run(f"127.0.0.1:{port}") == "connect"  # closed now
    # a name that does not resolve: getent's "key not found" (exit 2), from a stand-in on PATH
    # so that no resolver asks a DNS server off this machine
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as bin_dir:
        fake = os.path.join(bin_dir, "getent")
        with open(fake, "w") as fh:
            fh.write("#!/bin/sh\nexit 2\n")
        os.chmod(fake, 0o755)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        assert run("lb.example.com:6443", env) == "dns"
    inv = load_text("cluster: {control_plane_endpoint: 'lb.example.com:8443'}\n"
                    "nodes: [{name: m1, address: 10.0.0.1, role: master}]\n")
    facts = {"os-release": {}, "cpus": None, "memory-mb": None, "listening": set(),
             "initialised": None, "packages": (0, None, None), "hostname": "m1", "macs": set(),
             "product-uuid": None, "endpoint": "connect"}
    (found,) = [f for f in checks.evaluate(inv, {"m1": facts}, {})
                if f.check == "ControlPlaneEndpoint"]
    assert (found.severity, found.node) == (checks.ERROR, "m1")
    assert found.message.startswith("nothing accepts a TCP connection at lb.example.com:8443")
    assert "needs your load balancer there before init-master" in found.message
