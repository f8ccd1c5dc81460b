"""HA control planes end to end (issue "HA control planes, part 1"), one shared 5-node el9 lab
(Kubernetes 1.30.1 on containerd): three control planes and two workers, load_balancer local,
real etcd members. In file order: bad input changes nothing -> prepare-nodes -> init-master
(3 healthy members, the other control planes one at a time) -> join-workers (through their
haproxy) -> verify -> no-op re-runs -> a removal that would lose the quorum is refused -> reset
of one control plane (its member gone, 2 healthy) -> re-added with --limit after its upload
aged -> one control plane stopped dead, removed from a survivor, then replaced -> a full reset.
The certificate keys and tokens never show in any output, report, node file or command line.
"""

from __future__ import annotations

import json

import pytest
import yaml

from bootstrap.cluster import control_plane as C
from lab.inventory import control_planes, pin
from lab.pytest_plugin import module_lab

from . import Recorder, cluster_changes, members, unchanged, verify

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]
KEYS: list[str] = []


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    with module_lab(5, os="el9") as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        pin(the_lab.inventory_path, the_lab.mirror_url, "1.30.1", runtime="containerd",
            containerd="1.7.27")
        control_planes(the_lab.inventory_path, 3)
        rec = Recorder(the_lab, tmp_path_factory.mktemp("ha"))
        yield the_lab, rec


@pytest.fixture(autouse=True)
def keep_keys(monkeypatch):
    """Every certificate key the toolkit generates, to look for it in every output."""
    real = C.new_key

    def new_key() -> str:
        key = real()
        KEYS.append(key)
        return key

    monkeypatch.setattr(C, "new_key", new_key)


def sh(node, cmd: str):
    return node.run(cmd, timeout=120)


def test_01_an_external_endpoint_nobody_answers_is_refused_before_any_change(ha):
    the_lab, rec = ha
    data = yaml.safe_load(the_lab.inventory_path.read_text())
    saved = the_lab.inventory_path.read_text()
    data["cluster"].update(load_balancer="external", control_plane_endpoint="127.0.0.1:1")
    the_lab.inventory_path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        before = {n.name: len(n.calls()) for n in the_lab.nodes}
        run = rec("prepare-nodes")
        assert run.rc == 1, run.console
        assert "[ERROR ControlPlaneEndpoint]" in run.console
        assert "nothing accepts a TCP connection at 127.0.0.1:1" in run.console
        assert "nothing was changed" in run.console
        for node in the_lab.nodes:
            assert cluster_changes(node, before[node.name]) == [], node.name
    finally:
        the_lab.inventory_path.write_text(saved)


def test_02_prepare_init_join_verify(ha):
    the_lab, rec = ha
    run = rec("prepare-nodes")
    assert run.rc == 0, run.console
    workers = the_lab.nodes[3:]
    for node in workers:
        assert sh(node, "systemctl is-active haproxy").stdout.strip() == "active"
        assert "127.0.0.1 apiserver.cluster.local" in sh(node, "cat /etc/hosts").stdout
    run = rec("init-master")
    assert run.rc == 0, run.console
    _master, cp2, cp3 = the_lab.nodes[:3]
    for cp in (cp2, cp3):
        assert run.statuses(cp.name)["kubeadm-join"] == "changed", run.console
        assert f"{cp.address} apiserver.cluster.local" in sh(cp, "cat /etc/hosts").stdout
    console = run.console
    assert console.index(f"[{cp2.name}] kubeadm-join") < console.index(f"[{cp3.name}] kubeadm-join")
    assert members(the_lab) == {n.name: True for n in the_lab.nodes[:3]}
    run = rec("join-workers")
    assert run.rc == 0, run.console
    rc, out, data = verify(rec, the_lab.inventory_path.parent, only=(
        "Nodes,SystemPods,ProxyMode,Etcd,Endpoint"))
    assert rc == 0, out
    by = {c["check"]: c for c in data["checks"]}
    assert by["Etcd"]["observed"] == "3 members, all healthy"
    assert by["Endpoint"]["observed"] == "5 nodes reach apiserver.cluster.local:6443"


