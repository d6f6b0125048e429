"""Watching events on the LocalApiServer: the official client's ``Watch``, raw streams, kubectl.

These pin what an operator's test relies on when it waits for an event: the stream of
``ADDED`` / ``MODIFIED`` / ``DELETED`` watch events a real API server sends (synthetic
``ADDED`` for the current state when no resourceVersion is given, changes after a given
one), selectors, ``timeoutSeconds``, ``410 Expired`` for a compacted resourceVersion, Table
rows for kubectl, and a server stop that ends open watches at once.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from k8s_logging_events.testing import LocalApiServer
from k8s_logging_events.testing.apiserver._http import JOIN_TIMEOUT
from tests._api import core_event, failure

MICRO = "2024-01-01T00:00:05.123456Z"


def event(name: str, namespace: str = "default", **fields: Any) -> Any:
    """A core/v1 event body in client-go's recorder style, with no timestamps."""
    return core_event(name, namespace, **{"firstTimestamp": None, "lastTimestamp": None, **fields})


def take(
    stream: Iterator[dict[str, Any]], count: int, w: watch.Watch
) -> list[tuple[str, str, Any]]:
    """The first ``count`` watch events as (type, name, count), then stop the watch."""
    seen = []
    for item in stream:
        obj = item["raw_object"]
        seen.append((item["type"], obj["metadata"]["name"], obj.get("count")))
        if len(seen) == count:
            break
    w.stop()
    return seen


def _raw_watch(server: LocalApiServer, path: str, accept: str = "application/json") -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", path, headers={"Accept": accept})
    return connection, connection.getresponse()


def _lines(response: Any, count: int | None = None) -> list[dict[str, Any]]:
    """The watch events of a stream until it ends, or its first ``count`` (the connection's
    timeout bounds a stream that sends fewer)."""
    if count is None:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]
    lines: list[dict[str, Any]] = []
    while len(lines) < count:
        line = response.readline()
        assert line, f"the stream ended after {lines}"
        if line.strip():
            lines.append(json.loads(line))
    return lines


# -- through the official client ------------------------------------------------------


def test_watch_sends_current_events_then_added_modified_deleted(k8s_apiserver, k8s_core_v1):
    """Without resourceVersion: ADDED for what exists, then each change as it happens."""
    k8s_core_v1.create_namespaced_event("default", event("e0"))
    w = watch.Watch()
    stream = w.stream(k8s_core_v1.list_namespaced_event, "default", timeout_seconds=10)
    first = next(stream)  # the stream is open once the current state has arrived
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "e0")
    k8s_core_v1.create_namespaced_event("default", event("e1"))
    k8s_core_v1.patch_namespaced_event("e1", "default", {"count": 2})
    k8s_core_v1.delete_namespaced_event("e1", "default")
    assert take(stream, 3, w) == [("ADDED", "e1", 1), ("MODIFIED", "e1", 2), ("DELETED", "e1", 2)]


def test_watch_from_a_resource_version_sends_only_later_changes(k8s_apiserver, k8s_core_v1):
    """From a list's resourceVersion: no initial events, each change once, versions rising."""
    k8s_core_v1.create_namespaced_event("default", event("e0"))
    rv = k8s_core_v1.list_namespaced_event("default").metadata.resource_version
    k8s_core_v1.create_namespaced_event("default", event("e1"))
    k8s_core_v1.patch_namespaced_event("e1", "default", {"count": 2, "message": "again"})
    w = watch.Watch()
    items = []
    for item in w.stream(
        k8s_core_v1.list_namespaced_event, "default", resource_version=rv, timeout_seconds=10
    ):
        items.append(item)
        if len(items) == 2:
            w.stop()
    assert [(i["type"], i["object"].count) for i in items] == [("ADDED", 1), ("MODIFIED", 2)]
    versions = [int(i["object"].metadata.resource_version) for i in items]
    assert int(rv) < versions[0] < versions[1]
    assert items[1]["object"].message == "again"


def test_watch_from_resource_version_zero_starts_with_the_current_state(k8s_apiserver, k8s_core_v1):
    """resourceVersion="0" (any): the current events as ADDED, as for no resourceVersion."""
    k8s_core_v1.create_namespaced_event("default", event("e0"))
    k8s_core_v1.create_namespaced_event("default", event("e1"))
    w = watch.Watch()
    stream = w.stream(
        k8s_core_v1.list_namespaced_event, "default", resource_version="0", timeout_seconds=10
    )
    assert take(stream, 2, w) == [("ADDED", "e0", 1), ("ADDED", "e1", 1)]


