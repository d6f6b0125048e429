"""When a failed write is tried again: client-go's schedule, and the wait after a 429."""

from __future__ import annotations

import pytest

from k8s_logging_events import _retry, sink


def _throttled(retry_after: float | None = None) -> sink.ApiStatusError:
    return sink.ApiStatusError(429, "TooManyRequests", "slow down", retry_after=retry_after)


def test_a_429_without_retry_after_backs_off_doubling_up_to_the_cap() -> None:
    """1, 2, 4 ... seconds, capped at 30, each scaled into [0.5, 1) by the random source."""
    high = _retry.RetrySchedule(2, 10.0, lambda: 0.999999)
    low = _retry.RetrySchedule(2, 10.0, lambda: 0.0)
    waits = [high.throttled_delay(n, _throttled()) for n in range(1, 9)]
    assert waits == pytest.approx([1, 2, 4, 8, 16, 30, 30, 30], rel=1e-5)
    assert [low.throttled_delay(n, _throttled()) for n in (1, 6)] == [0.5, 15.0]
    assert _retry.THROTTLE_MAX_SECONDS == 30.0


def test_a_429_with_retry_after_waits_exactly_that_long() -> None:
    schedule = _retry.RetrySchedule(2, 10.0, lambda: 0.5)
    assert schedule.throttled_delay(7, _throttled(retry_after=3.0)) == 3.0
    assert schedule.throttled_delay(1, _throttled(retry_after=1e12)) == _retry.MAX_WAIT_SECONDS


def test_failures_follow_client_go_s_schedule_and_stop_after_max_tries() -> None:
    """The first back-off is sleep_duration times the random number, then sleep_duration."""
    schedule = _retry.RetrySchedule(3, 10.0, lambda: 0.25)
    error = ConnectionResetError("reset")
    assert [schedule.delay(n, error) for n in (1, 2, 3)] == [2.5, 10.0, None]
    assert schedule.delay(1, sink.ApiStatusError(422, "Invalid")) is None


@pytest.mark.parametrize(
    ("error", "landed"),
    [
        (ConnectionResetError("reset"), True),
        (sink.ApiStatusError(500, "InternalError"), True),
        (sink.ApiStatusError(429, "TooManyRequests"), False),
        (sink.ApiStatusError(409, "Conflict"), False),
        (_retry.ContentionError("others wrote"), False),
        (sink.RequestConstructionError("bad"), False),
    ],
)
def test_what_may_have_landed(error: Exception, landed: bool) -> None:
    """Only a lost answer or a 5xx leaves open whether the server stored the write."""
    assert _retry.may_have_landed(error) is landed
    assert _retry.is_throttled(error) is (getattr(error, "status", 0) == 429)
