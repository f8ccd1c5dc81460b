"""Who holds a virtual IP of the lab now (lab/k8s/STATE.md "Virtual IPs"), computed at query
time on any node from the records the nodes publish in /var/lib/lab-cluster/vip/:

- kube-vip (`<node>.kubevip.json`, k8s/kubevip.py): a node is a candidate for its configured
  address while its container runs with a valid config, its kubeconfig's identity may get,
  create and update the Lease `<cp_namespace>/<vip_leasename>` (coordination.k8s.io, the lab's
  RBAC: k8s/rbac.py) and its OWN API server answers (apiserver.up: kube-vip talks to
  `kubernetes:<port>`, hostAliases 127.0.0.1 on the host network). The Lease is sticky: its
  holder keeps it while it stays a candidate, else the first candidate by name takes it (the
  lease duration is not waited for). Kept in state.json `leases` {"NS/NAME": {"holder",
  "address", "acquired"}} under the state lock. A refused candidate logs client-go's
  "Error retrieving lease lock" line (the API's forbidden text) to its container log, at most
  once per retry period.
- keepalived (`<node>.keepalived.json`, written by the keepalived stand-in): per router id,
  among records whose heartbeat is fresher than 3*advert_int + 1 s and whose instance is not in
  fault, the highest effective priority holds the instance's addresses; a tie goes to the higher
  node address (VRRP compares primary IPs).
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import json
import os
import time

from k8s import apiserver, kubevip, state

DIR = kubevip.DIR
HAPROXY_DIR = f"{state.ROOT}/haproxy"  # the haproxy payload's published snapshots
LEASE_VERBS = ("get", "create", "update")  # client-go's LeaseLock: Get, Create, Update


def _identity(data: dict, user: dict) -> tuple[str, list[str]] | None:
    """The API server's view of a published kubeconfig user; None: Unauthorized/none."""
    from k8s import rbac

    conf = {"users": [{"name": "u", "user": user}], "contexts": [], "clusters": []}
    if not user:
        return None
    if state._HELD[0]:  # inside update(): rbac.identity's cache write would self-deadlock
        cert = user.get("client-certificate-data")
        if not cert:
            return None
        import base64
        import hashlib

        pem = base64.b64decode(cert).decode(errors="replace")
        known = (data.get("certs") or {}).get(hashlib.sha256(pem.encode()).hexdigest())
        if known is None:
            known = rbac.inspect(pem, data.get("ca_cert", ""))
        if not known.get("signed") or (known.get("not_after") or 0) < time.time():
            return None
        return known["cn"], [*known.get("orgs", []), "system:authenticated"]
    try:
        return rbac.identity(conf, "/", data)
    except rbac.Unauthorized:
        return None


def lease_denied(data: dict, rec: dict) -> str | None:
    """The API's forbidden text for this kube-vip's first lease request RBAC refuses."""
    from k8s import rbac

    cfg = rec.get("config") or {}
    who = _identity(data, rec.get("user") or {})
    if who is None:
        return "Unauthorized"
    user, groups = who
    for verb in LEASE_VERBS:
        ok, reason = rbac.allowed(data, user, groups, verb, "coordination.k8s.io", "leases",
                                  cfg.get("namespace", ""), cfg.get("lease", ""))
        if not ok:
            return rbac.forbidden(user, verb, "coordination.k8s.io", "leases",
                                  cfg.get("namespace", ""), cfg.get("lease", ""), reason)
    return None


def _serves(data: dict, node: str, port: int) -> bool:
    """NODE's own API server answers on PORT (kube-vip's `kubernetes:<port>`)."""
    rec = apiserver.records(data).get(node)
    return bool(rec) and int(rec.get("port") or 6443) == port and apiserver.up(data, node)


def _log_refusal(node: str, rec: dict, text: str) -> None:
    cfg = rec.get("config") or {}
    path = kubevip.log_path(node)
    with contextlib.suppress(OSError):  # client-go retries every retry period
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            last = fh.read().decode(errors="replace").rstrip("\n").rsplit("\n", 1)[-1]
        if "Error retrieving lease lock" in last and \
                time.time() - os.path.getmtime(path) < float(cfg.get("retry_period") or 1):
            return
    kubevip.append_log(node, [kubevip.klog(
        "E", "leaderelection.go:452", "Error retrieving lease lock", err=text,
        lock=f"{cfg.get('namespace')}/{cfg.get('lease')}")])


