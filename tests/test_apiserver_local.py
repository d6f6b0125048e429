"""What only LocalApiServer can do: faults, the request log, namespace helpers, kubectl, CLI.

These run against the local server alone (a real cluster has no fault injection), through
the official client and the pytest plugin's fixtures, plus the real ``kubectl`` binary when
it is on the PATH and the ``python -m k8s_logging_events apiserver`` command.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_logging_events import _cli
from k8s_logging_events.testing import FakeClock, LocalApiServer
from tests._api import T0, apiserver_command, core_event, failure, status
from tests._children import run_python


def names(server: LocalApiServer, namespace: str | None = "default") -> list[str]:
    """The names of the stored events."""
    return [stored["metadata"]["name"] for stored in server.events(namespace)]


# -- the plugin and the client --------------------------------------------------------


def test_fixtures_give_a_running_server_and_clients(k8s_apiserver, k8s_api_client, k8s_core_v1):
    """k8s_apiserver runs; k8s_api_client and k8s_core_v1 talk to it."""
    assert k8s_apiserver.running
    assert k8s_api_client.configuration.host == k8s_apiserver.url
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert names(k8s_apiserver) == ["e1"]


@pytest.mark.k8s_apiserver(namespaces=["shop"], auto_create_namespaces=True)
def test_marker_passes_options_to_the_server(k8s_apiserver, k8s_events_v1):
    """The k8s_apiserver marker's keyword arguments reach the LocalApiServer constructor."""
    assert k8s_apiserver.auto_create_namespaces is True
    assert "shop" in [ns["metadata"]["name"] for ns in k8s_apiserver.namespaces()]
    assert k8s_events_v1.list_namespaced_event("shop").items == []


def test_api_client_never_retries_and_leaves_the_default_configuration_alone(k8s_apiserver):
    """api_client(): a private Configuration(host=url), retries=False; the default untouched."""
    default_host = client.Configuration.get_default_copy().host
    with k8s_apiserver.api_client() as api_client:
        assert api_client.configuration.host == k8s_apiserver.url
        assert api_client.configuration.retries is False
        assert api_client.configuration is not client.Configuration.get_default_copy()
    assert client.Configuration.get_default_copy().host == default_host


# -- faults ---------------------------------------------------------------------------


def test_injected_429_has_retry_after_header_and_details(k8s_apiserver, k8s_core_v1):
    """429: reason TooManyRequests, details.retryAfterSeconds and a Retry-After header."""
    k8s_apiserver.inject("POST", r"/events$", status=429, retry_after=3)
    with pytest.raises(ApiException) as error:
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert error.value.status == 429
    assert error.value.headers is not None
    assert error.value.headers["Retry-After"] == "3"
    assert status(error) == failure(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": 3},
    )


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (500, "InternalError", "Internal error occurred: boom"),
        (503, "ServiceUnavailable", "boom"),
        (504, "Timeout", "Timeout: boom"),
    ],
)
def test_injected_server_errors_have_their_reasons(
    k8s_apiserver, k8s_core_v1, code, reason, message
):
    """500/503/504 come with the reason and message shape the real server uses."""
    k8s_apiserver.inject("POST", status=code, message="boom")
    with pytest.raises(ApiException) as error:
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert error.value.status == code
    assert (status(error)["reason"], status(error)["message"]) == (reason, message)


def test_fault_counts_only_requests_made_after_it_is_armed(k8s_apiserver, k8s_core_v1):
    """times=1 fails the next matching request, however many came before."""
    for index in range(3):
        k8s_core_v1.create_namespaced_event("default", core_event(f"before{index}"))
    fault = k8s_apiserver.inject("POST", status=503)
    with pytest.raises(ApiException):
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert (fault.fired, fault.active, fault.remaining) == (1, False, 0)


