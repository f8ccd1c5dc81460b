"""Stand-ins inside real lab nodes, over real SSH, as the toolkit uses them (user `lab` with sudo,
and root): yum from the lab mirror, payload commands, mutating calls, and a reboot."""

from __future__ import annotations

import json
import subprocess

import pytest


def ssh(lab, node, script: str, user: str = "lab") -> subprocess.CompletedProcess:
    return lab.ssh(node, script, user, timeout=120)


def repo_file(url: str) -> str:
    return "".join(
        f"[{rid}]\nname={rid}\nbaseurl={url}{path}/\nenabled=1\ngpgcheck=0\n{extra}\n"
        for rid, path, extra in (
            ("base", "base", ""),
            ("docker-ce-stable", "docker-ce", ""),
            ("kubernetes", "kubernetes", "exclude=kubelet kubeadm kubectl\n"),
        )
    )


@pytest.mark.timeout(300)
def test_toolkit_calls_over_ssh(lab_factory):
    lab = lab_factory(2)
    if not lab.mirror_url:
        pytest.skip("the lab started without a mirror")
    n1, n2 = lab.nodes[0], lab.nodes[1]
    n1.run(f"cat > /etc/yum.repos.d/lab.repo <<'EOF'\n{repo_file(lab.mirror_url)}EOF", check=True)
    r = ssh(lab, n1, "yum install -y ipset; echo rc=$?")
    assert "You need to be root to perform this command." in r.stderr and "rc=1" in r.stdout
    r = ssh(
        lab,
        n1,
        "sudo -n yum makecache fast && sudo -n yum install -y ipset ipvsadm "
        "&& sudo -n ipvsadm -Ln && sudo -n ipset version",
    )
    assert r.returncode == 0, r.stderr
    assert "IP Virtual Server version 1.2.1" in r.stdout and "ipset v7.1" in r.stdout
    r = ssh(
        lab,
        n1,
        "sudo -n yum install -y --setopt=obsoletes=0 docker-ce-19.03.15 && rpm -q docker-ce-cli",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("docker-ce-cli-20.10.9-3.el7.x86_64")  # the trap, for real
    r = ssh(lab, n1, "yum list --showduplicates kubeadm; echo rc=$?")
    assert "rc=1" in r.stdout  # excluded by the repo file
    r = ssh(lab, n1, "yum list --showduplicates --disableexcludes=kubernetes kubeadm")
    assert r.returncode == 0 and "1.20.10-0" in r.stdout and "1.21.0-0" in r.stdout
    # The pinned install landed only on the node that asked.
    assert n2.run("rpm -q ipset").returncode != 0
    # Root login, the non-root PATH trap, and the calls log.
    r = ssh(lab, n1, "/usr/sbin/sysctl -w net.ipv4.ip_forward=1")
    assert r.returncode == 255 and "permission denied on key" in r.stderr
    r = ssh(
        lab,
        n1,
        "modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1 "
        "&& swapoff -a && setenforce 0 && getenforce",
        user="root",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "Permissive"
    calls = [json.loads(x) for x in n1.run("cat /var/lib/lab/calls.log").stdout.splitlines()]
    assert any(
        c["cmd"] == "modprobe" and c["argv"] == ["br_netfilter"] and c["uid"] == 0 for c in calls
    )


@pytest.mark.timeout(300)
def test_settings_survive_reboot_and_ram_state_does_not(lab_factory):
    lab = lab_factory(1)
    node = lab.nodes[0]
    setup = (
        "printf 'br_netfilter\\noverlay\\n' > /etc/modules-load.d/k8s.conf && "
        "printf 'net.bridge.bridge-nf-call-iptables = 1\\nnet.ipv4.ip_forward = 1\\n' "
        "> /etc/sysctl.d/k8s.conf && "
        "sed -i 's/^SELINUX=.*/SELINUX=permissive/' /etc/selinux/config && "
        "sed -i '/ swap /s/^/#/' /etc/fstab && modprobe ip_vs && sysctl -w vm.swappiness=1"
    )
    r = ssh(lab, node, setup, user="root")
    assert r.returncode == 0, r.stderr
    node.reboot()
    r = ssh(
        lab,
        node,
        "lsmod | awk '{print $1}'; sysctl -n net.ipv4.ip_forward "
        "net.bridge.bridge-nf-call-iptables vm.swappiness; getenforce; "
        "tail -n +2 /proc/swaps | wc -l",
        user="root",
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert "br_netfilter" in out and "overlay" in out and "ip_vs" not in out
    assert out[-5:] == ["1", "1", "30", "Permissive", "0"]
