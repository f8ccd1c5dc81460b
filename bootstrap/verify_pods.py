"""verify's Pod-chapter checks (seed 000): each experiment is a few Pods in verify's namespace
(templates/verify/pods/), watched from the master until it shows what the chapter says.

All experiments are applied at once and observed together, one round trip a round: the
namespace's pods, events and the readiness Service's endpoints as kubectl's JSON, plus the
``kubectl exec`` probes the experiments asked for in the round before. Each experiment is a
small state machine (``step``) over those observations: pure, so tests feed it JSON in the
shape kubectl prints. Some experiments act between rounds (create a Service, delete a pod, read
a file on a node); verify undoes what it did to nodes (a label, a hostPath directory) in the
end, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from .cluster.common import KUBECTL
from .models import Inventory
from .templating import render
from .verify import Outcome
from .verify_workloads import MARK, delete_namespace, results, sections, settled

LABEL_KEY = "k8s-bootstrap.io/verify-node"
LABEL_VALUE = "selected"
HOOK_ROOT = "/var/tmp/k8s-bootstrap-verify"
"""Where the hook pod's preStop writes (a hostPath directory per namespace, removed after)."""
LIMIT_BYTES = 10 * 1024**3  # pod-resources' memory limit, the seed's 10Gi
ROUND = 1.0  # seconds between two observations when nothing is pending


# -- what the manifests need from the cluster ----------------------------------------------------
_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5,
          "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5, "": 1}


def quantity_bytes(text: str) -> int:
    """A memory quantity as the API prints it (``24576Mi``, ``16311580Ki``, ``1e9``) in bytes."""
    m = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)([KMGTP]i?|k)?", str(text).strip())
    if not m:
        raise ValueError(f"not a memory quantity: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


@dataclass(frozen=True)
class Placement:
    """Inputs of the manifests taken from ``kubectl get nodes``: the too-big request, the node
    ``nodeName`` names, the node verify labels for ``nodeSelector``."""

    too_big: str
    largest: str
    node_name: str
    selector_node: str


def placement(inv: Inventory, nodes: dict) -> Placement:
    """From the nodes' JSON: a request of 1Gi more than the largest allocatable memory (rounded
    up to Gi), nodeName = the last worker, the label on the first worker (a one-node cluster:
    both on the master)."""
    best, best_node = 0, ""
    for item in nodes.get("items", []):
        mem = item.get("status", {}).get("allocatable", {}).get("memory")
        if mem is not None and quantity_bytes(mem) > best:
            best, best_node = quantity_bytes(mem), item["metadata"]["name"]
    gib = -(-best // 1024**3) + 1
    workers = [n.name for n in inv.workers] or [inv.init_node.name]
    return Placement(f"{gib}Gi", f"{best / 1024**3:.1f}Gi on {best_node or '?'}",
                     workers[-1], workers[0])


def hook_dir(inv: Inventory) -> str:
    return f"{HOOK_ROOT}/{inv.verify.namespace}"


# -- observations -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """What an experiment asks for: ``exec`` (kubectl exec in a pod; batched into the next
    round), ``apply`` (a manifest), ``delete`` (a pod, waiting for it), ``node`` (a command on
    a node over SSH). Its result comes back under ``key`` in ``View.results``."""

    kind: str
    key: str
    pod: str = ""
    container: str = ""
    argv: tuple[str, ...] = ()
    text: str = ""
    node: str = ""


@dataclass
class View:
    """One round: seconds since the pods were applied, the pods by name, the events, the
    readiness Service's Endpoints, and every action's (exit status, output) so far."""

    now: float
    pods: dict[str, dict]
    events: list[dict]
    endpoints: dict
    results: dict[str, tuple[int, str]] = field(default_factory=dict)
    error: str = ""


def _json(text: str) -> dict:
    """kubectl's JSON; its ``Warning: ...`` lines (stderr, e.g. Endpoints' deprecation from
    1.33) are dropped; anything else is ``{"error": last line}``."""
    body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("Warning: "))
    try:
        found = json.loads(body)
        return found if isinstance(found, dict) else {"error": "not an object"}
    except ValueError:
        return {"error": (text.strip().splitlines() or ["no answer"])[-1]}


def round_script(inv: Inventory, execs: list[Action], limit: int, endpoints: bool) -> str:
    """One observation: the exec probes run at once in the background, kubectl's JSON of the
    namespace's pods and events (and the readiness Service's endpoints), then each probe's
    output under its own ``<<verify KEY`` line and its exit status."""
    ns = shlex.quote(inv.verify.namespace)
    k = f"timeout {limit} {KUBECTL} -n {ns}"
    lines = ["d=$(mktemp -d /tmp/k8s-bootstrap-verify.XXXXXX)"]
    for i, a in enumerate(execs):
        argv = " ".join(shlex.quote(x) for x in a.argv)
        lines.append(f'{{ {k} exec {shlex.quote(a.pod)} -c {shlex.quote(a.container)} -- '
                     f'{argv} > "$d/{i}" 2>&1; echo $? > "$d/{i}.rc"; }} &')
    lines += [f"echo '{MARK} pods'; {k} get pods -o json 2>&1",
              f"echo '{MARK} events'; {k} get events -o json 2>&1"]
    if endpoints:
        lines.append(f"echo '{MARK} endpoints'; {k} get endpoints pod-readiness -o json 2>&1")
    lines += ["wait", f"echo '{MARK} execs'"]
    lines += [f"echo '{MARK} {a.key}'; cat \"$d/{i}\"; echo \"{MARK} rc $(cat \"$d/{i}.rc\")\""
              for i, a in enumerate(execs)]
    lines.append('rm -rf "$d"')
    return "\n".join(lines)


def view(out: str, now: float, done: dict[str, tuple[int, str]]) -> View:
    """Parse a round's output into a View (``done``: earlier results, extended in place)."""
    head, _, tail = out.partition(f"{MARK} execs\n")
    parts = sections(head)
    pods, events = _json(parts.get("pods", "")), _json(parts.get("events", ""))
    done.update(results(tail))
    error = pods.get("error") or ""
    return View(now, {p["metadata"]["name"]: p for p in pods.get("items", [])},
                events.get("items", []), _json(parts.get("endpoints", "{}")), done, error)


