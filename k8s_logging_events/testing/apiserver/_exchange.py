"""One request on a connection of the local API server: reading it, and writing its answer.

Part of the HTTP transport of the local API server, on the test side of the pipeline.
:class:`Handler` reads each request of a keep-alive HTTP/1.1 connection (the request line
and headers parsed here rather than by ``parse_request``, whose e-mail header parser costs
more than the whole API call; anything unusual falls back to it) and hands it to the
transport (:class:`~._http.Transport`, seen here only as the :class:`Carrier` it is, so
that this module does not import the one above it); an :class:`Exchange` is the way back:
a sized answer, a chunked stream (a watch), a dropped connection or one that never answers.
Each marks the connection's state (``WAITING``, ``BUSY``, ``ANSWERING``) so that a refusal
closes kept-alive connections without cutting an answer short.
"""

from __future__ import annotations

import contextlib
import http
import http.server
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from io import BufferedIOBase
from typing import Any, Protocol

from k8s_logging_events.testing.apiserver._requests import Headers, HttpResponse

MAX_HEADERS = 100
MAX_LINE = 65536

WAITING = "waiting"
"""Waiting for a request line: an idle keep-alive connection, closed at once on refusal."""
BUSY = "busy"
"""Reading or processing a request: it finishes, then the connection closes on refusal."""
ANSWERING = "answering"
"""Writing the end of an answer: refusal waits until it is written and the connection closed."""


Write = Callable[[bytes], None]
Alive = Callable[[], bool]


class Carrier(Protocol):
    """What a connection's handler and its exchanges need of the transport that carries it."""

    stopping: threading.Event
    """Set when the transport stops: no new request is read, streams end."""
    chunked_answers: bool
    """Send answers with a body chunked rather than with a ``Content-Length``."""

    def set_state(self, sock: socket.socket, state: str) -> None:
        """Record that the connection is ``WAITING``, ``BUSY`` or ``ANSWERING``."""

    def answered(self, sock: socket.socket) -> bool:
        """An answer was written; True when the connection must now close (a refusal)."""

    def dispatch(self, handler: Handler) -> None:
        """Read the body of the request ``handler`` has parsed and serve it."""


