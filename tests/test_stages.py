"""Stages across nodes (bootstrap/stages.py) and the stage lists of init-master, join-workers and
reset, pure: the engine's Runner on a fake world of nodes (facts per node, what each phase changes,
scripts that fail), which records what ran on which node, in which order."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bootstrap import checks, runtimes
from bootstrap import facts as F
from bootstrap import stages as S
from bootstrap.cluster import init as I
from bootstrap.cluster import join as J
from bootstrap.cluster import reset as R
from bootstrap.cluster.common import (
    ADMIN_CONF,
    KUBELET_CONF,
    Account,
    account,
    packages,
    present,
)
from bootstrap.engine import Preflight, Runner, RunOptions
from bootstrap.errors import CommandError, ConnectError
from bootstrap.inventory import load_text
from bootstrap.plan import FileState, Plan
from bootstrap.report import Reporter
from bootstrap.runinfo import RunInfo
from bootstrap.ssh import Result
from bootstrap.workflow import Phase, Target

INV = load_text(
    "nodes:\n"
    "  - {name: m1, address: 10.0.0.1, role: master}\n"
    "  - {name: w1, address: 10.0.0.2, role: worker}\n"
    "  - {name: w2, address: 10.0.0.3, role: worker}\n"
    "  - {name: w3, address: 10.0.0.4, role: worker}\n"
    "  - {name: w4, address: 10.0.0.5, role: worker}\n"
)
M1, W1, W2, W3, W4 = INV.nodes
TOKEN = "abcdef.0123456789abcdef"
RUNTIME = F.unit(runtimes.of(INV).unit)


@dataclass
class World:
    """Fact values per node (unset: what the fact reads where nothing is there), what applying a
    phase changes (``effects[phase](node)`` -> facts), the scripts that fail, and every event."""

    facts: dict[str, dict[str, object]] = field(default_factory=dict)
    effects: dict[str, Callable[[str], dict[str, object]]] = field(default_factory=dict)
    fail: set[tuple[str, str]] = field(default_factory=set)
    events: list[tuple[str, str]] = field(default_factory=list)
    unreachable: set[str] = field(default_factory=set)
    outputs: dict[str, str] = field(default_factory=dict)  # a command's stdout, by label
    on_event: Callable[[str, str], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, node: str, what: str) -> None:
        with self.lock:
            self.events.append((node, what))
        if self.on_event:
            self.on_event(node, what)

    def on(self, node: str) -> list[str]:
        return [w for n, w in self.events if n == node]

    def index(self, node: str, what: str) -> int:
        return self.events.index((node, what))


class FakeSession:
    def __init__(self, world: World, name: str) -> None:
        self.world, self.name, self.lease = world, name, None

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def journal_entry(self, *args) -> str:
        return ""

    def run(self, script: str, *, what: str, check: bool = False, **kw) -> Result:
        label = what.split(" (")[0].removeprefix("phase ").removeprefix("step ")
        self.world.event(self.name, label)
        if (self.name, label) in self.world.fail:
            if check:
                raise CommandError(self.name, what, 1, f"error: {label} broke\n")
            return Result(1, "", f"error: {label} broke\n", 0.0)
        effect = self.world.effects.get(label)
        if effect:
            self.world.facts.setdefault(self.name, {}).update(effect(self.name))
        out = TOKEN + "\n" if label == "create a join token" else self.world.outputs.get(label, "")
        return Result(0, out, "", 0.0)


@pytest.fixture
def world(monkeypatch) -> World:
    return fake_world(monkeypatch)


def fake_world(monkeypatch) -> World:
    """A World whose nodes the engine's Runner reaches instead of real ones."""
    w = World()

    def session(self, node):
        return FakeSession(w, node.name)

    def gather(self, session, facts, last=False, timing=None):
        w.event(session.name, "gather")
        if session.name in w.unreachable:
            raise ConnectError(session.name, "connection refused")
        if timing is not None:
            timing.append(Result(0, "", "", 0.0))
        have = w.facts.get(session.name, {})
        return {f.name: have[f.name] if f.name in have else f.parse("", 1) for f in facts}

    monkeypatch.setattr(Runner, "session", session)
    monkeypatch.setattr(Runner, "gather", gather)
    return w


