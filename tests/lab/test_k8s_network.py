"""What running pods leave in a node's network state (kube-proxy, kubelet, flannel, cni0), that
`kubeadm reset` leaves it, that a reboot drops it, and kubeadm#1427's stale cni0 over SSH."""

from __future__ import annotations

import ipaddress
import json

import pytest
from test_k8s_lab import FLANNEL, INIT, kubeadm_cluster, root

from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]
INIT_IPTABLES = INIT.split("---\napiVersion: kubeproxy")[0]  # no KubeProxyConfiguration


@pytest.fixture(scope="module")
def lab():
    with module_lab(3) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        kubeadm_cluster(the_lab, INIT, FLANNEL, ipvs=True)
        root(the_lab, the_lab.nodes[0],
             f"cat > /root/init-iptables.yaml <<'EOF'\n{INIT_IPTABLES}EOF")
        yield the_lab


def join(lab, nodes) -> None:
    line = root(lab, lab.nodes[0], "kubeadm token create --print-join-command").stdout.strip()
    for n in nodes:
        r = root(lab, n, line + " >/dev/null")
        assert r.returncode == 0, r.stderr


def cluster(lab) -> dict:
    return json.loads((lab.cluster_dir / "state.json").read_text())


def links(lab, node) -> dict[str, list[str]]:
    """{link: addresses} as `ip -o addr` shows them (plus links without an address)."""
    r = root(lab, node, "ip -o link; ip -o addr")
    out: dict[str, list[str]] = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if f[1].endswith(":"):
            out.setdefault(f[1].rstrip(":"), [])
        elif f[2] == "inet":
            out.setdefault(f[1], []).append(f[3])
    return out


def test_pods_leave_ipvs_iptables_links_and_flannel_files(lab):
    master, node1, _ = lab.nodes
    data = cluster(lab)
    cidr = data["nodes"]["node1"]["pod_cidr"]
    gw = f"{ipaddress.ip_network(cidr).network_address + 1}/24"
    assert ipaddress.ip_network(cidr).subnet_of(ipaddress.ip_network("10.244.0.0/16"))
    assert len({n["pod_cidr"] for n in data["nodes"].values()}) == 3

    # nothing ran on node1 since flannel was applied: its stand-ins see the pods' work
    have = links(lab, node1)
    assert have["cni0"] == [gw] and have["flannel.1"] == [cidr.replace(".0/24", ".0/32")]
    assert sorted(have["kube-ipvs0"]) == ["10.96.0.1/32", "10.96.0.10/32"]
    r = root(lab, node1, "ipvsadm -Ln")
    assert "TCP 10.96.0.1:443 rr\n  -> " + master.address + ":6443" in r.stdout, r.stdout
    assert "UDP 10.96.0.10:53 rr" in r.stdout and "TCP 10.96.0.10:9153 rr" in r.stdout
    r = root(lab, node1, "iptables-save")
    for line in ('-A POSTROUTING -m comment --comment "kubernetes postrouting rules" '
                 "-j KUBE-POSTROUTING",
                 '-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT',
                 ":KUBE-MARK-MASQ - [0:0]", ":KUBE-FIREWALL - [0:0]",
                 '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
                 '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
                 f'-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d {cidr} -m comment --comment '
                 '"flanneld masq" -j RETURN',
                 '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" '
                 "-j ACCEPT"):
        assert line in r.stdout, line
    assert "KUBE-SVC-" not in r.stdout  # ipvs mode: no per-service chains
    forward = [line for line in r.stdout.splitlines() if line.startswith("-A FORWARD ")]
    assert [f.rsplit(" ", 1)[1] for f in forward] == ["FLANNEL-FWD", "KUBE-FORWARD"], forward
    assert root(lab, node1, "ipset list -n").stdout.split() == ["KUBE-LOOP-BACK",
                                                                "KUBE-CLUSTER-IP"]
    r = root(lab, node1, "cat /run/flannel/subnet.env; ls /etc/cni/net.d")
    assert f"FLANNEL_SUBNET={gw}\n" in r.stdout and "10-flannel.conflist" in r.stdout
    # the CoreDNS endpoints are the Running coredns pods' IPs
    r = root(lab, master, "kubectl get pods -n kube-system -o wide | grep coredns")
    ips = [line.split()[5] for line in r.stdout.splitlines()]
    assert len(ips) == 2 and all(ipaddress.ip_address(ip) in ipaddress.ip_network(
        "10.244.0.0/16") for ip in ips), r.stdout
    r = root(lab, node1, "ipvsadm -Ln")
    assert all(f"-> {ip}:53 " in r.stdout for ip in ips), r.stdout
    # kube-proxy puts a deleted jump rule back as soon as it syncs
    r = root(lab, node1, "iptables -t nat -D PREROUTING -m comment --comment "
             "'kubernetes service portals' -j KUBE-SERVICES && iptables -t nat -S PREROUTING")
    assert r.returncode == 0 and "-j KUBE-SERVICES" in r.stdout, r.stderr


