"""Issue #15's table: every row measured in one run, printed next to its target.

The workload of the issue: ``--calls`` (20,000) back-to-back
``log.warning("Back-off pulling image %s", ..., extra={"involved": pod, "reason": "BackOff"})``
calls over ``--pods`` (1,000) ``V1Pod`` objects, the pod of each call drawn from a Zipf law
(s = 1.5: about 615 distinct pods are hit). The API server runs in its own process
(``python -m k8s_logging_events apiserver``). Rows:

1. caller's CPU per call (``time.thread_time`` around the block of calls) vs the floor
   (``QueueHandler`` into a ``QueueListener`` with a ``NullHandler``), default options;
2. wall time per call, back to back, vs the floor, default options;
3. occurrences dropped in that burst with ``qps=0``, and whether the server's counts equal
   the occurrences logged;
4. CPU per API write through ``KubernetesEventSink.create`` (encoding the body included),
   with a raw keep-alive ``http.client`` create loop beside it;
5. all-distinct throughput (``--distinct`` objects, ``qps=0``) vs the raw keep-alive
   ``http.client`` create loop against the same server (the server's own limit here);
6. per call, ours vs a synchronous hand-written create handler, the server delaying every
   answer by 5 ms (a typical in-cluster round trip);
7. caller's CPU per call, ours vs Kopf's ``K8sPoster`` on the same records (Kopf's queue
   consumer discards: only the caller's side is compared).

Every ratio is against a baseline measured in the same run. No test asserts any of it.

    python bench/perf_targets.py [--calls 20000] [--pods 1000] [--distinct 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import logging
import logging.handlers
import queue
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from _common import ApiServerProcess, SyncCreateHandler, Table, machine, make_pods

from k8s_logging_events import KubernetesEventHandler, models
from k8s_logging_events.sink import KubernetesEventSink

MESSAGE = "Back-off pulling image %s"
ZIPF_EXPONENT = 1.5
NAMESPACE = "default"


def zipf_pods(pods: list[Any], calls: int, seed: int = 15) -> list[Any]:
    weights = [1 / (rank**ZIPF_EXPONENT) for rank in range(1, len(pods) + 1)]
    return random.Random(seed).choices(pods, weights=weights, k=calls)


def _logger(name: str, handler: logging.Handler | None) -> logging.Logger:
    logger = logging.getLogger(f"bench.targets.{name}")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if handler is not None:
        logger.addHandler(handler)
    return logger


def _records_extra(pods: list[Any], kopf_settings: Any) -> list[dict[str, Any]]:
    """One ``extra`` per call: ours reads involved/reason, Kopf's K8sPoster k8s_ref/settings."""
    extras = []
    for pod in pods:
        meta = pod.metadata
        ref = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta.name,
            "uid": meta.uid,
            "namespace": meta.namespace,
        }
        extra = {"involved": pod, "reason": "BackOff", "k8s_ref": ref}
        if kopf_settings is not None:
            extra["settings"] = kopf_settings
        extras.append(extra)
    return extras


def _block(logger: logging.Logger, extras: list[dict[str, Any]]) -> tuple[float, float]:
    """Log once per extra, back to back; return (caller CPU s, wall s)."""
    warn = logger.warning
    gc.collect()
    cpu, wall = time.thread_time(), time.perf_counter()
    for extra in extras:
        warn(MESSAGE, "busybox", extra=extra)
    return time.thread_time() - cpu, time.perf_counter() - wall


def _drain(handler: KubernetesEventHandler, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handler.flush()
        stats = handler.stats()
        done = stats["created"] + stats["patched"] + stats["coalesced"] + stats["failed"]
        if stats["accepted"] - done - stats["dropped"] - stats["discarded"] <= 0:
            return


# -- Kopf's K8sPoster, with a queue consumer that discards ------------------------------------


class KopfPoster:
    """Kopf's own handler, its queue and event loop set up as an operator would have them."""

    def __init__(self) -> None:
        import kopf
        from kopf._core.engines import posting

        self.settings = kopf.OperatorSettings()
        self.settings.posting.level = logging.DEBUG
        # Kopf posts log records only when asked (``posting.loggers``, off by default): without
        # it the poster's filter refuses every record, and this row would compare us with a
        # handler that does nothing
        self.settings.posting.loggers = True
        self.handler = posting.K8sPoster()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        holder: dict[str, Any] = {}

        async def consume() -> None:
            q: asyncio.Queue[Any] = asyncio.Queue()
            holder["queue"] = q
            ready.set()
            while True:
                await q.get()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._task = self._loop.create_task(consume())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="kopf-poster-loop", daemon=True)
        self._thread.start()
        ready.wait(10)
        posting.event_queue_loop_var.set(self._loop)
        self._queue: asyncio.Queue[Any] = holder["queue"]
        posting.event_queue_var.set(self._queue)

    def settle(self) -> None:
        """Wait until the loop has queued and consumed every record posted so far."""
        queued = threading.Event()
        self._loop.call_soon_threadsafe(queued.set)  # runs after every earlier put
        queued.wait(60)
        deadline = time.monotonic() + 60
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# -- the synchronous hand-written handler -------------------------------------------------------


