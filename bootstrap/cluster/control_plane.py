"""init-master's other control planes (README "HA control planes"): with more than one, the init
node's ``kubeadm init`` uploads the shared certificates (``--upload-certs``, encrypted with a key
the toolkit generates), then every other control-plane node joins, one at a time, and is ready
(its API server answers ``/readyz``, whose etcd check reaches its own, new etcd member) before
the next one starts.

The certificate key is a secret like the token: generated here, registered to be masked, fed to
kubeadm only inside transient files (mode 0600, removed on exit), never on a command line
(``--skip-certificate-key-print`` keeps kubeadm from printing it). kubeadm deletes the uploaded
certificates and the key's use after two hours; an upload older than ``REFRESH_AFTER`` is made
again with a new key before any join.
"""

from __future__ import annotations

import dataclasses
import secrets
import shlex
import time
from collections.abc import Callable

from .. import facts as F
from ..engine import CHANGED, StepResult
from ..errors import BootstrapError, CommandError
from ..models import Inventory, Node
from ..plan import Plan
from ..ssh import Session
from ..stages import BATCHES, INIT, LOCAL, Data, Stage
from ..steps import Target
from ..steps import hosts as hosts_step
from ..steps import images as images_step
from . import kube_vip
from .common import KUBECTL, K, present
from .join import (
    JOIN_FILE,
    PLACEHOLDER,
    _cluster,
    _delete_token,
    _join_failed,
    _remove_join_file,
    _token,
    abandoned,
    explain_token,
    join_command,
    joined,
    step,
    who,
)
from .kubeadm_config import init_config, join_config
from .phases import Phase, cluster_phase, images_phase, kubeadm_lines, preflight_phase

KEY_LIFETIME = 2 * 3600
"""kubeadm deletes Secret kubeadm-certs, and so the key's use, two hours after the upload
(kubernetes.io "Creating Highly Available Clusters with kubeadm")."""
REFRESH_AFTER = 3600
"""An upload older than this is made again, with a new key, before a control plane joins."""
UPLOAD_FILE = f"{K}/k8s-bootstrap-upload-certs.yaml"
KEY_PLACEHOLDER = "<a certificate key, generated at run time>"
READY_WAIT = 300  # seconds a joined control plane may take until its API server is ready
EXPIRED = ("kubeadm-certs", "might have expired", "certificate key", "decrypt")


def several(inv: Inventory) -> bool:
    """More than one control plane: init-master uploads the certificates and joins the rest."""
    return len(inv.control_plane) > 1


def new_key() -> str:
    """A certificate key as ``kubeadm certs certificate-key`` makes one: 32 random bytes, hex."""
    return secrets.token_hex(32)


# -- the key and the upload, on the init node -----------------------------------------------------
def key_stage(data: Data, session: Session | None, nodes: list[Node]) -> None:
    """A fresh key for this run's ``kubeadm init --upload-certs`` (a placeholder in a dry run)."""
    if data.runner.opts.dry_run:
        data.set("certificate_key", KEY_PLACEHOLDER)
    else:
        data.set("certificate_key", new_key(), secret=True)
    data.set("key_made", time.monotonic())


def upload_command() -> str:
    q = shlex.quote(UPLOAD_FILE)
    return (f"rm -f {q}; trap 'rm -f {q}' EXIT; (umask 077 && cat > {q}) && "
            f"kubeadm init phase upload-certs --upload-certs --config {q} "
            "--skip-certificate-key-print")


def uploaded_recently(data: Data) -> bool:
    """This run's ``kubeadm init`` uploaded the certificates less than REFRESH_AFTER ago."""
    init = step(data, data.inv.init_node, "kubeadm-init")
    made = data.get("key_made")
    return (init is not None and init.status == CHANGED and made is not None
            and time.monotonic() - made < REFRESH_AFTER)


