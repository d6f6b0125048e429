"""Event names (the sanitiser's): client-go's from the time, or deterministic from the key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from k8s_logging_events import _sanitise, correlator, models, recorder, sink
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer

T0 = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
SOURCE = models.EventSource(component="shop", host="node-1")
REF = models.ObjectReference(
    kind="Pod", namespace="prod", name="web-0", uid="uid-1", api_version="v1", field_path=""
)


def _name(
    namer: _sanitise.EventNamer | None = None,
    source: models.EventSource = SOURCE,
    ref: models.ObjectReference = REF,
    type: str = models.WARNING,
    reason: str = "BackOff",
    message: str = "Back-off",
    time: datetime = T0,
) -> str:
    namer = namer or _sanitise.EventNamer(event_names="deterministic")
    return namer.event_name(source, ref, type, reason, message, time)


class TestDeterministicNames:
    def test_the_same_key_gets_the_same_name_whenever_and_in_whichever_namer(self) -> None:
        """A restarted process (a new namer, another time) meets the same name."""
        later = datetime(2030, 6, 1, tzinfo=UTC)
        assert (
            _name() == _name(time=later) == _name(_sanitise.EventNamer(event_names="deterministic"))
        )

    def test_the_name_is_the_object_name_a_dot_and_64_bits_of_hash(self) -> None:
        prefix, _, digest = _name().rpartition(".")
        assert prefix == "web-0"
        assert len(digest) == _sanitise.HASH_HEX_DIGITS == 16
        assert int(digest, 16) >= 0

    def test_the_hash_is_sha256_of_a_versioned_json_list_of_the_key(self) -> None:
        """Pinned: a release that changes the scheme must change the version tag, or every
        event of a running fleet would start over (the names must not drift silently)."""
        parts = [_sanitise.NAME_SCHEME, "event", "shop", "node-1", "Pod", "prod", "web-0", "uid-1"]
        parts += ["v1", "", "Warning", "BackOff", "Back-off"]
        data = json.dumps(parts, separators=(",", ":")).encode()
        assert _name() == "web-0." + hashlib.sha256(data).hexdigest()[:16]
        assert _sanitise.NAME_SCHEME == "k8s-logging-events/event-name/1"

    def test_combined_renamed_and_series_hashes_are_pinned(self) -> None:
        """Pinned like plain names: a restart under a new release must find the combined,
        renamed and series events the earlier one wrote, or their counts start over."""
        namer = _sanitise.EventNamer(event_names="deterministic")
        related = dataclasses.replace(REF, name="db-0", resource_version="7")
        event = models.Event(
            name="web-0.1",
            namespace="prod",
            involved_object=REF,
            type=models.WARNING,
            reason="BackOff",
            action="Pull",
            related=related,
            reporting_controller="shop",
            reporting_instance="node-1",
        )
        ref_parts = ["Pod", "prod", "web-0", "uid-1", "v1", ""]
        series = ["series", "Warning", "Pull", "BackOff", "shop", "node-1", *ref_parts]
        series += ["related", "Pod", "prod", "db-0", "uid-1", "v1", "", "7"]
        expected = {
            "combined": ["combined", "key"],
            "renamed": ["renamed", "web-0.1", "2"],
            "series": series,
        }
        names = {
            "combined": namer.combined_name(event, "key", T0),
            "renamed": namer.renamed(event, 2, T0),
            "series": namer.series_name(event),
        }
        for kind, parts in expected.items():
            data = json.dumps([_sanitise.NAME_SCHEME, *parts], separators=(",", ":")).encode()
            assert names[kind] == "web-0." + hashlib.sha256(data).hexdigest()[:16], kind

    @pytest.mark.parametrize(
        "change",
        [
            {"source": models.EventSource("shop2", "node-1")},
            {"source": models.EventSource("shop", "node-2")},
            {"ref": dataclasses.replace(REF, kind="Deployment")},
            {"ref": dataclasses.replace(REF, namespace="staging")},
            {"ref": dataclasses.replace(REF, name="web-1")},
            {"ref": dataclasses.replace(REF, uid="uid-2")},
            {"ref": dataclasses.replace(REF, api_version="v2")},
            {"ref": dataclasses.replace(REF, field_path="spec.containers{app}")},
            {"type": models.NORMAL},
            {"reason": "Pulled"},
            {"message": "Back-off!"},
        ],
        ids=lambda change: next(iter(change)),
    )
    def test_every_field_of_the_key_changes_the_name(self, change: dict[str, object]) -> None:
        assert _name(**change) != _name()  # type: ignore[arg-type]

    def test_the_resource_version_is_not_in_the_name(self) -> None:
        """Events about successive versions of one object are one event."""
        assert _name(ref=dataclasses.replace(REF, resource_version="42")) == _name()

    def test_fields_never_run_into_each_other(self) -> None:
        """client-go's key concatenates without separators: component "ab" on host "c" is
        component "a" on host "bc" there; not in a name."""
        sources = (models.EventSource("ab", "c"), models.EventSource("a", "bc"))
        events = [
            models.Event(name="x", namespace="prod", involved_object=REF, source=source)
            for source in sources
        ]
        assert correlator.get_event_key(events[0]) == correlator.get_event_key(events[1])
        assert _name(source=sources[0]) != _name(source=sources[1])

    def test_a_253_character_object_name_is_cut_never_the_hash(self) -> None:
        long_name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
        assert len(long_name) == 253
        name = _name(ref=dataclasses.replace(REF, name=long_name))
        other = _name(ref=dataclasses.replace(REF, name=long_name[:-1] + "e"))
        assert len(name) <= 253
        assert _sanitise.is_dns_subdomain(name)
        assert name != other  # the hash covers the whole name
        prefix, _, digest = name.rpartition(".")
        assert long_name.startswith(prefix)
        assert len(digest) == 16

    @pytest.mark.parametrize(
        ("ref_name", "prefix"),
        [
            ("Web-0", "web-0"),
            ("2001:db8::1", "2001-db8-1"),
            ("web/0", "web-0"),
            ("50%", "50"),
            ("", _sanitise.FALLBACK_PREFIX),
            ("%%%", _sanitise.FALLBACK_PREFIX),
            ("..a..b..", "a.b"),
            ("-a-.-b-", "a.b"),
            ("a" * 235 + "-" + "b" * 10, "a" * 235),
            ("a" * 235 + ".b", "a" * 235),
        ],
    )
    def test_an_object_name_that_cannot_be_a_prefix_is_made_one(
        self, ref_name: str, prefix: str
    ) -> None:
        """Upper case, IPv6, slashes, symbols, empty labels, a cut that ends a label in "-"
        or "." : the prefix is repaired (readable, deterministic), the hash keeps them apart."""
        name = _name(ref=dataclasses.replace(REF, name=ref_name))
        assert _sanitise.is_dns_subdomain(name)
        assert len(name) <= 253
        assert name.rpartition(".")[0] == prefix
        assert name == _name(ref=dataclasses.replace(REF, name=ref_name))

    def test_a_combined_event_is_named_after_its_aggregate_key(self) -> None:
        """The same group, whatever its latest message, has one name; never a plain one."""
        namer = _sanitise.EventNamer(event_names="deterministic")
        first = models.Event(name="", namespace="prod", involved_object=REF, message="m1")
        second = dataclasses.replace(first, message="m2")
        key = correlator.aggregate_by_reason(first)[0]
        name = namer.combined_name(first, key, T0)
        assert name == namer.combined_name(second, key, T0.replace(year=2030))
        assert name != namer.combined_name(first, key + "x", T0)
        assert name != _name(namer)

    def test_a_renamed_event_has_a_name_of_its_own_for_each_attempt(self) -> None:
        namer = _sanitise.EventNamer(event_names="deterministic")
        event = models.Event(name=_name(namer), namespace="prod", involved_object=REF)
        first, second = namer.renamed(event, 1, T0), namer.renamed(event, 2, T0)
        assert len({event.name, first, second}) == 3
        assert first == _sanitise.EventNamer(event_names="deterministic").renamed(event, 1, T0)

    def test_series_names_leave_out_the_note_and_the_resource_version(self) -> None:
        namer = _sanitise.EventNamer(event_names="deterministic")
        event = models.Event(
            name="x",
            namespace="prod",
            involved_object=REF,
            type=models.WARNING,
            reason="BackOff",
            action="Pull",
            reporting_controller="shop",
            reporting_instance="node-1",
            message="note 1",
        )
        name = namer.series_name(event)
        same = dataclasses.replace(
            event, message="note 2", involved_object=dataclasses.replace(REF, resource_version="9")
        )
        assert namer.series_name(same) == name
        assert namer.series_name(dataclasses.replace(event, action="Push")) != name
        assert _sanitise.EventNamer().series_name(event) == "x"  # timestamp names keep theirs


class TestTimestampNames:
    def test_client_go_names_byte_for_byte(self) -> None:
        """``<object name>.<Unix nanoseconds in lowercase hex>``, as client-go makes them."""
        namer = _sanitise.EventNamer()
        assert namer.event_names == "timestamp"
        nanos = _sanitise.unix_nanos(T0)
        assert _name(namer) == f"web-0.{nanos:x}"

    def test_a_fresh_name_is_client_go_like_but_not_on_a_microsecond(self) -> None:
        namer = _sanitise.EventNamer()
        fresh = namer.fresh("web-0", T0)
        prefix, _, digits = fresh.partition(".")
        nanos = int(digits, 16)
        assert prefix == "web-0"
        assert 0 < nanos - _sanitise.unix_nanos(T0) < 1000

    def test_a_name_is_never_given_twice_even_after_the_wall_clock_steps_back(self) -> None:
        """An event about an object at an earlier wall-clock time than its last name (an NTP
        step back, FakeClock.step_wall(-10)) is named one nanosecond past that name, not from
        its time alone: a handler that gave one name twice wrote the second event's
        occurrence onto the first (its message, and a count of 2) when the create met the
        first one's AlreadyExists, against the local server."""
        namer = _sanitise.EventNamer()
        at = _sanitise.unix_nanos(T0)
        names = [namer.name("web-0", t) for t in (T0, T0 + timedelta(seconds=5), T0)]
        assert names == [
            f"web-0.{at:x}",
            f"web-0.{at + 5_000_000_000:x}",
            f"web-0.{at + 5_000_000_001:x}",
        ]

    def test_unix_nanos_counts_every_microsecond(self) -> None:
        """Go's UnixNano exactly: events a microsecond apart get names of their own."""
        moment = datetime(2024, 1, 1, 0, 0, 1, 234_567, tzinfo=UTC)
        assert _sanitise.unix_nanos(moment) == 1_704_067_201_234_567_000

    def test_unknown_event_names_are_refused(self) -> None:
        with pytest.raises(ValueError, match="'deterministic' or 'timestamp'"):
            _sanitise.EventNamer(event_names="hash")
        with pytest.raises(ValueError, match=r"CorrelatorOptions\.event_names"):
            correlator.CorrelatorOptions(event_names="Timestamp")


