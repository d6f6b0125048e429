"""A local Kubernetes Events API server: what the sink talks to in tests and in the demo.

This is the test side of the pipeline. :class:`LocalApiServer` serves core/v1 and
events.k8s.io/v1 Events and core/v1 Namespaces over real HTTP on 127.0.0.1, so that the
official ``kubernetes`` client -- and through it the library's sink -- talks to it exactly as
to a cluster: same paths, same status codes, same ``Status`` bodies, same validation, same
order of checks (see ``docs/local-apiserver.md`` for what is and is not faithful). On top of
that it offers what a real cluster cannot: fault injection for retry tests, a request log
for assertions, and direct access to the stored events.

Only the standard library is used (``http.server.ThreadingHTTPServer`` with an accept loop
of its own); the ``kubernetes`` package is imported only by :meth:`LocalApiServer.api_client`.
All threads are daemon threads named ``k8s-apiserver-...``; :meth:`LocalApiServer.stop`
stops and joins every one of them.
"""

from __future__ import annotations

import collections
import contextlib
import http
import http.server
import json
import os
import select
import selectors
import socket
import socketserver
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs

from k8s_logging_events.clock import Clock, SystemClock
from k8s_logging_events.testing._apiserver_auth import (
    Authenticator,
    ClientCertificate,
    TlsMaterial,
    kubeconfig_text,
    unauthorized,
)
from k8s_logging_events.testing._apiserver_errors import ApiError, fault_status
from k8s_logging_events.testing._apiserver_faults import (
    ACTIONS,
    Fault,
    FaultAction,
    RecordedRequest,
)
from k8s_logging_events.testing._apiserver_http import (
    MAX_HEADERS,
    MAX_LINE,
    Headers,
    http_date,
    read_body,
    write_watch,
)
from k8s_logging_events.testing._apiserver_rest import (
    CORE_API,
    EVENTS_API,
    HttpRequest,
    HttpResponse,
    RestApi,
    error_response,
)
from k8s_logging_events.testing._apiserver_store import DEFAULT_WATCH_HISTORY, Entry, Store
from k8s_logging_events.testing._apiserver_validation import CORE, EVENTS

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["Fault", "FaultAction", "LocalApiServer", "RecordedRequest"]

_JOIN_TIMEOUT = 5.0
_HANDSHAKE_TIMEOUT = 10.0


class _Connection:
    __slots__ = ("idle", "sock", "thread")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle = False
        self.thread: threading.Thread | None = None


