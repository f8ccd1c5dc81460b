"""The lab's yum mirror: build (cached), serve on 127.0.0.1, and pinned installs with dnf into a
temporary --installroot, including the docker-ce-cli trap."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from lab.mirror import PACKAGES, Mirror

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("rpmbuild", "createrepo_c", "dnf-3", "rpm")),
    reason="needs rpmbuild, createrepo_c, dnf-3 and rpm (lab/deps.py installs them)",
)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory):
    root = Path(os.environ.get("BOOTSTRAP_LAB_ROOT", "/var/tmp/bootstrap-lab"))
    m = Mirror(root)
    m.build()
    url = m.start()
    yield m, url
    m.stop()


def dnf(root: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        "dnf-3",
        "-y",
        "--installroot",
        str(root),
        "--releasever",
        "7",
        "--setopt=reposdir=/nonexistent",
        f"--setopt=cachedir={root}/cache",
        "--setopt=install_weak_deps=False",
        "--nogpgcheck",
        "--disableplugin=*",
        "--repofrompath",
        f"base,{url}base/",
        "--repofrompath",
        f"docker-ce,{url}docker-ce/",
        "--repofrompath",
        f"kubernetes,{url}kubernetes/",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def installed(root: Path) -> dict[str, str]:
    out = subprocess.run(
        ["rpm", "--root", str(root), "-qa", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_cached_rebuild_is_instant_and_rpm_path(mirror):
    m, _ = mirror
    t = time.monotonic()
    again = Mirror(m.root).build()
    assert time.monotonic() - t < 2.0
    assert again == m.dir
    assert m.rpm_path("chrony").name == "chrony-3.4-1.el7.x86_64.rpm"
    assert m.rpm_path("kubeadm", "1.20.10").name == "kubeadm-1.20.10-0.x86_64.rpm"
    assert m.rpm_path("base-system").exists()
    with pytest.raises(KeyError):
        m.rpm_path("nosuch")


def test_served_on_loopback_with_three_repos(mirror):
    m, url = mirror
    assert url.startswith("http://127.0.0.1:")
    for repo in ("base", "docker-ce", "kubernetes"):
        with urllib.request.urlopen(f"{url}{repo}/repodata/repomd.xml", timeout=5) as resp:
            assert b"primary" in resp.read()
    assert m.pid and Path(f"/proc/{m.pid}").exists()


def test_declared_versions():
    by = {(p.name, p.version) for p in PACKAGES}
    for k in ("kubelet", "kubeadm", "kubectl"):
        assert {(k, "1.20.10"), (k, "1.21.0"), (k, "1.22.17"), (k, "1.23.17")} <= by
    assert {
        ("docker-ce", "19.03.15"),
        ("docker-ce", "20.10.9"),
        ("docker-ce-cli", "19.03.15"),
        ("docker-ce-cli", "20.10.9"),
    } <= by
    ce = next(p for p in PACKAGES if p.name == "docker-ce" and p.version == "19.03.15")
    assert "docker-ce-cli" in ce.requires  # unversioned, like the real package: the trap


def test_docker_ce_alone_drags_newest_cli_and_pinning_both_holds(mirror, tmp_path):
    _, url = mirror
    alone, pinned = tmp_path / "alone", tmp_path / "pinned"
    for root in (alone, pinned):
        res = dnf(root, url, "install", "base-system")
        assert res.returncode == 0, res.stderr
    res = dnf(alone, url, "install", "docker-ce-19.03.15")
    assert res.returncode == 0, res.stderr
    got = installed(alone)
    assert got["docker-ce"] == "19.03.15-3.el7"
    assert got["docker-ce-cli"] == "20.10.9-3.el7"  # the trap
    res = dnf(
        pinned,
        url,
        "install",
        "--setopt=obsoletes=0",
        "docker-ce-19.03.15",
        "docker-ce-cli-19.03.15",
        "containerd.io",
    )
    assert res.returncode == 0, res.stderr
    got = installed(pinned)
    assert (got["docker-ce"], got["docker-ce-cli"]) == ("19.03.15-3.el7", "19.03.15-3.el7")
    # unpinned: the newest el7 build, of the 1.6 line (there is no el7 build of 1.7)
    assert got["containerd.io"] == "1.6.33-3.1.el7"


def test_kubernetes_pinned_together_and_deps(mirror, tmp_path):
    _, url = mirror
    root = tmp_path / "k8s"
    assert dnf(root, url, "install", "base-system").returncode == 0
    res = dnf(root, url, "install", "kubelet-1.20.10", "kubeadm-1.20.10", "kubectl-1.20.10")
    assert res.returncode == 0, res.stderr
    got = installed(root)
    assert {k: got[k] for k in ("kubelet", "kubeadm", "kubectl")} == dict.fromkeys(
        ("kubelet", "kubeadm", "kubectl"), "1.20.10-0"
    )
    for dep in ("kubernetes-cni", "cri-tools", "conntrack-tools", "socat", "ebtables"):
        assert dep in got
    # Payload executables are packaged 0755.
    ipvs = tmp_path / "ipvs"
    assert dnf(ipvs, url, "install", "base-system").returncode == 0
    assert dnf(ipvs, url, "install", "ipvsadm", "ipset", "chrony", "yum-utils").returncode == 0
    for path in (
        "usr/sbin/ipvsadm",
        "usr/sbin/ipset",
        "usr/bin/yum-config-manager",
        "usr/bin/chronyc",
    ):
        assert (ipvs / path).stat().st_mode & 0o777 == 0o755
    assert "server 0.centos.pool.ntp.org iburst" in (ipvs / "etc/chrony.conf").read_text()


def test_only_kubeadm_pinned_pulls_newer_kubelet(mirror, tmp_path):
    _, url = mirror
    root = tmp_path / "k"
    assert dnf(root, url, "install", "base-system").returncode == 0
    assert dnf(root, url, "install", "kubeadm-1.20.10").returncode == 0
    got = installed(root)
    assert got["kubeadm"] == "1.20.10-0" and got["kubelet"] == "1.23.17-0"  # the newest
