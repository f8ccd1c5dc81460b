"""Load an inventory: render it with Jinja2, parse the YAML, validate it into typed objects.

Every error points at a line of the user's file, also when a Jinja loop produced the YAML: the
template is rendered with invisible line markers at the start of each source line, which are
stripped after recording which source line produced which rendered line.

Whatever the input, the outcome is an Inventory or an InventoryError naming file:line: nesting
depth, alias expansion and merge keys are bounded, YAML tags other than the plain types are
refused, and values YAML cannot construct (2020-13-45, !!int abc) are reported like any other
invalid field. tests/test_inventory_fuzz.py checks this.
"""

from __future__ import annotations

import os
import re
import secrets
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .errors import InventoryError
from .models import Inventory
from .schema import _dotted, _show, validate

_NEWLINE = re.compile(r"(\r\n|\r|\n)")  # what Jinja counts (and turns into \n) as a line break
_YAML_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # what YAML counts as a line break

MAX_DEPTH = 50  # nesting levels of YAML collections (a real inventory needs 4)
MAX_VALUES = 50_000  # values after expanding aliases (a 1000-node inventory needs ~5000)


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
    # optimized=False: no constant folding at compile time, so an expression like 10 ** 5000
    # fails while rendering, in a frame that has its template line.
    return jinja2.Environment(
        undefined=_Undefined, keep_trailing_newline=True, autoescape=False, optimized=False
    )


def _instrument(env: jinja2.Environment, source: str) -> tuple[str, re.Pattern] | None:
    """The source with a marker after every newline that is template data, and the markers'
    pattern; or None.

    ``source`` has \\n newlines only. Whitespace control (``{%-``) drops the whitespace before
    a tag from the data token: that gap is copied unmarked, so rendering strips it again. A
    random tag in the markers keeps an expression's output from ever passing for one.
    """
    if "\x1e" in source or "\x1f" in source:
        return None  # the markers' own characters: leave them for YAML to refuse, with a line
    try:
        tokens = list(env.lex(source))
    except Exception:  # a syntax error, or e.g. a number literal too long for int()
        return None  # compiling reports it with its line
    tag = secrets.token_hex(6)
    out, pos = [], 0
    for lineno, kind, value in tokens:
        if not source.startswith(value, pos):
            end = source.find(value, pos)
            if end < 0 or source[pos:end].strip(" \t\n"):
                return None
            out.append(source[pos:end])
            pos = end
        pos += len(value)
        if kind == "data" and "\n" in value:
            first, *rest = value.split("\n")
            value = first + "".join(
                f"\n\x1e{tag}{lineno + i}\x1f{p}" for i, p in enumerate(rest, 1)
            )
        out.append(value)
    if source[pos:].strip(" \t\n"):
        return None
    out.append(source[pos:])
    return "".join(out), re.compile(f"\x1e{tag}([0-9]{{1,9}})\x1f")


def _line_map(marked: str, mark: re.Pattern, source_lines: int) -> tuple[str, list[int]]:
    """Strip markers; return the text and, per rendered line, its source line (1-based).

    A rendered line that starts with a marker comes from that source line; one that starts
    inside an expression's output (its newline came from a value) from the line before's.
    """
    sources, line = [], 1
    for text in marked.split("\n"):
        m = mark.match(text)
        if m:
            line = min(max(int(m.group(1)), 1), source_lines)
        sources.append(line)
    return mark.sub("", marked), sources


def render(path: Path, environ: Mapping[str, str] | None = None) -> tuple[str, list[int]]:
    """Render the inventory template; return the YAML text and its rendered->source line map."""
    name = str(path)
    source = _NEWLINE.sub("\n", _read(path))  # as Jinja counts lines: \r\n, \r, \n
    source_lines = max(source.count("\n") + (not source.endswith("\n")), 1)  # as editors count
    env = _environment()
    instrumented = _instrument(env, source)
    try:
        code = env.compile(instrumented[0] if instrumented else source, path.name, name)
    except jinja2.TemplateSyntaxError as exc:
        raise InventoryError(
            name, [f"{name}:{exc.lineno or 1}: template syntax: {exc.message or exc}"]
        ) from None
    except RecursionError:
        line = _deepest_line(env, source)
        raise InventoryError(
            name,
            [
                f"{name}:{line}: template: nested too deeply to compile "
                "(split the expression or the nested blocks up, e.g. with {% set %})"
            ],
        ) from None
    except Exception as exc:  # e.g. a number literal too long to read
        line = _compile_line(exc)
        raise InventoryError(name, [f"{name}:{line}: template syntax: {_one_line(exc)}"]) from None
    try:
        template = env.template_class.from_code(env, code, env.make_globals(None))
        out = template.render(env=_Env(environ if environ is not None else os.environ))
    except jinja2.TemplateSyntaxError as exc:
        raise InventoryError(
            name, [f"{name}:{exc.lineno or 1}: template syntax: {exc.message or exc}"]
        ) from None
    except RecursionError as exc:
        line = _template_line(exc, name) or 1
        raise InventoryError(
            name,
            [f"{name}:{line}: template: recursion too deep (does a macro call itself forever?)"],
        ) from None
    except Exception as exc:  # any error raised while rendering: report the template line
        line = _template_line(exc, name) or 1
        raise InventoryError(name, [f"{name}:{line}: template: {_one_line(exc)}"]) from None
    if instrumented is None:
        return out, [min(i, source_lines) for i in range(1, out.count("\n") + 2)]
    return _line_map(out, instrumented[1], source_lines)


