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

import contextlib
import hashlib
import http.client
import ipaddress
import json
import os
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
    written before HA records (only `control_plane` and `api_up`) gives its one server.
    A record whose node's kubelet last saw no kube-apiserver manifest (static_present) is
    returned as a copy with `running` false (the pod is gone; data itself is not changed).
    This node's static pods are synced first (sync_static, once per process)."""
    if "apiservers" in data:
        recs = data.get("apiservers") or {}
    else:
        cp = data.get("control_plane")
        if not cp:
            return {}
        node = (data.get("nodes") or {}).get(cp) or {}
        recs = {cp: {"address": node.get("address", ""), "port": endpoint_port(data),
                     "running": bool(data.get("api_up")), "etcd": False, "sans": {}}}
    sync_static(data)
    return {n: dict(r, running=False) if r.get("running")
            and not static_present(data, n, "kube-apiserver") else r for n, r in recs.items()}


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


# ---- static pods (the kubelet's file source, lab/k8s/STATE.md "Static pods") ----------------
# The lab has no kubelet daemon: whichever stand-in runs on a node while its kubelet unit is
# active (records() is reached by kubectl, kubeadm, crictl, docker and the network stand-ins'
# k8s_sync) compares /etc/kubernetes/manifests with what this node last published, at the
# cost of one stat of the directory. The result is /var/lib/lab-cluster/static/<node>.json
# (mode 0666; the node writes it, any node reads it): {"cluster_id", "mtime" (the dir's
# st_mtime_ns), "pods": {component: {"present", "gen" (1 + how many times its manifest came
# back), "started", "stopped" (null while present)}}, "etcd_pending"}. A component without an
# entry counts as present (a node that never synced). kubeadm reset removes the file (its
# containers are removed).

MANIFESTS = "/etc/kubernetes/manifests"
STATIC_DIR = "/var/lib/lab-cluster/static"
KUBELET_RUNNING = "/run/lab/kubelet/running"  # kept by the kubelet unit hooks
STATIC_PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
STATIC_TTL = 1.0
_STATIC: dict[str, tuple[float, dict]] = {}
_SYNCED = [False]


def static_path(node: str) -> str:
    return f"{STATIC_DIR}/{node}.json"


def static_doc(node: str, fresh: bool = False) -> dict:
    """NODE's published static pods file ({} without one), cached STATIC_TTL s per process."""
    now = time.monotonic()
    hit = _STATIC.get(node)
    if hit and not fresh and now - hit[0] < STATIC_TTL:
        return hit[1]
    try:
        with open(static_path(node)) as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        doc = {}
    _STATIC[node] = (now, doc)
    return doc


def static_pods(data: dict, node: str) -> dict[str, dict]:
    """NODE's static pods for this cluster ({} when it never synced in this cluster)."""
    doc = static_doc(node)
    if not data.get("cluster_id") or doc.get("cluster_id") != data.get("cluster_id"):
        return {}
    return doc.get("pods") or {}


def static_present(data: dict, node: str, component: str) -> bool:
    """COMPONENT's manifest is in NODE's manifests dir as its kubelet last saw it."""
    return bool((static_pods(data, node).get(component) or {}).get("present", True))


