"""Contract tests of the Events API, through the official client: LocalApiServer or a cluster.

These pin what the sink relies on from a Kubernetes API server -- status codes, Status
bodies, resourceVersion, validation, selectors, patch formats -- by talking to a
:class:`~k8s_logging_events.testing.LocalApiServer` through ``kubernetes.client``. Run them
against a real cluster to keep the local server honest::

    K8S_LOGGING_EVENTS_REAL_CLUSTER=1 KUBECONFIG=~/.kube/config pytest tests/test_apiserver.py

Each test works in a fresh namespace of its own (deleted afterwards on a real cluster).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_logging_events.testing import LocalApiServer
from tests._api import T0, core_event, failure, status

REAL_CLUSTER = os.environ.get("K8S_LOGGING_EVENTS_REAL_CLUSTER") == "1" and bool(
    os.environ.get("KUBECONFIG")
)

MICRO = datetime(2024, 1, 1, 0, 0, 5, 123456, tzinfo=UTC)
CONFLICT_TAIL = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


@dataclass
class Cluster:
    """What a test talks to: clients, its own namespace, and the local server if any."""

    api_client: Any
    core: Any
    events: Any
    namespace: str
    server: LocalApiServer | None


def _real_api_client() -> Any:
    from kubernetes import config

    api_client = config.new_client_from_config(
        config_file=os.environ["KUBECONFIG"], persist_config=False
    )
    api_client.configuration.retries = False
    return api_client


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A fresh namespace on the local server, or on the real cluster when one is configured."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    if REAL_CLUSTER:
        api_client = _real_api_client()
        server = None
    else:
        server = LocalApiServer().start()
        api_client = server.api_client()
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        yield Cluster(api_client, core, client.EventsV1Api(api_client), namespace, server)
    finally:
        if REAL_CLUSTER:
            core.delete_namespace(namespace)
        api_client.close()
        if server is not None:
            server.stop()


def reported_event(name: str, namespace: str, **fields: Any) -> Any:
    """A core/v1 event body with an eventTime and the reporting fields that come with it."""
    reporting = {
        "eventTime": MICRO,
        "action": "Started",
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1",
    }
    return core_event(name, namespace, **{**reporting, **fields})


def new_event(name: str, namespace: str, **fields: Any) -> client.EventsV1Event:
    """A valid events.k8s.io/v1 event."""
    values: dict[str, Any] = {
        "metadata": client.V1ObjectMeta(name=name, namespace=namespace),
        "event_time": MICRO,
        "reporting_controller": "example.com/controller",
        "reporting_instance": "controller-0",
        "action": "Reconcile",
        "reason": "Synced",
        "regarding": client.V1ObjectReference(
            kind="Pod", name="web", namespace=namespace, api_version="v1"
        ),
        "note": "synced",
        "type": "Normal",
    }
    values.update(fields)
    return client.EventsV1Event(**values)


def raw(
    api_client: Any,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """Send a request the typed API cannot express, through the official client's transport."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    params = api_client.param_serialize(
        method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
    )
    response = api_client.call_api(*params)
    response.read()
    return response.status, json.loads(response.data)


# -- create ---------------------------------------------------------------------------


