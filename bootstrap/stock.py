"""A stock CentOS 7 node as facts: what ``render`` and the pure plan tests start from."""

from __future__ import annotations

from typing import Any

from .facts import Fact, Facts
from .plan import FileState

HOSTS = (
    "127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4\n"
    "::1         localhost localhost.localdomain localhost6 localhost6.localdomain6\n"
)
FSTAB = """
#
# /etc/fstab
# Created by anaconda on Thu Aug 26 21:12:03 2021
#
# Accessible filesystems, by reference, are maintained under '/dev/disk'
# See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info
#
/dev/mapper/centos-root /                       xfs     defaults        0 0
UUID=6f3d2b3e-5a8f-4d0c-9d8e-2c1f0b7a9e11 /boot                   xfs     defaults        0 0
/dev/mapper/centos-swap swap                    swap    defaults        0 0
"""
SELINUX_CONFIG = """
# This file controls the state of SELinux on the system.
# SELINUX= can take one of these three values:
#     enforcing - SELinux security policy is enforced.
#     permissive - SELinux prints warnings instead of enforcing.
#     disabled - No SELinux policy is loaded.
SELINUX=enforcing
# SELINUXTYPE= can take one of three values:
#     targeted - Targeted processes are protected,
#     minimum - Modification of targeted policy. Only selected processes are protected.
#     mls - Multi Level Security protection.
SELINUXTYPE=targeted

"""
FILES = {
    "/etc/hostname": FileState("localhost.localdomain\n"),
    "/etc/hosts": FileState(HOSTS),
    "/etc/fstab": FileState(FSTAB),
    "/etc/selinux/config": FileState(SELINUX_CONFIG),
}
UNITS = {"firewalld.service", "chronyd.service"}  # installed, enabled and running
RPMS = {"chrony": "3.4-1.el7"}
VALUES: dict[str, Any] = {
    "hostname": "localhost.localdomain",
    "kernel": "3.10.0-1160.el7.x86_64",
    "selinux": "Enforcing",
    "swaps": ["/dev/dm-1"],
    "modules": set(),
    "sysctl:net.ipv4.ip_forward": "0",
    "firewall:permanent": "",
    "firewall:runtime": "",
}


def value(name: str) -> Any:
    """The stock value of one fact (by its name)."""
    kind, _, arg = name.partition(":")
    if kind == "file":
        return FILES.get(arg)
    if kind == "unit":
        on = arg in UNITS
        return {"exists": on, "enabled": on, "active": on}
    if kind == "rpms":
        return {p: v for p, v in RPMS.items() if p in arg.split(",")}
    return VALUES.get(name)


def facts(wanted: list[Fact]) -> Facts:
    return {f.name: value(f.name) for f in wanted}
