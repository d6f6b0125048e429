"""Immutable models of Kubernetes Events and the camelCase JSON boundary.

The bottom of the pipeline, above :mod:`~k8s_logging_events.references`: only the ``to_*`` and
``from_*`` methods of :class:`Event` know the wire format. The caller's thread snapshots an
:class:`Occurrence`; the dispatcher builds it into an Event. No I/O, no threads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from k8s_logging_events.references import (
    InvalidObjectError,
    ObjectReference,
    maker,
    object_reference,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "NORMAL",
    "WARNING",
    "Event",
    "EventSeries",
    "EventSource",
    "InvalidObjectError",
    "Namer",
    "ObjectReference",
    "Occurrence",
    "correlation_keys",
    "format_micro_time",
    "format_time",
    "materialize",
    "object_reference",
    "parse_time",
]

NORMAL = "Normal"
"""The event type for information: things went as expected."""

WARNING = "Warning"
"""The event type for something a person may need to look at."""

DEFAULT_NAMESPACE = "default"
"""Where events about cluster-scoped objects go (the server accepts only this or none)."""

MAX_COUNT = 2**31 - 1
"""The largest count the API stores (an int32): a count beyond is written as this, since the
server refuses the whole write of a larger one."""


def stored_count(count: int) -> int:
    """``count`` as the API stores it: at most :data:`MAX_COUNT`."""
    return min(count, MAX_COUNT)


_EMPTY: Mapping[str, str] = MappingProxyType({})

# core/v1 field names that events.k8s.io/v1 spells differently (the server's conversion)
_EVENTS_V1_NAMES = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
}


@dataclass(frozen=True, slots=True)
class EventSource:
    """Who reported an event: the component (the ``From`` column) and the host it runs on."""

    component: str = ""
    host: str = ""


@dataclass(frozen=True, slots=True)
class EventSeries:
    """A run of repeats of one event, as events.k8s.io/v1 counts them."""

    count: int
    last_observed_time: datetime


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event, immutable (change one with :func:`dataclasses.replace`): the core/v1
    field names in snake_case (``reporting_controller`` is core/v1's ``reportingComponent``),
    datetimes aware UTC."""

    name: str
    namespace: str
    involved_object: ObjectReference
    reason: str = ""
    message: str = ""
    source: EventSource = EventSource()
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    count: int = 0
    type: str = ""
    event_time: datetime | None = None
    series: EventSeries | None = None
    action: str = ""
    related: ObjectReference | None = None
    reporting_controller: str = ""
    reporting_instance: str = ""
    # no hash of its own (a mapping): equal events still hash alike, by the other fields
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    resource_version: str = ""
    observed: float | None = field(default=None, compare=False, repr=False)
    """When the occurrence was recorded, on its clock's ``monotonic()`` (never sent): the
    correlator measures windows and refills from it, not from when its thread came to it."""

    def __post_init__(self) -> None:
        # a caller's dict must not change the event behind our back
        if self.annotations is not _EMPTY and not isinstance(self.annotations, MappingProxyType):
            object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))

    def __reduce__(self) -> tuple[Any, ...]:
        # a mappingproxy neither pickles nor copies: the annotations go as a dict (a watcher
        # that hands events to another process, a test's copy.deepcopy)
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["annotations"] = dict(self.annotations)
        return _rebuilt, (type(self), values)

    def to_api(self) -> dict[str, Any]:
        """Return the core/v1 JSON body of this event, with empty values left out."""
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.resource_version:
            metadata["resourceVersion"] = self.resource_version
        if self.annotations:
            metadata["annotations"] = dict(self.annotations)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {k: v for k, v in metadata.items() if v},
            "involvedObject": self.involved_object.to_api(),
        }
        source = (("component", self.source.component), ("host", self.source.host))
        first, last = self.first_timestamp, self.last_timestamp  # mostly equal: formatted once
        first_text = first and format_time(first)
        optional: tuple[tuple[str, Any], ...] = (
            ("reason", self.reason),
            ("message", self.message),
            ("type", self.type),
            ("count", stored_count(self.count)),
            ("action", self.action),
            ("reportingComponent", self.reporting_controller),
            ("reportingInstance", self.reporting_instance),
            ("source", {k: v for k, v in source if v}),
            ("firstTimestamp", first_text),
            ("lastTimestamp", first_text if last == first else last and format_time(last)),
            ("eventTime", self.event_time and format_micro_time(self.event_time)),
        )
        body.update((key, value) for key, value in optional if value)
        if self.series is not None:
            body["series"] = {
                "count": stored_count(self.series.count),
                "lastObservedTime": format_micro_time(self.series.last_observed_time),
            }
        if self.related is not None:
            body["related"] = self.related.to_api()
        return body

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Event:
        """Build an event from a core/v1 JSON body; unknown keys are ignored."""
        metadata: Mapping[str, Any] = data.get("metadata") or {}
        source: Mapping[str, Any] = data.get("source") or {}
        series: Mapping[str, Any] = data.get("series") or {}
        related: Mapping[str, Any] | None = data.get("related")
        annotations: Mapping[str, Any] = metadata.get("annotations") or {}
        observed, series_count = parse_time(series.get("lastObservedTime")), series.get("count")
        return cls(
            name=_str(metadata.get("name")),
            namespace=_str(metadata.get("namespace")),
            resource_version=_str(metadata.get("resourceVersion")),
            annotations={str(k): str(v) for k, v in annotations.items()} if annotations else _EMPTY,
            involved_object=ObjectReference.from_api(data.get("involvedObject") or {}),
            reason=_str(data.get("reason")),
            message=_str(data.get("message")),
            type=_str(data.get("type")),
            count=int(data.get("count") or 0),
            action=_str(data.get("action")),
            reporting_controller=_str(data.get("reportingComponent")),
            reporting_instance=_str(data.get("reportingInstance")),
            source=EventSource(_str(source.get("component")), _str(source.get("host"))),
            first_timestamp=parse_time(data.get("firstTimestamp")),
            last_timestamp=parse_time(data.get("lastTimestamp")),
            event_time=parse_time(data.get("eventTime")),
            series=None if observed is None else EventSeries(int(series_count or 0), observed),
            related=ObjectReference.from_api(related) if related else None,
        )

    def to_events_v1(self) -> dict[str, Any]:
        """Return the events.k8s.io/v1 JSON body of this event, with empty values left out: the
        server's conversion names (``regarding``, ``note``, ``reportingController``), ``eventTime``
        from ``event_time`` or ``first_timestamp``, without the deprecated core/v1 fields the API
        refuses (count, source, first and last timestamps)."""
        core = self.to_api()
        for deprecated in ("count", "source", "firstTimestamp", "lastTimestamp"):
            core.pop(deprecated, None)
        body = {_EVENTS_V1_NAMES.get(key, key): value for key, value in core.items()}
        body["apiVersion"] = "events.k8s.io/v1"
        event_time = self.event_time or self.first_timestamp
        if event_time is not None:
            body["eventTime"] = format_micro_time(event_time)
        return body

    @classmethod
    def from_events_v1(cls, data: Mapping[str, Any]) -> Event:
        """Build an event from an events.k8s.io/v1 JSON body; unknown keys are ignored."""
        core_names = {v1: core for core, v1 in _EVENTS_V1_NAMES.items()}
        core = {core_names.get(key, key): value for key, value in data.items()}
        for deprecated in ("source", "count", "firstTimestamp", "lastTimestamp"):
            core[deprecated] = data.get("deprecated" + deprecated[0].upper() + deprecated[1:])
        return cls.from_api(core)


