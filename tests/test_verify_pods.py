"""verify's Pod-chapter experiments (bootstrap/verify_pods.py) over kubectl JSON in the shape
the API returns it (Pod status with container states, core/v1 Events, Endpoints)."""

from __future__ import annotations

import json

import kubernetes_validate as kv
import pytest
import yaml

from bootstrap import verify as V
from bootstrap import verify_pods as P
from bootstrap.inventory import load_text

INV = """\
cluster: {kubernetes_version: '1.30.1'}
nodes:
  - {name: master1, address: 192.168.177.100, role: master}
  - {name: node1, address: 192.168.177.101, role: worker}
  - {name: node2, address: 192.168.177.102, role: worker}
"""
T0 = "2026-11-30T10:00:00Z"


def inv():
    return load_text(INV)


WHERE = P.Placement("33Gi", "31.2Gi on node1", "node2", "node1")


# -- real-shaped objects --------------------------------------------------------------------------
def running(name, restarts=0, ready=True, image="docker.io/library/busybox:1.36", since=T0,
            last=None):
    return {"name": name, "image": image, "imageID": f"{image}@sha256:" + "a" * 64,
            "containerID": "containerd://" + "b" * 64, "ready": ready, "started": True,
            "restartCount": restarts, "state": {"running": {"startedAt": since}},
            "lastState": {"terminated": last} if last else {}}


def waiting(name, reason="CrashLoopBackOff", restarts=0, message=""):
    return {"name": name, "image": "docker.io/library/busybox:1.36", "imageID": "",
            "ready": False, "started": False, "restartCount": restarts,
            "state": {"waiting": {"reason": reason, "message": message}}, "lastState": {}}


def terminated(name, code=0, restarts=0, start=T0, end=T0):
    return {"name": name, "image": "docker.io/library/busybox:1.36", "imageID": "",
            "containerID": "containerd://" + "c" * 64, "ready": False, "started": False,
            "restartCount": restarts,
            "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0
                                     else "Error", "startedAt": start, "finishedAt": end,
                                     "containerID": "containerd://" + "c" * 64}},
            "lastState": {}}


def pod(name, containers=(), init=(), phase="Running", node="node1", ip="10.244.1.5",
        spec_containers=None, conditions=None):
    spec = {"containers": spec_containers or [{"name": c["name"], "image": c["image"]}
                                               for c in containers],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 2}
    if node:
        spec["nodeName"] = node
    status = {"phase": phase, "conditions": conditions or [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": T0}],
        "qosClass": "BestEffort", "startTime": T0}
    if node:
        status.update(hostIP="192.168.177.101", podIP=ip, podIPs=[{"ip": ip}],
                      containerStatuses=list(containers))
    if init:
        status["initContainerStatuses"] = list(init)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "k8s-bootstrap-verify",
                         "uid": "0b7c7a45-6d1e-4c1e-9a53-" + "1" * 12,
                         "creationTimestamp": T0}, "spec": spec, "status": status}


def event(pod_name, reason, message, kind="Warning", container=None):
    obj = {"kind": "Pod", "namespace": "k8s-bootstrap-verify", "name": pod_name,
           "apiVersion": "v1", "uid": "0b7c7a45"}
    if container:
        obj["fieldPath"] = f"spec.containers{{{container}}}"
    return {"apiVersion": "v1", "kind": "Event", "involvedObject": obj, "reason": reason,
            "message": message, "type": kind, "count": 1, "firstTimestamp": T0,
            "lastTimestamp": T0, "source": {"component": "kubelet", "host": "node1"},
            "metadata": {"name": f"{pod_name}.17a", "namespace": "k8s-bootstrap-verify"}}


def view(now, *pods, events=(), endpoints=None, results=None):
    return P.View(now, {p["metadata"]["name"]: p for p in pods}, list(events), endpoints or {},
                  dict(results or {}))


def make(cls):
    return cls(inv(), WHERE)


# -- names, manifests, placement --------------------------------------------------------------
def test_the_check_names_are_verify_s():
    assert P.NAMES == V.PODS
    assert V.NAMES[-len(V.PODS) - len(V.DISRUPTIVE):-len(V.DISRUPTIVE)] == list(V.PODS)


