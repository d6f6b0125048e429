"""Counts across processes: continue an event another process wrote, never overwrite it.

Under the pending writes (:mod:`~k8s_logging_events._pending`): :meth:`Continuation.attempt`
makes the requests of one write attempt, outside the runtime's lock. A sink that cannot read
events gets client-go's ways; one that can gets takeover, guarded counts, translated counts
and names, lost answers never applied twice (docs/correlation.md, "Across processes").
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeGuard, runtime_checkable

import cachetools

from k8s_logging_events import _diagnostics, _errors, _process, _sanitise, models
from k8s_logging_events import clock as clock_mod

DEFAULT_KNOWN_EVENTS = 4096
"""Events whose name, resourceVersion and count offset a writer remembers (as many as the
correlator's caches hold); a repeat of a forgotten one reads the event before its patch."""

MAX_STEPS = 10
"""Requests one attempt may make (create, read, patch, read ...) before it waits its turn
(a short jittered wait: :data:`~._errors.CONTENTION_BASE_SECONDS`)."""

MAX_FINISHED_SERIES = 100
"""Finished series an attempt may read past, beyond :data:`MAX_STEPS` (a key that starts a
series every seven minutes leaves about nine under the server's one-hour event TTL)."""

WRITERS = "k8s-logging-events/writers"
"""The annotation in which the writers of an event (a random token each) note their latest
request that landed, in the request itself: ``token:number`` entries, the latest first, at
most :data:`MAX_WRITERS`. It tells whether a request in doubt landed where the count cannot:
another writer may have raised the count past what ours set (docs/correlation.md, rule 5)."""

MAX_WRITERS = 16
_ENTRY = re.compile(r"[0-9a-f]{12}:[0-9]{1,18}")  # a token's 12 hex digits, a request's number
_RECORD_BYTES = len(WRITERS) + MAX_WRITERS * 32  # an entry's 31 bytes at most, and a space

Sent = tuple[int, int, bool, int]
"""A request that may have landed: the count it set, the write's occurrences it carried, True
for a create, and its number in the writers' record (0: it carried none)."""


class Write(Protocol):
    """What an attempt reads and notes of the writer's pending write (``_pending.Write``)."""

    event: models.Event
    create: bool
    maybe_landed: bool
    occurrences: int
    sent: Sent | None
    unsure: list[Sent]
    unconfirmed: int

    def creation(self) -> models.Event:
        """The event a create of this write sends (its first occurrence's object ...)."""


class Policy(Protocol):
    """What an attempt asks of the write policy (part of ``_pending.WritePolicy``)."""

    def patch(self, event: models.Event) -> bytes:
        """The strategic-merge patch that records a repeat on the stored event."""

    def exists_is_ours(self, event: models.Event, maybe_landed: bool) -> bool:
        """True when ``AlreadyExists`` on a create means our earlier create landed (unread)."""

    def count_of(self, event: models.Event) -> int:
        """How many occurrences ``event`` stands for (``count``, or its series count)."""

    def with_count(self, event: models.Event, count: int, **changes: object) -> models.Event:
        """``event`` standing for ``count`` occurrences, with ``changes`` (one replace at most)."""

    def same_event(self, ours: models.Event, stored: models.Event) -> bool:
        """True when ``stored``, found under our event's name, is our event (same key)."""

    def finished(self, ours: models.Event, stored: models.Event) -> bool:
        """True when a later process must not continue ``stored``, our event (a series over)."""

    def previous(self, event: models.Event) -> str:
        """The name of the series ``event`` follows (quiet here, maybe kept going), or ""."""


@runtime_checkable
class EventSink(Protocol):
    """Knows how to store events: create one, replace one, or patch one by name (an attempt
    looks ``read`` up)."""

    def create(self, event: models.Event) -> models.Event:
        """Create ``event`` and return it as the server stored it."""

    def update(self, event: models.Event) -> models.Event:
        """Replace the stored event of the same name and return the stored result."""

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        """Apply the strategic-merge patch ``data`` to the stored ``event``; return the result."""


def is_event_sink(value: object) -> TypeGuard[EventSink]:
    """True when ``value`` has callable ``create``, ``update`` and ``patch``, found as a call
    finds them: ``isinstance`` on :class:`EventSink` looks them up statically from Python
    3.12, and refuses a ``Mock`` or a wrapper that delegates through ``__getattr__``. A class
    is none: its methods lack the instance (``sink=MySink``, the call forgotten)."""
    if isinstance(value, type):
        return False
    return all(callable(getattr(value, name, None)) for name in ("create", "update", "patch"))


@dataclass(frozen=True, slots=True)
class Known:
    """What this writer last saw of one of its events on the server: its ``name`` there
    (another than the correlator's after a rename), ``version`` and ``count`` in the latest
    answer, ``offset``, the server's count minus the correlator's (after a takeover), and
    ``writers``, the record its requests extend (None: it knows of no other writer)."""

    name: str
    version: str
    offset: int
    count: int
    writers: str | None = None


def guarded_patch(patch: bytes, version: str, writers: str | None = None) -> bytes:
    """``patch`` (a JSON object) with ``metadata.resourceVersion``: the server refuses it
    with ``409 Conflict`` when the event changed since ``version``; and the record of
    :data:`WRITERS` set to ``writers``, if given, in the same change."""
    meta: dict[str, object] = {"resourceVersion": version}
    if writers is not None:
        meta["annotations"] = {WRITERS: writers}
    field = b'"metadata":' + json.dumps(meta, separators=(",", ":")).encode()
    head = patch[:-1]  # a compact JSON object (both policies' patches): without its brace
    return head + (b"" if head.endswith(b"{") else b",") + field + b"}"


class Continuation(_process.Locked):
    """The requests of one write attempt: continuing events for a sink that can read them.

    Without a callable ``read`` on ``event_sink``, attempts keep client-go's ways (those of a
    refused read, under deterministic names). ``namer`` renames an event whose name another
    holds, at ``clock``'s time; ``reporter`` says once that reading is not permitted; ``size``
    events' records are kept.
    """

    def __init__(
        self,
        event_sink: EventSink,
        namer: _sanitise.EventNamer,
        clock: clock_mod.Clock,
        reporter: _diagnostics.RateLimitedReporter,
        size: int = DEFAULT_KNOWN_EVENTS,
    ) -> None:
        read = getattr(event_sink, "read", None)
        self._read: Callable[[models.Event], models.Event] | None = read if callable(read) else None
        self.sink = event_sink
        self._namer = namer
        self._clock = clock
        self._reporter = reporter
        self._known: cachetools.LRUCache[tuple[str, str], Known] = cachetools.LRUCache(max(1, size))
        # False once the server refused a read (403), or for a sink without read: takeovers
        # and guards are off
        self.readable = self._read is not None
        super().__init__()

    def _after_fork_in_child(self) -> None:
        # at the start too: a child is another writer (its token in the records of WRITERS,
        # its requests' numbers), and a writer of the parent may have held the lock at the fork
        super()._after_fork_in_child()
        self.token = secrets.token_hex(6)
        self.requests = itertools.count(1)

    def known(self, namespace: str, name: str) -> Known | None:
        """What was last seen of the event the correlator calls ``namespace/name``."""
        with self._lock:
            return self._known.get((namespace, name))

    def attempt(self, write: Write, policy: Policy) -> tuple[str, models.Event]:
        """Make the requests of one attempt of ``write``; return its outcome and the answer, in
        the correlator's terms (its name and count), to feed back. Raises what the last request
        raised, or :class:`~._errors.ContentionError` after :data:`MAX_STEPS`."""
        if self._read is None and not self._namer.deterministic:
            return self._client_go_attempt(write, policy)
        # a deterministic name is taken by every restart: one that cannot be read is renamed
        return _Attempt(self, write, policy).run()

    def _client_go_attempt(self, write: Write, policy: Policy) -> tuple[str, models.Event]:
        """Patch a repeat, create the rest (and a repeat that expired): client-go's ways."""
        if not write.create:
            try:
                return "patched", self.sink.patch(write.event, policy.patch(write.event))
            except _errors.ApiStatusError as error:
                if not error.is_not_found:
                    raise
        fresh = dataclasses.replace(write.creation(), resource_version="")
        try:
            return "created", self.sink.create(fresh)
        except _errors.ApiStatusError as error:
            if not (
                error.is_already_exists and policy.exists_is_ours(write.event, write.maybe_landed)
            ):
                raise
        # our own earlier create landed (its answer was lost, or it raced): continue as a patch
        write.create = False
        return "created", self.sink.patch(write.event, policy.patch(write.event))

    def remember(self, key: tuple[str, str], known: Known) -> None:
        with self._lock:
            self._known[key] = known

    def read(self, event: models.Event, about: models.Event) -> models.Event:
        """``event`` as stored. :class:`_UnreadableError` when it cannot be read; a refused
        read (403) is said once, ``about`` the correlator's event: client-go's ways from now."""
        assert self._read is not None
        try:
            return self._read(event)
        except TypeError as error:  # a wrapper around a sink that cannot read
            self.readable = False
            raise _UnreadableError from error
        except _errors.ApiStatusError as error:
            if error.status != 403:
                raise
            with self._lock:  # writers that read at once all meet the 403; one of them says so
                first, self.readable = self.readable, False
            if first:
                self._reporter.report(
                    "read-forbidden",
                    logging.WARNING,
                    "Unable to read event %s/%s to continue its count: %s. Until then, an "
                    "event whose name is taken gets a new name and counts from this process "
                    "only, as with client-go",
                    about.namespace,
                    about.name,
                    _errors.explain(error),
                )
            raise _UnreadableError from error

    def new_name(self, event: models.Event, renames: int) -> str:
        if self.readable:
            return self._namer.renamed(event, renames, self._clock.now())
        return self._namer.fresh(event.involved_object.name, self._clock.now())


class _UnreadableError(Exception):
    """The sink cannot read events after all."""


Step = Callable[["_Attempt"], tuple[str, models.Event] | None]


class _Attempt:
    """One attempt of one write: a few requests, each decided by the last answer."""

    def __init__(self, owner: Continuation, write: Write, policy: Policy) -> None:
        self.owner = owner
        self.write = write
        self.policy = policy
        # the first occurrence's object and reason, the latest count and message (a create
        # followed by count patches, as client-go writes one occurrence at a time)
        event = self.event = write.creation()
        self.key = (event.namespace, event.name)
        self.local = policy.count_of(event)
        found = owner.known(*self.key)
        known = found or Known(event.name, "", 0, 0)
        self.name, self.version = known.name, known.version
        # the event this process continued already (a restart's walk never passes it by)
        self.continued = found.name if found is not None and found.version else None
        # a correlator that forgot the event (lru_cache_size) while this write waited counted
        # again from 1 into it: its occurrences, not its latest count, say what it adds, less
        # what requests in doubt carried that the server's count (read) already holds
        token, count, writers = owner.token, known.count, known.writers
        landed = max((s[1] for s in write.unsure if _landed(s, count, writers, token)), default=0)
        floor = known.count + write.occurrences - landed
        self.target = max(self.local + known.offset, floor)
        self.writers = known.writers
        self.renames = 0
        self.taken = False  # the name was taken when a create met AlreadyExists
        self.walked = 0  # finished series passed on the way to ours (see _read)
        self.created = False  # our own create, whose answer was lost, is on the server
        self.contended = False  # a request was refused for the event's state (409, taken)
        self.floor: datetime | None = None  # the latest time of the event read (continued)
        # the next request (a function, not a bound method: no cycle through self); a create
        # retried after its takeover read the event (none in doubt) patches what it read
        patch = not write.create or (found is not None and not write.unsure)
        self.action: Step = _Attempt._patch if patch else _Attempt._create
        # nothing known of it (forgotten), or only the name a create went under: read first
        if patch and (found is None or not (found.version or found.name == event.name)):
            if owner.readable:
                self.action = _Attempt._read
            else:
                self.version = ""
        # a new series after ours went quiet: another process may have kept it going
        self.previous = (
            "" if patch or write.unsure or not owner.readable else policy.previous(event)
        )
        if self.previous:
            self.action = _Attempt._follow_previous

    def run(self) -> tuple[str, models.Event]:
        steps = 0
        while steps < MAX_STEPS:
            walked = self.walked
            done = self.action(self)
            if done is not None:
                return done
            if walked == self.walked or self.walked > MAX_FINISHED_SERIES:
                steps += 1
        raise _errors.ContentionError(
            f"409 Conflict: event {self.event.namespace}/{self.name} kept changing under "
            f"{MAX_STEPS} requests (other writers)"
        )

    def _create(self) -> tuple[str, models.Event] | None:
        # a fresh record, if shared: what the event holds under the key is a recorder's value
        room = self.owner.readable and self.writers is not None and _writers(self.event) is not None
        number, writers = self._stamp("" if room else None)
        given = {key: value for key, value in self.event.annotations.items() if key != WRITERS}
        annotations = given if writers is None else {**given, WRITERS: writers}
        body = self.policy.with_count(
            self.event, self.target, name=self.name, resource_version="", annotations=annotations
        )
        self.write.sent = (self.target, self.write.occurrences, True, number)
        try:
            stored = self.owner.sink.create(body)
        except _errors.ApiStatusError as error:
            if not error.is_already_exists:
                raise
            self.write.sent = None
            self.taken = self.contended = True
            if self.owner.readable:
                self.action = _Attempt._read
            else:
                self._without_reading()
            return None
        return self._done(stored, "created")

    def _read(self) -> tuple[str, models.Event] | None:
        try:
            stored = self.owner.read(dataclasses.replace(self.event, name=self.name), self.event)
        except _errors.ApiStatusError as error:
            if not error.is_not_found:
                raise
            self.action = _Attempt._create  # expired (or deleted) since: create it again
            return None
        except _UnreadableError:
            self._without_reading()
            return None
        if not self.policy.same_event(self.event, stored):  # another event holds the name
            self._rename()
            return None
        # the one this process continued is never finished: our own write may have moved its times
        if self.taken and self.name != self.continued and self.policy.finished(self.event, stored):
            # ours, but a restart must not continue a finished series: the next one's name
            # (a first rename of this one's, as the correlator names it) is read; a restart
            # walks past every finished one, which is no contention
            self.name = self.owner.new_name(dataclasses.replace(self.event, name=self.name), 1)
            self.action = _Attempt._read
            self.walked += 1
            return None
        return self._continue(stored)

    def _follow_previous(self) -> tuple[str, models.Event] | None:
        """Continue the series before ours if another process kept it going (its last
        occurrence within the finish time of our first); else create ours after it."""
        self.action = _Attempt._create
        known = self.owner.known(self.event.namespace, self.previous)
        before = dataclasses.replace(self.event, name=known.name if known else self.previous)
        try:
            stored = self.owner.read(before, before)
        except (_errors.ApiStatusError, _UnreadableError) as error:
            if isinstance(error, _errors.ApiStatusError) and not error.is_not_found:
                raise
            return None
        if not self.policy.same_event(self.event, stored):
            return None
        if self.policy.finished(self.event, stored):
            # named after the one before where it is on the server, as a walk names it; a name
            # other than the correlator's is kept beyond this write (one given up in doubt),
            # so that a retry or the next occurrence goes where the create went. The
            # correlator's own is not: a record of it without a resourceVersion would be
            # patched unguarded, over what another process created there meanwhile
            self.name = self.owner.new_name(before, 1)
            if self.name != self.event.name:
                self.owner.remember(self.key, Known(self.name, "", 0, 0))
            return None
        self.name, self.contended = before.name, True  # another process kept it going
        return self._continue(stored)

    def _continue(self, stored: models.Event) -> tuple[str, models.Event] | None:
        """Continue ``stored``, our event under :attr:`name`: the server's count plus ours."""
        server, start = self.policy.count_of(stored), _same_start(stored, self.event)
        # another writer may make it look finished before our patch: a re-read after a 409
        # that walked past it would create ours elsewhere with its count carried over
        self.continued = self.name
        self.floor = _latest(stored, self.owner._clock.now())
        self.version = stored.resource_version
        # a refusal is another writer's doing unless a request of ours in doubt set the count
        ours = any(server == s[0] and (start or not s[2]) for s in self.write.unsure)
        self._see(stored, self.contended and not ours)
        # this write's occurrences that the event does not hold yet: past those of the latest
        # request in doubt that landed
        token, writers = self.owner.token, self.writers
        landed = [s for s in self.write.unsure if _landed(s, server, writers, token, start)]
        self.created = self.created or any(s[2] for s in landed)
        carried = max((s[1] for s in landed), default=0)
        # a count past what each of ours taken as landed set was raised by another writer,
        # maybe past one of ours that did not land: what the count alone took is unconfirmed,
        # and stays so when a later request of ours that built on it is confirmed
        past = server > max((s[0] for s in landed), default=server)
        sure = max((s[1] for s in landed if not past or _told(s, writers, token)), default=0)
        self.write.unconfirmed = max(self.write.unconfirmed, carried - sure)
        self.target = server + max(0, self.write.occurrences - carried)
        # the requests that may have landed stay in doubt until a write succeeds: a read may
        # be an earlier answer (a connection out of step), and the next read must still
        # know of them, or what they carried would be counted twice
        if self.target <= server:  # what this write carries is there already
            return self._done(stored, self._kind())
        # a retry (after a 429, say) patches it again rather than creating it again
        known = Known(self.name, self.version, self.target - self.local, server, self.writers)
        self.owner.remember(self.key, known)
        self.action = _Attempt._patch
        return None

    def _patch(self) -> tuple[str, models.Event] | None:
        body = self.policy.with_count(self.event, self.target, name=self.name)
        body = _not_before(body, self.floor)
        data = self.policy.patch(body)
        number = 0
        if self.version and self.owner.readable:
            number, writers = self._stamp(self.writers)
            data = guarded_patch(data, self.version, writers)
        self.write.sent = (self.target, self.write.occurrences, False, number)
        try:
            stored = self.owner.sink.patch(body, data)
        except _errors.ApiStatusError as error:
            if error.is_not_found:
                self.write.sent = None  # nothing was there to patch
                self.action = _Attempt._create
                return None
            if error.status == 409 and error.reason == "Conflict" and self.owner.readable:
                self.write.sent, self.contended = None, True  # refused by its guard
                self.action = _Attempt._read  # another process wrote in between
                return None
            # any other answer: the writer judges whether the patch may have landed (a 5xx
            # can come after the server stored it), and keeps it in doubt if so
            raise
        return self._done(stored, self._kind())

    def _without_reading(self) -> None:
        """What client-go does in our place, when the event cannot be read."""
        self.version = ""  # a guard that fails could not be resolved
        # whether AlreadyExists met our own create: under deterministic names every restart
        # meets its name taken, so only a create of ours that may have landed is (not
        # client-go's series rule: a restart's series would overwrite the earlier run's count)
        ours = bool(self.write.unsure)
        if not self.owner._namer.deterministic:
            ours = self.policy.exists_is_ours(self.event, ours)
        if not self.taken:  # a conflict, or a repeat of a forgotten event: patch our count
            self.action = _Attempt._patch
        elif ours:
            self.action = _Attempt._patch  # our own create, whose answer was lost, landed
            self.created = True
        else:  # another event holds the name: a new name, as client-go would have made
            self._rename()

    def _stamp(self, writers: str | None) -> tuple[int, str | None]:
        """The next request's number, and the record ``writers`` (none: no room) with ours
        first at it, other writers' well-formed entries after, the oldest beyond
        :data:`MAX_WRITERS` dropped."""
        if writers is None:
            return 0, None
        number, token = next(self.owner.requests), self.owner.token
        others = [e for e in writers.split() if _ENTRY.fullmatch(e) and not e.startswith(token)]
        return number, " ".join([f"{token}:{number}", *others[: MAX_WRITERS - 1]])

    def _rename(self) -> None:
        """Create the event under a name of its own."""
        self.renames += 1
        self.name = self.owner.new_name(self.event, self.renames)
        self.action = _Attempt._create

    def _kind(self) -> str:
        """The outcome of a write that ended in a patch: created when our create it was."""
        return "created" if self.write.create and self.created else "patched"

    def _see(self, stored: models.Event, evidence: bool = False) -> None:
        """Note the record of writers on ``stored``, which this writer's requests extend from
        the first sign of another writer (the record, or ``evidence``); alone, they carry none."""
        record = _writers(stored)
        shared = evidence or bool(record) or self.writers is not None
        self.writers = record if shared else None

    def _done(self, stored: models.Event, kind: str) -> tuple[str, models.Event]:
        self.write.sent = None
        self.write.unsure.clear()
        count = self.policy.count_of(stored)
        self._see(stored)
        known = Known(self.name, stored.resource_version, count - self.local, count, self.writers)
        self.owner.remember(self.key, known)
        # the correlator sees its own name and count: the translation stays here
        return kind, self.policy.with_count(stored, self.local, name=self.event.name)


def _landed(sent: Sent, count: int, writers: str | None, token: str, start: bool = True) -> bool:
    """Whether a request in doubt landed, as the record ``writers`` (:data:`WRITERS`) of the
    event read tells: our entry at its number or later, yes; none of ours in a record with
    room for more, no. Where it cannot tell (no record, a garbled one, ours pushed out, a
    request that set none), once the ``count`` read reached what the request set (for a
    create, same ``start``), or passed it where a record came after ours (which set none:
    another writer then wrote on top of ours, if ours landed). Rather missed than twice."""
    target, _, created, number = sent
    told = _told(sent, writers, token)
    if told is not None:
        return told
    reached = count > target if _entries(writers) and not number else count >= target
    return reached and (start or not created)


def _told(sent: Sent, writers: str | None, token: str) -> bool | None:
    """Whether the record ``writers`` says a request in doubt landed; None: it cannot tell."""
    number, entries = sent[3], _entries(writers)
    mine = [int(entry.partition(":")[2]) for entry in entries if entry.startswith(token)]
    if number and mine:
        return mine[0] >= number
    return False if number and entries and len(entries) < MAX_WRITERS else None


def _entries(writers: str | None) -> list[str]:
    entries = (writers or "").split()
    return entries if all(map(_ENTRY.fullmatch, entries)) else []  # garbled: another program's


def _writers(event: models.Event) -> str | None:
    """The record of :data:`WRITERS` on ``event`` ("": none yet), or None when its other
    annotations leave no room for one within the server's limit."""
    others = {key: value for key, value in event.annotations.items() if key != WRITERS}
    room = _sanitise.annotations_bytes(others) + _RECORD_BYTES <= _sanitise.ANNOTATIONS_MAX_BYTES
    return event.annotations.get(WRITERS, "") if room else None


def _latest(event: models.Event, now: datetime) -> datetime | None:
    """The latest time ``event`` holds (its series' last observation, last timestamp ...), at
    most ``now``: a later one is another clock's (ahead) or garbage, and copied on, it would
    outlive every write of ours (a series never found quiet)."""
    series = event.series.last_observed_time if event.series is not None else None
    times = (series, event.last_timestamp, event.event_time, event.first_timestamp)
    latest = max((time for time in times if time is not None), default=None)
    return latest if latest is None or latest <= now else now


def _not_before(event: models.Event, floor: datetime | None) -> models.Event:
    """``event`` last seen no earlier than ``floor``: an occurrence that waited (a retry, a
    conflict) while another process wrote later never moves the stored last time back, nor
    before the first."""
    if floor is None:
        return event
    if event.last_timestamp is not None and event.last_timestamp < floor:
        event = dataclasses.replace(event, last_timestamp=floor)
    if event.series is not None and event.series.last_observed_time < floor:
        event = dataclasses.replace(event, series=models.EventSeries(event.series.count, floor))
    return event


def _same_start(stored: models.Event, ours: models.Event) -> bool:
    theirs = stored.event_time or stored.first_timestamp
    mine = ours.event_time or ours.first_timestamp
    if theirs is None or mine is None:
        return theirs is mine
    # to the microsecond when both have an eventTime: a restart within the second of the
    # earlier run's start is not ours
    micro = stored.event_time is not None and ours.event_time is not None
    form = models.format_micro_time if micro else models.format_time
    return form(theirs) == form(mine)
