"""EventBroadcaster and EventRecorder: client-go's event.go behaviours, and what we add."""

from __future__ import annotations

import contextlib
import fractions
import io
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from k8s_logging_events import correlator, models, recorder, sink
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests._sinks import SetUpHangs, WithoutRead
from tests._typecheck import mypy_report

START = datetime(2024, 1, 1, tzinfo=UTC)


def _pod(name: str = "foo", namespace: str = "baz", uid: str = "bar") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
    }


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock(START, tick=1.0)


def on_fake_time(
    made: list[recorder.EventBroadcaster], clock: FakeClock, /, **kw: object
) -> recorder.EventBroadcaster:
    """A broadcaster whose time and sleeps are ``clock``'s, retrying at once, unless ``kw``
    says otherwise (kept in ``made`` for the test to shut down)."""
    options: dict[str, object] = {
        "clock": clock,
        "sleep": clock.sleep,
        "sleep_duration": 0.0,
        "rng": lambda: 0.5,
    }
    options.update(kw)
    b = recorder.EventBroadcaster(**options)  # type: ignore[arg-type]
    made.append(b)
    return b


@pytest.fixture(name="make_broadcaster")
def _make_broadcaster(clock: FakeClock) -> Iterator[object]:
    made: list[recorder.EventBroadcaster] = []

    def make(**kw: object) -> recorder.EventBroadcaster:
        return on_fake_time(made, clock, **kw)

    yield make
    for b in made:
        b.shutdown(timeout=5)


def _written(fake: FakeEventSink) -> list[tuple[str, int]]:
    return [(call.method, _count(call)) for call in fake.calls]


def _count(call: object) -> int:
    method = call.method  # type: ignore[attr-defined]
    if method == "patch":
        return int(json.loads(call.data)["count"])  # type: ignore[attr-defined]
    return int(call.event.count)  # type: ignore[attr-defined]


# --- client-go's TestEventf ----------------------------------------------------------------


def test_repeats_are_patched_with_counts_and_new_events_created(make_broadcaster) -> None:
    """client-go's Eventf table: create/patch choice and counts 1,1,2,1,3,1,2."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    rec = b.new_recorder(models.EventSource(component="eventTest", host="node-1"))
    pod, pod2 = _pod(), _pod(name="foo2", uid="bar2")
    steps = [
        (pod, "Started", "some verbose message: 1", "create", 1),
        (pod, "Killed", "some other verbose message: 1", "create", 1),
        (pod, "Started", "some verbose message: 1", "patch", 2),
        (pod2, "Started", "some verbose message: 1", "create", 1),
        (pod, "Started", "some verbose message: 1", "patch", 3),
        (pod2, "Stopped", "some verbose message: 1", "create", 1),
        (pod2, "Started", "some verbose message: 1", "patch", 2),
    ]
    for obj, reason, message, method, count in steps:
        before = len(fake.calls)
        rec.event(obj, models.NORMAL, reason, message)
        assert b.flush(5)
        assert _written(fake)[before:] == [(method, count)]
        event = fake.calls[-1].event
        assert event.name.startswith(f"{obj['metadata']['name']}.")  # type: ignore[index]
        assert event.namespace == "baz"
        assert event.reporting_controller == "eventTest"
        assert event.reporting_instance == "node-1"
        assert event.source == models.EventSource(component="eventTest", host="node-1")


def test_start_recording_to_sink_takes_its_sink_by_keyword(make_broadcaster) -> None:
    """The API's parameter name: ``start_recording_to_sink(sink=...)`` records as a positional
    sink does."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(sink=fake)
    b.new_recorder("eventTest").event(_pod(), models.NORMAL, "Started", "m")
    assert b.flush(5)
    assert _written(fake) == [("create", 1)]


def test_start_logging_writes_client_go_line(make_broadcaster) -> None:
    """StartLogging's text: the Go rendering of the reference, type, reason and message."""
    b = make_broadcaster()
    lines: list[str] = []
    b.start_logging(lines.append)
    rec = b.new_recorder("eventTest")
    ref = models.ObjectReference(
        kind="Pod",
        namespace="baz",
        name="foo",
        uid="bar",
        api_version="v1",
        field_path="spec.containers[2]",
    )
    rec.eventf(ref, models.NORMAL, "Started", "some verbose message: %d", 1)
    assert b.flush(5)
    assert lines == [
        'Event(v1.ObjectReference{Kind:"Pod", Namespace:"baz", Name:"foo", UID:"bar", '
        'APIVersion:"v1", ResourceVersion:"", FieldPath:"spec.containers[2]"}): '
        "type: 'Normal' reason: 'Started' some verbose message: 1"
    ]


def test_structured_logging_passes_the_fields_as_extras(make_broadcaster) -> None:
    """With a logger, 'Event occurred' carries object, fieldPath, kind, ... as extras."""
    b = make_broadcaster()
    records: list[logging.LogRecord] = []
    target = logging.getLogger("tests.recorder.structured")
    target.propagate = False
    target.setLevel(logging.DEBUG)
    target.addHandler(_ListHandler(records))
    b.start_structured_logging(target, logging.INFO)
    ref = models.ObjectReference(
        kind="Pod", namespace="baz", name="foo", api_version="v1", field_path="f"
    )
    b.new_recorder("c").event(ref, models.WARNING, "Failed", "boom")
    assert b.flush(5)
    (record,) = records
    assert record.getMessage() == "Event occurred"
    assert record.levelno == logging.INFO
    fields = {
        k: getattr(record, k)
        for k in ("object", "fieldPath", "kind", "apiVersion", "type", "reason", "event_message")
    }
    assert fields == {
        "object": "baz/foo",
        "fieldPath": "f",
        "kind": "Pod",
        "apiVersion": "v1",
        "type": "Warning",
        "reason": "Failed",
        "event_message": "boom",
    }


