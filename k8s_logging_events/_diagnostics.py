"""The library's own reports about itself, and its counters.

Beside the pipeline (docs/architecture.md): every layer reports through :func:`log_safely`,
which never takes the ``logging`` module's lock (``dictConfig`` and ``logging.shutdown()``
hold it while closing a handler that may wait for our threads) and writes a warning to
standard error, rate-limited, when nothing else would show it (docs/in-cluster.md).
"""

from __future__ import annotations

import collections
import gc
import inspect
import itertools
import logging
import logging.handlers
import operator
import queue
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8s_logging_events import _process, _tokenbucket
from k8s_logging_events import clock as clock_mod

LOGGER_NAME = "k8s_logging_events"
"""The library's logger; the handler never turns its records into events."""

logger = logging.getLogger(LOGGER_NAME)

DEFAULT_REPORT_INTERVAL_SECONDS = 60.0
"""How often one kind of report may repeat: once a minute keeps an outage readable."""

STDERR_BURST = 20
"""Reports standard error takes at once (a program's first problems are all worth reading)."""

STDERR_PER_SECOND = 1 / 3
"""Then one every three seconds: a thousand bad call sites must not flood a container's log."""

OWN_HANDLER_MARK = "ignores_library_reports"
"""A handler class attribute: true on handlers that drop this library's records (ours)."""

_OWN_PREFIX = LOGGER_NAME + "."
_Deferred = tuple[str, int, str, tuple[Any, ...], dict[str, Any]]


class _ThreadMark(threading.local):
    # class attributes: a getattr default would raise and swallow on every unmarked thread
    mark = False
    start: object = None  # the info of the latest collection that began on this thread


_own = _ThreadMark()

# The cyclic collector calls these on its thread before ("start") and after ("stop") it frees
# garbage. No Python code: a signal handler would run in it, and what a gc callback raises
# (a SIGTERM handler's SystemExit, Ctrl-C) is swallowed, as if never signalled.
_phases = collections.OrderedDict(start=None, stop=None)  # the latest phase last
_latest: dict[str, object] = {}  # the info of the latest collection, by phase
_callbacks: tuple[Callable[..., object], ...] = (
    _phases.move_to_end,  # its second argument, the (never empty) info, is True: "last"
    _latest.__setitem__,
    _own.__setattr__,
)
gc.callbacks.extend(_callbacks)


def become_own_thread() -> None:
    """Start each of the library's threads: mark it (its records are no events, a flush there
    does not wait for itself) and block termination signals on it."""
    _own.mark = True
    _process.leave_signals_to_the_main_thread()


def as_own_thread(work: Callable[[], None]) -> None:
    """Run ``work`` marked as one of the library's threads (its records are no events), on a
    thread that is not: a flush doing a watcher's work at exit, where no thread can start."""
    was = _own.mark
    _own.mark = True
    try:
        work()
    finally:
        _own.mark = was


def is_own_thread() -> bool:
    """True on a thread that called :func:`become_own_thread`."""
    return _own.mark


def step_errors() -> type[BaseException]:
    """What a failed background step is caught as (rule 5), read as it is caught: anything on
    the library's threads, which it would kill (a sink's or a hook's SystemExit, asyncio's
    CancelledError) and where no Ctrl-C arrives; elsewhere (a flush writing on the caller's
    thread, the main one's work at exit) an Exception, so Ctrl-C and an exit cut it short."""
    own = _own.mark and threading.current_thread() is not threading.main_thread()
    return BaseException if own else Exception


def logs_for_itself() -> bool:
    """True when a record logged now is the library's own doing: on one of its threads, but
    not while the cyclic collector runs the application's finalisers (``__del__``) there."""
    return _own.mark and not (
        next(reversed(_phases)) == "start" and _own.start is _latest.get("start")
    )


def report(level: int, msg: str, *args: Any) -> None:
    """Report ``msg % args`` on the library's logger: :func:`log_safely` on :data:`logger`."""
    log_safely(logger, level, msg, *args)


