"""Capture the events a test's logging produced, for assertions with readable failures.

This is the pipeline with its far end replaced: :func:`capture_events` attaches a real
:class:`~k8s_logging_events.handler.KubernetesEventHandler` to a logger (the root logger by
default), writing to a :class:`~k8s_logging_events.testing.FakeEventSink` with a
:class:`~k8s_logging_events.testing.FakeClock` as its clock and sleeper, so correlation,
counting and retries behave as in production and nothing waits on the wall clock. The
:class:`CapturedEvents` it yields flushes before every look, and its failures print the
events the way ``kubectl describe`` does. The pytest plugin's fixture is a thin wrapper.

Code under test that calls ``logging.config.dictConfig`` (or ``fileConfig``) replaces the
root's handlers and closes the old ones. During a capture those two functions are wrapped:
after the application's configuration is applied, the capturing handler is put back on its
logger, and it ignores the close, so capturing goes on (at the levels the application set).
When the configuration is replaced some other way (a ``dictConfig`` imported before the
capture began, ``basicConfig(force=True)``, handlers removed by hand), the next look at the
events fails with a message that says what happened and how to fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import logging.config
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from k8s_logging_events import _apis, describe, handler, models, references
from k8s_logging_events.testing._clock import FakeClock
from k8s_logging_events.testing._fakes import FakeEventSink
from k8s_logging_events.testing._logstate import (
    disabled_loggers,
    enable_library_logger,
    isolated_loggers,
)

_EARLIEST = datetime.min.replace(tzinfo=UTC)


class _Criteria(TypedDict, total=False):
    """:meth:`CapturedEvents.find`'s arguments, typed for the methods that pass them on."""

    type: str | None
    reason: str | None
    message: str | None
    message_contains: str | None
    involved: object | None
    object_kind: str | None
    object_name: str | None
    object_namespace: str | None
    count: int | None
    kind: str | None
    name: str | None
    namespace: str | None


