"""What differs between Kubernetes minor releases, as data: one row per minor.

Each column cites its source. Rows the toolkit cannot install yet are still listed so that a
version outside them is a named error, not a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Inventory, Repo

MINOR = "{minor}"
"""The placeholder an inventory's own kubernetes baseurl may use for the minor (``1.28``)."""


@dataclass(frozen=True)
class Minor:
    """One Kubernetes minor release."""

    minor: str
    kubeadm_api: str
    """kubeadm's config API: v1beta2 (1.15-1.26), v1beta3 from 1.22 (kubernetes#114540; the
    toolkit moves at 1.22, as KubeKey does), v1beta4 from 1.31 (kubernetes PR #125029; v1beta3 is
    deprecated from 1.31 and refused by kubeadm 1.37, PR #136016: docs/RELEASE-FACTS.md 2)."""
    pause: str
    """The sandbox image tag kubeadm of this minor uses (kubeadm constants.go PauseVersion;
    FIELD-NOTES "pause by release"; 1.31-1.37 from `kubeadm config images list` of each
    release as minikube records it: docs/RELEASE-FACTS.md 1)."""
    runtime: str
    """The default container runtime: docker until dockershim's removal in 1.24, containerd
    from 1.24 (kubernetes CHANGELOG-1.24)."""
    layout: str
    """Package repo layout (``LAYOUTS``): "legacy" (the frozen kubernetes-el7 repo, which Aliyun's
    copy carries to 1.28) or "per-minor" (pkgs.k8s.io, versions from 1.24.0)."""
    proxy_modes: tuple[str, ...]
    """kube-proxy modes the toolkit offers: iptables and ipvs; nftables from 1.33, where it is GA
    (KEP-3866: alpha 1.29, beta 1.31, GA 1.33; kubernetes.io blog 2025-04-23 "Kubernetes v1.33")."""
    containerd_min: str
    """The containerd line the toolkit wants: 1.6 (the oldest with CRI v1, the one EL7 has); 2.0
    from 1.36, where kubeadm warns that containerd 1.x lacks the CRI RuntimeConfig method the
    kubelet takes its cgroup driver from (KEP-4033; the fallback's removal is planned for 1.38:
    docs/RELEASE-FACTS.md 4). Ignorable by name: ContainerdVersion."""
    cgroup_v1: str
    """What the kubelet does on a cgroup v1 node: "ok"; "maintenance" from 1.31 (KEP-4569, a
    warning); "refused" from 1.35 (failCgroupV1 defaults to true, kubernetes PR #134298, and
    kubeadm's SystemVerification errors: docs/RELEASE-FACTS.md 3)."""
    kubeconfig_user: str
    """How kubeadm issues a kubeconfig for another user (``cluster.kubectl_on_workers: view``):
    none below 1.20 (its ``--config`` came in 1.20, kubernetes PR #94879); ``kubeadm alpha
    kubeconfig user`` in 1.20; ``kubeadm kubeconfig user`` from 1.21, where it graduated
    (kubernetes PR #97583; the alpha one was removed in 1.22, kubeadm#2292)."""
    deleted: str
    """What ``kubectl delete`` prints for an object (verify's ObjectManagement): ``pod "NAME"
    deleted`` to 1.33; from 1.34 ``pod "NAME" deleted from NS namespace`` (kubernetes/kubectl
    commit 2fa4a2458, first tagged kubernetes-1.34.0; inspektor-gadget PR #4861 met it)."""
    super_admin: bool
    """kubeadm init writes super-admin.conf (group system:masters, the init node only) and
    admin.conf's group is kubeadm:cluster-admins, bound to cluster-admin only once init reaches
    the API, from 1.29 (kubernetes PR #121305): kube-vip on the init node mounts
    super-admin.conf until init is done, then admin.conf (kube-vip#684; kubespray's
    roles/kubernetes/node/tasks/loadbalancer/kube-vip.yml does the same)."""
    flannel: str
    """The default flannel release (network.flannel_version): v0.14.0 below 1.24, the one of the
    seed's era; 1.24-1.30 v0.26.4, the first one published on ghcr.io/flannel-io, where flannel
    publishes now (kube-flannel.yml of v0.26.4); from 1.31 v0.28.9, the newest (2026-08-07:
    docs/RELEASE-FACTS.md 8)."""


