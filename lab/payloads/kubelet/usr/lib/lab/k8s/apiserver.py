"""The cluster's API servers (one per control-plane node) and how a client on THIS node reaches
one through the server URL of its kubeconfig (lab/k8s/STATE.md "HA control planes").

state.json `apiservers`: {node: {"address", "port", "running", "etcd", "sans": {"dns": [...],
"ip": [...]}}}, written by kubeadm (init, control-plane join, reset). An API server answers
when its record is `running` (not reset) and, once its node has a real etcd member (`etcd`
true, k8s/etcd.py), that member says it is healthy on its metrics listener
(`http://ADDRESS:2381/health`: etcd's own check, false without a leader or when a quorum read
fails; refused at once when the node, and so the member, is gone), as kube-apiserver's own
etcd readiness check would. Answers are cached per process for HEALTH_TTL seconds.

A client resolves the URL's host like Go's resolver with `hosts: files dns`: this node's
/etc/hosts (every address of the name, in file order, tried one after the other as Go's dialer
does), else the resolv.conf nameserver, which in the lab answers nothing (`lookup NAME on
127.0.0.1:53: no such host`, as the lab's other texts say). Then, per address:
- a control-plane node's address (exact match first: every lab address is a loopback one) ->
  that node's API server on its port; down or another port -> `connect: connection refused`;
- another lab node's address -> nothing listens there: refused;
- any other 127.0.0.0/8 address (127.0.0.1, ...) -> THIS node's haproxy, while its unit runs
  (the haproxy payload's snapshot /run/lab/haproxy/config.json, written when the unit started:
  a later edit of haproxy.cfg needs a restart or reload, as with the real daemon). A frontend
  bound to that address (or a wildcard) and port, in mode tcp, sends the connection to its
  default_backend's servers, the first one in order whose API server is up (a server with
  `check` is skipped while down, as haproxy's health check marks it; one without `check` is
  taken as up, and a dead one then closes the connection); none: haproxy closes the
  connection (Go: `EOF`). A frontend in mode http answers the TLS client with an HTTP error
  (`tls: first record does not look like a TLS handshake`). No such frontend, haproxy not
  running: refused;
- anything else (outside 127.0.0.0/8): no packet leaves the machine: `i/o timeout` (at once).
Then TLS: the URL's host must be among the reached API server's certificate SANs
(crypto/x509 HostnameError's text).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import time

from k8s import common

HEALTH_PORT = 2381  # etcd's --listen-metrics-urls (k8s/etcd.py etcd_argv): /health, plain HTTP
HEALTH_TTL = 1.0
HAPROXY_SNAPSHOT = "/run/lab/haproxy/config.json"  # the haproxy payload's start hook
HOSTS = "/etc/hosts"
RESOLV = "/etc/resolv.conf"
_HEALTH: dict[str, tuple[float, bool]] = {}


class Unreachable(Exception):
    """A client could not reach an API server. `kind`: dns | refused | eof | timeout | http |
    x509; `hostport` as in the URL; `error` Go's error text (what follows `Get "URL": ` in
    net/http's error, and kubectl's `Unable to connect to the server: `)."""

    def __init__(self, kind: str, hostport: str, error: str) -> None:
        super().__init__(error)
        self.kind, self.hostport, self.error = kind, hostport, error

    def kubectl(self) -> str:
        """What kubectl prints (helpers.go: a refused connection has its own sentence)."""
        if self.kind == "refused":
            return (f"The connection to the server {self.hostport} was refused - did you "
                    "specify the right host or port?")
        return f"Unable to connect to the server: {self.error}"

    def get(self, url: str) -> str:
        """net/http's error for a GET of URL (kubeadm's texts)."""
        return f'Get "{url}": {self.error}'


# ---- the records ---------------------------------------------------------------------------

def records(data: dict) -> dict[str, dict]:
    """Every API server the cluster has had a record of ({} without a cluster). A state
    written before HA records (only `control_plane` and `api_up`) gives its one server."""
    if "apiservers" in data:
        return data.get("apiservers") or {}
    cp = data.get("control_plane")
    if not cp:
        return {}
    node = (data.get("nodes") or {}).get(cp) or {}
    return {cp: {"address": node.get("address", ""), "port": endpoint_port(data),
                 "running": bool(data.get("api_up")), "etcd": False, "sans": {}}}


def endpoint_port(data: dict) -> int:
    try:
        return int((data.get("endpoint") or ":6443").rsplit(":", 1)[1] or 6443)
    except ValueError:
        return 6443


def any_running(data: dict) -> bool:
    """Some API server's record is running (no health asked): the cluster is not reset."""
    return any(r.get("running") for r in records(data).values())


