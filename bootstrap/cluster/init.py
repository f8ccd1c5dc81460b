"""init-master: the init node's phases, seed 004 steps 5-7 corrected by the field notes.

preflight -> images -> kubeadm-config -> kube-vip -> kubeadm-init -> kube-vip-admin ->
kubeconfig -> flannel, then wait-ready (the stages: ``init_stages``; the kube-vip phases only
with ``cluster.load_balancer: kube-vip``).
A master that is already initialised is left alone (ok); a failed init shows kubeadm's error
lines, the kubelet's journal and the pods, and undoes a half-done init with ``kubeadm reset -f``.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from .. import facts as F
from .. import runtimes
from ..engine import CHANGED, FAILED, OK, RUNNING, SKIPPED, HostResult, Runner, StepResult
from ..errors import BootstrapError
from ..interrupt import Interrupted
from ..models import Node
from ..plan import Plan
from ..ssh import Session
from ..stages import INIT, Data, Stage, clean, run_stages
from ..steps import Target
from ..workflow import Need
from . import flannel, kube_vip
from .common import (
    ADMIN_CONF,
    KUBECTL,
    Account,
    K,
    account,
    error_lines,
    evidence_script,
    parse_nodes,
    parse_pods,
    present,
    undo_script,
    wait_script,
)
from .kubeadm_config import INIT_CONFIG, api_version, init_config
from .phases import Phase, cluster_phase, images_phase, preflight_phase

APISERVER = f"{K}/manifests/kube-apiserver.yaml"


def initialised(found: set[str]) -> bool:
    """A control plane exists: admin.conf and the API server's static pod manifest."""
    return ADMIN_CONF in found and APISERVER in found


PREFLIGHT = preflight_phase(initialised, "already initialised")
IMAGES = images_phase(initialised)


# -- kubeadm-config ------------------------------------------------------------------------------
def _config_facts(t: Target) -> list[F.Fact]:
    return [F.file(INIT_CONFIG), present()]


def _config_plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    want = init_config(t.inv)
    before = facts[f"file:{INIT_CONFIG}"]
    if initialised(facts[present().name]):
        if before is None:
            p.notes.append(f"initialised without this toolkit; {INIT_CONFIG} not written")
        elif before.content != want:
            p.notes.append(
                f"WARNING: the inventory no longer matches {INIT_CONFIG}, which this cluster was "
                "initialised with; kubeadm reads it at init only: to apply the change, "
                "invoke reset then init-master"
            )
        return p
    p.write(INIT_CONFIG, want, before, mode=0o600)
    return p


CONFIG = cluster_phase(
    "kubeadm-config", "the kubeadm config file (API version by release)", _config_facts,
    _config_plan,
)


CONFIG_FILE = Need("kubeadm-config", INIT_CONFIG, lambda t: [F.file(INIT_CONFIG), present()],
                   lambda t, facts: facts[f"file:{INIT_CONFIG}"] is not None
                   or initialised(facts[present().name]))
CONTROL_PLANE = Need("kubeadm-init", f"an initialised control plane: {ADMIN_CONF}",
                     lambda t: [present()], lambda t, facts: initialised(facts[present().name]))


# -- kubeadm-init --------------------------------------------------------------------------------
UPLOAD_CONFIG = f"{K}/k8s-bootstrap-init.yaml"
"""With several control planes: the kept config plus the certificate key, which kubeadm init
reads and the toolkit removes on exit (the key is never kept on a node)."""


def init_command(ignore: list[str], upload: bool = False) -> str:
    """``kubeadm init --config`` (only flags kubeadm allows next to --config); ``upload``: the
    shared certificates to Secret kubeadm-certs, the key never printed."""
    config = UPLOAD_CONFIG if upload else INIT_CONFIG
    cmd = f"kubeadm init --config {config} --skip-token-print"
    if upload:
        cmd += " --upload-certs --skip-certificate-key-print"
    if ignore:
        cmd += f" --ignore-preflight-errors={shlex.quote(','.join(ignore))}"
    return cmd


