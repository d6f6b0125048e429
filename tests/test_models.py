"""The Event model and its core/v1 JSON form."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest

from k8s_logging_events import models

T0 = datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)


def _event(**changes: object) -> models.Event:
    base = models.Event(
        name="web.17a",
        namespace="prod",
        involved_object=models.ObjectReference(
            kind="Pod", namespace="prod", name="web", uid="u1", api_version="v1"
        ),
        reason="BackOff",
        message="Back-off pulling image",
        source=models.EventSource(component="ctl", host="node-1"),
        first_timestamp=T0,
        last_timestamp=T0,
        count=1,
        type=models.WARNING,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_to_api_writes_core_v1_camel_case_without_empty_values() -> None:
    """The body has apiVersion/kind, camelCase keys, whole-second Z times, nothing empty."""
    body = _event(reporting_controller="ctl", reporting_instance="node-1").to_api()
    assert body == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web.17a", "namespace": "prod"},
        "involvedObject": {
            "kind": "Pod",
            "namespace": "prod",
            "name": "web",
            "uid": "u1",
            "apiVersion": "v1",
        },
        "reason": "BackOff",
        "message": "Back-off pulling image",
        "type": "Warning",
        "count": 1,
        "reportingComponent": "ctl",
        "reportingInstance": "node-1",
        "source": {"component": "ctl", "host": "node-1"},
        "firstTimestamp": "2024-01-01T00:00:05Z",
        "lastTimestamp": "2024-01-01T00:00:05Z",
    }


def test_event_time_has_exactly_six_fractional_digits_even_on_a_whole_second() -> None:
    """MicroTime fields keep six digits: the API server rejects a missing fraction."""
    body = _event(
        event_time=T0,
        series=models.EventSeries(count=2, last_observed_time=T0 + timedelta(microseconds=7)),
    ).to_api()
    assert body["eventTime"] == "2024-01-01T00:00:05.000000Z"
    assert body["series"] == {"count": 2, "lastObservedTime": "2024-01-01T00:00:05.000007Z"}


def test_times_in_other_zones_are_written_in_utc() -> None:
    """An aware time in another zone is converted, not relabelled."""
    plus_two = timezone(timedelta(hours=2))
    body = _event(first_timestamp=datetime(2024, 1, 1, 2, 0, 5, tzinfo=plus_two)).to_api()
    assert body["firstTimestamp"] == "2024-01-01T00:00:05Z"


def test_from_api_inverts_to_api() -> None:
    """Reading back what to_api wrote gives an equal event, annotations, related and a last
    timestamp after the first included."""
    event = _event(
        last_timestamp=T0 + timedelta(seconds=7),
        annotations={"a": "1"},
        related=models.ObjectReference(kind="Node", name="n1", api_version="v1"),
        resource_version="42",
        action="Pull",
        event_time=T0,
    )
    assert models.Event.from_api(event.to_api()) == event


def test_from_api_ignores_unknown_keys_and_server_metadata() -> None:
    """Fields the server adds (uid, managedFields, ...) do not break reading."""
    body = _event().to_api()
    body["metadata"].update(
        {"uid": "x", "managedFields": [], "creationTimestamp": "2024-01-01T00:00:00Z"}
    )
    body["somethingNew"] = {"x": 1}
    assert models.Event.from_api(body) == _event()


def test_events_are_immutable_and_annotations_are_copied() -> None:
    """Changing the caller's dict or assigning a field cannot change an event."""
    annotations = {"a": "1"}
    event = _event(annotations=annotations)
    annotations["a"] = "2"
    assert event.annotations == {"a": "1"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.count = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.annotations["b"] = "x"  # type: ignore[index]


def test_events_are_hashable_as_frozen_values_are() -> None:
    """An Event, with annotations or without, is a set member and a dict key: equal events
    hash alike (``hash()`` raised TypeError: unhashable type 'mappingproxy')."""
    annotated, same = _event(annotations={"a": "1"}), _event(annotations={"a": "1"})
    assert hash(annotated) == hash(same)
    assert len({annotated, same, _event(), _event(annotations={"a": "2"})}) == 3


def test_replaced_builds_a_new_event_only_where_a_change_changes_something() -> None:
    """A write's changes that equal what the event holds (a new event's create and its answer)
    keep the event itself; any other change replaces it, the annotations copied as ever."""
    event = _event(annotations={"a": "1"})
    assert models.replaced(event, count=1, name="web.17a", annotations={"a": "1"}) is event
    changed = models.replaced(event, count=2, annotations={"a": "2"})
    assert changed == _event(count=2, annotations={"a": "2"})
    assert event.count == 1


def test_parse_time_reads_z_and_offsets_into_aware_utc() -> None:
    """Timestamps from the API come back as aware UTC datetimes."""
    assert models.parse_time("2024-01-01T00:00:05Z") == T0
    assert models.parse_time("2024-01-01T02:00:05+02:00") == T0
    assert models.parse_time("2024-01-01T00:00:05.000001Z") == T0 + timedelta(microseconds=1)
    assert models.parse_time(None) is None
    assert models.parse_time("") is None


def test_to_events_v1_renames_fields_and_leaves_out_the_deprecated_ones() -> None:
    """regarding/note/reportingController; no count, source or legacy timestamps; eventTime set."""
    body = _event(
        action="Pull", reporting_controller="ctl", reporting_instance="node-1"
    ).to_events_v1()
    assert body["apiVersion"] == "events.k8s.io/v1"
    assert body["regarding"]["name"] == "web"
    assert (body["note"], body["reportingController"]) == ("Back-off pulling image", "ctl")
    assert body["eventTime"] == "2024-01-01T00:00:05.000000Z"
    for deprecated in (
        "count",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "message",
        "involvedObject",
    ):
        assert deprecated not in body


def test_from_events_v1_reads_the_v1_names_and_the_deprecated_fields() -> None:
    """An events.k8s.io/v1 answer reads back into the same event fields."""
    event = _event(action="Pull", event_time=T0, series=models.EventSeries(3, T0))
    back = models.Event.from_events_v1(
        {**event.to_events_v1(), "deprecatedCount": 7, "deprecatedSource": {"component": "x"}}
    )
    assert (back.message, back.involved_object, back.series, back.count) == (
        event.message,
        event.involved_object,
        event.series,
        7,
    )
    assert back.source == models.EventSource(component="x")


_OTHER_REF = models.ObjectReference(
    kind="Pod", namespace="prod", name="db", uid="u2", api_version="v1"
)
_NEW_TIME = T0 + timedelta(seconds=30)


@pytest.mark.parametrize(
    "change",
    [
        {"namespace": "staging"},
        {"involved_object": _OTHER_REF},
        {"involved_object": dataclasses.replace(_event().involved_object, resource_version="9")},
        {"involved_object": dataclasses.replace(_event().involved_object, field_path="spec.x")},
        {"reason": "Pulled"},
        {"message": "Pulled image"},
        {"source": models.EventSource(component="ctl", host="node-2")},
        {"count": 2},
        {"type": models.NORMAL},
        {"event_time": T0},
        {"series": models.EventSeries(2, T0)},
        {"action": "Pull"},
        {"related": _OTHER_REF},
        {"reporting_controller": "other"},
        {"reporting_instance": "node-2"},
        {"annotations": {"a": "b"}},
        {"resource_version": "7"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_events_differing_in_any_field_but_name_and_times_are_not_one_run(
    change: dict[str, object],
) -> None:
    """The runtime cuts a batch into runs of repeats by these keys: an Event that differs in
    anything written but its name and timestamps is no repeat of another."""
    assert models.correlation_keys(_event(**change)) != models.correlation_keys(_event())


def test_events_differing_only_in_name_and_times_are_one_run() -> None:
    """Name, first and last timestamps are what a repeat may change."""
    repeat = _event(name="web.17b", first_timestamp=_NEW_TIME, last_timestamp=_NEW_TIME)
    assert models.correlation_keys(repeat) == models.correlation_keys(_event())


def test_an_occurrence_and_the_event_built_from_it_are_never_one_run() -> None:
    """A queued Event (already built) and an Occurrence share a group when about one object,
    source and type, but never a run: the two kinds are correlated apart."""
    event = _event(count=1, reporting_controller="ctl", reporting_instance="node-1")
    occurrence = models.Occurrence(
        ref=event.involved_object,
        namespace=event.namespace,
        type=event.type,
        reason=event.reason,
        message=event.message,
        annotations=None,
        action="",
        related=None,
        source=event.source,
        time=T0,
        seen=0.0,
    )
    built = occurrence.materialize(_FixedNamer(event.name))
    assert built == event
    occurrence_group, occurrence_rest = models.correlation_keys(occurrence)
    event_group, event_rest = models.correlation_keys(event)
    assert occurrence_group == event_group
    assert occurrence_rest != event_rest


@pytest.mark.parametrize("annotations", [None, {}, {"team": "web"}])
def test_an_occurrence_builds_the_event_the_constructor_makes_of_its_fields(
    annotations: dict[str, str] | None,
) -> None:
    """The dispatcher's Events are made without Event's __init__: every field, observed too,
    is what the constructor makes of the same values, the annotations a read-only copy."""
    event = _event(
        count=1, action="Pull", related=_OTHER_REF, reporting_controller="ctl",
        reporting_instance="node-1", annotations=annotations or {}, observed=2.5,
    )  # fmt: skip
    occurrence = models.Occurrence(
        ref=event.involved_object, namespace=event.namespace, type=event.type,
        reason=event.reason, message=event.message, annotations=annotations, action="Pull",
        related=_OTHER_REF, source=event.source, time=T0, seen=2.5,
    )  # fmt: skip
    built = occurrence.materialize(_FixedNamer(event.name))
    for field in dataclasses.fields(models.Event):
        assert getattr(built, field.name) == getattr(event, field.name), field.name
    assert type(built.annotations) is type(event.annotations)
    assert built.annotations is not annotations


class _FixedNamer:
    def __init__(self, name: str) -> None:
        self._name = name

    def event_name(self, *_: object) -> str:
        return self._name


@pytest.mark.parametrize(
    "copied", [copy.copy, copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e))]
)
@pytest.mark.parametrize("annotations", [{}, {"k8s-logging-events/writers": "a=1"}])
def test_an_event_copies_and_pickles_as_the_value_it_is(copied, annotations) -> None:
    """``copy.deepcopy(event)`` (a test's snapshot) and ``pickle`` (a watcher that hands
    events to another process) raised ``TypeError: cannot pickle 'mappingproxy' object``,
    annotations or not. The copy equals the event and keeps its annotations read-only."""
    event = _event(
        annotations=annotations,
        series=models.EventSeries(2, datetime(2024, 1, 1, tzinfo=UTC)),
        related=models.ObjectReference(kind="Node", name="n1"),
    )
    again = copied(event)
    assert again == event
    assert dict(again.annotations) == annotations
    with pytest.raises(TypeError):
        again.annotations["x"] = "y"


def test_object_reference_raises_the_invalid_object_error_its_module_exports() -> None:
    """``models.object_reference`` and the ``InvalidObjectError`` it raises come from one
    module, so ``except models.InvalidObjectError`` catches what it raises."""
    with pytest.raises(models.InvalidObjectError, match="cannot refer to int 5"):
        models.object_reference(5)
    assert issubclass(models.InvalidObjectError, ValueError)
