"""What `invoke verify` (issue #15) reads from a lab cluster, in the shapes of the Kubernetes API
(core/v1 Node, Pod, ConfigMap; apps/v1 DaemonSet, Deployment): `kubectl get pods|nodes|
configmap|daemonsets|deployments -o json`, `kubectl delete ds|deployment`, `ipvsadm -S -n`, and
the kube_proxy_down fault knob (/var/lib/lab-cluster/faults.json, lab/k8s/STATE.md). One 3-node
lab, kube-proxy in ipvs mode, flannel applied."""

from __future__ import annotations

import json

import pytest
from test_k8s_lab import FLANNEL, INIT, kubeadm_cluster, root

from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]
# flannel's own manifest (v0.22+): the pod template carries these labels
FLANNEL_LABELLED = FLANNEL.replace(
    "spec:\n  template:\n    spec:",
    "spec:\n  selector: {matchLabels: {app: flannel, k8s-app: flannel}}\n  template:\n"
    "    metadata: {labels: {tier: node, app: flannel, k8s-app: flannel}}\n    spec:")
RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"


@pytest.fixture(scope="module")
def lab():
    with module_lab(3) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        kubeadm_cluster(the_lab, INIT, FLANNEL_LABELLED, ipvs=True)
        yield the_lab


def kubectl(lab, args: str):
    return root(lab, lab.nodes[0], f"kubectl {args}")


def get(lab, args: str) -> dict:
    r = kubectl(lab, f"get {args} -o json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def by_name(items: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in items}


def cond(obj: dict, kind: str) -> str:
    return next(c["status"] for c in obj["status"]["conditions"] if c["type"] == kind)


def faults(lab, **knobs) -> None:
    (lab.cluster_dir / "faults.json").write_text(json.dumps(knobs))


def test_pods_json(lab):
    import re

    master, node1, node2 = lab.nodes
    pods = get(lab, "pods -A")
    assert pods["kind"] == "List" and pods["apiVersion"] == "v1"
    items = by_name(pods["items"])
    addr = {"master1": master.address, "node1": node1.address, "node2": node2.address}
    for comp in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        p = items[f"{comp}-master1"]
        assert p["metadata"]["labels"] == {"component": comp, "tier": "control-plane"}
        assert p["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Node", "name": "master1", "controller": True,
             "uid": p["metadata"]["ownerReferences"][0]["uid"]}]
        assert p["spec"]["nodeName"] == "master1" and p["spec"]["hostNetwork"] is True
        assert p["status"]["hostIP"] == p["status"]["podIP"] == master.address
    image = items["kube-apiserver-master1"]["status"]["containerStatuses"][0]["image"]
    assert image == "registry.aliyuncs.com/google_containers/kube-apiserver:v1.20.10"

    proxies = [p for p in pods["items"] if p["metadata"]["labels"].get("k8s-app") == "kube-proxy"]
    assert sorted(p["spec"]["nodeName"] for p in proxies) == ["master1", "node1", "node2"]
    for p in proxies:
        meta, st = p["metadata"], p["status"]
        assert meta["name"].startswith("kube-proxy-") and meta["namespace"] == "kube-system"
        assert set(meta["labels"]) == {"controller-revision-hash", "k8s-app",
                                       "pod-template-generation"}
        (ref,) = meta["ownerReferences"]
        assert (ref["apiVersion"], ref["kind"], ref["name"], ref["controller"]) == (
            "apps/v1", "DaemonSet", "kube-proxy", True)
        assert st["phase"] == "Running" and cond(p, "Ready") == "True"
        assert st["hostIP"] == st["podIP"] == addr[p["spec"]["nodeName"]]
        (cs,) = st["containerStatuses"]
        assert (cs["name"], cs["ready"], cs["restartCount"]) == ("kube-proxy", True, 0)
        assert cs["image"].endswith("/kube-proxy:v1.20.10")
        assert re.match(RFC3339, cs["state"]["running"]["startedAt"])

    flannel = [p for p in pods["items"] if p["metadata"]["namespace"] == "kube-flannel"]
    assert len(flannel) == 3
    for p in flannel:
        labels = p["metadata"]["labels"]
        assert {k: labels[k] for k in ("app", "tier", "k8s-app")} == {
            "app": "flannel", "tier": "node", "k8s-app": "flannel"}
        assert labels["pod-template-generation"] == "1"
        assert p["metadata"]["ownerReferences"][0]["name"] == "kube-flannel-ds"
        assert [c["name"] for c in p["status"]["containerStatuses"]] == ["kube-flannel"]
        assert p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == \
            "Completed"
        assert cond(p, "Ready") == "True"

    dns = [p for p in pods["items"] if p["metadata"]["labels"].get("k8s-app") == "kube-dns"]
    assert len(dns) == 2
    for p in dns:
        ref = p["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "ReplicaSet" and ref["name"].startswith("coredns-")
        assert p["metadata"]["labels"]["pod-template-hash"] == ref["name"][len("coredns-"):]
        assert p["status"]["podIP"].startswith("10.244.") and "hostNetwork" not in p["spec"]
        assert p["status"]["containerStatuses"][0]["name"] == "coredns"
        assert cond(p, "Ready") == "True"

    # -n, one pod by name, a label selector, an unknown pod
    assert {p["metadata"]["namespace"] for p in get(lab, "pods -n kube-flannel")["items"]} == {
        "kube-flannel"}
    one = get(lab, f"pods -n kube-system {proxies[0]['metadata']['name']}")
    assert one["kind"] == "Pod"
    sel = get(lab, "pods -A -l k8s-app=kube-proxy")["items"]
    assert sorted(p["metadata"]["name"] for p in sel) == sorted(
        p["metadata"]["name"] for p in proxies)
    r = kubectl(lab, "get pods -n kube-system nope -o json")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): pods "nope" not '
                                           'found\n')