def runner(dry_run: bool = False, skip: frozenset[str] = frozenset(), parallel: int = 4,
           inv=INV) -> Runner:
    return Runner(inv, Reporter(out=io.StringIO()),
                  RunOptions(dry_run=dry_run, parallel=parallel, skip=skip),
                  run_info=RunInfo.new("test", changes=False))


def statuses(results, name: str) -> dict[str, str]:
    return {s.name: s.status for s in results[name].steps}


# -- the stage runner, with phases of its own ----------------------------------------------------
def touch(name: str) -> Phase:
    """A phase that creates ``/name`` on a node where it is missing."""
    fact = present((f"/{name}",))

    def plan(t: Target, facts) -> Plan:
        p = Plan()
        if not facts[fact.name]:
            p.run(f"touch /{name}", name)
        return p

    return Phase(name, name, lambda t: [fact], plan)


def done(name: str) -> Callable[[str], dict[str, object]]:
    return lambda node: {present((f"/{name}",)).name: {f"/{name}"}}


def stage(order: str, *names: str, batch: int = 1, nodes=None) -> S.Stage:
    phases = [touch(n) for n in names]
    return S.Stage("work", nodes or (lambda d: d.targets), phases=lambda t, d: phases,
                   order=order, batch=batch, names=names)


def test_parallel_runs_every_node_and_one_failure_stops_only_that_node(world):
    world.effects = {"a": done("a"), "b": done("b")}
    world.fail = {("w2", "a")}
    results = S.run_stages(runner(), [stage(S.PARALLEL, "a", "b")],
                           S.Data(runner(), [M1, W1, W2, W3]))
    assert list(results) == ["m1", "w1", "w2", "w3"]
    for name in ("m1", "w1", "w3"):
        assert world.on(name) == ["gather", "a", "b", "gather"]  # the last: the convergence check
        assert results[name].status == "changed"
    assert statuses(results, "w2") == {"a": "failed", "b": "skipped"}
    assert world.on("w2") == ["gather", "a"]


def slow(node: str, what: str) -> None:
    """Each apply takes a while, so nodes run side by side would interleave their events."""
    if what != "gather":
        time.sleep(0.05)


def test_serial_gathers_each_node_after_the_one_before_it_is_done(world):
    world.effects = {"a": done("a")}
    world.on_event = slow
    S.run_stages(runner(), [stage(S.SERIAL, "a")], S.Data(runner(), [W1, W2, W3]))
    assert world.events == [(n, e) for n in ("w1", "w2", "w3") for e in ("gather", "a", "gather")]


def test_init_first_finishes_the_init_node_before_any_other_starts(world):
    world.effects = {"a": done("a")}
    world.on_event = slow
    S.run_stages(runner(), [stage(S.INIT_FIRST, "a")], S.Data(runner(), [W1, M1, W2]))
    first = [n for n, _ in world.events[:3]]
    assert first == ["m1", "m1", "m1"]
    assert {n for n, _ in world.events[3:]} == {"w1", "w2"}


def test_batches_run_in_order_and_a_failed_batch_stops_the_ones_after_it(world):
    world.effects = {"a": done("a")}
    world.fail = {("w2", "a")}
    results = S.run_stages(runner(), [stage(S.BATCHES, "a", batch=2)],
                           S.Data(runner(), [W1, W2, W3, W4]))
    assert {n for n, _ in world.events} == {"w1", "w2"}
    assert statuses(results, "w1") == {"a": "changed"}
    assert statuses(results, "w3") == {"a": "skipped"}
    assert results["w4"].steps[0].message == "not run: a batch before it failed"
    world.fail, world.events[:] = set(), []
    S.run_stages(runner(), [stage(S.BATCHES, "a", batch=2)], S.Data(runner(), [W1, W2, W3, W4]))
    assert [n for n, e in world.events if e == "a"] == ["w2", "w3", "w4"]  # w1 was done