def read_body(rfile: BufferedIOBase, headers: Headers) -> bytes:
    """Read a request body: ``Content-Length`` bytes, or the chunks of a chunked one."""
    length = headers.get("Content-Length")
    if length:
        return rfile.read(int(length))
    if (headers.get("Transfer-Encoding") or "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(rfile.read(size))
            rfile.readline()
    return b""


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class Handler(http.server.BaseHTTPRequestHandler):
    """One keep-alive HTTP/1.1 connection: reads requests and hands them to the transport.

    Anything unusual in the request line falls back to the standard parser.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "k8s-logging-events-apiserver"
    sys_version = ""
    server: Any  # the transport's _HttpServer: .transport is the Carrier
    request_headers: Headers

    def handle_one_request(self) -> None:
        """Read one request (marking the connection idle while waiting) and serve it."""
        transport: Carrier = self.server.transport
        line = self.rfile.readline(MAX_LINE + 1)
        transport.set_state(self.connection, BUSY)
        self.raw_requestline = line
        if not line or transport.stopping.is_set():
            self.close_connection = True
            return
        if len(line) > MAX_LINE:
            self.requestline = self.request_version = self.command = ""
            self.send_error(http.HTTPStatus.REQUEST_URI_TOO_LONG)
            return
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            if not self.parse_request():
                return
            self.request_headers = Headers(list(self.headers.items()))
        elif not self._read_headers(parts):
            return
        transport.dispatch(self)

    def _read_headers(self, parts: list[str]) -> bool:
        self.command, self.path, self.request_version = parts
        self.requestline = " ".join(parts)
        pairs: list[tuple[str, str]] = []
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(line) > MAX_LINE or len(pairs) >= MAX_HEADERS:
                self.send_error(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            name, _, value = line.decode("latin-1").partition(":")
            pairs.append((name.strip(), value.strip()))
        headers = Headers(pairs)
        self.request_headers = headers
        connection = (headers.get("Connection") or "").lower()
        if self.request_version == "HTTP/1.0":
            self.close_connection = connection != "keep-alive"
        else:
            self.close_connection = connection == "close"
        if (headers.get("Expect") or "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the request log is the server's."""


class Exchange:
    """The connection of one request, for its answer: respond, stream, drop or hang."""

    __slots__ = ("_handler", "_stopping", "_transport")

    def __init__(self, handler: Handler, transport: Carrier) -> None:
        self._handler = handler
        self._transport = transport
        self._stopping = transport.stopping

    def peer_certificate(self) -> dict[str, Any] | None:
        """The client certificate the TLS layer verified (None without TLS or certificate)."""
        sock = self._handler.connection
        certificate: dict[str, Any] | None = (
            sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        )
        return certificate

    def respond(self, response: HttpResponse) -> None:
        """Write ``response`` (its head only, for a HEAD request); chunked when the
        transport's ``chunked_answers`` is on."""
        handler = self._handler
        try:
            phrase = http.HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        body = b"" if handler.command == "HEAD" else response.body
        if body and self._transport.chunked_answers:
            # two chunks and the last, empty one: what a client must put together again
            half = len(body) // 2
            parts = (body[:half], body[half:]) if half else (body,)
            body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
            framing = "Transfer-Encoding: chunked\r\n"
        else:
            framing = f"Content-Length: {len(response.body)}\r\n"
        head = [
            f"HTTP/1.1 {response.status} {phrase}\r\n",
            f"Content-Type: {response.content_type}\r\n",
            framing,
            f"Date: {http_date()}\r\n",
            "Cache-Control: no-cache, private\r\n",
        ]
        head.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        if handler.close_connection:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        self._last_write("".join(head).encode("latin-1") + body)

    def _last_write(self, data: bytes) -> None:
        """Write the end of the answer; the connection is then waiting (or closed, if refused)."""
        transport = self._transport
        sock = self._handler.connection
        transport.set_state(sock, ANSWERING)
        try:
            self._handler.wfile.write(data)
        finally:
            if transport.answered(sock):
                self._handler.close_connection = True

    def stream(self, produce: Callable[[Write, Alive], None]) -> None:
        """Answer 200 with a chunked JSON body that ``produce(write, alive)`` writes.

        ``write`` sends one chunk (and raises ``OSError`` when the client has gone);
        ``alive`` turns False once the client has gone or the server stops. When the stream
        ends cleanly the connection serves the next request; otherwise it is closed.
        """
        handler = self._handler
        sock = handler.connection
        stopping = self._stopping
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: application/json\r\n"
            f"Date: {http_date()}\r\n"
            "Cache-Control: no-cache, private\r\n"
            "Transfer-Encoding: chunked\r\n"
            "\r\n"
        )

        def write(data: bytes) -> None:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        def alive() -> bool:
            if stopping.is_set():
                return False
            # a watching client sends nothing: readable means it closed (or broke) the connection
            try:
                return not _readable(sock, 0)
            except (OSError, ValueError):
                return False

        try:
            handler.wfile.write(head.encode("latin-1"))
            produce(write, alive)
            if alive():
                self._last_write(b"0\r\n\r\n")
                return
        except OSError:
            pass
        self.drop()

    def drop(self) -> None:
        """Close the connection without (more of) an answer."""
        self._handler.close_connection = True
        with contextlib.suppress(OSError):
            self._handler.connection.shutdown(socket.SHUT_RDWR)

    def hang(self) -> None:
        """Never answer: wait until the client closes the connection or the server stops."""
        with contextlib.suppress(OSError, ValueError):
            _readable(self._handler.connection, None)
        self.drop()


def _readable(sock: socket.socket, timeout: float | None) -> bool:
    """True once ``sock`` is readable (bytes, or the client's close) within ``timeout`` seconds
    (None: however long that takes). poll(), as select() refuses descriptors past 1024."""
    if not hasattr(select, "poll"):
        return bool(select.select([sock], [], [], timeout)[0])
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(None if timeout is None else timeout * 1000))
