"""Session.run(stdin=...): data reaches the script intact as root, NOPASSWD sudo and password sudo,
and is never logged; sensitive=True keeps stdout out of the log."""

from __future__ import annotations

import os

import pytest

import lab
from bootstrap.inventory import load
from bootstrap.secrets import Secrets
from bootstrap.ssh import Session, SudoPassword

from . import module_lab

pytestmark = pytest.mark.lab

DATA = "line one\n  indented: $HOME `x` 'q' \"dq\"\nno newline at end"


@pytest.fixture(scope="module")
def one_lab():
    with module_lab(1) as the_lab:
        yield the_lab


@pytest.mark.timeout(120)
@pytest.mark.parametrize("user", ["root", "lab", "labpw"])
def test_stdin_reaches_the_script_and_stays_out_of_the_log(one_lab, user, monkeypatch):
    monkeypatch.setenv(lab.SUDO_PASSWORD_ENV, lab.SUDO_PASSWORD)
    inv = load(str(one_lab.write_inventory(user)), os.environ)
    logged: list[str] = []
    secrets = Secrets()
    session = Session(
        inv.nodes[0], inv.ssh, secrets, SudoPassword(inv.ssh.sudo_password_env, secrets),
        log=logged.append,
    )
    try:
        res = session.run("umask 077; cat > /root/stdin.txt; id -un", stdin=DATA, check=True)
        assert res.stdout.strip() == "root"
        secret = session.run("cat /root/stdin.txt", sensitive=True, check=True)
    finally:
        session.close()
    node = one_lab.nodes[0]
    assert node.run("cat /root/stdin.txt").stdout == DATA
    assert node.run("stat -c %a /root/stdin.txt").stdout.strip() == "600"
    assert secret.stdout == DATA
    text = "\n".join(logged)
    assert "line one" not in text and "withheld" in text
    assert lab.SUDO_PASSWORD not in text


@pytest.mark.timeout(60)
def test_output_that_comes_after_the_exit_status_is_kept(one_lab):
    """sshd sends the exit status when the script exits; output a child still writes arrives
    after it, then the channel's EOF. The run waits for the EOF (at most EOF_GRACE s): a child
    that keeps the output open past that is left, and the log says so."""
    import time

    from bootstrap import ssh

    inv = load(str(one_lab.write_inventory("root")), os.environ)
    logged: list[str] = []
    secrets = Secrets()
    session = Session(inv.nodes[0], inv.ssh, secrets,
                      SudoPassword(inv.ssh.sudo_password_env, secrets), log=logged.append)
    try:
        res = session.run("(sleep 0.5; echo late) & echo early", check=True)
        assert res.stdout.split() == ["early", "late"]
        started = time.monotonic()
        res = session.run("sleep 30 & echo $!", check=True)
        took = time.monotonic() - started
        assert res.stdout.strip().isdigit()
        assert ssh.EOF_GRACE <= took < ssh.EOF_GRACE + 10
        assert any("no end of output" in line for line in logged)
        session.run(f"kill {res.stdout.strip()}", check=True)
    finally:
        session.close()
