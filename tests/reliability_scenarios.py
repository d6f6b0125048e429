"""The reliability scenarios: chaos, outage, exit, threads and fork runners, and their checks.

Shared by tests/test_reliability.py (fast sizes), tests/test_reliability_slow.py (full
sizes) and bench/reliability.py (the long run as tables). Each ``run_*`` drives the whole
pipeline against a LocalApiServer and returns what happened; each ``check_*`` asserts what
must hold.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import logging.config
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from k8s_logging_events import _diagnostics, models, recorder, sink
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, LocalApiServer

OUTCOMES = _diagnostics.OUTCOMES


LIBRARY_LOGGER = "k8s_logging_events"


REPO = Path(__file__).resolve().parent.parent


_names = itertools.count()


def pod(name: str, namespace: str = "default") -> dict[str, Any]:
    """A Pod manifest, as an application would pass it as ``involved``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
    }


def unaccounted(stats: dict[str, int]) -> int:
    """Accepted occurrences without an outcome (0 once everything settled)."""
    return stats["accepted"] - sum(stats[k] for k in OUTCOMES)


def stored_counts(server: LocalApiServer, namespace: str | None = "default") -> Counter[str]:
    """The server's count per involved object name, summed over its events (an
    events.k8s.io/v1 event counts its series, or one occurrence without a series)."""
    counts: Counter[str] = Counter()
    for event in server.events(namespace):
        count = event.get("count") or (event.get("series") or {}).get("count") or 1
        counts[event["involvedObject"]["name"]] += int(count)
    return counts


