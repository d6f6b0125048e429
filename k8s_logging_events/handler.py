"""The logging front door: :class:`KubernetesEventHandler` turns records into Events.

This is the top of the pipeline. A record that carries ``extra={"involved": obj}`` is
snapshotted on the caller's thread (object reference, type, reason, message, annotations),
repaired where the API server would reject it, and handed to an
:class:`~k8s_logging_events.recorder.EventRecorder`, which never blocks. Everything after
that (correlation, the spam filter, retries, API writes) happens on the broadcaster's
background threads::

    logger.warning(..., extra={"involved": pod})
      -> KubernetesEventHandler.filter   one attribute lookup: no ``involved``, no event
      -> KubernetesEventHandler.emit     snapshot + repair, never raises, never blocks
         -> EventRecorder.record         -> EventBroadcaster -> structured logging / sink

The handler is built for ``logging.config.dictConfig``: every option is keyword-only and
JSON/YAML-friendly, and the sink, the broadcaster and the threads start lazily on the first
record that carries ``involved``. Bad input (an object that cannot be referred to, an
unprintable message, a reason the server would reject ...) is reported once per call site
on the ``k8s_logging_events`` logger, whose records the handler itself never turns into
events. :class:`EventLoggerAdapter` binds ``involved`` to a logger.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from k8s_logging_events import _diagnostics, _stats, models, recorder, references
from k8s_logging_events import clock as clock_mod
from k8s_logging_events import correlator as correlators
from k8s_logging_events import sink as sinks

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

DEFAULT_MAX_MESSAGE_BYTES = 1024
"""The message limit in UTF-8 bytes: events.k8s.io/v1 (and core/v1 with ``eventTime``)
refuse a longer one, and ``kubectl describe`` is unreadable long before that."""

DEFAULT_QUEUE_LENGTH = 10_000
"""Events the broadcaster holds before it drops: the background threads share the
interpreter lock with the code that logs, so the queue must absorb a whole burst (client-go's
1,000 loses part of a tight loop of 10,000 identical warnings)."""

DEFAULT_FLUSH_TIMEOUT = 5.0
"""Seconds ``flush()`` and ``close()`` may wait for writes: bounded, so that
``logging.shutdown()`` at exit finishes promptly even when the API server is down."""

COMPONENT_ENV = "K8S_LOGGING_EVENTS_COMPONENT"
"""The environment variable that sets the default ``component`` (the ``From`` column)."""

EXCEPTION_DETAILS = ("summary", "traceback", "none")
"""What an event says about a record's exception: ``ExcType: text``, the whole traceback
(as the formatter renders it), or nothing."""

EXTRAS = ("involved", "reason", "action", "related", "annotations", "event_type", "field_path")
"""The record attributes (``extra=`` keys) the handler reads."""

TRUNCATION_MARK = " ..."
"""What ends a message that was cut to ``max_message_bytes``."""

REASON_MAX_BYTES = 128
"""The server's limit on ``reason`` (events.k8s.io/v1, and core/v1 with ``eventTime``)."""

ACTION_MAX_BYTES = 128
"""The server's limit on ``action``."""

ANNOTATIONS_MAX_BYTES = 256 * 1024
"""The server's limit on the total size of an object's annotations."""

_MIN_MESSAGE_BYTES = 16
_EXIT_PAIR_SECONDS = 1.0
"""A close() this soon after a flush() returned is the second half of one exit."""
_MAX_CALL_SITES = 4096
_SERVICE_ACCOUNT_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
_OWN_PREFIX = _diagnostics.LOGGER_NAME + "."
_BROADCASTER_STATS = ("accepted", "invalid", *_stats.OUTCOMES, "pending")
_HANDLER_STATS = ("refused", "repaired", "after_close")
_EVENT_API_VERSIONS = ("", "v1", "events.k8s.io/v1", "events.k8s.io/v1beta1")
# NUL breaks C-string tools and some storage back ends; lone surrogates cannot be UTF-8
_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")
_REASON_BREAKS = re.compile("[\\s\x00-\x1f\x7f\ud800-\udfff]+")
_QUALIFIED_NAME = re.compile(r"(?:[a-z0-9][-a-z0-9_.]*)?[a-z0-9]\Z")
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*\Z"
)
_PLAIN = logging.Formatter("%(message)s")

SinkOption = sinks.EventSink | str | Mapping[str, Any] | None
"""What ``sink=`` accepts: ``"auto"``, ``None``, a URL, an EventSink, or a ``"()"`` dict."""

_Sink = sinks.EventSink | str | None


