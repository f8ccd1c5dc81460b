"""Who a run is: the id, command and client that a node's lease and journal name."""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RunInfo:
    """One invocation of a command. ``changes``: it may change nodes, so it takes a lease on
    each node it changes and writes the node's journal (false for check and dry runs)."""

    command: str
    run_id: str
    client: str
    pid: int
    changes: bool = True
    break_lease: bool = False

    @classmethod
    def new(cls, command: str, changes: bool = True, break_lease: bool = False) -> RunInfo:
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
        return cls(command, run_id, socket.gethostname(), os.getpid(), changes, break_lease)
