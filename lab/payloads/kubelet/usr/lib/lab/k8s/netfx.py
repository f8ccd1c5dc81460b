"""What the pods of a node leave in its network state: kubelet's and kube-proxy's iptables
chains, kube-proxy's IPVS services, ipsets and kube-ipvs0 (ipvs mode), flannel's links,
iptables rules and files, and the CNI bridge cni0 (see lab/k8s/STATE.md).

Written straight into the network stand-ins' own state (/run/lab/{iptables,links,ipvs,ipset}
.json, formats in labcommon.py) under their locks, as root only; a node's reboot drops it
(/run is a tmpfs) and nothing here ever removes what the user left: `kubeadm reset` does not
clean it either (kubeadm#1427). Chain names and rule texts are those of kube-proxy and the
kubelet 1.20 (pkg/proxy/iptables/proxier.go, pkg/proxy/ipvs/proxier.go,
pkg/kubelet/kubelet_network_linux.go) and flannel (network/iptables.go), as iptables-save
1.4.21 prints them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import sys

if "/usr/lib/lab" not in sys.path:
    sys.path.insert(0, "/usr/lib/lab")
import labcommon as lc

from k8s import state
from k8s.common import write_file

MASQ = "0x4000/0x4000"
DROP = "0x8000/0x8000"
CNI_CONF = "/etc/cni/net.d/10-flannel.conflist"
SUBNET_ENV = "/run/flannel/subnet.env"
# kube-proxy's IPVS mode checks these (pkg/proxy/ipvs): nf_conntrack_ipv4 on kernels < 4.19
# (el7's 3.10), nf_conntrack on el8's 4.18 (RHEL 8.3+ merged them) and el9's 5.14.
IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", lc.CONNTRACK_MODULE)
NFT_FILE = lc.RUN / "nftables.json"  # {"tables": ["ip kube-proxy", ...]}: the `nft` stand-in's
PROXY_MODE = lc.RUN / "kube-proxy.json"  # {cluster_id, mode}: the mode kube-proxy started in

Rules = dict[str, dict[str, list[list[str]]]]  # table -> chain -> [argv]
Part = tuple[Rules, Rules, Rules]  # (owned chains, jumps prepended, jumps appended)


def comment(text: str) -> list[str]:
    return ["-m", "comment", "--comment", text]


def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


# ---- services ------------------------------------------------------------------------------

def services(data: dict, pods: list[dict]) -> list[dict]:
    """The cluster's ClusterIP service ports with their ready endpoints."""
    try:
        net = ipaddress.ip_network(data.get("config", {}).get("serviceSubnet") or "10.96.0.0/12",
                                   strict=False)
    except ValueError:
        net = ipaddress.ip_network("10.96.0.0/12")
    api_ip, dns_ip = str(net.network_address + 1), str(net.network_address + 10)
    from k8s import apiserver  # every API server whose node is there (HA control planes)

    api_eps = [f"{addr}:{port}" for _, addr, port in apiserver.endpoints(data)]
    dns = [p["ip"] for p in pods if p["name"].startswith("coredns-") and p["reason"] == "Running"
           and p["ip"]]
    return [
        {"name": "default/kubernetes:https", "proto": "tcp", "ip": api_ip, "port": 443,
         "eps": api_eps},
        {"name": "kube-system/kube-dns:dns", "proto": "udp", "ip": dns_ip, "port": 53,
         "eps": [f"{a}:53" for a in dns]},
        {"name": "kube-system/kube-dns:dns-tcp", "proto": "tcp", "ip": dns_ip, "port": 53,
         "eps": [f"{a}:53" for a in dns]},
        {"name": "kube-system/kube-dns:metrics", "proto": "tcp", "ip": dns_ip, "port": 9153,
         "eps": [f"{a}:9153" for a in dns]},
    ]


# ---- iptables content ----------------------------------------------------------------------

