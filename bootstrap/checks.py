"""Preflight checks (kubeadm style): named, each an error or a warning, skippable by name.

Facts for the checks are gathered with the steps' facts in the same round trip; the checks
themselves are pure functions over every node's facts, so uniqueness and clock skew are judged
across nodes before anything changes anywhere.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from . import facts as F
from .models import Inventory, Node, Repo

ERROR, WARNING = "error", "warning"
MASTER_PORTS = (6443, 10250, 10257, 10259, 2379, 2380)
MAX_SKEW = 5.0  # seconds
MIN_MASTER_MB, MIN_WORKER_MB, MIN_MASTER_CPUS = 1700, 1024, 2
NAMES = (
    "SSHReachable",
    "Sudo",
    "OperatingSystem",
    "NumCPU",
    "Memory",
    "HostnameUnique",
    "MACUnique",
    "ProductUUIDUnique",
    "ClockSkew",
    "PackageVersions",
    *(f"Port-{p}" for p in MASTER_PORTS),
)


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str
    node: str
    message: str

    def line(self, ignored: bool = False) -> str:
        tag = "IGNORED" if ignored else self.severity.upper()
        return f"[{tag} {self.check}] {self.node}: {self.message}"


def parse_ignore(text: str | None) -> set[str]:
    """``--ignore A,B`` to a set of check names (case-insensitive; ``all`` ignores every error)."""
    from .errors import UsageError

    names = {n.strip() for n in (text or "").split(",") if n.strip()}
    known = {n.lower(): n for n in NAMES}
    out = set()
    for name in names:
        if name.lower() == "all":
            out.add("all")
        elif name.lower() in known:
            out.add(known[name.lower()])
        else:
            raise UsageError(f"--ignore: unknown check {name!r} (checks: {', '.join(NAMES)}, all)")
    return out


def _repo_section(section: str, repo: Repo) -> str:
    lines = [
        f"[{section}]",
        f"name={section}",
        f"baseurl={repo.baseurl}",
        "enabled=1",
        f"gpgcheck={int(repo.gpgcheck)}",
        f"repo_gpgcheck={int(repo.repo_gpgcheck)}",
    ]
    if repo.gpgkey:
        lines.append("gpgkey=" + " ".join(repo.gpgkey))
    return "\n".join(lines) + "\n"


def mirror_command(inv: Inventory) -> str:
    """List the pinned packages on the configured mirrors, unless they are installed already.

    Uses a throw-away reposdir and cache under /tmp, so nothing on the node changes.
    """
    v, dv = inv.cluster.kubernetes_version, inv.docker.version
    pinned = [
        f"kubeadm-{v}",
        f"kubelet-{v}",
        f"kubectl-{v}",
        f"docker-ce-{dv}",
        f"docker-ce-cli-{dv}",
    ]
    repo = _repo_section("check-docker-ce", inv.repos.docker_ce) + _repo_section(
        "check-kubernetes", inv.repos.kubernetes
    )
    return "\n".join(
        [
            f"if rpm -q {' '.join(pinned)} >/dev/null 2>&1; then echo installed; else",
            "d=$(mktemp -d /tmp/k8s-bootstrap-check.XXXXXX)",
            f'printf %s {shlex.quote(repo)} > "$d/check.repo"',
            'yum -q --setopt=reposdir="$d" --setopt=cachedir="$d/cache" list --showduplicates '
            "docker-ce docker-ce-cli kubeadm kubelet kubectl 2>&1",
            'rc=$?; rm -rf "$d"; [ $rc = 0 ]; fi',
        ]
    )


def _listening(out: str, rc: int) -> set[int]:
    ports = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A" and ":" in parts[1]:
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def _os_release(out: str, rc: int) -> dict[str, str]:
    data = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        data[key.strip()] = value.strip().strip('"')
    return data


def _meminfo_mb(out: str, rc: int) -> int | None:
    for line in out.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def _online_cpus(out: str, rc: int) -> float | None:
    """How many CPUs are online, from the kernel's list (``0-3,6``): what ``nproc`` counts
    without an affinity mask."""
    count = 0
    try:
        for part in out.strip().split(","):
            first, _, last = part.partition("-")
            count += int(last or first) - int(first) + 1
    except ValueError:
        return None
    return float(count) if rc == 0 and count else None


def _macs(out: str, rc: int) -> set[str]:
    return {m for m in out.split() if m and m != "00:00:00:00:00:00"}


def facts(inv: Inventory, node: Node, mirror_node: bool) -> list[F.Fact]:
    """The read-only facts the checks need from one node."""
    found = [
        F.read("os-release", "/etc/os-release", _os_release),
        F.read("cpus", "/sys/devices/system/cpu/online", _online_cpus),
        F.read("memory-mb", "/proc/meminfo", _meminfo_mb),
        F.hostname(),
        F.read("macs", "/sys/class/net/*/address", _macs),
        F.read("product-uuid", "/sys/class/dmi/id/product_uuid"),
        F.clock(),
    ]
    if node.is_master:
        found += [
            F.read("listening", "/proc/net/tcp /proc/net/tcp6", _listening),
            F.command("initialised", "test -f /etc/kubernetes/admin.conf && echo yes"),
        ]
    if mirror_node:
        found.append(F.Fact("mirror", mirror_command(inv), lambda out, rc: (rc, out)))
    return found


Check = Callable[[Inventory, dict[str, dict], dict[str, float]], list[Finding]]


def _per_node(inv: Inventory, all_facts: dict[str, dict], _offsets) -> list[Finding]:
    out: list[Finding] = []
    for name, f in all_facts.items():
        node = inv.node(name)
        osr = f["os-release"]
        family = {osr.get("ID", "")} | set(osr.get("ID_LIKE", "").split())
        major = osr.get("VERSION_ID", "").split(".")[0]
        if not family & {"centos", "rhel", "fedora"} or major not in ("7", "8"):
            out.append(
                Finding(
                    "OperatingSystem",
                    ERROR,
                    name,
                    f"{osr.get('PRETTY_NAME', 'unknown OS')} is not CentOS/RHEL 7 or 8",
                )
            )
        cpus, mem = f["cpus"], f["memory-mb"]
        if node.is_master and cpus is not None and cpus < MIN_MASTER_CPUS:
            out.append(
                Finding(
                    "NumCPU",
                    ERROR,
                    name,
                    f"the master has {cpus:g} CPU(s); kubeadm needs at least {MIN_MASTER_CPUS}",
                )
            )
        floor = MIN_MASTER_MB if node.is_master else MIN_WORKER_MB
        if mem is not None and mem < floor:
            out.append(
                Finding(
                    "Memory",
                    ERROR,
                    name,
                    f"{mem} MB of memory; a {node.role} needs at least {floor} MB",
                )
            )
        if node.is_master and f.get("initialised") != "yes":
            for port in sorted(f.get("listening", set()) & set(MASTER_PORTS)):
                out.append(
                    Finding(
                        f"Port-{port}",
                        ERROR,
                        name,
                        f"port {port} is in use; kubeadm init needs it free",
                    )
                )
        if "mirror" in f:
            out += _mirror(inv, name, *f["mirror"])
    return out


def _mirror(inv: Inventory, name: str, rc: int, out: str) -> list[Finding]:
    if out.strip() == "installed":
        return []
    if rc != 0:
        excerpt = " | ".join(ln.strip() for ln in out.strip().splitlines()[-3:])
        return [
            Finding(
                "PackageVersions",
                ERROR,
                name,
                f"cannot list packages on the configured "
                f"mirrors (repos.docker_ce, repos.kubernetes): {excerpt}",
            )
        ]
    listed: dict[str, set[str]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and "." in parts[0]:
            pkg = parts[0].rsplit(".", 1)[0]
            version = parts[1].split(":", 1)[-1].rsplit("-", 1)[0]
            listed.setdefault(pkg, set()).add(version)
    wanted = {
        "docker-ce": inv.docker.version,
        "docker-ce-cli": inv.docker.version,
        "kubeadm": inv.cluster.kubernetes_version,
        "kubelet": inv.cluster.kubernetes_version,
        "kubectl": inv.cluster.kubernetes_version,
    }
    found = []
    for pkg, version in wanted.items():
        if version not in listed.get(pkg, set()):
            have = ", ".join(sorted(listed.get(pkg, set()))[-5:]) or "none"
            found.append(
                Finding(
                    "PackageVersions",
                    ERROR,
                    name,
                    f"{pkg} {version} is not on the "
                    f"configured mirror (found: {have}); fix the version or the repo",
                )
            )
    return found


def _unique(inv: Inventory, all_facts: dict[str, dict], _offsets) -> list[Finding]:
    out = []
    for check, key, severity, why in (
        ("HostnameUnique", "hostname", WARNING, "prepare-nodes renames them from the inventory"),
        ("MACUnique", "macs", ERROR, "cloned machines: regenerate the MAC addresses"),
        (
            "ProductUUIDUnique",
            "product-uuid",
            ERROR,
            "cloned machines: kubeadm needs a unique product_uuid",
        ),
    ):
        seen: dict[str, str] = {}
        for name, f in all_facts.items():
            values = f[key] if isinstance(f[key], set) else {f[key]} if f[key] else set()
            for value in values:
                if value in seen and seen[value] != name:
                    out.append(
                        Finding(
                            check,
                            severity,
                            name,
                            f"{key} {value} is the same as on {seen[value]} ({why})",
                        )
                    )
                seen.setdefault(value, name)
    return out


def _clocks(inv: Inventory, all_facts: dict[str, dict], offsets: dict[str, float]) -> list[Finding]:
    if len(offsets) < 2:
        return []
    low = min(offsets, key=offsets.__getitem__)
    high = max(offsets, key=offsets.__getitem__)
    skew = offsets[high] - offsets[low]
    if skew <= MAX_SKEW:
        return []
    return [
        Finding(
            "ClockSkew",
            ERROR,
            high,
            f"clock is {skew:.1f}s ahead of {low}'s (more than "
            f"{MAX_SKEW:g}s): fix time sync (chronyd) before building a cluster",
        )
    ]


CHECKS: tuple[Check, ...] = (_per_node, _unique, _clocks)


def evaluate(
    inv: Inventory, all_facts: dict[str, dict], offsets: dict[str, float]
) -> list[Finding]:
    """Every finding for the reachable nodes (pure)."""
    return [f for check in CHECKS for f in check(inv, all_facts, offsets)]
