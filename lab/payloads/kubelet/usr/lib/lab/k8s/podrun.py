#!/usr/bin/python3 -S
"""The lab's pod runner: the kubelet's part for bare Pods (lab/k8s/STATE.md "Bare pods: the
node runner"; contract: issue #16).

One runner per node while its kubelet is active (`podrun.py start|stop`, run by the kubelet
unit's hooks; pidfile /run/lab/podrun.pid). It polls state.json (its mtime, every 0.05 s) for
Pods bound to this node (`spec.nodeName`, `metadata.uid`, `lab.podIP`) and runs them as real
processes: each container is Debian's busybox in its own mount and PID namespace (`unshare
--mount --pid --fork` inside the node) chrooted into a small root under /run/lab/pods/<uid>/.
It writes each pod's status (`pods/NS/NAME.json`) and events (`pods/NS/NAME.events.json`),
runs hooks, probes, restart policy and back-off as pkg/kubelet/kuberuntime and
pkg/kubelet/prober do, answers exec requests (`exec/ID.req.json`, k8s/podexec.py) and the
containers' network tools (k8s/podnet.py), and finishes deletions (removes the object).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, "/usr/lib/lab")
from k8s import podnet, state

ROOT = state.ROOT
PODS = f"{ROOT}/pods"
EXEC = f"{ROOT}/exec"
TIME_SCALE = f"{ROOT}/time_scale"
PIDFILE = "/run/lab/podrun.pid"
LOG = "/var/log/lab-podrun.log"
WORK = "/run/lab/pods"
TOOLS = "/usr/lib/lab/container"
BUSYBOX = "/usr/bin/busybox"
LIBS = ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libresolv.so.2")
DEVICES = ("null", "zero", "random", "urandom", "full")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # docker's default
# network clients: the stand-ins of /usr/lib/lab/container (busybox's own would send packets)
NET_TOOLS = ("nslookup", "wget", "ping", "ping6", "nc", "telnet", "traceroute", "traceroute6",
             "ftpget", "ftpput", "tftp", "arping", "udhcpc", "udhcpd", "rdate", "ssl_client",
             "telnetd", "ntpd", "whois")
# nginx:1.27 is Debian bookworm: its everyday tools are Debian's coreutils 9.1, the node's own
# (/usr/bin, bind-mounted at /.lab/coreutils), those needing no other library than libc
COREUTILS = ("cat", "touch", "rm", "echo", "sleep", "date", "head", "tail", "printenv", "env",
             "wc")
# images: (ENTRYPOINT, CMD) as their image configs say
IMAGES = {"busybox": ([], ["sh"]),
          "nginx": (["/docker-entrypoint.sh"], ["nginx", "-g", "daemon off;"])}
BACKOFF_INITIAL, BACKOFF_MAX = 10, 300  # kubelet.go: backOffPeriod, MaxContainerBackOff
MIN_GRACE = 2  # kuberuntime_container.go minimumGracePeriodInSeconds
TICK = 0.05
TIMED_OUT = -1000  # Ctr.exec's status when its timeout killed the command


# ---- knobs --------------------------------------------------------------------------------

def scale() -> float:
    """contract 6: every kubelet timing is multiplied by this (tests: 0.1)."""
    try:
        with open(TIME_SCALE) as fh:
            v = float(fh.read().strip())
        return v if v > 0 else 1.0
    except (OSError, ValueError):
        return 1.0


def fault(name: str, pod: str) -> bool:
    """contract 7: `true` breaks every pod, a list of pod names only those."""
    v = state.faults().get(name)
    return v is True or (isinstance(v, list) and pod in v)


def now_ts() -> str:
    return state.rfc3339(time.time())


def write_json(path: str, obj) -> None:
    """Atomically (a temporary file of this process and thread, renamed), mode 0666."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path), 0o777)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.lab-tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
    os.chmod(tmp, 0o666)
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: str):
    """flock on PATH.lock: a pod's files are shared by the runners of every pod that had the
    name (a deleted pod's runner still writing while its successor, maybe on another node,
    starts)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def log(msg: str) -> None:
    with contextlib.suppress(OSError), open(LOG, "a") as fh:
        fh.write(f"{time.strftime('%H:%M:%S')} {msg}\n")


def go_duration(seconds: int) -> str:
    """time.Duration.String() for whole seconds: 10s, 1m20s, 5m0s."""
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"


def image_kind(image: str) -> str:
    """busybox or nginx (by the repository's last path component, any registry mirror)."""
    repo = state.qualify(image).rsplit(":", 1)[0].rsplit("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    return last if last in IMAGES else "busybox"


def expand(text: str, env: dict) -> str:
    """$(VAR) references in command/args (expansion.go): defined vars expand, $$ escapes."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, text)


# ---- the pod --------------------------------------------------------------------------------

class Pod:
    """One bound bare Pod on this node: its containers' threads, status and events."""

    def __init__(self, runner: Runner, obj: dict):
        self.runner = runner
        self.obj = obj
        meta, spec = obj["metadata"], obj.get("spec") or {}
        self.ns, self.name, self.uid = meta.get("namespace", "default"), meta["name"], meta["uid"]
        self.spec = spec
        self.ip = obj["lab"]["podIP"]
        self.listen = podnet.loopback(self.ip)
        self.lock = threading.RLock()
        self.stop = threading.Event()  # deletion: stop every container
        self.grace = float(spec.get("terminationGracePeriodSeconds", 30))
        self.work = f"{WORK}/{self.uid}"
        self.start_time = now_ts()
        self.events: list[dict] = []
        self.init = [Ctr(self, c, True) for c in spec.get("initContainers") or []]
        self.ctrs = [Ctr(self, c, False) for c in spec.get("containers") or []]
        self.initialized = not self.init
        self.init_failed = False
        self.transitions: dict[str, tuple[str, str]] = {}
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.deleted_at: float | None = None
        self.vanished = False
        self.finished = False
        self._load_events()

    @property
    def format(self) -> str:
        return f"{self.name}_{self.ns}({self.uid})"  # kubelet's format.Pod

    def policy(self) -> str:
        if fault("restart_policy_ignored", self.name):
            return "Always"
        return self.spec.get("restartPolicy") or "Always"

    # -- files --
    def status_path(self) -> str:
        return f"{PODS}/{self.ns}/{self.name}.json"

    def events_path(self) -> str:
        return f"{PODS}/{self.ns}/{self.name}.events.json"

    def _load_events(self) -> None:
        try:
            with open(self.events_path()) as fh:
                old = json.load(fh)
            self.events = [e for e in old if (e.get("involvedObject") or {}).get("uid")
                           == self.uid]
        except (OSError, ValueError):
            self.events = []

    def event(self, kind: str, reason: str, message: str, ctr: Ctr | None = None) -> None:
        """A core/v1 Event from the kubelet; a repeat bumps count and lastTimestamp."""
        ts = now_ts()
        path = ""
        if ctr is not None:
            path = f"spec.{'initContainers' if ctr.init else 'containers'}{{{ctr.name}}}"
        with self.lock:
            for e in self.events:
                if (e["type"], e["reason"], e["message"], e["involvedObject"].get("fieldPath",
                                                                                  "")) == \
                        (kind, reason, message, path):
                    e["count"] += 1
                    e["lastTimestamp"] = ts
                    break
            else:
                inv = {"apiVersion": "v1", "kind": "Pod", "name": self.name,
                       "namespace": self.ns, "uid": self.uid}
                if path:
                    inv["fieldPath"] = path
                self.events.append({
                    "apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": f"{self.name}.{time.time_ns():x}",
                                 "namespace": self.ns, "creationTimestamp": ts},
                    "involvedObject": inv, "reason": reason, "message": message,
                    "source": {"component": "kubelet", "host": self.runner.node},
                    "firstTimestamp": ts, "lastTimestamp": ts, "count": 1, "type": kind,
                    "eventTime": None, "reportingComponent": "", "reportingInstance": ""})
            path = self.events_path()
            with file_lock(path):  # other uids' events (a former pod of that name) stay
                try:
                    with open(path) as fh:
                        others = [e for e in json.load(fh) if (e.get("involvedObject") or {})
                                  .get("uid") != self.uid]
                except (OSError, ValueError, AttributeError):
                    others = []
                write_json(path, others + self.events)

    def condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> dict:
        status = "True" if ok else "False"
        prev = self.transitions.get(kind)
        if prev is None or prev[0] != status:
            self.transitions[kind] = (status, now_ts())
        out = {"type": kind, "status": status, "lastProbeTime": None,
               "lastTransitionTime": self.transitions[kind][1]}
        if reason:
            out["reason"] = reason
        if message:
            out["message"] = message
        return out

    def phase(self) -> str:
        """kubelet_pods.go getPhase."""
        if self.init_failed:
            return "Failed"
        if not self.initialized:
            return "Pending"
        waiting = running = stopped = succeeded = 0
        for c in self.ctrs:
            st = c.state
            if "running" in st:
                running += 1
            elif "terminated" in st:
                stopped += 1
                if st["terminated"]["exitCode"] == 0:
                    succeeded += 1
            elif c.last.get("terminated"):
                stopped += 1
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        pol = self.policy()
        if pol == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if pol == "Never":
            return "Failed"
        return "Running"

    def qos(self) -> str:
        rs = [c.get("resources") or {} for c in (self.spec.get("containers") or [])
              + (self.spec.get("initContainers") or [])]
        if not any(r.get("requests") or r.get("limits") for r in rs):
            return "BestEffort"
        for r in rs:
            lim, req = r.get("limits") or {}, r.get("requests") or {}
            if not all(k in lim for k in ("cpu", "memory")):
                return "Burstable"
            if any(req.get(k, lim[k]) != lim[k] for k in ("cpu", "memory")):
                return "Burstable"
        return "Guaranteed"

    def publish(self) -> None:
        """Write the pod's status file (contract 2)."""
        with self.lock:
            if self.finished:
                return
            phase = self.phase()
            unready = [c.name for c in self.ctrs if not c.ready]
            pending_init = [c.name for c in self.init if not c.done_ok]
            conds = []
            if self.initialized:
                conds.append(self.condition("Initialized", True))
            else:
                conds.append(self.condition("Initialized", False, "ContainersNotInitialized",
                                            f"containers with incomplete status: "
                                            f"[{' '.join(pending_init)}]"))
            if phase == "Succeeded" or (phase == "Failed" and not any(
                    "running" in c.state for c in self.ctrs)):
                conds.append(self.condition("Ready", False, "PodCompleted"))
                conds.append(self.condition("ContainersReady", False, "PodCompleted"))
            elif unready:
                msg = f"containers with unready status: [{' '.join(unready)}]"
                conds.append(self.condition("Ready", False, "ContainersNotReady", msg))
                conds.append(self.condition("ContainersReady", False, "ContainersNotReady",
                                            msg))
            else:
                conds.append(self.condition("Ready", True))
                conds.append(self.condition("ContainersReady", True))
            bound = (self.obj.get("lab") or {}).get("bound")
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": state.rfc3339(bound) if bound
                          else self.start_time})
            status = {"phase": phase, "conditions": conds,
                      "hostIP": self.runner.host_ip, "podIP": self.ip,
                      "podIPs": [{"ip": self.ip}], "startTime": self.start_time}
            if self.init:
                status["initContainerStatuses"] = [c.status() for c in self.init]
            status["containerStatuses"] = [c.status() for c in self.ctrs]
            status["qosClass"] = self.qos()
            with file_lock(self.status_path()):
                write_json(self.status_path(), {"uid": self.uid, "status": status})

    # -- lifecycle --
    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:
            log(f"pod {self.ns}/{self.name}: {exc!r}")
            import traceback
            log(traceback.format_exc())
        finally:
            self._finish()

    def _run(self) -> None:
        os.makedirs(self.work, exist_ok=True)
        self.prepare_volumes()
        self.publish()
        if self.init and not fault("init_not_blocking", self.name):
            for c in self.init:
                c.loop()
                if self.stop.is_set():
                    return
                if not c.done_ok:
                    self.init_failed = True
                    for m in self.ctrs:
                        m.state = {"waiting": {"reason": "PodInitializing"}}
                    self.publish()
                    self.stop.wait()
                    return
            self.initialized = True
        elif self.init:  # the fault: main containers start while init containers still run
            t = threading.Thread(target=self._init_background, daemon=True)
            t.start()
        threads = [threading.Thread(target=c.loop, daemon=True) for c in self.ctrs]
        for t in threads:
            t.start()
        self.publish()
        for t in threads:
            t.join()
        self.stop.wait()

    def _init_background(self) -> None:
        for c in self.init:
            c.loop()
            if self.stop.is_set() or not c.done_ok:
                return
        with self.lock:
            self.initialized = True
        self.publish()

    def update(self, obj: dict) -> None:
        """The API changed the pod in place (kubectl apply; of what the runner uses only the
        images may change, ValidatePodUpdate): a container whose image changed is killed and
        started again with the new one, whatever the restart policy, without back-off
        (kuberuntime_manager.go computePodActions: the container's hash changed, `Container C
        definition changed, will be restarted`; the back-off key holds the hash). A completed
        init container or a container that will not run again keeps its old image."""
        spec = obj.get("spec") or {}
        self.obj = obj
        for part, ctrs in (("initContainers", self.init), ("containers", self.ctrs)):
            for c, new in zip(ctrs, spec.get(part) or [], strict=False):
                image = new.get("image") or ""
                if not image or image == (c.next_image or c.image) or (c.init and c.done_ok):
                    continue
                with self.lock:
                    c.next_image = image
                    c.spec = dict(c.spec, image=image)
                c.changed.set()

    def delete(self, obj: dict | None) -> None:
        """The API set deletionTimestamp (OBJ) or the object is gone (namespace deleted)."""
        if self.stop.is_set():
            return
        if obj is None:
            self.vanished = True
        else:
            meta = obj.get("metadata") or {}
            self.grace = float(meta.get("deletionGracePeriodSeconds", self.grace))
        self.deleted_at = time.time()
        self.stop.set()

    def deadline(self) -> float:
        return (self.deleted_at or time.time()) + self.grace * scale()

    def _finish(self) -> None:
        for c in self.init + self.ctrs:
            c.kill_now()
        if self.stop.is_set():
            if not self.vanished:
                with state.update() as cur:
                    objs = cur.get("objects") or {}
                    k = f"pod/{self.ns}/{self.name}"
                    if ((objs.get(k) or {}).get("metadata") or {}).get("uid") == self.uid:
                        del objs[k]
            with self.lock:
                self.finished = True
            path = self.status_path()
            with file_lock(path), contextlib.suppress(OSError, ValueError):
                with open(path) as fh:
                    mine = json.load(fh).get("uid") == self.uid
                if mine:  # not a successor's of the same name
                    os.unlink(path)
        shutil.rmtree(self.work, ignore_errors=True)

    def prepare_volumes(self) -> None:
        for v in self.spec.get("volumes") or []:
            hp = v.get("hostPath")
            if hp and hp.get("type") in ("DirectoryOrCreate", None, ""):
                with contextlib.suppress(OSError):
                    os.makedirs(hp["path"], exist_ok=True)
                    if hp.get("type") == "DirectoryOrCreate":
                        os.chmod(hp["path"], 0o755)
            elif hp and hp.get("type") == "FileOrCreate" and not os.path.exists(hp["path"]):
                with contextlib.suppress(OSError):
                    os.makedirs(os.path.dirname(hp["path"]), exist_ok=True)
                    open(hp["path"], "a").close()
            elif "emptyDir" in v:
                os.makedirs(f"{self.work}/volumes/{v['name']}", mode=0o777, exist_ok=True)
                os.chmod(f"{self.work}/volumes/{v['name']}", 0o777)

    def volume_source(self, name: str) -> str | None:
        for v in self.spec.get("volumes") or []:
            if v.get("name") == name:
                if v.get("hostPath"):
                    return v["hostPath"]["path"]
                if "emptyDir" in v:
                    return f"{self.work}/volumes/{name}"
        return None


