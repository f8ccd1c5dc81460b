"""What a batched fact gather asks a node, answered as CentOS 7.9 answers it, and read-only:
`systemctl show` (systemd 219), `sysctl` with several keys (procps-ng 3.3.10), `rpm -q` with
several names (rpm itself). See lab/CONTRACT.md."""

from __future__ import annotations

import hashlib
import os
import shlex
import stat

import pytest

from lab.pytest_plugin import module_lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]
UNITS = ("sshd.service", "NetworkManager.service", "tuned.service", "nosuch.service")
HOOK = "#!/bin/sh\necho \"$1 $0\" >> /var/lib/hook-ran\n"


def ssh(lab, node, script: str, user: str = "lab", timeout: float = 60):
    return lab.ssh(node, script, user, timeout)


@pytest.fixture(scope="module")
def lab():
    with module_lab(1) as the_lab:
        node = the_lab.nodes[0]
        # sshd: enabled + running (boot); NetworkManager: disabled + stopped; tuned: masked;
        # every tested unit gets start/stop hooks that would leave a trace if one ran
        hooks = " && ".join(
            f"printf %s {shlex.quote(HOOK)} > /usr/lib/lab/hooks/{u}.{w} && "
            f"chmod 0755 /usr/lib/lab/hooks/{u}.{w}" for u in UNITS for w in ("start", "stop"))
        node.run(f"mkdir -p /usr/lib/lab/hooks && {hooks} && systemctl mask tuned",
                 check=True)
        yield the_lab


@pytest.fixture
def node(lab):
    return lab.nodes[0]


def show(node, args: str, user: str = "lab"):
    """`systemctl show ...` inside the node as `user` (no SSH: nothing but the call itself)."""
    return node.run(f"systemctl show {args}", user=user)


def snapshot(node) -> dict[str, tuple]:
    """Everything the node keeps: its disk (upper dirs) and its RAM state (/run/lab), byte for
    byte with modes and link targets; minus the call log and the logs (they grow by design)."""
    out: dict[str, tuple] = {}
    roots = [(f"upper/{d.name}", d) for d in sorted(node.upper.iterdir())]
    roots.append(("run/lab", node.path("/run/lab")))
    for label, root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in sorted(dirnames + filenames):
                path = os.path.join(dirpath, name)
                rel = f"{label}/{os.path.relpath(path, root)}"
                if rel == "upper/var/lib/lab/calls.log" or rel.startswith("upper/var/log/"):
                    continue
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    data = os.readlink(path)
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        data = hashlib.sha256(f.read()).hexdigest()
                else:
                    data = ""
                out[rel] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, data)
    return out


def unit_states(node) -> str:
    script = "; ".join(f"systemctl is-active {u}; systemctl is-enabled {u}" for u in UNITS)
    return node.run(script + "; readlink /etc/systemd/system/tuned.service").stdout


# -- systemctl show -------------------------------------------------------------------------

def test_show_running_enabled_unit(node):
    r = show(node, "-p LoadState,UnitFileState,ActiveState,SubState sshd")
    assert (r.returncode, r.stderr) == (0, "")
    # systemd's order (LoadState, ActiveState, SubState ... UnitFileState), not the asked one
    assert r.stdout == ("LoadState=loaded\nActiveState=active\nSubState=running\n"
                        "UnitFileState=enabled\n")


def test_show_stopped_disabled_unit(node):
    r = show(node, "--property=Id,ActiveState,UnitFileState,LoadState,Description "
             "NetworkManager.service")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == ("Id=NetworkManager.service\nDescription=Network Manager\n"
                        "LoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n")


def test_show_masked_unit(node):
    r = show(node, "-p LoadState -p ActiveState -p UnitFileState -p FragmentPath tuned")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == ("LoadState=masked\nActiveState=inactive\nFragmentPath=/dev/null\n"
                        "UnitFileState=masked\n")


