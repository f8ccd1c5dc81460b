"""Bare Pods, the API side (issue #16; lab/k8s/STATE.md "Bare pods: the API side"): the
scheduler's stand-in (k8s/scheduler.py: requests vs allocatable, nodeName, nodeSelector, taints,
FailedScheduling texts per release, retries), nodes' capacity/allocatable/labels, `kubectl label
node`, Pods rendered from the node runner's status files, events, endpoints honouring
readiness, `kubectl delete pod` waiting for the runner, and the API-side fault knobs.

The pure tests import the stand-in's modules on the host (lab/payload_code.py); the lab tests
share one 3-node 1.20 cluster. Pods that must not meet a real node runner are bound with
`nodeName: ghost` (the API accepts a node that does not exist; nothing runs them), so the test
plays the runner: it writes their status files and removes deleted objects itself."""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import threading
import time

import pytest
from test_k8s_lab import INIT, kubeadm_cluster, root
from test_k8s_verify_objects import FLANNEL_LABELLED

from lab.payload_code import state as ST
from lab.pytest_plugin import module_lab

S = importlib.import_module("k8s.scheduler")  # on sys.path through lab.payload_code

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]
NS = "pods-api"
GI = 1024 ** 3


# ---- pure: scheduler.py -------------------------------------------------------------------------

def cluster(version: str = "v1.20.10", **caps) -> dict:
    nodes = {"master1": {"role": "control-plane"}, "node1": {"role": "worker"},
             "node2": {"role": "worker"}}
    for n, cap in caps.items():
        nodes[n]["capacity"] = cap
    return {"kubernetes_version": version, "nodes": nodes, "cluster_id": "c",
            "config": {"podSubnet": "10.244.0.0/16"}}


@pytest.fixture
def ready_nodes(monkeypatch):
    monkeypatch.setattr(ST, "node_status", lambda d, n: {"status": "True"})
    monkeypatch.setattr(ST, "pods", lambda d: [])
    monkeypatch.setattr(ST, "faults", lambda: {})
    monkeypatch.setattr(S, "machine", lambda: {"cpus": 2, "mem_kib": 4 * 1024 * 1024,
                                               "disk": 100 * GI})


def pod(name="p", **spec) -> dict:
    spec.setdefault("containers", [{"name": "c", "image": "busybox"}])
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


def requests(cpu=None, mem=None) -> list[dict]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v is not None}
    return [{"name": "c", "image": "busybox", "resources": {"requests": req}}]


