"""One lab cluster for every verify test and for `up` (test_up_lab.py: the cluster is built by
`up`, whose first run meets a failing join) (the demo's default path: el8, Docker 20.10.8,
1.20.10), started once per session and shared by test_verify_lab.py,
test_verify_workloads_lab.py and test_verify_pods_lab.py; each test mends what it breaks. The
lab's kubelet runs its timings (probe periods, back-off, grace periods) at a tenth
(``time_scale``, lab/k8s/STATE.md)."""

from __future__ import annotations

import pytest

from lab import demo
from lab.inventory import pin
from lab.pytest_plugin import module_lab

from . import Recorder, build_with_up


@pytest.fixture(scope="session")
def verify_cluster(tmp_path_factory):
    with module_lab(3, os="el8") as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        pin(the_lab.inventory_path, the_lab.mirror_url, docker=demo.DOCKER["el8"])
        rec = Recorder(the_lab, tmp_path_factory.mktemp("verify"))
        build_with_up(rec)
        (the_lab.cluster_dir / "time_scale").write_text("0.1\n")
        yield the_lab, rec