def test_create_returns_201_with_uid_creation_timestamp_and_resource_version(cluster):
    """POST answers 201 with the stored event: uid, creationTimestamp, numeric resourceVersion."""
    event, code, _ = cluster.core.create_namespaced_event_with_http_info(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    assert code == 201
    assert event.metadata.name == "e1"
    assert event.metadata.namespace == cluster.namespace
    assert re.fullmatch(r"[0-9a-f-]{36}", event.metadata.uid)
    assert event.metadata.resource_version.isdigit()
    assert event.metadata.creation_timestamp.tzinfo is not None
    assert event.kind == "Event"
    assert event.api_version == "v1"
    assert (event.count, event.reason, event.first_timestamp) == (1, "Started", T0)


def test_create_takes_the_namespace_from_the_url_when_the_body_has_none(cluster):
    """A body without metadata.namespace is created in the namespace of the URL."""
    body = core_event("e1", cluster.namespace)
    del body["metadata"]["namespace"]
    event = cluster.core.create_namespaced_event(cluster.namespace, body)
    assert event.metadata.namespace == cluster.namespace


def test_create_with_generate_name_appends_five_random_characters(cluster):
    """generateName: the server picks prefix + 5 characters of its no-vowel alphabet."""
    body = core_event("", cluster.namespace)
    body["metadata"] = {"generateName": "web.", "namespace": cluster.namespace}
    first = cluster.core.create_namespaced_event(cluster.namespace, body)
    second = cluster.core.create_namespaced_event(cluster.namespace, body)
    for event in (first, second):
        assert re.fullmatch(r"web\.[bcdfghjklmnpqrstvwxz2456789]{5}", event.metadata.name)
        assert event.metadata.generate_name == "web."
    assert first.metadata.name != second.metadata.name


def test_a_generate_name_prefix_is_cut_to_58_characters_before_the_five(cluster):
    """names.SimpleNameGenerator: a prefix over 58 characters is cut, so the name is 63."""
    prefix = "a" * 70
    body = core_event("", cluster.namespace)
    body["metadata"] = {"generateName": prefix, "namespace": cluster.namespace}
    event = cluster.core.create_namespaced_event(cluster.namespace, body)
    assert re.fullmatch(prefix[:58] + r"[bcdfghjklmnpqrstvwxz2456789]{5}", event.metadata.name)
    assert event.metadata.generate_name == prefix


def test_create_without_name_or_generate_name_is_invalid(cluster):
    """No name and no generateName: 422 Invalid with a metadata.name Required cause."""
    body = core_event("", cluster.namespace)
    body["metadata"] = {"namespace": cluster.namespace}
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(cluster.namespace, body)
    assert error.value.status == 422
    cause = {
        "reason": "FieldValueRequired",
        "message": "Required value: name or generateName is required",
        "field": "metadata.name",
    }
    assert status(error) == failure(
        422,
        "Invalid",
        'Event "" is invalid: metadata.name: Required value: name or generateName is required',
        {"kind": "Event", "causes": [cause]},
    )


def test_create_of_an_existing_name_is_already_exists(cluster):
    """A second POST of the same name: 409 AlreadyExists naming the event."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    assert error.value.status == 409
    assert status(error) == failure(
        409, "AlreadyExists", 'events "e1" already exists', {"name": "e1", "kind": "events"}
    )


def test_create_in_a_missing_namespace_is_namespace_not_found(cluster):
    """NamespaceLifecycle: a create into a namespace that does not exist is 404 for it."""
    missing = f"{cluster.namespace}-missing"
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(missing, core_event("e1", missing))
    assert error.value.status == 404
    body = status(error)
    assert body["message"] == f'namespaces "{missing}" not found'
    assert body["reason"] == "NotFound"
    assert body["details"] == {"name": missing, "kind": "namespaces"}


def test_create_with_another_namespace_in_the_body_is_bad_request(cluster):
    """metadata.namespace must match the URL: otherwise 400 BadRequest, before anything else."""
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", "default"))
    assert error.value.status == 400
    assert status(error) == failure(
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    )


def test_create_with_a_resource_version_is_an_unclassified_500(cluster):
    """A create must not carry a resourceVersion: the storage layer answers 500 without reason."""
    body = core_event("e1", cluster.namespace)
    body["metadata"]["resourceVersion"] = "12"
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(cluster.namespace, body)
    assert error.value.status == 500
    assert status(error)["message"] == "resourceVersion should not be set on objects to be created"
    assert "reason" not in status(error)


def test_body_of_the_wrong_type_is_bad_request(cluster):
    """A value of the wrong JSON type fails decoding: 400 naming the Go field and type."""
    code, body = raw(
        cluster.api_client,
        "POST",
        f"/api/v1/namespaces/{cluster.namespace}/events",
        {"metadata": {"name": "e1"}, "involvedObject": {}, "count": "two"},
    )
    assert code == 400
    assert body["reason"] == "BadRequest"
    assert body["message"] == (
        'Event in version "v1" cannot be handled as a Event: json: cannot unmarshal string '
        "into Go struct field Event.count of type int32"
    )


TOO_LARGE = failure(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")


def test_a_create_body_over_3_mib_is_request_entity_too_large(cluster):
    """The API server reads at most 3 MiB of a request body (``MaxRequestBodyBytes``): a
    larger create is 413 RequestEntityTooLarge, before the namespace is even looked up, and
    nothing is stored. (core/v1 without eventTime has no message limit of its own.)"""
    big = core_event("e1", cluster.namespace, message="x" * (3 * 1024 * 1024))
    for namespace in (cluster.namespace, "no-such-namespace"):
        with pytest.raises(ApiException) as error:
            cluster.core.create_namespaced_event(namespace, big)
        assert (error.value.status, status(error)) == (413, TOO_LARGE)
    assert cluster.core.list_namespaced_event(cluster.namespace).items == []


@pytest.mark.parametrize(
    ("method", "content_type"),
    [("PUT", "application/json"), ("PATCH", "application/merge-patch+json")],
)
def test_an_update_body_over_3_mib_is_request_entity_too_large(cluster, method, content_type):
    """A PUT or PATCH body over 3 MiB is refused the same way and changes nothing."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    body = core_event("e1", cluster.namespace, message="x" * (3 * 1024 * 1024))
    code, answer = raw(
        cluster.api_client,
        method,
        f"/api/v1/namespaces/{cluster.namespace}/events/e1",
        body,
        content_type,
    )
    assert (code, answer) == (413, TOO_LARGE)
    stored = cluster.core.read_namespaced_event("e1", cluster.namespace)
    assert stored.message != body["message"]


def test_an_event_over_etcds_request_limit_is_an_unclassified_500(cluster):
    """A body under the 3 MiB the API server reads can still hold an event over etcd's
    default request limit (1.5 MiB): the create, or the patch that grows an event past it,
    is the 500 etcd's refusal becomes, without a reason, and nothing is stored."""
    big = "x" * 1_800_000
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(
            cluster.namespace, core_event("e1", cluster.namespace, message=big)
        )
    assert error.value.status == 500
    assert status(error)["message"] == "etcdserver: request is too large"
    assert "reason" not in status(error)
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    with pytest.raises(ApiException) as error:
        cluster.core.patch_namespaced_event("e1", cluster.namespace, {"message": big})
    assert (error.value.status, status(error)["message"]) == (
        500,
        "etcdserver: request is too large",
    )
    assert cluster.core.read_namespaced_event("e1", cluster.namespace).message != big


def test_an_event_over_etcds_client_send_limit_is_a_500_in_grpcs_words(cluster):
    """Over 2 MiB, etcd's client in the API server refuses to send the write at all: the
    same unclassified 500, worded by gRPC, and nothing is stored."""
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(
            cluster.namespace, core_event("e1", cluster.namespace, message="x" * 2_200_000)
        )
    assert (error.value.status, "reason" in status(error)) == (500, False)
    assert status(error)["message"].startswith(
        "rpc error: code = ResourceExhausted desc = trying to send message larger than max ("
    )
    assert status(error)["message"].endswith(" vs. 2097152)")
    assert cluster.core.list_namespaced_event(cluster.namespace).items == []


def test_field_validation_strict_refuses_an_unknown_field(cluster):
    """``fieldValidation=Strict`` turns the dropped-field warning into 400 BadRequest, naming
    every unknown field, and nothing is stored; ``Ignore`` stores it without a warning."""
    path = f"/api/v1/namespaces/{cluster.namespace}/events"
    body = {**core_event("e1", cluster.namespace), "bogus": 1, "other": 2}
    code, answer = raw(cluster.api_client, "POST", path + "?fieldValidation=Strict", body)
    assert (code, answer) == (
        400,
        failure(
            400,
            "BadRequest",
            'Event in version "v1" cannot be handled as a Event: strict decoding error: '
            'unknown field "bogus", unknown field "other"',
        ),
    )
    assert cluster.core.list_namespaced_event(cluster.namespace).items == []
    params = cluster.api_client.param_serialize(
        "POST",
        path + "?fieldValidation=Ignore",
        header_params={"Content-Type": "application/json"},
        body=body,
    )
    response = cluster.api_client.call_api(*params)
    response.read()
    assert response.status == 201
    assert "Warning" not in response.getheaders()


def test_an_unknown_field_validation_is_invalid_before_the_body_is_decoded(cluster):
    """A ``fieldValidation`` other than Ignore, Warn or Strict is 422 on CreateOptions, and
    the options are checked before the body: a bad body does not change the answer."""
    code, body = raw(
        cluster.api_client,
        "POST",
        f"/api/v1/namespaces/{cluster.namespace}/events?fieldValidation=Bogus",
        {"metadata": {"name": "e1"}, "involvedObject": {}, "count": "two"},
    )
    assert code == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Bogus": '
        'supported values: "", "Ignore", "Strict", "Warn"'
    )


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_create_body_in_a_media_type_the_server_does_not_decode_is_415(cluster, content_type):
    """A create whose Content-Type is not one the server decodes is 415 UnsupportedMediaType
    listing the types it takes, even when the body is JSON; nothing is stored."""
    code, body = raw(
        cluster.api_client,
        "POST",
        f"/api/v1/namespaces/{cluster.namespace}/events",
        json.dumps(
            cluster.api_client.sanitize_for_serialization(core_event("e1", cluster.namespace))
        ),
        content_type,
    )
    assert code == 415
    assert body["reason"] == "UnsupportedMediaType"
    assert body["message"].startswith(
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml, application/vnd.kubernetes.protobuf"
    )
    assert cluster.core.list_namespaced_event(cluster.namespace).items == []


# -- validation -----------------------------------------------------------------------


