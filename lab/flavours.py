"""Node flavours: what differs between the lab's EL7, EL8 and EL9 nodes, as data, in one place.

One row per flavour (`FLAVOURS`). The layer (lab/layer.py) builds one node image per flavour
from its row, the node's init (lab/node.py) mounts what the row says (kernel release, cgroup
version), the stand-ins read the row's kernel facts from `/usr/lib/lab/flavour.json` in the
node, and the mirror (lab/mirror.py) serves each flavour's own repo trees.

Sources (checked): os-release texts of CentOS Linux 8 (8.3 and later print `VERSION="8"`) and
Rocky Linux 9.4 (`cat /etc/os-release` outputs published with `uname -a` on those releases,
which also give the kernels' `#1 SMP ...` version strings); `Rocky Linux release 9.4 (Blue
Onyx)` in /etc/rocky-release; kmod v22+ `tools/modprobe.c` ("Module %s not found in directory
%s", kmod 25 on EL8, 28 on EL9; kmod 20 on EL7 prints "Module %s not found."); libselinux
`load_policy.c` / `enabled.c` (see `SELINUX_NOTE`); docker/containerd-packaging
`rpm/containerd.spec` (`Provides: runc` only when `rhel < 8`).
Not confirmed at a source (marked `# unconfirmed` where they are declared): the release numbers
of most base-install packages below (they follow the release's package set as remembered, and
only their names, not their exact builds, are relied on by the lab's tests).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

NAMES = ("el7", "el8", "el9")
DEFAULT = "el7"


@dataclass(frozen=True)
class BasePkg:
    """One package of a release's minimal install, recorded in the node's rpmdb (no files)."""

    name: str
    version: str
    release: str
    epoch: int = 0
    arch: str = "x86_64"
    provides: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    obsoletes: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()

    @property
    def evr(self) -> str:
        vr = f"{self.version}-{self.release}"
        return f"{self.epoch}:{vr}" if self.epoch else vr


@dataclass(frozen=True)
class Repo:
    """One repo of a node's repo file: its id, its name, and its tree on the lab mirror."""

    id: str
    name: str
    tree: str  # relative to the mirror's URL, e.g. "el8/BaseOS/x86_64/os/"


