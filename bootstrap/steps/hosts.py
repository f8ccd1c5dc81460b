"""hosts: a marked block in /etc/hosts maps every node's name to its internal address, and with
``cluster.load_balancer: local`` the API endpoint's name to where this node reaches an API
server (bootstrap/api_endpoint.py)."""

from __future__ import annotations

from .. import api_endpoint as A
from .. import facts as F
from ..plan import Plan, managed_block
from ..templating import render
from . import Step, Target

PATH = "/etc/hosts"
MARKER = "k8s-bootstrap managed block"
SERVING = "apiserver-manifest"


def desired(t: Target, current: str, serving: bool = False) -> str:
    line = A.hosts_line(t.inv, t.node, serving)
    return managed_block(current, render("etc/hosts.j2", inventory=t.inv, endpoint=line), MARKER)


def facts(t: Target) -> list[F.Fact]:
    out = [F.file(PATH)]
    if t.node.is_control_plane and A.hosts_line(t.inv, t.node, False):
        out.append(F.command(SERVING, f"test -e {A.APISERVER_MANIFEST} && echo yes"))
    return out


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    before = facts[f"file:{PATH}"]
    serving = (facts.get(SERVING) or "").strip() == "yes"
    p.write(
        PATH,
        desired(t, before.content if before else "", serving),
        before,
        mode=before.mode if before else 0o644,
    )
    return p


STEP = Step("hosts", __doc__, facts, plan)