def test_involved_object_namespace_must_match_the_event_namespace(cluster):
    """Without eventTime, involvedObject.namespace must equal the event's namespace: 422."""
    body = core_event("e1", cluster.namespace)
    body["involvedObject"]["namespace"] = "other"
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(cluster.namespace, body)
    assert error.value.status == 422
    assert status(error)["message"] == (
        'Event "e1" is invalid: involvedObject.namespace: Invalid value: "other": '
        "does not match event.namespace"
    )
    assert status(error)["details"] == {
        "name": "e1",
        "kind": "Event",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": 'Invalid value: "other": does not match event.namespace',
                "field": "involvedObject.namespace",
            }
        ],
    }


def test_message_over_1024_bytes_is_accepted_without_event_time(cluster):
    """core/v1 without eventTime has no length limit: a 5,000-character message is stored."""
    event = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace, message="x" * 5000)
    )
    assert len(event.message) == 5000


def test_message_over_1024_bytes_is_invalid_once_event_time_is_set(cluster):
    """With eventTime set the message may have 1024 bytes (UTF-8), not characters: 422."""
    body = reported_event("e1", cluster.namespace, message="é" * 600)
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(cluster.namespace, body)
    assert error.value.status == 422
    assert status(error)["message"] == (
        'Event "e1" is invalid: message: Invalid value: "": can have at most 1024 characters'
    )


def test_event_time_on_core_v1_requires_the_reporting_fields(cluster):
    """Setting eventTime through core/v1 brings in the new-style required fields.

    The controller's field is named as core/v1 names it, reportingComponent.
    """
    body = core_event("e1", cluster.namespace, eventTime=MICRO)
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(cluster.namespace, body)
    assert error.value.status == 422
    causes = status(error)["details"]["causes"]
    assert [cause["field"] for cause in causes] == [
        "reportingComponent",
        "reportingComponent",
        "reportingComponent",
        "reportingInstance",
        "action",
    ]
    assert status(error)["message"].startswith(
        'Event "e1" is invalid: [reportingComponent: Required value, reportingComponent: '
        'Invalid value: "": name part must be non-empty, reportingComponent: Invalid value: "": '
        "name part must consist of alphanumeric characters"
    )
    assert status(error)["message"].endswith(
        "reportingInstance: Required value, action: Required value]"
    )


def test_event_time_without_microseconds_is_bad_request(cluster):
    """MicroTime needs exactly six fraction digits; the client drops them when they are 0."""
    body = reported_event("e1", cluster.namespace, eventTime=T0)
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(cluster.namespace, body)
    assert error.value.status == 400
    assert status(error)["reason"] == "BadRequest"
    assert (
        'parsing time "2024-01-01T00:00:05+00:00" as "2006-01-02T15:04:05.000000Z07:00": '
        'cannot parse "+00:00" as ".000000"' in status(error)["message"]
    )


def test_timestamps_are_stored_as_whole_utc_seconds(cluster):
    """metav1.Time accepts any RFC 3339 offset and fraction and keeps whole UTC seconds."""
    code, body = raw(
        cluster.api_client,
        "POST",
        f"/api/v1/namespaces/{cluster.namespace}/events",
        {
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Pod", "namespace": cluster.namespace},
            "firstTimestamp": "2024-01-01T02:00:05.987654+02:00",
            "lastTimestamp": "2024-01-01T02:00:05Z",
        },
    )
    assert code == 201
    assert body["firstTimestamp"] == "2024-01-01T00:00:05Z"
    assert body["lastTimestamp"] == "2024-01-01T02:00:05Z"


def test_unset_times_and_reporting_fields_are_written_as_the_server_does(cluster):
    """core/v1 JSON: eventTime null when unset, reportingComponent/Instance always present."""
    code, body = raw(
        cluster.api_client,
        "POST",
        f"/api/v1/namespaces/{cluster.namespace}/events",
        {"metadata": {"name": "e1"}, "involvedObject": {"namespace": cluster.namespace}},
    )
    assert code == 201
    assert body["eventTime"] is None
    assert body["firstTimestamp"] is None
    assert body["source"] == {}
    assert (body["reportingComponent"], body["reportingInstance"]) == ("", "")
    assert "count" not in body
    assert "message" not in body


# -- read and list --------------------------------------------------------------------


def test_read_of_a_missing_event_is_not_found(cluster):
    """GET of an unknown name: 404 NotFound naming the event."""
    with pytest.raises(ApiException) as error:
        cluster.core.read_namespaced_event("nope", cluster.namespace)
    assert error.value.status == 404
    assert status(error) == failure(
        404, "NotFound", 'events "nope" not found', {"name": "nope", "kind": "events"}
    )


def test_list_reports_a_numeric_resource_version(cluster):
    """An EventList carries the current resourceVersion in its metadata."""
    created = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    listed = cluster.core.list_namespaced_event(cluster.namespace)
    assert [item.metadata.name for item in listed.items] == ["e1"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)


def test_list_of_all_namespaces_spans_namespaces(cluster):
    """GET /api/v1/events lists events of every namespace."""
    other = f"{cluster.namespace}-b"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
        cluster.core.create_namespaced_event(other, core_event("e2", other))
        listed = cluster.core.list_event_for_all_namespaces(
            field_selector="involvedObject.name=web"
        )
        mine = {
            (item.metadata.namespace, item.metadata.name)
            for item in listed.items
            if item.metadata.namespace in (cluster.namespace, other)
        }
        assert mine == {(cluster.namespace, "e1"), (other, "e2")}
    finally:
        if REAL_CLUSTER:
            cluster.core.delete_namespace(other)


def _seed_for_selectors(cluster: Cluster) -> None:
    ns = cluster.namespace
    cluster.core.create_namespaced_event(
        ns,
        core_event(
            "a",
            ns,
            metadata={"name": "a", "labels": {"app": "web", "tier": "front"}},
            reason="BackOff",
            type="Warning",
        ),
    )
    body = core_event("b", ns, metadata={"name": "b", "labels": {"app": "db"}})
    body["involvedObject"]["name"] = "db"
    body["involvedObject"]["uid"] = "uid-db"  # kubectl describe selects on the uid
    body["source"] = {"component": "scheduler"}
    cluster.core.create_namespaced_event(ns, body)
    cluster.core.create_namespaced_event(
        ns,
        core_event(
            "c",
            ns,
            eventTime=MICRO,
            action="Scheduled",
            reportingComponent="example.com/ctl",
            reportingInstance="ctl-0",
            source={},
        ),
    )


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("involvedObject.name=web", ["a", "c"]),
        ("involvedObject.name==db", ["b"]),
        ("involvedObject.name!=web", ["b"]),
        ("involvedObject.uid=uid-db", ["b"]),
        ("involvedObject.uid=", ["a", "c"]),
        ("involvedObject.kind=Pod,reason=BackOff", ["a"]),
        ("type=Warning", ["a"]),
        ("type!=Warning,involvedObject.apiVersion=v1", ["b", "c"]),
        ("metadata.name=b", ["b"]),
        ("source=scheduler", ["b"]),
        ("source=example.com/ctl", ["c"]),
        ("reportingComponent=example.com/ctl", ["c"]),
        ("", ["a", "b", "c"]),
    ],
)
def test_field_selector_filters_on_selectable_fields(cluster, selector, expected):
    """fieldSelector: =, == and != on the selectable fields; source falls back to the controller."""
    _seed_for_selectors(cluster)
    listed = cluster.core.list_namespaced_event(cluster.namespace, field_selector=selector)
    assert [item.metadata.name for item in listed.items] == expected