def test_structured_logging_takes_a_level_name_as_logging_does(make_broadcaster) -> None:
    """``level="WARNING"`` logs at WARNING, as ``logging`` reads a level name (it failed every
    event on the watcher with a TypeError); what is no level is refused when started."""
    b = make_broadcaster()
    records: list[logging.LogRecord] = []
    target = logging.getLogger("tests.recorder.structured_level")
    target.propagate = False
    target.addHandler(_ListHandler(records))
    with pytest.raises(ValueError, match="level"):
        b.start_structured_logging(target, "LOUD")
    b.start_structured_logging(target, "WARNING")
    b.new_recorder("c").event(_pod(), models.NORMAL, "Started", "up")
    assert b.flush(5)
    assert [(r.levelno, r.getMessage()) for r in records] == [(logging.WARNING, "Event occurred")]


def test_a_structured_logging_target_that_raises_costs_no_occurrence(
    make_broadcaster, caplog
) -> None:
    """A structured logging target logger that raises (a filter
    with a bug) is reported on the library's logger for that event, and neither the sink's
    writes nor the target's later events are lost."""
    caplog.set_level(logging.DEBUG, logger="k8s_logging_events")
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    records: list[logging.LogRecord] = []
    target = logging.getLogger("tests.recorder.structured-raises")
    target.propagate = False
    target.setLevel(logging.DEBUG)
    target.addHandler(_ListHandler(records))

    def buggy(record: logging.LogRecord) -> bool:
        if getattr(record, "reason", "") == "Broken":
            raise RuntimeError("a filter with a bug")
        return True

    target.addFilter(buggy)
    b.start_structured_logging(target, logging.INFO)
    rec = b.new_recorder("c")
    for number, reason in enumerate(("Fine", "Broken", "Fine")):
        ref = models.ObjectReference(kind="Pod", namespace="baz", name=f"p{number}")
        rec.event(ref, models.NORMAL, reason, "text")
    assert b.flush(5)
    assert [getattr(r, "object", "") for r in records] == ["baz/p0", "baz/p2"]
    assert len(fake.events) == 3
    stats = dict(b.stats())
    assert (stats["created"], stats["failed"], stats["dropped"]) == (3, 0, 0)
    (report,) = [r for r in caplog.records if r.name == "k8s_logging_events"]
    assert report.getMessage() == "Event watcher failed: RuntimeError('a filter with a bug')"
    assert report.levelno == logging.ERROR


class _Blocked(logging.Handler):
    """A handler whose first line blocks until released, as a write to standard error piped
    to a reader that stopped reading; it keeps the ``object`` of each line it wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.unblock = threading.Event(), threading.Event()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.unblock.wait(60)  # bounded: a broken test must not hang the suite
        self.seen.append(str(record.__dict__.get("object", "")))


@contextlib.contextmanager
def _blocked_structured_logging(
    b: recorder.EventBroadcaster, name: str, *also: logging.Logger
) -> Iterator[tuple[_Blocked, recorder.EventRecorder]]:
    """Structured logging of ``b`` on logger ``name`` (and the handler on ``also``), blocked in
    its first line, which the recorder it yields has just logged; released and removed after."""
    blocked = _Blocked()
    target = logging.getLogger(name)
    target.propagate = False
    target.setLevel(logging.DEBUG)
    for logger in (target, *also):
        logger.addHandler(blocked)
    try:
        b.start_structured_logging(target, logging.INFO)
        rec = b.new_recorder("c")
        rec.event(
            models.ObjectReference(kind="Pod", namespace="baz", name="p0"), "Normal", "A", "x"
        )
        assert blocked.entered.wait(30), "the structured line was never written"
        yield blocked, rec
    finally:
        blocked.unblock.set()
        assert b.flush(5)
        for logger in (target, *also):
            logger.removeHandler(blocked)


def _started(rec: recorder.EventRecorder, number: int) -> None:
    ref = models.ObjectReference(kind="Pod", namespace="baz", name=f"p{number}")
    rec.event(ref, models.NORMAL, "Started", "text")


def test_a_structured_logging_target_that_blocks_holds_up_no_sink(make_broadcaster) -> None:
    """Structured logging ran on the dispatcher: a handler of its target that blocks (standard
    error piped to a reader that stopped reading) held up every sink's next batch, nothing
    reached the API server. It runs on a watcher thread of its own; the sink's writes go on."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    with _blocked_structured_logging(b, "tests.recorder.structured-blocks") as (_, rec):
        for number in range(1, 4):  # the target's handler is blocked inside its first line
            _started(rec, number)
        assert fake.wait_for_calls(4, timeout=30), fake.calls  # four creates, none held up
    assert dict(b.stats())["created"] == 4


def test_a_watcher_that_falls_behind_loses_lines_said_and_counted(make_broadcaster, caplog) -> None:
    """A blocked structured logging target, ``queue_length`` events behind: the events it
    cannot take are dropped for it alone, counted as ``watcher_dropped`` and said with their
    number and the watcher's queue_length (once, then summed at the flush); the sink gets
    every one."""
    caplog.set_level(logging.DEBUG, logger="k8s_logging_events")
    b = make_broadcaster(queue_length=4)
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    with _blocked_structured_logging(b, "tests.recorder.structured-behind") as (blocked, rec):
        for number in range(1, 13):
            _started(rec, number)
            assert fake.wait_for_calls(number + 1, timeout=30), fake.calls
    stats = dict(b.stats())
    assert stats["created"] == 13
    assert stats["watcher_dropped"] == 13 - len(blocked.seen) > 0, (stats, blocked.seen)
    reports = [r.getMessage() for r in caplog.records if "watcher_dropped" in r.getMessage()]
    assert reports[0].startswith(
        "An event watcher (structured logging, or start_event_watcher"
        "'s handler) is 4 events behind (queue_length)"
    ), reports
    # a line per batch, not per drop; the last (or the flush's summary) gives the total
    missed = stats["watcher_dropped"]
    if len(reports) == 1:
        assert reports[0].endswith(f"; {missed} occurrence(s) missed by the watcher"), reports
    else:
        assert f"({missed} occurrence(s) in all)]" in reports[-1], reports


