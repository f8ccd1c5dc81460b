"""kubeadm 1.29+'s kubeconfigs in the lab (kubernetes PR #121305; lab/k8s/STATE.md "Identities
and RBAC"): admin.conf is kubernetes-admin in kubeadm:cluster-admins, bound to cluster-admin by
the ClusterRoleBinding `kubeadm init` creates once the API answers at the controlPlaneEndpoint;
super-admin.conf (kubernetes-super-admin, system:masters) is written by init only; reset deletes
it. Before 1.29 (1.28.2) admin.conf stays system:masters. An init whose endpoint nothing serves
fails in wait-control-plane with the release's text and leaves what a real failed init leaves,
which `kubeadm reset` cleans.

One 2-node el7 lab on containerd: master1 runs kubeadm 1.30.1, node1 1.28.2 (one cluster at a
time: the lab has one cluster state). time_scale 0.2 (the endpoint wait: 1 s)."""

from __future__ import annotations

import json

import pytest
from test_k8s_ha import install_kubernetes
from test_k8s_lab import root

from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]
SOCK = "unix:///var/run/containerd/containerd.sock"
ADMIN = "/etc/kubernetes/admin.conf"
SUPER = "/etc/kubernetes/super-admin.conf"
VERSIONS = {0: "1.30.1", 1: "1.28.2"}


def init_config(node, version: str, endpoint: str = "") -> str:
    api = "v1beta3"
    cpe = f"controlPlaneEndpoint: {endpoint}\n" if endpoint else ""
    return (f"apiVersion: kubeadm.k8s.io/{api}\nkind: InitConfiguration\n"
            f"localAPIEndpoint: {{advertiseAddress: {node.address}, bindPort: 6443}}\n"
            f"nodeRegistration: {{name: {node.name}, criSocket: {SOCK}}}\n---\n"
            f"apiVersion: kubeadm.k8s.io/{api}\nkind: ClusterConfiguration\n"
            f"kubernetesVersion: v{version}\n{cpe}"
            "---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
            "cgroupDriver: cgroupfs\n")


def init(lab, node, endpoint: str = ""):
    cfg = init_config(node, VERSIONS[lab.nodes.index(node)], endpoint)
    return root(lab, node, "cat > /root/init.yaml && kubeadm init --config /root/init.yaml",
                stdin=cfg)


def subject(lab, node, path: str) -> str:
    """The client certificate's subject of a kubeconfig, as openssl prints it (RFC 2253)."""
    r = root(lab, node, f"grep client-certificate-data {path} | awk '{{print $2}}' | base64 -d "
                        "| openssl x509 -noout -subject -nameopt RFC2253")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().removeprefix("subject=")


@pytest.fixture(scope="module")
def lab():
    with module_lab(2) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        (the_lab.cluster_dir / "time_scale").write_text("0.2")

        for node in the_lab.nodes:  # each its own release
            install_kubernetes(the_lab, [node], VERSIONS[the_lab.nodes.index(node)])
        yield the_lab


def test_1_30_admin_conf_group_and_super_admin_conf(lab):
    master = lab.nodes[0]
    r = init(lab, master)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[kubeconfig] Writing")]
    assert lines == [f'[kubeconfig] Writing "{f}" kubeconfig file' for f in (
        "admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf",
        "scheduler.conf")]
    assert "[api-check] Waiting for a healthy API server. This can take up to 4m0s" in r.stdout
    assert subject(lab, master, ADMIN) == "CN=kubernetes-admin,O=kubeadm:cluster-admins"
    assert subject(lab, master, SUPER) == "CN=kubernetes-super-admin,O=system:masters"
    assert root(lab, master, f"stat -c %a {SUPER}").stdout.strip() == "600"
    # the binding kubeadm created once the API answered; admin.conf may do anything through it
    r = root(lab, master, f"kubectl --kubeconfig {ADMIN} get clusterrolebinding "
                          "kubeadm:cluster-admins -o json")
    assert r.returncode == 0, r.stderr
    crb = json.loads(r.stdout)
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": "cluster-admin"}
    assert crb["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                "name": "kubeadm:cluster-admins"}]
    assert root(lab, master, f"kubectl --kubeconfig {ADMIN} get nodes").returncode == 0


def test_admin_conf_forbidden_once_the_binding_is_deleted(lab):
    master = lab.nodes[0]
    r = root(lab, master, f"kubectl --kubeconfig {SUPER} delete clusterrolebinding "
                          "kubeadm:cluster-admins")
    assert r.returncode == 0, r.stderr
    r = root(lab, master, f"kubectl --kubeconfig {ADMIN} get nodes")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        'Error from server (Forbidden): nodes is forbidden: User "kubernetes-admin" cannot '
        'list resource "nodes" in API group "" at the cluster scope')
    # super-admin.conf (system:masters) still may
    assert root(lab, master, f"kubectl --kubeconfig {SUPER} get nodes").returncode == 0


