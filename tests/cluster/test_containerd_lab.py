"""The containerd path end to end (issues #13 and #14), one shared 3-node lab per case, in file
order:

bad inputs (nothing changes) -> prepare (two nodes, then the third with --limit, as a worker
added later) -> no-op prepare -> init -> no-op init -> join (3 Ready) -> no-op join -> reset ->
re-init and join. Every node's containerd config is checked from inside the node by the values
the real containerd loader read (the lab's containerd start hook snapshots them).
"""

from __future__ import annotations

import io
import json
import re

import pytest
import yaml

from bootstrap import commands, releases
from bootstrap import containerd as C
from bootstrap import verify as V
from bootstrap.cluster.common import STATE_FILES
from bootstrap.commands import CommonOptions
from bootstrap.report import Reporter
from lab.inventory import pin
from tests.engine import module_lab

from . import Recorder, cluster_changes

pytestmark = pytest.mark.lab

# (flavour, containerd.io, Kubernetes, extra cluster settings): #13's three cases, then #14's:
# containerd 2 with the newest release, the last release that allows containerd 1.x, and an EL8
# node (cgroup v1) on 1.35 through the cluster.allow_cgroup_v1 opt-out
CASES = {
    "el9-1.7-1.30": ("el9", "1.7.27", "1.30.1", {}),
    "el8-1.7-1.28": ("el8", "1.7.27", "1.28.2", {}),
    "el7-1.6-1.23": ("el7", "1.6.33", "1.23.17", {}),
    "el9-2.1-1.37": ("el9", "2.1.5", "1.37.0", {"proxy_mode": "nftables"}),
    "el9-1.7-1.35": ("el9", "1.7.27", "1.35.7", {}),
    "el8-1.7-1.35-cgroupv1": ("el8", "1.7.27", "1.35.7", {"allow_cgroup_v1": True}),
}
MIRROR = "http://127.0.0.1:5999"  # a docker.io mirror in config only: nothing contacts it
REPO = "registry.aliyuncs.com/google_containers"


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    flavour, containerd, kubernetes, extra = CASES[request.param]
    with module_lab(3, os=flavour) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        pin(the_lab.inventory_path, the_lab.mirror_url, kubernetes, runtime="containerd",
            containerd=containerd)
        data = yaml.safe_load(the_lab.inventory_path.read_text())
        data["cluster"].update(extra)
        data["registries"] = {"docker.io": [MIRROR]}
        the_lab.inventory_path.write_text(yaml.safe_dump(data, sort_keys=False))
        rec = Recorder(the_lab, tmp_path_factory.mktemp(request.param))
        yield the_lab, rec, containerd, kubernetes, request.param


def sh(node, cmd: str, user: str = "root"):
    return node.run(cmd, user=user, timeout=120)


def loaded(node) -> dict:
    """What the real containerd loader read from the node's config.toml."""
    out = sh(node, "cat /run/lab/containerd/config.json")
    assert out.returncode == 0, (node.name, out.stderr)
    return json.loads(out.stdout)


def ready(master) -> dict[str, str]:
    out = sh(master, "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o wide "
                     "--no-headers")
    return {f[0]: (f[1], f[-1]) for f in (ln.split() for ln in out.stdout.splitlines()) if f}


def unchanged(run) -> None:
    assert run.rc == 0, run.console
    hosts = run.report["hosts"]
    assert hosts and all(run.changed(h) == 0 for h in hosts), run.console


def _set(key: str, value: str):
    return lambda text: text.replace("  container_runtime: containerd\n",
                                     f"  container_runtime: containerd\n  {key}: {value}\n")


