"""The Events handlers of the local API server: list, watch, create, replace, patch, delete.

Part of the local API server on the test side of the pipeline, behind the router
(:class:`~._rest.RestApi`): one :class:`EventsApi` serves the events of both APIs, core/v1
and events.k8s.io/v1, over the one store. It does the steps the API server's handlers do
before the registry -- decoding the body (``the object provided is unrecognized``, unknown
fields as ``Warning`` headers), the namespace and name of the body against the URL, the
patch content type and the patch itself -- then calls the :class:`~._store.Store`, and
renders the answer as JSON in the request's API version or as a Table. A watch is answered
with a :class:`~._requests.WatchRequest` (``_watch.watch_response``), which the server
streams.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from k8s_logging_events.testing.apiserver._errors import (
    FieldError,
    bad_request,
    invalid,
    name_mismatch,
    namespace_mismatch,
    unsupported_media_type,
)
from k8s_logging_events.testing.apiserver._gofmt import go_json_error
from k8s_logging_events.testing.apiserver._objects import CORE_API, EVENTS_RESOURCE, Api, Entry
from k8s_logging_events.testing.apiserver._patch import (
    JsonPatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    json_patch_failed,
)
from k8s_logging_events.testing.apiserver._requests import (
    HttpRequest,
    HttpResponse,
    check_body_size,
    check_body_type,
    delete_options,
    field_validation,
    is_dry_run,
    list_response,
    ok,
    selectors,
    strict_decoding_error,
    typed_body,
    unknown_fields,
)
from k8s_logging_events.testing.apiserver._schema import (
    CORE_EVENT,
    EVENTS_EVENT,
    DecodeError,
    decode,
    events_to_core,
)
from k8s_logging_events.testing.apiserver._store import Store
from k8s_logging_events.testing.apiserver._tables import Tables, list_or_table, table_or
from k8s_logging_events.testing.apiserver._watch import watch_response

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
"""The patch content types a built-in resource accepts, in the order the server lists them."""


class EventsApi:
    """Answers the Events paths of both APIs.

    Args:
        store: the events.
        tables: renders Tables for ``kubectl get``.
    """

    def __init__(self, store: Store, tables: Tables) -> None:
        self._store = store
        self._tables = tables

    # -- watch ------------------------------------------------------------------------

    def watch(
        self, api: Api, namespace: str | None, name: str | None, request: HttpRequest
    ) -> HttpResponse:
        """Check a watch of events and describe it; the server streams it."""
        return watch_response(
            request,
            api,
            EVENTS_RESOURCE,
            namespace,
            name,
            json_of=lambda entry: api.prefix + entry.item_json(api.name)[1:],
            table=functools.partial(self._tables.events, api=api),
        )

    # -- reads and writes -------------------------------------------------------------

    def single(
        self, api: Api, entry: Entry, request: HttpRequest, status: int = 200
    ) -> HttpResponse:
        return table_or(
            request,
            [entry],
            {},
            functools.partial(self._tables.events, api=api),
            lambda: HttpResponse(status, api.prefix + entry.item_json(api.name)[1:] + b"\n"),
        )

    def list_events(self, api: Api, namespace: str | None, request: HttpRequest) -> HttpResponse:
        table = functools.partial(self._tables.events, api=api)
        return list_or_table(request, api, EVENTS_RESOURCE, namespace, self._store.list_page, table)

    def _decode_event(
        self, api: Api, request: HttpRequest, options: str
    ) -> tuple[dict[str, Any], list[tuple[str, str]], bool]:
        """A create/replace body decoded into the canonical form, with its ``Warning``
        headers and whether it is a dry run: the handler's steps up to decoding, in order
        (media type, size, the ``options`` parameters, then the body)."""
        check_body_type(request)
        check_body_size(request)
        dry_run = is_dry_run(request, options)
        directive = field_validation(request, options)
        body = typed_body(request, api.api_version, "Event")
        unknown: list[str] = []
        what = (
            f'Event in version "{api.api_version.rsplit("/", 1)[-1]}" cannot be handled as a Event'
        )
        try:
            decoded = decode(CORE_EVENT if api is CORE_API else EVENTS_EVENT, body, unknown)
        except DecodeError as exc:
            raise bad_request(f"{what}: {exc}") from None
        warnings = unknown_fields(unknown, directive, what)
        event = decoded if api is CORE_API else events_to_core(decoded)
        event["metadata"].pop("managedFields", None)
        return event, warnings, dry_run

    def create_event(self, api: Api, namespace: str, request: HttpRequest) -> HttpResponse:
        event, warnings, dry_run = self._decode_event(api, request, "CreateOptions")
        body_namespace = event["metadata"].get("namespace", "")
        if body_namespace and body_namespace != namespace:
            raise namespace_mismatch()
        event["metadata"]["namespace"] = namespace
        entry = self._store.create_event(api, event, dry_run=dry_run, user=request.user)
        response = self.single(api, entry, request, 201)
        response.headers.extend(warnings)
        return response

    def replace_event(
        self, api: Api, namespace: str, name: str, request: HttpRequest
    ) -> HttpResponse:
        event, warnings, dry_run = self._decode_event(api, request, "UpdateOptions")
        meta = event["metadata"]
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise namespace_mismatch()
        if meta.get("name", "") != name:
            raise name_mismatch(meta.get("name", ""), name)
        entry, created = self._store.update_event(
            api,
            namespace,
            name,
            lambda _current: event,
            allow_create=True,
            dry_run=dry_run,
            user=request.user,
            uid=meta.get("uid"),
        )
        response = self.single(api, entry, request, 201 if created else 200)
        response.headers.extend(warnings)
        return response

    def patch_event(
        self, api: Api, namespace: str, name: str, request: HttpRequest
    ) -> HttpResponse:
        content_type = request.header("Content-Type").split(";", 1)[0].strip()
        if content_type not in PATCH_TYPES:
            raise unsupported_media_type(PATCH_TYPES)
        check_body_size(request)
        apply = content_type == APPLY_PATCH
        if apply and not request.query.get("fieldManager"):
            error = FieldError.required("fieldManager", "is required for apply patch")
            raise invalid("PatchOptions", "", [error], "meta.k8s.io")
        dry_run = is_dry_run(request, "PatchOptions")
        # an apply patch is read into a map, where no field is unknown
        directive = "Ignore" if apply else field_validation(request, "PatchOptions")
        patch = self._parse_patch(content_type, request)
        unknown: list[str] = []

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
            return self._decode_patched(api, patched, patch, unknown, directive)

        entry, created = self._store.update_event(
            api, namespace, name, make, allow_create=apply, dry_run=dry_run, user=request.user
        )
        response = self.single(api, entry, request, 201 if created else 200)
        response.headers.extend(unknown_fields(unknown, directive, ""))
        return response

    @staticmethod
    def _parse_patch(content_type: str, request: HttpRequest) -> Any:
        patch = request.parsed()
        if content_type == MERGE_PATCH:
            if patch is None:
                raise bad_request("Invalid JSON Patch")
            return patch
        if patch is None and request.body.strip() != b"null":
            reason = go_json_error(request.body)
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
    def _decode_patched(
        api: Api, patched: Any, patch: Any, unknown: list[str], directive: str
    ) -> dict[str, Any]:
        """The patched object decoded as the patch handler does, strictly unless
        ``fieldValidation=Ignore``: an unknown field is a 422 with ``Strict``, else it is
        left in ``unknown`` for the ``Warning`` headers."""
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
            decoded = decode(CORE_EVENT if api is CORE_API else EVENTS_EVENT, body, unknown)
        except DecodeError as exc:
            raise invalid("", "", [FieldError.invalid("patch", shown, str(exc))]) from None
        if unknown and directive == "Strict":
            error = FieldError.invalid("patch", shown, strict_decoding_error(unknown))
            raise invalid("", "", [error])
        event = decoded if api is CORE_API else events_to_core(decoded)
        event["metadata"].pop("managedFields", None)
        return event

    def delete_event(
        self, api: Api, namespace: str, name: str, request: HttpRequest
    ) -> HttpResponse:
        options = delete_options(request)
        preconditions = options.get("preconditions") or {}
        dry_run = options.get("dryRun") == ["All"]
        if dry_run:
            entry = self._store.get_event(api, namespace, name)
        else:
            entry = self._store.delete_event(api, namespace, name, preconditions)
        details: dict[str, Any] = {"name": entry.name}
        if api.group:
            details["group"] = api.group
        details["kind"] = "events"
        details["uid"] = entry.obj["metadata"].get("uid", "")
        return ok(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
        )

    def delete_collection(self, api: Api, namespace: str, request: HttpRequest) -> HttpResponse:
        dry_run = delete_options(request).get("dryRun") == ["All"]
        labels, fields = selectors(request, api, EVENTS_RESOURCE)
        entries = self._store.delete_events(namespace, labels, fields, dry_run=dry_run)
        meta = {"resourceVersion": str(self._store.resource_version)}
        items = (entry.item_json(api.name) for entry in entries)
        return list_response("EventList", api.api_version, meta, items)
