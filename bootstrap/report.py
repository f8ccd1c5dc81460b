"""What the user sees: a line per host per step, a recap, a JSON report, a log directory per run."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .progress import Progress
from .secrets import Secrets

if TYPE_CHECKING:
    from .engine import HostResult, StepResult

_B64 = re.compile(r"printf %s '([A-Za-z0-9+/=]{80,})' \| base64 -d")


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


class Reporter:
    """Thread-safe console output plus the per-run log directory."""

    def __init__(
        self,
        out: TextIO | None = None,
        log_dir: Path | None = None,
        command: str = "run",
        show_diff: bool = False,
    ) -> None:
        self.out = out or sys.stdout
        self.secrets = Secrets()
        self.show_diff = show_diff
        self._lock = threading.Lock()
        self.progress = Progress(tty=_isatty(self.out))
        self.tick_seconds = 1.0
        self._status = ""  # the status line drawn on a terminal, if any
        self._ticker: threading.Thread | None = None
        self.log_dir: Path | None = None
        if log_dir is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = log_dir / f"{stamp}-{command}"
            n = 1
            while path.exists():
                n += 1
                path = log_dir / f"{stamp}-{command}-{n}"
            path.mkdir(parents=True)
            self.log_dir = path

    def print(self, text: str) -> None:
        with self._lock:
            self._emit(self.secrets.mask(text) + "\n")

    def _emit(self, text: str) -> None:
        """Write ``text`` (lock held); on a terminal, keep the status line below it."""
        if self._status:
            self.out.write("\r\x1b[K")
        self.out.write(text)
        if self._status:
            self.out.write(self._status)
        self.out.flush()

    def step(self, host: str, res: StepResult) -> None:
        line = f"[{host}] {res.name:<20} {res.status:<8} {res.seconds:6.2f}s"
        if res.message:
            line += f"  {res.message}"
        with self._lock:
            text = self.secrets.mask(line) + "\n"
            if self.show_diff and res.diff:
                text += "".join(f"    {ln}\n" for ln in self.secrets.mask(res.diff).splitlines())
            self._emit(text)
        self._log(host, f"== {res.name}: {res.status} {res.message}\n{res.diff}")

    @contextlib.contextmanager
    def running(self, host: str, name: str) -> Iterator[Callable[[str], None]]:
        """While a step or phase runs: yields the callback for the lines its script prints,
        which says what it waits for in the progress display."""
        task = self.progress.start(host, name)
        with self._lock:
            if self._ticker is None or not self._ticker.is_alive():
                self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
                self._ticker.start()
        try:
            yield lambda line: task.update(self.secrets.mask(line))
        finally:
            self.progress.finish(task)

    def _tick(self) -> None:
        """Redraw the status line (terminal) or print due lines (pipe, log) each second,
        until no step runs."""
        while True:
            time.sleep(self.tick_seconds)
            with self._lock:
                if self.progress.tty:
                    status = self.secrets.mask(self.progress.status())
                    if status != self._status:
                        self.out.write("\r\x1b[K" + status)
                        self.out.flush()
                        self._status = status
                else:
                    for line in self.progress.due():
                        self._emit(self.secrets.mask(line) + "\n")
                if not self.progress.tasks:
                    self._ticker = None
                    return

    def host_failed(self, res: HostResult) -> None:
        self.print(f"[{res.name}] FAILED  {res.message}")
        self._log(res.name, f"== FAILED: {res.message}")

    def host_log(self, host: str) -> Callable[[str], None]:
        return lambda text: self._log(host, text)

    def _log(self, host: str, text: str) -> None:
        if self.log_dir is None:
            return
        text = _B64.sub(lambda m: f"printf %s '<{len(m.group(1))} base64 bytes>' | base64 -d", text)
        with self._lock, (self.log_dir / f"{host}.log").open("a", encoding="utf-8") as fh:
            fh.write(self.secrets.mask(text).rstrip("\n") + "\n")

    def recap(self, results: dict[str, HostResult], title: str = "RECAP",
              interrupted: bool = False) -> None:
        """Ansible-style table: per host, how many steps were ok, changed, failed, skipped;
        after Ctrl-C, how many were done, still running, and not started."""
        width = max([len(n) for n in results] + [4])
        if interrupted:
            head = f"{'host':<{width}}  {'done':>4} {'running':>7} {'not-started':>11}  status"
        else:
            head = (f"{'host':<{width}}  {'ok':>3} {'changed':>7} {'failed':>6} "
                    f"{'skipped':>7}  status")
        lines = [f"\n{title}", head]
        for name, res in results.items():
            counts = {s: sum(r.status == s for r in res.steps)
                      for s in ("ok", "changed", "failed", "skipped", "running", "not-started")}
            if interrupted:
                done = counts["ok"] + counts["changed"] + counts["failed"] + counts["skipped"]
                line = (f"{name:<{width}}  {done:>4} {counts['running']:>7} "
                        f"{counts['not-started']:>11}  {res.status}")
            else:
                line = (
                    f"{name:<{width}}  {counts['ok']:>3} {counts['changed']:>7} "
                    f"{counts['failed']:>6} {counts['skipped']:>7}  {res.status}"
                )
            failed = [r for r in res.steps if r.status in ("failed", "running")]
            if failed:
                line += f"  ({failed[0].name}: {failed[0].message})"
            elif res.message:
                line += f"  ({res.message})"
            lines.append(line)
        if self.log_dir is not None:
            lines.append(f"logs: {self.log_dir}")
        self.print("\n".join(lines))

    def write_json(self, path: Path, results: dict[str, HostResult], run: dict | None = None
                   ) -> None:
        data = {
            **({"run": run} if run else {}),
            "hosts": {
                name: {
                    "status": res.status,
                    "message": res.message,
                    "steps": [
                        {
                            "name": s.name,
                            "status": s.status,
                            "seconds": round(s.seconds, 3),
                            "message": s.message,
                            "changes": s.changes,
                        }
                        for s in res.steps
                    ],
                }
                for name, res in results.items()
            }
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.secrets.mask(json.dumps(data, indent=2)) + "\n", encoding="utf-8")
