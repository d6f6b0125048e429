"""events.k8s.io/v1 series: client-go's ``tools/events`` way of recording repeats.

The counterpart of :mod:`k8s_logging_events.correlator`, on the dispatcher before the writer:
occurrences with one *isomorphic key* are one Event, created first, then patched as a series
after six quiet minutes, every thirty minutes while it goes on and, unlike client-go, at
every flush and close; see docs/events-v1.md."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime

import cachetools

from k8s_logging_events import _process, _sanitise, models
from k8s_logging_events import clock as clock_mod

# the reporting controller's rule lives in _sanitise; it stays importable from here
from k8s_logging_events._sanitise import qualified_name

__all__ = [
    "DEFAULT_ACTION",
    "FINISH_SECONDS",
    "MAX_NOTE_BYTES",
    "REFRESH_SECONDS",
    "SeriesCorrelator",
    "SeriesPolicy",
    "isomorphic_key",
    "prepare_event",
    "qualified_name",
    "series_key",
    "series_patch",
]

FINISH_SECONDS = 360.0
"""client-go's ``finishTime``: a series quiet for six minutes is finished."""

REFRESH_SECONDS = 1800.0
"""client-go's ``refreshTime``: an ongoing series is written every thirty minutes."""

DEFAULT_CACHE_SIZE = 4096
"""Series remembered at once (client-go keeps an unbounded map; we keep the LRU bound)."""

DEFAULT_ACTION = "Logged"
"""The action of an event whose record names none: events.k8s.io/v1 requires one."""

MAX_NOTE_BYTES = _sanitise.MESSAGE_MAX_BYTES
"""The API server's limit on ``note``, in UTF-8 bytes."""

MAX_FIELD_BYTES = _sanitise.REASON_MAX_BYTES  # reason, action and reportingInstance


def isomorphic_key(event: models.Event) -> tuple[object, ...]:
    """The fields that make two occurrences one events.k8s.io/v1 Event (the note is not one):
    type, action, reason, reporting controller and instance, involved and related object."""
    return _key(event, event.involved_object)


def series_key(event: models.Event) -> tuple[object, ...]:
    """:func:`isomorphic_key` without the involved object's resourceVersion (not in client-go):
    events about successive versions of one object are one series, as in core/v1."""
    ref = event.involved_object
    if ref.resource_version:
        ref = dataclasses.replace(ref, resource_version="")
    return _key(event, ref)


def _key(event: models.Event, ref: models.ObjectReference) -> tuple[object, ...]:
    fields = (event.type, event.action, event.reason, event.reporting_controller)
    return (*fields, event.reporting_instance, ref, event.related)


def series_patch(event: models.Event) -> bytes:
    """The strategic-merge patch that writes ``event``'s series, and nothing else."""
    assert event.series is not None, "only a series is patched in events.k8s.io/v1"
    patch = {"series": event.to_api()["series"]}  # the model owns the wire form
    return json.dumps(patch, separators=(",", ":"), sort_keys=True).encode()


def prepare_event(event: models.Event, *, default_action: str = DEFAULT_ACTION) -> models.Event:
    """Make ``event`` acceptable to events.k8s.io/v1 validation: defaults for a missing action or
    reason, a qualified reporting controller, the reporting instance cut to 128 bytes (the
    controller's name when empty), the note cut to 1024 UTF-8 bytes at a character boundary
    (marked ``" ..."``), ``eventTime`` from the first timestamp."""
    controller = qualified_name(event.reporting_controller or event.source.component)
    instance = event.reporting_instance or event.source.host or controller
    return dataclasses.replace(
        event,
        action=_sanitise.cut_bytes(event.action or default_action, MAX_FIELD_BYTES),
        reason=_sanitise.cut_bytes(event.reason or "Logging", MAX_FIELD_BYTES),
        reporting_controller=controller,
        reporting_instance=_sanitise.cut_bytes(instance, MAX_FIELD_BYTES),
        message=_sanitise.cut_bytes(event.message, MAX_NOTE_BYTES, _sanitise.TRUNCATION_MARK),
        event_time=event.event_time or event.first_timestamp,
    )


