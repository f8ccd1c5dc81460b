"""The kubeadm stand-in (1.20.10) over SSH: version, config images, tokens, init's preflight
refusals and --ignore-preflight-errors, reset's question, the kubelet's journal, calls.log.
Texts are those of kubernetes release-1.20 (cmd/kubeadm/app/cmd/*.go, preflight/checks.go)."""

from __future__ import annotations

import json
import re

import pytest
from test_k8s_lab import prepare, root, ssh

from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]
REPO = "registry.aliyuncs.com/google_containers"
HINT = "To see the stack trace of this error execute with --v=5 or higher"
NO_ADMIN = ("failed to load admin kubeconfig: open /etc/kubernetes/admin.conf: no such file or "
            "directory\n" + HINT + "\n")
TAIL = ("[preflight] If you know what you are doing, you can make a check non-fatal with "
        "`--ignore-preflight-errors=...`\n" + HINT + "\n")
INIT = f"kubeadm init --kubernetes-version v1.20.10 --image-repository {REPO} " \
       "--pod-network-cidr 10.244.0.0/16"


@pytest.fixture(scope="module")
def lab():
    with module_lab(1) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        prepare(the_lab, the_lab.nodes[0])
        yield the_lab


def fatal(*lines: str) -> str:
    """kubeadm's preflight failure on stderr."""
    return ("error execution phase preflight: [preflight] Some fatal errors occurred:\n"
            + "".join(f"\t[ERROR {line}\n" for line in lines) + TAIL)


def test_version_and_config_images(lab):
    node = lab.nodes[0]
    r = root(lab, node, "kubeadm version; kubeadm version -o short")
    assert r.stdout.splitlines() == [
        'kubeadm version: &version.Info{Major:"1", Minor:"20", GitVersion:"v1.20.10", '
        'GitCommit:"8152330a2b6ca3621196e62966ef761b8f5a61bb", GitTreeState:"clean", '
        'BuildDate:"2021-08-11T18:05:14Z", GoVersion:"go1.15.15", Compiler:"gc", '
        'Platform:"linux/amd64"}', "v1.20.10"]
    r = root(lab, node, "kubeadm version -o json")
    assert json.loads(r.stdout)["clientVersion"]["gitVersion"] == "v1.20.10"
    r = root(lab, node, "kubeadm version -o bogus")
    assert (r.returncode, r.stderr) == (1, "invalid output format: bogus\n" + HINT + "\n")

    # no --kubernetes-version: stable-1 cannot be fetched, the client version is used
    r = root(lab, node, "kubeadm config images list")
    assert r.stdout.split() == [
        "k8s.gcr.io/kube-apiserver:v1.20.10", "k8s.gcr.io/kube-controller-manager:v1.20.10",
        "k8s.gcr.io/kube-scheduler:v1.20.10", "k8s.gcr.io/kube-proxy:v1.20.10",
        "k8s.gcr.io/pause:3.2", "k8s.gcr.io/etcd:3.4.13-0", "k8s.gcr.io/coredns:1.7.0"]
    assert re.search(r"^W\d{4} [\d:.]+ +\d+ version.go:102\] could not fetch a Kubernetes "
                     r"version from the internet: unable to get URL \"https://dl.k8s.io/release/"
                     r"stable-1.txt\"", r.stderr, re.M), r.stderr
    assert "version.go:103] falling back to the local client version: v1.20.10" in r.stderr
    r = root(lab, node, f"kubeadm config images list --kubernetes-version 1.20.10 "
             f"--image-repository {REPO}")
    assert r.stdout.split()[4:] == [f"{REPO}/pause:3.2", f"{REPO}/etcd:3.4.13-0",
                                    f"{REPO}/coredns:1.7.0"] and r.stderr == ""
    r = root(lab, node, "kubeadm config images list --kubernetes-version v1.20.10 --bogus")
    assert (r.returncode, r.stderr) == (1, "unknown flag: --bogus\n" + HINT + "\n")
    r = root(lab, node, "kubeadm config")
    assert r.returncode == 1 and 'missing subcommand; "config" is not meant to be run on its ' \
        'own' in r.stderr

    r = root(lab, node, f"kubeadm config images pull --kubernetes-version v1.20.10 "
             f"--image-repository {REPO}; docker images --format '{{{{.Repository}}}}:"
             "{{.Tag}}' | sort")
    assert r.returncode == 0, r.stderr
    assert f"[config/images] Pulled {REPO}/coredns:1.7.0\n" in r.stdout
    assert f"{REPO}/etcd:3.4.13-0\n" in r.stdout
    # the default registry is not in the lab's catalogue for this tag: the real docker error
    r = root(lab, node, "kubeadm config images pull --kubernetes-version v1.20.10 "
             "--image-repository registry.example.com/k8s")
    assert r.returncode == 1
    assert r.stderr.startswith('failed to pull image "registry.example.com/k8s/kube-apiserver:'
                               'v1.20.10": output: '), r.stderr
    assert r.stderr.endswith(", error: exit status 1\n" + HINT + "\n")


