"""prepare-nodes over the lab as root login: state, idempotence, backups, reboot, convergence.

One 3-node lab for the whole module, prepared once by the fixture. The tests run in file order
and each leaves the lab converged again, so the shared lab stays a "prepared" lab:
first run -> second run (no-op) -> atomic rewrite with backups -> reboot -> convergence failure.
"""

from __future__ import annotations

import re
import time

import pytest

from . import (
    BACKUP,
    assert_noop_rerun,
    check_prepared,
    connections,
    disk_snapshot,
    module_lab,
    mutating_calls,
    prepare,
    snapshot_diff,
)

pytestmark = pytest.mark.lab

# Files the lab's layer ships that prepare-nodes rewrites (so the first write makes a backup).
ORIGINALS = ("/etc/hosts", "/etc/fstab", "/etc/selinux/config",
             "/etc/yum.repos.d/CentOS-Base.repo")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A 3-node lab logged into as root, after one prepare-nodes run; plus what was before."""
    work = tmp_path_factory.mktemp("prepare-root")
    with module_lab(3, user="root") as the_lab:
        before = {
            n.name: {
                "exec": n.exec_requests(),
                "originals": {p: n.run(f"cat {p}", check=True).stdout for p in ORIGINALS},
            }
            for n in the_lab.nodes
        }
        started = time.monotonic()
        first = prepare(the_lab.inventory_path, work / "first")
        seconds = time.monotonic() - started
        yield {"lab": the_lab, "work": work, "before": before, "first": first,
               "seconds": seconds}


@pytest.mark.timeout(240)
def test_first_run_brings_every_node_to_the_prepared_state(prepared):
    the_lab, first = prepared["lab"], prepared["first"]
    assert first.rc == 0, first.console
    for node in the_lab.nodes:
        statuses = first.statuses(node.name)
        assert "failed" not in statuses.values(), first.console
        # Every step did something on a fresh CentOS 7 node except hostname (the lab's seed
        # already names the node) and time (chrony ships enabled and running).
        assert statuses["hostname"] == "ok" and statuses["time"] == "ok", statuses
        assert first.changed(node.name) == len(statuses) - 2, statuses
    problems = [p for node in the_lab.nodes for p in check_prepared(node, the_lab)]
    assert not problems, "\n".join(problems)
    # The stand-ins saw the changes (this also proves the mutating-call detector detects).
    done = mutating_calls(the_lab.node("node1"))
    for wanted in ("yum install -y --setopt=obsoletes=0 --disableexcludes=kubernetes ipset "
                   "ipvsadm docker-ce-19.03.15 docker-ce-cli-19.03.15",
                   "systemctl enable docker.service", "systemctl start docker.service",
                   "modprobe br_netfilter", "sysctl --system", "setenforce 0", "swapoff -a",
                   "systemctl disable --now firewalld.service", "modprobe -- ip_vs"):
        assert any(c.startswith(wanted) for c in done), (wanted, done)


@pytest.mark.timeout(120)
def test_facts_are_gathered_in_one_round_trip(prepared):
    """Counted in sshd's own log (exec requests), not by the engine's counters.

    A first run costs 1 (all facts) + 1 per changed step (one script each; the package
    transaction is one, and a step whose only work went into it has none) + 1 (all facts again
    for the convergence check): 12 on a fresh node.
    """
    the_lab, first, before = prepared["lab"], prepared["first"], prepared["before"]
    for node in the_lab.nodes:
        steps = first.report["hosts"][node.name]["steps"]
        scripts = [s["name"] for s in steps if s["status"] == "changed"
                   and not s["message"].startswith("in the packages transaction")]
        assert "packages" in scripts and "kubernetes-packages" not in scripts
        spent = node.exec_requests() - before[node.name]["exec"]
        assert spent == len(scripts) + 2, (node.name, spent, scripts)
        # one yum transaction installed every package (yum-config-manager aside)
        installs = [c for c in node.calls() if c["cmd"] == "yum" and "install" in c["argv"]]
        assert len(installs) == 1, installs


@pytest.mark.timeout(120)
def test_second_run_changes_nothing_and_uploads_nothing(prepared):
    the_lab, work = prepared["lab"], prepared["work"]
    disks = {n.name: disk_snapshot(n) for n in the_lab.nodes}
    calls = {n.name: len(n.calls()) for n in the_lab.nodes}
    execs = {n.name: n.exec_requests() for n in the_lab.nodes}
    conns = {n.name: connections(n) for n in the_lab.nodes}

    second = prepare(the_lab.inventory_path, work / "second")

    assert second.rc == 0, second.console
    recap = second.console.split("RECAP", 1)[1]
    for node in the_lab.nodes:
        assert second.report["hosts"][node.name]["status"] == "ok"
        assert set(second.statuses(node.name).values()) == {"ok"}, second.console
        assert re.search(rf"(?m)^{node.name}\s+12\s+0\s+0\s+0\s+ok$", recap), recap
        # One round trip per node: every fact in one script, nothing to apply, nothing to check.
        assert node.exec_requests() - execs[node.name] == 1
        assert connections(node) - conns[node.name] == 1
        # Unchanged files are not uploaded: no step script at all, no temp file, no mv.
        log = second.host_log(node.name)
        assert "$ gather facts" in log
        assert "$ step" not in log, log
        assert ".k8s-bootstrap.XXXXXX" not in log and "base64 -d" not in log, log
        # /etc and /usr byte-identical; not even rewritten (inode and mtime kept).
        now = disk_snapshot(node)
        for top in ("etc", "usr"):
            assert snapshot_diff(disks[node.name][top], now[top]) == [], (node.name, top)
        assert mutating_calls(node, since=calls[node.name]) == []


@pytest.mark.timeout(120)
def test_writes_are_atomic_and_keep_the_first_original(prepared):
    the_lab, work, before = prepared["lab"], prepared["work"], prepared["before"]
    node = the_lab.node("node1")
    # The first run backed up every file it replaced, with the original content.
    for path, original in before[node.name]["originals"].items():
        res = node.run(f"cat {path}{BACKUP}")
        assert res.returncode == 0, f"no backup of {path}"
        assert res.stdout == original, path
    # Files that did not exist before get no backup.
    assert node.run(f"test -e /etc/sysctl.d/k8s.conf{BACKUP}").returncode == 1

    # An admin edits a managed file: the managed block goes, a line of theirs is added.
    hosts = node.upper / "etc" / "hosts"
    node.run("sed -i '/k8s-bootstrap managed block/,$d' /etc/hosts && "
             "echo '10.9.9.9 extra-host' >> /etc/hosts", check=True)
    tampered = node.run("cat /etc/hosts", check=True).stdout
    inode = hosts.stat().st_ino

    again = prepare(the_lab.inventory_path, work / "rewrite", limit="node1")

    assert again.rc == 0, again.console
    assert again.statuses("node1")["hosts"] == "changed"
    assert again.changed("node1") == 1, again.console
    now = node.run("cat /etc/hosts", check=True).stdout
    assert "10.9.9.9 extra-host" in now and "# BEGIN k8s-bootstrap managed block" in now
    assert now != tampered
    # Replaced by rename (a new inode), never truncated and rewritten in place.
    assert hosts.stat().st_ino != inode
    # The backup is still the ORIGINAL, not the admin's version: it is taken the first time only.
    assert node.run(f"cat /etc/hosts{BACKUP}", check=True).stdout == \
        before[node.name]["originals"]["/etc/hosts"]
    # No temp file left anywhere under /etc, on any node.
    for n in the_lab.nodes:
        left = [p for p in (n.upper / "etc").rglob("*.k8s-bootstrap.*")
                if not p.name.endswith(BACKUP)]
        assert left == [], left


@pytest.mark.timeout(180)
def test_every_setting_survives_a_reboot(prepared):
    the_lab, work = prepared["lab"], prepared["work"]
    for node in the_lab.nodes:
        node.reboot()
    problems = [p for n in the_lab.nodes for p in check_prepared(n, the_lab, rebooted=True)]
    assert not problems, "\n".join(problems)
    # Nothing to redo after the reboot either.
    assert_noop_rerun(the_lab, work / "after-reboot")


@pytest.mark.timeout(120)
def test_a_step_that_does_not_converge_is_reported_failed(prepared):
    """A later-loaded sysctl.d file sets ip_forward back to 0: `sysctl --system` cannot fix it."""
    the_lab, work = prepared["lab"], prepared["work"]
    node = the_lab.node("node2")
    rogue = "/etc/sysctl.d/zz-no-forward.conf"  # sorts after k8s.conf: applied last
    res = node.run(f"echo 'net.ipv4.ip_forward = 0' > {rogue} && sysctl --system >/dev/null "
                   "&& sysctl -n net.ipv4.ip_forward", check=True)
    assert res.stdout.strip() == "0"  # the trap is real inside the node
    try:
        stuck = prepare(the_lab.inventory_path, work / "stuck", limit="node2")
        assert stuck.rc == 1, stuck.console
        step = next(s for s in stuck.report["hosts"]["node2"]["steps"]
                    if s["name"] == "bridge-netfilter")
        assert step["status"] == "failed"
        assert step["message"].startswith("did not converge: still wants sysctl --system")
        assert "bridge-netfilter: did not converge" in stuck.console.split("RECAP", 1)[1]
        # It did try: the step's command ran on the node.
        assert node.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == "0"
    finally:
        node.run(f"rm -f {rogue}", check=True)
    fixed = prepare(the_lab.inventory_path, work / "fixed", limit="node2")
    assert fixed.rc == 0, fixed.console
    assert fixed.statuses("node2")["bridge-netfilter"] == "changed"
    assert node.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"
