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
    """``command`` runs as root and must change nothing; ``parse(stdout, rc)`` gives the value.

    A fact with a ``batch`` (kind, items) is gathered with every other fact of its kind in one
    command (``KINDS``; its own ``command`` is that command for its items alone), and ``parse``
    reads what the kind's ``split`` gives for its items.
    """

    name: str
    command: str
    parse: Callable[[str, int], Any]
    batch: tuple[str, tuple[str, ...]] | None = None


Facts = dict[str, Any]


def _parse_file(out: str, rc: int) -> FileState | None:
    if rc != 0 or not out:
        return None
    head, _, data = out.partition("\n")
    mode, owner, group = head.split()
    return FileState(base64.b64decode(data).decode("utf-8", "replace"), int(mode, 8), owner, group)


def file(path: str) -> Fact:
    """Content, mode and owner of a file, or None when it is not a readable regular file."""
    return Fact(f"file:{path}", _files_command([path]), _parse_file, ("file", (path,)))


def _files_command(paths: list[str]) -> str:
    """One stat and one od for every readable regular file among ``paths``: a line
    ``SIZE MODE OWNER GROUP NAME`` each, a blank line, then all their bytes in hex."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return (
        f"set --; for f in {quoted}; do [ -f \"$f\" ] && [ -r \"$f\" ] && set -- \"$@\" \"$f\"; "
        "done; if [ $# -gt 0 ]; then "
        "stat -c '%s %a %U %G %n' -- \"$@\" && echo && od -An -v -tx1 -- \"$@\"; fi"
    )


def _split_files(out: str, rc: int, paths: list[str]) -> dict[str, tuple[str, int]]:
    """Per path, what the one-file command printed before batching: ``MODE OWNER GROUP``, then
    the base64 content; ("", 1) for a path that is missing or unreadable."""
    found: dict[str, tuple[str, int]] = {p: ("", 1) for p in paths}
    head, _, blob = out.partition("\n\n")
    rows = [ln.split(" ", 4) for ln in head.splitlines() if ln.strip()]
    data = bytes.fromhex("".join(blob.split()))
    if sum(int(r[0]) for r in rows) != len(data):
        raise ValueError("files changed while they were read")
    pos = 0
    for size, mode, owner, group, name in rows:
        chunk = data[pos : pos + int(size)]
        pos += int(size)
        found[name] = (f"{mode} {owner} {group}\n{base64.b64encode(chunk).decode()}", 0)
    return found


def _text(out: str, rc: int) -> str | None:
    return out.strip() if rc == 0 else None


def command(name: str, cmd: str) -> Fact:
    """A command's trimmed stdout, or None when it fails (missing tool, inactive service)."""
    return Fact(name, cmd, _text)


def _lines(out: str, rc: int) -> list[str]:
    return [ln for ln in out.splitlines() if ln.strip()] if rc == 0 else []


def hostname() -> Fact:
    """The node's name (what ``hostname`` and ``uname -n`` print), read from the kernel."""
    return read("hostname", "/proc/sys/kernel/hostname")


def kernel() -> Fact:
    """The kernel release (what ``uname -r`` prints)."""
    return read("kernel", "/proc/sys/kernel/osrelease")


def clock() -> Fact:
    """The node's clock, seconds since the epoch (preflight's skew check, the lease)."""
    return Fact("time", "date +%s.%N", _number)


def _number(out: str, rc: int) -> float | None:
    try:
        return float(out.strip())
    except ValueError:
        return None


def read(name: str, path: str, parse: Callable[[str, int], Any] = _text) -> Fact:
    """A text file's lines, read by the shell itself (no process); rc 1 when it is missing."""
    return Fact(name, read_command(path), parse)


def read_command(pattern: str) -> str:
    """Shell that prints the files matching ``pattern`` (a path or a glob) line by line with
    builtins only, like ``cat`` would; exit status 1 when none is readable."""
    return (
        f"_ok=1; for _f in {pattern}; do [ -r \"$_f\" ] || continue; _ok=0; "
        "while IFS= read -r _l || [ -n \"$_l\" ]; do printf '%s\\n' \"$_l\"; done < \"$_f\"; "
        "done; [ $_ok = 0 ]"
    )


def modules() -> Fact:
    """Loaded kernel modules (names)."""
    return Fact("modules", "lsmod", lambda out, rc: {ln.split()[0] for ln in _lines(out, rc)[1:]})


def swaps() -> Fact:
    """Active swap devices from /proc/swaps."""
    return read("swaps", "/proc/swaps", lambda out, rc: [ln.split()[0]
                                                         for ln in _lines(out, rc)[1:]])


def _selinux_mode(out: str, rc: int) -> str:
    if rc != 0:
        return "Disabled"  # selinuxfs is not mounted: SELinux is disabled
    return "Enforcing" if out.strip() == "1" else "Permissive"


def selinux() -> Fact:
    """SELinux's running mode, as ``getenforce`` prints it (Enforcing, Permissive, Disabled),
    read from the kernel's selinuxfs like getenforce does, without a process."""
    return read("selinux", "/sys/fs/selinux/enforce", _selinux_mode)


def sysctl(key: str) -> Fact:
    """A kernel parameter's value, or None when the key does not exist (module not loaded)."""
    return Fact(f"sysctl:{key}", _sysctl_command([key]), _text, ("sysctl", (key,)))


def _sysctl_command(keys: list[str]) -> str:
    return f"sysctl {' '.join(shlex.quote(k) for k in keys)} 2>/dev/null; true"


def _split_sysctl(out: str, rc: int, keys: list[str]) -> dict[str, tuple[str, int]]:
    """``KEY = VALUE`` lines (sysctl leaves out keys that do not exist): per key its value."""
    values = {}
    for ln in out.splitlines():
        key, sep, value = ln.partition(" = ")
        if sep:
            values[key.strip()] = value.strip()
    return {k: (values[k], 0) if k in values else ("", 255) for k in keys}