def test_quantities_and_pod_requests():
    assert S.cpu_milli("100m") == 100 and S.cpu_milli("0.5") == 500 and S.cpu_milli(2) == 2000
    assert S.mem_bytes("64Mi") == 64 << 20 and S.mem_bytes("1G") == 10 ** 9
    assert S.mem_bytes("129e6") == 129 * 10 ** 6
    limits = {"name": "d", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    spec = {"containers": [*requests("100m", "10Mi"), limits],
            "initContainers": requests("2", "5Mi") + requests("10m", "2Gi")}
    # containers' sum (a limit alone is the request), at least each init container's (max rule)
    assert S.pod_requests(spec) == (2000, 2 * GI)


def test_capacity_and_allocatable_follow_the_machine(ready_nodes):
    cap, alloc = S.capacity(cluster(), "node1")
    assert cap["memory"] == f"{4 * 1024 * 1024}Ki" and cap["cpu"] == "2"
    assert alloc["memory"] == f"{4 * 1024 * 1024 - 102400}Ki"  # evictionHard 100Mi
    assert cap["pods"] == alloc["pods"] == "110"
    assert int(alloc["ephemeral-storage"]) == int(100 * GI * 0.9)
    _, alloc = S.capacity(cluster(node2={"memory": "2Gi", "cpu": "1"}), "node2")
    assert (alloc["memory"], alloc["cpu"]) == (f"{2 * 1024 * 1024 - 102400}Ki", "1")


@pytest.mark.parametrize(("version", "text"), [
    ("v1.20.10", "0/3 nodes are available: 3 Insufficient memory."),
    ("v1.22.17", "0/3 nodes are available: 1 node(s) had taint {node-role.kubernetes.io/master: "
                 "}, that the pod didn't tolerate, 2 Insufficient memory. preemption: 0/3 nodes "
                 "are available: 1 Preemption is not helpful for scheduling, 2 No preemption "
                 "victims found for incoming pod."),
    ("v1.28.0", "0/3 nodes are available: 1 node(s) had untolerated taint "
                "{node-role.kubernetes.io/control-plane: }, 2 Insufficient memory. preemption: "
                "0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No "
                "preemption victims found for incoming pod."),
])
def test_insufficient_memory_message_per_release(ready_nodes, version, text):
    assert S.schedule_one(cluster(version), pod(containers=requests(mem="5Gi")), []) == (
        None, text)


def test_fits_tolerations_selector_and_what_runs_already(ready_nodes, monkeypatch):
    data = cluster("v1.28.0", node1={"memory": "1Gi"}, node2={"memory": "1Gi"})
    big = pod(containers=requests(mem="800Mi"))
    assert S.schedule_one(data, big, [])[0] == "node1"  # least allocated, ties by name
    running = [{"node": "node1", "bare": "pod/x/y", "phase": "Running", "owner": "",
                "bare_spec": {"containers": requests(mem="500Mi")}}]
    assert S.schedule_one(data, big, running)[0] == "node2"
    running.append(dict(running[0], node="node2"))
    node, why = S.schedule_one(data, big, running)  # the master has room but is tainted
    assert (node, why.split(". ")[0]) == (None, (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 2 Insufficient memory"))
    tolerant = pod(containers=requests(mem="800Mi"), tolerations=[
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    assert S.schedule_one(data, tolerant, running)[0] == "master1"
    sel = pod(nodeSelector={"disk": "ssd"})
    assert S.schedule_one(data, sel, [])[1] == (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node "
        "affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful "
        "for scheduling.")
    data["nodes"]["node2"]["labels"] = {"disk": "ssd"}
    assert S.schedule_one(data, sel, []) == ("node2", "")
    # 1.20's filter order: NodeAffinity before TaintToleration, no preemption text
    assert S.schedule_one(cluster("v1.20.10"), sel, [])[1] == (
        "0/3 nodes are available: 3 node(s) didn't match node selector.")
    data["nodes"]["node1"]["unschedulable"] = True
    monkeypatch.setattr(ST, "node_status", lambda d, n: {
        "status": "False" if n == "node2" else "True"})
    assert S.schedule_one(data, pod(), [])[1] == (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 1 node(s) had untolerated taint "
        "{node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable. preemption: 0/3 nodes "
        "are available: 3 Preemption is not helpful for scheduling.")


def test_static_and_system_pods_count_against_allocatable(ready_nodes):
    data = cluster("v1.28.0", master1={"cpu": "1"})
    statics = [{"node": "master1", "owner": "Node", "phase": "Running",
                "labels": {"component": c}} for c in S.STATIC_REQUESTS]
    tolerant = pod(containers=requests(cpu="400m"), nodeName=None, tolerations=[
        {"operator": "Exists"}], nodeSelector={"kubernetes.io/hostname": "master1"})
    # 250m + 200m + 100m + 100m = 650m used of 1 CPU: 400m more does not fit
    assert "1 Insufficient cpu" in S.schedule_one(data, tolerant, statics)[1]
    tolerant["spec"]["containers"] = requests(cpu="350m")
    assert S.schedule_one(data, tolerant, statics)[0] == "master1"


def test_api_fault_knobs_in_the_scheduler(ready_nodes, monkeypatch):
    data = cluster("v1.28.0")
    monkeypatch.setattr(ST, "faults", lambda: {"scheduler_ignores_requests": ["big"]})
    assert S.schedule_one(data, pod("big", containers=requests(mem="100Gi")), [])[0] == "node1"
    assert S.schedule_one(data, pod("other", containers=requests(mem="100Gi")), [])[0] is None
    monkeypatch.setattr(ST, "faults", lambda: {"node_selector_ignored": True})
    assert S.schedule_one(data, pod(nodeSelector={"kubernetes.io/hostname": "node1"}),
                          [])[0] == "node2"
    assert S.schedule_one(data, pod(nodeName="node1"), [])[0] == "node2"
    monkeypatch.setattr(ST, "faults", lambda: {})
    assert S.schedule_one(data, pod(nodeSelector={"kubernetes.io/hostname": "node1"}),
                          [])[0] == "node1"


def status(containers: list[dict], init: list[dict] | None = None, phase="Running",
           ready=False) -> dict:
    st = {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}],
          "containerStatuses": containers}
    if init is not None:
        st["initContainerStatuses"] = init
    return st


def api(st: dict, n_init=0, n=1, deleting=False) -> dict:
    meta = {"name": "p"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": st,
            "spec": {"containers": [{}] * n, "initContainers": [{}] * n_init}}


RUN = {"ready": True, "restartCount": 0, "state": {"running": {"startedAt": "x"}}}
WAIT_INIT = {"ready": False, "restartCount": 0, "state": {"waiting": {"reason":
                                                                      "PodInitializing"}}}


@pytest.mark.parametrize(("pod_", "row"), [
    (api(status([WAIT_INIT], [{"restartCount": 0, "state": {"running": {}}},
                              {"restartCount": 0, "state": {"waiting": {
                                  "reason": "PodInitializing"}}}], "Pending"), n_init=2),
     ("0/1", "Init:0/2", 0)),
    (api(status([WAIT_INIT], [{"restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                              {"restartCount": 0, "state": {"running": {}}}], "Pending"),
         n_init=2), ("0/1", "Init:1/2", 0)),
    (api(status([WAIT_INIT], [{"restartCount": 0, "state": {"terminated": {"exitCode": 0}}}],
                "Pending"), n_init=1), ("0/1", "PodInitializing", 0)),
    (api(status([dict(RUN)], ready=True)), ("1/1", "Running", 0)),
    (api(status([{"ready": False, "restartCount": 4, "state": {"waiting": {
        "reason": "CrashLoopBackOff"}}}])), ("0/1", "CrashLoopBackOff", 4)),
    (api(status([{"ready": False, "restartCount": 0, "state": {"terminated": {
        "exitCode": 0, "reason": "Completed"}}}], phase="Succeeded")), ("0/1", "Completed", 0)),
    (api(status([{"ready": False, "restartCount": 0, "state": {"terminated": {
        "exitCode": 1, "reason": "Error"}}}], phase="Failed")), ("0/1", "Error", 0)),
    (api(status([dict(RUN)], ready=True), deleting=True), ("1/1", "Terminating", 0)),
    (api({"phase": "Pending"}), ("0/1", "Pending", 0)),
])
def test_kubectl_columns_ready_status_restarts(pod_, row):
    assert S.print_row(pod_)[:3] == row


# ---- the lab ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab():
    with module_lab(3) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        kubeadm_cluster(the_lab, INIT, FLANNEL_LABELLED)
        master = the_lab.nodes[0]
        r = root(the_lab, master, "kubectl apply -f -",
                 stdin=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n")
        assert r.returncode == 0, r.stderr
        (the_lab.cluster_dir / "time_scale").write_text("0.01")
        yield the_lab


def kubectl(lab, args: str, stdin: str | None = None, node=None):
    return root(lab, node or lab.nodes[0], f"kubectl {args}", stdin=stdin)


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


@contextlib.contextmanager
def cluster_state(lab):
    """The state under the stand-ins' lock (what a node runner does)."""
    fd = open(lab.cluster_dir / "state.lock", "a+")  # noqa: SIM115
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = lab.cluster_dir / "state.json"
        data = json.loads(path.read_text())
        yield data
        with open(path, "r+") as fh:
            fh.truncate(0)
            fh.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
    finally:
        fd.close()


def manifest(name: str, *, labels: dict | None = None, **spec) -> str:
    spec.setdefault("containers", [{"name": "web", "image": "docker.io/library/nginx:1.27"}])
    spec.setdefault("terminationGracePeriodSeconds", 2)
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": NS, "labels": labels or {"app": name}}, "spec": spec})


def apply(lab, *docs: str):
    r = kubectl(lab, "apply -f -", stdin="\n---\n".join(docs))
    assert r.returncode == 0, r.stderr
    return r


def write_status(lab, name: str, st: dict, events: list | None = None) -> None:
    obj = get(lab, f"-n {NS} pod {name}")
    d = lab.cluster_dir / "pods" / NS
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps({"uid": obj["metadata"]["uid"], "status": st}))
    if events is not None:
        (d / f"{name}.events.json").write_text(json.dumps(events))


def remove(lab, name: str) -> None:
    with cluster_state(lab) as data:
        data["objects"].pop(f"pod/{NS}/{name}", None)


def events_of(lab, name: str) -> list[dict]:
    return [e for e in get(lab, f"-n {NS} events")["items"]
            if e["involvedObject"]["name"] == name]


def test_nodes_report_capacity_allocatable_and_labels(lab):
    nodes = {n["metadata"]["name"]: n for n in get(lab, "nodes")["items"]}
    with open("/proc/meminfo") as fh:
        mem = next(int(x.split()[1]) for x in fh if x.startswith("MemTotal:"))
    for n in nodes.values():
        assert n["status"]["capacity"]["memory"] == f"{mem}Ki"
        assert n["status"]["allocatable"]["memory"] == f"{mem - 102400}Ki"
        assert n["status"]["capacity"]["pods"] == "110"
    master = nodes["master1"]
    assert master["metadata"]["labels"]["node-role.kubernetes.io/master"] == ""
    assert master["spec"]["taints"] == [{"effect": "NoSchedule",
                                         "key": "node-role.kubernetes.io/master"}]
    assert nodes["node1"]["metadata"]["labels"]["kubernetes.io/hostname"] == "node1"
    r = kubectl(lab, "describe node node1")
    assert f"Allocatable:\n  cpu:                {nodes['node1']['status']['allocatable']['cpu']}" \
        in r.stdout, r.stdout
    assert f"  memory:             {mem - 102400}Ki\n" in r.stdout


def test_label_node_outputs_and_errors(lab):
    r = kubectl(lab, "label node node1 color=blue")
    assert (r.returncode, r.stdout) == (0, "node/node1 labeled\n")
    assert get(lab, "node node1")["metadata"]["labels"]["color"] == "blue"
    r = kubectl(lab, "label node node1 color=red")
    assert (r.returncode, r.stderr) == (1, "error: 'color' already has a value (blue), and "
                                           "--overwrite is false\n")
    r = kubectl(lab, "label node node1 color=blue --overwrite")
    assert (r.returncode, r.stdout) == (0, "node/node1 not labeled\n")
    r = kubectl(lab, "label node node1 color=red --overwrite")
    assert (r.returncode, r.stdout) == (0, "node/node1 labeled\n")
    r = kubectl(lab, "label node node1 color-")
    assert (r.returncode, r.stdout) == (0, "node/node1 unlabeled\n")
    r = kubectl(lab, "label node node1 color-")
    assert (r.returncode, r.stdout) == (0, 'label "color" not found.\nnode/node1 not labeled\n')
    r = kubectl(lab, "label node nope color=blue")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): nodes "nope" not '
                                           'found\n')
    assert "color" not in get(lab, "node node1")["metadata"]["labels"]


def test_scheduling_binds_refuses_and_retries(lab):
    nodes = {n["metadata"]["name"]: n for n in get(lab, "nodes")["items"]}
    apply(lab, manifest("plain", containers=[{"name": "web", "image": "nginx:1.27",
                                              "resources": {"requests": {"memory": "10Mi"}}}]),
          manifest("huge", containers=[{"name": "web", "image": "nginx:1.27", "resources": {
              "requests": {"memory": "100000Gi"}}}]),
          manifest("picky", nodeSelector={"disk": "ssd"}),
          manifest("named", nodeName="node2"))
    pods = {p["metadata"]["name"]: p for p in get(lab, f"-n {NS} pods")["items"]}
    plain = pods["plain"]
    assert plain["spec"]["nodeName"] in ("node1", "node2")
    assert plain["metadata"]["uid"] and plain["metadata"]["creationTimestamp"]
    assert pods["named"]["spec"]["nodeName"] == "node2"
    for name in ("huge", "picky"):
        assert "nodeName" not in pods[name]["spec"]
        assert pods[name]["status"]["phase"] == "Pending"
    (cond,) = pods["huge"]["status"]["conditions"]
    assert cond == {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient memory.",
                    "lastProbeTime": None, "lastTransitionTime": cond["lastTransitionTime"]}
    (ev,) = events_of(lab, "huge")
    assert (ev["type"], ev["reason"], ev["reportingComponent"], ev["action"]) == (
        "Warning", "FailedScheduling", "default-scheduler", "Scheduling")
    assert ev["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "huge",
                                    "namespace": NS, "uid": pods["huge"]["metadata"]["uid"]}
    assert ev["message"] == cond["message"] and ev["eventTime"] and ev["source"] == {}
    assert [e["reason"] for e in events_of(lab, "named")  # nodeName: the scheduler never saw it
            if e.get("reportingComponent") == "default-scheduler"] == []
    (ev, *_kubelet) = events_of(lab, "plain")
    assert (ev["reason"], ev["message"]) == (
        "Scheduled", f"Successfully assigned {NS}/plain to {plain['spec']['nodeName']}")
    # the retry: the label appears, a later kubectl run binds the pending pod
    r = kubectl(lab, "label node node1 disk=ssd")
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            picky = get(lab, f"-n {NS} pod picky")
            if picky["spec"].get("nodeName"):
                break
            time.sleep(0.3)
        assert picky["spec"]["nodeName"] == "node1"
        assert "Scheduled" in [e["reason"] for e in events_of(lab, "picky")]
        cidr = nodes["node1"]["spec"]["podCIDR"]
        r = kubectl(lab, f"-n {NS} get pods picky -o wide")
        assert r.stdout.split("\n")[1].split()[6] == "node1", r.stdout
        assert cidr.rsplit(".", 2)[0] == cidr.rsplit(".", 2)[0]
    finally:
        kubectl(lab, "label node node1 disk-")
    with cluster_state(lab) as data:
        ip = data["objects"][f"pod/{NS}/picky"]["lab"]["podIP"]
        assert ip.startswith(nodes["node1"]["spec"]["podCIDR"].rsplit(".", 1)[0] + ".")
        assert 210 <= int(ip.rsplit(".", 1)[1]) <= 254  # disjoint from workloads' .10-.209
    r = kubectl(lab, f"-n {NS} get pods huge")
    assert r.stdout.split("\n")[1].split()[1:4] == ["0/1", "Pending", "0"], r.stdout
    r = apply(lab, manifest("huge", containers=[{"name": "web", "image": "nginx:1.27",
                                                 "resources": {"requests": {
                                                     "memory": "100000Gi"}}}]))
    assert r.stdout == "pod/huge unchanged\n"
    r = kubectl(lab, f"-n {NS} delete pod plain huge picky named --timeout=60s")
    assert r.returncode == 0, r.stderr  # the nodes' runners stop them and remove the objects
    assert r.stdout.count("deleted\n") == 4


def test_pods_rendered_from_the_runners_status_and_events(lab):
    apply(lab, manifest("shown", nodeName="ghost",
                        initContainers=[{"name": "wait", "image": "busybox:1.36"}]))
    r = kubectl(lab, f"-n {NS} get pods shown")
    assert r.stdout.split("\n")[1].split()[1:3] == ["0/1", "Pending"], r.stdout
    st = {"phase": "Running", "podIP": "10.244.9.210", "hostIP": "127.0.0.99",
          "conditions": [{"type": "Ready", "status": "True"}],
          "initContainerStatuses": [{"name": "wait", "restartCount": 0, "ready": True,
                                     "state": {"terminated": {"exitCode": 0,
                                                              "reason": "Completed"}}}],
          "containerStatuses": [{"name": "web", "ready": True, "restartCount": 2,
                                 "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                                 "lastState": {"terminated": {
                                     "exitCode": 1, "finishedAt": "2026-01-01T00:00:00Z"}}}]}
    kubelet = {"apiVersion": "v1", "kind": "Event", "type": "Normal", "reason": "Started",
               "message": "Started container web", "count": 1,
               "firstTimestamp": "2030-01-01T00:00:00Z", "lastTimestamp": "2030-01-01T00:00:00Z",
               "involvedObject": {"kind": "Pod", "name": "shown", "namespace": NS,
                                  "fieldPath": "spec.containers{web}"},
               "source": {"component": "kubelet", "host": "ghost"}}
    write_status(lab, "shown", st, [kubelet])
    got = get(lab, f"-n {NS} pod shown")
    assert got["status"]["containerStatuses"] == st["containerStatuses"]
    assert got["status"]["qosClass"] == "BestEffort"
    assert got["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert got["spec"]["restartPolicy"] == "Always" and got["spec"]["nodeName"] == "ghost"
    r = kubectl(lab, f"-n {NS} get pods shown -o wide")
    assert r.stdout.split("\n")[1].split()[1:4] == ["1/1", "Running", "2"], r.stdout
    assert "10.244.9.210" in r.stdout
    (ev,) = events_of(lab, "shown")
    assert ev["source"] == {"component": "kubelet", "host": "ghost"}
    r = kubectl(lab, f"-n {NS} get events")
    assert "pod/shown" in r.stdout and "Started container web" in r.stdout
    r = kubectl(lab, f"-n {NS} describe pod shown")
    assert r.returncode == 0, r.stderr
    assert "Priority:             0" in r.stdout
    assert [x.split()[:2] + x.split()[3:4] for x in r.stdout.split("Events:")[1].splitlines()
            if x.startswith("  Normal")] == [["Normal", "Started", "kubelet"]], r.stdout
    # a stale file (another uid) is not this pod's
    d = lab.cluster_dir / "pods" / NS
    (d / "shown.json").write_text(json.dumps({"uid": "other", "status": st}))
    assert get(lab, f"-n {NS} pod shown")["status"]["phase"] == "Pending"
    kubectl(lab, f"-n {NS} delete pod shown --wait=false")
    remove(lab, "shown")


SERVICE = json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {
    "name": "web", "namespace": NS}, "spec": {"selector": {"tier": "web"}, "ports": [
        {"port": 80, "targetPort": "http"}]}})
PORTS = [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080,
                                                           "name": "http"}]}]


