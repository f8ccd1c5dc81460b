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
