"""The demo's report: what ``python -m k8s_logging_events demo`` prints.

Part of the demo (``k8s_logging_events._demo``): :class:`Writer` prints the header, a line
per reconciled pod, the events read back from the server per pod as ``kubectl describe pod``
shows them (:func:`~k8s_logging_events.describe.format_events`), notes on what happened,
the occurrences logged against those counted on the server, the handler's ``stats()``, the
verdict, and -- on the local server -- the real ``kubectl describe pod`` of one pod.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from k8s_logging_events import describe
from k8s_logging_events._demo._controller import (
    BACKOFFS_PER_ATTEMPT,
    MOUNT_FAILURES,
    PROBE_FAILURES,
    PULL_ATTEMPTS,
    SCENARIOS,
)
from k8s_logging_events._demo._values import OUTCOMES

if TYPE_CHECKING:
    from k8s_logging_events._demo._values import DemoOptions, DemoResult

_RULE = "=" * 78

_API_NAMES = {
    "v1": "core/v1 (counts and aggregation, like client-go's tools/record)",
    "events.k8s.io/v1": "events.k8s.io/v1 (series, like client-go's tools/events)",
}


class Writer:
    """Prints the demo's report."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def line(self, text: str = "") -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def header(self, options: DemoOptions, where: str, note: str, *, real_pods: bool) -> None:
        self.line(_RULE)
        self.line("k8s-logging-events demo: Python logging -> Kubernetes Events")
        self.line(_RULE)
        self.line(f"Logging:    dictConfig from {_shown_path(options.config)} (sink replaced)")
        self.line(f"Events to:  {where}")
        self.line(f"            ({note})")
        self.line(f"Namespace:  {options.namespace}")
        self.line(f"API:        {_API_NAMES[options.api]}")
        self.line()
        if real_pods:
            self.line(
                f"Reconciling {len(SCENARIOS)} pods, created on the local server (real Pod "
                "objects),"
            )
        else:
            self.line(
                f"Reconciling {len(SCENARIOS)} simulated pods (manifest dicts: no Pod objects "
                "are created),"
            )
        self.line("logging about each through EventLoggerAdapter:")

    def reconciled(self, pod: str, story: str, counts: Mapping[tuple[str, str], int]) -> None:
        logged = ", ".join(f"{n} x {reason}" for (name, reason), n in counts.items() if name == pod)
        self.line(f"  {pod:<26} {story}")
        self.line(f"  {'':<26} logged {logged}")

    def flushed(
        self, logging_seconds: float, flush_seconds: float, rate: tuple[float, int, float]
    ) -> None:
        self.line(
            f"Logging took {logging_seconds * 1000:.0f} ms: emit() never waits for the API. "
            f"flush() took {flush_seconds:.1f} s"
        )
        qps, burst, drain_qps = rate
        if qps > 0:  # a flush drains at drain_qps, never slower than qps (0: no limit)
            drains = "with no limit" if drain_qps <= 0 else f"at {max(drain_qps, qps):g} requests/s"
            self.line(f"(it drains {drains} (drain_qps); otherwise the sink's rate")
            self.line(f"limit is {qps:g} requests/s after a burst of {burst}).")

    def report(self, result: DemoResult) -> None:
        self.line()
        self.line(_RULE)
        self.line("Events read back from the API server, as `kubectl describe pod` shows them")
        self.line(_RULE)
        for pod in result.pods:
            metadata = pod["metadata"]
            self.line()
            self.line(f"Name:         {metadata['name']}")
            self.line(f"Namespace:    {metadata['namespace']}")
            self._out.write(describe.format_events(result.events[metadata["name"]]))
        self.line()
        self.notes(result.api)
        self.counts(result)
        self.stats(result.stats)
        self.line()
        self.verdict(result)

    def notes(self, api: str) -> None:
        self.line("What happened:")
        if api == "events.k8s.io/v1":
            self._wrapped(
                "  - ",
                "events.k8s.io/v1 groups repeats of one event (same object, reason and "
                "action, whatever the message) into a series: the first occurrence is "
                "created, the second patches series.count 2, later ones are written six "
                "minutes after the last one, every 30 minutes while they go on, and at "
                "flush(), so the series count on the server is exact.",
            )
            return
        for text in (
            f"BackOff: {PULL_ATTEMPTS * BACKOFFS_PER_ATTEMPT} identical warnings are one "
            "event with a count; repeats are patches of count and lastTimestamp.",
            f"Unhealthy: {PROBE_FAILURES} distinct messages with one reason. The first 9 are "
            "events of their own; from the 10th on (within 10 minutes) they are combined into "
            'one "(combined from similar events): ..." event.',
            f"FailedMount: a burst of {MOUNT_FAILURES}. The spam filter lets 25 occurrences "
            "per object through at once, then one per 5 minutes; the count it held back was "
            "written at flush(), so the server shows the exact number.",
        ):
            self._wrapped("  - ", text)

    def counts(self, result: DemoResult) -> None:
        self.line()
        self.line(
            "Occurrences logged vs. counted on the server (sum of `count` or `series.count`):"
        )
        self.line(f"  {'POD':<26} {'REASON':<12} {'LOGGED':>6} {'SERVER':>6} {'EVENTS':>6}")
        keys = list(result.logged) + [k for k in result.stored if k not in result.logged]
        shown = ""
        for name, reason in keys:
            n_events = sum(1 for item in result.events[name] if item.get("reason") == reason)
            logged = result.logged.get((name, reason), 0)
            stored = result.stored.get((name, reason), 0)
            mark = "" if logged == stored else "  <- MISMATCH"
            pod = name if name != shown else ""
            shown = name
            self.line(f"  {pod:<26} {reason:<12} {logged:>6} {stored:>6} {n_events:>6}{mark}")
        total_events = sum(len(items) for items in result.events.values())
        self.line(
            f"  {'total':<26} {'':<12} {sum(result.logged.values()):>6} "
            f"{sum(result.stored.values()):>6} {total_events:>6}"
        )

    def stats(self, stats: Mapping[str, int]) -> None:
        self.line()
        self.line("handler.stats() after flush():")
        outcomes = " + ".join(f"{key} {stats[key]}" for key in OUTCOMES)
        self.line(f"  accepted {stats['accepted']} = {outcomes}")
        others = ", ".join(
            f"{key} {stats[key]}"
            for key in ("pending", "invalid", "refused", "repaired", "after_close")
        )
        self.line(f"  {others}")
        writes = stats["created"] + stats["patched"]
        self._wrapped(
            "  ",
            f"{stats['accepted']} occurrences took {_plural(writes, 'API write')} "
            f"({_plural(stats['created'], 'create')}, {_plural(stats['patched'], 'patch')}); "
            f"the other {stats['coalesced']} were coalesced into them.",
        )

    def verdict(self, result: DemoResult) -> None:
        total = sum(result.logged.values())
        if result.counts_match:
            self.line(f"OK: the server counts all {total} occurrences that were logged.")
        else:
            self.line("FAILED: the counts on the server differ from what was logged.")
        if result.stats_add_up:
            self.line("OK: every accepted occurrence has exactly one outcome; none is pending.")
        else:
            self.line("FAILED: the handler's counters do not add up (see above).")
        self.kubectl(result)
        self.line(f"Finished in {result.seconds:.1f} s.")

    def kubectl(self, result: DemoResult) -> None:
        """The real ``kubectl describe pod`` of one pod, or the one line saying why not."""
        if result.kubectl_command is None:
            return
        if result.kubectl_output is None:
            self.line(f"({result.kubectl_note}: `{result.kubectl_command}` skipped.)")
            return
        self.line()
        self.line(_RULE)
        self.line(f"$ {result.kubectl_command}")
        self.line(_RULE)
        self._out.write(result.kubectl_output)
        self.line()

    def _wrapped(self, first: str, text: str, width: int = 80) -> None:
        prefix, line = first, ""
        for word in text.split():
            if line and len(prefix) + len(line) + 1 + len(word) > width:
                self.line(prefix + line)
                prefix, line = " " * len(first), word
            else:
                line = f"{line} {word}" if line else word
        if line:
            self.line(prefix + line)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun[-1] == 'h' else 's'}"


def _shown_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)
