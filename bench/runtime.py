"""The runtime, measured: threads idle and under load, exit against a hanging server, a batch
job's events at exit, and memory over a million distinct objects.

    python bench/runtime.py [--objects 1000000] [--only threads|exit|batch|memory ...]

1. threads  one handler, sink = a LocalApiServer in another process
            (``python -m k8s_logging_events apiserver``, so that its threads do not share
            this interpreter's lock): ``handler.threads()`` after one event was written and
            1 s of idleness; then, with ``qps=0``, sampled all along while 20 threads log
            one warning about each of 2,000 distinct objects and flush() runs; again after
            1 s of idleness. The process's own thread count (``/proc/self/status``) for
            context.
2. exit     a child process (bench/_runtime_child.py) with ``flush_timeout=5`` and default
            options against a server where every POST and PATCH of an event hangs: 40
            events from the main thread, 10 from a daemon thread that goes on logging during
            the exit; main returns normally, so ``logging.shutdown()`` runs at exit. Wall
            time from the end of logging (the child's monotonic timestamp) to the end of
            the process, and what the library wrote to standard error.
3. batch    a child process logs one warning about each of 100 distinct objects with
            default options (``qps=5``, ``burst=10``, ``drain_qps=100``) against a healthy
            server in another process and exits: events on the server, exit time.
4. memory   a child process logs about ``--objects`` distinct objects (manifest dicts made
            on the fly) at the default rate, against a healthy server in another process:
            RSS before, every 100,000 and after, then the time close() takes.

Benchmarks never assert: a missed target is printed as ``no`` in the summary. The exit code
is 1 only when a section could not run (a child did not end, a server did not start).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import ApiServerProcess, machine

from k8s_logging_events import KubernetesEventHandler
from k8s_logging_events.testing import LocalApiServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD = HERE / "_runtime_child.py"
SECTIONS = ("threads", "exit", "batch", "memory")
FLUSH_TIMEOUT = 5.0
EXIT_TARGET = FLUSH_TIMEOUT + 0.5
RSS_TARGET_MIB = 100.0
LOAD_THREADS = 20
LOAD_OBJECTS = 2_000
EXIT_MAIN_EVENTS = 40
EXIT_DAEMON_EVENTS = 10
EXIT_RUNS = 3
BATCH_OBJECTS = 100
RSS_EVERY = 100_000


@dataclass
class Row:
    """One line of the summary."""

    measure: str
    figure: str
    target: str
    met: bool | None
    command: str


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, measure: str, figure: str, target: str, met: bool | None, command: str) -> None:
        self.rows.append(Row(measure, figure, target, met, command))
        print(f"  {measure}: {figure}   (target {target}; {_met(met)})", flush=True)


def _met(met: bool | None) -> str:
    return "-" if met is None else "yes" if met else "NO"


def command(section: str, *extra: str) -> str:
    return " ".join([".venv/bin/python", "bench/runtime.py", "--only", section, *extra])


def os_threads() -> int:
    """Threads of this process as the kernel counts them (``Threads:`` in /proc/self/status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def kind(name: str) -> str:
    """``k8s-events-writer-12`` -> ``writer``."""
    match = re.search(r"-([a-z]+)-\d+$", name)
    return match.group(1) if match else name


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KUBECONFIG", None)
    return env


@dataclass
class ChildResult:
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str
    exit_seconds: float

    def first(self, key: str) -> Any:
        return next((line[key] for line in self.lines if key in line), None)

    def every(self, key: str) -> list[Any]:
        return [line[key] for line in self.lines if key in line]


def run_child(
    args: list[str], timeout: float, on_line: Callable[[dict[str, Any]], None]
) -> ChildResult:
    """Run bench/_runtime_child.py; exit time = process end - its ``exiting`` timestamp."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=str(ROOT),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    errors = process.stderr
    stderr_parts: list[str] = []
    reader = threading.Thread(target=lambda: stderr_parts.append(errors.read()), daemon=True)
    reader.start()
    lines: list[dict[str, Any]] = []
    killer = threading.Timer(timeout, process.kill)
    killer.daemon = True
    killer.start()
    try:
        for text in process.stdout:
            with contextlib.suppress(ValueError):
                line = json.loads(text)
                lines.append(line)
                on_line(line)
        process.wait(timeout)
    finally:
        killer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    ended = time.monotonic()
    reader.join(10)
    if process.returncode < 0 and ended - started >= timeout:
        raise TimeoutError(f"the child {args[0]} did not end within {timeout:g} s (killed)")
    exiting = next((line["exiting"] for line in lines if "exiting" in line), float("nan"))
    return ChildResult(process.returncode, lines, "".join(stderr_parts), ended - exiting)


# -- 1. threads ------------------------------------------------------------------------------


def threads_section(report: Report) -> None:
    print("\n== 1. Threads: idle, and under load (server in another process) ==\n", flush=True)
    cmd = command("threads")
    process_before = os_threads()
    python_threads = threading.active_count()
    print(f"  process threads before any handler: {process_before} (python: {python_threads})")
    with ApiServerProcess() as server:
        # idle: one event written, then 1 s of idleness
        idle = KubernetesEventHandler(sink=server.url, component="bench-idle", host="node-1")
        log = _logger("bench.runtime.idle", idle)
        log.warning("Started container", extra={"involved": _pod("idle", 0)})
        idle.flush()
        time.sleep(1.0)
        names = [t.name for t in idle.threads()]
        written = idle.stats()["created"]
        print(f"  idle after 1 s: {len(names)} thread(s) {names}; created {written}")
        report.add(
            "threads, idle handler (1 event written, 1 s idle)",
            f"{len(names)} ({', '.join(sorted({kind(n) for n in names})) or 'none'})",
            "1 (the dispatcher)",
            len(names) == 1 and kind(names[0]) == "dispatcher",
            cmd,
        )
        idle.close()

        # load: 20 threads, 2,000 distinct objects, qps 0
        loaded = KubernetesEventHandler(
            sink=server.url, component="bench-load", host="node-1", qps=0
        )
        log = _logger("bench.runtime.load", loaded)
        samples: list[list[str]] = []
        process_max = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal process_max
            while not stop.is_set():
                samples.append([t.name for t in loaded.threads()])
                process_max = max(process_max, os_threads())
                time.sleep(0.001)

        per_thread = LOAD_OBJECTS // LOAD_THREADS

        def produce(worker: int) -> None:
            for number in range(per_thread):
                log.warning(
                    "Back-off pulling image",
                    extra={"involved": _pod(f"load-{worker}", number)},
                )

        sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
        sampler.start()
        started = time.perf_counter()
        producers = [
            threading.Thread(target=produce, args=(w,), name=f"bench-producer-{w}")
            for w in range(LOAD_THREADS)
        ]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        logged = time.perf_counter() - started
        loaded.flush()
        flushed = time.perf_counter() - started
        stop.set()
        sampler.join()
        stats = loaded.stats()
        peak = max(samples, key=len)
        kinds_peak = Counter(kind(n) for n in peak)
        kinds_seen = Counter(kind(n) for n in {n for s in samples for n in s})
        stored = sum(
            1 for e in server.events("default") if e["source"]["component"] == "bench-load"
        )
        print(
            f"  load: {LOAD_THREADS} threads x {per_thread} objects logged in {logged:.2f} s, "
            f"flushed at {flushed:.2f} s; {len(samples):,} samples"
        )
        print(
            f"  handler threads at most {len(peak)} ({_kinds(kinds_peak)}); distinct threads "
            f"over the run: {_kinds(kinds_seen)}"
        )
        print(
            f"  stats: accepted {stats['accepted']:,}, created {stats['created']:,}, "
            f"dropped {stats['dropped']:,}, failed {stats['failed']:,}; on the server {stored:,}"
        )
        print(
            f"  process threads at most {process_max} (the {LOAD_THREADS} producers and the "
            "sampler included, while they ran)"
        )
        writers = 4
        report.add(
            f"threads under load, max ({LOAD_THREADS} loggers, {LOAD_OBJECTS:,} objects, qps 0)",
            f"{len(peak)} ({_kinds(kinds_peak)})",
            f"<= 1 + {writers} writers (+{writers} while requests stall)",
            len(peak) <= 1 + 2 * writers,
            cmd,
        )
        time.sleep(1.0)
        after_idle = [t.name for t in loaded.threads()]
        report.add(
            "threads after the load and 1 s idle",
            f"{len(after_idle)} ({', '.join(sorted(kind(n) for n in after_idle)) or 'none'})",
            "1 (the dispatcher)",
            len(after_idle) == 1,
            cmd,
        )
        loaded.close()
        left = loaded.threads()
        report.add(
            "threads after close()",
            str(len(left)),
            "0",
            not left,
            cmd,
        )
    process_after = os_threads()
    report.add(
        "process threads before / after (context)",
        f"{process_before} / {process_after}",
        "equal",
        process_after == process_before,
        cmd,
    )


def _kinds(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"


def _logger(name: str, handler: KubernetesEventHandler) -> Any:
    import logging

    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    return log


def _pod(prefix: str, number: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{prefix}-{number}", "namespace": "default"},
    }


# -- 2. exit against a hanging server --------------------------------------------------------


def exit_section(report: Report) -> None:
    print(
        f"\n== 2. Exit: every POST and PATCH of an event hangs; flush_timeout 5 "
        f"({EXIT_RUNS} runs) ==\n",
        flush=True,
    )
    cmd = command("exit")
    results: list[ChildResult] = []
    hung: list[int] = []
    with LocalApiServer() as server:
        events_path = r"/events(/|$)"
        server.inject("POST", events_path, action="hang", times=None)
        server.inject("PATCH", events_path, action="hang", times=None)
        for _ in range(EXIT_RUNS):
            server.clear_requests()
            args = [
                "exit-hang",
                server.url,
                str(FLUSH_TIMEOUT),
                str(EXIT_MAIN_EVENTS),
                str(EXIT_DAEMON_EVENTS),
            ]
            results.append(run_child(args, timeout=FLUSH_TIMEOUT + 60, on_line=_ignore))
            hung.append(sum(1 for r in server.requests if r.fault == "hang"))
    teardown = [bare_teardown() for _ in range(EXIT_RUNS)]
    print(
        f"  {'run':>3} {'exit s':>7} {'shutdown s':>10} {'teardown s':>10} {'logged':>7} "
        f"{'daemon':>7} {'accepted':>8} {'failed':>6} {'after_close':>11} {'hung':>5} {'code':>5}"
    )
    for number, (result, requests) in enumerate(zip(results, hung, strict=True), 1):
        late = result.first("late") or {}
        stats = late.get("stats", {})
        at = late.get("at", float("nan"))
        exiting = result.first("exiting") or float("nan")
        print(
            f"  {number:>3} {result.exit_seconds:>7.2f} {at - exiting:>10.2f} "
            f"{result.exit_seconds - (at - exiting):>10.2f} {result.first('logged')!s:>7} "
            f"{late.get('daemon_logged')!s:>7} {stats.get('accepted')!s:>8} "
            f"{stats.get('failed')!s:>6} {stats.get('after_close')!s:>11} {requests:>5} "
            f"{result.returncode:>5}"
        )
    print(
        "  exit s = shutdown s (the child's last statement -> a hook that runs after "
        "logging.shutdown())\n         + teardown s (that hook -> the process has ended); "
        f"logged = {EXIT_MAIN_EVENTS} from main + {EXIT_DAEMON_EVENTS} from the daemon "
        "thread,\n         which goes on logging during the exit (daemon = its total)"
    )
    print(
        "  teardown of a bare process that imported kubernetes.client (no handler): "
        + ", ".join(f"{t:.2f}" for t in teardown)
        + " s"
    )
    last = results[-1]
    print(f"  threads left at the late hook: {(last.first('late') or {}).get('threads')}")
    stderr = [line for line in last.stderr.splitlines() if line.strip()]
    print(f"  standard error of the last run ({len(stderr)} line(s)):")
    for line in stderr:
        print(f"    | {line}")
    seconds = sorted(r.exit_seconds for r in results)
    shutdowns = sorted(
        (r.first("late") or {}).get("at", float("nan")) - (r.first("exiting") or float("nan"))
        for r in results
    )
    report.add(
        "exit time, hanging server (end of logging -> process end)",
        f"median {statistics.median(seconds):.2f} s, max {seconds[-1]:.2f} s",
        f"<= {EXIT_TARGET:g} s",
        seconds[-1] <= EXIT_TARGET and all(r.returncode == 0 for r in results),
        cmd,
    )
    report.add(
        "  of which logging.shutdown() (flush + close)",
        f"median {statistics.median(shutdowns):.2f} s, max {shutdowns[-1]:.2f} s",
        f"<= {FLUSH_TIMEOUT:g} s + 0.25 s grace",
        shutdowns[-1] <= FLUSH_TIMEOUT + 0.3,
        cmd,
    )
    lines = [len([x for x in r.stderr.splitlines() if x.strip()]) for r in results]
    report.add(
        "exit report on stderr",
        f"{'/'.join(str(n) for n in lines)} line(s)",
        "1 line",
        all(n == 1 for n in lines),
        cmd,
    )


def _ignore(line: dict[str, Any]) -> None:
    del line


def bare_teardown() -> float:
    """Seconds from the last statement to the end of a process that imported the client."""
    code = (
        "import kubernetes.client, sys, time\n"
        "sys.stdout.write(repr(time.monotonic()))\nsys.stdout.flush()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=child_env()
    )
    ended = time.monotonic()
    try:
        return ended - float(done.stdout)
    except ValueError:
        return float("nan")


# -- 3. batch job ----------------------------------------------------------------------------


def batch_section(report: Report) -> None:
    print("\n== 3. Batch job: 100 distinct objects, default options, normal exit ==\n", flush=True)
    cmd = command("batch")
    with ApiServerProcess() as server:
        result = run_child(
            ["batch", server.url, str(BATCH_OBJECTS)],
            timeout=FLUSH_TIMEOUT + 60,
            on_line=_ignore,
        )
        events = [e for e in server.events("default") if e["source"]["component"] == "bench-batch"]
    objects = {e["involvedObject"]["name"] for e in events}
    at_exit = result.first("stats_at_exit") or {}
    late = result.first("late") or {}
    stats = late.get("stats", {})
    stderr = [line for line in result.stderr.splitlines() if line.strip()]
    print(
        f"  written before exit began: {at_exit.get('created')} of {BATCH_OBJECTS} "
        f"(qps 5, burst 10); after logging.shutdown(): created {stats.get('created')}, "
        f"failed {stats.get('failed')}, dropped {stats.get('dropped')}"
    )
    print(f"  on the server: {len(events)} events about {len(objects)} objects")
    print(f"  exit code {result.returncode}; standard error: {stderr or 'empty'}")
    report.add(
        "batch job: events on the server after exit",
        f"{len(objects)} of {BATCH_OBJECTS}",
        f"{BATCH_OBJECTS} of {BATCH_OBJECTS}",
        len(objects) == BATCH_OBJECTS,
        cmd,
    )
    report.add(
        "batch job: exit time (end of logging -> process end)",
        f"{result.exit_seconds:.2f} s",
        f"<= {EXIT_TARGET:g} s",
        result.exit_seconds <= EXIT_TARGET and result.returncode == 0,
        cmd,
    )


# -- 4. memory -------------------------------------------------------------------------------


def memory_section(report: Report, objects: int) -> None:
    print(
        f"\n== 4. Memory: {objects:,} distinct objects at the default rate (qps 5) ==\n", flush=True
    )
    cmd = command("memory", *(["--objects", str(objects)] if objects != 1_000_000 else []))
    every = min(RSS_EVERY, max(1, objects // 10))
    header = (
        f"  {'logged':>10} {'RSS MiB':>9} {'growth':>8} {'s':>7} {'ev/s':>8} "
        f"{'created':>8} {'dropped':>10} {'events':>8}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    base: list[float] = []

    def on_line(line: dict[str, Any]) -> None:
        point = line.get("rss")
        if point is None:
            return
        if not base:
            base.append(point["rss_mib"])
        stats = point["stats"]
        rate = point["logged"] / point["seconds"] if point["seconds"] else float("nan")
        growth = point["rss_mib"] - base[0]
        print(
            f"  {point['logged']:>10,} {point['rss_mib']:>9.1f} {growth:>+8.1f} "
            f"{point['seconds']:>7.1f} {rate:>8,.0f} {stats['created']:>8,} "
            f"{stats['dropped']:>10,} {stats['pending_events']:>8,}",
            flush=True,
        )

    with ApiServerProcess() as server:
        result = run_child(
            ["memory", server.url, str(objects), str(every)],
            timeout=max(300.0, objects / 2_000),
            on_line=on_line,
        )
    points = result.every("rss")
    closed = result.first("closed") or {}
    late = result.first("late") or {}
    stderr = [line for line in result.stderr.splitlines() if line.strip()]
    if not points or not closed:
        report.errors.append(f"memory: the child ended early (exit {result.returncode})")
        print(f"  the child ended early; stderr: {stderr[-5:]}")
        return
    before = points[0]["rss_mib"]
    peak = max(p["rss_mib"] for p in points)
    last = points[-1]
    stats = closed["stats"]
    print(
        f"\n  RSS before the first event {before:.1f} MiB; at most {peak:.1f} MiB; after "
        f"close() {closed['rss_mib']:.1f} MiB"
    )
    print(
        f"  logged {last['logged']:,} in {last['seconds']:.1f} s "
        f"({last['logged'] / last['seconds']:,.0f}/s)"
    )
    print(
        "  stats after close(): "
        + ", ".join(
            f"{k} {stats[k]:,}"
            for k in ("accepted", "created", "patched", "dropped", "failed", "pending")
        )
    )
    print(
        f"  close() took {closed['close_seconds']:.2f} s; the process then exited in "
        f"{result.exit_seconds:.2f} s; handler threads after close(): {closed['handler_threads']}"
    )
    if late:
        print(f"  threads at the late hook: {late.get('threads')}")
    print(f"  standard error ({len(stderr)} line(s)):")
    for line in stderr[:8]:
        print(f"    | {line[:300]}")
    growth = peak - before
    report.add(
        f"memory: RSS growth over {objects:,} distinct objects (peak - before)",
        f"{growth:+.1f} MiB ({before:.1f} -> {peak:.1f})",
        f"< {RSS_TARGET_MIB:g} MiB",
        growth < RSS_TARGET_MIB,
        cmd,
    )
    if len(points) > 2:
        settled = points[1]
        report.add(
            f"memory: RSS growth from {settled['logged']:,} to {last['logged']:,} objects",
            f"{last['rss_mib'] - settled['rss_mib']:+.1f} MiB",
            "context (flat)",
            None,
            cmd,
        )
    report.add(
        f"memory: close() with {last['stats']['pending_events']:,} events pending",
        f"{closed['close_seconds']:.2f} s",
        f"<= {EXIT_TARGET:g} s",
        closed["close_seconds"] <= EXIT_TARGET,
        cmd,
    )


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000, help="memory: distinct objects")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, default=[], help="run these sections only"
    )
    args = parser.parse_args()
    chosen = args.only or list(SECTIONS)
    print(f"machine: {machine()}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    report = Report()
    started = time.perf_counter()
    steps: dict[str, Callable[[], None]] = {
        "threads": lambda: threads_section(report),
        "exit": lambda: exit_section(report),
        "batch": lambda: batch_section(report),
        "memory": lambda: memory_section(report, args.objects),
    }
    for name in SECTIONS:
        if name not in chosen:
            continue
        try:
            steps[name]()
        except Exception as error:  # report and go on with the next section
            report.errors.append(f"{name}: {error!r}")
            print(f"!! {name} failed: {error!r}", flush=True)

    print(f"\n== Summary ({time.perf_counter() - started:.1f} s) ==\n")
    widths = (
        [
            max(len("measure"), *(len(r.measure) for r in report.rows)),
            max(len("figure"), *(len(r.figure) for r in report.rows)),
            max(len("target"), *(len(r.target) for r in report.rows)),
            len("met?"),
        ]
        if report.rows
        else [7, 6, 6, 4]
    )
    head = ("measure", "figure", "target", "met?")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in report.rows:
        cells = (row.measure, row.figure, row.target, _met(row.met))
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    print("\nreproduce:")
    for cmd in dict.fromkeys(r.command for r in report.rows):
        print(f"  {cmd}")
    if report.errors:
        print(f"\nERRORS: {'; '.join(report.errors)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
