"""verify's judges over kubectl's JSON (pure). The fixtures have the shape of real objects: Node
and Pod as the Kubernetes API reference (core/v1) defines them, with the labels kubeadm, flannel
and the kube-proxy/coredns manifests give their pods, and the kube-proxy ConfigMap kubeadm
writes (data config.conf: a KubeProxyConfiguration); none comes from the lab's stand-in."""

from __future__ import annotations

import copy

import pytest

from bootstrap import verify as V
from bootstrap.cluster import etcd as E
from bootstrap.errors import UsageError
from bootstrap.inventory import load_text

INV = """\
cluster: {kubernetes_version: '1.30.1', proxy_mode: ipvs}
nodes:
  - {name: master1, address: 192.168.177.100, role: master}
  - {name: node1, address: 192.168.177.101, role: worker}
  - {name: node2, address: 192.168.177.102, role: worker}
"""


def inv(extra: str = ""):
    return load_text(extra + INV)


def node(name: str, ready: str = "True", kubelet: str = "v1.30.1",
         runtime: str = "containerd://1.7.27") -> dict:
    conditions = [
        {"type": t, "status": "False", "reason": f"KubeletHasSufficient{t[:-8]}",
         "message": "kubelet has sufficient", "lastHeartbeatTime": "2026-11-30T12:00:00Z",
         "lastTransitionTime": "2026-11-30T11:00:00Z"}
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure")]
    conditions.append({
        "type": "Ready", "status": ready,
        "reason": "KubeletReady" if ready == "True" else "KubeletNotReady",
        "message": "kubelet is posting ready status" if ready == "True" else
        "container runtime network not ready: NetworkReady=false "
        "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not "
        "initialized", "lastHeartbeatTime": "2026-11-30T12:00:00Z",
        "lastTransitionTime": "2026-11-30T11:00:00Z"})
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                              "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "192.168.177.100"},
                          {"type": "Hostname", "address": name}],
            "conditions": conditions,
            "nodeInfo": {"architecture": "amd64", "containerRuntimeVersion": runtime,
                         "kernelVersion": "5.14.0-427.13.1.el9_4.x86_64",
                         "kubeProxyVersion": kubelet, "kubeletVersion": kubelet,
                         "operatingSystem": "linux",
                         "osImage": "Rocky Linux 9.4 (Blue Onyx)"}},
    }


def nodes_list(*items: dict) -> dict:
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": list(items)}


def pod(namespace: str, name: str, node_name: str, labels: dict, ready: bool = True,
        waiting: str | None = None, restarts: int = 0, owner: str = "DaemonSet") -> dict:
    state = ({"waiting": {"reason": waiting, "message": "back-off 5m0s restarting failed "
                          "container"}} if waiting else
             {"running": {"startedAt": "2026-11-30T11:00:00Z"}})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner,
                                          "name": name.rsplit("-", 1)[0], "controller": True}]},
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "i"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"},
                           {"type": "Ready", "status": "True" if ready else "False"},
                           {"type": "ContainersReady", "status": "True" if ready else "False"},
                           {"type": "PodScheduled", "status": "True"}],
            "hostIP": "192.168.177.100", "podIP": "10.244.0.2",
            "containerStatuses": [{"name": "c", "image": "i", "ready": ready,
                                   "restartCount": restarts, "state": state}]},
    }


def healthy_pods(nodes=("master1", "node1", "node2")) -> dict:
    items = [pod("kube-system", f"{c}-master1", "master1",
                 {"component": c, "tier": "control-plane"}, owner="Node")
             for c in V.CONTROL_PLANE]
    for i, n in enumerate(nodes):
        items.append(pod("kube-system", f"kube-proxy-{i}x7k2", n,
                         {"controller-revision-hash": "7c9d8", "k8s-app": "kube-proxy",
                          "pod-template-generation": "1"}))
        items.append(pod("kube-flannel", f"kube-flannel-ds-{i}q9zt", n,
                         {"app": "flannel", "controller-revision-hash": "5d8b6",
                          "k8s-app": "flannel", "pod-template-generation": "1",
                          "tier": "node"}))
    for i in range(2):
        items.append(pod("kube-system", f"coredns-7db6d8ff4d-{i}abcd", "node1",
                         {"k8s-app": "kube-dns", "pod-template-hash": "7db6d8ff4d"},
                         owner="ReplicaSet"))
    return nodes_list(*items)


