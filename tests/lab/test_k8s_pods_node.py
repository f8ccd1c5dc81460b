"""Bare Pods, the node side (issue #16; lab/k8s/STATE.md "Bare pods: the node runner"): the
per-node pod runner (k8s/podrun.py) runs the Pods bound to its node as real busybox processes:
image CMD/ENTRYPOINT with command/args, env, limits, CrashLoopBackOff spacing, init containers,
postStart/preStop hooks, liveness/readiness probes (exec, tcpSocket, httpGet), restart policies,
exec (k8s/podexec.py), the containers' network tools, deletion and namespace deletion, and
that nothing listens or connects outside 127.0.0.0/8. (The node-side fault knobs are tested
through verify: tests/cluster/test_verify_pods_lab.py.)

One 2-node 1.20 cluster for the module, time_scale 0.1. Pods go in with `kubectl apply` (the API
side schedules them; every pod here names its node); assertions read the runner's own files
(pods/NS/NAME.json, .events.json: contract 2 and 3)."""

from __future__ import annotations

import importlib
import json
import re
import time

import pytest
from test_k8s_lab import INIT, kubeadm_cluster, root, wait_for
from test_k8s_verify_objects import FLANNEL_LABELLED

from lab import payload_code  # puts the kubelet payload's k8s package on sys.path
from lab.pytest_plugin import module_lab

R = importlib.import_module("k8s.podrun")
N = importlib.import_module("k8s.podnet")
pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]
NS = "pods-node"
BB = "docker.io/library/busybox:1.36"
NGINX = "docker.io/library/nginx:1.27"
NGINX_INDEX_HEAD = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>"
# Pod IPs 10.X.Y.Z are served on the host's loopback 127.X.Y.Z, which every lab on this machine
# shares: another podSubnet than the other lab tests' 10.244.0.0/16 keeps a lab running at the
# same time (same node names, so the same node subnets) off these addresses.
SUBNET = "10.246.0.0/16"
INIT_HERE = INIT.replace("10.244.0.0/16", SUBNET)
FLANNEL_HERE = FLANNEL_LABELLED.replace("10.244.0.0/16", SUBNET)


# ---- pure: the runner's rules ---------------------------------------------------------------

def test_quantities_durations_and_expansion():
    assert [R.quantity(q) for q in ("64Mi", "1G", "128974848", "129e6", "1.5Gi", "10Gi")] == [
        64 * 2 ** 20, 10 ** 9, 128974848, 129000000, 3 * 2 ** 29, 10 * 2 ** 30]
    assert [R.go_duration(s) for s in (10, 40, 80, 160, 300)] == [
        "10s", "40s", "1m20s", "2m40s", "5m0s"]
    env = {"GREETER": "hi"}
    assert R.expand("$(GREETER) $(NOPE) $$(GREETER) $(date +%T)", env) == \
        "hi $(NOPE) $(GREETER) $(date +%T)"  # expansion.go: unknown refs stay as written


def test_images_by_repository_any_mirror():
    assert [R.image_kind(i) for i in (
        "busybox", "docker.io/library/busybox:1.36", "registry.example:5000/library/nginx:1.27",
        "docker.m.daocloud.io/library/nginx", "quay.io/x/alpine:3")] == [
        "busybox", "busybox", "nginx", "nginx", "busybox"]
    assert N.loopback("10.246.3.210") == "127.246.3.210"


def test_wget_arguments_without_t():
    assert (payload_code.LAB / "payloads/kubelet/usr/lib/lab/container/net").is_file()
    assert N._no_t(["-q", "-T", "5", "-O", "-", "http://x/"]) == ["-q", "-O", "-", "http://x/"]


@pytest.fixture(scope="module")
def lab():
    with module_lab(2) as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        kubeadm_cluster(the_lab, INIT_HERE, FLANNEL_HERE)
        master = the_lab.nodes[0]
        r = root(the_lab, master, "kubectl apply -f -",
                 stdin=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n")
        assert r.returncode == 0, r.stderr
        (the_lab.cluster_dir / "time_scale").write_text("0.1")
        yield the_lab


# ---- helpers -----------------------------------------------------------------------------------

def kubectl(lab, args: str, stdin: str | None = None, node=None):
    return root(lab, node or lab.nodes[0], f"kubectl {args}", stdin=stdin)


def pod_yaml(name: str, containers: list[dict], node: str = "node1", **spec) -> str:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": spec.pop("labels", {})},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5,
                     "containers": containers, **spec}}
    return json.dumps(body)