@dataclass(frozen=True)
class Flavour:
    """Everything that differs between two node flavours."""

    name: str
    summary: str
    os_release: str  # /usr/lib/os-release (and /etc/os-release -> ../usr/lib/os-release)
    release_file: str  # /etc/<release_file> holds `release_text`
    release_text: str
    release_links: tuple[str, ...]  # /etc/<link> -> <release_file> (redhat-release, ...)
    system_release_cpe: str
    kernel: str  # uname -r, /proc/sys/kernel/osrelease, sysctl kernel.osrelease
    kernel_version: str  # uname -v
    cgroup: int  # 1: a tmpfs at /sys/fs/cgroup (v1 layout); 2: cgroup2 mounted read-only
    releasever: str
    systemd: int  # systemctl's version (219: no `--value`)
    kmod: int  # modprobe's version: 22+ names the module directory when a module is missing
    dnf: bool  # `dnf` exists as a command (and `yum` is dnf, not yum 3)
    base: tuple[BasePkg, ...]  # the minimal install's packages recorded in the rpmdb
    base_provides: tuple[str, ...]  # what the lab's one catch-all package provides besides
    repo_files: dict[str, tuple[Repo, ...]]  # /etc/yum.repos.d/<file>: its repos
    removed_modules: tuple[str, ...]  # el7 modules this kernel does not have
    module_deps: dict[str, list[str]]  # modules whose dependencies differ from el7's
    conntrack_module: str  # the conntrack module kube-proxy's IPVS mode loads
    firewalld_conf: str | None  # /etc/firewalld/firewalld.conf (None: the layer writes none)
    docker_release: str  # the dist tag of download.docker.com's builds (el7, el8, el9)
    boot: tuple[str, ...] = field(default=())  # what the lab's boot runs, in order (docs/tests)
    podman: tuple[BasePkg, ...] = ()  # the podman variant's extra packages (same as the mirror's)
    tc_package: str = "iproute-tc"  # the package with /usr/sbin/tc (kubeadm preflight wants tc)
    selinux_runtime_disable: bool = True  # SELINUX=disabled disables the kernel's SELinux
    # (False on EL9: see SELINUX_NOTE)

    @property
    def initscripts(self) -> bool:
        """`initscripts` is installed: it ships the unit that runs /etc/sysconfig/modules."""
        return any(p.name == "initscripts" for p in self.base)

    def modules(self) -> dict[str, list[str]]:
        """Known loadable modules -> their dependencies, for this kernel."""
        mods = {k: list(v) for k, v in _el7_modules().items() if k not in self.removed_modules}
        mods.update({k: list(v) for k, v in self.module_deps.items()})
        return mods

    def node_facts(self) -> dict:
        """What the stand-ins read in the node (/usr/lib/lab/flavour.json)."""
        return {"name": self.name, "kernel": self.kernel, "kernel_version": self.kernel_version,
                "cgroup": self.cgroup, "kmod": self.kmod, "dnf": self.dnf,
                "initscripts": self.initscripts, "modules": self.modules(),
                "conntrack_module": self.conntrack_module,
                "selinux_runtime_disable": self.selinux_runtime_disable}

    def repo_file_text(self, mirror_url: str, filename: str) -> str:
        """A repo file of the node pointing at the lab mirror's trees of this flavour."""
        out = [f"# {filename} (lab mirror: {self.summary})", ""]
        for repo in self.repo_files[filename]:
            out += [f"[{repo.id}]", f"name={repo.name}", f"baseurl={mirror_url}{repo.tree}",
                    "gpgcheck=0", "enabled=1", ""]
        return "\n".join(out)


SELINUX_NOTE = """What `SELINUX=disabled` in /etc/selinux/config shows after boot (getenforce
`Disabled`, no /sys/fs/selinux/enforce) on every flavour. On EL9 the kernel no longer supports
the runtime disable, so the kernel keeps SELinux enabled with no policy loaded (RHEL 9 documents
`selinux=0` on the kernel command line to really disable it); libselinux's
`selinux_init_load_policy` (load_policy.c, libselinux 3.x) then sets permissive, unmounts
selinuxfs and loads no policy, so `is_selinux_enabled()` (selinuxfs mounted) is false and
getenforce prints `Disabled` as on EL7. The difference is in the kernel only: the lab records it
in the node's /run/lab/selinux-kernel (`enabled-no-policy` on el9 with SELINUX=disabled)."""


def _el7_modules() -> dict[str, list[str]]:
    """The stand-ins' own module table (a 3.10 el7 kernel), from lab/standins/labcommon.py."""
    global _EL7
    if _EL7 is None:
        path = Path(__file__).resolve().parent / "standins" / "labcommon.py"
        spec = importlib.util.spec_from_file_location("_lab_labcommon", path)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        _EL7 = dict(mod.EL7_MODULES)
    return _EL7


_EL7: dict[str, list[str]] | None = None

# What the lab's catch-all package provides on every flavour: file paths and names of the base
# install that no BasePkg row lists (rpmbuild adds `Requires: /bin/bash`, ...).
FILE_PROVIDES = ("/bin/bash", "/usr/bin/bash", "/bin/sh", "/usr/bin/sh", "sh", "/usr/bin/python",
                 "/usr/bin/python3", "/usr/bin/systemctl", "/usr/sbin/modprobe")

# ---- el7: CentOS Linux 7.9.2009, today's node ------------------------------------------------

