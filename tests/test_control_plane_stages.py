"""init-master with several control planes (bootstrap/cluster/control_plane.py), pure: the fake
world of tests/test_stages.py. The init node uploads the certificates with a generated key that
is never printed; the others join one at a time, a failed one stops those after it; an upload
from an earlier run is made again with a new key; joined nodes are left alone."""

from __future__ import annotations

import pytest
import yaml
from test_stages import World, fake_world, prepared, runner, statuses

from bootstrap.cluster import control_plane as C
from bootstrap.cluster import init as I
from bootstrap.cluster.common import ADMIN_CONF, KUBELET_CONF, Account, account, present
from bootstrap.cluster.kubeadm_config import join_config
from bootstrap.inventory import load_text
from bootstrap.plan import FileState
from bootstrap.steps import Target

TEXT = ("nodes:\n"
        "  - {name: m1, address: 10.0.0.1, role: control-plane}\n"
        "  - {name: m2, address: 10.0.0.2, role: control-plane}\n"
        "  - {name: m3, address: 10.0.0.3, role: control-plane}\n"
        "  - {name: w1, address: 10.0.0.9, role: worker}\n")


@pytest.fixture
def world(monkeypatch) -> World:
    return fake_world(monkeypatch)


@pytest.fixture
def inv(monkeypatch):
    return load_text(TEXT)


def cluster(world: World, inv, initialised: bool, joined: tuple[str, ...] = ()) -> None:
    world.facts = prepared("m1", "m2", "m3")
    kube = {"admin-sha": "ab", "user-kubeconfig:root": (0o600, 0, 0, "ab")}
    for name in ("m1", "m2", "m3"):
        world.facts[name][account("root").name] = Account("root", "/root", 0, 0)
    for name in ("m1", *joined):
        world.facts[name].update(kube)
    if initialised:
        world.facts["m1"].update({present().name: {ADMIN_CONF, I.APISERVER},
                                  "ca-hash": "ab" * 32,
                                  C.ADMIN_SERVER.name: "https://apiserver.cluster.local:6443"})
    for name in joined:
        world.facts[name][present().name] = {KUBELET_CONF, ADMIN_CONF, I.APISERVER}
    done = {present().name: {KUBELET_CONF, ADMIN_CONF, I.APISERVER}, **kube}
    flannel = {"file:" + I.flannel.MANIFEST: FileState(I.flannel.manifest(inv)),
               I._ds_fact(Target(inv, inv.init_node)).name: "daemonset.apps/kube-flannel-ds"}
    world.effects = {"kubeadm-join": lambda node: done, "flannel": lambda node: flannel,
                     "kubeadm-init": lambda node: {
                         **done, "ca-hash": "ab" * 32,
                         C.ADMIN_SERVER.name: "https://apiserver.cluster.local:6443"}}
    if initialised:
        world.facts["m1"].update(flannel)


def keys(r) -> set[str]:
    """The certificate keys the run registered as secrets (64 hex digits)."""
    return {s for s in r.secrets._values if len(s) == 64 and set(s) <= set("0123456789abcdef")}


def test_a_new_cluster_uploads_at_init_then_joins_one_control_plane_at_a_time(world, inv):
    cluster(world, inv, initialised=False)
    r = runner(inv=inv)
    results = I.init_master(r, [], None, 60)
    assert world.on("m1")[0] == "gather" and "kubeadm-init" in world.on("m1")
    assert world.index("m1", "kubeadm-init") < world.index("m2", "kubeadm-join") \
        < world.index("m2", "kubeconfig") < world.index("m3", "kubeadm-join")
    assert "upload the certificates for the control planes" not in world.on("m1")
    for name in ("m2", "m3"):
        assert statuses(results, name) == {"preflight": "ok", "kubeadm-join": "changed",
                                           "kubeconfig": "changed", "wait-ready": "ok"}
    assert world.on("m1")[-2:] == ["wait until Ready", "delete the join token"]
    (key,) = keys(r)  # one key, never printed, never in a result
    assert key not in r.reporter.out.getvalue() and key not in repr(results)


