"""The child processes of bench/runtime.py: a program that logs events and exits.

    python bench/_runtime_child.py exit-hang URL FLUSH_TIMEOUT MAIN_EVENTS DAEMON_EVENTS
    python bench/_runtime_child.py batch URL OBJECTS
    python bench/_runtime_child.py memory URL OBJECTS EVERY

Each mode configures one KubernetesEventHandler on the ``app`` logger, logs, writes a JSON
line ``{"exiting": <time.monotonic()>}`` to standard output and returns from ``main()``
normally, so that ``logging.shutdown()`` (registered with ``atexit`` when ``logging`` is
imported) flushes and closes the handler. A second ``atexit`` hook, registered *before*
``logging`` is imported, runs after ``logging.shutdown()`` and writes
``{"late": {...}}``: the handler's counters and the threads still alive. The parent reads
the monotonic clock when the process has ended (the clock is system-wide on Linux).
Standard error is left to the library: it is where its exit report goes.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from typing import Any

STATE: dict[str, Any] = {}


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _late() -> None:
    """Runs after logging.shutdown(): registered before logging is imported (atexit is LIFO)."""
    handler = STATE.get("handler")
    if handler is None:
        return
    threads = [
        [t.name, t.daemon] for t in threading.enumerate() if t is not threading.main_thread()
    ]
    report = {
        "at": time.monotonic(),
        "threads": threads,
        "handler_threads": [t.name for t in handler.threads()],
        "stats": handler.stats(),
        "closed": handler.closed,
        "daemon_logged": STATE.get("daemon_logged", 0),
        "rss_mib": rss_mib(),
    }
    _emit({"late": report})


atexit.register(_late)

import gc  # noqa: E402
import logging  # noqa: E402

from k8s_logging_events import KubernetesEventHandler  # noqa: E402


def rss_mib() -> float:
    """Resident set size from /proc/self/statm (pages), in MiB."""
    with open("/proc/self/statm") as statm:
        resident = int(statm.read().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def manifest(prefix: str, index: int) -> dict[str, object]:
    """A Pod manifest with a name of its own (made on the fly, then dropped)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{prefix}-{index}", "namespace": "default", "uid": f"uid-{index}"},
    }


def _logger(handler: KubernetesEventHandler) -> logging.Logger:
    STATE["handler"] = handler
    log = logging.getLogger("app")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    return log


def exit_hang(url: str, flush_timeout: float, main_events: int, daemon_events: int) -> None:
    """Log against a server that never answers; a daemon thread goes on logging during exit."""
    log = _logger(
        KubernetesEventHandler(
            sink=url, component="bench-exit", host="node-1", flush_timeout=flush_timeout
        )
    )
    first_done = threading.Event()

    def daemon() -> None:
        number = 0
        while True:
            log.warning(
                "Liveness probe failed",
                extra={"involved": manifest("exit-daemon", number), "reason": "Unhealthy"},
            )
            number += 1
            STATE["daemon_logged"] = number
            if number == daemon_events:
                first_done.set()
            time.sleep(0.01 if number < daemon_events else 0.05)

    threading.Thread(target=daemon, name="app-daemon", daemon=True).start()
    for number in range(main_events):
        log.warning("Back-off pulling image", extra={"involved": manifest("exit-main", number)})
    first_done.wait(30)
    _emit({"logged": main_events + STATE.get("daemon_logged", 0)})
    _emit({"exiting": time.monotonic()})


def batch(url: str, objects: int) -> None:
    """A batch job: one warning about each of ``objects`` objects, default options, exit."""
    log = _logger(KubernetesEventHandler(sink=url, component="bench-batch", host="node-1"))
    for number in range(objects):
        log.warning("Job step failed", extra={"involved": manifest("batch", number)})
    _emit({"stats_at_exit": STATE["handler"].stats()})
    _emit({"exiting": time.monotonic()})


def memory(url: str, objects: int, every: int) -> None:
    """Events about ``objects`` distinct objects at the default rate; RSS as it goes; close()."""
    handler = KubernetesEventHandler(sink=url, component="bench-memory", host="node-1")
    log = _logger(handler)
    gc.collect()
    _emit({"rss": {"logged": 0, "rss_mib": rss_mib(), "seconds": 0.0, "stats": handler.stats()}})
    started = time.perf_counter()
    for number in range(objects):
        log.warning("Back-off pulling image", extra={"involved": manifest("mem", number)})
        if (number + 1) % every == 0 or number + 1 == objects:
            gc.collect()
            _emit(
                {
                    "rss": {
                        "logged": number + 1,
                        "rss_mib": rss_mib(),
                        "seconds": time.perf_counter() - started,
                        "stats": handler.stats(),
                    }
                }
            )
    before = time.monotonic()
    handler.close()
    close_seconds = time.monotonic() - before
    gc.collect()
    _emit(
        {
            "closed": {
                "close_seconds": close_seconds,
                "rss_mib": rss_mib(),
                "stats": handler.stats(),
                "handler_threads": [t.name for t in handler.threads()],
            }
        }
    )
    _emit({"exiting": time.monotonic()})


def main(argv: list[str]) -> int:
    mode, url, *rest = argv
    if mode == "exit-hang":
        exit_hang(url, float(rest[0]), int(rest[1]), int(rest[2]))
    elif mode == "batch":
        batch(url, int(rest[0]))
    elif mode == "memory":
        memory(url, int(rest[0]), int(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])
