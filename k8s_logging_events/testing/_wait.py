"""Wait for an event to reach an API server: the first thing an operator's test needs.

On the test side of the pipeline, after the code under test has logged (and the handler has
written in the background): :func:`wait_for_event` lists the events, and watches from the
list's resourceVersion until one matches the involved object's kind and name, the reason,
and a minimum count, or until the deadline passes. Then it fails with a table of the events
that are there, so a wrong reason or a short count reads at a glance. It talks to any API
server through the official ``kubernetes`` client: a
:class:`~k8s_logging_events.testing.LocalApiServer`, or a cluster's ``ApiClient``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

_GONE = 410


@runtime_checkable
class ClientSource(Protocol):
    """What makes a fresh ``kubernetes.client.ApiClient`` on request: a
    :class:`~k8s_logging_events.testing.LocalApiServer` (named here by what it does, so that
    this module, which the server's own ``wait_for_event`` calls, does not import it back)."""

    def api_client(self) -> Any:
        """A new client, which the caller closes."""


def event_count(event: Mapping[str, Any]) -> int:
    """How many occurrences a core/v1 event (JSON) counts: its series, its count, or 1."""
    series = event.get("series") or {}
    if series.get("count"):
        return int(series["count"])
    return int(event.get("count") or 1)


def events_table(events: Sequence[Mapping[str, Any]]) -> str:
    """Render core/v1 events (JSON) as a table: namespace, object, type, reason, count, message."""
    header = ("NAMESPACE", "OBJECT", "TYPE", "REASON", "COUNT", "MESSAGE")
    rows = [header]
    for event in events:
        involved = event.get("involvedObject") or {}
        target = f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"
        rows.append(
            (
                str((event.get("metadata") or {}).get("namespace", "")),
                target,
                str(event.get("type", "")),
                str(event.get("reason", "")),
                str(event_count(event)),
                " ".join(str(event.get("message", "")).split()),
            )
        )
    if len(rows) == 1:
        return "  (no events)"
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _field_selector(kind: str | None, name: str | None, reason: str | None) -> str:
    terms = []
    for field, value in (
        ("involvedObject.kind", kind),
        ("involvedObject.name", name),
        ("reason", reason),
    ):
        if value is not None:
            escaped = value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
            terms.append(f"{field}={escaped}")
    return ",".join(terms)


def _criteria(**given: Any) -> str:
    shown = ", ".join(f"{key}={value!r}" for key, value in given.items() if value is not None)
    return shown or "any"


def wait_for_event(
    target: ClientSource | Any,
    *,
    namespace: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    reason: str | None = None,
    min_count: int = 1,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Wait until a matching core/v1 event is on the server; return it as JSON.

    The events are listed first (an event written before the call counts at once), then
    watched from the list's resourceVersion, so nothing written in between is missed and
    no time is spent sleeping. A ``410 Expired`` watch lists again.

    Args:
        target: a :class:`~k8s_logging_events.testing.LocalApiServer` or another
            :class:`ClientSource` (a client is made and closed here), or a
            ``kubernetes.client.ApiClient`` (of a cluster, say).
        namespace: the events' namespace (all namespaces when None).
        kind: the involved object's kind (``Pod``).
        name: the involved object's name.
        reason: the event's reason.
        min_count: the fewest occurrences the event must count (``count``, or the series).
        timeout: seconds to wait at most.

    Raises:
        AssertionError: nothing matched in time; the message holds a table of the events
            in ``namespace`` (every namespace when None) as they are then.
    """
    from kubernetes import client, watch  # slow to import: only on use
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import ReadTimeoutError

    own = isinstance(target, ClientSource)
    api_client: Any = target.api_client() if own else target
    new_watch: Any = watch.Watch  # the client's watch module has no type hints
    try:
        core: Any = client.CoreV1Api(api_client)
        selector = _field_selector(kind, name, reason)
        args: tuple[Any, ...] = (namespace,) if namespace is not None else ()
        lister = (
            core.list_namespaced_event
            if namespace is not None
            else core.list_event_for_all_namespaces
        )
        deadline = time.monotonic() + timeout

        def matches(event: Mapping[str, Any]) -> bool:
            return event_count(event) >= min_count

        def list_json(**options: Any) -> dict[str, Any]:
            response = lister(*args, _preload_content=False, **options)
            loaded: dict[str, Any] = json.loads(response.data)
            return loaded

        while True:
            listed = list_json(field_selector=selector)
            for item in listed.get("items") or ():
                if matches(item):
                    return dict(item)
            rv = listed["metadata"]["resourceVersion"]
            try:
                while (remaining := deadline - time.monotonic()) > 0:
                    stream = new_watch().stream(
                        lister,
                        *args,
                        field_selector=selector,
                        resource_version=rv,
                        timeout_seconds=max(1, math.ceil(remaining)),
                        # the client's read timeout keeps the deadline below a whole second
                        _request_timeout=remaining,
                    )
                    for item in stream:
                        obj = item["raw_object"]
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if item["type"] in ("ADDED", "MODIFIED") and matches(obj):
                            stream.close()
                            return dict(obj)
                        if time.monotonic() >= deadline:
                            stream.close()
                            break
                break
            except ReadTimeoutError:
                break  # the deadline passed while the watch was quiet
            except ApiException as error:
                if error.status != _GONE:
                    raise
        everything = list_json()
        where = f"namespace {namespace!r}" if namespace is not None else "all namespaces"
        wanted = _criteria(kind=kind, name=name, reason=reason)
        raise AssertionError(
            f"No event with {wanted}, count >= {min_count} after {timeout:g} s. "
            f"Events in {where}:\n{events_table(everything.get('items') or [])}"
        )
    finally:
        if own:
            api_client.close()
