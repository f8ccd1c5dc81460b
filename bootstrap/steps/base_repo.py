"""base-repo: replace CentOS-Base.repo with ``repos.base`` (CentOS 7 is EOL: vault or a mirror)."""

from __future__ import annotations

from .. import facts as F
from ..plan import Plan
from ..templates import render
from . import Step, Target

PATH = "/etc/yum.repos.d/CentOS-Base.repo"
# Exists from before the repo file is written until `yum clean metadata` has succeeded: once the
# file is right its plan is empty, so only this marker tells a re-run that the clean is owed.
PENDING = "/var/lib/k8s-bootstrap/base-repo.clean-pending"


def content(t: Target) -> str:
    return render(
        "etc/yum.repos.d/CentOS-Base.repo.j2",
        key="base",
        section="base",
        title="CentOS-$releasever - Base",
        repo=t.inv.repos.base,
        exclude=(),
    )


def facts(t: Target) -> list[F.Fact]:
    return [F.file(PATH), F.file(PENDING)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    repo = Plan()
    if repo.write(PATH, content(t), facts[f"file:{PATH}"]):
        if facts[f"file:{PENDING}"] is None:
            p.run(f"install -D -m 0644 /dev/null {PENDING}", "until yum clean metadata succeeds")
        p.actions += repo.actions
        why = "the base repository changed"
    elif facts[f"file:{PENDING}"] is not None:
        why = "retried: an earlier run changed the base repository but this command failed"
    else:
        return p
    p.run("yum clean metadata -q", why)
    p.run(f"rm -f {PENDING}")
    return p


def skip(t: Target) -> str | None:
    return None if t.inv.repos.base else "repos.base is not set: the node's own base repo is kept"


STEP = Step("base-repo", __doc__, facts, plan, skip)
