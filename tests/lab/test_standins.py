# ruff: noqa: E501 (long shell command lines read better unwrapped)
"""Stand-ins in a throwaway mini-node on the host (lab/standins/sandbox.py): strict refusals,
real exit codes and messages, state changes, and the boot script. No lab nodes needed."""

from __future__ import annotations

import base64
import json
import os
import shlex
from dataclasses import dataclass

import pytest

from lab.standins import sandbox

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the sandbox needs root (unshare, overlay)"
)
NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups "


@dataclass
class Res:
    rc: int
    out: str
    err: str


def run_many(cmds: list[str], files: dict[str, str] | None = None, boot: bool = True) -> list[Res]:
    """Run each shell command in one fresh mini-node; one result per command."""
    parts = []
    for c in cmds:
        parts.append(
            f"( {c} ) >/tmp/.o 2>/tmp/.e; rc=$?; "
            'printf "\\036%s %s %s" $rc "$(base64 -w0 /tmp/.o)" "$(base64 -w0 /tmp/.e)"'
        )
    proc = sandbox.run("\n".join(parts), files=files, boot=boot)
    assert proc.returncode == 0, proc.stderr
    out = []
    for rec in proc.stdout.split("\x1e")[1:]:
        rc, o, e = [*rec.split(" "), "", ""][:3]
        out.append(Res(int(rc), base64.b64decode(o).decode(), base64.b64decode(e).decode()))
    assert len(out) == len(cmds), proc.stdout + proc.stderr
    return out


def test_systemctl_units_states_and_refusals():
    r = run_many(
        [
            "systemctl is-active firewalld",
            "systemctl is-enabled firewalld",
            "systemctl enable --now firewalld",
            "systemctl is-active firewalld; systemctl is-enabled firewalld",
            "readlink /etc/systemd/system/multi-user.target.wants/firewalld.service",
            "systemctl stop iptables",
            "systemctl disable iptables",
            "systemctl enable nosuch",
            "systemctl start nosuch",
            "systemctl is-enabled nosuch",
            "systemctl is-active nosuch",
            NOBODY + "systemctl start firewalld",
            NOBODY + "systemctl enable sshd",
            NOBODY + "systemctl is-active firewalld",
            "systemctl frobnicate sshd",
            "systemctl --bogus status sshd",
            "systemctl mask firewalld && systemctl start firewalld",
            "systemctl unmask firewalld && systemctl disable --now firewalld && systemctl is-active firewalld",
            "systemctl status nosuch",
            "systemctl daemon-reload",
        ]
    )
    assert (r[0].rc, r[0].out) == (3, "inactive\n")
    assert (r[1].rc, r[1].out) == (1, "disabled\n")
    assert r[2].rc == 0 and "Created symlink from" in r[2].err
    assert (r[3].rc, r[3].out) == (0, "active\nenabled\n")
    assert r[4].out.strip() == "/usr/lib/systemd/system/firewalld.service"
    assert (r[5].rc, r[5].err) == (
        5,
        "Failed to stop iptables.service: Unit iptables.service not loaded.\n",
    )
    assert r[6].rc == 1 and "No such file or directory" in r[6].err
    assert r[7].rc == 1 and "No such file or directory" in r[7].err
    assert (r[8].rc, r[8].err) == (5, "Failed to start nosuch.service: Unit not found.\n")
    assert r[9].rc == 1 and "Failed to get unit file state for nosuch.service" in r[9].err
    assert (r[10].rc, r[10].out) == (3, "unknown\n")
    assert r[11].rc == 1 and "Interactive authentication required" in r[11].err
    assert r[12].rc == 1 and "Interactive authentication required" in r[12].err
    assert r[13].rc == 0  # read-only verbs work for anyone
    assert (r[14].rc, r[14].err) == (1, "Unknown operation 'frobnicate'.\n")
    assert r[15].rc == 1 and "unrecognized option '--bogus'" in r[15].err
    assert r[16].rc == 1 and "Unit is masked." in r[16].err
    assert (r[17].rc, r[17].out) == (3, "inactive\n")
    assert r[18].rc == 4
    assert r[19].rc == 0


