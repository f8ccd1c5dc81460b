"""What the user sees: a line per host per step, a recap, a JSON report, a log directory per run."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .secrets import Secrets

if TYPE_CHECKING:
    from .engine import HostResult, StepResult

_B64 = re.compile(r"printf %s '([A-Za-z0-9+/=]{80,})' \| base64 -d")


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
            self.out.write(self.secrets.mask(text) + "\n")
            self.out.flush()

    def step(self, host: str, res: StepResult) -> None:
        line = f"[{host}] {res.name:<20} {res.status:<8} {res.seconds:6.2f}s"
        if res.message:
            line += f"  {res.message}"
        with self._lock:
            text = self.secrets.mask(line) + "\n"
            if self.show_diff and res.diff:
                text += "".join(f"    {ln}\n" for ln in self.secrets.mask(res.diff).splitlines())
            self.out.write(text)
            self.out.flush()
        self._log(host, f"== {res.name}: {res.status} {res.message}\n{res.diff}")

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

    def recap(self, results: dict[str, HostResult], title: str = "RECAP") -> None:
        """Ansible-style table: per host, how many steps were ok, changed, failed, skipped."""
        width = max([len(n) for n in results] + [4])
        lines = [
            f"\n{title}",
            f"{'host':<{width}}  {'ok':>3} {'changed':>7} {'failed':>6} {'skipped':>7}  status",
        ]
        for name, res in results.items():
            counts = {
                s: sum(r.status == s for r in res.steps)
                for s in ("ok", "changed", "failed", "skipped")
            }
            line = (
                f"{name:<{width}}  {counts['ok']:>3} {counts['changed']:>7} "
                f"{counts['failed']:>6} {counts['skipped']:>7}  {res.status}"
            )
            failed = [r for r in res.steps if r.status == "failed"]
            if failed:
                line += f"  ({failed[0].name}: {failed[0].message})"
            elif res.message:
                line += f"  ({res.message})"
            lines.append(line)
        if self.log_dir is not None:
            lines.append(f"logs: {self.log_dir}")
        self.print("\n".join(lines))

    def write_json(self, path: Path, results: dict[str, HostResult]) -> None:
        data = {
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
                        }
                        for s in res.steps
                    ],
                }
                for name, res in results.items()
            }
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.secrets.mask(json.dumps(data, indent=2)) + "\n", encoding="utf-8")
