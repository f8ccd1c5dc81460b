"""Shared helpers for the lab's stand-in commands (installed at /usr/lib/lab/labcommon.py).

Runs under Debian's ``/usr/bin/python3 -S``: standard library only. Every path is the path the
node sees; a stand-in never touches the host's kernel state.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUN = Path("/run/lab")
VAR = Path("/var/lib/lab")
CALLS = VAR / "calls.log"
FAIL = VAR / "fail"
SLOW = VAR / "slow"
HANG = VAR / "hang"
REACHED = VAR / "reached"
HANG_POLL = 0.05
JOURNAL = VAR / "journal"
LIB = Path("/usr/lib/lab")
HOOKS = LIB / "hooks"
FLAVOUR_FILE = LIB / "flavour.json"  # written by the layer from lab/flavours.py


def _flavour() -> dict:
    """The node's flavour facts (kernel, modules, ...); {} outside a lab node (el7 then)."""
    try:
        return json.loads(FLAVOUR_FILE.read_text())
    except (OSError, ValueError):
        return {}


FLAVOUR = _flavour()
KERNEL = FLAVOUR.get("kernel", "3.10.0-1160.el7.x86_64")
KERNEL_VERSION = FLAVOUR.get("kernel_version", "#1 SMP Mon Oct 19 16:18:59 UTC 2020")


def record(cmd: str, argv: list[str]) -> None:
    """Append one JSON line for this call to the node's call log (best effort)."""
    line = json.dumps({"t": time.time(), "uid": os.getuid(), "cmd": cmd, "argv": argv})
    try:
        fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError:
        return
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def start(cmd: str | None = None) -> list[str]:
    """Record the call and honour the fault injections; return argv without argv[0].

    Every stand-in (and every payload command) calls this first, with its basename."""
    name = cmd or os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    record(name, argv)
    inject(name, argv)
    return argv


def inject(name: str, argv: list[str]) -> None:
    """Honour /var/lib/lab/{slow,hang,fail}/<name>, in that order (see lab/CONTRACT.md).

    slow: sleep its content (seconds, a float), then go on. hang: append a line to
    /var/lib/lab/reached/<name>, then block until the hang file is removed, then go on. fail:
    print its content to stderr and exit 1. No signal is caught: SIGTERM/SIGKILL (e.g. from
    `timeout`) end a slow or hung call like any process."""
    slow = SLOW / name
    try:
        text = slow.read_text()
    except FileNotFoundError:
        pass
    except OSError as exc:
        die(f"lab: {slow}: {exc.strerror}")
    else:
        try:
            seconds = float(text.strip())
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds < float("inf"):
            die(f"lab: {slow}: not a number of seconds: {text.strip()!r}")
        time.sleep(seconds)
    hang = HANG / name
    if hang.exists():
        reached(name, argv)
        while hang.exists():
            time.sleep(HANG_POLL)
    fail = FAIL / name
    if fail.exists():
        try:
            text = fail.read_text()
        except OSError:
            text = f"{name}: injected failure\n"
        sys.stderr.write(text if text.endswith("\n") or not text else text + "\n")
        sys.exit(1)


def reached(name: str, argv: list[str]) -> None:
    """Append {"pid", "argv", "t"} to /var/lib/lab/reached/<name> (any user may write it)."""
    line = json.dumps({"pid": os.getpid(), "argv": argv, "t": time.time()}) + "\n"
    path = REACHED / name
    try:
        if not REACHED.is_dir():
            REACHED.mkdir(parents=True, exist_ok=True)
            os.chmod(REACHED, 0o777)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        die(f"lab: cannot report {name} as reached in {path}: {exc.strerror}")
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o666)
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def die(msg: str, rc: int = 1) -> None:
    """Print msg to stderr and exit with rc."""
    if msg:
        sys.stderr.write(msg if msg.endswith("\n") else msg + "\n")
    sys.stdout.flush()
    sys.exit(rc)


