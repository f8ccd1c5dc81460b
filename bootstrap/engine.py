"""The step engine: per host, gather facts once, plan, apply (or show), then check convergence."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import facts as F
from .errors import BootstrapError, CommandError, ConnectError, stderr_excerpt
from .models import Inventory, Node
from .plan import Plan
from .report import Reporter
from .secrets import Secrets
from .ssh import Session, SudoPassword, run_pool
from .steps import Step, Target

MAX_SCRIPT = 100_000  # one argument to `sh -c` may not exceed 128 KiB (MAX_ARG_STRLEN)

OK, CHANGED, FAILED, SKIPPED = "ok", "changed", "failed", "skipped"


@dataclass
class StepResult:
    name: str
    status: str
    seconds: float = 0.0
    message: str = ""
    diff: str = ""


@dataclass
class HostResult:
    name: str
    status: str = OK
    steps: list[StepResult] = field(default_factory=list)
    message: str = ""

    @property
    def changed(self) -> int:
        return sum(s.status == CHANGED for s in self.steps)


@dataclass
class RunOptions:
    dry_run: bool = False
    parallel: int | None = None


class Runner:
    """Runs a list of steps on many hosts, each host on one SSH session, in a bounded pool."""

    def __init__(
        self,
        inv: Inventory,
        reporter: Reporter,
        opts: RunOptions,
        secrets: Secrets | None = None,
        prompt: Callable[[str], str] | None = None,
    ) -> None:
        self.inv = inv
        self.reporter = reporter
        self.opts = opts
        self.secrets = secrets or Secrets()
        self.password = SudoPassword(inv.ssh.sudo_password_env, self.secrets, prompt)
        self.reporter.secrets = self.secrets

    def session(self, node: Node) -> Session:
        return Session(
            node, self.inv.ssh, self.secrets, self.password, log=self.reporter.host_log(node.name)
        )

    def run(self, nodes: list[Node], steps: list[Step]) -> dict[str, HostResult]:
        parallel = self.opts.parallel or self.inv.ssh.parallel
        results = run_pool(nodes, lambda n: self._host(n, steps), parallel)
        out: dict[str, HostResult] = {}
        for node in nodes:
            res = results[node]
            if isinstance(res, BaseException):
                # A bug, not a host problem: still only this host's failure.
                res = HostResult(node.name, FAILED, message=f"internal error: {res!r}")
                self.reporter.host_failed(res)
            out[node.name] = res  # type: ignore[assignment]
        return out

    def _host(self, node: Node, steps: list[Step]) -> HostResult:
        result = HostResult(node.name)
        session = self.session(node)
        try:
            self._steps(session, Target(self.inv, node), steps, result)
        except BootstrapError as exc:
            result.status = FAILED
            result.message = self.secrets.mask(exc.message)
            self.reporter.host_failed(result)
        finally:
            session.close()
        if result.status != FAILED and any(s.status == FAILED for s in result.steps):
            result.status = FAILED
        elif result.status != FAILED:
            result.status = CHANGED if result.changed else OK
        return result

    def gather(self, session: Session, facts: list[F.Fact]) -> F.Facts:
        """All facts in one round trip (read-only)."""
        unique = list({f.name: f for f in facts}.values())
        script, nonce = F.script(unique)
        res = session.run(script, what="gather facts")
        try:
            return F.parse_output(unique, res.stdout, nonce)
        except (ValueError, IndexError) as exc:
            raise CommandError(
                session.name, "gather facts", res.rc, res.stderr or str(exc)
            ) from None

    def _steps(self, session: Session, t: Target, steps: list[Step], result: HostResult) -> None:
        active = []
        for step in steps:
            reason = step.skip(t)
            if reason:
                self._done(result, StepResult(step.name, SKIPPED, message=reason))
            else:
                active.append(step)
        session.connect()
        facts = self.gather(session, [f for s in active for f in s.facts(t)])
        applied: list[tuple[Step, StepResult]] = []
        for i, step in enumerate(active):
            started = time.monotonic()
            plan = step.plan(t, facts)
            res = self._apply(session, step, plan)
            res.seconds = time.monotonic() - started
            self._done(result, res)
            if res.status == CHANGED and not self.opts.dry_run:
                applied.append((step, res))
            if res.status == FAILED:
                for rest in active[i + 1 :]:
                    self._done(
                        result,
                        StepResult(rest.name, SKIPPED, message=f"not run: {step.name} failed"),
                    )
                return
        if applied:
            self._converge(session, t, applied, result)

    def _apply(self, session: Session, step: Step, plan: Plan) -> StepResult:
        notes = "; ".join(plan.notes)
        if plan.error:
            return StepResult(step.name, FAILED, message=plan.error)
        if plan.empty:
            return StepResult(step.name, OK, message=notes)
        diff = self.secrets.mask(plan.render())
        if self.opts.dry_run:
            return StepResult(step.name, CHANGED, message=f"would: {plan.summary()}", diff=diff)
        script = plan.script()
        if len(script) > MAX_SCRIPT:
            return StepResult(step.name, FAILED, message="plan too large to send as one script")
        try:
            session.run(script, what=f"step {step.name}", check=True)
        except CommandError as exc:
            return StepResult(
                step.name, FAILED, message=stderr_excerpt(exc.stderr) or exc.message, diff=diff
            )
        except ConnectError:
            raise
        message = "; ".join(filter(None, [plan.summary(), notes]))
        return StepResult(step.name, CHANGED, message=message, diff=diff)

    def _converge(
        self,
        session: Session,
        t: Target,
        applied: list[tuple[Step, StepResult]],
        result: HostResult,
    ) -> None:
        """Re-gather facts; a step that still wants changes did not converge."""
        facts = self.gather(session, [f for s, _ in applied for f in s.facts(t)])
        for step, res in applied:
            again = step.plan(t, facts)
            if not again.empty:
                res.status = FAILED
                res.message = f"did not converge: still wants {again.summary() or again.error}"
                self.reporter.step(result.name, res)

    def _done(self, result: HostResult, res: StepResult) -> None:
        result.steps.append(res)
        self.reporter.step(result.name, res)
