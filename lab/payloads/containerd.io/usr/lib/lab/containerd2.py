"""containerd 2.x's config loader, for the containerd.io 2.x builds (Debian's containerd, the
real loader the 1.x builds use, is 1.6 and cannot read `version = 3`).

Followed from containerd's source at v2.1.5 / v2.2.1 (the same in both for what is modelled):
- cmd/containerd/command/main.go: the default path is loaded only when it exists; any error
  ends the daemon as cmd/containerd/main.go prints it: `containerd: <err>`, exit 1.
- cmd/containerd/server/config/config.go, LoadConfig/loadConfigFile: go-toml v2 (v2.2.4) with
  DisallowUnknownFields. A syntax error is logged (`Failure unmarshaling TOML` with file, row,
  column) and returned as `failed to unmarshal TOML at row R column C: toml: <msg>`; an error
  without a position (a key defined twice) as `failed to unmarshal TOML: toml: <msg>`. An
  unknown key is a warning (`Ignoring unknown key in TOML`, file/row/column/key) and the file is
  decoded again without it. A config without `version` (0/1) is migrated at load (v1Migrate:
  short plugin names become URIs, `cri` -> `io.containerd.grpc.v1.cri`, containerd#10905 /
  PR #10907) straight to version 3, so NO plugin migration runs for it: its old
  `[plugins.cri]` keys land in io.containerd.grpc.v1.cri's ServerConfig as unknown keys.
  ValidateVersion: a version above 3 and a disabled/required plugin without a dot are refused
  (`failed to load TOML from <path>: ...`).
- cmd/containerd/server/server.go New: a version 2 config is migrated by each loaded plugin's
  ConfigMigration (plugins/cri/cri.go, plugins/cri/images/plugin.go,
  plugins/cri/runtime/plugin.go) and logged `Configuration migrated from version 2, use
  `containerd config migrate` to avoid migration` (field t). Plugin configs are decoded only for
  registered, not disabled plugins (Config.Decode): unknown keys warn `Ignoring unknown key in
  TOML for plugin` (plugin, key) and are dropped; a config section of an unknown plugin id is
  never read (no message). Disabled plugins: V2DisabledFilter (by URI).
- internal/cri/config: DefaultImageConfig (pinned_images.sandbox = DefaultSandboxImage),
  DefaultRuntimeConfig (runc with SystemdCgroup = false, cni bin_dirs ['/opt/cni/bin'],
  conf_dir /etc/cni/net.d, default_runtime_name runc); internal/cri/server/runtime_config_linux.go
  getCgroupDriver (the default handler first, then by name; runc's SystemdCgroup).
- plugins/cri/cri.go: the CRI gRPC service needs the runtime and images CRI plugins; one of them
  disabled: `failed to load plugin` with `unable to load CRI runtime service plugin dependency:
  no plugins registered for io.containerd.cri.v1.runtime: plugin: not found` (the text as moby
  PR #53585 quotes it for the podsandbox controller).
Not modelled (lab): imports, proxy plugins, plugins other than the three CRI ones (their
sections are read by nobody here), type errors inside plugin sections other than the fields
listed in PLUGIN_FIELDS, and go-toml errors other than those of `parse` below (those are
reported with a `lab:` mark).
"""

from __future__ import annotations

import copy
import time

import tomllib

CONFIG = "/etc/containerd/config.toml"
CRI = "io.containerd.grpc.v1.cri"
IMAGES = "io.containerd.cri.v1.images"
RUNTIME = "io.containerd.cri.v1.runtime"
ADDRESS = "/run/containerd/containerd.sock"

# internal/cri/config/config.go DefaultSandboxImage per line
SANDBOX = {"2.0": "registry.k8s.io/pause:3.10", "2.1": "registry.k8s.io/pause:3.10",
           "2.2": "registry.k8s.io/pause:3.10.1", "2.3": "registry.k8s.io/pause:3.10.2"}

