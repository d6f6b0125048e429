"""The runtime: every background thread of one EventBroadcaster, and its whole lifecycle.

This is the middle of the pipeline, between the recorder (the caller's thread) and the
sinks. Nothing else in the package starts a thread::

    caller's thread       one queue          dispatcher thread (one)        writers (bounded)
    ---------------       ---------          -----------------------        -----------------
    EventRecorder  --->   SimpleQueue  --->  drain in batches; build     -> requests, one per
    .record: offer()      (reentrant put,    events; inline consumers       event key and per
                          full = counted     (structured logging);          involved object in
                          drop)              correlate; queue writes        flight; threads only
                                                                            while there is work

The rules this module keeps:

1. No wait without a timeout.
2. Never wait while holding a lock that another of our threads needs: the runtime's lock
   is released by every wait (conditions) and never held across a request or a join.
3. The caller's path (:meth:`Runtime.offer`) takes no lock at all: the queue's ``put`` is
   reentrant and the counters are lock-free, because a signal handler runs on the thread
   it interrupts and may log while that thread was logging.
4. A background thread never waits for a lock that ``dictConfig`` or ``logging.shutdown()``
   may hold while they wait for it: reports and structured logging go through
   :func:`~k8s_logging_events._diagnostics.log_safely`, which never takes logging's lock.
5. An exception in a background step costs only the occurrences it was handling (counted
   as ``failed``) and never ends a thread.
6. The library's threads are recognised by identity (a thread-local mark), never by name.
7. The library's threads block the termination signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT,
   SIGALRM, SIGUSR1, SIGUSR2), so that the kernel hands them to the application's threads
   and its handlers run promptly on its main thread. A subprocess inherits its thread's
   mask, so a library thread unblocks them while it may start one (building the client,
   reading credentials: a kubeconfig ``exec`` plugin), and no subprocess the library
   causes inherits a blocked mask (:func:`~k8s_logging_events._process.subprocesses_may_start`).
8. Two kinds of time: timestamps come from the clock's ``now()``; durations the library
   schedules (back-offs, held counts, rate limits, report limits) are measured on the
   clock's monotonic reading, so that a test drives them with a fake clock; deadlines and
   stall detection, which bound real waits (a flush, a request hanging in a socket), on
   :func:`time.monotonic`. Never a duration on the wall clock, which NTP may step.
9. After ``os.fork()``, everything a thread of the parent may have held is renewed in the
   child before anything runs there, in one registry (:mod:`~k8s_logging_events._process`).
10. No I/O on the dispatcher, ever: a sink that must build its client or ask the server
    which Events API it serves before its correlation can be set up (``api="auto"``:
    :func:`~k8s_logging_events._apis.api_known`) is set up by a job on the writer pool
    (:mod:`~k8s_logging_events._pool`); its occurrences wait aside meanwhile, bounded by
    ``queue_length``, counted as pending, waited for by a flush and given up by a close.

Lifecycle: the dispatcher starts with the first occurrence; writer threads start when
writes are ready and end after a short idle spell; :meth:`Runtime.flush` and
:meth:`Runtime.close` are bounded by one deadline; after ``os.fork()`` the child starts
afresh with its counters at zero (the parent's queued and pending writes are the parent's,
never written twice); a ``multiprocessing`` child flushes when its target returns (a
``Pool``'s workers when they end: ``close()`` and ``join()`` the pool before it is
terminated); where no thread can be started any more (Python 3.12 during interpreter exit)
the threads that exist, or the flushing thread, do the work.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from k8s_logging_events import (
    _diagnostics,
    _flush,
    _handoff,
    _pending,
    _pool,
    _process,
    _watchers,
    broadcaster,
    models,
)
from k8s_logging_events._flush import WAKE, Deadline, Marker

__all__ = ["DEFAULT_EXIT_TIMEOUT", "Runtime"]

DEFAULT_EXIT_TIMEOUT = 5.0
"""Seconds a ``multiprocessing`` child's exit may spend writing what it logged."""

BATCH_SIZE = 4096
"""Occurrences the dispatcher takes at once: hand-offs and lock traffic per batch, not per item.

Large, because the further behind the dispatcher falls in a burst, the more repeats of one
object a batch holds, and a run of repeats is correlated at once: a deep queue drains
faster per occurrence than a shallow one."""

LINGER_BATCH = 64
"""A batch at least this long means a burst: the dispatcher then lets the next one gather."""

