"""kube-vip v1.0.3 as a static pod on a lab node (`/etc/kubernetes/manifests/*`, a Pod named
kube-vip running `manager`), in ARP mode with leader election (lab/k8s/STATE.md "Virtual IPs").

Nothing runs in the node: the node's sync (`sync()`, called from netfx.sync, i.e. the kubelet's
unit hooks, kubeadm, kubectl and the network stand-ins on this node) reads the manifest as
kube-vip would and publishes what the container does to the cluster dir,
`/var/lib/lab-cluster/vip/<node>.kubevip.json` (0666):
`{"node", "address", "mac", "updated", "manifest", "running", "error", "config": {address,
prefix, interface, port, namespace, lease, leader_election, lease_duration, renew_deadline,
retry_period, node_name}, "user": {client-certificate-data | token}}`. Who holds the VIP is
computed at query time by k8s/vip.py from those records and the cluster state.

Sources (kube-vip/kube-vip at v1.0.3): pkg/kubevip/config_envvar.go (env names),
config_environment.go ParseEnvironment (strconv parsing, its errors returned as is),
cmd/kube-vip.go kubeVipManager (the slog lines, `return` after an error: exit status 0, the
kubelet restarts it), pkg/kubevip/config_manager.go CheckInterface (`X is not valid interface,
reason: get X failed, error: Link not found`: netlink's LinkByName text), pkg/manager/manager.go
New (control plane: the client of /etc/kubernetes/admin.conf with the server replaced by
`kubernetes:<port>`; the pod's hostAliases kubernetes -> 127.0.0.1 on the host network: THIS
node's API server). Logs: slog's default handler (`2006/01/02 15:04:05 LEVEL msg k=v`), client-go
v0.34 leaderelection's structured klog lines (the `leaderelection.go:NNN` line numbers are
unconfirmed). The container's log is `/var/lib/lab-cluster/vip/<node>.kube-vip.log` (the lab
keeps no container logs for static pods; the cluster dir so that a computation on any node can
log the lease refusals of the node it judges).
"""

from __future__ import annotations

import base64
import contextlib
import glob
import ipaddress
import json
import os
import time

from k8s import common, state

DIR = f"{state.ROOT}/vip"
MANIFESTS = "/etc/kubernetes/manifests"
MOUNT = "/etc/kubernetes/admin.conf"  # manager.go adminConfigPath, inside the container
IMAGE = "ghcr.io/kube-vip/kube-vip:v1.0.3"
VERSION = "v1.0.3"
BUILD = "lab"
# cmd/kube-vip.go initConfig defaults (flags): port 6443, namespace kube-system, lease name
# plndr-cp-lock, 5/3/1 s (cmd/kube-vip.go PersistentFlags, unconfirmed for every default)
DEFAULTS = {"port": 6443, "namespace": "kube-system", "lease": "plndr-cp-lock",
            "lease_duration": 5, "renew_deadline": 3, "retry_period": 1}
BOOLS = ("vip_arp", "vip_leaderelection", "cp_enable", "svc_enable", "bgp_enable",
         "vip_wireguard", "vip_routingtable", "vip_ddns", "cp_detect", "vip_interfaceloglobal",
         "vip_singlenode", "vip_startleader", "vip_preserve_on_leadership_loss")
INTS = ("vip_leaseduration", "vip_renewdeadline", "vip_retryperiod", "vip_arpRate")


def slog(level: str, msg: str, **kv: object) -> str:
    """A line of Go's log/slog default handler (through the log package)."""
    parts = [time.strftime("%Y/%m/%d %H:%M:%S"), level, msg]
    for k, v in kv.items():
        k = k.replace("_", " ") if k in ("Control_Plane",) else k
        key = f'"{k}"' if " " in k else k
        val = str(v).lower() if isinstance(v, bool) else str(v)
        if val == "" or any(c in val for c in ' ="\\'):
            val = json.dumps(val)
        parts.append(f"{key}={val}")
    return " ".join(parts)


