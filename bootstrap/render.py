"""``invoke render``: the desired state of every managed file, per node, without connecting."""

from __future__ import annotations

from pathlib import Path

from . import stock
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
"""


def render_all(inv: Inventory, out: Path, flavour: str = stock.DEFAULT) -> list[Path]:
    """Write DIR/NODE/<path> for every managed file as on a stock ``flavour`` node (el7, el8,
    el9: ``stock.FLAVOURS``); return the paths written."""
    written: list[Path] = []
    skipped: set[str] = set()
    for node in inv.nodes:
        t = Target(inv, node)
        for step in prepare_steps():
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
    partial = "".join(f"  - {path}: {why}\n" for path, why in PARTIAL.items())
    (out / "README.txt").write_text(
        README.format(
            inventory=inv.path, pretty=stock.FLAVOURS[flavour]["os-release"]["PRETTY_NAME"],
            flavour=flavour, partial=partial, skipped="\n".join(sorted(skipped)) or "  (none)"
        )
    )
    return written
