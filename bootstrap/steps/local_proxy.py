"""local-proxy: on a worker of a ``cluster.load_balancer: local`` cluster, haproxy installed,
configured to balance 127.0.0.1:PORT over every control-plane node's API server, and running
before join-workers needs it (bootstrap/api_endpoint.py)."""

from __future__ import annotations

from .. import api_endpoint as A
from .. import facts as F
from ..plan import Plan
from . import Step, Target


def skip(t: Target) -> str | None:
    if A.needs_proxy(t.inv, t.node):
        return None
    if t.inv.load_balancer != "local":
        return f"cluster.load_balancer is {t.inv.load_balancer}"
    return "a control-plane node reaches its own API server"


def facts(t: Target) -> list[F.Fact]:
    return [F.rpms([A.PROXY_PACKAGE]), F.unit(A.PROXY_UNIT), F.file(A.PROXY_CONFIG)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    if A.PROXY_PACKAGE not in facts[f"rpms:{A.PROXY_PACKAGE}"]:
        p.install([A.PROXY_PACKAGE], "the local proxy to the API servers")
    changed = p.write(A.PROXY_CONFIG, A.proxy_config(t.inv), facts[f"file:{A.PROXY_CONFIG}"])
    p.service(A.PROXY_UNIT, facts[f"unit:{A.PROXY_UNIT}"], "haproxy",
              "haproxy.cfg changed" if changed else "")
    return p


STEP = Step("local-proxy", __doc__, facts, plan, skip=skip)
