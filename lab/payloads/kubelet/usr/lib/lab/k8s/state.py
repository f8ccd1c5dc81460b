"""The lab's cluster state (the API server's stand-in) and each node's facts.

/var/lib/lab-cluster/ is shared by every node of one lab (see STATE.md in lab/k8s/):
- state.json: the cluster (endpoint, CA, tokens, nodes, applied objects), updated under
  an exclusive flock on state.lock;
- nodes/<name>.json: facts a node's kubelet last reported about itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import time
from collections.abc import Iterator

from k8s import common
from k8s.common import hostname, out, run, write_file

ROOT = "/var/lib/lab-cluster"
STATE = f"{ROOT}/state.json"
LOCK = f"{ROOT}/state.lock"
FACTS = f"{ROOT}/nodes"
FAULTS = f"{ROOT}/faults.json"  # the tests' fault knobs (STATE.md), e.g. kube_proxy_down
KUBELET_DIR = "/var/lib/kubelet"
KUBELET_RUNNING = "/run/lab/kubelet/running"  # kept by the kubelet unit hooks
DOCKER_SNAPSHOT = "/run/lab/docker/daemon.json"  # kept by the docker unit hooks
# the lab registry: containerd.io's list (both runtime paths install containerd.io) + extras
CATALOGUES = ("/usr/share/lab/registry-catalogue.txt", f"{ROOT}/registry/catalogue.txt")


_HELD = [0]  # how deep this process is inside update(): it holds the exclusive lock then


def _read() -> dict:
    try:
        with open(STATE) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def load() -> dict:
    """The current cluster state ({} when no cluster was ever initialised), read under a shared
    flock on state.lock: update() rewrites state.json in place (truncate, write; the directory
    is not the login user's to rename in), so a reader without the lock could see it empty or
    half written and take a pod for gone ('pods "pod-env" not found' from a kubectl exec while
    another kubectl wrote the state)."""
    if _HELD[0]:
        return _read()
    try:
        fd = os.open(LOCK, os.O_RDONLY)
    except OSError:  # no cluster yet (or no lock file): nothing is being written
        return _read()
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return _read()
    finally:
        os.close(fd)


@contextlib.contextmanager
def update() -> Iterator[dict]:
    """Lock, load, let the caller change the state, write it back (in place).

    Files are world-writable: kubectl also runs as a login user with a kubeconfig.
    """
    os.makedirs(ROOT, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(OSError):
        os.chmod(LOCK, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD[0] += 1
        data = _read()
        yield data
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        sfd = os.open(STATE, os.O_WRONLY | os.O_CREAT, 0o666)
        with os.fdopen(sfd, "w") as fh:
            fh.truncate(0)
            fh.write(text)
        with contextlib.suppress(OSError):
            os.chmod(STATE, 0o666)
    finally:
        _HELD[0] = max(0, _HELD[0] - 1)
        os.close(fd)


def faults() -> dict:
    """The tests' fault knobs ({} without the file): {"kube_proxy_down": [node, ...]}."""
    try:
        with open(FAULTS) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def kube_proxy_down(node: str) -> bool:
    """The fault knob: NODE's kube-proxy container keeps exiting (CrashLoopBackOff) and left
    nothing in the node's network state, as after a reboot where it never came back up."""
    return node in (faults().get("kube_proxy_down") or [])


def uid(*parts: str) -> str:
    """A stable UUID-shaped metadata.uid for an object of this cluster."""
    h = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def live_tokens(data: dict, now: float | None = None) -> list[dict]:
    """Bootstrap tokens that have not expired."""
    now = time.time() if now is None else now
    return [t for t in data.get("tokens", []) if t.get("expires") is None or t["expires"] > now]


# ---- node facts ----------------------------------------------------------------------

def kubelet_node_name() -> str:
    """The name this node's kubelet registers with (kubeadm's flag file, else hostname)."""
    for arg in _flag_args():
        if arg.startswith("--hostname-override="):
            return arg.split("=", 1)[1]
    return hostname().lower()


def _flag_args() -> list[str]:
    """Flags of /var/lib/kubelet/kubeadm-flags.env then KUBELET_EXTRA_ARGS (later wins)."""
    args: list[str] = []
    for path, var in ((f"{KUBELET_DIR}/kubeadm-flags.env", "KUBELET_KUBEADM_ARGS"),
                      ("/etc/sysconfig/kubelet", "KUBELET_EXTRA_ARGS")):
        try:
            with open(path) as fh:
                for line in fh:
                    key, _, value = line.strip().partition("=")
                    if key == var:
                        args += value.strip().strip('"').strip("'").split()
        except OSError:
            pass
    return args


def kubelet_config() -> dict | None:
    """/var/lib/kubelet/config.yaml, None when missing."""
    try:
        with open(f"{KUBELET_DIR}/config.yaml") as fh:
            return common.yaml.safe_load(fh) or {}
    except OSError:
        return None


def kubelet_cgroup_driver(config: dict | None) -> str:
    """Effective driver: the last --cgroup-driver flag, else config.yaml, else cgroupfs."""
    driver = (config or {}).get("cgroupDriver") or "cgroupfs"
    for arg in _flag_args():
        if arg.startswith("--cgroup-driver="):
            driver = arg.split("=", 1)[1]
    return driver


def runtime_endpoint() -> str:
    """The kubelet's --container-runtime-endpoint when it is a CRI runtime other than docker's
    dockershim ('' on the docker path)."""
    from k8s import cri

    endpoint = ""
    for arg in _flag_args():
        if arg.startswith("--container-runtime-endpoint="):
            endpoint = arg.split("=", 1)[1]
    return "" if not endpoint or cri.is_dockershim(endpoint) else endpoint


def containerd_failure(config: dict, endpoint: str) -> list[str]:
    """Why the kubelet on a CRI endpoint would not run pods (journal texts, see kubelet).

    containerd down / cri disabled: the kubelet exits (run.go "command failed", texts of
    k8s.io/cri-api remote_runtime.go validateServiceConnection: 1.26-1.27 say "CRI v1 runtime
    API is not implemented", 1.28+ "validate CRI v1 runtime API"). Cgroup driver mismatch: the
    kubelet runs but no pod sandbox starts; kubelet cgroupfs with runc's systemd driver gives
    runc's specconv error (libcontainer/specconv/spec_linux.go).
    """
    from k8s import cri

    snap = cri.loaded() if cri.is_containerd(endpoint) else None
    km = common.minor(out("rpm", "-q", "--qf", "%{VERSION}", "kubelet"))
    path = endpoint.removeprefix("unix://")
    if snap is None:
        return ["failed to run Kubelet: validate service connection: validate CRI v1 runtime "
                f'API for endpoint "{endpoint}": rpc error: code = Unavailable desc = connection '
                'error: desc = "transport: Error while dialing: dial unix '
                f'{path}: connect: no such file or directory"']
    if snap.get("cri_disabled"):
        what = ("CRI v1 runtime API is not implemented for endpoint" if km < 28
                else "validate CRI v1 runtime API for endpoint")
        return [f'failed to run Kubelet: validate service connection: {what} "{endpoint}": '
                "rpc error: code = Unimplemented desc = unknown service runtime.v1.RuntimeService"]
    # KubeletCgroupDriverFromCRI (beta, on by default from 1.31; alpha off in 1.28-1.30): with
    # a runtime answering RuntimeConfig (containerd 2.0+) the kubelet logs "Using cgroup driver
    # setting received from the CRI runtime" and ignores its own cgroupDriver, so the drivers
    # cannot differ; containerd 1.x answers Unimplemented and the kubelet falls back to its
    # config (docs/RELEASE-FACTS.md 4), so the checks below still apply there.
    gate = (config.get("featureGates") or {}).get("KubeletCgroupDriverFromCRI", km >= 31)
    if snap.get("runtime_config") and gate and km >= 28:
        return []
    mine = kubelet_cgroup_driver(config)
    systemd = bool(snap.get("systemd_cgroup"))
    if mine == "cgroupfs" and systemd:
        return ["RunPodSandbox from runtime service failed: rpc error: code = Unknown desc = "
                "failed to create containerd task: failed to create shim task: OCI runtime "
                "create failed: runc create failed: expected cgroupsPath to be of format "
                '"slice:prefix:name" for systemd cgroups, got "/kubepods/burstable/pod'
                '<uid>/<id>" instead: unknown']
    if mine == "systemd" and not systemd:
        return ['lab: kubelet cgroup driver "systemd" but containerd runs runc with '
                "SystemdCgroup = false (pods run in cgroups the kubelet does not manage; real "
                "text not confirmed)"]
    return []


def swaps() -> list[str]:
    """Active swap lines of /proc/swaps (through the stand-in command)."""
    return out("cat", "/proc/swaps").splitlines()[1:]


def docker_driver(in_hook: bool = False) -> str | None:
    """The cgroup driver docker runs with, None when docker is not running.

    Unit hooks run while systemctl holds its lock, so there (IN_HOOK) the docker start
    hook's own snapshot is read instead of asking `docker info` (which asks systemctl).
    """
    if in_hook:
        try:
            with open(DOCKER_SNAPSHOT) as fh:
                return json.load(fh).get("cgroup_driver", "cgroupfs")
        except (OSError, ValueError):
            return None
    res = run("/usr/bin/docker", "info", "--format", "{{.CgroupDriver}}")
    return res.stdout.strip() if res.returncode == 0 else None


def kubelet_failure(config: dict | None, docker: str | None = "") -> list[str]:
    """Why a kubelet started now would exit (real journal texts); [] when it runs.

    DOCKER is docker's running cgroup driver when known ('' = ask docker, None = down).
    """
    if config is None:
        path = f"{KUBELET_DIR}/config.yaml"
        return [f"failed to load Kubelet config file {path}, error failed to read kubelet "
                f'config file "{path}", error: open {path}: no such file or directory']
    refused = cgroup_v1_refusal(config)
    if refused:
        return [refused]
    lines = swaps()
    fail_swap = config.get("failSwapOn", True) and "--fail-swap-on=false" not in _flag_args()
    if lines and fail_swap:
        shown = " ".join(["Filename\t\t\t\tType\t\tSize\tUsed\tPriority", *lines])
        return ["failed to run Kubelet: running with swap on is not supported, please disable "
                f"swap! or set --fail-swap-on flag to false. /proc/swaps contained: [{shown}]"]
    endpoint = runtime_endpoint()
    if endpoint:
        return containerd_failure(config, endpoint)
    docker = docker_driver() if docker == "" else docker
    if docker is None:
        return ["failed to run Kubelet: failed to get docker version: Cannot connect to the "
                "Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"]
    mine = kubelet_cgroup_driver(config)
    if mine != docker:
        return [f'failed to run Kubelet: misconfiguration: kubelet cgroup driver: "{mine}" '
                f'is different from docker cgroup driver: "{docker}"']
    return []


# KubeletConfiguration failCgroupV1 (1.31+, default true from 1.35; docs/RELEASE-FACTS.md 3):
# validation_linux.go's text, 1.35+ as PR #134298 renamed it; wrapped as the kubelet logs it
CGROUP_V1_REFUSED = {31: "cgroup v1 support is in maintenance mode",
                     35: "cgroup v1 support is unsupported and will be removed in a future "
                         "release"}


def cgroup_v1_refusal(config: dict) -> str | None:
    """Why a 1.31+ kubelet on a cgroup v1 node refuses its config (failCgroupV1 or
    --fail-cgroupv1, the latter winning), None when it runs."""
    km = common.minor(out("rpm", "-q", "--qf", "%{VERSION}", "kubelet"))
    if km < 31 or not common.cgroup_v1():
        return None
    fail = config.get("failCgroupV1", km >= 35)
    for arg in _flag_args():
        if arg.startswith("--fail-cgroupv1"):
            fail = arg.partition("=")[2].lower() in ("", "true", "1")
    if not fail:
        return None
    why = CGROUP_V1_REFUSED[35 if km >= 35 else 31]
    return ("failed to validate kubelet configuration, error: kubelet is configured to not run "
            f"on a host using cgroup v1. {why}, path: &TypeMeta{{Kind:,APIVersion:,}}")


def collect_facts(event: str = "", docker: str | None = "") -> dict:
    """What this node's kubelet would report now.

    EVENT 'start'/'stop' comes from the unit hooks, which run before systemctl records the
    new state; DOCKER is as in kubelet_failure (docker's hooks pass it the same way).
    """
    config = kubelet_config()
    if event in ("start", "stop"):
        active = event == "start"
        with contextlib.suppress(OSError):
            if active:
                write_file(KUBELET_RUNNING, "")
            elif os.path.exists(KUBELET_RUNNING):
                os.unlink(KUBELET_RUNNING)
    elif event:
        active = os.path.exists(KUBELET_RUNNING)
    else:
        active = out("systemctl", "is-active", "kubelet") == "active"
    endpoint = runtime_endpoint()
    docker = "" if endpoint else docker_driver(bool(event)) if docker == "" else docker
    sysctl = {k: out("/usr/sbin/sysctl", "-n", k) for k in
              ("net.bridge.bridge-nf-call-iptables", "net.ipv4.ip_forward")}
    return {
        "name": kubelet_node_name(), "hostname": hostname(), "updated": time.time(),
        "kubelet_active": active,
        "kubelet_failure": kubelet_failure(config, docker) if active else [],
        "kubelet_cgroup_driver": kubelet_cgroup_driver(config),
        "docker_cgroup_driver": docker, "swap_on": bool(swaps()), "sysctl": sysctl,
        "kubelet_version": "v" + out("rpm", "-q", "--qf", "%{VERSION}", "kubelet"),
        "docker_version": out("rpm", "-q", "--qf", "%{VERSION}", "docker-ce"),
        "runtime": "containerd" if endpoint else "docker",
        "containerd_version": out("rpm", "-q", "--qf", "%{VERSION}", "containerd.io")
        if endpoint else "",
        "os_image": os_image(), "kernel": read_text("/proc/sys/kernel/osrelease").strip(),
        "api_error": kubelet_api_error(), "mac": node_mac(),
    }


def kubelet_api_error() -> str | None:
    """Why this node's kubelet cannot reach the API server of /etc/kubernetes/kubelet.conf
    from here (k8s/apiserver.py: this node's /etc/hosts, its haproxy, the API servers that are
    up), None when it can or when there is no kubelet.conf (nothing to reach yet)."""
    try:
        with open("/etc/kubernetes/kubelet.conf") as fh:
            conf = common.yaml.safe_load(fh) or {}
        server = conf["clusters"][0]["cluster"]["server"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    data = load()
    if not data.get("cluster_id"):
        return None
    from k8s import apiserver

    version = read_text("/usr/lib/lab/versions/kubelet").split(":")[-1]  # the package's EVR
    try:
        apiserver.reach(server, data, common.minor(version))
    except apiserver.Unreachable as exc:
        return exc.error
    except (OSError, ValueError):
        return None
    return None


def os_image() -> str:
    """PRETTY_NAME from /etc/os-release: what the kubelet reports as the node's OS image."""
    for line in read_text("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def publish_facts(facts: dict) -> None:
    """Write this node's facts to the shared state (silently skipped without permission)."""
    with contextlib.suppress(OSError):
        os.makedirs(FACTS, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(FACTS, 0o777)
        write_file(f"{FACTS}/{facts['name']}.json", json.dumps(facts, indent=1) + "\n", 0o666)


def node_facts(name: str) -> dict:
    try:
        with open(f"{FACTS}/{name}.json") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


# ---- derived API objects -------------------------------------------------------------

def catalogue() -> set[str]:
    """Fully qualified images the lab registry serves."""
    names: set[str] = set()
    for path in CATALOGUES:
        with contextlib.suppress(OSError), open(path) as fh:
            for line in fh:
                line = line.split("#", 1)[0].strip()
                if line:
                    names.add(qualify(line))
    return names


def qualify(ref: str) -> str:
    """docker.io/library/x:latest for 'x' (docker's normalisation)."""
    name, tag = ref, "latest"
    if ":" in ref.rsplit("/", 1)[-1]:
        name, tag = ref.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + name
    return f"{name}:{tag}"


# ---- what kubeadm init creates through the API (its addon phase) ------------------------------

KUBE_PROXY_DS = "daemonset.apps/kube-system/kube-proxy"
COREDNS_DEPLOY = "deployment.apps/kube-system/coredns"


def kube_proxy_conf(data: dict) -> str:
    """config.conf of the kube-proxy ConfigMap: the KubeProxyConfiguration kubeadm marshals
    (defaults it fills in: bindAddress, clusterCIDR = podSubnet, the kubeconfig path). `mode`
    has no omitempty (kubeproxy.config.k8s.io/v1alpha1 `Mode ProxyMode json:"mode"`), so a
    config that said nothing gives `mode: ""`. Fields as of 1.20 (+ nftables from 1.29)."""
    cfg = data.get("config", {}) or {}
    mode = cfg.get("proxyMode") or ""
    cidr = cfg.get("podSubnet") or ""
    nft = ("nftables:\n  masqueradeAll: false\n  masqueradeBit: null\n  minSyncPeriod: 0s\n"
           "  syncPeriod: 0s\n") if common.minor(data.get("kubernetes_version", "")) >= 29 else ""
    return (
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nbindAddress: 0.0.0.0\n"
        "bindAddressHardFail: false\nclientConnection:\n  acceptContentTypes: \"\"\n  burst: 0\n"
        "  contentType: \"\"\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n  qps: 0\n"
        f"clusterCIDR: {cidr or chr(34) * 2}\nconfigSyncPeriod: 0s\nconntrack:\n"
        "  maxPerCore: null\n  min: null\n  tcpCloseWaitTimeout: null\n"
        "  tcpEstablishedTimeout: null\ndetectLocalMode: \"\"\nenableProfiling: false\n"
        "healthzBindAddress: \"\"\nhostnameOverride: \"\"\niptables:\n  masqueradeAll: false\n"
        "  masqueradeBit: null\n  minSyncPeriod: 0s\n  syncPeriod: 0s\nipvs:\n"
        "  excludeCIDRs: null\n  minSyncPeriod: 0s\n  scheduler: \"\"\n  strictARP: false\n"
        "  syncPeriod: 0s\n  tcpFinTimeout: 0s\n  tcpTimeout: 0s\n  udpTimeout: 0s\n"
        "kind: KubeProxyConfiguration\nmetricsBindAddress: \"\"\n"
        f"mode: {mode or chr(34) * 2}\n{nft}nodePortAddresses: null\noomScoreAdj: null\n"
        "portRange: \"\"\nshowHiddenMetricsForVersion: \"\"\nudpIdleTimeout: 0s\nwinkernel:\n"
        "  enableDSR: false\n  networkName: \"\"\n  sourceVip: \"\"")


def kube_proxy_kubeconfig(data: dict) -> str:
    """kubeconfig.conf of the kube-proxy ConfigMap (kubeadm's KubeProxyConfigMap19 template)."""
    return ("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
            "    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt\n"
            f"    server: https://{data.get('endpoint', '')}\n  name: default\ncontexts:\n"
            "- context:\n    cluster: default\n    namespace: default\n    user: default\n"
            "  name: default\ncurrent-context: default\nusers:\n- name: default\n  user:\n"
            "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token")


def corefile(data: dict) -> str:
    domain = (data.get("config", {}) or {}).get("dnsDomain") or "cluster.local"
    return (".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n"
            f"    kubernetes {domain} in-addr.arpa ip6.arpa {{\n       pods insecure\n"
            "       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n"
            "    prometheus :9153\n    forward . /etc/resolv.conf {\n"
            "       max_concurrent 1000\n    }\n    cache 30\n    loop\n    reload\n"
            "    loadbalance\n}\n")


def addons(data: dict) -> dict[str, dict]:
    """The objects kubeadm init created (kube-proxy's ConfigMap and DaemonSet, CoreDNS's
    ConfigMap and Deployment; kubeadm's manifests in cmd/kubeadm/app/phases/addons), keyed like
    applied objects, minus those deleted since (`deleted`). Each carries `created`."""
    if not data.get("cluster_id"):
        return {}
    from k8s.kubeadm_cfg import images  # late: kubeadm_cfg imports this module's siblings

    cfg = data.get("config", {}) or {}
    imgs = images(data.get("kubernetes_version", "v1.20.10"), cfg.get("imageRepository") or "",
                  data.get("kubeadm_version") or "")
    created = data.get("created", 0)
    linux = {"kubernetes.io/os": "linux"}
    proxy_labels = {"k8s-app": "kube-proxy"}
    dns_labels = {"k8s-app": "kube-dns"}
    objs = {
        "configmap/kube-system/kube-proxy": {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system",
                         "labels": {"app": "kube-proxy"}},
            "data": {"config.conf": kube_proxy_conf(data),
                     "kubeconfig.conf": kube_proxy_kubeconfig(data)}},
        "configmap/kube-system/coredns": {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile(data)}},
        KUBE_PROXY_DS: {
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system",
                         "labels": dict(proxy_labels)},
            "spec": {
                "selector": {"matchLabels": dict(proxy_labels)},
                "updateStrategy": {"type": "RollingUpdate",
                                   "rollingUpdate": {"maxUnavailable": 1}},
                "template": {"metadata": {"labels": dict(proxy_labels)}, "spec": {
                    "priorityClassName": "system-node-critical",
                    "containers": [{
                        "name": "kube-proxy", "image": imgs[3],
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/usr/local/bin/kube-proxy",
                                    "--config=/var/lib/kube-proxy/config.conf",
                                    "--hostname-override=$(NODE_NAME)"],
                        "securityContext": {"privileged": True}}],
                    "hostNetwork": True, "serviceAccountName": "kube-proxy",
                    "volumes": [{"name": "kube-proxy", "configMap": {"name": "kube-proxy"}}],
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                    {"operator": "Exists"}],
                    "nodeSelector": dict(linux)}}}},
        COREDNS_DEPLOY: {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system",
                         "labels": dict(dns_labels)},
            "spec": {
                "replicas": 2, "selector": {"matchLabels": dict(dns_labels)},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
                "template": {"metadata": {"labels": dict(dns_labels)}, "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns",
                    "containers": [{
                        "name": "coredns", "image": imgs[-1],
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                  {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                  {"containerPort": 9153, "name": "metrics",
                                   "protocol": "TCP"}]}],
                    "dnsPolicy": "Default",
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                    {"key": "node-role.kubernetes.io/master",
                                     "effect": "NoSchedule"}],
                    "nodeSelector": dict(linux),
                    "volumes": [{"name": "config-volume", "configMap": {
                        "name": "coredns", "items": [{"key": "Corefile",
                                                      "path": "Corefile"}]}}]}}}},
    }
    for k in data.get("deleted", []) or []:
        objs.pop(k, None)
    for obj in objs.values():
        obj["created"] = created
    return objs


