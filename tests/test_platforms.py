"""The platform table: which OS a node runs, and what the steps do differently on EL7/8/9."""

from __future__ import annotations

import pytest

from bootstrap import checks, packages, platforms, stock
from bootstrap.inventory import load_text
from bootstrap.plan import FileState, Install, Plan, WriteFile
from bootstrap.steps import Target, prepare_steps

INV = """\
nodes:
  - {name: master1, address: 192.168.177.100, role: master}
"""
STEPS = {s.name: s for s in prepare_steps()}


def osr(text: str) -> dict[str, str]:
    return platforms._os_release(text, 0)


ROCKY9 = ('NAME="Rocky Linux"\nVERSION="9.4 (Blue Onyx)"\nID="rocky"\n'
          'ID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'
          'PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n')


@pytest.mark.parametrize(("text", "distro", "el"), [
    ('NAME="CentOS Linux"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n', "centos", 7),
    ('NAME="CentOS Linux"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="8"\n', "centos", 8),
    ('NAME="CentOS Stream"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="9"\n',
     "centos-stream", 9),
    (ROCKY9, "rocky", 9),
    ('NAME="AlmaLinux"\nID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.10"\n',
     "almalinux", 8),
    ('NAME="Red Hat Enterprise Linux"\nID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.4"\n', "rhel", 9),
    ('NAME="Oracle Linux Server"\nID="ol"\nID_LIKE="fedora"\nVERSION_ID="8.9"\n', "ol", 8),
    # a rebuild we do not list, by ID_LIKE
    ('NAME="EuroLinux"\nID="eurolinux"\nID_LIKE="rhel fedora centos"\nVERSION_ID="9.2"\n',
     "rhel", 9),
])
def test_enterprise_linux_7_8_9_are_recognised(text, distro, el):
    p = platforms.detect(osr(text))
    assert (p.distro, p.el) == (distro, el)


@pytest.mark.parametrize(("text", "says"), [
    ('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n'
     'PRETTY_NAME="Ubuntu 22.04.4 LTS"\n', "Ubuntu 22.04.4 LTS (ID=ubuntu) is not an Enterprise"),
    ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="10.0"\n'
     'PRETTY_NAME="Rocky Linux 10.0 (Red Quartz)"\n', "Rocky Linux 10.0 (Red Quartz) is EL10"),
    ('NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40"\n',
     "Fedora Linux 40 (ID=fedora) is not an Enterprise"),
    ("", "an OS without /etc/os-release"),
])
def test_anything_else_is_a_named_error_saying_what_is_supported(text, says):
    with pytest.raises(platforms.Unsupported) as exc:
        platforms.detect(osr(text))
    assert says in str(exc.value)
    assert "supported: EL7, EL8, EL9 of CentOS Linux, CentOS Stream" in str(exc.value)


@pytest.mark.parametrize(("mounts", "version"), [
    ("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n", 2),
    ("tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\n"
     "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n", 1),
    ("proc /proc proc rw 0 0\n", None),
])
def test_cgroup_version_from_the_mount_at_sys_fs_cgroup(mounts, version):
    assert platforms.cgroup().parse(mounts, 0) == version


def plan_for(step: str, flavour: str, extra: str = "", overrides: dict | None = None) -> Plan:
    inv = load_text(extra + INV)
    t = Target(inv, inv.nodes[0])
    facts = stock.facts(STEPS[step].facts(t), flavour)
    facts.update(overrides or {})
    return STEPS[step].plan(t, facts)


def written(p: Plan) -> dict[str, str]:
    return {a.path: a.content for a in p.actions if isinstance(a, WriteFile)}


BASE = "repos: {base: {baseurl: 'https://vault.example/8.5.2111/', gpgcheck: false}}\n"


def test_base_repos_on_centos8_are_its_three_files_under_the_tree():
    files = written(plan_for("base-repo", "el8", BASE))
    assert sorted(files) == ["/etc/yum.repos.d/CentOS-Linux-AppStream.repo",
                             "/etc/yum.repos.d/CentOS-Linux-BaseOS.repo",
                             "/etc/yum.repos.d/CentOS-Linux-Extras.repo"]
    assert "[baseos]\n" in files["/etc/yum.repos.d/CentOS-Linux-BaseOS.repo"]
    assert ("baseurl=https://vault.example/8.5.2111/AppStream/$basearch/os/\n"
            in files["/etc/yum.repos.d/CentOS-Linux-AppStream.repo"])
    assert "dnf clean metadata -q" in plan_for("base-repo", "el8", BASE).script()