def _row(minor: str, pause: str) -> Minor:
    n = int(minor.split(".")[1])
    return Minor(
        minor=minor,
        kubeadm_api="v1beta2" if n < 22 else "v1beta3" if n < 31 else "v1beta4",
        pause=pause,
        runtime="docker" if n < 24 else "containerd",
        layout="legacy" if n < 24 else "per-minor",
        proxy_modes=("iptables", "ipvs") + (("nftables",) if n >= 33 else ()),
        containerd_min="1.6" if n < 36 else "2.0",
        cgroup_v1="ok" if n < 31 else "maintenance" if n < 35 else "refused",
        flannel="v0.14.0" if n < 24 else "v0.26.4" if n < 31 else "v0.28.9",
        kubeconfig_user="" if n < 20 else "kubeadm alpha kubeconfig user" if n == 20
        else "kubeadm kubeconfig user",
        deleted='{kind} "{name}" deleted' + (" from {namespace} namespace" if n >= 34 else ""),
        super_admin=n >= 29,
    )


MINORS: dict[str, Minor] = {m.minor: m for m in (
    # 1.15-1.19: pause from kubeadm constants.go of each release, not re-read here (unconfirmed)
    _row("1.15", "3.1"),
    _row("1.16", "3.1"),
    _row("1.17", "3.1"),
    _row("1.18", "3.2"),
    _row("1.19", "3.2"),
    _row("1.20", "3.2"),
    _row("1.21", "3.4.1"),
    _row("1.22", "3.5"),
    _row("1.23", "3.6"),
    _row("1.24", "3.7"),
    _row("1.25", "3.8"),
    _row("1.26", "3.9"),
    _row("1.27", "3.9"),
    _row("1.28", "3.9"),
    _row("1.29", "3.9"),
    _row("1.30", "3.9"),
    _row("1.31", "3.10"),
    _row("1.32", "3.10"),
    _row("1.33", "3.10"),
    _row("1.34", "3.10.1"),
    _row("1.35", "3.10.1"),
    _row("1.36", "3.10.2"),
    _row("1.37", "3.10.2"),  # from 1.37.0-rc.0's image list (1.37.0's own: unconfirmed)
)}


KUBE_VIP_IMAGE = "ghcr.io/kube-vip/kube-vip:v1.0.3"
"""kube-vip for ``load_balancer: kube-vip`` on every release (its leader election uses
coordination.k8s.io/v1 Leases, there since 1.14): the version kubespray pins
(roles/kubespray_defaults download.yml, its kube-vip manifest "inspired by kube-vip v1.0.3
config_generator.go"); v1.0.0 was tagged 2025-07-31 (FIELD-NOTES-2 1). ``cluster.vip.image``
overrides it; the runtime's ``registries`` mirrors serve ghcr.io as for flannel."""


class UnknownRelease(ValueError):
    """A Kubernetes version outside ``MINORS``."""


def minor_of(version: str) -> str:
    """``1.28.2`` -> ``1.28``."""
    major, minor, *_ = version.split(".")
    return f"{major}.{minor}"


def release(version: str) -> Minor:
    """The row for a Kubernetes version; UnknownRelease names what is supported."""
    row = MINORS.get(minor_of(version))
    if row is None:
        known = ", ".join(MINORS)
        raise UnknownRelease(f"Kubernetes {version} is not a release this toolkit knows "
                             f"(it knows {known})")
    return row


def pause_image(version: str, image_repository: str) -> str:
    """The sandbox image kubeadm of that release expects, from the cluster's image repository
    (what containerd's sandbox_image must be, or kubeadm warns it is inconsistent)."""
    return f"{image_repository.rstrip('/')}/pause:{release(version).pause}"


def kubernetes_repo(inv: Inventory) -> Repo:
    """``repos.kubernetes`` for the inventory's release: ``{minor}`` in its URLs filled in."""
    repo = inv.repos.kubernetes
    minor = release(inv.cluster.kubernetes_version).minor
    return replace(repo, baseurl=repo.baseurl.replace(MINOR, minor),
                   gpgkey=tuple(k.replace(MINOR, minor) for k in repo.gpgkey))


