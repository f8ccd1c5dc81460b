"""containerd's files, rendered whole: /etc/containerd/config.toml (config version 2 for the 1.x
line, which 2.x still reads and migrates; version 3 for containerd 2.x: pinned, or unpinned
where the release wants 2.x), one /etc/containerd/certs.d/<registry>/hosts.toml per registry
with mirrors, and /etc/crictl.yaml. Pure functions; the containerd step writes what they return."""

from __future__ import annotations

from . import releases
from .templating import render

CONFIG = "/etc/containerd/config.toml"
CERTS_DIR = "/etc/containerd/certs.d"
CRICTL = "/etc/crictl.yaml"
SOCKET = "/run/containerd/containerd.sock"

# Where each registry really is, for hosts.toml's `server` (containerd docs/hosts.md: docker.io's
# is https://registry-1.docker.io; the others serve at their own name).
UPSTREAM = {"docker.io": "https://registry-1.docker.io"}


TEMPLATES = {2: "etc/containerd/config.toml.j2", 3: "etc/containerd/config-v3.toml.j2"}
"""config.toml's version -> its template (containerd docs/cri/config.md: version 3 from
containerd 2.0; version 2 configs are still read and converted)."""


def config_version(containerd_version: str | None, kubernetes_version: str = "1.30.0") -> int:
    """3 for containerd 2.x: a pinned 2.x, or no pin where the release wants 2.x (preflight's
    ContainerdVersion makes sure the mirror has one); else 2 (what 1.x needs, 2.x still reads)."""
    if containerd_version is None:
        return 3 if releases.release(kubernetes_version).containerd_min >= "2" else 2
    major = containerd_version.split(".")[0]
    return 3 if major.isdigit() and int(major) >= 2 else 2


def config_toml(kubernetes_version: str, image_repository: str, cgroup_driver: str,
                containerd_version: str | None = None) -> str:
    """config.toml: CRI on, runc with SystemdCgroup following the cgroup driver, the sandbox
    image kubeadm of that release expects, mirrors through certs.d."""
    return render(TEMPLATES[config_version(containerd_version, kubernetes_version)],
                  socket=SOCKET,
                  certs_dir=CERTS_DIR, minor=releases.minor_of(kubernetes_version),
                  cgroup_driver=cgroup_driver,
                  sandbox_image=releases.pause_image(kubernetes_version, image_repository))


def hosts_toml(registry: str, mirrors: list[str] | tuple[str, ...]) -> str:
    """hosts.toml for one registry: its mirrors in order, then the registry itself."""
    server = UPSTREAM.get(registry, f"https://{registry}")
    return render("etc/containerd/hosts.toml.j2", registry=registry, server=server,
                  mirrors=list(mirrors))


def crictl_yaml() -> str:
    return render("etc/crictl.yaml.j2", socket=SOCKET)


def files(kubernetes_version: str, image_repository: str, cgroup_driver: str,
          mirrors: dict[str, list[str]], containerd_version: str | None = None
          ) -> dict[str, str]:
    """{path: content} of every file containerd and crictl need on a node."""
    out = {CONFIG: config_toml(kubernetes_version, image_repository, cgroup_driver,
                               containerd_version),
           CRICTL: crictl_yaml()}
    for registry, urls in sorted(mirrors.items()):
        if urls:
            out[f"{CERTS_DIR}/{registry}/hosts.toml"] = hosts_toml(registry, urls)
    return out
