"""The kubernetes stand-ins (docker, kubelet, kubeadm, kubectl) inside lab nodes over SSH."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

FLANNEL = """apiVersion: v1
kind: Namespace
metadata: {name: kube-flannel}
---
kind: ConfigMap
apiVersion: v1
metadata: {name: kube-flannel-cfg, namespace: kube-flannel}
data:
  net-conf.json: '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}'
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-flannel-ds, namespace: kube-flannel}
spec:
  template:
    spec:
      initContainers: [{name: install-cni, image: docker.io/flannel/flannel-cni-plugin:v1.1.2}]
      containers: [{name: kube-flannel, image: docker.io/flannel/flannel:v0.22.0}]
      volumes: [{name: flannel-cfg, configMap: {name: kube-flannel-cfg}}]
"""
INIT = """apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
nodeRegistration: {name: master1}
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v1.20.10
imageRepository: registry.aliyuncs.com/google_containers
networking: {podSubnet: 10.244.0.0/16}
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
"""


def ssh(lab, node, script: str, user: str = "lab", stdin: str | None = None):
    return subprocess.run(
        ["ssh", "-i", str(lab.key_file), "-o", f"UserKnownHostsFile={lab.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"{user}@{node.address}",
         script],
        capture_output=True, text=True, timeout=180, input=stdin,
    )


def root(lab, node, script: str, stdin: str | None = None):
    return ssh(lab, node, script, user="root", stdin=stdin)


def prepare(lab, node) -> None:
    repo = "".join(
        f"[{rid}]\nname={rid}\nbaseurl={lab.mirror_url}{rid}/\nenabled=1\ngpgcheck=0\n\n"
        for rid in ("base", "docker-ce", "kubernetes"))
    r = root(lab, node, f"cat > /etc/yum.repos.d/lab.repo <<'EOF'\n{repo}EOF\n"
             "yum install -y -q docker-ce-19.03.15 docker-ce-cli-19.03.15 kubelet-1.20.10 "
             "kubeadm-1.20.10 kubectl-1.20.10 >/dev/null && swapoff -a && "
             "modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1 "
             "net.ipv4.ip_forward=1 >/dev/null && systemctl enable --now docker kubelet")
    assert r.returncode == 0, r.stderr


IPVS_TOOLS = ("yum install -y -q ipvsadm ipset >/dev/null && "
              "modprobe -a ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh nf_conntrack_ipv4")


def wait_for(what, timeout: float = 30, step: float = 0.2):
    """``what()``'s first truthy answer, polled every ``step`` seconds for ``timeout``."""
    end = time.time() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.time() > end:
            raise AssertionError("timed out waiting")
        time.sleep(step)


def kubeadm_cluster(lab, init: str, flannel: str | None, ipvs: bool = False,
                    kubeconfig: bool = True) -> None:
    """The hand-built cluster the stand-in tests share: every node prepared (``prepare``, and
    the IPVS tools with ``ipvs``), ``kubeadm init --config`` with ``init`` on the first node
    (/root/init.yaml; root's ~/.kube/config with ``kubeconfig``), the others joined, then
    ``flannel`` applied (None: not)."""
    master = lab.nodes[0]
    for n in lab.nodes:
        prepare(lab, n)
        if ipvs:
            r = root(lab, n, IPVS_TOOLS)
            assert r.returncode == 0, r.stderr
    copy = (" && mkdir -p /root/.kube && cp /etc/kubernetes/admin.conf /root/.kube/config"
            if kubeconfig else "")
    r = root(lab, master, "cat > /root/init.yaml; kubeadm init --config /root/init.yaml "
             f">/dev/null{copy}", stdin=init)
    assert r.returncode == 0, r.stderr
    line = root(lab, master, "kubeadm token create --print-join-command").stdout
    for n in lab.nodes[1:]:
        r = root(lab, n, line.strip() + " >/dev/null")
        assert r.returncode == 0, r.stderr
    if flannel is not None:
        r = root(lab, master, "kubectl apply -f -", stdin=flannel)
        assert r.returncode == 0, r.stderr


def calls(lab, node, cmd: str) -> list[list[str]]:
    r = root(lab, node, "cat /var/lib/lab/calls.log")
    return [e["argv"] for e in map(json.loads, r.stdout.splitlines()) if e["cmd"] == cmd]


