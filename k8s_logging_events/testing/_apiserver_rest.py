"""The REST surface of :class:`~k8s_logging_events.testing.LocalApiServer`.

Part of the local API server on the test side of the pipeline: it turns one HTTP request
(method, path, query, headers, body) into one HTTP response, independent of sockets and
threads. It routes the Events and Namespaces paths of core/v1 and events.k8s.io/v1 and the
discovery documents kubectl reads, decodes and checks request bodies (the steps the API
server's handlers do before the registry: decoding, the namespace of the body against the
URL, the name against the URL, the patch content type), calls the
:class:`~._apiserver_store.Store`, and renders JSON -- or a ``meta.k8s.io`` ``Table`` when
the client asks for one, as ``kubectl get`` does. A watch is answered with a
:class:`~._apiserver_watch.WatchRequest` in the response, which the server streams.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from k8s_logging_events.clock import Clock
from k8s_logging_events.testing._apiserver_errors import (
    ApiError,
    FieldError,
    bad_request,
    invalid,
    method_not_supported,
    name_mismatch,
    namespace_mismatch,
    not_found,
    not_found_path,
    status_body,
    unsupported_media_type,
)
from k8s_logging_events.testing._apiserver_patch import (
    JsonPatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    json_patch_failed,
)
from k8s_logging_events.testing._apiserver_schema import (
    CORE_EVENT,
    EVENTS_EVENT,
    NAMESPACE,
    DecodeError,
    decode,
    events_to_core,
    parse_stored,
)
from k8s_logging_events.testing._apiserver_selectors import (
    CORE_FIELD_LABELS,
    EVENTS_FIELD_LABELS,
    NAMESPACE_FIELD_LABELS,
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from k8s_logging_events.testing._apiserver_store import Api, Entry, Store
from k8s_logging_events.testing._apiserver_validation import CORE, EVENTS
from k8s_logging_events.testing._apiserver_watch import WatchRequest

__all__ = ["CORE_API", "EVENTS_API", "HttpRequest", "HttpResponse", "RestApi"]

CORE_API = Api(CORE, "", "v1")
EVENTS_API = Api(EVENTS, "events.k8s.io", "events.k8s.io/v1")

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
"""The patch content types a built-in resource accepts, in the order the server lists them."""

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
_NAMESPACE_VERBS = ["create", "delete", "get", "list"]

_UNPARSED: Any = object()


class Headers(Protocol):
    """Request headers: case-insensitive ``get`` (an ``email.message.Message`` will do)."""

    def get(self, name: str, /) -> str | None:
        """Return the header's value, or None."""
        ...


@dataclass(slots=True)
class HttpRequest:
    """One HTTP request, already read off the socket."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Headers
    body: bytes = b""
    json_body: Any = _UNPARSED
    """The body parsed as JSON (None when absent or not JSON), filled in on first use."""

    def header(self, name: str) -> str:
        """Return a header value, or "" when absent."""
        return self.headers.get(name) or ""

    def parsed(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        if self.json_body is _UNPARSED:
            self.json_body = None
            if self.body:
                try:
                    self.json_body = json.loads(self.body)
                except ValueError:
                    self.json_body = None
                else:
                    if _SURROGATE_ESCAPE.search(self.body) or b"\xed" in self.body:
                        self.json_body = _go_strings(self.json_body)
        return self.json_body


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _go_strings(value: Any) -> Any:
    """Go's decoder replaces invalid UTF-16 and UTF-8 (a lone surrogate) with U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_go_strings(item) for item in value]
    if isinstance(value, dict):
        return {_go_strings(key): _go_strings(item) for key, item in value.items()}
    return value


@dataclass(slots=True)
class HttpResponse:
    """One HTTP response, ready to be written."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""
    """The Kubernetes reason when the body is a failure Status ("" otherwise)."""
    watch: WatchRequest | None = None
    """For a watch: what to stream (the body is then empty and the answer chunked)."""


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def error_response(error: ApiError) -> HttpResponse:
    """Render an :class:`ApiError` as its Status response."""
    return HttpResponse(
        error.code,
        _json(error.status),
        headers=list(error.headers),
        reason=error.status.get("reason", ""),
    )


def _go_json_error(text: bytes) -> str:
    """Describe why ``text`` is not JSON the way Go's decoder would."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(exc.doc) or not exc.doc[exc.pos :].strip():
            return "unexpected end of JSON input"
        char = exc.doc[exc.pos]
        where = (
            "looking for beginning of value"
            if "Expecting value" in exc.msg
            else "after top-level value"
        )
        if "delimiter" in exc.msg or "property name" in exc.msg:
            where = (
                "after object key"
                if "':'" in exc.msg
                else "looking for beginning of object key string"
            )
        return f"invalid character {char!r} {where}"
    except ValueError:
        pass
    return "invalid JSON"


