#!/usr/bin/python3 -S
"""Real etcd members for the lab's control planes (lab/k8s/STATE.md "Real etcd").

Each control-plane node runs Debian's etcd 3.4 (`/usr/bin/etcd`, the host's binary seen through
the node's /usr) as kubeadm's static pod would: kubeadm's flags and TLS file layout under
/etc/kubernetes/pki/etcd, bound to the node's own address (127.0.B.N) only, never 127.0.0.1
nor a wildcard: every lab shares the host's network. Membership, health and quorum are etcd's
own, asked with the real etcdctl (API v3).

A member is two processes in the node: a small "shim" (this file, `shim`; it plays the
container's runtime shim) and etcd, its child. The shim serves `kubectl exec etcd-<node> --
...` requests (`/var/lib/lab-cluster/exec/etcd/<node>/ID.req.json`) by running the command in
the etcd container's view of the node (only its two hostPath volumes mounted), and stops etcd
on SIGTERM. Both are in the node's PID namespace: they end with the node.

Used by the kubeadm stand-in (on_init, on_reset, add_member, start_member, remove_member,
port_in_use), the kubelet's start hook (`etcd.py boot`) and kubectl's exec (exec_in_pod).
`etcd.py call FUNC [JSON-ARG]...` calls one function and prints its result as JSON (tests).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
PKI = "/etc/kubernetes/pki/etcd"
DATA_DIR = "/var/lib/etcd"
LOG = "/var/log/lab-etcd.log"
RUN = "/run/lab/etcd"  # volatile: the running member (pids), dropped by a reboot
RECORD = f"{RUN}/member.json"
SAVED = "/var/lib/lab/etcd/member.json"  # on disk: what the kubelet restarts after a reboot
MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
EXEC = "/var/lib/lab-cluster/exec/etcd"
CLIENT_PORT, PEER_PORT, METRICS_PORT = 2379, 2380, 2381
START_TIMEOUT = 40.0  # kubeadm waits 8 x 5 s for a new member (phases/etcd/local.go)
ADD_TIMEOUT = 30.0  # member add retried while etcd answers "unhealthy cluster"
STOP_GRACE = 10.0
CLAIM = 5.0  # how long an exec request waits for the member's shim to take it
TICK = 0.1
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# the etcd image's files (kubernetes cluster/images/etcd/Dockerfile: etcd and etcdctl in
# /usr/local/bin, a static bash as /bin/sh on a distroless base) -> the node's binaries
IMAGE = {"/usr/local/bin/etcd": ETCD, "/usr/local/bin/etcdctl": ETCDCTL, "/bin/sh": "/bin/bash"}


class EtcdError(RuntimeError):
    """An etcd member could not be started, reached or changed; the message says why."""


# ---- addresses and URLs -----------------------------------------------------------------------

def _check_address(address: str) -> None:
    """Members bind a lab node's own address: never 127.0.0.1 or a wildcard (shared network)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise EtcdError(f"etcd: {address!r} is not an IP address (127.0.B.N)") from None
    if ip.is_unspecified or str(ip) in ("127.0.0.1", "::1"):
        raise EtcdError(f"etcd: refusing to bind {address}: lab nodes share the host's network, "
                        "a member binds its node's own address (127.0.B.N) only")


def client_url(address: str) -> str:
    return f"https://{address}:{CLIENT_PORT}"


def peer_url(address: str) -> str:
    return f"https://{address}:{PEER_PORT}"


# ---- certificates (kubeadm's etcd PKI, real X.509 made with openssl) ----------------------------

LEAVES = {  # base name -> (CN or None for the member's name, O, extendedKeyUsage, SANs?)
    "server": (None, "", "serverAuth,clientAuth", True),
    "peer": (None, "", "serverAuth,clientAuth", True),
    "healthcheck-client": ("kube-etcd-healthcheck-client", "system:masters", "clientAuth", False),
}  # cmd/kubeadm/app/phases/certs/certlist.go KubeadmCertEtcd*; SANs: pkiutil getAltNames


