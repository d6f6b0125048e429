"""The writer pool: the threads that make the requests of every sink of one runtime.

Between the dispatcher and the sinks (the thread rules of :mod:`~k8s_logging_events._runtime`
hold here): writers start while writes are ready, at most ``writers`` requests in flight
(stalled ones aside), and end after a short idle spell. The pool shares the runtime's
condition and calls it back only through ``wake``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence

from k8s_logging_events import _apis, _diagnostics, _errors, _pending, _process, broadcaster, models

WRITER_LINGER_SECONDS = 0.5
"""How long an idle writer thread waits for more work before it ends."""

SPAWN_RETRY_SECONDS = 0.05
"""How soon the dispatcher tries again to start a writer that could not start (a pids limit)."""

STALL_SECONDS = _errors.STALL_SECONDS
"""A request in flight this long is stalled (the reports' value)."""

Made = tuple[_pending.WritePolicy, _pending.Correlate, bool]
Setup = Callable[[], Made]
"""Chooses a sink's write policy and correlation step at its first event, and says whether
that correlation keeps objects apart (:func:`~k8s_logging_events._runs.cut`); may request."""

_counter = itertools.count()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Shared:
    """What one runtime gives its parts for its whole life; ``capacity`` and ``writers`` are
    the options ``queue_length`` and ``writers``, at least 1."""

    capacity: int
    writers: int
    namer: models.Namer
    counters: _diagnostics.Counters
    reporter: _diagnostics.RateLimitedReporter
    name: str  # the prefix of the threads' names (for people reading a thread dump)


class Recording:
    """One ``start_recording_to_sink``: a correlation step and the writes of one sink.
    ``setup`` sets the correlation up at the first occurrence; where that may request (see
    :func:`~._apis.api_known`), a writer does it (rule 10) and the occurrences wait ``aside``."""

    def __init__(self, writes: _pending.Writes, setup: Setup) -> None:
        self.writes = writes
        self.setup = setup  # on a writer thread, outside the lock: it may request
        self.watcher = broadcaster.Watcher.detached()
        self._fresh()

    def _fresh(self) -> None:
        self._correlate: _pending.Correlate | None = None
        # kept while a writer sets the correlation up; counted till an outcome or write (stats)
        self.aside: list[object] = []
        self.aside_count = 0
        # a writer should set the correlation up; one is (a request: it stalls)
        self.wanted = self.preparing = self._by_object = False
        self.preparing_since = 0.0  # real time
        self.failure: Exception | None = None  # why the last setup failed

    @property
    def ready(self) -> bool:
        return self._correlate is not None

    def done(self) -> bool:
        """True when nothing is left to write, set aside or set up (under ``cond``)."""
        writes = self.writes
        return not (
            writes.pending_events()
            or writes.in_flight_count()
            or self.aside_count
            or self.preparing
        )

    def prepares_here(self) -> bool:
        """True when the dispatcher may set the correlation up itself: no I/O needed."""
        return self.ready or _apis.api_known(self.writes.sink)

    def prepare(self) -> bool:
        """Set the correlation up at its first use; True when it keeps objects apart."""
        if self._correlate is None:
            self.install(self.setup())
        return self._by_object

    def install(self, made: Made) -> None:
        """Take what :attr:`setup` made (under the runtime's lock, or on the dispatcher)."""
        policy, correlate, self._by_object = made  # by_object first: ready means all set
        self.writes.policy = policy
        self._correlate = correlate

    def correlate(self, run: Sequence[models.Event]) -> list[tuple[models.Event, bool, int]]:
        """Correlate a run of repeats (on the dispatcher, unlocked, after :meth:`prepare`)."""
        assert self._correlate is not None
        return self._correlate(run)

    def renew(self) -> None:  # in a child after fork: forget everything pending, every cache
        self.writes = self.writes.renewed()
        self._fresh()


Job = tuple[Recording, _pending.Write | None]
"""A write to make, or (None) a recording to set up."""


class WriterPool:
    """The writer threads of one runtime. ``cond`` is the runtime's condition: held to read
    or change the writes, never across a request; ``recordings`` gives the runtime's
    recordings (under ``cond``); ``wake`` has the dispatcher look at its timers again."""

    def __init__(
        self,
        cond: threading.Condition,
        shared: Shared,
        *,
        recordings: Callable[[], list[Recording]],
        wake: Callable[[], None],
    ) -> None:
        self._cond = cond
        self._shared = shared
        self._recordings = recordings
        self._wake = wake
        self._workers: set[threading.Thread] = set()
        self._idle = 0
        self.flushes: list[Callable[[], bool]] = []  # whether each waiting flush is done
        self.can_spawn = True  # False for good: the interpreter exits (3.12)
        self.refused = False  # the last writer could not start: a flush writes on its own thread
        self.stopping = False

    def ready(self) -> int:
        """Jobs that may start now: ready writes, and recordings to set up (under ``cond``)."""
        return sum(r.writes.ready_count() + r.wanted for r in self._recordings())

    def threads(self) -> list[threading.Thread]:
        with self._cond:
            return list(self._workers)

    def busy(self) -> bool:
        """True while a writer thread exists (under ``cond``)."""
        return bool(self._workers)

    def stop(self) -> None:
        """No job is taken any more, and idle threads end (under ``cond``)."""
        self.stopping = True
        self._cond.notify_all()

    def stall_wait(self, wait: float) -> float:
        """``wait``, or less when ready writes wait behind requests that may stall."""
        with self._cond:
            if not self.ready():
                return wait
            if not self._workers:  # none could start: try again soon
                return min(wait, SPAWN_RETRY_SECONDS)
            starts = [r.writes.oldest_start() for r in self._recordings()]
            starts += [r.preparing_since for r in self._recordings() if r.preparing]
        oldest = min((start for start in starts if start is not None), default=None)
        if oldest is not None:
            # blocked behind requests that may stall: look again when they would
            wait = min(wait, max(0.05, oldest + STALL_SECONDS - time.monotonic()))
        return wait

    def start(self, *, here: bool) -> bool:
        """Start writers for the ready writes; where none can start, write one on this thread
        and return True: a flushing one (``here``), or, where no thread can ever start again
        (3.12's exit), the dispatcher too (rule 10's one exception: no other thread exists)."""
        self._spawn_writers()
        job = self._take_job() if (here and self.refused) or not self.can_spawn else None
        if job is not None:
            self._perform(*job)
        return job is not None

    def _spawn_writers(self) -> None:  # refused: whether the last could not start
        while self.can_spawn:
            with self._cond:
                busy = len(self._workers) - self._idle
                if (
                    self.stopping
                    or self.ready() <= self._idle
                    or busy >= self._shared.writers + self._stalled_count()
                    or len(self._workers) >= 2 * self._shared.writers
                ):
                    return
                name = f"{self._shared.name}-writer-{next(_counter)}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                self._workers.add(thread)
            try:
                thread.start()
            except RuntimeError as error:  # tried again soon (stall_wait), for good at exit;
                with self._cond:  # a flush writes on its own thread meanwhile
                    self._workers.discard(thread)
                    self.can_spawn = not _process.refused_at_exit(error)
                    self.refused = True
                if self.can_spawn:  # a thread limit: writes wait unseen till a flush
                    self._shared.reporter.report(
                        "writer-start",
                        logging.ERROR,
                        "Unable to start an event writer thread (%s): writes wait until one "
                        "starts, or a flush makes them",
                        error,
                    )
                return
            self.refused = False

    def _stalled_count(self) -> int:
        # requests and set-ups in flight STALL_SECONDS or more (stalling() marks namespaces)
        now = time.monotonic()
        return sum(
            r.writes.stalling(now, STALL_SECONDS)
            + (r.preparing and now - r.preparing_since >= STALL_SECONDS)
            for r in self._recordings()
        )

    def _take_job(self) -> Job | None:
        with self._cond:
            if self.stopping:
                return None
            recordings = self._recordings()
            for recording in recordings:
                if recording.wanted:  # before the writes: they wait for it
                    recording.wanted, recording.preparing = False, True
                    recording.preparing_since = time.monotonic()
                    return recording, None
            # a set-up under way is a request in flight too
            in_flight = sum(r.writes.in_flight_count() + r.preparing for r in recordings)
            if in_flight - self._stalled_count() >= self._shared.writers:
                return None
            for recording in recordings:
                write = recording.writes.take()
                if write is not None:
                    return recording, write
        return None

    def _work(self) -> None:
        _diagnostics.become_own_thread()
        me = threading.current_thread()
        idle_since = time.monotonic()
        try:
            while True:
                # the last look for work and the end are one step: a write queued between
                # them would find this thread still counted as a writer, and none to take it
                with self._cond:
                    job = self._take_job()
                    if job is None:
                        left = idle_since + WRITER_LINGER_SECONDS - time.monotonic()
                        if self.stopping or left <= 0:
                            self._workers.discard(me)
                            return
                        self._idle += 1
                        try:
                            self._cond.wait(left)
                        finally:
                            self._idle -= 1
                        continue
                self._perform(*job)
                idle_since = time.monotonic()
        finally:
            with self._cond:
                self._workers.discard(me)

    def _perform(self, recording: Recording, write: _pending.Write | None) -> None:
        if write is None:
            self._prepare(recording)
            return
        writes = recording.writes
        write.writer = threading.get_ident()  # a credential plugin it waits for is its own
        try:
            with _process.requests_given_up_by(writes.given_up):
                kind, stored = writes.attempt(write)
        except BaseException as error:  # what is no step error goes on once the write is settled
            failure: BaseException | None = error
        else:
            failure = None
            try:
                writes.feed_back(write, stored)
            except _diagnostics.step_errors() as error:  # the write landed; bookkeeping failed
                self._shared.reporter.report(
                    "feed-back", logging.ERROR, "Unable to note a written event: %r", error
                )
        with self._cond:
            if failure is None:
                writes.succeeded(write, kind)
            else:
                writes.failed(write, _errors.readable(failure), stopping=self.stopping)
            timed = writes.next_due() is not None
            # idle writers take what is ready; flushes wake once done, or write (no writer thread)
            if self._idle or not self._workers or any(done() for done in self.flushes):
                self._cond.notify_all()
        self._shared.reporter.emit_deferred()  # rule 2: reports kept under the lock go out now
        if timed:
            self._wake()  # a retry or a held count now waits on its timer
        if failure is not None and not isinstance(failure, _diagnostics.step_errors()):
            # Ctrl-C or an exit on the caller's thread: its write, left in flight, held every
            # later one about its object for good
            raise failure

    def _prepare(self, recording: Recording) -> None:
        # a writer's job (rule 10): it may build a client (an exec plugin) and request
        failure: BaseException | None = None
        try:
            made = recording.setup()
        except BaseException as error:  # rule 5: kept aside fails, on the dispatcher
            failure = error
        with self._cond:
            if failure is None:
                recording.install(made)
            else:
                recording.failure = _errors.readable(failure)
            recording.preparing = False
            self._cond.notify_all()
        self._wake()  # the dispatcher hands on what it kept aside
        if failure is not None and not isinstance(failure, _diagnostics.step_errors()):
            raise failure  # as in _perform: left preparing, it kept every occurrence aside
