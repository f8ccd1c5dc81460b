"""Flannel: which images and namespace a release uses, and its manifest for the inventory."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..models import Inventory
from ..templating import render

MANIFEST = "/etc/kubernetes/addons/kube-flannel.yml"

# (first release, flannel image repository, CNI-plugin image or None, namespace), from each
# release's kube-flannel.yml: quay.io/coreos until v0.14 (the seed's quay mirror is long dead);
# v0.15 adds the separate CNI-plugin image; rancher's mirrors v0.15-v0.20; docker.io/flannel
# v0.21-v0.26.3; ghcr.io/flannel-io from v0.26.4; namespace kube-flannel from v0.19.
_RELEASES: list[tuple[tuple[int, int, int], str, str | None, str]] = [
    ((0, 0, 0), "quay.io/coreos/flannel", None, "kube-system"),
    (
        (0, 15, 0),
        "docker.io/rancher/mirrored-flannelcni-flannel",
        "docker.io/rancher/mirrored-flannelcni-flannel-cni-plugin:v1.0.0",
        "kube-system",
    ),
    (
        (0, 17, 0),
        "docker.io/rancher/mirrored-flannelcni-flannel",
        "docker.io/rancher/mirrored-flannelcni-flannel-cni-plugin:v1.0.1",
        "kube-system",
    ),
    (
        (0, 18, 0),
        "docker.io/rancher/mirrored-flannelcni-flannel",
        "docker.io/rancher/mirrored-flannelcni-flannel-cni-plugin:v1.1.0",
        "kube-system",
    ),
    (
        (0, 19, 0),
        "docker.io/rancher/mirrored-flannelcni-flannel",
        "docker.io/rancher/mirrored-flannelcni-flannel-cni-plugin:v1.1.0",
        "kube-flannel",
    ),
    ((0, 21, 0), "docker.io/flannel/flannel", "docker.io/flannel/flannel-cni-plugin:v1.1.2",
     "kube-flannel"),
    ((0, 23, 0), "docker.io/flannel/flannel", "docker.io/flannel/flannel-cni-plugin:v1.2.0",
     "kube-flannel"),
    ((0, 24, 0), "docker.io/flannel/flannel",
     "docker.io/flannel/flannel-cni-plugin:v1.4.0-flannel1", "kube-flannel"),
    ((0, 25, 0), "docker.io/flannel/flannel",
     "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel1", "kube-flannel"),
    ((0, 26, 0), "docker.io/flannel/flannel",
     "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2", "kube-flannel"),
    ((0, 26, 4), "ghcr.io/flannel-io/flannel",
     "ghcr.io/flannel-io/flannel-cni-plugin:v1.6.2-flannel1", "kube-flannel"),
    # v0.27-v0.28: kube-flannel.yml at each tag (docs/RELEASE-FACTS.md 8)
    ((0, 27, 0), "ghcr.io/flannel-io/flannel",
     "ghcr.io/flannel-io/flannel-cni-plugin:v1.7.1-flannel1", "kube-flannel"),
    ((0, 27, 4), "ghcr.io/flannel-io/flannel",
     "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1", "kube-flannel"),
    ((0, 28, 1), "ghcr.io/flannel-io/flannel",
     "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.0-flannel1", "kube-flannel"),
    ((0, 28, 3), "ghcr.io/flannel-io/flannel",
     "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel1", "kube-flannel"),
    ((0, 28, 6), "ghcr.io/flannel-io/flannel",
     "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel2", "kube-flannel"),
    ((0, 28, 9), "ghcr.io/flannel-io/flannel",
     "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3", "kube-flannel"),
]


@dataclass(frozen=True)
class Flannel:
    version: str
    image: str
    cni_plugin_image: str | None
    namespace: str
    registry_note: str

    @property
    def images(self) -> list[str]:
        return [i for i in (self.cni_plugin_image, self.image) if i]


def _tuple(tag: str) -> tuple[int, int, int]:
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", tag)
    if not m:
        raise ValueError(f"not a flannel release tag: {tag!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _rehome(image: str, registry: str | None) -> str:
    """``image`` from ``registry`` instead: same last path component and tag."""
    if not registry:
        return image
    return f"{registry.rstrip('/')}/{image.rsplit('/', 1)[1]}"


def release(version: str, registry: str | None = None) -> Flannel:
    """Images and namespace of flannel ``version``; ``registry`` replaces where they come from
    (``network.flannel_registry``: a mirror holding the same image names)."""
    wanted = _tuple(version)
    _, repo, plugin, namespace = [r for r in _RELEASES if r[0] <= wanted][-1]
    return Flannel(
        version=version,
        image=_rehome(f"{repo}:{version}", registry),
        cni_plugin_image=_rehome(plugin, registry) if plugin else None,
        namespace=namespace,
        registry_note=registry or "the release's own registries",
    )


def manifest(inv: Inventory) -> str:
    """kube-flannel.yml for the inventory: Network = cluster.pod_network_cidr."""
    net = inv.network
    return render(
        "addons/kube-flannel.yml.j2",
        flannel=release(net.flannel_version, net.flannel_registry),
        network_cidr=inv.cluster.pod_network_cidr,
    )
