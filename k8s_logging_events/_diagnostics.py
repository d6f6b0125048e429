"""The library's own reports about itself: one path from any layer to a human.

This sits beside the pipeline, not in it: every layer reports drops, failures, repairs and
bad input here, and every report goes through :func:`log_safely`. That one path makes the
reports safe to write from anywhere and sure to be seen:

* they never take the ``logging`` module's lock: ``dictConfig`` and ``logging.shutdown()``
  hold that lock while they close a handler, and a background thread that waited for it
  there would hold up the close that waits for the thread;
* they reach a human: when no handler outside this library would show a warning (the
  handler alone on the root logger, as in the quick start), or when ``dictConfig``'s
  default ``disable_existing_loggers: true`` disabled the ``k8s_logging_events`` logger, it
  is written to standard error, rate-limited, as ``logging.lastResort`` writes warnings
  when there is no handler at all. Setting that logger's level (or giving it a handler of
  its own, a ``NullHandler`` even) is the way to quieten them;
* :class:`RateLimitedReporter` writes each kind of report the first time, then at most once
  per interval, counting truly what it held back (occurrences, not only lines), and
  summarises what it held back when asked (at flush and at close).

The handler ignores every record from this logger and every record logged on one of the
library's own threads (:func:`mark_own_thread`), so these reports never become events.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8s_logging_events import _process
from k8s_logging_events import clock as clock_mod

__all__ = [
    "LOGGER_NAME",
    "RateLimitedReporter",
    "StandardError",
    "is_own_thread",
    "log_safely",
    "logger",
    "mark_own_thread",
    "report",
    "standard_error",
]

LOGGER_NAME = "k8s_logging_events"
"""The library's logger; the handler never turns its records into events."""

logger = logging.getLogger(LOGGER_NAME)

DEFAULT_REPORT_INTERVAL_SECONDS = 60.0
"""How often one kind of report may repeat: once a minute keeps an outage readable."""

STDERR_BURST = 20
"""Reports standard error takes at once (a program's first problems are all worth reading)."""

STDERR_PER_SECOND = 1 / 3
"""Reports standard error takes after that: one every three seconds, so that a storm of
distinct reports (a thousand bad call sites) cannot flood a container's log."""

OWN_HANDLER_MARK = "ignores_library_reports"
"""A handler class attribute: true on handlers that drop this library's records (ours)."""

_OWN_PREFIX = LOGGER_NAME + "."

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


def report(level: int, msg: str, *args: Any) -> None:
    """Report ``msg % args`` on the library's logger: :func:`log_safely` on :data:`logger`."""
    log_safely(logger, level, msg, *args)


def would_log(target: logging.Logger, level: int) -> bool:
    """True when ``level`` passes ``target``'s level and ``logging.disable()``, without a lock.

    ``Logger.isEnabledFor`` takes the ``logging`` module's lock after any level change has
    cleared its cache; this reads the same settings without it. A disabled logger still
    passes: its warnings go to standard error (see :func:`log_safely`).
    """
    return target.manager.disable < level and level >= target.getEffectiveLevel()


def log_safely(target: logging.Logger, level: int, msg: str, *args: Any, **extra: Any) -> None:
    """Log through ``target`` without ever taking the ``logging`` module's lock.

    The level is decided by :func:`would_log` and the record goes straight to
    :meth:`~logging.Logger.handle`. A warning (or worse) also goes to standard error
    (:data:`standard_error`) when no handler outside this library would show it, and, for
    the library's own loggers, when the logger is disabled (``dictConfig`` disables every
    logger that existed before it unless told ``disable_existing_loggers: false``).
    """
    if not would_log(target, level):
        return
    record = target.makeRecord(target.name, level, "(k8s_logging_events)", 0, msg, args, None)
    if extra:
        record.__dict__.update(extra)
    if target.disabled:
        if level >= logging.WARNING and is_library_logger(target):
            standard_error.write(record)
        return
    target.handle(record)
    if level >= logging.WARNING and not _shown_elsewhere(target, level):
        standard_error.write(record)


def is_library_logger(target: logging.Logger) -> bool:
    """True for the library's logger and its children."""
    return target.name == LOGGER_NAME or target.name.startswith(_OWN_PREFIX)


