"""Plans: what a step would change on a node, as pure data, and how it becomes one script."""

from __future__ import annotations

import base64
import difflib
import posixpath
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from .journal import one_line

BACKUP_SUFFIX = ".k8s-bootstrap.bak"


@dataclass(frozen=True)
class FileState:
    """A file as found on the node (the ``file`` fact)."""

    content: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True)
class WriteFile:
    """Make ``path`` hold ``content`` (atomically, backing up the original the first time)."""

    path: str
    content: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    before: FileState | None = None
    secret: bool = False

    def describe(self) -> str:
        return f"write {self.path}"

    def diff(self) -> str:
        """A ``diff -u`` of the change; metadata-only changes are stated, secrets hidden."""
        if self.secret:
            return (
                f"--- {self.path}\n+++ {self.path}\n(secret content: {len(self.content)} bytes)\n"
            )
        old = self.before.content if self.before else ""
        lines = list(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                self.content.splitlines(keepends=True),
                fromfile=self.path if self.before else "/dev/null",
                tofile=self.path,
            )
        )
        text = "".join(
            ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n" for ln in lines
        )
        meta = self._meta_change()
        return text + (f"{self.path}: {meta}\n" if meta else "")

    def _meta_change(self) -> str:
        b = self.before
        if b is None:
            return f"new file, mode {self.mode:04o} {self.owner}:{self.group}"
        parts = []
        if b.mode != self.mode:
            parts.append(f"mode {b.mode:04o} -> {self.mode:04o}")
        if (b.owner, b.group) != (self.owner, self.group):
            parts.append(f"owner {b.owner}:{b.group} -> {self.owner}:{self.group}")
        return ", ".join(parts)

    @property
    def encoded(self) -> str:
        return base64.b64encode(self.content.encode()).decode()

    def script(self) -> str:
        """Shell that writes the file atomically: temp file, mode/owner, backup, mv.

        A secret's content is not in the script (a command line is visible in ``ps`` and in
        logs): it is read from the script's stdin, one base64 line per secret file (Plan.stdin).
        """
        d = posixpath.dirname(self.path) or "/"
        q = shlex.quote
        tmp = f"{d}/.{posixpath.basename(self.path)}.k8s-bootstrap.XXXXXX"
        fill = (
            'IFS= read -r _b64; printf %s "$_b64" | base64 -d > "$tmp"; _b64='
            if self.secret
            else f'printf %s {q(self.encoded)} | base64 -d > "$tmp"'
        )
        return "\n".join(
            [
                f"mkdir -p {q(d)}",
                f"tmp=$(mktemp {q(tmp)})",
                fill,
                f'chmod {self.mode:04o} "$tmp"',
                f'chown {q(self.owner)}:{q(self.group)} "$tmp"',
                f"if [ -e {q(self.path)} ] && [ ! -e {q(self.path + BACKUP_SUFFIX)} ]; then "
                f"cp -p {q(self.path)} {q(self.path + BACKUP_SUFFIX)}; fi",
                f'mv -f "$tmp" {q(self.path)}',
            ]
        )


@dataclass(frozen=True)
class Run:
    """A command (shell) to run as root, with the reason it is needed."""

    command: str
    why: str = ""
    label: str = ""  # a short name for a long command in one-line summaries

    def describe(self) -> str:
        return self.label or self.command

    def script(self) -> str:
        return self.command


@dataclass(frozen=True)
class Install:
    """Packages a step needs, pinned as given (``docker-ce-19.03.15``). The engine installs the
    Installs of every step of a node in one transaction (``bootstrap.packages``)."""

    packages: tuple[str, ...]
    options: tuple[str, ...] = ()  # yum options this install needs (--disableexcludes=...)
    why: str = ""
    manager: str = "yum"  # the node's package manager (platforms.Release.package_manager)

    @property
    def command(self) -> str:
        return install_command([self])

    def describe(self) -> str:
        return self.command

    def script(self) -> str:
        return self.command


