"""The Kubernetes release table: each row tied to its source (bootstrap/releases.py)."""

from __future__ import annotations

import pytest

from bootstrap import releases as R


@pytest.mark.parametrize(("version", "api"), [
    ("1.20.10", "v1beta2"),  # v1beta2 from 1.15; the seed's release
    ("1.21.14", "v1beta2"),
    ("1.22.0", "v1beta3"),   # v1beta3 from 1.22 (kubernetes#114540)
    ("1.26.1", "v1beta3"),
    ("1.30.5", "v1beta3"),
    ("1.31.0", "v1beta4"),   # v1beta4 from 1.31 (FIELD-NOTES)
])
def test_kubeadm_config_api_by_release(version, api):
    assert R.release(version).kubeadm_api == api


@pytest.mark.parametrize(("version", "pause"), [
    ("1.20.10", "3.2"),  # FIELD-NOTES "pause by release" (kubeadm constants.go PauseVersion)
    ("1.21.0", "3.4.1"),
    ("1.22.3", "3.5"),
    ("1.23.17", "3.6"),
    ("1.24.0", "3.7"),
    ("1.25.16", "3.8"),
    ("1.26.0", "3.9"),
    ("1.28.2", "3.9"),
    ("1.30.14", "3.9"),
    ("1.31.1", "3.10"),
])
def test_pause_image_by_release(version, pause):
    assert R.pause_image(version, "registry.aliyuncs.com/google_containers/") == (
        f"registry.aliyuncs.com/google_containers/pause:{pause}")


@pytest.mark.parametrize(("version", "runtime"), [
    ("1.20.10", "docker"), ("1.23.17", "docker"),  # dockershim until 1.23
    ("1.24.0", "containerd"), ("1.30.0", "containerd"),  # removed in 1.24 (CHANGELOG-1.24)
])
def test_default_runtime_by_release(version, runtime):
    assert R.release(version).runtime == runtime


def test_an_unknown_release_is_a_named_error():
    with pytest.raises(R.UnknownRelease) as exc:
        R.release("1.99.0")
    assert "Kubernetes 1.99.0 is not a release this toolkit knows" in str(exc.value)
    assert "1.20, 1.21" in str(exc.value)


def test_every_minor_between_the_first_and_last_row_is_listed():
    minors = [int(m.split(".")[1]) for m in R.MINORS]
    assert minors == list(range(minors[0], minors[-1] + 1))


def test_an_inventory_kubernetes_repo_may_name_the_minor():
    from bootstrap import checks
    from bootstrap.inventory import load_text
    from bootstrap.steps import Target, kubernetes

    inv = load_text(
        "cluster: {kubernetes_version: '1.22.17'}\n"
        "repos: {kubernetes: {baseurl: 'http://mirror.internal/core/stable/v{minor}/rpm/', "
        "gpgkey: ['http://mirror.internal/core/stable/v{minor}/rpm/repodata/repomd.xml.key']}}\n"
        "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n")
    text = kubernetes.repo(Target(inv, inv.nodes[0]))
    assert "baseurl=http://mirror.internal/core/stable/v1.22/rpm/\n" in text
    assert "gpgkey=http://mirror.internal/core/stable/v1.22/rpm/repodata/repomd.xml.key" in text
    assert "baseurl=http://mirror.internal/core/stable/v1.22/rpm/" in checks.packages_command(
        inv, mirror_node=True)  # preflight lists the same repo


@pytest.mark.parametrize(("version", "baseurl", "key"), [
    # legacy: Aliyun's copy of packages.cloud.google.com kubernetes-el7-x86_64 (seed 004)
    ("1.20.10", "https://mirrors.aliyun.com/kubernetes/yum/repos/kubernetes-el7-x86_64/",
     "https://mirrors.aliyun.com/kubernetes/yum/doc/yum-key.gpg"),
    ("1.23.17", "https://mirrors.aliyun.com/kubernetes/yum/repos/kubernetes-el7-x86_64/",
     "https://mirrors.aliyun.com/kubernetes/yum/doc/yum-key.gpg"),
    # per-minor from 1.24: pkgs.k8s.io's core/stable/v1.NN/rpm/ with repodata/repomd.xml.key
    # (kubernetes.io blog 2023-08-15), as Aliyun's kubernetes-new mirrors it
    ("1.24.0", "https://mirrors.aliyun.com/kubernetes-new/core/stable/v1.24/rpm/",
     "https://mirrors.aliyun.com/kubernetes-new/core/stable/v1.24/rpm/repodata/repomd.xml.key"),
    ("1.30.1", "https://mirrors.aliyun.com/kubernetes-new/core/stable/v1.30/rpm/",
     "https://mirrors.aliyun.com/kubernetes-new/core/stable/v1.30/rpm/repodata/repomd.xml.key"),
])
def test_the_default_kubernetes_repo_by_release(version, baseurl, key):
    from bootstrap.inventory import load_text

    inv = load_text(f"cluster: {{kubernetes_version: '{version}'}}\n"
                    "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n")
    repo = R.kubernetes_repo(inv)
    assert repo.baseurl == baseurl
    assert repo.gpgkey[0] == key


@pytest.mark.parametrize(("version", "flannel"), [
    ("1.20.10", "v0.14.0"),  # the seed's era (kube-flannel.yml of 2021)
    ("1.23.17", "v0.14.0"),
    ("1.24.0", "v0.26.4"),   # the first flannel on ghcr.io/flannel-io (its kube-flannel.yml)
    ("1.30.1", "v0.26.4"),
])
def test_the_default_flannel_by_release(version, flannel):
    from bootstrap.inventory import load_text

    inv = load_text(f"cluster: {{kubernetes_version: '{version}'}}\n"
                    "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n")
    assert R.release(version).flannel == flannel
    assert inv.network.flannel_version == flannel
    pinned = load_text(f"cluster: {{kubernetes_version: '{version}'}}\n"
                       "network: {flannel_version: v0.22.0}\n"
                       "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n")
    assert pinned.network.flannel_version == "v0.22.0"
