"""kubernetes-packages: kubelet, kubeadm and kubectl at exactly ``cluster.kubernetes_version``,
from the per-minor repos also cri-tools and kubernetes-cni (kubeadm's packages stopped requiring
cri-tools from 1.32: docs/RELEASE-FACTS.md 10), and the tools kubeadm's preflight wants (tc,
conntrack, socat: ``platforms.Release.tools``)."""

from __future__ import annotations

from .. import facts as F
from .. import platforms, releases
from ..plan import Install, Plan
from ..templating import render
from . import Step, Target

REPO = "/etc/yum.repos.d/kubernetes.repo"
PACKAGES = ("kubeadm", "kubectl", "kubelet")
COMPANIONS = ("cri-tools", "kubernetes-cni")
"""From the same repo, unpinned (what it carries for the minor); named in the transaction only
for the per-minor layout (the legacy repo's kubeadm and kubelet require them)."""
EXCLUDE = ("kubelet", "kubeadm", "kubectl", "cri-tools", "kubernetes-cni")
RPMS = F.rpms((*PACKAGES, *COMPANIONS)).name
TOOLS = F.rpms({tool for r in platforms.RELEASES.values() for tool in r.tools})


def repo(t: Target) -> str:
    """The repo excludes kube* so a plain ``yum update`` never upgrades the cluster by accident.
    A ``{minor}`` in its baseurl becomes the release's minor (pkgs.k8s.io's per-minor layout)."""
    return render(
        "etc/yum.repos.d/kubernetes.repo.j2",
        key="kubernetes",
        section="kubernetes",
        title="Kubernetes",
        repo=releases.kubernetes_repo(t.inv),
        exclude=EXCLUDE,
    )


def companions(t: Target) -> tuple[str, ...]:
    layout = t.release.layout
    return COMPANIONS if layout == "per-minor" else ()


def install(t: Target, why: str) -> Install:
    """All three pinned together: pinning kubeadm alone pulls the newest kubelet and kubectl."""
    v = t.inv.cluster.kubernetes_version
    return Install((*(f"{p}-{v}" for p in ("kubelet", "kubeadm", "kubectl")), *companions(t)),
                   ("--setopt=obsoletes=0", "--disableexcludes=kubernetes"), why)


def facts(t: Target) -> list[F.Fact]:
    return [platforms.os_release(), F.file(REPO), F.rpms((*PACKAGES, *COMPANIONS)), TOOLS]


def plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    p.write(REPO, repo(t), facts[f"file:{REPO}"])
    want = t.inv.cluster.kubernetes_version
    installed = facts[RPMS]
    other = {
        pkg: v.rsplit("-", 1)[0] for pkg, v in installed.items()
        if pkg in PACKAGES and v.rsplit("-", 1)[0] != want
    }
    if other:
        found = ", ".join(f"{pkg} {v}" for pkg, v in sorted(other.items()))
        p.error = (
            f"{found} installed but cluster.kubernetes_version is {want}: not changed. "
            "Upgrade deliberately (kubeadm upgrade) or set the version that is installed"
        )
        return p
    tools = [tool for tool in platforms.of(facts).release.tools if tool not in facts[TOOLS.name]]
    if tools:
        p.install(tools, "kubeadm's preflight wants tc, conntrack and socat")
    missing = sorted({*PACKAGES, *companions(t)} - set(installed))
    if missing:
        p.actions.append(install(t, "not installed: " + ", ".join(missing)))
    return p


STEP = Step("kubernetes-packages", __doc__, facts, plan)
