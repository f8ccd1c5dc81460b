"""One run per node at a time: a lease file on the node, taken by the first script that changes
the node and renewed by each one after it, released when the run is done with the node.

Sessions close between phases, so the lease cannot be a lock held by one SSH session. It is a file
(``/run/k8s-bootstrap/lease``: run id, command, client host, pid, start, expiry, and the node-side
process of its last script) plus a generation file naming the last run that changed the node. A
run reads both in its gather (no extra round trip); its first change checks, under ``flock``,
that no live run holds the lease and that nobody changed the node since its gather, so two runs
never apply the same change twice.

Each script that changes the node records itself in the lease: its ``sh`` (pid, process group:
``timeout`` leads one holding the script and its children, start time in clock ticks since boot,
so a reused pid is not mistaken for it). The gather reports whether that process still runs.

The stale rule: a lease is stale when it expired (``ssh.command_timeout`` + 10 minutes after its
last renewal: a live run renews it with every command that changes the node, and by then
``timeout`` has normally stopped its script), when its holder ran on this client machine, that
process is gone and so is its script on the node, or after a reboot (``/run`` is RAM). A holder
whose process is gone but whose script still runs keeps the node busy until the script ends.
``--break-lease`` takes over any lease, first stopping the holder's script if it still runs.
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
FIELDS = ("run_id", "command", "client", "pid", "started", "renewed", "expires",
          "script_pid", "script_pgid", "script_start")
# sed: "PGID START" from a /proc/PID/stat (fields 5 and 22, counted after the last ") " as comm
# may hold one), nothing for a zombie or dead process.
_STAT = r"s/.*) [^ZXx] [^ ]* \([^ ]*\) \([^ ]* \)\{16\}\([^ ]*\) .*/\1 \3/p"
STOP_WAIT = 5  # seconds --break-lease waits after TERM before it sends KILL


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
    script_pid: int = 0  # the node-side sh of its last script that changed the node (0: unknown)
    script_pgid: int = 0
    script_start: int = 0  # clock ticks after boot (/proc/PID/stat field 22)

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
    script_alive: bool = False  # the holder's recorded script still runs on the node


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
                  number("pid"), number("started"), number("renewed"), number("expires"),
                  number("script_pid"), number("script_pgid"), number("script_start"))


def _parse(out: str, rc: int) -> State | None:
    """The lease and the generation; ``now`` is filled in from the node's clock fact."""
    if rc != 0:
        return None
    generation = ""
    alive = False
    rest = []
    for ln in out.splitlines():
        if ln.startswith("generation="):
            generation = ln.split("=", 1)[1].strip()
        elif ln.startswith("script_alive="):
            alive = ln.split("=", 1)[1].strip() == "yes"
        else:
            rest.append(ln)
    holder = parse_holder("\n".join(rest))
    return State(0, holder, generation, alive and holder is not None and holder.script_pid > 0)


def _script_stat(pid: str) -> str:
    """Shell printing "PGID START" of the live process ``pid`` (a shell word), else nothing."""
    return f"sed -n {shlex.quote(_STAT)} /proc/{pid}/stat 2>/dev/null"


def _recorded_script_lives() -> str:
    """Shell condition: the lease's recorded script (``_sp`` and ``_sw``, read from the lease)
    still runs, with the same start time and process group."""
    return (f'case $_sp in ""|*[!0-9]*) false ;; '
            f'*) [ "$({_script_stat("$_sp")})" = "$_sw" ] ;; esac')