def test_the_init_uploads_with_the_key_in_a_transient_file_only(world, inv):
    cluster(world, inv, initialised=False)
    t = Target(inv, inv.init_node)
    phase = next(p for p in I.init_phases([], "s", key="k" * 64) if p.name == "kubeadm-init")
    plan = phase.plan(t, {present().name: set()})
    script = plan.script()
    assert "kubeadm init --config /etc/kubernetes/k8s-bootstrap-init.yaml --skip-token-print " \
        "--upload-certs --skip-certificate-key-print" in script
    assert "trap 'rm -f /etc/kubernetes/k8s-bootstrap-init.yaml' EXIT" in script
    (write,) = plan.files()
    assert write.mode == 0o600 and yaml.safe_load_all(write.content)
    assert "certificateKey: " + "k" * 64 in write.content
    kept = I.init_config(inv)  # the kept config has no key
    assert "certificateKey" not in kept and "k" * 64 not in kept
    one = next(p for p in I.init_phases([], "s") if p.name == "kubeadm-init")
    assert "--upload-certs" not in one.plan(t, {present().name: set()}).script()


def test_a_failed_control_plane_join_stops_the_next_and_the_token_still_goes(world, inv):
    cluster(world, inv, initialised=True)
    world.fail = {("m2", "kubeadm-join")}
    results = I.init_master(runner(inv=inv), [], None, 60)
    assert statuses(results, "m2")["kubeadm-join"] == "failed"
    assert "kubeadm-join" not in world.on("m3")
    assert statuses(results, "m3")["kubeadm-join"] == "skipped"
    assert world.on("m1")[-1] == "delete the join token"


def test_an_earlier_cluster_uploads_again_with_a_new_key_before_the_joins(world, inv):
    cluster(world, inv, initialised=True, joined=("m2",))
    r = runner(inv=inv)
    results = I.init_master(r, [], None, 60)
    assert "kubeadm-init" not in world.on("m1")
    assert world.index("m1", "upload the certificates for the control planes") < \
        world.index("m3", "kubeadm-join")
    assert statuses(results, "m1")["upload-certs"] == "changed"
    assert world.on("m2") == ["gather"]  # joined: its phases find nothing to do
    assert len(keys(r)) == 2  # the unused one of this run, and the one uploaded
    assert not any(k in r.reporter.out.getvalue() for k in keys(r))


def test_every_control_plane_joined_needs_no_token_and_no_upload(world, inv):
    cluster(world, inv, initialised=True, joined=("m2", "m3"))
    I.init_master(runner(inv=inv), [], None, 60)
    assert "create a join token" not in world.on("m1")
    assert "upload the certificates for the control planes" not in world.on("m1")


def test_one_control_plane_generates_no_key_and_joins_nothing(world):
    from test_stages import INV

    r = runner()
    world.facts = prepared("m1")
    world.facts["m1"].update({present().name: {ADMIN_CONF, I.APISERVER}})
    I.init_master(r, [], None, 60)
    assert not keys(r)
    assert not any(n != "m1" for n, _ in world.events) and INV.load_balancer == "none"


def test_a_control_plane_s_join_config_has_its_endpoint_and_the_key(inv):
    m2 = inv.node("m2")
    doc = yaml.safe_load(join_config(inv, m2, "abcdef.0123456789abcdef", "sha256:x", "k" * 64))
    assert doc["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": "10.0.0.2",
                                                        "bindPort": 6443},
                                   "certificateKey": "k" * 64}
    assert doc["discovery"]["bootstrapToken"]["apiServerEndpoint"] == \
        "apiserver.cluster.local:6443"
    worker = yaml.safe_load(join_config(inv, inv.node("w1"), "abcdef.0123456789abcdef", "x"))
    assert "controlPlane" not in worker


