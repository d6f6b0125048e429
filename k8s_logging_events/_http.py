"""A keep-alive HTTP/1.1 channel to the API server: the bottom of the sink's write path.

The official client decides everything about the connection (``_official.channel_for``
reads it); the channel replaces only its request machinery, with as few system calls as it
can (why: docs/performance.md). A connection is reused only when its answer ended where the
bytes did and nothing came while it was idle (docs/reliability.md, "The channel").
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import select
import socket
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from k8s_logging_events import _process
from k8s_logging_events._http_parser import Answer, OutOfStepError, ProtocolError, read_answer

if TYPE_CHECKING:
    import ssl

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods whose request may be sent again after its answer could not be trusted (RFC 9110,
9.2.2): not POST, nor PATCH."""

SocketOption = tuple[int, int, Any]
"""``(level, option, value)``, as ``socket.setsockopt`` takes them."""
Headers = Sequence[tuple[str, str]]

_RECV = 65536
_KERNEL_TIMEOUTS = sys.platform.startswith("linux")  # where the timeval layout is known
_NO_DELAY: tuple[SocketOption, ...] = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """How to put TLS on a connection, as the official client's urllib3 pool would.

    Each new connection gets a context of its own, as in urllib3: a CA bundle or client
    certificate rewritten on disk is read again by the next connection. A file deleted since
    is loaded from ``kept``, what it held when the settings were made: the official client
    deletes the files it wrote for a kubeconfig's ``-data`` at exit, before ``logging``'s
    shutdown flushes the handler.
    """

    server_hostname: str
    """Sent in SNI and (when checked) matched against the certificate."""
    verify: bool = True
    check_hostname: bool = True
    ca_file: str | None = None
    ca_data: str | bytes | None = None
    """PEM text or DER bytes."""
    cert_file: str | None = None
    key_file: str | None = None
    kept: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    """The files' contents by path, when the settings were made (a private key among them:
    never in a repr, which a debugger or a traceback's locals may show)."""

    def context(self) -> ssl.SSLContext:
        """A client context with urllib3's defaults and these settings (``ssl.SSLError``:
        the CA cannot be loaded, as urllib3 reports it)."""
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
        if sys.version_info >= (3, 13):  # what urllib3 adds there, as create_default_context
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
        context.post_handshake_auth = True  # a server may ask for the certificate later (1.3)
        context.hostname_checks_common_name = False
        context.check_hostname = self.verify and self.check_hostname  # off before CERT_NONE
        if not self.verify:
            context.verify_mode = ssl.CERT_NONE
        if self.ca_file or self.ca_data:
            try:
                context.load_verify_locations(cafile=self.ca_file, cadata=self.ca_data)
            except ssl.SSLError:
                raise
            except OSError as error:  # a missing file: urllib3 calls that an SSLError
                kept = self.kept.get(self.ca_file or "")
                if kept is None or os.path.exists(self.ca_file or ""):
                    raise ssl.SSLError(f"cannot load the CA certificates: {error}") from error
                context.load_verify_locations(cadata=kept.decode("latin-1"))
                if self.ca_data:
                    context.load_verify_locations(cadata=self.ca_data)
        else:
            context.load_default_certs()
        if self.cert_file:
            self._load_cert_chain(context)
        context.set_alpn_protocols(["http/1.1"])
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog:  # urllib3 honours it: packet captures of the sink's traffic keep working
            context.keylog_filename = os.path.expandvars(keylog)
        return context

    def _load_cert_chain(self, context: ssl.SSLContext) -> None:
        """The client certificate and key, from a private copy of those kept when a file
        is gone (the ``ssl`` module loads them from files only), deleted at once."""
        paths = [self.cert_file or "", self.key_file or ""]
        kept = [self.kept.get(path) for path in paths if path]
        if all(map(os.path.exists, filter(None, paths))) or None in kept:
            context.load_cert_chain(self.cert_file or "", self.key_file)
            return
        descriptor, name = tempfile.mkstemp(suffix=".pem")  # readable by its owner only
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(b"\n".join(cast("list[bytes]", kept)))
            context.load_cert_chain(name)
        finally:
            os.unlink(name)


class _StaleError(Exception):
    """A kept-alive connection was closed by the server before any answer came back."""


