"""Tests for the watch-event broadcaster: apimachinery's mux_test.go behaviours, then ours.

Nothing here sleeps. Where a test needs the distributing thread to be stuck, it gets there
through WAIT mode and a full watcher queue that nobody reads, and proves it through what has
or has not arrived; helper threads are joined with a timeout so a deadlock fails the test.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from k8s_logging_events import broadcaster as broadcaster_module
from k8s_logging_events.broadcaster import (
    ADDED,
    DELETED,
    MODIFIED,
    Broadcaster,
    BroadcasterStopped,
    FullChannelBehavior,
    Watcher,
    WatchEvent,
)
from tests.reliability_scenarios import (
    ListHandler,
    answer_from_fork,
    on_library_logger,
)

WAIT = FullChannelBehavior.WAIT
DROP = FullChannelBehavior.DROP

STOPPED = r"^broadcaster already stopped$"

# Generous: only a deadlock or a lost wake-up ever takes this long.
TIMEOUT = 5.0

TABLE = [
    WatchEvent(ADDED, {"id": "foo", "value": "hello world 1"}),
    WatchEvent(ADDED, {"id": "bar", "value": "hello world 2"}),
    WatchEvent(MODIFIED, {"id": "foo", "value": "goodbye world 3"}),
    WatchEvent(DELETED, {"id": "bar", "value": "hello world 4"}),
]


Make = Callable[..., Broadcaster]


def event(n: int) -> WatchEvent:
    return WatchEvent(ADDED, {"n": n})


def send(broadcaster: Broadcaster, *events: WatchEvent) -> None:
    for e in events:
        broadcaster.action(e.type, e.object)


def start(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name="test-helper", daemon=True)
    thread.start()
    return thread


def finished(thread: threading.Thread) -> bool:
    thread.join(TIMEOUT)
    return not thread.is_alive()


def waits_for_room(thread: threading.Thread) -> bool:
    """Return True once ``thread`` waits in action() for room in the full incoming queue
    (found on its stack, not guessed from a pause); False if it never does within TIMEOUT."""
    bound = time.monotonic() + TIMEOUT
    while time.monotonic() < bound:
        frame = sys._current_frames().get(thread.ident or -1)
        names = set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        if {"_put", "wait_for"} <= names:
            return True
        thread.join(0.001)
    return False


def handed_out(broadcaster: Broadcaster) -> None:
    """Return once every item queued before the call reached (or was dropped for) every
    watcher: a watch() is a control operation, run after the items queued before it."""
    broadcaster.watch().stop()


class Gate:
    """An ``on_drop`` that holds the distributing thread until the gate opens: once it was
    entered, the thread has taken everything sent before, and takes nothing more."""

    def __init__(self, hold: float = TIMEOUT) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()
        self._hold = hold

    def __call__(self, _: WatchEvent) -> None:
        self.entered.set()
        self._open.wait(self._hold)

    def open(self) -> None:
        self._open.set()


class Turnstile:
    """An ``on_drop`` that holds the distributing thread at each call until it is let through
    (``TIMEOUT`` at most): each entry proves the thread took the item it drops."""

    def __init__(self) -> None:
        self._entries = threading.Semaphore(0)
        self._passes = threading.Semaphore(0)

    def __call__(self, _: WatchEvent) -> None:
        self._entries.release()
        self._passes.acquire(timeout=TIMEOUT)

    def entered(self) -> bool:
        return self._entries.acquire(timeout=TIMEOUT)

    def let_through(self, calls: int) -> None:
        self._passes.release(calls)


def held_again_after_a_full_queue(make: Make) -> tuple[Broadcaster, Turnstile]:
    """A DROP broadcaster whose thread was held by its one watcher (of one item) on event 2
    while events 3 to 27 filled the incoming queue, then let go: it is held again, on event 3."""
    broadcaster = make(1, DROP)
    turnstile = Turnstile()
    broadcaster.watch(on_drop=turnstile)
    send(broadcaster, event(1), event(2))
    assert turnstile.entered()
    send(broadcaster, *(event(n) for n in range(3, 28)))
    turnstile.let_through(1)
    assert turnstile.entered()
    return broadcaster, turnstile


def held_with_a_full_queue(make: Make, hold: float = TIMEOUT) -> tuple[Broadcaster, Gate, Watcher]:
    """A DROP broadcaster whose thread is held by its one watcher (of one item: it got event
    1, and event 2 holds the thread, ``hold`` seconds at most), with the incoming queue full
    of events 3 to 27."""
    broadcaster = make(1, DROP)
    gate = Gate(hold)
    held = broadcaster.watch(on_drop=gate)
    send(broadcaster, event(1), event(2))  # event 2 finds `held` full: the thread waits
    assert gate.entered.wait(TIMEOUT)
    send(broadcaster, *(event(n) for n in range(3, 28)))  # the incoming queue's 25
    return broadcaster, gate, held


def blocked_sender(broadcaster: Broadcaster) -> tuple[threading.Thread, list[BaseException]]:
    """A producer whose action() (of event 28) waits for room in the full incoming queue,
    and the errors it meets."""
    errors: list[BaseException] = []

    def blocked_send() -> None:
        try:
            send(broadcaster, event(28))
        except BaseException as error:
            errors.append(error)

    blocked = start(blocked_send)
    assert waits_for_room(blocked)
    return blocked, errors


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


@pytest.fixture
def make() -> Iterator[Make]:
    """Build broadcasters and shut each one down after the test, even a failed one."""
    made: list[Broadcaster] = []

    def factory(*args: Any, **kwargs: Any) -> Broadcaster:
        broadcaster = Broadcaster(*args, **kwargs)
        made.append(broadcaster)
        return broadcaster

    yield factory
    for broadcaster in made:
        broadcaster.shutdown()


# --- apimachinery pkg/watch/mux_test.go ---------------------------------------------------


def test_every_watcher_gets_every_event_in_order_with_queue_length_zero(make: Make) -> None:
    """Two watchers of a queue-0 WAIT broadcaster, read concurrently, each get all four events
    in order, and their streams end after shutdown (TestBroadcaster)."""
    broadcaster = make(0, WAIT)
    watchers = [broadcaster.watch() for _ in range(2)]
    received: list[list[WatchEvent]] = [[] for _ in watchers]
    readers = [start(out.extend, w) for w, out in zip(watchers, received, strict=True)]

    send(broadcaster, *TABLE)
    broadcaster.shutdown()

    assert all(finished(r) for r in readers)
    assert received == [TABLE, TABLE]


def test_stop_ends_a_watcher_and_shutdown_ends_the_rest(make: Make) -> None:
    """A stopped watcher has ended; shutdown ends the others; more stops do no harm
    (TestBroadcasterWatcherClose)."""
    broadcaster = make(0, WAIT)
    stopped, other = broadcaster.watch(), broadcaster.watch()

    stopped.stop()
    assert stopped.stopped
    assert not other.stopped
    broadcaster.shutdown()

    for watcher in (stopped, other):
        assert watcher.stopped
        assert watcher.get(0) is None
        assert list(watcher) == []
    stopped.stop()
    other.stop()


def test_stopping_the_watcher_the_distributor_is_blocked_on_completes(make: Make) -> None:
    """Stopping a watcher while the distributing thread waits for room in its queue returns,
    and the item it waited with is not delivered to it (TestBroadcasterWatcherStopDeadlock)."""
    broadcaster = make(0, WAIT)
    first, second = broadcaster.watch(), broadcaster.watch()
    send(broadcaster, event(1), event(2))
    # Both queues (capacity 1) hold event 1, so event 2 waits at the first watcher.
    assert first.get(TIMEOUT) == event(1)
    # Event 2 reaching the first watcher proves the distributor moved on to the second, full.
    assert first.get(TIMEOUT) == event(2)

    stopper = start(second.stop)

    assert finished(stopper), "stop() deadlocked against the distributing thread"
    assert list(second) == [event(1)]


def test_drop_mode_gives_full_watchers_only_what_fits(make: Make) -> None:
    """With queue length 1, DROP mode and no reader, each watcher keeps event 1 only, then its
    stream ends; the skipped event is counted (TestBroadcasterDropIfChannelFull)."""
    broadcaster = make(1, DROP)
    watchers = [broadcaster.watch() for _ in range(2)]

    send(broadcaster, event(1), event(2))
    broadcaster.shutdown()

    for watcher in watchers:
        assert list(watcher) == [event(1)]
        assert watcher.dropped == 1


def test_a_watcher_counts_what_it_was_given_in_either_mode(make: Make) -> None:
    """delivered counts the events queued for a watcher, in WAIT mode as in DROP mode."""
    for behavior in (WAIT, DROP):
        broadcaster = make(5, behavior)
        watcher = broadcaster.watch()
        send(broadcaster, event(1), event(2), event(3))
        broadcaster.shutdown()
        assert (watcher.delivered, watcher.dropped) == (3, 0)
        assert list(watcher) == [event(1), event(2), event(3)]


@pytest.mark.parametrize("used", [False, True], ids=["never-used", "used"])
def test_watch_after_shutdown_raises(make: Make, used: bool) -> None:
    """watch() and watch_with_prefix() raise BroadcasterStopped after shutdown
    (TestBroadcasterWatchAfterShutdown)."""
    broadcaster = make(0, WAIT)
    if used:
        broadcaster.watch().stop()
    broadcaster.shutdown()

    with pytest.raises(BroadcasterStopped, match=STOPPED):
        broadcaster.watch()
    with pytest.raises(BroadcasterStopped, match=STOPPED):
        broadcaster.watch_with_prefix([event(1), event(2)])


def test_sending_after_shutdown_raises(make: Make) -> None:
    """action() and action_or_drop() raise BroadcasterStopped after shutdown
    (TestBroadcasterSendEventAfterShutdown)."""
    broadcaster = make(1, DROP)
    watchers = [broadcaster.watch() for _ in range(2)]
    broadcaster.shutdown()

    with pytest.raises(BroadcasterStopped, match=STOPPED):
        broadcaster.action(ADDED, {"id": "foo"})
    with pytest.raises(BroadcasterStopped, match=STOPPED):
        broadcaster.action_or_drop(ADDED, {"id": "foo"})
    assert all(w.stopped for w in watchers)


@pytest.mark.parametrize("round_", range(20))
def test_watcher_stops_racing_with_shutdown_neither_deadlock_nor_lose_items(
    make: Make, round_: int
) -> None:
    """Watchers stopped at the same moment as the broadcaster shuts down all return, and the
    item already queued for each stays readable (TestBroadcasterShutdownRace)."""
    broadcaster = make(1, WAIT)
    watchers = [broadcaster.watch() for _ in range(2)]
    send(broadcaster, event(1))
    handed_out(broadcaster)  # in both watchers' queues, not just accepted
    go = threading.Barrier(len(watchers) + 1)

    def stop_together(watcher: Watcher) -> None:
        go.wait(TIMEOUT)
        watcher.stop()

    stoppers = [start(stop_together, w) for w in watchers]
    go.wait(TIMEOUT)
    broadcaster.shutdown()

    assert all(finished(s) for s in stoppers)
    assert [list(w) for w in watchers] == [[event(1)], [event(1)]]


# --- beyond mux_test.go -------------------------------------------------------------------


def test_watcher_never_sees_items_queued_before_watch(make: Make) -> None:
    """A watcher added while earlier items still wait in a full incoming queue gets none of
    them, and gets everything sent after watch() returned; watch() called while the incoming
    queue is full still completes."""
    broadcaster, gate, early = held_with_a_full_queue(make)
    assert broadcaster.action_or_drop(ADDED, {"n": 99}) is False
    added: list[Watcher] = []
    adder = start(lambda: added.append(broadcaster.watch()))
    gate.open()

    assert finished(adder)
    assert early.get(TIMEOUT) == event(1)
    assert early.dropped == 26  # events 2 to 27
    send(broadcaster, event(1000))
    broadcaster.shutdown()

    assert list(early) == [event(1000)]
    assert list(added[0]) == [event(1000)]


def test_prefix_comes_before_broadcast_items(make: Make) -> None:
    """watch_with_prefix() queues the given items (from any iterable) ahead of anything
    broadcast later, in their order."""
    broadcaster = make(10, WAIT)
    prefix = [WatchEvent(ADDED, "p1"), WatchEvent(MODIFIED, "p2"), WatchEvent(DELETED, "p3")]

    watcher = broadcaster.watch_with_prefix(iter(prefix))
    send(broadcaster, event(1), event(2))
    broadcaster.shutdown()

    assert list(watcher) == [*prefix, event(1), event(2)]


def test_watch_does_not_go_through_a_subclass_watch_with_prefix() -> None:
    """watch() and watch_with_prefix() are two entry points, as Go's Watch and
    WatchWithPrefix are: a subclass that replays its history through watch_with_prefix()
    leaves watch() as it was, a watcher that gets nothing queued before it."""

    class Replaying(Broadcaster):
        def watch_with_prefix(self, events: Any, *, on_drop: Any = None) -> Watcher:
            history = [WatchEvent(ADDED, "old")]
            return super().watch_with_prefix([*history, *events], on_drop=on_drop)

    broadcaster = Replaying(10, WAIT)
    try:
        replayed, fresh = broadcaster.watch_with_prefix(()), broadcaster.watch()
        send(broadcaster, event(1))
    finally:
        broadcaster.shutdown()

    assert list(replayed) == [WatchEvent(ADDED, "old"), event(1)]
    assert list(fresh) == [event(1)]


@pytest.mark.parametrize(
    ("queue_length", "prefix_length", "capacity"),
    [(2, 3, 4), (3, 1, 3), (1, 0, 1), (0, 0, 1)],
    ids=["prefix-plus-one", "queue-length", "empty-prefix", "zero-means-one"],
)
def test_prefix_watcher_capacity_is_max_of_queue_length_and_prefix_plus_one(
    make: Make, queue_length: int, prefix_length: int, capacity: int
) -> None:
    """The prefix watcher's queue holds max(queue_length, len(prefix) + 1) items; a queue
    length of 0 holds one."""
    broadcaster = make(queue_length, DROP)
    watcher = broadcaster.watch_with_prefix([event(-1 - n) for n in range(prefix_length)])

    send(broadcaster, *(event(n) for n in range(capacity + 1)))

    handed_out(broadcaster)
    assert watcher.pending() == capacity
    assert watcher.dropped == prefix_length + 1


def test_action_or_drop_returns_false_when_the_incoming_queue_is_full(make: Make) -> None:
    """While the distributing thread is held, the incoming queue takes 25 items (Go's
    NewBroadcaster); action_or_drop() then returns False at once, and True again once the
    thread has taken them."""
    broadcaster = make(1, DROP)
    gate = Gate()
    held = broadcaster.watch(on_drop=gate)
    send(broadcaster, event(1), event(2))  # event 2 finds `held` full: the thread waits
    assert gate.entered.wait(TIMEOUT)

    assert all(broadcaster.action_or_drop(ADDED, {"n": n}) for n in range(3, 28))
    assert broadcaster.action_or_drop(ADDED, {"n": 28}) is False

    gate.open()
    handed_out(broadcaster)
    assert broadcaster.action_or_drop(ADDED, {"n": 29}) is True
    broadcaster.shutdown()
    assert list(held) == [event(1)]


def test_the_thread_holds_one_item_beside_the_incoming_queue_as_in_go(make: Make) -> None:
    """While the thread hands out one item, the incoming queue takes 25 more and no more (Go's
    NewBroadcaster: 25 in the channel, one in the loop's hands), however many waited when it
    took that one. Before, it took all that waited at once: held on event 3, it had taken
    events 3 to 27, and the queue took 25 more (50 buffered, not 26)."""
    broadcaster, turnstile = held_again_after_a_full_queue(make)
    try:
        accepted = [n for n in range(28, 60) if broadcaster.action_or_drop(ADDED, {"n": n})]
    finally:
        turnstile.let_through(60)
    assert accepted == [28]  # events 4 to 28 wait, 3 is in the thread's hands


def test_action_or_drop_does_not_wait_behind_a_producer_waiting_for_room(make: Make) -> None:
    """A producer blocked in action() on a full incoming queue does not make action_or_drop()
    wait for it: action_or_drop() still returns False at once. The blocked action() keeps
    its place, as in Go: a shutdown() called meanwhile waits for it, and its item is handed
    out before the watchers end."""
    broadcaster, gate, held = held_with_a_full_queue(make)
    blocked, errors = blocked_sender(broadcaster)

    answer: list[bool] = []
    dropper = start(lambda: answer.append(broadcaster.action_or_drop(ADDED, {"n": 99})))
    dropper.join(TIMEOUT)
    stopper = start(broadcaster.shutdown)
    stopper.join(0.05)
    gate.open()

    assert answer == [False]
    assert finished(blocked)
    assert finished(stopper)
    assert errors == []
    assert list(held) == [event(1)]
    assert held.dropped == 27  # events 2 to 28: the blocked one was handed out too


def test_action_or_drop_does_not_wait_for_a_producer_that_took_the_room_it_saw(
    make: Make,
) -> None:
    """action_or_drop() found room for one item while a producer in action() held the lock
    (the thread had just taken one), but that producer, or another one waiting for the lock,
    takes the room first and waits again for more: action_or_drop() still answers False at
    once, not once the thread takes another item."""
    broadcaster, gate, _ = held_with_a_full_queue(make)
    blocked = start(send, broadcaster, event(28))  # holds the lock while it waits for room
    assert waits_for_room(blocked)
    room_seen = [False]
    real_check = broadcaster._incoming_has_room

    def room_seen_once() -> bool:
        # the interleaving: the first look finds the slot the thread just freed, which the
        # producer takes before action_or_drop() gets the lock; later looks find none
        if not room_seen[0]:
            room_seen[0] = True
            return True
        return real_check()

    broadcaster._incoming_has_room = room_seen_once  # type: ignore[method-assign]
    answer: list[bool] = []
    dropper = start(lambda: answer.append(broadcaster.action_or_drop(ADDED, {"n": 99})))
    dropper.join(TIMEOUT)  # one that waits for room waits until the gate opens, below
    try:
        assert answer == [False]
    finally:
        gate.open()
        assert finished(dropper)
        assert finished(blocked)
    assert room_seen[0]


def test_drops_are_counted_and_reported_to_on_drop(make: Make) -> None:
    """In DROP mode each skipped item increments the watcher's dropped count and is passed to
    its on_drop; an on_drop that raises does not stop distribution."""
    broadcaster = make(1, DROP)
    reported: list[WatchEvent] = []

    def explode(_: WatchEvent) -> None:
        raise ValueError("on_drop failed")

    counted = broadcaster.watch(on_drop=reported.append)
    faulty = broadcaster.watch(on_drop=explode)
    quiet = broadcaster.watch()

    send(broadcaster, event(1), event(2), event(3))
    handed_out(broadcaster)

    assert reported == [event(2), event(3)]
    assert [w.dropped for w in (counted, faulty, quiet)] == [2, 2, 2]
    broadcaster.shutdown()
    assert [list(w) for w in (counted, faulty, quiet)] == [[event(1)]] * 3


def test_on_drop_may_stop_its_watcher(make: Make) -> None:
    """Watcher.stop() called from on_drop, on the distributing thread, ends that watcher at
    once and leaves the others untouched."""
    broadcaster = make(2, DROP)
    this: list[Watcher] = []
    # One of its two slots taken, so it overflows one item before `reader` does.
    dropping = broadcaster.watch_with_prefix([event(0)], on_drop=lambda _: this[0].stop())
    this.append(dropping)
    reader = broadcaster.watch()

    send(broadcaster, event(1), event(2))
    handed_out(broadcaster)
    assert dropping.stopped
    assert reader.get(0) == event(1)
    send(broadcaster, event(3))
    broadcaster.shutdown()

    assert list(dropping) == [event(0), event(1)]
    assert dropping.dropped == 1
    assert list(reader) == [event(2), event(3)]


def test_on_drop_cannot_call_what_would_wait_for_the_distributing_thread(make: Make) -> None:
    """From on_drop, shutdown, watch, action and action_or_drop raise RuntimeError instead of
    deadlocking."""
    broadcaster = make(1, DROP)
    calls: dict[str, Callable[[], object]] = {
        "shutdown": broadcaster.shutdown,
        "watch": broadcaster.watch,
        "action": lambda: broadcaster.action(ADDED, None),
        "action_or_drop": lambda: broadcaster.action_or_drop(ADDED, None),
    }
    refused: list[str] = []

    def call_back_in(_: WatchEvent) -> None:
        for name, call in calls.items():
            try:
                call()
            except RuntimeError as exc:
                if "distributing thread" in str(exc):
                    refused.append(name)

    broadcaster.watch(on_drop=call_back_in)
    send(broadcaster, event(1), event(2))
    handed_out(broadcaster)

    assert refused == list(calls)
    assert not broadcaster.stopped


def test_shutdown_delivers_queued_items_then_ends_watchers(make: Make) -> None:
    """Items still in the incoming queue when shutdown() is called reach every watcher; the
    streams end after them."""
    broadcaster = make(5, WAIT)
    watcher = broadcaster.watch()
    gate = broadcaster.watch_with_prefix([event(-n) for n in range(5)])  # 5 of 6 slots taken
    items = [event(n) for n in range(5)]
    send(broadcaster, *items)  # event 1 waits at the gate; 2 to 4 stay in the incoming queue
    shutter = start(broadcaster.shutdown)

    gate_items = list(gate)  # frees the gate, and ends only when shutdown closes it

    assert finished(shutter)
    assert gate_items == [event(-n) for n in range(5)] + items
    assert watcher.stopped
    assert watcher.pending() == 5
    assert list(watcher) == items
    assert watcher.get(0) is None


def test_distributing_thread_starts_on_first_use_and_shutdown_joins_it(make: Make) -> None:
    """The named daemon thread does not exist before the first watch(), and no longer exists
    when shutdown() returns."""
    name = "test-broadcaster-lifecycle"
    broadcaster = make(name=name)
    assert threads_named(name) == []

    broadcaster.watch()
    [thread] = threads_named(name)
    assert thread.daemon
    broadcaster.shutdown()

    assert not thread.is_alive()
    assert broadcaster.stopped


def test_shutdown_is_idempotent_and_every_caller_waits_for_the_thread(make: Make) -> None:
    """Concurrent and repeated shutdown() calls all return, each only after the distributing
    thread has ended."""
    name = "test-broadcaster-double-shutdown"
    broadcaster = make(name=name)
    broadcaster.watch()
    [thread] = threads_named(name)
    alive_after: list[bool] = []

    def shut_down() -> None:
        broadcaster.shutdown()
        alive_after.append(thread.is_alive())

    callers = [start(shut_down) for _ in range(3)]
    assert all(finished(c) for c in callers)
    broadcaster.shutdown()

    assert alive_after == [False, False, False]


def test_shutdown_of_a_never_used_broadcaster_starts_no_thread(make: Make) -> None:
    """Shutting down a broadcaster nobody used starts no thread and still stops it."""
    name = "test-broadcaster-unused"
    broadcaster = make(name=name)

    broadcaster.shutdown()

    assert broadcaster.stopped
    assert threads_named(name) == []


# --- a shutdown that never hangs (Go's Shutdown waits as long as a watcher does) ---------------


def delivering(thread: threading.Thread | None) -> bool:
    """True once ``thread`` waits to put an item in a full WAIT watcher (found on its stack)."""
    bound = time.monotonic() + TIMEOUT
    while thread is not None and time.monotonic() < bound:
        frame = sys._current_frames().get(thread.ident or -1)
        while frame is not None:
            if frame.f_code.co_name == "_put_waiting":
                return True
            frame = frame.f_back
        thread.join(0.001)
    return False


@pytest.fixture(name="reports")
def _reports() -> Iterator[ListHandler]:
    """The library's reports."""
    with on_library_logger(ListHandler()) as reports:
        yield reports


def test_shutdown_past_its_deadline_ends_a_watcher_nobody_reads_and_says_so(
    make: Make, reports: ListHandler
) -> None:
    """A WAIT watcher whose reader is gone (its function blocks forever) holds the thread;
    shutdown(timeout) hands out what it can until then, then ends every watcher (what they
    hold stays readable), lets the thread end, and says how many items were never handed
    out: 2 to 7. Before, it waited forever, as Go's Shutdown does."""
    broadcaster = make(1, WAIT)
    abandoned = broadcaster.watch()
    send(broadcaster, event(1), event(2))  # event 2 waits for room in `abandoned`
    assert delivering(broadcaster._thread)
    send(broadcaster, *(event(n) for n in range(3, 8)))
    thread = broadcaster._thread
    assert thread is not None

    stopper = start(broadcaster.shutdown, 0.0)

    try:
        assert finished(stopper)
        assert finished(thread)
    finally:
        abandoned.stop()  # where shutdown waited forever, so that the test ends
    assert broadcaster.stopped
    assert list(abandoned) == [event(1)]
    [said] = [text for text in reports.messages() if "shutdown" in text]
    assert "6 queued item(s) were not handed out" in said, said
    with pytest.raises(BroadcasterStopped, match=STOPPED):
        send(broadcaster, event(8))


def test_shutdown_does_not_wait_forever_for_an_on_drop_that_never_returns(
    make: Make, reports: ListHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``on_drop`` that blocks holds the thread where nothing can free it: shutdown()
    (its default deadline here made 0) returns, says the thread is still busy and was left
    to itself (a daemon), and the producer waiting for room meanwhile is told the
    broadcaster stopped rather than waiting on."""
    monkeypatch.setattr(broadcaster_module, "DEFAULT_SHUTDOWN_TIMEOUT", 0.0, raising=False)
    broadcaster, gate, _ = held_with_a_full_queue(make, hold=60)  # the test's end opens it
    blocked, errors = blocked_sender(broadcaster)
    try:
        stopper = start(broadcaster.shutdown)
        assert finished(stopper)
        assert finished(blocked)
        assert broadcaster.stopped
        assert [type(e) for e in errors] == [BroadcasterStopped]
        [said] = [text for text in reports.messages() if "shutdown" in text]
        assert "25 queued item(s) were not handed out" in said, said  # events 3 to 27
        assert "still busy" in said, said
    finally:
        gate.open()


def test_a_shutdown_that_gives_up_counts_what_the_thread_took_but_never_handed_out(
    make: Make, reports: ListHandler
) -> None:
    """Every item a shutdown gives up on is in the count it reports, those the thread took
    from the incoming queue included: here events 4 to 27 (3, held in on_drop, is counted
    dropped). Before, items the thread had taken were lost uncounted: it said 0."""
    broadcaster, turnstile = held_again_after_a_full_queue(make)
    try:
        broadcaster.shutdown(0.0)
    finally:
        turnstile.let_through(60)
    [said] = [text for text in reports.messages() if "shutdown" in text]
    assert "24 queued item(s) were not handed out" in said, said


def test_an_item_a_shutdown_finds_in_on_drop_is_counted_once_as_dropped(
    make: Make, reports: ListHandler
) -> None:
    """A shutdown that gave up while the thread was in an ``on_drop`` counted that item twice:
    in the watcher's ``dropped`` and among the items "not handed out" (events 2 to 27 said
    26, for 27 sent: 1 delivered, 1 dropped). Each item is counted once: delivered, dropped,
    or not handed out."""
    broadcaster, gate, held = held_with_a_full_queue(make)
    try:
        broadcaster.shutdown(0.0)
    finally:
        gate.open()
    [said] = [text for text in reports.messages() if "shutdown" in text]
    not_handed_out = int(said.split(" queued item(s)")[0].rsplit(" ", 1)[1])
    assert (held.delivered, held.dropped, not_handed_out) == (1, 1, 25)


def test_stop_does_not_wait_forever_behind_a_watcher_nobody_reads(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping one watcher while the thread is held by another (a full WAIT watcher nobody
    reads): the stopped one ends at once and gets nothing more; its removal from the
    thread's list, which went through the held thread, no longer holds stop() (here its
    wait is made 0): it is tidied away later, at the latest by shutdown."""
    monkeypatch.setattr(broadcaster_module, "_STOP_WAIT_SECONDS", 0.0, raising=False)
    broadcaster = make(1, WAIT)
    abandoned = broadcaster.watch()
    other = broadcaster.watch()
    send(broadcaster, event(1), event(2))  # event 2 waits for room in `abandoned`
    assert delivering(broadcaster._thread)

    stopper = start(other.stop)

    try:
        assert finished(stopper)
    finally:
        abandoned.stop()  # where stop() waited forever, so that the test ends
    assert other.stopped
    assert list(other) in ([], [event(1)])  # its stream has ended (event 1 if it came alone)


def test_get_returns_none_on_timeout_without_ending_the_stream(make: Make) -> None:
    """get(0) on an empty live watcher returns None at once and the watcher keeps working."""
    broadcaster = make()
    watcher = broadcaster.watch()

    assert watcher.get(0) is None
    assert watcher.get(timeout=0.01) is None
    assert not watcher.stopped
    send(broadcaster, event(1))
    assert watcher.get(TIMEOUT) == event(1)


def test_context_managers_stop_the_watcher_and_shut_the_broadcaster_down() -> None:
    """Leaving a watcher's with-block stops it; leaving the broadcaster's shuts it down."""
    with Broadcaster(name="test-broadcaster-with") as broadcaster:
        with broadcaster.watch() as watcher:
            send(broadcaster, event(1))
        assert watcher.stopped
    assert broadcaster.stopped
    assert threads_named("test-broadcaster-with") == []


def test_negative_queue_length_is_rejected() -> None:
    """A negative queue length raises ValueError."""
    with pytest.raises(ValueError, match="queue_length must be >= 0"):
        Broadcaster(queue_length=-1)


def test_a_detached_watcher_is_a_handle_whose_stop_only_detaches() -> None:
    """``Watcher.detached()`` belongs to no broadcaster and never carries an item: until it
    is stopped a read finds nothing (and waits no longer than asked), after it the stream
    has ended; stopping twice is harmless."""
    handle = Watcher.detached()
    assert (handle.stopped, handle.get(0)) == (False, None)
    assert handle.get_batch(timeout=0) == []
    assert (handle.delivered, handle.dropped, handle.pending()) == (0, 0, 0)
    handle.stop()
    handle.stop()
    assert handle.stopped
    assert list(handle) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_uses_the_broadcaster_with_a_thread_of_its_own() -> None:
    """A child forked while the distributing thread is busy (blocked delivering to a full
    WAIT watcher) has no such thread: it still adds a watcher and queues an item that
    reaches it and the inherited watcher, whose queue holds none of the parent's items, and
    shuts down within seconds. (Before, its first watch() waited forever for the parent's
    thread.)"""
    b = Broadcaster(queue_length=1)
    stuck = b.watch()
    for n in range(3):  # the watcher holds one, the thread waits to hand it the next
        b.action_or_drop(ADDED, n)

    def in_child() -> dict[str, object]:
        signal.alarm(10)
        own = b.watch()
        b.action(MODIFIED, "child")
        got = own.get(timeout=TIMEOUT)
        b.shutdown()
        return {"got": repr(got), "stuck": [repr(e) for e in stuck.get_batch(timeout=0)]}

    try:
        answer = answer_from_fork(in_child)
    finally:
        stuck.stop()
        b.shutdown()
    child = repr(WatchEvent(MODIFIED, "child"))
    assert answer == {"got": child, "stuck": [child]}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_childs_watcher_counts_only_the_childs_items() -> None:
    """A DROP watcher kept one of the parent's items and skipped two; in a child forked
    then, its ``delivered`` and ``dropped`` start at zero, as its queue does: the parent's
    items are not the child's (structured logging warns of each item its watcher skipped,
    and a child would warn of the parent's again)."""
    b = Broadcaster(queue_length=1, full_channel_behavior=DROP)
    watcher = b.watch()
    for n in range(3):
        b.action(ADDED, n)
    handed_out(b)
    assert (watcher.delivered, watcher.dropped) == (1, 2)
    try:
        answer = answer_from_fork(
            lambda: {"delivered": watcher.delivered, "dropped": watcher.dropped}
        )
    finally:
        b.shutdown()
    assert answer == {"delivered": 0, "dropped": 0}
