"""Pure plan tests: facts in, actions out, for every prepare-nodes step (no hosts)."""

from __future__ import annotations

import base64
import subprocess
from dataclasses import replace

import pytest

from bootstrap import facts as F
from bootstrap import platforms, stock
from bootstrap.inventory import load_text
from bootstrap.plan import FileState, Install, Plan, Run, WriteFile, managed_block
from bootstrap.steps import Target, prepare_steps

INV = """\
nodes:
  - {name: master1, address: 192.168.177.100, role: master}
  - {name: node1, address: 192.168.177.101, role: worker}
"""
EL7_BASE = "/etc/yum.repos.d/CentOS-Base.repo"  # the file repos.base rewrites on CentOS 7
STEPS = {s.name: s for s in prepare_steps()}


def target(extra: str = "", node: int = 0) -> Target:
    inv = load_text(extra + INV)
    return Target(inv, inv.nodes[node])


def plan_for(step: str, overrides: dict | None = None, extra: str = "", node: int = 0,
             flavour: str = "el7") -> Plan:
    t = target(extra, node)
    s = STEPS[step]
    facts = stock.facts(s.facts(t), flavour)
    facts.update(overrides or {})
    return s.plan(t, facts)


def commands(p: Plan) -> list[str]:
    return [a.command for a in p.actions if isinstance(a, (Run, Install))]


def written(p: Plan) -> dict[str, str]:
    return {a.path: a.content for a in p.actions if isinstance(a, WriteFile)}


def test_step_order_follows_the_seed():
    assert list(STEPS) == [
        "hostname",
        "hosts",
        "base-repo",
        "time",
        "firewall",
        "selinux",
        "swap",
        "bridge-netfilter",
        "ipvs",
        "docker",
        "kubernetes-packages",
        "kubelet",
    ]


# (step, fact overrides, inventory prefix, expected commands)
CASES = [
    ("hostname", {}, "", ["hostnamectl set-hostname master1"]),
    ("hostname", {"hostname": "master1", "file:/etc/hostname": FileState("master1\n")}, "", []),
    ("time", {}, "", []),
    (
        "time",
        {
            "rpms:chrony": {},
            "unit:chronyd.service": {"exists": False, "enabled": False, "active": False},
        },
        "",
        [
            "yum install -y chrony",
            "systemctl enable chronyd.service",
            "systemctl start chronyd.service",
        ],
    ),
    (
        "time",
        {},
        "node_prep: {ntp_servers: [ntp.example.com]}\n",
        ["systemctl restart chronyd.service"],
    ),
    ("firewall", {}, "", ["systemctl disable --now firewalld.service"]),
    (
        "firewall",
        {"unit:firewalld.service": {"exists": True, "enabled": False, "active": False}},
        "",
        [],
    ),
    ("selinux", {}, "", ["setenforce 0"]),
    ("selinux", {"selinux": "Permissive"}, "", []),
    ("swap", {}, "", ["swapoff -a"]),
    ("swap", {"swaps": []}, "", []),
    ("bridge-netfilter", {}, "", ["modprobe br_netfilter", "modprobe overlay", "sysctl --system"]),
    (
        "ipvs",
        {},
        "",
        [
            "yum install -y ipset ipvsadm",
            "modprobe -- ip_vs",
            "modprobe -- ip_vs_rr",
            "modprobe -- ip_vs_wrr",
            "modprobe -- ip_vs_sh",
            "modprobe -- nf_conntrack_ipv4",
        ],
    ),
    (
        "docker",
        {},
        "",
        [
            "yum install -y --setopt=obsoletes=0 docker-ce-19.03.15 docker-ce-cli-19.03.15 "
            "containerd.io",
            "systemctl enable docker.service",
            "systemctl start docker.service",
        ],
    ),
    (
        "kubernetes-packages",
        {},
        "",
        [
            "yum install -y conntrack-tools socat",
            "yum install -y --setopt=obsoletes=0 --disableexcludes=kubernetes kubelet-1.20.10 "
            "kubeadm-1.20.10 kubectl-1.20.10",
        ],
    ),
    ("kubelet", {}, "", ["systemctl enable kubelet.service"]),
]


@pytest.mark.parametrize(("step", "overrides", "extra", "expected"), CASES)
def test_commands_from_facts(step, overrides, extra, expected):
    assert commands(plan_for(step, overrides, extra)) == expected


