"""The runtime: every background thread of one EventBroadcaster, and its whole lifecycle.

The middle of the pipeline (docs/architecture.md): the recorder offers occurrences to one
queue on the caller's thread; one dispatcher drains it in batches and hands them on; writer
threads (bounded, alive only while there is work) make the requests. Nothing else in the
pipeline starts a thread (the handler's close under dictConfig's lock excepted: rule 4). The
thread rules, cited by number (in full: docs/architecture.md):

1. No wait without a timeout.
2. Never wait holding a lock another of our threads needs (nor across a request or a join).
3. :meth:`Runtime.offer` takes no lock but the reentrant one that starts the threads.
4. A background thread never waits for a lock logging may hold (``_diagnostics.log_safely``).
5. An exception in a background step costs only its own occurrences (``failed``), never a thread.
6. The library's threads are recognised by identity (a thread-local mark), never by name.
7. They block the termination signals, but while a subprocess may start.
8. Timestamps from ``now()``; durations on a monotonic clock (real waits: time's), never the wall.
9. After ``os.fork()``, all a parent's thread may have held is renewed first (``_process``).
10. No I/O on the dispatcher (but at 3.12's exit): a writer sets up a sink that requests.
11. One thread hands occurrences on at a time, in order: the dispatcher, or a flush holding
    the baton; a flush on a thread holding it (a signal's) returns False.

Lifecycle (docs/concepts.md): the dispatcher starts with the first occurrence; flush and
close share one deadline; at exit every runtime drains at once; a forked child starts afresh;
a ``multiprocessing`` child flushes when its target returns; where no thread can start (3.12
at exit) the flushing thread works.
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
    _errors,
    _flush,
    _handoff,
    _pending,
    _pool,
    _process,
    _watchers,
    broadcaster,
    models,
)
from k8s_logging_events import clock as clock_mod
from k8s_logging_events._flush import WAKE, Deadline, Marker

DEFAULT_EXIT_TIMEOUT = 5.0
"""Seconds a ``multiprocessing`` child's exit may spend writing what it logged."""

BATCH_SIZE = 4096
"""Occurrences the dispatcher takes at once. Large: the more repeats of one object are
correlated at once (a deep queue drains faster per occurrence)."""

LINGER_BATCH = 64
"""A batch at least this long means a burst: the dispatcher then lets the next one gather."""

LINGER_SECONDS = 0.05
"""The longest a burst's next batch gathers (a third fewer instructions each), so an event's
delay at most; a full batch, a quarter of the queue, or a waiting flush or close ends it."""

LINGER_STEP_SECONDS = 0.005
"""How often a lingering dispatcher looks at the queue's length, and whether a flush waits."""

IDLE_WAIT_SECONDS = 5.0
"""The longest the dispatcher waits for the queue before it looks at its timers again."""

JOIN_GRACE_SECONDS = 0.25
"""What close() gives its threads to end after the deadline has passed."""

REPORT_GRACE_SECONDS = 0.25
"""What flush() and close() give a report another thread is writing to be out."""

_counter = itertools.count()
_Closed = tuple[list[_pending.Write], int, BaseException | None]  # what close() gave up


