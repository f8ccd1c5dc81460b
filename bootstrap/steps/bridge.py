"""bridge-netfilter: br_netfilter and overlay loaded now and at boot; bridge sysctls set to 1."""

from __future__ import annotations

from .. import facts as F
from ..plan import Plan
from ..templating import render
from . import Step, Target

MODULES_CONF = "/etc/modules-load.d/k8s.conf"
SYSCTL_CONF = "/etc/sysctl.d/k8s.conf"
MODULES = ("br_netfilter", "overlay")
SYSCTLS = (
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.ip_forward",
)


def facts(t: Target) -> list[F.Fact]:
    return [F.modules(), F.file(MODULES_CONF), F.file(SYSCTL_CONF), *(F.sysctl(k) for k in SYSCTLS)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    p.write(MODULES_CONF, render("etc/modules-load.d/k8s.conf.j2"), facts[f"file:{MODULES_CONF}"])
    changed = p.write(SYSCTL_CONF, render("etc/sysctl.d/k8s.conf.j2"), facts[f"file:{SYSCTL_CONF}"])
    for module in MODULES:
        if module not in facts["modules"]:
            p.run(f"modprobe {module}", f"{module} is not loaded")
    wrong = [k for k in SYSCTLS if facts[f"sysctl:{k}"] != "1"]
    if changed or wrong:
        p.run("sysctl --system", f"not 1: {', '.join(wrong)}" if wrong else "k8s.conf changed")
    return p


STEP = Step("bridge-netfilter", __doc__, facts, plan)
