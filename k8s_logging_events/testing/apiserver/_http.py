"""The HTTP/1.1 transport of the local API server: sockets, connection threads, TLS, refusal.

Part of the local API server on the test side of the pipeline, below everything that knows
about Kubernetes: :class:`Transport` listens on one port of 127.0.0.1, serves each
keep-alive connection on a named, tracked daemon thread (after a TLS handshake when the
server serves HTTPS), reads each request into an :class:`~._requests.HttpRequest` and hands
it, with the :class:`Exchange` that answers it, to the server's ``serve`` callable. It can
stop listening and listen again on the same port (refused connections), and
:meth:`Transport.stop` closes every connection and joins every thread it started.

Only the standard library is used (``http.server.ThreadingHTTPServer`` with an accept loop
of its own); the request line and headers are parsed here rather than by ``parse_request``,
whose e-mail header parser costs more than the whole API call (``_exchange``).
"""

from __future__ import annotations

import contextlib
import http.server
import selectors
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from k8s_logging_events.testing.apiserver._exchange import (
    ANSWERING,
    WAITING,
    Exchange,
    Handler,
    read_body,
)
from k8s_logging_events.testing.apiserver._requests import HttpRequest

JOIN_TIMEOUT = 5.0
"""How long :meth:`Transport.stop` waits for its threads, and a change of listening state."""
HANDSHAKE_TIMEOUT = 10.0

Serve = Callable[[HttpRequest, "Exchange"], None]
"""Answers one request (on its connection's thread) through the exchange."""


class _Connection:
    __slots__ = ("closing", "sock", "state", "thread")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = WAITING
        self.closing = False
        """Close the connection as soon as its answer in progress is written (refusal)."""
        self.thread: threading.Thread | None = None


