"""Node flavours el7 / el8 / el9 (lab/flavours.py), checked from inside a node: identity, kernel,
cgroup file system, rpmdb, package managers, modules, what a reboot runs, installs from the
flavour's own mirror trees, and the podman variant's real dnf conflict. One lab per flavour."""

from __future__ import annotations

import shlex

import pytest

from lab import flavours
from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

EXPECT = {
    "el7": {"id": 'ID="centos"', "version": 'VERSION_ID="7"', "kernel": "3.10.0-1160.el7.x86_64",
            "release": "CentOS Linux release 7.9.2009 (Core)", "cgroup": "tmpfs",
            "initscripts": True, "dnf": False},
    "el8": {"id": 'ID="centos"', "version": 'VERSION_ID="8"',
            "kernel": "4.18.0-348.7.1.el8_5.x86_64", "release": "CentOS Linux release 8.5.2111",
            "cgroup": "tmpfs", "initscripts": True, "dnf": True},
    "el9": {"id": 'ID="rocky"', "version": 'VERSION_ID="9.4"',
            "kernel": "5.14.0-427.13.1.el9_4.x86_64",
            "release": "Rocky Linux release 9.4 (Blue Onyx)", "cgroup": "cgroup2",
            "initscripts": False, "dnf": True},
}


@pytest.fixture(scope="module", params=flavours.NAMES)
def lab(request):
    with module_lab(1, os=request.param) as the_lab:
        yield the_lab


def run(node, script: str, timeout: float = 60):
    return node.run(script, timeout=timeout)


def test_identity_kernel_and_cgroup(lab):
    node, want = lab.nodes[0], EXPECT[lab.os]
    assert node.os == lab.os
    r = run(node, "cat /etc/os-release; echo ---; cat /etc/redhat-release /etc/system-release; "
                  "echo ---; uname -r; cat /proc/sys/kernel/osrelease; sysctl -n kernel.osrelease;"
                  " echo ---; awk '$2 == \"/sys/fs/cgroup\"' /proc/mounts; "
                  "stat -fc %T /sys/fs/cgroup")
    osr, rel, kern, cg = r.stdout.split("---\n")
    assert want["id"] in osr.splitlines() and want["version"] in osr.splitlines()
    assert rel.splitlines() == [want["release"]] * 2
    assert kern.splitlines() == [want["kernel"]] * 3
    mounts, fstype = cg.splitlines()[:-1], cg.splitlines()[-1]
    assert len(mounts) == 1, cg  # one line for the mount point: the node's own
    if want["cgroup"] == "cgroup2":
        assert mounts[0].startswith("cgroup2 /sys/fs/cgroup cgroup2 ro,")
        assert fstype == "cgroup2fs"
    else:
        assert mounts[0].startswith("tmpfs /sys/fs/cgroup tmpfs ro,")
        assert fstype == "tmpfs"
    # none of the host's cgroup file systems shows through
    assert run(node, "awk '$3 ~ /^cgroup/ && $2 != \"/sys/fs/cgroup\"' /proc/mounts").stdout == ""


def test_rpmdb_and_package_managers(lab):
    node, want = lab.nodes[0], EXPECT[lab.os]
    r = run(node, "rpm -q initscripts")
    assert (r.returncode == 0) is want["initscripts"], r.stdout
    assert run(node, "command -v yum").stdout == "/usr/bin/yum\n"
    dnf = run(node, "command -v dnf")
    assert (dnf.stdout == "/usr/bin/dnf\n") is want["dnf"]
    if want["dnf"]:
        assert run(node, "dnf --version").returncode == 0
    fl = flavours.get(lab.os)
    names = [p.name for p in fl.base]
    r = run(node, "rpm -q --qf '%{NAME}-%{VERSION}-%{RELEASE}\\n' " + " ".join(names))
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines() == [f"{p.name}-{p.version}-{p.release}" for p in fl.base]


def test_modprobe_conntrack_ipv4(lab):
    node = lab.nodes[0]
    r = run(node, "modprobe nf_conntrack_ipv4; echo rc=$?; modprobe nf_conntrack && lsmod")
    if lab.os == "el7":
        assert r.stdout.startswith("rc=0\n") and r.stderr == ""
        return
    kernel = EXPECT[lab.os]["kernel"]
    assert r.stdout.startswith("rc=1\n")
    assert r.stderr == (f"modprobe: FATAL: Module nf_conntrack_ipv4 not found in directory "
                        f"/lib/modules/{kernel}\n")
    assert "nf_conntrack " in r.stdout and "nf_defrag_ipv6" in r.stdout


def test_reboot_runs_what_the_release_runs(lab):
    node = lab.nodes[0]
    modules = "#!/bin/bash\nmodprobe -- ip_vs_sh\n"
    run(node, "printf 'br_netfilter\\nnf_conntrack_ipv4\\n' > /etc/modules-load.d/k8s.conf && "
              f"printf %s {shlex.quote(modules)} > /etc/sysconfig/modules/ipvs.modules && "
              "chmod 0755 /etc/sysconfig/modules/ipvs.modules")
    node.reboot()
    loaded = run(node, "lsmod | awk 'NR>1{print $1}'").stdout.split()
    journal = run(node, "journalctl -u systemd-modules-load --no-pager").stdout
    assert "br_netfilter" in loaded
    assert ("ip_vs_sh" in loaded) is EXPECT[lab.os]["initscripts"]
    if lab.os == "el7":
        assert "nf_conntrack_ipv4" in loaded and "Failed to find module" not in journal
    else:
        assert "Failed to find module 'nf_conntrack_ipv4'" in journal
    assert run(node, "systemctl is-active sshd").stdout == "active\n"  # the boot went on
    run(node, "rm -f /etc/modules-load.d/k8s.conf /etc/sysconfig/modules/ipvs.modules")


