"""Where the time goes: the application thread's path, and CPU per event per thread.

1. The application thread: cProfile (deterministic, standard library) around 20,000
   ``logger.warning(..., extra={"involved": pod})`` calls with distinct pods, the pipeline
   writing into a sink that discards. Prints the functions with the most time of their own,
   as a share of the profiled time.
2. Every thread: CPU time per event of each thread group (the application thread, the
   broadcaster, the watcher, the writers), read from per-thread CPU clocks while 3,000
   events about distinct pods are written to LocalApiServer in another process.

cProfile slows every call down, more so for small functions: read the shares, not times.
py-spy and pyinstrument give the same picture (see docs/performance.md).

    python bench/profile_paths.py
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import threading
import time
from typing import Any

from _common import ApiServerProcess, DiscardSink, Table, make_pods

from k8s_logging_events import KubernetesEventHandler


def profile_app_thread(cls: type[KubernetesEventHandler], label: str, count: int) -> None:
    handler = cls(sink=DiscardSink(), component="bench", host="node-1", queue_length=count + 10)
    logger = logging.getLogger(f"bench.profile.{label}")
    logger.propagate = False
    logger.addHandler(handler)
    pods = make_pods(count + 1000, f"prof-{len(label)}")
    for pod in pods[:1000]:  # warm-up
        logger.warning("Back-off pulling image %s", "busybox", extra={"involved": pod})
    handler.flush()
    profiler = cProfile.Profile()
    profiler.enable()
    for pod in pods[1000:]:
        logger.warning("Back-off pulling image %s", "busybox", extra={"involved": pod})
    profiler.disable()
    handler.close()
    stats: Any = pstats.Stats(profiler)
    entries = stats.stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    total = sum(entry[2] for entry in entries.values())
    print(f"\n{label}: {count:,} calls, {total / count * 1e6:.1f} us per call under cProfile")
    table = Table([("function (own time)", 62), ("calls/rec.", 11), ("share", 8), ("cum.", 8)])
    table.header()
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:14]
    for (path, line, name), (_, calls, own, cumulative, _) in ranked:
        where = f"{os.path.basename(path)}:{line}({name})" if line else name
        table.row(where[:61], calls / count, f"{own / total:.1%}", f"{cumulative / total:.0%}")


def cpu_per_event(count: int) -> None:
    with ApiServerProcess() as server:
        handler = KubernetesEventHandler(
            sink=server.url,
            qps=0,
            component="bench",
            host="node-1",
            flush_timeout=300,
            queue_length=count + 10,
        )
        logger = logging.getLogger("bench.profile.threads")
        logger.propagate = False
        logger.addHandler(handler)
        pods = make_pods(count + 100, "threads")
        for pod in pods[:100]:
            logger.warning("warm-up %s", "busybox", extra={"involved": pod})
        handler.flush()
        warmed = handler.stats()["created"]
        before = _by_group()
        server_before = server.cpu_seconds()
        started = time.perf_counter()
        for pod in pods[100:]:
            logger.warning("Back-off pulling image %s", "busybox", extra={"involved": pod})
        handler.flush()
        wall = time.perf_counter() - started
        after = _by_group()
        server_cpu = server.cpu_seconds() - server_before
        stats = handler.stats()
        handler.close()
    print(
        f"\n{count:,} events about distinct pods to LocalApiServer in another process "
        f"(qps=0): {count / wall:,.0f} events/s, created={stats['created'] - warmed:,}"
    )
    table = Table([("thread group", 34), ("CPU us/event", 13), ("share", 8), ("of wall", 9)])
    table.header()
    used = {group: after[group] - before.get(group, 0.0) for group in after}
    total = sum(used.values())
    for group, seconds in sorted(used.items(), key=lambda item: -item[1]):
        table.row(group, seconds / count * 1e6, f"{seconds / total:.0%}", f"{seconds / wall:.0%}")
    table.row("(API server process)", server_cpu / count * 1e6, "-", f"{server_cpu / wall:.0%}")


def _by_group() -> dict[str, float]:
    groups: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        name = thread.name
        if name == "MainThread":
            group = "application thread (logging calls)"
        elif name.startswith("k8s-events-writer"):
            group = "writers (sink, HTTP, client)"
        elif name.startswith("k8s-events-watcher"):
            group = "watcher (correlate, submit)"
        elif name.startswith("k8s-events-broadcaster"):
            group = "broadcaster (fan-out)"
        else:
            group = "other"
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:
            continue
        groups[group] = groups.get(group, 0.0) + seconds
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=3_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    profile_app_thread(KubernetesEventHandler, "KubernetesEventHandler", args.calls)
    cpu_per_event(args.events)


if __name__ == "__main__":
    main()
