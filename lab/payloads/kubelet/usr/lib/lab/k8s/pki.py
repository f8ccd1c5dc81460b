"""Real X.509 material for the lab cluster, made with the openssl command."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tempfile
import time


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    res = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {res.stderr.decode().strip()}")
    return res.stdout


def make_ca(pki_dir: str) -> str:
    """Write a self-signed CA (CN=kubernetes) to PKI_DIR/ca.{crt,key}; return the PEM cert."""
    os.makedirs(pki_dir, exist_ok=True)
    key, crt = os.path.join(pki_dir, "ca.key"), os.path.join(pki_dir, "ca.crt")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
             "-days", "3650", "-subj", "/CN=kubernetes", "-addext",
             "basicConstraints=critical,CA:TRUE", "-addext",
             "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign")
    os.chmod(key, 0o600)
    with open(crt) as fh:
        return fh.read()


def make_client(pki_dir: str, cn: str, org: str) -> tuple[str, str]:
    """A client cert signed by PKI_DIR's CA: (cert PEM, key PEM), not kept on disk."""
    with tempfile.TemporaryDirectory() as tmp:
        key, csr, crt = (os.path.join(tmp, n) for n in ("c.key", "c.csr", "c.crt"))
        subj = f"/O={org}/CN={cn}" if org else f"/CN={cn}"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                 "-subj", subj)
        _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(pki_dir, "ca.crt"),
                 "-CAkey", os.path.join(pki_dir, "ca.key"), "-CAcreateserial",
                 "-out", crt, "-days", "365")
        with open(crt) as c, open(key) as k:
            return c.read(), k.read()


def ca_hash(cert_pem: str) -> str:
    """sha256:<hex> of the certificate's SubjectPublicKeyInfo (kubeadm's pin format)."""
    pub = _openssl("x509", "-pubkey", "-noout", stdin=cert_pem.encode())
    der = _openssl("pkey", "-pubin", "-outform", "der", stdin=pub)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig(server: str, ca_pem: str, user: str, cert_pem: str, key_pem: str,
               cluster: str = "kubernetes") -> str:
    """A kubeconfig like kubeadm writes (embedded CA and client credentials)."""
    ctx = f"{user}@{cluster}"
    return ("apiVersion: v1\nclusters:\n- cluster:\n"
            f"    certificate-authority-data: {b64(ca_pem)}\n"
            f"    server: https://{server}\n  name: {cluster}\ncontexts:\n- context:\n"
            f"    cluster: {cluster}\n    user: {user}\n  name: {ctx}\n"
            f"current-context: {ctx}\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n"
            f"  user:\n    client-certificate-data: {b64(cert_pem)}\n"
            f"    client-key-data: {b64(key_pem)}\n")


def make_user(pki_dir: str, cn: str, orgs: list[str], not_after: float) -> tuple[str, str]:
    """A client cert for CN (O = each of ORGS) signed by PKI_DIR's CA, valid until NOT_AFTER
    (epoch, to the second: `openssl ca -enddate`, as `openssl x509 -req` takes whole days only);
    usages as kubeadm's pkiutil gives a client (digitalSignature, keyEncipherment, clientAuth).
    (cert PEM, key PEM), not kept on disk."""
    with tempfile.TemporaryDirectory() as tmp:
        key, csr, crt = (os.path.join(tmp, n) for n in ("c.key", "c.csr", "c.crt"))
        subj = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                 "-subj", subj)
        with open(os.path.join(tmp, "index.txt"), "w"):
            pass
        with open(os.path.join(tmp, "serial"), "w") as fh:
            fh.write(f"{int.from_bytes(os.urandom(8), 'big') | 1 << 63:016x}\n")
        cnf = os.path.join(tmp, "ca.cnf")
        with open(cnf, "w") as fh:
            fh.write(f"[ca]\ndefault_ca = lab\n[lab]\ndatabase = {tmp}/index.txt\n"
                     f"new_certs_dir = {tmp}\nserial = {tmp}/serial\ndefault_md = sha256\n"
                     "policy = any\nunique_subject = no\nx509_extensions = client\n"
                     "[any]\ncommonName = supplied\n[client]\n"
                     "keyUsage = critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage = clientAuth\nbasicConstraints = critical,CA:FALSE\n"
                     "authorityKeyIdentifier = keyid\n")
        end = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(not_after))
        _openssl("ca", "-batch", "-notext", "-preserveDN", "-config", cnf,
                 "-cert", os.path.join(pki_dir, "ca.crt"), "-keyfile",
                 os.path.join(pki_dir, "ca.key"), "-in", csr, "-out", crt, "-enddate", end)
        with open(crt) as c, open(key) as k:
            return c.read(), k.read()


