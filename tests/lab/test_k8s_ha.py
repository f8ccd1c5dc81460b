"""HA control planes in the lab (issue #24, lab/k8s/STATE.md "HA control planes"): kubeadm 1.30
(config v1beta3) on containerd, driven by hand as the product would. One 5-node el7 lab:
master1, node1 and node2 are the control planes, node3 and node4 the workers. The endpoint is
the name apiserver.cluster.local, resolved by each node's own /etc/hosts (control planes: the
init node while they join, then themselves; workers: 127.0.0.1, a local haproxy in TCP mode
balancing to the three API servers). Real etcd members (k8s/etcd.py), asked through
`kubectl exec etcd-<node> -- etcdctl`.

The tests run in file order and build on one another (one cluster)."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_k8s_lab import root, wait_for

from lab import mirror
from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]
NAME = "apiserver.cluster.local"
ENDPOINT = f"{NAME}:6443"
SOCK = "unix:///var/run/containerd/containerd.sock"
TOKEN = "abcdef.0123456789abcdef"
CONTAINERD = """version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
"""
ETCDCTL = ("etcdctl --endpoints https://{addr}:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt "
           "--cert /etc/kubernetes/pki/etcd/server.crt --key /etc/kubernetes/pki/etcd/server.key")
ADMIN = "KUBECONFIG=/etc/kubernetes/admin.conf"


def init_config(master, cps, key: str, endpoint: bool = True) -> str:
    cluster = (f"controlPlaneEndpoint: {ENDPOINT}\napiServer:\n  certSANs: [{NAME}, "
               + ", ".join(n.address for n in cps) + "]\n") if endpoint else ""
    return (f"apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\n"
            f"bootstrapTokens: [{{token: {TOKEN}, ttl: 1h0m0s}}]\ncertificateKey: {key}\n"
            f"localAPIEndpoint: {{advertiseAddress: {master.address}, bindPort: 6443}}\n"
            f"nodeRegistration: {{name: {master.name}, criSocket: {SOCK}}}\n---\n"
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n"
            f"kubernetesVersion: v1.30.1\n{cluster}networking: {{podSubnet: 10.244.0.0/16}}\n"
            "---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
            "cgroupDriver: cgroupfs\n")


def join_config(node, ca_hash: str, key: str | None = None) -> str:
    cp = (f"controlPlane:\n  localAPIEndpoint: {{advertiseAddress: {node.address}, "
          f"bindPort: 6443}}\n  certificateKey: {key}\n") if key else ""
    return (f"apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\ndiscovery:\n"
            f"  bootstrapToken:\n    apiServerEndpoint: {ENDPOINT}\n    token: {TOKEN}\n"
            f"    caCertHashes: [{ca_hash}]\n{cp}"
            f"nodeRegistration: {{name: {node.name}, criSocket: {SOCK}}}\n")


def haproxy_cfg(servers: list[str]) -> str:
    lines = "".join(f"    server s{i} {a}:6443 check\n" for i, a in enumerate(servers))
    return ("global\n    user haproxy\n    group haproxy\n    maxconn 4000\n"
            "defaults\n    mode tcp\n    timeout connect 10s\n    timeout client 1m\n"
            "    timeout server 1m\n"
            "frontend kube-apiserver\n    bind 127.0.0.1:6443\n    default_backend apis\n"
            f"backend apis\n    balance roundrobin\n{lines}")


def hosts(lab, node, address: str) -> None:
    r = root(lab, node, f"sed -i '/ {NAME}$/d' /etc/hosts && echo '{address} {NAME}' >> "
                        "/etc/hosts")
    assert r.returncode == 0, r.stderr


def state(lab) -> dict:
    return json.loads((lab.cluster_dir / "state.json").read_text())


def members(lab, via) -> list[dict]:
    r = root(lab, via, f"{ADMIN} kubectl -n kube-system exec etcd-{via.name} -- "
                       + ETCDCTL.format(addr=via.address) + " member list -w json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout).get("members", [])


def install_kubernetes(the_lab, nodes, version: str = "1.30.1",
                       disabled: tuple[str, ...] = ()) -> None:
    """containerd 1.6 and kubelet, kubeadm, kubectl of VERSION from the lab's mirror on NODES
    (in parallel), containerd configured, swap off, the kubelet's sysctls set: what
    prepare-nodes leaves, done by hand so that the stand-ins are driven directly. DISABLED:
    more of the mirror's repos, written but disabled (for a later --enablerepo)."""
    rids = ("base", "docker-ce", mirror.k8s_repo(version.rsplit(".", 1)[0]), *disabled)
    repo = "".join(f"[{rid.replace('/', '-')}]\nname={rid}\nbaseurl={the_lab.mirror_url}"
                   f"{rid}/\nenabled={0 if rid in disabled else 1}\ngpgcheck=0\n\n"
                   for rid in rids)

    def prepare(node) -> None:
        r = root(the_lab, node, f"cat > /etc/yum.repos.d/lab.repo <<'EOF'\n{repo}EOF\n"
                 f"yum install -y -q containerd.io-1.6.33 kubelet-{version} kubeadm-{version} "
                 f"kubectl-{version} >/dev/null && cat > /etc/containerd/config.toml && "
                 "swapoff -a && modprobe br_netfilter && sysctl -qw "
                 "net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1 && "
                 "systemctl enable -q --now containerd kubelet", stdin=CONTAINERD)
        assert r.returncode == 0, r.stderr

    with ThreadPoolExecutor(max(1, len(nodes))) as pool:
        list(pool.map(prepare, nodes))


