"""Tests of the correlator: client-go's events_cache_test.go and util_test.go, and more."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import struct
import threading
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_logging_events import clock as clocks
from k8s_logging_events import correlator as corr
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.models import Event, EventSource, ObjectReference
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SOURCE = EventSource(component="kubelet", host="kublet.node1")


# -- builders, after events_cache_test.go ------------------------------------------------------


def make_ref(kind: str, name: str, namespace: str) -> ObjectReference:
    """Return the reference makeObjectReference builds."""
    return ObjectReference(
        kind=kind,
        name=name,
        namespace=namespace,
        uid="C934D34AFB20242",
        api_version="version",
        field_path="spec.containers{mycontainer}",
    )


def make_event(reason: str, message: str, ref: ObjectReference, at: datetime = T0) -> Event:
    """Return the event makeEvent builds: kubelet source, count 1, Normal, first = last = at."""
    return Event(
        name="",
        namespace="",
        involved_object=ref,
        reason=reason,
        message=message,
        source=SOURCE,
        count=1,
        first_timestamp=at,
        last_timestamp=at,
        type="Normal",
    )


def make_events(num: int, template: Event) -> list[Event]:
    """Return ``num`` copies of ``template``."""
    return [template] * num


def make_unique_events(num: int) -> list[Event]:
    """Return ``num`` events about different pods in different namespaces."""
    return [
        make_event(f"reason-{i}", f"message-{i}", make_ref("Pod", f"pod-{i}", f"ns-{i}"))
        for i in range(num)
    ]


def make_similar_events(num: int, template: Event, prefix: str) -> list[Event]:
    """Return ``num`` copies of ``template`` whose messages differ: ``prefix-i-message``."""
    return [
        dataclasses.replace(template, message=f"{prefix}-{i}-{template.message}")
        for i in range(num)
    ]


def validate_event(actual: Event, expected: Event) -> None:
    """Check ``actual`` as validateEvent does: timestamps, name prefix, all else equal."""
    assert actual.first_timestamp is not None
    assert actual.last_timestamp is not None
    if expected.count > 1:
        # compression shows as different first and last timestamps
        assert actual.first_timestamp != actual.last_timestamp
    elif expected.count == 1:
        assert actual.first_timestamp == actual.last_timestamp
    assert actual.name.startswith(expected.name)
    comparable = dataclasses.replace(
        actual,
        first_timestamp=expected.first_timestamp,
        last_timestamp=expected.last_timestamp,
        reporting_controller=expected.reporting_controller,
        name=expected.name,
    )
    assert comparable == expected


def stamp(event: Event, clock: FakeClock) -> Event:
    """Set first and last timestamp from one clock read, as the Go test does per event."""
    now = clock.now()
    return dataclasses.replace(event, first_timestamp=now, last_timestamp=now)


def unix_nanos(value: datetime) -> int:
    """Return ``value`` in nanoseconds since the epoch."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000


def float32(value: float) -> float:
    """Round to single precision, as Go's float32 QPS field does."""
    rounded: float = struct.unpack("f", struct.pack("f", value))[0]
    return rounded


def new_correlator(clock: FakeClock, **options: object) -> corr.EventCorrelator:
    """Return a correlator on ``clock`` with the given options."""
    return corr.EventCorrelator(corr.CorrelatorOptions(clock=clock, **options))  # type: ignore[arg-type]


# -- events_cache_test.go ----------------------------------------------------------------------


class TestGoKeyAndMessageFuncs:
    """TestEventAggregatorByReasonFunc and TestEventAggregatorByReasonMessageFunc."""

    def test_aggregate_by_reason_groups_messages_of_one_reason(self) -> None:
        """Events differing only in message share the aggregate key; another reason does not."""
        event1 = make_event("end-of-world", "it was fun", make_ref("Pod", "pod1", "other"))
        event2 = make_event("end-of-world", "it was awful", make_ref("Pod", "pod1", "other"))
        event3 = make_event("nevermind", "it was a bug", make_ref("Pod", "pod1", "other"))

        aggregate1, local1 = corr.aggregate_by_reason(event1)
        aggregate2, local2 = corr.aggregate_by_reason(event2)
        aggregate3, _ = corr.aggregate_by_reason(event3)

        assert aggregate1 == aggregate2
        assert local1 != local2
        assert aggregate1 != aggregate3

    def test_combined_message_starts_with_prefix(self) -> None:
        """The aggregate message starts with "(combined from similar events): "."""
        event = make_event("end-of-world", "it was fun", make_ref("Pod", "pod1", "other"))

        assert corr.combined_message(event).startswith("(combined from similar events): ")


_FIRST = make_event("first", "i am first", make_ref("Pod", "my-pod", "my-ns"))
_DUPLICATE = make_event("duplicate", "me again", make_ref("Pod", "my-pod", "my-ns"))
_UNIQUE = make_event("unique", "snowflake", make_ref("Pod", "my-pod", "my-ns"))
_SIMILAR = make_event(
    "similar",
    "similar message",
    dataclasses.replace(
        make_ref("Pod", "my-pod", "my-ns"), field_path="spec.containers{container1}"
    ),
)
_AGGREGATE = make_event(_SIMILAR.reason, corr.combined_message(_SIMILAR), _SIMILAR.involved_object)
_SIMILAR_OTHER_CONTAINER = dataclasses.replace(
    _SIMILAR,
    involved_object=dataclasses.replace(
        _SIMILAR.involved_object, field_path="spec.containers{container2}"
    ),
)
_MAX = corr.DEFAULT_AGGREGATE_MAX_EVENTS


class TestGoEventCorrelator:
    """TestEventCorrelator: counting, aggregation and spam, on an interval clock."""

    @pytest.mark.parametrize(
        ("previous", "new", "expected", "interval", "expected_skip"),
        [
            pytest.param([], _FIRST, _FIRST, 5, False, id="create-a-single-event"),
            pytest.param(
                make_events(1, _DUPLICATE),
                _DUPLICATE,
                dataclasses.replace(_DUPLICATE, count=2),
                5,
                False,
                id="the-same-event-should-just-count",
            ),
            pytest.param(
                make_events(_MAX, _DUPLICATE),
                _DUPLICATE,
                dataclasses.replace(_DUPLICATE, count=_MAX + 1),
                30,
                False,
                id="the-same-event-should-just-count-even-if-more-than-aggregate",
            ),
            pytest.param(
                make_events(corr.DEFAULT_SPAM_BURST + 1, _DUPLICATE),
                _DUPLICATE,
                None,
                1,
                True,
                id="the-same-event-is-spam-if-happens-too-frequently",
            ),
            pytest.param(
                make_unique_events(30), _UNIQUE, _UNIQUE, 5, False, id="create-many-unique-events"
            ),
            pytest.param(
                make_similar_events(_MAX - 1, _SIMILAR, _SIMILAR.message),
                _SIMILAR,
                _AGGREGATE,
                5,
                False,
                id="similar-events-should-aggregate-event",
            ),
            pytest.param(
                make_similar_events(_MAX, _SIMILAR, _SIMILAR.message),
                _SIMILAR,
                dataclasses.replace(_AGGREGATE, count=2),
                5,
                False,
                id="similar-events-many-times-should-count-the-aggregate",
            ),
            pytest.param(
                make_events(1, _SIMILAR_OTHER_CONTAINER),
                _SIMILAR,
                _SIMILAR,
                5,
                False,
                id="events-from-different-containers-do-not-aggregate",
            ),
            pytest.param(
                make_similar_events(_MAX - 1, _SIMILAR, _SIMILAR.message),
                _SIMILAR,
                _SIMILAR,
                int(corr.DEFAULT_AGGREGATE_INTERVAL_SECONDS),
                False,
                id="similar-events-whose-interval-is-greater-than-aggregate-interval-do-not-aggregate",
            ),
        ],
    )
    def test_scenario(
        self,
        previous: list[Event],
        new: Event,
        expected: Event | None,
        interval: int,
        expected_skip: bool,
    ) -> None:
        """Playing back ``previous`` then correlating ``new`` gives the expected event or skip."""
        clock = FakeClock(tick=interval)
        correlator = corr.EventCorrelator(corr.CorrelatorOptions(clock=clock))
        for event in previous:
            result = correlator.correlate(stamp(event, clock))
            if not result.skip:
                assert result.event is not None
                correlator.update_state(result.event)

        result = correlator.correlate(stamp(new, clock))

        assert result.skip == expected_skip
        if expected is not None:
            assert result.event is not None
            validate_event(result.event, expected)


_SPAM_ORIGINAL = make_event("original", "i am first", make_ref("Pod", "my-pod", "my-ns"))
_SPAM_OTHER_REASON = make_event("duplicate", "me again", make_ref("Pod", "my-pod", "my-ns"))
_SPAM_SAME_REASON = make_event("original", "me again", make_ref("Pod", "my-pod", "my-ns"))


def _spam_key_with_reason(event: Event) -> str:
    """The Go test's custom spam key: objects and reason, no type."""
    ref = event.involved_object
    return "".join(
        (
            event.source.component,
            event.source.host,
            ref.kind,
            ref.namespace,
            ref.name,
            ref.uid,
            ref.api_version,
            event.reason,
        )
    )


