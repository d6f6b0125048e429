"""Events as ``kubectl describe`` prints them: a Type, Reason, Age, From, Message table.

Beside the pipeline, at its far end: renders what a sink stored (models, or API dicts of
either Events API) for the demo and for readable test failures. A port of kubectl's
``DescribeEvents`` and apimachinery's ``duration.HumanDuration``, so Age reads as in a
terminal: ``3m20s``, or ``10s (x12 over 3m)`` for a repeated event.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from k8s_logging_events import _apis, models
from k8s_logging_events import clock as clock_mod

__all__ = ["COLUMNS", "event_from_api", "event_rows", "format_events", "human_duration"]

COLUMNS = ("Type", "Reason", "Age", "From", "Message")
"""The columns of kubectl's Events table, in order."""

_RULES = ("----", "------", "----", "----", "-------")  # kubectl's, Age's included (4 dashes)

_UNKNOWN = "<unknown>"
_EARLIEST = datetime.min.replace(tzinfo=UTC)
# kubectl's PrefixWriter is a tabwriter with a padding of 2 and LEVEL_1 indents by 2 spaces
_PADDING = 2
_INDENT = "  "

# HumanDuration's steps: below each bound (seconds), the unit shown and its size in seconds,
# then the smaller unit shown after it when not 0 ("": none) and its size
_STEPS = (
    (120, 1, "s", 1, ""),
    (600, 60, "m", 1, "s"),
    (10_800, 60, "m", 1, ""),
    (28_800, 3_600, "h", 60, "m"),
    (172_800, 3_600, "h", 1, ""),
    (691_200, 86_400, "d", 3_600, "h"),
    (63_072_000, 86_400, "d", 1, ""),
    (252_288_000, 31_536_000, "y", 86_400, "d"),
    (math.inf, 31_536_000, "y", 1, ""),
)


class ClientModel(Protocol):
    """A ``kubernetes`` client model (pydantic since client 37): ``CoreV1Event`` ..."""

    def model_dump(self, *args: Any, **kwargs: Any) -> Any: ...


EventLike = models.Event | Mapping[str, Any] | ClientModel
"""What the renderer accepts: a model, an Event as the API returns it (either version), or
as the ``kubernetes`` client reads it (``CoreV1Event``, ``EventsV1Event``)."""

EventsLike = Iterable[EventLike] | Mapping[str, Any] | ClientModel
"""A sequence of what the renderer accepts, or an ``EventList`` as the API returns it (or
the client's ``CoreV1EventList``, ``EventsV1EventList``)."""

Row = tuple[str, str, str, str, str]
"""One line of the table: the values of :data:`COLUMNS`, in order."""


def human_duration(delta: timedelta) -> str:
    """Return ``delta`` with 2-3 significant figures, as apimachinery's ``HumanDuration``.

    Seconds under two minutes (``119s``), minutes and seconds under ten (``3m20s``), minutes
    under three hours (``25m``), hours and minutes under eight (``5h12m``), hours under two
    days (``30h``), days and hours under eight (``3d4h``), days under two years (``90d``),
    years and days under eight (``2y30d``), then years (``9y``). Up to a second below zero
    (clock skew) reads ``0s``, anything earlier ``<invalid>``.
    """
    # Go's int(d.Seconds()) truncates toward zero, as Python's int() does
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    _, size, unit, minor_size, minor_unit = next(step for step in _STEPS if seconds < step[0])
    minor = seconds // minor_size % (size // minor_size) if minor_unit else 0
    return f"{seconds // size}{unit}" + (f"{minor}{minor_unit}" if minor else "")


def event_from_api(data: Mapping[str, Any]) -> models.Event:
    """Read an Event as the API returns it, core/v1 or events.k8s.io/v1, into a model; the
    latter mapped as the API server converts it to core/v1 (``regarding``, ``note``,
    ``deprecatedCount``, ``deprecatedSource``, ``deprecated*Timestamp``)."""
    api_version = str(data.get("apiVersion") or "")
    # without an apiVersion, the fields tell: only events.k8s.io/v1 has regarding
    events_v1 = api_version.startswith("events.k8s.io/") or (
        not api_version and "involvedObject" not in data and "regarding" in data
    )
    return (_apis.EVENTS_V1 if events_v1 else _apis.CORE_V1).read(data)


