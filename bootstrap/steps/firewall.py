"""firewall: firewalld (and iptables.service) off as the seed does, or kept with the ports open."""

from __future__ import annotations

from .. import facts as F
from ..plan import Plan
from . import Step, Target

UNITS = ("firewalld.service", "iptables.service")
MASTER_PORTS = (
    "6443/tcp",
    "2379-2380/tcp",
    "10250/tcp",
    "10251/tcp",
    "10252/tcp",
    "10257/tcp",
    "10259/tcp",
    "8472/udp",
)
WORKER_PORTS = ("10250/tcp", "30000-32767/tcp", "8472/udp")


def ports(t: Target) -> tuple[str, ...]:
    """kubeadm's control-plane or node ports, and flannel's VXLAN port."""
    return MASTER_PORTS if t.node.is_control_plane else WORKER_PORTS


def facts(t: Target) -> list[F.Fact]:
    found = [F.unit(u) for u in UNITS]
    if t.inv.node_prep.firewall == "keep":
        found += [
            F.command("firewall:permanent", "firewall-cmd --permanent --list-ports"),
            F.command("firewall:runtime", "firewall-cmd --list-ports"),
        ]
    return found


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    if t.inv.node_prep.firewall == "disable":
        for name in UNITS:
            unit = facts[f"unit:{name}"]
            if unit["exists"] and (unit["enabled"] or unit["active"]):
                p.run(f"systemctl disable --now {name}", f"{name} is enabled or running")
        return p
    firewalld = facts["unit:firewalld.service"]
    permanent = set((facts["firewall:permanent"] or "").split())
    runtime = set((facts["firewall:runtime"] or "").split())
    if not firewalld["exists"]:
        p.error = "node_prep.firewall is keep but firewalld is not installed"
        return p
    if not firewalld["enabled"] or not firewalld["active"]:
        p.run("systemctl enable --now firewalld.service", "firewall: keep needs firewalld running")
    for port in ports(t):
        if port not in permanent:
            p.run(f"firewall-cmd --permanent --add-port={port}", "open it after a reboot too")
        if firewalld["active"] and port not in runtime:
            p.run(f"firewall-cmd --add-port={port}", "open it now")
    return p


STEP = Step("firewall", __doc__, facts, plan)
