"""The lab's bastion (lab/CONTRACT.md, "Bastion"): a node named `bastion` at 127.0.B.10 whose
sshd binds its outgoing connections to its own address (lab/bindshim.c, preloaded), so the other
nodes, which allow logins only from that address, can tell a login through the bastion from a
direct one although every connection on loopback comes from 127.0.0.1 otherwise."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

NAME = "bastion"
HOST = 10
"""The bastion's last octet: 127.0.B.10 (the cluster nodes are 127.0.B.11, .12, ...)."""
SHIM_SOURCE = Path(__file__).resolve().parent / "bindshim.c"
SHIM_NODE_PATH = "/usr/lib/lab/bindshim.so"
"""Where the bastion node sees the shim (its seed's usr/, lab/node.py `Node.seed_files`)."""


class ShimError(RuntimeError):
    """The shim could not be built; the message has the compiler's output."""


def address(block: int) -> str:
    return f"127.0.{block}.{HOST}"


def shim(root: Path) -> Path:
    """`<root>/bindshim-<sha256 of bindshim.c, 12 hex>.so`, built once with the host's cc (the
    name changes with the source; written to a temporary name, then renamed)."""
    source = SHIM_SOURCE.read_bytes()
    so = root / f"bindshim-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if so.is_file():
        return so
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".bindshim-", suffix=".so", dir=root)
    os.close(fd)
    try:
        res = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", tmp, str(SHIM_SOURCE),
                              "-ldl"], capture_output=True, text=True)
        if res.returncode != 0:
            raise ShimError(f"building {SHIM_SOURCE.name} failed (cc exit {res.returncode}):\n"
                            f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, so)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return so