def test_a_watcher_behind_a_blocked_stream_is_said_where_no_sink_waits(make_broadcaster) -> None:
    """Standard error piped to a reader that stopped: structured logging blocks in its line,
    falls ``queue_length`` behind, and the library's report that says so goes to the same
    stream (here: the same blocked handler on the library's logger). Said on the dispatcher,
    that report held up every sink, as structured logging once did; the watcher says it on
    its own thread, and the sink gets every write meanwhile."""
    b = make_broadcaster(queue_length=4)
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    library = logging.getLogger("k8s_logging_events")
    written = True
    with _blocked_structured_logging(b, "tests.recorder.structured-stream", library) as (_, rec):
        for number in range(1, 13):  # one at a time: no write waits, so none is dropped
            _started(rec, number)
            if not (written := fake.wait_for_calls(number + 1, timeout=30)):
                break
    assert written, fake.calls
    assert dict(b.stats())["watcher_dropped"] > 0


def test_structured_logging_without_a_logger_writes_one_json_line(
    make_broadcaster, monkeypatch
) -> None:
    """The default structured watcher prints one JSON object per event to stderr."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    b = make_broadcaster()
    b.start_structured_logging()
    ref = models.ObjectReference(kind="Node", name="n1", api_version="v1")
    b.new_recorder("c").event(ref, models.NORMAL, "Ready", "node is ready")
    assert b.flush(5)
    (line,) = stream.getvalue().splitlines()
    data = json.loads(line)
    assert data == {
        "msg": "Event occurred",
        "object": "n1",
        "fieldPath": "",
        "kind": "Node",
        "apiVersion": "v1",
        "type": "Normal",
        "reason": "Ready",
        "message": "node is ready",
    }


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# --- client-go's TestWriteEventError ---------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (sink.RequestConstructionError("bad body"), 1),
        (sink.ApiStatusError(422, "Invalid", "no"), 1),
        (sink.ApiStatusError(409, "AlreadyExists", "exists"), 1),
        (sink.ApiStatusError(403, "Forbidden", "terminating", causes=["NamespaceTerminating"]), 1),
        (ConnectionResetError("reset"), 12),
        (RuntimeError("unexpected object"), 12),
    ],
    ids=[
        "construction",
        "invalid",
        "already-exists",
        "namespace-terminating",
        "transport",
        "other",
    ],
)
def test_permanent_errors_are_tried_once_and_others_twelve_times(
    make_broadcaster, error, attempts
) -> None:
    """Which failures are given up at once and which are retried up to twelve attempts
    (by a sink without ``read``, as client-go's EventSink: AlreadyExists is final)."""
    b = make_broadcaster()
    fake = FakeEventSink()
    fake.fail_next("create", error, times=100)
    b.start_recording_to_sink(WithoutRead(fake))
    b.new_recorder("c").event(_pod(), models.WARNING, "Failed", "x")
    assert b.flush(5)
    assert len(fake.calls) == attempts
    assert b.stats()["failed"] == 1


def test_retryable_status_codes_are_retried(make_broadcaster) -> None:
    """Unlike client-go, 429 and 5xx are retried: the write lands on the third attempt."""
    b = make_broadcaster()
    fake = FakeEventSink()
    fake.fail_next("create", sink.ApiStatusError(503, "ServiceUnavailable"))
    fake.fail_next("create", sink.ApiStatusError(429, "TooManyRequests"))
    b.start_recording_to_sink(fake)
    b.new_recorder("c").event(_pod(), models.WARNING, "Failed", "x")
    assert b.flush(5)
    assert [c.method for c in fake.calls] == ["create"] * 3
    assert len(fake.events) == 1
    assert b.stats()["created"] == 1


def test_one_transport_error_then_success_makes_two_attempts(make_broadcaster) -> None:
    """A plain error once, then success: exactly two attempts."""
    b = make_broadcaster()
    fake = FakeEventSink()
    fake.fail_next("create", OSError("refused"))
    b.start_recording_to_sink(fake)
    b.new_recorder("c").event(_pod(), models.WARNING, "Failed", "x")
    assert b.flush(5)
    assert len(fake.calls) == 2
    assert b.stats()["created"] == 1


def test_the_retry_schedule_is_a_random_first_sleep_then_fixed(make_broadcaster) -> None:
    """Eleven back-offs: sleep_duration times the random number, then sleep_duration (the
    flush that waits for them has a minute, on the test's clock an instant: each back-off
    ends well before halfway to its deadline, where a flush tries a retry at the latest)."""
    clock = FakeClock(START)
    b = make_broadcaster(clock=clock, sleep=clock.sleep, sleep_duration=10.0, rng=lambda: 0.25)
    fake = FakeEventSink()
    fake.fail_next("create", OSError("refused"), times=100)
    b.start_recording_to_sink(fake)
    b.new_recorder("c").event(_pod(), models.WARNING, "Failed", "x")
    assert b.flush(60)
    assert len(fake.calls) == 12
    assert [round(s, 6) for s in clock.sleeps] == [2.5] + [10.0] * 10


def _one_argument_sleep(seconds: float) -> None:
    """A sleep written for ``time.sleep``'s shape, not the writer's ``(seconds, cancel)``."""


@pytest.mark.parametrize("sleep", [time.sleep, _one_argument_sleep], ids=["time.sleep", "one"])
def test_a_broadcaster_refuses_a_sleep_of_another_shape(sleep: object) -> None:
    """``EventBroadcaster(sleep=time.sleep)`` (or any function not of ``(seconds, cancel)``)
    made the dispatcher fail every wait in a hot loop, tens of thousands of reports a second,
    and the first retried event stayed pending until exit. It is refused as the handler
    refuses it: a ValueError naming the option, before any thread starts."""
    with pytest.raises(ValueError, match="sleep"):
        recorder.EventBroadcaster(sleep=sleep)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "given", ["http://127.0.0.1:6443", None, object()], ids=["url", "none", "object"]
)
def test_recording_to_something_that_is_no_sink_is_refused(make_broadcaster, given) -> None:
    """``start_recording_to_sink("http://...")`` (the handler's ``sink=`` takes a URL) was
    taken: every event then failed twelve times ('str' object has no attribute 'create') and
    was lost. What is no EventSink (create, update, patch) is a TypeError at the call, as the
    handler refuses it, and the broadcaster records to nothing new."""
    b = make_broadcaster()
    with pytest.raises(TypeError, match="EventSink"):
        b.start_recording_to_sink(given)
    b.new_recorder("c").event(_pod(), models.NORMAL, "Started", "x")
    assert b.flush(5)
    assert b.stats()["failed"] == 0