class TestGoEventSpamFilter:
    """TestEventSpamFilter: burst 1, default and custom spam keys."""

    @pytest.mark.parametrize(
        ("new", "expected_skip", "spam_key_func"),
        [
            pytest.param(
                _SPAM_OTHER_REASON,
                True,
                None,
                id="same-object-is-spam-for-default-key-even-with-another-reason",
            ),
            pytest.param(
                _SPAM_OTHER_REASON,
                False,
                _spam_key_with_reason,
                id="another-reason-is-not-spam-for-key-with-reason",
            ),
            pytest.param(
                _SPAM_SAME_REASON,
                True,
                _spam_key_with_reason,
                id="same-reason-other-message-is-spam-for-key-with-reason",
            ),
        ],
    )
    def test_scenario(
        self, new: Event, expected_skip: bool, spam_key_func: corr.SpamKeyFunc | None
    ) -> None:
        """After one original event, ``new`` is skipped or not according to the spam key."""
        clock = FakeClock(tick=1)
        correlator = corr.EventCorrelator(
            corr.CorrelatorOptions(clock=clock, spam_key_func=spam_key_func, burst_size=1)
        )
        result = correlator.correlate(_SPAM_ORIGINAL)
        assert not result.skip
        assert result.event is not None
        correlator.update_state(result.event)

        result = correlator.correlate(new)

        assert result.skip == expected_skip
        if not expected_skip:
            assert result.event is not None
            validate_event(result.event, new)


# -- util_test.go ------------------------------------------------------------------------------


class TestGoGenerateEventName:
    """TestGenerateEventName: object name plus hex time, or a UUID when that is invalid."""

    @pytest.mark.parametrize(
        ("ref_name", "expected"),
        [
            pytest.param("test-pod", "test-pod.178959f726d80ec", id="valid-name"),
            pytest.param("x" * 300, None, id="too-long"),
            pytest.param("test.POD", None, id="upper-case"),
            pytest.param("test.pod/invalid!chars?", None, id="special-chars"),
            pytest.param("--test.pod/invalid!chars?", None, id="special-chars-bad-start"),
        ],
    )
    def test_generate_event_name(self, ref_name: str, expected: str | None) -> None:
        """The name is always a DNS subdomain, and ``name.hex`` when that is one."""
        actual = corr.generate_event_name(ref_name, 105999103295324396)

        assert corr.is_dns_subdomain(actual)
        if expected is not None:
            assert actual == expected


# -- keys ----------------------------------------------------------------------------------------


def _full_event(**changes: object) -> Event:
    """Return an event with every key field set, with ``changes`` applied."""
    event = Event(
        name="n",
        namespace="ns",
        involved_object=ObjectReference(
            kind="Pod",
            namespace="ns",
            name="pod",
            uid="uid-1",
            api_version="v1",
            resource_version="7",
            field_path="spec.containers{c}",
        ),
        reason="Reason",
        message="msg",
        source=EventSource(component="comp", host="host"),
        type="Warning",
        reporting_controller="ctrl",
        reporting_instance="inst",
        annotations={"a": "b"},
        action="Act",
    )
    return dataclasses.replace(event, **changes)  # type: ignore[arg-type]


def _with_ref(**changes: str) -> Event:
    """Return the full event with its involved object changed."""
    event = _full_event()
    return dataclasses.replace(
        event, involved_object=dataclasses.replace(event.involved_object, **changes)
    )


class TestKeys:
    """The three keys: which fields, in which order, joined with nothing."""

    def test_event_key_fields_in_order(self) -> None:
        """The event key: source, object (field path, no version), type, reason, message."""
        assert (
            corr.get_event_key(_full_event())
            == "comphostPodnspodspec.containers{c}uid-1v1WarningReasonmsg"
        )

    def test_spam_key_fields_in_order(self) -> None:
        """The spam key is source, object (no field path, no version) and type."""
        assert corr.get_spam_key(_full_event()) == "comphostPodnspoduid-1v1Warning"

    def test_aggregate_key_fields_in_order(self) -> None:
        """The aggregate key adds reason and reporting fields; the local key is the message."""
        assert corr.aggregate_by_reason(_full_event()) == (
            "comphostPodnspoduid-1v1WarningReasonctrlinst",
            "msg",
        )

    def test_keys_concatenate_without_separators(self) -> None:
        """Component "ab" on host "c" collides with component "a" on host "bc", as in client-go."""
        one = _full_event(source=EventSource(component="ab", host="c"))
        other = _full_event(source=EventSource(component="a", host="bc"))

        assert corr.get_event_key(one) == corr.get_event_key(other)
        assert corr.get_spam_key(one) == corr.get_spam_key(other)
        assert corr.aggregate_by_reason(one) == corr.aggregate_by_reason(other)

    def test_field_path_only_in_event_key(self) -> None:
        """Two containers of a pod are different events but share spam bucket and group."""
        one = _with_ref(field_path="spec.containers{a}")
        other = _with_ref(field_path="spec.containers{b}")

        assert corr.get_event_key(one) != corr.get_event_key(other)
        assert corr.get_spam_key(one) == corr.get_spam_key(other)
        assert corr.aggregate_by_reason(one) == corr.aggregate_by_reason(other)

    def test_resource_version_in_no_key(self) -> None:
        """Events about successive versions of an object are the same event."""
        one = _with_ref(resource_version="1")
        other = _with_ref(resource_version="2")

        assert corr.get_event_key(one) == corr.get_event_key(other)
        assert corr.get_spam_key(one) == corr.get_spam_key(other)
        assert corr.aggregate_by_reason(one) == corr.aggregate_by_reason(other)

    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({"annotations": {"x": "y"}}, id="annotations"),
            pytest.param({"action": "Other"}, id="action"),
            pytest.param({"name": "other-name"}, id="name"),
            pytest.param({"namespace": "other-ns"}, id="namespace"),
            pytest.param({"event_time": T0}, id="event-time"),
            pytest.param({"count": 9}, id="count"),
            pytest.param({"last_timestamp": T0}, id="last-timestamp"),
            pytest.param({"related": ObjectReference(name="r")}, id="related"),
        ],
    )
    def test_fields_in_no_key(self, changes: dict[str, object]) -> None:
        """Annotations, action, the event's own name and times and related are in no key."""
        one = _full_event()
        other = _full_event(**changes)

        assert corr.get_event_key(one) == corr.get_event_key(other)
        assert corr.get_spam_key(one) == corr.get_spam_key(other)
        assert corr.aggregate_by_reason(one) == corr.aggregate_by_reason(other)

    def test_spam_key_has_type_not_reason(self) -> None:
        """Another type gets another spam bucket; another reason does not."""
        base = _full_event()

        assert corr.get_spam_key(base) != corr.get_spam_key(_full_event(type="Normal"))
        assert corr.get_spam_key(base) == corr.get_spam_key(_full_event(reason="Other"))

    def test_reporting_fields_only_in_aggregate_key(self) -> None:
        """Reporting controller and instance split aggregation groups but not events or buckets."""
        base = _full_event()
        other = _full_event(reporting_controller="x", reporting_instance="y")

        assert corr.aggregate_by_reason(base)[0] != corr.aggregate_by_reason(other)[0]
        assert corr.get_event_key(base) == corr.get_event_key(other)
        assert corr.get_spam_key(base) == corr.get_spam_key(other)

    def test_combined_message_is_prefix_plus_message(self) -> None:
        """The default aggregate message is exactly the prefix followed by the message."""
        assert corr.combined_message(_full_event()) == "(combined from similar events): msg"
        assert corr.COMBINED_MESSAGE_PREFIX == "(combined from similar events): "


# -- names and types -----------------------------------------------------------------------------


class TestNamesAndTypes:
    """Event names and event types, from tools/record/util."""

    @pytest.mark.parametrize(
        ("value", "valid"),
        [
            pytest.param("a", True, id="one-char"),
            pytest.param("a.b-c.d0", True, id="dotted"),
            pytest.param("0pod.17", True, id="digits"),
            pytest.param("a" * 253, True, id="253-chars"),
            pytest.param("a" * 254, False, id="254-chars"),
            pytest.param("", False, id="empty"),
            pytest.param("-a", False, id="label-starts-with-dash"),
            pytest.param("a-", False, id="label-ends-with-dash"),
            pytest.param("a.-b", False, id="inner-label-starts-with-dash"),
            pytest.param(".a", False, id="leading-dot"),
            pytest.param("a..b", False, id="empty-label"),
            pytest.param("a.", False, id="trailing-dot"),
            pytest.param("A", False, id="upper-case"),
            pytest.param("a_b", False, id="underscore"),
            pytest.param("a\n", False, id="trailing-newline"),
            pytest.param("fe80::1", False, id="ipv6"),
            pytest.param("é", False, id="non-ascii"),
        ],
    )
    def test_is_dns_subdomain(self, value: str, valid: bool) -> None:
        """≤ 253 chars of lowercase alnum, '-' and '.'; labels alnum at both ends."""
        assert corr.is_dns_subdomain(value) == valid

    def test_name_is_object_name_and_lowercase_hex(self) -> None:
        """A valid name is the object name, a dot and the nanoseconds in unpadded lowercase hex."""
        assert corr.generate_event_name("pod", 255) == "pod.ff"
        assert corr.generate_event_name("pod", 0) == "pod.0"

    @pytest.mark.parametrize(
        ("ref_name", "nanos"),
        [
            pytest.param("POD", 1, id="invalid-object-name"),
            pytest.param("pod", -31, id="negative-time-gives-dash-label"),
            pytest.param("", 1, id="empty-object-name"),
        ],
    )
    def test_invalid_name_falls_back_to_uuid4(self, ref_name: str, nanos: int) -> None:
        """An invalid ``name.hex`` is replaced by a random version-4 UUID."""
        name = corr.generate_event_name(ref_name, nanos)

        assert uuid.UUID(name).version == 4
        assert name == str(uuid.UUID(name))
        assert corr.is_dns_subdomain(name)

    def test_uuid_names_differ(self) -> None:
        """Each fallback name is new."""
        assert corr.generate_event_name("X", 1) != corr.generate_event_name("X", 1)

    @pytest.mark.parametrize(
        ("value", "valid"),
        [
            pytest.param("Normal", True, id="Normal"),
            pytest.param("Warning", True, id="Warning"),
            pytest.param("normal", False, id="lower-case"),
            pytest.param("WARNING", False, id="upper-case"),
            pytest.param("Error", False, id="Error"),
            pytest.param("", False, id="empty"),
        ],
    )
    def test_validate_event_type(self, value: str, valid: bool) -> None:
        """Only Normal and Warning, exactly, are event types."""
        assert corr.validate_event_type(value) == valid