@pytest.mark.timeout(600)
def test_cluster_lifecycle(lab3):
    lab = lab3
    if not lab.mirror_url:
        pytest.skip("the lab started without a mirror")
    master, w1, w2 = lab.nodes
    for n in lab.nodes:
        prepare(lab, n)

    # docker: driver snapshot at (re)start, catalogue, the seed's coredns trap
    r = root(lab, master, "echo '{\"exec-opts\": [\"native.cgroupdriver=systemd\"]}' > "
             "/etc/docker/daemon.json; /usr/bin/docker info -f '{{.CgroupDriver}}'; "
             "systemctl restart docker; /usr/bin/docker info | grep 'Cgroup Driver'")
    assert r.stdout.split("\n")[0] == "cgroupfs", r.stdout + r.stderr
    assert "Cgroup Driver: systemd" in r.stdout
    r = root(lab, master, "/usr/bin/docker pull registry.aliyuncs.com/google_containers/coredns/"
             "coredns:v1.8.0")
    assert r.returncode == 1 and "repository does not exist" in r.stderr
    r = root(lab, master, "echo '{bad' > /etc/docker/daemon.json; systemctl restart docker; "
             "echo rc=$?; /usr/bin/docker info; echo rc=$?; echo '{}' > /etc/docker/daemon.json; "
             "systemctl restart docker")
    assert "rc=1" in r.stdout and "Cannot connect to the Docker daemon" in r.stdout

    # kubeadm init: refusals, then success
    r = ssh(lab, master, "kubeadm init")
    assert r.returncode == 1 and "[ERROR IsPrivilegedUser]: user is not running as root" in \
        r.stderr
    root(lab, master, f"cat > /root/init.yaml <<'EOF'\n{INIT}EOF")
    r = root(lab, master, "kubeadm init --config /root/init.yaml --pod-network-cidr 1.0.0.0/8")
    assert "can not mix '--config' with arguments [pod-network-cidr]" in r.stderr
    r = root(lab, master, "sed 's/v1beta2/v1beta3/' /root/init.yaml > /root/b3.yaml; "
             "kubeadm init --config /root/b3.yaml")
    assert 'no kind "InitConfiguration" is registered for version "kubeadm.k8s.io/v1beta3"' \
        in r.stderr
    root(lab, master, "swapon -a")
    r = root(lab, master, "kubeadm init --config /root/init.yaml")
    assert r.returncode == 1 and "\t[ERROR Swap]: running with swap on is not supported" in \
        r.stderr and not root(lab, master, "ls /etc/kubernetes/manifests").stdout.strip()
    root(lab, master, "swapoff -a")
    r = root(lab, master, "kubeadm init --config /root/init.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Your Kubernetes control-plane has initialized successfully!" in r.stdout
    assert "--discovery-token-ca-cert-hash sha256:" in r.stdout
    r = root(lab, master, "openssl x509 -pubkey -in /etc/kubernetes/pki/ca.crt | openssl rsa "
             "-pubin -outform der 2>/dev/null | sha256sum | cut -d' ' -f1; "
             "grep -c cgroupDriver /var/lib/kubelet/config.yaml")
    ca_hash = "sha256:" + r.stdout.split()[0]
    assert ca_hash in root(lab, master, "cat /var/lib/lab-cluster/state.json").stdout

    # kubectl: no kubeconfig, then admin.conf; NotReady until flannel
    r = ssh(lab, master, "kubectl get nodes")
    assert "The connection to the server localhost:8080 was refused" in r.stderr
    ssh(lab, master, "mkdir -p $HOME/.kube && sudo cp -i /etc/kubernetes/admin.conf "
        "$HOME/.kube/config && sudo chown $(id -u):$(id -g) $HOME/.kube/config")
    r = ssh(lab, master, "kubectl get nodes")
    assert "master1   NotReady   control-plane,master" in r.stdout, r.stderr
    r = ssh(lab, master, "kubectl apply -f -", stdin=FLANNEL)
    assert "daemonset.apps/kube-flannel-ds created" in r.stdout, r.stderr

    # join: token out of the command line via a JoinConfiguration; refusals
    token = root(lab, master, "kubeadm token create --ttl 10m").stdout.strip()
    join = (f"apiVersion: kubeadm.k8s.io/v1beta2\nkind: JoinConfiguration\ndiscovery:\n"
            f"  bootstrapToken:\n    apiServerEndpoint: {master.address}:6443\n"
            f"    token: {token}\n    caCertHashes: ['{ca_hash}']\n")
    bad = join.replace(ca_hash, "sha256:" + "0" * 64)
    r = root(lab, w1, "cat > /root/j.yaml; kubeadm join --config /root/j.yaml", stdin=bad)
    assert "none of the public keys" in r.stderr and r.returncode == 1
    for w in (w1, w2):
        r = root(lab, w, "umask 077; cat > /root/j.yaml; kubeadm join --config /root/j.yaml",
                 stdin=join)
        assert "This node has joined the cluster" in r.stdout, r.stderr
    r = root(lab, w1, "kubeadm join --config /root/j.yaml")
    assert "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]" in r.stderr
    r = ssh(lab, master, "kubectl wait --for=condition=Ready nodes --all --timeout=30s && "
            "kubectl get nodes -o wide && kubectl get pods -A")
    assert r.returncode == 0, r.stderr + ssh(lab, master, "kubectl describe nodes; sudo cat "
                                             "/var/lib/lab-cluster/nodes/*").stdout
    assert r.stdout.count(" Ready ") == 3 and "coredns" in r.stdout
    assert all(token not in " ".join(a) for a in calls(lab, w1, "kubeadm"))

    # an expired token is refused
    with (lab.cluster_dir / "state.json").open() as fh:
        data = json.load(fh)
    for t in data["tokens"]:
        t["expires"] = time.time() - 1
    (lab.cluster_dir / "state.json").write_text(json.dumps(data))
    root(lab, w2, "kubeadm reset -f")
    r = root(lab, w2, "kubeadm join --config /root/j.yaml")
    assert 'could not find a JWS signature in the cluster-info ConfigMap for token ID' in r.stderr

    # reset asks, keeps CNI config and ~/.kube; a stale kubeconfig meets the new CA
    r = root(lab, master, "kubeadm reset", stdin="n\n")
    assert "aborted reset operation" in r.stderr
    # flannel leaves its CNI config when the node reports as root (kubelet hook)
    r = root(lab, master, "systemctl restart kubelet; kubeadm reset -f; ls /etc/cni/net.d")
    assert "does not clean CNI configuration" in r.stdout and "10-flannel.conflist" in r.stdout
    r = root(lab, master, "kubeadm init --config /root/init.yaml")
    assert r.returncode == 0, r.stderr
    r = ssh(lab, master, "kubectl get nodes")
    assert "x509: certificate signed by unknown authority" in r.stderr