def test_a_pod_on_a_stopped_kubelet_keeps_its_last_status(lab):
    node2 = lab.nodes[2]
    assert root(lab, node2, "systemctl stop kubelet").returncode == 0
    try:
        items = get(lab, "pods -A")["items"]
        mine = [p for p in items if p["spec"].get("nodeName") == "node2"
                and p["metadata"]["labels"].get("k8s-app") == "kube-proxy"]
        (p,) = mine
        # the API keeps phase and container statuses; the node controller sets Ready False
        assert p["status"]["phase"] == "Running" and cond(p, "Ready") == "False"
        assert p["status"]["containerStatuses"][0]["ready"] is True
        ds = by_name(get(lab, "daemonsets -n kube-system")["items"])["kube-proxy"]
        assert (ds["status"]["desiredNumberScheduled"], ds["status"]["numberReady"],
                ds["status"]["numberUnavailable"]) == (3, 2, 1)
        node = get(lab, "node node2")
        assert cond(node, "Ready") == "Unknown"
    finally:
        assert root(lab, node2, "systemctl start kubelet").returncode == 0


def test_nodes_json(lab):
    nodes = get(lab, "nodes")
    assert [n["metadata"]["name"] for n in nodes["items"]] == ["master1", "node1", "node2"]
    for n, node in zip(nodes["items"], lab.nodes, strict=True):
        info = n["status"]["nodeInfo"]
        assert info["kubeletVersion"] == info["kubeProxyVersion"] == "v1.20.10"
        assert info["containerRuntimeVersion"] == "docker://19.3.15"
        assert (info["operatingSystem"], info["architecture"]) == ("linux", "amd64")
        assert n["status"]["addresses"] == [{"type": "InternalIP", "address": node.address},
                                            {"type": "Hostname",
                                             "address": n["metadata"]["name"]}]
        assert n["spec"]["podCIDR"].startswith("10.244.")
        assert cond(n, "Ready") == "True"


