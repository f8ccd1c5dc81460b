"""kubeadm on containerd by release (issue #13, section 8): the config API versions 1.23, 1.28
and 1.30 accept and refuse, criSocket / --cri-socket, the real [ERROR CRI] with containerd.io's
shipped config and with containerd down, the docker socket refused from 1.24, and (1.27+) the
sandbox image warning. One shared lab; kubelet/kubeadm/kubectl of each release come from the
lab mirror: 1.23.17 (and cri-tools 1.23.0) from the legacy kubernetes repo, 1.28.2 / 1.30.1 (with
cri-tools 1.28.0 / 1.30.0) from the per-minor repos; the stand-ins read the installed version.
"""

from __future__ import annotations

import shlex

import pytest
from test_k8s_lab import root

from lab import mirror
from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]
RELEASES = ("1.23.17", "1.28.2", "1.30.1")  # 1.28/1.30: the per-minor repos' patches
REPO = "registry.aliyuncs.com/google_containers"
SOCK = "unix:///var/run/containerd/containerd.sock"
V2 = """version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
"""


def config(api: str, version: str) -> str:
    return (f"apiVersion: kubeadm.k8s.io/{api}\nkind: InitConfiguration\n"
            f"nodeRegistration: {{name: master1, criSocket: {SOCK}}}\n---\n"
            f"apiVersion: kubeadm.k8s.io/{api}\nkind: ClusterConfiguration\n"
            f"kubernetesVersion: v{version}\nimageRepository: {REPO}\n"
            "networking: {podSubnet: 10.244.0.0/16}\n")


@pytest.fixture(scope="module")
def lab():
    with module_lab(1) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        rids = ("base", "docker-ce", "kubernetes", *[mirror.k8s_repo(m) for m in mirror.K8S_MINORS])
        repo = "".join(
            f"[{rid.replace('/', '-')}]\nname={rid}\nbaseurl={the_lab.mirror_url}{rid}/\n"
            "enabled=1\ngpgcheck=0\n\n" for rid in rids)
        node = the_lab.nodes[0]
        r = root(the_lab, node, f"cat > /etc/yum.repos.d/lab.repo <<'EOF'\n{repo}EOF\n"
                 "yum install -y -q containerd.io kubelet-1.22.17 kubeadm-1.22.17 "
                 "kubectl-1.22.17 >/dev/null && swapoff -a && modprobe br_netfilter && "
                 "sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1 && "
                 "systemctl enable --now containerd kubelet")
        assert r.returncode == 0, r.stderr
        yield the_lab


def use(lab, version: str) -> None:
    """Switch the node's kubelet/kubeadm/kubectl (and cri-tools) to VERSION from the mirror
    (install what is older or missing, downgrade what is newer)."""
    crictl = ".".join(version.split(".")[:2]) + ".0"
    pkgs = f"kubelet-{version} kubeadm-{version} kubectl-{version} cri-tools-{crictl}"
    r = root(lab, lab.nodes[0], f"yum install -y -q {pkgs} >/dev/null 2>&1; yum downgrade -y -q "
             f"{pkgs} >/dev/null 2>&1; kubeadm version -o short && crictl --version")
    assert r.stdout == f"v{version}\ncrictl version v{crictl}\n", r.stdout + r.stderr


def containerd(lab, toml: str | None) -> None:
    """Write containerd's config (None: the shipped one) and restart it."""
    node = lab.nodes[0]
    if toml is None:
        script = ("printf 'disabled_plugins = [\"cri\"]\\n' > /etc/containerd/config.toml")
    else:
        script = f"printf %s {shlex.quote(toml)} > /etc/containerd/config.toml"
    r = root(lab, node, script + " && systemctl restart containerd")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("version", RELEASES)