class CapturedEvents:
    """The events a :func:`capture_events` block produced, as the fake API server stored them.

    Every look (:attr:`events`, :meth:`find`, the assertions) first flushes the handler, so
    what was logged before is there, with its final ``count``.

    Args:
        event_handler: the handler that records the events.
        sink: where it writes them.
        clock: its clock; event ages in failure messages are measured from its now.
        flush_timeout: seconds a look may wait for pending writes.
    """

    def __init__(
        self,
        event_handler: handler.KubernetesEventHandler,
        sink: FakeEventSink,
        clock: FakeClock,
        *,
        flush_timeout: float = 10.0,
    ) -> None:
        self.handler = event_handler
        """The handler attached to the logger."""
        self.sink = sink
        """The fake sink the events are written to (its ``calls`` show every write)."""
        self.clock = clock
        """The handler's clock: ``clock.step(seconds)`` moves time for the correlator."""
        self._flush_timeout = flush_timeout
        self._logger: logging.Logger | None = None
        self._reconfigured: list[str] = []
        self._disabled: set[str] = set()
        self._isolated: set[str] = set()  # made not to propagate, below the capture's logger
        self._disabled_before = set(disabled_loggers())

    def _watch(self, logger: logging.Logger) -> None:
        """Note the logger the handler must stay attached to while the capture lasts."""
        self._logger = logger

    def _unwatch(self) -> None:
        self._logger = None

    def _after_reconfiguration(self, how: str, disabled: set[str], isolated: set[str]) -> None:
        """Put the handler back after the application replaced the logging configuration."""
        self._reconfigured.append(how)
        self._disabled |= disabled
        logger = self._logger
        below = "" if logger is None or logger is logging.root else logger.name + "."
        self._isolated |= {name for name in isolated if name.startswith(below)}
        if logger is not None and self.handler not in logger.handlers:
            logger.addHandler(self.handler)

    def _check_attached(self) -> None:
        logger = self._logger
        if logger is None or self.handler in logger.handlers:
            return
        name = logger.name if logger.name != "root" else "the root logger"
        raise AssertionError(
            f"The k8s_events handler was removed from {name} during the test: the code under "
            "test replaced the logging configuration (logging.basicConfig(force=True), a "
            "dictConfig/fileConfig imported before the capture began, or handlers removed by "
            "hand), so records logged after that were not captured. Fix: call "
            "logging.config.dictConfig(...) through the module (the capture re-attaches its "
            "handler after it), configure logging before the k8s_events fixture starts, or "
            f"re-attach it: logging.getLogger({logger.name if logger.name != 'root' else ''!r})"
            ".addHandler(k8s_events.handler)."
        )

    @property
    def events(self) -> list[models.Event]:
        """The stored events, after a flush, in the table's order: kubectl's, by
        ``lastTimestamp`` (for events.k8s.io/v1, the series' first occurrence)."""
        self.flush()
        return sorted(self.sink.events, key=lambda event: event.last_timestamp or _EARLIEST)

    def flush(self) -> None:
        """Wait until every occurrence logged so far is written (or counted as lost).

        Raises:
            AssertionError: writes were still pending after the flush timeout.
        """
        self._check_attached()
        active = self.handler.broadcaster
        if active is not None and not active.flush(self._flush_timeout):
            raise AssertionError(
                f"events were still being written after {self._flush_timeout} s: "
                f"{self.handler.stats()}"
            )

    def find(
        self,
        *,
        type: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        message_contains: str | None = None,
        involved: object | None = None,
        object_kind: str | None = None,
        object_name: str | None = None,
        object_namespace: str | None = None,
        count: int | None = None,
        kind: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
    ) -> list[models.Event]:
        """Return the events that match every criterion given (None matches anything).

        Args:
            type: ``Normal`` or ``Warning``.
            reason: the exact reason.
            message: the exact message.
            message_contains: a part of the message.
            involved: the object itself (a model, manifest or reference): same kind,
                namespace and name (and uid, when both have one), after the repairs the
                handler makes (a namespaced object without a namespace is in ``default``).
            object_kind: the involved object's kind.
            object_name: the involved object's name.
            object_namespace: the involved object's namespace.
            count: the exact number of occurrences the event counts.
            kind: ``object_kind``, by the name ``wait_for_event`` gives it.
            name: ``object_name``, likewise.
            namespace: ``object_namespace``, likewise.

        Raises:
            TypeError: a criterion given under both of its names.
        """
        object_kind = _one_of("object_kind", object_kind, "kind", kind)
        object_name = _one_of("object_name", object_name, "name", name)
        object_namespace = _one_of("object_namespace", object_namespace, "namespace", namespace)
        wanted = None
        if involved is not None:  # as the handler filed it: pod -> Pod, no namespace -> default
            ref = references.object_reference(involved)
            wanted = references.repaired(ref, models.DEFAULT_NAMESPACE)[0]
        exact: dict[str, object] = {
            "type": type,
            "reason": reason,
            "message": message,
            "object_kind": object_kind,
            "object_name": object_name,
            "object_namespace": object_namespace,
            "count": count,
        }
        exact = {key: value for key, value in exact.items() if value is not None}
        found = []
        for event in self.events:
            fields = _fields(event, self._count(event))
            if any(fields[key] != value for key, value in exact.items()):
                continue
            if message_contains is not None and message_contains not in event.message:
                continue
            if wanted is None or _same_object(wanted, event.involved_object):
                found.append(event)
        return found

    def assert_has(self, **criteria: Unpack[_Criteria]) -> models.Event:
        """Return the one event that matches ``criteria`` (the arguments of :meth:`find`).

        Raises:
            AssertionError: no event matches, or several do; the message lists what was
                captured, as ``kubectl describe`` prints it.
        """
        found = self.find(**criteria)
        if len(found) == 1:
            return found[0]
        problem = "No captured event" if not found else f"{len(found)} captured events"
        raise AssertionError(
            f"{problem} {_describe_criteria(criteria)}.\n{self.report()}{self._hint()}"
        )

    def _hint(self) -> str:
        """What the logging configuration did to the capture, if anything."""
        text = ""
        if self._reconfigured:
            text = (
                f"\nThe code under test called logging.config.{', '.join(self._reconfigured)}: "
                "the capture stayed attached, at the levels that configuration set"
            )
            if self._disabled:
                names = ", ".join(sorted(self._disabled)[:5])
                text += (
                    f"; it also disabled {len(self._disabled)} existing logger(s) ({names}), "
                    "whose records reach no handler: set disable_existing_loggers: false"
                )
            if self._isolated:
                first, *_ = isolated = sorted(self._isolated)
                text += (
                    f"; it set propagate: false on {len(isolated)} logger(s) "
                    f"({', '.join(isolated[:5])}), whose records stop at their own handlers and "
                    "never reach the capture's: attach it there too, "
                    f"logging.getLogger({first!r}).addHandler(k8s_events.handler)"
                )
            text += "."
        if not self.sink.events:
            text += self._disabled_hint()
        return text

    def _disabled_hint(self) -> str:
        """Nothing was captured: name the disabled loggers, whose records reach no handler."""
        disabled = disabled_loggers()
        if not disabled:
            return ""
        earlier = [name for name in disabled if name in self._disabled_before]
        during = [name for name in disabled if name not in self._disabled_before]
        shown = ", ".join(repr(name) for name in [*during, *earlier][:8])
        more = f" and {len(disabled) - 8} more" if len(disabled) > 8 else ""
        when = []
        if during:
            when.append(f"{len(during)} during this test")
        if earlier:
            when.append(
                f"{len(earlier)} since before this test: an earlier test's logging "
                "configuration left them so"
            )
        return (
            f"\nNothing was captured, and {len(disabled)} logger(s) are disabled "
            f"({'; '.join(when)}): {shown}{more}. A disabled logger passes nothing to any "
            "handler. logging.config.dictConfig (and fileConfig) disable every logger that "
            "already exists unless the configuration says disable_existing_loggers: false; "
            "set that, or re-enable the logger (logging.getLogger(name).disabled = False)."
        )

    def wait_for(
        self, *, timeout: float = 10.0, min_count: int = 1, **criteria: Unpack[_Criteria]
    ) -> models.Event:
        """Wait until an event matches ``criteria`` and counts ``min_count``; return it.

        For code that logs from its own threads (an operator's loop, a worker pool): the
        look is repeated, each time after a flush, whenever the sink is written to, and at
        least every 0.1 s, until the deadline::

            k8s_events.wait_for(object_kind="Pod", object_name="web-0", reason="BackOff",
                                min_count=3, timeout=5)

        Args:
            timeout: seconds to wait at most.
            min_count: the fewest occurrences the event must count.
            **criteria: the arguments of :meth:`find` (``reason``, ``object_kind``,
                ``object_name``, ``involved`` ...).

        Raises:
            AssertionError: nothing matched in time; the message lists what was captured.
        """
        deadline = time.monotonic() + timeout
        while True:
            written = len(self.sink.calls)
            found = [e for e in self.find(**criteria) if self._count(e) >= min_count]
            if found:
                return found[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                wanted = _describe_criteria({**criteria, "min_count": min_count})
                raise AssertionError(
                    f"No captured event {wanted} after {timeout:g} s.\n{self.report()}"
                    f"{self._hint()}{_blocked_loop_hint()}"
                )
            # a held-back occurrence is written only by a flush: look again soon regardless
            self.sink.wait_for_calls(written + 1, timeout=min(remaining, 0.1))

    def assert_none(self, **criteria: Unpack[_Criteria]) -> None:
        """Check that no event matches ``criteria`` (the arguments of :meth:`find`).

        Raises:
            AssertionError: some do; the message lists what was captured.
        """
        found = self.find(**criteria)
        if found:
            raise AssertionError(
                f"{len(found)} captured event(s) {_describe_criteria(criteria)}, expected none."
                f"\n{self.report()}"
            )

    def table(self) -> str:
        """Render the events as ``kubectl describe`` does, ages measured from the clock."""
        return describe.format_events(self.events, now=self.clock.now())

    def report(self) -> str:
        """Describe what was captured: the table, then each event's object and count."""
        events = self.events
        lines = [
            f"Captured {len(events)} event(s):",
            describe.format_events(events, now=self.clock.now()).rstrip("\n"),
        ]
        if events:
            lines.append("Involved objects, in the same order:")
            lines.extend(f"  {_object_text(event, self._count(event))}" for event in events)
        return "\n".join(lines)

    def _count(self, event: models.Event) -> int:
        """The occurrences ``event`` stands for, as its API counts them (series or count)."""
        return _apis.api_of(self.sink).count_of(event)

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[models.Event]:
        return iter(self.events)

    def __repr__(self) -> str:
        return f"<CapturedEvents: {len(self.sink.events)} event(s)>"


@contextlib.contextmanager
def capture_events(
    logger: logging.Logger | str | None = None,
    *,
    level: int | str | None = logging.INFO,
    component: str = "pytest",
    host: str = "localhost",
    clock: FakeClock | None = None,
    flush_timeout: float = 10.0,
    **options: Any,
) -> Iterator[CapturedEvents]:
    """Capture, in memory, the events that logging produces inside the ``with`` block.

    A :class:`~k8s_logging_events.handler.KubernetesEventHandler` is attached to ``logger``
    for the duration of the block, and closed and removed afterwards; the
    :class:`CapturedEvents` stays readable after the block.

    Args:
        logger: where to attach the handler: a logger, a logger name, or the root logger.
        level: the logger's level during the block (restored after), so that INFO records
            reach the handler under the root's default WARNING; never raised (a logger at
            DEBUG stays there); None leaves it alone.
        component: the events' ``source.component`` (the From column).
        host: the events' ``source.host``.
        clock: the handler's clock and sleeper; a new :class:`FakeClock` by default.
        flush_timeout: seconds a look at the events may wait for pending writes.
        **options: any other :class:`~k8s_logging_events.handler.KubernetesEventHandler`
            option (``correlator``, ``max_message_bytes``, ``exception_detail`` ...);
            ``api`` chooses the rules events are written by (``auto``: events.k8s.io/v1).

    Raises:
        TypeError: ``clock`` is no clock with ``sleep`` (a :class:`FakeClock`), or ``sink``
            or ``sleep`` is given (the capture is the sink, the clock the sleeper).
    """
    if "sink" in options or "sleep" in options:
        raise TypeError("capture_events() keeps the events in memory: it takes no sink or sleep")
    if clock is not None and not callable(getattr(clock, "sleep", None)):
        raise TypeError(f"capture_events() takes a FakeClock as clock, not {clock!r}")
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    fake_clock = clock or FakeClock()
    api = options.get("api", _apis.CORE_V1.name)
    # the handler follows its sink's api; auto as on any cluster since Kubernetes 1.19
    sink = _ApiSink(_apis.EVENTS_V1.name if api == "auto" else api)
    event_handler = _CapturingHandler(
        component=component,
        host=host,
        sink=sink,
        clock=fake_clock,
        sleep=fake_clock.sleep,
        flush_timeout=flush_timeout,
        **options,
    )
    previous_level, effective = target.level, target.getEffectiveLevel()
    if level is not None:
        target.setLevel(level)  # a name too
        # lowered only: a level raised would hide records from the other handlers (caplog's)
        target.setLevel(min(target.level, effective))
    target.addHandler(event_handler)
    captured = CapturedEvents(event_handler, sink, fake_clock, flush_timeout=flush_timeout)
    captured._watch(target)
    library_was_disabled = enable_library_logger()
    try:
        with _reattach_after_reconfiguration(captured):
            yield captured
    finally:
        captured._unwatch()
        target.removeHandler(event_handler)
        if level is not None:
            target.setLevel(previous_level)
        event_handler.capturing = False
        event_handler.close()  # its reports (writes that failed at the end) are the capture's
        enable_library_logger(not library_was_disabled)


class _ApiSink(FakeEventSink):
    """The capture's sink, whose ``api`` the handler writes by (the series' or the counts')."""

    def __init__(self, api: str) -> None:
        super().__init__()
        self.api = api


class _CapturingHandler(handler.KubernetesEventHandler):
    """The capture's handler: a close while the capture lasts (dictConfig's) only flushes."""

    capturing = True

    def close(self) -> None:
        if self.capturing:
            self.flush()
            return
        super().close()


_active_captures: list[CapturedEvents] = []


@contextlib.contextmanager
def _reattach_after_reconfiguration(captured: CapturedEvents) -> Iterator[None]:
    """Wrap logging.config's dictConfig and fileConfig while ``captured`` is active."""
    first = not _active_captures
    _active_captures.append(captured)
    originals = (logging.config.dictConfig, logging.config.fileConfig)
    if first:
        logging.config.dictConfig = _reattaching(originals[0], "dictConfig")
        logging.config.fileConfig = _reattaching(originals[1], "fileConfig")
    try:
        yield
    finally:
        _active_captures.remove(captured)
        if first:
            logging.config.dictConfig, logging.config.fileConfig = originals


def _reattaching(original: Callable[..., Any], how: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def configure(*args: Any, **kwargs: Any) -> Any:
        if not _active_captures:  # put back after its capture (a monkeypatch undone later)
            return original(*args, **kwargs)
        disabled, isolated = set(disabled_loggers()), set(isolated_loggers())
        try:
            return original(*args, **kwargs)
        finally:  # also after one that raised half-way, the root's handlers removed
            enable_library_logger()  # its reports stay part of what the capture shows
            disabled = set(disabled_loggers()) - disabled
            isolated = set(isolated_loggers()) - isolated
            for captured in _active_captures:
                captured._after_reconfiguration(how, disabled, isolated)

    return configure


def _blocked_loop_hint() -> str:
    """wait_for was called from a coroutine: the tasks that would have logged never ran."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return ""
    return (
        "\nwait_for blocks its thread, and this thread runs an asyncio event loop: no task "
        "on it could run, nor log, while it waited. Await the code under test (its task, "
        "or asyncio.sleep) before looking at the events."
    )


def _fields(event: models.Event, count: int) -> dict[str, object]:
    ref = event.involved_object
    return {
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "object_kind": ref.kind,
        "object_name": ref.name,
        "object_namespace": ref.namespace,
        "count": count,
    }


def _same_object(wanted: models.ObjectReference, ref: models.ObjectReference) -> bool:
    if (wanted.kind, wanted.namespace, wanted.name) != (ref.kind, ref.namespace, ref.name):
        return False
    return not (wanted.uid and ref.uid and wanted.uid != ref.uid)


def _one_of(first: str, value: str | None, second: str, alias: str | None) -> str | None:
    if value is not None and alias is not None:
        raise TypeError(f"give {first}= or {second}=, not both")
    return alias if value is None else value


def _describe_criteria(criteria: Mapping[str, object]) -> str:
    given = {key: value for key, value in criteria.items() if value is not None}
    if not given:
        return "at all"
    if "involved" in given:  # a model's repr is the whole object, a hundred lines or more
        given["involved"] = _ref_text(references.object_reference(given["involved"]))
    return "with " + ", ".join(f"{key}={value!r}" for key, value in given.items())


def _object_text(event: models.Event, count: int) -> str:
    return f"{_ref_text(event.involved_object)} (count {count}, {event.type} {event.reason})"


def _ref_text(ref: models.ObjectReference) -> str:
    return f"{ref.kind} {ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind} {ref.name}"
