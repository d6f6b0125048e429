"""Fault injection, the request log and connection refusal of the local API server.

Part of :class:`~k8s_logging_events.testing.LocalApiServer` on the test side of the
pipeline: the controls a real cluster does not have. :class:`ServerControls` is a base class
of the facade (``_server``), which owns the fault list, the request log and the transport
these methods drive; the dispatcher (``_dispatch``) applies the faults to requests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from k8s_logging_events.testing.apiserver._faults import (
    Fault,
    FaultAction,
    FaultList,
    RecordedRequest,
    RequestLog,
)
from k8s_logging_events.testing.apiserver._http import Transport


class ServerControls:
    """Faults, the request log and the listening port of a :class:`LocalApiServer`."""

    _faults: FaultList
    _log: RequestLog
    _transport: Transport

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()`` (the server says)."""
        raise NotImplementedError

    # -- faults -----------------------------------------------------------------------

    def inject(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        times: int | None = 1,
        action: FaultAction = "status",
        status: int = 500,
        retry_after: float | None = None,
        delay: float = 0.0,
        commit: bool = False,
        probability: float = 1.0,
        seed: int | None = None,
        message: str | None = None,
        duration: float | None = None,
    ) -> Fault:
        """Arm a fault for the next ``times`` requests that match ``method`` and ``path``.

        Counting starts now: requests made before the call never count. Faults are tried in
        the order they were armed; the first that matches a request takes it.

        Args:
            method: the HTTP method to match (any when None).
            path: a regular expression searched in the URL path (any when None).
            times: how many matching requests to fail (None: until cancelled).
            action: what to do to a matching request:

                * ``"status"`` -- answer ``status`` with a proper ``Status`` body (429
                  ``TooManyRequests`` with ``Retry-After``, 500 ``InternalError``, 503
                  ``ServiceUnavailable``, 504 ``Timeout`` ...);
                * ``"delay"`` -- answer normally, ``delay`` seconds late;
                * ``"drop"`` -- close the connection without an answer;
                * ``"hang"`` -- never answer: hold the request until the client gives up
                  (closes the connection) or the server stops, then close it;
                * ``"refuse"`` -- stop listening, so that new connections are refused, for
                  ``duration`` seconds (until :meth:`accept_connections` when None), then
                  drop this request's connection without an answer.
            status: the status code for ``"status"``.
            retry_after: seconds for the ``Retry-After`` header and
                ``details.retryAfterSeconds`` (429 gets 1 when None).
            delay: seconds to wait before acting (any action).
            commit: process the request first -- the write is stored -- and then fail it
                (a lost response); by default the request is failed before it is processed.
            probability: fire on a matching request only with this probability (a chaos
                mode; combine with ``times=None`` and ``seed``).
            seed: seeds the random choices of ``probability``.
            message: the ``message`` of the Status body.
            duration: for ``"refuse"``: how long to refuse connections.
        """
        fault = Fault(
            method=method,
            path=path,
            action=action,
            status=status,
            times=times,
            retry_after=retry_after,
            delay=delay,
            commit=commit,
            probability=probability,
            seed=seed,
            message=message,
            duration=duration,
            on_cancel=self._faults.cancel,
        )
        return self._faults.arm(fault)

    def clear_faults(self) -> None:
        """Disarm every injected fault."""
        self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The faults still armed, in the order they are tried."""
        return self._faults.active()

    # -- request log ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The latest requests (up to ``max_requests``), oldest first: a snapshot."""
        return self._log.snapshot()

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._log.clear()

    def wait_for_request(
        self,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        timeout: float | None = None,
    ) -> RecordedRequest | None:
        """Wait until the request log holds a request that ``predicate`` accepts; return it.

        Requests already in the log count. Useful to wait, without sleeping, until another
        process (``kubectl get --watch``, the code under test) has reached the server::

            server.wait_for_request(lambda r: r.query.get("watch") == "true", timeout=10)

        Args:
            predicate: what to wait for (None: any request).
            timeout: seconds to wait at most (None: no limit).

        Returns:
            The earliest matching request, or None when ``timeout`` ran out first.
        """
        return self._log.wait_for(predicate or (lambda _request: True), timeout)

    # -- connection refusal -----------------------------------------------------------

    def refuse_connections(self, duration: float | None = None) -> None:
        """Stop listening: new connections are refused (``ECONNREFUSED``) until re-opened.

        Idle keep-alive connections are closed too, so that pooled clients must reconnect
        (and be refused); requests in progress finish. Returns once the port is closed.

        Args:
            duration: re-open by itself after this many seconds; None waits for
                :meth:`accept_connections`.
        """
        self._set_listening(False, duration)

    def accept_connections(self) -> None:
        """Listen again on the same port; returns once the port accepts connections.

        Raises:
            OSError: the port could not be bound again.
        """
        self._set_listening(True, None)

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Refuse connections inside the ``with`` block."""
        self.refuse_connections()
        try:
            yield
        finally:
            self.accept_connections()

    def wait_for_listening(self, timeout: float | None = None) -> bool:
        """Block until the server accepts connections; False if ``timeout`` ran out first.

        For tests that refuse connections for a ``duration``: this waits for the re-opening
        without sleeping.
        """
        return self._transport.wait_for_listening(timeout)

    def _set_listening(self, listening: bool, duration: float | None) -> None:
        if not self.running:
            raise RuntimeError("LocalApiServer is not running")
        self._transport.set_listening(listening, duration)
