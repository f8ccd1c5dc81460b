"""selinux: permissive now (setenforce 0), ``node_prep.selinux`` in /etc/selinux/config."""

from __future__ import annotations

import re

from .. import facts as F
from ..plan import Plan
from . import Step, Target

PATH = "/etc/selinux/config"


def desired(current: str, mode: str) -> str:
    line = f"SELINUX={mode}"
    if re.search(r"(?m)^SELINUX=.*$", current):
        return re.sub(r"(?m)^SELINUX=.*$", line, current)
    return current + ("" if current.endswith("\n") or not current else "\n") + line + "\n"


def facts(t: Target) -> list[F.Fact]:
    return [F.selinux(), F.file(PATH)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    mode = t.inv.node_prep.selinux
    now = facts["selinux"]
    config = facts[f"file:{PATH}"]
    if now == "Enforcing":
        p.run("setenforce 0", "SELinux is enforcing")
    if config is not None:
        p.write(PATH, desired(config.content, mode), config, mode=config.mode)
    if mode == "disabled" and now not in (None, "Disabled"):
        p.notes.append("SELinux is permissive now; disabled takes effect at the next reboot")
    return p


STEP = Step("selinux", __doc__, facts, plan)
