"""kubelet: /etc/sysconfig/kubelet with KUBELET_EXTRA_ARGS, and the kubelet service enabled.

kubeadm starts kubelet during init and join; before that it would only crash-loop.
"""

from __future__ import annotations

from .. import facts as F
from ..plan import Plan
from ..templating import render
from ..workflow import Need
from . import Step, Target

PATH = "/etc/sysconfig/kubelet"
UNIT = "kubelet.service"


def content(t: Target) -> str:
    return render("etc/sysconfig/kubelet.j2", inventory=t.inv, node=t.node)


def facts(t: Target) -> list[F.Fact]:
    return [F.file(PATH), F.unit(UNIT)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    p.write(PATH, content(t), facts[f"file:{PATH}"])
    if not facts[f"unit:{UNIT}"]["enabled"]:
        p.run(f"systemctl enable {UNIT}", "kubelet is not enabled")
    return p


PACKAGES = Need("kubernetes-packages", "the kubelet package and its unit",
                lambda t: [F.unit(UNIT)], lambda t, facts: facts[f"unit:{UNIT}"]["exists"])
STEP = Step("kubelet", __doc__, facts, plan, needs=(PACKAGES,))
