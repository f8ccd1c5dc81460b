"""`kubectl exec` for bare Pods (contract 4): the client side of the pod runner's exec relay.

exec_in_pod(ns, pod, container, argv, timeout) -> (rc, stdout, stderr), ready to print: the
kubectl stand-in writes stdout and stderr as they are and exits with rc. A command that ran
and exited N != 0 has kubectl's `command terminated with exit code N` line at the end of
stderr; kubectl's own errors (rc 1) are its real texts (exec.go / the API server):
- no such pod: `Error from server (NotFound): pods "NAME" not found`
- no such container: `error: container C is not valid for pod NAME` (kubectl 1.20's text)
- container not running (the pod not bound/started, the container waiting or terminated):
  `error: unable to upgrade connection: container not found ("C")`;
- the node's kubelet down (its facts, or no runner takes the request within 10 s): `Error from
  server: error dialing backend: dial tcp ADDRESS:10250: connect: connection refused`, checked
  before whether the container runs: the API server dials the kubelet, which alone knows that.
Without CONTAINER the first container is used (kubectl's default, without its
`Defaulted container` notice, which 1.20 does not print).
The request is `/var/lib/lab-cluster/exec/ID.req.json`; the runner of the pod's node claims it,
runs ARGV in the container and writes `ID.res.json` {rc, stdout, stderr}.
"""

from __future__ import annotations

import json
import os
import secrets
import time

from k8s import state

EXEC = f"{state.ROOT}/exec"
GRACE = 10.0  # how long past TIMEOUT the client waits for a runner's answer
CLAIM = 10.0  # how long a request may wait for the pod's runner to take it


def _not_running(container: str) -> tuple[int, str, str]:
    return 1, "", f'error: unable to upgrade connection: container not found ("{container}")\n'


def _no_kubelet(data: dict, node: str) -> tuple[int, str, str]:
    """The API server cannot reach the node's kubelet (port 10250) to upgrade the stream."""
    addr = ((data.get("nodes") or {}).get(node) or {}).get("address", node)
    return 1, "", (f"Error from server: error dialing backend: dial tcp {addr}:10250: connect: "
                   "connection refused\n")


def exec_in_pod(ns: str, pod: str, container: str | None, argv: list[str],
                timeout: float | None = None) -> tuple[int, str, str]:
    data = state.load()
    obj = (data.get("objects") or {}).get(f"pod/{ns}/{pod}")
    if obj is None or obj.get("kind") != "Pod":
        return 1, "", f'Error from server (NotFound): pods "{pod}" not found\n'
    spec, meta = obj.get("spec") or {}, obj.get("metadata") or {}
    names = [c.get("name") for c in (spec.get("containers") or [])
             + (spec.get("initContainers") or [])]
    if not container:
        container = (spec.get("containers") or [{}])[0].get("name", "")
    if container not in names:
        return 1, "", f"error: container {container} is not valid for pod {pod}\n"
    if not argv:
        return 1, "", "error: you must specify at least one command for the container\n"
    node = spec.get("nodeName", "")
    if node and not state.node_facts(node).get("kubelet_active"):  # the API server dials the
        return _no_kubelet(data, node)  # kubelet first; only the kubelet knows what runs
    uid = meta.get("uid")
    try:
        with open(f"{state.ROOT}/pods/{ns}/{pod}.json") as fh:
            got = json.load(fh)
    except (OSError, ValueError):
        got = {}
    if not uid or got.get("uid") != uid:
        return _not_running(container)
    statuses = (got.get("status") or {}).get("containerStatuses", []) + \
        (got.get("status") or {}).get("initContainerStatuses", [])
    st = next((c for c in statuses if c.get("name") == container), {})
    if "running" not in (st.get("state") or {}):
        return _not_running(container)
    if not node:
        return _not_running(container)
    os.makedirs(EXEC, exist_ok=True)
    rid = f"{int(time.time() * 1000)}-{os.getpid()}-{secrets.token_hex(4)}"
    req = {"ns": ns, "pod": pod, "uid": uid, "container": container,
           "argv": [str(a) for a in argv], "stdin": None, "timeout": timeout}
    tmp = f"{EXEC}/.{rid}.tmp"
    with open(tmp, "w") as fh:
        json.dump(req, fh)
    os.chmod(tmp, 0o666)
    os.replace(tmp, f"{EXEC}/{rid}.req.json")
    res_path = f"{EXEC}/{rid}.res.json"
    claim_by = time.time() + CLAIM
    while os.path.exists(f"{EXEC}/{rid}.req.json"):  # the node's runner takes it at once
        if time.time() > claim_by:
            try:
                os.unlink(f"{EXEC}/{rid}.req.json")
            except OSError:
                break  # claimed just now
            return _no_kubelet(data, node)  # no runner on that node
        time.sleep(0.02)
    end = time.time() + (timeout if timeout else 3600) + GRACE
    while time.time() < end:
        try:
            with open(res_path) as fh:
                res = json.load(fh)
            break
        except (OSError, ValueError):
            time.sleep(0.02)
    else:
        return 1, "", "error: Timeout occurred\n"
    os.unlink(res_path)
    rc, out, err = int(res.get("rc", 1)), res.get("stdout", ""), res.get("stderr", "")
    if rc and not res.get("error"):
        err += f"command terminated with exit code {rc}\n"
    return rc, out, err