def test_hosts_block_keeps_other_lines_and_is_replaced_in_place():
    before = (
        "127.0.0.1 localhost\n# BEGIN k8s-bootstrap managed block\n1.1.1.1 old\n"
        "# END k8s-bootstrap managed block\n10.0.0.9 printer\n"
    )
    p = plan_for("hosts", {"file:/etc/hosts": FileState(before)})
    assert written(p)["/etc/hosts"] == (
        "127.0.0.1 localhost\n# BEGIN k8s-bootstrap managed block\n192.168.177.100 master1\n"
        "192.168.177.101 node1\n# END k8s-bootstrap managed block\n10.0.0.9 printer\n"
    )
    again = plan_for("hosts", {"file:/etc/hosts": FileState(written(p)["/etc/hosts"])})
    assert again.empty


def test_managed_block_appends_after_a_missing_final_newline():
    assert managed_block("a", "x\n", "m") == "a\n# BEGIN m\nx\n# END m\n"


def test_fstab_swap_lines_are_commented_and_others_kept():
    p = plan_for("swap")
    fstab = written(p)["/etc/fstab"]
    assert "#/dev/mapper/centos-swap swap" in fstab
    assert "\n/dev/mapper/centos-root /" in fstab
    assert plan_for("swap", {"swaps": [], "file:/etc/fstab": FileState(fstab)}).empty


def test_selinux_permissive_config_and_reboot_note():
    p = plan_for("selinux", extra="node_prep: {selinux: permissive}\n")
    assert "SELINUX=permissive\n" in written(p)["/etc/selinux/config"]
    assert not p.notes
    assert plan_for("selinux").notes == [
        "SELinux is permissive now; disabled takes effect at the next reboot"
    ]


def test_daemon_json_keeps_user_keys_and_replaces_the_driver():
    before = FileState(
        '{"log-driver": "json-file", "exec-opts": ["native.cgroupdriver=cgroupfs", "foo=bar"]}'
    )
    p = plan_for("docker", {"file:/etc/docker/daemon.json": before})
    import json

    data = json.loads(written(p)["/etc/docker/daemon.json"])
    assert data == {
        "log-driver": "json-file",
        "exec-opts": ["native.cgroupdriver=systemd", "foo=bar"],
        "registry-mirrors": ["https://registry.aliyuncs.com"],
    }


def test_docker_restart_only_when_daemon_json_changed_and_warns_about_containers():
    running = {
        "unit:docker.service": {"exists": True, "enabled": True, "active": True},
        "rpms:containerd.io,docker-ce,docker-ce-cli": {
            "docker-ce": "19.03.15-3.el7",
            "docker-ce-cli": "19.03.15-3.el7",
            "containerd.io": "1.4.9-3.1.el7",
        },
        "docker:info": ("cgroupfs", 7),
    }
    p = plan_for("docker", running)
    assert commands(p) == ["systemctl restart docker.service"]
    assert "bounces its 7 running containers" in p.notes[0]
    settled = dict(
        running,
        **{
            "docker:info": ("systemd", 7),
            "file:/etc/docker/daemon.json": FileState(written(p)["/etc/docker/daemon.json"]),
            "file:/etc/yum.repos.d/docker-ce.repo": FileState(
                written(p)["/etc/yum.repos.d/docker-ce.repo"]
            ),
        },
    )
    assert plan_for("docker", settled).empty


def test_docker_invalid_json_is_an_error_not_an_overwrite():
    p = plan_for("docker", {"file:/etc/docker/daemon.json": FileState("{oops")})
    assert p.error and "/etc/docker/daemon.json is not valid JSON" in p.error
    assert not written(p).get("/etc/docker/daemon.json")


def test_other_installed_kubernetes_version_is_reported_not_changed():
    p = plan_for(
        "kubernetes-packages",
        {
            "rpms:cri-tools,kubeadm,kubectl,kubelet,kubernetes-cni": {
                "kubeadm": "1.21.0-0",
                "kubelet": "1.20.10-0",
                "kubectl": "1.20.10-0",
            }
        },
    )
    assert (
        p.error and "kubeadm 1.21.0 installed but cluster.kubernetes_version is 1.20.10" in p.error
    )
    assert not commands(p)