def test_token_commands_need_admin_conf(lab):
    node = lab.nodes[0]
    for cmd in ("token create", "token create --print-join-command", "token list",
                "token delete abcdef"):
        r = root(lab, node, f"kubeadm {cmd}")
        assert (r.returncode, r.stdout, r.stderr) == (1, "", NO_ADMIN), cmd
    r = root(lab, node, "kubeadm token generate")
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}\n", r.stdout)
    r = root(lab, node, "kubeadm token")
    assert r.returncode == 1 and 'missing subcommand; "token" is not meant to be run on its ' \
        "own" in r.stderr


def test_kubelet_journal_before_init(lab):
    node = lab.nodes[0]
    r = root(lab, node, "systemctl is-active kubelet; journalctl -u kubelet --no-pager")
    path = "/var/lib/kubelet/config.yaml"
    assert r.stdout.startswith("active\n")  # Restart=always keeps the unit active
    assert re.search(rf"kubelet\[\d+\]: F\d{{4}} [\d:.]+ +\d+ server.go:198\] failed to load "
                     rf"Kubelet config file {path}, error failed to read kubelet config file "
                     rf'"{path}", error: open {path}: no such file or directory$', r.stdout,
                     re.M), r.stdout
    assert "kubelet.service: main process exited, code=exited, status=255/n/a" in r.stdout
    r = ssh(lab, node, "journalctl -u kubelet --no-pager")  # not in systemd-journal
    assert "Hint: You are currently not seeing messages from other users" in r.stderr


def test_init_preflight_refusals(lab):
    node = lab.nodes[0]
    r = ssh(lab, node, INIT)
    assert (r.returncode, r.stderr) == (1, fatal("IsPrivilegedUser]: user is not running as "
                                                 "root")), r.stderr
    cases = [
        ("sysctl -qw net.ipv4.ip_forward=0", "sysctl -qw net.ipv4.ip_forward=1",
         ["FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward contents "
          "are not set to 1"]),
        ("sysctl -qw net.bridge.bridge-nf-call-iptables=0",
         "sysctl -qw net.bridge.bridge-nf-call-iptables=1",
         ["FileContent--proc-sys-net-bridge-bridge-nf-call-iptables]: /proc/sys/net/bridge/"
          "bridge-nf-call-iptables contents are not set to 1"]),
        ("modprobe -r br_netfilter", "modprobe br_netfilter && sysctl -qw "
         "net.bridge.bridge-nf-call-iptables=1",
         ["FileContent--proc-sys-net-bridge-bridge-nf-call-iptables]: /proc/sys/net/bridge/"
          "bridge-nf-call-iptables does not exist"]),
        ("swapon -a", "swapoff -a",
         ["Swap]: running with swap on is not supported. Please disable swap"]),
        ("systemctl stop docker", "systemctl start docker",
         ["CRI]: container runtime is not running: output: Client:\n Debug Mode: false\n\n"
          "Server:\nERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
          "Is the docker daemon running?\nerrors pretty printing info\n, error: exit status 1",
          "Service-Docker]: docker service is not active, please run 'systemctl start "
          "docker.service'"]),
        ("mkdir -p /etc/kubernetes/manifests /var/lib/etcd/member && "
         "touch /etc/kubernetes/manifests/kube-apiserver.yaml", "",
         ["FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: /etc/kubernetes/"
          "manifests/kube-apiserver.yaml already exists",
          "DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty"]),
    ]
    for before, after, errors in cases:
        r = root(lab, node, f"{before} && {INIT}")
        assert (r.returncode, r.stderr) == (1, fatal(*errors)), before + "\n" + r.stderr
        assert r.stdout.startswith("[init] Using Kubernetes version: v1.20.10\n[preflight] "
                                   "Running pre-flight checks\n")
        assert root(lab, node, "test -e /etc/kubernetes/admin.conf").returncode == 1
        if after:
            assert root(lab, node, after).returncode == 0

    # the manifest and etcd data of the last case, ignored: warnings, then a cluster
    ignore = ("FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml,"
              "dirAVAILABLE--var-lib-etcd")  # names are case-insensitive
    r = root(lab, node, f"{INIT} --ignore-preflight-errors={ignore}")
    assert r.returncode == 0, r.stderr
    assert ("\t[WARNING FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: /etc/"
            "kubernetes/manifests/kube-apiserver.yaml already exists\n") in r.stdout
    assert "\t[WARNING DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty\n" in r.stdout
    assert "Your Kubernetes control-plane has initialized successfully!" in r.stdout
    # a second init meets the running control plane
    r = root(lab, node, INIT)
    assert r.returncode == 1 and "\t[ERROR Port-6443]: Port 6443 is in use\n" in r.stderr
    assert "\t[ERROR Port-10250]: Port 10250 is in use\n" in r.stderr


