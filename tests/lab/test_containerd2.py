"""containerd.io 2.x in the lab (issue "Kubernetes 1.31 to 1.37", item 6): the 2.x builds in
the el8/el9 docker-ce repos (none for el7), containerd.service loading config version 3 with the
lab's 2.x loader (containerd2.py, followed from containerd v2.1.5's source), the v2 -> v3
migration, containerd.io's shipped `disabled_plugins = ["cri"]`, go-toml's syntax errors, and
crictl on 2.x. One el9 lab for the module (plus one el7 node for the repo check)."""

from __future__ import annotations

import json
import shlex

import pytest

from bootstrap import containerd
from lab import flavours, mirror
from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

V2X = [v for v in mirror.CONTAINERD_LINES["el9"] if v.startswith("2.")]
UNIMPLEMENTED = ("rpc error: code = Unimplemented desc = unknown service "
                 "runtime.v1.RuntimeService")
MIGRATED = ("Configuration migrated from version 2, use `containerd config migrate` to avoid "
            "migration")


def repo_files(node, the_lab) -> None:
    d = "docker-ce" if the_lab.os == "el7" else f"{the_lab.os}/docker-ce"
    repo = (f"[docker-ce-stable]\nname=Docker CE Stable\nbaseurl={the_lab.mirror_url}{d}/\n"
            "gpgcheck=0\nenabled=1\n")
    run(node, f"printf %s {shlex.quote(repo)} > /etc/yum.repos.d/docker-ce.repo")


@pytest.fixture(scope="module")
def lab():
    with module_lab(1, os="el9") as the_lab:
        node = the_lab.nodes[0]
        repo_files(node, the_lab)
        k8s = (f"[kubernetes-1.30]\nname=Kubernetes 1.30\nbaseurl={the_lab.mirror_url}"
               f"{mirror.k8s_repo('1.30')}/\ngpgcheck=0\nrepo_gpgcheck=0\nenabled=0\n")
        run(node, f"printf %s {shlex.quote(k8s)} > /etc/yum.repos.d/kubernetes-1.30.repo")
        r = run(node, f"yum install -y containerd.io-{V2X[0]} 2>&1 && yum --enablerepo="
                      "kubernetes-1.30 install -y cri-tools-1.30.0 2>&1", 240)
        assert r.returncode == 0, r.stdout
        run(node, "printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\\n' | "
                  "sudo -n tee /etc/crictl.yaml >/dev/null")
        yield the_lab


def run(node, script: str, timeout: float = 60):
    return node.run(script, timeout=timeout)


def write_config(node, text: str) -> None:
    r = run(node, f"printf %s {shlex.quote(text)} | sudo -n tee /etc/containerd/config.toml "
                  ">/dev/null")
    assert r.returncode == 0, r.stderr


def restart(node):
    return run(node, "sudo -n systemctl restart containerd")


def snapshot(node) -> dict:
    return json.loads(run(node, "cat /run/lab/containerd/config.json").stdout)


def journal(node) -> str:
    return run(node, "sudo -n journalctl -u containerd --no-pager").stdout


def test_2x_builds_in_the_el9_repo(lab):
    node = lab.nodes[0]
    assert V2X[0] == "2.1.5"  # docker's first (and only) 2.1 build
    r = run(node, "yum --showduplicates list available containerd.io 2>&1; rpm -q "
                  "containerd.io; containerd --version", 120)
    dist = flavours.get("el9").docker_release
    for v in V2X:
        assert f"{v}-3.1.{dist}" in r.stdout, r.stdout
    assert f"containerd.io-2.1.5-3.1.{dist}.x86_64\n" in r.stdout
    assert r.stdout.splitlines()[-1] == ("containerd containerd.io 2.1.5 "
                                         "fcd43222d6b07379a4be9786bda52438f0dd16a1")
    provides = run(node, "rpm -q --provides containerd.io").stdout.split()
    assert "runc" not in provides and "containerd" in provides
    rel = run(node, "rpm -q --obsoletes containerd.io; rpm -q --conflicts containerd.io").stdout
    assert rel.split().count("runc") == 2 and rel.split().count("containerd") == 2


def test_shipped_config_leaves_cri_off(lab):
    node = lab.nodes[0]
    r = run(node, "grep -v '^#' /etc/containerd/config.toml | grep .")
    assert r.stdout == 'disabled_plugins = ["cri"]\n'
    r = restart(node)
    assert r.returncode == 0, r.stderr
    snap = snapshot(node)
    # no version: containerd 2.x migrates it at load (v1Migrate: cri -> io.containerd.grpc.v1.cri)
    assert snap["version"] == "2.1.5" and snap["config_version"] == 1
    assert snap["cri_disabled"] is True and snap["runtime_config"] is True
    assert snap["systemd_cgroup"] is None and snap["sandbox_image"] is None
    r = run(node, "sudo -n crictl info")
    assert r.returncode == 1
    assert ('level=fatal msg="validate service connection: validate CRI v1 runtime API for '
            f'endpoint \\"unix:///run/containerd/containerd.sock\\": {UNIMPLEMENTED}"') \
        in r.stderr, r.stderr


