"""The three ways to manage objects and who may use them (issue "kubectl on the workers, and the
three ways to manage objects, checked by verify"; lab/k8s/STATE.md "Object management" and
"Identities and RBAC"): `kubectl run`, `create -f`, `delete -f`, `apply -f` of a bare Pod with
their real outputs and errors, an image changed in place (the node runner restarts that
container: status and the running container show the new image), a field the API refuses to
change, the pod_image_update_ignored fault knob; identities from the kubeconfig's client
certificate, RBAC (admin, a user bound to `view`, an unbound user, no kubeconfig, a foreign
certificate), `kubectl create|delete clusterrolebinding`, a ClusterRoleBinding applied from a
manifest, and `kubeadm alpha kubeconfig user` (kubeadm 1.20) whose kubeconfig kubectl uses on a
worker. One 2-node 1.20 cluster, time_scale 0.1."""

from __future__ import annotations

import base64
import importlib
import json
import shlex
import time

import pytest
from test_k8s_lab import INIT, kubeadm_cluster, root, ssh, wait_for
from test_k8s_verify_objects import FLANNEL_LABELLED

from lab import payload_code  # puts the kubelet payload's k8s package on sys.path
from lab.pytest_plugin import module_lab

RBAC = importlib.import_module("k8s.rbac")
pytestmark = pytest.mark.lab
NS = "dev"
# bare pods are served on 127.X.Y.Z for their 10.X.Y.Z address: a podSubnet no other lab test
# uses keeps a lab running at the same time off these addresses (test_k8s_pods_node: 10.246)
SUBNET = "10.247.0.0/16"
INIT_HERE = INIT.replace("10.244.0.0/16", SUBNET)
FLANNEL_HERE = FLANNEL_LABELLED.replace("10.244.0.0/16", SUBNET)
NGINX = "docker.io/library/nginx:{}"
FIELDS_120 = ("`spec.containers[*].image`, `spec.initContainers[*].image`, "
              "`spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing "
              "tolerations)")
RBAC_GROUP = "rbac.authorization.k8s.io"
TOLERATE = json.dumps({"apiVersion": "v1", "metadata": {"labels": None}, "spec": {
    "tolerations": [{"key": "node-role.kubernetes.io/master", "operator": "Exists",
                     "effect": "NoSchedule"}]}})


def pod_yaml(image: str = "1.27.5", port: int = 80, labels: str = "app: nginx") -> str:
    """The Pod chapter's nginxpod.yaml."""
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: nginxpod\n  namespace: {NS}\n"
            f"  labels:\n    {labels}\nspec:\n  terminationGracePeriodSeconds: 5\n"
            f"  containers:\n  - name: pod\n    image: {NGINX.format(image)}\n    ports:\n"
            f"    - containerPort: {port}\n")


# ---- pure: RBAC's texts and decisions (no lab) ----------------------------------------------

