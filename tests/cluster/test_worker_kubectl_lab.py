"""kubectl on the workers (cluster.kubectl_on_workers): for each value, run kubectl on the worker
as the SSH user; switching values leaves only what the current one says."""

from __future__ import annotations

import pytest
import yaml

from lab import demo
from lab.inventory import pin
from lab.pytest_plugin import module_lab

from . import Recorder

pytestmark = pytest.mark.lab

CONFIG = "/home/lab/.kube/config"
MARKER = "/home/lab/.kube/k8s-bootstrap-kubectl"


@pytest.fixture(scope="module")
def wlab(tmp_path_factory):
    with module_lab(2, os="el8") as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        pin(the_lab.inventory_path, the_lab.mirror_url, docker=demo.DOCKER["el8"])
        rec = Recorder(the_lab, tmp_path_factory.mktemp("worker-kubectl"))
        run = rec("up", only="Nodes")
        assert run.rc == 0, run.console
        yield the_lab, rec


def setting(the_lab, value: str) -> None:
    path = the_lab.inventory_path
    data = yaml.safe_load(path.read_text())
    data["cluster"]["kubectl_on_workers"] = value
    path.write_text(yaml.safe_dump(data))


def as_lab(node, cmd: str):
    return node.run(f"cd ~lab && {cmd}", user="lab", timeout=60)


def test_01_none_is_the_default_and_leaves_no_file(wlab):
    the_lab, _ = wlab
    worker = the_lab.nodes[1]
    assert as_lab(worker, f"test -e {CONFIG}").returncode == 1
    got = as_lab(worker, "kubectl get nodes")
    assert got.returncode == 1 and "localhost:8080" in got.stderr, got.stderr


def test_02_view_can_get_and_cannot_change(wlab):
    the_lab, rec = wlab
    worker = the_lab.nodes[1]
    setting(the_lab, "view")
    run = rec("join-workers")
    assert run.rc == 0, run.console
    assert "kubectl-credentials" in run.console
    got = as_lab(worker, "kubectl get nodes")
    assert got.returncode == 0 and "master1" in got.stdout, got.stderr
    got = as_lab(worker, "kubectl -n kube-system delete pod nope")
    assert got.returncode == 1
    assert ('User "k8s-bootstrap-view" cannot delete resource "pods" in API group "" in the '
            'namespace "kube-system"') in got.stderr, got.stderr
    assert as_lab(worker, f"stat -c '%a %U' {CONFIG}").stdout.split() == ["600", "lab"]
    again = rec("join-workers")
    assert again.rc == 0, again.console
    assert "kubectl-credentials" not in again.console, "an installed view file is kept"


def test_03_admin_can_change_and_says_what_it_hands_out(wlab):
    the_lab, rec = wlab
    worker = the_lab.nodes[1]
    setting(the_lab, "admin")
    run = rec("join-workers")
    assert run.rc == 0, run.console
    assert "cluster-admin credentials" in run.console
    got = as_lab(worker, "kubectl create clusterrolebinding probe --clusterrole=view --user=x "
                         "&& kubectl delete clusterrolebinding probe")
    assert got.returncode == 0, got.stderr
    got = as_lab(worker, "kubectl -n kube-system delete pod nope")
    assert "Forbidden" not in got.stderr and "NotFound" in got.stderr, got.stderr
    assert as_lab(worker, f"cat {MARKER}").stdout.strip() == "admin"


def test_04_none_removes_what_an_earlier_run_installed(wlab):
    the_lab, rec = wlab
    worker = the_lab.nodes[1]
    setting(the_lab, "none")
    run = rec("join-workers")
    assert run.rc == 0, run.console
    assert as_lab(worker, f"test -e {CONFIG} || test -e {MARKER}").returncode == 1
    again = rec("join-workers")
    assert again.rc == 0 and "remove the kubeconfig" not in again.console
