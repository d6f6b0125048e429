"""Where events are written: the :class:`EventSink` protocol and what a sink may raise.

A sink sits at the end of the pipeline, below the writer of the recorder. The writer decides
what to do with each failure from its class alone:

* :class:`ApiStatusError` -- the server answered with a Status. 404 from a patch means
  "create instead"; 429 and 5xx are retried (honouring ``retry_after``); anything else is
  given up at once.
* :class:`RequestConstructionError` -- the request could not even be built: given up.
* any other exception (refused, reset, timed out) -- retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from k8s_logging_events import models

__all__ = [
    "ApiStatusError",
    "EventSink",
    "RequestConstructionError",
    "is_retryable",
]


@runtime_checkable
class EventSink(Protocol):
    """Knows how to store events: create one, replace one, or patch one by name."""

    def create(self, event: models.Event) -> models.Event:
        """Create ``event`` and return it as the server stored it."""
        ...

    def update(self, event: models.Event) -> models.Event:
        """Replace the stored event of the same name and return the stored result."""
        ...

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        """Apply the strategic-merge patch ``data`` to the stored ``event``; return the result."""
        ...


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
    """

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        *,
        causes: Sequence[str] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, reason, message)
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = tuple(causes)
        self.retry_after = retry_after

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