def kubelet_rules() -> Part:
    """What the kubelet keeps (kubelet_network_linux.go, 1.20; it appends its jumps)."""
    chains: Rules = {
        "filter": {"KUBE-FIREWALL": [
            [*comment("kubernetes firewall for dropping marked packets"), "-m", "mark", "--mark",
             DROP, "-j", "DROP"],
            ["!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8",
             *comment("block incoming localnet connections"), "-m", "conntrack", "!",
             "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"]],
            "KUBE-KUBELET-CANARY": []},
        "nat": {"KUBE-MARK-DROP": [["-j", "MARK", "--set-xmark", DROP]],
                "KUBE-MARK-MASQ": [["-j", "MARK", "--set-xmark", MASQ]],
                "KUBE-POSTROUTING": postrouting(),
                "KUBE-KUBELET-CANARY": []},
        "mangle": {"KUBE-KUBELET-CANARY": []},
    }
    jumps: Rules = {"filter": {"INPUT": [["-j", "KUBE-FIREWALL"]],
                               "OUTPUT": [["-j", "KUBE-FIREWALL"]]},
                    "nat": {"POSTROUTING": [[*comment("kubernetes postrouting rules"),
                                             "-j", "KUBE-POSTROUTING"]]}}
    return chains, {}, jumps


def postrouting(hairpin: bool = False) -> list[list[str]]:
    rules = [["-m", "mark", "!", "--mark", MASQ, "-j", "RETURN"],
             ["-j", "MARK", "--set-xmark", "0x4000/0x0"],
             [*comment("kubernetes service traffic requiring SNAT"), "-j", "MASQUERADE"]]
    if hairpin:  # ipvs mode
        rules.insert(0, [*comment("Kubernetes endpoints dst ip:port, source ip for solving "
                                  "hairpin purpose"), "-m", "set", "--match-set",
                         "KUBE-LOOP-BACK", "dst,dst,src", "-j", "MASQUERADE"])
    return rules