def test_fault_matches_only_its_method_and_path(k8s_apiserver, k8s_core_v1):
    """A PATCH fault on one event leaves GETs, POSTs and other events alone."""
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    k8s_core_v1.create_namespaced_event("default", core_event("e2"))
    fault = k8s_apiserver.inject("PATCH", r"/events/e1$", status=500, times=None)
    k8s_core_v1.read_namespaced_event("e1", "default")
    k8s_core_v1.patch_namespaced_event("e2", "default", {"count": 2})
    with pytest.raises(ApiException):
        k8s_core_v1.patch_namespaced_event("e1", "default", {"count": 2})
    assert fault.fired == 1
    assert fault.active


def test_fault_fires_times_times_then_disarms(k8s_apiserver, k8s_core_v1):
    """times=2: two failures, then the request goes through."""
    k8s_apiserver.inject("POST", status=500, times=2)
    for _ in range(2):
        with pytest.raises(ApiException):
            k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert k8s_apiserver.faults == []


def test_rejected_write_is_not_stored(k8s_apiserver, k8s_core_v1):
    """By default a fault answers before processing: the event is not created."""
    k8s_apiserver.inject("POST", status=503)
    with pytest.raises(ApiException):
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert names(k8s_apiserver) == []


def test_committed_write_is_stored_before_the_fault_answers(k8s_apiserver, k8s_core_v1):
    """commit=True: the write happens, the answer is lost; a retry then meets AlreadyExists."""
    k8s_apiserver.inject("POST", status=503, commit=True)
    with pytest.raises(ApiException):
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert names(k8s_apiserver) == ["e1"]
    with pytest.raises(ApiException) as error:
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert status(error)["reason"] == "AlreadyExists"


def test_dropped_connection_is_a_protocol_error_without_answer(k8s_apiserver, k8s_core_v1):
    """drop: the connection closes with no response; the client sees RemoteDisconnected."""
    k8s_apiserver.inject("POST", action="drop")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    record = k8s_apiserver.requests[-1]
    assert (record.method, record.status, record.fault) == ("POST", None, "drop")
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))


def test_hang_stalls_until_the_client_times_out(k8s_apiserver, k8s_core_v1):
    """hang: no answer at all; a client timeout ends it, and nothing is stored."""
    k8s_apiserver.inject("POST", action="hang")
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        k8s_core_v1.create_namespaced_event("default", core_event("e1"), _request_timeout=0.2)
    assert names(k8s_apiserver) == []


def test_delay_answers_late_but_normally(k8s_apiserver, k8s_core_v1):
    """delay: the request is served, ``delay`` seconds late."""
    k8s_apiserver.inject("GET", action="delay", delay=0.15)
    started = time.monotonic()
    assert k8s_core_v1.list_namespaced_event("default").items == []
    assert time.monotonic() - started >= 0.15


def test_a_delay_longer_than_a_thread_can_wait_stalls_rather_than_drops(k8s_apiserver, k8s_core_v1):
    """delay beyond what a thread can wait (``apiserver --delay 1e10``): the request waits
    (here until the client times out), rather than having its connection dropped at once."""
    k8s_apiserver.inject("GET", action="delay", delay=1e10)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        k8s_core_v1.list_namespaced_event("default", _request_timeout=0.2)


def test_refused_connections_fail_to_connect_until_accepted_again(k8s_apiserver, k8s_core_v1):
    """refuse_connections(): even pooled clients get ECONNREFUSED until accept_connections()."""
    k8s_core_v1.list_namespaced_event("default")
    k8s_apiserver.refuse_connections()
    with pytest.raises(urllib3.exceptions.NewConnectionError) as error:
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert "Connection refused" in str(error.value)
    k8s_apiserver.accept_connections()
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert names(k8s_apiserver) == ["e1"]


def test_refuse_fault_drops_the_request_and_refuses_the_retries(k8s_apiserver, k8s_core_v1):
    """action="refuse": this request is dropped and new connections are refused."""
    k8s_apiserver.inject("POST", action="refuse")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    with pytest.raises(urllib3.exceptions.NewConnectionError):
        k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    with k8s_apiserver.refusing(), pytest.raises(urllib3.exceptions.NewConnectionError):
        k8s_core_v1.list_namespaced_event("default")
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))