@pytest.mark.parametrize(
    "source", [None, {"component": "ctl"}, 5], ids=["none", "mapping", "number"]
)
def test_a_recorder_for_a_source_that_is_no_event_source_is_refused(
    make_broadcaster, source
) -> None:
    """``new_recorder`` takes a component name or an EventSource. Anything else was taken,
    and every event of that recorder then failed on the dispatcher ('NoneType' object has no
    attribute 'component') and was lost; it is a TypeError at the call."""
    b = make_broadcaster()
    with pytest.raises(TypeError, match="EventSource"):
        b.new_recorder(source)


@pytest.mark.parametrize(
    "start",
    [
        lambda b: b.start_event_watcher(None),
        lambda b: b.start_logging("events.log"),
        lambda b: b.start_structured_logging("my.events"),
    ],
    ids=["watcher", "logging", "structured"],
)
def test_a_watcher_of_something_it_cannot_call_is_refused(make_broadcaster, start) -> None:
    """A handler or ``logf`` that is not callable, or a logger name where a Logger goes, was
    taken and failed at every event (reported each time, never one line written). It is a
    TypeError when the watcher is started, and no watcher thread is left behind."""
    b = make_broadcaster()
    with pytest.raises(TypeError):
        start(b)
    b.new_recorder("c").event(_pod(), models.NORMAL, "Started", "x")
    assert b.flush(5)
    assert not [t for t in b.threads() if "watcher" in t.name]


class _Delegating:
    """A sink that hands every call to another one through ``__getattr__`` (a wrapper that
    counts or traces calls, as a user writes one)."""

    def __init__(self, inner: FakeEventSink) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_sink_whose_methods_are_found_only_on_access_is_a_sink(make_broadcaster) -> None:
    """``isinstance`` on the EventSink protocol looks methods up statically from Python 3.12:
    a ``MagicMock`` or a wrapper that delegates through ``__getattr__`` is no EventSink there,
    yet writes every event. Both are taken on every Python, and events reach them."""
    b = make_broadcaster()
    fake, mocked = FakeEventSink(), mock.MagicMock()
    mocked.create.side_effect = lambda event: event  # a sink returns what it stored
    b.start_recording_to_sink(_Delegating(fake))
    b.start_recording_to_sink(mocked)
    b.new_recorder("c").event(_pod(), models.NORMAL, "Started", "x")
    assert b.flush(5)
    assert [e.message for e in fake.events] == ["x"]
    assert mocked.create.call_count == 1


def test_a_sink_class_rather_than_an_instance_is_refused(make_broadcaster) -> None:
    """``start_recording_to_sink(FakeEventSink)`` (the class, its instance forgotten) has
    ``create``/``update``/``patch`` that can never be called without an instance: it raises
    TypeError at the call instead of failing every event's write."""
    b = make_broadcaster()
    with pytest.raises(TypeError, match="EventSink"):
        b.start_recording_to_sink(FakeEventSink)


def test_retry_after_is_honoured(make_broadcaster) -> None:
    """A 429 asking for 2 s is waited out even when the schedule says less."""
    clock = FakeClock(START)
    b = make_broadcaster(clock=clock, sleep=clock.sleep, sleep_duration=0.0)
    fake = FakeEventSink()
    fake.fail_next("create", sink.ApiStatusError(429, "TooManyRequests", retry_after=2.0))
    b.start_recording_to_sink(fake)
    b.new_recorder("c").event(_pod(), models.WARNING, "Failed", "x")
    assert b.flush(5)
    assert clock.sleeps == [2.0]
    assert len(fake.events) == 1


def test_a_sleep_given_alone_waits_out_retry_after_in_one_call() -> None:
    """``sleep=`` without a ``clock=`` that it moves (a stub that records, say): an uncut
    sleep has waited its seconds. The writer asked again until real time had passed: some
    60,000 calls and 2 s of busy loop for one Retry-After: 2."""
    asked: list[float] = []

    def record(seconds: float, cancel: threading.Event) -> bool:
        asked.append(seconds)
        return False

    b = recorder.EventBroadcaster(sleep=record)
    with LocalApiServer() as server, sink.KubernetesEventSink(server.api_client()) as s:
        server.inject("POST", status=429, retry_after=2)
        b.start_recording_to_sink(s)
        b.new_recorder("c").event(_pod(namespace="default"), models.WARNING, "Failed", "x")
        try:
            assert b.flush(10)
        finally:
            b.shutdown(5)
        # one call for the whole wait: Retry-After less the real time since the answer
        assert len(asked) == 1, asked
        assert 1.5 < asked[0] <= 2.0, asked
        assert len(server.events()) == 1


# --- client-go's TestUpdateExpiredEvent ------------------------------------------------------


def test_a_patch_answered_not_found_becomes_a_create_with_the_count(make_broadcaster) -> None:
    """The event expired on the server: it is created again, resourceVersion cleared."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("c")
    rec.event(_pod(), models.WARNING, "BackOff", "x")
    assert b.flush(5)
    fake._stored.clear()  # the server's TTL removed it
    rec.event(_pod(), models.WARNING, "BackOff", "x")
    assert b.flush(5)
    assert [c.method for c in fake.calls] == ["create", "patch", "create"]
    recreated = fake.calls[-1].event
    assert recreated.count == 2
    assert recreated.resource_version == ""
    assert (b.stats()["created"], b.stats()["patched"]) == (2, 0)


# --- client-go's TestEventfNoNamespace and the recorder's own rules ---------------------------


def test_cluster_scoped_objects_get_events_in_default(make_broadcaster) -> None:
    """No namespace on the object: the event lives in 'default', the reference keeps ''."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    b.new_recorder("c").event(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}},
        models.NORMAL,
        "Ready",
        "x",
    )
    assert b.flush(5)
    (event,) = fake.events
    assert event.namespace == "default"
    assert event.involved_object.namespace == ""