def would_log(target: logging.Logger, level: int) -> bool:
    """``Logger.isEnabledFor`` without the lock it takes after a level change cleared its
    cache; a disabled logger still passes (its warnings go to standard error)."""
    return target.manager.disable < level and level >= target.getEffectiveLevel()


def log_safely(
    target: logging.Logger, level: int, msg: str, *args: Any, limited: bool = True, **extra: Any
) -> None:
    """Log through ``target`` without ever taking the ``logging`` module's lock. A warning
    also goes to :data:`standard_error` (its limit unless ``limited`` is False) when no handler
    outside this library would show it, and for our loggers when ``dictConfig`` disabled them.
    """
    if not would_log(target, level):
        return
    ours = target.name == LOGGER_NAME or target.name.startswith(_OWN_PREFIX)
    if ours:
        args = tuple(_Shown(arg) if issubclass(type(arg), BaseException) else arg for arg in args)
    record = target.makeRecord(target.name, level, "(k8s_logging_events)", 0, msg, args, None)
    if extra:
        record.__dict__.update(extra)
    warning = level >= logging.WARNING
    try:
        if target.disabled:
            shown = not ours
        elif warning and ours and not target.hasHandlers():
            # logging.lastResort would print it, one unlimited line each: the limited stream
            shown = not target.filter(record)
        else:
            shown = _handle(target, record)
    except Exception:  # a filter of the application's on our logger that raises: never the
        # reporter's caller (a log call, a flush, one of our threads); the report is still seen
        if not ours:
            raise  # a structured-logging target's: its consumer reports the failure
        shown = False
    if warning and not shown:
        standard_error.write(record, limited)


