"""time: chrony installed, ``node_prep.ntp_servers`` configured when given, chronyd running."""

from __future__ import annotations

from .. import facts as F
from ..plan import Plan
from ..templating import render
from . import Step, Target

CONF = "/etc/chrony.conf"
UNIT = "chronyd.service"


def facts(t: Target) -> list[F.Fact]:
    return [F.rpms(["chrony"]), F.unit(UNIT), F.file(CONF)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    if "chrony" not in facts["rpms:chrony"]:
        p.install(["chrony"], "chrony is not installed")
    changed = False
    if t.inv.node_prep.ntp_servers:
        conf = render("etc/chrony.conf.j2", servers=t.inv.node_prep.ntp_servers)
        changed = p.write(CONF, conf, facts[f"file:{CONF}"])
    p.service(UNIT, facts[f"unit:{UNIT}"], "chronyd", "chrony.conf changed" if changed else "")
    return p


STEP = Step("time", __doc__, facts, plan)