def fact() -> F.Fact:
    """The node's lease and its generation, read by the shell itself (read-only). The run
    gathers the node's clock (``facts.clock``) with it."""
    return F.Fact(
        "lease",
        f"_g=; [ -r {GENERATION} ] && read -r _g < {GENERATION}; "
        "printf 'generation=%s\\n' \"$_g\"; _sp=; _sg=; _ss=; "
        f"if [ -r {LEASE} ]; then while IFS= read -r _l || [ -n \"$_l\" ]; do "
        "printf '%s\\n' \"$_l\"; case $_l in script_pid=*) _sp=${_l#*=} ;; "
        "script_pgid=*) _sg=${_l#*=} ;; script_start=*) _ss=${_l#*=} ;; esac; "
        f"done < {LEASE}; _sw=\"$_sg $_ss\"; "
        f"if {_recorded_script_lives()}; then echo script_alive=yes; "
        "else echo script_alive=no; fi; fi; true",
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
    """The stale rule. Raises LeaseError when another live run holds the node, or when a dead
    run's script still runs there."""
    h = state.holder
    if h is None or h.run_id == info.run_id:
        return Verdict()
    if info.break_lease and state.script_alive:
        return Verdict(h.run_id, f"--break-lease: this run stops {h.command} run {h.run_id}'s "
                                 f"script on the node (process group {h.script_pgid}) and takes "
                                 "over its lease if it changes the node")
    if h.expires <= state.now:
        return Verdict(h.run_id, f"the lease of {h.command} run {h.run_id} expired: this run "
                                 "takes it over if it changes the node")
    if h.client == info.client and not alive(h.pid):
        if state.script_alive:
            raise LeaseError(host, busy_message(h, state.now))
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


def busy_message(h: Holder, now: int, client_gone: bool = True) -> str:
    """A run's script still runs on the node (its client process is gone when ``client_gone``):
    the node is busy until it ends. The script started when it renewed the lease."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(h.renewed))
    gone = f"its process {h.pid} on this machine is gone, but " if client_gone else ""
    return (
        f"the node is busy: {h.command} run {h.run_id} holds its lease; {gone}its script still "
        f"runs on the node as pid {h.script_pid} since {since} ({_ago(now - h.renewed)} ago). "
        "Nothing was changed here; wait for that script to end and run again, or pass "
        f"--break-lease to stop it (process group {h.script_pgid})"
    )


def acquire_script(info: RunInfo, seen: str | None, take_over: str, ttl: float) -> str:
    """Shell run before a script that changes the node: take or renew the lease, or exit 75
    with a ``k8s-bootstrap-lease:`` line on stderr. ``seen`` is the generation the run's gather
    read (None: not gathered, not checked). Taking over ``take_over``'s lease while its recorded
    script still runs: with ``--break-lease`` stop that script's process group first (TERM, then
    KILL), else refuse unless the lease expired. The lease records this script's own process."""
    q = shlex.quote
    run = q(info.run_id)
    lines = [
        "{",
        f"mkdir -p {DIR} && exec 8>>{LOCK} || exit {EXIT}",
        f"flock -w 30 8 || {{ echo '{MARK} busy: {LOCK} stayed locked for 30 s' >&2; "
        f"exit {EXIT}; }}",
        "_now=$(date +%s); _now=${_now%%.*}",
        f"_me=$({_script_stat('$$')})",
        f"_held=$(sed -n 's/^run_id=//p' {LEASE} 2>/dev/null)",
        f"_exp=$(sed -n 's/^expires=//p' {LEASE} 2>/dev/null)",
        f'if [ -n "$_held" ] && [ "$_held" != {run} ] && [ "$_held" != {q(take_over or "-")} ]'
        ' && [ "$_exp" -gt "$_now" ] 2>/dev/null; then',
        f"  echo \"{MARK} held: $(tr '\\n' ' ' < {LEASE})\" >&2; exit {EXIT}",
        "fi",
    ]
    if take_over:
        lives = _recorded_script_lives()
        lines += [
            f'if [ "$_held" = {q(take_over)} ] && [ "$_held" != {run} ]; then',
            f"  _sp=$(sed -n 's/^script_pid=//p' {LEASE})",
            f"  _sw=\"$(sed -n 's/^script_pgid=//p' {LEASE}) "
            f"$(sed -n 's/^script_start=//p' {LEASE})\"",
            f"  if {lives}; then",
        ]
        if info.break_lease:
            lines += [
                '    _pg=${_sw% *}',
                '    if [ "$_pg" -gt 1 ] 2>/dev/null && [ "$_pg" != "${_me% *}" ]; then',
                '      kill -s TERM -- "-$_pg" 2>/dev/null; _i=0',
                f"      while [ $_i -lt {STOP_WAIT * 10} ] && {lives}; do",
                "        sleep 0.1; _i=$((_i + 1))",
                "      done",
                f'      if {lives}; then kill -s KILL -- "-$_pg" 2>/dev/null; fi',
                "    fi",
            ]
        else:
            lines += [
                '    if [ "$_exp" -gt "$_now" ] 2>/dev/null; then',
                f"      echo \"{MARK} running: $(tr '\\n' ' ' < {LEASE})\" >&2; exit {EXIT}",
                "    fi",
            ]
        lines += ["  fi", "fi"]
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
        f"expires=%s\\nscript_pid=%s\\nscript_pgid=%s\\nscript_start=%s\\n' {run} "
        f"{q(info.command)} {q(info.client)} {info.pid} "
        f'"$_started" "$_now" "$(( _now + {int(ttl) + MARGIN} ))" "$$" "${{_me% *}}" '
        f'"${{_me#* }}" > {LEASE}.tmp',
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
    if kind in ("held", "running"):
        h = parse_holder(rest)
        if h is not None:
            return LeaseError(host, held_message(h, now) if kind == "held"
                              else busy_message(h, now, client_gone=False))
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
