"""Engine and prepare-nodes behaviour tests over the lab: shared helpers.

Every check of a node's state here looks from INSIDE the node (``Node.run`` through nsenter, the
node's upper dirs, its stand-in call log, its sshd log), never at the toolkit's own report.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from bootstrap.commands import CommonOptions, prepare_nodes
from bootstrap.interrupt import Interrupt
from bootstrap.report import Reporter
from lab.cluster import Lab
from lab.node import Node
from lab.pytest_plugin import module_lab  # noqa: F401 (re-exported for the tests)

ROOT = Path(__file__).resolve().parents[2]
INVOKE = ROOT / ".venv" / "bin" / "invoke"

DOCKER_VERSION = "19.03.15"
KUBE_VERSION = "1.20.10"
IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack_ipv4")
BRIDGE_SYSCTLS = (
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.ip_forward",
)
BACKUP = ".k8s-bootstrap.bak"

# What prepare-nodes leaves on a node of each lab flavour (bootstrap/platforms.py says why).
EXPECT = {
    "el7": {"base_repo": "/etc/yum.repos.d/CentOS-Base.repo", "base_url": "base/",
            "docker_url": "docker-ce/",
            "conntrack": "nf_conntrack_ipv4", "ipvs_script": True, "selinux": "disabled",
            "docker": DOCKER_VERSION, "tools": ("conntrack-tools", "socat")},
    "el8": {"base_repo": "/etc/yum.repos.d/CentOS-Linux-BaseOS.repo",
            "base_url": "el8/BaseOS/$basearch/os/", "docker_url": "el8/docker-ce/",
            "conntrack": "nf_conntrack",
            "ipvs_script": True, "selinux": "disabled", "docker": "20.10.8",
            "tools": ("iproute-tc", "conntrack-tools", "socat")},
    "el9": {"base_repo": "/etc/yum.repos.d/rocky.repo", "base_url": "el9/BaseOS/$basearch/os/",
            "docker_url": "el9/docker-ce/",
            "conntrack": "nf_conntrack", "ipvs_script": False, "selinux": "permissive",
            "docker": "20.10.21", "tools": ("iproute-tc", "conntrack-tools", "socat")},
}


def ipvs_modules(flavour: str) -> tuple[str, ...]:
    return (*IPVS_MODULES[:4], EXPECT[flavour]["conntrack"])


# -- labs ----------------------------------------------------------------------------------------
# -- running the toolkit -------------------------------------------------------------------------
class Run:
    """One in-process prepare-nodes run: exit code, console text, per-host logs, report."""

    def __init__(self, rc: int, console: str, log_dir: Path | None, report: Path | None) -> None:
        self.rc = rc
        self.console = console
        self.log_dir = log_dir
        self.report_path = report

    def host_log(self, name: str) -> str:
        assert self.log_dir is not None
        path = self.log_dir / f"{name}.log"
        return path.read_text() if path.exists() else ""

    @property
    def report(self) -> dict:
        assert self.report_path is not None
        return json.loads(self.report_path.read_text())

    def statuses(self, host: str) -> dict[str, str]:
        """step name -> status for one host, from the JSON report."""
        return {s["name"]: s["status"] for s in self.report["hosts"][host]["steps"]}

    def changed(self, host: str) -> int:
        return sum(s == "changed" for s in self.statuses(host).values())

    def all_text(self) -> str:
        """Console + every log file + the report: everything the run wrote."""
        parts = [self.console]
        if self.log_dir is not None:
            parts += [p.read_text(errors="replace") for p in sorted(self.log_dir.rglob("*"))
                      if p.is_file()]
        if self.report_path is not None and self.report_path.exists():
            parts.append(self.report_path.read_text())
        return "\n".join(parts)


def prepare(inventory: Path | str, workdir: Path, *, dry_run: bool = False,
            limit: str | None = None, parallel: int | None = None,
            break_lease: bool = False) -> Run:
    """``prepare_nodes`` in-process, console captured, logs and a JSON report under workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    n = len(list(workdir.glob("report-*.json")))
    report = workdir / f"report-{n}.json"
    out = io.StringIO()
    reporter = Reporter(out=out, log_dir=workdir / "logs", command="prepare-nodes",
                        show_diff=dry_run)
    opts = CommonOptions(inventory=str(inventory), limit=limit, parallel=parallel,
                         report=str(report), log_dir=None, dry_run=dry_run,
                         break_lease=break_lease)
    rc = prepare_nodes(opts, reporter=reporter)
    return Run(rc, out.getvalue(), reporter.log_dir, report)