class Runtime:
    """The queue, the dispatcher and the writers of one EventBroadcaster.

    ``capacity``, ``writers`` and ``sleep`` are the broadcaster's ``queue_length``, ``writers``
    and ``sleep`` (None: wait for a timer on the queue); ``namer`` names each Event;
    ``counters`` (the recorder's too) count the outcomes; ``reporter`` reports drops, failures
    and the exit summary; ``name`` prefixes threads'."""

    def __init__(
        self,
        capacity: int,
        writers: int,
        sleep: clock_mod.Sleeper | None,
        *,
        namer: models.Namer,
        counters: _diagnostics.Counters,
        reporter: _diagnostics.RateLimitedReporter,
        name: str = "k8s-events",
    ) -> None:
        self._shared = _pool.Shared(
            capacity=capacity,
            writers=writers,
            namer=namer,
            counters=counters,
            reporter=reporter,
            name=name,
        )
        self._reporter = reporter
        self._sleep = sleep
        self.exit_timeout, self.about = DEFAULT_EXIT_TIMEOUT, ""  # about: whose, in reports
        self._consumers = _handoff.Consumers()
        self._fresh()
        _process.renew_in_child(self)

    def _fresh(self) -> None:
        # everything tied to this process's threads: at construction and after fork
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._accepted, self._queue_drops = _diagnostics.Tally(), _diagnostics.Tally()
        self._cond = threading.Condition(threading.RLock())
        self._start_lock = threading.RLock()
        self._baton = threading.RLock()  # rule 11 (reentrant: to know its holder)
        self._wake = threading.Event()
        self._close_deadline = Deadline(float("inf"))  # cut() ends it, a close sets it
        self._began: tuple[float | None, int] = (None, 0)  # the exit's start, accepted by then
        self._hurry = False  # a flush or close waits: no lingering (an Event's lock: no reentry)
        self._dispatcher: threading.Thread | None = None
        self._dispatcher_ended = False
        self._starting: tuple[threading.Thread, int] | None = None  # and by whom
        self._pool = _pool.WriterPool(
            self._cond,
            self._shared,
            recordings=self._consumers.recordings,
            wake=self._wake_dispatcher,
        )
        self._handoff = _handoff.HandOff(
            self._cond, self._shared, consumers=self._consumers, pool=self._pool
        )
        self._wake_queued = self._started = self._closing = self._closed = False
        self._closer: int | None = None  # the thread that closes
        self._flushes = 0

    def offer(self, item: object) -> bool:
        """Queue one occurrence without blocking; False (counted as dropped) when full."""
        # accepted in one step with its queueing or drop (a Ctrl-C between: no outcome ever)
        queued = self._queue.qsize()
        if self._closing or queued >= self._shared.capacity:
            _diagnostics.at_once((self._accepted.add,), (self._queue_drops.add,))
            if self._closing:
                self._reporter.report(
                    "after-close",
                    logging.ERROR,
                    "Unable to record an event: its broadcaster was shut down (will not retry)",
                    occurrences=1,
                    outcome="dropped",
                )
            else:
                self._reporter.report(
                    "queue-full",
                    logging.ERROR,
                    "Unable to record an event: %d are queued already (queue_length)",
                    self._shared.capacity,
                    occurrences=1,
                    outcome="dropped",
                )
            return False
        _diagnostics.at_once((self._accepted.add,), (self._queue.put, item))
        if queued >= self._shared.capacity // 2:  # over half full with this one
            # a burst: yield the interpreter lock once, or a tight loop overflows the queue
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
            name = f"{self._shared.name}-dispatcher-{next(_counter)}"
            thread = threading.Thread(target=self._dispatch, name=name, daemon=True)
            self._dispatcher = thread
            self._starting = (thread, threading.get_ident())
            loops = [loop for loop in self._consumers.loops() if loop.thread is None]
        try:
            thread.start()
            for loop in loops:
                loop.start()
        except BaseException as error:
            # 3.12 refuses threads at exit: flush() then drains on its own thread; else no thread
            # to be had (a pids limit) is said, and the next occurrence tries again
            exiting = _process.refused_at_exit(error)
            with self._start_lock:
                never_began = thread.ident is None  # and now never will (_dispatch)
                if never_began:
                    self._dispatcher = None
                    self._started = exiting
            if not isinstance(error, RuntimeError):
                raise
            if exiting:
                self._pool.can_spawn, self._pool.refused = False, True
            elif never_began:
                self._reporter.report(
                    "dispatcher-start",
                    logging.ERROR,
                    "Unable to start the event dispatcher thread (%s): occurrences wait in "
                    "the queue until a later one starts it, or a flush writes them",
                    error,
                )
        finally:
            self._starting = None

    def add_recording(self, recording: _pool.Recording) -> broadcaster.Watcher:
        """Correlate and write every later occurrence to ``recording``'s sink."""
        with self._cond:
            return self._consumers.add(recording, closing=self._closing)

    def add_watcher(
        self,
        handle: Callable[[models.Event], None],
        on_drop: Callable[[broadcaster.WatchEvent], None],
    ) -> broadcaster.Watcher:
        """Call ``handle`` with every later event on a thread of its own."""
        name = f"{self._shared.name}-watcher-{next(_counter)}"
        loop = _watchers.WatchLoop(handle, self._shared.capacity, on_drop, self._reporter, name)
        with self._start_lock:  # the first log call starts the loops it finds: once each
            with self._cond:
                watcher = self._consumers.add(loop, closing=self._closing)
            start = self._started and not watcher.stopped
        if start:
            loop.start()
        return watcher

    def _dispatch(self) -> None:
        _diagnostics.become_own_thread()
        with self._start_lock:  # a start interrupted before this thread began gave it up
            if self._dispatcher is not threading.current_thread():
                return
        while not self._baton.acquire(timeout=IDLE_WAIT_SECONDS):
            continue  # a flush handing on lets go at its next occurrence (rule 11)
        self._baton.release()  # and none takes it up while this thread lives
        busy = False
        try:
            while True:
                try:
                    batch = self._next_batch(busy)
                    if self._handle_batch(batch) or (not batch and self._pool.stopping):
                        return
                    self._handoff.settle_aside()
                    busy = self._tend()
                    self._linger(len(batch))
                except _diagnostics.step_errors() as error:  # rule 5: report, go on
                    self._reporter.report(
                        "dispatcher", logging.ERROR, "Event dispatcher step failed: %r", error
                    )
        finally:  # from now on, a flush does the work on its own thread
            self._dispatcher_ended = True

    def _linger(self, handled: int) -> None:
        # not with a test's sleeper: a fake clock does not wait for real time
        if handled < LINGER_BATCH or self._sleep is not None:
            return
        enough = min(BATCH_SIZE, max(1, self._shared.capacity // 4))
        end = time.monotonic() + LINGER_SECONDS
        while not self._hurry and self._queue.qsize() < enough:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, LINGER_STEP_SECONDS))

    def _next_batch(self, busy: bool) -> list[Any]:
        due = None if busy else self._timer_due()
        if due is not None and due > 0 and self._sleep is not None and self._queue.empty():
            self._sleep(due, self._wake)  # a fake clock moves by retries' back-offs, not holds
            self._wake.clear()  # after: each wake follows an item, which the next look finds
            return []
        wait = 0.0
        if not busy:  # wait for the queue until the timers need the dispatcher
            wait = self._pool.stall_wait(
                IDLE_WAIT_SECONDS if due is None else min(due, IDLE_WAIT_SECONDS)
            )
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
        with self._cond:  # a test's sleeper: the next retry's, never a held count's
            recordings = self._consumers.recordings()
            dues = [r.writes.next_due(held=self._sleep is None) for r in recordings]
        return min((due for due in dues if due is not None), default=None)

    def _handle_batch(self, batch: list[Any]) -> bool:
        """Hand ``batch`` on, in order; True when a stop marker was reached."""
        run: list[Any] = []
        for item in batch:
            if not isinstance(item, Marker):
                run.append(item)
                continue
            if run:
                self._handoff.deliver(run)
            run = []
            if item is WAKE:
                self._wake_queued = False
            else:
                self._reach(item)
                if item.stop:
                    return True
        if run:
            self._handoff.deliver(run)
        return False

    def _reach(self, marker: Marker) -> None:
        with self._cond:
            marker.reach(self._consumers.recordings(), self._consumers.loops())
        marker.reached.set()  # out of the lock (see Marker.reach)

    def _wake_dispatcher(self) -> None:
        # at most one wake-up in the queue: they must not take the occurrences' room
        if not self._wake_queued:
            self._wake_queued = True
            self._queue.put(WAKE)
        if self._sleep is not None:  # and cut a test's sleeper (a lock: not on emit's path)
            self._wake.set()

    def _tend(self, *, here: bool = False) -> bool:
        """Promote due writes, start writers and refused watchers; True when it wrote one here."""
        for loop in self._consumers.loops():
            if loop.refused:
                loop.start()
        with self._cond:
            for recording in self._consumers.recordings():
                recording.writes.promote_due()
            if not self._pool.ready():
                return False
            self._cond.notify_all()
        return self._pool.start(here=here)

    def flush(self, timeout: float | Deadline | None) -> bool:
        """Write everything accepted before the call, held-back counts included: True once
        each has an outcome, False when ``timeout`` (seconds, None: 5, or a close's Deadline)
        passed first, or at once where it would wait for itself (a library thread; one in our
        lock or handing on: a signal handler's inside stats() or a flush); its writes' reports
        are out before it returns."""
        locks = (self._cond, self._baton)
        if _diagnostics.is_own_thread() or any(getattr(x, "_is_owned", bool)() for x in locks):
            return False
        try:
            if (not self._started and self._queue.empty()) or self._settled():
                return True
            # waits for a log call still making the dispatcher (draining beside it would hand
            # occurrences on out of order); none made (closing, at exit): this thread drains
            self._start()
            seconds = DEFAULT_EXIT_TIMEOUT if timeout is None else timeout
            _process.exit_begins()  # a wait at exit may come before our atexit function
            since = self._since()  # the exit's start, unless an atexit function logged since
            deadline = seconds if isinstance(seconds, Deadline) else Deadline(seconds, since)
            marker = Marker()
            self._queue.put(marker)
            self._wake_dispatcher()  # from a test's sleeper: a retry's back-off waits aside
            with self._cond:
                self._flushes += 1
                self._hurry = True
                _flush.set_draining(recordings := self._consumers.recordings(), on=True)
                _flush.drain_by(recordings, deadline, on=True)
            try:
                if not _flush.wait_reached(marker, deadline, self._dispatcher_alive, self._pump):
                    return False
                with self._cond:
                    for recording in self._consumers.recordings():
                        recording.writes.release_held()
                    self._cond.notify_all()  # idle writers take what was released at once
                self._wake_dispatcher()
                return _flush.wait_written(
                    marker, deadline, self._cond, self._working, self._pump, self._pool.flushes
                )
            finally:
                with self._cond:
                    self._flushes -= 1
                    _flush.drain_by(self._consumers.recordings(), deadline, on=False)
                    if not self._flushes:
                        self._hurry = self._closing  # a close keeps it till the end
                        _flush.set_draining(self._consumers.recordings(), on=False)
        finally:
            self._reporter.settle(REPORT_GRACE_SECONDS)
            self._reporter.summarise()

    def _settled(self) -> bool:
        """Every occurrence has an outcome, every watcher is caught up: nothing to wait for."""
        with self._cond:
            recordings = self._consumers.recordings()
            if self._queued() > 0 or any(r.writes.pending() or r.aside_count for r in recordings):
                return False
            loops = self._consumers.loops()
        return all(loop.caught_up(loop.watcher.delivered) for loop in loops)

    def _queued(self) -> int:  # under the lock of every hand-off
        return self._accepted.value - self._queue_drops.value - self._handoff.taken()

    def _dispatcher_alive(self) -> bool:
        thread, starting = self._dispatcher, self._starting
        if thread is None or self._dispatcher_ended:
            return False
        # from its making (is_alive() is False while it boots): a flush draining beside it
        # would over-count a held event. Not for a signal handler on the thread starting it
        if starting is not None and starting[0] is thread:
            return starting[1] != threading.get_ident() or thread.is_alive()
        return True

    def _working(self) -> bool:
        return self._pool.busy() or (self._dispatcher_alive() and not self._pool.refused)

    def _pump(self, deadline: Deadline) -> bool:
        with _process.requests_end_by(deadline.end):  # a request here keeps the deadline too
            if self._dispatcher_alive():  # it hands on; no writer can start: this thread writes
                return self._pool.start(here=True)
            if not self._baton.acquire(timeout=min(deadline.remaining(), _flush.POLL_SECONDS)):
                return True  # another flush hands on (rule 11): it reaches our marker too
            try:
                with contextlib.suppress(queue.Empty):
                    while not deadline.expired() and not self._dispatcher_alive():
                        item = self._queue.get_nowait()
                        if isinstance(item, Marker) and item.stop:
                            self._reach(item)
                            return True
                        self._handle_batch([item])
                if not self._dispatcher_alive():
                    self._handoff.settle_aside()
            finally:
                self._baton.release()
            for loop in self._consumers.loops():
                loop.run_here()
            return self._tend(here=True)  # out of the baton: it may request

    def close(self, timeout: float | None) -> _Closed:
        """Flush within ``timeout``, stop every thread, and give up what is left; idempotent.
        Returns, for the exit report, the writes given up (failed), how many occurrences were
        lost without one (still queued, or in the batch in hand when the threads stopped:
        dropped, never tried), and the Ctrl-C or SystemExit that cut the wait short."""
        seconds = DEFAULT_EXIT_TIMEOUT if timeout is None else timeout
        with self._cond:
            if self._closing:
                if self._closer != threading.get_ident() and not _diagnostics.is_own_thread():
                    # another thread closes (not one this signal interrupted): its counters final
                    bound = seconds + JOIN_GRACE_SECONDS + REPORT_GRACE_SECONDS
                    self._cond.wait_for(lambda: self._closed, bound)
                return [], 0, None
            self._closing = self._hurry = True
            self._closer = threading.get_ident()
        # from the exit's start too: the closes of loguru's atexit function shared no deadline
        deadline = self._close_deadline.within(seconds, self._since())
        interrupted: BaseException | None = None
        if self._started or not self._queue.empty():
            try:
                self.flush(deadline)
            except (KeyboardInterrupt, SystemExit) as error:  # told to stop: never half closed
                interrupted, deadline = error, Deadline(0)
        lost_before, given_up, aside = self._lost(), list[_pending.Write](), list[int]()
        while not self._closed:
            try:
                self._stop(deadline, given_up, aside)
            except (KeyboardInterrupt, SystemExit) as error:  # again (a second Ctrl-C): at once
                interrupted, deadline = interrupted or error, Deadline(0)
        self._reporter.settle(REPORT_GRACE_SECONDS)
        # those set aside for a sink still being set up were told there: once is enough
        lost = self._lost() - lost_before - sum(w.occurrences for w in given_up) - sum(aside)
        return given_up, max(0, lost), interrupted

    def _since(self) -> float | None:
        """When the exit's drain began, unless something was recorded since (all its time)."""
        began, accepted = self._began
        return began if accepted == self._accepted.value else None

    def cut(self) -> None:
        """Ctrl-C for a close on another thread (signals reach only the main one): at once."""
        self._close_deadline.end = 0.0

    def _stop(self, deadline: Deadline, given_up: list[_pending.Write], aside: list[int]) -> None:
        # stop every thread, give up what is left (into given_up; set aside unprepared: aside)
        with self._cond:
            self._pool.stop()
            recordings = self._consumers.recordings()
            given_up += [w for r in recordings for w in r.writes.abandon(in_flight=False)]
            consumers, loops = list(self._consumers), self._consumers.loops()
        self._queue.put(Marker(stop=True))
        self._wake_dispatcher()  # from a test's sleeper
        # past the deadline, the threads still get a short grace to end, once for all
        grace = Deadline(max(deadline.remaining(), JOIN_GRACE_SECONDS))
        _flush.join(self._dispatcher, grace)
        self._queue_drops.add_many(_flush.leftovers(self._queue))
        aside.append(self._handoff.give_up_aside(self.about))
        for consumer in consumers:
            consumer.watcher.stop()
        for thread in [*self._pool.threads(), *(loop.thread for loop in loops)]:
            # a writer in a request too: most answer within it (a hung one costs it once)
            _flush.join(thread, grace)
        with self._cond:
            given_up += [w for r in recordings for w in r.writes.abandon(in_flight=True)]
            self._closed = True
            self._cond.notify_all()  # a second close waits for this one

    def _lost(self) -> int:
        values = self.stats()
        return values["dropped"] + values["failed"]

    def stats(self) -> dict[str, int]:
        """``accepted``, the outcomes, ``pending`` (occurrences without an outcome yet, queued
        or in a write, once per sink; with one sink, ``accepted`` is the sum of the outcomes and
        ``pending`` whenever no thread hands one on) and ``pending_events`` (events with a
        write waiting or in flight)."""
        if self._closed:
            self._queue_drops.add_many(_flush.leftovers(self._queue))  # an offer raced close
        # under the lock of every outcome and hand-off: none seen both queued and written
        with self._cond:
            accepted, drops = self._accepted.value, self._queue_drops.value
            values = self._shared.counters.snapshot()  # every outcome, zero or more
            values["accepted"] = accepted
            values["dropped"] += drops
            recordings = self._consumers.recordings()
            values["pending"] = max(0, accepted - drops - self._handoff.taken()) + sum(
                r.writes.pending() + r.aside_count for r in recordings
            )
            values["pending_events"] = sum(r.writes.pending_events() for r in recordings)
        return values

    def unwritten(self) -> tuple[list[_pending.Write], int, int]:
        """The writes pending, the occurrences queued, and those aside (for a report)."""
        with self._cond:
            recordings = self._consumers.recordings()
            writes = [w for r in recordings for w in r.writes.pending_writes()]
            aside = max((r.aside_count for r in recordings), default=0)
            return writes, max(0, self._queued()), aside

    @property
    def accepted(self) -> int:
        """Occurrences offered so far (dropped ones included)."""
        return self._accepted.value

    def sinks(self) -> list[object]:
        """The sinks recorded to (those stopped with writes left too), for reports."""
        with self._cond:
            return [recording.writes.sink for recording in self._consumers.recordings()]

    def threads(self) -> list[threading.Thread]:
        """The threads alive right now (dispatcher, writers, watchers)."""
        loops = self._consumers.loops()
        found = [self._dispatcher, *self._pool.threads(), *(loop.thread for loop in loops)]
        return [t for t in found if t is not None and t.is_alive()]

    def flush_at_child_exit(self) -> None:
        """Write what was accepted: a ``multiprocessing`` child's target has returned."""
        if self._started and not self._closing and not self.flush(self.exit_timeout):
            # the child ends (os._exit; spawn: no second wait): give up once, say what close()
            # gave up (not a look before it: the threads went on)
            given_up, lost, _ = self.close(0)
            if given_up or lost:
                when = self.about + "before the multiprocessing child ended"
                summary = _errors.unwritten_summary(given_up, self.sinks(), when=when, queued=lost)
                self._reporter.report("exit", logging.WARNING, "%s", summary)
            self._reporter.settle(REPORT_GRACE_SECONDS)

    def drain_at_exit(self, began: float) -> None:
        """The interpreter exits (since ``began``): drain now, held-back counts too, as every
        runtime does, and end each flush by ``began`` plus its timeout (but for what was recorded
        since). logging.shutdown() waits for one handler after another: the exit takes the
        longest timeout, not their sum."""
        with self._cond:
            if not self._started or self._closing:
                return
            self._began = began, self._accepted.value
            self._flushes += 1  # for good: no flush's end turns the drain off
            self._hurry = True
            recordings = self._consumers.recordings()
            _flush.set_draining(recordings, on=True)
            for recording in recordings:
                recording.writes.release_held()
            self._cond.notify_all()
        self._wake_dispatcher()

    def _after_fork_in_child(self) -> None:
        """After ``os.fork()``: what the parent queued or had pending stays the parent's
        (never written twice); the consumers stay, their threads start with the first event."""
        closing = self._closing
        self._fresh()
        self._closing = self._closed = self._pool.stopping = closing
        for consumer in self._consumers:
            consumer.watcher._renew_after_fork()
            if isinstance(consumer, _pool.Recording | _watchers.WatchLoop):
                consumer.renew()