# -- count patch ---------------------------------------------------------------------------------


def _patch_of(**changes: object) -> bytes:
    """Return the count patch of a repeat with ``changes``."""
    event = Event(
        name="e",
        namespace="ns",
        involved_object=ObjectReference(kind="Pod", name="p"),
        message="m",
        count=2,
        last_timestamp=datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC),
    )
    return corr.count_patch(dataclasses.replace(event, **changes))  # type: ignore[arg-type]


class TestCountPatch:
    """The strategic-merge patch of a repeat, byte for byte as Go writes it."""

    def test_documented_example(self) -> None:
        """Count, last timestamp and message, sorted keys, no spaces."""
        assert _patch_of() == b'{"count":2,"lastTimestamp":"2024-01-01T00:00:05Z","message":"m"}'

    def test_timestamp_whole_seconds_utc(self) -> None:
        """The last timestamp is written in UTC, whole seconds (truncated), with Z."""
        last = datetime(2024, 1, 1, 2, 0, 5, 999_999, tzinfo=timezone(timedelta(hours=2)))

        assert (
            _patch_of(count=3, last_timestamp=last)
            == b'{"count":3,"lastTimestamp":"2024-01-01T00:00:05Z","message":"m"}'
        )

    def test_only_count_timestamp_and_message(self) -> None:
        """Nothing but the three diffed fields appears, whatever else the event carries."""
        patch = _patch_of(
            annotations={"a": "b"},
            reporting_controller="c",
            reason="R",
            type="Warning",
            first_timestamp=T0,
            resource_version="9",
        )

        assert patch == b'{"count":2,"lastTimestamp":"2024-01-01T00:00:05Z","message":"m"}'

    def test_empty_message_left_out(self) -> None:
        """An empty message equals the base, so it is not in the patch."""
        assert _patch_of(message="") == b'{"count":2,"lastTimestamp":"2024-01-01T00:00:05Z"}'

    def test_a_count_of_one_is_written(self) -> None:
        """Only a zero count equals the base: 1 is in the patch, as Go's diff keeps it."""
        patch = _patch_of(count=1)
        assert patch == b'{"count":1,"lastTimestamp":"2024-01-01T00:00:05Z","message":"m"}'

    def test_zero_count_left_out(self) -> None:
        """A zero count equals the base (Go omits it), so it is not in the patch."""
        assert _patch_of(count=0) == b'{"lastTimestamp":"2024-01-01T00:00:05Z","message":"m"}'

    def test_missing_last_timestamp_is_null(self) -> None:
        """No last timestamp serialises as null, as Go's zero time, which differs from the base."""
        assert _patch_of(last_timestamp=None) == b'{"count":2,"lastTimestamp":null,"message":"m"}'

    def test_epoch_last_timestamp_left_out(self) -> None:
        """A last timestamp in the first second of 1970 equals the base and is not in the patch."""
        epoch = datetime(1970, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)

        assert _patch_of(last_timestamp=epoch) == b'{"count":2,"message":"m"}'

    def test_nothing_differs_gives_empty_object(self) -> None:
        """With all three fields equal to the base the patch is an empty object."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)

        assert _patch_of(count=0, message="", last_timestamp=epoch) == b"{}"

    @pytest.mark.parametrize(
        ("message", "encoded"),
        [
            pytest.param("é 日本 😀", "é 日本 😀", id="utf8-as-is"),
            pytest.param("a<b>&c", "a\\u003cb\\u003e\\u0026c", id="html-escaped"),
            pytest.param("\u2028\u2029", "\\u2028\\u2029", id="line-separators-escaped"),
            pytest.param('q"b\\', 'q\\"b\\\\', id="quote-and-backslash"),
            pytest.param("\n\r\t\b\f", "\\n\\r\\t\\b\\f", id="short-escapes"),
            pytest.param("\x01\x1f", "\\u0001\\u001f", id="control-chars"),
            pytest.param("\x7f", "\x7f", id="del-as-is"),
            pytest.param("a\ud800b", "a\ufffdb", id="lone-surrogate-replaced"),
        ],
    )
    def test_message_encoded_as_go_does(self, message: str, encoded: str) -> None:
        """Strings are escaped as Go's json.Marshal does: UTF-8 kept, HTML characters escaped."""
        expected = '{"count":2,"lastTimestamp":"2024-01-01T00:00:05Z","message":"' + encoded + '"}'

        assert _patch_of(message=message) == expected.encode("utf-8")


# -- aggregation ---------------------------------------------------------------------------------


def _similar(i: int, **changes: object) -> Event:
    """Return the ``i``-th event of a group that differs only in message."""
    event = make_event("Failed", f"message {i}", make_ref("Pod", "my-pod", "my-ns"))
    fields: dict[str, object] = {"namespace": "my-ns", "name": f"my-pod.{i}", **changes}
    return dataclasses.replace(event, **fields)  # type: ignore[arg-type]


def _aggregate_set(correlator: corr.EventCorrelator, event: Event) -> set[str]:
    """Peek at the aggregation record's set of local keys (white box: Go map order is hidden)."""
    aggregate_key, _ = corr.aggregate_by_reason(event)
    return correlator._aggregator._cache[aggregate_key].local_keys