def is_root() -> bool:
    """True when running as uid 0."""
    return os.geteuid() == 0


@contextmanager
def locked(name: str = "state", shared: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on /run/lab/.<name>.lock (serialises state updates). `shared`:
    a read lock for a read-only command, which never creates the lock file (or anything else)."""
    path = RUN / f".{name}.lock"
    if shared:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)
        return
    try:
        RUN.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # non-root: lock read-only, or not at all (it will not write)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            yield
            return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_json(path: Path, default: object) -> object:
    """Read a JSON file, or return default when it is missing or broken."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_text(path: Path, text: str, mode: int = 0o644, inplace: bool = False) -> None:
    """Write a file atomically (temp file + rename), or in place (keeps bind mounts of it valid)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if inplace and path.exists():
        with open(path, "r+") as fh:
            fh.truncate(0)
            fh.write(text)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_json(path: Path, data: object, sort_keys: bool = True) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(data, indent=1, sort_keys=sort_keys) + "\n")


def journal(unit: str, message: str) -> None:
    """Append a journal line for unit (read back by journalctl -u)."""
    JOURNAL.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%b %d %H:%M:%S")
    host = hostname()
    ident = unit.rsplit(".", 1)[0]
    with open(JOURNAL / f"{unit}.log", "a") as fh:
        for line in message.splitlines() or [""]:
            fh.write(f"{stamp} {host} {ident}[{os.getpid()}]: {line}\n")


def hostname() -> str:
    """The node's current (UTS) hostname."""
    return os.uname().nodename


# ---- kernel modules -------------------------------------------------------------------------

# module -> modules it depends on (a 3.10 el7 kernel's view of the ones the lab knows; the
# other flavours' tables derive from it in lab/flavours.py and come in flavour.json).
EL7_MODULES: dict[str, list[str]] = {
    "br_netfilter": ["bridge"],
    "bridge": ["stp", "llc"],
    "stp": ["llc"],
    "llc": [],
    "overlay": [],
    "ip_vs": ["nf_conntrack", "libcrc32c"],
    "ip_vs_rr": ["ip_vs"],
    "ip_vs_wrr": ["ip_vs"],
    "ip_vs_sh": ["ip_vs"],
    "ip_vs_lc": ["ip_vs"],
    "ip_vs_wlc": ["ip_vs"],
    "nf_conntrack": [],
    "nf_conntrack_ipv4": ["nf_conntrack", "nf_defrag_ipv4"],
    "nf_conntrack_ipv6": ["nf_conntrack", "nf_defrag_ipv6"],
    "nf_defrag_ipv4": [],
    "nf_defrag_ipv6": [],
    "nf_nat": ["nf_conntrack"],
    "nf_nat_ipv4": ["nf_nat"],
    "nf_nat_masquerade_ipv4": ["nf_nat"],
    "ipt_MASQUERADE": ["nf_nat_masquerade_ipv4"],
    "xt_conntrack": ["nf_conntrack"],
    "xt_addrtype": [],
    "xt_comment": [],
    "xt_mark": [],
    "iptable_nat": ["nf_nat_ipv4", "ip_tables"],
    "iptable_filter": ["ip_tables"],
    "iptable_mangle": ["ip_tables"],
    "ip_tables": [],
    "ip6_tables": [],
    "ip_set": [],
    "libcrc32c": [],
    "veth": [],
    "vxlan": [],
    "xfs": ["libcrc32c"],
    "dm_mod": [],
}
MODULES: dict[str, list[str]] = FLAVOUR.get("modules") or EL7_MODULES
CONNTRACK_MODULE = FLAVOUR.get("conntrack_module", "nf_conntrack_ipv4")
SIZES = {name: 12288 + 4096 * (len(name) * 7 % 23) for name in MODULES}
BOOT_MODULES = ["xfs", "libcrc32c", "dm_mod", "ip_tables", "iptable_filter"]
MODULES_FILE = RUN / "modules"


def module_name(name: str) -> str:
    """Normalise a module name the way kmod does ('-' and '_' are the same)."""
    return name.replace("-", "_")


def loaded_modules() -> list[str]:
    """Loaded modules, in load order (newest last)."""
    try:
        return [m for m in MODULES_FILE.read_text().split() if m]
    except OSError:
        return []


def save_modules(mods: list[str]) -> None:
    """Persist the loaded module list."""
    write_text(MODULES_FILE, "".join(m + "\n" for m in mods))


# ---- sysctl ---------------------------------------------------------------------------------

BASE_SYSCTL = {
    "kernel.hostname": None,  # from the UTS namespace
    "kernel.osrelease": KERNEL,
    "kernel.ostype": "Linux",
    "kernel.pid_max": "32768",
    "kernel.panic": "0",
    "kernel.sysrq": "16",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
    "fs.file-max": "379224",
    "fs.inotify.max_user_watches": "8192",
    "fs.inotify.max_user_instances": "128",
    "fs.may_detach_mounts": "0",
    "fs.protected_hardlinks": "1",
    "fs.protected_symlinks": "1",
    "vm.swappiness": "30",
    "vm.overcommit_memory": "0",
    "vm.panic_on_oom": "0",
    "vm.max_map_count": "65530",
    "net.core.somaxconn": "128",
    "net.ipv4.ip_forward": "0",
    "net.ipv4.ip_local_port_range": "32768\t60999",
    "net.ipv4.conf.all.forwarding": "0",
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.default.rp_filter": "1",
    "net.ipv4.conf.all.route_localnet": "0",
    "net.ipv4.tcp_keepalive_time": "7200",
    "net.ipv4.neigh.default.gc_thresh1": "128",
    "net.ipv6.conf.all.forwarding": "0",
    "net.ipv6.conf.all.disable_ipv6": "0",
    "net.ipv6.conf.default.disable_ipv6": "0",
}
MODULE_SYSCTL: dict[str, dict[str, str]] = {
    "br_netfilter": {
        "net.bridge.bridge-nf-call-arptables": "1",
        "net.bridge.bridge-nf-call-ip6tables": "1",
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.bridge.bridge-nf-filter-pppoe-tagged": "0",
        "net.bridge.bridge-nf-filter-vlan-tagged": "0",
        "net.bridge.bridge-nf-pass-vlan-input-dev": "0",
    },
    "nf_conntrack": {
        "net.netfilter.nf_conntrack_max": "65536",
        "net.netfilter.nf_conntrack_tcp_timeout_established": "432000",
        "net.netfilter.nf_conntrack_tcp_timeout_close_wait": "60",
        "net.nf_conntrack_max": "65536",
    },
    "ip_vs": {
        "net.ipv4.vs.conntrack": "0",
        "net.ipv4.vs.conn_reuse_mode": "1",
        "net.ipv4.vs.expire_nodest_conn": "0",
    },
}
SYSCTL_FILE = RUN / "sysctl.json"


def sysctl_defaults() -> dict[str, str]:
    """Every existing key with its boot default, given the loaded modules."""
    keys = {k: (v if v is not None else hostname()) for k, v in BASE_SYSCTL.items()}
    for mod in loaded_modules():
        keys.update(MODULE_SYSCTL.get(mod, {}))
    return keys


def sysctl_values() -> dict[str, str]:
    """Current values of every existing key."""
    values = sysctl_defaults()
    stored = read_json(SYSCTL_FILE, {})
    if isinstance(stored, dict):
        for key, val in stored.items():
            if key in values and key != "kernel.hostname":
                values[key] = str(val)
    return values


def sysctl_store(updates: dict[str, str]) -> None:
    """Persist runtime values (caller holds the lock)."""
    stored = read_json(SYSCTL_FILE, {})
    if not isinstance(stored, dict):
        stored = {}
    stored.update(updates)
    write_json(SYSCTL_FILE, stored)


def sysctl_forget(module: str) -> None:
    """Drop stored values of a module's keys (the module was unloaded)."""
    keys = MODULE_SYSCTL.get(module, {})
    stored = read_json(SYSCTL_FILE, {})
    if isinstance(stored, dict) and any(k in stored for k in keys):
        write_json(SYSCTL_FILE, {k: v for k, v in stored.items() if k not in keys})


# ---- units ----------------------------------------------------------------------------------

UNIT_DIRS = [
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/usr/lib/systemd/system"),
]
ACTIVE = RUN / "units"
UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".mount",
    ".path",
    ".slice",
    ".scope",
    ".device",
    ".swap",
    ".automount",
)