LINGER_SECONDS = 0.05
"""The longest the dispatcher lets the next batch of a burst gather.

Under one interpreter lock, a dispatcher that takes the queue whenever it gets the lock
handles a burst in batches of what one switch interval queued (a hundred or so), and each
object in a batch costs a correlation; waiting a little gives batches of thousands, where
the repeats of one object are counted at once (a third of the instructions per occurrence:
``bench/instructions.py``). It stops at a full batch, at a quarter of the queue, or when a
flush or close waits. An event of a burst reaches the API server at most this much later.
"""

LINGER_STEP_SECONDS = 0.005
"""How often a lingering dispatcher looks at the queue's length."""

IDLE_WAIT_SECONDS = 5.0
"""The longest the dispatcher waits for the queue before it looks at its timers again."""

JOIN_GRACE_SECONDS = 0.25
"""What close() gives its threads to end after the deadline has passed."""

REPORT_GRACE_SECONDS = 0.25
"""What flush() and close() give a report another thread is writing to be out."""

_counter = itertools.count()


class Runtime:
    """The queue, the dispatcher and the writers of one EventBroadcaster.

    ``options`` are the broadcaster's (``sleep`` None waits for a timer on the queue). The
    ``namer`` names each Event when the dispatcher builds it
    (:func:`~k8s_logging_events.models.materialize`), the ``counters`` (shared with the
    recorder) count the outcomes, the ``reporter`` reports drops, failures and the exit
    summary, and ``name`` prefixes the threads' names.
    """

    def __init__(
        self,
        options: _pool.Settings,
        *,
        namer: models.Namer,
        counters: _diagnostics.Counters,
        reporter: _diagnostics.RateLimitedReporter,
        name: str = "k8s-events",
    ) -> None:
        self._shared = _pool.Shared(
            capacity=max(1, options.queue_length),
            writers=max(1, options.writers),
            namer=namer,
            counters=counters,
            reporter=reporter,
            name=name,
        )
        self._reporter = reporter
        self._sleep = options.sleep
        self.exit_timeout = DEFAULT_EXIT_TIMEOUT
        self._consumers = _handoff.Consumers()
        self._fresh()
        _process.renew_in_child(self)

    def _fresh(self) -> None:
        """Everything tied to this process's threads: at construction and after fork."""
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._accepted = _diagnostics.Tally()
        self._queue_drops = _diagnostics.Tally()
        self._cond = threading.Condition(threading.RLock())
        self._start_lock = threading.RLock()
        self._wake = threading.Event()
        self._hurry = threading.Event()  # set while a flush or close waits: no lingering
        self._dispatcher: threading.Thread | None = None
        self._pool = _pool.WriterPool(
            self._cond,
            self._shared,
            recordings=self._consumers.recordings,
            wake=self._wake_dispatcher,
        )
        self._handoff = _handoff.HandOff(
            self._cond, self._shared, consumers=self._consumers, pool=self._pool
        )
        self._wake_queued = False
        self._started = False
        self._closing = False
        self._closed = False
        self._flushes = 0

    # --- the caller's path (no locks: see rule 3) -----------------------------------------

    def offer(self, item: object) -> bool:
        """Queue one occurrence without blocking; False (counted as dropped) when full."""
        self._accepted.add()
        if self._closing:
            self._queue_drops.add()
            self._reporter.report(
                "after-close",
                logging.ERROR,
                "Unable to record an event: the recorder is shut down (will not retry)",
            )
            return False
        queued = self._queue.qsize()
        if queued >= self._shared.capacity:
            self._queue_drops.add()
            self._reporter.report(
                "queue-full",
                logging.ERROR,
                "Unable to record an event: %d are queued already (queue_length); dropped it",
                self._shared.capacity,
            )
            return False
        self._queue.put(item)
        if queued >= self._shared.capacity // 2:  # over half full with this one
            # a burst: give the dispatcher the interpreter lock once, or a caller in a tight
            # loop keeps three quarters of it and the queue overflows (docs/performance.md)
            time.sleep(0)
        if not self._started:
            self._start()
        return True

    def _start(self) -> None:
        with self._start_lock:  # reentrant: a signal handler may log while we start
            if self._started or self._closing:
                return
            self._started = True
            _process.flush_when_child_ends(self)
            thread = threading.Thread(
                target=self._dispatch,
                name=f"{self._shared.name}-dispatcher-{next(_counter)}",
                daemon=True,
            )
            self._dispatcher = thread
            loops = [loop for loop in self._consumers.loops() if loop.thread is None]
        try:
            thread.start()
            for loop in loops:
                loop.start()
        except RuntimeError:  # interpreter exit (3.12): flush() drains on its own thread
            self._pool.can_spawn = False

    # --- consumers ------------------------------------------------------------------------

    def add_recording(self, recording: _pool.Recording) -> broadcaster.Watcher:
        """Correlate and write every later occurrence to ``recording``'s sink."""
        return self._add(recording)

    def add_inline(self, handle: Callable[[models.Event], None]) -> broadcaster.Watcher:
        """Call ``handle`` with every later event, on the dispatcher (it must be quick)."""
        return self._add(_watchers.Inline(handle))

    def add_watcher(
        self,
        handle: Callable[[models.Event], None],
        on_drop: Callable[[broadcaster.WatchEvent], None],
    ) -> broadcaster.Watcher:
        """Call ``handle`` with every later event on a thread of its own."""
        loop = _watchers.WatchLoop(
            handle,
            self._shared.capacity,
            on_drop,
            self._reporter,
            f"{self._shared.name}-watcher-{next(_counter)}",
        )
        watcher = self._add(loop)
        if self._started and not watcher.stopped:
            try:
                loop.start()
            except RuntimeError:
                watcher.stop()
        return watcher

    def _add(self, consumer: _handoff.Consumer) -> broadcaster.Watcher:
        with self._cond:
            return self._consumers.add(consumer, closing=self._closing)

    def _recordings(self) -> list[_pool.Recording]:
        return self._consumers.recordings()

    # --- the dispatcher -------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Drain the queue in batches and hand the events on. Runs on the dispatcher."""
        _diagnostics.become_own_thread()
        busy = False
        while True:
            try:
                batch = self._next_batch(busy)
                if self._handle_batch(batch) or (not batch and self._pool.stopping):
                    return
                busy = self._tend()
                self._linger(len(batch))
            except Exception as error:  # rule 5: report, and go on with the next batch
                self._reporter.report(
                    "dispatcher", logging.ERROR, "Event dispatcher step failed: %r", error
                )

    def _linger(self, handled: int) -> None:
        """After a batch of a burst, let the next gather (see :data:`LINGER_SECONDS`).

        Not with a test's sleeper (a fake clock does not wait for real time).
        """
        if handled < LINGER_BATCH or self._sleep is not None:
            return
        enough = min(BATCH_SIZE, max(1, self._shared.capacity // 4))
        end = time.monotonic() + LINGER_SECONDS
        while not self._hurry.is_set() and self._queue.qsize() < enough:
            left = end - time.monotonic()
            if left <= 0:
                return
            self._hurry.wait(min(left, LINGER_STEP_SECONDS))

    def _next_batch(self, busy: bool) -> list[Any]:
        due = None if busy else self._timer_due()
        if due is not None and due > 0 and self._sleep is not None and self._queue.empty():
            self._wake.clear()
            self._sleep(due, self._wake)  # a test's sleeper moves a fake clock
            return []
        wait = 0.0 if busy else self._wait_seconds(due)
        try:
            first = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            return []
        batch = [first]
        with contextlib.suppress(queue.Empty):
            while len(batch) < BATCH_SIZE:
                batch.append(self._queue.get_nowait())
        return batch

    def _timer_due(self) -> float | None:
        """Seconds (on the clock) until the next timed write is due, if there is one."""
        with self._cond:
            dues = [d for r in self._recordings() if (d := r.writes.next_due()) is not None]
        return min(dues, default=None)

    def _wait_seconds(self, due: float | None) -> float:
        """How long the dispatcher may wait for the queue before its timers need it."""
        wait = IDLE_WAIT_SECONDS if due is None else min(due, IDLE_WAIT_SECONDS)
        return self._pool.stall_wait(wait)

    def _handle_batch(self, batch: list[Any]) -> bool:
        """Hand ``batch`` on, in order; True when a stop marker was reached."""
        run: list[Any] = []
        for item in batch:
            if not isinstance(item, Marker):
                run.append(item)
                continue
            self._deliver(run)
            run = []
            if item is WAKE:
                self._wake_queued = False
            else:
                self._reach(item)
                if item.stop:
                    return True
        self._deliver(run)
        return False

    def _reach(self, marker: Marker) -> None:
        with self._cond:
            marker.reach(self._consumers.recordings(), self._consumers.loops())

    def _deliver(self, items: list[Any]) -> None:
        if items:
            self._handoff.deliver(items)

    # --- writers --------------------------------------------------------------------------

    def _wake_dispatcher(self) -> None:
        """Have the dispatcher look at its timers and ready writes again.

        At most one wake-up waits in the queue: they must not take the room that
        occurrences need (a queue full of wake-ups would drop what the application logs).
        """
        if not self._wake_queued:
            self._wake_queued = True
            self._queue.put(WAKE)

    def _tend(self) -> bool:
        """Promote due writes and start writers for them; True when it wrote one itself."""
        self._handoff.settle_aside()
        with self._cond:
            for recording in self._recordings():
                recording.writes.promote_due()
            if not self._pool.ready():
                return False
            self._cond.notify_all()
        return self._pool.start()

    # --- flush and close ------------------------------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        """Write everything accepted before the call, held-back counts included.

        Returns True once each of those occurrences has an outcome, False when ``timeout``
        seconds passed first (None: :data:`DEFAULT_EXIT_TIMEOUT`). On one of the library's
        own threads it returns False at once: it would wait for itself. The reports its
        writes caused are written before it returns, and so is a summary of what the
        reports' rate limit held back.
        """
        if _diagnostics.is_own_thread():
            return False
        try:
            return self._flush(timeout)
        finally:
            self._reporter.settle(REPORT_GRACE_SECONDS)
            self._reporter.summarise()

    def _flush(self, timeout: float | None) -> bool:
        if (not self._started and self._queue.empty()) or self._settled():
            return True
        deadline = Deadline(DEFAULT_EXIT_TIMEOUT if timeout is None else timeout)
        marker = Marker()
        self._queue.put(marker)
        with self._cond:
            self._flushes += 1
            self._hurry.set()
            self._set_draining(True)
        try:
            if not _flush.wait_reached(marker, deadline, self._dispatcher_alive, self._pump):
                return False
            with self._cond:
                for recording in self._recordings():
                    recording.writes.release_held()
                self._cond.notify_all()  # idle writers take what was released at once
            self._wake_dispatcher()
            return _flush.wait_written(marker, deadline, self._cond, self._working, self._pump)
        finally:
            with self._cond:
                self._flushes -= 1
                if not self._flushes and not self._closing:
                    self._hurry.clear()
                if not self._flushes:
                    self._set_draining(False)

    def _settled(self) -> bool:
        """True when every occurrence accepted so far has an outcome and every watcher has
        handled what it was given: a flush has nothing to wait for, whatever its timeout."""
        with self._cond:
            if self._accepted.value - self._queue_drops.value - self._handoff.taken() > 0:
                return False
            if any(r.writes.pending() or r.aside_count for r in self._recordings()):
                return False
            loops = list(self._consumers.loops())
        return all(loop.caught_up(loop.watcher.delivered) for loop in loops)

    def _set_draining(self, on: bool) -> None:
        for recording in self._recordings():
            recording.writes.flushing = on
            drain = getattr(recording.writes.sink, "drain", None)
            if callable(drain):
                with contextlib.suppress(Exception):
                    drain(on)

    def _dispatcher_alive(self) -> bool:
        thread = self._dispatcher
        return thread is not None and thread.is_alive()

    def _working(self) -> bool:
        """True while a thread of ours may still do the work a flush waits for."""
        return self._dispatcher_alive() or self._pool.busy()

    def _pump(self, deadline: Deadline) -> None:
        """Do the dispatcher's work on the calling thread, within ``deadline``."""
        with contextlib.suppress(queue.Empty):
            while not deadline.expired():
                item = self._queue.get_nowait()
                if isinstance(item, Marker) and item.stop:
                    self._reach(item)
                    return
                self._handle_batch([item])
        self._tend()

    def close(self, timeout: float | None) -> tuple[list[_pending.Write], int]:
        """Flush within ``timeout``, stop every thread, and give up what is left.

        Idempotent. Returns, for the caller's exit report, the writes that were given up
        (counted as failed) and how many occurrences were lost without one: still queued
        (counted as dropped) or in the batch in hand when the threads stopped (failed).
        """
        with self._cond:
            if self._closing:
                return [], 0
            self._closing = True
            self._hurry.set()
        deadline = Deadline(DEFAULT_EXIT_TIMEOUT if timeout is None else timeout)
        if self._started or not self._queue.empty():
            self.flush(deadline.remaining())
        lost_before = self._lost()
        with self._cond:
            self._pool.stop()
            given_up = [w for r in self._recordings() for w in r.writes.abandon(in_flight=False)]
            consumers, loops = list(self._consumers), self._consumers.loops()
        self._queue.put(Marker(stop=True))
        # past the deadline, the threads still get a short grace to end, once for all
        grace = Deadline(max(deadline.remaining(), JOIN_GRACE_SECONDS))
        self._join(self._dispatcher, grace)
        self._count_leftovers()
        unprepared = self._handoff.give_up_aside()
        if unprepared:
            self._reporter.report(
                "exit-unprepared",
                logging.WARNING,
                "%d occurrences were not written: their sink was still being set up (its "
                "client built, the server asked which Events API it serves) at the deadline "
                "of shutdown",
                unprepared,
            )
        for consumer in consumers:
            consumer.watcher.stop()
        threads = self._pool.threads()
        threads += [loop.thread for loop in loops if loop.thread]
        for thread in threads:
            # a writer inside a request that does not answer is a daemon: not worth a grace
            self._join(thread, grace if not self._pool.in_flight() else deadline)
        with self._cond:
            given_up += [w for r in self._recordings() for w in r.writes.abandon(in_flight=True)]
            self._closed = True
        self._reporter.settle(REPORT_GRACE_SECONDS)
        lost = self._lost() - lost_before - sum(w.occurrences for w in given_up)
        return given_up, max(0, lost)

    def _lost(self) -> int:
        values = self.stats()
        return values["dropped"] + values["failed"]

    @staticmethod
    def _join(thread: threading.Thread | None, deadline: Deadline) -> None:
        if thread is None or thread is threading.current_thread():
            return
        with contextlib.suppress(RuntimeError):  # never started
            thread.join(deadline.remaining())

    def _count_leftovers(self) -> None:
        for _ in range(_flush.leftovers(self._queue)):
            self._queue_drops.add()

    # --- stats ----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Return ``accepted``, the outcomes and ``pending``.

        ``pending`` counts occurrences without an outcome yet: queued, or waiting in a
        write (once per sink): with one sink, ``accepted`` is the sum of the outcomes and
        ``pending`` whenever no thread is in the middle of handing one on.
        ``pending_events`` counts the events with a write waiting or in flight.
        """
        if self._closed:
            self._count_leftovers()  # an offer that raced with close
        values = dict.fromkeys(_diagnostics.OUTCOMES, 0)
        # all of it under the lock that every write's outcome and every hand-off takes, so
        # that no occurrence is seen both queued and written, nor neither
        with self._cond:
            accepted = self._accepted.value
            drops = self._queue_drops.value
            values.update(self._shared.counters.snapshot())
            values["accepted"] = accepted
            values["dropped"] += drops
            queued = accepted - drops - self._handoff.taken()
            recordings = self._recordings()
            values["pending"] = max(0, queued) + sum(
                r.writes.pending() + r.aside_count for r in recordings
            )
            values["pending_events"] = sum(r.writes.pending_events() for r in recordings)
        return values

    def unwritten(self) -> tuple[list[_pending.Write], int]:
        """The writes still pending, and the occurrences still queued (for a report)."""
        with self._cond:
            writes = [w for r in self._recordings() for w in r.writes.pending_writes()]
            queued = self._accepted.value - self._queue_drops.value - self._handoff.taken()
            queued += max((r.aside_count for r in self._recordings()), default=0)
        return writes, max(0, queued)

    @property
    def accepted(self) -> int:
        """Occurrences offered so far (dropped ones included)."""
        return self._accepted.value

    def threads(self) -> list[threading.Thread]:
        """The threads alive right now (dispatcher, writers, watchers)."""
        found = [self._dispatcher, *self._pool.threads()]
        found += [loop.thread for loop in self._consumers.loops()]
        return [t for t in found if t is not None and t.is_alive()]

    # --- processes ------------------------------------------------------------------------

    def flush_at_child_exit(self) -> None:
        """Write what was accepted: a ``multiprocessing`` child's target has returned."""
        if self._started and not self._closing:
            self.flush(self.exit_timeout)

    def _after_fork_in_child(self) -> None:
        """Start afresh: the parent's threads do not exist here and its writes are its own.

        Called by ``_process`` in a child after ``os.fork()``. What the parent had queued,
        pending or in flight stays the parent's (never written twice); the consumers stay,
        with nothing queued, and their threads start again with the child's first event.
        """
        closing = self._closing
        self._fresh()
        self._closing = self._closed = closing
        self._pool.stopping = closing
        for consumer in self._consumers:
            consumer.watcher._renew_after_fork()
            if isinstance(consumer, _pool.Recording | _watchers.WatchLoop):
                consumer.renew()
