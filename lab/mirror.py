"""The lab's local yum mirror: tiny RPMs built with rpmbuild, indexed with createrepo_c, served
over HTTP on 127.0.0.1.

The el7 repos (``base``, ``docker-ce``, ``kubernetes``) and, per EL8/EL9 flavour
(lab/flavours.py), ``elN/BaseOS/x86_64/os``, ``elN/AppStream/x86_64/os``, ``elN/extras/x86_64/os``
and ``elN/docker-ce`` are declared below with the versions and the dependencies of the real
packages; ``kubernetes`` (noarch, the legacy el7 repo) serves every flavour.
A package's files are the tree under ``lab/payloads/<name>/``.
Builds are cached under ``<lab root>/mirror/<hash>/`` by a hash of the declarations and payloads,
and serialised by a file lock, so parallel test runs share one build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import flavours

PAYLOADS = Path(__file__).resolve().parent / "payloads"
EL8_PAYLOADS = Path(__file__).resolve().parent / "standins" / "payloads"
"""Payloads of packages that only the EL8/EL9 trees have (iproute-tc): kept apart from
lab/payloads, whose every command an el7 node's tests run."""


def payload_dir(name: str) -> Path:
    """Where a package's files are: lab/payloads/<name>, else lab/standins/payloads/<name>."""
    top = PAYLOADS / name
    return top if top.is_dir() or not (EL8_PAYLOADS / name).is_dir() else EL8_PAYLOADS / name


def payload_dirs(name: str, os_name: str = "el7") -> list[Path]:
    """A package's trees for one flavour, in order: payload_dir(name), then
    lab/payloads/<name>@<os> (that flavour's own files, e.g. haproxy's unit and config,
    win over the common ones)."""
    dirs = [payload_dir(name), PAYLOADS / f"{name}@{os_name}"]
    return [d for d in dirs if d.is_dir()]


HOST_FILES: dict[str, dict[str, str]] = {
    # Debian's haproxy (lab/deps.py installs it on the host): the stand-in /usr/sbin/haproxy
    # runs its real config check. A node does not see it at /usr/sbin/haproxy once the
    # package's stand-in is there, so the package carries a copy.
    "haproxy": {"/usr/lib/lab/haproxy-real": "/usr/sbin/haproxy"},
    # Debian's keepalived 2.2.7 likewise: the stand-in runs its real --config-test
    "keepalived": {"/usr/lib/lab/keepalived-real": "/usr/sbin/keepalived"},
}
"""Host files a package carries (package path -> host path; absent on the host: left out)."""
REPOS_EL7 = ("base", "docker-ce", "kubernetes")
FORMAT = 1  # bump to invalidate every cached build


@dataclass(frozen=True)
class Pkg:
    """One package version of the mirror."""

    name: str
    version: str
    release: str
    repo: str
    epoch: int = 0
    arch: str = "x86_64"
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    obsoletes: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    summary: str = ""
    pre: str = ""  # the %pre scriptlet (sh)
    dirs: tuple[str, ...] = ()  # empty directories the package owns

    @property
    def evr(self) -> str:
        return (
            f"{self.epoch}:{self.version}-{self.release}"
            if self.epoch
            else f"{self.version}-{self.release}"
        )

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"

    @property
    def os(self) -> str:
        """The flavour whose repos hold it (el7 for base/, docker-ce/ and kubernetes/)."""
        top = self.repo.split("/", 1)[0]
        return top if top in flavours.NAMES else "el7"


def tree(os_name: str, repo: str) -> str:
    """A flavour's repo directory on the mirror: BaseOS, AppStream, extras or docker-ce."""
    return f"{os_name}/docker-ce" if repo == "docker-ce" else f"{os_name}/{repo}/x86_64/os"


def _from_base(p: flavours.BasePkg, repo: str) -> Pkg:
    return Pkg(p.name, p.version, p.release, repo, epoch=p.epoch, arch=p.arch,
               requires=p.requires, provides=p.provides, obsoletes=p.obsoletes,
               conflicts=p.conflicts)


def _docker(os_name: str, containerd: tuple[str, ...], docker: tuple[str, ...],
            docker_req: tuple[str, ...]) -> list[Pkg]:
    """download.docker.com/linux/centos/<8|9>: containerd.io's el8+ builds obsolete and
    conflict with runc and do NOT provide it (docker/containerd-packaging rpm/containerd.spec:
    `Provides: runc` only when rhel < 8)."""
    d, dist = tree(os_name, "docker-ce"), flavours.get(os_name).docker_release
    docker_obs = ("docker-ce-selinux <= 2:17.03.0-1", "docker-engine-selinux", "docker-engine")
    docker_conf = ("docker", "docker-io", "docker-engine-cs", "docker-ee")
    out = [Pkg("containerd.io", v, f"3.1.{dist}", d,
               requires=("container-selinux >= 2:2.74", "libseccomp"),
               provides=("containerd",), obsoletes=("containerd", "runc"),
               conflicts=("containerd", "runc")) for v in containerd]
    out += containerd_lines(os_name)
    for v in docker:
        out += [
            Pkg("docker-ce-cli", v, f"3.{dist}", d, epoch=1),
            Pkg("docker-ce-rootless-extras", v, f"3.{dist}", d),
            Pkg("docker-ce", v, f"3.{dist}", d, epoch=3,
                requires=(*docker_req, "docker-ce-cli", "containerd.io >= 1.4.1",
                          "docker-ce-rootless-extras"),
                obsoletes=docker_obs, conflicts=docker_conf),
        ]
    return out