def test_a_failed_init_node_action_stops_the_stages_after_it_but_not_cleanups(world):
    def boom(data, session, nodes):
        raise CommandError("m1", "boom", 1, "")

    def cleanup(data, session, nodes):
        world.event(session.name, "cleanup")

    stages = [S.Stage("boom", lambda d: [M1], action=boom, on=S.INIT, once=True),
              stage(S.PARALLEL, "a"),
              S.Stage("tidy", lambda d: [M1], action=cleanup, on=S.INIT, once=True,
                      cleanup=True)]
    results = S.run_stages(runner(), stages, S.Data(runner(), [W1, W2]))
    assert world.events == [("m1", "cleanup")]
    assert results["m1"].status == "failed"
    assert results["w1"].status == "failed" and results["w1"].message.startswith("not run: ")


def test_ctrl_c_starts_no_stage_after_it_and_says_so(world):
    r = runner()
    world.effects = {"a": done("a")}
    world.on_event = lambda node, what: r.interrupt.press() if what == "a" else None
    results = S.run_stages(r, [stage(S.SERIAL, "a"),
                               S.Stage("wait-ready", lambda d: d.targets, action=lambda *a: None,
                                       on=S.INIT, once=True, names=("wait-ready",))],
                           S.Data(r, [W1, W2]))
    assert statuses(results, "w1") == {"a": "changed", "wait-ready": "not-started"}
    assert statuses(results, "w2") == {"a": "not-started", "wait-ready": "not-started"}
    assert results["w2"].status == "interrupted"


def test_a_bug_in_a_phase_fails_only_its_node(world):
    def broken(t, facts):
        if t.node.name == "w1":
            raise RuntimeError("a bug")
        return Plan()

    bug = Phase("bug", "bug", lambda t: [], broken)
    results = S.run_stages(runner(), [S.Stage("x", lambda d: d.targets,
                                              phases=lambda t, d: [bug], names=("bug",))],
                           S.Data(runner(), [W1, W2]))
    assert results["w1"].status == "failed" and "internal error" in results["w1"].message
    assert results["w2"].status == "ok"


def test_a_skipped_action_stage_shows_as_skipped_on_its_nodes(world):
    results = S.run_stages(runner(skip=frozenset({"wait-ready"})), [
        S.Stage("wait-ready", lambda d: d.targets, action=lambda *a: pytest.fail("ran"),
                on=S.INIT, once=True, names=("wait-ready",))], S.Data(runner(), [W1]))
    assert results["w1"].steps[0].status == "skipped"
    assert results["w1"].steps[0].message == "--skip-phases"


def test_a_secret_value_is_masked_in_what_is_printed():
    r = runner()
    data = S.Data(r, [W1])
    data.set("token", TOKEN, secret=True)
    assert data["token"] == TOKEN
    assert TOKEN not in r.secrets.mask(f"token {TOKEN} here")


# -- the commands' stage lists -------------------------------------------------------------------
def prepared(*names: str) -> dict[str, dict[str, object]]:
    """Nodes prepare-nodes has prepared (the packages at the inventory's version, docker up)."""
    rpms = {p: f"{INV.cluster.kubernetes_version}-0" for p in ("kubeadm", "kubelet", "kubectl")}
    unit = {"exists": True, "enabled": True, "active": True}
    return {n: {packages().name: rpms, RUNTIME.name: unit} for n in names}


def with_cluster(world: World, joined: tuple[str, ...] = ()) -> None:
    world.facts = prepared("m1", "w1", "w2", "w3")
    world.facts["m1"].update({present().name: {ADMIN_CONF, I.APISERVER}, "ca-hash": "ab" * 32})
    for name in joined:
        world.facts[name][present().name] = {KUBELET_CONF}
    world.effects = {"kubeadm-join": lambda node: {present().name: {KUBELET_CONF}}}


def test_the_fact_names_the_fake_world_sets_are_the_real_ones():
    t = Target(INV, W1)
    names = {f.name for p in J._worker_phases([])(t, S.Data(runner(), [W1])) for f in p.facts(t)}
    assert {packages().name, RUNTIME.name, present().name} <= names
    assert J.CA_HASH.name == "ca-hash"


