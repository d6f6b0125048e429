"""Watch streams of :class:`~k8s_logging_events.testing.LocalApiServer`.

Part of the local API server on the test side of the pipeline. A list request with
``watch=true`` (or a ``/watch/`` path) of events, pods or namespaces becomes a
:class:`~._requests.WatchRequest` (:func:`watch_response` checks its parameters); the server's
connection thread then runs :func:`stream_watch`, which writes what a real API server's
watch handler writes: an HTTP 200 with a chunked body of watch events, one JSON object a
line (``{"type":"ADDED","object":{...}}``), taken from the store's bounded change history of
the resource (:class:`~._store.Store`, the watch cache of a real server):

* without ``resourceVersion`` (or with ``"0"``), a synthetic ``ADDED`` for every matching
  object first, then the changes after that moment;
* with a resourceVersion, the changes after it; one older than the history gets a single
  ``ERROR`` watch event carrying ``410 Expired`` (``too old resource version: X (Y)``), and
  one newer than the store gets ``504 Timeout`` after 3 s, both on the 200 stream;
* ``fieldSelector`` / ``labelSelector`` as the watch cache applies them: a change that moves
  an object into the selection is an ``ADDED``, out of it a ``DELETED``;
* ``timeoutSeconds`` (but 0, which means none) ends the stream cleanly; so does the
  server's stop, at once, and a client that goes away is noticed within half a second;
* ``sendInitialEvents=true`` ends the initial events with the ``k8s.io/initial-events-end``
  bookmark; other bookmarks are not sent (a real server may omit them too).

Nothing here touches sockets: the caller passes ``write`` and ``alive`` callables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from k8s_logging_events.testing.apiserver._errors import (
    FieldError,
    bad_request,
    invalid,
    status_body,
)
from k8s_logging_events.testing.apiserver._gofmt import go_json
from k8s_logging_events.testing.apiserver._objects import Api, Change, Entry, HistoryExpiredError
from k8s_logging_events.testing.apiserver._requests import (
    Encoder,
    HttpRequest,
    HttpResponse,
    WatchRequest,
    check_list_options,
    not_allowed,
    selectors,
    table_version,
)
from k8s_logging_events.testing.apiserver._resources import resource_of
from k8s_logging_events.testing.apiserver._store import Store
from k8s_logging_events.testing.apiserver._tables import TableOf

POLL_INTERVAL = 0.5
"""How often an idle watch looks whether its client has gone (the server's stop wakes it)."""
TOO_LARGE_WAIT = 3.0
"""How long a watch from a future resourceVersion waits for it (the watch cache's 3 s)."""


def _encoder(request: HttpRequest, json_of: Callable[[Entry], bytes], table: TableOf) -> Encoder:
    """The objects of a watch's events: the JSON of each object, or (for kubectl's
    ``as=Table``) a one-row Table, with the column definitions in the first one only, as the
    real server sends them."""
    version = table_version(request)
    if version is None:
        return lambda entry, _first: json_of(entry)

    def one_row(entry: Entry, first: bool) -> bytes:
        meta = {"resourceVersion": entry.obj["metadata"].get("resourceVersion", "")}
        rendered = table([entry], version, request, meta)
        if not first:
            rendered["columnDefinitions"] = None
        return go_json(rendered)

    return one_row


def watch_response(
    request: HttpRequest,
    api: Api,
    resource: str,
    namespace: str | None,
    name: str | None,
    *,
    json_of: Callable[[Entry], bytes],
    table: TableOf,
) -> HttpResponse:
    """Check a watch of ``api``'s ``resource`` in ``namespace`` (all when None) and answer
    with the :class:`WatchRequest` to stream.

    ``name`` (from a ``/watch/.../NAME`` path) watches the collection selected by that name;
    each object is sent as ``json_of`` renders it, or as a one-row ``table`` when the request
    asks for a Table.
    """
    if request.method != "GET":
        return not_allowed()
    check_list_options(request, watch=True)
    selector = request.query.get("fieldSelector", "")
    if name is not None:
        escaped = name.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        selector = f"{selector},metadata.name={escaped}" if selector else f"metadata.name={escaped}"
    labels, fields = selectors(request, api, resource, selector)
    rv = request.query.get("resourceVersion", "")
    if rv and not rv.isdigit():
        error = FieldError.invalid(
            "resourceVersion", rv, f'strconv.ParseUint: parsing "{rv}": invalid syntax'
        )
        raise invalid(resource, "", [error], api.group)
    raw_timeout = request.query.get("timeoutSeconds", "")
    try:
        # 0 asks for no timeout of the client's: a real server then sets its own (30 to 60
        # minutes), which a test never reaches
        timeout = float(int(raw_timeout)) or None if raw_timeout else None
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{raw_timeout}": invalid syntax') from None
    initial = request.query.get("sendInitialEvents")
    watch = WatchRequest(
        api=api,
        resource=resource_of(api, resource),
        namespace=namespace,
        labels=labels,
        fields=fields,
        resource_version=rv,
        timeout=timeout,
        send_initial_events=None if initial is None else initial in ("true", "1"),
        bookmarks=request.query.get("allowWatchBookmarks") in ("true", "1"),
        encode=_encoder(request, json_of, table),
    )
    return HttpResponse(200, b"", watch=watch)


def expired_status(error: HistoryExpiredError) -> dict[str, Any]:
    """The ``410 Expired`` Status a watch from a compacted resourceVersion gets."""
    return status_body(410, "Expired", str(error))


def _too_large_status(requested: int, current: int) -> dict[str, Any]:
    details = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }
    message = f"Timeout: Too large resource version: {requested}, current: {current}"
    return status_body(504, "Timeout", message, details)


