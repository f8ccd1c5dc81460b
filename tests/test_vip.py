"""HA control planes, part 2 (README "HA control planes"), pure: ``load_balancer`` kube-vip and
haproxy-keepalived in the inventory, their files per node, and the VirtualIP preflight check
over facts. The lab tests (tests/cluster/test_vip_lab.py) run them on nodes."""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate as kv
import pytest
import yaml

from bootstrap import api_endpoint as A
from bootstrap import checks, releases
from bootstrap.cluster import kube_vip
from bootstrap.errors import InventoryError
from bootstrap.inventory import load_text
from bootstrap.plan import FileState
from bootstrap.steps import Target, local_proxy
from bootstrap.steps import keepalived as keepalived_step


def inventory(kind: str = "kube-vip", endpoint: str = "10.0.0.100", vip: str = "{interface: eth0}",
              version: str = "1.30.1", planes: int = 3):
    lines = [f"cluster: {{kubernetes_version: '{version}', load_balancer: {kind}, "
             f"control_plane_endpoint: '{endpoint}', vip: {vip}}}", "nodes:"]
    lines += [f"  - {{name: cp{i}, address: 10.0.0.{10 + i}, role: control-plane}}"
              for i in range(1, planes + 1)]
    lines += ["  - {name: w1, address: 10.0.0.21, role: worker}"]
    return load_text("\n".join(lines) + "\n")


def error(**kw) -> str:
    with pytest.raises(InventoryError) as err:
        inventory(**kw)
    return str(err.value)


@pytest.mark.parametrize("kind, endpoint, want", [
    ("kube-vip", "10.0.0.100", "10.0.0.100:6443"),
    ("kube-vip", "10.0.0.100:6443", "10.0.0.100:6443"),
    ("haproxy-keepalived", "10.0.0.100", "10.0.0.100:8443"),
    ("haproxy-keepalived", "10.0.0.100:9443", "10.0.0.100:9443"),
])
def test_the_endpoint_is_the_vip_on_the_kind_s_port(kind, endpoint, want):
    inv = inventory(kind, endpoint)
    assert (inv.load_balancer, inv.control_plane_endpoint, inv.vip) == (kind, want, "10.0.0.100")
    assert A.hosts_line(inv, inv.node("w1"), False) is None  # dialed directly


@pytest.mark.parametrize("kw, field, says", [
    ({"endpoint": ""}, "cluster.control_plane_endpoint",
     "load_balancer kube-vip needs the virtual IP here"),
    ({"endpoint": "api.example.com"}, "cluster.control_plane_endpoint",
     "needs an IPv4 address here (the virtual IP), not a name"),
    ({"endpoint": "10.0.0.100:8443"}, "cluster.control_plane_endpoint",
     "kube-vip (ARP mode) hands the VIP to the API servers' own port 6443"),
    ({"kind": "haproxy-keepalived", "endpoint": "10.0.0.100:6443"},
     "cluster.control_plane_endpoint", "where kube-apiserver already binds *:6443"),
    ({"vip": "{prefix: 24}"}, "cluster.vip", "needs vip.interface"),
    ({"vip": "{interface: eth0, router_id: 256}"}, "cluster.vip.router_id",
     "must be a whole number from 1 to 255"),
    ({"vip": "{interface: eth0, router_id: 0}"}, "cluster.vip.router_id",
     "must be a whole number from 1 to 255"),
    ({"vip": "{interface: 'eth 0'}"}, "cluster.vip.interface", "is not a network interface"),
    ({"vip": "{interface: eth0, colour: red}"}, "cluster.vip", "unknown key"),
    ({"endpoint": "10.0.0.11"}, "cluster.control_plane_endpoint", "is node cp1's address"),
    ({"endpoint": "10.0.1.100"}, "cluster.vip.prefix",
     "control-plane node cp1 (10.0.0.11) is not in 10.0.1.0/24"),
    ({"endpoint": "10.0.0.255"}, "cluster.control_plane_endpoint",
     "is the broadcast address of 10.0.0.0/24"),
])
def test_a_vip_that_cannot_work_is_an_error_naming_the_field(kw, field, says):
    text = error(**kw)
    assert field in text and says in text, text


