"""The cluster commands' phases on a host (kubeadm's style), run by the one loop in
bootstrap/workflow.py (through the stages of bootstrap/stages.py): what they add is kubeadm's
error lines as a failure's message, evidence collected when a phase fails, and secret files fed on
stdin (a bootstrap token never appears in a command line).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from .. import facts as F
from .. import releases, runtimes
from ..plan import Plan
from ..ssh import Session
from ..steps import Target
from ..steps import images as images_step
from ..workflow import Need, Phase
from .common import error_lines, packages, present, unprepared


def kubeadm_lines(stderr: str) -> str:
    """A failed phase's message: kubeadm's and kubectl's own error lines, on one line."""
    return " | ".join(ln.strip() for ln in error_lines(stderr))


def cluster_phase(
    name: str, doc: str, facts: Callable[[Target], list[F.Fact]],
    plan: Callable[[Target, F.Facts], Plan],
    on_failure: Callable[[Target, Session, str], str] | None = None,
    needs: tuple[Need, ...] = (),
) -> Phase:
    """A phase of init-master, join-workers or reset: its failure says kubeadm's lines."""
    return Phase(name, doc, facts, plan, on_failure=on_failure, explain=kubeadm_lines,
                 needs=needs)


def preflight_phase(done: Callable[[set[str]], bool], note: str) -> Phase:
    """ok (with ``note``) when ``done(kubeadm files present)``; an error for leftovers of an
    earlier kubeadm run or a node prepare-nodes has not prepared."""

    def plan(t: Target, facts: F.Facts) -> Plan:
        p = Plan()
        found = facts[present().name]
        if done(found):
            p.notes.append(note)
        elif found:
            p.error = (
                f"leftovers of an earlier kubeadm run ({', '.join(sorted(found))}): "
                f"run invoke reset --limit {t.node.name} first"
            )
        else:
            p.error = (unprepared(t.inv, facts[packages().name], facts[_runtime_unit(t).name])
                       or sandbox_mismatch(t, facts.get(SANDBOX.name)))
        return p

    def facts(t: Target) -> list[F.Fact]:
        found = [present(), packages(), _runtime_unit(t)]
        return [*found, SANDBOX] if t.inv.cluster.runtime == "containerd" else found

    return cluster_phase("preflight", "prepared, no leftovers", facts, plan)


def _sandbox(out: str, rc: int) -> str | None:
    """The sandbox image `crictl info` reports (containerd 1.x: .config.sandboxImage; 2.x
    reports none: docs/RELEASE-FACTS.md 5)."""
    try:
        return json.loads(out).get("config", {}).get("sandboxImage") or None
    except (ValueError, AttributeError):
        return None


SANDBOX = F.Fact("sandbox-image", "crictl info 2>/dev/null", _sandbox)


def sandbox_mismatch(t: Target, have: str | None) -> str | None:
    """kubeadm (1.27+) only warns that the runtime's sandbox image "is inconsistent with that
    used by kubeadm", and pods then pull pause from where containerd says, often unreachable
    (kubeasz#1490, kubekey#2492): here it stops init or join, before anything changes."""
    want = releases.pause_image(t.inv.cluster.kubernetes_version, t.inv.cluster.image_repository)
    if not have or have == want:
        return None
    return (f"containerd's sandbox image is {have}, not {want} (what kubeadm "
            f"{t.inv.cluster.kubernetes_version} uses from cluster.image_repository): run "
            f"invoke prepare-nodes --limit {t.node.name}, which writes containerd's config")


def _runtime_unit(t: Target) -> F.Fact:
    """The container runtime's unit (docker or containerd: runtimes.RUNTIMES)."""
    return F.unit(runtimes.of(t.inv).unit)


def images_phase(done: Callable[[set[str]], bool]) -> Phase:
    """kubeadm's images (the pinned coredns fix for 1.21.0-1.21.1) unless ``done``."""

    def plan(t: Target, facts: F.Facts) -> Plan:
        return Plan() if done(facts[present().name]) else images_step.plan(t, facts)

    return cluster_phase("images", images_step.__doc__ or "",
                 lambda t: [*images_step.facts(t), present()], plan)
