"""One run per node at a time: a lease file on the node, taken by the first script that changes
the node and renewed by each one after it, released when the run is done with the node.

Sessions close between phases, so the lease cannot be a lock held by one SSH session. It is a file
(``/run/k8s-bootstrap/lease``: run id, command, client host, pid, start, expiry) plus a
generation file naming the last run that changed the node. A run reads both in its gather (no
extra round trip); its first change checks, under ``flock``, that no live run holds the lease and
that nobody changed the node since its gather, so two runs never apply the same change twice.

The stale rule: a lease is stale when it expired (``ssh.command_timeout`` + 10 minutes after its
last renewal: a live run renews it with every command that changes the node), when its holder ran
on this client machine and that process is gone, or after a reboot (``/run`` is RAM).
``--break-lease`` takes over any lease.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass

from . import facts as F
from .errors import LeaseError
from .runinfo import RunInfo

DIR = "/run/k8s-bootstrap"
LEASE = f"{DIR}/lease"
GENERATION = f"{DIR}/generation"
LOCK = f"{DIR}/lock"
MARGIN = 600  # seconds a lease outlives its holder's last renewal beyond the command timeout
EXIT = 75  # EX_TEMPFAIL: the lease script refused; its stderr line says why
MARK = "k8s-bootstrap-lease:"
FIELDS = ("run_id", "command", "client", "pid", "started", "renewed", "expires")


@dataclass(frozen=True)
class Holder:
    """The run that holds (or held) a node's lease."""

    run_id: str
    command: str = "?"
    client: str = "?"
    pid: int = 0
    started: int = 0
    renewed: int = 0
    expires: int = 0

    def describe(self, now: int) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (
            f"{self.command} (run {self.run_id}, pid {self.pid} on {self.client}) since {since}, "
            f"{_ago(now - self.started)} ago; its lease expires in {_ago(self.expires - now)}"
        )


@dataclass(frozen=True)
class State:
    """The ``lease`` fact: the node's clock, the holder if any, the generation."""

    now: int
    holder: Holder | None
    generation: str


def _ago(seconds: int) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def parse_holder(text: str) -> Holder | None:
    """The lease file's ``key=value`` lines (also one line, space-separated, as in errors)."""
    values: dict[str, str] = {}
    for word in text.replace("\n", " ").split(" "):
        key, sep, value = word.partition("=")
        if sep and key in FIELDS:
            values[key] = value
    if not values.get("run_id"):
        return None

    def number(key: str) -> int:
        try:
            return int(values.get(key, "0"))
        except ValueError:
            return 0

    return Holder(values["run_id"], values.get("command", "?"), values.get("client", "?"),
                  number("pid"), number("started"), number("renewed"), number("expires"))


def _parse(out: str, rc: int) -> State | None:
    """The lease and the generation; ``now`` is filled in from the node's clock fact."""
    if rc != 0:
        return None
    generation = ""
    rest = []
    for ln in out.splitlines():
        if ln.startswith("generation="):
            generation = ln.split("=", 1)[1].strip()
        else:
            rest.append(ln)
    return State(0, parse_holder("\n".join(rest)), generation)


def fact() -> F.Fact:
    """The node's lease and its generation, read by the shell itself (read-only). The run
    gathers the node's clock (``facts.clock``) with it."""
    return F.Fact(
        "lease",
        f"_g=; [ -r {GENERATION} ] && read -r _g < {GENERATION}; "
        "printf 'generation=%s\\n' \"$_g\"; " + F.read_command(LEASE) + "; true",
        _parse,
    )


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine with ``pid`` exists."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Verdict:
    """What a run may do with a node's lease: ``take_over`` names a stale (or broken) lease's
    run id that the run may replace; ``note`` says why."""

    take_over: str = ""
    note: str = ""


def judge(state: State, info: RunInfo, host: str, alive=pid_alive) -> Verdict:
    """The stale rule. Raises LeaseError when another live run holds the node."""
    h = state.holder
    if h is None or h.run_id == info.run_id:
        return Verdict()
    if h.expires <= state.now:
        return Verdict(h.run_id, f"the lease of {h.command} run {h.run_id} expired: this run "
                                 "takes it over if it changes the node")
    if h.client == info.client and not alive(h.pid):
        return Verdict(
            h.run_id,
            f"the lease of {h.command} run {h.run_id} is stale (its process {h.pid} on this "
            "machine is gone): this run takes it over if it changes the node",
        )
    if info.break_lease:
        return Verdict(h.run_id, f"--break-lease: this run takes over the lease of {h.command} "
                                 f"run {h.run_id} if it changes the node")
    raise LeaseError(host, held_message(h, state.now))