class KubernetesEventHandler(logging.Handler):
    """A :class:`logging.Handler` that records an Event for every record with ``involved``.

    Records without an ``involved`` attribute are ignored at the cost of one attribute
    lookup, and so are records from the ``k8s_logging_events`` logger (and its children),
    even if the application routes them here. The record's extras ``reason``, ``action``,
    ``related``, ``annotations``, ``event_type`` and ``field_path`` fill in the rest of the
    event; WARNING and above become ``Warning`` events, the rest ``Normal``. The record is
    never changed, and :meth:`emit` never raises (except :class:`RecursionError`) and never
    waits for the API server.

    Args:
        component: who reports the events (``source.component``, the ``From`` column);
            by default :func:`default_component`.
        host: where it runs (``source.host`` and ``reportingInstance``); by default
            :func:`default_host`.
        level: the handler's level, as for any handler.
        sink: where events are written. ``"auto"``: the in-cluster service account, else
            the kubeconfig, else no API writes (with one warning on the
            ``k8s_logging_events`` logger); ``None`` (or ``"none"``): no API writes; a URL
            such as ``http://127.0.0.1:8001`` (``kubectl proxy``): that server, without
            credentials; an :class:`~k8s_logging_events.sink.EventSink` object; or a
            ``{"()": factory, ...}`` dict that builds one. Client configuration is loaded on
            a writer thread at the first write, never on the thread that logs.
        broadcaster: an :class:`~k8s_logging_events.recorder.EventBroadcaster` to record
            into. The handler does not own it: it starts no watcher on it and does not shut
            it down (``close()`` only flushes it), and ``sink``, ``structured_logging`` and
            the queue, writer and correlator options do not apply. Without one, the handler
            creates and owns its broadcaster on the first record with ``involved``.
        namespace: the namespace of events about cluster-scoped objects (Nodes,
            Namespaces ...). A core/v1 event without ``eventTime``, which is what the
            recorder writes, is accepted there only in ``default``, so that is the only
            value allowed.
        default_reason: the reason of a record without a ``reason`` extra.
        max_message_bytes: the longest message, in UTF-8 bytes; a longer one is cut at a
            character boundary and ends with :data:`TRUNCATION_MARK`. At least 16.
        queue_length: events the broadcaster and each of its watchers may hold; beyond
            that, events are dropped and counted.
        qps: the sustained API request rate of the sink's client-side rate limit (0: off).
        burst: the requests the sink may send at once after a quiet spell.
        drain_qps: the request rate while :meth:`flush` or :meth:`close` drains what is
            pending (0: no limit), so that a job that logs about many objects and exits
            finds them all on the server; answers of 429 and ``Retry-After`` still count.
        request_timeout: seconds to connect and to read each answer (one number, or a
            pair); ``None`` keeps the sink's default (5 s, 10 s).
        correlator: correlation options, as a
            :class:`~k8s_logging_events.correlator.CorrelatorOptions` or a mapping of its
            field names (``burst_size``, ``qps``, ``max_events`` ...); ``None``: client-go's.
        flush_timeout: seconds :meth:`flush` and :meth:`close` may wait for writes.
        structured_logging: also log every event as one JSON line to standard error
            (``True``), or as a record on the logger of that name (a string).
        exception_detail: what an event says about the record's exception:
            ``"summary"`` (``message: ExcType: text``), ``"traceback"`` (the message as
            the formatter renders it, traceback included) or ``"none"``.
        writers: writer threads for the sink.
        max_tries: attempts per write before it is given up.
        sleep_duration: seconds between write attempts (the first is randomised).
        api: which Events API the sink writes: ``"v1"`` (core/v1, counted and aggregated
            like client-go's ``tools/record``; the default), ``"events.k8s.io/v1"`` (series,
            like client-go's ``tools/events``) or ``"auto"`` (events.k8s.io/v1 when the
            server's discovery shows it). Applies to the sinks the handler builds from
            ``"auto"`` or a URL; a sink object brings its own ``api``.
        clock: the time source (tests pass a
            :class:`~k8s_logging_events.testing.FakeClock`); not for dictConfig.
        sleep: how back-offs and the rate limit wait (tests pass ``clock.sleep``); not for
            dictConfig.

    Raises:
        ValueError: an option is out of range or of the wrong kind.
    """

    ignores_library_reports = True
    """The library's own reports never become events here (see ``_diagnostics``)."""

    # the state that is tied to this process's threads, renewed after fork
    _broadcaster: recorder.EventBroadcaster | None
    _recorder: recorder.EventRecorder | None
    _lazy_sink: _LazySink | None

    def __init__(
        self,
        *,
        component: str = "",
        host: str = "",
        level: int | str = logging.NOTSET,
        sink: SinkOption = "auto",
        broadcaster: recorder.EventBroadcaster | None = None,
        namespace: str = recorder.DEFAULT_NAMESPACE,
        default_reason: str = DEFAULT_REASON,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        queue_length: int = DEFAULT_QUEUE_LENGTH,
        qps: float = sinks.DEFAULT_QPS,
        burst: int = sinks.DEFAULT_BURST,
        drain_qps: float = sinks.DEFAULT_DRAIN_QPS,
        request_timeout: float | Sequence[float] | None = None,
        correlator: correlators.CorrelatorOptions | Mapping[str, Any] | None = None,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        structured_logging: bool | str = False,
        exception_detail: str = "summary",
        writers: int = 4,
        max_tries: int = 12,
        sleep_duration: float = 10.0,
        api: str = sinks.CORE_V1,
        clock: clock_mod.Clock | None = None,
        sleep: clock_mod.Sleeper | None = None,
    ) -> None:
        super().__init__(level)
        self._source = models.EventSource(
            component=component or default_component(), host=host or default_host()
        )
        self._config = _Config(
            sink=_checked_sink(sink, broadcaster),
            namespace=_checked_namespace(namespace),
            default_reason=_checked_reason(default_reason),
            max_message_bytes=_at_least("max_message_bytes", max_message_bytes, _MIN_MESSAGE_BYTES),
            queue_length=_at_least("queue_length", queue_length, 1),
            qps=float(qps),
            burst=_at_least("burst", burst, 1),
            drain_qps=float(_at_least("drain_qps", drain_qps, 0)),
            request_timeout=_checked_timeout(request_timeout),
            correlator=_correlator_options(correlator),
            flush_timeout=float(_at_least("flush_timeout", flush_timeout, 0)),
            structured_logging=_checked_structured(structured_logging, broadcaster),
            exception_detail=_checked_detail(exception_detail),
            writers=_at_least("writers", writers, 1),
            max_tries=_at_least("max_tries", max_tries, 1),
            sleep_duration=float(_at_least("sleep_duration", sleep_duration, 0)),
            api=_checked_api(api),
        )
        self._clock = clock
        self._sleep = sleep
        self._given = broadcaster
        self._fresh_state()
        self._closed = False
        _live_handlers.add(self)

    # --- the logging.Handler interface -----------------------------------------------------

    def filter(self, record: logging.LogRecord) -> bool:
        """Let through only records with ``involved`` that come from another logger.

        The ``involved`` check comes first and is one attribute lookup: it is all that a
        record without it costs. The handler's own filters run after these checks.
        """
        if (
            getattr(record, "involved", None) is None
            or _is_own(record.name)
            or _diagnostics.is_own_thread()
        ):
            return False
        return super().filter(record)

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter ``record`` and emit it, without any lock.

        Not under the handler's ``lock``: ``logging.shutdown()`` and ``dictConfig`` hold that
        one while they flush and close the handler, which may wait ``flush_timeout`` seconds
        for the API server, and the threads that log must not wait behind it (what they log
        once the handler is closed is counted as ``after_close``). Nothing on this path
        takes a lock that is not reentrant: a signal handler that logs runs on the thread it
        interrupted, possibly in the middle of this very call.
        """
        result = self.filter(record)
        if result:
            self.emit(record)
        return result

    def emit(self, record: logging.LogRecord) -> None:
        """Record an event for ``record``, on this thread, without waiting for the API.

        Never raises: bad input is reported once per call site on the
        ``k8s_logging_events`` logger and costs only its own event. After :meth:`close`,
        records are dropped quietly (counted as ``after_close``).
        """
        try:
            self._emit(record)
        except RecursionError:  # as the stdlib handlers do: a recursion must surface
            raise
        except Exception as error:  # a handler must never break the program that logs
            self._counters["refused"].add()
            self._sites.report(record, "internal", "No event for this record: %r", error)

    def flush(self) -> None:
        """Wait up to ``flush_timeout`` seconds for everything recorded so far to be written.

        Held-back counts of the spam filter go out too, and the sink's rate limit is lifted
        to ``drain_qps`` meanwhile. Returns when everything reached an outcome (written,
        coalesced, failed or dropped) or the timeout passed; never raises.
        """
        active = self._broadcaster
        self._flush_deadline = time.monotonic() + self._config.flush_timeout
        try:
            if active is not None:
                active.flush(self._config.flush_timeout)
        except Exception as error:  # flush runs from logging.shutdown: it must not raise
            _diagnostics.log_safely(
                _diagnostics.logger, logging.WARNING, "Unable to flush the event handler: %r", error
            )
        finally:
            self._flushed_at = time.monotonic()

    def close(self) -> None:
        """Flush within ``flush_timeout``, stop what the handler owns, and close it.

        Idempotent and safe from ``logging.shutdown()`` and from a second ``dictConfig``
        (both call it while holding the handler's lock, which no background thread of the
        handler ever takes). ``logging.shutdown()`` calls :meth:`flush` and then this: the
        two share one deadline, so the whole exit takes ``flush_timeout`` (plus a quarter
        of a second for the threads to end) whatever the server does. Writes still pending
        at the deadline are counted as ``failed`` and reported once, with the reason and
        the option that would help. A given ``broadcaster`` is flushed, not shut down.
        """
        try:
            with self._lock:
                first = not self._closed
                self._closed = True
                active, lazy = self._broadcaster, self._lazy_sink
            if first and active is not None:
                self._stop(active, lazy)
        except Exception as error:  # close runs from logging.shutdown: it must not raise
            _diagnostics.log_safely(
                _diagnostics.logger,
                logging.WARNING,
                "Unable to close the event handler cleanly: %r",
                error,
            )
        finally:
            super().close()

    # --- extras ----------------------------------------------------------------------------

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
        """Return the broadcaster's counters plus the handler's own.

        From the broadcaster (see :meth:`~k8s_logging_events.recorder.EventBroadcaster.stats`):
        ``accepted``, ``invalid``, ``dropped``, ``created``, ``patched``, ``coalesced``,
        ``failed`` and ``pending`` (all 0 before the first event). The handler's: ``refused``
        (records with ``involved`` that made no event because of bad input), ``repaired``
        (events recorded after their input was repaired, e.g. a message cut to size) and
        ``after_close`` (records dropped because the handler was closed). With a shared
        ``broadcaster`` its counters include other recorders' events.
        """
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

    # --- the caller's thread ---------------------------------------------------------------

    def _emit(self, record: logging.LogRecord) -> None:
        involved = getattr(record, "involved", None)
        if involved is None or _is_own(record.name) or _diagnostics.is_own_thread():
            return  # emit called directly, bypassing filter
        if self._closed:
            self._counters["after_close"].add()
            return
        notes = _Notes()
        occurrence = self._occurrence(record, involved, notes)
        if notes.refusal is not None or notes.repairs:
            notes.report(self._sites, record)
        if occurrence is None:
            self._counters["refused"].add()
            return
        if notes.repairs:
            self._counters["repaired"].add()
        active = self._recorder or self._start()
        if active is None:
            self._counters["after_close"].add()
            return
        active.record(
            occurrence.ref,
            occurrence.type,
            occurrence.reason,
            occurrence.message,
            annotations=occurrence.annotations,
            action=occurrence.action,
            related=occurrence.related,
        )

    def _occurrence(
        self, record: logging.LogRecord, involved: object, notes: _Notes
    ) -> _Occurrence | None:
        """Snapshot what the event needs from ``record``; None when it cannot be one."""
        ref = _reference(involved, getattr(record, "field_path", None), notes)
        if ref is None:
            return None
        message = self._message(record, notes)
        if message is None:
            return None
        return _Occurrence(
            ref=ref,
            type=_event_type(record, notes),
            reason=_reason(getattr(record, "reason", None), self._config.default_reason, notes),
            message=message,
            annotations=_annotations(getattr(record, "annotations", None), notes),
            action=_action(getattr(record, "action", None), notes),
            related=_related(getattr(record, "related", None), notes),
        )

    def _message(self, record: logging.LogRecord, notes: _Notes) -> str | None:
        try:
            text = self._format(record)
        except RecursionError:
            raise
        except Exception as error:  # a bad format string is the caller's bug, not a crash
            notes.refuse("message", "Unable to format the message: %r", error)
            return None
        return _sanitised_message(text, self._config.max_message_bytes, notes)

    def _format(self, record: logging.LogRecord) -> str:
        """Format without touching ``record``: a formatter sets attributes on what it formats."""
        detail = self._config.exception_detail
        has_extra = record.exc_info is not None or record.stack_info is not None
        if self.formatter is None and not has_extra:
            return record.getMessage()
        copy = _shallow_copy(record)
        summary = ""
        if detail != "traceback":
            summary = _exception_summary(record.exc_info) if detail == "summary" else ""
            copy.exc_info = None
            copy.exc_text = None
            copy.stack_info = None
        text = (self.formatter or _PLAIN).format(copy)
        return f"{text}: {summary}" if summary else text

    # --- lifecycle -------------------------------------------------------------------------

    def _fresh_state(self) -> None:
        """Reset everything tied to this process's threads (at construction and after fork)."""
        # reentrant: a signal handler that logs may interrupt a thread holding it
        self._lock = threading.RLock()
        self._counters = {name: _stats.Tally() for name in _HANDLER_STATS}
        self._sites = _CallSites()
        self._broadcaster = self._given
        self._recorder = self._new_recorder(self._given) if self._given is not None else None
        self._lazy_sink = None
        self._flush_deadline = 0.0
        self._flushed_at = -math.inf

    def _start(self) -> recorder.EventRecorder | None:
        """Create the broadcaster, its watchers and the recorder: on the first event."""
        with self._lock:
            if self._closed:
                return None
            if self._recorder is None:
                active = self._new_broadcaster()
                new = self._new_recorder(active)
                # a signal handler that logged while this thread was building may have won
                if self._recorder is None:
                    self._broadcaster, self._recorder = active, new
            return self._recorder

    def _new_broadcaster(self) -> recorder.EventBroadcaster:
        config = self._config
        active = recorder.EventBroadcaster(
            sleep_duration=config.sleep_duration,
            correlator_options=config.correlator,
            queue_length=config.queue_length,
            clock=self._clock,
            writers=config.writers,
            max_tries=config.max_tries,
            sleep=self._sleep,
        )
        active.exit_timeout = config.flush_timeout
        event_sink = self._open_sink()
        if event_sink is not None:
            active.start_recording_to_sink(event_sink)
        if config.structured_logging:
            target = config.structured_logging
            active.start_structured_logging(
                logging.getLogger(target) if isinstance(target, str) else None
            )
        return active

    def _new_recorder(self, active: recorder.EventBroadcaster) -> recorder.EventRecorder:
        # the recorder puts events about cluster-scoped objects in "default", the namespace
        # option's only valid value
        return active.new_recorder(self._source)

    def _open_sink(self) -> sinks.EventSink | None:
        option = self._config.sink
        if option is None or isinstance(option, sinks.EventSink):
            return option
        api = self._config.api
        if option == "auto":
            found = _find_kube_config()
            if found is None:
                _diagnostics.logger.warning(
                    "No Kubernetes configuration found (no in-cluster service account; no "
                    "kubeconfig at %s): events go to no API server, and are counted as "
                    "'discarded'",
                    _kubeconfig_paths_text(),
                )
                return None
            self._lazy_sink = _LazySink(self._kubernetes_sink_factory(None), found, api)
        else:
            self._lazy_sink = _LazySink(self._kubernetes_sink_factory(option), option, api)
        return self._lazy_sink

    def _kubernetes_sink_factory(self, url: str | None) -> Callable[[], sinks.EventSink]:
        options: dict[str, Any] = {
            "qps": self._config.qps,
            "burst": self._config.burst,
            "clock": self._clock,
            "sleep": self._sleep,
            "api": self._config.api,
            "drain_qps": self._config.drain_qps,
        }
        if self._config.request_timeout is not None:
            options["request_timeout"] = self._config.request_timeout
        if url is None:
            return lambda: sinks.KubernetesEventSink(**options)
        return lambda: sinks.KubernetesEventSink.from_url(url, **options)

    def _stop(self, active: recorder.EventBroadcaster, lazy: _LazySink | None) -> None:
        timeout = self._config.flush_timeout
        if time.monotonic() - self._flushed_at < _EXIT_PAIR_SECONDS:
            # logging.shutdown() flushes, then closes: both share the flush's deadline
            timeout = max(0.0, self._flush_deadline - time.monotonic())
        if active is self._given:
            active.flush(timeout)
        else:
            active.shutdown(timeout)
        if lazy is not None:
            lazy.close()

    def _after_fork_in_child(self) -> None:
        """Forget the parent's threads and queues: the child starts afresh on its next event.

        What the parent had queued stays in the parent's broadcaster, which the child never
        touches (its locks may be held by threads that do not exist here), so nothing is
        written twice. A given broadcaster is the application's to reset.
        """
        self._fresh_state()