def _shown_elsewhere(target: logging.Logger, level: int) -> bool:
    """True when a handler that is not ours, or logging's last resort, will show the record."""
    found_any = False
    current: logging.Logger | None = target
    while current is not None:
        for handler in current.handlers:
            found_any = True
            if not getattr(handler, OWN_HANDLER_MARK, False) and level >= handler.level:
                return True
        current = current.parent if current.propagate else None
    if found_any:
        return False
    # with no handler at all, logging.lastResort writes warnings to standard error itself
    last_resort = logging.lastResort
    return last_resort is not None and level >= last_resort.level


class StandardError:
    """Writes reports to standard error, at most ``burst`` at once then ``per_second``.

    What the limit holds back is counted, and the count is written with the next line that
    goes out. Safe on any thread and from a signal handler (a reentrant lock, never held
    while writing).

    Args:
        burst: lines written at once after a quiet spell.
        per_second: lines a second after that.
        monotonic: how durations are read (tests pass a fake clock's ``monotonic``).
    """

    def __init__(
        self,
        *,
        burst: int = STDERR_BURST,
        per_second: float = STDERR_PER_SECOND,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._per_second = per_second
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._tokens = float(burst)
        self._last = monotonic()
        self.held_back = 0
        """Lines the limit has held back and not yet mentioned."""
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        # a thread of the parent may have held the lock at the fork
        self._lock = threading.RLock()

    def write(self, record: logging.LogRecord) -> bool:
        """Write ``record`` as ``name: message`` unless the limit holds it back."""
        now = self._monotonic()
        # bounded: a child forked while another thread held the lock must not hang here
        if not self._lock.acquire(timeout=1.0):
            return False
        try:
            refill = max(0.0, now - self._last) * self._per_second
            self._tokens = min(float(self._burst), self._tokens + refill)
            self._last = now
            if self._tokens < 1.0:
                self.held_back += 1
                return False
            self._tokens -= 1.0
            held, self.held_back = self.held_back, 0
        finally:
            self._lock.release()
        try:
            text = f"{record.name}: {record.getMessage()}"
        except Exception as error:  # a report with a bad format still says something
            text = f"{record.name}: {record.msg!r} (unable to format it: {error!r})"
        if held:
            text += f" [{held} earlier report(s) held back from standard error]"
        return _write_stderr(text)


def _write_stderr(text: str) -> bool:
    stream = sys.stderr
    if stream is None:  # pythonw, or a daemon that closed it
        return False
    try:
        stream.write(text + "\n")
        stream.flush()
    except Exception:  # a report that cannot be written must not fail its caller
        return False
    return True


standard_error = StandardError()
"""Where warnings go when no handler would show them."""


@dataclass(slots=True)
class _Held:
    """What the rate limit held back of one kind since its last line."""

    reports: int = 0
    occurrences: int = 0
    level: int = logging.WARNING
    msg: str = ""
    args: tuple[Any, ...] = ()
    outcome: str = ""


class RateLimitedReporter:
    """Logs one line per kind of problem per interval, counting truly what it held back.

    A report may stand for a number of occurrences (``occurrences=``): the line says how
    many (``; 3 occurrence(s) lost``), and when the rate limit held reports back, the next
    line of that kind, or the summary that :meth:`summarise` writes at flush and at close,
    says how many occurrences those stood for, and how many in all.

    Safe on any thread: the caller's (a reentrant lock, so a signal handler that reports
    while the thread it interrupted was reporting does not deadlock) and the library's
    (never the ``logging`` module lock, see :func:`log_safely`). Durations are read on the
    clock's monotonic reading.
    """

    def __init__(
        self,
        *,
        interval_seconds: float = DEFAULT_REPORT_INTERVAL_SECONDS,
        clock: clock_mod.Clock | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self._interval = interval_seconds
        self._monotonic = clock_mod.monotonic_source(clock or clock_mod.SystemClock())
        self._log = log or logger
        self._lock = threading.RLock()
        self._last: dict[str, float] = {}
        self._held: dict[str, _Held] = {}
        self._totals: dict[str, int] = {}
        self._deferred: collections.deque[tuple[str, int, str, tuple[Any, ...], dict[str, Any]]]
        self._deferred = collections.deque(maxlen=1024)
        self._writing = 0
        self._settled = threading.Condition(threading.RLock())
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        """New locks; what the parent deferred, held back or counted is the parent's."""
        self._lock = threading.RLock()
        self._last.clear()
        self._held.clear()
        self._totals.clear()
        self._deferred.clear()
        self._writing = 0
        self._settled = threading.Condition(threading.RLock())

    def defer(self, kind: str, level: int, msg: str, *args: Any, **counts: Any) -> None:
        """Keep a report for :meth:`emit_deferred`: for code that holds a lock right now.

        Writing a report may wait for a logging handler's lock, and a thread must not wait
        while it holds a lock that another of the library's threads needs.
        """
        self._deferred.append((kind, level, msg, args, counts))

    def emit_deferred(self) -> None:
        """Write the reports kept by :meth:`defer` (call it holding no lock)."""
        while True:
            with self._settled:
                try:
                    kind, level, msg, args, counts = self._deferred.popleft()
                except IndexError:
                    return
                self._writing += 1
            try:
                self.report(kind, level, msg, *args, **counts)
            finally:
                with self._settled:
                    self._writing -= 1
                    self._settled.notify_all()

    def settle(self, timeout: float) -> bool:
        """Write what was deferred, and wait for other threads' reports to be out.

        For :meth:`flush`: a report is written before the flush that saw its cause returns.
        Returns False when ``timeout`` seconds passed first.
        """
        self.emit_deferred()
        with self._settled:
            return self._settled.wait_for(
                lambda: not self._writing and not self._deferred, max(0.0, timeout)
            )

    def report(
        self,
        kind: str,
        level: int,
        msg: str,
        *args: Any,
        occurrences: int | None = None,
        outcome: str = "affected",
    ) -> bool:
        """Log ``msg % args`` under ``kind`` unless that kind was logged within the interval.

        Args:
            kind: what the rate limit counts by.
            level: the report's level.
            msg: the text, with ``%`` placeholders for ``args``.
            occurrences: how many occurrences this report stands for, if it counts any;
                the line then ends with ``; N occurrence(s) <outcome>``.
            outcome: what became of them (``lost``, ``dropped``, ``delayed`` ...).

        Returns:
            True when the line was written.
        """
        if not would_log(self._log, level):
            return False
        now = self._monotonic()
        with self._lock:
            if occurrences is not None:
                self._totals[kind] = self._totals.get(kind, 0) + occurrences
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                held = self._held.setdefault(kind, _Held())
                held.reports += 1
                held.occurrences += occurrences or 0
                held.level, held.msg, held.args, held.outcome = level, msg, args, outcome
                return False
            self._last[kind] = now
            spell = self._held.pop(kind, None)
            total = self._totals.get(kind, 0)
        text, text_args = msg, args
        if spell is not None:
            text, text_args = _with_held(msg, args, spell, occurrences, outcome, total)
        elif occurrences is not None:
            text, text_args = f"{msg}; %d occurrence(s) {outcome}", (*args, occurrences)
        log_safely(self._log, level, text, *text_args)
        return True

    def summarise(self) -> None:
        """Write, for every kind, what the rate limit held back since its last line.

        At flush and at close, so that a short program's held-back reports are not lost.
        """
        now = self._monotonic()
        with self._lock:
            held_back = [
                (kind, held, self._totals.get(kind, 0)) for kind, held in self._held.items()
            ]
            self._held.clear()
            for kind, _, _ in held_back:
                self._last[kind] = now
        for _, held, total in held_back:
            if not would_log(self._log, held.level):
                continue
            counted = f"{held.reports} report(s) like this since the last one"
            if held.occurrences:
                counted += (
                    f": {held.occurrences} occurrence(s) {held.outcome} since then "
                    f"({total} occurrence(s) in all)"
                )
            elif total:
                counted += f" ({total} occurrence(s) in all)"
            log_safely(self._log, held.level, f"{held.msg} [{counted}]", *held.args)


def _with_held(
    msg: str,
    args: tuple[Any, ...],
    held: _Held,
    occurrences: int | None,
    outcome: str,
    total: int,
) -> tuple[str, tuple[Any, ...]]:
    """The line that ends a held-back spell: this report, and what the limit held back."""
    if occurrences is None:
        return f"{msg} [and {held.reports} more like it since the last report]", args
    since = held.occurrences + occurrences
    return (
        f"{msg}; %d occurrence(s) {outcome} since the last report (%d occurrence(s) in all) "
        f"[{held.reports} more report(s) like this were held back]",
        (*args, since, total),
    )
