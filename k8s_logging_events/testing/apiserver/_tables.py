"""``meta.k8s.io`` Tables of the local API server: what ``kubectl get`` prints.

Part of the local API server on the test side of the pipeline. When a client asks for
``application/json;as=Table;v=v1;g=meta.k8s.io`` (as ``kubectl get`` does), the server
answers with the columns and cells the real server's table convertors produce
(``pkg/printers/internalversion``): for events LAST SEEN, TYPE, REASON, OBJECT, MESSAGE and
the wide columns, for namespaces NAME, STATUS and AGE, for pods NAME, READY, STATUS,
RESTARTS and AGE (IP, NODE, NOMINATED NODE and READINESS GATES wide; STATUS follows the
printer's main rules: the phase, a container's waiting or terminated reason, Terminating).
Ages read as kubectl prints them, with :func:`k8s_logging_events.describe.human_duration`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from k8s_logging_events import models
from k8s_logging_events.clock import Clock
from k8s_logging_events.describe import human_duration
from k8s_logging_events.testing.apiserver._objects import Api, Entry
from k8s_logging_events.testing.apiserver._requests import HttpRequest

__all__ = ["Tables"]


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


class Tables:
    """Renders events and namespaces as Tables, with ages measured against ``clock``."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def events(
        self,
        entries: list[Entry],
        version: str,
        api: Api,
        request: HttpRequest,
        meta: dict[str, Any],
    ) -> dict[str, Any]:
        now = self._clock.now()

        def since(value: str | None) -> str:
            moment = models.parse_time(value)
            return "<unknown>" if moment is None else human_duration(now - moment)

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

    def namespaces(
        self, entries: list[Entry], version: str, request: HttpRequest, meta: dict[str, Any]
    ) -> dict[str, Any]:
        now = self._clock.now()
        include = request.query.get("includeObject", "Metadata")
        rows = []
        for entry in entries:
            cells = [entry.name, entry.obj["status"].get("phase", ""), _age(entry, now)]
            rows.append(self._row(cells, entry, None, include))
        return self._table(version, _NAMESPACE_COLUMNS, rows, meta)

    def pods(
        self, entries: list[Entry], version: str, request: HttpRequest, meta: dict[str, Any]
    ) -> dict[str, Any]:
        now = self._clock.now()
        include = request.query.get("includeObject", "Metadata")
        rows = []
        for entry in entries:
            pod = entry.obj
            spec, status = pod["spec"], pod["status"]
            statuses = status.get("containerStatuses") or []
            ready = sum(1 for item in statuses if item.get("ready"))
            restarts = sum(int(item.get("restartCount") or 0) for item in statuses)
            gates = spec.get("readinessGates") or []
            cells = [
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
            row = self._row(cells, entry, None, include)
            if include == "Object":
                row["object"] = {"kind": "Pod", "apiVersion": "v1", **entry.obj}
            rows.append(row)
        return self._table(version, _POD_COLUMNS, rows, meta)

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
