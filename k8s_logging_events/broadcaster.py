"""Fan-out of watch-events from producers to any number of watchers.

A port of apimachinery's ``watch.Broadcaster`` (``pkg/watch/mux.go``) that knows nothing of
Kubernetes, for users who watch events themselves. Not on the pipeline's path: the runtime
takes only :class:`Watcher` and :class:`WatchEvent` from here (an ``EventBroadcaster``'s
watchers, each ``start_*``'s handle). One distributing thread copies every item, in order,
into each watcher's bounded queue; control operations (watch, stop, shutdown) travel with
the items: a watcher sees every item queued after it was added and none before. Unlike Go:
a queue length of 0 means 1; DROP counts and reports what it skips; the thread starts on
first use and shutdown joins it within a deadline (past it, every watcher ends and what is
left is said); a call that would make the distributing thread wait for itself raises
:class:`RuntimeError`.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Self

from k8s_logging_events import _diagnostics, _process

__all__ = [
    "ADDED",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DELETED",
    "ERROR",
    "MODIFIED",
    "Broadcaster",
    "BroadcasterStopped",
    "FullChannelBehavior",
    "WatchEvent",
    "Watcher",
]

ADDED: Final = "ADDED"
"""Watch-event type: an object was added."""

MODIFIED: Final = "MODIFIED"
"""Watch-event type: an object was modified."""

DELETED: Final = "DELETED"
"""Watch-event type: an object was deleted."""

ERROR: Final = "ERROR"
"""Watch-event type: an error occurred; the object describes it."""

DEFAULT_SHUTDOWN_TIMEOUT = 5.0
"""Seconds :meth:`Broadcaster.shutdown` waits, given no timeout, for what is queued to be
handed out (a WAIT watcher nobody reads, or an ``on_drop`` that does not return, would hold
it forever)."""

_SHUTDOWN_GRACE_SECONDS = 0.25
"""The distributing thread's time to end past shutdown's deadline, and once watchers ended."""

_STOP_WAIT_SECONDS = 1.0
"""The longest :meth:`Watcher.stop` waits to take its watcher off the distributing thread."""

# mux.go's incomingQueueLength: a small buffer absorbs a burst faster than the fan-out
_INCOMING_QUEUE_LENGTH: Final = 25


class FullChannelBehavior(enum.Enum):
    """What the distributing thread does with an item for a watcher whose queue is full."""

    WAIT = 0
    """Wait for room or a stop: nothing is lost, but one slow watcher holds up every other
    and, once the incoming queue fills, every producer."""

    DROP = 1
    """Skip that watcher for that item, count it in :attr:`Watcher.dropped` and call its
    ``on_drop``; the other watchers still get it."""


class BroadcasterStopped(RuntimeError):  # noqa: N818 - the name the API promises
    """Raised by :class:`Broadcaster` operations after :meth:`Broadcaster.shutdown`."""


_RECHECK_SECONDS = 0.05
"""How often action_or_drop(), waiting for the lock, looks again whether there is room."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One item a :class:`Broadcaster` delivers: an action type and the object it concerns."""

    type: str
    """:data:`ADDED`, :data:`MODIFIED`, :data:`DELETED`, :data:`ERROR`, or any string."""

    object: Any
    """The payload. Every watcher gets the same object, so treat it as read-only."""


_DropFunc = Callable[[WatchEvent], None]


