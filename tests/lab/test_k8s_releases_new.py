"""Kubernetes 1.31, 1.35 and 1.37 on the lab (issue "Kubernetes 1.31 to 1.37", item 6).

Without a lab: the per-minor repos (RELEASE-FACTS 10), the image lists (RELEASE-FACTS 1), the
config API texts (RELEASE-FACTS 2) and the flannel v0.27/v0.28 images in the catalogue.
With one el9 node (cgroup v2, kernel 5.14) and one el8 node (cgroup v1, kernel 4.18), each on
containerd.io 1.7.27 with CRI on: the config API versions each release accepts and refuses,
SystemVerification and the kubelet's failCgroupV1 on cgroup v1 and their opt-outs, the
ContainerRuntimeVersion warning, and kube-proxy's nftables mode by release and kernel.
"""

from __future__ import annotations

import shlex

import pytest

from bootstrap.cluster import flannel
from lab import mirror
from lab.payload_code import CATALOGUE, kubeadm_cfg, state
from lab.pytest_plugin import module_lab

SOCK = "unix:///var/run/containerd/containerd.sock"
HINT = "To see the stack trace of this error execute with --v=5 or higher\n"
V2 = """version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10.1"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
"""
MIGRATE_OLD = "'kubeadm config migrate --old-config old.yaml --new-config new.yaml'"
MIGRATE_NEW = ("'kubeadm config migrate --old-config old-config-file --new-config "
               "new-config-file'")
SV_ERROR = ("cgroups v1 support is deprecated and will be removed in a future release. Please "
            "migrate to cgroups v2. To explicitly enable cgroups v1 support for kubelet v1.35 or "
            "newer, you must set the kubelet configuration option 'FailCgroupV1' to 'false'. You "
            "must also explicitly skip this validation. For more information, see "
            "https://git.k8s.io/enhancements/keps/sig-node/5573-remove-cgroup-v1")
SV_WARNING = "cgroups v1 support is in maintenance mode, please migrate to cgroups v2"
KUBELET_REFUSAL = ("failed to validate kubelet configuration, error: kubelet is configured to "
                   "not run on a host using cgroup v1. cgroup v1 support is unsupported and will "
                   "be removed in a future release, path: &TypeMeta{Kind:,APIVersion:,}")
RUNTIME_CONFIG = (
    "[WARNING ContainerRuntimeVersion]: You must update your container runtime to a version "
    "that supports the CRI method RuntimeConfig. Falling back to using cgroupDriver from kubelet "
    "config will be removed in 1.36. For more information, see "
    "https://git.k8s.io/enhancements/keps/sig-node/4033-group-driver-detection-over-cri")


# ---- without a lab ---------------------------------------------------------------------------

def test_per_minor_repos_of_the_new_releases():
    by = {(p.name, p.version, p.repo): p for p in mirror.PACKAGES}
    for minor, patch, crictl in (("1.31", "1.31.14", "1.31.1"), ("1.33", "1.33.13", "1.33.0"),
                                 ("1.35", "1.35.7", "1.35.0"), ("1.37", "1.37.0", "1.36.0")):
        repo = mirror.k8s_repo(minor)
        for name in ("kubelet", "kubeadm", "kubectl"):
            assert (name, patch, repo) in by, (name, patch)
        assert ("cri-tools", crictl, repo) in by
        assert any(p.name == "kubernetes-cni" and p.repo == repo for p in mirror.PACKAGES)
        kubeadm = by[("kubeadm", patch, repo)]
        assert set(kubeadm.requires) == ({"cri-tools >= 1.30.0"} if minor == "1.31" else set())
        kubelet = by[("kubelet", patch, repo)]
        assert set(kubelet.requires) == {"iptables >= 1.4.21", "kubernetes-cni >= 1.2.0",
                                         "util-linux"}


