"""keepalived: on a control-plane node of a ``cluster.load_balancer: haproxy-keepalived``
cluster, keepalived installed with this node's claim on the API's virtual IP and the check that
follows haproxy and the node's own API server, enabled and running (bootstrap/api_endpoint.py).
"""

from __future__ import annotations

from .. import api_endpoint as A
from .. import facts as F
from ..plan import Plan
from . import Step, Target


def skip(t: Target) -> str | None:
    if A.needs_keepalived(t.inv, t.node):
        return None
    if t.inv.load_balancer != "haproxy-keepalived":
        return f"cluster.load_balancer is {t.inv.load_balancer}"
    return "a worker dials the virtual IP"


def facts(t: Target) -> list[F.Fact]:
    return [F.rpms([A.KEEPALIVED_PACKAGE]), F.unit(A.KEEPALIVED_UNIT),
            F.file(A.KEEPALIVED_CONFIG), F.file(A.CHECK_SCRIPT)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    if A.KEEPALIVED_PACKAGE not in facts[f"rpms:{A.KEEPALIVED_PACKAGE}"]:
        p.install([A.KEEPALIVED_PACKAGE], "the virtual IP of the API endpoint")
    script = p.write(A.CHECK_SCRIPT, A.check_script(t.inv, t.node), facts[f"file:{A.CHECK_SCRIPT}"],
                     mode=0o755)
    config = p.write(A.KEEPALIVED_CONFIG, A.keepalived_config(t.inv, t.node),
                     facts[f"file:{A.KEEPALIVED_CONFIG}"])
    why = "keepalived.conf changed" if config else "its check script changed" if script else ""
    p.service(A.KEEPALIVED_UNIT, facts[f"unit:{A.KEEPALIVED_UNIT}"], "keepalived", why)
    return p


STEP = Step("keepalived", __doc__, facts, plan, skip=skip)