def _init_phase(ignore: list[str], key: str = "", dry_run: bool = False) -> Phase:
    def plan(t: Target, facts: F.Facts) -> Plan:
        p = Plan()
        if initialised(facts[present().name]):
            return p
        api = api_version(t.inv.cluster.version_tuple)
        if key:
            q = shlex.quote(UPLOAD_CONFIG)
            p.run(f"rm -f {q} {q}.k8s-bootstrap.bak; trap 'rm -f {q}' EXIT",
                  label=f"remove {UPLOAD_CONFIG} on exit")
            p.write(UPLOAD_CONFIG, init_config(t.inv, key), None, mode=0o600,
                    secret=not dry_run)
        p.run(init_command(ignore, upload=bool(key)), f"kubeadm config {api}"
              + (", the certificates uploaded for the other control planes" if key else ""))
        return p

    return cluster_phase("kubeadm-init", "kubeadm init --config", lambda t: [present()], plan,
                         on_failure=_init_failed, needs=(CONFIG_FILE,))


def _init_failed(t: Target, session: Session, stderr: str) -> str:
    """kubeadm's error lines, the kubelet's journal, the pods; then undo a half-done init."""
    script = evidence_script(kubectl=True, runtime=t.inv.cluster.runtime) + undo_script(
        "kubeadm init", (ADMIN_CONF, APISERVER),
        session.journal_entry("kubeadm-init", "kubeadm reset -f (undo a half-done init)"),
        runtimes.cri_flag(t.inv),
    )
    res = session.run(script, what="collect init evidence", timeout=300)
    lines = error_lines(stderr, limit=20)
    return "--- kubeadm\n" + "\n".join(lines) + "\n" + res.stdout


# -- kubeconfig ----------------------------------------------------------------------------------
def _user_config(t: Target) -> F.Fact:
    user = shlex.quote(t.user)
    cmd = (
        f'h=$(getent passwd {user} | cut -d: -f6); f="$h/.kube/config"; '
        f'[ -n "$h" ] && [ -f "$f" ] || exit 1; '
        f"stat -c '%a %u %g' \"$f\"; sha256sum < \"$f\" | cut -d' ' -f1"
    )

    def parse(out: str, rc: int) -> tuple[int, int, int, str] | None:
        words = out.split()
        if rc != 0 or len(words) != 4:
            return None
        return int(words[0], 8), int(words[1]), int(words[2]), words[3]

    return F.Fact(f"user-kubeconfig:{t.user}", cmd, parse)


def _admin_sha() -> F.Fact:
    return F.command("admin-sha", f"sha256sum < {ADMIN_CONF} | cut -d' ' -f1")


def _kubeconfig_phase(stamp: str) -> Phase:
    def facts(t: Target) -> list[F.Fact]:
        return [account(t.user), _admin_sha(), _user_config(t)]

    def plan(t: Target, facts: F.Facts) -> Plan:
        p = Plan()
        acct: Account | None = facts[account(t.user).name]
        if acct is None:
            p.error = f"no account {t.user} on the node (getent passwd)"
            return p
        have = facts[_user_config(t).name]
        sha = facts["admin-sha"]
        if sha and have == (0o600, acct.uid, acct.gid, sha):
            return p
        d = shlex.quote(f"{acct.home}/.kube")
        conf = shlex.quote(f"{acct.home}/.kube/config")
        backup = shlex.quote(f"{acct.home}/.kube/config.k8s-bootstrap-{stamp}.bak")
        owner = f"{acct.uid}:{acct.gid}"
        p.run(
            f"mkdir -p {d} && chown {owner} {d} && "
            f"if [ -f {conf} ] && ! cmp -s {ADMIN_CONF} {conf}; then cp -p {conf} {backup}; fi && "
            f"install -m 0600 -o {acct.uid} -g {acct.gid} {ADMIN_CONF} {conf}",
            "seed 004: $HOME/.kube/config from admin.conf"
            + ("; the old one (another cluster's CA: the x509 trap) is kept" if have else ""),
            label=f"copy admin.conf to {acct.home}/.kube/config"
            + (" (old one kept as .kube/config.k8s-bootstrap-*.bak)" if have else ""),
        )
        return p

    return cluster_phase("kubeconfig", "the SSH user's $HOME/.kube/config", facts, plan,
                         needs=(CONTROL_PLANE,))