def test_systemctl_hooks_run_and_failing_hook_fails_start():
    hook_ok = '#!/bin/sh\necho hook-ran "$1"\n'
    hook_bad = "#!/bin/sh\necho boom\nexit 1\n"
    unit = "[Unit]\nDescription=Demo\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
    r = run_many(
        [
            "chmod +x /usr/lib/lab/hooks/*",
            "systemctl start demo && systemctl is-active demo && journalctl -u demo --no-pager",
            "systemctl restart bad",
            "systemctl is-active bad; systemctl status bad",
        ],
        files={
            "/usr/lib/systemd/system/demo.service": unit,
            "/usr/lib/systemd/system/bad.service": unit,
            "/usr/lib/lab/hooks/demo.service.start": hook_ok,
            "/usr/lib/lab/hooks/bad.service.start": hook_bad,
        },
    )
    assert r[1].rc == 0 and "hook-ran demo.service" in r[1].out
    assert r[2].rc == 1 and "Job for bad.service failed" in r[2].err
    assert r[3].out.startswith("failed\n") and "Result: exit-code" in r[3].out


def test_modprobe_lsmod_and_bridge_sysctl():
    r = run_many(
        [
            "sysctl net.bridge.bridge-nf-call-iptables",
            "sysctl -w net.bridge.bridge-nf-call-iptables=1",
            "modprobe nosuch",
            NOBODY + "modprobe overlay",
            "modprobe --bogus x",
            "modprobe",
            "modprobe -- br_netfilter && lsmod | grep -c '^br_netfilter '",
            "sysctl -n net.bridge.bridge-nf-call-iptables",
            "sysctl -w net.bridge.bridge-nf-call-iptables=0 && sysctl -n net.bridge.bridge-nf-call-iptables",
            "modprobe -r bridge",
            "modprobe -r br_netfilter; lsmod | grep -c br_netfilter; sysctl -n net.bridge.bridge-nf-call-iptables",
            "modprobe ip_vs_rr && lsmod | awk '{print $1}' | sort | tr '\\n' ' '",
            "modprobe nf_conntrack_ipv4 && sysctl -n net.netfilter.nf_conntrack_max",
        ]
    )
    missing = "sysctl: cannot stat /proc/sys/net/bridge/bridge-nf-call-iptables: No such file or directory\n"
    assert (r[0].rc, r[0].err) == (255, missing)
    assert (r[1].rc, r[1].err) == (255, missing)
    assert (r[2].rc, r[2].err) == (1, "modprobe: FATAL: Module nosuch not found.\n")
    assert r[3].rc == 1 and "Operation not permitted" in r[3].err
    assert r[4].rc == 1 and "unrecognized option '--bogus'" in r[4].err
    assert r[5].rc == 1 and "missing parameters" in r[5].err
    assert (r[6].rc, r[6].out) == (0, "1\n")
    assert r[7].out == "1\n"  # kernel default once br_netfilter is loaded
    assert r[8].out == "net.bridge.bridge-nf-call-iptables = 0\n0\n"
    assert (r[9].rc, r[9].err) == (1, "modprobe: FATAL: Module bridge is in use.\n")
    assert r[10].out == "0\n" and r[10].rc == 255
    for mod in ("ip_vs", "ip_vs_rr", "nf_conntrack", "libcrc32c"):
        assert mod in r[11].out.split()
    assert r[12].out == "65536\n"


