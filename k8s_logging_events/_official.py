"""The official client's decisions, and the sink's two transports that follow them.

Under the sink's ``_transport`` (docs/architecture.md). The official client keeps what it
is good at (configuration, exec plugins, credential refresh, TLS settings, proxies);
:func:`channel_for` reads its decisions off its ``ApiClient``. Whatever the channel cannot
do exactly as the client would keeps the client's own path, :class:`ClientTransport`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from k8s_logging_events import _diagnostics, _http_parser, _process
from k8s_logging_events._errors import RequestConstructionError
from k8s_logging_events._http import Channel, TlsSettings
from k8s_logging_events._http_parser import Answer, ProtocolError

# what the official client may give its urllib3 pool (kubernetes/client/rest.py); any other
# option could change how a request is sent, so the official client then keeps the requests
_POOL_OPTIONS = frozenset(
    {
        "cert_reqs",
        "ca_certs",
        "ca_cert_data",
        "cert_file",
        "key_file",
        "assert_hostname",
        "server_hostname",
        "socket_options",
        "maxsize",
        "retries",
        "block",
    }
)
_POOL_LOCKS = ("mutex", "not_empty", "not_full", "all_tasks_done")  # a pool's queue's
# headers the channel writes itself, and so never takes from the client's default headers
_OWN_HEADERS = frozenset(
    {"host", "accept", "content-type", "content-length", "transfer-encoding", "connection"}
)


def channel_for(api_client: Any, timeout: float | tuple[float, float]) -> Channel | None:
    """A channel that connects as ``api_client``'s own urllib3 pool would (its options,
    URL, default headers and cookie); None where it could not exactly (a proxy, an
    ``assert_hostname`` name, an unknown pool option, an odd URL or header)."""
    import urllib3

    configuration = api_client.configuration
    pool_manager = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    # a ProxyManager (or SOCKS) is a subclass: only the plain pool connects directly (the
    # client's choice: a proxy that no_proxy bypasses for this server leaves the plain pool)
    if type(pool_manager) is not urllib3.PoolManager or pool_manager.headers:
        return None
    options: dict[str, Any] = dict(pool_manager.connection_pool_kw)
    socket_options = options.get("socket_options")
    address = _address(str(configuration.host))
    if (
        address is None
        or any(value is not None and key not in _POOL_OPTIONS for key, value in options.items())
        or not all(
            isinstance(option, tuple) and len(option) == 3 for option in socket_options or ()
        )
    ):
        return None
    scheme, host, port, host_header, prefix = address
    tls = _tls_settings(options, host) if scheme == "https" else None
    if scheme == "https" and tls is None:
        return None
    headers = [("Host", host_header), ("Accept", "application/json")]
    for name, value in dict(getattr(api_client, "default_headers", None) or {}).items():
        if str(name).lower() == "authorization":  # the credentials come per request
            return None
        if str(name).lower() not in _OWN_HEADERS:
            headers.append((str(name), str(value)))
    cookie = getattr(api_client, "cookie", None)
    if cookie:
        headers.append(("Cookie", str(cookie)))
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    try:
        return Channel(
            host,
            port,
            headers,
            prefix=prefix,
            connect_timeout=connect,
            read_timeout=read,
            tls=tls,
            socket_options=socket_options,
            credentials=lambda: credentials(api_client.configuration),  # as it is then
        )
    except ValueError:  # a header that cannot be sent: the official client says why
        return None


def _address(url: str) -> tuple[str, str, int, str, str] | None:
    """The scheme, host, port, ``Host`` header and path prefix of a server URL (None: odd)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or parts.query or parts.fragment:
        return None
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is no number
        return None
    prefix = parts.path.rstrip("/")
    if not host or parts.username or parts.password:
        return None
    # a path no request target carries (a space, non-ASCII): the official client encodes it
    if not f"{host}{prefix}".isascii() or any(map(str.isspace, prefix)):
        return None
    default = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    # as http.client writes it: the port only when it is not the scheme's own
    host_header = shown if port in (None, default) else f"{shown}:{port}"
    return scheme, host, port or default, host_header, prefix