@pytest.mark.parametrize("version,pause,coredns,etcd", [
    ("1.31.14", "3.10", "v1.11.3", "3.5.24-0"),
    ("1.33.13", "3.10", "v1.12.0", "3.5.24-0"),
    ("1.35.7", "3.10.1", "v1.13.1", "3.6.6-0"),
    ("1.37.0", "3.10.2", "v1.14.6", "3.7.0-0"),
])
def test_images_of_the_new_releases(version, pause, coredns, etcd):
    v = f"v{version}"
    assert kubeadm_cfg.images(version, "", version) == [
        f"registry.k8s.io/kube-apiserver:{v}", f"registry.k8s.io/kube-controller-manager:{v}",
        f"registry.k8s.io/kube-scheduler:{v}", f"registry.k8s.io/kube-proxy:{v}",
        f"registry.k8s.io/pause:{pause}", f"registry.k8s.io/etcd:{etcd}",
        f"registry.k8s.io/coredns/coredns:{coredns}"]
    aliyun = "registry.aliyuncs.com/google_containers"
    assert kubeadm_cfg.images(version, aliyun, version)[-1] == f"{aliyun}/coredns:{coredns}"


def catalogue() -> set[str]:
    names = set()
    for line in CATALOGUE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(state.qualify(line))
    return names


@pytest.mark.parametrize("tag", ["v0.27.0", "v0.27.2", "v0.27.3", "v0.27.4", "v0.28.1", "v0.28.2",
                                 "v0.28.3", "v0.28.4", "v0.28.5", "v0.28.6", "v0.28.7",
                                 "v0.28.8", "v0.28.9"])
def test_flannel_images_are_served(tag):
    have = catalogue()
    rel = flannel.release(tag)
    assert state.qualify(rel.image) in have, rel.image
    assert rel.cni_plugin_image and state.qualify(rel.cni_plugin_image) in have
    assert state.qualify("ghcr.io/flannel-io/flannel:v0.28.9") in have
    assert state.qualify("ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3") in have


def test_api_check_texts():
    api = "kubeadm.k8s.io/v1beta3"
    warn, err = kubeadm_cfg.api_check(api, "ClusterConfiguration", "1.32.0")
    assert err is None and warn == (
        'common.go:101] your configuration file uses a deprecated API spec: '
        '"kubeadm.k8s.io/v1beta3" (kind: "ClusterConfiguration"). Please use '
        f"{MIGRATE_NEW}, which will write the new, similar spec using a newer API version.")
    warn, err = kubeadm_cfg.api_check(api, "ClusterConfiguration", "1.37.0")
    assert warn is None and err == (
        'your configuration file uses an old API spec: "kubeadm.k8s.io/v1beta3" (kind: '
        f'"ClusterConfiguration"). Please use kubeadm v1.36 instead and run {MIGRATE_NEW}, '
        "which will write the new, similar spec using a newer API version.")
    assert kubeadm_cfg.api_check("kubeadm.k8s.io/v1beta4", "InitConfiguration", "1.31.14") \
        == (None, None)


# ---- on the lab ------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["el9", "el8"])
def lab(request):
    with module_lab(1, os=request.param) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        node = the_lab.nodes[0]
        url, el = the_lab.mirror_url, request.param
        repo = (f"[docker-ce-stable]\nname=Docker CE Stable\nbaseurl={url}{el}/docker-ce/\n"
                "gpgcheck=0\nenabled=1\n\n") + "".join(
            f"[kubernetes-{m}]\nname=Kubernetes {m}\nbaseurl={url}{mirror.k8s_repo(m)}/\n"
            "gpgcheck=0\nenabled=1\n\n" for m in ("1.30", "1.31", "1.35", "1.37"))
        r = run(node, f"printf %s {shlex.quote(repo)} > /etc/yum.repos.d/lab-k8s.repo && "
                      "dnf install -y containerd.io-1.7.27 cri-tools-1.31.1 kubelet-1.31.14 "
                      "kubeadm-1.31.14 kubectl-1.31.14 2>&1", 300)
        assert r.returncode == 0, r.stdout
        r = run(node, f"printf %s {shlex.quote(V2)} > /etc/containerd/config.toml && "
                      f"printf 'runtime-endpoint: {SOCK}\\n' > /etc/crictl.yaml && "
                      "swapoff -a && modprobe br_netfilter && sysctl -qw "
                      "net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1 && "
                      "systemctl enable --now containerd kubelet")
        assert r.returncode == 0, r.stdout + r.stderr
        yield the_lab