def test_1_30_reset_deletes_super_admin_conf(lab):
    master = lab.nodes[0]
    r = root(lab, master, "kubeadm reset -f")
    assert r.returncode == 0, r.stderr
    assert ("[reset] Deleting files: [/etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf "
            "/etc/kubernetes/kubelet.conf /etc/kubernetes/bootstrap-kubelet.conf "
            "/etc/kubernetes/controller-manager.conf /etc/kubernetes/scheduler.conf]") in r.stdout
    assert root(lab, master, f"test -e {SUPER}").returncode == 1


def test_1_30_init_fails_when_the_endpoint_does_not_answer(lab):
    master = lab.nodes[0]
    block = master.address.rsplit(".", 1)[0]
    r = init(lab, master, f"{block}.99:6443")  # a loopback address nothing serves
    assert r.returncode == 1, r.stdout
    out = r.stdout.splitlines()
    i = out.index("[api-check] The API server is not healthy after 4m0.000106119s")
    assert out[i + 1:i + 4] == ["", "Unfortunately, an error has occurred:",
                                "\tcontext deadline exceeded"]
    assert out[-3:] == [
        f"\t- 'crictl --runtime-endpoint {SOCK} ps -a | grep kube | grep -v pause'",
        "\tOnce you have found the failing container, you can inspect its logs with:",
        f"\t- 'crictl --runtime-endpoint {SOCK} logs CONTAINERID'"]
    assert r.stderr.startswith("error execution phase wait-control-plane: could not "
                               "initialize a Kubernetes cluster\n")
    # what a failed init leaves: manifests, kubeconfigs, a running kubelet, the records
    r = root(lab, master, "ls /etc/kubernetes/manifests; systemctl is-active kubelet")
    assert r.stdout.split() == ["etcd.yaml", "kube-apiserver.yaml",
                                "kube-controller-manager.yaml", "kube-scheduler.yaml", "active"]
    data = json.loads((lab.cluster_dir / "state.json").read_text())
    assert data["apiservers"][master.name]["running"] is True
    assert "clusterrolebinding.rbac.authorization.k8s.io//kubeadm:cluster-admins" \
        not in data["objects"]
    r = root(lab, master, "kubeadm reset -f")
    assert r.returncode == 0, r.stderr
    assert "Unable to fetch the kubeadm-config ConfigMap from cluster" in r.stderr
    r = root(lab, master, "ls -A /etc/kubernetes/manifests /etc/kubernetes/pki; "
                          "ls /etc/kubernetes")
    assert r.stdout.split() == ["/etc/kubernetes/manifests:", "/etc/kubernetes/pki:",
                                "manifests", "pki"]
    data = json.loads((lab.cluster_dir / "state.json").read_text())
    assert data["apiservers"][master.name]["running"] is False


def test_1_28_admin_conf_is_system_masters_and_no_super_admin(lab):
    node = lab.nodes[1]
    r = init(lab, node)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "super-admin.conf" not in r.stdout
    assert "[apiclient] All control plane components are healthy after" in r.stdout
    assert subject(lab, node, ADMIN) == "CN=kubernetes-admin,O=system:masters"
    assert root(lab, node, f"test -e {SUPER}").returncode == 1
    r = root(lab, node, f"kubectl --kubeconfig {ADMIN} get clusterrolebinding "
                        "kubeadm:cluster-admins")
    assert r.returncode == 1
    assert r.stderr.strip() == ('Error from server (NotFound): clusterrolebindings.rbac.'
                                'authorization.k8s.io "kubeadm:cluster-admins" not found')
    assert root(lab, node, f"kubectl --kubeconfig {ADMIN} get nodes").returncode == 0
    r = root(lab, node, "kubeadm reset -f")
    assert r.returncode == 0, r.stderr
    assert ("[reset] Deleting files: [/etc/kubernetes/admin.conf /etc/kubernetes/kubelet.conf "
            "/etc/kubernetes/bootstrap-kubelet.conf /etc/kubernetes/controller-manager.conf "
            "/etc/kubernetes/scheduler.conf]") in r.stdout


def test_1_28_init_fails_when_the_endpoint_does_not_answer(lab):
    node = lab.nodes[1]
    block = node.address.rsplit(".", 1)[0]
    r = init(lab, node, f"{block}.99:6443")
    assert r.returncode == 1, r.stdout
    out = r.stdout.splitlines()
    i = out.index("[kubelet-check] Initial timeout of 40s passed.")
    assert out[i + 1:i + 4] == ["", "\tUnfortunately, an error has occurred:",
                                "\t\ttimed out waiting for the condition"]
    assert (f"\t\t- 'crictl --runtime-endpoint {SOCK} ps -a | grep kube | grep -v pause'"
            in out)
    assert r.stderr.startswith("error execution phase wait-control-plane: couldn't "
                               "initialize a Kubernetes cluster\n")
    assert root(lab, node, "kubeadm reset -f").returncode == 0
    assert root(lab, node, "ls -A /etc/kubernetes/manifests").stdout == ""
