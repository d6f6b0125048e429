"""One object per Events API: everything that differs between core/v1 and events.k8s.io/v1.

This sits beside the sink and the recorder. core/v1 (client-go's ``tools/record``) and
events.k8s.io/v1 (client-go's ``tools/events``) differ in their paths, in how an Event is
encoded and read back, in how repeats are correlated (counts and the spam filter, or series
on a heartbeat) and in how a repeat is written (a count patch, or a series patch). Each
:class:`EventsApi` keeps its API's answers to those questions together, so that no other
module compares API names: the sink asks its API object for paths and bodies, and the
recorder asks it how to correlate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from k8s_logging_events import clock as clock_mod
from k8s_logging_events import correlator, models, series

__all__ = [
    "BY_NAME",
    "CORE_V1",
    "EVENTS_V1",
    "CountPolicy",
    "Correlation",
    "EventsApi",
    "WritePolicy",
    "api_of",
]

Correlate = Callable[[Sequence[models.Event]], list[tuple[models.Event, bool, int]]]
"""Turns a run of occurrences identical for correlation (they differ only in name and time)
into the writes to queue: ``(event, held back, occurrences it carries)``, in order."""


class WritePolicy(Protocol):
    """What the writer needs to know about one API's way of recording repeats."""

    def is_first(self, event: models.Event) -> bool:
        """True when ``event`` is the first occurrence, written by a create."""
        ...

    def patch(self, event: models.Event) -> bytes:
        """The strategic-merge patch that records a repeat on the stored event."""
        ...

    def hold_wait(self, event: models.Event) -> float:
        """Seconds until a held-back write of ``event`` may go."""
        ...

    def release(self, event: models.Event) -> bool:
        """True when a held-back write of ``event`` may go now (it may consume a token)."""
        ...

    def written(self, sent: models.Event, stored: models.Event) -> None:
        """Feed back what the server stored after a successful write of ``sent``."""
        ...

    def exists_is_ours(self, event: models.Event, maybe_landed: bool) -> bool:
        """True when ``AlreadyExists`` on a create means our own earlier create landed.

        For a sink that cannot read events; one that can reads the event and asks
        :meth:`same_event`.
        """
        ...

    def count_of(self, event: models.Event) -> int:
        """How many occurrences ``event`` stands for (``count``, or its series count)."""
        ...

    def with_count(self, event: models.Event, count: int) -> models.Event:
        """``event`` standing for ``count`` occurrences."""
        ...

    def same_event(self, ours: models.Event, stored: models.Event) -> bool:
        """True when ``stored``, found under our event's name, is our event (same key)."""
        ...


Correlation = Callable[
    [correlator.CorrelatorOptions, clock_mod.Clock, correlator.EventNamer],
    tuple[WritePolicy, Correlate, bool],
]
"""Makes a fresh correlation step for one sink, the write policy that goes with it, and
whether the step's state never crosses objects (its runs may be cut object by object)."""


@dataclass(frozen=True, slots=True)
class EventsApi:
    """What one Events API is: its name, paths, encoding, correlation and write policy."""

    name: str
    """``v1`` or ``events.k8s.io/v1``, as the handler's ``api`` option names it."""
    prefix: str
    """The path before ``/namespaces/...``: ``/api/v1`` or ``/apis/events.k8s.io/v1``."""
    body: Callable[[models.Event], dict[str, Any]]
    """The JSON body that creates or replaces an event."""
    read: Callable[[Mapping[str, Any]], models.Event]
    """The Event in an answer of this API."""
    correlation: Correlation
    """client-go's counts and spam filter (core/v1), or series (events.k8s.io/v1)."""
    count_of: Callable[[models.Event], int]
    """How many occurrences an event stands for: its count, or its series' (1 without)."""
    patched_count: Callable[[Mapping[str, Any]], object]
    """The count a patch sets (``count``, or ``series.count``), if it sets one."""


