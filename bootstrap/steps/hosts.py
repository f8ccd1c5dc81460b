"""hosts: a marked block in /etc/hosts maps every node's name to its internal address."""

from __future__ import annotations

from .. import facts as F
from ..plan import Plan, managed_block
from ..templating import render
from . import Step, Target

PATH = "/etc/hosts"
MARKER = "k8s-bootstrap managed block"


def desired(t: Target, current: str) -> str:
    return managed_block(current, render("etc/hosts.j2", inventory=t.inv), MARKER)


def facts(t: Target) -> list[F.Fact]:
    return [F.file(PATH)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    before = facts[f"file:{PATH}"]
    p.write(
        PATH,
        desired(t, before.content if before else ""),
        before,
        mode=before.mode if before else 0o644,
    )
    return p


STEP = Step("hosts", __doc__, facts, plan)
