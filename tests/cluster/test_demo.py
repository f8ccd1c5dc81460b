"""`invoke demo`, the README's first command: a 3-node cluster with every node Ready, on the
seed's own system by default (CentOS 8, Docker 20.10.8, Kubernetes 1.20.10), and on the newest
release (`--os el9 --kubernetes 1.37.0`: containerd 2.x, kubeadm v1beta4)."""

from __future__ import annotations

import os
import subprocess

import pytest

from lab.cluster import Lab, LabError
from tests.engine import INVOKE, ROOT

pytestmark = pytest.mark.lab


def demo(tmp_path, *flags: str) -> tuple[str, list[list[str]]]:
    """Run `invoke demo FLAGS` as a user would; its output and the rows of its node table, after
    checking that it succeeded with three Ready nodes."""
    try:
        if Lab.attach("default").alive():
            pytest.skip("a default lab is running (invoke demo --keep?); not stopping it")
    except LabError:
        pass
    res = subprocess.run([str(INVOKE), "-r", str(ROOT), "demo", *flags], cwd=tmp_path,
                         capture_output=True, text=True, timeout=540, env=dict(os.environ),
                         stdin=subprocess.DEVNULL)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    table = out.split("kubectl get nodes -o wide", 1)[1]
    rows = [ln.split() for ln in table.splitlines()[1:] if ln.startswith(("master", "node"))]
    assert sorted((r[0], r[1]) for r in rows) == [
        ("master1", "Ready"), ("node1", "Ready"), ("node2", "Ready")], out
    assert "Traceback" not in out
    assert "verify: 20 checks, 20 passed" in out, out  # the demo ends with invoke verify
    return out, rows


@pytest.mark.timeout(600)
def test_demo_shows_three_ready_nodes(tmp_path):
    out, rows = demo(tmp_path)
    assert "3 simulated CentOS 8 nodes (el8, Docker 20.10.8) are up" in out
    for r in rows:  # NAME STATUS ROLES AGE VERSION IP EXTERNAL OS-IMAGE(3 words) KERNEL RUNTIME
        assert r[4] == "v1.20.10" and r[-1] == "docker://20.10.8", r
        assert " ".join(r[7:-2]) == "CentOS Linux 8" and r[-2].startswith("4.18.0-"), r
    assert "\tinit-master\tkubeadm-init\tkubeadm init --config" in out  # the master's journal
    assert "\tjoin-workers\ttoken-delete\tdelete join token " in out
    assert "demo: lab stopped" in out
    assert (tmp_path / "runs").is_dir()


@pytest.mark.timeout(600)
def test_demo_on_the_newest_release(tmp_path):
    out, rows = demo(tmp_path, "--os", "el9", "--kubernetes", "1.37.0")
    assert "3 simulated Rocky 9 nodes (el9, Kubernetes 1.37.0, containerd) are up" in out
    assert "container runtime: containerd (the default for 1.37)" in out
    for r in rows:
        assert r[4] == "v1.37.0" and r[-1].startswith("containerd://2."), r
