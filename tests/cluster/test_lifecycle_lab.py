"""The cluster lifecycle over a 3-node lab, in file order on one lab:

prepare -> init refused by swap (nothing half-done) -> init -> init again (no change) ->
join with one worker failing (the other joins) -> join again -> expired token -> reset ->
reset again (no change) -> prepare -> init -> join, with a stale kubeconfig in the way ->
the token never written anywhere. Node state is always checked from inside the nodes.
"""

from __future__ import annotations

import io
import json
import threading
import time

import pytest

from bootstrap.cluster import join as join_mod
from bootstrap.cluster.common import STATE_FILES
from bootstrap.cluster.init import wait_ready
from bootstrap.engine import Runner, RunOptions
from bootstrap.interrupt import Interrupt
from bootstrap.inventory import load
from bootstrap.report import Reporter
from bootstrap.runinfo import RunInfo
from bootstrap.steps import Target
from tests.engine import module_lab

from . import Recorder, cluster_changes

pytestmark = pytest.mark.lab

HOME = "/home/lab"  # the lab inventory logs in as `lab` (passwordless sudo)


@pytest.fixture(scope="module")
def lab3m():
    with module_lab(3) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        yield the_lab


@pytest.fixture(scope="module")
def rec(lab3m, tmp_path_factory):
    recorder = Recorder(lab3m, tmp_path_factory.mktemp("cluster"))
    # join tokens are deleted when join-workers ends: note each one as it is created
    create = join_mod.create_token

    def create_and_note(data, session):
        token = create(data, session)
        recorder.tokens.add(token)
        return token

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(join_mod, "create_token", create_and_note)
        yield recorder


def sh(node, cmd: str, user: str = "root"):
    return node.run(cmd, user=user, timeout=120)


def exists(node, path: str) -> bool:
    return sh(node, f"test -e {path}").returncode == 0


def node_status(master) -> dict[str, str]:
    out = sh(master, "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes --no-headers")
    return {f[0]: f[1] for f in (ln.split() for ln in out.stdout.splitlines())
            if len(f) > 1 and f[0] != "NAME"}


def statuses(run, host: str) -> dict[str, str]:
    return run.statuses(host)


def message(run, host: str, step: str) -> str:
    return next(s["message"] for s in run.report["hosts"][host]["steps"] if s["name"] == step)


BAD_INPUT = [
    ("init-master", {"limit": "node1"}, 2, "--limit: node1 not a control-plane node: "
                                           "init-master sets up the control planes"),
    ("join-workers", {"limit": "master1"}, 2, "master1 is the master; join-workers joins workers"),
    ("join-workers", {"limit": "node9"}, 2, "--limit: no node named 'node9'"),
    ("join-workers", {"timeout": -1}, 2, "--timeout must be at least 1"),
    ("reset", {}, 2, "reset needs a confirmation: run it at a terminal, or pass --yes"),
    ("reset", {"prompt": lambda q: "k9s"}, 2, "reset: not confirmed; nothing was changed"),
    ("join-workers", {}, 1, "the master is not initialised (/etc/kubernetes/admin.conf missing)"
                            ": run invoke init-master first"),
    ("prepare-nodes", {"skip_phases": "swapp"}, 2, "--skip-phases: prepare-nodes has no phase "
                                                   "'swapp' (did you mean 'swap'?)"),
    ("reset", {"skip_phases": "kubeadm-init", "yes": True}, 2, "reset has no phase "
                                                               "'kubeadm-init'"),
    # fresh nodes: what the skipped phase leaves is not there, so the phase needing it is refused
    ("prepare-nodes", {"skip_phases": "kubernetes-packages"}, 1,
     "[node2] --skip-phases: kubelet needs kubernetes-packages (the kubelet package and its "
     "unit), which --skip-phases skips: run without skipping kubernetes-packages"),
    ("init-master", {"skip_phases": "kubeadm-config"}, 1,
     "kubeadm-init needs kubeadm-config (/etc/kubernetes/kubeadm-config.yaml), which "
     "--skip-phases skips"),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("command", "opts", "rc", "text"), BAD_INPUT,
                         ids=[f"{c}-{'-'.join(o) or 'plain'}-{i}"
                              for i, (c, o, _, _) in enumerate(BAD_INPUT)])
