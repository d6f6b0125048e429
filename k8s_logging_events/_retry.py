"""When a failed write is tried again: client-go's schedule, and waiting out a 429.

Beside the writer (:mod:`k8s_logging_events._writer`), which asks these questions under the
runtime's lock: how long until the next attempt, whether a failed request may have been
stored all the same, whether it hung. Plain decisions, no state of their own.

A failure spends one of ``max_tries`` attempts, as in client-go. A 429 does not: the server
is asking the client to slow down, not saying the write failed. The write waits for the
``Retry-After`` the server gave, or, when it gave none (the ``EventRateLimit`` admission
plugin never does), for a back-off that doubles from :data:`THROTTLE_BASE_SECONDS` up to
:data:`THROTTLE_MAX_SECONDS`, jittered so that a fleet sharing one bucket does not come back
in step. Occurrences keep coalescing into the waiting write meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from k8s_logging_events import sink

__all__ = [
    "MAX_WAIT_SECONDS",
    "THROTTLE_BASE_SECONDS",
    "THROTTLE_MAX_SECONDS",
    "ContentionError",
    "RetrySchedule",
    "finite",
    "is_throttled",
    "is_timeout",
    "may_have_landed",
]

MAX_WAIT_SECONDS = 86_400.0
"""The longest wait the writer schedules (a day): a ``Retry-After: 1e10`` or a spam filter
that never refills must not overflow the timers; the write is looked at again after it."""

THROTTLE_BASE_SECONDS = 1.0
"""The first wait after a 429 without ``Retry-After``; each further one doubles it."""

THROTTLE_MAX_SECONDS = 30.0
"""The longest wait after a 429 without ``Retry-After`` (before jitter takes up to half off):
long enough for a bucket shared by a fleet to refill, short enough that an exit's flush
still gets its turn."""


class ContentionError(Exception):
    """Other writers changed the event in every round of one attempt: try again later.

    Retried on the usual schedule (it spends an attempt), so that writers contending for
    one event spread out; the occurrences it carries were not written.
    """


class RetrySchedule:
    """client-go's schedule, as tenacity strategies: random first back-off, then fixed.

    Args:
        max_tries: attempts per write (429s aside).
        sleep_duration: seconds between attempts; the first back-off is this times a
            random number in [0, 1).
        rng: the random source (injected in tests).
    """

    def __init__(self, max_tries: int, sleep_duration: float, rng: Callable[[], float]) -> None:
        self._rng = rng
        self._stop = tenacity.stop_after_attempt(max(1, max_tries))
        self._wait = tenacity.wait_chain(
            _wait_scaled(sleep_duration, rng), tenacity.wait_fixed(sleep_duration)
        )
        self._retrying = tenacity.Retrying(stop=self._stop, wait=self._wait)
        self._throttle = tenacity.wait_exponential(
            multiplier=THROTTLE_BASE_SECONDS, max=THROTTLE_MAX_SECONDS
        )

    def delay(self, attempts: int, error: Exception) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if not sink.is_retryable(error):
            return None
        state = self._state(attempts, error)
        if self._stop(state):
            return None
        delay = float(self._wait(state))
        retry_after = getattr(error, "retry_after", None)
        if isinstance(error, sink.ApiStatusError) and retry_after is not None:
            delay = max(delay, retry_after)
        return finite(delay)

    def throttled_delay(self, times: int, error: Exception) -> float:
        """Seconds to wait after the ``times``-th 429 in a row: ``Retry-After``, or back off.

        Without ``Retry-After``: 1, 2, 4 ... seconds up to :data:`THROTTLE_MAX_SECONDS`, each
        scaled by a random factor in [0.5, 1).
        """
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return finite(float(retry_after))
        backoff = float(self._throttle(self._state(times, error)))
        return finite(backoff * (0.5 + self._rng() / 2))

    def _state(self, attempts: int, error: Exception) -> tenacity.RetryCallState:
        state = tenacity.RetryCallState(self._retrying, None, (), {})
        state.attempt_number = max(1, attempts)
        state.set_exception((type(error), error, error.__traceback__))
        return state


def _wait_scaled(base: float, rng: Callable[[], float]) -> tenacity.wait.wait_base:
    class _Scaled(tenacity.wait.wait_base):
        # clients started together must not retry in lockstep
        def __call__(self, retry_state: tenacity.RetryCallState) -> float:
            return base * rng()

    return _Scaled()


def is_throttled(error: Exception) -> bool:
    """True for a 429: the server asks for fewer requests; the write is not at fault."""
    return isinstance(error, sink.ApiStatusError) and error.status == 429


def finite(seconds: float) -> float:
    """A wait that arithmetic and timers can hold: never NaN, never beyond a day."""
    if not seconds >= 0:  # NaN too
        return 0.0
    return min(seconds, MAX_WAIT_SECONDS)


def is_timeout(error: Exception) -> bool:
    """True for a request that got no answer in time (the server or its webhooks hang)."""
    if isinstance(error, TimeoutError):
        return True
    return "timed out" in str(error).lower() or "timeout" in type(error).__name__.lower()


def may_have_landed(error: Exception) -> bool:
    """Tell whether a write that failed with ``error`` may have been stored all the same.

    A transport error (the answer was lost) and a 5xx (a 500 or a 504 Timeout can come
    after the server stored the object) leave it open; a 4xx answer, 429 included, says the
    request was not carried out, and so does :class:`ContentionError`.
    """
    if isinstance(error, sink.ApiStatusError):
        return error.status >= 500
    return not isinstance(error, ContentionError | sink.RequestConstructionError)