def upload_stage(data: Data, session: Session, nodes: list[Node]) -> StepResult:
    """Upload the certificates again with a new key (the cluster existed before this run, or
    its upload is getting old)."""
    if data.runner.opts.dry_run:
        return StepResult("upload-certs", CHANGED, message="would: kubeadm init phase "
                          "upload-certs --upload-certs (a new certificate key, not printed)")
    key = new_key()
    data.set("certificate_key", key, secret=True)
    started = time.monotonic()
    res = session.run(upload_command(), stdin=init_config(data.inv, key),
                      what="upload the certificates for the control planes",
                      journal=("upload-certs", "kubeadm init phase upload-certs (a new key)"))
    if not res.ok:
        raise CommandError(session.name, "kubeadm init phase upload-certs", res.rc, res.stderr)
    data.set("key_made", started)
    return StepResult("upload-certs", CHANGED, time.monotonic() - started,
                      f"certificates uploaded to Secret kubeadm-certs; key valid "
                      f"{KEY_LIFETIME // 3600} h")


ADMIN_SERVER = F.command("admin-server",
                         f"sed -n 's/^ *server: *//p' {K}/admin.conf | head -n 1")
"""The API address kubeadm baked into the cluster's kubeconfigs (and certificates): the
endpoint, or the init node's own address when it was built without one."""


def baked_problem(inv: Inventory, server: str | None) -> str:
    """Why the cluster cannot take control planes: its kubeconfigs name another API address
    than the inventory's endpoint (one built without an endpoint names the init node's)."""
    want = f"https://{inv.control_plane_endpoint}"
    if not server or server == want:
        return ""
    init = inv.init_node.internal_address
    if server.removeprefix("https://").rpartition(":")[0] == init:
        return (f"the cluster was built without a control-plane endpoint: its kubeconfigs and "
                f"certificates name {inv.init_node.name}'s own address ({server}), so it cannot "
                "gain control planes. Rebuild it with the endpoint set (invoke reset, then "
                "init-master with cluster.load_balancer local, or external and "
                "cluster.control_plane_endpoint), or keep one control plane")
    return (f"the cluster's endpoint is {server}, the inventory's https://"
            f"{inv.control_plane_endpoint}: set cluster.control_plane_endpoint to the cluster's")


def ca_stage(data: Data, session: Session, nodes: list[Node]) -> None:
    """The CA's hash for the joins, once the cluster's endpoint is known to be the inventory's;
    in a dry run of a cluster not yet initialised, a placeholder (the CA does not exist yet)."""
    init = step(data, data.inv.init_node, "kubeadm-init")
    if data.runner.opts.dry_run and init is not None and init.status == CHANGED:
        data.set("ca_hash", "sha256:<the new CA's hash>")
        return
    server = data.runner.gather(session, [ADMIN_SERVER])[ADMIN_SERVER.name]
    problem = baked_problem(data.inv, server)
    if problem:
        raise BootstrapError(f"{data.inv.init_node.name}: {problem}")
    _cluster(data, session, nodes)


# -- a control plane's phases ---------------------------------------------------------------------
PREFLIGHT = preflight_phase(joined, "already a member of the cluster")
IMAGES = images_phase(joined)


def ready_command(inv: Inventory) -> str:
    """Wait until this node's API server (the endpoint's name now leads to it) is ready; its
    /readyz includes the etcd check of its own member."""
    k = f"{KUBECTL} get --raw=/readyz"
    tries = READY_WAIT // 2
    return (f"i=0; until {k} >/dev/null 2>&1; do i=$((i+1)); if [ $i -ge {tries} ]; then "
            f"echo 'the API server is not ready after {READY_WAIT}s:' >&2; "
            f"{KUBECTL} get --raw='/readyz?verbose' >&2; exit 1; fi; sleep 2; done")


