"""Memory: resident set size while events about ever more distinct objects go through.

KubernetesEventHandler runs the whole pipeline into a sink that discards (so no server is
the bottleneck and nothing is stored); every occurrence is about an object never seen
before (a manifest dict made on the fly and dropped, so the test data itself takes no
memory). The correlator's three caches are LRU caches of 4,096 entries, the writer keeps
only pending writes, and the handler's call-site memory is bounded: RSS must flatten.

At each checkpoint the pipeline is flushed and the garbage collected, then VmRSS is read.
The producer flushes every ``--chunk`` occurrences so that the queue (10,000) never drops.
Run it in a fresh process (run_all.py does), so that the baseline is this pipeline alone.

    python bench/memory.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import gc
import logging
import time

from _common import DiscardSink, Table, rss_mib

from k8s_logging_events import KubernetesEventHandler

CHECKPOINTS = (10_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    handler = KubernetesEventHandler(
        sink=DiscardSink(), component="bench", host="node-1", flush_timeout=120
    )
    logger = logging.getLogger("bench.memory")
    logger.propagate = False
    logger.addHandler(handler)

    def manifest(index: int) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"pod-{index}", "namespace": "default", "uid": f"uid-{index}"},
        }

    # warm-up: threads started, caches allocated, code paths taken once
    for index in range(1000):
        logger.warning(
            "Back-off pulling image %s", "busybox", extra={"involved": manifest(-1 - index)}
        )
    handler.flush()
    gc.collect()
    baseline = rss_mib()
    points = [count for count in CHECKPOINTS if count < args.events] + [args.events]

    table = Table(
        [
            ("events", 11),
            ("RSS MiB", 9),
            ("growth MiB", 11),
            ("growth/10k", 11),
            ("KiB/1k ev. since last", 22),
            ("seconds", 9),
            ("events/s", 10),
        ]
    )
    print(f"RSS after warm-up (threads and caches started): {baseline:.1f} MiB")
    table.header()
    started = time.perf_counter()
    done = 0
    previous: tuple[int, float] | None = None
    at_10k = float("nan")
    for point in points:
        while done < point:
            end = min(point, done + args.chunk)
            for index in range(done, end):
                logger.warning(
                    "Back-off pulling image %s", "busybox", extra={"involved": manifest(index)}
                )
            handler.flush()
            done = end
        gc.collect()
        rss = rss_mib()
        elapsed = time.perf_counter() - started
        growth = rss - baseline
        if point == 10_000:
            at_10k = growth
        per_k = (
            (rss - previous[1]) * 1024 / ((point - previous[0]) / 1000)
            if previous is not None
            else float("nan")
        )
        table.row(point, rss, growth, growth / at_10k, per_k, elapsed, done / elapsed)
        previous = (point, rss)
    stats = handler.stats()
    handler.close()
    outcome = ", ".join(
        f"{key}={stats[key]:,}" for key in ("accepted", "created", "dropped", "failed", "pending")
    )
    print(f"\nstats: {outcome}")
    print(
        "growth/10k: RSS growth over the warm-up figure, relative to the growth at 10,000 events;"
        "\nKiB/1k ev. since last: growth per thousand events since the previous checkpoint."
    )


if __name__ == "__main__":
    main()
