"""Counters for what became of every occurrence, shared by the recorder and the runtime.

Two kinds: :class:`Tally`, a single counter that the caller's thread bumps without a lock
(a signal handler may log while the thread it interrupted was logging), and
:class:`Counters`, a named set that the background threads update under a lock.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping

from k8s_logging_events import _process

__all__ = ["OUTCOMES", "Counters", "Tally"]

OUTCOMES = ("dropped", "created", "patched", "coalesced", "failed", "discarded")
"""The final outcomes; once flushed, ``accepted`` equals their sum for each sink.

``discarded`` is the outcome of an occurrence when there is no sink to write to (the
handler's ``sink: None``, or ``"auto"`` with no configuration found).
"""


class Tally:
    """A counter that only goes up, safe to bump from any thread and from signal handlers.

    ``next()`` on an :func:`itertools.count` is one atomic step in CPython: no lock to be
    interrupted while holding, and no update lost when a signal handler bumps the same
    counter in the middle of another bump.
    """

    __slots__ = ("_count",)

    def __init__(self) -> None:
        self._count = itertools.count()

    def add(self) -> int:
        """Add one; return the value before (a sequence number)."""
        return next(self._count)

    @property
    def value(self) -> int:
        """The current value."""
        # repr is "count(N)": the one way to read an itertools.count without moving it
        return int(repr(self._count)[6:-1])


class Counters:
    """A thread-safe bag of named integer counters."""

    __slots__ = ("__weakref__", "_lock", "_values")

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(names, 0)
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        """Every counter back to zero, under a new lock: a child counts its own outcomes."""
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self._values, 0)

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
