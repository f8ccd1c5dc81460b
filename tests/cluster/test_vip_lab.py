"""HA control planes, part 2, end to end (README "How nodes reach the API"): one shared 5-node
el9 lab (Kubernetes 1.30.1 on containerd), three control planes and two workers, the VIP
127.0.B.100 on eth0. In file order: bad inputs change nothing -> kube-vip kept on admin.conf
during init (the swap turned off) fails as in the real world (kube-vip#684) -> kube-vip:
prepare, init, join, verify with ControlPlaneFailover, no-op re-runs, reset of the VIP's holder
(the VIP moves, two healthy members) -> a full reset -> haproxy-keepalived on the same nodes:
prepare, init, join, verify with ControlPlaneFailover, a no-op prepare, reset of the holder.
The lab's VIP follows kube-vip's Lease or keepalived's VRRP among the running instances
(lab/CONTRACT.md "Virtual IPs")."""

from __future__ import annotations

import time

import pytest
import yaml

from bootstrap import api_endpoint as A
from bootstrap.inventory import load
from lab.inventory import control_planes, pin
from lab.pytest_plugin import module_lab

from . import Recorder, cluster_changes, members, unchanged, verify

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def vip(tmp_path_factory):
    with module_lab(5, os="el9") as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        pin(the_lab.inventory_path, the_lab.mirror_url, "1.30.1", runtime="containerd",
            containerd="1.7.27")
        control_planes(the_lab.inventory_path, 3, "kube-vip")
        rec = Recorder(the_lab, tmp_path_factory.mktemp("vip"))
        yield the_lab, rec


def sh(node, cmd: str):
    return node.run(cmd, timeout=120)


def address(the_lab) -> str:
    return load(str(the_lab.inventory_path)).vip or ""


def holders(the_lab) -> list[str]:
    """The control planes whose eth0 shows the VIP (as ControlPlaneFailover reads it)."""
    vip_address = address(the_lab)
    return [n.name for n in the_lab.nodes[:3]
            if f"inet {vip_address}/" in sh(n, "ip -4 -o addr show dev eth0").stdout]


def moved_from(the_lab, holder: str, within: float = 30) -> list[str]:
    """The VIP's holders once it left HOLDER (keepalived's check notices a gone API server
    after `fall` failures, `interval` apart: seconds, as on real nodes)."""
    deadline = time.monotonic() + within
    while True:
        now = holders(the_lab)
        if now != [holder] or time.monotonic() > deadline:
            return now
        time.sleep(1)


def edit(the_lab, **cluster) -> str:
    """Change cluster.* in the lab inventory; return the text before."""
    saved = the_lab.inventory_path.read_text()
    data = yaml.safe_load(saved)
    for key, value in cluster.items():
        if value is None:
            data["cluster"].pop(key, None)
        else:
            data["cluster"][key] = value
    the_lab.inventory_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return saved


def test_01_bad_vips_are_refused_before_any_change(vip):
    the_lab, rec = vip
    before = {n.name: len(n.calls()) for n in the_lab.nodes}
    # a schema error: nothing is even contacted
    saved = edit(the_lab, load_balancer="haproxy-keepalived",
                 control_plane_endpoint=address(the_lab) + ":6443")
    try:
        run = rec("prepare-nodes")
        assert run.rc == 2, run.console
        assert "kube-apiserver already binds *:6443" in run.console
    finally:
        the_lab.inventory_path.write_text(saved)
    # facts: eth0 is a /24, the inventory says /16 and puts the VIP outside eth0's subnet; and
    # a VIP that is the address of a machine the inventory does not list (the last node's)
    block = address(the_lab).rsplit(".", 2)[0]
    saved = edit(the_lab, vip={"interface": "eth0", "prefix": 16},
                 control_plane_endpoint=f"{block}.250.100")
    try:
        run = rec("prepare-nodes")
        assert run.rc == 1, run.console
        assert "[ERROR VirtualIP]" in run.console
        assert f"{block}.250.100 is not in the subnet of eth0" in run.console
    finally:
        the_lab.inventory_path.write_text(saved)
    data = yaml.safe_load(the_lab.inventory_path.read_text())
    last = data["nodes"].pop()
    saved = the_lab.inventory_path.read_text()
    data["cluster"]["control_plane_endpoint"] = last["address"]
    the_lab.inventory_path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        run = rec("prepare-nodes")
        assert run.rc == 1, run.console
        assert f"something already answers for {last['address']}" in run.console
        assert "nothing was changed" in run.console
    finally:
        the_lab.inventory_path.write_text(saved)
    for node in the_lab.nodes:
        assert cluster_changes(node, before[node.name]) == [], node.name