def unit_name(name: str) -> str:
    """'docker' -> 'docker.service'; names with a unit suffix stay."""
    return name if name.endswith(UNIT_SUFFIXES) else name + ".service"


def unit_active(unit: str) -> bool:
    """True when the unit is active."""
    return (ACTIVE / unit_name(unit)).exists()


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess:
    """Run another command of the node (another stand-in, a hook)."""
    return subprocess.run(argv, **kw)  # type: ignore[call-overload]


# ---- network state (ip, iptables, ipvsadm, ipset stand-ins) -----------------------------------
# The formats are shared with lab/payloads/kubelet/usr/lib/lab/k8s/netfx.py, which plays what
# kube-proxy and flannel do to a node (see lab/k8s/STATE.md).

LINKS_FILE = RUN / "links.json"  # [{name, type, mtu, mac, up, addrs: ["a.b.c.d/n"]}]
IPTABLES_FILE = RUN / "iptables.json"  # {table: {chain: {policy: "ACCEPT"|"-", rules: [spec]}}}
IPVS_FILE = RUN / "ipvs.json"  # {"TCP 10.96.0.1:443": {sched: "rr", reals: ["a.b.c.d:port"]}}
IPSET_FILE = RUN / "ipset.json"  # {name: {type: "hash:ip,port", members: [...]}}
IPTABLES_BUILTIN = {
    "filter": ["INPUT", "FORWARD", "OUTPUT"],
    "nat": ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
    "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    "raw": ["PREROUTING", "OUTPUT"],
    "security": ["INPUT", "FORWARD", "OUTPUT"],
}
_XT_PLAIN = set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ipt_spec(args: list[str]) -> str:
    """A rule's stored text: its argv joined, the --comment value quoted like iptables-save
    1.4.21 does (xtables_save_string: quoted unless it is only [A-Za-z0-9_-])."""
    out = []
    for i, a in enumerate(args):
        comment = i and args[i - 1] == "--comment" and not set(a) <= _XT_PLAIN
        if comment or not a or any(c.isspace() for c in a):  # e.g. --log-prefix "x: "
            a = '"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(a)
    return " ".join(out)