def test_03_second_runs_change_nothing(ha):
    _the_lab, rec = ha
    for command in ("prepare-nodes", "init-master", "join-workers"):
        unchanged(rec, command)


def test_04_a_removal_that_would_lose_the_quorum_is_refused(ha):
    the_lab, rec = ha
    cp3 = the_lab.nodes[2]
    cp3.stop()  # its member unhealthy: removing cp2 would leave 1 of 2 healthy
    try:
        run = rec("reset", yes=True, limit=the_lab.nodes[1].name)
        assert run.rc == 1, run.console
        assert "reset refused: removing" in run.console and "--allow-quorum-loss" in run.console
        assert members(the_lab)[the_lab.nodes[1].name] is True
    finally:
        cp3.start()


def test_05_reset_one_control_plane_then_add_it_back_after_its_upload_aged(ha):
    the_lab, rec = ha
    master, cp2, cp3 = the_lab.nodes[:3]
    run = rec("reset", yes=True, limit=cp3.name)
    assert run.rc == 0, run.console
    assert run.statuses(cp3.name)["etcd-member"] == "changed"
    assert members(the_lab) == {master.name: True, cp2.name: True}
    age_upload(the_lab)  # the first run's upload: joining with it now would fail
    run = rec("init-master", limit=cp3.name)
    assert run.rc == 0, run.console
    assert run.statuses(master.name)["upload-certs"] == "changed"
    assert members(the_lab) == {n.name: True for n in (master, cp2, cp3)}


def test_06_a_dead_control_plane_is_removed_from_a_survivor_then_replaced(ha):
    the_lab, rec = ha
    master, cp2, cp3 = the_lab.nodes[:3]
    cp2.stop()
    run = rec("reset", yes=True, limit=cp2.name, dead=True)
    assert run.rc == 0, run.console
    assert set(members(the_lab)) == {master.name, cp3.name}
    cp2.start()  # the machine comes back with its old state: reset it, then join it again
    run = rec("reset", yes=True, limit=cp2.name)
    assert run.rc == 0, run.console
    run = rec("init-master", limit=cp2.name)
    assert run.rc == 0, run.console
    assert members(the_lab) == {n.name: True for n in (master, cp2, cp3)}


def test_07_no_key_and_no_token_anywhere(ha):
    the_lab, rec = ha
    secrets = set(KEYS) | rec.tokens
    assert KEYS, "no certificate key was generated"
    text = rec.everything()
    for secret in secrets:
        assert secret not in text
    for node in the_lab.nodes:
        calls = json.dumps(node.calls())
        files = sh(node, "cat /etc/kubernetes/*.yaml /etc/kubernetes/*.conf "
                         "/var/log/k8s-bootstrap/* /etc/hosts 2>/dev/null").stdout
        assert "journal.log" in sh(node, "ls /var/log/k8s-bootstrap").stdout, node.name
        transient = ("/etc/kubernetes/k8s-bootstrap-init.yaml",
                     "/etc/kubernetes/k8s-bootstrap-upload-certs.yaml",
                     "/etc/kubernetes/kubeadm-join.yaml")
        left = sh(node, " || ".join(f"test -e {p}" for p in transient))
        assert left.returncode == 1, node.name  # none of the files that held a secret
        for secret in secrets:
            assert secret not in calls, node.name
            assert secret not in files, node.name


def test_08_a_full_reset(ha):
    the_lab, rec = ha
    run = rec("reset", yes=True)
    assert run.rc == 0, run.console
    for node in the_lab.nodes[:3]:
        assert sh(node, "test -e /etc/kubernetes/manifests/etcd.yaml").returncode == 1


def age_upload(the_lab) -> None:
    """The lab's knob: the kubeadm-certs upload expired (its time in the past, not the clock's:
    the nodes share the host's clock)."""
    path = the_lab.cluster_dir / "state.json"
    state = json.loads(path.read_text())
    assert state.get("kubeadm_certs"), "no upload to age"
    state["kubeadm_certs"]["expires"] = 1.0
    path.write_text(json.dumps(state))
