"""`invoke verify`'s workload checks (PodNetwork, DNS, NginxNodePort) and seed 004's
ObjectManagement against lab clusters: one shared 3-node el8 cluster (docker, 1.20.10, as
test_verify_lab builds it) passes all nine checks,
then each way of breaking it fails the right check through `--only` and is mended; verify's
namespace is gone afterwards (kept with keep=True); no process in the nodes talks to anything
outside 127.0.0.0/8 meanwhile. The el9 / containerd paths pass every check in
tests/cluster/test_containerd_lab.py."""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from pathlib import Path

import pytest

from bootstrap import verify as V
from bootstrap.cluster.common import KUBECTL

from . import restore_coredns, set_faults, verify

pytestmark = pytest.mark.lab
ALL = ["Nodes", "SystemPods", "ProxyMode", "Etcd", "Endpoint", "PodNetwork", "DNS",
       "NginxNodePort", "ObjectManagement"]
PODS = ",".join(V.PODS)
NS = "k8s-bootstrap-verify"


@pytest.fixture
def cluster(verify_cluster):
    return verify_cluster


def sh(node, cmd: str):
    return node.run(cmd, timeout=120)


def namespaces(master) -> list[str]:
    r = sh(master, f"{KUBECTL} get namespaces --no-headers")
    assert r.returncode == 0, r.stderr
    return [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]


# ---- no packet outside 127.0.0.0/8 ------------------------------------------------------------

