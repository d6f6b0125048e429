"""One request through the local API server: log, fault, authentication, answer.

Part of the local API server on the test side of the pipeline, between the transport
(``_http``, which calls :meth:`Dispatcher.serve` on the request's connection thread) and the
REST layer (``_rest``). Every request is first kept in the request log; then the first armed
fault that matches it takes it -- answering a ``Status`` of its own, late, never, or not at
all, before or after the request is processed (``commit``) -- or, without one, the request
is authenticated (when the server asks for credentials) and answered: a sized answer, or a
watch streamed from the store until it ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from k8s_logging_events.testing.apiserver._auth import Authenticator, unauthorized
from k8s_logging_events.testing.apiserver._errors import fault_status
from k8s_logging_events.testing.apiserver._exchange import Exchange
from k8s_logging_events.testing.apiserver._faults import FaultList, RecordedRequest, RequestLog
from k8s_logging_events.testing.apiserver._requests import (
    HttpRequest,
    HttpResponse,
    error_response,
)
from k8s_logging_events.testing.apiserver._rest import RestApi
from k8s_logging_events.testing.apiserver._store import Store
from k8s_logging_events.testing.apiserver._watch import stream_watch


@dataclass(frozen=True, kw_only=True, slots=True)
class Dispatcher:
    """Answers each request of the server, or meets it with an injected fault."""

    rest: RestApi
    """Answers requests."""
    store: Store
    """Where watches stream from."""
    auth: Authenticator
    """Decides whether a request carries valid credentials."""
    faults: FaultList
    """The armed faults."""
    log: RequestLog
    """The request log."""
    stopping: threading.Event
    """Set when the server stops (a fault's delay ends at once)."""
    refuse: Callable[[float | None], None]
    """Stops listening for that many seconds (None: until told), for ``refuse``."""

    def serve(self, request: HttpRequest, exchange: Exchange) -> None:
        """Answer one request: log it, apply a fault that matches it, or answer it."""
        headers = request.headers
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            content_type=headers.get("Content-Type") or "",
            body=request.parsed(),
            headers=headers.as_dict(),
            raw_body=request.body,
        )
        self.log.append(record)
        fault = self.faults.match(request.method, request.path)
        if fault is None:
            self._respond(exchange, self._handle(request, exchange), record)
            return
        record.fault = fault.action
        response = self._handle(request, exchange) if fault.commit else None
        # a wait past TIMEOUT_MAX raises OverflowError, which would drop the connection
        if fault.delay > 0 and self.stopping.wait(min(fault.delay, threading.TIMEOUT_MAX)):
            exchange.drop()
            return
        if fault.action == "delay":
            self._respond(exchange, response or self._handle(request, exchange), record)
        elif fault.action == "status":
            failure = fault_status(fault.status, fault.message, fault.retry_after)
            self._respond(exchange, error_response(failure), record)
        elif fault.action == "drop":
            exchange.drop()
        elif fault.action == "hang":
            exchange.hang()
        else:
            with contextlib.suppress(RuntimeError):
                self.refuse(fault.duration)
            exchange.drop()

    def _handle(self, request: HttpRequest, exchange: Exchange) -> HttpResponse:
        """Authenticate (when the server asks for credentials), then answer the request."""
        user = self.auth.authenticate(request.header("Authorization"), exchange.peer_certificate())
        if user is None:
            return error_response(unauthorized())
        request.user = user
        return self.rest.handle(request)

    def _respond(self, exchange: Exchange, response: HttpResponse, record: RecordedRequest) -> None:
        record.status = response.status
        record.reason = response.reason
        watch = response.watch
        if watch is None:
            exchange.respond(response)
            return
        store, stopping = self.store, self.stopping
        exchange.stream(lambda write, alive: stream_watch(watch, store, write, alive, stopping))