def test_00_bad_input_is_a_clear_error_and_changes_nothing(rec, lab3m, command, opts, rc, text):
    before = {n.name: len(n.calls()) for n in lab3m.nodes}
    run = rec(command, **dict(opts))
    assert run.rc == rc, run.console
    assert "wait-ready" not in run.console, "refused: no wait for nodes to be Ready either"
    assert text in run.console and "Traceback" not in run.console
    for node in lab3m.nodes:
        assert cluster_changes(node, before[node.name]) == []


@pytest.mark.timeout(300)
def test_01_prepare(rec):
    run = rec("prepare-nodes")
    assert run.rc == 0, run.console


@pytest.mark.timeout(300)
def test_01a_prepare_skipping_swap_leaves_swap_on_and_does_the_rest(rec, lab3m):
    master = lab3m.nodes[0]
    assert master.swap_on().returncode == 0
    sh(master, "hostnamectl set-hostname master1-renamed")
    run = rec("prepare-nodes", skip_phases="swap", limit="master1")
    assert run.rc == 0, run.console
    assert statuses(run, "master1")["swap"] == "skipped"
    assert message(run, "master1", "swap") == "--skip-phases"
    assert statuses(run, "master1")["hostname"] == "changed"
    assert "centos-swap" in sh(master, "cat /proc/swaps").stdout, "swap stays on"
    again = rec("prepare-nodes", limit="master1")
    assert again.rc == 0, again.console
    assert statuses(again, "master1")["swap"] == "changed"
    assert "centos-swap" not in sh(master, "cat /proc/swaps").stdout


@pytest.mark.timeout(300)
def test_01b_init_dry_run_shows_the_config_and_changes_nothing(rec, lab3m):
    before = {n.name: len(n.calls()) for n in lab3m.nodes}
    run = rec("init-master", dry_run=True)
    assert run.rc == 0, run.console
    assert "+apiVersion: kubeadm.k8s.io/v1beta2" in run.console
    assert "+mode: ipvs" in run.console and "+cgroupDriver: systemd" in run.console
    assert '+      "Network": "10.244.0.0/16",' in run.console  # the flannel manifest's diff
    assert "$ kubeadm init --config /etc/kubernetes/kubeadm-config.yaml" in run.console
    assert statuses(run, "master1")["wait-ready"] == "skipped"
    for node in lab3m.nodes:
        assert cluster_changes(node, before[node.name]) == []
    assert not exists(lab3m.nodes[0], "/etc/kubernetes/kubeadm-config.yaml")


@pytest.mark.timeout(300)
def test_02_init_refused_by_preflight_leaves_nothing_half_done(rec, lab3m):
    master = lab3m.nodes[0]
    on = master.swap_on()  # a sneaky admin: prepare-nodes commented it out of fstab
    assert on.returncode == 0, on.stderr
    assert "centos-swap" in sh(master, "cat /proc/swaps").stdout
    run = rec("init-master")
    assert run.rc == 1, run.console
    assert statuses(run, "master1")["kubeadm-init"] == "failed"
    assert "[ERROR Swap]: running with swap on is not supported" in message(
        run, "master1", "kubeadm-init")
    # the evidence: kubeadm's lines, the kubelet's journal, the services
    assert "kubeadm-init evidence:" in run.console
    assert "--- journalctl -u kubelet" in run.console
    for path in STATE_FILES:
        assert not exists(master, path), path
    assert sh(master, "ls -A /etc/kubernetes/manifests").stdout.strip() == ""
    assert not exists(master, f"{HOME}/.kube/config")
    assert "kubelet.conf" not in sh(master, "ls /etc/kubernetes").stdout


