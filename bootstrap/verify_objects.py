"""verify's ObjectManagement check: seed 004's three ways to manage objects ("资源管理"), in
verify's namespace, from the master, with kubectl's own lines as the evidence:

- imperative commands: ``kubectl run`` a pod, ``get`` it Running, ``delete`` it;
- imperative object configuration: ``kubectl create -f`` the chapter's nginxpod.yaml, then
  ``kubectl delete -f``;
- declarative configuration: ``kubectl apply -f`` creates, a second ``apply -f`` is
  ``unchanged``, an ``apply -f`` with ``verify.nginx_update_image`` is ``configured``, and the
  pod then runs that image (a Pod's image is one of the few fields it may change in place).

The steps are data (``steps``); ``run`` runs them in order, one command each, reading the pod
after the steps that start one; ``judge`` is a pure function of what they printed.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from typing import Any

from . import releases
from .cluster.common import KUBECTL
from .models import Inventory
from .templating import render
from .verify import Outcome

CHECK = "ObjectManagement"
RUN_POD = "nginx-run"
POD = "nginxpod"
WAYS = ("imperative commands", "imperative object configuration", "declarative configuration")
TOLERATE = {"apiVersion": "v1", "spec": {"tolerations": [
    {"key": key, "operator": "Exists", "effect": "NoSchedule"}
    for key in ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")]}}
"""``kubectl run --overrides`` (a JSON merge patch): the control plane's taints tolerated, so
that a one-node cluster runs the pod too, like the other verify pods."""


@dataclass(frozen=True)
class Step:
    """One kubectl command: what the report shows, what runs (``args`` after ``kubectl``, the
    manifest on stdin), the line kubectl must print (``row``: the pod's line in ``get``), and
    the image the pod must then run, ready (``runs``)."""

    way: str
    shown: str
    args: str
    expect: str
    stdin: str = ""
    row: bool = False
    pod: str = ""
    runs: str = ""


@dataclass(frozen=True)
class Seen:
    """What a step printed (stderr folded in), and the pod as read after it (``runs`` steps)."""

    rc: int
    out: str
    pod: dict | None = None
    waited: float = 0.0


def manifest(inv: Inventory, image: str) -> str:
    return render("verify/nginxpod.yaml.j2", namespace=inv.verify.namespace, image=image)


def deleted(inv: Inventory, name: str) -> str:
    """kubectl's line for a deleted pod, by the cluster's release."""
    text = releases.release(inv.cluster.kubernetes_version).deleted
    return text.format(kind="pod", name=name, namespace=inv.verify.namespace)


def steps(inv: Inventory, limit: int) -> list[Step]:
    """The chapter's commands, in order."""
    ns = shlex.quote(inv.verify.namespace)
    old, new = inv.verify.nginx_image, inv.verify.nginx_update_image
    wait = f"--timeout={limit}s"
    overrides = shlex.quote(json.dumps(TOLERATE, separators=(",", ":")))
    imperative, configuration, declarative = WAYS
    return [
        Step(imperative, f"kubectl run {RUN_POD} --image={old}",
             f"-n {ns} run {RUN_POD} --image={shlex.quote(old)} --overrides={overrides}",
             f"pod/{RUN_POD} created", pod=RUN_POD, runs=old),
        Step(imperative, f"kubectl get pod {RUN_POD}", f"-n {ns} get pod {RUN_POD}",
             f"{RUN_POD} 1/1 Running", row=True),
        Step(imperative, f"kubectl delete pod {RUN_POD}",
             f"-n {ns} delete pod {RUN_POD} {wait}", deleted(inv, RUN_POD)),
        Step(configuration, f"kubectl create -f {POD}.yaml", "create -f -",
             f"pod/{POD} created", manifest(inv, old)),
        Step(configuration, f"kubectl delete -f {POD}.yaml", f"delete -f - {wait}",
             deleted(inv, POD), manifest(inv, old)),
        Step(declarative, f"kubectl apply -f {POD}.yaml", "apply -f -", f"pod/{POD} created",
             manifest(inv, old), pod=POD, runs=old),
        Step(declarative, f"kubectl apply -f {POD}.yaml (again)", "apply -f -",
             f"pod/{POD} unchanged", manifest(inv, old)),
        Step(declarative, f"kubectl apply -f {POD}.yaml (image {new})", "apply -f -",
             f"pod/{POD} configured", manifest(inv, new), pod=POD, runs=new),
    ]


# -- judging ------------------------------------------------------------------------------------
def normal_image(ref: str) -> str:
    """An image reference as containerd names it (docker prints Docker Hub's short form):
    ``nginx:1.27`` -> ``docker.io/library/nginx:1.27``."""
    first, _, rest = ref.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        ref = f"docker.io/{ref}"
    host, _, path = ref.partition("/")
    if host == "docker.io" and "/" not in path:
        ref = f"docker.io/library/{path}"
    return ref


def said(out: str) -> str:
    """kubectl's answer: its first line that is not a warning (apply's missing-annotation
    warning, deprecations)."""
    lines = [ln.strip() for ln in out.splitlines()
             if ln.strip() and not ln.startswith("Warning: ")]
    return lines[0] if lines else "(nothing)"


def pod_runs(pod: dict | None, image: str) -> tuple[bool, str]:
    """(the pod is Running and ready with ``image`` in its container, what it shows)."""
    if not pod:
        return False, "no pod"
    if "error" in pod:
        return False, pod["error"]
    status = pod.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions", []))
    cs = (status.get("containerStatuses") or [{}])[0]
    state = next(iter(cs.get("state") or {}), "")
    reason = (cs.get("state") or {}).get(state, {}).get("reason", "")
    shown = cs.get("image", "?")
    text = (f"{status.get('phase', '?')}{', ready' if ready else ', not ready'}, container "
            f"{state or '?'}{f' ({reason})' if reason else ''}, image {shown}")
    ok = (status.get("phase") == "Running" and ready and state == "running"
          and normal_image(shown) == normal_image(image))
    return ok, text


def api_kept(pod: dict | None, image: str) -> str:
    """The image the API still holds when it is not ``image`` (an update it dropped)."""
    containers = ((pod or {}).get("spec") or {}).get("containers") or [{}]
    held = containers[0].get("image", "")
    return held if held and normal_image(held) != normal_image(image) else ""


def _matches(step: Step, out: str) -> bool:
    if step.row:
        want = step.expect.split()
        return any(ln.split()[:3] == want for ln in out.splitlines())
    return said(out) == step.expect


def judge(inv: Inventory, plan: list[Step], seen: list[Seen]) -> Outcome:
    """One Outcome: every step printed its line, and the pods ran the images they should."""
    ns = inv.verify.namespace
    expected = (f"in {ns}: kubectl run/get/delete, create -f/delete -f, and apply -f "
                f"(created, unchanged, configured to {inv.verify.nginx_update_image}), each "
                "printing kubectl's own line, and the pod then running that image")
    evidence, problem, look = [], "", ""
    for step, got in zip(plan, seen, strict=False):
        line = f"$ {step.shown}: {said(got.out) if not step.row else _row(got.out, step)}"
        if got.rc != 0 or not _matches(step, got.out):
            problem = (f"{step.shown}: expected `{step.expect}`, kubectl printed "
                       f"`{said(got.out)}` (exit {got.rc})")
            look = _next(inv, step)
            evidence.append(line)
            break
        if step.runs:
            ok, text = pod_runs(got.pod, step.runs)
            line += f"; then {text} ({got.waited:.0f} s)"
            evidence.append(line)
            if not ok:
                kept = api_kept(got.pod, step.runs)
                problem = (f"after {step.shown}: the API kept image {kept} (kubectl said "
                           f"`{said(got.out)}`)" if kept else
                           f"after {step.shown}: the pod is not running {step.runs} ({text})")
                look = (f"kubectl -n {ns} describe pod {step.pod} (its events); "
                        f"kubectl -n {ns} get pod {step.pod} -o yaml")
                break
            continue
        evidence.append(line)
    if not problem and len(seen) < len(plan):
        problem = f"{plan[len(seen)].shown} did not run"
    if problem:
        done = len(evidence)
        evidence += [f"not run: {s.shown}" for s in plan[done:]]
        return Outcome(CHECK, False, expected, problem, evidence, look or
                       f"kubectl -n {ns} get events")
    return Outcome(CHECK, True, expected,
                   f"all {len(plan)} commands as the chapter shows, in the three ways",
                   evidence)


def _row(out: str, step: Step) -> str:
    name = step.expect.split()[0]
    row = next((ln for ln in out.splitlines() if ln.split()[:1] == [name]), "")
    return " ".join(row.split()[:3]) if row else said(out)


def _next(inv: Inventory, step: Step) -> str:
    ns = inv.verify.namespace
    if "unchanged" in step.expect:
        return (f"kubectl -n {ns} get pod {POD} -o yaml: its "
                "kubectl.kubernetes.io/last-applied-configuration annotation")
    return f"kubectl -n {ns} get events; kubectl -n {ns} get pods"


# -- the run ------------------------------------------------------------------------------------
def _read_pod(session: Any, inv: Inventory, name: str, limit: int) -> dict:
    from .verify_pods import _json

    ns = shlex.quote(inv.verify.namespace)
    out = session.run(f"timeout {limit} {KUBECTL} -n {ns} get pod {name} -o json 2>&1",
                      readonly=True, what=f"verify: read pod {name}").stdout
    return _json(out)


def wait_for(session: Any, inv: Inventory, step: Step, limit: int) -> tuple[dict, float]:
    """Read the pod until it runs the step's image, ready, or the API shows it kept another
    image (decided at once), or ``limit`` seconds passed; the last read and the seconds."""
    started = time.monotonic()
    while True:
        pod = _read_pod(session, inv, step.pod, limit)
        took = time.monotonic() - started
        if pod_runs(pod, step.runs)[0] or api_kept(pod, step.runs) or took >= limit:
            return pod, took
        time.sleep(1.0)


def run(runner: Any, inv: Inventory, limit: int, keep: bool, last: bool) -> list[Outcome]:
    """Run the steps in order until one does not do what the chapter shows; remove both pods
    afterwards (unless ``keep``) and the namespace when this is verify's last stage."""
    from .errors import BootstrapError
    from .verify_workloads import settled

    plan = steps(inv, limit)
    seen: list[Seen] = []
    session = runner.session(inv.init_node)
    try:
        ns_doc = render("verify/namespace.yaml.j2", namespace=inv.verify.namespace)
        made = session.run(f"{settled(inv, limit)}; timeout {limit} {KUBECTL} apply -f - 2>&1",
                           stdin=ns_doc, scratch=True, what="verify: create its namespace")
        if not made.ok:
            return [judge(inv, plan, [Seen(1, f"namespace: {said(made.stdout)}")])]
        for step in plan:
            r = session.run(f"timeout {limit + 10} {KUBECTL} {step.args} 2>&1",
                            stdin=step.stdin or None, scratch=True,
                            what=f"verify: {step.shown}", timeout=limit + 30)
            got = Seen(0 if r.ok else 1, r.stdout)
            if got.rc == 0 and step.runs:
                pod, took = wait_for(session, inv, step, limit)
                got = Seen(got.rc, got.out, pod, took)
            seen.append(got)
            if not _ok(step, got):
                break
        return [judge(inv, plan, seen)]
    except BootstrapError as exc:
        return [judge(inv, plan, [*seen, Seen(-1, f"master unreachable: {exc.message}")])]
    finally:
        if not keep:
            _remove(session, inv, last)
        session.close()


def _ok(step: Step, got: Seen) -> bool:
    if got.rc != 0 or not _matches(step, got.out):
        return False
    return not step.runs or pod_runs(got.pod, step.runs)[0]


def _remove(session: Any, inv: Inventory, last: bool) -> None:
    """Delete both pods (not waiting), or the whole namespace when nothing comes after."""
    import contextlib

    from .errors import BootstrapError
    from .verify_workloads import delete_namespace

    if last:
        delete_namespace(session, inv)
        return
    ns = shlex.quote(inv.verify.namespace)
    with contextlib.suppress(BootstrapError):
        session.run(f"{KUBECTL} -n {ns} delete pod {RUN_POD} {POD} --wait=false "
                    "--ignore-not-found", scratch=True, cleanup=True,
                    what="verify: delete its pods", timeout=60)


def dry_run_text(inv: Inventory, limit: int, keep: bool, last: bool) -> str:
    """What run would do, for ``--dry-run``."""
    m = inv.init_node.name
    lines = [f"would: on {m}: $ {KUBECTL} apply -f - (namespace {inv.verify.namespace})"]
    first = ""
    for step in steps(inv, limit):
        text = f"would: on {m}: $ {KUBECTL} {step.args}"
        if step.stdin and not first:
            first = step.stdin
            text += f"\n  with stdin ({POD}.yaml):\n{step.stdin}"
        elif step.stdin:
            text += f" < {POD}.yaml" + ("" if step.stdin == first else
                                        f" with image {inv.verify.nginx_update_image}")
        if step.runs:
            text += (f"\nwould: on {m}: every second until {step.pod} runs {step.runs} (at most "
                     f"{limit} s): $ {KUBECTL} -n {inv.verify.namespace} get pod {step.pod} "
                     "-o json")
        lines.append(text)
    if not keep:
        lines.append(f"would: on {m}: $ {KUBECTL} delete namespace {inv.verify.namespace}"
                     if last else f"would: on {m}: $ {KUBECTL} -n {inv.verify.namespace} "
                     f"delete pod {RUN_POD} {POD} --wait=false --ignore-not-found")
    return "\n".join(lines)
