"""The correlator's stages (``_correlation``): what the observer makes of a run of repeats."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from k8s_logging_events import _correlation
from k8s_logging_events import correlator as corr
from k8s_logging_events.models import Event, EventSeries, EventSource, ObjectReference

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _every_field_set(name: str, count: int, when: datetime, version: str) -> Event:
    pod = ObjectReference(kind="Pod", namespace="shop", name="web-1", uid="u-1", api_version="v1")
    return Event(
        name=name,
        namespace="shop",
        involved_object=pod,
        reason="BackOff",
        message="Back-off pulling image",
        source=EventSource(component="kubelet", host="node-1"),
        first_timestamp=when,
        last_timestamp=when,
        count=count,
        type="Warning",
        event_time=when,
        series=EventSeries(count=2, last_observed_time=when),
        action="Pulling",
        related=dataclasses.replace(pod, kind="Node", name="node-1", namespace=""),
        reporting_controller="kubelet",
        reporting_instance="node-1",
        annotations={"team": "shop"},
        resource_version=version,
    )


def test_a_run_of_repeats_is_the_latest_occurrence_on_the_stored_event() -> None:
    """Name, resource version and first timestamp are the stored event's, the count is raised
    by the run's length, and every other field, whatever fields Event has, is the latest's."""
    observer = _correlation.Observer(corr._settle(corr.CorrelatorOptions()))
    stored = _every_field_set("web-1.17a", 4, T0, "812")
    observer.record("key", stored)
    latest = _every_field_set("web-1.17b", 1, T0 + timedelta(seconds=30), "")
    repeat = observer.count_repeats(latest, "key", 3)
    expected = dataclasses.replace(
        latest, name="web-1.17a", resource_version="812", first_timestamp=T0, count=7
    )
    assert repeat == expected
    for field in dataclasses.fields(Event):
        assert getattr(repeat, field.name) == getattr(expected, field.name), field.name
    again = observer.count_repeats(latest, "key", 1)
    assert again is not None
    assert again.count == 8


def test_nothing_known_counts_nothing() -> None:
    """Without a stored event under the key there is no repeat to count, and none is stored."""
    observer = _correlation.Observer(corr._settle(corr.CorrelatorOptions()))
    latest = _every_field_set("web-1.17b", 1, T0, "")
    assert observer.count_repeats(latest, "key", 5) is None
    assert observer.peek("key") is None