# -- reading kubectl's JSON ---------------------------------------------------------------------
def container(pod: dict | None, name: str, init: bool = False) -> dict:
    """A container's status (``{}`` before the kubelet reported one)."""
    key = "initContainerStatuses" if init else "containerStatuses"
    return next((c for c in (pod or {}).get("status", {}).get(key) or []
                 if c.get("name") == name), {})


def running(c: dict) -> bool:
    return "running" in (c.get("state") or {})


def state_text(c: dict) -> str:
    """``running``, ``waiting (CrashLoopBackOff)``, ``terminated (Error, exit 1)``."""
    if not c:
        return "not started"
    st = c.get("state") or {}
    if "running" in st:
        text = "running"
    elif "waiting" in st:
        text = f"waiting ({st['waiting'].get('reason', '?')})"
    elif "terminated" in st:
        t = st["terminated"]
        text = f"terminated ({t.get('reason', '?')}, exit {t.get('exitCode', '?')})"
    else:
        text = "unknown"
    return f"{text}, {c.get('restartCount', 0)} restarts"


def pod_text(pod: dict | None) -> str:
    if not pod:
        return "not found"
    st = pod.get("status", {})
    node = pod.get("spec", {}).get("nodeName") or "no node"
    return f"{st.get('phase', '?')} on {node}"


def events_for(events: list[dict], pod: str, reason: str | None = None,
               container: str | None = None) -> list[str]:
    """``REASON: message`` of the events about ``pod`` (optionally one reason, one container),
    oldest first."""
    found = [e for e in events if e.get("involvedObject", {}).get("name") == pod
             and (reason is None or e.get("reason") == reason)
             and (container is None or e.get("involvedObject", {}).get("fieldPath")
                  == f"spec.containers{{{container}}}")]
    found.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [f"{e.get('reason')}: {e.get('message', '').strip()}" for e in found]


def scheduled_condition(pod: dict | None) -> dict:
    return next((c for c in (pod or {}).get("status", {}).get("conditions") or []
                 if c.get("type") == "PodScheduled"), {})


# -- experiments ----------------------------------------------------------------------------------
class Experiment:
    """A check over some pods. ``step`` returns the actions for the next round and sets
    ``outcome`` once decided; ``timed_out`` says what was seen when time ran out."""

    name = ""
    template = ""
    pods: tuple[str, ...] = ()
    next_hint = ""

    def __init__(self, inv: Inventory, where: Placement) -> None:
        self.inv, self.where = inv, where
        self.ns = inv.verify.namespace
        self.outcome: Outcome | None = None
        self.evidence: list[str] = []
        self.asked: set[str] = set()
        self.stage = 0
        self.since: float | None = None

    @property
    def expected(self) -> str:
        raise NotImplementedError

    def step(self, v: View) -> list[Action]:
        raise NotImplementedError

    def manifest(self) -> str:
        v = self.inv.verify
        return render(self.template, namespace=self.ns, busybox=v.busybox_image,
                      nginx=v.nginx_image, too_big=self.where.too_big,
                      domain="cluster.local", hook_dir=hook_dir(self.inv),
                      node_name=self.where.node_name, label_key=LABEL_KEY,
                      label_value=LABEL_VALUE)

    # helpers
    def ask(self, action: Action) -> list[Action]:
        if action.key in self.asked:
            return []
        self.asked.add(action.key)
        return [action]

    def exec(self, key: str, pod: str, cont: str, *argv: str) -> list[Action]:
        return self.ask(Action("exec", f"{self.name} {key}", pod, cont, tuple(argv)))

    def result(self, v: View, key: str) -> tuple[int, str] | None:
        return v.results.get(f"{self.name} {key}")

    def passed(self, observed: str) -> list[Action]:
        self.outcome = Outcome(self.name, True, self.expected, observed, self.evidence)
        return []

    def failed(self, observed: str, next_: str = "") -> list[Action]:
        self.outcome = Outcome(self.name, False, self.expected, observed, self.evidence,
                               next_ or self.hint())
        return []

    def hint(self) -> str:
        pods = " ".join(self.pods)
        return f"kubectl -n {self.ns} describe pod {pods}" + (
            f"; {self.next_hint}" if self.next_hint else "")

    def held(self, v: View, seconds: float = 2.0) -> bool:
        """True once the current stage's condition was seen for ``seconds`` (two rounds at
        least): a state that lasts, not one caught in passing."""
        if self.since is None:
            self.since = v.now
            return False
        return v.now - self.since >= seconds

    def advance(self) -> None:
        self.stage, self.since = self.stage + 1, None

    def timed_out(self, v: View) -> Outcome:
        seen = "; ".join(f"{p}: {pod_text(v.pods.get(p))}" + "".join(
            f", {c['name']} {state_text(c)}"
            for c in (v.pods.get(p) or {}).get("status", {}).get("containerStatuses") or [])
            for p in self.pods)
        warnings = [e for p in self.pods for e in events_for(v.events, p)
                    if not e.startswith(("Scheduled", "Pulled", "Created", "Started"))]
        self.evidence += warnings[-5:]
        return Outcome(self.name, False, self.expected,
                       f"not shown in time (stage {self.stage}): {seen or v.error}",
                       self.evidence, self.hint())


