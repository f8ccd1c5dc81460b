"""Real etcd members on the lab's control planes (k8s/etcd.py; lab/k8s/STATE.md "Real etcd"):
Debian's etcd 3.4 on each node's own address, its membership, health and quorum asked with the
real etcdctl, `kubectl exec etcd-<node> -- etcdctl ...` run on the pod's node, the kubelet
restarting a member after a reboot, and no process left once the lab is down.

One 3-node lab for the module: a 1.20 cluster initialised on master1 (kubeadm's stand-in; its
etcd member started by `on_init`, the hook kubeadm init calls), node1 and node2 added as etcd
members the way kubeadm join --control-plane does (the etcd CA copied, member add through
master1, start as `existing`)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import threading

import pytest
from test_k8s_lab import INIT, prepare, root, wait_for

from lab import deps
from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]
ETCD_PY = "/usr/lib/lab/k8s/etcd.py"
PKI = "/etc/kubernetes/pki/etcd"
# a podSubnet of its own (pod addresses are served on the shared loopback: other lab tests use
# 10.244, 10.246 and 10.247)
INIT_HERE = INIT.replace("10.244.0.0/16", "10.248.0.0/16")
PIDS: dict[int, tuple[str, str]] = {}
"""Host PIDs of every etcd and shim process the module saw -> (node, "etcd" | "shim")."""


@pytest.fixture(scope="module")
def lab():
    with module_lab(3) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        yield the_lab


def call(node, func: str, *args):
    """etcd.FUNC(*ARGS) inside NODE (as root), its JSON result."""
    argv = " ".join(shlex.quote(json.dumps(a)) for a in args)
    r = node.run(f"python3 -S {ETCD_PY} call {func} {argv}", timeout=120)
    assert r.returncode == 0, f"{node.name}: etcd.{func}{args}: {r.stderr}"
    return json.loads(r.stdout)


def ctl(node, via, args: str):
    """The real etcdctl inside NODE against the member at VIA, with NODE's healthcheck-client
    certificate (2 s command timeout)."""
    return node.run(f"etcdctl --endpoints=https://{via.address}:2379 --cacert={PKI}/ca.crt "
                    f"--cert={PKI}/healthcheck-client.crt --key={PKI}/healthcheck-client.key "
                    f"--command-timeout=2s {args}", timeout=60)


def remember_pids(lab) -> None:
    for node in lab.nodes:
        for pid in node.namespace_pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            if argv[0] == b"/usr/bin/etcd":
                PIDS[pid] = (node.name, "etcd")
            elif argv[2:4] == [ETCD_PY.encode(), b"shim"]:
                PIDS[pid] = (node.name, "shim")


def in_parallel(fn, items) -> None:
    errors: list[BaseException] = []

    def run(item):
        try:
            fn(item)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_three_members_each_on_its_own_address(lab):
    a, b, c = lab.nodes
    in_parallel(lambda n: prepare(lab, n), lab.nodes)
    r = root(lab, a, "cat > /root/init.yaml; kubeadm init --config /root/init.yaml >/dev/null",
             stdin=INIT_HERE)
    assert r.returncode == 0, r.stderr
    call(a, "on_init", a.name, a.address)  # what kubeadm init's etcd phase does
    for n in (b, c):  # kubeadm join --control-plane: the cluster's etcd CA, then own leaves
        n.path(PKI).mkdir(parents=True, exist_ok=True)
        for f in ("ca.crt", "ca.key"):
            n.path(f"{PKI}/{f}").write_bytes(a.path(f"{PKI}/{f}").read_bytes())
    in_parallel(lambda n: call(n, "ensure_certs", n.name, n.address), (b, c))
    for n in (b, c):
        cluster = call(n, "add_member", a.address, n.name, f"https://{n.address}:2380")
        assert cluster[n.name] == f"https://{n.address}:2380" and a.name in cluster
        call(n, "start_member", n.name, n.address, cluster, "existing")

    listed = call(b, "members", a.address)
    assert sorted(m["name"] for m in listed) == sorted(n.name for n in lab.nodes)
    for m in listed:
        node = lab.node(m["name"])
        assert m["clientURLs"] == [f"https://{node.address}:2379"]
        assert m["peerURLs"] == [f"https://{node.address}:2380"] and int(m["id"], 16)
    assert all(call(a, "health", n.address) for n in lab.nodes)
    r = ctl(c, a, "endpoint health --cluster")
    assert r.returncode == 0 and r.stderr.count("is healthy") == 3, r.stderr

    # every socket of these members is on its node's own address: none on 127.0.0.1 or 0.0.0.0
    remember_pids(lab)
    etcds = {p for p, (_, kind) in PIDS.items() if kind == "etcd"}
    assert len(etcds) == 3 and len(PIDS) == 6, PIDS
    ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    bound = {m.group(1) for line in ss.splitlines()
             for m in [re.match(r"\S+\s+\d+\s+\d+\s+(\S+)\s.*pid=(\d+),", line)]
             if m and int(m.group(2)) in etcds}
    assert bound == {f"{n.address}:{p}" for n in lab.nodes for p in (2379, 2380, 2381)}
    assert deps.host_listeners((2379, 2380, 2381)) == []


def test_quorum_is_etcds_own(lab):
    a, b, c = lab.nodes
    call(c, "stop_member", c.name)
    assert not call(a, "health", c.address)
    assert call(a, "health", a.address)  # 2 of 3: the quorum holds
    assert ctl(a, a, "put lab/k1 v1").stdout == "OK\n"
    assert ctl(b, b, "get lab/k1 --print-value-only").stdout == "v1\n"

    call(b, "stop_member", b.name)  # 1 of 3: no quorum, a write times out: on the client
    r = ctl(a, a, "put lab/k2 v2")  # (--command-timeout) or on the server (its proposal)
    assert r.returncode == 1 and r.stderr.splitlines()[-1] in (
        "Error: context deadline exceeded", "Error: etcdserver: request timed out"), r.stderr
    assert not call(a, "health", a.address)

    # start node1 again (its data dir kept): the quorum is back
    call(b, "start_member", b.name, b.address,
         {n.name: f"https://{n.address}:2380" for n in lab.nodes}, "existing")
    assert ctl(a, a, "put lab/k3 v3").stdout == "OK\n"
    assert ctl(b, a, "get lab/k1 --print-value-only").stdout == "v1\n"


def test_remove_member(lab):
    a, b, c = lab.nodes
    assert call(a, "remove_member", a.address, c.name) is True
    assert call(a, "remove_member", a.address, c.name) is False
    assert sorted(m["name"] for m in call(a, "members", b.address)) == [a.name, b.name]
    call(c, "on_reset", c.name, c.address)  # kubeadm reset's end of it: stopped, data gone
    assert call(c, "running") is None and not c.path("/var/lib/etcd/member").exists()


def test_kubectl_exec_etcdctl_runs_on_the_pods_node(lab):
    a, b, c = lab.nodes
    # node2 (no member any more, no etcd certificates) has only a kubeconfig: the cert paths
    # in the command are master1's, as the etcd pod mounts them
    c.path("/root/.kube").mkdir(exist_ok=True)
    c.path("/root/.kube/config").write_bytes(a.path("/etc/kubernetes/admin.conf").read_bytes())
    c.run(f"rm -rf {PKI}", check=True)
    certs = (f"--cacert {PKI}/ca.crt --cert {PKI}/server.crt --key {PKI}/server.key "
             f"--endpoints https://{a.address}:2379")
    exec_etcd = f"kubectl -n kube-system exec etcd-{a.name} -- "
    r = root(lab, c, f"{exec_etcd}etcdctl {certs} member list")
    assert r.returncode == 0, r.stderr
    assert sorted(line.split(", ")[2] for line in r.stdout.splitlines()) == [a.name, b.name]
    r = root(lab, c, f"{exec_etcd}etcdctl version")
    assert r.stdout == "etcdctl version: 3.4.23\nAPI version: 3.4\n", r.stdout + r.stderr
    # only the pod's volumes are there: not the node's other PKI files
    r = root(lab, c, f"{exec_etcd}etcdctl --cacert /etc/kubernetes/pki/ca.crt "
             f"--endpoints https://{a.address}:2379 member list")
    assert r.returncode == 128 and r.stderr == (
        "Error: open /etc/kubernetes/pki/ca.crt: no such file or directory\n"
        "command terminated with exit code 128\n"), r.stderr
    r = root(lab, c, f"{exec_etcd}ls /")  # the image has no ls (distroless)
    assert r.returncode == 126 and 'exec: "ls": executable file not found in $PATH' in \
        r.stdout and r.stderr == "command terminated with exit code 126\n", r.stdout + r.stderr
    r = root(lab, c, f"kubectl -n kube-system exec etcd-{c.name} -- etcdctl member list")
    assert r.returncode == 1 and r.stderr == \
        f'Error from server (NotFound): pods "etcd-{c.name}" not found\n', r.stderr


def test_kubelet_restarts_the_member_after_a_reboot(lab):
    a, b, c = lab.nodes
    a.reboot()  # the kubelet unit starts at boot; its hook runs etcd.py boot (on_boot)
    wait_for(lambda: call(b, "health", a.address), timeout=40)
    remember_pids(lab)
    assert ctl(a, a, "get lab/k3 --print-value-only").stdout == "v3\n"
    # preflight: the node's own ports are taken, other nodes' members do not count
    assert call(a, "port_in_use", 2379, [a.address]) is True
    assert call(c, "port_in_use", 2379, [c.address]) is False
    assert call(c, "port_in_use", 2380, [c.address]) is False


def test_nothing_is_left_once_the_lab_is_down(lab):
    remember_pids(lab)
    # etcd and its shim: three members, node1 started again, master1 after its reboot
    assert len(PIDS) == 2 * 5, PIDS
    lab.down()
    left = {pid: what for pid, what in PIDS.items() if _alive(pid)}
    assert not left, left


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
