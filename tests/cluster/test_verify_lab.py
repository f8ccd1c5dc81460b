"""`invoke verify` against a lab cluster (the demo's default path: el8, Docker 20.10.8,
1.20.10), one shared cluster: the read-only checks pass on a healthy cluster and the report
lists each with expected and observed; then each way of breaking it makes the right check fail,
through `--only`, and the cluster is mended before the next case. (The workload checks:
test_verify_workloads_lab.py, on the same cluster: tests/cluster/conftest.py.)"""

from __future__ import annotations

import json

import pytest

from bootstrap.cluster.common import KUBECTL

from . import cluster_changes, restore_coredns, verify

pytestmark = pytest.mark.lab
READ_ONLY = "Nodes,SystemPods,ProxyMode,Etcd,Endpoint"


@pytest.fixture
def cluster(verify_cluster):
    return verify_cluster


@pytest.mark.timeout(300)
def test_a_healthy_cluster_passes_and_verify_changes_nothing(cluster, tmp_path):
    the_lab, rec = cluster
    before = {n.name: len(n.calls()) for n in the_lab.nodes}
    rc, out, data = verify(rec, tmp_path, only=READ_ONLY)
    assert rc == 0, out
    assert [(c["check"], c["ok"]) for c in data["checks"]] == [
        ("Nodes", True), ("SystemPods", True), ("ProxyMode", True), ("Etcd", True),
        ("Endpoint", True)], out
    by = {c["check"]: c for c in data["checks"]}
    assert by["Etcd"]["observed"] == "1 members, all healthy"  # the real etcd of the master
    assert by["Endpoint"]["observed"] == f"3 nodes reach {the_lab.nodes[0].address}:6443"
    assert [c["check"] for c in data["checks"]] == READ_ONLY.split(",")
    assert all(c["expected"] and c["observed"] for c in data["checks"])
    assert "verify: 5 checks, 5 passed" in out
    assert "[PASS] ProxyMode: expected mode ipvs; the kubernetes Service 10.96.0.1:443" in out
    for node in the_lab.nodes:
        assert cluster_changes(node, before[node.name]) == []


def test_dry_run_connects_to_nothing_and_bad_names_are_usage_errors(cluster, tmp_path):
    from bootstrap.errors import UsageError

    the_lab, rec = cluster
    before = {n.name: len(n.calls()) for n in the_lab.nodes}
    rc, out, _ = verify(rec, tmp_path, dry_run=True)
    assert rc == 0
    assert "would: on master1: $ timeout 60 kubectl --kubeconfig /etc/kubernetes/admin.conf " \
           "get nodes -o json 2>&1" in out
    assert "would: on node2: $ timeout 60 ipvsadm -S -n 2>&1" in out
    assert "name: pod-hook-exec" in out and "label node node1 k8s-bootstrap.io/verify-node" in out
    assert all(len(n.calls()) == before[n.name] for n in the_lab.nodes)
    with pytest.raises(UsageError):
        verify(rec, tmp_path, only="Nodez")


def sh(node, cmd: str):
    return node.run(cmd, timeout=120)


@pytest.mark.timeout(300)
def test_flannel_deleted_fails_system_pods(cluster, tmp_path):
    the_lab, rec = cluster
    master = the_lab.nodes[0]
    gone = sh(master, f"{KUBECTL} -n kube-system delete daemonset kube-flannel-ds")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    try:
        rc, out, data = verify(rec, tmp_path, only="SystemPods")
        assert rc == 1, out
        (check,) = data["checks"]
        assert check["check"] == "SystemPods" and not check["ok"]
        assert check["observed"].startswith("no flannel pod"), check
        assert check["next"] == "kubectl -n kube-system get pods -o wide -l app=flannel"
        assert "Traceback" not in out
    finally:
        assert rec("init-master").rc == 0  # init-master re-applies a missing flannel


@pytest.mark.timeout(300)
def test_a_node_not_ready_fails_nodes(cluster, tmp_path):
    the_lab, rec = cluster
    node2 = the_lab.nodes[2]
    assert sh(node2, "systemctl stop kubelet").returncode == 0
    try:
        rc, out, data = verify(rec, tmp_path, only="Nodes")
        assert rc == 1, out
        (check,) = data["checks"]
        assert check["observed"] == "node2 not Ready", check
        assert check["next"] == "kubectl describe node node2; on node2: journalctl -u kubelet"
        assert any(e.startswith("node2: Ready=Unknown") for e in check["evidence"]), check
    finally:
        assert sh(node2, "systemctl start kubelet").returncode == 0
    rc, out, _ = verify(rec, tmp_path, only=READ_ONLY)
    assert rc == 0, out


@pytest.mark.timeout(300)
def test_coredns_deleted_fails_system_pods(cluster, tmp_path):
    the_lab, rec = cluster
    master = the_lab.nodes[0]
    gone = sh(master, f"{KUBECTL} -n kube-system delete deployment coredns")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    try:
        rc, out, data = verify(rec, tmp_path, only="SystemPods")
        assert rc == 1, out
        (check,) = data["checks"]
        assert check["observed"] == "no coredns pod", check
        assert check["next"].startswith("kubectl -n kube-system get deployment coredns")
    finally:
        restore_coredns(the_lab)


@pytest.mark.timeout(300)
def test_kube_proxy_down_on_one_node_fails_system_pods_and_proxy_mode(cluster, tmp_path):
    the_lab, rec = cluster
    faults = the_lab.cluster_dir / "faults.json"
    faults.write_text(json.dumps({"kube_proxy_down": ["node1"]}))
    try:
        rc, out, data = verify(rec, tmp_path, only="ProxyMode")
        assert rc == 1, out
        (check,) = data["checks"]
        assert check["observed"] == "node1 has no 10.96.0.1:443 in its ipvs tables", check
        assert check["next"].endswith("then the logs of the one on node1")
    finally:
        faults.unlink()


def test_the_failover_check_s_container_query_on_docker(cluster):
    """ControlPlaneFailover waits on `runtimes.RUNTIMES[...].running` for kube-apiserver's
    container to go: on this Docker cluster, docker's name filter finds exactly that one."""
    from bootstrap import runtimes

    the_lab, _rec = cluster
    master = the_lab.nodes[0]
    cmd = runtimes.RUNTIMES["docker"].running.format(name="kube-apiserver")
    ids = master.run(cmd, timeout=60).stdout.split()
    every = master.run("docker ps -q", timeout=60).stdout.split()
    assert len(ids) == 1 and len(every) > 1 and ids[0] in every
    assert master.run("docker ps -q --filter name=k8s_nothing_", timeout=60).stdout == ""
    bad = master.run("docker ps --filter colour=red", timeout=60)
    assert bad.returncode == 1 and "Invalid filter 'colour'" in bad.stderr