def kubevip_holders(data: dict) -> dict[str, tuple[str, int, str]]:
    """{address: (node, prefix, interface)} of the kube-vip leases held now."""
    recs = {n: r for n, r in kubevip.records().items() if r.get("running") and r.get("config")}
    if not recs or not data.get("cluster_id"):
        return {}
    by_lease: dict[str, list[str]] = {}
    for node in sorted(recs):
        cfg = recs[node]["config"]
        by_lease.setdefault(f"{cfg['namespace']}/{cfg['lease']}", []).append(node)
    out: dict[str, tuple[str, int, str]] = {}
    changes: dict[str, dict | None] = {}
    leases = data.get("leases") or {}
    for key, nodes in sorted(by_lease.items()):
        cands = []
        for node in nodes:
            rec = recs[node]
            if not _serves(data, node, int(rec["config"]["port"])):
                continue  # its client reaches nothing: no lease request at all
            denied = lease_denied(data, rec)
            if denied:
                _log_refusal(node, rec, denied)
                continue
            cands.append(node)
        current = (leases.get(key) or {}).get("holder")
        holder = current if current in cands else (cands[0] if cands else None)
        if holder != current:
            changes[key] = None if holder is None else {
                "holder": holder, "address": recs[holder]["config"]["address"],
                "acquired": time.time()}
            if holder:
                kubevip.append_log(holder, [kubevip.klog(
                    "I", "leaderelection.go:271", "Successfully acquired lease", lock=key),
                    kubevip.slog("INFO", "Start ARP/NDP advertisement")])
        if holder:
            cfg = recs[holder]["config"]
            out[cfg["address"]] = (holder, int(cfg["prefix"]), cfg["interface"])
    if changes and not state._HELD[0]:
        with state.update() as cur:
            if cur.get("cluster_id") == data.get("cluster_id"):
                held = cur.setdefault("leases", {})
                for key, val in changes.items():
                    if val is None:
                        held.pop(key, None)
                    else:
                        held[key] = val
    return out


def keepalived_records() -> dict[str, dict]:
    out = {}
    for path in glob.glob(f"{DIR}/*.keepalived.json"):
        with contextlib.suppress(OSError, ValueError):
            with open(path) as fh:
                rec = json.load(fh)
            if isinstance(rec, dict):
                out[rec.get("node") or os.path.basename(path).split(".keepalived")[0]] = rec
    return out


def _ip_key(address: str) -> int:
    try:
        return int(ipaddress.ip_address(address))
    except ValueError:
        return 0


def keepalived_holders(now: float | None = None) -> dict[str, tuple[str, int, str]]:
    """{address: (node, prefix, interface)} of the VRRP masters now."""
    now = time.time() if now is None else now
    best: dict[int, tuple[tuple[int, int], str, dict]] = {}
    for node, rec in keepalived_records().items():
        for inst in rec.get("instances") or []:
            advert = float(inst.get("advert_int") or 1.0)
            if now - float(rec.get("heartbeat") or 0) > 3 * advert + 1 or inst.get("fault"):
                continue
            rank = (int(inst.get("priority") or 0), _ip_key(rec.get("address", "")))
            rid = int(inst.get("router_id") or 0)
            if rid not in best or rank > best[rid][0]:
                best[rid] = (rank, node, inst)
    out: dict[str, tuple[str, int, str]] = {}
    for _, node, inst in best.values():
        for cidr in inst.get("addresses") or []:
            addr, _, prefix = str(cidr).partition("/")
            out[addr] = (node, int(prefix or 32), inst.get("interface") or "eth0")
    return out


def holders(data: dict | None = None) -> dict[str, tuple[str, int, str]]:
    """Every held virtual address: {address: (node, prefix, interface)}."""
    if not os.path.isdir(DIR):
        return {}
    data = state.load() if data is None else data
    out = keepalived_holders()
    out.update(kubevip_holders(data))
    return out


def holder(address: str, data: dict | None = None) -> str | None:
    """The node holding ADDRESS as a virtual IP now, None when nobody does."""
    return (holders(data).get(address) or (None,))[0]


def held_by(node: str, data: dict | None = None) -> list[tuple[str, int, str]]:
    """[(address, prefix, interface)] NODE holds now."""
    return sorted((a, p, i) for a, (n, p, i) in holders(data).items() if n == node)


def known_vips() -> set[str]:
    """Every address some kube-vip or keepalived record is configured for (held or not)."""
    out = set()
    for rec in kubevip.records().values():
        if (rec.get("config") or {}).get("address"):
            out.add(rec["config"]["address"])
    for rec in keepalived_records().values():
        for inst in rec.get("instances") or []:
            out.update(str(c).partition("/")[0] for c in inst.get("addresses") or [])
    return out


def node_addresses(data: dict) -> dict[str, str]:
    """{node name: address} from the cluster state and the published records."""
    out = {n: i.get("address", "") for n, i in (data.get("nodes") or {}).items()}
    for rec in [*kubevip.records().values(), *keepalived_records().values()]:
        if rec.get("node") and rec.get("address"):
            out.setdefault(rec["node"], rec["address"])
    return {n: a for n, a in out.items() if a}


def mac_of(data: dict, node: str) -> str:
    """NODE's eth0 MAC as published (kubelet facts, kube-vip record); '' when unknown."""
    mac = state.node_facts(node).get("mac") or kubevip.load_record(node).get("mac") or ""
    return str(mac)


def haproxy_of(node: str) -> dict | None:
    """NODE's running haproxy's loaded config as it published it, None while it does not run."""
    try:
        with open(f"{HAPROXY_DIR}/{node}.json") as fh:
            snap = json.load(fh)
    except (OSError, ValueError):
        return None
    return snap if isinstance(snap, dict) else None
