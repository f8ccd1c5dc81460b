"""Preconditions of the lab and installation of its Debian packages."""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import subprocess
import sys
import tempfile
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
    # the bare pods' containers (k8s/podrun.py): the dynamic build, not busybox-static, whose
    # standalone shell runs its own wget/nslookup applets and bypasses the stand-ins in PATH
    "busybox": "/usr/share/doc/busybox/copyright",
    "curl": "/usr/bin/curl",  # inside nodes without the lab's kubelet, the host's real curl
    # the bastion's LD_PRELOAD shim (lab/bindshim.c) is compiled here: gcc (COMMANDS' cc) and
    # the C library's headers (dlfcn.h, sys/socket.h, ...)
    "libc6-dev": "/usr/include/dlfcn.h",
    # real etcd members on the lab's control planes (k8s/etcd.py, lab/k8s/STATE.md "Real
    # etcd"): the nodes run the host's binaries; the package's own service stays off (ETCD_UNIT)
    "etcd-server": "/usr/bin/etcd",
    "etcd-client": "/usr/bin/etcdctl",
    "haproxy": "/usr/sbin/haproxy",  # the real config check of the haproxy payload (mirror.py)
    # the real config test (`keepalived -t`) of the keepalived payload (mirror.py); the host's
    # own keepalived.service stays off (KEEPALIVED_UNIT)
    "keepalived": "/usr/sbin/keepalived",
}

COMMANDS: dict[str, str] = {
    "apt-get": "apt", "dpkg-deb": "dpkg", "sh": "dash", "tar": "tar", "timeout": "coreutils",
    "sshd": "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
    "sudo": "sudo",
    "dnf": "dnf", "rpm": "rpm", "rpmbuild": "rpm", "createrepo_c": "createrepo-c",
    "unshare": "util-linux", "nsenter": "util-linux", "openssl": "openssl",
    "ip": "iproute2", "ss": "iproute2", "busybox": "busybox", "curl": "curl", "git": "git",
    "cc": "gcc", "etcd": "etcd-server", "etcdctl": "etcd-client",
}
"""Every command the test suite and the lab run on this machine (tests/test_environment.py
finds the ones the tests start and checks they are listed), and the Debian package that has it:
`lab deps` installs what is missing, then fails naming any command still not on the PATH."""

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

POLICY_RC = Path("/usr/sbin/policy-rc.d")


class DepsError(RuntimeError):
    """The lab cannot run on this machine; the message says why."""


def missing_packages() -> list[str]:
    """Debian packages whose marker file is absent, or whose command is not on the PATH."""
    wanted = [pkg for pkg, marker in PACKAGES.items() if not os.path.exists(marker)]
    wanted += [COMMANDS[cmd] for cmd in missing_commands()]
    return list(dict.fromkeys(wanted))


def missing_commands() -> list[str]:
    """The commands of COMMANDS that are not on the PATH (nor in /usr/sbin, /sbin)."""
    return [cmd for cmd in COMMANDS if shutil.which(cmd, path=SEARCH_PATH) is None]


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


def _listen_sockets() -> list[tuple[str, int]]:
    """(hex address as the kernel writes it, port) of this host's LISTEN TCP sockets."""
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            addr, port = parts[1].rsplit(":", 1)
            if parts[3] == "0A":
                found.append((addr, int(port, 16)))
    return found


def host_sshd_on_wildcard() -> bool:
    """True when something listens on 0.0.0.0:22 or [::]:22 (blocks 127.0.B.N:22)."""
    return any(port == 22 and set(addr) == {"0"} for addr, port in _listen_sockets())


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
    absent = missing_commands()
    if absent:
        raise DepsError("not on the PATH: " + ", ".join(f"{c} (Debian package {COMMANDS[c]})"
                                                        for c in absent))
    containerd_loader(log=log)
    host_etcd_off(log=log)
    host_keepalived_off(log=log)
    if host_sshd_on_wildcard():
        raise DepsError(
            "a host sshd (or something else) listens on 0.0.0.0:22 or [::]:22; lab nodes need "
            "127.0.B.N:22. Make the host sshd listen on specific addresses or stop it "
            "(e.g. `systemctl stop ssh`)."
        )


ETCD_UNIT = "etcd.service"
"""Debian's etcd-server enables its unit (and the SysV script) and starts a host etcd on
127.0.0.1:2379/2380 when installed. `install` runs apt-get under policy-rc.d 101 (nothing starts);
`host_etcd_off` then stops, disables and masks it, on a host with or without systemd."""
ETCD_PORTS = (2379, 2380, 2381)  # client, peer, metrics (kubeadm: 127.0.0.1:2381)


def host_listeners(ports: tuple[int, ...]) -> list[str]:
    """`ADDRESS:PORT` of the LISTEN sockets on PORTS bound to 127.0.0.1, ::1 or a wildcard
    (0.0.0.0, ::): what a host service would use. The lab's own members bind 127.0.B.N only."""
    found = []
    for addr, port in _listen_sockets():
        if port not in ports:
            continue
        if set(addr) == {"0"}:
            found.append(f"{'[::]' if len(addr) == 32 else '0.0.0.0'}:{port}")
        elif addr in ("0100007F", "00000000000000000000000001000000"):
            found.append(f"{'[::1]' if len(addr) == 32 else '127.0.0.1'}:{port}")
    return found