CONTAINERD_LINES: dict[str, tuple[str, ...]] = {
    "el7": ("1.6.32", "1.6.33"),
    "el8": ("1.6.32", "1.6.33", "1.7.25", "1.7.27", "2.1.5", "2.2.1"),
    "el9": ("1.6.32", "1.6.33", "1.7.25", "1.7.27", "2.1.5", "2.2.1"),
}
"""containerd.io of the 1.6 and 1.7 lines in each flavour's docker-ce repo (besides the older
builds kept for the docker path). Sources: docker/containerd-packaging `rpm/containerd.spec`
%changelog (`1.6.32-3.1`, `1.6.33-3.1` 2024-06-04, `1.7.25-3.1`, `1.7.27-3.1`; Release is
`3.1%{?dist}`), its Jenkinsfile (centos:7 is built up to 1.6.33 and removed before 1.7.18,
the first 1.7 it packaged: there is no el7 build of 1.7), rockylinux:8/9 and almalinux:8/9
images for el8/el9. Unconfirmed: the download.docker.com listings themselves (not reachable).
2.x (el8/el9 only): 2.1.5 is the first and only 2.1 build docker shipped (docker-ce-packaging
PR #1334: "container.io v2.1.5 is the oldest v2 version we shipped as packages", "we only
shipped a single v2.1 version"), then the 2.2 line; 2.2.1 is unconfirmed (a containerd tag, the
repo's 2.2 builds were not read), as are the 2.x spec's relations (kept as 1.7's). No el7 build
(containerd-packaging dropped CentOS 7 in 2024, docs/RELEASE-FACTS.md 6)."""


def containerd_lines(os_name: str) -> list[Pkg]:
    """The 1.6/1.7 containerd.io builds of one flavour with the spec's real relations:
    Provides runc only below RHEL 8; Obsoletes and Conflicts containerd and runc;
    Requires `container-selinux >= 2:2.74` up to 1.6.33 and plain `container-selinux` from
    1.7.18 (containerd-packaging 018d28e "rpm: remove version-constraint for container-selinux");
    Requires libseccomp. The 2.x builds get 1.7's relations (unconfirmed for 2.x)."""
    d = "docker-ce" if os_name == "el7" else tree(os_name, "docker-ce")
    dist = "el7" if os_name == "el7" else flavours.get(os_name).docker_release
    runc = ("runc",) if os_name == "el7" else ()
    return [Pkg("containerd.io", v, f"3.1.{dist}", d,
                requires=("container-selinux >= 2:2.74" if v.startswith("1.6.")
                          else "container-selinux", "libseccomp"),
                provides=("containerd", *runc), obsoletes=("containerd", "runc"),
                conflicts=("containerd", "runc"),
                summary="An industry-standard container runtime")
            for v in CONTAINERD_LINES[os_name]]


