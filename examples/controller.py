"""A controller loop with the official ``kubernetes`` client and ``EventLoggerAdapter``.

Each resync lists the pods labelled ``app=example`` with ``CoreV1Api.list_namespaced_pod``
and reconciles them one by one; ``EventLoggerAdapter`` binds each ``V1Pod`` as the
``involved`` object, so every log call about the pod becomes an event on it. (Models from a
list call carry no kind or apiVersion; the library takes them from the class, ``V1Pod``.)

Run it with ``python examples/controller.py``. Without a server it starts the library's
local Events API server, which serves Events but no Pods: the loop then reconciles two
``V1Pod`` models made here instead. ``--server URL`` (or ``$EVENTS_API_SERVER``) names
another server, e.g. ``kubectl proxy``'s ``http://127.0.0.1:8001`` for a real cluster, where
it reconciles your pods labelled ``app=example`` in ``--namespace``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_logging_events import EventLoggerAdapter, KubernetesEventHandler, format_events
from k8s_logging_events.testing import LocalApiServer

SERVER_ENV = "EVENTS_API_SERVER"
"""The environment variable that names the API server (as a URL) instead of ``--server``."""

SELECTOR = "app=example"
"""The pods this controller looks after."""

log = logging.getLogger("example.controller")


def reconcile(pod: client.V1Pod) -> None:
    """Look at one pod and report what is wrong with it, as events on the pod."""
    events = EventLoggerAdapter(log, pod, action="Reconcile")
    statuses = (pod.status and pod.status.container_statuses) or []
    stuck = 0
    for status in statuses:
        waiting = status.state.waiting if status.state else None
        if waiting is not None:
            stuck += 1
            events.warning(
                "Container %s is waiting: %s",
                status.name,
                waiting.message or waiting.reason,
                extra={"reason": waiting.reason or "Waiting"},
            )
    if not stuck:
        events.info("All containers are running", extra={"reason": "Synced"})


def list_pods(core: client.CoreV1Api, namespace: str) -> list[client.V1Pod]:
    """The pods to reconcile: those of the list call, or made-up ones on a server without Pods."""
    try:
        pods: list[client.V1Pod] = core.list_namespaced_pod(
            namespace, label_selector=SELECTOR
        ).items
    except ApiException as error:
        if error.status != 404:
            raise
        return example_pods(namespace)  # the local Events API server serves no Pods
    return pods


def example_pods(namespace: str) -> list[client.V1Pod]:
    """Two ``V1Pod`` models, as a list call would return them: one stuck, one running."""

    def pod(name: str, uid: str, state: client.V1ContainerState) -> client.V1Pod:
        return client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=name, namespace=namespace, uid=uid, labels={"app": "example"}
            ),
            status=client.V1PodStatus(
                container_statuses=[
                    client.V1ContainerStatus(
                        name="web",
                        image="registry.example.com/web:2.0",
                        image_id="",
                        ready=state.running is not None,
                        restart_count=0,
                        state=state,
                    )
                ]
            ),
        )

    waiting = client.V1ContainerStateWaiting(
        reason="ImagePullBackOff",
        message='Back-off pulling image "registry.example.com/web:2.0"',
    )
    return [
        pod(
            "web-1",
            "9b7c1d52-0000-4000-8000-000000000001",
            client.V1ContainerState(waiting=waiting),
        ),
        pod(
            "web-2",
            "9b7c1d52-0000-4000-8000-000000000002",
            client.V1ContainerState(running=client.V1ContainerStateRunning()),
        ),
    ]


def run(
    core: client.CoreV1Api,
    namespace: str,
    *,
    resyncs: int = 3,
    interval: float = 0.0,
    stop: threading.Event | None = None,
) -> list[client.V1Pod]:
    """Reconcile the pods ``resyncs`` times, ``interval`` seconds apart (or until ``stop``)."""
    stop = stop or threading.Event()
    pods: list[client.V1Pod] = []
    for _ in range(resyncs):
        pods = list_pods(core, namespace)
        for pod in pods:
            reconcile(pod)
        if stop.wait(interval):
            break
    return pods


def main(server: str | None = None, namespace: str = "default", resyncs: int = 3) -> str:
    """Run the controller against a server (a local one by default) and print its events."""
    with contextlib.ExitStack() as stack:
        url = server or os.environ.get(SERVER_ENV) or stack.enter_context(LocalApiServer()).url
        configuration = client.Configuration()
        configuration.host = url
        api_client = stack.enter_context(client.ApiClient(configuration))
        core = client.CoreV1Api(api_client)

        handler = KubernetesEventHandler(component="example-controller", sink=url)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            pods = run(core, namespace, resyncs=resyncs)
        finally:
            log.removeHandler(handler)
            handler.close()  # flushes what is still being written

        tables = []
        for pod in pods:
            metadata = pod.metadata or client.V1ObjectMeta()
            events = core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.uid={metadata.uid}"
            ).items
            tables.append(f"Name:  {metadata.name}\n{describe(api_client, events)}")
    report = "\n".join(tables)
    print(report, end="")
    return report


def describe(api_client: client.ApiClient, events: list[Any]) -> str:
    """``kubectl describe``'s Events block for ``V1Event`` models (via their JSON form)."""
    to_json: Any = api_client.sanitize_for_serialization  # the client leaves it untyped
    return format_events([to_json(event) for event in events])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help=f"the API server's URL (default: ${SERVER_ENV}, or local)")
    parser.add_argument("--namespace", default="default", help="where the pods are (default)")
    parser.add_argument("--resyncs", type=int, default=3, help="how many times to list (3)")
    args = parser.parse_args()
    main(args.server, args.namespace, args.resyncs)
