"""The inventory a lab writes for the toolkit (format in lab/CONTRACT.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

import lab

if TYPE_CHECKING:
    from lab.cluster import Lab


def _q(value: object) -> str:
    """A YAML scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def render(the_lab: Lab, user: str = "lab") -> str:
    """inventory.yaml text for `the_lab`, logging in as `user`."""
    ssh = (f"user: {_q(user)}, key_file: {_q(str(the_lab.key_file))}, "
           f"known_hosts: {_q(str(the_lab.known_hosts))}, host_key_policy: strict, "
           "connect_timeout: 5")
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


def write(path: Path, the_lab: Lab, user: str = "lab") -> Path:
    """Write the inventory to `path`."""
    path.write_text(render(the_lab, user))
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