def _pid_ns(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _remote(hexaddr: str) -> str:
    ip, port = hexaddr.split(":")
    if len(ip) == 8:
        return f"{ipaddress.IPv4Address(bytes.fromhex(ip)[::-1])}:{int(port, 16)}"
    words = [bytes.fromhex(ip[i:i + 8])[::-1] for i in range(0, 32, 8)]
    return f"[{ipaddress.IPv6Address(b''.join(words))}]:{int(port, 16)}"


def _outside(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0].strip("[]")
    a = ipaddress.ip_address(host)
    if a.is_unspecified:
        return False
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        a = a.ipv4_mapped
    return not a.is_loopback


class Sampler(threading.Thread):
    """Samples /proc/net/{tcp,tcp6,udp,udp6} while verify runs: every socket with a remote
    address outside 127.0.0.0/8 (and not unconnected) whose owner process lives in a lab
    node's PID namespace is recorded with that process's command line."""

    def __init__(self, the_lab) -> None:
        super().__init__(daemon=True)
        self.namespaces = {_pid_ns(str(n.pid)) for n in the_lab.nodes if n.pid} - {""}
        self.found: list[str] = []
        self.samples = 0
        self.stop = threading.Event()

    def owners(self) -> dict[str, str]:
        out = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if _pid_ns(pid) not in self.namespaces:
                continue
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    out[link[8:-1]] = cmd
        return out

    def sample(self) -> None:
        suspects = []
        for table in ("tcp", "tcp6", "udp", "udp6"):
            try:
                lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if _outside(_remote(f[2])):
                    suspects.append((table, _remote(f[2]), f[9]))
        self.samples += 1
        if suspects:
            owners = self.owners()
            self.found += [f"{t} {addr} by {owners[ino]}" for t, addr, ino in suspects
                           if ino in owners]

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()


@pytest.mark.timeout(600)
def test_a_healthy_cluster_passes_all_nine_checks_and_talks_to_nothing_outside(cluster,
                                                                              tmp_path):
    the_lab, rec = cluster
    master = the_lab.nodes[0]
    before = {n.name: len(n.calls()) for n in the_lab.nodes}
    with Sampler(the_lab) as sampler:
        # the sampler can see a node's process talking outside: a connected UDP socket (connect
        # sends nothing) to a Service address, from inside a node, is caught
        probe = sh(master, "python3 -c 'import socket,time; s=socket.socket(socket.AF_INET, "
                           "socket.SOCK_DGRAM); s.connect((\"10.96.0.1\", 53)); time.sleep(1)'")
        assert probe.returncode == 0, probe.stderr
        assert any("10.96.0.1:53" in f for f in sampler.found), sampler.found
        sampler.found.clear()
        rc, out, data = verify(rec, tmp_path, skip=PODS)  # the Pod chapter: its own file
    assert sampler.samples > 20
    assert sampler.found == [], sampler.found
    assert rc == 0, out
    assert [(c["check"], c["ok"]) for c in data["checks"]] == [(c, True) for c in ALL], out
    assert all(c["expected"] and c["observed"] for c in data["checks"]), data
    assert "verify: 9 checks, 9 passed" in out
    by = {c["check"]: c for c in data["checks"]}
    assert by["PodNetwork"]["observed"] == "3 pods, 6 pairs answered", by["PodNetwork"]
    assert by["DNS"]["observed"] == "both names resolve to their ClusterIPs"
    assert by["NginxNodePort"]["observed"].startswith("12 requests answered 200 (NodePort 3")
    # seed 004's three ways, each with kubectl's own line (1.20: `pod "x" deleted`)
    lines = [e.split(": ", 1)[1].split(";")[0] for e in by["ObjectManagement"]["evidence"]]
    assert lines == ["pod/nginx-run created", "nginx-run 1/1 Running", 'pod "nginx-run" deleted',
                     "pod/nginxpod created", 'pod "nginxpod" deleted', "pod/nginxpod created",
                     "pod/nginxpod unchanged", "pod/nginxpod configured"], by["ObjectManagement"]
    assert by["ObjectManagement"]["evidence"][-1].endswith(
        "then Running, ready, container running, image docker.io/library/nginx:1.28 "
        f"({by['ObjectManagement']['evidence'][-1].rsplit('(', 1)[1]}")
    # the node-side tools were the stand-ins: every curl recorded, no real one ran
    for node in the_lab.nodes:
        calls = node.calls()[before[node.name]:]
        curls = [c for c in calls if c["cmd"] == "curl"]
        assert len(curls) == 4, (node.name, curls)
        head = sh(node, "head -c 40 /usr/bin/curl").stdout
        assert head.startswith("#!/usr/bin/python3 -S"), head
    assert NS not in namespaces(master)


@pytest.mark.timeout(600)
def test_an_apply_that_drops_the_new_image_fails_object_management(cluster, tmp_path):
    the_lab, rec = cluster
    master = the_lab.nodes[0]
    set_faults(the_lab, {"pod_image_update_ignored": ["nginxpod"]})
    try:
        rc, out, data = verify(rec, tmp_path, only="ObjectManagement", timeout=20)
        assert rc == 1, out
        (check,) = data["checks"]
        assert check["check"] == "ObjectManagement" and not check["ok"]
        assert check["observed"] == (
            "after kubectl apply -f nginxpod.yaml (image docker.io/library/nginx:1.28): the API "
            "kept image docker.io/library/nginx:1.27 (kubectl said `pod/nginxpod configured`)")
        assert len(check["evidence"]) == 8 and "describe pod nginxpod" in check["next"]
    finally:
        set_faults(the_lab, None)
    assert NS not in namespaces(master)  # removed after a failure too


@pytest.mark.timeout(600)
def test_pod_traffic_dropped_between_two_nodes_fails_pod_network(cluster, tmp_path):
    the_lab, rec = cluster
    set_faults(the_lab, {"pod_traffic_dropped": [["node1", "node2"]]})
    try:
        rc, out, data = verify(rec, tmp_path, only="PodNetwork")
        assert rc == 1, out
        (check,) = data["checks"]
        assert check["check"] == "PodNetwork" and not check["ok"]
        assert sorted(check["observed"].split("; ")) == ["node1 -> node2 fails",
                                                         "node2 -> node1 fails"], check
        assert any("download timed out" in e or "exit code 1" in e
                   for e in check["evidence"]), check
        assert "flannel" in check["next"]
    finally:
        set_faults(the_lab, None)
    rc, out, _ = verify(rec, tmp_path, only="PodNetwork")
    assert rc == 0, out


@pytest.mark.timeout(600)
def test_the_node_port_not_answering_on_one_node_fails_nginx_node_port(cluster, tmp_path):
    the_lab, rec = cluster
    set_faults(the_lab, {"nodeport_down": ["node2"]})
    address = next(n.address for n in the_lab.nodes if n.name == "node2")
    try:
        rc, out, data = verify(rec, tmp_path, only="NginxNodePort")
        assert rc == 1, out
        (check,) = data["checks"]
        bad = check["observed"].split("; ")
        assert len(bad) == 3 and all(f"-> {address}:" in b and b.endswith(": 000")
                                     for b in bad), check
        # (the exit status verify shows is echo's: its curl_script runs `echo` before `$?`)
        assert all(e.endswith("HTTP 000") for e in check["evidence"]), check
    finally:
        set_faults(the_lab, None)
    rc, out, _ = verify(rec, tmp_path, only="NginxNodePort")
    assert rc == 0, out


@pytest.mark.timeout(600)
def test_coredns_deleted_fails_dns_and_keep_leaves_the_namespace(cluster, tmp_path):
    the_lab, rec = cluster
    master = the_lab.nodes[0]
    gone = sh(master, f"{KUBECTL} -n kube-system delete deployment coredns")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    try:
        rc, out, data = verify(rec, tmp_path, only="DNS", keep=True)
        assert rc == 1, out
        (check,) = data["checks"]
        assert check["check"] == "DNS" and not check["ok"]
        assert "no answer" in check["observed"], check
        assert "k8s-app=kube-dns" in check["next"]
        assert NS in namespaces(master)  # keep=True leaves it
    finally:
        restore_coredns(the_lab)
        sh(master, f"{KUBECTL} delete namespace {NS} --wait=false --ignore-not-found")
    rc, out, _ = verify(rec, tmp_path, only="DNS")
    assert rc == 0, out
    assert NS not in namespaces(master)
