"""A fleet in one incident: N replica processes log one storm to one local API server.

Each replica is a process (tests/fleet_scenarios.py: forkserver, the library imported once)
with the handler's defaults (deterministic names, client-side limit of 5 requests a second,
burst 10) and real clocks. Replicas run on fewer nodes than there are replicas, so some share
a node (and so a source: their events merge). Each logs ``--occurrences`` warnings about
three pods, all replicas starting together; with a restart, every replica exits half-way
and a new process logs the rest. With the EventRateLimit emulation, the server refuses event
writes beyond one ``User`` bucket (all replicas are one user, as one service account is),
with 429 and no Retry-After.

    .venv/bin/python bench/fleet.py [--replicas 10 30] [--occurrences 100] [--quick]

Rows: our handler with and without the limit and a restart (each replica flushing for up to
300 s), the handler with client-go's timestamp names, the handler under the limit with the
default ``flush_timeout`` of 5 s (what cannot be written by then is failed and reported),
and the baseline: one create per record, tried once (what Kopf does).
Columns: occurrences logged and counted on the server, events, API writes per occurrence,
429s, 409s, reads, the longest flush (drain) of a replica, occurrences failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import Table, machine  # noqa: E402

from k8s_logging_events.testing import LocalApiServer  # noqa: E402
from tests.fleet_scenarios import HANDLER, ONE_CREATE, FleetResult, run_fleet  # noqa: E402

RATE_LIMIT = {"limits": [{"type": "User", "qps": 5, "burst": 10}]}
"""One bucket for the whole fleet (one service account): 5 event writes a second."""

COLUMNS = (
    ("way", 39),
    ("replicas", 9),
    ("logged", 8),
    ("counted", 8),
    ("events", 7),
    ("writes/occ", 11),
    ("429s", 6),
    ("409s", 6),
    ("reads", 6),
    ("drain s", 8),
    ("failed", 7),
)


def rows(replicas: int, occurrences: int) -> list[tuple[str, dict[str, object], bool]]:
    """(label, run_fleet options, with the rate limit) for one fleet size."""
    nodes = max(1, replicas * 2 // 3)  # a third of the nodes run two replicas
    common: dict[str, object] = {
        "replicas": replicas,
        "nodes": nodes,
        "occurrences": occurrences,
        "flush_timeout": 300.0,
        "qps": 5.0,  # the handler's default client-side limit, per replica
    }
    one_create = {**common, "way": ONE_CREATE}
    return [
        ("handler", {**common, "way": HANDLER}, False),
        ("handler, restart", {**common, "restart": True}, False),
        (
            "handler, timestamp names, restart",
            {**common, "restart": True, "event_names": "timestamp"},
            False,
        ),
        ("one create per record (Kopf)", one_create, False),
        ("handler, EventRateLimit", common, True),
        ("handler, EventRateLimit, restart", {**common, "restart": True}, True),
        ("handler, EventRateLimit, exit at 5 s", {**common, "flush_timeout": 5.0}, True),
        ("one create per record, EventRateLimit", one_create, True),
    ]


def print_row(table: Table, result: FleetResult) -> None:
    table.row(
        result.label,
        result.replicas,
        result.logged,
        result.counted,
        result.events,
        result.writes_per_occurrence,
        result.throttled,
        result.conflicts,
        result.reads,
        result.drain_seconds,
        result.stats.get("failed", 0),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--occurrences", type=int, default=100, help="per replica")
    parser.add_argument("--quick", action="store_true", help="2 and 5 replicas, 20 each")
    args = parser.parse_args()
    sizes, occurrences = ([2, 5], 20) if args.quick else (args.replicas, args.occurrences)
    if any(not 2 <= size <= 50 for size in sizes):
        parser.error("replicas go from 2 to 50")
    print(f"machine: {machine()}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"rate limit: {RATE_LIMIT} (429 without Retry-After)\n")
    table = Table(COLUMNS)
    table.header()
    problems: list[str] = []
    started = time.perf_counter()
    with (
        LocalApiServer(max_requests=200_000) as free,
        LocalApiServer(max_requests=200_000, event_rate_limit=RATE_LIMIT) as limited,
    ):
        for size in sizes:
            for label, options, limit in rows(size, occurrences):
                server = limited if limit else free
                result = run_fleet(server, label, **options)  # type: ignore[arg-type]
                print_row(table, result)
                patient = float(str(options["flush_timeout"])) > 5  # not the exit at 5 s
                exact = options.get("way", HANDLER) == HANDLER and patient
                if exact and result.counted != result.logged:
                    problems.append(f"{label} ({size}): {result.counted} of {result.logged}")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    for problem in problems:
        print(f"NOT EXACT: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