def test_vip_settings_without_a_vip_kind_are_an_error():
    with pytest.raises(InventoryError) as err:
        load_text("cluster: {vip: {interface: eth0}}\n"
                  "nodes: [{name: m1, address: 10.0.0.1, role: master}]\n")
    assert "cluster.vip: is only read with load_balancer kube-vip or haproxy-keepalived" \
        in str(err.value)


def test_kube_vip_s_manifest_mounts_super_admin_conf_on_the_init_node_until_init_from_1_29():
    for version, init_during in (("1.28.2", A.ADMIN_CONF), ("1.29.0", A.SUPER_ADMIN_CONF),
                                 ("1.37.0", A.SUPER_ADMIN_CONF)):
        inv = inventory(version=version)
        assert releases.release(version).super_admin == (init_during == A.SUPER_ADMIN_CONF)
        assert A.kube_vip_kubeconfig(inv, inv.init_node, False) == init_during
        assert A.kube_vip_kubeconfig(inv, inv.init_node, True) == A.ADMIN_CONF
        assert A.kube_vip_kubeconfig(inv, inv.node("cp2"), False) == A.ADMIN_CONF


def _pod(inv, node: str, conf: str) -> dict:
    return yaml.safe_load(A.kube_vip_manifest(inv, inv.node(node), conf))


def test_kube_vip_s_manifest_is_a_valid_pod_with_kube_vip_s_settings():
    inv = inventory()
    pod = _pod(inv, "cp2", A.ADMIN_CONF)
    kv.validate(pod, "1.30", strict=True)
    (ctr,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in ctr["env"]}
    assert env == {"vip_arp": "true", "port": "6443", "vip_nodename": "cp2",
                   "vip_interface": "eth0", "vip_subnet": "32", "dns_mode": "first",
                   "cp_enable": "true", "cp_namespace": "kube-system",
                   "vip_leaderelection": "true", "vip_leasename": "plndr-cp-lock",
                   "vip_leaseduration": "5", "vip_renewdeadline": "3", "vip_retryperiod": "1",
                   "address": "10.0.0.100"}
    assert ctr["image"] == releases.KUBE_VIP_IMAGE and ctr["args"] == ["manager"]
    assert pod["spec"]["hostAliases"] == [{"hostnames": ["kubernetes"], "ip": "127.0.0.1"}]
    assert pod["spec"]["volumes"] == [{"name": "kubeconfig",
                                       "hostPath": {"path": A.ADMIN_CONF}}]
    assert ctr["volumeMounts"] == [{"mountPath": A.ADMIN_CONF, "name": "kubeconfig"}]
    mirror = inventory(vip="{interface: ens192, image: 'mirror.local/kube-vip:v1.0.3'}")
    ctr = _pod(mirror, "cp1", A.SUPER_ADMIN_CONF)["spec"]["containers"][0]
    assert ctr["image"] == "mirror.local/kube-vip:v1.0.3"
    assert {"name": "vip_interface", "value": "ens192"} in ctr["env"]


def _facts(phase, manifest: str | None, initialised: bool) -> dict:
    from bootstrap.cluster.common import present

    return {f"file:{A.KUBE_VIP_MANIFEST}": None if manifest is None else FileState(
        manifest, 0o600, "root", "root"),
        present().name: {A.ADMIN_CONF} if initialised else set()}