@pytest.mark.timeout(300)
def test_03_init_then_a_second_init_changes_nothing(rec, lab3m):
    master = lab3m.nodes[0]
    assert rec("prepare-nodes").rc == 0  # swap off again
    run = rec("init-master")
    assert run.rc == 0, run.console
    st = statuses(run, "master1")
    assert st["kubeadm-init"] == "changed" and st["wait-ready"] == "ok", run.console
    assert node_status(master) == {"master1": "Ready"}
    # the config kubeadm read: API version, proxy mode and cgroup driver as rendered
    conf = sh(master, "cat /etc/kubernetes/kubeadm-config.yaml").stdout
    assert "apiVersion: kubeadm.k8s.io/v1beta2" in conf and "mode: ipvs" in conf
    assert "cgroupDriver: systemd" in sh(master, "cat /var/lib/kubelet/config.yaml").stdout
    state = json.loads((lab3m.cluster_dir / "state.json").read_text())
    assert state["config"]["proxyMode"] == "ipvs"
    assert state["config"]["podSubnet"] == "10.244.0.0/16"
    # seed 004's kubeconfig for the SSH user, owned by it, 0600; kubectl works as that user
    assert sh(master, f"stat -c '%a %U' {HOME}/.kube/config").stdout.split() == ["600", "lab"]
    got = sh(master, "kubectl get nodes", user="lab")
    assert got.returncode == 0 and "master1" in got.stdout, got.stderr

    before = {n.name: len(n.calls()) for n in lab3m.nodes}
    again = rec("init-master")
    assert again.rc == 0, again.console
    assert again.changed("master1") == 0, again.console
    for node in lab3m.nodes:
        assert cluster_changes(node, before[node.name]) == []

    local = rec.workdir / "kube" / "admin.conf"
    run = rec("init-master", fetch_kubeconfig=str(local))
    assert run.rc == 0 and statuses(run, "master1")["fetch-kubeconfig"] == "changed"
    assert oct(local.stat().st_mode & 0o777) == "0o600"
    assert local.read_text() == sh(master, "cat /etc/kubernetes/admin.conf").stdout
    assert "client-key-data" not in run.all_text()  # its key went to the file only


@pytest.mark.timeout(120)
def test_03c_ctrl_c_during_wait_ready_returns_within_seconds(rec, lab3m):
    """wait-ready only reads: the first Ctrl-C stops it at once, and its loop ends on the node."""
    master = lab3m.nodes[0]
    inv = load(str(lab3m.inventory_path))
    intr = Interrupt(say=lambda text: None)
    runner = Runner(inv, Reporter(out=io.StringIO(), log_dir=None), RunOptions(),
                    run_info=RunInfo.new("init-master"), interrupt=intr)
    session = runner.session(inv.init_node)
    box: dict = {}
    polls = len(master.calls())

    def ghost_polls() -> int:
        return sum(c["cmd"] == "kubectl" and "ghost" in c["argv"]
                   for c in master.calls()[polls:])

    waiter = threading.Thread(target=lambda: box.update(res=wait_ready(
        runner, session, Target(inv, inv.init_node), ["ghost"], 300)))
    waiter.start()
    try:
        deadline = time.monotonic() + 60
        while ghost_polls() < 2:  # the remote loop is polling for a node that never comes
            assert time.monotonic() < deadline, "the wait never polled"
            time.sleep(0.1)
        pressed = time.monotonic()
        intr.press()
        waiter.join(30)
        stopped_after = time.monotonic() - pressed
    finally:
        session.close()
    assert not waiter.is_alive()
    assert stopped_after < 3, f"wait-ready took {stopped_after:.1f}s to stop"
    assert box["res"].status == "running", box["res"]
    assert "stopped waiting (Ctrl-C)" in box["res"].message
    deadline = time.monotonic() + 15
    while [cmd for _, cmd in master.processes() if "ghost" in cmd]:
        assert time.monotonic() < deadline, master.processes()
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_03b_join_dry_run_creates_no_token_and_changes_nothing(rec, lab3m):
    tokens = len(json.loads((lab3m.cluster_dir / "state.json").read_text())["tokens"])
    before = {n.name: len(n.calls()) for n in lab3m.nodes}
    run = rec("join-workers", dry_run=True)
    assert run.rc == 0, run.console
    assert f"token: {join_mod.PLACEHOLDER}" in run.console
    assert "would: kubeadm token create --ttl 15m" in run.console
    assert len(json.loads((lab3m.cluster_dir / "state.json").read_text())["tokens"]) == tokens
    for node in lab3m.nodes:
        assert cluster_changes(node, before[node.name]) == []


