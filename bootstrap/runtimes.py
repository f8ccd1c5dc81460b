"""What differs between the container runtimes, as data: the unit, the CRI socket, how to list
and pull images, what to show when init or join fails. The steps and phases read this table."""

from __future__ import annotations

from dataclasses import dataclass

from .models import Inventory


@dataclass(frozen=True)
class Runtime:
    name: str
    unit: str
    socket: str
    """The CRI socket kubeadm talks to (dockershim's for docker, up to 1.23)."""
    images: str
    """Prints the images present, ``repository:tag`` a line."""
    pull: str
    """Pulls one image (``{image}``)."""
    tag: str
    """Tags ``{source}`` as ``{target}``."""
    evidence: tuple[str, ...]
    """Read-only commands whose output explains a failed init or join."""
    running: str
    """Prints the IDs of the running containers of a pod's container ``{name}`` (a static pod's
    too: works while the API server does not)."""


RUNTIMES = {
    "docker": Runtime(
        name="docker", unit="docker.service", socket="/var/run/dockershim.sock",
        images="docker images --format '{{.Repository}}:{{.Tag}}'",
        pull="docker pull {image}", tag="docker tag {source} {target}",
        evidence=("systemctl is-active docker kubelet 2>&1",),
        running="docker ps -q --filter name=k8s_{name}_",  # dockershim's k8s_CONTAINER_POD_...
    ),
    "containerd": Runtime(
        # crictl talks CRI (the kubelet's view); ctr's k8s.io namespace is where CRI keeps images
        name="containerd", unit="containerd.service",
        socket="/var/run/containerd/containerd.sock",
        images="crictl images | awk 'NR > 1 {print $1 \":\" $2}'",  # IMAGE TAG ID SIZE
        pull="crictl pull {image}", tag="ctr -n k8s.io images tag {source} {target}",
        evidence=("systemctl is-active containerd kubelet 2>&1",
                  "echo '--- crictl ps -a'", "crictl ps -a 2>&1 | tail -n 20",
                  "echo '--- journalctl -u containerd (last 15 lines)'",
                  "journalctl -u containerd -n 15 --no-pager 2>&1 | tail -n 15"),
        running="crictl ps -q --name '^{name}$'",  # running ones only, by default
    ),
}


def of(inv: Inventory) -> Runtime:
    return RUNTIMES[inv.cluster.runtime]


def cri_flag(inv: Inventory) -> str:
    """`` --cri-socket URL`` for kubeadm commands on containerd; nothing on docker, where
    kubeadm finds dockershim itself (and the seed never passes one)."""
    rt = of(inv)
    return "" if rt.name == "docker" else f" --cri-socket unix://{rt.socket}"