def test_field_selector_on_an_unknown_field_is_bad_request(cluster):
    """A field Events cannot be selected on: 400 ``field label not supported``."""
    with pytest.raises(ApiException) as error:
        cluster.core.list_namespaced_event(cluster.namespace, field_selector="message=hi")
    assert error.value.status == 400
    assert status(error)["message"] == "field label not supported: message"
    assert status(error)["reason"] == "BadRequest"


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a"]),
        ("app==db", ["b"]),
        ("app!=web", ["b", "c"]),
        ("tier", ["a"]),
        ("!tier", ["b", "c"]),
        ("app in (web,db)", ["a", "b"]),
        ("app notin (web)", ["b", "c"]),
        ("app=web,tier=front", ["a"]),
    ],
)
def test_label_selector_filters_on_labels(cluster, selector, expected):
    """labelSelector: equality, inequality, set membership, exists and not-exists."""
    _seed_for_selectors(cluster)
    listed = cluster.core.list_namespaced_event(cluster.namespace, label_selector=selector)
    assert [item.metadata.name for item in listed.items] == expected


def test_list_pages_with_limit_and_continue(cluster):
    """limit cuts the list in name order; continue fetches the rest."""
    for name in ("e3", "e1", "e2"):
        cluster.core.create_namespaced_event(cluster.namespace, core_event(name, cluster.namespace))
    first = cluster.core.list_namespaced_event(cluster.namespace, limit=2)
    assert [item.metadata.name for item in first.items] == ["e1", "e2"]
    assert first.metadata._continue
    rest = cluster.core.list_namespaced_event(
        cluster.namespace, limit=2, _continue=first.metadata._continue
    )
    assert [item.metadata.name for item in rest.items] == ["e3"]
    assert not rest.metadata._continue


def test_a_continued_list_takes_its_resource_version_from_the_token_alone(cluster):
    """A ``continue`` token carries the list's resourceVersion: the next page with another
    ``resourceVersion`` beside it is 400 (``"0"`` or none is fine), and a token that is no
    token is 400 too."""
    for name in ("e1", "e2"):
        cluster.core.create_namespaced_event(cluster.namespace, core_event(name, cluster.namespace))
    first = cluster.core.list_namespaced_event(cluster.namespace, limit=1)
    token = first.metadata._continue
    with pytest.raises(ApiException) as error:
        cluster.core.list_namespaced_event(
            cluster.namespace,
            limit=1,
            _continue=token,
            resource_version=first.metadata.resource_version,
        )
    assert status(error) == failure(
        400, "BadRequest", "specifying resource version is not allowed when using continue"
    )
    rest = cluster.core.list_namespaced_event(
        cluster.namespace, limit=1, _continue=token, resource_version="0"
    )
    assert [item.metadata.name for item in rest.items] == ["e2"]
    with pytest.raises(ApiException) as error:
        cluster.core.list_namespaced_event(cluster.namespace, limit=1, _continue="%%%")
    assert error.value.status == 400
    assert status(error)["message"].startswith(
        "invalid continue token: continue key is not valid: illegal base64 data"
    )


@pytest.mark.parametrize(
    ("selectors", "remaining"),
    [
        ({}, 2),
        ({"field_selector": "reason=Started"}, None),
        ({"label_selector": "app!=db"}, None),
    ],
)
def test_a_page_counts_what_remains_only_when_nothing_is_selected(cluster, selectors, remaining):
    """remainingItemCount comes with a page of a list without selectors; with a label or
    field selector the server cannot know it and leaves it out, as ListMeta promises."""
    for name in ("e1", "e2", "e3"):
        cluster.core.create_namespaced_event(cluster.namespace, core_event(name, cluster.namespace))
    first = cluster.core.list_namespaced_event(cluster.namespace, limit=1, **selectors)
    assert first.metadata._continue
    assert first.metadata.remaining_item_count == remaining


LIST_OPTIONS = 'ListOptions.meta.k8s.io "" is invalid: '


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "resourceVersionMatch=NotOlderThan",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
            "resourceVersion is provided",
        ),
        (
            "resourceVersion=0&resourceVersionMatch=Exact",
            'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for '
            'resourceVersion "0"',
        ),
        (
            "resourceVersion=1&resourceVersionMatch=Newest",
            'resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", '
            '"NotOlderThan", ""',
        ),
        (
            "sendInitialEvents=true",
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list",
        ),
        (
            "watch=true&timeoutSeconds=1&resourceVersionMatch=NotOlderThan",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless "
            "sendInitialEvents is provided",
        ),
    ],
)
def test_list_and_watch_options_that_do_not_go_together_are_invalid(cluster, query, message):
    """``resourceVersionMatch`` needs a resourceVersion on a list (and never ``Exact`` with
    ``"0"``), and on a watch only comes with ``sendInitialEvents``, which a list never takes:
    a list or watch that breaks these rules is 422 on ListOptions."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    code, body = raw(
        cluster.api_client, "GET", f"/api/v1/namespaces/{cluster.namespace}/events?{query}"
    )
    assert code == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == LIST_OPTIONS + message
    code, body = raw(
        cluster.api_client,
        "GET",
        f"/api/v1/namespaces/{cluster.namespace}/events?resourceVersion=0&resourceVersionMatch=NotOlderThan",
    )
    assert (code, [item["metadata"]["name"] for item in body["items"]]) == (200, ["e1"])


# -- patch ----------------------------------------------------------------------------


def test_strategic_merge_patch_updates_fields_and_the_resource_version(cluster):
    """A dict patch (sent as strategic-merge-patch) sets count/lastTimestamp/message; RV moves."""
    created = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    later = T0 + timedelta(seconds=30)
    patched = cluster.core.patch_namespaced_event(
        "e1", cluster.namespace, {"count": 2, "lastTimestamp": later, "message": "again"}
    )
    assert (patched.count, patched.last_timestamp, patched.message) == (2, later, "again")
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    assert patched.metadata.uid == created.metadata.uid
    assert patched.first_timestamp == T0


def test_patch_that_changes_nothing_keeps_the_resource_version(cluster):
    """A no-op patch writes nothing, so the resourceVersion stays."""
    created = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    patched = cluster.core.patch_namespaced_event("e1", cluster.namespace, {"count": 1})
    assert patched.metadata.resource_version == created.metadata.resource_version


def test_merge_patch_with_null_removes_the_field(cluster):
    """application/merge-patch+json: null deletes a key."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    patched = cluster.core.patch_namespaced_event(
        "e1",
        cluster.namespace,
        {"message": None, "count": 4},
        _content_type="application/merge-patch+json",
    )
    assert patched.message is None
    assert patched.count == 4