def write_inventory(src: Path, dst: Path, **ssh: object) -> Path:
    """A copy of a lab inventory with some ``ssh`` keys replaced (None removes the key)."""
    data = yaml.safe_load(src.read_text())
    for key, value in ssh.items():
        if value is None:
            data["ssh"].pop(key, None)
        else:
            data["ssh"][key] = value
    dst.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


# -- evidence from the nodes ---------------------------------------------------------------------
def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: type, mode, owner, size, content hash, link target, inode and
    mtime. Equal snapshots mean byte-identical and not even rewritten with the same bytes."""
    snap: dict[str, tuple] = {}
    if not root.exists():
        return snap
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                snap[rel] = ("f", st.st_mode, st.st_uid, st.st_gid, st.st_size, digest,
                             st.st_ino, st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                snap[rel] = ("l", os.readlink(p), st.st_ino)
            elif stat.S_ISDIR(st.st_mode):
                snap[rel] = ("d", st.st_mode, st.st_uid, st.st_gid)
            else:  # overlay whiteouts are character devices 0/0
                snap[rel] = ("o", st.st_mode, st.st_rdev)
    return snap


def disk_snapshot(node: Node) -> dict[str, dict[str, tuple]]:
    """What the node has on "disk" in /etc and /usr (its overlay upper dirs)."""
    return {top: tree_snapshot(node.upper / top) for top in ("etc", "usr")}


def snapshot_diff(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [k for k in keys if before.get(k) != after.get(k)]


_SYSTEMCTL_MUTATING = {"enable", "disable", "start", "stop", "restart", "reload", "try-restart",
                       "reload-or-restart", "mask", "unmask", "daemon-reload", "set-default",
                       "isolate", "kill", "reset-failed", "preset"}
_YUM_MUTATING = {"install", "reinstall", "remove", "erase", "update", "upgrade", "downgrade",
                 "clean", "makecache", "localinstall", "group", "groupinstall"}


def is_mutating(call: dict) -> bool:
    """A stand-in call that changes the node (installs, unit state, modules, sysctls, ...)."""
    cmd, argv = call["cmd"], call["argv"]
    words = [a for a in argv if not a.startswith("-")]
    if cmd in ("yum", "dnf"):
        return bool(_YUM_MUTATING & set(words))
    if cmd == "systemctl":
        return bool(_SYSTEMCTL_MUTATING & set(words))
    if cmd == "sysctl":
        return any(a in ("-w", "--write", "--system", "-p", "--load") or a.startswith("-p")
                   or "=" in a for a in argv)
    if cmd in ("modprobe", "insmod", "rmmod", "setenforce", "swapoff", "swapon",
               "yum-config-manager", "iptables-restore", "ipvsadm"):
        return True
    if cmd == "hostnamectl":
        return any(w.startswith("set-") for w in words)
    if cmd == "firewall-cmd":
        return any(a.startswith(("--add", "--remove", "--reload", "--set")) for a in argv)
    if cmd == "docker":
        return bool({"pull", "rmi", "tag", "run", "rm", "load"} & set(words))
    return False


def mutating_calls(node: Node, since: int = 0) -> list[str]:
    return [f"{c['cmd']} {' '.join(c['argv'])}" for c in node.calls()[since:] if is_mutating(c)]


def connections(node: Node) -> int:
    """Authenticated SSH connections in the node's sshd log (port probes not counted)."""
    try:
        return node.sshd_log.read_text(errors="replace").count("Accepted publickey for ")
    except OSError:
        return 0


def probe(node: Node, commands: dict[str, str]) -> dict[str, tuple[int, str]]:
    """Run several shell commands inside the node in one nsenter: name -> (rc, stdout)."""
    mark = "@@probe@@"
    script = "\n".join(
        f"printf '%s\\n' {shlex.quote(mark + ' ' + name)}; ( {cmd} ) 2>&1; "
        f"printf '\\n{mark}rc %s\\n' $?"
        for name, cmd in commands.items()
    )
    res = node.run(script, timeout=120)
    out: dict[str, tuple[int, str]] = {}
    for chunk in res.stdout.split(mark + " ")[1:]:
        name, _, rest = chunk.partition("\n")
        body, _, rc = rest.rpartition(mark + "rc ")
        out[name] = (int(rc.split()[0]), body.strip())
    assert set(out) == set(commands), res.stderr
    return out