def test_sysctl_files_system_order_and_refusals():
    files = {
        "/usr/lib/sysctl.d/00-system.conf": "kernel.sysrq = 0\nvm.swappiness = 10\n",
        "/etc/sysctl.d/00-system.conf": "vm.swappiness = 20\n",  # same name: /etc wins over /usr/lib
        "/etc/sysctl.d/k8s.conf": "net.ipv4.ip_forward = 1\n# comment\n; other\n",
        "/etc/sysctl.conf": "vm.swappiness = 5\n",
        "/tmp/x.conf": "net.ipv4.ip_forward=0\nno.such.key = 1\n",
    }
    r = run_many(
        [
            "rm -f /usr/lib/sysctl.d/50-pid-max.conf /usr/lib/sysctl.d/99-protect-links.conf; sysctl --system",
            "sysctl -n vm.swappiness net.ipv4.ip_forward kernel.sysrq",
            NOBODY + "sysctl -w net.ipv4.ip_forward=0",
            NOBODY + "sysctl -n net.ipv4.ip_forward",
            "sysctl -p /tmp/x.conf",
            "sysctl -p /nonexistent",
            "sysctl --bogus",
            "sysctl net.ipv4.ip_forward=1",
            "sysctl -a | grep -c '^net.bridge'",
            "cat /proc/sys/net/ipv4/ip_forward",  # the host's value is untouched: not the stand-in's
        ],
        files=files,
        boot=False,
    )
    assert r[0].rc == 0, r[0].err
    assert r[0].out.splitlines() == [
        "* Applying /etc/sysctl.d/00-system.conf ...",
        "vm.swappiness = 20",
        "* Applying /etc/sysctl.d/k8s.conf ...",
        "net.ipv4.ip_forward = 1",
        "* Applying /etc/sysctl.conf ...",
        "vm.swappiness = 5",
    ]
    assert r[1].out == "5\n1\n16\n"
    assert (r[2].rc, r[2].err) == (255, "sysctl: permission denied on key 'net.ipv4.ip_forward'\n")
    assert (r[3].rc, r[3].out) == (0, "1\n")
    assert r[4].rc == 255 and "cannot stat /proc/sys/no/such/key" in r[4].err
    assert "net.ipv4.ip_forward = 0" in r[4].out
    assert r[5].rc == 255 and 'cannot open "/nonexistent"' in r[5].err
    # procps-ng 3.3.10 sysctl.c: `case '?': Usage(stdout)` -> usage on stdout, exit 0 (sic)
    assert (r[6].rc, r[6].err) == (0, "sysctl: unrecognized option '--bogus'\n")
    assert r[6].out.startswith("\nUsage:\n sysctl [options]")
    assert r[7].out == "net.ipv4.ip_forward = 1\n"
    assert r[8].out == "0\n"


def test_swap_selinux_uname_hostname():
    r = run_many(
        [
            "cat /proc/swaps | wc -l",
            NOBODY + "swapoff -a",
            "swapoff -a; cat /proc/swaps | wc -l",
            "swapoff /dev/mapper/centos-swap",
            "swapon /dev/sdz9",
            "swapon -a; swapon -s | wc -l; swapon /dev/mapper/centos-swap",
            "sed -i 's|^/dev/mapper/centos-swap|#&|' /etc/fstab; swapoff -a; "
            "swapon /dev/mapper/centos-swap && cat /proc/swaps | wc -l; swapoff -a; "
            "sed -i 's|^#/dev/mapper/centos-swap|/dev/mapper/centos-swap|' /etc/fstab",
            "getenforce",
            NOBODY + "setenforce 0",
            "setenforce 0; getenforce",
            "setenforce bogus",
            "uname -r; uname -m; uname -n; uname -s",
            "uname -z",
            NOBODY + "hostnamectl set-hostname nope",
            "hostnamectl set-hostname master1 && hostname && cat /etc/hostname && uname -n",
            "hostnamectl status | head -1",
        ]
    )
    assert r[0].out == "2\n"  # header + the fstab swap, activated at boot
    assert r[1].rc == 255 and "Operation not permitted" in r[1].err
    assert r[2].out == "1\n"
    assert r[3].rc == 255 and "Invalid argument" in r[3].err
    assert (r[4].rc, r[4].err) == (
        255,
        "swapon: cannot open /dev/sdz9: No such file or directory\n",
    )
    assert r[5].out == "2\n" and "Device or resource busy" in r[5].err
    assert (r[6].rc, r[6].out) == (0, "2\n"), r[6].err  # the LV outlives its fstab line
    r = r[:6] + r[7:]
    assert r[6].out == "Enforcing\n"
    assert (r[7].rc, r[7].err) == (1, "setenforce:  setenforce() failed\n")
    assert r[8].out == "Permissive\n"
    assert r[9].rc == 1 and r[9].err.startswith("usage:  setenforce")
    assert r[10].out == "3.10.0-1160.el7.x86_64\nx86_64\nsandbox\nLinux\n"
    assert r[11].rc == 1 and "invalid option -- 'z'" in r[11].err
    assert r[12].rc == 1 and "Interactive authentication required" in r[12].err
    assert r[13].out == "master1\nmaster1\nmaster1\n"
    assert r[14].out.strip() == "Static hostname: master1"


