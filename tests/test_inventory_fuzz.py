"""Fuzz the inventory loader: any input gives an Inventory or a clean InventoryError at file:line.

Three generators feed ``bootstrap.inventory.load`` in-process, each example written to a file:
structure-aware mutations of a valid inventory, Jinja templates around valid text, and raw
text/bytes. The oracle allows exactly two outcomes: a valid ``Inventory`` (checked for sane
values), or an ``InventoryError`` (exit code 2) whose every problem starts with ``path:N:``,
N being a line of the file. Any other exception is a crash. A fourth property checks that the
invisible line markers never change what Jinja renders.

Every crash found is kept as a plain case in REGRESSIONS; files that cannot be read (missing,
a directory, mode 000, empty) are tested at the end.

CI runs a derandomized profile (200 examples per test, under 10 s); ``HYPOTHESIS_PROFILE=fuzz``
hunts with 5000 random examples per test (a few minutes), e.g.
``HYPOTHESIS_PROFILE=fuzz pytest tests/test_inventory_fuzz.py -k fuzz_``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap import inventory
from bootstrap.errors import InventoryError
from bootstrap.inventory import load
from bootstrap.models import Inventory

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=200,
    database=None,
    suppress_health_check=_HEALTH,
)
settings.register_profile(
    "fuzz",
    deadline=None,
    max_examples=5000,
    database=None,
    print_blob=True,
    suppress_health_check=_HEALTH,
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ENVIRON = {"SSH_USER": "deploy"}
EXAMPLE = (Path(__file__).resolve().parent.parent / "inventory.example.yaml").read_text()

# ---- the oracle ----


def _source_lines(data: bytes) -> int:
    """Lines of the file as an editor (and Jinja) counts them."""
    text = data.decode("utf-8", errors="replace")
    return len(re.split(r"\r\n|\r|\n", text))


def check_outcome(path: Path, data: bytes | str) -> Inventory | InventoryError:
    """Write the example, load it, and allow only an Inventory or a clean InventoryError."""
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    path.write_bytes(raw)
    try:
        inv = load(path, environ=ENVIRON)
    except InventoryError as exc:
        assert exc.exit_code == 2
        assert exc.problems, "an InventoryError without problems"
        last = _source_lines(raw)
        where = re.compile(re.escape(str(path)) + r":(\d+): \S")
        for message in exc.problems:
            m = where.match(message)
            assert m, f"problem does not start with {path}:N: {message!r}"
            assert 1 <= int(m.group(1)) <= last, f"line out of range 1..{last}: {message!r}"
            assert "Traceback" not in message
        assert str(path) in str(exc)
        return exc
    assert isinstance(inv, Inventory)
    _check_inventory(inv)
    return inv


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ASCII_FIELDS = re.compile(r"[ -~]+")


def _check_inventory(inv: Inventory) -> None:
    """An accepted inventory holds only values the rest of the toolkit can use."""

    def walk(obj, where):
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name), f"{where}.{f.name}")
        elif isinstance(obj, tuple):
            for i, item in enumerate(obj):
                walk(item, f"{where}[{i}]")
        elif isinstance(obj, str):
            assert not _CONTROL.search(obj), f"{where} holds a control character: {obj!r}"
        elif isinstance(obj, float):
            assert math.isfinite(obj), f"{where} is not finite: {obj!r}"

    walk(inv, "inventory")
    c = inv.cluster
    for text in (c.kubernetes_version, c.pod_network_cidr, c.service_cidr, inv.docker.version):
        assert _ASCII_FIELDS.fullmatch(text), text
    for n in inv.nodes:
        for text in (n.name, n.address, n.internal_address):
            assert _ASCII_FIELDS.fullmatch(text), text
    assert c.version_tuple >= (1, 15)
    assert inv.ssh.connect_timeout > 0 and inv.ssh.command_timeout > 0
    assert isinstance(inv.ssh.port, int) and 1 <= inv.ssh.port <= 65535
    assert inv.init_node in inv.nodes and inv.control_plane_endpoint


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "inventory.yaml"


# ---- (1) structure-aware: a valid inventory, mutated ----


class M(list):
    """A YAML mapping as [key, value] pairs (so duplicate keys can be written)."""


class S(list):
    """A YAML sequence."""


def _base() -> M:
    """The example inventory as a tree whose leaves are YAML source text."""
    return M(
        [
            [
                "cluster",
                M(
                    [
                        ["name", "k8s"],
                        ["kubernetes_version", '"1.20.10"'],
                        ["image_repository", "registry.aliyuncs.com/google_containers"],
                        ["pod_network_cidr", "10.244.0.0/16"],
                        ["service_cidr", "10.96.0.0/12"],
                        ["proxy_mode", "ipvs"],
                        ["control_plane_endpoint", "null"],
                    ]
                ),
            ],
            [
                "ssh",
                M(
                    [
                        ["user", "root"],
                        ["port", "22"],
                        ["key_file", "~/.ssh/id_ed25519"],
                        ["known_hosts", "~/.ssh/known_hosts"],
                        ["host_key_policy", "strict"],
                        ["connect_timeout", "10"],
                        ["command_timeout", "1800"],
                        ["parallel", "20"],
                        ["sudo_password_env", "null"],
                    ]
                ),
            ],
            [
                "node_prep",
                M([["ntp_servers", "[]"], ["selinux", "disabled"], ["firewall", "disable"]]),
            ],
            [
                "docker",
                M(
                    [
                        ["version", '"19.03.15"'],
                        ["containerd_version", "null"],
                        ["cgroup_driver", "systemd"],
                        ["registry_mirrors", S(["https://registry.aliyuncs.com"])],
                    ]
                ),
            ],
            [
                "repos",
                M(
                    [
                        ["base", "null"],
                        [
                            "docker_ce",
                            M(
                                [
                                    ["baseurl", "https://mirrors.example/docker-ce/stable"],
                                    ["gpgcheck", "true"],
                                    ["gpgkey", S(["https://mirrors.example/docker-ce/gpg"])],
                                ]
                            ),
                        ],
                        [
                            "kubernetes",
                            M(
                                [
                                    ["baseurl", "https://mirrors.example/kubernetes/el7/"],
                                    ["gpgcheck", "true"],
                                    ["repo_gpgcheck", "true"],
                                    ["gpgkey", S(["https://mirrors.example/k8s/yum-key.gpg"])],
                                ]
                            ),
                        ],
                    ]
                ),
            ],
            [
                "network",
                M(
                    [
                        ["plugin", "flannel"],
                        ["flannel_version", "v0.14.0"],
                        ["flannel_registry", "null"],
                    ]
                ),
            ],
            [
                "nodes",
                S(
                    [
                        M(
                            [
                                ["name", "master1"],
                                ["address", "192.168.177.100"],
                                ["role", "master"],
                            ]
                        ),
                        M([["name", "node1"], ["address", "192.168.177.101"], ["role", "worker"]]),
                        M(
                            [
                                ["name", "node2"],
                                ["address", "node2.example.com"],
                                ["role", "worker"],
                                ["internal_address", "192.168.177.102"],
                            ]
                        ),
                    ]
                ),
            ],
        ]
    )


def _flow(value) -> str:
    if isinstance(value, M):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value) + "}"
    if isinstance(value, S):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return value


def emit(tree, indent: int = 0) -> list[str]:
    """Block-style YAML for the tree; nodes and short collections in flow style."""
    pad = " " * indent
    lines = []
    if isinstance(tree, M):
        for key, value in tree:
            if isinstance(value, (M, S)) and value and not (key == "nodes" and indent == 0):
                lines.append(f"{pad}{key}:")
                lines.extend(emit(value, indent + 2))
            elif isinstance(value, S) and value:
                lines.append(f"{pad}{key}:")
                lines.extend(f"{pad}  - {_flow(v)}" for v in value)
            else:
                lines.append(f"{pad}{key}: {_flow(value)}")
    elif isinstance(tree, S):
        lines.extend(f"{pad}- {_flow(v)}" for v in tree)
    else:
        lines.append(f"{pad}{tree}")
    return lines


# YAML scalars and oddities, as source text
SCALARS = [
    "null", "~", "", "0", "-1", "1", "65536", "70000", "0x1F", "0o17", "0b101", "1_000",
    "1:30", "1.5", "1.20", "-0.0", "1e400", ".nan", ".NaN", ".inf", "-.inf", "true", "false",
    "yes", "no", "on", "off", "Y", "2020-01-01", "2020-13-45", "2001-12-14t21:59:43.10-05:00",
    "2020-02-30 10:00:00", "'quoted'", '"dq \\n newline"', '"tab\\there"', '"\\x00 nul"',
    '"\\ud800"', '"\\u2028"', "'é ü 中文 🚀'", "node1\u00a0", "\"root\\n\"", "'a: b'",
    "!!binary aGVsbG8=", "!!binary \"@@@\"", "!!str 22", "!!int abc", "!!int 0x",
    "!!float nope", "!!bool maybe", "!!timestamp nope", "!!null x", "!!set {a, b}",
    "!!omap [a, b]", "!!pairs 5", "!!map x", "!!seq x", "!!python/object:os.system {}",
    "!!python/name:os.system", "!!python/object/apply:os.system ['true']", "!custom x",
    "!<tag:yaml.org,2002:int> 12", "*nowhere", "9" * 5000, "-" + "9" * 5000, "1" * 400,
    "0." + "1" * 5000, "x" * 5000, "[]", "{}", "[[], [[]]]", "{a: {b: {c: [1, 2]}}}",
    "[1, 2.5, null, true]", "[master1, node1]", "{name: x}", "? [a]", "'192.168.177.101'",
    "10.0.0.0/8", "0.0.0.0/0", "256.1.1.1", "١٢٣.١.١.١", "١.٢٠.١٠", "v0.١٤.0",
    "master1.", "-bad-", "a" * 70, ".".join(["a" * 63] * 5), "host:0", "host:٣", "host:²",
    "http://x y", "file:///", "ipvs ", "22 ", "\"1.20.10\\n\"", "\"19.03.15\\n\"",
]  # fmt: skip

KEYS = [
    "cluster", "ssh", "nodes", "name", "address", "role", "internal_address", "port", "user",
    "baseurl", "gpgcheck", "version", "nodez", "adress", "usr", "Name", "'name'", "\"role\"",
    "? [a, b]", "? {a: 1}", "1", "null", "true", "2020-01-01", "'<<'", "'é'", "''", "x" * 300,
    "!!python/object:os.system k", "!!binary aGk=", "? !!binary aGk=", "? [[a]]", "? {[1]: 2}",
    "'a\\nb'", "\"a\\nb\"", "9" * 5000,
]  # fmt: skip


def scalars():
    return st.one_of(
        st.sampled_from(SCALARS),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
        st.text(
            alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=12
        ),
    )


def values():
    return st.recursive(
        scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(S),
            st.lists(st.tuples(st.sampled_from(KEYS), inner).map(list), max_size=3).map(M),
        ),
        max_leaves=6,
    )


def _containers(tree, out=None):
    out = [] if out is None else out
    if isinstance(tree, (M, S)):
        out.append(tree)
        for item in tree:
            _containers(item[1] if isinstance(tree, M) else item, out)
    return out


def _slots(tree):
    """(container, index) for every value that can be replaced."""
    return [(c, i) for c in _containers(tree) for i in range(len(c))]


def _set(container, i, value):
    if isinstance(container, M):
        container[i][1] = value
    else:
        container[i] = value


def _get(container, i):
    return container[i][1] if isinstance(container, M) else container[i]


@st.composite
def mutated_inventories(draw) -> str:
    tree = _base()
    anchors = ["base"]
    for _ in range(draw(st.integers(1, 5))):
        op = draw(
            st.sampled_from(
                [
                    "delete", "rename", "add", "replace", "replace", "node", "duplicate",
                    "anchor", "alias", "merge", "tag", "emptycontainer",
                ]
            )
        )  # fmt: skip
        slots = _slots(tree)
        maps = [c for c in _containers(tree) if isinstance(c, M)]
        if op == "delete" and slots:
            c, i = draw(st.sampled_from(slots))
            del c[i]
        elif op == "rename" and maps:
            m = draw(st.sampled_from(maps))
            if m:
                m[draw(st.integers(0, len(m) - 1))][0] = draw(st.sampled_from(KEYS))
        elif op == "add" and maps:
            m = draw(st.sampled_from(maps))
            m.insert(draw(st.integers(0, len(m))), [draw(st.sampled_from(KEYS)), draw(values())])
        elif op == "replace" and slots:
            c, i = draw(st.sampled_from(slots))
            _set(c, i, draw(values()))
        elif op == "node":
            nodes = next((v for k, v in tree if k == "nodes" and isinstance(v, S)), None)
            if nodes is not None:
                entry = draw(
                    st.one_of(
                        values(),
                        st.builds(
                            lambda n, a, r: M([["name", n], ["address", a], ["role", r]]),
                            st.sampled_from(["node3", "master1", "node1", *SCALARS[:20]]),
                            st.sampled_from(["192.168.177.103", "192.168.177.101", "10.244.0.1"]),
                            st.sampled_from(["worker", "master", "wroker", "null"]),
                        ),
                    )
                )
                nodes.insert(draw(st.integers(0, len(nodes))), entry)
        elif op == "duplicate" and maps:
            m = draw(st.sampled_from(maps))
            if m:
                k, v = m[draw(st.integers(0, len(m) - 1))]
                m.append([k, v])
        elif op == "anchor" and slots:
            c, i = draw(st.sampled_from(slots))
            name = draw(st.sampled_from(["a", "b", "base"]))
            anchors.append(name)
            _set(c, i, f"&{name} {_flow(_get(c, i))}")
        elif op == "alias" and slots:
            c, i = draw(st.sampled_from(slots))
            _set(c, i, f"*{draw(st.sampled_from([*anchors, 'missing']))}")
        elif op == "merge" and maps:
            m = draw(st.sampled_from(maps))
            target = draw(st.sampled_from([f"*{a}" for a in anchors] + ["5", "[*base]", "{}"]))
            m.insert(0, ["<<", target])
        elif op == "tag" and slots:
            c, i = draw(st.sampled_from(slots))
            tag = draw(st.sampled_from(["!!str", "!!map", "!!seq", "!!set", "!!omap", "!!int"]))
            _set(c, i, f"{tag} {_flow(_get(c, i))}")
        elif op == "emptycontainer" and slots:
            c, i = draw(st.sampled_from(slots))
            _set(c, i, draw(st.sampled_from([M(), S(), "null", "{}", "[]"])))
    # a document anchor the aliases can point at
    text = "\n".join(emit(tree)) + "\n"
    return text.replace("cluster:\n", "cluster: &base\n", 1) if "&base" not in text else text


@PROFILE
@given(text=mutated_inventories())
def test_fuzz_mutated_inventories(fuzz_file: Path, text: str):
    check_outcome(fuzz_file, text)


# ---- (2) Jinja templates around valid text ----

GOOD = """\
cluster:
  name: k8s