def _el8() -> list[Pkg]:
    """CentOS Linux 8.5.2111's packages the toolkit installs. unconfirmed: the releases (see
    lab/flavours.py); the names and relations are the release's."""
    b, a = tree("el8", "BaseOS"), tree("el8", "AppStream")
    out = [
        Pkg("iproute-tc", "5.12.0", "4.el8", b, requires=("iproute = 5.12.0-4.el8",),
            summary="Linux Traffic Control utility"),
        Pkg("ipset-libs", "7.1", "1.el8", b),
        Pkg("ipset", "7.1", "1.el8", b, requires=("ipset-libs(x86-64) = 7.1-1.el8",)),
        Pkg("libnetfilter_cthelper", "1.0.0", "15.el8", b),
        Pkg("libnetfilter_cttimeout", "1.0.0", "11.el8", b),
        Pkg("libnetfilter_queue", "1.0.4", "3.el8", b),
        Pkg("conntrack-tools", "1.4.4", "10.el8", b, provides=("conntrack = 1.0-1",),
            requires=("libnetfilter_cthelper", "libnetfilter_cttimeout", "libnetfilter_queue")),
        Pkg("chrony", "4.1", "1.el8", b, requires=("libseccomp", "shadow-utils", "systemd")),
        Pkg("python3-dnf-plugins-core", "4.0.21", "3.el8", b, arch="noarch",
            requires=("dnf >= 4.7.0",)),
        Pkg("dnf-plugins-core", "4.0.21", "3.el8", b, arch="noarch",
            requires=("python3-dnf-plugins-core = 4.0.21-3.el8",)),
        Pkg("yum-utils", "4.0.21", "3.el8", b, arch="noarch",
            requires=("dnf-plugins-core = 4.0.21-3.el8",)),
        Pkg("iptables-services", "1.8.4", "20.el8", b, requires=("iptables = 1.8.4-20.el8",)),
        # EL8's iptables.spec: %package ebtables, Obsoletes/Provides ebtables (kubelet needs it)
        Pkg("iptables-ebtables", "1.8.4", "20.el8", b, provides=("ebtables",),
            obsoletes=("ebtables",), requires=("iptables = 1.8.4-20.el8",)),
        Pkg("socat", "1.7.4.1", "1.el8", a),
        Pkg("ipvsadm", "1.31", "1.el8", a),
        Pkg("container-selinux", "2.167.0", "1.module_el8.5.0+911+f19012f9", a, epoch=2,
            arch="noarch", requires=("selinux-policy", "policycoreutils")),
        *[_from_base(p, a) for p in flavours.EL8.podman],
    ]
    # 20.10.8 is the seed's version on CentOS 8. unconfirmed: the containerd.io builds.
    return out + _docker("el8", ("1.4.3", "1.4.11"), ("20.10.8", "20.10.9"),
                         ("container-selinux >= 2:2.74", "libseccomp >= 2.3", "systemd",
                          "iptables", "libcgroup", "tar", "xz"))


def _el9() -> list[Pkg]:
    """Rocky Linux 9.4's packages the toolkit installs (no iptables-services on EL9: it is
    iptables-nft-services there). unconfirmed: the releases (see lab/flavours.py)."""
    b, a = tree("el9", "BaseOS"), tree("el9", "AppStream")
    out = [
        Pkg("iproute-tc", "6.2.0", "6.el9_4", b, requires=("iproute = 6.2.0-6.el9_4",),
            summary="Linux Traffic Control utility"),
        Pkg("ipset-libs", "7.11", "8.el9", b),
        Pkg("ipset", "7.11", "8.el9", b, requires=("ipset-libs(x86-64) = 7.11-8.el9",)),
        Pkg("chrony", "4.5", "1.el9", b, requires=("libseccomp", "shadow-utils", "systemd")),
        Pkg("python3-dnf-plugins-core", "4.3.0", "13.el9", b, arch="noarch",
            requires=("dnf >= 4.14.0",)),
        Pkg("dnf-plugins-core", "4.3.0", "13.el9", b, arch="noarch",
            requires=("python3-dnf-plugins-core = 4.3.0-13.el9",)),
        Pkg("yum-utils", "4.3.0", "13.el9", b, arch="noarch",
            requires=("dnf-plugins-core = 4.3.0-13.el9",)),
        Pkg("libnetfilter_cthelper", "1.0.0", "22.el9", a),
        Pkg("libnetfilter_cttimeout", "1.0.0", "19.el9", a),
        Pkg("libnetfilter_queue", "1.0.5", "1.el9", a),
        Pkg("conntrack-tools", "1.4.7", "2.el9", a, provides=("conntrack = 1.0-1",),
            requires=("libnetfilter_cthelper", "libnetfilter_cttimeout", "libnetfilter_queue")),
        Pkg("socat", "1.7.4.1", "5.el9", a),
        Pkg("ipvsadm", "1.31", "6.el9", a),
        Pkg("container-selinux", "2.229.0", "1.el9", a, epoch=3, arch="noarch",
            requires=("selinux-policy", "policycoreutils")),
        *[_from_base(p, a) for p in flavours.EL9.podman],
    ]
    # download.docker.com/linux/centos/9 starts inside 20.10.x. unconfirmed: which builds.
    return out + _docker("el9", ("1.6.4", "1.6.9"), ("20.10.17", "20.10.21"),
                         ("container-selinux >= 2:2.74", "libseccomp >= 2.3", "systemd",
                          "iptables", "tar", "xz"))


LEGACY_K8S = ("1.20.10", "1.21.0", "1.22.17", "1.23.17")
"""kubelet/kubeadm/kubectl versions of the legacy el7 repo (release `0`). Their Requires are the
kubepkg era's (kubernetes/release pkg/kubepkg: minimumKubernetesVersion 1.13.0, MinimumCNIVersion
0.8.6, CurrentCNIVersion 0.8.7 for the kubelet, minimumCRIToolsVersion = 1.13.0), which built
every 1.2x package before krel's metadata.yaml (its first kubeadm entry is ">= 1.24.0": cri-tools
>= 1.23.0, kubelet/kubectl >= 1.19.0). cri-tools 1.23.0 is the one released with 1.23.
unconfirmed: the repo listing itself (gone with packages.cloud.google.com); the later cri-tools
(1.24.2 ... 1.26.0) and kubernetes-cni (1.1.1, 1.2.0) builds it also carried are not served."""


