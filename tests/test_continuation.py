"""Counts across processes: a restart, a second worker or a replica continues its event.

Issue 19, against the local API server, on FakeClocks: deterministic names meet the same
event again; a create that meets ``409 AlreadyExists`` reads it and continues its count;
count patches carry the resourceVersion the writer last saw, and ``409 Conflict`` re-reads
and re-applies only this process's occurrences; a 429 without ``Retry-After`` waits without
spending a try; without ``get`` on events, client-go's ways, reported once. A "restart" is a
new handler (nothing of the old one's state); where the issue says processes, the replicas
are processes (tests/fleet_scenarios.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import client

from k8s_logging_events import (
    _continuation,
    _diagnostics,
    _errors,
    _options,
    _pending,
    _pod,
    _sanitise,
    correlator,
    describe,
    models,
    recorder,
    sink,
)
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.series import FINISH_SECONDS, SeriesCorrelator, SeriesPolicy, series_key
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests import fleet_scenarios
from tests._sinks import WithoutRead
from tests.fleet_scenarios import pod

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
LIBRARY = "k8s_logging_events"
MESSAGE = "Back-off restarting failed container"
_loggers = itertools.count()


def _handler(target: Any, clock: FakeClock, **options: Any) -> KubernetesEventHandler:
    settings: dict[str, Any] = {
        "component": "shop",
        "host": "node-1",
        "sink": target.url if isinstance(target, LocalApiServer) else target,
        "qps": 0,
        "clock": clock,
        "sleep": clock.sleep,
        "sleep_duration": 1.0,
        "flush_timeout": 20,
    }
    settings.update(options)
    return KubernetesEventHandler(**settings)


@contextlib.contextmanager
def _attached(handler: KubernetesEventHandler) -> Iterator[logging.Logger]:
    """A fresh logger that logs to ``handler``, which is closed afterwards (an exit)."""
    log = logging.getLogger(f"tests.continuation.{next(_loggers)}")
    log.propagate = False
    log.addHandler(handler)
    try:
        yield log
    finally:
        handler.close()


def _flush(handler: KubernetesEventHandler, timeout: float = 20) -> None:
    active = handler.broadcaster
    assert active is not None
    assert active.flush(timeout), handler.stats()


def _lifetime(
    target: Any,
    clock: FakeClock,
    messages: list[tuple[str, str]],
    involved: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, int]:
    """One process's life: a new handler logs ``(reason, message)`` warnings, then exits."""
    handler = _handler(target, clock, **options)
    with _attached(handler) as log:
        for reason, message in messages:
            log.warning(message, extra={"involved": involved or pod("web-0"), "reason": reason})
            clock.step(1)
        _flush(handler)
        return handler.stats()


def _warnings(count: int, message: str = MESSAGE) -> list[Any]:
    return [("BackOff", message)] * count


def _events(server: LocalApiServer) -> list[dict[str, Any]]:
    return sorted(server.events("default"), key=lambda e: e["metadata"]["name"])


def _statuses(server: LocalApiServer, method: str) -> list[int | None]:
    return [r.status for r in server.requests if r.method == method and "/events" in r.path]


def _lost(stats: dict[str, int]) -> int:
    return stats["failed"] + stats["dropped"]


# -- restarts --------------------------------------------------------------------------------


