"""The containerd step's plans (pure: facts in, actions out)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bootstrap import stock
from bootstrap.inventory import load_text
from bootstrap.plan import FileState, Install, Run, WriteFile
from bootstrap.steps import Target, containerd, prepare_steps

INV = """\
cluster: {kubernetes_version: "1.23.17"}
containerd: {version: 1.6.33}
registries: {docker.io: ['https://m.example'], registry.k8s.io: []}
nodes:
  - {name: master1, address: 192.168.177.100, role: master}
"""


def target(text: str = INV) -> Target:
    inv = load_text(text)
    inv = replace(inv, cluster=replace(inv.cluster, container_runtime="containerd"))
    return Target(inv, inv.nodes[0])


def plan(t: Target, overrides: dict | None = None):
    facts = stock.facts(containerd.STEP.facts(t), "el8")
    facts.update(overrides or {})
    return containerd.STEP.plan(t, facts)


def test_the_runtime_picks_its_step():
    names = [s.name for s in prepare_steps(runtime="containerd")]
    assert "containerd" in names and "docker" not in names
    names = [s.name for s in prepare_steps()]
    assert "docker" in names and "containerd" not in names
    assert containerd.STEP.skip(Target(load_text(INV), load_text(INV).nodes[0]))


def test_a_fresh_node_gets_the_package_pinned_every_file_and_the_service():
    p = plan(target())
    installs = [a for a in p.actions if isinstance(a, Install)]
    assert installs[0].packages == ("containerd.io-1.6.33",)
    files = {a.path: a.content for a in p.actions if isinstance(a, WriteFile)}
    assert sorted(files) == ["/etc/containerd/certs.d/docker.io/hosts.toml",
                             "/etc/containerd/config.toml", "/etc/crictl.yaml",
                             "/etc/yum.repos.d/docker-ce.repo"]
    assert 'sandbox_image = "registry.aliyuncs.com/google_containers/pause:3.6"' in files[
        "/etc/containerd/config.toml"]  # what kubeadm 1.23 expects
    cmds = [a.command for a in p.actions if isinstance(a, Run)]
    assert cmds == ["systemctl enable containerd.service", "systemctl start containerd.service"]


def _converged(t: Target) -> dict:
    done = {f"file:{path}": FileState(content) for path, content in containerd.files(t).items()}
    done[f"file:{containerd.D.REPO}"] = FileState(containerd.D.repo(t))
    done[containerd.RPMS.name] = {"containerd.io": "1.6.33-3.1.el8"}
    done["unit:containerd.service"] = {"exists": True, "enabled": True, "active": True}
    return done


def test_a_converged_node_has_nothing_to_do():
    t = target()
    assert plan(t, _converged(t)).empty


def test_a_changed_config_restarts_a_running_containerd_naming_the_file():
    t = target()
    facts = _converged(t)
    facts["file:/etc/containerd/config.toml"] = FileState('disabled_plugins = ["cri"]\n')
    cmds = [a for a in plan(t, facts).actions if isinstance(a, Run)]
    assert [c.command for c in cmds] == ["systemctl restart containerd.service"]
    assert "/etc/containerd/config.toml changed" in cmds[0].why


def test_another_installed_version_is_reported_not_changed():
    t = target()
    facts = _converged(t)
    facts[containerd.RPMS.name] = {"containerd.io": "1.7.20-3.1.el8"}
    p = plan(t, facts)
    assert p.error and "containerd.io 1.7.20 is installed but the inventory pins 1.6.33" in p.error
    assert not p.actions


def test_kubeadm_configs_name_containerds_socket():
    import yaml

    from bootstrap.cluster.kubeadm_config import init_config, join_config

    t = target()
    init = list(yaml.safe_load_all(init_config(t.inv)))
    assert init[0]["nodeRegistration"]["criSocket"] == (
        "unix:///var/run/containerd/containerd.sock")
    join = yaml.safe_load(join_config(t.inv, t.node, "abcdef.0123456789abcdef", "sha256:x"))
    assert join["nodeRegistration"]["criSocket"] == "unix:///var/run/containerd/containerd.sock"


def test_kubeadm_commands_and_evidence_follow_the_runtime():
    from bootstrap import runtimes
    from bootstrap.cluster import common
    from bootstrap.steps import images

    t = target()
    assert runtimes.cri_flag(t.inv) == " --cri-socket unix:///var/run/containerd/containerd.sock"
    assert runtimes.cri_flag(load_text(INV)) == ""  # docker: kubeadm finds dockershim itself
    wanted = next(f for f in images.STEP.facts(t) if f.name == "images:wanted")
    assert wanted.command.endswith("--cri-socket unix:///var/run/containerd/containerd.sock")
    present = next(f for f in images.STEP.facts(t) if f.name == "images:present")
    assert present.command.startswith("crictl images")
    evidence = common.evidence_script(kubectl=False, runtime="containerd")
    assert "crictl ps -a" in evidence and "journalctl -u containerd" in evidence
    undo = common.undo_script("kubeadm join", ("/x",), "", runtimes.cri_flag(t.inv))
    assert "kubeadm reset -f --cri-socket unix:///var/run/containerd/containerd.sock" in undo


def test_crictl_images_lines_become_repository_tag(tmp_path):
    import os
    import subprocess

    from bootstrap import runtimes

    crictl = tmp_path / "crictl"
    crictl.write_text("#!/bin/sh\nprintf 'IMAGE TAG IMAGE ID SIZE\\n"
                      "registry.k8s.io/pause 3.9 e6f1816883972 322kB\\n'\n")
    crictl.chmod(0o755)
    got = subprocess.run(["sh", "-c", runtimes.RUNTIMES["containerd"].images],
                         capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert got.stdout.split() == ["registry.k8s.io/pause:3.9"]


def test_preflight_asks_the_mirror_and_dnf_about_containerds_package():
    from bootstrap import checks

    t = target()
    cmd = checks.packages_command(t.inv, mirror_node=True)
    assert cmd.startswith("if rpm -q kubeadm-1.23.17 kubelet-1.23.17 kubectl-1.23.17 "
                          "containerd.io-1.6.33 >/dev/null")
    assert "list --showduplicates containerd.io kubeadm kubelet kubectl" in cmd
    assert "docker-ce" not in cmd.split("printf", 1)[0] + cmd.split("check.repo", 1)[1]
    listing = "containerd.io.x86_64 1.6.33-3.1.el8 c\nkubeadm.x86_64 1.23.17-0 k\n"
    found = checks._mirror(t.inv, "master1", 0, listing)
    assert [f.message.split(" is not")[0] for f in found] == ["kubelet 1.23.17", "kubectl 1.23.17"]


@pytest.mark.parametrize(("listing", "error"), [
    ("containerd.io.x86_64 1.7.27-3.1.el9 d\ncontainerd.io.x86_64 2.1.5-1.el9 d\n", False),
    ("containerd.io.x86_64 1.7.25-3.1.el9 d\ncontainerd.io.x86_64 1.7.27-3.1.el9 d\n", True),
    ("", True),  # no containerd.io at all
])
def test_an_unpinned_containerd_for_1_36_needs_a_2x_on_the_mirror(listing, error):
    from bootstrap import checks
    from bootstrap.inventory import load_text

    inv = load_text("cluster: {kubernetes_version: '1.36.0'}\n"
                    "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n")
    k8s = "".join(f"{p}.x86_64 1.36.0-150500.1.1 k\n" for p in ("kubeadm", "kubelet", "kubectl"))
    found = checks._mirror(inv, "master1", 0, listing + k8s)
    assert [f.check for f in found] == (["ContainerdVersion"] if error else [])
    if error:
        assert "Kubernetes 1.36.0 wants containerd 2.x" in found[0].message
