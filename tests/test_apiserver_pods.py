"""LocalApiServer serves Pods: create, get, list, watch, delete, and kubectl describe.

Through the official client and the real ``kubectl`` (skipped when it is not installed):
pods are real objects with the checks and defaults of a create, listed with the selectors
kubectl uses, watched, deleted, described with their events at the bottom, and
``LocalApiServer.add_pod`` makes a running one that the library and kubectl see like any
other.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from k8s_logging_events.testing import FakeClock, LocalApiServer
from tests._api import failure, status


def pod(name: str, *containers: dict[str, Any], **metadata: Any) -> Any:
    """A pod manifest with the given containers (one ``web`` container by default)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **metadata},
        "spec": {"containers": list(containers) or [{"name": "web", "image": "nginx:1.27"}]},
    }


def raw(server: LocalApiServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request in plain HTTP (for bodies the official client would refuse to send)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# -- create, get, delete ---------------------------------------------------------------------


def test_a_created_pod_gets_identity_defaults_and_a_pending_status(k8s_core_v1):
    """POST: uid, resourceVersion, creationTimestamp; the server's defaults; a sent status is
    replaced by Pending and the QoS class (PrepareForCreate)."""
    body = pod("web-0", {"name": "web", "image": "nginx:1.27"}, labels={"app": "web"})
    body["status"] = {"phase": "Running", "podIP": "1.2.3.4"}
    created = k8s_core_v1.create_namespaced_pod("default", body)
    assert created.metadata.uid
    assert created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.namespace == "default"
    assert (created.status.phase, created.status.qos_class, created.status.pod_ip) == (
        "Pending",
        "BestEffort",
        None,
    )
    spec = created.spec
    assert (spec.restart_policy, spec.dns_policy, spec.scheduler_name) == (
        "Always",
        "ClusterFirst",
        "default-scheduler",
    )
    assert (spec.service_account_name, spec.termination_grace_period_seconds) == ("default", 30)
    assert [(t.key, t.toleration_seconds) for t in spec.tolerations] == [
        ("node.kubernetes.io/not-ready", 300),
        ("node.kubernetes.io/unreachable", 300),
    ]
    container = spec.containers[0]
    assert (container.image_pull_policy, container.termination_message_path) == (
        "IfNotPresent",
        "/dev/termination-log",
    )
    read = k8s_core_v1.read_namespaced_pod("web-0", "default")
    assert read.metadata.uid == created.metadata.uid
    assert read.metadata.labels == {"app": "web"}


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ({}, "BestEffort"),
        ({"requests": {"cpu": "100m"}}, "Burstable"),
        ({"limits": {"cpu": "500m", "memory": "128Mi"}}, "Guaranteed"),
        (
            {
                "requests": {"cpu": "0.5", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "128Mi"},
            },
            "Guaranteed",
        ),
        (
            {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"cpu": "1", "memory": "64Mi"},
            },
            "Burstable",
        ),
    ],
)
def test_the_qos_class_follows_requests_and_limits(k8s_core_v1, resources, qos):
    """Requests default to limits; equal cpu and memory requests and limits are Guaranteed."""
    body = pod("p", {"name": "c", "image": "busybox", "resources": resources})
    assert k8s_core_v1.create_namespaced_pod("default", body).status.qos_class == qos


def test_image_pull_policy_defaults_by_tag(k8s_core_v1):
    """:latest or no tag pulls Always; a tag or a digest IfNotPresent; a given one stays."""
    containers = [
        {"name": "a", "image": "nginx"},
        {"name": "b", "image": "nginx:latest"},
        {"name": "c", "image": "registry:5000/nginx:1.27"},
        {"name": "d", "image": "nginx@sha256:" + "0" * 64},
        {"name": "e", "image": "nginx", "imagePullPolicy": "Never"},
    ]
    created = k8s_core_v1.create_namespaced_pod("default", pod("p", *containers))
    assert [c.image_pull_policy for c in created.spec.containers] == [
        "Always",
        "Always",
        "IfNotPresent",
        "IfNotPresent",
        "Never",
    ]


def test_get_of_a_missing_pod_is_the_real_404(k8s_core_v1):
    """404 NotFound with ``pods "x" not found`` and details naming the pod."""
    with pytest.raises(ApiException) as error:
        k8s_core_v1.read_namespaced_pod("nope", "default")
    assert status(error) == failure(
        404, "NotFound", 'pods "nope" not found', {"name": "nope", "kind": "pods"}
    )