@pytest.mark.timeout(400)
def test_04_a_failing_worker_does_not_stop_the_others(rec, lab3m):
    master, node1, node2 = lab3m.nodes
    node2.inject_fail("kubeadm", "error execution phase preflight: injected failure")
    try:
        run = rec("join-workers")
    finally:
        node2.clear_fail("kubeadm")
    assert run.rc == 1, run.console
    assert statuses(run, "node1")["kubeadm-join"] == "changed"
    assert statuses(run, "node1")["wait-ready"] == "ok"
    assert statuses(run, "node2")["kubeadm-join"] == "failed"
    assert "injected failure" in message(run, "node2", "kubeadm-join")
    assert node_status(master) == {"master1": "Ready", "node1": "Ready"}
    assert not exists(node2, join_mod.JOIN_FILE) and not exists(node1, join_mod.JOIN_FILE)

    run = rec("join-workers")
    assert run.rc == 0, run.console
    assert statuses(run, "node1")["kubeadm-join"] == "ok"
    assert statuses(run, "node2")["kubeadm-join"] == "changed"
    assert node_status(master) == {"master1": "Ready", "node1": "Ready", "node2": "Ready"}
    assert "join-workers: joined node2; already in the cluster: node1" in run.console

    before = {n.name: len(n.calls()) for n in lab3m.nodes}
    again = rec("join-workers")
    assert again.rc == 0, again.console
    assert all(again.changed(n.name) == 0 for n in lab3m.nodes), again.console
    for node in lab3m.nodes:
        assert cluster_changes(node, before[node.name]) == []


@pytest.mark.timeout(400)
def test_05_an_expired_token_says_to_re_run(rec, lab3m, monkeypatch):
    master, _, node2 = lab3m.nodes
    run = rec("reset", limit="node2", yes=True)
    assert run.rc == 0, run.console
    assert statuses(run, "node2")["drain"] == "changed"
    assert "node2" not in node_status(master)

    create = join_mod.create_token

    def create_then_expire(data, session):
        token = create(data, session)
        path = lab3m.cluster_dir / "state.json"
        data = json.loads(path.read_text())
        for t in data["tokens"]:
            t["expires"] = time.time() - 1
        path.write_text(json.dumps(data))
        return token

    monkeypatch.setattr(join_mod, "create_token", create_then_expire)
    run = rec("join-workers")
    monkeypatch.undo()
    assert run.rc == 1, run.console
    msg = message(run, "node2", "kubeadm-join")
    assert "join token was refused" in msg and "re-run invoke join-workers" in msg
    assert not exists(node2, "/etc/kubernetes/kubelet.conf")
    run = rec("join-workers", limit="node2")
    assert run.rc == 0, run.console
    assert node_status(master)["node2"] == "Ready"


def api_tokens(lab) -> set[str]:
    """The bootstrap tokens the lab's API server holds."""
    return {t["token"] for t in json.loads((lab.cluster_dir / "state.json").read_text())
            ["tokens"]}


