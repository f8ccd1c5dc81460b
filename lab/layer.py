"""The shared lab layer: what turns the host's /etc, /usr, ... into an EL7, EL8 or EL9 node.

Built once per flavour (lab/flavours.py; the podman variant is a flavour of its own) into
`<root>/layer/<variant>-<hash>/{etc,usr,var,root,home,opt}` and reused while its inputs (this
file, lab/flavours.py, the stand-ins, the client key, the host binaries it hides) do not change.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lab
from lab import deps, flavours
from lab.flavours import Flavour

TOPS = ("etc", "usr", "var", "root", "home", "opt")
"""Directories overlaid in a node."""
HOST_LOWER = ("etc", "usr", "opt")
"""Tops whose host directory is the bottom layer. /var, /root and /home are the layer's alone:
/var holds the lab root itself (overlayfs refuses a lower layer inside another), and the host's
/root and /home are none of a node's business."""

STANDINS = Path(__file__).resolve().parent / "standins"

# Host binaries that could change the host; hidden (whiteout) unless a stand-in replaces them.
HIDE_PATTERNS = (
    "iptables*", "ip6tables*", "xtables*", "ebtables*", "arptables*", "nft", "ipvsadm*",
    "ipset", "ip", "tc", "bridge", "ethtool", "conntrack", "ifconfig", "route", "arp",
    "ifup", "ifdown", "dhclient", "modprobe", "insmod", "rmmod", "lsmod", "depmod", "modinfo",
    "kmod", "sysctl", "swapon", "swapoff", "mkswap", "reboot", "shutdown", "halt", "poweroff",
    "telinit", "init", "runlevel", "hwclock", "timedatectl", "hostnamectl", "localectl",
    "systemctl", "journalctl", "loginctl", "udevadm", "kexec", "losetup", "blockdev",
    "fstrim", "setenforce", "getenforce", "firewall-cmd", "apt", "apt-*", "dpkg", "dpkg-*",
    "aptitude", "update-alternatives", "invoke-rc.d", "service", "update-rc.d",
    # Debian's haproxy (lab/deps.py): a CentOS base has none; the mirror's haproxy package
    # carries its own copy for the config check (lab/mirror.py HOST_FILES)
    "haproxy",
    # Debian's keepalived (lab/deps.py) likewise: the mirror's package carries its own copy
    "keepalived", "genhash",
)
# Debian identity and host secrets hidden from nodes.
HIDE_FILES = (
    "etc/debian_version", "etc/apt", "etc/dpkg/origins", "etc/lsb-release",
    "etc/ssh/ssh_host_rsa_key", "etc/ssh/ssh_host_rsa_key.pub",
    "etc/ssh/ssh_host_ecdsa_key", "etc/ssh/ssh_host_ecdsa_key.pub",
    "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub",
    "etc/init.d", "etc/rc0.d", "etc/rc1.d", "etc/rc2.d", "etc/rc3.d", "etc/rc4.d",
    "etc/rc5.d", "etc/rc6.d", "etc/rcS.d", "etc/network/interfaces",
    # Debian's haproxy package's configuration: the EL package brings its own /etc/haproxy
    "etc/haproxy", "etc/default/haproxy", "etc/logrotate.d/haproxy",
    "etc/rsyslog.d/49-haproxy.conf",
    # Debian's keepalived package's configuration: the EL package brings /etc/keepalived
    "etc/keepalived", "etc/default/keepalived", "etc/dbus-1/system.d/org.keepalived.Vrrp1.conf",
)
OPAQUE_DIRS = (
    "usr/lib/systemd/system", "etc/systemd/system", "etc/sudoers.d", "etc/yum.repos.d",
    "etc/ssh/sshd_config.d", "etc/sysctl.d", "etc/modules-load.d", "etc/sysconfig",
    "usr/lib/sysctl.d", "usr/lib/modules-load.d", "etc/selinux",
    # A stock CentOS /usr/local is empty: hide the host's tools (a docker client, ...) that
    # would otherwise shadow the stand-ins on PATH.
    "usr/local",
)

