"""Reading an HTTP/1.1 answer: the parser under the sink's keep-alive channel (``_http``).

At the very bottom of the sink's write path. :class:`~k8s_logging_events._http.Channel` sends a
request, receives the first bytes of its answer, and hands them here with the means to
receive more: :func:`read_answer` reads the status line, the headers (by lower-case name)
and the body, by ``Content-Length``, de-chunked, or up to the close, and says whether the
connection may carry another request. No sockets here: tests feed it bytes, split anywhere,
and compare what it reads with ``h11``'s reading of the same bytes
(``tests/test_http_parser.py``).

What it refuses is a :class:`ProtocolError` (a transport error: the connection is closed,
and the request may or may not have been carried out): what is not HTTP/1.x, what is longer
than :data:`MAX_HEAD` or :data:`MAX_BODY`, lengths that cannot be trusted, a switch of
protocols nobody asked for; and, as :class:`OutOfStepError`, bytes after a complete answer,
which may belong to another request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "Answer",
    "OutOfStepError",
    "ProtocolError",
    "content_length",
    "parse_head",
    "read_answer",
]

MAX_HEAD = 65536
"""The longest status line and headers read (an API server's are a few hundred bytes)."""

MAX_BODY = 64 * 1024 * 1024
"""The longest answer body read; an Event answer is a few kilobytes (etcd stops at 1.5 MiB)."""


class ProtocolError(ConnectionError):
    """The connection closed before the answer was complete, or the answer was not HTTP/1.x.

    A transport error like a reset connection: the request may or may not have been
    carried out.
    """


class Answer(NamedTuple):
    """The server's answer to one request."""

    status: int
    """The HTTP status code."""
    reason: str
    """The HTTP reason phrase (``Created``, ``Not Found`` ...)."""
    headers: dict[str, str]
    """The headers, by lower-case name; a repeated header's values joined by ``", "``."""
    body: bytes
    """The body, de-chunked."""
    resent: bool = False
    """True when the request was sent a second time, on a fresh connection, because the
    kept-alive one it was first sent on turned out closed (see :meth:`Channel.request`)."""


class OutOfStepError(ProtocolError):
    """Bytes came after an answer: it may have been meant for another request."""


def read_answer(data: bytes, receive: Callable[[], bytes]) -> tuple[Answer, bool]:
    """Read one whole answer that starts with ``data``; also say whether the connection
    that carried it can be kept alive.

    Args:
        data: the first bytes received (not empty).
        receive: returns the next bytes the server sent, b"" once it closed (it may raise
            ``TimeoutError`` or another ``OSError``, which passes through).

    Raises:
        ProtocolError: the answer is not one this reads (see the module's docstring), or the
            connection closed before it was complete.
    """
    while True:
        end = data.find(b"\r\n\r\n")
        while end < 0:
            if len(data) > MAX_HEAD:
                raise ProtocolError(f"the answer's head is longer than {MAX_HEAD} bytes")
            searched = len(data)
            data = _more(receive, data, "head")
            end = data.find(b"\r\n\r\n", max(0, searched - 3))
        version, status, reason, headers = parse_head(data[:end])
        data = data[end + 4 :]
        if not 100 <= status <= 199:
            break
        if status == 101:
            raise ProtocolError("the server switched protocols unasked")
        # an interim answer (100 Continue, 103 Early Hints): the final one follows
    keep = _keeps_alive(version, headers.get("connection", ""))
    codings = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if status in (204, 304):
        body = b""
    elif codings is not None:
        if codings.rsplit(",", 1)[-1].strip().lower() != "chunked":
            # the body ends where the connection does (RFC 9112, 6.3)
            return Answer(status, reason, headers, _until_closed(receive, data)), False
        body, data = _dechunk(receive, data)
    elif length is not None:
        size = content_length(length)
        while len(data) < size:
            data = _more(receive, data, "body")
        body, data = data[:size], data[size:]
    else:
        return Answer(status, reason, headers, _until_closed(receive, data)), False
    if data:  # nothing a well-behaved server sends: which request is this answer for?
        raise OutOfStepError(f"{len(data)} bytes came after the answer")
    return Answer(status, reason, headers, body), keep


def parse_head(head: bytes) -> tuple[bytes, int, str, dict[str, str]]:
    """The version, status, reason phrase and headers of an answer's head."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if (
        not version.startswith(b"HTTP/1.")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in (b"", b" ")
    ):
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():  # also an obsolete folded line
            raise ProtocolError(f"not an HTTP header line: {line[:100]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        seen = headers.get(key)
        headers[key] = text if seen is None else f"{seen}, {text}"
    return version, int(code), rest[4:].decode("latin-1"), headers


def _keeps_alive(version: bytes, connection: str) -> bool:
    tokens = {token.strip().lower() for token in connection.split(",")}
    if version == b"HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def content_length(value: str) -> int:
    # a repeated header (joined by ", ") is fine when every copy says the same
    copies = {part.strip() for part in value.split(",")}
    if len(copies) != 1:
        raise ProtocolError(f"conflicting Content-Length headers: {value!r}")
    text = copies.pop()
    if not text.isdigit() or not text.isascii():
        raise ProtocolError(f"not a Content-Length: {value!r}")
    size = int(text)
    if size > MAX_BODY:
        raise ProtocolError(f"an answer of {size} bytes is more than {MAX_BODY}")
    return size


def _more(receive: Callable[[], bytes], data: bytes, part: str) -> bytes:
    more = receive()
    if not more:
        raise ProtocolError(f"the server closed the connection in the middle of an answer's {part}")
    return data + more


def _until_closed(receive: Callable[[], bytes], data: bytes) -> bytes:
    while True:
        more = receive()
        if not more:
            return data
        data += more
        if len(data) > MAX_BODY:
            raise ProtocolError(f"an answer of more than {MAX_BODY} bytes")


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _dechunk(receive: Callable[[], bytes], data: bytes) -> tuple[bytes, bytes]:
    """Read a chunked body that starts ``data``; return it and what follows it."""
    parts: list[bytes] = []
    total = 0
    while True:
        end = data.find(b"\r\n")
        while end < 0:
            if len(data) > 1024:
                raise ProtocolError("a chunk-size line longer than 1024 bytes")
            data = _more(receive, data, "body")
            end = data.find(b"\r\n")
        size_text = data[:end].split(b";", 1)[0].strip()
        if not size_text or not _HEX.issuperset(size_text) or len(size_text) > 16:
            raise ProtocolError(f"not a chunk size: {data[:end][:100]!r}")
        size = int(size_text, 16)
        data = data[end + 2 :]
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise ProtocolError(f"an answer of more than {MAX_BODY} bytes")
        while len(data) < size + 2:
            data = _more(receive, data, "body")
        if data[size : size + 2] != b"\r\n":
            raise ProtocolError("a chunk is not followed by a line break")
        parts.append(data[:size])
        data = data[size + 2 :]
    # trailer fields, then an empty line; nothing in them matters here
    while True:
        end = data.find(b"\r\n")
        while end < 0:
            if len(data) > MAX_HEAD:
                raise ProtocolError(f"trailers longer than {MAX_HEAD} bytes")
            data = _more(receive, data, "trailers")
            end = data.find(b"\r\n")
        line, data = data[:end], data[end + 2 :]
        if not line:
            return b"".join(parts), data
