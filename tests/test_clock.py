"""The clock module: two kinds of time, and clocks that know only one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from k8s_logging_events import clock
from k8s_logging_events.testing import FakeClock


class _WallOnlyClock:
    """A user's clock written before Clock.monotonic() existed."""

    def __init__(self) -> None:
        self.current = datetime(2024, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current


class TestSystemClock:
    def test_monotonic_is_time_monotonic(self) -> None:
        """The system clock measures durations on time.monotonic()."""
        before = time.monotonic()
        reading = clock.SystemClock().monotonic()
        assert before <= reading <= time.monotonic()

    def test_is_a_clock(self) -> None:
        """SystemClock and FakeClock both satisfy the Clock protocol (now and monotonic)."""
        assert isinstance(clock.SystemClock(), clock.Clock)
        assert isinstance(FakeClock(), clock.Clock)


class TestMonotonicSource:
    def test_a_clock_with_monotonic_is_read_there(self) -> None:
        """A FakeClock's durations ignore a step of its wall clock."""
        fake = FakeClock()
        read = clock.monotonic_source(fake)
        start = read()
        fake.step_wall(-600)
        assert read() == start
        fake.step(5)
        assert read() - start == 5

    def test_a_clock_without_monotonic_measures_on_now(self) -> None:
        """An older clock with only now() still drives every timer when it moves."""
        wall = _WallOnlyClock()
        read = clock.monotonic_source(wall)
        start = read()
        wall.current += timedelta(seconds=7)
        assert read() - start == 7