def join_interrupted(rec, lab, presses: int, before_release=None) -> tuple[object, set[str]]:
    """node2 reset, then join-workers with node2's kubeadm held by a hang injection, Ctrl-C
    pressed ``presses`` times once it hangs, ``before_release()`` (asserts while it still
    hangs), then released. Returns the run and the tokens the API server held before."""
    node2 = lab.nodes[2]
    assert rec("reset", limit="node2", yes=True).rc == 0
    tokens = api_tokens(lab)
    intr = Interrupt(say=lambda text: None)
    box: dict = {}
    node2.inject_hang("kubeadm")
    try:
        worker = threading.Thread(target=lambda: box.update(run=rec("join-workers",
                                                                    interrupt=intr)))
        worker.start()
        node2.wait_reached("kubeadm", timeout=120)
        assert exists(node2, join_mod.JOIN_FILE)  # the join is under way
        for _ in range(presses):
            intr.press()
        if before_release is not None:
            before_release(worker)
    finally:
        node2.release_hang("kubeadm")
    worker.join(120)
    assert not worker.is_alive()
    return box["run"], tokens


@pytest.mark.timeout(400)
def test_05b_ctrl_c_twice_during_join_deletes_the_token_and_the_join_file(rec, lab3m):
    """The join's kubeadm hangs on node2; Ctrl-C twice gives it up: the JoinConfiguration is
    removed from node2 and the token from the master all the same, and the run exits 130."""
    master, _, node2 = lab3m.nodes

    def given_up(worker) -> None:
        worker.join(60)
        assert not worker.is_alive(), "the second press stops waiting for the hung join"
        assert not exists(node2, join_mod.JOIN_FILE), "removed although kubeadm still runs"

    run, tokens = join_interrupted(rec, lab3m, 2, given_up)
    assert run.rc == 130, run.console
    assert "interrupted" in run.console and "RECAP (interrupted" in run.console
    assert statuses(run, "node2")["kubeadm-join"] == "running"
    assert statuses(run, "master1")["token-delete"] == "ok"
    assert api_tokens(lab3m) == tokens, "the join token is gone from the master"
    deadline = time.monotonic() + 20  # the released kubeadm finds no config and ends
    while [cmd for _, cmd in node2.processes() if "kubeadm" in cmd]:
        assert time.monotonic() < deadline, node2.processes()
        time.sleep(0.2)
    # a script of that run may still have been running: its lease on node2 stays until it
    # expires or its process is gone (here the process is this test's own) or is broken
    again = rec("join-workers", limit="node2")
    assert again.rc == 1
    assert "another run is changing this node" in again.report["hosts"]["node2"]["message"]
    again = rec("join-workers", limit="node2", break_lease=True)
    assert again.rc == 0, again.console
    assert node_status(master)["node2"] == "Ready"


@pytest.mark.timeout(400)
def test_05c_ctrl_c_once_during_join_lets_the_join_finish_and_deletes_the_token(rec, lab3m):
    """One press while node2's kubeadm join runs: the join script is atomic, so it finishes;
    nothing starts after it (wait-ready shows not-started), the token is deleted, exit 130."""
    master, _, node2 = lab3m.nodes

    def still_waiting(worker) -> None:
        worker.join(1)
        assert worker.is_alive(), "one press waits for the running join script"

    run, tokens = join_interrupted(rec, lab3m, 1, still_waiting)
    assert run.rc == 130, run.console
    assert statuses(run, "node2")["kubeadm-join"] == "changed"
    assert statuses(run, "node2")["wait-ready"] == "not-started"
    assert statuses(run, "master1")["token-delete"] == "ok"
    assert api_tokens(lab3m) == tokens, "the join token is gone from the master"
    assert exists(node2, "/etc/kubernetes/kubelet.conf")
    assert not exists(node2, join_mod.JOIN_FILE)
    again = rec("join-workers")  # the lease was released: nothing left to do
    assert again.rc == 0, again.console
    assert node_status(master)["node2"] == "Ready"


LEFT_BY_KUBEADM_RESET = ("cni0", "flannel.1", "kube-ipvs0")