def event_rows(
    events: EventsLike, *, now: datetime | None = None, show_host: bool = False
) -> list[Row]:
    """Return one ``(Type, Reason, Age, From, Message)`` row per event, in kubectl's order.
    ``events``: models, API dicts of either version, or an ``EventList`` dict, or the
    ``kubernetes`` client's models of these. ``now``: when ages are measured from (the
    system clock's now by default; a naive one is local time, as ``datetime.now()`` gives
    it). ``show_host``: From reads ``component, host``, as in kubectl before 1.20."""
    # naive, it raised TypeError when compared with the events' aware times
    moment = clock_mod.SystemClock().now() if now is None else now.astimezone(UTC)
    api = _as_api(events)
    items = (api.get("items") or ()) if isinstance(api, Mapping) else api
    models_ = [_as_event(item) for item in items]
    # kubectl sorts by lastTimestamp; a stable sort keeps the input order among equals
    models_.sort(key=lambda event: event.last_timestamp or _EARLIEST)
    return [_row(event, moment, show_host) for event in models_]


def format_events(
    events: EventsLike, *, now: datetime | None = None, show_host: bool = False
) -> str:
    """Render the ``Events:`` block of ``kubectl describe`` for :func:`event_rows`' arguments,
    aligned as kubectl's tabwriter aligns it, ending with a newline, its terminal escapes
    and carriage returns written ``^[`` and ``\\r`` as kubectl writes them; no events read
    ``Events:  <none>``."""
    rows = event_rows(events, now=now, show_host=show_host)
    if not rows:
        return "Events:  <none>\n"
    # anyone who may create events writes these cells: as kubectl's terminalEscaper, an
    # escape sequence must not drive the reader's terminal
    escaped = [tuple(cell.replace("\x1b", "^[").replace("\r", "\\r") for cell in r) for r in rows]
    table = [COLUMNS, _RULES, *escaped]
    # every cell but the last is padded to its column's widest cell plus the padding
    widths = [max(len(row[i]) for row in table) + _PADDING for i in range(len(COLUMNS) - 1)]
    lines = (f"{_INDENT}{''.join(map(str.ljust, row, widths))}{row[-1]}\n" for row in table)
    return "Events:\n" + "".join(lines)


def _as_api(value: Any) -> Any:
    # a client model as the API returns it: iterated, an EventList model gives its fields
    # as pairs, which read as no event at all
    dump = getattr(value, "model_dump", None)
    return dump(by_alias=True, mode="json") if callable(dump) else value


def _as_event(item: EventLike) -> models.Event:
    item = _as_api(item)
    if isinstance(item, models.Event):
        return item
    if isinstance(item, Mapping):
        return event_from_api(item)
    raise TypeError(f"expected an Event or an API dict, not {type(item).__name__}")


def _row(event: models.Event, now: datetime, show_host: bool) -> Row:
    source = event.source.component or event.reporting_controller
    if show_host and event.source.host:
        source = f"{source}, {event.source.host}"
    message = event.message.strip()
    if event.involved_object.field_path:
        message = f"{event.involved_object.field_path}: {message}"
    return (event.type, event.reason, _age(event, now), source, message)


def _age(event: models.Event, now: datetime) -> str:
    first = _since(event.event_time or event.first_timestamp, now)
    if event.series is not None:
        last = _since(event.series.last_observed_time, now)
        return f"{last} (x{event.series.count} over {first})"
    if event.count > 1:
        return f"{_since(event.last_timestamp, now)} (x{event.count} over {first})"
    return first


def _since(moment: datetime | None, now: datetime) -> str:
    return _UNKNOWN if moment is None else human_duration(now - moment)
