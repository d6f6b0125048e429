"""The token bucket behind the spam filter and the sink's rate limit (``_tokenbucket``)."""

from __future__ import annotations

import math

import pytest

from k8s_logging_events._tokenbucket import TokenBucket


class TestTokenBucket:
    """The passive token bucket shared with the sink's rate limit."""

    def test_starts_full(self) -> None:
        """A new bucket holds burst tokens."""
        bucket = TokenBucket(1.0, 3, now=0.0)

        assert [bucket.try_take(0.0) for _ in range(4)] == [True, True, True, False]

    def test_refill_and_wait_time(self) -> None:
        """Tokens come back at qps; wait_time says when the next whole one is there."""
        bucket = TokenBucket(2.0, 1, now=10.0)
        assert bucket.try_take(10.0)

        assert bucket.wait_time(10.0) == 0.5
        assert bucket.wait_time(10.25) == 0.25
        assert not bucket.try_take(10.25)
        assert bucket.wait_time(10.5) == 0.0
        assert bucket.try_take(10.5)

    def test_capped_at_burst(self) -> None:
        """A long pause fills the bucket only to burst."""
        bucket = TokenBucket(1.0, 2, now=0.0)
        bucket.try_take(0.0)
        bucket.try_take(0.0)

        assert [bucket.try_take(1e6) for _ in range(3)] == [True, True, False]

    def test_refusal_keeps_refill_progress(self) -> None:
        """A refused take changes nothing: the refill keeps counting from the last success."""
        bucket = TokenBucket(1.0, 1, now=0.0)
        bucket.try_take(0.0)
        assert not bucket.try_take(0.9)

        assert bucket.try_take(1.0)

    def test_shortfall_under_a_nanosecond_is_allowed(self) -> None:
        """As Go waits in whole nanoseconds, a shortfall refilled in under 1 ns is no wait."""
        bucket = TokenBucket(1.0, 1, now=0.0)
        bucket.try_take(0.0)

        assert bucket.wait_time(1.0 - 2e-9) > 0
        assert bucket.wait_time(1.0 - 5e-10) == 0.0
        assert bucket.try_take(1.0 - 5e-10)

    def test_time_going_back_refills_nothing(self) -> None:
        """A clock that steps back adds no tokens."""
        bucket = TokenBucket(1.0, 1, now=100.0)
        bucket.try_take(100.0)

        assert not bucket.try_take(50.0)
        assert bucket.try_take(101.0)

    def test_time_going_back_takes_no_tokens_away(self) -> None:
        """A clock that steps back leaves a full bucket full: its next take is given."""
        bucket = TokenBucket(1.0, 2, now=100.0)

        assert bucket.wait_time(50.0) == 0.0
        assert [bucket.try_take(50.0) for _ in range(3)] == [True, True, False]

    def test_a_take_at_an_earlier_time_refills_nothing_twice(self) -> None:
        """Takes come out of order (occurrences dated when logged, on several threads): one
        dated before the last take does not move the refill back, or the seconds between
        the two would refill twice (here a token at 15 s of a bucket refilled at 20 s)."""
        bucket = TokenBucket(0.1, 2, now=0.0)

        assert [bucket.try_take(t) for t in (0.0, 10.0, 5.0)] == [True, True, True]
        assert not bucket.try_take(15.0)
        assert bucket.try_take(20.0)

    @pytest.mark.parametrize(
        ("qps", "burst", "wait"),
        [
            pytest.param(0.0, 1, math.inf, id="no-refill"),
            pytest.param(-1.0, 1, math.inf, id="negative-refill"),
            pytest.param(1.0, 0, math.inf, id="zero-burst"),
            pytest.param(math.inf, 0, 0.0, id="infinite-rate"),
        ],
    )
    def test_edge_rates(self, qps: float, burst: int, wait: float) -> None:
        """No refill or no capacity waits forever once empty (its burst is given first); an
        infinite rate never waits."""
        bucket = TokenBucket(qps, burst, now=0.0)
        assert all(bucket.try_take(0.0) for _ in range(burst))

        assert bucket.wait_time(1e9) == wait
        assert bucket.try_take(1e9) == (wait == 0.0)