def test_reset_leaves_it_cleanup_removes_it_reboot_drops_it(lab):
    _, node1, node2 = lab.nodes
    r = root(lab, node1, "kubeadm reset -f")
    assert r.returncode == 0, r.stderr
    for note in ("The reset process does not clean CNI configuration. To do so, you must "
                 "remove /etc/cni/net.d",
                 "The reset process does not reset or clean up iptables rules or IPVS tables.",
                 "If your cluster was setup to utilize IPVS, run ipvsadm --clear (or similar)"):
        assert note in r.stdout
    assert {"cni0", "flannel.1", "kube-ipvs0"} <= set(links(lab, node1))
    r = root(lab, node1, "iptables-save | grep -c -e KUBE- -e FLANNEL-; ipvsadm -Ln | grep -c rr; "
             "ls /etc/cni/net.d /run/flannel")
    counts = r.stdout.split()
    assert int(counts[0]) > 20 and counts[1] == "4" and "10-flannel.conflist" in r.stdout

    # a reset-style cleanup; with the kubelet stopped nothing puts it back
    r = root(lab, node1, "ipvsadm --clear && for t in filter nat mangle; do iptables -t $t -F && "
             "iptables -t $t -X; done && ipset destroy && ip link del cni0 && "
             "ip link del flannel.1 && ip link del kube-ipvs0 && rm -rf /etc/cni/net.d "
             "/run/flannel /var/lib/cni && iptables-save | grep -c KUBE-; ipvsadm -Ln | wc -l; "
             "ip -o link | wc -l")
    assert r.stdout.split() == ["0", "3", "2"], r.stdout + r.stderr

    # node2: the same leftovers vanish with a reboot (RAM), the CNI config stays (disk)
    root(lab, node2, "kubeadm reset -f >/dev/null")
    node2.reboot()
    assert set(links(lab, node2)) == {"lo", "eth0"}
    r = root(lab, node2, "iptables-save | grep -c KUBE-; ipvsadm -Ln | wc -l; "
             "ls /etc/cni/net.d; ls /run/flannel")
    assert r.stdout.split()[:3] == ["0", "3", "10-flannel.conflist"], r.stdout + r.stderr
    assert "No such file or directory" in r.stderr


def test_stale_cni0_after_a_new_cluster_blocks_coredns_until_removed(lab):
    master, node1, node2 = lab.nodes
    old = cluster(lab)["nodes"]["master1"]["pod_cidr"]
    old_gw = f"{ipaddress.ip_network(old).network_address + 1}/24"
    assert links(lab, master)["cni0"] == [old_gw]
    r = root(lab, master, "kubeadm reset -f >/dev/null && kubeadm init --config "
             "/root/init-iptables.yaml >/dev/null && cp /etc/kubernetes/admin.conf "
             "/root/.kube/config && kubectl apply -f - >/dev/null", stdin=FLANNEL)
    assert r.returncode == 0, r.stderr
    for n in (node1, node2):  # both were reset above; node1 cleaned up, node2 rebooted
        prepare_again = "swapoff -a; modprobe br_netfilter; sysctl -qw " \
            "net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1"
        root(lab, n, prepare_again)
    join(lab, [node1, node2])
    data = cluster(lab)
    new_gw = f"{ipaddress.ip_network(data['nodes']['master1']['pod_cidr']).network_address + 1}/24"
    assert new_gw != old_gw and data["generation"] == 2
    assert links(lab, master)["cni0"] == [old_gw]  # the bridge plugin never changes it
    # kube-proxy in iptables mode now: a chain per service port and endpoint
    r = root(lab, master, "cat /run/flannel/subnet.env; iptables -t nat -S")
    assert f"FLANNEL_SUBNET={new_gw}" in r.stdout
    assert ("-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "
            '"default/kubernetes:https cluster IP" -m tcp --dport 443 -j '
            "KUBE-SVC-NPX46M4PTMTKRN6Y") in r.stdout
    assert (f"-j DNAT --to-destination {master.address}:6443") in r.stdout
    r = root(lab, master, "iptables -S INPUT")
    assert [line.rsplit(" ", 1)[1] for line in r.stdout.splitlines()] == [
        "ACCEPT", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL"], r.stdout

    r = root(lab, master, "kubectl get nodes; kubectl get pods -n kube-system -o wide")
    assert r.stdout.count(" Ready ") == 3, r.stdout
    stuck = [line.split() for line in r.stdout.splitlines() if line.startswith("coredns")
             and " master1 " in line]
    assert stuck and stuck[0][1:3] == ["0/1", "ContainerCreating"], r.stdout
    r = root(lab, master, f"kubectl describe pod -n kube-system {stuck[0][0]}")
    assert "Status:               Pending" in r.stdout
    assert ("FailedCreatePodSandBox" in r.stdout and 'network: failed to delegate add: failed '
            f'to set bridge addr: "cni0" already has an IP address different from {new_gw}'
            in r.stdout), r.stdout
    # nodes whose cni0 was removed (node1) or dropped by the reboot (node2) are fine
    assert "ContainerCreating" not in "\n".join(
        line for line in root(lab, master, "kubectl get pods -A -o wide").stdout.splitlines()
        if " master1 " not in line)

    r = root(lab, master, "ip link del cni0 && ip -o addr show cni0")
    assert f"inet {new_gw} " in r.stdout, r.stdout + r.stderr
    r = root(lab, master, f"kubectl get pods -n kube-system -o wide | grep {stuck[0][0]}")
    assert " Running " in r.stdout and new_gw.replace(".1/24", ".") in r.stdout, r.stdout


def test_a_cleaned_control_plane_gets_a_fresh_cni0_in_the_next_cluster(lab):
    master = lab.nodes[0]
    r = root(lab, master, "kubeadm reset -f >/dev/null && ip link del cni0 && ip link del "
             "flannel.1 && kubeadm init --config /root/init-iptables.yaml >/dev/null && "
             "cp /etc/kubernetes/admin.conf /root/.kube/config && "
             "kubectl apply -f - >/dev/null && kubectl get pods -n kube-system -o wide",
             stdin=FLANNEL)
    assert r.returncode == 0, r.stderr
    data = cluster(lab)
    gw = f"{ipaddress.ip_network(data['nodes']['master1']['pod_cidr']).network_address + 1}/24"
    assert data["generation"] == 3 and links(lab, master)["cni0"] == [gw]
    r = root(lab, master, "kubectl get pods -n kube-system -o wide | grep coredns")
    assert r.stdout.count(" Running ") == 2, r.stdout