class _Shown:
    """An exception named in a report, shown by its type if its ``str()`` or ``repr()`` raises
    (else a logging error in every handler); wrapped, as a report is formatted when shown."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __str__(self, show: Callable[[object], str] = str) -> str:
        try:
            return show(self.error)
        except Exception:
            return f"<a {type(self.error).__name__} that cannot be shown>"

    def __repr__(self) -> str:
        return self.__str__(repr)


def configuring_elsewhere() -> bool:
    """True while another thread holds the ``logging`` module's lock, as ``dictConfig`` does
    while it replaces handlers; never waits for it."""
    lock = getattr(logging, "_lock", None)
    if lock is None or not lock.acquire(blocking=False):
        return lock is not None
    lock.release()
    return False


def holds_logging_lock() -> bool:
    """True on a thread holding the ``logging`` module's lock, as ``dictConfig`` does while
    it flushes and closes the handlers it replaces (False where that cannot be told)."""
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


def _handle(target: logging.Logger, record: logging.LogRecord) -> bool:
    """``target.handle(record)``; True when a handler not ours showed it (or the last resort
    did, or a filter on ``target`` dropped it). Called here as ``callHandlers`` calls them, to
    hear their filters' answers once; a logger whose dispatch is not logging's own (Sentry
    patches ``callHandlers``) dispatches itself, and the answers are foretold."""
    # logging's own by code, not by name and module, which a wrapper takes (functools.wraps,
    # New Relic's wrapt proxies), nor logging.__file__, which frozen code does not name
    own, cls = logging.getLevelName.__code__.co_filename, type(target)
    dispatch = (inspect.getattr_static(cls, "handle"), inspect.getattr_static(cls, "callHandlers"))
    hear = all(type(f) is types.FunctionType and f.__code__.co_filename == own for f in dispatch)
    if not hear:
        target.handle(record)
    else:
        kept = target.filter(record)  # 3.12+: the record, or one a filter put in its place
        if not kept:
            return True  # the application's filter on the logger silences it, as a level does
        record = kept if isinstance(kept, logging.LogRecord) else record
    level, shown, found_any = record.levelno, False, False
    current: logging.Logger | None = target
    while current is not None:
        for handler in current.handlers:
            found_any = True
            # a handler overriding handle() may answer None: it took the record
            if level >= handler.level and not (hear and handler.handle(record) is False):
                shown = shown or _shows(handler, record, level)
        current = current.parent if current.propagate else None
    last_resort = logging.lastResort
    if found_any or last_resort is None or level < last_resort.level:
        return shown
    if hear:
        last_resort.handle(record)
    return True


def _shows(handler: logging.Handler, record: logging.LogRecord, level: int, depth: int = 0) -> bool:
    """True when ``handler`` is not ours and takes ``record`` at ``level``, its name filters
    too; a ``QueueHandler`` shows what its running listener's handlers do (3.12+ dictConfig's
    ``listener``, else one reading its queue), nothing on a queue of ours no one reads."""
    if getattr(handler, OWN_HANDLER_MARK, False) or level < handler.level:
        return False
    # a plain logging.Filter (by name) answers alike when asked again; any other filter may
    # keep state, and is not asked twice
    if handler.filters and not all(
        type(rule).filter is not logging.Filter.filter or rule.filter(record)
        for rule in handler.filters
        if isinstance(rule, logging.Filter)
    ):
        return False
    closed = getattr(handler, "_closed", False) and getattr(handler, "stream", None) is None
    if closed and isinstance(handler, logging.FileHandler) and handler.mode == "w":
        # closed by logging.shutdown() before ours, it drops records (FileHandler.emit), where
        # one of mode "a" opens its file again
        return False
    if not isinstance(handler, logging.handlers.QueueHandler) or depth > 3:
        shows = isinstance(handler, logging.StreamHandler | logging.NullHandler)  # or silences
        return shows or not _loguru_without_sinks()
    listener = getattr(handler, "listener", None) or _reading(handler.queue)
    behind = getattr(listener, "handlers", None)
    if behind is None:  # no listener here: one of another process reads (multiprocessing)
        return not isinstance(handler.queue, queue.Queue | queue.SimpleQueue)
    if getattr(listener, "_thread", True) is None or _stopping(listener):
        return False  # stopped (or never started): no one reads
    # without respect_handler_level the listener hands every record to every handler
    respects = getattr(listener, "respect_handler_level", False)
    return any(
        _shows(inner, record, level if respects else max(level, inner.level), depth + 1)
        for inner in behind
    )


def _loguru_without_sinks() -> bool:
    """True where loguru is loaded and has no sink: a handler forwarding to it (its recipe's
    InterceptHandler) shows nothing, as at exit, where loguru's atexit function removed them
    all before logging's shutdown closes (and loguru's own removal stops) our handlers."""
    core = getattr(getattr(sys.modules.get("loguru"), "logger", None), "_core", None)
    return getattr(core, "handlers", None) == {}


def _stopping(listener: Any) -> bool:
    """True once ``listener``'s stop marker is queued (a report queued now is read by no one);
    peeked without the queue's lock, which a reporting signal handler's thread may hold."""
    try:
        return any(item is listener._sentinel for item in listener.queue.queue)
    except (AttributeError, RuntimeError):  # no deque (a SimpleQueue), or one changed meanwhile
        return False


def _reading(queued: object) -> object:
    """The running ``QueueListener`` reading ``queued`` (one no handler names), or None; from
    ``threading._active`` without ``enumerate()``'s lock, which a signal handler may find held."""
    for thread in tuple(getattr(threading, "_active", {}).values()):
        listener = getattr(getattr(thread, "_target", None), "__self__", None)
        if isinstance(listener, logging.handlers.QueueListener) and listener.queue is queued:
            return listener
    return None


