"""Preflight checks (kubeadm style): named, each an error or a warning, skippable by name.

Facts for the checks are gathered with the steps' facts in the same round trip; the checks
themselves are pure functions over every node's facts, so uniqueness and clock skew are judged
across nodes before anything changes anywhere.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from . import facts as F
from . import platforms, releases
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
    "PackageConflicts",
    "RepoSignatures",
    "CgroupVersion",
    "CgroupV1",
    "ContainerdVersion",
    "NftablesKernel",
    "ControlPlaneEndpoint",
    "VirtualIP",
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


def _runtime_pins(inv: Inventory) -> list[str]:
    """The runtime's packages as the transaction pins them (docker-ce with its CLI and
    containerd.io, or containerd.io alone)."""
    containerd = "containerd.io" + (
        f"-{inv.containerd.version}" if inv.containerd.version else "")
    if inv.cluster.runtime == "containerd":
        return [containerd]
    dv = inv.docker.version
    return [f"docker-ce-{dv}", f"docker-ce-cli-{dv}", containerd]


def _runtime_versions(inv: Inventory) -> dict[str, str]:
    """{package: the version the mirror must have} for the runtime's pinned packages."""
    if inv.cluster.runtime == "containerd":
        return {"containerd.io": inv.containerd.version} if inv.containerd.version else {}
    return {"docker-ce": inv.docker.version, "docker-ce-cli": inv.docker.version}


MIRROR, CONFLICTS = "<<mirror", "<<conflicts"


def packages_command(inv: Inventory, mirror_node: bool) -> str:
    """Unless the pinned packages are installed already: on the mirror node, list them on the
    configured mirrors (PackageVersions); on every node with dnf, the installed packages that
    the Docker packages conflict with or obsolete, and those that need them (PackageConflicts),
    from the repos' own metadata (``dnf repoquery``: conflicts, obsoletes) and the rpmdb.

    Uses a throw-away reposdir and cache under /tmp, so nothing on the node changes.
    """
    v = inv.cluster.kubernetes_version
    runtime = [p for p in _runtime_pins(inv) if p != "containerd.io"]  # unpinned: any
    pinned = [f"kubeadm-{v}", f"kubelet-{v}", f"kubectl-{v}", *runtime]
    repo = _repo_section("check-docker-ce", inv.repos.docker_ce) + _repo_section(
        "check-kubernetes", releases.kubernetes_repo(inv)
    )
    lines = [
        f"if rpm -q {' '.join(pinned)} >/dev/null 2>&1; then echo installed; else",
        "d=$(mktemp -d /tmp/k8s-bootstrap-check.XXXXXX)",
        f'printf %s {shlex.quote(repo)} > "$d/check.repo"',
        'y="--setopt=reposdir=$d --setopt=cachedir=$d/cache"',
        "rc=0",
    ]
    if mirror_node:
        runtime = _runtime_versions(inv) or (
            ["containerd.io"] if inv.cluster.runtime == "containerd" else [])
        listed = " ".join([*runtime, "kubeadm", "kubelet", "kubectl"])
        lines.append(f"echo '{MIRROR}'; yum -q $y list --showduplicates {listed} 2>&1; rc=$?")
    lines += [
        f"echo '{CONFLICTS}'",
        "if [ -x /usr/bin/dnf ]; then",
        # (--conflicts and --obsoletes exclude each other: one --qf asks for both)
        "  set -- $(dnf -q $y repoquery --qf '%{conflicts}\\n%{obsoletes}' "
        f"{' '.join(_runtime_pins(inv))} 2>/dev/null | while read -r c _; do echo \"$c\"; done)",
        # the installed packages providing those, then (a few rounds) what requires them
        '  seen=" "; i=0; while [ $# -gt 0 ] && [ $i -lt 5 ]; do i=$((i + 1))',
        "    new=$({ rpm -q --qf '%{NAME}\\n' --whatprovides \"$@\"; "
        "rpm -q --qf '%{NAME}\\n' --whatrequires \"$@\"; } 2>/dev/null | "
        'while read -r n more; do [ -z "$more" ] && case "$seen" in *" $n "*) ;; '
        '*) echo "$n";; esac; done)',
        '    set -- $new; for n in $new; do case "$seen" in *" $n "*) ;; *) seen="$seen$n "; '
        'echo "$n";; esac; done',
        "  done",
        "fi",
        'rm -rf "$d"; [ $rc = 0 ]; fi',
    ]
    return "\n".join(lines)


