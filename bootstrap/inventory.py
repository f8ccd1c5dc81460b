"""Load an inventory: render it with Jinja2, parse the YAML, validate it into typed objects.

Every error points at a line of the user's file, also when a Jinja loop produced the YAML: the
template is rendered with invisible line markers at the end of each source line, which are
stripped after recording which source line produced which rendered line.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .errors import InventoryError
from .models import Inventory
from .schema import validate

_MARK = re.compile(r"\x1e(\d+)\x1f")


class _Env(dict):
    """The process environment as the template sees it (``{{ env.NAME }}``)."""


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined with a clear message for a missing environment variable."""

    @property
    def _undefined_message(self) -> str:  # type: ignore[override]
        if isinstance(self._undefined_obj, _Env) and isinstance(self._undefined_name, str):
            return (
                f"environment variable {self._undefined_name} is not set "
                f"(set it, or write {{{{ env.get('{self._undefined_name}', 'default') }}}})"
            )
        return super()._undefined_message


def _environment() -> jinja2.Environment:
    return jinja2.Environment(undefined=_Undefined, keep_trailing_newline=True, autoescape=False)


def _instrument(env: jinja2.Environment, source: str) -> str | None:
    """The source with a marker before every newline that is template data, or None."""
    tokens = list(env.lex(source))
    if "".join(t[2] for t in tokens) != source:
        return None
    out = []
    for lineno, kind, value in tokens:
        if kind == "data" and "\n" in value:
            parts = value.split("\n")
            marked = [f"{p}\x1e{lineno + i}\x1f" for i, p in enumerate(parts[:-1])]
            value = "\n".join([*marked, parts[-1]])
        out.append(value)
    return "".join(out)


def _line_map(marked: str) -> tuple[str, list[int]]:
    """Strip markers; return the text and, per rendered line, its source line (1-based)."""
    lines = marked.split("\n")
    sources: list[int | None] = []
    for line in lines:
        found = _MARK.findall(line)
        sources.append(int(found[-1]) if found else None)
    # A line whose newline came from an expression value belongs to the next marked source line.
    nxt = None
    for i in range(len(sources) - 1, -1, -1):
        if sources[i] is None:
            sources[i] = nxt if nxt is not None else (sources[i - 1] if i else 1)
        nxt = sources[i]
    fixed = [s if s is not None else 1 for s in sources]
    return _MARK.sub("", marked), fixed


def render(path: Path, environ: Mapping[str, str] | None = None) -> tuple[str, list[int]]:
    """Render the inventory template; return the YAML text and its rendered->source line map."""
    name = str(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(
            name, ["file not found (copy inventory.example.yaml and edit it)"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(name, [f"cannot read: {exc}"]) from None
    env = _environment()
    marked = _instrument(env, source)
    try:
        code = env.compile(marked if marked is not None else source, name=path.name, filename=name)
        template = env.template_class.from_code(env, code, env.make_globals(None))
        out = template.render(env=_Env(environ if environ is not None else os.environ))
    except jinja2.TemplateSyntaxError as exc:
        raise InventoryError(
            name, [f"{name}:{exc.lineno}: template syntax: {exc.message}"]
        ) from None
    except Exception as exc:  # any error raised while rendering: report the template line
        line = _template_line(exc, name)
        where = f"{name}:{line}" if line else name
        raise InventoryError(name, [f"{where}: template: {exc}"]) from None
    if marked is None:
        return out, list(range(1, out.count("\n") + 2))
    return _line_map(out)


def _template_line(exc: BaseException, filename: str) -> int | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return frames[-1].lineno if frames else None


class _Loader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping key and sequence item."""


class Located:
    """Source lines of a parsed document: ``line(path)`` for a field path tuple."""

    def __init__(self, line_map: list[int]) -> None:
        self._map = line_map
        self.lines: dict[tuple, int] = {}

    def source_line(self, rendered_line0: int) -> int:
        if 0 <= rendered_line0 < len(self._map):
            return self._map[rendered_line0]
        return self._map[-1] if self._map else 1

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def _construct(loader: _Loader, node: yaml.Node, path: tuple, loc: Located, problems: list) -> Any:
    loc.lines.setdefault(path, loc.source_line(node.start_mark.line))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                line = loc.source_line(key_node.start_mark.line)
                problems.append((line, f"{_dotted((*path, key))}: duplicate key"))
            loc.lines[(*path, key)] = loc.source_line(key_node.start_mark.line)
            result[key] = _construct(loader, value_node, (*path, key), loc, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(loader, item, (*path, i), loc, problems) for i, item in enumerate(node.value)
        ]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, float) and isinstance(node, yaml.ScalarNode) and "." in node.value:
        # YAML reads 1.20 as the float 1.2; keep the text the user wrote for version fields.
        return _FloatText(value, node.value)
    return value


class _FloatText(float):
    """A float that remembers its source text (``1.20`` stays ``"1.20"`` for versions)."""

    def __new__(cls, value: float, text: str) -> _FloatText:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse(text: str, line_map: list[int], name: str) -> tuple[Any, Located]:
    """Parse rendered YAML into plain data plus the source line of every field."""
    loc = Located(line_map)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = loc.source_line(mark.line) if mark else 1
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise InventoryError(name, [f"{name}:{line}: YAML: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise InventoryError(name, [f"{name}: YAML: {exc}"]) from None
    if node is None:
        raise InventoryError(name, [f"{name}: the file is empty (see inventory.example.yaml)"])
    problems: list[tuple[int, str]] = []
    data = _construct(_Loader(""), node, (), loc, problems)
    if problems:
        raise InventoryError(name, [f"{name}:{line}: {msg}" for line, msg in problems])
    return data, loc


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Inventory:
    """Render, parse and validate an inventory file. Raises InventoryError with file:line."""
    p = Path(path)
    text, line_map = render(p, environ)
    data, loc = parse(text, line_map, str(p))
    return validate(data, str(p), loc)


def load_text(text: str, name: str = "inventory.yaml", environ: Mapping[str, str] | None = None):
    """Validate inventory text (for tests and tools): like load() without a file."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / name
        p.write_text(text, encoding="utf-8")
        try:
            return load(p, environ)
        except InventoryError as exc:
            raise InventoryError(name, [m.replace(str(p), name) for m in exc.problems]) from None