def objects(data: dict) -> dict[str, dict]:
    """Every API object the lab keeps: kubeadm's addons, then what kubectl applied (which wins
    for the same key, as an apply over kubeadm's object would)."""
    return {**addons(data), **(data.get("objects", {}) or {})}


def cni(data: dict) -> dict | None:
    """The applied CNI DaemonSet: {'name','namespace','network','images','containers',
    'init','labels'} or None."""
    objs = objects(data)
    for obj in objs.values():
        if obj.get("kind") != "DaemonSet":
            continue
        ns = obj["metadata"].get("namespace", "default")
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        maps = [v["configMap"]["name"] for v in spec.get("volumes", []) or []
                if isinstance(v, dict) and v.get("configMap")]
        for cm in objs.values():
            if (cm.get("kind") == "ConfigMap" and cm["metadata"].get("name") in maps
                    and cm["metadata"].get("namespace", "default") == ns
                    and "net-conf.json" in (cm.get("data") or {})):
                try:
                    network = json.loads(cm["data"]["net-conf.json"]).get("Network")
                except ValueError:
                    network = None
                images = [c.get("image", "") for key in ("initContainers", "containers")
                          for c in spec.get(key, []) or []]
                labels = (obj["spec"]["template"].get("metadata") or {}).get("labels") or {}
                return {"name": obj["metadata"]["name"], "namespace": ns,
                        "network": network, "images": images, "created": obj.get("created", 0),
                        "labels": dict(labels),
                        "containers": [{"name": c.get("name", ""), "image": c.get("image", "")}
                                       for c in spec.get("containers", []) or []],
                        "init": [{"name": c.get("name", ""), "image": c.get("image", "")}
                                 for c in spec.get("initContainers", []) or []]}
    return None