def _tls_settings(options: dict[str, Any], host: str) -> TlsSettings | None:
    """urllib3's TLS decisions for the pool's options (None: one it cannot mirror)."""
    import ssl

    cert_reqs = options.get("cert_reqs")
    verify = cert_reqs in (None, ssl.CERT_REQUIRED, "CERT_REQUIRED", "REQUIRED")
    if not verify and cert_reqs not in (ssl.CERT_NONE, "CERT_NONE", "NONE"):
        return None
    assert_hostname = options.get("assert_hostname")
    if assert_hostname not in (None, False):
        return None  # a name other than the server's to match: urllib3's own matching
    name = str(options.get("server_hostname") or host).strip("[]")
    if "%" in name:  # an IPv6 zone: the ssl module would take it for a DNS name
        name = name[: name.rfind("%")]
    ca_data = options.get("ca_cert_data")
    files = [options.get(key) or None for key in ("ca_certs", "cert_file", "key_file")]
    kept = {}  # what the files hold now (one that cannot be read is left out)
    for path in filter(None, files):
        with contextlib.suppress(OSError), open(path, "rb") as file:
            kept[path] = file.read()
    return TlsSettings(
        server_hostname=name.rstrip("."),
        verify=verify,
        check_hostname=verify and assert_hostname is None,
        ca_file=files[0],
        ca_data=ca_data if isinstance(ca_data, str | bytes) and ca_data else None,
        cert_file=files[1],
        key_file=files[2],
        kept=kept,
    )


class ClientTransport:
    """A ``_transport.Transport``: the client's request building and urllib3 pool (proxies).

    The body goes as encoded, the same bytes as on the channel, and the credentials as the
    channel reads them (:func:`credentials`). As in the client, a single timeout is the
    whole request's, a pair is to connect and to read.
    """

    def __init__(self, api_client: Any, timeout: float | tuple[float, float]) -> None:
        self._api_client = api_client
        self._timeout = timeout

    def request(self, method: str, path: str, content_type: str, body: bytes) -> Answer:
        import urllib3

        # read as the channel reads them: a failure (a token file mid-rotation) is retried
        sent = credentials(self._api_client.configuration)
        try:
            _, url, headers, _, _ = self._api_client.param_serialize(
                method=method,
                resource_path=path,
                header_params={"Content-Type": content_type, "Accept": "application/json"},
            )
        except Exception as error:  # retrying cannot help
            raise RequestConstructionError(f"cannot build {method} {path}: {error}") from error
        headers.update(sent)
        # a flush writing on its own thread keeps its deadline here too (requests_end_by):
        # the client's own timeout alone held the exit up to request_timeout past it
        left = _process.request_seconds(math.inf)  # inf: no flush's deadline on this thread
        if isinstance(self._timeout, tuple):
            total = None if left == math.inf else left
            timeout = urllib3.Timeout(connect=self._timeout[0], read=self._timeout[1], total=total)
        else:
            timeout = urllib3.Timeout(total=min(self._timeout, left))
        # no retries of urllib3's, whatever the client's configuration says: the writer's only
        response = self._api_client.rest_client.pool_manager.request(
            method,
            url,
            body=body or None,
            headers=headers,
            timeout=timeout,
            retries=False,
            preload_content=False,
        )
        try:
            if response.status < 200:  # http.client skips 100 Continue alone: not the answer
                response.close()  # the real one, unread, must not meet the next request
                raise ProtocolError(
                    f"an interim answer, {response.status}, where {method} {path}'s answer "
                    "was expected: the request may have been carried out"
                )
            # no more than the channel reads: a proxy's endless page must not fill the memory
            data = response.read(_http_parser.MAX_BODY + 1)
            if len(data) > _http_parser.MAX_BODY:
                response.close()  # the rest unread: the connection cannot carry another
                raise ProtocolError(f"an answer of more than {_http_parser.MAX_BODY} bytes")
        finally:
            response.release_conn()
        names = response.headers  # a repeated header's values joined by ", ", as the channel
        answer_headers = {str(name).lower(): str(names[name]) for name in names}
        return Answer(response.status, response.reason or "", answer_headers, data)

    def distrust(self) -> None:
        """Nothing to do: urllib3 checks a connection for bytes before each reuse."""

    def close(self) -> None:
        """Nothing to close: the pool is the client's (the sink closes a client it made)."""

    def interrupt(self) -> None:
        """Nothing: urllib3 keeps the connections it lends out of reach (each ends at its
        request's timeout)."""

    def forget_after_fork(self) -> None:
        """Nothing here: the sink lets go of its client's pool (:func:`forget_pool_after_fork`)."""


