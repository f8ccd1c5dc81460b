"""images (opt-in, ``--pull-images``): kubeadm's images pulled from ``cluster.image_repository``.

kubeadm 1.21.0 and 1.21.1 ask a custom repository for ``coredns/coredns:v1.8.0`` (kubeadm#2501,
fixed in 1.21.2), a path mirrors such as Aliyun do not have; they carry ``coredns:1.8.0``. For
those releases coredns is pulled from there and tagged as the exact name kubeadm expects (the
seed's workaround, but pinned: never ``latest``).
"""

from __future__ import annotations

import shlex

from .. import facts as F
from .. import runtimes
from ..plan import Plan
from . import Step, Target

DEFAULT_REPOSITORIES = ("k8s.gcr.io", "registry.k8s.io")


def coredns_workaround(t: Target) -> tuple[str, str] | None:
    """(image to pull, name kubeadm expects) when this release needs the coredns workaround."""
    c = t.inv.cluster
    if c.version_tuple[:2] != (1, 21) or c.version_tuple[2] >= 2:
        return None
    if c.image_repository in DEFAULT_REPOSITORIES:
        return None
    return f"{c.image_repository}/coredns:1.8.0", f"{c.image_repository}/coredns/coredns:v1.8.0"


def _flags(t: Target) -> str:
    c = t.inv.cluster
    return (f"--kubernetes-version v{c.kubernetes_version} "
            f"--image-repository {shlex.quote(c.image_repository)}{runtimes.cri_flag(t.inv)}")


def facts(t: Target) -> list[F.Fact]:
    return [
        F.Fact("images:wanted", f"kubeadm config images list {_flags(t)}",
               lambda out, rc: out.split() if rc == 0 else None),
        F.Fact("images:present", runtimes.of(t.inv).images,
               lambda out, rc: set(out.split()) if rc == 0 else set()),
    ]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    wanted, present = facts["images:wanted"], facts["images:present"]
    if wanted is not None and all(img in present for img in wanted):
        return p
    why = "kubeadm is not installed yet" if wanted is None else "missing: " + ", ".join(
        img for img in wanted if img not in present)
    fix = coredns_workaround(t)
    if fix is None:
        p.run(f"kubeadm config images pull {_flags(t)}", why)
        return p
    source, target = fix
    rt = runtimes.of(t.inv)
    pull_each = rt.pull.format(image='"$img"')
    p.run(f"for img in $(kubeadm config images list {_flags(t)}); do "
          f"[ \"$img\" = {shlex.quote(target)} ] || {pull_each}; done", why)
    p.run(f"{rt.pull.format(image=shlex.quote(source))} && "
          f"{rt.tag.format(source=shlex.quote(source), target=shlex.quote(target))}",
          "kubeadm#2501: the mirror has no coredns/coredns path")
    return p


STEP = Step("images", __doc__, facts, plan)
