"""The wire shapes of Event, Namespace and Pod in the local API server.

Part of the local API server on the test side of the pipeline. The server keeps every event
in one canonical form -- the core/v1 JSON exactly as a real API server writes it (Go field
order, ``omitempty`` honoured, unset times as ``null``) -- and this module turns request
bodies into that form and back:

* :func:`decode` reads a JSON body against a :class:`Struct` the way ``sigs.k8s.io/json``
  does: unknown fields are dropped (and reported for a ``Warning`` header), a value of the
  wrong type is a ``json: cannot unmarshal ...`` error, ``metav1.Time`` accepts RFC 3339 and
  ``metav1.MicroTime`` only the exact six-fraction-digit layout;
* :func:`core_to_events` and :func:`events_to_core` map between core/v1 and
  events.k8s.io/v1 with the field renames of ``pkg/apis/events/v1/conversion.go``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from k8s_logging_events.models import format_micro_time, format_time
from k8s_logging_events.testing.apiserver._gofmt import ZERO_TIME

TIME_LAYOUT = "2006-01-02T15:04:05Z07:00"
MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"

_STR = "string"
_INT32 = "int32"
_INT64 = "int64"
_BOOL = "bool"
_TIME = "time"
_MICRO = "micro"
_STRUCT = "struct"
_PTR_STRUCT = "*struct"
_PTR_TIME = "*time"
_PTR_INT64 = "*int64"
_PTR_BOOL = "*bool"
_MAP_STR = "map[string]string"
_LIST_STR = "[]string"
_LIST_STRUCT = "[]struct"
_RAW = "raw"

_INT_RANGES = {_INT32: (-(2**31), 2**31 - 1), _INT64: (-(2**63), 2**63 - 1)}


class DecodeError(Exception):
    """A body could not be decoded into the type: the text is Go's error message."""


_NEVER_EMPTY = 0
_EMPTY_IF_NONE = 1
_EMPTY_IF_FALSY = 2


@dataclass(frozen=True)
class Field:
    """One JSON field of a Go struct: its name, kind, ``omitempty`` and nested struct."""

    name: str
    kind: str
    omitempty: bool = True
    struct: Struct | None = None
    empty_mode: int = field(init=False, compare=False, repr=False)
    """How ``omitempty`` decides: structs never empty, pointers when nil, else when zero."""

    def __post_init__(self) -> None:
        if self.kind == _STRUCT:
            mode = _NEVER_EMPTY
        elif self.kind.startswith("*"):
            mode = _EMPTY_IF_NONE
        else:
            mode = _EMPTY_IF_FALSY
        object.__setattr__(self, "empty_mode", mode)

    def leaves_out(self, value: Any) -> bool:
        """Whether the encoder leaves this field out: ``omitempty`` and an empty ``value``."""
        if not self.omitempty:
            return False
        mode = self.empty_mode
        return (mode == _EMPTY_IF_FALSY and not value) or (mode == _EMPTY_IF_NONE and value is None)


