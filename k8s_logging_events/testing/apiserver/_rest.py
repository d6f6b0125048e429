"""The REST surface of the local API server: routing, discovery and Namespaces.

Part of the local API server on the test side of the pipeline: :class:`RestApi` turns one
HTTP request into one HTTP response, independent of sockets and threads. It routes the
Events, Pods and Namespaces paths of core/v1 and events.k8s.io/v1 -- events to
:class:`~._rest_events.EventsApi`, pods to :class:`~._rest_pods.PodsApi`, watches of
either or of namespaces to ``_watch`` -- answers the discovery documents kubectl reads
(``/api``, ``/apis``, the resource lists, ``/version``, health checks) and serves
Namespaces (get, list, watch, create, delete into ``Terminating``) from the
:class:`~._store.Store`; API errors become their ``Status`` answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from k8s_logging_events.clock import Clock
from k8s_logging_events.testing.apiserver._errors import (
    ApiError,
    bad_request,
    not_found_path,
)
from k8s_logging_events.testing.apiserver._gofmt import go_json
from k8s_logging_events.testing.apiserver._objects import (
    CORE_API,
    EVENTS_API,
    NAMESPACES_RESOURCE,
    Api,
    Entry,
)
from k8s_logging_events.testing.apiserver._requests import (
    HttpRequest,
    HttpResponse,
    check_body_size,
    check_body_type,
    check_list_options,
    delete_options,
    error_response,
    json_body,
    not_allowed,
    ok,
    selectors,
    unrecognized_body,
)
from k8s_logging_events.testing.apiserver._rest_events import EventsApi
from k8s_logging_events.testing.apiserver._rest_pods import PodsApi
from k8s_logging_events.testing.apiserver._schema import NAMESPACE, DecodeError, decode
from k8s_logging_events.testing.apiserver._store import Store
from k8s_logging_events.testing.apiserver._tables import Tables, table_or
from k8s_logging_events.testing.apiserver._watch import watch_response

SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0+k8s-logging-events",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T00:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
"""What ``/version`` answers: the Kubernetes minor release whose behaviour this copies."""

_EVENT_VERBS = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
]
_NAMESPACE_VERBS = ["create", "delete", "get", "list", "watch"]
_POD_VERBS = ["create", "delete", "get", "list", "watch"]
_COLLECTIONS = ("events", "namespaces", "pods")


class RestApi:
    """Routes requests to the handlers and renders the answers.

    Args:
        store: the objects.
        clock: the time tables measure ages against.
        address: returns ``host:port`` for ``serverAddressByClientCIDRs``.
    """

    def __init__(self, store: Store, clock: Clock, address: Callable[[], str]) -> None:
        self._store = store
        self._address = address
        self._tables = Tables(clock)
        self._events = EventsApi(store, self._tables)
        self._pods = PodsApi(store, self._tables)

    # -- entry point ------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer ``request``; API errors become their Status responses."""
        try:
            return self._route(request)
        except ApiError as error:
            return error_response(error)

    def _route(self, request: HttpRequest) -> HttpResponse:
        path = request.path.rstrip("/") or "/"
        segments = [unquote(part) for part in path.split("/")[1:]] if path != "/" else []
        if not segments:
            return ok(
                {
                    "paths": [
                        "/api",
                        "/api/v1",
                        "/apis",
                        "/apis/events.k8s.io",
                        "/apis/events.k8s.io/v1",
                        "/healthz",
                        "/livez",
                        "/readyz",
                        "/version",
                    ]
                }
            )
        head = segments[0]
        if head in ("healthz", "livez", "readyz") and len(segments) == 1:
            return HttpResponse(200, b"ok", "text/plain; charset=utf-8")
        if head == "version" and len(segments) == 1:
            return ok(SERVER_VERSION)
        if head == "api":
            if len(segments) == 1:
                return ok(self._api_versions())
            if segments[1] == "v1":
                if len(segments) == 2:
                    return ok(self._core_resources())
                return self._resources(CORE_API, segments[2:], request)
        if head == "apis":
            if len(segments) == 1:
                return ok(self._group_list())
            if segments[1] == "events.k8s.io":
                if len(segments) == 2:
                    return ok({"kind": "APIGroup", "apiVersion": "v1", **self._events_group()})
                if segments[2] == "v1":
                    if len(segments) == 3:
                        return ok(self._events_resources())
                    return self._resources(EVENTS_API, segments[3:], request)
        raise not_found_path()

    # -- discovery --------------------------------------------------------------------

    def _api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self._address()}
            ],
        }

    @staticmethod
    def _events_group() -> dict[str, Any]:
        version = {"groupVersion": "events.k8s.io/v1", "version": "v1"}
        return {"name": "events.k8s.io", "versions": [version], "preferredVersion": version}

    def _group_list(self) -> dict[str, Any]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._events_group()]}

    @staticmethod
    def _event_resource() -> dict[str, Any]:
        return {
            "name": "events",
            "singularName": "event",
            "namespaced": True,
            "kind": "Event",
            "verbs": list(_EVENT_VERBS),
            "shortNames": ["ev"],
        }

    def _core_resources(self) -> dict[str, Any]:
        namespaces = {
            "name": "namespaces",
            "singularName": "namespace",
            "namespaced": False,
            "kind": "Namespace",
            "verbs": list(_NAMESPACE_VERBS),
            "shortNames": ["ns"],
        }
        pods = {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": list(_POD_VERBS),
            "shortNames": ["po"],
            "categories": ["all"],
        }
        return {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [self._event_resource(), namespaces, pods],
        }

    def _events_resources(self) -> dict[str, Any]:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "events.k8s.io/v1",
            "resources": [self._event_resource()],
        }

    # -- resources --------------------------------------------------------------------

    def _resources(self, api: Api, rest: list[str], request: HttpRequest) -> HttpResponse:
        method = request.method
        if rest[0] == "watch":
            return self._watch(api, rest[1:], request)
        if request.query.get("watch") in ("true", "1") and _collection(rest) is not None:
            return self._watch(api, rest, request)
        if rest == ["events"]:
            if method == "GET":
                return self._events.list_events(api, None, request)
            return not_allowed()
        if api is CORE_API and rest == ["pods"]:
            return self._pods.route(None, None, request)
        if rest[0] == "namespaces" and api is CORE_API and len(rest) <= 2:
            return self._namespaces(rest[1:], request)
        if (
            api is CORE_API
            and len(rest) in (3, 4)
            and rest[0] == "namespaces"
            and rest[2] == "pods"
        ):
            return self._pods.route(rest[1], rest[3] if len(rest) == 4 else None, request)
        if rest[0] != "namespaces" or len(rest) < 3 or rest[2] != "events" or len(rest) > 4:
            raise not_found_path()
        namespace = rest[1]
        if len(rest) == 3:
            if method == "GET":
                return self._events.list_events(api, namespace, request)
            if method == "POST":
                return self._events.create_event(api, namespace, request)
            if method == "DELETE":
                return self._events.delete_collection(api, namespace, request)
            return not_allowed()
        name = rest[3]
        if method == "GET":
            entry = self._store.get_event(api, namespace, name)
            return self._events.single(api, entry, request)
        if method == "PUT":
            return self._events.replace_event(api, namespace, name, request)
        if method == "PATCH":
            return self._events.patch_event(api, namespace, name, request)
        if method == "DELETE":
            return self._events.delete_event(api, namespace, name, request)
        return not_allowed()

    def _watch(self, api: Api, rest: list[str], request: HttpRequest) -> HttpResponse:
        """A watch of a collection, or (``/watch/.../NAME``) of the one object named."""
        name = None
        target = _collection(rest)
        if target is None and len(rest) > 1:
            target, name = _collection(rest[:-1]), rest[-1]
        if target is None:
            raise not_found_path()
        resource, namespace = target
        if resource == "events":
            return self._events.watch(api, namespace, name, request)
        if api is not CORE_API:
            raise not_found_path()
        if resource == "pods":
            return self._pods.watch(namespace, name, request)
        if namespace is not None:
            raise not_found_path()
        return self._watch_namespaces(name, request)

    # -- namespaces -------------------------------------------------------------------

    def _namespaces(self, rest: list[str], request: HttpRequest) -> HttpResponse:
        method = request.method
        if not rest:
            if method == "GET":
                return self._list_namespaces(request)
            if method == "POST":
                return self._create_namespace(request)
            return not_allowed()
        name = rest[0]
        if method == "GET":
            entry = self._store.get_namespace(name)
            return table_or(
                request, [entry], {}, self._tables.namespaces, lambda: ok(_namespace_json(entry))
            )
        if method == "DELETE":
            delete_options(request)
            return ok(_namespace_json(self._store.terminate_namespace(name)))
        return not_allowed()

    def _list_namespaces(self, request: HttpRequest) -> HttpResponse:
        check_list_options(request, watch=False)
        labels, fields = selectors(request, CORE_API, NAMESPACES_RESOURCE)
        entries, rv = self._store.list_namespaces(labels, fields)
        meta = {"resourceVersion": str(rv)}
        body = {
            "kind": "NamespaceList",
            "apiVersion": "v1",
            "metadata": meta,
            "items": [entry.obj for entry in entries],
        }
        return table_or(request, entries, meta, self._tables.namespaces, lambda: ok(body))

    def _watch_namespaces(self, name: str | None, request: HttpRequest) -> HttpResponse:
        return watch_response(
            request,
            CORE_API,
            NAMESPACES_RESOURCE,
            None,
            name,
            json_of=lambda entry: go_json(_namespace_json(entry)),
            table=self._tables.namespaces,
        )

    def _create_namespace(self, request: HttpRequest) -> HttpResponse:
        check_body_type(request)
        check_body_size(request)
        data = request.parsed()
        if not isinstance(data, dict):
            raise unrecognized_body("Namespace", request)
        body = {key: value for key, value in data.items() if key not in ("apiVersion", "kind")}
        try:
            namespace = decode(NAMESPACE, body, [])
        except DecodeError as exc:
            raise bad_request(
                f'Namespace in version "v1" cannot be handled as a Namespace: {exc}'
            ) from None
        namespace["metadata"].pop("namespace", None)
        entry = self._store.create_namespace(namespace)
        return HttpResponse(201, json_body(_namespace_json(entry)))


def _namespace_json(entry: Entry) -> dict[str, Any]:
    return {"kind": "Namespace", "apiVersion": "v1", **entry.obj}


def _collection(rest: list[str]) -> tuple[str, str | None] | None:
    """The (resource, namespace) of a collection path: ``events``, ``pods``, ``namespaces``,
    or ``namespaces/NS/events`` and ``namespaces/NS/pods``; None for any other path."""
    if len(rest) == 1 and rest[0] in _COLLECTIONS:
        return rest[0], None
    if len(rest) == 3 and rest[0] == "namespaces" and rest[2] in ("events", "pods"):
        return rest[2], rest[1]
    return None