class _Connection:
    __slots__ = ("poll", "sock", "tls", "used", "wait_ms")

    def __init__(self, sock: socket.socket, tls: bool, wait_ms: int) -> None:
        self.sock = sock
        self.tls = tls
        self.used = 0  # answers carried: a used connection may have been closed since
        self.wait_ms = wait_ms
        self.poll: Any = None  # select() fails for descriptors past FD_SETSIZE: poll()
        if hasattr(select, "poll"):
            self.poll = select.poll()
            self.poll.register(sock.fileno(), select.POLLIN)

    def receive(self, wait_ms: int | None = None) -> bytes:
        """The next bytes (b"" once the server closed); ``TimeoutError`` past the read timeout,
        or ``wait_ms`` when given (shorter: what is left of a request's)."""
        try:
            # TLS in timeout mode would first try a read that finds nothing, then poll, then
            # read again: one poll first saves the empty read (unless TLS holds data already)
            if (
                (self.tls or wait_ms is not None)
                and self.poll is not None
                and not (self.tls and cast("ssl.SSLSocket", self.sock).pending())
                and not self.poll.poll(self.wait_ms if wait_ms is None else wait_ms)
            ):
                raise TimeoutError("the server did not answer within the read timeout")
            return self.sock.recv(_RECV)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise TimeoutError("the server did not answer within the read timeout") from None

    def quiet(self) -> bool:
        """True when nothing came while idle (neither the server's close nor stray bytes)."""
        try:
            if self.tls and cast("ssl.SSLSocket", self.sock).pending():
                return False
            if self.poll is not None:
                return not self.poll.poll(0)
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def holds_bytes(self) -> bool:
        """True when bytes wait (not only the server's close); one more system call."""
        try:
            if self.tls:
                return bool(cast("ssl.SSLSocket", self.sock).pending())
            return bool(self.sock.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)))
        except OSError:
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _handshake(sock: ssl.SSLSocket, timeout: float) -> None:
    """Each step of OpenSSL's work under :func:`_process.openssl`, the waits for the server
    outside it, all of them within ``timeout`` (the connect timeout, as in urllib3: a server
    that trickles its part in held each wait short of it, and the handshake indefinitely)."""
    import ssl

    deadline = time.monotonic() + timeout
    sock.settimeout(0.0)
    while True:
        with _process.openssl():
            try:
                sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                writing = False
            except ssl.SSLWantWriteError:
                writing = True
        left = max(0.0, deadline - time.monotonic())
        if hasattr(select, "poll"):
            poll = select.poll()
            poll.register(sock.fileno(), select.POLLOUT if writing else select.POLLIN)
            ready = bool(poll.poll(max(1, math.ceil(left * 1000))))
        else:
            waiting = ([], [sock]) if writing else ([sock], [])
            ready = any(select.select(*waiting, [], left)[:2])
        if not ready:
            raise TimeoutError("_ssl.c: The handshake operation timed out")