class EndsOnExit:
    """A context manager whose ``__exit__`` calls :meth:`_on_exit`."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._on_exit()

    def _on_exit(self) -> None:
        raise NotImplementedError


class Watcher(EndsOnExit):
    """Knows how to hand one consumer the items of a :class:`Broadcaster`, in order. Made by
    :meth:`Broadcaster.watch`; read by iterating or :meth:`get`, until it is stopped (or the
    broadcaster shut down) and its queue read. A context manager that stops it."""

    __slots__ = (
        "_broadcaster",
        "_capacity",
        "_cond",
        "_delivered",
        "_dropped",
        "_ended",
        "_items",
        "_on_drop",
    )

    def __init__(
        self,
        broadcaster: Broadcaster | None,
        capacity: int,
        on_drop: _DropFunc | None,
        prefix: Iterable[WatchEvent] = (),
    ) -> None:
        self._broadcaster = broadcaster
        self._capacity = capacity
        self._on_drop = on_drop
        self._items: deque[WatchEvent] = deque(prefix)
        self._delivered = len(self._items)
        self._dropped = 0
        self._ended = False  # nothing more will be added: stop() or the broadcaster's shutdown
        self._cond = threading.Condition()  # readers wait for items, distributing for room

    @classmethod
    def detached(cls) -> Watcher:
        """A watcher that is only a handle (no broadcaster, no items) for a consumer the
        dispatcher feeds itself, which asks :attr:`stopped`."""
        return cls(None, 1, None)

    def __iter__(self) -> Iterator[WatchEvent]:
        """Yield items in order until the stream ends."""
        while (event := self.get()) is not None:
            yield event

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """Return the next item, waiting up to ``timeout`` seconds (forever if None); None when
        the stream has ended or the timeout passed. ``get(0)`` never waits."""
        batch = self.get_batch(1, timeout)
        return batch[0] if batch else None

    def get_batch(self, max_items: int = 256, timeout: float | None = None) -> list[WatchEvent]:
        """Return up to ``max_items`` queued items at once, waiting up to ``timeout`` for one;
        empty when the stream has ended or the timeout passed."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items) or self._ended, timeout)
            count = min(max_items, len(self._items))
            batch = [self._items.popleft() for _ in range(count)]
            if batch:
                self._cond.notify_all()
            return batch

    def stop(self) -> None:
        """Stop receiving items (queued ones stay readable); idempotent. Safe from ``on_drop``
        and while the distributing thread is blocked delivering to this watcher (or held by
        another: it then waits a second at most)."""
        if self._end() and self._broadcaster is not None:
            self._broadcaster._forget(self)

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called or the broadcaster shut down."""
        return self._ended

    @property
    def delivered(self) -> int:
        """How many items were put in this watcher's queue so far (prefix included)."""
        with self._cond:
            return self._delivered

    @property
    def dropped(self) -> int:
        """How many items were skipped for this watcher because its queue was full (DROP)."""
        return self._dropped

    def pending(self) -> int:
        """Return how many items are waiting in this watcher's queue."""
        with self._cond:
            return len(self._items)

    def _on_exit(self) -> None:
        self.stop()

    def _put_waiting(self, event: WatchEvent) -> None:
        # WAIT: give up if the watcher ends meanwhile
        with self._cond:
            self._cond.wait_for(lambda: len(self._items) < self._capacity or self._ended)
            if not self._ended:
                self._items.append(event)
                self._delivered += 1
                self._cond.notify_all()

    def _put_or_drop(self, events: list[WatchEvent]) -> None:
        # DROP: queue what fits, count the rest and hand it to on_drop
        self._hand_to_on_drop(self._queue_or_count(events))

    def _queue_or_count(self, events: list[WatchEvent]) -> list[WatchEvent]:
        # DROP: queue what fits; what does not is counted, and returned
        with self._cond:
            if self._ended:
                return []
            room = max(0, self._capacity - len(self._items))
            fitting, dropped = events[:room], events[room:]
            if fitting:
                self._items.extend(fitting)
                self._delivered += len(fitting)
                self._cond.notify_all()
            self._dropped += len(dropped)
        return dropped

    def _hand_to_on_drop(self, dropped: list[WatchEvent]) -> None:
        if dropped and self._on_drop is not None:
            for event in dropped:
                # a faulty callback must not kill the thread every watcher needs
                with contextlib.suppress(Exception):
                    self._on_drop(event)

    def _end(self) -> bool:
        # True when this call ended the stream
        with self._cond:
            ended, self._ended = self._ended, True
            self._cond.notify_all()  # readers, and a distributing thread waiting for room
        return not ended

    def _renew_after_fork(self) -> None:
        # a thread of the parent may have held the lock; what was queued is the parent's
        self._cond = threading.Condition()
        self._items.clear()
        self._delivered = self._dropped = 0