def test_refusal_for_a_duration_reopens_by_itself(k8s_apiserver, k8s_core_v1):
    """refuse_connections(duration): the port opens again on its own."""
    k8s_apiserver.refuse_connections(duration=0.05)
    assert k8s_apiserver.wait_for_listening(timeout=5)
    assert k8s_core_v1.list_namespaced_event("default").items == []


def test_probability_mode_is_reproducible_with_a_seed():
    """probability with a seed fails the same requests on every run."""

    def run() -> list[int | None]:
        with LocalApiServer() as server, server.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            server.inject("GET", status=500, times=None, probability=0.5, seed=7)
            for _ in range(20):
                with contextlib.suppress(ApiException):
                    core.list_namespaced_event("default")
            return [record.status for record in server.requests]

    first = run()
    assert first == run()
    assert 0 < first.count(500) < 20


def test_cancel_and_clear_faults_disarm_them(k8s_apiserver, k8s_core_v1):
    """Fault.cancel() and clear_faults() take faults out before they fire."""
    fault = k8s_apiserver.inject("GET", status=500, times=None)
    fault.cancel()
    k8s_apiserver.inject("POST", status=500)
    k8s_apiserver.clear_faults()
    k8s_core_v1.list_namespaced_event("default")
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    assert (fault.active, k8s_apiserver.faults) == (False, [])


