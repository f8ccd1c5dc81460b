"""Inventory rendering and validation: every rejection is asserted by its message and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.errors import InventoryError
from bootstrap.inventory import load, load_text

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
cluster:
  name: k8s
ssh:
  user: root
nodes:
  - {name: master1, address: 192.168.177.100, role: master}
  - {name: node1, address: 192.168.177.101, role: worker}
"""


def test_example_inventory_loads_with_seed_defaults():
    inv = load(ROOT / "inventory.example.yaml", environ={})
    assert [n.name for n in inv.nodes] == ["master1", "node1", "node2"]
    assert [n.address for n in inv.nodes] == [
        "192.168.177.100",
        "192.168.177.101",
        "192.168.177.102",
    ]
    assert inv.cluster.kubernetes_version == "1.20.10"
    assert inv.cluster.image_repository == "registry.aliyuncs.com/google_containers"
    assert inv.cluster.pod_network_cidr == "10.244.0.0/16"
    assert inv.docker.version == "19.03.15"
    assert inv.repos.kubernetes.baseurl.startswith("https://mirrors.aliyun.com/kubernetes/")
    assert inv.init_node.name == "master1" and inv.control_plane_endpoint == "192.168.177.100:6443"


def test_environment_variables_and_loops():
    text = """\
ssh: {user: "{{ env.SSH_USER }}"}
nodes:
{% for i in range(3) %}
  - {name: n{{ i }}, address: 10.1.0.{{ i + 1 }}, role: {{ 'master' if i == 0 else 'worker' }}}
{% endfor %}
"""
    inv = load_text(text, environ={"SSH_USER": "deploy"})
    assert inv.ssh.user == "deploy"
    assert [n.address for n in inv.nodes] == ["10.1.0.1", "10.1.0.2", "10.1.0.3"]


def test_defaults_when_sections_are_missing():
    inv = load_text(GOOD)
    assert inv.ssh.host_key_policy == "strict" and inv.ssh.parallel == 20
    assert inv.node_prep.selinux == "disabled" and inv.network.flannel_version == "v0.14.0"
    assert inv.nodes[1].internal_address == "192.168.177.101"


def _replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


NODE1 = "  - {name: node1, address: 192.168.177.101, role: worker}"