def test_watch_of_all_namespaces_spans_namespaces(k8s_apiserver, k8s_core_v1):
    """The cluster-wide watch sees every namespace; a namespaced one only its own."""
    k8s_apiserver.create_namespace("shop")
    rv = k8s_core_v1.list_event_for_all_namespaces().metadata.resource_version
    k8s_core_v1.create_namespaced_event("shop", event("e1", "shop"))
    k8s_core_v1.create_namespaced_event("default", event("e2"))
    w = watch.Watch()
    stream = w.stream(k8s_core_v1.list_event_for_all_namespaces, resource_version=rv)
    assert take(stream, 2, w) == [("ADDED", "e1", 1), ("ADDED", "e2", 1)]
    w = watch.Watch()
    stream = w.stream(k8s_core_v1.list_namespaced_event, "default", resource_version=rv)
    assert take(stream, 1, w) == [("ADDED", "e2", 1)]


def test_watch_field_selector_reports_events_leaving_the_selection_as_deleted(
    k8s_apiserver, k8s_core_v1
):
    """fieldSelector filters; a patch that moves an event out of it is a DELETED for the watch."""
    rv = k8s_core_v1.list_namespaced_event("default").metadata.resource_version
    k8s_core_v1.create_namespaced_event("default", event("e1", reason="BackOff"))
    k8s_core_v1.create_namespaced_event("default", event("e2", reason="Pulled"))
    k8s_core_v1.patch_namespaced_event("e1", "default", {"reason": "Pulled"})
    k8s_core_v1.patch_namespaced_event("e2", "default", {"reason": "BackOff"})
    w = watch.Watch()
    stream = w.stream(
        k8s_core_v1.list_namespaced_event,
        "default",
        resource_version=rv,
        field_selector="reason=BackOff",
    )
    seen = [(kind, name) for kind, name, _ in take(stream, 3, w)]
    assert seen == [("ADDED", "e1"), ("DELETED", "e1"), ("ADDED", "e2")]


def test_watch_label_selector_filters_on_labels(k8s_apiserver, k8s_core_v1):
    """labelSelector filters the watch as it does the list."""
    rv = k8s_core_v1.list_namespaced_event("default").metadata.resource_version
    for name, app in (("e1", "web"), ("e2", "db"), ("e3", "web")):
        body = event(name)
        body["metadata"]["labels"] = {"app": app}
        k8s_core_v1.create_namespaced_event("default", body)
    w = watch.Watch()
    stream = w.stream(
        k8s_core_v1.list_namespaced_event, "default", resource_version=rv, label_selector="app=web"
    )
    assert [name for _, name, _ in take(stream, 2, w)] == ["e1", "e3"]


def test_watch_ends_after_timeout_seconds(k8s_apiserver, k8s_core_v1):
    """timeoutSeconds: the server ends the stream cleanly, and the client's loop ends."""
    started = time.monotonic()
    items = list(
        watch.Watch().stream(k8s_core_v1.list_namespaced_event, "default", timeout_seconds=1)
    )
    assert items == []
    assert time.monotonic() - started >= 0.9  # one that never ends meets pytest's timeout


def test_watch_with_timeout_seconds_zero_lasts_as_one_without(k8s_apiserver, k8s_core_v1):
    """timeoutSeconds=0 is no timeout of the client's: a real server then picks its own
    (30 to 60 minutes), so the stream stays open for later changes (before, it ended at once,
    after the current events)."""
    k8s_core_v1.create_namespaced_event("default", event("e0"))
    w = watch.Watch()
    stream = w.stream(
        k8s_core_v1.list_namespaced_event, "default", timeout_seconds=0, _request_timeout=60
    )
    first = next(stream)
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "e0")
    k8s_core_v1.create_namespaced_event("default", event("e1"))
    assert take(stream, 1, w) == [("ADDED", "e1", 1)]


