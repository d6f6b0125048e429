"""The writer: from correlated occurrences to create and patch calls on an :class:`EventSink`.

It sits between the correlator and the sink of one ``start_recording_to_sink`` call. client-go
writes one event at a time, so one object's retries stall everything behind it, and it loses
what the spam filter held back. This writer keeps client-go's create-or-patch logic and retry
schedule, and adds:

* several writer threads; writes for one event (namespace and name) stay in order, and a key
  that is waiting to retry never holds up another key;
* at most one pending write per event: an occurrence that arrives while its event's write is
  waiting, backing off or in flight updates that write (count, lastTimestamp, message) and is
  counted as ``coalesced`` once the write lands;
* occurrences the spam filter held back are kept: their latest count is written when the
  event's token bucket next allows, and at flush;
* exact accounting: each occurrence ends as created, patched, coalesced or failed.

Time comes from the injected clock, and every wait goes through the injected sleeper, so
tests drive back-offs with a fake clock.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import tenacity

from k8s_logging_events import _diagnostics, _stats, correlator, models, sink
from k8s_logging_events import clock as clock_mod

__all__ = ["MAX_TRIES_PER_EVENT", "CountPolicy", "WritePolicy", "Writer", "WriterOptions"]

MAX_TRIES_PER_EVENT = 12
"""client-go's limit: twelve attempts (eleven back-offs) before an event is given up."""

DEFAULT_SLEEP_DURATION = 10.0
"""client-go's back-off between attempts, in seconds; only the first one is randomised."""

DEFAULT_WRITERS = 4
"""Writer threads per sink: enough that a few failing objects leave room for the rest."""

Key = tuple[str, str]

_RESOLUTION = 1e-6
"""A clock gives datetimes, in whole microseconds: a write due within one is due now (a
sleeper that moves a fake clock cannot sleep less, and would be asked again forever)."""


class WritePolicy(Protocol):
    """What a writer needs to know about one API's way of recording repeats.

    core/v1 counts repeats and patches ``count`` (:class:`CountPolicy`, driven by the
    correlator's spam filter); events.k8s.io/v1 groups them into a series that is written
    on a heartbeat (``series.SeriesPolicy``).
    """

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
        """True when ``AlreadyExists`` on a create means our own earlier create landed."""
        ...


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
        self._correlator.update_state(stored)

    def exists_is_ours(self, event: models.Event, maybe_landed: bool) -> bool:
        """Only after a create that may have landed (client-go gives AlreadyExists up)."""
        return maybe_landed


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """How a :class:`Writer` retries and how many threads it runs."""

    writers: int = DEFAULT_WRITERS
    """Writer threads; at least 1."""
    max_tries: int = MAX_TRIES_PER_EVENT
    """Attempts per write before it is given up (client-go: 12)."""
    sleep_duration: float = DEFAULT_SLEEP_DURATION
    """Seconds between attempts; the first back-off is this times a random number in [0, 1)."""
    name: str = "k8s-events-writer"
    """Prefix of the writer threads' names."""


@dataclass(slots=True)
class _Write:
    """One pending write of one event, carrying every occurrence merged into it."""

    event: models.Event
    create: bool
    held: bool
    occurrences: int = 1
    attempts: int = 0
    due: float = 0.0
    # a create that failed in transport may have landed: AlreadyExists then means "ours"
    maybe_landed: bool = False
    abandoned: bool = False
    # the submission number of its oldest occurrence (flush waits for those before it)
    first: int = 0

    def absorb(self, newer: _Write) -> None:
        """Take over a newer occurrence: its count, timestamps and message win."""
        self.event = newer.event
        self.occurrences += newer.occurrences
        self.held = self.held and newer.held


@dataclass(slots=True)
class _Slot:
    """The per-event state: the write in flight, and the one waiting behind it."""

    in_flight: _Write | None = None
    waiting: _Write | None = None
    # where the waiting write is: "ready", "timed" or "blocked" (behind the one in flight)
    state: str = "blocked"
    token: int = 0