# case -> [(inventory edit, exit code, text)]: #14's bad inputs, each refused before any change
BAD = {
    "el9-1.7-1.30": [(_set("proxy_mode", "nftables"), 2,
                      "cluster.proxy_mode: 'nftables' is not offered with Kubernetes 1.30.1")],
    "el9-2.1-1.37": [
        (lambda t: t.replace("version: 2.1.5", "version: 1.7.27"), 1,
         "[ERROR ContainerdVersion] master1: Kubernetes 1.37.0 wants containerd 2.x"),
        # containerd 1.7 with 1.36, named and ignorable (PackageVersions still stops it here:
        # the lab mirror carries no 1.36 repo)
        (lambda t: t.replace("version: 2.1.5", "version: 1.7.27").replace("1.37.0", "1.36.0"),
         1, "[ERROR ContainerdVersion] node1: Kubernetes 1.36.0 wants containerd 2.x"),
        (lambda t: t.replace("1.37.0", "1.38.0"), 2,
         "'1.38.0' is not supported: it is newer than the releases this toolkit knows "
         "(KubernetesRelease"),
    ],
    "el8-1.7-1.35-cgroupv1": [
        (lambda t: t.replace("  allow_cgroup_v1: true\n", ""), 1,
         "[ERROR CgroupV1] node2: CentOS Linux 8 runs cgroup v1, and the kubelet of Kubernetes "
         "1.35.7 refuses it"),
        (_set("proxy_mode", "nftables"), 1,
         "[ERROR NftablesKernel] master1: kernel 4.18"),
    ],
}


@pytest.mark.timeout(300)
def test_01_bad_inputs_change_nothing(case):
    the_lab, rec, _, kubernetes, name = case
    good = the_lab.inventory_path.read_text()
    before = {n.name: len(n.calls()) for n in the_lab.nodes}
    try:
        if releases.release(kubernetes).runtime == "containerd":  # docker is fine below 1.24
            the_lab.inventory_path.write_text(good.replace(
                "container_runtime: containerd", "container_runtime: docker"))
            run = rec("prepare-nodes")
            assert run.rc == 2, run.console
            assert (f"cluster.container_runtime: 'docker' cannot run Kubernetes {kubernetes}: "
                    "kubeadm's dockershim was removed in 1.24") in run.console
        for edit, rc, text in BAD.get(name, []):
            the_lab.inventory_path.write_text(edit(good))
            run = rec("prepare-nodes")
            assert run.rc == rc and text in run.console, run.console
            assert "Traceback" not in run.console
            if "1.36.0" in text:  # ignorable by name: IGNORED, and PackageVersions still stops it
                run = rec("prepare-nodes", ignore="ContainerdVersion")
                assert run.rc == 1 and "[IGNORED ContainerdVersion]" in run.console, run.console
        # a minor the mirror does not carry (1.29 sits between the lab's 1.28 and 1.30)
        if kubernetes == "1.30.1":
            the_lab.inventory_path.write_text(good.replace(kubernetes, "1.29.3"))
            run = rec("prepare-nodes")
            assert run.rc == 1, run.console
            assert ("[ERROR PackageVersions] master1: repos.kubernetes "
                    f"{the_lab.mirror_url}kubernetes-new/core/stable/v1.29/rpm/ cannot be read, "
                    "so Kubernetes 1.29.3 cannot be installed from it") in run.console
            assert "Traceback" not in run.console
    finally:
        the_lab.inventory_path.write_text(good)
    for node in the_lab.nodes:
        assert cluster_changes(node, before[node.name]) == []


@pytest.mark.timeout(600)
def test_02_prepare_a_worker_added_later_gets_the_same_settings(case):
    the_lab, rec, containerd, kubernetes, _ = case
    first = rec("prepare-nodes", limit="master1,node1")
    assert first.rc == 0, first.console
    assert "container runtime: containerd (cluster.container_runtime)" in first.console
    later = rec("prepare-nodes", limit="node2")
    assert later.rc == 0, later.console
    files = ("/etc/containerd/config.toml", "/etc/crictl.yaml",
             "/etc/containerd/certs.d/docker.io/hosts.toml")
    texts = {f: {sh(n, f"cat {f}").stdout for n in the_lab.nodes} for f in files}
    assert all(len(v) == 1 and v != {""} for v in texts.values()), texts
    pause = releases.pause_image(kubernetes, REPO)
    for node in the_lab.nodes:
        got = loaded(node)
        assert got["version"] == containerd, (node.name, got)
        assert got["config_version"] == C.config_version(containerd, kubernetes), got
        assert got["cri_disabled"] is False, got
        assert got["systemd_cgroup"] is True and got["sandbox_image"] == pause, got
        assert got["registry_config_path"] == "/etc/containerd/certs.d", got
        info = sh(node, "crictl info")
        assert info.returncode == 0, (node.name, info.stdout + info.stderr)
        conditions = {c["type"]: c["status"]
                      for c in json.loads(info.stdout)["status"]["conditions"]}
        assert conditions["RuntimeReady"] is True, info.stdout
        rpms = sh(node, "rpm -q kubeadm kubelet kubectl cri-tools docker-ce").stdout
        for name in ("kubeadm", "kubelet", "kubectl"):
            assert f"{name}-{kubernetes}-" in rpms, rpms
        assert "package docker-ce is not installed" in rpms, rpms
    hosts = sh(the_lab.nodes[2], f"cat {files[2]}").stdout
    assert 'server = "https://registry-1.docker.io"' in hosts and f'[host."{MIRROR}"]' in hosts

    unchanged(rec("prepare-nodes"))