def test_join_workers_token_then_joins_then_wait_then_token_deleted(world):
    with_cluster(world, joined=("w1",))
    results = J.join_workers(runner(), [W1, W2, W3], [], 60)
    assert list(results) == ["m1", "w1", "w2", "w3"]
    assert world.on("m1") == ["gather", "create a join token", "wait until Ready",
                              "delete the join token"]
    assert world.on("w1") == ["gather"]  # joined already: nothing runs there
    for name in ("w2", "w3"):
        assert world.on(name) == ["gather", "kubeadm-join", "gather"]
        assert world.index("m1", "create a join token") < world.index(name, "kubeadm-join")
        assert world.index(name, "kubeadm-join") < world.index("m1", "wait until Ready")
        assert statuses(results, name) == {"preflight": "ok", "kubeadm-join": "changed",
                                           "kubectl": "ok", "wait-ready": "ok"}
    assert statuses(results, "m1") == {"join-token": "changed", "token-delete": "ok"}
    assert TOKEN not in repr(results)


def test_join_workers_with_every_worker_joined_creates_no_token(world):
    with_cluster(world, joined=("w1", "w2"))
    results = J.join_workers(runner(), [W1, W2], [], 60)
    assert world.on("m1") == ["gather", "wait until Ready"]
    assert statuses(results, "w1") == {"preflight": "ok", "kubeadm-join": "ok", "kubectl": "ok",
                                       "wait-ready": "ok"}


def test_join_workers_on_an_uninitialised_init_node_touches_no_worker(world):
    world.facts = prepared("m1", "w1")
    results = J.join_workers(runner(), [W1], [], 60)
    assert world.events == [("m1", "gather")]
    assert "not initialised" in results["m1"].message
    assert results["w1"].message.startswith("not run: ")


def test_join_workers_one_failed_join_does_not_stop_the_others_and_the_token_goes(world):
    with_cluster(world)
    world.fail = {("w2", "kubeadm-join")}
    results = J.join_workers(runner(), [W1, W2], [], 60)
    assert statuses(results, "w2")["kubeadm-join"] == "failed"
    assert "wait-ready" not in statuses(results, "w2")
    assert statuses(results, "w1")["wait-ready"] == "ok"
    assert world.events[-1] == ("m1", "delete the join token")


def test_join_workers_dry_run_changes_nothing_and_creates_no_token(world):
    with_cluster(world)
    results = J.join_workers(runner(dry_run=True), [W1], [], 60)
    assert {w for _, w in world.events} == {"gather"}
    assert statuses(results, "m1") == {"join-token": "changed"}
    assert statuses(results, "w1") == {"preflight": "ok", "kubeadm-join": "changed",
                                       "kubectl": "ok", "wait-ready": "skipped"}


def test_reset_drains_workers_one_by_one_on_the_init_node_then_resets_every_target(world):
    etcd = {"etcd-data": "member", present().name: {ADMIN_CONF, I.APISERVER},
            "kubeadm-path": "/bin/kubeadm"}
    world.facts = {"m1": {**etcd, "nodes": {"m1", "w1", "w2"}},
                   "w1": {present().name: {KUBELET_CONF}, "kubeadm-path": "/bin/kubeadm"}}
    world.effects = {"kubeadm-reset": lambda node: {present().name: set(), "etcd-data": ""}}
    results = R.reset(runner(), [M1, W1, W2])
    drains = [w for n, w in world.events if w.startswith("drain")]
    assert drains == ["drain w1", "drain w2"]
    assert world.on("m1")[:3] == ["gather", "drain w1", "drain w2"]
    assert world.index("m1", "drain w2") < world.index("w1", "gather")
    assert statuses(results, "w1")["drain"] == "changed"
    assert statuses(results, "w1")["kubeadm-reset"] == "changed"
    assert statuses(results, "w2")["kubeadm-reset"] == "ok"  # nothing of kubeadm there
    assert "drain" not in statuses(results, "m1")  # the init node is not drained
    assert statuses(results, "m1")["kubeadm-reset"] == "changed"


