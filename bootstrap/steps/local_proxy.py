"""local-proxy: haproxy installed, configured to balance over every control-plane node's API
server, and running before the endpoint is needed: on a worker of a ``cluster.load_balancer:
local`` cluster on 127.0.0.1:PORT, on a control plane of a ``haproxy-keepalived`` one on
``*:PORT`` (bootstrap/api_endpoint.py)."""

from __future__ import annotations

from .. import api_endpoint as A
from .. import facts as F
from ..plan import Plan
from . import Step, Target


def skip(t: Target) -> str | None:
    if A.needs_proxy(t.inv, t.node):
        return None
    if t.inv.load_balancer == "local":
        return "a control-plane node reaches its own API server"
    if t.inv.load_balancer == "haproxy-keepalived":
        return "a worker dials the virtual IP"
    return f"cluster.load_balancer is {t.inv.load_balancer}"


def facts(t: Target) -> list[F.Fact]:
    return [F.rpms([A.PROXY_PACKAGE]), F.unit(A.PROXY_UNIT), F.file(A.PROXY_CONFIG)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    if A.PROXY_PACKAGE not in facts[f"rpms:{A.PROXY_PACKAGE}"]:
        p.install([A.PROXY_PACKAGE], "the proxy to the API servers")
    changed = p.write(A.PROXY_CONFIG, A.proxy_config(t.inv), facts[f"file:{A.PROXY_CONFIG}"])
    p.service(A.PROXY_UNIT, facts[f"unit:{A.PROXY_UNIT}"], "haproxy",
              "haproxy.cfg changed" if changed else "")
    return p


STEP = Step("local-proxy", __doc__, facts, plan, skip=skip)
