"""The Pods of the local API server's store.

Part of the local API server on the test side of the pipeline: :class:`PodStore` is a base
class of :class:`~._store.Store` and shares its lock, resourceVersion counter and change
histories. A pod create runs the steps of the real server in its order: NamespaceLifecycle
admission (404, 403 terminating), the defaults of the API server and its default admission
plugins, name generation, ``PrepareForCreate`` (status reset to ``Pending`` and the QoS
class) and validation (422), then storage (409 ``AlreadyExists``). Deletion is immediate:
there is no kubelet to finish a graceful one (the real server too deletes at once a pod
that is not scheduled or has finished). The rules themselves are in ``_pods``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from k8s_logging_events.testing.apiserver._errors import (
    invalid,
    not_found,
)
from k8s_logging_events.testing.apiserver._objects import (
    ADDED,
    CORE_API,
    PODS_RESOURCE,
    Api,
    Change,
    Entry,
    check_create_version,
    check_preconditions,
    created_meta,
    meta_with,
    unique_name,
)
from k8s_logging_events.testing.apiserver._pods import (
    default_pod,
    qos_class,
    validate_pod,
)


class PodStore:
    """Pods, kept beside the events and namespaces of the :class:`~._store.Store`."""

    lock: threading.RLock
    _rv: int
    _pods: dict[tuple[str, str], Entry]
    _generate: Callable[[str], str]

    def _next_rv(self) -> int:
        raise NotImplementedError

    def _now(self) -> datetime:
        raise NotImplementedError

    def _written_at(self) -> float:
        raise NotImplementedError

    def _record(self, resource: str, change: Change) -> None:
        raise NotImplementedError

    def _drop(self, resource: str, entry: Entry) -> Entry:
        raise NotImplementedError

    def _admit(
        self, namespace: str, creating: bool, resource_name: str, api: Api, resource: str = ""
    ) -> None:
        raise NotImplementedError

    # -- writes -------------------------------------------------------------------------

    def create_pod(
        self,
        pod: dict[str, Any],
        *,
        dry_run: bool = False,
        status: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        uid: str | None = None,
    ) -> Entry:
        """Create a pod from its decoded form (its namespace already checked).

        Args:
            pod: ``{metadata, spec, status}`` with ``metadata.namespace`` set.
            dry_run: check everything, store nothing.
            status: builds the stored status from the created pod (uid and defaults set);
                None gives what a create through the API gets: ``Pending`` and the QoS
                class.
            uid: the pod's uid (a fresh UUID when None, as always through the API).
        """
        with self.lock:
            meta = pod["metadata"]
            namespace = meta["namespace"]
            self._admit(
                namespace, True, meta.get("name") or meta.get("generateName", ""), CORE_API, "pods"
            )
            pod = default_pod(pod)
            meta, generated = created_meta(meta, self._generate, self._now(), uid)
            pod = {**pod, "metadata": meta}
            pod["status"] = (
                status(pod)
                if status is not None
                else {"phase": "Pending", "qosClass": qos_class(pod["spec"])}
            )
            errors = validate_pod(pod)
            if errors:
                raise invalid("Pod", meta.get("name", ""), errors)
            check_create_version(meta)
            meta = unique_name(self._pods, meta, generated, self._generate, "pods")
            pod = {**pod, "metadata": meta}
            key = (namespace, meta["name"])
            if dry_run:
                return Entry(pod, 0, self._written_at())
            rv = self._next_rv()
            pod["metadata"] = meta_with(meta, resourceVersion=str(rv))
            entry = Entry(pod, rv, self._written_at())
            self._pods[key] = entry
            self._record(PODS_RESOURCE, Change(rv, ADDED, entry, None))
            return entry

    def delete_pod(
        self, namespace: str, name: str, preconditions: dict[str, Any] | None = None
    ) -> Entry:
        """Delete a pod at once and return it as it was stored."""
        with self.lock:
            entry = self.get_pod(namespace, name)
            check_preconditions("Pod", entry, preconditions)
            return self._drop(PODS_RESOURCE, self._pods.pop((namespace, name)))

    def _drop_pods(self, namespace: str | None) -> None:
        """Delete every pod (of one namespace): a finalized namespace, a reset."""
        for key in sorted(self._pods):
            if namespace is None or key[0] == namespace:
                self._drop(PODS_RESOURCE, self._pods.pop(key))

    # -- reads --------------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> Entry:
        """Return one pod, or raise 404."""
        with self.lock:
            entry = self._pods.get((namespace, name))
            if entry is None:
                raise not_found("pods", name)
            return entry

    def pod_entries(self, namespace: str | None = None) -> list[Entry]:
        """The stored pods (of one namespace, or all) in key order."""
        with self.lock:
            return [
                self._pods[key]
                for key in sorted(self._pods)
                if namespace is None or key[0] == namespace
            ]