def test_configmaps(lab):
    cm = get(lab, "-n kube-system configmap kube-proxy")
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"] == {"app": "kube-proxy"}
    assert sorted(cm["data"]) == ["config.conf", "kubeconfig.conf"]
    conf = cm["data"]["config.conf"]
    assert "\nmode: ipvs\n" in conf and "\nclusterCIDR: 10.244.0.0/16\n" in conf
    assert conf.startswith("apiVersion: kubeproxy.config.k8s.io/v1alpha1\n")
    assert "kind: KubeProxyConfiguration\n" in conf
    assert f"server: https://{lab.nodes[0].address}:6443\n" in cm["data"]["kubeconfig.conf"]
    flannel = get(lab, "configmap kube-flannel-cfg -n kube-flannel")
    assert "net-conf.json" in flannel["data"] and "created" not in flannel
    listed = by_name(get(lab, "configmaps -n kube-system")["items"])
    assert {"kube-proxy", "coredns"} <= set(listed)
    r = kubectl(lab, "-n kube-system get configmap x -o json")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", 'Error from server (NotFound): configmaps "x" not found\n')
    r = kubectl(lab, "get cm -n kube-system kube-proxy")
    assert r.stdout.split("\n")[0].split() == ["NAME", "DATA", "AGE"]
    assert r.stdout.split("\n")[1].split()[:2] == ["kube-proxy", "2"]


def test_an_init_without_a_mode_writes_the_empty_string(lab):
    """kubeadm marshals KubeProxyConfiguration's mode (no omitempty): `mode: ""`. Checked on
    the stand-in's text builder, not a second cluster."""
    from lab.payload_code import state

    conf = state.kube_proxy_conf({"config": {"podSubnet": "10.244.0.0/16"},
                                  "kubernetes_version": "v1.20.10"})
    assert '\nmode: ""\n' in conf and "nftables:" not in conf
    conf = state.kube_proxy_conf({"config": {"proxyMode": "nftables"},
                                  "kubernetes_version": "v1.33.13"})
    assert "\nmode: nftables\n" in conf and "\nnftables:\n" in conf
    assert '\nclusterCIDR: ""\n' in conf


def test_daemonsets_and_deployments(lab):
    ds = by_name(get(lab, "daemonsets -A")["items"])
    assert set(ds) == {"kube-proxy", "kube-flannel-ds"}
    for o in ds.values():
        st = o["status"]
        assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["numberReady"],
                st["numberAvailable"], st["numberMisscheduled"]) == (3, 3, 3, 3, 0)
        assert "numberUnavailable" not in st  # omitempty
    assert ds["kube-proxy"]["spec"]["template"]["metadata"]["labels"] == {"k8s-app": "kube-proxy"}
    assert "created" not in ds["kube-flannel-ds"]
    deploys = get(lab, "deployments -n kube-system")
    (dns,) = deploys["items"]
    assert (dns["metadata"]["name"], dns["spec"]["replicas"]) == ("coredns", 2)
    st = dns["status"]
    assert (st["replicas"], st["readyReplicas"], st["availableReplicas"]) == (2, 2, 2)
    assert cond(dns, "Available") == "True"
    r = kubectl(lab, "get deploy -n kube-system")
    assert r.stdout.split("\n")[1].split()[:4] == ["coredns", "2/2", "2", "2"], r.stdout
    r = kubectl(lab, "get ds -n kube-system")
    assert r.stdout.split("\n")[1].split()[:7] == ["kube-proxy", "3", "3", "3", "3", "3",
                                                   "kubernetes.io/os=linux"], r.stdout