@pytest.mark.parametrize("minor", ["1.25", "1.30", "1.37"])
def test_every_manifest_validates(minor):
    exps = P.chosen(inv(), list(P.NAMES), WHERE)
    docs = [d for d in yaml.safe_load_all(P.manifests(inv(), exps)) if d]
    assert len([d for d in docs if d["kind"] == "Pod"]) == 18
    svc = yaml.safe_load(P.InitContainers(inv(), WHERE).service("mysql", 3306).text)
    for doc in [*docs, svc]:
        kv.validate(doc, minor, strict=True)


def test_the_manifests_correct_the_seed():
    text = P.manifests(inv(), P.chosen(inv(), list(P.NAMES), WHERE))
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(text) if d}
    cmds = json.dumps([c.get("command", []) + c.get("args", []) for d in docs.values()
                       for c in d.get("spec", {}).get("containers", [])
                       + d.get("spec", {}).get("initContainers", [])])
    assert "date + %T" not in cmds and "date +%T" in cmds and "ping" not in cmds
    assert "\t" not in text
    assert all(c["name"] != "nginx:" for d in docs.values()
               for c in d.get("spec", {}).get("containers", []))
    init = docs["pod-initcontainer"]["spec"]["initContainers"]
    assert "until nslookup mysql.k8s-bootstrap-verify.svc.cluster.local" in init[0]["command"][2]
    big = docs["pod-resources-too-big"]["spec"]["containers"][0]["resources"]
    assert big["requests"]["memory"] == "33Gi" == big["limits"]["memory"]
    assert docs["pod-nodename"]["spec"]["nodeName"] == "node2"
    assert docs["pod-nodeselector"]["spec"]["nodeSelector"] == {P.LABEL_KEY: P.LABEL_VALUE}
    assert docs["pod-command"]["spec"]["containers"][1]["args"]
    hook = docs["pod-hook-exec"]["spec"]
    assert hook["volumes"][0]["hostPath"] == {
        "path": "/var/tmp/k8s-bootstrap-verify/k8s-bootstrap-verify", "type": "DirectoryOrCreate"}


def test_the_images_come_from_the_inventory():
    i = load_text(INV + "verify: {busybox_image: mirror.local/busybox:1.36, "
                        "nginx_image: mirror.local/nginx:1.27}\n")
    text = P.manifests(i, P.chosen(i, list(P.NAMES), WHERE))
    images = {ln.split("image:")[1].strip() for ln in text.splitlines() if "image:" in ln}
    assert images == {"mirror.local/busybox:1.36", "mirror.local/nginx:1.27"}


def test_a_chosen_check_brings_the_pods_it_needs():
    exps = P.chosen(inv(), ["ContainerPort"], WHERE)
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(P.manifests(inv(), exps)) if d}
    assert names == {"k8s-bootstrap-verify", "pod-ports", "pod-env"}


@pytest.mark.parametrize("text,want", [("16311580Ki", 16311580 * 1024), ("24Gi", 24 * 1024**3),
                                       ("1e9", 10**9), ("512M", 512 * 10**6), ("100", 100)])
def test_memory_quantities(text, want):
    assert P.quantity_bytes(text) == want


def nodes_json(mems):
    return {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": {}},
         "status": {"capacity": {"cpu": "2", "memory": m, "pods": "110"},
                    "allocatable": {"cpu": "2", "memory": m, "pods": "110"}}}
        for n, m in mems.items()]}


def test_placement_asks_for_more_than_the_largest_node():
    got = P.placement(inv(), nodes_json({"master1": "8039676Ki", "node1": "32612540Ki",
                                         "node2": "16311580Ki"}))
    assert got.too_big == "33Gi" and got.largest == "31.1Gi on node1"
    assert (got.node_name, got.selector_node) == ("node2", "node1")
    one = load_text("nodes:\n  - {name: m, address: 10.0.0.1, role: master}\n")
    assert P.placement(one, nodes_json({"m": "1Gi"})) == P.Placement("2Gi", "1.0Gi on m",
                                                                      "m", "m")