def test_selinux_disabled_in_config(lab):
    """SELINUX=disabled: getenforce says Disabled everywhere; on el9 the kernel keeps SELinux
    on with no policy (lab/flavours.py SELINUX_NOTE)."""
    node = lab.nodes[0]
    run(node, "sed -i 's/^SELINUX=.*/SELINUX=disabled/' /etc/selinux/config")
    node.reboot()
    r = run(node, "getenforce; ls /sys/fs/selinux; cat /run/lab/selinux-kernel")
    kernel = "enabled-no-policy" if lab.os == "el9" else "disabled"
    assert r.stdout == f"Disabled\n{kernel}\n"
    run(node, "sed -i 's/^SELINUX=.*/SELINUX=enforcing/' /etc/selinux/config")


def test_toolkit_packages_from_the_flavours_mirror(lab):
    if lab.os == "el7":
        pytest.skip("el7 installs from base/ (tests/lab/test_mirror.py)")
    node = lab.nodes[0]
    r = run(node, "yum install -y iproute-tc conntrack-tools socat ipvsadm ipset 2>&1", 120)
    assert r.returncode == 0, r.stdout
    r = run(node, "rpm -q --qf '%{NAME}\\n' iproute-tc conntrack-tools socat ipvsadm ipset "
                  "ipset-libs && command -v tc conntrack && tc -V")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "/usr/sbin/tc\n" in r.stdout
    node.inject_fail("tc", "tc: injected")  # the payload's tc honours the lab's injections
    try:
        r = run(node, "tc qdisc show")
        assert (r.returncode, r.stderr) == (1, "tc: injected\n")
    finally:
        node.clear_fail("tc")
    assert run(node, "tc qdisc show").returncode == 0


def test_netfx_ipvs_modules_follow_the_kernel(lab):
    """kube-proxy's IPVS check (netfx.IPVS_MODULES) reads the node's conntrack module."""
    node = lab.nodes[0]
    r = run(node, "cd /usr/lib/lab && python3 -S -c 'import labcommon as lc; "
                  "print(lc.CONNTRACK_MODULE, lc.CONNTRACK_MODULE in lc.MODULES)'")
    want = "nf_conntrack_ipv4" if lab.os == "el7" else "nf_conntrack"
    assert r.stdout == f"{want} True\n", r.stderr
    assert {f.name: f.conntrack_module for f in flavours.FLAVOURS.values()} == {
        "el7": "nf_conntrack_ipv4", "el8": "nf_conntrack", "el9": "nf_conntrack"}


@pytest.mark.parametrize("os_name", ["el8", "el9"])
def test_podman_variant_real_dnf_conflict(os_name):
    with module_lab(1, os=os_name, podman=True) as the_lab:
        assert (the_lab.os, the_lab.podman) == (os_name, True)
        node = the_lab.nodes[0]
        repo = (f"[docker-ce-stable]\nname=Docker CE Stable\nbaseurl={the_lab.mirror_url}"
                f"{os_name}/docker-ce/\ngpgcheck=0\nenabled=1\n")
        run(node, f"printf %s {shlex.quote(repo)} > /etc/yum.repos.d/docker-ce.repo")
        assert run(node, "rpm -q podman buildah runc podman-docker").returncode == 0
        r = run(node, "dnf install -y docker-ce containerd.io 2>&1", 120)
        assert r.returncode == 1, r.stdout
        assert "conflicts with runc provided by runc-" in r.stdout
        assert "obsoletes runc provided by runc-" in r.stdout
        assert "try to add '--allowerasing'" in r.stdout
        assert run(node, "rpm -q docker-ce").returncode == 1  # nothing changed
        r = run(node, "dnf remove -y podman buildah runc podman-docker 2>&1 && "
                      "dnf install -y docker-ce containerd.io 2>&1", 120)
        assert r.returncode == 0, r.stdout
        r = run(node, "rpm -q --qf '%{NAME}\\n' docker-ce containerd.io; rpm -q runc podman")
        assert r.stdout.startswith("docker-ce\ncontainerd.io\n")
        assert "package runc is not installed" in r.stdout


def test_inventory_and_attach_record_the_flavour(lab):
    from lab.cluster import Lab

    again = Lab.attach(lab.name, lab.root)
    assert (again.os, again.podman) == (lab.os, False)
    text = lab.inventory_path.read_text()
    url = lab.mirror_url
    if lab.os == "el7":
        assert f'baseurl: "{url}base/"' in text and f'baseurl: "{url}docker-ce/"' in text
    else:
        assert f'base: {{baseurl: "{url}{lab.os}/", gpgcheck: false}}' in text
        assert f'docker_ce: {{baseurl: "{url}{lab.os}/docker-ce/", gpgcheck: false}}' in text
    assert f'kubernetes: {{baseurl: "{url}kubernetes/"' in text