def install_command(installs: list[Install]) -> str:
    """One ``yum install`` for several Installs: every option any of them needs, then the
    packages in order (packages pinned together stay in one command)."""
    options = list(dict.fromkeys(o for i in installs for o in i.options))
    packages = list(dict.fromkeys(p for i in installs for p in i.packages))
    manager = installs[0].manager if installs else "yum"
    return " ".join([f"{manager} install -y", *options, *packages])


Action = WriteFile | Run | Install


@dataclass
class Plan:
    """The ordered actions of one step on one node, plus notes for the user."""

    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the step cannot proceed (e.g. another version is installed)

    @property
    def empty(self) -> bool:
        return not self.actions and self.error is None

    def write(
        self,
        path: str,
        content: str,
        before: FileState | None,
        *,
        mode: int = 0o644,
        owner: str = "root",
        group: str = "root",
        secret: bool = False,
    ) -> bool:
        """Add a WriteFile when the file differs from ``before``; return whether it did."""
        if (
            before is not None
            and before.content == content
            and before.mode == mode
            and (before.owner, before.group) == (owner, group)
        ):
            return False
        self.actions.append(WriteFile(path, content, mode, owner, group, before, secret))
        return True

    def run(self, command: str, why: str = "", label: str = "") -> None:
        self.actions.append(Run(command, why, label))

    def service(self, unit: str, state: dict, name: str, restart: str = "") -> None:
        """Enable and start ``unit`` (its fact ``state``: enabled, active) as needed; restart it
        when it runs and ``restart`` says why (its config changed)."""
        if not state["enabled"]:
            self.run(f"systemctl enable {unit}", f"{name} is not enabled")
        if not state["active"]:
            self.run(f"systemctl start {unit}", f"{name} is not running")
        elif restart:
            self.run(f"systemctl restart {unit}", restart)

    def install(self, packages: list[str] | tuple[str, ...], why: str = "",
                options: tuple[str, ...] = ()) -> None:
        self.actions.append(Install(tuple(packages), options, why))

    def installs(self) -> list[Install]:
        return [a for a in self.actions if isinstance(a, Install)]

    def files(self) -> list[WriteFile]:
        return [a for a in self.actions if isinstance(a, WriteFile)]

    def summary(self) -> str:
        return "; ".join(a.describe() for a in self.actions)

    def stdin(self) -> str | None:
        """What the script reads on stdin: the secret files' contents, in order (or None)."""
        lines = [f.encoded + "\n" for f in self.files() if f.secret]
        return "".join(lines) if lines else None

    def changes(self) -> list[str]:
        """Each action as the one line the report and the node's journal show."""
        return [one_line(a.describe()) for a in self.actions]

    def script(self, journal: Callable[[Action], str] | None = None) -> str:
        """One shell script applying every action in order, stopping at the first failure;
        ``journal(action)`` gives the shell that records an action once it is done."""
        parts = []
        for a in self.actions:
            parts.append(a.script())
            entry = journal(a) if journal else ""
            if entry:
                parts.append(entry)
        return "set -e\numask 022\n" + "\n".join(parts) + "\n"

    def render(self) -> str:
        """The dry-run view: unified diffs of files and the commands, in order."""
        out = []
        for a in self.actions:
            if isinstance(a, WriteFile):
                out.append(a.diff())
            else:
                out.append(f"$ {a.command}" + (f"    # {a.why}" if a.why else "") + "\n")
        out.extend(f"note: {n}\n" for n in self.notes)
        return "".join(out)


def managed_block(existing: str, block: str, marker: str) -> str:
    """Replace (or append) the text between ``# BEGIN marker`` and ``# END marker``."""
    begin, end = f"# BEGIN {marker}", f"# END {marker}"
    wrapped = f"{begin}\n{block.rstrip(chr(10))}\n{end}\n"
    lines = existing.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if ln.rstrip("\n") == begin]
    ends = [i for i, ln in enumerate(lines) if ln.rstrip("\n") == end]
    if starts and ends and ends[-1] > starts[0]:
        return "".join(lines[: starts[0]]) + wrapped + "".join(lines[ends[-1] + 1 :])
    if existing and not existing.endswith("\n"):
        existing += "\n"
    return existing + wrapped
