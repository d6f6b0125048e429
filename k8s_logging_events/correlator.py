"""Correlation: what to do with each event before it is written, as client-go decides it.

A port of client-go's ``tools/record/events_cache.go`` and ``tools/record/util``, on the
dispatcher (aggregate, count, spam-filter), fed back by the writer. Pure logic on an injected
clock. The keys and stages live in :mod:`~k8s_logging_events._correlation`; the rules in
``docs/correlation.md``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from k8s_logging_events import _correlation, _numbers, _process, _sanitise, models
from k8s_logging_events import clock as clocks

# the keys and the stages live in _correlation; the keys keep their public names here
from k8s_logging_events._correlation import (
    COMBINED_MESSAGE_PREFIX,
    SPAM_KEYS,
    KeyFunc,
    MessageFunc,
    SpamKeyFunc,
    aggregate_by_reason,
    combined_message,
    get_event_key,
    get_spam_key,
    spam_key_per_reason,
)

# names live in _sanitise; these stay importable from here, as client-go's util package has them
from k8s_logging_events._sanitise import (
    EventNamer,
    generate_event_name,
    is_dns_subdomain,
    unix_nanos,
)

__all__ = [
    "COMBINED_MESSAGE_PREFIX",
    "DEFAULT_AGGREGATE_INTERVAL_SECONDS",
    "DEFAULT_AGGREGATE_MAX_EVENTS",
    "DEFAULT_LRU_CACHE_SIZE",
    "DEFAULT_SPAM_BURST",
    "DEFAULT_SPAM_QPS",
    "SPAM_KEYS",
    "CorrelateResult",
    "CorrelatorOptions",
    "CountPolicy",
    "EventCorrelator",
    "EventNamer",
    "KeyFunc",
    "MessageFunc",
    "SpamKeyFunc",
    "aggregate_by_reason",
    "combined_message",
    "count_patch",
    "generate_event_name",
    "get_event_key",
    "get_spam_key",
    "is_dns_subdomain",
    "spam_key_per_reason",
    "unix_nanos",
    "validate_event_type",
]

DEFAULT_LRU_CACHE_SIZE = 4096
"""Entries in each of the correlator's three caches: memory stays bounded, however many objects."""

DEFAULT_SPAM_BURST = 25
"""Events one source may send about one object in a burst before the spam filter holds them back."""

DEFAULT_SPAM_QPS = 1 / 300
"""Spam bucket refill, one per five minutes: trims the long tail from things that stay unhealthy."""

DEFAULT_AGGREGATE_MAX_EVENTS = 10
"""Distinct messages for one object and reason, within the interval, at which they are combined."""

DEFAULT_AGGREGATE_INTERVAL_SECONDS = 600.0
"""Seconds without a similar event after which aggregation starts counting messages afresh."""

_VALID_EVENT_TYPES = frozenset({models.NORMAL, models.WARNING})
# the timestamp the count patch is diffed against, as Go serialises it
_PATCH_BASE_TIMESTAMP = models.format_time(datetime(1970, 1, 1, tzinfo=UTC))
# Go's json.Marshal escapes these so the JSON can sit inside HTML or JavaScript
_GO_JSON_ESCAPES = str.maketrans({char: f"\\u{ord(char):04x}" for char in "<>&\u2028\u2029"})
_COUNTS = ("lru_cache_size", "burst_size", "max_events")
_NUMBER_OPTIONS = (*_COUNTS, "qps", "max_interval_seconds")


def takes_event(function: object) -> bool:
    """Whether ``function`` can be called with one event, as each correlator hook is; one of
    another shape (``os.getcwd``) would fail every event on the dispatcher."""
    if not callable(function):
        return False
    try:
        inspect.signature(function).bind(None)
    except ValueError:  # a builtin without a signature: trusted
        return True
    except TypeError:
        return False
    return True


def validate_event_type(type: str) -> bool:
    """Tell whether ``type`` is an event type client-go accepts: exactly Normal or Warning."""
    return type in _VALID_EVENT_TYPES


