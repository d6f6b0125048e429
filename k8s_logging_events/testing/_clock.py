"""A clock that only moves when a test moves it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

_DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)


class FakeClock:
    """A :class:`~k8s_logging_events.clock.Clock` and a sleeper that tests drive by hand.

    It keeps both kinds of time: ``now()`` (the wall clock, for timestamps) and
    ``monotonic()`` (for durations). ``step()`` moves both, as time passing does;
    ``set()`` and ``step_wall()`` move the wall clock alone, as an NTP correction or a VM
    resumed from a snapshot does, and ``monotonic()`` does not notice. With ``tick`` set,
    every ``now()`` call moves both on by that many seconds after answering (client-go's
    ``SimpleIntervalClock``). The clock is also a :class:`~k8s_logging_events.clock.Sleeper`:
    calling it as ``clock.sleep(seconds, cancel)`` records the sleep in :attr:`sleeps`, moves
    time on by ``seconds`` and returns at once, so retry back-offs cost no wall-clock time.

    Args:
        start: the initial time (aware, or taken as UTC); 2024-01-01T00:00:00Z by default.
            Kept in UTC, as ``set()``'s: steps in a zone with daylight saving time would
            add wall-clock hours, not elapsed time.
        tick: seconds added after every ``now()`` call; 0 keeps time still.

    A negative ``tick`` or ``step()`` raises :class:`ValueError`: the monotonic reading
    never goes back (a wall clock set back is ``step_wall(-seconds)``).
    """

    def __init__(self, start: datetime | None = None, *, tick: float = 0.0) -> None:
        _forward("tick", tick)
        self._now = _utc(start or _DEFAULT_START)
        self._tick = timedelta(seconds=tick)
        self._tick_seconds = tick
        self._monotonic = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        """Every sleep asked of this clock, in seconds, in order."""

    def now(self) -> datetime:
        """Return the fake time (then advance it by ``tick``)."""
        with self._lock:
            current = self._now
            self._now = current + self._tick
            self._monotonic += self._tick_seconds
            return current

    def monotonic(self) -> float:
        """Return the fake monotonic reading: seconds that ``step()`` and sleeps added up."""
        with self._lock:
            return self._monotonic

    def step(self, seconds: float) -> None:
        """Let ``seconds`` pass: both the wall clock and the monotonic reading move."""
        _forward("step", seconds)
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds

    def step_wall(self, seconds: float) -> None:
        """Move the wall clock alone by ``seconds`` (negative: back), as NTP may step it."""
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def set(self, t: datetime) -> None:
        """Set the wall clock to ``t``; the monotonic reading does not change."""
        with self._lock:
            self._now = _utc(t)

    def sleep(self, seconds: float, cancel: threading.Event) -> bool:
        """Pretend to sleep: record it, move time on, and report whether ``cancel`` is set."""
        with self._lock:
            self.sleeps.append(seconds)
            step = timedelta(seconds=max(0.0, seconds))
            if seconds > 0 and not step:
                # a datetime holds whole microseconds: a shorter sleep must still move time,
                # or a caller that sleeps until a due time asks again forever
                step = timedelta(microseconds=1)
            self._now += step
            self._monotonic += step.total_seconds()
        return cancel.is_set()

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"


def _utc(t: datetime) -> datetime:
    # aware arithmetic in a zone such as America/New_York adds wall-clock time: a step of an
    # hour across the end of daylight saving time moved now() by two, a sleep in the
    # repeated hour moved it back; in UTC a step moves it by exactly the seconds stepped
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _forward(name: str, seconds: float) -> None:
    # a monotonic reading that went back would stop every refill and window until it caught
    # up: what a test means by a step back is the wall clock's, which durations never see
    if not seconds >= 0:
        msg = (
            f"FakeClock {name} must not be negative (or NaN), got {seconds!r}: time passing "
            "never goes back; step_wall(seconds) or set(t) moves the wall clock alone"
        )
        raise ValueError(msg)