# -- raw keep-alive http.client -----------------------------------------------------------------


def raw_create_loop(url: str, namespace: str, count: int, prefix: str) -> tuple[float, float]:
    """Create ``count`` events on one keep-alive connection; return (wall s, CPU s)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    path = f"/api/v1/namespaces/{namespace}/events"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    stamp = models.format_time(datetime.now(UTC))
    wall, cpu = time.perf_counter(), time.thread_time()
    for index in range(count):
        body = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{prefix}-{index}.{index:x}", "namespace": namespace},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": f"{prefix}-{index}",
                    "namespace": namespace,
                    "uid": f"uid-{prefix}-{index}",
                },
                "reason": "BackOff",
                "message": "Back-off pulling image busybox",
                "type": "Warning",
                "count": 1,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "source": {"component": "bench", "host": "node-1"},
            }
        ).encode()
        connection.request("POST", path, body, headers)
        answer = connection.getresponse()
        json.loads(answer.read())
        if answer.status != 201:
            raise RuntimeError(f"raw create: {answer.status}")
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    connection.close()
    return wall, cpu


def _events(namespace: str, count: int, prefix: str) -> list[models.Event]:
    now = datetime.now(UTC)
    source = models.EventSource(component="bench", host="node-1")
    return [
        models.Event(
            name=f"{prefix}-{index}.{index:x}",
            namespace=namespace,
            involved_object=models.ObjectReference(
                kind="Pod",
                namespace=namespace,
                name=f"{prefix}-{index}",
                uid=f"uid-{prefix}-{index}",
                api_version="v1",
            ),
            reason="BackOff",
            message="Back-off pulling image busybox",
            source=source,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            type="Warning",
        )
        for index in range(count)
    ]


def _server_count(server: ApiServerProcess, namespace: str) -> tuple[int, int]:
    items = server.events(namespace)
    return len(items), sum(int(item.get("count") or 1) for item in items)


# -- the rows -------------------------------------------------------------------------------


def caller_cost(server: ApiServerProcess, calls: int, objects: int, rounds: int) -> dict[str, Any]:
    """Rows 1, 2 and 7: ours (default options), the floor and Kopf, interleaved blocks."""
    kopf = KopfPoster()
    listener_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(listener_queue, logging.NullHandler())
    listener.start()
    ours = KubernetesEventHandler(sink=server.url, component="bench", host="node-1")
    loggers: dict[str, tuple[logging.Logger, Callable[[], None]]] = {
        "ours": (_logger("ours", ours), lambda: _drain(ours)),
        "floor": (_logger("floor", logging.handlers.QueueHandler(listener_queue)), lambda: None),
        "kopf": (_logger("kopf", kopf.handler), kopf.settle),
    }
    pods = make_pods(objects, "cost", NAMESPACE)
    extras = _records_extra(zipf_pods(pods, calls), kopf.settings)
    totals = {name: [0.0, 0.0] for name in loggers}
    for logger, settle in loggers.values():  # warm-up
        _block(logger, extras[:500])
        settle()
    for round_index in range(rounds):
        names = list(loggers)
        names = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in names:
            logger, settle = loggers[name]
            cpu, wall = _block(logger, extras)
            totals[name][0] += cpu
            totals[name][1] += wall
            settle()
    total_calls = calls * rounds
    result: dict[str, Any] = {
        name: (cpu / total_calls, wall / total_calls) for name, (cpu, wall) in totals.items()
    }
    stats = ours.stats()
    ours.close()
    listener.stop()
    kopf.close()
    result["ours_stats"] = stats
    result["distinct"] = len({id(extra["involved"]) for extra in extras})
    return result


def burst_drops(server: ApiServerProcess, calls: int, objects: int) -> dict[str, Any]:
    """Row 3: the same burst with qps=0; drops and the server's counts."""
    namespace = "burst"
    handler = KubernetesEventHandler(
        sink=server.url, qps=0, component="bench", host="node-1", flush_timeout=300
    )
    logger = _logger("burst", handler)
    pods = make_pods(objects, "burst", namespace)
    extras = _records_extra(zipf_pods(pods, calls, seed=16), None)
    _, wall = _block(logger, extras)
    _drain(handler)
    stats = handler.stats()
    handler.close()
    events, count = _server_count(server, namespace)
    return {"stats": stats, "events": events, "count": count, "calls": calls, "wall": wall}