def count_patch(event: models.Event) -> bytes:
    """The strategic-merge patch that records ``event`` as a repeat of a stored event: client-go's
    diff from ``event`` with count 0, lastTimestamp 1970-01-01 and no message, as Go's
    ``json.Marshal`` writes it (sorted, compact, ``<>&`` escaped, U+FFFD for a surrogate):
    ``b'{"count":2,"lastTimestamp":"2024-01-01T00:00:05Z","message":"m"}'``."""
    patch: dict[str, object] = {}
    if event.count:
        patch["count"] = models.stored_count(event.count)
    last = None if event.last_timestamp is None else models.format_time(event.last_timestamp)
    if last != _PATCH_BASE_TIMESTAMP:  # a missing one is null, which clears the stored field
        patch["lastTimestamp"] = last
    if event.message:
        patch["message"] = _sanitise.replace_surrogates(event.message)
    text = json.dumps(patch, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    # outside strings the patch holds none of these characters, so replacing everywhere is safe
    return text.translate(_GO_JSON_ESCAPES).encode("utf-8")


@dataclasses.dataclass(frozen=True, slots=True)
class CorrelatorOptions:
    """How an :class:`EventCorrelator` aggregates, counts and filters (see docs/correlation.md).
    As in client-go, a zero or ``None`` field means the default, so 0 cannot be configured for a
    number. A negative number or NaN (or, for a count, a fraction, ``True`` or infinity), a
    clock that is no instance with ``now()``, and a hook that cannot take one event raise
    :class:`ValueError`."""

    lru_cache_size: int = 0
    """Entries in each of the three caches; 0: :data:`DEFAULT_LRU_CACHE_SIZE` (4096)."""
    burst_size: int = 0
    """Tokens in a new spam bucket; 0: :data:`DEFAULT_SPAM_BURST` (25)."""
    qps: float = 0.0
    """Tokens added to a spam bucket per second; 0: :data:`DEFAULT_SPAM_QPS` (one per 300 s)."""
    key_func: KeyFunc | None = None
    """Groups events for aggregation; ``None``: :func:`aggregate_by_reason`."""
    message_func: MessageFunc | None = None
    """Writes the message of an aggregate event; ``None``: :func:`combined_message`."""
    max_events: int = 0
    """Distinct local keys in the interval that combine events; 0: 10."""
    max_interval_seconds: float = 0.0
    """Seconds without a similar event after which a group starts afresh; 0: 600."""
    clock: clocks.Clock | None = None
    """Where time comes from; ``None``: :class:`~k8s_logging_events.clock.SystemClock`."""
    spam_key_func: SpamKeyFunc | None = None
    """Names the spam bucket an event draws from; ``None``: :func:`get_spam_key`."""
    event_names: str = _sanitise.TIMESTAMP
    """How a correlator without a namer of its own names combined events: ``"timestamp"``
    (client-go's) or ``"deterministic"`` (see :class:`EventNamer`). A broadcaster's
    correlators use its namer, deterministic when either asks for it."""

    def __post_init__(self) -> None:
        _sanitise.check_event_names(self.event_names, "CorrelatorOptions.event_names")
        for name in _NUMBER_OPTIONS:
            value, option = getattr(self, name), f"CorrelatorOptions.{name}"
            if isinstance(value, str):  # dictConfig converts its text; in code it stays text
                raise ValueError(f"{option} must be a number, not {value!r}")
            if name in _COUNTS or value != math.inf:  # an infinite rate or interval: no limit
                _numbers.number(option, value, minimum=0, integer=name in _COUNTS)
        # not read: a ticking test clock would move at every copy of the options
        clocks.checked(self.clock, "CorrelatorOptions.clock", read=False)
        for name in ("key_func", "message_func", "spam_key_func"):
            value = getattr(self, name)
            if value is not None and not takes_event(value):
                msg = f"CorrelatorOptions.{name} must be a function of (event) or None, not "
                raise ValueError(msg + repr(value))

    def resolved(self) -> CorrelatorOptions:
        """Return a copy with every zero or ``None`` field replaced by its default."""
        return CorrelatorOptions(**_settle(self)._asdict())


def _settle(options: CorrelatorOptions) -> _correlation.Settings:
    """Fill in client-go's defaults: the one place they are chosen."""
    return _correlation.Settings(
        lru_cache_size=options.lru_cache_size or DEFAULT_LRU_CACHE_SIZE,
        burst_size=options.burst_size or DEFAULT_SPAM_BURST,
        qps=options.qps or DEFAULT_SPAM_QPS,
        key_func=options.key_func or aggregate_by_reason,
        message_func=options.message_func or combined_message,
        max_events=options.max_events or DEFAULT_AGGREGATE_MAX_EVENTS,
        max_interval_seconds=options.max_interval_seconds or DEFAULT_AGGREGATE_INTERVAL_SECONDS,
        clock=clocks.SystemClock() if options.clock is None else options.clock,
        spam_key_func=options.spam_key_func or get_spam_key,
        event_names=options.event_names,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class CorrelateResult:
    """What to do with one event, as :meth:`EventCorrelator.correlate` says (client-go's
    ``EventCorrelateResult``). A plain frozen value of ``event``, ``patch`` and ``skip``."""

    event: models.Event | None
    """The event to write, or ``None`` when ``skip`` is true."""
    patch: bytes | None
    """The count patch when ``event`` repeats one already written, else ``None``."""
    skip: bool
    """True when the spam filter held the event back: write nothing now."""
    # not in the value: a result equals the CorrelateResult(event, patch, skip) the API names
    observed: models.Event | None = dataclasses.field(default=None, compare=False)
    """The event as counted (name, first timestamp and count carried over), skipped or not,
    so that a held-back count can be sent later. Not in client-go."""


class EventCorrelator(_process.Locked):
    """Knows whether and how to write each event: aggregate, count, or hold back. One per
    writer; thread-safe (one lock covers each whole step). ``options``: ``None`` means every
    default. ``namer`` names aggregate events; a broadcaster passes its recorders' one."""

    def __init__(
        self, options: CorrelatorOptions | None = None, *, namer: EventNamer | None = None
    ) -> None:
        settings = _settle(options or CorrelatorOptions())
        super().__init__()
        self._options = CorrelatorOptions(**settings._asdict())
        namer = namer or EventNamer(event_names=settings.event_names)
        self._aggregator = _correlation.Aggregator(settings, namer)
        self._observer = _correlation.Observer(settings)
        self._spam_filter = _correlation.SpamFilter(settings)
        # correlate_many counts a run at once only where it knows what the keys read
        self._default_keys = (
            settings.key_func is aggregate_by_reason and settings.spam_key_func is get_spam_key
        )

    def __repr__(self) -> str:
        return f"EventCorrelator({self._options!r})"

    @property
    def options(self) -> CorrelatorOptions:
        """The options in use, with every default filled in."""
        return self._options

    @property
    def keeps_objects_apart(self) -> bool:
        """True when events about different objects share no state: with client-go's key
        functions and :func:`spam_key_per_reason`, not with one's own (not in client-go)."""
        return self._options.key_func is aggregate_by_reason and (
            self._options.spam_key_func in (get_spam_key, spam_key_per_reason)
        )

    def correlate(self, event: models.Event) -> CorrelateResult:
        """Aggregate, count and spam-filter ``event``, in client-go's order; held-back
        occurrences still raise the count the next written one carries. Returns
        ``CorrelateResult(observed, patch, False, observed)`` to write, or
        ``CorrelateResult(None, None, True, observed)`` when the spam filter holds it back."""
        with self._lock:
            observed, repeat, skip = self._correlate(event)
            if skip:
                return CorrelateResult(event=None, patch=None, skip=True, observed=observed)
            patch = count_patch(observed) if repeat else None
            return CorrelateResult(event=observed, patch=patch, skip=False, observed=observed)

    def correlate_many(
        self, events: Sequence[models.Event]
    ) -> list[tuple[models.Event, bool, int]]:
        """Correlate a run of occurrences that differ only in names and timestamps, at once: what
        :meth:`correlate` on each would have a writer write, merged as a writer merges writes of one
        event: ``(observed, held, occurrences)`` per stretch of one event (held if all its
        occurrences were), a new event's create on its own. Not in client-go."""
        if not events:
            return []
        with self._lock:
            # a run repeating a known event is one entry: a writer would merge the first
            # occurrence's write with the rest's (the latest wins, held if all were)
            whole = self._repeat_run(events)
            if whole is not None:
                return [(*whole, len(events))]
            first, _, held = self._correlate(events[0])
            rest = events[1:]
            merged = self._repeat_run(rest) if rest else None
            if merged is None:  # custom key functions, aggregation under way, or no rest
                return [(first, held, 1), *self._one_by_one(rest)]
            return [(first, held, 1), (*merged, len(rest))]

    def _one_by_one(self, events: Sequence[models.Event]) -> list[tuple[models.Event, bool, int]]:
        # consecutive results for one event are one entry
        out: list[tuple[models.Event, bool, int]] = []
        for event in events:
            observed, _, skip = self._correlate(event)
            last = out[-1][0] if out else None
            if last and (last.name, last.namespace) == (observed.name, observed.namespace):
                _, held, occurrences = out[-1]
                out[-1] = (observed, held and skip, occurrences + 1)
            else:
                out.append((observed, skip, 1))
        return out

    def _correlate(self, event: models.Event) -> tuple[models.Event, bool, bool]:
        # the observed event, whether it repeats a known one, whether it is held
        candidate, key = self._aggregator.aggregate(event)
        observed, repeat = self._observer.observe(candidate, key)
        return observed, repeat, not self._spam_filter.take(observed)

    def _repeat_run(self, run: Sequence[models.Event]) -> tuple[models.Event, bool] | None:
        """Count ``run`` (repeats of an event just observed) at once; None: not that simple."""
        if not self._default_keys:
            return None
        latest = run[-1]
        if not self._aggregator.touch_if_unchanged(latest):
            return None
        observed = self._observer.count_repeats(latest, get_event_key(latest), len(run))
        if observed is None:
            return None
        return observed, self._spam_filter.take_many(observed, len(run)) == 0

    def update_state(self, event: models.Event) -> None:
        """Record what a create or patch stored for ``event``: the next repeat patches that. Unlike
        client-go, a count below the one observed is not taken: our writer runs behind the
        correlator, so going back would count later occurrences twice."""
        with self._lock:
            self._update(get_event_key(event), event)

    def update_after_write(self, sent: models.Event, stored: models.Event) -> None:
        """Like :meth:`update_state`, unless ``sent``'s key was evicted or a newer event took it
        over during a slow write (the next repeat would patch the old event, or count too
        many). Not in client-go."""
        key = get_event_key(stored)
        with self._lock:
            known = self._observer.peek(key)
            # forgotten meanwhile (a newer event may have come and gone under the key), or
            # newer: another name, or (deterministic names repeat) a count begun again
            if known is None or known.name != sent.name or known.count < sent.count:
                return
            self._update(key, stored)

    def _update(self, key: str, event: models.Event) -> None:
        known = self._observer.peek(key)
        if known is not None and known.count > event.count:
            event = dataclasses.replace(event, count=known.count)
        self._observer.record(key, event)

    def take_token(self, event: models.Event) -> bool:
        """Take one token from ``event``'s spam bucket (made full if missing); not in client-go."""
        with self._lock:
            return self._spam_filter.take(event, late=True)

    def combines(self, ours: models.Event, stored: models.Event) -> bool:
        """True when ``stored`` is ``ours``, a combined event, with another latest message (see
        :meth:`CountPolicy.same_event`). Not in client-go."""
        return self._aggregator.combines(ours, stored)

    def token_wait(self, event: models.Event) -> float:
        """Seconds until ``event``'s spam bucket has a token (``math.inf``: never); takes
        nothing and makes no bucket. Not in client-go."""
        with self._lock:
            return self._spam_filter.wait(event)


class CountPolicy:
    """core/v1: repeats patch ``count``; the correlator's spam filter holds writes back."""

    def __init__(self, event_correlator: EventCorrelator) -> None:
        self._correlator = event_correlator

    def is_first(self, event: models.Event) -> bool:
        """The first occurrence has a count of 1 (or none)."""
        return event.count <= 1

    def patch(self, event: models.Event) -> bytes:
        """client-go's count patch."""
        return count_patch(event)

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
        return max(event.count, 1)

    def with_count(self, event: models.Event, count: int, **changes: object) -> models.Event:
        """``event`` with ``count`` and ``changes`` (other fields; one replace at most)."""
        return models.replaced(event, count=count, **changes)

    def previous(self, event: models.Event) -> str:
        """core/v1 events have no series: none came before."""
        return ""

    def finished(self, ours: models.Event, stored: models.Event) -> bool:
        """False: a core/v1 event goes on as long as the server keeps it."""
        return False

    def same_event(self, ours: models.Event, stored: models.Event) -> bool:
        """True for the same source, involved object (any resourceVersion), type and reason,
        and the same message unless ours is a combined event (whose message changes)."""
        if (ours.source, ours.type, ours.reason) != (stored.source, stored.type, stored.reason):
            return False
        ours_object = dataclasses.replace(ours.involved_object, resource_version="")
        if ours_object != dataclasses.replace(stored.involved_object, resource_version=""):
            return False
        return ours.message == stored.message or self._correlator.combines(ours, stored)