def run(node, script: str, timeout: float = 120):
    return node.run(script, timeout=timeout)


def use(node, version: str) -> None:
    pkgs = f"kubelet-{version} kubeadm-{version} kubectl-{version}"
    r = run(node, f"dnf install -y -q {pkgs} >/dev/null 2>&1; dnf downgrade -y -q {pkgs} "
                  ">/dev/null 2>&1; kubeadm version -o short; kubelet --version", 300)
    assert r.stdout == f"v{version}\nKubernetes v{version}\n", r.stdout + r.stderr


def reset(node) -> None:
    r = run(node, "kubeadm reset -f >/dev/null 2>&1; rm -rf /etc/cni/net.d $HOME/.kube; "
                  "nft flush ruleset 2>/dev/null; for t in filter nat mangle; do "
                  "iptables -t $t -F; iptables -t $t -X; done; true")
    assert r.returncode == 0


def cgroup_v1(lab) -> bool:
    return lab.os == "el8"


def put(node, path: str, text: str) -> None:
    r = run(node, f"printf %s {shlex.quote(text)} > {path}")
    assert r.returncode == 0, r.stderr


def init_config(api: str, version: str, extra: str = "", reg: str = "",
                args: str = "") -> str:
    if api == "v1beta4":
        args = args or "apiServer:\n  extraArgs:\n  - name: audit-log-maxage\n    value: \"7\"\n"
    else:
        args = args or "apiServer:\n  extraArgs:\n    audit-log-maxage: \"7\"\n"
    return (f"apiVersion: kubeadm.k8s.io/{api}\nkind: InitConfiguration\n"
            f"nodeRegistration:\n  criSocket: {SOCK}\n{reg}---\n"
            f"apiVersion: kubeadm.k8s.io/{api}\nkind: ClusterConfiguration\n"
            f"kubernetesVersion: v{version}\nnetworking:\n  podSubnet: 10.244.0.0/16\n{args}"
            + extra)


def deprecated(kind: str, migrate: str) -> str:
    return (f'your configuration file uses a deprecated API spec: "kubeadm.k8s.io/v1beta3" '
            f'(kind: "{kind}"). Please use {migrate}, which will write the new, similar spec '
            "using a newer API version.")