# cmd/containerd/server/config Config and its structs: toml key -> (Go field, Go type)
TOP = {
    "version": ("Version", "int"), "root": ("Root", "string"), "state": ("State", "string"),
    "temp": ("TempDir", "string"), "grpc": ("GRPC", "config.GRPCConfig"),
    "ttrpc": ("TTRPC", "config.TTRPCConfig"), "debug": ("Debug", "config.Debug"),
    "metrics": ("Metrics", "config.MetricsConfig"),
    "disabled_plugins": ("DisabledPlugins", "[]string"),
    "required_plugins": ("RequiredPlugins", "[]string"),
    "plugins": ("Plugins", "map[string]interface {}"), "oom_score": ("OOMScore", "int"),
    "cgroup": ("Cgroup", "config.CgroupConfig"),
    "proxy_plugins": ("ProxyPlugins", "map[string]config.ProxyPlugin"),
    "timeouts": ("Timeouts", "map[string]string"), "imports": ("Imports", "[]string"),
    "stream_processors": ("StreamProcessors", "map[string]config.StreamProcessor"),
}
SUB = {
    "grpc": ("config.GRPCConfig", {
        "address": ("Address", "string"), "tcp_address": ("TCPAddress", "string"),
        "tcp_tls_ca": ("TCPTLSCA", "string"), "tcp_tls_cert": ("TCPTLSCert", "string"),
        "tcp_tls_key": ("TCPTLSKey", "string"), "uid": ("UID", "int"), "gid": ("GID", "int"),
        "max_recv_message_size": ("MaxRecvMsgSize", "int"),
        "max_send_message_size": ("MaxSendMsgSize", "int")}),
    "ttrpc": ("config.TTRPCConfig", {"address": ("Address", "string"), "uid": ("UID", "int"),
                                     "gid": ("GID", "int")}),
    "debug": ("config.Debug", {"address": ("Address", "string"), "uid": ("UID", "int"),
                               "gid": ("GID", "int"), "level": ("Level", "string"),
                               "format": ("Format", "string")}),
    "metrics": ("config.MetricsConfig", {"address": ("Address", "string"),
                                         "grpc_histogram": ("GRPCHistogram", "bool")}),
    "cgroup": ("config.CgroupConfig", {"path": ("Path", "string")}),
}
# internal/cri/config structs: the keys each CRI plugin knows (a table's own keys; None = a map
# or an options table whose keys are not checked)
SERVER_KEYS = {"disable_tcp_service", "stream_server_address", "stream_server_port",
               "stream_idle_timeout", "enable_tls_streaming", "x509_key_pair_streaming"}
IMAGE_KEYS = {"snapshotter", "disable_snapshot_annotations", "discard_unpacked_layers",
              "pinned_images", "runtime_platforms", "registry", "image_decryption",
              "max_concurrent_downloads", "concurrent_layer_fetch_buffer",
              "image_pull_progress_timeout", "image_pull_with_sync_fs", "stats_collect_period",
              "use_local_image_pull"}
REGISTRY_KEYS = {"config_path", "mirrors", "configs", "auths", "headers"}
RUNTIME_KEYS = {"containerd", "cni", "enable_selinux", "selinux_category_range",
                "max_container_log_line_size", "disable_apparmor", "restrict_oom_score_adj",
                "disable_proc_mount", "unset_seccomp_profile",
                "tolerate_missing_hugetlb_controller", "disable_hugetlb_controller",
                "device_ownership_from_security_context", "ignore_image_defined_volumes",
                "netns_mounts_under_state_dir", "enable_unprivileged_ports",
                "enable_unprivileged_icmp", "enable_cdi", "cdi_spec_dirs",
                "drain_exec_sync_io_timeout", "ignore_deprecation_warnings"}
CONTAINERD_KEYS = {"default_runtime_name", "runtimes", "ignore_blockio_not_enabled_errors",
                   "ignore_rdt_not_enabled_errors"}
RUNC_KEYS = {"runtime_type", "runtime_path", "pod_annotations", "container_annotations",
             "options", "privileged_without_host_devices",
             "privileged_without_host_devices_all_devices_allowed", "cgroup_writable",
             "base_runtime_spec", "cni_conf_dir", "cni_max_conf_num", "snapshotter",
             "sandboxer", "io_type"}
CNI_KEYS = {"bin_dir", "bin_dirs", "conf_dir", "max_conf_num", "setup_serially",
            "conf_template", "ip_pref", "use_internal_loopback"}
# string fields of the plugin structs the lab reads: key path -> Go struct.field
PLUGIN_FIELDS = {
    (IMAGES, "registry", "config_path"): "config.Registry.ConfigPath",
    (RUNTIME, "containerd", "default_runtime_name"): "config.ContainerdConfig.DefaultRuntimeName",
    (RUNTIME, "cni", "conf_dir"): "config.CniConfig.NetworkPluginConfDir",
    (RUNTIME, "cni", "bin_dir"): "config.CniConfig.NetworkPluginBinDir",
}