# (id, inventory text, expected line, expected message fragment)
REJECTIONS = [
    (
        "duplicate-name",
        GOOD + "  - {name: node1, address: 192.168.177.102, role: worker}\n",
        8,
        "nodes[2].name: 'node1' is already used by node 'node1'",
    ),
    (
        "duplicate-address",
        GOOD + "  - {name: node2, address: 192.168.177.101, role: worker}\n",
        8,
        "nodes[2].address: '192.168.177.101' is already used by node 'node1'",
    ),
    (
        "no-master",
        _replace("role: master", "role: worker"),
        5,
        "no node has role control-plane (or master): the first one listed runs kubeadm init",
    ),
    (
        "two-masters",
        _replace(
            "node1, address: 192.168.177.101, role: worker",
            "node1, address: 192.168.177.101, role: master",
        ),
        5,
        "2 control-plane nodes (master1, node1): etcd needs a majority of its members up "
        "(quorum), so 2 survive no more failures than 1: use 1, 3, 5 or 7",
    ),
    (
        "unknown-role",
        _replace("role: worker", "role: wroker"),
        7,
        "nodes[1].role: 'wroker' must be one of control-plane, master, worker (did you mean "
        "'worker'?)",
    ),
    (
        "unknown-key",
        _replace("  user: root", "  usr: root"),
        4,
        "ssh.usr: unknown key (did you mean 'user'?)",
    ),
    (
        "unknown-top-key",
        GOOD + "netwrok: {}\n",
        8,
        "netwrok: unknown key (did you mean 'network'?)",
    ),
    (
        "unknown-node-key",
        _replace("role: worker}", "role: worker, adress: 1.2.3.4}"),
        7,
        "nodes[1].adress: unknown key (did you mean 'address'?)",
    ),
    (
        "uppercase-name",
        _replace("name: node1", "name: Node1"),
        7,
        "nodes[1].name: 'Node1' is not a valid lowercase RFC 1123 hostname",
    ),
    (
        "shell-in-name",
        _replace("name: node1", "name: 'node1;rm -rf /'"),
        7,
        "nodes[1].name: 'node1;rm -rf /' is not a valid lowercase RFC 1123 hostname",
    ),
    (
        "bad-address",
        _replace("192.168.177.101", "999.1.1.1"),
        7,
        "nodes[1].address: '999.1.1.1' is not a valid IPv4 address",
    ),
    (
        "bad-internal-address",
        _replace("role: worker}", "role: worker, internal_address: 10.0.0}"),
        7,
        "nodes[1].internal_address: '10.0.0' is not a valid IPv4 address",
    ),
    (
        "bad-port",
        _replace("  user: root", "  user: root\n  port: 70000"),
        5,
        "ssh.port: 70000 must be a whole number from 1 to 65535",
    ),
    (
        "bad-cidr",
        GOOD.replace("  name: k8s", "  name: k8s\n  pod_network_cidr: 10.244.0.0/33"),
        3,
        "cluster.pod_network_cidr: '10.244.0.0/33' is not a valid IPv4 CIDR",
    ),
    (
        "cidr-host-bits",
        GOOD.replace("  name: k8s", "  name: k8s\n  service_cidr: 10.96.0.1/12"),
        3,
        "cluster.service_cidr: '10.96.0.1/12' is not a valid IPv4 CIDR",
    ),
    (
        "bad-version",
        GOOD.replace("  name: k8s", "  name: k8s\n  kubernetes_version: 1.20"),
        3,
        "cluster.kubernetes_version: '1.20' is not a Kubernetes version like 1.20.10 (YAML reads",
    ),
    (
        "unsupported-version",
        GOOD.replace("  name: k8s", "  name: k8s\n  kubernetes_version: 1.38.0"),
        3,
        "cluster.kubernetes_version: '1.38.0' is not supported: it is newer than the releases "
        "this toolkit knows (KubernetesRelease: it installs Kubernetes 1.15 to 1.37",
    ),
    (
        "docker-with-1.28",
        GOOD.replace("  name: k8s", "  name: k8s\n  kubernetes_version: 1.28.2\n"
                     "  container_runtime: docker"),
        4,
        "cluster.container_runtime: 'docker' cannot run Kubernetes 1.28.2: kubeadm's "
        "dockershim was removed in 1.24",
    ),
    (
        "bad-docker-version",
        GOOD + "docker: {version: latest}\n",
        8,
        "docker.version: 'latest' is not a package version",
    ),
    (
        "cidrs-overlap",
        GOOD.replace(
            "  name: k8s",
            "  name: k8s\n  pod_network_cidr: 10.0.0.0/8\n  service_cidr: 10.96.0.0/12",
        ),
        4,
        "cluster.service_cidr: '10.96.0.0/12' overlaps pod_network_cidr '10.0.0.0/8'",
    ),
    (
        "cidr-overlaps-node",
        GOOD.replace("  name: k8s", "  name: k8s\n  pod_network_cidr: 192.168.0.0/16"),
        7,
        "nodes[0].address: '192.168.177.100' lies inside cluster.pod_network_cidr",
    ),
    (
        "bad-proxy-mode",
        GOOD.replace("  name: k8s", "  name: k8s\n  proxy_mode: ipvsadm"),
        3,
        "cluster.proxy_mode: 'ipvsadm' must be one of ipvs, iptables, nftables "
        "(did you mean 'ipvs'?)",
    ),
    (
        "bad-policy",
        _replace("  user: root", "  user: root\n  host_key_policy: yes"),
        5,
        "ssh.host_key_policy: True must be one of strict, accept-new",
    ),
    (
        "password-not-name",
        _replace("  user: root", "  user: root\n  sudo_password_env: 'hunter2!'"),
        5,
        "ssh.sudo_password_env: 'hunter2!' is not an environment variable name",
    ),
    (
        "gpgcheck-without-key",
        GOOD + "repos:\n  base: {baseurl: 'http://vault.example/7/', gpgcheck: true}\n",
        9,
        "repos.base.gpgkey: gpgcheck is true but no gpgkey URL is given",
    ),
    (
        "bad-repo-url",
        GOOD + "repos:\n  docker_ce: {baseurl: 'mirror.local/docker'}\n",
        9,
        "repos.docker_ce.baseurl: 'mirror.local/docker' is not an http(s):// or file:// URL",
    ),
    ("no-nodes", "cluster: {name: k8s}\n", 1, "nodes: no nodes: list at least one master"),
    ("duplicate-yaml-key", GOOD + "ssh: {port: 2200}\n", 8, "ssh: duplicate key"),
    ("yaml-syntax", GOOD + "  - {name: node2, address: [\n", 8, "YAML:"),
    ("jinja-syntax", GOOD + "{% for x in %}\n", 8, "template syntax:"),
    (
        "missing-env",
        GOOD.replace("user: root", "user: {{ env.DEPLOY_USER }}"),
        4,
        "environment variable DEPLOY_USER is not set",
    ),
    (
        "dns-address-without-internal",
        _replace("192.168.177.101", "node1.example.com"),
        7,
        "set internal_address to the node's IPv4 address",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "fragment"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejections_name_file_line_and_field(text: str, line: int, fragment: str):
    with pytest.raises(InventoryError) as err:
        load_text(text, environ={})
    messages = err.value.problems
    hits = [m for m in messages if fragment in m]
    assert hits, f"{fragment!r} not in {messages}"
    assert hits[0].startswith(f"inventory.yaml:{line}: "), hits[0]
    assert err.value.exit_code == 2


def test_loop_generated_node_errors_point_at_the_loop_line():
    text = (
        GOOD
        + "{% for i in range(2) %}\n"
        + "  - {name: w{{ i }}, address: 300.0.0.{{ i }}, role: worker}\n"
        + "{% endfor %}\n"
    )
    with pytest.raises(InventoryError) as err:
        load_text(text)
    bad = [m for m in err.value.problems if "300.0.0" in m]
    assert len(bad) == 2 and all(m.startswith("inventory.yaml:9: nodes[") for m in bad), bad


def test_yaml_error_after_a_loop_points_at_the_source_line():
    text = (
        GOOD
        + "{% for i in range(5) %}\n"
        + "  - {name: w{{ i }}, address: 10.9.0.{{ i + 1 }}, role: worker}\n"
        + "{% endfor %}\nbad: [\n"
    )
    with pytest.raises(InventoryError) as err:
        load_text(text)
    assert err.value.problems[0].startswith("inventory.yaml:11: YAML:") or err.value.problems[
        0
    ].startswith("inventory.yaml:12: YAML:"), err.value.problems


def test_cli_exits_2_with_one_screen_and_no_traceback(tmp_path: Path):
    bad = tmp_path / "inv.yaml"
    bad.write_text(_replace("192.168.177.101", "999.1.1.1"))
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "render", "-i", str(bad), "-o", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"{bad}:7: nodes[1].address: '999.1.1.1' is not a valid IPv4 address" in proc.stderr
    assert len(proc.stderr.splitlines()) < 25
    assert not (tmp_path / "out").exists()


# -- one place for each setting (issue: containerd and the per-minor repos) --------------------
NODES = "nodes:\n  - {name: master1, address: 192.168.177.100, role: master}\n"


def test_new_keys_and_their_defaults():
    inv = load_text(NODES)
    assert inv.cluster.cgroup_driver == "systemd" and inv.cluster.container_runtime is None
    assert inv.cluster.runtime == "docker"  # 1.20: docker, the release's default
    assert inv.containerd.version is None
    assert inv.registries.as_dict() == {"docker.io": ["https://registry.aliyuncs.com"]}
    assert inv.notes == ()
    inv = load_text("cluster: {cgroup_driver: cgroupfs}\ncontainerd: {version: 1.4.3}\n"
                    "registries: {docker.io: ['https://a.example'], "
                    "registry.k8s.io: ['https://k.example', 'https://k2.example']}\n" + NODES)
    assert inv.cluster.cgroup_driver == "cgroupfs" and inv.containerd.version == "1.4.3"
    assert inv.registries.get("registry.k8s.io") == ("https://k.example", "https://k2.example")
    assert load_text("registries: {}\n" + NODES).registries.as_dict() == {}


@pytest.mark.parametrize(("old", "new", "check"), [
    ("docker: {cgroup_driver: cgroupfs}", "cluster.cgroup_driver",
     lambda inv: inv.cluster.cgroup_driver == "cgroupfs"),
    ("docker: {containerd_version: 1.4.11}", "containerd.version",
     lambda inv: inv.containerd.version == "1.4.11"),
    ("docker: {registry_mirrors: ['https://m.example']}", "registries['docker.io']",
     lambda inv: inv.registries.get("docker.io") == ("https://m.example",)),
])
def test_moved_keys_keep_working_with_a_note_naming_the_new_key(old, new, check):
    inv = load_text(old + "\n" + NODES)
    assert check(inv)
    assert len(inv.notes) == 1 and f"is now {new}" in inv.notes[0]


def test_an_old_key_and_its_new_one_set_differently_is_an_error():
    with pytest.raises(InventoryError) as exc:
        load_text("cluster: {cgroup_driver: systemd}\ndocker: {cgroup_driver: cgroupfs}\n" + NODES)
    assert "docker.cgroup_driver" in str(exc.value)
    assert "moved to cluster.cgroup_driver, which is also set" in str(exc.value)


def test_the_runtime_and_the_kubernetes_repo_follow_the_release():
    old = load_text(NODES)
    assert old.cluster.runtime == "docker"
    assert "kubernetes-el7-x86_64" in old.repos.kubernetes.baseurl
    new = load_text("cluster: {kubernetes_version: '1.28.2'}\n" + NODES)
    assert new.cluster.runtime == "containerd"
    assert new.repos.kubernetes.baseurl == (
        "https://mirrors.aliyun.com/kubernetes-new/core/stable/v{minor}/rpm/")
    assert new.repos.kubernetes.gpgkey == (
        "https://mirrors.aliyun.com/kubernetes-new/core/stable/v{minor}/rpm/repodata/"
        "repomd.xml.key",)
    assert load_text("cluster: {container_runtime: containerd}\n" + NODES).cluster.runtime == (
        "containerd")  # containerd also runs 1.20-1.23


@pytest.mark.parametrize(("text", "says"), [
    ("cluster: {kubernetes_version: '1.24.0', container_runtime: docker}", "dockershim"),
    ("cluster: {container_runtime: cri-o}", "cluster.container_runtime"),
    ("registries: [docker.io]", "must map registry hosts"),
    ("registries: {'not a host': ['https://m.example']}", "is not a registry host"),
    ("registries: {docker.io: [ftp://m.example]}", "registries['docker.io']"),
])
def test_bad_runtime_and_registries_are_named_errors(text, says):
    with pytest.raises(InventoryError) as exc:
        load_text(text + "\n" + NODES)
    assert says in str(exc.value)


# -- the example says what the release chooses (issue 22, part 7) ------------------------------
EXAMPLE = (ROOT / "inventory.example.yaml").read_text()
LEGACY_BLOCK, PER_MINOR_BLOCK = "# Below 1.24,", "# From 1.24,"


def _example(version: str, block: str | None = None) -> str:
    """The example as a new user copies it: only kubernetes_version changed; with ``block``,
    that one of its commented-out repos.kubernetes values written out (uncommented)."""
    text = EXAMPLE.replace('kubernetes_version: "1.20.10"', f'kubernetes_version: "{version}"')
    assert version == "1.20.10" or text != EXAMPLE
    if block is None:
        return text
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if block in line) + 1
    end = start
    while lines[end].startswith("  #  "):
        lines[end] = lines[end].replace("  # ", "  ", 1)
        end += 1
    return "\n".join([*lines[:start], "  kubernetes:", *lines[start:end], *lines[end:]])


@pytest.mark.parametrize(("version", "layout", "flannel", "runtime"), [
    ("1.20.10", "legacy", "v0.14.0", "docker"),
    ("1.23.17", "legacy", "v0.14.0", "docker"),
    ("1.24.0", "per-minor", "v0.26.4", "containerd"),
    ("1.30.2", "per-minor", "v0.26.4", "containerd"),  # the trap: it got the legacy repo
    ("1.37.0", "per-minor", "v0.28.9", "containerd"),
])
def test_the_example_with_only_the_version_changed_takes_the_release_defaults(
        version, layout, flannel, runtime):
    from bootstrap import releases
    from bootstrap.models import KUBERNETES_REPOS

    inv = load_text(_example(version), environ={})
    assert inv.notes == ()
    assert inv.repos.kubernetes == KUBERNETES_REPOS[layout]
    assert releases.cannot_serve(releases.kubernetes_repo(inv).baseurl, version) is None
    assert (inv.network.flannel_version, inv.cluster.runtime) == (flannel, runtime)


@pytest.mark.parametrize(("block", "version", "warned"), [
    # the example's commented values, written out, equal the release's own
    (LEGACY_BLOCK, "1.20.10", False),
    (PER_MINOR_BLOCK, "1.30.2", False),
    # ... and at a release their layout cannot serve, the loader says so
    (LEGACY_BLOCK, "1.30.2", True),
    (PER_MINOR_BLOCK, "1.20.10", True),
])
def test_the_example_s_commented_kubernetes_repos(block, version, warned):
    from bootstrap.models import KUBERNETES_REPOS

    inv = load_text(_example(version, block), environ={})
    layout = "legacy" if block == LEGACY_BLOCK else "per-minor"
    assert inv.repos.kubernetes == KUBERNETES_REPOS[layout]
    assert bool(inv.notes) == warned
    if warned:
        (note,) = inv.notes
        assert note.startswith(f"repos.kubernetes.baseurl '{inv.repos.kubernetes.baseurl}' "
                               f"cannot serve Kubernetes {version}: ")
        assert "Drop repos.kubernetes so the release table chooses" in note


def test_the_example_s_flannel_comment_names_every_release_default():
    from bootstrap import releases

    line = next(ln for ln in EXAMPLE.splitlines() if "# flannel_version:" in ln)
    assert all(row.flannel in line for row in releases.MINORS.values())
    uncommented = EXAMPLE.replace("  # flannel_version:", "  flannel_version:")
    assert load_text(uncommented, environ={}).network == load(
        ROOT / "inventory.example.yaml", environ={}).network


def test_the_example_s_runtime_comment_is_current():
    assert "only docker so far" not in EXAMPLE
    line = next(ln for ln in EXAMPLE.splitlines() if "container_runtime:" in ln)
    assert "docker (below 1.24)" in line and "containerd (any)" in line


@pytest.mark.parametrize(("baseurl", "version", "says"), [
    ("https://mirrors.aliyun.com/kubernetes/yum/repos/kubernetes-el7-x86_64/", "1.30.2",
     "has releases up to 1.28 only"),
    ("https://pkgs.k8s.io/core:/stable:/v{minor}/rpm/", "1.23.17", "starts at 1.24"),
    ("https://pkgs.k8s.io/core:/stable:/v1.28/rpm/", "1.30.2", "is pinned to v1.28"),
    ("https://packages.cloud.google.com/yum/repos/kubernetes-el7-x86_64", "1.20.10",
     "removed on 2024-03-04"),
    ("https://mirrors.aliyun.com/kubernetes/yum/repos/kubernetes-el7-x86_64/", "1.28.2", None),
    ("https://pkgs.k8s.io/core:/stable:/v{minor}/rpm/", "1.30.2", None),
    ("https://pkgs.k8s.io/core:/stable:/v1.30/rpm/", "1.30.2", None),
    ("http://mirror.internal/kubernetes/", "1.30.2", None),  # a user's own: not judged
    ("http://mirror.internal/kubernetes/", "1.20.10", None),
])
def test_an_explicit_kubernetes_repo_its_layout_cannot_serve_is_a_warning(baseurl, version,
                                                                          says):
    inv = load_text(f"cluster: {{kubernetes_version: '{version}'}}\n"
                    f"repos: {{kubernetes: {{baseurl: '{baseurl}', gpgcheck: false}}}}\n" + NODES)
    if says is None:
        assert inv.notes == ()
        return
    (note,) = inv.notes
    assert note.startswith(f"repos.kubernetes.baseurl '{baseurl}' cannot serve Kubernetes "
                           f"{version}: ")
    assert says in note
    per_minor = tuple(int(n) for n in version.split(".")[:2]) >= (1, 24)
    fix = "v{minor} in its path" if per_minor else "a copy of the kubernetes-el7 repo"
    assert "Drop repos.kubernetes so the release table chooses the repo (" in note and fix in note