def _pkgs() -> list[Pkg]:
    b, d, k = "base", "docker-ce", "kubernetes"
    docker_req = (
        "container-selinux >= 2:2.74",
        "libseccomp >= 2.3",
        "systemd",
        "iptables",
        "libcgroup",
        "device-mapper-libs >= 1.02.90-1",
        "docker-ce-cli",
        "tar",
        "xz",
    )
    docker_obs = ("docker-ce-selinux <= 2:17.03.0-1", "docker-engine-selinux", "docker-engine")
    docker_conf = ("docker", "docker-io", "docker-engine-cs", "docker-ee")
    kubelet_req = (
        "conntrack",
        "ebtables",
        "ethtool",
        "iproute",
        "iptables >= 1.4.21",
        "kubernetes-cni >= 0.8.7",
        "socat",
        "util-linux",
    )
    kubeadm_req = (
        "kubelet >= 1.13.0",
        "kubectl >= 1.13.0",
        "kubernetes-cni >= 0.8.6",
        "cri-tools >= 1.13.0",
    )
    return [
        # base (CentOS 7.9 versions; container-selinux really lives in extras)
        Pkg(
            "base-system",
            "7.9.2009",
            "1.el7",
            b,
            arch="noarch",
            provides=BASE_PROVIDES,
            summary="What a CentOS 7 base install provides",
        ),
        Pkg("ipset-libs", "7.1", "1.el7", b),
        Pkg("ipset", "7.1", "1.el7", b, requires=("ipset-libs(x86-64) = 7.1-1.el7",)),
        Pkg("ipvsadm", "1.27", "8.el7", b),
        Pkg("chrony", "3.4", "1.el7", b, requires=("libseccomp", "shadow-utils", "systemd")),
        Pkg(
            "yum-utils", "1.1.31", "54.el7_8", b, arch="noarch", requires=("yum >= 3.4.3", "python")
        ),
        Pkg("libnetfilter_cthelper", "1.0.0", "11.el7", b),
        Pkg("libnetfilter_cttimeout", "1.0.0", "7.el7", b),
        Pkg("libnetfilter_queue", "1.0.2", "2.el7_2", b),
        Pkg(
            "conntrack-tools",
            "1.4.4",
            "7.el7",
            b,
            provides=("conntrack = 1.0-1",),
            requires=("libnetfilter_cthelper", "libnetfilter_cttimeout", "libnetfilter_queue"),
        ),
        Pkg("socat", "1.7.3.2", "2.el7", b),
        Pkg("ebtables", "2.0.10", "16.el7", b),
        Pkg("ethtool", "4.8", "10.el7", b, epoch=2),
        Pkg("iptables-services", "1.4.21", "35.el7", b, requires=("iptables = 1.4.21-35.el7",)),
        Pkg(
            "container-selinux",
            "2.119.2",
            "1.911c772.el7_8",
            b,
            epoch=2,
            arch="noarch",
            requires=("selinux-policy", "policycoreutils"),
        ),
        # docker-ce (download.docker.com/linux/centos/7)
        Pkg(
            "containerd.io",
            "1.4.3",
            "3.1.el7",
            d,
            requires=("container-selinux >= 2:2.74",),
            provides=("containerd", "runc"),
            obsoletes=("containerd", "runc"),
        ),
        Pkg(
            "containerd.io",
            "1.4.11",
            "3.1.el7",
            d,
            requires=("container-selinux >= 2:2.74",),
            provides=("containerd", "runc"),
            obsoletes=("containerd", "runc"),
        ),
        *containerd_lines("el7"),
        Pkg("docker-ce-cli", "19.03.15", "3.el7", d, epoch=1),
        Pkg("docker-ce-cli", "20.10.9", "3.el7", d, epoch=1),
        Pkg("docker-ce-rootless-extras", "20.10.9", "3.el7", d),
        Pkg(
            "docker-ce",
            "19.03.15",
            "3.el7",
            d,
            epoch=3,
            requires=(*docker_req, "containerd.io >= 1.2.2-3"),
            obsoletes=docker_obs,
            conflicts=docker_conf,
        ),
        Pkg(
            "docker-ce",
            "20.10.9",
            "3.el7",
            d,
            epoch=3,
            requires=(*docker_req, "containerd.io >= 1.4.1", "docker-ce-rootless-extras"),
            obsoletes=docker_obs,
            conflicts=docker_conf,
        ),
        # kubernetes (packages.cloud.google.com/yum/repos/kubernetes-el7-x86_64)
        Pkg("cri-tools", "1.13.0", "0", k),
        Pkg("cri-tools", "1.19.0", "0", k),
        Pkg("cri-tools", "1.23.0", "0", k),
        Pkg("kubernetes-cni", "0.8.7", "0", k),
        *[
            Pkg(n, v, "0", k, requires=r)
            for v in LEGACY_K8S
            for n, r in (("kubectl", ()), ("kubelet", kubelet_req), ("kubeadm", kubeadm_req))
        ],
    ]


