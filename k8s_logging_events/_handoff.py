"""The dispatcher's step: one batch of queued occurrences handed on to every consumer.

On the dispatcher (the thread rules of :mod:`~k8s_logging_events._runtime` hold here): each
sink's recording correlates the batch in runs (:mod:`~k8s_logging_events._runs`) and queues
writes; watchers get each event, built once for all; a recording still to be set up (rule
10) has its occurrences kept aside. Every occurrence ends in one outcome or one pending
write, counted under the runtime's lock when the batch is done.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

from k8s_logging_events import _diagnostics, _pool, _runs, _watchers, broadcaster, models

Consumer = _pool.Recording | _watchers.WatchLoop
"""What the dispatcher hands events to: a sink's recording, or a watcher."""


class Consumers:
    """The consumers of one runtime, in the order added, under the runtime's condition; they
    outlive a fork. A stopped consumer stays while it has work left (a recording's writes, a
    watcher's queue), then goes, as client-go forgets a stopped watcher (kept, each one started
    and stopped on a broadcaster that lives for weeks stayed, with its caches)."""

    __slots__ = ("_all",)

    def __init__(self) -> None:
        self._all: list[Consumer] = []

    def add(self, consumer: Consumer, *, closing: bool) -> broadcaster.Watcher:
        """Add ``consumer`` (stopped at once when the runtime is ``closing``)."""
        if closing:
            consumer.watcher.stop()
        else:
            self._all.append(consumer)
        return consumer.watcher

    def __iter__(self) -> Iterator[Consumer]:
        return iter(list(self._all))

    def live(self) -> list[Consumer]:
        """The consumers not stopped (those a batch is handed to); the stopped ones done go,
        here where no batch is in hand (one may still record to a consumer stopped meanwhile)."""
        self._all = [c for c in self._all if not (c.watcher.stopped and c.done())]
        return [c for c in self._all if not c.watcher.stopped]

    def recordings(self) -> list[_pool.Recording]:
        """The sinks' recordings, stopped ones included."""
        return [c for c in self._all if isinstance(c, _pool.Recording)]

    def loops(self) -> list[_watchers.WatchLoop]:
        return [c for c in self._all if isinstance(c, _watchers.WatchLoop)]


