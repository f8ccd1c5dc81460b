"""Stock nodes as facts, one per OS flavour: what ``render`` and the pure plan tests start from."""

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


def _os_release(name: str, ident: str, version: str, like: str, pretty: str) -> dict[str, str]:
    return {"NAME": name, "ID": ident, "VERSION_ID": version, "ID_LIKE": like,
            "PRETTY_NAME": pretty}


# What differs between the stock flavours (``invoke render --os``): os-release, kernel, cgroup
# version, and the installed packages the steps look at.
FLAVOURS: dict[str, dict[str, Any]] = {
    "el7": {
        "os-release": _os_release("CentOS Linux", "centos", "7", "rhel fedora",
                                  "CentOS Linux 7 (Core)"),
        "kernel": "3.10.0-1160.el7.x86_64",
        "cgroup": 1,
        "rpms": {"chrony": "3.4-1.el7", "initscripts": "9.49.53-1.el7_9.1",
                 "iproute": "4.11.0-30.el7"},
    },
    "el8": {
        "os-release": _os_release("CentOS Linux", "centos", "8", "rhel fedora",
                                  "CentOS Linux 8"),
        "kernel": "4.18.0-348.7.1.el8_5.x86_64",
        "cgroup": 1,
        "rpms": {"chrony": "4.1-1.el8", "initscripts": "10.00.15-1.el8",
                 "iproute": "5.12.0-4.el8"},
    },
    "el9": {
        "os-release": _os_release("Rocky Linux", "rocky", "9.4", "rhel centos fedora",
                                  "Rocky Linux 9.4 (Blue Onyx)"),
        "kernel": "5.14.0-427.13.1.el9_4.x86_64",
        "cgroup": 2,
        "rpms": {"chrony": "4.5-1.el9", "iproute": "6.2.0-6.el9_4"},
    },
}
DEFAULT = "el7"
VALUES: dict[str, Any] = {
    "hostname": "localhost.localdomain",
    "selinux": "Enforcing",
    "swaps": ["/dev/dm-1"],
    "modules": set(),
    "sysctl:net.ipv4.ip_forward": "0",
    "firewall:permanent": "",
    "firewall:runtime": "",
}


def value(name: str, flavour: str = DEFAULT) -> Any:
    """The stock value of one fact (by its name) on a node of ``flavour``."""
    kind, _, arg = name.partition(":")
    flav = FLAVOURS[flavour]
    if kind == "file":
        return FILES.get(arg)
    if kind == "unit":
        on = arg in UNITS
        return {"exists": on, "enabled": on, "active": on}
    if kind == "rpms":
        return {p: v for p, v in flav["rpms"].items() if p in arg.split(",")}
    if name in flav:
        return flav[name]
    return VALUES.get(name)


def facts(wanted: list[Fact], flavour: str = DEFAULT) -> Facts:
    return {f.name: value(f.name, flavour) for f in wanted}