def test_reset_of_a_worker_whose_drain_failed_still_resets_it(world):
    world.facts = {"m1": {present().name: {ADMIN_CONF, I.APISERVER}, "nodes": {"w1"}},
                   "w1": {present().name: {KUBELET_CONF}, "kubeadm-path": "/bin/kubeadm"}}
    world.effects = {"kubeadm-reset": lambda node: {present().name: set()}}
    world.fail = {("m1", "drain w1")}
    results = R.reset(runner(), [W1])
    assert statuses(results, "w1")["drain"] == "failed"
    assert statuses(results, "w1")["kubeadm-reset"] == "changed"
    assert list(results) == ["w1"]  # the init node only drained: not in the recap


def test_init_master_runs_on_the_init_node_only_and_waits_after_its_phases(world):
    world.facts = prepared("m1")
    world.facts["m1"].update({present().name: {ADMIN_CONF, I.APISERVER},
                              account("root").name: Account("root", "/root", 0, 0),
                              "admin-sha": "ab", "user-kubeconfig:root": (0o600, 0, 0, "ab")})
    world.fail = {("m1", "flannel")}
    results = I.init_master(runner(), [], None, 60)
    assert list(results) == ["m1"]
    assert statuses(results, "m1")["flannel"] == "failed"
    assert "wait-ready" not in statuses(results, "m1")  # not after a failed phase
    assert world.on("m1") == ["gather", "flannel"]  # and nothing after the failed phase
    world.fail = set()
    world.effects = {"flannel": lambda node: {
        "file:" + I.flannel.MANIFEST: FileState(I.flannel.manifest(INV)),
        I._ds_fact(Target(INV, M1)).name: "daemonset.apps/kube-flannel-ds"}}
    world.events.clear()
    results = I.init_master(runner(), [], None, 60)
    assert world.on("m1") == ["gather", "flannel", "gather", "wait until Ready"]
    assert statuses(results, "m1")["wait-ready"] == "ok"
    assert statuses(results, "m1")["kubeconfig"] == "ok"


def test_prepare_nodes_gathers_every_node_then_applies_only_where_something_is_missing(world):
    world.effects = {"a": done("a")}
    world.facts = {"w2": done("a")("w2")}
    results = runner().run([W1, W2, W3], [touch("a")], Preflight(ignore={"all"}))
    first = world.events[:3]
    assert sorted(n for n, _ in first) == ["w1", "w2", "w3"] and {e for _, e in first} == {
        "gather"}  # every node's facts before any change, for preflight across them
    assert world.on("w2") == ["gather"]
    assert world.on("w1") == ["gather", "a", "gather"]
    assert [results[n].status for n in ("w1", "w2", "w3")] == ["changed", "ok", "changed"]


def test_prepare_nodes_preflight_error_changes_nothing_on_any_node(world):
    world.effects = {"a": done("a")}
    results = runner().run([W1, W2], [touch("a")], Preflight())  # no OS facts: errors
    assert {e for _, e in world.events} == {"gather"}
    assert {r.message for r in results.values()} == {"not run: preflight failed"}


def test_prepare_nodes_an_unreachable_node_is_a_preflight_error_for_every_node(world):
    world.effects = {"a": done("a")}
    world.unreachable = {"w2"}
    r = runner()
    others = set(checks.NAMES) - {"SSHReachable"}
    assert r.run([W1], [touch("a")], Preflight(ignore=others))["w1"].status == "changed"
    world.events.clear()
    world.facts.clear()  # w1's "a" undone: only preflight stands between w1 and a change
    results = r.run([W1, W2], [touch("a")], Preflight(ignore=others))
    assert world.on("w1") == ["gather"]
    assert results["w2"].status == "failed" and "connection refused" in results["w2"].message
    assert "[ERROR SSHReachable]" in r.reporter.out.getvalue()


def test_check_runs_no_step(world):
    results = runner().run([W1, W2], [], Preflight(ignore={"all"}))
    assert world.events and {e for _, e in world.events} == {"gather"}
    assert {r.status for r in results.values()} == {"ok"}