def test_inject_rejects_nonsense():
    """An unknown action, a 2xx status or times=0 is a ValueError."""
    server = LocalApiServer()
    with pytest.raises(ValueError, match="unknown fault action"):
        server.inject(action="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="4xx or 5xx"):
        server.inject(status=200)
    with pytest.raises(ValueError, match="times"):
        server.inject(times=0)


@pytest.mark.parametrize("option", ["delay", "retry_after", "duration"])
@pytest.mark.parametrize("seconds", [-1.0, math.inf, math.nan])
def test_inject_refuses_seconds_that_are_no_time_to_wait(option: str, seconds: float) -> None:
    """Seen before: retry_after=nan or inf armed a fault whose 429 or 503 never came: the
    server's thread failed on the header and the client met a dropped connection (which a
    retry test takes for another fault); a negative Retry-After was sent as 0."""
    server = LocalApiServer()
    given: dict[str, Any] = {option: seconds}
    with pytest.raises(ValueError, match=option):
        server.inject(status=429, **given)


# -- request log ----------------------------------------------------------------------


def test_request_log_records_what_was_asked_and_answered(k8s_apiserver, k8s_core_v1):
    """Each request: method, path, query, content type, parsed body, status and reason."""
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    k8s_core_v1.patch_namespaced_event("e1", "default", {"count": 2})
    with pytest.raises(ApiException):
        k8s_core_v1.read_namespaced_event("nope", "default")
    k8s_core_v1.list_namespaced_event("default", field_selector="reason=Started")
    create, patch, read, listing = k8s_apiserver.requests
    assert (create.method, create.path, create.status) == (
        "POST",
        "/api/v1/namespaces/default/events",
        201,
    )
    assert create.body["metadata"]["name"] == "e1"
    assert (patch.content_type, patch.body, patch.status) == (
        "application/strategic-merge-patch+json",
        {"count": 2},
        200,
    )
    assert (read.status, read.reason) == (404, "NotFound")
    assert listing.query == {"fieldSelector": "reason=Started"}
    assert listing.body is None


def test_request_log_is_bounded_and_clearable():
    """max_requests keeps the latest requests only; clear_requests() empties the log."""
    with LocalApiServer(max_requests=2) as server, server.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        for name in ("e1", "e2", "e3"):
            core.create_namespaced_event("default", core_event(name))
        assert [record.body["metadata"]["name"] for record in server.requests] == ["e2", "e3"]
        server.clear_requests()
        assert server.requests == []


# -- stored objects -------------------------------------------------------------------


def test_events_returns_core_v1_dicts_and_events_v1_views(k8s_apiserver, k8s_core_v1):
    """events() gives the objects as GET would; events_v1() the events.k8s.io/v1 form."""
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    (stored,) = k8s_apiserver.events("default")
    assert (stored["kind"], stored["apiVersion"], stored["message"]) == (
        "Event",
        "v1",
        "Started container web",
    )
    (view,) = k8s_apiserver.events_v1()
    assert (view["apiVersion"], view["note"], view["regarding"]["name"]) == (
        "events.k8s.io/v1",
        "Started container web",
        "web",
    )
    assert k8s_apiserver.events("other") == []


def test_reset_forgets_events_and_namespaces_but_not_the_resource_version(
    k8s_apiserver, k8s_core_v1
):
    """reset(): back to the initial namespaces, no events; resourceVersions keep growing."""
    k8s_apiserver.create_namespace("shop")
    k8s_core_v1.create_namespaced_event("shop", core_event("e1", "shop"))
    before = int(k8s_apiserver.resource_version)
    k8s_apiserver.reset()
    assert k8s_apiserver.events() == []
    assert [ns["metadata"]["name"] for ns in k8s_apiserver.namespaces()] == [
        "default",
        "kube-public",
        "kube-system",
    ]
    assert int(k8s_apiserver.resource_version) > before


# -- namespaces -----------------------------------------------------------------------


def test_built_in_namespaces_cannot_be_deleted(k8s_apiserver, k8s_core_v1):
    """default, kube-system and kube-public are immortal: 403 through the API, ValueError here."""
    with pytest.raises(ApiException) as error:
        k8s_core_v1.delete_namespace("default")
    assert error.value.status == 403
    assert status(error)["message"] == (
        'namespaces "default" is forbidden: this namespace may not be deleted'
    )
    with pytest.raises(ValueError, match="may not be deleted"):
        k8s_apiserver.terminate_namespace("kube-system")
    with pytest.raises(KeyError):
        k8s_apiserver.terminate_namespace("nope")


def test_finalize_namespace_removes_it_and_its_events(k8s_apiserver, k8s_core_v1):
    """finalize_namespace() does the namespace controller's job: the namespace and events go."""
    k8s_apiserver.create_namespace("ns1")
    k8s_core_v1.create_namespaced_event("ns1", core_event("e1", "ns1"))
    k8s_core_v1.delete_namespace("ns1")
    k8s_apiserver.finalize_namespace("ns1")
    assert k8s_apiserver.events() == []
    with pytest.raises(ApiException) as error:
        k8s_core_v1.read_namespace("ns1")
    assert error.value.status == 404


def test_auto_create_namespaces_creates_a_namespace_on_first_write():
    """auto_create_namespaces=True: a write into an unknown namespace creates it."""
    with LocalApiServer(auto_create_namespaces=True) as server, server.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_event("shop", core_event("e1", "shop"))
        namespace = core.read_namespace("shop")
        assert namespace.status is not None
        assert namespace.status.phase == "Active"
        assert names(server, "shop") == ["e1"]


def test_constructor_rejects_invalid_namespace_names():
    """namespaces= must hold valid DNS-1123 labels."""
    with pytest.raises(ValueError, match="not a valid namespace name"):
        LocalApiServer(namespaces=["Not_Valid"])


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"namespaces": "shop"}, ["namespaces", "list", "['shop']"]),
        ({"namespaces": [5]}, ["namespace", "5"]),
        ({"max_events": 0}, ["max_events", ">= 1", "0"]),
        ({"max_events": -1}, ["max_events", "-1"]),
        ({"max_events": "x"}, ["max_events", "'x'"]),
        ({"max_events": 1.5}, ["max_events", "1.5"]),
        ({"watch_history": "x"}, ["watch_history", "'x'"]),
        ({"watch_history": True}, ["watch_history", "True"]),
    ],
)
def test_a_mistaken_store_option_is_refused_naming_it(options: dict[str, Any], words: list[str]):
    """Seen before: namespaces="shop" (a pytest marker's easy slip) created the namespaces s,
    h, o and p, so writes into shop met 404; max_events of -1 or "x" made the server drop
    every write's connection without an answer. Each is a ValueError at construction."""
    with pytest.raises(ValueError, match=r".") as error:
        LocalApiServer(**options)
    message = str(error.value)
    assert all(word in message for word in words), message


