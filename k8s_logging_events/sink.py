"""Where events are written: the :class:`EventSink` protocol, the Kubernetes sink, errors.

A sink is the end of the pipeline, below the recorder's writers (docs/architecture.md). The
writer decides what to do with a failure from its class alone:

* :class:`ApiStatusError` -- the server answered with a Status. 404 from a patch means
  "create instead"; 429 and 5xx are retried (honouring ``retry_after``); anything else is
  given up at once.
* :class:`RequestConstructionError` -- the request could not even be built: given up.
* any other exception (refused, reset, timed out) -- retried.

The errors and :func:`is_retryable` (``_errors``) and :class:`EventSink` (``_continuation``) get
their public names here: what a user catches, or raises in a sink of their own.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self, cast
from urllib.parse import quote

from k8s_logging_events import (
    _apis,
    _continuation,
    _diagnostics,
    _errors,
    _http_parser,
    _kubeconfig,
    _numbers,
    _official,
    _process,
    _tokenbucket,
    _transport,
    models,
)
from k8s_logging_events import clock as clock_mod

if TYPE_CHECKING:
    from kubernetes import client as k8s_client

__all__ = [
    "CORE_V1",
    "DEFAULT_BURST",
    "DEFAULT_DRAIN_QPS",
    "DEFAULT_QPS",
    "DEFAULT_REQUEST_TIMEOUT",
    "EVENTS_V1",
    "ApiStatusError",
    "EventSink",
    "KubernetesEventSink",
    "LazySink",
    "RequestConstructionError",
    "find_configuration",
    "is_retryable",
    "kubeconfig_paths",
    "sink_from_config",
]

CORE_V1 = _apis.CORE_V1.name
"""The core/v1 Events API (client-go's ``tools/record``)."""

EVENTS_V1 = _apis.EVENTS_V1.name
"""The newer events.k8s.io/v1 Events API, with series (client-go's ``tools/events``)."""

DEFAULT_QPS = 5.0
"""client-go's REST client default: five requests a second, sustained, per sink."""

DEFAULT_BURST = 10
"""client-go's REST client default: up to ten requests at once after a quiet spell."""

DEFAULT_DRAIN_QPS = 100.0
"""The request rate while a flush drains (at exit, mostly): a job that logs about a hundred
objects must see them written within the 5 s flush timeout. 429 and ``Retry-After`` still
count."""

DEFAULT_REQUEST_TIMEOUT = (5.0, 10.0)
"""Seconds to connect and to read an answer; a hung server must not hold a writer forever."""

_STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
_JSON = "application/json"

EventSink = _continuation.EventSink
ApiStatusError = _errors.ApiStatusError
RequestConstructionError = _errors.RequestConstructionError
is_retryable = _errors.is_retryable
find_configuration = _kubeconfig.find_configuration
kubeconfig_paths = _kubeconfig.kubeconfig_paths


class KubernetesEventSink:
    """Writes Events to a Kubernetes API server through the official client.

    The client decides where and how to connect (URL, TLS, credentials, proxy); the sink
    sends its own JSON, encoded once, on its own keep-alive channel, or through the client's
    urllib3 pool where the channel cannot connect exactly as the client would (a proxy).
    Its connections are its own: only :meth:`close` closes them (closing a given
    ``api_client`` does not), and a handler or broadcaster given the sink never closes it, so
    close it yourself (``with KubernetesEventSink(api_client) as sink:``) after the last flush.

    Args:
        api_client: the client to use. Without one, the sink builds a private one (never
            the process-global ``Configuration``) from the in-cluster service account, else
            the kubeconfig. urllib3's own retries are off either way: only the writer retries.
        qps, burst, request_timeout, drain_qps, api, kubeconfig, context: as the handler's
            options of those names, with the same defaults (docs/configuration.md): core/v1,
            and ``qps=0`` for no rate limit; ``drain_qps`` applies while :meth:`drain` is on.
        clock: the rate limit's time source (its monotonic reading).
        sleep: how the rate limit waits (interrupted by :meth:`close`, and by a shutdown
            that gave the waiting write up), called as ``sleep(seconds, cancel)``.

    Raises:
        ValueError: ``api`` is not ``"v1"``, ``"events.k8s.io/v1"`` or ``"auto"``; the
            server URL's user name or password holds an unencoded ``/``, ``#`` or ``?``, or
            its port is no port;
            ``sleep`` is of another shape (``time.sleep``); ``qps``, ``burst``,
            ``drain_qps`` or ``request_timeout`` is no number of their range (as the handler's);
            ``kubeconfig`` or ``context`` beside an ``api_client`` (or a :meth:`from_url`
            URL), whose cluster they cannot change.
        kubernetes.config.ConfigException: given no ``api_client``, no configuration was
            found (no service account, no kubeconfig file), or its context is not in it.
    """

    def __init__(
        self,
        api_client: k8s_client.ApiClient | None = None,
        *,
        qps: float | str = DEFAULT_QPS,
        burst: int | str = DEFAULT_BURST,
        request_timeout: float | str | Sequence[float | str] = DEFAULT_REQUEST_TIMEOUT,
        clock: clock_mod.Clock | None = None,
        sleep: clock_mod.Sleeper | None = None,
        api: str = CORE_V1,
        drain_qps: float | str = DEFAULT_DRAIN_QPS,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
    ) -> None:
        if api not in (CORE_V1, EVENTS_V1, "auto"):
            raise ValueError(f"api must be {CORE_V1!r}, {EVENTS_V1!r} or 'auto', not {api!r}")
        if api_client is not None and (kubeconfig is not None or context is not None):
            # as the handler refuses them beside a URL or a sink: the client names its cluster
            raise ValueError("kubeconfig and context choose the cluster without an api_client")
        # checked as the handler's options are: a request_timeout of -1 or "5" failed every write
        qps = _numbers.number("qps", qps, minimum=0, meaning=_numbers.RATE)
        burst = _numbers.whole("burst", burst, minimum=1)
        drain_qps = _numbers.number("drain_qps", drain_qps, minimum=0, meaning=_numbers.RATE)
        request_timeout = _numbers.timeout(request_timeout) or DEFAULT_REQUEST_TIMEOUT
        self._api = api
        # one of another shape would fail every request the rate limit holds
        sleep = clock_mod.checked_sleeper(sleep)
        self._owns_client = api_client is None
        # durations (the rate limit, a token file's age): monotonic, never the wall clock; a
        # given sleep's uncut waits count on it (see Paced)
        clock = clock or clock_mod.SystemClock()
        paced = clock_mod.Paced(clock, sleep) if sleep else None
        self._sleep = paced.sleep if paced else clock_mod.event_sleep
        self._monotonic = clock_mod.monotonic_source(paced or clock)
        self.credentials: str
        """What kind of credentials the sink sends, and from where (never their value)."""
        if api_client is None:
            path = None if kubeconfig is None else os.fspath(kubeconfig)  # a pathlib.Path too
            api_client, self.credentials = _kubeconfig.default_api_client(
                path, context, self._monotonic
            )
        else:
            origin = "the given ApiClient's configuration"
            self.credentials = _kubeconfig.describe_credentials(api_client.configuration, origin)
        _kubeconfig.check_readable(str(api_client.configuration.host))
        # typed as Any: the client's methods carry no annotations
        self._api_client: Any = api_client
        self._timeout = request_timeout
        self._closed = threading.Event()
        # the writers' (a flush's switch of the rate takes none); reentrant all the same
        self._limit_lock = threading.RLock()
        now = self._monotonic()
        self._normal = _tokenbucket.TokenBucket(qps, burst, now) if qps > 0 else None
        # draining is never slower than the normal rate: no limit stays no limit
        self._draining = self._normal
        if self._normal is not None and not 0 < drain_qps <= qps:
            self._draining = _tokenbucket.TokenBucket(drain_qps, burst, now) if drain_qps else None
        self._drains: list[None] = []  # one per drain on
        # chosen once: the sink's own channel where it connects exactly as the client would
        self._transport: _transport.Transport = _official.channel_for(
            self._api_client, request_timeout
        ) or _official.ClientTransport(self._api_client, request_timeout)
        # what the requests waiting for the rate limit wait on (a writer's: its write's)
        self._waits: list[threading.Event] = []
        _process.renew_in_child(self)

    @property
    def waiting_for_rate_limit(self) -> int:
        """How many requests are waiting for the rate limit right now."""
        return len(self._waits)

    def drain(self, on: bool) -> None:
        """Switch to ``drain_qps`` while a flush drains, and back: a sink shared by several
        broadcasters drains until their last flush ends; a switch off with none on ends none."""
        # lock-free, one atomic step each (a signal handler's flush here waits for no lock of
        # ours); two switches off that each looked, then ended, ended two drains for one
        if on:
            self._drains.append(None)
        else:
            del self._drains[-1:]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> KubernetesEventSink:
        """A sink for an API server reached without credentials at ``url``: ``kubectl proxy``
        (``http://127.0.0.1:8001``), the local test server. ``ValueError``: no http(s) URL
        with a host and a port, or one that holds a user name or password (they would be
        ignored), a query or a fragment, as for the handler's ``sink`` option."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = _kubeconfig.url_without_credentials(url).rstrip("/")
        configuration.retries = False
        _kubeconfig.checked_proxy(configuration)  # the environment's, read as host is set
        sink = cls(client.ApiClient(configuration), **options)
        sink._owns_client = True
        sink.credentials = f"no credentials (the sink option names the URL {url} only)"
        return sink

    @property
    def api_client(self) -> k8s_client.ApiClient:
        """The client this sink writes through."""
        return cast("k8s_client.ApiClient", self._api_client)

    @property
    def api(self) -> str:
        """The API written to: ``v1`` or ``events.k8s.io/v1`` (``auto`` is resolved here)."""
        if self._api == "auto":
            self._api = self.discover_api()
        return self._api

    @property
    def api_known(self) -> bool:
        """False while :attr:`api` would have to ask the server (``auto``, not asked yet)."""
        return self._api != "auto"

    def discover_api(self) -> str:
        """Ask the server whether it serves events.k8s.io/v1 Events; ``v1`` if not, or if it
        cannot say (core/v1 is everywhere; reported): the choice holds for the sink's life,
        and processes that chose differently do not continue each other's counts."""
        try:
            answer = self._send("GET", f"/apis/{EVENTS_V1}", _JSON)
            resources = answer.get("resources") or ()
            served = any(r.get("name") == "events" for r in resources if isinstance(r, dict))
        except Exception as error:  # refused, unreachable or unreadable: core/v1 is safe
            # a 404 says: not served; a closed sink's question was given up (cut by its close)
            if getattr(error, "status", None) != 404 and not self._closed.is_set():
                _diagnostics.report(
                    logging.WARNING,
                    "api 'auto' could not learn whether events.k8s.io/v1 is served: %s; "
                    "this sink writes core/v1 Events",
                    _errors.explain(error, self),
                )
            return CORE_V1
        return EVENTS_V1 if served else CORE_V1

    @property
    def host(self) -> str:
        """The API server's URL, shown without a password a kubeconfig's ``server`` may hold."""
        return _kubeconfig.shown_url(str(self._api_client.configuration.host))

    def create(self, event: models.Event) -> models.Event:
        """POST ``event`` to its namespace and return what the server stored."""
        return self._answered(event, "POST")

    def update(self, event: models.Event) -> models.Event:
        """PUT ``event`` over the stored one of the same name."""
        return self._answered(event, "PUT")

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        """Apply the strategic-merge patch ``data`` to the stored ``event``."""
        return self._answered(event, "PATCH", data, _STRATEGIC_MERGE_PATCH)

    def read(self, event: models.Event) -> models.Event:
        """GET the stored event of ``event``'s namespace and name (to continue its count).
        Needs the verb ``get`` on ``events``: a 403 or 404 is an :class:`ApiStatusError`."""
        return self._answered(event, "GET")

    def _answered(
        self, event: models.Event, method: str, body: object = None, content_type: str = _JSON
    ) -> models.Event:
        """Send ``event``'s request, take only an answer about it: another object's, one the
        request cannot get, or another count than written was meant for another request
        (docs/reliability.md, "The channel"): idle connections close, it fails as in transport."""
        api = _apis.BY_NAME[self.api]
        written: int | None = None  # the count the write sets, as the server stores it
        if method in ("POST", "PUT"):  # a create or a replace sends the event itself
            body, written = api.body(event), models.stored_count(api.count_of(event))
        path = _events_path(api.prefix, event.namespace, None if method == "POST" else event.name)
        what = f"a write of event {event.namespace}/{event.name}"
        try:
            stored: models.Event = self._send(method, path, content_type, body, api.read)
        except ApiStatusError as error:
            # AlreadyExists answers a create alone; no admission webhook answers a read 409 or 422
            read_conflict = method == "GET" and error.status in (409, 422)
            could = method == "POST" if error.is_already_exists else not read_conflict
            if error.name in ("", event.name, event.namespace) and could:
                raise
            raise self._out_of_step(what, f"{error} (about {error.name!r})") from None
        if stored.name != event.name or stored.namespace not in ("", event.namespace):
            raise self._out_of_step(what, f"about {stored.namespace}/{stored.name}")
        if isinstance(body, bytes):  # a patch: the count it sets, if it sets one
            try:
                patch = json.loads(body)
            except ValueError:
                patch = None
            count = api.patched_count(patch) if isinstance(patch, dict) else None
            written = count if isinstance(count, int) and not isinstance(count, bool) else None
        if written is not None and api.count_of(stored) != written:
            raise self._out_of_step(what, f"count {api.count_of(stored)}, not {written}")
        return stored

    def _out_of_step(self, what: str, answer: str) -> _http_parser.ProtocolError:
        self._transport.distrust()
        return _http_parser.ProtocolError(
            f"the answer to {what} was meant for another request: {answer}"
        )

    def _send(
        self,
        method: str,
        path: str,
        content_type: str,
        body: object = None,
        parse: _transport.Parse | None = None,
    ) -> Any:
        """The one request path: a 2xx answer's decoded JSON, or what ``parse`` makes of it."""
        data = _transport.encode(method, path, body)
        # a write a shutdown gave up is not sent by a sink that outlives it (it counted failed)
        cancel = _process.request_cancel(self._closed)
        self._wait_for_rate_limit(cancel)
        if self._closed.is_set() or cancel.is_set():  # what was pending is counted already
            raise _errors.NotSentError("the sink was closed, or its write given up")
        try:
            return _transport.send(self._transport, method, path, content_type, data, parse)
        except ApiStatusError as error:
            if error.status == 401:  # the next request loads the credentials again
                _kubeconfig.refused(self._api_client.configuration)
            raise

    def read_pod_uid(self, namespace: str, name: str) -> str:
        """GET the pod ``namespace/name`` and return its uid (for ``default_involved="pod"``).
        :class:`ApiStatusError` 403: RBAC lacks ``get`` on ``pods``; 404: no such pod."""
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
        what = f"a read of pod {namespace}/{name}"
        try:
            answer = self._send("GET", path, _JSON)
        except ApiStatusError as error:
            if error.name in ("", name):
                raise
            raise self._out_of_step(what, f"{error} (about {error.name!r})") from None
        pod: dict[str, Any] = answer if isinstance(answer, dict) else {}
        found = pod.get("metadata")
        metadata: dict[str, Any] = found if isinstance(found, dict) else {}
        if pod.get("kind") != "Pod" or metadata.get("name") != name:
            raise self._out_of_step(what, f"about {pod.get('kind')} {metadata.get('name')}")
        uid = metadata.get("uid")
        if not isinstance(uid, str) or not uid:
            raise ValueError(f"the answer to GET {path} has no metadata.uid")
        return uid

    def close(self) -> None:
        """Stop waiting on the rate limit, send nothing more (``ConnectionAbortedError``),
        and close the client if this sink made it."""
        self._closed.set()
        with self._limit_lock:  # a writer waits on its write's event: ended here too
            for cancel in self._waits:
                cancel.set()
        self._transport.close()
        if self._owns_client:
            self._api_client.close()
            _kubeconfig.clean_up_at_exit()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the sink (:meth:`close`) at the end of a ``with`` block."""
        self.close()

    def _wait_for_rate_limit(self, cancel: threading.Event) -> None:
        while True:
            with self._limit_lock:  # close() sets _closed, then the cancels waited on here
                bucket = self._draining if self._drains else self._normal
                if bucket is None or self._closed.is_set() or cancel.is_set():
                    return
                now = self._monotonic()
                if bucket.try_take(now):
                    return
                # at most a second at a time: a drain that starts meanwhile applies at once
                wait = min(bucket.wait_time(now), 1.0)
                if _process.request_seconds(wait) < wait:  # a flush writing on this thread
                    raise _errors.NotSentError("its flush's deadline came before its token")
                self._waits.append(cancel)
            try:
                if self._sleep(wait, cancel):  # cut short by close() or a give-up
                    raise _errors.NotSentError("the sink was closed, or its write given up")
            finally:
                with self._limit_lock:
                    self._waits.remove(cancel)

    def _after_fork_in_child(self) -> None:
        """After ``os.fork()`` (``_process``): a parent's writer may have held the lock; the
        child opens connections of its own and writes at the normal rate (a drain is not its)."""
        self._limit_lock = threading.RLock()
        self._drains = []
        closed, self._closed = self._closed.is_set(), threading.Event()
        if closed:
            self._closed.set()
        self._waits = []
        self._transport.forget_after_fork()
        _official.forget_pool_after_fork(self._api_client)


def _events_path(prefix: str, namespace: str, name: str | None = None) -> str:
    """The events URL path under ``prefix``; refuses a namespace or name that cannot be."""
    parts = [namespace] if name is None else [namespace, name]
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "%" in part:
            raise RequestConstructionError(f"{part!r} cannot be a namespace or an event name")
    try:
        path = f"{prefix}/namespaces/{quote(namespace, safe='')}/events"
        return path if name is None else f"{path}/{quote(name, safe='')}"
    except UnicodeEncodeError as error:  # a lone surrogate: no URL can carry it
        raise RequestConstructionError(f"{parts!r} cannot be put in a URL: {error}") from None


class LazySink(_process.Locked):
    """An EventSink that builds the real one on its first write, on a writer thread.

    Loading a kubeconfig may run an exec credential plugin for seconds; neither
    ``dictConfig`` nor the thread that logs should wait for that.
    """

    def __init__(self, factory: Callable[[], EventSink], what: str, api: str) -> None:
        self._factory, self._what, self._api = factory, what, api
        self._real: EventSink | None = None
        self._error: Exception | None = None
        self._closed = False
        super().__init__()

    def _after_fork_in_child(self) -> None:
        """New locks (also the first): a build under way in the parent is made again here when
        needed; a flush the parent was draining is not the child's."""
        super()._after_fork_in_child()
        # held for an instant (never across a build): drain() and a build's end agree on the
        # rate; reentrant: drain() runs on a flushing caller's thread, a signal's flush too
        self._drain_lock = threading.RLock()
        self._draining = False

    def create(self, event: models.Event) -> models.Event:
        """Create ``event`` through the real sink."""
        return self._resolve().create(event)

    def update(self, event: models.Event) -> models.Event:
        """Replace ``event`` through the real sink."""
        return self._resolve().update(event)

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        """Patch ``event`` through the real sink."""
        return self._resolve().patch(event, data)

    def read(self, event: models.Event) -> models.Event:
        """Read the stored ``event`` through the real sink (``TypeError``: it cannot)."""
        return cast("models.Event", self._method("read", "events")(event))

    @property
    def api(self) -> str:
        """The configured API; with ``"auto"``, the real sink's (built first if need be)."""
        if self._api != "auto":
            return self._api
        try:
            real = self._resolve()
        except Exception:  # no client: nothing will be written, whichever the API
            return CORE_V1
        return str(getattr(real, "api", CORE_V1))

    @property
    def api_known(self) -> bool:
        """False while :attr:`api` would build the client (an ``exec`` plugin may run) or
        ask the server which API it serves."""
        if self._api != "auto" or self._error is not None or self._closed:
            return True
        real = self._real
        return real is not None and _apis.api_known(real)

    @property
    def imports_client(self) -> bool:
        """True while a write would still build the client: importing it and making its
        ``Configuration`` (which sets loggers) take logging's lock, even if already imported."""
        return self._real is None and self._error is None and not self._closed

    def drain(self, on: bool) -> None:
        """Switch the real sink's drain rate on or off (when it is built, if it is not yet)."""
        with self._drain_lock:
            self._draining = on
            _apis.call_optional(self._real, "drain", on)

    def read_pod_uid(self, namespace: str, name: str) -> str:
        """The real sink's :meth:`KubernetesEventSink.read_pod_uid` (``TypeError``: none)."""
        return str(self._method("read_pod_uid", "pods")(namespace, name))

    @property
    def credentials(self) -> str:
        """The real sink's credentials, described (never their value)."""
        return str(getattr(self._real, "credentials", "") or f"those of {self._what}")

    @property
    def host(self) -> str:
        """The real sink's API server URL (what the configuration names, until it is built)."""
        return str(getattr(self._real, "host", "") or self._what)

    @property
    def waiting_for_rate_limit(self) -> int:
        """Requests of the real sink waiting for its rate limit."""
        return int(getattr(self._real, "waiting_for_rate_limit", 0) or 0)

    def close(self) -> None:
        """Close the real sink, if it was built (a build still running closes it itself), and
        end its requests in flight: the handler that built it has given them up."""
        self._closed = True
        _apis.call_optional(self._real, "close")
        if isinstance(self._real, KubernetesEventSink):  # its writers end now, not at a timeout
            self._real._transport.interrupt()

    def _method(self, name: str, what: str) -> Callable[..., Any]:
        method: object = getattr(self._resolve(), name, None)
        if not callable(method):
            raise TypeError(f"{self._what}: this sink cannot read {what}")
        return method

    def _resolve(self) -> EventSink:
        real = self._real
        if real is not None:
            return real
        # a build may wait for a credential plugin: so does a write waiting for that build
        with _process.await_credentials(), self._lock:
            if self._real is None and self._error is None and not self._closed:
                self._build()
            if self._real is not None:
                return self._real
        if self._closed:
            raise ConnectionAbortedError("the event handler was closed")
        raise RequestConstructionError(f"no Kubernetes client: {self._error}")

    def _build(self) -> None:
        try:
            with _process.importing():
                # os.fork() waits: a child must not inherit a half-done import (its lock held)
                import kubernetes  # noqa: F401 - the import is the point
            with _official.plugin_may_run():  # an exec credential plugin
                built = self._factory()
        except Exception as error:  # a broken kubeconfig: say so once, then give up writes
            self._error = error
            _diagnostics.RateLimitedReporter().report(
                "build-client",
                logging.WARNING,
                "Unable to build a Kubernetes client from %s: %s; events go to no API server",
                self._what,
                error,
            )
            return
        with self._drain_lock:
            if self._draining:  # a flush began while the client was built
                _apis.call_optional(built, "drain", True)
            self._real = built
        if self._closed:  # close() ran while the client was being built
            _apis.call_optional(built, "close")


def sink_from_config(spec: Mapping[str, Any]) -> EventSink | None:
    """Build a sink from a ``{"()": factory, ...}`` dict, with dictConfig's own machinery."""
    import logging.config

    configurator = getattr(spec, "configurator", None)
    if not isinstance(configurator, logging.config.BaseConfigurator):
        configurator = logging.config.BaseConfigurator({})
    # indexed access converts ext:// and cfg:// values; a copy keeps the config intact
    built = configurator.configure_custom({key: spec[key] for key in spec})
    if not _continuation.is_event_sink(built):
        raise ValueError(f"the sink factory returned {type(built).__name__}, not an EventSink")
    return built
