"""Time and sleeping, injected everywhere the pipeline waits or stamps.

Nothing in the library reads the wall clock or sleeps directly: the correlator, the recorder
and the writer take a :class:`Clock` (``clock=``) and a :class:`Sleeper` (``sleep=``), so
tests drive time with :class:`k8s_logging_events.testing.FakeClock` and never wait.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "Sleeper", "SystemClock", "event_sleep", "seconds"]


@runtime_checkable
class Clock(Protocol):
    """Knows what time it is."""

    def now(self) -> datetime:
        """Return the current time as a timezone-aware UTC datetime."""
        ...


class SystemClock:
    """The real clock: :func:`datetime.now` in UTC."""

    __slots__ = ()

    def now(self) -> datetime:
        """Return the current wall-clock time in UTC."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class Sleeper(Protocol):
    """Knows how to wait for ``seconds`` unless ``cancel`` is set first.

    Returns True when the wait was cut short by ``cancel``.
    """

    def __call__(self, seconds: float, cancel: threading.Event) -> bool: ...


def event_sleep(seconds: float, cancel: threading.Event) -> bool:
    """Wait on ``cancel`` for up to ``seconds``: the default, interruptible :class:`Sleeper`."""
    if seconds <= 0:
        return cancel.is_set()
    return cancel.wait(seconds)


def seconds(clock: Clock) -> float:
    """Return ``clock.now()`` as seconds since the Unix epoch (for rate arithmetic)."""
    return clock.now().timestamp()
