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
library's own threads (:func:`become_own_thread`), so these reports never become events.

It also keeps the counters of what became of every occurrence, shared by the recorder and
the runtime, in two kinds: :class:`Tally`, a single counter that the caller's thread bumps
without a lock (a signal handler may log while the thread it interrupted was logging), and
:class:`Counters`, a named set that the background threads update under a lock. And it says,
at a flush that ran out of time or at exit, how many occurrences were not written, why, and
which option would help (:func:`unwritten_summary`).
"""

from __future__ import annotations

import collections
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from k8s_logging_events import _process
from k8s_logging_events import clock as clock_mod

__all__ = [
    "LOGGER_NAME",
    "OUTCOMES",
    "Counters",
    "RateLimitedReporter",
    "StandardError",
    "Tally",
    "become_own_thread",
    "describe_error",
    "is_own_thread",
    "log_safely",
    "logger",
    "report",
    "standard_error",
    "unwritten_summary",
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


class _ThreadMark(threading.local):
    """Whether this thread is one of the library's."""

    # unmarked by default: a class attribute, found without the exception that getattr
    # with a default raises and swallows on every thread not marked (every record's check)
    mark = False


_own = _ThreadMark()


def become_own_thread() -> None:
    """Start each of the library's threads: mark it, and leave signals to the application.

    The mark is identity, not a name (an application thread that happens to be named like
    ours is still the application's): the records of a marked thread never become events,
    and a flush there returns at once (it would wait for itself). The termination signals
    are blocked on it, so that the application's handlers run promptly on its main thread
    (:func:`~k8s_logging_events._process.leave_signals_to_the_main_thread`).
    """
    _own.mark = True
    _process.leave_signals_to_the_main_thread()


def is_own_thread() -> bool:
    """True on a thread that called :func:`become_own_thread`."""
    return _own.mark


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


# -- counters ----------------------------------------------------------------------------

OUTCOMES = ("dropped", "created", "patched", "coalesced", "failed", "discarded")
"""The final outcomes; once flushed, ``accepted`` equals their sum for each sink.

``discarded`` is the outcome of an occurrence when there is no sink to write to (the
handler's ``sink: None``, or ``"auto"`` with no configuration found).
"""


class Tally:
    """A counter that only goes up, safe to bump from any thread and from signal handlers.

    ``next()`` on an :func:`itertools.count` is one atomic step in CPython: no lock to be
    interrupted while holding, and no update lost when a signal handler bumps the same
    counter in the middle of another bump.
    """

    __slots__ = ("_count", "add")

    add: Callable[[], int]
    """Add one; return the value before (a sequence number)."""

    def __init__(self) -> None:
        self._count = itertools.count()
        # the count's own __next__, bound: a bump on the caller's path is one C call
        self.add = self._count.__next__

    @property
    def value(self) -> int:
        """The current value."""
        # repr is "count(N)": the one way to read an itertools.count without moving it
        return int(repr(self._count)[6:-1])


class Counters:
    """A thread-safe bag of named integer counters."""

    __slots__ = ("__weakref__", "_lock", "_values")

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(names, 0)
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        """Every counter back to zero, under a new lock: a child counts its own outcomes."""
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self._values, 0)

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name``."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def get(self, name: str) -> int:
        """Return the current value of ``name`` (0 if never counted)."""
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> Mapping[str, int]:
        """Return a copy of every counter."""
        with self._lock:
            return dict(self._values)


# -- what was not written ---------------------------------------------------------------


def describe_error(error: Exception) -> str:
    """A short text for ``error``: its message, cut to 300 characters."""
    text = str(error) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class _Write(Protocol):
    """What a summary reads of a pending write (``_pending.Write``)."""

    occurrences: int
    attempts: int
    throttled: int
    last_error: Exception | None

    @property
    def in_flight(self) -> bool: ...


def unwritten_summary(
    writes: Sequence[_Write], sinks: Iterable[object], *, when: str, queued: int = 0
) -> str:
    """Say how many occurrences were not written by ``when``, why, and which option helps.

    ``writes`` are the pending (or given up) writes; ``queued`` the occurrences not yet
    correlated.
    """
    occurrences = sum(write.occurrences for write in writes) + queued
    rate_limited = sum(int(getattr(s, "waiting_for_rate_limit", 0) or 0) for s in sinks)
    waiting = unanswered = retrying = 0
    errors: dict[str, int] = {}
    for write in writes:
        if write.in_flight and rate_limited > 0:
            rate_limited -= 1
            waiting += write.occurrences
        elif write.in_flight:
            unanswered += write.occurrences
        elif write.attempts or write.throttled:
            retrying += write.occurrences
            why = _why(write.last_error)
            errors[why] = errors.get(why, 0) + write.occurrences
        else:
            waiting += write.occurrences
    parts = []
    if waiting and unanswered:
        parts.append(f"{waiting} queued behind those requests (raise writers or flush_timeout)")
    elif waiting:
        parts.append(
            f"{waiting} waiting for the client-side rate limit or a free writer "
            "(raise drain_qps, writers or flush_timeout)"
        )
    if unanswered:
        parts.insert(
            0,
            f"{unanswered} in requests the API server had not answered "
            "(a hanging server or admission webhook; see request_timeout and flush_timeout)",
        )
    if retrying:
        causes = ", ".join(f"{n} after {why}" for why, n in sorted(errors.items()))
        parts.append(f"{retrying} waiting to retry ({causes}; see flush_timeout)")
    if queued:
        parts.append(f"{queued} not yet handed to a writer (see flush_timeout)")
    return f"Unable to write {occurrences} event occurrence(s) {when}: {'; '.join(parts)}"


def _why(error: Exception | None) -> str:
    if error is None:
        return "an error"
    status = getattr(error, "status", None)
    if status == 429:
        return "429 Too Many Requests (the API server throttles)"
    if isinstance(status, int):
        return f"{status} {getattr(error, 'reason', '')}".strip()
    if isinstance(error, ConnectionError) or "refused" in str(error).lower():
        return "connection errors (the API server is unreachable)"
    if "timed out" in str(error).lower() or isinstance(error, TimeoutError):
        return "timeouts"
    return type(error).__name__
