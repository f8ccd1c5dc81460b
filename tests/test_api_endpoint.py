"""How each node reaches the API (bootstrap/api_endpoint.py, steps hosts and local-proxy): the
endpoint's /etc/hosts line per node and load balancer, and the local haproxy's config, checked
by the real haproxy's config test (Debian's, which `lab deps` installs)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bootstrap import api_endpoint as A
from bootstrap import facts as F
from bootstrap.inventory import load_text
from bootstrap.plan import WriteFile
from bootstrap.steps import hosts, local_proxy
from bootstrap.workflow import Target


def inventory(planes: int = 3, cluster: str = ""):
    lines = [f"cluster: {{kubernetes_version: '1.30.1'{cluster}}}", "nodes:"]
    lines += [f"  - {{name: cp{i}, address: 192.168.177.{10 + i}, role: control-plane}}"
              for i in range(1, planes + 1)]
    lines += ["  - {name: w1, address: 192.168.177.101, role: worker}"]
    return load_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("node, serving, line", [
    ("cp1", False, "192.168.177.11 apiserver.cluster.local"),  # the init node: its own
    ("cp2", False, "192.168.177.11 apiserver.cluster.local"),  # joining: the init node's
    ("cp2", True, "192.168.177.12 apiserver.cluster.local"),   # its API server runs: its own
    ("w1", False, "127.0.0.1 apiserver.cluster.local"),        # the local haproxy
])
def test_the_endpoint_line_follows_where_an_api_server_runs(node, serving, line):
    inv = inventory()
    assert A.hosts_line(inv, inv.node(node), serving) == line


@pytest.mark.parametrize("cluster", ["", ", control_plane_endpoint: 'api.example.com'"])
def test_no_line_and_no_proxy_without_a_local_load_balancer(cluster):
    inv = inventory(1, cluster)
    assert inv.load_balancer in ("none", "external")
    assert all(A.hosts_line(inv, n, True) is None for n in inv.nodes)
    assert not any(A.needs_proxy(inv, n) for n in inv.nodes)
    w1 = Target(inv, inv.node("w1"))
    assert local_proxy.skip(w1) == f"cluster.load_balancer is {inv.load_balancer}"


def test_the_hosts_step_reads_whether_the_api_server_is_set_up_only_where_it_matters():
    inv = inventory()
    names = {n.name: [f.name for f in hosts.facts(Target(inv, n))] for n in inv.nodes}
    assert names == {"cp1": ["file:/etc/hosts", hosts.SERVING],
                     "cp2": ["file:/etc/hosts", hosts.SERVING],
                     "cp3": ["file:/etc/hosts", hosts.SERVING], "w1": ["file:/etc/hosts"]}
    cp2 = Target(inv, inv.node("cp2"))
    before = F.FileState("127.0.0.1 localhost\n", 0o644)
    for serving, address in (("", "192.168.177.11"), ("yes", "192.168.177.12")):
        plan = hosts.plan(cp2, {"file:/etc/hosts": before, hosts.SERVING: serving})
        (write,) = [a for a in plan.actions if isinstance(a, WriteFile)]
        assert write.content.startswith("127.0.0.1 localhost\n")
        assert f"\n{address} apiserver.cluster.local\n" in write.content
        assert "192.168.177.101 w1\n" in write.content


def test_the_proxy_balances_over_every_control_plane_on_the_endpoint_port():
    inv = inventory(3, ", control_plane_endpoint: 'api.k8s:7443'")
    text = A.proxy_config(inv)
    assert "    bind 127.0.0.1:7443\n" in text and "    mode tcp\n" in text
    assert [ln.split()[1:3] for ln in text.splitlines() if ln.strip().startswith("server ")] == [
        ["cp1", "192.168.177.11:7443"], ["cp2", "192.168.177.12:7443"],
        ["cp3", "192.168.177.13:7443"]]
    w1 = Target(inv, inv.node("w1"))
    assert local_proxy.skip(w1) is None
    assert local_proxy.skip(Target(inv, inv.node("cp2"))) == \
        "a control-plane node reaches its own API server"


def test_the_proxy_config_passes_the_real_haproxy_check(tmp_path):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert shutil.which(haproxy), "haproxy is missing: run `python -m lab deps`"
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(A.proxy_config(inventory(5)))
    r = subprocess.run([haproxy, "-c", "-f", str(conf)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Configuration file is valid" in r.stdout + r.stderr
    conf.write_text(A.proxy_config(inventory(3)).replace("balance roundrobin", "balance nope"))
    bad = subprocess.run([haproxy, "-c", "-f", str(conf)], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode != 0  # the check can fail: it reads what we render
