"""One object per Events API: what differs between core/v1 and events.k8s.io/v1 on the wire.

Beside the sink: their paths, how an Event is encoded and read back, and where a write sets
its count, so that the sink asks its API object and compares no API names. How each API
correlates and writes a repeat is the recorder's choice (the correlator's or series' policy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from k8s_logging_events import models


@dataclass(frozen=True, slots=True)
class EventsApi:
    """What one Events API is: its name, paths, encoding and counts."""

    name: str
    """``v1`` or ``events.k8s.io/v1``, as the handler's ``api`` option names it."""
    prefix: str
    """The path before ``/namespaces/...``: ``/api/v1`` or ``/apis/events.k8s.io/v1``."""
    body: Callable[[models.Event], dict[str, Any]]
    """The JSON body that creates or replaces an event."""
    read: Callable[[Mapping[str, Any]], models.Event]
    """The Event in an answer of this API."""
    count_of: Callable[[models.Event], int]
    """How many occurrences an event stands for: its count, or its series' (1 without)."""
    patched_count: Callable[[Mapping[str, Any]], object]
    """The count a patch sets (``count``, or ``series.count``), if it sets one."""


def _patched_series_count(patch: Mapping[str, Any]) -> object:
    series = patch.get("series")
    return series.get("count") if isinstance(series, Mapping) else None


CORE_V1 = EventsApi(
    name="v1",
    prefix="/api/v1",
    body=models.Event.to_api,
    read=models.Event.from_api,
    count_of=lambda event: max(event.count, 1),
    patched_count=lambda patch: patch.get("count"),
)
"""core/v1 Events (client-go's ``tools/record``)."""

EVENTS_V1 = EventsApi(
    name="events.k8s.io/v1",
    prefix="/apis/events.k8s.io/v1",
    body=models.Event.to_events_v1,
    read=models.Event.from_events_v1,
    count_of=lambda event: event.series.count if event.series is not None else 1,
    patched_count=_patched_series_count,
)
"""events.k8s.io/v1 Events, with series (client-go's ``tools/events``)."""

BY_NAME: Mapping[str, EventsApi] = {CORE_V1.name: CORE_V1, EVENTS_V1.name: EVENTS_V1}
"""The APIs by the name the ``api`` option gives them."""


def api_of(event_sink: object) -> EventsApi:
    """The API a sink writes: its ``api`` attribute, core/v1 when it has none."""
    return BY_NAME.get(str(getattr(event_sink, "api", CORE_V1.name)), CORE_V1)


def api_known(event_sink: object) -> bool:
    """True when reading the sink's ``api`` makes no request and runs no credential plugin: a
    sink that finds its API out later says ``api_known = False`` until then (its recording is
    prepared on a writer: rule 10); silence means known, raising unknown."""
    try:
        return bool(getattr(event_sink, "api_known", True))
    except Exception:  # a sink's own bug: never on the dispatcher's path
        return False


def call_optional(event_sink: object, name: str, *args: object) -> None:
    """Call a method a sink need not have (``drain``, ``close``), if it has it."""
    method = getattr(event_sink, name, None)
    if callable(method):
        method(*args)