# ---- the control plane's other certificates (HA control planes, lab/k8s/STATE.md) -------------

def make_named_ca(pki_dir: str, base: str, cn: str) -> None:
    """Another self-signed CA as kubeadm makes it (front-proxy-ca): PKI_DIR/BASE.{crt,key}."""
    os.makedirs(pki_dir, exist_ok=True)
    key, crt = os.path.join(pki_dir, f"{base}.key"), os.path.join(pki_dir, f"{base}.crt")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
             "-days", "3650", "-subj", f"/CN={cn}", "-addext",
             "basicConstraints=critical,CA:TRUE", "-addext",
             "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign")
    os.chmod(key, 0o600)


def make_sa(pki_dir: str) -> None:
    """The service-account signing pair: PKI_DIR/sa.key (RSA 2048) and sa.pub."""
    os.makedirs(pki_dir, exist_ok=True)
    key = os.path.join(pki_dir, "sa.key")
    _openssl("genrsa", "-out", key, "2048")
    os.chmod(key, 0o600)
    _openssl("rsa", "-in", key, "-pubout", "-out", os.path.join(pki_dir, "sa.pub"))


def make_serving(pki_dir: str, base: str, cn: str, dns: list[str], ips: list[str],
                 ca_base: str = "ca") -> None:
    """A serving certificate signed by PKI_DIR/CA_BASE (kubeadm's apiserver: CN kube-apiserver,
    serverAuth, the SANs given in that order, 1 year): PKI_DIR/BASE.{crt,key}."""
    sans = ",".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips])
    with tempfile.TemporaryDirectory() as tmp:
        key, csr, crt, cnf = (os.path.join(tmp, n) for n in ("s.key", "s.csr", "s.crt", "x.cnf"))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                 "-subj", f"/CN={cn}")
        with open(cnf, "w") as fh:
            fh.write("[srv]\nbasicConstraints = critical,CA:FALSE\n"
                     "keyUsage = critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage = serverAuth\nauthorityKeyIdentifier = keyid\n"
                     f"subjectAltName = {sans}\n")
        serial = f"0x{int.from_bytes(os.urandom(8), 'big') | 1 << 63:016x}"
        _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(pki_dir, f"{ca_base}.crt"),
                 "-CAkey", os.path.join(pki_dir, f"{ca_base}.key"), "-set_serial", serial,
                 "-days", "365", "-sha256", "-extfile", cnf, "-extensions", "srv", "-out", crt)
        os.makedirs(pki_dir, exist_ok=True)
        with open(crt) as c, open(key) as k:
            cert_pem, key_pem = c.read(), k.read()
    dest = os.path.join(pki_dir, f"{base}.key")
    with open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(key_pem)
    os.chmod(dest, 0o600)
    with open(os.path.join(pki_dir, f"{base}.crt"), "w") as fh:
        fh.write(cert_pem)


# ---- the kubeadm-certs Secret's encryption ------------------------------------------------------
# kubeadm encrypts each file with AES-GCM under the certificate key (util/crypto EncryptBytes).
# Python's standard library has no AES: the lab uses a SHA-256 keystream (counter mode) and an
# HMAC-SHA256 tag under the same 32-byte key. What matters is kept: without the right key the
# data cannot be read, and a wrong key fails the tag check ("cipher: message authentication
# failed", GCM's text); the key itself is never stored.

def _stream(key: bytes, nonce: bytes, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(key + nonce + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:n])


def encrypt(data: bytes, key_hex: str) -> str:
    """base64(nonce | ciphertext | tag) of DATA under the hex certificate key."""
    import hmac

    key = bytes.fromhex(key_hex)
    nonce = os.urandom(12)
    body = bytes(a ^ b for a, b in zip(data, _stream(key, nonce, len(data)), strict=True))
    tag = hmac.new(key, nonce + body, hashlib.sha256).digest()[:16]
    return base64.b64encode(nonce + body + tag).decode()


class AuthFailed(Exception):
    """The key does not open the data (GCM: "cipher: message authentication failed")."""


def decrypt(blob: str, key_hex: str) -> bytes:
    import hmac

    key = bytes.fromhex(key_hex)
    raw = base64.b64decode(blob)
    nonce, body, tag = raw[:12], raw[12:-16], raw[-16:]
    if not hmac.compare_digest(tag, hmac.new(key, nonce + body, hashlib.sha256).digest()[:16]):
        raise AuthFailed("cipher: message authentication failed")
    return bytes(a ^ b for a, b in zip(body, _stream(key, nonce, len(body)), strict=True))