UNITS = {
    "sshd.service": ("OpenSSH server daemon", "/usr/sbin/sshd -D", "multi-user.target"),
    "firewalld.service": ("firewalld - dynamic firewall daemon", "/usr/sbin/firewalld --nofork",
                          "multi-user.target"),
    "chronyd.service": ("NTP client/server", "/usr/sbin/chronyd", "multi-user.target"),
    "crond.service": ("Command Scheduler", "/usr/sbin/crond -n", "multi-user.target"),
    "NetworkManager.service": ("Network Manager", "/usr/sbin/NetworkManager --no-daemon",
                               "multi-user.target"),
    "rsyslog.service": ("System Logging Service", "/usr/sbin/rsyslogd -n", "multi-user.target"),
    "tuned.service": ("Dynamic System Tuning Daemon", "/usr/sbin/tuned -l -P",
                      "multi-user.target"),
}
ENABLED = ("sshd.service", "firewalld.service", "chronyd.service", "crond.service")
"""Enabled at first boot (each costs one stand-in `systemctl start` per node boot)."""
TARGETS = ("multi-user.target", "basic.target", "network.target", "network-online.target",
           "sysinit.target", "default.target")


def client_key(root: Path) -> Path:
    """The client key authorised for every login user (created once)."""
    key = root / "keys" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_name(f".tmp-{os.getpid()}")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-client",
                        "-f", str(tmp)], check=True)
        os.replace(f"{tmp}.pub", f"{key}.pub")
        os.replace(tmp, key)
    return key


def read_manifest() -> list[tuple[Path, list[str]]]:
    """Entries of lab/standins/MANIFEST: (source file, [absolute destinations])."""
    manifest = STANDINS / "MANIFEST"
    if not manifest.exists():
        return []
    entries = []
    for line in manifest.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        src, *dests = line.split()
        entries.append((STANDINS / src, dests))
    return entries


def hidden_host_paths(replaced: set[str]) -> list[str]:
    """Host paths (relative to /) to whiteout: risky binaries not replaced, Debian identity."""
    found: set[str] = set()
    for d in ("usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin"):
        for pat in HIDE_PATTERNS:
            for path in glob.glob(f"/{d}/{pat}"):
                rel = path.lstrip("/")
                if rel not in replaced:
                    found.add(rel)
    for rel in HIDE_FILES:
        if os.path.lexists("/" + rel):
            found.add(rel)
    return sorted(found)


def variant(os_name: str | None = None, podman: bool = False) -> str:
    """The layer's variant name: the flavour, `-podman` for the podman variant."""
    fl = flavours.get(os_name)
    if podman and not fl.podman:
        raise ValueError(f"the podman variant needs el8 or el9, not {fl.name}")
    return fl.name + ("-podman" if podman else "")


def fingerprint(root: Path, os_name: str | None = None, podman: bool = False) -> str:
    """Hash of everything the layer of that flavour is built from."""
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(Path(flavours.__file__).read_bytes())
    h.update(variant(os_name, podman).encode())
    h.update(str(root).encode())
    h.update(Path(f"{client_key(root)}.pub").read_bytes())
    entries = read_manifest()
    replaced = {d.lstrip("/") for _, dests in entries for d in dests}
    for src, dests in entries:
        h.update(f"{src.name}>{dests}".encode())
        h.update(src.read_bytes() if src.is_file() else b"<missing>")
    h.update("\n".join(hidden_host_paths(replaced)).encode())
    h.update(deps.containerd_loader(root).with_name("VERSION").read_bytes())
    return h.hexdigest()[:16]


