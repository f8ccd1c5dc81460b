"""The kubectl stand-in (1.20) over SSH against a 3-node lab cluster: kubeconfig refusals, node
readiness and its reasons, get/describe/wait, apply and delete -f, cordon/drain/uncordon,
delete node, cluster-info, version. Texts of kubectl 1.20 (staging/src/k8s.io/kubectl)."""

from __future__ import annotations

import json

import pytest
from test_k8s_lab import FLANNEL, INIT, kubeadm_cluster, root, ssh

from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]
REFUSED = ("The connection to the server {} was refused - did you specify the right host or "
           "port?\n")
INIT_IPTABLES = INIT.split("---\napiVersion: kubeproxy")[0]
CNI_DOWN = ("runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
            "message:docker: network plugin is not ready: cni config uninitialized")


@pytest.fixture(scope="module")
def lab():
    with module_lab(3) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        kubeadm_cluster(the_lab, INIT_IPTABLES, None, kubeconfig=False)
        root(the_lab, the_lab.nodes[0], "cat > /root/flannel.yaml", stdin=FLANNEL)
        yield the_lab


def kubectl(lab, args: str, stdin: str | None = None):
    """kubectl as the login user `lab` on master1, with its own kubeconfig."""
    return ssh(lab, lab.nodes[0], f"kubectl {args}", stdin=stdin)


def nodes(lab) -> dict[str, str]:
    r = kubectl(lab, "get nodes")
    assert r.returncode == 0, r.stderr
    return {f[0]: f[1] for f in (line.split() for line in r.stdout.splitlines()[1:])}


def test_kubeconfig_missing_wrong_server_stale_ca(lab):
    master = lab.nodes[0]
    r = kubectl(lab, "get nodes")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", REFUSED.format("localhost:8080"))
    r = kubectl(lab, "get nodes --kubeconfig /nonexistent")
    assert (r.returncode, r.stderr) == (1, "error: stat /nonexistent: no such file or directory\n")
    r = ssh(lab, master, "mkdir -p $HOME/.kube && sudo cp -i /etc/kubernetes/admin.conf "
            "$HOME/.kube/config && sudo chown $(id -u):$(id -g) $HOME/.kube/config && "
            "sed 's/:6443$/:6444/' $HOME/.kube/config > /tmp/port.conf && "
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout /tmp/k -out /tmp/ca.crt -days 1 "
            "-subj /CN=kubernetes 2>/dev/null && python3 -c \"import base64,re,sys; "
            "t=open(sys.argv[1]).read(); ca=base64.b64encode(open('/tmp/ca.crt','rb').read())"
            ".decode(); print(re.sub(r'certificate-authority-data: \\S+', "
            "'certificate-authority-data: '+ca, t), end='')\" $HOME/.kube/config > /tmp/ca.conf")
    assert r.returncode == 0, r.stderr
    r = kubectl(lab, "get nodes --kubeconfig /tmp/port.conf")
    assert (r.returncode, r.stderr) == (1, REFUSED.format(f"{master.address}:6444"))
    r = ssh(lab, master, "KUBECONFIG=/tmp/ca.conf kubectl get pods -A")
    assert (r.returncode, r.stderr) == (1, (
        "Unable to connect to the server: x509: certificate signed by unknown authority "
        '(possibly because of "crypto/rsa: verification error" while trying to verify '
        'candidate authority certificate "kubernetes")\n'))
    r = kubectl(lab, "frobnicate")
    assert r.returncode == 1 and r.stderr.startswith('Error: unknown command "frobnicate" for '
                                                     '"kubectl"')