def klog(level: str, src: str, msg: str, **kv: str) -> str:
    """A structured klog line (pid 1: the container's process)."""
    t = time.time()
    stamp = time.strftime("%m%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1e6):06d}"
    extra = "".join(f" {k}={json.dumps(v)}" for k, v in kv.items())
    return f"{level}{stamp}       1 {src}] {json.dumps(msg)}{extra}"


def _parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _parse_int(text: str, bits: int = 32, unsigned: bool = False) -> int:
    """Go's strconv.ParseInt(s, 10, bits) / ParseUint."""
    fn = "ParseUint" if unsigned else "ParseInt"
    body = text[1:] if text[:1] in "+-" and not unsigned else text
    if not body.isdigit():
        raise ValueError(f'strconv.{fn}: parsing "{text}": invalid syntax')
    value = int(text)
    lo, hi = (0, 2 ** bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if not lo <= value <= hi:
        raise ValueError(f'strconv.{fn}: parsing "{text}": value out of range')
    return value


def find_manifest() -> tuple[str, dict] | None:
    """(path, pod) of the static Pod named kube-vip (the kubelet reads *.yaml, *.yml, *.json)."""
    for path in sorted(glob.glob(f"{MANIFESTS}/*")):
        if not path.endswith((".yaml", ".yml", ".json")):
            continue
        try:
            with open(path) as fh:
                docs = common.read_yaml_docs(fh.read())
        except Exception:  # a bad file is skipped, as the kubelet does
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Pod" and \
                    (doc.get("metadata") or {}).get("name") == "kube-vip":
                return path, doc
    return None


def container(pod: dict) -> dict:
    spec = pod.get("spec") or {}
    for c in spec.get("containers") or []:
        if "kube-vip" in str(c.get("image", "")) or c.get("name") == "kube-vip":
            return c
    return (spec.get("containers") or [{}])[0]


def environment(pod: dict, node: str) -> dict[str, str]:
    """The container's environment: value, or valueFrom fieldRef spec.nodeName / metadata.*."""
    env: dict[str, str] = {}
    for item in container(pod).get("env") or []:
        name = item.get("name")
        if not name:
            continue
        if "value" in item:
            env[name] = "" if item["value"] is None else str(item["value"])
            continue
        ref = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath", "")
        env[name] = {"spec.nodeName": node, "metadata.name": f"kube-vip-{node}",
                     "metadata.namespace": "kube-system"}.get(ref, "")
    return env


def kubeconfig_path(pod: dict) -> str | None:
    """The node file mounted at /etc/kubernetes/admin.conf (a hostPath volume), None without."""
    spec = pod.get("spec") or {}
    vols = {v.get("name"): v for v in spec.get("volumes") or []}
    for m in container(pod).get("volumeMounts") or []:
        if m.get("mountPath") == MOUNT:
            host = (vols.get(m.get("name")) or {}).get("hostPath") or {}
            return host.get("path")
    return None


def links() -> dict[str, dict]:
    import labcommon as lc

    return {ln["name"]: ln for ln in lc.read_links()}


def configure(pod: dict, node: str) -> tuple[dict | None, list[str]]:
    """kube-vip manager's start: (config, log lines); config None when it exits at once."""
    env = environment(pod, node)
    args = container(pod).get("args") or container(pod).get("command") or []
    log: list[str] = []
    if "manager" not in [str(a) for a in args]:
        return None, [f"lab: kube-vip {args!r}: only `manager` is simulated"]
    cfg = dict(DEFAULTS)
    flags = {}
    try:
        for k in BOOLS:
            if env.get(k):
                flags[k] = _parse_bool(env[k])
        for k in INTS:
            if env.get(k):
                flags[k] = _parse_int(env[k])
        if env.get("port"):
            cfg["port"] = _parse_int(env["port"], 16, unsigned=True)
    except ValueError as exc:
        return None, [slog("ERROR", "parsing environment", err=str(exc))]
    cfg["interface"] = env.get("vip_interface", "")
    cfg["lease"] = env.get("vip_leasename") or cfg["lease"]
    cfg["namespace"] = env.get("cp_namespace") or cfg["namespace"]
    cfg["lease_duration"] = flags.get("vip_leaseduration", cfg["lease_duration"])
    cfg["renew_deadline"] = flags.get("vip_renewdeadline", cfg["renew_deadline"])
    cfg["retry_period"] = flags.get("vip_retryperiod", cfg["retry_period"])
    cfg["leader_election"] = flags.get("vip_leaderelection", False)
    cfg["node_name"] = env.get("vip_nodename", "")
    # config_environment.go: vip_address -> c.VIP (deprecated), address -> c.Address (wins)
    address = env.get("address") or env.get("vip_address") or ""
    subnet = env.get("vip_subnet") or env.get("vip_cidr") or ""
    arp, bgp = flags.get("vip_arp", False), flags.get("bgp_enable", False)
    cp, svc = flags.get("cp_enable", False), flags.get("svc_enable", False)
    if not subnet and address:
        try:
            ip = ipaddress.ip_address(address)
            subnet = "32" if ip.version == 4 else "128"
        except ValueError:  # cmd/kube-vip.go: GenerateCidrRange's error, its (sic) message
            return None, [slog("ERROR", "No interface is specified for kube-vip to bind to")]
    log.append(slog("INFO", "kube-vip.io", version=VERSION, build=BUILD))
    mode = "BGP" if bgp else "ARP" if arp else ""
    log.append(slog("INFO", "starting", namespace=cfg["namespace"], Mode=mode,
                    **{"Control Plane": cp, "Services": svc}))
    if not svc and not cp:
        return None, [*log, slog("ERROR", "no features are enabled")]
    if not cfg["interface"]:
        return None, [*log, slog("INFO", "No interface is specified for VIP in config, "
                                          "auto-detecting default Interface"),
                            "lab: interface auto-detection is not simulated"]
    if cfg["interface"] not in links():
        return None, [*log, slog("ERROR", "checking interface", err=(
            f"{cfg['interface']} is not valid interface, reason: get {cfg['interface']} "
            "failed, error: Link not found"))]
    if bgp:
        return None, [*log, "lab: kube-vip's BGP mode is not simulated (ARP only)"]
    if not arp:
        return None, [*log, "lab: only kube-vip's ARP mode is simulated"]
    if not cp:
        return None, [*log, "lab: kube-vip's services mode is not simulated"]
    if not cfg["leader_election"]:
        return None, [*log, "lab: kube-vip without leader election is not simulated"]
    try:
        ip = ipaddress.ip_address(address)
        prefix = int(subnet)
    except ValueError:
        return None, [*log, f"lab: address {address!r} / vip_subnet {subnet!r}: only one "
                            "literal IPv4 address with a numeric subnet is simulated"]
    if ip.version != 4 or not ip.is_loopback:
        return None, [*log, f"lab: {address} is outside 127.0.0.0/8: the lab never adds it"]
    cfg.update({"address": address, "prefix": prefix, "node_name": cfg["node_name"] or node})
    log.append(slog("INFO", "using node name", name=cfg["node_name"]))
    log.append(slog("INFO", "Starting Kube-vip Manager with the ARP engine"))
    log.append(slog("INFO", "cluster membership", namespace=cfg["namespace"],
                    lock=cfg["lease"], id=cfg["node_name"]))
    log.append(klog("I", "leaderelection.go:257", "Attempting to acquire leader lease...",
                    lock=f"{cfg['namespace']}/{cfg['lease']}"))
    return cfg, log


def user_of(path: str | None) -> dict:
    """The kubeconfig's user credentials (a certificate's public part or a token), {} when
    the file is missing or unreadable (then kube-vip has no client)."""
    if not path:
        return {}
    try:
        with open(path) as fh:
            conf = common.yaml.safe_load(fh) or {}
    except (OSError, ValueError):
        return {}
    from k8s import rbac

    _, user = rbac.pick(conf if isinstance(conf, dict) else {})
    out: dict = {}
    if user.get("token"):
        out["token"] = str(user["token"])
    with contextlib.suppress(OSError, ValueError):
        cert = rbac._file_or_data(user, "client-certificate", os.path.dirname(path))
        if cert:
            out["client-certificate-data"] = base64.b64encode(cert.encode()).decode()
    return out


def record_path(node: str) -> str:
    return f"{DIR}/{node}.kubevip.json"


def log_path(node: str) -> str:
    return f"{DIR}/{node}.kube-vip.log"


def append_log(node: str, lines: list[str]) -> None:
    """The container's log (cluster dir, 0666)."""
    with contextlib.suppress(OSError):
        os.makedirs(DIR, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(DIR, 0o777)
        fd = os.open(log_path(node), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        with os.fdopen(fd, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))
        with contextlib.suppress(OSError):
            os.chmod(log_path(node), 0o666)


def load_record(node: str) -> dict:
    try:
        with open(record_path(node)) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def records() -> dict[str, dict]:
    """Every node's published kube-vip record, by node name."""
    out = {}
    for path in glob.glob(f"{DIR}/*.kubevip.json"):
        node = os.path.basename(path)[:-len(".kubevip.json")]
        rec = load_record(node)
        if rec:
            out[node] = rec
    return out


def sync(kubelet_active: bool | None = None) -> dict:
    """This node's kube-vip container as its kubelet runs it; publish it. A running container
    outlives a stopped kubelet (as a static pod's container does); a new or changed manifest
    takes effect only while the kubelet runs; a removed one stops it then."""
    if os.geteuid() != 0:
        return {}
    node = state.kubelet_node_name()
    if kubelet_active is None:
        kubelet_active = os.path.exists(state.KUBELET_RUNNING)
    old = load_record(node)
    found = find_manifest()
    if not kubelet_active:
        return old
    if found is None:
        if old:
            with contextlib.suppress(OSError):
                os.unlink(record_path(node))
            if old.get("running"):
                append_log(node, [slog("INFO", "Received kube-vip termination, signaling "
                                               "shutdown"),
                                  slog("INFO", "Shutting down Kube-Vip")])
        return {}
    path, pod = found
    text = json.dumps(pod, sort_keys=True)
    kpath = kubeconfig_path(pod)
    user = user_of(kpath)
    if old.get("pod") == text and old.get("user") == user and old.get("links") == sorted(links()):
        return old
    cfg, lines = configure(pod, node)
    image = str(container(pod).get("image", ""))
    if state.qualify(image) not in state.catalogue():  # the kubelet's pull (wording approximated)
        cfg, lines = None, [f'lab: Failed to pull image "{image}": not found in the lab registry']
    error = None if cfg else lines[-1]
    if cfg and not user:
        error = (f"could not create k8s REST config from external file: \"{MOUNT}\": "
                 f"open {MOUNT}: no such file or directory")
        lines.append(slog("ERROR", "new manager", err=error))
        cfg = None
    rec = {"node": node, "address": common.host_address(), "mac": state.node_mac(),
           "updated": time.time(), "manifest": path, "kubeconfig": kpath, "pod": text,
           "links": sorted(links()), "running": cfg is not None, "error": error,
           "config": cfg, "user": user, "image": container(pod).get("image", "")}
    append_log(node, lines)
    with contextlib.suppress(OSError):
        os.makedirs(DIR, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(DIR, 0o777)
        common.write_file(record_path(node), json.dumps(rec, indent=1) + "\n", 0o666)
    return rec


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["sync"]:
        print(json.dumps(sync(), indent=1))