class CountPolicy:
    """core/v1: repeats patch ``count``; the correlator's spam filter holds writes back."""

    def __init__(self, event_correlator: correlator.EventCorrelator) -> None:
        self._correlator = event_correlator

    def is_first(self, event: models.Event) -> bool:
        """The first occurrence has a count of 1 (or none)."""
        return event.count <= 1

    def patch(self, event: models.Event) -> bytes:
        """client-go's count patch."""
        return correlator.count_patch(event)

    def hold_wait(self, event: models.Event) -> float:
        """Until the event's spam bucket has a token again."""
        return self._correlator.token_wait(event)

    def release(self, event: models.Event) -> bool:
        """Take a token from the event's spam bucket, if there is one."""
        return self._correlator.take_token(event)

    def written(self, sent: models.Event, stored: models.Event) -> None:
        """Let the correlator know the stored name, count and resourceVersion."""
        self._correlator.update_after_write(sent, stored)

    def exists_is_ours(self, event: models.Event, maybe_landed: bool) -> bool:
        """Only after a create that may have landed (client-go gives AlreadyExists up)."""
        return maybe_landed

    def count_of(self, event: models.Event) -> int:
        """The event's ``count`` (an event without one stands for one occurrence)."""
        return _count(event)

    def with_count(self, event: models.Event, count: int) -> models.Event:
        """``event`` with ``count``."""
        return dataclasses.replace(event, count=count)

    def same_event(self, ours: models.Event, stored: models.Event) -> bool:
        """True for the same source, involved object (any resourceVersion), type and reason,
        and the same message unless both are combined events (whose message changes)."""
        if (ours.source, ours.type, ours.reason) != (stored.source, stored.type, stored.reason):
            return False
        if not _same_object(ours.involved_object, stored.involved_object):
            return False
        prefix = correlator.COMBINED_MESSAGE_PREFIX
        combined = ours.message.startswith(prefix) and stored.message.startswith(prefix)
        return combined or ours.message == stored.message


def _same_object(ours: models.ObjectReference, stored: models.ObjectReference) -> bool:
    return dataclasses.replace(ours, resource_version="") == dataclasses.replace(
        stored, resource_version=""
    )


def _counting(
    options: correlator.CorrelatorOptions,
    clock: clock_mod.Clock,
    namer: correlator.EventNamer,
) -> tuple[WritePolicy, Correlate, bool]:
    """core/v1: aggregation, counts and the spam filter; repeats patch ``count``."""
    if options.clock is None:
        options = _with_clock(options, clock)
    events = correlator.EventCorrelator(options, namer=namer)
    return CountPolicy(events), events.correlate_many, events.keeps_objects_apart


def _in_series(
    options: correlator.CorrelatorOptions,
    clock: clock_mod.Clock,
    namer: correlator.EventNamer,
) -> tuple[WritePolicy, Correlate, bool]:
    """events.k8s.io/v1: isomorphic occurrences form a series, written on a heartbeat.

    With deterministic names, a series is keyed without the involved object's
    resourceVersion and named after that key.
    """
    deterministic = namer.deterministic
    key = series.series_key if deterministic else series.isomorphic_key
    grouped = series.SeriesCorrelator(clock=clock, key=key)

    def prepared(event: models.Event) -> models.Event:
        event = series.prepare_event(event)
        if deterministic:
            event = dataclasses.replace(event, name=namer.series_name(event))
        return event

    def observe(run: Sequence[models.Event]) -> list[tuple[models.Event, bool, int]]:
        return [(*grouped.observe(prepared(event)), 1) for event in run]

    # every occurrence is observed on its own: runs gain nothing, arrival order is exact
    return series.SeriesPolicy(grouped), observe, False


def _with_clock(
    options: correlator.CorrelatorOptions, clock: clock_mod.Clock
) -> correlator.CorrelatorOptions:
    values = {name: getattr(options, name) for name in options.__dataclass_fields__}
    values["clock"] = clock
    return correlator.CorrelatorOptions(**values)


def _count(event: models.Event) -> int:
    return max(event.count, 1)


def _series_count(event: models.Event) -> int:
    return event.series.count if event.series is not None else 1


def _patched_count(patch: Mapping[str, Any]) -> object:
    return patch.get("count")


def _patched_series_count(patch: Mapping[str, Any]) -> object:
    series = patch.get("series")
    return series.get("count") if isinstance(series, Mapping) else None


CORE_V1 = EventsApi(
    name="v1",
    prefix="/api/v1",
    body=models.Event.to_api,
    read=models.Event.from_api,
    correlation=_counting,
    count_of=_count,
    patched_count=_patched_count,
)
"""core/v1 Events (client-go's ``tools/record``)."""

EVENTS_V1 = EventsApi(
    name="events.k8s.io/v1",
    prefix="/apis/events.k8s.io/v1",
    body=models.Event.to_events_v1,
    read=models.Event.from_events_v1,
    correlation=_in_series,
    count_of=_series_count,
    patched_count=_patched_series_count,
)
"""events.k8s.io/v1 Events, with series (client-go's ``tools/events``)."""

BY_NAME: Mapping[str, EventsApi] = {CORE_V1.name: CORE_V1, EVENTS_V1.name: EVENTS_V1}
"""The APIs by the name the ``api`` option gives them."""


def api_of(event_sink: object) -> EventsApi:
    """The API a sink writes: its ``api`` attribute, core/v1 when it has none."""
    return BY_NAME.get(str(getattr(event_sink, "api", CORE_V1.name)), CORE_V1)