# Event(*values), every field in order, the annotations _EMPTY or read-only (as __post_init__
# leaves them): how the dispatcher makes its Events
event_of = maker(Event)


def replaced(event: Event, **changes: Any) -> Event:
    """``event`` with ``changes``; itself where they change nothing (a replace costs ~4 us)."""
    if all(getattr(event, name) == value for name, value in changes.items()):
        return event
    return dataclasses.replace(event, **changes)


def seen_at(event: Event, monotonic: Callable[[], float]) -> float:
    """When ``event`` occurred, on ``monotonic``'s clock: its ``observed``, else now (an event
    made by hand is correlated when it comes, as in client-go)."""
    return monotonic() if event.observed is None else event.observed


def format_time(value: datetime) -> str:
    """Format a ``metav1.Time``: RFC 3339 in UTC, whole seconds, ending in ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(value: datetime) -> str:
    """Format a ``metav1.MicroTime``: RFC 3339 in UTC with exactly six fractional digits."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object) -> datetime | None:
    """Parse an RFC 3339 timestamp as the API writes it (or a datetime) into aware UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _str(value: object) -> str:
    return "" if value is None else str(value)


class Namer(Protocol):
    """What names a new event (:class:`~k8s_logging_events._sanitise.EventNamer`)."""

    def event_name(
        self,
        source: EventSource,
        ref: ObjectReference,
        type: str,
        reason: str,
        message: str,
        time: datetime,
    ) -> str:
        """The name of a new event with these fields."""
        ...


class Occurrence(NamedTuple):
    """One occurrence as the caller's thread snapshots it (from a record or a recorder's
    arguments), for the dispatcher to build into an Event: a named tuple is made in C."""

    ref: ObjectReference
    namespace: str
    type: str
    reason: str
    message: str
    annotations: dict[str, str] | None
    action: str
    related: ObjectReference | None
    source: EventSource
    time: datetime
    seen: float  # the clock's monotonic() at ``time``

    def materialize(self, namer: Namer) -> Event:
        """Build the Event: its name, count 1, first and last timestamps."""
        name = namer.event_name(
            self.source, self.ref, self.type, self.reason, self.message, self.time
        )
        annotations = MappingProxyType(dict(self.annotations)) if self.annotations else _EMPTY
        return event_of(
            name, self.namespace, self.ref, self.reason, self.message, self.source, self.time,
            self.time, 1, self.type, None, None, self.action, self.related, self.source.component,
            self.source.host, annotations, "", self.seen,
        )  # fmt: skip


def correlation_keys(item: object) -> tuple[Hashable, object]:
    """What makes two queued items repeats of each other, for the runtime to cut runs. The group
    is in every key of the correlator's state (the involved object without its resourceVersion
    and fieldPath, the source, the type): groups share no state. The rest is every other field
    but the name and timestamps, the involved object whole (in a group, equal references have
    one resourceVersion and fieldPath). Plain tuples, each built at once: hashed without a call."""
    rest: tuple[object, ...]
    if isinstance(item, Occurrence):
        ref, source, rest = item.ref, item.source, item[:-2]  # neither time
    elif isinstance(item, Event):
        ref, source = item.involved_object, item.source
        rest = (ref, item.namespace, item.reason, item.message, item.action, item.related)
        rest += (item.reporting_controller, item.reporting_instance, item.annotations)
        rest += (item.count, item.event_time, item.series, item.resource_version)
    else:
        return id(item), None  # not ours to cut: a run of its own, and fails to build
    group = (ref.name, ref.namespace, ref.uid, ref.kind, ref.api_version, source.component,
             source.host, item.type)  # fmt: skip
    return group, rest


def materialize(item: object, namer: Namer) -> Event:
    """The runtime's build step: a snapshot becomes an Event on the dispatcher."""
    if isinstance(item, Occurrence):
        return item.materialize(namer)
    if isinstance(item, Event):
        return item
    raise TypeError(f"not an occurrence: {type(item).__name__}")


def _rebuilt(kind: type[Event], values: dict[str, Any]) -> Event:
    if not values["annotations"]:
        del values["annotations"]  # the shared empty one, as made
    return kind(**values)
