"""The clock module: two kinds of time, and clocks that know only one."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from k8s_logging_events import _diagnostics, clock, models, recorder, sink
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, LocalApiServer
from tests.reliability_scenarios import ListHandler, app_logger, pod, stored_counts, unaccounted


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


# --- the two kinds of time through the whole pipeline ----------------------------------------


class _Armed:
    """Steps the wall clock right after a given number of further reads (of either kind).

    The step then falls between two readings of the code under test (a due time and its
    timer, a token taken and the next), whatever the threads' timing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads_left: int | None = None
        self._step = 0.0

    def step_after(self, reads: int, seconds: float) -> None:
        with self._lock:
            self._reads_left, self._step = reads, seconds

    def _read(self) -> None:
        with self._lock:
            if self._reads_left is None:
                return
            self._reads_left -= 1
            if self._reads_left > 0:
                return
            self._reads_left = None
        self.step_wall(self._step)

    def step_wall(self, seconds: float) -> None:
        raise NotImplementedError


class _SteppingFake(_Armed, FakeClock):
    """A FakeClock whose wall clock steps by itself once, after a number of reads."""

    def __init__(self) -> None:
        _Armed.__init__(self)
        FakeClock.__init__(self)

    def now(self) -> datetime:
        try:
            return FakeClock.now(self)
        finally:
            self._read()

    def monotonic(self) -> float:
        try:
            return FakeClock.monotonic(self)
        finally:
            self._read()

    def step_wall(self, seconds: float) -> None:
        FakeClock.step_wall(self, seconds)


