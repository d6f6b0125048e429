"""Runs of repeats: a batch correlated in runs writes what one-by-one correlation writes.

The runtime hands the correlator a batch cut into runs (``_runs.cut``); client-go correlates
every occurrence on its own, in the order they came. Whatever the key functions, the
interleaving of objects and the clock, the events written must be the same: compared here
with :meth:`EventCorrelator.correlate` called one occurrence at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8s_logging_events import _runs, correlator, models, recorder
from k8s_logging_events.testing import FakeClock, FakeEventSink

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SOURCE = models.EventSource(component="ctl", host="node-1")
OBJECTS = [
    models.ObjectReference(
        kind="Pod", namespace=namespace, name=name, uid=f"uid-{name}", api_version="v1"
    )
    for namespace, name in (("a", "web-0"), ("a", "web-1"), ("b", "db-0"), ("b", "db-1"))
]
REASONS = ("BackOff", "Failed")


# key functions a user may give, several of them grouping events of many objects together


def by_reason(event: models.Event) -> tuple[str, str]:
    """Every object's events of one reason are similar (crosses objects)."""
    return event.reason, event.message


def all_similar(event: models.Event) -> tuple[str, str]:
    """Every event is similar to every other (crosses objects)."""
    return "all", event.message


def by_namespace(event: models.Event) -> tuple[str, str]:
    """Events of one namespace are similar; the local key is the object (crosses objects)."""
    return event.namespace, event.involved_object.name + event.message


def by_object_name(event: models.Event) -> tuple[str, str]:
    """Per object, like client-go's but without the reason."""
    return event.involved_object.name, event.message


def raising_at_odd_seconds(event: models.Event) -> tuple[str, str]:
    """client-go's grouping, but raising for an occurrence dated at an odd second: repeats
    of one event, identical but for their time, fail one by one."""
    assert event.last_timestamp is not None
    if event.last_timestamp.second % 2:
        raise ValueError(f"no key at {event.last_timestamp}")
    return event.reason, event.message


def naming_the_object(event: models.Event) -> str:
    """An aggregate message that says which object tipped the group over."""
    return f"(combined) {event.involved_object.name}: {event.message}"


def combined_but_not_at_odd_seconds(event: models.Event) -> str:
    """client-go's aggregate message, but raising for an occurrence dated at an odd second."""
    assert event.last_timestamp is not None
    if event.last_timestamp.second % 2:
        raise ValueError(f"no message at {event.last_timestamp}")
    return correlator.combined_message(event)


def one_bucket(event: models.Event) -> str:
    """One spam bucket for everything (crosses objects)."""
    return "all"


def bucket_per_reason_only(event: models.Event) -> str:
    """One spam bucket per reason, whatever the object (crosses objects)."""
    return event.reason


KEY_FUNCS: list[correlator.KeyFunc | None] = [
    None,
    by_reason,
    all_similar,
    by_namespace,
    by_object_name,
    raising_at_odd_seconds,
]
MESSAGE_FUNCS: list[correlator.MessageFunc | None] = [
    None,
    naming_the_object,
    combined_but_not_at_odd_seconds,
]
SPAM_KEY_FUNCS: list[correlator.SpamKeyFunc | None] = [
    None,
    correlator.spam_key_per_reason,
    one_bucket,
    bucket_per_reason_only,
]

Step = tuple[str, float]
Occurrence = tuple[int, int, int]  # object, reason, message


def _step(clock: FakeClock, step: Step) -> None:
    kind, seconds = step
    if kind == "wall":
        clock.step_wall(seconds)
    else:
        clock.step(seconds)


def _written(events: list[models.Event]) -> Counter[tuple[str, ...]]:
    """What the server holds, without names and resourceVersions (a namer's choice)."""
    return Counter(
        (
            event.involved_object.name,
            event.reason,
            event.message,
            str(event.count),
            str(event.first_timestamp and models.format_time(event.first_timestamp)),
            str(event.last_timestamp and models.format_time(event.last_timestamp)),
        )
        for event in events
    )