def sync_static(data: dict, force: bool = False) -> None:
    """This node's kubelet syncing its static pods (once per process unless FORCE): only
    while kubelet.service runs (a stopped kubelet notices nothing; containers outlive it).
    A manifest gone: its pod stops (stopped = now); back: a new container (gen + 1). The
    etcd member (k8s/etcd.py) is stopped / started again by PID, as root only: a non-root
    caller leaves `etcd_pending` for the next root sync."""
    if _SYNCED[0] and not force:
        return
    _SYNCED[0] = True
    cid = data.get("cluster_id")
    if not cid or not os.path.exists(KUBELET_RUNNING):
        return
    try:
        mtime = os.stat(MANIFESTS).st_mtime_ns
    except OSError:
        return
    from k8s import state  # late: state imports nothing of ours, but keep this module light

    node = state.kubelet_node_name()
    doc = static_doc(node, fresh=True)
    same = doc.get("cluster_id") == cid
    if same and doc.get("mtime") == mtime and not (doc.get("etcd_pending")
                                                   and os.geteuid() == 0):
        return
    try:
        names = set(os.listdir(MANIFESTS))
    except OSError:
        return
    now = time.time()
    pods = {k: dict(v) for k, v in (doc.get("pods") or {}).items()} if same else {}
    etcd_changed = bool(doc.get("etcd_pending")) if same else False
    for comp in STATIC_PODS:
        present = f"{comp}.yaml" in names
        old = pods.get(comp)
        if old is None:
            if present:
                pods[comp] = {"present": True, "gen": 1, "started": now, "stopped": None}
            continue
        if bool(old.get("present")) == present:
            continue
        if present:
            pods[comp] = dict(old, present=True, gen=int(old.get("gen", 1)) + 1, started=now,
                              stopped=None, prev_started=old.get("started"),
                              prev_stopped=old.get("stopped"))
        else:
            pods[comp] = dict(old, present=False, stopped=now)
        etcd_changed = etcd_changed or comp == "etcd"
    for comp, pod in pods.items():
        if pod.get("present") and pod.get("mtime_seen") != mtime:
            pod.update(_manifest_spec(comp), mtime_seen=mtime)
    pending = etcd_changed and not _etcd_follow(pods.get("etcd"))
    new = {"cluster_id": cid, "node": node, "mtime": mtime, "pods": pods,
           "etcd_pending": pending}
    if new != doc:
        os.makedirs(STATIC_DIR, mode=0o777, exist_ok=True)
        common.write_file(static_path(node), json.dumps(new), 0o666)
        _STATIC[node] = (time.monotonic(), new)


def _manifest_spec(comp: str) -> dict:
    """image and command of a static pod's manifest (its first container), for the runtime's
    listings; {} when unreadable."""
    try:
        with open(f"{MANIFESTS}/{comp}.yaml") as fh:
            doc = common.yaml.safe_load(fh) or {}
        ctr = ((doc.get("spec") or {}).get("containers") or [{}])[0]
    except (OSError, ValueError, AttributeError, IndexError, common.yaml.YAMLError):
        return {}
    return {"image": str(ctr.get("image") or ""),
            "command": [str(c) for c in (ctr.get("command") or []) + (ctr.get("args") or [])]}


def static_containers(data: dict, node: str) -> list[dict]:
    """The static pods' containers NODE's runtime holds (only these: the lab's other pods and
    every pod sandbox are not listed), newest first: per component its current container
    (running while the manifest is there, else exited) and, after a manifest came back, the
    exited one before it (the kubelet's container GC keeps recent dead ones). Each: {id (64
    hex), name, pod, namespace, uid (a static pod's UID is its manifest hash: 32 hex),
    sandbox (64 hex), image, command, attempt, running, created, finished}."""
    out: list[dict] = []
    cid = data.get("cluster_id", "")
    for comp, pod in sorted(static_pods(data, node).items()):
        uid = hashlib.md5(f"{cid}/{node}/{comp}".encode()).hexdigest()
        gens = [(int(pod.get("gen", 1)), pod.get("started") or 0, pod.get("stopped"),
                 bool(pod.get("present")))]
        if pod.get("prev_started"):
            gens.append((gens[0][0] - 1, pod["prev_started"], pod.get("prev_stopped"), False))
        for gen, started, stopped, running in gens:
            key = f"{cid}/{node}/{comp}/{gen}"
            out.append({"id": hashlib.sha256(key.encode()).hexdigest(), "name": comp,
                        "pod": f"{comp}-{node}", "namespace": "kube-system", "uid": uid,
                        "sandbox": hashlib.sha256(f"{key}/sandbox".encode()).hexdigest(),
                        "image": pod.get("image", ""), "command": pod.get("command") or [],
                        "attempt": 0, "running": running, "created": float(started),
                        "finished": None if running else float(stopped or started)})
    out.sort(key=lambda c: -c["created"])
    return out