class _HttpServer(http.server.ThreadingHTTPServer):
    """The standard threading HTTP server, with named, tracked connection threads."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: LocalApiServer) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s DNS lookup of the host (``getfqdn``): slow, useless."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a named, tracked daemon thread."""
        self.owner._spawn(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections reset by clients are routine here: say nothing."""


class _Handler(http.server.BaseHTTPRequestHandler):
    """One keep-alive HTTP/1.1 connection: reads requests and hands them to the server.

    The request line and headers are parsed here rather than by ``parse_request`` (whose
    e-mail header parser costs more than the whole API call); anything unusual falls back
    to the standard parser.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "k8s-logging-events-apiserver"
    sys_version = ""
    server: _HttpServer
    request_headers: Headers

    def handle_one_request(self) -> None:
        """Read one request (marking the connection idle while waiting) and serve it."""
        owner = self.server.owner
        state = owner._connection_state(self.connection)
        if state is not None:
            state.idle = True
        try:
            line = self.rfile.readline(MAX_LINE + 1)
        finally:
            if state is not None:
                state.idle = False
        self.raw_requestline = line
        if not line or owner._stopping.is_set():
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
        owner._serve(self)

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
        """Stay quiet: the request log is :attr:`LocalApiServer.requests`."""


class LocalApiServer:
    """A Kubernetes Events API server on 127.0.0.1 for tests, demos and users' own tests.

    It serves ``/api/v1`` (Events and Namespaces) and ``/apis/events.k8s.io/v1`` (Events)
    over one store, plus the discovery documents kubectl needs. Use it as a context
    manager, or call :meth:`start` and :meth:`stop`::

        with LocalApiServer() as server:
            api = kubernetes.client.CoreV1Api(server.api_client())
            api.create_namespaced_event("default", body)
            assert server.events("default")[0]["reason"] == "Started"

    ``default``, ``kube-system`` and ``kube-public`` always exist. Like a real cluster, a
    write into any other namespace gets 404 ``namespaces "x" not found`` unless the
    namespace was created first (``namespaces=``, :meth:`create_namespace` or a POST) --
    or ``auto_create_namespaces=True`` makes the first write create it.

    Args:
        host: the address to listen on.
        port: the port; 0 picks a free one (read it back from :attr:`url`).
        namespaces: namespaces to create at start, beside the three built-in ones.
        auto_create_namespaces: create a missing namespace on the first write into it.
        clock: the clock for ``creationTimestamp``, expiry and table ages (system clock
            by default); a :class:`~k8s_logging_events.testing.FakeClock` works.
        event_ttl: seconds after its last write an event disappears, as with the real
            server's ``--event-ttl`` (default 1 h there); None keeps events forever.
        max_events: keep at most this many events, forgetting the least recently written.
        max_requests: the request log keeps this many of the latest requests.
        name_generator: makes the name for a ``generateName`` prefix (default: the prefix
            and five random characters, as the real server does).
        seed: seeds the default name generator.
        watch_history: how many changes to events the server keeps for watches to resume
            from; a watch from an older resourceVersion gets ``410 Expired``.
        tls: serve HTTPS with a certificate signed by a throwaway CA (:attr:`ca_pem`,
            :attr:`ca_file`); needs the ``trustme`` package.
        token: require ``Authorization: Bearer <token>`` on every request; others get
            ``401 Unauthorized``, as from a real server with anonymous authentication off.
        client_certificates: (with ``tls``) accept client certificates signed by the
            server's CA as credentials too (:meth:`client_certificate` issues them); without
            a ``token``, every request must then bring one.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        namespaces: Iterable[str] = (),
        auto_create_namespaces: bool = False,
        clock: Clock | None = None,
        event_ttl: float | None = None,
        max_events: int | None = None,
        max_requests: int = 10_000,
        name_generator: Callable[[str], str] | None = None,
        seed: int | None = None,
        watch_history: int = DEFAULT_WATCH_HISTORY,
        tls: bool = False,
        token: str | None = None,
        client_certificates: bool = False,
    ) -> None:
        if client_certificates and not tls:
            raise ValueError("client_certificates=True needs tls=True")
        if token is not None and not token.strip():
            raise ValueError("token must not be empty")
        self._host = host
        self._auth = Authenticator(token, client_certificates)
        self._tls = TlsMaterial() if tls else None
        self._ssl_context = (
            self._tls.server_context(client_certificates=client_certificates)
            if self._tls is not None
            else None
        )
        self._default_client_certificate: ClientCertificate | None = None
        self._requested_port = port
        self._clock: Clock = clock or SystemClock()
        self._store = Store(
            clock=self._clock,
            namespaces=namespaces,
            auto_create_namespaces=auto_create_namespaces,
            event_ttl=event_ttl,
            max_events=max_events,
            name_generator=name_generator,
            seed=seed,
            watch_history=watch_history,
        )
        self._rest = RestApi(self._store, self._clock, lambda: self._address())
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=max_requests)
        self._lock = threading.Lock()
        self._request_logged = threading.Condition(self._lock)
        self._faults: list[Fault] = []
        self._httpd: _HttpServer | None = None
        self._port = 0
        self._state = threading.Condition()
        self._started = False
        self._stop_requested = False
        self._stopped = False
        self._want_listening = True
        self._listening = False
        self._reopen_at: float | None = None
        self._listen_error: OSError | None = None
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._closes = 0
        self._connections: dict[int, _Connection] = {}
        self._threads: set[threading.Thread] = set()
        self._connection_count = 0

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        """Bind, start serving, and return ``self``.

        Raises:
            RuntimeError: the server was started before.
            OSError: the address could not be bound.
        """
        with self._state:
            if self._started:
                raise RuntimeError("LocalApiServer.start() called twice")
            self._started = True
        self._wake_r, self._wake_w = socket.socketpair()
        httpd = _HttpServer((self._host, self._requested_port), self)
        httpd.socket.setblocking(False)
        self._httpd = httpd
        self._port = int(httpd.server_address[1])
        self._listening = True
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"k8s-apiserver-{self._port}", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join every thread (idempotent)."""
        with self._state:
            if not self._started or self._stop_requested:
                return
            self._stop_requested = True
        self._stopping.set()
        with self._request_logged:
            self._request_logged.notify_all()
        with self._store.changed:
            self._store.changed.notify_all()  # open watches end now
        self._wake()
        if self._acceptor is not None:
            self._acceptor.join(_JOIN_TIMEOUT)
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _JOIN_TIMEOUT
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._httpd is not None:
            self._httpd.server_close()
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._tls is not None:
            self._tls.cleanup()
        with self._state:
            self._stopped = True
            self._state.notify_all()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started and not self._stop_requested

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: what to give a client as its host.

        Raises:
            RuntimeError: the server has not been started.
        """
        if not self._started:
            raise RuntimeError("LocalApiServer is not started: no URL yet")
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._address()}"

    def _address(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    @property
    def port(self) -> int:
        """The port served on (0 before :meth:`start`)."""
        return self._port

    def api_client(
        self, *, credentials: bool = True, client_certificate: ClientCertificate | None = None
    ) -> ApiClient:
        """Return a fresh ``kubernetes.client.ApiClient`` for this server.

        Its private ``Configuration(host=url)`` has ``retries = False`` so that urllib3 never
        re-sends a request behind the test's back; the client's global default
        configuration is not touched. With ``tls=True`` it trusts the server's CA
        (``ssl_ca_cert``); it carries the server's ``token`` and, with
        ``client_certificates=True``, a client certificate. Close the client when done
        (``with`` or ``close()``).

        Args:
            credentials: False gives a client without token or certificate (it still
                trusts the CA), to see what an unauthenticated caller meets.
            client_certificate: the certificate to present (default: one for user
                ``local-admin`` in group ``system:masters``, when client certificates are on).
        """
        from kubernetes import client  # slow to import: only on use

        configuration = client.Configuration(host=self.url)
        configuration.retries = False
        if self._tls is not None:
            configuration.ssl_ca_cert = self._tls.ca_file
        token, certificate = self._credentials(credentials, client_certificate)
        if token is not None:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        if certificate is not None:
            configuration.cert_file = certificate.cert_file
            configuration.key_file = certificate.key_file
        return client.ApiClient(configuration)

    def _credentials(
        self, wanted: bool, certificate: ClientCertificate | None
    ) -> tuple[str | None, ClientCertificate | None]:
        if not wanted:
            return None, certificate
        if certificate is None and self._auth.client_certificates:
            if self._default_client_certificate is None:
                self._default_client_certificate = self.client_certificate(
                    "local-admin", ("system:masters",)
                )
            certificate = self._default_client_certificate
        return self._auth.token, certificate

    def kubeconfig(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        credentials: bool = True,
        client_certificate: ClientCertificate | None = None,
    ) -> str:
        """Return (and write to ``path``, if given) a kubeconfig for this server.

        Its current context names the server's URL, its CA (``certificate-authority-data``)
        and the same credentials as :meth:`api_client`, so that ``kubectl --kubeconfig``
        and ``kubernetes.config.load_kube_config`` reach it as they would a cluster.

        Raises:
            RuntimeError: the server has not been started (no URL yet).
        """
        token, certificate = self._credentials(credentials, client_certificate)
        text = kubeconfig_text(
            self.url,
            ca_pem=self._tls.ca_pem if self._tls is not None else None,
            token=token,
            client_certificate=certificate,
        )
        if path is not None:
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
        return text

    @property
    def ca_pem(self) -> bytes | None:
        """The PEM of the CA that signed the server's certificate (None without ``tls``)."""
        return self._tls.ca_pem if self._tls is not None else None

    @property
    def ca_file(self) -> str | None:
        """A file holding :attr:`ca_pem`, until :meth:`stop` (None without ``tls``)."""
        return self._tls.ca_file if self._tls is not None else None

    @property
    def token(self) -> str | None:
        """The bearer token every request must carry (None: no token is accepted)."""
        return self._auth.token

    def client_certificate(
        self, user: str = "test-user", groups: Iterable[str] = ()
    ) -> ClientCertificate:
        """Issue a client certificate for ``user``, signed by the server's CA.

        The server accepts it as credentials when it was built with
        ``client_certificates=True``. Only the first of ``groups`` is kept (one
        organization per certificate).

        Raises:
            RuntimeError: the server does not serve TLS.
        """
        if self._tls is None:
            raise RuntimeError("client certificates need LocalApiServer(tls=True)")
        return self._tls.issue_client_certificate(user, tuple(groups))

    def wait_for_event(
        self,
        *,
        namespace: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        reason: str | None = None,
        min_count: int = 1,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Wait until a matching event is stored; return it as core/v1 JSON.

        The arguments are those of :func:`~k8s_logging_events.testing.wait_for_event`.

        Raises:
            AssertionError: nothing matched in time (the message shows the events there).
        """
        from k8s_logging_events.testing._wait import wait_for_event

        return wait_for_event(
            self,
            namespace=namespace,
            kind=kind,
            name=name,
            reason=reason,
            min_count=min_count,
            timeout=timeout,
        )

    # -- stored objects ---------------------------------------------------------------

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Return the stored events as core/v1 JSON dicts, as a GET would return them.

        Args:
            namespace: only this namespace's events (all when None).
        """
        return [self._view(entry, CORE) for entry in self._store.events(namespace)]

    def events_v1(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Return the stored events as events.k8s.io/v1 JSON dicts."""
        return [self._view(entry, EVENTS) for entry in self._store.events(namespace)]

    @staticmethod
    def _view(entry: Entry, api: str) -> dict[str, Any]:
        prefix = CORE_API.prefix if api == CORE else EVENTS_API.prefix
        loaded: dict[str, Any] = json.loads(prefix + entry.item_json(api)[1:])
        return loaded

    def namespaces(self) -> list[dict[str, Any]]:
        """Return every namespace as core/v1 JSON dicts."""
        return [
            {"kind": "Namespace", "apiVersion": "v1", **entry.view(CORE)}
            for entry in self._store.iter_namespaces()
        ]

    def create_namespace(
        self, name: str, *, labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Create a namespace, as ``kubectl create namespace`` would.

        Raises:
            ValueError: the name is invalid or taken.
        """
        try:
            entry = self._store.create_namespace(
                {"metadata": {"name": name, "labels": labels or {}}}
            )
        except ApiError as error:
            raise ValueError(error.status.get("message", str(error))) from None
        return {"kind": "Namespace", "apiVersion": "v1", **entry.view(CORE)}

    def terminate_namespace(self, name: str) -> None:
        """Put namespace ``name`` into ``Terminating``, as a DELETE of it does.

        From then on every create in it gets 403 Forbidden with cause
        ``NamespaceTerminating``; reads, updates, patches and deletes still work. The namespace
        stays until :meth:`finalize_namespace` (there is no namespace controller here).

        Raises:
            KeyError: there is no such namespace.
            ValueError: it is ``default``, ``kube-system`` or ``kube-public``.
        """
        self._namespace_call(self._store.terminate_namespace, name)

    def finalize_namespace(self, name: str) -> None:
        """Finish deleting a namespace: remove it and all its events.

        Raises:
            KeyError: there is no such namespace.
            ValueError: it is ``default``, ``kube-system`` or ``kube-public``.
        """
        self._namespace_call(self._store.finalize_namespace, name)

    @staticmethod
    def _namespace_call(call: Callable[[str], Any], name: str) -> None:
        try:
            call(name)
        except ApiError as error:
            if error.code == 404:
                raise KeyError(name) from None
            raise ValueError(error.status.get("message", str(error))) from None

    @property
    def auto_create_namespaces(self) -> bool:
        """Whether a write into a missing namespace creates it (instead of a 404)."""
        return self._store.auto_create_namespaces

    @auto_create_namespaces.setter
    def auto_create_namespaces(self, value: bool) -> None:
        self._store.auto_create_namespaces = value

    @property
    def resource_version(self) -> str:
        """The resourceVersion of the latest write (a list would report it)."""
        return str(self._store.resource_version)

    def add_pod(
        self, name: str, namespace: str = "default", uid: str | None = None
    ) -> dict[str, Any]:
        """Serve a pod at ``GET /api/v1/namespaces/{namespace}/pods/{name}``; return it.

        Only that read is served (what ``default_involved="pod"`` asks when ``POD_UID`` is not
        set); ``uid`` is a fresh UUID when not given. Make the read fail with :meth:`inject`
        (``path="/pods/"``, ``status=403``).
        """
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid or str(uuid.uuid4()),
            },
        }
        self._rest.pods[(namespace, name)] = pod
        return pod

    def reset(self) -> None:
        """Forget all events and namespaces but the initial ones (resourceVersions go on)."""
        self._store.reset()

    # -- faults -----------------------------------------------------------------------

    def inject(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        times: int | None = 1,
        action: FaultAction = "status",
        status: int = 500,
        retry_after: float | None = None,
        delay: float = 0.0,
        commit: bool = False,
        probability: float = 1.0,
        seed: int | None = None,
        message: str | None = None,
        duration: float | None = None,
    ) -> Fault:
        """Arm a fault for the next ``times`` requests that match ``method`` and ``path``.

        Counting starts now: requests made before the call never count. Faults are tried in
        the order they were armed; the first that matches a request takes it.

        Args:
            method: the HTTP method to match (any when None).
            path: a regular expression searched in the URL path (any when None).
            times: how many matching requests to fail (None: until cancelled).
            action: what to do to a matching request:

                * ``"status"`` -- answer ``status`` with a proper ``Status`` body (429
                  ``TooManyRequests`` with ``Retry-After``, 500 ``InternalError``, 503
                  ``ServiceUnavailable``, 504 ``Timeout`` ...);
                * ``"delay"`` -- answer normally, ``delay`` seconds late;
                * ``"drop"`` -- close the connection without an answer;
                * ``"hang"`` -- never answer: hold the request until the client gives up
                  (closes the connection) or the server stops, then close it;
                * ``"refuse"`` -- stop listening, so that new connections are refused, for
                  ``duration`` seconds (until :meth:`accept_connections` when None), then
                  drop this request's connection without an answer.
            status: the status code for ``"status"``.
            retry_after: seconds for the ``Retry-After`` header and
                ``details.retryAfterSeconds`` (429 gets 1 when None).
            delay: seconds to wait before acting (any action).
            commit: process the request first -- the write is stored -- and then fail it
                (a lost response); by default the request is failed before it is processed.
            probability: fire on a matching request only with this probability (a chaos
                mode; combine with ``times=None`` and ``seed``).
            seed: seeds the random choices of ``probability``.
            message: the ``message`` of the Status body.
            duration: for ``"refuse"``: how long to refuse connections.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; use one of {', '.join(ACTIONS)}")
        if action == "status" and not 400 <= status <= 599:
            raise ValueError(f"an injected status must be 4xx or 5xx, not {status}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for no limit)")
        if not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        fault = Fault(
            method=method,
            path=path,
            action=action,
            status=status,
            times=times,
            retry_after=retry_after,
            delay=delay,
            commit=commit,
            probability=probability,
            seed=seed,
            message=message,
            duration=duration,
            on_cancel=self._cancel_fault,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def _cancel_fault(self, fault: Fault) -> None:
        with self._lock:
            fault._active = False
            if fault in self._faults:
                self._faults.remove(fault)

    def clear_faults(self) -> None:
        """Disarm every injected fault."""
        with self._lock:
            for fault in self._faults:
                fault._active = False
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The faults still armed, in the order they are tried."""
        with self._lock:
            return [fault for fault in self._faults if fault.active]

    def _match_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault._try(method, path):
                    if not fault.active:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- request log ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The latest requests (up to ``max_requests``), oldest first: a snapshot."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._requests.clear()

    def wait_for_request(
        self,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        timeout: float | None = None,
    ) -> RecordedRequest | None:
        """Wait until the request log holds a request that ``predicate`` accepts; return it.

        Requests already in the log count. Useful to wait, without sleeping, until another
        process (``kubectl get --watch``, the code under test) has reached the server::

            server.wait_for_request(lambda r: r.query.get("watch") == "true", timeout=10)

        Args:
            predicate: what to wait for (None: any request).
            timeout: seconds to wait at most (None: no limit).

        Returns:
            The earliest matching request, or None when ``timeout`` ran out first.
        """
        accept = predicate or (lambda _request: True)
        found: list[RecordedRequest] = []

        def seen() -> bool:
            found[:] = [request for request in self._requests if accept(request)][:1]
            return bool(found) or self._stop_requested

        with self._request_logged:
            self._request_logged.wait_for(seen, timeout=timeout)
        return found[0] if found else None

    # -- connection refusal -----------------------------------------------------------

    def refuse_connections(self, duration: float | None = None) -> None:
        """Stop listening: new connections are refused (``ECONNREFUSED``) until re-opened.

        Idle keep-alive connections are closed too, so that pooled clients must reconnect
        (and be refused); requests in progress finish. Returns once the port is closed.

        Args:
            duration: re-open by itself after this many seconds; None waits for
                :meth:`accept_connections`.
        """
        self._set_listening(False, duration)

    def accept_connections(self) -> None:
        """Listen again on the same port; returns once the port accepts connections.

        Raises:
            OSError: the port could not be bound again.
        """
        self._set_listening(True, None)

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Refuse connections inside the ``with`` block."""
        self.refuse_connections()
        try:
            yield
        finally:
            self.accept_connections()

    def wait_for_listening(self, timeout: float | None = None) -> bool:
        """Block until the server accepts connections; False if ``timeout`` ran out first.

        For tests that refuse connections for a ``duration``: this waits for the re-opening
        without sleeping.
        """
        with self._state:
            return (
                self._state.wait_for(
                    lambda: (
                        self._listening or self._stop_requested or self._listen_error is not None
                    ),
                    timeout=timeout,
                )
                and self._listening
            )

    def _set_listening(self, listening: bool, duration: float | None) -> None:
        with self._state:
            if not self.running:
                raise RuntimeError("LocalApiServer is not running")
            closes = self._closes
            self._want_listening = listening
            self._listen_error = None
            self._reopen_at = None
            if not listening and duration is not None:
                self._reopen_at = time.monotonic() + max(0.0, duration)
        self._wake()

        def done() -> bool:
            if self._stop_requested:
                return True
            if listening:
                return self._listening or self._listen_error is not None
            return self._closes > closes or not self._listening

        with self._state:
            self._state.wait_for(done, timeout=_JOIN_TIMEOUT)
            if self._listen_error is not None:
                raise self._listen_error

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
                    stopping = self._stop_requested
                    want = self._want_listening and not stopping
                if not want and self._listening:
                    selector.unregister(httpd.socket)
                    httpd.socket.close()
                    self._close_idle_connections()
                    with self._state:
                        self._listening = False
                        self._closes += 1
                        self._state.notify_all()
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

    def _open_listener(self, httpd: _HttpServer, selector: selectors.BaseSelector) -> None:
        sock = socket.socket(httpd.address_family, httpd.socket_type)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
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
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
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
            name=f"k8s-apiserver-{self._port}-conn-{number}",
            daemon=True,
        )
        connection.thread = thread
        with self._lock:
            self._connections[id(sock)] = connection
            self._threads.add(thread)
        thread.start()

    def _run_connection(self, httpd: _HttpServer, connection: _Connection, address: Any) -> None:
        try:
            if self._ssl_context is not None and not self._stopping.is_set():
                self._handshake(connection)
            if not self._stopping.is_set():
                httpd.finish_request(connection.sock, address)
        except Exception:  # noqa: S110 - a client that vanished mid-request is routine
            pass
        finally:
            with self._lock:
                self._connections.pop(id(connection.sock), None)
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
        wrapped.settimeout(_HANDSHAKE_TIMEOUT)
        wrapped.do_handshake()
        wrapped.settimeout(None)

    def _connection_state(self, sock: socket.socket) -> _Connection | None:
        return self._connections.get(id(sock))

    def _close_idle_connections(self) -> None:
        with self._lock:
            idle = [connection for connection in self._connections.values() if connection.idle]
        for connection in idle:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    # -- requests ---------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        """Answer one parsed request on ``handler``'s connection (runs on its thread)."""
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
        body = read_body(handler.rfile, handler.request_headers)
        method = handler.command
        request = HttpRequest(method, path, query, headers, body)
        record = RecordedRequest(
            method=method,
            path=path,
            query=query,
            content_type=headers.get("Content-Type") or "",
            body=request.parsed(),
            headers=headers.as_dict(),
            raw_body=body,
        )
        with self._lock:
            self._requests.append(record)
            self._request_logged.notify_all()
        fault = self._match_fault(method, path)
        if fault is None:
            self._respond(handler, self._handle(handler, request), record)
            return
        record.fault = fault.action
        response = self._handle(handler, request) if fault.commit else None
        if fault.delay > 0 and self._stopping.wait(fault.delay):
            self._drop(handler)
            return
        if fault.action == "delay":
            self._respond(handler, response or self._handle(handler, request), record)
        elif fault.action == "status":
            failure = fault_status(fault.status, fault.message, fault.retry_after)
            self._respond(handler, error_response(failure), record)
        elif fault.action == "drop":
            self._drop(handler)
        elif fault.action == "hang":
            self._hang(handler)
        else:
            with contextlib.suppress(RuntimeError):
                self.refuse_connections(fault.duration)
            self._drop(handler)

    def _handle(self, handler: _Handler, request: HttpRequest) -> HttpResponse:
        """Authenticate (when the server asks for credentials), then answer the request."""
        if self._auth.required:
            sock = handler.connection
            peer = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
            if not self._auth.authenticate(request.header("Authorization"), peer):
                return error_response(unauthorized())
        return self._rest.handle(request)

    def _respond(self, handler: _Handler, response: HttpResponse, record: RecordedRequest) -> None:
        record.status = response.status
        record.reason = response.reason
        if response.watch is not None:
            sock = handler.connection
            if not write_watch(handler.wfile, sock, response.watch, self._store, self._stopping):
                self._drop(handler)
            return
        try:
            phrase = http.HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        body = b"" if handler.command == "HEAD" else response.body
        head = [
            f"HTTP/1.1 {response.status} {phrase}\r\n",
            f"Content-Type: {response.content_type}\r\n",
            f"Content-Length: {len(response.body)}\r\n",
            f"Date: {http_date()}\r\n",
            "Cache-Control: no-cache, private\r\n",
        ]
        head.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        if handler.close_connection:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        handler.wfile.write("".join(head).encode("latin-1") + body)

    @staticmethod
    def _drop(handler: _Handler) -> None:
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)

    def _hang(self, handler: _Handler) -> None:
        # wait until the client closes the connection or stop() shuts it down
        with contextlib.suppress(OSError, ValueError):
            select.select([handler.connection], [], [])
        self._drop(handler)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._stopped else "not started"
        where = f" at {self.url}" if self._started else ""
        return f"<LocalApiServer {state}{where}>"