def ipt_split(spec: str) -> list[str]:
    """The argv of a stored rule (inverse of ipt_spec)."""
    import shlex

    try:
        return shlex.split(spec)
    except ValueError:
        return spec.split()


def own_address() -> str | None:
    """The node's address: its hostname's entry in /etc/hosts."""
    name = hostname()
    try:
        for line in Path("/etc/hosts").read_text().splitlines():
            f = line.split("#")[0].split()
            ok = len(f) > 1 and f[0] != "127.0.0.1" and ":" not in f[0]
            if ok and name in f[1:]:
                return f[0]
    except OSError:
        pass
    return None


def default_links() -> list[dict]:
    """The links of a freshly booted node: lo and eth0 (its lab address /24)."""
    try:
        mac = Path("/sys/class/net/eth0/address").read_text().strip()
    except OSError:
        mac = "52:54:00:12:34:56"
    addr = own_address()
    return [
        {"name": "lo", "type": "loopback", "mtu": 65536, "mac": "00:00:00:00:00:00", "up": True,
         "addrs": ["127.0.0.1/8"]},
        {"name": "eth0", "type": "ether", "mtu": 1500, "mac": mac, "up": True,
         "addrs": [f"{addr}/24"] if addr else []},
    ]


def read_links() -> list[dict]:
    """The node's links (defaults until something changed them)."""
    data = read_json(LINKS_FILE, None)
    return data if isinstance(data, list) else default_links()


