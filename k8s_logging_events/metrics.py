"""Prometheus metrics of the handler's counters (the ``metrics`` extra: ``prometheus_client``).

Beside the front door, outside the pipeline: nothing on the logging path knows it exists.
:func:`register` puts a collector into a registry that reads ``handler.stats()`` at every
scrape, so logging costs nothing more for being measured. The metrics (one series per
``component``) and how they relate are in docs/metrics.md. Without ``prometheus_client``,
importing this module raises :class:`ImportError` saying how to install it.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from typing import Protocol

try:
    import prometheus_client
    from prometheus_client import registry as registries
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.metrics_core import Metric
except ImportError as error:  # pragma: no cover - tested in a subprocess without it
    raise ImportError(
        "k8s_logging_events.metrics needs prometheus_client: "
        "pip install k8s-logging-events[metrics]",
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

_COMPONENT = "component"


class Measured(Protocol):
    """What :func:`register` reads: a :class:`~.handler.KubernetesEventHandler`."""

    @property
    def source(self) -> models.EventSource:
        """Who the events come from; its ``component`` labels the series."""

    def stats(self) -> Mapping[str, int]:
        """The counters, read at every scrape."""


class EventMetrics:
    """One handler's place in a registry, made by :func:`register`; :meth:`unregister` ends it."""

    def __init__(self, handler: Measured, registry: registries.CollectorRegistry) -> None:
        self._handler = handler
        self._registry = registry

    @property
    def handler(self) -> Measured:
        """The handler whose counters are exposed."""
        return self._handler

    @property
    def registry(self) -> registries.CollectorRegistry:
        """The registry the metrics are in."""
        return self._registry

    @property
    def component(self) -> str:
        """The ``component`` label of the handler's series."""
        return self._handler.source.component

    def unregister(self) -> None:
        """Stop exposing the handler's counters; idempotent. After the registry's last
        handler the collector leaves it, freeing the metric names."""
        with _lock:
            collector = _collectors.get(self._registry)
            if collector is None or not collector.remove(self):
                return
            if collector.empty:
                del _collectors[self._registry]
                self._registry.unregister(collector)


def register(
    handler: Measured, *, registry: registries.CollectorRegistry | None = None
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
    metrics = EventMetrics(handler, target)
    with _lock:
        collector = _collectors.get(target)
        if collector is None:
            collector = _Collector()
            target.register(collector)  # raises on a clash with another collector's names
            _collectors[target] = collector
        collector.add(metrics)
    return metrics


class _Collector:
    """The one collector of a registry: reads every registered handler's ``stats()``."""

    def __init__(self) -> None:
        self._members: tuple[EventMetrics, ...] = ()

    @property
    def empty(self) -> bool:
        return not self._members

    def add(self, metrics: EventMetrics) -> None:
        if any(member.handler is metrics.handler for member in self._members):
            raise ValueError(
                f"{metrics.handler!r} is already registered in this registry: "
                "call unregister() on the EventMetrics that register() returned first"
            )
        self._members = (*self._members, metrics)

    def remove(self, metrics: EventMetrics) -> bool:
        kept = tuple(member for member in self._members if member is not metrics)
        removed = len(kept) != len(self._members)
        self._members = kept
        return removed

    def describe(self) -> Iterator[Metric]:
        """The families without samples: the registry checks names with them."""
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        """Read every handler's counters now (a scrape), summed per component."""
        accepted, occurrences, pending, events, rejected, repaired = families = _families()
        summed: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for member in self._members:  # handlers of one component are summed
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
            "Occurrences without an outcome yet: queued, or in a write not finished.",
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
    )


# a registry's one collector; weak keys: a registry dropped by its user takes it along
_collectors: weakref.WeakKeyDictionary[registries.CollectorRegistry, _Collector] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def _after_fork_in_child() -> None:  # the lock a scrape in the parent may have held
    global _lock
    _lock = threading.Lock()


_process.renew_in_child(sys.modules[__name__])