class Refused(Exception):
    """containerd exits: `containerd: <message>` (exit 1)."""


def logline(level: str, msg: str, **fields) -> str:
    """containerd/log's logrus text line (not a terminal): time, level, msg, then the fields
    sorted by key, each quoted only when logrus' needsQuoting says so."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    parts = [f'time="{stamp}"', f"level={level}", f"msg={_q(msg, force=True)}"]
    parts += [f"{k}={_q(str(v))}" for k, v in sorted(fields.items())]
    return " ".join(parts)


def _q(s: str, force: bool = False) -> str:
    plain = s and all(c.isascii() and (c.isalnum() or c in "-._/@^+") for c in s)
    if plain and not force:
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# ---- go-toml v2's parser, for its error texts and positions -------------------------------

class TomlError(Exception):
    def __init__(self, msg: str, offset: int | None):
        super().__init__(msg)
        self.msg, self.offset = msg, offset


def _u(c: int) -> str:
    """Go's %#U."""
    return f"U+{c:04X} '{chr(c)}'"


def parse(data: bytes) -> list[tuple]:
    """The document's expressions as go-toml's unstable.Parser reads them:
    ("table"|"array_table", key, key_offset) and ("kv", key, key_offset, value_offset),
    keys as tuples. Raises TomlError(msg, offset) with go-toml's message."""
    p = _P(data)
    return p.run()


