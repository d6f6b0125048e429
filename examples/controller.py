"""A controller loop with the official ``kubernetes`` client and ``EventLoggerAdapter``.

Each resync lists the pods labelled ``app=example`` with ``CoreV1Api.list_namespaced_pod``
and reconciles them one by one; ``EventLoggerAdapter`` binds each ``V1Pod`` as the
``involved`` object, so every log call about the pod becomes an event on it. (Models from a
list call carry no kind or apiVersion; the library takes them from the class, ``V1Pod``.)

Run it with ``python examples/controller.py``. Without a server it starts the library's
local API server and creates two pods there (:func:`add_example_pods`: one stuck pulling its
image, one running), which the loop then reconciles. ``--server URL`` (or
``$EVENTS_API_SERVER``) names another server, e.g. ``kubectl proxy``'s
``http://127.0.0.1:8001`` for a real cluster, where it reconciles your pods labelled
``app=example`` in ``--namespace``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import threading
from typing import Any

from kubernetes import client

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
    """The pods to reconcile: those the list call returns."""
    pods: list[client.V1Pod] = core.list_namespaced_pod(namespace, label_selector=SELECTOR).items
    return pods


def add_example_pods(server: LocalApiServer, namespace: str) -> None:
    """Create two pods on a local server, as a kubelet would report them: one stuck, one running."""
    image = "registry.example.com/web:2.0"
    waiting = {
        "reason": "ImagePullBackOff",
        "message": f'Back-off pulling image "{image}"',
    }
    for name, uid, phase, state in (
        ("web-1", "9b7c1d52-0000-4000-8000-000000000001", "Pending", {"waiting": waiting}),
        ("web-2", "9b7c1d52-0000-4000-8000-000000000002", "Running", {"running": {}}),
    ):
        container = {
            "name": "web",
            "image": image,
            "imageID": "",
            "ready": "running" in state,
            "restartCount": 0,
            "state": state,
        }
        server.add_pod(
            name,
            namespace,
            uid=uid,
            containers=[{"name": "web", "image": image}],
            labels={"app": "example"},
            status={"phase": phase, "containerStatuses": [container]},
        )


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
        url = server or os.environ.get(SERVER_ENV)
        if not url:
            local = stack.enter_context(LocalApiServer(namespaces=[namespace]))
            add_example_pods(local, namespace)
            url = local.url
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
    report = "\n".join(tables) or f"No pods labelled {SELECTOR} in namespace {namespace}.\n"
    print(report, end="")
    return report


def describe(api_client: client.ApiClient, events: list[Any]) -> str:
    """``kubectl describe``'s Events block for ``V1Event`` models (via their JSON form)."""
    to_json: Any = api_client.sanitize_for_serialization  # the client leaves it untyped
    return format_events([to_json(event) for event in events])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--server", help=f"the API server's URL (default: ${SERVER_ENV}, or local)")
    parser.add_argument("--namespace", default="default", help="where the pods are (default)")
    parser.add_argument("--resyncs", type=int, default=3, help="how many times to list (3)")
    args = parser.parse_args()
    main(args.server, args.namespace, args.resyncs)