def test_kube_vip_s_phases_swap_to_admin_conf_after_init_then_change_nothing():
    inv = inventory(version="1.30.1")
    t = Target(inv, inv.init_node)
    before = kube_vip.BEFORE_INIT.plan(t, _facts(kube_vip.BEFORE_INIT, None, False))
    (write,) = before.files()
    assert "path: /etc/kubernetes/super-admin.conf" in write.content and write.mode == 0o600
    # planned with init's other phases, from the facts before init: it starts from what the
    # kube-vip phase leaves, so it swaps to admin.conf
    after = kube_vip.after_init(None).plan(t, _facts(None, None, False))
    assert "path: /etc/kubernetes/admin.conf" in after.files()[0].content
    # a re-run after an init whose swap did not happen: kube-vip leaves it, kube-vip-admin swaps
    assert not kube_vip.BEFORE_INIT.plan(t, _facts(None, write.content, True)).actions
    after = kube_vip.after_init(None).plan(t, _facts(None, write.content, True))
    assert "path: /etc/kubernetes/admin.conf" in after.files()[0].content
    assert "answers through the VIP" in after.summary()  # it waits for the VIP to answer
    assert any("get --raw=/readyz" in getattr(a, "command", "") for a in after.actions)
    settled = after.files()[0].content
    for phase in (kube_vip.BEFORE_INIT, kube_vip.after_init(None)):
        assert not phase.plan(t, _facts(phase, settled, True)).actions  # a re-run: no change
    old = inventory(version="1.28.2")  # before 1.29: admin.conf from the start, nothing to swap
    told = Target(old, old.init_node)
    assert kube_vip.BEFORE_INIT.plan(told, _facts(None, None, False)).files()
    assert not kube_vip.after_init(None).plan(told, _facts(None, None, False)).actions
    joined = kube_vip.AFTER_JOIN.plan(Target(inv, inv.node("cp2")), _facts(None, None, True))
    assert "path: /etc/kubernetes/admin.conf" in joined.files()[0].content
    assert not any("readyz" in getattr(a, "command", "") for a in joined.actions)
    other = inventory("haproxy-keepalived")
    assert kube_vip.BEFORE_INIT.skip(Target(other, other.init_node)) == \
        "cluster.load_balancer is haproxy-keepalived"


def test_haproxy_keepalived_runs_on_the_control_planes_only():
    inv = inventory("haproxy-keepalived")
    for name in ("cp1", "cp2", "cp3"):
        t = Target(inv, inv.node(name))
        assert local_proxy.skip(t) is None and keepalived_step.skip(t) is None
    w1 = Target(inv, inv.node("w1"))
    assert local_proxy.skip(w1) == keepalived_step.skip(w1) == "a worker dials the virtual IP"
    text = A.proxy_config(inv)
    assert "    bind *:8443\n" in text
    assert [ln.split()[2] for ln in text.splitlines() if ln.strip().startswith("server ")] == [
        "10.0.0.11:6443", "10.0.0.12:6443", "10.0.0.13:6443"]
    conf = A.keepalived_config(inv, inv.node("cp2"))
    assert "    virtual_router_id 51\n" in conf and "    priority 149\n" in conf
    assert "        10.0.0.100/24 dev eth0\n" in conf and "    state BACKUP\n" in conf
    script = A.check_script(inv, inv.node("cp3"))
    assert "systemctl is-active --quiet haproxy.service" in script
    assert "https://10.0.0.13:6443/readyz" in script
    kv_only = inventory("kube-vip")
    assert local_proxy.skip(Target(kv_only, kv_only.node("cp1"))) == \
        "cluster.load_balancer is kube-vip"


