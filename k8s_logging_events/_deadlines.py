"""How long the handler's ``flush()``, ``drain()`` and ``close()`` wait: one wait at exit.

Beside the handler: ``logging.shutdown()`` flushes then closes, and a batch job often
flushes (or drains) first; with the server down, each could wait the whole ``flush_timeout``
for the same writes. :class:`ExitWaits` keeps them to one wait, by the rules of
docs/batch-jobs.md. Real time (``time.monotonic``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

EXIT_PAIR_SECONDS = 1.0
"""A close() this soon after a flush() returned is the second half of one exit."""


class ExitWaits:
    """Decides each wait's timeout from the handler's ``flush_timeout`` and the waits before it
    (tests may pass their own ``monotonic``)."""

    def __init__(
        self, flush_timeout: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._timeout = flush_timeout
        self._monotonic = monotonic
        self._deadline = 0.0
        self._ended_at = -math.inf
        self._timed_out_at: int | None = None  # ``written`` when a wait last ran out of time
        self._drain_wait = 0.0  # the timeout of the latest drain()
        self._skipped = False  # the latest flush did not wait (nothing written since)
        self.cut_short = False
        """A wait was interrupted (:meth:`cut`): what the close gives up is not a deadline's."""

    def for_flush(self, written: int) -> float:
        """The timeout of ``flush()``, when ``written`` occurrences have been written so far."""
        self._skipped = self._timed_out_at == written
        timeout = 0.0 if self._skipped else self._timeout
        self._deadline = self._monotonic() + timeout
        return timeout

    def for_drain(self, timeout: float | None) -> float:
        """The timeout of ``drain(timeout)``: as asked, else ``flush_timeout``."""
        self._drain_wait = self._timeout if timeout is None else max(0.0, timeout)
        return self._drain_wait

    def for_close(self, written: int) -> float:
        """The timeout of ``close()``: what is left of a flush just before, or nothing again."""
        now = self._monotonic()
        if self._timed_out_at == written:
            return 0.0
        if now - self._ended_at < EXIT_PAIR_SECONDS:
            # logging.shutdown() flushes, then closes: both share the flush's deadline
            return max(0.0, self._deadline - now)
        return self._timeout

    def cut(self) -> None:
        """A wait was interrupted (Ctrl-C at exit): the close that follows gives up at once."""
        self._deadline = self._monotonic()
        self.cut_short = True

    def ended(self, done: bool, written: int, *, drain: bool = False) -> None:
        """Note how a wait ended, and how many occurrences had been written by then."""
        # a flush that did not wait ran out of nothing: what landed meanwhile counts
        waited_in_vain = self._drain_wait >= self._timeout if drain else not self._skipped
        if done:
            self._timed_out_at = None
        elif waited_in_vain:
            self._timed_out_at = written
        if not drain:
            self._ended_at = self._monotonic()