class TestAggregation:
    """The aggregator: when similar events are combined, and what the combined event is."""

    def test_tenth_distinct_message_is_first_combined(self) -> None:
        """Messages 1-9 go out as they are; the 10th is combined, leaving 9 in the set."""
        clock = FakeClock()
        correlator = new_correlator(clock)
        for i in range(9):
            result = correlator.correlate(_similar(i))
            assert result.event == _similar(i)

        result = correlator.correlate(_similar(9))

        assert result.event is not None
        assert result.event.message == "(combined from similar events): message 9"
        assert len(_aggregate_set(correlator, _similar(0))) == corr.DEFAULT_AGGREGATE_MAX_EVENTS - 1

    def test_every_further_new_message_is_combined_and_counted(self) -> None:
        """After the first combination every unseen message is combined into the same event."""
        clock = FakeClock(tick=1)
        correlator = new_correlator(clock)
        results = [correlator.correlate(_similar(i)) for i in range(12)]

        combined = [r.event for r in results[9:]]
        assert [e.count for e in combined if e is not None] == [1, 2, 3]
        assert len({e.name for e in combined if e is not None}) == 1
        assert results[10].patch is not None
        assert len(_aggregate_set(correlator, _similar(0))) == 9

    def test_message_still_in_set_goes_out_on_its_own(self) -> None:
        """A message that is still one of the 9 kept is not combined; its own count rises."""
        correlator = new_correlator(FakeClock())
        for i in range(10):
            correlator.correlate(_similar(i))
        # the 10th message went out combined, so only the first nine have counts of their own
        kept = next(m for m in _aggregate_set(correlator, _similar(0)) if m != "message 9")
        index = int(kept.removeprefix("message "))

        result = correlator.correlate(_similar(index))

        assert result.event is not None
        assert result.event.message == kept
        assert result.event.count == 2

    def test_aggregate_event_has_only_copied_fields(self) -> None:
        """The combined event copies object, type, reason and source; nothing else is kept."""
        clock = FakeClock()
        now = clock.now()
        correlator = new_correlator(clock)
        extras = {
            "annotations": {"a": "b"},
            "reporting_controller": "ctrl",
            "reporting_instance": "inst",
            "action": "Act",
            "resource_version": "5",
            "event_time": T0,
            "related": ObjectReference(name="r"),
            "namespace": "event-ns",
        }
        for i in range(9):
            correlator.correlate(_similar(i, **extras))

        result = correlator.correlate(_similar(9, **extras))

        incoming = _similar(9)
        assert result.event is not None
        assert result.event == Event(
            name=result.event.name,  # unique in the process, see the test below
            namespace="event-ns",
            involved_object=incoming.involved_object,
            reason=incoming.reason,
            message="(combined from similar events): message 9",
            source=incoming.source,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            type=incoming.type,
        )
        assert result.patch is None

    def test_aggregate_name_uses_the_aggregator_clock_read(self) -> None:
        """The name's hex comes from the aggregator's own read (made unique in the process)."""
        clock = FakeClock(tick=7)
        correlator = new_correlator(clock)
        for i in range(9):
            correlator.correlate(_similar(i))
        aggregator_now = clock.now() + timedelta(seconds=7)

        result = correlator.correlate(_similar(9))

        assert result.event is not None
        prefix, _, hex_nanos = result.event.name.rpartition(".")
        assert prefix == "my-pod"
        assert int(hex_nanos, 16) >= unix_nanos(aggregator_now)
        assert result.event.first_timestamp == aggregator_now

    @pytest.mark.parametrize("ref_name", ["UPPER", "web/0", "50%"])
    def test_aggregate_names_fall_back_to_a_uuid_like_every_other_name(self, ref_name) -> None:
        """client-go names the combined event <name>.<hex> without checking it, and an object
        named web/0 or 50% then loses every combined occurrence to a 422: here it gets the
        UUID fallback that recorded events get."""
        correlator = new_correlator(FakeClock())
        ref = ObjectReference(kind="Pod", name=ref_name)
        for i in range(10):
            result = correlator.correlate(
                Event(name="x", namespace="", involved_object=ref, message=str(i), count=1)
            )

        assert result.event is not None
        assert result.event.message.startswith(corr.COMBINED_MESSAGE_PREFIX)
        assert corr.is_dns_subdomain(result.event.name)

    def test_names_never_repeat_even_when_the_clock_stands_still(self) -> None:
        """A namer bumps a repeated instant per object, so two events never share a name;
        the first name for an object follows from its time alone (client-go's name)."""
        now = FakeClock().now()
        namer = corr.EventNamer()
        first, second = namer.name("foo", now), namer.name("foo", now)
        assert first == f"foo.{unix_nanos(now):x}"
        assert second == f"foo.{unix_nanos(now) + 1:x}"
        assert namer.name("bar", now) == f"bar.{unix_nanos(now):x}"

    def test_the_namer_forgets_the_least_recently_named_object_first(self) -> None:
        """Bounded: past ``size`` objects, the one named longest ago is forgotten (its next
        name follows from the time alone again); naming an object makes it recent."""
        now = FakeClock().now()
        namer = corr.EventNamer(size=2)
        namer.name("a", now)
        namer.name("b", now)
        namer.name("a", now)  # a is now the most recent
        namer.name("c", now)  # forgets b, not a
        assert namer.name("a", now) == f"a.{unix_nanos(now) + 2:x}"
        assert namer.name("b", now) == f"b.{unix_nanos(now):x}"

    def test_window_boundary_is_strictly_greater(self) -> None:
        """Exactly max_interval after the last similar event still aggregates; a bit more resets."""
        for gap, combined in ((600.0, True), (600.000001, False)):
            clock = FakeClock()
            correlator = new_correlator(clock)
            for i in range(9):
                correlator.correlate(_similar(i))
            clock.step(gap)

            result = correlator.correlate(_similar(9))

            assert result.event is not None
            assert result.event.message.startswith(corr.COMBINED_MESSAGE_PREFIX) == combined

    def test_window_slides_with_each_similar_event(self) -> None:
        """Ten messages 500 s apart (75 min in all) are still combined: the window slides."""
        clock = FakeClock()
        correlator = new_correlator(clock)
        for i in range(9):
            correlator.correlate(_similar(i))
            clock.step(500)

        result = correlator.correlate(_similar(9))

        assert result.event is not None
        assert result.event.message.startswith(corr.COMBINED_MESSAGE_PREFIX)

    def test_an_occurrence_come_late_does_not_move_the_window_back(self) -> None:
        """Occurrences logged at 0 s and 500 s, then one logged at 100 s that the correlator
        comes to after them (another thread's): the window runs from 500 s, so seven more
        distinct messages at 1050 s make the tenth, combined (from 100 s, it had ended)."""
        correlator = new_correlator(FakeClock())
        for i, logged in enumerate((0.0, 500.0, 100.0)):
            correlator.correlate(_similar(i, observed=logged))
        results = [correlator.correlate(_similar(i, observed=1050.0)).event for i in range(3, 10)]

        combined = [
            e is not None and e.message.startswith(corr.COMBINED_MESSAGE_PREFIX) for e in results
        ]
        assert combined == [False] * 6 + [True]

    def test_reset_window_starts_a_fresh_set(self) -> None:
        """After a quiet interval the set restarts at one member."""
        clock = FakeClock()
        correlator = new_correlator(clock)
        for i in range(5):
            correlator.correlate(_similar(i))
        clock.step(601)

        correlator.correlate(_similar(5))

        assert _aggregate_set(correlator, _similar(0)) == {"message 5"}

    def test_identical_repeats_never_aggregate(self) -> None:
        """Repeating one message never grows the set, so it is counted, never combined."""
        correlator = new_correlator(FakeClock(), burst_size=100)
        results = [correlator.correlate(_similar(0)) for _ in range(20)]

        assert [r.event.count for r in results if r.event is not None] == list(range(1, 21))
        assert _aggregate_set(correlator, _similar(0)) == {"message 0"}

    def test_custom_max_events_key_and_message_funcs(self) -> None:
        """max_events, key_func and message_func replace the defaults."""
        correlator = new_correlator(
            FakeClock(), max_events=2, key_func=_by_name_and_reason, message_func=_upper_message
        )
        first = correlator.correlate(_similar(0, reason="A"))
        second = correlator.correlate(_similar(1, reason="B"))

        assert first.event is not None
        assert first.event.message == "message 0"
        assert second.event is not None
        assert second.event.message == "MESSAGE 1"
        assert second.event.reason == "B"

    def test_custom_max_interval(self) -> None:
        """max_interval_seconds replaces the 600 s window."""
        clock = FakeClock()
        correlator = new_correlator(clock, max_events=2, max_interval_seconds=10)
        correlator.correlate(_similar(0))
        clock.step(11)

        result = correlator.correlate(_similar(1))

        assert result.event == _similar(1)


# -- observing and counting ----------------------------------------------------------------------


class TestObserver:
    """Counting repeats: what a repeat carries over, and what update_state feeds back."""

    def test_first_occurrence_unchanged_without_patch(self) -> None:
        """An event never seen goes out as it is, with no patch."""
        event = _similar(0)

        result = corr.EventCorrelator(corr.CorrelatorOptions(clock=FakeClock())).correlate(event)

        assert result == corr.CorrelateResult(event=event, patch=None, skip=False, observed=event)

    def test_a_result_is_a_plain_frozen_value(self) -> None:
        """Built from event, patch and skip (observed optional), equal by its fields, frozen,
        and shown with all four; a repeat's count patch is in it as the result is made."""
        correlator = new_correlator(FakeClock())
        first = correlator.correlate(_similar(0))
        repeat = correlator.correlate(_similar(0))

        held = corr.CorrelateResult(None, None, True)
        assert held == corr.CorrelateResult(event=None, patch=None, skip=True, observed=None)
        assert held != corr.CorrelateResult(None, None, False)
        assert repr(held) == "CorrelateResult(event=None, patch=None, skip=True, observed=None)"
        with pytest.raises(dataclasses.FrozenInstanceError):
            held.skip = False  # type: ignore[misc]
        assert repeat.event is not None
        assert repeat == corr.CorrelateResult(
            repeat.event, corr.count_patch(repeat.event), False, repeat.event
        )
        assert repeat != first
        assert repr(repeat).startswith(f"CorrelateResult(event={repeat.event!r}, patch=b'")

    def test_a_result_equals_the_value_of_event_patch_and_skip_the_api_names(self) -> None:
        """``CorrelateResult(event, patch, skip)`` is the API's value: what ``correlate`` returns
        equals one built from those three, a held occurrence (its counted event kept aside in
        ``observed``) included."""
        correlator = new_correlator(FakeClock(), burst_size=1)
        event = _similar(0)
        assert correlator.correlate(event) == corr.CorrelateResult(event, None, False)
        held = correlator.correlate(event)
        assert held == corr.CorrelateResult(None, None, True)
        assert held.observed is not None
        assert held.observed.count == 2

    def test_repeat_carries_name_first_timestamp_and_resource_version(self) -> None:
        """A repeat takes stored name, first timestamp and version; keeps its last and message."""
        clock = FakeClock()
        correlator = new_correlator(clock)
        first = correlator.correlate(_similar(0))
        assert first.event is not None
        correlator.update_state(
            dataclasses.replace(first.event, name="stored", resource_version="42")
        )
        last = T0 + timedelta(seconds=30, microseconds=250)
        repeat = _similar(0, name="my-pod.other", last_timestamp=last, first_timestamp=last)

        result = correlator.correlate(repeat)

        expected = dataclasses.replace(
            repeat, name="stored", resource_version="42", first_timestamp=T0, count=2
        )
        assert result.event == expected
        assert result.observed == expected
        assert (
            result.patch
            == b'{"count":2,"lastTimestamp":"2024-01-01T00:00:30Z","message":"message 0"}'
        )

    def test_counts_without_update_state(self) -> None:
        """Without feedback the correlator counts on its own, keeping the first name."""
        correlator = new_correlator(FakeClock())
        results = [correlator.correlate(_similar(0, name=f"n{i}")) for i in range(3)]

        assert [r.event.count for r in results if r.event is not None] == [1, 2, 3]
        assert [r.event.name for r in results if r.event is not None] == ["n0", "n0", "n0"]
        assert results[0].patch is None
        assert results[2].patch is not None

    def test_cached_count_zero_is_a_miss(self) -> None:
        """An event stored with count 0 counts as not seen: no patch, unchanged."""
        correlator = new_correlator(FakeClock())
        event = _similar(0, count=0)
        correlator.correlate(event)

        result = correlator.correlate(event)

        assert result.event == event
        assert result.patch is None

    def test_update_state_sets_the_count(self) -> None:
        """The server's count replaces the local one; the next repeat is one more."""
        correlator = new_correlator(FakeClock())
        correlator.correlate(_similar(0))
        correlator.update_state(_similar(0, count=7, name="srv"))

        result = correlator.correlate(_similar(0))

        assert result.event is not None
        assert (result.event.count, result.event.name) == (8, "srv")

    def test_update_state_below_the_observed_count_keeps_the_observed_one(self) -> None:
        """A write answered after later repeats were counted (the writer runs behind) feeds back
        a lower count: its name is taken, its count is not, so no occurrence counts twice."""
        correlator = new_correlator(FakeClock())
        for _ in range(3):
            correlator.correlate(_similar(0))
        correlator.update_state(_similar(0, count=1, name="srv"))

        result = correlator.correlate(_similar(0))

        assert result.event is not None
        assert (result.event.count, result.event.name) == (4, "srv")

    def test_update_state_of_an_unseen_event(self) -> None:
        """update_state files the event under its event key, so its next occurrence is a repeat."""
        correlator = new_correlator(FakeClock())
        correlator.update_state(_similar(0, count=3, name="srv", resource_version="9"))

        result = correlator.correlate(_similar(0))

        assert result.event is not None
        assert (
            result.event.count,
            result.event.name,
            result.event.resource_version,
        ) == (4, "srv", "9")

    def test_input_event_is_not_changed(self) -> None:
        """A repeat is a new Event; the caller's event keeps its own values."""
        correlator = new_correlator(FakeClock())
        event = _similar(0)
        correlator.correlate(event)

        result = correlator.correlate(event)

        assert result.event is not event
        assert event.count == 1


