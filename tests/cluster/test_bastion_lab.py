"""Nodes behind a bastion (ssh.bastion) and through an ssh_config file (Host aliases, ProxyJump):
the whole cluster with `up`, its no-op re-run, and the bad inputs, on a lab whose nodes accept
logins only from the bastion's address (lab/CONTRACT.md, Bastion), so a run that went around
the bastion would fail."""

from __future__ import annotations

import re
import shutil

import paramiko
import pytest

from lab import demo
from lab.inventory import pin
from lab.pytest_plugin import module_lab

from . import Recorder

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def blab(tmp_path_factory):
    with module_lab(3, os="el8", bastion=True) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        yield the_lab, Recorder(the_lab, tmp_path_factory.mktemp("bastion"))


def write(the_lab, via: str | None) -> None:
    the_lab.write_inventory("lab", via=via)
    pin(the_lab.inventory_path, the_lab.mirror_url, docker=demo.DOCKER["el8"])


def accepted_from(node) -> set[str]:
    """The addresses the node's sshd accepted logins from."""
    text = node.path("/var/log/lab/sshd.log").read_text(errors="replace")
    return set(re.findall(r"Accepted publickey for \S+ from (\S+)", text))


def test_01_direct_logins_are_refused_so_the_bastion_is_needed(blab):
    the_lab, rec = blab
    write(the_lab, None)
    run = rec("prepare-nodes")
    assert run.rc == 1, run.console
    assert run.console.count("[ERROR SSHReachable]") == 3, run.console
    assert "authentication failed" in run.console
    assert "nothing was changed" in run.console


def test_02_up_through_the_bastion_then_a_no_op_rerun(blab):
    the_lab, rec = blab
    write(the_lab, "bastion")
    run = rec("up", only="Nodes")
    assert run.rc == 0, run.console
    assert "up: done: the cluster is up and verify passed" in run.console
    bastion = the_lab.bastion.address
    for node in the_lab.nodes:
        assert accepted_from(node) == {bastion}, node.name
    again = rec("up", only="Nodes")
    assert again.rc == 0, again.console
    assert "join-workers: joined none; already in the cluster: node1, node2" in again.console
    assert not re.search(r"^\S+ +\d+ +[1-9]\d* +0 +0 +changed", again.console, re.M), \
        "a re-run changes nothing"


def test_03_the_same_through_an_ssh_config_with_aliases_and_proxyjump(blab):
    the_lab, rec = blab
    write(the_lab, "ssh_config")
    dry = rec("prepare-nodes", dry_run=True)
    assert dry.rc == 0, dry.console
    config = str(the_lab.ssh_config_path)
    assert f"ssh: node1: lab@{the_lab.nodes[1].address}:22" in dry.console
    assert f"bastion: {config} Host node1 ProxyJump bastion" in dry.console
    assert f"user: {config} Host node1" in dry.console
    run = rec("up", only="Nodes")
    assert run.rc == 0, run.console
    assert "already in the cluster: node1, node2" in run.console


def test_04_an_unknown_bastion_host_key_is_one_clear_error_and_changes_nothing(blab, tmp_path):
    the_lab, rec = blab
    write(the_lab, "bastion")
    known = tmp_path / "known_hosts"
    bastion = the_lab.bastion.address
    lines = the_lab.dir.joinpath("known_hosts").read_text().splitlines()
    known.write_text("".join(f"{ln}\n" for ln in lines if not ln.startswith(f"{bastion} ")))
    _set_ssh(the_lab, known_hosts=str(known))
    before = {n.name: len(n.calls()) for n in the_lab.nodes}
    run = rec("prepare-nodes")
    assert run.rc == 1, run.console
    assert run.console.count(f"bastion lab@{bastion}:22: unknown host key") >= 3, run.console
    assert {n.name: len(n.calls()) for n in the_lab.nodes} == before


def test_05_a_bastion_that_refuses_the_key_fails_every_node_at_once(blab, tmp_path):
    the_lab, rec = blab
    write(the_lab, "bastion")
    key = tmp_path / "other_key"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(key))  # not the bastion's
    _set_ssh(the_lab, bastion={"address": the_lab.bastion.address, "key_file": str(key)})
    before = {n.name: len(n.calls()) for n in the_lab.nodes}
    run = rec("prepare-nodes")
    assert run.rc == 1, run.console
    assert run.console.count(f"bastion lab@{the_lab.bastion.address}:22: authentication "
                             "failed") >= 3, run.console
    assert {n.name: len(n.calls()) for n in the_lab.nodes} == before
    bastion_log = the_lab.bastion.path("/var/log/lab/sshd.log").read_text(errors="replace")
    assert bastion_log.count("Failed publickey") <= 2, "one attempt for all three nodes"
    write(the_lab, "bastion")


def _set_ssh(the_lab, **values) -> None:
    import yaml

    path = the_lab.inventory_path
    data = yaml.safe_load(path.read_text())
    data["ssh"].update(values)
    shutil.copy(path, f"{path}.bak")
    path.write_text(yaml.safe_dump(data))
