"""Call recording, failure injection, node commands and versions for the k8s stand-ins."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

if "/usr/lib/lab" not in sys.path:
    sys.path.insert(0, "/usr/lib/lab")
import labcommon as lc

JOURNAL_DIR = "/var/lib/lab/journal"
STACK_HINT = "To see the stack trace of this error execute with --v=5 or higher"



def __getattr__(name: str):
    """`common.yaml`: Debian's PyYAML, imported on first use (python3 -S skips site; the
    network stand-ins' hook imports this module and does not need YAML)."""
    if name == "yaml":
        if "/usr/lib/python3/dist-packages" not in sys.path:
            sys.path.append("/usr/lib/python3/dist-packages")
        import yaml

        return yaml
    raise AttributeError(name)


def record(cmd: str) -> None:
    """Log this call and honour the lab's slow/hang/fail injections (`labcommon.start`)."""
    lc.start(cmd)


def die(msg: str, code: int = 1) -> None:
    """Print MSG to stderr and exit with CODE."""
    sys.stderr.write(msg if msg.endswith("\n") else msg + "\n")
    sys.exit(code)


def run(*cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a node command, capturing text output (rc 127 when it is missing)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, input=stdin)
    except OSError as exc:
        return subprocess.CompletedProcess(cmd, 127, "", str(exc))


def out(*cmd: str) -> str:
    """Stripped stdout of a command, '' when it fails."""
    res = run(*cmd)
    return res.stdout.strip() if res.returncode == 0 else ""


def pkg_version(pkg: str, default: str = "1.20.10") -> str:
    """The installed RPM version of PKG (e.g. '1.20.10')."""
    return out("rpm", "-q", "--qf", "%{VERSION}", pkg) or default


def cgroup_v1() -> bool:
    """Whether this node runs cgroup v1: its /sys/fs/cgroup is not a cgroup2 mount (the lab's
    el7/el8 nodes have a tmpfs there, el9 a cgroup2 mount; lab/CONTRACT.md "Flavour")."""
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 2 and parts[1] == "/sys/fs/cgroup":
                    return parts[2] != "cgroup2"
    except OSError:
        pass
    return True


def minor(version: str) -> int:
    """Minor number of 'v1.20.10' or '1.21.0'."""
    try:
        return int(version.lstrip("v").split(".")[1])
    except (IndexError, ValueError):
        return 0


def version_info(version: str) -> dict:
    """Go's version.Info of a release, as kubeadm/kubectl print it."""
    commits = {"20": ("8152330a2b6ca3621196e62966ef761b8f5a61bb", "2021-08-11T18:05:14Z",
                      "go1.15.15"),
               "21": ("cb303e613a121a29364f75cc67d3d580833a7479", "2021-04-08T16:31:21Z",
                      "go1.16.1"),
               # v1.22.17's commit and Go; the build date is the one a published build shows
               "22": ("a7736eaf34d823d7652415337ac0ad06db9167fc", "2023-01-04T19:18:50Z",
                      "go1.16.15")}
    v = "v" + version.lstrip("v")
    commit, built, go = commits.get(str(minor(v)), ("0" * 40, "2021-01-01T00:00:00Z", "go1.16"))
    return {"major": "1", "minor": str(minor(v)), "gitVersion": v, "gitCommit": commit,
            "gitTreeState": "clean", "buildDate": built, "goVersion": go, "compiler": "gc",
            "platform": "linux/amd64"}


def go_version_info(info: dict) -> str:
    """version.Info{...} in Go's %#v-like form."""
    keys = ["Major", "Minor", "GitVersion", "GitCommit", "GitTreeState", "BuildDate",
            "GoVersion", "Compiler", "Platform"]
    parts = [f'{k}:"{info[k[0].lower() + k[1:]]}"' for k in keys]
    return "version.Info{" + ", ".join(parts) + "}"


def hostname() -> str:
    return socket.gethostname()


def host_address() -> str:
    """This node's address (its name as /etc/hosts resolves it)."""
    try:
        return socket.gethostbyname(hostname())
    except OSError:
        return "127.0.0.1"


def journal(unit: str, proc: str, lines: list[str]) -> None:
    """Append syslog-style lines to the journal of UNIT (read by the journalctl stand-in)."""
    os.makedirs(JOURNAL_DIR, exist_ok=True)
    stamp = time.strftime("%b %d %H:%M:%S")
    with open(os.path.join(JOURNAL_DIR, f"{unit}.log"), "a") as fh:
        for line in lines:
            fh.write(f"{stamp} {hostname()} {proc}: {line}\n")


def klog(level: str, src: str, msg: str) -> str:
    """A klog header line: 'F0910 10:00:00.000000   1234 server.go:269] msg'."""
    t = time.time()
    stamp = time.strftime("%m%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1e6):06d}"
    return f"{level}{stamp} {os.getpid():>7} {src}] {msg}"


def read_yaml_docs(text: str) -> list[dict]:
    """All non-empty YAML documents of TEXT."""
    return [d for d in __getattr__("yaml").safe_load_all(text) if d]


def write_file(path: str, text: str, mode: int = 0o644) -> None:
    """Write TEXT to PATH (creating parents) with MODE, atomically: a temporary file of this
    process's own (two kubectl runs on one node write the same facts file at once), renamed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.lab-tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
