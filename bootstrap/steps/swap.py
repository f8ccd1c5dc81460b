"""swap: off now (swapoff -a) and after a reboot (swap lines in /etc/fstab commented out)."""

from __future__ import annotations

from .. import facts as F
from ..plan import Plan
from . import Step, Target

PATH = "/etc/fstab"


def desired(fstab: str) -> str:
    """fstab with every active swap entry commented out; other lines untouched."""
    out = []
    for line in fstab.splitlines(keepends=True):
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith("#") and fields[2] == "swap":
            line = "#" + line
        out.append(line)
    return "".join(out)


def facts(t: Target) -> list[F.Fact]:
    return [F.swaps(), F.file(PATH)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    if facts["swaps"]:
        p.run("swapoff -a", f"swap is on: {', '.join(facts['swaps'])}")
    fstab = facts[f"file:{PATH}"]
    if fstab is not None:
        p.write(PATH, desired(fstab.content), fstab, mode=fstab.mode)
    return p


STEP = Step("swap", __doc__, facts, plan)
