"""The installed command, ``k8s-bootstrap``: Invoke's Program over the toolkit's task collection
(tasks.py), with the same tasks, flags and help as ``invoke`` in a clone, plus ``--version``."""

from __future__ import annotations

from invoke import Program

from . import __version__
from .tasks import ns

program = Program(namespace=ns, version=__version__, name="k8s-bootstrap",
                  binary="k8s-bootstrap")


def main() -> None:
    """The console script's entry point."""
    program.run()