def _packages(out: str, rc: int) -> tuple[int, str | None, list[str]]:
    """(rc, the mirror listing or None when this node did not list them, the conflicting
    installed packages' names); (0, "installed", []) when the pinned ones are installed."""
    if out.strip() == "installed":
        return 0, "installed", []
    listing, _, found = out.partition(CONFLICTS + "\n")
    _head, mirror, listing = listing.partition(MIRROR + "\n")
    listing = listing if mirror else None
    names = []
    for line in found.splitlines():  # one package name a line
        name = line.strip()
        if name and " " not in name and name not in names:
            names.append(name)
    return rc, listing, names


def _listening(out: str, rc: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket in /proc/net/tcp{,6} (the kernel writes
    addresses as hex in host byte order, 32-bit words for IPv6)."""
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A" and ":" in parts[1]:
            hexaddr, _, port = parts[1].rpartition(":")
            try:
                words = [bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, len(hexaddr), 8)]
                ip = ipaddress.ip_address(b"".join(words))
            except ValueError:
                continue
            mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:a.b.c.d: an IPv4 socket
            found.add((str(mapped or ip), int(port, 16)))
    return found


def busy_ports(node: Node, listening: set[tuple[str, int]]) -> set[int]:
    """The ports some process holds where kubeadm's control plane would bind them: on every
    address (0.0.0.0, ::), on loopback 127.0.0.1 (etcd's client URL), or on one of this node's
    own addresses. A socket on another address is another host's business (a node that shares
    its network namespace, a container's address)."""
    own = {"0.0.0.0", "::", "127.0.0.1", "::1"}
    for value in (node.address, node.internal_address):
        try:
            own.add(str(ipaddress.ip_address(value)))
        except ValueError:
            continue
    return {port for address, port in listening if address in own}


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


ENDPOINT_TIMEOUT = 3  # seconds a TCP connect to an external endpoint may take


def _endpoint_fact(inv: Inventory) -> F.Fact:
    """``cluster.load_balancer: external``: whether the endpoint's name resolves on the node and
    a TCP connection to it opens (all that can be known before init: the load balancer is
    there; its API servers come later). Prints ``dns`` or ``connect`` for what failed."""
    host, _, port = inv.control_plane_endpoint.rpartition(":")
    h = shlex.quote(host)
    return F.Fact(
        "endpoint",
        f"getent hosts {h} >/dev/null || {{ echo dns; exit 0; }}; "
        f"timeout {ENDPOINT_TIMEOUT} bash -c 'exec 3<>/dev/tcp/'{h}'/{port}' 2>/dev/null "
        "|| echo connect",
        lambda out, rc: out.strip() or "ok")


ARP_WAIT = 3  # seconds arping -D listens for an answer


def _addresses(out: str, rc: int) -> list[tuple[str, str]]:
    """(interface, address/prefix) of every IPv4 address `ip -4 -o addr show` lists."""
    found = []
    for line in out.splitlines():
        words = line.split()
        if len(words) > 3 and words[2] == "inet":
            found.append((words[1].rstrip(":"), words[3]))
    return found


def _arp(out: str, rc: int) -> dict:
    """arping -D (iputils): exit 0 when nobody answered, 1 when someone did."""
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    replies = [ln for ln in lines if "reply from" in ln.lower()]
    return {"rc": rc, "replies": replies, "said": lines[-1] if lines else ""}


def _vip_facts(inv: Inventory, node: Node) -> list[F.Fact]:
    """kube-vip and haproxy-keepalived: every node's IPv4 addresses; on the init node, whether
    anything answers ARP for the VIP (duplicate address detection, no address needed)."""
    found = [F.Fact("addresses", "ip -4 -o addr show", _addresses)]
    vip = inv.cluster.vip
    if node == inv.init_node and inv.vip and vip:
        found.append(F.Fact("vip-arp", f"arping -D -I {shlex.quote(vip.interface)} -c 2 "
                                       f"-w {ARP_WAIT} {inv.vip} 2>&1", _arp))
    return found


def _virtual_ip(inv: Inventory, all_facts: dict[str, dict], _offsets) -> list[Finding]:
    """The VIP: on every control plane the interface exists and carries the VIP's subnet at
    cluster.vip.prefix; no node has the VIP except the control plane holding it for this
    cluster; nothing else answers ARP for it."""
    vip, setting = inv.vip, inv.cluster.vip
    if not vip or setting is None:
        return []
    out: list[Finding] = []
    address = ipaddress.IPv4Address(vip)
    iface = setting.interface
    held = False
    for name, f in all_facts.items():
        node = inv.node(name)
        addrs = f.get("addresses") or []
        for dev, cidr in addrs:
            if ipaddress.ip_interface(cidr).ip != address:
                continue
            if node.is_control_plane and dev == iface:
                held = True  # this cluster's kube-vip or keepalived holds it
            else:
                out.append(Finding("VirtualIP", ERROR, name,
                                   f"{vip} is already an address of {name} ({dev}): the virtual "
                                   "IP must be an address no machine has"))
        if not node.is_control_plane or "addresses" not in f:
            continue
        mine = [c for d, c in addrs if d == iface and ipaddress.ip_interface(c).ip != address]
        if not any(d == iface for d, _ in addrs):
            names = ", ".join(sorted({d for d, _ in addrs})) or "none"
            out.append(Finding("VirtualIP", ERROR, name,
                               f"no interface {iface} with an IPv4 address (it has: {names}): "
                               "set cluster.vip.interface to the one that carries the node's "
                               "address"))
            continue
        nets = [ipaddress.ip_interface(c).network for c in mine]
        match = [n for n in nets if address in n]
        if not match:
            out.append(Finding("VirtualIP", ERROR, name,
                               f"{vip} is not in the subnet of {iface} "
                               f"({', '.join(mine) or 'no address'}): pick a free address "
                               "there"))
        elif all(n.prefixlen != setting.prefix for n in match):
            out.append(Finding("VirtualIP", ERROR, name,
                               f"{iface} is {', '.join(mine)}, but cluster.vip.prefix is "
                               f"{setting.prefix}: set it to {match[0].prefixlen}"))
    arp = all_facts.get(inv.init_node.name, {}).get("vip-arp")
    if arp and not held:
        if arp["rc"] == 1 and arp["replies"]:
            out.append(Finding("VirtualIP", ERROR, inv.init_node.name,
                               f"something already answers for {vip} ({arp['replies'][0]}): "
                               "the virtual IP must be a free address"))
        elif arp["rc"] not in (0, 1):
            out.append(Finding("VirtualIP", WARNING, inv.init_node.name,
                               f"could not check that {vip} is free (arping -D: "
                               f"{arp['said'] or 'exit ' + str(arp['rc'])})"))
    return out


def facts(inv: Inventory, node: Node, mirror_node: bool) -> list[F.Fact]:
    """The read-only facts the checks need from one node."""
    found = [
        *platforms.facts(),
        F.read("cpus", "/sys/devices/system/cpu/online", _online_cpus),
        F.read("memory-mb", "/proc/meminfo", _meminfo_mb),
        F.hostname(),
        F.read("macs", "/sys/class/net/*/address", _macs),
        F.read("product-uuid", "/sys/class/dmi/id/product_uuid"),
        F.clock(),
    ]
    if inv.load_balancer == "external":
        found.append(_endpoint_fact(inv))
    if inv.vip:
        found += _vip_facts(inv, node)
    if node.is_control_plane:
        found += [
            F.read("listening", "/proc/net/tcp /proc/net/tcp6", _listening),
            F.command("initialised", "test -f /etc/kubernetes/admin.conf && echo yes"),
        ]
    found.append(F.Fact("packages", packages_command(inv, mirror_node), _packages))
    return found


Check = Callable[[Inventory, dict[str, dict], dict[str, float]], list[Finding]]


def _per_node(inv: Inventory, all_facts: dict[str, dict], _offsets) -> list[Finding]:
    out: list[Finding] = []
    for name, f in all_facts.items():
        node = inv.node(name)
        try:
            platform = platforms.detect(f["os-release"])
        except platforms.Unsupported as exc:
            out.append(Finding("OperatingSystem", ERROR, name, str(exc)))
        else:
            out += _repo_signatures(inv, name, platform)
            out += _cgroup_version(inv, name, platform, f.get("cgroup"))
            out += _release_rules(inv, name, platform, f)
        cpus, mem = f["cpus"], f["memory-mb"]
        if node.is_control_plane and cpus is not None and cpus < MIN_MASTER_CPUS:
            out.append(
                Finding(
                    "NumCPU",
                    ERROR,
                    name,
                    f"the master has {cpus:g} CPU(s); kubeadm needs at least {MIN_MASTER_CPUS}",
                )
            )
        floor = MIN_MASTER_MB if node.is_control_plane else MIN_WORKER_MB
        if mem is not None and mem < floor:
            out.append(
                Finding(
                    "Memory",
                    ERROR,
                    name,
                    f"{mem} MB of memory; a {node.role} needs at least {floor} MB",
                )
            )
        if node.is_control_plane and f.get("initialised") != "yes":
            for port in sorted(busy_ports(node, f.get("listening", set())) & set(MASTER_PORTS)):
                out.append(
                    Finding(
                        f"Port-{port}",
                        ERROR,
                        name,
                        f"port {port} is in use; kubeadm init needs it free",
                    )
                )
        reach = f.get("endpoint")
        if reach in ("dns", "connect"):
            endpoint = inv.control_plane_endpoint
            why = (f"the name of {endpoint} does not resolve here (DNS or /etc/hosts)"
                   if reach == "dns" else f"nothing accepts a TCP connection at {endpoint} "
                   f"(within {ENDPOINT_TIMEOUT} s)")
            out.append(Finding("ControlPlaneEndpoint", ERROR, name,
                               f"{why}: cluster.load_balancer external needs your load "
                               "balancer there before init-master (or use load_balancer local)"))
        rc, listing, conflicting = f["packages"]
        if listing is not None:
            out += _mirror(inv, name, rc, listing)
        if conflicting:
            out.append(_conflicts(inv, name, conflicting))
    return out


LEGACY_KUBERNETES_REPO = "kubernetes-el7"  # the pre-1.24 layout (Google's, Aliyun's mirror)


def _repo_signatures(inv: Inventory, name: str, platform: platforms.Platform) -> list[Finding]:
    """EL9's DEFAULT crypto policy rejects SHA-1 signatures, which the legacy kubernetes-el7
    repo's metadata and packages carry (RHEL 9 security hardening guide)."""
    repo = inv.repos.kubernetes
    if (platform.release.sha1_signatures or LEGACY_KUBERNETES_REPO not in repo.baseurl
            or not (repo.gpgcheck or repo.repo_gpgcheck)):
        return []
    return [Finding("RepoSignatures", ERROR, name,
                    f"{platform.pretty} rejects SHA-1 signatures (crypto policy DEFAULT), and "
                    f"the legacy {LEGACY_KUBERNETES_REPO} repo (repos.kubernetes) is signed with "
                    "SHA-1: its gpg check would fail. Use a mirror that re-signs, set "
                    "repos.kubernetes.gpgcheck and repo_gpgcheck to false, or allow SHA-1 on the "
                    "node (update-crypto-policies --set DEFAULT:SHA1)")]


CGROUP_V2_GA = (1, 25)  # kubelet's cgroup v2 support is GA in 1.25 (KEP-2254)


def _cgroup_version(inv: Inventory, name: str, platform: platforms.Platform,
                    version: int | None) -> list[Finding]:
    """On a cgroup v2 node (EL9): the kubelet wants the systemd driver there (FIELD-NOTES), and
    its cgroup v2 support is GA only from 1.25."""
    if version != 2:
        return []
    out = []
    if inv.cluster.cgroup_driver != "systemd":
        out.append(Finding("CgroupVersion", WARNING, name,
                           f"{platform.pretty} runs cgroup v2, where the kubelet and the runtime "
                           "need the systemd cgroup driver: set cluster.cgroup_driver: systemd"))
    if inv.cluster.version_tuple[:2] < CGROUP_V2_GA:
        out.append(Finding("CgroupVersion", WARNING, name,
                           f"{platform.pretty} runs cgroup v2, which the kubelet supports as GA "
                           "only from 1.25 (beta from 1.22; KEP-2254): Kubernetes "
                           f"{inv.cluster.kubernetes_version} there is not what upstream tested. "
                           "Boot the node with cgroup v1 (systemd.unified_cgroup_hierarchy=0) "
                           "or use EL8"))
    return out


NFTABLES_KERNEL = (5, 13)
"""kube-proxy's nftables mode refuses older kernels: "kube-proxy in nftables mode requires kernel
5.13 or later" (pkg/proxy/nftables, utilkernel.NFTablesKubeProxyKernelVersion)."""
CGROUP_V2_HOWTO = ("move the node to cgroup v2 (EL8: grubby --update-kernel=ALL "
                   "--args=systemd.unified_cgroup_hierarchy=1, reboot; `stat -fc %T "
                   "/sys/fs/cgroup` then says cgroup2fs; EL7's kernel has no usable cgroup v2)")


def _kernel(release: str | None) -> tuple[int, int] | None:
    try:
        major, minor = (release or "").split("-", 1)[0].split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _release_rules(inv: Inventory, name: str, platform: platforms.Platform,
                   f: dict) -> list[Finding]:
    """What the release asks of the node (releases.Minor): cgroup v2 from 1.35, containerd 2
    from 1.36, a 5.13 kernel for nftables. Sources in releases.py and docs/RELEASE-FACTS.md."""
    cluster = inv.cluster
    row = releases.release(cluster.kubernetes_version)
    version = cluster.kubernetes_version
    out = []
    if f.get("cgroup") == 1 and row.cgroup_v1 == "refused":
        if cluster.allow_cgroup_v1:
            out.append(Finding("CgroupV1", WARNING, name,
                               f"{platform.pretty} runs cgroup v1, which Kubernetes {version} "
                               "supports only because cluster.allow_cgroup_v1 is set (the "
                               "kubelet's failCgroupV1: false, kubeadm's SystemVerification "
                               f"skipped; KEP-5573 removes cgroup v1 no earlier than 1.38): "
                               f"{CGROUP_V2_HOWTO}"))
        else:
            out.append(Finding("CgroupV1", ERROR, name,
                               f"{platform.pretty} runs cgroup v1, and the kubelet of Kubernetes "
                               f"{version} refuses it (failCgroupV1 defaults to true from 1.35, "
                               "KEP-5573; kubeadm's SystemVerification fails too): "
                               f"{CGROUP_V2_HOWTO}, or set cluster.allow_cgroup_v1: true"))
    elif f.get("cgroup") == 1 and row.cgroup_v1 == "maintenance":
        out.append(Finding("CgroupV1", WARNING, name,
                           f"{platform.pretty} runs cgroup v1, in maintenance mode from 1.31 "
                           "(KEP-4569) and refused by default from 1.35"))
    if cluster.runtime == "containerd" and row.containerd_min == "2.0":
        pinned = inv.containerd.version
        have = pinned or platforms.installed(f).get("containerd.io", "").rsplit("-", 1)[0]
        why = (f"Kubernetes {version} wants containerd 2.x: kubeadm warns "
               "(ContainerRuntimeVersion) that containerd 1.x lacks the CRI RuntimeConfig "
               "method the kubelet takes its cgroup driver from, and the kubelet's fallback is "
               "to be removed (KEP-4033, planned for 1.38)")
        if not platform.release.containerd_2:
            out.append(Finding("ContainerdVersion", ERROR, name,
                               f"{why}; docker's repo has no containerd 2.x for "
                               f"{platform.pretty}: use EL8/EL9, or Kubernetes 1.35 or older, "
                               "or --ignore ContainerdVersion to run containerd 1.x anyway"))
        elif have.split(".")[0].isdigit() and int(have.split(".")[0]) < 2:
            where = "containerd.version pins" if pinned else "the node has"
            out.append(Finding("ContainerdVersion", ERROR, name,
                               f"{why}; {where} {have}: pin containerd.version to a 2.x "
                               "release, or --ignore ContainerdVersion to keep it"))
    kernel = _kernel(f.get("kernel"))
    if cluster.proxy_mode == "nftables" and kernel and kernel < NFTABLES_KERNEL:
        out.append(Finding("NftablesKernel", ERROR, name,
                           f"kernel {f.get('kernel')}: kube-proxy in nftables mode requires "
                           "kernel 5.13 or later (EL9 has 5.14; EL8's 4.18 does not): use "
                           "proxy_mode ipvs or iptables here"))
    return out


def _conflicts(inv: Inventory, name: str, packages: list[str]) -> Finding:
    found = ", ".join(packages)
    if inv.node_prep.remove_conflicting_packages:
        return Finding("PackageConflicts", WARNING, name,
                       f"{found} conflict with Docker's packages (containerd.io obsoletes runc "
                       "on EL8/EL9) or need what they replace: dnf will remove them in the "
                       "packages transaction (node_prep.remove_conflicting_packages, "
                       "--allowerasing)")
    return Finding("PackageConflicts", ERROR, name,
                   f"{found} conflict with Docker's packages (containerd.io obsoletes runc on "
                   "EL8/EL9) or need what they replace: remove them (dnf remove "
                   f"{' '.join(packages)}), or set node_prep.remove_conflicting_packages: true "
                   "to let the packages transaction remove them (dnf --allowerasing)")


def _mirror(inv: Inventory, name: str, rc: int, out: str) -> list[Finding]:
    if out.strip() == "installed":
        return []
    if rc != 0:
        excerpt = " | ".join(ln.strip() for ln in out.strip().splitlines()[-3:])
        if "repo 'check-kubernetes'" in out:
            version = inv.cluster.kubernetes_version
            url = releases.kubernetes_repo(inv).baseurl
            return [Finding(
                "PackageVersions", ERROR, name,
                f"repos.kubernetes {url} cannot be read, so Kubernetes {version} cannot be "
                f"installed from it: pick a version whose repo the mirror carries, or point "
                f"repos.kubernetes.baseurl at one that does ({excerpt})")]
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
        **_runtime_versions(inv),
        "kubeadm": inv.cluster.kubernetes_version,
        "kubelet": inv.cluster.kubernetes_version,
        "kubectl": inv.cluster.kubernetes_version,
    }
    found = []
    row = releases.release(inv.cluster.kubernetes_version)
    if (inv.cluster.runtime == "containerd" and not inv.containerd.version
            and row.containerd_min >= "2"):
        newest = max(listed.get("containerd.io", set()) or {"none"}, key=_version_key)
        if not newest[0].isdigit() or int(newest.split(".")[0]) < 2:
            found.append(Finding(
                "ContainerdVersion", ERROR, name,
                f"Kubernetes {inv.cluster.kubernetes_version} wants containerd 2.x, and the "
                f"newest containerd.io on repos.docker_ce is {newest}: use a mirror with 2.x, "
                "or pin containerd.version and --ignore ContainerdVersion to run 1.x"))
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


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


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


CHECKS: tuple[Check, ...] = (_per_node, _unique, _clocks, _virtual_ip)


def evaluate(
    inv: Inventory, all_facts: dict[str, dict], offsets: dict[str, float]
) -> list[Finding]:
    """Every finding for the reachable nodes (pure)."""
    return [f for check in CHECKS for f in check(inv, all_facts, offsets)]
