"""The correlator alone: ``EventCorrelator.correlate()`` calls per second.

Four inputs (see ``_correlator_inputs.py``): repeated (repeats of 1,000 events, counted and
patched), aggregated (new messages, combined from the 10th per object), spam-filtered (one
object, held back after 25) and distinct (every event new). The events are built before the
clock starts; the correlator runs on the system clock with client-go's defaults. Beside it,
when available, the same inputs through dragonk8s's port of client-go, run by
``dragonk8s_correlate.py`` in a virtualenv of its own (``--dragonk8s-python``).

    python bench/correlator_rate.py [--calls 20000] [--dragonk8s-python /tmp/.../python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from _common import Table
from _correlator_inputs import Call, inputs

from k8s_logging_events import correlator, models

SOURCE = models.EventSource(component="bench", host="node-1")


def events(calls: list[Call]) -> list[models.Event]:
    now = datetime.now(UTC)
    built = []
    for index, (obj, reason, message) in enumerate(calls):
        ref = models.ObjectReference(
            kind="Pod", namespace="default", name=f"pod-{obj}", uid=f"uid-{obj}", api_version="v1"
        )
        built.append(
            models.Event(
                name=f"pod-{obj}.{index:x}",
                namespace="default",
                involved_object=ref,
                reason=reason,
                message=message,
                source=SOURCE,
                first_timestamp=now,
                last_timestamp=now,
                count=1,
                type=models.WARNING,
                reporting_controller=SOURCE.component,
                reporting_instance=SOURCE.host,
            )
        )
    return built


def measure(calls: list[Call], repeat: int = 3) -> dict[str, float]:
    """Best of ``repeat`` runs, each with a fresh correlator; and what it decided."""
    built = events(calls)
    best = float("inf")
    outcome: dict[str, float] = {}
    for _ in range(repeat):
        subject = correlator.EventCorrelator()
        correlate = subject.correlate
        started = time.perf_counter()
        results = [correlate(event) for event in built]
        best = min(best, time.perf_counter() - started)
        outcome = {
            "skipped": sum(1 for r in results if r.skip),
            "repeats": sum(1 for r in results if r.event is not None and r.event.count > 1),
            "combined": sum(
                1
                for r in results
                if r.event is not None
                and r.event.message.startswith(correlator.COMBINED_MESSAGE_PREFIX)
            ),
        }
    return {"rate": len(calls) / best, **outcome}


def dragonk8s(python: str, calls: int) -> dict[str, Any]:
    """Run dragonk8s_correlate.py in its own virtualenv; its JSON, or {"error": ...}."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dragonk8s_correlate.py")
    done = subprocess.run(
        [python, script, "--calls", str(calls)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--dragonk8s-python", default="")
    parser.add_argument("--dragonk8s-skipped", default="", help="why dragonk8s was not run")
    args = parser.parse_args()
    specs = inputs(args.calls)
    ours = {name: measure(calls) for name, calls in specs.items()}
    theirs = dragonk8s(args.dragonk8s_python, args.calls) if args.dragonk8s_python else {}
    their_inputs: dict[str, dict[str, Any]] = theirs.get("inputs", {})

    table = Table(
        [
            ("input", 14),
            ("calls", 7),
            ("ours calls/s", 13),
            ("rep./comb./skip.", 17),
            ("dragonk8s calls/s", 18),
            ("rep./comb./skip.", 17),
            ("ours/dragonk8s", 15),
        ]
    )
    table.header()
    for name, calls in specs.items():
        mine = ours[name]
        entry = their_inputs.get(name, {})
        rate = entry.get("rate")
        table.row(
            name,
            len(calls),
            mine["rate"],
            _decisions(mine),
            rate if isinstance(rate, float) else entry.get("error", "-"),
            _decisions(entry) if isinstance(rate, float) else "-",
            mine["rate"] / rate if isinstance(rate, float) else "-",
        )
    print("\nrep./comb./skip.: results that were repeats (count > 1), combined (aggregate")
    print("events), skipped (held back by the spam filter): the inputs do what they are named")
    print("after. Best of 3 runs (dragonk8s: of 2), a fresh correlator each.")
    if "error" in theirs:
        print(f"dragonk8s: the run failed: {theirs['error']}")
    elif theirs:
        print("dragonk8s (kubernetes 37, its own virtualenv):")
        for note in theirs.get("notes", []):
            print(f"  - {note}")
        variants = {name: entry.get("variant") for name, entry in their_inputs.items()}
        print(f"  - variant per input: {variants}")
    else:
        print(f"dragonk8s: not run ({args.dragonk8s_skipped or 'no --dragonk8s-python'})")


def _decisions(entry: dict[str, Any]) -> str:
    return "/".join(str(int(entry.get(key, 0))) for key in ("repeats", "combined", "skipped"))


if __name__ == "__main__":
    main()
