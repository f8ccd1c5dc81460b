"""A lab of simulated CentOS 7 nodes on one Linux machine (see lab/CONTRACT.md)."""

from __future__ import annotations

import os
from pathlib import Path

SUDO_PASSWORD = "lab-sudo-pw"
"""Password of the `labpw` user (its sudo asks for it)."""

SUDO_PASSWORD_ENV = "LAB_SUDO_PASSWORD"
"""Environment variable named in inventories written for `labpw` (`ssh.sudo_password_env`)."""

LOGIN_USERS = ("root", "lab", "labpw")
KERNEL_RELEASE = "3.10.0-1160.el7.x86_64"


def lab_root() -> Path:
    """The lab root: `$BOOTSTRAP_LAB_ROOT`, default `/var/tmp/bootstrap-lab`."""
    return Path(os.environ.get("BOOTSTRAP_LAB_ROOT", "/var/tmp/bootstrap-lab"))


def __getattr__(name: str):
    # Lazy access to the Lab object so `import lab` stays cheap for stand-in helpers.
    if name in ("Lab", "Node"):
        from lab import cluster, node

        return {"Lab": cluster.Lab, "Node": node.Node}[name]
    raise AttributeError(name)