def test_not_ready_without_cni_then_ready(lab):
    assert set(nodes(lab).values()) == {"NotReady"}
    r = kubectl(lab, "describe node master1")
    assert f"  Ready   False   KubeletNotReady   {CNI_DOWN}" in r.stdout, r.stdout
    assert "(CNI pod on this node: no CNI DaemonSet applied)" in r.stdout
    r = kubectl(lab, "get pods -n kube-system")
    coredns = [line.split() for line in r.stdout.splitlines() if line.startswith("coredns-")]
    assert len(coredns) == 2 and all(c[1:3] == ["0/1", "Pending"] for c in coredns), r.stdout
    r = kubectl(lab, f"describe pod -n kube-system {coredns[0][0]}")
    assert ("FailedScheduling  " in r.stdout and "default-scheduler  0/3 nodes are available: 3 "
            "node(s) had taint {node.kubernetes.io/not-ready: }, that the pod didn't tolerate."
            in r.stdout), r.stdout
    r = kubectl(lab, "wait --for=condition=Ready node/node1 --timeout=2s")
    assert (r.returncode, r.stderr) == (1, "error: timed out waiting for the condition on "
                                           "nodes/node1\n")

    r = kubectl(lab, "apply -f -", stdin=FLANNEL)
    assert r.stdout == ("namespace/kube-flannel created\nconfigmap/kube-flannel-cfg created\n"
                        "daemonset.apps/kube-flannel-ds created\n"), r.stderr
    r = kubectl(lab, "apply -f -", stdin=FLANNEL)
    assert "daemonset.apps/kube-flannel-ds unchanged\n" in r.stdout
    r = kubectl(lab, "get daemonset -n kube-flannel kube-flannel-ds -o name")
    assert (r.returncode, r.stdout) == (0, "daemonset.apps/kube-flannel-ds\n"), r.stderr
    r = kubectl(lab, "get ds -n kube-system kube-flannel-ds")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): daemonsets.apps '
                                           '"kube-flannel-ds" not found\n')
    r = kubectl(lab, "get daemonsets -A")
    assert r.stdout.split("\n")[0].split()[:3] == ["NAMESPACE", "NAME", "DESIRED"], r.stdout
    r = kubectl(lab, "wait --for=condition=Ready nodes --all --timeout=60s")
    assert r.stdout == "".join(f"node/{n} condition met\n" for n in ("master1", "node1", "node2"))
    r = kubectl(lab, "get nodes -o wide")
    head, *rows = r.stdout.splitlines()
    assert head.split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP",
                            "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert rows[0].split()[:3] == ["master1", "Ready", "control-plane,master"]
    assert rows[1].split()[5:] == [lab.nodes[1].address, "<none>", "CentOS", "Linux", "7",
                                   "(Core)", "3.10.0-1160.el7.x86_64", "docker://19.3.15"]
    assert kubectl(lab, "get nodes -o name").stdout == "node/master1\nnode/node1\nnode/node2\n"
    bare = kubectl(lab, "get nodes --no-headers").stdout.splitlines()
    assert [ln.split()[:2] for ln in bare] == [[n, "Ready"] for n in ("master1", "node1", "node2")]
    one = json.loads(kubectl(lab, "get node node1 -o json").stdout)
    assert one["kind"] == "Node" and one["status"]["conditions"][0]["status"] == "True"
    every = json.loads(kubectl(lab, "get nodes -o json").stdout)
    assert every["kind"] == "List" and len(every["items"]) == 3
    r = kubectl(lab, "get node nosuch")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): nodes "nosuch" not '
                                           'found\n')
    r = kubectl(lab, "get pods -A")
    assert r.stdout.count(" Running ") == 3 * 2 + 4 + 2, r.stdout  # proxy+flannel, static, dns


def test_describe_node_says_why_not_ready(lab):
    node2 = lab.nodes[2]
    daemon = '{"exec-opts": ["native.cgroupdriver=systemd"]}'
    cases = [
        ("systemctl stop kubelet", "systemctl start kubelet",
         "  Ready   Unknown NodeStatusUnknown Kubelet stopped posting node status."),
        ("swapon -a && systemctl restart kubelet", "swapoff -a && systemctl restart kubelet",
         "  (kubelet: failed to run Kubelet: running with swap on is not supported, please "
         "disable swap! or set --fail-swap-on flag to false. /proc/swaps contained: "),
        (f"echo '{daemon}' > /etc/docker/daemon.json && systemctl restart docker",
         "echo '{}' > /etc/docker/daemon.json && systemctl restart docker",
         '  (kubelet: failed to run Kubelet: misconfiguration: kubelet cgroup driver: '
         '"cgroupfs" is different from docker cgroup driver: "systemd")'),
        ("modprobe -r br_netfilter && systemctl restart kubelet",
         "modprobe br_netfilter && sysctl -qw net.bridge.bridge-nf-call-iptables=1 && "
         "systemctl restart kubelet",
         "  (CNI pod on this node: Failed to check br_netfilter: stat /proc/sys/net/bridge/"
         "bridge-nf-call-iptables: no such file or directory)"),
    ]
    for before, after, why in cases:
        assert root(lab, node2, before).returncode == 0, before
        assert nodes(lab)["node2"] == "NotReady", before
        r = kubectl(lab, "describe node node2")
        assert why in r.stdout, before + "\n" + r.stdout
        assert root(lab, node2, after).returncode == 0, after
        assert nodes(lab)["node2"] == "Ready", after

    # flannel's Network must be the cluster's podSubnet
    other = FLANNEL.replace("10.244.0.0/16", "10.100.0.0/16")
    assert kubectl(lab, "apply -f -", stdin=other).stdout.count(" configured") == 1
    assert set(nodes(lab).values()) == {"NotReady"}
    cidr = json.loads((lab.cluster_dir / "state.json").read_text())["nodes"]["node1"]["pod_cidr"]
    r = kubectl(lab, "describe node node1")
    assert ('(CNI pod on this node: Error registering network: failed to acquire lease: subnet '
            f'"10.100.0.0/16" specified in the flannel net config doesn\'t contain "{cidr}" '
            'PodCIDR of the "node1" node)') in r.stdout, r.stdout
    r = kubectl(lab, "get pods -n kube-flannel")
    assert r.stdout.count(" CrashLoopBackOff ") == 3, r.stdout
    kubectl(lab, "apply -f -", stdin=FLANNEL)
    assert set(nodes(lab).values()) == {"Ready"}


