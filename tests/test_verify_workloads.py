"""verify's workload checks (pure): manifests validate against every release's API schemas, and
the judges read the real tools' output (busybox wget and nslookup, curl -w '%{http_code}',
kubectl's Pod and Service JSON as the API reference shapes them)."""

from __future__ import annotations

import json

import kubernetes_validate as kv
import pytest
import yaml

from bootstrap import verify_workloads as W
from bootstrap.inventory import load_text

INV = """\
cluster: {kubernetes_version: '1.30.1'}
nodes:
  - {name: master1, address: 192.168.177.100, role: master}
  - {name: node1, address: 192.168.177.101, role: worker}
"""


def inv(extra: str = ""):
    return load_text(extra + INV)


@pytest.mark.parametrize("minor", [f"1.{n}" for n in range(25, 38)])
def test_the_manifests_validate_against_each_release(minor):
    docs = [d for d in yaml.safe_load_all(W.manifests(inv())) if d]
    assert [d["kind"] for d in docs] == ["Namespace", "DaemonSet", "Deployment", "Service"]
    for doc in docs:
        kv.validate(doc, minor, strict=True)


def test_the_manifests_take_the_inventory_images_and_namespace():
    text = W.manifests(inv("verify: {namespace: smoke, busybox_image: m.example/busybox:1.36, "
                           "nginx_image: m.example/nginx:1.27}\n"))
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert {d["metadata"].get("namespace", d["metadata"]["name"]) for d in docs} == {"smoke"}
    assert "image: m.example/busybox:1.36" in text and "image: m.example/nginx:1.27" in text


def pod(name: str, node: str, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "k8s-bootstrap-verify",
                         "labels": {"app.kubernetes.io/name": "netcheck",
                                    "controller-revision-hash": "6d9f7",
                                    "pod-template-generation": "1"}},
            "spec": {"nodeName": node},
            "status": {"phase": "Running", "hostIP": "192.168.177.100", "podIP": ip,
                       "podIPs": [{"ip": ip}]}}


READ = "\n".join([
    "<<verify pods",
    json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        pod("netcheck-abcde", "master1", "10.244.0.4"), pod("netcheck-fghij", "node1",
                                                            "10.244.1.3")]}),
    "<<verify nginx",
    json.dumps({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "nginx", "namespace": "k8s-bootstrap-verify"},
                "spec": {"type": "NodePort", "clusterIP": "10.103.124.17",
                         "clusterIPs": ["10.103.124.17"], "selector": {"app": "nginx"},
                         "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80,
                                    "nodePort": 31517}]}}),
    "<<verify kubernetes",
    json.dumps({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                    "targetPort": 6443}]}}),
])
# busybox 1.36 nslookup (its output: the server, then Name/Address of the answer)
NSLOOKUP_KUBE = ("Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n"
                 "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\n\n")
NSLOOKUP_NGINX = ("Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n"
                  "Name:\tnginx.k8s-bootstrap-verify.svc.cluster.local\nAddress: 10.103.124.17\n")
NXDOMAIN = ("Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n"
            "** server can't find nginx.k8s-bootstrap-verify.svc.cluster.local: NXDOMAIN\n")
EXEC_OK = "\n".join([
    "<<verify wget netcheck-abcde netcheck-fghij", "node1", "<<verify rc 0",
    "<<verify wget netcheck-fghij netcheck-abcde", "master1", "<<verify rc 0",
    "<<verify nslookup kubernetes.default.svc.cluster.local", NSLOOKUP_KUBE.rstrip("\n"),
    "<<verify rc 0",
    "<<verify nslookup nginx.k8s-bootstrap-verify.svc.cluster.local",
    NSLOOKUP_NGINX.rstrip("\n"), "<<verify rc 0",
])


def test_objects_and_results_parse_the_scripts_output():
    found = W.objects(READ)
    assert found.netcheck == {"netcheck-abcde": ("master1", "10.244.0.4"),
                              "netcheck-fghij": ("node1", "10.244.1.3")}
    assert (found.nginx_ip, found.node_port, found.kubernetes_ip) == (
        "10.103.124.17", 31517, "10.96.0.1")
    got = W.results(EXEC_OK)
    assert got["wget netcheck-abcde netcheck-fghij"] == (0, "node1")
    assert W._addresses(got["nslookup kubernetes.default.svc.cluster.local"][1]) == ["10.96.0.1"]


def test_the_scripts_name_every_pair_and_every_target():
    i, found = inv(), W.objects(READ)
    script = W.exec_script(i, found, 20)
    assert ("exec netcheck-abcde -- wget -q -O - -T 5 http://10.244.1.3:8080/" in script)
    assert ("exec netcheck-fghij -- wget -q -O - -T 5 http://10.244.0.4:8080/" in script)
    assert "nslookup nginx.k8s-bootstrap-verify.svc.cluster.local" in script
    curl = W.curl_script(i, found, 20)
    for target in ("192.168.177.100:31517", "192.168.177.101:31517", "10.103.124.17:80"):
        assert f"http://{target}/" in curl


