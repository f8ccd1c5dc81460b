"""Stacked etcd as reset and verify read it (bootstrap/cluster/etcd.py): etcdctl's JSON (the
samples are what Debian's etcdctl 3.4 printed against a real etcd, an added member not yet
started included), and whether a removal keeps the quorum, one member at a time."""

from __future__ import annotations

import shlex

import pytest

from bootstrap.cluster import etcd as E
from bootstrap.inventory import load_text

LIST = ('{"header":{"cluster_id":15118495548433857066,"member_id":13668033151171901709,'
        '"raft_term":2},"members":[{"ID":7120136481990913050,"peerURLs":["https://10.0.0.3:2380"'
        ']},{"ID":13668033151171901709,"name":"m1","peerURLs":["https://10.0.0.1:2380"],'
        '"clientURLs":["https://10.0.0.1:2379"]}]}\n')
HEALTH = ('[{"endpoint":"https://10.0.0.2:2379","health":false,"took":"2.000648096s","error":'
          '"context deadline exceeded"},{"endpoint":"https://10.0.0.1:2379","health":true,'
          '"took":"1.2ms"}]\n')


@pytest.fixture
def inv(monkeypatch):
    return load_text("nodes:\n" + "".join(
        f"  - {{name: m{i}, address: 10.0.0.{i}, role: control-plane}}\n" for i in (1, 2, 3)))


def member(i: int, name: str | None = None) -> E.Member:
    return E.Member(f"{i:x}", f"m{i}" if name is None else name,
                    (f"https://10.0.0.{i}:2379",), (f"https://10.0.0.{i}:2380",))


def test_member_list_ids_become_hex_and_an_unstarted_member_has_no_name():
    found = E.parse_members(LIST)
    assert found == [
        E.Member("62cfce68015e2c1a", "", (), ("https://10.0.0.3:2380",)),
        E.Member("bdae9bbc11dd390d", "m1", ("https://10.0.0.1:2379",),
                 ("https://10.0.0.1:2380",))]
    assert E.parse_health(HEALTH) == {"https://10.0.0.2:2379": False,
                                      "https://10.0.0.1:2379": True}
    assert E.parse_health("Error: unhealthy cluster\n") == {}


def test_a_node_s_member_by_name_or_else_by_its_peer_url(inv):
    found = E.parse_members(LIST)
    assert E.member_of(inv.node("m1"), found).name == "m1"
    assert E.member_of(inv.node("m3"), found).id == "62cfce68015e2c1a"  # added, never started
    assert E.member_of(inv.node("m2"), found) is None


def test_etcdctl_runs_in_the_survivor_s_etcd_pod_against_its_own_member(inv):
    m2 = inv.node("m2")
    words = shlex.split(E.members_command(m2))
    assert words[words.index("exec") + 1] == "etcd-m2"
    assert "--endpoints=https://10.0.0.2:2379" in words
    assert words[-4:] == ["member", "list", "-w", "json"]
    remove = E.remove_command(m2, member(3))
    assert "exec etcd-m2 -- etcdctl" in remove and " member remove 3 " in remove
    assert "*'unhealthy cluster'*" in remove  # retried while etcd refuses reconfiguration
    assert "--endpoints=https://10.0.0.1:2379,https://10.0.0.2:2379" in \
        E.health_command(m2, [member(1), member(2)])
    assert E.survivor(inv, [inv.node("m1")]) == m2 and E.survivor(inv, list(inv.nodes)) is None


@pytest.mark.parametrize("count, healthy, removing, problem", [
    (3, {1, 2, 3}, [3], ""),
    (3, {1, 2}, [3], ""),                       # the dead one goes: 2 of 2 left
    (3, {1, 3}, [3], "removing m3 leaves 1 healthy of 2 members, and etcd needs 2 "
                     "(unhealthy: m2)"),
    (3, {1}, [3], "etcd has no quorum now: 1 of 3 members are healthy and it needs 2"),
    (5, {1, 2, 3, 4, 5}, [4, 5], ""),
    (5, {1, 2, 3, 4}, [4, 5], ""),              # 3 of 4, then 3 of 3
    (5, {1, 2, 5}, [5], "removing m5 leaves 2 healthy of 4 members, and etcd needs 3 "
                        "(unhealthy: m3, m4)"),
    (2, {1, 2}, [2], ""),
])
def test_a_removal_must_keep_a_healthy_majority_before_and_after_each_member(count, healthy,
                                                                              removing, problem):
    members = [member(i) for i in range(1, count + 1)]
    text = E.removal_problem(members, {f"{i:x}" for i in healthy}, [member(i) for i in removing])
    assert text.startswith(problem) if problem else text == ""
