"""`invoke render` on the example inventory writes seed 004's files for each node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED_FILES = [
    "etc/docker/daemon.json",
    "etc/yum.repos.d/kubernetes.repo",
    "etc/modules-load.d/k8s.conf",
    "etc/sysctl.d/k8s.conf",
    "etc/sysconfig/modules/ipvs.modules",
    "etc/hosts",
    "etc/sysconfig/kubelet",
]


def test_render_example(tmp_path: Path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "render", "-i", "inventory.example.yaml", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    for node in ("master1", "node1", "node2"):
        for rel in SEED_FILES:
            assert (out / node / rel).is_file(), f"{node}/{rel}"
        hosts = (out / node / "etc/hosts").read_text()
        assert hosts.startswith("127.0.0.1   localhost")  # the stock lines are kept
        assert "192.168.177.100 master1\n192.168.177.101 node1\n192.168.177.102 node2\n" in hosts
    m = out / "master1"
    assert json.loads((m / "etc/docker/daemon.json").read_text()) == {
        "exec-opts": ["native.cgroupdriver=systemd"],
        "registry-mirrors": ["https://registry.aliyuncs.com"],
    }
    assert "br_netfilter\n" in (m / "etc/modules-load.d/k8s.conf").read_text()
    sysctl = (m / "etc/sysctl.d/k8s.conf").read_text()
    assert "net.bridge.bridge-nf-call-iptables = 1" in sysctl
    assert "net.ipv4.ip_forward = 1" in sysctl
    ipvs = m / "etc/sysconfig/modules/ipvs.modules"
    assert ipvs.stat().st_mode & 0o777 == 0o755
    assert ipvs.read_text().startswith("#!/bin/bash\n")
    assert (
        "baseurl=https://mirrors.aliyun.com/kubernetes/yum/repos/kubernetes-el7-x86_64/"
        in (m / "etc/yum.repos.d/kubernetes.repo").read_text()
    )
    readme = (out / "README.txt").read_text()
    assert "/etc/hosts: only the block" in readme and "daemon.json" in readme
    assert "wrote" in proc.stdout


def test_list_shows_render_with_help():
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "render" in proc.stdout
    help_ = subprocess.run(
        [sys.executable, "-m", "invoke", "--help", "render"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert "--inventory" in help_ and "--out" in help_


def _render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "render", "-i", "inventory.example.yaml", "-o",
         str(tmp_path / "out"), *args],
        cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )


def test_render_for_el9_follows_the_release(tmp_path: Path):
    proc = _render(tmp_path, "--os", "el9")
    assert proc.returncode == 0, proc.stderr
    m = tmp_path / "out" / "master1"
    assert not (m / "etc/sysconfig/modules/ipvs.modules").exists()  # nothing runs it on EL9
    conf = (m / "etc/modules-load.d/ipvs.conf").read_text()
    assert "nf_conntrack\n" in conf and "nf_conntrack_ipv4" not in conf
    assert "SELINUX=permissive\n" in (m / "etc/selinux/config").read_text()
    assert "Rocky Linux 9.4 (Blue Onyx) node (el9)" in (tmp_path / "out" / "README.txt").read_text()


def test_render_refuses_an_unknown_os_naming_the_choices(tmp_path: Path):
    proc = _render(tmp_path, "--os", "el10")
    assert proc.returncode == 2
    assert "--os 'el10': choose one of el7, el8, el9" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_render_shows_the_cluster_files_with_visible_placeholders(tmp_path: Path):
    import yaml

    proc = _render(tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    init = list(yaml.safe_load_all((out / "master1/etc/kubernetes/kubeadm-config.yaml")
                                   .read_text()))
    assert [d["kind"] for d in init] == ["InitConfiguration", "ClusterConfiguration",
                                         "KubeletConfiguration", "KubeProxyConfiguration"]
    assert init[1]["kubernetesVersion"] == "v1.20.10"
    flannel = list(yaml.safe_load_all((out / "master1/etc/kubernetes/addons/kube-flannel.yml")
                                      .read_text()))
    assert any(d and d["kind"] == "DaemonSet" for d in flannel)
    for worker in ("node1", "node2"):
        path = out / worker / "etc/kubernetes/kubeadm-join.yaml"
        join = yaml.safe_load(path.read_text())
        assert join["kind"] == "JoinConfiguration" and join["nodeRegistration"]["name"] == worker
        assert join["discovery"]["bootstrapToken"]["token"] == "<token>"
        assert join["discovery"]["bootstrapToken"]["caCertHashes"] == [
            "sha256:<ca-public-key-hash>"]
        assert path.stat().st_mode & 0o777 == 0o600
    assert not (out / "master1/etc/kubernetes/kubeadm-join.yaml").exists()
    readme = (out / "README.txt").read_text()
    assert "each worker: /etc/kubernetes/kubeadm-join.yaml" in readme and "<token>" in readme


def test_render_prints_the_loader_s_warnings(tmp_path: Path, capsys):
    """The render task prints every inventory note: here, a kubernetes repo whose layout cannot
    serve the release (called in-process, no subprocess)."""
    from invoke import Context

    import tasks

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "cluster: {kubernetes_version: '1.30.2'}\n"
        "repos: {kubernetes: {baseurl: "
        "'https://mirrors.aliyun.com/kubernetes/yum/repos/kubernetes-el7-x86_64/', "
        "gpgcheck: false}}\n"
        "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n")
    tasks.ns["render"](Context(), inventory=str(inventory), out=str(tmp_path / "out"))
    lines = capsys.readouterr().out.splitlines()
    warned = [ln for ln in lines if "cannot serve Kubernetes 1.30.2" in ln]
    assert len(warned) == 1 and warned[0].startswith(f"{inventory}: ")
    assert "repos.kubernetes.baseurl" in warned[0] and "Drop repos.kubernetes" in warned[0]
    assert lines[-1].startswith("wrote ")


def test_render_of_an_ha_inventory_shows_the_endpoint_lines_and_the_local_proxy(tmp_path: Path):
    import yaml

    from bootstrap.inventory import load_text
    from bootstrap.render import render_all

    inv = load_text("nodes:\n" + "".join(
        f"  - {{name: {n}, address: 192.168.177.{i}, role: {r}}}\n" for i, (n, r) in enumerate(
            [("cp1", "control-plane"), ("cp2", "control-plane"), ("cp3", "control-plane"),
             ("w1", "worker")], start=101)))
    render_all(inv, tmp_path)
    line = {n: next(ln for ln in (tmp_path / n / "etc/hosts").read_text().splitlines()
                    if ln.endswith("apiserver.cluster.local"))
            for n in ("cp1", "cp2", "w1")}
    assert line == {"cp1": "192.168.177.101 apiserver.cluster.local",
                    "cp2": "192.168.177.101 apiserver.cluster.local",  # before its join
                    "w1": "127.0.0.1 apiserver.cluster.local"}
    assert (tmp_path / "w1/etc/haproxy/haproxy.cfg").exists()
    assert not (tmp_path / "cp2/etc/haproxy/haproxy.cfg").exists()
    join = yaml.safe_load((tmp_path / "cp2/etc/kubernetes/kubeadm-join.yaml").read_text())
    assert join["controlPlane"]["certificateKey"] == "<certificate-key>"
    assert "controlPlane" not in yaml.safe_load(
        (tmp_path / "w1/etc/kubernetes/kubeadm-join.yaml").read_text())
    assert "each other control plane" in (tmp_path / "README.txt").read_text()