def test_cordon_drain_uncordon(lab):
    assert kubectl(lab, "cordon node1").stdout == "node/node1 cordoned\n"
    assert kubectl(lab, "cordon node1").stdout == "node/node1 already cordoned\n"
    assert nodes(lab)["node1"] == "Ready,SchedulingDisabled"
    assert kubectl(lab, "uncordon node1").stdout == "node/node1 uncordoned\n"
    assert nodes(lab)["node1"] == "Ready"

    dns_on_node1 = [line.split()[0] for line in kubectl(
        lab, "get pods -n kube-system -o wide").stdout.splitlines()
        if line.startswith("coredns-") and " node1 " in line]
    assert dns_on_node1  # coredns runs on master1 and node1
    r = kubectl(lab, "drain node1")
    ds = sorted(line.split()[0] + "/" + line.split()[1] for line in kubectl(
        lab, "get pods -A -o wide").stdout.splitlines()
        if " node1 " in line and ("kube-proxy-" in line or "kube-flannel-ds-" in line))
    assert r.returncode == 1 and r.stdout == "node/node1 cordoned\n"
    assert r.stderr.startswith('error: unable to drain node "node1", aborting command...\n\n'
                               "There are pending nodes to be drained:\n node1\n"
                               "error: cannot delete DaemonSet-managed Pods (use "
                               "--ignore-daemonsets to ignore): ")
    assert sorted(r.stderr.strip().rsplit(": ", 1)[1].split(", ")) == ds
    r = kubectl(lab, "drain node1 --ignore-daemonsets")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"node/node1 already cordoned\nevicting pod kube-system/{dns_on_node1[0]}"
                        f"\npod/{dns_on_node1[0]} evicted\nnode/node1 drained\n")
    assert r.stderr.startswith("WARNING: ignoring DaemonSet-managed Pods: ")
    assert nodes(lab)["node1"] == "Ready,SchedulingDisabled"
    r = kubectl(lab, "get pods -n kube-system -o wide")
    assert not [line for line in r.stdout.splitlines() if line.startswith("coredns-")
                and " node1 " in line], r.stdout
    assert kubectl(lab, "uncordon node1").stdout == "node/node1 uncordoned\n"
    r = kubectl(lab, "drain nosuch")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): nodes "nosuch" not '
                                           'found\n')


def test_delete_f_and_delete_node(lab):
    r = kubectl(lab, "delete -f /tmp/nosuch.yaml")
    assert (r.returncode, r.stderr) == (1, 'error: the path "/tmp/nosuch.yaml" does not exist\n')
    r = ssh(lab, lab.nodes[0], "sudo cat /root/flannel.yaml > /tmp/flannel.yaml && "
            "kubectl delete -f /tmp/flannel.yaml")
    assert r.stdout == ('namespace "kube-flannel" deleted\nconfigmap "kube-flannel-cfg" '
                        'deleted\ndaemonset.apps "kube-flannel-ds" deleted\n'), r.stderr
    assert set(nodes(lab).values()) == {"NotReady"}
    r = kubectl(lab, "describe node node2")
    assert CNI_DOWN in r.stdout
    r = kubectl(lab, "delete -f /tmp/flannel.yaml")
    assert r.returncode == 1 and ('Error from server (NotFound): error when deleting '
                                  '"/tmp/flannel.yaml": daemonsets.apps "kube-flannel-ds" not '
                                  'found') in r.stderr, r.stderr
    r = kubectl(lab, "get pods -n kube-flannel")
    assert r.stderr == "No resources found in kube-flannel namespace.\n"

    assert kubectl(lab, "delete node node2").stdout == 'node "node2" deleted\n'
    assert set(nodes(lab)) == {"master1", "node1"}
    r = kubectl(lab, "delete node node2")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): nodes "node2" not '
                                           'found\n')


def test_cluster_info_and_version(lab):
    master = lab.nodes[0]
    r = kubectl(lab, "cluster-info")
    url = f"https://{master.address}:6443"
    assert r.stdout == (f"Kubernetes control plane is running at {url}\nKubeDNS is running at "
                        f"{url}/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy\n\n"
                        "To further debug and diagnose cluster problems, use 'kubectl "
                        "cluster-info dump'.\n")
    r = kubectl(lab, "version --short")
    assert r.stdout == "Client Version: v1.20.10\nServer Version: v1.20.10\n"
    r = kubectl(lab, "version")
    assert r.stdout.startswith('Client Version: version.Info{Major:"1", Minor:"20", '
                               'GitVersion:"v1.20.10"')
    assert '\nServer Version: version.Info{Major:"1", Minor:"20"' in r.stdout
    r = ssh(lab, master, "KUBECONFIG=/nonexistent kubectl version --client --short")
    assert (r.returncode, r.stdout) == (0, "Client Version: v1.20.10\n")
