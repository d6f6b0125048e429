"""The Pods handlers of the local API server: create, get, list, watch, delete.

Part of the local API server on the test side of the pipeline, behind the router
(:class:`~._rest.RestApi`): :class:`PodsApi` serves ``/api/v1/namespaces/{ns}/pods[/{name}]``
and ``/api/v1/pods`` the way the API server's handlers do before the registry -- decoding
the body (``the object provided is unrecognized``, unknown fields as ``Warning`` headers),
the body's namespace against the URL, ``dryRun`` -- then calls the pod store
(``_store_pods``) and renders the answer as JSON or as the Table ``kubectl get pods`` reads.
What a pod is allowed to be is in ``_pods``.
"""

from __future__ import annotations

from typing import Any

from k8s_logging_events.testing.apiserver._errors import bad_request, namespace_mismatch
from k8s_logging_events.testing.apiserver._objects import CORE_API, PODS_RESOURCE, Entry
from k8s_logging_events.testing.apiserver._pods import decode_pod
from k8s_logging_events.testing.apiserver._requests import (
    HttpRequest,
    HttpResponse,
    check_body_size,
    check_body_type,
    delete_options,
    field_validation,
    is_dry_run,
    not_allowed,
    typed_body,
    unknown_fields,
)
from k8s_logging_events.testing.apiserver._schema import DecodeError
from k8s_logging_events.testing.apiserver._store import Store
from k8s_logging_events.testing.apiserver._tables import Tables, list_or_table, table_or
from k8s_logging_events.testing.apiserver._watch import watch_response

_POD_PREFIX = b'{"kind":"Pod","apiVersion":"v1",'


def pod_json(entry: Entry) -> bytes:
    """A pod as a single-object body: kind and apiVersion first, as Go writes them."""
    return _POD_PREFIX + entry.item_json(CORE_API.name)[1:]


_CANNOT_HANDLE = 'Pod in version "v1" cannot be handled as a Pod'
"""How the decoder's errors about a Pod body begin."""


class PodsApi:
    """Answers the Pods paths of core/v1.

    Args:
        store: the pods.
        tables: renders Tables for ``kubectl get pods``.
    """

    def __init__(self, store: Store, tables: Tables) -> None:
        self._store = store
        self._tables = tables

    def route(self, namespace: str | None, name: str | None, request: HttpRequest) -> HttpResponse:
        """Answer a request to a pod path (the router checked the path's shape)."""
        method = request.method
        if name is None:
            if method == "GET":
                return self.list_pods(namespace, request)
            if method == "POST" and namespace is not None:
                return self.create_pod(namespace, request)
        elif namespace is not None:
            if method == "GET":
                return self.single(self._store.get_pod(namespace, name), request)
            if method == "DELETE":
                options = delete_options(request)
                if options.get("dryRun") == ["All"]:
                    return self.single(self._store.get_pod(namespace, name), request)
                entry = self._store.delete_pod(namespace, name, options.get("preconditions"))
                return self.single(entry, request)
        return not_allowed()

    def single(self, entry: Entry, request: HttpRequest, status: int = 200) -> HttpResponse:
        return table_or(
            request,
            [entry],
            {},
            self._tables.pods,
            lambda: HttpResponse(status, pod_json(entry) + b"\n"),
        )

    def list_pods(self, namespace: str | None, request: HttpRequest) -> HttpResponse:
        return list_or_table(
            request, CORE_API, PODS_RESOURCE, namespace, self._store.list_page, self._tables.pods
        )

    def create_pod(self, namespace: str, request: HttpRequest) -> HttpResponse:
        check_body_type(request)
        check_body_size(request)
        dry_run = is_dry_run(request, "CreateOptions")
        directive = field_validation(request, "CreateOptions")
        pod, unknown = self._decode(request)
        warnings = unknown_fields(unknown, directive, _CANNOT_HANDLE)
        body_namespace = pod["metadata"].get("namespace", "")
        if body_namespace and body_namespace != namespace:
            raise namespace_mismatch()
        pod["metadata"]["namespace"] = namespace
        entry = self._store.create_pod(pod, dry_run=dry_run)
        response = self.single(entry, request, 201)
        response.headers.extend(warnings)
        return response

    def watch(self, namespace: str | None, name: str | None, request: HttpRequest) -> HttpResponse:
        """Check a watch of pods and describe it; the server streams it."""
        return watch_response(
            request,
            CORE_API,
            PODS_RESOURCE,
            namespace,
            name,
            json_of=pod_json,
            table=self._tables.pods,
        )

    @staticmethod
    def _decode(request: HttpRequest) -> tuple[dict[str, Any], list[str]]:
        body = typed_body(request, "v1", "Pod")
        unknown: list[str] = []
        try:
            pod = decode_pod(body, unknown)
        except DecodeError as exc:
            raise bad_request(f"{_CANNOT_HANDLE}: {exc}") from None
        pod["metadata"].pop("managedFields", None)
        return pod, unknown
