"""Users' workloads in the lab cluster (issue #15 item 5; lab/k8s/STATE.md "Workloads"): verify's
manifests applied with `kubectl apply -f -` become a DaemonSet's pods on every node (the
master's taint tolerated), a Deployment's pod on a Ready worker and a NodePort Service;
`rollout status`, `exec` of busybox's wget/nslookup, the nodes' curl stand-in, the fault knobs
nodeport_down / pod_traffic_dropped, a missing image's events, and `delete namespace`."""

from __future__ import annotations

import ipaddress
import json

import pytest
from test_k8s_lab import INIT, kubeadm_cluster, root
from test_k8s_verify_objects import FLANNEL_LABELLED

from bootstrap import verify_workloads as W
from bootstrap.inventory import load_text
from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]
NS = "k8s-bootstrap-verify"
INV_TEXT = ("cluster: {kubernetes_version: '1.20.10'}\nnodes:\n"
            "  - {name: master1, address: 127.0.0.1, role: master}\n")
INV = load_text(INV_TEXT)


@pytest.fixture(scope="module")
def lab():
    with module_lab(3) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        kubeadm_cluster(the_lab, INIT, FLANNEL_LABELLED)
        master = the_lab.nodes[0]
        r = root(the_lab, master, "kubectl apply -f -", stdin=W.manifests(INV))
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [f"namespace/{NS} created",
                                         "daemonset.apps/netcheck created",
                                         "deployment.apps/nginx created", "service/nginx created"]
        yield the_lab


def kubectl(lab, args: str, node=None):
    return root(lab, node or lab.nodes[0], f"kubectl {args}")


def get(lab, args: str) -> dict:
    r = kubectl(lab, f"get {args} -o json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def faults(lab, data: dict | None) -> None:
    path = lab.cluster_dir / "faults.json"
    if data:
        path.write_text(json.dumps(data))
    elif path.exists():
        path.unlink()


def pods(lab) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in get(lab, f"-n {NS} pods")["items"]}


def test_rollout_status_pods_services_and_endpoints(lab):
    r = kubectl(lab, f"-n {NS} rollout status daemonset/netcheck --timeout=30s")
    assert (r.returncode, r.stdout) == (0, 'daemon set "netcheck" successfully rolled out\n')
    r = kubectl(lab, f"-n {NS} rollout status deployment/nginx --timeout=30s")
    assert (r.returncode, r.stdout) == (0, 'deployment "nginx" successfully rolled out\n')
    found = pods(lab)
    nodes = {n["metadata"]["name"]: n for n in get(lab, "nodes")["items"]}
    netcheck = [p for p in found.values()
                if p["metadata"]["labels"].get("app.kubernetes.io/name") == "netcheck"]
    assert sorted(p["spec"]["nodeName"] for p in netcheck) == sorted(nodes)
    for p in found.values():
        cidr = ipaddress.ip_network(nodes[p["spec"]["nodeName"]]["spec"]["podCIDR"])
        assert ipaddress.ip_address(p["status"]["podIP"]) in cidr, p["status"]
        assert p["status"]["phase"] == "Running" and "hostNetwork" not in p["spec"]
    (nginx,) = [p for p in found.values() if p["metadata"]["labels"].get("app") == "nginx"]
    assert nginx["spec"]["nodeName"] != "master1"  # no toleration for the master's taint
    assert nginx["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    svc = get(lab, f"-n {NS} service nginx")
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in ipaddress.ip_network("10.96.0.0/12")
    assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
    assert get(lab, "-n default service kubernetes")["spec"]["clusterIP"] == "10.96.0.1"
    r = kubectl(lab, f"-n {NS} get endpoints nginx")
    assert r.stdout.split("\n")[1].split()[1] == f"{nginx['status']['podIP']}:80", r.stdout
    r = root(lab, lab.nodes[0], "kubectl apply -f -", stdin=W.manifests(INV))
    assert "service/nginx unchanged" in r.stdout  # the allocated ClusterIP/NodePort are kept
    assert get(lab, f"-n {NS} service nginx")["spec"] == svc["spec"]


def test_exec_wget_nslookup_and_other_commands(lab):
    found = pods(lab)
    netcheck = {p["spec"]["nodeName"]: (n, p["status"]["podIP"]) for n, p in found.items()
                if p["metadata"]["labels"].get("app.kubernetes.io/name") == "netcheck"}
    src = netcheck["master1"][0]
    for node, (_name, ip) in netcheck.items():
        r = kubectl(lab, f"-n {NS} exec {src} -- wget -q -O - -T 5 http://{ip}:8080/")
        assert (r.returncode, r.stdout) == (0, node + "\n"), r.stderr
    nginx_ip = get(lab, f"-n {NS} service nginx")["spec"]["clusterIP"]
    r = kubectl(lab, f"-n {NS} exec {src} -- nslookup nginx.{NS}.svc.cluster.local")
    assert (r.returncode, r.stdout) == (0, (
        "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n"
        f"Name:\tnginx.{NS}.svc.cluster.local\nAddress: {nginx_ip}\n\n"))
    r = kubectl(lab, f"-n {NS} exec {src} -- nslookup nope.{NS}.svc.cluster.local")
    assert r.returncode == 1
    assert r.stdout.endswith(f"** server can't find nope.{NS}.svc.cluster.local: NXDOMAIN\n\n")
    assert r.stderr == "command terminated with exit code 1\n"
    r = kubectl(lab, f"-n {NS} exec {src} -- wget -q -O - -T 1 http://{nginx_ip}:81/")
    assert r.returncode == 1 and "wget: download timed out" in r.stderr, r.stderr
    r = kubectl(lab, f"-n {NS} exec {src} -- bash")
    assert r.returncode == 126
    assert 'exec: "bash": executable file not found in $PATH: unknown' in r.stdout
    assert r.stderr == "command terminated with exit code 126\n"
    r = kubectl(lab, f"-n {NS} exec nope -- wget")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): pods "nope" not '
                                           'found\n')