# -- the round's script and its parsing ----------------------------------------------------------
def test_a_round_reads_pods_events_endpoints_and_runs_the_asked_execs_at_once():
    a = P.Action("exec", "Env printenv", "pod-env", "busybox", ("printenv", "username"))
    script = P.round_script(inv(), [a], 30, endpoints=True)
    assert ("{ timeout 30 kubectl --kubeconfig /etc/kubernetes/admin.conf -n "
            "k8s-bootstrap-verify exec pod-env -c busybox -- printenv username > \"$d/0\" 2>&1; "
            "echo $? > \"$d/0.rc\"; } &") in script
    assert script.index("} &") < script.index("get pods -o json") < script.index("wait")
    assert "get endpoints pod-readiness -o json" in script
    assert "endpoints" not in P.round_script(inv(), [], 30, endpoints=False)


def test_a_round_s_output_becomes_a_view():
    pods = {"apiVersion": "v1", "kind": "List", "items": [pod("pod-env", [running("busybox")])]}
    ev = {"apiVersion": "v1", "kind": "List", "items": [event("pod-env", "Pulled", "ok", "Normal")]}
    out = ("<<verify pods\n" + json.dumps(pods) + "\n<<verify events\n" + json.dumps(ev)
           + "\n<<verify endpoints\nWarning: v1 Endpoints is deprecated in v1.33+; use "
           "discovery.k8s.io/v1 EndpointSlice\n{\"subsets\": []}\n<<verify execs\n"
           "<<verify Env printenv\nadmin\n123456\n<<verify rc 0\n")
    done = {"earlier": (0, "x")}
    v = P.view(out, 3.0, done)
    assert list(v.pods) == ["pod-env"] and v.events[0]["reason"] == "Pulled"
    assert v.endpoints == {"subsets": []} and not v.error
    assert v.results["Env printenv"] == (0, "admin\n123456") and "earlier" in v.results


def test_a_kubectl_error_is_the_view_s_error():
    v = P.view("<<verify pods\nThe connection to the server 10.0.0.1:6443 was refused - did "
               "you specify the right host or port?\n<<verify events\n\n<<verify execs\n", 1, {})
    assert v.error.startswith("The connection to the server") and v.pods == {}


# -- experiments ----------------------------------------------------------------------------------
def test_no_command_passes_once_busybox_restarted():
    e = make(P.NoCommand)
    assert e.step(view(1, pod("pod-base", [running("nginx"), running("busybox")]))) == []
    e.step(view(4, pod("pod-base", [running("nginx"), waiting(
        "busybox", restarts=2, message="back-off 20s restarting failed container=busybox "
        "pod=pod-base_k8s-bootstrap-verify(0b7c7a45)")])))
    assert e.outcome.ok and "restarted 2 times (waiting (CrashLoopBackOff))" in e.outcome.observed


def test_no_command_fails_when_busybox_keeps_running():
    e = make(P.NoCommand)
    for t in (1, 5, 12):
        e.step(view(t, pod("pod-base", [running("nginx"), running("busybox")])))
    assert not e.outcome.ok and "keeps running" in e.outcome.observed


def cmd_pod(restarts=0):
    return pod("pod-command", [running("nginx"), running("busybox", restarts=restarts)])


def test_command_args_reads_the_file_through_exec():
    e = make(P.CommandArgs)
    acts = e.step(view(1, cmd_pod()))
    assert acts == [P.Action("exec", "CommandArgs cat0", "pod-command", "busybox",
                             ("cat", "/tmp/hello.txt"))]
    e.step(view(2, cmd_pod(), results={"CommandArgs cat0": (0, "10:00:01\n10:00:04\n")}))
    assert e.outcome.ok and "2 time stamps" in e.outcome.observed


def test_command_args_asks_again_then_fails_on_the_seed_s_date_bug():
    e = make(P.CommandArgs)
    bad = "date: invalid date '+'\n" * 2  # what `date + %T` writes to the file
    res = {}
    e.step(view(0, cmd_pod()))
    for i, t in enumerate((1, 2, 5, 6, 9, 10)):
        res[f"CommandArgs cat{min(i // 2, 2)}"] = (0, bad)
        e.step(view(t, cmd_pod(), results=res))
        if e.outcome:
            break
    assert not e.outcome.ok and e.outcome.observed == "/tmp/hello.txt holds no time stamps"
    assert "invalid date" in e.outcome.evidence[-1]


