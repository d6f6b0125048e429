"""Injected faults and the request log of :class:`~k8s_logging_events.testing.LocalApiServer`.

Part of the local API server on the test side of the pipeline: a :class:`Fault` is what
:meth:`LocalApiServer.inject <k8s_logging_events.testing.LocalApiServer.inject>` arms (which
requests it meets, and what it does to them), kept in order by a :class:`FaultList`; a
:class:`RecordedRequest` is one entry of the server's :class:`RequestLog`. The server
applies the faults (``_server``); this module only keeps them.
"""

from __future__ import annotations

import collections
import math
import random
import re
import threading
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any, Literal

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


@dataclass(eq=False, repr=False, kw_only=True)
class Fault:
    """An injected fault, as returned by :meth:`LocalApiServer.inject`.

    It stays armed until it has fired ``times`` times (or until cancelled); read
    :attr:`fired` to see how many requests it met. The options are those of
    :meth:`~k8s_logging_events.testing.LocalApiServer.inject`.

    Raises:
        ValueError: an option is out of range.
    """

    method: str | None
    """The HTTP method it meets, upper case (any when None)."""
    path: str | None
    """The regular expression searched in the URL path (any path when None)."""
    action: FaultAction
    """What it does to a request it meets."""
    status: int
    """The status code it answers (action ``status``)."""
    times: int | None
    """How many requests it meets in all (None: until cancelled)."""
    retry_after: float | None
    """The ``Retry-After`` it sends, in seconds."""
    delay: float
    """Seconds it waits before acting."""
    commit: bool
    """Whether the request is processed (its write stored) before the fault acts."""
    probability: float
    """The chance that it fires on a request it meets."""
    seed: InitVar[int | None]
    message: str | None
    """The ``message`` of the Status body it answers."""
    duration: float | None
    """How long it refuses connections (action ``refuse``; None: until re-opened)."""
    on_cancel: InitVar[Callable[[Fault], None]]
    fired: int = field(default=0, init=False)
    """How many requests this fault has met so far."""
    _pattern: re.Pattern[str] | None = field(default=None, init=False)
    _rng: random.Random = field(init=False)
    _on_cancel: Callable[[Fault], None] = field(init=False)
    _active: bool = field(default=True, init=False)

    def __post_init__(self, seed: int | None, on_cancel: Callable[[Fault], None]) -> None:
        if self.action not in ACTIONS:
            raise ValueError(
                f"unknown fault action {self.action!r}; use one of {', '.join(ACTIONS)}"
            )
        if self.action == "status" and not 400 <= self.status <= 599:
            raise ValueError(f"an injected status must be 4xx or 5xx, not {self.status}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None for no limit)")
        if not 0.0 < self.probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        for name in ("delay", "retry_after", "duration"):
            seconds = getattr(self, name)
            if seconds is not None and not 0 <= seconds < math.inf:  # NaN too
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {seconds}")
        self.method = self.method.upper() if self.method else None
        self._pattern = re.compile(self.path) if self.path is not None else None
        self._rng = random.Random(seed)
        self._on_cancel = on_cancel

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


class FaultList:
    """The armed faults, in the order they are tried; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def arm(self, fault: Fault) -> Fault:
        """Arm ``fault`` last in line and return it."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def cancel(self, fault: Fault) -> None:
        """Disarm ``fault`` (what :meth:`Fault.cancel` calls)."""
        with self._lock:
            fault._active = False
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            for fault in self._faults:
                fault._active = False
            self._faults.clear()

    def active(self) -> list[Fault]:
        """The faults still armed, in the order they are tried."""
        with self._lock:
            return [fault for fault in self._faults if fault.active]

    def match(self, method: str, path: str) -> Fault | None:
        """The first fault that fires for this request (it is counted), if any."""
        with self._lock:
            for fault in self._faults:
                if fault._try(method, path):
                    if not fault.active:
                        self._faults.remove(fault)
                    return fault
        return None


class RequestLog:
    """The latest requests, oldest first, and a way to wait for one; thread-safe.

    Args:
        size: how many of the latest requests are kept.
    """

    def __init__(self, size: int) -> None:
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=size)
        self._logged = threading.Condition()
        self._closed = False

    def append(self, request: RecordedRequest) -> None:
        """Keep a request (the oldest goes when the log is full)."""
        with self._logged:
            self._requests.append(request)
            self._logged.notify_all()

    def snapshot(self) -> list[RecordedRequest]:
        """The requests kept, oldest first."""
        with self._logged:
            return list(self._requests)

    def clear(self) -> None:
        """Forget every request."""
        with self._logged:
            self._requests.clear()

    def close(self) -> None:
        """End every wait now (the server stops)."""
        with self._logged:
            self._closed = True
            self._logged.notify_all()

    def wait_for(
        self, accept: Callable[[RecordedRequest], bool], timeout: float | None
    ) -> RecordedRequest | None:
        """The earliest request ``accept`` takes, waiting for it up to ``timeout`` seconds."""
        found: list[RecordedRequest] = []

        def seen() -> bool:
            found[:] = [request for request in self._requests if accept(request)][:1]
            return bool(found) or self._closed

        with self._logged:
            self._logged.wait_for(seen, timeout=timeout)
        return found[0] if found else None