def test_verify_reads_every_host_once_and_judges_each_read_only_check_in_order(world):
    from bootstrap import verify as V

    world.unreachable = {"w2"}
    world.facts = {"m1": {"kube-proxy-config": {"data": {"config.conf": "mode: ipvs"}}}}
    checks = V.select(None, None)
    outcomes = V.run(runner(), INV, checks, [], [], [], 10, keep=False)
    assert sorted(n for n, _ in world.events) == sorted(n.name for n in INV.nodes)
    assert [o.check for o in outcomes] == [c.name for c in checks]
    proxy = next(o for o in outcomes if o.check == "ProxyMode")
    assert not proxy.ok and "w2 unreachable" in proxy.observed


# -- kubectl on the workers (cluster.kubectl_on_workers) ----------------------------------------
KUBECONFIG = ("apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n"
              "    client-key-data: S3CR3TKEYDATA\n")


def kubectl_world(world: World, mode: str, markers: dict[str, tuple[str, str]]):
    """A cluster with w1, w2 joined; ``markers``: node -> (what the toolkit installed, sha)."""
    inv = load_text(f"cluster: {{kubectl_on_workers: {mode}}}\n" + "nodes:\n" + "".join(
        f"  - {{name: {n.name}, address: {n.address}, role: {n.role}}}\n" for n in INV.nodes))
    with_cluster(world, joined=("w1", "w2"))
    world.facts["m1"]["admin-conf-sha"] = "adminsha"
    for name, (marker, sha) in markers.items():
        world.facts[name]["worker-kubectl:root"] = ("/root", "root", marker, sha)
    for name in ("w1", "w2"):
        world.facts[name].setdefault("worker-kubectl:root", ("/root", "root", "-", "-"))
    world.outputs = {f"kubectl_on_workers {mode}: credentials": KUBECONFIG}
    after = ("/root", "root", "-", "-") if mode == "none" else ("/root", "root", mode, "adminsha")
    world.effects["kubectl"] = lambda node: {"worker-kubectl:root": after}
    return inv


def test_admin_kubeconfig_is_read_once_and_written_only_where_it_differs(world):
    inv = kubectl_world(world, "admin", {"w2": ("admin", "adminsha")})
    r = runner(inv=inv)
    results = J.join_workers(r, [inv.node("w1"), inv.node("w2")], [], 60)
    assert world.on("m1").count("kubectl_on_workers admin: credentials") == 1
    assert "kubectl" in world.on("w1") and "kubectl" not in world.on("w2")
    assert statuses(results, "w1")["kubectl"] == "changed"
    assert "cluster-admin credentials" in message_of(results, "w1", "kubectl")
    assert statuses(results, "w2")["kubectl"] == "ok"
    assert "S3CR3TKEYDATA" not in r.reporter.out.getvalue() + repr(results)


def test_view_kubeconfig_installed_everywhere_issues_nothing(world):
    inv = kubectl_world(world, "view", {"w1": ("view", "x"), "w2": ("view", "y")})
    results = J.join_workers(runner(inv=inv), [inv.node("w1"), inv.node("w2")], [], 60)
    assert not any("credentials" in e for _, e in world.events)
    assert {statuses(results, n)["kubectl"] for n in ("w1", "w2")} == {"ok"}


def test_none_removes_only_what_an_earlier_run_installed(world):
    inv = kubectl_world(world, "none", {"w1": ("view", "x")})
    results = J.join_workers(runner(inv=inv), [inv.node("w1"), inv.node("w2")], [], 60)
    assert not any("credentials" in e for _, e in world.events)
    assert statuses(results, "w1")["kubectl"] == "changed" and "kubectl" in world.on("w1")
    assert statuses(results, "w2")["kubectl"] == "ok" and "kubectl" not in world.on("w2")


def test_view_needs_kubeadm_1_20():
    from bootstrap.errors import InventoryError

    with pytest.raises(InventoryError) as err:
        load_text("cluster: {kubectl_on_workers: view, kubernetes_version: 1.19.16}\n"
                  "nodes: [{name: m1, address: 10.0.0.1, role: master}]\n")
    assert "use admin" in str(err.value.problems)


def message_of(results, name: str, step: str) -> str:
    return next(s.message for s in results[name].steps if s.name == step)