BASE_PROVIDES = (
    "bash",
    "/bin/bash",
    "/usr/bin/bash",
    "/bin/sh",
    "/usr/bin/sh",
    "sh",
    "coreutils",
    "util-linux",
    "grep",
    "sed",
    "gawk",
    "findutils",
    "tar",
    "gzip",
    "xz",
    "which",
    "hostname",
    "shadow-utils",
    "glibc",
    "libgcc",
    "systemd = 219-78.el7_9.3",
    "systemd-libs",
    "/usr/bin/systemctl",
    "iptables = 1.4.21-35.el7",
    "iproute",
    "lvm2",
    "device-mapper",
    "device-mapper-libs = 7:1.02.170-6.el7_9.5",
    "libcgroup",
    "libseccomp = 2.3.1-4.el7",
    "kmod",
    "procps-ng",
    "yum = 3.4.3-168.el7.centos",
    "rpm",
    "python = 2.7.5-89.el7",
    "/usr/bin/python",
    "/usr/bin/python3",
    "selinux-policy",
    "selinux-policy-targeted",
    "policycoreutils",
    "libselinux-utils",
    "openssh-server",
    "sudo",
    "firewalld",
    "curl",
    "filesystem",
    "setup",
    "centos-release = 7-9.2009.1.el7.centos",
)
K8S_MINORS: dict[str, dict[str, object]] = {
    "1.28": {"patches": ("1.28.0", "1.28.2"), "cri_tools": "1.28.0",
             "cni": ("1.2.0", "150500.2.1"),
             "kubeadm_requires": ("kubelet >= 1.19.0", "kubectl >= 1.19.0",
                                  "kubernetes-cni >= 1.2.0", "cri-tools >= 1.28.0")},
    "1.30": {"patches": ("1.30.0", "1.30.1"), "cri_tools": "1.30.0",
             "cni": ("1.4.0", "150500.1.1"),
             "kubeadm_requires": ("cri-tools >= 1.30.0",)},
    # 1.31-1.37 (docs/RELEASE-FACTS.md 1 and 10): the latest patch of each minor the facts name
    # (1.37.0 itself is known to exist, its constants unconfirmed). cri-tools: the release of
    # the minor, else the newest one before the build (krel's GetCRIToolsVersion; 1.37.0 was
    # built when v1.36.0 was the newest tag: unconfirmed). kubernetes-cni: unconfirmed guesses
    # (the plugins release of that time). kubeadm: ">= 1.30.0 < 1.32.0" cri-tools >= 1.30.0,
    # nothing from 1.32 (builds before 2026-04-24 still carried cri-tools >= 1.30.0: which of
    # these did is unconfirmed). kubelet: built after 2025-09-06 (commit d2a7ae37), so no
    # iproute/socat/ethtool/ebtables/conntrack: unconfirmed for which patch that first held.
    "1.31": {"patches": ("1.31.14",), "cri_tools": "1.31.1", "cni": ("1.5.1", "150500.1.1"),
             "kubeadm_requires": ("cri-tools >= 1.30.0",), "kubelet_requires": "new"},
    "1.33": {"patches": ("1.33.13",), "cri_tools": "1.33.0", "cni": ("1.6.2", "150500.1.1"),
             "kubeadm_requires": (), "kubelet_requires": "new"},
    "1.35": {"patches": ("1.35.7",), "cri_tools": "1.35.0", "cni": ("1.7.1", "150500.1.1"),
             "kubeadm_requires": (), "kubelet_requires": "new"},
    "1.37": {"patches": ("1.37.0",), "cri_tools": "1.36.0", "cni": ("1.8.0", "150500.1.1"),
             "kubeadm_requires": (), "kubelet_requires": "new"},
}
"""pkgs.k8s.io's per-minor repos as Aliyun mirrors them (`kubernetes-new/core/stable/v1.NN/rpm/`,
FIELD-NOTES "The modern stack"). Release strings are OBS's (`150500.1.1`). kubeadm's Requires:
kubernetes/release cmd/krel/templates/latest/metadata.yaml (">= 1.28.0 < 1.30.0": kubelet,
kubectl >= 1.19.0, kubernetes-cni >= 1.2.0, cri-tools >= 1.28.0; ">= 1.30.0 < 1.32.0": only
cri-tools >= 1.30.0). kubelet's: the same repo's cmd/krel/templates/latest/rpm/kubelet/kubelet.spec
(iptables >= 1.4.21, kubernetes-cni >= 1.2.0 from metadata.yaml ">= 1.28.0", iproute, socat,
util-linux, ethtool, ebtables, conntrack); a later template (latest/kubelet/kubelet.spec) keeps
only util-linux + kubernetes-cni and makes iptables a Recommends: unconfirmed which template built
these patch versions, and unconfirmed the kubernetes-cni/cri-tools releases. The binaries are
today's kubeadm/kubelet/kubectl stand-ins (their version texts follow the installed package,
`rpm -q`); a later piece makes them version-true."""
K8S_KUBELET_REQUIRES = ("iptables >= 1.4.21", "kubernetes-cni >= 1.2.0", "iproute", "socat",
                        "util-linux", "ethtool", "ebtables", "conntrack")
