"""The consumers of events that are not sinks: structured logging and users' watchers.

Beside the dispatcher (the thread rules of :mod:`~k8s_logging_events._runtime` hold here):
a :class:`WatchLoop`'s own thread calls the handler, so that nothing it writes to can hold
up the dispatcher.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from k8s_logging_events import _diagnostics, _process, broadcaster, models

IDLE_WAIT_SECONDS = 5.0
"""The longest a watcher's thread waits for events before it looks whether it was stopped."""


_BEHIND = (
    "An event watcher (structured logging, or start_event_watcher's handler) is %d events "
    "behind (queue_length): the events it misses are counted as watcher_dropped; the sinks "
    "still get them"
)


class WatchLoop:
    """A user's event watcher: its own thread, fed through a bounded :class:`Watcher`."""

    def __init__(
        self,
        handle: Callable[[models.Event], None],
        capacity: int,
        on_drop: Callable[[broadcaster.WatchEvent], None],
        reporter: _diagnostics.RateLimitedReporter,
        name: str,
    ) -> None:
        self.handle = handle
        self.watcher = broadcaster.Watcher(None, capacity, on_drop)
        self._capacity = capacity
        self._reporter = reporter
        self._name = name
        self.processed = 0  # written by the loop's thread, or by run_here when there is none
        self.thread: threading.Thread | None = None
        self._here = threading.Lock()  # one draining flush at a time, never waited for
        self._starting = threading.Lock()  # one start at a time, never waited for
        self._told = 0  # the watcher's drops reported so far
        self.refused = False  # no thread to be had at its start: the dispatcher tries again

    def start(self) -> None:
        """Give the loop a thread unless it has one. Where none can start, a flush handles its
        events meanwhile; after a thread limit (said, :attr:`refused`) a later call tries
        again; at the interpreter's exit none does."""
        if self.thread is not None or self.watcher.stopped or not self._starting.acquire(False):
            return
        try:
            self.thread = thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            thread.start()
            self.refused = False
        except RuntimeError as error:
            self.thread = None
            self.refused = not _process.refused_at_exit(error)
            if self.refused:
                self._reporter.report(
                    "watcher-start",
                    logging.ERROR,
                    "Unable to start an event watcher's thread (%s): its events wait until a "
                    "later event starts it, or a flush handles them",
                    error,
                )
        finally:
            self._starting.release()

    def renew(self) -> None:  # in a child after fork
        self.thread = None
        self._here, self._starting = threading.Lock(), threading.Lock()
        self.processed = self._told = 0

    def done(self) -> bool:
        """True when nothing is queued and no thread of its own runs."""
        thread = self.thread
        return not self.watcher.pending() and (thread is None or not thread.is_alive())

    def caught_up(self, target: int) -> bool:
        """True once every event delivered up to ``target`` has been handled."""
        thread = self.thread
        return self.processed >= target or thread is None or not thread.is_alive()

    def run_here(self) -> None:
        """Handle what is queued on the calling thread (a flush draining), when the loop has
        no thread running: at exit, where none could start (3.12), nothing else would."""
        thread = self.thread
        if (thread is None or not thread.is_alive()) and self._here.acquire(blocking=False):
            try:  # its lines are the library's, as on the loop's thread
                _diagnostics.as_own_thread(self._drain)
            finally:
                self._here.release()

    def _drain(self) -> None:
        while batch := self.watcher.get_batch(timeout=0):
            self._handle(batch)

    def _run(self) -> None:
        _diagnostics.become_own_thread()
        while True:
            batch = self.watcher.get_batch(timeout=IDLE_WAIT_SECONDS)
            if not batch and self.watcher.stopped and not self.watcher.pending():
                break
            self._handle(batch)

    def _handle(self, batch: list[broadcaster.WatchEvent]) -> None:
        for item in batch:
            try:
                self.handle(item.object)
            except _diagnostics.step_errors() as error:  # one bad event ends no watcher
                self._reporter.report(
                    "watcher-handler", logging.ERROR, "Event watcher failed: %r", error
                )
        # the drops said here, not on the dispatcher: a report may go where this watcher's
        # lines block (standard error), and hold up no sink; before the count a flush waits for
        dropped = self.watcher.dropped
        if dropped > self._told:  # one line for the batch's drops, with their count
            missed, self._told = dropped - self._told, dropped
            self._reporter.report(
                "watcher-dropped",
                logging.WARNING,
                _BEHIND,
                self._capacity,
                occurrences=missed,
                outcome="missed by the watcher",
            )
        self.processed += len(batch)
