"""The public test doubles: FakeClock, FakeRecorder and FakeEventSink."""

from __future__ import annotations

import json
import logging
import math
import threading
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from k8s_logging_events import models, recorder, sink
from k8s_logging_events.testing import FakeClock, FakeEventSink, FakeRecorder, LocalApiServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"}}
POD_IN_DEFAULT = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "default"},
}


class TestFakeClock:
    def test_time_moves_only_when_told(self) -> None:
        """now() stays put until step() or set()."""
        clock = FakeClock(T0)
        assert clock.now() == T0 == clock.now()
        clock.step(1.5)
        assert clock.now() == T0 + timedelta(seconds=1.5)
        clock.set(T0 + timedelta(days=1))
        assert clock.now() == T0 + timedelta(days=1)

    def test_tick_mode_advances_after_every_read(self) -> None:
        """Like client-go's SimpleIntervalClock: each read returns, then moves on."""
        clock = FakeClock(T0, tick=2.0)
        assert [clock.now(), clock.now()] == [T0, T0 + timedelta(seconds=2)]

    def test_sleep_records_moves_time_and_reports_cancellation(self) -> None:
        """sleep() costs no wall time and says whether the cancel event was set."""
        clock = FakeClock(T0)
        cancel = threading.Event()
        assert clock.sleep(3.0, cancel) is False
        cancel.set()
        assert clock.sleep(1.0, cancel) is True
        assert clock.sleeps == [3.0, 1.0]
        assert clock.now() == T0 + timedelta(seconds=4)

    def test_step_moves_both_clocks_and_step_wall_or_set_only_the_wall(self) -> None:
        """Durations are read on monotonic(): a stepped wall clock does not move it."""
        clock = FakeClock(T0)
        start = clock.monotonic()
        clock.step(2.0)
        assert clock.monotonic() - start == 2.0
        clock.step_wall(-3600.0)
        clock.set(T0 + timedelta(days=3))
        assert clock.monotonic() - start == 2.0
        assert clock.now() == T0 + timedelta(days=3)
        clock.sleep(0.5, threading.Event())
        assert clock.monotonic() - start == 2.5

    def test_tick_moves_the_monotonic_reading_too(self) -> None:
        """In tick mode every now() lets time pass, for durations as for timestamps."""
        clock = FakeClock(T0, tick=1.0)
        start = clock.monotonic()
        clock.now()
        clock.now()
        assert clock.monotonic() - start == 2.0

    @pytest.mark.parametrize("seconds", [-3600.0, -1e-6, math.nan])
    def test_time_passing_never_goes_back(self, seconds: float) -> None:
        """A negative (or NaN) step or tick is refused, naming step_wall: a monotonic reading
        moved back would leave every spam bucket and window frozen until it caught up."""
        clock = FakeClock(T0)
        with pytest.raises(ValueError, match="step_wall"):
            clock.step(seconds)
        with pytest.raises(ValueError, match="step_wall"):
            FakeClock(T0, tick=seconds)
        assert (clock.now(), clock.monotonic()) == (T0, 0.0)

    @pytest.mark.parametrize(
        ("start", "wall_step"),
        [
            (datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York")), "step"),
            (datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")), "set"),
        ],
    )
    def test_time_in_a_zone_with_daylight_saving_moves_by_the_seconds_passed(
        self, start: datetime, wall_step: str
    ) -> None:
        """A start (or set()) in a zone whose clocks change: an hour stepped across the end of
        daylight saving time is an hour, not two, and a minute slept in the repeated hour
        does not go back; now() is in UTC, as the Clock protocol says."""
        clock = FakeClock() if wall_step == "set" else FakeClock(start)
        if wall_step == "set":
            clock.set(start)
        seen = [clock.now()]
        clock.sleep(60, threading.Event())
        seen.append(clock.now())
        clock.step(3600)
        seen.append(clock.now())
        # timestamp(): a difference of two datetimes of one zone ignores their offsets
        passed = [later.timestamp() - earlier.timestamp() for earlier, later in pairwise(seen)]
        assert passed == [60.0, 3600.0]
        assert seen[0] == start.astimezone(UTC)  # the same instant
        assert seen[0].utcoffset() == timedelta(0)

    def test_naive_start_is_taken_as_utc(self) -> None:
        """A naive datetime is read as UTC, so now() is always aware."""
        assert FakeClock(datetime(2024, 1, 1)).now() == T0  # noqa: DTZ001


class TestFakeRecorder:
    def test_keeps_type_reason_message_strings(self) -> None:
        """One string per call, in client-go's format."""
        recorder = FakeRecorder()
        recorder.event(POD, "Normal", "Started", "done")
        recorder.eventf(POD, "Warning", "Failed", "%d of %d", 1, 2)
        assert recorder.events == ["Normal Started done", "Warning Failed 1 of 2"]

    def test_is_an_event_recorder_for_code_that_takes_one(self) -> None:
        """Code that takes an ``EventRecorder`` (typed so, or checking with ``isinstance``)
        takes the fake, whose calls are kept as strings: it has no broadcaster nor source."""

        def reconcile(events: recorder.EventRecorder) -> None:
            if isinstance(events, recorder.EventRecorder):
                events.event(POD, "Normal", "Synced", "ok")

        fake = FakeRecorder()
        reconcile(fake)
        assert fake.events == ["Normal Synced ok"]
        assert fake.source == models.EventSource()

    def test_include_object_and_annotations_suffixes(self) -> None:
        """The object's kind/apiVersion and sorted annotations are appended as in Go."""
        recorder = FakeRecorder(include_object=True)
        recorder.annotated_eventf(POD, {"b": "2", "a": "1"}, "Normal", "R", "m")
        assert recorder.events == ["Normal R m involvedObject{kind=Pod,apiVersion=v1} map[a:1 b:2]"]

    @pytest.mark.parametrize(
        ("annotations", "kept"),
        [
            ("a=1", "Normal R m"),
            ([("a", "1")], "Normal R m"),
            ({2: "x", "a": 1}, "Normal R m map[2:x a:1]"),
        ],
        ids=["str", "pairs", "keys-of-two-types"],
    )
    def test_annotations_of_another_shape_never_raise(self, annotations: object, kept: str) -> None:
        """The fake validates nothing and a call never raises: annotations that are no
        mapping (a string, a list of pairs) are left out, as ``record`` leaves them out, and
        keys of several types are sorted as text (they raised TypeError into the test)."""
        recorder = FakeRecorder()
        recorder.annotated_eventf(POD, annotations, "Normal", "R", "m")  # type: ignore[arg-type]
        assert recorder.events == [kept]

    @pytest.mark.parametrize(
        ("reason", "fmt", "args"),
        [
            ("R", "%d items", ("many",)),
            ("R", "%s and %s", ("one",)),
            ("R", "%(k)s", (1,)),
            ("R%s", "m%s", ("x", "y")),
            ("Reason%", "ok %s", ("x",)),
        ],
    )
    def test_a_format_keeps_what_the_recorder_writes(
        self,
        k8s_apiserver: LocalApiServer,
        caplog: pytest.LogCaptureFixture,
        reason: str,
        fmt: str,
        args: tuple[object, ...],
    ) -> None:
        """A test against the fake predicts production: the fake keeps a string for exactly
        the calls a real EventRecorder makes an event of, with the same message, and says the
        same on the ``k8s_logging_events`` logger for a format its arguments do not fit (it
        kept the format unformatted, or formatted the reason too, where the recorder made no
        event or one with the reason as given). A call never raises."""
        real = recorder.EventBroadcaster()
        real_sink = sink.KubernetesEventSink.from_url(k8s_apiserver.url)
        try:
            real.start_recording_to_sink(real_sink)
            with caplog.at_level(logging.ERROR, logger="k8s_logging_events"):
                real.new_recorder("c").eventf(POD_IN_DEFAULT, "Normal", reason, fmt, *args)
                assert real.flush(10)
                said_by_recorder = [r.getMessage() for r in caplog.records]
                caplog.clear()
                fake = FakeRecorder()
                fake.eventf(POD_IN_DEFAULT, "Normal", reason, fmt, *args)
                said_by_fake = [r.getMessage() for r in caplog.records]
        finally:
            real.shutdown(10)
            real_sink.close()
        written = [f"{e['type']} {e['reason']} {e['message']}" for e in k8s_apiserver.events()]
        assert fake.events == written
        assert said_by_fake == said_by_recorder


class TestFakeEventSink:
    def _event(self) -> models.Event:
        return models.Event(
            name="p.1",
            namespace="n",
            involved_object=models.ObjectReference(kind="Pod", name="p", namespace="n"),
            count=1,
            message="m",
            last_timestamp=T0,
        )

    def test_create_then_patch_updates_the_stored_event(self) -> None:
        """Patches merge into the stored event; every write bumps the resourceVersion."""
        fake = FakeEventSink()
        created = fake.create(self._event())
        patched = fake.patch(created, json.dumps({"count": 2, "message": "m2"}).encode())
        assert (patched.count, patched.message) == (2, "m2")
        assert int(patched.resource_version) > int(created.resource_version)
        assert fake.get("n", "p.1") == patched

    def test_create_of_an_existing_name_is_already_exists(self) -> None:
        """A second create of one name fails like the API server."""
        fake = FakeEventSink()
        fake.create(self._event())
        with pytest.raises(sink.ApiStatusError) as info:
            fake.create(self._event())
        assert info.value.is_already_exists

    def test_patch_and_update_of_a_missing_event_are_not_found(self) -> None:
        """Writes to a missing event fail with 404."""
        fake = FakeEventSink()
        with pytest.raises(sink.ApiStatusError) as info:
            fake.patch(self._event(), b"{}")
        assert info.value.is_not_found
        with pytest.raises(sink.ApiStatusError):
            fake.update(self._event())

    def test_read_returns_the_stored_event_or_not_found(self) -> None:
        """``read`` is the GET that a takeover needs; it is recorded like every call."""
        fake = FakeEventSink()
        with pytest.raises(sink.ApiStatusError) as info:
            fake.read(self._event())
        assert info.value.is_not_found
        created = fake.create(self._event())
        assert fake.read(self._event()) == created
        assert [c.method for c in fake.calls] == ["read", "create", "read"]

    def test_a_stale_resource_version_in_a_patch_or_update_is_a_conflict(self) -> None:
        """As the API server: ``metadata.resourceVersion`` is a precondition."""
        fake = FakeEventSink()
        created = fake.create(self._event())
        guard = {"metadata": {"resourceVersion": created.resource_version}, "count": 2}
        patched = fake.patch(created, json.dumps(guard).encode())
        assert patched.count == 2
        with pytest.raises(sink.ApiStatusError) as info:
            fake.patch(created, json.dumps(guard).encode())
        assert (info.value.status, info.value.reason) == (409, "Conflict")
        with pytest.raises(sink.ApiStatusError):
            fake.update(created)  # carries the first resourceVersion
        assert fake.update(patched).resource_version != patched.resource_version

    def test_scripted_failures_are_raised_in_order_then_calls_succeed(self) -> None:
        """fail_next queues errors for one method; every call is recorded."""
        fake = FakeEventSink()
        fake.fail_next("create", OSError("down"), times=2)
        for _ in range(2):
            with pytest.raises(OSError, match="down"):
                fake.create(self._event())
        fake.create(self._event())
        assert [c.method for c in fake.calls] == ["create"] * 3
        assert len(fake.events) == 1