OS_RELEASE_EL7 = """\
NAME="CentOS Linux"
VERSION="7 (Core)"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="7"
PRETTY_NAME="CentOS Linux 7 (Core)"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:centos:centos:7"
HOME_URL="https://www.centos.org/"
BUG_REPORT_URL="https://bugs.centos.org/"

CENTOS_MANTISBT_PROJECT="CentOS-7"
CENTOS_MANTISBT_PROJECT_VERSION="7"
REDHAT_SUPPORT_PRODUCT="centos"
REDHAT_SUPPORT_PRODUCT_VERSION="7"

"""

# The el7 rpmdb as it always was: one catch-all package providing the base install's names,
# plus chrony, firewalld, initscripts and iproute (their own packages, so `rpm -q` finds them).
EL7_PROVIDES = (
    "bash", "/bin/bash", "/usr/bin/bash", "/bin/sh", "/usr/bin/sh", "sh", "systemd",
    "systemd-libs", "systemd-sysv", "/usr/bin/systemctl", "iptables", "ethtool",
    "ebtables", "lvm2", "device-mapper", "device-mapper-persistent-data", "coreutils",
    "util-linux", "grep", "sed", "gawk", "findutils", "tar", "gzip", "xz", "which", "hostname",
    "less", "shadow-utils", "glibc", "glibc-common", "libgcc", "kmod", "procps-ng",
    "/usr/sbin/modprobe", "e2fsprogs", "xfsprogs", "openssh", "openssh-server",
    "openssh-clients", "sudo", "yum", "rpm", "python", "/usr/bin/python", "/usr/bin/python3",
    "selinux-policy", "selinux-policy-targeted", "policycoreutils", "libselinux-utils",
    "libseccomp", "curl", "iputils", "ca-certificates", "openssl", "cronie",
    "crontabs", "NetworkManager", "audit", "filesystem", "setup", "basesystem", "centos-release",
    "redhat-release", "system-release", "kernel", "dracut", "passwd", "tzdata", "pam",
)
EL7 = Flavour(
    name="el7",
    summary="CentOS Linux 7.9.2009",
    os_release=OS_RELEASE_EL7,
    release_file="centos-release",
    release_text="CentOS Linux release 7.9.2009 (Core)\n",
    release_links=("redhat-release", "system-release"),
    system_release_cpe="cpe:/o:centos:centos:7\n",
    kernel="3.10.0-1160.el7.x86_64",
    kernel_version="#1 SMP Mon Oct 19 16:18:59 UTC 2020",
    cgroup=1,
    releasever="7",
    systemd=219,
    kmod=20,
    dnf=False,
    base=(
        BasePkg("centos-base-system", "7.9.2009", "1.el7", arch="noarch",
                provides=EL7_PROVIDES),
        BasePkg("chrony", "3.4", "1.el7"),
        BasePkg("firewalld", "0.6.3", "13.el7_9", arch="noarch"),
        BasePkg("initscripts", "9.49.53", "1.el7_9.1"),  # unconfirmed release
        # its own package, as on CentOS 7 (`rpm -q iproute`): tc's package there
        BasePkg("iproute", "4.11.0", "30.el7"),  # unconfirmed release
    ),
    base_provides=(),
    repo_files={"CentOS-Base.repo": (Repo("base", "CentOS-$releasever - Base", "base/"),)},
    removed_modules=(),
    module_deps={},
    conntrack_module="nf_conntrack_ipv4",
    firewalld_conf=None,
    docker_release="el7",
    tc_package="iproute",  # CentOS 7's iproute has tc; the lab's el7 node has none (as always)
    boot=("systemd-modules-load: /etc/modules-load.d/*.conf",
          "rhel-loadmodules.service (initscripts): /etc/sysconfig/modules/*.modules",
          "systemd-sysctl: sysctl --system", "swapon -a", "SELinux mode from the config",
          "enabled units"),
)

# ---- el8: CentOS Linux 8.5.2111, the seed's system ---------------------------------------------

