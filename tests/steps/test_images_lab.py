"""The opt-in images step over the lab, including kubeadm 1.21.0's coredns path (kubeadm#2501)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bootstrap.commands import CommonOptions, prepare_nodes
from bootstrap.report import Reporter

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]
REPO = "registry.aliyuncs.com/google_containers"


def _prepare(inventory: Path, tmp_path: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = prepare_nodes(CommonOptions(inventory=str(inventory), log_dir=None, pull_images=True),
                         reporter=Reporter(out=out, log_dir=tmp_path))
    return code, out.getvalue()


def test_pinned_coredns_workaround_on_1_21_0(lab_factory, tmp_path: Path):
    lab = lab_factory(1)
    text = lab.inventory_path.read_text()
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(text.replace("cluster: {", 'cluster: {kubernetes_version: "1.21.0", ', 1))
    code, out = _prepare(inventory, tmp_path)
    assert code == 0, out
    assert "docker tag registry.aliyuncs.com/google_containers/coredns:1.8.0" in out
    node = lab.nodes[0]
    images = set(node.run("docker images --format '{{.Repository}}:{{.Tag}}'",
                          check=True).stdout.split())
    wanted = node.run(f"kubeadm config images list --kubernetes-version v1.21.0 "
                      f"--image-repository {REPO}", check=True).stdout.split()
    assert f"{REPO}/coredns/coredns:v1.8.0" in wanted
    assert set(wanted) <= images
    pulls = [c["argv"] for c in node.calls() if c["cmd"] == "docker" and c["argv"][:1] == ["pull"]]
    assert not any(a[-1].endswith(":latest") for a in pulls), pulls
    code, out = _prepare(inventory, tmp_path)
    assert code == 0 and "changed" not in out.split("RECAP")[1].split("\n")[2], out
