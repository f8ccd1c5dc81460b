"""Where the toolkit's files are: the templates and the example inventory.

In a clone they sit at the top (``templates/``, ``inventory.example.yaml``), as the project's
layout names them. An installed wheel carries them as package data in ``bootstrap/templates/``
(pyproject.toml maps ``templates/`` there; ``templates/inventory.example.yaml`` is a link to the
top-level file). Both are read through ``importlib.resources`` Traversables.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

EXAMPLE = "inventory.example.yaml"
_CLONE = Path(__file__).resolve().parent.parent


def templates() -> Traversable:
    """The templates directory: the clone's ``templates/``, else the installed package data."""
    if (_CLONE / "pyproject.toml").is_file() and (_CLONE / "templates").is_dir():
        return _CLONE / "templates"
    return resources.files("bootstrap") / "templates"


def example_inventory() -> str:
    """The text of ``inventory.example.yaml``."""
    return (templates() / EXAMPLE).read_text(encoding="utf-8")
