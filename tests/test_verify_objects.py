"""verify's ObjectManagement (bootstrap/verify_objects.py): seed 004's three ways to manage
objects as steps, judged from kubectl's lines and the Pod JSON the API returns."""

from __future__ import annotations

import json
import shlex

import kubernetes_validate as kv
import pytest
import yaml

from bootstrap import verify as V
from bootstrap import verify_objects as O
from bootstrap.errors import InventoryError
from bootstrap.inventory import load_text

INV = """\
cluster: {{kubernetes_version: '{version}'}}
nodes:
  - {{name: master1, address: 192.168.177.100, role: master}}
  - {{name: node1, address: 192.168.177.101, role: worker}}
"""
OLD, NEW = "docker.io/library/nginx:1.27", "docker.io/library/nginx:1.28"


def inv(version: str = "1.30.1", extra: str = ""):
    return load_text(INV.format(version=version) + extra)


def pod(image: str, spec_image: str | None = None, ready: bool = True,
        state: dict | None = None) -> dict:
    """A Pod as `kubectl get pod -o json` shows it (containerd's image names)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginxpod"},
            "spec": {"containers": [{"name": "nginx-containers", "image": spec_image or image}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": [{
                           "name": "nginx-containers", "image": image, "ready": ready,
                           "state": state or {"running": {"startedAt": "2026-12-07T10:00:00Z"}},
                           "restartCount": 0}]}}


def good(plan: list[O.Step]) -> list[O.Seen]:
    """What a healthy cluster prints for each step."""
    out = []
    for step in plan:
        text = (f"NAME        READY   STATUS    RESTARTS   AGE\n{step.expect.replace(' ', '   ')}"
                f"   0          3s\n" if step.row else f"{step.expect}\n")
        out.append(O.Seen(0, text, pod(step.runs) if step.runs else None, 2.0))
    return out


def test_the_check_sits_between_the_workloads_and_the_pod_chapter():
    assert V.OBJECTS == (O.CHECK,)
    at = V.NAMES.index(O.CHECK)
    assert V.NAMES[at - 1] == "NginxNodePort" and V.NAMES[at + 1] == V.PODS[0]
    assert V.selected("objectmanagement", None) == [O.CHECK]


@pytest.mark.parametrize("version, line", [
    ("1.20.10", 'pod "nginx-run" deleted'),
    ("1.33.13", 'pod "nginx-run" deleted'),
    ("1.34.0", 'pod "nginx-run" deleted from k8s-bootstrap-verify namespace'),
    ("1.37.0", 'pod "nginx-run" deleted from k8s-bootstrap-verify namespace'),
])
def test_the_steps_follow_the_chapter_with_kubectl_s_lines_by_release(version, line):
    plan = O.steps(inv(version), 60)
    assert [(s.way, s.expect) for s in plan] == [
        ("imperative commands", "pod/nginx-run created"),
        ("imperative commands", "nginx-run 1/1 Running"),
        ("imperative commands", line),
        ("imperative object configuration", "pod/nginxpod created"),
        ("imperative object configuration", line.replace("nginx-run", "nginxpod")),
        ("declarative configuration", "pod/nginxpod created"),
        ("declarative configuration", "pod/nginxpod unchanged"),
        ("declarative configuration", "pod/nginxpod configured"),
    ]
    assert [s.runs for s in plan] == [OLD, "", "", "", "", OLD, "", NEW]
    run = shlex.split(plan[0].args)
    assert run[:5] == ["-n", "k8s-bootstrap-verify", "run", "nginx-run", f"--image={OLD}"]
    overrides = json.loads(run[5].removeprefix("--overrides="))
    assert overrides["apiVersion"] == "v1"  # kubectl run refuses overrides without it
    assert {t["key"] for t in overrides["spec"]["tolerations"]} == {
        "node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"}
    # the same manifest twice (so the second apply is unchanged), then only the image differs
    docs = [yaml.safe_load(s.stdin) for s in plan[3:]]
    assert docs[0] == docs[1] == docs[2] == docs[3]
    changed = docs[4]["spec"]["containers"][0].pop("image")
    assert changed == NEW and docs[4] != docs[3]
    docs[3]["spec"]["containers"][0].pop("image")
    assert docs[4] == docs[3]


@pytest.mark.parametrize("minor", ["1.25", "1.30", "1.37"])
def test_the_manifest_validates_and_keeps_the_chapter_s_names(minor):
    for image in (OLD, NEW):
        doc = yaml.safe_load(O.manifest(inv(), image))
        kv.validate(doc, minor, strict=True)
        assert doc["metadata"]["name"] == "nginxpod"
        assert doc["spec"]["containers"][0]["name"] == "nginx-containers"
        assert doc["metadata"]["namespace"] == "k8s-bootstrap-verify"


def test_a_healthy_cluster_passes_with_every_line_as_evidence():
    plan = O.steps(inv(), 60)
    out = O.judge(inv(), plan, good(plan))
    assert out.ok, out
    assert out.observed == "all 8 commands as the chapter shows, in the three ways"
    assert out.evidence[0] == (f"$ kubectl run nginx-run --image={OLD}: pod/nginx-run created; "
                               f"then Running, ready, container running, image {OLD} (2 s)")
    assert out.evidence[1] == "$ kubectl get pod nginx-run: nginx-run 1/1 Running"
    assert out.evidence[-1].startswith(f"$ kubectl apply -f nginxpod.yaml (image {NEW}): "
                                       "pod/nginxpod configured; then Running")


def test_docker_s_short_image_names_are_the_same_image():
    plan = O.steps(inv("1.20.10"), 60)
    seen = good(plan)
    seen[-1] = O.Seen(0, "pod/nginxpod configured\n", pod("nginx:1.28", spec_image=NEW))
    assert O.judge(inv("1.20.10"), plan, seen).ok


@pytest.mark.parametrize("ref, full", [
    ("nginx:1.28", "docker.io/library/nginx:1.28"),
    ("docker.io/nginx:1.28", "docker.io/library/nginx:1.28"),
    ("docker.io/library/nginx:1.28", "docker.io/library/nginx:1.28"),
    ("bitnami/nginx:1.28", "docker.io/bitnami/nginx:1.28"),
    ("registry.example.com:5000/nginx:1.28", "registry.example.com:5000/nginx:1.28"),
    ("localhost/nginx:1.28", "localhost/nginx:1.28"),
])
def test_image_references_are_compared_in_full(ref, full):
    assert O.normal_image(ref) == full


@pytest.mark.parametrize("index", range(8))
def test_a_step_that_prints_another_line_fails_there_and_stops(index):
    plan = O.steps(inv(), 60)
    seen = good(plan)[:index + 1]
    seen[index] = O.Seen(1, "Error from server (NotFound): namespaces \"x\" not found\n")
    out = O.judge(inv(), plan, seen)
    assert not out.ok
    assert out.observed == (f"{plan[index].shown}: expected `{plan[index].expect}`, kubectl "
                            "printed `Error from server (NotFound): namespaces \"x\" not found` "
                            "(exit 1)")
    assert [e.startswith("not run: ") for e in out.evidence] == [False] * (index + 1) + [
        True] * (7 - index)


def test_a_second_apply_that_configures_again_fails_with_the_annotation_to_look_at():
    plan = O.steps(inv(), 60)
    seen = good(plan)
    seen[6] = O.Seen(0, "pod/nginxpod configured\n")
    out = O.judge(inv(), plan[:7], seen[:7])
    assert not out.ok and "expected `pod/nginxpod unchanged`" in out.observed
    assert "last-applied-configuration" in out.next


def test_apply_s_warning_line_is_not_its_answer():
    plan = O.steps(inv(), 60)
    seen = good(plan)
    seen[5] = O.Seen(0, "Warning: resource pods/nginxpod is missing the kubectl.kubernetes.io/"
                        "last-applied-configuration annotation\npod/nginxpod created\n",
                     pod(OLD))
    assert O.judge(inv(), plan, seen).ok


def test_configured_but_the_api_kept_the_old_image_fails_with_its_own_message():
    plan = O.steps(inv(), 60)
    seen = good(plan)
    seen[7] = O.Seen(0, "pod/nginxpod configured\n", pod(OLD), 0.1)
    out = O.judge(inv(), plan, seen)
    assert not out.ok
    assert out.observed == (f"after kubectl apply -f nginxpod.yaml (image {NEW}): the API kept "
                            f"image {OLD} (kubectl said `pod/nginxpod configured`)")
    assert "describe pod nginxpod" in out.next


def test_the_new_image_not_running_in_time_fails_with_the_container_s_state():
    plan = O.steps(inv(), 60)
    seen = good(plan)
    waiting = {"waiting": {"reason": "ImagePullBackOff"}}
    seen[7] = O.Seen(0, "pod/nginxpod configured\n",
                     pod(OLD, spec_image=NEW, ready=False, state=waiting), 60.0)
    out = O.judge(inv(), plan, seen)
    assert not out.ok
    assert out.observed == (f"after kubectl apply -f nginxpod.yaml (image {NEW}): the pod is "
                            f"not running {NEW} (Running, not ready, container waiting "
                            f"(ImagePullBackOff), image {OLD})")


def test_an_unreachable_master_mid_way_fails_the_check():
    plan = O.steps(inv(), 60)
    seen = [*good(plan)[:3], O.Seen(-1, "master unreachable: connection reset")]
    out = O.judge(inv(), plan, seen)
    assert not out.ok and "printed `master unreachable: connection reset` (exit -1)" in \
        out.observed


def test_the_update_image_must_differ():
    with pytest.raises(InventoryError) as err:
        inv(extra=f"verify: {{nginx_image: '{OLD}', nginx_update_image: '{OLD}'}}\n")
    text = str(err.value)
    assert "verify.nginx_update_image" in text and "another tag" in text
    assert inv(extra="verify: {nginx_update_image: 'reg.example.com/nginx:2'}\n"
               ).verify.nginx_update_image == "reg.example.com/nginx:2"


def test_dry_run_shows_the_manifest_once_and_every_command():
    text = O.dry_run_text(inv(), 60, keep=False, last=True)
    assert text.count("kind: Pod") == 1
    assert "run nginx-run" in text and "create -f -" in text and "delete -f -" in text
    assert text.count("apply -f - < nginxpod.yaml") == 3
    assert text.count(f"< nginxpod.yaml with image {NEW}") == 1
    assert text.endswith("delete namespace k8s-bootstrap-verify")
    kept = O.dry_run_text(inv(), 60, keep=True, last=True)
    assert "delete namespace" not in kept and "--ignore-not-found" not in kept
    assert "delete pod nginx-run nginxpod" in O.dry_run_text(inv(), 60, keep=False, last=False)
