"""Reading an HTTP/1.1 answer: the parser under the sink's keep-alive channel (``_http``).

No sockets: the channel hands over the first bytes and a way to receive more. It reads what
RFC 9112 lets a client read, as ``h11`` does, and tests compare the two on the same bytes
(``tests/test_http_parser.py``; where it differs on purpose: docs/reliability.md). What it
refuses is a :class:`ProtocolError`, a transport error (the request may or may not have
been carried out); bytes after a complete answer are an :class:`OutOfStepError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

MAX_HEAD = 65536
"""The longest status line and headers read (an API server's are a few hundred bytes)."""

MAX_BODY = 64 * 1024 * 1024
"""The longest answer body read; an Event answer is a few kilobytes (etcd stops at 1.5 MiB)."""


class ProtocolError(ConnectionError):
    """The answer was cut short or not HTTP/1.x: like a reset, the request may or may not
    have been carried out."""


class Answer(NamedTuple):
    """The server's answer to one request."""

    status: int
    reason: str
    headers: dict[str, str]
    """By lower-case name; a repeated header's values joined by ``", "``."""
    body: bytes
    """De-chunked."""
    resent: bool = False
    """The request was sent a second time, on a new connection (see ``Channel.request``)."""


class OutOfStepError(ProtocolError):
    """Bytes came after an answer: it may have been meant for another request."""


def read_answer(data: bytes, receive: Callable[[], bytes]) -> tuple[Answer, bool]:
    """The whole answer that starts with ``data`` (not empty), and whether its connection
    can be kept alive; ``receive`` returns the next bytes, b"" once the server closed (what
    it raises passes through)."""
    while True:
        data, head = _lines(receive, data, "head")
        if not head:
            raise ProtocolError("a blank line where the status line should be")
        status_line = _STATUS_LINE.fullmatch(head[0])
        if status_line is None:
            raise ProtocolError(f"not an HTTP/1.x status line: {head[0][:100]!r}")
        version, code, reason_bytes = status_line.groups()
        status, reason = int(code), (reason_bytes or b"").decode("latin-1")
        if status < 100:
            raise ProtocolError(f"not an HTTP status: {status}")
        headers = _fields(head[1:])
        if not 100 <= status <= 199:
            break
        if status == 101:
            raise ProtocolError("the server switched protocols unasked")
        # an interim answer (100 Continue, 103 Early Hints): the final one follows
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    keep = "keep-alive" in tokens if version == b"HTTP/1.0" else "close" not in tokens
    length = headers.get("content-length")
    if status in (204, 304):
        body = b""
    elif "transfer-encoding" in headers:  # only chunked gets past _fields; it wins (RFC 9112)
        body, data = _dechunk(receive, data)
    elif length is not None:
        size = content_length(length)
        while len(data) < size:
            data = _more(receive, data, "body")
        body, data = data[:size], data[size:]
    else:  # the body ends where the connection does
        while more := receive():
            data += more
            if len(data) > MAX_BODY:
                raise ProtocolError(f"an answer of more than {MAX_BODY} bytes")
        return Answer(status, reason, headers, data), False
    if data:  # nothing a well-behaved server sends: which request is this answer for?
        raise OutOfStepError(f"{len(data)} bytes came after the answer")
    return Answer(status, reason, headers, body), keep


# RFC 9110 and 9112, with h11's leniencies: obs-text in values and reasons, no reason at all
_STATUS_LINE = re.compile(rb"(HTTP/1\.[0-9]) ([0-9]{3})(?: ([\x01-\x09\x0e-\xff]*))?")
_FIELD_LINE = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+):[ \t]*"
    rb"((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*"
)
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")


def _fields(lines: list[bytes]) -> dict[str, str]:
    """Fields by lower-case name, repeated ones joined; the framing ones checked."""
    fields: dict[str, str] = {}
    for line in lines:
        field = _FIELD_LINE.fullmatch(line)
        if field is None:
            raise ProtocolError(f"not an HTTP header line: {line[:100]!r}")
        name = field[1].decode("ascii").lower()
        value = field[2].decode("latin-1")
        seen = fields.get(name)
        fields[name] = value if seen is None else f"{seen}, {value}"
    length = fields.get("content-length")
    if length is not None:
        content_length(length, limit=False)
        fields["content-length"] = length.split(",", 1)[0].strip()  # copies that agree
    codings = fields.get("transfer-encoding")
    if codings is not None:
        if codings.lower() != "chunked":  # a coding this cannot undo, or two headers
            raise ProtocolError(f"a transfer coding other than chunked: {codings[:100]!r}")
        fields["transfer-encoding"] = "chunked"
    return fields


def content_length(value: str, *, limit: bool = True) -> int:
    """The size a ``Content-Length`` gives (copies joined by ", " must agree); else, or
    (with ``limit``) past :data:`MAX_BODY`, a :class:`ProtocolError`."""
    copies = {part.strip() for part in value.split(",")}
    if len(copies) != 1:
        raise ProtocolError(f"conflicting Content-Length headers: {value[:100]!r}")
    text = copies.pop()
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise ProtocolError(f"not a Content-Length: {value[:100]!r}")
    size = int(text)
    if limit and size > MAX_BODY:
        raise ProtocolError(f"an answer of {size} bytes is more than {MAX_BODY}")
    return size


def _lines(receive: Callable[[], bytes], data: bytes, part: str) -> tuple[bytes, list[bytes]]:
    """What follows the next blank line, and the lines before it."""
    searched = 0
    while not data.startswith((b"\n", b"\r\n")):
        if (end := _BLANK_LINE.search(data, searched)) is not None:
            break
        if len(data) > MAX_HEAD:
            raise ProtocolError(f"the answer's {part} is longer than {MAX_HEAD} bytes")
        searched = max(0, len(data) - 2)
        data = _more(receive, data, part)
    else:  # no lines, the blank one first (it may have come in two parts)
        return data[1 if data[:1] == b"\n" else 2 :], []
    block = data[: end.start()].removesuffix(b"\r")  # the CR of the last line's CRLF
    if block.count(b"\n") == block.count(b"\r\n"):  # CRLF only, as servers send: no regex
        return data[end.end() :], block.split(b"\r\n")
    return data[end.end() :], _LINE_END.split(block)


def _more(receive: Callable[[], bytes], data: bytes, part: str) -> bytes:
    more = receive()
    if not more:
        raise ProtocolError(f"the server closed the connection in the middle of an answer's {part}")
    return data + more


def _dechunk(receive: Callable[[], bytes], data: bytes) -> tuple[bytes, bytes]:
    parts: list[bytes] = []
    total = 0
    while True:
        end = data.find(b"\r\n")
        while end < 0:
            if len(data) > 1024:
                raise ProtocolError("a chunk-size line longer than 1024 bytes")
            searched = max(0, len(data) - 1)
            data = _more(receive, data, "body")
            end = data.find(b"\r\n", searched)
        chunk_line = _CHUNK_LINE.fullmatch(data[:end])
        if chunk_line is None:
            raise ProtocolError(f"not a chunk size: {data[:end][:100]!r}")
        size = int(chunk_line[1], 16)
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
    data, trailers = _lines(receive, data, "trailers")
    _fields(trailers)  # checked as h11 checks them; nothing in them matters here
    return b"".join(parts), data