@pytest.mark.timeout(600)
def test_03_init_join_and_their_no_op_reruns(case):
    the_lab, rec, containerd, kubernetes, name = case
    master = the_lab.nodes[0]
    run = rec("init-master")
    assert run.rc == 0, run.console
    conf = sh(master, "cat /etc/kubernetes/kubeadm-config.yaml").stdout
    api = releases.release(kubernetes).kubeadm_api
    assert f"apiVersion: kubeadm.k8s.io/{api}" in conf, conf
    assert "criSocket: unix:///var/run/containerd/containerd.sock" in conf, conf
    assert "matching containerd's SystemdCgroup" in conf
    unchanged(rec("init-master"))

    run = rec("join-workers")
    assert run.rc == 0, run.console
    nodes = ready(master)
    assert {n: s for n, (s, _) in nodes.items()} == {n.name: "Ready" for n in the_lab.nodes}
    assert {rt for _, rt in nodes.values()} == {f"containerd://{containerd}"}, nodes
    if "proxy_mode: nftables" in the_lab.inventory_path.read_text():  # kube-proxy's own tables
        for node in the_lab.nodes:
            assert "table ip kube-proxy" in sh(node, "nft list tables").stdout, node.name
    # invoke verify on this path (nftables mode's ProxyMode included); seed 004's object
    # management and seed 000's Pod chapter on el9 with 1.30 and with the newest release (the
    # el8 docker path: test_verify_workloads_lab, test_verify_pods_lab)
    out = io.StringIO()
    chapter = name in ("el9-1.7-1.30", "el9-2.1-1.37")
    (the_lab.cluster_dir / "time_scale").write_text("0.1\n")
    rc = commands.verify(CommonOptions(inventory=str(the_lab.inventory_path), log_dir=None,
                                       skip=None if chapter else ",".join(
                                           (*V.OBJECTS, *V.PODS))),
                         reporter=Reporter(out=out, log_dir=None, command="verify"))
    n = 20 if chapter else 8
    assert rc == 0 and f"verify: {n} checks, {n} passed" in out.getvalue(), out.getvalue()
    unchanged(rec("join-workers"))


@pytest.mark.timeout(600)
def test_04_reset_then_a_new_cluster(case):
    the_lab, rec, _, _, _ = case
    before = {n.name: len(n.calls()) for n in the_lab.nodes}
    run = rec("reset", yes=True)
    assert run.rc == 0, run.console
    assert any(cluster_changes(n, before[n.name]) for n in the_lab.nodes)
    for node in the_lab.nodes:
        for path in STATE_FILES:
            assert sh(node, f"test -e {path}").returncode == 1, (node.name, path)
        pods = sh(node, "crictl pods -q")
        assert pods.returncode == 0 and pods.stdout.strip() == "", (node.name, pods.stdout)
        assert sh(node, "systemctl is-active containerd").stdout.strip() == "active"
        assert "kube-proxy" not in sh(node, "nft list tables").stdout, node.name
    unchanged(rec("reset", yes=True))

    assert rec("init-master").rc == 0
    assert rec("join-workers").rc == 0
    assert {s for s, _ in ready(the_lab.nodes[0]).values()} == {"Ready"}


def test_05_no_secret_in_any_output(case):
    _, rec, _, _, _ = case
    rec.collect_tokens()
    text = rec.everything()
    assert rec.tokens and not any(t in text for t in rec.tokens)
    assert not re.search(r"[a-z0-9]{6}\.[a-z0-9]{16}", text)