HEARTBEAT = "lab-kubelet-"  # + the node's MAC: an abstract UNIX socket (see kubelet_heartbeat)


def node_mac() -> str:
    """This node's eth0 MAC (unique per lab node, lab/CONTRACT.md "Identity")."""
    return read_text("/sys/class/net/eth0/address").strip()


def kubelet_heartbeat():
    """Bind this node's heartbeat: an abstract UNIX socket `@lab-kubelet-<MAC>`, held by the
    node's pod runner (k8s/podrun.py) while the kubelet unit runs. Abstract sockets belong to
    the network namespace, which every lab node shares, so any node sees it in /proc/net/unix
    (node_alive), and it vanishes with its process: with the node (stopped) or the runner. The
    socket object (keep it referenced), None when it cannot be bound."""
    import socket

    mac = node_mac()
    if not mac:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind("\0" + HEARTBEAT + mac)
    except OSError:
        sock.close()
        return None
    return sock


_HEARTBEATS: list = [0.0, set()]  # (when read, heartbeat names present)


def node_alive(facts: dict) -> bool:
    """The node whose facts these are still runs its kubelet: its heartbeat socket is there
    (re-read after 0.5 s). Facts without a MAC (older) and any reader outside a lab node
    (host-side unit tests) count as alive."""
    mac = facts.get("mac")
    if not mac or not os.path.exists("/usr/lib/lab/labcommon.py"):
        return True
    now = time.monotonic()
    if now - _HEARTBEATS[0] > 0.5:
        found = set()
        with contextlib.suppress(OSError), open("/proc/net/unix") as fh:
            for line in fh.read().splitlines()[1:]:
                path = line.split()[-1] if len(line.split()) > 7 else ""
                if path.startswith("@" + HEARTBEAT):
                    found.add(path[1 + len(HEARTBEAT):])
        _HEARTBEATS[:] = [now, found]
    return mac in _HEARTBEATS[1]


