"""Write amplification under spam: 10,000 identical warnings about one object.

Runs the whole recording pipeline (recorder, broadcaster, correlator, writer, Kubernetes
sink through the official client) against the local Events API server, and prints the
occurrences, the API writes made and the final count on the server, next to what client-go's
algorithm would have done with the same input: our correlator alone, with its spam filter,
one write per occurrence it does not skip, and nothing written for the ones it skips.

    python bench/spam_burst.py [--occurrences N]
"""

from __future__ import annotations

import argparse
import time

from k8s_logging_events import correlator, models, recorder, sink
from k8s_logging_events.testing import FakeClock, LocalApiServer

POD = models.ObjectReference(
    kind="Pod", namespace="default", name="web-0", uid="u-web-0", api_version="v1"
)


def ours(occurrences: int) -> dict[str, object]:
    """Run the pipeline against a local server; count writes and read the final count."""
    with LocalApiServer() as server:
        events_sink = sink.KubernetesEventSink(server.api_client())
        broadcaster = recorder.EventBroadcaster(queue_length=10_000)
        broadcaster.start_recording_to_sink(events_sink)
        rec = broadcaster.new_recorder(models.EventSource(component="bench", host="node-1"))
        started = time.perf_counter()
        for _ in range(occurrences):
            rec.event(POD, models.WARNING, "BackOff", "Back-off pulling image busybox")
        flushed = broadcaster.flush(60)
        elapsed = time.perf_counter() - started
        broadcaster.shutdown(5)
        events_sink.close()
        writes = [r for r in server.requests if r.method in ("POST", "PATCH", "PUT")]
        stored = server.events()
        return {
            "flushed": flushed,
            "writes": len(writes),
            "events": len(stored),
            "server_count": sum(int(e.get("count") or 0) for e in stored),
            "seconds": elapsed,
            "stats": dict(broadcaster.stats()),
        }


def client_go(occurrences: int, seconds_between: float) -> dict[str, object]:
    """client-go: one write per occurrence the spam filter lets through; the rest are lost."""
    clock = FakeClock(tick=0.0)
    events = correlator.EventCorrelator(correlator.CorrelatorOptions(clock=clock))
    rec = recorder.EventBroadcaster(clock=clock).new_recorder(
        models.EventSource(component="bench", host="node-1")
    )
    built: list[object] = []

    def keep(item: object) -> bool:  # the recorder's queue: its occurrence kept, not queued
        built.append(item)
        return True

    rec._queue = keep
    writes = 0
    last_count = 0
    namer = correlator.EventNamer()
    for _ in range(occurrences):
        assert rec.record(POD, models.WARNING, "BackOff", "Back-off pulling image busybox")
        occurrence = built.pop()
        assert isinstance(occurrence, models.Occurrence)
        event = occurrence.materialize(namer)
        result = events.correlate(event)
        if not result.skip and result.event is not None:
            writes += 1
            last_count = result.event.count
        clock.step(seconds_between)
    return {"writes": writes, "server_count": last_count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--occurrences", type=int, default=10_000)
    args = parser.parse_args()
    n = args.occurrences
    mine = ours(n)
    go_burst = client_go(n, 0.0)
    print(f"{n:,} identical warnings about one object, in one burst\n")
    print(f"{'':<34}{'API writes':>12}{'server count':>14}{'lost':>8}")
    rows = [
        ("k8s-logging-events", mine["writes"], mine["server_count"]),
        ("client-go algorithm (same input)", go_burst["writes"], go_burst["server_count"]),
    ]
    for label, writes, count in rows:
        print(f"{label:<34}{writes:>12,}{count:>14,}{n - int(count):>8,}")  # type: ignore[call-overload]
    print(f"\nours: flushed={mine['flushed']} in {mine['seconds']:.2f} s")
    print(f"ours: events on the server={mine['events']}")
    print(f"ours: stats={mine['stats']}")


if __name__ == "__main__":
    main()
