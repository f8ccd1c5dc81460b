"""Node-preparation steps, one module per concern, in the order seed 004 applies them.

A step is pure: ``facts(t)`` names what it must know about a node, ``plan(t, facts)`` returns
the changes that would bring the node to the desired state. The engine gathers the facts of all
steps in one round trip, applies plans, and re-gathers to check that every step converged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..facts import Fact, Facts
from ..models import Inventory, Node
from ..plan import Plan


@dataclass(frozen=True)
class Target:
    """What a step is computed for: the inventory and one of its nodes."""

    inv: Inventory
    node: Node


@dataclass(frozen=True)
class Step:
    name: str
    doc: str
    facts: Callable[[Target], list[Fact]]
    plan: Callable[[Target, Facts], Plan]
    skip: Callable[[Target], str | None] = lambda t: None  # a reason to skip, or None


def prepare_steps(pull_images: bool = False, runtime: str = "docker") -> list[Step]:
    """The prepare-nodes steps, in order: the container runtime's step (docker or containerd)
    only; ``images`` only when asked for."""
    from . import (
        base_repo,
        bridge,
        containerd,
        docker,
        firewall,
        hostname,
        hosts,
        ipvs,
        kubelet,
        kubernetes,
        selinux,
        swap,
        time,
    )

    modules = (
        hostname,
        hosts,
        base_repo,
        time,
        firewall,
        selinux,
        swap,
        bridge,
        ipvs,
        docker,
        containerd,
        kubernetes,
        kubelet,
    )
    other = containerd if runtime == "docker" else docker
    steps = [m.STEP for m in modules if m is not other]
    if pull_images:
        from . import images

        steps.append(images.STEP)
    return steps
