"""ipvs: ipset and ipvsadm installed; IPVS modules loaded now and at boot (proxy_mode ipvs)."""

from __future__ import annotations

import re

from .. import facts as F
from ..plan import Plan
from ..templates import render
from . import Step, Target

SCRIPT = "/etc/sysconfig/modules/ipvs.modules"
CONF = "/etc/modules-load.d/ipvs.conf"
PACKAGES = ("ipset", "ipvsadm")


def modules(kernel: str | None) -> list[str]:
    """The IPVS modules; conntrack is nf_conntrack_ipv4 before kernel 4.19, nf_conntrack after."""
    m = re.match(r"(\d+)\.(\d+)", kernel or "")
    old = m is None or (int(m.group(1)), int(m.group(2))) < (4, 19)
    return [
        "ip_vs",
        "ip_vs_rr",
        "ip_vs_wrr",
        "ip_vs_sh",
        "nf_conntrack_ipv4" if old else "nf_conntrack",
    ]


def files(kernel: str | None) -> dict[str, tuple[str, int]]:
    mods = modules(kernel)
    return {
        SCRIPT: (render("etc/sysconfig/modules/ipvs.modules.j2", modules=mods), 0o755),
        CONF: (render("etc/modules-load.d/ipvs.conf.j2", modules=mods), 0o644),
    }


def facts(t: Target) -> list[F.Fact]:
    return [F.rpms(PACKAGES), F.modules(), F.kernel(), F.file(SCRIPT), F.file(CONF)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    missing = [pkg for pkg in PACKAGES if pkg not in facts["rpms:" + ",".join(PACKAGES)]]
    if missing:
        p.install(missing, "not installed")
    for path, (content, mode) in files(facts["kernel"]).items():
        p.write(path, content, facts[f"file:{path}"], mode=mode)
    for module in modules(facts["kernel"]):
        if module not in facts["modules"]:
            p.run(f"modprobe -- {module}", "not loaded")
    return p


def skip(t: Target) -> str | None:
    return None if t.inv.cluster.proxy_mode == "ipvs" else "cluster.proxy_mode is iptables"


STEP = Step("ipvs", __doc__, facts, plan, skip)