@dataclass(frozen=True, slots=True)
class _Config:
    """The validated options."""

    sink: _Sink
    namespace: str
    default_reason: str
    max_message_bytes: int
    queue_length: int
    qps: float
    burst: int
    drain_qps: float
    request_timeout: float | tuple[float, float] | None
    correlator: correlators.CorrelatorOptions | None
    flush_timeout: float
    structured_logging: bool | str
    exception_detail: str
    writers: int
    max_tries: int
    sleep_duration: float
    api: str


@dataclass(frozen=True, slots=True)
class _Occurrence:
    """What one record contributes to an event, snapshotted on the caller's thread."""

    ref: models.ObjectReference
    type: str
    reason: str
    message: str
    annotations: dict[str, str] | None
    action: str
    related: models.ObjectReference | None


class EventLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """A :class:`logging.LoggerAdapter` that adds ``involved`` (and default extras) to records.

    ``EventLoggerAdapter(log, pod, reason="Reconcile").info("Synced")`` logs with
    ``extra={"involved": pod, "reason": "Reconcile"}``. A call's own ``extra`` is merged
    over the bound one, key by key, and wins; every call gets a new dict, so neither the
    bound extras nor the caller's are changed.

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
        call_extra = kwargs.get("extra")
        if call_extra:
            merged.update(call_extra)
        kwargs["extra"] = merged
        return msg, kwargs


def default_component() -> str:
    """Return the default ``component``: ``$K8S_LOGGING_EVENTS_COMPONENT``, else the program.

    The program is the module run with ``python -m`` (without ``.__main__``), else the
    script's file name without ``.py``, else ``python``.
    """
    configured = os.environ.get(COMPONENT_ENV, "").strip()
    if configured:
        return configured
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    module = str(getattr(spec, "name", "") or "")
    if module:
        return module.removesuffix(".__main__")
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if script and script not in ("-c", "-"):
        return script.removesuffix(".py")
    return "python"


def default_host() -> str:
    """Return the default ``host``: ``$NODE_NAME``, else ``$HOSTNAME``, else the host name.

    In a pod, set ``NODE_NAME`` from the Downward API (``spec.nodeName``) to report the node
    as the kubelet does; ``HOSTNAME`` is the pod's name.
    """
    for variable in ("NODE_NAME", "HOSTNAME"):
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    try:
        return socket.gethostname()
    except OSError:  # pragma: no cover - a host without a name
        return ""


# --- per-record snapshot helpers (caller's thread) -------------------------------------------


class _Notes:
    """The problems found in one record: at most one refusal, any number of repairs."""

    __slots__ = ("refusal", "repairs")

    def __init__(self) -> None:
        self.refusal: tuple[str, str, tuple[object, ...]] | None = None
        self.repairs: list[tuple[str, str, tuple[object, ...]]] = []

    def refuse(self, kind: str, msg: str, *args: object) -> None:
        self.refusal = (kind, msg + " (no event)", args)

    def repair(self, kind: str, msg: str, *args: object) -> None:
        self.repairs.append((kind, msg, args))

    def report(self, sites: _CallSites, record: logging.LogRecord) -> None:
        for kind, msg, args in [*self.repairs, *([self.refusal] if self.refusal else [])]:
            sites.report(record, kind, msg, *args)


class _CallSites:
    """Reports each kind of problem once per call site (``pathname:lineno``)."""

    def __init__(self, limit: int = _MAX_CALL_SITES) -> None:
        self._lock = threading.RLock()  # the caller's path: a signal handler may re-enter
        self._seen: set[tuple[str, int, str]] = set()
        self._limit = limit
        # past the limit (generated code?), fall back to once a minute per kind
        self._overflow = _diagnostics.RateLimitedReporter()

    def report(self, record: logging.LogRecord, kind: str, msg: str, *args: object) -> None:
        pathname = str(getattr(record, "pathname", "") or "?")
        lineno = int(getattr(record, "lineno", 0) or 0)
        key = (pathname, lineno, kind)
        with self._lock:
            if key in self._seen:
                return
            fresh = len(self._seen) < self._limit
            if fresh:
                self._seen.add(key)
        text = msg + " (logged at %s:%d)"
        if fresh:
            _diagnostics.logger.warning(text, *args, pathname, lineno)
        else:
            self._overflow.report(kind, logging.WARNING, text, *args, pathname, lineno)


def _reference(
    involved: object, field_path: object, notes: _Notes
) -> models.ObjectReference | None:
    if isinstance(involved, models.Event):
        notes.refuse(
            "event-about-event",
            "Refusing to record an event about Event %s/%s: events about events multiply",
            involved.namespace,
            involved.name,
        )
        return None
    path = field_path if isinstance(field_path, str) else ""
    try:
        ref = references.object_reference(involved, field_path=path)
    except RecursionError:
        raise
    except Exception as error:  # InvalidObjectError, or an object whose attributes raise
        notes.refuse("involved", "Unable to refer to the involved object: %s", error)
        return None
    if ref.kind == "Event" and ref.api_version in _EVENT_API_VERSIONS:
        notes.refuse(
            "event-about-event",
            "Refusing to record an event about Event %s/%s: events about events multiply",
            ref.namespace,
            ref.name,
        )
        return None
    return ref


def _event_type(record: logging.LogRecord, notes: _Notes) -> str:
    by_level = models.WARNING if record.levelno >= logging.WARNING else models.NORMAL
    wanted = getattr(record, "event_type", None)
    if wanted is None:
        return by_level
    if isinstance(wanted, str):
        for known in (models.NORMAL, models.WARNING):
            if wanted.strip().lower() == known.lower():
                return known
    notes.repair(
        "event-type",
        "Unsupported event_type %r (only Normal and Warning): recorded as %s, from the level",
        wanted,
        by_level,
    )
    return by_level


def _reason(value: object, default: str, notes: _Notes) -> str:
    if value is None or value == "":
        return default
    text = str.__str__(value) if isinstance(value, str) else str(value)
    fixed = _camel_case(text)
    if fixed == text and isinstance(value, str):
        return fixed
    fixed = fixed or default
    notes.repair(
        "reason",
        "The reason %.80r is not one CamelCase word of at most %d bytes: recorded as %r",
        value,
        REASON_MAX_BYTES,
        fixed,
    )
    return fixed


def _camel_case(text: str) -> str:
    """Join the words of ``text`` in UpperCamelCase and cut it to the server's limit."""
    if _REASON_BREAKS.search(text) is not None:
        text = "".join(word[:1].upper() + word[1:] for word in _REASON_BREAKS.split(text))
    return _cut_bytes(text, REASON_MAX_BYTES)


