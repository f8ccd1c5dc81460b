"""kubectl on the workers (seed 004, "扩展：kubectl"), opt-in: ``cluster.kubectl_on_workers``.

- ``none`` (the default): nothing; what an earlier run installed is removed.
- ``view``: a kubeconfig for a dedicated user, ``k8s-bootstrap-view``, bound to the ``view``
  ClusterRole plus read access to nodes, which ``view`` lacks (``kubeadm kubeconfig user`` on
  the init node, and ``RBAC``): enough for the seed's ``kubectl get``, unable to change
  anything.
- ``admin``: the seed's way, a copy of admin.conf (``scp -r ~/.kube node1:~/``): every worker
  then holds cluster-admin credentials, and the plan says so.

The file is the SSH user's ``~/.kube/config`` on each worker, mode 0600, owned by them; beside it
``~/.kube/k8s-bootstrap-kubectl`` names what the toolkit installed, so a later ``none`` removes
only that. The credentials travel as a secret (fed on stdin, masked); an installed ``view`` file
is kept (its certificate is renewed with the others), an ``admin`` one follows admin.conf.
"""

from __future__ import annotations

import re
import shlex

from .. import facts as F
from .. import releases
from ..errors import CommandError
from ..plan import Plan
from ..steps import Target
from .common import ADMIN_CONF, KUBECTL
from .kubeadm_config import INIT_CONFIG
from .phases import Phase, cluster_phase

VIEW_USER = "k8s-bootstrap-view"
MODES = ("none", "view", "admin")
MARKER = ".kube/k8s-bootstrap-kubectl"
_KEYS = re.compile(r"(?:client-key-data|client-certificate-data|token):\s*(\S+)")


def state(t: Target) -> F.Fact:
    """The SSH user's home and group, what the toolkit installed there (or -), and the sha256
    of ~/.kube/config (or -); None without the account."""
    user = shlex.quote(t.user)
    cmd = (f'e=$(getent passwd {user}) || exit 1; h=$(printf %s "$e" | cut -d: -f6); '
           f'echo "$h $(id -gn {user})"; cat "$h/{MARKER}" 2>/dev/null || echo -; '
           f'if [ -f "$h/.kube/config" ]; then sha256sum < "$h/.kube/config" | cut -d" " -f1; '
           "else echo -; fi")

    def parse(out: str, rc: int) -> tuple[str, str, str, str] | None:
        lines = out.splitlines()
        if rc != 0 or len(lines) < 3 or " " not in lines[0]:
            return None
        home, group = lines[0].split(" ", 1)
        return home, group, lines[1].strip(), lines[2].strip()

    return F.Fact(f"worker-kubectl:{t.user}", cmd, parse)


def needs_credentials(mode: str, have: tuple[str, str, str, str] | None, admin_sha: str) -> bool:
    """Whether a worker needs the file written (so the init node must issue or read it)."""
    if mode == "none" or have is None:
        return False
    _, _, marker, sha = have
    if mode == "view":
        return marker != "view" or sha == "-"
    return marker != "admin" or sha != admin_sha


def phase(mode: str, content: str | None, admin_sha: str, dry_run: bool) -> Phase:
    """The worker's ~/.kube/config as ``mode`` says (``content``: the credentials, when the
    init node issued them for this run)."""

    def plan(t: Target, facts: F.Facts) -> Plan:
        p = Plan()
        have = facts[state(t).name]
        if have is None and mode == "none":
            return p
        if have is None:
            p.error = f"no account {t.user} on the node (getent passwd)"
            return p
        home, group, marker, _ = have
        conf, mark = f"{home}/.kube/config", f"{home}/{MARKER}"
        if mode == "none":
            if marker != "-":
                p.run(f"rm -f {shlex.quote(conf)} {shlex.quote(mark)}",
                      f"kubectl_on_workers is none; an earlier run installed {marker}",
                      label=f"remove the kubeconfig an earlier run installed ({marker})")
            return p
        if not needs_credentials(mode, have, admin_sha):
            return p
        if content is None:
            p.error = "the init node issued no credentials for this node (see its line above)"
            return p
        d = shlex.quote(f"{home}/.kube")
        p.run(f"install -d -m 0700 -o {shlex.quote(t.user)} -g {shlex.quote(group)} {d}",
              label=f"{home}/.kube")
        p.write(conf, content, None, mode=0o600, owner=t.user, group=group,
                secret=not dry_run)
        p.write(mark, f"{mode}\n", None, mode=0o600, owner=t.user, group=group)
        if mode == "admin":
            p.notes.append("WARNING: this worker now holds cluster-admin credentials "
                           "(kubectl_on_workers: admin)")
        return p

    return cluster_phase("kubectl", "the SSH user's kubeconfig (kubectl_on_workers)",
                         lambda t: [state(t)], plan)


RBAC = f"""\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {VIEW_USER}-nodes
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {VIEW_USER}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: view
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: {VIEW_USER}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {VIEW_USER}-nodes
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {VIEW_USER}-nodes
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: {VIEW_USER}
"""
"""The view user's rights: the ``view`` ClusterRole (which has no nodes: bootstrappolicy's
aggregate-to-view rules), plus get/list/watch on nodes, so the seed's ``kubectl get nodes``
works on the workers."""


def view_command(t: Target) -> str:
    """The init node's commands for ``view``: the RBAC objects (``RBAC`` on stdin, applied),
    then the user's kubeconfig on stdout (``kubeadm [alpha] kubeconfig user``, by release)."""
    form = releases.release(t.inv.cluster.kubernetes_version).kubeconfig_user
    return (f"{KUBECTL} apply -f - >&2 && {form} --config {INIT_CONFIG} "
            f"--client-name {VIEW_USER}")


def credentials(mode: str, t: Target, session, secrets) -> str:
    """The kubeconfig for the workers, read or issued on the init node, registered as a
    secret (the whole text and each key in it)."""
    command = f"cat {ADMIN_CONF}" if mode == "admin" else view_command(t)
    res = session.run(command, what=f"kubectl_on_workers {mode}: credentials",
                      stdin=None if mode == "admin" else RBAC, sensitive=True,
                      journal=("kubectl-credentials", f"issue {mode} kubeconfig"))
    if not res.ok or "apiVersion" not in res.stdout:
        raise CommandError(session.name, f"kubectl_on_workers {mode}", res.rc, res.stderr)
    secrets.add(res.stdout)
    for key in _KEYS.findall(res.stdout):
        secrets.add(key)
    return res.stdout