def test_delete_answers_the_pod_and_removes_it_at_once(k8s_apiserver, k8s_core_v1):
    """DELETE answers the deleted Pod (200); a second one and a read are 404 (no kubelet
    here: deletion is immediate); a uid precondition that fails is a 409."""
    created = k8s_core_v1.create_namespaced_pod("default", pod("web-0"))
    with pytest.raises(ApiException) as conflict:
        k8s_core_v1.delete_namespaced_pod(
            "web-0", "default", body={"preconditions": {"uid": "other"}}
        )
    assert conflict.value.status == 409
    assert status(conflict)["message"] == (
        'Operation cannot be fulfilled on Pod "web-0": the UID in the precondition (other) does '
        f"not match the UID in record ({created.metadata.uid}). The object might have been "
        "deleted and then recreated"
    )
    deleted = k8s_core_v1.delete_namespaced_pod("web-0", "default")
    assert (deleted.kind, deleted.metadata.uid) == ("Pod", created.metadata.uid)
    for call in (k8s_core_v1.read_namespaced_pod, k8s_core_v1.delete_namespaced_pod):
        with pytest.raises(ApiException) as error:
            call("web-0", "default")
        assert error.value.status == 404
    assert k8s_apiserver.pods() == []


def test_dry_run_checks_a_pod_without_storing_it(k8s_apiserver, k8s_core_v1):
    """dryRun=All answers the pod that would be created, and stores nothing."""
    answered = k8s_core_v1.create_namespaced_pod("default", pod("p"), dry_run="All")
    assert answered.metadata.name == "p"
    assert k8s_apiserver.pods() == []


def test_generate_name_makes_the_name(k8s_core_v1):
    """generateName: the prefix and five generated characters."""
    body = pod("")
    body["metadata"] = {"generateName": "web-"}
    name = k8s_core_v1.create_namespaced_pod("default", body).metadata.name
    assert name.startswith("web-")
    assert len(name) == len("web-") + 5


# -- what is refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"metadata": {"name": "p"}, "spec": {}},
            'Pod "p" is invalid: spec.containers: Required value',
        ),
        (
            pod("p", {"name": "web"}),
            'Pod "p" is invalid: spec.containers[0].image: Required value',
        ),
        (
            pod("p", {"image": "nginx"}),
            'Pod "p" is invalid: spec.containers[0].name: Required value',
        ),
        (
            pod("p", {"name": "web", "image": "a"}, {"name": "web", "image": "b"}),
            'Pod "p" is invalid: spec.containers[1].name: Duplicate value: "web"',
        ),
        (
            pod("p", {"name": "Web", "image": "nginx"}),
            'Pod "p" is invalid: spec.containers[0].name: Invalid value: "Web": a lowercase '
            "RFC 1123 label must consist of",
        ),
        (
            pod("Bad_Name"),
            'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase '
            "RFC 1123 subdomain must consist of",
        ),
        (
            {**pod("p"), "spec": {**pod("p")["spec"], "restartPolicy": "Sometimes"}},
            'Pod "p" is invalid: spec.restartPolicy: Unsupported value: "Sometimes": '
            'supported values: "Always", "OnFailure", "Never"',
        ),
    ],
)
def test_invalid_pods_are_422_with_the_servers_messages(k8s_apiserver, body, message):
    """The checks of a pod create the local server makes, with the real messages (sent in
    plain HTTP: the official client refuses some of these bodies itself)."""
    code, answer = raw(k8s_apiserver, "POST", "/api/v1/namespaces/default/pods", body)
    assert (code, answer["reason"]) == (422, "Invalid")
    assert answer["message"].startswith(message)
    assert k8s_apiserver.pods() == []


def test_bodies_that_are_not_pods_are_400(k8s_apiserver):
    """Not an object, the wrong kind, a spec of the wrong shape, another namespace: 400."""
    path = "/api/v1/namespaces/default/pods"
    cases = [
        ([1, 2], "the object provided is unrecognized (must be of type Pod)"),
        ({"kind": "Event", "metadata": {"name": "p"}}, 'no kind "Event" is registered'),
        (
            {"metadata": {"name": "p"}, "spec": {"containers": {"name": "web"}}},
            "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of "
            "type []v1.Container",
        ),
        (
            {"metadata": {"name": "p", "namespace": "other"}, "spec": pod("p")["spec"]},
            "the namespace of the provided object does not match the namespace sent on the request",
        ),
    ]
    for body, message in cases:
        code, answer = raw(k8s_apiserver, "POST", path, body)
        assert (code, answer["reason"]) == (400, "BadRequest"), body
        assert message in answer["message"]