class _Batched:
    """A broadcaster whose batches the test hands to the runtime itself, as its dispatcher
    would: each batch whole, then a flush (which also writes held-back counts)."""

    def __init__(self, options: correlator.CorrelatorOptions, *, inline: bool) -> None:
        self.clock = FakeClock(T0)
        self.sink = FakeEventSink()
        self.broadcaster = recorder.EventBroadcaster(
            clock=self.clock, correlator_options=options, queue_length=10_000
        )
        self.broadcaster.start_recording_to_sink(self.sink)
        if inline:  # every event is then built before it is correlated
            quiet = logging.Logger("tests.runs.quiet")  # noqa: LOG001 - outside the tree
            quiet.disabled = True
            self.broadcaster.start_structured_logging(quiet)
        self.recorder = self.broadcaster.new_recorder(SOURCE)
        self.runtime = self.broadcaster._runtime
        self.runtime._started = True  # no dispatcher: the test hands the batches over

    def batch(self, occurrences: list[Occurrence], steps: list[Step]) -> None:
        for (obj, reason, message), step in zip(occurrences, steps, strict=True):
            self.recorder.event(OBJECTS[obj], models.WARNING, REASONS[reason], f"m{message}")
            _step(self.clock, step)
        items: list[Any] = []
        while True:
            try:
                items.append(self.runtime._queue.get_nowait())
            except queue.Empty:
                break
        assert not self.runtime._handle_batch(items)
        assert self.broadcaster.flush(10)

    def close(self) -> None:
        self.broadcaster.shutdown(5)


class _OneByOne:
    """client-go's way: every occurrence correlated on its own, in arrival order; the last
    write of each event is what the server holds."""

    def __init__(self, options: correlator.CorrelatorOptions) -> None:
        self.clock = FakeClock(T0)
        self.namer = correlator.EventNamer()
        values = {name: getattr(options, name) for name in options.__dataclass_fields__}
        self.correlator = correlator.EventCorrelator(
            correlator.CorrelatorOptions(**{**values, "clock": self.clock}), namer=self.namer
        )
        self.written: dict[tuple[str, str], models.Event] = {}
        self.failed = 0

    def batch(self, occurrences: list[Occurrence], steps: list[Step]) -> None:
        built = []
        for (obj, reason, message), step in zip(occurrences, steps, strict=True):
            ref = OBJECTS[obj]
            occurrence = models.Occurrence(
                ref=ref,
                namespace=ref.namespace,
                type=models.WARNING,
                reason=REASONS[reason],
                message=f"m{message}",
                annotations=None,
                action="",
                related=None,
                source=SOURCE,
                time=self.clock.now(),
                seen=self.clock.monotonic(),
            )
            built.append(occurrence.materialize(self.namer))
            _step(self.clock, step)
        for event in built:  # correlated when the batch is handed over, at one time
            try:
                observed = self.correlator.correlate(event).observed
            except ValueError:  # a key function's failure costs this occurrence only
                self.failed += 1
                continue
            assert observed is not None
            self._write(observed)

    def _write(self, observed: models.Event) -> None:
        """Create the first occurrence of an event; a repeat patches its count, last
        timestamp and message (client-go's count patch)."""
        key = (observed.namespace, observed.name)
        stored = self.written.get(key)
        if stored is not None and observed.count > 1:
            observed = dataclasses.replace(
                stored,
                count=observed.count,
                last_timestamp=observed.last_timestamp,
                message=observed.message,
            )
        self.written[key] = observed


def _check(
    options: correlator.CorrelatorOptions,
    batches: list[list[Occurrence]],
    within: list[list[Step]],
    between: list[Step],
    *,
    inline: bool,
) -> None:
    batched, one_by_one = _Batched(options, inline=inline), _OneByOne(options)
    try:
        for occurrences, steps, step in zip(batches, within, between, strict=True):
            batched.batch(occurrences, steps)
            one_by_one.batch(occurrences, steps)
            for clock in (batched.clock, one_by_one.clock):
                _step(clock, step)
        assert _written(batched.sink.events) == _written(list(one_by_one.written.values()))
        stats = dict(batched.broadcaster.stats())
        outcomes = ("dropped", "created", "patched", "coalesced", "failed", "discarded")
        assert stats["accepted"] == sum(stats[name] for name in outcomes)
        assert (stats["failed"], stats["dropped"]) == (one_by_one.failed, 0)
    finally:
        batched.close()