# -- spam filter ---------------------------------------------------------------------------------


class TestSpamFilter:
    """The token bucket per spam key, and how it meets counting."""

    def test_bucket_starts_full(self) -> None:
        """25 events at one instant pass; the 26th is held back."""
        correlator = new_correlator(FakeClock())
        results = [correlator.correlate(_similar(0)) for _ in range(26)]

        assert [r.skip for r in results] == [False] * 25 + [True]

    def test_skipped_result_has_observed_only(self) -> None:
        """A held-back event gives no event and no patch, but the counted occurrence."""
        correlator = new_correlator(FakeClock(), burst_size=1)
        correlator.correlate(_similar(0))

        result = correlator.correlate(_similar(0))

        assert result.skip
        assert result.event is None
        assert result.patch is None
        assert result.observed is not None
        assert result.observed.count == 2

    def test_filtered_occurrences_still_count(self) -> None:
        """The count is kept before filtering: the next passing event includes held-back ones."""
        clock = FakeClock()
        correlator = new_correlator(clock, burst_size=2)
        counts = [correlator.correlate(_similar(0)).skip for _ in range(4)]
        assert counts == [False, False, True, True]
        clock.step(300)

        result = correlator.correlate(_similar(0))

        assert result.event is not None
        assert result.event.count == 5
        assert result.patch is not None
        assert result.patch.startswith(b'{"count":5,')

    def test_refills_at_qps(self) -> None:
        """With qps 1 a drained bucket has a token again one second later, not before."""
        clock = FakeClock()
        correlator = new_correlator(clock, burst_size=1, qps=1.0)
        assert not correlator.correlate(_similar(0)).skip
        clock.step(0.5)
        assert correlator.correlate(_similar(0)).skip
        clock.step(0.5)

        assert not correlator.correlate(_similar(0)).skip

    def test_default_refill_is_one_per_300_seconds(self) -> None:
        """A drained default bucket refills one token in (float32) 300 s."""
        clock = FakeClock()
        correlator = new_correlator(clock)
        for _ in range(25):
            correlator.correlate(_similar(0))
        clock.step(299)
        assert correlator.correlate(_similar(0)).skip
        clock.step(1)

        assert not correlator.correlate(_similar(0)).skip
        assert correlator.correlate(_similar(0)).skip

    def test_capped_at_burst(self) -> None:
        """However long the quiet, a bucket holds at most burst tokens."""
        clock = FakeClock()
        correlator = new_correlator(clock, burst_size=3, qps=1.0)
        for _ in range(3):
            correlator.correlate(_similar(0))
        clock.step(1000)

        results = [correlator.correlate(_similar(0)).skip for _ in range(4)]

        assert results == [False, False, False, True]

    def test_a_token_is_taken_when_the_occurrence_was_logged(self) -> None:
        """An occurrence logged with the bucket empty finds no token, however late the
        correlator comes to it (it took one refilled meanwhile); a held count released later
        (take_token) takes its token at the release."""
        clock = FakeClock()
        correlator = new_correlator(clock, burst_size=1, qps=1.0)
        assert not correlator.correlate(_similar(0, observed=clock.monotonic())).skip
        late = _similar(0, observed=clock.monotonic())
        clock.step(1)  # the correlator comes to it a second later

        assert correlator.correlate(late).skip
        assert correlator.take_token(late)

    def test_refused_take_consumes_nothing(self) -> None:
        """A held-back event takes no token and does not delay the refill."""
        clock = FakeClock()
        correlator = new_correlator(clock, burst_size=1, qps=1.0)
        correlator.correlate(_similar(0))
        for _ in range(5):
            clock.step(0.1)
            assert correlator.correlate(_similar(0)).skip
        clock.step(0.5)

        assert not correlator.correlate(_similar(0)).skip

    def test_evicted_key_gets_a_full_bucket(self) -> None:
        """When the LRU drops a spam key, its next event starts from a full bucket."""
        correlator = new_correlator(FakeClock(), burst_size=1, lru_cache_size=1)
        a = _similar(0)
        b = _similar(0, involved_object=make_ref("Pod", "other-pod", "my-ns"))
        assert not correlator.correlate(a).skip
        assert correlator.correlate(a).skip
        assert not correlator.correlate(b).skip

        assert not correlator.correlate(a).skip

    def test_key_promoted_on_every_call(self) -> None:
        """A refused call still makes the key recently used, so another key is evicted first."""
        correlator = new_correlator(FakeClock(), burst_size=1, lru_cache_size=2)
        a = _similar(0)
        b = _similar(0, involved_object=make_ref("Pod", "b", "my-ns"))
        c = _similar(0, involved_object=make_ref("Pod", "c", "my-ns"))
        correlator.correlate(a)
        correlator.correlate(b)
        assert correlator.correlate(a).skip
        correlator.correlate(c)

        assert correlator.correlate(a).skip
        assert not correlator.correlate(b).skip

    def test_type_has_its_own_bucket(self) -> None:
        """A Warning is not held back by Normal events about the same object."""
        correlator = new_correlator(FakeClock(), burst_size=1)
        correlator.correlate(_similar(0))

        assert not correlator.correlate(_similar(1, type="Warning")).skip
        assert correlator.correlate(_similar(2)).skip

    def test_aggregates_draw_from_the_same_bucket(self) -> None:
        """Aggregation comes first, and combined events spend the object's tokens too."""
        correlator = new_correlator(FakeClock(), burst_size=10)
        results = [correlator.correlate(_similar(i)) for i in range(11)]

        assert [r.skip for r in results] == [False] * 10 + [True]
        observed = results[10].observed
        assert observed is not None
        assert observed.count == 2
        assert observed.message.startswith(corr.COMBINED_MESSAGE_PREFIX)


class TestClockReads:
    """The two kinds of time, read as Go reads its clock: the aggregator reads the wall clock
    once per correlate (an aggregate event's timestamps and name); durations (the
    aggregation interval, the spam buckets' refill) are measured on the monotonic reading."""

    def test_correlate_reads_the_wall_clock_once(self) -> None:
        """One correlate moves an interval clock by one tick: the aggregator's read."""
        clock = FakeClock(tick=1)
        correlator = new_correlator(clock)

        correlator.correlate(_similar(0))

        assert clock.now() == T0 + timedelta(seconds=1)

    def test_token_methods_read_only_the_monotonic_clock(self) -> None:
        """take_token and token_wait measure a duration: they leave an interval clock alone."""
        clock = FakeClock(tick=1)
        correlator = new_correlator(clock)

        correlator.take_token(_similar(0))
        correlator.token_wait(_similar(0))

        assert clock.now() == T0

    def test_update_state_does_not_read_the_clock(self) -> None:
        """Feeding back the server's copy involves no time."""
        clock = FakeClock(tick=1)
        correlator = new_correlator(clock)

        correlator.update_state(_similar(0))

        assert clock.now() == T0


