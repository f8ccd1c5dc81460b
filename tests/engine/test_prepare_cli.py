"""prepare-nodes over the lab: --dry-run, a bad inventory, --limit, a failing yum.

The first three share one fresh 3-node lab and run in file order: dry run and bad inventory
must leave it fresh (they assert so), then --limit prepares node1 only.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from . import (
    INVOKE,
    ROOT,
    check_prepared,
    connections,
    disk_snapshot,
    module_lab,
    mutating_calls,
    prepare,
    snapshot_diff,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def fresh():
    with module_lab(3) as the_lab:
        yield the_lab


def invoke(args: list[str], timeout: float = 180):
    return subprocess.run([str(INVOKE), *args], cwd=ROOT, env=dict(os.environ),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def evidence(the_lab) -> dict:
    """What would show a change: disks, stand-in calls, commands run, connections."""
    return {n.name: {"disk": disk_snapshot(n), "calls": len(n.calls()),
                     "exec": n.exec_requests(), "conns": connections(n)} for n in the_lab.nodes}


def assert_untouched(node, before: dict) -> None:
    now = disk_snapshot(node)
    for top in ("etc", "usr"):
        assert snapshot_diff(before["disk"][top], now[top]) == [], (node.name, top)
    assert mutating_calls(node, since=before["calls"]) == [], node.name


@pytest.mark.timeout(180)
def test_dry_run_shows_diffs_and_commands_and_changes_nothing(fresh, tmp_path):
    before = evidence(fresh)
    report = tmp_path / "report.json"
    res = invoke(["prepare-nodes", "-i", str(fresh.inventory_path), "--dry-run",
                  "--report", str(report), "--log-dir", str(tmp_path / "logs")])
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "RECAP (dry run: nothing was changed)" in out
    # Unified diffs of new and edited files, indented under their step's line.
    for expected in (
        "    --- /dev/null\n    +++ /etc/sysctl.d/k8s.conf\n",
        "    +net.ipv4.ip_forward = 1\n",
        "    --- /etc/fstab\n    +++ /etc/fstab\n",
        "    -/dev/mapper/centos-swap swap                    swap    defaults        0 0\n"
        "    +#/dev/mapper/centos-swap swap                    swap    defaults        0 0\n",
        "    --- /etc/selinux/config\n",
        "    -SELINUX=enforcing\n    +SELINUX=disabled\n",
        "    +++ /etc/hosts\n",
        '    +        "native.cgroupdriver=systemd"\n',
    ):
        assert expected in out, expected
    # And the commands, each with its reason.
    for expected in (
        # one package transaction for every step that needs packages, with each one's reason
        "    $ yum install -y --setopt=obsoletes=0 --disableexcludes=kubernetes ipset ipvsadm "
        "docker-ce-19.03.15 docker-ce-cli-19.03.15 containerd.io conntrack-tools socat "
        "kubelet-1.20.10 kubeadm-1.20.10 kubectl-1.20.10    # ipvs: not installed; docker: "
        "docker is not installed at the pinned version; kubernetes-packages: kubeadm's "
        "preflight wants tc, conntrack and socat, not installed: kubeadm, kubectl, kubelet",
        "    $ setenforce 0    # SELinux is enforcing",
        "    $ swapoff -a    # swap is on",
        "    $ modprobe br_netfilter",
        "    $ systemctl enable docker.service",
    ):
        assert expected in out, expected
    assert re.search(r"(?m)^\[node2\] packages\s+changed .*would: write /etc/yum.repos.d/", out)
    data = yaml.safe_load(report.read_text())
    for node in fresh.nodes:
        assert data["hosts"][node.name]["status"] == "changed"  # "would change"
        # One round trip on one connection: the facts; nothing applied, nothing re-checked.
        assert node.exec_requests() - before[node.name]["exec"] == 1
        assert connections(node) - before[node.name]["conns"] == 1
        assert_untouched(node, before[node.name])
    # Still fresh: swap on, SELinux enforcing, no docker.
    res = fresh.nodes[0].run("cat /proc/swaps | wc -l; getenforce; rpm -q docker-ce")
    assert res.stdout.split("\n")[:2] == ["2", "Enforcing"]
    assert "not installed" in res.stdout


@pytest.mark.timeout(120)
def test_bad_inventory_exits_2_without_a_traceback_and_touches_nothing(fresh, tmp_path):
    data = yaml.safe_load(fresh.inventory_path.read_text())
    data["nodes"][2]["name"] = data["nodes"][1]["name"]  # a duplicate node name
    bad = tmp_path / "inventory.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    before = evidence(fresh)
    res = invoke(["prepare-nodes", "-i", str(bad), "--log-dir", str(tmp_path / "logs")])
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "Traceback" not in out
    assert f"invalid inventory {bad}" in out
    # Names the file, the line and the problem.
    assert re.search(rf"{re.escape(str(bad))}:\d+: nodes\[2\]\.name: 'node1' is already used",
                     out), out
    for node in fresh.nodes:
        assert node.exec_requests() == before[node.name]["exec"]
        assert connections(node) == before[node.name]["conns"]  # not even connected
        assert_untouched(node, before[node.name])


@pytest.mark.timeout(180)
def test_limit_touches_only_the_named_nodes(fresh, tmp_path):
    before = evidence(fresh)
    run = prepare(fresh.inventory_path, tmp_path, limit="node1")
    assert run.rc == 0, run.console
    assert list(run.report["hosts"]) == ["node1"]
    node1 = fresh.node("node1")
    problems = check_prepared(node1, fresh)
    assert not problems, "\n".join(problems)
    for node in fresh.nodes:
        if node is node1:
            continue
        assert connections(node) == before[node.name]["conns"], node.name
        assert node.exec_requests() == before[node.name]["exec"], node.name
        assert_untouched(node, before[node.name])


@pytest.mark.timeout(300)
def test_a_failing_yum_on_one_node_does_not_stop_the_others(lab_factory, tmp_path):
    """The failing node is listed first and the run is serial (--parallel 1).

    It is a worker: on the master, preflight's PackageVersions check (yum list, on the master
    only) would catch the broken yum and, by design, stop the run before any change anywhere.
    """
    the_lab = lab_factory(3)
    data = yaml.safe_load(the_lab.inventory_path.read_text())
    data["nodes"] = [data["nodes"][1], data["nodes"][0], data["nodes"][2]]
    assert [n["name"] for n in data["nodes"]] == ["node1", "master1", "node2"]
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    failing = the_lab.node("node1")
    excerpt = ("Error: Failed to download metadata for repo 'base': Cannot download "
               "repomd.xml: injected by the test")
    failing.inject_fail("yum", f"Loading mirror speeds from cached hostfile\n{excerpt}\n")
    report = tmp_path / "report.json"
    res = invoke(["prepare-nodes", "-i", str(inventory), "--parallel", "1",
                  "--report", str(report), "--log-dir", str(tmp_path / "logs")], timeout=280)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "Traceback" not in out
    recap = out.split("RECAP", 1)[1]
    line = next(ln for ln in recap.splitlines() if ln.startswith("node1"))
    assert "failed" in line and "base-repo" in line and excerpt in line, line
    data = yaml.safe_load(report.read_text())
    assert list(data["hosts"]) == ["node1", "master1", "node2"]
    steps = {s["name"]: s for s in data["hosts"]["node1"]["steps"]}
    assert steps["base-repo"]["status"] == "failed"
    assert steps["kubelet"]["status"] == "skipped"
    assert steps["kubelet"]["message"] == "not run: base-repo failed"
    # The others were prepared all the same.
    for name in ("master1", "node2"):
        assert data["hosts"][name]["status"] == "changed", out
        problems = check_prepared(the_lab.node(name), the_lab)
        assert not problems, "\n".join(problems)
    assert failing.run("rpm -q docker-ce").returncode != 0  # node1 really stopped there

    failing.clear_fail("yum")
    again = prepare(inventory, tmp_path / "again", parallel=1)
    assert again.rc == 0, again.console
    assert again.changed("node1") > 0
    assert again.changed("master1") == again.changed("node2") == 0
    problems = check_prepared(failing, the_lab)
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(300)
def test_a_failed_package_transaction_fails_exactly_the_steps_that_needed_it(lab_factory,
                                                                              tmp_path):
    """docker.version pinned to a release the mirror lacks (preflight's PackageVersions check,
    which would refuse it, is ignored): dnf refuses the node's one transaction with its own
    words; the steps that needed it fail with those words, later steps do not run, earlier
    ones did, and nothing of the transaction is installed."""
    the_lab = lab_factory(1)
    data = yaml.safe_load(the_lab.inventory_path.read_text())
    data["docker"] = {**data.get("docker", {}), "version": "99.0.0"}
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    node = the_lab.nodes[0]
    res = invoke(["prepare-nodes", "-i", str(inventory), "--ignore", "PackageVersions",
                  "--report", str(tmp_path / "report.json"), "--log-dir", str(tmp_path / "l")])
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    steps = {s["name"]: s for s in
             yaml.safe_load((tmp_path / "report.json").read_text())["hosts"][node.name]["steps"]}
    assert steps["packages"]["status"] == "failed"
    assert "Unable to find a match: docker-ce-99.0.0" in steps["packages"]["message"], steps
    for name in ("ipvs", "docker", "kubernetes-packages"):
        assert steps[name]["status"] == "failed", steps[name]
        assert steps[name]["message"] == "packages: " + steps["packages"]["message"]
    assert steps["kubelet"] == {**steps["kubelet"], "status": "skipped",
                                "message": "not run: the packages transaction failed"}
    assert steps["bridge-netfilter"]["status"] == "changed"
    installs = [c["argv"] for c in node.calls() if c["cmd"] == "yum" and "install" in c["argv"]]
    assert len(installs) == 1, installs
    assert node.run("rpm -q ipset kubelet").returncode == 2  # a transaction is all or nothing