@pytest.fixture(scope="module")
def lab():
    with module_lab(5) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        install_kubernetes(the_lab, the_lab.nodes, disabled=("el9/AppStream/x86_64/os",))
        yield the_lab


@pytest.fixture(scope="module")
def roles(lab):
    return lab.nodes[:3], lab.nodes[3:]


def test_no_endpoint_no_control_plane_join(lab, roles):
    """A cluster initialised without controlPlaneEndpoint: a control-plane join is refused at
    preflight with kubeadm's own (sic) sentence."""
    (master, cp2, _), _ = roles
    key = os.urandom(32).hex()
    r = root(lab, master, "cat > /root/plain.yaml && kubeadm init --config /root/plain.yaml "
                          "--upload-certs --skip-certificate-key-print --skip-token-print",
             stdin=init_config(master, [master], key, endpoint=False))
    assert r.returncode == 0, r.stderr
    assert "You can now join any number of" not in r.stdout  # no control-plane join offered
    hosts(lab, cp2, master.address)
    r = root(lab, cp2, "cat > /root/join.yaml && kubeadm join --config /root/join.yaml",
             stdin=join_config(cp2, state(lab)["ca_hash"], key).replace(ENDPOINT,
                                                                        f"{master.address}:6443"))
    assert r.returncode == 1
    assert r.stderr == (
        "error execution phase preflight: \nOne or more conditions for hosting a new control "
        "plane instance is not satisfied.\n\nunable to add a new control plane instance a "
        "cluster that doesn't have a stable controlPlaneEndpoint address\n\nPlease ensure "
        "that:\n* The cluster has a stable controlPlaneEndpoint address.\n* The certificates "
        "that must be shared among control plane instances are provided.\n\n\nTo see the "
        "stack trace of this error execute with --v=5 or higher\n"), r.stderr
    r = root(lab, master, "kubeadm reset -f")
    assert r.returncode == 0, r.stderr
    assert "[reset] Deleted contents of the etcd data directory: /var/lib/etcd" in r.stdout
    assert root(lab, master, "pgrep -x etcd").returncode == 1  # the member stopped