def ensure(root: Path | None = None, log=print, os_name: str | None = None,
           podman: bool = False) -> Path:
    """Return the layer directory of a flavour for the current inputs, building it if needed."""
    root = root or lab.lab_root()
    name = variant(os_name, podman)
    (root / "layer").mkdir(parents=True, exist_ok=True)
    with open(root / "layer" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = fingerprint(root, os_name, podman)
        final = root / "layer" / f"{name}-{digest}"
        if final.is_dir():
            return final
        if not (STANDINS / "MANIFEST").exists():
            log("lab: warning: lab/standins/MANIFEST not found; the layer has no stand-ins")
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root / "layer"))
        try:
            build(tmp, root, log, flavours.get(os_name), podman)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        prune(root, keep=final)
        return final


def prune(root: Path, keep: Path) -> None:
    """Remove the layers of `keep`'s variant (and of no known variant: older builds) that no
    lab refers to, older than 10 min (call with the layer lock held). Another flavour's layer
    is never pruned here: each flavour keeps its own."""
    used = {keep.name}
    mine = keep.name.rsplit("-", 1)[0]
    known = {f"{n}{p}" for n in flavours.NAMES for p in ("", "-podman")}
    for ref in (root / "labs").glob("*/layer"):
        with contextlib.suppress(OSError):
            used.add(Path(ref.read_text().strip()).name)
    for old in (root / "layer").iterdir():
        kind = old.name.rsplit("-", 1)[0] if "-" in old.name else ""
        if kind != mine and kind in known:
            continue
        if old.is_dir() and old.name not in used and not old.name.startswith(".") \
                and time.time() - old.stat().st_mtime > 600:
            shutil.rmtree(old, ignore_errors=True)