def test_dry_run_validates_without_storing(k8s_apiserver, k8s_core_v1):
    """dryRun=All answers as a create would, but nothing is stored and no version is used."""
    before = k8s_apiserver.resource_version
    created = k8s_core_v1.create_namespaced_event("default", core_event("e1"), dry_run="All")
    assert created.metadata.uid
    assert created.metadata.resource_version is None
    assert (k8s_apiserver.events(), k8s_apiserver.resource_version) == ([], before)


# -- store limits ---------------------------------------------------------------------


def test_event_ttl_expires_events_after_their_last_write():
    """event_ttl: an event disappears ttl seconds after its last write (a patch renews it)."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock, event_ttl=3600) as server, server.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_event("default", core_event("e1"))
        core.create_namespaced_event("default", core_event("e2"))
        clock.step(1800)
        core.patch_namespaced_event("e2", "default", {"count": 2})
        clock.step(1800)
        assert names(server) == ["e2"]
        with pytest.raises(ApiException) as error:
            core.patch_namespaced_event("e1", "default", {"count": 2})
        assert error.value.status == 404


def test_a_step_of_the_wall_clock_neither_expires_events_nor_keeps_them():
    """An event's time to live is a duration, as an etcd lease's is: a step of the wall clock
    (NTP, a VM resumed from a snapshot) does not move it; time passing does (before, a step of
    two hours forward emptied the server at once, and one back kept events two hours more)."""
    clock = FakeClock(T0)
    with LocalApiServer(clock=clock, event_ttl=3600) as server, server.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_event("default", core_event("e1"))
        clock.step_wall(7200)
        assert names(server) == ["e1"]
        clock.step_wall(-7200 - 7200)
        core.create_namespaced_event("default", core_event("e2"))
        clock.step(3601)
        assert names(server) == []


@pytest.mark.parametrize("ttl", [0, -5, float("nan"), float("inf"), "60", True])
def test_an_event_ttl_that_is_no_positive_number_of_seconds_is_refused(ttl: Any) -> None:
    """event_ttl 0 or below made every event vanish at once, silently, and NaN failed on
    the first write: each is a ValueError naming the option when the server is made."""
    with pytest.raises(ValueError, match="event_ttl"):
        LocalApiServer(event_ttl=ttl)


def test_creation_timestamp_comes_from_the_clock():
    """creationTimestamp is the injected clock's time, in whole seconds."""
    clock = FakeClock(datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC))
    with LocalApiServer(clock=clock) as server, server.api_client() as api_client:
        created = client.CoreV1Api(api_client).create_namespaced_event("default", core_event("e1"))
    assert created.metadata.creation_timestamp == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_max_events_forgets_the_least_recently_written():
    """max_events bounds memory: the event written longest ago goes first."""
    with LocalApiServer(max_events=2) as server, server.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_event("default", core_event("e1"))
        core.create_namespaced_event("default", core_event("e2"))
        core.patch_namespaced_event("e1", "default", {"count": 2})
        core.create_namespaced_event("default", core_event("e3"))
        assert names(server) == ["e1", "e3"]


def test_generate_name_collisions_end_in_a_conflict_with_retry_after():
    """When every generated name is taken the server gives up: 409 AlreadyExists, retry in 1 s."""
    server = LocalApiServer(name_generator=lambda prefix: prefix + "aaaaa")
    with server, server.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        body = core_event("")
        body["metadata"] = {"generateName": "web."}
        assert core.create_namespaced_event("default", body).metadata.name == "web.aaaaa"
        with pytest.raises(ApiException) as error:
            core.create_namespaced_event("default", body)
    assert error.value.status == 409
    assert status(error)["message"] == (
        'events "web.aaaaa" already exists, the server was not able to generate a unique name '
        "for the object"
    )
    assert status(error)["details"]["retryAfterSeconds"] == 1