KUBE_PROXY_CM = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "kube-proxy", "namespace": "kube-system",
                 "labels": {"app": "kube-proxy"}},
    "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nbindAddress: 0.0.0.0"
                            "\nclusterCIDR: 10.244.0.0/16\nkind: KubeProxyConfiguration\n"
                            "mode: ipvs\n",
             "kubeconfig.conf": "apiVersion: v1\nkind: Config\n"},
}
IPVSADM = ("-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 192.168.177.100:6443 -m -w 1\n"
           "-A -t 10.96.0.10:53 -s rr\n")


MEMBER = ('{"header":{"cluster_id":1,"member_id":2,"raft_term":2},"members":[{"ID":'
          '13668033151171901709,"name":"master1","peerURLs":["https://192.168.177.100:2380"],'
          '"clientURLs":["https://192.168.177.100:2379"]}]}')


def seen_ok() -> dict:
    from bootstrap.cluster import etcd

    out = {"nodes": nodes_list(node("master1"), node("node1"), node("node2")),
           "pods": healthy_pods(), "kube-proxy-config": copy.deepcopy(KUBE_PROXY_CM),
           "etcd-members": {"members": etcd.parse_members(MEMBER)},
           "etcd-health": {"https://192.168.177.100:2379": True}}
    for n in ("master1", "node1", "node2"):
        out[f"{n}:proxy-tables"] = {"rc": 0, "out": IPVSADM}
        out[f"{n}:endpoint"] = {"rc": 0, "out": "ok"}
    return out


def test_a_healthy_cluster_passes_every_check():
    outcomes = V.judge_all(inv(), V.CHECKS, seen_ok())
    assert [(o.check, o.ok) for o in outcomes] == [
        ("Nodes", True), ("SystemPods", True), ("ProxyMode", True), ("Etcd", True),
        ("Endpoint", True)]
    assert all(o.expected and o.observed for o in outcomes)
    assert outcomes[0].observed == "3 nodes Ready at v1.30.1"


def _broken(change) -> dict:
    seen = seen_ok()
    change(seen)
    return seen


def _drop_pods(seen, namespace_label):
    ns, key, value, node_name = namespace_label
    seen["pods"]["items"] = [
        p for p in seen["pods"]["items"]
        if not (p["metadata"]["namespace"] == ns and p["metadata"]["labels"].get(key) == value
                and node_name in (None, p["spec"]["nodeName"]))]