def sync_api_up(data: dict) -> None:
    """Keep the single-control-plane field `api_up` (read by older readers) in step."""
    data["api_up"] = any_running(data)


def etcd_healthy(address: str, timeout: float = 2.0) -> bool:
    """etcd's /health on the member's metrics listener (cached HEALTH_TTL s per process)."""
    now = time.monotonic()
    hit = _HEALTH.get(address)
    if hit and now - hit[0] < HEALTH_TTL:
        return hit[1]
    ok = False
    conn = http.client.HTTPConnection(address, HEALTH_PORT, timeout=timeout)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        ok = resp.status == 200 and json.loads(resp.read() or b"{}").get("health") == "true"
    except (OSError, ValueError, http.client.HTTPException):
        ok = False
    finally:
        conn.close()
    _HEALTH[address] = (time.monotonic(), ok)
    return ok


def up(data: dict, name: str) -> bool:
    """The API server of control-plane node NAME answers now."""
    rec = records(data).get(name)
    if not rec or not rec.get("running"):
        return False
    return etcd_healthy(rec["address"]) if rec.get("etcd") else True


def listening(data: dict, name: str) -> bool:
    """Cheaper than up(): NAME's API server is running and its node is there (its etcd
    member's port answers a TCP connect; no quorum asked). For the kubernetes Service's
    endpoints, which the network stand-ins compute often (a dead server's lease expiry is
    not waited for)."""
    rec = records(data).get(name)
    if not rec or not rec.get("running"):
        return False
    if not rec.get("etcd"):
        return True
    import socket

    try:
        with socket.create_connection((rec["address"], HEALTH_PORT), timeout=0.5):
            return True
    except OSError:
        return False


def endpoints(data: dict) -> list[tuple[str, str, int]]:
    """(node, address, port) of the API servers in the kubernetes Service's endpoints."""
    return [(n, r["address"], int(r.get("port") or 6443))
            for n, r in sorted(records(data).items()) if r.get("address") and listening(data, n)]


# ---- name resolution (this node) ------------------------------------------------------------

def hosts_lookup(name: str, path: str = HOSTS) -> list[str]:
    """The IPv4 addresses /etc/hosts gives NAME, in file order (Go's hosts.go: every line
    naming it counts; names are case-insensitive)."""
    found: list[str] = []
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return found
    want = name.lower().rstrip(".")
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            ip = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        if ip.version == 4 and want in (f.lower().rstrip(".") for f in fields[1:]) \
                and str(ip) not in found:
            found.append(str(ip))
    return found


def nameserver() -> str:
    """The first nameserver of /etc/resolv.conf (Go's default 127.0.0.1 without one)."""
    try:
        with open(RESOLV) as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    return fields[1]
    except OSError:
        pass
    return "127.0.0.1"