@dataclasses.dataclass(slots=True)
class _Entry:
    """One Event's first occurrence and series; the times are monotonic, so that a step of the
    wall clock neither cuts short nor stretches finishing and refreshing (as in client-go)."""

    event: models.Event
    last_seen: float
    last_written: float | None = None
    generation: int = 0
    """How many series of this key came before (finished); names the next one's Event."""
    previous: str = ""
    """The name of the Event of the series before, when this one was renamed after it."""
    finished: bool = False


class SeriesCorrelator(_process.Locked):
    """Groups isomorphic occurrences into series, as client-go's ``tools/events`` does.

    Args:
        clock: ``now()`` for series times, ``monotonic()`` for finishing and refreshing.
        cache_size: how many Events are remembered at once (least recently used go first).
        finish_seconds: quiet time after which a series is finished (client-go: 6 minutes).
        refresh_seconds: how often an ongoing series is written (client-go: 30 minutes).
        key: what makes occurrences one series: :func:`isomorphic_key` or :func:`series_key`.
        rename: names the Event of a key's later series, given its first occurrence under
            the name of the series before it and the generation (from 1), for names that
            follow from the key alone and would otherwise meet the finished series' Event
            again; None keeps the name each event comes with.
    """

    def __init__(
        self,
        *,
        clock: clock_mod.Clock | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        finish_seconds: float = FINISH_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
        key: Callable[[models.Event], tuple[object, ...]] = isomorphic_key,
        rename: Callable[[models.Event, int], models.Event] | None = None,
    ) -> None:
        self._clock = clock or clock_mod.SystemClock()
        self._rename = rename
        self._monotonic = clock_mod.monotonic_source(self._clock)
        self._key = key
        self._finish = finish_seconds
        self._refresh = refresh_seconds
        self._cache = cachetools.LRUCache[tuple[object, ...], _Entry](cache_size)
        super().__init__()

    def observe(self, event: models.Event) -> tuple[models.Event, bool]:
        """Record one occurrence; return the event to write and whether to hold it back. The first
        comes as is (a create), the second as a series of 2, later ones counted and held; all with
        the first's fields and note (immutable in events.k8s.io/v1)."""
        key = self._key(event)
        seen = models.seen_at(event, self._monotonic)
        # when the occurrence was recorded, not when the dispatcher came to it
        now = event.event_time or event.first_timestamp or self._clock.now()
        with self._lock:
            entry = self._cache.get(key)
            if entry is None or entry.finished or seen - entry.last_seen > self._finish:
                generation = 0 if entry is None else entry.generation + 1
                previous = ""
                if entry is not None and self._rename is not None:
                    # named from the series before it (under that one's name)
                    previous = entry.event.name
                    event = self._rename(dataclasses.replace(event, name=previous), generation)
                self._cache[key] = _Entry(event, seen, generation=generation, previous=previous)
                return event, False
            first = entry.event
            count = first.series.count + 1 if first.series is not None else 2
            entry.event = dataclasses.replace(first, series=models.EventSeries(count, now))
            # occurrences come out of the order they were logged in (several threads): one
            # that comes late must not bring the finish forward
            entry.last_seen = max(entry.last_seen, seen)
            return entry.event, count > 2

    def previous(self, event: models.Event) -> str:
        """The name of the Event of the series before ``event``'s, if ``event`` was renamed
        after it (the series before went quiet here); "" otherwise."""
        with self._lock:
            entry = self._cache.get(self._key(event))
            return entry.previous if entry is not None and entry.event.name == event.name else ""

    def hold_wait(self, event: models.Event) -> float:
        """Seconds until the held series of ``event`` is due: finished, or refreshed."""
        seen = self._monotonic()
        with self._lock:
            entry = self._cache.get(self._key(event))
            if entry is None or entry.event.name != event.name:
                return 0.0  # evicted, or a new series followed it: what is held may go
            return max(0.0, self._due(entry) - seen)

    def finished_between(self, earlier: models.Event, later: models.Event) -> bool:
        """True when ``later`` came more than the finish time after ``earlier``'s last
        occurrence, by their timestamps (as a process that did not see the series tells)."""
        # the earlier one's latest time: a wall clock stepped back can leave its series' last
        # observation before its first, and it was observed then too
        series_last = earlier.series.last_observed_time if earlier.series is not None else None
        times = (series_last, earlier.event_time or earlier.first_timestamp)
        last = max((time for time in times if time is not None), default=None)
        first = later.event_time or later.first_timestamp
        if last is None or first is None:
            return False
        return (first - last).total_seconds() > self._finish

    def release(self, event: models.Event) -> bool:
        """True when the held series of ``event`` is due; a finished series is marked so."""
        key = self._key(event)
        seen = self._monotonic()
        with self._lock:
            entry = self._cache.get(key)
            if entry is None or entry.event.name != event.name:
                return True  # evicted, or a new series followed it: write what is held
            if self._due(entry) > seen:
                return False
            if seen - entry.last_seen >= self._finish:
                # written because it went quiet: the series is over, a new one starts next
                # (remembered, so that the next one's Event gets a name of its own)
                entry.finished = True
            return True

    def written(self, sent: models.Event) -> None:
        """Remember when ``sent``'s Event was last written (for the refresh heartbeat)."""
        seen = self._monotonic()
        with self._lock:
            entry = self._cache.get(self._key(sent))
            if entry is not None and entry.event.name == sent.name:
                entry.last_written = seen

    def now(self) -> datetime:
        """The time on this correlator's clock."""
        return self._clock.now()

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def _due(self, entry: _Entry) -> float:
        finish = entry.last_seen + self._finish
        if entry.last_written is not None:
            return min(finish, entry.last_written + self._refresh)
        return finish