class NoCommand(Experiment):
    name, template, pods = "NoCommand", "verify/pods/base.yaml.j2", ("pod-base",)

    @property
    def expected(self) -> str:
        return ("pod-base's busybox, which has no command, exits and is restarted again and "
                "again (READY 1/2, CrashLoopBackOff: what the chapter shows); its nginx runs")

    def step(self, v: View) -> list[Action]:
        pod = v.pods.get("pod-base")
        bb, web = container(pod, "busybox"), container(pod, "nginx")
        if bb.get("restartCount", 0) >= 1:
            self.evidence.append(f"busybox: {state_text(bb)}; nginx: {state_text(web)}")
            if not running(web):
                return self.failed(f"nginx is {state_text(web)}")
            return self.passed(f"busybox restarted {bb['restartCount']} times "
                               f"({state_text(bb).split(',')[0]})")
        if running(bb) and self.held(v, 10.0):
            self.evidence.append(f"busybox: {state_text(bb)} for 10 s")
            return self.failed("busybox without a command keeps running (expected it to exit: "
                               "does the image's CMD run something long?)",
                               f"kubectl -n {self.ns} get pod pod-base -o jsonpath="
                               "'{.spec.containers[1]}'; the image "
                               f"{self.inv.verify.busybox_image}")
        return []


class CommandArgs(Experiment):
    name, template, pods = "CommandArgs", "verify/pods/command.yaml.j2", ("pod-command",)

    @property
    def expected(self) -> str:
        return ("pod-command's busybox runs its command with its args (a loop appending "
                "`date +%T` to /tmp/hello.txt every 3 s), without restarts, and kubectl exec "
                "reads the file")

    def step(self, v: View) -> list[Action]:
        bb = container(v.pods.get("pod-command"), "busybox")
        if bb.get("restartCount", 0) >= 1:
            self.evidence += events_for(v.events, "pod-command", "BackOff")[-1:]
            return self.failed(f"busybox restarted: {state_text(bb)} (did the command get its "
                               "args?)")
        if not running(bb):
            return []
        tries = len([k for k in self.asked if k.startswith(f"{self.name} cat")])
        if tries == 0:
            return self.exec("cat0", "pod-command", "busybox", "cat", "/tmp/hello.txt")
        got = self.result(v, f"cat{tries - 1}")
        if got is None:
            return []
        rc, out = got
        stamps = [ln for ln in out.splitlines() if re.fullmatch(r"\d\d:\d\d:\d\d", ln)]
        if rc == 0 and stamps:
            self.evidence.append(f"kubectl exec pod-command -c busybox -- cat /tmp/hello.txt: "
                                 f"{len(stamps)} lines, last {stamps[-1]}")
            return self.passed(f"busybox running, 0 restarts; /tmp/hello.txt has "
                               f"{len(stamps)} time stamps")
        if tries >= 3:
            self.evidence.append(f"cat /tmp/hello.txt (exit {rc}): {out.strip()[:200]}")
            return self.failed("/tmp/hello.txt holds no time stamps"
                               if rc == 0 else f"kubectl exec failed (exit {rc})")
        if self.held(v, 3.0):  # the loop writes every 3 s: ask again
            self.since = None
            return self.exec(f"cat{tries}", "pod-command", "busybox", "cat", "/tmp/hello.txt")
        return []


class Env(Experiment):
    name, template, pods = "Env", "verify/pods/env.yaml.j2", ("pod-env",)

    @property
    def expected(self) -> str:
        return "pod-env's container sees username=admin and password=123456 (printenv)"

    def step(self, v: View) -> list[Action]:
        bb = container(v.pods.get("pod-env"), "busybox")
        if not running(bb):
            return []
        got = self.result(v, "printenv")
        if got is None:
            return self.exec("printenv", "pod-env", "busybox", "printenv", "username", "password")
        rc, out = got
        said = " ".join(ln.strip() for ln in out.splitlines()
                        if ln.strip() and not ln.startswith("command terminated"))
        self.evidence.append(f"kubectl exec pod-env -c busybox -- printenv username password "
                             f"(exit {rc}): {said or 'nothing'}")
        if said.split() == ["admin", "123456"] and rc == 0:
            return self.passed("username=admin, password=123456")
        return self.failed(f"printenv gave {said or 'nothing'} (exit {rc}): the variables are "
                           "not set in the container")