def node_status(data: dict, name: str) -> dict:
    """Ready condition of node NAME: {'status','reason','message','kubelet','cni'}. The
    kubelet posts nothing while its node is gone (stopped: node_alive, its heartbeat) or while
    it cannot reach the API server its kubelet.conf names (facts `api_error`,
    k8s/apiserver.py); the node lifecycle controller's 40 s grace is not waited for."""
    facts = node_facts(name)
    running = bool(facts.get("kubelet_active")) and not facts.get("kubelet_failure")
    if running and (facts.get("api_error") or not node_alive(facts)):
        running = False
    if not running:
        return {"status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.", "kubelet": False,
                "cni": False}
    problem = cni_problem(data, facts)
    if problem:
        return {"status": "False", "reason": "KubeletNotReady",
                "message": network_not_ready(facts), "kubelet": True,
                "cni": False, "cni_problem": problem}
    return {"status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status", "kubelet": True, "cni": True}


def network_not_ready(facts: dict) -> str:
    """The Ready condition's message while no CNI config is loaded: kubelet.go updateRuntimeUp
    `fmt.Errorf("... network not ready: %v", networkReady)`, the runtime's NetworkReady
    condition printed as `NetworkReady=false reason:R message:M`. docker (dockershim 1.20):
    "runtime network not ready", dockershim's "docker: network plugin is not ready: cni config
    uninitialized"; containerd (kubelet 1.23+, structured-logging form of kubelet.go): "container
    runtime network not ready", containerd's CRI status.go `Network plugin returns error: %v`
    with go-cni's "cni plugin not initialized" (what `crictl info` shows as well)."""
    if facts.get("runtime") == "containerd":
        return ("container runtime network not ready: NetworkReady=false "
                "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin "
                "not initialized")
    return ("runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
            "message:docker: network plugin is not ready: cni config uninitialized")