ssh:
  user: {{ env.SSH_USER }}
nodes:
  - {name: master1, address: 192.168.177.100, role: master}
  - {name: node1, address: 192.168.177.101, role: worker}
"""

JINJA = [
    "{{ undefined_name }}", "{{ env.NOT_SET }}", "{{ env['NOT_SET'] }}", "{{ env.NOT_SET.x }}",
    "{{ env.get('NOT_SET', 'd') }}", "{{ env.SSH_USER }}", "{{ 1 / 0 }}", "{{ 1 // 0 }}",
    "{{ 1 % 0 }}", "{{ 1 + 'a' }}", "{{ none.x }}", "{{ none() }}", "{{ [] | first }}",
    "{{ 'a' | int }}", "{{ x | nosuchfilter }}", "{{ 1 is nosuchtest }}", "{{ [1] | sum('x') }}",
    "{{ 'x' | attr('__class__') }}", "{{ range(3) | list }}", "{{ 'a\\nb' }}",
    "{{ '\\x1e9\\x1f' }}", "{{ '\\x1e' + '9' * 5000 + '\\x1f' }}", "{{ '\\u2028' }}",
    "{{ '\\x85' }}", "{{ '\\r' }}", "{{ '\\t' }}", "{{ '\\x00' }}", "{{ '\\ufeff' }}",
    "{{ 'x' * 3000 }}", "{{ 10 ** 5000 }}", "{{ 2 ** 0.5 }}", "{{ 'é' }}",
    "{% for i in range(3) %}\n  - {name: w{{ i }}, address: 10.9.0.{{ i }}, role: worker}\n"
    "{% endfor %}",
    "{% for i in 5 %}x{% endfor %}", "{% for %}", "{% endfor %}", "{% if x %}",
    "{% if true %}", "{% endif %}", "{% else %}", "{% raw %}{{ x }}{% endraw %}", "{% raw %}",
    "{% endraw %}", "{{", "}}", "{%", "%}", "{#", "#}", "{# comment #}", "{{ 'unterminated }}",
    "{{ ) }}", "{{ (1 }}", "{{ [1, 2 }}", "{{ }}", "{% %}", "{%- if true -%}x{%- endif -%}",
    "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}",
    "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
    "{{ " + "[" * 500 + "]" * 500 + " }}", "{% if 1 %}" * 400 + "x" + "{% endif %}" * 400,
    "{% include 'other.yaml' %}", "{% extends 'base.yaml' %}", "{% import 'm' as m %}",
    "{% set x = 1 / 0 %}", "{% set x %}\nblock\n{% endset %}{{ x | int }}", "{{ self }}",
    "{{ lipsum(1) | length > 0 }}", "{{ cycler(1, 2).next() }}", "{{ namespace(a=1).b.c }}",
    "{{ {'a': 1}['b'] }}", "{{ [1][5] }}", "{{ 'abc'[10] }}", "{{ 1 < 'a' }}",
    "{{ [1, 2] | batch(0) | list }}", "{{ 'x' | format(1, 2) }}", "{{ '%d' % 'a' }}",
    "{{ 'a' | indent('x') }}", "{{ 'x' | replace() }}", "{{ undefined_name | default('ok') }}",
    "{% filter upper %}x{% endfilter %}", "{% call nosuch() %}x{% endcall %}",
    "{% with a = 1 %}{{ a }}{% endwith %}", "{% break %}", "{% do 1 %}", "{{ 1 if }}",
]  # fmt: skip

_PIECES = [
    "{{", "}}", "{%", "%}", "{#", "#}", "-", " ", "\n", "for", "in", "endfor", "if", "endif",
    "raw", "endraw", "set", "=", "x", "env", "env.X", ".", "(", ")", "[", "]", "'", '"', "|",
    "0", "1", "/", "~", "range(2)", "true", "none", "default", ":", "- ", "name: ", "é",
]  # fmt: skip


@st.composite
def jinja_templates(draw) -> str:
    lines = draw(st.sampled_from([GOOD, GOOD, EXAMPLE])).split("\n")
    for _ in range(draw(st.integers(1, 3))):
        snippet = draw(
            st.one_of(
                st.sampled_from(JINJA),
                st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12).map("".join),
            )
        )
        i = draw(st.integers(0, len(lines)))
        where = draw(st.sampled_from(["line", "value", "inline"]))
        if where == "line" or i >= len(lines):
            lines.insert(i, snippet)
        elif where == "value":
            key, sep, _ = lines[i].partition(": ")
            lines[i] = f"{key}{sep or ': '}{snippet}"
        else:
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut] + snippet + lines[i][cut:]
    return "\n".join(lines)


@PROFILE
@given(text=jinja_templates())
def test_fuzz_jinja_templates(fuzz_file: Path, text: str):
    check_outcome(fuzz_file, text)


# ---- (3) raw text and bytes ----

GOOD_PLAIN = GOOD.replace("{{ env.SSH_USER }}", "root")

CHUNKS = [
    b"\t", b"\xef\xbb\xbf", b"\x00", b"\x1e", b"\x1f", b"\x1e9\x1f",
    b"\x1e" + b"9" * 5000 + b"\x1f",
    b"\x7f", b"\x1b[31m", "\x85".encode(), "\u2028".encode(), "\u2029".encode(), b"\r",
    b"\r\n", b"\n", b"\xff", b"\xfe\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
    b"x" * 200_000, b"#" + b"x" * 100_000, b"!!python/object:os.system {}",
    b"!!python/object/apply:os.system ['true']", b"!!python/name:os.system ",
    b"!!binary ", b"!!binary @@@", b"&a ", b"*a", b"*zz", b"<<: *a\n", b"<<: 5\n",
    b"[" * 3000, b"{a: " * 2000, b"- " * 2000, b"[" * 3000 + b"]" * 3000,
    b"\n" + b"  " * 1000 + b"k: v\n", b"\nx: &a [*a]\n", b"\nx: &a {<<: *a}\n",
    b"\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    b"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n",
    b"\nssh: {port: 22}\n", b"\nnodes: []\n", b"\n---\nx: 1\n", b"\n...\n", b"%YAML 1.1\n---\n",
    b"%YAML 2.0\n", b"%TAG ! tag:x,2000:\n", b"? ", b": ", b"- ", b"|", b">", b"'", b'"',
    b"{{", b"{%", b"{#", b"}}", b"%}", "é中🚀".encode(), b"2020-13-45", b"9" * 5000,
    b"\n? [a, b]\n: c\n", b"\n? {[1]: 2}\n: c\n",
]  # fmt: skip


@st.composite
def raw_inputs(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "text", "splice", "splice", "splice"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8")
    data = bytearray(draw(st.sampled_from([GOOD_PLAIN, GOOD_PLAIN, EXAMPLE])).encode())
    for _ in range(draw(st.integers(1, 3))):
        chunk = draw(st.one_of(st.sampled_from(CHUNKS), st.binary(min_size=1, max_size=8)))
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 4))
        data[at : at + cut] = chunk
    return bytes(data)


@PROFILE
@given(data=raw_inputs())
def test_fuzz_raw_text_and_bytes(fuzz_file: Path, data: bytes):
    check_outcome(fuzz_file, data)


@PROFILE
@given(text=jinja_templates())
def test_fuzz_line_markers_never_change_the_rendered_text(text: str):
    """The invisible line markers are stripped to exactly what Jinja renders without them."""
    env = inventory._environment()
    source = inventory._NEWLINE.sub("\n", text)
    instrumented = inventory._instrument(env, source)
    if instrumented is None:
        return
    marked, mark = instrumented
    try:
        plain = env.from_string(source).render(env=inventory._Env(ENVIRON))
    except Exception:
        return
    rendered = env.from_string(marked).render(env=inventory._Env(ENVIRON))
    out, lines = inventory._line_map(rendered, mark, source.count("\n") + 1)
    assert out == plain
    assert len(lines) == out.count("\n") + 1


# ---- regressions: every crash (or wrong acceptance) the fuzzer found, as a plain table ----

G = GOOD_PLAIN
BILLION = "".join(  # 9**8 values once the aliases are expanded
    f"{name}: &{name} [{', '.join([item] * 9)}]\n"
    for name, item in zip("abcdefgh", ["x", "*a", "*b", "*c", "*d", "*e", "*f", "*g"], strict=True)
)

# (id, file content, line of the first problem, fragment of it)
REGRESSIONS = [
    # Jinja: TemplateSyntaxError escaped from the lexer run that places the line markers
    ("jinja-unterminated-string", G + "x: {{ 'abc }}\n", 8, "template syntax: unexpected char"),
    ("jinja-unbalanced-paren", G + "x: {{ ) }}\n", 8, "template syntax: unexpected ')'"),
    # ValueError from the lexer's int() of a 5000-digit literal
    ("jinja-huge-literal", G + "x: {{ " + "9" * 5000 + " }}\n", 8, "template syntax: Exceeds"),
    # used to be a message without a line (compile-time constant folding / recursion)
    ("jinja-huge-power", G + "x: {{ 10 ** 5000 }}\n", 8, "template: Exceeds the limit"),
    ("jinja-deep-parens", G + "x: {{ " + "(" * 3000 + "1" + ")" * 3000 + " }}\n", 8,
     "template: nested too deeply to compile"),
    ("jinja-deep-blocks", G + "{% if 1 %}" * 400 + "x" + "{% endif %}" * 400 + "\n", 8,
     "template: nested too deeply to compile"),
    ("jinja-recursive-macro", G + "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}\n", 8,
     "template: recursion too deep"),
    # ValueError / KeyError / AttributeError from YAML's constructors
    ("invalid-date", G.replace("name: k8s", "name: 2020-13-45"), 2,
     "cluster.name: '2020-13-45' looks like a date but is not a valid one (quote it"),
    ("invalid-datetime", G.replace("name: k8s", "name: 2020-02-30 10:00:00"), 2,
     "cluster.name: '2020-02-30 10:00:00' looks like a date but is not a valid one"),
    ("huge-int", G.replace("user: root", "port: " + "9" * 5000), 4,
     "...' has too many digits for a number (quote it if it is text)"),
    ("tag-int", G.replace("user: root", "port: !!int abc"), 4,
     "ssh.port: 'abc' is not a whole number as its tag !!int says (remove the tag)"),
    ("tag-int-empty", G.replace("user: root", 'port: !!int ""'), 4,  # IndexError
     "ssh.port: '' is not a whole number as its tag !!int says (remove the tag)"),
    ("tag-float", G.replace("user: root", "connect_timeout: !!float x"), 4,
     "ssh.connect_timeout: 'x' is not a number as its tag !!float says"),
    ("tag-bool", G + "repos:\n  base: {baseurl: 'http://x/', gpgcheck: !!bool maybe}\n", 9,
     "repos.base.gpgcheck: 'maybe' is not true or false as its tag !!bool says"),
    ("tag-timestamp", G.replace("name: k8s", "name: !!timestamp nope"), 2,
     "cluster.name: 'nope' is not a date as its tag !!timestamp says"),
    # yaml ConstructorError escaped (constructing ran outside the YAML error handler)
    ("tag-seq-on-scalar", G.replace("name: k8s", "name: !!seq x"), 2,
     "cluster.name: YAML tag !!seq is not allowed"),
    ("tag-pairs", G.replace("name: k8s", "name: !!pairs 5"), 2,
     "cluster.name: YAML tag !!pairs is not allowed"),
    ("python-tag-key", G.replace("cluster:", "!!python/object:os.system cluster:"), 1,
     "(top level): YAML tag !!python/object:os.system is not allowed"),
    ("local-tag", "%TAG ! tag:x,2000:\n---\n" + G.replace("name: k8s", "name: !foo k8s"), 4,
     "cluster.name: YAML tag tag:x,2000:foo is not allowed"),
    ("list-key", G.replace("cluster:", "? [a, b]:"), 1,
     "(top level): a key must be a plain word, not a mapping"),
    ("unhashable-key", G + "? {[1]: 2}\n: c\n", 8, "(top level): a key must be a plain word"),
    ("merge-scalar", "<<: 5\n" + G, 1, "YAML: while constructing a mapping expected a mapping"),
    ("plain-equals", G.replace("user: root", "user: ="), 4, "ssh.user: '=' is not a valid login"),
    # silently accepted as a plain list: now refused
    ("python-tag-on-list", G.replace("name: k8s", "name: !!python/object/apply:os.system [x]"),
     2, "cluster.name: YAML tag !!python/object/apply:os.system is not allowed here"),
    ("set-tag", G.replace("user: root", "user: !!set {a}"), 4, "ssh.user: YAML tag !!set"),
    # RecursionError (a cycle of aliases; nesting deeper than Python's stack)
    ("alias-cycle", G + "nodes2: &a [*a]\n", 8,
     "nodes2[0]: an alias (*name) inside the value it refers to"),
    ("deep-flow", G + "x: " + "[" * 3000 + "]" * 3000 + "\n", 8,
     "YAML: lists and mappings are nested more than 50 levels deep"),
    ("deep-block", G + "x:" + "".join("\n" + " " * i + "k:" for i in range(1, 1000)) + " v\n", 57,
     "YAML: lists and mappings are nested more than 50 levels deep"),
    # exponential alias expansion (a billion laughs): seconds per level, now bounded
    ("billion-laughs", G + BILLION, 8,
     "YAML: aliases (*name) expand to more than 50000 values"),
    # messages without a line
    ("nul-byte", G.encode() + b"x: \x00\n", 8, "YAML: the control character '\\x00'"),
    ("ascii-control", G.replace("name: k8s", 'name: "\x1f"'), 2,
     "YAML: the control character '\\x1f' is not allowed"),
    ("marker-characters", G + "# \x1e9\x1f\n", 8, "YAML: the control character '\\x1e'"),
    ("invalid-utf8", G.encode() + b"x: \xff\n", 8,
     "not UTF-8 text: byte 0xff at column 4 (save the file as UTF-8)"),
    ("utf16", "\ufeffcluster: {}\n".encode("utf-16-le").replace(b"\xff\xfe", b"", 0), 1,
     "(it looks like UTF-16: save it as UTF-8)"),
    ("only-comments", "# nothing yet\n", 1, "no YAML content: the file is empty or only comments"),
    # accepted values the toolkit cannot use
    ("nan-timeout", G.replace("user: root", "connect_timeout: .nan"), 4,
     "ssh.connect_timeout: '.nan' must be a number of seconds greater than 0 (and not .inf"),
    ("inf-timeout", G.replace("user: root", "command_timeout: .inf"), 4,
     "ssh.command_timeout: '.inf' must be a number of seconds greater than 0"),
    ("huge-timeout", G.replace("user: root", "command_timeout: 1" + "0" * 400), 4,
     "ssh.command_timeout: 10000000000000000000... (401 digits) must be a number of seconds"),
    ("newline-in-user", G.replace("user: root", 'user: "root\\n"'), 4,
     "ssh.user: 'root\\n' contains a control character (a newline, tab, ...): remove it"),
    ("newline-in-name", G.replace("name: node1", 'name: "node1\\n"'), 7,
     "nodes[1].name: 'node1\\n' contains a control character"),
    ("newline-in-repo-name",
     G + "repos:\n  base: {baseurl: 'http://x/', gpgcheck: false, name: \"a\\nb=1\"}\n", 9,
     "repos.base.name: 'a\\nb=1' contains a control character"),
    ("unicode-digits-version",
     G.replace("name: k8s", "name: k8s\n  kubernetes_version: '١.٢٠.١٠'"), 3,
     "cluster.kubernetes_version: '١.٢٠.١٠' is not a Kubernetes version like 1.20.10"),
    ("superscript-port",
     G.replace("name: k8s", "name: k8s\n  control_plane_endpoint: 'h:²'"), 3,
     "cluster.control_plane_endpoint: 'h:²' has a port that is not from 1 to 65535"),
    # unreadable messages: a 1000-digit value, a raw newline in a key
    ("long-value-shortened", G.replace("user: root", "port: " + "9" * 1000), 4,
     "ssh.port: 99999999999999999999... (1000 digits) must be a whole number"),
    ("odd-key-quoted", G + '"a\\nb": 1\n', 8, "['a\\nb']: unknown key"),
    # wrong lines: YAML counts U+2028 as a line break, the line map did not; a loop after
    # {%- (whitespace control) shifted the lines; CRLF files (a guard, was right before)
    ("line-separator", G.replace("ssh:", "x: 'a\u2028b'\nssh:\n  port: 0"), 5,
     "ssh.port: 0 must be a whole number"),
    ("crlf-loop",
     (G + "{% for i in range(5) %}\n  - {name: w{{ i }}, address: 10.0.0.{{ i + 1 }}, "
      "role: worker}\n{% endfor %}\n  - {name: n3, address: 400.1.1.1, role: worker}\n"
      ).replace("\n", "\r\n"), 11,
     "nodes[7].address: '400.1.1.1' is not a valid IPv4 address"),
    ("whitespace-control-loop",
     G + "\n{%- for i in range(2) %}\n  - {name: w{{ i }}, address: 300.0.0.{{ i }}, "
     "role: worker}\n  {%- endfor %}\n  - {name: n3, address: 400.1.1.1, role: worker}\n", 10,
     "nodes[2].address: '300.0.0.0' is not a valid IPv4 address"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "line", "fragment"), [r[1:] for r in REGRESSIONS], ids=[r[0] for r in REGRESSIONS]
)
def test_regressions_are_clean_errors_at_file_and_line(
    tmp_path: Path, data: str | bytes, line: int, fragment: str
):
    path = tmp_path / "inventory.yaml"
    err = check_outcome(path, data)
    assert isinstance(err, InventoryError), "accepted"
    hits = [m for m in err.problems if fragment in m]
    assert hits, f"{fragment!r} not in {err.problems}"
    assert hits[0].startswith(f"{path}:{line}: "), hits[0]


def test_merged_keys_may_be_overridden_but_own_keys_not(tmp_path: Path):
    """<< merges are not duplicates (this was rejected as 'duplicate key')."""
    text = G.replace(
        "  - {name: node1, address: 192.168.177.101, role: worker}",
        "  - &w {name: node1, address: 192.168.177.101, role: worker}\n"
        "  - {<<: *w, name: node2, address: 192.168.177.102}",
    )
    path = tmp_path / "inventory.yaml"
    inv = check_outcome(path, text)
    assert isinstance(inv, Inventory), inv
    assert [(n.name, n.address, n.role) for n in inv.nodes][1:] == [
        ("node1", "192.168.177.101", "worker"),
        ("node2", "192.168.177.102", "worker"),
    ]
    err = check_outcome(path, text.replace("name: node2,", "name: node2, name: n2,"))
    assert isinstance(err, InventoryError)
    assert err.problems == [f"{path}:8: nodes[2].name: duplicate key"]


# ---- files that cannot be read ----


def _problems(path: Path) -> list[str]:
    with pytest.raises(InventoryError) as err:
        load(path, environ={})
    assert err.value.exit_code == 2
    assert str(path) in str(err.value)
    return err.value.problems


def test_missing_file(tmp_path: Path):
    path = tmp_path / "nope.yaml"
    assert _problems(path) == ["file not found (copy inventory.example.yaml and edit it)"]


def test_directory_instead_of_a_file(tmp_path: Path):
    assert _problems(tmp_path) == [f"{tmp_path} is a directory, not an inventory file"]


def test_unreadable_file(tmp_path: Path):
    path = tmp_path / "inventory.yaml"
    path.write_text(GOOD_PLAIN)
    path.chmod(0)
    try:
        try:
            path.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("this user (root) can read a file with mode 000")
        assert _problems(path) == [f"cannot read {path}: Permission denied"]
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n", "\ufeff"])
def test_empty_file(tmp_path: Path, content: str):
    path = tmp_path / "inventory.yaml"
    path.write_text(content)
    assert _problems(path) == [
        f"{path}:1: no YAML content: the file is empty or only comments "
        "(see inventory.example.yaml)"
    ]
