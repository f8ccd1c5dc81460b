"""A journal on each node: one line per change the toolkit made there, so an operator who logs
in later can see what was done, by which run, and where the original was kept.

``/var/log/k8s-bootstrap/journal.log``, tab-separated: time (UTC), run id, command, step or
phase, what changed, the backup of the original (or ``-``).
"""

from __future__ import annotations

import re
import shlex

from .runinfo import RunInfo

DIR = "/var/log/k8s-bootstrap"
PATH = f"{DIR}/journal.log"
_SPACE = re.compile(r"\s*[\t\n\r]\s*|\s{2,}")


def one_line(text: str, width: int = 400) -> str:
    """A change as one journal field (no tabs or newlines), as the report also shows it."""
    flat = _SPACE.sub(" ", text.strip())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def entry(info: RunInfo, step: str, change: str, backup: str | None = None) -> str:
    """Shell that appends one journal line; ``backup`` is named when that file exists."""
    q = shlex.quote
    b = f'"$([ -e {q(backup)} ] && echo {q(backup)} || echo -)"' if backup else "-"
    return (
        f"{{ [ -e {PATH} ] || {{ mkdir -p {DIR} && install -m 0640 /dev/null {PATH}; }}; "
        f"printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" "
        f"{q(info.run_id)} {q(info.command)} {q(step)} {q(one_line(change))} {b} >> {PATH}; "
        f"}} || echo 'warning: cannot write {PATH}' >&2"
    )


def parse(text: str) -> list[dict[str, str]]:
    """Journal lines as dicts (for tests and tools)."""
    keys = ("time", "run_id", "command", "step", "change", "backup")
    return [dict(zip(keys, ln.split("\t"), strict=False)) for ln in text.splitlines() if ln]
