"""Cost on the application's thread: one ``logger.warning(msg, extra={"involved": pod})``.

Configurations, each on its own logger (``propagate=False``), measured in the same run:

* ``ours``: KubernetesEventHandler running the whole pipeline (broadcaster, correlator,
  writer threads, the Kubernetes sink through the official client) against LocalApiServer
  in ANOTHER process, with the client-side rate limit off (``qps=0``) so that the writers
  write as fast as they can while we measure;
* ``floor`` (a): the standard library's QueueHandler on a SimpleQueue, feeding a
  QueueListener whose handler discards (a NullHandler);
* ``no handler`` (b): the same logger with no handler at all (``logging.lastResort`` off);
* ``sync create`` (c): what users write by hand, a handler whose ``emit`` builds a
  ``CoreV1Event`` and calls ``CoreV1Api.create_namespaced_event`` against the same server.

Every call's time is taken with ``time.perf_counter_ns`` around it. The configurations run
in blocks, in a rotating order, for several rounds, after a warm-up of each. Every ``ours``
call is about a pod that was never seen before, so every call is a new event and a create
on the server: no coalescing hides work. Two ways of calling:

* ``paced``: the application sleeps ~0.2 ms between calls, as a program that does other
  work does; the pipeline gets the interpreter lock in the gaps and writes at full speed,
  and each call competes with busy background threads. This is the headline figure.
* ``tight``: calls back to back, the application never lets go of the interpreter lock.

How we know the background threads were busy during the ``ours`` blocks: writes that landed
on the server during the blocks, the CPU time the ``k8s-events-*`` threads used during the
blocks (per-thread CPU clocks), and the backlog (accepted, not yet written) at the end of
each block, which is never 0 (the writers never ran out of work). Between blocks the
pipeline is flushed, so the other configurations are measured with it idle.

    python bench/app_thread_cost.py [--rounds 5] [--block 2000]
"""

from __future__ import annotations

import argparse
import gc
import logging
import logging.handlers
import queue
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from _common import (
    ApiServerProcess,
    SyncCreateHandler,
    Table,
    cpu_delta,
    make_pods,
    percentile,
    thread_cpu_seconds,
)

from k8s_logging_events import KubernetesEventHandler

MESSAGE = "Back-off pulling image %s"
GAP_SECONDS = 0.0002


@dataclass
class Config:
    name: str
    logger: logging.Logger
    block: int
    handler: KubernetesEventHandler | None = None
    used: int = 0  # pods handed out so far (ours: every call a pod never seen before)
    samples: dict[str, list[int]] = field(default_factory=dict)
    # pipeline activity during the measured blocks, per mode: writes, bg CPU s, wall s, backlogs
    writes: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    backlogs: dict[str, list[int]] = field(default_factory=dict)