def test_the_join_moves_the_endpoint_line_then_waits_for_the_api_server(inv):
    t = Target(inv, inv.node("m2"))
    phase = C.join_phase("abcdef.0123456789abcdef", "sha256:x", "k" * 64, [], False)
    block = "".join(f"10.0.0.{i} m{i}\n" for i in (1, 2, 3)) + "10.0.0.9 w1\n"
    hosts = FileState("127.0.0.1 localhost\n# BEGIN k8s-bootstrap managed block\n" + block
                      + "10.0.0.1 apiserver.cluster.local\n# END k8s-bootstrap managed block\n")
    plan = phase.plan(t, {present().name: set(), "file:/etc/hosts": hosts})
    script = plan.script()
    assert script.index("kubeadm join --config") < script.index("/etc/hosts") < \
        script.index("/readyz")
    assert [f.path for f in plan.files()] == ["/etc/kubernetes/kubeadm-join.yaml", "/etc/hosts"]
    assert "10.0.0.2 apiserver.cluster.local" in plan.files()[1].content
    # a node reset after it served still names itself: the line goes to the init node first
    stale = FileState(hosts.content.replace("10.0.0.1 apiserver", "10.0.0.2 apiserver"))
    plan = phase.plan(t, {present().name: set(), "file:/etc/hosts": stale})
    first, _, last = plan.files()
    assert first.path == last.path == "/etc/hosts"
    assert "10.0.0.1 apiserver.cluster.local" in first.content
    assert plan.script().index("/etc/hosts") < plan.script().index("kubeadm join --config")
    done = phase.plan(t, {present().name: {KUBELET_CONF}, "file:/etc/hosts": hosts})
    assert done.empty


def test_an_expired_upload_is_explained_with_the_fix():
    text = C.explain('error downloading the secret: Secret "kubeadm-certs" was not found in the '
                     '"kube-system" Namespace. This Secret might have expired.')
    assert text.startswith("the uploaded certificates or their key were refused")
    assert "re-run invoke init-master" in text


def test_a_dry_run_of_a_new_cluster_shows_every_join_and_changes_nothing(world, inv):
    cluster(world, inv, initialised=False)
    r = runner(dry_run=True, inv=inv)
    results = I.init_master(r, [], None, 60)
    assert {w for _, w in world.events} == {"gather"}
    assert statuses(results, "m2")["kubeadm-join"] == "changed"
    out = r.reporter.out.getvalue()
    assert not keys(r)  # a dry run generates no key
    assert "--upload-certs --skip-certificate-key-print" in out
    assert out.index("[m2] kubeadm-join") < out.index("[m3] kubeadm-join")


# -- removing a control plane (reset) -------------------------------------------------------------
def members_json(*names: str) -> str:
    import json

    return json.dumps({"header": {}, "members": [
        {"ID": int(n[1:]), "name": n, "peerURLs": [f"https://10.0.0.{n[1:]}:2380"],
         "clientURLs": [f"https://10.0.0.{n[1:]}:2379"]} for n in names]})


def health_json(up: dict[str, bool]) -> str:
    import json

    return json.dumps([{"endpoint": f"https://10.0.0.{n[1:]}:2379", "health": ok}
                       for n, ok in up.items()])


def etcd_world(world: World, inv, down: tuple[str, ...] = ()) -> None:
    cluster(world, inv, initialised=True, joined=("m2", "m3"))
    world.facts["m1"]["nodes"] = {"m1", "m2", "m3"}
    for name in ("m1", "m2", "m3"):
        world.facts[name]["kubeadm-path"] = "/usr/bin/kubeadm"
    left = ["m1", "m2", "m3"]
    world.outputs = {"list the etcd members": members_json(*left),
                     "read the etcd members' health": health_json(
                         {n: n not in down for n in left})}
    world.effects["kubeadm-reset"] = lambda node: {present().name: set()}

    def on_event(node: str, what: str) -> None:  # the member is gone once removed
        if what.startswith("remove ") and what.endswith("'s etcd member"):
            left.remove(what.split()[1].removesuffix("'s"))
            world.outputs["list the etcd members"] = members_json(*left)
            world.outputs["read the etcd members' health"] = health_json(
                {n: n not in down for n in left})

    world.on_event = on_event


def test_a_control_plane_leaves_drained_then_its_member_removed_then_reset(world, inv):
    from bootstrap.cluster import reset as R

    etcd_world(world, inv)
    results = R.reset(runner(inv=inv), [inv.node("m2")])
    assert world.index("m1", "drain m2") < world.index("m1", "remove m2's etcd member") < \
        world.index("m2", "kubeadm-reset")
    steps = statuses(results, "m2")
    assert (steps["drain"], steps["etcd-member"], steps["kubeadm-reset"]) == (
        "changed", "changed", "changed")
    message = next(s.message for s in results["m2"].steps if s.name == "etcd-member")
    assert message == "removed member 2; 2 left, 2 healthy"
    assert "m3" not in {n for n, _ in world.events}


