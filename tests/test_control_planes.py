"""Control-plane nodes and the API endpoint in the inventory (issue "HA control planes, part 1"):
the roles, 1, 3, 5 or 7 control planes (etcd's quorum), and ``cluster.load_balancer``'s kinds
with their endpoints; every bad combination is an error naming the field."""

from __future__ import annotations

import pytest

from bootstrap.errors import InventoryError
from bootstrap.inventory import load_text


def inventory(planes: int, workers: int = 1, cluster: str = "", role: str = "control-plane"):
    lines = [f"cluster: {{kubernetes_version: '1.30.1'{cluster}}}", "nodes:"]
    lines += [f"  - {{name: cp{i}, address: 192.168.177.{10 + i}, role: {role}}}"
              for i in range(1, planes + 1)]
    lines += [f"  - {{name: w{i}, address: 192.168.177.{100 + i}, role: worker}}"
              for i in range(1, workers + 1)]
    return load_text("\n".join(lines) + "\n")


def error(planes: int, cluster: str = "") -> str:
    with pytest.raises(InventoryError) as err:
        inventory(planes, cluster=cluster)
    return str(err.value)


@pytest.mark.parametrize("role", ["master", "control-plane"])
def test_one_control_plane_by_either_name_is_today_s_cluster(role):
    inv = inventory(1, role=role)
    assert inv.init_node.name == "cp1" and inv.init_node.roles == {"control-plane"}
    assert inv.load_balancer == "none"
    assert inv.control_plane_endpoint == "192.168.177.11:6443"


@pytest.mark.parametrize("planes, why", [
    (2, "2 survive no more failures than 1"),
    (4, "4 survive no more failures than 3"),
    (6, "6 survive no more failures than 5"),
    (8, "more than 7 slow every write"),
])
def test_an_even_count_or_more_than_seven_is_refused_with_quorum_as_the_reason(planes, why):
    text = error(planes)
    assert "etcd needs a majority of its members up (quorum)" in text
    assert why in text and text.rstrip().endswith("use 1, 3, 5 or 7")


@pytest.mark.parametrize("planes", [3, 5, 7])
def test_an_odd_count_is_a_local_endpoint_by_default(planes):
    inv = inventory(planes)
    assert [n.name for n in inv.control_plane] == [f"cp{i}" for i in range(1, planes + 1)]
    assert inv.init_node.name == "cp1"  # the first control plane listed
    assert inv.load_balancer == "local"
    assert inv.control_plane_endpoint == "apiserver.cluster.local:6443"


@pytest.mark.parametrize("planes, cluster, kind, endpoint", [
    (1, ", control_plane_endpoint: 'k8s.example.com'", "external", "k8s.example.com:6443"),
    (1, ", load_balancer: local", "local", "apiserver.cluster.local:6443"),
    (1, ", load_balancer: local, control_plane_endpoint: 'api.k8s:7443'", "local", "api.k8s:7443"),
    (3, ", load_balancer: external, control_plane_endpoint: '10.0.0.9:6443'", "external",
     "10.0.0.9:6443"),
    (3, ", control_plane_endpoint: 'api.k8s'", "local", "api.k8s:6443"),
])
def test_the_load_balancer_and_its_endpoint(planes, cluster, kind, endpoint):
    inv = inventory(planes, cluster=cluster)
    assert (inv.load_balancer, inv.control_plane_endpoint) == (kind, endpoint)


@pytest.mark.parametrize("planes, cluster, field, says", [
    (3, ", load_balancer: none", "cluster.load_balancer",
     "'none' (the init node's own address) cannot serve 3 control planes"),
    (1, ", load_balancer: none, control_plane_endpoint: 'api.k8s'", "cluster.load_balancer",
     "leave load_balancer out (external) or drop the endpoint"),
    (1, ", load_balancer: external", "cluster.control_plane_endpoint",
     "load_balancer external needs the load balancer's host:port here"),
    (3, ", control_plane_endpoint: '10.0.0.9'", "cluster.control_plane_endpoint",
     "load_balancer local needs a name"),
    (1, ", load_balancer: vip", "cluster.load_balancer", "must be one of none, local, external"),
])
def test_a_load_balancer_that_cannot_work_is_an_error_naming_the_field(planes, cluster,
                                                                        field, says):
    text = error(planes, cluster)
    assert field in text and says in text, text