class TestWallClockSteps:
    """A step of the wall clock (NTP, a VM resumed from a snapshot) changes timestamps only:
    the spam filter refills and aggregation groups expire on the monotonic reading."""

    @pytest.mark.parametrize("wall_step", [-600.0, -3600.0, 3600.0])
    def test_the_spam_bucket_refills_on_time_whatever_the_wall_clock_does(
        self, wall_step: float
    ) -> None:
        """With the burst spent, a token comes back 300 s later (monotonic), not sooner
        after a step forward, and not an hour later after a step back."""
        clock = FakeClock()
        correlator = new_correlator(clock, burst_size=1)
        assert not correlator.correlate(_similar(0)).skip
        assert correlator.correlate(_similar(0)).skip

        clock.step_wall(wall_step)
        assert correlator.correlate(_similar(0)).skip, "a wall step gives no token"
        assert correlator.token_wait(_similar(0)) == pytest.approx(300.0, abs=1e-3)
        clock.step(300.01)

        assert correlator.token_wait(_similar(0)) == 0.0
        assert not correlator.correlate(_similar(0)).skip

    @pytest.mark.parametrize("wall_step", [-3600.0, 700.0])
    def test_aggregation_ignores_steps_of_the_wall_clock(self, wall_step: float) -> None:
        """Nine messages, a wall step past the ten-minute interval, the tenth: combined."""
        clock = FakeClock()
        correlator = new_correlator(clock)
        for i in range(9):
            correlator.correlate(_similar(i))

        clock.step_wall(wall_step)
        result = correlator.correlate(_similar(9))

        assert result.event is not None
        assert result.event.message == corr.COMBINED_MESSAGE_PREFIX + "message 9"
        # the combined event is stamped with the wall clock as it now reads
        assert result.event.first_timestamp == T0 + timedelta(seconds=wall_step)

    def test_a_repeat_after_a_step_back_is_stamped_by_the_clock_before_the_first(self) -> None:
        """client-go's rule, kept: a clock ten minutes ahead is set right, and the repeat's
        lastTimestamp is the clock's, earlier than the first (which stays). Moved up to the
        first, it would be a time ahead of the clock: ``kubectl describe`` would read
        ``<invalid>`` for its age too (not only for the first), and it would sort as the
        newest event until the clock caught up."""
        clock = FakeClock()
        correlator = new_correlator(clock)
        correlator.correlate(_similar(0, last_timestamp=clock.now()))
        clock.step_wall(-600)
        repeat = correlator.correlate(_similar(0, last_timestamp=clock.now())).event

        assert repeat is not None
        assert (repeat.count, repeat.first_timestamp) == (2, T0)
        assert repeat.last_timestamp == T0 - timedelta(seconds=600)

    def test_aggregation_groups_still_expire_after_the_interval(self) -> None:
        """Ten minutes and a second of monotonic time end a group, a wall step back or not."""
        clock = FakeClock()
        correlator = new_correlator(clock)
        for i in range(9):
            correlator.correlate(_similar(i))

        clock.step_wall(-3600)
        clock.step(601)
        result = correlator.correlate(_similar(9))

        assert result.event is not None
        assert result.event.message == "message 9"


# -- take_token and token_wait -------------------------------------------------------------------


class TestTokens:
    """The writer's access to the spam buckets: take_token and token_wait."""

    def test_token_wait_zero_when_a_token_is_there(self) -> None:
        """An unseen key has a full bucket, so there is no wait."""
        correlator = new_correlator(FakeClock())

        assert correlator.token_wait(_similar(0)) == 0.0

    def test_token_wait_after_draining(self) -> None:
        """A drained default bucket waits one refill (300 s at float32 rate) less time passed."""
        clock = FakeClock()
        correlator = new_correlator(clock, burst_size=1)
        correlator.correlate(_similar(0))
        clock.step(100)

        wait = correlator.token_wait(_similar(0))

        assert wait == pytest.approx(1 / float32(1 / 300) - 100, abs=1e-6)
        assert wait == pytest.approx(200, abs=1e-3)

    def test_token_wait_takes_nothing(self) -> None:
        """Asking the wait any number of times leaves the token there."""
        correlator = new_correlator(FakeClock(), burst_size=1)
        for _ in range(5):
            correlator.token_wait(_similar(0))

        assert not correlator.correlate(_similar(0)).skip

    def test_token_wait_creates_no_bucket(self) -> None:
        """Asking about an unseen key does not evict a bucket from a full cache."""
        correlator = new_correlator(FakeClock(), burst_size=1, lru_cache_size=1)
        correlator.correlate(_similar(0))
        other = _similar(0, involved_object=make_ref("Pod", "other", "my-ns"))

        assert correlator.token_wait(other) == 0.0
        assert correlator.correlate(_similar(0)).skip

    def test_take_token_shares_the_event_bucket(self) -> None:
        """take_token spends the bucket correlate uses; a refusal takes nothing."""
        clock = FakeClock()
        correlator = new_correlator(clock, burst_size=2)
        correlator.correlate(_similar(0))

        assert correlator.take_token(_similar(1))
        assert not correlator.take_token(_similar(0))
        assert correlator.correlate(_similar(0)).skip
        clock.step(300)
        assert correlator.take_token(_similar(0))

    def test_take_token_touches_nothing_else(self) -> None:
        """Taking a token counts nothing and joins no aggregation group."""
        correlator = new_correlator(FakeClock())
        correlator.correlate(_similar(0))
        for i in range(20):
            correlator.take_token(_similar(i))

        result = correlator.correlate(_similar(0))

        assert result.event is not None
        assert result.event.count == 2
        assert _aggregate_set(correlator, _similar(0)) == {"message 0"}

    def test_take_token_creates_a_full_bucket(self) -> None:
        """A key never seen gets a full bucket: burst takes succeed, then none."""
        correlator = new_correlator(FakeClock(), burst_size=3)

        assert [correlator.take_token(_similar(0)) for _ in range(4)] == [True, True, True, False]


# -- options -------------------------------------------------------------------------------------


def _by_name_and_reason(event: Event) -> tuple[str, str]:
    """A custom aggregation key: the object name, then reason and message."""
    return event.involved_object.name, event.reason + event.message


def _upper_message(event: Event) -> str:
    """A custom aggregate message: the message in capitals."""
    return event.message.upper()


class TestOptions:
    """CorrelatorOptions: zero or None means client-go's default."""

    def test_defaults_resolved(self) -> None:
        """Every zero or None field resolves to client-go's default."""
        resolved = corr.CorrelatorOptions().resolved()

        assert isinstance(resolved.clock, clocks.SystemClock)
        assert dataclasses.replace(resolved, clock=None) == corr.CorrelatorOptions(
            lru_cache_size=4096,
            burst_size=25,
            qps=1 / 300,
            key_func=corr.aggregate_by_reason,
            message_func=corr.combined_message,
            max_events=10,
            max_interval_seconds=600.0,
            clock=None,
            spam_key_func=corr.get_spam_key,
        )

    def test_constants(self) -> None:
        """The default constants are client-go's numbers."""
        assert (
            corr.DEFAULT_LRU_CACHE_SIZE,
            corr.DEFAULT_SPAM_BURST,
            corr.DEFAULT_SPAM_QPS,
            corr.DEFAULT_AGGREGATE_MAX_EVENTS,
            corr.DEFAULT_AGGREGATE_INTERVAL_SECONDS,
        ) == (4096, 25, 1 / 300, 10, 600.0)

    def test_given_values_kept(self) -> None:
        """Non-zero fields survive resolution unchanged."""
        clock = FakeClock()
        options = corr.CorrelatorOptions(
            lru_cache_size=1,
            burst_size=2,
            qps=3.0,
            key_func=_by_name_and_reason,
            message_func=_upper_message,
            max_events=4,
            max_interval_seconds=5.5,
            clock=clock,
            spam_key_func=_spam_key_with_reason,
        )

        assert options == options.resolved()

    @pytest.mark.parametrize("options", [None, corr.CorrelatorOptions()], ids=["none", "zeros"])
    def test_correlator_uses_defaults(self, options: corr.CorrelatorOptions | None) -> None:
        """A correlator without options, or with all zeros, runs on the defaults."""
        correlator = corr.EventCorrelator(options)

        assert correlator.options.lru_cache_size == 4096
        assert isinstance(correlator.options.clock, clocks.SystemClock)
        assert not correlator.correlate(_similar(0)).skip

    @pytest.mark.parametrize(
        "field",
        ["lru_cache_size", "burst_size", "qps", "max_events", "max_interval_seconds"],
    )
    def test_negative_numbers_refused(self, field: str) -> None:
        """A negative number has no meaning in client-go and is refused."""
        with pytest.raises(ValueError, match=field):
            corr.CorrelatorOptions(**{field: -1})  # type: ignore[arg-type]

    def test_nan_qps_refused(self) -> None:
        """A NaN refill rate is refused."""
        with pytest.raises(ValueError, match="qps"):
            corr.CorrelatorOptions(qps=math.nan)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("burst_size", 2.5),
            ("lru_cache_size", True),
            ("max_events", math.inf),
            ("qps", "5"),
            ("clock", object()),
        ],
    )
    def test_options_made_in_code_are_checked_as_dictconfig_checks_them(
        self, field: str, value: object
    ) -> None:
        """A fraction, ``True`` or infinity for a count, text for a number, a clock without
        ``now()``: the handler's ``correlator`` option refused them, but options made in code
        reached the correlator unchecked, where each event then failed on the dispatcher (or a
        cache held 1 entry)."""
        with pytest.raises(ValueError, match=f"CorrelatorOptions.{field} must be"):
            corr.CorrelatorOptions(**{field: value})  # type: ignore[arg-type]
        assert corr.CorrelatorOptions(burst_size=25.0, qps=0.5).burst_size == 25.0  # type: ignore[arg-type]

    def test_a_clock_class_for_an_instance_is_refused(self) -> None:
        """``clock=SystemClock`` (its call forgotten) has a callable ``now``, so it passed, and
        every event was then lost on the dispatcher ("SystemClock.monotonic() missing 1
        required positional argument"). It is refused where the options are made."""
        with pytest.raises(ValueError, match=r"CorrelatorOptions\.clock must"):
            corr.CorrelatorOptions(clock=clocks.SystemClock)  # type: ignore[arg-type]

    def test_options_are_frozen(self) -> None:
        """Options cannot change after construction."""
        options = corr.CorrelatorOptions()
        with pytest.raises(dataclasses.FrozenInstanceError):
            options.burst_size = 3  # type: ignore[misc]

    def test_infinite_qps_never_filters(self) -> None:
        """An infinite refill rate lets everything through."""
        correlator = new_correlator(FakeClock(), burst_size=1, qps=math.inf)

        assert not any(correlator.correlate(_similar(0)).skip for _ in range(50))

    def test_all_names_exported(self) -> None:
        """The module's __all__ is sorted isort-style and names what the API lists."""
        assert sorted(corr.__all__, key=_isort_key) == corr.__all__
        assert {
            "COMBINED_MESSAGE_PREFIX",
            "CorrelateResult",
            "CorrelatorOptions",
            "EventCorrelator",
            "KeyFunc",
            "MessageFunc",
            "SpamKeyFunc",
            "count_patch",
            "generate_event_name",
            "is_dns_subdomain",
            "validate_event_type",
        } <= set(corr.__all__)


