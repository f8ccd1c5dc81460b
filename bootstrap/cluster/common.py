"""What the cluster commands share: paths, facts about kubeadm state, kubeadm's error lines, and
the wait-until-Ready probe (one remote loop, not one round trip per poll)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .. import facts as F
from ..models import Inventory
from ..runtimes import RUNTIMES

K = "/etc/kubernetes"
ADMIN_CONF = f"{K}/admin.conf"
KUBELET_CONF = f"{K}/kubelet.conf"
KUBECTL = f"kubectl --kubeconfig {ADMIN_CONF}"
STATE_FILES = (
    ADMIN_CONF,
    KUBELET_CONF,
    f"{K}/bootstrap-kubelet.conf",
    f"{K}/pki/ca.crt",
    f"{K}/manifests/kube-apiserver.yaml",
    "/var/lib/kubelet/config.yaml",
)
PACKAGES = ("kubeadm", "kubelet", "kubectl")


@dataclass(frozen=True)
class Account:
    """The SSH user on a node: whose ``$HOME/.kube`` the toolkit manages."""

    name: str
    home: str
    uid: int
    gid: int


def account(user: str) -> F.Fact:
    """``getent passwd`` of the SSH user (None when unknown)."""

    def parse(out: str, rc: int) -> Account | None:
        fields = out.strip().split(":")
        if rc != 0 or len(fields) < 7:
            return None
        return Account(fields[0], fields[5], int(fields[2]), int(fields[3]))

    return F.Fact(f"account:{user}", f"getent passwd {shlex.quote(user)}", parse)


def present(paths: tuple[str, ...] = STATE_FILES) -> F.Fact:
    """Which of ``paths`` exist."""
    cmd = "; ".join(f"[ -e {shlex.quote(p)} ] && echo {shlex.quote(p)}" for p in paths)
    return F.Fact(
        "present:" + ",".join(paths),
        cmd + "; true",
        lambda out, rc: {ln.strip() for ln in out.splitlines() if ln.strip()},
    )


def packages() -> F.Fact:
    return F.rpms(PACKAGES)


def unprepared(inv: Inventory, rpms: dict[str, str], runtime: dict) -> str | None:
    """Why a node is not ready for kubeadm (prepare-nodes not run), or None."""
    want = inv.cluster.kubernetes_version
    wrong = [
        f"{p} {rpms[p].split('-')[0]}" if p in rpms else f"{p} missing"
        for p in PACKAGES
        if p not in rpms or rpms[p].split("-")[0] != want
    ]
    if wrong:
        have = ", ".join(wrong)
        return f"needs kubeadm/kubelet/kubectl {want} ({have}): run invoke prepare-nodes"
    if not runtime.get("active"):
        return f"{inv.cluster.runtime} is not running: run invoke prepare-nodes"
    return None


_ERROR_LINE = re.compile(
    r"^\s*(\[ERROR [^\]]+\]|error execution phase|error: |Error from server|"
    r"couldn't|unable to|failed to|timed out|\[kubelet-check\] It seems)",
    re.IGNORECASE,
)


def error_lines(text: str, limit: int = 8) -> list[str]:
    """kubeadm's and kubectl's own error lines (the ones that say why), at most ``limit``."""
    lines = [ln.rstrip() for ln in text.splitlines() if _ERROR_LINE.match(ln)]
    if not lines:
        lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()][-3:]
    return lines[:limit]


def evidence_script(kubectl: bool, runtime: str = "docker") -> str:
    """Read-only: what a user needs when init or join fails (kubelet journal, the runtime's
    state, pods, nodes)."""
    parts = [
        "echo '--- journalctl -u kubelet (last 15 lines)'",
        "journalctl -u kubelet -n 15 --no-pager 2>&1 | tail -n 15",
        f"echo '--- systemctl is-active {runtime} kubelet'",
        *RUNTIMES[runtime].evidence,
    ]
    if kubectl:
        parts += [
            f"if [ -e {ADMIN_CONF} ]; then echo '--- kubectl get nodes,pods'; "
            f"{KUBECTL} get nodes -o wide 2>&1; {KUBECTL} get pods -A -o wide 2>&1; fi",
        ]
    return "\n".join(parts) + "\ntrue\n"


def undo_script(what: str, paths: tuple[str, ...], journal_entry: str, cri_flag: str = ""
                ) -> str:
    """After a failed init or join: ``kubeadm reset -f`` when any of ``paths`` shows it got
    past preflight, so a re-run starts clean; ``journal_entry`` records the reset."""
    cond = " || ".join(f"[ -e {shlex.quote(p)} ]" for p in paths)
    return (
        f"if {cond}; then\n"
        f"  echo '--- {what} stopped half-way: kubeadm reset -f, so a re-run starts clean'\n"
        f"  if kubeadm reset -f{cri_flag} >/dev/null 2>&1; then echo 'reset: done'; "
        f"{journal_entry or ':'}"
        "; else echo 'reset: FAILED'; fi\n"
        "fi\n"
    )


def wait_script(nodes: list[str], namespaces: dict[str, str], timeout: int, interval: int = 2
                ) -> str:
    """Poll until every node is Ready and each pod prefix in ``namespaces`` {prefix: ns} has all
    its pods Running; print the last state either way. Exit 0 when ready, 1 on timeout.
    Each poll prints a ``waiting:`` line: progress for the user, and the write that ends the
    loop on the node once the toolkit has stopped reading (Ctrl-C)."""
    names = " ".join(shlex.quote(n) for n in nodes)
    checks = []
    for prefix, ns in namespaces.items():
        checks.append(
            f"p=$({KUBECTL} get pods -n {shlex.quote(ns)} --no-headers 2>/dev/null | "
            f"awk '$1 ~ /^{prefix}/'); "
            f'[ -n "$p" ] && ! printf "%s\\n" "$p" | awk \'$3 != "Running"\' | grep -q . || ok=0'
        )
    pods = "; ".join(checks) or "true"
    show_pods = " ".join(
        f"{KUBECTL} get pods -n {shlex.quote(ns)} --no-headers 2>&1 | awk '$1 ~ /^{prefix}/';"
        for prefix, ns in namespaces.items()
    )
    return f"""end=$(( $(date +%s) + {timeout} ))
