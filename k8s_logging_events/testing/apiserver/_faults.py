"""Injected faults and the request log of :class:`~k8s_logging_events.testing.LocalApiServer`.

Part of the local API server on the test side of the pipeline: a :class:`Fault` is what
:meth:`LocalApiServer.inject <k8s_logging_events.testing.LocalApiServer.inject>` arms (which
requests it meets, and what it does to them), and a :class:`RecordedRequest` is one entry of
the server's request log. Both are plain records; the server applies them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ACTIONS", "Fault", "FaultAction", "RecordedRequest"]

FaultAction = Literal["status", "delay", "drop", "hang", "refuse"]
"""What an injected fault does to a request that matches it."""

ACTIONS = ("status", "delay", "drop", "hang", "refuse")


@dataclass(slots=True, eq=False)
class RecordedRequest:
    """One request as the server saw it, kept in :attr:`LocalApiServer.requests`."""

    method: str
    """The HTTP method (``POST``, ``PATCH`` ...)."""
    path: str
    """The URL path, without the query string."""
    query: dict[str, str]
    """The query parameters (the first value of each)."""
    content_type: str
    """The ``Content-Type`` header ("" when absent, as for the client's POSTs)."""
    body: Any
    """The body parsed as JSON, or None when it is empty or not JSON."""
    headers: dict[str, str] = field(repr=False)
    """Every request header."""
    raw_body: bytes = field(default=b"", repr=False)
    """The body as sent."""
    status: int | None = None
    """The HTTP status answered; None when no answer was sent (dropped, hung, refused)."""
    reason: str = ""
    """The Kubernetes ``reason`` of a failure Status answer ("" for successes)."""
    fault: str | None = None
    """The action of the injected fault that met this request, if one did."""


class Fault:
    """An injected fault, as returned by :meth:`LocalApiServer.inject`.

    It stays armed until it has fired ``times`` times (or until cancelled); read
    :attr:`fired` to see how many requests it met.
    """

    def __init__(
        self,
        *,
        method: str | None,
        path: str | None,
        action: FaultAction,
        status: int,
        times: int | None,
        retry_after: float | None,
        delay: float,
        commit: bool,
        probability: float,
        seed: int | None,
        message: str | None,
        duration: float | None,
        on_cancel: Callable[[Fault], None],
    ) -> None:
        self.method = method.upper() if method else None
        self.path = path
        self.action: FaultAction = action
        self.status = status
        self.times = times
        self.retry_after = retry_after
        self.delay = delay
        self.commit = commit
        self.probability = probability
        self.message = message
        self.duration = duration
        self.fired = 0
        """How many requests this fault has met so far."""
        self._pattern = re.compile(path) if path is not None else None
        self._rng = random.Random(seed)
        self._on_cancel = on_cancel
        self._active = True

    @property
    def active(self) -> bool:
        """True while the fault can still fire."""
        return self._active

    @property
    def remaining(self) -> int | None:
        """How many more times it will fire (None: until cancelled)."""
        if self.times is None:
            return None
        return max(0, self.times - self.fired) if self._active else 0

    def cancel(self) -> None:
        """Disarm the fault (idempotent)."""
        self._on_cancel(self)

    def _try(self, method: str, path: str) -> bool:
        """Fire for this request? Counts and disarms; called under the server's lock."""
        if not self._active:
            return False
        if self.method is not None and self.method != method:
            return False
        if self._pattern is not None and self._pattern.search(path) is None:
            return False
        if self.probability < 1.0 and self._rng.random() >= self.probability:
            return False
        self.fired += 1
        if self.times is not None and self.fired >= self.times:
            self._active = False
        return True

    def __repr__(self) -> str:
        return (
            f"Fault(method={self.method!r}, path={self.path!r}, action={self.action!r}, "
            f"status={self.status}, fired={self.fired}, remaining={self.remaining})"
        )