STEPS_WITHIN = st.sampled_from([("step", 0.0), ("step", 0.0), ("step", 1.0), ("wall", -3600.0)])
STEPS_BETWEEN = st.sampled_from(
    [("step", 0.0), ("step", 30.0), ("step", 400.0), ("step", 700.0), ("wall", -3600.0)]
)


@st.composite
def _scenarios(draw: Callable[..., Any]) -> dict[str, Any]:
    batches = draw(
        st.lists(
            st.lists(
                st.tuples(st.integers(0, 3), st.integers(0, 1), st.integers(0, 5)),
                min_size=1,
                max_size=30,
            ),
            min_size=1,
            max_size=4,
        )
    )
    return {
        "batches": batches,
        "within": [draw(st.lists(STEPS_WITHIN, min_size=len(b), max_size=len(b))) for b in batches],
        "between": draw(st.lists(STEPS_BETWEEN, min_size=len(batches), max_size=len(batches))),
    }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    scenario=_scenarios(),
    key_func=st.sampled_from(KEY_FUNCS),
    message_func=st.sampled_from(MESSAGE_FUNCS),
    spam_key_func=st.sampled_from(SPAM_KEY_FUNCS),
    burst=st.integers(1, 6),
    max_events=st.integers(2, 5),
    inline=st.booleans(),
)
def test_batched_correlation_writes_what_one_by_one_correlation_writes(
    scenario: dict[str, Any],
    key_func: correlator.KeyFunc | None,
    message_func: correlator.MessageFunc | None,
    spam_key_func: correlator.SpamKeyFunc | None,
    burst: int,
    max_events: int,
    inline: bool,
) -> None:
    """Any key, message and spam key function, any interleaving of four objects in two
    namespaces over a few batches, steps of time (and of the wall clock alone) between and
    within batches: the server holds the same events, counts, messages and timestamps as
    when client-go correlates each occurrence on its own, in the order it came."""
    options = correlator.CorrelatorOptions(
        key_func=key_func,
        message_func=message_func,
        spam_key_func=spam_key_func,
        burst_size=burst,
        max_events=max_events,
    )
    _check(options, **scenario, inline=inline)


@pytest.mark.parametrize("inline", [False, True], ids=["sinks-only", "with-a-watcher"])
def test_a_grouping_key_func_writes_the_combined_event_about_the_pod_client_go_names(
    inline: bool,
) -> None:
    """The issue's case: a key_func that makes every event of one reason similar, whatever
    the object. Nine messages about db-0, the tenth about db-1, the eleventh about db-0
    again, all in one batch: client-go combines at the tenth, so the "(combined from similar
    events)" event is about db-1 (counted twice, with the latest message). Cutting the
    batch object by object combined about db-0 first, with the message of the tenth."""
    options = correlator.CorrelatorOptions(key_func=by_reason)
    occurrences = [(2, 0, message) for message in range(9)] + [(3, 0, 9), (2, 0, 10)]
    within = [("step", 1.0)] * len(occurrences)
    _check(options, [occurrences], [within], [("step", 0.0)], inline=inline)

    one_by_one = _OneByOne(options)
    one_by_one.batch(occurrences, within)
    combined = [
        event
        for event in one_by_one.written.values()
        if event.message.startswith(correlator.COMBINED_MESSAGE_PREFIX)
    ]
    assert [(e.involved_object.name, e.message, e.count) for e in combined] == [
        ("db-1", correlator.COMBINED_MESSAGE_PREFIX + "m10", 2)
    ]


@pytest.mark.parametrize("inline", [False, True], ids=["sinks-only", "with-a-watcher"])
def test_a_key_func_that_fails_for_one_repeat_costs_that_occurrence_only(inline: bool) -> None:
    """Three repeats of one warning a second apart, in one batch, with a key_func that
    raises for the second: one by one, the first is created and the third patches count 2,
    the second alone failed. (Correlated as one run, the second's failure cost all three:
    nothing was written, although the correlator had counted the first.)"""
    options = correlator.CorrelatorOptions(key_func=raising_at_odd_seconds)
    occurrences = [(0, 0, 0)] * 3
    within = [("step", 1.0)] * 3
    _check(options, [occurrences], [within], [("step", 0.0)], inline=inline)

    one_by_one = _OneByOne(options)
    one_by_one.batch(occurrences, within)
    assert one_by_one.failed == 1
    assert [(e.involved_object.name, e.count) for e in one_by_one.written.values()] == [
        ("web-0", 2)
    ]


