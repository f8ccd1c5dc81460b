"""prepare-nodes on EL8 (the seed's CentOS 8) and EL9 (Rocky 9) lab nodes, one shared lab per
flavour: dry run changes nothing, the first run prepares every node (checked from inside), a
second run changes nothing, every setting survives a reboot. The podman variant: preflight
names the conflicting packages and changes nothing; with the removal setting the run removes
them, says so, and converges.
"""

from __future__ import annotations

import pytest

from lab import demo
from lab.inventory import pin

from . import (
    assert_noop_rerun,
    check_prepared,
    disk_snapshot,
    module_lab,
    mutating_calls,
    prepare,
    snapshot_diff,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module", params=["el8", "el9"])
def flavour_lab(request, tmp_path_factory):
    """A 3-node lab of one flavour, docker pinned as the demo pins it, before any run."""
    with module_lab(3, os=request.param) as the_lab:
        pin(the_lab.inventory_path, None, docker=demo.DOCKER[request.param])
        yield the_lab, tmp_path_factory.mktemp(f"flavour-{request.param}")


@pytest.mark.timeout(300)
def test_dry_run_then_prepare_then_noop_then_reboot(flavour_lab):
    the_lab, work = flavour_lab
    before = {n.name: disk_snapshot(n) for n in the_lab.nodes}
    calls = {n.name: len(n.calls()) for n in the_lab.nodes}
    dry = prepare(the_lab.inventory_path, work / "dry", dry_run=True)
    assert dry.rc == 0, dry.console
    for node in the_lab.nodes:
        after = disk_snapshot(node)
        assert {top: snapshot_diff(before[node.name][top], after[top]) for top in after} == {
            top: [] for top in after}, node.name
        assert mutating_calls(node, since=calls[node.name]) == []
    manager = "dnf" if the_lab.os != "el7" else "yum"
    assert f"$ {manager} install -y " in dry.console, dry.console

    first = prepare(the_lab.inventory_path, work / "first")
    assert first.rc == 0, first.console
    problems = [p for n in the_lab.nodes for p in check_prepared(n, the_lab)]
    assert problems == [], "\n".join(problems)
    if the_lab.os == "el9":  # said once, when the config is written
        assert "SELINUX=permissive, not disabled: on EL9" in first.console

    assert_noop_rerun(the_lab, work / "again")

    for node in the_lab.nodes:
        node.reboot()
    problems = [p for n in the_lab.nodes for p in check_prepared(n, the_lab, rebooted=True)]
    assert problems == [], "\n".join(problems)
    assert_noop_rerun(the_lab, work / "after-reboot")


@pytest.fixture(scope="module")
def podman_lab():
    """One el8 node with podman, buildah, runc and podman-docker installed."""
    with module_lab(1, os="el8", podman=True) as the_lab:
        pin(the_lab.inventory_path, None, docker=demo.DOCKER["el8"])
        yield the_lab


@pytest.mark.timeout(300)
def test_podman_conflicts_stop_preflight_until_removal_is_allowed(podman_lab, tmp_path):
    node = podman_lab.nodes[0]
    before = disk_snapshot(node)
    calls = len(node.calls())
    refused = prepare(podman_lab.inventory_path, tmp_path / "refused")
    assert refused.rc == 1
    line = next(ln for ln in refused.console.splitlines() if "[ERROR PackageConflicts]" in ln)
    for pkg in ("runc", "podman", "buildah", "podman-docker"):
        assert pkg in line, line
    assert "node_prep.remove_conflicting_packages: true" in line
    assert "nothing was changed" in refused.console
    after = disk_snapshot(node)
    assert {top: snapshot_diff(before[top], after[top]) for top in after} == {
        top: [] for top in after}
    assert mutating_calls(node, since=calls) == []

    text = podman_lab.inventory_path.read_text()
    podman_lab.inventory_path.write_text(
        text + "node_prep: {remove_conflicting_packages: true}\n")
    allowed = prepare(podman_lab.inventory_path, tmp_path / "allowed")
    assert allowed.rc == 0, allowed.console
    assert "[WARNING PackageConflicts]" in allowed.console
    assert "dnf will remove them" in allowed.console
    assert "--allowerasing" in allowed.console  # the transaction's command says it
    gone = node.run("rpm -q podman buildah runc podman-docker")
    assert gone.stdout.count("is not installed") == 4, gone.stdout
    problems = check_prepared(node, podman_lab)
    assert problems == [], "\n".join(problems)
    assert_noop_rerun(podman_lab, tmp_path / "again")