def _line(event_type: str, obj: bytes) -> bytes:
    return b'{"type":"' + event_type.encode() + b'","object":' + obj.rstrip(b"\n") + b"}\n"


def _classify(request: WatchRequest, change: Change) -> tuple[str, Entry] | None:
    """The watch event a change makes for this watch, if any (the cacher's filter)."""
    now = request.selects(change.entry)
    if change.type == "DELETED":
        return ("DELETED", change.entry) if now else None
    before = change.previous is not None and request.selects(change.previous)
    if now and before:
        return "MODIFIED", change.entry
    if now:
        return "ADDED", change.entry
    if before:
        assert change.previous is not None
        # left the selection: a deletion of the state it was selected in, at the new version
        previous = change.previous.obj
        meta = {**previous["metadata"], "resourceVersion": str(change.rv)}
        return "DELETED", Entry({**previous, "metadata": meta}, change.rv, change.entry.written)
    return None


def stream_watch(
    request: WatchRequest,
    store: Store,
    write: Callable[[bytes], None],
    alive: Callable[[], bool],
    stopping: threading.Event,
) -> None:
    """Write the watch stream for ``request`` until it times out or ``alive()`` turns false.

    Args:
        request: what to watch.
        store: where the events and their history are.
        write: sends one line (one chunk) to the client; raises ``OSError`` when it is gone.
        alive: False once the client has gone or the server stops.
        stopping: set when the server stops (its waits end at once).
    """
    deadline = None if request.timeout is None else time.monotonic() + request.timeout
    first = True

    def send(event_type: str, entry: Entry) -> None:
        nonlocal first
        write(_line(event_type, request.encode(entry, first)))
        first = False

    start = _start(request, store, stopping, deadline)
    if isinstance(start, dict):
        write(_line("ERROR", go_json(start)))
        return
    cursor, initial = start
    for entry in initial:
        send("ADDED", entry)
    if request.send_initial_events and request.bookmarks:
        write(_line("BOOKMARK", _bookmark(request, cursor)))
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        wait = POLL_INTERVAL if remaining is None else min(POLL_INTERVAL, remaining)
        with store.changed:
            if store.last_change(request.resource.name) <= cursor and not stopping.is_set():
                store.changed.wait(timeout=wait)
        if not alive():
            return
        store.expire()
        try:
            changes = store.changes_since(request.resource.name, cursor)
        except HistoryExpiredError as error:
            # this watch fell behind the whole history: what a resumed watch would get
            write(_line("ERROR", go_json(expired_status(error))))
            return
        for change in changes:
            cursor = change.rv
            event = _classify(request, change)
            if event is not None:
                send(*event)


def _start(
    request: WatchRequest, store: Store, stopping: threading.Event, deadline: float | None
) -> tuple[int, list[Entry]] | dict[str, Any]:
    """Where the stream starts: (resourceVersion, initial ADDED events), or an error Status."""
    wanted = request.resource_version
    initial = request.send_initial_events
    if initial is None:
        initial = wanted in ("", "0")
    if wanted in ("", "0") or initial:
        with store.lock:
            store.expire()
            entries = [
                entry
                for entry in store.entries(request.resource.name, request.namespace)
                if request.selects(entry)
            ]
            cursor = store.last_change(request.resource.name)
        if wanted not in ("", "0") and int(wanted) > cursor:
            cursor = int(wanted)
        return cursor, entries if initial else []
    requested = int(wanted)
    limit = time.monotonic() + TOO_LARGE_WAIT
    if deadline is not None:
        limit = min(limit, deadline)
    while requested > store.resource_version:
        if stopping.is_set() or time.monotonic() >= limit:
            return _too_large_status(requested, store.resource_version)
        with store.changed:
            store.changed.wait(timeout=0.05)
    try:
        store.changes_since(request.resource.name, requested)
    except HistoryExpiredError as error:
        return expired_status(error)
    return requested, []


def _bookmark(request: WatchRequest, rv: int) -> bytes:
    obj = {
        "kind": request.resource.kind,
        "apiVersion": request.api.api_version,
        "metadata": {
            "resourceVersion": str(rv),
            "creationTimestamp": None,
            "annotations": {"k8s.io/initial-events-end": "true"},
        },
    }
    return go_json(obj)