def _openssl(*args: str) -> str:
    res = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise EtcdError(f"openssl {args[0]} failed: {res.stderr.strip()}")
    return res.stdout


def _sans(name: str, address: str) -> list[str]:
    """kubeadm's etcd server/peer SANs: the node name, localhost, the advertise address,
    127.0.0.1 and ::1."""
    return [f"DNS:{name}", "DNS:localhost", f"IP:{address}", "IP:127.0.0.1", "IP:::1"]


def _leaf_ok(crt: str, name: str, address: str) -> bool:
    """CRT exists, is signed by this node's etcd CA and (server, peer) names NAME and
    ADDRESS."""
    if not os.path.exists(crt):
        return False
    verify = subprocess.run(["openssl", "verify", "-CAfile", f"{PKI}/ca.crt", crt],
                            capture_output=True, text=True)
    if verify.returncode != 0:
        return False
    if crt.endswith("healthcheck-client.crt"):
        return True
    text = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True).stdout
    sans = [x.strip() for x in text.split("\n", 1)[-1].split(",")]
    return f"IP Address:{address}" in sans and f"DNS:{name}" in sans


def ensure_certs(name: str, address: str) -> None:
    """The etcd CA (`ca.crt`/`ca.key`, CN etcd-ca, 10 years; an existing pair is used as it is:
    a joining control plane gets the cluster's copied there) and this member's `server`,
    `peer` (CN NAME, SANs of `_sans`, server+client auth) and `healthcheck-client` (CN
    kube-etcd-healthcheck-client, O system:masters, client auth) certificates, 1 year, RSA
    2048. A leaf is kept when it is signed by the CA and names ADDRESS, else rewritten."""
    _check_address(address)
    os.makedirs(PKI, mode=0o755, exist_ok=True)
    ca_crt, ca_key = f"{PKI}/ca.crt", f"{PKI}/ca.key"
    if os.path.exists(ca_crt) != os.path.exists(ca_key):
        raise EtcdError(f"etcd: {ca_crt} and {ca_key} must both exist or both be absent")
    if not os.path.exists(ca_crt):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
                 "-out", ca_crt, "-days", "3650", "-subj", "/CN=etcd-ca",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign")
        os.chmod(ca_key, 0o600)
    errors: list[Exception] = []

    def leaf(base: str) -> None:
        try:
            _leaf(base, name, address)
        except Exception as exc:  # raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=leaf, args=(base,)) for base in LEAVES]
    for t in threads:  # RSA key generation dominates: the three leaves at once
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _leaf(base: str, name: str, address: str) -> None:
    """One leaf of LEAVES, signed by the etcd CA, unless a good one is there."""
    cn, org, eku, with_sans = LEAVES[base]
    crt, key = f"{PKI}/{base}.crt", f"{PKI}/{base}.key"
    if _leaf_ok(crt, name, address):
        return
    with tempfile.TemporaryDirectory() as tmp:
        csr, cnf = f"{tmp}/leaf.csr", f"{tmp}/leaf.cnf"
        subj = (f"/O={org}" if org else "") + f"/CN={cn or name}"
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{tmp}/k",
                 "-out", csr, "-subj", subj)
        with open(cnf, "w") as fh:
            fh.write("[leaf]\nbasicConstraints = critical,CA:FALSE\n"
                     "keyUsage = critical,digitalSignature,keyEncipherment\n"
                     f"extendedKeyUsage = {eku}\nauthorityKeyIdentifier = keyid\n"
                     + (f"subjectAltName = {','.join(_sans(name, address))}\n"
                        if with_sans else ""))
        serial = f"0x{int.from_bytes(os.urandom(8), 'big') | 1 << 63:016x}"
        _openssl("x509", "-req", "-in", csr, "-CA", f"{PKI}/ca.crt", "-CAkey",
                 f"{PKI}/ca.key", "-set_serial", serial, "-days", "365", "-sha256",
                 "-extfile", cnf, "-extensions", "leaf", "-out", f"{tmp}/c")
        os.chmod(f"{tmp}/k", 0o600)
        shutil.move(f"{tmp}/k", key)
        shutil.move(f"{tmp}/c", crt)


