"""The engine's Runner: what every command's stages use (bootstrap/stages.py) to reach the
nodes: sessions, the gather of facts (one round trip, the node's lease read in it), the journal,
the interrupt; and preflight's verdict (``Preflight``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from . import checks, lease
from . import facts as F
from .errors import (
    CommandError,
)
from .interrupt import Interrupt
from .models import Inventory, Node
from .plan import BACKUP_SUFFIX, Action, WriteFile
from .report import Reporter
from .runinfo import RunInfo
from .secrets import Secrets
from .ssh import Jumps, Result, Session, SudoPassword
from .steps import Step
from .workflow import (  # noqa: F401 (the results' shapes, re-exported for the commands)
    ABANDONED,
    CHANGED,
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    OK,
    RUNNING,
    SKIPPED,
    HostResult,
    StepResult,
    not_started,
    run_host,
    settle,
)


@dataclass
class RunOptions:
    dry_run: bool = False
    parallel: int | None = None
    skip: frozenset[str] = frozenset()  # --skip-phases: names of phases not to run
    dead: frozenset[str] = frozenset()  # reset --dead: nodes that cannot be reached
    allow_quorum_loss: bool = False  # reset: remove members even when etcd loses its quorum


@dataclass
class Preflight:
    """Which preflight errors the user chose to ignore (``--ignore``)."""

    ignore: set[str] = field(default_factory=set)

    def ignored(self, f: checks.Finding) -> bool:
        return f.severity == checks.ERROR and ("all" in self.ignore or f.check in self.ignore)

    def blocking(self, findings: list[checks.Finding]) -> list[checks.Finding]:
        """The errors that stand (not ignored)."""
        return [f for f in findings if f.severity == checks.ERROR and not self.ignored(f)]

    def passes(self, findings: list[checks.Finding], reporter: Reporter) -> bool:
        """Print the findings; True when no error stands."""
        for f in sorted(findings, key=lambda f: (f.severity != checks.ERROR, f.node, f.check)):
            reporter.print(f.line(self.ignored(f)))
        blocking = self.blocking(findings)
        if blocking:
            names = ",".join(sorted({f.check for f in blocking}))
            reporter.print(
                f"preflight: {len(blocking)} error(s); nothing was changed. Fix them, "
                f"or skip a check with --ignore {names}"
            )
            return False
        reporter.print(
            f"preflight: passed ({len(findings)} warning(s) or ignored error(s))"
            if findings
            else "preflight: passed"
        )
        return True


def clock_offset(facts: F.Facts, res: Result) -> float:
    """The node's clock minus ours. The clock is read first in the gather, so it ran between
    sending the script and its first bytes coming back: the middle of that, not of the whole
    gather, which takes seconds on the node that asks the mirrors (its midpoint made healthy
    nodes fail ClockSkew)."""
    node_time = facts.get(F.clock().name)
    if node_time is None:
        return 0.0
    back = res.first_out if res.first_out is not None else res.sent + res.seconds
    return node_time - (res.sent + back) / 2


class Runner:
    """Runs a list of steps on many hosts, each host on its own SSH session, in a bounded pool."""

    def __init__(
        self,
        inv: Inventory,
        reporter: Reporter,
        opts: RunOptions,
        secrets: Secrets | None = None,
        prompt: Callable[[str], str] | None = None,
        run_info: RunInfo | None = None,
        interrupt: Interrupt | None = None,
    ) -> None:
        self.inv = inv
        self.reporter = reporter
        self.opts = opts
        self.secrets = secrets or Secrets()
        self.password = SudoPassword(inv.ssh.sudo_password_env, self.secrets, prompt)
        self.reporter.secrets = self.secrets
        self.run_info = run_info or RunInfo.new("run", changes=not opts.dry_run)
        self.interrupt = interrupt or Interrupt()
        # A run that changes nodes takes a lease on each node it changes (not dry runs).
        self.leasing = self.run_info.changes and not opts.dry_run
        self.leases: dict[str, lease.NodeLease] = {}
        self._leases_lock = threading.Lock()
        self.skipped: frozenset[str] = opts.skip
        self.jumps = Jumps(inv.ssh)  # the bastions' connections, shared by the run's sessions

    def session(self, node: Node) -> Session:
        node_lease = None
        if self.leasing:
            with self._leases_lock:
                node_lease = self.leases.setdefault(node.name, lease.NodeLease())
        return Session(
            node, self.inv.ssh, self.secrets, self.password,
            log=self.reporter.host_log(node.name), run_info=self.run_info,
            interrupt=self.interrupt, node_lease=node_lease, jumps=self.jumps,
        )

    def close(self) -> None:
        """Close what outlives the sessions: the bastions' connections."""
        self.jumps.close()

    @property
    def interrupted(self) -> bool:
        return self.interrupt.requested

    def journal(self, session: Session, step: str) -> Callable[[Action], str]:
        """The journal entry of each action of ``step`` (nothing in a dry run)."""

        def entry(a: Action) -> str:
            backup = a.path + BACKUP_SUFFIX if isinstance(a, WriteFile) else None
            return session.journal_entry(step, a.describe(), backup)

        return entry

    def run(
        self, nodes: list[Node], steps: list[Step], preflight: Preflight | None = None
    ) -> dict[str, HostResult]:
        """prepare-nodes (or, without steps, check) on ``nodes``: bootstrap/prepare.py."""
        from . import prepare

        return prepare.run(self, nodes, steps, preflight)

    def gather(self, session: Session, facts: list[F.Fact], last: bool = False,
               timing: list[Result] | None = None) -> F.Facts:
        """All facts in one round trip (read-only). A run that changes nodes also reads the
        node's lease: another live run's lease fails the node here, before any change.
        ``last``: the run is done with the node, so the same round trip releases its lease.
        The node's clock, when asked for, is read first (``timing`` gets the round trip's
        Result: when it was sent, when its first bytes came back)."""
        if self.leasing:
            facts = [*facts, lease.fact(), F.clock()]
        unique = list({f.name: f for f in facts}.values())
        unique.sort(key=lambda f: f.name != F.clock().name)  # stable: the clock first
        script, nonce = F.script(unique)
        release = last and session.lease is not None and session.lease.taken
        if release:
            script += lease.release_script(self.run_info) + "\n"
        res = session.run(script, what="gather facts", readonly=True)
        if timing is not None:
            timing.append(res)
        if release:
            session.lease.taken = False
        try:
            got = F.parse_output(unique, res.stdout, nonce)
        except (ValueError, IndexError) as exc:
            raise CommandError(
                session.name, "gather facts", res.rc, res.stderr or str(exc)
            ) from None
        if self.leasing and session.lease is not None:
            state, now = got.pop(lease.fact().name), got.get(F.clock().name)
            if state is None or now is None:
                raise CommandError(session.name, "read the lease", res.rc, res.stderr)
            state = dataclasses.replace(state, now=int(now))
            verdict = lease.judge(state, self.run_info, session.name)
            if session.lease.seen is None:
                session.lease.seen = state.generation
            if verdict.take_over and verdict.take_over != session.lease.take_over:
                session.lease.take_over = verdict.take_over
                self.reporter.print(f"[{session.name}] lease: {verdict.note}")
        return got