class ContainerPort(Experiment):
    name, template, pods = "ContainerPort", "verify/pods/ports.yaml.j2", ("pod-ports",)
    next_hint = "the pod network checks (PodNetwork)"

    @property
    def expected(self) -> str:
        return ("pod-ports declares containerPort 80 (nginx-port, TCP), and nginx answers on "
                "the pod's IP, port 80, from pod-env's busybox (wget)")

    def step(self, v: View) -> list[Action]:
        pod = v.pods.get("pod-ports")
        web = container(pod, "nginx")
        client = container(v.pods.get("pod-env"), "busybox")
        ip = (pod or {}).get("status", {}).get("podIP")
        if not (running(web) and running(client) and ip):
            return []
        ports = [p for c in pod.get("spec", {}).get("containers", [])
                 for p in c.get("ports") or []]
        declared = any(p.get("containerPort") == 80 and p.get("name") == "nginx-port"
                       and p.get("protocol", "TCP") == "TCP" for p in ports)
        if not declared:
            return self.failed(f"the pod's spec has ports {ports}")
        tries = len([k for k in self.asked if k.startswith(f"{self.name} wget")])
        wget = ("wget", "-q", "-O", "-", "-T", "5", f"http://{ip}:80/")
        if tries == 0:
            return self.exec("wget0", "pod-env", "busybox", *wget)
        got = self.result(v, f"wget{tries - 1}")
        if got is None:
            return []
        rc, out = got
        title = next((ln.strip() for ln in out.splitlines() if "<title>" in ln), out.strip()[:80])
        if rc == 0 and "nginx" in out.lower():
            self.evidence.append(f"wget http://{ip}:80/ from pod-env: {title}")
            return self.passed(f"containerPort 80 declared; {ip}:80 answered ({title})")
        if tries >= 3:
            self.evidence.append(f"wget http://{ip}:80/ from pod-env (exit {rc}): "
                                 f"{out.strip() or 'no output'}")
            return self.failed(f"{ip}:80 did not answer")
        if self.held(v, 2.0):  # nginx may still be starting: ask again
            self.since = None
            return self.exec(f"wget{tries}", "pod-env", "busybox", *wget)
        return []


    def timed_out(self, v: View) -> Outcome:
        o = super().timed_out(v)
        client = container(v.pods.get("pod-env"), "busybox")
        if running(client):
            return o
        return Outcome(o.check, False, o.expected, "no client to ask from: pod-env's busybox is "
                       f"{state_text(client)}; " + o.observed, o.evidence, o.next)


