"""Validate parsed inventory data into typed objects, collecting every problem with its line."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import endpoints, releases
from .errors import InventoryError
from .models import (
    DEFAULT_REGISTRIES,
    ENDPOINT_PORTS,
    KUBERNETES_REPOS,
    SSH,
    VIP_KINDS,
    Bastion,
    Cluster,
    Containerd,
    Docker,
    Inventory,
    Network,
    Node,
    NodePrep,
    NodeSSH,
    Registries,
    Repo,
    Repos,
    Verify,
    Vip,
)

# \Z, not $ (which also matches before a final newline); ASCII: \d is 0-9, not any digit.
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_K8S_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)\Z", re.ASCII)
_PKG_VERSION = re.compile(r"^\d+(\.\d+){1,3}([.~+-][A-Za-z0-9.~+]+)?\Z", re.ASCII)
_FLANNEL_VERSION = re.compile(r"^v\d+\.\d+\.\d+\Z", re.ASCII)
_URL = re.compile(r"^(https?|file)://[^\s]+\Z")
_IMAGE_REPO = re.compile(r"^[a-z0-9]([a-z0-9._:/-]*[a-z0-9])?\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# kubeadm config v1beta2 exists from 1.15; releases.MINORS knows the rest. Docker (dockershim)
# only below 1.24 (_runtime), containerd for any of them.
MIN_K8S, MAX_K8S = (1, 15), (1, 37)

Problems = list[tuple[tuple, str]]


class _Ctx:
    """Where problems are collected while one inventory is validated."""

    def __init__(self) -> None:
        self.problems: Problems = []

    def add(self, path: tuple, message: str) -> None:
        self.problems.append((path, message))


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _dotted(path: tuple) -> str:
    """A field path as the user reads it: ``nodes[1].address``; odd keys quoted (``['a b']``)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{_show(part)}]"
    return out


def _show(value: Any, width: int = 60) -> str:
    """The value as the user wrote it, on one line, shortened if long."""
    text = getattr(value, "text", None)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**width:
        return f"{str(value)[:20]}... ({len(str(abs(value)))} digits)"
    shown = repr(text if text is not None else value)
    if len(shown) <= width:
        return shown
    return shown[: width - 4] + "...'" if shown[-1] in "'\"" else shown[: width - 3] + "..."


# ---- field checkers: each returns the normalised value or raises ValueError(message) ----


def _str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("must be a string")
    text = str(getattr(value, "text", value))
    if _CONTROL.search(text):
        raise ValueError("contains a control character (a newline, tab, ...): remove it")
    return text