def _action(value: object, notes: _Notes) -> str:
    if value is None or value == "":
        return ""
    text = str.__str__(value) if isinstance(value, str) else str(value)
    fixed = _cut_bytes(_UNSAFE_TEXT.sub("\ufffd", text), ACTION_MAX_BYTES)
    if fixed != text or not isinstance(value, str):
        notes.repair(
            "action", "The action %.80r was not a short string: recorded as %r", value, fixed
        )
    return fixed


def _related(value: object, notes: _Notes) -> models.ObjectReference | None:
    if value is None:
        return None
    try:
        return references.object_reference(value)
    except Exception as error:  # a bad secondary object costs the link, not the event
        notes.repair("related", "Ignoring the related object: %s", error)
        return None


def _annotations(value: object, notes: _Notes) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        notes.repair(
            "annotations", "Ignoring annotations: a %s is not a mapping", type(value).__name__
        )
        return None
    result: dict[str, str] = {}
    coerced: list[str] = []
    dropped: list[str] = []
    for key in list(value):
        name = key if isinstance(key, str) else str(key)
        if not _is_annotation_key(name):
            dropped.append(name)
            continue
        item = value[key]
        text = item if isinstance(item, str) else str(item)
        if not isinstance(key, str) or not isinstance(item, str):
            coerced.append(name)
        result[name] = _UNSAFE_TEXT.sub("\ufffd", text)
    if dropped:
        notes.repair("annotation-key", "Dropping annotations with invalid keys: %r", dropped)
    if coerced:
        notes.repair("annotation-value", "Annotations %r made strings with str()", coerced)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in result.items())
    if size > ANNOTATIONS_MAX_BYTES:
        notes.repair("annotation-size", "Dropping annotations: %d bytes is over 256 KiB", size)
        return None
    return result


