"""Render the files in templates/: Jinja2, StrictUndefined, errors naming the template line."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from . import resources
from .errors import BootstrapError


def _source(name: str) -> str | None:
    """A template's text from the templates directory (a clone's or the installed package's)."""
    path = resources.templates()
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return None
        path = path / part
    return path.read_text(encoding="utf-8") if path.is_file() else None


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_source),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **context: Any) -> str:
    """Render templates/<name> with ``context``."""
    try:
        return _env().get_template(name).render(**context)
    except jinja2.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f"templates/{name}" + (f":{line}" if line else "")
        raise BootstrapError(f"{where}: cannot render: {exc}") from None
