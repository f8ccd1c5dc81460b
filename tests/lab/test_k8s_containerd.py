"""The containerd path of the lab (issue #13, section 8): containerd.io of the 1.6/1.7 lines
in each flavour's docker-ce repo, containerd.service loading /etc/containerd/config.toml with
the real loader (Debian's containerd, `config dump`), the crictl stand-in. One lab per flavour."""

from __future__ import annotations

import json
import shlex

import pytest

from lab import flavours, mirror
from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

V2 = """version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
"""
UNAVAILABLE = ("rpc error: code = Unimplemented desc = unknown service "
               "runtime.v1.RuntimeService")


@pytest.fixture(scope="module", params=flavours.NAMES)
def lab(request):
    with module_lab(1, os=request.param) as the_lab:
        node = the_lab.nodes[0]
        d = "docker-ce" if the_lab.os == "el7" else f"{the_lab.os}/docker-ce"
        repo = (f"[docker-ce-stable]\nname=Docker CE Stable\nbaseurl={the_lab.mirror_url}{d}/\n"
                "gpgcheck=0\nenabled=1\n")
        run(node, f"printf %s {shlex.quote(repo)} > /etc/yum.repos.d/docker-ce.repo")
        for minor in mirror.K8S_MINORS:
            k8s = (f"[kubernetes-{minor}]\nname=Kubernetes {minor}\nbaseurl={the_lab.mirror_url}"
                   f"{mirror.k8s_repo(minor)}/\ngpgcheck=0\nrepo_gpgcheck=0\nenabled=0\n")
            run(node, f"printf %s {shlex.quote(k8s)} > /etc/yum.repos.d/kubernetes-{minor}.repo")
        yield the_lab


def run(node, script: str, timeout: float = 60):
    return node.run(script, timeout=timeout)


def install(node, version: str):
    r = run(node, f"yum install -y containerd.io-{version} 2>&1 || "
                  f"yum downgrade -y containerd.io-{version} 2>&1", 180)
    assert r.returncode == 0, r.stdout
    return r


def snapshot(node) -> dict:
    return json.loads(run(node, "cat /run/lab/containerd/config.json").stdout)


def test_containerd_lines_in_every_flavour_repo(lab):
    node = lab.nodes[0]
    r = run(node, "yum --showduplicates list available containerd.io 2>&1", 120)
    assert r.returncode == 0, r.stdout
    dist = flavours.get(lab.os).docker_release
    for v in mirror.CONTAINERD_LINES[lab.os]:
        assert f"{v}-3.1.{dist}" in r.stdout, r.stdout
    assert ("1.7." in r.stdout) is (lab.os != "el7")  # no el7 build of 1.7
    newest = mirror.CONTAINERD_LINES[lab.os][-1]
    install(node, newest)
    r = run(node, "rpm -q --provides containerd.io; containerd --version")
    assert ("runc" in r.stdout.split()) is (lab.os == "el7")
    assert r.stdout.splitlines()[-1].startswith(f"containerd containerd.io {newest} ")
    r = run(node, "grep -v '^#' /etc/containerd/config.toml | grep .")
    assert r.stdout == 'disabled_plugins = ["cri"]\n'


def test_shipped_config_starts_but_cri_is_disabled(lab):
    node = lab.nodes[0]
    install(node, mirror.CONTAINERD_LINES[lab.os][0])
    r = run(node, "sudo -n systemctl restart containerd && systemctl is-active containerd && "
                  "test -e /run/containerd/containerd.sock && echo sock")
    assert r.stdout == "active\nsock\n", r.stdout + r.stderr
    snap = snapshot(node)
    assert snap["cri_disabled"] is True and snap["config_version"] == 1
    assert snap["systemd_cgroup"] is None and snap["sandbox_image"] is None
    assert snap["address"] == "/run/containerd/containerd.sock"
    r = run(node, "sudo -n systemctl stop containerd; test -e /run/containerd/containerd.sock "
                  "|| echo gone; test -e /run/lab/containerd/config.json || echo forgotten")
    assert r.stdout == "gone\nforgotten\n"