def test_base_repos_on_rocky9_and_centos7():
    files = written(plan_for("base-repo", "el9", BASE))
    assert sorted(files) == ["/etc/yum.repos.d/rocky-extras.repo", "/etc/yum.repos.d/rocky.repo"]
    assert "[baseos]" in files["/etc/yum.repos.d/rocky.repo"]
    assert "[appstream]" in files["/etc/yum.repos.d/rocky.repo"]
    el7 = written(plan_for("base-repo", "el7", BASE))
    assert list(el7) == ["/etc/yum.repos.d/CentOS-Base.repo"]
    assert "baseurl=https://vault.example/8.5.2111/\n" in el7["/etc/yum.repos.d/CentOS-Base.repo"]


def test_base_repos_on_rhel_are_refused_with_what_to_do():
    rhel = {"os-release": osr('NAME="Red Hat Enterprise Linux"\nID="rhel"\nVERSION_ID="9.4"\n'
                              'PRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"\n')}
    p = plan_for("base-repo", "el9", BASE, rhel)
    assert not p.actions
    assert "Red Hat Enterprise Linux 9.4 (Plow)" in p.error and "subscription-manager" in p.error


@pytest.mark.parametrize(("flavour", "config", "note"), [
    ("el7", "SELINUX=disabled", False),
    ("el8", "SELINUX=disabled", False),
    ("el9", "SELINUX=permissive", True),  # the config cannot disable SELinux on EL9
])
def test_selinux_disabled_where_the_release_can(flavour, config, note):
    p = plan_for("selinux", flavour)
    assert config + "\n" in written(p)["/etc/selinux/config"]
    assert any("selinux=0 kernel argument" in n for n in p.notes) == note


@pytest.mark.parametrize(("flavour", "tools"), [
    ("el7", ("conntrack-tools", "socat")),  # tc is in iproute on EL7
    ("el8", ("iproute-tc", "conntrack-tools", "socat")),
    ("el9", ("iproute-tc", "conntrack-tools", "socat")),
])
def test_kubeadm_preflight_tools_by_release(flavour, tools):
    p = plan_for("kubernetes-packages", flavour)
    installs = [a for a in p.actions if isinstance(a, Install)]
    assert installs[0].packages == tools


@pytest.mark.parametrize(("flavour", "manager"), [("el7", "yum"), ("el8", "dnf"), ("el9", "dnf")])
def test_the_transaction_uses_the_release_package_manager(flavour, manager):
    plans = [(n, plan_for(n, flavour)) for n in ("ipvs", "kubernetes-packages")]
    b, _ = packages.batch(plans, platforms.RELEASES[int(flavour[2])].package_manager)
    assert b is not None and b.command.startswith(f"{manager} install -y ")


def test_every_release_row_is_complete():
    for el, r in platforms.RELEASES.items():
        assert r.el == el and r.package_manager in ("yum", "dnf") and r.base_repos
        assert r.conntrack_module in ("nf_conntrack", "nf_conntrack_ipv4")
    for (distro, el), files in platforms.REPO_FILES.items():
        ids = {i for ids in files.values() for i in ids}
        assert distro in platforms.DISTROS and el in platforms.RELEASES
        assert ids == {r.id for r in platforms.RELEASES[el].base_repos}, (distro, el)


# -- PackageConflicts: podman and friends against Docker's packages on EL8/EL9 ----------------
def _inv(extra: str = ""):
    return load_text(extra + INV)


def test_packages_command_asks_dnf_for_what_dockers_packages_conflict_with():
    cmd = checks.packages_command(_inv(), mirror_node=False)
    assert cmd.startswith("if rpm -q kubeadm-1.20.10 kubelet-1.20.10 kubectl-1.20.10 "
                          "docker-ce-19.03.15 docker-ce-cli-19.03.15 >/dev/null 2>&1; then")
    assert ("repoquery --qf '%{conflicts}\\n%{obsoletes}' docker-ce-19.03.15 "
            "docker-ce-cli-19.03.15 containerd.io") in cmd
    assert "yum -q $y list" not in cmd  # only the mirror node lists the mirrors
    assert "yum -q $y list" in checks.packages_command(_inv(), mirror_node=True)


@pytest.mark.parametrize("mirror_node", [False, True])
def test_packages_command_prints_its_markers_when_nothing_is_installed(tmp_path, mirror_node):
    """Run for real with stand-ins for rpm (nothing installed), yum and dnf (no repos)."""
    import os
    import subprocess

    for tool, body in (("rpm", "exit 1"), ("yum", "echo 'kubeadm.x86_64 1.20.10-0 k'"),
                       ("dnf", "exit 0")):
        (tmp_path / tool).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / tool).chmod(0o755)
    cmd = checks.packages_command(_inv(), mirror_node)
    cmd = cmd.replace("/usr/bin/dnf", str(tmp_path / "dnf"))
    got = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert got.returncode == 0, got.stderr
    _rc, listing, names = checks._packages(got.stdout, got.returncode)
    assert names == []
    assert listing == ("kubeadm.x86_64 1.20.10-0 k\n" if mirror_node else None)


