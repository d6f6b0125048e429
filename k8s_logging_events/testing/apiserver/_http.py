"""HTTP/1.1 plumbing of :class:`~k8s_logging_events.testing.LocalApiServer`.

Part of the local API server on the test side of the pipeline: request headers as a
case-insensitive record, request bodies (sized or chunked), the ``Date`` header, and the
chunked framing of a watch stream (:func:`write_watch`), which ends cleanly after a
``timeoutSeconds`` and reports a client that has gone or a server that stops.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from email.utils import formatdate
from io import BufferedIOBase

from k8s_logging_events.testing.apiserver._store import Store
from k8s_logging_events.testing.apiserver._watch import WatchRequest, stream_watch

__all__ = ["MAX_HEADERS", "MAX_LINE", "Headers", "http_date", "read_body", "write_watch"]

MAX_HEADERS = 100
MAX_LINE = 65536


class Headers:
    """Request headers in arrival order, looked up without regard to case."""

    __slots__ = ("_lookup", "pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self._lookup = {name.lower(): value for name, value in pairs}

    def get(self, name: str, default: str | None = None, /) -> str | None:
        """Return the (last) value of header ``name``, or ``default``."""
        return self._lookup.get(name.lower(), default)

    def as_dict(self) -> dict[str, str]:
        """The headers as a dict keyed by the names as sent."""
        return dict(self.pairs)


_MAX_HEADERS = 100
_MAX_LINE = 65536


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


def write_watch(
    wfile: BufferedIOBase,
    sock: socket.socket,
    watch: WatchRequest,
    store: Store,
    stopping: threading.Event,
) -> bool:
    """Answer a watch: 200, then one chunk per watch event until the stream ends.

    Returns True when the stream ended cleanly (the connection can serve another request),
    False when the client has gone or the server stops (close the connection).
    """
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json\r\n"
        f"Date: {http_date()}\r\n"
        "Cache-Control: no-cache, private\r\n"
        "Transfer-Encoding: chunked\r\n"
        "\r\n"
    )

    def write(data: bytes) -> None:
        wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def alive() -> bool:
        if stopping.is_set():
            return False
        # a watching client sends nothing: readable means it closed (or broke) the connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    try:
        wfile.write(head.encode("latin-1"))
        stream_watch(watch, store, write, alive, stopping)
        if alive():
            wfile.write(b"0\r\n\r\n")
            return True
    except OSError:
        pass
    return False