@pytest.fixture(name="descriptors_past_fd_setsize")
def _descriptors_past_fd_setsize() -> Iterator[None]:
    """Every socket opened meanwhile gets a descriptor past select()'s FD_SETSIZE (1024), as
    in a process that holds many files and a raised ``ulimit -n`` (a CI container's)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limit[1] != resource.RLIM_INFINITY and limit[1] < 1200:
        pytest.skip("the hard limit on open files is too low here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(limit[0], 1200), limit[1]))
    # garbage of earlier tests (a client's pooled socket) closed meanwhile would free a low
    # descriptor for the next socket: collected first, and no collection until the end
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    held = [os.open(os.devnull, os.O_RDONLY)]
    try:
        while held[-1] < 1030:  # every descriptor below is taken, however many were open
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, limit)
        if collecting:
            gc.enable()


def test_a_watch_on_a_descriptor_past_fd_setsize_streams_its_changes(descriptors_past_fd_setsize):
    """The server looks at a watching connection (has its client gone?) with poll(), not
    select(), which refuses descriptors past 1024: such a watch ended after the current
    events, without an error, and never sent a change."""
    with LocalApiServer() as server, server.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_event("default", event("e0"))
        w = watch.Watch()
        stream = w.stream(core.list_namespaced_event, "default", _request_timeout=60)
        first = next(stream)
        assert (first["type"], first["object"].metadata.name) == ("ADDED", "e0")
        core.create_namespaced_event("default", event("e1"))
        assert take(stream, 1, w) == [("ADDED", "e1", 1)]


def test_a_hang_on_a_descriptor_past_fd_setsize_still_hangs(descriptors_past_fd_setsize):
    """The "hang" fault waits for the client to give up there too (it was a drop: the client
    saw the connection closed instead of its own read timeout)."""
    with LocalApiServer() as server, server.api_client() as api_client:
        server.inject(action="hang")
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            client.CoreV1Api(api_client).list_namespaced_event("default", _request_timeout=0.2)


@pytest.mark.k8s_apiserver(watch_history=2)
def test_watch_from_a_compacted_resource_version_is_410_expired(k8s_apiserver, k8s_core_v1):
    """Older than the kept history: the client raises ApiException 410 (Expired)."""
    rv = k8s_core_v1.list_namespaced_event("default").metadata.resource_version
    for name in ("e1", "e2", "e3"):
        k8s_core_v1.create_namespaced_event("default", event(name))
    with pytest.raises(ApiException) as error:
        for _ in watch.Watch().stream(
            k8s_core_v1.list_namespaced_event, "default", resource_version=rv, timeout_seconds=5
        ):
            pass
    assert error.value.status == 410
    assert error.value.reason.startswith("Expired: too old resource version: ")


@pytest.mark.k8s_apiserver(watch_history=2)
def test_expired_watch_is_one_error_event_on_a_200_stream(k8s_apiserver, k8s_core_v1):
    """As on a real server: HTTP 200, then a single ERROR watch event with the 410 Status."""
    rv = int(k8s_core_v1.list_namespaced_event("default").metadata.resource_version)
    for name in ("e1", "e2", "e3"):
        k8s_core_v1.create_namespaced_event("default", event(name))
    connection, response = _raw_watch(
        k8s_apiserver, f"/api/v1/namespaces/default/events?watch=1&resourceVersion={rv}"
    )
    try:
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        (line,) = _lines(response)
    finally:
        connection.close()
    assert line == {
        "type": "ERROR",
        "object": failure(410, "Expired", f"too old resource version: {rv} ({rv + 1})"),
    }


def test_events_v1_watch_uses_its_own_field_names(k8s_apiserver, k8s_events_v1):
    """events.k8s.io/v1 streams events.k8s.io/v1 objects; its selectors use its field names."""
    rv = k8s_events_v1.list_namespaced_event("default").metadata.resource_version
    body = {
        "metadata": {"name": "e1"},
        "eventTime": MICRO,
        "reportingController": "example.com/op",
        "reportingInstance": "op-0",
        "action": "Reconcile",
        "reason": "Synced",
        "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
        "note": "synced",
        "type": "Normal",
    }
    k8s_events_v1.create_namespaced_event("default", body)
    w = watch.Watch()
    stream = w.stream(
        k8s_events_v1.list_namespaced_event,
        "default",
        resource_version=rv,
        field_selector="regarding.name=web,reportingController=example.com/op",
    )
    item = next(stream)
    w.stop()
    assert item["type"] == "ADDED"
    assert isinstance(item["object"], client.EventsV1Event)
    assert (item["raw_object"]["apiVersion"], item["object"].note) == ("events.k8s.io/v1", "synced")


def test_events_v1_watch_sees_a_series_patch_as_modified(k8s_apiserver, k8s_events_v1):
    """Through events.k8s.io/v1 a repeat is a series patch: the watch sends ADDED for the
    create, then MODIFIED carrying the series, as for a core/v1 count patch."""
    rv = k8s_events_v1.list_namespaced_event("default").metadata.resource_version
    body = {
        "metadata": {"name": "e1"},
        "eventTime": MICRO,
        "reportingController": "example.com/op",
        "reportingInstance": "op-0",
        "action": "Pull",
        "reason": "BackOff",
        "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
        "type": "Warning",
    }
    k8s_events_v1.create_namespaced_event("default", body)
    series = {"series": {"count": 2, "lastObservedTime": "2024-01-01T00:00:06.000000Z"}}
    k8s_events_v1.patch_namespaced_event("e1", "default", series)
    w = watch.Watch()
    stream = w.stream(k8s_events_v1.list_namespaced_event, "default", resource_version=rv)
    seen = [next(stream), next(stream)]
    w.stop()
    assert [(item["type"], item["raw_object"].get("series")) for item in seen] == [
        ("ADDED", None),
        ("MODIFIED", series["series"]),
    ]


def test_watch_path_of_one_event_follows_only_that_event(k8s_apiserver, k8s_core_v1):
    """/api/v1/watch/namespaces/NS/events/NAME: the changes of that one event."""
    k8s_core_v1.create_namespaced_event("default", event("e1"))
    k8s_core_v1.create_namespaced_event("default", event("e2"))
    connection, response = _raw_watch(k8s_apiserver, "/api/v1/watch/namespaces/default/events/e2")
    try:
        # the answer's headers come before the watch takes its starting point: changes made
        # once they are in may be part of the initial event; once it is in, they are not
        lines = _lines(response, 1)
        k8s_core_v1.patch_namespaced_event("e1", "default", {"count": 2})
        k8s_core_v1.patch_namespaced_event("e2", "default", {"count": 2})
        lines += _lines(response, 1)
    finally:
        connection.close()
    assert [(line["type"], line["object"]["metadata"]["name"]) for line in lines] == [
        ("ADDED", "e2"),
        ("MODIFIED", "e2"),
    ]


def test_watch_as_table_sends_one_row_per_event_with_columns_first(k8s_apiserver, k8s_core_v1):
    """kubectl's Accept: each watch event carries a one-row Table; columns only on the first."""
    k8s_core_v1.create_namespaced_event("default", event("e1"))
    k8s_core_v1.create_namespaced_event("default", event("e2", reason="BackOff"))
    connection, response = _raw_watch(
        k8s_apiserver,
        "/api/v1/namespaces/default/events?watch=true",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    try:
        first, second = _lines(response, 2)
    finally:
        connection.close()
    assert first["object"]["kind"] == "Table"
    assert [c["name"] for c in first["object"]["columnDefinitions"]][:3] == [
        "Last Seen",
        "Type",
        "Reason",
    ]
    assert second["object"]["columnDefinitions"] is None
    assert [len(first["object"]["rows"]), second["object"]["rows"][0]["cells"][2]] == [1, "BackOff"]


def test_send_initial_events_ends_with_the_initial_events_end_bookmark(k8s_apiserver, k8s_core_v1):
    """sendInitialEvents=true with bookmarks: the current state, then the end-of-list bookmark."""
    k8s_core_v1.create_namespaced_event("default", event("e1"))
    rv = k8s_apiserver.resource_version
    connection, response = _raw_watch(
        k8s_apiserver,
        "/api/v1/events?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
        "&resourceVersionMatch=NotOlderThan",
    )
    try:
        added, bookmark = _lines(response, 2)
    finally:
        connection.close()
    assert added["type"] == "ADDED"
    assert bookmark == {
        "type": "BOOKMARK",
        "object": {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "resourceVersion": rv,
                "creationTimestamp": None,
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        },
    }


def test_watch_rejects_a_resource_version_that_is_not_a_number(k8s_apiserver):
    """A resourceVersion that does not parse is refused before the stream starts."""
    connection, response = _raw_watch(k8s_apiserver, "/api/v1/events?watch=1&resourceVersion=x")
    try:
        assert response.status == 422
        assert json.loads(response.read())["reason"] == "Invalid"
    finally:
        connection.close()


def test_a_namespace_watch_streams_namespaces_as_they_change(k8s_apiserver, k8s_core_v1):
    """An operator that watches namespaces can start: ADDED for those that exist, then each
    create, the DELETE into Terminating (MODIFIED) and the finalization (DELETED)."""
    w = watch.Watch()
    stream = w.stream(k8s_core_v1.list_namespace, timeout_seconds=10)
    first = [next(stream) for _ in range(3)]
    assert sorted((item["type"], item["object"].metadata.name) for item in first) == [
        ("ADDED", "default"),
        ("ADDED", "kube-public"),
        ("ADDED", "kube-system"),
    ]
    k8s_core_v1.create_namespace({"metadata": {"name": "shop"}})
    k8s_core_v1.delete_namespace("shop")
    k8s_apiserver.finalize_namespace("shop")
    changes = [next(stream) for _ in range(3)]
    w.stop()
    assert [(c["type"], c["object"].metadata.name, c["object"].status.phase) for c in changes] == [
        ("ADDED", "shop", "Active"),
        ("MODIFIED", "shop", "Terminating"),
        ("DELETED", "shop", "Terminating"),
    ]


def test_a_namespace_watch_by_name_and_from_a_resource_version(k8s_apiserver, k8s_core_v1):
    """/watch/namespaces/NAME follows one namespace; a resourceVersion skips what came
    before; the field selector takes the namespace's fields (metadata.name, status.phase)."""
    rv = k8s_core_v1.list_namespace().metadata.resource_version
    k8s_core_v1.create_namespace({"metadata": {"name": "other"}})
    k8s_core_v1.create_namespace({"metadata": {"name": "shop"}})
    k8s_core_v1.delete_namespace("shop")
    connection, response = _raw_watch(
        k8s_apiserver, f"/api/v1/watch/namespaces/shop?resourceVersion={rv}&timeoutSeconds=1"
    )
    try:
        lines = _lines(response)
    finally:
        connection.close()
    assert [(line["type"], line["object"]["status"]["phase"]) for line in lines] == [
        ("ADDED", "Active"),
        ("MODIFIED", "Terminating"),
    ]
    assert lines[0]["object"]["kind"] == "Namespace"
    connection, response = _raw_watch(
        k8s_apiserver, "/api/v1/namespaces?watch=1&fieldSelector=spec.finalizers%3Dx"
    )
    try:
        assert response.status == 400
        assert "is not a known field selector" in json.loads(response.read())["message"]
    finally:
        connection.close()


def test_stop_ends_an_open_watch_promptly():
    """stop() ends a watch with no timeout at once: the client reads the end of the stream."""
    server = LocalApiServer().start()
    connection, response = _raw_watch(server, "/api/v1/events?watch=true")
    try:
        assert response.status == 200
        started = time.monotonic()
        stopper = threading.Thread(target=server.stop, name="test-stopper")
        stopper.start()
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            response.read()
        stopper.join(30)
        # a watch that ended only with its connection would keep stop() in a join that long
        assert time.monotonic() - started < JOIN_TIMEOUT
    finally:
        connection.close()
        server.stop()
    assert not [
        t for t in threading.enumerate() if t.name.startswith(f"k8s-apiserver-{server.port}")
    ]


def test_a_client_that_leaves_ends_its_watch_thread(k8s_apiserver):
    """A watch whose client closes the connection stops its server thread soon after."""
    connection, response = _raw_watch(k8s_apiserver, "/api/v1/events?watch=true")
    assert response.status == 200
    connection.close()
    response.close()
    prefix = f"k8s-apiserver-{k8s_apiserver.port}-conn"
    deadline = time.monotonic() + 5
    threads = [t for t in threading.enumerate() if t.name.startswith(prefix)]
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()]