def test_kubernetes_repo_excludes_kube_packages():
    repo = written(plan_for("kubernetes-packages"))["/etc/yum.repos.d/kubernetes.repo"]
    assert "exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n" in repo
    assert "repo_gpgcheck=1\n" in repo and "[kubernetes]\n" in repo


SYSCONFIG_IPVS = "/etc/sysconfig/modules/ipvs.modules"
MODULES_LOAD_IPVS = "/etc/modules-load.d/ipvs.conf"


@pytest.mark.parametrize(("flavour", "overrides", "conntrack", "files"), [
    ("el7", {}, "nf_conntrack_ipv4", [SYSCONFIG_IPVS, MODULES_LOAD_IPVS]),
    ("el8", {}, "nf_conntrack", [SYSCONFIG_IPVS, MODULES_LOAD_IPVS]),
    # initscripts runs /etc/sysconfig/modules at boot: without it, only modules-load.d
    ("el8", {"rpms:" + ",".join(sorted(platforms.MATTER)): {}}, "nf_conntrack",
     [MODULES_LOAD_IPVS]),
    ("el9", {}, "nf_conntrack", [MODULES_LOAD_IPVS]),
])
def test_ipvs_modules_and_boot_files_follow_the_release(flavour, overrides, conntrack, files):
    p = plan_for("ipvs", overrides, flavour=flavour)
    assert [c for c in commands(p) if "conntrack" in c] == [f"modprobe -- {conntrack}"]
    assert sorted(written(p)) == sorted(files)
    for content in written(p).values():
        assert conntrack in content.split()
        assert "nf_conntrack_ipv4" not in content or flavour == "el7"
    assert STEPS["ipvs"].skip(target("cluster: {proxy_mode: iptables}\n"))


def test_firewall_keep_opens_role_ports_permanently_and_now():
    p = plan_for(
        "firewall",
        {"firewall:permanent": "6443/tcp", "firewall:runtime": ""},
        "node_prep: {firewall: keep}\n",
        node=1,
    )
    cmds = commands(p)
    assert "firewall-cmd --permanent --add-port=10250/tcp" in cmds
    assert "firewall-cmd --add-port=10250/tcp" in cmds
    assert not any("6443" in c for c in cmds)  # a worker does not serve the API


def test_sysconfig_kubelet_says_kube_proxy_mode_has_no_effect():
    content = written(plan_for("kubelet"))["/etc/sysconfig/kubelet"]
    assert 'KUBE_PROXY_MODE="ipvs"' in content and "have no effect" in content
    assert "KUBELET_EXTRA_ARGS=--node-ip=192.168.177.100\n" in content


def test_unchanged_file_is_not_written_but_mode_change_is():
    p = Plan()
    assert not p.write("/x", "a\n", FileState("a\n", 0o644))
    assert p.write("/x", "a\n", FileState("a\n", 0o600))
    assert "mode 0600 -> 0644" in p.actions[0].diff()


def test_dry_run_render_is_a_unified_diff():
    p = plan_for("swap")
    text = p.render()
    assert "--- /etc/fstab\n+++ /etc/fstab\n" in text
    assert "-/dev/mapper/centos-swap" in text and "+#/dev/mapper/centos-swap" in text
    assert "$ swapoff -a" in text


def test_secret_file_content_never_rendered():
    p = Plan()
    p.write("/etc/kubernetes/join.yaml", "token: abcdef.0123456789abcdef\n", None, secret=True)
    assert "abcdef.0123456789abcdef" not in p.render()


def test_secret_file_travels_on_stdin_not_in_the_script(tmp_path):
    secret = "token: abcdef.0123456789abcdef\n"
    plain = tmp_path / "plain.yaml"
    hidden = tmp_path / "join.yaml"
    p = Plan()
    p.write(str(plain), "visible\n", None, owner="root", group="root")
    p.write(str(hidden), secret, None, mode=0o600, owner="root", group="root", secret=True)
    script = p.script()
    assert "0123456789abcdef" not in script
    assert base64.b64encode(secret.encode()).decode() not in script
    assert p.stdin() == base64.b64encode(secret.encode()).decode() + "\n"
    subprocess.run(["sh", "-c", script], input=p.stdin(), text=True, check=True)
    assert hidden.read_text() == secret and plain.read_text() == "visible\n"
    assert oct(hidden.stat().st_mode & 0o777) == "0o600"
    assert Plan().stdin() is None