# -- HTTP surface ---------------------------------------------------------------------


def _get(server: LocalApiServer, path: str, accept: str = "application/json") -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path, headers={"Accept": accept})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_unknown_paths_are_a_not_found_status(k8s_apiserver):
    """Paths the server does not serve (e.g. /openapi/v2) answer the real 404 Status."""
    code, body = _get(k8s_apiserver, "/openapi/v2")
    assert code == 404
    assert body["message"] == "the server could not find the requested resource"


def test_watch_of_a_single_named_get_is_a_plain_get(k8s_apiserver):
    """watch=true on a namespace's path reads it, as on a real server (only lists watch)."""
    code, body = _get(k8s_apiserver, "/api/v1/namespaces/default?watch=true")
    assert code == 200
    assert body["kind"] == "Namespace"


def test_table_output_matches_kubectls_columns(k8s_apiserver, k8s_core_v1):
    """Accept as=Table gives meta.k8s.io Table rows: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE."""
    k8s_core_v1.create_namespaced_event("default", core_event("e1", count=4))
    code, table = _get(
        k8s_apiserver, "/api/v1/events", "application/json;as=Table;v=v1;g=meta.k8s.io"
    )
    assert code == 200
    assert table["kind"] == "Table"
    visible = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert visible == ["Last Seen", "Type", "Reason", "Object", "Message"]
    (row,) = table["rows"]
    assert row["cells"][1:4] == ["Normal", "Started", "pod/web"]
    assert row["cells"][8] == 4
    assert row["object"]["metadata"]["namespace"] == "default"


# -- lifecycle ------------------------------------------------------------------------


def test_stop_joins_every_thread_and_is_idempotent():
    """After stop() no k8s-apiserver thread is left, even with a connection open; twice is fine."""
    server = LocalApiServer().start()
    api_client = server.api_client()
    client.CoreV1Api(api_client).list_namespaced_event("default")
    prefix = f"k8s-apiserver-{server.port}"
    assert any(t.name.startswith(prefix) for t in threading.enumerate())
    server.stop()
    server.stop()
    api_client.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith(prefix)]
    assert not server.running


def test_start_twice_and_url_before_start_are_errors():
    """start() is once only; url needs a started server."""
    server = LocalApiServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    with server, pytest.raises(RuntimeError, match="twice"):
        server.start()


# -- kubectl and the command line -----------------------------------------------------

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on the PATH")


