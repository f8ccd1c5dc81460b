"""prepare-nodes as `labpw`, whose sudo asks for a password (ssh.sudo_password_env).

One 3-node lab for the module. File order matters: the refusals (no password) run on the
fresh lab first and must change nothing; then the real run with the password.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import lab

from . import (
    INVOKE,
    ROOT,
    assert_noop_rerun,
    check_prepared,
    disk_snapshot,
    module_lab,
    mutating_calls,
    prepare,
    snapshot_diff,
    write_inventory,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def pw_lab():
    with module_lab(3, user="labpw") as the_lab:
        yield the_lab


def invoke(args: list[str], env: dict[str, str], timeout: float = 120):
    """The CLI without a terminal (stdin /dev/null): a password prompt would hang or fail."""
    return subprocess.run([str(INVOKE), *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def _env_without_password() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(lab.SUDO_PASSWORD_ENV, None)
    return env


@pytest.mark.timeout(180)
@pytest.mark.parametrize("configured", [True, False], ids=["env-named-but-unset", "no-env"])
def test_without_the_password_a_clear_message_and_no_change(pw_lab, tmp_path, configured):
    inventory = pw_lab.inventory_path
    if not configured:
        inventory = write_inventory(inventory, tmp_path / "inv.yaml", sudo_password_env=None)
    disks = {n.name: disk_snapshot(n) for n in pw_lab.nodes}
    calls = {n.name: len(n.calls()) for n in pw_lab.nodes}
    res = invoke(["prepare-nodes", "-i", str(inventory), "--log-dir", str(tmp_path / "logs")],
                 _env_without_password())
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "Traceback" not in out
    assert "sudo password for" not in out and "[sudo] password" not in out  # no prompt
    for node in pw_lab.nodes:
        if configured:
            want = (f"{node.name}: sudo asks labpw for a password and environment variable "
                    f"{lab.SUDO_PASSWORD_ENV} (ssh.sudo_password_env) is not set: export it")
        else:
            want = (f"{node.name}: sudo asks labpw for a password: set ssh.sudo_password_env "
                    "to the name of an environment variable holding it")
        assert want in out, out
        assert mutating_calls(node, since=calls[node.name]) == []
        now = disk_snapshot(node)
        for top in ("etc", "usr"):
            assert snapshot_diff(disks[node.name][top], now[top]) == [], (node.name, top)


@pytest.mark.timeout(240)
def test_prepare_as_a_password_sudo_user(pw_lab, tmp_path, monkeypatch):
    password = lab.SUDO_PASSWORD
    monkeypatch.setenv(lab.SUDO_PASSWORD_ENV, password)
    first = prepare(pw_lab.inventory_path, tmp_path / "first")
    assert first.rc == 0, first.console
    problems = [p for n in pw_lab.nodes for p in check_prepared(n, pw_lab)]
    assert not problems, "\n".join(problems)
    for node in pw_lab.nodes:
        changes = [c for c in node.calls() if c["cmd"] in ("yum", "systemctl", "modprobe")]
        # Changes really ran as root through sudo, not as labpw.
        assert {c["uid"] for c in changes if c["argv"][:1] in (["install"], ["enable"],
                                                                ["start"])} == {0}

    second = assert_noop_rerun(pw_lab, tmp_path / "second")

    # The password never shows: console, per-host logs, JSON report; nor in the node's
    # stand-in call log (it goes to sudo on stdin, never on a command line).
    for run in (first, second):
        text = run.all_text()
        assert run.log_dir is not None and any(run.log_dir.iterdir())
        assert password not in text
    for node in pw_lab.nodes:
        assert password not in node.path("/var/lib/lab/calls.log").read_text()