def cni_problem(data: dict, facts: dict) -> str | None:
    """Why the CNI pod of a node with a running kubelet cannot work, None when it can."""
    net = cni(data)
    if net is None:
        return "no CNI DaemonSet applied"
    known = catalogue()
    for image in net["images"]:
        if qualify(image) not in known:
            return f"ErrImagePull: {image}"
    sysctl = facts.get("sysctl", {})
    if sysctl.get("net.bridge.bridge-nf-call-iptables") != "1":
        return ("Failed to check br_netfilter: stat /proc/sys/net/bridge/bridge-nf-call-iptables:"
                " no such file or directory" if not sysctl.get("net.bridge.bridge-nf-call-iptables")
                else "net.bridge.bridge-nf-call-iptables is not 1")
    if sysctl.get("net.ipv4.ip_forward") != "1":
        return "net.ipv4.ip_forward is not 1"
    subnet = data.get("config", {}).get("podSubnet") or ""
    name = facts.get("name", "")
    cidr = node_subnet(data, name) if subnet else None
    if not cidr:  # flannel's kube subnet manager (pkg/subnet/kube/kube.go)
        return (f'Error registering network: failed to acquire lease: node "{name}"'
                " pod cidr not assigned")
    try:
        inside = ipaddress.ip_network(cidr).subnet_of(
            ipaddress.ip_network(net["network"] or "", strict=False))
    except (TypeError, ValueError):
        inside = False
    if not inside:
        return (f'Error registering network: failed to acquire lease: subnet "{net["network"]}"'
                f' specified in the flannel net config doesn\'t contain "{cidr}" PodCIDR of the '
                f'"{name}" node')
    if net["network"] != subnet:  # the lab is stricter than flannel here (issue 5)
        return (f"net-conf.json Network {net['network']} differs from the cluster's "
                f"podSubnet {subnet}")
    return None