# ---- etcdctl ------------------------------------------------------------------------------------

def etcdctl(endpoint_address: str, *args: str, timeout: float = 5.0,
            cert: str = "healthcheck-client") -> subprocess.CompletedProcess:
    """The real etcdctl (API v3) against https://ENDPOINT_ADDRESS:2379 with this node's
    CERT pair (kubeadm's healthcheck-client by default) and the etcd CA."""
    argv = [ETCDCTL, f"--endpoints={client_url(endpoint_address)}", f"--cacert={PKI}/ca.crt",
            f"--cert={PKI}/{cert}.crt", f"--key={PKI}/{cert}.key",
            f"--dial-timeout={timeout:g}s", f"--command-timeout={timeout:g}s", *args]
    env = {"PATH": PATH, "LANG": "C", "ETCDCTL_API": "3"}
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env,
                              timeout=2 * timeout + 5)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 1, "", f"etcdctl: no answer in {timeout} s")


def _ctl_json(via: str, *args: str) -> dict:
    res = etcdctl(via, *args, "-w", "json")
    if res.returncode != 0:
        raise EtcdError(f"etcdctl {' '.join(args)} via {via} failed: "
                        f"{(res.stderr or res.stdout).strip()}")
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise EtcdError(f"etcdctl {' '.join(args)}: not JSON: {res.stdout[:200]!r}") from None


def _member(m: dict) -> dict:
    """One member of etcdctl's JSON (IDs are uint64 numbers there) as {name, id (hex),
    peerURLs, clientURLs}; `name` and `clientURLs` are empty until the member has started."""
    return {"name": m.get("name", ""), "id": format(int(m.get("ID", 0)), "x"),
            "peerURLs": list(m.get("peerURLs") or []),
            "clientURLs": list(m.get("clientURLs") or [])}


def members(via: str) -> list[dict]:
    """`etcdctl member list` through the member at VIA."""
    return [_member(m) for m in _ctl_json(via, "member", "list").get("members") or []]


def _initial_cluster(listed: list[dict], new_id: int, name: str) -> dict[str, str]:
    """ETCD_INITIAL_CLUSTER as etcdctl's member add prints it: name -> peer URL of every
    member, the unstarted new one (NEW_ID) under NAME."""
    cluster: dict[str, str] = {}
    for m in listed:
        mname = name if int(m.get("ID", 0)) == new_id else m.get("name", "")
        if not mname:
            raise EtcdError(f"etcd: member {_member(m)['id']} ({m.get('peerURLs')}) was added "
                            "but never started; start it or remove it before adding another")
        for url in m.get("peerURLs") or []:
            cluster[mname] = url
    return cluster


def add_member(via: str, name: str, peer_url: str) -> dict[str, str]:
    """`etcdctl member add NAME --peer-urls=PEER_URL` through the member at VIA; returns the
    new member's --initial-cluster (name -> peer URL of every member, the new one included).
    As kubeadm's etcd client (util/etcd/etcd.go addMember): a member already listed with
    PEER_URL is not added again, and etcd's transient refusal is retried for ADD_TIMEOUT s:
    `etcdserver: unhealthy cluster`, which 3.4's --strict-reconfig-check answers until the
    leader has been connected to every voting member for 5 s (server.go mayAddMember,
    HealthInterval), i.e. right after the previous member joined. Other refusals (`etcdserver:
    re-configuration failed due to not enough started members`, ...) raise EtcdError."""
    end = time.time() + ADD_TIMEOUT
    while True:
        listed = _ctl_json(via, "member", "list").get("members") or []
        same = next((m for m in listed if peer_url in (m.get("peerURLs") or [])), None)
        if same is not None:
            return _initial_cluster(listed, int(same.get("ID", 0)), name)
        res = etcdctl(via, "member", "add", name, f"--peer-urls={peer_url}", "-w", "json")
        if res.returncode == 0:
            resp = json.loads(res.stdout)
            return _initial_cluster(resp.get("members") or [],
                                    int((resp.get("member") or {}).get("ID", 0)), name)
        err = (res.stderr or res.stdout).strip()
        if "unhealthy cluster" not in err or time.time() > end:
            raise EtcdError(f"etcdctl member add {name} --peer-urls={peer_url} via {via} "
                            f"failed: {err}")
        time.sleep(0.5)


