"""pytest fixtures for the lab: `lab_factory`, `lab3`, plus a session safety net.

Register with `pytest_plugins = ["lab.pytest_plugin"]` in tests/conftest.py.
Under CI=true a lab that cannot start fails the test; otherwise the test is skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
from collections.abc import Callable, Iterator

import pytest

from lab import cluster
from lab.cluster import Lab


def _stop_all() -> None:
    """Stop every lab this process started and has not stopped (by PID)."""
    for the_lab in list(cluster.RUNNING.values()):
        try:
            the_lab.down(quiet=True)
        except Exception as exc:  # best effort at exit
            print(f"lab safety net: {the_lab.name}: {exc}")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the lab cannot start (CI=true, so this is a failure): {reason}",
                    pytrace=False)
    pytest.skip(f"the lab cannot start here: {reason}")


@contextlib.contextmanager
def module_lab(n: int, user: str = "lab", **kwargs) -> Iterator[Lab]:
    """A lab for a module-scoped fixture (lab_factory is function-scoped): always stopped.
    `kwargs` go to `Lab.up` (`os="el8"`, `podman=True`, ...)."""
    kwargs.setdefault("log", lambda msg: None)
    try:
        the_lab = Lab.up(n, user=user, **kwargs)
    except (cluster.LabError, OSError, RuntimeError) as exc:
        _unavailable(str(exc))
    try:
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    """Call it as `lab_factory(n, **Lab.up options)` (e.g. `os="el9"`, `podman=True`); all it
    started is stopped at teardown."""
    started: list[Lab] = []

    def make(n: int = 3, **kwargs) -> Lab:
        kwargs.setdefault("log", lambda msg: None)
        try:
            the_lab = Lab.up(n, **kwargs)
        except (cluster.LabError, OSError, RuntimeError) as exc:
            _unavailable(str(exc))
        started.append(the_lab)
        return the_lab

    yield make
    errors = []
    for the_lab in reversed(started):
        try:
            the_lab.down()
        except Exception as exc:  # report all, stop all
            errors.append(f"{the_lab.name}: {exc}")
            the_lab.down(quiet=True)
    if errors:
        pytest.fail("lab teardown: " + "; ".join(errors), pytrace=False)


@pytest.fixture
def lab3(lab_factory: Callable[..., Lab]) -> Lab:
    """A 3-node lab (master1, node1, node2), user `lab`."""
    return lab_factory(3)


def pytest_sessionstart(session: pytest.Session) -> None:
    atexit.register(_stop_all)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # pragma: no cover - only on external kill
        _stop_all()
        if callable(previous):
            previous(signum, frame)
        raise SystemExit(128 + signum)

    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_term)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _stop_all()
