"""``meta.k8s.io`` Tables of the local API server: what ``kubectl get`` prints.

Part of the local API server on the test side of the pipeline. When a client asks for
``application/json;as=Table;v=v1;g=meta.k8s.io`` (as ``kubectl get`` does), the server
answers with the columns and cells the real server's table convertors produce
(``pkg/printers/internalversion``): for events LAST SEEN, TYPE, REASON, OBJECT, MESSAGE and
the wide columns, for namespaces NAME, STATUS and AGE, for pods NAME, READY, STATUS,
RESTARTS and AGE (IP, NODE, NOMINATED NODE and READINESS GATES wide; STATUS follows the
printer's main rules: the phase, a container's waiting or terminated reason, Terminating).
Ages read as kubectl prints them, with :func:`k8s_logging_events.describe.human_duration`.
:func:`table_or` answers with the Table or the plain JSON, as the request asks, and
:func:`list_or_table` so answers a list of events or pods.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from k8s_logging_events import models
from k8s_logging_events.clock import Clock
from k8s_logging_events.describe import human_duration
from k8s_logging_events.testing.apiserver._objects import Api, Entry
from k8s_logging_events.testing.apiserver._requests import (
    HttpRequest,
    HttpResponse,
    Lister,
    list_response,
    listed,
    ok,
    table_version,
)
from k8s_logging_events.testing.apiserver._resources import resource_of


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
_POD_COLUMNS = [
    _column("Name", "Name must be unique within a namespace.", 0, "name"),
    _column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _column("Status", "The aggregate status of the containers in this pod."),
    _column(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the "
        "last container in this pod has restarted.",
    ),
    _column("Age", "When the object was created."),
    _column("IP", "The IP address allocated to the pod.", 1),
    _column("Node", "The node the pod is scheduled on.", 1),
    _column("Nominated Node", "The node the scheduler nominated for the pod.", 1),
    _column("Readiness Gates", "The pod's readiness gates that are ready.", 1),
]
_NAMESPACE_COLUMNS = [
    _column("Name", "Name must be unique within a namespace.", 0, "name"),
    _column("Status", "The status of the namespace"),
    _column("Age", "When the namespace was created."),
]


TableOf = Callable[[list[Entry], str, HttpRequest, dict[str, Any]], dict[str, Any]]
"""Renders objects as a Table: (entries, ``meta.k8s.io`` version, request, list metadata)."""
Cells = Callable[[Entry, datetime], list[Any]]
"""The cells of one object's row, with ages measured at the given moment."""
Whole = Callable[[Entry], dict[str, Any]]
"""One object as a row carries it with ``includeObject=Object``."""


