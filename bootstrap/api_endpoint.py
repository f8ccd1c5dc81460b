"""How every node reaches the API server: the endpoint's /etc/hosts line and the local proxy of
``cluster.load_balancer: local`` (README "HA control planes").

``local``: the endpoint is a name (default ``apiserver.cluster.local:6443``) that each node's
/etc/hosts resolves:
- on a control-plane node whose API server runs (the init node from the start): its own
  address, so it never depends on another node;
- on a control-plane node that is joining: the init node's address, since it has no API server
  yet (kubeadm join talks to the endpoint for discovery, the certificates and etcd's members);
  its line moves to its own address once it runs one (sealos does the same);
- on a worker: 127.0.0.1, where haproxy (the OS package, a systemd service) listens on the
  endpoint's port and balances over every control-plane node's API server. It runs before
  ``kubeadm join`` needs it; an OS service rather than a static pod because the kubelet runs
  static pods only once joined.
``external`` and ``none`` write no line: the user's DNS or the init node's address serve.
"""

from __future__ import annotations

from .models import Inventory, Node
from .templating import render

APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
"""Present on a control-plane node whose API server kubeadm set up (its static pod)."""
PROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
PROXY_UNIT = "haproxy.service"
PROXY_PACKAGE = "haproxy"
LOOPBACK = "127.0.0.1"


def host_and_port(inv: Inventory) -> tuple[str, int]:
    host, _, port = inv.control_plane_endpoint.rpartition(":")
    return host, int(port)


def hosts_line(inv: Inventory, node: Node, serving: bool) -> str | None:
    """The endpoint's /etc/hosts line on ``node`` (``serving``: its API server is set up), or
    None when the load balancer is not ``local``."""
    if inv.load_balancer != "local":
        return None
    host, _ = host_and_port(inv)
    if not node.is_control_plane:
        address = LOOPBACK
    elif serving or node == inv.init_node:
        address = node.internal_address
    else:
        address = inv.init_node.internal_address
    return f"{address} {host}"


def needs_proxy(inv: Inventory, node: Node) -> bool:
    """A worker of a ``local`` cluster runs the local proxy."""
    return inv.load_balancer == "local" and not node.is_control_plane


def proxy_config(inv: Inventory) -> str:
    """haproxy.cfg: TCP on 127.0.0.1:PORT, balanced over every control plane's API server, each
    health-checked by a TCP connect (kubespray's and KubeKey's local proxies do the same)."""
    _, port = host_and_port(inv)
    return render("etc/haproxy/haproxy.cfg.j2", bind=f"{LOOPBACK}:{port}", port=port,
                  servers=[(n.name, n.internal_address) for n in inv.control_plane])
