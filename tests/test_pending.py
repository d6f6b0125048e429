"""The pending writes of one sink: coalescing, held-back counts, retries, no blocking.

First through a broadcaster (the writer behind start_recording_to_sink), then ``Writes`` on
its own: plain state, driven step by step with a FakeClock and a fake sink.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from k8s_logging_events import (
    _diagnostics,
    _options,
    _pending,
    correlator,
    models,
    recorder,
    series,
    sink,
)
from k8s_logging_events.testing import FakeClock, FakeEventSink
from tests._sinks import WithoutRead
from tests.reliability_scenarios import ListHandler, on_library_logger
from tests.test_recorder import on_fake_time

START = datetime(2024, 1, 1, tzinfo=UTC)
OUTCOMES = ("dropped", "created", "patched", "coalesced", "failed")


def _pod(name: str = "web") -> models.ObjectReference:
    return models.ObjectReference(
        kind="Pod", namespace="prod", name=name, uid=f"uid-{name}", api_version="v1"
    )


@pytest.fixture(name="made")
def _made() -> Iterator[list[recorder.EventBroadcaster]]:
    made: list[recorder.EventBroadcaster] = []
    yield made
    for b in made:
        b.shutdown(timeout=5)


def _accounted(stats: object) -> bool:
    values = dict(stats)  # type: ignore[call-overload]
    return bool(values["accepted"] == sum(values[k] for k in OUTCOMES))


def test_a_burst_of_identical_warnings_ends_as_one_event_with_the_exact_count(made) -> None:
    """10,000 identical occurrences: one event, count 10,000, a handful of writes.

    The background threads share the interpreter lock with the loop that logs, so the queue
    must be able to hold a burst (the handler's default is 10,000, not client-go's 1,000).
    """
    clock = FakeClock(START)
    # a real (interruptible) sleeper: the burst happens at one instant of the fake clock; a
    # sleeper that moved it would hand the spam filter new tokens while the burst lasts
    b = on_fake_time(made, clock, queue_length=10_000, sleep=None)
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("ctl")
    for _ in range(10_000):
        rec.event(_pod(), models.WARNING, "BackOff", "Back-off pulling image")
    assert b.flush(30)
    (event,) = fake.events
    assert event.count == 10_000
    assert len(fake.calls) <= 30
    stats = b.stats()
    assert _accounted(stats)
    assert stats["dropped"] == 0


@pytest.mark.parametrize("wall_step", [0.0, -3600.0, 3600.0], ids=["still", "back", "forward"])
def test_held_back_counts_are_written_when_the_bucket_refills(made, wall_step) -> None:
    """Past the spam burst, the latest count goes out once a token is due, without a flush:
    when the test's clock has moved 300 s of monotonic time on (the writers never move it
    there themselves), also when the wall clock stepped (NTP, a resumed VM) between the burst
    and the held occurrences, neither an hour later (a step back) nor at once (a step
    forward)."""
    clock = FakeClock(START)
    b = on_fake_time(made, clock)
    fake = FakeEventSink()
    written = threading.Event()

    def watch_count(event: models.Event, data: bytes) -> None:
        if json.loads(data)["count"] == 30:
            written.set()

    fake.on_patch = watch_count
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("ctl")
    for _ in range(25):
        rec.event(_pod(), models.WARNING, "BackOff", "again")
    assert b.flush(5)  # the burst of 25 is spent and written
    clock.step_wall(wall_step)
    slept = len(clock.sleeps)
    for _ in range(5):
        rec.event(_pod(), models.WARNING, "BackOff", "again")
    deadline = time.monotonic() + 10  # until the dispatcher has correlated them (held)
    while b._runtime._handoff.delivered < 30 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    clock.step(299)
    rec.event(_pod("other"), models.WARNING, "BackOff", "again")  # wakes the dispatcher
    assert not written.wait(0.2), "a token one second early"
    clock.step(1)
    rec.event(_pod("other"), models.WARNING, "BackOff", "again")
    assert written.wait(10)
    assert sum(clock.sleeps[slept:]) == 0, "the writers moved the test's clock"
    assert b.flush(5)
    (event,) = [e for e in fake.events if e.involved_object.name == "web"]
    assert event.count == 30
    assert event.last_timestamp == START + timedelta(seconds=wall_step)


@pytest.mark.parametrize("backing_off", [True, False], ids=["before-the-flush", "during-it"])
def test_a_flush_tries_a_retry_backing_off_past_its_deadline_within_it(
    made, k8s_apiserver, backing_off
) -> None:
    """The server fails a create once (500); its retry backs off 9 s (sleep_duration 10 s,
    jitter 0.9), from before a flush of 2 s or while it waits: the flush tries it again
    halfway to its deadline, and it lands. The retry waited its whole back-off instead, and
    the flush (an exit's) gave it up at the deadline untried. The test's sleeper lets the
    clock pass a wait that fits in the flush, as real time would; only a wake ends a longer."""
    clock = FakeClock(START)
    slept: list[float] = []
    backs_off = threading.Event()

    def sleeper(seconds: float, cancel: threading.Event) -> bool:
        slept.append(seconds)
        if seconds <= 2:
            return clock.sleep(seconds, cancel)
        backs_off.set()
        return cancel.wait(30)

    b = on_fake_time(made, clock, sleep=sleeper, sleep_duration=10.0, rng=lambda: 0.9)
    with sink.KubernetesEventSink.from_url(k8s_apiserver.url, qps=0) as events:
        b.start_recording_to_sink(events)
        k8s_apiserver.inject("POST", path=r"/events$", times=1, status=500)
        pod = dataclasses.replace(_pod(), namespace="default")
        b.new_recorder("ctl").event(pod, models.WARNING, "BackOff", "again")
        assert backs_off.wait(10) or not backing_off
        assert b.flush(2)
        b.shutdown(timeout=5)
    assert [r.status for r in k8s_apiserver.requests if r.method == "POST"] == [500, 201]
    hurried = [seconds for seconds in slept if seconds <= 2]
    assert max(hurried, default=2.0) <= 1.0, slept  # at most half of the flush's 2 s
    assert _accounted(b.stats())


def test_flush_writes_held_back_counts_without_waiting_for_a_token(made) -> None:
    """flush bypasses the spam filter for the last write of each held-back event."""
    clock = FakeClock(START)
    never = threading.Event()
    b = on_fake_time(made, clock, sleep=lambda seconds, cancel: never.wait(0) or cancel.wait(0.001))
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("ctl")
    for _ in range(40):
        rec.event(_pod(), models.WARNING, "BackOff", "again")
    assert b.flush(5)
    assert fake.events[0].count == 40
    assert _accounted(b.stats())


def test_a_failing_object_does_not_hold_up_the_others(made) -> None:
    """While one event backs off between retries, other events are written at once."""
    b = on_fake_time(made, FakeClock(START), sleep=None, sleep_duration=60.0)
    fake = FakeEventSink()
    others_written = threading.Event()

    def create(event: models.Event) -> None:
        if event.involved_object.name == "bad":
            raise OSError("connection refused")
        if len([e for e in fake.events if e.involved_object.name != "bad"]) == 9:
            others_written.set()

    fake.on_create = create
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("ctl")
    rec.event(_pod("bad"), models.WARNING, "Failed", "x")
    for i in range(10):
        rec.event(_pod(f"good-{i}"), models.NORMAL, "Ok", "x")
    assert others_written.wait(10)  # the last create is in flight
    deadline = time.monotonic() + 10
    while b.stats()["created"] < 10 and time.monotonic() < deadline:
        threading.Event().wait(0.01)  # until it is counted: shutdown(0.5) does not wait for it
    b.shutdown(timeout=0.5)
    stats = b.stats()
    assert stats["created"] == 10
    assert stats["failed"] == 1
    assert _accounted(stats)


def test_a_write_in_flight_does_not_block_other_keys_and_repeats_coalesce(made) -> None:
    """A stuck create holds only its own event; its repeats merge into one pending write."""
    b = on_fake_time(made, FakeClock(START), writers=2)
    fake = FakeEventSink()
    release = threading.Event()
    slow_started = threading.Event()
    other_done = threading.Event()

    def create(event: models.Event) -> None:
        if event.involved_object.name == "slow":
            slow_started.set()
            release.wait(10)
        else:
            other_done.set()

    fake.on_create = create
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("ctl")
    rec.event(_pod("slow"), models.WARNING, "Stuck", "x")
    assert slow_started.wait(10)  # the create is in flight before the repeats arrive
    for _ in range(4):
        rec.event(_pod("slow"), models.WARNING, "Stuck", "x")
    rec.event(_pod("fast"), models.NORMAL, "Ok", "x")
    assert other_done.wait(10)
    release.set()
    assert b.flush(10)
    slow = [c for c in fake.calls if c.event.involved_object.name == "slow"]
    assert [c.method for c in slow] == ["create", "patch"]
    assert json.loads(slow[1].data or b"{}")["count"] == 5
    stats = b.stats()
    assert (stats["created"], stats["patched"], stats["coalesced"]) == (2, 1, 3)


def test_writes_for_one_event_never_overlap(made) -> None:
    """With several writer threads, one event's writes are strictly sequential and in order."""
    b = on_fake_time(made, FakeClock(START), writers=4)
    fake = FakeEventSink()
    in_flight: set[str] = set()
    overlaps: list[str] = []
    counts: list[int] = []
    lock = threading.Lock()

    def enter(name: str) -> None:
        with lock:
            if name in in_flight:
                overlaps.append(name)
            in_flight.add(name)

    def patch(event: models.Event, data: bytes) -> None:
        enter(event.name)
        with lock:
            counts.append(json.loads(data)["count"])
            in_flight.discard(event.name)

    fake.on_patch = patch
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("ctl")
    for _ in range(20):
        rec.event(_pod(), models.WARNING, "R", "x")
    assert b.flush(10)
    assert overlaps == []
    assert counts == sorted(counts)
    assert fake.events[0].count == 20


def test_a_create_whose_answer_was_lost_continues_as_a_patch(made) -> None:
    """The create landed but the connection broke: the retry's AlreadyExists means 'ours'."""
    b = on_fake_time(made, FakeClock(START))
    fake = FakeEventSink()
    lost = {"done": False}
    real_create = fake.create

    def create_then_lose(event: models.Event) -> models.Event:
        stored = real_create(event)
        if not lost["done"]:
            lost["done"] = True
            raise ConnectionResetError("response lost")
        return stored

    fake.create = create_then_lose  # type: ignore[method-assign]
    b.start_recording_to_sink(fake)
    b.new_recorder("ctl").event(_pod(), models.WARNING, "R", "x")
    assert b.flush(5)
    (event,) = fake.events
    assert event.count == 1
    stats = b.stats()
    assert (stats["created"], stats["failed"]) == (1, 0)


def test_already_exists_on_a_first_create_is_given_up_quietly_by_a_sink_that_cannot_read(
    made, caplog
) -> None:
    """A name clash with no earlier attempt, where the event cannot be read: client-go's
    way, given up at debug level only."""
    b = on_fake_time(made, FakeClock(START))
    fake = FakeEventSink()
    from k8s_logging_events import sink

    fake.fail_next("create", sink.ApiStatusError(409, "AlreadyExists", "exists"))
    b.start_recording_to_sink(WithoutRead(fake))
    b.new_recorder("ctl").event(_pod(), models.WARNING, "R", "x")
    assert b.flush(5)
    assert b.stats()["failed"] == 1
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_already_exists_then_nothing_to_read_creates_again(made) -> None:
    """A 409 AlreadyExists, then a read that finds nothing (the event expired in between):
    the create is made again, and the occurrence is written."""
    b = on_fake_time(made, FakeClock(START))
    fake = FakeEventSink()
    from k8s_logging_events import sink

    fake.fail_next("create", sink.ApiStatusError(409, "AlreadyExists", "exists"))
    b.start_recording_to_sink(fake)
    b.new_recorder("ctl").event(_pod(), models.WARNING, "R", "x")
    assert b.flush(5)
    assert [call.method for call in fake.calls] == ["create", "read", "create"]
    (event,) = fake.events
    assert event.count == 1
    assert (b.stats()["created"], b.stats()["failed"]) == (1, 0)


def test_every_occurrence_is_accounted_for_across_many_objects_and_threads(made) -> None:
    """8 threads, 200 objects, repeats and distinct messages: the counters add up after flush."""
    b = on_fake_time(made, FakeClock(START))
    fake = FakeEventSink()
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("ctl")

    def work(seed: int) -> None:
        for i in range(500):
            n = (seed * 31 + i * 7) % 200
            rec.event(_pod(f"p{n}"), models.WARNING, "R", f"m{i % 3}")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.flush(30)
    stats = b.stats()
    assert stats["accepted"] == 4000
    assert _accounted(stats)
    # the server's counts add up to what was accepted, less what was dropped
    assert sum(e.count for e in fake.events) == 4000 - stats["dropped"]


# -- Writes on its own: plain state, a FakeClock, a fake sink, no threads ----------------------


def test_a_shutdown_landing_inside_a_flush_on_its_own_thread_leaves_the_flush_quiet(
    made,
) -> None:
    """An application's SIGTERM handler that shuts down (``logging.shutdown()``) may land
    while a flush on the same thread looks over the pending writes, under the runtime's
    reentrant lock; the shutdown gives those writes up (failed) there, and the flush then
    returns its answer instead of raising "dictionary changed size during iteration" into
    the application (``flush`` runs from ``logging.shutdown`` too)."""
    entered, go = threading.Event(), threading.Event()

    class Held(FakeEventSink):
        def create(self, event: models.Event) -> models.Event:
            entered.set()
            go.wait(30)  # only a hang reaches the bound
            return super().create(event)

    b = recorder.EventBroadcaster()
    made.append(b)
    b.start_recording_to_sink(Held())
    b.new_recorder("sig").event(_pod(), models.WARNING, "BackOff", "Back-off")
    assert entered.wait(30)
    # the look at the oldest pending write, the second time: where the signal lands
    scan = _pending.Writes._is_pending.__code__
    resumed: list[bool] = []

    def signal_lands(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is scan:
            resumed.append(True)
            if len(resumed) == 2:
                b.shutdown(0.2)  # what the signal handler does, on this thread

    previous = sys.gettrace()
    sys.settrace(signal_lands)
    try:
        b.flush(30)
    finally:
        sys.settrace(previous)
        go.set()
    assert len(resumed) >= 2
    assert b.stats()["failed"] == 1
    assert _accounted(b.stats())


class Pending:
    """One sink's Writes with client-go's correlator in front, driven as the runtime drives
    it, but synchronously: correlate, queue, take what is ready, write, report the result."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        burst: int = 25,
        max_tries: int = 3,
        max_pending: int = 100,
        sleep_duration: float = 10.0,
        policy: _pending.WritePolicy | None = None,
    ) -> None:
        self.clock = clock
        self.fake = FakeEventSink()
        self.counters = _diagnostics.Counters()
        options = correlator.CorrelatorOptions(clock=clock, burst_size=burst)
        self.correlator = correlator.EventCorrelator(options)
        self.reporter = _diagnostics.RateLimitedReporter(clock=clock)
        self.writes = _pending.Writes(
            WithoutRead(self.fake),
            policy or correlator.CountPolicy(self.correlator),
            self.counters,
            options=_options.broadcasting(
                queue_length=max_pending,
                writers=1,
                max_tries=max_tries,
                sleep_duration=sleep_duration,
                correlator=None,
                event_names="timestamp",
                clock=clock,
                sleep=None,
            ),
            clock=clock,
            rng=lambda: 0.5,
            reporter=self.reporter,
        )

    def offer(self, occurrence: models.Event, times: int = 1) -> None:
        """Correlate ``times`` occurrences one by one and queue the writes they ask for."""
        for _ in range(times):
            for event, held, occurrences in self.correlator.correlate_many([occurrence]):
                self.writes.submit_event(event, held=held, occurrences=occurrences)

    def perform(self, write: _pending.Write) -> str:
        """Make one attempt of a write taken from the queue and report how it ended."""
        try:
            kind, stored = self.writes.attempt(write)
        except Exception as error:
            self.writes.failed(write, error, stopping=False)
            return "failed"
        self.writes.feed_back(write, stored)
        self.writes.succeeded(write, kind)
        return kind

    def drive(self) -> list[str]:
        """Write everything that may go now; return how each attempt ended, in order."""
        done = []
        while (write := self.writes.take()) is not None:
            done.append(self.perform(write))
        return done

    def outcomes(self) -> dict[str, int]:
        counted = self.counters.snapshot()
        return {name: counted.get(name, 0) for name in OUTCOMES}

    def accounted(self) -> bool:
        """Every occurrence queued so far has exactly one outcome, and none is pending."""
        return sum(self.outcomes().values()) == self.writes.submitted and not self.writes.pending()


def _offer_named(writes: _pending.Writes, name: str, pod: str) -> None:
    """Offer an event named (and with the reason) ``name`` about ``pod``, not held back."""
    event = dataclasses.replace(_occurrence(pod, reason=name), name=name)
    writes.submit_event(event, held=False)


def _occurrence(pod: str = "web", reason: str = "BackOff") -> models.Event:
    return models.Event(
        name=f"{pod}.{reason.lower()}",
        namespace="prod",
        involved_object=_pod(pod),
        reason=reason,
        message="again",
        source=models.EventSource(component="ctl"),
        first_timestamp=START,
        last_timestamp=START,
        count=1,
        type=models.WARNING,
    )


class TestWritesOnItsOwn:
    """The pending writes of one sink, tested without a broadcaster or a thread."""

    def test_a_new_event_is_created_and_a_repeat_patches_its_count(self) -> None:
        """The first occurrence is a create, the next one a count patch of the stored event."""
        pending = Pending(FakeClock(START))
        pending.offer(_occurrence())
        assert pending.drive() == ["created"]
        pending.offer(_occurrence())
        assert pending.drive() == ["patched"]
        assert [e.count for e in pending.fake.events] == [2]
        assert pending.outcomes() == dict.fromkeys(OUTCOMES, 0) | {"created": 1, "patched": 1}
        assert pending.accounted()

    def test_occurrences_meeting_a_write_in_flight_coalesce_into_the_next_write(self) -> None:
        """While an event's write is in flight its repeats wait, merged into one write that
        carries them all and goes once the first one landed."""
        pending = Pending(FakeClock(START))
        pending.offer(_occurrence())
        first = pending.writes.take()
        assert first is not None
        pending.offer(_occurrence(), times=3)
        assert pending.writes.take() is None  # behind the write in flight
        assert pending.writes.pending() == 4
        assert pending.perform(first) == "created"
        assert pending.drive() == ["patched"]
        assert [e.count for e in pending.fake.events] == [4]
        assert len(pending.fake.calls) == 2
        assert pending.outcomes() == {
            "dropped": 0,
            "created": 1,
            "patched": 1,
            "coalesced": 2,
            "failed": 0,
        }
        assert pending.accounted()

    def test_one_involved_object_has_one_request_in_flight(self) -> None:
        """Two events about one pod go one after the other; another pod's does not wait."""
        pending = Pending(FakeClock(START))
        for occurrence in (_occurrence(reason="A"), _occurrence(reason="B"), _occurrence("db")):
            pending.offer(occurrence)
        web_a, db = pending.writes.take(), pending.writes.take()
        assert web_a is not None
        assert db is not None
        assert (web_a.event.reason, db.event.involved_object.name) == ("A", "db")
        assert pending.writes.take() is None
        assert pending.perform(web_a) == "created"
        web_b = pending.writes.take()
        assert web_b is not None
        assert web_b.event.reason == "B"

    @pytest.mark.parametrize("moved", ["while it waits", "as its turn comes"])
    def test_a_write_moved_to_another_object_leaves_none_waiting_for_good(self, moved: str) -> None:
        """Events b and c wait for pod x's write a; b's latest occurrence is about pod z,
        whose write d is in flight (a ``key_func`` grouping objects). b waits for z then,
        and c goes once a landed: c waited for a request of x that never came, pending for
        good (a flush waited for it to its timeout)."""
        pending = Pending(FakeClock(START))
        writes = pending.writes
        offer = functools.partial(_offer_named, writes)
        for name, pod in (("a", "x"), ("b", "x"), ("c", "x"), ("d", "z")):
            offer(name, pod)
        a, d = writes.take(), writes.take()
        assert a is not None
        assert d is not None
        assert writes.take() is None  # b and c wait for a
        if moved == "while it waits":
            offer("b", "z")
        pending.writes.succeeded(a, "created")
        if moved == "as its turn comes":
            offer("b", "z")
        c = writes.take()
        assert c is not None
        assert c.event.name == "c"
        assert pending.perform(d) == "created"
        assert pending.perform(c) == "created"
        assert pending.drive() == ["created"]  # b, after d
        assert not writes.pending()

    def test_a_write_waiting_for_two_objects_in_turn_leaves_none_waiting_for_good(self) -> None:
        """Events b and c wait for pod x's write a; b's latest occurrence is about pod z,
        whose write d is in flight, and b waits for z too. a lands, then d: b goes, and c
        after it (b went for z alone: c waited for a request of x that never came)."""
        pending = Pending(FakeClock(START))
        writes = pending.writes
        offer = functools.partial(_offer_named, writes)
        for name, pod in (("a", "x"), ("d", "z"), ("b", "x"), ("c", "x")):
            offer(name, pod)
        a, d = writes.take(), writes.take()
        assert a is not None
        assert d is not None
        assert writes.take() is None  # b and c wait for a
        offer("b", "z")
        assert writes.take() is None  # b waits for d now
        assert pending.perform(a) == "created"
        assert pending.perform(d) == "created"
        assert [w.event.name for w in (writes.take(), writes.take()) if w] == ["b", "c"]

    def test_writes_waiting_for_their_object_are_looked_at_once_not_at_every_take(self) -> None:
        """1,000 events about one pod, then one about another: the other pod's write goes
        beside the first (a take looked past 256 waiting writes at most: it waited for 744
        of the pod's), and while each of the pod's writes is in flight, the writers that
        look for work do not walk the pod's others again (quadratic in a burst)."""
        pending = Pending(FakeClock(START), burst=2_000, max_pending=2_000)
        looks = 0

        class Counted(deque[tuple[str, str]]):
            def popleft(self) -> tuple[str, str]:
                nonlocal looks
                looks += 1
                return super().popleft()

        pending.writes._ready = Counted()
        for n in range(1_000):
            pending.offer(_occurrence(reason=f"R{n}"))
        pending.offer(_occurrence("db"))
        first, db = pending.writes.take(), pending.writes.take()
        assert first is not None
        assert db is not None
        assert db.event.involved_object.name == "db"
        assert pending.perform(db) == "created"
        write: _pending.Write | None = first
        while write is not None:
            assert pending.writes.take() is None  # another writer finds nothing to do
            assert pending.perform(write) == "created"
            write = pending.writes.take()
        assert len(pending.fake.events) == 1_001
        assert pending.accounted()
        assert looks < 5_000, looks

    def test_a_hanging_namespace_does_not_hold_back_another_ones_writes(self) -> None:
        """300 events in a namespace whose request hangs (an admission webhook), then one in
        another: that one goes at once. A take looked past 256 writes waiting for the hanging
        namespace at most, so with 1,000 of them a healthy namespace's events waited minutes
        (one request timeout for each of the hanging one's before them)."""
        pending = Pending(FakeClock(START), max_pending=1_000)
        for n in range(300):
            occurrence = _occurrence(f"p{n}")
            pod = dataclasses.replace(occurrence.involved_object, namespace="hangs")
            pending.offer(dataclasses.replace(occurrence, namespace="hangs", involved_object=pod))
        hanging = pending.writes.take()
        assert hanging is not None
        assert pending.writes.stalling(time.monotonic() + 60, 1.0) == 1
        pending.offer(_occurrence("db"))
        healthy = pending.writes.take()
        assert healthy is not None
        assert healthy.event.namespace == "prod"

    def test_a_write_given_up_leaves_its_namespace_stalled_while_another_request_hangs(
        self,
    ) -> None:
        """Two requests hang in one namespace (an admission webhook); one times out for the
        last time, given up: the other still hangs, so the namespace's next write waits for it
        (the mark went with the given-up write, and each next write hung a writer too)."""
        pending = Pending(FakeClock(START), max_tries=1)
        for pod in ("web", "db", "cache"):
            pending.offer(_occurrence(pod))
        web, db = pending.writes.take(), pending.writes.take()
        assert web is not None
        assert db is not None
        assert pending.writes.stalling(time.monotonic() + 60, 1.0) == 2
        pending.writes.failed(db, TimeoutError("timed out"), stopping=False)
        assert pending.outcomes()["failed"] == 1
        assert pending.writes.take() is None  # cache waits for web's request
        assert pending.perform(web) == "created"
        cache = pending.writes.take()
        assert cache is not None
        assert cache.event.involved_object.name == "cache"

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        steps=st.lists(
            st.tuples(
                st.sampled_from(["offer", "move", "take", "land", "time out", "stall"]),
                st.integers(0, 7),
            ),
            max_size=60,
        )
    )
    @example(  # the last request in a stalled namespace times out: the next there may go
        steps=[("take", 0)] * 3
        + [("land", 0), ("take", 0), ("land", 2), ("land", 0), ("take", 0), ("stall", 0)]
        + [("offer", 0), ("take", 0), ("time out", 1), ("take", 0)]
    )
    @example(  # the first of three writes waiting for p0 moves back to p1: the others go
        steps=[("take", 0), ("move", 1), ("move", 3), ("take", 0), ("offer", 1), ("land", 0)]
    )
    @example(  # moved to p1 and parked for it, then moved back by a repeat: p0 is free
        steps=[("move", 2), *[("take", 0)] * 3, ("offer", 2), ("take", 0), ("land", 0), ("take", 0)]
    )
    @example(  # moved while parked, parked again for its new object: heir of both
        steps=[("move", 4), *[("take", 0)] * 4, ("move", 5), ("take", 0)]
    )
    def test_a_write_that_may_go_is_taken_whatever_went_before(self, steps) -> None:
        """Two events about each of two pods in each of two namespaces; whatever requests
        were in flight, timed out or stalled their namespace meanwhile, or occurrences moved
        an event to the other pod of its namespace (a ``key_func``), a take finds a write
        whenever one may go (its object and stalled namespace have no request in flight),
        and once every request ended, every write is written: none waits for good."""
        clock = FakeClock(START)
        pending = Pending(clock, burst=1_000, max_tries=2)
        writes, in_flight = pending.writes, list[_pending.Write]()

        def may_go(write: _pending.Write | None) -> bool:
            if write is None or write.event.involved_object in writes._in_flight:
                return False
            namespace = write.event.namespace
            busy = {w.event.namespace for w in writes._in_flight.values()}
            return namespace not in writes._stalled or namespace not in busy

        def offer(n: int, moved: bool = False) -> None:
            pod = dataclasses.replace(_pod(f"p{n % 2}"), namespace="ab"[n // 4])
            reason = f"R{n // 2 % 2}"
            event = dataclasses.replace(_occurrence(reason=reason), name=f"{pod.name}.{reason}")
            if moved:  # another message: not the other pod's event of that reason
                pod = dataclasses.replace(pod, name=f"p{1 - n % 2}", uid=f"uid-p{1 - n % 2}")
                event = dataclasses.replace(event, message="moved")
            pending.offer(dataclasses.replace(event, namespace=pod.namespace, involved_object=pod))

        for n in range(8):
            offer(n)
        for action, n in steps:
            if action in ("offer", "move"):
                offer(n, moved=action == "move")
            elif action == "take":
                if (write := writes.take()) is not None:
                    in_flight.append(write)
                else:
                    ready = [s.waiting for s in writes._slots.values() if s.state == "ready"]
                    assert not any(map(may_go, ready)), steps
            elif action in ("land", "time out") and in_flight:
                write = in_flight.pop(n % len(in_flight))
                if action == "land":
                    pending.perform(write)
                else:
                    writes.failed(write, TimeoutError("timed out"), stopping=False)
            elif action == "stall":
                writes.stalling(time.monotonic() + 60, 1.0)
        for write in in_flight:
            pending.perform(write)
        for _ in range(3):  # and the retries after their back-off
            clock.step(60)
            pending.drive()
        assert pending.accounted()

    def test_the_writes_are_the_one_registry_of_requests_in_flight(self) -> None:
        """What the writer pool asks instead of keeping its own list: how many requests
        are in flight, since when the oldest, and which have stalled (real time, as the
        pool measures a request hanging in a socket); an answer takes a request off."""
        pending = Pending(FakeClock(START))
        for name in ("web", "db", "cache"):
            pending.offer(_occurrence(name))
        assert (pending.writes.in_flight_count(), pending.writes.oldest_start()) == (0, None)
        web, db = pending.writes.take(), pending.writes.take()
        assert web is not None
        assert db is not None
        assert web.started is not None
        assert pending.writes.in_flight_count() == 2
        assert pending.writes.oldest_start() == web.started
        assert pending.writes.stalling(web.started + 0.5, 1.0) == 0
        assert pending.writes.stalling(web.started + 60, 1.0) == 2
        # the namespace stalls: it gets no third request while those hang
        assert pending.writes.take() is None
        assert pending.perform(web) == "created"
        assert pending.writes.in_flight_count() == 1
        assert pending.writes.oldest_start() == db.started
        pending.fake.fail_next("create", ConnectionResetError("reset"))
        assert pending.perform(db) == "failed"
        assert (pending.writes.in_flight_count(), pending.writes.oldest_start()) == (0, None)

    def test_a_failed_write_waits_its_back_off_on_the_monotonic_clock(self) -> None:
        """After a lost connection the write waits sleep_duration times the random number
        (5 s here), measured on the monotonic reading: an hour's step of the wall clock
        changes nothing, 5 s of monotonic time make it due."""
        clock = FakeClock(START)
        pending = Pending(clock)
        pending.fake.fail_next("create", ConnectionResetError("reset"))
        pending.offer(_occurrence())
        assert pending.drive() == ["failed"]
        assert pending.writes.next_due() == pytest.approx(5.0)
        clock.step_wall(3600)
        assert pending.drive() == []
        assert pending.writes.next_due() == pytest.approx(5.0)
        clock.step(4.9)
        assert pending.drive() == []
        clock.step(0.1)
        assert pending.drive() == ["created"]
        assert pending.outcomes()["failed"] == 0
        assert pending.accounted()

    def test_a_429_waits_its_retry_after_and_spends_no_try(self) -> None:
        """With one try allowed, two 429s in a row are waited out (3 s each, as the server
        asked) and the write still goes; occurrences meanwhile join it."""
        clock = FakeClock(START)
        pending = Pending(clock, max_tries=1)
        throttled = sink.ApiStatusError(429, "TooManyRequests", "slow down", retry_after=3.0)
        pending.fake.fail_next("create", throttled, times=2)
        pending.offer(_occurrence())
        for _ in range(2):
            assert pending.drive() == ["failed"]
            assert pending.writes.next_due() == pytest.approx(3.0)
            pending.offer(_occurrence())
            clock.step(3.0)
        assert pending.drive() == ["created"]
        assert [e.count for e in pending.fake.events] == [3]
        assert pending.outcomes() == dict.fromkeys(OUTCOMES, 0) | {
            "created": 1,
            "coalesced": 2,
        }
        assert pending.accounted()

    def test_a_write_is_given_up_after_max_tries_and_its_occurrences_count_failed(self) -> None:
        """Two tries of a write carrying two occurrences, both refused: both are failed."""
        clock = FakeClock(START)
        pending = Pending(clock, max_tries=2)
        pending.fake.fail_next("create", ConnectionResetError("reset"), times=5)
        pending.offer(_occurrence())
        assert pending.drive() == ["failed"]
        pending.offer(_occurrence())
        clock.step(5.0)
        assert pending.drive() == ["failed"]
        assert pending.writes.next_due() is None
        assert pending.writes.pending_events() == 0
        assert pending.outcomes()["failed"] == 2
        assert pending.accounted()

    def test_held_counts_wait_for_the_spam_bucket_then_go_and_go_at_once_at_flush(self) -> None:
        """Past a burst of one, a repeat is held until the bucket refills (300 s of monotonic
        time at client-go's rate), then its count goes; at flush a held count goes at once."""
        clock = FakeClock(START)
        pending = Pending(clock, burst=1)
        pending.offer(_occurrence())
        assert pending.drive() == ["created"]
        pending.offer(_occurrence(), times=2)
        assert pending.drive() == []
        due = pending.writes.next_due()
        assert due is not None
        assert 299 < due <= 301
        clock.step(due - 1)
        assert pending.drive() == []
        clock.step(1)
        assert pending.drive() == ["patched"]
        assert [e.count for e in pending.fake.events] == [3]
        pending.offer(_occurrence())
        assert pending.drive() == []
        pending.writes.flushing = True
        pending.writes.release_held()
        assert pending.drive() == ["patched"]
        assert [e.count for e in pending.fake.events] == [4]
        assert pending.accounted()

    def test_beyond_max_pending_occurrences_of_new_events_are_dropped(self) -> None:
        """With two events pending, a third event is dropped and counted; a repeat of a
        pending event still joins its write."""
        pending = Pending(FakeClock(START), max_pending=2)
        for pod in ("a", "b", "c"):
            pending.offer(_occurrence(pod))
        pending.offer(_occurrence("a"))
        assert pending.writes.pending_events() == 2
        assert pending.outcomes()["dropped"] == 1
        assert sorted(pending.drive()) == ["created", "created"]
        assert [e.count for e in pending.fake.events] == [2, 1]
        assert pending.accounted()

    def test_a_dropped_write_is_reported_with_its_true_number_of_occurrences(self) -> None:
        """A write of several correlated occurrences that finds max_pending reached is
        dropped whole: the reports (the first, then the summary of those held back) count
        its occurrences, as stats() does, not one per write, and name the event as every
        other report does, with its namespace."""
        pending = Pending(FakeClock(START), max_pending=1)
        with on_library_logger(ListHandler()) as reports:
            pending.writes.submit_event(_occurrence("a"), held=False)
            for pod in ("b", "c"):
                pending.writes.submit_event(_occurrence(pod), held=False, occurrences=7)
            pending.reporter.emit_deferred()
            pending.reporter.summarise()
        assert pending.outcomes()["dropped"] == 14
        first, summary = reports.messages()
        assert first == (
            "Unable to record event prod/b.backoff: 1 events are waiting to be written already "
            "(queue_length); 7 occurrence(s) dropped"
        ), first
        assert "(14 occurrence(s) in all)" in summary, summary

    def test_abandon_gives_up_what_waits_then_what_is_in_flight(self) -> None:
        """abandon() counts what waits as failed and leaves requests in flight to land;
        abandon(in_flight=True) gives those up too, and their late answers count nothing."""
        pending = Pending(FakeClock(START))
        pending.offer(_occurrence("a"))
        pending.offer(_occurrence("b"))
        in_flight = pending.writes.take()
        assert in_flight is not None
        given_up = pending.writes.abandon(in_flight=False)
        assert [w.event.involved_object.name for w in given_up] == ["b"]
        assert pending.outcomes()["failed"] == 1
        assert pending.writes.pending() == 1
        pending.offer(_occurrence("c"))
        late = pending.writes.take()
        assert late is not None
        assert pending.perform(in_flight) == "created"
        assert [w.event.involved_object.name for w in pending.writes.abandon(in_flight=True)] == [
            "c"
        ]
        assert pending.perform(late) == "created"  # it landed, but was given up already
        assert pending.outcomes() == dict.fromkeys(OUTCOMES, 0) | {
            "created": 1,
            "failed": 2,
        }
        assert pending.accounted()

    def test_a_create_carries_the_first_occurrence_however_many_merged(self) -> None:
        """A write's create sends what a patch cannot change from its first occurrence (the
        object a key_func grouped it under), the count and message from the latest; a third
        occurrence merged in does not make the second the first."""
        first = _occurrence("a")
        write = _pending.Write(event=first, create=True, held=False)
        for pod, count in (("b", 2), ("c", 3)):
            write.merge(
                dataclasses.replace(_occurrence(pod), count=count, message=f"again {count}"),
                held=False,
                occurrences=1,
            )
        assert write.creation() == dataclasses.replace(first, count=3, message="again 3")


class TestEveryOccurrenceHasOneOutcome:
    """Mutations of the outcome bookkeeping that the tests above let live."""

    def test_repeats_waiting_behind_a_failed_write_join_its_retry(self) -> None:
        """Occurrences queued while a create is in flight wait behind it; when it fails, its
        retry carries them too (not one of them lost): one create of count 3 after the
        back-off, all three accounted for."""
        clock = FakeClock(START)
        pending = Pending(clock)
        pending.fake.fail_next("create", ConnectionRefusedError("refused"))
        pending.offer(_occurrence())
        first = pending.writes.take()
        assert first is not None
        pending.offer(_occurrence(), times=2)
        assert pending.perform(first) == "failed"
        assert pending.writes.pending() == 3
        clock.step(5.0)
        assert pending.drive() == ["created"]
        assert [e.count for e in pending.fake.events] == [3]
        assert pending.outcomes()["coalesced"] == 2
        assert pending.accounted()

    def test_abandon_counts_every_occurrence_a_waiting_write_carries(self) -> None:
        """A write merging three occurrences, given up at close, counts three failed, and
        the event it waited for is no longer pending once its request in flight lands."""
        pending = Pending(FakeClock(START))
        pending.offer(_occurrence("a"))
        in_flight = pending.writes.take()
        assert in_flight is not None
        pending.offer(_occurrence("a"), times=3)
        pending.offer(_occurrence("b"), times=2)
        assert len(pending.writes.abandon(in_flight=False)) == 2
        assert pending.outcomes()["failed"] == 5
        assert pending.writes.pending_events() == 1  # a's request, still in flight
        assert pending.perform(in_flight) == "created"
        assert pending.writes.pending_events() == 0
        assert pending.accounted()

    def test_a_write_of_several_occurrences_counts_each_as_submitted(self) -> None:
        """A flush waits until every occurrence submitted has an outcome: a write of five
        correlated occurrences counts five, its outcome (one create, four coalesced) too."""
        pending = Pending(FakeClock(START))
        pending.writes.submit_event(_occurrence(), held=False, occurrences=5)
        assert pending.writes.submitted == 5
        assert pending.drive() == ["created"]
        assert pending.outcomes()["coalesced"] == 4
        assert pending.accounted()

    def test_a_failure_while_stopping_is_given_up_not_retried(self) -> None:
        """At close, a failed write is not scheduled again: its occurrences count failed."""
        pending = Pending(FakeClock(START))
        pending.offer(_occurrence(), times=1)
        write = pending.writes.take()
        assert write is not None
        pending.writes.failed(write, ConnectionRefusedError("refused"), stopping=True)
        assert pending.writes.next_due() is None
        assert pending.writes.pending_events() == 0
        assert pending.outcomes()["failed"] == 1
        assert pending.accounted()

    def test_a_flush_does_not_cut_a_retry_back_off_short(self) -> None:
        """A flush releases held-back counts at once, but a write backing off after a failure
        still waits its back-off when it ends well before the flush's deadline (30 s): the
        server is not hammered by every flush."""
        clock = FakeClock(START)
        pending = Pending(clock)
        pending.fake.fail_next("create", ConnectionRefusedError("refused"))
        pending.offer(_occurrence())
        assert pending.drive() == ["failed"]
        pending.writes.flushing = True
        pending.writes.drains.append(lambda: 30.0)
        pending.writes.release_held()
        assert pending.drive() == []
        assert pending.writes.next_due() == pytest.approx(5.0)
        clock.step(5.0)
        assert pending.drive() == ["created"]

    def test_a_flush_tries_retries_halfway_to_its_deadline_not_before_the_server_asked(
        self,
    ) -> None:
        """With 4 s left of a flush (on the test's clock here), a retry backing off 5 s goes
        in 2 s, a second one (10 s) halfway to the deadline again, so a third try fits
        (max_tries bounds them); a 503's Retry-After of 3 s and a 429's are waited whole:
        the server asked (and a 429 spends no try: halving its wait would never end)."""
        clock = FakeClock(START)
        pending = Pending(clock)
        end = clock.monotonic() + 4.0
        pending.writes.drains.append(lambda: max(0.0, end - clock.monotonic()))
        pending.fake.fail_next("create", ConnectionResetError("reset"), times=2)
        pending.offer(_occurrence("web"))
        for wait in (2.0, 1.0):
            assert pending.drive() == ["failed"]
            assert pending.writes.next_due() == pytest.approx(wait)
            clock.step(wait)
        assert pending.drive() == ["created"]
        end = clock.monotonic() + 4.0
        for status, reason in ((503, "ServiceUnavailable"), (429, "TooManyRequests")):
            error = sink.ApiStatusError(status, reason, "later", retry_after=3.0)
            pending.fake.fail_next("create", error)
            pending.offer(_occurrence(f"asked-{status}"))
            assert pending.drive() == ["failed"]
            assert pending.writes.next_due() == pytest.approx(3.0)
        clock.step(3.0)
        assert pending.drive() == ["created", "created"]
        assert pending.accounted()

    def test_a_flush_during_an_outage_hurries_two_retries_and_leaves_the_rest(self) -> None:
        """The server refuses every request while a flush waits 4 s: the write is tried
        halfway to the deadline and again halfway to it, then waits its back-off, its other
        tries left for after the outage, where it lands. Halving what was left after every
        failure spent all 12 tries in the flush's last moments, and the write was given up."""
        clock = FakeClock(START)
        pending = Pending(clock, max_tries=12)
        end = clock.monotonic() + 4.0
        pending.writes.drains.append(lambda: max(0.0, end - clock.monotonic()))

        def refuse(event: models.Event) -> None:
            raise ConnectionRefusedError("refused")

        pending.fake.on_create = refuse
        pending.offer(_occurrence("web"))
        tries = pending.drive().count("failed")
        while (wait := pending.writes.next_due()) is not None and clock.monotonic() + wait < end:
            clock.step(wait)
            tries += pending.drive().count("failed")
        assert tries == 3  # the first, and two brought forward
        pending.writes.drains.clear()
        pending.fake.on_create = None
        clock.step(60.0)
        assert pending.drive() == ["created"]
        assert pending.accounted()

    def test_a_repeat_does_not_cut_a_throttled_write_wait_short(self) -> None:
        """After a 429, a new occurrence joins the write but does not make it go before the
        server's Retry-After has passed."""
        clock = FakeClock(START)
        pending = Pending(clock, max_tries=1)
        throttled = sink.ApiStatusError(429, "TooManyRequests", "slow down", retry_after=3.0)
        pending.fake.fail_next("create", throttled)
        pending.offer(_occurrence())
        assert pending.drive() == ["failed"]
        pending.offer(_occurrence())
        assert pending.drive() == []
        clock.step(3.0)
        assert pending.drive() == ["created"]
        assert [e.count for e in pending.fake.events] == [2]

    def test_a_held_series_pushed_back_on_the_way_is_due_at_its_time_to_the_step(self) -> None:
        """A held write whose time was pushed back by later occurrences is due at that time:
        a FakeClock stepped there writes it. The microsecond of slack of the due check went
        into the pushed-back time too, so an events.k8s.io/v1 heartbeat due at 2,100 s (30
        minutes after the series' write at 300 s) missed that check by a rounding, and the
        series stayed held until a later step."""
        clock = FakeClock(START)
        seen = series.SeriesCorrelator(clock=clock)
        pending = Pending(clock, policy=series.SeriesPolicy(seen))
        written = []
        for step in (0, 300, 300, 300, 300, 300, 300, 300):  # one occurrence every 5 minutes
            clock.step(step)
            event, held = seen.observe(dataclasses.replace(_occurrence(), action="Pull"))
            pending.writes.submit_event(event, held=held)
            written += pending.drive()
        assert written == ["created", "patched", "patched"]  # at 0 s, 300 s and 2,100 s
        assert [e.series.count for e in pending.fake.events if e.series] == [8]
        assert pending.accounted()

    def test_a_count_allowed_by_the_spam_filter_is_not_held_by_a_later_one(self) -> None:
        """A repeat within the burst waits behind the create in flight; a further repeat the
        spam filter holds back merges into it, and the write goes as soon as the create
        landed, carrying both: what was allowed stays allowed."""
        pending = Pending(FakeClock(START), burst=2)
        pending.offer(_occurrence())
        first = pending.writes.take()
        assert first is not None
        pending.offer(_occurrence(), times=2)  # the second within the burst, the third held
        assert pending.perform(first) == "created"
        assert pending.drive() == ["patched"]
        assert [e.count for e in pending.fake.events] == [3]

    def test_each_occurrence_is_reported_delayed_once_however_often_it_fails(self) -> None:
        """One occurrence whose write fails twice is one delayed occurrence in the reports."""
        clock = FakeClock(START)
        pending = Pending(clock, max_tries=5)
        pending.fake.fail_next("create", ConnectionRefusedError("refused"), times=2)
        with on_library_logger(ListHandler()) as reports:
            pending.offer(_occurrence())
            assert pending.drive() == ["failed"]
            clock.step(10.0)
            assert pending.drive() == ["failed"]
            pending.reporter.emit_deferred()
            pending.reporter.summarise()
        first, summary = reports.messages()
        assert first.endswith("; 1 occurrence(s) delayed"), first
        assert "(1 occurrence(s) delayed in all)" in summary, summary

    def test_a_request_that_timed_out_stalls_its_namespace(self) -> None:
        """After a timeout, the namespace gets one request in flight at a time (a hanging
        webhook must not take every writer): a third event waits for the second's answer."""
        pending = Pending(FakeClock(START))
        for name in ("web", "db"):
            pending.offer(_occurrence(name))
        web, db = pending.writes.take(), pending.writes.take()
        assert web is not None
        assert db is not None
        pending.fake.fail_next("create", TimeoutError("timed out"))
        assert pending.perform(web) == "failed"
        pending.offer(_occurrence("cache"))
        assert pending.writes.take() is None
        assert pending.perform(db) == "created"
        cache = pending.writes.take()
        assert cache is not None
        assert cache.event.involved_object.name == "cache"

    def test_a_namespace_stalls_no_longer_than_its_writes_last(self) -> None:
        """A namespace's stall mark goes with a write given up: 50 namespaces whose request
        timed out and whose next try failed for good (deleted, say) leave no mark behind,
        where an earlier version kept one per such namespace for the life of the process."""
        clock = FakeClock(START)
        pending = Pending(clock, max_tries=2)
        for number in range(50):
            web = _occurrence()
            namespace = f"gone-{number}"
            ref = dataclasses.replace(web.involved_object, namespace=namespace)
            pending.fake.fail_next("create", TimeoutError("timed out"))
            pending.fake.fail_next("create", ConnectionRefusedError("refused"))
            pending.offer(dataclasses.replace(web, namespace=namespace, involved_object=ref))
            assert pending.drive() == ["failed"]
            clock.step(60)
            assert pending.drive() == ["failed"]
        assert pending.accounted()
        assert pending.writes._stalled == set()

    def test_a_write_given_up_after_its_last_try_says_retry_limit(self) -> None:
        """The report of a write whose every try failed names the retry limit, not a refusal
        that is never retried."""
        pending = Pending(FakeClock(START), max_tries=1)
        pending.fake.fail_next("create", ConnectionRefusedError("refused"))
        with on_library_logger(ListHandler()) as reports:
            pending.offer(_occurrence())
            assert pending.drive() == ["failed"]
            pending.reporter.emit_deferred()
        (given_up,) = reports.messages()
        assert "(retry limit)" in given_up, given_up


@pytest.fixture(name="walks")
def _walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per walk over every pending write (``Writes._writes``) from then on."""
    walks: list[int] = []
    walk = _pending.Writes._writes

    def counted(self: _pending.Writes) -> Iterator[_pending.Write]:
        walks.append(1)
        return walk(self)

    monkeypatch.setattr(_pending.Writes, "_writes", counted)
    return walks


class TestWhatAFlushWaitsFor:
    """A flush waits until the oldest occurrence still pending is younger than its marker:
    ``oldest_pending`` answers that after every write that lands, and ``pending`` whether
    anything is pending at all, so they must stay right through every change of the pending
    writes, and must not walk them all each time."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        steps=st.lists(
            st.tuples(
                st.sampled_from(["offer", "take", "land", "fail", "abandon", "wait"]),
                st.integers(0, 5),
            ),
            max_size=60,
        )
    )
    def test_the_oldest_pending_occurrence_is_known_through_any_history(self, steps) -> None:
        """Coalescing, requests in flight, retries merging newer writes, give-ups and
        abandons: the answer is always the oldest submission number a pending write holds."""
        clock = FakeClock(START)
        pending = Pending(clock, max_tries=2, max_pending=4)
        writes = pending.writes
        in_flight: list[_pending.Write] = []
        for action, n in steps:
            if action == "offer":
                pending.offer(_occurrence(f"p{n}"))
            elif action == "take" and (write := writes.take()) is not None:
                in_flight.append(write)
            elif action in ("land", "fail") and in_flight:
                write = in_flight.pop(n % len(in_flight))
                if action == "land":
                    pending.perform(write)
                else:
                    writes.failed(write, ConnectionResetError("reset"), stopping=False)
            elif action == "abandon":
                writes.abandon(in_flight=n % 2 == 0)
            elif action == "wait":
                clock.step(30)
                writes.promote_due()
            oldest = min((write.first for write in writes._writes()), default=float("inf"))
            assert writes.oldest_pending() == oldest, (action, n)
            held = sum(write.occurrences for write in writes._writes() if not write.abandoned)
            assert writes.pending() == held, (action, n)

    def test_how_many_occurrences_are_pending_is_known_without_a_walk(self, walks) -> None:
        """stats() (a Prometheus scrape) and every flush ask how many occurrences the writes
        hold; a walk of every pending write each time, under the lock the writers need, cost
        a flush that no longer waits (a hanging server) 2.6 ms at 10,000 pending."""
        pending = Pending(FakeClock(START), max_pending=2_000)
        for n in range(2_000):
            pending.offer(_occurrence(f"p{n}"))
        for _ in range(100):
            assert pending.writes.pending() == 2_000
        assert walks == []

    def test_the_writes_a_flush_orders_are_let_go_once_written(self) -> None:
        """After a burst of 500 distinct events, all written and none pending, the writes
        kept in order for a flush are let go (a few dozen may wait for the next): an earlier
        version held every one, with its event, until the next write was made."""
        pending = Pending(FakeClock(START), max_pending=1_000)
        for n in range(500):
            pending.offer(_occurrence(f"p{n}"))
        assert pending.drive() == ["created"] * 500
        assert pending.accounted()
        assert len(pending.writes._made) <= 64

    def test_a_flush_does_not_walk_every_pending_write_at_each_write_that_lands(
        self, made, walks
    ) -> None:
        """2,000 distinct events pending at a flush: the flush's waiter looks at the oldest
        pending write after each write that lands; a walk of all of them each time made a
        flush quadratic (3,000 pending writes cost a flushing thread about half a second)."""
        b = recorder.EventBroadcaster(queue_length=5_000)
        made.append(b)
        fake = FakeEventSink()
        b.start_recording_to_sink(fake)
        rec = b.new_recorder("ctl")
        for n in range(2_000):
            rec.event(_pod(f"p{n}"), models.WARNING, "R", "m")
        assert b.flush(60)
        assert len(fake.events) == 2_000
        assert len(walks) < 50, len(walks)
