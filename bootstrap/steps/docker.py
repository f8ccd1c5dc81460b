"""docker: Docker CE pinned from ``repos.docker_ce``, systemd cgroup driver, enabled and running."""

from __future__ import annotations

import json

from .. import facts as F
from .. import platforms
from ..plan import Install, Plan
from ..templating import render
from . import Step, Target

REPO = "/etc/yum.repos.d/docker-ce.repo"
DAEMON = "/etc/docker/daemon.json"
UNIT = "docker.service"
PACKAGES = ("containerd.io", "docker-ce", "docker-ce-cli")
RPMS = "rpms:" + ",".join(sorted(PACKAGES))


def _info(out: str, rc: int) -> tuple[str, int] | None:
    words = out.split()
    if rc != 0 or len(words) != 2 or not words[1].isdigit():
        return None
    return words[0], int(words[1])


# The cgroup driver docker runs with and how many containers it runs, in one call (None when
# docker does not answer).
INFO = F.Fact("docker:info", "docker info --format '{{.CgroupDriver}} {{.ContainersRunning}}'",
              _info)


def repo(t: Target) -> str:
    return render(
        "etc/yum.repos.d/docker-ce.repo.j2",
        key="docker_ce",
        section="docker-ce-stable",
        title="Docker CE Stable - $basearch",
        repo=t.inv.repos.docker_ce,
        exclude=(),
    )


def daemon_json(t: Target, current: str | None) -> str:
    """daemon.json with our cgroup driver and mirrors; every other key the user had is kept.

    Raises ValueError when the current file is not a JSON object.
    """
    data = json.loads(current) if current and current.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    opts = [o for o in data.get("exec-opts", []) if not str(o).startswith("native.cgroupdriver=")]
    data["exec-opts"] = [f"native.cgroupdriver={t.inv.cluster.cgroup_driver}", *opts]
    mirrors = t.inv.registries.get("docker.io")  # docker's daemon.json mirrors docker.io only
    if mirrors:
        data["registry-mirrors"] = list(mirrors)
    else:
        data.pop("registry-mirrors", None)
    return json.dumps(data, indent=4) + "\n"


def install(t: Target, release: platforms.Release) -> Install:
    """One pinned install: pinning docker-ce alone pulls the newest docker-ce-cli (a real trap).
    With node_prep.remove_conflicting_packages, dnf may erase what conflicts (podman, runc)."""
    v = t.inv.docker.version
    containerd = "containerd.io" + (
        f"-{t.inv.containerd.version}" if t.inv.containerd.version else ""
    )
    options = ("--setopt=obsoletes=0",)
    if t.inv.node_prep.remove_conflicting_packages and release.allow_erasing:
        options += (release.allow_erasing,)
    return Install((f"docker-ce-{v}", f"docker-ce-cli-{v}", containerd), options,
                   "docker is not installed at the pinned version")


def facts(t: Target) -> list[F.Fact]:
    return [
        platforms.os_release(),
        F.file(REPO),
        F.rpms(PACKAGES),
        F.file(DAEMON),
        F.unit(UNIT),
        INFO,
    ]


def _version(installed: str | None) -> str | None:
    return installed.rsplit("-", 1)[0] if installed else None


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    d = t.inv.docker
    p.write(REPO, repo(t), facts[f"file:{REPO}"])
    installed = facts[RPMS]
    pins = {
        "docker-ce": d.version,
        "docker-ce-cli": d.version,
        "containerd.io": t.inv.containerd.version,
    }
    for pkg, want in pins.items():
        have = _version(installed.get(pkg))
        if have and want and have != want:
            p.error = (
                f"{pkg} {have} is installed but the inventory pins {want}: change "
                f"{'containerd.version' if pkg == 'containerd.io' else 'docker.version'} "
                f"or replace the package deliberately (yum remove {pkg})"
            )
            return p
    if any(pkg not in installed for pkg in PACKAGES):
        p.actions.append(install(t, platforms.of(facts).release))
    before = facts[f"file:{DAEMON}"]
    try:
        content = daemon_json(t, before.content if before else None)
    except ValueError as exc:
        p.error = f"{DAEMON} is not valid JSON ({exc}): fix or remove it"
        return p
    changed = p.write(DAEMON, content, before)
    unit = facts[f"unit:{UNIT}"]
    p.service(UNIT, unit, "docker")  # its restart has its own reasons, below
    driver, running = facts[INFO.name] or (None, 0)
    if unit["active"] and (changed or driver != t.inv.cluster.cgroup_driver):
        p.run(
            f"systemctl restart {UNIT}",
            "daemon.json changed" if changed else f"docker runs with the {driver} cgroup driver",
        )
        if running:
            p.notes.append(
                f"restarting docker bounces its {running} running containers "
                "(this node already runs workloads)"
            )
    return p


def skip(t: Target) -> str | None:
    runtime = t.inv.cluster.runtime
    return None if runtime == "docker" else f"the container runtime is {runtime}"


STEP = Step("docker", __doc__, facts, plan, skip)