def test_config_api_versions(lab, version):
    use(lab, version)
    node = lab.nodes[0]
    for api in ("v1beta2", "v1beta3", "v1beta4"):
        root(lab, node, f"cat > /root/{api}.yaml", stdin=config(api, version))
    m = int(version.split(".")[1])
    r = root(lab, node, "kubeadm config images list --config /root/v1beta3.yaml")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    pause = {23: "3.6", 28: "3.9", 30: "3.9"}[m]
    assert f"{REPO}/pause:{pause}\n" in r.stdout
    r = root(lab, node, "kubeadm config images list --config /root/v1beta2.yaml")
    if m < 27:
        assert r.returncode == 0 and r.stderr.count("\n") == 2, r.stderr
        assert r.stderr.splitlines()[0].endswith(
            'common.go:83] your configuration file uses a deprecated API spec: "kubeadm.k8s.io/'
            "v1beta2\". Please use 'kubeadm config migrate --old-config old.yaml --new-config "
            "new.yaml', which will write the new, similar spec using a newer API version.")
    else:
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr.startswith('your configuration file uses an old API spec: "kubeadm.k8s.'
                                   'io/v1beta2". Please use kubeadm v1.22 instead and run '), \
            r.stderr
    r = root(lab, node, "kubeadm init --config /root/v1beta4.yaml")
    assert (r.returncode, r.stdout) == (1, "")
    if m < 28:
        assert r.stderr.startswith('no kind "InitConfiguration" is registered for version '
                                   '"kubeadm.k8s.io/v1beta4"') or r.stderr.startswith(
            'no kind "ClusterConfiguration"'), r.stderr
    else:
        assert r.stderr.startswith('experimental API spec: "kubeadm.k8s.io/v1beta4" is not '
                                   "allowed. You can use the --allow-experimental-api flag if "
                                   "the command supports it.\n"), r.stderr


@pytest.mark.parametrize("version", RELEASES)
def test_cri_errors(lab, version):
    use(lab, version)
    node = lab.nodes[0]
    m = int(version.split(".")[1])
    root(lab, node, "cat > /root/init.yaml", stdin=config("v1beta3", version))
    containerd(lab, None)  # containerd.io's shipped config: cri disabled
    r = root(lab, node, "kubeadm init --config /root/init.yaml")
    assert r.returncode == 1, r.stdout
    # crictl's own line (cri-tools' stand-in), then kubeadm's ", error: exit status 1"
    assert "\t[ERROR CRI]: container runtime is not running: output: " in r.stderr, r.stderr
    assert "rpc error: code = Unimplemented desc = unknown service runtime.v1" in r.stderr
    assert "\n, error: exit status 1\n" in r.stderr
    # the same by flag (1.28+ also by default: containerd's socket is the only one)
    flag = f"--cri-socket {SOCK}" if m < 24 else ""
    r = root(lab, node, f"kubeadm init --image-repository {REPO} {flag}")
    assert r.returncode == 1 and "[ERROR CRI]" in r.stderr, r.stdout + r.stderr
    # containerd down
    r = root(lab, node, f"systemctl stop containerd; kubeadm init {flag or '--cri-socket ' + SOCK}")
    assert r.returncode == 1
    assert ("connect: no such file or directory" in r.stderr
            and "code = Unavailable" in r.stderr), r.stderr
    if m >= 24:  # no dockershim any more: the docker socket is just a missing CRI socket
        r = root(lab, node, "kubeadm init --cri-socket unix:///var/run/dockershim.sock")
        assert r.returncode == 1
        assert "dockershim.sock: connect: no such file or directory" in r.stderr, r.stderr


@pytest.mark.parametrize("version", RELEASES)
def test_sandbox_warning(lab, version):
    use(lab, version)
    node = lab.nodes[0]
    m = int(version.split(".")[1])
    root(lab, node, "cat > /root/init.yaml", stdin=config("v1beta3", version))
    containerd(lab, V2)  # CRI on, sandbox registry.k8s.io/pause:3.6
    r = root(lab, node, "kubeadm init --config /root/init.yaml; kubeadm reset -f >/dev/null")
    assert "[ERROR CRI]" not in r.stderr, r.stderr
    warned = [line for line in r.stderr.splitlines() if "sandbox image" in line]
    if m < 27:
        assert warned == []
        return
    want = f"{REPO}/pause:3.9"
    tail = (f'kubeadm.It is recommended to use "{want}"' if m >= 29
            else f'kubeadm. It is recommended that using "{want}"')
    assert len(warned) == 1 and warned[0].endswith(
        '] detected that the sandbox image "registry.k8s.io/pause:3.6" of the container runtime '
        f"is inconsistent with that used by {tail} as the CRI sandbox image."), warned
    # matching sandbox image: no warning
    containerd(lab, V2.replace("registry.k8s.io/pause:3.6", want))
    r = root(lab, node, "kubeadm init --config /root/init.yaml; kubeadm reset -f >/dev/null")
    assert "sandbox image" not in r.stderr, r.stderr


