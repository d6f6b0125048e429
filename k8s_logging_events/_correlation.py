"""The rules of correlation: client-go's keys for an event, and the three stages.

Below :mod:`k8s_logging_events.correlator`, which runs the stages (each with a bounded LRU
cache) in client-go's order under one lock; see docs/correlation.md. Pure logic on an
injected clock (every interval and refill on its monotonic reading)."""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple, TypeAlias

import cachetools

from k8s_logging_events import _sanitise, _tokenbucket, models
from k8s_logging_events import clock as clocks

COMBINED_MESSAGE_PREFIX = "(combined from similar events): "
"""Put before the latest message of an aggregate event, so readers know others were folded in."""

KeyFunc: TypeAlias = Callable[[models.Event], tuple[str, str]]
"""Groups events for aggregation: ``(aggregate key, local key)``; similar events share the first."""

MessageFunc: TypeAlias = Callable[[models.Event], str]
"""Writes the message of an aggregate event from the event that tipped the group over."""

SpamKeyFunc: TypeAlias = Callable[[models.Event], str]
"""Names the spam-filter token bucket an event draws from."""


def get_event_key(event: models.Event) -> str:
    """The key that makes two events the same event, to be counted rather than repeated: source,
    involved object but its resource version, type, reason and message, concatenated without
    separators as client-go does (so ``"ab"`` + ``"c"`` and ``"a"`` + ``"bc"`` collide)."""
    ref = event.involved_object
    return "".join(
        (
            event.source.component,
            event.source.host,
            ref.kind,
            ref.namespace,
            ref.name,
            ref.field_path,
            ref.uid,
            ref.api_version,
            event.type,
            event.reason,
            event.message,
        )
    )


def get_spam_key(event: models.Event) -> str:
    """The default spam key: one token bucket per source, object and event type (every
    container and reason of an object share it, as in client-go)."""
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
            event.type,
        )
    )


def spam_key_per_reason(event: models.Event) -> str:
    """A spam key per source, object, event type *and reason*, so one noisy reason
    (``BackOff``) cannot hold back every other about its object (kubernetes issue #136061);
    the handler's ``correlator: {spam_key: per-reason}``."""
    return get_spam_key(event) + event.reason


SPAM_KEYS = {"object": get_spam_key, "per-reason": spam_key_per_reason}
"""The named spam keys of the handler's ``correlator: {spam_key: ...}`` option: ``object``
(client-go's default) and ``per-reason``."""


def aggregate_by_reason(event: models.Event) -> tuple[str, str]:
    """Group events that differ only in their message: the default :data:`KeyFunc`. Aggregate
    key: source, object but field path, type, reason, reporting controller and instance,
    concatenated; local key: the message."""
    aggregate_key = get_spam_key(event) + event.reason
    return aggregate_key + event.reporting_controller + event.reporting_instance, event.message


def combined_message(event: models.Event) -> str:
    """Return :data:`COMBINED_MESSAGE_PREFIX` plus the message: the default :data:`MessageFunc`."""
    return COMBINED_MESSAGE_PREFIX + event.message


class Settings(NamedTuple):
    """:class:`CorrelatorOptions` with the defaults filled in, typed without ``None``."""

    lru_cache_size: int
    burst_size: int
    qps: float
    key_func: KeyFunc
    message_func: MessageFunc
    max_events: int
    max_interval_seconds: float
    clock: clocks.Clock
    spam_key_func: SpamKeyFunc
    event_names: str


@dataclasses.dataclass(slots=True)
class _AggregateRecord:
    """The distinct local keys seen for one aggregate key, and when the last came: monotonic,
    so that a step of the wall clock neither cuts the interval short nor stretches it."""

    last_seen: float
    local_keys: set[str] = dataclasses.field(default_factory=set)


class Aggregator:
    """Combines similar events once too many distinct ones come close together."""

    def __init__(self, settings: Settings, namer: _sanitise.EventNamer) -> None:
        self._cache = cachetools.LRUCache[str, _AggregateRecord](settings.lru_cache_size)
        self._namer = namer
        self._key_func = settings.key_func
        self._message_func = settings.message_func
        self._max_events = settings.max_events
        self._max_interval = settings.max_interval_seconds
        self._clock = settings.clock
        self._monotonic = clocks.monotonic_source(settings.clock)

    def aggregate(self, event: models.Event) -> tuple[models.Event, str]:
        """Return the event to observe and its cache key: ``event`` itself or an aggregate."""
        seen = models.seen_at(event, self._monotonic)
        now = self._clock.now()  # the aggregate event's timestamps, and its name
        if event.observed is not None and event.last_timestamp is not None:
            now = event.last_timestamp  # when it occurred, not when this thread came to it
        event_key = get_event_key(event)
        aggregate_key, local_key = self._key_func(event)

        record = self._cache.get(aggregate_key)
        # the window slides: it is measured from the latest similar event, not the first
        if record is None or seen - record.last_seen > self._max_interval:
            record = _AggregateRecord(seen)
        record.local_keys.add(local_key)
        record.last_seen = max(record.last_seen, seen)  # one logged earlier may come later
        self._cache[aggregate_key] = record

        if len(record.local_keys) < self._max_events:
            return event, event_key

        # keep the set below the threshold, so every new message is combined too
        record.local_keys.pop()
        aggregate = models.Event(
            # named like any new event: a name like web/0 or 50% never reaches the server
            name=self._namer.combined_name(event, aggregate_key, now),
            namespace=event.namespace,
            involved_object=event.involved_object,
            reason=event.reason,
            message=self._message_func(event),
            source=event.source,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            type=event.type,
            observed=event.observed,
        )
        return aggregate, aggregate_key

    def touch_if_unchanged(self, event: models.Event) -> bool:
        """Aggregate ``event`` if that only moves its group's time (its message is known to a
        group below the threshold, within the interval) and return True; else return False."""
        seen = models.seen_at(event, self._monotonic)
        self._clock.now()  # read as aggregate() reads it, so that an interval clock moves alike
        aggregate_key, local_key = self._key_func(event)
        record = self._cache.get(aggregate_key)
        if (
            record is None
            or seen - record.last_seen > self._max_interval
            or local_key not in record.local_keys
            or len(record.local_keys) >= self._max_events
        ):
            return False
        record.last_seen = max(record.last_seen, seen)
        self._cache[aggregate_key] = record
        return True

    def combines(self, ours: models.Event, stored: models.Event) -> bool:
        """True when ``stored``, found under the name of ``ours``, is ``ours``, a combined event,
        with another latest message. Under deterministic names, ``ours`` not named as a plain
        event says so (its name is its group's, whatever a ``message_func`` writes); under
        time names, both messages must say so."""
        namer = self._namer
        if not namer.deterministic:
            prefix = COMBINED_MESSAGE_PREFIX
            return ours.message.startswith(prefix) and stored.message.startswith(prefix)
        ref, anytime = ours.involved_object, datetime.min.replace(tzinfo=UTC)  # names nothing
        plain = namer.event_name(ours.source, ref, ours.type, ours.reason, ours.message, anytime)
        return ours.name != plain


