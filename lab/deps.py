"""Preconditions of the lab and installation of its Debian packages."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

# Debian package -> a file that proves it is installed.
PACKAGES: dict[str, str] = {
    "openssh-server": "/usr/sbin/sshd",
    "openssh-client": "/usr/bin/ssh-keygen",
    "sudo": "/usr/bin/sudo",
    "dnf": "/usr/bin/dnf",
    "dnf-plugins-core": "/usr/lib/python3/dist-packages/dnf-plugins/config_manager.py",
    "rpm": "/usr/bin/rpmbuild",
    "createrepo-c": "/usr/bin/createrepo_c",
    "util-linux": "/usr/bin/unshare",
    "python3": "/usr/bin/python3",
    "python3-yaml": "/usr/lib/python3/dist-packages/yaml/__init__.py",
    "openssl": "/usr/bin/openssl",
    "iproute2": "/usr/bin/ss",
}

POLICY_RC = Path("/usr/sbin/policy-rc.d")


class DepsError(RuntimeError):
    """The lab cannot run on this machine; the message says why."""


def missing_packages() -> list[str]:
    """Debian packages whose marker file is absent."""
    return [pkg for pkg, marker in PACKAGES.items() if not os.path.exists(marker)]


def precondition_problems() -> list[str]:
    """What prevents the lab from running here (empty when all is fine)."""
    problems: list[str] = []
    if platform.system() != "Linux":
        problems.append(f"the lab needs Linux (this is {platform.system()})")
        return problems
    if os.geteuid() != 0:
        problems.append("the lab must run as root (it mounts overlays and uses namespaces)")
    try:
        if "overlay" not in Path("/proc/filesystems").read_text():
            problems.append("overlayfs is not available (no 'overlay' in /proc/filesystems)")
    except OSError as exc:
        problems.append(f"cannot read /proc/filesystems: {exc}")
    if shutil.which("unshare") and os.geteuid() == 0:
        res = subprocess.run(
            ["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "true"],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            problems.append(f"unshare does not work here: {res.stderr.strip()}")
    return problems


def host_sshd_on_wildcard() -> bool:
    """True when something listens on 0.0.0.0:22 or [::]:22 (blocks 127.0.B.N:22)."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state = parts[1], parts[3]
            addr, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == 22 and set(addr) == {"0"}:
                return True
    return False


def install(packages: list[str], log=print) -> None:
    """apt-get install PACKAGES without letting Debian start services (policy-rc.d 101)."""
    if not shutil.which("apt-get"):
        raise DepsError(f"missing packages {packages} and no apt-get to install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    created = not POLICY_RC.exists()
    if created:
        POLICY_RC.write_text("#!/bin/sh\n# written by lab/deps.py during install\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        log(f"lab: installing {' '.join(packages)} (apt-get)")
        res = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"],
                             env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise DepsError(f"apt-get update failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        res = subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q",
             "--no-install-recommends", *packages],
            env=env, capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise DepsError(f"apt-get install failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    finally:
        if created:
            POLICY_RC.unlink(missing_ok=True)


def ensure(log=print) -> None:
    """Check preconditions, install missing packages; raise DepsError saying what is wrong."""
    problems = precondition_problems()
    if problems:
        raise DepsError("the lab cannot run here:\n  - " + "\n  - ".join(problems))
    missing = missing_packages()
    if missing:
        install(missing, log=log)
        still = missing_packages()
        if still:
            raise DepsError(f"still missing after install: {', '.join(still)}")
    if host_sshd_on_wildcard():
        raise DepsError(
            "a host sshd (or something else) listens on 0.0.0.0:22 or [::]:22; lab nodes need "
            "127.0.B.N:22. Make the host sshd listen on specific addresses or stop it "
            "(e.g. `systemctl stop ssh`)."
        )


def main() -> int:
    """`python -m lab deps`."""
    try:
        ensure()
    except DepsError as exc:
        print(f"lab deps: {exc}", file=sys.stderr)
        return 1
    print("lab deps: ok")
    return 0