def join_phase(token: str, ca_hash: str, key: str, ignore: list[str], dry_run: bool) -> Phase:
    """The endpoint's /etc/hosts line at the init node (where an API server runs), kubeadm join
    --control-plane (the JoinConfiguration, secret, on stdin and removed on exit), then the line
    moved to this node's own API server, then the wait until it is ready."""

    def facts(t: Target) -> list[F.Fact]:
        return [present(), F.file(hosts_step.PATH)]

    def plan(t: Target, found: F.Facts) -> Plan:
        p = Plan()
        if joined(found[present().name]):
            return p
        before = found[f"file:{hosts_step.PATH}"]
        current = before.content if before else ""
        mode = before.mode if before else 0o644
        joining = hosts_step.desired(t, current, False)
        if joining != current:  # e.g. a node reset after it served: the line names itself
            p.write(hosts_step.PATH, joining, before, mode=mode)
        q = shlex.quote(JOIN_FILE)
        p.run(f"rm -f {q} {q}.k8s-bootstrap.bak; trap 'rm -f {q}' EXIT",
              label=f"remove {JOIN_FILE} on exit")
        p.write(JOIN_FILE, join_config(t.inv, t.node, token, ca_hash, key), None, mode=0o600,
                secret=not dry_run)
        p.run(join_command(ignore), f"join the control plane through "
                                    f"{t.inv.control_plane_endpoint}")
        serving = hosts_step.desired(t, current, True)
        if serving != joining:
            p.write(hosts_step.PATH, serving, None, mode=mode)
        p.run(ready_command(t.inv), "wait until its API server and etcd member are ready",
              label="wait until its API server is ready (/readyz)")
        return p

    phase = cluster_phase("kubeadm-join", "kubeadm join --control-plane", facts, plan,
                          on_failure=_join_failed)
    return dataclasses.replace(phase, explain=lambda err: explain(kubeadm_lines(err)))


def explain(message: str) -> str:
    """A refused download of the certificates gets the fix."""
    if any(w in message for w in EXPIRED):
        return ("the uploaded certificates or their key were refused (they expire two hours "
                "after the upload): re-run invoke init-master, which uploads them again with a "
                "new key. kubeadm: " + message)
    return explain_token(message)


def phases(ignore: list[str], stamp: str) -> Callable[[Target, Data], list[Phase]]:
    def build(t: Target, data: Data) -> list[Phase]:
        from .init import _kubeconfig_phase

        found = [PREFLIGHT]
        if images_step.coredns_workaround(t):
            found.append(IMAGES)
        dry_run = data.runner.opts.dry_run
        join = join_phase(data.get("token", PLACEHOLDER), data.get("ca_hash", ""),
                          data.get("certificate_key", KEY_PLACEHOLDER), ignore, dry_run)
        vip = [kube_vip.AFTER_JOIN] if t.inv.load_balancer == "kube-vip" else []
        return [*found, join, *vip, _kubeconfig_phase(stamp)]

    return build


# -- the stages -----------------------------------------------------------------------------------
def _others(data: Data) -> list[Node]:
    return [n for n in data.inv.control_plane if n != data.inv.init_node and n in data.targets]


def _todo(data: Data) -> list[Node]:
    return [n for n in _others(data) if n in data.get("todo_cp", [])]


def stages(ignore: list[str], stamp: str) -> tuple[list[Stage], list[Stage], list[Stage]]:
    """(before init: the key; after init: the other control planes' joins; the cleanups, last)."""
    def none_todo(data: Data) -> str | None:
        return None if _todo(data) else "every control plane is joined"

    def upload_needed(data: Data) -> str | None:
        if not _todo(data):
            return "every control plane is joined"
        return "uploaded by kubeadm init in this run" if uploaded_recently(data) else None

    def init_node(data: Data) -> list[Node]:
        return [data.inv.init_node]

    before = [Stage("certificate-key", init_node, action=key_stage, on=LOCAL, once=True,
                    when=lambda d: None if several(d.inv) else "one control plane")]
    after = [
        Stage("control-planes", _others, action=who(phases(ignore, stamp), "todo_cp")),
        Stage("cluster", init_node, action=ca_stage, on=INIT, once=True, when=none_todo),
        Stage("join-token", init_node, action=_token, on=INIT, once=True, when=none_todo),
        Stage("upload-certs", init_node, action=upload_stage, on=INIT, once=True,
              when=upload_needed, names=("upload-certs",)),
        Stage("control-plane-join", _others, phases=phases(ignore, stamp), order=BATCHES,
              batch=1, names=("preflight", "images", "kubeadm-join", "kube-vip", "kubeconfig")),
    ]
    cleanups = [
        Stage("join-files", lambda d: abandoned(d, "todo_cp"), action=_remove_join_file,
              cleanup=True),
        Stage("token-delete", init_node, action=_delete_token, on=INIT, once=True,
              cleanup=True),
    ]
    return before, after, cleanups
