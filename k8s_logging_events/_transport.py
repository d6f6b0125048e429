"""The sink's one way to the API server: a transport, and what its answers mean to the writer.

Between :class:`~k8s_logging_events.sink.KubernetesEventSink` and the wire, at the I/O tier.
A :class:`Transport` sends one request, its body already encoded, and returns the server's
:class:`~k8s_logging_events._http_parser.Answer` whatever its status. Two implement it, both
in ``_official`` because the official client decides for both (URL, TLS, credentials):

* the sink's own keep-alive channel (``_http.Channel``, built by ``_official.channel_for``
  from the options of the client's urllib3 pool), with the client's credentials read at each
  request (a refresh hook, an exec plugin, runs there);
* the official client's path (its request serialisation with the credentials, then its
  urllib3 pool, which knows proxies), wherever the channel could not connect exactly as the
  client would.

:func:`transport_for` chooses one, once per sink. :func:`encode` and :func:`send` are the one
body handling and the one error mapping, the same whichever transport carried the request:

* the body is encoded once, as compact JSON; one that cannot be is a
  :class:`~k8s_logging_events.sink.RequestConstructionError` (nothing is sent);
* a 2xx answer: its JSON body, decoded once; one that cannot be decoded is a ``ValueError``
  (the write may have landed: worth a retry);
* another status: an :class:`~k8s_logging_events.sink.ApiStatusError` read from the
  Kubernetes Status (:func:`status_error`: reason, message, causes, ``Retry-After``, the name
  the Status is about). But a write that the channel sent a second time, on a new connection,
  is a transport error whatever the second send met: the first may have been stored;
* a TLS failure: an ``ApiStatusError`` with status 0 and reason ``SSLError``, as the official
  client reports it (not retried: a certificate does not fix itself);
* anything else (refused, reset, timed out, cut short): raised as it is, for the writer to
  retry.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from k8s_logging_events import _http, _official
from k8s_logging_events._errors import ApiStatusError, RequestConstructionError
from k8s_logging_events._http_parser import Answer, ProtocolError

__all__ = [
    "MAX_RETRY_AFTER_SECONDS",
    "Transport",
    "encode",
    "is_tls_error",
    "read",
    "retry_after",
    "send",
    "status_error",
    "transport_for",
]

MAX_RETRY_AFTER_SECONDS = 3600.0
"""The longest ``Retry-After`` honoured; a larger (or absurd) one waits this long."""


def status_error(answer: Answer, method: str = "", path: str = "") -> ApiStatusError:
    """Read the Kubernetes Status out of an error ``answer`` to ``method path``.

    The reason is the Status's (``AlreadyExists`` ...), else the HTTP reason phrase; the
    wait the server asked for is ``Retry-After``, else ``details.retryAfterSeconds``.
    """
    data: Mapping[str, Any] = {}
    if answer.body:
        try:
            parsed = json.loads(answer.body.decode("utf-8", "replace"))
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
        answer.status,
        str(data.get("reason") or answer.reason or ""),
        str(data.get("message") or ""),
        causes=[cause for cause in causes if cause],
        retry_after=retry_after(answer.headers.get("retry-after"), details),
        name=str(details.get("name") or ""),
        method=method,
        path=path,
    )


def retry_after(header: str | None, details: Mapping[str, Any]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, else from a Status's
    ``retryAfterSeconds``; None for neither, or an HTTP date (the writer's schedule then)."""
    value: object = details.get("retryAfterSeconds") if header is None else header
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date or garbage: fall back to the schedule
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


class Transport(Protocol):
    """Carries the sink's requests to one API server."""

    def request(self, method: str, path: str, content_type: str, body: bytes) -> Answer:
        """Send one request (``path`` quoted, ``body`` encoded) and return the whole answer,
        any status; raise what the transport met (``OSError``, urllib3's errors ...)."""
        ...

    def distrust(self) -> None:
        """An answer was meant for another request: let go of the idle connections."""
        ...

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        ...

    def forget_after_fork(self) -> None:
        """In a child process: let go of the parent's connections."""
        ...


def transport_for(api_client: Any, timeout: float | tuple[float, float]) -> Transport:
    """The sink's own channel where it connects exactly as ``api_client`` would, else the
    official client's path (behind a proxy, an ``assert_hostname`` name, a pool option the
    channel does not know ...)."""
    channel = _official.channel_for(api_client, timeout)
    if channel is None:
        return _official.ClientTransport(api_client, timeout)
    return _official.ChannelTransport(api_client, channel)


def encode(method: str, path: str, body: object) -> bytes:
    """The body of a request: bytes as they are, anything else as compact JSON (the API
    server reads any JSON; ASCII, no NaN), nothing for None."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as error:
        raise RequestConstructionError(f"cannot encode {method} {path}: {error}") from error


def send(transport: Transport, method: str, path: str, content_type: str, body: bytes) -> Any:
    """Send one request through ``transport``; return the decoded JSON of a 2xx answer.

    Raises:
        ApiStatusError: another status, or a TLS failure (status 0).
        ValueError: a 2xx answer that is not JSON.
        Exception: whatever else the transport met (retryable).
    """
    try:
        answer = transport.request(method, path, content_type, body)
    except Exception as error:
        if is_tls_error(error):  # as the official client reports it
            raise ApiStatusError(0, f"SSLError: {error}") from None
        raise
    return read(answer, method, path)


def read(answer: Answer, method: str, path: str) -> Any:
    """The decoded JSON of a 2xx ``answer`` to ``method path``; raise for any other."""
    status = answer.status
    if not 200 <= status <= 299:
        if answer.resent and method != "GET":
            # the first send may have been stored before its connection broke: say what
            # the writer would have seen without the resend, a transport error, so that
            # it takes AlreadyExists for its own create, and a Conflict for its own
            # guarded patch (see _pending and _continuation). Whatever the second send
            # met (a 429, a 403 ...) says nothing of the first: as a status it would
            # make the writer count a create that landed as failed, or twice
            raise ProtocolError(
                f"the connection broke during {method} {path}; sent again, it met {status}"
            )
        raise status_error(answer, method, path)
    try:
        return json.loads(answer.body or b"")
    except ValueError as error:
        # an answer we cannot read: the write may have landed, so it is worth a retry
        raise ValueError(f"unreadable answer to {method} {path}: {error}") from error


def is_tls_error(error: BaseException) -> bool:
    """True for a failed handshake or a certificate refused, on either transport (the
    ``ssl`` module's errors, urllib3's, and urllib3's retries given up on one)."""
    if _http.is_tls_error(error):
        return True
    exceptions = sys.modules.get("urllib3.exceptions")
    if exceptions is None:  # urllib3 never ran a request
        return False
    if isinstance(error, exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    return isinstance(error, exceptions.SSLError) or _http.is_tls_error(error)