def human_duration(seconds: float) -> str:
    """docker/go-units HumanDuration (duration.go), as crictl and docker print CREATED."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _etcd_follow(pod: dict | None) -> bool:
    """Make the local etcd member follow its manifest (stop it by PID / start it from its
    data dir); False when this process cannot (not root)."""
    if os.geteuid() != 0:
        return False
    try:
        from k8s import etcd
    except ImportError:
        return True
    if pod is None or pod.get("present"):
        etcd.boot()  # starts the saved member while the manifest is there; else nothing
    else:
        rec = etcd.running()
        if rec is not None:
            etcd.stop_member(rec["name"])
    return True


def forget_static(node: str) -> None:
    """kubeadm reset: the node's containers are removed, nothing is left to list."""
    with contextlib.suppress(OSError):
        os.unlink(static_path(node))
    _STATIC.pop(node, None)


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


def _via_haproxy(data: dict, snap: dict | None, addr: str, port: int,
                 exact: bool = False) -> tuple[str | None, str, str] | None:
    """A connection to ADDR:PORT accepted by the haproxy whose loaded config is SNAP: (API
    server node or None, error kind, Go error); None when no frontend binds there (EXACT: a
    bind to that very address only, not a wildcard)."""
    fe = _frontend(snap, addr, port) if snap else None
    if fe is None or (exact and not any(a == addr for a, _ in fe.get("binds", []))):
        return None
    if fe.get("mode") != "tcp":
        return None, "http", "tls: first record does not look like a TLS handshake"
    servers = _by_address(data)
    backend = ((snap or {}).get("backends") or {}).get(fe.get("backend") or "")
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


def _haproxy_on(node: str, own_node: bool) -> dict | None:
    """NODE's running haproxy's loaded config: this node's snapshot, else what NODE's haproxy
    hook published in the cluster dir (lab/k8s/STATE.md "Virtual IPs")."""
    if own_node:
        return haproxy()
    from k8s import vip

    return vip.haproxy_of(node)


def _vip_state(data: dict) -> tuple[dict, dict[str, str]]:
    """({held address: (node, prefix, interface)}, {node: address}); empty without VIPs."""
    try:
        from k8s import vip
    except ImportError:
        return {}, {}
    held = vip.holders(data)
    return held, vip.node_addresses(data) if held or os.path.isdir(vip.DIR) else {}


def _same_block(addr: str, own: str) -> bool:
    """ADDR is in this node's eth0 subnet (the lab's block, /24): ARP asks for it there."""
    try:
        return ipaddress.ip_address(addr) in ipaddress.ip_network(f"{own}/24", strict=False)
    except ValueError:
        return False


def _dial(data: dict, addr: str, port: int, own: str) -> tuple[str | None, str, str]:
    """One address: (API server node or None, error kind, Go error) of a TLS dial. A virtual
    IP behaves as its holder's address (k8s/vip.py); another node's address, at a port its
    published haproxy binds, reaches that haproxy; an address of the lab's block nobody holds
    gets no ARP answer: `connect: no route to host`."""
    dial = f"dial tcp {addr}:{port}"
    refused = (None, "refused", f"{dial}: connect: connection refused")
    ip = ipaddress.ip_address(addr)
    if not ip.is_loopback:
        return None, "timeout", f"{dial}: i/o timeout"
    servers = _by_address(data)
    held, addresses = _vip_state(data)
    me = next((n for n, a in addresses.items() if a == own), common.hostname())
    node = held[addr][0] if addr in held else servers.get(addr) or next(
        (n for n, a in addresses.items() if a == addr), None)
    if node is not None and (addr in held or addr in servers or addr != own):
        rec = records(data).get(node)
        if rec and int(rec.get("port") or 6443) == port:
            return (node, "", "") if up(data, node) else refused
        got = _via_haproxy(data, _haproxy_on(node, node == me or addr == own), addr, port)
        return got or refused
    nodes = {i.get("address") for i in (data.get("nodes") or {}).values()}
    if addr in nodes and addr != own:
        return refused  # another node: nothing of ours listens there
    if addr != own and addr != "127.0.0.1" and _same_block(addr, own):
        got = _via_haproxy(data, haproxy(), addr, port, exact=True)
        return got or (None, "noroute", f"{dial}: connect: no route to host")
    return _via_haproxy(data, haproxy(), addr, port) or refused


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