def forward_rules() -> list[list[str]]:
    return [["-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"],
            [*comment("kubernetes forwarding rules"), "-m", "mark", "--mark", MASQ, "-j",
             "ACCEPT"],
            [*comment("kubernetes forwarding conntrack pod source rule"), "-m", "conntrack",
             "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            [*comment("kubernetes forwarding conntrack pod destination rule"), "-m",
             "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]]


def proxy_iptables(data: dict, svcs: list[dict]) -> Part:
    """kube-proxy in iptables mode (pkg/proxy/iptables/proxier.go; each jump of
    iptablesJumpChains is prepended in turn, so the last one listed ends up first)."""
    pod_net = data.get("config", {}).get("podSubnet") or ""
    new = ["-m", "conntrack", "--ctstate", "NEW"]
    nat: dict[str, list[list[str]]] = {"KUBE-SERVICES": [], "KUBE-NODEPORTS": [],
                                       "KUBE-PROXY-CANARY": []}
    filt: dict[str, list[list[str]]] = {"KUBE-SERVICES": [], "KUBE-EXTERNAL-SERVICES": [],
                                        "KUBE-NODEPORTS": [], "KUBE-FORWARD": forward_rules(),
                                        "KUBE-PROXY-CANARY": []}
    for s in svcs:
        proto, match = s["proto"], ["-m", s["proto"], "--dport", str(s["port"])]
        dst = ["-d", f"{s['ip']}/32", "-p", proto]
        if not s["eps"]:
            filt["KUBE-SERVICES"].append([*dst, *comment(f"{s['name']} has no endpoints"),
                                          *match, "-j", "REJECT", "--reject-with",
                                          "icmp-port-unreachable"])
            continue
        svc = "KUBE-SVC-" + _hash16(s["name"] + proto)
        cluster_ip = comment(f"{s['name']} cluster IP")
        if pod_net:
            nat["KUBE-SERVICES"].append(["!", "-s", pod_net, *dst, *cluster_ip, *match, "-j",
                                         "KUBE-MARK-MASQ"])
        nat["KUBE-SERVICES"].append([*dst, *cluster_ip, *match, "-j", svc])
        nat[svc] = []
        for i, ep in enumerate(s["eps"]):
            sep = "KUBE-SEP-" + _hash16(s["name"] + proto + ep)
            left = len(s["eps"]) - i
            pick = ["-m", "statistic", "--mode", "random", "--probability",
                    f"{1 / left:.11f}"] if left > 1 else []
            nat[svc].append([*comment(s["name"]), *pick, "-j", sep])
            nat[sep] = [["-s", ep.rsplit(":", 1)[0] + "/32", *comment(s["name"]), "-j",
                         "KUBE-MARK-MASQ"],
                        ["-p", proto, *comment(s["name"]), "-m", proto, "-j", "DNAT",
                         "--to-destination", ep]]
    nat["KUBE-SERVICES"].append([*comment("kubernetes service nodeports; NOTE: this must be "
                                          "the last rule in this chain"), "-m", "addrtype",
                                 "--dst-type", "LOCAL", "-j", "KUBE-NODEPORTS"])
    portals = comment("kubernetes service portals")
    external = [*new, *comment("kubernetes externally-visible service portals"), "-j",
                "KUBE-EXTERNAL-SERVICES"]
    jumps: Rules = {
        "filter": {"INPUT": [external, [*comment("kubernetes health check service ports"),
                                        "-j", "KUBE-NODEPORTS"]],
                   "FORWARD": [external, [*new, *portals, "-j", "KUBE-SERVICES"],
                               [*comment("kubernetes forwarding rules"), "-j", "KUBE-FORWARD"]],
                   "OUTPUT": [[*new, *portals, "-j", "KUBE-SERVICES"]]},
        "nat": {"OUTPUT": [[*portals, "-j", "KUBE-SERVICES"]],
                "PREROUTING": [[*portals, "-j", "KUBE-SERVICES"]],
                "POSTROUTING": [[*comment("kubernetes postrouting rules"), "-j",
                                 "KUBE-POSTROUTING"]]},
    }
    return {"filter": filt, "nat": nat, "mangle": {"KUBE-PROXY-CANARY": []}}, jumps, {}


def proxy_ipvs(data: dict) -> Part:
    """kube-proxy in ipvs mode (pkg/proxy/ipvs/proxier.go; jumps prepended in turn)."""
    pod_net = data.get("config", {}).get("podSubnet") or ""
    cluster_ip = ["-m", "set", "--match-set", "KUBE-CLUSTER-IP", "dst,dst"]
    services_rules = [["-m", "addrtype", "--dst-type", "LOCAL", "-j", "KUBE-NODE-PORT"],
                      [*cluster_ip, "-j", "ACCEPT"]]
    if pod_net:
        services_rules.insert(0, ["!", "-s", pod_net, *comment(
            "Kubernetes service cluster ip + port for masquerade purpose"), *cluster_ip, "-j",
            "KUBE-MARK-MASQ"])
    nat = {"KUBE-SERVICES": services_rules, "KUBE-POSTROUTING": postrouting(hairpin=True),
           "KUBE-FIREWALL": [["-j", "KUBE-MARK-DROP"]], "KUBE-NODE-PORT": [],
           "KUBE-LOAD-BALANCER": [["-j", "KUBE-MARK-MASQ"]]}
    portals = comment("kubernetes service portals")
    jumps: Rules = {"nat": {"OUTPUT": [[*portals, "-j", "KUBE-SERVICES"]],
                            "PREROUTING": [[*portals, "-j", "KUBE-SERVICES"]],
                            "POSTROUTING": [[*comment("kubernetes postrouting rules"), "-j",
                                             "KUBE-POSTROUTING"]]},
                    "filter": {"FORWARD": [[*comment("kubernetes forwarding rules"), "-j",
                                            "KUBE-FORWARD"]]}}
    return {"nat": nat, "filter": {"KUBE-FORWARD": forward_rules()}}, jumps, {}


def flannel_rules(network: str, subnet: str) -> Part:
    """flanneld's rules (network/iptables.go MasqRules, ForwardRules: `-I` jumps; iptables
    1.4.21 has no --random-fully)."""
    masq, fwd = comment("flanneld masq"), comment("flanneld forward")
    chains: Rules = {
        "nat": {"FLANNEL-POSTRTG": [
            ["-m", "mark", "--mark", MASQ, *masq, "-j", "RETURN"],
            ["-s", network, "-d", network, *masq, "-j", "RETURN"],
            ["-s", network, "!", "-d", "224.0.0.0/4", *masq, "-j", "MASQUERADE"],
            ["!", "-s", network, "-d", subnet, *masq, "-j", "RETURN"],
            ["!", "-s", network, "-d", network, *masq, "-j", "MASQUERADE"]]},
        "filter": {"FLANNEL-FWD": [["-s", network, *fwd, "-j", "ACCEPT"],
                                   ["-d", network, *fwd, "-j", "ACCEPT"]]},
    }
    jumps: Rules = {"nat": {"POSTROUTING": [[*masq, "-j", "FLANNEL-POSTRTG"]]},
                    "filter": {"FORWARD": [[*fwd, "-j", "FLANNEL-FWD"]]}}
    return chains, jumps, {}


def merge(into: Part, more: Part) -> None:
    """Add MORE's chains and jumps; a chain MORE extends takes MORE's order."""
    for part, add in zip(into, more, strict=True):
        for table, chains in add.items():
            for name, rules in chains.items():
                have = part.setdefault(table, {}).setdefault(name, [])
                if all(r in rules for r in have):
                    have[:] = rules
                else:
                    have += [r for r in rules if r not in have]


def apply_iptables(chains: Rules, prepend: Rules, append: Rules, prune: bool = True) -> None:
    """Make the owned chains exactly CHAINS (and drop stale KUBE-SVC/SEP chains), like
    kube-proxy's iptables-restore --noflush; add each missing jump rule (EnsureRule): APPEND
    ones at the end, then PREPEND ones at the top, one after the other. PRUNE false: no
    kube-proxy runs, nobody drops the stale KUBE-SVC/SEP chains."""
    with lc.locked("iptables"):
        tables = lc.read_json(lc.IPTABLES_FILE, None)
        tables = tables if isinstance(tables, dict) else {}
        before = json.dumps(tables, sort_keys=True)
        for tname in set(chains) | set(prepend) | set(append):
            t = tables.setdefault(tname, {c: {"policy": "ACCEPT", "rules": []}
                                          for c in lc.IPTABLES_BUILTIN[tname]})
            want = chains.get(tname, {})
            for name in [c for c in t if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))]:
                if prune and name not in want:
                    del t[name]
            for name, rules in want.items():
                t.setdefault(name, {"policy": "-", "rules": []})["rules"] = [
                    lc.ipt_spec(r) for r in rules]
            for where, jumps in ((len, append), (lambda have: 0, prepend)):
                for chain, rules in jumps.get(tname, {}).items():
                    have = t.setdefault(chain, {"policy": "ACCEPT", "rules": []})["rules"]
                    for spec in map(lc.ipt_spec, rules):
                        if spec not in have:
                            have.insert(where(have), spec)
        if json.dumps(tables, sort_keys=True) != before:
            lc.write_json(lc.IPTABLES_FILE, tables, sort_keys=False)