def test_v2_config_loaded_values(lab):
    node = lab.nodes[0]
    run(node, f"printf %s {shlex.quote(V2)} | sudo -n tee /etc/containerd/config.toml >/dev/null")
    r = run(node, "sudo -n systemctl restart containerd")
    assert r.returncode == 0, r.stderr
    snap = snapshot(node)
    assert snap["cri_disabled"] is False and snap["config_version"] == 2
    assert snap["systemd_cgroup"] is True
    assert snap["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert snap["registry_config_path"] == "/etc/containerd/certs.d"
    # the real loader inside the node, as the toolkit may call it
    r = run(node, "containerd config dump | grep -E 'SystemdCgroup|sandbox_image'")
    assert "SystemdCgroup = true" in r.stdout and "pause:3.9" in r.stdout, r.stdout + r.stderr


def test_broken_toml_fails_the_start_with_the_loaders_text(lab):
    node = lab.nodes[0]
    run(node, "printf 'version = 2\\n[plugins\\n' | sudo -n tee /etc/containerd/config.toml")
    r = run(node, "sudo -n systemctl restart containerd")
    assert r.returncode == 1
    assert "Job for containerd.service failed" in r.stderr
    r = run(node, "systemctl is-active containerd; sudo -n journalctl -u containerd --no-pager")
    assert r.stdout.startswith("failed\n") or r.stdout.startswith("inactive\n"), r.stdout
    assert ("containerd: failed to load TOML: /etc/containerd/config.toml: (2, 2): "
            "unexpected token unclosed table key") in r.stdout, r.stdout
    assert "Failed to start containerd container runtime." in r.stdout


def test_per_minor_repos_list_their_packages(lab):
    node = lab.nodes[0]
    for minor, m in mirror.K8S_MINORS.items():
        r = run(node, f"yum --disablerepo='*' --enablerepo=kubernetes-{minor} --showduplicates "
                      "list available 2>&1", 120)
        assert r.returncode == 0, r.stdout
        for v in m["patches"]:
            for name in ("kubelet", "kubeadm", "kubectl"):
                assert any(ln.split()[:2] == [f"{name}.x86_64", f"{v}-150500.1.1"]
                           for ln in r.stdout.splitlines()), r.stdout
        assert "cri-tools.x86_64" in r.stdout and "kubernetes-cni.x86_64" in r.stdout
        assert "1.20.10" not in r.stdout  # the legacy repo's versions are not there
    r = run(node, f"curl -sf {lab.mirror_url}{mirror.k8s_repo('1.30')}/repodata/repomd.xml.key")
    assert "PGP PUBLIC KEY" in r.stdout


def test_crictl(lab):
    node = lab.nodes[0]
    r = run(node, "yum --enablerepo=kubernetes-1.30 install -y cri-tools-1.30.0 2>&1", 120)
    assert r.returncode == 0, r.stdout
    assert run(node, "crictl --version").stdout == "crictl version v1.30.0\n"
    # CRI disabled (the shipped config): the real text
    run(node, "sudo -n rm -f /etc/crictl.yaml")
    run(node, "printf 'disabled_plugins = [\"cri\"]\\n' | sudo -n tee /etc/containerd/config.toml"
              " >/dev/null; sudo -n systemctl restart containerd")
    r = run(node, "sudo -n crictl info")
    assert r.returncode == 1
    assert "runtime connect using default endpoints: [unix:///run/containerd/containerd.sock" \
        in r.stderr
    assert UNAVAILABLE in r.stderr, r.stderr
    run(node, "printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\\n' | "
              "sudo -n tee /etc/crictl.yaml >/dev/null")
    r = run(node, "sudo -n crictl info")
    assert r.returncode == 1 and "default endpoints" not in r.stderr
    # not a terminal: logrus' key=value form, the message quoted
    assert ('level=fatal msg="validate service connection: validate CRI v1 runtime API for '
            f'endpoint \\"unix:///run/containerd/containerd.sock\\": {UNAVAILABLE}"\n') \
        in r.stderr, r.stderr
    # a v2 config with cri on: crictl info shows the loaded values
    run(node, f"printf %s {shlex.quote(V2)} | sudo -n tee /etc/containerd/config.toml >/dev/null;"
              " sudo -n systemctl restart containerd")
    r = run(node, "sudo -n crictl info")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    conds = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conds == {"RuntimeReady": True, "NetworkReady": False}
    assert got["config"]["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert got["config"]["sandboxImage"] == "registry.k8s.io/pause:3.9"
    r = run(node, "sudo -n crictl ps -a; sudo -n crictl images; sudo -n crictl rmi --prune; "
                  "sudo -n crictl rm -a; sudo -n crictl stopp abc")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("CONTAINER           IMAGE")
    # containerd down: the dial error
    run(node, "sudo -n systemctl stop containerd")
    r = run(node, "sudo -n crictl info")
    assert r.returncode == 1
    assert "dial unix /run/containerd/containerd.sock: connect: no such file or directory" \
        in r.stderr
