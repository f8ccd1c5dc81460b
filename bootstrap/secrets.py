"""Secrets of a run (sudo password, bootstrap tokens): registered once, masked everywhere."""

from __future__ import annotations

import threading

MASK = "********"


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
        return text