def split_url(url: str) -> tuple[str, int]:
    """(host, port) of https://HOST[:PORT][/...] (443 without a port)."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return rest, 443
    return host.strip("[]"), int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


# ---- haproxy (this node) --------------------------------------------------------------------

def haproxy() -> dict | None:
    """The running haproxy's loaded config (the payload's snapshot), None while it is not."""
    try:
        with open(HAPROXY_SNAPSHOT) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _frontend(snap: dict, addr: str, port: int) -> dict | None:
    for fe in snap.get("frontends", []):
        for bind_addr, bind_port in fe.get("binds", []):
            if int(bind_port) == port and bind_addr in ("", "*", "0.0.0.0", "::", addr):
                return fe
    return None


# ---- reaching an API server -----------------------------------------------------------------

def _by_address(data: dict) -> dict[str, str]:
    return {r["address"]: n for n, r in records(data).items() if r.get("address")}


def _dial(data: dict, addr: str, port: int, own: str) -> tuple[str | None, str, str]:
    """One address: (API server node or None, error kind, Go error) of a TLS dial."""
    dial = f"dial tcp {addr}:{port}"
    refused = (None, "refused", f"{dial}: connect: connection refused")
    servers = _by_address(data)
    if addr in servers:
        name = servers[addr]
        rec = records(data)[name]
        if int(rec.get("port") or 6443) == port and up(data, name):
            return name, "", ""
        return refused
    nodes = {i.get("address") for i in (data.get("nodes") or {}).values()}
    ip = ipaddress.ip_address(addr)
    if not ip.is_loopback:
        return None, "timeout", f"{dial}: i/o timeout"
    if addr in nodes and addr != own:
        return refused  # another node: nothing of ours listens there
    snap = haproxy()
    fe = _frontend(snap, addr, port) if snap else None
    if fe is None:
        return refused
    if fe.get("mode") != "tcp":
        return None, "http", "tls: first record does not look like a TLS handshake"
    backend = (snap.get("backends") or {}).get(fe.get("backend") or "")
    for srv in (backend or {}).get("servers", []):
        target = servers.get(srv.get("address", ""))
        rec = records(data).get(target or "")
        alive = bool(rec) and int(rec.get("port") or 6443) == int(srv.get("port") or 0) \
            and up(data, target or "")
        if alive:
            return target, "", ""
        if not srv.get("check"):
            break  # no health check: haproxy sends the connection there, and it fails
    return None, "eof", "EOF"


def own_address() -> str:
    return common.host_address()


def reach(url: str, data: dict, client_minor: int = 20, verify: bool = True) -> str:
    """The node whose API server a client on this node reaches at URL; raise Unreachable
    with the client's error otherwise. CLIENT_MINOR: the client's release (Go 1.20+, i.e.
    Kubernetes 1.27+, wraps certificate errors in `tls: failed to verify certificate: `);
    VERIFY False: no certificate check (kubeadm's first, insecure cluster-info fetch)."""
    host, port = split_url(url)
    hostport = f"{host}:{port}"
    if _is_ip(host):
        addrs = [host]
    else:
        addrs = hosts_lookup(host)
        if not addrs:
            raise Unreachable("dns", hostport, f"dial tcp: lookup {host} on {nameserver()}:53: "
                              "no such host")
    own, first = own_address(), None
    for addr in addrs:
        name, kind, error = _dial(data, addr, port, own)
        if name:
            if verify:
                check_san(data, name, host, hostport, client_minor)
            return name
        first = first or Unreachable(kind, hostport, error)
    raise first  # Go's dialSerial returns the first address's error


def check_san(data: dict, name: str, host: str, hostport: str, client_minor: int) -> None:
    """crypto/x509 VerifyHostname against the API server's certificate SANs."""
    sans = records(data)[name].get("sans") or {}
    if not sans:
        return
    dns, ips = sans.get("dns") or [], sans.get("ip") or []
    if _is_ip(host):
        if host in ips:
            return
        valid = ", ".join(ips)
    else:
        if host.lower() in (d.lower() for d in dns):
            return
        valid = ", ".join(dns)
    err = f"x509: certificate is valid for {valid}, not {host}"
    if client_minor >= 27:  # Go 1.20 (crypto/tls: verification errors are wrapped)
        err = f"tls: failed to verify certificate: {err}"
    raise Unreachable("x509", hostport, err)


def apiserver_sans(node: str, address: str, dns_domain: str, service_subnet: str,
                   endpoint: str, extra: list[str]) -> dict[str, list[str]]:
    """kubeadm's apiserver serving certificate SANs (phases/certs GetAPIServerAltNames): DNS
    the node name, kubernetes, kubernetes.default, kubernetes.default.svc,
    kubernetes.default.svc.<domain>; IPs the first service address and the advertise address;
    then the controlPlaneEndpoint's host and every apiServer.certSANs entry (a name or an
    address; appendSANsToAltNames skips duplicates), in that order."""
    try:
        svc = str(ipaddress.ip_network(service_subnet or "10.96.0.0/12",
                                       strict=False).network_address + 1)
    except ValueError:
        svc = "10.96.0.1"
    dns = [node, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           f"kubernetes.default.svc.{dns_domain or 'cluster.local'}"]
    ips = [svc, address]
    ep_host = split_url("https://" + endpoint)[0] if endpoint else ""
    for item in ([ep_host] if ep_host else []) + [str(x) for x in extra or []]:
        bucket = ips if _is_ip(item) else dns
        if item and item not in bucket:
            bucket.append(item)
    return {"dns": dns, "ip": ips}
