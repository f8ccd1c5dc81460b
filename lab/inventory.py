"""The inventory a lab writes for the toolkit (format in lab/CONTRACT.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

import lab

if TYPE_CHECKING:
    from lab.cluster import Lab


VIAS = (None, "bastion", "ssh_config")
"""How an inventory reaches the nodes: directly, `ssh.bastion`, or `ssh.config_file`."""


def _q(value: object) -> str:
    """A YAML scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def render(the_lab: Lab, user: str = "lab", via: str | None = None) -> str:
    """inventory.yaml text for `the_lab`, logging in as `user`; `via` (a lab with a bastion):
    None (directly), "bastion" (`ssh.bastion`) or "ssh_config" (`ssh.config_file`, see
    `render_ssh_config`; user and key only there)."""
    tail = (f"known_hosts: {_q(str(the_lab.known_hosts))}, host_key_policy: strict, "
            "connect_timeout: 5")
    if via == "ssh_config":
        ssh = f"config_file: {_q(str(the_lab.ssh_config_path))}, {tail}"
    else:
        ssh = f"user: {_q(user)}, key_file: {_q(str(the_lab.key_file))}, {tail}"
    if via == "bastion":
        assert the_lab.bastion is not None
        ssh += f", bastion: {{address: {the_lab.bastion.address}}}"
    if user == "labpw":
        ssh += f", sudo_password_env: {lab.SUDO_PASSWORD_ENV}"
    lines = [f"# lab {the_lab.name}: written by `python -m lab up`",
             f"cluster: {{name: {_q(the_lab.name if the_lab.name != 'default' else 'lab')}}}",
             f"ssh: {{{ssh}}}",
             "registries: {}"]
    url = the_lab.mirror_url
    os_name = getattr(the_lab, "os", "el7")
    if url and os_name != "el7":
        # the tree root: the toolkit appends BaseOS/$basearch/os/, AppStream/..., extras/...
        lines += ["repos:",
                  f"  base: {{baseurl: {_q(url + os_name + '/')}, gpgcheck: false}}",
                  f"  docker_ce: {{baseurl: {_q(url + os_name + '/docker-ce/')}, "
                  "gpgcheck: false}",
                  f"  kubernetes: {{baseurl: {_q(url + 'kubernetes/')}, gpgcheck: false, "
                  "repo_gpgcheck: false}"]
    elif url:
        lines += ["repos:",
                  f"  base: {{baseurl: {_q(url + 'base/')}, gpgcheck: false}}",
                  f"  docker_ce: {{baseurl: {_q(url + 'docker-ce/')}, gpgcheck: false}}",
                  f"  kubernetes: {{baseurl: {_q(url + 'kubernetes/')}, gpgcheck: false, "
                  "repo_gpgcheck: false}"]
    lines.append("nodes:")
    for i, node in enumerate(the_lab.nodes):
        role = "master" if i == 0 else "worker"
        lines.append(f"  - {{name: {node.name}, address: {node.address}, role: {role}}}")
    return "\n".join(lines) + "\n"


def write(path: Path, the_lab: Lab, user: str = "lab", via: str | None = None) -> Path:
    """Write the inventory to `path`."""
    path.write_text(render(the_lab, user, via))
    return path


def _arg(value: str) -> str:
    """An ssh_config argument: double-quoted when it has a space."""
    return f'"{value}"' if " " in value else value


def render_ssh_config(the_lab: Lab, user: str = "lab") -> str:
    """An OpenSSH client config reaching every node through the lab's bastion: `Host bastion`
    and one `Host <node name>` block per node (`ProxyJump bastion`); a last `Host *` block
    makes plain `ssh -F <file> node1` check host keys against the lab's known_hosts."""
    assert the_lab.bastion is not None
    key = _arg(str(the_lab.key_file))
    lines = [f"# lab {the_lab.name}: every node through the bastion (written by the lab)",
             f"Host {the_lab.bastion.name}", f"    HostName {the_lab.bastion.address}",
             f"    User {user}", f"    IdentityFile {key}", ""]
    for node in the_lab.nodes:
        lines += [f"Host {node.name}", f"    HostName {node.address}", f"    User {user}",
                  f"    IdentityFile {key}", f"    ProxyJump {the_lab.bastion.name}", ""]
    lines += ["Host *", f"    UserKnownHostsFile {_arg(str(the_lab.known_hosts))}",
              "    GlobalKnownHostsFile /dev/null", "    StrictHostKeyChecking yes",
              "    IdentitiesOnly yes", "    BatchMode yes", "    ConnectTimeout 5"]
    return "\n".join(lines) + "\n"


def write_ssh_config(path: Path, the_lab: Lab, user: str = "lab") -> Path:
    """Write `render_ssh_config` to `path` (mode 0600, as ssh wants its config)."""
    path.write_text(render_ssh_config(the_lab, user))
    path.chmod(0o600)
    return path


def pin(path: Path | str, mirror: str | None, kubernetes: str | None = None,
        docker: str | None = None, runtime: str | None = None,
        containerd: str | None = None) -> None:
    """Pin versions in a lab inventory, as a user would in theirs: cluster.kubernetes_version,
    cluster.container_runtime, docker.version, containerd.version. From 1.24 repos.kubernetes
    points at the lab mirror's per-minor repos (``{minor}`` filled in by the toolkit)."""
    with open(path) as f:
        data = yaml.safe_load(f)
    cluster = data.setdefault("cluster", {})
    if kubernetes:
        cluster["kubernetes_version"] = kubernetes
    if runtime:
        cluster["container_runtime"] = runtime
    if docker:
        data.setdefault("docker", {})["version"] = docker
    if containerd:
        data.setdefault("containerd", {})["version"] = containerd
    if mirror and kubernetes and int(kubernetes.split(".")[1]) >= 24:
        data.setdefault("repos", {})["kubernetes"] = {
            "baseurl": mirror + "kubernetes-new/core/stable/v{minor}/rpm/", "gpgcheck": False}
    with open(path, "w") as f:
        f.write("# lab inventory, versions pinned\n")
        yaml.safe_dump(data, f, sort_keys=False)


VIP_HOST = 100
"""A lab's virtual IP: 127.0.B.100, an address of its block no node takes (nodes are .11 on)."""


def control_planes(path: Path | str, count: int, load_balancer: str | None = None) -> None:
    """Make the first ``count`` nodes of a lab inventory control planes (role control-plane),
    the rest workers, as a user would write an HA inventory. ``load_balancer``: that kind; for
    kube-vip and haproxy-keepalived the VIP is 127.0.B.100 on eth0, a /24 (the nodes' links:
    lab/standins/bin/ip)."""
    with open(path) as f:
        text = f.read()
    data = yaml.safe_load(text)
    for i, node in enumerate(data.get("nodes", [])):
        node["role"] = "control-plane" if i < count else "worker"
    if load_balancer:
        cluster = data.setdefault("cluster", {})
        cluster["load_balancer"] = load_balancer
        if load_balancer in ("kube-vip", "haproxy-keepalived"):
            first = data["nodes"][0].get("internal_address") or data["nodes"][0]["address"]
            cluster["control_plane_endpoint"] = first.rsplit(".", 1)[0] + f".{VIP_HOST}"
            cluster["vip"] = {"interface": "eth0", "prefix": 24}
    header = "".join(ln + "\n" for ln in text.splitlines() if ln.startswith("#"))
    with open(path, "w") as f:
        f.write(header)
        yaml.safe_dump(data, f, sort_keys=False)