class _P:
    def __init__(self, data: bytes):
        self.d = data
        self.out: list[tuple] = []

    def run(self) -> list[tuple]:
        i, first, n = 0, True, len(self.d)
        while i < n:
            if not first:
                i = self.newline(i)
                if i >= n:
                    break
            i = self.expression(i)
            first = False
        return self.out

    def newline(self, i: int) -> int:
        c = self.d[i]
        if c == 0x0A:
            return i + 1
        if c == 0x0D:
            if self.d[i + 1:i + 2] == b"\n":
                return i + 2
            raise TomlError("windows new line expected", i)
        raise TomlError(f"expected newline but got {_u(c)}", i)

    def ws(self, i: int) -> int:
        while i < len(self.d) and self.d[i] in (0x20, 0x09):
            i += 1
        return i

    def comment(self, i: int) -> int:
        while i < len(self.d) and self.d[i] not in (0x0A, 0x0D):
            i += 1
        return i

    def expression(self, i: int) -> int:
        i = self.ws(i)
        if i >= len(self.d):
            return i
        c = self.d[i]
        if c == ord("#"):
            return self.comment(i)
        if c in (0x0A, 0x0D):
            return i
        if c == ord("["):
            i = self.table(i)
        else:
            key, koff, voff, i = self.keyval(i)
            self.out.append(("kv", key, koff, voff))
        i = self.ws(i)
        if i < len(self.d) and self.d[i] == ord("#"):
            i = self.comment(i)
        return i

    def expect(self, ch: str, i: int) -> int:
        if i >= len(self.d):
            raise TomlError(f"expected character {ch} but the document ended here", i)
        if self.d[i] != ord(ch):
            raise TomlError(f"expected character {ch}", i)
        return i + 1

    def table(self, i: int) -> int:
        array = self.d[i + 1:i + 2] == b"["
        i = self.ws(i + (2 if array else 1))
        koff = i
        key, i = self.key(i)
        i = self.ws(i)
        i = self.expect("]", i)
        if array:
            i = self.expect("]", i)
        self.out.append(("array_table" if array else "table", key, koff))
        return i

    def keyval(self, i: int) -> tuple:
        koff = i
        key, i = self.key(i)
        i = self.ws(i)
        if i >= len(self.d):
            raise TomlError("expected = after a key, but the document ends there", i)
        i = self.expect("=", i)
        i = self.ws(i)
        voff = i
        i = self.val(i)
        return key, koff, voff, i

    def key(self, i: int) -> tuple[tuple, int]:
        parts = []
        part, i = self.simple_key(i)
        parts.append(part)
        while True:
            i = self.ws(i)
            if i < len(self.d) and self.d[i] == ord("."):
                i = self.ws(i + 1)
                part, i = self.simple_key(i)
                parts.append(part)
            else:
                return tuple(parts), i

    def simple_key(self, i: int) -> tuple[str, int]:
        if i >= len(self.d):
            raise TomlError("expected key but found none", i)
        c = self.d[i]
        if c == ord("'"):
            end = self.literal(i)
            return self.d[i + 1:end - 1].decode(), end
        if c == ord('"'):
            end = self.basic(i)
            return tomllib.loads(f"k = {self.d[i:end].decode()}")["k"], end
        j = i
        while j < len(self.d) and (chr(self.d[j]).isascii() and
                                   (chr(self.d[j]).isalnum() or self.d[j] in b"-_")):
            j += 1
        if j == i:
            raise TomlError(f"invalid character at start of key: {chr(c)}", i)
        return self.d[i:j].decode(), j

    def literal(self, i: int) -> int:
        j = i + 1
        while j < len(self.d):
            if self.d[j] == ord("'"):
                return j + 1
            if self.d[j] in (0x0A, 0x0D):
                raise TomlError("literal strings cannot have new lines", j)
            j += 1
        raise TomlError("unterminated literal string", len(self.d))

    def basic(self, i: int) -> int:
        j = i + 1
        while j < len(self.d):
            c = self.d[j]
            if c == ord('"'):
                return j + 1
            if c in (0x0A, 0x0D):
                raise TomlError("basic strings cannot have new lines", j)
            if c == ord("\\"):
                if len(self.d) < j + 2:
                    raise TomlError("need a character after \\", j)
                j += 1
            j += 1
        raise TomlError('basic string not terminated by "', len(self.d))

    def multiline(self, i: int, delim: bytes) -> int:
        end = self.d.find(delim, i + 3)
        if end < 0:
            what = "literal" if delim == b"'''" else "basic"
            raise TomlError(f"multiline {what} string not terminated by {delim.decode()}",
                            len(self.d))
        while self.d[end + 3:end + 4] == delim[:1]:
            end += 1
        return end + 3

    def val(self, i: int) -> int:
        d = self.d
        if i >= len(d):
            raise TomlError("expected value, not eof", i)
        c = d[i]
        if d[i:i + 3] in (b'"""', b"'''"):
            return self.multiline(i, d[i:i + 3])
        if c == ord('"'):
            return self.basic(i)
        if c == ord("'"):
            return self.literal(i)
        if c == ord("t"):
            if d[i:i + 4] != b"true":
                raise TomlError("expected 'true'", i)
            return i + 4
        if c == ord("f"):
            if d[i:i + 5] != b"false":
                raise TomlError("expected 'false'", i)
            return i + 5
        if c == ord("["):
            return self.array(i)
        if c == ord("{"):
            return self.inline(i)
        return self.number(i)

    def ws_comment_nl(self, i: int) -> int:
        while i < len(self.d):
            c = self.d[i]
            if c in (0x20, 0x09, 0x0A):
                i += 1
            elif c == ord("#"):
                i = self.comment(i)
            elif c == 0x0D:
                i = self.newline(i)
            else:
                break
        return i

    def array(self, i: int) -> int:
        start, first = i, True
        i += 1
        while i < len(self.d):
            i = self.ws_comment_nl(i)
            if i >= len(self.d):
                raise TomlError("array is incomplete", start)
            if self.d[i] == ord("]"):
                break
            if self.d[i] == ord(","):
                if first:
                    raise TomlError("array cannot start with comma", i)
                i = self.ws_comment_nl(i + 1)
            elif not first:
                raise TomlError("array elements must be separated by commas", i)
            if i < len(self.d) and self.d[i] == ord("]"):
                break
            i = self.val(i)
            i = self.ws_comment_nl(i)
            first = False
        return self.expect("]", i)

    def inline(self, i: int) -> int:
        first = True
        i += 1
        while i < len(self.d):
            prev = i
            i = self.ws(i)
            if i >= len(self.d):
                raise TomlError("inline table is incomplete", prev)
            if self.d[i] == ord("}"):
                break
            if not first:
                i = self.ws(self.expect(",", i))
            _, _, _, i = self.keyval(i)
            first = False
        return self.expect("}", i)

    def number(self, i: int) -> int:
        d = self.d
        if d[i:i + 1] == b"i":
            if d[i:i + 3] != b"inf":
                raise TomlError("expected 'inf'", i)
            return i + 3
        if d[i:i + 1] == b"n":
            if d[i:i + 3] != b"nan":
                raise TomlError("expected 'nan'", i)
            return i + 3
        j = i
        if chr(d[i]).isdigit():  # integers, floats, hex/octal/binary, dates and times
            while j < len(d) and ((chr(d[j]).isascii() and chr(d[j]).isalnum())
                                  or d[j] in b"+-_.:"):
                j += 1
        else:  # scanIntOrFloat: signs, digits, '_', '.', 'e'/'E'
            while j < len(d) and (chr(d[j]).isdigit() or d[j] in b"+-_.eE"):
                j += 1
        if j == i:
            raise TomlError("incomplete number", i)
        return j