def test_a_restart_continues_the_count_core_v1() -> None:
    """A crash-looping process restarted three times: one event, x60, not four rows.

    Each lifetime logs the same warning fifteen times; the first creates the event, every
    later one meets it under the same name and continues it: the count is the sum, the
    first timestamp the first lifetime's, and ``kubectl describe`` shows one row."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        for _ in range(4):
            stats = _lifetime(server, clock, _warnings(15))
            assert _lost(stats) == 0, stats
            clock.step(30)
        (event,) = _events(server)
        assert event["count"] == 60
        assert event["firstTimestamp"] == "2024-01-01T12:00:00Z"
        assert event["source"] == {"component": "shop", "host": "node-1"}
        table = describe.format_events(server.events("default"), now=clock.now())
        (row,) = table.splitlines()[3:]
        assert "(x60 over" in row, table


def test_a_restart_continues_the_series_events_k8s_io_v1() -> None:
    """events.k8s.io/v1: the series continues across restarts (the server's series.count
    plus this process's occurrences), under the same guard; one event."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        for _ in range(3):
            stats = _lifetime(server, clock, _warnings(10), api=sink.EVENTS_V1)
            assert _lost(stats) == 0, stats
            clock.step(30)
        (event,) = server.events_v1("default")
        assert event["series"]["count"] == 30
        assert event["eventTime"] == "2024-01-01T12:00:00.000000Z"
        patches = [r for r in server.requests if r.method == "PATCH"]
        assert patches
        assert all("resourceVersion" in r.body["metadata"] for r in patches)


@pytest.mark.parametrize("api", [sink.CORE_V1, sink.EVENTS_V1])
def test_a_restart_continues_the_event_about_a_newer_version_of_its_object(api: str) -> None:
    """The resourceVersion is in neither the name nor the takeover's test of "ours": each
    lifetime logs about the Pod as it read it then (a newer resourceVersion each time), and
    the event it meets under its name is still its own, continued, not renamed beside it."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        for version in ("100", "250", "3071"):
            involved = pod("web-0")
            involved["metadata"]["resourceVersion"] = version
            stats = _lifetime(server, clock, _warnings(3), involved, api=api)
            assert _lost(stats) == 0, stats
            clock.step(30)
        counts = [e.get("count") for e in server.events("default")]
        if api == sink.EVENTS_V1:
            counts = [e["series"]["count"] for e in server.events_v1("default")]
        assert counts == [9]


def test_a_restart_with_timestamp_names_starts_a_new_event_as_client_go() -> None:
    """The option that keeps client-go's names keeps its restarts too: one event each."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        for _ in range(2):
            _lifetime(server, clock, _warnings(5), event_names="timestamp")
        assert [e["count"] for e in _events(server)] == [5, 5]


def test_a_combined_event_continues_across_a_restart() -> None:
    """The tenth distinct message about one object becomes a "(combined from similar
    events)" event named after the aggregate key: the next lifetime combines into the same
    event, and the first nine messages continue their own events."""
    clock = FakeClock(T0)
    messages = [("Unhealthy", f"probe {n} failed") for n in range(12)]
    with LocalApiServer(clock=clock) as server:
        for _ in range(2):
            stats = _lifetime(server, clock, messages)
            assert _lost(stats) == 0, stats
        events = _events(server)
        combined = [e for e in events if e["message"].startswith("(combined from similar")]
        plain = [e for e in events if e not in combined]
        assert len(combined) == 1
        assert combined[0]["count"] == 6  # messages 9, 10 and 11, twice
        assert combined[0]["message"] == "(combined from similar events): probe 11 failed"
        assert sorted(e["count"] for e in plain) == [2] * 9


def test_an_object_name_of_253_characters_names_a_valid_event_that_continues() -> None:
    """The longest object name there is: the event's name keeps a cut prefix and the whole
    hash, within 253 characters, and a restart meets it again."""
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(name) == 253
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        for _ in range(2):
            stats = _lifetime(server, clock, _warnings(3), involved=pod(name))
            assert _lost(stats) == 0, stats
        (event,) = _events(server)
        event_name = event["metadata"]["name"]
        assert len(event_name) <= 253
        assert _sanitise.is_dns_subdomain(event_name)
        prefix, _, digest = event_name.rpartition(".")
        assert name.startswith(prefix)
        assert len(digest) == _sanitise.HASH_HEX_DIGITS
        assert event["count"] == 6


# -- several processes -----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_four_processes_sharing_a_source_end_with_one_event_and_the_exact_sum() -> None:
    """Four gunicorn-like workers (same component, same host) log the same warning 200
    times each: one event of 800, not four of 200; nothing failed."""
    with LocalApiServer() as server:
        replicas = [
            fleet_scenarios.Replica(url=server.url, host="node-1", occurrences=200)
            for _ in range(4)
        ]
        reports = fleet_scenarios.run_replicas(replicas)
        (event,) = _events(server)
        assert event["count"] == 800
        for report in reports:
            assert report.flushed, report.stats
            assert _lost(report.stats) == 0, report.stats
        assert sum(r.stats["accepted"] for r in reports) == 800


@pytest.mark.timeout(120)
@pytest.mark.parametrize("event_names", ["deterministic", "timestamp"])
def test_sixteen_replicas_at_one_instant_lose_nothing_and_keep_their_own_host(
    event_names: str,
) -> None:
    """Sixteen replicas on sixteen nodes log 5 warnings each about one pod, at one clock
    instant. With client-go's names they all pick the same name: the one that is not ours
    is left alone and ours renamed. Every occurrence is on the server, under its host."""
    with LocalApiServer() as server:
        replicas = [
            fleet_scenarios.Replica(
                url=server.url, host=f"node-{n}", occurrences=5, event_names=event_names
            )
            for n in range(16)
        ]
        reports = fleet_scenarios.run_replicas(replicas)
        events = _events(server)
        assert Counter(e["source"]["host"] for e in events) == Counter(
            f"node-{n}" for n in range(16)
        )
        assert all(e["count"] == 5 for e in events)
        assert all(_lost(r.stats) == 0 for r in reports)


def test_a_worker_quiet_for_six_minutes_joins_the_series_another_worker_kept_going() -> None:
    """events.k8s.io/v1, two workers of one source: the first goes quiet while the second
    keeps the series going; the first's next occurrence finds its own series finished, but
    the series on the server is not: it continues that one (one Event, the exact sum), not
    a new Event beside it, as often as that happens. A series nobody kept going is followed
    by a new Event, which a restart continues."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        first = _handler(server, clock, api=sink.EVENTS_V1)
        second = _handler(server, clock, api=sink.EVENTS_V1)
        with _attached(first) as quiet, _attached(second) as busy:

            def warn(log: logging.Logger, handler: KubernetesEventHandler) -> None:
                log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
                _flush(handler)

            warn(quiet, first)
            for _ in range(2):
                for _ in range(5):
                    clock.step(120)
                    warn(busy, second)
                warn(quiet, first)  # ten minutes after its last: the series went on without it
            clock.step(FINISH_SECONDS + 60)
            warn(quiet, first)  # now every worker was quiet: a new series
            stats = [first.stats(), second.stats()]
        clock.step(10)
        stats.append(_lifetime(server, clock, _warnings(1), api=sink.EVENTS_V1))  # a restart
        assert all(_lost(s) == 0 for s in stats), stats
        events = sorted(server.events_v1("default"), key=lambda e: e["eventTime"])
        assert [(e.get("series") or {}).get("count", 1) for e in events] == [13, 2]


def test_a_new_series_create_retried_after_a_failed_read_never_overwrites_anothers_count() -> None:
    """events.k8s.io/v1, two workers of one source, six quiet minutes: the second starts
    the next series (5 occurrences); the first's create of it meets AlreadyExists, and its
    read of the Event fails (500). Seen before the fix: the retry patched the series
    unguarded with its own count, 2 where 7 had happened. Now it reads and adds to it."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        first = _handler(server, clock, api=sink.EVENTS_V1)
        second = _handler(server, clock, api=sink.EVENTS_V1)
        with _attached(first) as quiet, _attached(second) as busy:

            def warn(log: logging.Logger, handler: KubernetesEventHandler, times: int) -> None:
                for _ in range(times):
                    log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
                _flush(handler)

            warn(quiet, first, 1)
            warn(busy, second, 1)
            clock.step(FINISH_SECONDS + 60)
            warn(busy, second, 5)
            (later,) = [e for e in server.events_v1("default") if e["series"]["count"] == 5]
            name = later["metadata"]["name"]
            server.inject(method="GET", path=f"/{name}$", action="status", status=500, times=1)
            warn(quiet, first, 2)
            stats = [first.stats(), second.stats()]
        assert all(_lost(s) == 0 for s in stats), stats
        events = sorted(server.events_v1("default"), key=lambda e: e["eventTime"])
        assert [e["series"]["count"] for e in events] == [2, 7]
        patches = [r for r in server.requests if r.method == "PATCH" and name in r.path]
        assert all("resourceVersion" in r.body["metadata"] for r in patches), patches


def test_a_403_on_the_read_of_the_series_before_names_the_event_it_could_not_read(
    caplog,
) -> None:
    """events.k8s.io/v1: a new series after six quiet minutes reads the series before it
    first. Without ``get`` on events, the warning named the new series' Event, which it had
    not read (and which did not exist yet): it names the one it could not read."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        handler = _handler(server, clock, api=sink.EVENTS_V1)
        with _attached(handler) as log, caplog.at_level(logging.WARNING, logger=LIBRARY):
            log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            (before,) = [e["metadata"]["name"] for e in server.events_v1("default")]
            clock.step(FINISH_SECONDS + 60)
            server.inject(method="GET", path="/events/", status=403, times=None)
            log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
        (report,) = [
            r.getMessage() for r in caplog.records if "grant the verb get" in r.getMessage()
        ]
        assert f"Unable to read event default/{before} " in report


@pytest.mark.parametrize("seed", range(8))
def test_workers_restarts_and_quiet_spells_never_split_a_series_events_k8s_io_v1(
    seed: int,
) -> None:
    """events.k8s.io/v1, one key: one to three workers of one source log, restart and go
    quiet in a random (seeded) order. The server holds every occurrence, and the key's
    Events are further apart than the six quiet minutes that finish a series: none was
    started beside a series that went on (kept going by another worker, met by a restart,
    or named by a worker that began by walking past finished ones)."""
    rng = random.Random(seed)
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server, contextlib.ExitStack() as stack:

        def start() -> tuple[KubernetesEventHandler, logging.Logger]:
            handler = _handler(server, clock, api=sink.EVENTS_V1)
            return handler, stack.enter_context(_attached(handler))

        workers = [start() for _ in range(rng.choice((1, 2, 3)))]
        logged = 0
        for _ in range(40):
            action, number = rng.random(), rng.randrange(len(workers))
            handler, log = workers[number]
            if action < 0.6:
                log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
                _flush(handler)
                logged += 1
            elif action < 0.7:  # a restart
                handler.close()
                workers[number] = start()
            else:
                clock.step(rng.choice((10, 60, 200, 300, 400, 500)))
        stack.close()
        events = server.events_v1("default")
    assert sum((e.get("series") or {}).get("count", 1) for e in events) == logged
    spans = sorted(_span(event) for event in events)
    gaps = [(later[0] - earlier[1]).total_seconds() for earlier, later in itertools.pairwise(spans)]
    assert all(gap > FINISH_SECONDS for gap in gaps), (gaps, spans)


def _span(event: dict[str, Any]) -> tuple[datetime, datetime]:
    """When an events.k8s.io/v1 event's first and last occurrences were observed."""
    first = models.parse_time(event["eventTime"])
    assert first is not None
    last = models.parse_time((event.get("series") or {}).get("lastObservedTime"))
    return first, last or first


def test_contention_on_one_event_under_load_keeps_the_exact_sum() -> None:
    """Six writers (six handlers of one source, as six workers) patch one event in bursts
    from six threads: every occurrence counted, conflicts re-read and re-applied, never
    more conflicts than patches, nothing failed."""
    with LocalApiServer() as server:
        stats: list[dict[str, int]] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                stats.append(_bursts(server, FakeClock(T0), bursts=20, size=3))
            except BaseException as error:  # reported by the test thread
                errors.append(error)

        threads = [threading.Thread(target=worker, name=f"test-w{n}") for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        (event,) = _events(server)
        assert event["count"] == 6 * 20 * 3
        assert all(_lost(s) == 0 for s in stats), stats
        conflicts = [r for r in server.requests if r.status == 409]
        patches = [r for r in server.requests if r.method == "PATCH"]
        assert len(conflicts) <= len(patches)


def test_a_writer_that_loses_every_round_to_others_tries_again_within_an_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight workers that exit together flush one event at one instant; each round one of
    them wins, so a writer can lose every round of several attempts (ContentionError). With
    the default sleep_duration (10 s) and the random source at its highest, the write still
    lands within a second of the flush, well inside the exit's flush_timeout (5 s), and
    every occurrence is counted: losing to other writers is no failure of the server."""
    monkeypatch.setattr(recorder, "random", SimpleNamespace(random=lambda: 0.999999))
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        handler = _handler(server, clock, sleep_duration=10.0)
        with _attached(handler) as log:
            log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            # other writers win every round of three attempts (a patch and a read each)
            server.inject("PATCH", "/events", status=409, times=3 * _continuation.MAX_STEPS // 2)
            for _ in range(2):
                log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
            began = clock.monotonic()
            _flush(handler)
            took = clock.monotonic() - began
            stats = handler.stats()
        assert _lost(stats) == 0, stats
        (event,) = _events(server)
        assert event["count"] == 3
        assert _statuses(server, "PATCH").count(409) == 3 * _continuation.MAX_STEPS // 2
        assert took < 1.0


def _bursts(server: LocalApiServer, clock: FakeClock, *, bursts: int, size: int) -> dict[str, int]:
    """One writer: ``bursts`` flushes of ``size`` warnings each (a patch per burst)."""
    handler = _handler(server, clock)
    with _attached(handler) as log:
        for _ in range(bursts):
            for _ in range(size):
                log.warning("again", extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
        return handler.stats()


# -- the takeover, step by step --------------------------------------------------------------


def test_a_single_writer_never_conflicts_and_reads_nothing() -> None:
    """The steady state costs what it costs without takeover: one create, then one patch
    per flush, each guarded by the resourceVersion of the answer before; no GET, no 409."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        stats = _bursts(server, clock, bursts=5, size=1)
        assert _lost(stats) == 0, stats
        writes = [r for r in server.requests if "/events" in r.path]
        assert [(r.method, r.status) for r in writes] == [("POST", 201)] + [("PATCH", 200)] * 4
        # each guard held (no 409): each patch carried the version of the answer before it
        versions = [int(r.body["metadata"]["resourceVersion"]) for r in writes[1:]]
        assert versions == sorted(set(versions))
        (event,) = _events(server)
        assert event["count"] == 5


def test_a_single_writer_reads_nothing_while_its_correlator_remembers_more_events() -> None:
    """A correlator that remembers more events than the default 4,096 (``lru_cache_size``):
    the writer's record of what it wrote keeps as many, so a single writer's repeats are
    plain patches, never a read before each."""
    clock = FakeClock(T0)
    fake = FakeEventSink()
    objects = [pod(f"web-{number}") for number in range(_continuation.DEFAULT_KNOWN_EVENTS + 8)]
    handler = _handler(fake, clock, correlator={"lru_cache_size": 5000}, queue_length=20_000)
    with _attached(handler) as log:
        for _round in range(2):
            for involved in objects:
                log.warning(MESSAGE, extra={"involved": involved, "reason": "BackOff"})
            _flush(handler)
    methods = Counter(call.method for call in fake.calls)
    assert methods == {"create": len(objects), "patch": len(objects)}


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
def test_a_correlator_that_forgets_an_event_while_its_write_waits_loses_no_count(
    api: str,
) -> None:
    """A correlator smaller than the objects logged about (``lru_cache_size: 2``, three
    pods in turn) forgets each event and counts it again from 1 while its write still waits;
    under deterministic names those occurrences go into that same write, whose count must
    cover every one of them: each event ends with the three logged, as stats() says."""
    clock = FakeClock(T0)
    objects = [pod(f"web-{number}") for number in range(3)]
    with LocalApiServer(clock=clock) as server:
        handler = _handler(server, clock, api=api, correlator={"lru_cache_size": 2})
        with _attached(handler) as log:
            for number in range(9):
                log.warning(MESSAGE, extra={"involved": objects[number % 3], "reason": "BackOff"})
            _flush(handler)
        stats = handler.stats()
        written = stats["created"] + stats["patched"] + stats["coalesced"]
        if api == "v1":
            counts = sorted(event["count"] for event in server.events("default"))
        else:
            counts = sorted(event["series"]["count"] for event in server.events_v1("default"))
    assert (counts, written) == ([3, 3, 3], 9), stats


def test_an_event_that_expires_between_the_409_and_the_read_is_created_again() -> None:
    """The create meets AlreadyExists, then the event expires before the read: 404, so the
    create is made again, with this process's own count."""
    server_clock = FakeClock(T0)
    clock = FakeClock(T0)
    with LocalApiServer(clock=server_clock, event_ttl=3600) as server:
        _lifetime(server, clock, _warnings(4))
        real = sink.KubernetesEventSink.from_url(server.url, qps=0)

        class ExpiresFirst:
            """Reads after the server's clock passed the event's time to live."""

            # spelled out: from Python 3.12 a protocol check does not see __getattr__
            def create(self, event: models.Event) -> models.Event:
                return real.create(event)

            def update(self, event: models.Event) -> models.Event:
                return real.update(event)

            def patch(self, event: models.Event, data: bytes) -> models.Event:
                return real.patch(event, data)

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def read(self, event: models.Event) -> models.Event:
                server_clock.step(3601)
                return real.read(event)

        try:
            server.clear_requests()
            stats = _lifetime(ExpiresFirst(), clock, _warnings(3))
        finally:
            real.close()
        assert _lost(stats) == 0, stats
        requests = [(r.method, r.status) for r in server.requests if "/events" in r.path]
        assert requests[:3] == [("POST", 409), ("GET", 404), ("POST", 201)]
        assert set(requests[3:]) <= {("PATCH", 200)}
        (event,) = _events(server)
        assert event["count"] == 3


def test_an_event_that_is_not_ours_under_our_name_is_left_alone() -> None:
    """Another event holds our name (another source): it is not ours, so it keeps its
    count, and ours is created under a name of its own, which a restart meets again."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        first = _lifetime(server, clock, _warnings(2))
        assert _lost(first) == 0
        (ours,) = _events(server)
        server.reset()
        foreign: Any = dict(ours)
        foreign["source"] = {"component": "someone-else", "host": "node-9"}
        foreign["count"] = 7
        foreign["metadata"] = {"name": ours["metadata"]["name"], "namespace": "default"}
        api_client = server.api_client()  # the official client, as another program writes
        try:
            client.CoreV1Api(api_client).create_namespaced_event("default", foreign)
        finally:
            api_client.close()
        for _ in range(2):
            stats = _lifetime(server, clock, _warnings(3))
            assert _lost(stats) == 0, stats
        events = {e["source"]["component"]: e for e in _events(server)}
        assert events["someone-else"]["count"] == 7
        assert events["shop"]["count"] == 6
        assert events["shop"]["metadata"]["name"] != ours["metadata"]["name"]


def test_a_patch_whose_answer_was_lost_is_not_counted_twice() -> None:
    """The patch landed but its connection dropped: the retry meets 409 Conflict (its
    resourceVersion is stale now), the read shows the count reached, nothing is added."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        handler = _handler(server, clock)
        with _attached(handler) as log:
            log.warning("x", extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            server.inject(method="PATCH", action="drop", commit=True)
            for _ in range(4):
                log.warning("x", extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            stats = handler.stats()
        assert _lost(stats) == 0, stats
        assert 409 in _statuses(server, "PATCH")
        (event,) = _events(server)
        assert event["count"] == 5


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
def test_a_patch_answered_500_after_it_landed_is_not_counted_twice(api: str) -> None:
    """The server stored the count patch, then answered 500 (etcd slow to confirm): a 5xx
    leaves the write in doubt as a lost answer does, so the retry's 409 Conflict and read
    find the count reached and add nothing (it used to add the occurrence again)."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        handler = _handler(server, clock, api=api)
        with _attached(handler) as log:
            for _ in range(3):
                log.warning("x", extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            server.inject(method="PATCH", status=500, commit=True)
            log.warning("x", extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            stats = handler.stats()
        assert _lost(stats) == 0, stats
        assert 500 in _statuses(server, "PATCH")
        (event,) = _events(server)
        assert (event.get("series") or {}).get("count", event.get("count")) == 4


def test_a_create_whose_answer_was_lost_is_not_counted_twice() -> None:
    """The create landed, its answer did not: the retry's AlreadyExists reads our own
    event, whose count already holds what the create carried."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        server.inject(method="POST", action="drop", commit=True)
        stats = _lifetime(server, clock, _warnings(1))
        assert _lost(stats) == 0, stats
        assert stats["created"] == 1
        (event,) = _events(server)
        assert event["count"] == 1


def _count(event: dict[str, Any]) -> int:
    """Occurrences the event stands for: its series', else its count (an events.k8s.io/v1
    event of one, in the core view, has neither)."""
    return int((event.get("series") or {}).get("count") or event.get("count") or 1)


def _records(server: LocalApiServer) -> list[str | None]:
    """The record of writers each create and patch of an event set (None: it set none)."""
    bodies = [r.body for r in server.requests if r.method in ("POST", "PATCH") and r.body]
    return [(b["metadata"].get("annotations") or {}).get(_continuation.WRITERS) for b in bodies]


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
def test_a_write_in_doubt_that_did_not_land_counts_though_another_writer_raised_the_count(
    api: str,
) -> None:
    """Two workers write one event, each knowing of the other (B took A's event over, A met
    B's change). A's count patch meets B's change, so the server refuses it (Conflict on its
    stale resourceVersion), and that answer is lost: A's write is in doubt. B's write put the
    server's count at what A's request set, which rule 5's count alone took for A's request
    landed (A's occurrence lost). The writers' record on the event says it did not land, and
    it is written: every occurrence counted, none twice."""
    clock_a, clock_b = FakeClock(T0), FakeClock(T0)
    with LocalApiServer(clock=clock_a) as server:
        a, b = _handler(server, clock_a, api=api), _handler(server, clock_b, api=api)
        with _attached(a) as log_a, _attached(b) as log_b:
            extra = {"involved": pod("web-0"), "reason": "BackOff"}
            for log, handler in [(log_a, a), (log_b, b), (log_a, a), (log_b, b)]:
                log.warning(MESSAGE, extra=extra)
                _flush(handler)
            server.inject("PATCH", "/events", action="drop", commit=True)
            log_a.warning(MESSAGE, extra=extra)
            _flush(a)
            stats = [a.stats(), b.stats()]
        assert all(_lost(s) == 0 for s in stats), stats
        assert None in _statuses(server, "PATCH")  # the dropped answer
        (event,) = _events(server)
        assert _count(event) == 5


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_first_write_in_doubt_after_another_writer_began(api: str, method: str) -> None:
    """A writer notes itself on an event only once it knows another writes it too: until
    then its requests carry no record. A's first request after B began (a create that meets
    B's event, or a patch that meets B's change) is refused and its answer lost; B's write
    put the count at what A's request set. A patch is still decided exactly: B, who took
    A's event over, left a record that A's request, which set none, cannot have come after,
    so A's would have had B's count pass it. A create is not: B's create carried no record
    either (it knew of no other writer), and the count alone takes A's as landed: A's
    occurrence is missed (one, in this window), never counted twice."""
    clock_a, clock_b = FakeClock(T0), FakeClock(T0)
    with LocalApiServer(clock=clock_a) as server:
        a, b = _handler(server, clock_a, api=api), _handler(server, clock_b, api=api)
        with _attached(a) as log_a, _attached(b) as log_b:
            extra = {"involved": pod("web-0"), "reason": "BackOff"}
            if method == "PATCH":  # A's create comes first: its next write is a patch
                log_a.warning(MESSAGE, extra=extra)
                _flush(a)
            log_b.warning(MESSAGE, extra=extra)
            _flush(b)
            server.inject(method, "/events", action="drop", commit=True)
            log_a.warning(MESSAGE, extra=extra)
            _flush(a)
            stats = [a.stats(), b.stats()]
        assert all(_lost(s) == 0 for s in stats), stats
        assert None in _statuses(server, method)  # the dropped answer
        (event,) = _events(server)
        assert _count(event) == (3 if method == "PATCH" else 1)  # the create's one missed


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_write_in_doubt_that_another_writers_count_passed_is_counted_failed_and_said(
    api: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A's request (its create, or a count patch after its create) is refused with a 500
    before the server stores it, by a writer that does not know of B yet: it carried no
    record. B had raised the count past what A's request set, so the count alone takes A's
    as landed (rather missed than twice) and A's occurrence is missed. It is never silent:
    A counts it ``failed``, not written, and says so once, naming the event and how many
    (it used to count it created or patched, with nothing said)."""
    clock_a, clock_b = FakeClock(T0), FakeClock(T0)
    with LocalApiServer(clock=clock_a) as server:
        a, b = _handler(server, clock_a, api=api), _handler(server, clock_b, api=api)
        with _attached(a) as log_a, _attached(b) as log_b:
            extra = {"involved": pod("web-0"), "reason": "BackOff"}
            if method == "PATCH":  # A's create comes first: its next write is a patch
                log_a.warning(MESSAGE, extra=extra)
                _flush(a)
            for _ in range(5):
                log_b.warning(MESSAGE, extra=extra)
            _flush(b)
            server.inject(method, "/events", status=500)  # refused before it is stored
            with caplog.at_level(logging.WARNING, logger=LIBRARY):
                log_a.warning(MESSAGE, extra=extra)
                _flush(a)
            stats = a.stats()
        assert 500 in _statuses(server, method)
        (event,) = _events(server)
        logged = 7 if method == "PATCH" else 6
        assert _count(event) == logged - 1  # the one in doubt missed, none counted twice
        assert stats["failed"] == 1, stats
        assert stats["accepted"] == sum(stats[key] for key in _diagnostics.OUTCOMES)
        (report,) = [r for r in caplog.records if "cannot tell whether" in r.getMessage()]
        assert event["metadata"]["name"] in report.getMessage()
        assert report.getMessage().endswith("; 1 occurrence(s) failed")


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
def test_a_single_writer_sets_no_record_of_writers(api: str) -> None:
    """One writer alone, also with an answer lost (a patch answered 500 after it landed):
    its create and count patches carry only the event, the count and the resourceVersion
    precondition, no record of writers (a value given under its key is dropped). A restart
    that takes the event over cannot tell its earlier run from another process, and notes
    itself from then on."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        handler = _handler(server, clock, api=api)
        notes = {"a.io/x": "1", _continuation.WRITERS: "given:1"}
        extra = {"involved": pod("web-0"), "reason": "BackOff", "annotations": notes}
        with _attached(handler) as log:
            for n in range(4):
                if n == 2:
                    server.inject(method="PATCH", status=500, commit=True)
                log.warning(MESSAGE, extra=extra)
                _flush(handler)
        assert 500 in _statuses(server, "PATCH")
        assert _records(server) == [None] * 5
        assert [e["metadata"]["annotations"] for e in _events(server)] == [{"a.io/x": "1"}]
        restart = _handler(server, clock, api=api)
        with _attached(restart) as log:
            log.warning(MESSAGE, extra=extra)
            _flush(restart)
        create, patch = _records(server)[5:]  # the create met the event, taken over
        assert (create, bool(patch)) == (None, True)
        (event,) = _events(server)
        assert (_count(event), event["metadata"]["annotations"]["a.io/x"]) == (5, "1")


def test_two_writers_under_lost_answers_keep_the_exact_sum() -> None:
    """Two workers log about three Pods from two threads while a fifth of the event writes
    lose their answer (dropped or 500, after the server handled them: stored, or refused
    for a stale resourceVersion the other worker moved on): each Pod's count is exactly
    what was logged about it, nothing failed. Exact once each worker has met the other's
    writes on each event, as here before the faults begin (before that, see the test above)."""
    with LocalApiServer() as server, contextlib.ExitStack() as stack:
        handlers = [_handler(server, FakeClock(T0), sleep_duration=0.1, max_tries=50) for _ in "ab"]
        logs = [stack.enter_context(_attached(handler)) for handler in handlers]
        logged = [Counter[str]() for _ in handlers]
        for n in (0, 1, 0):  # A creates, B takes over, A meets B's change: each knows the other
            for name in ("web-0", "web-1", "web-2"):
                logs[n].warning("again", extra={"involved": pod(name), "reason": "BackOff"})
                logged[n][name] += 1
            _flush(handlers[n])
        lost: dict[str, Any] = {"times": None, "commit": True, "probability": 0.1}
        server.inject(None, "/events", action="drop", seed=1, **lost)
        server.inject(None, "/events", status=500, seed=2, **lost)
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            rng, mine, handler, log = random.Random(n), logged[n], handlers[n], logs[n]
            try:
                for _ in range(30):
                    for _ in range(rng.randint(1, 3)):
                        name = f"web-{rng.randrange(3)}"
                        log.warning("again", extra={"involved": pod(name), "reason": "BackOff"})
                        mine[name] += 1
                    _flush(handler, 60)
            except BaseException as error:  # reported by the test thread
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(n,), name=f"test-w{n}") for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        stats = [handler.stats() for handler in handlers]
        assert all(_lost(s) == 0 for s in stats), stats
        counts = {e["involvedObject"]["name"]: e["count"] for e in _events(server)}
        assert counts == dict(sum(logged, Counter[str]()))
        assert any(r.fault for r in server.requests)


def test_the_record_of_writers_keeps_a_users_annotations_within_the_servers_limit() -> None:
    """The record joins the annotations a user gave an event two writers write (here a
    restart takes the earlier run's over); where they leave no room for it within the
    server's 256 KiB, it is left off (the event written all the same, not refused for its
    size), and the count alone judges a lost answer there (rule 5)."""
    clock = FakeClock(T0)
    size = _sanitise.ANNOTATIONS_MAX_BYTES - len("team") - 30  # less than a record takes
    small, full = {"team": "shop"}, {"team": "x" * size}
    with LocalApiServer(clock=clock) as server:
        for _ in range(2):  # a run, and its restart
            handler = _handler(server, clock)
            with _attached(handler) as log:
                for name, notes in (("web-0", small), ("web-1", full)):
                    extra = {"involved": pod(name), "reason": "BackOff", "annotations": notes}
                    log.warning(MESSAGE, extra=extra)
                    _flush(handler)
                stats = handler.stats()
            assert _lost(stats) == 0, stats
        events = {e["involvedObject"]["name"]: e for e in _events(server)}
        assert [events[name]["count"] for name in ("web-0", "web-1")] == [2, 2]
        web_0 = events["web-0"]["metadata"]["annotations"]
        assert web_0.pop(_continuation.WRITERS)
        assert (web_0, events["web-1"]["metadata"]["annotations"]) == (small, full)


# -- without get on events ------------------------------------------------------------------


def test_403_on_the_read_falls_back_to_a_new_event_and_reports_once(caplog) -> None:
    """Without ``get`` on events the takeover cannot read: client-go's behaviour (a new
    event under a new, unique name, this process's count), and one warning naming the verb,
    however many events meet it."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        pods = [pod("web-0"), pod("web-1")]
        for involved in pods:
            _lifetime(server, clock, _warnings(2), involved=involved)
        before = {e["metadata"]["name"]: e["count"] for e in _events(server)}
        server.inject(method="GET", path="/events/", status=403, times=None)
        handler = _handler(server, clock)
        with _attached(handler) as log:
            with caplog.at_level(logging.WARNING, logger=LIBRARY):
                for _burst in range(3):
                    for involved in pods:
                        log.warning(MESSAGE, extra={"involved": involved, "reason": "BackOff"})
                    _flush(handler)
            stats = handler.stats()
        assert _lost(stats) == 0, stats
        events = {e["metadata"]["name"]: e["count"] for e in _events(server)}
        assert {name: events[name] for name in before} == before  # left alone
        assert sorted(count for name, count in events.items() if name not in before) == [3, 3]
        reports = [r for r in caplog.records if "grant the verb get on events" in r.getMessage()]
        assert len(reports) == 1
        # the two events' writes may read at once; once refused, nothing reads again
        assert _statuses(server, "GET").count(403) in (1, 2)
        assert len(_statuses(server, "GET")) == _statuses(server, "GET").count(403)


@pytest.mark.parametrize(
    ("api", "group"), [("v1", '"" (core)'), ("events.k8s.io/v1", '"events.k8s.io"')]
)
def test_403_on_the_read_names_the_verb_its_api_group_and_the_role_to_copy(
    caplog, api: str, group: str
) -> None:
    """A restart without ``get`` on events says what a 403 on a write says: the verb, the API
    group it is missing in (events.k8s.io/v1 needs its own rule beside core's) and the
    namespace, and the Role of examples/rbac.yaml that grants it."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        assert _lost(_lifetime(server, clock, _warnings(2), api=api)) == 0
        server.inject(method="GET", path="/events/", status=403, times=None)
        with caplog.at_level(logging.WARNING, logger=LIBRARY):
            assert _lost(_lifetime(server, clock, _warnings(2), api=api)) == 0
    (report,) = [r.getMessage() for r in caplog.records if "Unable to read event" in r.getMessage()]
    assert f"grant the verb get on events in the API group {group} in namespace default" in report
    assert _errors.RBAC_EXAMPLE in report


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
def test_403_on_the_read_gives_a_restart_whose_create_carries_repeats_an_event_of_its_own(
    api: str,
) -> None:
    """Without ``get`` on events, a restart whose first create was throttled (429) carries
    its repeats (events.k8s.io/v1: a series) when it meets the earlier run's event under its
    name: it makes an event of its own, as the docs say, and never patches the earlier run's
    event with its own count (which would overwrite that run's occurrences)."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        server.inject(method="GET", path="/events/", status=403, times=None)
        assert _lost(_lifetime(server, clock, _warnings(5), api=api)) == 0
        server.inject(method="POST", path="/events", status=429, retry_after=1)
        handler = _handler(server, clock, api=api)
        with _attached(handler) as log:
            for _ in range(5):
                log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            assert _lost(handler.stats()) == 0, handler.stats()
        if api == "v1":
            counts = sorted(event["count"] for event in server.events("default"))
        else:
            counts = sorted(event["series"]["count"] for event in server.events_v1("default"))
    assert counts == [5, 5]


def test_a_sink_without_read_gives_a_restart_an_event_of_its_own() -> None:
    """A user's sink that cannot read events, under the handler's deterministic names: a
    restart meets its own name taken and, unable to continue that event, makes a new one
    (client-go's behaviour, as on a 403): it neither gives up its first occurrence nor
    patches the earlier process's event with its own count."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server, server.api_client() as api_client:
        for _ in range(3):
            events_sink = sink.KubernetesEventSink(api_client, qps=0, clock=clock)
            with contextlib.closing(events_sink):
                stats = _lifetime(WithoutRead(events_sink), clock, _warnings(5))
            assert _lost(stats) == 0, stats
            clock.step(30)
        assert [e["count"] for e in _events(server)] == [5, 5, 5]


def test_a_series_patch_that_keeps_conflicting_says_it_was_given_up_not_retried(caplog) -> None:
    """Other writers win every round on a series patch (409 Conflict each time) until
    max_tries: the occurrence is failed, and its report says so, not "will try again"."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        handler = _handler(server, clock, api=sink.EVENTS_V1, max_tries=2)
        with _attached(handler) as log, caplog.at_level(logging.WARNING, logger=LIBRARY):
            log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            server.inject(method="PATCH", status=409, times=None)
            log.warning(MESSAGE, extra={"involved": pod("web-0"), "reason": "BackOff"})
            handler.flush()
            assert handler.stats()["failed"] == 1, handler.stats()
        (given_up,) = [r.getMessage() for r in caplog.records if "(retry limit)" in r.getMessage()]
        assert "kept changing" in given_up
        assert "will try again" not in given_up


# -- 429 ------------------------------------------------------------------------------------


def test_429_without_retry_after_beyond_max_tries_then_success_counts_everything() -> None:
    """EventRateLimit answers 429 without Retry-After while its bucket is empty: eight of
    them to one write whose max_tries is 2, and none spends a try; the waits grow (jittered,
    capped); then the bucket refills and every occurrence is on the server."""
    server_clock = FakeClock(T0)
    clock = FakeClock(T0)
    limit = {"limits": [{"type": "Server", "qps": 1, "burst": 1}]}
    waits: list[float] = []

    def sleep(seconds: float, cancel: threading.Event) -> bool:
        waits.append(seconds)
        if len(waits) == 8:  # the bucket refills only now
            server_clock.step(1)
        return clock.sleep(seconds, cancel)

    with LocalApiServer(clock=server_clock, event_rate_limit=limit) as server:
        handler = _handler(server, clock, sleep=sleep, max_tries=2)
        with _attached(handler) as log:
            log.warning("Back-off", extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            for _ in range(2):
                log.warning("Back-off", extra={"involved": pod("web-0"), "reason": "BackOff"})
            _flush(handler)
            stats = handler.stats()
        assert _lost(stats) == 0, stats
        assert _statuses(server, "PATCH").count(429) == 8
        (event,) = _events(server)
        assert event["count"] == 3
        assert len(waits) >= 8
        first = waits[:8]
        assert all(0 < wait <= 30.0 for wait in first)
        assert first[-1] > first[0]  # growing


@pytest.mark.parametrize("api", [sink.CORE_V1, sink.EVENTS_V1])
def test_a_429_on_the_takeovers_read_spends_no_try(api: str) -> None:
    """API priority and fairness throttles reads too: a restart whose read of the event it
    met answers 429 five times, with one try allowed, still continues that event."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock) as server:
        assert _lost(_lifetime(server, clock, _warnings(3), api=api)) == 0
        server.inject(method="GET", path="/events/", status=429, times=5)
        assert _lost(_lifetime(server, clock, _warnings(3), api=api, max_tries=1)) == 0
        assert _statuses(server, "GET").count(429) == 5
        if api == sink.CORE_V1:
            assert [e["count"] for e in server.events("default")] == [6]
        else:
            assert [e["series"]["count"] for e in server.events_v1("default")] == [6]


def test_a_takeover_throttled_on_its_patch_retries_the_patch_not_the_create() -> None:
    """A restart under EventRateLimit with a burst of 1: the create that meets AlreadyExists
    takes the only token (the plugin charges it), so the takeover's patch meets 429. The
    retry continues with the patch of the event it read, not with another create, which
    would take the token again and leave the patch a 429 for ever."""
    clock = FakeClock(T0)
    limit = {"limits": [{"type": "SourceAndObject", "qps": 1, "burst": 1}]}
    with LocalApiServer(clock=clock, event_rate_limit=limit) as server:
        _lifetime(server, clock, _warnings(1))
        clock.step(60)
        stats = _lifetime(server, clock, _warnings(1))
        assert _lost(stats) == 0, stats
        assert _statuses(server, "POST") == [201, 409]
        (event,) = _events(server)
        assert event["count"] == 2


# -- the module on its own, with the fake sink ----------------------------------------------


def _policy(clock: FakeClock) -> correlator.CountPolicy:
    options = correlator.CorrelatorOptions(clock=clock)
    return correlator.CountPolicy(correlator.EventCorrelator(options))


def _event(count: int = 1, name: str = "web-0.abc", **changes: Any) -> models.Event:
    values: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "involved_object": models.ObjectReference(
            kind="Pod", namespace="default", name="web-0", uid="uid-web-0", api_version="v1"
        ),
        "reason": "BackOff",
        "message": MESSAGE,
        "source": models.EventSource("shop", "node-1"),
        "first_timestamp": T0,
        "last_timestamp": T0,
        "count": count,
        "type": models.WARNING,
    }
    values.update(changes)
    return models.Event(**values)


def _continuation_for(fake: Any, clock: FakeClock, size: int = 16) -> _continuation.Continuation:
    return _continuation.Continuation(
        fake,
        _sanitise.EventNamer(event_names="deterministic"),
        clock,
        _diagnostics.RateLimitedReporter(clock=clock),
        size=size,
    )


def _another_process_writes_first(fake: FakeEventSink, data: bytes, times: int | None) -> None:
    """Before each of our next ``times`` patches (None: all), another process patches ``data``."""
    left = [times]

    def first(event: models.Event, ours: bytes) -> None:
        if left[0] is not None:
            if left[0] <= 0:
                return
            left[0] -= 1
        stored = fake.get(event.namespace, event.name)
        assert stored is not None
        fake.on_patch = None
        fake.patch(stored, data)
        fake.on_patch = first

    fake.on_patch = first


def _write(event: models.Event, occurrences: int = 1) -> _pending.Write:
    return _pending.Write(event=event, create=event.count <= 1, held=False, occurrences=occurrences)


def _attempt_whose_answer_is_lost(
    fake: FakeEventSink, method: str, cont: Any, write: _pending.Write, policy: Any
) -> None:
    """Attempt ``write`` once while ``fake``'s next ``method`` ("create" or "patch") lands but
    its answer is lost; then mark the request in doubt, as the writer does."""
    call = getattr(fake, method)

    def lands_but_the_answer_is_lost(*args: Any) -> None:
        setattr(fake, f"on_{method}", None)
        call(*args)
        raise ConnectionResetError("the answer was lost")

    setattr(fake, f"on_{method}", lands_but_the_answer_is_lost)
    with pytest.raises(ConnectionResetError):
        cont.attempt(write, policy)
    assert write.sent is not None
    write.unsure.append(write.sent)
    write.sent = None


def _a_partly_landed_write_read_then_throttled() -> tuple[
    FakeEventSink, correlator.CountPolicy, _continuation.Continuation, _pending.Write
]:
    """An event created (count 1), then a write of 3 whose patch lands with its answer lost,
    joined by 2 more; its retry's guard fails (409), its read finds the 3 there (4), and its
    patch is throttled (429). Returns the sink, policy, continuation and that write."""
    clock = FakeClock(T0)
    fake = FakeEventSink()
    policy = _policy(clock)
    cont = _continuation_for(fake, clock)
    cont.attempt(_write(_event()), policy)  # created, count 1

    write = _write(_event(count=4), occurrences=3)
    _attempt_whose_answer_is_lost(fake, "patch", cont, write, policy)
    write.merge(_event(count=6), held=False, occurrences=2)
    fake.fail_next("patch", sink.ApiStatusError(409, "Conflict", "changed"))
    fake.fail_next("patch", sink.ApiStatusError(429, "TooManyRequests", "slow down"))
    with pytest.raises(sink.ApiStatusError):
        cont.attempt(write, policy)
    return fake, policy, cont, write


class TestContinuation:
    def test_a_takeover_translates_every_later_patch(self) -> None:
        """The server held 10 when we met it: our 1 makes 11, our later 2 make 13 (not 3),
        and what goes back to the correlator is in its own terms (its count, its name)."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event(count=10))
        policy = _policy(clock)
        cont = _continuation_for(fake, clock)
        kind, local = cont.attempt(_write(_event()), policy)
        assert (kind, local.count, fake.events[0].count) == ("patched", 1, 11)
        kind, local = cont.attempt(_write(_event(count=3), occurrences=2), policy)
        assert (kind, local.count, fake.events[0].count) == ("patched", 3, 13)
        assert [c.method for c in fake.calls] == ["create", "create", "read", "patch", "patch"]

    def test_a_conflict_re_reads_and_re_applies_only_our_occurrences(self) -> None:
        """Another process writes between our read of the version and our patch: 409,
        read again, add our 2 to what is there now."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        policy = _policy(clock)
        cont = _continuation_for(fake, clock)
        cont.attempt(_write(_event()), policy)  # created, count 1
        _another_process_writes_first(fake, b'{"count":5}', times=1)
        cont.attempt(_write(_event(count=3), occurrences=2), policy)
        assert fake.events[0].count == 7
        methods = [c.method for c in fake.calls]
        assert methods[-3:] == ["patch", "read", "patch"]

    def test_endless_contention_is_bounded_then_retried(self) -> None:
        """Every patch meets a conflict: after MAX_STEPS requests the attempt stops with
        ContentionError, which the writer retries soon (it spends an attempt)."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        policy = _policy(clock)
        cont = _continuation_for(fake, clock)
        cont.attempt(_write(_event()), policy)
        _another_process_writes_first(fake, b"{}", times=None)
        before = len(fake.calls)
        with pytest.raises(_errors.ContentionError):
            cont.attempt(_write(_event(count=2)), policy)
        ours = [c for c in fake.calls[before:] if c.data != b"{}"]
        assert len(ours) == _continuation.MAX_STEPS
        assert _errors.may_have_landed(_errors.ContentionError("x")) is False
        write = _write(_event())
        schedule = _errors.RetrySchedule(12, 10.0, lambda: 0.5)
        assert schedule.after_failure(write, _errors.ContentionError()) == pytest.approx(0.05)
        assert write.attempts == 1

    def test_an_earlier_answer_to_a_read_does_not_count_a_lost_patch_twice(self) -> None:
        """A patch to 10 lands but its answer is lost (in doubt); the retry's guard fails,
        and its read gets an earlier answer (count 1: off a connection out of step). The
        requests in doubt stay in doubt until a write succeeds, so that the fresh read
        after the next conflict finds the patch landed: 10, not 19."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        policy = _policy(clock)
        cont = _continuation_for(fake, clock)
        cont.attempt(_write(_event()), policy)  # created, count 1
        earlier = fake.get("default", "web-0.abc")
        assert earlier is not None

        write = _write(_event(count=10), occurrences=9)
        _attempt_whose_answer_is_lost(fake, "patch", cont, write, policy)
        stale = [earlier]
        fake.on_read = lambda event: stale.pop() if stale else None
        kind, local = cont.attempt(write, policy)
        assert (kind, local.count, fake.events[0].count) == ("patched", 10, 10)

    def test_a_retry_after_a_read_adds_a_write_whose_occurrences_partly_landed_once(
        self,
    ) -> None:
        """A patch of 3 lands with its answer lost (in doubt), 2 more occurrences join the
        write, the retry's guard fails and its read finds the 3 there, then its patch is
        throttled (429, not landed): the next retry adds the 2 still missing, ending at the
        6 logged, not the whole write's 5 again on top of the read's count (9)."""
        fake, policy, cont, write = _a_partly_landed_write_read_then_throttled()
        write.sent = None  # a 429 did not land: the writer forgets the request
        kind, local = cont.attempt(write, policy)
        assert (kind, local.count, fake.events[0].count) == ("patched", 6, 6)

    def test_a_write_given_up_after_a_read_of_its_partly_landed_patch_lowers_no_count(
        self,
    ) -> None:
        """A patch of 3 lands with its answer lost, 2 more join the write, the retry reads the
        4 there and is throttled, and the write is given up (the server keeps 4). A correlator
        that forgot the event (lru_cache_size) counts its next occurrence from 1: it adds one
        to the 4 read (5), and never patches the count down to what the given-up write built
        on (2)."""
        fake, policy, cont, _ = _a_partly_landed_write_read_then_throttled()
        # then given up: its 2 unwritten are counted failed
        assert fake.events[0].count == 4
        kind, local = cont.attempt(_write(_event(count=1)), policy)
        assert (kind, local.count, fake.events[0].count) == ("patched", 1, 5)

    def test_a_restart_in_the_same_second_whose_create_was_lost_still_adds_its_count(
        self,
    ) -> None:
        """A restart's create of 3 goes unanswered (it did not land: the name was taken by
        the earlier run's event, 10), and its retry meets AlreadyExists: the event read began
        half a second before ours (its eventTime says so), so it is the earlier run's, and
        ours adds its 3 (13), not taken as already there because both began in one second."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event(count=10, event_time=T0))  # the earlier run's
        policy = _policy(clock)
        cont = _continuation_for(fake, clock)
        later = T0 + timedelta(microseconds=500_000)
        write = _write(_event(count=3, event_time=later), occurrences=3)
        write.unsure.append((3, 3, True, 0))  # a create whose answer was lost (before records)
        kind, local = cont.attempt(write, policy)
        assert (kind, local.count, fake.events[0].count) == ("patched", 3, 13)

    def test_occurrences_the_count_alone_took_as_written_stay_failed_once_a_later_patch_lands(
        self,
    ) -> None:
        """Another process wrote the event (5) when our create of 1 was refused with a 500,
        unstored: the count alone takes it as landed, so that occurrence is unconfirmed. Two
        more join the write; its patch (7: the 5 read, and the 2) lands with its answer lost,
        and the next read confirms that patch through the record of writers. The occurrence
        the count took stays unconfirmed (the writer counts it failed and says so), not
        written: the server holds 7 of the 8 logged. Seen with six processes under lost
        answers: every one counted written, 18 missing from the server, nothing said."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event(count=5))  # another process's, before it knew of us: no record
        policy = _policy(clock)
        cont = _continuation_for(fake, clock)
        write = _write(_event())
        fake.fail_next("create", sink.ApiStatusError(500, "InternalError", "etcd"))
        with pytest.raises(sink.ApiStatusError):
            cont.attempt(write, policy)
        assert write.sent is not None
        write.unsure.append(write.sent)  # a 500 may have landed: the writer keeps it in doubt
        write.sent = None
        write.merge(_event(count=3), held=False, occurrences=2)
        _attempt_whose_answer_is_lost(fake, "patch", cont, write, policy)
        assert (fake.events[0].count, write.unconfirmed) == (7, 1)
        cont.attempt(write, policy)
        assert (fake.events[0].count, write.unconfirmed) == (7, 1)

    def test_a_lost_patch_whose_entry_other_writers_pushed_out_is_judged_by_its_count(
        self,
    ) -> None:
        """Our patch of 9 lands, its answer lost; then 16 other writers add one each, and the
        record, which keeps the latest 16, no longer holds ours. It cannot tell, so the count
        decides as before it (26 reached what ours set, 10): landed, never added twice."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        policy = _policy(clock)
        cont = _continuation_for(fake, clock)
        cont.attempt(_write(_event()), policy)  # created, count 1
        write = _write(_event(count=10), occurrences=9)
        _attempt_whose_answer_is_lost(fake, "patch", cont, write, policy)
        for _ in range(_continuation.MAX_WRITERS):  # each a process of its own, taking over
            _continuation_for(fake, clock).attempt(_write(_event()), _policy(clock))
        kind, local = cont.attempt(write, policy)
        assert (kind, local.count, fake.events[0].count) == ("patched", 10, 26)
        record = fake.events[0].annotations[_continuation.WRITERS].split()
        assert len(record) == _continuation.MAX_WRITERS
        assert not [entry for entry in record if entry.startswith(cont.token)]

    @pytest.mark.parametrize(
        "garbage",
        [
            "a:b:c",
            "-5",
            "ünïcödé-wrïtér-ünïcödé-wrïtér:1 " * 15,
            "x:1 " * 10_000,
            "{token}:-1",
            "{token}:" + "9" * 5000,
        ],
    )
    def test_a_record_another_program_garbled_falls_back_to_the_count(self, garbage: str) -> None:
        """Our patch of 9 lands on an event two writers write, its answer lost; then another
        program writes the key with what no writer of ours sets (a user's value, non-ASCII,
        10,000 entries, a negative or 5,000-digit number, even under our token). The record
        cannot tell, so the count decides (12 reached what ours set): landed, never added
        twice, never an error; and only well-formed entries are carried on."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        policy = _policy(clock)
        cont = _continuation_for(fake, clock)
        cont.attempt(_write(_event()), policy)  # created, count 1
        _continuation_for(fake, clock).attempt(_write(_event()), _policy(clock))  # taken over
        cont.attempt(_write(_event(count=2)), policy)  # 409, read: each knows the other, 3
        write = _write(_event(count=11), occurrences=9)
        _attempt_whose_answer_is_lost(fake, "patch", cont, write, policy)
        value = json.dumps(garbage.format(token=cont.token))
        stored = fake.events[0]
        fake.patch(
            stored,
            b'{"metadata":{"annotations":{"%s":%s}}}'
            % (_continuation.WRITERS.encode(), value.encode()),
        )
        kind, local = cont.attempt(write, policy)
        assert (kind, local.count, fake.events[0].count) == ("patched", 11, 12)
        cont.attempt(_write(_event(count=12)), policy)
        record = fake.events[0].annotations[_continuation.WRITERS]
        assert (fake.events[0].count, record.split()) == (13, [record.split()[0]])
        assert record.startswith(cont.token + ":")

    def test_a_forked_child_is_another_writer(self) -> None:
        """A child's requests must not pass for its parent's in the record of writers."""
        cont = _continuation_for(FakeEventSink(), FakeClock(T0))
        parent = cont.token
        cont._after_fork_in_child()
        assert cont.token != parent

    def test_a_forgotten_event_is_read_before_its_patch(self) -> None:
        """The record of what was written is bounded; a repeat of an event whose record went
        reads it first, so that no count is lowered."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event(count=10))
        policy = _policy(clock)
        cont = _continuation_for(fake, clock, size=1)
        cont.attempt(_write(_event()), policy)  # taken over: 11
        cont.attempt(_write(_event(name="web-0.other")), policy)  # pushes the first out
        cont.attempt(_write(_event(count=2)), policy)
        assert fake.get("default", "web-0.abc").count == 12  # type: ignore[union-attr]

    def test_without_read_permission_patches_go_unguarded(self) -> None:
        """After a 403 on a read, guards that fail could not be resolved: none are sent."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event(count=10))
        fake.fail_next("read", sink.ApiStatusError(403, "Forbidden", "no get"))
        policy = _policy(clock)
        cont = _continuation_for(fake, clock)
        cont.attempt(_write(_event()), policy)
        assert not cont.readable
        cont.attempt(_write(_event(count=2)), policy)
        patch = fake.calls[-1]
        assert patch.method == "patch"
        assert b"resourceVersion" not in (patch.data or b"")
        assert fake.get("default", "web-0.abc").count == 10  # type: ignore[union-attr]
        (ours,) = [e for e in fake.events if e.name != "web-0.abc"]
        assert ours.count == 2

    def test_without_read_permission_a_forgotten_event_is_patched_without_a_read(self) -> None:
        """Once reads are refused, a repeat of an event whose record was forgotten is not
        read first (the server refuses reads): it is patched at once with the count the
        correlator has, unguarded, as client-go would."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        policy = _policy(clock)
        cont = _continuation_for(fake, clock, size=1)
        cont.attempt(_write(_event()), policy)  # created, count 1
        fake.fail_next("read", sink.ApiStatusError(403, "Forbidden", "no get"))
        fake.create(_event(name="web-0.other", count=4))  # another process's, under our name
        cont.attempt(_write(_event(name="web-0.other")), policy)  # 403: reads are off
        assert not cont.readable
        assert cont.known("default", "web-0.abc") is None  # pushed out of the record
        before = len(fake.calls)
        kind, local = cont.attempt(_write(_event(count=3), occurrences=2), policy)
        assert [c.method for c in fake.calls[before:]] == ["patch"]
        assert b"resourceVersion" not in (fake.calls[-1].data or b"")
        assert (kind, local.count) == ("patched", 3)
        assert fake.get("default", "web-0.abc").count == 3  # type: ignore[union-attr]

    def test_without_read_a_repeat_whose_event_expired_is_created_again(self) -> None:
        """client-go's ways, for a sink that cannot read under time names: the count patch of
        an event the server let expire meets 404, and the event is created again with its
        count, not given up."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        cont = _continuation.Continuation(
            WithoutRead(fake),
            _sanitise.EventNamer(),
            clock,
            _diagnostics.RateLimitedReporter(clock=clock),
        )
        kind, stored = cont.attempt(_write(_event(count=3)), _policy(clock))
        assert [c.method for c in fake.calls] == ["patch", "create"]
        assert (kind, stored.count) == ("created", 3)

    def test_without_read_a_series_create_meeting_its_event_patches_it(self) -> None:
        """client-go's ways for events.k8s.io/v1: a series patch met 404, and its create then
        met AlreadyExists (the first occurrence's create landed in between): the series is
        patched onto that event, as client-go retries, not given up."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event())
        cont = _continuation.Continuation(
            WithoutRead(fake),
            _sanitise.EventNamer(),
            clock,
            _diagnostics.RateLimitedReporter(clock=clock),
        )
        fake.fail_next("patch", sink.ApiStatusError(404, "NotFound", "not yet"))
        repeat = _event(series=models.EventSeries(2, T0 + timedelta(seconds=1)))
        write = _pending.Write(event=repeat, create=False, held=False, occurrences=1)
        kind, _ = cont.attempt(write, SeriesPolicy(SeriesCorrelator(clock=clock)))
        assert [c.method for c in fake.calls[1:]] == ["patch", "create", "patch"]
        assert kind == "created"
        assert fake.events[0].series == models.EventSeries(2, T0 + timedelta(seconds=1))

    def test_without_read_our_create_in_doubt_that_landed_is_counted_created(self) -> None:
        """Deterministic names, a sink that cannot read: a create whose answer was lost landed;
        its retry meets AlreadyExists, writes its count onto that event and counts it created
        (it was ours), not patched."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        policy = _policy(clock)
        cont = _continuation_for(WithoutRead(fake), clock)
        write = _write(_event())
        _attempt_whose_answer_is_lost(fake, "create", cont, write, policy)
        before = len(fake.calls)
        kind, stored = cont.attempt(write, policy)
        assert [c.method for c in fake.calls[before:]] == ["create", "patch"]
        assert (kind, stored.count, len(fake.events)) == ("created", 1, 1)

    def test_a_403_on_the_read_of_a_renamed_event_names_the_correlators_event(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The report of a refused read names the event as the correlator (and the user's
        logs) know it, not the name of its rename on the server that was read."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        cont = _continuation_for(fake, clock)
        cont.remember(("default", "web-0.abc"), _continuation.Known("web-0.abc-2", "", 0, 0))
        fake.fail_next("read", sink.ApiStatusError(403, "Forbidden", "no get"))
        with caplog.at_level(logging.WARNING, logger=LIBRARY):
            cont.attempt(_write(_event(count=2)), _policy(clock))
        (report,) = [
            r.getMessage() for r in caplog.records if "Unable to read event" in r.getMessage()
        ]
        assert report.startswith("Unable to read event default/web-0.abc to continue its count")

    def test_a_sink_wrapper_that_cannot_read_keeps_client_go_ways(self) -> None:
        """PodUidSink around a sink without read: a TypeError on the read, no report."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event(count=10))
        wrapped = _pod.PodUidSink(WithoutRead(fake), _event().involved_object)
        policy = _policy(clock)
        cont = _continuation_for(wrapped, clock)
        assert callable(getattr(wrapped, "read", None))  # it looks as if it could
        cont.attempt(_write(_event()), policy)
        assert not cont.readable
        assert fake.get("default", "web-0.abc").count == 10  # type: ignore[union-attr]
        assert len(fake.events) == 2

    def test_the_guard_goes_into_the_patch_object(self) -> None:
        guarded = _continuation.guarded_patch
        assert guarded(b'{"count":2}', "7") == b'{"count":2,"metadata":{"resourceVersion":"7"}}'
        assert guarded(b"{}", "7") == b'{"metadata":{"resourceVersion":"7"}}'
        key = _continuation.WRITERS
        assert json.loads(guarded(b'{"count":2}', "7", "a:1")) == {
            "count": 2,
            "metadata": {"resourceVersion": "7", "annotations": {key: "a:1"}},
        }

    def test_a_takeover_never_moves_the_last_time_back_nor_before_the_first(self) -> None:
        """Our occurrence (T0) waited out a 503 while another process created the event 3 s
        later: the takeover's patch wrote lastTimestamp T0, before the stored firstTimestamp
        and back from the other's T0+3 s. Continuing another's event, the last time is never
        earlier than the one stored (the count is still ours added)."""
        later = T0 + timedelta(seconds=3)
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event(first_timestamp=later, last_timestamp=later))
        cont = _continuation_for(fake, clock)
        clock.step(5)  # the wait
        cont.attempt(_write(_event()), _policy(clock))
        (stored,) = fake.events
        assert (stored.count, stored.first_timestamp, stored.last_timestamp) == (2, later, later)

    def test_a_conflict_never_moves_the_last_time_back(self) -> None:
        """Another process patches a later lastTimestamp between our read and our patch: the
        re-read patch adds our count and keeps that later time."""
        later = T0 + timedelta(seconds=30)
        clock = FakeClock(T0)
        fake = FakeEventSink()
        cont = _continuation_for(fake, clock)
        policy = _policy(clock)
        cont.attempt(_write(_event()), policy)  # created, count 1
        _another_process_writes_first(
            fake, b'{"count":5,"lastTimestamp":"2024-01-01T12:00:30Z"}', times=1
        )
        clock.step(31)  # our occurrence at T0+1 s waited its turn
        cont.attempt(_write(_event(count=2, last_timestamp=T0 + timedelta(seconds=1))), policy)
        (stored,) = fake.events
        assert (stored.count, stored.last_timestamp) == (6, later)

    def test_a_takeover_copies_no_time_from_beyond_its_own_clock(self) -> None:
        """Another writer, its clock a year ahead (or a garbage time), stored lastTimestamp
        a year from now: the takeover's patch copied it, and every later takeover (each
        restart, each conflict) copied it again, so that a restarted process never found the
        series quiet and the wrong time stayed. A stored time later than our clock's is not
        copied: the last time written is ours, never beyond our clock."""
        ahead = T0 + timedelta(days=365)
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event(first_timestamp=T0 - timedelta(seconds=5), last_timestamp=ahead))
        cont = _continuation_for(fake, clock)
        cont.attempt(_write(_event()), _policy(clock))
        (stored,) = fake.events
        assert (stored.count, stored.last_timestamp) == (2, T0)

    def test_a_series_takeover_never_observes_before_the_event_time(self) -> None:
        """events.k8s.io/v1: the same takeover gave series.lastObservedTime T0 on an event
        whose eventTime is T0+3 s; the series' last observation is never earlier than the
        stored event's latest time."""
        later = T0 + timedelta(seconds=3)
        clock = FakeClock(T0)
        fake = FakeEventSink()
        fake.create(_event(event_time=later, first_timestamp=None, last_timestamp=None))
        policy = SeriesPolicy(SeriesCorrelator(clock=clock))
        cont = _continuation_for(fake, clock)
        ours = _event(event_time=T0, first_timestamp=None, last_timestamp=None)
        clock.step(5)  # the wait
        cont.attempt(_write(ours), policy)
        (stored,) = fake.events
        assert stored.series == models.EventSeries(2, later)

    def test_a_series_our_lost_patch_continued_is_not_taken_for_finished_on_its_retry(
        self,
    ) -> None:
        """events.k8s.io/v1, a restart whose wall clock was stepped back 40 minutes: its
        create of 20 meets the earlier run's series (11, last seen 15 minutes after it began,
        8 after ours began: not finished) and continues it, 31; the patch lands but its answer
        is lost, and it set the last observation to our clock, before the series began. The
        retry meets the same event, which it continued itself: not a finished series to walk
        past, so ours is not created again elsewhere (31 more: ours twice, theirs copied)."""
        clock = FakeClock(T0 - timedelta(minutes=40))  # our wall clock, stepped back
        fake = FakeEventSink()
        v1: dict[str, Any] = {"first_timestamp": None, "last_timestamp": None}
        earlier = models.EventSeries(11, T0 + timedelta(minutes=15))
        fake.create(_event(count=11, event_time=T0, series=earlier, **v1))  # the earlier run's
        policy = SeriesPolicy(SeriesCorrelator(clock=clock))
        cont = _continuation_for(fake, clock)
        began = T0 + timedelta(minutes=7)  # before the step back
        ours = _event(event_time=began, series=models.EventSeries(20, clock.now()), **v1)
        write = _pending.Write(event=ours, create=True, held=False, occurrences=20)
        _attempt_whose_answer_is_lost(fake, "patch", cont, write, policy)
        cont.attempt(write, policy)
        assert [(e.event_time, e.series and e.series.count) for e in fake.events] == [(T0, 31)]

    def test_a_series_continued_then_made_to_look_finished_by_another_writer_is_not_walked_past(
        self,
    ) -> None:
        """events.k8s.io/v1 (seen in bench/soak.py as a count above what was logged): our
        create of 20, its wall clock 10 minutes ahead, meets another replica's series (11,
        last seen 8 minutes in: not finished) and continues it, 31. Before our patch that
        replica, its clock stepped back, patches 15 last seen 1 minute in; our guard fails and
        the re-read looks finished by ours. It is the event this attempt continued: ours is
        added to it (35), not created under the next name with the 31 it had carried over."""
        clock = FakeClock(T0 + timedelta(minutes=10))
        fake = FakeEventSink()
        v1: dict[str, Any] = {"first_timestamp": None, "last_timestamp": None}
        earlier = models.EventSeries(11, T0 + timedelta(minutes=8))
        fake.create(_event(count=11, event_time=T0, series=earlier, **v1))  # the other's
        policy = SeriesPolicy(SeriesCorrelator(clock=clock))
        cont = _continuation_for(fake, clock)
        back = (T0 + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        data = json.dumps({"series": {"count": 15, "lastObservedTime": back}}).encode()
        _another_process_writes_first(fake, data, times=1)
        ours = _event(event_time=clock.now(), series=models.EventSeries(20, clock.now()), **v1)
        cont.attempt(_pending.Write(event=ours, create=True, held=False, occurrences=20), policy)
        assert [(e.event_time, e.series and e.series.count) for e in fake.events] == [(T0, 35)]

    def test_a_new_series_whose_create_was_lost_is_retried_under_the_name_it_went_under(
        self,
    ) -> None:
        """events.k8s.io/v1: this process wrote its series under another name than its own
        (it had walked to the Event that went on). That series went quiet; the next one's
        create reads it first, finds it finished and names ours after it, where it is on the
        server. The create lands but its answer is lost: the retry goes to the same name and
        finds our own event there, instead of creating the series again under the name the
        correlator gave it (the occurrence counted twice)."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        namer = _sanitise.EventNamer(event_names="deterministic")

        def renamed(event: models.Event, generation: int) -> models.Event:
            return dataclasses.replace(event, name=namer.renamed(event, 1, clock.now()))

        grouped = SeriesCorrelator(clock=clock, key=series_key, rename=renamed)
        policy = SeriesPolicy(grouped)
        cont = _continuation_for(fake, clock)
        v1: dict[str, Any] = {"first_timestamp": None, "last_timestamp": None}
        grouped.observe(_event(name="web-0.first", event_time=T0, **v1))
        walked = fake.create(
            _event(name="web-0.walked", event_time=T0, series=models.EventSeries(2, T0), **v1)
        )
        known = _continuation.Known(walked.name, walked.resource_version, 0, 2)
        cont.remember(("default", "web-0.first"), known)  # where our first series went
        clock.step(FINISH_SECONDS + 60)
        ours, _ = grouped.observe(_event(name="web-0.first", event_time=clock.now(), **v1))
        assert policy.previous(ours) == "web-0.first"
        write = _pending.Write(event=ours, create=True, held=False, occurrences=1)
        _attempt_whose_answer_is_lost(fake, "create", cont, write, policy)
        cont.attempt(write, policy)
        assert [e.name for e in fake.events if e.name != walked.name] == [
            namer.renamed(dataclasses.replace(ours, name=walked.name), 1, clock.now())
        ]

    def test_the_next_occurrence_after_a_lost_create_given_up_goes_where_it_went(self) -> None:
        """events.k8s.io/v1: a new series' create went under the name after the Event where
        this process's series lived (it had walked there). The create landed but its answer
        was lost, and the writer gave the write up (out of attempts). The next occurrence of
        the series continues the Event the create left, instead of creating the series again
        under the correlator's own name (two Events, the first occurrence counted twice)."""
        clock = FakeClock(T0)
        fake = FakeEventSink()
        namer = _sanitise.EventNamer(event_names="deterministic")

        def renamed(event: models.Event, generation: int) -> models.Event:
            return dataclasses.replace(event, name=namer.renamed(event, 1, clock.now()))

        grouped = SeriesCorrelator(clock=clock, key=series_key, rename=renamed)
        policy = SeriesPolicy(grouped)
        cont = _continuation_for(fake, clock)
        v1: dict[str, Any] = {"first_timestamp": None, "last_timestamp": None}
        grouped.observe(_event(name="web-0.first", event_time=T0, **v1))
        walked = fake.create(
            _event(name="web-0.walked", event_time=T0, series=models.EventSeries(2, T0), **v1)
        )
        known = _continuation.Known(walked.name, walked.resource_version, 0, 2)
        cont.remember(("default", "web-0.first"), known)  # where our first series went
        clock.step(FINISH_SECONDS + 60)
        ours, _ = grouped.observe(_event(name="web-0.first", event_time=clock.now(), **v1))
        write = _pending.Write(event=ours, create=True, held=False, occurrences=1)
        _attempt_whose_answer_is_lost(fake, "create", cont, write, policy)
        clock.step(1)  # the write was given up; the series goes on
        second, held = grouped.observe(_event(name="web-0.first", event_time=clock.now(), **v1))
        cont.attempt(_pending.Write(event=second, create=False, held=held), policy)
        ours_on_server = [e for e in fake.events if e.name != walked.name]
        assert [policy.count_of(e) for e in ours_on_server] == [2]


# -- any history of two writers of one event -------------------------------------------------


class _Writer:
    """One process's writer of the event ``_event()`` describes, driven step by step."""

    def __init__(self, fake: FakeEventSink, clock: FakeClock) -> None:
        self.clock, self.counters = clock, _diagnostics.Counters()
        options = correlator.CorrelatorOptions(clock=clock, burst_size=1_000)
        self.correlator = correlator.EventCorrelator(options)
        self.writes = _pending.Writes(
            fake,
            correlator.CountPolicy(self.correlator),
            self.counters,
            options=_options.broadcasting(
                queue_length=10,
                writers=1,
                max_tries=4,
                sleep_duration=1.0,
                correlator=None,
                event_names="deterministic",
                clock=clock,
                sleep=None,
            ),
            clock=clock,
            rng=lambda: 0.5,
            reporter=_diagnostics.RateLimitedReporter(clock=clock),
            namer=_sanitise.EventNamer(event_names="deterministic"),
        )

    def log(self) -> None:
        # each in a second of its own: two first creates of one count in one second, one of
        # them in doubt, cannot be told apart (docs/correlation.md, rule 5)
        self.clock.step(1.0)
        now = self.clock.now()
        occurrence = _event(first_timestamp=now, last_timestamp=now)
        for event, held, n in self.correlator.correlate_many([occurrence]):
            self.writes.submit_event(event, held=held, occurrences=n)

    def write(self) -> bool:
        """One attempt of the next write that may go; False when none may."""
        if (write := self.writes.take()) is None:
            return False
        try:
            kind, stored = self.writes.attempt(write)
        except Exception as error:
            self.writes.failed(write, error, stopping=False)
            return True
        self.writes.feed_back(write, stored)
        self.writes.succeeded(write, kind)
        return True

    def counted(self, *outcomes: str) -> int:
        return sum(self.counters.snapshot().get(outcome, 0) for outcome in outcomes)


def _next_write_request(fake: FakeEventSink, fate: str) -> None:
    """The next create or patch is refused before it is sent, or its answer is lost after it
    landed ("lose") or before ("reset": in doubt, as a lost one)."""

    def hook(method: str) -> Any:
        def fail(*args: Any) -> None:
            fake.on_create = fake.on_patch = None
            if fate == "lose":
                getattr(fake, method)(*args)
            raise (ConnectionRefusedError if fate == "refuse" else ConnectionResetError)(fate)

        return fail

    fake.on_create, fake.on_patch = hook("create"), hook("patch")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["log", "write", "lose", "reset", "refuse", "tick", "restart"]),
            st.integers(0, 1),
        ),
        max_size=40,
    )
)
@example(  # its create in doubt did not land: the one found began a second apart, the other's
    steps=[("log", 0), ("log", 1), ("reset", 1)]
)
@example(  # its patch in doubt landed, the record says so: not again
    steps=[("log", 0), ("log", 1), ("write", 1), ("write", 0), ("log", 0), ("lose", 0)]
)
@example(  # its patch in doubt (sent before it knew of the other) did not land: again
    steps=[("log", 0), ("log", 1), ("write", 0), ("log", 0), ("write", 1), ("reset", 0)]
)
def test_two_writers_of_one_event_count_what_they_call_written_once(steps) -> None:
    """Two processes log one event and write it, answers lost (the request landed or not)
    or connections refused; each may exit (what it did not write is failed) and start again.
    Once both wrote all they could, the server's count is every occurrence counted written,
    and of those counted failed at most the ones that may have landed: none twice, none
    counted written missing, and one event."""
    clock, fake = FakeClock(T0), FakeEventSink()
    writers = [_Writer(fake, clock), _Writer(fake, clock)]
    everyone = list(writers)
    for action, n in steps:
        if action == "log":
            writers[n].log()
        elif action == "tick":
            clock.step(1.5)
        elif action == "restart":
            writers[n].writes.abandon(in_flight=True)
            writers[n] = _Writer(fake, clock)
            everyone.append(writers[n])
        else:
            if action != "write":
                _next_write_request(fake, action)
            writers[n].write()
            fake.on_create = fake.on_patch = None
    for _ in range(10):  # every retry, after its back-off
        clock.step(60)
        for writer in writers:
            while writer.write():
                pass
    written = ("created", "patched", "coalesced")
    for writer in everyone:
        assert not writer.writes.pending()
        assert writer.counted(*written, "failed") == writer.writes.submitted
    assert len(fake.events) <= 1, fake.events
    stored = sum(event.count for event in fake.events)
    counted = sum(writer.counted(*written) for writer in everyone)
    failed = sum(writer.counted("failed") for writer in everyone)
    assert counted <= stored <= counted + failed, (stored, counted, failed)