@dataclasses.dataclass(frozen=True, slots=True)
class _Observation:
    count: int
    first_timestamp: datetime | None
    name: str
    resource_version: str


class Observer:
    """Counts repeats of an event."""

    def __init__(self, settings: Settings) -> None:
        self._cache = cachetools.LRUCache[str, _Observation](settings.lru_cache_size)

    def observe(self, event: models.Event, key: str) -> tuple[models.Event, bool]:
        """Count ``event`` under ``key``; return it (as a repeat when True) or unchanged."""
        repeat = self.count_repeats(event, key, 1)
        if repeat is not None:
            return repeat, True
        self.record(key, event)
        return event, False

    def count_repeats(
        self, latest: models.Event, key: str, occurrences: int
    ) -> models.Event | None:
        """Count ``occurrences`` repeats of the event known under ``key``, ``latest`` the last:
        return ``latest`` as a repeat of it, count raised, or None when none is known."""
        last = self.peek(key)
        if last is None or last.count <= 0:
            return None
        repeat = _as_repeat(latest, last, last.count + occurrences)
        self.record(key, repeat)
        return repeat

    def peek(self, key: str) -> _Observation | None:
        # without making it recently used: ``in`` and the Mapping-level lookup leave
        # cachetools' LRU order alone
        return cachetools.Cache.__getitem__(self._cache, key) if key in self._cache else None

    def record(self, key: str, event: models.Event) -> None:
        self._cache[key] = _Observation(
            event.count, event.first_timestamp, event.name, event.resource_version
        )


class SpamFilter:
    """Holds back what a source sends about an object beyond its token bucket."""

    def __init__(self, settings: Settings) -> None:
        self._cache = cachetools.LRUCache[str, _tokenbucket.TokenBucket](settings.lru_cache_size)
        self._burst = settings.burst_size
        # client-go keeps qps as a float32, so its refill is 1/300 rounded to single precision
        # (beyond the float32 range, Go's conversion gives infinity)
        try:
            self._qps: float = struct.unpack("f", struct.pack("f", settings.qps))[0]
        except OverflowError:
            self._qps = math.inf
        # refill is a duration: measured on the monotonic reading, never the wall clock
        self._monotonic = clocks.monotonic_source(settings.clock)
        self._key_func = settings.spam_key_func

    def _bucket(self, key: str, now: float) -> _tokenbucket.TokenBucket:
        # a missing or evicted bucket comes back full
        return self._cache.get(key) or _tokenbucket.TokenBucket(self._qps, self._burst, now)

    def take(self, event: models.Event, *, late: bool = False) -> bool:
        return self.take_many(event, 1, late=late) == 1

    def take_many(self, event: models.Event, count: int, *, late: bool = False) -> int:
        """Take up to ``count`` tokens from ``event``'s bucket, one at a time, when it occurred
        (``late``: now, for a count held back); return how many."""
        key = self._key_func(event)
        now = self._monotonic() if late else models.seen_at(event, self._monotonic)
        bucket = self._bucket(key, now)
        taken = 0
        while taken < count and bucket.try_take(now):
            taken += 1
        # stored on every call, so a busy key stays in the cache
        self._cache[key] = bucket
        return taken

    def wait(self, event: models.Event) -> float:
        """Seconds until ``event``'s bucket has a whole token; takes nothing."""
        now = self._monotonic()
        return self._bucket(self._key_func(event), now).wait_time(now)


def _as_repeat(latest: models.Event, stored: _Observation, count: int) -> models.Event:
    """``latest`` as a repeat of ``stored``, as ``dataclasses.replace`` would build it: spelled out
    because ``replace`` costs twice as much on the dispatcher (``tests/test_correlation.py``
    checks every field)."""
    e = latest
    return models.event_of(
        stored.name, e.namespace, e.involved_object, e.reason, e.message, e.source,
        stored.first_timestamp, e.last_timestamp, count, e.type, e.event_time, e.series,
        e.action, e.related, e.reporting_controller, e.reporting_instance, e.annotations,
        stored.resource_version, e.observed,
    )  # fmt: skip
