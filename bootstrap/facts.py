"""Facts: one read-only shell command each plus a pure parser; all gathered in one round trip."""

from __future__ import annotations

import base64
import secrets as _random
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .plan import FileState


@dataclass(frozen=True)
class Fact:
    """``command`` runs as root and must change nothing; ``parse(stdout, rc)`` gives the value."""

    name: str
    command: str
    parse: Callable[[str, int], Any]


Facts = dict[str, Any]


def _parse_file(out: str, rc: int) -> FileState | None:
    if rc != 0 or not out:
        return None
    head, _, data = out.partition("\n")
    mode, owner, group = head.split()
    return FileState(base64.b64decode(data).decode("utf-8", "replace"), int(mode, 8), owner, group)


def file(path: str) -> Fact:
    """Content, mode and owner of a file, or None when it does not exist."""
    q = shlex.quote(path)
    return Fact(
        f"file:{path}",
        f"[ -f {q} ] || exit 1; stat -c '%a %U %G' {q} && base64 -w0 {q}",
        _parse_file,
    )


def _text(out: str, rc: int) -> str | None:
    return out.strip() if rc == 0 else None


def command(name: str, cmd: str) -> Fact:
    """A command's trimmed stdout, or None when it fails (missing tool, inactive service)."""
    return Fact(name, cmd, _text)


def _lines(out: str, rc: int) -> list[str]:
    return [ln for ln in out.splitlines() if ln.strip()] if rc == 0 else []


def hostname() -> Fact:
    return command("hostname", "hostname")


def kernel() -> Fact:
    return command("kernel", "uname -r")


def modules() -> Fact:
    """Loaded kernel modules (names)."""
    return Fact("modules", "lsmod", lambda out, rc: {ln.split()[0] for ln in _lines(out, rc)[1:]})


def swaps() -> Fact:
    """Active swap devices from /proc/swaps."""
    return Fact(
        "swaps", "cat /proc/swaps", lambda out, rc: [ln.split()[0] for ln in _lines(out, rc)[1:]]
    )


def selinux() -> Fact:
    return command("selinux", "getenforce")


def sysctl(key: str) -> Fact:
    """A kernel parameter's value, or None when the key does not exist (module not loaded)."""
    return command(f"sysctl:{key}", f"sysctl -n {shlex.quote(key)}")


def unit(name: str) -> Fact:
    """systemd state of a unit: exists, enabled, active."""
    q = shlex.quote(name)
    cmd = (
        f"if systemctl cat {q} >/dev/null 2>&1; then echo exists; fi; "
        f"systemctl is-enabled {q} 2>/dev/null; systemctl is-active {q} 2>/dev/null; true"
    )

    def parse(out: str, rc: int) -> dict[str, Any]:
        words = out.split()
        exists = bool(words) and words[0] == "exists"
        rest = words[1:] if exists else words
        enabled = rest[0] if rest else "unknown"
        return {
            "exists": exists,
            "enabled": enabled == "enabled",
            "active": len(rest) > 1 and rest[1] == "active",
        }

    return Fact(f"unit:{name}", cmd, parse)


def rpms(names: Iterable[str]) -> Fact:
    """Installed versions: {name: "VERSION-RELEASE"} for the names that are installed."""
    names = sorted(names)
    qf = shlex.quote("%{NAME} %{VERSION}-%{RELEASE}\\n")
    cmd = f"rpm -q --qf {qf} {' '.join(shlex.quote(n) for n in names)} 2>/dev/null; true"

    def parse(out: str, rc: int) -> dict[str, str]:
        found = {}
        for ln in out.splitlines():
            parts = ln.split()
            if len(parts) == 2 and parts[0] in names:
                found[parts[0]] = parts[1]
        return found

    return Fact("rpms:" + ",".join(names), cmd, parse)


def script(facts: Iterable[Fact]) -> tuple[str, str]:
    """One shell script printing every fact between markers; returns (script, nonce)."""
    nonce = _random.token_hex(6)
    parts = []
    for f in facts:
        parts.append(f"printf '%s\\n' {shlex.quote('<<' + nonce + ' ' + f.name)}")
        parts.append(f"( {f.command} ) 2>/dev/null </dev/null")
        parts.append(f"printf '\\n>>{nonce} %s\\n' \"$?\"")
    return "\n".join(parts) + "\n", nonce


def parse_output(facts: Iterable[Fact], stdout: str, nonce: str) -> Facts:
    """Split the combined output back into parsed facts."""
    by_name = {f.name: f for f in facts}
    values: Facts = {}
    start = f"<<{nonce} "
    end = f"\n>>{nonce} "
    pos = 0
    while True:
        i = stdout.find(start, pos)
        if i < 0:
            break
        nl = stdout.index("\n", i)
        name = stdout[i + len(start) : nl]
        j = stdout.index(end, nl)
        body = stdout[nl + 1 : j]
        k = stdout.find("\n", j + len(end))
        rc = int(stdout[j + len(end) : k if k >= 0 else None])
        if name in by_name:
            values[name] = by_name[name].parse(body, rc)
        pos = k if k >= 0 else len(stdout)
    missing = set(by_name) - set(values)
    if missing:
        raise ValueError(f"facts missing from the node's answer: {', '.join(sorted(missing))}")
    return values