# kubelet.spec after kubernetes/release d2a7ae37 (2025-09-06): iptables, util-linux and
# metadata.yaml's kubernetes-cni >= 1.2.0 (docs/RELEASE-FACTS.md 10)
K8S_KUBELET_REQUIRES_NEW = ("iptables >= 1.4.21", "kubernetes-cni >= 1.2.0", "util-linux")
OBS_RELEASE = "150500.1.1"


def k8s_repo(minor: str) -> str:
    """The mirror directory of one minor's repo (`<base>kubernetes-new/core/stable/v1.NN/rpm/`)."""
    return f"kubernetes-new/core/stable/v{minor}/rpm"


def _k8s_minors() -> list[Pkg]:
    out: list[Pkg] = []
    for minor, m in K8S_MINORS.items():
        r = k8s_repo(minor)
        cni_v, cni_r = m["cni"]  # type: ignore[misc]
        out += [Pkg("cri-tools", str(m["cri_tools"]), OBS_RELEASE, r,
                    summary="Command-line utility for interacting with a container runtime"),
                Pkg("kubernetes-cni", cni_v, cni_r, r,
                    summary="Binaries required to provision kubernetes container networking")]
        for v in m["patches"]:  # type: ignore[attr-defined]
            out += [
                Pkg("kubectl", v, OBS_RELEASE, r),
                Pkg("kubelet", v, OBS_RELEASE, r, requires=K8S_KUBELET_REQUIRES_NEW
                    if m.get("kubelet_requires") == "new" else K8S_KUBELET_REQUIRES),
                Pkg("kubeadm", v, OBS_RELEASE, r,
                    requires=m["kubeadm_requires"]),  # type: ignore[arg-type]
            ]
    return out


# haproxy.spec's %pre (CentOS/Rocky): the haproxy user and group (uid/gid 188) its config's
# `user haproxy` / `group haproxy` name; the check (haproxy -c) resolves them
HAPROXY_PRE = ("getent group haproxy >/dev/null || groupadd -g 188 -r haproxy\n"
               "getent passwd haproxy >/dev/null || useradd -u 188 -g haproxy -d "
               "/var/lib/haproxy -s /sbin/nologin -r haproxy\nexit 0\n")


def _haproxy() -> list[Pkg]:
    """EL's haproxy (a local proxy for the API servers, HA control planes): EL7 base 1.5.18,
    CentOS 8.5 AppStream 1.8.27, Rocky 9.4 AppStream 2.4.22. Files: lab/payloads/haproxy
    (the stand-in, the unit hooks) and lab/payloads/haproxy@elN (the flavour's unit, config and
    /etc/sysconfig/haproxy). unconfirmed: the exact releases; Requires cut to what the lab's
    base provides (the real ones also name openssl-libs, pcre, ...)."""
    def one(version: str, release: str, repo: str, el9: bool = False) -> Pkg:
        return Pkg("haproxy", version, release, repo, requires=("shadow-utils", "systemd"),
                   summary="HAProxy reverse proxy for high availability environments",
                   pre=HAPROXY_PRE,
                   dirs=("/var/lib/haproxy",) + (("/etc/haproxy/conf.d",) if el9 else ()))
    return [one("1.5.18", "9.el7", "base"),
            one("1.8.27", "2.el8", tree("el8", "AppStream")),
            one("2.4.22", "3.el9_3", tree("el9", "AppStream"), el9=True)]


def _keepalived() -> list[Pkg]:
    """EL's keepalived (the API's virtual IP, load_balancer haproxy-keepalived): EL7 base
    1.3.5-19.el7 (seen in CentOS 7.9 rpm -qa output), CentOS 8.5 AppStream 2.1.5-6.el8 (seen
    in a `dnf info` from AppStream), Rocky 9.4 AppStream 2.2.8-3.el9 (unconfirmed). Files:
    lab/payloads/keepalived (the stand-in, its VRRP simulation, the unit hooks,
    /etc/sysconfig/keepalived) and lab/payloads/keepalived@elN (the unit, the stock config).
    Requires cut to what the lab's base provides (the real ones also name net-snmp-libs,
    libnl3, ...)."""
    def one(version: str, release: str, repo: str) -> Pkg:
        return Pkg("keepalived", version, release, repo, requires=("systemd",),
                   summary="High Availability monitor built upon LVS, VRRP and service "
                           "pollers")
    return [one("1.3.5", "19.el7", "base"),
            one("2.1.5", "6.el8", tree("el8", "AppStream")),
            one("2.2.8", "3.el9", tree("el9", "AppStream"))]


