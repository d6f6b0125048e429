"""Testing code that logs events, with the fixtures of the ``k8s_logging_events`` plugin.

The plugin comes with the package (no ``conftest.py`` needed). Run this file with
``.venv/bin/python -m pytest examples/test_with_fixtures.py -p no:cacheprovider`` in the
checkout (its pytest settings, in ``pyproject.toml``, need the ``dev`` extra's
``pytest-timeout``), or with plain ``pytest`` once copied into a project of your own.

- ``k8s_events``: the events the test's logging produced, correlated and counted as in
  production but kept in memory, with a fake clock: nothing waits, nothing is sent.
- ``k8s_apiserver`` (with ``k8s_core_v1`` ...): a real HTTP Events API server on 127.0.0.1
  for end-to-end tests of the handler and its sink, with fault injection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from k8s_logging_events import EventLoggerAdapter, KubernetesEventHandler
from k8s_logging_events.testing import CapturedEvents, LocalApiServer

log = logging.getLogger("shop.controller")


def pod(name: str, namespace: str = "default") -> dict[str, Any]:
    """A pod as a manifest dict."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}}


def reconcile(obj: dict[str, Any], failures: int) -> None:
    """The code under test: report failed pulls, then readiness, as events on ``obj``."""
    events = EventLoggerAdapter(log, obj)
    for _ in range(failures):
        events.warning('Back-off pulling image "shop:2.1"', extra={"reason": "BackOff"})
    events.info("Pod is ready", extra={"reason": "Ready"})


# --- k8s_events: assertions on what was logged -----------------------------------------------


def test_repeated_warnings_are_one_counted_event(k8s_events: CapturedEvents) -> None:
    """Three identical warnings are one Warning event with count 3."""
    reconcile(pod("web-0"), failures=3)

    event = k8s_events.assert_has(reason="BackOff", type="Warning", count=3)
    assert event.involved_object.name == "web-0"
    k8s_events.assert_has(reason="Ready", type="Normal", count=1)


def test_similar_messages_are_combined(k8s_events: CapturedEvents) -> None:
    """From the 10th distinct message with one reason on, messages are combined."""
    events = EventLoggerAdapter(log, pod("web-0"), reason="Unhealthy")
    for lag in range(12):
        events.warning("Readiness probe failed: lag %ds", lag)

    assert len(k8s_events.find(reason="Unhealthy")) == 10
    k8s_events.assert_has(message_contains="(combined from similar events)", count=3)


def test_the_spam_filter_keeps_exact_counts(k8s_events: CapturedEvents) -> None:
    """A burst beyond the spam filter's 25 still counts every occurrence once flushed."""
    for _ in range(100):
        log.warning("Disk full", extra={"involved": pod("db-0"), "reason": "DiskFull"})

    k8s_events.assert_has(reason="DiskFull", count=100)


def test_records_without_involved_make_no_event(k8s_events: CapturedEvents) -> None:
    """Only records with ``involved`` become events."""
    log.warning("Nothing to do with any object")

    k8s_events.assert_none()


# --- k8s_apiserver: end to end over HTTP -------------------------------------------------------


@pytest.fixture
def handler(k8s_apiserver: LocalApiServer) -> Iterator[KubernetesEventHandler]:
    """A handler on ``shop.controller`` writing to the local server, closed after the test."""
    event_handler = KubernetesEventHandler(
        component="shop-controller", sink=k8s_apiserver.url, sleep_duration=0
    )
    log.addHandler(event_handler)
    yield event_handler
    log.removeHandler(event_handler)
    event_handler.close()


@pytest.mark.k8s_apiserver(namespaces=["shop"])
def test_events_reach_the_api_server(
    handler: KubernetesEventHandler, k8s_core_v1: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The events are on the server, with their counts; caplog still sees every record."""
    caplog.set_level(logging.INFO, logger="shop.controller")

    reconcile(pod("web-0", namespace="shop"), failures=2)
    handler.flush()

    events = k8s_core_v1.list_namespaced_event("shop").items
    assert {(event.reason, event.count) for event in events} == {("BackOff", 2), ("Ready", 1)}
    assert len(caplog.records) == 3


def test_a_failed_write_is_retried(
    handler: KubernetesEventHandler, k8s_apiserver: LocalApiServer
) -> None:
    """The server answers the first create with 503; the writer tries again."""
    k8s_apiserver.inject(method="POST", path=r"/events$", times=1, status=503)

    log.warning("Disk full", extra={"involved": pod("db-0"), "reason": "DiskFull"})
    handler.flush()

    assert [r.status for r in k8s_apiserver.requests if r.method == "POST"] == [503, 201]
    assert [e["reason"] for e in k8s_apiserver.events("default")] == ["DiskFull"]