class _Marker(NamedTuple):  # a control operation, run by the distributing thread in its turn
    run: Callable[[], None]
    done: threading.Event


class Broadcaster(EndsOnExit):
    """Knows how to deliver every item to every watcher, in the order the items came in.

    ``queue_length`` is each watcher's (0 means 1; a negative one raises :class:`ValueError`);
    ``full_channel_behavior`` applies when one is full; ``name`` names the distributing thread.
    Items wait for that thread in an incoming queue of 25, and it holds one more, as in Go.
    On that thread (``on_drop``) only :meth:`Watcher.stop` is allowed; other calls raise
    :class:`RuntimeError`. A context manager that shuts it down on exit.
    """

    def __init__(
        self,
        queue_length: int = 25,
        full_channel_behavior: FullChannelBehavior = FullChannelBehavior.WAIT,
        *,
        name: str = "k8s-events-broadcaster",
    ) -> None:
        if queue_length < 0:
            raise ValueError(f"queue_length must be >= 0, not {queue_length}")
        self._watch_capacity = max(queue_length, 1)
        self._behavior = FullChannelBehavior(full_channel_behavior)
        self._name = name
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._incoming: deque[WatchEvent | _Marker] = deque()  # the incoming queue
        # only the distributing thread touches it; a dict keeps the order of delivery among
        # watchers predictable (Go leaves it unspecified)
        self._watchers: dict[Watcher, None] = {}
        self._abandoned = False  # a shutdown gave up waiting for the thread
        self._after_fork_in_child()  # the locks, made where a child after fork makes them
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        # the distributing thread (which may have held the locks) and what was queued are the
        # parent's; the child's own thread starts at the next use.
        # Go's incomingBlock: serialises producers and control operations, held until a
        # control operation has run, so that nothing overtakes it
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()  # both conditions', as in queue.Queue
        self._not_empty = threading.Condition(self._queue_lock)
        self._not_full = threading.Condition(self._queue_lock)
        self._incoming.clear()
        self._held: WatchEvent | _Marker | None = None  # taken from it, not yet handed out
        # control operations whose callers wait (under the queue lock), let go by a shutdown
        # that gives up
        self._waiting: set[_Marker] = set()
        if not self._stopped:
            self._thread = None
        for watcher in self._watchers:
            watcher._renew_after_fork()

    @property
    def stopped(self) -> bool:
        """True once :meth:`shutdown` has been called."""
        return self._stopped

    def watch(self, *, on_drop: _DropFunc | None = None) -> Watcher:
        """Add a watcher that gets every item queued after this call returns, and none before.
        ``on_drop`` gets each item DROP skips for it, on the distributing thread (keep it cheap;
        its exceptions are ignored). Raises :class:`BroadcasterStopped` after :meth:`shutdown`."""
        # this class's, not a subclass's override: watch() stays Go's Watch, with no prefix
        return Broadcaster.watch_with_prefix(self, (), on_drop=on_drop)

    def watch_with_prefix(
        self, events: Iterable[WatchEvent], *, on_drop: _DropFunc | None = None
    ) -> Watcher:
        """Like :meth:`watch`, but ``events`` come first in the new watcher's queue (made long
        enough for them and one more). Raises :class:`BroadcasterStopped` after :meth:`shutdown`.
        """
        self._refuse_on_loop_thread("watch")
        prefix = list(events)
        watcher = Watcher(self, max(self._watch_capacity, len(prefix) + 1), on_drop, prefix)
        with self._lock:
            self._start_unless_stopped()
            if not self._run_on_loop(lambda: self._watchers.setdefault(watcher)):
                raise BroadcasterStopped("broadcaster already stopped")  # a shutdown gave up
        return watcher

    def action(self, type: str, obj: Any) -> None:
        """Queue ``WatchEvent(type, obj)`` for every watcher, waiting while the queue is full;
        :class:`BroadcasterStopped` after :meth:`shutdown`."""
        self._refuse_on_loop_thread("action")
        with self._lock:
            self._start_unless_stopped()
            if not self._put(WatchEvent(type, obj), block=True):  # a shutdown gave up
                raise BroadcasterStopped("broadcaster already stopped")

    def action_or_drop(self, type: str, obj: Any) -> bool:
        """Queue ``WatchEvent(type, obj)`` if there is room, else return False at once (it waits
        only for a control operation); :class:`BroadcasterStopped` after :meth:`shutdown`."""
        self._refuse_on_loop_thread("action_or_drop")
        locked = self._lock.acquire(blocking=False)
        while not locked:
            # held by a control operation (worth the wait), or by action() while the queue is
            # full: then False at once (looked at each time: the room may go to another)
            with self._not_full:
                if not self._stopped and not self._incoming_has_room():
                    return False
            locked = self._lock.acquire(timeout=_RECHECK_SECONDS)
        try:
            self._start_unless_stopped()
            return self._put(WatchEvent(type, obj), block=False)
        finally:
            self._lock.release()

    def shutdown(self, timeout: float | None = None) -> None:
        """Deliver what is queued, end every watcher, and join the distributing thread, within
        ``timeout`` seconds (None: :data:`DEFAULT_SHUTDOWN_TIMEOUT`); idempotent.

        Go's waits as long as a full WAIT watcher nobody reads, or an ``on_drop`` that does
        not return, holds the thread. Past the deadline every watcher ends (what it holds
        stays readable), what is queued is never handed out, producers waiting for room get
        :class:`BroadcasterStopped`, and a report on the ``k8s_logging_events`` logger says
        how many items were left, and whether the thread (a daemon) is still busy.
        """
        self._refuse_on_loop_thread("shutdown")
        seconds = DEFAULT_SHUTDOWN_TIMEOUT if timeout is None else timeout
        seconds = min(max(0.0, seconds), threading.TIMEOUT_MAX)
        until = time.monotonic() + seconds
        if self._lock.acquire(timeout=seconds):  # a producer waiting for room holds it
            try:
                if not self._stopped:
                    if self._thread is None:  # never used: nothing to deliver
                        self._stopped = True
                    else:
                        self._run_on_loop(self._begin_exit, until)
            finally:
                self._lock.release()
        # outside the lock, so that a second caller waits for the thread too; past the
        # deadline, a short grace (a shutdown(0) of a thread that is only slow)
        thread = self._thread
        if thread is not None:
            thread.join(max(until - time.monotonic(), _SHUTDOWN_GRACE_SECONDS))
            if thread.is_alive():
                self._abandon(thread, seconds)

    def _abandon(self, thread: threading.Thread, seconds: float) -> None:
        # past shutdown's deadline: end every watcher, drop the queue, free waiters, say so
        with self._not_full:
            if self._abandoned:
                return
            self._abandoned = self._stopped = True
            left, waiting = [self._held, *self._incoming], list(self._waiting)
            self._incoming.clear()
            self._not_full.notify_all()
            self._not_empty.notify_all()
        for marker in waiting:
            marker.done.set()  # what it asked for never runs
        for watcher in tuple(self._watchers):
            watcher._end()  # the thread, waiting for room in one, goes on
        thread.join(_SHUTDOWN_GRACE_SECONDS)
        items = sum(isinstance(item, WatchEvent) for item in left)
        busy = "; the thread is still busy and was left to itself" if thread.is_alive() else ""
        _diagnostics.report(
            logging.WARNING,
            "Broadcaster %s: shutdown gave up after %.3g s, its thread held (a full WAIT "
            "watcher nobody reads, or an on_drop that does not return): every watcher was "
            "ended (what it holds stays readable) and %d queued item(s) were not handed out%s",
            self._name,
            seconds,
            items,
            busy,
        )

    def _on_exit(self) -> None:
        self.shutdown()

    def _forget(self, watcher: Watcher) -> None:
        if self._on_loop_thread():
            # from on_drop: we are the loop, and waiting for a round trip would never end
            self._watchers.pop(watcher, None)
            return
        # ended, it gets nothing more: its removal, through a thread another watcher may
        # hold, is tidying, not worth a hang (else it goes later, or at shutdown)
        until = time.monotonic() + _STOP_WAIT_SECONDS
        if self._lock.acquire(timeout=_STOP_WAIT_SECONDS):
            try:
                if not self._stopped:
                    self._run_on_loop(lambda: self._watchers.pop(watcher, None), until)
            finally:
                self._lock.release()

    def _start_unless_stopped(self) -> None:  # with the lock held
        if self._stopped:
            raise BroadcasterStopped("broadcaster already stopped")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def _run_on_loop(self, fn: Callable[[], None], until: float | None = None) -> bool:
        """Run ``fn`` on the distributing thread, in its place in the queue (with the lock
        held: nothing may overtake it); False when it did not run by ``until`` (a monotonic
        time; None: until a shutdown gives up)."""
        ran: list[bool] = []

        def run() -> None:
            fn()
            ran.append(True)

        marker = _Marker(run, threading.Event())
        with self._queue_lock:
            self._waiting.add(marker)
        try:
            if self._put(marker, block=True, until=until):
                left = None if until is None else max(0.0, until - time.monotonic())
                marker.done.wait(left)
        finally:
            with self._queue_lock:
                self._waiting.discard(marker)
        return bool(ran)

    def _refuse_on_loop_thread(self, operation: str) -> None:
        if self._on_loop_thread():
            msg = f"{operation}() cannot be called from the distributing thread (on_drop)"
            raise RuntimeError(msg)

    def _on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _put(self, item: WatchEvent | _Marker, *, block: bool, until: float | None = None) -> bool:
        # False when not queued: no room (by ``until`` when blocking), or a shutdown gave up
        with self._not_full:
            if block:
                left = None if until is None else max(0.0, until - time.monotonic())
                self._not_full.wait_for(lambda: self._incoming_has_room() or self._abandoned, left)
            if self._abandoned or not self._incoming_has_room():
                return False
            self._incoming.append(item)
            self._not_empty.notify()
            return True

    def _incoming_has_room(self) -> bool:
        return len(self._incoming) < _INCOMING_QUEUE_LENGTH

    def _loop(self) -> None:
        while True:
            # one item at a time, as Go's loop: the incoming queue bounds what is buffered, and
            # a shutdown that gives up knows what it never handed out
            with self._not_empty:
                self._held = None
                self._not_empty.wait_for(lambda: bool(self._incoming) or self._stopped)
                if self._stopped:  # after the shutdown marker, or a shutdown that gave up
                    break
                item = self._held = self._incoming.popleft()
                # only the holder of self._lock ever waits for room: one wake-up is enough
                self._not_full.notify()
            if isinstance(item, _Marker):
                try:
                    item.run()
                finally:
                    item.done.set()
            else:
                self._distribute(item)
        for watcher in self._watchers:
            watcher._end()
        self._watchers.clear()

    def _distribute(self, event: WatchEvent) -> None:
        # a copy: an on_drop callback may stop a watcher while we iterate
        watchers = tuple(self._watchers)
        if self._behavior is FullChannelBehavior.WAIT:
            for watcher in watchers:
                watcher._put_waiting(event)
            return
        # each watcher has it (queued, or counted dropped) before any on_drop runs: a shutdown
        # that gives up on an on_drop counted it once, as dropped, not again as not handed out
        dropped = [(watcher, watcher._queue_or_count([event])) for watcher in watchers]
        self._held = None
        for watcher, events in dropped:
            watcher._hand_to_on_drop(events)

    def _begin_exit(self) -> None:
        # the shutdown marker: nothing can be queued behind it, so the loop ends after it
        self._stopped = True