# -- kubectl --------------------------------------------------------------------------

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on the PATH")


@needs_kubectl
def test_kubectl_get_events_watch_only_prints_each_change(k8s_apiserver, k8s_core_v1, tmp_path):
    """``kubectl get events --watch-only`` prints a row for a new event and for its new count."""
    assert KUBECTL is not None
    k8s_core_v1.create_namespaced_event("default", event("e0"))
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [KUBECTL, "--server", k8s_apiserver.url, "get", "events", "--watch-only", "-o", "wide"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    killer = threading.Timer(30, process.kill)  # a bound on a kubectl that hangs
    killer.name = "test-kubectl-killer"
    killer.start()
    try:
        # kubectl watches from its list's resourceVersion: wait for that request, not a time
        watching = k8s_apiserver.wait_for_request(lambda r: "watch" in r.query, timeout=20)
        assert watching is not None, "kubectl never started watching"
        assert watching.query["resourceVersion"] == k8s_apiserver.resource_version
        k8s_core_v1.create_namespaced_event("default", event("e1", reason="BackOff"))
        k8s_core_v1.patch_namespaced_event("e1", "default", {"count": 2, "message": "again"})
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
    finally:
        killer.cancel()
        killer.join()
        process.kill()
        process.communicate(timeout=10)
    assert lines[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert lines[1].split()[1:4] == ["Normal", "BackOff", "pod/web"]
    assert lines[1].split()[-2:] == ["1", "e1"]
    assert lines[2].split()[-4:] == ["again", "<unknown>", "2", "e1"]