# -- flannel -------------------------------------------------------------------------------------
def _ds_fact(t: Target) -> F.Fact:
    ns = flannel.release(t.inv.network.flannel_version).namespace
    return F.command(
        f"flannel-ds:{ns}", f"{KUBECTL} get daemonset -n {ns} kube-flannel-ds -o name"
    )


def _flannel_facts(t: Target) -> list[F.Fact]:
    return [F.file(flannel.MANIFEST), _ds_fact(t)]


def _flannel_plan(t: Target, facts: F.Facts) -> Plan:
    p = Plan()
    written = p.write(flannel.MANIFEST, flannel.manifest(t.inv), facts[f"file:{flannel.MANIFEST}"])
    if written or not facts[_ds_fact(t).name]:
        p.run(f"{KUBECTL} apply -f {flannel.MANIFEST}", "the pod network (flannel)")
    return p


FLANNEL = cluster_phase("flannel", "flannel manifest applied", _flannel_facts, _flannel_plan,
                        needs=(CONTROL_PLANE,))


def init_phases(ignore: list[str], stamp: str | None = None, key: str = "",
                dry_run: bool = False, vip: bool = True) -> list[Phase]:
    """The master's phases in order (``key``: several control planes, the certificates are
    uploaded with it; ``vip``: with kube-vip's phases)."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    before = [kube_vip.BEFORE_INIT] if vip else []
    after = [kube_vip.after_init(CONTROL_PLANE)] if vip else []
    return [PREFLIGHT, IMAGES, CONFIG, *before, _init_phase(ignore, key, dry_run), *after,
            _kubeconfig_phase(stamp), FLANNEL]



# -- the command ---------------------------------------------------------------------------------
def _init_node(data: Data) -> list[Node]:
    return [data.inv.init_node]


def init_stages(ignore: list[str], fetch: str | None, timeout: int) -> list[Stage]:
    """init-master: the init node's phases, its kubeconfig saved locally (``--fetch-kubeconfig``),
    the other control planes one at a time (bootstrap/cluster/control_plane.py), then the wait
    until they are Ready (only those none of whose phases failed)."""
    from . import control_plane

    names = tuple(p.name for p in init_phases(ignore))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    before, others, cleanups = control_plane.stages(ignore, stamp)

    def wait(data: Data, session: Session, nodes: list[Node]) -> StepResult:
        t = Target(data.inv, data.inv.init_node)
        return wait_ready(data.runner, session, t, [n.name for n in nodes], timeout)

    def planes(data: Data) -> list[Node]:
        """The init node, and the control planes in the cluster now (joined, or already)."""
        def member(node: Node) -> bool:
            joined = next((s for s in data.result(node).steps if s.name == "kubeadm-join"), None)
            return node == data.inv.init_node or (joined is not None and joined.status in (
                OK, CHANGED))

        return clean(data, [n for n in data.inv.control_plane if n in data.targets
                            and member(n)])

    return [
        *before,
        Stage("init", _init_node, phases=lambda t, d: init_phases(
            ignore, stamp, d.get("certificate_key", ""), d.runner.opts.dry_run,
            t.inv.load_balancer == "kube-vip"), names=names),
        Stage("fetch-kubeconfig", lambda d: clean(d, _init_node(d)), on=INIT, once=True,
              action=lambda d, session, nodes: fetch_kubeconfig(
                  session, Path(fetch or ""), d.runner.opts.dry_run),
              when=lambda d: None if fetch else "not asked (--fetch-kubeconfig)"),
        *others,
        Stage("wait-ready", planes, action=wait, on=INIT, once=True, names=("wait-ready",)),
        *cleanups,
    ]


def init_master(
    runner: Runner, ignore: list[str], fetch: str | None, timeout: int,
    planes: list[Node] | None = None,
) -> dict[str, HostResult]:
    """Run the init node's phases, save the kubeconfig locally if asked, join the other control
    planes (``planes``: those, else all), wait until Ready."""
    data = Data(runner, [runner.inv.init_node, *(n for n in planes or runner.inv.control_plane
                                                 if n != runner.inv.init_node)])
    return run_stages(runner, init_stages(ignore, fetch, timeout), data)


def fetch_kubeconfig(session: Session, path: Path, dry_run: bool) -> StepResult:
    """``--fetch-kubeconfig PATH``: admin.conf saved locally, mode 0600 (it holds a key)."""
    name = "fetch-kubeconfig"
    if dry_run:
        return StepResult(name, CHANGED, message=f"would: save {ADMIN_CONF} to {path} (0600)")
    started = time.monotonic()
    content = session.run(
        f"cat {ADMIN_CONF}", what="read admin.conf", sensitive=True, check=True, readonly=True
    ).stdout
    try:
        old = path.read_text() if path.exists() else None
        if old == content and (path.stat().st_mode & 0o777) == 0o600:
            return StepResult(name, OK, time.monotonic() - started, f"{path} is current")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(content)
    except OSError as exc:
        raise BootstrapError(f"--fetch-kubeconfig: cannot write {path}: {exc.strerror}") from None
    return StepResult(name, CHANGED, time.monotonic() - started, f"saved to {path} (0600)")


def _summary(out: str, nodes: list[str]) -> str:
    status = parse_nodes(out)
    parts = [f"{n} {status.get(n, 'missing')}" for n in nodes]
    groups: dict[str, list[str]] = {}
    for name, _ready, state in parse_pods(out):
        prefix = "coredns" if name.startswith("coredns-") else "kube-flannel"
        groups.setdefault(prefix, []).append(state)
    for prefix, states in groups.items():
        running = sum(s == "Running" for s in states)
        parts.append(f"{prefix} {running}/{len(states)} Running")
    return "; ".join(parts)


def _evidence_lines(text: str) -> list[str]:
    """The wait's output without its per-poll ``waiting:`` progress lines (the last one kept:
    it says what was still missing)."""
    lines = text.rstrip().splitlines()
    waiting = [ln for ln in lines if ln.startswith("waiting:")]
    return [ln for ln in lines if not ln.startswith("waiting:")] + waiting[-1:]


def wait_ready(
    runner: Runner, session: Session, t: Target, nodes: list[str], timeout: int
) -> StepResult:
    """Wait (on the master, one remote loop) until ``nodes`` are Ready and the flannel and
    coredns pods Running; on timeout show the nodes' conditions, the pods and the journal."""
    name = "wait-ready"
    if runner.opts.dry_run:
        return StepResult(name, SKIPPED, message="dry run")
    ns = flannel.release(t.inv.network.flannel_version).namespace
    started = time.monotonic()
    script = wait_script(nodes, {"kube-flannel-ds-": ns, "coredns-": "kube-system"}, timeout)
    try:
        with runner.reporter.running(t.node.name, name) as progress:
            res = session.run(script, what="wait until Ready", timeout=timeout + 60,
                              readonly=True, progress=progress)
    except Interrupted:
        return StepResult(name, RUNNING, time.monotonic() - started,
                          "stopped waiting (Ctrl-C); the wait changes nothing on the node")
    summary = _summary(res.stdout, nodes)
    seconds = time.monotonic() - started
    if res.ok:
        return StepResult(name, OK, seconds, summary)
    not_ready = [n for n, s in parse_nodes(res.stdout).items() if n in nodes and s != "Ready"]
    more = session.run(
        "".join(
            f"echo '--- kubectl describe node {n} (conditions)'; {KUBECTL} describe node "
            f"{shlex.quote(n)} 2>&1 | sed -n '/^Conditions:/,/^Addresses:/p';"
            for n in not_ready
        )
        + evidence_script(kubectl=False, runtime=t.inv.cluster.runtime),
        what="collect wait evidence", readonly=True,
    )
    runner.reporter.print(
        f"[{t.node.name}] {name} evidence:\n"
        + "".join(f"    {ln}\n" for ln in _evidence_lines(res.stdout + more.stdout))
    )
    return StepResult(name, FAILED, seconds, f"not ready after {timeout}s: {summary}")
