"""selinux: permissive now (setenforce 0), ``node_prep.selinux`` in /etc/selinux/config (on EL9,
where the config cannot disable SELinux, permissive)."""

from __future__ import annotations

import re

from .. import facts as F
from .. import platforms
from ..plan import Plan
from . import Step, Target

PATH = "/etc/selinux/config"


def desired(current: str, mode: str) -> str:
    line = f"SELINUX={mode}"
    if re.search(r"(?m)^SELINUX=.*$", current):
        return re.sub(r"(?m)^SELINUX=.*$", line, current)
    return current + ("" if current.endswith("\n") or not current else "\n") + line + "\n"


def facts(t: Target) -> list[F.Fact]:
    return [platforms.os_release(), F.selinux(), F.file(PATH)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    mode = t.inv.node_prep.selinux
    now = facts["selinux"]
    downgraded = mode == "disabled" and not platforms.of(facts).release.selinux_disabled_by_config
    if downgraded:
        mode = "permissive"
    config = facts[f"file:{PATH}"]
    if now == "Enforcing":
        p.run("setenforce 0", "SELinux is enforcing")
    if config is not None and p.write(PATH, desired(config.content, mode), config,
                                      mode=config.mode) and downgraded:
        p.notes.append("SELINUX=permissive, not disabled: on EL9 the config can no longer "
                       "disable SELinux (that needs the selinux=0 kernel argument); kubeadm "
                       "accepts permissive")
    if mode == "disabled" and now not in (None, "Disabled"):
        p.notes.append("SELinux is permissive now; disabled takes effect at the next reboot")
    return p


STEP = Step("selinux", __doc__, facts, plan)