class StandardError:
    """Writes reports to standard error, at most ``burst`` at once then ``per_second``; the
    count of what the limit held back goes out with the next line. Safe on any thread and from
    a signal handler (a reentrant lock, never held while writing)."""

    def __init__(
        self,
        *,
        burst: int = STDERR_BURST,
        per_second: float = STDERR_PER_SECOND,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._bucket = _tokenbucket.TokenBucket(per_second, burst, monotonic())
        self._after_fork_in_child()
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        # also the initial state: a thread of the parent may have held the lock at the fork,
        # and what the limit held back (and no line mentioned yet) is the parent's to summarise
        self._lock = threading.RLock()
        self.held_back = 0

    def write(self, record: logging.LogRecord, limited: bool = True) -> bool:
        """Write ``record`` as ``name: message`` unless the limit (if ``limited``) holds it back."""
        now = self._monotonic()
        # bounded: a child forked while another thread held the lock must not hang here
        if not self._lock.acquire(timeout=1.0):
            return False
        try:
            if limited and not self._bucket.try_take(now):
                self.held_back += 1
                return False
            held, self.held_back = self.held_back, 0
        finally:
            self._lock.release()
        try:
            text = f"{record.name}: {record.getMessage()}"
        except Exception as error:  # a report with a bad format still says something
            text = f"{record.name}: {record.msg!r} (unable to format it: {error!r})"
        if held:
            text += f" [{held} earlier report(s) held back from standard error]"
        return self._write(text)

    def summarise(self) -> None:
        """Say how many lines the limit held back that no later line mentioned (at flush and
        close: a short program never reaches the next line), within the limit but at exit."""
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            last = not threading.main_thread().is_alive()
            if not self.held_back or not (last or self._bucket.try_take(self._monotonic())):
                return
            held, self.held_back = self.held_back, 0
        finally:
            self._lock.release()
        self._write(
            f"{LOGGER_NAME}: {held} more report(s) were held back from standard error "
            "(its rate limit); a handler on the k8s_logging_events logger shows every one"
        )

    @staticmethod
    def _write(text: str) -> bool:
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


_PASSING = ("delayed", "waiting")  # outcomes a later report may overtake (retried, written)
_EARLY = "(passing said early)"  # no kind: when held passing lines were last said early


@dataclass(slots=True)
class _Held:
    reports: int = 0
    occurrences: int = 0
    level: int = logging.WARNING
    msg: str = ""
    args: tuple[Any, ...] = ()
    outcome: str = ""
    at: float = 0.0  # monotonic: when the latest held-back report was made


class RateLimitedReporter:
    """Logs one line per kind of problem per interval; the next line of a kind, or
    :meth:`summarise` at flush and close, says how many reports and occurrences it held back,
    and how many occurrences in all. Safe on any thread: a reentrant lock (a signal handler
    may report over a report), never the ``logging`` module's lock (:func:`log_safely`)."""

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
        self._after_fork_in_child()
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        # also the initial state: what the parent deferred, held back or counted is the parent's
        self._lock = threading.RLock()
        self._last: dict[str, float] = {}
        self._held: dict[str, _Held] = {}
        self._totals: dict[str, int] = {}
        # not bounded: each locked section that fills it empties it after (a batch's drops at
        # most); 1,024 kept forgot the rest of a burst's reports, occurrences and all
        self._deferred: collections.deque[_Deferred] = collections.deque()
        self._writing = 0
        self._settled = threading.Condition(threading.RLock())

    def defer(self, kind: str, level: int, msg: str, *args: Any, **counts: Any) -> None:
        """Keep a report for :meth:`emit_deferred`, for code holding a lock another of our
        threads needs (writing may wait for a logging handler's lock)."""
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
        """Write what was deferred and wait for other threads' reports to be out (so a report
        is out before the flush that saw its cause returns); False after ``timeout`` seconds."""
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
        """Log ``msg % args`` unless ``kind`` was logged within the interval; True if it was.
        ``occurrences``: how many occurrences this report stands for, if it counts any; the
        line then ends with ``; N occurrence(s) <outcome>`` (``lost``, ``dropped`` ...)."""
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
                held.at = now
                return False
            self._last[kind] = now
            spell = self._held.pop(kind, None)
            total = self._totals.get(kind, 0)
            # a held "will retry" said after a final "lost" reads as if that write still retried:
            # said first, once an interval (before every final kind's line, a storm's retries
            # would get a line a minute per kind of final line)
            early = bool(occurrences) and outcome not in _PASSING
            early = early and now - self._last.get(_EARLY, now - self._interval) >= self._interval
            early = early and any(held.outcome in _PASSING for held in self._held.values())
            if early:
                self._last[_EARLY] = now
        if early:
            self._summarise(passing_only=True)
        if spell is not None and occurrences is not None:
            msg = (
                f"{msg}; %d occurrence(s) {outcome} since the last report (%d occurrence(s) "
                f"in all) [{spell.reports} more report(s) like this were held back]"
            )
            args = (*args, spell.occurrences + occurrences, total)
        elif spell is not None:
            msg += f" [and {spell.reports} more like it since the last report]"
        elif occurrences:  # none: a later failure of a write whose occurrences were said
            msg, args = f"{msg}; %d occurrence(s) {outcome}", (*args, occurrences)
        # limited here, once a minute per kind: standard error's limit would hold back the
        # lines that count lost occurrences (the exit's) behind a flood of bad call sites
        log_safely(self._log, level, msg, *args, limited=False)
        return True

    def summarise(self) -> None:
        """Write, for every kind, what the limit held back since its last line (flush, close)."""
        self._summarise(passing_only=False)
        standard_error.summarise()

    def _summarise(self, *, passing_only: bool) -> None:
        # passing states (delayed, waiting) first: the last lines tell how things ended
        now = self._monotonic()
        # limited but at exit (a flush may poll), or when said early (once an interval, as a
        # report's own line: standard error's limit would lose the held counts, popped here)
        cap = threading.main_thread().is_alive() and not passing_only
        with self._lock:
            kinds = [k for k, h in self._held.items() if h.outcome in _PASSING or not passing_only]
            kinds.sort(key=lambda kind: self._held[kind].outcome not in _PASSING)
            held_back = [(self._held.pop(kind), self._totals.get(kind, 0)) for kind in kinds]
            self._last.update(dict.fromkeys(kinds, now))
        for held, total in held_back:
            counted = f"{held.reports} report(s) like this since the last one"
            if now - held.at >= 1:  # its text ("will retry in 2 s") is of then, not of now
                counted += f", the latest {now - held.at:.0f} s ago"
            if held.occurrences:
                counted += (
                    f": {held.occurrences} occurrence(s) {held.outcome} since then "
                    f"({total} occurrence(s) in all)"
                )
            elif total:  # retries of occurrences said before: the total, with what it counts
                counted += f" ({total} occurrence(s) {held.outcome} in all)"
            log_safely(self._log, held.level, f"{held.msg} [{counted}]", *held.args, limited=cap)


OUTCOMES = ("dropped", "created", "patched", "coalesced", "failed", "discarded")
"""The final outcomes; once flushed, ``accepted`` equals their sum for each sink.

``discarded``: there was no sink to write to (``sink: None``, or ``"auto"`` found none).
"""


class Tally:
    """A counter that only goes up, from any thread or signal handler: ``next()`` on an
    :func:`itertools.count` is one atomic step in CPython, with no lock to be interrupted in."""

    __slots__ = ("_count", "add")

    add: Callable[[], int]
    """Add one; return the value before (a sequence number)."""

    def __init__(self) -> None:
        self._count = itertools.count()
        # the count's own __next__, bound: a bump on the caller's path is one C call
        self.add = self._count.__next__

    def add_many(self, amount: int) -> None:
        _consume(itertools.islice(self._count, amount))

    @property
    def value(self) -> int:
        # repr is "count(N)": the one way to read an itertools.count without moving it
        return int(repr(self._count)[6:-1])


_consume = collections.deque[object](maxlen=0).extend  # runs an iterator to its end, in C


def at_once(*calls: tuple[Any, ...]) -> None:
    """Make ``calls``, each ``(function, *args)`` of a C function (a bound built-in method),
    with no Python step between: a signal handler (Ctrl-C, a SIGTERM handler's exit) runs
    before them all or after, never between (CPython runs those between Python steps)."""
    _consume(itertools.starmap(operator.call, calls))


class Counters:
    """Named integer counters, added under a reentrant lock (a signal handler may count on
    the thread it interrupts), read without one: a copy of the dict is one step, and a
    read never waits for a writer."""

    __slots__ = ("__weakref__", "_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._values: dict[str, int] = dict.fromkeys(OUTCOMES, 0)  # every one, from zero
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        # a child counts its own outcomes, under a lock no thread of the parent holds
        self._lock = threading.RLock()
        self._values = dict.fromkeys(self._values, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        return dict(self._values)
