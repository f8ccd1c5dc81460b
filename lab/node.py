"""One simulated EL node (lab/flavours.py): a mount+UTS+PID namespace with overlays and a real
sshd."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from pathlib import Path

from lab import flavours
from lab.layer import TOPS

NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\tUsed\tPriority\n"

# PID 1 of a node. Runs with the host's view of / until it has mounted the node's.
INIT = r"""#!/bin/bash
# lab node init: $1 node dir, $2 layer dir, $3 cluster dir, $4 address, $5 hostname, $6 open|closed
# environment: LAB_SSHD_OPTS, LAB_SSHD_ENV: sshd's extra arguments and environment, one a line
set -eu
N=$1 L=$2 C=$3 A=$4 H=$5 PORT=$6
SSHD_OPTS=() SSHD_ENV=()
[ -n "${LAB_SSHD_OPTS:-}" ] && mapfile -t SSHD_OPTS <<< "$LAB_SSHD_OPTS"
[ -n "${LAB_SSHD_ENV:-}" ] && mapfile -t SSHD_ENV <<< "$LAB_SSHD_ENV"
unset LAB_SSHD_OPTS LAB_SSHD_ENV  # sshd's alone, not the boot's
UUID=$(cat "$N/identity/product_uuid") MAC=$(cat "$N/identity/mac")
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
mkdir -p /run/.stage/cluster /run/.stage/log
mount --bind "$C" /run/.stage/cluster
mount --bind "$N/log" /run/.stage/log
for t in etc usr opt; do
  low="$L/$t:/$t"; [ -d "$N/seed/$t" ] && low="$N/seed/$t:$low"
  mount -t overlay lab-node -o "lowerdir=$low,upperdir=$N/upper/$t,workdir=$N/work/$t" "/$t"
done
for t in root home var; do
  low="$L/$t"; [ -d "$N/seed/$t" ] && low="$N/seed/$t:$low"
  mount -t overlay lab-node -o "lowerdir=$low,upperdir=$N/upper/$t,workdir=$N/work/$t" "/$t"
done
mount --move /run/.stage/cluster /var/lib/lab-cluster
mount --move /run/.stage/log /var/log/lab
rmdir /run/.stage/cluster /run/.stage/log /run/.stage
mkdir -p /run/lab /run/sshd /run/lock /run/lab-node
chmod 0755 /run/sshd
mount -t tmpfs -o mode=1777,size=256m tmpfs /tmp
printf 'Filename\t\t\t\tType\t\tSize\tUsed\tPriority\n' > /run/lab/swaps
mount --bind /run/lab/swaps /proc/swaps
hostname "$H"
# the flavour's kernel release and cgroup version (written by the layer from lab/flavours.py)
LAB_KERNEL=3.10.0-1160.el7.x86_64 LAB_CGROUP=1
[ -r /usr/lib/lab/flavour.sh ] && . /usr/lib/lab/flavour.sh
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
printf '%s\n' "$LAB_KERNEL" > /run/lab/osrelease  # what uname -r says (labcommon)
mount --bind /run/lab/osrelease /proc/sys/kernel/osrelease
if [ -e /proc/sysrq-trigger ]; then
  mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
  mount -o remount,bind,ro /proc/sysrq-trigger
fi
# a /sys of the node's own, without the host's mounts below it (its cgroup file systems)
umount -R -l /sys 2>/dev/null || true
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t tmpfs -o mode=0755,size=1m tmpfs /sys/class
mkdir -p /sys/class/dmi/id /sys/class/net/eth0 /sys/class/net/lo
echo "$UUID" > /sys/class/dmi/id/product_uuid
chmod 0400 /sys/class/dmi/id/product_uuid
echo "$MAC" > /sys/class/net/eth0/address
echo 00:00:00:00:00:00 > /sys/class/net/lo/address
echo 'CentOS' > /sys/class/dmi/id/sys_vendor
echo 'lab node' > /sys/class/dmi/id/product_name
mount -o remount,ro /sys/class
# /sys/fs of the node's own: selinuxfs's enforce file (boot and setenforce keep it) and the
# cgroup file system of the flavour: a tmpfs on a cgroup v1 release (never the host's cgroup2),
# cgroup2 (read-only) on a cgroup v2 one. /proc/mounts shows which (the toolkit reads it).
mount -t tmpfs -o mode=0755,size=1m tmpfs /sys/fs
mkdir -p /sys/fs/selinux /sys/fs/cgroup
if [ "$LAB_CGROUP" = 2 ]; then
  mount -t cgroup2 -o ro,nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