# ---- links, ipvs, ipsets -------------------------------------------------------------------

def link(name: str, kind: str, mtu: int, up: bool, addrs: list[str]) -> dict:
    seed = hashlib.sha256(f"{lc.hostname()}/{name}".encode()).hexdigest()
    mac = "02:" + ":".join(seed[i:i + 2] for i in range(0, 10, 2))
    return {"name": name, "type": kind, "mtu": mtu, "mac": mac, "up": up, "addrs": addrs}


def apply_links(wanted: list[dict], fixed_addrs: set[str]) -> list[dict]:
    """Create missing links; set addresses of the links named in FIXED_ADDRS (the others,
    e.g. a cni0 left from another cluster, keep theirs: the bridge plugin refuses to change
    them). Returns the links."""
    with lc.locked("links"):
        links = lc.read_links()
        before = json.dumps(links)
        names = {ln["name"]: ln for ln in links}
        for w in wanted:
            have = names.get(w["name"])
            if have is None:
                links.append(w)
            elif w["name"] in fixed_addrs:
                have["addrs"] = w["addrs"]
        if json.dumps(links) != before:
            lc.write_json(lc.LINKS_FILE, links)
        return links


def apply_ipvs(svcs: list[dict]) -> None:
    with lc.locked("ipvs"):
        cur = lc.read_json(lc.IPVS_FILE, {}) or {}
        new = dict(cur)
        for s in svcs:
            new[f"{s['proto'].upper()} {s['ip']}:{s['port']}"] = {"sched": "rr",
                                                                  "reals": list(s["eps"])}
        if new != cur:
            lc.write_json(lc.IPVS_FILE, new, sort_keys=False)


def apply_nft(tables: list[str], svcs: list[dict] | None = None) -> None:
    """kube-proxy in nftables mode (pkg/proxy/nftables: table `kube-proxy` in the ip and ip6
    families) keeps its tables, the ip table's `service-ips` map holding an element per IPv4
    Service port (`ip . proto . port : goto service-<hash>-<ns>/<name>/<proto>/<port name>`,
    pkg/proxy/nftables/proxier.go); the `nft` stand-in lists and deletes them."""
    elements = sorted(
        f"{s['ip']} . {s['proto']} . {s['port']} : goto service-{_hash16(s['name'])[:8]}-"
        f"{s['name'].split(':')[0]}/{s['proto']}/{s['name'].split(':')[-1]}"
        for s in svcs or [])
    with lc.locked("nft"):
        cur = lc.read_json(NFT_FILE, {}) or {}
        have = list(cur.get("tables") or [])
        new = {"tables": have + [t for t in tables if t not in have],
               "service_ips": {"ip kube-proxy": elements}}
        if new != {"tables": have, "service_ips": cur.get("service_ips")}:
            lc.write_json(NFT_FILE, new)