def test_init_upload_certs_and_control_plane_joins(lab, roles):
    cps, _ = roles
    master, cp2, cp3 = cps
    key = os.urandom(32).hex()
    for n in cps:  # while they join, the name leads to the init node's API server
        hosts(lab, n, master.address)
    r = root(lab, master, "cat > /root/init.yaml && kubeadm init --config /root/init.yaml "
                          "--upload-certs --skip-certificate-key-print --skip-token-print",
             stdin=init_config(master, cps, key))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert key not in out + r.stderr and TOKEN not in out + r.stderr
    assert ('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the '
            '"kube-system" Namespace\n[mark-control-plane]') in out
    assert ("You can now join any number of the control-plane node running the following "
            f"command on each as root:\n\n  kubeadm join {ENDPOINT} --token <value withheld> "
            "\\\n\t--discovery-token-ca-cert-hash sha256:") in out
    assert "\\\n\t--control-plane --certificate-key <value withheld>\n\nPlease note" in out
    ca_hash = state(lab)["ca_hash"]
    r = root(lab, master, f"{ADMIN} kubectl -n kube-system get secret kubeadm-certs")
    assert r.stdout.split("\n")[1].split()[:3] == ["kubeadm-certs", "Opaque", "8"], r.stdout
    r = root(lab, master, "openssl x509 -noout -ext subjectAltName -in "
                          "/etc/kubernetes/pki/apiserver.crt")
    assert f"DNS:{NAME}" in r.stdout and all(f"IP Address:{n.address}" in r.stdout for n in cps)

    r = root(lab, cp2, "cat > /root/join.yaml && kubeadm join --config /root/join.yaml",
             stdin=join_config(cp2, ca_hash, key))
    assert r.returncode == 0, r.stderr
    assert key not in r.stdout + r.stderr
    assert ("This node has joined the cluster and a new control plane instance was created:"
            in r.stdout and "* A new etcd member was added to the local/stacked etcd cluster."
            in r.stdout)
    assert '[certs] Using the existing "sa" key' in r.stdout
    shared = "cat /etc/kubernetes/pki/{sa.key,ca.crt,front-proxy-ca.key,etcd/ca.crt}"
    assert root(lab, cp2, shared).stdout == root(lab, master, shared).stdout  # downloaded

    # the upload is older than its two hours (the knob: kubeadm_certs.expires), then renewed
    data = state(lab)
    data["kubeadm_certs"]["expires"] = time.time() - 1
    (lab.cluster_dir / "state.json").write_text(json.dumps(data))
    r = root(lab, master, f"{ADMIN} kubectl -n kube-system get secret kubeadm-certs")
    assert r.stderr == 'Error from server (NotFound): secrets "kubeadm-certs" not found\n'
    r = root(lab, cp3, "cat > /root/join.yaml && kubeadm join --config /root/join.yaml",
             stdin=join_config(cp3, ca_hash, key))
    assert r.returncode == 1
    assert r.stderr.startswith(
        "error execution phase control-plane-prepare/download-certs: error downloading certs: "
        'error downloading the secret: Secret "kubeadm-certs" was not found in the '
        '"kube-system" Namespace. This Secret might have expired. Please, run `kubeadm init '
        "phase upload-certs --upload-certs` on a control plane to generate a new one\n"), \
        r.stderr
    new = os.urandom(32).hex()
    r = root(lab, master, f"sed 's/{key}/{new}/' /root/init.yaml > /root/new.yaml && kubeadm "
                          "init phase upload-certs --upload-certs --config /root/new.yaml "
                          "--skip-certificate-key-print; rm -f /root/new.yaml")
    assert (r.returncode, r.stdout) == (0, '[upload-certs] Storing the certificates in Secret '
                                           '"kubeadm-certs" in the "kube-system" Namespace\n'), \
        r.stderr
    r = root(lab, cp3, "kubeadm reset -f >/dev/null 2>&1; kubeadm join --config /root/join.yaml")
    assert "error decoding secret data with provided key: cipher: message authentication " \
           "failed" in r.stderr  # the old key no longer opens the new upload
    r = root(lab, master, f"sed 's/{key}/{new}/' /root/init.yaml > /root/new.yaml && kubeadm "
                          "init phase upload-certs --upload-certs --config /root/new.yaml; "
                          "rm -f /root/new.yaml")
    assert r.stdout.endswith("[upload-certs] Using certificate key:\n" + new + "\n"), r.stdout
    r = root(lab, cp3, f"kubeadm reset -f >/dev/null 2>&1; sed -i 's/{key}/{new}/' "
                       "/root/join.yaml && kubeadm join --config /root/join.yaml")
    assert r.returncode == 0, r.stderr

    # each control plane now names itself; three healthy members; the verify checks
    for n in cps:
        hosts(lab, n, n.address)
    assert sorted(m["name"] for m in members(lab, master)) == sorted(n.name for n in cps)
    r = root(lab, cp3, f"{ADMIN} kubectl -n kube-system exec etcd-{cp3.name} -- "
                       + ETCDCTL.format(addr=cp3.address) + " endpoint health")
    assert r.returncode == 0 and "is healthy" in r.stdout + r.stderr, r.stderr
    r = root(lab, cp2, f"{ADMIN} kubectl get pods -n kube-system -o json")
    names = {p["metadata"]["name"] for p in json.loads(r.stdout)["items"]}
    assert {f"{c}-{n.name}" for n in cps for c in ("etcd", "kube-apiserver",
                                                   "kube-controller-manager",
                                                   "kube-scheduler")} <= names
    r = root(lab, master, f"{ADMIN} kubectl get endpoints kubernetes -o json")
    assert sorted(a["ip"] for a in json.loads(r.stdout)["subsets"][0]["addresses"]) == \
        sorted(n.address for n in cps)


