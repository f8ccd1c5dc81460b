"""The kubeadm config files: InitConfiguration + ClusterConfiguration + KubeletConfiguration +
KubeProxyConfiguration for ``kubeadm init``, a JoinConfiguration for ``kubeadm join``."""

from __future__ import annotations

from .. import releases
from ..api_endpoint import api_port
from ..models import Inventory, Node
from ..runtimes import RUNTIMES
from ..templating import render

INIT_CONFIG = "/etc/kubernetes/kubeadm-config.yaml"
INIT_TOKEN_TTL = "1h0m0s"  # kubeadm init's own token; join-workers makes a fresh one per run
JOIN_TOKEN_TTL = "15m"
DISCOVERY_TIMEOUT = "2m0s"


def api_version(version: tuple[int, int, int]) -> str:
    """kubeadm config API for a release (``releases.MINORS``: v1beta2 below 1.22, v1beta3 from
    1.22, v1beta4 from 1.31)."""
    return releases.release(".".join(str(p) for p in version)).kubeadm_api


def cri_socket(version: tuple[int, int, int], runtime: str = "docker") -> str:
    """The runtime's CRI socket (``runtimes.RUNTIMES``); a URL from v1beta3 on."""
    path = RUNTIMES[runtime].socket
    return f"unix://{path}" if version[:2] >= (1, 22) else path


def cgroup_v1_opt_out(inv: Inventory) -> bool:
    """cluster.allow_cgroup_v1 on a release that refuses cgroup v1 (1.35+): the kubelet gets
    failCgroupV1: false and kubeadm skips SystemVerification, both of which KEP-5573 asks for
    (docs/RELEASE-FACTS.md 3)."""
    return inv.cluster.allow_cgroup_v1 and (
        releases.release(inv.cluster.kubernetes_version).cgroup_v1 == "refused")


def _bind_port(inv: Inventory) -> int:
    return api_port(inv)


def cert_sans(inv: Inventory) -> list[str]:
    """The API server certificate's extra names with an endpoint: the endpoint's host and every
    control-plane address (kubeadm adds the node's own address, the service IP and the
    kubernetes.default names itself); none for ``load_balancer: none``."""
    host = inv.control_plane_endpoint.rpartition(":")[0]
    names = list(dict.fromkeys([host] + [n.internal_address for n in inv.control_plane]))
    return [] if inv.load_balancer == "none" or names == [inv.init_node.internal_address] \
        else names


def init_config(inv: Inventory, certificate_key: str = "") -> str:
    """The text of /etc/kubernetes/kubeadm-config.yaml for the master; with ``certificate_key``
    (a secret) the transient copy ``kubeadm init --upload-certs`` reads."""
    version = inv.cluster.version_tuple
    return render(
        "kubeadm/kubeadm-config.yaml.j2",
        api_version=api_version(version),
        cri_socket=cri_socket(version, inv.cluster.runtime),
        init_token_ttl=INIT_TOKEN_TTL,
        master=inv.init_node,
        bind_port=_bind_port(inv),
        cluster=inv.cluster,
        control_plane_endpoint=inv.control_plane_endpoint,
        cert_sans=cert_sans(inv),
        certificate_key=certificate_key,
        docker=inv.docker,
        cgroup_v1_opt_out=cgroup_v1_opt_out(inv),
    )


def join_config(inv: Inventory, node: Node, token: str, ca_hash: str,
                certificate_key: str = "") -> str:
    """A node's JoinConfiguration; a control-plane node's (``certificate_key``) has its own API
    endpoint and the key. It holds secrets: upload it as one, never log it."""
    version = inv.cluster.version_tuple
    return render(
        "kubeadm/join-config.yaml.j2",
        api_version=api_version(version),
        cri_socket=cri_socket(version, inv.cluster.runtime),
        endpoint=inv.control_plane_endpoint,
        token=token,
        ca_hash=ca_hash,
        discovery_timeout=DISCOVERY_TIMEOUT,
        node=node,
        bind_port=_bind_port(inv),
        certificate_key=certificate_key,
        cgroup_v1_opt_out=cgroup_v1_opt_out(inv),
    )
