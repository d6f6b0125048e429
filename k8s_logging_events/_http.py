"""A keep-alive HTTP/1.1 channel to the API server: the bottom of the sink's write path.

At the very end of the pipeline, under :class:`~k8s_logging_events.sink.KubernetesEventSink`:
the sink encodes an Event and reads the stored one back; a :class:`Channel` carries the
bytes between the two. The official client still decides everything about the connection
-- the URL, TLS (CA, verification, client certificate, server name), socket options,
proxies, credentials -- and ``_official.channel_for`` reads those decisions from its
``ApiClient``; what the channel replaces is only the request machinery (urllib3's pool,
``http.client``'s and ``email``'s header handling).

Why a channel of its own: under one interpreter lock, each system call that releases the
lock may cost a writer up to a switch interval (5 ms) to get it back while other threads
are busy, so the number of such calls per request counts as much as the CPU. A request
here makes as few as it can: one ``send`` of the request line, the headers and the body
together, and usually one ``recv`` of the whole answer. On Linux a plain connection's
timeouts are the kernel's (``SO_RCVTIMEO``, ``SO_SNDTIMEO``) rather than a ``poll`` before
each call.

An answer belongs to the request it follows, and only because nothing else came on the
connection: bytes that a server or a proxy sends after an answer would otherwise be read as
the next request's answer, and every answer after it would be one request late. So a
connection carries another request only when its answer ended exactly where the bytes did,
and when nothing came while it was idle (one ``poll`` of no time before it is reused: the
one check a request pays). Anything else closes it; the request is sent again only when
that is safe (see :meth:`Channel.request`).
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
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from k8s_logging_events._http_parser import (
    Answer,
    OutOfStepError,
    ProtocolError,
    read_answer,
)

if TYPE_CHECKING:
    import ssl

__all__ = [
    "IDEMPOTENT",
    "Channel",
    "SocketOption",
    "TlsSettings",
    "is_tls_error",
]

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods whose request may be sent again after its answer could not be trusted: a second
one changes nothing the first did not (RFC 9110, 9.2.2). Not POST, nor PATCH."""

SocketOption = tuple[int, int, Any]
"""``(level, option, value)``, as ``socket.setsockopt`` takes them."""

_RECV = 65536
_KERNEL_TIMEOUTS = sys.platform.startswith("linux")  # where the timeval layout is known
_NO_DELAY: tuple[SocketOption, ...] = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """How to put TLS on a connection, as the official client's urllib3 pool would.

    Each new connection gets a context of its own, built from these settings (urllib3
    builds one per connection too): a CA bundle or client certificate rewritten on disk
    is read again by the next connection.
    """

    server_hostname: str
    """The name sent in SNI and (when checked) matched against the certificate."""
    verify: bool = True
    """Verify the server's certificate chain (``verify_ssl``)."""
    check_hostname: bool = True
    """Match the certificate against :attr:`server_hostname` (off with ``assert_hostname``
    False)."""
    ca_file: str | None = None
    """A PEM bundle of the CAs to trust (``ssl_ca_cert``)."""
    ca_data: str | bytes | None = None
    """CA certificates as PEM text or DER bytes (``ca_cert_data``)."""
    cert_file: str | None = None
    """The client certificate (``cert_file``)."""
    key_file: str | None = None
    """The client certificate's key (``key_file``)."""

    def context(self) -> ssl.SSLContext:
        """A client context with urllib3's defaults and these settings.

        Raises:
            ssl.SSLError: the CA cannot be loaded (as urllib3 reports it).
        """
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
        if sys.version_info >= (3, 13):  # what urllib3 adds there, as create_default_context
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
        context.post_handshake_auth = True  # a server may ask for the certificate later (1.3)
        context.hostname_checks_common_name = False
        if self.verify:
            context.check_hostname = self.check_hostname
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.ca_file or self.ca_data:
            try:
                context.load_verify_locations(cafile=self.ca_file, cadata=self.ca_data)
            except ssl.SSLError:
                raise
            except OSError as error:  # a missing file: urllib3 calls that an SSLError
                raise ssl.SSLError(f"cannot load the CA certificates: {error}") from error
        else:
            context.load_default_certs()
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(["http/1.1"])
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog:  # urllib3 honours it: packet captures of the sink's traffic keep working
            context.keylog_filename = os.path.expandvars(keylog)
        return context


