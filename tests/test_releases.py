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
    ("1.31.0", "v1beta4"),   # v1beta4 from 1.31 (kubernetes PR #125029)
    ("1.37.0", "v1beta4"),   # v1beta3 refused by 1.37 (PR #136016; RELEASE-FACTS 2)
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
    ("1.33.13", "3.10"),  # RELEASE-FACTS 1: kubeadm config images list per release (minikube)
    ("1.34.0", "3.10.1"),
    ("1.35.7", "3.10.1"),
    ("1.36.3", "3.10.2"),
    ("1.37.0", "3.10.2"),  # 1.37.0-rc.0's list
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
    ("1.31.0", "v0.28.9"),   # the newest flannel (RELEASE-FACTS 8)
    ("1.37.0", "v0.28.9"),
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


@pytest.mark.parametrize(("version", "mode", "ok"), [
    ("1.30.1", "ipvs", True), ("1.30.1", "iptables", True),
    ("1.30.1", "nftables", False),  # beta in 1.31, GA in 1.33 (KEP-3866)
    ("1.33.0", "nftables", True),
])
def test_proxy_mode_by_release(version, mode, ok):
    from bootstrap.errors import InventoryError
    from bootstrap.inventory import load_text

    text = (f"cluster: {{kubernetes_version: '{version}', proxy_mode: {mode}}}\n"
            "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n")
    if ok:
        assert load_text(text).cluster.proxy_mode == mode
        return
    with pytest.raises(InventoryError) as exc:
        load_text(text)
    assert (f"cluster.proxy_mode: 'nftables' is not offered with Kubernetes {version}: "
            "kube-proxy's nftables mode is GA from 1.33") in str(exc.value)


@pytest.mark.parametrize(("version", "containerd_min", "cgroup_v1"), [
    ("1.30.1", "1.6", "ok"),
    ("1.31.0", "1.6", "maintenance"),  # KEP-4569: cgroup v1 in maintenance mode from 1.31
    ("1.34.2", "1.6", "maintenance"),
    ("1.35.0", "1.6", "refused"),      # failCgroupV1 true by default (kubernetes PR #134298)
    ("1.36.0", "2.0", "refused"),      # containerd 1.x lacks RuntimeConfig (KEP-4033)
    ("1.37.0", "2.0", "refused"),
])
def test_runtime_and_cgroup_rules_by_release(version, containerd_min, cgroup_v1):
    row = R.release(version)
    assert (row.containerd_min, row.cgroup_v1) == (containerd_min, cgroup_v1)


@pytest.mark.parametrize(("version", "companions"), [
    ("1.23.17", ()),  # the legacy repo's kubeadm and kubelet require them
    ("1.30.1", ("cri-tools", "kubernetes-cni")),
    ("1.37.0", ("cri-tools", "kubernetes-cni")),  # kubeadm requires nothing from 1.32
])
def test_cri_tools_and_cni_are_named_in_the_transaction_from_the_per_minor_repos(version,
                                                                                  companions):
    from bootstrap.inventory import load_text
    from bootstrap.steps import Target, kubernetes

    inv = load_text(f"cluster: {{kubernetes_version: '{version}'}}\n"
                    "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n")
    got = kubernetes.install(Target(inv, inv.nodes[0]), "why")
    assert got.packages == (f"kubelet-{version}", f"kubeadm-{version}", f"kubectl-{version}",
                            *companions)
    assert "--disableexcludes=kubernetes" in got.options


# -- repos.kubernetes: the layout a baseurl shows, and what it can serve ----------------------
ALIYUN_LEGACY = "https://mirrors.aliyun.com/kubernetes/yum/repos/kubernetes-el7-x86_64/"
GOOGLE_LEGACY = "https://packages.cloud.google.com/yum/repos/kubernetes-el7-x86_64"
ALIYUN_PER_MINOR = "https://mirrors.aliyun.com/kubernetes-new/core/stable/v{minor}/rpm/"
PKGS_PINNED = "https://pkgs.k8s.io/core:/stable:/v1.28/rpm/"
OWN_MIRROR = "http://mirror.internal/kubernetes/"


@pytest.mark.parametrize(("baseurl", "layout", "pinned", "gone"), [
    (ALIYUN_LEGACY, "legacy", None, False),
    ("https://mirrors.tuna.tsinghua.edu.cn/kubernetes/yum/repos/kubernetes-el7-$basearch",
     "legacy", None, False),
    (GOOGLE_LEGACY, "legacy", None, True),   # removed 2024-03-04 (kubernetes/release#3485)
    ("https://yum.kubernetes.io/repos/kubernetes-el7-x86_64/", "legacy", None, True),
    (ALIYUN_PER_MINOR, "per-minor", None, False),
    ("https://pkgs.k8s.io/core:/stable:/v{minor}/rpm/", "per-minor", None, False),
    ("http://mirror.internal/k8s-{minor}/", "per-minor", None, False),
    (PKGS_PINNED, "per-minor", "1.28", False),
    ("https://mirrors.aliyun.com/kubernetes-new/core/stable/v1.30", "per-minor", "1.30", False),
    (OWN_MIRROR, None, None, False),          # a user's own mirror: layout unknown
    ("file:///srv/repos/k8s/", None, None, False),
    ("http://mirror.internal/v1/kubernetes/", None, None, False),  # not a minor
])
def test_the_layout_a_kubernetes_baseurl_shows(baseurl, layout, pinned, gone):
    url = R.repo_url(baseurl)
    if layout is None:
        assert url is None
        return
    assert url is not None
    assert (url.layout.name, url.pinned, url.gone is not None) == (layout, pinned, gone)


@pytest.mark.parametrize(("baseurl", "version", "says"), [
    (ALIYUN_LEGACY, "1.20.10", None),
    (ALIYUN_LEGACY, "1.28.2", None),
    (ALIYUN_LEGACY, "1.29.0", "the legacy kubernetes-el7 layout, which has releases up to 1.28"),
    (ALIYUN_LEGACY, "1.30.2", "the legacy kubernetes-el7 layout, which has releases up to 1.28"),
    (GOOGLE_LEGACY, "1.20.10", "removed on 2024-03-04 (kubernetes/release#3485)"),
    (ALIYUN_PER_MINOR, "1.24.0", None),
    (ALIYUN_PER_MINOR, "1.37.0", None),
    (ALIYUN_PER_MINOR, "1.23.17", "pkgs.k8s.io's per-minor layout, which starts at 1.24"),
    (ALIYUN_PER_MINOR, "1.20.10", "pkgs.k8s.io's per-minor layout, which starts at 1.24"),
    (PKGS_PINNED, "1.28.2", None),
    (PKGS_PINNED, "1.30.2", "its path is pinned to v1.28, one repo of the per-minor layout"),
    (OWN_MIRROR, "1.15.0", None),
    (OWN_MIRROR, "1.30.2", None),
])
def test_what_a_kubernetes_repo_cannot_serve(baseurl, version, says):
    why = R.cannot_serve(baseurl, version)
    if says is None:
        assert why is None
    else:
        assert why is not None and says in why


def test_every_release_default_repo_serves_its_release():
    from bootstrap.models import KUBERNETES_REPOS

    assert set(KUBERNETES_REPOS) == set(R.LAYOUTS) >= {m.layout for m in R.MINORS.values()}
    for minor, row in R.MINORS.items():
        assert R.repo_url(KUBERNETES_REPOS[row.layout].baseurl).layout.name == row.layout
        assert R.cannot_serve(KUBERNETES_REPOS[row.layout].baseurl, f"{minor}.0") is None
