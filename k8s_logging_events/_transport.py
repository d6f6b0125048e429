"""The sink's one way to the API server: a transport, and what its answers mean to the writer.

Between the sink and the wire (docs/architecture.md). A :class:`Transport` (the sink's
channel, or the client's own path in ``_official``) returns an answer whatever its status;
:func:`encode` and :func:`send` are the one body handling and error mapping:

* a body that cannot be encoded, or one over the server's limit: ``RequestConstructionError``
  (nothing is sent);
* a 2xx answer: its JSON, decoded once; not JSON: ``ValueError`` (it may have landed: retry);
* another status: ``ApiStatusError`` from the Kubernetes Status; but a write the channel
  sent twice is a transport error whatever the second send met (the first may be stored);
* a TLS failure: ``ApiStatusError`` status 0, reason ``SSLError``, as the client says it
  (not retried: a certificate does not fix itself), but for a connection the server closed
  during the handshake, which is retried like any other connection closed (as is a TLS
  record the channel cannot read on a connection that answered before);
* anything else (refused, reset, timed out, cut short): raised as is, for a retry.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from k8s_logging_events._errors import ApiStatusError, RequestConstructionError
from k8s_logging_events._http_parser import Answer, ProtocolError

MAX_BODY_BYTES = 3 * 1024 * 1024
"""The most an API server reads of a request's body (its default ``MaxRequestBodyBytes``).
A larger write is refused with 413, or, on a real server, its connection is cut while the
body is still on its way: an error no retry can mend, better found before sending."""

MAX_RETRY_AFTER_SECONDS = 3600.0
"""The longest ``Retry-After`` honoured; a larger (or absurd) one waits this long."""


MAX_SERVER_TEXT = 1024
"""The most characters of a Status's message (or reason, name, cause) an error keeps."""

Parse = Callable[[Any], Any]
"""What a caller makes of the decoded JSON of a 2xx answer (an Event, say)."""

# line breaks and terminal controls: the server's text (a webhook's, a proxy's page) ends up
# in the library's reports, where they would forge log lines or drive the terminal
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _server_text(value: object) -> str:
    """``value`` as the server's text is shown: controls escaped, cut to :data:`MAX_SERVER_TEXT`."""
    text = str(value or "")[: MAX_SERVER_TEXT + 1]
    text = _CONTROLS.sub(lambda match: repr(match[0])[1:-1], text)
    return text if len(text) <= MAX_SERVER_TEXT else f"{text[: MAX_SERVER_TEXT - 4]} ..."


