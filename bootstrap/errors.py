"""One error type per kind of failure; each message says what, where, and what to do next."""

from __future__ import annotations


class BootstrapError(Exception):
    """A failure the user can act on. Printed without a traceback."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InventoryError(BootstrapError):
    """The inventory file cannot be rendered, parsed or validated."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        shown = problems[:20]
        more = len(problems) - len(shown)
        lines = [f"invalid inventory {path}:"] + [f"  {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


class UsageError(BootstrapError):
    """A bad command-line flag or flag combination."""

    exit_code = 2


class HostError(BootstrapError):
    """A failure on one host (connection, sudo, a command)."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        self.detail = message  # without the host name, for places that already show it
        super().__init__(f"{host}: {message}")


class ConnectError(HostError):
    """The host cannot be reached or refused our credentials or its host key."""


class SudoError(HostError):
    """sudo is not usable on the host as configured."""


class CommandError(HostError):
    """A remote script exited non-zero."""

    def __init__(self, host: str, what: str, rc: int, stderr: str) -> None:
        self.rc = rc
        self.stderr = stderr
        excerpt = stderr_excerpt(stderr)
        msg = f"{what} failed (exit {rc})"
        if excerpt:
            msg += f": {excerpt}"
        super().__init__(host, msg)


def stderr_excerpt(text: str, lines: int = 3, width: int = 300) -> str:
    """The last meaningful lines of a command's error output, on one line."""
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    out = " | ".join(kept)
    return out if len(out) <= width else "..." + out[-width:]


class LeaseError(HostError):
    """Another run holds the node's lease (or changed the node since this run read it)."""


class CommandTimeout(HostError):
    """A remote command ran out of time (it was stopped on the node)."""
