"""Stacked etcd as reset and verify see it: members and their health, read with the etcdctl of a
running etcd static pod (``kubectl exec``; the host needs no etcdctl of the right version), and
whether removing members keeps a quorum (pure).

etcd keeps working while a majority of its members is healthy (etcd FAQ "What is failure
tolerance?"). Members are removed one at a time; before each removal the healthy members must be
a majority of the members (the removal is itself a write), and after it a majority of those left.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from ..models import Inventory, Node
from .common import KUBECTL

PKI = "/etc/kubernetes/pki/etcd"
CLIENT_PORT = 2379


@dataclass(frozen=True)
class Member:
    """One etcd member as ``etcdctl member list -w json`` shows it (its ID in hex, as
    ``member remove`` takes it)."""

    id: str
    name: str
    client_urls: tuple[str, ...]
    peer_urls: tuple[str, ...]


def client_url(node: Node) -> str:
    return f"https://{node.internal_address}:{CLIENT_PORT}"


def etcdctl(via: Node, args: str) -> str:
    """etcdctl in ``via``'s etcd static pod, against that member, with the server certificate
    kubeadm gives it (the pod mounts /etc/kubernetes/pki/etcd)."""
    return (f"{KUBECTL} -n kube-system exec etcd-{shlex.quote(via.name)} -- etcdctl "
            f"--endpoints={client_url(via)} --cacert={PKI}/ca.crt --cert={PKI}/server.crt "
            f"--key={PKI}/server.key {args}")


def members_command(via: Node) -> str:
    return etcdctl(via, "member list -w json")


def health_command(via: Node, members: list[Member]) -> str:
    """Every member's health, each asked directly (one unhealthy member does not hide the
    others)."""
    urls = ",".join(u for m in members for u in m.client_urls[:1])
    return etcdctl(via, f"endpoint health --endpoints={urls} -w json")


REMOVE_RETRY = 30
"""Seconds to retry ``member remove`` while etcd answers ``unhealthy cluster``: its strict
reconfiguration check refuses membership changes for a few seconds after a member (re)joined."""


def remove_command(via: Node, member: Member) -> str:
    """``member remove``, retried every 2 s for REMOVE_RETRY seconds while etcd says it is
    unhealthy for a reconfiguration (kubeadm's own client retries the same way)."""
    once = etcdctl(via, f"member remove {member.id}")
    return (f"i=0; while :; do out=$({once} 2>&1); rc=$?; [ $rc = 0 ] && break; "
            f"case $out in *'unhealthy cluster'*) ;; *) break;; esac; i=$((i+2)); "
            f"[ $i -ge {REMOVE_RETRY} ] && break; sleep 2; done; printf '%s\\n' \"$out\"; "
            "exit $rc")


def parse_members(out: str) -> list[Member]:
    """``member list -w json``: IDs are decimal in JSON; etcdctl takes them in hex. A member
    added but never started has no name yet."""
    data = json.loads(_json_part(out))
    return [Member(format(int(m["ID"]), "x"), m.get("name", ""),
                   tuple(m.get("clientURLs") or ()), tuple(m.get("peerURLs") or ()))
            for m in data.get("members", [])]


def parse_health(out: str) -> dict[str, bool]:
    """``endpoint health -w json``: client URL -> healthy. etcdctl exits 1 when one is not,
    and still prints the list."""
    part = _json_part(out)
    try:
        data = json.loads(part)
    except ValueError:
        return {}
    return {e["endpoint"]: bool(e.get("health")) for e in data if "endpoint" in e}


def _json_part(out: str) -> str:
    """The JSON in etcdctl's output: the lines from the first that opens an object or list
    (kubectl and etcdctl may print a warning line first)."""
    lines = out.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith(("{", "["))), 0)
    return "\n".join(lines[start:])


def member_of(node: Node, members: list[Member]) -> Member | None:
    """``node``'s member: by name (kubeadm names it after the node), else by its peer URL."""
    peer = f"https://{node.internal_address}:2380"
    return next((m for m in members if m.name == node.name), None) or next(
        (m for m in members if peer in m.peer_urls), None)


def healthy_names(members: list[Member], health: dict[str, bool]) -> set[str]:
    return {m.id for m in members if any(health.get(u) for u in m.client_urls)}


def removal_problem(members: list[Member], healthy: set[str], removing: list[Member]) -> str:
    """Why removing ``removing`` (in order, one at a time) would lose the quorum; "" when it
    would not. ``healthy``: the IDs of the healthy members."""
    left = list(members)
    for member in removing:
        if member not in left:
            continue
        ok = [m for m in left if m.id in healthy]
        need = len(left) // 2 + 1
        if len(ok) < need:
            return (f"etcd has no quorum now: {len(ok)} of {len(left)} members are healthy and "
                    f"it needs {need} to remove one; bring the members back, or restore from a "
                    "backup")
        left.remove(member)
        ok = [m for m in left if m.id in healthy]
        need = len(left) // 2 + 1
        if len(ok) < need:
            names = ", ".join(sorted(m.name or m.id for m in left if m.id not in healthy))
            return (f"removing {member.name or member.id} leaves {len(ok)} healthy of "
                    f"{len(left)} members, and etcd needs {need} (unhealthy: {names})")
    return ""


def survivor(inv: Inventory, leaving: list[Node]) -> Node | None:
    """The control plane through which the others are removed: the first that stays."""
    return next((n for n in inv.control_plane if n not in leaving), None)