def test_endpoints_split_ready_and_unready_pods(lab):
    apply(lab, SERVICE, manifest("ep-ready", labels={"tier": "web"}, nodeName="ghost",
                                 containers=PORTS),
          manifest("ep-unready", labels={"tier": "web"}, nodeName="ghost", containers=PORTS))
    ip = {}
    for name, ok in (("ep-ready", "True"), ("ep-unready", "False")):
        ip[name] = get(lab, f"-n {NS} pod {name}")["metadata"]["uid"]
        write_status(lab, name, {"phase": "Running", "conditions": [
            {"type": "Ready", "status": ok}], "containerStatuses": []})
    ep = get(lab, f"-n {NS} endpoints web")
    (subset,) = ep["subsets"]
    assert [a["targetRef"]["name"] for a in subset["addresses"]] == ["ep-ready"]
    assert [a["targetRef"]["name"] for a in subset["notReadyAddresses"]] == ["ep-unready"]
    assert subset["addresses"][0]["targetRef"]["uid"] == ip["ep-ready"]
    assert subset["ports"] == [{"port": 8080, "protocol": "TCP"}]
    faults(lab, {"readiness_ignored": True})
    try:
        (subset,) = get(lab, f"-n {NS} endpoints web")["subsets"]
        assert sorted(a["targetRef"]["name"] for a in subset["addresses"]) == [
            "ep-ready", "ep-unready"]
        assert "notReadyAddresses" not in subset
    finally:
        faults(lab, None)
    r = kubectl(lab, f"-n {NS} get endpoints web")
    assert r.stderr == ""  # the 1.33+ deprecation warning: not on 1.20
    for name in ("ep-ready", "ep-unready"):
        kubectl(lab, f"-n {NS} delete pod {name} --wait=false")
        remove(lab, name)
    kubectl(lab, f"-n {NS} delete -f -", stdin=SERVICE)


