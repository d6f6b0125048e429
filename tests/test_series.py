"""events.k8s.io/v1: series semantics, the v1 sink, and the handler's ``api`` option."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from k8s_logging_events import KubernetesEventHandler, models, recorder, series, sink
from k8s_logging_events.testing import FakeClock, LocalApiServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)
POD = models.ObjectReference(
    kind="Pod", namespace="default", name="web-0", uid="u0", api_version="v1"
)


def _event(clock: FakeClock, **changes: Any) -> models.Event:
    now = clock.now()
    values: dict[str, Any] = {
        "name": f"web-0.{models.format_micro_time(now)[-7:-1]}{len(changes)}",
        "namespace": "default",
        "involved_object": POD,
        "reason": "BackOff",
        "message": "Back-off pulling image",
        "source": models.EventSource(component="ctl", host="node-1"),
        "first_timestamp": now,
        "last_timestamp": now,
        "count": 1,
        "type": models.WARNING,
        "action": "Pull",
        "reporting_controller": "ctl",
        "reporting_instance": "node-1",
    }
    values.update(changes)
    return models.Event(**values)


class TestSeriesCorrelator:
    def test_first_creates_second_starts_the_series_later_ones_are_held(self) -> None:
        """client-go's rule: create, then series count 2 at once, then only the cache moves."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        first, held = grouped.observe(_event(clock))
        assert (first.series, held) == (None, False)
        clock.step(1)
        second, held = grouped.observe(_event(clock))
        assert (second.name, second.series, held) == (
            first.name,
            models.EventSeries(2, T0 + timedelta(seconds=1)),
            False,
        )
        clock.step(1)
        third, held = grouped.observe(_event(clock))
        assert third.series == models.EventSeries(3, T0 + timedelta(seconds=2))
        assert held is True

    def test_the_series_is_last_observed_when_its_latest_occurrence_happened(self) -> None:
        """lastObservedTime is the latest occurrence's own time (docs/events-v1.md), not when
        the dispatcher got to it: a burst correlated ten seconds late keeps its times."""
        clock = FakeClock(T0)
        first, second = _event(clock), _event(clock, first_timestamp=T0 + timedelta(seconds=1))
        clock.step(10)  # the dispatcher comes to the burst late
        grouped = series.SeriesCorrelator(clock=clock)
        grouped.observe(first)
        stored, _ = grouped.observe(second)
        assert stored.series == models.EventSeries(2, T0 + timedelta(seconds=1))

    def test_quiet_time_is_measured_from_when_each_occurrence_was_logged(self) -> None:
        """Two occurrences logged five minutes apart are one series, however late the
        dispatcher comes to the second: it measured from when it came to it (ten minutes
        after the first: the series was finished, a new Event made)."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        first, _ = grouped.observe(_event(clock, observed=clock.monotonic()))
        clock.step(300)
        second = _event(clock, observed=clock.monotonic())
        clock.step(300)  # the dispatcher comes to it late
        stored, _ = grouped.observe(second)
        assert (stored.name, stored.series) == (
            first.name,
            models.EventSeries(2, T0 + timedelta(seconds=300)),
        )

    def test_an_occurrence_come_late_does_not_bring_the_finish_forward(self) -> None:
        """Occurrences logged at 0 s and 300 s, then one logged at 100 s that the correlator
        comes to after them (another thread's): the series is due six quiet minutes after
        300 s, not after 100 s (it was written as finished at 460 s, mid-series)."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        grouped.observe(_event(clock, observed=0.0))
        clock.step(300)
        latest = _event(clock, observed=300.0)
        grouped.observe(latest)
        held, _ = grouped.observe(dataclasses.replace(latest, observed=100.0))
        clock.step(160)

        assert grouped.hold_wait(held) == 200.0
        assert not grouped.release(held)

    def test_the_note_is_not_in_the_key_and_the_first_note_is_kept(self) -> None:
        """Different messages form one series; the event keeps its first note."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        grouped.observe(_event(clock, message="one"))
        second, _ = grouped.observe(_event(clock, message="two"))
        assert (second.message, second.series and second.series.count) == ("one", 2)

    @pytest.mark.parametrize(
        "change",
        [
            {"action": "Other"},
            {"reason": "Other"},
            {"type": models.NORMAL},
            {"involved_object": dataclasses.replace(POD, resource_version="7")},
            {"related": models.ObjectReference(kind="Node", name="n1")},
            {"reporting_instance": "node-2"},
        ],
    )
    def test_any_key_field_makes_a_new_event(self, change: dict[str, Any]) -> None:
        """Action, reason, type, the whole object (resourceVersion too) and related are keyed."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        grouped.observe(_event(clock))
        other, held = grouped.observe(_event(clock, **change))
        assert (other.series, held) == (None, False)

    def test_the_series_key_leaves_the_objects_resource_version_out(self) -> None:
        """Under series_key (the handler's, with deterministic names) events about successive
        versions of one object are one series, as in core/v1."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock, key=series.series_key)
        for version in ("6", "7"):
            about = dataclasses.replace(POD, resource_version=version)
            latest, _ = grouped.observe(_event(clock, involved_object=about))
        assert latest.series == models.EventSeries(2, T0)

    def test_a_series_quiet_for_six_minutes_is_released_then_finished(self) -> None:
        """Held occurrences become due six minutes after the last one; then a new Event starts."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        first, _ = grouped.observe(_event(clock))
        grouped.observe(_event(clock))
        third, _ = grouped.observe(_event(clock))
        assert grouped.hold_wait(third) == pytest.approx(360)
        assert grouped.release(third) is False
        clock.step(360.5)
        assert grouped.release(third) is True
        fresh, held = grouped.observe(_event(clock))
        assert (fresh.series, held) == (None, False)
        assert fresh.name != first.name

    def test_a_held_count_of_a_series_that_a_new_one_followed_is_due_at_once(self) -> None:
        """The next occurrence came after six quiet minutes, before the held count of the
        series before it was written: that count is due now, not when the new series is."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        for _ in range(3):
            held, _ = grouped.observe(_event(clock))
        clock.step(370)
        fresh, _ = grouped.observe(_event(clock, name="web-0.later"))
        assert (grouped.hold_wait(held), grouped.release(held)) == (0.0, True)
        assert grouped.release(fresh) is False  # the new series' own time is its own

    def test_an_ongoing_series_is_refreshed_every_thirty_minutes(self) -> None:
        """While occurrences keep coming, the series is due thirty minutes after its last write."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        grouped.observe(_event(clock))
        second, _ = grouped.observe(_event(clock))
        grouped.written(second)
        for _ in range(35):  # one a minute: never quiet for six
            clock.step(60)
            current, _ = grouped.observe(_event(clock))
            if grouped.release(current):
                break
        assert clock.now() - T0 == timedelta(minutes=30)

    def test_singletons_expire_after_six_minutes(self) -> None:
        """An event seen once and again after more than six minutes is a new Event."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        grouped.observe(_event(clock))
        clock.step(361)
        again, held = grouped.observe(_event(clock))
        assert (again.series, held) == (None, False)
        assert len(grouped) == 1

    @pytest.mark.parametrize("wall_step", [-3600.0, 3600.0])
    def test_steps_of_the_wall_clock_neither_finish_nor_stretch_a_series(
        self, wall_step: float
    ) -> None:
        """Finishing is a duration: a wall step (NTP, a resumed VM) changes only the series'
        times, and the held series is due six minutes (monotonic) after its last one."""
        clock = FakeClock(T0)
        grouped = series.SeriesCorrelator(clock=clock)
        first, _ = grouped.observe(_event(clock))
        grouped.observe(_event(clock))
        clock.step_wall(wall_step)
        third, held = grouped.observe(_event(clock))
        assert (third.name, held) == (first.name, True)
        assert third.series == models.EventSeries(3, T0 + timedelta(seconds=wall_step))
        assert grouped.hold_wait(third) == pytest.approx(360)
        assert grouped.release(third) is False
        clock.step(360.5)
        assert grouped.release(third) is True

    def test_the_series_patch_touches_only_the_series(self) -> None:
        """Everything but series is immutable in events.k8s.io/v1."""
        event = _event(FakeClock(T0), series=models.EventSeries(3, T0))
        assert json.loads(series.series_patch(event)) == {
            "series": {"count": 3, "lastObservedTime": "2024-01-01T00:00:00.000000Z"}
        }


class TestPrepareEvent:
    @pytest.mark.parametrize(
        ("component", "expected"),
        [
            ("my-operator", "my-operator"),
            ("example.com/my-operator", "example.com/my-operator"),
            ("My Operator!", "My-Operator"),
            ("", "k8s-logging-events"),
            ("x" * 100, "x" * 63),
        ],
    )
    def test_the_reporting_controller_is_a_qualified_name(
        self, component: str, expected: str
    ) -> None:
        """reportingController must be [prefix/]name with a 63-character name."""
        assert series.qualified_name(component) == expected

    def test_fields_are_cut_to_the_server_limits_and_defaults_filled(self) -> None:
        """Note at most 1024 bytes (UTF-8 safe), action defaulted, eventTime set."""
        event = series.prepare_event(
            _event(FakeClock(T0), message="é" * 2000, action="", reporting_instance="h" * 300)
        )
        assert len(event.message.encode()) <= 1024
        assert event.message.endswith(" ...")
        event.message.encode("utf-8")  # no split character
        assert event.action == series.DEFAULT_ACTION
        assert len(event.reporting_instance) == 128
        assert event.event_time == T0

    def test_a_missing_reporting_instance_is_the_source_host(self) -> None:
        """reportingInstance, which events.k8s.io/v1 requires, is where the event came from
        (source.host), else the reporting controller."""
        event = _event(FakeClock(T0), reporting_instance="")
        assert series.prepare_event(event).reporting_instance == "node-1"
        without_host = dataclasses.replace(event, source=models.EventSource(component="ctl"))
        assert series.prepare_event(without_host).reporting_instance == "ctl"


# --- against the local server -----------------------------------------------------------------


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer() as server:
        yield server


@pytest.fixture(name="pipeline")
def _pipeline(server: LocalApiServer) -> Iterator[Any]:
    made: list[tuple[recorder.EventBroadcaster, sink.KubernetesEventSink]] = []

    def build(clock: FakeClock) -> tuple[recorder.EventBroadcaster, recorder.EventRecorder]:
        b = recorder.EventBroadcaster(
            clock=clock, sleep=clock.sleep, sleep_duration=0.0, rng=lambda: 0.5
        )
        s = sink.KubernetesEventSink(server.api_client(), qps=0, api=sink.EVENTS_V1)
        b.start_recording_to_sink(s)
        made.append((b, s))
        return b, b.new_recorder(models.EventSource(component="ctl", host="node-1"))

    yield build
    for b, s in made:
        b.shutdown(5)
        s.close()
        s.api_client.close()


def _writes(server: LocalApiServer) -> list[Any]:
    return [r for r in server.requests if r.method in ("POST", "PATCH", "PUT")]


def test_a_single_occurrence_is_created_through_events_k8s_io(server, pipeline) -> None:
    """The strict v1 validation accepts what we send; the core view shows the same event."""
    b, rec = pipeline(FakeClock(T0))
    rec.record(POD, models.WARNING, "BackOff", "Back-off pulling image", action="Pull")
    assert b.flush(10)
    ((request,),) = [_writes(server)]
    assert (request.method, request.path, request.status) == (
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        201,
    )
    (event,) = server.events_v1()
    assert (event["action"], event["reportingController"], event["reportingInstance"]) == (
        "Pull",
        "ctl",
        "node-1",
    )
    assert event["eventTime"].endswith("Z")
    assert len(event["eventTime"]) == len("2024-01-01T00:00:00.000000Z")


def test_the_second_occurrence_patches_a_series_of_two(server, pipeline) -> None:
    """Series creation at the second occurrence, as a patch of the series alone."""
    b, rec = pipeline(FakeClock(T0))
    rec.record(POD, models.WARNING, "BackOff", "x", action="Pull")
    assert b.flush(10)
    rec.record(POD, models.WARNING, "BackOff", "x", action="Pull")
    assert b.flush(10)
    patch = _writes(server)[-1]
    assert patch.method == "PATCH"
    # the series, and the resourceVersion it was counted from (a precondition, not a change)
    assert sorted(patch.body) == ["metadata", "series"]
    assert list(patch.body["metadata"]) == ["resourceVersion"]
    assert patch.body["series"]["count"] == 2
    (event,) = server.events_v1()
    assert event["series"]["count"] == 2


def test_held_occurrences_go_out_on_the_heartbeat_then_the_series_finishes(
    server, pipeline
) -> None:
    """Without a flush, the held count is written once the test's clock passes the finish
    time (six quiet minutes); the next occurrence starts a new Event. The fake clock moves
    only when the test steps it: waiting for the heartbeat is no sleep of the writers'."""
    clock = FakeClock(T0)
    b, rec = pipeline(clock)
    for _ in range(2):
        rec.record(POD, models.WARNING, "BackOff", "x", action="Pull")
        assert b.flush(10)
    rec.record(POD, models.WARNING, "BackOff", "x", action="Pull")
    # the dispatcher correlates it on its own thread: at this time, not after the step
    deadline = time.monotonic() + 10
    while b.stats()["pending_events"] != 1 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    clock.step(360)
    other = dataclasses.replace(POD, name="web-1", uid="u1")
    rec.record(other, models.WARNING, "BackOff", "x", action="Pull")  # wakes the dispatcher
    # poll the server, which is not the code under test, for at most ten seconds
    deadline = time.monotonic() + 10
    while _series_count(server, "web-0") != 3 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert _series_count(server, "web-0") == 3
    assert not any(s >= 300 for s in clock.sleeps)
    rec.record(POD, models.WARNING, "BackOff", "x", action="Pull")
    assert b.flush(10)
    assert len([e for e in server.events_v1() if e["regarding"]["name"] == "web-0"]) == 2
    stats = b.stats()
    assert stats["accepted"] == sum(
        stats[k] for k in ("dropped", "created", "patched", "coalesced", "failed")
    )


def _series_count(server, name: str) -> int:
    (event,) = [e for e in server.events_v1() if e["regarding"]["name"] == name][:1]
    return int((event.get("series") or {}).get("count", 1))


def test_a_series_patch_answered_not_found_becomes_a_create_with_the_series(
    server, pipeline
) -> None:
    """The event expired on the server: the series is created whole (count 2 is valid there)."""
    b, rec = pipeline(FakeClock(T0))
    rec.record(POD, models.WARNING, "BackOff", "x", action="Pull")
    assert b.flush(10)
    (stored,) = server.events_v1()
    client.CoreV1Api(server.api_client()).delete_namespaced_event(
        stored["metadata"]["name"], "default"
    )
    rec.record(POD, models.WARNING, "BackOff", "x", action="Pull")
    assert b.flush(10)
    assert [(r.method, r.status) for r in _writes(server)] == [
        ("POST", 201),
        ("PATCH", 404),
        ("POST", 201),
    ]
    (event,) = server.events_v1()
    assert (event["metadata"]["name"], event["series"]["count"]) == (stored["metadata"]["name"], 2)
    assert b.stats()["failed"] == 0


def test_already_exists_on_a_series_create_continues_as_a_patch(server, pipeline) -> None:
    """client-go retries AlreadyExists for a series: our own earlier create is there."""
    b, rec = pipeline(FakeClock(T0))
    rec.record(POD, models.WARNING, "BackOff", "x", action="Pull")
    assert b.flush(10)
    server.inject("PATCH", status=404)  # forces a create of the series ...
    rec.record(POD, models.WARNING, "BackOff", "x", action="Pull")
    assert b.flush(10)  # ... which meets AlreadyExists (the event is there) and patches
    assert [(r.method, r.status) for r in _writes(server)] == [
        ("POST", 201),
        ("PATCH", 404),
        ("POST", 409),
        ("PATCH", 200),
    ]
    assert server.events_v1()[0]["series"]["count"] == 2
    assert b.stats()["failed"] == 0


def test_only_the_series_is_ever_patched(server, pipeline) -> None:
    """Immutability: no patch carries anything but series, whatever the occurrences say."""
    b, rec = pipeline(FakeClock(T0))
    rec.record(POD, models.WARNING, "BackOff", "note 0", action="Pull")
    assert b.flush(10)
    for i in range(1, 40):
        rec.record(POD, models.WARNING, "BackOff", f"note {i}", action="Pull")
    assert b.flush(10)
    patches = [r for r in _writes(server) if r.method == "PATCH"]
    assert patches
    assert all(set(r.body) <= {"series", "metadata"} for r in patches)
    assert all(list(r.body.get("metadata", {})) in ([], ["resourceVersion"]) for r in patches)
    assert all(r.status in (200, 201) for r in _writes(server))
    (event,) = server.events_v1()
    assert (event["series"]["count"], event["note"]) == (40, "note 0")


def test_auto_uses_events_k8s_io_when_discovery_shows_it(server: LocalApiServer) -> None:
    """api='auto' asks the server once, on the writer's side, and writes the newer API."""
    s = sink.KubernetesEventSink(server.api_client(), qps=0, api="auto")
    try:
        assert s.api == sink.EVENTS_V1
        assert [r.path for r in server.requests] == ["/apis/events.k8s.io/v1"]
    finally:
        s.close()
        s.api_client.close()


def test_auto_falls_back_to_core_v1_when_the_group_is_not_served(
    server: LocalApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A server without events.k8s.io/v1 (404 on discovery) gets core/v1 Events, quietly:
    that is the server's answer, not a failure."""
    server.inject("GET", path="^/apis/events.k8s.io/v1$", status=404)
    s = sink.KubernetesEventSink(server.api_client(), qps=0, api="auto")
    try:
        with caplog.at_level(logging.DEBUG, logger="k8s_logging_events"):
            assert s.api == sink.CORE_V1
        assert caplog.records == []
    finally:
        s.close()
        s.api_client.close()


@pytest.mark.parametrize("status", [429, 500, 503])
def test_auto_says_so_when_discovery_fails_and_it_writes_core_v1(
    server: LocalApiServer, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """A discovery the server fails (throttled, down for a moment) still gets core/v1 Events,
    which every server takes, but not silently: the choice holds for the sink's life, and
    a process that chose otherwise writes other events about the same objects."""
    server.inject("GET", path="^/apis/events.k8s.io/v1$", status=status)
    s = sink.KubernetesEventSink(server.api_client(), qps=0, api="auto")
    try:
        with caplog.at_level(logging.WARNING, logger="k8s_logging_events"):
            assert s.api == sink.CORE_V1
        (said,) = [r.getMessage() for r in caplog.records]
        assert "could not learn whether events.k8s.io/v1 is served" in said
        assert str(status) in said
        assert "writes core/v1 Events" in said
        assert s.api == sink.CORE_V1  # asked once: no second request, no second report
        assert len([r for r in server.requests if r.path == "/apis/events.k8s.io/v1"]) == 1
        assert len(caplog.records) == 1
    finally:
        s.close()
        s.api_client.close()


def test_auto_refused_discovery_says_which_permission_is_missing(
    server: LocalApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 403 on the discovery read names that read (get on its path, which the
    system:discovery ClusterRole grants), not create and patch on events: granting those
    would leave the sink on core/v1."""
    server.inject("GET", path="^/apis/events.k8s.io/v1$", status=403)
    s = sink.KubernetesEventSink(server.api_client(), qps=0, api="auto")
    try:
        with caplog.at_level(logging.WARNING, logger="k8s_logging_events"):
            assert s.api == sink.CORE_V1
        (said,) = [r.getMessage() for r in caplog.records]
        assert "may not get /apis/events.k8s.io/v1" in said
        assert "system:discovery" in said
        assert "create and patch" not in said
    finally:
        s.close()
        s.api_client.close()


# --- the handler with api="events.k8s.io/v1", under hostile input -----------------------------


@pytest.fixture(scope="module", name="shared_server")
def _shared_server() -> Iterator[LocalApiServer]:
    with LocalApiServer(auto_create_namespaces=True) as server:
        yield server


text = st.text(
    st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ud800", "é", "日"]), max_size=3000
)


@settings(
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    message=text,
    reason=st.text(max_size=500),
    action=st.one_of(st.none(), st.text(max_size=300), st.integers()),
    component=st.text(max_size=200),
    host=st.text(max_size=300),
    event_type=st.one_of(st.none(), st.sampled_from(["Normal", "Warning", "Error", "normal", ""])),
)
def test_the_handler_never_sends_what_events_k8s_io_refuses(
    shared_server: LocalApiServer,
    message: str,
    reason: str,
    action: object,
    component: str,
    host: str,
    event_type: str | None,
) -> None:
    """Whatever the record carries, the server never answers 400 or 422."""
    shared_server.clear_requests()
    handler = KubernetesEventHandler(
        component=component or "c", host=host or "h", sink=shared_server.url, api=sink.EVENTS_V1
    )
    log = logging.getLogger("tests.series.hostile")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    try:
        extra: dict[str, object] = {
            "involved": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns"},
            },
            "reason": reason,
            "action": action,
        }
        if event_type is not None:
            extra["event_type"] = event_type
        for _ in range(3):
            log.warning("%s", message, extra=extra)
    finally:
        log.removeHandler(handler)
        handler.close()
    bad = [(r.status, r.body) for r in shared_server.requests if r.status in (400, 422)]
    assert bad == []


@pytest.mark.parametrize("api", ["events/v1", "core", ""])
def test_an_unknown_api_is_refused_when_configured(api: str) -> None:
    """A typo in the api option fails at configuration time, not at the first write."""
    with pytest.raises(ValueError, match="api must be"):
        KubernetesEventHandler(sink=None, api=api)
    with pytest.raises(ValueError, match="api must be"):
        sink.KubernetesEventSink.from_url("http://127.0.0.1:1", api=api)


def test_the_handler_writes_events_k8s_io_with_a_url_sink(server: LocalApiServer) -> None:
    """api='events.k8s.io/v1' on the handler: one Event with a series of the exact count."""
    handler = KubernetesEventHandler(
        component="shop", host="node-1", sink=server.url, api=sink.EVENTS_V1
    )
    log = logging.getLogger("tests.series.handler")
    log.propagate = False
    log.addHandler(handler)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}
    try:
        for i in range(30):
            log.warning(
                "Back-off %d", i, extra={"involved": pod, "reason": "BackOff", "action": "Pull"}
            )
    finally:
        log.removeHandler(handler)
        handler.close()
    (event,) = server.events_v1()
    assert (event["series"]["count"], event["note"], event["reportingController"]) == (
        30,
        "Back-off 0",
        "shop",
    )
    stats = handler.stats()
    assert stats["accepted"] == stats["created"] + stats["patched"] + stats["coalesced"] == 30


def test_a_controller_with_an_invalid_prefix_is_repaired_not_refused(server) -> None:
    """A component such as a..b/ctl passed before, and every events.k8s.io/v1 create got a
    422: the prefix of a qualified name must be a DNS subdomain."""
    assert series.qualified_name("a..b/ctl") == "a.b/ctl"
    assert series.qualified_name("-Bad_Prefix./ctl") == "bad-prefix/ctl"
    handler = KubernetesEventHandler(
        component="a..b/ctl", sink=server.url, api="events.k8s.io/v1", qps=0
    )
    log = logging.getLogger("tests.series.controller")
    log.propagate = False
    log.addHandler(handler)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
    log.warning("checked", extra={"involved": pod})
    handler.flush()
    handler.close()
    assert [r.status for r in server.requests if r.method == "POST"] == [201]
    (stored,) = server.events_v1("default")
    assert stored["reportingController"] == "a.b/ctl"


def _v1_handler(server: LocalApiServer, clock: FakeClock) -> KubernetesEventHandler:
    """A handler with its default (deterministic) names writing events.k8s.io/v1 to
    ``server``, on ``clock``, with no client-side rate limit."""
    return KubernetesEventHandler(
        component="shop",
        host="node-1",
        sink=server.url,
        api=sink.EVENTS_V1,
        qps=0,
        clock=clock,
        sleep=clock.sleep,
    )


def test_with_deterministic_names_a_finished_series_is_followed_by_a_new_event(
    server: LocalApiServer,
) -> None:
    """The handler's default names: six quiet minutes finish the series, and the next
    occurrence creates a new Event (its own eventTime and count), as with client-go's names,
    instead of continuing the finished one under the same name."""
    clock = FakeClock(T0)
    handler = _v1_handler(server, clock)
    log = logging.getLogger("tests.series.finished")
    log.propagate = False
    log.addHandler(handler)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}
    try:
        for _ in range(2):
            log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
            handler.flush()
        clock.step(series.FINISH_SECONDS + 40)
        for _ in range(3):
            log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
            handler.flush()
    finally:
        log.removeHandler(handler)
        handler.close()
    events = sorted(server.events_v1(), key=lambda e: e["eventTime"])
    assert [(e["series"]["count"], e["eventTime"]) for e in events] == [
        (2, "2024-01-01T00:00:00.000000Z"),
        (3, "2024-01-01T00:06:40.000000Z"),
    ]
    stats = handler.stats()
    assert stats["accepted"] == stats["created"] + stats["patched"] + stats["coalesced"] == 5


def test_with_deterministic_names_a_restart_continues_the_ongoing_series_not_a_finished_one(
    server: LocalApiServer,
) -> None:
    """A restart's first create meets the first series' name, whose series finished six
    quiet minutes before: it follows the renames to the series that goes on, and continues
    that one (client-go never continues a finished series). A restart after that one went
    quiet too starts a new Event of its own."""
    clock = FakeClock(T0)
    log = logging.getLogger("tests.series.restart_after_finished")
    log.propagate = False
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}

    def run(occurrences: int) -> None:
        handler = _v1_handler(server, clock)
        log.addHandler(handler)
        try:
            for _ in range(occurrences):
                log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
                handler.flush()
        finally:
            log.removeHandler(handler)
            handler.close()

    run(2)  # the first series: 00:00:00
    clock.step(series.FINISH_SECONDS + 40)
    run(2)  # a restart after the finish: a new Event at 00:06:40
    clock.step(10)
    run(1)  # a restart right after: continues the 00:06:40 series
    clock.step(series.FINISH_SECONDS + 40)
    run(1)  # both went quiet: a new Event
    events = sorted(server.events_v1(), key=lambda e: e["eventTime"])
    assert [(e.get("series") or {}).get("count", 1) for e in events] == [2, 3, 1]
    assert [e["eventTime"] for e in events] == [
        "2024-01-01T00:00:00.000000Z",
        "2024-01-01T00:06:40.000000Z",
        "2024-01-01T00:13:30.000000Z",
    ]


def test_with_deterministic_names_a_restart_finds_the_ongoing_series_after_many_finished(
    server: LocalApiServer,
) -> None:
    """A warning every seven minutes makes a finished series of each (a new Event each, all
    kept by the server's event TTL): a restart walks past every finished one to the series
    that goes on, however many there are, instead of giving its write up as contention."""
    clock = FakeClock(T0)
    log = logging.getLogger("tests.series.many_finished")
    log.propagate = False
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}

    def handler() -> KubernetesEventHandler:
        made = _v1_handler(server, clock)
        log.addHandler(made)
        return made

    first = handler()
    try:
        for _ in range(12):
            clock.step(series.FINISH_SECONDS + 60)
            log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
            first.flush()
    finally:
        log.removeHandler(first)
        first.close()
    clock.step(10)
    restarted = handler()
    try:
        log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
        restarted.flush()
    finally:
        log.removeHandler(restarted)
        restarted.close()
    events = sorted(server.events_v1(), key=lambda e: e["eventTime"])
    assert [(e.get("series") or {}).get("count", 1) for e in events] == [1] * 11 + [2]
    assert restarted.stats()["patched"] == 1, restarted.stats()


def test_with_deterministic_names_a_restart_continues_a_later_series_of_a_run_that_walked(
    server: LocalApiServer,
) -> None:
    """A run that started by walking past a finished series (a restart) names its own next
    series where every restart looks for it: a restart a few seconds after that series
    continues it, instead of a new Event beside it (the run's next series took a name off
    the walk, a rename of its own first series' name, which no restart tries)."""
    clock = FakeClock(T0)
    log = logging.getLogger("tests.series.walked_then_next")
    log.propagate = False
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}

    def warn(handler: KubernetesEventHandler) -> None:
        log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
        handler.flush()

    first = _v1_handler(server, clock)
    log.addHandler(first)
    warn(first)  # 00:00:00, the first series
    log.removeHandler(first)
    first.close()
    clock.step(series.FINISH_SECONDS + 60)
    walked = _v1_handler(server, clock)  # a restart: walks past the finished one
    log.addHandler(walked)
    try:
        warn(walked)  # 00:07:00, the second series
        clock.step(series.FINISH_SECONDS + 60)
        warn(walked)  # 00:14:00, the third series (the run's second)
        clock.step(10)
        warn(walked)
    finally:
        log.removeHandler(walked)
        walked.close()
    clock.step(10)
    restarted = _v1_handler(server, clock)
    log.addHandler(restarted)
    try:
        warn(restarted)  # 00:14:20: the third series goes on
    finally:
        log.removeHandler(restarted)
        restarted.close()
    events = sorted(server.events_v1(), key=lambda e: e["eventTime"])
    assert [((e.get("series") or {}).get("count", 1), e["eventTime"]) for e in events] == [
        (1, "2024-01-01T00:00:00.000000Z"),
        (1, "2024-01-01T00:07:00.000000Z"),
        (3, "2024-01-01T00:14:00.000000Z"),
    ]


def test_a_lost_create_whose_clock_stepped_back_is_not_taken_for_a_finished_series(
    server: LocalApiServer,
) -> None:
    """NTP steps the clock back an hour between a series' first occurrence and its second,
    while its create waits to retry: the create carries a series whose last observation is
    an hour before its eventTime. Its answer is lost after it was stored, and the retry meets
    our own event under its name: that is our event (its latest time is its eventTime), not
    a series finished six minutes before ours, so nothing is written again under another
    name and the server counts the two occurrences once."""
    clock = FakeClock(T0)
    first_wait, go = threading.Event(), threading.Event()

    def sleep(seconds: float, cancel: threading.Event) -> bool:
        if not go.is_set():  # the retry's wait after the 503: hold it until told, time still
            first_wait.set()
            return go.wait(30)  # bounded: only a hang reaches it
        return clock.sleep(seconds, cancel)

    server.inject(method="POST", status=503)  # the first create: not stored
    server.inject(method="POST", status=500, commit=True)  # the retry: stored, answer lost
    handler = KubernetesEventHandler(
        component="shop",
        host="node-1",
        sink=server.url,
        api=sink.EVENTS_V1,
        qps=0,
        clock=clock,
        sleep=sleep,
    )
    log = logging.getLogger("tests.series.stepped_back_lost_create")
    log.propagate = False
    log.addHandler(handler)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}
    try:
        log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
        assert first_wait.wait(30), "the first create was answered 503 and waits to retry"
        clock.step_wall(-3600)
        log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
        go.set()
        assert handler.drain(30)
    finally:
        go.set()
        log.removeHandler(handler)
        handler.close()
    events = server.events_v1()
    assert [(e["eventTime"], e["series"]) for e in events] == [
        (
            "2024-01-01T00:00:00.000000Z",
            {"count": 2, "lastObservedTime": "2023-12-31T23:00:00.000000Z"},
        )
    ]
    stats = handler.stats()
    assert stats["accepted"] == stats["created"] + stats["patched"] + stats["coalesced"] == 2
