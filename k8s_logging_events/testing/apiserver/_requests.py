"""One HTTP request and its answer, as the local API server's REST layer sees them.

Part of the local API server on the test side of the pipeline, between the transport
(:mod:`._http`, which reads an :class:`HttpRequest` off a connection and writes the
:class:`HttpResponse`) and the handlers (:mod:`._rest`, :mod:`._rest_events`): the request
with its body parsed lazily as Go's decoder reads JSON, the response (for a watch, the
checked :class:`WatchRequest` that :mod:`._watch` streams), and the parsing of the query
parameters that many handlers share -- selectors, ``limit``/``continue``, ``dryRun``
and the ``Accept`` header of a Table -- with the API server's messages for bad values.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from k8s_logging_events.testing.apiserver._auth import ANONYMOUS
from k8s_logging_events.testing.apiserver._errors import (
    ApiError,
    FieldError,
    bad_request,
    invalid,
    status_body,
    unsupported_media_type,
)
from k8s_logging_events.testing.apiserver._gofmt import (
    GoText,
    go_json,
    go_json_error,
    go_quote,
    go_strings,
    summarize_data,
)
from k8s_logging_events.testing.apiserver._objects import Api, Entry, in_selection
from k8s_logging_events.testing.apiserver._resources import Resource, resource_of
from k8s_logging_events.testing.apiserver._selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)

MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
"""The most a write's body may hold: the apiserver's default ``MaxRequestBodyBytes``."""

BODY_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
"""The media types a real server decodes a create or update body from, in the order its 415
lists them (the local server decodes only JSON)."""

_UNPARSED: Any = object()
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class Headers:
    """Request headers in arrival order, looked up without regard to case."""

    __slots__ = ("_lookup", "pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self._lookup = {name.lower(): value for name, value in pairs}

    def get(self, name: str, default: str | None = None, /) -> str | None:
        """Return the (last) value of header ``name``, or ``default``."""
        return self._lookup.get(name.lower(), default)

    def as_dict(self) -> dict[str, str]:
        """The headers as a dict keyed by the names as sent."""
        return dict(self.pairs)


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
    user: str = ANONYMOUS
    """The authenticated user's name (set by the dispatcher)."""

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
                        self.json_body = go_strings(self.json_body)
        return self.json_body


Encoder = Callable[[Entry, bool], bytes]
"""Renders one object as the watch event's object: (entry, first event of the stream)."""


@dataclass(slots=True)
class WatchRequest:
    """What one watch asks for, parsed and checked by the REST layer."""

    api: Api
    resource: Resource
    """What is watched: events, pods or namespaces."""
    namespace: str | None
    """Only this namespace's objects (all when None)."""
    labels: LabelSelector
    fields: FieldSelector
    resource_version: str
    """As sent: "" (now, with the current state first), "0" (any), or a number."""
    timeout: float | None
    """``timeoutSeconds``: end the stream after this many seconds (None: never)."""
    send_initial_events: bool | None
    """``sendInitialEvents`` (None when absent)."""
    bookmarks: bool
    """``allowWatchBookmarks``."""
    encode: Encoder
    """The object of each watch event (JSON, or a one-row Table)."""

    def selects(self, entry: Entry) -> bool:
        """Whether an object is in this watch's selection."""
        if self.namespace is not None and entry.namespace != self.namespace:
            return False
        return in_selection(entry, self.labels, self.fields, self.resource.fields_of)


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


def json_body(value: Any) -> bytes:
    """A JSON response body, as the API server's encoder ends it (with a newline)."""
    return go_json(value) + b"\n"


def ok(body: Any, status: int = 200) -> HttpResponse:
    """A JSON answer."""
    return HttpResponse(status, json_body(body))


def list_response(
    kind: str, api_version: str, meta: dict[str, Any], items: Iterable[bytes]
) -> HttpResponse:
    """A list answer (``EventList``, ``PodList``): its head, then the items' cached JSON."""
    head = json.dumps(
        {"kind": kind, "apiVersion": api_version, "metadata": meta}, separators=(",", ":")
    ).encode()
    return HttpResponse(200, head[:-1] + b',"items":[' + b",".join(items) + b"]}\n")