def test_tokens(lab):
    node = lab.nodes[0]
    data = json.loads((lab.cluster_dir / "state.json").read_text())
    r = root(lab, node, "kubeadm token create --ttl 1h")
    token = r.stdout.strip()
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token), r.stdout
    r = root(lab, node, "kubeadm token create --ttl 2h --print-join-command")
    assert re.fullmatch(rf"kubeadm join {re.escape(node.address)}:6443 --token "
                        rf"[a-z0-9]{{6}}\.[a-z0-9]{{16}}     --discovery-token-ca-cert-hash "
                        rf"{data['ca_hash']} \n", r.stdout), r.stdout
    r = root(lab, node, "kubeadm token create --ttl 1x")
    assert r.returncode == 1 and r.stderr.startswith(
        'invalid argument "1x" for "--ttl" flag: time: invalid duration "1x"')
    r = root(lab, node, "kubeadm token list")
    head, *rows = r.stdout.splitlines()
    assert head.split() == ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA", "GROUPS"]
    mine = next(row.split() for row in rows if row.startswith(token))
    assert mine[1] in ("59m", "60m") and mine[3] == "authentication,signing", rows
    assert mine[4:] == ["<none>", "system:bootstrappers:kubeadm:default-node-token"]
    assert any("The default bootstrap token generated by 'kubeadm init'." in row for row in rows)
    r = root(lab, node, f"kubeadm token delete {token}")
    assert r.stdout == f'bootstrap token "{token[:6]}" deleted\n'
    assert token not in root(lab, node, "kubeadm token list").stdout
    r = root(lab, node, "kubeadm token delete abcdef")
    assert (r.returncode, r.stderr) == (1, 'failed to delete bootstrap token "abcdef": secrets '
                                           '"bootstrap-token-abcdef" not found\n' + HINT + "\n")
    r = root(lab, node, "kubeadm token delete")
    assert r.returncode == 1 and "missing subcommand; 'token delete' is missing token" in r.stderr
    r = ssh(lab, node, "kubeadm token list")  # the admin kubeconfig is root's (0600)
    assert r.returncode == 1 and r.stderr.startswith("failed to load admin kubeconfig: open "
                                                     "/etc/kubernetes/admin.conf: permission")


def test_reset_asks_and_answering_no_keeps_everything(lab):
    node = lab.nodes[0]
    r = root(lab, node, "kubeadm reset", stdin="N\n")
    assert r.returncode == 1
    assert r.stdout.endswith("[reset] WARNING: Changes made to this host by 'kubeadm init' or "
                             "'kubeadm join' will be reverted.\n[reset] Are you sure you want to "
                             "proceed? [y/N]: ")
    assert r.stderr == "error execution phase preflight: aborted reset operation\n" + HINT + "\n"
    r = root(lab, node, "ls /etc/kubernetes/admin.conf /etc/kubernetes/manifests/etcd.yaml && "
             "systemctl is-active kubelet")
    assert r.returncode == 0, r.stderr


def test_kubelet_journal_swap_and_cgroup_driver_mismatch(lab):
    node = lab.nodes[0]
    r = root(lab, node, "swapon -a && systemctl restart kubelet; journalctl -u kubelet -n 8 "
             "--no-pager; swapoff -a")
    assert re.search(r"server.go:292\] failed to run Kubelet: running with swap on is not "
                     r"supported, please disable swap! or set --fail-swap-on flag to false. "
                     r"/proc/swaps contained: \[Filename\t+Type\t+Size\tUsed\tPriority ",
                     r.stdout), r.stdout
    daemon = '{"exec-opts": ["native.cgroupdriver=systemd"]}'
    r = root(lab, node, f"echo '{daemon}' > /etc/docker/daemon.json && systemctl restart docker "
             "&& systemctl restart kubelet; journalctl -u kubelet -n 8 --no-pager")
    assert ('server.go:292] failed to run Kubelet: misconfiguration: kubelet cgroup driver: '
            '"cgroupfs" is different from docker cgroup driver: "systemd"') in r.stdout, r.stdout
    r = root(lab, node, "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes")
    assert " NotReady " in r.stdout
    r = root(lab, node, "echo '{}' > /etc/docker/daemon.json && systemctl restart docker && "
             "systemctl restart kubelet; journalctl -u kubelet -n 3 --no-pager")
    assert "server.go:416] Version: v1.20.10" in r.stdout and "failed" not in r.stdout


def test_calls_are_recorded(lab):
    node = lab.nodes[0]
    r = ssh(lab, node, "kubectl version --client >/dev/null; docker version >/dev/null 2>&1; "
            "cat /var/lib/lab/calls.log")
    calls = [json.loads(line) for line in r.stdout.splitlines()]
    by = {(c["cmd"], c["uid"], tuple(c["argv"])) for c in calls}
    assert ("kubeadm", 0, ("token", "create", "--ttl", "1h")) in by
    assert ("kubeadm", 0, ("reset",)) in by
    assert any(c["cmd"] == "kubectl" and c["argv"] == ["version", "--client"] and c["uid"] != 0
               for c in calls)
    assert ("docker", 0, ("pull", f"{REPO}/etcd:3.4.13-0")) in by  # by kubeadm, as root
    assert any(c["cmd"] == "docker" and c["argv"] == ["version"] and c["uid"] != 0 for c in calls)
    assert all(isinstance(c["t"], float) for c in calls)