def test_workers_join_through_haproxy(lab, roles):
    cps, (w1, w2) = roles
    ca_hash = state(lab)["ca_hash"]
    admin = root(lab, cps[0], "cat /etc/kubernetes/admin.conf").stdout
    # w1: EL7's haproxy (base); w2: EL9's (AppStream, its unit's ExecStartPre config check)
    for w, pkg in ((w1, "haproxy"), (w2, "--enablerepo=el9-AppStream-x86_64-os haproxy-2.4.22")):
        hosts(lab, w, "127.0.0.1")
        r = root(lab, w, f"yum install -y -q {pkg} >/dev/null && cat > /etc/haproxy/haproxy.cfg"
                         " && systemctl enable -q --now haproxy && systemctl is-active haproxy",
                 stdin=haproxy_cfg([n.address for n in cps]))
        assert r.stdout == "active\n", r.stderr
        r = root(lab, w, "cat > /root/join.yaml && kubeadm join --config /root/join.yaml",
                 stdin=join_config(w, ca_hash))
        assert r.returncode == 0 and "This node has joined the cluster:" in r.stdout, r.stderr
        r = root(lab, w, "grep server: /etc/kubernetes/kubelet.conf; kubectl --kubeconfig "
                         "/etc/kubernetes/kubelet.conf get --raw /readyz")
        assert r.stdout == f"    server: https://{ENDPOINT}\nok", r.stderr
        root(lab, w, "mkdir -p /root/.kube && cat > /root/.kube/config", stdin=admin)
    r = root(lab, cps[0], f"{ADMIN} kubectl get nodes -o name")
    assert r.stdout.split() == [f"node/{n.name}" for n in lab.nodes]
    # the URL's host must be in the API server's certificate; an unknown name is Go's lookup
    r = root(lab, w1, "kubectl --server https://127.0.0.1:6443 get --raw /readyz")
    sans = ", ".join(["10.96.0.1"] + [n.address for n in cps])
    assert r.stderr == ("Unable to connect to the server: tls: failed to verify certificate: "
                        f"x509: certificate is valid for {sans}, not 127.0.0.1\n"), r.stderr
    r = root(lab, w1, "kubectl --server https://nosuch.cluster.local:6443 get nodes")
    assert r.stderr == ("Unable to connect to the server: dial tcp: lookup nosuch.cluster.local "
                        "on 127.0.0.1:53: no such host\n"), r.stderr

    # haproxy down: nothing listens on 127.0.0.1:6443; all backends down: haproxy closes
    r = root(lab, w1, "systemctl stop haproxy; kubectl get nodes; systemctl start haproxy")
    assert r.stderr == (f"The connection to the server {ENDPOINT} was refused - did you "
                        "specify the right host or port?\n")
    r = root(lab, w1, "kubectl get nodes -o name")
    assert r.returncode == 0, r.stderr
    r = root(lab, w2, "cp /etc/haproxy/haproxy.cfg /root/good.cfg && cat > "
                      "/etc/haproxy/haproxy.cfg && systemctl restart haproxy && kubectl get "
                      "nodes", stdin=haproxy_cfg([f"{lab.nodes[0].address[:-2]}99"]))
    assert r.stderr == "Unable to connect to the server: EOF\n", r.stderr

    # an invalid config: EL9's unit refuses to start (ExecStartPre), EL7's starts and dies
    bad = "frontend f\n    bind 127.0.0.1:6443\n    bogus_keyword\n"
    r = root(lab, w2, "cat > /etc/haproxy/haproxy.cfg && systemctl restart haproxy; echo "
                      "rc=$?; systemctl is-active haproxy; haproxy -c -f /etc/haproxy/haproxy.cfg",
             stdin=bad)
    assert r.stdout == "rc=1\nfailed\n", r.stdout  # -q: the unit's check prints nothing
    assert r.stderr.startswith("Job for haproxy.service failed because the control process "
                               "exited with error code."), r.stderr
    assert "unknown keyword 'bogus_keyword' in 'frontend' section" in r.stderr
    r = root(lab, w1, "cp /etc/haproxy/haproxy.cfg /root/good.cfg && cat > "
                      "/etc/haproxy/haproxy.cfg && systemctl restart haproxy; echo rc=$?; "
                      "systemctl is-active haproxy", stdin=bad)
    assert r.stdout == "rc=0\nfailed\n", r.stdout + r.stderr
    for w in (w1, w2):
        r = root(lab, w, "cp /root/good.cfg /etc/haproxy/haproxy.cfg && systemctl restart "
                         "haproxy && kubectl get nodes -o name >/dev/null")
        assert r.returncode == 0, r.stderr


