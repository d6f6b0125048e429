"""A passive token bucket: the rate arithmetic of ``golang.org/x/time/rate``, on caller time.

The correlator's spam filter keeps one per source and object, the sink's rate limit one per
sink. It never reads a clock nor sleeps: each call is given ``now`` in monotonic seconds
(a wall clock stepped back would stop the refill). Not thread-safe: the owner holds a lock.
"""

from __future__ import annotations

import math

_NANOSECOND = 1e-9


class TokenBucket:
    """Starts full (``burst`` tokens, also the capacity) at ``now``; tokens accrue at ``qps``
    per second; a refused take changes nothing. ``qps=math.inf`` never limits, 0 or less
    never refills; a ``burst`` below 1 refuses every take (unless ``qps`` is infinite). As in
    Go's ``rate.Limiter``, a shortfall refilled in under a nanosecond counts as none, so float
    rounding at a refill boundary cannot refuse a token that is due.
    """

    __slots__ = ("_burst", "_last", "_qps", "_tokens")

    def __init__(self, qps: float, burst: int, now: float) -> None:
        self._qps = qps
        self._burst = burst
        self._tokens = float(burst)
        self._last = now

    def __repr__(self) -> str:
        return f"TokenBucket(qps={self._qps!r}, burst={self._burst!r}, tokens={self._tokens!r})"

    def _available(self, now: float) -> float:
        # time running backwards refills nothing (Go clamps the same way)
        elapsed = max(0.0, now - self._last)
        refill = elapsed * self._qps if self._qps > 0 else 0.0
        return min(float(self._burst), self._tokens + refill)

    def wait_time(self, now: float) -> float:
        """Seconds until one whole token can be taken (``math.inf``: never); takes nothing."""
        if self._qps == math.inf:
            return 0.0
        if self._burst < 1:
            return math.inf
        shortfall = 1.0 - self._available(now)
        if shortfall <= 0:
            return 0.0
        if self._qps <= 0:
            return math.inf
        wait = shortfall / self._qps
        return 0.0 if wait < _NANOSECOND else wait

    def try_take(self, now: float) -> bool:
        """Take one token if one is available at ``now``; whether it was taken."""
        if self.wait_time(now) > 0:
            return False
        if self._qps != math.inf:
            self._tokens = self._available(now) - 1.0
            # Go moves the refill origin forward only on a successful take; never back (a
            # take dated earlier, as occurrences on several threads come, would refill twice)
            self._last = max(self._last, now)
        return True