class Writer:
    """Writes correlated events to one sink from a pool of named daemon threads."""

    def __init__(
        self,
        event_sink: sink.EventSink,
        policy: WritePolicy,
        counters: _stats.Counters,
        *,
        options: WriterOptions | None = None,
        clock: clock_mod.Clock | None = None,
        sleep: clock_mod.Sleeper | None = None,
        rng: Callable[[], float] | None = None,
        reporter: _diagnostics.RateLimitedReporter | None = None,
    ) -> None:
        self._sink = event_sink
        self._policy = policy
        self._counters = counters
        self._options = options or WriterOptions()
        self._clock = clock or clock_mod.SystemClock()
        self._sleep = sleep or clock_mod.event_sleep
        self._reporter = reporter or _diagnostics.RateLimitedReporter(clock=self._clock)
        self._retry = _RetrySchedule(self._options, rng or random.random)
        self._cond = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._slots: dict[Key, _Slot] = {}
        self._ready: deque[Key] = deque()
        self._timed: list[tuple[float, int, Key]] = []
        self._tokens = itertools.count()
        self._timekeeper = False
        self._flushing = 0
        self._submitted = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # --- the consumer's side -------------------------------------------------------------

    def submit(self, result: correlator.CorrelateResult) -> None:
        """Queue the write one correlated occurrence asks for (or the count it held back)."""
        observed = result.observed if result.skip else result.event
        if observed is not None:
            self.submit_event(observed, held=result.skip)

    def submit_event(self, event: models.Event, *, held: bool) -> None:
        """Queue a write of ``event``; a ``held`` one waits until the policy releases it."""
        # the patch is made when the write happens: only the latest of a coalesced run is sent
        write = _Write(event=event, create=self._policy.is_first(event), held=held)
        key = (event.namespace, event.name)
        with self._cond:
            if self._stopping:
                self._fail(write, "the recorder is shut down")
                return
            self._submitted += 1
            write.first = self._submitted
            self._start_threads()
            slot = self._slots.setdefault(key, _Slot())
            if slot.waiting is not None:
                slot.waiting.absorb(write)
                if slot.state == "timed" and not slot.waiting.held and not slot.waiting.attempts:
                    self._make_ready(key, slot)
                return
            slot.waiting = write
            if slot.in_flight is None:
                self._schedule(key, slot)

    # --- flush and stop ------------------------------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        """Write every event submitted so far, held-back counts included; True once done.

        Occurrences submitted after the call do not hold it up (under a steady stream of
        them the writer would never be idle), unless they were merged into an older write.
        """
        with self._cond:
            self._flushing += 1
            target = self._submitted
            try:
                self._release_held()
                return self._cond.wait_for(lambda: self._oldest_pending() > target, timeout)
            finally:
                self._flushing -= 1

    def _oldest_pending(self) -> float:
        """The submission number of the oldest occurrence not yet written (inf: none)."""
        oldest = math.inf
        for slot in self._slots.values():
            for write in (slot.in_flight, slot.waiting):
                if write is not None and write.first < oldest:
                    oldest = write.first
        return oldest

    def stop(self, timeout: float | None) -> None:
        """Stop the threads; what is still pending afterwards is counted as failed.

        Writes waiting for their turn are abandoned at once; writes in flight get until
        ``timeout`` to finish, and are abandoned if they have not by then.
        """
        with self._cond:
            self._stopping = True
            abandoned = self._abandon(in_flight=False)
            self._cond.notify_all()
            self._wake.set()
            threads = list(self._threads)
        # thread joins measure real time: the deadline is the caller's, not the test clock's
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
        with self._cond:
            abandoned += self._abandon(in_flight=True)
        if abandoned:
            self._reporter.report(
                "abandoned",
                logging.WARNING,
                "Unable to write %d event occurrence(s): the recorder was shut down first",
                abandoned,
            )

    def pending(self) -> int:
        """Return how many events have a write waiting or in flight."""
        with self._cond:
            return len(self._slots)

    # --- scheduling (all under self._cond) -----------------------------------------------

    def _start_threads(self) -> None:
        if self._threads:
            return
        for index in range(max(1, self._options.writers)):
            thread = threading.Thread(
                target=self._run, name=f"{self._options.name}-{index}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _schedule(self, key: Key, slot: _Slot) -> None:
        write = slot.waiting
        assert write is not None
        if write.held and not self._flushing:
            write.due = self._now() + self._policy.hold_wait(write.event)
            self._make_timed(key, slot, write.due)
        elif write.due > self._now():
            self._make_timed(key, slot, write.due)
        else:
            self._make_ready(key, slot)

    def _make_ready(self, key: Key, slot: _Slot) -> None:
        slot.state = "ready"
        slot.token = next(self._tokens)
        self._ready.append(key)
        self._cond.notify()
        self._wake.set()

    def _make_timed(self, key: Key, slot: _Slot, due: float) -> None:
        slot.state = "timed"
        slot.token = next(self._tokens)
        heapq.heappush(self._timed, (due, slot.token, key))
        # an idle thread must become the timekeeper, and a sleeping one recompute its wait
        self._cond.notify()
        self._wake.set()

    def _release_held(self) -> None:
        """At flush, held-back counts go out without waiting for a token."""
        for key, slot in self._slots.items():
            if slot.state == "timed" and slot.waiting is not None and slot.waiting.held:
                self._make_ready(key, slot)

    def _promote_due(self) -> None:
        now = self._now() + _RESOLUTION
        while self._timed and self._timed[0][0] <= now:
            _, token, key = heapq.heappop(self._timed)
            slot = self._slots.get(key)
            if slot is None or slot.token != token or slot.state != "timed":
                continue  # superseded entry
            write = slot.waiting
            assert write is not None
            if write.held and not self._flushing and not self._policy.release(write.event):
                write.due = now + max(self._policy.hold_wait(write.event), 0.001)
                self._make_timed(key, slot, write.due)
                continue
            write.held = False
            self._make_ready(key, slot)

    def _next_delay(self) -> float | None:
        while self._timed:
            due, token, key = self._timed[0]
            slot = self._slots.get(key)
            if slot is not None and slot.token == token and slot.state == "timed":
                return max(0.0, due - self._now())
            heapq.heappop(self._timed)
        return None

    def _take(self) -> tuple[Key, _Write] | None:
        """Block until a write is ready; None when the writer is stopping."""
        while True:
            self._promote_due()
            while self._ready:
                key = self._ready.popleft()
                slot = self._slots.get(key)
                if slot is None or slot.state != "ready" or slot.waiting is None:
                    continue
                write, slot.waiting, slot.in_flight = slot.waiting, None, slot.waiting
                slot.state = "blocked"
                return key, write
            if self._stopping:
                return None
            delay = self._next_delay()
            if delay is None or self._timekeeper:
                self._cond.wait()
                continue
            self._keep_time(delay)

    def _keep_time(self, delay: float) -> None:
        # one thread sleeps until the next due write, through the injected sleeper
        self._timekeeper = True
        self._wake.clear()
        self._cond.release()
        try:
            self._sleep(delay, self._wake)
        finally:
            self._cond.acquire()
            self._timekeeper = False
            self._cond.notify_all()

    def _abandon(self, *, in_flight: bool) -> int:
        abandoned = 0
        for key, slot in list(self._slots.items()):
            writes = (slot.waiting, slot.in_flight) if in_flight else (slot.waiting,)
            for write in writes:
                if write is not None and not write.abandoned:
                    write.abandoned = True
                    abandoned += write.occurrences
                    self._counters.add("failed", write.occurrences)
            slot.waiting = None
            if in_flight or slot.in_flight is None:
                del self._slots[key]
        self._ready.clear()
        self._timed.clear()
        self._cond.notify_all()
        return abandoned

    def _now(self) -> float:
        return clock_mod.seconds(self._clock)

    # --- the writer threads ------------------------------------------------------------

    def _run(self) -> None:
        """Take ready writes and perform them, until stopped. Runs on a writer thread."""
        while True:
            with self._cond:
                job = self._take()
            if job is None:
                return
            key, write = job
            try:
                outcome = self._attempt(write)
            except Exception as error:  # every failure is classified, none escapes the thread
                self._after_failure(key, write, error)
            else:
                self._after_success(key, write, outcome)

    def _attempt(self, write: _Write) -> tuple[str, models.Event]:
        """Make one attempt: patch a repeat, create the rest (and a repeat that expired)."""
        if not write.create:
            try:
                return "patched", self._sink.patch(write.event, self._policy.patch(write.event))
            except sink.ApiStatusError as error:
                if not error.is_not_found:
                    raise
        fresh = dataclasses.replace(write.event, resource_version="")
        try:
            return "created", self._sink.create(fresh)
        except sink.ApiStatusError as error:
            if not (
                error.is_already_exists
                and self._policy.exists_is_ours(write.event, write.maybe_landed)
            ):
                raise
        # our own earlier create landed (its answer was lost, or it raced): continue as a patch
        write.create = False
        return "created", self._sink.patch(write.event, self._policy.patch(write.event))

    def _after_success(self, key: Key, write: _Write, outcome: tuple[str, models.Event]) -> None:
        kind, stored = outcome
        self._policy.written(write.event, stored)
        with self._cond:
            if write.abandoned:
                return
            self._counters.add(kind)
            if write.occurrences > 1:
                self._counters.add("coalesced", write.occurrences - 1)
            self._finish(key)

    def _after_failure(self, key: Key, write: _Write, error: Exception) -> None:
        write.attempts += 1
        if write.create and _may_have_landed(error):
            write.maybe_landed = True
        retry_in = self._retry.delay(write.attempts, error)
        with self._cond:
            if write.abandoned:
                return
            if retry_in is None or self._stopping:
                self._give_up(write, error)
                self._finish(key)
                return
            slot = self._slots[key]
            slot.in_flight = None
            newer, slot.waiting = slot.waiting, write
            if newer is not None:
                write.absorb(newer)
            write.due = self._now() + retry_in
            self._make_timed(key, slot, write.due)
        self._report_retry(write, error)

    def _finish(self, key: Key) -> None:
        slot = self._slots.get(key)
        if slot is None:
            return
        slot.in_flight = None
        if slot.waiting is None:
            del self._slots[key]
            self._cond.notify_all()  # flush waits for the oldest pending writes
            return
        if self._flushing:
            self._cond.notify_all()
        self._schedule(key, slot)

    def _give_up(self, write: _Write, error: Exception) -> None:
        write.abandoned = True
        self._counters.add("failed", write.occurrences)
        quiet = isinstance(error, sink.ApiStatusError) and (
            error.is_already_exists or error.is_namespace_terminating
        )
        level = logging.DEBUG if quiet else logging.WARNING
        reason = "will not retry" if write.attempts < self._options.max_tries else "retry limit"
        self._reporter.report(
            f"give-up:{type(error).__name__}:{getattr(error, 'status', '')}",
            level,
            "Unable to write event %s/%s (%s, %d occurrence(s) lost): %s",
            write.event.namespace,
            write.event.name,
            reason,
            write.occurrences,
            _describe_error(error),
        )

    def _fail(self, write: _Write, why: str) -> None:
        self._counters.add("failed", write.occurrences)
        self._reporter.report(
            "after-stop", logging.WARNING, "Unable to write event %s: %s", write.event.name, why
        )

    def _report_retry(self, write: _Write, error: Exception) -> None:
        self._reporter.report(
            "retry",
            logging.INFO,
            "Unable to write event %s/%s (attempt %d, may retry after sleeping): %s",
            write.event.namespace,
            write.event.name,
            write.attempts,
            _describe_error(error),
        )


class _RetrySchedule:
    """client-go's schedule, as tenacity strategies: random first back-off, then fixed."""

    def __init__(self, options: WriterOptions, rng: Callable[[], float]) -> None:
        base = options.sleep_duration
        self._stop = tenacity.stop_after_attempt(max(1, options.max_tries))
        self._wait = tenacity.wait_chain(_wait_scaled(base, rng), tenacity.wait_fixed(base))
        self._retrying = tenacity.Retrying(stop=self._stop, wait=self._wait)

    def delay(self, attempts: int, error: Exception) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if not sink.is_retryable(error):
            return None
        state = tenacity.RetryCallState(self._retrying, None, (), {})
        state.attempt_number = attempts
        state.set_exception((type(error), error, error.__traceback__))
        if self._stop(state):
            return None
        delay = float(self._wait(state))
        retry_after = getattr(error, "retry_after", None)
        if isinstance(error, sink.ApiStatusError) and retry_after is not None:
            delay = max(delay, retry_after)
        return delay


def _wait_scaled(base: float, rng: Callable[[], float]) -> tenacity.wait.wait_base:
    class _Scaled(tenacity.wait.wait_base):
        # clients started together must not retry in lockstep
        def __call__(self, retry_state: tenacity.RetryCallState) -> float:
            return base * rng()

    return _Scaled()


def _may_have_landed(error: Exception) -> bool:
    """Tell whether a create that failed with ``error`` may have been stored all the same.

    A transport error (the answer was lost) and a 5xx (a 500 or a 504 Timeout can come
    after the server stored the object) leave it open; a 4xx answer, 429 included, says the
    request was not carried out.
    """
    if isinstance(error, sink.ApiStatusError):
        return error.status >= 500
    return True


def _describe_error(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