class Channel:
    """HTTP/1.1 requests over kept-alive connections to one server.

    Idle connections wait in a last-in, first-out pool (the warmest first): never more
    connections than requests once in flight together. Thread-safe: a request has its
    connection to itself, and the pool is a ``deque`` (atomic ``append`` and ``pop``).
    ``headers`` go with every request (``Host`` first; ``ValueError`` for a line break),
    and what ``credentials`` returns, read per request; ``read_timeout`` bounds the send and
    each read; ``socket_options`` replace urllib3's default, ``TCP_NODELAY``, as urllib3's do.
    """

    def __init__(
        self,
        host: str,
        port: int,
        headers: Headers,
        *,
        prefix: str = "",
        connect_timeout: float,
        read_timeout: float,
        tls: TlsSettings | None = None,
        socket_options: Iterable[SocketOption] | None = None,
        credentials: Callable[[], Headers] = lambda: (),
    ) -> None:
        self._address = (host, port)
        self._credentials = credentials
        self._prefix = prefix
        self._fixed = _header_lines(headers)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tls = tls
        self._socket_options = tuple(socket_options) if socket_options is not None else _NO_DELAY
        self._content_types: dict[str, bytes] = {}
        self._idle: collections.deque[_Connection] = collections.deque()
        self._busy: set[socket.socket] = set()  # in a request or handshake (a child; interrupt())
        self._closed = self._interrupted = False
        # counts, for tests and diagnostics: requests resent on a new connection (a closed
        # kept-alive one, bytes after an answer); connections closed for bytes no request
        # asked for (after an answer, or idle)
        self.connections_opened = 0
        self.resends = 0
        self.out_of_step = 0

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def request(self, method: str, path: str, content_type: str, body: bytes) -> Answer:
        """Send one request (``path`` quoted) and return the whole answer, any status.

        Sent once more on a new connection (:attr:`Answer.resent`) when a kept-alive one
        proves closed (sending fails, or it closes before any answer), or, for an
        :data:`IDEMPOTENT` method, when bytes follow the answer (else a
        :class:`ProtocolError`: a POST or PATCH may have been carried out). Any other
        failure closes the connection and is raised: an ``OSError`` (refused, reset,
        ``TimeoutError``, :class:`ProtocolError`, ``ssl.SSLError``), or a ``ValueError``
        for a header or path that cannot be sent.
        """
        data = self._head(method, path, content_type, self._credentials(), len(body)) + body
        connection = self._take()
        try:
            answer, keep = self._exchange(connection, data)
        except _StaleError:
            connection, answer, keep = self._once_more(data, f"{method} {path}")
        except OutOfStepError as error:
            self.out_of_step += 1
            if method not in IDEMPOTENT:
                raise ProtocolError(f"{error}: {method} {path} may have been carried out") from None
            connection, answer, keep = self._once_more(data, f"{method} {path}")
        self._busy.discard(connection.sock)
        if not keep:
            connection.close()
            return answer
        self._idle.append(connection)
        if self._closed:  # close() ran while this request was in flight
            self.close_idle()
        return answer

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        self.close_idle()

    def interrupt(self) -> None:
        """:meth:`close`, and end the requests in flight at once (their owner gave them up): a
        blocked read wakes with an EOF, not at the read timeout, and no request goes on."""
        self._interrupted = True
        self.close()
        for sock in self._busy.copy():  # one step under the GIL: writers add, discard
            with contextlib.suppress(OSError):  # not SSLSocket's: it drops the TLS of the reader
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def distrust(self) -> None:
        """An answer was meant for another request: close the idle connections."""
        self.out_of_step += 1
        self.close_idle()

    def close_idle(self) -> None:
        """Close the idle connections (one may be out of step with its requests)."""
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            connection.close()

    def forget_after_fork(self) -> None:
        """In a child process: close its copies of the parent's connections, idle or busy (two
        processes cannot share one; the parent's stay open, so nothing reaches the server)."""
        busy, self._busy = self._busy, set()
        for sock in busy:
            with contextlib.suppress(OSError):
                sock.close()
        self.close_idle()

    def _head(
        self, method: str, path: str, content_type: str, headers: Headers, length: int
    ) -> bytes:
        type_line = self._content_types.get(content_type)
        if type_line is None:
            type_line = self._content_types[content_type] = _header_lines(
                (("Content-Type", content_type),)
            )
        return b"%s %s HTTP/1.1\r\n%s%s%sContent-Length: %d\r\n\r\n" % (
            method.encode("ascii"),
            (self._prefix + path).encode("ascii"),  # the prefix checked (_official), paths quoted
            self._fixed,
            type_line,
            _header_lines(headers) if headers else b"",
            length,
        )

    def _once_more(self, data: bytes, request: str) -> tuple[_Connection, Answer, bool]:
        # on a new connection, where it can only fail for good
        self.resends += 1
        try:
            connection = self._open()
        except OSError as error:  # not "nothing was sent": the first send may have landed
            raise ProtocolError(
                f"the connection broke during {request}, which may have been carried out; "
                f"sending it again failed: {error}"
            ) from None
        try:
            answer, keep = self._exchange(connection, data)
        except OutOfStepError as error:
            self.out_of_step += 1
            raise ProtocolError(str(error)) from None
        return connection, answer._replace(resent=True), keep

    def _take(self) -> _Connection:
        try:
            connection = self._idle.pop()
        except IndexError:
            return self._open()
        if connection.quiet():
            return connection
        # closed by the server, or bytes no request asked for (a proxy's, a late answer's),
        # which would be read as this request's answer
        if connection.holds_bytes():
            self.out_of_step += 1
        connection.close()
        return self._open()

    def _open(self) -> _Connection:
        # nothing is logged here: the library's own records are few and rate-limited
        # (_diagnostics), and a server that refuses would make one per attempt
        if self._interrupted:  # a resend of a request interrupt() ended, or one after it
            raise ConnectionAbortedError("the request was given up")
        self.connections_opened += 1
        try:
            connect = _process.request_seconds(self._connect_timeout)
            sock = socket.create_connection(self._address, timeout=connect)
        except TimeoutError:  # a bare "timed out" named neither the server nor the connect
            host, port = self._address
            raise TimeoutError(
                f"no connection to {host} port {port} (connect timeout={self._connect_timeout:g})"
            ) from None
        try:
            for level, option, value in self._socket_options:
                sock.setsockopt(level, option, value)
            wait_ms = max(1, math.ceil(self._read_timeout * 1000))
            if self._tls is not None:
                if not self._tls.verify:  # as urllib3 warns: its filters and disable_warnings apply
                    from urllib3.exceptions import InsecureRequestWarning

                    warnings.warn(
                        f"Unverified HTTPS connection to host {self._address[0]!r}: the server's "
                        "certificate is not checked (verify_ssl is off)",
                        InsecureRequestWarning,
                        stacklevel=3,
                    )
                with _process.openssl():  # a fork waits while OpenSSL works (_process)
                    sock = self._tls.context().wrap_socket(
                        sock,
                        server_hostname=self._tls.server_hostname,
                        do_handshake_on_connect=False,
                    )
                try:  # a handshake the server never answers: interrupt() ends it as a request
                    self._hold(sock)
                    _handshake(sock, _process.request_seconds(self._connect_timeout))
                finally:
                    self._busy.discard(sock)
                sock.settimeout(self._read_timeout)
                return _Connection(sock, True, wait_ms)
            if _KERNEL_TIMEOUTS:
                # a blocking socket with the kernel's timeouts: no poll before each call
                sock.settimeout(None)
                timeval = _timeval(self._read_timeout)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            else:
                sock.settimeout(self._read_timeout)
            return _Connection(sock, False, wait_ms)
        except BaseException:
            sock.close()
            raise

    def _hold(self, sock: socket.socket) -> None:
        """``sock`` carries a request now: :meth:`interrupt` ends it, or ended it as it began
        (it sets the flag, then looks at what is busy: here the other way round)."""
        self._busy.add(sock)
        if self._interrupted:
            raise ConnectionAbortedError("the request was given up")

    def _exchange(self, connection: _Connection, data: bytes) -> tuple[Answer, bool]:
        """The answer, and whether the connection may carry another; any failure closes it.
        Nothing, or a reset, on a used connection is the server's close of an idle one
        (:class:`_StaleError`): the request was not read."""
        # the read timeout bounds the whole answer: each read after the first waits what is left
        # of it (an answer that trickles in, or stalls after its first bytes, held the request
        # up to twice as long, or indefinitely)
        read = _process.request_seconds(self._read_timeout)
        deadline = time.monotonic() + read

        def receive() -> bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the server did not answer within the read timeout")
            return connection.receive(math.ceil(left * 1000))

        try:
            self._hold(connection.sock)
            try:
                connection.sock.sendall(data)
            except BlockingIOError:  # SO_SNDTIMEO ran out
                raise TimeoutError("the request could not be sent within the timeout") from None
            except OSError as error:
                if connection.used and not isinstance(error, TimeoutError):
                    raise _StaleError from error
                raise
            try:
                first = connection.receive() if read == self._read_timeout else receive()
            except ConnectionError as error:  # a reset
                if connection.used:
                    raise _StaleError from error
                raise
            if not first:
                if connection.used:
                    raise _StaleError
                raise ProtocolError("the server closed the connection without answering")
            answer, keep = read_answer(first, receive)
        except BaseException as error:
            self._busy.discard(connection.sock)
            connection.close()
            ssl = sys.modules.get("ssl")
            if connection.used and ssl is not None and isinstance(error, ssl.SSLError):
                # its handshake and certificates proved good with earlier answers: a record
                # that cannot be read now is a connection broken, not TLS refused (not retried)
                raise ProtocolError(f"the TLS connection broke: {error}") from error
            raise
        connection.used += 1
        return answer, keep


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for ``seconds``; never all zero, which would mean "no timeout"."""
    whole, micros = divmod(max(round(seconds * 1e6), 1), 1_000_000)
    return struct.pack("@ll", whole, micros)


def _header_lines(headers: Headers) -> bytes:
    """``Name: value`` lines; a line break in a name or value could inject a header."""
    lines = []
    for name, value in headers:
        text = f"{name}: {value}\r\n"
        if text.count("\r") != 1 or text.count("\n") != 1 or ":" in name or not name.strip():
            raise ValueError(f"header {name!r} cannot be sent: a line break or a bad name")
        lines.append(text)
    return "".join(lines).encode("latin-1")