def _isort_key(name: str) -> tuple[int, str]:
    """Sort constants, then classes, then functions, as the house __all__ does."""
    if name.isupper():
        return 0, name
    return (1 if name[0].isupper() else 2), name


# -- thread safety -------------------------------------------------------------------------------


class TestThreadSafety:
    """One lock covers each whole correlation step."""

    def test_concurrent_correlation_counts_every_occurrence(self) -> None:
        """Threads correlating one event concurrently each get a distinct count, none lost."""
        correlator = new_correlator(FakeClock(), burst_size=100)
        counts: list[int] = []
        counts_lock = threading.Lock()
        start = threading.Barrier(4)

        def work() -> None:
            start.wait()
            mine = []
            for _ in range(250):
                observed = correlator.correlate(_similar(0)).observed
                assert observed is not None
                mine.append(observed.count)
                correlator.take_token(_similar(1))
            with counts_lock:
                counts.extend(mine)

        threads = [threading.Thread(target=work, name=f"correlate-{i}") for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

        assert sorted(counts) == list(range(1, 1001))


# -- the token bucket ----------------------------------------------------------------------------


class TestSlowWritesAndEviction:
    """A write that returns after its key was evicted must not take over a newer event."""

    def test_a_slow_write_does_not_file_its_name_under_a_newer_events_key(self) -> None:
        """Seen before the fix: 15 on the server for 13 occurrences. The old event's write
        came back after more than lru_cache_size other keys had passed, its key now held a
        newer event with a higher count, and the next repeat patched the old event."""
        clock = FakeClock()
        correlator = new_correlator(clock, lru_cache_size=2)
        policy = corr.CountPolicy(correlator)
        pod = ObjectReference(kind="Pod", namespace="ns", name="web", api_version="v1")

        def occurrence(name: str, message: str = "m") -> Event:
            ref = dataclasses.replace(pod, name=name)
            return Event(
                name=f"{name}.{next(NAMES)}",
                namespace="ns",
                involved_object=ref,
                message=message,
                count=1,
            )

        slow = correlator.correlate(occurrence("web")).event  # its write is in flight
        assert slow is not None
        for other in ("a", "b", "c"):  # evict web's key
            correlator.correlate(occurrence(other))
        newer = [correlator.correlate(occurrence("web")).event for _ in range(2)]
        assert newer[-1] is not None
        assert newer[-1].name != slow.name
        assert newer[-1].count == 2

        policy.written(slow, dataclasses.replace(slow, resource_version="7"))

        repeat = correlator.correlate(occurrence("web")).event
        assert repeat is not None
        assert repeat.name == newer[-1].name
        assert repeat.count == 3

    @pytest.mark.parametrize("evicted_again", [False, True])
    def test_a_slow_write_under_a_deterministic_name_does_not_raise_a_newer_events_count(
        self, evicted_again: bool
    ) -> None:
        """Seen before the fix with the handler's default names (deterministic: a newer event
        for a key has the old one's name): 7 on the server for 6 occurrences. The write of
        count 2 came back after its key was evicted and counted again from 1 (and maybe
        evicted again), and filed count 2 under it, so each later repeat counted one too
        many."""
        clock = FakeClock()
        correlator = new_correlator(clock, lru_cache_size=2)
        policy = corr.CountPolicy(correlator)
        pod = ObjectReference(kind="Pod", namespace="ns", name="web", api_version="v1")

        def occurrence(name: str) -> Event:
            ref = dataclasses.replace(pod, name=name)
            return Event(name=f"{name}.604ca1ae", namespace="ns", involved_object=ref, count=1)

        correlator.correlate(occurrence("web"))
        slow = correlator.correlate(occurrence("web")).event  # count 2, its write in flight
        assert slow is not None
        assert slow.count == 2
        for other in ("a", "b", "c"):  # evict web's key
            correlator.correlate(occurrence(other))
        newer = correlator.correlate(occurrence("web")).event
        assert newer is not None
        assert (newer.name, newer.count) == (slow.name, 1)
        for other in ("a", "b", "c") if evicted_again else ():
            correlator.correlate(occurrence(other))

        policy.written(slow, dataclasses.replace(slow, resource_version="7"))

        repeat = correlator.correlate(occurrence("web")).event
        assert repeat is not None
        assert repeat.count == (1 if evicted_again else 2)

    def test_a_combined_events_answer_takes_no_place_in_the_cache(self) -> None:
        """A deliberate difference from client-go, whose UpdateState files a combined event's
        answer under its plain key (one nothing looks up): with ``lru_cache_size=1`` that
        entry pushed out the group's, so each combined occurrence began a new event (five
        rows of x1 for five messages). The answer is not filed: one combined event counts."""
        correlator = new_correlator(FakeClock(), lru_cache_size=1, max_events=2)
        policy = corr.CountPolicy(correlator)
        pod = make_ref("Pod", "web", "ns")
        written = []
        for n in range(5):
            event = correlator.correlate(make_event("Unhealthy", f"probe {n}", pod)).event
            assert event is not None
            policy.written(event, dataclasses.replace(event, resource_version=str(n)))
            written.append((event.name, event.count))
        combined = written[1][0]
        assert written[1:] == [(combined, count) for count in range(1, 5)]


NAMES = itertools.count(1)


# -- correlate_many: a run at once, exactly as one by one ------------------------------------


def _as_a_writer_merges(entries: list[tuple[Event, bool, int]]) -> list[tuple[Event, bool, int]]:
    """Consecutive entries for one event as a writer merges them into one write (its latest,
    held if all were), never into a create (the first occurrence of a new event, count 1)."""
    out: list[tuple[Event, bool, int]] = []
    for seen, held, occurrences in entries:
        last = out[-1][0] if out else None
        if (
            last is not None
            and (last.namespace, last.name) == (seen.namespace, seen.name)
            and (len(out) > 1 or last.count > 1)
        ):
            out[-1] = (seen, out[-1][1] and held, out[-1][2] + occurrences)
        else:
            out.append((seen, held, occurrences))
    return out


def _sequential(
    events_correlator: corr.EventCorrelator, run: list[Event]
) -> list[tuple[Event, bool, int]]:
    """What correlate_many must equal: correlate each, merged as a writer merges them."""
    results = [events_correlator.correlate(event) for event in run]
    assert all(r.observed is not None for r in results)
    return _as_a_writer_merges([(r.observed, r.skip, 1) for r in results])  # type: ignore[misc]


@settings(max_examples=150, deadline=None)
@given(
    history=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 12), st.integers(0, 3)), max_size=60
    ),
    runs=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 12), st.integers(1, 40)),
        min_size=1,
        max_size=6,
    ),
    burst=st.integers(1, 30),
    step=st.sampled_from([0.0, 1.0, 400.0, 700.0]),
)
def test_correlate_many_equals_correlating_one_by_one(
    history: list[tuple[int, int, int]],
    runs: list[tuple[int, int, int]],
    burst: int,
    step: float,
) -> None:
    """Runs of identical occurrences correlated at once: same writes, same state after."""
    _check_correlate_many(history, runs, burst, step)


@pytest.mark.parametrize("last", [0, 5, 9, 10, 11])
def test_correlate_many_while_aggregating(last: int) -> None:
    """Around the tenth distinct message (the set's arbitrary pop), runs stay exact."""
    history = [(0, message, 0) for message in range(12)]
    runs = [(0, last, 5), (0, 11, 3), (0, 3, 30), (1, 2, 4)]
    _check_correlate_many(history, runs, 25, 0.0)