@pytest.mark.parametrize(("check", "change", "observed", "next_"), [
    ("Nodes", lambda s: s["nodes"]["items"].__setitem__(1, node("node1", ready="False")),
     "node1 not Ready", "kubectl describe node node1; on node1: journalctl -u kubelet"),
    ("Nodes", lambda s: s["nodes"]["items"].pop(2), "node2 not registered",
     "kubectl describe node node2"),
    ("Nodes", lambda s: s["nodes"]["items"].__setitem__(0, node("master1", kubelet="v1.30.0")),
     "master1 runs kubelet v1.30.0", "kubectl describe node master1"),
    ("Nodes", lambda s: s["nodes"]["items"].__setitem__(
        0, node("master1", runtime="docker://20.10.8")), "master1 runs docker://20.10.8", ""),
    ("SystemPods", lambda s: _drop_pods(s, ("kube-flannel", "app", "flannel", None)),
     "no flannel pod", "kubectl -n kube-flannel get pods -o wide -l app=flannel"),
    ("SystemPods", lambda s: _drop_pods(s, ("kube-flannel", "app", "flannel", "node2")),
     "no flannel pod on node2", "kubectl -n kube-flannel get pods -o wide -l app=flannel"),
    ("SystemPods", lambda s: _drop_pods(s, ("kube-system", "k8s-app", "kube-dns", None)),
     "no coredns pod", "kubectl -n kube-system get deployment coredns"),
    ("SystemPods", lambda s: s["pods"]["items"].__setitem__(6, pod(
        "kube-system", "kube-proxy-1x7k2", "node1", {"k8s-app": "kube-proxy"}, ready=False,
        waiting="CrashLoopBackOff", restarts=6)),
     "kube-proxy on node1 is Running/CrashLoopBackOff, 6 restarts",
     "kubectl -n kube-system describe pod kube-proxy-1x7k2"),
    ("ProxyMode", lambda s: s["node2:proxy-tables"].update(out=""),
     "node2 has no 10.96.0.1:443 in its ipvs tables",
     "kubectl -n kube-system get pods -o wide -l k8s-app=kube-proxy, then the logs of the one "
     "on node2"),
    ("ProxyMode", lambda s: s["kube-proxy-config"]["data"].update(
        {"config.conf": "kind: KubeProxyConfiguration\nmode: ''\n"}),
     "kube-proxy's config says mode ''", "kubectl -n kube-system get configmap kube-proxy"),
    ("ProxyMode", lambda s: s.update({"node1:proxy-tables": {"unreachable": "timed out"}}),
     "node1 unreachable", ""),
    ("Etcd", lambda s: s.update({"etcd-health": {}}), "master1's member is unhealthy",
     "a leftover member: invoke reset --limit NODE"),
    ("Etcd", lambda s: s["etcd-members"]["members"].append(
        E.Member("62cfce68015e2c1a", "", (), ("https://192.168.177.103:2380",))),
     "member 62cfce68015e2c1a (https://192.168.177.103:2380) was added but never started", ""),
    ("Etcd", lambda s: s["etcd-members"]["members"].append(
        E.Member("a1", "old-master", ("https://192.168.177.9:2379",), ())),
     "member old-master is not a control plane of the inventory", ""),
    ("Etcd", lambda s: s.update({"etcd-members": {"members": []}}), "master1 has no member",
     ""),
    ("Etcd", lambda s: s.update({"etcd-members": {"error": 'Error from server (NotFound): '
                                                  'pods "etcd-master1" not found'}}),
     'kubectl failed: Error from server (NotFound): pods "etcd-master1" not found',
     "kubectl -n kube-system logs etcd-master1"),
    ("Endpoint", lambda s: s.update({"node2:endpoint": {
        "rc": 1, "out": "The connection to the server 192.168.177.100:6443 was refused - did "
                        "you specify the right host or port?\n"}}),
     "node2: The connection to the server 192.168.177.100:6443 was refused",
     "on the node named: the init node's API server"),
    ("Endpoint", lambda s: s.update({"node1:endpoint": {"unreachable": "timed out"}}),
     "node1 unreachable", ""),
    ("Nodes", lambda s: s.update(nodes={"error": "The connection to the server "
                                        "127.0.0.11:6443 was refused - did you specify the right "
                                        "host or port?"}),
     "kubectl failed: The connection to the server 127.0.0.11:6443 was refused",
     "is the API server up?"),
])
def test_a_broken_cluster_fails_the_right_check(check, change, observed, next_):
    outcomes = {o.check: o for o in V.judge_all(inv(), V.CHECKS, _broken(change))}
    failed = [name for name, o in outcomes.items() if not o.ok]
    assert failed == [check], {n: o.observed for n, o in outcomes.items()}
    o = outcomes[check]
    assert observed in o.observed
    assert o.next.startswith(next_) and o.next
    assert "FAIL" in V.line(o) and "next:" in V.line(o)


@pytest.mark.parametrize(("mode", "out", "ok"), [
    ("iptables", "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "
                 "\"default/kubernetes:https cluster IP\" -m tcp --dport 443 -j "
                 "KUBE-SVC-NPX46M4PTMTKRN6Y\n", True),
    ("iptables", "-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -j KUBE-SVC-X\n", False),
    ("nftables", "table ip kube-proxy {\n\tmap service-ips {\n\t\telements = { 10.96.0.1 . tcp "
                 ". 443 : goto service-2QRHZV4L-default/kubernetes/tcp/https }\n", True),
])
def test_proxy_tables_by_mode(mode, out, ok):
    extra = f"cluster: {{kubernetes_version: '1.33.0', proxy_mode: {mode}}}\n"
    i = load_text(extra + INV.split("\n", 1)[1])
    seen = seen_ok()
    seen["kube-proxy-config"]["data"]["config.conf"] = f"mode: {mode}\n"
    for n in ("master1", "node1", "node2"):
        seen[f"{n}:proxy-tables"] = {"rc": 0, "out": out}
    assert V.judge_proxy_mode(i, seen).ok is ok


