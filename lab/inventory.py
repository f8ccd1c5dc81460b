"""The inventory a lab writes for the toolkit (format in lab/CONTRACT.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

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
