"""base-repo: point the release's own base repos at ``repos.base`` (EL7 and CentOS 8 are EOL:
vault or a mirror). Each repo file the release ships (``platforms.REPO_FILES``) is rewritten
with the same repo ids, so ``--enablerepo`` habits keep working."""

from __future__ import annotations

from .. import facts as F
from .. import platforms
from ..plan import Plan
from ..templating import render
from . import Step, Target

# Exists from before the repo file is written until `yum clean metadata` has succeeded: once the
# file is right its plan is empty, so only this marker tells a re-run that the clean is owed.
PENDING = "/var/lib/k8s-bootstrap/base-repo.clean-pending"
ALL_FILES = sorted({path for files in platforms.REPO_FILES.values() for path in files})


def contents(t: Target, platform: platforms.Platform) -> dict[str, str]:
    """{repo file: content} for the platform; ``repos.base.baseurl`` is the release tree (EL7:
    the base repo itself; EL8/EL9: the tree holding BaseOS/, AppStream/ and extras/)."""
    repo = t.inv.repos.base
    sections = {r.id: r for r in platform.release.base_repos}
    out = {}
    for path, ids in (platform.repo_files or {}).items():
        out[path] = render(
            "etc/yum.repos.d/base.repo.j2",
            repo=repo,
            sections=[{"id": i, "name": sections[i].name,
                       "baseurl": _join(repo.baseurl, sections[i].path)} for i in ids],
        )
    return out


def _join(base: str, path: str) -> str:
    return base if not path else base.rstrip("/") + "/" + path


def facts(t: Target) -> list[F.Fact]:
    return [platforms.os_release(), *(F.file(p) for p in ALL_FILES), F.file(PENDING)]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    platform = platforms.of(facts)
    if platform.repo_files is None:
        p.error = (f"repos.base cannot replace the base repos of {platform.pretty}: its repo "
                   "files are the vendor's (subscription-manager, ULN). Point them at a mirror "
                   "with the vendor's tools and remove repos.base from the inventory")
        return p
    repo = Plan()
    for path, content in contents(t, platform).items():
        repo.write(path, content, facts[f"file:{path}"])
    if repo.actions:
        if facts[f"file:{PENDING}"] is None:
            p.run(f"install -D -m 0644 /dev/null {PENDING}", "until yum clean metadata succeeds")
        p.actions += repo.actions
        why = "the base repository changed"
    elif facts[f"file:{PENDING}"] is not None:
        why = "retried: an earlier run changed the base repository but this command failed"
    else:
        return p
    p.run(f"{platform.release.package_manager} clean metadata -q", why)
    p.run(f"rm -f {PENDING}")
    return p


def skip(t: Target) -> str | None:
    return None if t.inv.repos.base else "repos.base is not set: the node's own base repo is kept"


STEP = Step("base-repo", __doc__, facts, plan, skip)