@pytest.mark.timeout(400)
def test_06_reset_undoes_kubeadm_and_what_it_leaves(rec, lab3m):
    before_links = {n.name: sh(n, "ip -o link show").stdout for n in lab3m.nodes}
    before = {n.name: len(n.calls()) for n in lab3m.nodes}
    dry = rec("reset", dry_run=True)
    assert dry.rc == 0, dry.console
    assert "would: on master1: kubectl" in dry.console and "$ kubeadm reset -f" in dry.console
    for node in lab3m.nodes:
        assert cluster_changes(node, before[node.name]) == []
    run = rec("reset", yes=True)
    assert run.rc == 0, run.console
    for node in lab3m.nodes:
        for path in STATE_FILES:
            assert not exists(node, path), (node.name, path)
        rules = sh(node, "iptables-save").stdout
        assert "KUBE-" not in rules and "FLANNEL" not in rules and "10.244." not in rules
        assert ":INPUT ACCEPT" in rules or "*filter" not in rules
        assert sh(node, "ipvsadm -S -n").stdout.strip() == ""
        links = sh(node, "ip -o link show").stdout
        for name in LEFT_BY_KUBEADM_RESET:
            assert f" {name}:" not in links and f" {name}@" not in links, (node.name, name)
        for d in ("/etc/cni/net.d", "/var/lib/cni", "/run/flannel"):
            assert not exists(node, d), (node.name, d)
        assert not exists(node, f"{HOME}/.kube")
        # node preparation stays
        assert sh(node, "systemctl is-active docker").stdout.strip() == "active"
        assert sh(node, "systemctl is-enabled kubelet").stdout.strip() == "enabled"
        assert "br_netfilter" in sh(node, "lsmod").stdout
        assert sh(node, "cat /proc/swaps").stdout.count("\n") <= 1
    # what was there before, on the master at least: the cleanup really had work to do
    assert "cni0" in before_links["master1"] or "flannel.1" in before_links["master1"]
    assert sh(lab3m.nodes[0], f"ls -d {HOME}/.kube.k8s-bootstrap-*.bak").returncode == 0

    before = {n.name: len(n.calls()) for n in lab3m.nodes}
    again = rec("reset", yes=True)
    assert again.rc == 0, again.console
    assert all(again.changed(n.name) == 0 for n in lab3m.nodes), again.console
    for node in lab3m.nodes:
        assert cluster_changes(node, before[node.name]) == []


@pytest.mark.timeout(500)
def test_07_a_new_cluster_after_reset_with_a_stale_kubeconfig_in_the_way(rec, lab3m):
    master = lab3m.nodes[0]
    # the seed's x509 trap: the old cluster's kubeconfig put back where kubectl looks
    assert sh(master, f"cp -a $(ls -d {HOME}/.kube.k8s-bootstrap-*.bak | head -1) "
                      f"{HOME}/.kube").returncode == 0
    assert rec("prepare-nodes").rc == 0
    run = rec("init-master")
    assert run.rc == 0, run.console
    assert statuses(run, "master1")["kubeconfig"] == "changed"
    run = rec("join-workers")
    assert run.rc == 0, run.console
    got = sh(master, "kubectl get nodes --no-headers", user="lab")
    assert "x509" not in got.stderr and got.returncode == 0, got.stderr
    rows = [ln.split() for ln in got.stdout.splitlines() if not ln.startswith("NAME")]
    assert sorted(r[1] for r in rows) == ["Ready"] * 3, got.stdout
    assert sh(master, f"ls {HOME}/.kube/config.k8s-bootstrap-*.bak").returncode == 0


def test_08_the_token_is_written_nowhere(rec, lab3m):
    rec.collect_tokens()
    assert len(rec.tokens) >= 6  # init's own tokens (2) and a join token per join run (5)
    texts = rec.everything()
    calls = "\n".join(json.dumps(c) for n in lab3m.nodes for c in n.calls())
    assert "kubeadm" in calls and "join" in calls  # the call logs are really there
    for token in rec.tokens:
        assert token not in texts
        assert token not in calls
        assert token.split(".")[1] not in texts + calls  # not even the secret half
