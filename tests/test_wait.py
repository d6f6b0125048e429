"""Waiting for events: ``wait_for_event`` on an API server and ``wait_for`` on a capture.

An operator's test provokes a warning and then waits for the event, with a deadline, and
wants a readable account of what is there when it does not come. These tests wait through
the watch of a real local server (no sleeping), for events written by another thread or by
the library's own handler in the background.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import pytest
from kubernetes import client

from k8s_logging_events import KubernetesEventHandler
from k8s_logging_events.testing import events_table, wait_for_event

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}


def event(name: str, reason: str = "BackOff", count: int = 1) -> Any:
    """A core/v1 event about pod web-0."""
    return {
        "metadata": {"name": name},
        "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default"},
        "reason": reason,
        "message": f"{reason} happened",
        "count": count,
        "type": "Warning",
    }


def test_an_event_already_there_is_returned_at_once(k8s_apiserver, k8s_core_v1):
    """What was written before the call counts: no watch is needed."""
    k8s_core_v1.create_namespaced_event("default", event("e1"))
    found = wait_for_event(k8s_apiserver, kind="Pod", name="web-0", reason="BackOff", timeout=5)
    assert (found["metadata"]["name"], found["count"]) == ("e1", 1)
    assert not [r for r in k8s_apiserver.requests if "watch" in r.query]


def test_waits_through_the_watch_until_the_count_is_reached(
    k8s_apiserver, k8s_api_client, k8s_core_v1
):
    """min_count: an event that counts too few is waited on until a patch raises its count."""
    k8s_core_v1.create_namespaced_event("default", event("e1"))

    def patch_once_watched() -> None:
        k8s_apiserver.wait_for_request(lambda r: "watch" in r.query, timeout=10)
        k8s_core_v1.patch_namespaced_event("e1", "default", {"count": 2})
        k8s_core_v1.patch_namespaced_event("e1", "default", {"count": 3})

    writer = threading.Thread(target=patch_once_watched, name="test-writer")
    writer.start()
    try:
        found = wait_for_event(
            k8s_api_client, namespace="default", reason="BackOff", min_count=3, timeout=10
        )
    finally:
        writer.join(10)
    assert found["count"] == 3


def test_the_deadline_fails_with_a_table_of_what_is_there(k8s_apiserver, k8s_core_v1):
    """Nothing matching in time: an AssertionError listing the events present."""
    k8s_core_v1.create_namespaced_event("default", event("e1", reason="Pulled"))
    with pytest.raises(AssertionError) as error:
        k8s_apiserver.wait_for_event(namespace="default", reason="BackOff", timeout=0.2)
    message = str(error.value)
    assert message.startswith(
        "No event with reason='BackOff', count >= 1 after 0.2 s. Events in namespace 'default':"
    )
    assert re.search(r"default\s+pod/web-0\s+Warning\s+Pulled\s+1\s+Pulled happened", message)


def test_events_table_lists_series_counts_and_says_when_empty():
    """The failure table counts a series, and says so when there is nothing."""
    assert events_table([]) == "  (no events)"
    table = events_table(
        [
            {
                "metadata": {"namespace": "shop"},
                "involvedObject": {"kind": "Pod", "name": "db-0"},
                "type": "Normal",
                "reason": "Synced",
                "series": {"count": 7},
                "message": "synced\nagain",
            }
        ]
    )
    assert table.splitlines()[1].split() == [
        "shop",
        "pod/db-0",
        "Normal",
        "Synced",
        "7",
        "synced",
        "again",
    ]


def test_events_written_by_the_handler_are_waited_for(k8s_apiserver, tmp_path):
    """The user's story: log warnings, then wait for the counted event on the server."""
    log = logging.getLogger("tests.wait.operator")
    handler = KubernetesEventHandler(component="operator", sink=k8s_apiserver.url)
    log.addHandler(handler)
    try:
        for _ in range(3):
            log.warning("Back-off pulling image", extra={"involved": POD, "reason": "BackOff"})
        found = k8s_apiserver.wait_for_event(
            kind="Pod", name="web-0", reason="BackOff", min_count=3, timeout=10
        )
    finally:
        log.removeHandler(handler)
        handler.close()
    assert (found["count"], found["source"]["component"]) == (3, "operator")


def test_capture_wait_for_sees_events_logged_from_another_thread(k8s_events):
    """k8s_events.wait_for: events logged by the code's own threads, waited for with a deadline."""
    log = logging.getLogger("tests.wait.worker")

    def work() -> None:
        for _ in range(2):
            log.warning("Disk full", extra={"involved": POD, "reason": "DiskFull"})

    worker = threading.Thread(target=work, name="test-worker")
    worker.start()
    try:
        found = k8s_events.wait_for(
            object_kind="Pod", object_name="web-0", reason="DiskFull", min_count=2, timeout=10
        )
    finally:
        worker.join(10)
    assert found.count == 2


def test_capture_wait_for_fails_with_what_was_captured(k8s_events):
    """The deadline passes: the message names the criteria and shows the captured events."""
    logging.getLogger("tests.wait").warning("Pulled", extra={"involved": POD, "reason": "Pulled"})
    with pytest.raises(AssertionError) as error:
        k8s_events.wait_for(reason="BackOff", timeout=0.2)
    message = str(error.value)
    assert message.startswith("No captured event with reason='BackOff', min_count=1 after 0.2 s.")
    assert "Captured 1 event(s):" in message


def test_the_official_client_types_are_untouched_by_waiting(k8s_apiserver, k8s_core_v1):
    """wait_for_event returns the JSON the server sent: camelCase keys, as a GET gives."""
    k8s_core_v1.create_namespaced_event("default", event("e1"))
    found = k8s_apiserver.wait_for_event(name="web-0", timeout=5)
    assert found["involvedObject"]["kind"] == "Pod"
    assert isinstance(k8s_core_v1, client.CoreV1Api)