def test_pod_traffic_dropped_times_out_both_ways(lab):
    found = pods(lab)
    netcheck = {p["spec"]["nodeName"]: (n, p["status"]["podIP"]) for n, p in found.items()
                if p["metadata"]["labels"].get("app.kubernetes.io/name") == "netcheck"}
    faults(lab, {"pod_traffic_dropped": [["node1", "node2"]]})
    try:
        for a, b in (("node1", "node2"), ("node2", "node1")):
            r = kubectl(lab, f"-n {NS} exec {netcheck[a][0]} -- wget -q -O - -T 1 "
                             f"http://{netcheck[b][1]}:8080/")
            assert r.returncode == 1
            assert r.stderr == "wget: download timed out\ncommand terminated with exit code 1\n"
        r = kubectl(lab, f"-n {NS} exec {netcheck['node1'][0]} -- wget -q -O - -T 1 "
                         f"http://{netcheck['master1'][1]}:8080/")
        assert (r.returncode, r.stdout) == (0, "master1\n")
    finally:
        faults(lab, None)


def curl(lab, node, target: str):
    return root(lab, node, f"curl -s -o /dev/null -m 2 -w '%{{http_code}}' http://{target}/")


def test_curl_on_the_nodes_answers_cluster_addresses_and_refuses_the_rest(lab):
    svc = get(lab, f"-n {NS} service nginx")
    port, ip = svc["spec"]["ports"][0]["nodePort"], svc["spec"]["clusterIP"]
    for node in lab.nodes:
        for other in lab.nodes:
            r = curl(lab, node, f"{other.address}:{port}")
            assert (r.returncode, r.stdout) == (0, "200"), (node.name, other.name, r.stderr)
        r = curl(lab, node, f"{ip}:80")
        assert (r.returncode, r.stdout) == (0, "200")
    r = curl(lab, lab.nodes[1], "8.8.8.8:80")
    assert (r.returncode, r.stdout) == (7, "000")
    r = root(lab, lab.nodes[1], "curl -sS http://192.0.2.1:80/")
    assert (r.returncode, r.stderr) == (7, "curl: (7) Failed to connect to 192.0.2.1 port 80: "
                                           "Connection refused\n")
    r = root(lab, lab.nodes[1], f"curl -sf {lab.mirror_url} -o /dev/null")
    assert r.returncode in (0, 22), r.stderr  # loopback: a real request to the lab mirror
    faults(lab, {"nodeport_down": ["node2"]})
    try:
        r = curl(lab, lab.nodes[0], f"{lab.nodes[2].address}:{port}")
        assert (r.returncode, r.stdout) == (7, "000")
        r = curl(lab, lab.nodes[0], f"{lab.nodes[1].address}:{port}")
        assert (r.returncode, r.stdout) == (0, "200")
    finally:
        faults(lab, None)


def test_a_missing_image_times_out_with_the_kubelets_events(lab):
    bad = W.manifests(load_text("verify: {namespace: badimg, nginx_image: "
                                "docker.io/library/nginx:0.0.404}\n" + INV_TEXT))
    r = root(lab, lab.nodes[0], "kubectl apply -f -", stdin=bad)
    assert r.returncode == 0, r.stderr
    r = kubectl(lab, "-n badimg rollout status deployment/nginx --timeout=2s")
    assert r.returncode == 1
    assert r.stdout == ('Waiting for deployment "nginx" rollout to finish: 0 of 1 updated '
                        "replicas are available...\n")
    assert r.stderr == "error: timed out waiting for the condition\n"
    r = kubectl(lab, "-n badimg get events --sort-by=.lastTimestamp")
    assert 'Failed to pull image "docker.io/library/nginx:0.0.404": rpc error: code = ' \
           "Unknown desc = Error response from daemon: manifest for nginx:0.0.404 not found: " \
           "manifest unknown: manifest unknown" in r.stdout, r.stdout
    assert "Error: ImagePullBackOff" in r.stdout and "Error: ErrImagePull" in r.stdout
    r = kubectl(lab, "-n badimg get pods")
    assert "ImagePullBackOff" in r.stdout
    r = kubectl(lab, "delete namespace badimg --wait=false --ignore-not-found")
    assert (r.returncode, r.stdout) == (0, 'namespace "badimg" deleted\n')
    r = kubectl(lab, "-n badimg get pods")
    assert r.stderr == "No resources found in badimg namespace.\n"
    r = kubectl(lab, "delete namespace badimg --wait=false --ignore-not-found")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = kubectl(lab, "delete namespace badimg")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): namespaces "badimg" '
                                           'not found\n')