def error_response(error: ApiError) -> HttpResponse:
    """Render an :class:`ApiError` as its Status response."""
    return HttpResponse(
        error.code,
        json_body(error.status),
        headers=list(error.headers),
        reason=error.status.get("reason", ""),
    )


def check_body_type(request: HttpRequest) -> None:
    """Refuse a create or update body in a media type no decoder takes, as the input
    serializer's negotiation does: 415, before the body is read (none given means JSON)."""
    media_type = request.header("Content-Type").split(";", 1)[0].strip().lower()
    if media_type and media_type not in BODY_TYPES:
        raise unsupported_media_type(BODY_TYPES)


def check_body_size(request: HttpRequest) -> None:
    """Refuse a body over :data:`MAX_REQUEST_BODY_BYTES` as the handlers' limited read does:
    413, before the body is decoded or the namespace looked up."""
    if len(request.body) > MAX_REQUEST_BODY_BYTES:
        message = f"Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}"
        raise ApiError(status_body(413, "RequestEntityTooLarge", message))


def unrecognized_body(kind: str, request: HttpRequest) -> ApiError:
    """400 for a create body that is not a JSON object (the decoder's first step)."""
    data = request.parsed()
    reason = (
        go_json_error(request.body)
        if data is None
        else (
            "json: cannot unmarshal array into Go value of type struct "
            '{ APIVersion string "json:\\"apiVersion,omitempty\\""; '
            'Kind string "json:\\"kind,omitempty\\"" }'
        )
    )
    return bad_request(
        f"the object provided is unrecognized (must be of type {kind}): couldn't get "
        f"version/kind; json parse error: {reason} ({summarize_data(request.body)})"
    )


def typed_body(request: HttpRequest, api_version: str, kind: str) -> dict[str, Any]:
    """A create's body checked as the decoder checks it: a JSON object whose ``apiVersion``
    and ``kind`` (when given) are ``api_version`` and ``kind``; returned without them.

    Raises:
        ApiError: 400, with the decoder's message.
    """
    data = request.parsed()
    if not isinstance(data, dict):
        raise unrecognized_body(kind, request)
    sent_version = data.get("apiVersion") or api_version
    sent_kind = data.get("kind") or kind
    if not isinstance(sent_version, str) or not isinstance(sent_kind, str):
        raise bad_request(
            f"the object provided is unrecognized (must be of type {kind}): "
            "couldn't get version/kind; json parse error: "
            "json: cannot unmarshal non-string into Go struct field .apiVersion of type string "
            f"({summarize_data(request.body)})"
        )
    if sent_version != api_version:
        raise bad_request(
            f"the API version in the data ({sent_version}) does not match the expected API "
            f"version ({api_version})"
        )
    if sent_kind != kind:
        version = json.dumps(sent_version.rsplit("/", 1)[-1])
        raise bad_request(
            f"{sent_kind} in version {version} cannot be handled as a {kind}: "
            f'no kind "{sent_kind}" is registered for version "{sent_version}"'
        )
    return {key: value for key, value in data.items() if key not in ("apiVersion", "kind")}


def not_allowed() -> HttpResponse:
    """405 for a method the path does not take."""
    message = "the server does not allow this method on the requested resource"
    return error_response(ApiError(status_body(405, "MethodNotAllowed", message, {})))


# -- query parameters -------------------------------------------------------------------


def table_version(request: HttpRequest) -> str | None:
    """The ``meta.k8s.io`` Table version the ``Accept`` header asks for (None: plain JSON)."""
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


def selectors(
    request: HttpRequest, api: Api, resource: str, field_selector: str | None = None
) -> tuple[LabelSelector, FieldSelector]:
    """Parse ``labelSelector`` and ``fieldSelector`` (or ``field_selector``) of a list or
    watch of ``api``'s ``resource``, whose field labels it checks; 400 if bad."""
    if field_selector is None:
        field_selector = request.query.get("fieldSelector", "")
    try:
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        fields = parse_field_selector(field_selector, resource_of(api, resource).field_label)
    except SelectorError as exc:
        raise bad_request(str(exc)) from None
    return labels, fields