def test_a_removal_that_would_lose_the_quorum_is_refused_before_any_change(world, inv):
    from bootstrap.cluster import reset as R

    etcd_world(world, inv, down=("m3",))
    results = R.reset(runner(inv=inv), [inv.node("m2")])
    assert "reset refused: removing m2 leaves 1 healthy of 2 members, and etcd needs 2 " \
           "(unhealthy: m3)" in results["m1"].message
    assert "--allow-quorum-loss" in results["m1"].message
    done = [w for _, w in world.events if w not in ("gather", "list the etcd members",
                                                    "read the etcd members' health")]
    assert done == []  # no drain, no removal, no reset
    assert results["m2"].message.startswith("not run: reset refused")


def test_allow_quorum_loss_removes_it_anyway_and_says_so(world, inv):
    from bootstrap.cluster import reset as R
    from bootstrap.engine import RunOptions

    etcd_world(world, inv, down=("m3",))
    r = runner(inv=inv)
    r.opts = RunOptions(allow_quorum_loss=True)
    results = R.reset(r, [inv.node("m2")])
    assert statuses(results, "m2")["etcd-member"] == "changed"
    assert "reset: --allow-quorum-loss: removing m2 leaves 1 healthy" in \
        r.reporter.out.getvalue()


def test_a_dead_control_plane_is_deleted_and_its_member_removed_without_contacting_it(world,
                                                                                      inv):
    from bootstrap.cluster import reset as R
    from bootstrap.engine import RunOptions

    etcd_world(world, inv, down=("m3",))
    world.unreachable = {"m3"}
    r = runner(inv=inv)
    r.opts = RunOptions(dead=frozenset({"m3"}))
    results = R.reset(r, [inv.node("m3")])
    assert world.on("m3") == []
    assert "delete node m3" in world.on("m1") and "drain m3" not in world.on("m1")
    assert statuses(results, "m3") == {"drain": "changed", "etcd-member": "changed"}
    assert next(s.message for s in results["m3"].steps if s.name == "etcd-member") == \
        "removed member 3; 2 left, 2 healthy"


@pytest.mark.parametrize("limit, extra, says", [
    ("m1", {}, "m1 is the init node (the first control plane listed)"),
    ("m2,m3", {}, "reset removes one control plane at a time"),
    ("", {"dead": True}, "--dead needs --limit"),
    ("m1,m2,m3", {"dead": True}, "--dead with every control plane"),
])
def test_removals_the_toolkit_refuses_before_connecting(inv, tmp_path, limit, extra, says):
    from bootstrap import commands
    from bootstrap.errors import UsageError

    path = tmp_path / "inventory.yaml"
    path.write_text(TEXT)
    with pytest.raises(UsageError) as err:
        commands.reset(commands.CommonOptions(inventory=str(path), limit=limit or None, yes=True,
                                              log_dir=None, **extra))
    assert says in str(err.value)


def test_a_cluster_built_without_an_endpoint_cannot_gain_control_planes(world, inv):
    cluster(world, inv, initialised=True)
    world.facts["m1"][C.ADMIN_SERVER.name] = "https://10.0.0.1:6443"  # the init node's own
    results = I.init_master(runner(inv=inv), [], None, 60)
    assert "the cluster was built without a control-plane endpoint" in results["m1"].message
    assert "Rebuild it with the endpoint set" in results["m1"].message
    assert not [w for n, w in world.events if n != "m1" and w != "gather"]
    assert "create a join token" not in world.on("m1")


@pytest.mark.parametrize("server, says", [
    ("https://apiserver.cluster.local:6443", ""),
    (None, ""),  # not initialised yet (a dry run)
    ("https://10.0.0.1:6443", "the cluster was built without a control-plane endpoint"),
    ("https://lb.example.com:6443", "the cluster's endpoint is https://lb.example.com:6443"),
])
def test_the_baked_endpoint_must_be_the_inventory_s(inv, server, says):
    problem = C.baked_problem(inv, server)
    assert problem.startswith(says) if says else problem == ""


def test_a_member_that_could_not_be_removed_keeps_its_node_from_being_reset(world, inv):
    from bootstrap.cluster import reset as R

    etcd_world(world, inv)
    world.fail = {("m1", "remove m2's etcd member")}
    results = R.reset(runner(inv=inv), [inv.node("m2")])
    assert statuses(results, "m2")["etcd-member"] == "failed"
    assert "kubeadm-reset" not in world.on("m2")