def test_command_args_fails_when_busybox_restarts():
    e = make(P.CommandArgs)
    e.step(view(1, cmd_pod(restarts=1), events=[event(
        "pod-command", "BackOff", "Back-off restarting failed container busybox in pod "
        "pod-command_k8s-bootstrap-verify(0b7c7a45)", container="busybox")]))
    assert not e.outcome.ok and "did the command get its args" in e.outcome.observed
    assert e.outcome.evidence[0].startswith("BackOff: Back-off restarting failed container")


@pytest.mark.parametrize("out,ok", [("admin\n123456\n", True),
                                    ("command terminated with exit code 1\n", False),
                                    ("admin\n", False)])
def test_env(out, ok):
    e = make(P.Env)
    p = pod("pod-env", [running("busybox")])
    assert e.step(view(1, p))[0].argv == ("printenv", "username", "password")
    e.step(view(2, p, results={"Env printenv": (0 if out.count("\n") == 2 else 1, out)}))
    assert e.outcome.ok is ok


def ports_pod(ports=({"name": "nginx-port", "containerPort": 80, "protocol": "TCP"},)):
    return pod("pod-ports", [running("nginx", image="docker.io/library/nginx:1.27")],
               ip="10.244.2.7", spec_containers=[{"name": "nginx", "ports": list(ports)}])


def env_pod():
    return pod("pod-env", [running("busybox")])


def test_container_port_answers_from_the_env_pod():
    e = make(P.ContainerPort)
    a = e.step(view(1, ports_pod(), env_pod()))
    assert a[0].pod == "pod-env" and a[0].argv[-1] == "http://10.244.2.7:80/"
    e.step(view(2, ports_pod(), env_pod(), results={
        "ContainerPort wget0": (0, "<html>\n<title>Welcome to nginx!</title>\n")}))
    assert e.outcome.ok and "Welcome to nginx!" in e.outcome.observed


def test_container_port_fails_when_nothing_listens():
    e = make(P.ContainerPort)
    res = {}
    for _i, t in enumerate(range(0, 20)):
        acts = e.step(view(t, ports_pod(), env_pod(), results=res))
        for a in acts:
            res[a.key] = (1, "wget: can't connect to remote host (10.244.2.7): Connection "
                             "refused\ncommand terminated with exit code 1")
        if e.outcome:
            break
    assert not e.outcome.ok and e.outcome.observed == "10.244.2.7:80 did not answer"
    assert "Connection refused" in e.outcome.evidence[-1]
    assert len(res) == 3


def test_container_port_without_a_client_says_so():
    e = make(P.ContainerPort)
    crashing = pod("pod-env", [waiting("busybox", restarts=3)])
    e.step(view(1, ports_pod(), crashing))
    o = e.timed_out(view(60, ports_pod(), crashing))
    assert o.observed.startswith("no client to ask from: pod-env's busybox is waiting "
                                 "(CrashLoopBackOff), 3 restarts")


def test_container_port_must_be_declared():
    e = make(P.ContainerPort)
    e.step(view(1, ports_pod(ports=()), env_pod()))
    assert not e.outcome.ok and "ports []" in e.outcome.observed


UNSCHEDULABLE = ("0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are "
                 "available: 3 No preemption victims found for incoming pod.")


