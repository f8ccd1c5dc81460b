"""hostname: the node's hostname is its inventory name, now and after a reboot."""

from __future__ import annotations

import shlex

from .. import facts as F
from ..plan import Plan
from . import Step, Target


def facts(t: Target) -> list[F.Fact]:
    return [F.hostname(), F.file("/etc/hostname")]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    current = facts["hostname"]
    saved = facts["file:/etc/hostname"]
    if current != t.node.name or saved is None or saved.content.strip() != t.node.name:
        p.run(f"hostnamectl set-hostname {shlex.quote(t.node.name)}", f"hostname is {current!r}")
    return p


STEP = Step("hostname", __doc__, facts, plan)