def test_delete_pod_waits_for_the_runner_and_times_out(lab):
    apply(lab, manifest("doomed", nodeName="ghost"))
    r = kubectl(lab, f"-n {NS} delete pod doomed --wait=true --timeout=1s")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, 'pod "doomed" deleted\n', "error: timed out waiting for the condition on "
                                     "pods/doomed\n")
    obj = get(lab, f"-n {NS} pod doomed")
    assert obj["metadata"]["deletionTimestamp"] and obj["metadata"][
        "deletionGracePeriodSeconds"] == 2
    r = kubectl(lab, f"-n {NS} get pods doomed")
    assert r.stdout.split("\n")[1].split()[2] == "Terminating", r.stdout
    timer = threading.Timer(1.5, remove, (lab, "doomed"))  # the fake runner
    timer.start()
    try:
        t0 = time.time()
        r = kubectl(lab, f"-n {NS} delete pod doomed --timeout=60s")
        assert (r.returncode, r.stdout) == (0, 'pod "doomed" deleted\n'), r.stderr
        assert time.time() - t0 >= 1.0
    finally:
        timer.join()
    r = kubectl(lab, f"-n {NS} delete pod doomed")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): pods "doomed" not '
                                           'found\n')
    # delete -f waits the same way
    doc = manifest("doomed-f", nodeName="ghost")
    apply(lab, doc)
    r = kubectl(lab, f"-n {NS} delete -f - --timeout=1s", stdin=doc)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, 'pod "doomed-f" deleted\n', "error: timed out waiting for the condition on "
                                       "pods/doomed-f\n")
    remove(lab, "doomed-f")
    # an unscheduled pod goes at once
    apply(lab, manifest("nowhere", nodeSelector={"no": "such"}))
    r = kubectl(lab, f"-n {NS} delete pod nowhere")
    assert (r.returncode, r.stdout) == (0, 'pod "nowhere" deleted\n')


