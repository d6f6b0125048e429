"""Time and sleeping, injected wherever the pipeline stamps or schedules.

Timestamps written into events come from :meth:`Clock.now` (the wall clock, which may step);
every duration the library schedules (correlation, back-offs, the rate limit) is measured on
:meth:`Clock.monotonic`. Each part takes a :class:`Clock` (``clock=``) and a :class:`Sleeper`
(``sleep=``), so tests drive both with :class:`k8s_logging_events.testing.FakeClock`. Only
what bounds a real wait (deadlines, stall detection, a socket's timeout) reads
``time.monotonic()`` itself (docs/architecture.md, thread rule 8).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = [
    "Clock",
    "Paced",
    "Sleeper",
    "SystemClock",
    "checked_sleeper",
    "event_sleep",
    "monotonic_source",
]


@runtime_checkable
class Clock(Protocol):
    """Knows what time it is (for timestamps) and how much time has passed (for durations)."""

    def now(self) -> datetime:
        """Return the current time as a timezone-aware UTC datetime."""

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes back: only differences mean anything."""


class SystemClock:
    """The real clocks: :func:`datetime.now` in UTC, and :func:`time.monotonic`."""

    __slots__ = ()

    def now(self) -> datetime:
        """Return the current wall-clock time in UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def __repr__(self) -> str:
        return "SystemClock()"


class Sleeper(Protocol):
    """Waits ``seconds`` unless ``cancel`` is set first; returns True when ``cancel`` cut it."""

    def __call__(self, seconds: float, cancel: threading.Event) -> bool: ...


def checked_sleeper(function: Sleeper | None) -> Sleeper | None:
    """Return ``function`` when it can be called as ``sleep(seconds, cancel)`` (or is None); a
    function of another shape would fail every wait over and over, and a coroutine function
    (``asyncio.sleep``) or a class would return something never awaited that reads as True
    (cut): ValueError."""
    if function is None:
        return None
    try:
        inspect.signature(function).bind(0.0, threading.Event())
        fits = not inspect.iscoroutinefunction(function) and not inspect.isclass(function)
    except (TypeError, ValueError):  # ValueError: no signature (time.sleep, a partial of it)
        fits = False
    if not fits:
        raise ValueError(
            "sleep must be a plain function of (seconds, cancel), called on a thread, that returns "
            f"whether cancel cut the wait (a FakeClock's sleep, say), or null; {function!r} is not"
        )
    return function


def event_sleep(seconds: float, cancel: threading.Event) -> bool:
    """Wait on ``cancel`` for up to ``seconds``: the default, interruptible :class:`Sleeper`."""
    if seconds <= 0:
        return cancel.is_set()
    return cancel.wait(seconds)


class Paced:
    """``clock`` as a test's ``sleep`` moves it: an uncut sleep has waited its seconds, also
    when it moved no clock (a stub that records, a FakeClock's sleep given alone). A waiter
    that read the clock again would ask again until real time had passed: a busy loop."""

    def __init__(self, clock: Clock, sleep: Sleeper) -> None:
        self.now, self._source, self._sleep = clock.now, monotonic_source(clock), sleep
        self._ahead = 0.0

    def monotonic(self) -> float:
        """The clock's monotonic reading, plus the seconds sleeps waited that it did not move."""
        return self._source() + self._ahead

    def sleep(self, seconds: float, cancel: threading.Event) -> bool:
        """Sleep with the test's sleeper; what the clock did not move of an uncut sleep counts
        (a cut one may have waited any part: a sleeper that waits for its cancel, say)."""
        before = self._source()
        cut = self._sleep(seconds, cancel)
        # no lock (one a fork could inherit held): a credit two writers' sleeps race to add
        # may be lost, and that wait is asked again, once
        if not cut and (short := seconds - (self._source() - before)) > 1e-6:
            self._ahead += short
        return cut


def checked(value: object, name: str = "clock", *, read: bool = True) -> Clock | None:
    """``value`` as a clock option: None, or a clock with ``now()``; a class (its ``now`` lacks
    the instance) would fail every event on a thread: ValueError. With ``read``, ``now()`` is
    read once, and a naive one refused: it would fail every time compared with a server's."""
    if value is None:
        return None
    now = getattr(value, "now", None)
    if isinstance(value, type) or not callable(now):
        raise ValueError(f"{name} must be a Clock (with now()) or null, not {value!r}")
    moment = now() if read else None
    if read and (not isinstance(moment, datetime) or moment.utcoffset() is None):
        raise ValueError(f"{name} must give aware datetimes (in UTC); {value!r} gave {moment}")
    return value  # type: ignore[return-value]


def monotonic_source(clock: object) -> Callable[[], float]:
    """Return the function that measures durations for ``clock``: its ``monotonic``, or for
    a clock written before that existed, ``now()`` (so that stepping it still moves timers).
    """
    if type(clock) is SystemClock:  # the C function itself: one Python frame fewer a reading
        return time.monotonic
    monotonic = getattr(clock, "monotonic", None)
    if callable(monotonic):
        return monotonic  # type: ignore[no-any-return]
    now: Callable[[], datetime] = clock.now  # type: ignore[attr-defined]
    return lambda: now().timestamp()


def readers(clock: Clock) -> tuple[Callable[[], datetime], Callable[[], float]]:
    """``clock.now`` and :func:`monotonic_source`, read on every log call: the system clock's
    as C functions (a Python frame fewer each)."""
    return _utc_now if type(clock) is SystemClock else clock.now, monotonic_source(clock)


_utc_now = functools.partial(datetime.now, UTC)