def test_show_missing_unit_is_not_an_error(node):
    r = show(node, "-p LoadState,ActiveState,UnitFileState nosuch")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n"
    # without -p, empty properties are left out (systemd prints them with -p or --all)
    r = show(node, "nosuch.service")
    assert r.returncode == 0 and "LoadState=not-found\n" in r.stdout
    assert "UnitFileState" not in r.stdout and "Id=nosuch.service\n" in r.stdout
    assert "UnitFileState=\n" in show(node, "--all nosuch").stdout


def test_show_several_units_one_call(lab, node):
    r = show(node, "-p UnitFileState,ActiveState -p LoadState,ActiveState --property=Id "
             "sshd NetworkManager.service tuned nosuch")
    assert (r.returncode, r.stderr) == (0, "")
    blocks = r.stdout.split("\n\n")  # one block per unit, in the order asked, blank-separated
    assert blocks == [
        "Id=sshd.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled",
        "Id=NetworkManager.service\nLoadState=loaded\nActiveState=inactive\n"
        "UnitFileState=disabled",
        "Id=tuned.service\nLoadState=masked\nActiveState=inactive\nUnitFileState=masked",
        "Id=nosuch.service\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n",
    ]
    # the same through sudo over SSH, as a gather runs it
    r2 = ssh(lab, node, "sudo -n systemctl show -p UnitFileState,ActiveState "
             "-p LoadState,ActiveState --property=Id sshd NetworkManager.service tuned nosuch")
    assert (r2.returncode, r2.stdout) == (0, r.stdout), r2.stderr


def test_show_value_is_not_in_systemd_219(node):
    r = show(node, "--value -p ActiveState sshd")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", "systemctl: unrecognized option '--value'\n")
    node.run("echo 230 > /usr/lib/lab/systemd-version", check=True)
    try:  # a node simulating systemd >= 230 (e.g. a later CentOS 8 layer) has it
        r = show(node, "--value -p ActiveState,UnitFileState sshd tuned nosuch")
        assert (r.returncode, r.stderr) == (0, "")
        assert r.stdout == "active\nenabled\n\ninactive\nmasked\n\ninactive\n\n"
        assert show(node, "-p Version --value").stdout == "230\n"
    finally:
        node.run("rm -f /usr/lib/lab/systemd-version", check=True)
    assert show(node, "-p Version").stdout == "Version=219\n"


def test_show_unknown_and_unsimulated_properties(node):
    # 219 (CentOS 7.4+): a property that does not exist ends `show` with exit 1 after the
    # first unit's known properties, silently ("Property ... does not exist." is debug level)
    r = show(node, "-p Bogus,LoadState sshd NetworkManager")
    assert (r.returncode, r.stdout, r.stderr) == (1, "LoadState=loaded\n", "")
    # a real property the stand-in does not compute: refused loudly, never invented
    r = show(node, "-p MainPID,ActiveState sshd")
    assert r.returncode == 1 and r.stdout == ""
    assert "property MainPID of sshd.service is not simulated" in r.stderr


def test_show_options_are_strict(node):
    r = show(node, "-x sshd")
    assert (r.returncode, r.stderr) == (1, "systemctl: invalid option -- 'x'\n")
    r = show(node, "sshd -p")
    assert (r.returncode, r.stderr) == (1, "systemctl: option requires an argument -- 'p'\n")
    r = show(node, "--propery=Id sshd")
    assert (r.returncode, r.stderr) == (1, "systemctl: unrecognized option '--propery=Id'\n")
    r = show(node, "-pId,LoadState sshd")  # an attached value, as getopt allows
    assert (r.returncode, r.stdout) == (0, "Id=sshd.service\nLoadState=loaded\n")
    r = node.run("systemctl --version", user="lab")
    assert r.stdout.startswith("systemd 219\n+PAM +AUDIT +SELINUX")