def test_namespace_rules_apply_to_pods(k8s_apiserver, k8s_core_v1):
    """A missing namespace is a 404, a terminating one a 403 for creates; a taken name 409."""
    with pytest.raises(ApiException) as missing:
        k8s_core_v1.create_namespaced_pod("shop", pod("p"))
    assert status(missing)["message"] == 'namespaces "shop" not found'
    k8s_apiserver.create_namespace("shop")
    k8s_core_v1.create_namespaced_pod("shop", pod("p"))
    with pytest.raises(ApiException) as taken:
        k8s_core_v1.create_namespaced_pod("shop", pod("p"))
    assert (taken.value.status, status(taken)["message"]) == (409, 'pods "p" already exists')
    k8s_apiserver.terminate_namespace("shop")
    with pytest.raises(ApiException) as terminating:
        k8s_core_v1.create_namespaced_pod("shop", pod("q"))
    assert status(terminating)["message"] == (
        'pods "q" is forbidden: unable to create new content in namespace shop because it is '
        "being terminated"
    )
    assert k8s_core_v1.read_namespaced_pod("p", "shop").metadata.name == "p"
    k8s_apiserver.finalize_namespace("shop")
    assert k8s_apiserver.pods() == []


# -- lists -------------------------------------------------------------------------------------


def test_lists_select_by_namespace_labels_and_fields(k8s_apiserver, k8s_core_v1):
    """Per namespace and across all; labelSelector; the pod's selectable fields (phase,
    node) as kubectl and controllers use them; another field is a 400."""
    k8s_apiserver.create_namespace("shop")
    k8s_core_v1.create_namespaced_pod("default", pod("a", labels={"app": "web"}))
    k8s_core_v1.create_namespaced_pod("shop", pod("b", labels={"app": "db"}))
    k8s_apiserver.add_pod("c", "shop", labels={"app": "web"})

    def names(pods: Any) -> list[str]:
        return [item.metadata.name for item in pods.items]

    assert names(k8s_core_v1.list_namespaced_pod("shop")) == ["b", "c"]
    assert names(k8s_core_v1.list_pod_for_all_namespaces()) == ["a", "b", "c"]
    assert names(k8s_core_v1.list_pod_for_all_namespaces(label_selector="app=web")) == ["a", "c"]
    running = k8s_core_v1.list_pod_for_all_namespaces(field_selector="status.phase=Running")
    assert names(running) == ["c"]
    on_node = k8s_core_v1.list_namespaced_pod("shop", field_selector="spec.nodeName=local-node")
    assert names(on_node) == ["c"]
    unscheduled = k8s_core_v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=")
    assert names(unscheduled) == ["a", "b"]
    with pytest.raises(ApiException) as error:
        k8s_core_v1.list_namespaced_pod("shop", field_selector="spec.containers=x")
    assert (error.value.status, status(error)["message"]) == (
        400,
        "field label not supported: spec.containers",
    )


def test_lists_page_with_limit_and_continue(k8s_core_v1):
    """limit and continue page through pods in name order, as kubectl's chunked lists do."""
    for name in ("a", "b", "c"):
        k8s_core_v1.create_namespaced_pod("default", pod(name))
    first = k8s_core_v1.list_namespaced_pod("default", limit=2)
    assert [item.metadata.name for item in first.items] == ["a", "b"]
    assert first.metadata.remaining_item_count == 1
    rest = k8s_core_v1.list_namespaced_pod("default", limit=2, _continue=first.metadata._continue)
    assert [item.metadata.name for item in rest.items] == ["c"]
    assert rest.metadata._continue is None


def test_discovery_lists_pods_with_their_verbs(k8s_core_v1):
    """/api/v1 names pods (namespaced, kind Pod, short name po) with the verbs served."""
    resources = {r.name: r for r in k8s_core_v1.get_api_resources().resources}
    pods = resources["pods"]
    assert (pods.kind, pods.namespaced, pods.short_names) == ("Pod", True, ["po"])
    assert sorted(pods.verbs) == ["create", "delete", "get", "list", "watch"]
    assert "watch" in resources["namespaces"].verbs