def big_pending():
    return pod("pod-resources-too-big", node=None, phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": UNSCHEDULABLE, "lastTransitionTime": T0}])


def resources_pod():
    return pod("pod-resources", [running("nginx", image="docker.io/library/nginx:1.27")])


def test_resources_pending_and_limited():
    e = make(P.Resources)
    a = e.step(view(1, big_pending(), resources_pod(), events=[
        event("pod-resources-too-big", "FailedScheduling", UNSCHEDULABLE)]))
    assert a[0].argv[:2] == ("sh", "-c") and "memory.max" in a[0].argv[2]
    e.step(view(2, big_pending(), resources_pod(),
                results={"Resources memory.max": (0, "10737418240\n")}))
    assert e.outcome.ok
    assert any("Insufficient memory" in x for x in e.outcome.evidence)


def test_resources_fails_when_the_scheduler_ignores_requests():
    e = make(P.Resources)
    e.step(view(1, pod("pod-resources-too-big", [running("nginx")], node="node2"),
                resources_pod()))
    assert not e.outcome.ok and "scheduled to node2 although it requests" in e.outcome.observed


def test_resources_fails_without_the_memory_limit():
    e = make(P.Resources)
    e.step(view(1, big_pending(), resources_pod()))
    e.step(view(2, big_pending(), resources_pod(), results={"Resources memory.max": (0, "max")}))
    assert not e.outcome.ok and "the cgroup says max" in e.outcome.observed


def init_pod(mysql, redis, main):
    return pod("pod-initcontainer", [main], init=[mysql, redis], phase="Pending")


def test_init_containers_hold_in_order():
    e = make(P.InitContainers)
    hold = init_pod(running("test-mysql"), waiting("test-redis", "PodInitializing"),
                    waiting("main-container", "PodInitializing"))
    assert e.step(view(1, hold)) == []
    acts = e.step(view(3.5, hold))
    assert [a.key for a in acts] == ["InitContainers service mysql"]
    assert "name: mysql" in acts[0].text and "port: 3306" in acts[0].text
    second = init_pod(terminated("test-mysql", 0, start="2026-11-30T10:00:01Z",
                                 end="2026-11-30T10:00:05Z"), running("test-redis"),
                      waiting("main-container", "PodInitializing"))
    assert e.step(view(5, second)) == []
    assert [a.key for a in e.step(view(7.5, second))] == ["InitContainers service redis"]
    done = init_pod(terminated("test-mysql", 0, start="2026-11-30T10:00:01Z",
                               end="2026-11-30T10:00:05Z"),
                    terminated("test-redis", 0, start="2026-11-30T10:00:05Z",
                               end="2026-11-30T10:00:09Z"),
                    running("main-container", since="2026-11-30T10:00:10Z"))
    e.step(view(10, done))
    assert e.outcome.ok, e.outcome
    assert "test-mysql 2026-11-30T10:00:01Z..2026-11-30T10:00:05Z" in e.outcome.evidence[-1]


def test_init_containers_that_do_not_block_fail():
    e = make(P.InitContainers)
    e.step(view(1, init_pod(running("test-mysql"), waiting("test-redis", "PodInitializing"),
                            running("main-container"))))
    assert not e.outcome.ok
    assert e.outcome.observed.startswith("main-container started before Service mysql existed")


def test_init_containers_out_of_order_fail():
    e = make(P.InitContainers)
    e.stage = 2
    e.step(view(10, init_pod(terminated("test-mysql", 0, start="2026-11-30T10:00:06Z",
                                        end="2026-11-30T10:00:07Z"),
                             terminated("test-redis", 0, start="2026-11-30T10:00:01Z",
                                        end="2026-11-30T10:00:02Z"),
                             running("main-container", since="2026-11-30T10:00:10Z"))))
    assert not e.outcome.ok and "out of order" in e.outcome.observed


def hook_pod():
    return pod("pod-hook-exec", [running("main-container", image="nginx")], node="node2")


def test_hooks_poststart_then_prestop_on_delete():
    e = make(P.LifecycleHooks)
    assert e.step(view(1, hook_pod()))[0].argv == ("cat", "/usr/share/nginx/html/index.html")
    acts = e.step(view(2, hook_pod(), results={"LifecycleHooks index": (0, "postStart...\n")}))
    assert acts == [P.Action("delete", "LifecycleHooks delete", pod="pod-hook-exec")]
    res = {"LifecycleHooks delete": (0, 'pod "pod-hook-exec" deleted\n')}
    acts = e.step(view(3, results=res))
    assert acts[0].kind == "node" and acts[0].node == "node2"
    assert acts[0].text == "cat /var/tmp/k8s-bootstrap-verify/k8s-bootstrap-verify/prestop"
    res["LifecycleHooks prestop"] = (0, "preStop...\n")
    e.step(view(4, results=res))
    assert e.outcome.ok


def test_hooks_skipped_fail_at_poststart_and_at_prestop():
    e = make(P.LifecycleHooks)
    e.step(view(1, hook_pod()))
    e.step(view(2, hook_pod(), results={"LifecycleHooks index": (0, "<!DOCTYPE html>\n")}))
    assert not e.outcome.ok and e.outcome.observed == "postStart did not write index.html"
    e = make(P.LifecycleHooks)
    e.stage, e.node = 2, "node2"
    e.step(view(4, results={"LifecycleHooks prestop": (1, "cat: can't open '/var/tmp/...': "
                                                          "No such file or directory")}))
    assert not e.outcome.ok and "preStop left no file" in e.outcome.observed


def liveness(name, failing_restarts, healthy_restarts=0):
    return pod(name, [running("healthy", restarts=healthy_restarts),
                      running("failing", restarts=failing_restarts)])


LIVE = ("pod-liveness-exec", "pod-liveness-tcp", "pod-liveness-http")


def test_liveness_restarts_the_failing_and_spares_the_healthy():
    e = make(P.LivenessProbes)
    e.step(view(1, *(liveness(n, 0) for n in LIVE)))
    e.step(view(4, *(liveness(n, 1) for n in LIVE)))
    assert e.outcome is None  # the healthy ones not yet watched for 8 s
    msgs = [event("pod-liveness-tcp", "Unhealthy", "Liveness probe failed: dial tcp "
                  "10.244.1.5:8081: connect: connection refused", container="failing")]
    e.step(view(9.5, *(liveness(n, 1) for n in LIVE), events=msgs))
    assert e.outcome.ok
    assert "connection refused" in e.outcome.evidence[1]


def test_liveness_that_never_restarts_fails_at_the_deadline():
    e = make(P.LivenessProbes)
    pods = [liveness(n, 0) for n in LIVE]
    for t in (1, 10, 30):
        e.step(view(t, *pods))
    o = e.timed_out(view(30, *pods))
    assert not o.ok and o.observed.startswith("a container whose liveness probe fails was never "
                                              "restarted")


def test_liveness_fails_when_a_passing_probe_restarts():
    e = make(P.LivenessProbes)
    e.step(view(1, liveness("pod-liveness-exec", 1, healthy_restarts=1)))
    assert not e.outcome.ok and "probe passes restarted" in e.outcome.observed


def ready_pod(ready):
    return pod("pod-readiness", [running("nginx", ready=ready, image="nginx")], ip="10.244.1.9")


def endpoints(ready=(), unready=()):
    subset = {"ports": [{"port": 80, "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = [{"ip": i, "nodeName": "node1", "targetRef": {
            "kind": "Pod", "name": "pod-readiness", "namespace": "k8s-bootstrap-verify"}}
            for i in ready]
    if unready:
        subset["notReadyAddresses"] = [{"ip": i} for i in unready]
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "pod-readiness"},
            "subsets": [subset]}