# ---- pod network: node subnets (kube-controller-manager's allocator) ---------------------

NODE_MASK = 24  # kube-controller-manager --node-cidr-mask-size (IPv4 default)


def node_subnet(data: dict, name: str) -> str | None:
    """The podCIDR of node NAME: recorded at registration, else what allocation would give."""
    info = data.get("nodes", {}).get(name) or {}
    return info.get("pod_cidr") or allocate_subnet(data, name)


def allocate_subnet(data: dict, name: str) -> str | None:
    """A free /24 of the cluster's podSubnet for NAME, None without podSubnet or when full.

    The start is sha256(name) + the state's `generation` (one more per `kubeadm init` in this
    lab), probing upwards: a node gets another subnet in the next cluster, so a cni0 bridge
    left from the previous one carries a stale address (kubeadm#1427).
    """
    try:
        net = ipaddress.ip_network(data.get("config", {}).get("podSubnet") or "", strict=False)
    except ValueError:
        return None
    if net.version != 4 or net.prefixlen > NODE_MASK:
        return None
    count = 1 << (NODE_MASK - net.prefixlen)
    used = {i.get("pod_cidr") for n, i in data.get("nodes", {}).items() if n != name}
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) + int(data.get("generation", 0))
    size = 1 << (32 - NODE_MASK)
    for k in range(count):
        cidr = f"{net.network_address + ((start + k) % count) * size}/{NODE_MASK}"
        if cidr not in used:
            return cidr
    return None


def gateway(cidr: str) -> str:
    """The CNI bridge's address in a node subnet: 10.244.3.0/24 -> 10.244.3.1/24."""
    net = ipaddress.ip_network(cidr)
    return f"{net.network_address + 1}/{net.prefixlen}"


def suffix(*parts: str, n: int = 5) -> str:
    """A stable pseudo-random pod name suffix."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])


def bridge_conflict(data: dict, node: str) -> str | None:
    """The CNI bridge error on NODE when its cni0 carries another subnet's address."""
    have = node_facts(node).get("cni0")
    cidr = node_subnet(data, node)
    if not have or not cidr or have == gateway(cidr):
        return None
    return f'failed to set bridge addr: "cni0" already has an IP address different from ' \
           f"{gateway(cidr)}"


CRASH_RESTARTS = 3  # what a CrashLoopBackOff pod shows (kubectl's RESTARTS, restartCount)


def back_off(container: str, pod: str, ns: str, pod_uid: str, restarts: int) -> str:
    """The kubelet's CrashLoopBackOff waiting message (kuberuntime_manager.go doBackOff: 10s
    doubling per restart, capped at 5m)."""
    delay = min(10 * 2 ** max(restarts - 1, 0), 300)
    shown = f"{delay // 60}m{delay % 60}s" if delay >= 60 else f"{delay}s"
    return (f"back-off {shown} restarting failed container={container} "
            f"pod={pod}_{ns}({pod_uid})")


