"""The public facade of the local API server: :class:`LocalApiServer`.

This is the test side of the pipeline: what the sink talks to in tests and in the demo.
:class:`LocalApiServer` serves core/v1 and events.k8s.io/v1 Events and core/v1 Namespaces
and Pods over real HTTP on 127.0.0.1, so that the official ``kubernetes`` client -- and through it
the library's sink -- talks to it exactly as to a cluster: same paths, same status codes,
same ``Status`` bodies, same validation, same order of checks (see
``docs/local-apiserver.md`` for what is and is not faithful). On top of that it offers what
a real cluster cannot: fault injection for retry tests, a request log for assertions, and
direct access to the stored events.

The facade ties the parts together: the transport (``_http``) hands each request to the
dispatcher (``_dispatch``), which logs it (``_faults.RequestLog``), meets it with an armed
fault (``_faults.FaultList``) or authenticates it (``_auth``) and answers it through the
REST layer (``_rest``) over the store (``_store``, which asks the admission plugin of
``_admission`` about event writes), streaming watches (``_watch``). The controls a cluster
has not -- faults, the request log, refusing connections -- are in its base class
(``_controls``). Only
the standard library is used; the ``kubernetes`` package is imported only by
:meth:`LocalApiServer.api_client`. All threads are daemon threads named
``k8s-apiserver-...``; :meth:`LocalApiServer.stop` stops and joins every one of them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from k8s_logging_events.broadcaster import EndsOnExit
from k8s_logging_events.clock import Clock, SystemClock, monotonic_source
from k8s_logging_events.testing._wait import wait_for_event
from k8s_logging_events.testing.apiserver._admission import EventRateLimit
from k8s_logging_events.testing.apiserver._auth import (
    LOCAL_ADMIN,
    Authenticator,
    ClientCertificate,
    TlsMaterial,
    kubeconfig_text,
)
from k8s_logging_events.testing.apiserver._controls import ServerControls
from k8s_logging_events.testing.apiserver._dispatch import Dispatcher
from k8s_logging_events.testing.apiserver._errors import ApiError
from k8s_logging_events.testing.apiserver._faults import FaultList, RequestLog
from k8s_logging_events.testing.apiserver._http import Transport
from k8s_logging_events.testing.apiserver._objects import CORE_API, EVENTS_API, Entry
from k8s_logging_events.testing.apiserver._pods import LOCAL_NODE, running_status
from k8s_logging_events.testing.apiserver._rest import RestApi
from k8s_logging_events.testing.apiserver._rest_pods import pod_json
from k8s_logging_events.testing.apiserver._store import DEFAULT_WATCH_HISTORY, Store
from k8s_logging_events.testing.apiserver._validation import CORE, EVENTS

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


class LocalApiServer(ServerControls, EndsOnExit):
    """A Kubernetes Events API server on 127.0.0.1 for tests, demos and users' own tests.

    It serves ``/api/v1`` (Events, Namespaces and Pods) and ``/apis/events.k8s.io/v1``
    (Events) over one store, plus the discovery documents kubectl needs. Use it as a context
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
        clock: the clock for ``creationTimestamp``, expiry (on its monotonic reading) and
            table ages (system clock by default); a
            :class:`~k8s_logging_events.testing.FakeClock` works.
        event_ttl: seconds after its last write an event disappears, as with the real
            server's ``--event-ttl`` (default 1 h there); None keeps events forever.
        max_events: keep at most this many events, forgetting the least recently written.
        max_requests: the request log keeps this many of the latest requests.
        name_generator: makes the name for a ``generateName`` prefix (default: the prefix
            and five random characters, as the real server does).
        seed: seeds the default name generator.
        watch_history: how many changes of each resource the server keeps for watches to resume
            from; a watch from an older resourceVersion gets ``410 Expired``.
        tls: serve HTTPS with a certificate signed by a throwaway CA (:attr:`ca_pem`,
            :attr:`ca_file`); needs the ``trustme`` package.
        token: require ``Authorization: Bearer <token>`` on every request; others get
            ``401 Unauthorized``, as from a real server with anonymous authentication off.
        client_certificates: (with ``tls``) accept client certificates signed by the
            server's CA as credentials too (:meth:`client_certificate` issues them); without
            a ``token``, every request must then bring one.
        chunked_answers: send every answer that has a body with ``Transfer-Encoding:
            chunked`` (in two chunks) instead of a ``Content-Length``, as a real server does
            with answers it streams; for testing clients' HTTP.
        event_rate_limit: enforce the ``EventRateLimit`` admission plugin with this, its
            configuration (``{"limits": [{"type": "Namespace", "qps": 50, "burst": 100}]}``;
            types ``Server``, ``Namespace``, ``User``, ``SourceAndObject``): core/v1 event
            creates and updates beyond a limit get its 429, without ``Retry-After``. Buckets
            refill on ``clock``. A ``User`` is ``system:anonymous`` without credentials,
            ``local-admin`` for the token, and a client certificate's common name.

    Raises:
        ValueError: an invalid option (``event_rate_limit`` as the plugin would refuse it).
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
        chunked_answers: bool = False,
        event_rate_limit: Mapping[str, Any] | None = None,
    ) -> None:
        if client_certificates and not tls:
            raise ValueError("client_certificates=True needs tls=True")
        if token is not None and not token.strip():
            raise ValueError("token must not be empty")
        self._clock: Clock = clock or SystemClock()
        admission = (  # checked first: a refused configuration leaves no files behind
            None
            if event_rate_limit is None
            else EventRateLimit(event_rate_limit, monotonic_source(self._clock)).validate
        )
        self._host = host
        self._auth = Authenticator(token, client_certificates)
        self._tls = TlsMaterial() if tls else None
        self._default_client_certificate: ClientCertificate | None = None
        self._store = Store(
            clock=self._clock,
            namespaces=namespaces,
            auto_create_namespaces=auto_create_namespaces,
            event_ttl=event_ttl,
            max_events=max_events,
            name_generator=name_generator,
            seed=seed,
            watch_history=watch_history,
            admission=admission,
        )
        self._log = RequestLog(max_requests)
        self._faults = FaultList()
        stopping = threading.Event()
        self._rest = RestApi(self._store, self._clock, lambda: self._address())
        dispatcher = Dispatcher(
            rest=self._rest,
            store=self._store,
            auth=self._auth,
            faults=self._faults,
            log=self._log,
            stopping=stopping,
            refuse=self.refuse_connections,
        )
        self._transport = Transport(
            host,
            port,
            dispatcher.serve,
            (
                self._tls.server_context(client_certificates=client_certificates)
                if self._tls is not None
                else None
            ),
            stopping=stopping,
            chunked_answers=chunked_answers,
        )
        self._pods_added = 0
        self._state = threading.Lock()
        self._started = False
        self._stop_requested = False
        self._stopped = False

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
        self._transport.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join every thread (idempotent)."""
        with self._state:
            if not self._started or self._stop_requested:
                return
            self._stop_requested = True
        self._transport.stop(notify=self._wake_waits)
        if self._tls is not None:
            self._tls.cleanup()
        with self._state:
            self._stopped = True

    def _wake_waits(self) -> None:
        """End the waits of request-log waiters and open watches at once."""
        self._log.close()
        with self._store.changed:
            self._store.changed.notify_all()

    def __enter__(self) -> Self:
        return self.start()

    def _on_exit(self) -> None:
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
        return f"{host}:{self._transport.port}"

    @property
    def port(self) -> int:
        """The port served on (0 before :meth:`start`)."""
        return self._transport.port

    @property
    def connections(self) -> int:
        """How many client connections the server accepted since it started.

        A keep-alive client's requests share one; a count that grows by one per request
        shows a client that does not keep connections alive.
        """
        return self._transport.connections_accepted

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
                    LOCAL_ADMIN, ("system:masters",)
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

    wait_for_event = wait_for_event
    """Wait until a matching event is stored; return it as core/v1 JSON: the function
    :func:`~k8s_logging_events.testing.wait_for_event`, with this server as its target."""

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
        self,
        name: str,
        namespace: str = "default",
        uid: str | None = None,
        *,
        containers: Sequence[Mapping[str, Any]] | None = None,
        labels: Mapping[str, str] | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a pod as if it were scheduled and started; return it as a GET would.

        The pod is a real one: it goes through the checks and defaults of a create (its
        namespace must exist, unless ``auto_create_namespaces``), is listed, watched and
        described like any other, and ``default_involved="pod"`` can read its uid. Unlike a
        create through the API, it is bound to the node ``local-node`` and has the status a
        kubelet reports once every container runs and is ready -- or ``status`` as given.

        Args:
            name: the pod's name.
            namespace: its namespace.
            uid: its uid (a fresh UUID when None).
            containers: the containers (default: one named ``main``).
            labels: its labels.
            status: the status to store instead of "running and ready".

        Raises:
            ValueError: the server refused the pod (the message is its Status message).
        """
        spec = {
            "containers": [dict(c) for c in containers or [{"name": "main", "image": "app:1.0"}]],
            "nodeName": LOCAL_NODE,
        }
        pod = {
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": spec,
            "status": {},
        }
        self._pods_added += 1
        index, now = self._pods_added, self._clock.now()

        def kubelet_status(created: dict[str, Any]) -> dict[str, Any]:
            return dict(status) if status is not None else running_status(created, now, index)

        try:
            entry = self._store.create_pod(pod, status=kubelet_status, uid=uid)
        except ApiError as error:
            raise ValueError(error.status.get("message", str(error))) from None
        return self._pod_view(entry)

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Return the stored pods as core/v1 JSON dicts, as a GET would return them.

        Args:
            namespace: only this namespace's pods (all when None).
        """
        return [self._pod_view(entry) for entry in self._store.pod_entries(namespace)]

    @staticmethod
    def _pod_view(entry: Entry) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(pod_json(entry))
        return loaded

    def reset(self) -> None:
        """Forget all events and pods, and the namespaces but the initial ones.

        resourceVersions go on from where they were."""
        self._store.reset()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._stopped else "not started"
        where = f" at {self.url}" if self._started else ""
        return f"<LocalApiServer {state}{where}>"