def test_haproxy_s_control_plane_config_passes_the_real_haproxy_check(tmp_path):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(A.proxy_config(inventory("haproxy-keepalived")))
    r = subprocess.run([haproxy, "-c", "-f", str(conf)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


# -- VirtualIP ------------------------------------------------------------------------------------
BASE = {"os-release": {}, "cpus": None, "memory-mb": None, "listening": set(),
        "initialised": None, "packages": (0, None, None), "macs": set(), "product-uuid": None}


def node_facts(inv, overrides: dict | None = None, arp: dict | None = None) -> dict:
    out = {}
    for n in inv.nodes:
        f = dict(BASE, hostname=n.name, addresses=[("lo", "127.0.0.1/8"),
                                                   ("eth0", f"{n.internal_address}/24")])
        out[n.name] = f
    out["cp1"]["vip-arp"] = arp or {"rc": 0, "replies": [], "said": "Received 0 response(s)"}
    for name, addrs in (overrides or {}).items():
        out[name]["addresses"] = addrs
    return out


def virtual_ip(inv, facts) -> list[tuple[str, str, str]]:
    return [(f.severity, f.node, f.message) for f in checks.evaluate(inv, facts, {})
            if f.check == "VirtualIP"]


REPLY = "Unicast reply from 10.0.0.100 [52:54:00:AA:BB:CC]  0.611ms"


@pytest.mark.parametrize("overrides, arp, says", [
    ({}, None, []),
    # held by this cluster's control plane: no question, even if it answers ARP
    ({"cp2": [("eth0", "10.0.0.12/24"), ("eth0", "10.0.0.100/32")]},
     {"rc": 1, "replies": [REPLY], "said": ""}, []),
    ({}, {"rc": 1, "replies": [REPLY], "said": ""},
     [("error", "cp1", f"something already answers for 10.0.0.100 ({REPLY})")]),
    ({"w1": [("eth0", "10.0.0.21/24"), ("eth0", "10.0.0.100/24")]}, None,
     [("error", "w1", "10.0.0.100 is already an address of w1 (eth0)")]),
    ({"cp3": [("ens192", "10.0.0.13/24")]}, None,
     [("error", "cp3", "no interface eth0 with an IPv4 address (it has: ens192)")]),
    ({"cp2": [("eth0", "10.0.5.12/24")]}, None,
     [("error", "cp2", "10.0.0.100 is not in the subnet of eth0 (10.0.5.12/24)")]),
    ({"cp2": [("eth0", "10.0.0.12/22")]}, None,
     [("error", "cp2", "eth0 is 10.0.0.12/22, but cluster.vip.prefix is 24: set it to 22")]),
    ({}, {"rc": 127, "replies": [], "said": "sh: arping: command not found"},
     [("warning", "cp1", "could not check that 10.0.0.100 is free (arping -D: sh: arping: "
                         "command not found)")]),
])
def test_the_virtual_ip_check_judges_every_node_s_addresses_and_arp(overrides, arp, says):
    inv = inventory("haproxy-keepalived")
    found = virtual_ip(inv, node_facts(inv, overrides, arp))
    assert [(s, n) for s, n, _ in found] == [(s, n) for s, n, _ in says]
    for (_, _, message), (_, _, want) in zip(found, says, strict=True):
        assert message.startswith(want), message


def test_the_virtual_ip_facts_ask_arping_on_the_init_node_only():
    inv = inventory()
    names = {n.name: [f.name for f in checks.facts(inv, n, False)] for n in inv.nodes}
    assert "vip-arp" in names["cp1"] and "addresses" in names["cp1"]
    assert "vip-arp" not in names["cp2"] and "addresses" in names["w1"]
    arp = next(f for f in checks.facts(inv, inv.init_node, False) if f.name == "vip-arp")
    assert arp.command.startswith("arping -D -I eth0 -c 2 -w 3 10.0.0.100")
    assert checks._addresses("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever"
                             "\n2: eth0    inet 10.0.0.11/24 brd 10.0.0.255 scope global eth0"
                             "\\       valid_lft forever preferred_lft forever\n", 0) == [
        ("lo", "127.0.0.1/8"), ("eth0", "10.0.0.11/24")]
    plain = load_text("nodes: [{name: m1, address: 10.0.0.1, role: master}]\n")
    assert not {"addresses", "vip-arp"} & {f.name for f in checks.facts(plain, plain.init_node,
                                                                         False)}


def test_keepalived_s_config_passes_the_real_config_test_and_fails_when_broken(tmp_path):
    """Debian's keepalived 2.2.7 (`lab deps`) checks what we render: clean, no warning."""
    keepalived = shutil.which("keepalived") or "/usr/sbin/keepalived"
    inv = inventory("haproxy-keepalived")
    script = tmp_path / "check_apiserver.sh"
    script.write_text(A.check_script(inv, inv.node("cp1")))
    script.chmod(0o755)
    conf = tmp_path / "keepalived.conf"
    text = A.keepalived_config(inv, inv.node("cp1")).replace(A.CHECK_SCRIPT, str(script))
    conf.write_text(text)
    r = subprocess.run([keepalived, "-t", "-f", str(conf)], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")
    conf.write_text(text.replace("    enable_script_security\n", ""))
    bad = subprocess.run([keepalived, "-t", "-f", str(conf)], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode != 0 and "script_security not enabled" in bad.stderr
