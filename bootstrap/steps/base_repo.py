"""base-repo: replace CentOS-Base.repo with ``repos.base`` (CentOS 7 is EOL: vault or a mirror)."""

from __future__ import annotations

from .. import facts as F
from ..plan import Plan
from ..templates import render
from . import Step, Target

PATH = "/etc/yum.repos.d/CentOS-Base.repo"


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
    return [F.file(PATH)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    if p.write(PATH, content(t), facts[f"file:{PATH}"]):
        p.run("yum clean metadata -q", "the base repository changed")
    return p


def skip(t: Target) -> str | None:
    return None if t.inv.repos.base else "repos.base is not set: the node's own base repo is kept"


STEP = Step("base-repo", __doc__, facts, plan, skip)