def test_event_names_stay_unique_when_the_clock_does_not_move(make_broadcaster) -> None:
    """Two events in the same clock instant get different names (no AlreadyExists)."""
    b = make_broadcaster(clock=FakeClock(START))
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("c")
    rec.event(_pod(), models.NORMAL, "A", "x")
    rec.event(_pod(), models.NORMAL, "B", "x")
    assert b.flush(5)
    names = [e.name for e in fake.events]
    assert len(set(names)) == 2
    assert all(correlator.is_dns_subdomain(n) for n in names)


def test_invalid_names_fall_back_to_a_uuid(make_broadcaster) -> None:
    """An object name that is not a DNS subdomain gives a UUID event name."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    b.new_recorder("c").event(_pod(name="Not_Valid"), models.NORMAL, "A", "x")
    assert b.flush(5)
    (event,) = fake.events
    assert len(event.name) == 36
    assert event.name.count("-") == 4


class _Unrepresentable:
    """A value whose ``repr()`` raises (a broken proxy, a half-built object)."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("obj", "type_", "fragment"),
    [
        ("my-pod", models.NORMAL, "cannot refer to str"),
        ({"metadata": {"name": "x"}}, models.NORMAL, "it has no kind"),
        (_pod(), "Error", "Unsupported event type: 'Error'"),
        (
            {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "n"}},
            models.NORMAL,
            "event about Event",
        ),
        (
            {"apiVersion": "v1", "kind": "event", "metadata": {"name": "e", "namespace": "n"}},
            models.NORMAL,
            "event about Event",
        ),
        (_pod(), _Unrepresentable(), "Unsupported event type: <a _Unrepresentable"),
    ],
    ids=[
        "string",
        "no-kind",
        "bad-type",
        "event-about-event",
        "event-in-another-case",
        "type-whose-repr-raises",
    ],
)
def test_invalid_input_is_reported_on_the_library_logger_and_makes_no_event(
    make_broadcaster, caplog, obj, type_, fragment
) -> None:
    """Bad objects and types never raise into the caller: a message and no event."""
    caplog.set_level(logging.DEBUG, logger="k8s_logging_events")
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    b.new_recorder("c").event(obj, type_, "Reason", "x")
    assert b.flush(5)
    assert fake.calls == []
    assert any(
        fragment in r.getMessage() and r.name == "k8s_logging_events" for r in caplog.records
    )
    assert b.stats()["invalid"] == 1
    assert b.stats()["accepted"] == 0


@pytest.mark.parametrize(
    ("reason", "message", "action", "fragment"),
    [
        (5, "x", "", "reason must be a str, not int"),
        (None, "x", "", "reason must be a str, not NoneType"),
        ("R", None, "", "message must be a str, not NoneType"),
        ("R", b"bytes", "", "message must be a str, not bytes"),
        ("R", "x", 7, "action must be a str, not int"),
    ],
    ids=["int-reason", "no-reason", "no-message", "bytes-message", "int-action"],
)
def test_a_reason_message_or_action_that_is_no_string_is_invalid_input(
    make_broadcaster, caplog, reason, message, action, fragment
) -> None:
    """A recorder's text fields are strings (client-go's types say so): another value is the
    caller's mistake, reported on the library's logger and counted ``invalid`` when it is
    recorded, never a ``failed`` write found later on the broadcaster's thread, nor an
    event with a number where the API wants text."""
    caplog.set_level(logging.DEBUG, logger="k8s_logging_events")
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    assert (
        b.new_recorder("c").record(_pod(), models.WARNING, reason, message, action=action) is False
    )
    assert b.flush(5)
    assert fake.calls == []
    assert any(fragment in r.getMessage() for r in caplog.records), caplog.text
    assert b.stats()["invalid"] == 1
    assert b.stats()["accepted"] == 0
    assert b.stats()["failed"] == 0


def test_a_bad_format_string_is_reported_not_raised(make_broadcaster, caplog) -> None:
    """eventf with arguments that do not fit the format reports and records nothing."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    b.new_recorder("c").eventf(_pod(), models.NORMAL, "R", "%d items", "not a number")
    assert b.flush(5)
    assert fake.calls == []
    assert any("Unable to format" in r.getMessage() for r in caplog.records)


def test_a_bad_format_string_is_quoted_short_in_its_report(make_broadcaster, caplog) -> None:
    """The report of a format that does not fit its arguments quoted the whole format: a
    2 MB template made a 2 MB line on the library's logger. It quotes the start, as every
    report of bad input does."""
    b = make_broadcaster()
    b.start_recording_to_sink(FakeEventSink())
    b.new_recorder("c").eventf(_pod(), models.NORMAL, "R", "%d " + "x" * 2_000_000, "many")
    assert b.flush(5)
    (report,) = [r.getMessage() for r in caplog.records if "Unable to format" in r.getMessage()]
    assert "%d xxx" in report
    assert len(report) < 1000
    assert b.stats()["invalid"] == 1


def test_a_pod_without_a_namespace_is_filed_in_default_and_reported(
    make_broadcaster, caplog
) -> None:
    """The recorder keeps the handler's rule: a namespaced built-in object without a
    namespace is filed in 'default' (object and event), and that is reported."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("c")
    for _ in range(3):
        rec.event(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}},
            models.WARNING,
            "BackOff",
            "Back-off",
        )
    assert b.flush(5)
    (event,) = fake.events
    assert (event.namespace, event.involved_object.namespace, event.count) == (
        "default",
        "default",
        3,
    )
    reports = [r.getMessage() for r in caplog.records if "has no namespace" in r.getMessage()]
    assert len(reports) == 2  # the first, then the flush's summary of the two held back
    assert "2 report(s) like this" in reports[1]


