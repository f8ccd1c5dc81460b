"""Node-preparation steps, one module per concern, in the order seed 004 applies them.

A step is pure: ``facts(t)`` names what it must know about a node, ``plan(t, facts)`` returns
the changes that would bring the node to the desired state. The engine gathers the facts of all
steps in one round trip, applies plans, and re-gathers to check that every step converged.
"""

from __future__ import annotations

from ..workflow import Phase, Target

__all__ = ["Step", "Target", "prepare_steps"]

Step = Phase
"""A node-preparation step is a phase of prepare-nodes (workflow.Phase)."""


def prepare_steps(pull_images: bool = False, runtime: str = "docker",
                  proxy: bool = False) -> list[Step]:
    """The prepare-nodes steps, in order: the container runtime's step (docker or containerd)
    only; ``local-proxy`` and ``keepalived`` only with ``proxy`` (``cluster.load_balancer``
    local or haproxy-keepalived: api_endpoint.runs_services); ``images`` only when asked for."""
    from . import (
        base_repo,
        bridge,
        containerd,
        docker,
        firewall,
        hostname,
        hosts,
        ipvs,
        keepalived,
        kubelet,
        kubernetes,
        local_proxy,
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
        local_proxy,
        keepalived,
    )
    other = containerd if runtime == "docker" else docker
    steps = [m.STEP for m in modules
             if m is not other and (proxy or m not in (local_proxy, keepalived))]
    if pull_images:
        from . import images

        steps.append(images.STEP)
    return steps