@pytest.mark.parametrize("burst", [13, 14, 16])
def test_correlate_many_while_aggregating_as_the_spam_bucket_runs_out(burst: int) -> None:
    """A run combined one occurrence at a time whose spam bucket empties within it: the
    stretch is held only if every one of its occurrences was (the rest are written)."""
    history = [(0, message, 0) for message in range(12)]
    _check_correlate_many(history, [(0, 12, 6)], burst, 0.0)


def _check_correlate_many(
    history: list[tuple[int, int, int]],
    runs: list[tuple[int, int, int]],
    burst: int,
    step: float,
) -> None:
    clocks_ = (FakeClock(T0), FakeClock(T0))
    twins = [
        corr.EventCorrelator(corr.CorrelatorOptions(clock=clock, burst_size=burst))
        for clock in clocks_
    ]
    refs = [make_ref("Pod", f"pod-{i}", "default") for i in range(3)]

    def event(obj: int, message: int, index: int) -> Event:
        return dataclasses.replace(
            make_event("BackOff", f"message {message}", refs[obj]),
            name=f"pod-{obj}.{index}",
        )

    for number, (obj, message, repeats) in enumerate(history):
        for twin in twins:
            for _ in range(repeats + 1):
                twin.correlate(event(obj, message, number))
    for clock in clocks_:
        clock.step(step)
    for number, (obj, message, length) in enumerate(runs):
        run = [event(obj, message, 1000 * number + i) for i in range(length)]
        many = twins[0].correlate_many(run)
        assert _as_a_writer_merges(many) == _sequential(twins[1], run)
    # the state after is the same: the next occurrences of every kind correlate alike
    for obj in range(3):
        for message in range(13):
            probe = event(obj, message, 99_999)
            assert twins[0].correlate(probe) == twins[1].correlate(probe)


# -- combined events across processes ------------------------------------------------------------


def _bracketed(event: Event) -> str:
    return f"[similar] {event.message}"


@pytest.mark.parametrize("message_func", [None, _bracketed])
def test_a_combined_event_of_ones_own_message_func_continues_across_restarts(
    message_func: Any,
) -> None:
    """Seen before the fix: with a ``message_func`` of one's own, every restart left a
    combined event of its own beside the earlier run's (three rows of x3 for three runs):
    its message lacks client-go's prefix, so the stored one was taken for another's and
    ours renamed. Its name, the aggregate key's, says it is ours: one row, the sum."""
    clock = FakeClock(datetime(2024, 1, 1, 12, tzinfo=UTC))
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "uid": "u"}}
    with LocalApiServer(clock=clock) as server:
        for run in range(3):
            handler = KubernetesEventHandler(
                component="shop",
                host="node-1",
                sink=server.url,
                qps=0,
                clock=clock,
                sleep=clock.sleep,
                correlator={"message_func": message_func},
            )
            log = logging.getLogger(f"tests.correlator.combined.{run}")
            log.propagate = False
            log.addHandler(handler)
            try:
                for n in range(12):  # the 10th to 12th distinct messages are combined
                    extra = {"involved": manifest, "reason": "Unhealthy"}
                    log.warning("probe %d failed in run %d", n, run, extra=extra)
            finally:
                log.removeHandler(handler)
                handler.close()
            clock.step(30)
        prefix = "[similar] " if message_func else corr.COMBINED_MESSAGE_PREFIX
        combined = [e for e in server.events("default") if e["message"].startswith(prefix)]
        assert [(e["count"], e["message"]) for e in combined] == [
            (9, f"{prefix}probe 11 failed in run 2")
        ]
        assert len(server.events("default")) == 3 * 9 + 1  # the plain ones: a message each run


class _KeyOfReason:
    def __call__(self, event: Event) -> str:
        return event.reason


@pytest.mark.parametrize("name", ["key_func", "message_func", "spam_key_func"])
def test_a_hook_that_cannot_take_the_event_is_refused_when_the_options_are_made(
    name: str,
) -> None:
    """``CorrelatorOptions(message_func=lambda: "x")`` written in code was taken: every event
    then failed on the dispatcher (counted failed), a message_func only at the first
    aggregation, minutes later; dictConfig's mapping already refused it. The options refuse
    it when made, naming the field; functions that take the event in any way are taken."""
    with pytest.raises(ValueError, match=f"CorrelatorOptions.{name} must be a function of"):
        corr.CorrelatorOptions(**{name: lambda: "x"})  # type: ignore[arg-type]
    for fits in (str, _KeyOfReason(), lambda event, *more, scale=1: "x", lambda *args: "x"):
        options: dict[str, Any] = {name: fits}
        assert getattr(corr.CorrelatorOptions(**options), name) is fits


# -- counts past the API's int32 -----------------------------------------------------------------


def _server_events(server: LocalApiServer, api: str) -> list[dict[str, Any]]:
    return server.events("default") if api == "v1" else server.events_v1("default")


def _change_stored(
    server: LocalApiServer, api: str, event: dict[str, Any], count: int | None
) -> None:
    """What two billion occurrences over weeks leave: the stored count just below 2**31;
    ``None``: the event deleted (expired)."""
    name = event["metadata"]["name"]
    body: dict[str, Any]
    if api == "v1":
        path, body = f"/api/v1/namespaces/default/events/{name}", {"count": count}
    else:
        path = f"/apis/events.k8s.io/v1/namespaces/default/events/{name}"
        body = {"series": {"count": count, "lastObservedTime": event["eventTime"]}}
    request = urllib.request.Request(
        server.url + path,
        data=None if count is None else json.dumps(body).encode(),
        method="PATCH" if count is not None else "DELETE",
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
def test_a_count_past_the_int32_range_is_written_as_its_largest_value(api: str) -> None:
    """Seen before the fix: an event repeated for weeks (a hot loop) whose count passed
    2**31 - 1, the API's int32, had every later write refused (422, "cannot unmarshal
    number 2147483648 into ... int32"), each occurrence lost, for as long as the loop went
    on; created again after it expired, the answer's count was taken for another request's
    (retried until given up). Its count stays at 2147483647 and its last time moves on:
    written, nothing lost."""
    clock = FakeClock(datetime(2024, 1, 1, 12, tzinfo=UTC))
    metadata = {"name": "web-0", "namespace": "default", "uid": "u"}
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata}
    with LocalApiServer(clock=clock) as server:
        for run, occurrences in enumerate((2, 3)):
            handler = KubernetesEventHandler(
                component="shop", sink=server.url, api=api, qps=0, clock=clock, sleep=clock.sleep
            )
            log = logging.getLogger(f"tests.correlator.int32.{run}")
            log.propagate = False
            log.addHandler(handler)
            try:
                for _ in range(occurrences):
                    log.warning("hot loop", extra={"involved": manifest, "reason": "Hot"})
                    clock.step(1)
                handler.flush()
                if run:  # then it expires, and the next occurrence creates it again
                    _change_stored(server, api, _server_events(server, api)[0], None)
                    log.warning("hot loop", extra={"involved": manifest, "reason": "Hot"})
                    handler.flush()
                stats = handler.stats()
            finally:
                log.removeHandler(handler)
                handler.close()
            assert stats["failed"] == stats["dropped"] == stats["pending"] == 0, stats
            assert not clock.sleeps, clock.sleeps  # no write retried
            (event,) = _server_events(server, api)
            if not run:
                _change_stored(server, api, event, 2**31 - 2)
        count = event["count"] if api == "v1" else event["series"]["count"]
        assert count == 2**31 - 1


def test_the_window_is_measured_and_stamped_when_each_occurrence_was_logged() -> None:
    """The dispatcher correlates behind the log calls, and read the clock when it came to an
    occurrence: twelve messages logged, the clock stepped past the 10-minute window, then a
    thirteenth, which was combined with the twelve (dispatched after the step), the combined
    event stamped ten minutes after they were logged. Each occurrence is measured, and a
    combined one stamped, at its log call: the thirteenth is an event of its own."""
    clock, sink, gate = FakeClock(T0), FakeEventSink(), threading.Event()

    def held_key(event: Event) -> tuple[str, str]:  # holds the dispatcher till the step
        gate.wait(5)
        return corr.aggregate_by_reason(event)

    handler = KubernetesEventHandler(
        component="shop",
        sink=sink,
        clock=clock,
        sleep=clock.sleep,
        correlator={"key_func": held_key},
    )
    log = logging.getLogger("tests.correlator.window")
    log.propagate = False
    log.addHandler(handler)
    pod = {"kind": "Pod", "namespace": "default", "name": "web-0", "apiVersion": "v1"}
    try:
        for lag in range(12):
            log.warning("lag %ds", lag, extra={"involved": pod, "reason": "Unhealthy"})
        clock.step(601)
        log.warning("lag 99s", extra={"involved": pod, "reason": "Unhealthy"})
        gate.set()
        handler.flush()
    finally:
        gate.set()
        log.removeHandler(handler)
        handler.close()
    combined = [e for e in sink.events if e.message.startswith(corr.COMBINED_MESSAGE_PREFIX)]
    assert [(e.message, e.count, e.first_timestamp) for e in combined] == [
        (corr.COMBINED_MESSAGE_PREFIX + "lag 11s", 3, T0)
    ]
    assert [e.count for e in sink.events if e.message == "lag 99s"] == [1]
