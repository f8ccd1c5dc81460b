"""A throwaway mini-node on the host for testing stand-ins without the lab core.

Runs a shell script inside ``unshare --mount --uts --pid --fork --mount-proc`` with overlays over
/etc, /usr and /var (uppers in a temp dir), tmpfs on /run, the stand-ins installed per MANIFEST,
a CentOS-like /etc and empty unit directories. Nothing reaches the host's files or kernel state.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

STANDINS = Path(__file__).resolve().parent
CENTOS_FILES = {
    "/etc/os-release": 'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\n'
    'ID_LIKE="rhel fedora"\nVERSION_ID="7"\nPRETTY_NAME="CentOS Linux 7 (Core)"\n',
    "/etc/selinux/config": "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
    "/etc/fstab": "/dev/mapper/centos-root /                       xfs     defaults        0 0\n"
    "/dev/mapper/centos-swap swap                    swap    defaults        0 0\n",
    "/etc/hostname": "sandbox\n",
    "/etc/rpm/macros.lab": "%_dbpath /var/lib/rpm\n",
    "/etc/dnf/vars/releasever": "7\n",
    "/etc/hosts": "127.0.0.1   localhost\n127.0.9.11 sandbox\n",
}


def manifest(root: Path = STANDINS) -> list[tuple[str, list[str]]]:
    """Parse MANIFEST: (source relative to lab/standins, destinations)."""
    out = []
    for line in (root / "MANIFEST").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            out.append((fields[0], fields[1:]))
    return out


INITSCRIPTS_SPEC = """\
Name: initscripts
Version: 9.49.53
Release: 1.el7_9.1
Summary: sandbox record of CentOS 7's initscripts (see lab/flavours.py)
License: Lab
BuildArch: noarch
%description
Empty.
%files
"""


def initscripts_rpm() -> Path:
    """An empty `initscripts` rpm (built once per machine): the sandbox records it in its rpmdb
    like an el7 node, so the boot runs /etc/sysconfig/modules."""
    out = Path(tempfile.gettempdir()) / f"lab-sandbox-{os.getuid()}"
    rpm = out / "noarch" / "initscripts-9.49.53-1.el7_9.1.noarch.rpm"
    if rpm.exists():
        return rpm
    with tempfile.TemporaryDirectory(prefix="lab-sandbox-rpm-") as top:
        spec = Path(top) / "initscripts.spec"
        spec.write_text(INITSCRIPTS_SPEC)
        subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
                        "--define", f"_rpmdir {top}/out", "--define", f"_dbpath {top}/db",
                        "--define", "_build_id_links none", str(spec)],
                       capture_output=True, check=True)
        out.joinpath("noarch").mkdir(parents=True, exist_ok=True)
        tmp = rpm.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes((Path(top) / "out" / "noarch" / rpm.name).read_bytes())
        os.replace(tmp, rpm)
    return rpm


def setup_script(tmp: Path, files: dict[str, str]) -> str:
    """Shell commands that build the mini-node inside the new namespaces."""
    lines = ["set -e", "mount --make-rprivate /"]
    for d in ("etc", "usr", "var", "root"):
        up, wk = tmp / d / "upper", tmp / d / "work"
        up.mkdir(parents=True)
        wk.mkdir(parents=True)
        lines.append(
            f"mount -t overlay lab-sandbox -o lowerdir=/{d},upperdir={up},workdir={wk} /{d}"
        )
    lines += [
        "mount -t tmpfs lab-sandbox /run",
        "mount -t tmpfs lab-sandbox /usr/lib/systemd/system",
        "mount -t tmpfs lab-sandbox /etc/systemd/system",
        "mount -t tmpfs lab-sandbox /sys/fs",
        "mkdir -p /sys/fs/selinux /sys/fs/cgroup",
        "rm -rf /var/lib/lab /etc/sysctl.d /etc/modules-load.d /etc/sysctl.conf",
        "mkdir -p /etc/sysctl.d /etc/modules-load.d /var/lib/lab /run/lab",
    ]
    for src, dests in manifest():
        for dest in dests:
            lines.append(
                f"mkdir -p {shlex.quote(str(Path(dest).parent))}; rm -f {shlex.quote(dest)}; "
                f"cp {shlex.quote(str(STANDINS / src))} {shlex.quote(dest)}"
            )
    for path, text in files.items():
        parent = shlex.quote(str(Path(path).parent))
        lines.append(f"mkdir -p {parent}; printf %s {shlex.quote(text)} > {path}")
    lines += [
        'hostname "$(cat /etc/hostname)"',
        "rm -rf /var/lib/rpm && mkdir -p /var/lib/rpm && rpm --dbpath /var/lib/rpm -i --justdb "
        f"--nodeps --noscripts --notriggers {shlex.quote(str(initscripts_rpm()))}",
        "printf 'Filename\\t\\t\\t\\tType\\t\\tSize\\tUsed\\tPriority\\n' > /run/lab/swaps",
        "mount --bind /run/lab/swaps /proc/swaps",
        "set +e",
    ]
    return "\n".join(lines)


def run(
    script: str, files: dict[str, str] | None = None, boot: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run script (bash) as root in a fresh mini-node; returns the finished process (text)."""
    merged = dict(CENTOS_FILES)
    merged.update(files or {})
    with tempfile.TemporaryDirectory(prefix="lab-sandbox-") as tmp:
        body = setup_script(Path(tmp), merged)
        if boot:
            body += "\n/usr/lib/lab/boot"
        body += "\n" + script
        return subprocess.run(
            ["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "bash", "-c", body],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
