"""What differs between EL7, EL8 and EL9, as data: the steps read these tables, never the OS.

A node's platform comes from facts gathered in the same round trip as every other fact
(``/etc/os-release``, ``/proc/mounts`` for the cgroup version, the packages in ``MATTER``).
Each row cites where its value comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import facts as F


@dataclass(frozen=True)
class BaseRepo:
    """One of the release's base repositories: its repo id, name, and path under
    ``repos.base.baseurl`` (the mirror's tree for that release)."""

    id: str
    name: str
    path: str


@dataclass(frozen=True)
class Release:
    """One EL major release."""

    el: int
    package_manager: str
    """`yum` on EL7; dnf on EL8/EL9 (`yum` is only an alias there)."""
    conntrack_module: str
    """nf_conntrack_ipv4 was merged into nf_conntrack in Linux 4.19, backported to RHEL 8.3;
    the old name in modules-load.d makes systemd-modules-load fail (FIELD-NOTES)."""
    sysconfig_modules_runner: str | None
    """The package whose boot unit runs /etc/sysconfig/modules/*.modules (initscripts'
    rhel-loadmodules.service, fedora-sysv/initscripts); None where nothing runs them."""
    tools: tuple[str, ...]
    """Packages giving kubeadm preflight's `tc`, `conntrack` and `socat`; `tc` moved from iproute
    to iproute-tc in EL8 (kubespray#4212)."""
    selinux_disabled_by_config: bool
    """False on EL9: SELINUX=disabled in /etc/selinux/config no longer disables SELinux, that needs
    the selinux=0 kernel argument (RHEL 9 "Using SELinux", Changing SELinux states and modes)."""
    sha1_signatures: bool
    """Whether the default crypto policy accepts SHA-1 signed repo metadata and packages (not on
    EL9: RHEL 9 security hardening, SHA-1 in signatures is disabled in DEFAULT)."""
    allow_erasing: str | None
    """The install option that lets the transaction remove conflicting packages (dnf's
    --allowerasing; EL7's yum has none), used with node_prep.remove_conflicting_packages."""
    base_repos: tuple[BaseRepo, ...]
    containerd_2: bool = True
    """Whether docker's repo builds containerd.io 2.x here: not for EL7 (docker/containerd-packaging
    removed CentOS 7 from its Jenkinsfile in June 2024, before 2.x: docs/RELEASE-FACTS.md 6)."""


RELEASES: dict[int, Release] = {
    7: Release(
        el=7, package_manager="yum", conntrack_module="nf_conntrack_ipv4",
        sysconfig_modules_runner="initscripts", tools=("iproute", "conntrack-tools", "socat"),
        selinux_disabled_by_config=True, sha1_signatures=True, allow_erasing=None,
        base_repos=(BaseRepo("base", "CentOS-$releasever - Base", ""),),
        containerd_2=False,
    ),
    8: Release(
        el=8, package_manager="dnf", conntrack_module="nf_conntrack",
        sysconfig_modules_runner="initscripts", tools=("iproute-tc", "conntrack-tools", "socat"),
        selinux_disabled_by_config=True, sha1_signatures=True,
        allow_erasing="--allowerasing",
        base_repos=(
            BaseRepo("baseos", "BaseOS", "BaseOS/$basearch/os/"),
            BaseRepo("appstream", "AppStream", "AppStream/$basearch/os/"),
            BaseRepo("extras", "Extras", "extras/$basearch/os/"),
        ),
    ),
    9: Release(
        # EL9's minimal install has no initscripts: nothing runs /etc/sysconfig/modules.
        el=9, package_manager="dnf", conntrack_module="nf_conntrack",
        sysconfig_modules_runner=None, tools=("iproute-tc", "conntrack-tools", "socat"),
        selinux_disabled_by_config=False, sha1_signatures=False,
        allow_erasing="--allowerasing",
        base_repos=(
            BaseRepo("baseos", "BaseOS", "BaseOS/$basearch/os/"),
            BaseRepo("appstream", "AppStream", "AppStream/$basearch/os/"),
            BaseRepo("extras", "Extras", "extras/$basearch/os/"),
        ),
    ),
}

# The distributions accepted (os-release ID), and the repo files each release ships its base
# repositories in: {(distro, el): {file: (repo ids in it)}}. `repos.base` rewrites these files.
DISTROS = {
    "centos": "CentOS Linux",
    "centos-stream": "CentOS Stream",
    "rhel": "Red Hat Enterprise Linux",
    "rocky": "Rocky Linux",
    "almalinux": "AlmaLinux",
    "ol": "Oracle Linux",
}
REPO_FILES: dict[tuple[str, int], dict[str, tuple[str, ...]]] = {
    ("centos", 7): {"/etc/yum.repos.d/CentOS-Base.repo": ("base",)},
    ("centos", 8): {
        "/etc/yum.repos.d/CentOS-Linux-BaseOS.repo": ("baseos",),
        "/etc/yum.repos.d/CentOS-Linux-AppStream.repo": ("appstream",),
        "/etc/yum.repos.d/CentOS-Linux-Extras.repo": ("extras",),
    },
    ("centos-stream", 8): {
        "/etc/yum.repos.d/CentOS-Stream-BaseOS.repo": ("baseos",),
        "/etc/yum.repos.d/CentOS-Stream-AppStream.repo": ("appstream",),
        "/etc/yum.repos.d/CentOS-Stream-Extras.repo": ("extras",),
    },
    ("centos-stream", 9): {"/etc/yum.repos.d/centos.repo": ("baseos", "appstream"),
                           "/etc/yum.repos.d/centos-addons.repo": ("extras",)},
    ("rocky", 8): {
        "/etc/yum.repos.d/Rocky-BaseOS.repo": ("baseos",),
        "/etc/yum.repos.d/Rocky-AppStream.repo": ("appstream",),
        "/etc/yum.repos.d/Rocky-Extras.repo": ("extras",),
    },
    ("rocky", 9): {"/etc/yum.repos.d/rocky.repo": ("baseos", "appstream"),
                   "/etc/yum.repos.d/rocky-extras.repo": ("extras",)},
    ("almalinux", 8): {"/etc/yum.repos.d/almalinux.repo": ("baseos", "appstream", "extras")},
    ("almalinux", 9): {
        "/etc/yum.repos.d/almalinux-baseos.repo": ("baseos",),
        "/etc/yum.repos.d/almalinux-appstream.repo": ("appstream",),
        "/etc/yum.repos.d/almalinux-extras.repo": ("extras",),
    },
}
"""RHEL's repos come from subscription-manager (redhat.repo) and Oracle Linux's ids differ
(ol8_baseos_latest): point those at a mirror with the vendor's tools, not `repos.base`."""

MATTER = ("initscripts", "podman", "buildah", "runc", "podman-docker", "containerd.io",
          "containerd")
"""Installed packages that change what a step does (boot-time module scripts, conflicts)."""


@dataclass(frozen=True)
class Platform:
    """A node's operating system: distro key (``DISTROS``), EL major, pretty name."""

    distro: str
    el: int
    pretty: str

    @property
    def release(self) -> Release:
        return RELEASES[self.el]

    @property
    def repo_files(self) -> dict[str, tuple[str, ...]] | None:
        return REPO_FILES.get((self.distro, self.el))


class Unsupported(ValueError):
    """The node runs an OS the toolkit does not support: the message says what was found."""


def supported() -> str:
    """What the toolkit supports, for error messages."""
    return (f"EL{', EL'.join(str(e) for e in sorted(RELEASES))} of "
            + ", ".join(DISTROS.values()))


def detect(osr: dict[str, str] | None) -> Platform:
    """The platform an os-release describes; Unsupported names what was found otherwise."""
    osr = osr or {}
    pretty = osr.get("PRETTY_NAME") or osr.get("NAME") or "an OS without /etc/os-release"
    ident = osr.get("ID", "")
    like = set(osr.get("ID_LIKE", "").split())
    major = osr.get("VERSION_ID", "").split(".")[0]
    if ident == "centos" and "stream" in osr.get("NAME", "").lower():
        ident = "centos-stream"
    if ident not in DISTROS:
        if not like & {"rhel", "centos"}:
            raise Unsupported(f"{pretty} (ID={osr.get('ID', '?')}) is not an Enterprise Linux; "
                              f"supported: {supported()}")
        ident = "rhel"  # a rebuild that says it is like RHEL (ID_LIKE)
    if not major.isdigit() or int(major) not in RELEASES:
        raise Unsupported(f"{pretty} is EL{major or '?'}; supported: {supported()}")
    return Platform(ident, int(major), pretty)


def os_release() -> F.Fact:
    """/etc/os-release as a dict (read by the shell itself)."""
    return F.read("os-release", "/etc/os-release", _os_release)


def _os_release(out: str, rc: int) -> dict[str, str]:
    data = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            data[key.strip()] = value.strip().strip('"').strip("'")
    return data


def cgroup() -> F.Fact:
    """The cgroup version mounted at /sys/fs/cgroup (what ``stat -fc %T`` tells: cgroup2fs is
    v2, tmpfs is v1), read from /proc/mounts by the shell itself; None when nothing is there."""
    return F.read("cgroup", "/proc/mounts", _cgroup)


def _cgroup(out: str, rc: int) -> int | None:
    found = None
    for line in out.splitlines():  # the last mount on /sys/fs/cgroup is the one in effect
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "/sys/fs/cgroup":
            found = {"cgroup2": 2, "tmpfs": 1}.get(fields[2])
    return found


def matter() -> F.Fact:
    """Which of the packages in ``MATTER`` are installed (one batched ``rpm -q``)."""
    return F.rpms(MATTER)


def facts() -> list[F.Fact]:
    """The platform facts every node gathers (one round trip with the steps' facts)."""
    return [os_release(), cgroup(), F.kernel(), matter()]


def of(facts: F.Facts) -> Platform:
    """The node's platform from gathered facts (``facts()`` must be among them)."""
    return detect(facts.get("os-release"))


def installed(facts: F.Facts) -> dict[str, str]:
    """{name: version-release} of the installed packages in ``MATTER``."""
    return facts.get(matter().name) or {}
