"""kubeadm's flag parsing, config files and image lists (texts from kubernetes/kubernetes)."""

from __future__ import annotations

import re
import sys

from k8s.common import klog, minor, read_yaml_docs

KUBEADM_GROUP = "kubeadm.k8s.io"
SCHEME = "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"
# flags that may accompany --config (apis/kubeadm/validation ValidateMixedArguments isAllowedFlag:
# 1.20's list, with upload-certs and kubeconfig-dir, which it also allows)
MIX_OK = {"config", "ignore-preflight-errors", "dry-run", "kubeconfig", "v", "rootfs",
          "print-join-command", "node-name", "cri-socket", "upload-certs", "kubeconfig-dir"}
BOOL_FLAGS = {"skip-token-print", "dry-run", "upload-certs", "force", "f", "print-join-command",
              "discovery-token-unsafe-skip-ca-verification", "control-plane", "help", "h",
              "skip-certificate-key-print"}


class Usage(Exception):
    """A command-line error (printed with kubeadm's stack-trace hint, exit 1)."""


def parse(args: list[str], known: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """pflag-like parsing: ({flag: [values]}, positionals); unknown flags raise Usage."""
    flags: dict[str, list[str]] = {}
    pos: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and a != "-":
            name, eq, val = a.lstrip("-").partition("=")
            if name not in known:
                raise Usage(f"unknown flag: {a.split('=')[0]}" if a.startswith("--")
                            else f"unknown shorthand flag: '{name[:1]}' in {a}")
            if name in BOOL_FLAGS:
                val = val if eq else "true"
            elif not eq:
                i += 1
                if i >= len(args):
                    raise Usage(f"flag needs an argument: {a}")
                val = args[i]
            flags.setdefault(name, []).append(val)
        else:
            pos.append(a)
        i += 1
    return flags, pos


def check_mix(flags: dict[str, list[str]]) -> None:
    """Refuse --config together with most other flags, like kubeadm does."""
    if "config" not in flags:
        return
    bad = sorted(f for f in flags if f not in MIX_OK and not f.startswith("skip-"))
    if bad:
        raise Usage(f"can not mix '--config' with arguments [{' '.join(bad)}]")


def known_versions(kubeadm_version: str) -> list[str]:
    """kubeadm config API versions registered in a release's scheme (apis/kubeadm/scheme):
    v1beta1 until 1.21, v1beta2 1.15-1.26, v1beta3 from 1.22, v1beta4 from 1.28 (experimental
    until 1.30, see api_check)."""
    m = minor(kubeadm_version)
    versions = ["v1beta1"] if m < 22 else []
    if m < 27:
        versions.append("v1beta2")
    if 22 <= m < 37:  # v1beta3 removed in 1.37 (kubernetes PR #136016)
        versions.append("v1beta3")
    if m >= 28:
        versions.append("v1beta4")
    return versions


# util/config/common.go validateSupportedVersion, by release (1.22+; 1.20/1.21 only decode)
OLD_API = {"v1alpha1": "v1.11", "v1alpha2": "v1.12", "v1alpha3": "v1.14", "v1beta1": "v1.15"}
MIGRATE = "'kubeadm config migrate --old-config old.yaml --new-config new.yaml'"
# 1.32+ (kubeadm v1.32.0's deprecation line, v1.37.0's refusal: docs/RELEASE-FACTS.md 2)
MIGRATE_NEW = ("'kubeadm config migrate --old-config old-config-file --new-config "
               "new-config-file'")


def error_prefix(kubeadm_version: str) -> str:
    """kubeadm's error lines start with 'error: ' in the releases seen printing it (1.35
    preflight and 1.37 v1beta3 outputs, docs/RELEASE-FACTS.md 2; the first release that
    does: unconfirmed, taken as 1.35)."""
    return "error: " if minor(kubeadm_version) >= 35 else ""


def api_check(api: str, kind: str, kubeadm_version: str) -> tuple[str | None, str | None]:
    """(klog warning, error) of validateSupportedVersion for one kubeadm document.

    1.22-1.26: v1beta2 deprecated (a warning per document), v1beta1 and older refused;
    1.27+: v1beta2 refused ("use kubeadm v1.22"); 1.28-1.30: v1beta4 experimental (refused
    without --allow-experimental-api, which init/join do not have); 1.31+: the texts name
    the kind, v1beta3 is deprecated.
    """
    m = minor(kubeadm_version)
    if m < 22:
        return None, None
    version = api.rpartition("/")[2]
    old = dict(OLD_API, **({"v1beta2": "v1.22"} if m >= 27 else {}),
               **({"v1beta3": "v1.36"} if m >= 37 else {}))
    deprecated = {"v1beta2"} if m < 27 else ({"v1beta3"} if 31 <= m < 37 else set())
    migrate = MIGRATE_NEW if m >= 32 else MIGRATE
    of_kind = f" (kind: \"{kind}\")" if m >= 31 else ""
    if version in old:
        return None, (f'your configuration file uses an old API spec: "{api}"{of_kind}. Please '
                      f"use kubeadm {old[version]} instead and run {migrate}, which will write "
                      "the new, similar spec using a newer API version.")
    if version == "v1beta4" and 28 <= m <= 30:
        return None, (f'experimental API spec: "{api}" is not allowed. You can use the '
                      "--allow-experimental-api flag if the command supports it.")
    if version in deprecated:
        line = "common.go:101" if m >= 31 else "common.go:83"
        return (f'{line}] your configuration file uses a deprecated API spec: "{api}"{of_kind}. '
                f"Please use {migrate}, which will write the new, similar spec using a newer "
                "API version."), None
    return None, None


def load_config(path: str, kubeadm_version: str) -> dict[str, dict]:
    """Documents of a kubeadm config file by kind; unknown API versions raise Usage."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise Usage(f"unable to read config from \"{path}\" : open {path}: "
                    f"{exc.strerror.lower() if exc.strerror else exc}") from None
    try:
        docs = read_yaml_docs(text)
    except Exception as exc:
        raise Usage(f"error converting YAML to JSON: yaml: {exc}") from None
    by_kind: dict[str, dict] = {}
    for doc in docs:
        api, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
        if not api or not kind:
            raise Usage("Object 'Kind' is missing in '" + str(doc)[:200] + "'")
        group, _, version = api.rpartition("/")
        if group == KUBEADM_GROUP:
            warning, error = api_check(api, kind, kubeadm_version)
            if error:
                raise Usage(error)
            if warning:
                level, _, msg = warning.partition("] ")
                sys.stderr.write(klog("W", level, msg) + "\n")
        if group == KUBEADM_GROUP and version not in known_versions(kubeadm_version):
            raise Usage(f'no kind "{kind}" is registered for version "{api}" in scheme '
                        f'"{SCHEME}"')
        if group == KUBEADM_GROUP:
            check_shape(doc, version, kind, kubeadm_version)
        by_kind[kind] = doc
    return by_kind


# ---- v1beta3 / v1beta4 document shapes (1.31+) -------------------------------------------
# extraArgs: a string map in v1beta3, a list of {name, value} (type Arg) in v1beta4; the wrong
# shape fails the decode with encoding/json's UnmarshalTypeError ("Go struct field
# <innermost struct>.<json path>"). The APIServer path is the text seen (RELEASE-FACTS 2);
# the other paths follow the same rule from types.go (derived, unconfirmed as printed).
ARG_FIELDS = (("apiServer", "APIServer.apiServer.ControlPlaneComponent.extraArgs"),
              ("controllerManager", "ControlPlaneComponent.controllerManager.extraArgs"),
              ("scheduler", "ControlPlaneComponent.scheduler.extraArgs"),
              ("etcd.local", "LocalEtcd.etcd.local.extraArgs"))
# fields each kind has (v1beta3 and v1beta4 types.go); anything else is strict decoding's
# unknown field (a klog warning, not an error)
COMMON_INIT = {"apiVersion", "kind", "bootstrapTokens", "nodeRegistration", "localAPIEndpoint",
               "certificateKey", "skipPhases", "patches"}
COMMON_JOIN = {"apiVersion", "kind", "nodeRegistration", "caCertPath", "discovery",
               "controlPlane", "skipPhases", "patches"}
COMMON_CLUSTER = {"apiVersion", "kind", "etcd", "networking", "kubernetesVersion",
                  "controlPlaneEndpoint", "apiServer", "controllerManager", "scheduler", "dns",
                  "certificatesDir", "imageRepository", "featureGates", "clusterName"}
FIELDS = {
    ("v1beta3", "InitConfiguration"): (COMMON_INIT, {}),
    ("v1beta4", "InitConfiguration"): (COMMON_INIT | {"dryRun", "timeouts"}, {}),
    ("v1beta3", "JoinConfiguration"): (COMMON_JOIN, {
        "discovery": {"bootstrapToken", "file", "tlsBootstrapToken", "timeout"}}),
    ("v1beta4", "JoinConfiguration"): (COMMON_JOIN | {"dryRun", "timeouts"}, {
        "discovery": {"bootstrapToken", "file", "tlsBootstrapToken"}}),
    ("v1beta3", "ClusterConfiguration"): (COMMON_CLUSTER, {
        "apiServer": {"extraArgs", "extraVolumes", "certSANs", "timeoutForControlPlane"}}),
    ("v1beta4", "ClusterConfiguration"): (COMMON_CLUSTER | {
        "proxy", "encryptionAlgorithm", "certificateValidityPeriod",
        "caCertificateValidityPeriod"}, {
        "apiServer": {"extraArgs", "extraVolumes", "extraEnvs", "certSANs"}}),
}
TIMEOUTS = {"controlPlaneComponentHealthCheck", "kubeletHealthCheck", "kubernetesAPICall",
            "etcdAPICall", "tlsBootstrap", "discovery", "upgradeManifests"}
# where documentMapTo{Init,Join}Configuration log strict.VerifyUnmarshalStrict's error:
# initconfiguration.go:333 as kubeadm 1.32 printed it (RELEASE-FACTS 2); joinconfiguration.go:116
# counted in a stored 1.31-era copy of that file (release not pinned)
STRICT_AT = {"InitConfiguration": "initconfiguration.go:333",
             "ClusterConfiguration": "initconfiguration.go:333",
             "JoinConfiguration": "joinconfiguration.go:116"}


def _at(doc: dict, path: str) -> object:
    cur: object = doc
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def check_shape(doc: dict, version: str, kind: str, kubeadm_version: str) -> None:
    """1.31+: the wrong extraArgs shape is the decoder's error (Usage); unknown fields are
    strict decoding's klog warning."""
    if minor(kubeadm_version) < 31 or (version, kind) not in FIELDS:
        return
    want_list = version == "v1beta4"
    go_type = "[]v1beta4.Arg" if want_list else "map[string]string"
    fields = list(ARG_FIELDS) if kind == "ClusterConfiguration" else []
    if kind in ("InitConfiguration", "JoinConfiguration"):
        fields.append(("nodeRegistration",
                       "NodeRegistrationOptions.nodeRegistration.kubeletExtraArgs"))
    for where, go_field in fields:
        key = "kubeletExtraArgs" if where == "nodeRegistration" else "extraArgs"
        value = _at(doc, f"{where}.{key}")
        if value is None:
            continue
        if want_list and isinstance(value, dict):
            got = "object"
        elif not want_list and isinstance(value, list):
            got = "array"
        else:
            continue
        raise Usage(f"json: cannot unmarshal {got} into Go struct field {go_field} of type "
                    f"{go_type}")
    top, nested = FIELDS[(version, kind)]
    unknown = [k for k in doc if k not in top]
    for parent, keys in nested.items():
        sub = doc.get(parent)
        if isinstance(sub, dict):
            unknown += [f"{parent}.{k}" for k in sub if k not in keys]
    if isinstance(doc.get("timeouts"), dict) and "timeouts" in top:
        unknown += [f"timeouts.{k}" for k in doc["timeouts"] if k not in TIMEOUTS]
    if unknown:
        gvk = (f'schema.GroupVersionKind{{Group:"{KUBEADM_GROUP}", Version:"{version}", '
               f'Kind:"{kind}"}}')
        sys.stderr.write(klog("W", STRICT_AT[kind], f"error unmarshaling configuration {gvk}: "
                              "strict decoding error: " + ", ".join(
                                  f'unknown field "{k}"' for k in unknown)) + "\n")


def kv_args(value: object) -> list[tuple[str, str]]:
    """extraArgs / kubeletExtraArgs of either shape as (name, value) pairs."""
    if isinstance(value, dict):
        return [(str(k), str(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [(str(a.get("name", "")), str(a.get("value", ""))) for a in value
                if isinstance(a, dict)]
    return []


def parse_duration(text: str) -> float | None:
    """Go duration ('24h0m0s', '1h', '30m') in seconds; 0 means never (None)."""
    if text in ("0", "0s"):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise Usage(f'invalid argument "{text}" for "--ttl" flag: time: invalid duration '
                    f'"{text}"')
    mult = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * mult[u] for n, u in parts)


def patch(version: str) -> int:
    """Patch number of 'v1.21.2' or '1.22.17-0'."""
    try:
        return int(version.lstrip("v").split(".")[2].split("-")[0])
    except (IndexError, ValueError):
        return 0


def default_repository(kubeadm_version: str) -> str:
    """kubeadm's default imageRepository: registry.k8s.io from 1.25 and, backported, 1.22.17,
    1.23.15, 1.24.9."""
    m, p = minor(kubeadm_version), patch(kubeadm_version)
    backport = {22: 17, 23: 15, 24: 9}
    return "registry.k8s.io" if m >= 25 or (m in backport and p >= backport[m]) \
        else "k8s.gcr.io"


# constants.go PauseVersion by kubeadm minor (FIELD-NOTES "pause by release")
PAUSE = {20: "3.2", 21: "3.4.1", 22: "3.5", 23: "3.6", 24: "3.7", 25: "3.8", 26: "3.9",
         27: "3.9", 28: "3.9", 29: "3.9", 30: "3.9", 31: "3.10", 32: "3.10", 33: "3.10",
         34: "3.10.1", 35: "3.10.1", 36: "3.10.2", 37: "3.10.2"}
# CoreDNSVersion and the etcd of the release's own minor (latest patch releases; not read at
# each release's constants.go: see lab/k8s/STATE.md)
COREDNS = {21: "v1.8.0", 22: "v1.8.4", 23: "v1.8.6", 24: "v1.8.6", 25: "v1.9.3",
           26: "v1.9.3", 27: "v1.10.1", 28: "v1.10.1", 29: "v1.11.1", 30: "v1.11.3",
           # 1.31-1.37: `kubeadm config images list` of each minor's latest patch (minikube's
           # generated table, docs/RELEASE-FACTS.md 1); 1.37: v1.37.0-rc.0's (unconfirmed for
           # v1.37.0)
           31: "v1.11.3", 32: "v1.11.3", 33: "v1.12.0", 34: "v1.12.1", 35: "v1.13.1",
           36: "v1.14.2", 37: "v1.14.6"}
ETCD = {23: "3.5.6-0", 24: "3.5.6-0", 25: "3.5.6-0", 26: "3.5.6-0", 27: "3.5.12-0",
        28: "3.5.15-0", 29: "3.5.15-0", 30: "3.5.15-0", 31: "3.5.24-0", 32: "3.5.24-0",
        33: "3.5.24-0", 34: "3.6.5-0", 35: "3.6.6-0", 36: "3.6.8-0", 37: "3.7.0-0"}


def pause_version(kubeadm_version: str) -> str:
    """The pause tag a kubeadm release wants (constants.PauseVersion)."""
    return PAUSE.get(minor(kubeadm_version), "3.2")


def images(version: str, repo: str = "", kubeadm_version: str = "") -> list[str]:
    """What `kubeadm config images list` prints for control-plane VERSION.

    kube-* follow VERSION; etcd comes from the binary's map keyed by VERSION's minor; pause and
    coredns are constants of the kubeadm binary (KUBEADM_VERSION, default VERSION):
    cmd/kubeadm/app/constants/constants.go and app/images/images.go of each release.
    """
    v = "v" + version.lstrip("v")
    kv = kubeadm_version or v
    km = minor(kv)
    repo = repo or default_repository(kv)
    custom = repo != default_repository(kv)
    pause = pause_version(kv)
    etcd = "3.4.13-0"
    if minor(v) >= 22 and km >= 22:
        etcd = "3.5.6-0" if patch(kv) >= 17 else "3.5.0-0"
    if km >= 23 and minor(v) >= 23:
        etcd = ETCD.get(km, etcd)
    out = [f"{repo}/{c}:{v}" for c in ("kube-apiserver", "kube-controller-manager",
                                       "kube-scheduler", "kube-proxy")]
    out += [f"{repo}/pause:{pause}", f"{repo}/etcd:{etcd}"]
    if km < 21:
        out.append(f"{repo}/coredns:1.7.0")
    else:
        tag = COREDNS.get(km, "v1.8.4")
        if not custom or (km == 21 and patch(kv) < 2):  # kubeadm#2501, fixed in 1.21.2
            out.append(f"{repo}/coredns/coredns:{tag}")
        else:
            out.append(f"{repo}/coredns:{tag}")
    return out