def test_a_working_cluster_passes_the_workload_checks():
    i, found, got = inv(), W.objects(READ), W.results(EXEC_OK)
    assert W.judge_pod_network(i, found, got).ok
    assert W.judge_dns(i, found, got).ok
    ok = {t: (0, "200") for t in ("curl 192.168.177.100:31517", "curl 192.168.177.101:31517",
                                  "curl 10.103.124.17:80")}
    o = W.judge_nodeport(i, found, {"master1": ok, "node1": ok})
    assert o.ok and o.observed.startswith("6 requests answered 200 (NodePort 31517")


def test_dropped_pod_traffic_fails_pod_network_naming_the_pair():
    i, found = inv(), W.objects(READ)
    got = W.results(EXEC_OK.replace(
        "<<verify wget netcheck-abcde netcheck-fghij\nnode1\n<<verify rc 0",
        "<<verify wget netcheck-abcde netcheck-fghij\nwget: download timed out\n"
        "command terminated with exit code 1\n<<verify rc 1"))
    o = W.judge_pod_network(i, found, got)
    assert not o.ok and o.observed == "master1 -> node1 fails"
    assert o.evidence == ["netcheck-abcde (master1) -> 10.244.1.3:8080 (node1): wget: download "
                          "timed out (exit 1)"]
    assert "VXLAN port (8472/udp)" in o.next


def test_dns_failures_name_the_name():
    i, found = inv(), W.objects(READ)
    got = W.results(EXEC_OK.replace(NSLOOKUP_NGINX.rstrip("\n") + "\n<<verify rc 0",
                                    NXDOMAIN.rstrip("\n") + "\n<<verify rc 1"))
    o = W.judge_dns(i, found, got)
    assert not o.ok and o.observed == "nginx.k8s-bootstrap-verify.svc.cluster.local -> no answer"
    assert "k8s-app=kube-dns" in o.next


def test_a_node_port_silent_on_one_node_fails_naming_it():
    i, found = inv(), W.objects(READ)
    ok = {t: (0, "200") for t in ("curl 192.168.177.100:31517", "curl 192.168.177.101:31517",
                                  "curl 10.103.124.17:80")}
    silent = {**ok, "curl 192.168.177.101:31517": (7, "000")}
    o = W.judge_nodeport(i, found, {"master1": silent, "node1": silent})
    assert not o.ok
    assert o.observed == ("master1 -> 192.168.177.101:31517: 000; node1 -> "
                          "192.168.177.101:31517: 000")
    assert "port 31517" in o.next


def test_workloads_that_never_start_fail_every_workload_check_with_the_events():
    got = W._all_failed(inv(), ["PodNetwork", "DNS"], "the workloads did not start in 60s: "
                        "error: timed out waiting for the condition",
                        ["Warning Failed pod/nginx-1 Failed to pull image \"nginx:1.27\""])
    assert [(o.check, o.ok) for o in got] == [("PodNetwork", False), ("DNS", False)]
    assert all("Failed to pull image" in o.evidence[0] for o in got)
    assert "describe pods (images: docker.io/library/busybox:1.36" in got[0].next


def test_the_curl_script_reports_curls_own_exit_status(tmp_path):
    """Each target's line is curl's status, not that of a later command."""
    import os
    import subprocess

    fake = tmp_path / "curl"
    fake.write_text("#!/bin/sh\nprintf 000\nexit 7\n")
    fake.chmod(0o755)
    found = W.Objects({}, "10.103.124.17", 31517, "10.96.0.1")
    out = subprocess.run(["sh", "-c", W.curl_script(inv(), found, 10)], capture_output=True,
                         text=True, env={"PATH": f"{tmp_path}:{os.environ['PATH']}"}).stdout
    got = W.results(out)
    assert got["curl 192.168.177.100:31517"] == (7, "000")
    assert set(got) == {"curl 192.168.177.100:31517", "curl 192.168.177.101:31517",
                        "curl 10.103.124.17:80"}


def test_the_exec_probes_run_at_once_and_report_in_order(tmp_path):
    """A fake kubectl that waits until all four probes have started (a barrier, no timing): run
    one after another, the first would give up and say so. Each result comes back under its own
    key with its own exit status."""
    import os
    import subprocess

    log = tmp_path / "started"
    fake = tmp_path / "kubectl"
    fake.write_text(
        "#!/bin/sh\n"
        f"echo x >> {log}\n"
        "i=0\n"
        f"while [ $(wc -l < {log}) -lt 4 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done\n"
        f"[ $(wc -l < {log}) -lt 4 ] && {{ echo 'probes ran one at a time'; exit 9; }}\n"
        "case \"$*\" in\n"
        "  *10.244.1.3*) echo node1;;\n"
        "  *10.244.0.4*) echo 'wget: download timed out'; exit 1;;\n"
        "  *nslookup*) printf 'Name:\\tx\\nAddress: 10.96.0.1\\n';;\n"
        "esac\n")
    fake.chmod(0o755)
    script = W.exec_script(inv(), W.objects(READ), 10)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:{os.environ['PATH']}"}).stdout
    got = W.results(out)
    assert len(got) == 4, out
    assert got["wget netcheck-abcde netcheck-fghij"] == (0, "node1")
    assert got["wget netcheck-fghij netcheck-abcde"] == (1, "wget: download timed out")
    assert W._addresses(got["nslookup kubernetes.default.svc.cluster.local"][1]) == ["10.96.0.1"]