# -- watch -------------------------------------------------------------------------------------


def test_a_pod_watch_sees_existing_pods_then_changes(k8s_apiserver, k8s_core_v1):
    """ADDED for the pods there are, then ADDED and DELETED as pods come and go; another
    namespace's pods are not in a namespace's watch."""
    k8s_apiserver.create_namespace("shop")
    k8s_core_v1.create_namespaced_pod("default", pod("a"))
    w = watch.Watch()
    stream = w.stream(k8s_core_v1.list_namespaced_pod, "default", timeout_seconds=10)
    first = next(stream)
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "a")
    k8s_core_v1.create_namespaced_pod("shop", pod("elsewhere"))
    k8s_apiserver.add_pod("b")
    k8s_core_v1.delete_namespaced_pod("a", "default")
    changes = [next(stream) for _ in range(2)]
    w.stop()
    assert [(c["type"], c["object"].metadata.name) for c in changes] == [
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    assert changes[0]["object"].status.phase == "Running"


def test_a_watch_of_one_pod_by_path_and_from_a_resource_version(k8s_apiserver, k8s_core_v1):
    """/api/v1/watch/namespaces/NS/pods/NAME follows one pod from the list's resourceVersion."""
    rv = k8s_core_v1.list_namespaced_pod("default").metadata.resource_version
    k8s_core_v1.create_namespaced_pod("default", pod("a"))
    k8s_core_v1.create_namespaced_pod("default", pod("b"))
    k8s_core_v1.delete_namespaced_pod("b", "default")
    connection = http.client.HTTPConnection("127.0.0.1", k8s_apiserver.port, timeout=10)
    connection.request(
        "GET", f"/api/v1/watch/namespaces/default/pods/b?resourceVersion={rv}&timeoutSeconds=1"
    )
    response = connection.getresponse()
    lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    connection.close()
    assert [(line["type"], line["object"]["metadata"]["name"]) for line in lines] == [
        ("ADDED", "b"),
        ("DELETED", "b"),
    ]
    assert lines[0]["object"]["kind"] == "Pod"


# -- add_pod and pods() --------------------------------------------------------------------------


def test_add_pod_makes_a_running_pod_that_a_get_returns():
    """add_pod: a real pod, bound to local-node, running and ready, with the uid asked for;
    pods() returns what a GET returns."""
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    with LocalApiServer(clock=clock) as server, server.api_client() as api:
        made = server.add_pod(
            "web-0",
            uid="uid-1",
            containers=[{"name": "web", "image": "nginx:1.27"}],
            labels={"app": "web"},
        )
        read: Any = client.CoreV1Api(api).read_namespaced_pod("web-0", "default")
        code, fetched = raw(server, "GET", "/api/v1/namespaces/default/pods/web-0")
        assert code == 200
        assert server.pods() == [fetched] == [made]
        assert server.pods("other") == []
    assert (read.metadata.uid, read.spec.node_name, read.status.phase) == (
        "uid-1",
        "local-node",
        "Running",
    )
    (container,) = read.status.container_statuses
    assert (container.name, container.ready, container.restart_count) == ("web", True, 0)
    assert read.status.start_time == datetime(2024, 1, 1, tzinfo=UTC)
    assert {c.type: c.status for c in read.status.conditions}["Ready"] == "True"


def test_add_pod_keeps_a_status_given_and_refuses_what_the_server_refuses():
    """status= is stored as a kubelet would have written it; a missing namespace or an
    invalid pod is a ValueError with the server's message."""
    waiting = {
        "phase": "Pending",
        "containerStatuses": [
            {"name": "main", "ready": False, "state": {"waiting": {"reason": "ImagePullBackOff"}}}
        ],
    }
    with LocalApiServer() as server:
        made = server.add_pod("web-0", status=waiting)
        assert made["status"] == waiting
        with pytest.raises(ValueError, match='namespaces "shop" not found'):
            server.add_pod("web-0", "shop")
        with pytest.raises(ValueError, match=r"spec.containers\[0\].image: Required value"):
            server.add_pod("web-1", containers=[{"name": "main"}])
        with pytest.raises(ValueError, match='pods "web-0" already exists'):
            server.add_pod("web-0")


def test_reset_forgets_pods(k8s_apiserver):
    """reset() forgets pods with the events and namespaces."""
    k8s_apiserver.add_pod("web-0")
    k8s_apiserver.reset()
    assert k8s_apiserver.pods() == []


# -- kubectl --------------------------------------------------------------------------------------

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on the PATH")


def kubectl(server: LocalApiServer, tmp_path: Any, *args: str) -> str:
    """Run kubectl against ``server`` through a kubeconfig; return its standard output."""
    assert KUBECTL is not None
    server.kubeconfig(tmp_path / "kubeconfig")
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "kubeconfig"), "PATH": "/usr/bin"}
    result = subprocess.run(
        [KUBECTL, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def warn(server: LocalApiServer, api: Any, made: dict[str, Any], count: int) -> None:
    """A BackOff event about pod ``made`` (by uid), repeated ``count`` times over 3 minutes."""
    now = datetime.now(UTC)
    meta = made["metadata"]
    body: Any = {
        "metadata": {"name": f"{meta['name']}.backoff"},
        "involvedObject": {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
        },
        "reason": "BackOff",
        "message": 'Back-off pulling image "web:1.4"',
        "type": "Warning",
        "source": {"component": "kubelet", "host": "local-node"},
        "count": count,
        "firstTimestamp": now - timedelta(minutes=3),
        "lastTimestamp": now,
    }
    client.CoreV1Api(api).create_namespaced_event(meta["namespace"], body)


@needs_kubectl
def test_kubectl_describe_pod_prints_the_pod_and_its_events(tmp_path):
    """``kubectl describe pod NAME``: the pod's fields, then its events (found by uid) at
    the bottom, the repeated one with its count."""
    with LocalApiServer(tls=True, token="t0k", namespaces=["shop"]) as server:
        with server.api_client() as api:
            made = server.add_pod("web-0", "shop", containers=[{"name": "web", "image": "web:1.4"}])
            warn(server, api, made, 5)
        out = kubectl(server, tmp_path, "describe", "pod", "web-0", "-n", "shop")
    lines = out.splitlines()
    assert lines[0].split() == ["Name:", "web-0"]
    assert lines[1].split() == ["Namespace:", "shop"]
    assert "Node:             local-node/10.0.0.2" in lines
    assert "Status:           Running" in lines
    assert any(line.split() == ["Image:", "web:1.4"] for line in lines)
    events = lines[lines.index(next(line for line in lines if line.startswith("Events:"))) :]
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    row = events[3].split()
    assert row[:2] == ["Warning", "BackOff"]
    assert "(x5" in events[3]
    assert events[3].rstrip().endswith('kubelet  Back-off pulling image "web:1.4"')


@needs_kubectl
def test_kubectl_events_for_a_pod_and_get_pods(tmp_path):
    """``kubectl events --for pod/NAME`` lists that pod's events only; ``kubectl get pods``
    prints the pod table (READY, STATUS) for a running and a pending pod."""
    with LocalApiServer() as server, server.api_client() as api:
        made = server.add_pod("web-0")
        other = server.add_pod("web-1")
        warn(server, api, made, 3)
        warn(server, api, other, 1)
        client.CoreV1Api(api).create_namespaced_pod("default", pod("pending"))
        events = kubectl(server, tmp_path, "events", "--for", "pod/web-0").splitlines()
        table = kubectl(server, tmp_path, "get", "pods").splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert len(events) == 2
    assert "Pod/web-0" in events[1].split()
    assert "(x3" in events[1]
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line.split()[:4] for line in table[1:]] == [
        ["pending", "0/1", "Pending", "0"],
        ["web-0", "1/1", "Running", "0"],
        ["web-1", "1/1", "Running", "0"],
    ]


@needs_kubectl
def test_kubectl_run_creates_a_pod_that_describe_shows_pending(tmp_path):
    """``kubectl run`` creates a pod through the API; describe shows it Pending, unbound."""
    with LocalApiServer() as server:
        assert "pod/nginx created" in kubectl(server, tmp_path, "run", "nginx", "--image=nginx")
        (made,) = server.pods()
        out = kubectl(server, tmp_path, "describe", "pod", "nginx")
    assert made["metadata"]["labels"] == {"run": "nginx"}
    assert "Status:           Pending" in out.splitlines()
    assert "Node:             <none>" in out.splitlines()
    assert out.rstrip().endswith("Events:           <none>")
