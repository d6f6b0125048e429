"""The pending writes of one sink: from correlated occurrences to create and patch calls.

A pure policy beside the correlator and the series (importing neither): plain state, no
threads; the writer pool calls it under the runtime's lock and makes the requests (those of
one attempt: :mod:`~k8s_logging_events._continuation`, which owns the sink's protocol). It
owns the write policy's protocol, client-go's create-or-patch and retries, and what
docs/concepts.md promises of "The writer". Waits are on the clock's monotonic reading.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from k8s_logging_events import _continuation, _diagnostics, _errors, _sanitise, models
from k8s_logging_events import clock as clock_mod

MAX_TRIES_PER_EVENT = 12
"""client-go's limit: twelve attempts (eleven back-offs) before an event is given up."""

DEFAULT_SLEEP_DURATION = 10.0
"""client-go's back-off between attempts, in seconds; only the first one is randomised."""

DEFAULT_WRITERS = 4
"""Requests in flight at once: enough that a few failing objects leave room for the rest."""

Key = tuple[str, str]

_RESOLUTION = 1e-6
"""Due within a microsecond is due now: a fake clock's sleeper would be asked forever for less."""


Correlate = Callable[[Sequence[models.Event]], list[tuple[models.Event, bool, int]]]
"""Turns a run of occurrences identical for correlation (they differ only in name and time)
into the writes to queue: ``(event, held back, occurrences it carries)``, in order."""


class WritePolicy(_continuation.Policy, Protocol):
    """One API's way of recording repeats, as the writer asks it (and an attempt: its base)."""

    def is_first(self, event: models.Event) -> bool:
        """True when ``event`` is the first occurrence, written by a create."""

    def hold_wait(self, event: models.Event) -> float:
        """Seconds until a held-back write of ``event`` may go."""

    def release(self, event: models.Event) -> bool:
        """True when a held-back write of ``event`` may go now (it may consume a token)."""

    def written(self, sent: models.Event, stored: models.Event) -> None:
        """Feed back what the server stored after a successful write of ``sent``."""


class Limits(Protocol):
    """What the writer reads of its broadcaster's options (``_options.BroadcasterOptions``):
    ``queue_length`` bounds the events with a write pending; the correlator's
    ``lru_cache_size`` the events it knows (a repeat of one it forgot reads it first)."""

    @property
    def queue_length(self) -> int: ...
    @property
    def max_tries(self) -> int: ...
    @property
    def sleep_duration(self) -> float: ...
    @property
    def correlator(self) -> _Remembering | None: ...


class _Remembering(Protocol):
    @property
    def lru_cache_size(self) -> int: ...


@dataclass(slots=True, eq=False)
class Write:
    """One pending write of one event, carrying every occurrence merged into it."""

    event: models.Event
    create: bool
    held: bool
    occurrences: int = 1
    attempts: int = 0
    due: float = 0.0
    asked: float = 0.0  # the earliest a retry may go, as the server asked (see Writes.hasten)
    hurried: int = 0  # retries a flush brought forward (see Writes.hasten)
    maybe_landed: bool = False  # a create failed in transport: AlreadyExists may mean ours
    sent: _continuation.Sent | None = None  # in flight (see _continuation.Sent)
    # earlier requests that may have landed, their answers lost (see _continuation)
    unsure: list[_continuation.Sent] = dataclasses.field(default_factory=list)
    unconfirmed: int = 0  # of its occurrences, taken as landed with an unsure request
    throttled: int = 0  # 429s in a row: they spend no attempt, but the wait grows
    abandoned: bool = False
    first: int = 0  # the submission number of its oldest occurrence (a flush waits on it)
    last_error: Exception | None = None
    delayed: int = 0  # occurrences already reported as delayed by a failed attempt
    # time.monotonic() at its request's start (real time: it bounds a hung socket), or None
    started: float | None = None
    writer: int | None = None  # the thread that makes its request (its ident), once taken
    origin: models.Event | None = None  # its first occurrence's, once others merged in

    @property
    def in_flight(self) -> bool:
        return self.started is not None

    def merge(self, event: models.Event, *, held: bool, occurrences: int) -> None:
        """Take over newer occurrences: the latest's count, timestamps and message win."""
        self.origin = self.origin or self.event
        self.event = event
        self.occurrences += occurrences
        self.held = self.held and held

    def creation(self) -> models.Event:
        """What a create of this write sends: what a patch cannot change from the first
        occurrence, the rest from the latest, as client-go's create and patches would leave
        it where a ``key_func`` groups events about several objects."""
        first, latest = self.origin, self.event
        if first is None:
            return latest
        return dataclasses.replace(
            first,
            count=latest.count,
            last_timestamp=latest.last_timestamp,
            message=latest.message,
            series=latest.series,
        )


