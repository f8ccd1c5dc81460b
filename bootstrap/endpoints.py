"""Where SSH logs in for each node, and through which bastion: the inventory's ``ssh`` section,
a node's own ``nodes[].ssh`` entry, and, opt-in, an OpenSSH client config (``ssh.config_file``)
read the way ``ssh`` reads it (paramiko's SSHConfig: ``Host`` patterns, ``HostName``, ``User``,
``Port``, ``IdentityFile``, ``ProxyJump``).

For each setting the first of these that has it wins: the node's entry, the inventory's ``ssh``
section (only the keys it sets), the config file's block for the node's alias, the default. Pure:
the config's text comes in, errors come out as (field path, message).
"""

from __future__ import annotations

import fnmatch

import paramiko

from .models import SSH, Bastion, Endpoint, Node

DEFAULTS = SSH()


class Unresolved(ValueError):
    """A setting that cannot be resolved: ``path`` names the inventory field to fix."""

    def __init__(self, path: tuple, message: str) -> None:
        super().__init__(message)
        self.path = path


def parse_config(text: str) -> paramiko.SSHConfig:
    return paramiko.SSHConfig.from_text(text)


def _matches(config: paramiko.SSHConfig, alias: str) -> bool:
    """A ``Host`` block other than a bare ``*`` names ``alias``."""
    patterns = [p for p in config.get_hostnames() if p != "*" and not p.startswith("!")]
    return any(fnmatch.fnmatch(alias, p) for p in patterns)


def _pick(options: list[tuple[str, object | None]]) -> tuple[object | None, str]:
    """The first value given, and where it came from."""
    for origin, value in options:
        if value is not None:
            return value, origin
    return None, "default"


def resolve(ssh: SSH, node: Node, index: int, config: paramiko.SSHConfig | None = None,
            config_name: str = "") -> Endpoint:
    """The node's login: host, port, user, key file and jump host, each with its origin."""
    own = node.ssh
    path = ("nodes", index, "ssh")
    me = f"nodes[{index}]"
    alias = own.host if own and own.host else None
    found: dict = {}
    if config is not None:
        wanted = alias or node.name
        if _matches(config, wanted):
            alias, found = wanted, config.lookup(wanted)
        elif alias:
            raise Unresolved((*path, "host"), f"{alias!r} is not a Host in {config_name}: add "
                             "a Host block for it, or correct the alias")
    in_file = f"{config_name} Host {alias}" if found else ""

    def given(key: str) -> object | None:
        return getattr(ssh, key) if key in ssh.given else None

    explicit = own.host if own and own.host else None
    if found and found.get("hostname", alias) != alias:
        host, host_from = found["hostname"], f"{in_file} HostName"
    elif explicit:
        host, host_from = explicit, f"{me}.ssh.host"
    else:  # paramiko gives the alias itself as hostname when the block has no HostName
        host, host_from = node.address, f"{me}.address"
    user, user_from = _pick([(f"{me}.ssh.user", own.user if own else None),
                             ("ssh.user", given("user")), (in_file, found.get("user")),
                             ("default", DEFAULTS.user)])
    port, port_from = _pick([(f"{me}.ssh.port", own.port if own else None),
                             ("ssh.port", given("port")),
                             (in_file, int(found["port"]) if "port" in found else None),
                             ("default", DEFAULTS.port)])
    identity = found.get("identityfile") if found else None
    key, key_from = _pick([(f"{me}.ssh.key_file", own.key_file if own else None),
                           ("ssh.key_file", given("key_file")),
                           (in_file, identity[0] if identity else None)])
    if key is None and "key_file" not in ssh.given:
        key, key_from = DEFAULTS.key_file, "default"
    jump, jump_from = _jump(ssh, own, found, config, config_name, in_file, str(user), path, me)
    origins = (("host", host_from), ("user", user_from), ("port", port_from),
               ("key_file", key_from), ("bastion", jump_from))
    return Endpoint(str(host), int(port), str(user), key, jump,  # type: ignore[arg-type]
                    origins)


def _jump(ssh: SSH, own, found: dict, config: paramiko.SSHConfig | None, config_name: str,
          in_file: str, user: str, path: tuple, me: str) -> tuple[Endpoint | None, str]:
    """The node's bastion: its own entry's (``false``: none), the inventory's, ProxyJump."""
    if own is not None and own.bastion is False:
        return None, f"{me}.ssh.bastion: false"
    if own is not None and isinstance(own.bastion, Bastion):
        return _bastion(own.bastion, ssh, user), f"{me}.ssh.bastion"
    if ssh.bastion is not None:
        return _bastion(ssh.bastion, ssh, user), "ssh.bastion"
    proxy = (found.get("proxyjump") or "").strip() if found else ""
    if not proxy or proxy.lower() == "none":
        return None, "none"
    if "," in proxy:
        raise Unresolved((*path, "host"), f"{in_file}: ProxyJump {proxy} has more than one "
                         "hop; one bastion is supported: give the first hop its own ProxyJump-"
                         "free Host block and jump from there")
    who, _, rest = proxy.rpartition("@")
    name, _, port = rest.partition(":")
    assert config is not None
    jump_cfg = config.lookup(name) if _matches(config, name) else {}
    host = jump_cfg.get("hostname", name)
    identity = jump_cfg.get("identityfile")
    key = (ssh.key_file if "key_file" in ssh.given else None) or (
        identity[0] if identity else None) or DEFAULTS.key_file
    jump_user = who or (ssh.user if "user" in ssh.given else None) or jump_cfg.get("user") or user
    jump_port = int(port or jump_cfg.get("port") or 22)
    return Endpoint(host, jump_port, jump_user, key), f"{in_file} ProxyJump {proxy}"


def _bastion(b: Bastion, ssh: SSH, user: str) -> Endpoint:
    return Endpoint(b.address, b.port, b.user or user, b.key_file or ssh.key_file)


def describe(node: Node) -> str:
    """One line for the dry run: the node's login and where each part came from."""
    login = node.login
    if login is None:
        return f"{node.name}: {node.address}"
    via = f" via {login.jump.where}" if login.jump else ""
    origins = "; ".join(f"{k}: {v}" for k, v in login.origins)
    return f"{node.name}: {login.where} key {login.key_file or '(agent)'}{via} ({origins})"