def _read(path: Path) -> str:
    """The file as text; a byte that is not UTF-8 is reported with its line."""
    name = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InventoryError(
            name, ["file not found (copy inventory.example.yaml and edit it)"]
        ) from None
    except IsADirectoryError:
        raise InventoryError(name, [f"{name} is a directory, not an inventory file"]) from None
    except OSError as exc:
        raise InventoryError(name, [f"cannot read {name}: {exc.strerror or exc}"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = len(_NEWLINE.split(before.decode("utf-8", "replace"))[::2])
        column = exc.start - max(before.rfind(b"\n"), before.rfind(b"\r"))
        utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        hint = "it looks like UTF-16: save it as UTF-8" if utf16 else "save the file as UTF-8"
        raise InventoryError(
            name,
            [
                f"{name}:{line}: not UTF-8 text: byte 0x{data[exc.start]:02x} "
                f"at column {column} ({hint})"
            ],
        ) from None


def _deepest_line(env: jinja2.Environment, source: str) -> int:
    """The line where brackets and blocks of the template nest deepest (1 if unknown)."""
    depth, deepest, line, after_block_begin = 0, -1, 1, False
    try:
        for lineno, kind, value in env.lex(source):
            if kind == "operator" and value in "([{":
                depth += 1
            elif kind == "operator" and value in ")]}":
                depth -= 1
            elif kind == "name" and after_block_begin:
                depth += -1 if value.startswith("end") else int(value in _BLOCK_TAGS)
            if kind != "whitespace":
                after_block_begin = kind == "block_begin"
            if depth > deepest:
                deepest, line = depth, lineno
    except Exception:  # the lexer's own error: the deepest line so far
        pass
    return line


_BLOCK_TAGS = {"for", "if", "macro", "call", "filter", "with", "block", "raw", "autoescape"}


def _compile_line(exc: BaseException) -> int:
    """The template line the lexer, parser or compiler was at when it raised (1 if unknown)."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        names = tb.tb_frame.f_locals
        for candidate in (
            names.get("lineno"),
            *(getattr(names.get(k), "lineno", None) for k in ("token", "node")),
        ):
            if isinstance(candidate, int) and candidate > 0:
                found = candidate
        tb = tb.tb_next
    return found or 1


def _one_line(exc: BaseException, width: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= width else text[: width - 3] + "..."


def _template_line(exc: BaseException, filename: str) -> int | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return frames[-1].lineno if frames else None


class _Loader(yaml.SafeLoader):
    """SafeLoader that bounds nesting depth and merge-key expansion (both are recursive)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self.own_keys: dict[int, set[int]] = {}  # mapping node -> ids of its own (unmerged) keys

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"lists and mappings are nested more than {MAX_DEPTH} levels deep "
                    "(an unclosed '[' or '{'?)",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        if id(node) not in self.own_keys:
            self.own_keys[id(node)] = {
                id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"
            }
        super().flatten_mapping(node)
        if len(node.value) > MAX_VALUES:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"merge keys (<<) expand to more than {MAX_VALUES} keys",
                node.start_mark,
            )


class Located:
    """Source lines of a parsed document: ``line(path)`` for a field path tuple."""

    def __init__(self, line_map: list[int], text: str = "") -> None:
        self._map = line_map
        self.lines: dict[tuple, int] = {}
        # YAML also breaks lines at \r, NEL, LS and PS; the line map counts \n only.
        self._yaml_to_nl: list[int] | None = None
        if any(c in text for c in "\r\x85\u2028\u2029"):
            table, nl = [0], 0
            for m in _YAML_BREAK.finditer(text):
                nl += "\n" in m.group()
                table.append(nl)
            self._yaml_to_nl = table

    def source_line(self, yaml_line0: int) -> int:
        """The source line (1-based) of a YAML mark's line (0-based)."""
        rendered = yaml_line0
        if self._yaml_to_nl is not None and 0 <= yaml_line0 < len(self._yaml_to_nl):
            rendered = self._yaml_to_nl[yaml_line0]
        return self.rendered_line(rendered)

    def rendered_line(self, rendered: int) -> int:
        """The source line (1-based) of a line (0-based) of the rendered text split at \\n."""
        if 0 <= rendered < len(self._map):
            return self._map[rendered]
        return self._map[-1] if self._map else 1

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp", "binary")}
_KIND = {
    _TAG + "int": "a whole number",
    _TAG + "float": "a number",
    _TAG + "bool": "true or false",
    _TAG + "null": "null",
    _TAG + "timestamp": "a date",
    _TAG + "binary": "base64 (!!binary)",
}


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


class _Builder:
    """Turn the composed YAML nodes into plain data, recording each field's line and problem."""

    def __init__(self, loader: _Loader, loc: Located) -> None:
        self.loader = loader
        self.loc = loc
        self.problems: list[tuple[int, str]] = []
        self.count = 0
        self.active: set[int] = set()  # nodes being built: an alias back to one is a cycle

    def problem(self, node: yaml.Node, path: tuple, message: str) -> None:
        line = self.loc.source_line(node.start_mark.line)
        self.problems.append((line, f"{_dotted(path) or '(top level)'}: {message}"))

    def build(self, node: yaml.Node, path: tuple) -> Any:
        self.loc.lines.setdefault(path, self.loc.source_line(node.start_mark.line))
        self.count += 1
        if self.count > MAX_VALUES:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"aliases (*name) expand to more than {MAX_VALUES} values: "
                "write the values out, or generate them with a Jinja loop",
                node.start_mark,
            )
        if id(node) in self.active:
            self.problem(
                node, path, "an alias (*name) inside the value it refers to: remove that alias"
            )
            return None
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        expected = _TAG + ("map" if isinstance(node, yaml.MappingNode) else "seq")
        if node.tag != expected:
            self.problem(
                node,
                path,
                f"YAML tag {_short_tag(node.tag)} is not allowed here "
                "(write a plain list or mapping: remove the tag)",
            )
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: tuple) -> dict:
        self.loader.flatten_mapping(node)
        own = self.loader.own_keys.get(id(node), set())
        result: dict = {}
        set_by_own: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                self.problem(
                    key_node, path, f"a key must be a plain word, not a {kind} (a stray '?')"
                )
                continue
            key = self.scalar(key_node, path)
            if key is _FAILED:
                continue
            key = key if isinstance(key, str) else str(key)
            if id(key_node) in own:  # keys merged in by << may be overridden; own keys not
                if key in set_by_own:
                    self.problem(key_node, (*path, key), "duplicate key")
                set_by_own.add(key)
            self.loc.lines[(*path, key)] = self.loc.source_line(key_node.start_mark.line)
            result[key] = self.build(value_node, (*path, key))
        return result

    def scalar(self, node: yaml.ScalarNode, path: tuple) -> Any:
        tag = node.tag
        if tag in (_TAG + "merge", _TAG + "value") and node.style is None:
            return node.value  # a plain << or = where a value belongs: the text itself
        if tag not in _SCALAR_TAGS:
            self.problem(
                node,
                path,
                f"YAML tag {_short_tag(tag)} is not allowed (the inventory holds plain "
                "strings, numbers, true/false, lists and mappings: remove the tag)",
            )
            return _FAILED
        try:
            value = self.loader.construct_object(node, deep=True)
        except Exception:  # PyYAML's scalar constructors raise ValueError, KeyError, IndexError...
            self.problem(node, path, self.unreadable(node))
            return _FAILED
        if isinstance(value, float) and "." in node.value:
            # YAML reads 1.20 as the float 1.2; keep the text the user wrote for version fields.
            return _FloatText(value, node.value)
        return value

    def unreadable(self, node: yaml.ScalarNode) -> str:
        shown = _show(node.value)
        if node.tag == _TAG + "int" and len(node.value) > 4000:
            return f"{shown} has too many digits for a number (quote it if it is text)"
        kind = _KIND.get(node.tag, "a value")
        guessed = self.loader.resolve(yaml.ScalarNode, node.value, (True, False))
        if node.style is None and guessed == node.tag:  # YAML guessed the type from the text
            return f"{shown} looks like {kind} but is not a valid one (quote it if it is text)"
        return f"{shown} is not {kind} as its tag {_short_tag(node.tag)} says (remove the tag)"


_FAILED = object()


class _FloatText(float):
    """A float that remembers its source text (``1.20`` stays ``"1.20"`` for versions)."""

    def __new__(cls, value: float, text: str) -> _FloatText:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


def parse(text: str, line_map: list[int], name: str) -> tuple[Any, Located]:
    """Parse rendered YAML into plain data plus the source line of every field."""
    loc = Located(line_map, text)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise InventoryError(
                    name,
                    [
                        f"{name}:1: no YAML content: the file is empty or only comments "
                        "(see inventory.example.yaml)"
                    ],
                )
            builder = _Builder(loader, loc)
            data = builder.build(node, ())
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        line = loc.rendered_line(text.count("\n", 0, max(exc.position, 0)))
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise InventoryError(
            name,
            [
                f"{name}:{line}: YAML: the control character {char!r} is not allowed "
                "(delete it; inside double quotes write it as an escape like \\t)"
            ],
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = loc.source_line(mark.line) if mark else 1
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise InventoryError(name, [f"{name}:{line}: YAML: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise InventoryError(name, [f"{name}:1: YAML: {exc}"]) from None
    if builder.problems:
        raise InventoryError(name, [f"{name}:{line}: {msg}" for line, msg in builder.problems])
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
