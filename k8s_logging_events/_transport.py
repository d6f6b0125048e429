"""The sink's requests to the API server, and what their answers mean to the writer.

Between :class:`~k8s_logging_events.sink.KubernetesEventSink` and the wire: a request body is
encoded once (:func:`encode`), and an error answer is read into the sink's errors
(:func:`status_error`: the Kubernetes Status, its causes, ``Retry-After``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from k8s_logging_events._errors import ApiStatusError

__all__ = ["MAX_RETRY_AFTER_SECONDS", "encode", "retry_after", "status_error", "text"]

MAX_RETRY_AFTER_SECONDS = 3600.0
"""The longest ``Retry-After`` honoured; a larger (or absurd) one waits this long."""


def status_error(
    status: int,
    http_reason: object,
    body: object,
    headers: object,
    request: tuple[str, str] = ("", ""),
) -> ApiStatusError:
    """Read a Kubernetes Status out of an error answer to ``request`` (method, path)."""
    data: Mapping[str, Any] = {}
    if isinstance(body, str | bytes) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping):
            data = parsed
    details = data.get("details") if isinstance(data.get("details"), Mapping) else {}
    assert isinstance(details, Mapping)
    causes = [
        str(cause.get("reason") or cause.get("type") or "")
        for cause in details.get("causes") or ()
        if isinstance(cause, Mapping)
    ]
    return ApiStatusError(
        status,
        str(data.get("reason") or http_reason or ""),
        str(data.get("message") or ""),
        causes=[cause for cause in causes if cause],
        retry_after=retry_after(headers, details),
        name=str(details.get("name") or ""),
        method=request[0],
        path=request[1],
    )


def retry_after(headers: object, details: Mapping[str, Any]) -> float | None:
    value: object = None
    if isinstance(headers, Mapping) or hasattr(headers, "get"):
        value = headers.get("Retry-After")
        if value is None:  # the lean path's headers are by lower-case name
            value = headers.get("retry-after")
    if value is None:
        value = details.get("retryAfterSeconds")
    try:
        seconds = float(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None  # an HTTP date or garbage: fall back to the schedule
    if seconds is None or seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


def encode(body: object) -> bytes:
    """A request body as compact JSON (the API server reads any JSON; ASCII, no NaN)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("ascii")


def text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data or "")
