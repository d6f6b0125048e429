"""The library's own reports about itself, on the ``k8s_logging_events`` logger, rate-limited.

An outage or a flood of bad input must not turn into a log storm: each kind of report is
written the first time, then at most once per interval with a count of what was held back.
The handler ignores every record from this logger, so these reports never become events.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from k8s_logging_events import clock as clock_mod

__all__ = ["LOGGER_NAME", "RateLimitedReporter", "logger"]

LOGGER_NAME = "k8s_logging_events"
"""The library's logger; the handler never turns its records into events."""

logger = logging.getLogger(LOGGER_NAME)

DEFAULT_REPORT_INTERVAL_SECONDS = 60.0
"""How often one kind of report may repeat: once a minute keeps an outage readable."""


class RateLimitedReporter:
    """Logs one line per kind of problem per interval, counting the ones it held back."""

    def __init__(
        self,
        *,
        interval_seconds: float = DEFAULT_REPORT_INTERVAL_SECONDS,
        clock: clock_mod.Clock | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self._interval = interval_seconds
        self._clock = clock or clock_mod.SystemClock()
        self._log = log or logger
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def report(self, kind: str, level: int, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` under ``kind`` unless that kind was logged within the interval.

        Returns True when the line was written.
        """
        if not self._log.isEnabledFor(level):
            return False
        now = clock_mod.seconds(self._clock)
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return False
            self._last[kind] = now
            held_back = self._suppressed.pop(kind, 0)
        if held_back:
            msg = f"{msg} (%d similar reports held back)"
            args = (*args, held_back)
        self._log.log(level, msg, *args)
        return True