def check_prepared(node: Node, the_lab: Lab, *, rebooted: bool = False) -> list[str]:
    """Every setting prepare-nodes promises, checked from inside the node; returns problems."""
    flavour = getattr(the_lab, "os", "el7")
    exp = EXPECT[flavour]
    mods = ipvs_modules(flavour)
    cmds = {
        "hostname": "hostname",
        "etc-hostname": "cat /etc/hostname",
        "hosts": "cat /etc/hosts",
        "base-repo": f"cat {exp['base_repo']}",
        "docker-repo": "cat /etc/yum.repos.d/docker-ce.repo",
        "kube-repo": "cat /etc/yum.repos.d/kubernetes.repo",
        "rpm": "rpm -q --qf '%{NAME} %{VERSION}\\n' docker-ce docker-ce-cli containerd.io "
               "kubelet kubeadm kubectl chrony ipset ipvsadm " + " ".join(exp["tools"]),
        "chronyd": "systemctl is-enabled chronyd.service; systemctl is-active chronyd.service",
        "firewalld": "systemctl is-enabled firewalld.service; "
                     "systemctl is-active firewalld.service",
        "getenforce": "getenforce",
        "selinux-config": "grep '^SELINUX=' /etc/selinux/config",
        "swaps": "cat /proc/swaps",
        "fstab-swap": "grep -E '[[:space:]]swap[[:space:]]' /etc/fstab",
        "lsmod": "lsmod",
        "modules-k8s": "cat /etc/modules-load.d/k8s.conf",
        "modules-ipvs": "cat /etc/modules-load.d/ipvs.conf",
        "ipvs-script": "stat -c %a /etc/sysconfig/modules/ipvs.modules && "
                       "cat /etc/sysconfig/modules/ipvs.modules",
        "sysctl-conf": "cat /etc/sysctl.d/k8s.conf",
        **{f"sysctl {k}": f"sysctl -n {k}" for k in BRIDGE_SYSCTLS},
        "daemon.json": "cat /etc/docker/daemon.json",
        "docker": "systemctl is-enabled docker.service; systemctl is-active docker.service",
        "docker-driver": "docker info --format '{{.CgroupDriver}}'",
        "docker-info": "docker info",
        "kubelet": "systemctl is-enabled kubelet.service",
        "kubelet-sysconfig": "cat /etc/sysconfig/kubelet",
        "temp-files": "find /etc -name '*.k8s-bootstrap.??????' | head",
    }
    got = probe(node, cmds)
    out = {k: v[1] for k, v in got.items()}
    problems: list[str] = []

    def want(cond: bool, what: str) -> None:
        if not cond:
            problems.append(f"{node.name}: {what}")

    want(out["hostname"] == node.name, f"hostname is {out['hostname']!r}")
    want(out["etc-hostname"] == node.name, f"/etc/hostname is {out['etc-hostname']!r}")
    block = re.search(r"# BEGIN k8s-bootstrap managed block\n(.*?)# END k8s-bootstrap managed "
                      r"block\n?", out["hosts"] + "\n", re.S)
    want(block is not None, "/etc/hosts has no managed block")
    if block:
        wanted = {f"{n.address} {n.name}" for n in the_lab.nodes}
        want(set(block.group(1).splitlines()) == wanted, f"hosts block is {block.group(1)!r}")
    want("localhost" in out["hosts"], "/etc/hosts lost its localhost lines")
    url = the_lab.mirror_url
    want(f"baseurl={url}{exp['base_url']}" in out["base-repo"],
         f"{exp['base_repo']} not on the mirror")
    want(f"baseurl={url}{exp['docker_url']}" in out["docker-repo"],
         "docker-ce.repo not on the mirror")
    want(f"baseurl={url}kubernetes/" in out["kube-repo"], "kubernetes.repo not on the mirror")
    want(re.search(r"(?m)^exclude=.*\bkubelet\b.*\bkubeadm\b.*\bkubectl\b", out["kube-repo"])
         is not None, "kubernetes.repo does not exclude kube*")
    versions = dict(ln.split() for ln in out["rpm"].splitlines() if len(ln.split()) == 2)
    for pkg, v in (("docker-ce", exp["docker"]), ("docker-ce-cli", exp["docker"]),
                   ("kubelet", KUBE_VERSION), ("kubeadm", KUBE_VERSION),
                   ("kubectl", KUBE_VERSION)):
        want(versions.get(pkg) == v, f"rpm -q {pkg}: {versions.get(pkg)} (want {v})")
    for pkg in ("containerd.io", "chrony", "ipset", "ipvsadm", *exp["tools"]):
        want(pkg in versions, f"{pkg} not installed ({out['rpm']!r})")
    want(out["chronyd"].split() == ["enabled", "active"], f"chronyd: {out['chronyd']!r}")
    want(out["firewalld"].split() == ["disabled", "inactive"], f"firewalld: {out['firewalld']!r}")
    # setenforce 0 now; the config's `disabled` takes effect at the next boot (EL9: permissive).
    after = "Disabled" if exp["selinux"] == "disabled" else "Permissive"
    want(out["getenforce"] == (after if rebooted else "Permissive"),
         f"getenforce: {out['getenforce']!r}")
    want(out["selinux-config"] == f"SELINUX={exp['selinux']}",
         f"selinux config: {out['selinux-config']}")
    want(len(out["swaps"].splitlines()) == 1 and out["swaps"].startswith("Filename"),
         f"swap is on: {out['swaps']!r}")
    want(bool(out["fstab-swap"]) and all(ln.startswith("#") for ln in
                                         out["fstab-swap"].splitlines()),
         f"fstab swap line not commented: {out['fstab-swap']!r}")
    loaded = {ln.split()[0] for ln in out["lsmod"].splitlines()[1:] if ln.strip()}
    for module in ("br_netfilter", "overlay", *mods):
        want(module in loaded, f"module {module} not loaded")
    conf = [ln for ln in out["modules-k8s"].splitlines() if ln and not ln.startswith("#")]
    want(conf == ["br_netfilter", "overlay"], f"modules-load.d/k8s.conf: {conf}")
    conf = [ln for ln in out["modules-ipvs"].splitlines() if ln and not ln.startswith("#")]
    want(conf == list(mods), f"modules-load.d/ipvs.conf: {conf}")
    script = out["ipvs-script"].splitlines()
    if exp["ipvs_script"]:
        want(script[:1] == ["755"], f"ipvs.modules mode {script[:1]}")
        for module in mods:
            want(f"modprobe -- {module}" in script, f"ipvs.modules lacks {module}")
    else:  # nothing runs /etc/sysconfig/modules at boot there: not written
        want(got["ipvs-script"][0] != 0, f"ipvs.modules written: {script}")
    for key in BRIDGE_SYSCTLS:
        want(re.search(rf"(?m)^{re.escape(key)} = 1$", out["sysctl-conf"]) is not None,
             f"sysctl.d/k8s.conf lacks {key} = 1")
        want(out[f"sysctl {key}"] == "1", f"sysctl -n {key} = {out[f'sysctl {key}']!r}")
    try:
        daemon = json.loads(out["daemon.json"])
    except ValueError:
        daemon = {}
    want("native.cgroupdriver=systemd" in daemon.get("exec-opts", []),
         f"daemon.json: {out['daemon.json']!r}")
    want(out["docker"].split() == ["enabled", "active"], f"docker: {out['docker']!r}")
    want(out["docker-driver"] == "systemd", f"docker cgroup driver {out['docker-driver']!r}")
    want(re.search(r"Cgroup Driver: systemd", out["docker-info"]) is not None,
         "docker info does not report the systemd cgroup driver")
    want(out["kubelet"] == "enabled", f"kubelet: {out['kubelet']!r}")
    want(re.search(rf"(?m)^KUBELET_EXTRA_ARGS=--node-ip={re.escape(node.address)}$",
                   out["kubelet-sysconfig"]) is not None,
         f"/etc/sysconfig/kubelet: {out['kubelet-sysconfig']!r}")
    want(out["temp-files"] == "", f"temp files left: {out['temp-files']!r}")
    return problems