def test_a_recorders_default_namespace_never_takes_a_cluster_scoped_objects_event(
    make_broadcaster,
) -> None:
    """default_namespace files namespaced objects that lack one; an event about an object
    without a namespace (a Node, a Namespace, a custom kind) still goes to 'default', the
    only namespace the API server accepts it in, as in client-go's recorder."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    rec = recorder.EventRecorder(b, models.EventSource("c"), default_namespace="shop")
    rec.event({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, "Normal", "A", "m")
    for kind, api_version in (("Node", "v1"), ("Namespace", "v1"), ("Widget", "example.com/v1")):
        rec.event(
            {"apiVersion": api_version, "kind": kind, "metadata": {"name": "n"}},
            "Normal",
            kind,
            "m",
        )
    assert b.flush(5)
    # four objects, four events, written by parallel writers: in any order
    assert sorted((e.reason, e.namespace, e.involved_object.namespace) for e in fake.events) == [
        ("A", "shop", "shop"),
        ("Namespace", "default", ""),
        ("Node", "default", ""),
        ("Widget", "default", ""),
    ]


def test_a_cluster_scoped_object_given_a_namespace_is_reported_where_its_event_goes(
    make_broadcaster, caplog
) -> None:
    """A Node given a namespace by mistake, through a recorder whose default_namespace is
    'shop': the object loses the namespace and its event goes to 'default' (the only
    namespace the server takes it in), and the warning names 'default', where the event
    is, never the recorder's default_namespace, where nobody will find it."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    rec = recorder.EventRecorder(b, models.EventSource("c"), default_namespace="shop")
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "x"}}
    rec.event(node, "Normal", "Rebooted", "m")
    assert b.flush(5)
    (event,) = fake.events
    assert (event.namespace, event.involved_object.namespace) == ("default", "")
    (report,) = [r.getMessage() for r in caplog.records if "cluster-scoped" in r.getMessage()]
    assert "filed in namespace 'default'" in report, report
    assert "'shop'" not in report, report


def test_annotated_eventf_carries_annotations_on_the_create(make_broadcaster) -> None:
    """Annotations go on the created event's metadata."""
    b = make_broadcaster()
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    b.new_recorder("c").annotated_eventf(_pod(), {"a": "1"}, models.NORMAL, "R", "n=%d", 3)
    assert b.flush(5)
    (event,) = fake.events
    assert dict(event.annotations) == {"a": "1"}
    assert event.message == "n=3"


@pytest.mark.parametrize("api", [sink.CORE_V1, sink.EVENTS_V1])
@pytest.mark.parametrize(
    "annotations",
    [{"a/b/c": "d"}, {"bad key!": "x"}, {"a" * 64: "x"}, {"ok": 6}, {"ok": "v" * 300_000}, "ok"],
    ids=["two-slashes", "space", "name-too-long", "not-a-string", "over-256KiB", "no-mapping"],
)
def test_annotations_the_server_would_refuse_are_invalid_input_and_no_request(
    make_broadcaster, k8s_apiserver, caplog, api, annotations
) -> None:
    """An annotation the API server refuses (a key that is no qualified name, a value that
    is no string, more than 256 KiB in all, a str for the mapping) is the caller's mistake,
    like any other bad input of a recorder: reported as one, and counted ``invalid``, when
    it is recorded. It once went out as a create answered 422 (400 for a number), counted
    ``failed`` on the broadcaster's thread; a str was reported as "'str' object has no
    attribute 'items'"."""
    caplog.set_level(logging.DEBUG, logger="k8s_logging_events")
    b = make_broadcaster()
    with (
        k8s_apiserver.api_client() as api_client,
        contextlib.closing(sink.KubernetesEventSink(api_client, qps=0, api=api)) as events_sink,
    ):
        b.start_recording_to_sink(events_sink)
        b.new_recorder("c").annotated_eventf(
            _pod(namespace="default"), annotations, "Normal", "R", "m"
        )
        assert b.flush(5)
    assert [r.status for r in k8s_apiserver.requests if r.method == "POST"] == []
    assert b.stats()["invalid"] == 1
    assert b.stats()["failed"] == 0
    assert any("annotation" in r.getMessage() for r in caplog.records), caplog.text


class _RaisingNode:
    """A related object whose attributes raise, as a lazily loaded proxy's may."""

    kind = "Node"

    @property
    def metadata(self) -> object:
        raise KeyError("not loaded")


def test_a_related_object_that_cannot_be_read_costs_only_the_link(
    make_broadcaster, k8s_apiserver
) -> None:
    """Seen before the fix: a ``related`` object whose attribute raised (anything but an
    invalid object) lost the whole occurrence, refused as "Unable to record event" and
    counted ``invalid``. Like any bad secondary object (and as the handler does), it now
    costs only the link: the event is written without ``related``."""
    b = make_broadcaster()
    with (
        k8s_apiserver.api_client() as api_client,
        contextlib.closing(sink.KubernetesEventSink(api_client, qps=0)) as events_sink,
    ):
        b.start_recording_to_sink(events_sink)
        rec = b.new_recorder("c")
        assert rec.record(_pod(namespace="default"), "Warning", "R", "m", related=_RaisingNode())
        assert b.flush(5)
    [stored] = k8s_apiserver.events("default")
    assert (stored["reason"], "related" in stored, b.stats()["invalid"]) == ("R", False, 0)


# --- client-go's TestMultiSinkCache ----------------------------------------------------------


def test_each_sink_has_its_own_correlator(make_broadcaster) -> None:
    """A second sink started later counts from 1 again."""
    b = make_broadcaster()
    first, second = FakeEventSink(), FakeEventSink()
    b.start_recording_to_sink(first)
    rec = b.new_recorder("c")
    rec.event(_pod(), models.NORMAL, "R", "x")
    rec.event(_pod(), models.NORMAL, "R", "x")
    assert b.flush(5)
    b.start_recording_to_sink(second)
    rec.event(_pod(), models.NORMAL, "R", "x")
    assert b.flush(5)
    assert first.events[0].count == 3
    assert second.events[0].count == 1


# --- client-go's TestLotsOfEvents --------------------------------------------------------------


