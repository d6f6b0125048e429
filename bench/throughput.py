"""Throughput from emit to the server: occurrences per second until ``flush()`` returns.

KubernetesEventHandler runs the whole pipeline against LocalApiServer in another process,
with the client-side rate limit off (``qps=0``; the default, client-go's 5 requests a second,
would make the rate limit the only thing measured). Three inputs, each in its own namespace
on the server:

* all distinct: every occurrence about a pod never seen before (no coalescing possible);
* one hot object: every occurrence the same warning about one pod (the spam filter holds
  back after 25; held-back counts are written at flush);
* Zipf mix: 1,000 pods, the pod of each occurrence drawn from a Zipf law (s = 1.1), the
  message one of three.

The clock runs from the first ``logger.warning`` until ``flush()`` returns. The server's
copy is then listed: the sum of the stored counts must equal the occurrences (nothing lost).
The baseline, in the same run: the synchronous ``CoreV1Api.create_namespaced_event`` loop
that users write by hand, one request per occurrence.

    python bench/throughput.py [--distinct 5000] [--hot 20000] [--zipf 20000]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from datetime import UTC, datetime
from typing import Any

from _common import ApiServerProcess, Table, make_pods
from kubernetes import client

from k8s_logging_events import KubernetesEventHandler

NAMESPACES = ("bench-distinct", "bench-hot", "bench-zipf", "bench-sync")
MESSAGES = ("Back-off pulling image %s", "Readiness probe failed: %s", "Liveness probe failed: %s")


def zipf_indices(count: int, objects: int, exponent: float, seed: int) -> list[int]:
    weights = [1 / (rank**exponent) for rank in range(1, objects + 1)]
    return random.Random(seed).choices(range(objects), weights=weights, k=count)


def run_ours(
    server: ApiServerProcess, namespace: str, calls: list[tuple[Any, str]]
) -> dict[str, Any]:
    handler = KubernetesEventHandler(
        sink=server.url,
        qps=0,
        component="bench",
        host="node-1",
        flush_timeout=300,
        queue_length=max(10_000, len(calls) + 1),
    )
    logger = logging.getLogger(f"bench.throughput.{namespace}")
    logger.propagate = False
    logger.addHandler(handler)
    # warm up the client (connection, imports) outside the clock, in another namespace
    warm = make_pods(1, "pod", "default")[0]
    logger.warning("warm-up", extra={"involved": warm})
    handler.flush()
    before = handler.stats()
    cpu_before, server_before = _cpu(), server.cpu_seconds()
    started = time.perf_counter()
    for pod, message in calls:
        logger.warning(message, "busybox", extra={"involved": pod})
    emitted = time.perf_counter()
    handler.flush()
    finished = time.perf_counter()
    cpu, server_cpu = _cpu() - cpu_before, server.cpu_seconds() - server_before
    stats = handler.stats()
    handler.close()
    logger.removeHandler(handler)
    stored = server.events(namespace)
    writes = (stats["created"] + stats["patched"]) - (before["created"] + before["patched"])
    return {
        "occurrences": len(calls),
        "seconds": finished - started,
        "emit_seconds": emitted - started,
        "writes": writes,
        "stored": len(stored),
        "server_count": sum(int(event.get("count") or 0) for event in stored),
        "cpu": cpu,
        "server_cpu": server_cpu,
        "dropped": stats["dropped"],
        "failed": stats["failed"],
        "pending": stats["pending"],
    }


def run_sync(server: ApiServerProcess, count: int) -> dict[str, Any]:
    """The hand-written baseline: one synchronous create per occurrence, through models."""
    configuration = client.Configuration(host=server.url)
    configuration.retries = False
    api_client: Any = client.ApiClient(configuration)
    api = client.CoreV1Api(api_client)
    targets = make_pods(count, "pod", "bench-sync")
    source = client.V1EventSource(component="bench", host="node-1")

    def create(pod: Any) -> None:
        meta = pod.metadata
        stamp = datetime.now(UTC).replace(microsecond=0)
        api.create_namespaced_event(
            meta.namespace,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(
                    name=f"{meta.name}.{time.time_ns():x}", namespace=meta.namespace
                ),
                involved_object=client.V1ObjectReference(
                    kind="Pod", api_version="v1", name=meta.name, namespace=meta.namespace
                ),
                reason="BackOff",
                message="Back-off pulling image busybox",
                type="Warning",
                count=1,
                first_timestamp=stamp,
                last_timestamp=stamp,
                source=source,
            ),
        )

    create(targets[0])  # connect and warm up
    cpu_before, server_before = _cpu(), server.cpu_seconds()
    started = time.perf_counter()
    for pod in targets[1:]:
        create(pod)
    seconds = time.perf_counter() - started
    cpu, server_cpu = _cpu() - cpu_before, server.cpu_seconds() - server_before
    api_client.close()
    return {
        "occurrences": count - 1,
        "seconds": seconds,
        "writes": count - 1,
        "cpu": cpu,
        "server_cpu": server_cpu,
    }


def _cpu() -> float:
    """CPU seconds this process (every thread) has used so far."""
    times = os.times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distinct", type=int, default=5000)
    parser.add_argument("--hot", type=int, default=20_000)
    parser.add_argument("--zipf", type=int, default=20_000)
    parser.add_argument("--sync", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with ApiServerProcess(namespaces=NAMESPACES) as server:
        distinct_pods = make_pods(args.distinct, "pod", "bench-distinct")
        hot_pod = make_pods(1, "pod", "bench-hot")[0]
        zipf_pods = make_pods(1000, "pod", "bench-zipf")
        chooser = random.Random(7)
        inputs = {
            "all distinct": [(pod, MESSAGES[0]) for pod in distinct_pods],
            "one hot object": [(hot_pod, MESSAGES[0])] * args.hot,
            "Zipf, 1,000 objects": [
                (zipf_pods[index], chooser.choice(MESSAGES))
                for index in zipf_indices(args.zipf, 1000, 1.1, seed=11)
            ],
        }
        namespaces = dict(zip(inputs, NAMESPACES, strict=False))
        sync = run_sync(server, args.sync)
        results = {
            name: run_ours(server, namespaces[name], calls) for name, calls in inputs.items()
        }

    sync_rate = sync["occurrences"] / sync["seconds"]
    sync_cpu = sync["cpu"] / sync["occurrences"]
    table = Table(
        [
            ("input", 22),
            ("occurrences", 12),
            ("seconds", 8),
            ("events/s", 9),
            ("vs sync", 8),
            ("emit/s", 8),
            ("API writes", 11),
            ("writes/occ.", 12),
            ("server count", 13),
            ("lost", 5),
            ("CPU us/occ.", 12),
            ("vs sync", 8),
            ("server CPU us/occ.", 19),
        ]
    )
    table.header()
    rows = {"sync create (baseline)": {**sync, "emit_seconds": sync["seconds"]}, **results}
    for name, result in rows.items():
        occurrences = result["occurrences"]
        rate = occurrences / result["seconds"]
        count = result.get("server_count", occurrences)
        cpu = result["cpu"] / occurrences
        table.row(
            name,
            occurrences,
            result["seconds"],
            rate,
            rate / sync_rate,
            occurrences / result["emit_seconds"],
            result["writes"],
            result["writes"] / occurrences,
            count,
            occurrences - count,
            cpu * 1e6,
            cpu / sync_cpu,
            result["server_cpu"] / occurrences * 1e6,
        )
    print(
        "\nevents/s: occurrences from the first logger.warning until flush() returned;"
        "\nemit/s: the logging loop alone; vs sync: events/s over the synchronous loop's;"
        "\nCPU us/occ.: CPU time of this process (all threads) per occurrence, and vs sync"
        "\nthe same over the synchronous loop's; server CPU: the API server process's."
    )
    for name, result in results.items():
        print(
            f"  {name}: {result['stored']:,} events stored, dropped={result['dropped']}, "
            f"failed={result['failed']}, pending={result['pending']}"
        )


if __name__ == "__main__":
    main()