def app_logger(prefix: str = "app") -> logging.Logger:
    """A fresh, non-propagating application logger (conftest restores logging afterwards)."""
    logger = logging.getLogger(f"tests.reliability.{prefix}{next(_names)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


_Handler = TypeVar("_Handler", bound=logging.Handler)


@contextlib.contextmanager
def on_library_logger(handler: _Handler) -> Iterator[_Handler]:
    """``handler`` on the library's own logger for the block: it receives the reports."""
    library = logging.getLogger("k8s_logging_events")
    library.addHandler(handler)
    try:
        yield handler
    finally:
        library.removeHandler(handler)


@dataclass
class ThreadLimit:
    """Names of the threads (named with ``part``) refused once, then started."""

    part: str
    refused: list[str]
    started: list[str]


def thread_limit_once(monkeypatch: Any, part: str) -> ThreadLimit:
    """Patch ``threading.Thread.start``: the first thread whose name holds ``part`` meets
    RuntimeError("can't start new thread"), as at a container's pids limit; later ones start."""
    start = threading.Thread.start
    limit = ThreadLimit(part, [], [])

    def limited(thread: threading.Thread) -> None:
        if part in thread.name:
            if not limit.refused:
                limit.refused.append(thread.name)
                raise RuntimeError("can't start new thread")
            limit.started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", limited)
    return limit


def writers_never_start(monkeypatch: Any) -> None:
    """Patch ``threading.Thread.start``: no writer thread starts, for good (a lasting pids
    limit), so a flush makes the writes on the caller's thread; other threads start."""
    start = threading.Thread.start

    def limited(thread: threading.Thread) -> None:
        if "-writer-" in thread.name:
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", limited)


class ListHandler(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "calls": len(ordered),
        "mean_us": sum(ordered) / len(ordered) * 1e6,
        "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6,
        "max_ms": ordered[-1] * 1e3,
    }


CHAOS_MIX: tuple[tuple[str, float, dict[str, Any]], ...] = (
    # (kind, share of write requests, inject() options); each fault is tried only on the
    # requests the ones before it let through, so its probability is scaled up to match
    ("500", 0.10, {"action": "status", "status": 500}),
    ("429", 0.05, {"action": "status", "status": 429}),
    ("drop", 0.02, {"action": "drop"}),
    ("slow", 0.01, {"action": "delay", "delay": 0.05}),
)


"""About 10% 500s, 5% 429s with Retry-After, 2% dropped connections, 1% slow answers."""


# a write due within a microsecond counts as due (the pending writes' resolution), and these
# times are the fake clock's wall time as float timestamps (about 2e-7 s apart near 1.8e9):
# a retry may start a microsecond and a rounding step before its due time, never more
_TIME_TOLERANCE = 2e-6


@dataclass(frozen=True, slots=True)
class Attempt:
    """One write attempt as the writer made it, on the fake clock."""

    name: str
    method: str
    started: float
    ended: float
    error: Exception | None


class TimedSink:
    """Passes writes to a real sink and keeps the fake-clock time and outcome of each."""

    def __init__(self, inner: sink.KubernetesEventSink, clock: FakeClock) -> None:
        self.inner = inner
        self.api = inner.api  # the handler writes through it by the inner sink's API
        self.clock = clock
        self.attempts: list[Attempt] = []  # list.append is atomic: no lock needed

    def create(self, event: models.Event) -> models.Event:
        return self._timed("POST", event, lambda: self.inner.create(event))

    def update(self, event: models.Event) -> models.Event:
        return self._timed("PUT", event, lambda: self.inner.update(event))

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        return self._timed("PATCH", event, lambda: self.inner.patch(event, data))

    def _timed(
        self, method: str, event: models.Event, call: Callable[[], models.Event]
    ) -> models.Event:
        started = self.clock.now().timestamp()
        try:
            stored: models.Event = call()
        except Exception as error:
            self.attempts.append(
                Attempt(event.name, method, started, self.clock.now().timestamp(), error)
            )
            raise
        self.attempts.append(
            Attempt(event.name, method, started, self.clock.now().timestamp(), None)
        )
        return stored


@dataclass
class ChaosResult:
    """What one chaos run did and what the server holds afterwards."""

    occurrences: int
    objects: int
    threads: int
    commit: bool
    logged: Counter[str]
    stored: Counter[str]
    stats: dict[str, int]
    flushed: bool
    faults: dict[str, int]
    requests: Counter[tuple[str, int | None]]
    attempts: list[Attempt]
    retry_after: float
    lost_creates: list[str]
    continued: list[str]
    log_seconds: float
    flush_seconds: float

    @property
    def exceeding(self) -> dict[str, tuple[int, int]]:
        """Objects whose count on the server is above what was logged about them."""
        return {
            name: (self.stored[name], self.logged[name])
            for name in self.stored
            if self.stored[name] > self.logged[name]
        }

    @property
    def different(self) -> dict[str, tuple[int, int]]:
        """Objects whose count on the server is not what was logged about them."""
        names = set(self.logged) | set(self.stored)
        return {
            name: (self.stored[name], self.logged[name])
            for name in names
            if self.stored[name] != self.logged[name]
        }

    def retry_after_violations(self) -> list[tuple[str, float]]:
        """Retries of a 429 that came sooner than its Retry-After (on the fake clock)."""
        by_name: dict[str, list[Attempt]] = {}
        for attempt in sorted(self.attempts, key=lambda a: (a.started, a.ended)):
            by_name.setdefault(attempt.name, []).append(attempt)
        early = []
        for name, attempts in by_name.items():
            for failed, retry in itertools.pairwise(attempts):
                if isinstance(failed.error, sink.ApiStatusError) and failed.error.status == 429:
                    waited = retry.started - failed.ended
                    if waited < self.retry_after - _TIME_TOLERANCE:
                        early.append((name, waited))
        return early

    @property
    def throttled(self) -> int:
        """Attempts answered 429, also on the resend after a broken connection (which
        attempts the seeded faults hit depends on the threads' order)."""
        return sum(
            1
            for a in self.attempts
            if isinstance(a.error, sink.ApiStatusError) and a.error.status == 429
        )


def burst_sleeper(clock: FakeClock, longest: float = 30.0) -> Callable[..., bool]:
    """A sleeper for a burst on a FakeClock: back-offs and Retry-After (up to ``longest``
    seconds) pass at once, moving the clock; the spam filter's five-minute waits do not.

    With ``clock.sleep`` alone the writer would skip through those waits too, and the spam
    filter would hand out a token per object every time it did: nearly every occurrence of
    a burst of a few seconds would become a write. Here a long wait polls in real time,
    without moving the clock, until new work or the flush ends it (as in a real burst).
    """

    def sleep(seconds: float, cancel: threading.Event) -> bool:
        if seconds <= longest:
            return clock.sleep(seconds, cancel)
        return cancel.wait(0.05)

    return sleep


def run_chaos(
    server: LocalApiServer,
    *,
    occurrences: int,
    objects: int,
    threads: int = 8,
    commit: bool,
    seed: int = 7,
    retry_after: float = 2.0,
    flush_timeout: float = 30.0,
    api: str = "v1",
) -> ChaosResult:
    """Log ``occurrences`` warnings about ``objects`` Pods from ``threads`` threads while the
    server fails about 18% of the writes, then flush and read back the server's counts.

    With ``commit`` the 500s, drops and slow answers come after the write was stored (the
    answer is lost); 429s never do, as a real server throttles before it does anything.
    ``api`` is the Events API the sink writes. Time is a FakeClock: see :func:`burst_sleeper`.
    """
    clock = FakeClock()
    sleep = burst_sleeper(clock)
    inner = sink.KubernetesEventSink.from_url(
        server.url, qps=0, request_timeout=(2.0, 2.0), clock=clock, sleep=sleep, api=api
    )
    timed = TimedSink(inner, clock)
    handler = KubernetesEventHandler(
        component="chaos",
        host="node-1",
        sink=timed,
        queue_length=occurrences,
        clock=clock,
        sleep=sleep,
        sleep_duration=0.5,
        flush_timeout=10,
    )
    log = app_logger("chaos")
    log.addHandler(handler)
    rest = 1.0
    faults = []
    for number, (kind, share, options) in enumerate(CHAOS_MIX):
        extra: dict[str, Any] = dict(options)
        if kind == "429":
            extra["retry_after"] = retry_after
        elif commit:
            extra["commit"] = True
        fault = server.inject(
            path=r"/events", times=None, probability=share / rest, seed=seed + number, **extra
        )
        faults.append((kind, fault))
        rest -= share
    names = [f"chaos-{number}" for number in range(objects)]
    manifests = [pod(name) for name in names]
    tallies = [Counter[str]() for _ in range(threads)]

    def work(worker: int) -> None:
        rng = random.Random(seed * 1000 + worker)
        tally = tallies[worker]
        for _ in range(occurrences // threads + (worker < occurrences % threads)):
            number = rng.randrange(objects)
            log.warning(
                "Back-off restarting failed container",
                extra={"involved": manifests[number], "reason": "BackOff"},
            )
            tally[names[number]] += 1

    started = time.monotonic()
    workers = [
        threading.Thread(target=work, args=(n,), name=f"test-chaos-{n}") for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    logged_at = time.monotonic()
    try:
        active = handler.broadcaster
        flushed = active is not None and active.flush(flush_timeout)
        flushed_at = time.monotonic()
        for _, fault in faults:
            fault.cancel()
        stats = handler.stats()
    finally:
        handler.close()
        inner.close()
    requests = server.requests  # the latest 10,000: enough for the kinds of answers
    attempts = sorted(timed.attempts, key=lambda a: (a.started, a.ended))
    lost = [
        a.name
        for a in attempts
        if a.method == "POST"
        and isinstance(a.error, sink.ApiStatusError)
        and a.error.is_already_exists
    ]
    continued = {
        a.name for a in attempts if a.method == "PATCH" and a.error is None and a.name in set(lost)
    }
    return ChaosResult(
        occurrences=occurrences,
        objects=objects,
        threads=threads,
        commit=commit,
        logged=sum(tallies, Counter()),
        stored=stored_counts(server),
        stats=stats,
        flushed=flushed,
        faults={kind: fault.fired for kind, fault in faults},
        requests=Counter((r.method, r.status) for r in requests),
        attempts=attempts,
        retry_after=retry_after,
        lost_creates=lost,
        continued=[name for name in lost if name in continued],
        log_seconds=logged_at - started,
        flush_seconds=flushed_at - logged_at,
    )


def check_chaos(result: ChaosResult) -> None:
    """Everything the chaos case promises, for either mode."""
    assert result.flushed, result.stats
    assert all(result.faults.values()), f"every kind of fault fired: {result.faults}"
    stats = result.stats
    assert stats["accepted"] == result.occurrences
    assert unaccounted(stats) == 0, stats
    assert stats["pending"] == 0
    assert stats["dropped"] == 0
    assert result.exceeding == {}, "no count on the server above what was logged"
    # nothing given up: every fault was retried through, and lost creates recognised
    assert stats["failed"] == 0, stats
    assert result.different == {}, "every object's count is what was logged about it"
    assert result.throttled > 0
    assert result.retry_after_violations() == [], "Retry-After is waited out"
    if result.commit:
        assert result.lost_creates, "some creates were stored but their answer lost"
        assert sorted(result.continued) == sorted(result.lost_creates)
    else:
        assert result.lost_creates == []


@dataclass
class OutageResult:
    """Per-call logging cost around an outage, and what the server holds after it."""

    calls: dict[str, list[float]]
    network_threads: Counter[str]
    pending_max: int
    keys: int
    live_events: int
    outage_occurrences: int
    stats_in_outage: dict[str, int]
    stats: dict[str, int]
    flushed: bool
    logged: Counter[str]
    stored: Counter[str]
    hung_requests: int
    recovery_seconds: float

    @property
    def ratio(self) -> float:
        """Mean cost of a logging call during the outage over the mean before it."""
        before = self.calls["before"]
        during = self.calls["refused"] + self.calls["hanging"]
        return (sum(during) / len(during)) / (sum(before) / len(before))

    @property
    def slowest(self) -> float:
        return max(max(values) for values in self.calls.values())


def run_outage(
    server: LocalApiServer,
    *,
    refuse_seconds: float,
    hang_seconds: float,
    objects_per_phase: int = 20,
    min_calls: int = 1_000,
    sleep_duration: float = 0.2,
    read_timeout: float = 0.25,
    seed: int = 3,
) -> OutageResult:
    """Log steadily while the server refuses connections, then hangs, then comes back.

    Each phase logs about its own objects, so that writes (not only spam-filtered
    repeats) are due during the outage. Only the writer threads may touch the network:
    every request -- the sink's own (``_http``) and urllib3's -- is tagged with the thread
    that made it.
    """
    import urllib3.connectionpool

    from k8s_logging_events import _http

    network: Counter[str] = Counter()
    real_urlopen = urllib3.connectionpool.HTTPConnectionPool.urlopen
    real_request = _http.Channel.request

    def tagged_urlopen(pool: Any, *args: Any, **kwargs: Any) -> Any:
        network[threading.current_thread().name.rstrip("0123456789")] += 1
        return real_urlopen(pool, *args, **kwargs)

    def tagged_request(channel: Any, *args: Any, **kwargs: Any) -> Any:
        network[threading.current_thread().name.rstrip("0123456789")] += 1
        return real_request(channel, *args, **kwargs)

    handler = KubernetesEventHandler(
        component="outage",
        host="node-1",
        sink=server.url,
        qps=0,
        request_timeout=(read_timeout, read_timeout),
        sleep_duration=sleep_duration,
        flush_timeout=30,
    )
    log = app_logger("outage")
    log.addHandler(handler)
    rng = random.Random(seed)
    logged: Counter[str] = Counter()
    calls: dict[str, list[float]] = {}
    pending_max = 0

    def phase(label: str, seconds: float) -> None:
        nonlocal pending_max
        names = [f"{label}-{number}" for number in range(objects_per_phase)]
        manifests = [pod(name) for name in names]
        durations: list[float] = []
        end = time.monotonic() + seconds
        while len(durations) < min_calls or time.monotonic() < end:
            number = rng.randrange(objects_per_phase)
            before = time.perf_counter()
            log.warning(
                "Readiness probe failed", extra={"involved": manifests[number], "reason": "Probe"}
            )
            durations.append(time.perf_counter() - before)
            logged[names[number]] += 1
            if len(durations) % 100 == 0:
                pending_max = max(pending_max, handler.stats()["pending_events"])
                time.sleep(0.001)  # a steady stream, not one burst
        calls[label] = durations

    urllib3.connectionpool.HTTPConnectionPool.urlopen = tagged_urlopen  # type: ignore[method-assign,assignment]
    _http.Channel.request = tagged_request  # type: ignore[method-assign,assignment]
    hang = None
    # the cyclic garbage collector may stop every thread for tens of milliseconds in a big
    # process (a test run): that is the interpreter, not the library, so it stays off here
    gc.collect()
    gc.disable()
    try:
        phase("before", 0.3)
        active = handler.broadcaster
        assert active is not None
        assert active.flush(10)
        server.refuse_connections()
        phase("refused", refuse_seconds)
        server.accept_connections()
        hang = server.inject(action="hang", times=None)
        phase("hanging", hang_seconds)
        stats_in_outage = handler.stats()
        gc.collect()
        live_events = sum(1 for o in gc.get_objects() if type(o) is models.Event)
        hang.cancel()
        recovered_at = time.monotonic()
        phase("after", 0.1)
        flushed = active.flush(30)
        recovery_seconds = time.monotonic() - recovered_at
        stats = handler.stats()
    finally:
        gc.enable()
        if hang is not None:
            hang.cancel()
        handler.close()
        urllib3.connectionpool.HTTPConnectionPool.urlopen = real_urlopen  # type: ignore[method-assign]
        _http.Channel.request = real_request  # type: ignore[method-assign]
    outage = len(calls["refused"]) + len(calls["hanging"])
    return OutageResult(
        calls=calls,
        network_threads=network,
        pending_max=pending_max,
        keys=4 * objects_per_phase,
        live_events=live_events,
        outage_occurrences=outage,
        stats_in_outage=stats_in_outage,
        stats=stats,
        flushed=flushed,
        logged=logged,
        stored=stored_counts(server),
        hung_requests=hang.fired,
        recovery_seconds=recovery_seconds,
    )


def check_outage(result: OutageResult) -> None:
    """Everything the outage case promises."""
    assert result.hung_requests > 0, "writes were attempted while the server hung"
    # logging never waited on the network: a call that waited for a hung request would
    # take the request timeout (seconds); the bound leaves room for a loaded machine's
    # scheduling, and the latency figures themselves are bench/reliability.py's
    assert set(result.network_threads) == {"k8s-events-writer-"}, result.network_threads
    assert result.slowest < 0.5, {k: summary(v) for k, v in result.calls.items()}
    # memory stays bounded: one pending write per event, not one object per occurrence
    assert result.pending_max <= result.keys
    assert result.stats_in_outage["dropped"] == 0
    # what is alive is what sits in the (bounded) queues, a small part of the occurrences
    assert result.live_events <= result.outage_occurrences // 10, result.live_events
    # everything logged within the retry schedule is written after the recovery
    assert result.flushed
    assert result.stats["failed"] == 0, result.stats
    assert unaccounted(result.stats) == 0
    assert result.stored == result.logged


EXIT_CHILD = r"""
import atexit, json, sys, threading, time

HANDLER = []


def late():
    # registered before logging is imported, so it runs after logging.shutdown()
    handler = HANDLER[0]
    threads = [
        [t.name, t.daemon] for t in threading.enumerate() if t is not threading.main_thread()
    ]
    report = {
        "at": time.monotonic(),
        "threads": threads,
        "stats": handler.stats(),
        "closed": handler.closed,
    }
    sys.stdout.write(json.dumps({"late": report}) + "\n")
    sys.stdout.flush()


atexit.register(late)

import logging

from k8s_logging_events.handler import KubernetesEventHandler

url, mode, flush_timeout, records, objects = sys.argv[1:6]
handler = KubernetesEventHandler(
    component="exit-" + mode, host="node-1", sink=url, qps=0, flush_timeout=float(flush_timeout)
)
HANDLER.append(handler)
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.addHandler(handler)
for number in range(int(records)):
    name = "exit-%s-%d" % (mode, number % int(objects))
    meta = {"name": name, "namespace": "default"}
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": meta}
    log.warning("Stopping container", extra={"involved": manifest, "reason": "Killing"})
if mode == "shutdown":
    logging.shutdown()
sys.stdout.write(json.dumps({"exiting": time.monotonic()}) + "\n")
sys.stdout.flush()
"""


"""A program that configures the handler, logs, and ends without closing anything."""


@dataclass
class ExitResult:
    """How a child process that logged events ended."""

    mode: str
    returncode: int
    stderr: str
    exit_seconds: float
    """From its last statement to the end of its exit's own work: the wait for its threads
    and logging.shutdown(), up to the atexit callback registered before logging. What the
    interpreter does after that (tearing modules down) is bounded only as a hang is: a
    loaded machine stretched it from a few tenths of a second to more than one."""
    late: dict[str, Any]


def run_exit_child(
    url: str, mode: str, *, flush_timeout: float, records: int = 200, objects: int = 10
) -> ExitResult:
    """Run :data:`EXIT_CHILD`; measure from its last statement to the end of its exit's wait
    (:attr:`ExitResult.exit_seconds`), and let the whole process take up to a minute more."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("KUBECONFIG", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            EXIT_CHILD,
            url,
            mode,
            str(flush_timeout),
            str(records),
            str(objects),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    try:
        out, err = process.communicate(timeout=flush_timeout + 60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the child did not exit: {out}\n{err}") from None
    ended = time.monotonic()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    exiting = next((line["exiting"] for line in lines if "exiting" in line), ended)
    late: dict[str, Any] = next((line["late"] for line in lines if "late" in line), {})
    return ExitResult(mode, process.returncode, err, late.get("at", ended) - exiting, late)


def stderr_problems(stderr: str) -> list[str]:
    markers = ("Traceback", "Exception", "Logging error", "Error", "Fatal")
    return [line for line in stderr.splitlines() if any(m in line for m in markers)]


@dataclass
class ThreadsResult:
    """What 16 threads logging through a dictConfig reconfiguration left behind."""

    errors: list[BaseException]
    stats: list[dict[str, int]]
    logged: int
    stored: int
    reconfigure_seconds: float
    slowest_call: float
    logged_while_closing: int
    """Log calls the threads began and ended while dictConfig flushed and closed the old
    handler (a call stalled behind that wait ends after it: none)."""
    seconds: float


def run_threads(
    server: LocalApiServer,
    *,
    threads: int = 16,
    records: int = 500,
    objects: int = 300,
    refuse_during_reconfigure: bool = False,
    flush_timeout: float = 10.0,
) -> ThreadsResult:
    """``threads`` threads log ``records`` each about random Pods; after a third of them,
    dictConfig replaces the handler, closing the old one while the threads keep logging
    (the next third); the last third goes to the new handler."""
    name = f"tests.reliability.threads{next(_names)}"

    def configure(tag: str) -> None:
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "events": {
                        "class": "k8s_logging_events.handler.KubernetesEventHandler",
                        "component": f"threads-{tag}",
                        "host": "node-1",
                        "sink": server.url,
                        "qps": 0,
                        "flush_timeout": flush_timeout,
                        # writes refused while dictConfig ran are retried soon after
                        "sleep_duration": 0.1,
                    }
                },
                "loggers": {name: {"level": "DEBUG", "handlers": ["events"], "propagate": False}},
            }
        )

    configure("first")
    log = logging.getLogger(name)
    handlers = list(log.handlers)
    manifests = [pod(f"threads-{n}") for n in range(objects)]
    errors: list[BaseException] = []
    slowest = [0.0] * threads
    # dictConfig's logging.shutdown() flushes, then closes the old handler; the second half
    # of the middle third is logged once that began
    old, closing, closed = handlers[0], threading.Event(), threading.Event()
    old_flush, old_close = old.flush, old.close
    while_closing = [0] * threads  # calls begun and ended between the two

    def flush() -> None:
        closing.set()
        old_flush()

    def close() -> None:
        old_close()
        closed.set()
        old.close = old_close  # type: ignore[method-assign]

    old.flush, old.close = flush, close  # type: ignore[method-assign]
    # a third of the records before dictConfig starts, a third while it runs, a third after
    reconfiguring_now = threading.Barrier(threads + 1, timeout=60)
    reconfigured = threading.Barrier(threads + 1, timeout=60)

    def work(worker: int) -> None:
        rng = random.Random(worker)
        try:
            for number in range(records):
                if number == records // 3:
                    reconfiguring_now.wait()
                elif number == records // 2:
                    # the rest of the middle third goes on while the old handler waits
                    closing.wait(60)
                elif number == 2 * records // 3:
                    reconfigured.wait()
                target = rng.randrange(objects)
                began_while_closing = closing.is_set()
                before = time.perf_counter()
                log.warning(
                    "Liveness probe failed: %d", target % 7, extra={"involved": manifests[target]}
                )
                slowest[worker] = max(slowest[worker], time.perf_counter() - before)
                while_closing[worker] += began_while_closing and not closed.is_set()
        except BaseException as error:
            errors.append(error)

    started = time.monotonic()
    workers = [
        threading.Thread(target=work, args=(n,), name=f"test-threads-{n}") for n in range(threads)
    ]
    if refuse_during_reconfigure:
        server.refuse_connections()  # the first handler can write nothing at all
    for worker in workers:
        worker.start()
    try:
        if refuse_during_reconfigure:
            _wait_for_clients(handlers)
        reconfiguring_now.wait()
        reconfiguring = time.monotonic()
        configure("second")
        reconfigure_seconds = time.monotonic() - reconfiguring
        if refuse_during_reconfigure:
            server.accept_connections()
        handlers.extend(log.handlers)
        reconfigured.wait()
    except BaseException:
        reconfiguring_now.abort()
        reconfigured.abort()
        raise
    finally:
        for worker in workers:
            worker.join(120)
        for handler in handlers:
            if isinstance(handler, KubernetesEventHandler) and not handler.closed:
                # the last third's writes, which a loaded machine may not end within the
                # short flush_timeout that the old handler's close is given
                handler.drain(60)
            handler.close()
        log.handlers.clear()
    seconds = time.monotonic() - started
    stats = [handler.stats() for handler in handlers if isinstance(handler, KubernetesEventHandler)]
    return ThreadsResult(
        errors=errors,
        stats=stats,
        logged=threads * records,
        stored=sum(stored_counts(server).values()),
        reconfigure_seconds=reconfigure_seconds,
        slowest_call=max(slowest),
        logged_while_closing=sum(while_closing),
        seconds=seconds,
    )


def _wait_for_clients(handlers: list[logging.Handler]) -> None:
    """Until each event handler's writer has built its client (on its first write): a
    handler that dictConfig closes before then stops on a thread of its own, once dictConfig
    has returned (test_configuring_logging_again_before_the_client_is_built_...), and may
    write everything once the server is back; a loaded machine may take that long."""
    bound = time.monotonic() + 30  # reached only by a hang
    for handler in handlers:
        lazy = getattr(handler, "_lazy_sink", None)
        while lazy is not None and lazy.imports_client:
            assert time.monotonic() < bound, "the handler never built its client"
            threading.Event().wait(0.001)


def check_threads(result: ThreadsResult) -> None:
    assert result.errors == []
    assert len(result.stats) == 2
    for stats in result.stats:
        assert unaccounted(stats) == 0, stats
    # every record reached a handler: accepted, or dropped quietly after its close
    reached = sum(s["accepted"] + s["after_close"] for s in result.stats)
    assert reached == result.logged
    written = sum(s["created"] + s["patched"] + s["coalesced"] for s in result.stats)
    failed = sum(s["failed"] for s in result.stats)
    # a write still in flight when close() gave up is counted as failed, yet it may land
    assert written <= result.stored <= written + failed
    # the new handler got the last third
    assert result.stats[1]["accepted"] >= result.logged // 3


@dataclass
class ForkResult:
    forks: int
    children: list[dict[str, Any]]
    hung: int
    parent_logged: Counter[str]
    stored: Counter[str]
    parent_stats: dict[str, int]


def fork_quietly() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        return os.fork()


def read_child(fd: int, pid: int, timeout: float) -> dict[str, Any] | None:
    """The child's JSON report, or None when it did not answer in time (then it is killed)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    hung = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                hung = True
                os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    if hung:
        return None
    loaded: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    return loaded


def answer_from_fork(child: Callable[[], object], timeout: float = 20) -> dict[str, Any] | None:
    """Run ``child`` in a forked child and return what it returned, sent back as JSON; None
    when the child did not answer within ``timeout`` (it is then killed)."""
    read_end, write_end = os.pipe()
    pid = fork_quietly()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(child()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    return read_child(read_end, pid, timeout)


def run_forks(
    server: LocalApiServer,
    *,
    forks: int,
    child_events: int = 5,
    threads: int = 2,
    pause: float = 0.02,
    users_broadcaster: bool = False,
) -> ForkResult:
    """Fork ``forks`` times, ``pause`` seconds apart, while ``threads`` threads keep logging;
    each child logs its own events, flushes, reports through a pipe and leaves with
    ``os._exit``. With ``users_broadcaster`` the handler records into an EventBroadcaster
    the application made (``broadcaster=``), which the handler does not own."""
    users = None
    if users_broadcaster:
        users = recorder.EventBroadcaster(queue_length=10_000)
        users_sink = sink.KubernetesEventSink.from_url(server.url, qps=0)
        users.start_recording_to_sink(users_sink)
        handler = KubernetesEventHandler(
            component="fork", host="node-1", broadcaster=users, flush_timeout=10
        )
    else:
        handler = KubernetesEventHandler(
            component="fork", host="node-1", sink=server.url, qps=0, flush_timeout=10
        )
    log = app_logger("fork")
    log.addHandler(handler)
    stop = threading.Event()
    tallies = [Counter[str]() for _ in range(threads)]

    def work(worker: int) -> None:
        for number in itertools.count():
            if stop.is_set():
                return
            name = f"parent-{worker}-{number % 5}"
            log.warning("Pulling image", extra={"involved": pod(name), "reason": "Pulling"})
            tallies[worker][name] += 1
            time.sleep(0.0005)

    workers = [
        threading.Thread(target=work, args=(n,), name=f"test-fork-{n}", daemon=True)
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    children: list[dict[str, Any]] = []
    hung = 0
    try:
        for number in range(forks):
            time.sleep(pause)
            read_end, write_end = os.pipe()
            pid = fork_quietly()
            if pid == 0:  # pragma: no cover - the child
                code = 1
                try:
                    os.close(read_end)
                    for _ in range(child_events):
                        log.warning(
                            "Started", extra={"involved": pod(f"child-{number}"), "reason": "Child"}
                        )
                    active = handler.broadcaster
                    flushed = active is not None and active.flush(10)
                    mine = {"flushed": flushed, "stats": handler.stats()}
                    os.write(write_end, json.dumps(mine).encode())
                    code = 0
                finally:
                    os._exit(code)
            os.close(write_end)
            report = read_child(read_end, pid, timeout=20)
            if report is None:
                hung += 1
            else:
                children.append(report)
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
        active = handler.broadcaster
        if active is not None:
            active.flush(30)
        parent_stats = handler.stats()
        handler.close()
        if users is not None:
            users.shutdown(10)
            users_sink.close()
    return ForkResult(
        forks=forks,
        children=children,
        hung=hung,
        parent_logged=sum(tallies, Counter()),
        stored=stored_counts(server),
        parent_stats=parent_stats,
    )


def check_forks(result: ForkResult, child_events: int = 5) -> None:
    assert result.hung == 0, "a child deadlocked"
    assert len(result.children) == result.forks
    for report in result.children:
        assert report["flushed"], report
        assert report["stats"]["accepted"] == child_events, "the child starts afresh"
        assert unaccounted(report["stats"]) == 0
    children = {k: v for k, v in result.stored.items() if k.startswith("child-")}
    assert children == {f"child-{n}": child_events for n in range(result.forks)}
    parents = {k: v for k, v in result.stored.items() if k.startswith("parent-")}
    assert parents == dict(result.parent_logged), "the parent's events are written once"
    assert unaccounted(result.parent_stats) == 0


FORK_DURING_IMPORT_CHILD = r"""
import json, logging, os, sys, time, warnings

from k8s_logging_events.handler import KubernetesEventHandler

def manifest(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}}

handler = KubernetesEventHandler(component="fork", host="node-1", sink=sys.argv[1], qps=0)
log = logging.getLogger("app")
log.propagate = False
log.addHandler(handler)
# the first event makes a writer thread import the kubernetes client (about a second)
log.warning("first", extra={"involved": manifest("import-parent"), "reason": "Parent"})
deadline = time.monotonic() + 10
while "kubernetes" not in sys.modules and time.monotonic() < deadline:
    time.sleep(0.0005)
spec = getattr(sys.modules.get("kubernetes"), "__spec__", None)
importing = bool(getattr(spec, "_initializing", False))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    pid = os.fork()
if pid == 0:
    log.warning("child", extra={"involved": manifest("import-child"), "reason": "Child"})
    os._exit(0 if handler.broadcaster.flush(5) else 3)
_, status = os.waitpid(pid, 0)
handler.close()
print(json.dumps({"child": os.waitstatus_to_exitcode(status), "importing": importing}))
"""


"""A fresh interpreter forks while the writer thread is still importing kubernetes."""

RECONFIGURE_BEFORE_THE_CLIENT = r"""
import json, logging, logging.config, sys, time

config = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"events": {"class": "k8s_logging_events.KubernetesEventHandler",
                            "sink": sys.argv[1], "component": "re", "flush_timeout": 20}},
    "loggers": {"app": {"handlers": ["events"], "level": "INFO"}},
}
logging.config.dictConfig(config)
first = logging.getLogger("app").handlers[0]
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "first", "namespace": "default"}}
# the first event makes a writer thread import the kubernetes client, and the import asks for
# logging's lock, which the second dictConfig holds while it closes the first handler
logging.getLogger("app").warning("first", extra={"involved": pod})
imported = "kubernetes" in sys.modules and not sys.modules["kubernetes"].__spec__._initializing
started = time.monotonic()
logging.config.dictConfig(config)
seconds = time.monotonic() - started
first.close()  # closed again, outside dictConfig: its counters are final once this returns
report = {"seconds": seconds, "imported": imported, "stats": first.stats()}
print(json.dumps(report), flush=True)
"""
"""A fresh interpreter configures logging again right after its first event."""

RECONFIGURE_WITH_THE_CLIENT_IMPORTED = "import kubernetes.client\n" + RECONFIGURE_BEFORE_THE_CLIENT
"""The same, in an application that imported the kubernetes client itself (an operator):
the writer still makes the client's Configuration, which gets loggers under logging's lock."""