FAKE_RPM = """#!/bin/sh
case "$*" in
  *--whatprovides*) for a in "$@"; do case $a in runc) echo runc;; docker) echo podman-docker;;
    -*|%*) ;; *) echo "no package provides $a";; esac; done;;
  *--whatrequires*) for a in "$@"; do case $a in runc) echo podman; echo buildah;;
    podman) echo podman-docker;; -*|%*) ;; *) echo "no package requires $a";; esac; done;;
  *) exit 1;;
esac
"""


def test_packages_command_follows_what_requires_the_conflicting_packages(tmp_path):
    """containerd.io conflicts with runc; podman and buildah need runc; podman-docker provides
    docker (docker-ce conflicts with it) and needs podman: all four are found, each once."""
    import os
    import subprocess

    (tmp_path / "rpm").write_text(FAKE_RPM)
    (tmp_path / "dnf").write_text("#!/bin/sh\nprintf 'runc\\ndocker\\ncontainerd\\n'\n")
    for tool in ("rpm", "dnf"):
        (tmp_path / tool).chmod(0o755)
    cmd = checks.packages_command(_inv(), False).replace("/usr/bin/dnf", str(tmp_path / "dnf"))
    got = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    _rc, _listing, names = checks._packages(got.stdout, got.returncode)
    assert sorted(names) == ["buildah", "podman", "podman-docker", "runc"], got.stdout


@pytest.mark.parametrize(("out", "listing", "names"), [
    ("installed\n", "installed", []),
    ("<<conflicts\n", None, []),
    ("<<mirror\nkubeadm.x86_64 1.20.10-0 check-kubernetes\n<<conflicts\n",
     "kubeadm.x86_64 1.20.10-0 check-kubernetes\n", []),
    # the names the rounds of `rpm -q --whatprovides/--whatrequires` find on EL8
    ("<<conflicts\nrunc\npodman-docker\npodman\nbuildah\nrunc\n",
     None, ["runc", "podman-docker", "podman", "buildah"]),
])
def test_packages_fact_parses_listing_and_conflicting_names(out, listing, names):
    _rc, got_listing, got_names = checks._packages(out, 0)
    assert (got_listing, got_names) == (listing, names)


def test_conflicts_are_an_error_unless_removal_is_allowed():
    err = checks._conflicts(_inv(), "node1", ["runc", "podman"])
    assert err.severity == checks.ERROR and err.check == "PackageConflicts"
    assert "runc, podman" in err.message and "dnf remove runc podman" in err.message
    assert "node_prep.remove_conflicting_packages: true" in err.message
    ok = checks._conflicts(_inv("node_prep: {remove_conflicting_packages: true}\n"), "node1",
                           ["runc"])
    assert ok.severity == checks.WARNING and "--allowerasing" in ok.message


@pytest.mark.parametrize(("flavour", "option"), [("el7", False), ("el8", True), ("el9", True)])
def test_removal_setting_lets_dnf_erase_in_the_transaction(flavour, option):
    extra = "node_prep: {remove_conflicting_packages: true}\n"
    inv = load_text(extra + INV)
    t = Target(inv, inv.nodes[0])
    facts = stock.facts(STEPS["docker"].facts(t), flavour)
    installs = [a for a in STEPS["docker"].plan(t, facts).actions if isinstance(a, Install)]
    assert ("--allowerasing" in installs[0].options) == option
    plain = [a for a in plan_for("docker", flavour).actions if isinstance(a, Install)]
    assert "--allowerasing" not in plain[0].options  # never without the setting


@pytest.mark.parametrize(("flavour", "extra", "error"), [
    ("el9", "", True),  # the default: Aliyun's kubernetes-el7, gpg checked
    ("el8", "", False),
    ("el7", "", False),
    ("el9", "repos: {kubernetes: {baseurl: 'https://m.example/kubernetes-el7-x86_64/', "
     "gpgcheck: false, repo_gpgcheck: false}}\n", False),
    ("el9", "repos: {kubernetes: {baseurl: 'https://m.example/core/stable/v1.28/rpm/', "
     "gpgkey: ['https://m.example/core/stable/v1.28/rpm/repodata/repomd.xml.key']}}\n", False),
])
def test_el9_refuses_the_sha1_signed_legacy_kubernetes_repo(flavour, extra, error):
    platform = platforms.detect(stock.FLAVOURS[flavour]["os-release"])
    found = checks._repo_signatures(_inv(extra), "node1", platform)
    assert bool(found) == error
    if error:
        assert found[0].check == "RepoSignatures" and "SHA-1" in found[0].message


