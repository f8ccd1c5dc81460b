"""The machine has every command the suite runs: a missing install step in scripts/setup.sh
fails here at once, naming the command and its Debian package, not deep inside a lab test."""

from __future__ import annotations

import re
from pathlib import Path

from lab import deps

ROOT = Path(__file__).resolve().parent.parent
# subprocess.run(["curl", ...]) and the like: the program a test or the lab starts on the host
STARTED = re.compile(r"subprocess\.(?:run|Popen|check_output|check_call)\(\s*\[\s*\"([\w.+-]+)\"")


def started_commands() -> set[str]:
    """Every program the tests, the lab and the benchmarks start by name."""
    found: set[str] = set()
    for folder in ("tests", "lab", "benchmarks", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            if "payloads" in path.parts or "standins" in path.parts:
                continue  # they run inside the nodes, from the lab's own layer
            found |= set(STARTED.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_command_the_suite_starts_is_listed_with_its_package():
    unlisted = started_commands() - set(deps.COMMANDS) - {"true"}
    assert not unlisted, f"add these to lab/deps.py COMMANDS with their Debian package: {unlisted}"


def test_every_listed_command_is_on_the_path():
    missing = {cmd: deps.COMMANDS[cmd] for cmd in deps.missing_commands()}
    assert not missing, ("not on the PATH (run ./scripts/setup.sh, which installs them): "
                         + ", ".join(f"{c} from Debian's {p}" for c, p in missing.items()))