def apply_ipsets(svcs: list[dict]) -> None:
    with lc.locked("ipset"):
        cur = lc.read_json(lc.IPSET_FILE, {}) or {}
        new = json.loads(json.dumps(cur))
        new.setdefault("KUBE-LOOP-BACK", {"type": "hash:ip,port,ip", "members": []})
        new["KUBE-CLUSTER-IP"] = {"type": "hash:ip,port", "members": sorted(
            f"{s['ip']},{s['proto']}:{s['port']}" for s in svcs)}
        if new != cur:
            lc.write_json(lc.IPSET_FILE, new, sort_keys=False)


def flannel_files(network: str, subnet: str) -> None:
    """What a running flannel pod leaves: the CNI config (install-cni) and subnet.env."""
    conf = {"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    if not os.path.exists(CNI_CONF):
        write_file(CNI_CONF, json.dumps(conf, indent=2) + "\n")
    env = (f"FLANNEL_NETWORK={network}\nFLANNEL_SUBNET={state.gateway(subnet)}\n"
           "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    try:
        with open(SUBNET_ENV) as fh:
            same = fh.read() == env
    except OSError:
        same = False
    if not same:
        write_file(SUBNET_ENV, env)


# ---- the node's pods -----------------------------------------------------------------------

def sync(data: dict, facts: dict) -> dict:
    """Bring this node's network state to what its running pods keep; return the facts the
    kubelet reports about it ({'cni0': address or None})."""
    name = facts.get("name", "")
    with contextlib.suppress(Exception):  # kube-vip's static pod (k8s/kubevip.py): publish it
        from k8s import kubevip

        kubevip.sync(bool(facts.get("kubelet_active")))
    # pods learn what to do from the API server: nothing new while it is down (e.g. the
    # kubelet started by a new `kubeadm init` still sees the reset cluster's state)
    from k8s import apiserver

    if os.geteuid() == 0 and apiserver.any_running(data) and name in data.get("nodes", {}):
        with contextlib.suppress(OSError):
            _sync(data, name)
    cni0 = next((ln for ln in lc.read_links() if ln["name"] == "cni0"), None)
    return {"cni0": (cni0["addrs"] or [None])[0] if cni0 else None}


def proxy_mode(data: dict) -> str:
    """The mode this node's kube-proxy runs in: the cluster's proxyMode, but 'ipvs' falls back
    to 'iptables' when the IPVS modules were not loaded as it started (server_others.go);
    chosen once per cluster and boot, like the kube-proxy container."""
    cid = data.get("cluster_id", "")
    kept = lc.read_json(PROXY_MODE, {}) or {}
    if kept.get("cluster_id") == cid and kept.get("mode"):
        return kept["mode"]
    mode = data.get("config", {}).get("proxyMode") or "iptables"
    loaded = set(lc.loaded_modules())
    if mode == "ipvs" and not all(m in loaded for m in IPVS_MODULES):
        mode = "iptables"
    lc.write_json(PROXY_MODE, {"cluster_id": cid, "mode": mode})
    return mode


def proxy_gone(data: dict, svcs: list[dict]) -> None:
    """What a node whose kube-proxy never came back after a reboot has (the fault knob
    kube_proxy_down, STATE.md), done once per fault: none of kube-proxy's iptables chains
    (either mode's, KUBE-SVC-/KUBE-SEP- included) nor the rules jumping to them, no IPVS
    virtual service of the cluster's Services, no kube-ipvs0, no KUBE-* ipset, no nftables
    table. The kubelet's and flannel's state stays (the next apply rewrites the kubelet's)."""
    kept = lc.read_json(PROXY_MODE, {}) or {}
    cid = data.get("cluster_id", "")
    if kept.get("down") == cid:
        return
    mine = kubelet_rules()[0]
    owned: dict[str, set[str]] = {}
    for part in (proxy_iptables(data, svcs), proxy_ipvs(data)):
        for table, chains in part[0].items():
            owned.setdefault(table, set()).update(c for c in chains
                                                  if c not in mine.get(table, {}))
    with lc.locked("iptables"):
        tables = lc.read_json(lc.IPTABLES_FILE, None)
        if isinstance(tables, dict):
            for tname, t in tables.items():
                gone = {c for c in t if c in owned.get(tname, set())
                        or c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}
                for c in gone:
                    del t[c]
                for chain in t.values():
                    chain["rules"] = [r for r in chain["rules"] if _target(r) not in gone]
            lc.write_json(lc.IPTABLES_FILE, tables, sort_keys=False)
    with lc.locked("ipvs"):
        cur = lc.read_json(lc.IPVS_FILE, {}) or {}
        ours = {f"{s['proto'].upper()} {s['ip']}:{s['port']}" for s in svcs}
        new = {k: v for k, v in cur.items() if k not in ours}
        if new != cur:
            lc.write_json(lc.IPVS_FILE, new, sort_keys=False)
    with lc.locked("ipset"):
        cur = lc.read_json(lc.IPSET_FILE, {}) or {}
        new = {k: v for k, v in cur.items() if k not in ("KUBE-CLUSTER-IP", "KUBE-LOOP-BACK")}
        if new != cur:
            lc.write_json(lc.IPSET_FILE, new, sort_keys=False)
    with lc.locked("links"):
        links = lc.read_links()
        new_links = [ln for ln in links if ln["name"] != "kube-ipvs0"]
        if new_links != links:
            lc.write_json(lc.LINKS_FILE, new_links)
    with lc.locked("nft"):
        cur = lc.read_json(NFT_FILE, {}) or {}
        have = list(cur.get("tables") or [])
        left = [t for t in have if t not in ("ip kube-proxy", "ip6 kube-proxy")]
        if left != have:
            lc.write_json(NFT_FILE, {"tables": left})
    lc.write_json(PROXY_MODE, {"down": cid})


def _target(spec: str) -> str:
    """The -j target of a stored rule ('' without one)."""
    words = spec.split()
    return words[words.index("-j") + 1] if "-j" in words[:-1] else ""


def _sync(data: dict, name: str) -> None:
    st = state.node_status(data, name)
    if not st["kubelet"]:
        return
    pods = state.pods(data)
    svcs = services(data, pods)
    rules = kubelet_rules()
    down = state.kube_proxy_down(name)
    if down:  # the fault knob: once, kube-proxy's state goes as a reboot drops it
        proxy_gone(data, svcs)
    elif (lc.read_json(PROXY_MODE, {}) or {}).get("down"):
        lc.write_json(PROXY_MODE, {})  # the fault is lifted: kube-proxy starts afresh
    # kube-proxy runs where its DaemonSet has a pod; a deleted DaemonSet's pods stop and leave
    # what they wrote (kube-proxy cleans nothing on exit)
    runs = not down and state.KUBE_PROXY_DS in state.objects(data)
    mode = proxy_mode(data) if runs else ""
    ipvs = mode == "ipvs"
    if mode == "nftables":  # its own tables, no KUBE-* iptables chain of kube-proxy's
        if state.proxy_problem(data, name) is None:
            apply_nft(["ip kube-proxy", "ip6 kube-proxy"], svcs)
    elif mode:
        merge(rules, proxy_ipvs(data) if ipvs else proxy_iptables(data, svcs))
    links: list[dict] = []
    fixed: set[str] = set()
    if ipvs:
        links.append(link("kube-ipvs0", "dummy", 1500, False,
                          sorted({f"{s['ip']}/32" for s in svcs})))
        fixed.add("kube-ipvs0")
    net = state.cni(data)
    subnet = state.node_subnet(data, name)
    if net and st["cni"] and subnet:
        merge(rules, flannel_rules(net["network"], subnet))
        first = ipaddress.ip_network(subnet).network_address
        links.append(link("flannel.1", "vxlan", 1450, True, [f"{first}/32"]))
        links.append(link("cni0", "bridge", 1450, True, [state.gateway(subnet)]))
        fixed.add("flannel.1")  # flanneld replaces flannel.1's address; cni0 is refused
        flannel_files(net["network"], subnet)
    apply_iptables(*rules, prune=runs)
    if links:
        apply_links(links, fixed)
    if ipvs:
        apply_ipvs(svcs)
        apply_ipsets(svcs)


def sync_here() -> None:
    """The network stand-ins' hook (labcommon.k8s_sync): catch up from the last published
    facts without running any command, and publish the cni0 address."""
    data = state.load()
    name = state.kubelet_node_name()
    if name not in data.get("nodes", {}):
        return
    facts = state.node_facts(name)
    if not facts:
        return
    extra = sync(data, facts)
    if extra != {k: facts.get(k) for k in extra}:
        facts.update(extra)
        state.publish_facts(facts)