def position(data: bytes, offset: int) -> tuple[int, int]:
    """go-toml errors.go positionAtEnd: 1-based row and column (bytes) of OFFSET."""
    row, col = 1, 1
    for c in data[:offset]:
        if c == 0x0A:
            row, col = row + 1, 1
        else:
            col += 1
    return row, col


# ---- loading ------------------------------------------------------------------------------

def _kind(v) -> str:
    """go-toml's name for a TOML value's kind in type errors."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "table"
    return "datetime"


def _type_error(value, struct: str, field: str, gotype: str) -> str | None:
    """go-toml unmarshaler.go's text for VALUE into a Go field of GOTYPE (None: it fits)."""
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "string": lambda v: isinstance(v, str),
          "bool": lambda v: isinstance(v, bool),
          "[]string": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)}
    check = ok.get(gotype, lambda v: isinstance(v, dict))
    if check(value):
        return None
    if isinstance(value, bool) and gotype != "bool":
        return f"cannot assign boolean to a {'true' if value else 'false'}"
    if isinstance(value, list) and gotype == "[]string":
        bad = next(x for x in value if not isinstance(x, str))
        return _type_error(bad, struct, field, "string")
    return f"cannot decode TOML {_kind(value)} into struct field {struct}.{field} of type {gotype}"


class Loaded:
    """What containerd 2.x loaded: the config after migration and its log lines."""

    def __init__(self, version: str):
        self.version = version
        self.logs: list[str] = []
        self.file_version = 3
        self.top: dict = {}
        self.plugins: dict = {}
        self.disabled: list[str] = []
        self.path = CONFIG


def load(path: str, version: str) -> Loaded:
    """Load PATH as containerd VERSION's daemon does (Refused when it would exit)."""
    res = Loaded(version)
    res.path = path
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return _defaults(res)
    try:
        exprs = parse(data)
    except TomlError as exc:
        row, col = position(data, exc.offset)
        res.logs.append(logline("error", "Failure unmarshaling TOML", file=path, row=row,
                                column=col, error=f"toml: {exc.msg}"))
        raise Refused(f"failed to unmarshal TOML at row {row} column {col}: toml: {exc.msg}",
                      res.logs) from None
    seen: set[tuple] = set()
    current: tuple = ()
    where: dict[tuple, tuple[int, int]] = {}
    for e in exprs:
        if e[0] in ("table", "array_table"):
            current = e[1]
            where.setdefault(current, (e[2], e[2]))
            continue
        full = current + e[1]
        if full in seen:
            raise Refused(f"failed to unmarshal TOML: toml: key {e[1][-1]} is already defined",
                          res.logs)
        seen.add(full)
        where[full] = (e[2], e[3])
    try:
        doc = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Refused(f"lab: a TOML error whose go-toml text is not modelled: {exc}",
                      res.logs) from None
    # strict decode into Config: type errors first (the decode stops at the first), unknown keys
    for key, value in doc.items():
        if key in TOP:
            field, gotype = TOP[key]
            if key in SUB:
                struct, fields = SUB[key]
                if not isinstance(value, dict):
                    _fail_type(res, data, where, (key,), value, "config.Config", field, gotype)
                for k, v in value.items():
                    if k in fields:
                        _fail_type(res, data, where, (key, k), v, struct, *fields[k])
                continue
            _fail_type(res, data, where, (key,), value, "config.Config", field, gotype)
    unknown = [k for k in _all_keys(doc) if not _known_top(k)]
    for key in unknown:
        off = where.get(key, (0, 0))[0]
        row, col = position(data, off)
        res.logs.append(logline("warning", "Ignoring unknown key in TOML", file=path, row=row,
                                column=col, key=" ".join(key),
                                error="strict mode: fields in the document are missing in "
                                      "the target struct"))
    res.file_version = int(doc.get("version", 0))
    res.top = {k: v for k, v in doc.items() if k in TOP and k != "plugins"}
    plugins = copy.deepcopy(doc.get("plugins", {}))
    disabled = list(doc.get("disabled_plugins", []))
    required = list(doc.get("required_plugins", []))
    if res.file_version in (0, 1):  # LoadConfig: v1Migrate, then version 3 (no plugin migration)
        plugins = {_v1_name(res, k): v for k, v in plugins.items()}
        disabled = [_v1_name(res, p) for p in disabled]
        required = [_v1_name(res, p) for p in required]
        version_now = 3
    else:
        version_now = res.file_version
    if version_now > 3:
        raise Refused(f"failed to load TOML from {path}: expected containerd config version "
                      f"equal to or less than `3`, got `{version_now}`", res.logs)
    for kind, names in (("disabled", disabled), ("required", required)):
        for p in names:
            if "." not in p:
                raise Refused(f'failed to load TOML from {path}: invalid {kind} plugin URI "{p}" '
                              "expect io.containerd.x.vx", res.logs)
    res.disabled = disabled
    if version_now == 2:  # server.New: each loaded plugin's ConfigMigration
        t0 = time.perf_counter()
        _migrate_v2(plugins, disabled)
        took = (time.perf_counter() - t0) * 1e6
        res.logs.append(logline("warning", "Configuration migrated from version 2, use "
                                "`containerd config migrate` to avoid migration",
                                t=f"{took:.3f}µs"))
    res.plugins = plugins
    return _decode_plugins(res)


