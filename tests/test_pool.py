"""The writer pool: a sink that must ask the server its API is set up there, never on the
dispatcher, and what was logged meanwhile is kept aside, bounded, and written exactly.

Against the local API server over real HTTP, with the handler's ``api="auto"``: building the
client (where a kubeconfig ``exec`` plugin may run) and the discovery request are recorded
with the thread that made them, and a gate holds discovery to show what happens while it
has not answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from k8s_logging_events import (
    _diagnostics,
    _errors,
    _flush,
    _pool,
    _runtime,
    _sanitise,
    models,
    recorder,
    sink,
)
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests._sinks import SetUpHangs
from tests.reliability_scenarios import (
    ListHandler,
    app_logger,
    on_library_logger,
    pod,
    stored_counts,
    thread_limit_once,
    writers_never_start,
)
from tests.test_pending import START, Pending
from tests.test_pending import _occurrence as occurrence

PODS = [pod(name) for name in ("web", "db", "cache")]


@pytest.fixture(name="reports")
def _reports() -> Iterator[ListHandler]:
    """The library's reports."""
    with on_library_logger(ListHandler()) as reports:
        yield reports


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer() as server:
        # core/v1 Events, whose counts read simply; the discovery request is still made
        server.inject("GET", path="^/apis/events.k8s.io/v1$", status=404, times=None)
        yield server


