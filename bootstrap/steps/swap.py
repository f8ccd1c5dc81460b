"""swap: off now (swapoff -a) and after a reboot: swap lines in /etc/fstab commented out, and
where zram-generator would make swap on zram at boot, an /etc/systemd/zram-generator.conf
without devices (the first config file found wins: systemd/zram-generator's README)."""

from __future__ import annotations

from .. import facts as F
from ..plan import Plan
from . import Step, Target

PATH = "/etc/fstab"
ZRAM_CONF = "/etc/systemd/zram-generator.conf"
ZRAM_DEFAULTS = "/usr/lib/systemd/zram-generator.conf"  # zram-generator-defaults
NO_ZRAM = ("# Managed by k8s-bootstrap: no zram devices, so no swap on zram at boot (the kubelet\n"
           "# needs swap off). This file overrides " + ZRAM_DEFAULTS + ".\n")


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
    return [F.swaps(), F.file(PATH), F.file(ZRAM_CONF), F.file(ZRAM_DEFAULTS)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    if facts["swaps"]:
        p.run("swapoff -a", f"swap is on: {', '.join(facts['swaps'])}")
    fstab = facts[f"file:{PATH}"]
    if fstab is not None:
        p.write(PATH, desired(fstab.content), fstab, mode=fstab.mode)
    zram = facts[f"file:{ZRAM_CONF}"]
    on_zram = any(dev.startswith("/dev/zram") for dev in facts["swaps"])
    if on_zram or facts[f"file:{ZRAM_DEFAULTS}"] is not None or (zram and "[" in zram.content):
        p.write(ZRAM_CONF, NO_ZRAM, zram)
    return p


STEP = Step("swap", __doc__, facts, plan)