def apply(lab, *docs: str) -> None:
    r = kubectl(lab, "apply -f -", stdin="\n---\n".join(docs))
    assert r.returncode == 0, r.stderr


def status(lab, name: str, ns: str = NS) -> dict:
    try:
        return json.loads((lab.cluster_dir / "pods" / ns / f"{name}.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return {}


def events(lab, name: str, ns: str = NS) -> list[tuple[str, str, str, int]]:
    try:
        got = json.loads((lab.cluster_dir / "pods" / ns / f"{name}.events.json").read_text())
    except (OSError, ValueError):
        return []
    return [(e["type"], e["reason"], e["message"], e["count"]) for e in got]


def ctr(st: dict, name: str) -> dict:
    return next((c for c in st.get("containerStatuses", []) + st.get("initContainerStatuses", [])
                 if c["name"] == name), {})


def running(lab, name: str, container: str = "c") -> dict:
    return wait_for(lambda: "running" in ctr(status(lab, name), container).get("state", {})
                    and status(lab, name))


def exec_(lab, pod: str, argv: str, container: str = "", node=None):
    c = f"-c {container} " if container else ""
    return kubectl(lab, f"-n {NS} exec {pod} {c}-- {argv}", node=node)


def delete(lab, *names: str) -> None:
    r = kubectl(lab, f"-n {NS} delete pod {' '.join(names)} --wait=true --timeout=60s")
    assert r.returncode == 0, r.stderr


def faults(lab, data: dict | None) -> None:
    path = lab.cluster_dir / "faults.json"
    if data:
        path.write_text(json.dumps(data))
    elif path.exists():
        path.unlink()


def pod_ip(lab, name: str) -> str:
    return wait_for(lambda: status(lab, name).get("podIP"))


# ---- tests -------------------------------------------------------------------------------------

def test_busybox_without_command_crash_loops_with_backoff(lab):
    apply(lab, pod_yaml("crash", [{"name": "c", "image": BB}]))
    seen: dict[int, float] = {}
    end = time.time() + 40
    while time.time() < end and 3 not in seen:
        st = status(lab, "crash")
        n = ctr(st, "c").get("restartCount")
        if n is not None and n not in seen:
            seen[n] = time.time()
        time.sleep(0.05)
    assert {1, 2, 3} <= set(seen), seen  # 0 may be over before the first look
    # restart 1 at once, then back-off 10 s, 20 s (x0.1)
    assert seen[2] - seen[1] >= 0.9 and seen[3] - seen[2] >= 1.9, seen
    c = ctr(status(lab, "crash"), "c")
    uid = json.loads((lab.cluster_dir / "pods" / NS / "crash.json").read_text())["uid"]
    term = c["lastState"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (0, "Completed")
    # between two starts it waits in CrashLoopBackOff (ContainerCreating only at a start)
    waiting = wait_for(lambda: (w := ctr(status(lab, "crash"), "c")["state"].get("waiting"))
                       and w["reason"] == "CrashLoopBackOff" and w)
    assert re.fullmatch(rf"back-off (20s|40s) restarting failed container=c pod=crash_{NS}"
                        rf"\({uid}\)", waiting["message"]), waiting
    st = status(lab, "crash")
    assert st["phase"] == "Running"
    assert [(x["type"], x["status"]) for x in st["conditions"]][:3] == [
        ("Initialized", "True"), ("Ready", "False"), ("ContainersReady", "False")]
    ev = events(lab, "crash")
    assert ("Warning", "BackOff", f"Back-off restarting failed container c in pod crash_{NS}"
            f"({uid})") in [e[:3] for e in ev]
    assert ("Normal", "Pulled", f'Container image "{BB}" already present on machine') in \
        [e[:3] for e in ev]
    delete(lab, "crash")


def test_command_args_env_limits_and_exec(lab):
    apply(lab, pod_yaml("hello", [{
        "name": "c", "image": BB, "command": ["sh", "-c"],
        "args": ["echo hello from $(GREETER) > /tmp/hello.txt; sleep 3600"],
        "env": [{"name": "GREETER", "value": "args"}, {"name": "username", "value": "admin"},
                {"name": "password", "value": "s3cr3t"}],
        "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}]))
    st = running(lab, "hello")
    assert st["phase"] == "Running" and ctr(st, "c")["ready"] is True
    assert ctr(st, "c")["containerID"].startswith("docker://")
    r = exec_(lab, "hello", "cat /tmp/hello.txt")
    assert (r.returncode, r.stdout) == (0, "hello from args\n"), r.stderr
    r = exec_(lab, "hello", "printenv username password")  # from master1: the relay
    assert (r.returncode, r.stdout) == (0, "admin\ns3cr3t\n"), r.stderr
    r = exec_(lab, "hello", "sh -c 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat "
              "/sys/fs/cgroup/memory/memory.limit_in_bytes'")
    assert r.stdout == f"{64 * 1024 * 1024}\n"
    r = exec_(lab, "hello", "sh -c 'exit 3'")
    assert (r.returncode, r.stderr) == (3, "command terminated with exit code 3\n")
    r = exec_(lab, "hello", "nosuchtool")
    assert r.returncode == 126 and 'exec: "nosuchtool": executable file not found in $PATH' \
        in r.stdout + r.stderr
    r = exec_(lab, "hello", "ls", container="nope")
    assert r.returncode == 1 and "nope" in r.stderr and "command terminated" not in r.stderr
    r = kubectl(lab, f"-n {NS} exec nosuchpod -- ls")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): pods "nosuchpod" not '
                                           "found\n")
    # /tmp is the container's own; the node's is not visible
    r = exec_(lab, "hello", "ls /tmp")
    assert r.stdout == "hello.txt\n"
    delete(lab, "hello")


def test_nginx_serves_its_pod_address_and_wget_reaches_it(lab):
    apply(lab, pod_yaml("web", [{"name": "nginx", "image": NGINX,
                                 "ports": [{"containerPort": 80, "name": "http"}]}],
                        node="master1", labels={"app": "web"}),
          pod_yaml("client", [{"name": "c", "image": BB, "command": ["sleep", "3600"]}]),
          json.dumps({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "web", "namespace": NS},
                      "spec": {"selector": {"app": "web"},
                               "ports": [{"port": 8080, "targetPort": "http"}]}}))
    running(lab, "web", "nginx")
    running(lab, "client")
    ip = pod_ip(lab, "web")
    r = exec_(lab, "client", f"wget -q -O - -T 5 http://{ip}:80/")
    assert r.returncode == 0 and r.stdout.startswith(NGINX_INDEX_HEAD), r.stderr
    r = exec_(lab, "web", "cat /usr/share/nginx/html/index.html", container="nginx")
    assert r.stdout.startswith(NGINX_INDEX_HEAD)
    r = exec_(lab, "web", "cat /tmp/nope", container="nginx")  # Debian's coreutils, as in nginx
    assert r.stderr == ("cat: /tmp/nope: No such file or directory\n"
                        "command terminated with exit code 1\n")
    r = exec_(lab, "client", f"wget -q -O - -T 5 http://web.{NS}.svc.cluster.local:8080/")
    assert r.returncode == 0 and r.stdout.startswith(NGINX_INDEX_HEAD), r.stderr
    r = exec_(lab, "client", f"wget -O - -T 2 http://{ip}:81/")
    assert r.returncode == 1
    assert r.stderr == (f"Connecting to {ip}:81 ({ip}:81)\nwget: can't connect to remote host "
                        f"({ip}): Connection refused\ncommand terminated with exit code 1\n")
    r = exec_(lab, "client", f"nslookup web.{NS}.svc.cluster.local")
    assert r.returncode == 0 and f"Name:\tweb.{NS}.svc.cluster.local\n" in r.stdout
    r = exec_(lab, "client", f"ping -c 1 {ip}")
    assert r.returncode == 1 and "Network is unreachable" in r.stderr
    # nginx -s quit stops it: Completed, restarted (Always)
    r = exec_(lab, "web", "nginx -s quit", container="nginx")
    assert r.returncode == 0
    st = wait_for(lambda: ctr(status(lab, "web"), "nginx").get("restartCount") == 1
                  and status(lab, "web"))
    assert ctr(st, "nginx")["lastState"]["terminated"]["exitCode"] == 0
    delete(lab, "web", "client")


def test_init_containers_wait_for_the_service_and_run_in_order(lab):
    waiter = ("until nslookup later.pods-node.svc.cluster.local; do echo waiting for later; "
              "sleep 1; done")
    apply(lab, pod_yaml("init", [{
        "name": "c", "image": BB, "command": ["sh", "-c", "cat /work/order; sleep 3600"],
        "volumeMounts": [{"name": "w", "mountPath": "/work"}]}],
        initContainers=[
            {"name": "wait-svc", "image": BB, "command": ["sh", "-c", waiter],
             "volumeMounts": [{"name": "w", "mountPath": "/work"}]},
            {"name": "second", "image": BB,
             "command": ["sh", "-c", "echo second >> /work/order"],
             "volumeMounts": [{"name": "w", "mountPath": "/work"}]}],
        volumes=[{"name": "w", "emptyDir": {}}]))
    wait_for(lambda: "running" in ctr(status(lab, "init"), "wait-svc").get("state", {}))
    time.sleep(2.5)
    st = status(lab, "init")
    assert st["phase"] == "Pending"
    assert ctr(st, "c")["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert ctr(st, "second")["state"] == {"waiting": {"reason": "PodInitializing"}}
    cond = {c["type"]: c for c in st["conditions"]}
    assert cond["Initialized"]["message"] == "containers with incomplete status: [wait-svc " \
                                             "second]"
    apply(lab, json.dumps({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": "later", "namespace": NS},
                           "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}}))
    st = running(lab, "init")
    assert [ctr(st, n)["state"]["terminated"]["reason"] for n in ("wait-svc", "second")] == \
        ["Completed", "Completed"]
    assert ctr(st, "wait-svc")["state"]["terminated"]["finishedAt"] <= \
        ctr(st, "second")["state"]["terminated"]["startedAt"]
    r = exec_(lab, "init", "cat /work/order")
    assert r.stdout == "second\n"
    delete(lab, "init")
    kubectl(lab, f"-n {NS} delete service later")


def test_post_start_and_pre_stop_hooks(lab):
    apply(lab, pod_yaml("hooks", [{
        "name": "nginx", "image": NGINX,
        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
        "lifecycle": {
            "postStart": {"exec": {"command": ["sh", "-c", "echo from postStart > "
                                               "/usr/share/nginx/html/index.html"]}},
            "preStop": {"exec": {"command": ["sh", "-c", "echo bye from preStop > "
                                             "/out/prestop; nginx -s quit; sleep 1"]}}}}],
        volumes=[{"name": "out", "hostPath": {"path": f"/var/tmp/k8s-bootstrap-verify/{NS}",
                                              "type": "DirectoryOrCreate"}}]))
    running(lab, "hooks", "nginx")
    r = exec_(lab, "hooks", "cat /usr/share/nginx/html/index.html")
    assert r.stdout == "from postStart\n"
    delete(lab, "hooks")
    r = root(lab, lab.nodes[1], f"cat /var/tmp/k8s-bootstrap-verify/{NS}/prestop")
    assert r.stdout == "bye from preStop\n"
    assert "pod/pods-node/hooks" not in (lab.cluster_dir / "state.json").read_text()
    assert ("Normal", "Killing", "Stopping container nginx") in \
        [e[:3] for e in events(lab, "hooks")]


def test_post_start_failure_kills_and_restarts(lab):
    apply(lab, pod_yaml("badhook", [{
        "name": "c", "image": BB, "command": ["sleep", "3600"],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 2"]}}}}]))
    wait_for(lambda: ctr(status(lab, "badhook"), "c").get("restartCount", 0) >= 1)
    ev = [e[:3] for e in events(lab, "badhook")]
    assert any(t == "Warning" and r == "FailedPostStartHook" and m.startswith(
        "Exec lifecycle hook ([sh -c exit 2]) for Container \"c\" in Pod \"badhook_pods-node(")
        for t, r, m in ev), ev
    assert ("Normal", "Killing", "FailedPostStartHook") in ev
    delete(lab, "badhook")


PROBE = {"initialDelaySeconds": 1, "periodSeconds": 2, "failureThreshold": 2}


def test_liveness_probes_failing_restart_passing_do_not(lab):
    apply(lab,
          pod_yaml("live-exec", [{"name": "c", "image": BB, "command": ["sleep", "3600"],
                                  "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                                                    **PROBE}}]),
          pod_yaml("live-tcp", [{"name": "c", "image": NGINX,
                                 "livenessProbe": {"tcpSocket": {"port": 8081}, **PROBE}}]),
          pod_yaml("live-http", [{"name": "c", "image": NGINX,
                                  "livenessProbe": {"httpGet": {"path": "/nope", "port": 80},
                                                    **PROBE}}]),
          # the passing ones wait 1 s (x0.1 would not cover the stand-in's own start)
          pod_yaml("live-ok", [{"name": "c", "image": NGINX,
                                "livenessProbe": {"httpGet": {"path": "/", "port": 80},
                                                  **PROBE, "initialDelaySeconds": 10}},
                               {"name": "t", "image": BB, "command": ["sleep", "3600"],
                                "livenessProbe": {"tcpSocket": {"port": 80}, **PROBE,
                                                  "initialDelaySeconds": 10}}]))
    for name in ("live-exec", "live-tcp", "live-http"):
        wait_for(lambda n=name: ctr(status(lab, n), "c").get("restartCount", 0) >= 1)
    ip = pod_ip(lab, "live-tcp")
    msgs = {n: [e[:3] for e in events(lab, n)] for n in ("live-exec", "live-tcp", "live-http")}
    assert ("Warning", "Unhealthy", "Liveness probe failed: cat: can't open '/tmp/healthy': No "
            "such file or directory\n") in msgs["live-exec"]
    assert ("Warning", "Unhealthy", f"Liveness probe failed: dial tcp {ip}:8081: connect: "
            "connection refused") in msgs["live-tcp"]
    assert ("Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: "
            "404") in msgs["live-http"]
    for n in msgs:
        assert ("Normal", "Killing", "Container c failed liveness probe, will be restarted") in \
            msgs[n]
    term = ctr(status(lab, "live-exec"), "c")["lastState"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (137, "Error")  # sleep as PID 1 ignores TERM
    st = status(lab, "live-ok")
    assert [ctr(st, n)["restartCount"] for n in ("c", "t")] == [0, 0]
    assert not [e for e in events(lab, "live-ok") if e[1] == "Unhealthy"]
    delete(lab, "live-exec", "live-tcp", "live-http", "live-ok")


def test_readiness_follows_the_file(lab):
    apply(lab, pod_yaml("ready", [{
        "name": "c", "image": BB, "command": ["sleep", "3600"],
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 2}}]))
    running(lab, "ready")
    time.sleep(0.5)
    st = status(lab, "ready")
    assert ctr(st, "c")["ready"] is False and ctr(st, "c")["started"] is True
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "False"
    exec_(lab, "ready", "touch /tmp/ready")
    wait_for(lambda: ctr(status(lab, "ready"), "c")["ready"])
    assert {c["type"]: c["status"] for c in status(lab, "ready")["conditions"]}["Ready"] == \
        "True"
    exec_(lab, "ready", "rm -f /tmp/ready")
    wait_for(lambda: ctr(status(lab, "ready"), "c")["ready"] is False)
    assert ("Warning", "Unhealthy", "Readiness probe failed: cat: can't open '/tmp/ready': No "
            "such file or directory\n") in [e[:3] for e in events(lab, "ready")]
    delete(lab, "ready")


def test_restart_policies(lab):
    def one(name, policy, code):
        return pod_yaml(name, [{"name": "c", "image": BB, "command": ["sh", "-c",
                                                                       f"exit {code}"]}],
                        restartPolicy=policy)
    apply(lab, one("never-fail", "Never", 1), one("never-ok", "Never", 0),
          one("onfail-ok", "OnFailure", 0), one("onfail-fail", "OnFailure", 1))
    assert wait_for(lambda: status(lab, "never-fail").get("phase") == "Failed")
    assert wait_for(lambda: status(lab, "never-ok").get("phase") == "Succeeded")
    assert wait_for(lambda: status(lab, "onfail-ok").get("phase") == "Succeeded")
    wait_for(lambda: ctr(status(lab, "onfail-fail"), "c").get("restartCount", 0) >= 2)
    st = status(lab, "never-fail")
    assert ctr(st, "c")["state"]["terminated"]["exitCode"] == 1
    assert ctr(st, "c")["state"]["terminated"]["reason"] == "Error"
    assert ctr(st, "c")["restartCount"] == 0
    assert {c["type"]: c.get("reason") for c in st["conditions"]}["Ready"] == "PodCompleted"
    assert status(lab, "onfail-fail")["phase"] == "Running"
    delete(lab, "never-fail", "never-ok", "onfail-ok", "onfail-fail")


# The node-side fault knobs are each tested through verify, where exactly the check of the
# broken behaviour must fail: tests/cluster/test_verify_pods_lab.py.


def test_deleted_namespace_stops_its_processes(lab):
    apply(lab, '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}}',
          pod_yaml("doomed", [{"name": "c", "image": BB,
                               "command": ["sh", "-c", "sleep 3601"]}]).replace(
                                   f'"namespace": "{NS}"', '"namespace": "gone"'))
    wait_for(lambda: "running" in ctr(status(lab, "doomed", "gone"), "c").get("state", {}))
    node = lab.nodes[1]
    assert "sleep 3601" in root(lab, node, "ps -eo args").stdout
    r = kubectl(lab, "delete namespace gone --wait=false --ignore-not-found")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "sleep 3601" not in root(lab, node, "ps -eo args").stdout, timeout=30)


def test_nothing_listens_or_connects_outside_loopback(lab):
    apply(lab, pod_yaml("net", [{"name": "c", "image": NGINX}]),
          pod_yaml("net2", [{"name": "c", "image": BB, "command": ["sh", "-c",
                             "httpd -p 8080 -h /tmp; sleep 3600"]}]))
    running(lab, "net")
    running(lab, "net2")
    ip = pod_ip(lab, "net2")
    r = exec_(lab, "net", f"sh -c 'wget -q -O - -T 2 http://{ip}:8080/ ; busybox wget -q -T 1 "
              "http://10.96.0.1/; nc 10.244.0.1 80; true'")
    assert r.returncode == 0, (r.stderr, status(lab, "net"), events(lab, "net"))
    for table in ("/proc/net/tcp", "/proc/net/udp"):  # the nodes share the host's network
        with open(table) as fh:
            lines = fh.read().splitlines()[1:]
        for line in lines:
            local, remote, st = line.split()[1:4]
            assert int(remote.split(":")[0][6:8], 16) != 10, (table, line)  # no 10/8 peer
            port = int(local.split(":")[1], 16)
            if st == "0A" and port in (80, 8080):  # the pods' servers: on 127/8 only
                assert local.split(":")[0][6:8] == "7F", line
    delete(lab, "net", "net2")


def test_a_pod_recreated_under_the_same_name_keeps_its_own_files(lab):
    manifest = pod_yaml("again", [{"name": "c", "image": BB, "command": ["sleep", "3600"]}],
                        node="master1")
    apply(lab, manifest)
    running(lab, "again")
    path = lab.cluster_dir / "pods" / NS / "again.json"
    first = json.loads(path.read_text())["uid"]
    delete(lab, "again")
    apply(lab, manifest)
    second = wait_for(lambda: path.exists() and json.loads(path.read_text())["uid"] != first
                      and json.loads(path.read_text())["uid"])
    running(lab, "again")
    time.sleep(1)
    assert json.loads(path.read_text())["uid"] == second
    evs = json.loads((lab.cluster_dir / "pods" / NS / "again.events.json").read_text())
    assert {e["involvedObject"]["uid"] for e in evs} == {first, second}
    delete(lab, "again")


def test_kubelet_stop_stops_the_runner_and_its_containers(lab):
    """Last in the module: node1's kubelet goes down and comes back."""
    node = lab.nodes[1]
    apply(lab, pod_yaml("survivor", [{"name": "c", "image": BB,
                                      "command": ["sh", "-c", "sleep 3602"]}]))
    running(lab, "survivor")
    assert root(lab, node, "test -s /run/lab/podrun.pid").returncode == 0
    r = root(lab, node, "systemctl stop kubelet")
    assert r.returncode == 0, r.stderr
    ps = root(lab, node, "ps -eo args").stdout
    assert "sleep 3602" not in ps and "podrun.py" not in ps, ps
    r = exec_(lab, "survivor", "true")
    assert (r.returncode, r.stderr) == (1, "Error from server: error dialing backend: dial tcp "
                                           f"{node.address}:10250: connect: connection refused\n")
    r = root(lab, node, "systemctl start kubelet")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "sleep 3602" in root(lab, node, "ps -eo args").stdout)
    assert exec_(lab, "survivor", "true").returncode == 0
    delete(lab, "survivor")
