"""The fleet scenarios: replica processes logging one incident to one local API server.

Shared by tests/test_continuation.py (small fleets on a FakeClock) and bench/fleet.py (2 to
50 replicas in real time, with and without the EventRateLimit emulation, restarts in the
middle). Every replica is a process of its own, started by a forkserver: the library is
imported once in the server process, which has no threads, and each replica is forked from
it, so that a fleet of sixteen costs little and no replica inherits the test's threads.

A replica builds a :class:`KubernetesEventHandler` (or, for the baseline, posts one event
per record as Kopf does: ``generateName``, count 1, no retries), waits at a barrier with the
others, logs its warnings, flushes within ``flush_timeout`` and reports its ``stats()``.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.synchronize
import queue
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from k8s_logging_events.testing import LocalApiServer

HANDLER = "handler"
"""A replica that logs through a KubernetesEventHandler."""

ONE_CREATE = "one-create"
"""A replica that creates one event per record (Kopf's ``post_event``): the baseline."""

AT = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
"""The instant at which FakeClock replicas log: all of them at once."""

_PRELOAD = ["k8s_logging_events", "k8s_logging_events.handler", "kubernetes.client"]
_context: multiprocessing.context.ForkServerContext | None = None


def context() -> multiprocessing.context.ForkServerContext:
    """The forkserver context, its server started with the library imported."""
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        _context = ctx
    return _context


@dataclass(frozen=True)
class Replica:
    """One replica process: who it is, what it logs and how."""

    url: str
    host: str
    component: str = "shop"
    objects: tuple[str, ...] = ("web-0",)
    """Pods it logs about, in turn."""
    namespace: str = "default"
    occurrences: int = 5
    reason: str = "BackOff"
    message: str = "Back-off restarting failed container"
    event_names: str = "deterministic"
    api: str = "v1"
    at: datetime | None = AT
    """A FakeClock standing at this instant (back-offs pass at once); None: real clocks."""
    way: str = HANDLER
    qps: float = 0.0
    """The client-side rate limit (0: off)."""
    flush_timeout: float = 30.0
    max_tries: int = 12
    sleep_duration: float = 10.0


@dataclass
class ReplicaResult:
    """What one replica process reports."""

    host: str
    logged: int
    stats: dict[str, int]
    flushed: bool
    drain_seconds: float
    error: str = ""


def pod(name: str, namespace: str = "default") -> dict[str, Any]:
    """A Pod manifest, as an application would pass it as ``involved``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
    }


def replica_main(
    replica: Replica,
    start: multiprocessing.synchronize.Barrier | None,
    results: multiprocessing.queues.Queue[ReplicaResult],
) -> None:
    """The body of a replica process: log, flush, report (never raises)."""
    try:
        result = (
            _run_handler(replica, start)
            if replica.way == HANDLER
            else _run_one_create(replica, start)
        )
    except BaseException:  # reported to the parent, which fails the run
        result = ReplicaResult(replica.host, 0, {}, False, 0.0, traceback.format_exc())
    results.put(result)


def _run_handler(
    replica: Replica, start: multiprocessing.synchronize.Barrier | None
) -> ReplicaResult:
    from k8s_logging_events.handler import KubernetesEventHandler
    from k8s_logging_events.testing import FakeClock

    clock = FakeClock(replica.at) if replica.at is not None else None
    handler = KubernetesEventHandler(
        component=replica.component,
        host=replica.host,
        sink=replica.url,
        qps=replica.qps,
        clock=clock,
        sleep=clock.sleep if clock is not None else None,
        event_names=replica.event_names,
        api=replica.api,
        flush_timeout=replica.flush_timeout,
        max_tries=replica.max_tries,
        sleep_duration=replica.sleep_duration,
    )
    log = logging.getLogger(f"fleet.{replica.host}")
    log.propagate = False
    log.addHandler(handler)
    manifests = [pod(name, replica.namespace) for name in replica.objects]
    if start is not None:
        start.wait(60)
    for number in range(replica.occurrences):
        log.warning(
            replica.message,
            extra={"involved": manifests[number % len(manifests)], "reason": replica.reason},
        )
    began = time.monotonic()
    active = handler.broadcaster
    flushed = active is not None and active.flush(replica.flush_timeout)
    drained = time.monotonic() - began
    handler.close()
    log.removeHandler(handler)
    return ReplicaResult(replica.host, replica.occurrences, handler.stats(), flushed, drained)


def _run_one_create(
    replica: Replica, start: multiprocessing.synchronize.Barrier | None
) -> ReplicaResult:
    """Kopf's way: every record is a new event (generateName, count 1), tried once."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = replica.url
    configuration.retries = False
    api = client.CoreV1Api(client.ApiClient(configuration))
    stats: Counter[str] = Counter()
    if start is not None:
        start.wait(60)
    began = time.monotonic()
    for number in range(replica.occurrences):
        name = replica.objects[number % len(replica.objects)]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: Any = {
            "metadata": {"generateName": "kopf-event-", "namespace": replica.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "namespace": replica.namespace,
                "uid": f"uid-{name}",
            },
            "type": "Warning",
            "reason": replica.reason,
            "message": replica.message,
            "source": {"component": replica.component, "host": replica.host},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            api.create_namespaced_event(replica.namespace, body)
        except client.ApiException:
            stats["failed"] += 1
        else:
            stats["created"] += 1
    stats["accepted"] = replica.occurrences
    drained = time.monotonic() - began
    api.api_client.close()
    return ReplicaResult(replica.host, replica.occurrences, dict(stats), True, drained)


def run_replicas(replicas: Sequence[Replica], timeout: float = 120.0) -> list[ReplicaResult]:
    """Run ``replicas`` as processes that start logging together; return their reports."""
    ctx = context()
    start = ctx.Barrier(len(replicas))
    results: multiprocessing.queues.Queue[ReplicaResult] = ctx.Queue()
    processes = [
        ctx.Process(target=replica_main, args=(replica, start, results), daemon=True)
        for replica in replicas
    ]
    for process in processes:
        process.start()
    reports: list[ReplicaResult] = []
    deadline = time.monotonic() + timeout
    try:
        while len(reports) < len(replicas):
            try:
                reports.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(
                    f"{len(replicas) - len(reports)} replica(s) did not report in {timeout} s"
                ) from None
    finally:
        for process in processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        results.close()
        results.join_thread()
    errors = [report.error for report in reports if report.error]
    assert not errors, errors[0]
    return reports


def counted(server: LocalApiServer, namespace: str = "default") -> Counter[str]:
    """Occurrences on the server per (event name): count, or the series count (1 without)."""
    totals: Counter[str] = Counter()
    for event in server.events(namespace):
        series = event.get("series") or {}
        total = int(series.get("count") or 0) or int(event.get("count") or 0) or 1
        totals[event["metadata"]["name"]] += total
    return totals


@dataclass
class FleetResult:
    """What one fleet run did, as bench/fleet.py prints it."""

    label: str
    replicas: int
    logged: int
    counted: int
    events: int
    writes: int
    reads: int
    throttled: int
    conflicts: int
    drain_seconds: float
    stats: Counter[str] = field(default_factory=Counter)

    @property
    def writes_per_occurrence(self) -> float:
        return self.writes / self.logged if self.logged else 0.0


def run_fleet(
    server: LocalApiServer,
    label: str,
    *,
    replicas: int,
    nodes: int,
    occurrences: int,
    objects: int = 3,
    restart: bool = False,
    way: str = HANDLER,
    real_time: bool = True,
    **options: Any,
) -> FleetResult:
    """One incident storm: ``replicas`` processes on ``nodes`` nodes (several share one),
    each logging ``occurrences`` warnings about ``objects`` pods of one Deployment; with
    ``restart``, every replica exits half-way and a new process logs the rest."""
    server.reset()
    server.clear_requests()
    names = tuple(f"web-{number}" for number in range(objects))
    fleet = [
        Replica(
            url=server.url,
            host=f"node-{number % nodes}",
            objects=names,
            occurrences=occurrences,
            way=way,
            at=None if real_time else AT,
            **options,
        )
        for number in range(replicas)
    ]
    waves = [fleet]
    if restart:
        half = [replace(replica, occurrences=occurrences // 2) for replica in fleet]
        rest = [replace(replica, occurrences=occurrences - occurrences // 2) for replica in fleet]
        waves = [half, rest]
    reports = list(itertools.chain.from_iterable(run_replicas(wave) for wave in waves))
    requests = server.requests
    stats: Counter[str] = Counter()
    for report in reports:
        stats.update(report.stats)
    totals = counted(server)
    return FleetResult(
        label=label,
        replicas=replicas,
        logged=sum(report.logged for report in reports),
        counted=sum(totals.values()),
        events=len(totals),
        writes=sum(1 for r in requests if r.method in ("POST", "PATCH", "PUT")),
        reads=sum(1 for r in requests if r.method == "GET" and "/events/" in r.path),
        throttled=sum(1 for r in requests if r.status == 429),
        conflicts=sum(1 for r in requests if r.status == 409),
        drain_seconds=max((report.drain_seconds for report in reports), default=0.0),
        stats=stats,
    )