def test_kube_proxy_down_fault(lab):
    master, node1, node2 = lab.nodes
    before = root(lab, node1, "ipvsadm -S -n")
    assert f"-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r {master.address}:6443 -m -w 1" \
        in before.stdout, before.stdout
    assert "KUBE-SERVICES" in root(lab, node1, "iptables -t nat -S").stdout
    faults(lab, kube_proxy_down=["node1"])
    try:
        p = next(p for p in get(lab, "pods -n kube-system -l k8s-app=kube-proxy")["items"]
                 if p["spec"]["nodeName"] == "node1")
        (cs,) = p["status"]["containerStatuses"]
        assert p["status"]["phase"] == "Running" and cond(p, "Ready") == "False"
        assert cs["ready"] is False and cs["restartCount"] > 0
        assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert cs["state"]["waiting"]["message"].startswith(
            "back-off 40s restarting failed container=kube-proxy pod=kube-proxy-")
        assert cs["lastState"]["terminated"]["exitCode"] == 1
        r = kubectl(lab, "get pods -n kube-system -o wide")
        row = next(ln.split() for ln in r.stdout.splitlines() if "kube-proxy-" in ln
                   and " node1 " in ln)
        assert row[1:4] == ["0/1", "CrashLoopBackOff", "3"], r.stdout
        ds = by_name(get(lab, "ds -n kube-system")["items"])["kube-proxy"]["status"]
        assert (ds["numberReady"], ds["numberUnavailable"]) == (2, 1)

        # node1 keeps no kube-proxy state: no virtual service, no KUBE-SERVICES, no kube-ipvs0
        r = root(lab, node1, "ipvsadm -S -n")
        assert (r.returncode, r.stdout) == (0, ""), r.stdout
        nat = root(lab, node1, "iptables -t nat -S").stdout
        assert "KUBE-SERVICES" not in nat and "KUBE-NODE-PORT" not in nat
        assert "-N KUBE-POSTROUTING" in nat and "KUBE-LOOP-BACK" not in nat  # kubelet's only
        assert "FLANNEL-POSTRTG" in nat  # flannel still runs
        assert "kube-ipvs0" not in root(lab, node1, "ip -o link").stdout
        assert root(lab, node1, "ipset list -n").stdout.strip() == ""
        # it stays gone while the fault holds; other nodes are untouched
        assert root(lab, node1, "ipvsadm -S -n").stdout == ""
        assert "-A -t 10.96.0.1:443 -s rr" in root(lab, node2, "ipvsadm -S -n").stdout
    finally:
        faults(lab)
    # lifted: kube-proxy runs again and rewrites its state
    r = root(lab, node1, "ipvsadm -S -n")
    assert "-A -t 10.96.0.1:443 -s rr" in r.stdout, r.stdout
    assert "KUBE-SERVICES" in root(lab, node1, "iptables -t nat -S").stdout
    p = next(p for p in get(lab, "pods -n kube-system -l k8s-app=kube-proxy")["items"]
             if p["spec"]["nodeName"] == "node1")
    assert cond(p, "Ready") == "True"


def test_delete_daemonset_and_deployment(lab):
    """Last: it removes kube-proxy and coredns for good."""
    r = kubectl(lab, "delete deployment coredns -n kube-system")
    assert (r.returncode, r.stdout) == (0, 'deployment.apps "coredns" deleted\n'), r.stderr
    assert not [p for p in get(lab, "pods -n kube-system")["items"]
                if p["metadata"]["labels"].get("k8s-app") == "kube-dns"]
    assert get(lab, "deployments -n kube-system")["items"] == []
    r = kubectl(lab, "delete deployment coredns -n kube-system")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", 'Error from server (NotFound): deployments.apps "coredns" not found\n')
    r = kubectl(lab, "get deployments -n kube-system")
    assert (r.returncode, r.stderr) == (0, "No resources found in kube-system namespace.\n")

    r = kubectl(lab, "delete ds kube-proxy -n kube-system")
    assert (r.returncode, r.stdout) == (0, 'daemonset.apps "kube-proxy" deleted\n'), r.stderr
    assert not [p for p in get(lab, "pods -A")["items"]
                if p["metadata"]["labels"].get("k8s-app") == "kube-proxy"]
    r = kubectl(lab, "delete daemonset kube-proxy -n kube-system")
    assert (r.returncode, r.stderr) == (
        1, 'Error from server (NotFound): daemonsets.apps "kube-proxy" not found\n')
    # a deleted kube-proxy leaves what it wrote (it cleans nothing on exit)
    node1 = lab.nodes[1]
    assert "-A -t 10.96.0.1:443 -s rr" in root(lab, node1, "ipvsadm -S -n").stdout
    r = kubectl(lab, "delete ds kube-flannel-ds -n kube-flannel")
    assert r.stdout == 'daemonset.apps "kube-flannel-ds" deleted\n', r.stderr
    assert get(lab, "pods -n kube-flannel")["items"] == []
    r = kubectl(lab, "delete ds")
    assert (r.returncode, r.stderr) == (1, "error: resource(s) were provided, but no name was "
                                           "specified\n")