def pods(data: dict) -> list[dict]:
    """The pods the cluster would run now (computed from nodes, facts and objects).

    Each: namespace, name, node (None: unscheduled), phase, reason (kubectl's STATUS column),
    owner (Node|DaemonSet|ReplicaSet), owner_name, labels {k: v}, containers and init
    [{name, image, ready, restarts, waiting: {reason, message} | None}], ready, created, ip,
    host_ip, host_network, uid; optional problem, log, events, image, controller."""
    cid = data.get("cluster_id", "")
    nodes = data.get("nodes", {})
    status = {n: node_status(data, n) for n in nodes}
    objs = objects(data)
    result: list[dict] = []

    def pod(ns: str, name: str, node: str | None, phase: str, reason: str = "",
            owner: str = "", since: float = 0.0, ip: str = "", host_network: bool | None = None,
            **extra) -> None:
        host_ip = nodes.get(node, {}).get("address", "") if node else ""
        hostnet = owner != "ReplicaSet" if host_network is None else host_network
        reason = reason or phase
        pod_uid = uid(cid, "pod", ns, name)
        containers = extra.pop("containers", [])
        waiting = extra.pop("waiting", None)
        restarts = CRASH_RESTARTS if reason == "CrashLoopBackOff" else 0
        for c in containers:
            c.setdefault("restarts", restarts)
            if "waiting" not in c:
                c["waiting"] = waiting
                if reason == "CrashLoopBackOff":
                    c["waiting"] = {"reason": "CrashLoopBackOff", "message": back_off(
                        c["name"], name, ns, pod_uid, c["restarts"])}
            c["ready"] = c["waiting"] is None and reason == "Running"
        result.append({"namespace": ns, "name": name, "node": node, "phase": phase,
                       "reason": reason, "owner": owner,
                       "created": since or data.get("created", time.time()),
                       "ip": ip if ip or not hostnet else host_ip,
                       "host_ip": host_ip, "host_network": hostnet,
                       "uid": pod_uid, "containers": containers,
                       "ready": reason == "Running", **extra})

    def ds_labels(ds: str, template: dict) -> dict:
        return {**template, "controller-revision-hash": suffix(cid, ds, "rev", n=10),
                "pod-template-generation": "1"}

    repo = (data.get("config", {}) or {}).get("imageRepository") or ""
    version = data.get("kubernetes_version", "")
    from k8s.kubeadm_cfg import images  # late: kubeadm_cfg imports this module's siblings

    etcd = images(version or "v1.20.10", repo, data.get("kubeadm_version") or "")[5]
    for node, info in sorted(nodes.items()):
        up = status[node]["kubelet"]
        if info.get("role") == "control-plane":
            for comp in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
                image = etcd if comp == "etcd" else f"{repo}/{comp}:{version}"
                pod("kube-system", f"{comp}-{node}", node, "Running" if up else "Unknown",
                    owner="Node", owner_name=node, since=info.get("joined", 0),
                    labels={"component": comp, "tier": "control-plane"},
                    containers=[{"name": comp, "image": image}])
        proxy = objs.get(KUBE_PROXY_DS)
        if proxy is None:  # deleted: its pods went with it
            continue
        crash = proxy_problem(data, node) if up else None
        down = up and crash is None and kube_proxy_down(node)
        name = f"kube-proxy-{suffix(cid, 'proxy', node)}"
        extra: dict = {}
        if crash:
            quoted = crash.replace('"', '\\"')
            extra = {"problem": crash,
                     "log": [common.klog("E", "run.go:74",
                                         f'"command failed" err="{quoted}"')]}
        elif down:
            extra = {"problem": "kube-proxy is down (lab fault kube_proxy_down)"}
        if crash or down:
            extra["events"] = [("Warning", "BackOff", "kubelet", "Back-off restarting failed "
                                f"container kube-proxy in pod {name}_kube-system(<uid>)")]
        template = proxy["spec"]["template"]
        pod("kube-system", name, node, ("Running" if up else "Unknown"),
            "CrashLoopBackOff" if crash or down else "", owner="DaemonSet",
            owner_name="kube-proxy", since=info.get("joined", 0),
            labels=ds_labels("kube-proxy", template["metadata"]["labels"]),
            containers=[{"name": c["name"], "image": c["image"]}
                        for c in template["spec"]["containers"]], **extra)
    net = cni(data)
    if net:
        for node in sorted(nodes):
            st = status[node]
            problem = st.get("cni_problem", "")
            init = [dict(c) for c in net["init"]]
            containers = [dict(c) for c in net["containers"]]
            waiting = None
            if not st["kubelet"]:
                phase, reason = "Unknown", "Unknown"
            elif problem.startswith("ErrImagePull"):
                phase, reason = "Pending", "Init:ImagePullBackOff"
                missing = problem.split(": ", 1)[1]
                for c in init:
                    if c["image"] == missing:
                        c["waiting"] = {"reason": "ImagePullBackOff",
                                        "message": f'Back-off pulling image "{missing}"'}
                waiting = {"reason": "PodInitializing"}
            elif problem:
                phase, reason = "Running", "CrashLoopBackOff"
            else:
                phase, reason = "Running", "Running"
            for c in init:  # init containers ran to completion unless one is stuck
                c.setdefault("waiting", None)
                c["restarts"] = 0
                c["done"] = c["waiting"] is None
            pod(net["namespace"], f"{net['name']}-{suffix(cid, net['name'], node)}", node,
                phase, reason, owner="DaemonSet", owner_name=net["name"],
                since=net.get("created", 0), problem=problem,
                labels=ds_labels(net["name"], net["labels"]), init=init,
                containers=containers, waiting=waiting)
    # a cordon keeps running pods where they are; a drain evicted them for good
    ready = sorted(n for n, st in status.items()
                   if st["status"] == "True" and not nodes[n].get("drained"))
    rs = f"coredns-{suffix(cid, 'rs', n=10)[:10]}"
    placed: dict[str, int] = {}
    deploy = objs.get(COREDNS_DEPLOY)
    for i in range(int(deploy["spec"].get("replicas", 2)) if deploy else 0):
        name = f"{rs}-{suffix(cid, 'dns', str(i))}"
        image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        base = {"image": image, "labels": {"k8s-app": "kube-dns",
                                           "pod-template-hash": rs[8:]},
                "controller": f"ReplicaSet/{rs}", "owner_name": rs,
                "containers": [{"name": "coredns", "image": image}]}
        if not ready:
            pod("kube-system", name, None, "Pending", owner="ReplicaSet",
                events=[("Warning", "FailedScheduling", "default-scheduler",
                         unschedulable_message(data, status))], **base)
            continue
        node = ready[i % len(ready)]
        placed[node] = placed.get(node, 0) + 1
        events = [("Normal", "Scheduled", "default-scheduler",
                   f"Successfully assigned kube-system/{name} to {node}")]
        conflict = bridge_conflict(data, node)
        if conflict:
            delegate = "failed to delegate add: " if any(
                "flannel-cni-plugin" in im for im in (net or {}).get("images", [])) else ""
            sandbox = hashlib.sha256(f"{cid}/{name}".encode()).hexdigest()
            if node_facts(node).get("runtime") == "containerd":
                # containerd's CRI sandbox_run.go `failed to setup network for sandbox %q: %w`,
                # libcni's `plugin type=%q failed (add): %w`
                why = (f'failed to setup network for sandbox "{sandbox}": plugin '
                       f'type="flannel" failed (add): {delegate}{conflict}')
            else:  # dockershim's docker_sandbox.go / network plugin texts
                why = (f'failed to set up sandbox container "{sandbox}" network for pod '
                       f'"{name}": networkPlugin cni failed to set up pod "{name}_kube-system" '
                       f"network: {delegate}{conflict}")
            events += [("Warning", "FailedCreatePodSandBox", "kubelet",
                        f"Failed to create pod sandbox: rpc error: code = Unknown desc = {why}"),
                       ("Normal", "SandboxChanged", "kubelet",
                        "Pod sandbox changed, it will be killed and re-created.")]
            pod("kube-system", name, node, "Pending", "ContainerCreating", owner="ReplicaSet",
                events=events, waiting={"reason": "ContainerCreating"}, **base)
            continue
        cidr = node_subnet(data, node)
        ip = str(ipaddress.ip_network(cidr).network_address + 1 + placed[node]) if cidr else ""
        events += [("Normal", "Pulled", "kubelet",
                    f'Container image "{base["image"]}" already present on machine'),
                   ("Normal", "Created", "kubelet", "Created container coredns"),
                   ("Normal", "Started", "kubelet", "Started container coredns")]
        pod("kube-system", name, node, "Running", owner="ReplicaSet", ip=ip, events=events,
            **base)
    from k8s import workloads  # users' DaemonSets and Deployments (verify's netcheck, nginx)

    workloads.add_pods(data, status, pod, result)
    from k8s import scheduler  # bare Pods (issue #16): bound by scheduler.py, run by the runner

    scheduler.add_pods(data, result)
    return result