def is_tls_error(error: BaseException) -> bool:
    """True for an error of the ``ssl`` module (a failed handshake, a bad certificate ...)."""
    ssl = sys.modules.get("ssl")  # not imported: no TLS connection was ever made
    return ssl is not None and isinstance(error, ssl.SSLError)


class _StaleError(Exception):
    """A kept-alive connection was closed by the server before any answer came back."""


class _Connection:
    """One socket to the server, with what the channel knows about it."""

    __slots__ = ("poll", "sock", "tls", "used", "wait_ms")

    def __init__(self, sock: socket.socket, tls: bool, wait_ms: int) -> None:
        self.sock = sock
        self.tls = tls
        self.used = 0
        """How many answers it has carried: a used connection may have been closed since."""
        self.wait_ms = wait_ms
        self.poll: Any = None  # select() fails for descriptors past FD_SETSIZE: poll()
        if hasattr(select, "poll"):
            self.poll = select.poll()
            self.poll.register(sock.fileno(), select.POLLIN)

    def receive(self) -> bytes:
        """What the server sent next (b"" once it closed), waiting up to the read timeout.

        Raises:
            TimeoutError: nothing came within the read timeout.
        """
        sock = self.sock
        try:
            # TLS in timeout mode would first try a read that finds nothing, then poll, then
            # read again: one poll first saves the empty read (unless TLS holds data already)
            poll = self.poll
            if (
                self.tls
                and poll is not None
                and not cast("ssl.SSLSocket", sock).pending()
                and not poll.poll(self.wait_ms)
            ):
                raise TimeoutError("the server did not answer within the read timeout")
            return sock.recv(_RECV)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise TimeoutError("the server did not answer within the read timeout") from None

    def quiet(self) -> bool:
        """True when nothing came while the connection was idle: one ``poll`` of no time.

        Anything there (the server's close, or bytes no request asked for, which would be
        taken for the next answer) makes it unusable.
        """
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
        """True when bytes wait to be read (not only the server's close); for an unusable
        connection only: one more system call."""
        try:
            if self.tls:
                return bool(cast("ssl.SSLSocket", self.sock).pending())
            return bool(self.sock.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)))
        except OSError:
            return False

    def close(self) -> None:
        """Close the socket (never raises)."""
        with contextlib.suppress(OSError):
            self.sock.close()


