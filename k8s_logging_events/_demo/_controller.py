"""The simulated controller of the demo: what it logs about which pods.

Part of the demo (``k8s_logging_events._demo``), at the top of the pipeline where an
application sits: three scenarios, each a pod and a reconcile function that logs about it
through :class:`~k8s_logging_events.handler.EventLoggerAdapter`; a :class:`Tally` that counts
what was logged (the expected counts); and the pods themselves -- manifest dicts when the
events go to a cluster, or real Pods created on the local API server (:func:`create_pods`,
with the status a kubelet would report for each story), so that the events are about pods
that exist and ``kubectl describe pod`` shows both.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from k8s_logging_events.testing import LocalApiServer

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes

IMAGE = "registry.example.com/shop/web:1.4.3"
PULL_ATTEMPTS = 4
BACKOFFS_PER_ATTEMPT = 3
PROBE_FAILURES = 12
MOUNT_FAILURES = 60


class Tally(logging.Filter):
    """Counts the records about an object, per (object name, reason): the expected counts."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        involved = getattr(record, "involved", None)
        if isinstance(involved, Mapping):
            key = (str(involved["metadata"]["name"]), str(getattr(record, "reason", "")))
            self.counts[key] = self.counts.get(key, 0) + 1
        return True


def simulated_pod(name: str, namespace: str) -> dict[str, Any]:
    """A simulated pod: a manifest dict with a fresh uid (events are looked up by it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
    }


def generated_name(prefix: str, rng: random.Random) -> str:
    """``prefix-<10>-<5>``, as a Deployment's ReplicaSet names its pods."""
    template = "".join(rng.choice(_NAME_CHARS) for _ in range(10))
    suffix = "".join(rng.choice(_NAME_CHARS) for _ in range(5))
    return f"{prefix}-{template}-{suffix}"


def _reconcile_image_pull(log: logging.LoggerAdapter[logging.Logger]) -> None:
    """A pod whose image does not exist: pulls fail, back-offs repeat (and are counted)."""
    for _ in range(PULL_ATTEMPTS):
        log.info('Pulling image "%s"', IMAGE, extra={"reason": "Pulling"})
        log.warning(
            'Failed to pull image "%s": manifest unknown', IMAGE, extra={"reason": "Failed"}
        )
        for _ in range(BACKOFFS_PER_ATTEMPT):
            log.warning('Back-off pulling image "%s"', IMAGE, extra={"reason": "BackOff"})


def _reconcile_probe(log: logging.LoggerAdapter[logging.Logger]) -> None:
    """A pod whose readiness probe fails with a new message each time: they aggregate."""
    log.info("Started container postgres", extra={"reason": "Started"})
    for attempt in range(PROBE_FAILURES):
        lag = 14 + 3 * attempt
        log.warning(
            "Readiness probe failed: replication lag %ds exceeds 10s",
            lag,
            extra={"reason": "Unhealthy"},
        )


def _reconcile_mount(log: logging.LoggerAdapter[logging.Logger]) -> None:
    """A pod that retries a mount in a tight loop: a burst for the spam filter."""
    for _ in range(MOUNT_FAILURES):
        log.warning(
            'MountVolume.SetUp failed for volume "config": configmap "cache-config" not found',
            extra={"reason": "FailedMount"},
        )
    log.info("Started container redis", extra={"reason": "Started"})


SCENARIOS = (
    ("web", _reconcile_image_pull, f"image {IMAGE} does not exist"),
    ("orders-db-0", _reconcile_probe, "readiness probe fails, a new message each time"),
    ("cache", _reconcile_mount, "a missing config map: a tight retry loop"),
)


_CONTAINERS = {
    "web": ("web", IMAGE),
    "orders-db-0": ("postgres", "postgres:16.4"),
    "cache": ("redis", "redis:7.4"),
}
"""Each scenario's container: its name and image."""


def create_pods(
    server: LocalApiServer, names: list[str], namespace: str, now: datetime
) -> list[dict[str, Any]]:
    """Create the scenarios' pods (named ``names``, in ``SCENARIOS`` order) on ``server``.

    Each has the status its story gives it, as a kubelet would report it: ``web`` waits
    pulling an image that does not exist, ``orders-db-0`` runs but is not ready (its
    readiness probe fails), ``cache`` runs (its mount failed, then it started). Returns
    the pods as the server stores them, uids included.
    """
    pods = []
    for index, (name, (prefix, _, _)) in enumerate(zip(names, SCENARIOS, strict=True)):
        container, image = _CONTAINERS[prefix]
        running, ready = prefix != "web", prefix == "cache"
        status = _kubelet_status(container, image, now, running=running, ready=ready)
        status["podIP"] = f"10.244.0.{index + 7}"
        status["podIPs"] = [{"ip": status["podIP"]}]
        pods.append(
            server.add_pod(
                name,
                namespace,
                containers=[{"name": container, "image": image}],
                labels={"app": prefix.removesuffix("-0")},
                status=status,
            )
        )
    return pods


def _kubelet_status(
    container: str, image: str, now: datetime, *, running: bool, ready: bool
) -> dict[str, Any]:
    """A pod status as a kubelet writes it, for a pod of one container."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if running:
        state: dict[str, Any] = {"running": {"startedAt": stamp}}
    else:
        state = {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}"',
            }
        }
    flag = "True" if ready else "False"
    conditions: list[dict[str, Any]] = [
        {"type": "PodReadyToStartContainers", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": flag},
        {"type": "ContainersReady", "status": flag},
        {"type": "PodScheduled", "status": "True"},
    ]
    for condition in conditions:
        condition["lastProbeTime"] = None
        condition["lastTransitionTime"] = stamp
        if condition["status"] == "False":
            condition["reason"] = "ContainersNotReady"
            condition["message"] = f"containers with unready status: [{container}]"
    return {
        "phase": "Running" if running else "Pending",
        "conditions": conditions,
        "hostIP": "10.0.0.2",
        "startTime": stamp,
        "containerStatuses": [
            {
                "name": container,
                "state": state,
                "lastState": {},
                "ready": ready,
                "restartCount": 0,
                "image": image,
                "imageID": "",
                "started": running,
            }
        ],
    }