OS_RELEASE_EL8 = """\
NAME="CentOS Linux"
VERSION="8"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="8"
PLATFORM_ID="platform:el8"
PRETTY_NAME="CentOS Linux 8"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:centos:centos:8"
HOME_URL="https://centos.org/"
BUG_REPORT_URL="https://bugs.centos.org/"
CENTOS_MANTISBT_PROJECT="CentOS-8"
CENTOS_MANTISBT_PROJECT_VERSION="8"
"""

FIREWALLD_CONF = """\
# firewalld config file

# default zone
# The default zone used if an empty zone string is used.
# Default: public
DefaultZone=public

# FirewallBackend
# Selects the firewall backend implementation.
# Choices are:
#	- nftables (default)
#	- iptables (iptables, ip6tables, ebtables and ipset)
FirewallBackend=nftables
"""

# Base-install packages of CentOS Linux 8.5.2111. unconfirmed: the releases (names are the
# release's own; iproute 5.12.0-4.el8 was seen in a CentOS 8 mirror listing).
EL8_BASE = (
    BasePkg("centos-linux-release", "8.5", "1.2111.el8", arch="noarch",
            provides=("centos-release = 8.5-1.2111.el8", "redhat-release = 8.5-1.2111.el8",
                      "system-release = 8.5-1.2111.el8", "system-release(releasever) = 8")),
    BasePkg("kernel", "4.18.0", "348.7.1.el8_5"),
    BasePkg("bash", "4.4.20", "2.el8"),
    BasePkg("coreutils", "8.30", "12.el8"),
    BasePkg("util-linux", "2.32.1", "28.el8"),
    BasePkg("glibc", "2.28", "164.el8"),
    BasePkg("systemd", "239", "51.el8_5.2", provides=("systemd-sysv",)),
    BasePkg("kmod", "25", "18.el8"),
    BasePkg("iproute", "5.12.0", "4.el8"),
    BasePkg("iptables", "1.8.4", "20.el8"),
    BasePkg("iptables-libs", "1.8.4", "20.el8"),
    BasePkg("nftables", "0.9.3", "21.el8", epoch=1),
    BasePkg("firewalld", "0.9.3", "7.el8", arch="noarch"),
    BasePkg("chrony", "4.1", "1.el8"),
    BasePkg("initscripts", "10.00.15", "1.el8"),
    BasePkg("NetworkManager", "1.32.10", "4.el8", epoch=1),
    BasePkg("openssh-server", "8.0p1", "10.el8"),
    BasePkg("sudo", "1.8.29", "7.el8"),
    BasePkg("dnf", "4.7.0", "4.el8", arch="noarch"),
    BasePkg("yum", "4.7.0", "4.el8", arch="noarch"),
    BasePkg("rpm", "4.14.3", "19.el8"),
    BasePkg("platform-python", "3.6.8", "41.el8"),
    BasePkg("selinux-policy", "3.14.3", "80.el8_5.2", arch="noarch"),
    BasePkg("selinux-policy-targeted", "3.14.3", "80.el8_5.2", arch="noarch"),
    BasePkg("policycoreutils", "2.9", "16.el8"),
    BasePkg("libselinux-utils", "2.9", "5.el8"),
    BasePkg("libseccomp", "2.5.1", "1.el8"),
    BasePkg("lvm2", "2.03.12", "10.el8", epoch=8),
    BasePkg("device-mapper", "1.02.177", "10.el8", epoch=8),
    BasePkg("device-mapper-libs", "1.02.177", "10.el8", epoch=8),
    BasePkg("tar", "1.30", "5.el8", epoch=2),
    BasePkg("xz", "5.2.4", "3.el8"),
    BasePkg("xfsprogs", "5.0.0", "9.el8"),
    BasePkg("shadow-utils", "4.6", "14.el8", epoch=2),
    BasePkg("procps-ng", "3.3.15", "6.el8"),
    BasePkg("ethtool", "5.8", "7.el8", epoch=2),
    BasePkg("hostname", "3.20", "6.el8"),
    BasePkg("cronie", "1.5.2", "6.el8"),
    BasePkg("curl", "7.61.1", "22.el8"),
    BasePkg("which", "2.21", "16.el8"),
    BasePkg("libcgroup", "0.41", "19.el8"),
)