class Discovery:
    """Records which thread builds the client and asks the server its API; may hold the
    question until the test opens the gate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, held: bool) -> None:
        self.threads: list[tuple[str, threading.Thread]] = []
        self.asked = threading.Event()
        self.gate = threading.Event()
        if not held:
            self.gate.set()
        build, discover = sink.LazySink._build, sink.KubernetesEventSink.discover_api

        def recorded_build(lazy: sink.LazySink) -> None:
            self.threads.append(("build", threading.current_thread()))
            build(lazy)

        def held_discover(real: sink.KubernetesEventSink) -> str:
            self.threads.append(("discover", threading.current_thread()))
            self.asked.set()
            assert self.gate.wait(30), "the test never opened the gate"
            return discover(real)

        monkeypatch.setattr(sink.LazySink, "_build", recorded_build)
        monkeypatch.setattr(sink.KubernetesEventSink, "discover_api", held_discover)


def _handler(server: LocalApiServer, **options: object) -> KubernetesEventHandler:
    return KubernetesEventHandler(
        sink=server.url,
        api="auto",
        component="pool",
        **options,  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def _held(
    server: LocalApiServer, monkeypatch: pytest.MonkeyPatch, **options: object
) -> Iterator[tuple[KubernetesEventHandler, Discovery]]:
    """A handler whose discovery waits for the gate; both end with the block."""
    discovery = Discovery(monkeypatch, held=True)
    handler = _handler(server, **options)
    try:
        yield handler, discovery
    finally:
        discovery.gate.set()
        handler.close()


def _log(handler: KubernetesEventHandler, count: int) -> None:
    log = app_logger("pool")
    log.addHandler(handler)
    for index in range(count):
        involved = PODS[index % len(PODS)]
        log.warning("Back-off pulling image", extra={"involved": involved, "reason": "BackOff"})


def _taken_off_the_queue(events: recorder.EventBroadcaster) -> None:
    """Return once the dispatcher has taken every occurrence offered so far off the queue
    (found in its hand-off count, not assumed after a pause); bounded only against a hang."""
    runtime = events._runtime
    deadline = time.monotonic() + 10

    def queued() -> int:  # as stats() counts them
        return runtime.accepted - runtime._queue_drops.value - runtime._handoff.taken()

    while queued() > 0 and time.monotonic() < deadline:
        threading.Event().wait(0.01)


def _accounted(stats: dict[str, int]) -> int:
    """The occurrences with an outcome; ``accepted`` when nothing is pending."""
    outcomes = ("dropped", "created", "patched", "coalesced", "failed", "discarded")
    return sum(stats[outcome] for outcome in outcomes)


def test_the_dispatcher_never_builds_the_client_nor_asks_the_server(server, monkeypatch) -> None:
    """With ``api="auto"``, the client is built and the server asked which Events API it
    serves on a writer thread: never on the dispatcher, never on the thread that logs."""
    discovery = Discovery(monkeypatch, held=False)
    handler = _handler(server)
    try:
        _log(handler, 30)
        assert handler.drain(10)
        events = handler.broadcaster
        assert events is not None
        dispatchers = [t for t in events.threads() if "-dispatcher-" in t.name]
    finally:
        handler.close()
    assert [what for what, _ in discovery.threads] == ["build", "discover"]
    assert len(dispatchers) == 1
    for _, thread in discovery.threads:
        assert thread is not dispatchers[0]
        assert thread is not threading.current_thread()
        assert "-writer-" in thread.name
    assert stored_counts(server) == {"web": 10, "db": 10, "cache": 10}


class IoThreads:
    """Records the thread of every socket call (a connection, a name looked up, bytes sent
    or read, on the sink's channel and on urllib3's) and of every subprocess started (a
    kubeconfig ``exec`` plugin)."""

    CALLS = ("connect", "connect_ex", "send", "sendall", "recv", "recv_into")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: dict[int, threading.Thread] = {}  # by id(): an ident is reused
        for name in self.CALLS:
            monkeypatch.setattr(socket.socket, name, self._seen(getattr(socket.socket, name)))
        monkeypatch.setattr(socket, "getaddrinfo", self._seen(socket.getaddrinfo))
        monkeypatch.setattr(subprocess.Popen, "__init__", self._seen(subprocess.Popen.__init__))

    def _seen(self, call: Any) -> Any:
        def seen(*args: Any, **kwargs: Any) -> Any:
            thread = threading.current_thread()
            self.threads[id(thread)] = thread
            return call(*args, **kwargs)

        return seen


def test_no_socket_call_nor_subprocess_is_made_on_the_dispatcher(server, monkeypatch) -> None:
    """Rule 10, over a handler's whole life: the client built and the server asked its API
    (``api="auto"``), the pod's uid read (``default_involved="pod"``), creates, a retry
    after a 500, count patches, a second process's takeover of the same event (a create
    met by AlreadyExists, then a read), flush and close. Every socket call and subprocess is
    made on another thread than a dispatcher (the writers', the server's). (Where no
    thread can ever start again, 3.12's exit, the dispatcher writes too: below.)"""
    monkeypatch.setenv("POD_NAME", "web-0")
    monkeypatch.setenv("POD_NAMESPACE", "default")
    monkeypatch.delenv("POD_UID", raising=False)
    server.add_pod("web-0")
    server.inject("POST", path="/events$", status=500)
    io = IoThreads(monkeypatch)
    dispatchers: list[threading.Thread] = []
    for _ in range(2):  # the second handler, a restarted process, continues the counts
        # the retry comes at once, not after a random part of the default 10 s
        handler = _handler(server, default_involved="pod", sleep_duration=0)
        try:
            _log(handler, 30)
            own = app_logger("pool")
            own.addHandler(handler)
            own.warning("Started", extra={"reason": "Started"})  # about the pod itself
            assert handler.drain(10)
            events = handler.broadcaster
            assert events is not None
            dispatchers += [t for t in events.threads() if "-dispatcher-" in t.name]
        finally:
            handler.close()
    assert len(dispatchers) == 2
    assert io.threads, "no I/O was recorded: the check would see none on the dispatcher"
    on_dispatchers = [t for t in io.threads.values() if any(t is d for d in dispatchers)]
    assert not on_dispatchers
    assert stored_counts(server) == {"web": 20, "db": 20, "cache": 20, "web-0": 2}
    gets = [r.path for r in server.requests if r.method == "GET"]
    assert "/api/v1/namespaces/default/pods/web-0" in gets  # the uid, read by each
    assert any("/events/" in path for path in gets)  # the takeover's read


def test_occurrences_logged_before_discovery_answers_are_all_written(server, monkeypatch) -> None:
    """While the server has not said its API, the dispatcher keeps the sink's occurrences
    aside (pending in stats, nothing written); once it has, every one is written, in one
    event per pod with the exact count, and a flush waits for that."""
    with _held(server, monkeypatch) as (handler, discovery):
        _log(handler, 150)
        assert discovery.asked.wait(10)
        _log(handler, 150)
        stats = handler.stats()
        assert (stats["accepted"], stats["pending"], _accounted(stats)) == (300, 300, 0)
        assert not handler.drain(0.2)  # a flush waits for the set-up, within its deadline
        assert server.events("default") == []
        discovery.gate.set()
        assert handler.drain(10)
        stats = handler.stats()
    assert stored_counts(server) == {"web": 100, "db": 100, "cache": 100}
    assert (stats["pending"], stats["dropped"], stats["failed"]) == (0, 0, 0)
    assert stats["created"] + stats["patched"] + stats["coalesced"] == 300
    assert [what for what, _ in discovery.threads] == ["build", "discover"]


def test_what_is_kept_aside_is_bounded_by_queue_length(server, monkeypatch) -> None:
    """queue_length bounds the occurrences kept aside as it bounds pending writes: beyond
    it they are dropped and counted, and every other one is written."""
    with _held(server, monkeypatch, queue_length=20) as (handler, discovery):
        for _ in range(8):  # in steps, so that the dispatcher takes each off the queue
            _log(handler, 15)
            events = handler.broadcaster  # made at the first record
            assert events is not None
            _taken_off_the_queue(events)
        assert discovery.asked.wait(10)  # the writer may still be building the client
        stats = handler.stats()
        assert stats["pending"] <= 2 * 20
        discovery.gate.set()
        assert handler.drain(10)
        stats = handler.stats()
    assert stats["accepted"] == 120
    assert stats["dropped"] >= 120 - 2 * 20
    assert _accounted(stats) == 120
    written = stats["created"] + stats["patched"] + stats["coalesced"]
    assert sum(stored_counts(server).values()) == written == 120 - stats["dropped"]


def test_what_is_dropped_while_kept_aside_is_reported_in_occurrences(
    server, monkeypatch, reports
) -> None:
    """The reports of occurrences dropped beyond queue_length while the sink is set up
    count them as stats() does: the last summary's total is the number dropped."""
    with _held(server, monkeypatch, queue_length=20) as (handler, discovery):
        for _ in range(4):
            _log(handler, 15)
            events = handler.broadcaster
            assert events is not None
            _taken_off_the_queue(events)
        discovery.gate.set()
        assert handler.drain(10)
        dropped = handler.stats()["dropped"]
    assert dropped > 0
    said = [m for m in reports.messages() if "queue_length" in m]
    counted = [int(n) for m in said for n in re.findall(r"\((\d+) occurrence\(s\) in all\)", m)]
    first = [int(n) for n in re.findall(r"; (\d+) occurrence\(s\) dropped$", said[0])]
    totals = counted or first
    assert totals, said
    assert totals[-1] == dropped, said


def test_close_gives_up_what_waits_for_a_set_up_that_never_ends(
    server, monkeypatch, reports
) -> None:
    """A discovery that never answers costs the close its deadline and no more: what was
    kept aside is given up, counted as failed, and said once."""
    discovery = Discovery(monkeypatch, held=True)
    handler = _handler(server, flush_timeout=0.3)
    try:
        _log(handler, 40)
        assert discovery.asked.wait(10)
        handler.close()
        stats = handler.stats()
    finally:
        discovery.gate.set()  # the writer ends: the test leaves no thread behind
    assert (stats["accepted"], stats["failed"], stats["pending"]) == (40, 40, 0)
    assert _accounted(stats) == 40
    (said,) = [m for m in reports.messages() if "still being set up" in m]
    assert said.startswith("40 occurrences of pool were not written"), said
    # and what would change it: the exit's time, or an api that needs no question
    assert "see flush_timeout; an api of v1 or events.k8s.io/v1 asks no question" in said, said


class _Unsure(FakeEventSink):
    """A sink whose ``api_known`` raises, then whose ``api`` does."""

    @property
    def api_known(self) -> bool:
        raise RuntimeError("api_known is broken")

    @property
    def api(self) -> str:
        raise RuntimeError("api is broken")


def test_a_sink_that_cannot_say_its_api_costs_its_occurrences_only() -> None:
    """A sink whose ``api_known`` and ``api`` raise is set up on a writer, which fails:
    its occurrences are counted as failed, and a second sink writes every one of them."""
    broadcaster = recorder.EventBroadcaster(queue_length=100)
    good = FakeEventSink()
    broadcaster.start_recording_to_sink(_Unsure())
    broadcaster.start_recording_to_sink(good)
    record = broadcaster.new_recorder("pool")
    try:
        for index in range(12):
            record.event(PODS[index % len(PODS)], "Warning", "BackOff", "Back-off pulling image")
        assert broadcaster.flush(10)
        stats = broadcaster.stats()
    finally:
        broadcaster.shutdown(5)
    assert (stats["accepted"], stats["failed"], stats["pending"]) == (12, 12, 0)
    assert sum(event.count for event in good.events) == 12


def test_a_set_up_that_hangs_stalls_like_a_request_and_holds_up_no_other_sink() -> None:
    """A sink's set-up is a request (discovery): one that hangs past the stall time no
    longer counts against ``writers``, as a write would not, so that with one writer a
    second sink still writes every occurrence while the first has not answered."""
    broadcaster = recorder.EventBroadcaster(queue_length=100, writers=1)
    hanging, good = SetUpHangs(), FakeEventSink()
    broadcaster.start_recording_to_sink(hanging)
    broadcaster.start_recording_to_sink(good)
    record = broadcaster.new_recorder("pool")
    try:
        for index in range(5):
            record.event(pod(f"p{index}"), "Warning", "BackOff", "Back-off pulling image")
        assert hanging.asked.wait(10)
        written = good.wait_for_calls(5, timeout=10)
        hanging.gate.set()
        assert broadcaster.flush(10)
    finally:
        hanging.gate.set()
        broadcaster.shutdown(5)
    assert written, "the second sink waited for the first one's set-up"
    assert sorted(e.involved_object.name for e in good.events) == [f"p{i}" for i in range(5)]
    assert len(hanging.events) == 5


def test_a_flush_that_times_out_during_a_set_up_says_what_the_occurrences_wait_for(
    reports,
) -> None:
    """A flush that runs out of time while a sink is still being set up (its client built,
    the server asked which API it serves, where an exec plugin or a discovery may hang) says
    that is what its occurrences wait for, as the close after it does; not that they were
    never handed to a writer, which points at flush_timeout alone."""
    broadcaster = recorder.EventBroadcaster(queue_length=100)
    hanging = SetUpHangs()
    broadcaster.start_recording_to_sink(hanging)
    record = broadcaster.new_recorder("pool")
    try:
        for index in range(3):
            record.event(pod(f"p{index}"), "Warning", "BackOff", "Back-off pulling image")
        assert hanging.asked.wait(10)
        assert not broadcaster.flush(0.2)
    finally:
        hanging.gate.set()
        broadcaster.shutdown(5)
    (said,) = [m for m in reports.messages() if "within the flush's" in m]
    assert said.startswith("Unable to write 3 event occurrence(s)"), said
    assert "3 waiting for their sink to be set up" in said, said
    assert "not yet handed to a writer" not in said, said


def test_a_write_queued_as_the_last_writer_ends_still_gets_a_writer(monkeypatch) -> None:
    """A write queued just as the only writer, finding no work, decides to end is taken by
    it or by a new writer: never left ready with no thread for it while the dispatcher
    sleeps (a flush would wait for the dispatcher's idle wake-up, and time out)."""
    monkeypatch.setattr(_pool, "WRITER_LINGER_SECONDS", 0.0)  # a writer ends once idle
    monkeypatch.setattr(_runtime, "IDLE_WAIT_SECONDS", 60.0)  # the sleep only a hang ends
    armed, paused, gate = threading.Event(), threading.Event(), threading.Event()
    original_take = _pool.WriterPool._take_job

    def take_job(self: _pool.WriterPool) -> _pool.Job | None:
        job = original_take(self)
        # held where its lock is free, between its last look for work and its end
        if job is None and armed.is_set() and not self._cond._is_owned():  # type: ignore[attr-defined]
            armed.clear()
            paused.set()
            gate.wait(10)
        return job

    tended: list[int] = []
    original_tend = _runtime.Runtime._tend

    def tend(self: _runtime.Runtime) -> bool:
        delivered = self._handoff.delivered
        try:
            return original_tend(self)
        finally:
            tended.append(delivered)

    monkeypatch.setattr(_pool.WriterPool, "_take_job", take_job)
    monkeypatch.setattr(_runtime.Runtime, "_tend", tend)
    fake = FakeEventSink()
    b = recorder.EventBroadcaster(writers=1)
    try:
        b.start_recording_to_sink(fake)
        rec = b.new_recorder("ending")
        runtime, pool = b._runtime, b._runtime._pool
        armed.set()
        rec.event(pod("first"), models.WARNING, "BackOff", "one")
        bound = time.monotonic() + 10  # reached only by a hang
        while not paused.is_set() and not (fake.events and not pool.threads()):
            assert time.monotonic() < bound
            time.sleep(0.001)
        writers = pool.threads()
        rec.event(pod("second"), models.WARNING, "BackOff", "two")
        while not tended or tended[-1] < 2:  # the dispatcher has looked for writers for it
            assert time.monotonic() < bound
            time.sleep(0.001)
        gate.set()
        for writer in writers:
            writer.join(10)
        with runtime._cond:
            stranded = pool.ready() and not pool.busy()
        assert not stranded
        assert b.flush(10)
        assert sorted(e.message for e in fake.events) == ["one", "two"]
    finally:
        gate.set()
        b.shutdown(2)


def test_a_writer_that_cannot_start_for_a_moment_is_started_again_later(monkeypatch) -> None:
    """No thread for a writer for a moment (a pids limit: "can't start new thread"): the
    write waits for a writer started a moment later, and the next write gets one too. The
    failure was once taken for the interpreter's exit: the dispatcher made every later
    request itself, one at a time, for the rest of the process (one hanging request held up
    the queue); later the dispatcher still made that one write itself (rule 10: never)."""
    limit = thread_limit_once(monkeypatch, "writer")
    fake = FakeEventSink()
    writers: list[threading.Thread] = []
    fake.on_create = lambda _: writers.append(threading.current_thread())
    b = recorder.EventBroadcaster()
    try:
        b.start_recording_to_sink(fake)
        rec = b.new_recorder("limited")
        rec.event(pod("first"), models.WARNING, "BackOff", "one")
        assert b.flush(10)
        assert limit.refused
        rec.event(pod("second"), models.WARNING, "BackOff", "two")
        assert b.flush(10)
    finally:
        b.shutdown(2)
    assert sorted(e.message for e in fake.events) == ["one", "two"]
    assert limit.started, "no writer was started after the first could not be"
    assert ["-writer-" in thread.name for thread in writers] == [True, True]


def test_while_no_writer_can_start_a_flush_makes_the_writes_on_its_own_thread(
    server, monkeypatch, caplog
) -> None:
    """A pids limit that lasts (every writer's start meets "can't start new thread"): it is
    said (rate-limited), and a flush sets the sink up (``api="auto"``) and makes the writes on its
    own thread, never on the dispatcher. Unsaid, the flush waited its whole timeout and
    wrote nothing, each write waiting for a writer the dispatcher tried again to start."""
    refused: list[str] = []
    start = threading.Thread.start

    def limited(thread: threading.Thread) -> None:
        if "-writer-" in thread.name:
            refused.append(thread.name)
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", limited)
    io = IoThreads(monkeypatch)
    handler = _handler(server)
    try:
        with caplog.at_level(logging.WARNING, logger=_diagnostics.LOGGER_NAME):
            _log(handler, 9)
            assert handler.drain(3)
        events = handler.broadcaster
        assert events is not None
        dispatchers = [t for t in events.threads() if "-dispatcher-" in t.name]
    finally:
        handler.close()
    reports = [r.getMessage() for r in caplog.records if "writer thread" in r.getMessage()]
    assert 0 < len(reports) < len(refused), reports  # said, within its rate limit
    assert "can't start new thread" in reports[0]
    assert stored_counts(server) == {"web": 3, "db": 3, "cache": 3}
    assert threading.current_thread() in io.threads.values()
    assert dispatchers
    assert not [t for t in io.threads.values() if any(t is d for d in dispatchers)]


def test_where_no_thread_can_ever_start_again_the_dispatcher_writes_as_events_come(
    server, monkeypatch
) -> None:
    """Python 3.12.0 to 3.12.2 refuse every new thread once the main thread has returned,
    while the application's other threads log on (for hours, maybe). The dispatcher, then
    the library's only thread, makes the writes itself (rule 10's one exception): each
    event reaches the server as it is logged, with no flush. They waited for the exit's
    flush instead, which had only ``flush_timeout`` for all of them."""
    monkeypatch.setattr(_pool, "WRITER_LINGER_SECONDS", 0.0)  # a writer ends once idle
    handler = _handler(server)
    try:
        _log(handler, 3)
        assert handler.drain(10)
        (dispatcher,) = [t for t in handler.threads() if "-dispatcher-" in t.name]
        bound = time.monotonic() + 10  # reached only by a hang
        while handler.threads() != [dispatcher]:  # the writers end
            assert time.monotonic() < bound
            threading.Event().wait(0.01)

        def refuse(thread: threading.Thread) -> None:  # as 3.12's exit does, for good
            raise RuntimeError("can't create new thread at interpreter shutdown")

        monkeypatch.setattr(threading.Thread, "start", refuse)
        io = IoThreads(monkeypatch)
        _log(handler, 6)
        while stored_counts(server) != {"web": 3, "db": 3, "cache": 3}:
            assert time.monotonic() < bound, stored_counts(server)
            threading.Event().wait(0.01)
    finally:
        handler.close()
    assert [t for t in io.threads.values() if t is dispatcher], "the dispatcher wrote nothing"


class _UnprintableError(Exception):
    """An error whose text cannot be read (a broken library's exception)."""

    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


@pytest.mark.parametrize(
    "error",
    [_UnprintableError(), SystemExit(3), asyncio.CancelledError(), KeyboardInterrupt()],
    ids=["unprintable", "SystemExit", "CancelledError", "KeyboardInterrupt"],
)
def test_a_sink_error_costs_its_write_not_a_writer(error: BaseException) -> None:
    """A sink raised an exception whose ``__str__`` raises (reading its text for the retry
    decision and the report raised again), or a BaseException that is no Exception (a
    helper's sys.exit(), asyncio's CancelledError out of an async client the sink runs): it
    killed the writer thread, and the write stayed in flight for good, so no later event
    about that object was written and every flush waited its whole timeout. The write is
    retried and given up as with any error, counted failed, and said with the error's type;
    no writer dies."""
    fake = FakeEventSink()

    def raising(event: models.Event) -> models.Event:
        raise error

    fake.on_create = raising
    died, flushed, stats, reports = _record_through(fake, 3)
    assert died == []
    assert flushed
    assert (stats["accepted"], stats["failed"], stats["pending"]) == (3, 3, 0)
    assert any(type(error).__name__ in text for text in reports), reports


def _record_through(
    event_sink: FakeEventSink, events: int
) -> tuple[list[threading.ExceptHookArgs], bool, Mapping[str, int], list[str]]:
    """Record ``events`` events about distinct pods into ``event_sink`` (two tries each) and
    flush: what threading's excepthook saw, whether the flush ended, the counters, and the
    library's reports."""
    died: list[threading.ExceptHookArgs] = []
    hook, threading.excepthook = threading.excepthook, died.append
    broadcaster = recorder.EventBroadcaster(queue_length=100, max_tries=2, sleep_duration=0.001)
    broadcaster.start_recording_to_sink(event_sink)
    record = broadcaster.new_recorder("pool")
    try:
        with on_library_logger(ListHandler()) as reports:
            for index in range(events):
                record.event(PODS[index], "Warning", "BackOff", "Back-off pulling image")
            flushed = broadcaster.flush(5)
            stats = broadcaster.stats()
    finally:
        broadcaster.shutdown(5)
        threading.excepthook = hook
    return died, flushed, stats, reports.messages()


class _UnsaidSink(FakeEventSink):
    """A sink whose optional descriptions (``host``, ``credentials``, the rate limit's
    waiting count) raise: a lazily built client of a user's own sink, say."""

    def _unsaid(self) -> str:
        raise RuntimeError("not built yet")

    host = property(_unsaid)
    credentials = property(_unsaid)
    waiting_for_rate_limit = property(_unsaid)


@pytest.mark.parametrize(
    "error",
    [sink.ApiStatusError(401, "Unauthorized"), ConnectionRefusedError(111, "refused")],
    ids=["401", "unreachable"],
)
def test_a_sink_whose_descriptions_raise_costs_its_write_not_a_writer(error: Exception) -> None:
    """The report of a 401 names the sink's credentials, that of an unreachable server its
    host, and the summary of what a flush could not write its rate limit's waiting count:
    read from a sink whose properties raise, they raised on the writer thread and killed it
    (threading's excepthook saw it); the summary of what was not written failed the same
    way. They are left out; the write fails as any other, counted and said."""
    unsaid = _UnsaidSink()
    unsaid.fail_next("create", error, times=10)
    died, flushed, stats, reports = _record_through(unsaid, 1)
    assert died == []
    assert flushed
    assert (stats["accepted"], stats["failed"], stats["pending"]) == (1, 1, 0)
    assert any("Unable to write event" in text for text in reports), reports
    summary = _errors.unwritten_summary([], [unsaid], when="at the deadline", queued=1)
    assert "1 event occurrence(s)" in summary


class _OnePool:
    """A writer pool of ``writers`` over one recording of pending writes (the harness of
    test_pending), driven on this thread: which job it hands out, how a write ends."""

    def __init__(self, *, writers: int) -> None:
        self.pending = Pending(FakeClock(START))
        self.recording = _pool.Recording(self.pending.writes, setup=lambda: pytest.fail("setup"))
        self.woken = 0
        shared = _pool.Shared(
            capacity=100,
            writers=writers,
            namer=_sanitise.EventNamer(),
            counters=self.pending.counters,
            reporter=self.pending.reporter,
            name="test",
        )
        self.cond = threading.Condition(threading.RLock())
        self.pool = _pool.WriterPool(
            self.cond, shared, recordings=lambda: [self.recording], wake=self._wake
        )

    def _wake(self) -> None:
        self.woken += 1

    def take(self) -> _pool.Job | None:
        with self.cond:
            return self.pool._take_job()


def _occurrences(pool: _OnePool, *pods: str) -> None:
    for name in pods:
        pool.pending.offer(occurrence(name))


def test_no_more_requests_are_in_flight_than_writers() -> None:
    """Three events ready, two writers: two requests go, the third waits for an answer."""
    one = _OnePool(writers=2)
    _occurrences(one, "web", "db", "cache")
    first, second = one.take(), one.take()
    assert first is not None
    assert second is not None
    assert one.take() is None
    one.pool._perform(*first)
    assert one.take() is not None


def test_a_write_failing_while_the_pool_stops_is_given_up_at_once() -> None:
    """At close no retry is scheduled for a request that fails: its occurrence is failed."""
    one = _OnePool(writers=1)
    _occurrences(one, "web")
    job = one.take()
    assert job is not None
    one.pending.fake.fail_next("create", ConnectionRefusedError("refused"))
    with one.cond:
        one.pool.stop()
    one.pool._perform(*job)
    assert one.pending.writes.next_due() is None
    assert one.pending.outcomes()["failed"] == 1


def test_a_retry_scheduled_by_a_writer_wakes_the_dispatcher() -> None:
    """A failed write waits on the dispatcher's timer: the writer has it look at its timers
    again (else the retry waits for the next log call or the idle wait)."""
    one = _OnePool(writers=1)
    _occurrences(one, "web")
    job = one.take()
    assert job is not None
    one.pending.fake.fail_next("create", ConnectionRefusedError("refused"))
    one.pool._perform(*job)
    assert one.pending.writes.next_due() is not None
    assert one.woken == 1


def test_a_flush_waiting_on_writer_threads_is_woken_by_the_landing_that_completes_it(
    monkeypatch,
) -> None:
    """A flush waits while writer threads work; the write that lands last of those it waits
    for wakes it (an earlier one need not): it returns then, not at its next look (a minute)."""
    monkeypatch.setattr(_flush, "POLL_SECONDS", 60.0)
    one = _OnePool(writers=2)
    _occurrences(one, "web", "db")
    first, second = one.take(), one.take()
    assert first is not None
    assert second is not None
    marker = _flush.Marker()
    with one.cond:
        marker.reach([one.recording], [])
    one.pool._workers.add(threading.current_thread())  # the writer thread, busy
    flushed: list[bool] = []

    def flush() -> None:
        deadline = _flush.Deadline(60)
        waiting = one.pool.flushes
        flushed.append(_flush.wait_written(marker, deadline, one.cond, lambda: True, bool, waiting))

    flusher = threading.Thread(target=flush, daemon=True)
    flusher.start()
    bound = time.monotonic() + 10  # reached only by a flush that never waits
    while not one.pool.flushes and time.monotonic() < bound:
        time.sleep(0.001)
    one.pool._perform(*first)
    one.pool._perform(*second)
    flusher.join(10)  # reached only by a flush that missed its wake-up
    assert flushed == [True]
    assert not one.pool.flushes


def test_a_ctrl_c_in_a_write_a_flush_makes_on_its_own_thread_leaves_no_write_in_flight(
    monkeypatch,
) -> None:
    """Where no writer can start, a flush makes the writes on the caller's thread, and a
    Ctrl-C there reaches the caller, as it must. But the write it cut short stayed in flight
    for good: every later occurrence about its object waited behind it, no flush wrote them,
    and the request was reported as in flight ever after. The cut write is settled as a failed
    attempt first (tried again), then the Ctrl-C goes on."""
    writers_never_start(monkeypatch)
    fake = FakeEventSink()
    fake.fail_next("create", KeyboardInterrupt())
    b = recorder.EventBroadcaster(sleep_duration=0.0)
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("pool")
    try:
        rec.event(pod("web"), "Warning", "BackOff", "Back-off pulling image")
        with pytest.raises(KeyboardInterrupt):
            b.flush(10)
        rec.event(pod("web"), "Warning", "BackOff", "Back-off pulling image")
        assert b.flush(10)
    finally:
        b.shutdown(5)
    assert [e.count for e in fake.events] == [2]
    assert b.stats()["failed"] == 0


class _SetUpCut(FakeEventSink):
    """A sink whose first set-up (the question which Events API it serves) meets Ctrl-C."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    @property
    def api_known(self) -> bool:
        return False

    @property
    def api(self) -> str:
        self.asked += 1
        if self.asked == 1:
            raise KeyboardInterrupt
        return sink.CORE_V1


def test_a_ctrl_c_in_a_set_up_a_flush_makes_on_its_own_thread_leaves_it_not_under_way(
    monkeypatch,
) -> None:
    """As a write, a sink's set-up a flush makes on the caller's thread (no writer can start)
    and a Ctrl-C cut stayed under way for good: every occurrence after it was kept aside for
    a set-up that never ended, and no flush wrote one. It ends as a failed set-up (what it
    held counted failed, or set up again), then Ctrl-C goes on."""
    writers_never_start(monkeypatch)
    b = recorder.EventBroadcaster()
    b.start_recording_to_sink(cut := _SetUpCut())
    rec = b.new_recorder("pool")
    try:
        rec.event(pod("web"), "Warning", "BackOff", "Back-off pulling image")
        with pytest.raises(KeyboardInterrupt):
            b.flush(10)
        rec.event(pod("db"), "Warning", "BackOff", "Back-off pulling image")
        assert b.flush(10)
    finally:
        b.shutdown(5)
    assert "db" in [e.involved_object.name for e in cut.events]
    stats = b.stats()
    assert stats["created"] + stats["failed"] == stats["accepted"] == 2, stats
