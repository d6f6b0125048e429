"""Recording: the client-go ``event.go`` surface, from a recorder call to the watchers.

:class:`EventRecorder` builds an occurrence on the caller's thread and queues it without
blocking; the :class:`EventBroadcaster`'s runtime (``_runtime``, ``docs/architecture.md``)
hands each event to its watchers: a callback, a log line, a JSON line or a sink.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from k8s_logging_events import (
    _apis,
    _continuation,
    _diagnostics,
    _errors,
    _numbers,
    _official,
    _options,
    _pending,
    _pool,
    _process,
    _records,
    _runtime,
    _sanitise,
    _structured,
    broadcaster,
    correlator,
    models,
    references,
    series,
    sink,
)
from k8s_logging_events import clock as clock_mod

__all__ = ["MAX_QUEUED_EVENTS", "EventBroadcaster", "EventRecorder"]

MAX_QUEUED_EVENTS = 1000
"""client-go's queue length, for the incoming queue and for each watcher's queue."""

THREAD_NAME = "k8s-events"  # the default prefix of a broadcaster's thread names

# one sink's correlation: its write policy, the step, and whether its runs may be cut object
# by object (its state never crosses objects, no function of the user's reads a run's repeats)
_Step = tuple[_pending.WritePolicy, _pending.Correlate, bool]


class EventBroadcaster:
    """Receives events from recorders and hands each one to every watcher started on it.

    Every keyword but ``rng`` and ``name`` is a field of ``_options.BroadcasterOptions``,
    described there (``correlator_options`` is its ``correlator``); defaults are client-go's
    (its queue of 1,000, 12 tries 10 s apart), names too (``"timestamp"``, unless
    ``correlator_options`` ask for deterministic ones), and 4 ``writers``, which it lacks.
    Call :meth:`shutdown` before the process ends, as client-go's users call ``Shutdown()``:
    its threads are daemons, and nothing else writes what is still queued at exit. Each
    keyword is checked as the handler's option of that name: a value of the wrong kind or
    out of range (``writers=0``, ``sleep_duration=-1``, ``sleep=time.sleep``, whose shape
    is not ``sleep(seconds, cancel)``) raises :class:`ValueError` naming it. ``rng``:
    the random source for the first back-off (``random.random`` by default); ``name``: the
    prefix of this broadcaster's thread names.
    """

    def __init__(
        self,
        *,
        sleep_duration: float | str = _pending.DEFAULT_SLEEP_DURATION,
        correlator_options: correlator.CorrelatorOptions | None = None,
        queue_length: int | str = MAX_QUEUED_EVENTS,
        clock: clock_mod.Clock | None = None,
        writers: int | str = _pending.DEFAULT_WRITERS,
        max_tries: int | str = _pending.MAX_TRIES_PER_EVENT,
        sleep: clock_mod.Sleeper | None = None,
        rng: Callable[[], float] | None = None,
        name: str = THREAD_NAME,
        event_names: str = _sanitise.TIMESTAMP,
    ) -> None:
        # checked as the handler's are: a string or a NaN would fail later, on a thread
        options = _options.broadcasting(
            queue_length=queue_length,
            writers=writers,
            max_tries=max_tries,
            sleep_duration=sleep_duration,
            correlator=correlator_options,
            event_names=event_names,
            clock=clock,
            sleep=sleep,
        )
        self._set_up(options, rng=rng, name=name)

    @classmethod
    def _with_options(cls, options: _options.Options) -> EventBroadcaster:
        """A handler's broadcaster, of its options checked already; its reports of what it
        could not write name the handler's component (a program may have several)."""
        made = cls.__new__(cls)
        made._set_up(options.broadcasting, rng=None, name=THREAD_NAME)
        made._runtime.about = f"of {options.component} "
        return made

    def _set_up(
        self, options: _options.BroadcasterOptions, *, rng: Callable[[], float] | None, name: str
    ) -> None:
        self._options = options
        names = (options.correlator or correlator.CorrelatorOptions()).event_names
        if names != _sanitise.DETERMINISTIC:  # unless its correlator options ask for them
            names = options.event_names
        self._clock = options.clock or clock_mod.SystemClock()
        # the writer's due times on the clock as the sleeper moves it (see Paced)
        self._paced = clock_mod.Paced(self._clock, options.sleep) if options.sleep else None
        self._rng = rng or random.random
        self._namer = _sanitise.EventNamer(event_names=names)
        self._invalid = _diagnostics.Tally()
        self._counters = _diagnostics.Counters()
        self._reporter = _diagnostics.RateLimitedReporter(clock=self._clock)
        self._unfinished_reported = -1  # ``accepted`` when a flush last said what it left
        self._cut_short = False  # the handler's flush at exit was ended by Ctrl-C or an exit
        self._runtime = _runtime.Runtime(
            options.queue_length,
            options.writers,
            self._paced.sleep if self._paced else None,
            namer=self._namer,
            counters=self._counters,
            reporter=self._reporter,
            name=name,
        )
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        # the runtime, counters, reporter and namer renew themselves (see _process)
        self._invalid = _diagnostics.Tally()

    def new_recorder(self, source: models.EventSource | str) -> EventRecorder:
        """Return a recorder whose events come from ``source`` (a component name, or both);
        anything else raises :class:`TypeError` (its every event would fail)."""
        given: object = source
        if isinstance(given, str):
            given = models.EventSource(component=given)
        if not isinstance(given, models.EventSource):
            raise TypeError(f"source must be a component name or an EventSource, not {given!r}")
        return EventRecorder(self, given, clock=self._clock)

    def start_event_watcher(self, handler: Callable[[models.Event], None]) -> broadcaster.Watcher:
        """Call ``handler`` with every event, in order, on a watcher thread of its own, until
        the watcher's ``stop()`` or :meth:`shutdown`. Not callable: :class:`TypeError`."""
        _callable("handler", handler)
        # counted on the dispatcher, said by the watcher's own thread (_watchers)
        return self._runtime.add_watcher(
            handler, on_drop=lambda item: self._counters.add("watcher_dropped")
        )

    def start_logging(self, logf: Callable[[str], None]) -> broadcaster.Watcher:
        """Call ``logf`` with one line per event, in client-go's ``StartLogging`` format."""
        _callable("logf", logf)
        return self.start_event_watcher(lambda event: logf(_structured.log_line(event)))

    def start_structured_logging(
        self, logger: logging.Logger | None = None, level: int | str = logging.INFO
    ) -> broadcaster.Watcher:
        """Log every event as ``Event occurred`` at ``level`` (a number or, as ``logging``
        takes it, a name: ``"INFO"``) with its fields as extras, on a watcher thread of its own
        (a stream that blocks holds up no sink), never taking the ``logging`` module's lock:
        on ``logger``, or as one JSON line to standard error (docs/configuration.md,
        ``structured_logging``). A ``logger`` that is no :class:`logging.Logger` (a name, say)
        raises :class:`TypeError`, a ``level`` that is no level :class:`ValueError`."""
        given: object = logger
        if given is not None and not isinstance(given, logging.Logger):
            raise TypeError(f"logger must be a logging.Logger or None, not {given!r}")
        if isinstance(level, str):  # a name, as logging reads one
            level = logging.getLevelNamesMapping().get(level, level)
        if not isinstance(level, int):  # it would fail every event on the watcher, not once here
            raise ValueError(f"level must be a logging level (a number or a name), not {level!r}")
        target = logger or _structured.json_event_logger()
        return self.start_event_watcher(
            lambda event: _structured.log_structured(target, level, event)
        )

    def start_recording_to_sink(self, sink: sink.EventSink) -> broadcaster.Watcher:
        """Correlate every event and write it to ``sink``, with a correlator of its own:
        series when its ``api`` is ``events.k8s.io/v1`` (read at the first event, on a writer
        thread while ``api_known`` is False), else client-go's counts. What is no
        :class:`~k8s_logging_events.sink.EventSink` (a URL, say) raises :class:`TypeError`."""
        if not _continuation.is_event_sink(sink):  # a URL, say: every event would fail
            raise TypeError(f"not an EventSink (create, update, patch): {sink!r}")
        writes = _pending.Writes(
            sink,
            None,
            self._counters,
            options=self._options,
            clock=self._paced or self._clock,
            rng=self._rng,
            reporter=self._reporter,
            namer=self._namer,
        )
        return self._runtime.add_recording(
            _pool.Recording(writes, lambda: self._correlation_for(sink))
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far has a final outcome, held-back counts included
        (a sink with a ``drain`` method lifts its rate limit to its drain rate meanwhile);
        False after ``timeout`` seconds (None: 5 s), said once with what is still pending. The
        reports the writes caused are out before it returns."""
        return self._flush(timeout, report=True)

    def _flush(self, timeout: float | None, *, report: bool) -> bool:
        """:meth:`flush`; ``report=False`` leaves a timeout to the close that follows."""
        accepted = self._runtime.accepted
        seconds = self._seconds("flush", timeout)
        try:
            done = self._runtime.flush(seconds)
        finally:
            _official.summarise_client_errors()  # the process's limit, said at every flush
        if done or not report or _diagnostics.is_own_thread():
            return done
        if accepted != self._unfinished_reported:
            self._unfinished_reported = accepted  # once for the same occurrences
            when = f"within the flush's {seconds:g} s (they are still pending)"
            writes, queued, preparing = self._runtime.unwritten()
            self._report_unwritten("flush-timeout", writes, queued, when, preparing)
        return done

    def _seconds(self, call: str, timeout: object) -> float:
        """``timeout`` of ``call`` in seconds (None: 5 s); what is no number is said and waits
        5 s: refused inside a flush or close begun, it raised into the caller or left the
        threads running and unclosable."""
        seconds = _numbers.given_seconds(
            _runtime.DEFAULT_EXIT_TIMEOUT if timeout is None else timeout
        )
        if seconds is None:
            self._reporter.report(
                call,
                logging.WARNING,
                "%s() waits a number of seconds, not %r: it waits %g s",
                call,
                timeout,
                _runtime.DEFAULT_EXIT_TIMEOUT,
            )
        return _runtime.DEFAULT_EXIT_TIMEOUT if seconds is None else seconds

    def _report_unwritten(
        self,
        kind: str,
        writes: Sequence[_pending.Write],
        queued: int,
        when: str,
        preparing: int = 0,
        *,
        cut_short: bool = False,
    ) -> None:
        if writes or queued or preparing:
            summary = _errors.unwritten_summary(
                writes,
                self._runtime.sinks(),
                when=self._runtime.about + when,
                queued=queued,
                preparing=preparing,
                cut_short=cut_short,
            )
            self._reporter.report(kind, logging.WARNING, "%s", summary)

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (None: 5 s), then stop every thread; idempotent, never raises
        but the program's own Ctrl-C or ``SystemExit`` that cut the wait short (after the stop).

        What is pending at the deadline counts as ``failed``, reported once with the reason.
        Only a writer stuck in a request, or a watcher whose handler does not return (both
        daemons), outlives the call by more than a grace. A call while another thread shuts
        down returns once that one is done.
        """
        interrupted: BaseException | None = None
        try:
            given_up, lost, interrupted = self._runtime.close(self._seconds("shutdown", timeout))
            # a Ctrl-C or exit that cut the wait short is no deadline: more time would not help
            cut_short = interrupted is not None or self._cut_short
            when = "before the deadline of shutdown"
            if cut_short:
                when = "when shutdown was cut short (Ctrl-C or an exit)"
            self._report_unwritten("exit", given_up, lost, when, cut_short=cut_short)
            self._reporter.summarise()
            _official.summarise_client_errors()
        except Exception as error:  # shutdown runs from logging.shutdown: it must not raise
            self._reporter.report(
                "shutdown", logging.WARNING, "Unable to shut down cleanly: %r", error
            )
        if interrupted is not None:
            raise interrupted  # the program's Ctrl-C or exit, once the writes are given up

    def stats(self) -> Mapping[str, int]:
        """Return the counters of what became of every occurrence: ``accepted``, ``invalid``,
        the outcomes, ``pending``, ``pending_events`` and ``watcher_dropped``
        (docs/configuration.md, Counters)."""
        values = self._runtime.stats()
        values["invalid"] = self._invalid.value
        values.setdefault("watcher_dropped", 0)
        return values

    @property
    def accepted(self) -> int:
        """Occurrences offered so far (dropped ones included): ``stats()["accepted"]``, cheaply."""
        return self._runtime.accepted

    @property
    def exit_timeout(self) -> float:
        """Seconds a ``multiprocessing`` child may spend writing its events when it ends."""
        return self._runtime.exit_timeout

    @exit_timeout.setter
    def exit_timeout(self, seconds: float) -> None:
        self._runtime.exit_timeout = seconds

    @property
    def event_names(self) -> str:
        """How this broadcaster names its events: ``"timestamp"`` or ``"deterministic"``."""
        return self._namer.event_names

    def threads(self) -> list[threading.Thread]:
        """The broadcaster's threads alive right now (for diagnostics and tests)."""
        return self._runtime.threads()

    def _intake(
        self,
    ) -> tuple[Callable[[], datetime], Callable[[], float], Callable[[models.Occurrence], bool]]:
        """For a front door that checks its own occurrences (the handler): the clock's two
        readings that date them and the runtime's offer, bound once."""
        return (*clock_mod.readers(self._clock), self._runtime.offer)

    def _report(self, kind: str, msg: str, *args: Any) -> None:
        self._invalid.add()
        self._reporter.report(kind, logging.ERROR, msg, *args)

    def _correlation_for(self, event_sink: sink.EventSink) -> _Step:
        if _apis.api_of(event_sink) is _apis.EVENTS_V1:
            return _in_series(self._clock, self._namer)
        # core/v1: client-go's aggregation, counts and spam filter; repeats patch ``count``
        options = self._options.correlator or correlator.CorrelatorOptions()
        if options.clock is None:
            options = dataclasses.replace(options, clock=self._clock)
        events = correlator.EventCorrelator(options, namer=self._namer)
        # runs of repeats correlate at once only under client-go's functions: a message_func
        # of one's own may read an occurrence's time, and raise for one repeat of a run
        in_runs = events.options.message_func is correlator.combined_message
        policy = correlator.CountPolicy(events)
        correlate: _pending.Correlate = events.correlate_many
        if options.clock is not self._clock:
            # occurrences are observed on the broadcaster's clock, meaningless on another: this
            # correlator measures from when it comes to each, on its own (as client-go does)
            def correlate(run: Sequence[models.Event]) -> list[tuple[models.Event, bool, int]]:
                return events.correlate_many([models.replaced(e, observed=None) for e in run])

        return policy, correlate, in_runs and events.keeps_objects_apart


def _callable(name: str, given: object) -> None:
    # what cannot be called would fail at every event, never once at the start
    if not callable(given):
        raise TypeError(f"{name} must be callable, not {given!r}")


Notes = Mapping[str, str] | None  # the annotations of a recorder's call, if it has any
FormatArgs = tuple[object, ...]  # the arguments of a recorder's format


class EventRecorder:
    """Records events about objects on behalf of one source (client-go's ``EventRecorder``).

    Never raises into the caller: bad input (an object it cannot refer to, an Event, a type
    but ``Normal``/``Warning``, a reason, message or action that is no ``str``, annotations
    the API server refuses, a format error) is reported on the ``k8s_logging_events``
    logger, counted ``invalid``, and makes no event. ``default_namespace`` files a
    namespaced built-in object that has no namespace; events about objects without one
    still go to ``default``.
    """

    def __init__(
        self,
        broadcaster: EventBroadcaster,
        source: models.EventSource,
        *,
        clock: clock_mod.Clock | None = None,
        default_namespace: str = models.DEFAULT_NAMESPACE,
    ) -> None:
        self._broadcaster = broadcaster
        self._queue = broadcaster._runtime.offer  # a full queue is a counted drop, never a wait
        self._source = source
        self._clock = clock or clock_mod.SystemClock()
        # on the broadcaster's clock, as its correlators measure (a clock of the recorder's
        # own dated the occurrences in its seconds, a FakeClock's steps left windows open)
        self._monotonic = clock_mod.monotonic_source(broadcaster._clock)
        self._default_namespace = default_namespace

    @property
    def source(self) -> models.EventSource:
        """Who these events come from."""
        return self._source

    def event(self, obj: object, type: str, reason: str, message: str) -> None:
        """Record an event about ``obj`` with this ``message``."""
        self._recordf(obj, None, type, reason, message, ())

    def eventf(self, obj: object, type: str, reason: str, fmt: str, *args: object) -> None:
        """Record an event whose message is ``fmt % args`` (``fmt`` as is without args)."""
        self._recordf(obj, None, type, reason, fmt, args)

    def annotated_eventf(
        self,
        obj: object,
        annotations: Mapping[str, str],
        type: str,
        reason: str,
        fmt: str,
        *args: object,
    ) -> None:
        """Like :meth:`eventf`, with ``annotations`` on the event's metadata."""
        self._recordf(obj, annotations, type, reason, fmt, args)

    def _recordf(
        self, obj: object, notes: Notes, type: str, reason: str, fmt: str, args: FormatArgs
    ) -> None:
        message = fmt
        if args:
            try:
                message = fmt % args
            except Exception as error:  # a bad format string is the caller's bug, not a crash
                self._refuse_format(
                    "Unable to format event message %s: %s", _records.shown(fmt), error
                )
                return
        self._record_call(obj, notes, type, reason, message)

    def _refuse_format(self, msg: str, *args: object) -> None:
        self._broadcaster._report("bad-format", msg, *args)

    def _record_call(self, obj: object, notes: Notes, type: str, reason: str, message: str) -> None:
        self.record(obj, type, reason, message, annotations=notes)

    def record(
        self,
        obj: object,
        type: str,
        reason: str,
        message: str,
        *,
        annotations: Mapping[str, str] | None = None,
        action: str = "",
        related: object | None = None,
        field_path: str = "",
    ) -> bool:
        """Record an event with every field a caller can set; True when it was queued.

        ``obj`` is the involved object (:func:`~.references.object_reference`), ``type``
        ``Normal`` or ``Warning``, ``reason`` a short CamelCase word (``BackOff``),
        ``annotations`` the event's metadata annotations; ``action`` what was done
        (events.k8s.io/v1), ``related`` a secondary object, ``field_path`` the part of ``obj``
        the event is about.
        """
        _process.renewed()
        report, reporter = self._broadcaster._report, self._broadcaster._reporter
        try:  # a recorder must never raise into the caller
            try:
                ref = references.object_reference(obj, field_path=field_path)
            except (references.InvalidObjectError, RecursionError) as error:
                report("invalid-object", "Unable to record event: %r", error)
                return False
            ref, repairs = references.repaired(ref, self._default_namespace)
            # after the repair: ``kind: event`` is an Event too, once its case is put right
            if _sanitise.is_event(ref.kind, ref.api_version):
                report("event-about-event", _records.ABOUT_AN_EVENT, ref.namespace, ref.name)
                return False
            if not correlator.validate_event_type(type):
                report(
                    "invalid-type",
                    "Unsupported event type: %s (only Normal and Warning are allowed)",
                    _records.shown(type),
                )
                return False
            texts: dict[str, object] = {"reason": reason, "message": message, "action": action}
            for field, value in texts.items():
                if not isinstance(value, str):  # typed str: anything else is the caller's mistake
                    report(
                        "invalid-text",
                        "Unable to record event: %s must be a str, not %s",
                        field,
                        value.__class__.__name__,
                    )
                    return False
            # as the server stores them (U+FFFD): a retry's read must find the event it sent
            reason, message, action = map(_sanitise.replace_surrogates, (reason, message, action))
            problem = _sanitise.annotations_problem(annotations) if annotations else None
            if problem:
                report("invalid-annotations", "Unable to record event: %s", problem)
                return False
            for repair, msg, args in repairs:
                reporter.report(f"repaired:{repair}", logging.WARNING, msg, *args)
            related_ref = None
            if related is not None:
                try:
                    related_ref = references.object_reference(related)
                except Exception as error:  # an attribute that raises is a bad object too
                    # like client-go, a bad secondary object only costs the link, not the event
                    reporter.report(
                        "invalid-related", logging.DEBUG, "Ignoring related object: %s", error
                    )
            # the Event itself (a dataclass of 18 fields) is built on the broadcaster's thread
            event = models.Occurrence(
                ref=ref,
                # an object without a namespace: the server takes its events only in 'default'
                namespace=ref.namespace or models.DEFAULT_NAMESPACE,
                type=type,
                reason=reason,
                message=message,
                annotations=dict(annotations) if annotations else None,
                action=action,
                related=related_ref,
                source=self._source,
                time=self._clock.now(),
                seen=self._monotonic(),
            )
        except Exception as error:
            report("invalid-event", "Unable to record event (will not retry): %s", error)
            return False
        return self._queue(event)


def _in_series(clock: clock_mod.Clock, namer: correlator.EventNamer) -> _Step:
    # events.k8s.io/v1: isomorphic occurrences form a series, written on a heartbeat; with
    # deterministic names, keyed without the object's resourceVersion and named after the key
    deterministic = namer.deterministic
    key = series.series_key if deterministic else series.isomorphic_key

    def renamed(event: models.Event, generation: int) -> models.Event:
        # the key names every series alike: a later one takes the name a process walks to
        # from the finished one's, its first rename (see _continuation), wherever it started
        return dataclasses.replace(event, name=namer.renamed(event, 1, clock.now()))

    grouped = series.SeriesCorrelator(
        clock=clock, key=key, rename=renamed if deterministic else None
    )

    def prepared(event: models.Event) -> models.Event:
        event = series.prepare_event(event)
        if deterministic:
            event = dataclasses.replace(event, name=namer.series_name(event))
        return event

    def observe(run: Sequence[models.Event]) -> list[tuple[models.Event, bool, int]]:
        return [(*grouped.observe(prepared(event)), 1) for event in run]

    # every occurrence is observed on its own: runs gain nothing, arrival order is exact
    return series.SeriesPolicy(grouped), observe, False