# The podman variant (AppStream's container-tools module of 8.5). unconfirmed: the module
# builds' releases; the relations are the ones that matter here: podman and buildah need runc,
# podman-docker needs podman and conflicts with docker, containerd.io obsoletes runc.
EL8_PODMAN = (
    BasePkg("containers-common", "1", "2.module_el8.5.0+890+6b136101", epoch=2, arch="noarch"),
    BasePkg("runc", "1.0.2", "1.module_el8.5.0+911+f19012f9", provides=("oci-runtime",)),
    BasePkg("podman", "3.3.1", "9.module_el8.5.0+988+b1f0b741",
            requires=("runc >= 1.0.0-57", "containers-common >= 2:1-2")),
    BasePkg("buildah", "1.22.3", "2.module_el8.5.0+911+f19012f9",
            requires=("runc >= 1.0.0-26", "containers-common >= 2:1-2")),
    BasePkg("podman-docker", "3.3.1", "9.module_el8.5.0+988+b1f0b741", arch="noarch",
            requires=("podman = 3.3.1-9.module_el8.5.0+988+b1f0b741",),
            provides=("docker = 3.3.1-9.module_el8.5.0+988+b1f0b741",),
            conflicts=("docker", "docker-latest", "docker-ce", "docker-ee", "moby-engine")),
)

EL8 = Flavour(
    name="el8",
    summary="CentOS Linux 8.5.2111",
    os_release=OS_RELEASE_EL8,
    release_file="centos-release",
    release_text="CentOS Linux release 8.5.2111\n",
    release_links=("redhat-release", "system-release"),
    system_release_cpe="cpe:/o:centos:centos:8\n",
    kernel="4.18.0-348.7.1.el8_5.x86_64",
    kernel_version="#1 SMP Wed Dec 22 13:25:12 UTC 2021",
    cgroup=1,
    releasever="8",
    systemd=239,
    kmod=25,
    dnf=True,
    base=EL8_BASE,
    base_provides=FILE_PROVIDES,
    repo_files={
        "CentOS-Linux-BaseOS.repo": (
            Repo("baseos", "CentOS Linux $releasever - BaseOS", "el8/BaseOS/x86_64/os/"),),
        "CentOS-Linux-AppStream.repo": (
            Repo("appstream", "CentOS Linux $releasever - AppStream",
                 "el8/AppStream/x86_64/os/"),),
        "CentOS-Linux-Extras.repo": (
            Repo("extras", "CentOS Linux $releasever - Extras", "el8/extras/x86_64/os/"),),
    },
    # 4.18 (RHEL 8.3+): nf_conntrack_ipv4/ipv6 merged into nf_conntrack, which now needs both
    # defrag modules.
    removed_modules=("nf_conntrack_ipv4", "nf_conntrack_ipv6"),
    module_deps={"nf_conntrack": ["nf_defrag_ipv4", "nf_defrag_ipv6", "libcrc32c"],
                 "ip_vs": ["nf_conntrack", "nf_defrag_ipv6", "libcrc32c"]},
    conntrack_module="nf_conntrack",
    firewalld_conf=FIREWALLD_CONF,
    docker_release="el8",
    boot=("systemd-modules-load: /etc/modules-load.d/*.conf",
          "loadmodules.service (initscripts 10.x; unconfirmed name): "
          "/etc/sysconfig/modules/*.modules",
          "systemd-sysctl: sysctl --system", "swapon -a", "SELinux mode from the config",
          "enabled units"),
    podman=EL8_PODMAN,
)

# ---- el9: Rocky Linux 9.4 (Blue Onyx) ----------------------------------------------------------