def _is_annotation_key(key: str) -> bool:
    """The server's rule: a qualified name, ``[dns-subdomain/]name``, checked in lower case."""
    parts = key.lower().split("/")
    if len(parts) > 2:
        return False
    name = parts[-1]
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return False
    if len(parts) == 2:
        prefix = parts[0]
        return bool(prefix) and len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix) is not None
    return True


def _sanitised_message(text: str, limit: int, notes: _Notes) -> str:
    """Cut ``text`` to ``limit`` UTF-8 bytes and replace what cannot be stored."""
    # a character is at most 4 bytes: only a message this long can be over the limit
    long = len(text) * 4 > limit
    head = text[: limit + 1] if long else text
    if _UNSAFE_TEXT.search(head) is not None:
        head = _UNSAFE_TEXT.sub("\ufffd", head)
        notes.repair(
            "message-text", "NUL or unpaired surrogate characters in the message became U+FFFD"
        )
    if not long:
        return head
    data = head.encode("utf-8")
    if len(data) <= limit and len(head) == len(text):
        return head
    cut = data[: limit - len(TRUNCATION_MARK)].decode("utf-8", "ignore")
    notes.repair(
        "message-size",
        "The message is longer than %d bytes: cut at a character boundary, ending in %r",
        limit,
        TRUNCATION_MARK,
    )
    return cut + TRUNCATION_MARK


