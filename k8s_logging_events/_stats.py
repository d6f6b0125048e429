"""Counters for what became of every occurrence, shared by the recorder and its writers."""

from __future__ import annotations

import threading
from collections.abc import Mapping

__all__ = ["OUTCOMES", "Counters"]

OUTCOMES = ("dropped", "created", "patched", "coalesced", "failed")
"""The final outcomes; once flushed, ``accepted`` equals their sum for each sink."""


class Counters:
    """A thread-safe bag of named integer counters."""

    __slots__ = ("_lock", "_values")

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(names, 0)

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name``."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def get(self, name: str) -> int:
        """Return the current value of ``name`` (0 if never counted)."""
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> Mapping[str, int]:
        """Return a copy of every counter."""
        with self._lock:
            return dict(self._values)