def assert_noop_rerun(the_lab: Lab, workdir: Path):
    """A re-run of prepare-nodes changes nothing and makes no mutating stand-in call."""
    calls = {n.name: len(n.calls()) for n in the_lab.nodes}
    again = prepare(the_lab.inventory_path, workdir)
    assert again.rc == 0, again.console
    for node in the_lab.nodes:
        assert again.changed(node.name) == 0, again.console
        assert mutating_calls(node, since=calls[node.name]) == []
    return again


def press_when_reached(node: Node, cmd: str, work: Callable[[Interrupt], object],
                       timeout: float = 60) -> tuple[object, float]:
    """Run ``work(interrupt)`` in a thread with a hang on stand-in ``cmd`` in ``node``; press
    Ctrl-C (in-process) once a call of ``cmd`` is held, release it; return what ``work``
    returned and how long after the press it ended (the test fails if it did not within 30 s)."""
    intr = Interrupt(say=lambda text: None)
    box: dict = {}
    node.inject_hang(cmd)
    try:
        worker = threading.Thread(target=lambda: box.update(result=work(intr)))
        worker.start()
        node.wait_reached(cmd, timeout=timeout)
        pressed = time.monotonic()
        intr.press()
        worker.join(30)
        stopped_after = time.monotonic() - pressed
    finally:
        node.release_hang(cmd)
    assert not worker.is_alive(), f"still running 30 s after Ctrl-C (held in {cmd})"
    return box["result"], stopped_after
