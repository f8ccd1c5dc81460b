"""`invoke verify`'s Pod-chapter checks (seed 000) against lab clusters: the shared el8 / docker
/ 1.20.10 cluster (tests/cluster/conftest.py) passes all of them, reported with expected and
observed, and talks to nothing outside 127.0.0.0/8; then the lab's kubelet and scheduler
stand-ins are broken one behaviour at a time (fault knobs, lab/k8s/STATE.md) and exactly the
check of that behaviour fails, with its own message. Several knobs whose checks are independent
share one run, to share the cluster's time. Verify's node label and hook directory are gone
after every run, a failed one and one interrupted by Ctrl-C included. The el9 / containerd
1.30 and 1.37 paths run the chapter in tests/cluster/test_containerd_lab.py."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest

from bootstrap import commands
from bootstrap import verify as V
from bootstrap import verify_pods as P
from bootstrap.cluster.common import KUBECTL
from bootstrap.commands import CommonOptions
from bootstrap.interrupt import Interrupt
from bootstrap.report import Reporter

from . import set_faults, verify
from .test_verify_workloads_lab import Sampler

pytestmark = pytest.mark.lab
NS = "k8s-bootstrap-verify"
PODS = ",".join(V.PODS)

# one run per row: the knobs set at once, and per check that must fail, a phrase of its observed
BROKEN = {
    "image, args, env, liveness": (
        {"busybox_default_cmd": True, "args_dropped": True, "env_dropped": True,
         "liveness_ignored": True},
        {"NoCommand": "busybox without a command keeps running",
         "CommandArgs": "did the command get its args?",
         "Env": "printenv gave",
         "LivenessProbes": "a container whose liveness probe fails was never restarted"}),
    "scheduler, init, hooks, readiness": (
        {"scheduler_ignores_requests": True, "init_not_blocking": True, "hooks_skipped": True,
         "readiness_ignored": True},
        {"Resources": "pod-resources-too-big was scheduled to",
         "InitContainers": "main-container started before Service mysql existed",
         "LifecycleHooks": "postStart did not write index.html",
         "ReadinessProbe": "the Service sends traffic to a pod that is not ready"}),
    "port, limits, restart policy, placement": (
        {"container_port_closed": ["pod-ports"], "limits_ignored": True,
         "restart_policy_ignored": True, "node_selector_ignored": True},
        {"ContainerPort": "did not answer",
         "Resources": "runs without its memory limit",
         "RestartPolicy": "restarted although its policy says not to",
         "NodePlacement": "went to"}),
}


def sh(node, cmd: str):
    return node.run(cmd, timeout=120)


def leftovers(the_lab) -> list[str]:
    """What verify must not leave: its label on a node, its hook directory, its namespace."""
    master = the_lab.nodes[0]
    found = []
    if labelled(master):
        found.append(f"label {P.LABEL_KEY} on {', '.join(labelled(master))}")
    for node in the_lab.nodes:
        if sh(node, f"test -e {P.HOOK_ROOT}").returncode == 0:
            found.append(f"{P.HOOK_ROOT} on {node.name}")
    ns = sh(master, f"{KUBECTL} get namespaces --no-headers").stdout
    if NS in [ln.split()[0] for ln in ns.splitlines() if ln.strip()]:
        pods = sh(master, f"{KUBECTL} -n {NS} get pods --no-headers").stdout.strip()
        found.append(f"namespace {NS} ({ns.strip()}; pods: {pods or 'none'})")
    return found


def labelled(master) -> list[str]:
    """The nodes carrying verify's label (kubectl's JSON)."""
    r = sh(master, f"{KUBECTL} get nodes -o json")
    assert r.returncode == 0, r.stderr
    return [n["metadata"]["name"] for n in json.loads(r.stdout)["items"]
            if P.LABEL_KEY in n["metadata"].get("labels", {})]


@pytest.fixture
def cluster(verify_cluster):
    the_lab, _ = verify_cluster
    set_faults(the_lab, None)
    yield verify_cluster
    set_faults(the_lab, None)


def wait_gone(the_lab, seconds: float = 30) -> list[str]:
    """The namespace is deleted with --wait=false: give the lab's kubelets time to stop its
    pods."""
    deadline = time.monotonic() + seconds
    while (left := leftovers(the_lab)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.mark.timeout(600)
def test_the_pod_chapter_passes_and_talks_to_nothing_outside(cluster, tmp_path):
    the_lab, rec = cluster
    with Sampler(the_lab) as sampler:
        rc, out, data = verify(rec, tmp_path, only=PODS, timeout=30)
    assert rc == 0, out
    assert [(c["check"], c["ok"]) for c in data["checks"]] == [(c, True) for c in V.PODS], out
    assert all(c["expected"] and c["observed"] and c["evidence"] for c in data["checks"]), data
    assert f"verify: {len(V.PODS)} checks, {len(V.PODS)} passed" in out
    by = {c["check"]: c for c in data["checks"]}
    assert "restarted" in by["NoCommand"]["observed"]
    assert by["Env"]["observed"] == "username=admin, password=123456"
    assert "Welcome to nginx!" in by["ContainerPort"]["observed"]
    assert any("Insufficient memory" in e for e in by["Resources"]["evidence"])
    assert "10737418240" in by["Resources"]["evidence"][-1]
    assert by["NodePlacement"]["observed"] == "pod-nodename on node2, pod-nodeselector on node1"
    assert sampler.found == [], sampler.found
    assert wait_gone(the_lab) == []


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_behaviour_fails_exactly_its_check(cluster, tmp_path, case):
    the_lab, rec = cluster
    knobs, failing = BROKEN[case]
    set_faults(the_lab, knobs)
    try:
        rc, out, data = verify(rec, tmp_path, only=PODS, timeout=15)
    finally:
        set_faults(the_lab, None)
    assert rc == 1, out
    got = {c["check"]: c for c in data["checks"]}
    assert {n for n, c in got.items() if not c["ok"]} == set(failing), out
    for name, phrase in failing.items():
        assert phrase in got[name]["observed"], got[name]
        assert got[name]["next"], got[name]
    assert wait_gone(the_lab) == []


@pytest.mark.timeout(600)
def test_ctrl_c_still_removes_the_label_the_hook_directory_and_the_namespace(cluster, tmp_path):
    the_lab, rec = cluster
    master = the_lab.nodes[0]
    interrupt = Interrupt(say=lambda text: None)
    out, result = io.StringIO(), {}

    def run():
        result["rc"] = commands.verify(
            CommonOptions(inventory=str(rec.lab.inventory_path), log_dir=None, only=PODS,
                          timeout=30),
            prompt=None, reporter=Reporter(out=out, log_dir=None, command="verify"),
            interrupt=interrupt)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # press once the pods exist and the node is labelled
        pods = sh(master, f"{KUBECTL} -n {NS} get pods --no-headers").stdout
        if "pod-hook-exec" in pods and labelled(master) == ["node1"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail("verify never labelled a node: " + out.getvalue())
    interrupt.press()
    t.join(120)
    assert not t.is_alive()
    assert result.get("rc") == 130, out.getvalue()
    assert wait_gone(the_lab) == [], out.getvalue()