def is_dry_run(request: HttpRequest, kind: str) -> bool:
    """``dryRun``: True for ``All``, False when absent; 422 for anything else."""
    value = request.query.get("dryRun", "")
    if value in ("", "All"):
        return value == "All"
    raise invalid(kind, "", [_dry_run_error([value])], "meta.k8s.io")


def _dry_run_error(values: list[str]) -> FieldError:
    """``ValidateDryRun``'s error: the option is a list, printed as Go prints a slice."""
    listed = ", ".join(go_quote(value) for value in values)
    return FieldError(
        "FieldValueNotSupported",
        "dryRun",
        GoText(f"[]string{{{listed}}}"),
        'supported values: "All"',
    )


_FIELD_VALIDATIONS = ("", "Ignore", "Strict", "Warn")


def field_validation(request: HttpRequest, kind: str) -> str:
    """``fieldValidation``: ``Ignore``, ``Warn`` (when absent) or ``Strict``; 422 otherwise."""
    value = request.query.get("fieldValidation", "")
    if value in _FIELD_VALIDATIONS:
        return value or "Warn"
    supported = ", ".join(f'"{choice}"' for choice in _FIELD_VALIDATIONS)
    error = FieldError(
        "FieldValueNotSupported", "fieldValidation", value, f"supported values: {supported}"
    )
    raise invalid(kind, "", [error], "meta.k8s.io")


def unknown_fields(unknown: list[str], directive: str, what: str) -> list[tuple[str, str]]:
    """What the decoder does with the unknown fields it dropped from ``what`` (``Event in
    version "v1"``) under ``directive``: nothing (Ignore), ``Warning`` headers (Warn), or 400
    (Strict)."""
    if not unknown or directive == "Ignore":
        return []
    if directive == "Strict":
        raise bad_request(f"{what}: {strict_decoding_error(unknown)}")
    return [("Warning", f'299 - "unknown field \\"{path}\\""') for path in unknown]


def strict_decoding_error(unknown: list[str]) -> str:
    """Go's ``strictDecodingError`` text for the ``unknown`` fields."""
    return "strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in unknown)


def page(request: HttpRequest) -> tuple[int, tuple[str, str] | None]:
    """``limit`` and the start key of a ``continue`` token; 400 when either is bad."""
    raw_limit = request.query.get("limit", "")
    try:
        count = int(raw_limit) if raw_limit else 0
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{raw_limit}": invalid syntax') from None
    token = request.query.get("continue", "")
    start: tuple[str, str] | None = None
    if token:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            start = (str(decoded["start"][0]), str(decoded["start"][1]))
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
            raise bad_request(
                "invalid continue token: continue key is not valid: illegal base64 data"
            ) from None
        if (request.query.get("resourceVersion") or "0") != "0":  # the token holds the version
            raise bad_request("specifying resource version is not allowed when using continue")
    return max(count, 0), start


Lister = Callable[
    [str, str | None, LabelSelector, FieldSelector, int, tuple[str, str] | None],
    tuple[list[Entry], int, tuple[str, str] | None, int],
]
"""Reads a list's page (the store's ``list_page``): (resource, namespace, labels, fields,
limit, start key) -> (entries, resourceVersion, the next page's start key, how many remain)."""


_MATCH = "resourceVersionMatch"


