"""The long reliability run, as tables: chaos, outage, exit, threads and fork.

Runs the scenarios of tests/test_reliability.py at full size against a LocalApiServer in
this process (fault injection needs it here), checks each the way the tests do, and prints
what happened: occurrences, faults injected by kind, outcomes by counter, server counts
checked, logging cost around an outage, exit times.

    .venv/bin/python bench/reliability.py [--quick]

``--quick`` runs the sizes of the fast tests. Exits 1 if a check failed. What each case
proves: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from k8s_logging_events.testing import LocalApiServer  # noqa: E402
from tests.reliability_scenarios import (  # noqa: E402
    ChaosResult,
    check_chaos,
    check_forks,
    check_outage,
    check_threads,
    run_chaos,
    run_exit_child,
    run_forks,
    run_outage,
    run_threads,
    unaccounted,
)

FAILED: list[str] = []


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain table, numbers right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    for row in cells:
        print(
            "  ".join(
                value.ljust(w) if i == 0 else value.rjust(w)
                for i, (value, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def verdict(name: str, check: Callable[[], None]) -> str:
    """Run a test's checks; remember and show a failure instead of stopping."""
    try:
        check()
    except AssertionError as error:
        FAILED.append(name)
        return f"FAIL: {str(error).splitlines()[0][:200]}"
    return "pass"


def chaos(occurrences: int, objects: int) -> None:
    print(f"\n## 1. Chaos: {occurrences:,} occurrences over {objects:,} objects from 8 threads")
    print("faults on ~18% of writes: 10% 500, 5% 429 (Retry-After 2 s), 2% dropped, 1% slow")
    results: list[tuple[str, ChaosResult, str]] = []
    for commit in (False, True):
        label = "after stored (lost answers)" if commit else "before stored"
        with LocalApiServer(max_requests=200_000) as server:
            result = run_chaos(
                server, occurrences=occurrences, objects=objects, commit=commit, flush_timeout=120
            )
        check = verdict(f"chaos {label}", lambda: check_chaos(result))  # noqa: B023 - called here
        results.append((label, result, check))
    print("\nfaults injected, and the writer's attempts")
    table(
        ["mode", "500", "429", "drop", "slow", "attempts", "failed attempts", "429 retries early"],
        [
            (
                label,
                r.faults["500"],
                r.faults["429"],
                r.faults["drop"],
                r.faults["slow"],
                len(r.attempts),
                sum(1 for a in r.attempts if a.error is not None),
                len(r.retry_after_violations()),
            )
            for label, r, _ in results
        ],
    )
    print("\noutcomes by counter (stats() after flush)")
    table(
        ["mode", "accepted", "created", "patched", "coalesced", "failed", "dropped", "unaccounted"],
        [
            (
                label,
                r.stats["accepted"],
                r.stats["created"],
                r.stats["patched"],
                r.stats["coalesced"],
                r.stats["failed"],
                r.stats["dropped"],
                unaccounted(r.stats),
            )
            for label, r, _ in results
        ],
    )
    print("\nserver counts checked, per object (sum of count over its events)")
    table(
        [
            "mode",
            "objects",
            "equal",
            "above logged",
            "below logged",
            "409 own create",
            "continued as patch",
            "log s",
            "flush s",
            "check",
        ],
        [
            (
                label,
                len(set(r.logged) | set(r.stored)),
                sum(1 for name in r.logged if r.stored[name] == r.logged[name]),
                len(r.exceeding),
                sum(1 for name in r.logged if r.stored[name] < r.logged[name]),
                len(r.lost_creates),
                len(r.continued),
                r.log_seconds,
                r.flush_seconds,
                check,
            )
            for label, r, check in results
        ],
    )


def outage(quick: bool) -> None:
    refuse, hang = (0.6, 0.6) if quick else (3.0, 3.0)
    print(f"\n## 2. Outage: {refuse:g} s refused connections, then {hang:g} s hanging requests")
    print("retries 0.5 s apart (12 tries), read timeout 0.5 s; each phase logs about 50 Pods")
    with LocalApiServer() as server:
        result = run_outage(
            server,
            refuse_seconds=refuse,
            hang_seconds=hang,
            objects_per_phase=50,
            min_calls=5_000,
            sleep_duration=0.5,
            read_timeout=0.5,
        )
    check = verdict("outage", lambda: check_outage(result))
    rows = []
    for phase, values in result.calls.items():
        ordered = sorted(values)
        rows.append(
            (
                phase,
                len(ordered),
                sum(ordered) / len(ordered) * 1e6,
                ordered[int(len(ordered) * 0.99)] * 1e6,
                ordered[-1] * 1e3,
            )
        )
    table(["phase", "logging calls", "mean us", "p99 us", "max ms"], rows)
    network = ", ".join(f"{name}*: {count}" for name, count in result.network_threads.items())
    print(f"\ncost per call during the outage / before it: {result.ratio:.2f}")
    print(f"HTTP requests by thread: {network} (none on the thread that logs)")
    print(
        f"pending writes at most {result.pending_max} for {result.keys} events; "
        f"live Event objects after {result.outage_occurrences:,} outage occurrences: "
        f"{result.live_events}; dropped: {result.stats_in_outage['dropped']}"
    )
    print(f"requests that hung: {result.hung_requests}")
    equal = sum(1 for name in result.logged if result.stored[name] == result.logged[name])
    print(
        f"after recovery: written in {result.recovery_seconds:.2f} s; failed "
        f"{result.stats['failed']}; objects with the logged count on the server "
        f"{equal}/{len(result.logged)}; check: {check}"
    )