def test_strategic_merge_patch_replace_directive_replaces_a_map(cluster):
    """``$patch: replace`` inside a map swaps the whole map instead of merging it."""
    body = core_event("e1", cluster.namespace)
    body["metadata"]["labels"] = {"a": "1", "b": "2"}
    cluster.core.create_namespaced_event(cluster.namespace, body)
    patched = cluster.core.patch_namespaced_event(
        "e1", cluster.namespace, {"metadata": {"labels": {"$patch": "replace", "c": "3"}}}
    )
    assert patched.metadata.labels == {"c": "3"}


def test_json_patch_applies_rfc6902_operations(cluster):
    """A list patch (json-patch+json): test, replace, add and remove, in order."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    patched = cluster.core.patch_namespaced_event(
        "e1",
        cluster.namespace,
        [
            {"op": "test", "path": "/reason", "value": "Started"},
            {"op": "replace", "path": "/count", "value": 7},
            {"op": "add", "path": "/metadata/labels", "value": {"team": "a"}},
            {"op": "remove", "path": "/message"},
        ],
    )
    assert (patched.count, patched.message) == (7, None)
    assert patched.metadata.labels == {"team": "a"}


def test_json_patch_whose_test_fails_is_the_opaque_422(cluster):
    """A JSON patch that does not apply: 422 Invalid with the handler's fixed message."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    with pytest.raises(ApiException) as error:
        cluster.core.patch_namespaced_event(
            "e1", cluster.namespace, [{"op": "test", "path": "/reason", "value": "Other"}]
        )
    assert error.value.status == 422
    assert status(error)["reason"] == "Invalid"
    assert status(error)["message"] == (
        "the server rejected our request due to an error in our request"
    )


@pytest.mark.parametrize(
    ("content_type", "patch", "field"),
    [
        ("application/strategic-merge-patch+json", {"bogus": 1}, "bogus"),
        ("application/merge-patch+json", {"involvedObject": {"bogus": 1}}, "involvedObject.bogus"),
        ("application/json-patch+json", [{"op": "add", "path": "/bogus", "value": 1}], "bogus"),
    ],
)
def test_a_patch_that_sets_an_unknown_field_is_checked_as_field_validation_says(
    cluster, content_type, patch, field
):
    """PATCH honours ``fieldValidation`` as create and update do: ``Strict`` refuses an
    unknown field (422 on the field ``patch``), the default warns about it in a ``Warning``
    header and applies the rest, ``Ignore`` says nothing."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    with pytest.raises(ApiException) as error:
        cluster.core.patch_namespaced_event(
            "e1", cluster.namespace, patch, field_validation="Strict", _content_type=content_type
        )
    assert error.value.status == 422
    assert status(error)["reason"] == "Invalid"
    assert status(error)["details"]["causes"][0]["field"] == "patch"
    assert status(error)["message"].endswith(f'strict decoding error: unknown field "{field}"')
    for validation, warning in ((None, f'299 - "unknown field \\"{field}\\""'), ("Ignore", None)):
        _, code, headers = cluster.core.patch_namespaced_event_with_http_info(
            "e1", cluster.namespace, patch, field_validation=validation, _content_type=content_type
        )
        assert (code, headers.get("Warning")) == (200, warning)


def test_a_patch_with_an_unknown_field_validation_is_invalid(cluster):
    """``fieldValidation`` takes Ignore, Warn or Strict on a PATCH too; anything else is 422
    on PatchOptions and patches nothing."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    with pytest.raises(ApiException) as error:
        cluster.core.patch_namespaced_event(
            "e1", cluster.namespace, {"count": 9}, field_validation="Loose"
        )
    assert error.value.status == 422
    assert status(error)["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Loose": '
        'supported values: "", "Ignore", "Strict", "Warn"'
    )
    assert cluster.core.read_namespaced_event("e1", cluster.namespace).count == 1


def test_patch_in_an_unsupported_content_type_is_415(cluster):
    """PATCH only takes the four patch media types: anything else is 415."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    with pytest.raises(ApiException) as error:
        cluster.core.patch_namespaced_event(
            "e1", cluster.namespace, {"count": 2}, _content_type="application/json"
        )
    assert error.value.status == 415
    assert status(error)["reason"] == "UnsupportedMediaType"
    assert status(error)["message"].startswith(
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml"
    )


def test_patch_with_a_stale_resource_version_is_conflict(cluster):
    """A resourceVersion in a patch is a precondition: stale means 409 Conflict."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    cluster.core.patch_namespaced_event("e1", cluster.namespace, {"count": 2})
    with pytest.raises(ApiException) as error:
        cluster.core.patch_namespaced_event(
            "e1", cluster.namespace, {"metadata": {"resourceVersion": "1"}, "count": 3}
        )
    assert error.value.status == 409
    assert status(error) == failure(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on events "e1": {CONFLICT_TAIL}',
        {"name": "e1", "kind": "events"},
    )


def test_patch_with_the_current_resource_version_succeeds(cluster):
    """The same precondition with the current resourceVersion passes."""
    created = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    patched = cluster.core.patch_namespaced_event(
        "e1",
        cluster.namespace,
        {"metadata": {"resourceVersion": created.metadata.resource_version}, "count": 3},
    )
    assert patched.count == 3


def test_a_resource_version_of_0_is_no_precondition(cluster):
    """``"0"`` is how the server reads an unset resourceVersion: a PATCH or PUT that carries
    it is an unconditional update (200, not 409), and a create that carries it is a create."""
    body = core_event("e1", cluster.namespace)
    body["metadata"]["resourceVersion"] = "0"
    created = cluster.core.create_namespaced_event(cluster.namespace, body)
    patched = cluster.core.patch_namespaced_event(
        "e1", cluster.namespace, {"metadata": {"resourceVersion": "0"}, "count": 3}
    )
    assert patched.count == 3
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    replaced = cluster.core.replace_namespaced_event("e1", cluster.namespace, {**body, "count": 4})
    assert replaced.count == 4


def test_patch_of_a_missing_event_is_not_found(cluster):
    """Patches never create: 404 for an unknown name (the sink then creates instead)."""
    with pytest.raises(ApiException) as error:
        cluster.core.patch_namespaced_event("nope", cluster.namespace, {"count": 2})
    assert error.value.status == 404
    assert status(error)["message"] == 'events "nope" not found'


def test_patch_moving_the_event_to_another_namespace_is_bad_request(cluster):
    """A patch may not change metadata.namespace: 400."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    with pytest.raises(ApiException) as error:
        cluster.core.patch_namespaced_event(
            "e1", cluster.namespace, {"metadata": {"namespace": "default"}}
        )
    assert error.value.status == 400
    assert status(error)["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )


def test_core_v1_fields_stay_mutable(cluster):
    """Through core/v1 no Event field is immutable: reason and involvedObject may change."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    patched = cluster.core.patch_namespaced_event(
        "e1", cluster.namespace, {"reason": "Killed", "involvedObject": {"name": "other"}}
    )
    assert (patched.reason, patched.involved_object.name) == ("Killed", "other")