def host_etcd_off(log=print) -> None:
    """Stop, disable and mask Debian's etcd service on the host (idempotent; nothing to do
    without etcd-server), then check that nothing listens on 2379/2380 of 127.0.0.1, ::1 or a
    wildcard address; raise DepsError when something does. A host etcd is stopped through
    systemd (its unit's processes only) or by the SysV script's pidfile: never by name, since
    the lab's own members (other labs, other test runs) are /usr/bin/etcd processes too."""
    if not Path("/usr/bin/etcd").exists():
        return
    mask = Path("/etc/systemd/system") / ETCD_UNIT
    if not (mask.is_symlink() and os.readlink(mask) == "/dev/null"):
        log(f"lab: disabling and masking the host's {ETCD_UNIT} (etcd runs in lab nodes only)")
        # systemctl's disable and mask work on the unit files without a running systemd too
        now = ["--now"] if Path("/run/systemd/system").is_dir() else []
        steps = [["systemctl", "disable", *now, ETCD_UNIT], ["systemctl", "mask", ETCD_UNIT],
                 ["update-rc.d", "etcd", "disable"]]  # the SysV links (systemctl does them too)
        for argv in steps:
            if shutil.which(argv[0], path=SEARCH_PATH):
                subprocess.run(argv, capture_output=True, text=True)
    pidfile = Path("/run/etcd.pid")  # init-d-script's --make-pidfile
    try:
        pid = int(pidfile.read_text().strip())
        if os.readlink(f"/proc/{pid}/exe") == "/usr/bin/etcd":
            os.kill(pid, 15)
    except (OSError, ValueError):
        pass
    busy = host_listeners(ETCD_PORTS)
    if busy:
        raise DepsError(
            f"something listens on {', '.join(busy)} on the host (a host etcd?). Lab nodes run "
            "their own etcd members on 127.0.B.N only; stop it (e.g. `systemctl disable --now "
            "etcd`).")


KEEPALIVED_UNIT = "keepalived.service"
"""Debian's keepalived enables its unit (and SysV script) when installed; it would hold VIPs on
the host's interfaces. `install` starts nothing (policy-rc.d 101); `host_keepalived_off` then
disables and masks it, as host_etcd_off does for etcd. Lab nodes run the payload's stand-in."""


def host_keepalived_off(log=print) -> None:
    """Stop, disable and mask Debian's keepalived service on the host (idempotent; nothing to
    do without keepalived). A running host keepalived is stopped through systemd or by its
    pidfile (/run/keepalived.pid), never by name."""
    if not Path("/usr/sbin/keepalived").exists():
        return
    mask = Path("/etc/systemd/system") / KEEPALIVED_UNIT
    if not (mask.is_symlink() and os.readlink(mask) == "/dev/null"):
        log(f"lab: disabling and masking the host's {KEEPALIVED_UNIT} (keepalived runs in lab "
            "nodes only, as a stand-in)")
        now = ["--now"] if Path("/run/systemd/system").is_dir() else []
        steps = [["systemctl", "disable", *now, KEEPALIVED_UNIT],
                 ["systemctl", "mask", KEEPALIVED_UNIT], ["update-rc.d", "keepalived", "disable"]]
        for argv in steps:
            if shutil.which(argv[0], path=SEARCH_PATH):
                subprocess.run(argv, capture_output=True, text=True)
    try:
        pid = int(Path("/run/keepalived.pid").read_text().strip())
        if os.readlink(f"/proc/{pid}/exe") == "/usr/sbin/keepalived":
            os.kill(pid, 15)
    except (OSError, ValueError):
        pass


LOADER_PACKAGE = "containerd"
"""Debian's containerd: its binary is the lab's real config loader (`containerd --config FILE
config dump`). Only the binary is unpacked (apt-get download + dpkg-deb), never installed, so no
daemon, unit or state directory appears on the host."""


def containerd_loader(root: Path | None = None, log=print) -> Path:
    """`<root>/tools/containerd/containerd`: Debian's containerd binary (fetched once with
    `apt-get download containerd`, unpacked with dpkg-deb; nothing is installed or started).
    Raise DepsError when it cannot be had."""
    import lab

    root = root or lab.lab_root()
    tools = root / "tools" / "containerd"
    binary = tools / "containerd"
    if binary.is_file():
        return binary
    tools.parent.mkdir(parents=True, exist_ok=True)
    with open(tools.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary
        if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
            raise DepsError("the lab needs Debian's containerd binary (apt-get download "
                            "containerd) and there is no apt-get/dpkg-deb here")
        work = Path(tempfile.mkdtemp(prefix=".containerd-", dir=tools.parent))
        try:
            os.chmod(work, 0o755)
            log(f"lab: fetching Debian's {LOADER_PACKAGE} binary (apt-get download; not installed)")
            cmd = ["apt-get", "-q", "download", LOADER_PACKAGE]
            res = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            if res.returncode != 0:
                subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-q"],
                               capture_output=True, text=True)
                res = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            debs = sorted(work.glob(f"{LOADER_PACKAGE}_*.deb"))
            if res.returncode != 0 or not debs:
                raise DepsError(f"apt-get download {LOADER_PACKAGE} failed:\n"
                                f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
            tar = subprocess.run(f"dpkg-deb --fsys-tarfile {debs[0].name} | "
                                 "tar -x ./usr/bin/containerd", shell=True, cwd=work,
                                 capture_output=True, text=True)
            got = work / "usr" / "bin" / "containerd"
            if tar.returncode != 0 or not got.is_file():
                raise DepsError(f"unpacking {debs[0].name} failed: {tar.stderr[-2000:]}")
            version = debs[0].name.split("_")[1]
            out = work / "out"
            out.mkdir()
            os.replace(got, out / "containerd")
            (out / "VERSION").write_text(f"{LOADER_PACKAGE} {version}\n")
            if tools.exists():
                shutil.rmtree(tools)
            os.replace(out, tools)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return binary


def main() -> int:
    """`python -m lab deps`."""
    try:
        ensure()
    except DepsError as exc:
        print(f"lab deps: {exc}", file=sys.stderr)
        return 1
    print("lab deps: ok")
    return 0