OS_RELEASE_EL9 = """\
NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
ANSI_COLOR="0;32"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:rocky:rocky:9::baseos"
HOME_URL="https://rockylinux.org/"
BUG_REPORT_URL="https://bugs.rockylinux.org/"
SUPPORT_END="2032-05-31"
ROCKY_SUPPORT_PRODUCT="Rocky-Linux-9"
ROCKY_SUPPORT_PRODUCT_VERSION="9.4"
REDHAT_SUPPORT_PRODUCT="Rocky Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.4"
"""

# Base-install packages of Rocky Linux 9.4 (the releases of RHEL 9.4's builds). unconfirmed:
# the releases. No initscripts: a minimal EL9 install does not have it.
EL9_BASE = (
    BasePkg("rocky-release", "9.4", "1.7.el9", arch="noarch",
            provides=("redhat-release = 9.4-1.7.el9", "system-release = 9.4-1.7.el9",
                      "system-release(releasever) = 9", "centos-release = 9.4-1.7.el9")),
    BasePkg("kernel", "5.14.0", "427.13.1.el9_4"),
    BasePkg("bash", "5.1.8", "9.el9"),
    BasePkg("coreutils", "8.32", "35.el9"),
    BasePkg("util-linux", "2.37.4", "18.el9"),
    BasePkg("glibc", "2.34", "100.el9"),
    BasePkg("systemd", "252", "32.el9_4", provides=("systemd-sysv",)),
    BasePkg("kmod", "28", "9.el9"),
    BasePkg("iproute", "6.2.0", "6.el9_4"),
    # iptables.spec's nft subpackage also provides ebtables (kubelet's legacy rpm needs it)
    BasePkg("iptables-nft", "1.8.10", "2.el9", provides=("iptables = 1.8.10-2.el9",
                                                         "ebtables")),
    BasePkg("iptables-libs", "1.8.10", "2.el9"),
    BasePkg("nftables", "1.0.9", "1.el9", epoch=1),
    BasePkg("firewalld", "1.3.4", "1.el9", arch="noarch"),
    BasePkg("chrony", "4.5", "1.el9"),
    BasePkg("NetworkManager", "1.46.0", "8.el9_4", epoch=1),
    BasePkg("openssh-server", "8.7p1", "38.el9"),
    BasePkg("sudo", "1.9.5p2", "10.el9_3"),
    BasePkg("dnf", "4.14.0", "9.el9", arch="noarch"),
    BasePkg("yum", "4.14.0", "9.el9", arch="noarch"),
    BasePkg("rpm", "4.16.1.3", "29.el9"),
    BasePkg("python3", "3.9.18", "3.el9"),
    BasePkg("selinux-policy", "38.1.35", "2.el9_4", arch="noarch"),
    BasePkg("selinux-policy-targeted", "38.1.35", "2.el9_4", arch="noarch"),
    BasePkg("policycoreutils", "3.6", "2.1.el9"),
    BasePkg("libselinux-utils", "3.6", "1.el9"),
    BasePkg("libseccomp", "2.5.2", "2.el9"),
    BasePkg("lvm2", "2.03.23", "2.el9", epoch=9),
    BasePkg("device-mapper", "1.02.197", "2.el9", epoch=9),
    BasePkg("device-mapper-libs", "1.02.197", "2.el9", epoch=9),
    BasePkg("tar", "1.34", "6.el9_1", epoch=2),
    BasePkg("xz", "5.2.5", "8.el9_0"),
    BasePkg("xfsprogs", "6.3.0", "1.el9"),
    BasePkg("shadow-utils", "4.9", "8.el9", epoch=2),
    BasePkg("procps-ng", "3.3.17", "14.el9"),
    BasePkg("ethtool", "6.2", "1.el9", epoch=2),
    BasePkg("hostname", "3.23", "6.el9"),
    BasePkg("cronie", "1.5.7", "11.el9"),
    BasePkg("curl", "7.76.1", "29.el9_4"),
    BasePkg("which", "2.21", "29.el9"),
)