def test_write_script_is_atomic_with_backup(tmp_path):
    target_file = tmp_path / "etc" / "conf"
    target_file.parent.mkdir()
    target_file.write_text("original\n")
    p = Plan()
    p.write(str(target_file), "new\n", FileState("original\n"), owner="root", group="root")
    subprocess.run(["sh", "-c", p.script()], check=True)
    assert target_file.read_text() == "new\n"
    backup = target_file.with_name("conf.k8s-bootstrap.bak")
    assert backup.read_text() == "original\n"
    p2 = Plan()
    p2.write(str(target_file), "newer\n", FileState("new\n"))
    subprocess.run(["sh", "-c", p2.script()], check=True)
    assert backup.read_text() == "original\n"  # the first original is kept
    assert sorted(x.name for x in target_file.parent.iterdir()) == [
        "conf",
        "conf.k8s-bootstrap.bak",
    ]


def test_facts_script_round_trip_locally(tmp_path):
    f = tmp_path / "file"
    f.write_text("héllo\nworld")
    facts = [
        F.file(str(f)),
        F.file(str(tmp_path / "missing")),
        F.command("echo", "printf 'a\\nb\\n'"),
        F.command("fails", "exit 3"),
    ]
    script, nonce = F.script(facts)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout
    values = F.parse_output(facts, out, nonce)
    assert values[f"file:{f}"].content == "héllo\nworld"
    assert values[f"file:{tmp_path / 'missing'}"] is None
    assert values["echo"] == "a\nb" and values["fails"] is None


def test_every_step_converges_on_its_own_output():
    """Applying a plan's files to the facts leaves nothing more to write (stock node)."""
    for name, step in STEPS.items():
        t = target("repos: {base: {baseurl: 'http://vault.example/7/os/', gpgcheck: false}}\n")
        facts = stock.facts(step.facts(t))
        p = step.plan(t, facts)
        for w in p.files():
            facts[f"file:{w.path}"] = FileState(w.content, w.mode, w.owner, w.group)
        assert not step.plan(t, facts).files(), name


def test_target_is_immutable():
    t = target()
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass
        t.node.name = "x"  # type: ignore[misc]
    assert replace(t.node, name="y").name == "y"


def test_images_step_pulls_with_kubeadm_and_pins_coredns_only_where_needed():
    from bootstrap.steps import images

    t = target()
    p = images.plan(t, {"images:wanted": None, "images:present": set()})
    assert commands(p) == ["kubeadm config images pull --kubernetes-version v1.20.10 "
                           "--image-repository registry.aliyuncs.com/google_containers"]
    assert images.coredns_workaround(t) is None
    t21 = target('cluster: {kubernetes_version: "1.21.0"}\n')
    assert images.coredns_workaround(t21) == (
        "registry.aliyuncs.com/google_containers/coredns:1.8.0",
        "registry.aliyuncs.com/google_containers/coredns/coredns:v1.8.0")
    assert images.coredns_workaround(target('cluster: {kubernetes_version: "1.21.2"}\n')) is None
    assert "latest" not in " ".join(commands(images.plan(t21, {"images:wanted": None,
                                                               "images:present": set()})))
    done = {"images:wanted": ["a:1", "b:2"], "images:present": {"a:1", "b:2", "c:3"}}
    assert images.plan(t, done).empty
    assert images.STEP not in prepare_steps() and images.STEP in prepare_steps(True)


def test_base_repo_marks_the_yum_clean_as_owed_until_it_succeeds():
    """The marker is made before the file is written and removed only after the clean, so a
    run that failed at `yum clean metadata` leaves it, and the re-run (file already right)
    retries the clean; without the marker a right file means nothing to do."""
    from bootstrap.steps import base_repo

    extra = "repos: {base: {baseurl: 'http://vault.example/7/os/', gpgcheck: false}}\n"
    marker = f"file:{base_repo.PENDING}"
    first = plan_for("base-repo", extra=extra)
    kinds = [a.path if isinstance(a, WriteFile) else a.command for a in first.actions]
    assert kinds == [
        f"install -D -m 0644 /dev/null {base_repo.PENDING}",
        EL7_BASE,
        "yum clean metadata -q",
        f"rm -f {base_repo.PENDING}",
    ]
    right = {f"file:{EL7_BASE}": FileState(written(first)[EL7_BASE])}
    retry = plan_for("base-repo", {**right, marker: FileState("")}, extra)
    assert commands(retry) == ["yum clean metadata -q", f"rm -f {base_repo.PENDING}"]
    assert not written(retry)
    assert plan_for("base-repo", right, extra).empty
    # A change of repos.base while a clean is owed: no second marker, still cleaned.
    changed = plan_for("base-repo", {marker: FileState("")}, extra)
    assert commands(changed) == ["yum clean metadata -q", f"rm -f {base_repo.PENDING}"]
    assert list(written(changed)) == [EL7_BASE]


