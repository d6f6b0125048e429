"""Helpers shared by the benchmark scripts: the API server in another process, statistics,
tables, per-thread CPU time, resident memory and a sink that discards.

Every benchmark reports ratios against a baseline measured in the same run, because the
machines are shared and noisy: absolute figures move from run to run, ratios much less.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from k8s_logging_events import models

__all__ = [
    "ApiServerProcess",
    "DiscardSink",
    "Table",
    "machine",
    "percentile",
    "rss_mib",
    "thread_cpu_seconds",
]


# -- the API server in another process ------------------------------------------------------


class ApiServerProcess:
    """``python -m k8s_logging_events apiserver`` in a child process, stopped on exit.

    The server gets its own interpreter (its own GIL), as a real API server would be another
    process: what the benchmark measures in this process is the client's cost only.
    """

    def __init__(self, namespaces: Sequence[str] = (), *, delay: float = 0.0) -> None:
        self._namespaces = tuple(namespaces)
        self._delay = delay
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ApiServerProcess:
        command = [sys.executable, "-m", "k8s_logging_events", "apiserver", "--port", "0"]
        for namespace in self._namespaces:
            command += ["--namespace", namespace]
        if self._delay:
            command += ["--delay", str(self._delay)]
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("Kubernetes Events API on "):
            self.stop()
            raise RuntimeError(f"the API server did not start: {line!r}")
        self.url = line.split()[-1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def events(self, namespace: str) -> list[dict[str, Any]]:
        """List the events stored in ``namespace`` (plain HTTP, no client models)."""
        url = f"{self.url}/api/v1/namespaces/{namespace}/events"
        with urllib.request.urlopen(url, timeout=30) as answer:
            items: list[dict[str, Any]] = json.load(answer)["items"]
        return items

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system)."""
        return _proc_stat_cpu(f"/proc/{self.pid}/stat")


def _proc_stat_cpu(path: str) -> float:
    with open(path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- per-thread CPU time ---------------------------------------------------------------------


def thread_cpu_seconds(prefix: str) -> dict[int, float]:
    """CPU seconds used so far by each live thread whose name starts with ``prefix``.

    Keyed by thread id: two handlers' threads may have the same names.
    """
    used: dict[int, float] = {}
    for thread in threading.enumerate():
        if not thread.name.startswith(prefix) or thread.ident is None:
            continue
        with contextlib.suppress(OSError, ProcessLookupError):
            clock = time.pthread_getcpuclockid(thread.ident)
            used[thread.ident] = time.clock_gettime(clock)
    return used


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """Total CPU seconds the threads used between two :func:`thread_cpu_seconds` readings."""
    return sum(after[name] - before.get(name, 0.0) for name in after)


# -- memory ----------------------------------------------------------------------------------


def rss_mib() -> float:
    """This process's resident set size, in MiB (``VmRSS`` from ``/proc/self/status``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- statistics and tables -------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of the (sorted) values lie (nearest rank)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


class Table:
    """A small fixed-width table, printed row by row as a benchmark goes."""

    def __init__(self, columns: Sequence[tuple[str, int]]) -> None:
        self._columns = list(columns)

    def header(self) -> None:
        first, *rest = self._columns
        line = f"{first[0]:<{first[1]}}" + "".join(f"{name:>{width}}" for name, width in rest)
        print(line)
        print("-" * len(line))

    def row(self, *cells: object) -> None:
        first, *rest = self._columns
        text = f"{_cell(cells[0]):<{first[1]}}"
        for (_, width), cell in zip(rest, cells[1:], strict=True):
            text += f"{_cell(cell):>{width}}"
        print(text, flush=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if value and abs(value) < 0.01:
            return f"{value:.4f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> str:
    """One line about the machine: cores, CPU model, Python."""
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}"
    )


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    """Print a section title and, at the end, how long the section took."""
    print(f"\n== {title} ==\n", flush=True)
    started = time.perf_counter()
    yield
    print(f"\n({title}: {time.perf_counter() - started:.1f} s)", flush=True)


# -- a sink that discards --------------------------------------------------------------------


class DiscardSink:
    """An EventSink that stores nothing and answers as a server would (a resourceVersion).

    For benchmarks that must not be limited by a server: memory, pipeline overhead.
    """

    def create(self, event: models.Event) -> models.Event:
        return dataclasses.replace(event, resource_version="1")

    def update(self, event: models.Event) -> models.Event:
        return event

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        return event


class SyncCreateHandler(logging.Handler):
    """What users write by hand: one synchronous create per record, through models."""

    def __init__(self, url: str) -> None:
        super().__init__()
        configuration = client.Configuration(host=url)
        configuration.retries = False
        self._api_client: Any = client.ApiClient(configuration)
        self._api = client.CoreV1Api(self._api_client)
        self._source = client.V1EventSource(component="bench", host="node-1")
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            pod: Any = record.involved  # type: ignore[attr-defined]
            stamp = datetime.now(UTC).replace(microsecond=0)
            meta = pod.metadata
            body = client.CoreV1Event(
                metadata=client.V1ObjectMeta(
                    name=f"{meta.name}.{time.time_ns():x}", namespace=meta.namespace
                ),
                involved_object=client.V1ObjectReference(
                    kind=pod.kind,
                    api_version=pod.api_version,
                    name=meta.name,
                    namespace=meta.namespace,
                    uid=meta.uid,
                ),
                reason=getattr(record, "reason", "Logged"),
                message=record.getMessage(),
                type="Warning" if record.levelno >= logging.WARNING else "Normal",
                count=1,
                first_timestamp=stamp,
                last_timestamp=stamp,
                source=self._source,
            )
            self._api.create_namespaced_event(meta.namespace, body)
        except Exception:
            self.errors += 1

    def close(self) -> None:
        self._api_client.close()
        super().close()


def make_pods(count: int, prefix: str = "pod", namespace: str = "default") -> list[Any]:
    """Distinct pods, as the official client's models (what an operator has in hand)."""
    return [
        client.V1Pod(
            api_version="v1",
            kind="Pod",
            metadata=client.V1ObjectMeta(
                name=f"{prefix}-{index}",
                namespace=namespace,
                uid=f"uid-{namespace}-{prefix}-{index}",
            ),
        )
        for index in range(count)
    ]