def _cut_bytes(text: str, limit: int) -> str:
    if len(text) * 4 <= limit:
        return text
    data = text[: limit + 1].encode("utf-8", "replace")
    if len(data) <= limit and len(text) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _exception_summary(exc_info: object) -> str:
    if not isinstance(exc_info, tuple) or len(exc_info) < 2 or exc_info[0] is None:
        return ""
    exc_type, exc = exc_info[0], exc_info[1]
    name = getattr(exc_type, "__qualname__", None) or str(exc_type)
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ fails still has a type
        text = "<unprintable>"
    return f"{name}: {text}" if text else str(name)


def _shallow_copy(record: logging.LogRecord) -> logging.LogRecord:
    copy = logging.LogRecord.__new__(type(record))
    copy.__dict__.update(record.__dict__)
    return copy


def _is_own(name: str) -> bool:
    return name == _diagnostics.LOGGER_NAME or name.startswith(_OWN_PREFIX)


# --- sinks ----------------------------------------------------------------------------------


class _LazySink:
    """An EventSink that builds the real one on its first write, on a writer thread.

    Loading a kubeconfig may run an exec credential plugin for seconds; neither
    ``dictConfig`` nor the thread that logs should wait for that.
    """

    def __init__(self, factory: Callable[[], sinks.EventSink], what: str, api: str) -> None:
        self._factory = factory
        self._what = what
        self._api = api
        self._lock = threading.Lock()
        self._real: sinks.EventSink | None = None
        self._error: Exception | None = None
        self._closed = False
        self._draining = False

    def create(self, event: models.Event) -> models.Event:
        """Create ``event`` through the real sink."""
        return self._resolve().create(event)

    def update(self, event: models.Event) -> models.Event:
        """Replace ``event`` through the real sink."""
        return self._resolve().update(event)

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        """Patch ``event`` through the real sink."""
        return self._resolve().patch(event, data)

    @property
    def api(self) -> str:
        """The configured API; with ``"auto"``, the real sink's (built on the dispatcher)."""
        if self._api != "auto":
            return self._api
        try:
            real = self._resolve()
        except Exception:  # no client: nothing will be written, whichever the API
            return sinks.CORE_V1
        return str(getattr(real, "api", sinks.CORE_V1))

    def drain(self, on: bool) -> None:
        """Switch the real sink's drain rate on or off (when it is built, if it is not yet)."""
        self._draining = on
        drain = getattr(self._real, "drain", None)
        if callable(drain):
            drain(on)

    @property
    def waiting_for_rate_limit(self) -> int:
        """Requests of the real sink waiting for its rate limit."""
        return int(getattr(self._real, "waiting_for_rate_limit", 0) or 0)

    def close(self) -> None:
        """Close the real sink, if it was built (a build still running closes it itself)."""
        self._closed = True
        real = self._real
        if real is not None:
            _close_sink(real)

    def _resolve(self) -> sinks.EventSink:
        real = self._real
        if real is not None:
            return real
        with self._lock:
            if self._real is None and self._error is None and not self._closed:
                self._build()
            if self._real is not None:
                return self._real
        if self._closed:
            raise ConnectionAbortedError("the event handler was closed")
        raise sinks.RequestConstructionError(f"no Kubernetes client: {self._error}")

    def _build(self) -> None:
        try:
            with _importing:
                # os.fork() waits for this (see _before_fork): a child must not inherit a
                # half-imported module, whose import lock a thread it lacks would hold forever
                import kubernetes  # noqa: F401 - the import is the point
            built = self._factory()
        except Exception as error:  # a broken kubeconfig: say so once, then give up writes
            self._error = error
            _diagnostics.logger.warning(
                "Unable to build a Kubernetes client from %s: %s; events go to no API server",
                self._what,
                error,
            )
            return
        drain = getattr(built, "drain", None)
        if self._draining and callable(drain):  # a flush began while the client was built
            drain(True)
        self._real = built
        if self._closed:  # close() ran while the client was being built
            _close_sink(built)