def test_02_kube_vip_on_admin_conf_during_init_fails_as_in_the_real_world(vip, monkeypatch):
    the_lab, rec = vip
    run = rec("prepare-nodes")
    assert run.rc == 0, run.console
    monkeypatch.setattr(A, "kube_vip_kubeconfig", lambda inv, node, initialised: A.ADMIN_CONF)
    run = rec("init-master", timeout=30)
    assert run.rc == 1, run.console
    assert run.statuses(the_lab.nodes[0].name)["kubeadm-init"] == "failed", run.console
    assert holders(the_lab) == []  # kube-vip never took its Lease: forbidden
    monkeypatch.undo()
    run = rec("reset", yes=True)
    assert run.rc == 0, run.console


def test_03_kube_vip_prepare_init_join_verify_with_failover(vip):
    the_lab, rec = vip
    master = the_lab.nodes[0]
    run = rec("init-master")
    assert run.rc == 0, run.console
    statuses = run.statuses(master.name)
    assert statuses["kube-vip"] == statuses["kube-vip-admin"] == "changed", run.console
    for node in the_lab.nodes[:3]:
        text = sh(node, f"cat {A.KUBE_VIP_MANIFEST}").stdout
        assert f"path: {A.ADMIN_CONF}" in text, node.name
    assert holders(the_lab) == [master.name]
    run = rec("join-workers")
    assert run.rc == 0, run.console
    rc, out, data = verify(rec, the_lab.inventory_path.parent,
                           only="Nodes,SystemPods,Etcd,Endpoint,ControlPlaneFailover")
    assert rc == 0, out
    by = {c["check"]: c for c in data["checks"]}
    assert by["Endpoint"]["observed"] == f"5 nodes reach {address(the_lab)}:6443"
    evidence = "\n".join(by["ControlPlaneFailover"]["evidence"])
    assert f"{master.name} holds {address(the_lab)}" in evidence
    assert len(holders(the_lab)) == 1 and holders(the_lab) != [master.name]  # it moved for good


def test_04_second_runs_change_nothing(vip):
    _the_lab, rec = vip
    for command in ("prepare-nodes", "init-master", "join-workers"):
        unchanged(rec, command)


def test_05_reset_of_the_vip_holder_moves_the_vip(vip):
    the_lab, rec = vip
    (holder,) = holders(the_lab)
    run = rec("reset", yes=True, limit=holder)
    assert run.rc == 0, run.console
    now = moved_from(the_lab, holder)
    assert len(now) == 1 and now != [holder], now
    assert list(members(the_lab).values()) == [True, True]
    run = rec("reset", yes=True)
    assert run.rc == 0, run.console


def test_06_haproxy_keepalived_prepare_init_join_verify_with_failover(vip):
    the_lab, rec = vip
    edit(the_lab, load_balancer="haproxy-keepalived",
         control_plane_endpoint=address(the_lab))
    run = rec("prepare-nodes")
    assert run.rc == 0, run.console
    for node in the_lab.nodes[:3]:
        assert sh(node, "systemctl is-active haproxy keepalived").stdout.split() == [
            "active", "active"], node.name
    assert holders(the_lab) == []  # no API server yet: every check fails
    run = rec("init-master")
    assert run.rc == 0, run.console
    assert holders(the_lab) == [the_lab.nodes[0].name]  # the highest priority
    run = rec("join-workers")
    assert run.rc == 0, run.console
    rc, out, data = verify(rec, the_lab.inventory_path.parent,
                           only="Nodes,Etcd,Endpoint,ControlPlaneFailover")
    assert rc == 0, out
    by = {c["check"]: c for c in data["checks"]}
    assert by["Endpoint"]["observed"] == f"5 nodes reach {address(the_lab)}:8443"
    for command in ("prepare-nodes", "init-master", "join-workers"):
        unchanged(rec, command)


def test_07_haproxy_keepalived_reset_of_the_holder_moves_the_vip(vip):
    """keepalived preempts: the init node (the highest priority) holds the VIP again after the
    failover. reset never takes the init node, so another control plane is listed first, as
    the README says to remove the init node."""
    the_lab, rec = vip
    (holder,) = holders(the_lab)
    assert holder == the_lab.nodes[0].name
    data = yaml.safe_load(the_lab.inventory_path.read_text())
    data["nodes"][0], data["nodes"][1] = data["nodes"][1], data["nodes"][0]
    the_lab.inventory_path.write_text(yaml.safe_dump(data, sort_keys=False))
    run = rec("reset", yes=True, limit=holder)
    assert run.rc == 0, run.console
    now = moved_from(the_lab, holder)
    assert len(now) == 1 and now != [holder], now
    assert list(members(the_lab).values()) == [True, True]