class TestWhoNamesHow:
    def test_the_client_go_ports_keep_client_go_names(self) -> None:
        """EventBroadcaster and EventCorrelator with default options: time names."""
        clock = FakeClock(T0)
        b = recorder.EventBroadcaster(clock=clock, sleep=clock.sleep, sleep_duration=0)
        fake = FakeEventSink()
        try:
            assert b.event_names == "timestamp"
            b.start_recording_to_sink(fake)
            b.new_recorder(SOURCE).event(REF, models.WARNING, "BackOff", "Back-off")
            assert b.flush(5)
        finally:
            b.shutdown(5)
        assert [e.name for e in fake.events] == [f"web-0.{_sanitise.unix_nanos(T0):x}"]
        corr = correlator.EventCorrelator(correlator.CorrelatorOptions(clock=clock))
        for n in range(10):
            result = corr.correlate(
                models.Event(name="x", namespace="prod", involved_object=REF, message=str(n))
            )
        assert result.event is not None
        assert result.event.name == f"web-0.{_sanitise.unix_nanos(T0):x}"

    def test_correlator_options_ask_for_deterministic_combined_names(self) -> None:
        clock = FakeClock(T0)
        options = correlator.CorrelatorOptions(clock=clock, event_names="deterministic")
        corr = correlator.EventCorrelator(options)
        for n in range(10):
            result = corr.correlate(
                models.Event(name="x", namespace="prod", involved_object=REF, message=str(n))
            )
        assert result.event is not None
        key = correlator.aggregate_by_reason(result.event)[0]
        namer = _sanitise.EventNamer(event_names="deterministic")
        assert result.event.name == namer.combined_name(result.event, key, T0)
        b = recorder.EventBroadcaster(correlator_options=options)
        assert b.event_names == "deterministic"  # either one asking is enough
        b.shutdown(1)

    @pytest.mark.parametrize("event_names", ["deterministic", "timestamp"])
    def test_the_handler_names_deterministically_unless_told(self, event_names: str) -> None:
        clock = FakeClock(T0)
        fake = FakeEventSink()
        options: dict[str, Any] = (
            {} if event_names == "deterministic" else {"event_names": event_names}
        )
        handler = KubernetesEventHandler(
            component="shop", host="node-1", sink=fake, clock=clock, sleep=clock.sleep, **options
        )
        log = logging.getLogger(f"tests.names.{event_names}")
        log.addHandler(handler)
        try:
            log.warning("Back-off", extra={"involved": REF, "reason": "BackOff"})
        finally:
            handler.close()
        (event,) = fake.events
        expected = _name(_sanitise.EventNamer(event_names=event_names))
        assert event.name == expected

    def test_the_handler_refuses_unknown_event_names_and_the_correlator_key(self) -> None:
        with pytest.raises(ValueError, match="event_names must be"):
            KubernetesEventHandler(sink=None, event_names="random")
        with pytest.raises(ValueError, match="event_names on the handler"):
            KubernetesEventHandler(sink=None, correlator={"event_names": "timestamp"})

    def test_names_of_recent_keys_are_remembered_within_a_bound(self) -> None:
        namer = _sanitise.EventNamer(size=2, event_names="deterministic")
        for n in range(5):
            _name(namer, message=str(n))
        assert len(namer._hashed) == 2


