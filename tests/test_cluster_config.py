"""Pure tests of the cluster commands' desired state: kubeadm configs, flannel, reset plans,
the wait probe's shell logic (run locally against a fake kubectl), secret masking."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from bootstrap.cluster import flannel, join, reset
from bootstrap.cluster import kubeadm_config as K
from bootstrap.cluster.common import error_lines, parse_nodes, parse_pods, wait_script
from bootstrap.inventory import load_text
from bootstrap.plan import Run, WriteFile
from bootstrap.secrets import Secrets
from bootstrap.steps import Target

NODES = """\
nodes:
  - {name: master1, address: 192.168.177.100, role: master}
  - {name: node1, address: 192.168.177.101, role: worker}
"""


def inventory(extra: str = ""):
    return load_text(extra + NODES, environ={})


def docs(text: str) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


@pytest.mark.parametrize(
    ("version", "api"),
    [
        ((1, 15, 0), "v1beta2"),
        ((1, 20, 10), "v1beta2"),
        ((1, 21, 0), "v1beta2"),
        ((1, 22, 0), "v1beta3"),
        ((1, 23, 17), "v1beta3"),
        ((1, 30, 9), "v1beta3"),
        ((1, 31, 0), "v1beta4"),
        ((1, 33, 1), "v1beta4"),
    ],
)
def test_kubeadm_api_version_follows_the_release(version, api):
    assert K.api_version(version) == api


@pytest.mark.parametrize(
    ("extra", "api", "mode", "driver", "cri"),
    [
        ("", "v1beta2", "ipvs", "systemd", "/var/run/dockershim.sock"),
        (
            "cluster: {kubernetes_version: '1.22.17', proxy_mode: iptables}\n"
            "docker: {cgroup_driver: cgroupfs}\n",
            "v1beta3", "iptables", "cgroupfs", "unix:///var/run/dockershim.sock",
        ),
        ("cluster: {kubernetes_version: '1.21.0'}\n", "v1beta2", "ipvs", "systemd",
         "/var/run/dockershim.sock"),
    ],
    ids=["1.20.10", "1.22.17-iptables-cgroupfs", "1.21.0"],
)
def test_init_config_carries_the_inventory(extra, api, mode, driver, cri):
    inv = inventory(extra)
    d = docs(K.init_config(inv))
    assert set(d) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration",
                      "KubeProxyConfiguration"}
    assert d["InitConfiguration"]["apiVersion"] == f"kubeadm.k8s.io/{api}"
    assert d["ClusterConfiguration"]["apiVersion"] == f"kubeadm.k8s.io/{api}"
    assert d["KubeProxyConfiguration"]["mode"] == mode
    assert d["KubeletConfiguration"]["cgroupDriver"] == driver
    init, cluster = d["InitConfiguration"], d["ClusterConfiguration"]
    assert init["localAPIEndpoint"]["advertiseAddress"] == "192.168.177.100"
    assert init["nodeRegistration"] == {"name": "master1", "criSocket": cri}
    assert "token" not in init["bootstrapTokens"][0]  # kubeadm generates it; never in a file
    assert cluster["kubernetesVersion"] == f"v{inv.cluster.kubernetes_version}"
    assert cluster["imageRepository"] == "registry.aliyuncs.com/google_containers"
    assert cluster["networking"]["podSubnet"] == "10.244.0.0/16"
    assert cluster["networking"]["serviceSubnet"] == "10.96.0.0/12"
    assert cluster["controlPlaneEndpoint"] == "192.168.177.100:6443"


# v1beta4 (kubernetes PR #125029; RELEASE-FACTS 2): JoinConfiguration.discovery.timeout moved to
# JoinConfiguration.timeouts.discovery; an old key in a v1beta4 file is an unknown field.
@pytest.mark.parametrize(("version", "api"), [
    ("1.30.1", "v1beta3"), ("1.31.0", "v1beta4"), ("1.37.0", "v1beta4")])
def test_join_config_timeout_where_the_api_keeps_it(version, api):
    inv = inventory(f"cluster: {{kubernetes_version: '{version}'}}\n")
    d = docs(K.join_config(inv, inv.workers[0], "abcdef.0123456789abcdef",
                           "sha256:" + "a" * 64))["JoinConfiguration"]
    assert d["apiVersion"] == f"kubeadm.k8s.io/{api}"
    if api == "v1beta4":
        assert "timeout" not in d["discovery"]
        assert d["timeouts"] == {"discovery": K.DISCOVERY_TIMEOUT}
    else:
        assert d["discovery"]["timeout"] == K.DISCOVERY_TIMEOUT and "timeouts" not in d


@pytest.mark.parametrize(("version", "allow", "opted_out"), [
    ("1.35.0", True, True),    # KEP-5573: failCgroupV1 true by default from 1.35
    ("1.37.0", True, True),
    ("1.35.0", False, False),  # no opt-out: preflight's CgroupV1 check stops the run instead
    ("1.34.2", True, False),   # nothing to opt out of before 1.35
])
def test_cgroup_v1_opt_out(version, allow, opted_out):
    inv = inventory(f"cluster: {{kubernetes_version: '{version}', "
                    f"allow_cgroup_v1: {str(allow).lower()}}}\n")
    d = docs(K.init_config(inv))
    join = docs(K.join_config(inv, inv.workers[0], "abcdef.0123456789abcdef",
                              "sha256:" + "a" * 64))["JoinConfiguration"]
    ignored = ["SystemVerification"] if opted_out else None
    assert d["InitConfiguration"]["nodeRegistration"].get("ignorePreflightErrors") == ignored
    assert join["nodeRegistration"].get("ignorePreflightErrors") == ignored
    assert d["KubeletConfiguration"].get("failCgroupV1") == (False if opted_out else None)


def test_init_config_endpoint_and_port_from_the_inventory():
    inv = inventory("cluster: {control_plane_endpoint: 'k8s-api.example.com:8443'}\n")
    d = docs(K.init_config(inv))
    assert d["ClusterConfiguration"]["controlPlaneEndpoint"] == "k8s-api.example.com:8443"
    assert d["InitConfiguration"]["localAPIEndpoint"]["bindPort"] == 6443  # a load balancer's
    inv = inventory("cluster: {control_plane_endpoint: '192.168.177.100:7443'}\n")
    assert docs(K.init_config(inv))["InitConfiguration"]["localAPIEndpoint"]["bindPort"] == 7443


@pytest.mark.parametrize("cluster, sans", [
    ("", None),  # none: kubeadm's own names only
    ("cluster: {control_plane_endpoint: '192.168.177.100:7443'}\n", None),  # the same address
    ("cluster: {control_plane_endpoint: 'k8s-api.example.com'}\n",
     ["k8s-api.example.com", "192.168.177.100"]),
    ("cluster: {load_balancer: local}\n", ["apiserver.cluster.local", "192.168.177.100"]),
])
def test_the_api_server_certificate_names_the_endpoint(cluster, sans):
    d = docs(K.init_config(inventory(cluster)))["ClusterConfiguration"]
    assert d.get("apiServer", {}).get("certSANs") == sans


def test_join_config_holds_token_hash_and_name():
    inv = inventory()
    text = K.join_config(inv, inv.workers[0], "abcdef.0123456789abcdef", "sha256:" + "a" * 64)
    d = docs(text)["JoinConfiguration"]
    assert d["apiVersion"] == "kubeadm.k8s.io/v1beta2"
    assert d["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "192.168.177.100:6443",
        "token": "abcdef.0123456789abcdef",
        "caCertHashes": ["sha256:" + "a" * 64],
    }
    assert d["nodeRegistration"]["name"] == "node1"


def test_join_plan_sends_the_token_on_stdin_only():
    inv = inventory()
    t = Target(inv, inv.workers[0])
    token = "abcdef.0123456789abcdef"
    phase = join.join_phase(token, "sha256:" + "b" * 64, ["Swap"], dry_run=False)
    p = phase.plan(t, {join.present().name: set()})
    assert token not in p.script() and token not in p.render()
    assert p.stdin() is not None
    files = [a for a in p.actions if isinstance(a, WriteFile)]
    assert [(f.path, f.mode, f.secret) for f in files] == [(join.JOIN_FILE, 0o600, True)]
    commands = [a.command for a in p.actions if isinstance(a, Run)]
    assert commands[0].endswith(f"trap 'rm -f {join.JOIN_FILE}' EXIT")
    assert commands[-1] == f"kubeadm join --config {join.JOIN_FILE} --ignore-preflight-errors=Swap"
    joined = phase.plan(t, {join.present().name: {join.KUBELET_CONF}})
    assert joined.empty


@pytest.mark.parametrize(
    ("version", "image", "plugin", "namespace"),
    [
        ("v0.14.0", "quay.io/coreos/flannel:v0.14.0", None, "kube-system"),
        ("v0.15.1", "docker.io/rancher/mirrored-flannelcni-flannel:v0.15.1",
         "docker.io/rancher/mirrored-flannelcni-flannel-cni-plugin:v1.0.0", "kube-system"),
        ("v0.17.0", "docker.io/rancher/mirrored-flannelcni-flannel:v0.17.0",
         "docker.io/rancher/mirrored-flannelcni-flannel-cni-plugin:v1.0.1", "kube-system"),
        ("v0.20.2", "docker.io/rancher/mirrored-flannelcni-flannel:v0.20.2",
         "docker.io/rancher/mirrored-flannelcni-flannel-cni-plugin:v1.1.0", "kube-flannel"),
        ("v0.22.0", "docker.io/flannel/flannel:v0.22.0",
         "docker.io/flannel/flannel-cni-plugin:v1.1.2", "kube-flannel"),
        ("v0.26.4", "ghcr.io/flannel-io/flannel:v0.26.4",
         "ghcr.io/flannel-io/flannel-cni-plugin:v1.6.2-flannel1", "kube-flannel"),
        # docs/RELEASE-FACTS.md 8: kube-flannel.yml at each tag
        ("v0.27.2", "ghcr.io/flannel-io/flannel:v0.27.2",
         "ghcr.io/flannel-io/flannel-cni-plugin:v1.7.1-flannel1", "kube-flannel"),
        ("v0.27.4", "ghcr.io/flannel-io/flannel:v0.27.4",
         "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1", "kube-flannel"),
        ("v0.28.2", "ghcr.io/flannel-io/flannel:v0.28.2",
         "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.0-flannel1", "kube-flannel"),
        ("v0.28.5", "ghcr.io/flannel-io/flannel:v0.28.5",
         "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel1", "kube-flannel"),
        ("v0.28.8", "ghcr.io/flannel-io/flannel:v0.28.8",
         "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel2", "kube-flannel"),
        ("v0.28.9", "ghcr.io/flannel-io/flannel:v0.28.9",
         "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3", "kube-flannel"),
    ],
)
def test_flannel_images_and_namespace_follow_the_release(version, image, plugin, namespace):
    f = flannel.release(version)
    assert (f.image, f.cni_plugin_image, f.namespace) == (image, plugin, namespace)


def test_flannel_registry_override_keeps_image_names():
    f = flannel.release("v0.22.0", "registry.example.com/mirror/")
    assert f.images == ["registry.example.com/mirror/flannel-cni-plugin:v1.1.2",
                        "registry.example.com/mirror/flannel:v0.22.0"]


@pytest.mark.parametrize("version", ["v0.14.0", "v0.22.0"])
def test_flannel_manifest_network_is_the_pod_cidr(version):
    inv = inventory(f"cluster: {{pod_network_cidr: 10.200.0.0/16}}\n"
                    f"network: {{flannel_version: {version}}}\n")
    objs = list(yaml.safe_load_all(flannel.manifest(inv)))
    f = flannel.release(version)
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    assert '"Network": "10.200.0.0/16"' in cm["data"]["net-conf.json"]
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    images = [c["image"] for c in spec["initContainers"] + spec["containers"]]
    assert set(images) == set(f.images)
    assert {o["metadata"].get("namespace", f.namespace) for o in objs
            if o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Namespace")} \
        == {f.namespace}
    assert any(o["kind"] == "Namespace" for o in objs) == (f.namespace != "kube-system")


IPTABLES_AFTER_KUBEADM_RESET = {
    "filter": [":INPUT ACCEPT [0:0]", ":KUBE-FIREWALL - [0:0]",
               "-A INPUT -j KUBE-FIREWALL", "-A FORWARD -s 10.244.0.0/16 -j ACCEPT"],
    "nat": [":POSTROUTING ACCEPT [0:0]",
            "-A POSTROUTING -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE"],
    "mangle": [":PREROUTING ACCEPT [0:0]"],
}


def test_reset_iptables_finds_kubernetes_leftovers_only():
    left = reset.iptables_leftovers(IPTABLES_AFTER_KUBEADM_RESET, "10.244.0.0/16")
    assert left == ["filter: :KUBE-FIREWALL - [0:0]", "filter: -A INPUT -j KUBE-FIREWALL",
                    "filter: -A FORWARD -s 10.244.0.0/16 -j ACCEPT",
                    "nat: -A POSTROUTING -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE"]
    clean = {"filter": [":INPUT DROP [0:0]", "-A INPUT -p tcp --dport 22 -j ACCEPT"]}
    assert reset.iptables_leftovers(clean, "10.244.0.0/16") == []


def test_reset_iptables_sets_policies_to_accept_before_flushing():
    inv = inventory()
    p = reset.IPTABLES.plan(Target(inv, inv.init_node), {"iptables": IPTABLES_AFTER_KUBEADM_RESET})
    script = p.actions[0].command
    assert script.index("-P INPUT ACCEPT") < script.index("-F")
    assert all(f"-t {t} -F" in script and f"-t {t} -X" in script
               for t in ("filter", "nat", "mangle"))
    assert reset.IPTABLES.plan(Target(inv, inv.init_node), {"iptables": {}}).empty


def test_drain_flag_by_release():
    assert "--delete-emptydir-data" in reset.drain_command("node1", (1, 20, 10))
    assert "--delete-local-data" in reset.drain_command("node1", (1, 19, 16))


FAKE_KUBECTL = """#!/bin/sh
# a fake kubectl for the wait probe: answers from files in $FAKE
case "$*" in
  *"get nodes"*) cat "$FAKE/nodes" ;;
  *"-n kube-system"*) cat "$FAKE/ks" ;;
  *) cat "$FAKE/other" ;;