class _HttpServer(http.server.ThreadingHTTPServer):
    """The standard threading HTTP server, with named, tracked connection threads."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], transport: Transport) -> None:
        self.transport = transport
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s DNS lookup of the host (``getfqdn``): slow, useless."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a named, tracked daemon thread."""
        self.transport._spawn(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections reset by clients are routine here: say nothing."""


class Transport:
    """HTTP/1.1 (or HTTPS) on one port: the accept loop, connection threads, refusal.

    Args:
        host: the address to listen on.
        port: the port; 0 picks a free one (read :attr:`port` after :meth:`start`).
        serve: answers each request, on its connection's thread.
        ssl_context: serve TLS with this context (None: plain HTTP).
        name: the prefix of thread names (``<name>-<port>``, ``<name>-<port>-conn-<n>``).
        stopping: the event :meth:`stop` sets (a new one by default).
        chunked_answers: send every answer with a body chunked, as a Go server does with an
            answer it streams, rather than with a ``Content-Length``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        serve: Serve,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "k8s-apiserver",
        stopping: threading.Event | None = None,
        chunked_answers: bool = False,
    ) -> None:
        self._host = host
        self.chunked_answers = chunked_answers
        """Answer with chunked bodies (read by each connection's :class:`Exchange`)."""
        self._requested_port = port
        self._serve = serve
        self._ssl_context = ssl_context
        self._name = name
        self.port = 0
        """The port served on (0 before :meth:`start`)."""
        self.stopping = stopping or threading.Event()
        """Set when :meth:`stop` begins: every wait of a connection thread ends at once."""
        self._httpd: _HttpServer | None = None
        self._placeholder: socket.socket | None = None
        self._state = threading.Condition()
        self._stopped = False
        self._want_listening = True
        self._listening = False
        self._reopen_at: float | None = None
        self._listen_error: OSError | None = None
        self._closes = 0
        self._acceptor: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._connections: dict[int, _Connection] = {}
        self._finishing: set[_Connection] = set()
        self._threads: set[threading.Thread] = set()
        self._connection_count = 0

    @property
    def connections_accepted(self) -> int:
        """How many connections were accepted since the start."""
        with self._lock:
            return self._connection_count

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> int:
        """Bind, start the accept loop and return the port.

        Raises:
            OSError: the address could not be bound.
        """
        self._wake_r, self._wake_w = socket.socketpair()
        httpd = _HttpServer((self._host, self._requested_port), self)
        httpd.socket.setblocking(False)
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._listening = True
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"{self._name}-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self.port

    def stop(self, notify: Callable[[], None] = lambda: None) -> None:
        """Stop: set :attr:`stopping`, call ``notify`` (to wake the server's own waits), close
        every connection and join every thread (each join bounded by ``JOIN_TIMEOUT``)."""
        with self._state:
            self._stopped = True
            self._state.notify_all()
        self.stopping.set()
        notify()
        self._wake()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_TIMEOUT)
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + JOIN_TIMEOUT
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._httpd is not None:
            self._httpd.server_close()
        for sock in (self._wake_r, self._wake_w, self._placeholder):
            if sock is not None:
                sock.close()

    # -- refusal ----------------------------------------------------------------------

    def set_listening(self, listening: bool, duration: float | None = None) -> None:
        """Stop listening (re-open after ``duration`` seconds, if given), or listen again.

        Returns once the port is closed -- and every kept-alive connection with it, so that
        a pooled client must reconnect -- or accepts connections again.

        Raises:
            OSError: the port could not be bound again.
            TimeoutError: the accept loop did not get there within ``JOIN_TIMEOUT``.
        """
        with self._state:
            closes = self._closes
            self._want_listening = listening
            self._listen_error = None
            self._reopen_at = None
            if not listening and duration is not None:
                self._reopen_at = time.monotonic() + max(0.0, duration)
        self._wake()

        def done() -> bool:
            if self._stopped:
                return True
            if listening:
                return self._listening or self._listen_error is not None
            return self._closes > closes or not self._listening

        deadline = time.monotonic() + JOIN_TIMEOUT
        with self._state:
            if not self._state.wait_for(done, timeout=JOIN_TIMEOUT):
                state = "listen" if listening else "stop listening"
                raise TimeoutError(f"the server did not {state} within {JOIN_TIMEOUT} s")
            if self._listen_error is not None:
                raise self._listen_error
        if not listening:
            # answers being written as the port closed: their connections close right after
            with self._settled:
                self._settled.wait_for(
                    lambda: not self._finishing, timeout=max(0.0, deadline - time.monotonic())
                )

    def wait_for_listening(self, timeout: float | None = None) -> bool:
        """Block until the port accepts connections; False if ``timeout`` ran out first."""
        with self._state:
            return (
                self._state.wait_for(
                    lambda: self._listening or self._stopped or self._listen_error is not None,
                    timeout=timeout,
                )
                and self._listening
            )

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    def _accept_loop(self) -> None:
        httpd = self._httpd
        assert httpd is not None
        assert self._wake_r is not None
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        selector.register(httpd.socket, selectors.EVENT_READ, "listen")
        try:
            while True:
                with self._state:
                    stopping = self._stopped
                    want = self._want_listening and not stopping
                if not want and self._listening:
                    self._close_listener(httpd, selector)
                if stopping:
                    return
                with self._state:
                    if self._reopen_at is not None and time.monotonic() >= self._reopen_at:
                        self._reopen_at = None
                        self._want_listening = want = True
                    reopen_at = self._reopen_at
                if want and not self._listening:
                    self._open_listener(httpd, selector)
                timeout = None if reopen_at is None else max(0.0, reopen_at - time.monotonic())
                for key, _ in selector.select(timeout):
                    if key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    elif self._listening:
                        self._accept_all(httpd)
        finally:
            selector.close()

    def _close_listener(self, httpd: _HttpServer, selector: selectors.BaseSelector) -> None:
        selector.unregister(httpd.socket)
        httpd.socket.close()
        # Keep the port bound (not listening) while refusing: a connection to it is refused,
        # but no other socket -- another server's, or a client's own source port, which would
        # connect to itself -- can take the port from the ephemeral range meanwhile.
        placeholder = socket.socket(httpd.address_family, httpd.socket_type)
        try:
            placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            placeholder.bind((self._host, self.port))
        except OSError:
            placeholder.close()
        else:
            self._placeholder = placeholder
        self._close_kept_alive_connections()
        with self._state:
            self._listening = False
            self._closes += 1
            self._state.notify_all()

    def _open_listener(self, httpd: _HttpServer, selector: selectors.BaseSelector) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        sock = socket.socket(httpd.address_family, httpd.socket_type)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self.port))
            sock.listen(httpd.request_queue_size)
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            with self._state:
                self._listen_error = error
                self._want_listening = False
                self._state.notify_all()
            return
        httpd.socket = sock
        selector.register(sock, selectors.EVENT_READ, "listen")
        with self._state:
            self._listening = True
            self._state.notify_all()

    def _accept_all(self, httpd: _HttpServer) -> None:
        while True:
            try:
                request, address = httpd.socket.accept()
            except OSError:  # BlockingIOError: nothing more to accept
                return
            request.setblocking(True)
            httpd.process_request(request, address)

    # -- connections ------------------------------------------------------------------

    def _spawn(self, sock: socket.socket, address: Any) -> None:
        httpd = self._httpd
        assert httpd is not None
        connection = _Connection(sock)
        with self._lock:
            self._connection_count += 1
            number = self._connection_count
        thread = threading.Thread(
            target=self._run_connection,
            args=(httpd, connection, address),
            name=f"{self._name}-{self.port}-conn-{number}",
            daemon=True,
        )
        connection.thread = thread
        with self._lock:
            self._connections[id(sock)] = connection
            self._threads.add(thread)
        thread.start()

    def _run_connection(self, httpd: _HttpServer, connection: _Connection, address: Any) -> None:
        try:
            if self._ssl_context is not None and not self.stopping.is_set():
                self._handshake(connection)
            if not self.stopping.is_set():
                httpd.finish_request(connection.sock, address)
        except Exception:  # noqa: S110 - a client that vanished mid-request is routine
            pass
        finally:
            with self._settled:
                self._connections.pop(id(connection.sock), None)
                self._finishing.discard(connection)
                self._settled.notify_all()
            httpd.shutdown_request(connection.sock)
            # the very last step, so that stop() can join every thread still running
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _handshake(self, connection: _Connection) -> None:
        """Put TLS on the connection; stop() can interrupt the handshake (a shutdown)."""
        assert self._ssl_context is not None
        plain = connection.sock
        wrapped = self._ssl_context.wrap_socket(
            plain, server_side=True, do_handshake_on_connect=False
        )
        with self._lock:
            self._connections.pop(id(plain), None)
            connection.sock = wrapped
            self._connections[id(wrapped)] = connection
        if self.stopping.is_set():
            # stop() may have shut the plain socket down after the wrap took it over: a
            # shutdown that did nothing, so a handshake now would wait out its timeout
            return
        wrapped.settimeout(HANDSHAKE_TIMEOUT)
        wrapped.do_handshake()
        wrapped.settimeout(None)

    def set_state(self, sock: socket.socket, state: str) -> None:
        """Record the state of a connection (for its handler)."""
        with self._lock:
            connection = self._connections.get(id(sock))
            if connection is not None:
                connection.state = state

    def answered(self, sock: socket.socket) -> bool:
        """An answer was written: the connection waits for the next request, or closes now
        (returns True) when a refusal came while it was answering."""
        with self._settled:
            connection = self._connections.get(id(sock))
            if connection is None:
                return False
            connection.state = WAITING
            if not connection.closing:
                return False
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            self._finishing.discard(connection)
            self._settled.notify_all()
            return True

    def _close_kept_alive_connections(self) -> None:
        """On refusal: close waiting connections now, the others once their answer is written."""
        with self._lock:
            waiting = []
            for connection in self._connections.values():
                connection.closing = True
                if connection.state == WAITING:
                    waiting.append(connection)
                elif connection.state == ANSWERING:
                    self._finishing.add(connection)
        for connection in waiting:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    # -- requests ---------------------------------------------------------------------

    def dispatch(self, handler: Handler) -> None:
        """Read the body of one parsed request and hand it to ``serve`` (on its thread)."""
        path, _, query_string = handler.path.partition("?")
        query = (
            {
                key: values[0]
                for key, values in parse_qs(query_string, keep_blank_values=True).items()
            }
            if query_string
            else {}
        )
        headers = handler.request_headers
        body = read_body(handler.rfile, headers)
        self._serve(
            HttpRequest(handler.command, path, query, headers, body), Exchange(handler, self)
        )
