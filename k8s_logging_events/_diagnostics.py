"""The library's own reports about itself, on the ``k8s_logging_events`` logger, rate-limited.

This sits beside the pipeline, not in it: every layer reports drops, failures and bad input
here. Three things make these reports safe to write from anywhere:

* they are rate-limited: each kind of report is written the first time, then at most once
  per interval with a count of what was held back, so an outage is not a log storm;
* they never take the ``logging`` module's lock: ``dictConfig`` and ``logging.shutdown()``
  hold that lock while they close a handler, and a background thread that waited for it
  there would hold up the close that waits for the thread (see :func:`log_safely`);
* they are seen: when no handler outside this library would show them (the handler alone
  on the root logger, say), a warning still reaches standard error, as
  ``logging.lastResort`` does when there is no handler at all.

The handler ignores every record from this logger and every record logged on one of the
library's own threads (:func:`mark_own_thread`), so these reports never become events.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from typing import Any

from k8s_logging_events import _process
from k8s_logging_events import clock as clock_mod

__all__ = [
    "LOGGER_NAME",
    "RateLimitedReporter",
    "is_own_thread",
    "log_safely",
    "logger",
    "mark_own_thread",
]

LOGGER_NAME = "k8s_logging_events"
"""The library's logger; the handler never turns its records into events."""

logger = logging.getLogger(LOGGER_NAME)

DEFAULT_REPORT_INTERVAL_SECONDS = 60.0
"""How often one kind of report may repeat: once a minute keeps an outage readable."""

OWN_HANDLER_MARK = "ignores_library_reports"
"""A handler class attribute: true on handlers that drop this library's records (ours)."""

_own = threading.local()


def mark_own_thread() -> None:
    """Mark the calling thread as one of the library's: its records never become events.

    Identity, not a name: an application thread that happens to be named like ours is
    still the application's.
    """
    _own.mark = True


def is_own_thread() -> bool:
    """True on a thread that called :func:`mark_own_thread`."""
    return getattr(_own, "mark", False)


def log_safely(target: logging.Logger, level: int, msg: str, *args: Any, **extra: Any) -> None:
    """Log through ``target`` without ever taking the ``logging`` module's lock.

    ``Logger.isEnabledFor`` takes that lock after any level change has cleared its cache,
    and ``dictConfig`` holds it while it closes the old handlers. The level is decided
    here from :meth:`~logging.Logger.getEffectiveLevel`, which reads without a lock, and
    the record goes straight to :meth:`~logging.Logger.handle`. When no handler outside
    this library would show a warning, it is written to standard error as well.
    """
    if target.disabled or target.manager.disable >= level or level < target.getEffectiveLevel():
        return
    record = target.makeRecord(target.name, level, "(k8s_logging_events)", 0, msg, args, None)
    if extra:
        record.__dict__.update(extra)
    target.handle(record)
    if level >= logging.WARNING and not _shown_elsewhere(target):
        _to_stderr(record)


def _shown_elsewhere(target: logging.Logger) -> bool:
    """True when a handler that is not ours, or logging's last resort, will see the record."""
    found_any = False
    current: logging.Logger | None = target
    while current is not None:
        for handler in current.handlers:
            found_any = True
            if not getattr(handler, OWN_HANDLER_MARK, False):
                return True
        current = current.parent if current.propagate else None
    # with no handler at all, logging.lastResort writes warnings to standard error itself
    return not found_any


def _to_stderr(record: logging.LogRecord) -> None:
    stream = sys.stderr
    if stream is None:  # pythonw, or a daemon that closed it
        return
    try:
        stream.write(f"{record.name}: {record.getMessage()}\n")
        stream.flush()
    except Exception:  # noqa: S110 - a report that cannot be written must not fail its caller
        pass


class RateLimitedReporter:
    """Logs one line per kind of problem per interval, counting the ones it held back.

    Safe on any thread: the caller's (a reentrant lock, so a signal handler that reports
    while the thread it interrupted was reporting does not deadlock) and the library's
    (never the ``logging`` module lock, see :func:`log_safely`).
    """

    def __init__(
        self,
        *,
        interval_seconds: float = DEFAULT_REPORT_INTERVAL_SECONDS,
        clock: clock_mod.Clock | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self._interval = interval_seconds
        # the interval is a duration: on the monotonic reading, never the wall clock
        self._monotonic = clock_mod.monotonic_source(clock or clock_mod.SystemClock())
        self._log = log or logger
        self._lock = threading.RLock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._deferred: collections.deque[tuple[str, int, str, tuple[Any, ...]]] = (
            collections.deque(maxlen=1024)
        )
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A new lock; what the parent deferred or held back is the parent's to report."""
        self._lock = threading.RLock()
        self._last.clear()
        self._suppressed.clear()
        self._deferred.clear()

    def defer(self, kind: str, level: int, msg: str, *args: Any) -> None:
        """Keep a report for :meth:`emit_deferred`: for code that holds a lock right now.

        Writing a report may wait for a logging handler's lock, and a thread must not wait
        while it holds a lock that another of the library's threads needs.
        """
        self._deferred.append((kind, level, msg, args))

    def emit_deferred(self) -> None:
        """Write the reports kept by :meth:`defer` (call it holding no lock)."""
        while True:
            try:
                kind, level, msg, args = self._deferred.popleft()
            except IndexError:
                return
            self.report(kind, level, msg, *args)

    def report(self, kind: str, level: int, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` under ``kind`` unless that kind was logged within the interval.

        Returns True when the line was written.
        """
        log = self._log
        if log.disabled or level < log.getEffectiveLevel():
            return False
        now = self._monotonic()
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
        log_safely(log, level, msg, *args)
        return True
