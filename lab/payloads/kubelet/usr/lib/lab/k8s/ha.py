"""kubeadm's HA control-plane pieces for the kubeadm stand-in (lab/k8s/STATE.md "HA control
planes"): the certificates shared among control planes and the kubeadm-certs Secret that carries
them (phases/copycerts/copycerts.go), the certificate key's validation, the join commands
(cmd/util/join.go) and the mark-control-plane lines by release.

state.json `kubeadm_certs`: {"created", "expires", "token_id", "uid", "data": {secret key:
base64(nonce|ciphertext|tag)}}. The Secret exists while `expires` (upload + 2 h,
constants.DefaultCertTokenDuration) is in the future and its owner, the bootstrap token
`token_id` ("Proxy for managing TTL for the kubeadm-certs secret", in `tokens` with the same
expiry), is still there: the token cleaner deletes an expired token and the garbage collector
its Secret. A test ages the upload by writing a past `kubeadm_certs.expires`.
"""

from __future__ import annotations

import os
import random
import string
import time

from k8s import common, pki, state

PKI = "/etc/kubernetes/pki"
SECRET = "kubeadm-certs"
CERT_TOKEN_TTL = 2 * 3600  # constants.DefaultCertTokenDuration
KEY_SIZE = 32  # constants.CertificateKeySize
# copycerts.certsToTransfer for a local etcd: (name, path under PKI); the Secret's keys are the
# names with "/" turned into "-" (certOrKeyNameToSecretName)
SHARED = tuple((f, f) for f in ("ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key",
                                 "sa.pub", "sa.key", "etcd/ca.crt", "etcd/ca.key"))
PROXY_DESCRIPTION = "Proxy for managing TTL for the kubeadm-certs secret"


def new_key() -> str:
    """copycerts.CreateCertificateKey: 32 random bytes, hex."""
    return os.urandom(KEY_SIZE).hex()


def key_problem(key: str, path: str) -> str | None:
    """validation.ValidateCertificateKey's error for a non-empty KEY (field PATH), None when it
    is a hex AES-256 key. The real message quotes the value, as here."""
    if not key:
        return None
    if len(key) % 2:
        why = "encoding/hex: odd length hex string"
    else:
        bad = next((c for c in key if c not in string.hexdigits), "")
        why = f"encoding/hex: invalid byte: U+{ord(bad):04X} '{bad}'" if bad else ""
    if why:
        return f'{path}: Invalid value: "{key}": certificate key decoding error: {why}'
    if len(key) // 2 != KEY_SIZE:
        return (f'{path}: Invalid value: "{key}": invalid certificate key size {len(key) // 2}, '
                f"the key must be an AES key of size {KEY_SIZE}")
    return None


def secret(data: dict, now: float | None = None) -> dict | None:
    """The kubeadm-certs Secret's record while the Secret exists, else None."""
    now = time.time() if now is None else now
    kc = data.get("kubeadm_certs")
    if not kc or (kc.get("expires") is not None and kc["expires"] <= now):
        return None
    owner = next((t for t in data.get("tokens", []) if t["token"][:6] == kc.get("token_id")),
                 None)
    if owner is None or (owner.get("expires") is not None and owner["expires"] <= now):
        return None
    return kc


def upload(key: str, now: float | None = None) -> None:
    """copycerts.UploadCerts: a short-lived bootstrap token owning the Secret, then the Secret
    (create or update) with every shared file of this node's PKI encrypted under KEY (a
    missing file is stored empty, as getDataFromDisk does)."""
    now = time.time() if now is None else now
    blobs = {}
    for name, rel in SHARED:
        try:
            with open(f"{PKI}/{rel}", "rb") as fh:
                blobs[name.replace("/", "-")] = pki.encrypt(fh.read(), key)
        except FileNotFoundError:
            blobs[name.replace("/", "-")] = ""
    rnd = random.SystemRandom()
    alphabet = string.ascii_lowercase + string.digits
    tid = "".join(rnd.choice(alphabet) for _ in range(6))
    token = tid + "." + "".join(rnd.choice(alphabet) for _ in range(16))
    with state.update() as cur:
        cur.setdefault("tokens", []).append({
            "token": token, "expires": now + CERT_TOKEN_TTL, "created": now, "usages": [],
            "groups": [], "description": PROXY_DESCRIPTION})
        old = cur.get("kubeadm_certs") or {}
        cur["kubeadm_certs"] = {
            "created": old.get("created", now) if secret(cur, now) else now,
            "updated": now, "expires": now + CERT_TOKEN_TTL, "token_id": tid,
            "uid": old.get("uid") or state.uid(cur.get("cluster_id", ""), "secret", SECRET,
                                                str(now)),
            "data": blobs}


class DownloadError(Exception):
    """copycerts.DownloadCerts failed: the text after `error downloading certs: `."""