else
  mount -t tmpfs -o ro,nosuid,nodev,noexec,mode=0755,size=1m tmpfs /sys/fs/cgroup
fi
cd /
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C
if [ -x /usr/lib/lab/boot ]; then
  /usr/lib/lab/boot >>/var/log/lab/boot.log 2>&1 || echo "lab init: boot exited $?" >&2
fi
[ "$PORT" = closed ] && touch /run/lab-node/port-closed
start_sshd() {
  [ -e /run/lab-node/port-closed ] && return 0
  env "${SSHD_ENV[@]}" /usr/sbin/sshd -D -E /var/log/lab/sshd.log -o LogLevel=DEBUG1 \
    -o "ListenAddress=$A:22" -o PidFile=/run/sshd.pid "${SSHD_OPTS[@]}" &
}
set +e
trap 'rm -f /run/lab-node/port-closed; start_sshd' USR1
start_sshd
echo ready > /run/lab-node/state
while :; do
  sleep 86400 & s=$!
  wait $s
  kill $s 2>/dev/null
done
"""

EXEC_RE = re.compile(r"session_input_channel_req: session \d+ req exec")


class NodeError(RuntimeError):
    """A node failed to start or stop."""


class Node:
    """A simulated EL node of flavour `os` (el7, el8, el9). Host-side handle; `pid` is its
    PID 1 as the host sees it."""

    def __init__(self, lab_dir: Path, root: Path, name: str, address: str,
                 cluster_dir: Path, mirror_url: str | None = None, os: str = "el7") -> None:
        self.name = name
        self.os = flavours.get(os).name
        self.address = address
        self.hostname = name
        self.root = root
        self.dir = lab_dir / "nodes" / address
        self.cluster_dir = cluster_dir
        self.mirror_url = mirror_url
        self.pid: int | None = None
        self.unshare_pid: int | None = None
        self.pidns: str | None = None
        self.port_closed = False
        self.sshd_options: list[str] = []
        """Extra sshd arguments (e.g. `["-o", "AllowUsers=*@127.0.1.10"]`), from the next
        spawn on."""
        self.sshd_env: dict[str, str] = {}
        """Extra environment of sshd alone (the bastion's LD_PRELOAD and LAB_BIND_ADDRESS)."""
        self.seed_files: dict[str, str] = {}
        """Node path -> host file: copied into the node's seed by `prepare` (the node sees
        them under its own /usr, /etc, ...; the host's /var/tmp is not visible in a node)."""
        self._proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.address} pid={self.pid}>"

    # -- layout ------------------------------------------------------------------------------
    @property
    def upper(self) -> Path:
        """Per-node upper dirs: `upper/etc`, `upper/var`, ... (what changed on "disk")."""
        return self.dir / "upper"

    @property
    def sshd_log(self) -> Path:
        """sshd's log (LogLevel DEBUG1), appended across restarts."""
        return self.dir / "log" / "sshd.log"

    def host_key_dir(self) -> Path:
        return self.root / "hostkeys" / self.address

    def host_public_key(self) -> str:
        """`ssh-ed25519 AAAA...` of this node's host key."""
        pub = (self.host_key_dir() / "ssh_host_ed25519_key.pub").read_text().split()
        return f"{pub[0]} {pub[1]}"

    def prepare(self) -> None:
        """Create dirs, host key (cached per address), identity and seed."""
        for sub in ("upper", "work"):
            for top in TOPS:
                (self.dir / sub / top).mkdir(parents=True, exist_ok=True)
        (self.dir / "log").mkdir(exist_ok=True)
        keydir = self.host_key_dir()
        key = keydir / "ssh_host_ed25519_key"
        if not key.exists():
            keydir.mkdir(parents=True, exist_ok=True)
            tmp = keydir / f".tmp-{os.getpid()}"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                            f"root@{self.address}", "-f", str(tmp)], check=True)
            os.replace(f"{tmp}.pub", f"{key}.pub")
            os.replace(tmp, key)
        ident = self.dir / "identity"
        ident.mkdir(exist_ok=True)
        u = uuid.uuid5(uuid.NAMESPACE_DNS, f"lab-node-{self.address}")
        (ident / "product_uuid").write_text(f"{u}\n")
        octets = [int(x) for x in self.address.split(".")[1:]]
        (ident / "mac").write_text("52:54:{:02x}:{:02x}:{:02x}:{:02x}\n".format(0, *octets))
        seed = self.dir / "seed" / "etc"
        (seed / "ssh").mkdir(parents=True, exist_ok=True)
        (seed / "hostname").write_text(f"{self.hostname}\n")
        (seed / "hosts").write_text(
            "127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4\n"
            "::1         localhost localhost.localdomain localhost6 localhost6.localdomain6\n"
            f"{self.address} {self.hostname}\n")
        (seed / "machine-id").write_text(uuid.uuid5(uuid.NAMESPACE_URL, str(self.dir)).hex + "\n")
        for suffix, mode in (("", 0o600), (".pub", 0o644)):
            dst = seed / "ssh" / f"ssh_host_ed25519_key{suffix}"
            dst.write_bytes((keydir / f"ssh_host_ed25519_key{suffix}").read_bytes())
            os.chmod(dst, mode)
        for node_path, host_file in self.seed_files.items():
            top, _, rel = node_path.strip("/").partition("/")
            if top not in TOPS or not rel:
                raise NodeError(f"{self.name}: cannot seed {node_path} (not under /"
                                + ", /".join(TOPS) + ")")
            dst = self.dir / "seed" / top / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(Path(host_file).read_bytes())
            os.chmod(dst, Path(host_file).stat().st_mode & 0o7777)
        if self.mirror_url:
            repos = seed / "yum.repos.d"
            repos.mkdir(exist_ok=True)
            fl = flavours.get(self.os)
            if fl.name == "el7":  # exactly as it always was
                (repos / "CentOS-Base.repo").write_text(
                    "# CentOS-Base.repo (lab mirror)\n\n[base]\nname=CentOS-$releasever - Base\n"
                    f"baseurl={self.mirror_url}base/\ngpgcheck=0\nenabled=1\n")
            else:
                for filename in fl.repo_files:
                    (repos / filename).write_text(fl.repo_file_text(self.mirror_url, filename))

    # -- lifecycle ---------------------------------------------------------------------------
    def spawn(self, layer: Path, init: Path) -> None:
        """Start the node's namespace (returns at once; see `lab.cluster.wait_ready`)."""
        if self.running():
            raise NodeError(f"{self.name} is already running (pid {self.pid})")
        env = {"PATH": NODE_PATH, "LANG": "C"}
        for var, lines in (("LAB_SSHD_OPTS", self.sshd_options),
                           ("LAB_SSHD_ENV", [f"{k}={v}" for k, v in self.sshd_env.items()])):
            if any("\n" in line for line in lines):
                raise NodeError(f"{self.name}: {var} items must be one line each: {lines}")
            if lines:
                env[var] = "\n".join(lines)
        with open(self.dir / "console.log", "ab") as console:
            self._proc = subprocess.Popen(
                ["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
                 "--propagation", "private", "/bin/bash", str(init), str(self.dir), str(layer),
                 str(self.cluster_dir), self.address, self.hostname,
                 "closed" if self.port_closed else "open"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                start_new_session=True, env=env,
            )
        self.unshare_pid = self._proc.pid
        self.pid = None

    def find_pid(self) -> int | None:
        """PID 1 of the node (the child of unshare), once it exists."""
        if self.pid is None and self.unshare_pid:
            try:
                kids = Path(f"/proc/{self.unshare_pid}/task/{self.unshare_pid}/children")
                text = kids.read_text().split()
            except OSError:
                return None
            if text:
                self.pid = int(text[0])
                with contextlib.suppress(OSError):
                    self.pidns = os.readlink(f"/proc/{self.pid}/ns/pid")
        return self.pid

    def state(self) -> str:
        """'ready' once init has started sshd, '' before, 'dead' if it died."""
        if self._proc is not None and self._proc.poll() is not None:
            return "dead"
        pid = self.find_pid()
        if pid is None:
            return ""
        try:
            return Path(f"/proc/{pid}/root/run/lab-node/state").read_text().strip()
        except OSError:
            return "dead" if not _alive(pid) else ""

    def console(self) -> str:
        """The node init's stdout/stderr."""
        try:
            return (self.dir / "console.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    def kill(self) -> None:
        """Signal PID 1 (SIGKILL): the kernel then ends the whole PID namespace."""
        for pid in (self.pid, self.unshare_pid):
            if pid and _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def reap(self, deadline: float) -> bool:
        """Wait until PID 1, unshare and every process of the namespace are gone."""
        while True:
            if self._proc is not None and self._proc.poll() is None:
                pass
            gone = not any(p and _alive(p) for p in (self.pid, self.unshare_pid))
            if gone and not self.namespace_pids():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def namespace_pids(self) -> list[int]:
        """Live host PIDs still in this node's PID namespace."""
        if not self.pidns:
            return []
        return [p for p in _pids_in_ns().get(self.pidns, []) if _alive(p)]

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node and wait until it is gone."""
        self.kill()
        if not self.reap(time.monotonic() + timeout):
            raise NodeError(f"{self.name}: processes left after stop: {self.namespace_pids()}")
        self.pid = None
        self.unshare_pid = None
        self._proc = None

    def reboot(self, timeout: float = 30.0) -> None:
        """Stop, keep the disk (upper dirs), drop RAM (/run), start again and wait for sshd."""
        self.stop()
        self.start(timeout)

    def start(self, timeout: float = 30.0) -> None:
        """Boot a stopped node from its disk (a machine powered on again) and wait for sshd."""
        from lab.cluster import wait_ready

        init = self.dir.parent.parent / "init.sh"
        layer = Path((self.dir.parent.parent / "layer").read_text().strip())
        self.prepare()
        self.spawn(layer, init)
        wait_ready([self], timeout)

    # -- inside the node ---------------------------------------------------------------------
    def run(self, cmd: str, user: str = "root", input: str | None = None,
            check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a shell command inside the node (nsenter, not SSH) as `user`."""
        if not self.running():
            raise NodeError(f"{self.name} is not running")
        argv = ["nsenter", "-t", str(self.pid), "-m", "-u", "-p", "--wd=/"]
        if user != "root":
            argv += ["setpriv", "--reuid", user, "--regid", user, "--init-groups",
                     "--reset-env"]
        argv += ["/bin/sh", "-c", cmd]
        env = {"PATH": NODE_PATH, "HOME": "/root", "LANG": "C", "USER": "root"}
        return subprocess.run(argv, input=input, capture_output=True, text=True, env=env,
                              check=check, timeout=timeout)

    def path(self, node_path: str) -> Path:
        """Host path of a node path (through /proc/PID/root; node must run)."""
        return Path(f"/proc/{self.pid}/root") / node_path.lstrip("/")

    def calls(self) -> list[dict]:
        """Parsed /var/lib/lab/calls.log (one dict per stand-in call)."""
        path = self.path("/var/lib/lab/calls.log") if self.running() else \
            self.upper / "var/lib/lab/calls.log"
        try:
            text = path.read_text()
        except OSError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def inject_fail(self, cmd: str, message: str = "") -> None:
        """Make stand-in `cmd` print `message` to stderr and exit 1."""
        message = message or f"{cmd}: injected failure"
        self.run(f"mkdir -p /var/lib/lab/fail && cat > /var/lib/lab/fail/{shlex.quote(cmd)}",
                 input=message, check=True)

    def clear_fail(self, cmd: str) -> None:
        """Undo `inject_fail(cmd)`."""
        self.run(f"rm -f /var/lib/lab/fail/{shlex.quote(cmd)}", check=True)

    def inject_slow(self, cmd: str, seconds: float) -> None:
        """Make stand-in `cmd` sleep `seconds` (after recording its call), then run normally."""
        seconds = float(seconds)
        if not 0 <= seconds < float("inf"):
            raise ValueError(f"inject_slow({cmd!r}): seconds must be >= 0, not {seconds}")
        self.run(f"mkdir -p /var/lib/lab/slow && cat > /var/lib/lab/slow/{shlex.quote(cmd)}",
                 input=f"{seconds!r}\n", check=True)

    def clear_slow(self, cmd: str) -> None:
        """Undo `inject_slow(cmd)`."""
        self.run(f"rm -f /var/lib/lab/slow/{shlex.quote(cmd)}", check=True)

    def inject_hang(self, cmd: str) -> None:
        """Make every later call of stand-in `cmd` report itself in /var/lib/lab/reached/<cmd>
        (see `wait_reached`) and then block until `release_hang(cmd)`. Forgets the calls that
        an earlier injection saw reached."""
        q = shlex.quote(cmd)
        self.run("mkdir -p /var/lib/lab/hang /var/lib/lab/reached && "
                 f"chmod 0777 /var/lib/lab/reached && rm -f /var/lib/lab/reached/{q} && "
                 f"touch /var/lib/lab/hang/{q}", check=True)

    def release_hang(self, cmd: str) -> None:
        """Undo `inject_hang(cmd)`: blocked calls go on normally (within 0.1 s)."""
        self.run(f"rm -f /var/lib/lab/hang/{shlex.quote(cmd)}", check=True)

    def reached(self, cmd: str) -> list[dict]:
        """Calls of `cmd` that reached its hang injection so far: [{"pid", "argv", "t"}]
        (pid as the node sees it)."""
        try:
            text = self.path(f"/var/lib/lab/reached/{cmd}").read_text()
        except OSError:
            return []
        # a line is complete once its newline is written (one O_APPEND write per line)
        return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]

    def wait_reached(self, cmd: str, timeout: float = 30.0) -> list[dict]:
        """Wait until at least one call of `cmd` is blocked by `inject_hang(cmd)`; return
        `reached(cmd)`. Raises TimeoutError if none arrives within `timeout` seconds."""
        if not self.running():
            raise NodeError(f"{self.name} is not running")
        deadline = time.monotonic() + timeout
        while True:
            found = self.reached(cmd)
            if found:
                return found
            if time.monotonic() > deadline:
                hung = self.path(f"/var/lib/lab/hang/{cmd}").exists()
                raise TimeoutError(
                    f"{self.name}: no call of {cmd!r} reached its hang injection within "
                    f"{timeout:g} s (/var/lib/lab/reached/{cmd} is empty; "
                    + ("the hang is injected: was it called?)" if hung else
                       f"/var/lib/lab/hang/{cmd} does not exist: call inject_hang first)"))
            time.sleep(0.02)

    def processes(self) -> list[tuple[int, str]]:
        """Processes running in the node's PID namespace, like `ps -e` inside it: (pid as the
        node sees it, command line), sorted by pid; `[comm]` when argv is empty (as ps shows)."""
        out = []
        for pid in self.namespace_pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    nspid = next(line for line in f if line.startswith("NSpid:"))
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                if raw:
                    cmdline = " ".join(a.decode(errors="replace")
                                       for a in raw.rstrip(b"\0").split(b"\0"))
                else:
                    cmdline = "[" + Path(f"/proc/{pid}/comm").read_text().strip() + "]"
            except (OSError, StopIteration):
                continue  # it ended meanwhile
            if _alive(pid):
                out.append((int(nspid.split()[-1]), cmdline))
        return sorted(out)

    # -- counters (benchmarks) ------------------------------------------------------------
    def last_pid(self) -> int:
        """The highest PID the node's PID namespace has handed out before this call.

        PIDs are handed out in increasing order, so the difference between two readings counts
        the processes created in the node meanwhile (sshd sessions, sudo, shells, commands, and
        `Node.run`'s own shell): use `pids_created_since(mark)`. The reading itself creates one
        process in the node (a shell entered with nsenter that prints its own PID, `$$`: that
        is the next PID, so the answer is `$$ - 1`). /proc/sys/kernel/ns_last_pid is not used:
        read inside a lab node it returned a stale constant on the 6.18 kernel we measured on
        (a fresh `unshare --pid` namespace read it right)."""
        if not self.running():
            raise NodeError(f"{self.name} is not running")
        proc = subprocess.run(["nsenter", "-t", str(self.pid), "-p", "--", "/bin/sh", "-c",
                               "echo $$"], capture_output=True, text=True, timeout=30,
                              env={"PATH": NODE_PATH, "LANG": "C"})
        if proc.returncode != 0 or not proc.stdout.strip().isdigit():
            raise NodeError(f"{self.name}: cannot read the last PID: {proc.stderr.strip()}")
        return int(proc.stdout) - 1

    def pids_created_since(self, mark: int) -> int:
        """Processes created in the node since `mark = node.last_pid()`, not counting the two
        readings' own processes. Exact while the PID counter has not wrapped (the namespace's
        pid_max, 4194304 per namespace on kernels >= 6.14, 32768 before); after a wrap it is an
        estimate (PIDs still in use are skipped by the kernel, not counted here)."""
        delta = self.last_pid() - mark - 1
        if delta < 0:
            delta += self._pid_max() - 1
        return delta

    def _pid_max(self) -> int:
        try:
            return int(self.path("/proc/sys/kernel/pid_max").read_text())
        except (OSError, ValueError):
            return 32768

    def cpu_seconds(self) -> float:
        """CPU time (user + system, seconds) used inside the node so far: for every process of
        its PID namespace, utime + stime + cutime + cstime of /proc/<pid>/stat.

        A process's cutime/cstime hold the times of the children it has reaped (which include
        their own reaped children), so summing the four fields over the living processes
        counts every process once, whoever reaped it: PID 1 (the node's init script, which
        reaps orphans and its own children), the sshd listener (which reaps its sessions), a
        session's shell (its commands), ... Caveats: (1) a process that is still running is
        counted by its own utime/stime only: its children that are still running are counted
        on their own, so nothing is counted twice; (2) a process that ends and is reaped while
        this reads /proc can be missed or counted twice for that instant (a few ticks); (3)
        processes started by `Node.run` are children of nsenter, which lives OUTSIDE the node:
        they count while they run, but once they end their time goes to the host's nsenter,
        not to the node (commands over SSH are reaped inside the node and stay counted); (4)
        the resolution is the clock tick (1/100 s per process)."""
        if not self.running():
            raise NodeError(f"{self.name} is not running")
        ticks = 0
        for pid in sorted(_pids_in_ns().get(self.pidns or "", [])):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # it ended meanwhile
            # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17
            ticks += sum(int(x) for x in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def swap_on(self) -> subprocess.CompletedProcess:
        """Turn swap back on, as a sneaky admin would (through the node's swapon)."""
        return self.run("swapon /dev/mapper/centos-swap")

    def sshd_pids(self) -> list[int]:
        """Host PIDs of every sshd process (listener and sessions) of this node."""
        out = []
        for pid in self.namespace_pids():
            try:
                if os.readlink(f"/proc/{pid}/exe") == "/usr/sbin/sshd":
                    out.append(pid)
            except OSError:
                pass
        return out

    def listener_pid(self) -> int | None:
        """Host PID of the listening sshd (a child of PID 1)."""
        for pid in self.sshd_pids():
            try:
                if _ppid(pid) == self.pid:
                    return pid
            except OSError:
                pass
        return None

    def kill_sshd(self) -> None:
        """Kill every sshd of the node (listener and open sessions); it stays down until
        `open_port()` or `reboot()`."""
        self.run("touch /run/lab-node/port-closed", check=True)
        for pid in self.sshd_pids():
            _kill(pid, signal.SIGKILL)
        _wait_gone(self.sshd_pids)

    def close_port(self) -> None:
        """Stop listening on ADDR:22 (connections are refused); open sessions stay."""
        self.port_closed = True
        if self.running():
            self.run("touch /run/lab-node/port-closed", check=True)
            pid = self.listener_pid()
            if pid:
                _kill(pid, signal.SIGKILL)
                _wait_gone(lambda: [p for p in [pid] if _alive(p)])

    def open_port(self, timeout: float = 10.0) -> None:
        """Start sshd again (after `close_port` or `kill_sshd`) and wait until it listens."""
        from lab.cluster import wait_ready

        self.port_closed = False
        if self.running() and self.listener_pid() is None:
            os.kill(self.pid, signal.SIGUSR1)
            wait_ready([self], timeout)

    def exec_requests(self) -> int:
        """How many `exec` channel requests this node's sshd has logged."""
        try:
            text = self.sshd_log.read_text(errors="replace")
        except OSError:
            return 0
        return len(EXEC_RE.findall(text))

    def to_json(self) -> dict:
        return {"name": self.name, "address": self.address, "pid": self.pid,
                "unshare_pid": self.unshare_pid, "pidns": self.pidns,
                "port_closed": self.port_closed, "sshd_options": self.sshd_options,
                "sshd_env": self.sshd_env, "seed_files": self.seed_files}

    def load_json(self, data: dict) -> None:
        """Restore what `to_json` saved (pids, port state, sshd's extras)."""
        self.pid, self.unshare_pid = data.get("pid"), data.get("unshare_pid")
        self.pidns, self.port_closed = data.get("pidns"), data.get("port_closed", False)
        self.sshd_options = list(data.get("sshd_options", []))
        self.sshd_env = dict(data.get("sshd_env", {}))
        self.seed_files = dict(data.get("seed_files", {}))


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids_fn, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while pids_fn() and time.monotonic() < deadline:
        time.sleep(0.01)


def _pids_in_ns() -> dict[str, list[int]]:
    """Map pid-namespace link -> host PIDs, for every process."""
    out: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                out.setdefault(os.readlink(f"/proc/{entry}/ns/pid"), []).append(int(entry))
    return out
