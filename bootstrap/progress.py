"""Progress on long waits: what a step or phase waits for, and for how long.

On a terminal one status line is redrawn in place every second, e.g.
``[master1] kubeadm-init … 42 s (waiting for the API server)``; a log file or a pipe gets the
same text as plain lines (after 10 s, then every 30 s), without control characters.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SHOW_AFTER = 3.0  # seconds before a terminal shows a running step
PLAIN_FIRST, PLAIN_EVERY = 10.0, 30.0  # plain lines: first after, then every
WIDTH = 120

# What kubeadm's phase tags mean for someone waiting (kubeadm prints "[tag] text").
KUBEADM_WAITS = {
    "preflight": "preflight checks, pulling images",
    "kubelet-start": "starting the kubelet",
    "wait-control-plane": "waiting for the API server",
    "api-check": "waiting for the API server",
    "control-plane-check": "waiting for the control plane",
    "kubelet-check": "waiting for the kubelet",
    "upload-config": "uploading the cluster config",
    "upload-certs": "uploading certificates",
    "mark-control-plane": "marking the control plane",
    "bootstrap-token": "setting up bootstrap tokens",
    "kubelet-finalize": "finishing the kubelet's setup",
    "addons": "installing CoreDNS and kube-proxy",
    "discovery": "contacting the API server",
    "reset": "resetting",
}
_TAG = re.compile(r"^\[([a-z-]+)\]\s*(.*)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def describe(line: str) -> str:
    """What a line a remote command printed says it waits for (kubeadm's tags made plain)."""
    line = _CONTROL.sub("", line).strip()
    m = _TAG.match(line)
    if m and m.group(1) in KUBEADM_WAITS:
        return KUBEADM_WAITS[m.group(1)]
    return line if len(line) <= 60 else line[:57] + "..."


@dataclass
class Task:
    host: str
    name: str
    started: float
    note: str = ""
    shown: float = 0.0  # when a plain line last showed it

    def update(self, line: str) -> None:
        """A line the remote command printed."""
        text = describe(line)
        if text:
            self.note = text

    def line(self, now: float) -> str:
        text = f"[{self.host}] {self.name} … {now - self.started:.0f} s"
        return text + (f" ({self.note})" if self.note else "")


class Progress:
    """The running steps of a run and what to show of them."""

    def __init__(self, tty: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.tty = tty
        self.clock = clock
        self.tasks: list[Task] = []
        self._lock = threading.Lock()

    def start(self, host: str, name: str) -> Task:
        task = Task(host, name, self.clock())
        with self._lock:
            self.tasks.append(task)
        return task

    def finish(self, task: Task) -> None:
        with self._lock:
            if task in self.tasks:
                self.tasks.remove(task)

    def status(self, now: float | None = None) -> str:
        """The terminal's status line: the longest-running step, and how many more run."""
        now = self.clock() if now is None else now
        with self._lock:
            long = [t for t in self.tasks if now - t.started >= SHOW_AFTER]
        if not long:
            return ""
        first = min(long, key=lambda t: t.started)
        more = f" (+{len(long) - 1} more running)" if len(long) > 1 else ""
        text = first.line(now) + more
        return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"

    def due(self, now: float | None = None) -> list[str]:
        """Plain lines due now (for a log file or a pipe)."""
        now = self.clock() if now is None else now
        lines = []
        with self._lock:
            for t in self.tasks:
                age = now - t.started
                wait = PLAIN_FIRST if not t.shown else PLAIN_EVERY
                if age >= PLAIN_FIRST and now - (t.shown or t.started) >= wait:
                    t.shown = now
                    lines.append(t.line(now))
        return lines