# The podman variant on 9.4 (AppStream, not modular on EL9). unconfirmed: the releases.
EL9_PODMAN = (
    BasePkg("containers-common", "1", "91.el9_4", epoch=2, arch="noarch"),
    BasePkg("runc", "1.1.12", "1.el9", epoch=4, provides=("oci-runtime",)),
    BasePkg("podman", "4.9.4", "0.1.el9", epoch=4,
            requires=("runc >= 1.0.0", "containers-common >= 2:1-27")),
    BasePkg("buildah", "1.33.7", "1.el9", epoch=2,
            requires=("runc >= 1.0.0", "containers-common >= 2:1-27")),
    BasePkg("podman-docker", "4.9.4", "0.1.el9", epoch=4, arch="noarch",
            requires=("podman = 4:4.9.4-0.1.el9",), provides=("docker = 4:4.9.4-0.1.el9",),
            conflicts=("docker", "docker-latest", "docker-ce", "docker-ee", "moby-engine")),
)

EL9 = Flavour(
    name="el9",
    summary="Rocky Linux 9.4 (Blue Onyx)",
    os_release=OS_RELEASE_EL9,
    release_file="rocky-release",
    release_text="Rocky Linux release 9.4 (Blue Onyx)\n",
    release_links=("redhat-release", "system-release"),
    system_release_cpe="cpe:/o:rocky:rocky:9::baseos\n",
    kernel="5.14.0-427.13.1.el9_4.x86_64",
    kernel_version="#1 SMP PREEMPT_DYNAMIC Wed May 1 19:11:28 UTC 2024",
    cgroup=2,
    releasever="9",
    systemd=252,
    kmod=28,
    dnf=True,
    base=EL9_BASE,
    base_provides=FILE_PROVIDES,
    repo_files={
        "rocky.repo": (
            Repo("baseos", "Rocky Linux $releasever - BaseOS", "el9/BaseOS/x86_64/os/"),
            Repo("appstream", "Rocky Linux $releasever - AppStream",
                 "el9/AppStream/x86_64/os/"),),
        "rocky-extras.repo": (
            Repo("extras", "Rocky Linux $releasever - Extras", "el9/extras/x86_64/os/"),),
    },
    removed_modules=("nf_conntrack_ipv4", "nf_conntrack_ipv6", "nf_nat_ipv4",
                     "nf_nat_masquerade_ipv4"),
    # 5.1+: nf_nat_ipv4 and the masquerade helpers merged into nf_nat.
    module_deps={"nf_conntrack": ["nf_defrag_ipv4", "nf_defrag_ipv6", "libcrc32c"],
                 "ip_vs": ["nf_conntrack", "nf_defrag_ipv6", "libcrc32c"],
                 "ipt_MASQUERADE": ["nf_nat"], "iptable_nat": ["nf_nat", "ip_tables"]},
    conntrack_module="nf_conntrack",
    firewalld_conf=FIREWALLD_CONF,
    docker_release="el9",
    boot=("systemd-modules-load: /etc/modules-load.d/*.conf",
          "systemd-sysctl: sysctl --system", "swapon -a",
          "SELinux mode from the config (SELINUX=disabled: kernel enabled, no policy)",
          "enabled units"),
    podman=EL9_PODMAN,
    selinux_runtime_disable=False,
)

FLAVOURS: dict[str, Flavour] = {f.name: f for f in (EL7, EL8, EL9)}


def get(name: str | None) -> Flavour:
    """The flavour called `name` (None: the default, el7); ValueError for an unknown name."""
    name = name or DEFAULT
    try:
        return FLAVOURS[name]
    except KeyError:
        raise ValueError(f"unknown node flavour {name!r}: one of {', '.join(NAMES)}") from None


def facts_json(name: str) -> str:
    """/usr/lib/lab/flavour.json of a flavour's layer."""
    return json.dumps(get(name).node_facts(), indent=1, sort_keys=True) + "\n"
