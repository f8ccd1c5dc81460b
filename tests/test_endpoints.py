"""Where SSH logs in for each node (bootstrap/endpoints.py), pure: the inventory's ssh section,
a node's own entry and an OpenSSH client config, each setting with where it came from."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bootstrap.endpoints import describe
from bootstrap.errors import InventoryError
from bootstrap.inventory import load

NODES = """\
nodes:
  - {name: master1, address: 10.0.0.11, role: master}
  - {name: node1, address: 10.0.0.12, role: worker}
"""

CONFIG = """\
Host bastion
    HostName 192.0.2.10
    User jump
    Port 2200
    IdentityFile ~/.ssh/jump_key

Host master1 node1
    User ops
    Port 2222
    IdentityFile ~/.ssh/ops_key
    ProxyJump bastion

Host master1
    HostName 10.1.0.11

Host *
    ServerAliveInterval 30
"""


def inventory(tmp_path: Path, ssh: str, nodes: str = NODES, config: str | None = None):
    if config is not None:
        (tmp_path / "ssh_config").write_text(config)
    path = tmp_path / "inventory.yaml"
    path.write_text(textwrap.dedent(ssh) + nodes)
    return load(path, {})


def login(inv, name: str):
    return inv.node(name).login


def origin(inv, name: str, key: str) -> str:
    return dict(login(inv, name).origins)[key]


def test_without_ssh_settings_a_node_is_reached_at_its_address_directly(tmp_path):
    inv = inventory(tmp_path, "ssh: {user: lab}\n")
    got = login(inv, "node1")
    assert (got.host, got.port, got.user, got.key_file, got.jump) == (
        "10.0.0.12", 22, "lab", "~/.ssh/id_ed25519", None)
    assert origin(inv, "node1", "user") == "ssh.user"
    assert origin(inv, "node1", "port") == "default"


def test_the_inventory_bastion_carries_every_node_with_the_nodes_user_and_key(tmp_path):
    inv = inventory(tmp_path, "ssh: {user: lab, key_file: /k, bastion: {address: 10.0.0.9}}\n")
    jump = login(inv, "master1").jump
    assert (jump.host, jump.port, jump.user, jump.key_file) == ("10.0.0.9", 22, "lab", "/k")
    assert origin(inv, "master1", "bastion") == "ssh.bastion"
    assert "via lab@10.0.0.9:22" in describe(inv.node("master1"))


def test_a_node_entry_overrides_user_port_key_and_bastion(tmp_path):
    nodes = NODES.replace(
        "role: worker}",
        "role: worker, ssh: {user: other, port: 2201, key_file: /o, bastion: false}}")
    inv = inventory(tmp_path, "ssh: {user: lab, bastion: {address: 10.0.0.9, port: 2022}}\n",
                    nodes)
    got = login(inv, "node1")
    assert (got.user, got.port, got.key_file, got.jump) == ("other", 2201, "/o", None)
    assert origin(inv, "node1", "port") == "nodes[1].ssh.port"
    assert origin(inv, "node1", "bastion") == "nodes[1].ssh.bastion: false"
    assert login(inv, "master1").jump.port == 2022


def test_the_ssh_config_gives_hostname_user_port_key_and_proxyjump(tmp_path):
    inv = inventory(tmp_path, "ssh: {config_file: ssh_config}\n", config=CONFIG)
    got = login(inv, "master1")
    assert (got.host, got.port, got.user, got.key_file) == (
        "10.1.0.11", 2222, "ops", str(Path("~/.ssh/ops_key").expanduser()))
    assert (got.jump.host, got.jump.port, got.jump.user) == ("192.0.2.10", 2200, "jump")
    assert got.jump.key_file == str(Path("~/.ssh/jump_key").expanduser())
    assert origin(inv, "master1", "host") == "ssh_config Host master1 HostName"
    assert origin(inv, "master1", "bastion") == "ssh_config Host master1 ProxyJump bastion"
    # no HostName for node1: its inventory address
    assert login(inv, "node1").host == "10.0.0.12"


def test_inventory_values_win_over_the_file(tmp_path):
    inv = inventory(tmp_path, "ssh: {config_file: ssh_config, user: lab, port: 22}\n",
                    config=CONFIG)
    got = login(inv, "master1")
    assert (got.user, got.port) == ("lab", 22)
    assert origin(inv, "master1", "user") == "ssh.user"
    assert got.jump.user == "lab"  # ssh.user given: the jump's too


def test_an_alias_given_for_a_node_is_looked_up(tmp_path):
    nodes = NODES.replace("role: worker}", "role: worker, ssh: {host: master1}}")
    inv = inventory(tmp_path, "ssh: {config_file: ssh_config}\n", nodes, config=CONFIG)
    assert login(inv, "node1").host == "10.1.0.11"


@pytest.mark.parametrize("ssh, nodes, config, where, words", [
    ("ssh: {config_file: ssh_config}\n",
     NODES.replace("role: worker}", "role: worker, ssh: {host: nodex}}"), CONFIG,
     "nodes[1].ssh.host", "'nodex' is not a Host in ssh_config"),
    ("ssh: {config_file: missing_config}\n", NODES, None,
     "ssh.config_file", "cannot be read"),
    ("ssh: {config_file: ssh_config}\n", NODES,
     CONFIG.replace("ProxyJump bastion", "ProxyJump bastion,other"),
     "nodes[0].ssh.host", "more than one hop"),
    ("ssh: {bastion: {port: 22}}\n", NODES, None, "ssh.bastion", "needs an address"),
    ("ssh: {bastion: {address: 10.0.0.9, shell: bash}}\n", NODES, None, "ssh.bastion",
     "unknown key 'shell'"),
    ("ssh: {}\n", NODES.replace("role: worker}", "role: worker, ssh: {port: 0}}"), None,
     "nodes[1].ssh", "port"),
])
def test_bad_ssh_settings_are_clear_errors(tmp_path, ssh, nodes, config, where, words):
    with pytest.raises(InventoryError) as err:
        inventory(tmp_path, ssh, nodes, config)
    text = "\n".join(err.value.problems)
    assert where in text and words in text, text