class HandOff:
    """Hands batches on, for one runtime (on its dispatcher, or a thread that drains: rule 11).
    ``cond`` is the runtime's condition, under which every outcome is counted; a recording
    keeps ``shared.capacity`` occurrences aside at most; ``pool`` says whether it stops."""

    def __init__(
        self,
        cond: threading.Condition,
        shared: _pool.Shared,
        *,
        consumers: Consumers,
        pool: _pool.WriterPool,
    ) -> None:
        self._cond = cond
        self._shared = shared
        self._counters = shared.counters
        self._reporter = shared.reporter
        self._build = functools.partial(models.materialize, namer=shared.namer)
        self.consumers = consumers
        self._pool = pool
        # of the batch in hand: outcomes met, counted once handed on; by recording, occurrences
        # already in its writes or outcomes (stats() counts none as queued and written)
        self.settling: collections.Counter[str] = collections.Counter()
        self.handed: dict[int, int] = {}
        self.delivered = 0  # occurrences taken off the queue and handed on

    def deliver(self, items: list[Any]) -> None:
        """Hand ``items`` on to the live consumers, then count what they met (none is queued)."""
        with self._cond:
            consumers = self.consumers.live()
        try:
            self._hand_on(items, consumers)
        finally:  # each item now has an outcome or a pending write
            with self._cond:
                self.delivered += len(items)
                for outcome, occurrences in self.settling.items():
                    self._counters.add(outcome, occurrences)
                self.settling.clear()
                self.handed.clear()

    def taken(self) -> int:
        """Occurrences no longer queued: handed on, or in the batch in hand and already in
        a recording's writes or outcomes (once: every sink gets each one; under ``cond``)."""
        return self.delivered + max(self.handed.values(), default=0)

    def _hand_on(self, items: list[Any], consumers: list[Consumer]) -> None:
        if self._pool.stopping:  # closed: what is still queued is dropped, not built
            self.settling["dropped"] += len(items)
            return
        recordings = [c for c in consumers if isinstance(c, _pool.Recording)]
        # only sinks (the handler's case): a run of repeats is correlated from its last item
        # (and its first, when that is a new event); the others are never built
        events = items
        if len(recordings) < len(consumers):
            events = self._build_all(items, len(recordings))
        if not recordings:
            self.settling["discarded"] += len(events)
        self._record_all(recordings, events)
        for consumer in consumers:
            if isinstance(consumer, _watchers.WatchLoop):
                consumer.watcher._put_or_drop(
                    [broadcaster.WatchEvent(broadcaster.ADDED, e) for e in events]
                )

    def _record_all(self, recordings: list[_pool.Recording], items: list[Any]) -> None:
        """Correlate ``items`` (occurrences, or Events built) for each sink, in runs."""
        built: _runs.Built = {}
        cuts: dict[bool, list[_runs.Run]] = {}
        for recording in recordings:
            if not recording.ready and (recording.aside_count or not recording.prepares_here()):
                self._set_aside(recording, items)  # rule 10
                continue
            if recording.aside:
                self._replay(recording)  # set up meanwhile: what was kept aside goes first
            try:
                by_object = recording.prepare()
            except _diagnostics.step_errors() as error:  # rule 5: this sink's fail, no others
                self._uncorrelated(self.settling, len(items), error)
                continue
            runs = cuts.get(by_object)
            if runs is None:
                runs = cuts[by_object] = self._cut(items, by_object, built)
            self._record(recording, runs, self.settling)

    def _cut(self, items: list[Any], by_object: bool, built: _runs.Built) -> list[_runs.Run]:
        try:
            return _runs.cut(
                items, models.correlation_keys, self._build, by_object=by_object, built=built
            )
        except _diagnostics.step_errors():  # rule 5: failing keys must not cost the batch; one
            # run per item, in order, correlates the same, and costs only that item's run
            return _runs.one_by_one(items, self._build, built)

    def _uncorrelated(
        self, settling: collections.Counter[str], occurrences: int, error: BaseException
    ) -> None:
        settling["failed"] += occurrences
        self._reporter.report(
            "correlate",
            logging.ERROR,
            "Unable to build or correlate an event (will not retry): %r",
            error,
            occurrences=occurrences,
            outcome="lost",
        )

    def _build_all(self, items: list[Any], recordings: int) -> list[models.Event]:
        """Build every item for the watchers; one that fails costs itself only."""
        events: list[models.Event] = []
        for item in items:
            try:
                events.append(self._build(item))
            except _diagnostics.step_errors() as error:  # rule 5: this one fails, no others
                self.settling["failed"] += max(1, recordings)
                self._reporter.report(
                    "build",
                    logging.ERROR,
                    "Unable to build an event (will not retry): %r",
                    error,
                    occurrences=max(1, recordings),
                    outcome="lost",
                )
        return events

    def _record(
        self,
        recording: _pool.Recording,
        runs: list[_runs.Run],
        settling: collections.Counter[str],
        *,
        aside: bool = False,
    ) -> None:
        """Correlate ``runs`` and submit their writes; outcomes met go to ``settling``. What is
        submitted stops being queued (or kept aside) under the same lock as it becomes pending
        writes: ``stats()`` never sees it twice. Once the writers stop (a close), the rest is
        never tried: dropped, as what is still queued (docs/metrics.md)."""
        writes: list[tuple[models.Event, bool, int]] = []
        for index, run in enumerate(runs):
            if self._pool.stopping:  # a long batch must not outlast close(), which counts after
                settling["dropped"] += sum(len(left) for left in runs[index:])
                break
            try:
                writes += recording.correlate(run)
            except _diagnostics.step_errors() as error:  # rule 5: the run's fail, no others
                self._uncorrelated(settling, len(run), error)
        with self._cond:
            handed = 0 if aside else self.handed.get(id(recording), 0)
            for event, held, occurrences in writes:
                if self._pool.stopping:  # a write submitted after close() gave up all would
                    settling["dropped"] += occurrences  # wait for good, pending
                    continue
                try:
                    recording.writes.submit_event(event, held=held, occurrences=occurrences)
                except _diagnostics.step_errors() as error:  # rule 5
                    self._counters.add("failed", occurrences)
                    self._reporter.defer(
                        "submit",
                        logging.ERROR,
                        "Unable to queue a write: %r",
                        error,
                        occurrences=occurrences,
                        outcome="lost",
                    )
                handed += occurrences
            if aside:
                recording.aside_count -= handed
            else:
                self.handed[id(recording)] = handed
        self._reporter.emit_deferred()

    def _set_aside(self, recording: _pool.Recording, items: list[Any]) -> None:
        """Keep ``items`` until a writer has set ``recording`` up (bounded: queue_length)."""
        with self._cond:
            kept = items[: max(0, self._shared.capacity - recording.aside_count)]
            recording.aside += kept
            recording.aside_count += len(kept)
            self.handed[id(recording)] = self.handed.get(id(recording), 0) + len(items)
            if len(kept) < len(items):
                self._counters.add("dropped", len(items) - len(kept))
                self._reporter.defer(
                    "pending-full",
                    logging.ERROR,
                    "Unable to record events: %d wait already for their sink to be set up "
                    "(queue_length)",
                    recording.aside_count,
                    occurrences=len(items) - len(kept),
                    outcome="dropped",
                )
            # a writer sets it up, unless one is already
            recording.wanted = recording.wanted or not (recording.ready or recording.preparing)
        self._reporter.emit_deferred()

    def settle_aside(self) -> None:
        """Hand on what was kept aside for a recording a writer has set up, or fail it."""
        with self._cond:
            recordings = self.consumers.recordings()
        for recording in recordings:
            if not recording.aside or recording.wanted or recording.preparing:
                continue
            if recording.ready:
                self._replay(recording)
            elif recording.failure is not None:
                with self._cond:
                    error, recording.failure = recording.failure, None
                    failed = self._fail_aside(recording)
                self._reporter.report(
                    "correlate",
                    logging.ERROR,
                    "Unable to set up the writes of a sink (will not retry): %r",
                    error,
                    occurrences=failed,
                    outcome="lost",
                )

    def _replay(self, recording: _pool.Recording) -> None:
        """Correlate and submit what was kept aside for ``recording``, in arrival order."""
        with self._cond:
            items, recording.aside = recording.aside, []
        settling: collections.Counter[str] = collections.Counter()
        try:
            try:
                by_object = recording.prepare()  # set up already: no I/O
                runs = self._cut(items, by_object, {})
            except _diagnostics.step_errors() as error:  # rule 5
                self._uncorrelated(settling, len(items), error)
            else:
                self._record(recording, runs, settling, aside=True)
        finally:
            with self._cond:
                for outcome, occurrences in settling.items():
                    self._counters.add(outcome, occurrences)
                    recording.aside_count -= occurrences

    def give_up_aside(self, about: str) -> int:
        """At close: what is still kept aside fails (the sink was never set up), said once
        (``about``: whose); how many failed."""
        with self._cond:
            failed = sum(self._fail_aside(recording) for recording in self.consumers.recordings())
        if failed:
            self._reporter.report(
                "exit-unprepared",
                logging.WARNING,
                "%d occurrences %swere not written: their sink was still being set up (its "
                "client built, the server asked which Events API it serves) at the deadline of "
                "shutdown (see flush_timeout; an api of v1 or events.k8s.io/v1 asks no question)",
                failed,
                about,
            )
        return failed

    def _fail_aside(self, recording: _pool.Recording) -> int:  # under cond
        failed, recording.aside = len(recording.aside), []
        recording.aside_count -= failed
        self._counters.add("failed", failed)
        return failed
