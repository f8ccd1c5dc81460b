"""kubeadm by release over SSH: 1.21.0's coredns path the mirror lacks (kubeadm#2501) and its
refusal of v1beta3; 1.22.17 accepts v1beta2 and v1beta3, defaults the kubelet's cgroupDriver to
systemd (so docker's cgroupfs now breaks init) and asks for its own images."""

from __future__ import annotations

import pytest
from test_k8s_lab import root

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]
REPO = "registry.aliyuncs.com/google_containers"
HINT = "To see the stack trace of this error execute with --v=5 or higher"
B3 = f"""apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
nodeRegistration: {{name: master1}}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.22.17
imageRepository: {REPO}
networking: {{podSubnet: 10.244.0.0/16}}
"""


def install(lab, node, version: str) -> None:
    repo = "".join(
        f"[{rid}]\nname={rid}\nbaseurl={lab.mirror_url}{rid}/\nenabled=1\ngpgcheck=0\n\n"
        for rid in ("base", "docker-ce", "kubernetes"))
    r = root(lab, node, f"cat > /etc/yum.repos.d/lab.repo <<'EOF'\n{repo}EOF\n"
             f"yum install -y -q docker-ce-19.03.15 docker-ce-cli-19.03.15 kubelet-{version} "
             f"kubeadm-{version} kubectl-{version} >/dev/null && swapoff -a && "
             "modprobe br_netfilter && sysctl -qw net.bridge.bridge-nf-call-iptables=1 "
             "net.ipv4.ip_forward=1 && systemctl enable --now docker kubelet")
    assert r.returncode == 0, r.stderr


def test_1_21_then_1_22(lab_factory):
    lab = lab_factory(1)
    if not lab.mirror_url:
        pytest.skip("the lab started without a mirror")
    node = lab.nodes[0]
    install(lab, node, "1.21.0")
    root(lab, node, "cat > /root/b3.yaml; sed s/v1beta3/v1beta2/ /root/b3.yaml > /root/b2.yaml",
         stdin=B3)

    # 1.21.0: the coredns path kubeadm#2501 asks a custom repository for is not there
    flags = f"--kubernetes-version v1.21.0 --image-repository {REPO}"
    r = root(lab, node, f"kubeadm config images list {flags}")
    assert r.stdout.split()[4:] == [f"{REPO}/pause:3.4.1", f"{REPO}/etcd:3.4.13-0",
                                    f"{REPO}/coredns/coredns:v1.8.0"]
    r = root(lab, node, f"kubeadm config images pull {flags}")
    assert r.returncode == 1 and f"[config/images] Pulled {REPO}/etcd:3.4.13-0\n" in r.stdout
    assert r.stderr == (f'failed to pull image "{REPO}/coredns/coredns:v1.8.0": output: Error '
                        f"response from daemon: pull access denied for {REPO}/coredns/coredns, "
                        "repository does not exist or may require 'docker login': denied: "
                        "requested access to the resource is denied\n, error: exit status 1\n"
                        + HINT + "\n")
    # ... and v1beta3 is unknown to it
    r = root(lab, node, "kubeadm init --config /root/b3.yaml")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ('no kind "InitConfiguration" is registered for version "kubeadm.k8s.io/'
                        'v1beta3" in scheme "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/'
                        'scheme/scheme.go:31"\n' + HINT + "\n")

    # 1.22.17 from the same mirror
    install(lab, node, "1.22.17")
    r = root(lab, node, "rpm -q kubeadm kubelet kubectl; kubeadm version -o short; "
             "kubectl version --client --short")
    assert r.stdout.split() == ["kubeadm-1.22.17-0.x86_64", "kubelet-1.22.17-0.x86_64",
                                "kubectl-1.22.17-0.x86_64", "v1.22.17", "Client", "Version:",
                                "v1.22.17"]
    r = root(lab, node, "kubeadm config images list --kubernetes-version v1.22.17")
    assert r.stdout.split() == [
        "registry.k8s.io/kube-apiserver:v1.22.17", "registry.k8s.io/kube-controller-manager:"
        "v1.22.17", "registry.k8s.io/kube-scheduler:v1.22.17", "registry.k8s.io/kube-proxy:"
        "v1.22.17", "registry.k8s.io/pause:3.5", "registry.k8s.io/etcd:3.5.6-0",
        "registry.k8s.io/coredns/coredns:v1.8.4"]
    for cfg in ("/root/b2.yaml", "/root/b3.yaml"):  # both API versions decode
        r = root(lab, node, f"kubeadm config images list --config {cfg}")
        assert r.stdout.split()[4:] == [f"{REPO}/pause:3.5", f"{REPO}/etcd:3.5.6-0",
                                        f"{REPO}/coredns:v1.8.4"], r.stderr
    r = root(lab, node, "kubeadm config images pull --config /root/b3.yaml")
    assert r.returncode == 0 and r.stdout.count("[config/images] Pulled ") == 7, r.stderr

    # kubeadm 1.22 sets cgroupDriver: systemd; docker still runs cgroupfs: init fails
    r = root(lab, node, "kubeadm init --config /root/b3.yaml")
    assert r.returncode == 1
    assert "[kubelet-check] It seems like the kubelet isn't running or healthy." in r.stdout
    assert r.stderr.startswith("error execution phase wait-control-plane: couldn't initialize a "
                               "Kubernetes cluster\n")
    r = root(lab, node, "grep cgroup /var/lib/kubelet/config.yaml /var/lib/kubelet/"
             "kubeadm-flags.env; journalctl -u kubelet --no-pager | tail -8")
    assert "/var/lib/kubelet/config.yaml:cgroupDriver: systemd\n" in r.stdout
    assert "--cgroup-driver" not in r.stdout
    assert ('failed to run Kubelet: misconfiguration: kubelet cgroup driver: "systemd" is '
            'different from docker cgroup driver: "cgroupfs"') in r.stdout, r.stdout

    daemon = '{"exec-opts": ["native.cgroupdriver=systemd"]}'
    r = root(lab, node, f"kubeadm reset -f >/dev/null && echo '{daemon}' > "
             "/etc/docker/daemon.json && systemctl restart docker && "
             "kubeadm init --config /root/b3.yaml")
    assert r.returncode == 0, r.stderr
    assert "Your Kubernetes control-plane has initialized successfully!" in r.stdout
    assert "IsDockerSystemdCheck" not in r.stdout
    r = root(lab, node, "cat /var/lib/kubelet/kubeadm-flags.env; kubectl --kubeconfig "
             "/etc/kubernetes/admin.conf get nodes; kubectl --kubeconfig "
             "/etc/kubernetes/admin.conf cluster-info | head -2")
    assert f"--pod-infra-container-image={REPO}/pause:3.5" in r.stdout
    assert "master1   NotReady   control-plane,master" in r.stdout and " v1.22.17" in r.stdout
    assert "CoreDNS is running at" in r.stdout