def test_many_failing_events_all_arrive_and_are_counted(make_broadcaster) -> None:
    """1000 events from many threads, each failing 4 times: all 1000 are written, none lost."""
    b = make_broadcaster()
    fake = FakeEventSink()
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def flaky(event: models.Event) -> None:
        with lock:
            attempts[event.name] = attempts.get(event.name, 0) + 1
            if attempts[event.name] <= 4:
                raise OSError("try again")

    fake.on_create = flaky
    logged: list[str] = []
    b.start_logging(logged.append)
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("c")
    threads = [
        threading.Thread(
            target=lambda i=i: rec.event(_pod(name=f"p{i}", uid=f"u{i}"), models.NORMAL, "R", "x")
        )
        for i in range(1000)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.flush(30)
    assert len(fake.events) == 1000
    assert len(logged) == 1000
    assert all(n >= 5 for n in attempts.values())
    stats = b.stats()
    assert stats["accepted"] == 1000 == stats["created"]


# --- shutdown ---------------------------------------------------------------------------------


def test_shutdown_leaves_no_thread_and_later_events_are_counted_drops(
    make_broadcaster, caplog
) -> None:
    """After shutdown nothing runs, and an event recorded later is a counted, logged drop;
    the line names what was shut down, the broadcaster (a recorder has no shutdown)."""
    b = make_broadcaster()
    b.start_recording_to_sink(FakeEventSink())
    b.start_logging(lambda line: None)
    rec = b.new_recorder("c")
    rec.event(_pod(), models.NORMAL, "R", "x")
    b.shutdown(timeout=5)
    b.shutdown(timeout=5)  # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("k8s-events")]
    rec.event(_pod(), models.NORMAL, "R", "x")
    assert b.stats()["dropped"] == 1
    assert [r.getMessage() for r in caplog.records if "shut down" in r.getMessage()] == [
        "Unable to record an event: its broadcaster was shut down (will not retry); "
        "1 occurrence(s) dropped"
    ]


def test_shutdown_without_a_time_limit_stops_every_thread(make_broadcaster, caplog) -> None:
    """``shutdown(timeout=float("inf"))``, "take as long as it needs", wrote what was pending
    and then failed to join its threads (OverflowError: timestamp out of range), said as
    "Unable to shut down cleanly" and leaving a writer running. It waits at most what a wait
    can take, and stops cleanly."""
    b = make_broadcaster()
    b.start_recording_to_sink(fake := FakeEventSink())
    b.new_recorder("c").event(_pod(), models.NORMAL, "R", "x")
    b.shutdown(timeout=math.inf)
    assert len(fake.events) == 1
    assert b.threads() == []
    assert not [r for r in caplog.records if "Unable to shut down" in r.getMessage()]


@pytest.mark.parametrize("timeout", ["5", True, 10**400], ids=["text", "bool", "huge"])
def test_shutdown_with_a_timeout_that_is_no_number_still_stops_every_thread(
    make_broadcaster, caplog, timeout: object
) -> None:
    """``shutdown("5")`` (text) or ``shutdown(10**400)`` failed inside the close it had begun:
    "Unable to shut down cleanly", the threads left running, and every later ``shutdown()``
    returned at once, so nothing could stop them. Text (or a bool) is said and waits the
    default 5 s; a huge number waits what a wait can take. Either way nothing runs after."""
    b = make_broadcaster()
    b.start_recording_to_sink(fake := FakeEventSink())
    b.new_recorder("c").event(_pod(), models.NORMAL, "R", "x")
    b.shutdown(timeout)
    assert len(fake.events) == 1
    assert b.threads() == []
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "Unable to shut down" in m]
    said = [m for m in messages if "shutdown() waits a number of seconds" in m]
    assert len(said) == (0 if timeout == 10**400 else 1), messages


def test_flush_and_shutdown_take_a_fraction_of_a_second_as_any_number(caplog) -> None:
    """A Fraction is a real number, as for every option: ``flush(Fraction(1, 5))`` raised
    TypeError into the caller when it ran out of time (its report formatted the Fraction as a
    float), and ``shutdown(Fraction(1, 5))`` was told "waits a number of seconds, not
    Fraction(1, 5)" and waited 5 s. Both wait the fifth of a second asked."""
    fifth: Any = fractions.Fraction(1, 5)  # typed float, as numbers.Real cannot be
    b = recorder.EventBroadcaster()
    b.start_recording_to_sink(hanging := SetUpHangs())
    b.new_recorder("c").event(_pod(), models.NORMAL, "R", "x")
    try:
        assert hanging.asked.wait(10)
        assert b.flush(fifth) is False
        b.shutdown(fifth)
    finally:
        hanging.gate.set()
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "within the flush's 0.2 s" in m], messages
    assert not [m for m in messages if "waits a number of seconds" in m], messages
    assert b.stats()["failed"] == 1


def test_shutdown_with_a_failing_sink_gives_up_and_accounts_for_everything(
    make_broadcaster,
) -> None:
    """Pending writes at the deadline are abandoned and counted as failed."""
    b = make_broadcaster(sleep=None, sleep_duration=60.0)  # real, long back-offs
    fake = FakeEventSink()
    fake.fail_next("create", OSError("down"), times=1000)
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("c")
    for i in range(5):
        rec.event(_pod(name=f"p{i}"), models.NORMAL, "R", "x")
    # each write failed once and waits out its back-off: pending, not still queued (what a
    # busy machine's dispatcher has not taken by the deadline is dropped, not failed)
    assert fake.wait_for_calls(5, timeout=10)
    b.shutdown(timeout=0.5)
    stats = b.stats()
    assert stats["accepted"] == 5
    assert stats["failed"] == 5
    assert stats["pending"] == 0