@dataclass(frozen=True)
class Layout:
    """A Kubernetes package repo layout: the minors it carries, and how a baseurl of it reads."""

    name: str
    first: str | None
    """The oldest minor it carries (None: every one the toolkit installs)."""
    last: str | None
    """The newest minor it carries (None: every later one)."""
    carries: str
    """What it carries, as a warning says it (the sources are beside each row)."""
    write: str
    """How to write a baseurl of this layout, as a warning's fix says it."""


LAYOUTS = {layout.name: layout for layout in (
    # Google froze packages.cloud.google.com on 2023-09-13 (kubernetes.io blog 2023-08-31);
    # nothing after 1.28 was published there, and Aliyun's copy ends in 1.28 (FIELD-NOTES).
    Layout("legacy", None, "1.28",
           "the legacy kubernetes-el7 layout, which has releases up to 1.28 only (frozen "
           "upstream on 2023-09-13)",
           "a copy of the kubernetes-el7 repo (Aliyun's or your own mirror's)"),
    # pkgs.k8s.io: one repo per minor, versions from 1.24.0 (kubernetes.io blog 2023-08-15).
    Layout("per-minor", "1.24", None,
           "pkgs.k8s.io's per-minor layout, which starts at 1.24",
           f"a per-minor repo with v{MINOR} in its path, which the toolkit fills in "
           f"(https://pkgs.k8s.io/core:/stable:/v{MINOR}/rpm/ or a mirror of it)"),
)}
"""What a ``repos.kubernetes`` of each layout can serve (``Minor.layout`` names them)."""

REPO_URLS: tuple[tuple[re.Pattern[str], str, str | None], ...] = (
    (re.compile(r"^https?://(packages\.cloud\.google\.com|yum\.kubernetes\.io)/"), "legacy",
     "Google's legacy repos were removed on 2024-03-04 (kubernetes/release#3485), so it serves "
     "nothing"),
    (re.compile(r"/kubernetes-el7-"), "legacy", None),
    (re.compile(re.escape(MINOR)), "per-minor", None),
    (re.compile(r"/v(?P<minor>\d+\.\d+)(/|$)"), "per-minor", None),
)
"""How a baseurl shows its layout, first match wins: (pattern, layout, why it serves nothing
or None). A ``minor`` group pins the repo to that one minor. A baseurl matching none is a
mirror of unknown layout (a user's own): nothing is said about it."""


def _minor_tuple(minor: str) -> tuple[int, int]:
    major, n = minor.split(".")[:2]
    return int(major), int(n)


@dataclass(frozen=True)
class RepoUrl:
    """What a kubernetes baseurl shows of its repo."""

    layout: Layout
    pinned: str | None
    """The one minor its path names (``/v1.28/``); None: any."""
    gone: str | None
    """Why it serves nothing; None: it serves its layout's minors."""


def repo_url(baseurl: str) -> RepoUrl | None:
    """The layout of the kubernetes repo at ``baseurl`` (``REPO_URLS``); None when the URL does
    not show it."""
    for pattern, name, gone in REPO_URLS:
        m = pattern.search(baseurl)
        if m:
            return RepoUrl(LAYOUTS[name], m.groupdict().get("minor"), gone)
    return None


def cannot_serve(baseurl: str, version: str) -> str | None:
    """Why the kubernetes repo at ``baseurl`` cannot serve Kubernetes ``version``; None when it
    can, or when its layout is unknown (a user's own mirror)."""
    url = repo_url(baseurl)
    if url is None:
        return None
    if url.gone:
        return url.gone
    layout, minor = url.layout, minor_of(version)
    if url.pinned and url.pinned != minor:
        return f"its path is pinned to v{url.pinned}, one repo of the {layout.name} layout"
    wanted = _minor_tuple(minor)
    if (layout.first and wanted < _minor_tuple(layout.first)) or (
            layout.last and wanted > _minor_tuple(layout.last)):
        return f"it is {layout.carries}"
    return None


def summary(inv: Inventory) -> str:
    """What the release chose, for the top of every command's output: the version, the runtime
    (and why), where the packages come from."""
    cluster = inv.cluster
    why = ("cluster.container_runtime" if cluster.container_runtime
           else f"the default for {minor_of(cluster.kubernetes_version)}")
    try:
        repo = kubernetes_repo(inv).baseurl
    except UnknownRelease:
        repo = inv.repos.kubernetes.baseurl
    return (f"Kubernetes {cluster.kubernetes_version}, container runtime: {cluster.runtime} "
            f"({why}), packages from {repo}")
