"""The container runtime as kubeadm and the kubelet reach it over CRI (containerd).

What containerd LOADED comes from one place, `loaded()`: the snapshot containerd.io's start
hook writes (/run/lab/containerd/config.json, lab/CONTRACT.md "containerd"). kubeadm 1.23-1.30
asks the runtime through `crictl -r <endpoint> ...` (cmd/kubeadm/app/util/runtime/runtime.go);
when the node has a crictl (cri-tools' stand-in) it is run, otherwise `crictl_info` gives the
texts crictl prints (cri-tools / k8s.io/cri-api remote_runtime.go validateServiceConnection).
"""

from __future__ import annotations

import json
import os
import time

from k8s.common import minor, out, run

SNAPSHOT = "/run/lab/containerd/config.json"
CONTAINERD_SOCKET = "unix:///var/run/containerd/containerd.sock"
DOCKERSHIM_SOCKET = "unix:///var/run/dockershim.sock"
CRICTL = "/usr/bin/crictl"


def loaded() -> dict | None:
    """containerd's loaded config while it runs (None when it is not running)."""
    try:
        with open(SNAPSHOT) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def path_of(endpoint: str) -> str:
    """The socket path of an endpoint, /var/run folded into /run (a symlink on EL)."""
    path = endpoint.removeprefix("unix://")
    return "/run/" + path[len("/var/run/"):] if path.startswith("/var/run/") else path


def is_containerd(endpoint: str) -> bool:
    snap = loaded()
    address = (snap or {}).get("address") or "/run/containerd/containerd.sock"
    return path_of(endpoint) == path_of(address)


def is_dockershim(endpoint: str) -> bool:
    return path_of(endpoint) in ("/run/dockershim.sock", "/run/docker.sock")


def crictl_minor() -> int:
    return minor(out("rpm", "-q", "--qf", "%{VERSION}", "cri-tools") or "1.19.0")


def _fatal(msg: str) -> str:
    """logrus' text line for a crictl fatal error (crictl main.go logrus.Fatal)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
    off = time.strftime("%z")
    stamp += "Z" if off in ("+0000", "") else off[:3] + ":" + off[3:]
    return f'time="{stamp}" level=fatal msg="{msg.replace(chr(34), chr(92) + chr(34))}"\n'


def crictl_info(endpoint: str) -> tuple[int, str]:
    """(exit status, combined output) of `crictl -r ENDPOINT info`."""
    if os.access(CRICTL, os.X_OK):
        res = run(CRICTL, "-r", endpoint, "info")
        return res.returncode, res.stdout + res.stderr
    snap = loaded() if is_containerd(endpoint) else None
    cm = crictl_minor()
    if snap is not None and not snap.get("cri_disabled"):
        return 0, "{}\n"
    if snap is not None:  # the cri plugin is disabled: no RuntimeService on the socket
        if cm < 26:
            err = ("rpc error: code = Unimplemented desc = unknown service "
                   "runtime.v1alpha2.RuntimeService")
            return 1, _fatal(f"getting status of runtime: {err}")
        err = "rpc error: code = Unimplemented desc = unknown service runtime.v1.RuntimeService"
        what = ("CRI v1 runtime API is not implemented for endpoint" if cm < 28
                else "validate CRI v1 runtime API for endpoint")
        return 1, _fatal(f'validate service connection: {what} "{endpoint}": {err}')
    path = endpoint.removeprefix("unix://")
    err = ('rpc error: code = Unavailable desc = connection error: desc = "transport: Error '
           f'while dialing{":" if cm >= 26 else ""} dial unix {path}: connect: no such file or '
           'directory"')
    if cm < 26:
        return 1, _fatal(f"getting status of runtime: {err}")
    return 1, _fatal(f'validate service connection: validate CRI v1 runtime API for endpoint '
                     f'"{endpoint}": {err}')


def sandbox_image(endpoint: str) -> str | None:
    """The runtime's sandbox image as kubeadm 1.27+ reads it (the CRI status' info
    .config.sandboxImage). containerd 2.x's status config has no sandboxImage (the pinned
    image belongs to the images plugin; internal/cri/server/status.go), so kubeadm gets ""
    (1.31/1.32 warn with "", 1.33+ do not: docs/RELEASE-FACTS.md 5). None when unknown."""
    snap = loaded() if is_containerd(endpoint) else None
    if snap and snap.get("runtime_config") and not snap.get("cri_disabled"):
        return ""
    return (snap or {}).get("sandbox_image")


def runtime_config(endpoint: str) -> bool:
    """Whether the runtime answers CRI RuntimeConfig (containerd 2.0+), so a kubelet with
    KubeletCgroupDriverFromCRI takes its cgroup driver from it."""
    snap = loaded() if is_containerd(endpoint) else None
    return bool((snap or {}).get("runtime_config"))


PULL_RETRY = 5  # cmd/kubeadm/app/constants PullImageRetry


def pull(endpoint: str, image: str, if_missing: bool = True) -> tuple[int, str]:
    """kubeadm 1.23-1.30 util/runtime CRIRuntime: ImageExists is `crictl -r ENDPOINT inspecti
    IMAGE` (preflight's ImagePullCheck asks it first; `config images pull` does not), PullImage
    runs `crictl -r ENDPOINT pull IMAGE` up to PullImageRetry times and keeps the last combined
    output. Without a crictl on the node every image counts as present."""
    if not os.access(CRICTL, os.X_OK):
        return 0, ""
    if if_missing and run(CRICTL, "-r", endpoint, "inspecti", image).returncode == 0:
        return 0, ""
    for _ in range(PULL_RETRY):
        res = run(CRICTL, "-r", endpoint, "pull", image)
        if res.returncode == 0:
            return 0, ""
    return res.returncode, res.stdout + res.stderr