def exits(quick: bool) -> None:
    records = 200 if quick else 1_000
    print(
        f"\n## 3. Exit: a child process logs {records:,} events and ends without closing anything"
    )
    rows = []
    with LocalApiServer() as server:
        for mode in ("exit", "shutdown"):
            result = run_exit_child(
                server.url, mode, flush_timeout=5.0, records=records, objects=50
            )
            stats = result.late.get("stats", {})
            ok = (
                result.returncode == 0
                and result.stderr == ""
                and not result.late.get("threads")
                and stats.get("failed") == 0
                and unaccounted(stats) == 0
            )
            if not ok:
                FAILED.append(f"exit {mode}")
            label = "server up, plain exit" if mode == "exit" else "server up, logging.shutdown()"
            rows.append(_exit_row(label, result, stats, 5.0, ok))
    with LocalApiServer() as server:
        server.inject(action="hang", times=None)
        result = run_exit_child(server.url, "exit", flush_timeout=5.0, records=records, objects=50)
        stats = result.late.get("stats", {})
        ok = (
            result.returncode == 0
            and result.exit_seconds <= 6.0
            and "Traceback" not in result.stderr
            and unaccounted(stats) == 0
        )
        if not ok:
            FAILED.append("exit hang")
        rows.append(_exit_row("server hangs, plain exit", result, stats, 5.0, ok))
    table(
        [
            "case",
            "accepted",
            "written",
            "failed",
            "flush_timeout s",
            "exit s",
            "threads left",
            "stderr",
            "check",
        ],
        rows,
    )
    print("(exit s: from the program's last statement to the end of the process)")


def _exit_row(
    label: str, result: Any, stats: dict[str, int], flush_timeout: float, ok: bool
) -> tuple[object, ...]:
    written = stats.get("created", 0) + stats.get("patched", 0) + stats.get("coalesced", 0)
    left = result.late.get("threads") or []
    stderr = "empty" if not result.stderr else f"{len(result.stderr.splitlines())} warning line(s)"
    return (
        label,
        stats.get("accepted", 0),
        written,
        stats.get("failed", 0),
        flush_timeout,
        result.exit_seconds,
        f"{len(left)} (daemon)" if left else 0,
        stderr,
        "pass" if ok else "FAIL",
    )


def threads(quick: bool) -> None:
    records = 500 if quick else 10_000
    print(f"\n## 4. Threads: 16 x {records:,} records about 1,000 Pods, dictConfig after a third")
    with LocalApiServer() as server:
        result = run_threads(server, threads=16, records=records, objects=1_000)
    check = verdict("threads", lambda: check_threads(result))
    table(
        ["handler", "accepted", "after close", "written", "failed", "dropped", "unaccounted"],
        [
            (
                name,
                s["accepted"],
                s["after_close"],
                s["created"] + s["patched"] + s["coalesced"],
                s["failed"],
                s["dropped"],
                unaccounted(s),
            )
            for name, s in zip(("before dictConfig", "after dictConfig"), result.stats, strict=True)
        ],
    )
    print(
        f"records {result.logged:,}; on the server {result.stored:,}; exceptions "
        f"{len(result.errors)}; run {result.seconds:.1f} s; dictConfig took "
        f"{result.reconfigure_seconds:.2f} s; slowest logging call "
        f"{result.slowest_call * 1e3:.0f} ms"
    )
    with LocalApiServer() as server:
        down = run_threads(
            server, threads=8, records=400, refuse_during_reconfigure=True, flush_timeout=1.0
        )
    print(
        f"the same with the server refusing connections and flush_timeout 1 s (8 x 400): "
        f"dictConfig took {down.reconfigure_seconds:.2f} s, slowest logging call "
        f"{down.slowest_call * 1e3:.0f} ms"
    )
    if down.slowest_call >= 0.5:
        FAILED.append("threads while down")
    print(f"check: {check}")


def forks(quick: bool) -> None:
    count = 8 if quick else 50
    print(f"\n## 5. Fork: {count} forks while 4 threads log; each child logs 5 events")
    if not hasattr(os, "fork"):
        print("skipped: no os.fork here")
        return
    with LocalApiServer() as server:
        result = run_forks(server, forks=count, threads=4)
    check = verdict("forks", lambda: check_forks(result))
    children_ok = sum(1 for n in range(count) if result.stored.get(f"child-{n}") == 5)
    parents = {k: v for k, v in result.stored.items() if k.startswith("parent-")}
    print(
        f"children deadlocked: {result.hung}; children whose 5 events are on the server once: "
        f"{children_ok}/{count}; parent occurrences {sum(result.parent_logged.values()):,}, "
        f"on the server {sum(parents.values()):,}; check: {check}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the fast tests' sizes")
    args = parser.parse_args()
    started = time.monotonic()
    print(
        f"# Reliability run: {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )
    occurrences, objects = (2_000, 50) if args.quick else (50_000, 500)
    chaos(occurrences, objects)
    outage(args.quick)
    exits(args.quick)
    threads(args.quick)
    forks(args.quick)
    print(f"\nwall time {time.monotonic() - started:.0f} s; failed checks: {FAILED or 'none'}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