# -- replace and delete ---------------------------------------------------------------


def test_put_of_a_missing_event_creates_it_with_201(cluster):
    """Events allow create-on-update: PUT of a new name answers 201."""
    event, code, _ = cluster.core.replace_namespaced_event_with_http_info(
        "e1", cluster.namespace, core_event("e1", cluster.namespace)
    )
    assert code == 201
    assert event.metadata.uid


def test_put_without_resource_version_is_unconditional(cluster):
    """PUT without a resourceVersion replaces whatever is stored (200) and moves the RV."""
    created = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    event, code, _ = cluster.core.replace_namespaced_event_with_http_info(
        "e1", cluster.namespace, core_event("e1", cluster.namespace, count=9)
    )
    assert code == 200
    assert event.count == 9
    assert event.metadata.uid == created.metadata.uid
    assert int(event.metadata.resource_version) > int(created.metadata.resource_version)


def test_put_with_a_stale_resource_version_is_conflict(cluster):
    """PUT with an old resourceVersion: 409 Conflict."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    body = core_event("e1", cluster.namespace, count=2)
    body["metadata"]["resourceVersion"] = "1"
    with pytest.raises(ApiException) as error:
        cluster.core.replace_namespaced_event("e1", cluster.namespace, body)
    assert error.value.status == 409
    assert status(error)["reason"] == "Conflict"
    assert status(error)["message"] == (
        f'Operation cannot be fulfilled on events "e1": {CONFLICT_TAIL}'
    )


def test_put_whose_uid_is_not_the_stored_events_is_conflict_and_creates_nothing(cluster):
    """A uid in a PUT body is a precondition: an event deleted since it was read (or another
    one of its name) is not replaced, and a deleted one is not created again; 409 Conflict
    with etcd's precondition message, and the event stays as it was."""
    read = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    body = core_event("e1", cluster.namespace, count=2)
    body["metadata"]["uid"] = read.metadata.uid
    cluster.core.delete_namespaced_event("e1", cluster.namespace)
    key = f"Key: /registry/events/{cluster.namespace}/e1, ResourceVersion: 0"
    with pytest.raises(ApiException) as error:
        cluster.core.replace_namespaced_event("e1", cluster.namespace, body)
    assert error.value.status == 409
    assert status(error)["message"] == (
        'Operation cannot be fulfilled on events "e1": StorageError: invalid object, Code: 4, '
        f"{key}, AdditionalErrorMsg: Precondition failed: UID in precondition: "
        f"{read.metadata.uid}, UID in object meta: "
    )
    assert cluster.core.list_namespaced_event(cluster.namespace).items == []
    again = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    with pytest.raises(ApiException) as error:
        cluster.core.replace_namespaced_event("e1", cluster.namespace, body)
    assert error.value.status == 409
    assert status(error)["reason"] == "Conflict"
    assert status(error)["message"].endswith(
        f"UID in precondition: {read.metadata.uid}, UID in object meta: {again.metadata.uid}"
    )
    assert cluster.core.read_namespaced_event("e1", cluster.namespace).count == 1


def test_put_of_another_name_is_bad_request(cluster):
    """The name in a PUT body must match the URL: 400."""
    with pytest.raises(ApiException) as error:
        cluster.core.replace_namespaced_event(
            "e1", cluster.namespace, core_event("e2", cluster.namespace)
        )
    assert error.value.status == 400
    assert status(error)["message"] == (
        "the name of the object (e2) does not match the name on the URL (e1)"
    )


def test_delete_answers_a_success_status_then_not_found(cluster):
    """DELETE: 200 with a Success Status naming the event; a second DELETE is 404."""
    created = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    result = cluster.core.delete_namespaced_event("e1", cluster.namespace)
    result = result if isinstance(result, dict) else result.to_dict()
    assert result["status"] == "Success"
    assert result["details"]["name"] == "e1"
    assert result["details"]["uid"] == created.metadata.uid
    with pytest.raises(ApiException) as error:
        cluster.core.delete_namespaced_event("e1", cluster.namespace)
    assert error.value.status == 404