def test_the_kubernetes_service_ip_is_the_first_of_the_range():
    assert V.kubernetes_service_ip("10.96.0.0/12") == "10.96.0.1"
    assert V.kubernetes_service_ip("172.20.0.0/16") == "172.20.0.1"


def test_only_and_skip_take_check_names():
    assert [c.name for c in V.select("nodes,ProxyMode", None)] == ["Nodes", "ProxyMode"]
    assert V.selected(None, "systempods,dns")[:6] == ["Nodes", "ProxyMode", "Etcd", "Endpoint",
                                                      "PodNetwork", "NginxNodePort"]
    assert V.selected(None, ",".join(V.PODS)) == ["Nodes", "SystemPods", "ProxyMode", "Etcd",
                                                  "Endpoint", "PodNetwork", "DNS",
                                                  "NginxNodePort", "ObjectManagement"]
    assert V.selected("podnetwork", None) == ["PodNetwork"]
    with pytest.raises(UsageError) as exc:
        V.select("Nodez", None)
    assert ("--only: unknown check 'Nodez' (checks: Nodes, SystemPods, ProxyMode, Etcd, "
            "Endpoint, PodNetwork, "
            "DNS, NginxNodePort, ObjectManagement, NoCommand, CommandArgs, Env, ContainerPort, "
                "Resources, "
            "InitContainers, LifecycleHooks, LivenessProbes, ReadinessProbe, RestartPolicy, "
            "NodePlacement, ControlPlaneFailover)") in str(exc.value)
    # the disruptive check runs only when named
    assert "ControlPlaneFailover" not in V.selected(None, None)
    assert V.selected("controlplanefailover", None) == ["ControlPlaneFailover"]
    assert V.selected("Nodes,ControlPlaneFailover", None) == ["Nodes", "ControlPlaneFailover"]


def test_the_plan_reads_kubectl_on_the_master_and_the_tables_on_every_node():
    i = inv()
    got = V.plan(i, V.CHECKS, 30)
    master = [f.command for f in got["master1"]]
    assert ("timeout 30 kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json 2>&1"
            in master)
    assert "timeout 30 ipvsadm -S -n 2>&1" in master
    assert [f.command for f in got["node2"]] == [
        "timeout 30 ipvsadm -S -n 2>&1",
        "timeout 30 kubectl --kubeconfig /etc/kubernetes/kubelet.conf get --raw=/readyz 2>&1"]
    assert any("exec etcd-master1 -- etcdctl --endpoints=https://192.168.177.100:2379" in c
               for c in master)
    only_nodes = V.plan(i, V.select("Nodes", None), 30)
    assert list(only_nodes) == ["master1"]  # nothing to read on the workers


def test_the_report_lists_each_check_with_expected_and_observed():
    outcomes = V.judge_all(inv(), V.CHECKS, seen_ok())
    rep = V.report(outcomes, 1.234)
    assert rep["passed"] is True and rep["seconds"] == 1.23
    assert [c["check"] for c in rep["checks"]] == ["Nodes", "SystemPods", "ProxyMode", "Etcd",
                                                   "Endpoint"]
    assert all({"expected", "observed", "evidence", "next", "ok"} <= set(c)
               for c in rep["checks"])


def test_every_control_plane_runs_the_four_static_pods(monkeypatch):
    from bootstrap.inventory import load_text

    ha = load_text("cluster: {kubernetes_version: '1.30.1'}\nnodes:\n" + "".join(
        f"  - {{name: {n}, address: 192.168.177.{100 + i}, role: {r}}}\n"
        for i, (n, r) in enumerate([("master1", "control-plane"), ("cp2", "control-plane"),
                                    ("cp3", "control-plane"), ("node1", "worker")])))
    pods = healthy_pods(("master1", "cp2", "cp3", "node1"))
    pods["items"] += [pod("kube-system", f"{c}-{n}", n, {"component": c, "tier": "control-plane"},
                          owner="Node") for c in V.CONTROL_PLANE for n in ("cp2", "cp3")]
    out = V.judge_system_pods(ha, {"pods": pods})
    assert out.ok and out.observed == "22 system pods Running and ready", out
    assert "on master1, cp2, cp3;" in out.expected
    pods["items"] = [p for p in pods["items"] if p["metadata"]["name"] != "etcd-cp3"]
    out = V.judge_system_pods(ha, {"pods": pods})
    assert not out.ok and out.observed == "no etcd pod on cp3"