PACKAGES: list[Pkg] = (_pkgs() + _el8() + _el9() + _k8s_minors() + _haproxy()
                       + _keepalived())
REPOS: tuple[str, ...] = (*REPOS_EL7, *[tree(o, r) for o in ("el8", "el9")
                                         for r in ("BaseOS", "AppStream", "extras", "docker-ce")],
                          *[k8s_repo(m) for m in K8S_MINORS])
REPO_KEY = ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nlab stand-in key (gpgcheck is off in the "
            "lab)\n-----END PGP PUBLIC KEY BLOCK-----\n")


def tree_files(top: Path) -> list[tuple[str, Path]]:
    """(path in the package, source) for every file and empty directory under TOP."""
    out: list[tuple[str, Path]] = []
    if top.is_dir():
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            rel = Path(dirpath).relative_to(top)
            if not dirs and not files and rel != Path("."):
                out.append(("/" + str(rel), Path(dirpath)))
            for f in sorted(files):
                out.append(("/" + str(rel / f).lstrip("./"), Path(dirpath) / f))
    return out


def payload_files(name: str, os_name: str = "el7") -> list[tuple[str, Path]]:
    """(path in the package, source file) for every file and empty directory of a payload
    (its flavour's overlay winning: payload_dirs)."""
    merged: dict[str, Path] = {}
    for top in payload_dirs(name, os_name):
        merged.update(tree_files(top))
    return sorted(merged.items())


def content_hash() -> str:
    """Hash of the declarations and every payload byte and mode."""
    h = hashlib.sha256(f"format {FORMAT}\n".encode())
    h.update(json.dumps([asdict(p) for p in PACKAGES], sort_keys=True).encode())
    h.update(Path(__file__).read_bytes())
    for name in sorted({p.name for p in PACKAGES}):
        for os_name in sorted({p.os for p in PACKAGES if p.name == name}):
            for rel, src in payload_files(name, os_name):
                h.update(f"{name}@{os_name}\0{rel}\0{os.lstat(src).st_mode:o}\0".encode())
                if src.is_symlink():
                    h.update(os.readlink(src).encode())
                elif src.is_file():
                    h.update(src.read_bytes())
        for rel, host in sorted(HOST_FILES.get(name, {}).items()):
            h.update(f"{name}\0{rel}\0".encode())
            if os.path.isfile(host):
                h.update(Path(host).read_bytes())
    return h.hexdigest()[:16]


def _file_line(rel: str, src: Path) -> str:
    quoted = f'"{rel}"'
    if src.is_dir() and not src.is_symlink():
        return f"%dir {quoted}"
    if rel.startswith("/etc/"):
        return f"%config(noreplace) {quoted}"
    if rel.startswith("/usr/") and not src.is_symlink() and os.access(src, os.X_OK):
        return f"%attr(0755,root,root) {quoted}"
    return quoted


def spec_text(p: Pkg, payload: Path | None) -> str:
    """The spec file of one package version (PAYLOAD: its build copy, whose files it lists)."""
    files = tree_files(payload) if payload is not None else []
    lines = [
        f"Name: {p.name}",
        f"Version: {p.version}",
        f"Release: {p.release}",
        f"Summary: {p.summary or p.name + ' (lab stand-in)'}",
        "License: Lab",
        f"BuildArch: {p.arch}",
        "AutoReqProv: no",
    ]
    if p.epoch:
        lines.append(f"Epoch: {p.epoch}")
    lines += [f"Requires: {r}" for r in p.requires]
    lines += [f"Provides: {r}" for r in p.provides]
    lines += [f"Obsoletes: {r}" for r in p.obsoletes]
    lines += [f"Conflicts: {r}" for r in p.conflicts]
    lines += [
        "",
        "%description",
        f"Lab stand-in for {p.name} {p.evr}.",
        "",
        "%install",
        "mkdir -p %{buildroot}",
    ]
    if payload is not None:
        lines.append(f"cp -a {payload}/. %{{buildroot}}/")
    lines.append("mkdir -p %{buildroot}/usr/lib/lab/versions")
    lines.append(f"echo {p.evr} > %{{buildroot}}/usr/lib/lab/versions/{p.name}")
    lines += [f'mkdir -p "%{{buildroot}}{d}"' for d in p.dirs]
    if p.pre:
        lines += ["", "%pre", p.pre.rstrip("\n")]
    lines += ["", "%files", "%defattr(0644,root,root,0755)", f'"/usr/lib/lab/versions/{p.name}"']
    lines += [f'%dir "{d}"' for d in p.dirs]
    lines += [_file_line(rel, src) for rel, src in files]
    return "\n".join(lines) + "\n"