ZRAM_CONF = "/etc/systemd/zram-generator.conf"


@pytest.mark.parametrize(("overrides", "writes"), [
    ({}, False),  # stock: swap on LVM, no zram-generator
    ({"swaps": ["/dev/zram0"]}, True),
    ({"file:/usr/lib/systemd/zram-generator.conf": FileState("[zram0]\n")}, True),
    ({"file:" + ZRAM_CONF: FileState("[zram0]\nzram-size = ram / 2\n")}, True),
])
def test_swap_on_zram_is_kept_off_at_boot(overrides, writes):
    p = plan_for("swap", "el9", overrides=overrides)
    assert (ZRAM_CONF in written(p)) == writes
    if writes:
        assert "[" not in written(p)[ZRAM_CONF]  # no [zramN] section: no device
        assert ("swapoff -a" in p.script()) == bool(overrides.get("swaps", ["/dev/dm-1"]))


@pytest.mark.parametrize(("cgroup", "extra", "found"), [
    (1, "", 0),
    (2, "", 1),  # 1.20 on cgroup v2: before the kubelet's GA (1.25)
    (2, "docker: {cgroup_driver: cgroupfs}\n", 2),
    (None, "", 0),
])
def test_cgroup_v2_warnings(cgroup, extra, found):
    platform = platforms.detect(stock.FLAVOURS["el9"]["os-release"])
    got = checks._cgroup_version(_inv(extra), "node1", platform, cgroup)
    assert len(got) == found
    assert all(f.check == "CgroupVersion" and f.severity == checks.WARNING for f in got)


# The release's rules on a node (checks._release_rules; sources in releases.py and
# docs/RELEASE-FACTS.md 3, 4, 7): cgroup v1 refused from 1.35, containerd 2 from 1.36, nftables
# only on a 5.13+ kernel.
@pytest.mark.parametrize(("flavour", "facts", "extra", "want"), [
    ("el8", {"cgroup": 1}, "cluster: {kubernetes_version: '1.35.0'}\n", [("CgroupV1", "error")]),
    ("el8", {"cgroup": 1}, "cluster: {kubernetes_version: '1.35.0', allow_cgroup_v1: true}\n",
     [("CgroupV1", "warning")]),
    ("el8", {"cgroup": 1}, "cluster: {kubernetes_version: '1.33.0'}\n", [("CgroupV1", "warning")]),
    ("el8", {"cgroup": 1}, "cluster: {kubernetes_version: '1.30.1'}\n", []),
    ("el9", {"cgroup": 2}, "cluster: {kubernetes_version: '1.37.0'}\n", []),
    ("el9", {"cgroup": 2}, "cluster: {kubernetes_version: '1.36.0'}\n"
     "containerd: {version: 1.7.27}\n", [("ContainerdVersion", "error")]),
    ("el9", {"cgroup": 2, "rpm:containerd.io": "1.7.27-3.1.el9"},
     "cluster: {kubernetes_version: '1.36.0'}\n", [("ContainerdVersion", "error")]),
    ("el9", {"cgroup": 2}, "cluster: {kubernetes_version: '1.36.0'}\n"
     "containerd: {version: 2.1.5}\n", []),
    ("el9", {"cgroup": 2}, "cluster: {kubernetes_version: '1.35.7'}\n"
     "containerd: {version: 1.7.27}\n", []),
    ("el7", {"cgroup": 1}, "cluster: {kubernetes_version: '1.36.0', allow_cgroup_v1: true}\n",
     [("CgroupV1", "warning"), ("ContainerdVersion", "error")]),
    ("el8", {"cgroup": 1, "kernel": "4.18.0-553.el8_10.x86_64"},
     "cluster: {kubernetes_version: '1.33.0', proxy_mode: nftables}\n",
     [("CgroupV1", "warning"), ("NftablesKernel", "error")]),
    ("el9", {"cgroup": 2, "kernel": "5.14.0-503.el9.x86_64"},
     "cluster: {kubernetes_version: '1.33.0', proxy_mode: nftables}\n", []),
])
def test_release_rules_on_a_node(flavour, facts, extra, want):
    platform = platforms.detect(stock.FLAVOURS[flavour]["os-release"])
    installed = {k[4:]: v for k, v in facts.items() if k.startswith("rpm:")}
    f = {**{k: v for k, v in facts.items() if not k.startswith("rpm:")},
         platforms.matter().name: installed}
    got = checks._release_rules(_inv(extra), "node1", platform, f)
    assert [(x.check, x.severity) for x in got] == want, [x.message for x in got]
    assert all(x.node == "node1" for x in got)