def proxy_problem(data: dict, node: str) -> str | None:
    """Why kube-proxy (the cluster's release) exits on NODE, None when it runs. Its log line
    (pods()) is component-base's run.go "command failed" (that wrapper: unconfirmed).

    mode nftables (docs/RELEASE-FACTS.md 7): before 1.31 the NFTablesProxyMode gate is off
    (alpha 1.29, unknown before) and validation.go validateProxyModeLinux refuses the mode
    (source and unit test text);
    1.31+ (beta on, GA 1.33) accept it, but pkg/proxy/nftables refuses kernels < 5.13."""
    mode = (data.get("config", {}) or {}).get("proxyMode") or ""
    if mode != "nftables":
        return None
    if common.minor(data.get("kubernetes_version", "")) < 31:
        return ('KubeProxyConfiguration.ProxyMode: Invalid value: "nftables": must be '
                "iptables, ipvs or blank (blank means the best-available proxy [currently "
                "iptables])")
    kernel = node_facts(node).get("kernel", "")
    try:
        major, minor_ = (int(x) for x in kernel.split(".")[:2])
    except ValueError:
        return None
    if (major, minor_) < (5, 13):
        return "kube-proxy in nftables mode requires kernel 5.13 or later"
    return None


def unschedulable_message(data: dict, status: dict) -> str:
    """The scheduler's FailedScheduling text (1.20 form) for a pod no node can take."""
    nodes = data.get("nodes", {})
    reasons: dict[str, int] = {}
    for n, st in status.items():
        if nodes[n].get("unschedulable") or nodes[n].get("drained"):
            key = "node(s) were unschedulable"
        elif st["status"] == "Unknown":
            key = "node(s) had taint {node.kubernetes.io/unreachable: }, that the pod didn't " \
                  "tolerate"
        else:
            key = "node(s) had taint {node.kubernetes.io/not-ready: }, that the pod didn't " \
                  "tolerate"
        reasons[key] = reasons.get(key, 0) + 1
    parts = ", ".join(f"{c} {k}" for k, c in sorted(reasons.items()))
    return f"0/{len(nodes)} nodes are available: {parts}."


def publish_local(event: str = "", docker: str | None = "") -> dict:
    """Collect and publish this node's facts; as root, let its pods change its network state
    (kube-proxy, flannel: k8s/netfx.py) and publish what they left (the cni0 address)."""
    facts = collect_facts(event, docker)
    publish_facts(facts)
    from k8s import netfx

    extra = netfx.sync(load(), facts)
    if extra != {k: facts.get(k) for k in extra}:
        facts.update(extra)
        publish_facts(facts)
    return facts
