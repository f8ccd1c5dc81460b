"""ipvs: ipset and ipvsadm installed; IPVS modules loaded now and at boot (proxy_mode ipvs)."""

from __future__ import annotations

from .. import facts as F
from .. import platforms
from ..plan import Plan
from ..templating import render
from . import Step, Target

SCRIPT = "/etc/sysconfig/modules/ipvs.modules"
CONF = "/etc/modules-load.d/ipvs.conf"
PACKAGES = ("ipset", "ipvsadm")


def modules(platform: platforms.Platform) -> list[str]:
    """The IPVS modules and the release's conntrack module (``platforms.Release``)."""
    return ["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", platform.release.conntrack_module]


def files(platform: platforms.Platform, installed: dict[str, str]) -> dict[str, tuple[str, int]]:
    """modules-load.d on every release (systemd-modules-load reads it at boot); the seed's
    /etc/sysconfig/modules script only where something runs it at boot."""
    mods = modules(platform)
    out = {CONF: (render("etc/modules-load.d/ipvs.conf.j2", modules=mods), 0o644)}
    runner = platform.release.sysconfig_modules_runner
    if runner and runner in installed:
        out[SCRIPT] = (render("etc/sysconfig/modules/ipvs.modules.j2", modules=mods), 0o755)
    return out


def facts(t: Target) -> list[F.Fact]:
    return [*platforms.facts(), F.rpms(PACKAGES), F.modules(), F.file(SCRIPT), F.file(CONF)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    platform = platforms.of(facts)
    missing = [pkg for pkg in PACKAGES if pkg not in facts["rpms:" + ",".join(PACKAGES)]]
    if missing:
        p.install(missing, "not installed")
    for path, (content, mode) in files(platform, platforms.installed(facts)).items():
        p.write(path, content, facts[f"file:{path}"], mode=mode)
    for module in modules(platform):
        if module not in facts["modules"]:
            p.run(f"modprobe -- {module}", "not loaded")
    return p


def skip(t: Target) -> str | None:
    mode = t.inv.cluster.proxy_mode
    return None if mode == "ipvs" else f"cluster.proxy_mode is {mode}"


STEP = Step("ipvs", __doc__, facts, plan, skip)
