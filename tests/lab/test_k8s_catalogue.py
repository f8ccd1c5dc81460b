"""The lab registry catalogue (containerd.io's /usr/share/lab/registry-catalogue.txt) and the
strict `crictl pull`.

Without a lab: every image `kubeadm config images list` prints (kubeadm_cfg.images(), the
stand-in's own code) for every Kubernetes version the mirror serves, with the default repository,
registry.k8s.io and registry.aliyuncs.com/google_containers, is in the catalogue; the one
deliberate trap (kubeadm 1.21.0's coredns/coredns path on Aliyun, kubeadm#2501) is not.
With an el9 node on containerd and the 1.30 packages: crictl pulls only what the catalogue has,
remembers it (`crictl images`, `inspecti`, `rmi`), fails like crictl 1.28/1.30 + containerd
otherwise, and kubeadm's `config images pull` goes through it.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from lab import mirror
from lab.payload_code import CATALOGUE, LAB, kubeadm_cfg, state
from lab.pytest_plugin import module_lab

ALIYUN = "registry.aliyuncs.com/google_containers"
TRAP = {("1.21.0", ALIYUN): {f"{ALIYUN}/coredns/coredns:v1.8.0"}}
SERVED = (*mirror.LEGACY_K8S,
          *[v for m in mirror.K8S_MINORS.values() for v in m["patches"]])  # type: ignore[attr-defined]
SOCK = "unix:///run/containerd/containerd.sock"
V2 = """version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.aliyuncs.com/google_containers/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
"""


def catalogue() -> set[str]:
    names = set()
    for line in CATALOGUE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(state.qualify(line))
    return names


def test_catalogue_ships_in_containerd_io():
    assert CATALOGUE.is_file()
    assert not (LAB / "payloads" / "docker-ce-cli" / "usr" / "share" / "lab").exists()
    # docker-ce requires containerd.io in every build the mirror serves: docker nodes have it
    for p in mirror.PACKAGES:
        if p.name == "docker-ce":
            assert any(r.startswith("containerd.io") for r in p.requires), p


@pytest.mark.parametrize("version", SERVED)
@pytest.mark.parametrize("repo", ["", "registry.k8s.io", ALIYUN])
def test_every_kubeadm_image_is_served(version, repo):
    have = catalogue()
    wanted = kubeadm_cfg.images(version, repo, version)
    assert len(wanted) == 7
    trap = TRAP.get((version, repo), set())
    missing = [i for i in wanted if state.qualify(i) not in have and i not in trap]
    assert missing == [], f"kubeadm {version} ({repo or 'default repository'}): {missing}"
    assert not trap & have  # the trap stays a trap


def test_mirror_serves_1_23_17_on_the_legacy_repo():
    by = {(p.name, p.version, p.repo) for p in mirror.PACKAGES}
    for name in ("kubelet", "kubeadm", "kubectl"):
        assert (name, "1.23.17", "kubernetes") in by
    assert ("cri-tools", "1.23.0", "kubernetes") in by
    kubeadm = next(p for p in mirror.PACKAGES if p.name == "kubeadm" and p.version == "1.23.17")
    assert kubeadm.release == "0" and set(kubeadm.requires) == {
        "kubelet >= 1.13.0", "kubectl >= 1.13.0", "kubernetes-cni >= 0.8.6", "cri-tools >= 1.13.0"}


# ---- on a node -------------------------------------------------------------------------------

KLOG = re.compile(r"^E\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ remote_image\.go:(\d+)\] ")
STAMP = r'time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)" level=fatal msg='


@pytest.fixture(scope="module")
def lab():
    with module_lab(1, os="el9") as the_lab:
        if not the_lab.mirror_url:
            pytest.skip("the lab started without a mirror")
        node = the_lab.nodes[0]
        repo = (f"[docker-ce-stable]\nname=Docker CE Stable\nbaseurl={the_lab.mirror_url}"
                f"el9/docker-ce/\ngpgcheck=0\nenabled=1\n\n[kubernetes]\nname=Kubernetes\n"
                f"baseurl={the_lab.mirror_url}{mirror.k8s_repo('1.30')}/\ngpgcheck=0\nenabled=1\n"
                f"\n[kubernetes-1.28]\nname=Kubernetes 1.28\nbaseurl={the_lab.mirror_url}"
                f"{mirror.k8s_repo('1.28')}/\ngpgcheck=0\nenabled=0\n")
        r = run(node, f"printf %s {shlex.quote(repo)} > /etc/yum.repos.d/lab-k8s.repo && "
                      "dnf install -y containerd.io-1.7.27 kubelet-1.30.1 kubeadm-1.30.1 "
                      "kubectl-1.30.1 2>&1", 240)
        assert r.returncode == 0, r.stdout
        r = run(node, f"printf %s {shlex.quote(V2)} > /etc/containerd/config.toml && "
                      f"printf 'runtime-endpoint: {SOCK}\\n' > /etc/crictl.yaml && "
                      "systemctl start containerd && crictl --version")
        assert r.stdout == "crictl version v1.30.0\n", r.stdout + r.stderr
        yield the_lab


def run(node, script: str, timeout: float = 60):
    return node.run(script, timeout=timeout)


@pytest.mark.lab
@pytest.mark.timeout(600)
def test_crictl_pull_strict(lab):
    node = lab.nodes[0]
    r = run(node, "crictl pull registry.aliyuncs.com/google_containers/pause:3.9")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"Image is up to date for sha256:[0-9a-f]{64}\n", r.stdout), r.stdout
    image_id = r.stdout.split()[-1]
    # remembered: images, inspecti (by name or id), the engine's awk over `crictl images`
    r = run(node, "crictl images; crictl images | awk 'NR > 1 {print $1 \":\" $2}'; "
                  "crictl images -q")
    lines = r.stdout.splitlines()
    width = len(f"{ALIYUN}/pause") + 3  # tabwriter: widest cell + padding 3, at least 20
    assert lines[0] == "IMAGE".ljust(width) + "TAG".ljust(20) + "IMAGE ID".ljust(20) + "SIZE"
    row = lines[1].split()
    assert row[:3] == [f"{ALIYUN}/pause", "3.9", image_id[7:20]], lines
    assert lines[2] == f"{ALIYUN}/pause:3.9" and lines[3] == image_id
    for ref in (f"{ALIYUN}/pause:3.9", image_id[7:20]):
        r = run(node, f"crictl inspecti {ref}")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["status"]["repoTags"] == [f"{ALIYUN}/pause:3.9"]
    # short names are normalised the way containerd does
    r = run(node, "crictl pull busybox && crictl inspecti docker.io/library/busybox:latest")
    assert r.returncode == 0, r.stderr

    # a repository the registry does not have (Docker Hub: 401 insufficient_scope): code
    # Unknown, which crictl 1.30's CRI client strips from what it returns
    r = run(node, "crictl pull docker.io/library/nosuch:1")
    assert (r.returncode, r.stdout) == (1, ""), r.stderr
    klog, fatal = r.stderr.splitlines()
    m = KLOG.match(klog)
    assert m and m.group(1) == "180", klog
    ref = "docker.io/library/nosuch:1"
    err = (f'failed to pull and unpack image \\"{ref}\\": failed to resolve reference \\"{ref}\\": '
           "pull access denied, repository does not exist or may require authorization: server "
           "message: insufficient_scope: authorization failed")
    assert klog[m.end():] == (f'"PullImage from image service failed" err="rpc error: code = '
                              f'Unknown desc = {err}" image="{ref}"'), klog
    assert re.fullmatch(STAMP + re.escape(f'"pulling image: {err}"'), fatal), fatal
    # the same on a terminal: logrus' coloured short form
    r = run(node, "script -qec 'crictl pull docker.io/library/nosuch:1' /dev/null")
    assert r.returncode == 1
    assert ("\x1b[31mFATA\x1b[0m[0000] pulling image: failed to pull and unpack image "
            f'"{ref}": failed to resolve reference "{ref}": pull access denied') in r.stdout, \
        r.stdout
    # a known repository without that tag: the resolver's 404, code NotFound (kept)
    r = run(node, "crictl pull busybox:nosuch")
    ref = "docker.io/library/busybox:nosuch"
    assert r.returncode == 1
    assert r.stderr.splitlines()[1].endswith(
        f'msg="pulling image: rpc error: code = NotFound desc = failed to pull and unpack image '
        f'\\"{ref}\\": failed to resolve reference \\"{ref}\\": {ref}: not found"'), r.stderr
    assert ' image="busybox:nosuch"' in r.stderr.splitlines()[0]
    r = run(node, "crictl images -q | wc -l; crictl inspecti docker.io/library/nosuch:1")
    assert r.stdout.startswith("2\n") and r.returncode == 1
    assert r.stderr.endswith('level=fatal msg="no such image \\"docker.io/library/nosuch:1\\" '
                             'present"\n'), r.stderr

    # crictl 1.28: the older client (no stripping of Unknown, another line)
    rpms = {m: f"{lab.mirror_url}{mirror.k8s_repo(m)}/x86_64/cri-tools-{m}.0-"
               f"{mirror.OBS_RELEASE}.x86_64.rpm" for m in ("1.28", "1.30")}
    r = run(node, f"curl -sfo /tmp/old.rpm {rpms['1.28']} && curl -sfo /tmp/new.rpm "
                  f"{rpms['1.30']} && rpm -U --oldpackage --nodeps /tmp/old.rpm 2>/dev/null && "
                  "crictl --version; crictl pull docker.io/library/nosuch:1; "
                  "rpm -U /tmp/new.rpm 2>/dev/null", 120)
    assert r.stdout == "crictl version v1.28.0\n", r.stdout
    klog, fatal = r.stderr.splitlines()
    assert KLOG.match(klog) and KLOG.match(klog).group(1) == "167", r.stderr
    assert 'msg="pulling image: rpc error: code = Unknown desc = failed to pull' in fatal

    # rmi forgets it
    r = run(node, "crictl rmi busybox; crictl images -q | wc -l")
    assert r.stdout == "Deleted: docker.io/library/busybox:latest\n1\n", r.stdout + r.stderr

    # containerd down / CRI off: crictl's image-service connection errors
    r = run(node, "systemctl stop containerd; crictl pull busybox")
    assert r.returncode == 1
    assert ('validate service connection: validate CRI v1 image API for endpoint '
            f'\\"{SOCK}\\": rpc error: code = Unavailable desc = connection error: desc = '
            '\\"transport: Error while dialing: dial unix /run/containerd/containerd.sock: '
            'connect: no such file or directory\\""') in r.stderr, r.stderr
    r = run(node, "printf 'disabled_plugins = [\"cri\"]\\n' > /etc/containerd/config.toml && "
                  "systemctl start containerd && crictl pull busybox")
    assert r.returncode == 1
    assert "rpc error: code = Unimplemented desc = unknown service runtime.v1.ImageService" \
        in r.stderr, r.stderr
    r = run(node, f"printf %s {shlex.quote(V2)} > /etc/containerd/config.toml && "
                  "systemctl restart containerd && crictl images -q")
    assert r.stdout.splitlines() == [image_id], r.stdout  # on disk: it survives a restart


@pytest.mark.lab
@pytest.mark.timeout(300)
def test_kubeadm_pulls_through_crictl(lab):
    node = lab.nodes[0]
    r = run(node, f"kubeadm config images pull --cri-socket {SOCK} --kubernetes-version v1.30.1 "
                  f"--image-repository {ALIYUN}", 120)
    assert r.returncode == 0, r.stderr
    wanted = kubeadm_cfg.images("1.30.1", ALIYUN, "1.30.1")
    assert r.stdout == "".join(f"[config/images] Pulled {i}\n" for i in wanted)
    got = run(node, "crictl images | awk 'NR > 1 {print $1 \":\" $2}'").stdout.split()
    assert set(wanted) <= set(got)
    # a repository the registry lacks: kubeadm's text around crictl's last output, 5 tries
    r = run(node, "n=$(grep -c '\"cmd\": \"crictl\", \"argv\": \\[\"-r\"' /var/lib/lab/calls.log);"
                  f" kubeadm config images pull --cri-socket {SOCK} --kubernetes-version v1.30.1 "
                  "--image-repository registry.aliyuncs.com/nosuch; echo rc=$?; "
                  "echo $(( $(grep -c '\"cmd\": \"crictl\", \"argv\": \\[\"-r\"' "
                  "/var/lib/lab/calls.log) - n ))", 120)
    image = "registry.aliyuncs.com/nosuch/kube-apiserver:v1.30.1"
    assert r.stdout == "rc=1\n5\n", r.stdout + r.stderr
    assert r.stderr.startswith(f'failed to pull image "{image}": output: E'), r.stderr
    assert (f'level=fatal msg="pulling image: failed to pull and unpack image \\"{image}\\": '
            f'failed to resolve reference \\"{image}\\": pull access denied, repository does not '
            "exist or may require authorization: server message: insufficient_scope: "
            'authorization failed"\n, error: exit status 1\n') in r.stderr, r.stderr
    assert r.stderr.endswith("To see the stack trace of this error execute with --v=5 or "
                             "higher\n")