class _SteppedWall(_Armed):
    """The real clocks, but a wall clock that steps once by itself, after a number of reads
    (durations stay real)."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = timedelta(0)

    def now(self) -> datetime:
        try:
            return datetime.now(UTC) + self.offset
        finally:
            self._read()

    def monotonic(self) -> float:
        try:
            return time.monotonic()
        finally:
            self._read()

    def step_wall(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


class _FailingOnce:
    """A Kubernetes sink whose first create meets a 503 (from the server); right after it,
    its clock is armed to step at its next read, where the writer schedules the retry."""

    def __init__(self, inner: sink.KubernetesEventSink, armed: _Armed, step: float) -> None:
        self.inner = inner
        self._arm: tuple[_Armed, float] | None = (armed, step)

    def create(self, event: models.Event) -> models.Event:
        try:
            return self.inner.create(event)
        except sink.ApiStatusError:
            arm, self._arm = self._arm, None
            if arm is not None:
                arm[0].step_after(1, arm[1])
            raise

    def update(self, event: models.Event) -> models.Event:
        return self.inner.update(event)

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        return self.inner.patch(event, data)

    def drain(self, on: bool) -> None:
        self.inner.drain(on)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer() as server:
        yield server


@pytest.fixture(name="handlers")
def _handlers() -> Iterator[list[Any]]:
    """Handlers and the sinks given to them (which a handler does not close), closed in turn."""
    made: list[Any] = []
    yield made
    for handler in made:
        handler.close()


WALL_STEPS = [-600.0, -3600.0, 3600.0]


def _after_a_503(
    server: LocalApiServer,
    handlers: list[Any],
    clock: _SteppingFake | _SteppedWall,
    wall_step: float,
    **options: Any,
) -> KubernetesEventHandler:
    """A handler on ``clock`` whose first create meets a 503, the wall clock stepping by
    ``wall_step`` right after it: one warning is logged through it."""
    options.setdefault("sleep_duration", 10.0)
    inner = sink.KubernetesEventSink.from_url(server.url, qps=0)
    handler = KubernetesEventHandler(
        component="clock", sink=_FailingOnce(inner, clock, wall_step), clock=clock, **options
    )
    handlers += [handler, inner]
    server.inject("POST", "/events", status=503)
    log = app_logger("clock")
    log.addHandler(handler)
    log.warning("Back-off", extra={"involved": pod("web-0"), "reason": "BackOff"})
    return handler


class TestWallClockSteps:
    """A step of the wall clock after a 503 or under the rate limit: timestamps follow the
    wall clock, while back-offs and the rate limit keep measuring real (monotonic) time."""

    @pytest.mark.parametrize("wall_step", WALL_STEPS)
    def test_a_retry_after_a_503_goes_out_within_its_back_off(
        self, server, handlers, wall_step
    ) -> None:
        """The 503's retry waits at most sleep_duration (10 s) on the fake monotonic reading,
        not ten minutes or an hour more; the event is then on the server with count 1."""
        fake = _SteppingFake()
        handler = _after_a_503(server, handlers, fake, wall_step, sleep=fake.sleep)
        handler.flush()

        assert stored_counts(server) == {"web-0": 1}
        assert fake.now() - datetime(2024, 1, 1, tzinfo=UTC) > timedelta(seconds=wall_step)
        assert 0 < sum(fake.sleeps) <= 10.0
        stats = handler.stats()
        assert (stats["created"], stats["failed"], unaccounted(stats)) == (1, 0, 0)

    @pytest.mark.parametrize("wall_step", WALL_STEPS)
    def test_flush_writes_a_write_whose_wall_clock_stepped_during_its_back_off(
        self, server, handlers, wall_step
    ) -> None:
        """Real time: a retry due 0.2 s after the 503 is written by flush() at once, however
        far the wall clock stepped meanwhile (before, a step back an hour postponed it past
        flush() and close(), and the event was lost)."""
        wall = _SteppedWall()
        handler = _after_a_503(
            server, handlers, wall, wall_step, sleep_duration=0.2, flush_timeout=10.0
        )
        handler.flush()  # a retry postponed past it leaves it to wait its timeout out in vain

        assert stored_counts(server) == {"web-0": 1}
        assert wall.offset == timedelta(seconds=wall_step)

    @pytest.mark.parametrize("wall_step", WALL_STEPS)
    def test_the_rate_limit_lets_the_next_write_go_after_one_token_interval(
        self, server, handlers, wall_step
    ) -> None:
        """qps 1, burst 1: right after the first write takes the token, a wall step; the
        second write waits about a second of fake monotonic time (before: an hour, when the
        step was back)."""
        limited = _SteppingFake()  # the sink's own clock: read by its rate limit only
        limited.step_after(2, wall_step)  # the limit's start, then the first write's token
        inner = sink.KubernetesEventSink.from_url(
            server.url, qps=1, burst=1, drain_qps=1, clock=limited, sleep=limited.sleep
        )
        handler = KubernetesEventHandler(component="clock", sink=inner, clock=FakeClock())
        handlers += [handler, inner]
        log = app_logger("clock")
        log.addHandler(handler)
        for name in ("web-0", "web-1"):
            log.warning("Back-off", extra={"involved": pod(name), "reason": "BackOff"})
        handler.flush()

        assert stored_counts(server) == {"web-0": 1, "web-1": 1}
        assert limited.now() - datetime(2024, 1, 1, tzinfo=UTC) > timedelta(seconds=wall_step)
        assert 0 < sum(limited.sleeps) <= 1.5

    def test_without_a_flush_the_rate_limit_goes_on_after_a_step_back(
        self, server, handlers
    ) -> None:
        """Real time, no flush: with the wall clock an hour back after the first write took
        its token, the second still goes out about a second later (before: at a flush)."""
        limited = _SteppedWall()
        limited.step_after(2, -3600)
        inner = sink.KubernetesEventSink.from_url(server.url, qps=1, burst=1, clock=limited)
        handler = KubernetesEventHandler(component="clock", sink=inner)
        handlers += [handler, inner]
        log = app_logger("clock")
        log.addHandler(handler)
        for name in ("web-0", "web-1"):
            log.warning("Back-off", extra={"involved": pod(name), "reason": "BackOff"})

        # the bounds tell a second from the hour of the step back, with room for a cold
        # start (the first write builds and imports the client: 3 s on a loaded machine)
        assert server.wait_for_event(name="web-0", timeout=60)
        assert server.wait_for_event(name="web-1", timeout=60)
        assert limited.offset == timedelta(seconds=-3600)

    @pytest.mark.parametrize("wall_step", WALL_STEPS)
    def test_the_report_interval_is_measured_on_the_monotonic_reading(self, wall_step) -> None:
        """A report kind repeats after its interval of monotonic time, whatever the wall
        clock did: a step back does not silence it, a step forward does not let it repeat."""
        fake = FakeClock()
        log = app_logger("reports")
        kept = ListHandler()
        log.addHandler(kept)
        reporter = _diagnostics.RateLimitedReporter(interval_seconds=60.0, clock=fake, log=log)

        assert reporter.report("kind", logging.WARNING, "first")
        fake.step_wall(wall_step)
        assert not reporter.report("kind", logging.WARNING, "held back")
        fake.step(60.5)
        assert reporter.report("kind", logging.WARNING, "again")
        assert [r.getMessage() for r in kept.records] == [
            "first",
            "again [and 1 more like it since the last report]",
        ]


class _SleepClass:
    """A class of the sleeper's shape: calling it makes an instance, never a bool."""

    def __init__(self, seconds: float, cancel: threading.Event) -> None:
        self.seconds = seconds


async def _async_sleep(seconds: float, cancel: threading.Event) -> bool:
    return False


@pytest.mark.parametrize(
    "sleep",
    [functools.partial(time.sleep), asyncio.sleep, _async_sleep, _SleepClass],
    ids=["partial-of-time.sleep", "asyncio.sleep", "async-def", "class"],
)
def test_a_sleep_that_cannot_wait_on_a_writer_thread_is_refused_at_configuration(
    sleep: Any,
) -> None:
    """``sleep`` is called as ``sleep(seconds, cancel)`` on the library's threads. A partial of
    ``time.sleep`` was taken and failed every wait (the dispatcher reported a TypeError in a
    loop, hundreds of thousands of times, and writes failed); ``asyncio.sleep``, an
    ``async def`` or a class was taken and returned a coroutine never awaited (or an
    instance) at every wait, which reads as True: cancelled, so writes failed "the sink was
    closed while waiting for its rate limit". Each is a ValueError naming the option, from
    the handler and the broadcaster alike."""
    with pytest.raises(ValueError, match="sleep"):
        KubernetesEventHandler(sink=None, sleep=sleep)
    with pytest.raises(ValueError, match="sleep"):
        recorder.EventBroadcaster(sleep=sleep)
