"""``verify --only ControlPlaneFailover`` (README "HA control planes"): disruptive, so never in
verify's default set.

One control plane's API server is stopped the way the kubelet stops any static pod, by moving
its manifest out of /etc/kubernetes/manifests: the node holding the virtual IP (kube-vip,
haproxy-keepalived), else the init node. Then, within the wait:
- with a VIP, another control plane holds it (``ip -4 -o addr show dev IFACE``);
- every node still reaches the endpoint with its kubelet's kubeconfig (``local``: but the
  stopped node, whose endpoint name leads to its own API server by design).
The manifest goes back whatever happened (a cleanup, also after Ctrl-C), and the API server
must run and answer /readyz on its own address again.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from . import runtimes
from .api_endpoint import api_port
from .checks import _addresses
from .cluster.common import ADMIN_CONF, KUBELET_CONF, K
from .errors import BootstrapError
from .models import Inventory, Node
from .verify import Outcome

NAME = "ControlPlaneFailover"
MANIFEST = f"{K}/manifests/kube-apiserver.yaml"
PARKED = f"{K}/k8s-bootstrap-failover/kube-apiserver.yaml"
"""Where the manifest waits while its API server is stopped (outside the kubelet's view)."""


def stop_script(inv: Inventory, limit: int) -> str:
    """Park the manifest, then wait until the runtime runs no kube-apiserver container."""
    running = runtimes.of(inv).running.format(name="kube-apiserver")
    return (f"mkdir -p {shlex.quote(PARKED.rsplit('/', 1)[0])} && mv {MANIFEST} {PARKED} && "
            f"i=0; while [ -n \"$({running} 2>/dev/null)\" ]; do i=$((i+1)); "
            f"[ $i -lt {limit} ] || {{ echo 'kube-apiserver still runs after {limit}s' >&2; "
            "exit 1; }; sleep 1; done")


def restore_script(inv: Inventory, node: Node, limit: int) -> str:
    """The manifest back (when parked), then wait until this API server answers /readyz."""
    server = f"https://{node.internal_address}:{api_port(inv)}"
    ready = f"kubectl --kubeconfig {ADMIN_CONF} --server {server} get --raw=/readyz"
    return (f"if [ -e {PARKED} ] && [ ! -e {MANIFEST} ]; then mv {PARKED} {MANIFEST}; fi; "
            f"i=0; until {ready} >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge {limit} ]; then "
            f"echo 'kube-apiserver on {node.name} is not ready after {limit}s:' >&2; "
            f"{ready} >&2; exit 1; fi; sleep 1; done")


def endpoint_script(limit: int) -> str:
    """Until this node's kubelet kubeconfig reaches a ready API server (``limit`` s)."""
    k = f"kubectl --kubeconfig {KUBELET_CONF} get --raw=/readyz"
    return (f"i=0; until {k} >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge {limit} ]; then "
            f"{k} 2>&1 | tail -n 1; exit 1; fi; sleep 1; done")


def holder(inv: Inventory, outputs: dict[str, str]) -> list[str]:
    """The control planes whose VIP interface carries the VIP (``outputs``: node -> `ip`'s)."""
    assert inv.vip and inv.cluster.vip
    iface = inv.cluster.vip.interface
    return [name for name, out in outputs.items()
            if any(dev == iface and cidr.split("/")[0] == inv.vip
                   for dev, cidr in _addresses(out, 0))]


class _Sessions:
    """One session per node, opened when first needed, all closed at the end."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.open = runner, {}

    def __call__(self, node: Node) -> Any:
        if node.name not in self.open:
            self.open[node.name] = self.runner.session(node)
        return self.open[node.name]

    def close(self) -> None:
        for session in self.open.values():
            session.close()


def _holders(sessions: _Sessions, inv: Inventory) -> list[str]:
    assert inv.cluster.vip
    cmd = f"ip -4 -o addr show dev {shlex.quote(inv.cluster.vip.interface)}"
    outputs = {}
    for node in inv.control_plane:
        try:
            r = sessions(node).run(cmd, what="verify: who holds the VIP", readonly=True,
                                   timeout=30)
        except BootstrapError:
            outputs[node.name] = ""
            continue
        outputs[node.name] = r.stdout if r.ok else ""
    return holder(inv, outputs)


def run(runner: Any, inv: Inventory, limit: int) -> Outcome:
    """Stop one API server, judge, put it back."""
    sessions = _Sessions(runner)
    try:
        return _run(sessions, inv, limit)
    finally:
        sessions.close()


def _run(sessions: _Sessions, inv: Inventory, limit: int) -> Outcome:
    expected = ("with one control plane's API server stopped, "
                + ("the VIP moves to another and " if inv.vip else "")
                + "every node still reaches the endpoint; the API server then runs again")
    if len(inv.control_plane) < 2:
        return Outcome(NAME, False, expected, "one control plane: nothing to fail over to", [],
                       "add control-plane nodes (3, 5 or 7) with a load balancer: README "
                       "\"HA control planes\"")
    evidence: list[str] = []
    victim = inv.init_node
    if inv.vip:
        before = _holders(sessions, inv)
        if len(before) != 1:
            return Outcome(NAME, False, expected, f"{inv.vip} is held by "
                           f"{', '.join(before) or 'no control plane'} before the test", [],
                           "on the control planes: systemctl status kubelet keepalived; "
                           "crictl ps (or docker ps) for kube-vip")
        victim = inv.node(before[0])
        evidence.append(f"{victim.name} holds {inv.vip}")
    session = sessions(victim)
    problems: list[str] = []
    started = time.monotonic()
    try:
        stopped = session.run(stop_script(inv, limit), what="verify: stop an API server",
                              timeout=limit + 30, journal=("verify", f"{MANIFEST} parked in "
                                                           f"{PARKED} (failover check)"))
        if not stopped.ok:
            problems.append(f"could not stop kube-apiserver on {victim.name}: "
                            f"{(stopped.stderr or stopped.stdout).strip()}")
        else:
            evidence.append(f"kube-apiserver stopped on {victim.name} "
                            f"({time.monotonic() - started:.0f}s)")
            problems += _judge_while_down(sessions, inv, victim, limit, evidence)
    except BootstrapError as exc:
        problems.append(f"{victim.name}: {exc.message}")
    finally:
        back = time.monotonic()
        r = session.run(restore_script(inv, victim, limit), what="verify: restart the API server",
                        timeout=limit + 30, cleanup=True,
                        journal=("verify", f"{MANIFEST} back from {PARKED}"))
        if r.ok:
            evidence.append(f"kube-apiserver on {victim.name} back and ready "
                            f"({time.monotonic() - back:.0f}s)")
        else:
            problems.append(f"kube-apiserver on {victim.name} did not come back: "
                            f"{(r.stderr or r.stdout).strip()}")
    if problems:
        return Outcome(NAME, False, expected, "; ".join(problems), evidence,
                       f"on {victim.name}: is {MANIFEST} there? crictl ps (or docker ps); "
                       "on the others: systemctl status kubelet keepalived haproxy")
    return Outcome(NAME, True, expected, f"{victim.name} stopped and back; "
                   + ("the VIP moved; " if inv.vip else "")
                   + "every node reached the endpoint", evidence)


def _judge_while_down(sessions: _Sessions, inv: Inventory, victim: Node, limit: int,
                      evidence: list[str]) -> list[str]:
    problems = []
    started = time.monotonic()
    if inv.vip:
        now: list[str] = []
        while time.monotonic() - started < limit:
            now = _holders(sessions, inv)
            if now and victim.name not in now:
                break
            time.sleep(1)
        if len(now) == 1 and now[0] != victim.name:
            evidence.append(f"{now[0]} holds {inv.vip} ({time.monotonic() - started:.0f}s)")
        else:
            problems.append(f"{inv.vip} did not move: held by {', '.join(now) or 'nobody'} "
                            f"after {limit}s")
    for node in inv.nodes:
        if node == victim and inv.load_balancer == "local":
            continue
        try:
            r = sessions(node).run(endpoint_script(limit), what="verify: reach the endpoint",
                                   readonly=True, timeout=limit + 30)
        except BootstrapError as exc:
            problems.append(f"{node.name} unreachable: {exc.message}")
            continue
        if not r.ok:
            problems.append(f"{node.name} cannot reach {inv.control_plane_endpoint}: "
                            f"{r.stdout.strip() or r.stderr.strip()}")
    if not problems:
        evidence.append(f"every node reached {inv.control_plane_endpoint}")
    return problems


def dry_run_text(inv: Inventory, limit: int) -> str:
    who = (f"the control plane holding {inv.vip} (ip -4 -o addr show dev "
           f"{inv.cluster.vip.interface})" if inv.vip and inv.cluster.vip else inv.init_node.name)
    return (f"would: on {who}: $ {stop_script(inv, limit)}\n"
            f"would: on every node: $ {endpoint_script(limit)}\n"
            f"would: on that node, also after a failure: $ "
            f"{restore_script(inv, inv.init_node, limit)}")