UNIT_PROPERTIES = "LoadState,UnitFileState,ActiveState"


def unit(name: str) -> Fact:
    """systemd state of a unit: exists, enabled, active."""

    def parse(out: str, rc: int) -> dict[str, Any]:
        props = dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)
        return {
            "exists": props.get("LoadState", "not-found") != "not-found",
            "enabled": props.get("UnitFileState") == "enabled",
            "active": props.get("ActiveState") == "active",
        }

    return Fact(f"unit:{name}", _units_command([name]), parse, ("unit", (name,)))


def _units_command(units: list[str]) -> str:
    return f"systemctl show -p {UNIT_PROPERTIES} {' '.join(shlex.quote(u) for u in units)}"


def _split_units(out: str, rc: int, units: list[str]) -> dict[str, tuple[str, int]]:
    """``systemctl show`` prints one block of properties per unit, in the order asked,
    separated by blank lines."""
    blocks = [b for b in out.strip("\n").split("\n\n")] if out.strip() else []
    if len(blocks) != len(units):
        raise ValueError(f"systemctl show gave {len(blocks)} blocks for {len(units)} units")
    return {u: (b, rc) for u, b in zip(units, blocks, strict=True)}


_RPM_FORMAT = shlex.quote("%{NAME} %{VERSION}-%{RELEASE}\\n")


def rpms(names: Iterable[str]) -> Fact:
    """Installed versions: {name: "VERSION-RELEASE"} for the names that are installed."""
    names = sorted(names)

    def parse(out: str, rc: int) -> dict[str, str]:
        found = {}
        for ln in out.splitlines():
            parts = ln.split()
            if len(parts) == 2 and parts[0] in names:
                found[parts[0]] = parts[1]
        return found

    return Fact("rpms:" + ",".join(names), _rpms_command(names), parse, ("rpm", tuple(names)))


def _rpms_command(names: list[str]) -> str:
    return f"rpm -q --qf {_RPM_FORMAT} {' '.join(shlex.quote(n) for n in names)} 2>/dev/null; true"


def _split_rpms(out: str, rc: int, names: list[str]) -> dict[str, tuple[str, int]]:
    """One line per name: ``NAME VERSION-RELEASE``, or rpm's ``package NAME is not
    installed``."""
    lines = {ln.split()[0]: ln for ln in out.splitlines() if len(ln.split()) == 2}
    return {n: (lines.get(n, f"package {n} is not installed"), 0) for n in names}


@dataclass(frozen=True)
class Kind:
    """Facts of one kind come from one command: ``command(items)`` for them all, and
    ``split(out, rc, items)`` giving each item what its own command would have printed."""

    command: Callable[[list[str]], str]
    split: Callable[[str, int, list[str]], dict[str, tuple[str, int]]]


KINDS: dict[str, Kind] = {
    "rpm": Kind(_rpms_command, _split_rpms),
    "unit": Kind(_units_command, _split_units),
    "file": Kind(_files_command, _split_files),
    "sysctl": Kind(_sysctl_command, _split_sysctl),
}


def script(facts: Iterable[Fact]) -> tuple[str, str]:
    """One shell script printing every fact between markers (facts of one kind batched into
    one command); returns (script, nonce)."""
    nonce = _random.token_hex(6)
    parts = []
    for name, command in _sections(list(facts)):
        parts.append(f"printf '%s\\n' {shlex.quote('<<' + nonce + ' ' + name)}")
        # A group, not a subshell (one process less a fact), unless the command may exit.
        group = f"( {command} )" if "exit" in command else f"{{ {command}\n}}"
        parts.append(f"{group} 2>/dev/null </dev/null")
        parts.append(f"printf '\\n>>{nonce} %s\\n' \"$?\"")
    return "\n".join(parts) + "\n", nonce


def _sections(facts: list[Fact]) -> list[tuple[str, str]]:
    """(section name, command): one per unbatched fact, one per kind of batched facts."""
    out = [(f.name, f.command) for f in facts if f.batch is None]
    for kind, items in _batched(facts).items():
        out.append((f"batch:{kind}", KINDS[kind].command(items)))
    return out


def _batched(facts: list[Fact]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for f in facts:
        if f.batch is not None:
            items = kinds.setdefault(f.batch[0], [])
            items += [i for i in f.batch[1] if i not in items]
    return kinds


def parse_output(facts: Iterable[Fact], stdout: str, nonce: str) -> Facts:
    """Split the combined output back into parsed facts."""
    facts = list(facts)
    raw: dict[str, tuple[str, int]] = {}
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
        raw[name] = (body, int(stdout[j + len(end) : k if k >= 0 else None]))
        pos = k if k >= 0 else len(stdout)
    per_item: dict[tuple[str, str], tuple[str, int]] = {}
    for kind, items in _batched(facts).items():
        if f"batch:{kind}" in raw:
            out, rc = raw[f"batch:{kind}"]
            per_item.update({(kind, i): v for i, v in KINDS[kind].split(out, rc, items).items()})
    values: Facts = {}
    for f in facts:
        if f.batch is None:
            if f.name in raw:
                values[f.name] = f.parse(*raw[f.name])
        elif all((f.batch[0], i) in per_item for i in f.batch[1]):
            got = [per_item[(f.batch[0], i)] for i in f.batch[1]]
            values[f.name] = f.parse("\n".join(o for o, _ in got), max(rc for _, rc in got))
    missing = {f.name for f in facts} - set(values)
    if missing:
        raise ValueError(f"facts missing from the node's answer: {', '.join(sorted(missing))}")
    return values
