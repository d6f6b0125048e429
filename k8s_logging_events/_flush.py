"""How a flush or a close of the runtime knows it is done, within one deadline.

Beside the dispatcher, under :mod:`~k8s_logging_events._runtime`'s thread rules: a flush
queues a :class:`Marker` behind all accepted before it; the dispatcher, reaching it, records
how far each consumer must get, and the flush waits until each has. Where no thread does the
work (never started, or gone at exit), the waiting thread does it, through ``pump``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from k8s_logging_events import _apis, _pool, _watchers

POLL_SECONDS = 0.1
"""The longest a flush waits before it looks again whether a thread still does the work."""


class Deadline:
    """A timeout (from now, or ``since``, a :func:`time.monotonic`) turned into 'how much is
    left', in real time (rule 8)."""

    __slots__ = ("end",)

    def __init__(self, timeout: float, since: float | None = None) -> None:
        # at most what a wait takes: shutdown(float("inf")) joined threads with an OverflowError
        start = time.monotonic() if since is None else since
        self.end = start + min(max(0.0, timeout), threading.TIMEOUT_MAX)

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def within(self, timeout: float, since: float | None = None) -> Deadline:
        """End ``timeout`` seconds from now (or ``since``) at the latest (sooner when cut)."""
        self.end = min(self.end, Deadline(timeout, since).end)
        return self


class Marker:
    """A control item: the dispatcher sets ``reached`` once every item before it is handled."""

    __slots__ = ("reached", "stop", "targets")

    def __init__(self, *, stop: bool = False) -> None:
        self.reached = threading.Event()
        self.stop = stop
        self.targets: dict[_pool.Recording | _watchers.WatchLoop, int] = {}

    def reach(self, recordings: list[_pool.Recording], loops: list[_watchers.WatchLoop]) -> None:
        """Record how far each consumer must get (under the lock); the caller sets ``reached``
        out of it: a flush waits in the Event's lock, where a signal handler's may wait for ours."""
        for recording in recordings:
            # what is kept aside is submitted first, once the recording is set up
            self.targets[recording] = recording.writes.submitted + recording.aside_count
        for loop in loops:
            self.targets[loop] = loop.watcher.delivered

    def written(self) -> bool:
        """True once every consumer got as far as :meth:`reach` recorded (under the lock)."""
        for target, value in self.targets.items():
            if isinstance(target, _pool.Recording):
                if target.aside_count or target.writes.oldest_pending() <= value:
                    return False
            elif not target.caught_up(value):
                return False
        return True


WAKE = Marker()
"""Has the dispatcher look at its timers and ready writes again; never waited for."""

Pump = Callable[[Deadline], bool]
"""Does the dispatcher's work on the calling thread, within the deadline; False when it found
nothing to do at once (nor waited): the caller waits a moment before it looks again."""


def wait_reached(marker: Marker, deadline: Deadline, alive: Callable[[], bool], pump: Pump) -> bool:
    """Wait until the dispatcher reaches ``marker``; False when ``deadline`` passed first."""
    while not marker.reached.is_set():
        if deadline.expired():
            return False
        if alive():
            marker.reached.wait(min(deadline.remaining(), POLL_SECONDS))
        else:  # never started (interpreter exit) or gone: drain on this thread
            pump(deadline)
    return True


def wait_written(
    marker: Marker,
    deadline: Deadline,
    cond: threading.Condition,
    working: Callable[[], bool],
    pump: Pump,
    waiting: list[Callable[[], bool]],
) -> bool:
    """Wait until ``marker``'s targets are written; False when ``deadline`` passed first.
    ``working`` (under ``cond``): a thread of ours may still do the work; else this one pumps.
    ``waiting``: whether each waiting flush is done, for a landing to wake them only then."""
    idle = False  # the last pump found nothing to do: no write ready (a retry's back-off)
    while True:
        with cond:
            if marker.written():
                return True
            if deadline.expired():
                return False
            if working() or idle:
                waiting.append(marker.written)
                try:
                    cond.wait(min(deadline.remaining(), POLL_SECONDS))
                finally:
                    waiting.remove(marker.written)
                idle = False
                continue
        idle = not pump(deadline)


def set_draining(recordings: list[_pool.Recording], *, on: bool) -> None:
    """Tell each sink a flush drains (``on``) or no longer does: once each way per recording
    (a sink shared by several broadcasters counts its drains)."""
    for recording in [r for r in recordings if r.writes.flushing != on]:
        recording.writes.flushing = on
        with contextlib.suppress(Exception):
            _apis.call_optional(recording.writes.sink, "drain", on)


def drain_by(recordings: list[_pool.Recording], deadline: Deadline, *, on: bool) -> None:
    """A flush waits until ``deadline`` (``on``), or no longer: while it waits, each sink's
    retries are tried within it (:meth:`~._pending.Writes.hasten`); several may overlap."""
    for recording in recordings:
        drains = recording.writes.drains
        if on:
            drains.append(deadline.remaining)
        elif deadline.remaining in drains:  # not for a recording added meanwhile
            drains.remove(deadline.remaining)


def join(thread: threading.Thread | None, deadline: Deadline) -> None:
    """Wait for ``thread`` (not this one, nor one never started) to end, within ``deadline``."""
    if thread is None or thread is threading.current_thread():
        return
    with contextlib.suppress(RuntimeError):  # never started
        thread.join(deadline.remaining())


def leftovers(items: queue.SimpleQueue[Any]) -> int:
    """Empty the queue after the stop; the occurrences left, to count as dropped. A waiting
    flush is released; a stop marker goes back (a dispatcher that raced close() must see it)."""
    left = stops = 0
    with contextlib.suppress(queue.Empty):
        while True:
            item = items.get_nowait()
            if not isinstance(item, Marker):
                left += 1
            elif item.stop:
                stops += 1
            else:
                item.reached.set()
    for _ in range(stops):
        items.put(Marker(stop=True))
    return left