@dataclass(slots=True)
class _Slot:
    """The per-event state: the write in flight, and the one waiting behind it."""

    in_flight: Write | None = None
    waiting: Write | None = None
    state: str = "blocked"  # the waiting write's: "ready", "timed", or "blocked" by in_flight
    generation: int = 0  # tells a current heap or ready entry from a superseded one


class Writes:
    """The pending writes of one sink: which event to write next, and when.

    No lock of its own: every method runs under the runtime's lock but :meth:`attempt` and
    :meth:`feed_back`. One request in flight per event, per involved object, and per namespace
    whose requests stall (a stuck webhook must not hold every writer).
    """

    def __init__(
        self,
        event_sink: _continuation.EventSink,
        policy: WritePolicy | None,
        counters: _diagnostics.Counters,
        *,
        options: Limits,
        clock: clock_mod.Clock,
        rng: Callable[[], float],
        reporter: _diagnostics.RateLimitedReporter,
        namer: _sanitise.EventNamer | None = None,
    ) -> None:
        self.sink = event_sink
        self.policy = policy
        # by abandon(in_flight=True) or the sink's close(); one for all writes (one each: +4 %)
        self.given_up = threading.Event()
        self._counters = counters
        self._options = options
        # due times are durations: on the monotonic reading, which a wall clock step does not move
        self._now = clock_mod.monotonic_source(clock)
        self._reporter = reporter
        namer = namer or _sanitise.EventNamer()
        # the same sink and options with nothing pending (for a child after fork)
        self.renewed: Callable[[], Writes] = functools.partial(
            Writes,
            event_sink,
            None,
            counters,
            options=options,
            clock=clock,
            rng=rng,
            reporter=reporter,
            namer=namer,
        )
        cached = options.correlator.lru_cache_size if options.correlator else 0
        known = max(cached, _continuation.DEFAULT_KNOWN_EVENTS)
        self._continuation = _continuation.Continuation(event_sink, namer, clock, reporter, known)
        self._retry = _errors.RetrySchedule(options.max_tries, options.sleep_duration, rng)
        self._slots: dict[Key, _Slot] = {}
        self._ready: deque[Key] = deque()
        # ready writes by the object or stalled namespace whose request they wait for (a take
        # walked them all); one let go, heir of each it is parked for, goes for them or the next
        self._parked: dict[models.ObjectReference | str, deque[Key]] = {}
        self._heirs: dict[Key, list[models.ObjectReference | str]] = {}
        self._timed: list[tuple[float, int, Key]] = []
        self._generations = itertools.count()
        # the writes made, by ``first``: a flush waits for the oldest (a walk made it quadratic)
        self._made: deque[Write] = deque()
        # by involved object, one each; not the slots': a close gives those up, requests still out
        self._in_flight: dict[models.ObjectReference, Write] = {}
        self._stalled: set[str] = set()  # namespaces whose last request timed out
        self.submitted = 0
        self._unsettled = 0  # occurrences in writes, without an outcome (no walk: stats())
        self.flushing = False
        self.drains: list[Callable[[], float]] = []  # each waiting flush's seconds left (real)

    @property
    def _p(self) -> WritePolicy:
        assert self.policy is not None, "a policy is set before the first write is queued"
        return self.policy

    def submit_event(self, event: models.Event, *, held: bool, occurrences: int = 1) -> None:
        """Queue a write of ``event`` (the latest of ``occurrences`` correlated together); a
        ``held`` one waits until the policy releases it."""
        # the patch is made when the write happens: only the latest of a coalesced run is sent
        key = (event.namespace, event.name)
        first, self.submitted = self.submitted + 1, self.submitted + occurrences
        slot = self._slots.get(key)
        if slot is not None and slot.waiting is not None:  # in a burst: merged, no new write
            waiting, state = slot.waiting, slot.state
            moved = waiting.event.involved_object != event.involved_object  # by a key_func
            waiting.merge(event, held=held, occurrences=occurrences)
            self._unsettled += occurrences
            if (state == "ready" and moved) or (  # ready: it may be parked for its old object
                state == "timed" and not (waiting.held or waiting.attempts or waiting.throttled)
            ):
                self._make_ready(key, slot)
            return
        write = Write(event, self._p.is_first(event), held, occurrences, first=first)
        if slot is None:
            if len(self._slots) >= self._options.queue_length:
                self._counters.add("dropped", occurrences)
                self._reporter.defer(
                    "pending-full",
                    logging.ERROR,
                    "Unable to record event %s: %d events are waiting to be written already "
                    "(queue_length)",
                    f"{event.namespace}/{event.name}",
                    self._options.queue_length,
                    occurrences=occurrences,
                    outcome="dropped",
                )
                return
            slot = self._slots[key] = _Slot()
        slot.waiting = write
        self._unsettled += occurrences
        self._made.append(write)
        self._prune_made()
        if slot.in_flight is None:
            self._schedule(key, slot)

    def take(self) -> Write | None:
        self.promote_due()
        while self._ready:
            key = self._ready.popleft()
            heir_of = self._heirs.pop(key, ())
            slot = self._slots.get(key)
            write = slot.waiting if slot is not None and slot.state == "ready" else None
            waits_for = None if write is None else self._waits_for(write.event)
            if waits_for is not None:  # an heir waiting again for the same keeps its place
                parked = self._parked.setdefault(waits_for, deque())
                (parked.appendleft if waits_for in heir_of else parked.append)(key)
            event = write.event if write is not None and waits_for is None else None
            holds = (waits_for,) if event is None else (event.involved_object, event.namespace)
            for gone in (w for w in heir_of if w not in holds):  # gone, or moved by a merge
                self._unpark(gone, one=True)
            if slot is None or write is None or waits_for is not None:
                continue
            slot.waiting, slot.in_flight, slot.state = None, write, "blocked"
            write.held = False  # sent (a flush sends held counts): a retry waits its back-off
            write.started = time.monotonic()
            self._in_flight[write.event.involved_object] = write
            return write
        return None

    def _waits_for(self, event: models.Event) -> models.ObjectReference | str | None:
        """The object, or stalled namespace, whose request in flight ``event``'s write waits for."""
        if event.involved_object in self._in_flight:
            return event.involved_object
        stalled = event.namespace in self._stalled and self._in_flight_in(event.namespace)
        return event.namespace if stalled else None

    def _in_flight_in(self, namespace: str) -> bool:
        return any(write.event.namespace == namespace for write in self._in_flight.values())

    def _unpark(self, waited_for: models.ObjectReference | str, *, one: bool = False) -> None:
        """The writes parked for ``waited_for`` go first again; ``one``: the first, its heir."""
        parked = self._parked.get(waited_for, deque())
        if not one:
            self._ready.extendleft(reversed(parked))
            parked.clear()
        elif parked:
            self._heirs.setdefault(key := parked.popleft(), []).append(waited_for)
            self._ready.appendleft(key)
        if not parked:
            self._parked.pop(waited_for, None)

    def ready_count(self) -> int:
        return len(self._ready)

    def next_due(self, *, held: bool = True) -> float | None:
        """Seconds (monotonic) until the next timed write is due; None if there is none.
        ``held`` False: the next retry's, passing counts held back (for a token, a series)."""
        while self._timed and not self._is_timed(*self._timed[0][1:]):
            heapq.heappop(self._timed)  # superseded
        entries = self._timed[:1] if held else self._timed
        dues = [due for due, gen, key in entries if self._is_timed(gen, key, held=held)]
        return max(0.0, min(dues) - self._now()) if dues else None

    def _is_timed(self, generation: int, key: Key, *, held: bool = True) -> bool:
        slot = self._slots.get(key)
        if slot is None or (slot.generation, slot.state) != (generation, "timed"):
            return False
        return held or not (slot.waiting is not None and slot.waiting.held)

    def in_flight_count(self) -> int:
        return len(self._in_flight)

    def oldest_start(self) -> float | None:
        """When the oldest request in flight began (real time); None when none is."""
        return min((w.started or 0.0 for w in self._in_flight.values()), default=None)

    def stalling(self, now: float, stall_seconds: float) -> int:
        """Count requests in flight for longer than ``stall_seconds`` (real time)."""
        stalled = [w for w in self._in_flight.values() if now - (w.started or 0.0) >= stall_seconds]
        self._stalled.update(write.event.namespace for write in stalled)
        return len(stalled)

    def release_held(self) -> None:
        """At flush, held-back counts go out without waiting for a token; retries wait less
        (:meth:`hasten`)."""
        for key, slot in list(self._slots.items()):
            if slot.state != "timed" or (write := slot.waiting) is None:
                continue
            if write.held:
                self._make_ready(key, slot)
            elif self.hasten(write):
                self._make_timed(key, slot, write.due)

    def hasten(self, write: Write) -> bool:
        """While a flush waits (``drains``), a retry due past halfway to its deadline goes
        there (to fail again within it), never before the server asked, twice at most: halving
        at every failure spent every try in its last moments. True when ``write.due`` moved."""
        left = min(filter(None, (remaining() for remaining in self.drains)), default=0.0)
        # the deadline is real time, the due time the clock's: a duration is both (rule 8)
        due = max(write.asked, self._now() + left / 2)
        if not left or due >= write.due or write.hurried == 2:
            return False
        write.due, write.hurried = due, write.hurried + 1
        return True

    def oldest_pending(self) -> float:
        """The submission number of the oldest occurrence not yet written (inf: none)."""
        made = self._made
        while made:
            if self._is_pending(oldest := made[0]):
                return oldest.first
            with contextlib.suppress(ValueError):  # at the front; a signal handler's flush
                made.remove(oldest)  # may have taken it already
        return math.inf

    def _prune_made(self) -> None:
        # amortised: a slot holds two at most, the slots halve between two prunes (at _finish)
        if len(self._made) > 4 * len(self._slots) + 64:
            self._made = deque(filter(self._is_pending, self._made))

    def _is_pending(self, write: Write) -> bool:
        slot = self._slots.get((write.event.namespace, write.event.name))
        return slot is not None and (slot.in_flight is write or slot.waiting is write)

    def pending(self) -> int:
        return self._unsettled

    def pending_events(self) -> int:
        return len(self._slots)

    def pending_writes(self) -> list[Write]:
        """The writes waiting or in flight, for a report of what a flush could not write."""
        return [write for write in self._writes() if not write.abandoned]

    def _writes(self) -> Iterator[Write]:
        # a copy: a signal handler's close on a flushing thread may give writes up meanwhile
        for slot in list(self._slots.values()):
            if slot.in_flight is not None:
                yield slot.in_flight
            if slot.waiting is not None:
                yield slot.waiting

    def attempt(self, write: Write) -> tuple[str, models.Event]:
        """One attempt's requests (:meth:`~._continuation.Continuation.attempt`), unlocked."""
        return self._continuation.attempt(write, self._p)

    def feed_back(self, write: Write, stored: models.Event) -> None:
        """Tell the policy what the server stored (outside the runtime's lock: it locks)."""
        self._p.written(write.event, stored)

    def succeeded(self, write: Write, kind: str) -> None:
        """Count the occurrences ``write`` carried and schedule what waits behind it."""
        self._stalled.discard(write.event.namespace)
        self._landed(write)
        if write.abandoned:
            return
        self._unsettled -= write.occurrences
        unconfirmed = min(write.unconfirmed, write.occurrences)
        if unconfirmed:  # failed: written is what we cannot say; again may count them twice
            self._counters.add("failed", unconfirmed)
            self._reporter.defer(
                "unconfirmed",
                logging.WARNING,
                "Event %s/%s: another process wrote it past a request of ours whose answer "
                "was lost, so its count cannot tell whether ours landed; its occurrences are "
                "counted failed and not written again, so that none counts twice (the event "
                "may miss them)",
                write.event.namespace,
                write.event.name,
                occurrences=unconfirmed,
                outcome="failed",
            )
        if write.occurrences > unconfirmed:
            self._counters.add(kind)
            self._counters.add("coalesced", write.occurrences - unconfirmed - 1)
        self._finish(write)

    def failed(self, write: Write, error: Exception, *, stopping: bool) -> None:
        """Schedule a retry of ``write``, or give it up (counted as failed)."""
        if _errors.is_timeout(error):
            self._stalled.add(write.event.namespace)
        self._landed(write)
        if write.abandoned:
            return
        write.last_error = error
        if _errors.may_have_landed(error):
            write.maybe_landed = write.maybe_landed or write.create
            if write.sent is not None:
                write.unsure.append(write.sent)
        write.sent = None
        retry_in = self._retry.after_failure(write, error)  # a 429 spends no attempt
        if retry_in is None or stopping:
            self._give_up(write, error)
            self._finish(write)
            return
        key = (write.event.namespace, write.event.name)
        slot = self._slots[key]
        slot.in_flight, newer, slot.waiting = None, slot.waiting, write
        if newer is not None:
            write.merge(newer.event, held=newer.held, occurrences=newer.occurrences)
        write.due = (now := self._now()) + retry_in
        # a 429's whole wait (it spends no try: nothing else would bound a hurry), a Retry-After
        write.asked = write.due if write.throttled else now + _errors.asked(error)
        if self.hasten(write):
            retry_in = write.due - now
        self._make_timed(key, slot, write.due)
        if write.throttled == _errors.THROTTLED_WARNING_AFTER:
            # a server that throttles every write (a bucket that never refills) must not go
            # unseen while the app runs; by now at most 1 + 2 + 4 s have passed
            self._reporter.defer(
                "throttled-long",
                logging.WARNING,
                "Event %s/%s was throttled %d time(s) in a row (the API server asks for fewer "
                "requests: %s); it waits %.3g s more, kept (see qps, or the server's "
                "EventRateLimit)",
                *key,
                write.throttled,
                _errors.describe_error(error),
                retry_in,
                occurrences=write.occurrences,
                outcome="waiting",
            )
        elif write.throttled:
            self._reporter.defer(
                "throttled",
                logging.INFO,
                "Event %s/%s waits %.3g s before its next attempt: the API server asks for "
                "fewer requests (%s)",
                *key,
                retry_in,
                _errors.describe_error(error),
            )
        else:  # each occurrence counts once among the delayed, however often its write fails
            delayed, write.delayed = write.occurrences - write.delayed, write.occurrences
            self._reporter.defer(
                f"retry:{_errors.cause(error)}",
                logging.WARNING,
                "Unable to write event %s/%s (attempt %d of %d, will retry in %.1f s): %s",
                *key,
                write.attempts,
                self._options.max_tries,
                retry_in,
                _errors.explain(error, self.sink),
                occurrences=delayed,
                outcome="delayed",
            )

    def abandon(self, *, in_flight: bool) -> list[Write]:
        """Give up (count as failed) every waiting write, and those in flight too."""
        if in_flight:  # a request of theirs that waits (a sink that outlives us) is not sent
            self.given_up.set()
        abandoned: list[Write] = []
        for key, slot in list(self._slots.items()):
            writes = (slot.waiting, slot.in_flight) if in_flight else (slot.waiting,)
            for write in writes:
                if write is not None and not write.abandoned:
                    write.abandoned = True
                    abandoned.append(write)
                    self._counters.add("failed", write.occurrences)
                    self._unsettled -= write.occurrences
            slot.waiting = None
            if in_flight or slot.in_flight is None:
                del self._slots[key]
        self._ready.clear()
        self._parked.clear()
        self._heirs.clear()
        self._timed.clear()
        return abandoned

    def _landed(self, write: Write) -> None:
        write.started = None
        involved, namespace = write.event.involved_object, write.event.namespace
        if self._in_flight.get(involved) is write:
            del self._in_flight[involved]
            self._unpark(involved, one=True)
        if namespace not in self._stalled or not self._in_flight_in(namespace):
            self._unpark(namespace, one=namespace in self._stalled)  # stalled: one at a time

    def _finish(self, write: Write) -> None:
        key = (write.event.namespace, write.event.name)
        slot = self._slots.get(key)
        if slot is not None and slot.waiting is None:
            del self._slots[key]
            self._prune_made()
        elif slot is not None:
            slot.in_flight = None
            self._schedule(key, slot)

    def _schedule(self, key: Key, slot: _Slot) -> None:
        write = slot.waiting
        assert write is not None
        if write.held and not self.flushing:
            write.due = self._now() + _errors.finite(self._p.hold_wait(write.event))
            self._make_timed(key, slot, write.due)
        elif write.due > self._now():
            self._make_timed(key, slot, write.due)
        else:
            self._make_ready(key, slot)

    def _make_ready(self, key: Key, slot: _Slot) -> None:
        slot.state, slot.generation = "ready", next(self._generations)
        self._ready.append(key)

    def _make_timed(self, key: Key, slot: _Slot, due: float) -> None:
        slot.state, slot.generation = "timed", next(self._generations)
        heapq.heappush(self._timed, (due, slot.generation, key))

    def promote_due(self) -> None:
        clock = self._now()
        now = clock + _RESOLUTION
        while self._timed and self._timed[0][0] <= now:
            _, generation, key = heapq.heappop(self._timed)
            if not self._is_timed(generation, key):
                continue  # superseded entry
            slot = self._slots[key]
            write = slot.waiting
            assert write is not None
            if write.held and not self.flushing and not self._p.release(write.event):
                # from the clock: the slack is the check's, a due time with it is missed at it
                write.due = clock + max(_errors.finite(self._p.hold_wait(write.event)), 0.001)
                self._make_timed(key, slot, write.due)
                continue
            write.held = False
            self._make_ready(key, slot)

    def _give_up(self, write: Write, error: Exception) -> None:
        write.abandoned = True
        # its namespace's mark goes too (one never written again kept it), unless one hangs there
        if not self._in_flight_in(write.event.namespace):
            self._stalled.discard(write.event.namespace)
        self._counters.add("failed", write.occurrences)
        self._unsettled -= write.occurrences
        quiet = isinstance(error, _errors.ApiStatusError) and (
            error.is_already_exists or error.is_namespace_terminating
        )
        level = logging.DEBUG if quiet else logging.WARNING
        reason = "will not retry" if write.attempts < self._options.max_tries else "retry limit"
        self._reporter.defer(
            f"give-up:{_errors.cause(error)}",
            level,
            "Unable to write event %s/%s (%s): %s",
            write.event.namespace,
            write.event.name,
            reason,
            _errors.explain(error, self.sink),
            occurrences=write.occurrences,
            outcome="lost",
        )
