"""A static pod stops when its manifest leaves /etc/kubernetes/manifests and comes back when it
returns (the kubelet's file source; lab/k8s/STATE.md "Static pods"): the API server's record
stops answering (connection refused), its container leaves `crictl ps` (still in `-a`, exited),
etcd is unaffected; back, a new container runs and the API answers. The etcd manifest stops and
restarts the real member. One 1-node el7 lab, kubeadm 1.30.1 on containerd."""

from __future__ import annotations

import pytest
from test_k8s_ha import install_kubernetes
from test_k8s_lab import root, wait_for
from test_k8s_superadmin import SOCK, init_config

from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]
ADMIN = "--kubeconfig /etc/kubernetes/admin.conf"
M = "/etc/kubernetes/manifests"


@pytest.fixture(scope="module")
def lab():
    with module_lab(1) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        node = the_lab.nodes[0]
        install_kubernetes(the_lab, [node])
        r = root(the_lab, node, "cat > /root/init.yaml && kubeadm init --config /root/init.yaml",
                 stdin=init_config(node, "1.30.1"))
        assert r.returncode == 0, r.stdout + r.stderr
        yield the_lab


def ps(lab, *flags: str) -> dict[str, tuple[str, str]]:
    """crictl ps [FLAGS]: {NAME: (CONTAINER, STATE)} of the newest container of each name."""
    r = root(lab, lab.nodes[0], f"crictl -r {SOCK} ps " + " ".join(flags))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT",
                                "POD", "ID", "POD"]
    out: dict[str, tuple[str, str]] = {}
    for ln in lines[1:]:
        f = ln.split()
        out.setdefault(f[-4], (f[0], f[-5]))
    return out


def get_nodes(lab):
    return root(lab, lab.nodes[0], f"kubectl {ADMIN} get nodes")


def test_the_static_pods_run(lab):
    running = ps(lab)
    assert sorted(running) == ["etcd", "kube-apiserver", "kube-controller-manager",
                               "kube-scheduler"]
    assert {s for _, s in running.values()} == {"Running"}
    assert get_nodes(lab).returncode == 0


def test_apiserver_manifest_out_then_back(lab):
    node = lab.nodes[0]
    before = ps(lab)
    assert root(lab, node, f"mv {M}/kube-apiserver.yaml /root/").returncode == 0
    wait_for(lambda: "kube-apiserver" not in ps(lab), timeout=10)
    assert ps(lab, "-a")["kube-apiserver"] == (before["kube-apiserver"][0], "Exited")
    assert ps(lab)["etcd"] == before["etcd"]  # etcd unaffected
    r = get_nodes(lab)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"The connection to the server {node.address}:6443 was refused "
                                "- did you specify the right host or port?")
    assert root(lab, node, f"mv /root/kube-apiserver.yaml {M}/").returncode == 0
    again = wait_for(lambda: ps(lab).get("kube-apiserver"), timeout=10)
    assert again[1] == "Running" and again[0] != before["kube-apiserver"][0]
    assert ps(lab, "-a", "--name", "kube-apiserver") and get_nodes(lab).returncode == 0


def test_etcd_manifest_out_then_back(lab):
    node = lab.nodes[0]
    assert root(lab, node, f"mv {M}/etcd.yaml /root/").returncode == 0
    wait_for(lambda: "etcd" not in ps(lab), timeout=10)
    r = root(lab, node, "pgrep -x etcd")
    assert r.returncode == 1, r.stdout  # the member was stopped
    # the API server's etcd is gone: it does not answer
    assert wait_for(lambda: get_nodes(lab).returncode == 1, timeout=10)
    assert root(lab, node, f"mv /root/etcd.yaml {M}/").returncode == 0
    wait_for(lambda: ps(lab).get("etcd"), timeout=10)
    assert root(lab, node, "pgrep -x etcd").returncode == 0
    wait_for(lambda: get_nodes(lab).returncode == 0, timeout=20)


def test_reset_removes_the_containers(lab):
    node = lab.nodes[0]
    assert root(lab, node, "kubeadm reset -f").returncode == 0
    assert ps(lab, "-a") == {}