def _close_sink(event_sink: object) -> None:
    close = getattr(event_sink, "close", None)
    if callable(close):
        close()


def _build_sink(spec: Mapping[str, Any]) -> sinks.EventSink | None:
    """Build a sink from a ``{"()": factory, ...}`` dict, with dictConfig's own machinery."""
    import logging.config

    configurator = getattr(spec, "configurator", None)
    if not isinstance(configurator, logging.config.BaseConfigurator):
        configurator = logging.config.BaseConfigurator({})
    # indexed access converts ext:// and cfg:// values; a copy keeps the config intact
    built = configurator.configure_custom({key: spec[key] for key in spec})
    if not isinstance(built, sinks.EventSink):
        raise ValueError(f"the sink factory returned {type(built).__name__}, not an EventSink")
    return built


def _kubeconfig_paths() -> list[str]:
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return paths or [os.path.join("~", ".kube", "config")]


def _kubeconfig_paths_text() -> str:
    return ", ".join(_kubeconfig_paths())


def _find_kube_config() -> str | None:
    """Say where a client configuration would come from, without loading it."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(_SERVICE_ACCOUNT_FILE):
        return "the in-cluster service account"
    for path in _kubeconfig_paths():
        if os.path.isfile(os.path.expanduser(path)):
            return f"the kubeconfig {path}"
    return None


# --- option checks (construction time: a configuration error should surface there) ---------


def _checked_sink(option: object, given: recorder.EventBroadcaster | None) -> _Sink:
    if isinstance(option, str):
        lowered = option.strip().lower()
        if lowered in ("none", ""):
            return None
        if lowered == "auto":
            return "auto" if given is None else None
        if given is None and lowered.startswith(("http://", "https://")):
            return option.strip()
    if given is not None and option is not None:
        raise ValueError("sink cannot be set together with broadcaster: the handler starts no sink")
    if option is None or isinstance(option, sinks.EventSink):
        return option
    if isinstance(option, Mapping) and "()" in option:
        return _build_sink(option)
    raise ValueError(
        f"sink must be 'auto', None, an http(s) URL, an EventSink or a '()' dict, not {option!r}"
    )


def _checked_api(api: str) -> str:
    if api not in (sinks.CORE_V1, sinks.EVENTS_V1, "auto"):
        raise ValueError(
            f"api must be {sinks.CORE_V1!r}, {sinks.EVENTS_V1!r} or 'auto', not {api!r}"
        )
    return api


def _checked_namespace(namespace: str) -> str:
    if namespace != recorder.DEFAULT_NAMESPACE:
        raise ValueError(
            f"namespace {namespace!r}: the API server accepts core/v1 events without eventTime "
            "about cluster-scoped objects only in 'default'"
        )
    return namespace


def _checked_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason or _camel_case(reason) != reason:
        raise ValueError(f"default_reason must be one CamelCase word, not {reason!r}")
    return reason


def _checked_detail(detail: str) -> str:
    if detail not in EXCEPTION_DETAILS:
        raise ValueError(f"exception_detail must be one of {EXCEPTION_DETAILS}, not {detail!r}")
    return detail


def _checked_structured(option: bool | str, given: recorder.EventBroadcaster | None) -> bool | str:
    if not isinstance(option, bool | str):
        raise ValueError(f"structured_logging must be a bool or a logger name, not {option!r}")
    if option and given is not None:
        raise ValueError("structured_logging cannot be set together with broadcaster")
    return option


def _checked_timeout(
    option: float | Sequence[float] | None,
) -> float | tuple[float, float] | None:
    if option is None:
        return None
    if isinstance(option, int | float):
        return float(option)
    values = [float(item) for item in option]
    if len(values) != 2:
        raise ValueError(f"request_timeout must be a number or two, not {option!r}")
    return values[0], values[1]


def _at_least(name: str, value: Any, minimum: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum}, not {value!r}")
    return value


def _correlator_options(
    option: correlators.CorrelatorOptions | Mapping[str, Any] | None,
) -> correlators.CorrelatorOptions | None:
    if option is None or isinstance(option, correlators.CorrelatorOptions):
        return option
    if not isinstance(option, Mapping):
        raise ValueError(f"correlator must be CorrelatorOptions or a mapping, not {option!r}")
    fields = correlators.CorrelatorOptions.__dataclass_fields__
    unknown = sorted(str(key) for key in option if key not in fields)
    if unknown:
        raise ValueError(f"unknown correlator options {unknown}; known: {sorted(fields)}")
    # indexed access: dictConfig converts ext:// and cfg:// values only that way
    return correlators.CorrelatorOptions(**{str(key): option[key] for key in option})


# --- fork -------------------------------------------------------------------------------------

_live_handlers: weakref.WeakSet[KubernetesEventHandler] = weakref.WeakSet()


def _reset_handlers_in_child() -> None:
    for handler in list(_live_handlers):
        handler._after_fork_in_child()


_importing = threading.Lock()
"""Held while a writer thread imports the kubernetes client."""


def _before_fork() -> None:
    _importing.acquire()


def _after_fork_in_parent() -> None:
    _importing.release()


def _after_fork_in_child() -> None:
    global _importing
    _importing = threading.Lock()
    _reset_handlers_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