def held_message(h: Holder, now: int) -> str:
    return (
        f"another run is changing this node: {h.describe(now)} ({LEASE}). Nothing was changed "
        "here; wait for it to finish and run again, or, if that run is dead, pass --break-lease"
    )


def acquire_script(info: RunInfo, seen: str | None, take_over: str, ttl: float) -> str:
    """Shell run before a script that changes the node: take or renew the lease, or exit 75
    with a ``k8s-bootstrap-lease:`` line on stderr. ``seen`` is the generation the run's gather
    read (None: not gathered, not checked)."""
    q = shlex.quote
    run = q(info.run_id)
    lines = [
        "{",
        f"mkdir -p {DIR} && exec 8>>{LOCK} || exit {EXIT}",
        f"flock -w 30 8 || {{ echo '{MARK} busy: {LOCK} stayed locked for 30 s' >&2; "
        f"exit {EXIT}; }}",
        "_now=$(date +%s); _now=${_now%%.*}",
        f"_held=$(sed -n 's/^run_id=//p' {LEASE} 2>/dev/null)",
        f'if [ -n "$_held" ] && [ "$_held" != {run} ] && [ "$_held" != {q(take_over or "-")} ]'
        f' && [ "$(sed -n \'s/^expires=//p\' {LEASE})" -gt "$_now" ] 2>/dev/null; then',
        f"  echo \"{MARK} held: $(tr '\\n' ' ' < {LEASE})\" >&2; exit {EXIT}",
        "fi",
    ]
    if seen is not None:
        lines += [
            f"_gen=$(cat {GENERATION} 2>/dev/null || true)",
            f'if [ "$_gen" != {q(seen)} ] && [ "$_gen" != {run} ]; then',
            f'  echo "{MARK} changed: $_gen" >&2; exit {EXIT}',
            "fi",
        ]
    lines += [
        "_started=$_now",
        f'[ "$_held" = {run} ] && _started=$(sed -n \'s/^started=//p\' {LEASE})',
        f"printf 'run_id=%s\\ncommand=%s\\nclient=%s\\npid=%s\\nstarted=%s\\nrenewed=%s\\n"
        f"expires=%s\\n' {run} {q(info.command)} {q(info.client)} {info.pid} "
        f'"$_started" "$_now" "$(( _now + {int(ttl) + MARGIN} ))" > {LEASE}.tmp',
        f"mv -f {LEASE}.tmp {LEASE} && printf '%s\\n' {run} > {GENERATION}",
        "exec 8>&-",
        "}",
    ]
    return "\n".join(lines) + "\n"


def release_script(info: RunInfo) -> str:
    """Remove the lease if this run holds it."""
    return (
        f"[ -d {DIR} ] || exit 0; exec 8>>{LOCK}; flock -w 10 8; "
        f"[ \"$(sed -n 's/^run_id=//p' {LEASE} 2>/dev/null)\" = {shlex.quote(info.run_id)} ] "
        f"&& rm -f {LEASE}; true"
    )


def refusal(host: str, stderr: str, now: int | None = None) -> LeaseError | None:
    """The LeaseError for a lease script's refusal in ``stderr``, or None."""
    line = next((ln for ln in stderr.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        return None
    kind, _, rest = line[len(MARK):].strip().partition(": ")
    now = int(time.time()) if now is None else now
    if kind == "held":
        h = parse_holder(rest)
        if h is not None:
            return LeaseError(host, held_message(h, now))
    if kind == "changed":
        return LeaseError(
            host,
            f"run {rest or '?'} changed this node after this run read its state; nothing was "
            "changed here by this run: run again to plan from the new state",
        )
    return LeaseError(host, f"cannot take the node's lease: {rest}")


@dataclass
class NodeLease:
    """A run's lease state on one node: the generation its gather saw, a stale lease it may
    take over, whether it holds the lease now, and whether it gave up a script there."""

    seen: str | None = None
    take_over: str = ""
    taken: bool = False
    abandoned: bool = False