class SeriesPolicy:
    """The writer's events.k8s.io/v1 policy: create, then patch the series only."""

    def __init__(self, correlator: SeriesCorrelator) -> None:
        self._correlator = correlator

    def is_first(self, event: models.Event) -> bool:
        """An event without a series is the first occurrence."""
        return event.series is None

    def patch(self, event: models.Event) -> bytes:
        """Only the series changes: every other field is immutable in events.k8s.io/v1."""
        return series_patch(event)

    def hold_wait(self, event: models.Event) -> float:
        """Until the series is finished or due for its refresh."""
        return self._correlator.hold_wait(event)

    def release(self, event: models.Event) -> bool:
        """The series may go once it is due."""
        return self._correlator.release(event)

    def written(self, sent: models.Event, stored: models.Event) -> None:
        """Start the refresh clock of this series."""
        self._correlator.written(sent)

    def exists_is_ours(self, event: models.Event, maybe_landed: bool) -> bool:
        """A series create meeting AlreadyExists met our own first create (client-go retries)."""
        return maybe_landed or event.series is not None

    def count_of(self, event: models.Event) -> int:
        """How many occurrences ``event`` stands for: its series count, 1 without a series."""
        return event.series.count if event.series is not None else 1

    def with_count(self, event: models.Event, count: int, **changes: object) -> models.Event:
        """``event`` standing for ``count`` occurrences (a series from 2 on), with ``changes``."""
        if count < 2:
            return models.replaced(event, series=None, **changes)
        last = event.series.last_observed_time if event.series is not None else None
        last = last or event.event_time or event.first_timestamp or self._correlator.now()
        return models.replaced(event, series=models.EventSeries(count, last), **changes)

    def same_event(self, ours: models.Event, stored: models.Event) -> bool:
        """True when ``stored`` is our event: the same :func:`series_key` (the note aside)."""
        return series_key(ours) == series_key(stored)

    def previous(self, event: models.Event) -> str:
        """The Event of the series before ``event``'s (which went quiet here, but another
        process may have kept it going), or "" for a first series."""
        return self._correlator.previous(event)

    def finished(self, ours: models.Event, stored: models.Event) -> bool:
        """True when ``stored``'s last occurrence came more than the finish time before
        ``ours`` (a create of a restarted process): its series is over, ours starts anew."""
        return self._correlator.finished_between(stored, ours)