@dataclass(frozen=True)
class Struct:
    """A Go struct as the JSON decoder sees it."""

    go_name: str
    """The bare type name used in ``Go struct field <go_name>.<path>`` errors."""
    go_type: str
    """The qualified type name used in ``of type <go_type>`` errors."""
    fields: tuple[Field, ...]
    by_name: dict[str, Field] = field(init=False, compare=False, repr=False)
    zero: dict[str, Any] = field(init=False, compare=False, repr=False)
    """The canonical form of the zero value (copy before changing it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        zero: dict[str, Any] = {}
        for spec in self.fields:
            if not spec.omitempty:
                zero[spec.name] = _zero(spec)
        object.__setattr__(self, "zero", zero)


def _copy_zero(value: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy_zero(v) if isinstance(v, dict) else v for k, v in value.items()}


def _zero(spec: Field) -> Any:
    if spec.kind == _STR:
        return ""
    if spec.kind in (_INT32, _INT64):
        return 0
    if spec.kind == _BOOL:
        return False
    if spec.kind == _STRUCT:
        assert spec.struct is not None
        return _copy_zero(spec.struct.zero)
    return None


def _s(name: str, omitempty: bool = True) -> Field:
    return Field(name, _STR, omitempty)


OBJECT_REFERENCE = Struct(
    "ObjectReference",
    "v1.ObjectReference",
    tuple(
        _s(name)
        for name in (
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
            "fieldPath",
        )
    ),
)
EVENT_SOURCE = Struct("EventSource", "v1.EventSource", (_s("component"), _s("host")))
OWNER_REFERENCE = Struct(
    "OwnerReference",
    "v1.OwnerReference",
    (
        _s("apiVersion", False),
        _s("kind", False),
        _s("name", False),
        _s("uid", False),
        Field("controller", _PTR_BOOL),
        Field("blockOwnerDeletion", _PTR_BOOL),
    ),
)
OBJECT_META = Struct(
    "ObjectMeta",
    "v1.ObjectMeta",
    (
        _s("name"),
        _s("generateName"),
        _s("namespace"),
        _s("selfLink"),
        _s("uid"),
        _s("resourceVersion"),
        Field("generation", _INT64),
        Field("creationTimestamp", _TIME, omitempty=False),
        Field("deletionTimestamp", _PTR_TIME),
        Field("deletionGracePeriodSeconds", _PTR_INT64),
        Field("labels", _MAP_STR),
        Field("annotations", _MAP_STR),
        Field("ownerReferences", _LIST_STRUCT, struct=OWNER_REFERENCE),
        Field("finalizers", _LIST_STR),
        Field("managedFields", _RAW),
    ),
)
CORE_SERIES = Struct(
    "EventSeries",
    "v1.EventSeries",
    (Field("count", _INT32), Field("lastObservedTime", _MICRO, omitempty=False)),
)
EVENTS_SERIES = Struct(
    "EventSeries",
    "v1.EventSeries",
    (Field("count", _INT32, omitempty=False), Field("lastObservedTime", _MICRO, omitempty=False)),
)
CORE_EVENT = Struct(
    "Event",
    "v1.Event",
    (
        Field("metadata", _STRUCT, False, OBJECT_META),
        Field("involvedObject", _STRUCT, False, OBJECT_REFERENCE),
        _s("reason"),
        _s("message"),
        Field("source", _STRUCT, False, EVENT_SOURCE),
        Field("firstTimestamp", _TIME, omitempty=False),
        Field("lastTimestamp", _TIME, omitempty=False),
        Field("count", _INT32),
        _s("type"),
        Field("eventTime", _MICRO, omitempty=False),
        Field("series", _PTR_STRUCT, struct=CORE_SERIES),
        _s("action"),
        Field("related", _PTR_STRUCT, struct=OBJECT_REFERENCE),
        _s("reportingComponent", False),
        _s("reportingInstance", False),
    ),
)
"""core/v1 ``Event``, in the field order of ``k8s.io/api/core/v1``."""

EVENTS_EVENT = Struct(
    "Event",
    "v1.Event",
    (
        Field("metadata", _STRUCT, False, OBJECT_META),
        Field("eventTime", _MICRO, omitempty=False),
        Field("series", _PTR_STRUCT, struct=EVENTS_SERIES),
        _s("reportingController"),
        _s("reportingInstance"),
        _s("action"),
        _s("reason"),
        Field("regarding", _STRUCT, False, OBJECT_REFERENCE),
        Field("related", _PTR_STRUCT, struct=OBJECT_REFERENCE),
        _s("note"),
        _s("type"),
        Field("deprecatedSource", _STRUCT, False, EVENT_SOURCE),
        Field("deprecatedFirstTimestamp", _TIME, omitempty=False),
        Field("deprecatedLastTimestamp", _TIME, omitempty=False),
        Field("deprecatedCount", _INT32),
    ),
)
"""events.k8s.io/v1 ``Event``, in the field order of ``k8s.io/api/events/v1``."""

NAMESPACE = Struct(
    "Namespace",
    "v1.Namespace",
    (
        Field("metadata", _STRUCT, False, OBJECT_META),
        Field(
            "spec",
            _STRUCT,
            False,
            Struct("NamespaceSpec", "v1.NamespaceSpec", (Field("finalizers", _LIST_STR),)),
        ),
        Field(
            "status",
            _STRUCT,
            False,
            Struct(
                "NamespaceStatus",
                "v1.NamespaceStatus",
                (_s("phase"), Field("conditions", _RAW)),
            ),
        ),
    ),
)
"""core/v1 ``Namespace``."""

POD = Struct(
    "Pod",
    "v1.Pod",
    (
        Field("metadata", _STRUCT, False, OBJECT_META),
        Field("spec", _RAW),
        Field("status", _RAW),
    ),
)
"""core/v1 ``Pod``: its metadata decoded, its spec and status kept as sent (``_pods``
checks the parts it uses)."""


def _describe(value: Any, target_kind: str) -> str:
    """Return Go's name for a JSON value in an ``UnmarshalTypeError``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        if target_kind in _INT_RANGES or target_kind == _PTR_INT64:
            return f"number {value!r}"
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(value: Any, kind: str, struct: Struct, path: str, go_type: str) -> DecodeError:
    return DecodeError(
        f"json: cannot unmarshal {_describe(value, kind)} into Go struct field "
        f"{struct.go_name}.{path} of type {go_type}"
    )