def write(base: Path, rel: str, text: str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
    """Write a file of the layer (parents created)."""
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def symlink(base: Path, rel: str, target: str) -> None:
    """Create a symlink in the layer."""
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def whiteout(base: Path, rel: str) -> None:
    """Hide host path /rel with an overlay whiteout."""
    path = base / rel
    if os.path.lexists(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def opaque(base: Path, rel: str) -> None:
    """Make directory rel opaque: the host's content below it is hidden."""
    path = base / rel
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, "trusted.overlay.opaque", b"y")


def build(base: Path, root: Path, log=print, fl: Flavour | None = None,
          podman: bool = False) -> None:
    """Build the layer of flavour `fl` (default el7) into the empty directory `base`."""
    fl = fl or flavours.get(None)
    for top in TOPS:
        (base / top).mkdir()
    pub = Path(f"{client_key(root)}.pub").read_text()
    for rel in OPAQUE_DIRS:
        opaque(base, rel)
    _identity(base, fl)
    _users(base, pub, _password_hash(lab.SUDO_PASSWORD))
    _system(base)
    _units(base)
    entries = read_manifest()
    replaced = set()
    for src, dests in entries:
        if not src.is_file():
            log(f"lab: warning: stand-in {src} listed in MANIFEST is missing")
            continue
        if fl.dnf and dests == ["/usr/bin/yum"]:
            dests = [*dests, "/usr/bin/dnf"]  # EL8+: yum and dnf are both dnf-3
        for dest in dests:
            rel = dest.lstrip("/")
            replaced.add(rel)
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(target):
                target.unlink()
            shutil.copyfile(src, target)
            os.chmod(target, 0o755)
    for rel in hidden_host_paths(replaced):
        whiteout(base, rel)
    if not fl.dnf and os.path.lexists("/usr/bin/dnf"):
        whiteout(base, "usr/bin/dnf")  # CentOS 7 has yum 3 only (the stand-in runs dnf-3)
    _containerd_loader(base, root, log)
    _rpmdb(base, fl, podman)


CONTAINERD_REAL = "usr/lib/lab/containerd-real"
"""Debian's real containerd binary in every node (lab/deps.py fetches it): the containerd.io
stand-in's unit hook runs `containerd-real --config /etc/containerd/config.toml config dump`,
which loads the config as the daemon does and starts nothing."""


def _containerd_loader(base: Path, root: Path, log=print) -> None:
    real = deps.containerd_loader(root, log)
    dest = base / CONTAINERD_REAL
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(real, dest)  # same file system as the lab root: no 46 MB copy per layer
    except OSError:
        shutil.copy2(real, dest)
    os.chmod(dest, 0o755)
    shutil.copyfile(real.with_name("VERSION"), dest.with_name("containerd-real.version"))


def _units(base: Path) -> None:
    unitdir = "usr/lib/systemd/system"
    for name, (desc, execstart, wanted) in UNITS.items():
        write(base, f"{unitdir}/{name}",
              f"[Unit]\nDescription={desc}\nAfter=network.target\n\n[Service]\n"
              f"ExecStart={execstart}\n\n[Install]\nWantedBy={wanted}\n")
    for target in TARGETS:
        write(base, f"{unitdir}/{target}", f"[Unit]\nDescription={target}\n")
    for name in ENABLED:
        wanted = UNITS[name][2]
        symlink(base, f"etc/systemd/system/{wanted}.wants/{name}", f"/{unitdir}/{name}")
    symlink(base, "etc/systemd/system/default.target", f"/{unitdir}/multi-user.target")


def _password_hash(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
        except ImportError:
            pass
    res = subprocess.run(["openssl", "passwd", "-6", password], capture_output=True,
                         text=True, check=True)
    return res.stdout.strip()


def _pkg_lines(p: flavours.BasePkg) -> list[str]:
    lines = [f"Version: {p.version}", f"Release: {p.release}"]
    if p.epoch:
        lines.append(f"Epoch: {p.epoch}")
    if p.arch == "noarch":
        lines.append("BuildArch: noarch")
    lines += [f"Provides: {x}" for x in p.provides]
    lines += [f"Requires: {x}" for x in p.requires]
    lines += [f"Obsoletes: {x}" for x in p.obsoletes]
    lines += [f"Conflicts: {x}" for x in p.conflicts]
    return lines


def rpmdb_spec(fl: Flavour, podman: bool = False) -> str:
    """One spec whose packages are the flavour's base install (and the podman variant's
    packages): empty packages with the real names, versions and relations."""
    pkgs = list(fl.base) + (list(fl.podman) if podman else [])
    if fl.base_provides:  # a catch-all for file paths no row lists
        main = flavours.BasePkg("lab-base-files", fl.releasever, "1." + fl.name,
                                provides=fl.base_provides)
    else:
        main, pkgs = pkgs[0], pkgs[1:]
    out = [f"Name: {main.name}", *_pkg_lines(main),
           f"Summary: {fl.summary} base install (lab)", "License: MIT", "AutoReqProv: no", "",
           "%description", "Recorded in the lab's rpmdb (no files).", ""]
    for p in pkgs:
        out += [f"%package -n {p.name}", *_pkg_lines(p), f"Summary: {p.name} (lab)", "",
                f"%description -n {p.name}", "Recorded in the lab's rpmdb (no files).", ""]
    out.append("%files")
    out += [f"%files -n {p.name}" for p in pkgs]
    return "\n".join(out) + "\n"


def _rpmdb(base: Path, fl: Flavour, podman: bool = False) -> None:
    """Record the flavour's base install in the layer's rpmdb at var/lib/rpm."""
    dbpath = base / "var/lib/rpm"
    dbpath.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lab-rpm-") as top:
        spec = Path(top) / "base.spec"
        spec.write_text(rpmdb_spec(fl, podman))
        res = subprocess.run(
            ["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
             "--define", f"_dbpath {top}/db", "--define", "_build_id_links none",
             "--target", "x86_64", str(spec)],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise RuntimeError(f"rpmbuild of the base system failed:\n{res.stderr}")
        rpms = sorted(glob.glob(f"{top}/RPMS/*/*.rpm"))
        res = subprocess.run(
            ["rpm", "--dbpath", str(dbpath), "-i", "--justdb", "--nodeps", "--noscripts",
             "--notriggers", "--ignoreos", "--ignorearch", *rpms],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise RuntimeError(f"rpm -i --justdb failed:\n{res.stderr}")


FSTAB = """\

#
# /etc/fstab
# Created by anaconda on Tue Nov 10 09:14:21 2020
#
# Accessible filesystems, by reference, are maintained under '/dev/disk'
# See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info
#
/dev/mapper/centos-root /                       xfs     defaults        0 0
UUID=5d1f8a3c-64a5-4a5b-9d0e-2b1c7f3e9a10 /boot                   xfs     defaults        0 0
/dev/mapper/centos-swap swap                    swap    defaults        0 0
"""

SELINUX = """\

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

SSHD_CONFIG = """\
# CentOS 7 style sshd_config (lab)
HostKey /etc/ssh/ssh_host_ed25519_key
SyslogFacility AUTHPRIV
PermitRootLogin yes
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
ChallengeResponseAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
UseDNS no
PrintMotd no
MaxStartups 200:30:400
MaxSessions 50
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""

SUDOERS = """\
## sudoers (CentOS 7 style, lab)
Defaults   !visiblepw
Defaults    always_set_home
Defaults    match_group_by_gid
Defaults    env_reset
Defaults    env_keep =  "COLORS DISPLAY HOSTNAME HISTSIZE KDEDIR LS_COLORS"
Defaults    secure_path = /sbin:/bin:/usr/sbin:/usr/bin
root    ALL=(ALL)       ALL
%wheel  ALL=(ALL)       ALL
#includedir /etc/sudoers.d
"""

DNF_CONF = """\
[main]
gpgcheck=1
installonly_limit=5
clean_requirements_on_remove=True
best=False
skip_if_unavailable=False
keepcache=0
plugins=1
"""


def _identity(base: Path, fl: Flavour) -> None:
    """The flavour's identity files, and what the node's init and stand-ins read of it."""
    write(base, "usr/lib/os-release", fl.os_release)
    symlink(base, "etc/os-release", "../usr/lib/os-release")
    write(base, f"etc/{fl.release_file}", fl.release_text)
    if fl.name == "el7":
        write(base, "etc/centos-release-upstream", "Derived from Red Hat Enterprise Linux 7.9\n")
    for link in fl.release_links:
        symlink(base, f"etc/{link}", fl.release_file)
    write(base, "etc/system-release-cpe", fl.system_release_cpe)
    write(base, "etc/issue", "\\S\nKernel \\r on an \\m\n\n")
    write(base, "usr/lib/lab/flavour.json", flavours.facts_json(fl.name))
    write(base, "usr/lib/lab/flavour.sh",
          f"LAB_OS={fl.name}\nLAB_KERNEL={fl.kernel}\nLAB_CGROUP={fl.cgroup}\n")
    if fl.systemd != 219:
        write(base, "usr/lib/lab/systemd-version", f"{fl.systemd}\n")
    if fl.firewalld_conf:
        write(base, "etc/firewalld/firewalld.conf", fl.firewalld_conf)
    write(base, "etc/selinux/config", SELINUX)
    write(base, "etc/fstab", FSTAB)
    write(base, "etc/dnf/vars/releasever", f"{fl.releasever}\n")
    write(base, "etc/yum/vars/releasever", f"{fl.releasever}\n")
    write(base, "etc/dnf/dnf.conf", DNF_CONF)
    symlink(base, "etc/yum.conf", "dnf/dnf.conf")
    write(base, "etc/dnf/plugins/local.conf", "[main]\nenabled = false\n")
    write(base, "etc/rpm/macros.lab-dbpath", "%_dbpath /var/lib/rpm\n")
    write(base, "etc/chrony.conf", "server 127.0.0.1 iburst\ndriftfile /var/lib/chrony/drift\n")
    write(base, "etc/sysconfig/network", "# Created by anaconda\n")
    write(base, "etc/sysconfig/selinux", SELINUX)
    write(base, "etc/sysctl.conf",
          "# System default settings live in /usr/lib/sysctl.d/00-system.conf.\n")
    write(base, "usr/lib/sysctl.d/00-system.conf",
          "# Disable netfilter on bridges.\nnet.bridge.bridge-nf-call-ip6tables = 0\n"
          "net.bridge.bridge-nf-call-iptables = 0\nnet.bridge.bridge-nf-call-arptables = 0\n")
    (base / "etc/sysctl.d").mkdir(parents=True, exist_ok=True)
    (base / "etc/modules-load.d").mkdir(parents=True, exist_ok=True)
    (base / "etc/sysconfig/modules").mkdir(parents=True, exist_ok=True)


USERS = [  # name, uid, gid, gecos, home, shell
    ("root", 0, 0, "root", "/root", "/bin/bash"),
    ("bin", 1, 1, "bin", "/bin", "/sbin/nologin"),
    ("daemon", 2, 2, "daemon", "/sbin", "/sbin/nologin"),
    ("adm", 3, 4, "adm", "/var/adm", "/sbin/nologin"),
    ("lp", 4, 7, "lp", "/var/spool/lpd", "/sbin/nologin"),
    ("sync", 5, 0, "sync", "/sbin", "/bin/sync"),
    ("shutdown", 6, 0, "shutdown", "/sbin", "/sbin/shutdown"),
    ("halt", 7, 0, "halt", "/sbin", "/sbin/halt"),
    ("mail", 8, 12, "mail", "/var/spool/mail", "/sbin/nologin"),
    ("operator", 11, 0, "operator", "/root", "/sbin/nologin"),
    ("games", 12, 100, "games", "/usr/games", "/sbin/nologin"),
    ("ftp", 14, 50, "FTP User", "/var/ftp", "/sbin/nologin"),
    ("nobody", 99, 99, "Nobody", "/", "/sbin/nologin"),
    ("systemd-network", 192, 192, "systemd Network Management", "/", "/sbin/nologin"),
    ("dbus", 81, 81, "System message bus", "/", "/sbin/nologin"),
    ("polkitd", 999, 998, "User for polkitd", "/", "/sbin/nologin"),
    ("chrony", 998, 996, "", "/var/lib/chrony", "/sbin/nologin"),
    ("sshd", 74, 74, "Privilege-separated SSH", "/var/empty/sshd", "/sbin/nologin"),
    ("postfix", 89, 89, "", "/var/spool/postfix", "/sbin/nologin"),
    ("lab", 1000, 1000, "lab (passwordless sudo)", "/home/lab", "/bin/bash"),
    ("labpw", 1001, 1001, "lab (sudo asks a password)", "/home/labpw", "/bin/bash"),
]
GROUPS = [
    ("root", 0, ""), ("bin", 1, ""), ("daemon", 2, ""), ("sys", 3, ""), ("adm", 4, ""),
    ("tty", 5, ""), ("disk", 6, ""), ("lp", 7, ""), ("mem", 8, ""), ("kmem", 9, ""),
    ("wheel", 10, "labpw"), ("cdrom", 11, ""), ("mail", 12, "postfix"), ("man", 15, ""),
    ("dialout", 18, ""), ("floppy", 19, ""), ("games", 20, ""), ("tape", 33, ""),
    ("video", 39, ""), ("ftp", 50, ""), ("lock", 54, ""), ("audio", 63, ""), ("nobody", 99, ""),
    ("users", 100, ""), ("utmp", 22, ""), ("utempter", 35, ""), ("input", 999, ""),
    ("systemd-journal", 190, ""), ("systemd-network", 192, ""), ("dbus", 81, ""),
    ("polkitd", 998, ""), ("ssh_keys", 997, ""), ("chrony", 996, ""), ("sshd", 74, ""),
    ("postdrop", 90, ""), ("postfix", 89, ""), ("lab", 1000, ""), ("labpw", 1001, ""),
]


def _users(base: Path, pubkey: str, pw_hash: str) -> None:
    """passwd/shadow/group/sudoers and the login users' homes with the client key."""
    write(base, "etc/passwd", "".join(f"{n}:x:{u}:{g}:{c}:{h}:{s}\n" for n, u, g, c, h, s in USERS))
    shadow = {"labpw": pw_hash}
    write(base, "etc/shadow", "".join(
        f"{n}:{shadow.get(n, '*' if n in ('root', 'lab') else '!!')}:18600:0:99999:7:::\n"
        for n, *_ in USERS), mode=0o000)
    write(base, "etc/group", "".join(f"{n}:x:{g}:{m}\n" for n, g, m in GROUPS))
    write(base, "etc/gshadow", "".join(f"{n}:!::{m}\n" for n, g, m in GROUPS), mode=0o000)
    write(base, "etc/sudoers", SUDOERS, mode=0o440)
    write(base, "etc/sudoers.d/lab", "lab ALL=(ALL) NOPASSWD: ALL\n", mode=0o440)
    for name, uid, gid, _, home, _ in USERS:
        if name not in lab.LOGIN_USERS:
            continue
        h = base / home.lstrip("/")
        write(base, f"{home.lstrip('/')}/.ssh/authorized_keys", pubkey, 0o600, uid, gid)
        for rc, text in ((".bashrc", "# .bashrc\n[ -f /etc/bashrc ] && . /etc/bashrc\n"),
                         (".bash_profile", "# .bash_profile\n[ -f ~/.bashrc ] && . ~/.bashrc\n"
                          "PATH=$PATH:$HOME/.local/bin:$HOME/bin\nexport PATH\n")):
            write(base, f"{home.lstrip('/')}/{rc}", text, 0o644, uid, gid)
        os.chown(h / ".ssh", uid, gid)
        os.chmod(h / ".ssh", 0o700)
        os.chown(h, uid, gid)
        os.chmod(h, 0o550 if name == "root" else 0o700)


def _system(base: Path) -> None:
    """sshd, name service, /var skeleton."""
    write(base, "etc/ssh/sshd_config", SSHD_CONFIG, 0o600)
    write(base, "etc/resolv.conf", "# lab: nothing leaves the machine\nnameserver 127.0.0.1\n")
    write(base, "etc/nsswitch.conf",
          "passwd: files\nshadow: files\ngroup: files\nhosts: files dns\n"
          "services: files\nnetgroup: files\nautomount: files\naliases: files\n")
    write(base, "etc/hostname", "localhost.localdomain\n")
    write(base, "etc/locale.conf", 'LANG="en_US.UTF-8"\n')
    write(base, "etc/bashrc", "# /etc/bashrc (lab)\n")
    for rel, mode in (("var/tmp", 0o1777), ("var/log", 0o755), ("var/log/lab", 0o755),
                      ("var/cache", 0o755), ("var/lib/lab", 0o755), ("var/lib/lab-cluster", 0o755),
                      ("var/lib/dnf", 0o755), ("var/lib/chrony", 0o755),
                      ("var/empty/sshd", 0o711), ("var/spool/cron", 0o700), ("var/adm", 0o755),
                      ("var/lib/rpm", 0o755), ("var/lib/misc", 0o755), ("opt", 0o755),
                      ("home", 0o755)):
        (base / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(base / rel, mode)
    symlink(base, "var/run", "../run")
    symlink(base, "var/lock", "../run/lock")


if __name__ == "__main__":
    print(ensure(os_name=sys.argv[1] if len(sys.argv) > 1 else None))
    sys.exit(0)
