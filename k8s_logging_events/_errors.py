"""The sink's errors: what a write that failed raised, and whether it is worth another try.

At the bottom of the pipeline: the transports (``_transport``) raise them, the writer and the
takeover of an event act on them, and :mod:`k8s_logging_events.sink` exposes them by their
public names.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ApiStatusError", "RequestConstructionError", "is_retryable"]


class ApiStatusError(Exception):
    """The API server answered a write with a Status error.

    Args:
        status: the HTTP status code.
        reason: the Kubernetes reason (``AlreadyExists``, ``NotFound``, ``Invalid`` ...),
            not the HTTP reason phrase.
        message: the Status message.
        causes: the cause types from ``details.causes`` (``NamespaceTerminating`` ...).
        retry_after: seconds the server asked the client to wait (``Retry-After`` or
            ``details.retryAfterSeconds``), if it said.
        name: the name of the object the Status is about (``details.name``), if it said.
        method: the request's HTTP method, when the sink knows it (for reports).
        path: the request's URL path, when the sink knows it (for reports).
    """

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        *,
        causes: Sequence[str] = (),
        retry_after: float | None = None,
        name: str = "",
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(status, reason, message)
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = tuple(causes)
        self.retry_after = retry_after
        self.name = name

    def __str__(self) -> str:
        text = f"{self.status} {self.reason}".strip()
        return f"{text}: {self.message}" if self.message else text

    @property
    def is_not_found(self) -> bool:
        """True for a 404: the event expired on the server (or never existed)."""
        return self.status == 404

    @property
    def is_already_exists(self) -> bool:
        """True for a 409 whose reason is ``AlreadyExists`` (not a resourceVersion conflict)."""
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def is_namespace_terminating(self) -> bool:
        """True when the namespace is being deleted and refuses new content."""
        return "NamespaceTerminating" in self.causes

    @property
    def is_retryable(self) -> bool:
        """True for throttling (429) and server-side trouble (5xx)."""
        return self.status == 429 or self.status >= 500


class RequestConstructionError(Exception):
    """The request could not be built (invalid data or a bug); retrying cannot help."""


def is_retryable(error: BaseException) -> bool:
    """Return True when a write that failed with ``error`` is worth another try."""
    if isinstance(error, ApiStatusError):
        return error.is_retryable
    return not isinstance(error, RequestConstructionError)