def test_delete_namespace_marks_its_bare_pods(lab):
    ns = "pods-api-gone"
    r = kubectl(lab, "apply -f -", stdin=f"apiVersion: v1\nkind: Namespace\nmetadata: "
                f"{{name: {ns}}}\n---\n" + manifest("left", nodeName="ghost").replace(
                    f'"namespace": "{NS}"', f'"namespace": "{ns}"'))
    assert r.returncode == 0, r.stderr
    r = kubectl(lab, f"delete namespace {ns} --wait=false --ignore-not-found")
    assert (r.returncode, r.stdout) == (0, f'namespace "{ns}" deleted\n')
    obj = get(lab, f"-n {ns} pod left")
    assert obj["metadata"]["deletionTimestamp"]
    r = kubectl(lab, "get namespaces")
    assert [ns, "Terminating"] in [x.split()[:2] for x in r.stdout.splitlines()], r.stdout
    one = get(lab, f"namespace {ns}")  # what verify waits on before it applies again
    assert (one["kind"], one["status"]["phase"]) == ("Namespace", "Terminating")
    assert one["metadata"]["deletionTimestamp"]
    assert get(lab, "namespace default")["status"]["phase"] == "Active"
    r = kubectl(lab, f"get namespace {ns} -o name")
    assert r.stdout == f"namespace/{ns}\n"
    other = manifest("late", nodeName="ghost").replace(f'"namespace": "{NS}"',
                                                       f'"namespace": "{ns}"')
    r = kubectl(lab, "apply -f -", stdin=other)
    assert (r.returncode, r.stderr) == (1, 'Error from server (Forbidden): error when creating '
                                           '"STDIN": pods "late" is forbidden: unable to create '
                                           f"new content in namespace {ns} because it is being "
                                           "terminated\n")
    with cluster_state(lab) as data:  # the runner's last step
        data["objects"].pop(f"pod/{ns}/left")
    r = kubectl(lab, "get namespaces")
    assert ns not in r.stdout, r.stdout
    r = kubectl(lab, f"get namespace {ns} -o json")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", f'Error from server (NotFound): namespaces "{ns}" not found\n')