def _enum(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            hint = difflib.get_close_matches(str(value), choices, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"must be one of {', '.join(choices)}{extra}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"must be a whole number from {lo} to {hi}")
        return value

    return check


def _positive_number(value: Any) -> float:
    try:
        seconds = float(value) if isinstance(value, (int, float)) else math.nan
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be a number of seconds greater than 0 (and not .inf or .nan)")
    return seconds


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def opt(value: Any) -> Any:
        return None if value is None else check(value)

    return opt


def _list_of(check: Callable[[Any], Any]) -> Callable[[Any], tuple]:
    def lst(value: Any) -> tuple:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ValueError("must be a list")
        out = []
        for item in value:
            try:
                out.append(check(item))
            except ValueError as exc:
                raise ValueError(f"item {_show(item)} {exc}") from None
        return tuple(out)

    return lst


def is_hostname(text: str, lowercase: bool = False) -> bool:
    if not text or len(text) > 253 or text.endswith("."):
        return False
    label = _HOST_LABEL if lowercase else _DNS_LABEL
    return all(label.match(part) for part in text.split("."))


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", text))


def _ipv4(value: Any) -> str:
    text = _str(value)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError("is not a valid IPv4 address") from None


def _host(value: Any) -> str:
    """An IPv4 address or a DNS name (what SSH connects to)."""
    text = _str(value)
    if _looks_numeric(text):
        return _ipv4(text)
    if not is_hostname(text):
        raise ValueError("is not a valid IPv4 address or DNS name")
    return text


def _node_name(value: Any) -> str:
    text = _str(value)
    if not is_hostname(text, lowercase=True) or _looks_numeric(text):
        raise ValueError(
            "is not a valid lowercase RFC 1123 hostname "
            "(letters a-z, digits and '-', dot-separated labels, e.g. 'node1')"
        )
    return text


def _cidr(value: Any) -> str:
    text = _str(value)
    try:
        return str(ipaddress.IPv4Network(text, strict=True))
    except ValueError as exc:
        raise ValueError(f"is not a valid IPv4 CIDR ({exc})") from None


def _endpoint(value: Any) -> str:
    text = _str(value)
    host, _, port = text.partition(":")
    if not (_looks_numeric(host) and _ipv4(host)) and not is_hostname(host):
        raise ValueError("must be host[:port] with a DNS name or IPv4 address")
    if port and not (re.fullmatch("[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
        raise ValueError("has a port that is not from 1 to 65535")
    return text


def _k8s_version(value: Any) -> str:
    text = _str(value)
    m = _K8S_VERSION.match(text)
    if not m:
        hint = (
            " (YAML reads an unquoted 1.20 as a number: quote it)"
            if isinstance(value, float)
            else ""
        )
        raise ValueError(f"is not a Kubernetes version like 1.20.10{hint}")
    major, minor = int(m.group(1)), int(m.group(2))
    known = f"{MIN_K8S[0]}.{MIN_K8S[1]} to {MAX_K8S[0]}.{MAX_K8S[1]}"
    if (major, minor) > MAX_K8S:
        raise ValueError(
            f"is not supported: it is newer than the releases this toolkit knows "
            f"(KubernetesRelease: it installs Kubernetes {known}, each release's rules are data "
            "in bootstrap/releases.py). Pick one of them, or a newer toolkit"
        )
    if (major, minor) < MIN_K8S:
        raise ValueError(f"is not supported: this toolkit installs Kubernetes {known}")
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"


def _pkg_version(value: Any) -> str:
    text = _str(value)
    if not _PKG_VERSION.match(text):
        raise ValueError("is not a package version like 19.03.15")
    return text


def _flannel_version(value: Any) -> str:
    text = _str(value)
    if not text.startswith("v"):
        text = "v" + text
    if not _FLANNEL_VERSION.match(text):
        raise ValueError("is not a flannel release tag like v0.14.0")
    return text


def _url(value: Any) -> str:
    text = _str(value)
    if not _URL.match(text):
        raise ValueError("is not an http(s):// or file:// URL")
    return text


def _image_repo(value: Any) -> str:
    text = _str(value)
    if not _IMAGE_REPO.match(text):
        raise ValueError("is not an image repository like registry.aliyuncs.com/google_containers")
    return text


def _user(value: Any) -> str:
    text = _str(value)
    if not _USER.match(text):
        raise ValueError("is not a valid login name")
    return text


def _env_name(value: Any) -> str:
    text = _str(value)
    if not _ENV_NAME.match(text):
        raise ValueError("is not an environment variable name (the NAME, not the password)")
    return text


def _path(value: Any) -> str:
    text = _str(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _fields(value: Any, spec: Spec, what: str) -> dict[str, Any]:
    """A small nested mapping checked against ``spec`` (the first problem is the error)."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping ({what})")
    out = {}
    for key, item in value.items():
        if key not in spec:
            raise ValueError(f"has an unknown key {key!r} (known: {', '.join(spec)})")
        try:
            out[key] = spec[key](item)
        except ValueError as exc:
            raise ValueError(f"{key}: {_show(item)} {exc}") from None
    return out


def _bastion(value: Any, allow_false: bool = False) -> Bastion | bool | None:
    """``{address, port, user, key_file}``; ``false`` on a node: reached directly."""
    if value is None:
        return None
    if value is False and allow_false:
        return False
    fields = _fields(value, BASTION, "address, port, user, key_file"
                     + ("; or false for none" if allow_false else ""))
    if "address" not in fields:
        raise ValueError("needs an address")
    return Bastion(**fields)


def _node_ssh(value: Any) -> NodeSSH | None:
    if value is None:
        return None
    return NodeSSH(**_fields(value, NODE_SSH, "host, user, port, key_file, bastion"))


# ---- sections ----

Spec = dict[str, Callable[[Any], Any]]

CLUSTER: Spec = {
    "name": lambda v: _dns_label(v),
    "kubernetes_version": _k8s_version,
    "image_repository": _image_repo,
    "pod_network_cidr": _cidr,
    "service_cidr": _cidr,
    "proxy_mode": _enum("ipvs", "iptables", "nftables"),
    "control_plane_endpoint": _optional(_endpoint),
    "load_balancer": _optional(_enum("none", "local", "external", *VIP_KINDS)),
    "vip": lambda v: v,  # checked as its own section (VIP), for per-key line numbers
    "container_runtime": _optional(_enum("docker", "containerd")),
    "cgroup_driver": _enum("systemd", "cgroupfs"),
    "allow_cgroup_v1": _bool,
    "kubectl_on_workers": _enum("none", "view", "admin"),
}
SSH_SPEC: Spec = {
    "user": _user,
    "port": _int_range(1, 65535),
    "key_file": _optional(_path),
    "known_hosts": _path,
    "host_key_policy": _enum("strict", "accept-new"),
    "connect_timeout": _positive_number,
    "command_timeout": _positive_number,
    "parallel": _int_range(1, 1000),
    "sudo_password_env": _optional(_env_name),
    "bastion": lambda v: _bastion(v),
    "config_file": _optional(_path),
}
BASTION: Spec = {
    "address": _host,
    "port": _int_range(1, 65535),
    "user": _user,
    "key_file": _path,
}
NODE_SSH: Spec = {
    "host": _host,
    "user": _user,
    "port": _int_range(1, 65535),
    "key_file": _path,
    "bastion": lambda v: _bastion(v, allow_false=True),
}
NODE_PREP: Spec = {
    "ntp_servers": _list_of(_host),
    "selinux": _enum("disabled", "permissive"),
    "firewall": _enum("disable", "keep"),
    "remove_conflicting_packages": _bool,
}
DOCKER: Spec = {
    "version": _pkg_version,
    # moved (MOVED): still read, with a note naming the new key
    "containerd_version": _optional(_pkg_version),
    "cgroup_driver": _enum("systemd", "cgroupfs"),
    "registry_mirrors": _list_of(_url),
}
CONTAINERD: Spec = {"version": _optional(_pkg_version)}
# Old key -> its new place: (section, key) of the new key, and how to say it.
MOVED = {
    "containerd_version": ("containerd", "version", "containerd.version"),
    "cgroup_driver": ("cluster", "cgroup_driver", "cluster.cgroup_driver"),
    "registry_mirrors": ("registries", "docker.io", "registries['docker.io']"),
}
REPO: Spec = {
    "baseurl": _url,
    "gpgcheck": _bool,
    "repo_gpgcheck": _bool,
    "gpgkey": _list_of(_url),
    "name": _optional(_str),
}
NETWORK: Spec = {
    "plugin": _enum("flannel"),
    "flannel_version": _flannel_version,
    "flannel_registry": _optional(_image_repo),
}
NODE: Spec = {
    "name": _node_name,
    "address": _host,
    "role": _enum("control-plane", "master", "worker"),
    "internal_address": _optional(_ipv4),
    "ssh": lambda v: _node_ssh(v),
}
TOP = ("cluster", "ssh", "node_prep", "docker", "containerd", "registries", "repos", "network",
       "verify", "nodes")
REPO_NAMES = ("base", "docker_ce", "kubernetes")


def _dns_label(value: Any) -> str:
    text = _str(value)
    if not _HOST_LABEL.match(text):
        raise ValueError("must be a lowercase name of letters, digits and '-' (e.g. 'k8s')")
    return text


_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}\Z")  # the kernel's IFNAMSIZ is 16 with the NUL


def _ifname(value: Any) -> str:
    text = _str(value)
    if not _IFNAME.match(text) or text in (".", ".."):
        raise ValueError("is not a network interface name (as `ip -4 addr` lists them, e.g. "
                         "eth0 or ens192)")
    return text


VIP: Spec = {
    "interface": _ifname,
    "prefix": _int_range(1, 32),
    "router_id": _int_range(1, 255),
    "image": _image_repo,
}
VERIFY: Spec = {
    "namespace": _dns_label,
    "busybox_image": _image_repo,
    "nginx_image": _image_repo,
    "nginx_update_image": _image_repo,
}


def _unknown(ctx: _Ctx, path: tuple, key: str, known: tuple[str, ...] | Spec) -> None:
    hint = difflib.get_close_matches(key, list(known), n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else f" (known keys: {', '.join(known)})"
    ctx.add((*path, key), f"unknown key{extra}")


def _section(ctx: _Ctx, data: Any, path: tuple, spec: Spec) -> dict[str, Any]:
    """Check one mapping against its spec; return only the valid, normalised fields."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        ctx.add(path, f"{_show(data)} must be a mapping of keys")
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in spec:
            _unknown(ctx, path, key, spec)
            continue
        try:
            out[key] = spec[key](value)
        except ValueError as exc:
            ctx.add((*path, key), f"{_show(value)} {exc}")
    return out


def _repo(ctx: _Ctx, data: Any, path: tuple, default: Repo | None) -> Repo | None:
    if data is None:
        return default
    fields = _section(ctx, data, path, REPO)
    if default is not None:
        inherited = dict(default.__dict__)
        if "baseurl" in fields:
            inherited["gpgkey"] = ()  # another mirror signs with its own keys
        merged = {**inherited, **fields}
    elif "baseurl" not in fields:
        if isinstance(data, dict) and "baseurl" not in data:
            ctx.add(path, "needs a baseurl")
        return None
    else:
        merged = fields
    repo = Repo(**merged)
    if repo.gpgcheck and not repo.gpgkey:
        ctx.add((*path, "gpgkey"), "gpgcheck is true but no gpgkey URL is given (add one)")
    return repo


def _nodes(ctx: _Ctx, data: Any) -> list[tuple[int, Node]]:
    if data is None or data == []:
        ctx.add(("nodes",), "no nodes: list at least one master")
        return []
    if not isinstance(data, list):
        ctx.add(("nodes",), "must be a list of {name, address, role}")
        return []
    nodes = []
    for i, item in enumerate(data):
        path = ("nodes", i)
        fields = _section(ctx, item, path, NODE)
        if not isinstance(item, dict):
            continue
        missing = [k for k in ("name", "address", "role") if k not in item]
        for key in missing:
            ctx.add(path, f"missing {key}")
        if len(fields) < 3 or any(k not in fields for k in ("name", "address", "role")):
            continue
        internal = fields.get("internal_address")
        if internal is None:
            if not _looks_numeric(fields["address"]):
                ctx.add(
                    (*path, "address"),
                    f"{fields['address']!r} is a DNS name: "
                    "set internal_address to the node's IPv4 address",
                )
                continue
            internal = fields["address"]
        nodes.append((i, Node(fields["name"], fields["address"], fields["role"], internal,
                              fields.get("ssh"))))
    return nodes


def _logins(ctx: _Ctx, ssh: SSH, indexed: list[tuple[int, Node]], name: str) -> list[Node]:
    """Every node with its resolved login (bootstrap/endpoints.py), ``ssh.config_file`` read."""
    config = None
    if ssh.config_file:
        path = Path(ssh.config_file).expanduser()
        if not path.is_absolute():
            path = Path(name).parent / path
        try:
            config = endpoints.parse_config(path.read_text(encoding="utf-8"))
        except OSError as exc:
            ctx.add(("ssh", "config_file"), f"{ssh.config_file!r} cannot be read "
                    f"({exc.strerror or exc}): give the path of an OpenSSH client config")
            return [n for _, n in indexed]
        except Exception as exc:  # paramiko's parser: ConfigParseError and friends
            ctx.add(("ssh", "config_file"), f"{ssh.config_file!r} is not an OpenSSH client "
                    f"config: {exc}")
            return [n for _, n in indexed]
    out = []
    for i, node in indexed:
        try:
            login = endpoints.resolve(ssh, node, i, config, ssh.config_file or "")
        except endpoints.Unresolved as exc:
            ctx.add(exc.path, str(exc))
            out.append(node)
            continue
        out.append(dataclasses.replace(node, login=login))
    return out


def _cross_checks(ctx: _Ctx, indexed: list[tuple[int, Node]], cluster: Cluster) -> None:
    nodes = [n for _, n in indexed]
    position = {id(n): i for i, n in indexed}

    def where(n: Node) -> tuple:
        return ("nodes", position[id(n)])

    seen: dict[tuple[str, str], Node] = {}
    for n in nodes:
        for key, value in (
            ("name", n.name),
            ("address", n.address),
            ("internal_address", n.internal_address),
        ):
            kind = "address" if key != "name" else "name"
            if key == "internal_address" and n.internal_address == n.address:
                continue
            first = seen.get((kind, value))
            if first is not None and first is not n:
                ctx.add((*where(n), key), f"{value!r} is already used by node {first.name!r}")
            else:
                seen[(kind, value)] = n
    _control_planes(ctx, nodes, cluster)
    try:
        pod = ipaddress.IPv4Network(cluster.pod_network_cidr)
        svc = ipaddress.IPv4Network(cluster.service_cidr)
    except ValueError:
        return
    if pod.overlaps(svc):
        ctx.add(
            ("cluster", "service_cidr"),
            f"{cluster.service_cidr!r} overlaps pod_network_cidr {cluster.pod_network_cidr!r}",
        )
    for n in nodes:
        for key in ("address", "internal_address"):
            value = getattr(n, key)
            if not _looks_numeric(value):
                continue
            ip = ipaddress.IPv4Address(value)
            for field, net in (("pod_network_cidr", pod), ("service_cidr", svc)):
                if ip in net:
                    ctx.add(
                        (*where(n), key),
                        f"{value!r} lies inside cluster.{field} {net}: pick CIDRs that do "
                        "not overlap the node network",
                    )


CONTROL_PLANE_COUNTS = (1, 3, 5, 7)
"""etcd keeps working while a majority (quorum) of its members does: 3 survive one loss, 5 two,
7 three; an even count survives no more than the odd one below it (etcd FAQ "Why an odd number
of cluster members?"), and more than 7 slows every write."""


def _control_planes(ctx: _Ctx, nodes: list[Node], cluster: Cluster) -> None:
    """1, 3, 5 or 7 control-plane nodes, and an endpoint that several can share."""
    planes = [n for n in nodes if n.is_control_plane]
    if not nodes:
        return
    names = ", ".join(m.name for m in planes) or "none"
    if not planes:
        ctx.add(("nodes",), "no node has role control-plane (or master): the first one listed "
                            "runs kubeadm init")
        return
    if len(planes) not in CONTROL_PLANE_COUNTS:
        why = (f"{len(planes)} control-plane nodes ({names}): etcd needs a majority of its "
               "members up (quorum), so ")
        why += (f"{len(planes)} survive no more failures than {len(planes) - 1}"
                if len(planes) % 2 == 0 and len(planes) < 8 else "more than 7 slow every write")
        ctx.add(("nodes",), why + ": use 1, 3, 5 or 7")
        return
    endpoint = cluster.control_plane_endpoint
    kind = cluster.load_balancer or ("local" if len(planes) > 1 else
                                     "external" if endpoint else "none")
    if kind == "none" and len(planes) > 1:
        ctx.add(("cluster", "load_balancer"),
                f"'none' (the init node's own address) cannot serve {len(planes)} control "
                "planes: use local (a name on every node, the default) or external (your own "
                "load balancer, in cluster.control_plane_endpoint)")
    elif kind == "none" and endpoint:
        ctx.add(("cluster", "load_balancer"),
                f"'none' uses the init node's address, but cluster.control_plane_endpoint is "
                f"{endpoint!r}: leave load_balancer out (external) or drop the endpoint")
    elif kind == "external" and not endpoint:
        ctx.add(("cluster", "control_plane_endpoint"),
                "load_balancer external needs the load balancer's host:port here")
    elif kind == "local" and endpoint and _looks_numeric(endpoint.partition(":")[0]):
        ctx.add(("cluster", "control_plane_endpoint"),
                f"{endpoint!r}: load_balancer local needs a name (every node's /etc/hosts maps "
                "it), not an address; or use load_balancer external")
    _vip(ctx, nodes, cluster, kind)


def _vip(ctx: _Ctx, nodes: list[Node], cluster: Cluster, kind: str) -> None:
    """kube-vip and haproxy-keepalived: the VIP is the endpoint's host, an address of the
    control planes' subnet that no node has, on a named interface; the port is the API
    server's (kube-vip) or haproxy's, never 6443 (haproxy-keepalived)."""
    if kind not in VIP_KINDS:
        if cluster.vip is not None:
            ctx.add(("cluster", "vip"), f"is only read with load_balancer {' or '.join(VIP_KINDS)}"
                    f" (this cluster's is {kind}): drop it or set load_balancer")
        return
    endpoint = cluster.control_plane_endpoint
    where = ("cluster", "control_plane_endpoint")
    if not endpoint:
        ctx.add(where, f"load_balancer {kind} needs the virtual IP here (a free address of the "
                       "control-plane nodes' subnet, e.g. 192.168.1.100)")
        return
    host, _, port = endpoint.partition(":")
    try:
        vip = ipaddress.IPv4Address(host)
    except ValueError:
        ctx.add(where, f"{endpoint!r}: load_balancer {kind} needs an IPv4 address here (the "
                       "virtual IP), not a name")
        return
    want = ENDPOINT_PORTS[kind]
    if kind == "kube-vip" and port and int(port) != want:
        ctx.add(where, f"{endpoint!r}: kube-vip (ARP mode) hands the VIP to the API servers' own "
                       f"port {want}: write {host}:{want} or just {host}")
    if kind == "haproxy-keepalived" and port and int(port) == 6443:
        ctx.add(where, f"{endpoint!r}: haproxy runs on the control-plane nodes, where "
                       "kube-apiserver already binds *:6443: use another port (the default is "
                       f"{want}: write just {host})")
    if cluster.vip is None or not cluster.vip.interface:
        ctx.add(("cluster", "vip"), f"load_balancer {kind} needs vip.interface: the network "
                                    "interface of the control-plane nodes that carries their "
                                    "subnet (see `ip -4 addr` on a node), e.g. {interface: eth0}")
        return
    net = ipaddress.IPv4Network(f"{vip}/{cluster.vip.prefix}", strict=False)
    if vip in (net.network_address, net.broadcast_address) and net.prefixlen < 31:
        ctx.add(where, f"{host} is the {'network' if vip == net.network_address else 'broadcast'}"
                       f" address of {net}: pick a free host address")
    for n in nodes:
        if str(vip) in (n.address, n.internal_address):
            ctx.add(where, f"{host} is node {n.name}'s address: the virtual IP must be an "
                           "address no machine has")
        elif n.is_control_plane and ipaddress.IPv4Address(n.internal_address) not in net:
            ctx.add(("cluster", "vip", "prefix"),
                    f"control-plane node {n.name} ({n.internal_address}) is not in {net}: the "
                    "virtual IP must be in the control planes' subnet (set vip.prefix to "
                    "theirs, or pick a VIP there)")



def validate(data: Any, name: str, loc: Any = None) -> Inventory:
    """Turn parsed data into an Inventory or raise InventoryError listing every problem."""
    ctx = _Ctx()
    if not isinstance(data, dict):
        raise InventoryError(
            name,
            [
                f"{name}:1: the top level must be a mapping with cluster, "
                "ssh, ..., nodes (see inventory.example.yaml)"
            ],
        )
    for key in data:
        if key not in TOP:
            _unknown(ctx, (), key, TOP)
    cluster_fields = _section(ctx, data.get("cluster"), ("cluster",), CLUSTER)
    ssh_fields = _section(ctx, data.get("ssh"), ("ssh",), SSH_SPEC)
    ssh = SSH(**ssh_fields, given=frozenset(ssh_fields))
    node_prep = NodePrep(**_section(ctx, data.get("node_prep"), ("node_prep",), NODE_PREP))
    docker_fields = _section(ctx, data.get("docker"), ("docker",), DOCKER)
    containerd_fields = _section(ctx, data.get("containerd"), ("containerd",), CONTAINERD)
    given = _registries(ctx, data.get("registries"))
    mirrors = given if given is not None else {}
    notes = _moved(ctx, docker_fields, {"cluster": cluster_fields,
                                        "containerd": containerd_fields,
                                        "registries": mirrors})
    if given is None and not mirrors:  # neither registries nor the old key: the default
        mirrors = {name: list(urls) for name, urls in DEFAULT_REGISTRIES}
    if "vip" in cluster_fields:
        cluster_fields["vip"] = Vip(**_section(ctx, cluster_fields["vip"], ("cluster", "vip"),
                                               VIP))
    cluster = Cluster(**cluster_fields)
    docker = Docker(**docker_fields)
    containerd = Containerd(**containerd_fields)
    registries = Registries(tuple((k, tuple(v)) for k, v in mirrors.items()))
    _runtime(ctx, cluster)
    _proxy_mode(ctx, cluster)
    _kubectl_on_workers(ctx, cluster)
    network = Network(**{"flannel_version": _flannel_default(cluster),
                         **_section(ctx, data.get("network"), ("network",), NETWORK)})
    repos = _repos(ctx, data.get("repos"), cluster)
    notes += _layout_notes(cluster, repos)
    verify = Verify(**_section(ctx, data.get("verify"), ("verify",), VERIFY))
    if verify.nginx_update_image == verify.nginx_image:
        ctx.add(("verify", "nginx_update_image"),
                f"{verify.nginx_image!r} is verify.nginx_image too: ObjectManagement's last "
                "apply must change the image (name another tag of it)")
    indexed = _nodes(ctx, data.get("nodes"))
    _cross_checks(ctx, indexed, cluster)
    nodes = _logins(ctx, ssh, indexed, name)
    if ctx.problems:
        raise InventoryError(name, [_format(name, loc, p, m) for p, m in ctx.problems])
    return Inventory(
        path=name,
        nodes=tuple(nodes),
        cluster=cluster,
        ssh=ssh,
        node_prep=node_prep,
        docker=docker,
        containerd=containerd,
        registries=registries,
        repos=repos,
        network=network,
        verify=verify,
        notes=tuple(notes),
    )


def _moved(ctx: _Ctx, docker: dict[str, Any], new: dict[str, dict[str, Any]]) -> list[str]:
    """Old docker.* keys that moved: take their values into the new place (an error when both
    are set differently); return a note for each."""
    notes = []
    for old, (section, key, name) in MOVED.items():
        if old not in docker:
            continue
        value = docker.pop(old)
        if section == "registries":
            value = list(value)
        if key in new[section] and new[section][key] != value:
            ctx.add(("docker", old), f"moved to {name}, which is also set, to another value: "
                                     f"keep only {name}")
            continue
        new[section][key] = value
        notes.append(f"docker.{old} is now {name} (it serves both runtimes); the old key still "
                     "works: rename it when you can")
    return notes


def _registries(ctx: _Ctx, data: Any) -> dict[str, list[str]] | None:
    """registries: {registry host: [mirror URL, ...]}; None when not given."""
    if data is None:
        return None
    if not isinstance(data, dict):
        ctx.add(("registries",), f"{_show(data)} must map registry hosts (docker.io, "
                                 "registry.k8s.io, ...) to lists of mirror URLs")
        return {}
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        try:
            host = _endpoint(key)
        except ValueError as exc:
            ctx.add(("registries", key), f"{_show(key)} is not a registry host: {exc}")
            continue
        try:
            out[host] = list(_list_of(_url)(value))
        except ValueError as exc:
            ctx.add(("registries", key), f"{_show(value)} {exc}")
    return out


def _proxy_mode(ctx: _Ctx, cluster: Cluster) -> None:
    """The proxy mode against the release (releases.Minor.proxy_modes)."""
    try:
        modes = releases.release(cluster.kubernetes_version).proxy_modes
    except releases.UnknownRelease:
        return
    if cluster.proxy_mode not in modes:
        ctx.add(("cluster", "proxy_mode"),
                f"'{cluster.proxy_mode}' is not offered with Kubernetes "
                f"{cluster.kubernetes_version}: kube-proxy's nftables mode is GA from 1.33 "
                "(alpha behind a feature gate from 1.29, beta from 1.31). Use ipvs or iptables, "
                "or Kubernetes 1.33 or later")


def _kubectl_on_workers(ctx: _Ctx, cluster: Cluster) -> None:
    """``view`` needs kubeadm's ``kubeconfig user --config`` (1.20+: releases.py)."""
    try:
        form = releases.release(cluster.kubernetes_version).kubeconfig_user
    except releases.UnknownRelease:
        return
    if cluster.kubectl_on_workers == "view" and not form:
        ctx.add(("cluster", "kubectl_on_workers"),
                f"'view' needs kubeadm 1.20 or later (kubeconfig user --config), not "
                f"{cluster.kubernetes_version}: use admin (a copy of admin.conf), or none")


def _runtime(ctx: _Ctx, cluster: Cluster) -> None:
    """The runtime against the release: docker only below 1.24 (dockershim was removed in
    1.24); containerd for every release."""
    if cluster.container_runtime != "docker" or cluster.version_tuple[:2] < (1, 24):
        return
    ctx.add(("cluster", "container_runtime"),
            f"'docker' cannot run Kubernetes {cluster.kubernetes_version}: kubeadm's dockershim "
            "was removed in 1.24. Use container_runtime: containerd (or leave it out: the "
            "release's default), or a release below 1.24")


def _repos(ctx: _Ctx, data: Any, cluster: Cluster) -> Repos:
    """The repos; repos.kubernetes defaults to the release's layout (releases.py)."""
    defaults = Repos(kubernetes=_kubernetes_default(cluster))
    if data is None:
        return defaults
    if not isinstance(data, dict):
        ctx.add(("repos",), "must be a mapping with base, docker_ce, kubernetes")
        return defaults
    for key in data:
        if key not in REPO_NAMES:
            _unknown(ctx, ("repos",), key, REPO_NAMES)
    found = {
        key: _repo(ctx, data.get(key), ("repos", key), getattr(defaults, key)) for key in REPO_NAMES
    }
    return Repos(
        base=found["base"],
        docker_ce=found["docker_ce"] or defaults.docker_ce,
        kubernetes=found["kubernetes"] or defaults.kubernetes,
    )


def _layout_notes(cluster: Cluster, repos: Repos) -> list[str]:
    """A warning when repos.kubernetes's layout cannot serve the release (releases.LAYOUTS): a
    legacy kubernetes-el7 repo past 1.28, a per-minor one below 1.24 or pinned to another minor.
    A URL of unknown layout (a user's own mirror) is not judged."""
    version, baseurl = cluster.kubernetes_version, repos.kubernetes.baseurl
    why = releases.cannot_serve(baseurl, version)
    if why is None:
        return []
    row = releases.release(version)
    default = _kubernetes_default(cluster).baseurl.replace(releases.MINOR, row.minor)
    return [f"repos.kubernetes.baseurl {baseurl!r} cannot serve Kubernetes {version}: {why}. "
            f"Drop repos.kubernetes so the release table chooses the repo ({default}), or use "
            f"{releases.LAYOUTS[row.layout].write}"]


def _flannel_default(cluster: Cluster) -> str:
    """network.flannel_version's default: the release's (releases.Minor.flannel)."""
    try:
        return releases.release(cluster.kubernetes_version).flannel
    except releases.UnknownRelease:
        return Network.flannel_version


def _kubernetes_default(cluster: Cluster) -> Repo:
    """Aliyun's legacy kubernetes-el7 repo below 1.24; from 1.24 its copy of pkgs.k8s.io's
    per-minor repo (models.KUBERNETES_REPOS by releases.Minor.layout)."""
    try:
        layout = releases.release(cluster.kubernetes_version).layout
    except releases.UnknownRelease:
        layout = "legacy"
    return KUBERNETES_REPOS[layout]


def _format(name: str, loc: Any, path: tuple, message: str) -> str:
    line = loc.line(path) if loc is not None else None
    where = f"{name}:{line}" if line else name
    return f"{where}: {_dotted(path) or '(top level)'}: {message}"