def decode(
    struct: Struct, data: dict[str, Any], unknown: list[str], path: str = ""
) -> dict[str, Any]:
    """Decode the JSON object ``data`` as ``struct`` and return its canonical form.

    The result holds the struct's fields in Go order, leaves out empty ``omitempty`` fields,
    and normalises times (``metav1.Time`` to whole UTC seconds, ``MicroTime`` to six digits).
    Unknown fields are appended to ``unknown`` (dotted paths) and dropped.

    Raises:
        DecodeError: a value has the wrong type or a time does not parse.
    """
    by_name = struct.by_name
    values: dict[str, Any] = {}
    for key, raw in data.items():
        spec = by_name.get(key)
        if spec is None:
            unknown.append(f"{path}.{key}" if path else key)
            continue
        values[key] = _decode_value(spec, raw, struct, f"{path}.{key}" if path else key, unknown)
    out: dict[str, Any] = {}
    for spec in struct.fields:
        name = spec.name
        if name in values:
            value = values[name]
            if spec.leaves_out(value):
                continue
        elif spec.omitempty:
            continue
        else:
            value = _zero(spec)
        out[name] = value
    return out


def _decode_value(spec: Field, raw: Any, struct: Struct, path: str, unknown: list[str]) -> Any:
    kind = spec.kind
    if kind == _RAW:
        return raw
    if raw is None:
        return _zero(spec)
    if kind == _STR:
        if not isinstance(raw, str):
            raise _type_error(raw, kind, struct, path, "string")
        return raw
    if kind in _INT_RANGES or kind == _PTR_INT64:
        go_type = _INT64 if kind == _PTR_INT64 else kind
        low, high = _INT_RANGES[go_type]
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            raise _type_error(raw, kind, struct, path, go_type)
        return raw
    if kind in (_BOOL, _PTR_BOOL):
        if not isinstance(raw, bool):
            raise _type_error(raw, kind, struct, path, "bool")
        return raw
    if kind in (_TIME, _PTR_TIME, _MICRO):
        if not isinstance(raw, str):
            raise _type_error(raw, kind, struct, path, "string")
        return parse_micro_time(raw) if kind == _MICRO else parse_time(raw)
    if kind in (_STRUCT, _PTR_STRUCT):
        assert spec.struct is not None
        if not isinstance(raw, dict):
            raise _type_error(raw, kind, struct, path, spec.struct.go_type)
        return decode(spec.struct, raw, unknown, path)
    if kind == _MAP_STR:
        if not isinstance(raw, dict):
            raise _type_error(raw, kind, struct, path, _MAP_STR)
        result: dict[str, str] = {}
        for key, item in raw.items():
            if item is not None and not isinstance(item, str):
                raise _type_error(item, _STR, struct, path, "string")
            result[key] = item or ""
        return result
    if kind == _LIST_STR:
        if not isinstance(raw, list):
            raise _type_error(raw, kind, struct, path, _LIST_STR)
        items: list[str] = []
        for item in raw:
            if item is not None and not isinstance(item, str):
                raise _type_error(item, _STR, struct, path, "string")
            items.append(item or "")
        return items
    if kind == _LIST_STRUCT:
        assert spec.struct is not None
        if not isinstance(raw, list):
            raise _type_error(raw, kind, struct, path, "[]" + spec.struct.go_type)
        decoded: list[dict[str, Any]] = []
        for item in raw:
            if item is not None and not isinstance(item, dict):
                raise _type_error(item, _STRUCT, struct, path, spec.struct.go_type)
            decoded.append(decode(spec.struct, item or {}, unknown, path))
        return decoded
    raise AssertionError(f"unknown field kind {kind}")  # pragma: no cover


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})\Z"
)
_DATE_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})")
_ZONE = re.compile(r"(Z|[+-][0-9]{2}:[0-9]{2})\Z")