def test_scheduler_fault_knobs_through_kubectl(lab):
    faults(lab, {"scheduler_ignores_requests": ["greedy"]})
    try:
        big = [{"name": "web", "image": "nginx:1.27",
                "resources": {"requests": {"memory": "100000Gi"}}}]
        apply(lab, manifest("greedy", containers=big), manifest("modest", containers=big))
        assert get(lab, f"-n {NS} pod greedy")["spec"].get("nodeName")
        assert not get(lab, f"-n {NS} pod modest")["spec"].get("nodeName")
        faults(lab, {"node_selector_ignored": ["stray"]})
        apply(lab, manifest("stray", nodeName="node2"))
        assert get(lab, f"-n {NS} pod stray")["spec"]["nodeName"] == "node1"
    finally:
        faults(lab, None)
    r = kubectl(lab, "apply -f -", stdin=manifest("bad", containers=[{
        "name": "web", "image": "nginx:1.27", "resources": {"requests": {"memory": "lots"}}}]))
    assert (r.returncode, r.stderr) == (1, 'Error from server (BadRequest): error when creating '
                                           '"STDIN": Pod in version "v1" cannot be handled as a '
                                           "Pod: quantities must match the regular expression "
                                           "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'\n")
    for name in ("greedy", "modest", "stray"):
        kubectl(lab, f"-n {NS} delete pod {name} --wait=false")
        remove(lab, name)