while :; do
  ok=1
  out=$({KUBECTL} get nodes {names} --no-headers 2>&1) || ok=0
  printf '%s\\n' "$out" | awk '$1 != "NAME" && $2 !~ /^Ready/ {{bad=1}} END {{exit bad}}' || ok=0
  [ $ok = 1 ] && {{ {pods}; }}
  if [ $ok = 1 ] || [ $(date +%s) -ge $end ]; then break; fi
  printf 'waiting: %s\n' "$(printf '%s\n' "$out" | awk '{{printf "%s %s ", $1, $2}}')"
  sleep {interval}
done
echo '--- nodes'; printf '%s\\n' "$out"
echo '--- pods'; {show_pods}
[ $ok = 1 ]
"""


def parse_nodes(out: str) -> dict[str, str]:
    """``kubectl get nodes --no-headers`` section of the wait output: {name: STATUS}."""
    section = out.split("--- nodes", 1)[-1].split("--- pods", 1)[0]
    found = {}
    for ln in section.splitlines():
        f = ln.split()
        if len(f) >= 2 and f[0] != "NAME" and not ln.startswith(("Error", "error")):
            found[f[0]] = f[1]
    return found


def parse_pods(out: str) -> list[tuple[str, str, str]]:
    """The pods section of the wait output: [(name, READY, STATUS)]."""
    section = out.split("--- pods", 1)[-1]
    rows = []
    for ln in section.splitlines():
        f = ln.split()
        if len(f) >= 3:
            rows.append((f[0], f[1], f[2]))
    return rows