def write_cost(server: ApiServerProcess, writes: int) -> dict[str, float]:
    """Row 4: CPU per create through the sink, and through raw http.client."""
    sink = KubernetesEventSink.from_url(server.url, qps=0)
    sink.create(_events(NAMESPACE, 1, "warm-sink")[0])
    events = _events(NAMESPACE, writes, "sink")
    gc.collect()
    cpu, wall = time.thread_time(), time.perf_counter()
    for event in events:
        sink.create(event)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    sink.close()
    raw_wall, raw_cpu = raw_create_loop(server.url, NAMESPACE, writes, "raw-write")
    return {
        "sink_cpu": cpu / writes,
        "sink_wall": wall / writes,
        "raw_cpu": raw_cpu / writes,
        "raw_wall": raw_wall / writes,
    }


def distinct_throughput(server: ApiServerProcess, objects: int) -> dict[str, float]:
    """Row 5: all distinct, qps=0, first call to flush; vs the raw keep-alive loop."""
    namespace = "distinct"
    handler = KubernetesEventHandler(
        sink=server.url,
        qps=0,
        component="bench",
        host="node-1",
        flush_timeout=300,
        queue_length=max(10_000, objects + 1),
    )
    logger = _logger("distinct", handler)
    logger.warning("warm-up", extra={"involved": make_pods(1, "warm", NAMESPACE)[0]})
    _drain(handler)
    extras = _records_extra(make_pods(objects, "distinct", namespace), None)
    started = time.perf_counter()
    for extra in extras:
        logger.warning(MESSAGE, "busybox", extra=extra)
    _drain(handler)
    ours = time.perf_counter() - started
    stats = handler.stats()
    handler.close()
    raw_wall, _ = raw_create_loop(server.url, namespace, objects, "raw-distinct")
    events, _ = _server_count(server, namespace)
    return {
        "ours_rate": objects / ours,
        "raw_rate": objects / raw_wall,
        "stored": events - objects,  # ours, besides the raw loop's
        "failed": stats["failed"],
        "dropped": stats["dropped"],
    }


