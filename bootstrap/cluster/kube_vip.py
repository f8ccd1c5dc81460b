"""kube-vip's static pod on the control planes (``cluster.load_balancer: kube-vip``; the
manifest and its kubeconfig: bootstrap/api_endpoint.py).

- ``kube-vip`` on the init node, before ``kubeadm init``: init dials the endpoint (the VIP), so
  kube-vip must already be there when the kubelet starts the static pods. From 1.29 it mounts
  super-admin.conf: admin.conf is not cluster-admin until init has bound it, and kube-vip could
  not take its Lease (kube-vip#684).
- ``kube-vip-admin`` right after init: admin.conf again (the kubelet restarts the pod on the
  manifest's change), then a wait until the endpoint answers through the VIP.
- ``kube-vip`` on every other control plane, right after its join (before 1.23, ``kubeadm join``
  refuses a non-empty manifests directory: kubernetes PR #104942).
"""

from __future__ import annotations

from .. import api_endpoint as A
from .. import facts as F
from ..plan import FileState, Plan
from ..steps import Target
from ..workflow import Need, Phase
from .common import ADMIN_CONF, present
from .phases import cluster_phase

WAIT = 90  # seconds the endpoint may take to answer through the VIP after the swap


def _skip(t: Target) -> str | None:
    if t.inv.load_balancer != "kube-vip":
        return f"cluster.load_balancer is {t.inv.load_balancer}"
    return None


def _facts(t: Target) -> list[F.Fact]:
    return [F.file(A.KUBE_VIP_MANIFEST), present()]


def _initialised(facts: F.Facts) -> bool:
    return ADMIN_CONF in facts[present().name]


def wait_command() -> str:
    """Until the endpoint (admin.conf's server: the VIP) answers /readyz."""
    k = f"kubectl --kubeconfig {ADMIN_CONF} get --raw=/readyz"
    tries = WAIT // 2
    return (f"i=0; until {k} >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge {tries} ]; then "
            f"echo 'the endpoint does not answer through the virtual IP after {WAIT}s:' >&2; "
            f"{k} >&2; exit 1; fi; sleep 2; done")


def _plan(after: bool, wait: bool):
    def plan(t: Target, facts: F.Facts) -> Plan:
        p = Plan()
        initialised = _initialised(facts)
        if not after and initialised:
            return p  # kube-vip-admin keeps an initialised node's manifest
        conf = A.kube_vip_kubeconfig(t.inv, t.node, after or initialised)
        before = facts[f"file:{A.KUBE_VIP_MANIFEST}"]
        if wait and not initialised:  # planned before init from the same facts: start from
            # what the kube-vip phase leaves (a 1.29+ init node's mounts super-admin.conf)
            prior = A.kube_vip_kubeconfig(t.inv, t.node, False)
            before = FileState(A.kube_vip_manifest(t.inv, t.node, prior), 0o600, "root", "root")
        written = p.write(A.KUBE_VIP_MANIFEST, A.kube_vip_manifest(t.inv, t.node, conf),
                          before, mode=0o600)
        if written and wait:
            p.run(wait_command(), "kube-vip restarted with admin.conf",
                  label=f"wait until {t.inv.control_plane_endpoint} answers through the VIP")
        return p

    return plan


def _phase(name: str, doc: str, after: bool, wait: bool = False,
           needs: tuple[Need, ...] = ()) -> Phase:
    phase = cluster_phase(name, doc, _facts, _plan(after, wait), needs=needs)
    return Phase(phase.name, phase.doc, phase.facts, phase.plan, skip=_skip,
                 explain=phase.explain, needs=phase.needs)


BEFORE_INIT = _phase("kube-vip", "kube-vip's static pod, before kubeadm init", False)
"""On the init node, before ``kubeadm init`` (super-admin.conf from 1.29)."""


def after_init(control_plane: Need) -> Phase:
    """On the init node, after ``kubeadm init``: admin.conf, then the wait."""
    return _phase("kube-vip-admin", "kube-vip on admin.conf once init is done", True, True,
                  needs=(control_plane,))


AFTER_JOIN = _phase("kube-vip", "kube-vip's static pod, once joined", True)
"""On another control plane, after its ``kubeadm join --control-plane``."""