def test_setenforce_refused_when_selinux_disabled():
    r = run_many(
        ["getenforce", "setenforce 0"], files={"/etc/selinux/config": "SELINUX=disabled\n"}
    )
    assert r[0].out == "Disabled\n"
    assert (r[1].rc, r[1].err) == (1, "setenforce: SELinux is disabled\n")


def test_firewall_cmd():
    r = run_many(
        [
            "firewall-cmd --state",
            "firewall-cmd --add-port=6443/tcp",
            "systemctl start firewalld && firewall-cmd --state",
            NOBODY + "firewall-cmd --add-port=6443/tcp",
            "firewall-cmd --permanent --add-port=6443/tcp && firewall-cmd --add-port=10250/tcp",
            "firewall-cmd --list-ports; firewall-cmd --permanent --list-ports",
            "firewall-cmd --reload && firewall-cmd --list-ports",
            "firewall-cmd --permanent --add-port=6443/tcp",
            "firewall-cmd --add-port=99999/tcp",
            "firewall-cmd --bogus",
            "grep port /etc/firewalld/zones/public.xml",
        ]
    )
    assert (r[0].rc, r[0].err) == (252, "not running\n")
    assert (r[1].rc, r[1].err) == (252, "FirewallD is not running\n")
    assert (r[2].rc, r[2].out) == (0, "running\n")
    assert r[3].rc == 253
    assert r[5].out == "10250/tcp\n6443/tcp\n"
    assert r[6].out == "success\n6443/tcp\n"
    assert r[7].rc == 0 and "ALREADY_ENABLED" in r[7].err
    assert r[8].rc == 102 and "INVALID_PORT" in r[8].err
    assert r[9].rc == 2
    assert r[10].out.strip() == '<port protocol="tcp" port="6443"/>'


