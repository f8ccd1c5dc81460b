"""Secrets of a run (sudo password, bootstrap tokens): registered once, masked everywhere."""

from __future__ import annotations

import re
import threading

MASK = "********"
# kubeadm's bootstrap token format (cmd/kubeadm/app/apis/bootstraptoken): masked even when the
# toolkit never saw the value (the default token kubeadm init creates and prints).
BOOTSTRAP_TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")


class Secrets:
    """A set of secret strings; ``mask`` replaces each with ********."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        if value and len(value) >= 4:
            with self._lock:
                self._values.add(value)

    def mask(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, MASK)
        return BOOTSTRAP_TOKEN.sub(MASK, text)