class Tables:
    """Renders events, namespaces and pods as Tables, with ages measured against ``clock``."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def events(
        self,
        entries: list[Entry],
        version: str,
        request: HttpRequest,
        meta: dict[str, Any],
        *,
        api: Api,
    ) -> dict[str, Any]:
        """Events as ``kubectl get events`` shows them (whole objects in ``api``'s version)."""

        def whole(entry: Entry) -> dict[str, Any]:
            return {"kind": "Event", "apiVersion": api.api_version, **entry.view(api.name)}

        return self._table(entries, version, request, meta, _EVENT_COLUMNS, _event_cells, whole)

    def namespaces(
        self, entries: list[Entry], version: str, request: HttpRequest, meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Namespaces as ``kubectl get namespaces`` shows them."""
        return self._table(
            entries,
            version,
            request,
            meta,
            _NAMESPACE_COLUMNS,
            _namespace_cells,
            _core("Namespace"),
        )

    def pods(
        self, entries: list[Entry], version: str, request: HttpRequest, meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Pods as ``kubectl get pods`` shows them."""
        return self._table(entries, version, request, meta, _POD_COLUMNS, _pod_cells, _core("Pod"))

    def _table(
        self,
        entries: list[Entry],
        version: str,
        request: HttpRequest,
        meta: dict[str, Any],
        columns: list[dict[str, Any]],
        cells: Cells,
        whole: Whole,
    ) -> dict[str, Any]:
        now = self._clock.now()
        include = request.query.get("includeObject", "Metadata")
        return {
            "kind": "Table",
            "apiVersion": f"meta.k8s.io/{version}",
            "metadata": meta,
            "columnDefinitions": columns,
            "rows": [_row(cells(entry, now), entry, whole, include) for entry in entries],
        }


def table_or(
    request: HttpRequest,
    entries: list[Entry],
    meta: dict[str, Any],
    table: TableOf,
    answer: Callable[[], HttpResponse],
) -> HttpResponse:
    """The Table of ``entries`` when the request's ``Accept`` asks for one, else ``answer()``."""
    version = table_version(request)
    if version is None:
        return answer()
    return ok(table(entries, version, request, meta))


def list_or_table(
    request: HttpRequest,
    api: Api,
    resource: str,
    namespace: str | None,
    lister: Lister,
    table: TableOf,
) -> HttpResponse:
    """The answer to a list of ``api``'s ``resource`` in ``namespace`` (all when None): the
    page the request asks for, read with ``lister``, as a Table when the request asks for
    one, else as the ``EventList`` or ``PodList`` of ``api``'s version."""
    entries, meta = listed(request, api, resource, namespace, lister)
    kind = resource_of(api, resource).kind + "List"
    items = (entry.item_json(api.name) for entry in entries)
    return table_or(
        request, entries, meta, table, lambda: list_response(kind, api.api_version, meta, items)
    )


def _row(cells: list[Any], entry: Entry, whole: Whole, include: str) -> dict[str, Any]:
    """One row: its cells, and the object (``includeObject``: whole, metadata, or none)."""
    row: dict[str, Any] = {"cells": cells}
    if include == "Object":
        row["object"] = whole(entry)
    elif include != "None":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": entry.obj["metadata"],
        }
    return row


def _core(kind: str) -> Whole:
    """A core/v1 object whole: kind and apiVersion, then what is stored."""
    return lambda entry: {"kind": kind, "apiVersion": "v1", **entry.obj}


def _event_cells(entry: Entry, now: datetime) -> list[Any]:
    event = entry.obj

    def since(value: str | None) -> str:
        moment = models.parse_time(value)
        return "<unknown>" if moment is None else human_duration(now - moment)

    first = since(event["firstTimestamp"]) if event["firstTimestamp"] else since(event["eventTime"])
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
    return [
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


def _namespace_cells(entry: Entry, now: datetime) -> list[Any]:
    return [entry.name, entry.obj["status"].get("phase", ""), _age(entry, now)]


def _pod_cells(entry: Entry, now: datetime) -> list[Any]:
    pod = entry.obj
    spec, status = pod["spec"], pod["status"]
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for item in statuses if item.get("ready"))
    restarts = sum(int(item.get("restartCount") or 0) for item in statuses)
    gates = spec.get("readinessGates") or []
    return [
        entry.name,
        f"{ready}/{len(spec.get('containers') or [])}",
        _pod_status(pod),
        restarts,
        _age(entry, now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"0/{len(gates)}" if gates else "<none>",
    ]


def _age(entry: Entry, now: datetime) -> str:
    """The AGE column: how long ago the object was created, as kubectl prints it."""
    created = models.parse_time(entry.obj["metadata"].get("creationTimestamp"))
    return "<unknown>" if created is None else human_duration(now - created)


def _pod_status(pod: dict[str, Any]) -> str:
    """The STATUS column: the phase, or what a container waits on or ended with."""
    status = pod["status"]
    reason = status.get("reason") or status.get("phase") or "Unknown"
    running = False
    for item in reversed(status.get("containerStatuses") or []):
        state = item.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated is not None:
            reason = terminated.get("reason") or (
                f"Signal:{terminated['signal']}"
                if terminated.get("signal")
                else f"ExitCode:{terminated.get('exitCode', 0)}"
            )
        elif item.get("ready") and state.get("running") is not None:
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)