def _kubectl(server: LocalApiServer, tmp_path: Any, *args: str) -> str:
    assert KUBECTL is not None
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [KUBECTL, "--server", server.url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_kubectl
def test_kubectl_get_events_json_lists_what_was_written(k8s_apiserver, k8s_core_v1, tmp_path):
    """``kubectl get events -A -o json`` lists the events of every namespace."""
    k8s_apiserver.create_namespace("shop")
    k8s_core_v1.create_namespaced_event("default", core_event("e1"))
    k8s_core_v1.create_namespaced_event("shop", core_event("e2", "shop", reason="BackOff"))
    listed = json.loads(_kubectl(k8s_apiserver, tmp_path, "get", "events", "-A", "-o", "json"))
    assert [(item["metadata"]["namespace"], item["reason"]) for item in listed["items"]] == [
        ("default", "Started"),
        ("shop", "BackOff"),
    ]


@needs_kubectl
def test_kubectl_get_events_prints_its_table(k8s_apiserver, k8s_core_v1, tmp_path):
    """The default ``kubectl get events -A`` output has its usual columns and rows."""
    k8s_core_v1.create_namespaced_event("default", core_event("e1", message="pulled image"))
    lines = _kubectl(k8s_apiserver, tmp_path, "get", "events", "-A").splitlines()
    assert lines[0].split() == ["NAMESPACE", "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert lines[1].split()[0] == "default"
    assert lines[1].split()[2:] == ["Normal", "Started", "pod/web", "pulled", "image"]


def test_cli_apiserver_serves_until_interrupted():
    """``python -m k8s_logging_events apiserver`` prints its URL, serves, and stops on Ctrl-C."""
    with apiserver_command("--port", "0", "--namespace", "shop") as command:
        assert command.first_line.startswith("Kubernetes Events API on http://127.0.0.1:")
        host, port = command.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.request("GET", "/api/v1/namespaces/shop")
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["status"]["phase"]) == (200, "Active")
        connection.close()
    assert command.out.strip().endswith("stopped")


_INTERRUPT_AT_EACH_STEP = """
import os, signal, sys, threading
from k8s_logging_events import _cli

def interrupted_at(step):
    # Raise SIGINT at the step-th call the main thread makes after printing its last line;
    # True when that step came before the command settled into its wait.
    state = dict(armed=False, calls=0, raised=False, late=False)
    decided = threading.Lock()  # the step's SIGINT or the late one, never both

    def on_call(frame, event, arg):
        if event not in ("call", "c_call") or not state["armed"]:
            return
        with decided:
            if state["late"] or state["raised"] or state["calls"] != step:
                state["calls"] += 1
                return
            state["raised"] = True
        signal.raise_signal(signal.SIGINT)

    def interrupt_late():
        # the step never came: the main thread waits; interrupt it as a user would
        with decided:
            if state["raised"]:
                return
            state["late"] = True
        os.kill(os.getpid(), signal.SIGINT)

    # started once the last line is printed: the command's handlers are in place from then
    # until it stops, which only a SIGINT makes it do
    timer = threading.Timer(1.0, interrupt_late)

    def printing(*args, **kwargs):
        print(*args, **kwargs)
        if not state["armed"] and "Ctrl-C" in str(args[0]):
            timer.start()
            state["armed"] = True

    _cli.print = printing
    sys.setprofile(on_call)
    try:
        assert _cli.main(["apiserver", "--port", "0"]) == 0
    finally:
        sys.setprofile(None)
        timer.cancel()
    return state["raised"]

step = 0
while interrupted_at(step) and step < 300:
    step += 1
print("steps", step + 1)
"""


def test_cli_apiserver_stops_on_ctrl_c_at_any_step_of_its_way_into_the_wait(tmp_path):
    """A Ctrl-C that lands while the main thread is still on its way into its wait (a moment
    when it holds the lock of what it waits on) stops the command like any other: its
    handler takes no lock, so it cannot hang for ever, deaf to SIGINT and SIGTERM alike."""
    result = run_python(_INTERRUPT_AT_EACH_STEP, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("stopped") == int(result.stdout.split()[-1])


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--port", "99999"], "port"),
        (["--port", "\u00b2"], "is not a port"),
        (["--port", "0", "--delay", "-1"], "is not a number of seconds"),
        (["--port", "0", "--delay", "nan"], "is not a number of seconds"),
        (["--port", "0", "--kubeconfig", "/nonexistent/directory/kc"], "/nonexistent/directory/kc"),
        (["--port", "0", "--tls"], "trustme"),
    ],
    ids=[
        "port-out-of-range",
        "port-superscript-digit",
        "negative-delay",
        "delay-not-a-number",
        "kubeconfig-unwritable",
        "tls-without-trustme",
    ],
)
def test_cli_apiserver_says_what_it_cannot_do_instead_of_a_traceback(
    args, said, capsys, monkeypatch
):
    """A port no socket can have, a delay below zero, a kubeconfig path that cannot be
    written, or ``--tls`` without ``trustme`` ends the command with a one-line reason on
    standard error and a non-zero exit code (argparse's 2 for a bad argument), not a Python
    traceback."""
    monkeypatch.setitem(sys.modules, "trustme", None)  # import trustme: ImportError
    code: object
    try:
        code = _cli.main(["apiserver", *args])
    except SystemExit as stop:  # argparse refusing the argument
        code = stop.code
    err = capsys.readouterr().err
    assert code not in (0, None)
    assert said in err
    assert "Traceback" not in err