def test_forbidden_texts_and_view_rules():
    assert RBAC.forbidden("jane", "delete", "", "pods", "dev", "web") == (
        'pods "web" is forbidden: User "jane" cannot delete resource "pods" in API group "" '
        'in the namespace "dev"')
    assert RBAC.forbidden("bob", "list", "", "nodes") == (
        'nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the '
        "cluster scope")
    assert RBAC.forbidden("jane", "create", "", "pods/exec", "dev", "web").startswith(
        'pods "web" is forbidden: User "jane" cannot create resource "pods/exec"')
    data = {"objects": {f"clusterrolebinding.{RBAC_GROUP}//v": {
        "apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "v"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "jane"}]}}}
    auth = ["system:authenticated"]
    assert RBAC.allowed(data, "jane", auth, "list", "", "pods", "dev")[0]
    assert RBAC.allowed(data, "jane", auth, "get", "apps", "deployments", "dev", "x")[0]
    assert not RBAC.allowed(data, "jane", auth, "list", "", "nodes")[0]  # view: no nodes
    assert not RBAC.allowed(data, "jane", auth, "delete", "", "pods", "dev", "x")[0]
    assert not RBAC.allowed(data, "jane", auth, "get", "", "secrets", "dev", "x")[0]
    assert not RBAC.allowed(data, "bob", auth, "list", "", "pods", "dev")[0]
    assert RBAC.allowed(data, "kubernetes-admin", ["system:masters", *auth], "delete", "",
                        "nodes", "", "n")[0]
    data["objects"]["x"] = dict(data["objects"][f"clusterrolebinding.{RBAC_GROUP}//v"],
                                roleRef={"kind": "ClusterRole", "name": "nope"},
                                subjects=[{"kind": "User", "name": "bob"}])
    assert RBAC.allowed(data, "bob", auth, "list", "", "pods", "dev") == (
        False, f'RBAC: clusterrole.{RBAC_GROUP} "nope" not found')


def script(pkg: str):
    """A payload's Python command (kubectl, kubeadm) as a module (its main() is not run)."""
    from importlib.machinery import SourceFileLoader
    from importlib.util import module_from_spec, spec_from_loader
    path = payload_code.LAB / "payloads" / pkg / "usr" / "bin" / pkg
    spec = spec_from_loader(f"lab_{pkg}", SourceFileLoader(f"lab_{pkg}", str(path)))
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kubectl_script():
    return script("kubectl")


def test_kubeconfig_user_forms_per_release(tmp_path, monkeypatch, capsys):
    """`kubeadm [alpha] kubeconfig user` by release, on this host with a CA of its own."""
    kubeadm = script("kubeadm")
    pki = importlib.import_module("k8s.pki")
    pki.make_ca(str(tmp_path))
    cfg = tmp_path / "init.yaml"
    cfg.write_text("apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n"
                   f"certificatesDir: {tmp_path}\ncontrolPlaneEndpoint: cp.lab:6443\n")

    def run(version: str, args: str):
        monkeypatch.setattr(kubeadm, "VERSION", version)
        monkeypatch.setattr(kubeadm.sys, "argv", ["kubeadm", *args.split()])
        monkeypatch.setattr(kubeadm.common, "record", lambda cmd: None)
        monkeypatch.setattr(kubeadm.lc, "k8s_sync", lambda: None)
        code = 0
        try:
            kubeadm.main()
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    hint = "To see the stack trace of this error execute with --v=5 or higher\n"
    user = f"kubeconfig user --client-name ann --config {cfg}"
    assert run("1.22.17", f"alpha {user}") == (1, "", "unknown flag: --client-name\n" + hint)
    code, out, _ = run("1.22.17", f"{user} --org ops --validity-period 1h")
    assert code == 0 and "    server: https://cp.lab:6443\n" in out and out.endswith("\n\n")
    cert = base64.b64decode(out.split("client-certificate-data: ")[1].split()[0]).decode()
    got = RBAC.inspect(cert, (tmp_path / "ca.crt").read_text())
    assert (got["cn"], got["orgs"], got["signed"]) == ("ann", ["ops"], True)
    assert abs(got["not_after"] - (time.time() + 3600)) < 120
    assert run("1.22.17", "kubeconfig user --client-name ann") == (
        1, "", 'required flag(s) "config" not set\n' + hint)
    assert run("1.21.0", f"alpha {user}")[0] == 0 and run("1.21.0", user)[0] == 0
    assert run("1.21.0", f"{user} --validity-period 1h") == (
        1, "", "unknown flag: --validity-period\n" + hint)
    code, out, err = run("1.33.13", "kubeconfig user --client-name ann")  # --config optional
    assert code == 1 and "required flag" not in err  # (this host has no CA to sign with)


def test_pod_update_validation_per_release():
    k = kubectl_script()
    old = {"containers": [{"name": "pod", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}],
           "tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]}

    def errs(version: str, **change) -> list[str]:
        new = json.loads(json.dumps(old))
        new.update(change)
        return k.pod_update_errors({"kubernetes_version": version}, old, new)

    image = [{"name": "pod", "image": "nginx:1.28", "ports": [{"containerPort": 80}]}]
    assert errs("v1.20.10", containers=image) == []
    assert errs("v1.20.10", tolerations=[*old["tolerations"], {"key": "b"}]) == []
    assert errs("v1.20.10", activeDeadlineSeconds=30) == []
    port = [{"name": "pod", "image": "nginx:1.28", "ports": [{"containerPort": 81}]}]
    head = "spec: Forbidden: pod updates may not change fields other than "
    assert errs("v1.21.0", containers=port) == [head + FIELDS_120]
    assert errs("v1.22.17", containers=port) == [
        head + "`spec.containers[*].image`, `spec.initContainers[*].image`, "
        "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing "
        "tolerations) or `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
        "previously negative)"]
    assert errs("v1.31.14", containers=port) == [
        head + "`spec.containers[*].image`,`spec.initContainers[*].image`,"
        "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
        "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
        "previously negative)"]
    assert errs("v1.20.10", tolerations=[]) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its "
        "tolerationSeconds"]
    assert errs("v1.20.10", containers=image * 2) == [
        "spec.containers: Forbidden: pod updates may not add or remove containers"]
    assert k.plural("Endpoints") == "endpoints" and k.plural("NetworkPolicy") == \
        "networkpolicies" and k.plural("Ingress") == "ingresses"
    assert k.info_string({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": "p", "namespace": "dev"}}) == (
        'Resource: "/v1, Resource=pods", GroupVersionKind: "/v1, Kind=Pod"\nName: "p", '
        'Namespace: "dev"')


# ---- the lab --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab():
    with module_lab(2) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        kubeadm_cluster(the_lab, INIT_HERE, FLANNEL_HERE)
        r = root(the_lab, the_lab.nodes[0], "kubectl apply -f -",
                 stdin=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n")
        assert r.returncode == 0, r.stderr
        (the_lab.cluster_dir / "time_scale").write_text("0.1")
        yield the_lab


def batch(lab, node, cmds: list, user: str = "root") -> list[tuple[int, str, str]]:
    """Run CMDS (a command, or (command, stdin)) one after the other in one SSH session:
    (returncode, stdout, stderr) of each. One login instead of one per command keeps the
    module fast."""
    script = ["d=$(mktemp -d)"]
    for i, c in enumerate(cmds):
        cmd, stdin = (c, None) if isinstance(c, str) else c
        src = "/dev/null"
        if stdin is not None:
            src = f"$d/i{i}"
            script.append(f"echo {base64.b64encode(stdin.encode()).decode()} | base64 -d >{src}")
        script.append(f"( {cmd} ) <{src} >$d/o{i} 2>$d/e{i}; echo $? >$d/r{i}")
        script.append(f'echo "$(cat $d/r{i}) $(base64 -w0 $d/o{i}) $(base64 -w0 $d/e{i})"')
    script.append('rm -rf "$d"')
    r = ssh(lab, node, "\n".join(script), user=user)
    assert r.returncode == 0, r.stderr
    out = []
    for line in r.stdout.splitlines():
        rc, o, e = line.split(" ")
        out.append((int(rc), base64.b64decode(o).decode(), base64.b64decode(e).decode()))
    assert len(out) == len(cmds), r.stdout
    return out


def kubectl(lab, args: str, stdin: str | None = None, node=None):
    """kubectl as root on the control plane (admin.conf as ~/.kube/config)."""
    return root(lab, node or lab.nodes[0], f"kubectl {args}", stdin=stdin)


def put(lab, path: str, text: str, node=None) -> None:
    r = root(lab, node or lab.nodes[0], f"cat > {path}", stdin=text)
    assert r.returncode == 0, r.stderr


def status(lab, name: str) -> dict:
    try:
        return json.loads((lab.cluster_dir / "pods" / NS / f"{name}.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return {}


def running(lab, name: str, image: str) -> dict:
    def ok():
        c = (status(lab, name).get("containerStatuses") or [{}])[0]
        return c if c.get("image") == image and "running" in c.get("state", {}) else None
    return wait_for(ok)


def faults(lab, data: dict | None) -> None:
    path = lab.cluster_dir / "faults.json"
    if data:
        path.write_text(json.dumps(data))
    elif path.exists():
        path.unlink()


# ---- object management ----------------------------------------------------------------------

def test_run_create_delete_outputs(lab):
    master = lab.nodes[0]
    put(lab, "/root/nginxpod.yaml", pod_yaml())
    got = batch(lab, master, [
        f"kubectl run web --image={NGINX.format('1.27')} -n {NS} --restart=Never "
        "--labels app=web,tier=front",
        f"kubectl run web --image={NGINX.format('1.27')} -n {NS}",
        f"kubectl get pod web -n {NS} -o json",
        "kubectl run x -n nope --image=busybox",
        "kubectl run y",
        "kubectl create -f nginxpod.yaml",  # SSH starts in root's home
        "kubectl create -f nginxpod.yaml",
        ("kubectl create -f -", pod_yaml()),
        # created, not applied: the first apply warns and says configured
        "kubectl apply -f nginxpod.yaml",
        "kubectl apply -f nginxpod.yaml",
        "kubectl delete -f nginxpod.yaml --timeout=60s",
        "kubectl delete -f nginxpod.yaml",
        f"kubectl delete pod web -n {NS} --timeout=60s",
        f"kubectl run tol -n {NS} --image=busybox --overrides={shlex.quote(TOLERATE)}",
        f"kubectl get pod tol -n {NS} -o json",
        f"kubectl run bad -n {NS} --image=busybox --overrides='{{nope'",
        f"kubectl delete pod tol -n {NS} --wait=false"])
    assert got[0] == (0, "pod/web created\n", "")
    assert got[1] == (1, "", 'Error from server (AlreadyExists): pods "web" already exists\n')
    pod = json.loads(got[2][1])
    assert pod["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["web"]
    assert got[3] == (1, "", 'Error from server (NotFound): namespaces "nope" not found\n')
    assert got[4] == (1, "", 'error: required flag(s) "image" not set\n')
    assert got[5] == (0, "pod/nginxpod created\n", "")
    assert got[6] == (1, "", 'Error from server (AlreadyExists): error when creating '
                             '"nginxpod.yaml": pods "nginxpod" already exists\n')
    assert got[7][2] == ('Error from server (AlreadyExists): error when creating "STDIN": pods '
                         '"nginxpod" already exists\n')
    rc, out, err = got[8]
    assert (rc, out) == (0, "pod/nginxpod configured\n"), err
    assert err.startswith("Warning: resource pods/nginxpod is missing the kubectl.kubernetes.io"
                          "/last-applied-configuration annotation which is required by kubectl "
                          "apply.")
    assert got[9] == (0, "pod/nginxpod unchanged\n", "")
    assert got[10] == (0, 'pod "nginxpod" deleted\n', "")
    assert got[11] == (1, "", 'Error from server (NotFound): error when deleting "nginxpod.yaml":'
                              ' pods "nginxpod" not found\n')
    assert got[12][:2] == (0, 'pod "web" deleted\n'), got[12]
    # --overrides: a JSON merge patch over the generated pod (null drops a key)
    assert got[13] == (0, "pod/tol created\n", "")
    spec = json.loads(got[14][1])["spec"]
    assert {"key": "node-role.kubernetes.io/master", "operator": "Exists",
            "effect": "NoSchedule"} in spec["tolerations"]
    assert "dnsPolicy" in spec and spec["containers"][0]["name"] == "tol"
    assert "run" not in json.loads(got[14][1])["metadata"].get("labels", {})
    assert got[15] == (1, "", "error: Invalid JSON Patch\n")


def test_apply_unchanged_configured_and_an_image_changed_in_place(lab):
    master = lab.nodes[0]
    put(lab, "/root/nginxpod.yaml", pod_yaml("1.27.5"))
    got = batch(lab, master, ["kubectl apply -f nginxpod.yaml", "kubectl apply -f nginxpod.yaml",
                              ("kubectl apply -f -", pod_yaml("1.27.5", labels="app: web"))])
    assert got == [(0, "pod/nginxpod created\n", ""), (0, "pod/nginxpod unchanged\n", ""),
                   (0, "pod/nginxpod configured\n", "")]
    first = running(lab, "nginxpod", NGINX.format("1.27.5"))
    assert first["restartCount"] == 0

    put(lab, "/root/nginxpod.yaml", pod_yaml("1.28.0", labels="app: web"))
    got = batch(lab, master, ["kubectl apply -f nginxpod.yaml",
                              f"kubectl get pod nginxpod -n {NS} -o json"])
    assert got[0] == (0, "pod/nginxpod configured\n", "")
    assert json.loads(got[1][1])["spec"]["containers"][0]["image"] == NGINX.format("1.28.0")
    now = running(lab, "nginxpod", NGINX.format("1.28.0"))
    assert now["restartCount"] == 1 and now["containerID"] != first["containerID"]
    assert now["lastState"]["terminated"]["exitCode"] == 0  # nginx ends on SIGTERM
    events = json.loads((lab.cluster_dir / "pods" / NS / "nginxpod.events.json").read_text())
    assert ("Killing", "Container pod definition changed, will be restarted") in [
        (e["reason"], e["message"]) for e in events]
    # the API shows it, and the running container is the new image's (its ENV, its nginx)
    got = batch(lab, master, [f"kubectl get pod nginxpod -n {NS} -o json",
                              f"kubectl exec -n {NS} nginxpod -- printenv NGINX_VERSION",
                              f"kubectl exec -n {NS} nginxpod -- nginx -v"])
    assert json.loads(got[0][1])["status"]["containerStatuses"][0]["image"] == \
        NGINX.format("1.28.0")
    assert got[1] == (0, "1.28.0\n", "")
    assert got[2] == (0, "", "nginx version: nginx/1.28.0\n")


def test_a_field_the_api_may_not_change_is_refused(lab):
    two = pod_yaml("1.28.0", labels="app: web") + \
        f"  - name: side\n    image: {NGINX.format('1.28.0')}\n"
    got = batch(lab, lab.nodes[0], [
        "kubectl apply -f nginxpod.yaml",
        ("kubectl apply -f -", pod_yaml("1.28.0", port=8080, labels="app: web")),
        ("kubectl apply -f -", two)])
    assert got[0] == (0, "pod/nginxpod unchanged\n", "")
    assert got[1] == (1, "", 'The Pod "nginxpod" is invalid: spec: Forbidden: pod updates may '
                             f"not change fields other than {FIELDS_120}\n")
    assert got[2] == (1, "", 'The Pod "nginxpod" is invalid: spec.containers: Forbidden: pod '
                             "updates may not add or remove containers\n")
    assert running(lab, "nginxpod", NGINX.format("1.28.0"))["restartCount"] == 1


def test_the_knob_reports_configured_but_keeps_the_old_image(lab):
    before = running(lab, "nginxpod", NGINX.format("1.28.0"))
    faults(lab, {"pod_image_update_ignored": ["nginxpod"]})
    try:
        changed = pod_yaml("1.29.0", labels="app: web")
        got = batch(lab, lab.nodes[0], [("kubectl apply -f -", changed),
                                         ("kubectl apply -f -", changed), "sleep 1.5",
                                         f"kubectl get pod nginxpod -n {NS} -o json"])
        assert got[0] == (0, "pod/nginxpod configured\n", "")
        assert got[1] == (0, "pod/nginxpod unchanged\n", "")
        pod = json.loads(got[3][1])
        assert pod["spec"]["containers"][0]["image"] == NGINX.format("1.28.0")
        st = pod["status"]["containerStatuses"][0]
        assert (st["image"], st["restartCount"], st["containerID"]) == (
            NGINX.format("1.28.0"), before["restartCount"], before["containerID"])
    finally:
        faults(lab, None)
    r = kubectl(lab, f"delete pod nginxpod -n {NS} --timeout=60s")
    assert r.returncode == 0, r.stderr


# ---- identities and RBAC --------------------------------------------------------------------

def forbidden(user: str, verb: str, resource: str, name: str = "", ns: str = NS) -> str:
    head = f'{resource} "{name}"' if name else resource
    where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
    return (f'Error from server (Forbidden): {head} is forbidden: User "{user}" cannot {verb} '
            f'resource "{resource}" in API group "" {where}\n')


def test_kubeconfig_user_per_release_and_kubectl_as_that_user_on_a_worker(lab):
    master, node1 = lab.nodes
    user = "kubeadm alpha kubeconfig user --config /root/init.yaml --client-name"
    got = batch(lab, master, [
        "kubeadm kubeconfig user --client-name jane --config /root/init.yaml",
        "kubeadm alpha kubeconfig user --client-name jane", f"{user} jane",
        f"{user} bob --org readers > /tmp/bob.conf"])
    assert got[0] == (1, "", 'unknown command "kubeconfig" for "kubeadm"\nRun \'kubeadm --help\''
                             " for usage.\nTo see the stack trace of this error execute with "
                             "--v=5 or higher\n")
    assert got[1][0] == 1 and got[1][2].startswith('required flag(s) "config" not set\n')
    rc, conf, err = got[2]
    assert rc == 0, err
    assert conf.startswith("apiVersion: v1\nclusters:\n") and conf.endswith("\n\n")
    assert f"    server: https://{master.address}:6443\n" in conf
    assert "current-context: jane@kubernetes\n" in conf and "- name: jane\n" in conf
    assert got[3][0] == 0, got[3]
    # the CA's key is on the control plane only
    r = root(lab, node1, "kubeadm alpha kubeconfig user --config /dev/null --client-name jane")
    assert r.returncode == 1 and r.stderr.startswith(
        "couldn't create a kubeconfig; the CA files couldn't be loaded: failed to load key: "
        "couldn't load the private key file /etc/kubernetes/pki/ca.key: open "
        "/etc/kubernetes/pki/ca.key: no such file or directory\n")

    # jane's kubeconfig for the login user on the worker; no binding: forbidden for everything
    got = batch(lab, node1, [
        ("mkdir -p ~/.kube && cat > ~/.kube/config && chmod 600 ~/.kube/config", conf),
        "kubectl get nodes", f"kubectl get pods -n {NS}"], user="lab")
    assert got[0][0] == 0, got[0]
    assert got[1] == (1, "", forbidden("jane", "list", "nodes", ns=""))
    assert got[2] == (1, "", forbidden("jane", "list", "pods"))

    view = "kubectl create clusterrolebinding jane-view --clusterrole=view --user=jane"
    got = batch(lab, master, [view, view, "kubectl get clusterrolebinding jane-view",
                              f"kubectl run web --image={NGINX.format('1.27')} -n {NS}"])
    assert got[0] == (0, f"clusterrolebinding.{RBAC_GROUP}/jane-view created\n", "")
    assert got[1] == (1, "", f"error: failed to create clusterrolebinding: clusterrolebindings."
                             f'{RBAC_GROUP} "jane-view" already exists\n')
    lines = got[2][1].splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "AGE"]
    assert lines[1].split()[:2] == ["jane-view", "ClusterRole/view"]
    assert got[3][0] == 0, got[3]

    # view: get/list/watch (no nodes: the view role has none), nothing else
    got = batch(lab, node1, [
        f"kubectl get pods -n {NS} -o name", "kubectl get nodes",
        f"kubectl delete pod web -n {NS}", f"kubectl run w2 --image=busybox -n {NS}",
        ("kubectl apply -f -", pod_yaml()), f"kubectl exec -n {NS} web -- true"], user="lab")
    assert got[0] == (0, "pod/web\n", "")
    assert got[1] == (1, "", forbidden("jane", "list", "nodes", ns=""))
    assert got[2] == (1, "", forbidden("jane", "delete", "pods", "web"))
    assert got[3] == (1, "", forbidden("jane", "create", "pods"))
    assert got[4] == (1, "", 'Error from server (Forbidden): error when creating "STDIN": '
                             + forbidden("jane", "create", "pods").split(": ", 1)[1])
    assert got[5] == (1, "", 'Error from server (Forbidden): pods "web" is forbidden: User '
                             '"jane" cannot create resource "pods/exec" in API group "" in the '
                             f'namespace "{NS}"\n')

    # the admin (admin.conf: kubernetes-admin, system:masters) may do anything; a binding
    # from a manifest, for a group of the certificate's
    binding = (f"apiVersion: {RBAC_GROUP}/v1\nkind: ClusterRoleBinding\nmetadata:\n"
               "  name: readers\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n"
               "  kind: ClusterRole\n  name: {}\nsubjects:\n- apiGroup: "
               "rbac.authorization.k8s.io\n  kind: Group\n  name: readers\n")
    bob = f"kubectl --kubeconfig /tmp/bob.conf get pods -n {NS}"
    got = batch(lab, master, [
        f"kubectl delete pod web -n {NS} --timeout=60s",
        "kubectl delete clusterrolebinding jane-view",
        "kubectl delete clusterrolebinding jane-view", bob,
        ("kubectl apply -f -", binding.format("view")),
        ("kubectl apply -f -", binding.format("view")),
        ("kubectl apply -f -", binding.format("edit")), bob])
    assert got[0] == (0, 'pod "web" deleted\n', "")
    assert got[1] == (0, f'clusterrolebinding.{RBAC_GROUP} "jane-view" deleted\n', "")
    assert got[2] == (1, "", f"Error from server (NotFound): clusterrolebindings.{RBAC_GROUP} "
                             '"jane-view" not found\n')
    assert got[3] == (1, "", forbidden("bob", "list", "pods"))
    assert got[4] == (0, f"clusterrolebinding.{RBAC_GROUP}/readers created\n", "")
    assert got[5] == (0, f"clusterrolebinding.{RBAC_GROUP}/readers unchanged\n", "")
    assert got[6] == (1, "", 'The ClusterRoleBinding "readers" is invalid: roleRef: Invalid '
                             'value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", '
                             'Kind:"ClusterRole", Name:"edit"}: cannot change roleRef\n')
    assert got[7] == (0, "", f"No resources found in {NS} namespace.\n")
    r = ssh(lab, node1, f"kubectl get pods -n {NS}")  # jane's binding is gone
    assert (r.returncode, r.stderr) == (1, forbidden("jane", "list", "pods"))


def test_no_kubeconfig_and_a_foreign_certificate(lab):
    master = lab.nodes[0]
    r = ssh(lab, master, "KUBECONFIG=/nonexistent kubectl get nodes")
    assert (r.returncode, r.stderr) == (
        1, "The connection to the server localhost:8080 was refused - did you specify the "
           "right host or port?\n")
    # a client certificate the cluster CA did not sign: the API server's 401
    r = root(lab, master, "cd /tmp && openssl req -x509 -newkey rsa:2048 -nodes -keyout o.key "
             "-out o.crt -days 1 -subj /CN=mallory 2>/dev/null && python3 -c \"import base64,"
             "re,sys; t=open('/etc/kubernetes/admin.conf').read(); b=lambda f: base64."
             "b64encode(open(f,'rb').read()).decode(); t=re.sub(r'client-certificate-data: "
             "\\S+', 'client-certificate-data: '+b('o.crt'), t); print(re.sub(r'client-key-"
             "data: \\S+', 'client-key-data: '+b('o.key'), t), end='')\" > /tmp/o.conf && "
             "kubectl --kubeconfig /tmp/o.conf get nodes")
    assert (r.returncode, r.stderr) == (
        1, "error: You must be logged in to the server (Unauthorized)\n")
