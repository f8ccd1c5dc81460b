"""Preflight over the lab: each error check, forced inside a node, stops prepare-nodes before any
change on any node; ``--ignore NAME`` skips it by name."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import lab as lab_pkg
from bootstrap import commands
from bootstrap.commands import CommonOptions
from bootstrap.report import Reporter
from lab.cluster import Lab, LabError
from tests.engine import disk_snapshot, mutating_calls

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    try:
        the_lab = Lab.up(3, log=lambda msg: None)
    except (LabError, OSError, RuntimeError) as exc:
        import os

        if os.environ.get("CI") == "true":
            pytest.fail(f"the lab cannot start: {exc}", pytrace=False)
        pytest.skip(f"the lab cannot start: {exc}")
    try:
        yield the_lab
    finally:
        the_lab.down()


def _state(lab: Lab) -> dict[str, tuple]:
    """Each node's /etc and /usr on disk and its count of mutating stand-in calls."""
    return {n.name: (disk_snapshot(n), len(mutating_calls(n))) for n in lab.nodes}


def _run(command, lab: Lab, tmp_path: Path, **kw) -> tuple[int, str]:
    out = io.StringIO()
    code = command(
        CommonOptions(inventory=str(lab.inventory_path), log_dir=None, **kw),
        reporter=Reporter(out=out, log_dir=tmp_path),
    )
    return code, out.getvalue()


def _bind(node, node_path: str, content: str, mode: str = "0755") -> Callable[[], None]:
    """Bind-mount a fake file over node_path inside the node's own mount namespace."""
    fake = f"/run/lab/fake-{node_path.strip('/').replace('/', '-')}"
    node.run(
        f"cat > {fake} && chmod {mode} {fake} && mount --bind {fake} {node_path}",
        input=content,
        check=True,
    )
    return lambda: node.run(f"umount {node_path}", check=True)


def _force_cpu(lab: Lab) -> Callable[[], None]:
    # the kernel's list of online CPUs (what nproc counts): one CPU
    return _bind(lab.nodes[0], "/sys/devices/system/cpu/online", "0\n", "0444")


def _force_memory(lab: Lab) -> Callable[[], None]:
    return _bind(lab.nodes[1], "/proc/meminfo", "MemTotal:         524288 kB\n", "0444")


def _force_os(lab: Lab) -> Callable[[], None]:
    return _bind(
        lab.nodes[2],
        "/etc/os-release",
        'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n'
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
        "0644",
    )


def _force_el10(lab: Lab) -> Callable[[], None]:
    return _bind(
        lab.nodes[1],
        "/etc/os-release",
        'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="10.0"\n'
        'PRETTY_NAME="Rocky Linux 10.0 (Red Quartz)"\n',
        "0644",
    )


def _force_uuid(lab: Lab) -> Callable[[], None]:
    same = lab.nodes[0].run("cat /sys/class/dmi/id/product_uuid", check=True).stdout
    return _bind(lab.nodes[1], "/sys/class/dmi/id/product_uuid", same, "0444")


def _force_mac(lab: Lab) -> Callable[[], None]:
    same = lab.nodes[0].run("cat /sys/class/net/eth0/address", check=True).stdout
    return _bind(lab.nodes[2], "/sys/class/net/eth0/address", same, "0444")


def _force_clock(lab: Lab) -> Callable[[], None]:
    return _bind(
        lab.nodes[1],
        "/usr/bin/date",
        "#!/bin/sh\nexec /usr/bin/python3 -c 'import time; print(time.time() + 3600)'\n",
    )


def _force_ssh(lab: Lab) -> Callable[[], None]:
    node = lab.nodes[2]
    node.close_port()
    return node.open_port


FORCED = [
    ("NumCPU", _force_cpu),
    ("Memory", _force_memory),
    ("OperatingSystem", _force_os),
    ("OperatingSystem", _force_el10),
    ("ProductUUIDUnique", _force_uuid),
    ("MACUnique", _force_mac),
    ("ClockSkew", _force_clock),
    ("SSHReachable", _force_ssh),
]


@pytest.mark.parametrize(("check", "force"), FORCED, ids=[c for c, _ in FORCED])
def test_error_stops_everything_and_ignore_skips_it(lab: Lab, tmp_path: Path, check, force):
    before = _state(lab)
    undo = force(lab)
    try:
        code, out = _run(commands.prepare_nodes, lab, tmp_path)
        assert code == 1
        assert f"[ERROR {check}]" in out, out
        assert "nothing was changed" in out and f"--ignore {check}" in out
        assert _state(lab) == before  # no file and no mutating call on any node
        code, out = _run(commands.check, lab, tmp_path, ignore=check.lower())
        assert f"[IGNORED {check}]" in out, out
        if check != "SSHReachable":  # an unreachable node still fails its own recap line
            assert code == 0, out
    finally:
        undo()
    code, out = _run(commands.check, lab, tmp_path)
    assert code == 0, out  # the lab is clean again for the next case


def test_sudo_error_without_password(lab: Lab, tmp_path: Path, monkeypatch):
    lab.write_inventory("labpw")
    try:
        monkeypatch.delenv(lab_pkg.SUDO_PASSWORD_ENV, raising=False)
        before = _state(lab)
        code, out = _run(commands.prepare_nodes, lab, tmp_path)
        assert code == 1 and "[ERROR Sudo]" in out, out
        assert "password" in out
        assert _state(lab) == before
    finally:
        lab.write_inventory("lab")


def test_unknown_ignore_name_is_a_usage_error(lab: Lab, tmp_path: Path):
    from bootstrap.errors import UsageError

    with pytest.raises(UsageError, match="unknown check 'NumCPUs'"):
        _run(commands.check, lab, tmp_path, ignore="NumCPUs")


def test_a_slow_mirror_check_on_one_node_is_not_clock_skew(lab: Lab, tmp_path: Path):
    """The master's gather asks the mirrors (yum list), which can take seconds where the others
    take a fraction of one: its clock is read in a round trip of its own, not placed at the
    middle of that gather (which once made healthy nodes fail ClockSkew)."""
    master = lab.nodes[0]
    master.inject_slow("yum", 14.0)
    try:
        code, out = _run(commands.check, lab, tmp_path)
    finally:
        master.clear_slow("yum")
    assert [c for c in master.calls() if c["cmd"] == "yum"], "the mirror check ran, slowly"
    assert "ClockSkew" not in out, out
    assert code == 0, out