K8S_RUNNING = RUN / "kubelet" / "running"  # kept by the kubelet unit hooks (lab/k8s/STATE.md)


def k8s_sync() -> None:
    """Let this node's kubernetes pods (kube-proxy, flannel) catch up with the cluster before a
    network stand-in reads or changes the state they own. A no-op unless the lab's kubelet
    package is installed and its unit is active; never fails the calling command."""
    if not K8S_RUNNING.exists() or not os.path.exists("/usr/lib/lab/k8s/netfx.py"):
        return
    try:
        from k8s import netfx  # type: ignore[import-not-found]

        netfx.sync_here()
    except Exception:  # the stand-in's own job comes first
        pass


# ---- misc -----------------------------------------------------------------------------------


def swap_lines() -> list[str]:
    """Active swap entries (lines of the fake /proc/swaps without the header)."""
    try:
        return [ln for ln in (RUN / "swaps").read_text().splitlines()[1:] if ln.strip()]
    except OSError:
        return []


SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\tUsed\tPriority\n"


SELINUXFS = Path("/sys/fs/selinux")  # a tmpfs dir in the node, like the kernel's selinuxfs


def selinux_mode() -> str:
    """The running mode, as the kernel shows it: /sys/fs/selinux/enforce holds 1 (Enforcing)
    or 0 (Permissive) and is absent while SELinux is disabled (selinuxfs not mounted)."""
    try:
        value = (SELINUXFS / "enforce").read_text().strip()
    except OSError:
        return "Disabled"
    return "Enforcing" if value == "1" else "Permissive"


def set_selinux_mode(mode: str) -> None:
    """Set the running mode (boot, setenforce): Enforcing, Permissive or Disabled."""
    enforce = SELINUXFS / "enforce"
    if mode == "Disabled":
        enforce.unlink(missing_ok=True)
        return
    SELINUXFS.mkdir(parents=True, exist_ok=True)
    enforce.write_text("1" if mode == "Enforcing" else "0")
    os.chmod(enforce, 0o644)


def selinux_config_mode() -> str:
    """SELinux mode from /etc/selinux/config: Enforcing, Permissive or Disabled."""
    mode = "disabled"
    try:
        for line in Path("/etc/selinux/config").read_text().splitlines():
            line = line.strip()
            if line.startswith("SELINUX="):
                mode = line.split("=", 1)[1].strip().strip("\"'").lower()
    except OSError:
        pass
    return {"enforcing": "Enforcing", "permissive": "Permissive"}.get(mode, "Disabled")


def os_pretty() -> str:
    """PRETTY_NAME from /etc/os-release."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "CentOS Linux 7 (Core)"


def firewalld_zone(path: Path = Path("/etc/firewalld/zones/public.xml")) -> dict[str, list[str]]:
    """Services and ports of a zone file (falls back to the shipped public zone)."""
    import re

    for p in (path, Path("/usr/lib/firewalld/zones/public.xml")):
        try:
            text = p.read_text()
        except OSError:
            continue
        services = re.findall(r'<service name="([^"]+)"/>', text)
        ports = [
            f"{port}/{proto}"
            for proto, port in re.findall(r'<port protocol="([^"]+)" port="([^"]+)"/>', text)
        ]
        ports += [
            f"{port}/{proto}"
            for port, proto in re.findall(r'<port port="([^"]+)" protocol="([^"]+)"/>', text)
        ]
        return {"services": services, "ports": ports}
    return {"services": ["ssh", "dhcpv6-client"], "ports": []}