def test_rendered_v3_config_is_loaded(lab):
    node = lab.nodes[0]
    text = containerd.config_toml("1.37.0", "registry.aliyuncs.com/google_containers",
                                  "systemd", "2.1.5")
    assert "version = 3" in text
    write_config(node, text)
    run(node, "sudo -n journalctl --rotate >/dev/null 2>&1; true")
    r = restart(node)
    assert r.returncode == 0, r.stderr
    snap = snapshot(node)
    assert snap["config_version"] == 3 and snap["cri_disabled"] is False
    assert snap["systemd_cgroup"] is True and snap["runtime_config"] is True
    assert snap["sandbox_image"] == "registry.aliyuncs.com/google_containers/pause:3.10.2"
    assert snap["registry_config_path"] == "/etc/containerd/certs.d"
    assert snap["default_runtime_name"] == "runc"
    assert snap["cni_conf_dir"] == "/etc/cni/net.d" and snap["cni_bin_dirs"] == ["/opt/cni/bin"]
    assert snap["address"] == "/run/containerd/containerd.sock"
    assert snap["root"] == "/var/lib/containerd" and snap["state"] == "/run/containerd"
    # crictl on 2.x: the status config has no sandboxImage; RuntimeVersion is the tag
    r = run(node, "sudo -n crictl info")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    conds = [c["type"] for c in got["status"]["conditions"]]
    assert conds == ["RuntimeReady", "NetworkReady", "ContainerdHasNoDeprecationWarnings"]
    assert got["config"]["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert "sandboxImage" not in got["config"] and "registry" not in got["config"]
    r = run(node, "sudo -n crictl version")
    assert "RuntimeVersion:  v2.1.5\n" in r.stdout, r.stdout
    r = run(node, "containerd config dump")
    assert r.returncode == 0, r.stderr
    assert "sandbox = 'registry.aliyuncs.com/google_containers/pause:3.10.2'" in r.stdout


def test_v2_config_of_1x_is_migrated(lab):
    node = lab.nodes[0]
    write_config(node, containerd.config_toml("1.30.1", "registry.k8s.io", "systemd",
                                              "1.7.27"))
    r = restart(node)
    assert r.returncode == 0, r.stderr
    snap = snapshot(node)
    assert snap["config_version"] == 2 and snap["cri_disabled"] is False
    assert snap["systemd_cgroup"] is True
    assert snap["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert snap["registry_config_path"] == "/etc/containerd/certs.d"
    assert MIGRATED in journal(node)
    # a v2 config naming the plugin by its short id is refused (only v1 is renamed)
    write_config(node, 'version = 2\ndisabled_plugins = ["cri"]\n')
    r = restart(node)
    assert r.returncode == 1
    assert ('containerd: failed to load TOML from /etc/containerd/config.toml: invalid disabled '
            'plugin URI "cri" expect io.containerd.x.vx') in journal(node)
    # version 2 with the CRI URI disabled: CRI off
    write_config(node, 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
    assert restart(node).returncode == 0
    assert snapshot(node)["cri_disabled"] is True


def test_unknown_keys_warn_and_are_ignored(lab):
    node = lab.nodes[0]
    write_config(node, 'version = 3\nplugin_dir = ""\n'
                       '[plugins."io.containerd.grpc.v1.cri"]\n'
                       '  sandbox_image = "registry.k8s.io/pause:3.9"\n'
                       '[plugins."io.containerd.not.v1.there"]\n  a = 1\n')
    assert restart(node).returncode == 0
    log = journal(node)
    assert ('level=warning msg="Ignoring unknown key in TOML" column=1 error="strict mode: '
            'fields in the document are missing in the target struct" '
            'file=/etc/containerd/config.toml key=plugin_dir row=2') in log, log
    assert ('msg="Ignoring unknown key in TOML for plugin" error="strict mode: fields in the '
            'document are missing in the target struct" key=sandbox_image '
            'plugin=io.containerd.grpc.v1.cri') in log, log
    assert "not.v1.there" not in log
    # the v2-style key in a v3 file is not read: containerd 2.1's own default image
    assert snapshot(node)["sandbox_image"] == "registry.k8s.io/pause:3.10"


def test_broken_toml_fails_the_start(lab):
    node = lab.nodes[0]
    write_config(node, "version = 3\n[plugins\n")
    r = restart(node)
    assert r.returncode == 1
    assert "Job for containerd.service failed" in r.stderr
    r = run(node, "systemctl is-active containerd")
    assert r.stdout in ("failed\n", "inactive\n")
    log = journal(node)
    assert ('level=error msg="Failure unmarshaling TOML" column=9 error="toml: expected '
            'character ]" file=/etc/containerd/config.toml row=2') in log, log
    assert ("containerd: failed to unmarshal TOML at row 2 column 9: toml: expected "
            "character ]") in log
    write_config(node, 'version = 3\nroot = 5\n')
    assert restart(node).returncode == 1
    assert ("containerd: failed to unmarshal TOML at row 2 column 8: toml: cannot decode TOML "
            "integer into struct field config.Config.Root of type string") in journal(node)
    write_config(node, 'version = 4\n')
    assert restart(node).returncode == 1
    assert ("containerd: failed to load TOML from /etc/containerd/config.toml: expected "
            "containerd config version equal to or less than `3`, got `4`") in journal(node)


def test_no_2x_on_el7(lab_factory):
    assert not [v for v in mirror.CONTAINERD_LINES["el7"] if v.startswith("2.")]
    the_lab = lab_factory(1, os="el7")
    node = the_lab.nodes[0]
    repo_files(node, the_lab)
    r = run(node, f"yum install -y containerd.io-{V2X[0]} 2>&1", 120)
    assert r.returncode != 0
    assert f"No match for argument: containerd.io-{V2X[0]}" in r.stdout \
        or f"No package containerd.io-{V2X[0]} available." in r.stdout, r.stdout
