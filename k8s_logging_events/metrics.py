"""Prometheus metrics of the handler's counters (the ``metrics`` extra: ``prometheus_client``).

Beside the front door, outside the pipeline: nothing on the logging path knows it exists.
:func:`register` puts a collector into a registry that reads ``handler.stats()`` at every
scrape, so logging costs nothing more for being measured. The metrics (one series per
``component``) and how they relate are in docs/metrics.md. Without ``prometheus_client``,
importing this module raises :class:`ImportError` saying how to install it.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, cast

try:
    import prometheus_client
    from prometheus_client import registry as registries
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.metrics_core import Metric
except ImportError as error:  # pragma: no cover - tested in a subprocess without it
    raise ImportError(
        "k8s_logging_events.metrics needs prometheus_client: "
        "pip install 'k8s-logging-events[metrics]'",
        name=error.name,
    ) from error

from k8s_logging_events import _diagnostics, _process, models

__all__ = [
    "ACCEPTED",
    "OCCURRENCES",
    "PENDING",
    "PENDING_EVENTS",
    "REJECTED",
    "REJECTED_CAUSES",
    "REPAIRED",
    "WATCHER_DROPPED",
    "EventMetrics",
    "register",
]

ACCEPTED = "k8s_logging_events_accepted_total"
"""Occurrences accepted (``stats()["accepted"]``), per ``component``."""

OCCURRENCES = "k8s_logging_events_occurrences_total"
"""Occurrences by final ``outcome`` (each of ``stats()``'s outcomes), per ``component``."""

PENDING = "k8s_logging_events_pending"
"""A gauge: ``stats()["pending"]``, occurrences without an outcome yet, per ``component``."""

PENDING_EVENTS = "k8s_logging_events_pending_events"
"""A gauge: ``stats()["pending_events"]``, events with a write not finished, per ``component``."""

REJECTED = "k8s_logging_events_rejected_total"
"""Records that never became an occurrence, by ``cause``, per ``component``."""

REJECTED_CAUSES = ("refused", "invalid", "after_close")
"""The ``stats()`` counters behind :data:`REJECTED`, one ``cause`` each (the same names)."""

REPAIRED = "k8s_logging_events_repaired_total"
"""Occurrences accepted after their input was repaired, per ``component``."""

WATCHER_DROPPED = "k8s_logging_events_watcher_dropped_total"
"""Events a watcher (structured logging) did not get, being ``queue_length`` behind, per
``component``."""

_COMPONENT = "component"
_GAUGES = ("pending", "pending_events")  # the stats() fields behind PENDING, PENDING_EVENTS


class Measured(Protocol):
    """What :func:`register` reads: a :class:`~.handler.KubernetesEventHandler`."""

    @property
    def source(self) -> models.EventSource:
        """Who the events come from; its ``component`` labels the series."""

    def stats(self) -> Mapping[str, int]:
        """The counters, read at every scrape."""


@dataclass(frozen=True, eq=False, repr=False)
class EventMetrics:
    """One handler's place in a registry, made by :func:`register`; :meth:`unregister` ends it."""

    handler: Measured
    """The handler whose counters are exposed."""
    registry: registries.CollectorRegistry
    """The registry the metrics are in."""

    @property
    def component(self) -> str:
        """The ``component`` label of the handler's series."""
        return self.handler.source.component

    def unregister(self) -> None:
        """Stop exposing the handler's counters; idempotent. While another handler of its
        component stays, what it counted stays in the component's counters (a counter never
        goes down while its series lives) and its share of the gauges leaves; the series
        leave with the component's last handler. After the registry's last handler the
        collector leaves it, freeing the metric names."""
        with _lock:
            collector = _collector_of(self.registry)
            if collector is None or not collector.remove(self):
                return
            if collector.empty:
                del _collectors[self.registry]
                self.registry.unregister(collector)


def register(
    # what logging.getHandlerByName() returns, as the docs take it: checked below
    handler: Measured | logging.Handler | None,
    *,
    registry: registries.CollectorRegistry | None = None,
) -> EventMetrics:
    """Expose ``handler``'s counters in ``registry`` (``prometheus_client.REGISTRY`` by default).

    Handlers sharing a registry share one collector, labelled by ``component`` (handlers with
    the same component are summed); counters are read at each scrape. Raises
    :class:`ValueError` when ``handler`` is already in ``registry``, or another collector
    there already exposes these metric names; :class:`TypeError` when ``handler`` has no
    ``source`` and ``stats()`` (None from ``logging.getHandlerByName()`` with a wrong name).
    """
    component = getattr(getattr(handler, "source", None), "component", None)
    if not isinstance(component, str) or not callable(getattr(handler, "stats", None)):
        # taken, it would break every scrape of the registry, the application's metrics too
        hint = ": is its name in the configuration?" if handler is None else ""
        raise TypeError(f"register() takes a KubernetesEventHandler, not {handler!r}{hint}")
    target = prometheus_client.REGISTRY if registry is None else registry
    metrics = EventMetrics(cast("Measured", handler), target)
    with _lock:
        collector = _collector_of(target)
        if collector is None:
            collector = _Collector()
            target.register(collector)  # raises on a clash with another collector's names
            _collectors[target] = weakref.ref(collector)
        collector.add(metrics)
    return metrics


class _Collector:
    """The one collector of a registry: reads every registered handler's ``stats()``."""

    def __init__(self) -> None:
        # the handlers, and per component what those that left it while others stayed had
        # counted: one value, swapped whole, so that a scrape never sees one without the other
        self._state: tuple[tuple[EventMetrics, ...], dict[str, Counter[str]]] = ((), {})
        # each of those handlers' share, while it lives: taken back if it is registered again
        self._shares: weakref.WeakKeyDictionary[Measured, tuple[str, Counter[str]]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def empty(self) -> bool:
        return not self._state[0]

    def add(self, metrics: EventMetrics) -> None:
        members, retired = self._state
        if any(member.handler is metrics.handler for member in members):
            raise ValueError(
                f"{metrics.handler!r} is already registered in this registry: "
                "call unregister() on the EventMetrics that register() returned first"
            )
        # handlers given one broadcaster (broadcaster=) each read its counters whole
        given = getattr(metrics.handler, "broadcaster", None)
        for member in members:
            if given is not None and getattr(member.handler, "broadcaster", None) is given:
                raise ValueError(
                    f"the handler of component {metrics.component!r} records into the "
                    f"broadcaster of one of {member.component!r} registered here already: "
                    "each reads that broadcaster's counters whole, so every occurrence would "
                    "count twice; register one of them (one that replaced the other: unregister "
                    "that one first, the broadcaster's counters go on)"
                )
        # what was kept for it is read from it again, not added twice; so is the broadcaster's
        # part of what was kept for a handler of that broadcaster it replaces
        ours = set(given.stats()) if given is not None else set()
        for handler, (component, share) in list(self._shares.items()):
            if handler is metrics.handler:
                read_again = share
            elif component == metrics.component and getattr(handler, "broadcaster", 0) is given:
                read_again = Counter({name: n for name, n in share.items() if name in ours})
            else:
                continue
            self._shares[handler] = (component, share - read_again)
            retired = {**retired, component: retired[component] - read_again}
        self._state = ((*members, metrics), retired)

    def remove(self, metrics: EventMetrics) -> bool:
        members, retired = self._state
        kept = tuple(member for member in members if member is not metrics)
        if len(kept) == len(members):
            return False
        component, retired = metrics.component, dict(retired)
        if any(member.component == component for member in kept):
            # a counter of a living series never goes down (Prometheus would read a reset):
            # the leaving handler's counts stay in it, its gauges leave
            stats = metrics.handler.stats()
            counts = Counter({name: n for name, n in stats.items() if name not in _GAUGES})
            retired[component] = retired.get(component, Counter()) + counts
            self._shares[metrics.handler] = (component, counts)
        else:  # its series go with it
            retired.pop(component, None)
            for handler, (of, _) in list(self._shares.items()):
                if of == component:
                    del self._shares[handler]
        self._state = (kept, retired)
        return True

    def forget_retired(self) -> None:
        self._state = (self._state[0], {})
        self._shares.clear()

    def describe(self) -> Iterator[Metric]:
        """The families without samples: the registry checks names with them."""
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        """Read every handler's counters now (a scrape), summed per component."""
        accepted, occurrences, pending, events, rejected, repaired, behind = families = _families()
        members, retired = self._state
        summed: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for component, counts in retired.items():
            summed[component].update(counts)
        for member in members:  # handlers of one component are summed
            summed[member.component].update(member.handler.stats())
        for component, values in summed.items():
            accepted.add_metric([component], values.get("accepted", 0))
            for outcome in _diagnostics.OUTCOMES:
                occurrences.add_metric([component, outcome], values.get(outcome, 0))
            pending.add_metric([component], values.get("pending", 0))
            events.add_metric([component], values.get("pending_events", 0))
            for cause in REJECTED_CAUSES:
                rejected.add_metric([component, cause], values.get(cause, 0))
            repaired.add_metric([component], values.get("repaired", 0))
            behind.add_metric([component], values.get("watcher_dropped", 0))
        return iter(families)


def _families() -> tuple[CounterMetricFamily | GaugeMetricFamily, ...]:
    return (
        CounterMetricFamily(
            ACCEPTED, "Occurrences accepted by the event handler.", labels=[_COMPONENT]
        ),
        CounterMetricFamily(
            OCCURRENCES,
            "Occurrences by final outcome: dropped, created, patched, coalesced, failed, "
            "discarded.",
            labels=[_COMPONENT, "outcome"],
        ),
        GaugeMetricFamily(
            PENDING,
            "Occurrences without an outcome yet: queued, in a write not finished, or held back "
            "(by the spam filter, or in an events.k8s.io/v1 series until it is written).",
            labels=[_COMPONENT],
        ),
        GaugeMetricFamily(
            PENDING_EVENTS,
            "Events with a write to the API server waiting or in flight.",
            labels=[_COMPONENT],
        ),
        CounterMetricFamily(
            REJECTED,
            "Records that never became an occurrence: refused (bad input), invalid, after_close.",
            labels=[_COMPONENT, "cause"],
        ),
        CounterMetricFamily(
            REPAIRED,
            "Occurrences accepted after their input was repaired.",
            labels=[_COMPONENT],
        ),
        CounterMetricFamily(
            WATCHER_DROPPED,
            "Events a watcher (structured logging) did not get, being queue_length behind.",
            labels=[_COMPONENT],
        ),
    )


# a registry's one collector, which the registry holds: weak both ways, as the collector's
# EventMetrics hold the registry (a strong value kept every dropped registry and its handlers)
_collectors: weakref.WeakKeyDictionary[registries.CollectorRegistry, weakref.ref[_Collector]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def _collector_of(registry: registries.CollectorRegistry) -> _Collector | None:
    found = _collectors.get(registry)
    return None if found is None else found()


def _after_fork_in_child() -> None:
    # the lock a scrape in the parent may have held; and what the parent's handlers that
    # left had counted: a child's counters start afresh, as its handlers' stats() do
    global _lock
    _lock = threading.Lock()
    for collector in filter(None, (found() for found in _collectors.values())):
        collector.forget_retired()


_process.renew_in_child(sys.modules[__name__])
