"""keepalived in the lab (EL's package from the mirror, the stand-in daemon, the shared VIP
records; lab/k8s/STATE.md "Virtual IPs") and haproxy's published snapshot. One 2-node el9 lab
(master1 priority 150, node1 100, VIP 127.0.B.100), plus one 1-node el7 lab for 1.3.5's texts.

The el9 tests run in file order and build on one another."""

from __future__ import annotations

import json
import time

import pytest
from test_k8s_lab import wait_for

from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]
CONF = "/etc/keepalived/keepalived.conf"
CHECK = "/etc/keepalived/check_apiserver.sh"
FLAG = "/etc/keepalived/fail"  # the check script fails while it exists
SCRIPT = f"#!/bin/sh\n[ -e {FLAG} ] && exit 1\nexit 0\n"


def config(vip: str, priority: int, security: bool = True, extra: str = "",
           router_id: int = 51, weight: int = 0) -> str:
    sec = "    enable_script_security\n" if security else ""
    return (f"global_defs {{\n    router_id LVS_DEVEL\n{sec}    script_user root\n}}\n"
            f"vrrp_script check_apiserver {{\n    script \"{CHECK}\"\n    interval 1\n"
            f"    timeout 2\n    fall 1\n    rise 1\n    weight {weight}\n}}\n"
            f"vrrp_instance k8s_api {{\n    state BACKUP\n    interface eth0\n"
            f"    virtual_router_id {router_id}\n    priority {priority}\n    advert_int 1\n"
            f"{extra}    virtual_ipaddress {{\n        {vip}/24 dev eth0\n    }}\n"
            "    track_script {\n        check_apiserver\n    }\n}\n")


def run(node, cmd: str, stdin: str | None = None):
    return node.run(cmd, input=stdin, timeout=60)


def record(lab, node) -> dict | None:
    try:
        return json.loads((lab.cluster_dir / "vip" / f"{node.name}.keepalived.json").read_text())
    except (OSError, ValueError):
        return None


def journal(node) -> str:
    return run(node, "journalctl -u keepalived --no-pager").stdout


def daemons(node) -> list[str]:
    return [cmd for _pid, cmd in node.processes() if "keepalived/vrrpd.py" in cmd]


@pytest.fixture(scope="module")
def lab():
    with module_lab(2, os="el9") as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def vip(lab) -> str:
    return f"127.0.{lab.block}.100"


def test_package_installs_el9_release(lab):
    for node in lab.nodes:
        r = run(node, "dnf install -y -q keepalived >/dev/null && rpm -q keepalived && "
                      "cat /etc/sysconfig/keepalived /usr/lib/systemd/system/keepalived.service"
                      " && keepalived -v && rpm -qc keepalived")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("keepalived-2.2.8-3.el9.x86_64\n")
        assert 'KEEPALIVED_OPTIONS="-D"' in r.stdout
        assert "ExecStart=/usr/sbin/keepalived $KEEPALIVED_OPTIONS" in r.stdout
        assert "Type=forking" in r.stdout and "PIDFile=/run/keepalived.pid" in r.stdout
        assert r.stderr.startswith("Keepalived v2.2.8")
        assert "/etc/keepalived/keepalived.conf" in r.stdout  # %config


def test_good_config_starts_and_higher_priority_is_master(lab, vip):
    m, n = lab.nodes
    for node, prio in ((m, 150), (n, 100)):
        r = run(node, f"cat > {CHECK} <<'EOF'\n{SCRIPT}EOF\nchmod 755 {CHECK} && cat > {CONF} "
                      "&& keepalived -t; echo rc=$? && systemctl start keepalived && "
                      "systemctl is-active keepalived && cat /run/keepalived.pid",
                stdin=config(vip, prio))
        assert r.returncode == 0, r.stderr
        assert "rc=0\nactive\n" in r.stdout and r.stderr == ""
        rec = wait_for(lambda node=node: record(lab, node))
        assert rec["node"] == node.name and rec["address"] == node.address
        assert rec["instances"] == [{"name": "k8s_api", "interface": "eth0", "router_id": 51,
                                     "priority": prio, "fault": False, "advert_int": 1.0,
                                     "addresses": [f"{vip}/24"]}]
        assert len(daemons(node)) == 1
    wait_for(lambda: "(k8s_api) Entering MASTER STATE" in journal(m))
    assert "(k8s_api) Entering BACKUP STATE (init)" in journal(n)
    time.sleep(1.5)
    assert "MASTER" not in journal(n)


def test_failing_script_faults_and_the_other_node_takes_over(lab):
    m, n = lab.nodes
    assert run(m, f"touch {FLAG}").returncode == 0
    wait_for(lambda: (record(lab, m) or {}).get("instances", [{}])[0].get("fault"))
    wait_for(lambda: "(k8s_api) Entering MASTER STATE" in journal(n))
    j = journal(m)
    assert "Script `check_apiserver` now returning 1" in j
    assert "VRRP_Script(check_apiserver) failed (exited with status 1)" in j
    assert "(k8s_api) Entering FAULT STATE" in j
    # mended: master1 (150) wins again; node1 goes back to BACKUP
    assert run(m, f"rm -f {FLAG}").returncode == 0
    wait_for(lambda: journal(m).count("(k8s_api) Entering MASTER STATE") == 2)
    wait_for(lambda: journal(n).rstrip().endswith("(k8s_api) Entering BACKUP STATE"))