def _parse_error(value: str, layout: str, rest: str, element: str) -> DecodeError:
    return DecodeError(
        f'parsing time "{value}" as "{layout}": cannot parse "{rest}" as "{element}"'
    )


def _build(value: str, layout: str, parts: tuple[str, ...], fraction: str, zone: str) -> datetime:
    year, month, day, hour, minute, second = (int(part) for part in parts)
    try:
        base = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise DecodeError(f'parsing time "{value}": {_range_text(exc)}') from None
    if fraction:
        digits = fraction[1:10].ljust(6, "0")[:6]
        base = base.replace(microsecond=int(digits))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise DecodeError(f'parsing time "{value}": time zone offset out of range')
        base -= sign * timedelta(hours=hours, minutes=minutes)
    del layout
    return base


def _range_text(exc: ValueError) -> str:
    text = str(exc)
    for unit in ("month", "day", "hour", "minute", "second"):
        if unit in text:
            return f"{unit} out of range"
    return "day out of range"


def parse_time(value: str) -> str | None:
    """Parse a ``metav1.Time`` (RFC 3339) and return it as whole UTC seconds ending in ``Z``.

    Returns None for Go's zero time, which the server writes as ``null``.
    """
    match = _RFC3339.match(value)
    if match is None:
        prefix = _DATE_TIME.match(value)
        if prefix is None:
            raise _parse_error(value, TIME_LAYOUT, value, "2006")
        raise _parse_error(value, TIME_LAYOUT, value[prefix.end() :], "Z07:00")
    parts = match.groups()
    moment = _build(value, TIME_LAYOUT, parts[:6], parts[6] or "", parts[7])
    if moment.replace(microsecond=0) == ZERO_TIME:
        return None
    return format_time(moment)


def parse_micro_time(value: str) -> str | None:
    """Parse a ``metav1.MicroTime``: exactly six fractional digits, ``Z`` or ``+hh:mm``.

    This is the layout ``2006-01-02T15:04:05.000000Z07:00``: a value without the fraction
    (what ``datetime.isoformat()`` writes when ``microsecond == 0``) does not parse.
    """
    prefix = _DATE_TIME.match(value)
    if prefix is None:
        raise _parse_error(value, MICRO_LAYOUT, value, "2006")
    rest = value[prefix.end() :]
    if len(rest) < 7 or rest[0] != "." or not rest[1:7].isdigit() or not rest[1:7].isascii():
        raise _parse_error(value, MICRO_LAYOUT, rest, ".000000")
    zone = rest[7:]
    if _ZONE.match(zone) is None:
        raise _parse_error(value, MICRO_LAYOUT, zone, "Z07:00")
    moment = _build(value, MICRO_LAYOUT, prefix.groups(), rest[:7], zone)
    if moment == ZERO_TIME:
        return None
    return format_micro_time(moment)


_EVENTS_NAMES = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
"""The events.k8s.io/v1 fields that have another name in core/v1 (``conversion.go``)."""
_CORE_NAMES = {core: events for events, core in _EVENTS_NAMES.items()}


def _convert(source: dict[str, Any], target: Struct, names: dict[str, str]) -> dict[str, Any]:
    """A canonical object as the canonical form of ``target``, which calls the field that
    ``source`` calls ``names[field]`` (or the same) by its own name: in ``target``'s order,
    its empty ``omitempty`` fields left out and its missing other ones zero."""
    out: dict[str, Any] = {}
    for spec in target.fields:
        name = names.get(spec.name, spec.name)
        if name not in source:
            if not spec.omitempty:
                out[spec.name] = _zero(spec)
            continue
        value = source[name]
        if spec.kind == _PTR_STRUCT and value is not None:
            assert spec.struct is not None
            value = _convert(value, spec.struct, {})  # the two series differ in omitempty
        if not spec.leaves_out(value):
            out[spec.name] = value
    return out


def core_to_events(core: dict[str, Any]) -> dict[str, Any]:
    """Return the events.k8s.io/v1 form of a canonical core/v1 event (no kind/apiVersion)."""
    return _convert(core, EVENTS_EVENT, _EVENTS_NAMES)


def events_to_core(events: dict[str, Any]) -> dict[str, Any]:
    """Return the canonical core/v1 form of a decoded events.k8s.io/v1 event."""
    return _convert(events, CORE_EVENT, _CORE_NAMES)
