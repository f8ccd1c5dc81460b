"""``invoke render``: the desired state of every managed file, per node, without connecting."""

from __future__ import annotations

from pathlib import Path

from . import api_endpoint as A
from . import stock
from .cluster import flannel
from .cluster.join import JOIN_FILE
from .cluster.kubeadm_config import INIT_CONFIG, init_config, join_config
from .models import Inventory
from .steps import Target, prepare_steps

PARTIAL = {
    "/etc/hosts": "only the block between the k8s-bootstrap markers is managed",
    "/etc/fstab": "only swap lines are changed (commented out)",
    "/etc/selinux/config": "only the SELINUX= line is changed",
    "/etc/docker/daemon.json": "only exec-opts' cgroup driver and registry-mirrors are managed; "
    "other keys already on a node are kept",
}

README = """Files rendered by `invoke render` from {inventory}

Each directory is a node; under it, every file the toolkit manages, at the path it takes on the
node, as it would be on a stock {pretty} node ({flavour}) after prepare-nodes.

Files managed only in part were rendered from that release's defaults plus the toolkit's changes:
{partial}
Steps skipped by this inventory (no files rendered):
{skipped}

Cluster files, as init-master and join-workers would write them:
  - master: {init_config} (kubeadm init's config) and {flannel} (the pod network)
  - each worker: {join_file} (its JoinConfiguration). The token and the CA hash exist only when
    join-workers runs: they are shown as {token} and {ca_hash}.
  - each other control plane: {join_file} with its controlPlane part; the certificate key
    exists only while init-master runs: shown as {key}.
With cluster.load_balancer local, each node's /etc/hosts names the endpoint (a control plane
as once it serves; before its join it names the init node) and each worker has
/etc/haproxy/haproxy.cfg. With haproxy-keepalived, each control plane has haproxy.cfg,
keepalived.conf and keepalived's check script. With kube-vip, each control plane has
{kube_vip} as it is once the cluster runs (from 1.29 the init node's mounts super-admin.conf
until kubeadm init is done).
"""

TOKEN = "<token>"  # join-workers makes one per run, valid 15 minutes
CA_HASH = "sha256:<ca-public-key-hash>"  # join-workers reads it from the master
KEY = "<certificate-key>"  # init-master generates one per upload, a secret


def render_all(inv: Inventory, out: Path, flavour: str = stock.DEFAULT) -> list[Path]:
    """Write DIR/NODE/<path> for every managed file as on a stock ``flavour`` node (el7, el8,
    el9: ``stock.FLAVOURS``); return the paths written."""
    written: list[Path] = []
    skipped: set[str] = set()
    for node in inv.nodes:
        t = Target(inv, node)
        for step in prepare_steps(runtime=inv.cluster.runtime,
                                  proxy=A.runs_services(inv)):
            reason = step.skip(t)
            if reason:
                skipped.add(f"  - {step.name}: {reason}")
                continue
            plan = step.plan(t, stock.facts(step.facts(t), flavour))
            for change in plan.files():
                dest = out / node.name / change.path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(change.content, encoding="utf-8")
                dest.chmod(change.mode)
                written.append(dest)
    for node, path, content in cluster_files(inv):
        dest = out / node / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content, encoding="utf-8")
        dest.chmod(0o600)  # as on the node: kubeadm's configs can hold tokens
        written.append(dest)
    partial = "".join(f"  - {path}: {why}\n" for path, why in PARTIAL.items())
    (out / "README.txt").write_text(
        README.format(
            inventory=inv.path, pretty=stock.FLAVOURS[flavour]["os-release"]["PRETTY_NAME"],
            flavour=flavour, partial=partial, init_config=INIT_CONFIG,
            flannel=flannel.MANIFEST, join_file=JOIN_FILE, token=TOKEN, ca_hash=CA_HASH, key=KEY,
            kube_vip=A.KUBE_VIP_MANIFEST,
            skipped="\n".join(sorted(skipped)) or "  (none)",
        )
    )
    return written


def cluster_files(inv: Inventory) -> list[tuple[str, str, str]]:
    """(node, path, content) of every file init-master and join-workers write; a worker's
    token and CA hash are visible placeholders (they exist only while join-workers runs)."""
    out = [(inv.init_node.name, INIT_CONFIG, init_config(inv)),
           (inv.init_node.name, flannel.MANIFEST, flannel.manifest(inv))]
    out += [(n.name, JOIN_FILE, join_config(inv, n, TOKEN, CA_HASH, KEY))
            for n in inv.control_plane if n != inv.init_node]
    out += [(w.name, JOIN_FILE, join_config(inv, w, TOKEN, CA_HASH)) for w in inv.workers]
    if inv.load_balancer == "kube-vip":
        out += [(n.name, A.KUBE_VIP_MANIFEST, A.kube_vip_manifest(inv, n, A.ADMIN_CONF))
                for n in inv.control_plane]
    return out
