"""Who a kubectl call is and what RBAC lets it do (lab/k8s/STATE.md "Identities and RBAC").

Authentication (the API server's x509 client-certificate authenticator): the kubeconfig's
client certificate, when the cluster CA signed it and it has not expired, is the user
(Subject CN) and its groups (Subject O entries) plus `system:authenticated`; a live bootstrap
token (`token: ID.SECRET`) is `system:bootstrap:ID` with the token's groups; no credentials at
all is `system:anonymous` / `system:unauthenticated` (kubeadm leaves --anonymous-auth on);
anything else is refused as Unauthorized. A certificate is checked once per cluster with the
node's openssl (`verify -no_check_time`, `x509 -subject -enddate`) and remembered in
state.json `certs` (keyed by its sha256): kubectl runs as login users, whose calls must stay
cheap.

Authorization (plugin/pkg/auth/authorizer/rbac): the default ClusterRoles and
ClusterRoleBindings of plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go (cluster-admin
for system:masters, the discovery roles for everyone, admin/edit/view aggregated from their
system:aggregate-to-* roles, whose rules are copied below from policy.go of the 1.20 line),
kubeadm's kubeadm:get-nodes, then the ClusterRoleBindings, ClusterRoles, RoleBindings and Roles
applied or created with kubectl (state.json `objects`; also kubeadm 1.29+'s
kubeadm:cluster-admins, stored there by `kubeadm init`: cluster_admins_binding). The Node
authorizer is not simulated.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import os
import subprocess
import tempfile
import time

from k8s import state

RBAC = "rbac.authorization.k8s.io"
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]


def rule(verbs: list[str], groups: list[str], resources: list[str],
         names: list[str] | None = None) -> dict:
    out = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


# policy.go: system:aggregate-to-view (what `view` aggregates by default)
VIEW = [
    rule(READ, [""], ["pods", "replicationcontrollers", "replicationcontrollers/scale",
                      "serviceaccounts", "services", "services/status", "endpoints",
                      "persistentvolumeclaims", "persistentvolumeclaims/status",
                      "configmaps"]),
    rule(READ, [""], ["limitranges", "resourcequotas", "bindings", "events", "pods/status",
                      "resourcequotas/status", "namespaces/status",
                      "replicationcontrollers/status", "pods/log"]),
    rule(READ, [""], ["namespaces"]),
    rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
    rule(READ, ["apps"], ["controllerrevisions", "statefulsets", "statefulsets/status",
                          "statefulsets/scale", "daemonsets", "daemonsets/status",
                          "deployments", "deployments/status", "deployments/scale",
                          "replicasets", "replicasets/status", "replicasets/scale"]),
    rule(READ, ["autoscaling"], ["horizontalpodautoscalers",
                                 "horizontalpodautoscalers/status"]),
    rule(READ, ["batch"], ["jobs", "cronjobs", "cronjobs/status", "jobs/status"]),
    rule(READ, ["extensions"], ["daemonsets", "daemonsets/status", "deployments",
                                "deployments/scale", "deployments/status", "ingresses",
                                "ingresses/status", "replicasets", "replicasets/scale",
                                "replicasets/status", "replicationcontrollers/scale",
                                "networkpolicies"]),
    rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    rule(READ, ["networking.k8s.io"], ["networkpolicies", "ingresses", "ingresses/status"]),
]
# policy.go: system:aggregate-to-edit
EDIT = [
    rule(READ, [""], ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets",
                      "services/proxy"]),
    rule(["impersonate"], [""], ["serviceaccounts"]),
    rule(WRITE, [""], ["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
    rule(WRITE, [""], ["replicationcontrollers", "replicationcontrollers/scale",
                       "serviceaccounts", "services", "services/proxy", "endpoints",
                       "persistentvolumeclaims", "configmaps", "secrets"]),
    rule(WRITE, ["apps"], ["statefulsets", "statefulsets/scale", "daemonsets", "deployments",
                           "deployments/scale", "deployments/rollback", "replicasets",
                           "replicasets/scale"]),
    rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
    rule(WRITE, ["batch"], ["jobs", "cronjobs"]),
    rule(WRITE, ["extensions"], ["daemonsets", "deployments", "deployments/scale",
                                 "deployments/rollback", "ingresses", "replicasets",
                                 "replicasets/scale", "replicationcontrollers/scale",
                                 "networkpolicies"]),
    rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
    rule(WRITE, ["networking.k8s.io"], ["networkpolicies", "ingresses"]),
]
# policy.go: system:aggregate-to-admin
ADMIN = [
    rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
    rule(READ + WRITE, [RBAC], ["roles", "rolebindings"]),
]
AGGREGATE = {"view": "rbac.authorization.k8s.io/aggregate-to-view",
             "edit": "rbac.authorization.k8s.io/aggregate-to-edit",
             "admin": "rbac.authorization.k8s.io/aggregate-to-admin"}
BUILTIN_ROLES = {
    "cluster-admin": [rule(["*"], ["*"], ["*"])],
    "admin": ADMIN + EDIT + VIEW,
    "edit": EDIT + VIEW,
    "view": list(VIEW),
    "system:basic-user": [rule(["create"], ["authorization.k8s.io"],
                               ["selfsubjectaccessreviews", "selfsubjectrulesreviews"])],
    "system:discovery": [],  # non-resource URLs only (/api, /apis, /version, ...)
    "system:public-info-viewer": [],
    # kubeadm's phases/bootstraptoken/clusterinfo: nodes joining with a token may get nodes
    "kubeadm:get-nodes": [rule(["get"], [""], ["nodes"])],
}
GROUP = "Group"
# policy.go ClusterRoleBindings() plus kubeadm's kubeadm:get-nodes (name, role, subjects)
BUILTIN_BINDINGS = [
    ("cluster-admin", "cluster-admin", [(GROUP, "system:masters")]),
    ("system:basic-user", "system:basic-user", [(GROUP, "system:authenticated")]),
    ("system:discovery", "system:discovery", [(GROUP, "system:authenticated")]),
    ("system:public-info-viewer", "system:public-info-viewer",
     [(GROUP, "system:authenticated"), (GROUP, "system:unauthenticated")]),
    ("kubeadm:get-nodes", "kubeadm:get-nodes",
     [(GROUP, "system:bootstrappers:kubeadm:default-node-token")]),
]


CLUSTER_ADMINS = "kubeadm:cluster-admins"


def cluster_admins_binding(created: float) -> tuple[str, dict]:
    """kubeadm 1.29+'s ClusterRoleBinding kubeadm:cluster-admins (phases/kubeconfig
    EnsureAdminClusterRoleBindingImpl: roleRef ClusterRole cluster-admin, subject Group
    kubeadm:cluster-admins, no labels), which binds admin.conf's group. `kubeadm init` creates
    it through super-admin.conf once the API answers at the controlPlaneEndpoint; it is then
    an ordinary object of state.json `objects` (state key, object): kubectl lists it, deletes it
    (admin.conf is then forbidden everything, as on a real cluster) and RBAC honours it."""
    obj = {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": CLUSTER_ADMINS},
           "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cluster-admin"},
           "subjects": [{"apiGroup": RBAC, "kind": GROUP, "name": CLUSTER_ADMINS}],
           "created": created, "lab_unapplied": True}
    return f"clusterrolebinding.{RBAC}//{CLUSTER_ADMINS}", obj


class Unauthorized(Exception):
    """The API server answers 401: kubectl prints `error: You must be logged in to the server
    (Unauthorized)` (kubectl's cmd/util/helpers.go StandardErrorMessage)."""


# ---- authentication ----------------------------------------------------------------------

def _named(conf: dict, section: str, name: str | None) -> dict:
    items = conf.get(section) or []
    for item in items:
        if name and item.get("name") == name:
            return item
    return items[0] if items and not name else {}


def pick(conf: dict) -> tuple[dict, dict]:
    """(cluster, user) entries of a kubeconfig: current-context's, else the first ones."""
    ctx = _named(conf, "contexts", conf.get("current-context")).get("context") or {}
    cluster = _named(conf, "clusters", ctx.get("cluster")).get("cluster") or {}
    user = _named(conf, "users", ctx.get("user")).get("user") or {}
    return cluster, user


def _file_or_data(user: dict, key: str, base: str) -> str:
    if user.get(f"{key}-data"):
        return base64.b64decode(user[f"{key}-data"]).decode(errors="replace")
    path = user.get(key)
    if not path:
        return ""
    with open(path if os.path.isabs(path) else os.path.join(base, path)) as fh:
        return fh.read()


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


def inspect(cert_pem: str, ca_pem: str) -> dict:
    """{cn, orgs, not_after, signed} of a PEM certificate, with openssl."""
    with tempfile.TemporaryDirectory(prefix="lab-kubectl-") as tmp:
        ca, crt = os.path.join(tmp, "ca.crt"), os.path.join(tmp, "c.crt")
        with open(ca, "w") as fh:
            fh.write(ca_pem)
        with open(crt, "w") as fh:
            fh.write(cert_pem)
        signed = _openssl("verify", "-no_check_time", "-CAfile", ca, crt).returncode == 0
        res = _openssl("x509", "-in", crt, "-noout", "-subject", "-enddate", "-nameopt",
                       "RFC2253")
    cn, orgs, not_after = "", [], 0.0
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "subject":
            for part in reversed(value.split(",")):  # RFC 2253 lists the last RDN first
                k, _, v = part.strip().partition("=")
                if k == "CN":
                    cn = v
                elif k == "O":
                    orgs.append(v)
        elif key.strip() == "notAfter":
            try:
                not_after = float(calendar.timegm(time.strptime(value.strip(),
                                                                "%b %d %H:%M:%S %Y %Z")))
            except ValueError:
                not_after = 0.0
    return {"cn": cn, "orgs": orgs, "not_after": not_after,
            "signed": signed and res.returncode == 0 and bool(cn)}


def identity(conf: dict, base: str, data: dict) -> tuple[str, list[str]]:
    """(user, groups) the API server authenticates for this kubeconfig; raises Unauthorized."""
    _, user = pick(conf)
    if user.get("token"):
        tid, _, secret = str(user["token"]).partition(".")
        for t in state.live_tokens(data):
            if t["token"] == f"{tid}.{secret}":
                return f"system:bootstrap:{tid}", [*(t.get("groups") or []),
                                                   "system:authenticated"]
        raise Unauthorized()
    try:
        cert = _file_or_data(user, "client-certificate", base)
    except OSError:
        cert = ""
    if not cert.strip():
        return "system:anonymous", ["system:unauthenticated"]
    digest = hashlib.sha256(cert.encode()).hexdigest()
    known = (data.get("certs") or {}).get(digest)
    if known is None:
        known = inspect(cert, data.get("ca_cert", ""))
        with state.update() as cur:  # remembered for this cluster (init clears the state)
            if cur.get("cluster_id") == data.get("cluster_id"):
                cur.setdefault("certs", {})[digest] = known
    if not known.get("signed") or (known.get("not_after") or 0) < time.time():
        raise Unauthorized()
    return known["cn"], [*known.get("orgs", []), "system:authenticated"]


# ---- authorization -----------------------------------------------------------------------

def _objects(data: dict, kind: str) -> list[dict]:
    return [o for o in (data.get("objects") or {}).values() if o.get("kind") == kind]


def cluster_role_rules(data: dict, name: str) -> list[dict] | None:
    """A ClusterRole's rules (an applied one, else a default one; the defaults admin, edit and
    view also aggregate applied ClusterRoles carrying their aggregate-to label); None when it
    does not exist."""
    applied = {o["metadata"]["name"]: o for o in _objects(data, "ClusterRole")}
    if name in applied and name not in AGGREGATE:
        return list(applied[name].get("rules") or [])
    if name not in BUILTIN_ROLES:
        return None
    rules = list(BUILTIN_ROLES[name])
    if name in AGGREGATE:
        wanted = [AGGREGATE[n] for n in ("view", "edit", "admin")
                  [:("view", "edit", "admin").index(name) + 1]]
        for o in applied.values():
            labels = o["metadata"].get("labels") or {}
            if any(labels.get(w) == "true" for w in wanted):
                rules += list(o.get("rules") or [])
    return rules


def bindings(data: dict) -> list[tuple[str, str, str, dict, list[dict]]]:
    """(kind, name, namespace, roleRef, subjects) of every binding: defaults first."""
    out = [("ClusterRoleBinding", n, "", {"kind": "ClusterRole", "name": r, "apiGroup": RBAC},
            [{"kind": k, "name": s, "apiGroup": RBAC} for k, s in subs])
           for n, r, subs in BUILTIN_BINDINGS]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for o in _objects(data, kind):
            meta = o["metadata"]
            out.append((kind, meta["name"], meta.get("namespace", "") if kind == "RoleBinding"
                        else "", o.get("roleRef") or {}, list(o.get("subjects") or [])))
    return out


def _applies(subject: dict, user: str, groups: list[str], ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        return user == f"system:serviceaccount:{subject.get('namespace') or ns}:{name}"
    return False


def _matches(r: dict, verb: str, group: str, resource: str, name: str) -> bool:
    def has(values, want):
        return "*" in (values or []) or want in (values or [])
    if not has(r.get("verbs"), verb) or not has(r.get("apiGroups"), group):
        return False
    if not has(r.get("resources"), resource):
        return False
    names = r.get("resourceNames") or []
    return not names or name in names


def allowed(data: dict, user: str, groups: list[str], verb: str, group: str, resource: str,
            ns: str = "", name: str = "") -> tuple[bool, str]:
    """RBAC's decision for one request and, when refused, its reason (rbac.go: `RBAC: ` and
    the errors met while visiting the rules, e.g. a binding to a missing role)."""
    errors: list[str] = []
    for kind, _, bns, ref, subjects in bindings(data):
        if kind == "RoleBinding" and bns != ns:
            continue
        if not any(_applies(s, user, groups, bns) for s in subjects):
            continue
        if ref.get("kind") == "ClusterRole":
            rules = cluster_role_rules(data, ref.get("name", ""))
            if rules is None:
                errors.append(f'clusterrole.{RBAC} "{ref.get("name", "")}" not found')
                continue
        else:
            role = next((o for o in _objects(data, "Role") if o["metadata"]["name"]
                         == ref.get("name") and o["metadata"].get("namespace") == bns), None)
            if role is None:
                errors.append(f'role.{RBAC} "{ref.get("name", "")}" not found')
                continue
            rules = list(role.get("rules") or [])
        if any(_matches(r, verb, group, resource, name) for r in rules):
            return True, ""
    if not errors:
        return False, ""
    return False, "RBAC: " + (errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]")


def forbidden(user: str, verb: str, group: str, resource: str, ns: str = "", name: str = "",
              reason: str = "") -> str:
    """The API's 403 message (apiserver endpoints/handlers/responsewriters/errors.go
    forbiddenMessage, the same 1.20-1.37, wrapped by apimachinery's NewForbidden:
    `<resource>[.<group>] ["NAME" ]is forbidden: ...`)."""
    top = resource.partition("/")[0]
    qualified = top + (f".{group}" if group else "")
    head = f'{qualified} "{name}" is forbidden' if name else f"{qualified} is forbidden"
    where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
    msg = (f'{head}: User "{user}" cannot {verb} resource "{resource}" in API group '
           f'"{group}" {where}')
    return msg + (f": {reason}" if reason else "")