class TestServerRules:
    """What the API server refuses, told before a write: a refused write loses the event."""

    def test_an_annotation_key_has_one_slash_at_most(self) -> None:
        assert _sanitise.is_annotation_key("example.com/team")
        assert not _sanitise.is_annotation_key("example.com/team/owner")

    def test_annotations_may_fill_256_kib_exactly(self) -> None:
        value = "x" * (_sanitise.ANNOTATIONS_MAX_BYTES - 1)
        assert _sanitise.annotations_problem({"k": value}) is None
        assert "over 256 KiB" in (_sanitise.annotations_problem({"k": value + "x"}) or "")

    def test_an_annotation_with_a_lone_surrogate_is_written_as_the_server_stores_it(self) -> None:
        """Seen before the fix: a recorder's annotation value holding a lone surrogate (a
        file name read with surrogateescape) made no event, only "Unable to record event:
        'utf-8' codec can't encode character", though the server takes it (as U+FFFD, as a
        message's). It is stored; its size counted as U+FFFD's three bytes."""
        assert "over 256 KiB" in (
            _sanitise.annotations_problem(
                {"k": "x" * (_sanitise.ANNOTATIONS_MAX_BYTES - 3) + "\udc80"}
            )
            or ""
        )
        ref = {"kind": "Pod", "apiVersion": "v1", "name": "web-0", "namespace": "default"}
        with LocalApiServer() as server, server.api_client() as api_client:
            events = recorder.EventBroadcaster()
            events_sink = sink.KubernetesEventSink(api_client, qps=0, api="v1")
            events.start_recording_to_sink(events_sink)
            events.new_recorder("ctl").annotated_eventf(
                ref, {"example.com/file": "r\udc80port.csv"}, "Warning", "Failed", "bad file"
            )
            events.shutdown(timeout=10)
            events_sink.close()
            (stored,) = server.events()
        assert stored["metadata"]["annotations"] == {"example.com/file": "r\ufffdport.csv"}

    @pytest.mark.parametrize(
        ("api_version", "event"),
        [
            ("", True),
            ("v1", True),
            ("events.k8s.io/v1", True),
            ("events.k8s.io/v1beta1", True),
            ("example.com/v1", False),
        ],
    )
    def test_an_event_is_kind_event_of_any_events_api(self, api_version: str, event: bool) -> None:
        """Events about events multiply, and the server refuses them, whichever API wrote them."""
        assert _sanitise.is_event("Event", api_version) is event

    def test_a_reason_joins_words_keeping_their_other_letters(self) -> None:
        assert _sanitise.camel_case("pull IMAGE failed") == "PullIMAGEFailed"