def test_reload_applies_weights_and_a_refused_config_keeps_the_old(lab, vip):
    m, _n = lab.nodes
    # weight -60 while the script fails: 150 - 60 = 90 < 100 (no fault with a weight)
    r = run(m, f"cat > {CONF} && touch {FLAG} && systemctl reload keepalived",
            stdin=config(vip, 150, weight=-60))
    assert r.returncode == 0, r.stderr
    rec = wait_for(lambda: (i := (record(lab, m) or {}).get("instances", [{}])[0])
                   .get("priority") == 90 and i)
    assert rec["fault"] is False
    # an unknown keyword: the reload is refused by the real test, the running config stays
    r = run(m, f"rm -f {FLAG} && cat > {CONF} && systemctl reload keepalived; echo rc=$?",
            stdin=config(vip, 120, extra="    bogus_keyword 3\n"))
    assert "rc=0" in r.stdout
    wait_for(lambda: (record(lab, m) or {}).get("instances", [{}])[0].get("priority") == 150)
    assert "Unknown keyword 'bogus_keyword'" in journal(m)
    assert run(m, f"cat > {CONF}", stdin=config(vip, 150)).returncode == 0


KC = "(/etc/keepalived/keepalived.conf: "  # the real test names the file as given (-f)


@pytest.mark.parametrize("bad, text", [
    (dict(extra="    bogus_keyword 3\n"), f"{KC}Line 20) Unknown keyword 'bogus_keyword'"),
    (dict(security=False), "SECURITY VIOLATION - scripts are being executed but "
                           "script_security not enabled."),
    (dict(router_id=256), f"{KC}Line 17) (k8s_api): VRID '256' not valid - must be between 1 "
                          "& 255"),
    ("writable", "Disabling track script check_apiserver due to insecure"),
])
def test_bad_config_fails_the_start_with_the_real_text(lab, vip, bad, text):
    n = lab.nodes[1]
    conf = config(vip, 100, **bad) if isinstance(bad, dict) else config(vip, 100)
    mode = "777" if bad == "writable" else "755"
    r = run(n, f"systemctl stop keepalived && cat > {CONF} && chmod {mode} {CHECK} && "
               "systemctl start keepalived; echo rc=$?; systemctl is-active keepalived; "
               f"chmod 755 {CHECK}", stdin=conf)
    assert "rc=1\nfailed\n" in r.stdout
    assert r.stderr.startswith("Job for keepalived.service failed because the control process "
                               "exited with error code.")
    j = journal(n)
    assert text in j, j
    assert record(lab, n) is None and daemons(n) == []
    assert run(n, "test -e /run/keepalived.pid").returncode == 1


def test_stop_removes_the_record_and_the_process(lab, vip):
    m, n = lab.nodes
    r = run(n, f"cat > {CONF} && systemctl start keepalived", stdin=config(vip, 100))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: record(lab, n))
    for node in (m, n):
        r = run(node, "systemctl stop keepalived && systemctl is-active keepalived; "
                      "test -e /run/keepalived.pid; echo pid=$?")
        assert "inactive\npid=1" in r.stdout
        assert record(lab, node) is None and daemons(node) == []
        assert "Stopped Keepalived v2.2.8" in journal(node)


def test_haproxy_publishes_its_snapshot(lab):
    m = lab.nodes[0]
    cfg = ("global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 5s\n"
           "    timeout client 1m\n    timeout server 1m\nfrontend api\n    bind *:8443\n"
           "    default_backend apis\nbackend apis\n"
           + "".join(f"    server s{i} {x.address}:6443 check\n" for i, x in
                     enumerate(lab.nodes)))
    pub = lab.cluster_dir / "haproxy" / f"{m.name}.json"
    r = run(m, "dnf install -y -q haproxy >/dev/null && cat > /etc/haproxy/haproxy.cfg && "
               "systemctl start haproxy && cat /run/lab/haproxy/config.json", stdin=cfg)
    assert r.returncode == 0, r.stderr
    assert json.loads(pub.read_text()) == json.loads(r.stdout)
    assert json.loads(r.stdout)["frontends"][0]["binds"] == [["*", 8443]]
    assert oct((lab.cluster_dir / "haproxy").stat().st_mode & 0o777) == "0o777"
    assert run(m, "systemctl stop haproxy").returncode == 0
    assert not pub.exists()


def test_el7_release_texts(lab_factory):
    lab7 = lab_factory(1, os="el7")
    node = lab7.nodes[0]
    vip = f"127.0.{lab7.block}.100"
    r = run(node, f"yum install -y -q keepalived >/dev/null && rpm -q keepalived && "
                  f"keepalived -t; echo rc=$? && cat > {CHECK} <<'EOF'\n{SCRIPT}EOF\n"
                  f"chmod 755 {CHECK} && cat > {CONF} && systemctl start keepalived",
            stdin=config(vip, 150))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("keepalived-1.3.5-19.el7.x86_64\nrc=0\n")
    assert "keepalived: invalid option -- 't'" in r.stderr
    wait_for(lambda: "VRRP_Instance(k8s_api) Entering MASTER STATE" in journal(node))
    j = journal(node)
    assert "VRRP_Instance(k8s_api) Entering BACKUP STATE" in j
    assert "VRRP_Instance(k8s_api) Transition to MASTER STATE" in j
    assert "VRRP_Script(check_apiserver) succeeded" in j
    assert run(node, "systemctl stop keepalived").returncode == 0
    assert record(lab7, node) is None and daemons(node) == []