def check_list_options(request: HttpRequest, *, watch: bool) -> None:
    """``ValidateListOptions``: how ``resourceVersionMatch`` and ``sendInitialEvents`` may be
    combined in a list or a watch (the server reads neither further); 422 on ListOptions."""
    query = request.query
    match, rv = query.get(_MATCH, ""), query.get("resourceVersion", "")
    initial, paged = "sendInitialEvents" in query, bool(query.get("continue"))
    supported = ("NotOlderThan",) if watch else ("Exact", "NotOlderThan", "")
    values = ", ".join(f'"{value}"' for value in supported)
    unsupported = FieldError("FieldValueNotSupported", _MATCH, match, f"supported values: {values}")

    def no(text: str, path: str = _MATCH) -> FieldError:
        return FieldError("FieldValueForbidden", path, detail=text)

    continued = no(f"{_MATCH} is forbidden when continue is provided")
    checks = (
        [
            (
                initial and match != "NotOlderThan",
                no(f"sendInitialEvents requires setting {_MATCH} to NotOlderThan"),
            ),
            (
                match and not initial,
                no(f"{_MATCH} is forbidden for watch unless sendInitialEvents is provided"),
            ),
            (match and match not in supported, unsupported),
            (match and paged, continued),
        ]
        if watch
        else [
            (match and not rv, no(f"{_MATCH} is forbidden unless resourceVersion is provided")),
            (match and paged, continued),
            (match not in supported, unsupported),
            (
                match == "Exact" and rv == "0",
                no(f'{_MATCH} "exact" is forbidden for resourceVersion "0"'),
            ),
            (initial, no("sendInitialEvents is forbidden for list", "sendInitialEvents")),
        ]
    )
    errors = [error for wrong, error in checks if wrong]
    if errors:
        raise invalid("ListOptions", "", errors, "meta.k8s.io")


def listed(
    request: HttpRequest, api: Api, resource: str, namespace: str | None, lister: Lister
) -> tuple[list[Entry], dict[str, Any]]:
    """The page a list of ``api``'s ``resource`` in ``namespace`` (all when None) asks for
    (its selectors, its ``limit`` and ``continue``), read with ``lister``, and the list's
    ``metadata``."""
    check_list_options(request, watch=False)
    labels, fields = selectors(request, api, resource)
    limit, start = page(request)
    entries, rv, following, remaining = lister(resource, namespace, labels, fields, limit, start)
    # with a selector the count of what remains is unknown: the real server leaves it out
    counted = remaining if labels.empty and fields.empty else None
    return entries, list_meta(rv, following, counted)


_PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")


def delete_options(request: HttpRequest) -> dict[str, Any]:
    """The ``DeleteOptions`` of a DELETE: its body when it has one (the query is then not
    read), else the query's ``dryRun`` and ``propagationPolicy``; 400 for a body that is not
    JSON, 422 for values ``ValidateDeleteOptions`` refuses."""
    check_body_size(request)
    if request.body.strip():
        options = request.parsed()
        if not isinstance(options, dict):
            raise bad_request(
                f"couldn't get version/kind; json parse error: {go_json_error(request.body)}"
            )
    else:
        options = {
            key: request.query[key] for key in ("propagationPolicy",) if key in request.query
        }
        if "dryRun" in request.query:
            options["dryRun"] = [request.query["dryRun"]]
    errors: list[FieldError] = []
    policy = options.get("propagationPolicy")
    if policy is not None and options.get("orphanDependents") is not None:
        errors.append(
            FieldError.invalid(
                "propagationPolicy",
                policy,
                "orphanDependents and deletionPropagation cannot be both set",
            )
        )
    if policy is not None and policy not in _PROPAGATION_POLICIES:
        supported = ", ".join(f'"{choice}"' for choice in (*_PROPAGATION_POLICIES, "nil"))
        errors.append(
            FieldError(
                "FieldValueNotSupported",
                "propagationPolicy",
                policy,
                f"supported values: {supported}",
            )
        )
    dry_run = options.get("dryRun") or []
    if not isinstance(dry_run, list) or not all(isinstance(value, str) for value in dry_run):
        raise bad_request(
            "json: cannot unmarshal string into Go struct field DeleteOptions.dryRun of "
            "type []string"
        )
    if any(value != "All" for value in dry_run):
        errors.append(_dry_run_error(dry_run))
    if errors:
        raise invalid("DeleteOptions", "", errors, "meta.k8s.io")
    return options


def list_meta(rv: int, start: tuple[str, str] | None, remaining: int | None) -> dict[str, Any]:
    """A list's ``metadata``: its resourceVersion, and ``continue`` when there is more (with
    ``remainingItemCount`` unless ``remaining`` is None)."""
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if start is not None:
        token = json.dumps({"rv": rv, "start": list(start)}).encode()
        meta["continue"] = base64.urlsafe_b64encode(token).decode()
        if remaining is not None:
            meta["remainingItemCount"] = remaining
    return meta