esac
"""


@pytest.mark.parametrize(
    ("nodes", "pods", "ok"),
    [
        ("NAME STATUS ROLES AGE VERSION\nmaster1 Ready control-plane 1m v1.20.10\n",
         "coredns-a-1 1/1 Running 0 1m\nkube-flannel-ds-x 1/1 Running 0 1m\n", True),
        ("master1 Ready control-plane 1m v1.20.10\n",
         "coredns-a-1 0/1 ContainerCreating 0 1m\nkube-flannel-ds-x 1/1 Running 0 1m\n", False),
        ("master1 NotReady control-plane 1m v1.20.10\n",
         "coredns-a-1 1/1 Running 0 1m\nkube-flannel-ds-x 1/1 Running 0 1m\n", False),
        ("master1 Ready control-plane 1m v1.20.10\n", "coredns-a-1 1/1 Running 0 1m\n", False),
    ],
    ids=["ready-with-header-row", "coredns-creating", "notready", "no-flannel-pod"],
)
def test_wait_probe_logic(tmp_path, nodes, pods, ok):
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "kubectl"
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(0o755)
    (tmp_path / "nodes").write_text(nodes)
    (tmp_path / "ks").write_text(pods)
    script = wait_script(["master1"], {"kube-flannel-ds-": "kube-system",
                                       "coredns-": "kube-system"}, timeout=1, interval=1)
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", FAKE=str(tmp_path))
    res = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                         timeout=30)
    assert (res.returncode == 0) == ok, res.stdout + res.stderr
    assert parse_nodes(res.stdout)["master1"] in ("Ready", "NotReady")
    assert {name for name, _, _ in parse_pods(res.stdout)} <= {"coredns-a-1", "kube-flannel-ds-x"}


def test_kubeadm_error_lines_are_the_ones_that_say_why():
    stderr = (
        "W1121 warning: something\n[preflight] Some fatal errors occurred:\n"
        "\t[ERROR Swap]: running with swap on is not supported. Please disable swap\n"
        "[preflight] If you know what you are doing, you can make a check non-fatal with "
        "`--ignore-preflight-errors=...`\n"
        "error execution phase preflight: [preflight] Some fatal errors occurred:\n"
        "To see the stack trace of this error execute with --v=5 or higher\n"
    )
    lines = error_lines(stderr)
    assert lines[0].strip().startswith("[ERROR Swap]")
    assert any(ln.startswith("error execution phase preflight") for ln in lines)


def test_secrets_mask_any_bootstrap_token_shape():
    s = Secrets()
    text = "kubeadm join 1.2.3.4:6443 --token abcdef.0123456789abcdef --discovery-token-ca"
    assert "0123456789abcdef" not in s.mask(text)
    assert s.mask("version v1.20.10 and file kubeadm-config.yaml") == \
        "version v1.20.10 and file kubeadm-config.yaml"


def test_wait_evidence_keeps_only_the_last_progress_line():
    from bootstrap.cluster.init import _evidence_lines

    text = ("waiting: master1 NotReady\n" * 40 + "NAME STATUS\nmaster1 NotReady\n"
            "--- kubectl describe node master1 (conditions)\nReady False KubeletNotReady\n"
            "waiting: master1 NotReady coredns 0/2\n")
    assert _evidence_lines(text) == ["NAME STATUS", "master1 NotReady",
                                     "--- kubectl describe node master1 (conditions)",
                                     "Ready False KubeletNotReady",
                                     "waiting: master1 NotReady coredns 0/2"]


@pytest.mark.parametrize(("info", "have"), [
    ('{"config": {"sandboxImage": "registry.k8s.io/pause:3.8"}}', "registry.k8s.io/pause:3.8"),
    ('{"config": {"sandboxImage": ""}}', None),  # containerd 2.x reports none (RELEASE-FACTS 5)
    ('{"status": {}}', None),
    ("", None),
])
def test_sandbox_image_from_crictl_info(info, have):
    from bootstrap.cluster import phases

    assert phases._sandbox(info, 0) == have


def test_a_sandbox_image_kubeadm_would_call_inconsistent_stops_init():
    from bootstrap.cluster import phases

    inv = inventory("cluster: {kubernetes_version: '1.30.1'}\n")
    t = Target(inv, inv.init_node)
    assert phases.sandbox_mismatch(t, "registry.aliyuncs.com/google_containers/pause:3.9") is None
    assert phases.sandbox_mismatch(t, None) is None
    why = phases.sandbox_mismatch(t, "registry.k8s.io/pause:3.8")
    assert why == ("containerd's sandbox image is registry.k8s.io/pause:3.8, not "
                   "registry.aliyuncs.com/google_containers/pause:3.9 (what kubeadm 1.30.1 uses "
                   "from cluster.image_repository): run invoke prepare-nodes --limit master1, "
                   "which writes containerd's config")


def test_reset_deletes_kube_proxys_nftables_tables_only():
    from bootstrap.cluster import reset as R

    fact = R._nft()
    listing = "table inet firewalld\ntable ip kube-proxy\ntable ip6 kube-proxy\ntable ip nat\n"
    assert fact.parse(listing, 0) == ["ip kube-proxy", "ip6 kube-proxy"]
    assert fact.parse("", 127) == []  # no nft on the node
    inv = inventory()
    p = R._nft_plan(Target(inv, inv.init_node), {"nftables": ["ip kube-proxy"]})
    assert [a.command for a in p.actions] == ["nft delete table ip kube-proxy"]
    assert R._nft_plan(Target(inv, inv.init_node), {"nftables": []}).actions == []