def test_iptables_ip_and_calls_log_and_failure_injection():
    r = run_many(
        [
            NOBODY + "iptables -L -n",
            "iptables -t nat -N KUBE-SERVICES && iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
            "iptables -t nat -N KUBE-SERVICES",
            "iptables -X nosuch",
            "iptables -P FORWARD DROP && iptables-save > /tmp/saved && iptables -F && iptables -X "
            "&& iptables -t nat -F && iptables -t nat -X && iptables -P FORWARD ACCEPT && iptables-save",
            "iptables-restore < /tmp/saved && iptables-save | grep -v '^#'",
            "ip6tables -L -n | head -1",
            "ip link del cni0",
            NOBODY + "ip link del eth0",
            "ip -o link | awk '{print $2}'",
            "ip link add flannel.1 type vxlan && ip link del flannel.1 && ip -o link | wc -l",
            "ip bogus",
            "mkdir -p /var/lib/lab/fail && echo 'yum: injected' > /var/lib/lab/fail/yum && yum install -y x",
            "tail -n 1 /var/lib/lab/calls.log",
        ]
    )
    assert r[0].rc == 3 and "Permission denied (you must be root)" in r[0].err
    assert r[1].rc == 0
    assert (r[2].rc, r[2].err) == (1, "iptables: Chain already exists.\n")
    assert (r[3].rc, r[3].err) == (1, "iptables: No chain/target/match by that name.\n")
    assert "-A INPUT" not in r[4].out and ":FORWARD ACCEPT [0:0]" in r[4].out
    assert r[5].out.splitlines() == [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        "-A INPUT -p tcp --dport 22 -j ACCEPT",
        "COMMIT",
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":KUBE-SERVICES - [0:0]",
        "COMMIT",
    ]
    assert r[6].out == "Chain INPUT (policy ACCEPT)\n"
    assert (r[7].rc, r[7].err) == (1, 'Cannot find device "cni0"\n')
    assert (r[8].rc, r[8].err) == (2, "RTNETLINK answers: Operation not permitted\n")
    assert r[9].out == "lo:\neth0:\n"
    assert r[10].out == "2\n"
    assert r[11].rc == 255
    assert (r[12].rc, r[12].err) == (1, "yum: injected\n")
    last = json.loads(r[13].out)
    assert (last["cmd"], last["argv"], last["uid"]) == ("yum", ["install", "-y", "x"], 0)


def test_boot_applies_modules_sysctl_swap_selinux_and_units():
    files = {
        "/etc/modules-load.d/k8s.conf": "br_netfilter\noverlay\n",
        "/etc/sysconfig/modules/ipvs.modules": "#!/bin/bash\nmodprobe -- ip_vs_sh\n",
        "/etc/sysctl.d/k8s.conf": "net.bridge.bridge-nf-call-iptables = 1\nnet.ipv4.ip_forward = 1\n",
        "/etc/selinux/config": "SELINUX=permissive\n",
        "/etc/fstab": "/dev/mapper/centos-root / xfs defaults 0 0\n#/dev/mapper/centos-swap swap swap defaults 0 0\n",
        "/usr/lib/systemd/system/demo.service": "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
        "/usr/lib/lab/hooks/demo.service.start": "#!/bin/sh\ntouch /run/demo-started\n",
    }
    prep = (
        "chmod +x /etc/sysconfig/modules/ipvs.modules /usr/lib/lab/hooks/demo.service.start && "
        "systemctl enable demo firewalld 2>/dev/null && /usr/lib/lab/boot"
    )
    r = run_many(
        [
            prep,
            "lsmod | awk 'NR>1{print $1}' | sort | tr '\\n' ' '",
            "sysctl -n net.bridge.bridge-nf-call-iptables net.ipv4.ip_forward",
            "cat /proc/swaps | wc -l",
            "getenforce",
            "systemctl is-active demo firewalld sshd; ls /run/demo-started",
            'grep -c \'"cmd": "boot"\' /var/lib/lab/calls.log',
        ],
        files=files,
        boot=False,
    )
    assert r[0].rc == 0, r[0].err
    mods = r[1].out.split()
    for m in ("br_netfilter", "overlay", "ip_vs_sh", "ip_vs", "bridge"):
        assert m in mods
    assert r[2].out == "1\n1\n"
    assert r[3].out == "1\n"  # the commented swap line stays off
    assert r[4].out == "Permissive\n"
    assert r[5].out == "active\nactive\ninactive\n/run/demo-started\n"
    assert r[6].out == "1\n"


@pytest.mark.parametrize(
    "cmd", ["systemctl", "sysctl", "modprobe", "ip", "iptables", "swapon", "uname"]
)
def test_standins_never_run_host_tools(cmd):
    """No stand-in execs the host's real tool: the only subprocesses are node commands/hooks."""
    src = (sandbox.STANDINS / "bin" / cmd).read_text()
    for tool in ("/sbin/", "/usr/sbin/iptables", "/usr/bin/ip ", "nsenter"):
        assert tool not in src.replace("/usr/sbin/" + cmd, ""), shlex.quote(tool)