def credentials(configuration: Any) -> list[tuple[str, str]]:
    """The credential headers of ``configuration``, read now: a refresh hook runs here."""
    if getattr(configuration, "refresh_api_key_hook", None) is None:
        settings = configuration.auth_settings()
    else:  # it may run an exec credential plugin
        with plugin_may_run():
            settings = configuration.auth_settings()
    # a token file's line break is kept by the client's in-cluster loader; client-go trims it
    return [
        (str(auth["key"]), str(auth["value"]).strip())
        for auth in settings.values()
        if auth.get("in") == "header" and auth.get("value")
    ]


@contextlib.contextmanager
def plugin_may_run() -> Iterator[None]:
    """Around what may run a kubeconfig ``exec`` credential plugin: building a client, or
    reading its credentials (an expired token runs the plugin again).

    The plugin gets a clean signal mask (:func:`_process.subprocesses_may_start`). The
    client reports a plugin that failed with the ``logging`` module's own ``error()``, which
    configures the application's root logger when it has no handler (``basicConfig``, under
    the lock ``dictConfig`` holds): on the library's threads that report is the library's.
    """
    kube_config: Any = sys.modules.get("kubernetes.config.kube_config")
    if kube_config is not None and getattr(kube_config, "logging", None) is logging:
        kube_config.logging = _ClientLogging()
    with _process.subprocesses_may_start():
        yield


class _ClientLogging:
    """The ``logging`` module as the client's kubeconfig loader sees it: the module itself,
    but for ``error()`` on one of the library's threads."""

    def __getattr__(self, name: str) -> Any:
        return getattr(logging, name)

    @staticmethod
    def error(msg: object, *args: object, **kwargs: Any) -> None:
        if not _diagnostics.is_own_thread():
            # as the client would, its caller's file and line in the record, not this one's
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            logging.error(msg, *args, **kwargs)  # noqa: LOG015
            return
        # a plugin that keeps failing fails at every credential read: once a minute is enough
        _CLIENT_ERRORS.report("client-error", logging.ERROR, f"Kubernetes client: {msg}", *args)


_CLIENT_ERRORS = _diagnostics.RateLimitedReporter()


def summarise_client_errors() -> None:
    """Write what the limit on the client's errors held back (at a flush's end, a close's)."""
    _CLIENT_ERRORS.summarise()


def forget_pool_after_fork(api_client: Any) -> None:
    """In a child after ``os.fork()``: close the child's copies of the client's connections.

    A parent's thread may have held the pool's locks at the fork: they are made anew first
    (as CPython does its own), or closing the pool would wait forever.
    """
    pool_manager: Any = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    pools = getattr(pool_manager, "pools", None)
    if pool_manager is None or pools is None:
        return
    with contextlib.suppress(Exception):
        locks = [getattr(pools, "lock", None)]
        for pool in list(getattr(pools, "_container", {}).values()):
            idle = getattr(pool, "pool", None)
            locks += [getattr(idle, name, None) for name in _POOL_LOCKS]
        for lock in locks:  # a Lock, RLock or Condition
            reinit = getattr(lock, "_at_fork_reinit", None)
            if callable(reinit):
                reinit()
        pool_manager.clear()
