"""containerd (cluster.container_runtime containerd): containerd.io from ``repos.docker_ce``,
pinned with ``containerd.version``; /etc/containerd/config.toml written whole (config version 2,
or 3 when containerd.version pins 2.x:
CRI on, SystemdCgroup from ``cluster.cgroup_driver``, the release's sandbox image from
``cluster.image_repository``, mirrors through certs.d), one hosts.toml per registry with mirrors,
/etc/crictl.yaml; enabled and running, restarted only when one of its files changed."""

from __future__ import annotations

from .. import containerd as C
from .. import facts as F
from ..plan import Install, Plan
from . import Step, Target
from . import docker as D

PACKAGE = "containerd.io"
UNIT = "containerd.service"
RPMS = F.rpms([PACKAGE])


def files(t: Target) -> dict[str, str]:
    c = t.inv.cluster
    return C.files(c.kubernetes_version, c.image_repository, c.cgroup_driver,
                   t.inv.registries.as_dict(), t.inv.containerd.version)


def facts(t: Target) -> list[F.Fact]:
    return [F.file(D.REPO), RPMS, F.unit(UNIT), *(F.file(p) for p in files(t))]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    p.write(D.REPO, D.repo(t), facts[f"file:{D.REPO}"])
    want = t.inv.containerd.version
    have = facts[RPMS.name].get(PACKAGE)
    if have and want and have.rsplit("-", 1)[0] != want:
        p.error = (f"{PACKAGE} {have.rsplit('-', 1)[0]} is installed but the inventory pins "
                   f"{want}: change containerd.version or replace the package deliberately")
        return p
    if not have:
        p.actions.append(Install((PACKAGE + (f"-{want}" if want else ""),),
                                 ("--setopt=obsoletes=0",), "containerd is not installed"))
    changed = [path for path, content in files(t).items()
               if p.write(path, content, facts[f"file:{path}"])]
    p.service(UNIT, facts[f"unit:{UNIT}"], "containerd",
              f"{', '.join(changed)} changed" if changed else "")
    return p


def skip(t: Target) -> str | None:
    runtime = t.inv.cluster.runtime
    return None if runtime == "containerd" else f"the container runtime is {runtime}"


STEP = Step("containerd", __doc__, facts, plan, skip)