def test_show_changes_nothing_runs_no_hook_and_is_recorded(lab, node):
    before, states = snapshot(node), unit_states(node)
    calls_before = len(node.calls())
    args = ["-p LoadState,UnitFileState,ActiveState sshd NetworkManager tuned nosuch",
            "sshd", "tuned.service", "nosuch", "-a NetworkManager", "", "-p Bogus sshd"]
    for a in args:
        show(node, a)
        show(node, a, user="root")
    r = ssh(lab, node, "sudo -n systemctl show -p ActiveState " + " ".join(UNITS))
    assert r.returncode == 0, r.stderr
    assert unit_states(node) == states
    assert states.split("\n") == ["active", "enabled", "inactive", "disabled", "inactive",
                                  "masked", "unknown", "/dev/null", ""]
    after = snapshot(node)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))
    assert not node.path("/var/lib/hook-ran").exists()
    shows = [c for c in node.calls()[calls_before:] if c["cmd"] == "systemctl"]
    verbs = [[a for a in c["argv"] if not a.startswith("-")][:1] for c in shows]
    assert len(shows) == 2 * len(args) + 1 + 2 * len(UNITS)  # the shows, then unit_states
    assert {c["uid"] for c in shows} >= {0, int(node.run("id -u lab").stdout)}
    # every call since the mark: `show` or what unit_states asked (is-active/is-enabled)
    assert {v[0] if v else "" for v in verbs} <= {"show", "is-active", "is-enabled"}
    assert ["show", "-p", "ActiveState", *UNITS] in [c["argv"] for c in shows]


# -- sysctl with several keys -----------------------------------------------------------------

def test_sysctl_several_keys_one_missing(node):
    r = node.run("/usr/sbin/sysctl -n net.ipv4.ip_forward no.such.key vm.swappiness", user="lab")
    assert r.stdout == "0\n30\n"
    assert r.stderr == "sysctl: cannot stat /proc/sys/no/such/key: No such file or directory\n"
    assert r.returncode == 255  # procps-ng 3.3.10: the sum of -1 per unknown key, & 0xff
    r = node.run("/usr/sbin/sysctl net.ipv4.ip_forward no.such.key vm.swappiness no.other",
                 user="lab")
    assert r.stdout == "net.ipv4.ip_forward = 0\nvm.swappiness = 30\n"
    assert r.stderr.count("cannot stat") == 2 and r.returncode == 254
    r = node.run("/usr/sbin/sysctl -e -n no.such.key net.ipv4.ip_forward vm.swappiness",
                 user="lab")
    assert (r.returncode, r.stdout, r.stderr) == (0, "0\n30\n", "")
    r = node.run("/usr/sbin/sysctl -q net.ipv4.ip_forward", user="lab")  # -q: writes only
    assert (r.returncode, r.stdout) == (0, "net.ipv4.ip_forward = 0\n")


def test_sysctl_bridge_keys_before_and_after_br_netfilter(node):
    keys = "net.bridge.bridge-nf-call-iptables net.ipv4.ip_forward " \
           "net.bridge.bridge-nf-call-ip6tables"
    node.run("modprobe -r br_netfilter")
    r = node.run(f"/usr/sbin/sysctl -n {keys}", user="lab")
    assert (r.returncode, r.stdout, r.stderr.count("cannot stat")) == (254, "0\n", 2)
    node.run("modprobe br_netfilter", check=True)
    try:
        r = node.run(f"/usr/sbin/sysctl -n {keys}", user="lab")
        assert (r.returncode, r.stdout, r.stderr) == (0, "1\n0\n1\n", "")  # kernel default 1
    finally:
        node.run("modprobe -r br_netfilter")


# -- rpm -q with several names ------------------------------------------------------------------

def test_rpm_query_several_names(node):
    r = node.run("rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}\\n' chrony nosuch firewalld "
                 "also-missing", user="lab")
    assert r.stdout == ("chrony 3.4-1.el7\npackage nosuch is not installed\n"
                        "firewalld 0.6.3-13.el7_9\npackage also-missing is not installed\n")
    assert (r.returncode, r.stderr) == (2, "")  # one per name not installed
    r = node.run("rpm -q chrony firewalld", user="lab")
    assert (r.returncode, r.stdout) == (0, "chrony-3.4-1.el7.noarch\n"
                                           "firewalld-0.6.3-13.el7_9.noarch\n")
