"""kube-vip v1.0.3 static pods and lab VIPs (lab/k8s/STATE.md "Virtual IPs"; k8s/kubevip.py,
k8s/vip.py, apiserver._dial, the ip/arping/curl stand-ins). One 3-node el7 lab on kubeadm 1.30
(containerd), driven by hand as the product would: master1 and node1 control planes, the
endpoint is the VIP 127.0.B.100:6443; node2 only runs a kubelet (bad manifests).

The tests run in file order and build on one another (one cluster)."""

from __future__ import annotations

import json

import pytest
from test_k8s_ha import SOCK, TOKEN, install_kubernetes
from test_k8s_lab import root

from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]
ADMIN = "KUBECONFIG=/etc/kubernetes/admin.conf"
IMAGE = "ghcr.io/kube-vip/kube-vip:v1.0.3"


def manifest(vip: str, kubeconfig: str = "/etc/kubernetes/admin.conf", iface: str = "eth0",
             lease: str = "plndr-cp-lock", extra: dict | None = None) -> str:
    """kubespray's kube-vip.manifest.j2 (ARP, leader election, control plane)."""
    env = {"vip_arp": "true", "port": "6443", "vip_interface": iface, "vip_subnet": "32",
           "dns_mode": "first", "cp_enable": "true", "cp_namespace": "kube-system",
           "vip_leaderelection": "true", "vip_leasename": lease, "vip_leaseduration": "5",
           "vip_renewdeadline": "3", "vip_retryperiod": "1", "address": vip, **(extra or {})}
    items = [{"name": k, "value": v} for k, v in env.items()]
    items.insert(2, {"name": "vip_nodename",
                     "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "kube-vip", "namespace": "kube-system"},
           "spec": {"containers": [{
               "name": "kube-vip", "image": IMAGE, "args": ["manager"], "env": items,
               "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
               "volumeMounts": [{"mountPath": "/etc/kubernetes/admin.conf",
                                 "name": "kubeconfig"}]}],
               "hostAliases": [{"hostnames": ["kubernetes"], "ip": "127.0.0.1"}],
               "hostNetwork": True,
               "volumes": [{"name": "kubeconfig", "hostPath": {"path": kubeconfig}}]}}
    return json.dumps(pod)  # JSON is YAML


def put(lab, node, text: str) -> None:
    r = root(lab, node, "mkdir -p /etc/kubernetes/manifests && cat > "
                        "/etc/kubernetes/manifests/kube-vip.yaml && /usr/bin/kubelet "
                        "--lab-refresh >/dev/null", stdin=text)
    assert r.returncode == 0, r.stderr


def init_config(master, vip: str) -> str:
    return (f"apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n"
            f"bootstrapTokens: [{{token: {TOKEN}, ttl: 1h0m0s}}]\n"
            f"certificateKey: {'ab' * 32}\n"
            f"localAPIEndpoint: {{advertiseAddress: {master.address}, bindPort: 6443}}\n"
            f"nodeRegistration: {{name: {master.name}, criSocket: {SOCK}}}\n---\n"
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n"
            f"kubernetesVersion: v1.30.1\ncontrolPlaneEndpoint: {vip}:6443\n"
            "networking: {podSubnet: 10.244.0.0/16}\n---\n"
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
            "cgroupDriver: cgroupfs\n")


def log(lab, node) -> str:
    path = lab.cluster_dir / "vip" / f"{node.name}.kube-vip.log"
    return path.read_text() if path.exists() else ""


def eth0(lab, node) -> str:
    r = root(lab, node, "ip -4 -o addr show dev eth0")
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def lab():
    with module_lab(3) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        install_kubernetes(the_lab, the_lab.nodes)
        yield the_lab


@pytest.fixture(scope="module")
def vip(lab) -> str:
    return lab.nodes[0].address.rsplit(".", 1)[0] + ".100"


def test_bad_env_is_refused(lab):
    """kube-vip exits at once with its real log line: an unknown interface, a bad number."""
    node = lab.nodes[2]
    put(lab, node, manifest("127.0.0.250", iface="eth9"))
    assert ('ERROR checking interface err="eth9 is not valid interface, reason: get eth9 '
            'failed, error: Link not found"') in log(lab, node)
    put(lab, node, manifest("127.0.0.250", extra={"vip_leaseduration": "5s"}))
    assert ('ERROR parsing environment err="strconv.ParseInt: parsing \\"5s\\": invalid '
            'syntax"') in log(lab, node)
    rec = json.loads((lab.cluster_dir / "vip" / f"{node.name}.kubevip.json").read_text())
    assert rec["running"] is False
    r = root(lab, node, "rm /etc/kubernetes/manifests/kube-vip.yaml && kubelet --lab-refresh")
    assert r.returncode == 0, r.stderr


def test_init_through_the_vip(lab, vip):
    """kube-vip with super-admin.conf (1.29+; admin.conf before H1's kubeadm) on the init node
    takes the VIP during init; the holder's ip shows it, arping -D sees it, curl answers."""
    master, cp2, other = lab.nodes
    has_super = root(lab, master, "grep -q super-admin.conf /usr/bin/kubeadm").returncode == 0
    conf = "/etc/kubernetes/super-admin.conf" if has_super else "/etc/kubernetes/admin.conf"
    put(lab, master, manifest(vip, conf))
    r = root(lab, master, "cat > /root/init.yaml && kubeadm init --config /root/init.yaml "
                          "--upload-certs --skip-token-print", stdin=init_config(master, vip))
    assert r.returncode == 0, r.stderr
    assert f"inet {vip}/32 scope global eth0" in eth0(lab, master)
    assert vip not in eth0(lab, cp2)
    assert json.loads((lab.cluster_dir / "state.json").read_text())["leases"][
        "kube-system/plndr-cp-lock"]["holder"] == master.name
    r = root(lab, other, f"arping -D -I eth0 -c 1 {vip}")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith(f"ARPING {vip} from 0.0.0.0 eth0\nUnicast reply from {vip} [")
    assert r.stdout.endswith("Sent 1 probes (1 broadcast(s))\nReceived 1 response(s)\n")
    free = vip.rsplit(".", 1)[0] + ".150"
    r = root(lab, other, f"arping -D -I eth0 -c 1 {free}")
    assert (r.returncode, r.stdout) == (0, f"ARPING {free} from 0.0.0.0 eth0\nSent 1 probes "
                                           "(1 broadcast(s))\nReceived 0 response(s)\n")
    r = root(lab, other, "arping -D -I eth9 -c 1 " + vip)
    assert (r.returncode, r.stderr) == (2, "arping: Device eth9 not available.\n")
    r = root(lab, other, f"curl -sk https://{vip}:6443/readyz")
    assert (r.returncode, r.stdout) == (0, "ok"), r.stderr
    r = root(lab, other, f"curl -s https://{vip}:6443/readyz")
    assert r.returncode == 60
    r = root(lab, other, f"curl -sS https://{free}:6443/readyz")
    assert (r.returncode, r.stderr) == (7, f"curl: (7) Failed to connect to {free} port 6443: "
                                           "No route to host\n")
    r = root(lab, master, f"{ADMIN} kubectl get --raw /readyz")
    assert (r.returncode, r.stdout) == (0, "ok"), r.stderr
    if has_super:  # init is over: the product mounts admin.conf again
        put(lab, master, manifest(vip))


def test_forbidden_identity_never_holds(lab, vip):
    """A joined control plane whose kube-vip's identity RBAC refuses leases (kubeadm 1.29+'s
    admin.conf group kubeadm:cluster-admins before init bound it) logs client-go's line with
    the API's text and never holds its VIP."""
    master, cp2, other = lab.nodes
    ca_hash = json.loads((lab.cluster_dir / "state.json").read_text())["ca_hash"]
    r = root(lab, cp2, f"kubeadm join {vip}:6443 --token {TOKEN} --discovery-token-ca-cert-hash "
                       f"{ca_hash} --control-plane --certificate-key {'ab' * 32} "
                       f"--cri-socket {SOCK} --apiserver-advertise-address {cp2.address}")
    assert r.returncode == 0, r.stderr
    boss = ("KUBECONFIG=/etc/kubernetes/super-admin.conf" if root(
        lab, master, "test -f /etc/kubernetes/super-admin.conf").returncode == 0 else ADMIN)
    bound = root(lab, master, f"{boss} kubectl get clusterrolebinding kubeadm:cluster-admins"
                 ).returncode == 0
    r = root(lab, master, f"{boss} kubectl delete clusterrolebinding kubeadm:cluster-admins "
                          ">/dev/null 2>&1; kubeadm kubeconfig user "
                          "--config /root/init.yaml --client-name kubernetes-admin "
                          "--org kubeadm:cluster-admins")
    assert r.returncode == 0, r.stderr
    r = root(lab, cp2, "cat > /etc/kubernetes/plain-admin.conf", stdin=r.stdout)
    other_vip = vip.rsplit(".", 1)[0] + ".101"
    put(lab, cp2, manifest(other_vip, "/etc/kubernetes/plain-admin.conf", lease="other-lock"))
    assert other_vip not in eth0(lab, cp2)
    assert ('"Error retrieving lease lock" err="leases.coordination.k8s.io \\"other-lock\\" is '
            'forbidden: User \\"kubernetes-admin\\" cannot get resource \\"leases\\" in API '
            'group \\"coordination.k8s.io\\" in the namespace \\"kube-system\\"" '
            'lock="kube-system/other-lock"') in log(lab, cp2)
    assert root(lab, other, f"arping -q -D -I eth0 -c 1 {other_vip}").returncode == 0
    if bound:  # as kubeadm init left it (kubeadm 1.29+: admin.conf's group is bound)
        # master's own kube-vip (admin.conf) lost the lease with the binding: not the VIP
        r = root(lab, master, f"{boss} kubectl -s https://{master.address}:6443 create "
                              "clusterrolebinding kubeadm:cluster-admins "
                              "--clusterrole=cluster-admin --group=kubeadm:cluster-admins")
        assert r.returncode == 0, r.stderr


def test_the_vip_moves(lab, vip):
    """The holder's API server goes (kubeadm reset): the other control plane running kube-vip
    takes the lease and the VIP; clients keep reaching the API through it."""
    master, cp2, other = lab.nodes
    put(lab, cp2, manifest(vip))
    assert vip not in eth0(lab, cp2)  # the lease is sticky: master keeps it
    r = root(lab, master, "kubeadm reset -f")
    assert r.returncode == 0, r.stderr
    st = json.loads((lab.cluster_dir / "state.json").read_text())
    rec = (lab.cluster_dir / "vip" / f"{cp2.name}.kubevip.json").read_text()
    assert f"inet {vip}/32 scope global eth0" in eth0(lab, cp2), (
        st.get("apiservers"), st.get("leases"), rec, log(lab, cp2))
    assert vip not in eth0(lab, master)
    r = root(lab, other, f"curl -sk https://{vip}:6443/readyz")
    assert (r.returncode, r.stdout) == (0, "ok"), r.stderr
    assert json.loads((lab.cluster_dir / "state.json").read_text())["leases"][
        "kube-system/plndr-cp-lock"]["holder"] == cp2.name