class Channel:
    """HTTP/1.1 requests over kept-alive connections to one server.

    Idle connections wait in a last-in, first-out pool: a request takes the most recently
    used one (warm, least likely to have been closed by the server) or opens a new one,
    and puts it back once its answer was read to the end. So there are never more
    connections than requests that were in flight at once. Thread-safe: each request has
    its connection to itself, and the pool is a ``deque`` (atomic ``append`` and ``pop``).

    Args:
        host: the server's address (a name, or an IP address without brackets).
        port: the server's port.
        headers: headers sent with every request, ``Host`` first (checked for line breaks).
        prefix: the path of the server's URL, put before every request's path.
        connect_timeout: seconds to connect, and to finish a TLS handshake.
        read_timeout: seconds to wait for each part of an answer (and to send a request).
        tls: put TLS on every connection with these settings (None: plain HTTP).
        socket_options: set on each new socket (None: ``TCP_NODELAY``, urllib3's default;
            given options replace it, as in urllib3).

    Raises:
        ValueError: a header holds a line break.
    """

    def __init__(
        self,
        host: str,
        port: int,
        headers: Iterable[tuple[str, str]],
        *,
        prefix: str = "",
        connect_timeout: float,
        read_timeout: float,
        tls: TlsSettings | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> None:
        self._address = (host, port)
        self._prefix = prefix
        self._fixed = _header_lines(headers)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tls = tls
        self._socket_options = tuple(socket_options) if socket_options is not None else _NO_DELAY
        self._content_types: dict[str, bytes] = {}
        self._idle: collections.deque[_Connection] = collections.deque()
        self._busy: set[_Connection] = set()  # carrying a request now (for a forked child)
        self._closed = False
        self.connections_opened = 0
        """How many connections were opened so far (for tests and diagnostics)."""
        self.resends = 0
        """How many requests were sent again on a new connection: after meeting a kept-alive
        connection closed, or after bytes came after their answer (idempotent ones only)."""
        self.out_of_step = 0
        """How many connections were closed because bytes came that no request asked for:
        after an answer, or while the connection was idle."""

    @property
    def idle_connections(self) -> int:
        """How many kept-alive connections wait for a request now."""
        return len(self._idle)

    def request(
        self,
        method: str,
        path: str,
        content_type: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> Answer:
        """Send one request and return the whole answer (any status).

        A kept-alive connection may have been closed by the server while it was idle. When
        sending on one fails, or it closes before any byte of an answer, the request is sent
        once more on a new connection (:attr:`Answer.resent` says so). When bytes follow
        the answer, it may have been meant for another request: the connection is closed,
        and the request sent once more on a new one if its method is :data:`IDEMPOTENT`
        (else it is a :class:`ProtocolError`: a POST or a PATCH may have been carried out).
        Any other failure closes the connection -- one in an unknown state never goes back
        to the pool -- and is raised.

        Args:
            method: the HTTP method.
            path: the path (already quoted), after the channel's prefix.
            content_type: the ``Content-Type`` of ``body``.
            headers: headers for this request only (the credentials).
            body: the body.

        Raises:
            OSError: the request could not be sent or its answer not read: refused,
                reset, timed out (``TimeoutError``), cut short or not HTTP
                (:class:`ProtocolError`), TLS (``ssl.SSLError``, see :func:`is_tls_error`).
            ValueError: a header or the path cannot be sent (a line break, not Latin-1).
        """
        data = self._head(method, path, content_type, headers, len(body)) + body
        connection = self._take()
        try:
            answer, keep = self._exchange(connection, data)
        except _StaleError:
            connection, answer, keep = self._once_more(data)
        except OutOfStepError as error:
            self.out_of_step += 1
            if method not in IDEMPOTENT:
                raise ProtocolError(f"{error}: {method} {path} may have been carried out") from None
            connection, answer, keep = self._once_more(data)
        if keep:
            self._give_back(connection)
        else:
            self._busy.discard(connection)
            connection.close()
        return answer

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        self._close_idle()

    def close_idle(self) -> None:
        """Close the idle connections (one may be out of step with its requests)."""
        self._close_idle()

    def forget_after_fork(self) -> None:
        """In a child process: let go of the connections inherited from the parent.

        They are the parent's (two processes cannot share a TLS session, nor take turns on
        one connection), so the child opens its own. Only the child's copies of the
        descriptors are closed, idle ones and those a thread of the parent was using: the
        parent still holds them, so nothing reaches the server.
        """
        busy, self._busy = self._busy, set()
        for connection in busy:
            connection.close()
        self._close_idle()

    # -- inside ------------------------------------------------------------------------

    def _head(
        self,
        method: str,
        path: str,
        content_type: str,
        headers: Sequence[tuple[str, str]],
        length: int,
    ) -> bytes:
        type_line = self._content_types.get(content_type)
        if type_line is None:
            type_line = self._content_types[content_type] = _header_lines(
                (("Content-Type", content_type),)
            )
        target = self._prefix + path
        if len(target.split()) != 1 or not target.isascii():  # quoted paths never are
            raise ValueError(f"{target!r} cannot be a request target")
        return b"%s %s HTTP/1.1\r\n%s%s%sContent-Length: %d\r\n\r\n" % (
            method.encode("ascii"),
            target.encode("ascii"),
            self._fixed,
            type_line,
            _header_lines(headers) if headers else b"",
            length,
        )

    def _once_more(self, data: bytes) -> tuple[_Connection, Answer, bool]:
        """Send ``data`` again on a new connection, where it can only fail for good."""
        self.resends += 1
        connection = self._open()
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

    def _give_back(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        self._idle.append(connection)
        if self._closed:  # close() ran while this request was in flight
            self._close_idle()

    def _close_idle(self) -> None:
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            connection.close()

    def _open(self) -> _Connection:
        # nothing is logged here: the library's own records are few and rate-limited
        # (_diagnostics), and a server that refuses would make one per attempt
        self.connections_opened += 1
        sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        try:
            for level, option, value in self._socket_options:
                sock.setsockopt(level, option, value)
            wait_ms = max(1, math.ceil(self._read_timeout * 1000))
            if self._tls is not None:
                if not self._tls.verify:
                    _warn_unverified(self._address[0])
                # the handshake runs under the connect timeout, as in urllib3
                sock = self._tls.context().wrap_socket(
                    sock, server_hostname=self._tls.server_hostname
                )
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

    def _exchange(self, connection: _Connection, data: bytes) -> tuple[Answer, bool]:
        """Send ``data`` and read the answer; closes the connection on any failure.

        Returns the answer and whether the connection may carry another request.
        """
        self._busy.add(connection)
        try:
            try:
                connection.sock.sendall(data)
            except BlockingIOError:  # SO_SNDTIMEO ran out
                raise TimeoutError("the request could not be sent within the timeout") from None
            except OSError as error:
                if connection.used and not isinstance(error, TimeoutError):
                    raise _StaleError from error
                raise
            answer, keep = _read_answer(connection)
        except BaseException:
            self._busy.discard(connection)
            connection.close()
            raise
        connection.used += 1
        return answer, keep


def _read_answer(connection: _Connection) -> tuple[Answer, bool]:
    """Read one whole answer off ``connection``; also say whether it can be kept alive.

    Nothing at all, or a reset, on a connection that carried answers before is the server's
    close of an idle connection (:class:`_StaleError`): the request was not read.
    """
    try:
        data = connection.receive()
    except ConnectionError as error:  # reset: on a kept-alive connection, the server's close
        if connection.used:
            raise _StaleError from error
        raise
    if not data:
        if connection.used:
            raise _StaleError
        raise ProtocolError("the server closed the connection without answering")
    return read_answer(data, connection.receive)


def _warn_unverified(host: str) -> None:
    """Warn as urllib3 does (its class: its filters, ``urllib3.disable_warnings()``, apply)."""
    from urllib3.exceptions import InsecureRequestWarning

    warnings.warn(
        f"Unverified HTTPS connection to host {host!r}: the server's certificate is not "
        "checked (verify_ssl is off)",
        InsecureRequestWarning,
        stacklevel=4,
    )


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for ``seconds``; never all zero, which would mean "no timeout"."""
    whole = math.floor(seconds)
    micros = round((seconds - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, 0
    if whole <= 0 and micros <= 0:
        whole, micros = 0, 1
    return struct.pack("@ll", whole, micros)


def _header_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    """``Name: value`` lines; a line break in a name or value could inject a header."""
    lines = []
    for name, value in headers:
        text = f"{name}: {value}\r\n"
        if text.count("\r") != 1 or text.count("\n") != 1 or ":" in name or not name.strip():
            raise ValueError(f"header {name!r} cannot be sent: a line break or a bad name")
        lines.append(text)
    return "".join(lines).encode("latin-1")
