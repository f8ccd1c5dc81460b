"""kubeadm's flag parsing, config files and image lists (texts from kubernetes/kubernetes)."""

from __future__ import annotations

import re

from k8s.common import minor, read_yaml_docs

KUBEADM_GROUP = "kubeadm.k8s.io"
SCHEME = "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"
# flags that may accompany --config (apis/kubeadm/validation ValidateMixedArguments, 1.20)
MIX_OK = {"config", "ignore-preflight-errors", "dry-run", "kubeconfig", "v", "rootfs",
          "print-join-command", "node-name", "cri-socket"}
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
    """kubeadm config API versions a release decodes (v1beta3 from 1.22, v1beta1 until 1.21)."""
    m = minor(kubeadm_version)
    versions = ["v1beta1"] if m < 22 else []
    versions.append("v1beta2")
    if m >= 22:
        versions.append("v1beta3")
    if m >= 31:
        versions.append("v1beta4")
    return versions


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
        if group == KUBEADM_GROUP and version not in known_versions(kubeadm_version):
            raise Usage(f'no kind "{kind}" is registered for version "{api}" in scheme '
                        f'"{SCHEME}"')
        by_kind[kind] = doc
    return by_kind


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
    """kubeadm's default imageRepository: registry.k8s.io from 1.22.17 (backported), 1.25."""
    m = minor(kubeadm_version)
    return "registry.k8s.io" if (m == 22 and patch(kubeadm_version) >= 17) or m >= 25 \
        else "k8s.gcr.io"


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
    pause = {20: "3.2", 21: "3.4.1", 22: "3.5", 23: "3.6"}.get(km, "3.2")
    etcd = "3.4.13-0"
    if minor(v) >= 22 and km >= 22:
        etcd = "3.5.6-0" if patch(kv) >= 17 else "3.5.0-0"
    out = [f"{repo}/{c}:{v}" for c in ("kube-apiserver", "kube-controller-manager",
                                       "kube-scheduler", "kube-proxy")]
    out += [f"{repo}/pause:{pause}", f"{repo}/etcd:{etcd}"]
    if km < 21:
        out.append(f"{repo}/coredns:1.7.0")
    else:
        tag = "v1.8.0" if km == 21 else "v1.8.4"
        if not custom or (km == 21 and patch(kv) < 2):  # kubeadm#2501, fixed in 1.21.2
            out.append(f"{repo}/coredns/coredns:{tag}")
        else:
            out.append(f"{repo}/coredns:{tag}")
    return out