def download(data: dict, key: str) -> list[str]:
    """copycerts.DownloadCerts: decrypt every entry with KEY and write it under /etc/kubernetes/
    pki (keys 0600); return the files written."""
    kc = secret(data)
    if kc is None:
        raise DownloadError(f'error downloading the secret: Secret "{SECRET}" was not found in '
                            'the "kube-system" Namespace. This Secret might have expired. '
                            "Please, run `kubeadm init phase upload-certs --upload-certs` on a "
                            "control plane to generate a new one")
    plain = {}
    try:
        for name, blob in kc.get("data", {}).items():
            plain[name] = pki.decrypt(blob, key) if blob else b""
    except pki.AuthFailed as exc:
        raise DownloadError(f"error decoding secret data with provided key: {exc}") from None
    written = []
    for name, rel in SHARED:
        body = plain.get(name.replace("/", "-"))
        if body is None:
            raise DownloadError("the Secret does not include the required certificate or key - "
                                f"name: {name}, path: {PKI}/{rel}")
        if not body:
            continue
        common.write_file(f"{PKI}/{rel}", body.decode(), 0o600 if rel.endswith(".key") else 0o644)
        written.append(f"{PKI}/{rel}")
    return written


def shared_missing() -> str | None:
    """certs.SharedCertificateExists without a certificate key: None when this node has the
    shared files, else its error (validateCACertAndKey / validatePrivatePublicKey wrapping
    pkiutil's loader errors; several form a utilerrors aggregate `[a, b]`)."""
    errs = []
    for base, ux in (("ca", "CA"), ("sa", "service account"), ("front-proxy-ca", "front-proxy CA"),
                     ("etcd/ca", "etcd CA")):
        parts = (("key", f"{base}.key"), ("key", f"{base}.pub")) if base == "sa" else \
            (("certificate", f"{base}.crt"), ("key", f"{base}.key"))
        for what, rel in parts:
            path = f"{PKI}/{rel}"
            if not os.path.exists(path):
                kind = "private key" if rel.endswith(".key") else (
                    "public key" if rel.endswith(".pub") else "certificate")
                errs.append(f"failure loading {what} for {ux}: couldn't load the {kind} file "
                            f"{path}: open {path}: no such file or directory")
                break
    if not errs:
        return None
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"


def join_command(endpoint: str, token: str, ca_hash: str, minor: int,
                 control_plane: bool = False, key: str = "") -> str:
    """cmd/util/join.go joinCommandTemplate: continuation lines start with 4 spaces until 1.20,
    a tab from 1.21 (kubernetes PR #97413); the control-plane form adds --control-plane and,
    when known, --certificate-key (`<value withheld>` under --skip-certificate-key-print)."""
    indent = "\t" if minor >= 21 else "    "
    line = (f"kubeadm join {endpoint} --token {token} \\\n"
            f"{indent}--discovery-token-ca-cert-hash {ca_hash} ")
    if control_plane:
        line += f"\\\n{indent}--control-plane " + (f"--certificate-key {key}" if key else "")
    return line


def mark_lines(name: str, minor: int) -> list[str]:
    """phases/markcontrolplane's two lines by release: 1.20-1.21 the labels as `k=''` pairs;
    1.22-1.23 master(deprecated), control-plane and exclude-from-external-load-balancers with
    the master taint; 1.24 both taints; 1.25+ only the control-plane label and taint."""
    if minor < 22:
        labels = ("by adding the labels \"node-role.kubernetes.io/master=''\" and "
                  "\"node-role.kubernetes.io/control-plane='' (deprecated)\"")
        taints = ["node-role.kubernetes.io/master:NoSchedule"]
    else:
        keys = (["node-role.kubernetes.io/master(deprecated)"] if minor < 24 else []) + [
            "node-role.kubernetes.io/control-plane",
            "node.kubernetes.io/exclude-from-external-load-balancers"]
        labels = f"by adding the labels: [{' '.join(keys)}]"
        taints = (["node-role.kubernetes.io/master:NoSchedule"] if minor < 25 else []) + (
            ["node-role.kubernetes.io/control-plane:NoSchedule"] if minor >= 24 else [])
    return [f"[mark-control-plane] Marking the node {name} as control-plane {labels}",
            f"[mark-control-plane] Marking the node {name} as control-plane by adding the "
            f"taints [{' '.join(taints)}]"]


def san_line(base: str, sans: dict) -> str:
    """The certs phase's line; pkiutil.RemoveDuplicateAltNames sorts the DNS names and drops
    repeated ones (IPs keep their order)."""
    dns = sorted(set(sans.get("dns", [])))
    ips: list[str] = []
    for ip in sans.get("ip", []):
        if ip not in ips:
            ips.append(ip)
    return (f"[certs] {base} serving cert is signed for DNS names [{' '.join(dns)}] and IPs "
            f"[{' '.join(ips)}]")


def unique_sans(sans: dict) -> dict:
    dns = sorted(set(sans.get("dns", [])))
    ips: list[str] = []
    for ip in sans.get("ip", []):
        if ip not in ips:
            ips.append(ip)
    return {"dns": dns, "ip": ips}