def test_concurrent_events_and_shutdown_do_not_race(make_broadcaster) -> None:
    """client-go's NonRacyShutdown: 100 concurrent events then shutdown, no exception."""
    b = make_broadcaster()
    b.start_recording_to_sink(FakeEventSink())
    rec = b.new_recorder("c")
    errors: list[BaseException] = []

    def record() -> None:
        try:
            rec.event(_pod(), models.NORMAL, "R", "x")
        except BaseException as e:  # pragma: no cover - the test fails if this runs
            errors.append(e)

    threads = [threading.Thread(target=record) for _ in range(100)]
    for t in threads:
        t.start()
    b.shutdown(timeout=5)
    for t in threads:
        t.join()
    assert errors == []
    stats = b.stats()
    assert stats["accepted"] == 100
    assert sum(stats[k] for k in ("dropped", "created", "patched", "coalesced", "failed")) == 100


def test_a_fresh_broadcaster_names_its_first_event_from_the_time_alone() -> None:
    """client-go's name, exactly: under FakeClock(t) the first event about foo is named
    foo.<hex of t in nanoseconds>, whatever other broadcasters named before in this
    process; a second one at the same instant gets one nanosecond more."""
    start = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    nanos = int(start.timestamp()) * 1_000_000_000 + 123456 * 1000
    for _ in range(2):  # a second broadcaster in the same process names the same way
        clock = FakeClock(start)
        b = recorder.EventBroadcaster(clock=clock, sleep=clock.sleep)
        fake = FakeEventSink()
        try:
            b.start_recording_to_sink(fake)
            rec = b.new_recorder("ctl")
            ref = models.ObjectReference(kind="Pod", namespace="ns", name="foo", api_version="v1")
            rec.event(ref, models.NORMAL, "First", "one")
            rec.event(ref, models.NORMAL, "Second", "two")
            assert b.flush(5)
        finally:
            b.shutdown(2)
        assert [e.name for e in fake.events] == [f"foo.{nanos:x}", f"foo.{nanos + 1:x}"]


def test_the_recorder_is_client_gos_surface_and_no_pass_through() -> None:
    """EventRecorder records from client-go's calls; the handler, which checks its own
    occurrences, queues them through the broadcaster's offer taken once, not through a
    recorder method that only forwards."""
    assert not hasattr(recorder.EventRecorder, "offer")
    assert not hasattr(recorder.EventRecorder, "now")
    for name in ("event", "eventf", "annotated_eventf"):
        assert callable(getattr(recorder.EventRecorder, name))


@pytest.mark.parametrize(
    ("api", "field"),
    [("v1", "message"), ("v1", "reason"), ("events.k8s.io/v1", "action")],
)
def test_a_text_with_a_lone_surrogate_is_kept_as_the_server_stores_it(api: str, field: str) -> None:
    """Seen before the fix: a recorder's message (reason, action) holding a lone surrogate
    (a file name read with surrogateescape) was stored as U+FFFD but kept as the surrogate,
    so a create whose answer was lost met AlreadyExists, read the stored event, took it for
    another's (its key differed) and wrote a second: the occurrence shown twice. The
    recorder keeps its texts as the server stores them, and the retry finds its own event."""
    texts = {"reason": "Failed", "message": "bad file", "action": "Read"}
    texts[field] += "\udc80"
    clock = FakeClock(datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    b = recorder.EventBroadcaster(clock=clock, sleep=clock.sleep)
    with LocalApiServer(clock=clock) as server, server.api_client() as api_client:
        server.inject(method="POST", action="drop", commit=True)
        events_sink = sink.KubernetesEventSink(api_client, qps=0, api=api)
        try:
            b.start_recording_to_sink(events_sink)
            ref = models.ObjectReference(kind="Pod", namespace="default", name="web-0")
            b.new_recorder("ctl").record(
                ref, models.WARNING, texts["reason"], texts["message"], action=texts["action"]
            )
            assert b.flush(20)
        finally:
            b.shutdown(5)
            events_sink.close()
        (stored,) = server.events()
    assert stored[field].endswith("\ufffd")


# --- the clock occurrences are observed on ---------------------------------------------------


def _tenth_distinct_message_after_a_step(
    rec: recorder.EventRecorder, b: recorder.EventBroadcaster, clock: FakeClock
) -> str:
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    for i in range(9):
        rec.event(_pod(), models.NORMAL, "Scaled", f"to {i}")
    assert b.flush(5)
    clock.step(700)  # past the 10-minute window of the messages before
    rec.event(_pod(), models.NORMAL, "Scaled", "to 9")
    assert b.flush(5)
    return fake.calls[-1].event.message


def test_a_recorder_with_a_clock_of_its_own_measures_on_the_broadcasters(
    make_broadcaster,
) -> None:
    """``EventRecorder(broadcaster, source)`` dates its events on its own (system) clock, but
    the broadcaster's correlator measures its window on the broadcaster's FakeClock: a step
    past the window starts a new one (the recorder's monotonic seconds had kept it open)."""
    clock = FakeClock(START)
    b = make_broadcaster(clock=clock)
    rec = recorder.EventRecorder(b, models.EventSource("c"))
    assert _tenth_distinct_message_after_a_step(rec, b, clock) == "to 9"


def test_a_correlator_clock_of_its_own_measures_from_when_it_comes_to_each(
    make_broadcaster,
) -> None:
    """``CorrelatorOptions(clock=...)`` other than the broadcaster's: occurrences observed on
    the broadcaster's clock mean nothing on it, so it measures its window on its own clock,
    and a step of it past the window starts a new one."""
    clock = FakeClock(START)
    options = correlator.CorrelatorOptions(clock=clock)
    b = make_broadcaster(clock=None, sleep=None, correlator_options=options)
    rec = b.new_recorder("c")
    assert _tenth_distinct_message_after_a_step(rec, b, clock) == "to 9"


def test_a_type_checker_takes_the_numbers_the_broadcaster_takes_as_text(tmp_path: Path) -> None:
    """The broadcaster's numbers are checked as the handler's are, so a number written as
    text (from the environment) is taken by mypy too, as it is at run time."""
    user, report = mypy_report(
        tmp_path,
        "import os\n"
        "from k8s_logging_events.recorder import EventBroadcaster\n"
        "text = os.environ.get('N', '5')\n"
        "EventBroadcaster(sleep_duration=text, queue_length=text, writers=text, max_tries=text)\n",
        recorder.__file__,
    )
    assert f"{user}:" not in report, report