@pytest.mark.parametrize("failed", ["uid", "resource_version"])
def test_delete_with_a_stale_precondition_is_conflict(cluster, failed):
    """DeleteOptions preconditions that do not hold are 409, in the words of the check that
    runs before the delete (``rest.BeforeDelete``): on the kind ``Event``, naming both values,
    and the event is still there."""
    created = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    stored = {"uid": created.metadata.uid, "resource_version": created.metadata.resource_version}
    label, meaning = {
        "uid": ("UID", "deleted and then recreated"),
        "resource_version": ("ResourceVersion", "modified"),
    }[failed]
    preconditions = client.V1Preconditions(**{failed: "1"})
    with pytest.raises(ApiException) as error:
        cluster.core.delete_namespaced_event(
            "e1", cluster.namespace, body=client.V1DeleteOptions(preconditions=preconditions)
        )
    assert status(error) == failure(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on Event "e1": the {label} in the precondition (1) does '
        f"not match the {label} in record ({stored[failed]}). The object might have been "
        f"{meaning}",
        {"name": "e1", "kind": "Event"},
    )
    assert cluster.core.read_namespaced_event("e1", cluster.namespace).metadata.name == "e1"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"dryRun": ["Bogus"]},
            'dryRun: Unsupported value: []string{"Bogus"}: supported values: "All"',
        ),
        (
            {"propagationPolicy": "Bogus"},
            'propagationPolicy: Unsupported value: "Bogus": supported values: "Foreground", '
            '"Background", "Orphan", "nil"',
        ),
    ],
)
def test_delete_with_unsupported_options_is_invalid_and_deletes_nothing(cluster, options, message):
    """DeleteOptions are checked before anything is deleted: an unknown dryRun or
    propagationPolicy is 422 on DeleteOptions, and the event is still there."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    code, body = raw(
        cluster.api_client,
        "DELETE",
        f"/api/v1/namespaces/{cluster.namespace}/events/e1",
        {"kind": "DeleteOptions", "apiVersion": "v1", **options},
    )
    assert code == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == f'DeleteOptions.meta.k8s.io "" is invalid: {message}'
    assert cluster.core.read_namespaced_event("e1", cluster.namespace).metadata.name == "e1"


def test_delete_options_in_a_body_leave_the_query_unread(cluster):
    """With a DeleteOptions body the server reads the options from the body alone: a
    ``dryRun=All`` in the query of such a request does not make it a dry run."""
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e1", cluster.namespace))
    code, _ = raw(
        cluster.api_client,
        "DELETE",
        f"/api/v1/namespaces/{cluster.namespace}/events/e1?dryRun=All",
        {"kind": "DeleteOptions", "apiVersion": "v1"},
    )
    assert code == 200
    assert cluster.core.list_namespaced_event(cluster.namespace).items == []


@pytest.mark.parametrize("where", ["query", "body"])
def test_a_dry_run_delete_of_the_collection_deletes_nothing(cluster, where):
    """DELETE on the events collection with ``dryRun=All`` (in the query or in a
    DeleteOptions body) answers the events it would delete and leaves every one stored; the
    same request without it deletes them."""
    for name in ("e1", "e2"):
        cluster.core.create_namespaced_event(cluster.namespace, core_event(name, cluster.namespace))
    path = f"/api/v1/namespaces/{cluster.namespace}/events"
    if where == "query":
        code, body = raw(cluster.api_client, "DELETE", f"{path}?dryRun=All")
    else:
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}
        code, body = raw(cluster.api_client, "DELETE", path, options)
    assert code == 200
    assert [item["metadata"]["name"] for item in body["items"]] == ["e1", "e2"]
    kept = cluster.core.list_namespaced_event(cluster.namespace).items
    assert [event.metadata.name for event in kept] == ["e1", "e2"]
    cluster.core.delete_collection_namespaced_event(cluster.namespace)
    assert cluster.core.list_namespaced_event(cluster.namespace).items == []


def test_an_unsupported_dry_run_on_create_names_the_list_it_was_read_into(cluster):
    """``dryRun`` is a list of strings in CreateOptions, and the 422 prints it as Go does."""
    code, body = raw(
        cluster.api_client,
        "POST",
        f"/api/v1/namespaces/{cluster.namespace}/events?dryRun=foo",
        core_event("e1", cluster.namespace),
    )
    assert code == 422
    assert body["message"] == (
        'CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"foo"}: '
        'supported values: "All"'
    )


def test_resource_version_increases_with_every_write(cluster):
    """One counter for all writes: create < patch < replace < (list after a delete)."""
    created = cluster.core.create_namespaced_event(
        cluster.namespace, core_event("e1", cluster.namespace)
    )
    cluster.core.create_namespaced_event(cluster.namespace, core_event("e2", cluster.namespace))
    patched = cluster.core.patch_namespaced_event("e1", cluster.namespace, {"count": 5})
    replaced = cluster.core.replace_namespaced_event(
        "e1", cluster.namespace, core_event("e1", cluster.namespace, count=6)
    )
    cluster.core.delete_namespaced_event("e2", cluster.namespace)
    listed = cluster.core.list_namespaced_event(cluster.namespace)
    versions = [
        int(created.metadata.resource_version),
        int(patched.metadata.resource_version),
        int(replaced.metadata.resource_version),
        int(listed.metadata.resource_version),
    ]
    assert versions == sorted(set(versions))


# -- events.k8s.io/v1 -----------------------------------------------------------------


def test_events_v1_create_and_read(cluster):
    """events.k8s.io/v1 POST answers 201; GET gives the same event back."""
    created, code, _ = cluster.events.create_namespaced_event_with_http_info(
        cluster.namespace, new_event("x", cluster.namespace)
    )
    assert code == 201
    read = cluster.events.read_namespaced_event("x", cluster.namespace)
    assert read.api_version == "events.k8s.io/v1"
    assert (read.note, read.event_time, read.reporting_controller) == (
        "synced",
        MICRO,
        "example.com/controller",
    )
    assert read.metadata.uid == created.metadata.uid


def test_events_v1_event_is_visible_through_core_v1_with_the_field_mapping(cluster):
    """One store: note is message, regarding is involvedObject, reportingController ..."""
    cluster.events.create_namespaced_event(cluster.namespace, new_event("x", cluster.namespace))
    core = cluster.core.read_namespaced_event("x", cluster.namespace)
    assert core.message == "synced"
    assert core.involved_object.name == "web"
    assert core.reporting_component == "example.com/controller"
    assert core.reporting_instance == "controller-0"
    assert core.event_time == MICRO
    assert core.count is None


def test_core_v1_event_is_visible_through_events_v1_with_the_field_mapping(cluster):
    """A core/v1 event (with eventTime) reads back through events.k8s.io/v1 with new names."""
    body = reported_event("e1", cluster.namespace, count=3)
    cluster.core.create_namespaced_event(cluster.namespace, body)
    event = cluster.events.read_namespaced_event("e1", cluster.namespace)
    assert event.note == "Started container web"
    assert event.regarding.name == "web"
    assert event.deprecated_source.component == "kubelet"
    assert event.deprecated_count == 3
    assert event.deprecated_first_timestamp == T0
    assert event.reporting_controller == "kubelet"


def test_events_v1_type_must_be_normal_or_warning(cluster):
    """events.k8s.io/v1 create: type is Normal or Warning, nothing else."""
    with pytest.raises(ApiException) as error:
        cluster.events.create_namespaced_event(
            cluster.namespace, new_event("x", cluster.namespace, type="Info")
        )
    assert error.value.status == 422
    assert status(error)["message"] == (
        'Event "x" is invalid: type: Invalid value: "": has invalid value: Info'
    )


def test_events_v1_names_the_controller_field_reporting_controller(cluster):
    """Through events.k8s.io/v1 the same check names its own field, reportingController."""
    with pytest.raises(ApiException) as error:
        cluster.events.create_namespaced_event(
            cluster.namespace,
            new_event("x", cluster.namespace, reporting_controller="bad controller"),
        )
    assert error.value.status == 422
    assert [c["field"] for c in status(error)["details"]["causes"]] == ["reportingController"]
    assert status(error)["message"].startswith(
        'Event "x" is invalid: reportingController: Invalid value: "bad controller": name part '
        "must consist of alphanumeric characters"
    )


def test_events_v1_deprecated_fields_must_be_unset_on_create(cluster):
    """events.k8s.io/v1 create: the deprecated core fields need to be unset."""
    event = new_event(
        "x",
        cluster.namespace,
        deprecated_count=2,
        deprecated_source=client.V1EventSource(component="kubelet"),
    )
    with pytest.raises(ApiException) as error:
        cluster.events.create_namespaced_event(cluster.namespace, event)
    assert error.value.status == 422
    assert status(error)["message"] == (
        'Event "x" is invalid: [count: Invalid value: "": needs to be unset, '
        'source: Invalid value: "": needs to be unset]'
    )


def test_events_v1_series_count_must_be_at_least_two(cluster):
    """events.k8s.io/v1: a series of one is not a series."""
    series = client.EventsV1EventSeries(count=1, last_observed_time=MICRO)
    with pytest.raises(ApiException) as error:
        cluster.events.create_namespaced_event(
            cluster.namespace, new_event("x", cluster.namespace, series=series)
        )
    assert error.value.status == 422
    assert status(error)["message"] == (
        'Event "x" is invalid: series.count: Invalid value: "": should be at least 2'
    )


def test_events_v1_note_is_immutable(cluster):
    """events.k8s.io/v1 update: everything but series is immutable (errors use core names)."""
    cluster.events.create_namespaced_event(cluster.namespace, new_event("x", cluster.namespace))
    with pytest.raises(ApiException) as error:
        cluster.events.patch_namespaced_event("x", cluster.namespace, {"note": "changed"})
    assert error.value.status == 422
    assert status(error)["message"] == (
        'Event "x" is invalid: message: Invalid value: "changed": field is immutable'
    )


def test_events_v1_series_may_be_updated(cluster):
    """events.k8s.io/v1 update: a growing series is allowed."""
    cluster.events.create_namespaced_event(cluster.namespace, new_event("x", cluster.namespace))
    later = MICRO + timedelta(seconds=10)
    patched = cluster.events.patch_namespaced_event(
        "x",
        cluster.namespace,
        {"series": {"count": 2, "lastObservedTime": later.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}},
    )
    assert (patched.series.count, patched.series.last_observed_time) == (2, later)


def test_events_v1_not_found_names_the_group(cluster):
    """Errors through events.k8s.io carry the group: ``events.events.k8s.io "x" not found``."""
    with pytest.raises(ApiException) as error:
        cluster.events.read_namespaced_event("nope", cluster.namespace)
    assert error.value.status == 404
    assert status(error)["message"] == 'events.events.k8s.io "nope" not found'
    assert status(error)["details"] == {
        "name": "nope",
        "group": "events.k8s.io",
        "kind": "events",
    }


def test_events_v1_field_selector_uses_the_new_field_names(cluster):
    """events.k8s.io/v1 selects on regarding.* and reportingController; old names are refused."""
    cluster.events.create_namespaced_event(cluster.namespace, new_event("x", cluster.namespace))
    by_regarding = cluster.events.list_namespaced_event(
        cluster.namespace,
        field_selector="regarding.name=web,reportingController=example.com/controller",
    )
    assert [item.metadata.name for item in by_regarding.items] == ["x"]
    with pytest.raises(ApiException) as error:
        cluster.events.list_namespaced_event(
            cluster.namespace, field_selector="involvedObject.name=web"
        )
    assert error.value.status == 400
    assert status(error)["message"] == "field label not supported: involvedObject.name"


# -- namespace lifecycle admission ----------------------------------------------------

local_only = pytest.mark.skipif(
    REAL_CLUSTER, reason="puts a namespace into Terminating with a LocalApiServer helper"
)


@pytest.fixture
def terminating(cluster: Cluster) -> str:
    """The test's namespace, with an event in it, put into Terminating."""
    assert cluster.server is not None
    cluster.core.create_namespaced_event(cluster.namespace, core_event("old", cluster.namespace))
    cluster.server.terminate_namespace(cluster.namespace)
    return cluster.namespace