def test_node_labels_and_taints_per_release():
    for version, labels, taints in (
            ("v1.20.10", {"node-role.kubernetes.io/master",
                          "node-role.kubernetes.io/control-plane"},
             ["node-role.kubernetes.io/master"]),
            ("v1.24.0", {"node-role.kubernetes.io/control-plane"},
             ["node-role.kubernetes.io/master", "node-role.kubernetes.io/control-plane"]),
            ("v1.28.0", {"node-role.kubernetes.io/control-plane"},
             ["node-role.kubernetes.io/control-plane"])):
        data = cluster(version)
        got = S.node_labels(data, "master1")
        assert {k for k in got if k.startswith("node-role.")} == labels
        assert got["node.kubernetes.io/exclude-from-external-load-balancers"] == ""
        assert [t["key"] for t in S.node_taints(data, "master1")] == taints
        assert S.node_taints(data, "node1") == []
    data = cluster()
    data["nodes"]["node1"].update(labels={"disk": "ssd"}, unschedulable=True)
    assert S.node_labels(data, "node1")["disk"] == "ssd"
    data["nodes"]["node1"]["labels_removed"] = ["beta.kubernetes.io/os"]
    assert "beta.kubernetes.io/os" not in S.node_labels(data, "node1")
    assert S.node_taints(data, "node1", "False") == [
        {"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable"},
        {"effect": "NoSchedule", "key": "node.kubernetes.io/not-ready"}]