@pytest.mark.parametrize("inline", [False, True], ids=["sinks-only", "with-a-watcher"])
def test_a_message_func_that_fails_for_one_repeat_costs_that_occurrence_only(inline: bool) -> None:
    """client-go's keys, two messages combine: m0, then four repeats of m1 a second apart
    in one batch, with a message_func that raises at odd seconds. One by one, only the
    repeats it raised for fail; the others are written. (Correlated as one run, the first
    repeat's failure cost all four, and only m0 was written.)"""
    options = correlator.CorrelatorOptions(
        message_func=combined_but_not_at_odd_seconds, max_events=2
    )
    occurrences = [(0, 0, 0)] + [(0, 0, 1)] * 4
    within = [("step", 1.0)] * len(occurrences)
    _check(options, [occurrences], [within], [("step", 0.0)], inline=inline)

    one_by_one = _OneByOne(options)
    one_by_one.batch(occurrences, within)
    assert 0 < one_by_one.failed < 4  # which repeats combine depends on set order


def test_client_go_keys_let_a_batch_be_cut_object_by_object() -> None:
    """With client-go's key functions (and per-reason spam keys) no correlation state
    crosses objects, so the runs may gather each object's repeats across the batch; a
    key_func or spam_key_func of one's own keeps arrival order."""
    expected = {
        (None, None): True,
        (None, correlator.spam_key_per_reason): True,
        (correlator.aggregate_by_reason, correlator.get_spam_key): True,
        (by_object_name, None): False,
        (None, one_bucket): False,
    }
    for (key_func, spam_key_func), apart in expected.items():
        options = correlator.CorrelatorOptions(key_func=key_func, spam_key_func=spam_key_func)
        assert correlator.EventCorrelator(options).keeps_objects_apart is apart


Item = tuple[str, str, int]  # object, message, position in the batch


def _keys(item: Item) -> tuple[str, object]:
    return item[0], item[1]


def _event(item: Item) -> models.Event:
    obj, message, position = item
    return models.Event(
        name=f"e{position}",
        namespace="ns",
        involved_object=models.ObjectReference(name=obj),
        reason="r",
        message=f"{obj}{message}{position}",
    )


def _messages(runs: list[_runs.Run]) -> list[list[str]]:
    return [[event.message for event in run] for run in runs]


@pytest.fixture(name="batch")
def _batch() -> list[Item]:
    pairs = [("a", "x"), ("b", "x"), ("a", "x"), ("a", "y"), ("a", "y"), ("b", "x")]
    return [(obj, message, n) for n, (obj, message) in enumerate(pairs)]


def test_cut_by_object_gathers_each_objects_repeats_in_their_order(batch) -> None:
    """Object by object: a's runs (x x, y y) then b's (x x), each in arrival order."""
    runs = _runs.cut(batch, _keys, _event, by_object=True)
    assert _messages(runs) == [["ax0", "ax2"], ["ay3", "ay4"], ["bx1", "bx5"]]


def test_cut_in_order_keeps_arrival_order(batch) -> None:
    """In arrival order: each occurrence a run of its own."""
    runs = _runs.cut(batch, _keys, _event, by_object=False)
    assert _messages(runs) == [["ax0"], ["bx1"], ["ax2"], ["ay3"], ["ay4"], ["bx5"]]


def test_two_cuts_of_a_batch_share_the_events_they_build(batch) -> None:
    """Sinks cut a batch differently, yet every one reads the same Event per occurrence."""
    made: list[Item] = []

    def build(item: Item) -> models.Event:
        made.append(item)
        return _event(item)

    built: dict[int, models.Event] = {}
    apart = _runs.cut(batch, _keys, build, by_object=True, built=built)
    in_order = _runs.cut(batch, _keys, build, by_object=False, built=built)
    first = [event for run in apart for event in run]
    second = [event for run in in_order for event in run]
    assert sorted(made) == sorted(batch)
    assert sorted(map(id, first)) == sorted(map(id, second))