@pytest.mark.lab
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("version", ["1.31.14", "1.35.7", "1.37.0"])
def test_config_api_by_release(lab, version):
    node = lab.nodes[0]
    use(node, version)
    wanted = "".join(f"{i}\n" for i in kubeadm_cfg.images(version, "", version))
    m = int(version.split(".")[1])
    prefix = "error: " if m >= 35 else ""
    # v1beta4 with list-shaped extraArgs and a timeouts block: accepted, no warning
    put(node, "/tmp/v4.yaml", init_config("v1beta4", version, reg="timeouts:\n  "
                                          "controlPlaneComponentHealthCheck: 4m0s\n"))
    r = run(node, "kubeadm config images list --config /tmp/v4.yaml")
    assert (r.returncode, r.stdout, r.stderr) == (0, wanted, ""), r.stderr
    # v1beta4 with a map: the decoder's json error
    put(node, "/tmp/v4map.yaml", init_config("v1beta4", version, args="apiServer:\n  extraArgs:"
                                             "\n    audit-log-maxage: \"7\"\n"))
    r = run(node, "kubeadm config images list --config /tmp/v4map.yaml")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"{prefix}json: cannot unmarshal object into Go struct field APIServer."
                        "apiServer.ControlPlaneComponent.extraArgs of type []v1beta4.Arg\n"
                        + HINT), r.stderr
    # v1beta3: deprecated (a klog warning per document) until 1.36, refused by 1.37
    put(node, "/tmp/v3.yaml", init_config("v1beta3", version))
    r = run(node, "kubeadm config images list --config /tmp/v3.yaml")
    if m < 37:
        migrate = MIGRATE_OLD if m == 31 else MIGRATE_NEW
        assert (r.returncode, r.stdout) == (0, wanted), r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == 2, r.stderr
        for line, kind in zip(lines, ("InitConfiguration", "ClusterConfiguration"), strict=True):
            assert line.startswith("W") and line.endswith(
                "common.go:101] " + deprecated(kind, migrate)), line
    else:
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr == (
            'error: your configuration file uses an old API spec: "kubeadm.k8s.io/v1beta3" '
            '(kind: "InitConfiguration"). Please use kubeadm v1.36 instead and run '
            f"{MIGRATE_NEW}, which will write the new, similar spec using a newer API "
            "version.\n" + HINT), r.stderr
    # v1beta2: refused since 1.27
    put(node, "/tmp/v2.yaml", init_config("v1beta2", version))
    r = run(node, "kubeadm config images list --config /tmp/v2.yaml")
    assert r.returncode == 1
    assert r.stderr.startswith(f'{prefix}your configuration file uses an old API spec: '
                               '"kubeadm.k8s.io/v1beta2" (kind: "InitConfiguration"). Please use '
                               "kubeadm v1.22 instead and run"), r.stderr
    # a v1beta4 JoinConfiguration with v1beta3's discovery.timeout: strict decoding's warning
    put(node, "/tmp/join.yaml", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n"
        "discovery:\n  timeout: 5m0s\n  bootstrapToken:\n    apiServerEndpoint: 127.0.0.1:6443\n"
        "    token: abcdef.0123456789abcdef\n    unsafeSkipCAVerification: true\n"
        f"nodeRegistration:\n  criSocket: {SOCK}\n")
    r = run(node, "kubeadm join --config /tmp/join.yaml")
    first = r.stderr.splitlines()[0]
    assert first.startswith("W") and first.endswith(
        'joinconfiguration.go:116] error unmarshaling configuration schema.GroupVersionKind{'
        'Group:"kubeadm.k8s.io", Version:"v1beta4", Kind:"JoinConfiguration"}: strict decoding '
        'error: unknown field "discovery.timeout"'), r.stderr