@local_only
def test_create_in_a_terminating_namespace_is_forbidden_with_its_cause(cluster, terminating):
    """A namespace being deleted refuses new content: 403 with cause NamespaceTerminating."""
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(terminating, core_event("e1", terminating))
    assert error.value.status == 403
    cause = {
        "reason": "NamespaceTerminating",
        "message": f"namespace {terminating} is being terminated",
        "field": "metadata.namespace",
    }
    assert status(error) == failure(
        403,
        "Forbidden",
        f'events "e1" is forbidden: unable to create new content in namespace {terminating} '
        "because it is being terminated",
        {"name": "e1", "kind": "events", "causes": [cause]},
    )


@local_only
def test_terminating_namespace_still_takes_patches_and_deletes(cluster, terminating):
    """Only creates are refused: existing events can still be patched and deleted."""
    assert cluster.core.patch_namespaced_event("old", terminating, {"count": 2}).count == 2
    cluster.core.delete_namespaced_event("old", terminating)
    assert cluster.core.list_namespaced_event(terminating).items == []


@local_only
def test_terminating_namespace_refusal_comes_before_validation(cluster, terminating):
    """Order of checks: admission (403) comes before validation (422)."""
    invalid = core_event("e1", terminating)
    invalid["involvedObject"]["namespace"] = "elsewhere"
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(terminating, invalid)
    assert error.value.status == 403


@local_only
def test_terminating_refusal_names_the_generate_name_prefix(cluster, terminating):
    """Admission runs before names are generated: the message names the generateName prefix."""
    body = new_event("", terminating)
    body.metadata = client.V1ObjectMeta(generate_name="web.")
    with pytest.raises(ApiException) as error:
        cluster.events.create_namespaced_event(terminating, body)
    assert status(error)["message"].startswith(
        'events.events.k8s.io "web." is forbidden: unable to create new content in namespace '
    )
    assert status(error)["details"]["group"] == "events.k8s.io"


def test_namespace_mismatch_is_checked_before_the_namespace_exists(cluster):
    """Order of checks: the body's namespace (400) comes before the namespace lookup (404)."""
    missing = f"{cluster.namespace}-missing"
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespaced_event(missing, core_event("e1", cluster.namespace))
    assert error.value.status == 400


# -- namespaces and discovery ---------------------------------------------------------


def test_namespace_lifecycle_create_read_list_delete(cluster):
    """Namespaces: POST 201 (Active), GET, list, DELETE puts it into Terminating."""
    name = f"{cluster.namespace}-ns"
    created, code, _ = cluster.core.create_namespace_with_http_info(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    assert code == 201
    assert created.status.phase == "Active"
    assert created.metadata.labels["kubernetes.io/metadata.name"] == name
    assert cluster.core.read_namespace(name).metadata.uid == created.metadata.uid
    names = [item.metadata.name for item in cluster.core.list_namespace().items]
    assert name in names
    assert "default" in names
    deleted = cluster.core.delete_namespace(name)
    deleted = deleted if isinstance(deleted, dict) else deleted.to_dict()
    assert deleted["status"]["phase"] == "Terminating"


def test_namespace_with_an_invalid_name_is_invalid(cluster):
    """A namespace name is a DNS-1123 label."""
    with pytest.raises(ApiException) as error:
        cluster.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name="Bad_NS"))
        )
    assert error.value.status == 422
    assert status(error)["message"].startswith(
        'Namespace "Bad_NS" is invalid: metadata.name: Invalid value: "Bad_NS": '
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters"
    )


def test_discovery_lists_events_in_both_groups(cluster):
    """/api, /api/v1, /apis, /apis/events.k8s.io/v1 and /version describe the Events API."""
    core_resources = {r.name: r for r in cluster.core.get_api_resources().resources}
    assert core_resources["events"].kind == "Event"
    assert core_resources["events"].namespaced is True
    assert {"create", "get", "list", "patch", "update", "delete"} <= set(
        core_resources["events"].verbs
    )
    assert core_resources["namespaces"].namespaced is False
    events_resources = {r.name: r for r in cluster.events.get_api_resources().resources}
    assert events_resources["events"].kind == "Event"
    groups = {g.name for g in client.ApisApi(cluster.api_client).get_api_versions().groups}
    assert "events.k8s.io" in groups
    assert "v1" in client.CoreApi(cluster.api_client).get_api_versions().versions
    assert client.VersionApi(cluster.api_client).get_code().major == "1"