# -- one package transaction per node ------------------------------------------------------------
def _prepared_plans(overrides: dict) -> list[tuple[str, Plan]]:
    from bootstrap.steps import prepare_steps

    return [(s.name, plan_for(s.name, overrides, "")) for s in prepare_steps()
            if not s.skip(target())]


def test_one_transaction_for_every_step_that_installs():
    from bootstrap import packages

    fresh: dict = {"rpms:chrony": {}}  # stock CentOS 7 has chrony; say it has not
    b, rest = packages.batch(_prepared_plans(fresh))
    assert b is not None
    assert b.steps == ["time", "ipvs", "docker", "kubernetes-packages"]
    names = [n for n, _ in _prepared_plans(fresh)]
    assert names[b.at] == "time"  # before the first step that needs a package
    assert b.command == (
        "yum install -y --setopt=obsoletes=0 --disableexcludes=kubernetes chrony ipset ipvsadm "
        "docker-ce-19.03.15 docker-ce-cli-19.03.15 containerd.io conntrack-tools socat "
        "kubelet-1.20.10 kubeadm-1.20.10 kubectl-1.20.10")
    # repo files first, then the one install; nothing of either is left in the steps
    assert [a.path for a in b.plan.files()] == ["/etc/yum.repos.d/docker-ce.repo",
                                                "/etc/yum.repos.d/kubernetes.repo"]
    assert b.plan.script().index("docker-ce.repo") < b.plan.script().index("yum install")
    assert all(not p.installs() for p in rest)
    assert not any(f.path.startswith("/etc/yum.repos.d/") for p in rest for f in p.files()
                   if f.path != "/etc/yum.repos.d/CentOS-Base.repo")
    # what the steps still do themselves
    by_name = dict(zip(names, rest, strict=True))
    assert by_name["time"].empty and by_name["kubernetes-packages"].empty  # only installs
    assert commands(by_name["docker"]) == ["systemctl enable docker.service",
                                           "systemctl start docker.service"]


def test_no_transaction_when_everything_is_installed():
    from bootstrap import packages

    installed = {
        "rpms:chrony": {"chrony": "3.4-1.el7"},
        "rpms:ipset,ipvsadm": {"ipset": "7.1-1.el7", "ipvsadm": "1.27-8.el7"},
        "rpms:containerd.io,docker-ce,docker-ce-cli": {
            "containerd.io": "1.4.3-3.1.el7", "docker-ce": "19.03.15-3.el7",
            "docker-ce-cli": "19.03.15-3.el7"},
        "rpms:cri-tools,kubeadm,kubectl,kubelet,kubernetes-cni": {
            "kubeadm": "1.20.10-0", "kubectl": "1.20.10-0", "kubelet": "1.20.10-0"},
        "rpms:conntrack-tools,iproute,iproute-tc,socat": {
            "conntrack-tools": "1.4.4-7.el7", "iproute": "4.11.0-30.el7",
            "socat": "1.7.3.2-2.el7"},
    }
    b, rest = packages.batch(_prepared_plans(installed))
    assert b is None
    assert all(not p.installs() for p in rest)


def test_steps_after_a_failed_plan_take_no_part():
    from bootstrap import packages

    plans = [("a", Plan()), ("b", Plan(error="broken")), ("c", Plan())]
    plans[0][1].install(["x"])
    plans[2][1].install(["y"])
    b, rest = packages.batch(plans)
    assert b is not None and b.steps == ["a"] and b.command == "yum install -y x"
    assert rest[2].installs(), "c never runs (b failed): its install stays where it was"