def remove_member(via: str, name: str) -> bool:
    """`etcdctl member remove ID` of the member called NAME, through the member at VIA; False
    when there is none."""
    found = next((m for m in members(via) if m["name"] == name), None)
    if found is None:
        return False
    res = etcdctl(via, "member", "remove", found["id"])
    if res.returncode != 0:
        raise EtcdError(f"etcdctl member remove {found['id']} ({name}) via {via} failed: "
                        f"{(res.stderr or res.stdout).strip()}")
    return True


def health(address: str, timeout: float = 2) -> bool:
    """`etcdctl endpoint health` of the member at ADDRESS: it answers a linearizable read
    within TIMEOUT (so False also when the cluster has lost its quorum)."""
    return etcdctl(address, "endpoint", "health", timeout=timeout).returncode == 0


# ---- the member's processes ---------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError, ValueError):
        return False


def _is(pid: int, what: bytes) -> bool:
    """PID is alive and its command line has WHAT (guards against a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return what in fh.read() and _alive(pid)
    except OSError:
        return False


def running() -> dict | None:
    """The member this node runs ({name, address, data_dir, argv, pid, shim}), or None."""
    try:
        with open(RECORD) as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if _is(int(rec.get("pid", 0)), b"etcd"):
        return rec
    return None


def etcd_argv(name: str, address: str, initial_cluster: dict[str, str], state: str,
              data_dir: str) -> list[str]:
    """kubeadm's etcd command (phases/etcd/local.go getEtcdCommand) for the lab: the client
    URL on ADDRESS only (kubeadm adds https://127.0.0.1:2379), metrics on ADDRESS:2381
    (kubeadm: http://127.0.0.1:2381); 3.6-only flags (--feature-gates=InitialCorruptCheck,
    --watch-progress-notify-interval) left out, etcd 3.4 does not know them."""
    pki = PKI
    argv = [ETCD, f"--name={name}", f"--data-dir={data_dir}",
            f"--listen-client-urls={client_url(address)}",
            f"--advertise-client-urls={client_url(address)}",
            f"--listen-peer-urls={peer_url(address)}",
            f"--initial-advertise-peer-urls={peer_url(address)}",
            "--initial-cluster=" + ",".join(f"{n}={u}" for n, u in initial_cluster.items()),
            f"--cert-file={pki}/server.crt", f"--key-file={pki}/server.key",
            f"--trusted-ca-file={pki}/ca.crt", "--client-cert-auth=true",
            f"--peer-cert-file={pki}/peer.crt", f"--peer-key-file={pki}/peer.key",
            f"--peer-trusted-ca-file={pki}/ca.crt", "--peer-client-cert-auth=true",
            "--snapshot-count=10000", f"--listen-metrics-urls=http://{address}:{METRICS_PORT}"]
    if state == "existing":  # kubeadm sets it only for a joining member; "new" is the default
        argv.append("--initial-cluster-state=existing")
    return argv


def _spawn(rec: dict) -> None:
    """Start the shim (double fork, own session; its output and etcd's go to LOG) and wait
    until it has started etcd and written RECORD."""
    os.makedirs(RUN, exist_ok=True)
    with contextlib.suppress(OSError):
        os.unlink(RECORD)
    with open(f"{RUN}/spawn.json", "w") as fh:
        json.dump(rec, fh)
    pid = os.fork()
    if pid == 0:  # child: detach, then exec the shim in a grandchild
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            fd = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            nul = os.open("/dev/null", os.O_RDONLY)
            os.dup2(nul, 0)
            os.chdir("/")
            os.execve("/usr/bin/python3", ["/usr/bin/python3", "-S", os.path.abspath(__file__),
                                           "shim", f"{RUN}/spawn.json"],
                      {"PATH": PATH, "LANG": "C"})
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
    end = time.time() + 10
    while time.time() < end:
        if running():
            return
        if os.path.exists(RECORD):  # written, but etcd is gone already (a bad flag, a port)
            with contextlib.suppress(OSError, ValueError, KeyError), open(RECORD) as fh:
                if not _alive(int(json.load(fh)["pid"])):
                    break
        time.sleep(0.02)
    time.sleep(0.2)  # the shim's last line
    raise EtcdError(f"etcd: member {rec['name']} did not start; {LOG} ends:\n{_log_tail()}")


def _log_tail(lines: int = 15) -> str:
    try:
        with open(LOG, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(name: str, address: str, timeout: float) -> None:
    end = time.time() + timeout
    while True:
        if running() is None:
            raise EtcdError(f"etcd: member {name} at {address} exited; {LOG} ends:\n"
                            f"{_log_tail()}")
        if health(address, timeout=1):
            return
        if time.time() > end:
            raise EtcdError(f"etcd: member {name} at {address} is not healthy after "
                            f"{timeout:g} s (no quorum?); it keeps running. {LOG} ends:\n"
                            f"{_log_tail()}")
        time.sleep(TICK)


def start_member(name: str, address: str, initial_cluster: dict[str, str], state: str,
                 data_dir: str = DATA_DIR) -> None:
    """Start this node's etcd member NAME on ADDRESS (kubeadm's static pod command, see
    etcd_argv; STATE 'new' or 'existing') with ensure_certs' files, daemonised (log: LOG),
    and wait until it answers a health check (at most START_TIMEOUT; EtcdError if it exits or
    stays unhealthy, e.g. without quorum: it then keeps running, as a static pod would).
    Idempotent: the same member already running returns at once. With an existing DATA_DIR
    etcd ignores INITIAL_CLUSTER and STATE and restarts from its data (a rejoin)."""
    _check_address(address)
    if state not in ("new", "existing"):
        raise EtcdError(f"etcd: initial cluster state must be new or existing, not {state!r}")
    if name not in initial_cluster:
        raise EtcdError(f"etcd: the initial cluster {initial_cluster} lacks the member {name}")
    cur = running()
    if cur is not None:
        if (cur["name"], cur["address"], cur["data_dir"]) == (name, address, data_dir):
            return
        raise EtcdError(f"etcd: this node already runs member {cur['name']} at "
                        f"{cur['address']} ({cur['data_dir']}); stop_member it first")
    for f in ("ca.crt", "server.crt", "server.key", "peer.crt", "peer.key"):
        if not os.path.exists(f"{PKI}/{f}"):
            raise EtcdError(f"etcd: {PKI}/{f} is missing (ensure_certs first)")
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)  # etcd 3.4 wants its data dir 0700
    rec = {"name": name, "address": address, "data_dir": data_dir,
           "argv": etcd_argv(name, address, initial_cluster, state, data_dir)}
    _spawn(rec)
    os.makedirs(os.path.dirname(SAVED), exist_ok=True)
    with open(SAVED, "w") as fh:
        json.dump({k: rec[k] for k in ("name", "address", "data_dir")}, fh)
    _wait_ready(name, address, START_TIMEOUT)


def stop_member(name: str) -> None:
    """Stop this node's etcd member NAME (SIGTERM, SIGKILL after STOP_GRACE s); its data dir
    stays. Nothing to do when it does not run."""
    rec = running()
    if rec is None or rec["name"] != name:
        return
    pids = [int(rec["pid"]), int(rec.get("shim", 0))]
    shim = pids[1] if _is(pids[1], b"etcd.py") else 0
    with contextlib.suppress(OSError):
        os.kill(shim or pids[0], signal.SIGTERM)
    end = time.time() + STOP_GRACE + 5
    while time.time() < end and any(_alive(p) for p in pids if p):
        time.sleep(0.02)
    for p in pids:
        if p and _is(p, b"etcd"):
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.unlink(RECORD)


def wipe(data_dir: str = DATA_DIR) -> None:
    """Empty DATA_DIR (as kubeadm reset does) and forget the member the kubelet would
    restart. Refused while a member runs on it."""
    cur = running()
    if cur is not None and cur["data_dir"] == data_dir:
        raise EtcdError(f"etcd: member {cur['name']} still runs on {data_dir}; stop it first")
    if os.path.isdir(data_dir):
        for entry in os.listdir(data_dir):
            path = os.path.join(data_dir, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
    with contextlib.suppress(OSError):
        os.unlink(SAVED)


# ---- kubeadm's and the kubelet's hooks ----------------------------------------------------------

def on_init(name: str, address: str) -> None:
    """kubeadm init's local etcd: the certificates, then a one-member cluster (state new)."""
    ensure_certs(name, address)
    start_member(name, address, {name: peer_url(address)}, "new")


def on_reset(name: str, address: str) -> None:
    """kubeadm reset's end of the local member: stop it and empty /var/lib/etcd. (Removing it
    from a multi-member cluster first is remove_member through another member.)"""
    stop_member(name)
    wipe()


def on_boot(name: str, address: str, data_dir: str = DATA_DIR) -> bool:
    """The kubelet restarting the etcd static pod after a reboot (or a kubelet start): start
    the member again from its data dir, without waiting for quorum (the other members may
    still be down). True when it started one; False when it already runs or there is no
    member data (`DATA_DIR/member/wal`)."""
    if running() is not None or not os.path.isdir(os.path.join(data_dir, "member", "wal")):
        return False
    _check_address(address)
    rec = {"name": name, "address": address, "data_dir": data_dir,
           "argv": etcd_argv(name, address, {name: peer_url(address)}, "existing", data_dir)}
    _spawn(rec)
    return True


def boot() -> None:
    """`etcd.py boot` (the kubelet's start hook): on_boot of the member start_member last
    started here, while kubeadm's etcd manifest is in place."""
    try:
        with open(SAVED) as fh:
            saved = json.load(fh)
    except (OSError, ValueError):
        return
    if os.path.exists(MANIFEST):
        on_boot(saved["name"], saved["address"], saved.get("data_dir", DATA_DIR))


# ---- preflight ----------------------------------------------------------------------------------

def _proc_net_addr(hexaddr: str) -> str:
    """An address of /proc/net/tcp{,6} (32-bit words in host order) as text; an IPv4-mapped
    IPv6 address as its IPv4 form."""
    raw = bytes.fromhex(hexaddr)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def port_in_use(port: int, addresses: list[str]) -> bool:
    """Whether a LISTEN socket on PORT would clash with this node: bound to one of ADDRESSES
    (the node's own), to a wildcard (0.0.0.0, ::) or to 127.0.0.1/::1, where kubeadm's real
    manifests bind. Lab nodes share the host's network, so kubeadm's own check (listen on
    :PORT) would also see the members of other labs on their 127.0.B.N."""
    mine = {str(ipaddress.ip_address(a)) for a in addresses}
    mine |= {"0.0.0.0", "::", "127.0.0.1", "::1"}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4 or parts[3] != "0A":
                continue
            hexaddr, hexport = parts[1].rsplit(":", 1)
            if int(hexport, 16) == port and _proc_net_addr(hexaddr) in mine:
                return True
    return False


# ---- kubectl exec in the etcd pod ---------------------------------------------------------------

def _not_running() -> tuple[int, str, str]:
    return 1, "", 'error: unable to upgrade connection: container not found ("etcd")\n'


def image_has(exe: str) -> bool:
    """Whether the etcd image resolves EXE (a path, or a name looked up in its PATH)."""
    if "/" in exe:
        return exe in IMAGE
    return any(f"{d}/{exe}" in IMAGE for d in PATH.split(":"))


def exec_in_pod(node: str, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
    """kubectl exec in etcd-NODE (client side, any node): hand ARGV to NODE's member shim,
    which runs it in the etcd container's view of NODE; (rc, stdout, stderr) with kubectl's
    `command terminated with exit code N` line ending stderr for a non-zero status. No shim
    (the member does not run): kubectl's `container not found ("etcd")`. The caller checks
    first that argv[0] is in the image (image_has) and prints the runtime's refusal if not."""
    d = f"{EXEC}/{node}"
    if not os.path.exists(f"{d}/running"):
        return _not_running()
    rid = f"{int(time.time() * 1000)}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp = f"{d}/.{rid}.tmp"
    try:
        with open(tmp, "w") as fh:
            json.dump({"argv": [str(a) for a in argv], "timeout": timeout}, fh)
        os.chmod(tmp, 0o666)
        os.replace(tmp, f"{d}/{rid}.req.json")
    except OSError:
        return _not_running()
    claim_by = time.time() + CLAIM
    while os.path.exists(f"{d}/{rid}.req.json"):
        if time.time() > claim_by:
            try:
                os.unlink(f"{d}/{rid}.req.json")
            except OSError:
                break  # claimed just now
            return _not_running()
        time.sleep(0.01)
    end = time.time() + (timeout or 3600) + 10
    while time.time() < end:
        try:
            with open(f"{d}/{rid}.res.json") as fh:
                res = json.load(fh)
            break
        except (OSError, ValueError):
            time.sleep(0.01)
    else:
        return 1, "", "error: Timeout occurred\n"
    with contextlib.suppress(OSError):
        os.unlink(f"{d}/{rid}.res.json")
    rc, out, err = int(res.get("rc", 1)), res.get("stdout", ""), res.get("stderr", "")
    if rc:
        err += f"command terminated with exit code {rc}\n"
    return rc, out, err


# the container: a tmpfs root with the image's files, the pod's two hostPath volumes (kubeadm's
# etcd-certs and etcd-data), the node's hosts/resolv.conf (hostNetwork), /dev basics
CONTAINER = r"""set -e
R=/run/lab/etcd/ctr  # each exec mounts its own root there, in its own mount namespace
mount -t tmpfs -o mode=0755 tmpfs "$R"
mkdir -p "$R/usr/local/bin" "$R/bin" "$R/etc" "$R/tmp" "$R/dev" "$R/proc" "$R/lib64" \
  "$R/lib/x86_64-linux-gnu" "$R$LAB_PKI" "$R$LAB_DATA"
chmod 1777 "$R/tmp"
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  touch "$R$2"; mount --bind "$1" "$R$2"; shift 2
done
shift
mount --bind "$LAB_PKI" "$R$LAB_PKI"
mount --bind "$LAB_DATA" "$R$LAB_DATA"
mount -t proc proc "$R/proc" 2>/dev/null || true
cd "$R"
exec env -i PATH="$LAB_PATH" HOSTNAME="$LAB_HOST" HOME=/root chroot "$R" "$@"
"""


def _container_binds() -> list[str]:
    """(node file, container path) pairs, flattened: the image's binaries, their libraries
    (Debian's dynamic builds), the node's hosts and resolv.conf, /dev/null and friends."""
    pairs = [(src, dst) for dst, src in IMAGE.items()]
    libs: set[str] = set()
    for src in IMAGE.values():
        out = subprocess.run(["ldd", src], capture_output=True, text=True).stdout
        for line in out.splitlines():
            path = line.split("=>")[-1].split("(")[0].strip()
            if path.startswith("/"):
                libs.add(path)
    pairs += [(lib, lib) for lib in sorted(libs)]
    pairs += [(f, f) for f in ("/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf")
              if os.path.exists(f)]
    pairs += [(f"/dev/{d}", f"/dev/{d}") for d in ("null", "zero", "random", "urandom")]
    return [x for pair in pairs for x in pair]


class Shim:
    """The member's shim: etcd as its child, exec requests served, SIGTERM stops etcd."""

    def __init__(self, rec: dict) -> None:
        self.rec = rec
        self.quit = threading.Event()
        self.dir = f"{EXEC}/{rec['name']}"
        self.binds: list[str] | None = None

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.quit.set())
        env = {"PATH": PATH, "LANG": "C", "HOME": "/root"}  # no ETCD_*: flags only
        proc = subprocess.Popen(self.rec["argv"], stdin=subprocess.DEVNULL, env=env, cwd="/")
        end = time.time() + 5  # published once it is etcd (the exec done) or gone
        while proc.poll() is None and time.time() < end:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{proc.pid}/exe") == ETCD:
                    break
            time.sleep(0.005)
        rec = {**self.rec, "pid": proc.pid, "shim": os.getpid(), "started": time.time()}
        tmp = f"{RECORD}.{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(rec, fh)
        os.replace(tmp, RECORD)
        print(f"lab etcd shim {os.getpid()}: started etcd {proc.pid}: {' '.join(rec['argv'])}",
              flush=True)
        try:
            os.makedirs(self.dir, exist_ok=True)
            for d in (EXEC, self.dir):
                with contextlib.suppress(OSError):
                    os.chmod(d, 0o777)
            os.makedirs(f"{RUN}/ctr", exist_ok=True)
            with open(f"{self.dir}/running", "w") as fh:
                fh.write(f"{rec['address']}\n")
        except OSError as exc:  # no cluster dir: no exec, etcd runs all the same
            print(f"lab etcd shim: exec relay off: {exc}", flush=True)
        while not self.quit.is_set() and proc.poll() is None:
            self.serve()
            self.quit.wait(TICK)
        with contextlib.suppress(OSError):
            os.unlink(f"{self.dir}/running")
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        print(f"lab etcd shim {os.getpid()}: etcd {proc.pid} exited {proc.returncode}",
              flush=True)

    def serve(self) -> None:
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for n in names:
            if not n.endswith(".req.json"):
                continue
            rid = n[:-len(".req.json")]
            claimed = f"{self.dir}/{rid}.run"
            try:
                os.rename(f"{self.dir}/{n}", claimed)
            except OSError:
                continue
            threading.Thread(target=self.exec, args=(rid, claimed), daemon=True).start()

    def exec(self, rid: str, claimed: str) -> None:
        try:
            with open(claimed) as fh:
                req = json.load(fh)
            if self.binds is None:
                self.binds = _container_binds()
            env = {"PATH": PATH, "LANG": "C", "LAB_PATH": PATH, "LAB_PKI": PKI,
                   "LAB_DATA": self.rec["data_dir"], "LAB_HOST": os.uname().nodename}
            argv = ["unshare", "--mount", "--propagation", "private", "--fork", "/bin/sh",
                    "-c", CONTAINER, "ctr", *self.binds, "--", *req["argv"]]
            try:
                res = subprocess.run(argv, capture_output=True, text=True, env=env,
                                     timeout=float(req.get("timeout") or 3600))
                out = {"rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr}
            except subprocess.TimeoutExpired as exc:
                out = {"rc": 137, "stdout": exc.stdout or "", "stderr": exc.stderr or ""}
        except Exception as exc:  # the caller must get an answer
            out = {"rc": 1, "stdout": "", "stderr": f"lab etcd shim: {exc!r}\n"}
        tmp = f"{self.dir}/.{rid}.res.tmp"
        with open(tmp, "w") as fh:
            json.dump(out, fh)
        os.chmod(tmp, 0o666)
        os.replace(tmp, f"{self.dir}/{rid}.res.json")
        with contextlib.suppress(OSError):
            os.unlink(claimed)


def main() -> None:
    args = sys.argv[1:]
    verb = args[0] if args else ""
    if verb == "shim" and len(args) == 2:
        with open(args[1]) as fh:
            Shim(json.load(fh)).run()
    elif verb == "boot":
        boot()
    elif verb == "call" and len(args) >= 2 and not args[1].startswith("_") \
            and args[1] in PUBLIC:
        try:
            got = PUBLIC[args[1]](*[json.loads(a) for a in args[2:]])
        except EtcdError as exc:
            print(str(exc), file=sys.stderr)
            sys.exit(1)
        print(json.dumps(got))
    else:
        print("usage: etcd.py boot | call FUNC [JSON-ARG]... | shim SPEC", file=sys.stderr)
        sys.exit(2)


PUBLIC = {f.__name__: f for f in (start_member, ensure_certs, add_member, remove_member, members,
                                  health, stop_member, wipe, on_init, on_reset, on_boot,
                                  port_in_use, running)}

if __name__ == "__main__":
    main()
