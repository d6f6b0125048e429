"""Prometheus metrics of the handler's counters (the ``metrics`` extra: ``prometheus_client``).

This sits beside the front door, outside the pipeline: nothing on the logging path knows it
exists. :func:`register` puts a collector into a ``prometheus_client`` registry; at every
scrape it reads :meth:`KubernetesEventHandler.stats()
<k8s_logging_events.handler.KubernetesEventHandler.stats>` and turns the counters into
metric families, so logging costs nothing more for being measured::

    from prometheus_client import start_http_server
    from k8s_logging_events import metrics

    metrics.register(handler)  # the default registry
    start_http_server(9100)

What is exposed, one series per ``component`` (the handler's ``source.component``):

=================================================  ======  =================================
metric                                             type    from ``stats()``
=================================================  ======  =================================
``k8s_logging_events_accepted_total``              counter ``accepted``
``k8s_logging_events_occurrences_total{outcome}``  counter ``dropped``, ``created``,
                                                           ``patched``, ``coalesced``,
                                                           ``failed``, ``discarded``
``k8s_logging_events_pending``                     gauge   ``pending``
``k8s_logging_events_pending_events``              gauge   ``pending_events``
``k8s_logging_events_rejected_total{cause}``       counter ``refused``, ``invalid``,
                                                           ``after_close``
``k8s_logging_events_repaired_total``              counter ``repaired``
=================================================  ======  =================================

``occurrences_total`` summed over ``outcome``, plus ``pending``, is ``accepted_total``
(``pending`` counts occurrences without an outcome yet); ``pending_events`` counts the
events with a write waiting or in flight (what memory holds, bounded by ``queue_length``).
``rejected_total`` counts records that never became an occurrence (bad input, calls refused
by the recorder, records after ``close()``), so it is apart from both; ``repaired_total``
counts occurrences that were accepted after a repair, a part of ``accepted_total``.
Handlers with the same ``component`` in one registry are summed.

Importing this module without ``prometheus_client`` raises :class:`ImportError` saying how
to install it; no other module of the package imports it.
"""

from __future__ import annotations

import sys
import threading
import weakref
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
    """One handler's place in a registry's metrics; :meth:`unregister` takes it out.

    Made by :func:`register`, not by hand.
    """

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
        """Stop exposing the handler's counters; idempotent.

        When it was the registry's last handler, the collector leaves the registry, so the
        metric names are free for another collector.
        """
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

    Several handlers may share a registry: one collector serves them all, with the
    handler's ``component`` as a label (handlers with the same component are summed). The
    counters are read when the registry is scraped, never on the logging path.

    Raises:
        ValueError: ``handler`` is already registered in ``registry``, or another
            collector there already exposes these metric names.
    """
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
        for component, values in _per_component(self._members).items():
            accepted.add_metric([component], values.get("accepted", 0))
            for outcome in _diagnostics.OUTCOMES:
                occurrences.add_metric([component, outcome], values.get(outcome, 0))
            pending.add_metric([component], values.get("pending", 0))
            events.add_metric([component], values.get("pending_events", 0))
            for cause in REJECTED_CAUSES:
                rejected.add_metric([component, cause], values.get(cause, 0))
            repaired.add_metric([component], values.get("repaired", 0))
        return iter(families)


def _families() -> tuple[
    CounterMetricFamily,
    CounterMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
]:
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


def _per_component(members: tuple[EventMetrics, ...]) -> dict[str, dict[str, int]]:
    summed: dict[str, dict[str, int]] = {}
    for member in members:
        totals = summed.setdefault(member.component, {})
        for name, value in member.handler.stats().items():
            totals[name] = totals.get(name, 0) + value
    return summed


# a registry's one collector; weak keys: a registry dropped by its user takes it along
_collectors: weakref.WeakKeyDictionary[registries.CollectorRegistry, _Collector] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """In a child after ``os.fork()`` (see ``_process``): the lock a scrape may have held."""
    global _lock
    _lock = threading.Lock()


_process.renew_in_child(sys.modules[__name__])