def test_readiness_in_and_out_of_the_endpoints():
    e = make(P.ReadinessProbe)
    out = endpoints(unready=["10.244.1.9"])
    assert e.step(view(1, ready_pod(False), endpoints=out)) == []
    acts = e.step(view(2.2, ready_pod(False), endpoints=out))
    assert acts[0].argv == ("touch", "/tmp/ready")
    acts = e.step(view(3, ready_pod(True), endpoints=endpoints(ready=["10.244.1.9"])))
    assert acts[0].argv == ("rm", "-f", "/tmp/ready")
    e.step(view(4, ready_pod(False), endpoints=out))
    e.step(view(5.1, ready_pod(False), endpoints=out))
    assert e.outcome.ok


def test_readiness_ignored_by_the_endpoints_fails():
    e = make(P.ReadinessProbe)
    e.step(view(1, ready_pod(False), endpoints=endpoints(ready=["10.244.1.9"])))
    assert not e.outcome.ok and "not ready" in e.outcome.observed


def test_readiness_stuck_says_which_step():
    e = make(P.ReadinessProbe)
    e.stage = 1
    e.step(view(9, ready_pod(False), endpoints=endpoints(unready=["10.244.1.9"])))
    o = e.timed_out(view(9, ready_pod(False)))
    assert o.observed.startswith("waiting for it to be ready and in the endpoints after touch")