def _logger(name: str, handler: logging.Handler | None) -> logging.Logger:
    logger = logging.getLogger(f"bench.app.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if handler is not None:
        logger.addHandler(handler)
    return logger


def _block(logger: logging.Logger, pods: list[Any], gap: float) -> list[int]:
    samples = [0] * len(pods)
    clock = time.perf_counter_ns
    sleep = time.sleep
    warn = logger.warning
    for index, pod in enumerate(pods):
        started = clock()
        warn(MESSAGE, "busybox", extra={"involved": pod})
        samples[index] = clock() - started
        if gap:
            sleep(gap)
    return samples


def _written(handler: KubernetesEventHandler) -> tuple[int, int]:
    stats = handler.stats()
    done = stats["created"] + stats["patched"] + stats["coalesced"] + stats["failed"]
    return stats["created"] + stats["patched"], stats["accepted"] - done - stats["dropped"]


def _drain(handler: KubernetesEventHandler) -> None:
    deadline = time.monotonic() + 120
    handler.flush()
    while _written(handler)[1] > 0 and time.monotonic() < deadline:
        handler.flush()


def run(rounds: int, block: int) -> None:
    # (b) must really have no handler: no last-resort stderr handler, no one-time warning
    logging.lastResort = None
    logging.root.manager.emittedNoHandlerWarning = True
    logging.basicConfig(level=logging.WARNING)  # the library's own reports, to stderr

    with ApiServerProcess() as server:
        ours_cls: list[tuple[str, type[KubernetesEventHandler]]] = [
            ("ours", KubernetesEventHandler)
        ]
        modes = ("paced", "tight")
        per_handler = block * rounds * len(modes) + block
        pods_by_name = {
            name: make_pods(per_handler, f"p{i}") for i, (name, _) in enumerate(ours_cls)
        }
        shared_pods = make_pods(block, "shared")
        listener_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(listener_queue, logging.NullHandler())
        listener.start()
        sync_handler = SyncCreateHandler(server.url)
        configs: list[Config] = []
        for name, cls in ours_cls:
            handler = cls(
                sink=server.url,
                qps=0,
                component="bench",
                host="node-1",
                flush_timeout=60,
                queue_length=max(10_000, 2 * block),
            )
            configs.append(Config(name, _logger(name, handler), block, handler))
        configs.append(
            Config(
                "floor: QueueHandler",
                _logger("floor", logging.handlers.QueueHandler(listener_queue)),
                block,
            )
        )
        configs.append(Config("no handler", _logger("none", None), block))
        configs.append(Config("sync create", _logger("sync", sync_handler), max(50, block // 8)))

        def pods_for(config: Config, count: int) -> list[Any]:
            if config.handler is None:
                return shared_pods[:count]
            used = config.used
            config.used += count
            return pods_by_name[config.name][used : used + count]

        # warm-up: every path once, connections opened, caches filled
        for config in configs:
            _block(config.logger, pods_for(config, min(config.block, 500)), 0)
            if config.handler is not None:
                _drain(config.handler)

        for round_index in range(rounds):
            order = configs[round_index % len(configs) :] + configs[: round_index % len(configs)]
            for mode in modes:
                gap = GAP_SECONDS if mode == "paced" else 0.0
                for config in order:
                    pods = pods_for(config, config.block)
                    writes_before, _ = _written(config.handler) if config.handler else (0, 0)
                    cpu_before = thread_cpu_seconds("k8s-events-")
                    started = time.perf_counter()
                    config.samples.setdefault(mode, []).extend(_block(config.logger, pods, gap))
                    wall = time.perf_counter() - started
                    cpu_after = thread_cpu_seconds("k8s-events-")
                    config.wall[mode] = config.wall.get(mode, 0.0) + wall
                    if config.handler is None:
                        continue
                    writes_after, backlog = _written(config.handler)
                    config.writes[mode] = config.writes.get(mode, 0) + writes_after - writes_before
                    config.cpu[mode] = config.cpu.get(mode, 0.0) + cpu_delta(cpu_before, cpu_after)
                    config.backlogs.setdefault(mode, []).append(backlog)
                    _drain(config.handler)
                    gc.collect()

        floor_name = "floor: QueueHandler"
        sync_name = "sync create"
        by_name = {config.name: config for config in configs}
        for mode in modes:
            how = "~0.2 ms of sleep between calls" if mode == "paced" else "calls back to back"
            print(f"\n{mode}: {how}, {rounds} rounds after a warm-up")
            table = Table(
                [
                    ("configuration", 21),
                    ("calls", 7),
                    ("median us", 10),
                    ("p99 us", 9),
                    ("median/(a)", 11),
                    ("p99/(a)", 8),
                    ("(c)/this", 9),
                    ("loop us", 9),
                    ("loop/(a)", 9),
                ]
            )
            table.header()
            floor_config = by_name[floor_name]
            floor = sorted(floor_config.samples[mode])
            sync_samples = sorted(by_name[sync_name].samples[mode])
            floor_median = statistics.median(floor)
            floor_p99 = percentile(floor, 0.99)
            floor_loop = floor_config.wall[mode] / len(floor)
            sync_median = statistics.median(sync_samples)
            for config in configs:
                values = sorted(config.samples[mode])
                median = statistics.median(values)
                p99 = percentile(values, 0.99)
                loop = config.wall[mode] / len(values)
                table.row(
                    config.name,
                    len(values),
                    median / 1000,
                    p99 / 1000,
                    median / floor_median,
                    p99 / floor_p99,
                    sync_median / median,
                    loop * 1e6,
                    loop / floor_loop,
                )
            for config in configs:
                if config.handler is None:
                    continue
                wall = config.wall[mode]
                writes = config.writes[mode]
                backlogs = config.backlogs[mode]
                print(
                    f"  {config.name}: while measured, {writes:,} events written to the server "
                    f"({writes / wall:,.0f}/s); its threads used {config.cpu[mode] / wall:.0%} of "
                    f"a core; backlog at block end {min(backlogs):,} to {max(backlogs):,}"
                )
        print(
            "\n(c)/this: how many times faster than the synchronous create, same mode, median."
            "\nloop us: wall time per iteration of the calling loop (call + sleep + waiting for"
            "\nthe interpreter lock): what the background threads cost the application overall."
        )
        print("Targets: ours within 1.5x of (a) at the median; 100x or more faster than (c).")
        for config in configs:
            if config.handler is not None:
                stats = config.handler.stats()
                outcome = ", ".join(
                    f"{key}={stats[key]:,}"
                    for key in ("accepted", "created", "dropped", "failed", "pending")
                )
                print(f"  {config.name}: {outcome}")
                config.handler.close()
        print(f"  sync create errors: {sync_handler.errors}")
        sync_handler.close()
        listener.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=2000, help="calls per block")
    args = parser.parse_args()
    run(args.rounds, args.block)


if __name__ == "__main__":
    main()