def status_error(answer: Answer, method: str = "", path: str = "") -> ApiStatusError:
    """The Kubernetes Status of an error ``answer`` (its reason, else the HTTP reason phrase),
    its texts as :func:`_server_text` shows them."""
    try:
        parsed = json.loads(answer.body.decode("utf-8", "replace"))
    except ValueError:  # not JSON, or no body at all
        parsed = None
    data: Mapping[str, Any] = parsed if isinstance(parsed, Mapping) else {}
    details = data.get("details")
    details = details if isinstance(details, Mapping) else {}
    causes = [
        _server_text(cause.get("reason") or cause.get("type"))
        for cause in details.get("causes") or ()
        if isinstance(cause, Mapping)
    ]
    return ApiStatusError(
        answer.status,
        _server_text(data.get("reason") or answer.reason),
        _server_text(data.get("message")),
        causes=[cause for cause in causes if cause],
        retry_after=retry_after(answer.headers.get("retry-after"), details),
        name=_server_text(details.get("name")),
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
    except OverflowError:  # an integer no float holds (JSON has no limit): absurdly long
        return MAX_RETRY_AFTER_SECONDS
    return None if math.isnan(seconds) else min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


class Transport(Protocol):
    """Carries the sink's requests to one API server: ``request`` returns the whole answer,
    any status, and raises what the transport met; ``distrust``: an answer was meant for
    another request, let go of the idle connections; ``close`` closes the idle connections
    (those in use close when their request ends); ``interrupt`` closes and ends the requests
    in flight at once, where it can; ``forget_after_fork`` lets go of the parent's connections
    in a child process."""

    def request(self, method: str, path: str, content_type: str, body: bytes) -> Answer: ...

    def distrust(self) -> None: ...

    def close(self) -> None: ...

    def interrupt(self) -> None: ...

    def forget_after_fork(self) -> None: ...


def encode(method: str, path: str, body: object) -> bytes:
    """Bytes as they are (a patch), None as nothing, anything else as compact UTF-8 JSON (no
    NaN); whichever, at most :data:`MAX_BODY_BYTES` of it."""
    if body is None:
        return b""
    try:
        # UTF-8, not \u escapes (three times a two-byte character's bytes): a message of
        # max_message_bytes stays well under the limit; a lone surrogate, which UTF-8 cannot
        # carry, is escaped as JSON escapes it (only a JSON string holds one)
        data = (
            body
            if isinstance(body, bytes)
            else json.dumps(
                body, separators=(",", ":"), allow_nan=False, ensure_ascii=False
            ).encode("utf-8", "backslashreplace")
        )
    except (TypeError, ValueError) as error:
        raise RequestConstructionError(f"cannot encode {method} {path}: {error}") from error
    if len(data) > MAX_BODY_BYTES:
        raise RequestConstructionError(
            f"cannot send {method} {path}: its body of {len(data)} bytes is over the API "
            f"server's limit of {MAX_BODY_BYTES}"
        )
    return data


def send(
    transport: Transport,
    method: str,
    path: str,
    content_type: str,
    body: bytes,
    parse: Parse | None = None,
) -> Any:
    """Send one request; return the ``parse``d JSON of a 2xx answer (errors: the module's)."""
    try:
        answer = transport.request(method, path, content_type, body)
    except Exception as error:
        if is_tls_error(error):  # as the official client reports it
            raise ApiStatusError(0, f"SSLError: {error}") from None
        raise
    return read(answer, method, path, parse)


def read(answer: Answer, method: str, path: str, parse: Parse | None = None) -> Any:
    """The decoded JSON of a 2xx ``answer`` to ``method path``, ``parse``d; raise for any other."""
    status = answer.status
    if not 200 <= status <= 299:
        if answer.resent and method != "GET":
            # the first send may have been stored: as without the resend, a transport error,
            # so that the writer takes AlreadyExists or a Conflict for its own (_pending,
            # _continuation); the second send's status (403 ...) says nothing of it, but a
            # 429 still asks for a wait, and it is waited out with the break as its cause
            exists = method == "POST" and status == 409  # perhaps the first send's
            broke = ProtocolError(
                f"the connection broke during {method} {path}, which may have been carried "
                f"out; sent again, {'it already existed' if exists else 'it was answered'}: "
                f"{status} {answer.reason}".rstrip()
            )
            if status != 429:
                raise broke
            raise status_error(answer, method, path) from broke
        raise status_error(answer, method, path)
    try:
        decoded = json.loads(answer.body or b"")
        return decoded if parse is None else parse(decoded)
    except Exception as error:  # odd JSON fails as anything: a count 1e400, nesting too deep
        # an answer we cannot read: the write may have landed, so it is worth a retry
        raise ValueError(f"unreadable answer to {method} {path}: {error}") from error


def is_tls_error(error: BaseException) -> bool:
    """True for a failed handshake or a refused certificate on either transport (the ``ssl``
    module's errors, urllib3's, and urllib3's retries given up on one); not for a connection
    the server closed during the handshake (an EOF), which is a transport error."""
    # a module not imported yet raised nothing
    ssl, exceptions = sys.modules.get("ssl"), sys.modules.get("urllib3.exceptions")
    if exceptions is not None and isinstance(error, exceptions.MaxRetryError) and error.reason:
        error = error.reason
    if exceptions is not None and isinstance(error, exceptions.SSLError):
        inner = error.args[0] if error.args else None  # urllib3 wraps the ssl module's error
        closed = ssl is not None and isinstance(inner, ssl.SSLEOFError | ssl.SSLZeroReturnError)
        return not closed
    if ssl is None or isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return False
    return isinstance(error, ssl.SSLError)