def restart_pods(always=1, onfailure=1, ok_phase="Succeeded", never_phase="Failed",
                 never_restarts=0):
    return [pod("pod-restart-always", [running("busybox", restarts=always)]),
            pod("pod-restart-onfailure", [waiting("busybox", restarts=onfailure)]),
            pod("pod-restart-onfailure-ok", [terminated("busybox", 0)], phase=ok_phase),
            pod("pod-restart-never", [terminated("busybox", 1, restarts=never_restarts)],
                phase=never_phase)]


def test_restart_policies():
    e = make(P.RestartPolicy)
    e.step(view(1, *restart_pods(always=0)))
    assert e.outcome is None
    e.step(view(2, *restart_pods()))
    assert e.outcome.ok
    e = make(P.RestartPolicy)
    e.step(view(2, *restart_pods(never_phase="Running", never_restarts=1)))
    assert not e.outcome.ok and "pod-restart-never restarted" in e.outcome.observed


def test_node_placement():
    e = make(P.NodePlacement)
    e.step(view(1, pod("pod-nodename", [running("nginx")], node="node2"),
                pod("pod-nodeselector", [running("nginx")], node="node1")))
    assert e.outcome.ok
    e = make(P.NodePlacement)
    e.step(view(1, pod("pod-nodeselector", [running("nginx")], node="master1")))
    assert not e.outcome.ok and e.outcome.observed == "pod-nodeselector went to master1, not node1"


def test_a_timeout_names_the_pods_and_their_warnings():
    e = make(P.NoCommand)
    o = e.timed_out(view(120, pod("pod-base", [running("nginx"), waiting(
        "busybox", "ErrImagePull")]), events=[event("pod-base", "Failed", "Failed to pull image "
                                                   "\"docker.io/library/busybox:1.36\"")]))
    assert not o.ok and "pod-base: Running on node1, nginx running" in o.observed
    assert "busybox waiting (ErrImagePull)" in o.observed
    assert o.evidence == ['Failed: Failed to pull image "docker.io/library/busybox:1.36"']
    assert o.next.startswith("kubectl -n k8s-bootstrap-verify describe pod pod-base")


def test_dry_run_shows_commands_and_manifests():
    text = P.dry_run_text(inv(), list(P.NAMES), 60, keep=False)
    assert "label node node1 k8s-bootstrap.io/verify-node=selected --overwrite" in text
    assert "<largest allocatable memory + 1Gi>" in text and "kind: Pod" in text
    assert text.rstrip().endswith("delete namespace k8s-bootstrap-verify")
    assert "delete namespace" not in P.dry_run_text(inv(), ["Env"], 60, keep=True)


def test_liveness_fails_early_when_a_failed_probe_restarts_nothing():
    e = make(P.LivenessProbes)
    said = [event("pod-liveness-exec", "Unhealthy", "Liveness probe failed: cat: can't open "
                  "'/tmp/healthy': No such file or directory", container="failing")]
    pods = [liveness(n, 0) for n in LIVE]
    e.step(view(2, *pods, events=said))
    e.step(view(11, *pods, events=said))
    assert e.outcome is None  # 9 s after the first failure: still the kubelet's time
    e.step(view(12.5, *pods, events=said))
    assert not e.outcome.ok
    assert e.outcome.observed == ("a container whose liveness probe fails was never restarted "
                                  "(pod-liveness-exec's failing container)")
    assert "Liveness probe failed: cat" in e.outcome.evidence[0]


def test_readiness_retries_a_failed_exec_then_gives_up():
    e = make(P.ReadinessProbe)
    out = endpoints(unready=["10.244.1.9"])
    e.step(view(1, ready_pod(False), endpoints=out))
    assert e.step(view(2.2, ready_pod(False), endpoints=out))[0].key == "ReadinessProbe touch0"
    res = {}
    for i in range(3):
        res[f"ReadinessProbe touch{i}"] = (1, "error: unable to upgrade connection: container "
                                              "not found (\"nginx\")")
        acts = e.step(view(3 + i, ready_pod(False), endpoints=out, results=res))
        if i < 2:
            assert [a.key for a in acts] == [f"ReadinessProbe touch{i + 1}"]
    assert not e.outcome.ok and e.outcome.observed == ("kubectl exec touch /tmp/ready failed 3 "
                                                       "times")
