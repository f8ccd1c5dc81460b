"""`up` on the shared lab cluster (tests/cluster/conftest.py built it with `up`): a first run
stopped where the join failed, with the command to resume; a second run, mended, completed and
changed only what was left; Ctrl-C during `up` stops it as it stops the part it interrupts."""

from __future__ import annotations

import re

import pytest

from tests.engine import press_when_reached

from . import JOIN_FAULT, cluster_changes

pytestmark = pytest.mark.lab


def parts(console: str) -> dict[str, str]:
    """Each part's output in an up run, by part name."""
    chunks = re.split(r"^up: ([a-z-]+) \(\d/\d\)$", console, flags=re.M)
    return dict(zip(chunks[1::2], chunks[2::2], strict=True))


def summary(console: str) -> dict[str, str]:
    """The UP table: part -> status."""
    table = console.rsplit("\nUP", 1)[1]
    rows = [ln.split() for ln in table.splitlines()[1:] if ln.startswith("  ")]
    return {r[0]: " ".join(r[1:3]) if r[1:3] == ["not", "run"] else r[1] for r in rows}


def recap_statuses(text: str) -> dict[str, str]:
    """host -> status from a part's recap table."""
    table = text.split("\nRECAP", 1)[1]
    return {ln.split()[0]: ln.split()[5] for ln in table.splitlines()[2:]
            if ln.split() and ln.split()[0] in ("master1", "node1", "node2")}


@pytest.fixture
def cluster(verify_cluster):
    return verify_cluster


def test_up_stops_at_the_failed_join_and_a_second_up_completes(cluster):
    the_lab, rec = cluster
    first, second = rec.up_runs
    inventory = str(the_lab.inventory_path)
    assert first.rc == 1, first.console
    assert summary(first.console) == {"prepare-nodes": "ok", "init-master": "ok",
                                      "join-workers": "failed", "verify": "not run"}
    assert list(parts(first.console)) == ["prepare-nodes", "init-master", "join-workers"]
    assert JOIN_FAULT in parts(first.console)["join-workers"]
    assert recap_statuses(parts(first.console)["join-workers"]) == {  # master1: the token
        "master1": "changed", "node1": "changed", "node2": "failed"}, "node1 joined anyway"
    assert ("up: stopped: join-workers failed; fix what it reported above, then resume with: "
            f"k8s-bootstrap up -i {inventory} --from join-workers") in first.console

    assert second.rc == 0, second.console
    assert summary(second.console) == dict.fromkeys(
        ("prepare-nodes", "init-master", "join-workers", "verify"), "ok")
    done = parts(second.console)
    assert set(recap_statuses(done["prepare-nodes"]).values()) == {"ok"}, "nothing to redo"
    assert recap_statuses(done["init-master"]) == {"master1": "ok"}
    assert "join-workers: joined node2; already in the cluster: node1" in done["join-workers"]
    assert "verify: 1 checks, 1 passed" in done["verify"]
    assert second.console.rstrip().endswith("up: done: the cluster is up and verify passed")
    assert "Traceback" not in first.console + second.console


@pytest.mark.timeout(120)
def test_ctrl_c_during_up_stops_it_in_the_part_it_interrupts(cluster):
    """Ctrl-C while prepare-nodes gathers (the master's sysctl read held by a hang): the
    gather is given up at once, as prepare-nodes alone does; no later part starts; exit 130."""
    the_lab, rec = cluster
    master = the_lab.nodes[0]
    before = {n.name: len(n.calls()) for n in the_lab.nodes}
    run, stopped_after = press_when_reached(
        master, "sysctl", lambda intr: rec("up", interrupt=intr))
    assert stopped_after < 5, stopped_after
    assert run.rc == 130, run.console
    assert summary(run.console) == {"prepare-nodes": "interrupted", "init-master": "not run",
                                    "join-workers": "not run", "verify": "not run"}
    assert "RECAP (interrupted: no step or phase started after Ctrl-C)" in run.console
    assert ("up: interrupted (Ctrl-C): no part started after it; resume with: k8s-bootstrap up "
            f"-i {the_lab.inventory_path}") in run.console
    for node in the_lab.nodes:
        assert cluster_changes(node, before[node.name]) == [], node.name
