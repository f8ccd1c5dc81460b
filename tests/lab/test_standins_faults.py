"""Deterministic fault injection (slow, hang, fail) for every stand-in, over a node's real sshd:
`Node.inject_slow/inject_hang/release_hang/wait_reached/processes` (lab/CONTRACT.md)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from lab.pytest_plugin import module_lab
from lab.standins.sandbox import manifest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]
PAYLOADS = Path(__file__).resolve().parents[2] / "lab" / "payloads"
PACKAGES = ("chrony conntrack-tools ipset ipvsadm yum-utils docker-ce-19.03.15 "
            "docker-ce-cli-19.03.15 containerd.io kubelet-1.20.10 kubeadm-1.20.10 "
            "kubectl-1.20.10 haproxy keepalived")


def ssh_argv(lab, node, script: str, user: str = "root") -> list[str]:
    return lab.ssh_argv(node, script, user)


def ssh(lab, node, script: str, user: str = "root", timeout: float = 60):
    return lab.ssh(node, script, user, timeout)


def spawn(lab, node, script: str, user: str = "root") -> subprocess.Popen:
    """Start `script` over SSH without waiting (for a call that will hang)."""
    return subprocess.Popen(ssh_argv(lab, node, script, user), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def running(node, word: str) -> list[tuple[int, str]]:
    """The node's processes whose command line mentions `word` (not this check's own ssh)."""
    return [(pid, cmd) for pid, cmd in node.processes() if word in cmd and "sshd" not in cmd]


def commands() -> list[str]:
    """Absolute node paths of every command stand-in: MANIFEST's and the payloads' bin dirs."""
    paths = [dst for _, dsts in manifest() for dst in dsts
             if dst.startswith(("/usr/bin/", "/usr/sbin/"))]
    for pkg in sorted(PAYLOADS.iterdir()):
        for sub in ("usr/bin", "usr/sbin"):
            if (pkg / sub).is_dir():
                paths += [f"/{sub}/{f.name}" for f in sorted((pkg / sub).iterdir())]
    return paths


def wait_all(node, name: str, paths: list[str], timeout: float = 60) -> list[dict]:
    """wait_reached until every path with basename `name` has reached its hang."""
    want = sum(os.path.basename(p) == name for p in paths)
    deadline = time.monotonic() + timeout
    while len(found := node.wait_reached(name, timeout)) < want:
        assert time.monotonic() < deadline, (name, found)
        time.sleep(0.02)
    return found


@pytest.fixture(scope="module")
def lab():
    with module_lab(1) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        node = the_lab.nodes[0]
        repo = "".join(
            f"[{rid}]\nname={rid}\nbaseurl={the_lab.mirror_url}{rid}/\nenabled=1\ngpgcheck=0\n\n"
            for rid in ("base", "docker-ce", "kubernetes"))
        r = ssh(the_lab, node, f"cat > /etc/yum.repos.d/lab.repo <<'EOF'\n{repo}EOF\n"
                f"yum install -y -q {PACKAGES} >/dev/null && "
                # the layer's rpmdb records an empty noarch chrony: replace it by the mirror's
                "rpm -e --justdb --nodeps chrony && yum install -y -q chrony >/dev/null && "
                "test -x /usr/bin/chronyc",
                timeout=180)
        assert r.returncode == 0, r.stderr
        yield the_lab


@pytest.fixture
def node(lab):
    node = lab.nodes[0]
    yield node
    node.run("rm -rf /var/lib/lab/slow/* /var/lib/lab/hang/* /var/lib/lab/fail/*", check=True)
    assert running(node, "python3") == [], node.processes()


def test_slow_modprobe_takes_that_long_then_loads_and_lsmod_is_not_slowed(lab, node):
    node.inject_slow("modprobe", 1.5)
    r = ssh(lab, node, "s=$(date +%s.%N); sudo -n /usr/sbin/modprobe ip_vs_sh; rc=$?; "
            "e=$(date +%s.%N); t0=$(date +%s.%N); /usr/sbin/lsmod >/dev/null; t1=$(date +%s.%N); "
            "echo $rc $s $e $t0 $t1; /usr/sbin/lsmod | grep -c '^ip_vs_sh '", user="lab")
    rc, s, e, t0, t1 = r.stdout.split("\n")[0].split()
    assert (rc, r.stdout.split("\n")[1], r.stderr) == ("0", "1", "")
    assert float(e) - float(s) >= 1.5
    assert float(t1) - float(t0) < 1.5  # lsmod: another basename of the same stand-in
    node.clear_slow("modprobe")
    r = ssh(lab, node, "s=$(date +%s.%N); modprobe -r ip_vs_sh; echo $? $s $(date +%s.%N)")
    rc, s, e = r.stdout.split()
    assert rc == "0" and float(e) - float(s) < 1.5, r.stderr


def test_slow_docker_payload_then_normal_output(lab, node):
    node.inject_slow("docker", 0.8)
    start = time.monotonic()
    r = ssh(lab, node, "docker --version")
    assert time.monotonic() - start >= 0.8
    assert (r.returncode, r.stdout) == (0, "Docker version 19.03.15, build 99e3ed8919\n"), r.stderr
    node.inject_slow("docker", 0)  # 0 s is a valid delay too
    assert ssh(lab, node, "docker --version").returncode == 0
    with pytest.raises(ValueError):
        node.inject_slow("docker", -1)


def test_hung_yum_is_reached_blocks_and_installs_once_released(lab, node):
    node.inject_hang("yum")
    proc = spawn(lab, node, "sudo -n yum install -y iptables-services && "
                 "rpm -q iptables-services", user="lab")
    try:
        reached = node.wait_reached("yum", timeout=20)
        assert [e["argv"] for e in reached] == [["install", "-y", "iptables-services"]]
        (cmdline,) = [c for pid, c in node.processes() if pid == reached[0]["pid"]]
        # sudo's secure_path finds /bin/yum
        assert cmdline.endswith("/yum install -y iptables-services")
        time.sleep(0.5)
        assert proc.poll() is None
        assert node.run("rpm -q iptables-services").returncode == 1
        node.release_hang("yum")
        out, err = proc.communicate(timeout=60)
    finally:
        node.release_hang("yum")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip().endswith("iptables-services-1.4.21-35.el7.x86_64")
    yum_calls = [c["argv"] for c in node.calls() if c["cmd"] == "yum"]
    assert yum_calls[-1] == ["install", "-y", "iptables-services"]
    ssh(lab, node, "yum remove -y -q iptables-services")


def test_hung_systemctl_then_fail_after_release(lab, node):
    """The order is slow, hang, fail: a released call still fails when fail is injected."""
    node.inject_hang("systemctl")
    node.inject_fail("systemctl", "Failed to start chronyd.service: injected")
    proc = spawn(lab, node, "systemctl start chronyd; echo rc=$?; systemctl is-active chronyd")
    try:
        reached = node.wait_reached("systemctl")
        assert reached[0]["argv"] == ["start", "chronyd"]
        assert running(node, "/usr/bin/systemctl start chronyd")
        node.release_hang("systemctl")
        out, err = proc.communicate(timeout=30)
    finally:
        node.release_hang("systemctl")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.startswith("rc=1\n") and "Failed to start chronyd.service: injected\n" in err
    node.clear_fail("systemctl")
    r = ssh(lab, node, "systemctl start chronyd && systemctl is-active chronyd && "
            "systemctl stop chronyd")
    assert (r.returncode, r.stdout) == (0, "active\n"), r.stderr


def test_hung_kubectl_of_a_login_user_is_reached(lab, node):
    node.inject_hang("kubectl")
    proc = spawn(lab, node, "kubectl version --client --short", user="lab")
    try:
        reached = node.wait_reached("kubectl")
        assert reached[0]["argv"] == ["version", "--client", "--short"]
        node.release_hang("kubectl")
        out, err = proc.communicate(timeout=30)
    finally:
        node.release_hang("kubectl")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (0, "Client Version: v1.20.10\n"), err


@pytest.mark.parametrize("script, user", [
    ("timeout -k 1 1 kubeadm version -o short", "root"),
    ("timeout --kill-after=1 1 sudo -n kubeadm version -o short", "lab"),
    ("sudo -n timeout -k 1 1 sh -c 'kubeadm version -o short'", "lab"),
])
def test_timeout_ends_a_hung_kubeadm_and_nothing_is_left(lab, node, script, user):
    node.inject_hang("kubeadm")
    start = time.monotonic()
    r = ssh(lab, node, f"{script}; echo rc=$?", user=user)
    elapsed = time.monotonic() - start
    assert r.stdout == "rc=124\n", r.stderr
    assert 1 <= elapsed < 10
    assert [e["argv"] for e in node.reached("kubeadm")] == [["version", "-o", "short"]]
    assert running(node, "kubeadm") == []
    assert node.running()
    node.release_hang("kubeadm")
    r = ssh(lab, node, "kubeadm version -o short")
    assert (r.returncode, r.stdout) == (0, "v1.20.10\n"), r.stderr


def test_timeout_outside_sudo_sh_leaves_the_root_grandchild_running(lab, node):
    """Real sudo/timeout semantics, shown with a hung stand-in: a non-root `timeout` reaches
    sudo (which relays SIGTERM to its child `sh`) but not the root processes below `sh`, so
    the hung command outlives the timeout (and keeps the SSH session open) until released."""
    node.inject_hang("kubeadm")
    proc = spawn(lab, node, "timeout -k 1 1 sudo -n sh -c 'kubeadm version -o short; true'; "
                 "echo rc=$?", user="lab")
    try:
        (entry,) = node.wait_reached("kubeadm")
        deadline = time.monotonic() + 15
        while running(node, "timeout -k") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running(node, "timeout -k") == [] and running(node, "sudo -n") == []
        assert [pid for pid, _ in running(node, "kubeadm version")] == [entry["pid"]]
        assert proc.poll() is None
        node.release_hang("kubeadm")
        out, err = proc.communicate(timeout=30)
    finally:
        node.release_hang("kubeadm")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == "rc=124\nv1.20.10\n", err


def test_sigkill_ends_a_hung_call(lab, node):
    node.inject_hang("docker")
    proc = spawn(lab, node, "docker info; echo rc=$?")
    try:
        (entry,) = node.wait_reached("docker")
        node.run(f"kill -KILL {entry['pid']}", check=True)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == "rc=137\n"
    assert running(node, "docker") == []


def test_wait_reached_times_out_with_a_clear_message(lab, node):
    with pytest.raises(TimeoutError, match=r"no call of 'ipset' reached .*call inject_hang first"):
        node.wait_reached("ipset", timeout=0.2)
    node.inject_hang("ipset")
    with pytest.raises(TimeoutError, match=r"the hang is injected: was it called\?"):
        node.wait_reached("ipset", timeout=0.2)
    node.release_hang("ipset")


def test_every_command_standin_honours_slow_hang_and_fail(lab, node):
    paths = commands()
    names = sorted({os.path.basename(p) for p in paths})
    assert {"systemctl", "modprobe", "lsmod", "yum", "kubeadm", "kubectl", "kubelet", "docker",
            "dockerd", "containerd", "iptables-save", "conntrack"} <= set(names)
    for name in names:
        node.inject_slow(name, 0.3)
        node.inject_hang(name)
        node.inject_fail(name, f"{name}: injected by the lab test")
    script = " ".join(f"( {p} lab-probe >/dev/null 2>/tmp/err.{i}; echo $? >/tmp/rc.{i} ) &"
                      for i, p in enumerate(paths)) + " wait"
    proc = spawn(lab, node, script)
    try:
        reached = {name: wait_all(node, name, paths) for name in names}
        calls: dict[str, float] = {}
        for c in node.calls():
            if c["argv"] == ["lab-probe"]:
                calls[c["cmd"]] = min(c["t"], calls.get(c["cmd"], c["t"]))
        for name in names:
            assert {tuple(e["argv"]) for e in reached[name]} == {("lab-probe",)}
            # slow, then hang: the first call reached its hang >= 0.3 s after the first call
            assert min(e["t"] for e in reached[name]) - calls[name] >= 0.3, name
        assert proc.poll() is None
        for name in names:
            node.release_hang(name)
        proc.communicate(timeout=60)
    finally:
        for name in names:
            node.release_hang(name)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for i, p in enumerate(paths):
        name = os.path.basename(p)
        got = node.run(f"cat /tmp/rc.{i} /tmp/err.{i}").stdout
        assert got == f"1\n{name}: injected by the lab test\n", p
