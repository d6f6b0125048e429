"""The logging front door, top of the pipeline (docs/architecture.md): records to Events.

On the caller's thread a record about an object becomes an occurrence (``_records``) and is
queued, never blocking nor raising; options are checked once (``_options``); the broadcaster
starts at the first event. :class:`EventLoggerAdapter` binds ``involved`` to a logger.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, Never

from k8s_logging_events import (
    _apis,
    _crash,
    _deadlines,
    _diagnostics,
    _numbers,
    _options,
    _pod,
    _process,
    _records,
    _sanitise,
    models,
    recorder,
)
from k8s_logging_events import clock as clock_mod
from k8s_logging_events import correlator as correlators
from k8s_logging_events import sink as sinks

# names kept public here, each the same object as where it lives
from k8s_logging_events._options import COMPONENT_ENV, SinkOption, default_component, default_host
from k8s_logging_events._records import EXCEPTION_DETAILS, EXTRAS
from k8s_logging_events._sanitise import TRUNCATION_MARK

__all__ = [
    "COMPONENT_ENV",
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_QUEUE_LENGTH",
    "DEFAULT_REASON",
    "EXCEPTION_DETAILS",
    "EXTRAS",
    "TRUNCATION_MARK",
    "EventLoggerAdapter",
    "KubernetesEventHandler",
    "default_component",
    "default_host",
]

DEFAULT_REASON = "Logging"
"""The reason of an event whose record names none (Kopf's choice too)."""

DEFAULT_MAX_MESSAGE_BYTES = _sanitise.MESSAGE_MAX_BYTES
"""The message limit in UTF-8 bytes: events.k8s.io/v1 (and core/v1 with ``eventTime``)
refuses a longer one."""

DEFAULT_QUEUE_LENGTH = 10_000
"""Occurrences the queue holds before it drops: enough for a burst (client-go's 1,000 loses
part of a tight loop of 10,000 warnings, whose logging thread holds the interpreter lock)."""

DEFAULT_FLUSH_TIMEOUT = 5.0
"""Seconds ``flush()`` and ``close()`` may wait, so that exit is prompt with the server down."""

_BROADCASTER_STATS = (
    "accepted",
    "invalid",
    *_diagnostics.OUTCOMES,
    "pending",
    "pending_events",
    "watcher_dropped",
)
_HANDLER_STATS = ("refused", "repaired", "after_close")

_AFTER_CLOSE = (
    "A record reached the closed event handler of %s: no event (counted as after_close; said "
    "once per handler). After close() (by logging.shutdown() at exit, dictConfig, loguru's "
    "remove() or configure()) a handler makes no events: one added again must be a new "
    "KubernetesEventHandler. dictConfig and fileConfig close every handler, also one added in "
    "code that they do not configure and that stays on its logger: name it in that "
    "configuration, or add a new one after the call"
)
_UNCLEAN_CLOSE = "Unable to close the event handler cleanly: %r"

_SYSTEM_CLOCK = clock_mod.SystemClock()
_STOP_MARGIN_SECONDS = 1.0  # beyond flush_timeout: the threads' quarter second, and some

_Offer = Callable[[models.Occurrence], bool]  # queues an occurrence, or counts it dropped

# started handlers not closed yet, by id (a subclass may be unhashable): logging.shutdown()
# flushes only live handlers, and one removed from its logger unclosed would lose its events
_STARTED: dict[int, KubernetesEventHandler] = {}


class KubernetesEventHandler(logging.Handler):
    """A :class:`logging.Handler` that records an Event for every record with ``involved``.

    ``involved`` (or Kopf's ``k8s_ref``, or the process's pod with ``default_involved``) and
    the other extras are read from the record, loguru's ``extra`` or structlog's event dict
    (docs/configuration.md, "The extras a record may carry"); ``k8s_skip`` means no event.
    WARNING and above make ``Warning`` events. The record is never changed; :meth:`emit`
    never raises (but :class:`RecursionError`) nor waits for the API server.

    Every option is keyword-only, JSON/YAML-friendly and checked here, once; each one's
    meaning and default: docs/configuration.md, Options. ``broadcaster``: an
    :class:`~k8s_logging_events.recorder.EventBroadcaster` to record into, not owned (a
    close only flushes it; not with ``sink`` or ``structured_logging``).

    Raises:
        ValueError: an option is out of range or of the wrong kind (the message names it).
        TypeError: an option that does not exist (the message names the closest one).
    """

    ignores_library_reports = True
    """The library's own reports never become events here (see ``_diagnostics``)."""

    _settings: _records.Settings
    _stopping: threading.Event | None  # set when the first close's stop ends
    _stopper: int | None  # the thread that stops, when it is the one that closed first

    def __init__(
        self,
        *,
        component: str = "",
        host: str = "",
        level: int | str = logging.NOTSET,
        sink: SinkOption = "auto",
        broadcaster: recorder.EventBroadcaster | None = None,
        namespace: str = models.DEFAULT_NAMESPACE,
        default_reason: str = DEFAULT_REASON,
        max_message_bytes: int | str = DEFAULT_MAX_MESSAGE_BYTES,
        queue_length: int | str = DEFAULT_QUEUE_LENGTH,
        qps: float | str = sinks.DEFAULT_QPS,
        burst: int | str = sinks.DEFAULT_BURST,
        drain_qps: float | str = sinks.DEFAULT_DRAIN_QPS,
        request_timeout: float | str | Sequence[float | str] | None = None,
        correlator: correlators.CorrelatorOptions | Mapping[str, Any] | None = None,
        flush_timeout: float | str = DEFAULT_FLUSH_TIMEOUT,
        structured_logging: bool | str | None = False,
        exception_detail: str = "summary",
        writers: int | str = 4,
        max_tries: int | str = 12,
        sleep_duration: float | str = 10.0,
        api: str = sinks.CORE_V1,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        clock: clock_mod.Clock | None = None,
        sleep: clock_mod.Sleeper | None = None,
        default_involved: str | None = None,
        crash_events: bool | str = False,
        event_names: str = "deterministic",
        **unknown: Never,
    ) -> None:
        # every check before logging.Handler.__init__, which lists it for logging.shutdown()
        _options.check_known(unknown, _OPTION_NAMES, "KubernetesEventHandler")
        given = locals()  # the keywords by name: the signature above is the list of options
        logging.Handler.setLevel(self, level)  # logging's check, before a '()' sink is built
        options = _options.checked({name: given[name] for name in _OPTION_NAMES})
        if broadcaster is not None and not isinstance(broadcaster, recorder.EventBroadcaster):
            raise ValueError(
                f"broadcaster must be an EventBroadcaster or null, not {broadcaster!r}"
            )
        pod = _pod.from_environment() if options.default_involved == _pod.POD else None
        super().__init__(level)
        self.formatter = _records.PLAIN
        self._options = options
        self._source = models.EventSource(component=options.component, host=options.host)
        # a repaired component (reported once, when checked) is a repair of every event
        named = _options.optional_name("component", component) or _options.default_component()
        self._component_repaired = named != options.component
        self._given = broadcaster
        self._built = options.sink if isinstance(sink, Mapping) else None  # held by no one else
        self._default_involved: models.ObjectReference | None = None if pod is None else pod.ref
        if pod is not None:
            _pod.report(pod, can_read_uid=broadcaster is None)
        self._fresh_state()
        self._closed = False
        # a subclass's own filter() and emit() are called, as logging.Handler.handle() calls them
        base, own = KubernetesEventHandler, type(self)
        self._overridden = own.filter is not base.filter or own.emit is not base.emit
        _process.renew_in_child(self)
        if options.crash_events:  # outside a pod the hooks make no event, as records make none
            _crash.watch(self, options.exception_detail)

    def filter(self, record: logging.LogRecord) -> bool:
        """Apply the handler's own filters (which may add ``involved``), then pass records about
        an object from another logger: the record (as 3.12's, for a subclass's emit()), or False."""
        checked = self._filtered(record) if self.filters else record
        return checked if checked and self._extras(checked) is not None else False  # type: ignore[return-value]

    def _filtered(self, record: logging.LogRecord) -> logging.LogRecord | None:
        """The record the handler's filters pass (3.12's may return another), or None; one that
        raises costs the record's event, never the log call (said when about an object)."""
        try:
            result: object = super().filter(record)
        except Exception as error:
            if self._extras(record) is not None:
                self._refuse(
                    record, "filter", "No event for this record: a filter raised %r", error
                )
            return None
        if not result:
            return None
        return result if isinstance(result, logging.LogRecord) else record

    def _extras(self, record: logging.LogRecord) -> dict[str, object] | None:
        attrs = record.__dict__
        if (  # _records' four markers spelled out: four dict lookups, no call
            "involved" not in attrs
            and "k8s_ref" not in attrs
            and "extra" not in attrs
            and "_logger" not in attrs
            and self._default_involved is None
        ):
            return None
        if _records.is_own(attrs.get("name")):  # a record made by hand may have none
            return None
        if _diagnostics.logs_for_itself():
            # a record on a library thread (an event watcher's handler) could make the next
            about = None
            with contextlib.suppress(Exception):  # a broken extra: nothing to say about an object
                about = _records.find_extras(record)
            if about is not None:
                self._refuse(
                    record,
                    "own-thread",
                    "No event for a record logged on the library's thread %s (an event "
                    "watcher's handler?): an event made there could make the next, without end",
                    threading.current_thread().name,
                )
            return None
        try:
            extras = _records.find_extras(record, self._default_involved)
            involved_none = extras is None and _records.involved_is_none(record)
        except Exception as error:  # a k8s_skip whose truth raises or recurses, a broken mapping
            self._refuse(record, "internal", "No event for this record: %r", error)
            return None
        if involved_none:
            # a variable that was None when logged (a lookup that found nothing): say so
            self._refuse(record, "involved", _records.INVOLVED_NONE)
        return extras

    def _refuse(self, record: logging.LogRecord, where: str, message: str, *args: object) -> None:
        self._counters["refused"].add()
        self._sites.report(record, where, message, *args)

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter ``record`` and emit it, without the handler's lock: a close holds that lock
        while it waits, and must not stall the threads that log. Nothing here takes a lock
        that is not reentrant: a signal handler that logs may interrupt this very call."""
        _process.renewed()  # a fork hook that logs may come before the library's renewal
        if self.level and type(record.levelno) is int and record.levelno < self.level:
            return False  # unchecked by a QueueListener without respect_handler_level
        if self._overridden:
            kept = self.filter(record)  # 3.12+: the record, or one a filter put in its place
            if kept:
                self.emit(kept if isinstance(kept, logging.LogRecord) else record)
            return bool(kept)
        # filters (none, nearly always) run first, as a filter may add involved
        checked = self._filtered(record) if self.filters else record
        if checked is None or (extras := self._extras(checked)) is None:
            return False
        self._emit_safely(checked, extras)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Record an event for ``record`` without waiting for the API; never raises (bad input
        is reported once per call site; see docs/configuration.md, Bad input)."""
        _process.renewed()
        extras = self._extras(record)
        if extras is not None:  # emit called directly, bypassing filter
            self._emit_safely(record, extras)

    def flush(self) -> None:
        """Wait up to ``flush_timeout`` seconds for everything recorded so far to be written
        (see docs/configuration.md, Lifecycle); returns None, never raises."""
        # under the lock, logging.shutdown() flushes then closes: the close reports, once
        self._wait(None, report=not getattr(self._holding, "depth", 0))

    def _flush_before_exit(self) -> None:
        """:meth:`flush` before an uncaught exception's exit, silent: the close at exit reports."""
        self._wait(None, report=False)

    def acquire(self) -> None:
        """Take the handler's lock (the handler never does): a :meth:`flush` under it
        (``logging.shutdown()``) leaves its report to the close that follows."""
        super().acquire()
        self._holding.depth = getattr(self._holding, "depth", 0) + 1

    def release(self) -> None:
        """Release the handler's lock (see :meth:`acquire`)."""
        self._holding.depth = getattr(self._holding, "depth", 1) - 1
        super().release()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: ``flush_timeout``), even after a flush that ran
        out of time, until every occurrence accepted so far has an outcome; True when it did
        (or nothing was recorded), False otherwise. Never raises."""
        seconds = None if timeout is None else _numbers.given_seconds(timeout)
        if timeout is not None and seconds is None:
            _diagnostics.report(
                logging.WARNING,
                "drain() waits a number of seconds, not %s: it did not wait, and answers False",
                _records.shown(timeout),
            )
            return False
        return self._wait(seconds, drain=True)

    def _wait(self, timeout: float | None, *, drain: bool = False, report: bool = True) -> bool:
        # refused records may have been reported (and held back), started or not
        self._sites.summarise()
        active = self._broadcaster
        if active is None:
            return True
        if self._client_needs_logging_lock() or _diagnostics.is_own_thread():
            # the close that follows waits, once dictConfig lets the client in; a finalizer the
            # collector runs on our thread would wait for itself: no wait that ran out either
            return False
        waits = self._waits
        seconds = waits.for_drain(timeout) if drain else waits.for_flush(_written(active))
        if _process.EXIT_CUT.is_set():  # another handler's wait at exit met a Ctrl-C
            waits.cut()
            seconds = 0.0
        done = False
        try:
            # a flush that does not wait (the server takes nothing) has nothing new to say
            done = active._flush(seconds, report=report and seconds > 0)
        except (KeyboardInterrupt, SystemExit):
            if threading.main_thread().is_alive():
                raise  # the program's Ctrl-C (or SIGTERM's exit): no time ran out, exit waits
            # at exit: stop waiting; the close gives up the writes, logging closes the rest
            waits.cut()
            _process.cut_exit()
        except Exception as error:  # flush runs from logging.shutdown: it must not raise
            _diagnostics.report(logging.WARNING, "Unable to flush the event handler: %r", error)
        waits.ended(done, _written(active), drain=drain)
        return done

    def close(self) -> None:
        """Flush within ``flush_timeout`` (one deadline with a flush just before; the threads
        then get a quarter of a second to end), stop what the handler owns, and close it;
        idempotent, never raises. Writes still pending count as ``failed``, reported once. A
        given ``broadcaster`` is only flushed."""
        try:
            _crash.unwatch(self)
            with self._lock:
                first, self._closed = not self._closed, True
                _STARTED.pop(id(self), None)
                active = self._broadcaster
                later = first and active is not None and self._client_needs_logging_lock()
                if first and active is not None:
                    self._stopping = threading.Event()  # before a second close can look
                    self._stopper = None if later else threading.get_ident()
                stopping = self._stopping
            if first:
                self._sites.summarise()
                if active is not None and stopping is not None:
                    self._stop(active, stopping, later=later)
            elif (
                stopping is not None
                and self._stopper != threading.get_ident()  # a signal handler's, inside it
                and not _diagnostics.holds_logging_lock()
                and not _diagnostics.is_own_thread()  # the stop waits for our threads
            ):
                # closed again while another thread (or one after dictConfig) stops: counters final
                stopping.wait(self._options.flush_timeout + _STOP_MARGIN_SECONDS)
        except (KeyboardInterrupt, SystemExit):
            if threading.main_thread().is_alive():
                raise  # the program's own (what was pending is given up, counted, reported)
            # at exit, as for a flush: logging.shutdown() must still close the other handlers
            _process.cut_exit()
        except Exception as error:  # close runs from logging.shutdown: it must not raise
            _diagnostics.report(logging.WARNING, _UNCLEAN_CLOSE, error)
        finally:
            super().close()

    def _stop(
        self, active: recorder.EventBroadcaster, stopped: threading.Event, *, later: bool
    ) -> None:
        """Stop what the handler owns, then set ``stopped``; ``later``: on a thread of its own,
        as the caller holds a lock the writers need (the exit waits for it, or a Ctrl-C)."""

        def stop(on_thread: bool = True) -> None:
            try:
                if on_thread:
                    _process.leave_signals_to_the_main_thread()
                timeout = self._waits.for_close(_written(active))
                if active is self._given:
                    active.flush(timeout)
                else:
                    active._cut_short = self._waits.cut_short  # said so, not a deadline
                    active.shutdown(timeout)  # may raise the program's Ctrl-C, once stopped
            except Exception as error:  # rule 5: a background step never raises
                _diagnostics.report(logging.WARNING, _UNCLEAN_CLOSE, error)
            finally:
                with contextlib.suppress(Exception):  # the sinks it built
                    _apis.call_optional(self._lazy_sink or self._built, "close")
                _process.AT_EXIT.pop(stopped, None)
                stopped.set()

        def cut() -> None:  # Ctrl-C while the exit waits for it
            self._waits.cut()
            active._cut_short = True
            active._runtime.cut()

        if later:
            name = f"{recorder.THREAD_NAME}-close"
            _process.AT_EXIT[stopped] = (self._options.flush_timeout + _STOP_MARGIN_SECONDS, cut)
            with contextlib.suppress(RuntimeError):  # none at interpreter shutdown: stop here
                threading.Thread(target=stop, name=name, daemon=True).start()
                return
        stop(on_thread=False)

    def _client_needs_logging_lock(self) -> bool:
        """dictConfig flushes and closes the handlers it replaces under logging's lock, which a
        writer building the client takes to import: a wait there would time out in vain."""
        lazy = self._lazy_sink
        return lazy is not None and lazy.imports_client and _diagnostics.holds_logging_lock()

    @property
    def source(self) -> models.EventSource:
        """Who the events come from: the ``component`` and ``host`` options."""
        return self._source

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def broadcaster(self) -> recorder.EventBroadcaster | None:
        """The broadcaster events go to; None until the first event (unless one was given)."""
        return self._broadcaster

    def stats(self) -> dict[str, int]:
        """The broadcaster's counters (0 before the first event; a given broadcaster's count
        other recorders' events too) and the handler's own (docs/configuration.md, Counters)."""
        values = dict.fromkeys(_BROADCASTER_STATS, 0)
        active = self._broadcaster
        if active is not None:
            values.update(active.stats())
        values.update({name: tally.value for name, tally in self._counters.items()})
        return values

    def threads(self) -> list[threading.Thread]:
        """The handler's background threads alive right now (none before the first event)."""
        active = self._broadcaster
        return [] if active is None or active is self._given else active.threads()

    def _emit_safely(self, record: logging.LogRecord, extras: dict[str, object]) -> None:
        # the whole path in one frame, around one try: it runs for every record
        try:
            if self._closed:
                self._after_close()
                return
            notes = _records.Notes()
            settings = self._settings
            if settings.formatter is not self.formatter and settings.formatter is not self:
                # setFormatter() since the last record
                settings = self._settings = self._new_settings()
            occurrence = _records.read(record, extras, settings, notes, self._now(), self._seen())
            if notes.refusal is not None or notes.repairs:
                notes.report(self._sites, record)
            if occurrence is None:
                self._counters["refused"].add()
                return
            offer = self._offer or self._start()
            if offer is None:  # closed meanwhile (a signal handler's close): not accepted
                self._after_close()
                return
            if notes.repairs or self._component_repaired:
                self._counters["repaired"].add()
            offer(occurrence)
        except RecursionError as error:  # as the stdlib handlers do: a recursion must surface
            self._refuse(record, "message", "No event for this record: %r", error)
            raise
        except Exception as error:  # a handler must never break the program that logs
            self._refuse(record, "internal", "No event for this record: %r", error)

    def _after_close(self) -> None:
        # said once (a handler re-added after close() by loguru loses them all); not after the
        # main thread returned (that is the exit), nor between a dictConfig's close and successor
        self._counters["after_close"].add()
        if not threading.main_thread().is_alive() or _diagnostics.configuring_elsewhere():
            return
        if self._after_close_said.add() == 0:
            _diagnostics.report(logging.WARNING, _AFTER_CLOSE, self._source.component)

    def _new_settings(self) -> _records.Settings:
        return _records.Settings(
            source=self._source,
            namespace=self._options.namespace,
            default_reason=self._options.default_reason,
            max_message_bytes=self._options.max_message_bytes,
            exception_detail=self._options.exception_detail,
            # a subclass's own format() formats, as in any handler
            formatter=self if type(self).format is not logging.Handler.format else self.formatter,
        )

    def _fresh_state(self) -> None:
        """Everything tied to this process's threads: at construction, and in a forked child,
        where the parent's queue is forgotten (never written twice)."""
        # reentrant: a signal handler that logs may interrupt a thread holding it
        self._lock = threading.RLock()
        self._holding = threading.local()  # .depth: acquire() calls not released, per thread
        self._counters = {name: _diagnostics.Tally() for name in _HANDLER_STATS}
        self._after_close_said = _diagnostics.Tally()
        self._sites = _records.CallSites()
        self._settings = self._new_settings()
        self._broadcaster = self._given
        clock = self._options.broadcasting.clock or _SYSTEM_CLOCK
        self._now, self._seen = clock_mod.readers(clock)
        self._offer: _Offer | None = None
        if self._given is not None:
            self._now, self._seen, self._offer = self._given._intake()
        self._lazy_sink: sinks.LazySink | None = None
        self._stopping = self._stopper = None
        self._waits = _deadlines.ExitWaits(self._options.flush_timeout)

    def _start(self) -> _Offer | None:
        """Create the broadcaster, its sink and watchers, on the first event."""
        with self._lock:
            if self._closed:
                return None
            if self._offer is not None:
                return self._offer
            options = self._options
            active = recorder.EventBroadcaster._with_options(options)
            active.exit_timeout = options.flush_timeout
            event_sink, self._lazy_sink = _options.open_sink(options, self._default_involved)
            if event_sink is not None:
                active.start_recording_to_sink(event_sink)
            target = options.structured_logging
            if target:
                active.start_structured_logging(
                    logging.getLogger(target) if isinstance(target, str) else None
                )
            now, seen, offer = active._intake()
            # a signal handler on this thread may have logged (and won) while it built, or
            # closed the handler, finding nothing to stop: then nothing starts (no offer yet)
            if self.closed:
                return None
            if self._offer is None:
                self._broadcaster, self._offer = active, offer
                self._now, self._seen = now, seen
                _STARTED[id(self)] = self
            return self._offer

    _after_fork_in_child = _fresh_state


class EventLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """A :class:`logging.LoggerAdapter` that adds ``involved`` (and default extras) to records.

    ``EventLoggerAdapter(log, pod, reason="Reconcile").info("Synced")`` logs with
    ``extra={"involved": pod, "reason": "Reconcile"}``. A call's own ``extra`` wins, key by
    key, in a new dict: neither the bound extras nor the caller's change.

    Args:
        logger: the logger to log through.
        involved: the object the events are about.
        **extra: default extras for every call (``reason``, ``action``, ``annotations`` ...).
    """

    def __init__(self, logger: logging.Logger, involved: object, **extra: object) -> None:
        super().__init__(logger, {**extra, "involved": involved})

    @property
    def involved(self) -> object:
        """The object the events are about."""
        return (self.extra or {}).get("involved")

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the bound extras under the call's ``extra``."""
        merged = dict(self.extra or {})
        merged.update(kwargs.get("extra") or {})  # as dict.update takes it: pairs too
        kwargs["extra"] = merged
        return msg, kwargs


def _written(active: recorder.EventBroadcaster) -> int:
    """Occurrences written so far: while this does not move, the server takes nothing."""
    stats = active.stats()
    return stats["created"] + stats["patched"] + stats["coalesced"]


_OPTION_NAMES = tuple(
    name
    for name, parameter in inspect.signature(KubernetesEventHandler).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)