def _summarize(data: bytes) -> str:
    """``summarizeData``: the first 30 bytes, as text when it looks like JSON, else hex."""
    if not data:
        return "<empty>"
    head = data[:30]
    suffix = " ..." if len(data) > 30 else ""
    if data[:1] == b"{":
        return head.decode("utf-8", "replace") + suffix
    return binascii.hexlify(head).decode() + suffix


def _human_duration(seconds: float) -> str:
    """``duration.HumanDuration``: what kubectl prints in AGE and LAST SEEN columns."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _column(name: str, description: str, priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "type": "string",
        "format": fmt,
        "description": description,
        "priority": priority,
    }


_EVENT_COLUMNS = [
    _column("Last Seen", "When the most recent occurrence was recorded."),
    _column("Type", "Type of this event (Normal, Warning)."),
    _column("Reason", "Why the object moved into its current status."),
    _column("Object", "The object that this event is about."),
    _column("Subobject", "The piece of the object the event is about.", 1),
    _column("Source", "The component reporting this event.", 1),
    _column("Message", "A human-readable description of the status of this operation."),
    _column("First Seen", "When the event was first recorded.", 1),
    _column("Count", "The number of times this event has occurred.", 1),
    _column("Name", "Name must be unique within a namespace.", 1, "name"),
]
_NAMESPACE_COLUMNS = [
    _column("Name", "Name must be unique within a namespace.", 0, "name"),
    _column("Status", "The status of the namespace"),
    _column("Age", "When the namespace was created."),
]


class RestApi:
    """Routes requests to the store and renders the answers.

    Args:
        store: the objects.
        clock: the time tables measure ages against.
        address: returns ``host:port`` for ``serverAddressByClientCIDRs``.
    """

    def __init__(self, store: Store, clock: Clock, address: Callable[[], str]) -> None:
        self.store = store
        self._clock = clock
        self._address = address
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        """Pods that GET /api/v1/namespaces/{ns}/pods/{name} serves, by (namespace, name):
        the one read ``default_involved="pod"`` makes to learn a pod's uid."""

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
            return self._ok(
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
            return self._ok(SERVER_VERSION)
        if head == "api":
            if len(segments) == 1:
                return self._ok(self._api_versions())
            if segments[1] == "v1":
                if len(segments) == 2:
                    return self._ok(self._core_resources())
                return self._resources(CORE_API, segments[2:], request)
        if head == "apis":
            if len(segments) == 1:
                return self._ok(self._group_list())
            if segments[1] == "events.k8s.io":
                if len(segments) == 2:
                    return self._ok(
                        {"kind": "APIGroup", "apiVersion": "v1", **self._events_group()}
                    )
                if segments[2] == "v1":
                    if len(segments) == 3:
                        return self._ok(self._events_resources())
                    return self._resources(EVENTS_API, segments[3:], request)
        raise not_found_path()

    # -- discovery --------------------------------------------------------------------

    def _ok(self, body: Any) -> HttpResponse:
        return HttpResponse(200, _json(body))

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
        return {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [self._event_resource(), namespaces],
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
        watch_path = rest[0] == "watch"
        if watch_path or (
            request.query.get("watch") in ("true", "1") and rest[-1] in ("events", "namespaces")
        ):
            return self._watch(api, rest[1:] if watch_path else rest, request)
        if rest == ["events"]:
            if method == "GET":
                return self._list_events(api, None, request)
            return self._not_allowed()
        if rest[0] == "namespaces" and api is CORE_API and len(rest) <= 2:
            return self._namespaces(rest[1:], request)
        if api is CORE_API and len(rest) == 4 and rest[0] == "namespaces" and rest[2] == "pods":
            return self._read_pod(rest[1], rest[3], request)
        if rest[0] != "namespaces" or len(rest) < 3 or rest[2] != "events" or len(rest) > 4:
            raise not_found_path()
        namespace = rest[1]
        if len(rest) == 3:
            if method == "GET":
                return self._list_events(api, namespace, request)
            if method == "POST":
                return self._create_event(api, namespace, request)
            if method == "DELETE":
                return self._delete_collection(api, namespace, request)
            return self._not_allowed()
        name = rest[3]
        if method == "GET":
            entry = self.store.get_event(api, namespace, name)
            return self._single(api, entry, request)
        if method == "PUT":
            return self._replace_event(api, namespace, name, request)
        if method == "PATCH":
            return self._patch_event(api, namespace, name, request)
        if method == "DELETE":
            return self._delete_event(api, namespace, name, request)
        return self._not_allowed()

    # -- watch ------------------------------------------------------------------------

    def _watch(self, api: Api, rest: list[str], request: HttpRequest) -> HttpResponse:
        """Check a watch request and describe it; the server streams it."""
        if not rest:
            raise not_found_path()
        if rest[-1] == "namespaces" or (rest[0] == "namespaces" and len(rest) == 2):
            raise method_not_supported("namespaces", "watch", "")
        if rest == ["events"]:
            namespace, name = None, None
        elif rest[0] == "namespaces" and len(rest) in (3, 4) and rest[2] == "events":
            namespace, name = rest[1], (rest[3] if len(rest) == 4 else None)
        else:
            raise not_found_path()
        if request.method != "GET":
            return self._not_allowed()
        selector = request.query.get("fieldSelector", "")
        if name is not None:
            # /watch/.../events/NAME is a watch of the collection selected by name
            escaped = name.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
            selector = (
                f"{selector},metadata.name={escaped}" if selector else f"metadata.name={escaped}"
            )
        convert = self._field_converter(api)
        try:
            labels = parse_label_selector(request.query.get("labelSelector", ""))
            fields = parse_field_selector(selector, convert)
        except SelectorError as exc:
            raise bad_request(str(exc)) from None
        rv = request.query.get("resourceVersion", "")
        if rv and not rv.isdigit():
            error = FieldError.invalid(
                "resourceVersion", rv, f'strconv.ParseUint: parsing "{rv}": invalid syntax'
            )
            raise invalid("events", "", [error], api.group)
        raw_timeout = request.query.get("timeoutSeconds", "")
        try:
            timeout = float(int(raw_timeout)) if raw_timeout else None
        except ValueError:
            raise bad_request(
                f'strconv.ParseInt: parsing "{raw_timeout}": invalid syntax'
            ) from None
        initial = request.query.get("sendInitialEvents")
        version = self._table_version(request)
        watch = WatchRequest(
            api=api,
            namespace=namespace,
            labels=labels,
            fields=fields,
            resource_version=rv,
            timeout=timeout,
            send_initial_events=None if initial is None else initial in ("true", "1"),
            bookmarks=request.query.get("allowWatchBookmarks") in ("true", "1"),
            encode=self._watch_encoder(api, request, version),
        )
        return HttpResponse(200, b"", watch=watch)

    def _watch_encoder(
        self, api: Api, request: HttpRequest, version: str | None
    ) -> Callable[[Entry, bool], bytes]:
        if version is None:
            return lambda entry, _first: api.prefix + entry.item_json(api.name)[1:]

        def table(entry: Entry, first: bool) -> bytes:
            meta = {"resourceVersion": entry.obj["metadata"].get("resourceVersion", "")}
            rendered = self._event_table([entry], version, api, request, meta)
            if not first:
                # the real server sends the column definitions with the first event only
                rendered["columnDefinitions"] = None
            return _json(rendered)

        return table

    @staticmethod
    def _not_allowed() -> HttpResponse:
        message = "the server does not allow this method on the requested resource"
        return error_response(ApiError(status_body(405, "MethodNotAllowed", message, {})))

    # -- rendering --------------------------------------------------------------------

    @staticmethod
    def _table_version(request: HttpRequest) -> str | None:
        accept = request.header("Accept")
        if "as=Table" not in accept:
            return None
        for option in accept.split(","):
            params = {
                key.strip(): value.strip()
                for key, _, value in (part.partition("=") for part in option.split(";")[1:])
            }
            if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
                return params.get("v", "v1")
        return None

    def _single(
        self, api: Api, entry: Entry, request: HttpRequest, status: int = 200
    ) -> HttpResponse:
        version = self._table_version(request)
        if version is not None:
            return self._ok(self._event_table([entry], version, api, request, {}))
        body = api.prefix + entry.item_json(api.name)[1:] + b"\n"
        return HttpResponse(status, body)

    def _list_meta(self, rv: int, start: tuple[str, str] | None, remaining: int) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if start is not None:
            token = json.dumps({"rv": rv, "start": list(start)}).encode()
            meta["continue"] = base64.urlsafe_b64encode(token).decode()
            meta["remainingItemCount"] = remaining
        return meta

    def _event_table(
        self,
        entries: list[Entry],
        version: str,
        api: Api,
        request: HttpRequest,
        meta: dict[str, Any],
    ) -> dict[str, Any]:
        now = self._clock.now()

        def since(value: str | None) -> str:
            moment = parse_stored(value)
            return (
                "<unknown>" if moment is None else _human_duration((now - moment).total_seconds())
            )

        include = request.query.get("includeObject", "Metadata")
        rows = []
        for entry in entries:
            event = entry.obj
            first = (
                since(event["firstTimestamp"])
                if event["firstTimestamp"]
                else since(event["eventTime"])
            )
            last = since(event["lastTimestamp"]) if event["lastTimestamp"] else first
            count = event.get("count", 0)
            series = event.get("series")
            if series is not None:
                last = since(series.get("lastObservedTime"))
                count = series.get("count", 0)
            elif count == 0:
                count = 1
            involved = event["involvedObject"]
            kind = involved.get("kind", "").lower()
            target = f"{kind}/{involved['name']}" if involved.get("name") else kind
            component = event["source"].get("component") or event["reportingComponent"]
            host = event["source"].get("host") or event["reportingInstance"]
            source = f"{component}, {host}" if host else component
            cells = [
                last,
                event.get("type", ""),
                event.get("reason", ""),
                target,
                involved.get("fieldPath", ""),
                source,
                event.get("message", "").strip(),
                first,
                count,
                entry.name,
            ]
            rows.append(self._row(cells, entry, api, include))
        return self._table(version, _EVENT_COLUMNS, rows, meta)

    def _row(self, cells: list[Any], entry: Entry, api: Api | None, include: str) -> dict[str, Any]:
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            if api is None:
                row["object"] = {"kind": "Namespace", "apiVersion": "v1", **entry.obj}
            else:
                row["object"] = {
                    "kind": "Event",
                    "apiVersion": api.api_version,
                    **entry.view(api.name),
                }
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": entry.obj["metadata"],
            }
        return row

    @staticmethod
    def _table(
        version: str,
        columns: list[dict[str, Any]],
        rows: list[dict[str, Any]],
        meta: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "kind": "Table",
            "apiVersion": f"meta.k8s.io/{version}",
            "metadata": meta,
            "columnDefinitions": columns,
            "rows": rows,
        }

    # -- query parsing ----------------------------------------------------------------

    @staticmethod
    def _selectors(
        request: HttpRequest, convert: Callable[[str], str]
    ) -> tuple[LabelSelector, FieldSelector]:
        try:
            labels = parse_label_selector(request.query.get("labelSelector", ""))
            fields = parse_field_selector(request.query.get("fieldSelector", ""), convert)
        except SelectorError as exc:
            raise bad_request(str(exc)) from None
        return labels, fields

    @staticmethod
    def _field_converter(api: Api) -> Callable[[str], str]:
        def convert(label: str) -> str:
            if api is CORE_API:
                if label in CORE_FIELD_LABELS:
                    return label
            elif label in EVENTS_FIELD_LABELS:
                return EVENTS_FIELD_LABELS[label]
            raise SelectorError(f"field label not supported: {label}")

        return convert

    @staticmethod
    def _dry_run(request: HttpRequest, kind: str) -> bool:
        value = request.query.get("dryRun", "")
        if value in ("", "All"):
            return value == "All"
        error = FieldError("FieldValueNotSupported", "dryRun", value, 'supported values: "All"')
        raise invalid(kind, "", [error], "meta.k8s.io")

    @staticmethod
    def _limit(request: HttpRequest) -> tuple[int, tuple[str, str] | None]:
        raw_limit = request.query.get("limit", "")
        try:
            limit = int(raw_limit) if raw_limit else 0
        except ValueError:
            raise bad_request(f'strconv.ParseInt: parsing "{raw_limit}": invalid syntax') from None
        token = request.query.get("continue", "")
        start: tuple[str, str] | None = None
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = (str(decoded["start"][0]), str(decoded["start"][1]))
            except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
                raise bad_request("continue key is not valid: illegal base64 data") from None
        return max(limit, 0), start

    # -- events -----------------------------------------------------------------------

    def _list_events(self, api: Api, namespace: str | None, request: HttpRequest) -> HttpResponse:
        labels, fields = self._selectors(request, self._field_converter(api))
        limit, start = self._limit(request)
        entries, rv, following, remaining = self.store.list_events(
            namespace, labels, fields, limit=limit, start=start
        )
        meta = self._list_meta(rv, following, remaining)
        version = self._table_version(request)
        if version is not None:
            return self._ok(self._event_table(entries, version, api, request, meta))
        head = json.dumps(
            {"kind": "EventList", "apiVersion": api.api_version, "metadata": meta},
            separators=(",", ":"),
        ).encode()
        items = b",".join(entry.item_json(api.name) for entry in entries)
        return HttpResponse(200, head[:-1] + b',"items":[' + items + b"]}\n")

    def _decode_event(self, api: Api, request: HttpRequest) -> tuple[dict[str, Any], list[str]]:
        """Decode a create/replace body into the canonical form (the handler's decode step)."""
        data = request.parsed()
        if not isinstance(data, dict):
            reason = (
                _go_json_error(request.body)
                if data is None
                else (
                    "json: cannot unmarshal array into Go value of type struct "
                    '{ APIVersion string "json:\\"apiVersion,omitempty\\""; '
                    'Kind string "json:\\"kind,omitempty\\"" }'
                )
            )
            raise bad_request(
                "the object provided is unrecognized (must be of type Event): couldn't get "
                f"version/kind; json parse error: {reason} ({_summarize(request.body)})"
            )
        api_version = data.get("apiVersion") or api.api_version
        kind = data.get("kind") or "Event"
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise bad_request(
                "the object provided is unrecognized (must be of type Event): "
                "couldn't get version/kind; json parse error: "
                "json: cannot unmarshal non-string into Go struct field .apiVersion of type string "
                f"({_summarize(request.body)})"
            )
        version = api_version.rsplit("/", 1)[-1]
        if api_version != api.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({api.api_version})"
            )
        if kind != "Event":
            raise bad_request(
                f"{kind} in version {json.dumps(version)} cannot be handled as a Event: "
                f'no kind "{kind}" is registered for version "{api_version}"'
            )
        body = {key: value for key, value in data.items() if key not in ("apiVersion", "kind")}
        unknown: list[str] = []
        try:
            decoded = decode(CORE_EVENT if api is CORE_API else EVENTS_EVENT, body, unknown)
        except DecodeError as exc:
            raise bad_request(
                f'{kind} in version "{version}" cannot be handled as a Event: {exc}'
            ) from None
        event = decoded if api is CORE_API else events_to_core(decoded)
        event["metadata"].pop("managedFields", None)
        return event, unknown

    @staticmethod
    def _warnings(unknown: list[str]) -> list[tuple[str, str]]:
        return [("Warning", f'299 - "unknown field \\"{path}\\""') for path in unknown]

    def _create_event(self, api: Api, namespace: str, request: HttpRequest) -> HttpResponse:
        event, unknown = self._decode_event(api, request)
        body_namespace = event["metadata"].get("namespace", "")
        if body_namespace and body_namespace != namespace:
            raise namespace_mismatch()
        dry_run = self._dry_run(request, "CreateOptions")
        event["metadata"]["namespace"] = namespace
        entry = self.store.create_event(api, event, dry_run=dry_run)
        response = self._single(api, entry, request, 201)
        response.headers.extend(self._warnings(unknown))
        return response

    def _replace_event(
        self, api: Api, namespace: str, name: str, request: HttpRequest
    ) -> HttpResponse:
        event, unknown = self._decode_event(api, request)
        meta = event["metadata"]
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise namespace_mismatch()
        if meta.get("name", "") != name:
            raise name_mismatch(meta.get("name", ""), name)
        dry_run = self._dry_run(request, "UpdateOptions")
        entry, created = self.store.update_event(
            api, namespace, name, lambda _current: event, allow_create=True, dry_run=dry_run
        )
        response = self._single(api, entry, request, 201 if created else 200)
        response.headers.extend(self._warnings(unknown))
        return response

    def _patch_event(
        self, api: Api, namespace: str, name: str, request: HttpRequest
    ) -> HttpResponse:
        content_type = request.header("Content-Type").split(";", 1)[0].strip()
        if content_type not in PATCH_TYPES:
            raise unsupported_media_type(PATCH_TYPES)
        apply = content_type == APPLY_PATCH
        if apply and not request.query.get("fieldManager"):
            error = FieldError.required("fieldManager", "is required for apply patch")
            raise invalid("PatchOptions", "", [error], "meta.k8s.io")
        dry_run = self._dry_run(request, "PatchOptions")
        patch = self._parse_patch(content_type, request)

        def make(current: Entry | None) -> dict[str, Any]:
            if current is None:
                document: Any = {}
            else:
                document = {
                    "kind": "Event",
                    "apiVersion": api.api_version,
                    **current.view(api.name),
                }
            if content_type == JSON_PATCH:
                try:
                    patched = apply_json_patch(document, patch)
                except JsonPatchError:
                    raise json_patch_failed() from None
            elif content_type == STRATEGIC_MERGE_PATCH:
                patched = apply_strategic_merge_patch(document, patch)
            else:
                patched = apply_merge_patch(document, patch)
            return self._decode_patched(api, patched, patch)

        entry, created = self.store.update_event(
            api, namespace, name, make, allow_create=apply, dry_run=dry_run
        )
        return self._single(api, entry, request, 201 if created else 200)

    @staticmethod
    def _parse_patch(content_type: str, request: HttpRequest) -> Any:
        patch = request.parsed()
        if content_type == MERGE_PATCH:
            if patch is None:
                raise bad_request("Invalid JSON Patch")
            return patch
        if patch is None and request.body.strip() != b"null":
            reason = _go_json_error(request.body)
            if content_type == APPLY_PATCH:
                raise bad_request(
                    f"error decoding YAML: {reason} "
                    "(LocalApiServer reads apply patches written as JSON)"
                )
            raise bad_request(reason)
        if content_type == JSON_PATCH:
            if not isinstance(patch, list):
                kind = "object" if isinstance(patch, dict) else "null" if patch is None else "value"
                raise bad_request(
                    f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch"
                )
            return patch
        if not isinstance(patch, dict):
            kind = "array" if isinstance(patch, list) else "value"
            raise bad_request(
                f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
            )
        return patch

    @staticmethod
    def _decode_patched(api: Api, patched: Any, patch: Any) -> dict[str, Any]:
        shown = json.dumps(patch, separators=(",", ":"))
        if not isinstance(patched, dict):
            error = FieldError.invalid(
                "patch",
                shown,
                f"json: cannot unmarshal {type(patched).__name__} into Go value of type v1.Event",
            )
            raise invalid("", "", [error])
        body = {key: value for key, value in patched.items() if key not in ("apiVersion", "kind")}
        try:
            decoded = decode(CORE_EVENT if api is CORE_API else EVENTS_EVENT, body, [])
        except DecodeError as exc:
            raise invalid("", "", [FieldError.invalid("patch", shown, str(exc))]) from None
        event = decoded if api is CORE_API else events_to_core(decoded)
        event["metadata"].pop("managedFields", None)
        return event

    def _delete_options(self, request: HttpRequest) -> dict[str, Any]:
        if not request.body.strip():
            return {}
        options = request.parsed()
        if not isinstance(options, dict):
            raise bad_request(
                f"couldn't get version/kind; json parse error: {_go_json_error(request.body)}"
            )
        return options

    def _delete_event(
        self, api: Api, namespace: str, name: str, request: HttpRequest
    ) -> HttpResponse:
        options = self._delete_options(request)
        preconditions = options.get("preconditions") or {}
        dry_run = options.get("dryRun") == ["All"] or request.query.get("dryRun") == "All"
        if dry_run:
            entry = self.store.get_event(api, namespace, name)
        else:
            entry = self.store.delete_event(api, namespace, name, preconditions)
        details: dict[str, Any] = {"name": entry.name}
        if api.group:
            details["group"] = api.group
        details["kind"] = "events"
        details["uid"] = entry.obj["metadata"].get("uid", "")
        return self._ok(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
        )

    def _delete_collection(self, api: Api, namespace: str, request: HttpRequest) -> HttpResponse:
        self._delete_options(request)
        labels, fields = self._selectors(request, self._field_converter(api))
        entries = self.store.delete_events(namespace, labels, fields)
        head = json.dumps(
            {
                "kind": "EventList",
                "apiVersion": api.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
            },
            separators=(",", ":"),
        ).encode()
        items = b",".join(entry.item_json(api.name) for entry in entries)
        return HttpResponse(200, head[:-1] + b',"items":[' + items + b"]}\n")

    # -- pods (read only) -------------------------------------------------------------

    def _read_pod(self, namespace: str, name: str, request: HttpRequest) -> HttpResponse:
        if request.method != "GET":
            return self._not_allowed()
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise not_found("pods", name)
        return self._ok(pod)

    # -- namespaces -------------------------------------------------------------------

    def _namespace_json(self, entry: Entry) -> dict[str, Any]:
        return {"kind": "Namespace", "apiVersion": "v1", **entry.obj}

    def _namespaces(self, rest: list[str], request: HttpRequest) -> HttpResponse:
        method = request.method
        if not rest:
            if method == "GET":
                return self._list_namespaces(request)
            if method == "POST":
                return self._create_namespace(request)
            return self._not_allowed()
        name = rest[0]
        if method == "GET":
            entry = self.store.get_namespace(name)
            version = self._table_version(request)
            if version is not None:
                return self._ok(self._namespace_table([entry], version, request, {}))
            return self._ok(self._namespace_json(entry))
        if method == "DELETE":
            self._delete_options(request)
            return self._ok(self._namespace_json(self.store.terminate_namespace(name)))
        return self._not_allowed()

    def _list_namespaces(self, request: HttpRequest) -> HttpResponse:
        def convert(label: str) -> str:
            if label in NAMESPACE_FIELD_LABELS:
                return label
            raise SelectorError(
                f'"{label}" is not a known field selector: only "metadata.name", "status.phase"'
            )

        labels, fields = self._selectors(request, convert)
        entries, rv = self.store.list_namespaces(labels, fields)
        meta = {"resourceVersion": str(rv)}
        version = self._table_version(request)
        if version is not None:
            return self._ok(self._namespace_table(entries, version, request, meta))
        return self._ok(
            {
                "kind": "NamespaceList",
                "apiVersion": "v1",
                "metadata": meta,
                "items": [entry.obj for entry in entries],
            }
        )

    def _namespace_table(
        self, entries: list[Entry], version: str, request: HttpRequest, meta: dict[str, Any]
    ) -> dict[str, Any]:
        now = self._clock.now()
        include = request.query.get("includeObject", "Metadata")
        rows = []
        for entry in entries:
            created = parse_stored(entry.obj["metadata"].get("creationTimestamp"))
            age = (
                "<unknown>" if created is None else _human_duration((now - created).total_seconds())
            )
            cells = [entry.name, entry.obj["status"].get("phase", ""), age]
            rows.append(self._row(cells, entry, None, include))
        return self._table(version, _NAMESPACE_COLUMNS, rows, meta)

    def _create_namespace(self, request: HttpRequest) -> HttpResponse:
        data = request.parsed()
        if not isinstance(data, dict):
            raise bad_request(
                "the object provided is unrecognized (must be of type Namespace): "
                f"couldn't get version/kind; json parse error: {_go_json_error(request.body)} "
                f"({_summarize(request.body)})"
            )
        body = {key: value for key, value in data.items() if key not in ("apiVersion", "kind")}
        try:
            namespace = decode(NAMESPACE, body, [])
        except DecodeError as exc:
            raise bad_request(
                f'Namespace in version "v1" cannot be handled as a Namespace: {exc}'
            ) from None
        namespace["metadata"].pop("namespace", None)
        entry = self.store.create_namespace(namespace)
        return HttpResponse(201, _json(self._namespace_json(entry)))