READY_SVC = json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {
    "name": "live", "namespace": NS}, "spec": {"selector": {"app": "live"}, "ports": [
        {"port": 80}]}})


WEB = json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {
    "name": "web2", "namespace": NS}, "spec": {"selector": {"app": "web2"}, "ports": [
        {"port": 8080, "targetPort": "http"}]}})


def test_curl_on_a_node_reaches_a_bare_nginx_and_its_service(lab):
    apply(lab, WEB, manifest("web2", containers=[{
        "name": "nginx", "image": "docker.io/library/nginx:1.27",
        "ports": [{"containerPort": 80, "name": "http"}]}]))
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            p = get(lab, f"-n {NS} pod web2")
            if any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in p["status"].get("conditions") or []):
                break
            time.sleep(0.3)
        ip = p["status"]["podIP"]
        cluster_ip = get(lab, f"-n {NS} service web2")["spec"]["clusterIP"]
        for target in (f"{ip}:80", f"{cluster_ip}:8080"):
            r = root(lab, lab.nodes[0], f"curl -s -m 5 http://{target}/")
            assert r.returncode == 0 and "Welcome to nginx!" in r.stdout, (target, r)
    finally:
        r = kubectl(lab, f"-n {NS} delete pod web2 --timeout=60s")
        kubectl(lab, f"-n {NS} delete -f -", stdin=WEB)
    assert r.returncode == 0, r.stderr


def test_a_real_runner_with_a_readiness_probe_moves_the_endpoint(lab):
    """The contract end to end: the node runner runs the bound pod and writes its status;
    the endpoint moves from notReadyAddresses to addresses when the probe passes."""
    apply(lab, READY_SVC, manifest("live", containers=[{
        "name": "box", "image": "docker.io/library/busybox:1.36",
        "command": ["sh", "-c", "sleep 3600"],
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}}]))

    def wait(what, check, limit=30.0):
        deadline = time.time() + limit
        while True:
            got = check()
            if got or time.time() > deadline:
                assert got, what
                return got
            time.sleep(0.3)

    def subset():
        return (get(lab, f"-n {NS} endpoints live").get("subsets") or [{}])[0]

    try:
        pod_ = wait("Running", lambda: (p := get(lab, f"-n {NS} pod live"))["status"].get(
            "phase") == "Running" and p)
        ip = pod_["status"]["podIP"]
        assert [a["ip"] for a in wait("not ready", lambda: subset().get(
            "notReadyAddresses"))] == [ip]
        r = kubectl(lab, f"-n {NS} exec live -c box -- touch /tmp/ready")
        assert r.returncode == 0, r.stderr
        assert [a["ip"] for a in wait("ready", lambda: subset().get("addresses"))] == [ip]
        r = kubectl(lab, f"-n {NS} get pods live")
        assert r.stdout.split("\n")[1].split()[1:3] == ["1/1", "Running"], r.stdout
        # nothing listens in that pod: curl on a node really connects to its 127.244 address
        r = root(lab, lab.nodes[1], f"curl -sS -m 2 http://{ip}:81/")
        assert (r.returncode, r.stderr) == (7, f"curl: (7) Failed to connect to {ip} port 81: "
                                               "Connection refused\n")
    finally:
        r = kubectl(lab, f"-n {NS} delete pod live --timeout=60s")
        kubectl(lab, f"-n {NS} delete -f -", stdin=READY_SVC)
    assert (r.returncode, r.stdout) == (0, 'pod "live" deleted\n'), r.stderr