def latency(calls: int, objects: int, sync_calls: int, delay: float) -> dict[str, float]:
    """Row 6: per call, ours vs the synchronous handler, every answer ``delay`` s late."""
    with ApiServerProcess(delay=delay) as server:
        ours = KubernetesEventHandler(
            sink=server.url, component="bench", host="node-1", flush_timeout=60
        )
        sync = SyncCreateHandler(server.url)
        ours_logger, sync_logger = _logger("lat-ours", ours), _logger("lat-sync", sync)
        pods = make_pods(objects, "lat", NAMESPACE)
        extras = _records_extra(zipf_pods(pods, calls, seed=17), None)
        _block(ours_logger, extras[:200])
        _block(sync_logger, extras[:5])
        _, ours_wall = _block(ours_logger, extras)
        _, sync_wall = _block(sync_logger, extras[:sync_calls])
        ours.close()
        sync.close()
    return {"ours": ours_wall / calls, "sync": sync_wall / sync_calls, "errors": sync.errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--pods", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--distinct", type=int, default=3_000)
    parser.add_argument("--writes", type=int, default=2_000)
    parser.add_argument("--sync-calls", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.005)
    args = parser.parse_args()
    logging.lastResort = None
    logging.basicConfig(level=logging.WARNING)

    print(f"machine: {machine()}")
    with ApiServerProcess(namespaces=("burst", "distinct")) as server:
        cost = caller_cost(server, args.calls, args.pods, args.rounds)
        burst = burst_drops(server, args.calls, args.pods)
        write = write_cost(server, args.writes)
        distinct = distinct_throughput(server, args.distinct)
    lat = latency(args.calls, args.pods, args.sync_calls, args.delay)

    floor_cpu, floor_wall = cost["floor"]
    ours_cpu, ours_wall = cost["ours"]
    kopf_cpu, kopf_wall = cost["kopf"]
    stats = burst["stats"]
    exact = burst["count"] == burst["calls"] - stats["dropped"]
    print(
        f"\nworkload: {args.calls:,} back-to-back log.warning calls over {args.pods:,} V1Pods "
        f"(Zipf s={ZIPF_EXPONENT}, {cost['distinct']} distinct hit), {args.rounds} rounds "
        "per configuration, interleaved; API server in its own process\n"
    )
    table = Table([("measure", 52), ("baseline", 12), ("ours", 12), ("ratio", 9), ("target", 16)])
    table.header()

    def row(measure: str, base: str, ours: str, ratio: float, target: str, met: bool) -> None:
        table.row(measure, base, ours, ratio, f"{target} {'met' if met else 'NOT met'}")

    cpu_ratio = ours_cpu / floor_cpu
    row(
        "1. caller CPU per call vs floor (thread_time)",
        f"{floor_cpu * 1e6:.1f} us",
        f"{ours_cpu * 1e6:.1f} us",
        cpu_ratio,
        "<= 1.3x",
        cpu_ratio <= 1.3,
    )
    wall_ratio = ours_wall / floor_wall
    row(
        "2. wall per call back to back vs floor",
        f"{floor_wall * 1e6:.1f} us",
        f"{ours_wall * 1e6:.1f} us",
        wall_ratio,
        "<= 1.5x",
        wall_ratio <= 1.5,
    )
    row(
        f"3. dropped in the {args.calls:,}-call burst, qps 0",
        f"{args.calls:,} logged",
        f"{stats['dropped']:,} dropped",
        float(stats["dropped"]),
        "0, exact",
        stats["dropped"] == 0 and exact and burst["count"] == args.calls,
    )
    row(
        "4. CPU per API write incl. encoding (raw http.client)",
        f"{write['raw_cpu'] * 1e6:.0f} us",
        f"{write['sink_cpu'] * 1e6:.0f} us",
        write["sink_cpu"] / write["raw_cpu"],
        "<= 120 us",
        write["sink_cpu"] * 1e6 <= 120,
    )
    throughput_ratio = distinct["ours_rate"] / distinct["raw_rate"]
    row(
        f"5. all-distinct throughput ({args.distinct:,}, qps 0) vs raw",
        f"{distinct['raw_rate']:,.0f}/s",
        f"{distinct['ours_rate']:,.0f}/s",
        throughput_ratio,
        ">= 0.8x",
        throughput_ratio >= 0.8,
    )
    latency_ratio = lat["sync"] / lat["ours"]
    row(
        f"6. sync handler / ours per call, {args.delay * 1000:g} ms answers",
        f"{lat['sync'] * 1e6:,.0f} us",
        f"{lat['ours'] * 1e6:.1f} us",
        latency_ratio,
        ">= 100x",
        latency_ratio >= 100,
    )
    kopf_ratio = ours_cpu / kopf_cpu
    row(
        "7. caller CPU per call vs Kopf's K8sPoster",
        f"{kopf_cpu * 1e6:.1f} us",
        f"{ours_cpu * 1e6:.1f} us",
        kopf_ratio,
        "<= 1.0x",
        kopf_ratio <= 1.0,
    )
    print(
        f"\n  Kopf wall per call {kopf_wall * 1e6:.1f} us ({ours_wall / kopf_wall:.2f}x ours/Kopf)"
        f"; ours during the cost blocks: {cost['ours_stats']}"
        f"\n  burst: {stats['accepted']:,} accepted, {stats['created']:,} created, "
        f"{stats['patched']:,} patched, {stats['coalesced']:,} coalesced, {stats['failed']:,} "
        f"failed; server: {burst['events']:,} events, counts sum {burst['count']:,} "
        f"(logged {args.calls:,}); burst wall {burst['wall'] / args.calls * 1e6:.1f} us/call"
        f"\n  write: sink wall {write['sink_wall'] * 1e6:.0f} us, raw wall "
        f"{write['raw_wall'] * 1e6:.0f} us per create"
        f"\n  distinct: {distinct['stored']:,} of ours stored, failed {distinct['failed']}, "
        f"dropped {distinct['dropped']}; sync handler errors {lat['errors']}"
    )


if __name__ == "__main__":
    main()
