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

``kube-vip`` and ``haproxy-keepalived``: the endpoint is a virtual IP (``VIP:6443`` and
``VIP:8443`` by default) that one control-plane node holds at a time; every node dials it
directly, no /etc/hosts line.
- kube-vip: a static pod per control plane, ARP with leader election (the Lease
  ``plndr-cp-lock``): the leader holds the VIP, traffic goes to its API server's own port. On
  the init node it is written before ``kubeadm init``; from 1.29 it mounts super-admin.conf
  until init is done (admin.conf is not cluster-admin yet then: kube-vip#684), then admin.conf.
  The other control planes get it right after their join.
- haproxy-keepalived: the OS packages as systemd services on every control plane (running
  before ``kubeadm init`` needs the endpoint, and outliving the kubelet; kubeadm's
  ha-considerations.md offers them either way). haproxy binds ``*:PORT`` (never 6443, which
  kube-apiserver holds) and balances over every API server; keepalived's VRRP puts the VIP on
  the healthy node with the highest priority (the init node's first); its check follows
  haproxy and the node's own API server.
"""

from __future__ import annotations

from . import releases
from .models import Inventory, Node
from .templating import render

APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
"""Present on a control-plane node whose API server kubeadm set up (its static pod)."""
PROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
PROXY_UNIT = "haproxy.service"
PROXY_PACKAGE = "haproxy"
LOOPBACK = "127.0.0.1"
API_PORT = 6443
"""kubeadm's localAPIEndpoint.bindPort default."""
KEEPALIVED_PACKAGE = "keepalived"
KEEPALIVED_UNIT = "keepalived.service"
KEEPALIVED_CONFIG = "/etc/keepalived/keepalived.conf"
CHECK_SCRIPT = "/etc/keepalived/check_apiserver.sh"
KUBE_VIP_MANIFEST = "/etc/kubernetes/manifests/kube-vip.yaml"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
SUPER_ADMIN_CONF = "/etc/kubernetes/super-admin.conf"
TOP_PRIORITY = 150
"""keepalived's priority of the init node; each next control plane one less."""


def host_and_port(inv: Inventory) -> tuple[str, int]:
    host, _, port = inv.control_plane_endpoint.rpartition(":")
    return host, int(port)


def api_port(inv: Inventory) -> int:
    """The port every API server binds: the endpoint's when it is the init node's own address
    or with ``local`` (the name leads straight to each API server, or to a proxy on the same
    port; kube-vip's endpoint port is 6443 by the schema); else kubeadm's 6443."""
    host, port = host_and_port(inv)
    same = host == inv.init_node.internal_address or inv.load_balancer == "local"
    return port if same else API_PORT


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
    """haproxy runs on a worker of a ``local`` cluster and on a control plane of a
    ``haproxy-keepalived`` one."""
    if inv.load_balancer == "local":
        return not node.is_control_plane
    return inv.load_balancer == "haproxy-keepalived" and node.is_control_plane


def proxy_config(inv: Inventory) -> str:
    """haproxy.cfg: TCP on 127.0.0.1:PORT (``local``) or ``*:PORT`` (``haproxy-keepalived``,
    so that the VIP's holder answers), balanced over every control plane's API server, each
    health-checked by a TCP connect (kubespray's and KubeKey's proxies do the same)."""
    _, port = host_and_port(inv)
    local = inv.load_balancer == "local"
    return render("etc/haproxy/haproxy.cfg.j2", bind=f"{LOOPBACK if local else '*'}:{port}",
                  local=local, port=api_port(inv),
                  servers=[(n.name, n.internal_address) for n in inv.control_plane])


def runs_services(inv: Inventory) -> bool:
    """Whether prepare-nodes sets up load-balancer services (haproxy, keepalived)."""
    return inv.load_balancer in ("local", "haproxy-keepalived")


def needs_keepalived(inv: Inventory, node: Node) -> bool:
    return inv.load_balancer == "haproxy-keepalived" and node.is_control_plane


def priority(inv: Inventory, node: Node) -> int:
    """keepalived's priority: the init node's highest, then in inventory order."""
    return TOP_PRIORITY - inv.control_plane.index(node)


def keepalived_config(inv: Inventory, node: Node) -> str:
    vip = inv.cluster.vip
    assert vip is not None and inv.vip is not None  # schema: haproxy-keepalived has both
    return render("etc/keepalived/keepalived.conf.j2", node=node.name, script=CHECK_SCRIPT,
                  interface=vip.interface, router_id=vip.router_id,
                  priority=priority(inv, node), vip=inv.vip, prefix=vip.prefix)


def check_script(inv: Inventory, node: Node) -> str:
    return render("etc/keepalived/check_apiserver.sh.j2", haproxy_unit=PROXY_UNIT,
                  address=node.internal_address, api_port=api_port(inv))


def kube_vip_image(inv: Inventory) -> str:
    vip = inv.cluster.vip
    return (vip.image if vip and vip.image else None) or releases.KUBE_VIP_IMAGE


def kube_vip_kubeconfig(inv: Inventory, node: Node, initialised: bool) -> str:
    """super-admin.conf on the init node of a 1.29+ cluster until ``kubeadm init`` is done,
    else admin.conf (releases.Minor.super_admin)."""
    row = releases.release(inv.cluster.kubernetes_version)
    if row.super_admin and node == inv.init_node and not initialised:
        return SUPER_ADMIN_CONF
    return ADMIN_CONF


def kube_vip_manifest(inv: Inventory, node: Node, kubeconfig: str) -> str:
    vip = inv.cluster.vip
    assert vip is not None and inv.vip is not None  # schema: kube-vip has both
    return render("etc/kubernetes/manifests/kube-vip.yaml.j2", vip=inv.vip, node=node.name,
                  interface=vip.interface, image=kube_vip_image(inv), api_port=api_port(inv),
                  kubeconfig=kubeconfig)