@pytest.mark.lab
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("version", ["1.31.14", "1.35.7", "1.37.0"])
def test_cgroup_v1_rules(lab, version):
    node = lab.nodes[0]
    use(node, version)
    reset(node)
    m = int(version.split(".")[1])
    put(node, "/tmp/init.yaml", init_config("v1beta4", version))
    r = run(node, "kubeadm init --config /tmp/init.yaml", 300)
    if not cgroup_v1(lab):
        assert r.returncode == 0, r.stdout + r.stderr
        assert "SystemVerification" not in r.stdout + r.stderr
        return
    if m < 35:  # the maintenance-mode warning; the kubelet runs (failCgroupV1 false)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"\t[WARNING SystemVerification]: {SV_WARNING}\n" in r.stdout
        return
    assert f"\t{RUNTIME_CONFIG}\n" in r.stdout, r.stdout  # containerd 1.7 has no RuntimeConfig
    assert r.returncode == 1
    assert r.stderr.endswith(
        f"[preflight] Some fatal errors occurred:\n\t[ERROR SystemVerification]: {SV_ERROR}\n"
        "[preflight] If you know what you are doing, you can make a check non-fatal with "
        "`--ignore-preflight-errors=...`\nerror: error execution phase preflight: preflight "
        "checks failed\n" + HINT), r.stderr
    # skipping the check alone: the kubelet refuses cgroup v1 (failCgroupV1 true by default)
    r = run(node, "kubeadm init --config /tmp/init.yaml "
                  "--ignore-preflight-errors=SystemVerification", 300)
    assert r.returncode == 1, r.stdout
    assert f"\t[WARNING SystemVerification]: {SV_ERROR}\n" in r.stdout
    assert "[kubelet-check] It seems like the kubelet isn't running or healthy." in r.stdout
    r = run(node, "journalctl -u kubelet --no-pager")
    assert f'"command failed" err="{KUBELET_REFUSAL}"' in r.stdout, r.stdout
    reset(node)
    # both opt-outs in the config: init succeeds and the kubelet runs
    put(node, "/tmp/init.yaml", init_config(
        "v1beta4", version, reg="  ignorePreflightErrors:\n  - SystemVerification\n",
        extra="---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
              "failCgroupV1: false\n"))
    r = run(node, "kubeadm init --config /tmp/init.yaml", 300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"\t[WARNING SystemVerification]: {SV_ERROR}\n" in r.stdout
    r = run(node, "grep failCgroupV1 /var/lib/kubelet/config.yaml; systemctl is-active kubelet; "
                  "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get nodes --no-headers")
    assert r.stdout.startswith("failCgroupV1: false\nactive\n"), r.stdout
    assert f" v{version}" in r.stdout


PROXY = "---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n" \
        "mode: nftables\n"


@pytest.mark.lab
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("version", ["1.30.1", "1.35.7"])
def test_kube_proxy_nftables(lab, version):
    node = lab.nodes[0]
    use(node, version)
    reset(node)
    m = int(version.split(".")[1])
    api = "v1beta4" if m >= 31 else "v1beta3"
    reg, kubelet = "", ""
    if cgroup_v1(lab) and m >= 35:
        reg = "  ignorePreflightErrors:\n  - SystemVerification\n"
        kubelet = ("---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                   "failCgroupV1: false\n")
    put(node, "/tmp/init.yaml", init_config(api, version, reg=reg, extra=PROXY + kubelet))
    r = run(node, "kubeadm init --config /tmp/init.yaml", 300)
    assert r.returncode == 0, r.stdout + r.stderr
    k = "KUBECONFIG=/etc/kubernetes/admin.conf kubectl"
    r = run(node, f"{k} get pods -n kube-system --no-headers | grep kube-proxy")
    pod, _, status = r.stdout.split()[:3]
    if m < 31:
        why = ('KubeProxyConfiguration.ProxyMode: Invalid value: \\"nftables\\": must be iptables, '
               "ipvs or blank (blank means the best-available proxy [currently iptables])")
    elif cgroup_v1(lab):  # el8's 4.18 kernel
        why = "kube-proxy in nftables mode requires kernel 5.13 or later"
    else:
        why = ""
    if why:
        assert status == "CrashLoopBackOff", r.stdout
        r = run(node, f"{k} logs -n kube-system {pod}")
        assert r.stdout.rstrip("\n").endswith(f'run.go:74] "command failed" err="{why}"'), \
            r.stdout
        r = run(node, "nft list tables")
        assert (r.returncode, r.stdout) == (0, ""), r.stdout + r.stderr
        return
    assert status == "Running", r.stdout
    r = run(node, "nft list tables; iptables -t nat -S | grep -c KUBE-SERVICES")
    assert r.stdout == "table ip kube-proxy\ntable ip6 kube-proxy\n0\n", r.stdout + r.stderr
    r = run(node, "nft delete table ip kube-proxy && nft delete table ip nosuch")
    assert r.returncode == 1
    assert r.stderr == ("Error: Could not process rule: No such file or directory\n"
                        "delete table ip nosuch\n" + "^" * 22 + "\n"), r.stderr