class Resources(Experiment):
    name, template = "Resources", "verify/pods/resources.yaml.j2"
    pods = ("pod-resources", "pod-resources-too-big")

    @property
    def expected(self) -> str:
        return (f"pod-resources-too-big (requests {self.where.too_big} of memory, more than any "
                f"node's allocatable: largest {self.where.largest}) stays Pending with "
                "FailedScheduling 'Insufficient memory'; pod-resources runs with its memory "
                f"limit 10Gi in its cgroup ({LIMIT_BYTES})")

    def step(self, v: View) -> list[Action]:
        big = v.pods.get("pod-resources-too-big")
        if big and big.get("spec", {}).get("nodeName"):
            return self.failed(f"pod-resources-too-big was scheduled to "
                               f"{big['spec']['nodeName']} although it requests more memory "
                               "than any node has",
                               "the scheduler: kubectl -n kube-system logs -l "
                               "component=kube-scheduler; kubectl describe nodes (Allocatable)")
        cond = scheduled_condition(big)
        said = [m for m in events_for(v.events, "pod-resources-too-big", "FailedScheduling")]
        message = cond.get("message", "") if cond.get("status") == "False" else ""
        refused = "Insufficient memory" in message or any("Insufficient memory" in m
                                                          for m in said)
        web = container(v.pods.get("pod-resources"), "nginx")
        if not (refused and running(web)):
            return []
        got = self.result(v, "memory.max")
        if got is None:
            return self.exec("memory.max", "pod-resources", "nginx", "sh", "-c",
                             "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                             "cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
        rc, out = got
        self.evidence.append(f"pod-resources-too-big: {(said or [message])[-1]}")
        self.evidence.append(f"pod-resources' cgroup memory limit: {out.strip() or '?'}")
        if rc == 0 and out.strip() == str(LIMIT_BYTES):
            return self.passed(f"too big: Pending ({cond.get('reason', 'FailedScheduling')}: "
                               "Insufficient memory); pod-resources runs limited to "
                               f"{LIMIT_BYTES} bytes")
        return self.failed(f"pod-resources runs without its memory limit: the cgroup says "
                           f"{out.strip() or 'nothing'} (exit {rc})",
                           "the runtime's cgroup settings (SystemdCgroup / cgroup driver) on "
                           "the pod's node")


class InitContainers(Experiment):
    name, template, pods = "InitContainers", "verify/pods/initcontainer.yaml.j2", \
        ("pod-initcontainer",)
    services = (("mysql", 3306), ("redis", 6379))

    @property
    def expected(self) -> str:
        return ("pod-initcontainer's init containers run in order, each until its Service's "
                "name resolves: test-mysql holds the pod until verify creates Service mysql, "
                "test-redis until Service redis; then main-container starts")

    def service(self, name: str, port: int) -> Action:
        return Action("apply", f"{self.name} service {name}", text=render(
            "verify/pods/init-service.yaml.j2", namespace=self.ns, service=name, port=port))

    def step(self, v: View) -> list[Action]:
        pod = v.pods.get("pod-initcontainer")
        mysql, redis = (container(pod, n, init=True) for n in ("test-mysql", "test-redis"))
        main = container(pod, "main-container")
        if self.stage < 2 and (running(main) or main.get("started")):
            self.evidence.append(f"test-mysql {state_text(mysql)}; test-redis "
                                 f"{state_text(redis)}; main-container {state_text(main)}")
            return self.failed(f"main-container started before Service "
                               f"{self.services[self.stage][0]} existed: the init containers "
                               "did not hold it")
        if self.stage == 0:
            if "terminated" in (mysql.get("state") or {}):
                return self.failed("test-mysql finished before Service mysql existed")
            if running(mysql) and not running(redis) and self.held(v):
                self.evidence.append("before Service mysql: test-mysql running, test-redis and "
                                     "main-container waiting (Init:0/2)")
                self.advance()
                return self.ask(self.service(*self.services[0]))
        elif self.stage == 1:
            done = (mysql.get("state") or {}).get("terminated")
            if "terminated" in (redis.get("state") or {}):
                return self.failed("test-redis finished before Service redis existed")
            if done and done.get("exitCode") == 0 and running(redis) and self.held(v):
                self.evidence.append("after Service mysql: test-mysql completed, test-redis "
                                     "running, main-container waiting (Init:1/2)")
                self.advance()
                return self.ask(self.service(*self.services[1]))
        elif running(main):
            times = [(mysql.get("state") or {}).get("terminated", {}).get("startedAt", ""),
                     (mysql.get("state") or {}).get("terminated", {}).get("finishedAt", ""),
                     (redis.get("state") or {}).get("terminated", {}).get("startedAt", ""),
                     (redis.get("state") or {}).get("terminated", {}).get("finishedAt", ""),
                     main["state"]["running"].get("startedAt", "")]
            self.evidence.append("test-mysql {}..{}, test-redis {}..{}, main-container from "
                                 "{}".format(*times))
            if all(times) and times != sorted(times):
                return self.failed("the containers' times are out of order")
            return self.passed("test-mysql, then test-redis, then main-container, each held "
                               "until its Service existed")
        return []


class LifecycleHooks(Experiment):
    name, template, pods = "LifecycleHooks", "verify/pods/hook.yaml.j2", ("pod-hook-exec",)

    @property
    def expected(self) -> str:
        return ("pod-hook-exec's postStart writes 'postStart...' to nginx's index.html; on "
                f"delete its preStop writes 'preStop...' to {hook_dir(self.inv)}/prestop on "
                "its node")

    def step(self, v: View) -> list[Action]:
        pod = v.pods.get("pod-hook-exec")
        if self.stage == 0:
            main = container(pod, "main-container")
            if not running(main):
                return []
            self.node = pod["spec"].get("nodeName", "")
            got = self.result(v, "index")
            if got is None:
                return self.exec("index", "pod-hook-exec", "main-container",
                                 "cat", "/usr/share/nginx/html/index.html")
            rc, out = got
            self.evidence.append(f"index.html (exit {rc}): {out.strip()[:80] or 'empty'}")
            if rc != 0 or out.strip() != "postStart...":
                self.evidence += events_for(v.events, "pod-hook-exec", "FailedPostStartHook")
                return self.failed("postStart did not write index.html")
            self.advance()
            return self.ask(Action("delete", f"{self.name} delete", pod="pod-hook-exec"))
        if self.stage == 1:
            got = v.results.get(f"{self.name} delete")
            if got is None:
                return []
            if got[0] != 0:
                self.evidence.append(f"kubectl delete pod pod-hook-exec: {got[1].strip()}")
                return self.failed("the pod could not be deleted")
            self.advance()
            return self.ask(Action("node", f"{self.name} prestop", node=self.node,
                                   text=f"cat {hook_dir(self.inv)}/prestop"))
        got = v.results.get(f"{self.name} prestop")
        if got is None:
            return []
        rc, out = got
        self.evidence.append(f"on {self.node}: cat {hook_dir(self.inv)}/prestop (exit {rc}): "
                             f"{out.strip()[:80] or 'nothing'}")
        if rc == 0 and out.strip() == "preStop...":
            return self.passed("postStart wrote index.html; preStop ran on delete")
        self.evidence += events_for(v.events, "pod-hook-exec", "FailedPreStopHook")
        return self.failed("preStop left no file: it did not run on delete")


class LivenessProbes(Experiment):
    name, template = "LivenessProbes", "verify/pods/liveness.yaml.j2"
    pods = ("pod-liveness-exec", "pod-liveness-tcp", "pod-liveness-http")
    window = 8.0  # the passing probes' chances to fail: initial delay + 3 failures x 2 s
    grace = 10.0  # after a failing container's first Unhealthy event, the kubelet restarts it

    @property
    def expected(self) -> str:
        return ("in pod-liveness-exec, -tcp and -http the container whose probe fails is "
                "restarted (Unhealthy: Liveness probe failed) and the one whose probe passes "
                "is not")

    def __init__(self, inv: Inventory, where: Placement) -> None:
        super().__init__(inv, where)
        self.seen: dict[str, float] = {}  # when each pod's passing container was seen running
        self.failed_since: dict[str, float] = {}  # ... its failing one's first Unhealthy event

    def step(self, v: View) -> list[Action]:
        waiting = []
        for name in self.pods:
            pod = v.pods.get(name)
            ok, bad = container(pod, "healthy"), container(pod, "failing")
            if ok.get("restartCount", 0) > 0:
                self.evidence += events_for(v.events, name, "Unhealthy", "healthy")[-2:]
                return self.failed(f"{name}: the container whose probe passes restarted "
                                   f"({state_text(ok)})")
            if running(ok) and name not in self.seen:
                self.seen[name] = v.now
            if bad.get("restartCount", 0) < 1:
                said = events_for(v.events, name, "Unhealthy", "failing")
                if said:
                    self.failed_since.setdefault(name, v.now)
                    if v.now - self.failed_since[name] >= self.grace:
                        self.evidence = [f"{name}: {said[-1]}", f"{name}: failing "
                                         f"{state_text(bad)} {self.grace:.0f} s after that"]
                        return self.failed("a container whose liveness probe fails was never "
                                           f"restarted ({name}'s failing container)")
                waiting.append(f"{name}: failing {state_text(bad)}")
            elif name not in self.seen or v.now - self.seen[name] < self.window:
                waiting.append(f"{name}: healthy not yet watched {self.window:.0f} s")
        if waiting:
            self.evidence = [f"still: {w}" for w in waiting]
            return []
        self.evidence = []
        for name in self.pods:
            said = events_for(v.events, name, "Unhealthy", "failing")
            self.evidence.append(f"{name}: failing restarted "
                                 f"{container(v.pods[name], 'failing')['restartCount']} times"
                                 + (f" ({said[-1]})" if said else ""))
        return self.passed("exec, tcpSocket and httpGet: each failing container restarted, "
                           "each passing one not")

    def timed_out(self, v: View) -> Outcome:
        o = super().timed_out(v)
        if any("failing" in e and "0 restarts" in e for e in self.evidence):
            return Outcome(o.check, False, o.expected,
                           "a container whose liveness probe fails was never restarted: "
                           + o.observed, o.evidence, o.next)
        return o


class ReadinessProbe(Experiment):
    name, template, pods = "ReadinessProbe", "verify/pods/readiness.yaml.j2", ("pod-readiness",)
    next_hint = "kubectl -n {ns} get endpoints pod-readiness -o yaml"

    @property
    def expected(self) -> str:
        return ("pod-readiness is not ready and not among Service pod-readiness' endpoints "
                "while /tmp/ready is missing; ready and in them once verify creates it; out "
                "again once verify removes it")

    def hint(self) -> str:
        return super().hint().replace("{ns}", self.ns)

    @staticmethod
    def addresses(ep: dict) -> tuple[set[str], set[str]]:
        ready, unready = set(), set()
        for s in ep.get("subsets") or []:
            ready |= {a.get("ip") for a in s.get("addresses") or []}
            unready |= {a.get("ip") for a in s.get("notReadyAddresses") or []}
        return ready, unready

    def step(self, v: View) -> list[Action]:
        pod = v.pods.get("pod-readiness")
        web = container(pod, "nginx")
        ip = (pod or {}).get("status", {}).get("podIP")
        if not (running(web) and ip):
            return []
        for key, argv in (("touch", ("touch", "/tmp/ready")), ("rm", ("rm", "-f", "/tmp/ready"))):
            tries = len([k for k in self.asked if k.startswith(f"{self.name} {key}")])
            got = self.result(v, f"{key}{tries - 1}") if tries else None
            if got is not None and got[0] != 0:
                what = " ".join(argv)
                self.evidence.append(f"kubectl exec pod-readiness -c nginx -- {what} (exit "
                                     f"{got[0]}): {got[1].strip()[:200]}")
                if tries >= 3:
                    return self.failed(f"kubectl exec {what} failed {tries} times")
                return self.exec(f"{key}{tries}", "pod-readiness", "nginx", *argv)
        ready, unready = self.addresses(v.endpoints)
        where = ("in addresses" if ip in ready else "in notReadyAddresses" if ip in unready
                 else "not listed")
        now = f"ready={web.get('ready')}, {ip} {where}"
        if self.stage in (0, 2):
            if ip in ready and not web.get("ready"):
                self.evidence.append(now)
                return self.failed(f"the Service sends traffic to a pod that is not ready "
                                   f"({now})")
            if not web.get("ready") and ip not in ready and self.held(v, 1.0):
                self.evidence.append(("before" if self.stage == 0 else "after rm:") + " " + now)
                if self.stage == 2:
                    return self.passed("out of the endpoints while not ready, in them while "
                                       "ready, out again")
                self.advance()
                return self.exec("touch0", "pod-readiness", "nginx", "touch", "/tmp/ready")
        elif self.stage == 1 and web.get("ready") and ip in ready:
            self.evidence.append(f"after touch: {now}")
            self.advance()
            return self.exec("rm0", "pod-readiness", "nginx", "rm", "-f", "/tmp/ready")
        self.last = now
        return []

    def timed_out(self, v: View) -> Outcome:
        o = super().timed_out(v)
        what = {0: "waiting for it to be out of the endpoints before /tmp/ready exists",
                1: "waiting for it to be ready and in the endpoints after touch /tmp/ready",
                2: "waiting for it to leave the endpoints after rm /tmp/ready"}[self.stage]
        return Outcome(o.check, False, o.expected,
                       f"{what}; last seen {getattr(self, 'last', 'nothing')}",
                       o.evidence, o.next)


class RestartPolicy(Experiment):
    name, template = "RestartPolicy", "verify/pods/restartpolicy.yaml.j2"
    pods = ("pod-restart-always", "pod-restart-onfailure", "pod-restart-onfailure-ok",
            "pod-restart-never")

    @property
    def expected(self) -> str:
        return ("Always restarts a container that exits 0; OnFailure restarts one that exits 1 "
                "and not one that exits 0 (Succeeded); Never does not restart one that exits 1 "
                "(Failed)")

    def step(self, v: View) -> list[Action]:
        c = {p: container(v.pods.get(p), "busybox") for p in self.pods}
        phase = {p: (v.pods.get(p) or {}).get("status", {}).get("phase") for p in self.pods}
        for p in ("pod-restart-onfailure-ok", "pod-restart-never"):
            if c[p].get("restartCount", 0) > 0:
                self.evidence.append(f"{p}: {phase[p]}, {state_text(c[p])}")
                return self.failed(f"{p} restarted although its policy says not to")
        done = {
            "pod-restart-always": c["pod-restart-always"].get("restartCount", 0) >= 1,
            "pod-restart-onfailure": c["pod-restart-onfailure"].get("restartCount", 0) >= 1,
            "pod-restart-onfailure-ok": phase["pod-restart-onfailure-ok"] == "Succeeded",
            "pod-restart-never": phase["pod-restart-never"] == "Failed",
        }
        if not all(done.values()):
            return []
        self.evidence = [f"{p}: {phase[p]}, {state_text(c[p])}" for p in self.pods]
        return self.passed("Always and OnFailure restarted, OnFailure after exit 0 Succeeded, "
                           "Never Failed without a restart")


class NodePlacement(Experiment):
    name, template, pods = "NodePlacement", "verify/pods/scheduling.yaml.j2", \
        ("pod-nodename", "pod-nodeselector")

    @property
    def expected(self) -> str:
        return (f"pod-nodename runs on {self.where.node_name} (nodeName); pod-nodeselector on "
                f"{self.where.selector_node}, the node verify labelled {LABEL_KEY}="
                f"{LABEL_VALUE} (nodeSelector)")

    def step(self, v: View) -> list[Action]:
        want = {"pod-nodename": self.where.node_name,
                "pod-nodeselector": self.where.selector_node}
        ok = True
        for name, node in want.items():
            pod = v.pods.get(name)
            got = (pod or {}).get("spec", {}).get("nodeName")
            if got and got != node:
                self.evidence.append(f"{name}: {pod_text(pod)}")
                return self.failed(f"{name} went to {got}, not {node}")
            ok = ok and got == node and running(container(pod, "nginx"))
        if ok:
            self.evidence = [f"{n}: {pod_text(v.pods[n])}" for n in want]
            return self.passed(f"pod-nodename on {want['pod-nodename']}, pod-nodeselector on "
                               f"{want['pod-nodeselector']}")
        return []


EXPERIMENTS: tuple[type[Experiment], ...] = (
    NoCommand, CommandArgs, Env, ContainerPort, Resources, InitContainers, LifecycleHooks,
    LivenessProbes, ReadinessProbe, RestartPolicy, NodePlacement)
NAMES = tuple(e.name for e in EXPERIMENTS)
NEEDS = {"ContainerPort": ("Env",)}
"""ContainerPort's client is pod-env's busybox: its pod is applied too."""


def chosen(inv: Inventory, wanted: list[str], where: Placement) -> list[Experiment]:
    return [e(inv, where) for e in EXPERIMENTS if e.name in wanted]


def manifests(inv: Inventory, exps: list[Experiment]) -> str:
    """The namespace and every chosen experiment's pods (and the pods they need)."""
    names = {e.name for e in exps} | {n for e in exps for n in NEEDS.get(e.name, ())}
    where = exps[0].where if exps else Placement("1Gi", "", "", "")
    docs = [render("verify/namespace.yaml.j2", namespace=inv.verify.namespace)]
    docs += [e(inv, where).manifest() for e in EXPERIMENTS if e.name in names]
    return "---\n".join(docs)


def dry_run_text(inv: Inventory, wanted: list[str], limit: int, keep: bool) -> str:
    """What run would do, for ``--dry-run``: the commands and the manifests (the too-big
    request is computed from ``kubectl get nodes`` then: shown as a placeholder)."""
    workers = [n.name for n in inv.workers] or [inv.init_node.name]
    where = Placement("<largest allocatable memory + 1Gi>", "?", workers[-1], workers[0])
    exps = chosen(inv, wanted, where)
    m = inv.init_node.name
    lines = [f"would: on {m}: $ {KUBECTL} get nodes -o json"]
    if any(e.name == "NodePlacement" for e in exps):
        lines.append(f"would: on {m}: $ {label_script(inv, where.selector_node, True)}")
    lines.append(f"would: on {m}: $ {KUBECTL} apply -f -\n  with stdin:\n{manifests(inv, exps)}")
    lines.append(f"would: on {m}: every {ROUND:.0f} s until each check is decided (at most "
                 f"{2 * limit} s): $ {KUBECTL} -n {inv.verify.namespace} get pods,events"
                 " (and endpoints pod-readiness) -o json, and kubectl exec as the checks ask")
    if any(e.name == "InitContainers" for e in exps):
        lines.append(f"would: on {m}: $ {KUBECTL} apply -f - (Service mysql, later redis)")
    if any(e.name == "LifecycleHooks" for e in exps):
        lines.append(f"would: on {m}: $ {KUBECTL} -n {inv.verify.namespace} delete pod "
                     f"pod-hook-exec; on its node: $ cat {hook_dir(inv)}/prestop; on every "
                     f"node: $ rm -rf {hook_dir(inv)}")
    if any(e.name == "NodePlacement" for e in exps):
        lines.append(f"would: on {m}: $ {label_script(inv, where.selector_node, False)}")
    if not keep:
        lines.append(f"would: on {m}: $ {KUBECTL} delete namespace {inv.verify.namespace}")
    return "\n".join(lines)


def label_script(inv: Inventory, node: str, on: bool) -> str:
    arg = f"{LABEL_KEY}={LABEL_VALUE} --overwrite" if on else f"{LABEL_KEY}-"
    return f"{KUBECTL} label node {shlex.quote(node)} {arg}"


# -- the run ------------------------------------------------------------------------------------
def run(runner: Any, inv: Inventory, wanted: list[str], limit: int, keep: bool) -> list[Outcome]:
    """Apply the chosen experiments, watch them until each is decided or ``2 * limit`` seconds
    passed, and undo: the node label, the hook directory, the namespace (unless ``keep``)."""
    from .errors import BootstrapError

    session = runner.session(inv.init_node)
    labelled: str | None = None
    exps: list[Experiment] = []
    try:
        try:
            nodes = _json(session.run(f"timeout {limit} {KUBECTL} get nodes -o json 2>&1",
                                      readonly=True, what="verify: read the nodes").stdout)
        except BootstrapError as exc:
            nodes = {"error": f"master unreachable: {exc.message}"}
        if "error" in nodes:
            return _all_failed(inv, wanted, f"kubectl get nodes failed: {nodes['error']}")
        where = placement(inv, nodes)
        exps = chosen(inv, wanted, where)
        if any(e.name == "NodePlacement" for e in exps):
            labelled = where.selector_node
            session.run(label_script(inv, labelled, True), scratch=True,
                        what="verify: label a node for nodeSelector")
        applied = session.run(f"{settled(inv, limit)}; timeout {limit} {KUBECTL} apply -f - 2>&1",
                              stdin=manifests(inv, exps), scratch=True,
                              what="verify: apply the Pod-chapter pods")
        if not applied.ok:
            lines = applied.stdout.strip().splitlines() or ["?"]
            errors = [ln for ln in lines if ln.lower().startswith(("error", "the connection"))]
            return _all_failed(inv, wanted, "kubectl apply failed: "
                               + "; ".join(errors[:3] or lines[-1:]))
        _watch(runner, session, inv, exps, limit)
        return [e.outcome for e in exps if e.outcome]
    finally:
        _undo(runner, session, inv, labelled, any(e.name == "LifecycleHooks" for e in exps))
        if not keep:
            delete_namespace(session, inv)
        session.close()


def _watch(runner: Any, session: Any, inv: Inventory, exps: list[Experiment],
           limit: int) -> None:
    started = time.monotonic()
    done: dict[str, tuple[int, str]] = {}
    pending: list[Action] = []
    endpoints = any(e.name == "ReadinessProbe" for e in exps)
    last = View(0.0, {}, [], {})
    while any(e.outcome is None for e in exps):
        now = time.monotonic() - started
        if now > 2 * limit:
            for e in exps:
                if e.outcome is None:
                    e.outcome = e.timed_out(last)
            return
        execs = [a for a in pending if a.kind == "exec"]
        out = session.run(round_script(inv, execs, limit, endpoints), readonly=True,
                          what="verify: observe the pods", timeout=limit + 30).stdout
        last = view(out, now, done)
        pending = []
        for e in exps:
            if e.outcome is None:
                pending += e.step(last)
        for a in pending:
            if a.kind != "exec":
                done[a.key] = _act(runner, session, inv, a, limit)
        if not any(a.kind == "exec" for a in pending):
            time.sleep(ROUND)


def _act(runner: Any, session: Any, inv: Inventory, a: Action, limit: int) -> tuple[int, str]:
    from .errors import BootstrapError

    ns = shlex.quote(inv.verify.namespace)
    try:
        if a.kind == "apply":
            r = session.run(f"timeout {limit} {KUBECTL} apply -f - 2>&1", stdin=a.text,
                            scratch=True, what=f"verify: {a.key}")
        elif a.kind == "delete":
            r = session.run(f"timeout {limit + 10} {KUBECTL} -n {ns} delete pod "
                            f"{shlex.quote(a.pod)} --wait=true --timeout={limit}s 2>&1",
                            scratch=True, what=f"verify: {a.key}", timeout=limit + 30)
        else:
            s = runner.session(inv.node(a.node))
            try:
                r = s.run(f"{a.text} 2>&1", scratch=True, what=f"verify: {a.key}")
            finally:
                s.close()
        return (0 if r.ok else 1), r.stdout
    except BootstrapError as exc:
        return -1, exc.message


def _undo(runner: Any, session: Any, inv: Inventory, labelled: str | None,
          hooks: bool) -> None:
    """Remove the label and the hook directories, also after a failure or Ctrl-C."""
    from .errors import BootstrapError
    from .ssh import run_pool

    if labelled:  # kubectl's answer decides; a broken connection gets a fresh one, once
        unlabel = label_script(inv, labelled, False) + " 2>&1"
        for attempt in (session, None):
            s = attempt or runner.session(inv.init_node)
            try:
                r = s.run(unlabel, scratch=True, cleanup=True,
                          what="verify: remove its node label", timeout=60)
                if r.ok or "not found" in r.stdout:
                    break
            except BootstrapError:
                pass
            finally:
                if attempt is None:
                    s.close()
    if hooks:
        def rm(node):
            s = runner.session(node)
            try:
                s.run(f"rm -rf {shlex.quote(hook_dir(inv))}; rmdir {HOOK_ROOT} 2>/dev/null; "
                      "true", scratch=True, cleanup=True, what="verify: remove the hook "
                      "directory", timeout=60)
            finally:
                s.close()

        run_pool(list(inv.nodes), rm, runner.opts.parallel or inv.ssh.parallel)


def _all_failed(inv: Inventory, wanted: list[str], why: str) -> list[Outcome]:
    where = Placement("?", "?", "?", "?")
    return [Outcome(e.name, False, e(inv, where).expected, why, [why],
                    f"kubectl -n {inv.verify.namespace} get events")
            for e in EXPERIMENTS if e.name in wanted]