def _build_one(p: Pkg, work: Path, out: Path) -> Path:
    top = work / f"{p.repo.replace('/', '_')}-{p.name}-{p.version}"
    (top / "SPECS").mkdir(parents=True)
    payload = None
    trees = payload_dirs(p.name, p.os)
    extra = {rel: host for rel, host in HOST_FILES.get(p.name, {}).items()
             if os.path.isfile(host)}
    if trees or extra:
        payload = top / "payload"
        payload.mkdir(parents=True)
        for tree in trees:
            shutil.copytree(tree, payload, symlinks=True, dirs_exist_ok=True)
        for rel, host in extra.items():
            dest = payload / rel.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(host, dest)
            os.chmod(dest, 0o755)
    spec = top / "SPECS" / f"{p.name}.spec"
    spec.write_text(spec_text(p, payload))
    cmd = [
        "rpmbuild",
        "-bb",
        "--quiet",
        "--define",
        f"_topdir {top}",
        "--define",
        f"_rpmdir {out}",
        "--define",
        "_build_id_links none",
        "--define",
        "debug_package %{nil}",
        "--define",
        "__os_install_post %{nil}",
        "--define",
        f"_dbpath {top}/db",
        "--define",
        "_binary_payload w2.xzdio",
        "--target",
        p.arch,
        str(spec),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    rpm = out / p.arch / p.filename
    if res.returncode != 0 or not rpm.exists():
        raise RuntimeError(f"rpmbuild {p.name}-{p.evr} failed:\n{res.stdout}\n{res.stderr}")
    return rpm


class Mirror:
    """Build, cache and serve the lab's yum repos (see lab/CONTRACT.md)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.cache = self.root / "mirror"
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.url: str | None = None
        self.dir: Path | None = None

    def build(self) -> Path:
        """Build the repos (or reuse the cached build); return the directory holding them."""
        digest = content_hash()
        target = self.cache / digest
        if (target / ".done").exists():
            self.dir = target
            return target
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / ".done").exists():
                self._build(target)
        self.dir = target
        return target

    def _build(self, target: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=self.cache))
        try:
            outs = {r: work / "out" / r for r in REPOS}
            for o in outs.values():
                o.mkdir(parents=True)
            with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
                list(pool.map(lambda p: _build_one(p, work / "build", outs[p.repo]), PACKAGES))
            for repo, o in outs.items():
                res = subprocess.run(
                    ["createrepo_c", "--quiet", "--no-database", str(o)],
                    capture_output=True,
                    text=True,
                )
                if res.returncode != 0:
                    raise RuntimeError(f"createrepo_c {repo} failed:\n{res.stderr}")
                if repo.startswith("kubernetes-new/"):
                    (o / "repodata" / "repomd.xml.key").write_text(REPO_KEY)
            shutil.rmtree(work / "build")
            final = work / "out"
            (final / ".done").write_text(content_hash() + "\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(final, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def rpm_path(self, name: str, version: str | None = None, os: str = "el7") -> Path:
        """The built RPM of a package of flavour `os`'s repos (its newest version unless
        version is given; kubernetes/ serves every flavour)."""
        base = self.dir or self.build()
        cands = [
            p
            for p in PACKAGES
            if p.name == name
            and (p.os == os or p.repo == "kubernetes")
            and (version is not None or not p.repo.startswith("kubernetes-new/"))
            and (version is None or version in (p.version, p.evr, f"{p.version}-{p.release}"))
        ]
        if not cands:
            raise KeyError(f"no package {name} {version or ''} in the lab mirror".strip())
        p = cands[-1]
        return base / p.repo / p.arch / p.filename

    def start(self) -> str:
        """Serve the repos on 127.0.0.1 (a free port); return the base URL."""
        base = self.dir or self.build()
        if self.proc is not None and self.proc.poll() is None:
            return self.url  # type: ignore[return-value]
        for _ in range(20):
            port = _free_port()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    str(base),
                    str(port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if _wait_port(port, self.proc):
                self.pid = self.proc.pid
                self.url = f"http://127.0.0.1:{port}/"
                return self.url
            self.stop()
        raise RuntimeError("lab mirror: could not start python3 -m http.server on 127.0.0.1")

    def stop(self) -> None:
        """Stop the HTTP server (by PID)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
        elif self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        self.proc = None
        self.pid = None
        self.url = None

    def __enter__(self) -> Mirror:
        self.build()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def main() -> None:
    """`python -m lab.mirror [ROOT]`: build and print where."""
    root = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(os.environ.get("BOOTSTRAP_LAB_ROOT", "/var/tmp/bootstrap-lab"))
    )
    t = time.monotonic()
    print(Mirror(root).build(), f"({time.monotonic() - t:.1f} s)")


if __name__ == "__main__":
    main()