def test_dead_control_plane(lab, roles):
    """A control plane stopped dead: its API server is gone, the endpoint still answers
    everywhere else; its member is removed through a survivor and its node deleted."""
    (master, cp2, cp3), (w1, _) = roles
    cp3.stop()
    r = root(lab, master, f"{ADMIN} kubectl --server https://{cp3.address}:6443 get --raw "
                          "/readyz")
    assert r.stderr == (f"The connection to the server {cp3.address}:6443 was refused - did "
                        "you specify the right host or port?\n")
    for n in (master, cp2, w1):
        r = root(lab, n, f"{ADMIN if n is not w1 else ''} kubectl --server https://{ENDPOINT} "
                         "get --raw /readyz")
        assert (r.returncode, r.stdout) == (0, "ok"), r.stderr
    r = root(lab, master, f"{ADMIN} kubectl get node {cp3.name} -o json")
    assert json.loads(r.stdout)["status"]["conditions"][0]["status"] == "Unknown"
    gone = next(m for m in members(lab, master) if m["name"] == cp3.name)
    r = root(lab, master, f"{ADMIN} kubectl -n kube-system exec etcd-{master.name} -- "
                          + ETCDCTL.format(addr=master.address)
                          + f" member remove {gone['ID']:x}; {ADMIN} kubectl delete node "
                          f"{cp3.name}")
    assert r.returncode == 0 and f'node "{cp3.name}" deleted' in r.stdout, r.stderr
    assert sorted(m["name"] for m in members(lab, master)) == [master.name, cp2.name]


def test_reset_control_plane_removes_its_member(lab, roles):
    (master, cp2, _), _ = roles
    r = root(lab, cp2, "kubeadm reset -f")
    assert r.returncode == 0, r.stderr
    assert "[reset] Deleted contents of the etcd data directory: /var/lib/etcd" in r.stdout
    assert "Failed to remove etcd member" not in r.stderr
    assert [m["name"] for m in members(lab, master)] == [master.name]
    r = root(lab, master, f"{ADMIN} kubectl get --raw /readyz")
    assert r.stdout == "ok", r.stderr  # one member, its own quorum
    wait_for(lambda: root(lab, cp2, "pgrep -x etcd").returncode == 1, timeout=15)
