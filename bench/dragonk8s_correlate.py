"""dragonk8s's port of client-go's correlator on the inputs of ``correlator_rate.py``.

Runs in a virtualenv of its own with ``kubernetes`` 37 and ``dragonk8s`` (never in the
project's). Prints one JSON object: for each input, the calls per second, or the error.

As published, dragonk8s does not import beside the kubernetes 37 client
(``kubernetes.watch.watch`` no longer has ``SimpleNamespace``), and its package declares
none of the modules it imports (``six``, ``pytz``). So that its correlator can be measured at
all, this script adds ``SimpleNamespace`` back to ``kubernetes.watch.watch`` before the
import (SHIM 1). Its ``EventLogger.event_observe`` then fails on every repeat, because it
sets ``event.name`` on a pydantic ``CoreV1Event``; each input is run as published first, and
if that fails, again with that one line corrected to ``event.metadata.name`` (SHIM 2). The
output says which variant each figure comes from.

    /tmp/<venv>/bin/python bench/dragonk8s_correlate.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import textwrap
import time
import types
from typing import Any

from _correlator_inputs import Call, inputs


def load() -> tuple[Any, list[str]]:
    notes: list[str] = []
    try:
        record = importlib.import_module("dragonk8s.lib.client.tools.record")
    except ImportError as error:
        notes.append(f"import as published fails: {type(error).__name__}: {error}")
        watch_module: Any = importlib.import_module("kubernetes.watch.watch")
        watch_module.SimpleNamespace = types.SimpleNamespace  # SHIM 1
        record = importlib.import_module("dragonk8s.lib.client.tools.record")
        notes.append("SHIM 1: kubernetes.watch.watch.SimpleNamespace restored")
    return record, notes


def fix_observe(record: Any) -> None:
    """SHIM 2: ``event.name = ...`` -> ``event.metadata.name = ...`` in event_observe."""
    source = textwrap.dedent(inspect.getsource(record.EventLogger.event_observe))
    fixed = source.replace(
        "event.name = last_observation.name", "event.metadata.name = last_observation.name"
    )
    namespace: dict[str, Any] = {}
    exec(compile(fixed, "<event_observe, SHIM 2>", "exec"), vars(record), namespace)
    record.EventLogger.event_observe = namespace["event_observe"]


def events(calls: list[Call]) -> list[Any]:
    models: Any = importlib.import_module("kubernetes.client")
    timeutil: Any = importlib.import_module("dragonk8s.lib.util.timeutil")
    stamp = timeutil.to_time_str(time.time())
    source = models.V1EventSource(component="bench", host="node-1")
    built = []
    for index, (obj, reason, message) in enumerate(calls):
        ref = models.V1ObjectReference(
            kind="Pod", namespace="default", name=f"pod-{obj}", uid=f"uid-{obj}", api_version="v1"
        )
        built.append(
            models.CoreV1Event(
                api_version="v1",
                kind="Event",
                metadata=models.V1ObjectMeta(name=f"pod-{obj}.{index:x}", namespace="default"),
                involved_object=ref,
                type="Warning",
                reason=reason,
                message=message,
                first_timestamp=stamp,
                last_timestamp=stamp,
                count=1,
                source=source,
            )
        )
    return built


def measure(record: Any, built: list[Any], repeat: int = 2) -> dict[str, object]:
    best = float("inf")
    outcome: dict[str, object] = {}
    for _ in range(repeat):
        subject = record.EventCorrelator()
        correlate = subject.event_correlate
        started = time.perf_counter()
        results = [correlate(event) for event in built]
        best = min(best, time.perf_counter() - started)
        outcome = {
            "skipped": sum(1 for r in results if r.skip),
            "repeats": sum(1 for r in results if r.event is not None and (r.event.count or 0) > 1),
            "combined": sum(
                1
                for r in results
                if r.event is not None and str(r.event.message).startswith("(combined from")
            ),
        }
    return {"rate": len(built) / best, **outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    record, notes = load()
    fixed = False
    result: dict[str, dict[str, object]] = {}
    for name, calls in inputs(args.calls).items():
        built = events(calls)
        try:
            entry = measure(record, built)
            entry["variant"] = "SHIM 2" if fixed else "as published"
        except Exception as error:
            first = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
            if fixed:
                entry = {"error": first}
            else:
                notes.append(f"event_observe as published fails on a repeat: {first}")
                fix_observe(record)
                notes.append("SHIM 2: event_observe sets event.metadata.name instead")
                fixed = True
                entry = measure(record, built)
                entry["variant"] = "SHIM 2"
        result[name] = entry
    output = {"notes": notes, "inputs": result}
    print(json.dumps(output))


if __name__ == "__main__":
    main()