# ---- one container --------------------------------------------------------------------------

class Ctr:
    def __init__(self, pod: Pod, spec: dict, init: bool):
        self.pod, self.spec, self.init = pod, spec, init
        self.name = spec.get("name", "")
        self.image = spec.get("image", "")
        self.kind = image_kind(self.image)
        self.restarts = 0
        # kubelet_pods.go: the default waiting state of every container of a pod with init
        # containers, init ones included, is PodInitializing
        first = "PodInitializing" if pod.spec.get("initContainers") else "ContainerCreating"
        self.state: dict = {"waiting": {"reason": first}}
        self.last: dict = {}
        self.ready = False
        self.started = False
        self.done_ok = False
        self.cid = ""
        self.proc: subprocess.Popen | None = None
        self.pid = 0  # the container's PID 1 as the node sees it
        self.base = f"{pod.work}/{self.name}"
        self.root = f"{self.base}/root"
        self.env: dict = {}
        self.backoff = 0  # kubelet's flowcontrol.Backoff entry (seconds, nominal); 0: none
        self.backoff_at = 0.0
        self.started_at = 0.0
        self.finished_t = 0.0
        self.sigkilled = False
        self.changed = threading.Event()  # the API changed this container's image
        self.next_image = ""
        runtime = state.node_facts(pod.runner.node).get("runtime") or "docker"
        self.runtime = runtime

    # -- what the API shows --
    def image_id(self) -> str:
        import hashlib
        digest = hashlib.sha256(state.qualify(self.image).encode()).hexdigest()
        repo = state.qualify(self.image).rsplit(":", 1)[0]
        if self.runtime == "docker":
            return f"docker-pullable://{self.image.rsplit(':', 1)[0]}@sha256:{digest}"
        return f"{repo}@sha256:{digest}"

    def status(self) -> dict:
        out = {"name": self.name, "image": self.image, "imageID": "", "ready": self.ready,
               "restartCount": self.restarts, "state": self.state, "lastState": self.last}
        if not self.init:
            out["started"] = self.started
        if self.cid:
            out["imageID"] = self.image_id()
            out["containerID"] = self.cid
        return out

    def set(self, **kw) -> None:
        with self.pod.lock:
            for k, v in kw.items():
                setattr(self, k, v)
        self.pod.publish()

    # -- the loop: start, watch, restart per policy with back-off --
    def take_new_image(self) -> None:
        if self.changed.is_set():
            with self.pod.lock:
                self.image = self.next_image or self.image
                self.kind = image_kind(self.image)
                self.next_image = ""
            self.changed.clear()

    def loop(self) -> None:
        pod = self.pod
        while not pod.stop.is_set():
            self.take_new_image()
            code = self.run_once()
            if pod.stop.is_set():
                return
            if self.changed.is_set():  # definition changed: started again at once
                self.backoff = 0
                with pod.lock:
                    self.restarts += 1
                continue
            pol = pod.policy()
            if self.init:
                again = code != 0 and pol != "Never"
                if code == 0:
                    self.set(done_ok=True)
                    return
            else:
                again = pol == "Always" or (pol == "OnFailure" and code != 0)
            if not again:
                return
            if not self.wait_backoff():
                return
            with pod.lock:
                self.restarts += 1

    def wait_backoff(self) -> bool:
        """doBackOff (kuberuntime_manager.go): the first restart is immediate and starts a
        10 s back-off; while in back-off the container waits CrashLoopBackOff; each restart
        after it doubles the delay up to 300 s; an entry older than 2x the max is dropped."""
        sc = scale()
        t = time.time()
        if self.backoff and t - self.backoff_at > 2 * BACKOFF_MAX * sc:
            self.backoff = 0
        if not self.backoff:
            self.backoff, self.backoff_at = BACKOFF_INITIAL, t
            return True
        delay = self.backoff
        msg = (f"back-off {go_duration(delay)} restarting failed container={self.name} "
               f"pod={self.pod.format}")
        self.set(state={"waiting": {"reason": "CrashLoopBackOff", "message": msg}})
        self.pod.event("Warning", "BackOff", f"Back-off restarting failed container "
                       f"{self.name} in pod {self.pod.format}", self)
        end = self.finished_t + delay * sc
        while time.time() < end and not self.changed.is_set():
            if self.pod.stop.wait(min(TICK, max(0.0, end - time.time()))):
                return False
        if self.changed.is_set():  # a new image: a new back-off entry, started now
            self.backoff = 0
            return True
        self.backoff, self.backoff_at = min(delay * 2, BACKOFF_MAX), time.time()
        return True

    def command(self) -> list[str]:
        """Kubernetes' rule (container.go / docs "Define a Command and Arguments"): command
        replaces ENTRYPOINT and drops CMD; args alone replace CMD."""
        entry, cmd = IMAGES[self.kind]
        if self.kind == "busybox" and fault("busybox_default_cmd", self.pod.name):
            cmd = ["sleep", "3600"]
        command = [expand(str(x), self.env) for x in self.spec.get("command") or []]
        args = [expand(str(x), self.env) for x in self.spec.get("args") or []]
        if fault("args_dropped", self.pod.name):
            args = []
        if command:
            return command + args
        if args:
            return entry + args
        return entry + cmd

    def make_env(self) -> dict:
        env = {"PATH": PATH, "HOSTNAME": self.pod.name, "HOME": "/root"}
        data = self.pod.runner.data
        for svc in podnet.workloads.services(data).values():  # docker links style, the
            meta = svc["metadata"]                             # kubernetes Service only
            if meta.get("namespace", "default") == "default" and meta["name"] == "kubernetes":
                ip = svc["spec"].get("clusterIP", "")
                env.update({"KUBERNETES_SERVICE_HOST": ip, "KUBERNETES_SERVICE_PORT": "443",
                            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
                            "KUBERNETES_PORT": f"tcp://{ip}:443",
                            "KUBERNETES_PORT_443_TCP": f"tcp://{ip}:443",
                            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
                            "KUBERNETES_PORT_443_TCP_PORT": "443",
                            "KUBERNETES_PORT_443_TCP_ADDR": ip})
        if self.kind == "nginx":  # the image's ENV; NGINX_VERSION is a full version tag's
            tag = state.qualify(self.image).rsplit(":", 1)[-1]
            version = tag if re.fullmatch(r"\d+\.\d+\.\d+", tag) else "1.27.5"
            env.update({"NGINX_VERSION": version, "NJS_VERSION": "0.8.10",
                        "PKG_RELEASE": "1~bookworm"})
        if not fault("env_dropped", self.pod.name):
            for e in self.spec.get("env") or []:
                if "value" in e or not e.get("valueFrom"):
                    env[e.get("name", "")] = expand(str(e.get("value", "")), env)
                    continue
                path = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
                env[e.get("name", "")] = {
                    "spec.nodeName": self.pod.runner.node, "metadata.name": self.pod.name,
                    "metadata.namespace": self.pod.ns, "status.podIP": self.pod.ip,
                    "status.hostIP": self.pod.runner.host_ip, "metadata.uid": self.pod.uid,
                }.get(path, "")
        return env

    def memory_limit(self) -> str:
        if fault("limits_ignored", self.pod.name):
            return "max"
        lim = ((self.spec.get("resources") or {}).get("limits") or {}).get("memory")
        if lim is None:
            return "max"
        return str(quantity(str(lim)))

    def build_root(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
        r = self.root
        for d in ("bin", "etc", "proc", "dev", "sys/fs/cgroup", "root", "run", "var/tmp",
                  "lib/x86_64-linux-gnu", "lib64", "usr/local", ".lab/tools", ".lab/rpc",
                  "home"):
            os.makedirs(f"{r}/{d}", exist_ok=True)
        os.makedirs(f"{r}/tmp", mode=0o1777, exist_ok=True)
        os.chmod(f"{r}/tmp", 0o1777)
        os.chmod(f"{r}/.lab/rpc", 0o777)
        for link, to in (("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin"),
                         ("usr/local/bin", "../../bin")):
            os.symlink(to, f"{r}/{link}")
        for applet in self.pod.runner.applets:
            os.symlink("/.lab/busybox", f"{r}/bin/{applet}")
        for tool in NET_TOOLS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{r}/bin/{tool}")
            os.symlink("/.lab/tools/net", f"{r}/bin/{tool}")
        for tool in ("busybox", "httpd", "printenv"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{r}/bin/{tool}")
            os.symlink(f"/.lab/tools/{tool}", f"{r}/bin/{tool}")
        for f in (".lab/busybox", *LIBS, *(f"/dev/{d}" for d in DEVICES)):
            open(f"{r}/{f.lstrip('/')}", "w").close()
        pod = self.pod
        data = pod.runner.data
        dns = str(podnet.workloads.service_net(data).network_address + 10)
        dom = podnet.workloads.domain(data)
        files = {
            "etc/hostname": f"{pod.name}\n",
            "etc/hosts": ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\t"
                          "localhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                          "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\t"
                          f"ip6-allrouters\n{pod.ip}\t{pod.name}\n"),
            "etc/resolv.conf": (f"nameserver {dns}\nsearch {pod.ns}.svc.{dom} svc.{dom} {dom}\n"
                                "options ndots:5\n"),
            "etc/nsswitch.conf": "hosts: files\n",  # no resolver packet ever leaves the pod
            "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\n"
                           "nobody:x:65534:65534:nobody:/home:/bin/false\n"),
            "etc/group": "root:x:0:\nnobody:x:65534:\n",
            "sys/fs/cgroup/memory.max": self.memory_limit() + "\n",
            ".lab/listen": pod.listen + "\n",
            ".lab/pod": f"{pod.ns}/{pod.name}/{self.name}\n",
        }
        if self.kind == "nginx":
            from k8s import workloads
            os.makedirs(f"{r}/usr/share/nginx/html", exist_ok=True)
            os.makedirs(f"{r}/etc/nginx", exist_ok=True)
            files["usr/share/nginx/html/index.html"] = workloads.NGINX_INDEX
            files["usr/share/nginx/html/50x.html"] = (
                "<!DOCTYPE html>\n<html>\n<head>\n<title>Error</title>\n</head>\n<body>\n"
                "<h1>An error occurred.</h1>\n</body>\n</html>\n")
            os.unlink(f"{r}/bin/httpd")
            os.symlink("/.lab/busybox", f"{r}/bin/httpd")
            os.symlink("/.lab/tools/nginx", f"{r}/bin/nginx")
            with open(f"{TOOLS}/docker-entrypoint.sh") as fh:
                files["docker-entrypoint.sh"] = fh.read()
            if fault("container_port_closed", pod.name):
                files[".lab/port_closed"] = ""
            os.makedirs(f"{r}/.lab/coreutils", exist_ok=True)
            for tool in COREUTILS:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{r}/bin/{tool}")
                os.symlink(f"/.lab/coreutils/{tool}", f"{r}/bin/{tool}")
        for path, text in files.items():
            with open(f"{r}/{path}", "w") as fh:
                fh.write(text)
        os.chmod(f"{r}/etc", 0o755)
        if self.kind == "nginx":
            os.chmod(f"{r}/docker-entrypoint.sh", 0o755)

    def mounts_script(self) -> str:
        r = self.root
        q = shlex_quote
        lines = ["set -e", f"R={q(r)}",
                 f'mount --bind {BUSYBOX} "$R/.lab/busybox"',
                 f'mount --bind {TOOLS} "$R/.lab/tools"',
                 'mount -o remount,bind,ro "$R/.lab/tools"',
                 f'mount --bind {q(self.base)}/rpc "$R/.lab/rpc"',
                 'mount -t proc proc "$R/proc"']
        lines += [f'mount --bind {f} "$R{f}"' for f in LIBS]
        if self.kind == "nginx":
            lines += ['mount --bind /usr/bin "$R/.lab/coreutils"',
                      'mount -o remount,bind,ro "$R/.lab/coreutils"']
        lines += [f'mount --bind /dev/{d} "$R/dev/{d}"' for d in DEVICES]
        for m in self.spec.get("volumeMounts") or []:
            src = self.pod.volume_source(m.get("name", ""))
            if not src:
                continue
            dest = "/" + m.get("mountPath", "").strip("/")
            lines.append(f'mkdir -p "$R"{q(dest)}')
            lines.append(f'mount --bind {q(src)} "$R"{q(dest)}')
            if m.get("readOnly"):
                lines.append(f'mount -o remount,bind,ro "$R"{q(dest)}')
        lines.append('exec chroot "$R" "$@"')
        return "\n".join(lines)

    def run_once(self) -> int:
        """Create, start (postStart), watch (probes) one instance; its exit code."""
        pod = self.pod
        self.env = self.make_env()
        self.sigkilled = False
        argv = self.command()
        self.set(state={"waiting": {"reason": "ContainerCreating"}} if not self.restarts
                 else self.state, ready=False, started=False)
        self.build_root()
        os.makedirs(f"{self.base}/rpc", mode=0o777, exist_ok=True)
        os.chmod(f"{self.base}/rpc", 0o777)
        logdir = f"/var/log/pods/{pod.ns}_{pod.name}_{pod.uid}/{self.name}"
        os.makedirs(logdir, exist_ok=True)
        pod.event("Normal", "Pulled", f'Container image "{self.image}" already present on '
                  "machine", self)
        self.cid = f"{self.runtime}://{secrets.token_hex(32)}"
        pod.event("Normal", "Created", f"Created container {self.name}", self)
        with open(f"{logdir}/{self.restarts}.log", "ab") as out:
            self.proc = subprocess.Popen(
                ["/usr/bin/unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation",
                 "private", "/bin/sh", "-c", self.mounts_script(), "sh", *argv],
                env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)
        self.started_at = time.time()
        self.pid = self.wait_chroot()
        pod.runner.track(self)
        pod.event("Normal", "Started", f"Started container {self.name}", self)
        started = state.rfc3339(self.started_at)
        post = ((self.spec.get("lifecycle") or {}).get("postStart") or {}).get("exec")
        if self.pid and post and not fault("hooks_skipped", pod.name):
            rc, out, err = self.exec(post.get("command") or [], 30 * scale())
            if rc != 0 and not pod.stop.is_set():
                # kuberuntime_container.go startContainer / lifecycle handlers.go
                msg = (f"Exec lifecycle hook ({fmt_list(post.get('command') or [])}) for "
                       f'Container "{self.name}" in Pod "{pod.format}" failed - error: '
                       f"command '{' '.join(post.get('command') or [])}' exited with {rc}: "
                       f"{err}, message: {go_quote(out + err)}")
                pod.event("Warning", "FailedPostStartHook", msg, self)
                return self.kill("FailedPostStartHook", pod.grace, prestop=True)
        if self.proc.poll() is None:
            has_readiness = bool(self.spec.get("readinessProbe"))
            self.set(state={"running": {"startedAt": started}}, started=True,
                     ready=not has_readiness and not self.init)
        return self.watch(started)

    def wait_chroot(self) -> int:
        """The container's PID 1 (unshare's child) once it has chrooted."""
        end = time.time() + 5
        child = 0
        while time.time() < end and self.proc.poll() is None:
            if not child:
                with contextlib.suppress(OSError):
                    with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as fh:
                        got = fh.read().split()
                    child = int(got[0]) if got else 0
            if child:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{child}/root") == self.root:
                        return child
            time.sleep(0.005)
        return child

    def exit_code(self) -> int:
        """The container's exit status; 137 when we SIGKILLed its PID 1 (unshare --fork then
        reports 1: util-linux 2.38 fails to re-raise the child's signal)."""
        rc = self.proc.wait()
        if self.sigkilled:
            return 137
        return 128 - rc if rc < 0 else rc

    def finished(self, code: int, started: str, reason: str = "") -> int:
        """The instance exited: state.terminated when it will not run again, else lastState
        (the back-off counts from its finishedAt)."""
        t = time.time()
        term = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
                "startedAt": started, "finishedAt": state.rfc3339(t), "containerID": self.cid}
        self.pod.runner.untrack(self)
        pol = self.pod.policy()
        final = ((self.init and (code == 0 or pol == "Never")) or (
            not self.init and not (pol == "Always" or (pol == "OnFailure" and code != 0)))) \
            and not self.changed.is_set()
        with self.pod.lock:
            self.finished_t = t
            self.ready = self.init and code == 0  # a completed init container is ready
            self.started = False
            self.pid = 0
            if final or self.pod.stop.is_set():
                self.state = {"terminated": term}
            else:
                self.last = {"terminated": term}
                self.state = {"waiting": {"reason": "ContainerCreating"}}
        self.pod.publish()
        return code

    def watch(self, started: str) -> int:
        """Until the process exits, the pod is deleted or liveness kills it; runs probes."""
        pod = self.pod
        probes = []
        for kind in ("livenessProbe", "readinessProbe"):
            spec = self.spec.get(kind)
            if spec and not self.init:
                probes.append(Probe(self, kind, spec))
        while True:
            if self.proc.poll() is not None:
                return self.finished(self.exit_code(), started)
            if pod.stop.is_set():
                return self.kill(f"Stopping container {self.name}", None, prestop=True,
                                 started=started)
            if self.changed.is_set():
                return self.kill(f"Container {self.name} definition changed, will be "
                                 "restarted", pod.grace, prestop=True, started=started)
            t = time.time()
            for p in probes:
                if t < p.due:
                    continue
                p.run()
                if self.proc.poll() is not None or pod.stop.is_set():
                    break
                if p.kind == "readinessProbe" and p.result is not None \
                        and p.result != self.ready:
                    self.set(ready=p.result)
                if p.kind == "livenessProbe" and p.result is False \
                        and not fault("liveness_ignored", pod.name):
                    pol = pod.policy()
                    msg = f"Container {self.name} failed liveness probe"
                    if pol != "Never":
                        msg += ", will be restarted"
                    return self.kill(msg, pod.grace, prestop=True, started=started)
            time.sleep(TICK)

    def kill(self, message: str, grace: float | None, prestop: bool, started: str = "") -> int:
        """killContainer: Killing event, preStop within the grace period, SIGTERM, SIGKILL
        when the period is over (at least 2 s)."""
        pod = self.pod
        sc = scale()
        deadline = pod.deadline() if grace is None else time.time() + grace * sc
        pod.event("Normal", "Killing", message, self)
        pre = ((self.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec")
        if prestop and pre and self.pid and self.proc.poll() is None \
                and not fault("hooks_skipped", pod.name):
            rc, out, err = self.exec(pre.get("command") or [], max(0.1, deadline - time.time()))
            if rc != 0 and self.proc.poll() is None:  # not: the hook stopped the container
                msg = (f"Exec lifecycle hook ({fmt_list(pre.get('command') or [])}) for "
                       f'Container "{self.name}" in Pod "{pod.format}" failed - error: '
                       f"command '{' '.join(pre.get('command') or [])}' exited with {rc}: "
                       f"{err}, message: {go_quote(out + err)}")
                pod.event("Warning", "FailedPreStopHook", msg, self)
        deadline = max(deadline, time.time() + MIN_GRACE * sc)
        if self.pid and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGTERM)
        while self.proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if self.proc.poll() is None:
            self.kill_now()
        return self.finished(self.exit_code(), started or state.rfc3339(self.started_at))

    def kill_now(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.sigkilled = True
            for pid in (self.pid, self.proc.pid):
                if pid:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)

    def running(self) -> bool:
        return bool(self.pid) and self.proc is not None and self.proc.poll() is None

    def find(self, exe: str) -> bool:
        """Would runc find EXE in the container (PATH, as the container's env says)? Looked
        up through /proc/PID/root: the container's own mounts count."""
        root = f"/proc/{self.pid}/root"
        if "/" in exe:
            return os.path.lexists(root + "/" + exe.lstrip("/"))
        return any(os.path.lexists(f"{root}{d}/{exe}")
                   for d in self.env.get("PATH", PATH).split(":") if d.startswith("/"))

    def exec(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        """Run ARGV in the running container (its namespaces, root and env)."""
        if not self.running():
            return 1, "", f'container not found ("{self.name}")'
        if not argv or not self.find(argv[0]):
            exe = argv[0] if argv else ""
            if self.runtime == "containerd":
                return 126, (f'OCI runtime exec failed: exec failed: unable to start container '
                             f'process: exec: "{exe}": executable file not found in $PATH: '
                             "unknown\n"), ""
            return 126, (f"OCI runtime exec failed: exec failed: container_linux.go:380: "
                         f'starting container process caused: exec: "{exe}": executable file '
                         "not found in $PATH: unknown\n"), ""
        p = subprocess.Popen(["/usr/bin/nsenter", "-t", str(self.pid), "-m", "-p", "-r", "-w", "--",
                              *argv], env=self.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            return TIMED_OUT, out.decode(errors="replace"), err.decode(errors="replace")
        rc = p.returncode if p.returncode >= 0 else 128 - p.returncode  # a signal: 128+N
        return rc, out.decode(errors="replace"), err.decode(errors="replace")


def shlex_quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


def fmt_list(items: list) -> str:
    """Go's %v of a []string: [a b c]."""
    return "[" + " ".join(str(x) for x in items) + "]"


def go_quote(s: str) -> str:
    """Go's %q."""
    return json.dumps(s)


def quantity(q: str) -> int:
    """A resource.Quantity in bytes: 64Mi, 1G, 128974848, 129e6, 1.5Gi."""
    m = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)([KMGTPE]i?|k|m)?", q.strip())
    if not m:
        return 0
    num = float(m.group(1))
    mult = {"": 1, None: 1, "k": 1000, "K": 1000, "M": 1000 ** 2, "G": 1000 ** 3,
            "T": 1000 ** 4, "P": 1000 ** 5, "E": 1000 ** 6, "Ki": 1024, "Mi": 1024 ** 2,
            "Gi": 1024 ** 3, "Ti": 1024 ** 4, "Pi": 1024 ** 5, "Ei": 1024 ** 6,
            "m": 0.001}[m.group(2)]
    return int(num * mult)


# ---- probes ---------------------------------------------------------------------------------

class Probe:
    """prober/worker.go: results start as Failure for readiness (not ready until the first
    success) and Success for liveness; thresholds count consecutive results."""

    def __init__(self, ctr: Ctr, kind: str, spec: dict):
        self.ctr, self.kind, self.spec = ctr, kind, spec
        sc = scale()
        self.due = ctr.started_at + float(spec.get("initialDelaySeconds", 0)) * sc
        self.period = float(spec.get("periodSeconds", 10))
        self.timeout = float(spec.get("timeoutSeconds", 1))
        self.failure = int(spec.get("failureThreshold", 3))
        self.success = int(spec.get("successThreshold", 1))
        self.result: bool | None = None if kind == "readinessProbe" else True
        self.run_ok = self.run_bad = 0
        self.label = "Liveness" if kind == "livenessProbe" else "Readiness"

    def run(self) -> None:
        sc = scale()
        self.due = time.time() + self.period * sc
        ok, output = self.probe(self.timeout * sc)
        if not ok:
            # prober.go: "%s probe failed: %s"
            self.ctr.pod.event("Warning", "Unhealthy", f"{self.label} probe failed: {output}",
                               self.ctr)
            self.run_bad, self.run_ok = self.run_bad + 1, 0
            if self.run_bad >= self.failure:
                self.result = False
        else:
            self.run_ok, self.run_bad = self.run_ok + 1, 0
            if self.run_ok >= self.success:
                self.result = True
        self.due = time.time() + self.period * sc

    def port(self, value) -> int | None:
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
        for cp in self.ctr.spec.get("ports") or []:
            if cp.get("name") == value:
                return int(cp["containerPort"])
        return None

    def probe(self, timeout: float) -> tuple[bool, str]:
        spec, pod = self.spec, self.ctr.pod
        if spec.get("exec"):
            cmd = spec["exec"].get("command") or []
            rc, out, err = self.ctr.exec(cmd, timeout)
            if rc == TIMED_OUT:
                return False, f"command {go_quote(' '.join(cmd))} timed out"
            return rc == 0, out + err
        if spec.get("tcpSocket"):
            port = self.port(spec["tcpSocket"].get("port"))
            target = f"{pod.ip}:{port}"
            try:
                with socket.create_connection((pod.listen, port or 0), timeout=timeout):
                    return True, ""
            except ConnectionRefusedError:
                return False, f"dial tcp {target}: connect: connection refused"
            except OSError:
                return False, f"dial tcp {target}: i/o timeout"
        if spec.get("httpGet"):
            hg = spec["httpGet"]
            port = self.port(hg.get("port"))
            path = hg.get("path") or "/"
            url = f"http://{pod.ip}:{port}{path}"
            conn = http.client.HTTPConnection(pod.listen, port or 0, timeout=timeout)
            try:
                conn.request("GET", path, headers={"Host": f"{pod.ip}:{port}",
                                                   "User-Agent": "kube-probe/1.20",
                                                   "Accept": "*/*"})
                code = conn.getresponse().status
            except ConnectionRefusedError:
                return False, f'Get "{url}": dial tcp {pod.ip}:{port}: connect: connection ' \
                              "refused"
            except OSError:
                return False, f'Get "{url}": context deadline exceeded (Client.Timeout ' \
                              "exceeded while awaiting headers)"
            finally:
                conn.close()
            if 200 <= code < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {code}"  # http.go
        return True, ""


# ---- the runner -----------------------------------------------------------------------------

class Runner:
    def __init__(self) -> None:
        self.node = state.kubelet_node_name()
        self.pods: dict[str, Pod] = {}
        self.data: dict = {}
        self.mtime = 0.0
        self.host_ip = ""
        self.running: dict[int, Ctr] = {}
        self.tlock = threading.Lock()
        self.quit = threading.Event()
        out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True).stdout
        self.applets = [a for a in out.split() if a and a != "busybox"]
        self.rpc_busy: set[str] = set()

    def track(self, ctr: Ctr) -> None:
        with self.tlock:
            self.running[id(ctr)] = ctr

    def untrack(self, ctr: Ctr) -> None:
        with self.tlock:
            self.running.pop(id(ctr), None)

    def reload(self) -> bool:
        try:
            m = os.stat(state.STATE).st_mtime_ns
        except OSError:
            return False
        if m == self.mtime:
            return False
        self.mtime = m
        self.data = state.load()
        self.node = state.kubelet_node_name()  # kubeadm's flag file may have come since
        info = (self.data.get("nodes") or {}).get(self.node) or {}
        self.host_ip = info.get("address", "")
        return True

    def sync(self) -> None:
        mine = {}
        for k, obj in (self.data.get("objects") or {}).items():
            if obj.get("kind") != "Pod" or not k.startswith("pod/"):
                continue
            meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
            if spec.get("nodeName") == self.node and meta.get("uid") \
                    and (obj.get("lab") or {}).get("podIP"):
                mine[meta["uid"]] = obj
        facts = state.node_facts(self.node)
        works = bool(facts.get("kubelet_active")) and not facts.get("kubelet_failure")
        for uid, obj in mine.items():
            pod = self.pods.get(uid)
            if pod is None and not obj["metadata"].get("deletionTimestamp"):
                if not works:  # a crashing kubelet starts nothing
                    continue
                pod = self.pods[uid] = Pod(self, obj)
                pod.thread.start()
            elif pod is None:  # deleted before it ever ran here: only the final delete
                pod = self.pods[uid] = Pod(self, obj)
                pod.delete(obj)
                pod.thread.start()
            elif obj["metadata"].get("deletionTimestamp"):
                pod.delete(obj)
            elif obj is not pod.obj:
                pod.update(obj)
        for uid, pod in list(self.pods.items()):
            if uid not in mine:
                pod.delete(None)
            if not pod.thread.is_alive() and pod.stop.is_set():
                del self.pods[uid]

    def serve_exec(self) -> None:
        try:
            names = os.listdir(EXEC)
        except OSError:
            return
        for n in names:
            if not n.endswith(".req.json"):
                continue
            path = f"{EXEC}/{n}"
            try:
                with open(path) as fh:
                    req = json.load(fh)
            except (OSError, ValueError):
                continue
            pod = self.pods.get(req.get("uid") or "")
            if pod is None:
                continue
            rid = n[:-len(".req.json")]
            claimed = f"{EXEC}/{rid}.run.{self.node}"
            try:
                os.rename(path, claimed)
            except OSError:
                continue
            threading.Thread(target=self.run_exec, args=(pod, req, rid, claimed),
                             daemon=True).start()

    def run_exec(self, pod: Pod, req: dict, rid: str, claimed: str) -> None:
        name = req.get("container") or ""
        ctr = next((c for c in pod.ctrs + pod.init if c.name == name), None)
        if ctr is None or not ctr.running() or pod.stop.is_set():
            res = {"rc": 1, "stdout": "", "stderr": "error: unable to upgrade connection: "
                   f'container not found ("{name}")\n', "error": True}
        else:
            timeout = float(req.get("timeout") or 3600)
            rc, out, err = ctr.exec([str(a) for a in req.get("argv") or []], timeout)
            res = {"rc": 137 if rc == TIMED_OUT else rc, "stdout": out, "stderr": err}
        write_json(f"{EXEC}/{rid}.res.json", res)
        with contextlib.suppress(OSError):
            os.unlink(claimed)

    def serve_rpc(self) -> None:
        with self.tlock:
            ctrs = list(self.running.values())
        for ctr in ctrs:
            d = f"{ctr.base}/rpc"
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for n in names:
                if not n.endswith(".req"):
                    continue
                key = f"{d}/{n}"
                if key in self.rpc_busy:
                    continue
                self.rpc_busy.add(key)
                threading.Thread(target=self.run_rpc, args=(ctr, key), daemon=True).start()

    def run_rpc(self, ctr: Ctr, path: str) -> None:
        base = path[:-len(".req")]
        try:
            with open(path, "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0")[:-1]]
            os.unlink(path)
            me = {"ns": ctr.pod.ns, "name": ctr.pod.name, "node": self.node, "ip": ctr.pod.ip}
            try:
                got = podnet.answer(self.data or state.load(), me, argv)
            except Exception as exc:
                log(f"rpc {argv}: {exc!r}")
                got = (1, "", f"lab: {exc!r}\n")
            if got[0] == "exec":
                _, new, (frm, to, timeout) = got
                limit = str(int(-(-timeout // 1))) if timeout < 900 else ""
                for suffix, text in ((".argv", "\n".join(new) + "\n"),
                                     (".from", frm.replace(".", "\\.")), (".to", to),
                                     (".timeout", limit)):
                    with open(base + suffix, "w") as fh:
                        fh.write(text)
                rc = "exec"
            else:
                rc, out, err = got
                for suffix, text in ((".out", out), (".err", err)):
                    with open(base + suffix, "w") as fh:
                        fh.write(text)
            with open(base + ".rctmp", "w") as fh:
                fh.write(str(rc))
            os.replace(base + ".rctmp", base + ".rc")
        except OSError as exc:
            log(f"rpc {path}: {exc!r}")
        finally:
            self.rpc_busy.discard(path)

    def loop(self) -> None:
        last_sync = 0.0
        while not self.quit.is_set():
            try:
                changed = self.reload()
                if changed or time.time() - last_sync > 1:
                    self.sync()
                    last_sync = time.time()
                self.serve_exec()
                self.serve_rpc()
            except Exception:  # a bug in one pod must not stop the node's other pods
                import traceback
                log(traceback.format_exc())
            self.quit.wait(TICK if self.pods else 2 * TICK)  # idle nodes poll less
        with self.tlock:
            ctrs = list(self.running.values())
        for pod in self.pods.values():
            for c in pod.init + pod.ctrs:
                c.kill_now()
        for c in ctrs:
            c.kill_now()


# ---- start / stop (the kubelet unit's hooks) ---------------------------------------------------

def running_pid() -> int:
    try:
        with open(PIDFILE) as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"podrun.py" in fh.read():
                return pid
    except (OSError, ValueError):
        pass
    return 0


def start() -> None:
    """Daemonise; return once the runner has written its pidfile (a stop right after finds
    it)."""
    if running_pid():
        return
    if os.fork():
        end = time.time() + 5
        while time.time() < end and not running_pid():
            time.sleep(0.02)
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    fd = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    nul = os.open("/dev/null", os.O_RDONLY)
    os.dup2(nul, 0)
    os.execv(sys.executable, [sys.executable, "-S", os.path.abspath(__file__), "serve"])


def serve() -> None:
    os.makedirs(os.path.dirname(PIDFILE), exist_ok=True)
    lock = os.open(PIDFILE + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another runner serves this node
    heartbeat = state.kubelet_heartbeat()  # held while this runner (the kubelet) lives
    with open(PIDFILE, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    for d in (PODS, EXEC):
        os.makedirs(d, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(d, 0o777)
    runner = Runner()
    signal.signal(signal.SIGTERM, lambda *_: runner.quit.set())
    log(f"pod runner for node {runner.node} started"
        + ("" if heartbeat else " (no heartbeat socket)"))
    try:
        runner.loop()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(PIDFILE)
        log("pod runner stopped")


def stop() -> None:
    pid = running_pid()
    if not pid:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    end = time.time() + 10
    while time.time() < end and os.path.exists(f"/proc/{pid}"):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ", 1)[1].startswith("Z"):
                    break
        except OSError:
            break
        time.sleep(0.05)
    if running_pid() == pid:  # still there after 10 s
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def main() -> None:
    verb = sys.argv[1] if len(sys.argv) > 1 else ""
    if verb == "start":
        start()
    elif verb == "stop":
        stop()
    elif verb == "serve":
        serve()
    else:
        print("usage: podrun.py start|stop|serve", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