@pytest.mark.parametrize("version", RELEASES)
def test_kubelet_on_containerd(lab, version):
    """Ready with matching drivers and CRI on; a cgroup driver mismatch shows runc's text."""
    use(lab, version)
    node = lab.nodes[0]
    m = int(version.split(".")[1])
    pause = f"{REPO}/pause:" + {23: "3.6", 28: "3.9", 30: "3.9"}[m]
    root(lab, node, "cat > /root/init.yaml", stdin=config("v1beta3", version))
    containerd(lab, V2.replace("registry.k8s.io/pause:3.6", pause))
    r = root(lab, node, "kubeadm reset -f >/dev/null; kubeadm init --config /root/init.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Your Kubernetes control-plane has initialized successfully!" in r.stdout
    assert "sandbox image" not in r.stderr
    r = root(lab, node, "cat /var/lib/kubelet/kubeadm-flags.env; grep cgroupDriver "
             "/var/lib/kubelet/config.yaml; rpm -q --qf '%{VERSION}\\n' containerd.io")
    flags, driver, containerd_version = r.stdout.splitlines()
    assert f"--container-runtime-endpoint={SOCK}" in flags
    assert ("--container-runtime=remote" in flags) is (m < 27)
    assert "--network-plugin" not in flags and driver == "cgroupDriver: systemd"
    from test_k8s_lab import FLANNEL

    kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
    # kubeadm pulled its images through crictl (the lab registry has them all)
    r = root(lab, node, "crictl images | awk 'NR > 1 {print $1 \":\" $2}'")
    assert f"{REPO}/kube-apiserver:v{version}" in r.stdout.split(), r.stdout
    # before the CNI: NotReady with containerd's own network condition (not dockershim's)
    r = root(lab, node, f"{kubectl} describe node master1")
    assert ("KubeletNotReady   container runtime network not ready: NetworkReady=false "
            "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not "
            "initialized") in r.stdout, r.stdout
    r = root(lab, node, f"{kubectl} apply -f - >/dev/null && {kubectl} get nodes -o wide",
             stdin=FLANNEL)
    assert r.returncode == 0, r.stderr
    row = r.stdout.splitlines()[1].split()
    assert row[:2] == ["master1", "Ready"], r.stdout
    assert row[-1] == f"containerd://{containerd_version}", r.stdout

    # the kubelet on cgroupfs, runc on systemd: no pod sandbox starts, the node goes NotReady
    r = root(lab, node, "sed -i 's/cgroupDriver: systemd/cgroupDriver: cgroupfs/' "
             f"/var/lib/kubelet/config.yaml && systemctl restart kubelet && {kubectl} get nodes; "
             "journalctl -u kubelet --no-pager | tail -3")
    assert "master1   NotReady" in r.stdout, r.stdout
    assert ('remote_runtime.go:176] "RunPodSandbox from runtime service failed" err="rpc error: '
            "code = Unknown desc = failed to create containerd task: failed to create shim task: "
            "OCI runtime create failed: runc create failed: expected cgroupsPath to be of format "
            '\\"slice:prefix:name\\" for systemd cgroups, got \\"/kubepods/burstable/pod') \
        in r.stdout, r.stdout
    # matching again: Ready
    r = root(lab, node, "sed -i 's/cgroupDriver: cgroupfs/cgroupDriver: systemd/' "
             f"/var/lib/kubelet/config.yaml && systemctl restart kubelet && {kubectl} get nodes")
    assert "master1   Ready" in r.stdout, r.stdout
    # CRI off under a running cluster: the kubelet exits with the CRI text
    containerd(lab, None)
    r = root(lab, node, f"systemctl restart kubelet; {kubectl} get nodes; journalctl -u kubelet "
             "--no-pager | tail -5")
    assert "master1   NotReady" in r.stdout, r.stdout
    assert 'run.go:74] "command failed" err="failed to run Kubelet: validate service connection: ' \
        in r.stdout, r.stdout
    assert "unknown service runtime.v1.RuntimeService" in r.stdout
    # reset through CRI: crictl lists the pods; with CRI off that is only a warning
    r = root(lab, node, f"kubeadm reset -f --cri-socket {SOCK}")
    assert r.returncode == 0, r.stderr
    assert "cleanupnode.go:99] [reset] Failed to remove containers: output: " in r.stderr
    api = "v1alpha2" if m < 24 else "v1"  # crictl 1.23 falls back to v1alpha2 (CRI off: neither)
    assert f"unknown service runtime.{api}.RuntimeService" in r.stderr, r.stderr
    if m >= 24:  # 1.23 lists it only when it exists
        assert "/var/lib/dockershim" not in r.stdout, r.stdout
    containerd(lab, V2)
    r = root(lab, node, f"kubeadm reset -f --cri-socket {SOCK}; grep -c '\"pods\"' "
             "/var/lib/lab/calls.log")
    assert "Failed to remove containers" not in r.stderr, r.stderr