def _fail_type(res, data, where, key, value, struct, field, gotype) -> None:
    msg = _type_error(value, struct, field, gotype)
    if msg is None:
        return
    off = where.get(key, (0, 0))[1]
    row, col = position(data, off)
    res.logs.append(logline("error", "Failure unmarshaling TOML", file=res.path, row=row,
                            column=col, error=f"toml: {msg}"))
    raise Refused(f"failed to unmarshal TOML at row {row} column {col}: toml: {msg}", res.logs)


def _all_keys(doc: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in doc.items():
        out.append((*prefix, k))
        if isinstance(v, dict) and ((*prefix, k))[0] in SUB:
            out += _all_keys(v, (*prefix, k))
    return out


def _known_top(key: tuple) -> bool:
    if len(key) == 1:
        return key[0] in TOP
    return key[0] in SUB and key[1] in SUB[key[0]][1]


V1_CORE = {"cri": CRI, "cgroups": "io.containerd.monitor.v1.cgroups",
           "linux": "io.containerd.runtime.v1.linux", "scheduler": "io.containerd.gc.v1.scheduler",
           "bolt": "io.containerd.metadata.v1.bolt", "task": "io.containerd.runtime.v2.task",
           "opt": "io.containerd.internal.v1.opt", "restart": "io.containerd.internal.v1.restart",
           "tracing": "io.containerd.internal.v1.tracing",
           "otlp": "io.containerd.tracing.processor.v1.otlp",
           "aufs": "io.containerd.snapshotter.v1.aufs",
           "btrfs": "io.containerd.snapshotter.v1.btrfs",
           "devmapper": "io.containerd.snapshotter.v1.devmapper",
           "native": "io.containerd.snapshotter.v1.native",
           "overlayfs": "io.containerd.snapshotter.v1.overlayfs",
           "zfs": "io.containerd.snapshotter.v1.zfs"}


def _v1_name(res: Loaded, name: str) -> str:
    """config.go v1MigratePluginName."""
    if "." in name:
        return name
    if name in V1_CORE:
        return V1_CORE[name]
    if name.endswith("-service"):
        return "io.containerd.service.v1." + name
    full = ("io.containerd.snapshotter.v1." if name in ("windows", "windows-lcow")
            else "io.containerd.grpc.v1.") + name
    res.logs.append(logline("warning", f"Ambiguous {name} plugin in v1 config, treating as "
                                       f"{full}"))
    return full


def _migrate_v2(plugins: dict, disabled: list[str]) -> None:
    """The v2 -> v3 ConfigMigration of the CRI plugins (each only when it is loaded)."""
    src = plugins.get(CRI)
    if not isinstance(src, dict):
        return
    src = copy.deepcopy(src)
    if IMAGES not in disabled:  # plugins/cri/images/plugin.go migrateConfig
        dst = plugins.setdefault(IMAGES, {})
        pinned = dst.get("pinned_images", {})
        if "sandbox_image" in src:
            pinned["sandbox"] = src["sandbox_image"]
        if pinned:
            dst["pinned_images"] = pinned
        for k in ("registry", "image_decryption", "max_concurrent_downloads",
                  "image_pull_progress_timeout", "image_pull_with_sync_fs",
                  "stats_collect_period"):
            if k in src:
                dst[k] = src[k]
        cd = src.get("containerd")
        if isinstance(cd, dict):
            for k in ("snapshotter", "disable_snapshot_annotations", "discard_unpacked_layers"):
                if k in cd:
                    dst[k] = cd[k]
    if RUNTIME not in disabled:  # plugins/cri/runtime/plugin.go migrateConfig
        dst = plugins.setdefault(RUNTIME, {})
        moved = {"sandbox_image", "registry", "image_decryption", "max_concurrent_downloads",
                 "image_pull_progress_timeout", "image_pull_with_sync_fs",
                 "stats_collect_period"} | SERVER_KEYS
        for k, v in src.items():
            if k not in ("cni", "containerd") and k not in moved:
                dst.setdefault(k, v)
        if isinstance(src.get("cni"), dict):
            cni = dst.setdefault("cni", {})
            for k, v in src["cni"].items():
                if k == "bin_dir":
                    if not cni.get("bin_dirs"):
                        cni["bin_dirs"] = [v]
                else:
                    cni.setdefault(k, v)
        if isinstance(src.get("containerd"), dict):
            cd = dst.setdefault("containerd", {})
            for k, v in src["containerd"].items():
                if k not in ("snapshotter", "disable_snapshot_annotations",
                             "discard_unpacked_layers"):
                    cd.setdefault(k, v)
    if CRI not in disabled:  # plugins/cri/cri.go configMigration: only the server keys stay
        plugins[CRI] = {k: v for k, v in src.items() if k in SERVER_KEYS}


def _unknown(res: Loaded, plugin: str, table: dict, known: set, prefix: tuple = ()) -> None:
    for k in table:
        if k not in known:
            res.logs.append(logline("warning", "Ignoring unknown key in TOML for plugin",
                                    plugin=plugin, key=" ".join((*prefix, k)),
                                    error="strict mode: fields in the document are missing "
                                          "in the target struct"))


def _decode_plugins(res: Loaded) -> Loaded:
    """Config.Decode for the three CRI plugins (warnings for unknown keys, type errors)."""
    for plugin in (RUNTIME, IMAGES, CRI):
        conf = res.plugins.get(plugin)
        if plugin in res.disabled or not isinstance(conf, dict):
            continue
        if plugin == CRI:
            _unknown(res, plugin, conf, SERVER_KEYS)
            continue
        if plugin == IMAGES:
            _unknown(res, plugin, conf, IMAGE_KEYS)
            if isinstance(conf.get("registry"), dict):
                _unknown(res, plugin, conf["registry"], REGISTRY_KEYS, ("registry",))
        else:
            _unknown(res, plugin, conf, RUNTIME_KEYS)
            cd = conf.get("containerd")
            if isinstance(cd, dict):
                _unknown(res, plugin, cd, CONTAINERD_KEYS, ("containerd",))
                for name, rt in (cd.get("runtimes") or {}).items():
                    if isinstance(rt, dict):
                        _unknown(res, plugin, rt, RUNC_KEYS, ("containerd", "runtimes", name))
            if isinstance(conf.get("cni"), dict):
                _unknown(res, plugin, conf["cni"], CNI_KEYS, ("cni",))
        for (pid, *path), field in PLUGIN_FIELDS.items():
            node = conf if pid == plugin else None
            for p in path:
                node = node.get(p) if isinstance(node, dict) else None
            if node is not None and not isinstance(node, str):
                struct, _, name = field.rpartition(".")
                raise Refused(f"toml: {_type_error(node, struct, name, 'string')}", res.logs)
    if CRI not in res.disabled:
        for dep, what in ((RUNTIME, "runtime"), (IMAGES, "image")):
            if dep in res.disabled:  # plugins/cri/cri.go initCRIService
                res.logs.append(logline(
                    "warning", "failed to load plugin", id=CRI, type="io.containerd.grpc.v1",
                    error=f"unable to load CRI {what} service plugin dependency: no plugins "
                          f"registered for {dep}: plugin: not found"))
                break
    return res


def _defaults(res: Loaded) -> Loaded:
    res.file_version = 3
    return res


# ---- what the daemon runs with ------------------------------------------------------------

def values(res: Loaded) -> dict:
    """The snapshot's loaded values (lab/CONTRACT.md "containerd")."""
    minor = ".".join(res.version.split(".")[:2])
    disabled = set(res.disabled)
    cri_off = bool({CRI, RUNTIME, IMAGES} & disabled)
    images = res.plugins.get(IMAGES, {}) if isinstance(res.plugins.get(IMAGES), dict) else {}
    runtime = res.plugins.get(RUNTIME, {}) if isinstance(res.plugins.get(RUNTIME), dict) else {}
    cd = runtime.get("containerd", {}) if isinstance(runtime.get("containerd"), dict) else {}
    runtimes = {"runc": {"runtime_type": "io.containerd.runc.v2",
                         "options": {"SystemdCgroup": False}}}
    for name, rt in (cd.get("runtimes") or {}).items():
        base = copy.deepcopy(runtimes.get(name, {}))
        base.update({k: v for k, v in rt.items() if k != "options"})
        base.setdefault("options", {}).update(rt.get("options") or {})
        runtimes[name] = base
    default = cd.get("default_runtime_name", "runc")
    cni = runtime.get("cni", {}) if isinstance(runtime.get("cni"), dict) else {}
    bin_dirs = cni.get("bin_dirs") or ([cni["bin_dir"]] if cni.get("bin_dir") else
                                       ["/opt/cni/bin"])
    top = res.top
    return {
        "version": res.version,
        "config_version": res.file_version if res.file_version else 1,
        "cri_disabled": cri_off,
        "systemd_cgroup": None if cri_off else _driver_systemd(runtimes, default),
        "sandbox_image": None if cri_off else (images.get("pinned_images") or {}).get(
            "sandbox", SANDBOX.get(minor, SANDBOX["2.1"])),
        "registry_config_path": None if cri_off else (images.get("registry") or {}).get(
            "config_path", ""),
        "default_runtime_name": None if cri_off else default,
        "cni_conf_dir": None if cri_off else cni.get("conf_dir", "/etc/cni/net.d"),
        "cni_bin_dirs": None if cri_off else bin_dirs,
        "address": (top.get("grpc") or {}).get("address") or ADDRESS,
        "root": top.get("root") or "/var/lib/containerd",
        "state": top.get("state") or "/run/containerd",
        "runtime_config": True,
    }


def _driver_systemd(runtimes: dict, default: str) -> bool:
    """getCgroupDriver: the default handler first, then by name; the first runc-type handler
    decides (SystemdCgroup); none: systemd when systemd runs (EL: it does)."""
    for name in sorted(runtimes, key=lambda n: (n != default, n)):
        rt = runtimes[name]
        if rt.get("runtime_type", "io.containerd.runc.v2") in ("io.containerd.runc.v2",
                                                               "io.containerd.runc.v1"):
            return rt.get("options", {}).get("SystemdCgroup") is True
    return True


def dump(res: Loaded) -> str:
    """`containerd config dump` (go-toml v2 Encoder with SetIndentTables: single-quoted
    strings): the values `values` reads, nothing else."""
    v = values(res)

    def q(s: str) -> str:
        return "'" + s + "'"

    out = ["version = 3", f"root = {q(v['root'])}", f"state = {q(v['state'])}",
           "disabled_plugins = [" + ", ".join(q(p) for p in res.disabled) + "]", "",
           "[grpc]", f"  address = {q(v['address'])}", "", "[plugins]"]
    if v["sandbox_image"] is not None:
        dirs = ", ".join(q(d) for d in v["cni_bin_dirs"])
        out += ["  [plugins.'io.containerd.cri.v1.images']",
                "    [plugins.'io.containerd.cri.v1.images'.pinned_images]",
                f"      sandbox = {q(v['sandbox_image'])}", "",
                "    [plugins.'io.containerd.cri.v1.images'.registry]",
                f"      config_path = {q(v['registry_config_path'])}", "",
                "  [plugins.'io.containerd.cri.v1.runtime']",
                "    [plugins.'io.containerd.cri.v1.runtime'.cni]",
                f"      bin_dirs = [{dirs}]", f"      conf_dir = {q(v['cni_conf_dir'])}", "",
                "    [plugins.'io.containerd.cri.v1.runtime'.containerd]",
                f"      default_runtime_name = {q(v['default_runtime_name'])}", "",
                "      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc."
                "options]",
                f"        SystemdCgroup = {'true' if v['systemd_cgroup'] else 'false'}"]
    return "\n".join(out) + "\n"
