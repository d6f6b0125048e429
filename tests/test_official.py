"""The official client's decisions, mirrored by the sink's channel (``_official``).

The channel builds its TLS contexts itself (``_http.TlsSettings.context``), copying what
urllib3 does for the official client's pool: the minimum TLS version, the options, the
verification flags and mode, the hostname check, the ciphers, post-handshake
authentication, the CAs, the key log. These tests make both connect to the local API server
over TLS, with the same client configuration, and compare the two contexts that were
actually used (and the name sent in SNI), so that an upgrade of urllib3 (or of Python's
``ssl``) that changes a default fails here, saying what changed, instead of the channel
quietly connecting otherwise than the client would.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from urllib3.exceptions import InsecureRequestWarning

from k8s_logging_events import _diagnostics, _http, _http_parser, _official, _process, models, sink
from k8s_logging_events.testing import LocalApiServer
from tests._children import run_python
from tests._ports import refused_url

JSON = "application/json"


def _fingerprint(context: ssl.SSLContext, server_hostname: object) -> dict[str, Any]:
    """Everything a client context decides that the ``ssl`` module lets one read."""
    return {
        "protocol": context.protocol,
        "minimum_version": context.minimum_version,
        "maximum_version": context.maximum_version,
        "options": context.options,
        "verify_mode": context.verify_mode,
        "verify_flags": context.verify_flags,
        "check_hostname": context.check_hostname,
        "hostname_checks_common_name": context.hostname_checks_common_name,
        "post_handshake_auth": context.post_handshake_auth,
        "security_level": context.security_level,
        "ciphers": [cipher["name"] for cipher in context.get_ciphers()],
        "cert_store_stats": context.cert_store_stats(),
        "ca_certs": context.get_ca_certs(),
        "keylog_filename": context.keylog_filename,
        "server_hostname": server_hostname,
    }


@contextlib.contextmanager
def _contexts_used() -> Iterator[list[dict[str, Any]]]:
    """Record the client contexts that wrap a socket (the server's own are left out)."""
    seen: list[dict[str, Any]] = []
    wrap = ssl.SSLContext.wrap_socket

    def recording(self: ssl.SSLContext, sock: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("server_side"):
            seen.append(_fingerprint(self, kwargs.get("server_hostname")))
        return wrap(self, sock, *args, **kwargs)

    ssl.SSLContext.wrap_socket = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        ssl.SSLContext.wrap_socket = wrap  # type: ignore[method-assign]


def _one_request(transport: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)  # the no-verify case
        with contextlib.suppress(Exception):  # a refused certificate: the context was made
            transport.request("GET", "/api", JSON, b"")


def _write_one_and_close(events_sink: sink.KubernetesEventSink) -> None:
    """Create the event ``default/web-0.1`` about the pod ``web-0``, then close the sink."""
    ref = models.ObjectReference(kind="Pod", namespace="default", name="web-0")
    try:
        events_sink.create(models.Event(name="web-0.1", namespace="default", involved_object=ref))
    finally:
        events_sink.close()


def _configure(server: LocalApiServer, setting: str, tmp_path: Path) -> Any:
    configuration = server.api_client().configuration
    if setting == "ca-data":
        configuration.ca_cert_data = Path(configuration.ssl_ca_cert).read_text()
        configuration.ssl_ca_cert = None
    elif setting == "no-verify":
        configuration.verify_ssl = False
    elif setting == "server-name":
        configuration.tls_server_name = "localhost"
    elif setting == "no-hostname-check":
        configuration.tls_server_name = "elsewhere.example"
        configuration.assert_hostname = False
    elif setting == "system-cas":
        configuration.ssl_ca_cert = None
    return configuration


@pytest.mark.parametrize(
    "setting",
    [
        "ca-file",
        "ca-data",
        "no-verify",
        "server-name",
        "no-hostname-check",
        "system-cas",
        "client-certificate",
        "key-log",
    ],
)
def test_the_channel_builds_the_tls_context_urllib3_builds(
    setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For each client configuration, the channel's context and SNI name are urllib3's."""
    if setting == "key-log":
        monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "keys.log"))
    with LocalApiServer(tls=True, client_certificates=setting == "client-certificate") as server:
        api_client = client.ApiClient(_configure(server, setting, tmp_path))
        channel = _official.channel_for(api_client, 5.0)
        assert channel is not None, "the channel does not mirror this configuration"
        try:
            with _contexts_used() as official:
                _one_request(_official.ClientTransport(api_client, 5.0))
            with _contexts_used() as lean:
                _one_request(channel)
        finally:
            channel.close()
            api_client.close()
    assert len(official) == len(lean) == 1
    changed = {
        key: {"urllib3": value, "channel": lean[0][key]}
        for key, value in official[0].items()
        if lean[0][key] != value
    }
    if changed:
        pytest.fail(
            f"urllib3 {version('urllib3')} ({ssl.OPENSSL_VERSION}) now builds the "
            f"official client's TLS context otherwise than the sink's channel does, for "
            f"{setting!r}: {changed}. Mirror the change in _http.TlsSettings.context "
            "(or _official._tls_settings), or keep such clients on the official path."
        )


def test_the_comparison_sees_a_difference() -> None:
    """A context that differs in one setting is told apart (the check above can fail)."""
    first = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    second = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    second.minimum_version = ssl.TLSVersion.TLSv1_3
    assert _fingerprint(first, "a") != _fingerprint(second, "a")
    assert _fingerprint(first, "a") == _fingerprint(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), "a")


@pytest.mark.parametrize("path", ["/a b", "/caf\u00e9"])
def test_a_server_url_whose_path_is_no_request_target_is_given_up_at_once(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen before the fix: a sink URL whose path holds a space or a non-ASCII character (a
    mistyped proxy prefix) made every write fail on the channel with "cannot be a request
    target", retried 12 times (with the default 10 s sleeps, two minutes an event) for an
    error no retry mends. The channel leaves such a URL to the official client, which sends
    it encoded: the server's 404 is given up at once, saying the URL is not the API server's."""
    from k8s_logging_events import KubernetesEventHandler

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop"}}
    with LocalApiServer(auto_create_namespaces=True) as server:
        handler = KubernetesEventHandler(sink=server.url + path, sleep_duration=0)
        try:
            handler.handle(logging.makeLogRecord({"msg": "m", "levelno": 30, "involved": pod}))
        finally:
            handler.close()
        posts = [r for r in server.requests if r.method == "POST"]
    assert (len(posts), handler.stats()["failed"]) == (1, 1)
    assert "not a Kubernetes API server" in caplog.text


def test_the_clients_own_path_leaves_every_retry_to_the_writer() -> None:
    """On the official client's path (behind a proxy), urllib3 never retries by itself, not
    even for a given client whose configuration leaves its retries on (the client's
    default): a PUT whose connection breaks is sent once, as on the channel, and the writer
    alone decides whether to try again."""
    with LocalApiServer() as server:
        configuration = server.api_client().configuration
        configuration.retries = None  # the official client's default
        api_client = client.ApiClient(configuration)
        transport = _official.ClientTransport(api_client, 5.0)
        fault = server.inject("PUT", action="drop", times=None)
        try:
            with pytest.raises(Exception):  # noqa: B017, PT011 - any transport error
                transport.request("PUT", "/api/v1/namespaces/default/events/web-0.1", JSON, b"{}")
        finally:
            api_client.close()
    assert fault.fired == 1


def test_tls_material_from_a_kubeconfig_s_data_outlives_the_clients_cleanup_at_exit(
    tmp_path: Path,
) -> None:
    """The official client writes a kubeconfig's ``certificate-authority-data`` and
    ``client-certificate-data``/``client-key-data`` to temporary files, and deletes them in
    an ``atexit`` function registered when it loads the kubeconfig: it runs before
    ``logging.shutdown()`` flushes the handler. Each connection that flush opened failed
    (``cannot load the CA certificates``), and the events written at exit were lost; a
    forked child that ends normally (a gunicorn worker) runs that clean-up too, and the
    parent then lost every event a new connection carried. The
    channel keeps what the files held when it was made, for files deleted since (here for
    a client the application loaded itself; a sink's own holds the CA in memory)."""
    from kubernetes import config
    from kubernetes.config import kube_config

    with LocalApiServer(tls=True, client_certificates=True) as server:
        path = tmp_path / "kubeconfig"
        server.kubeconfig(path, client_certificate=server.client_certificate("alice"))
        configuration = client.Configuration()
        config.load_kube_config(str(path), client_configuration=configuration)
        events_sink = sink.KubernetesEventSink(client.ApiClient(configuration), qps=0)
        transport = events_sink._transport
        try:
            assert isinstance(transport, _http.Channel)
            files = [configuration.ssl_ca_cert, configuration.cert_file, configuration.key_file]
            assert set(files) <= set(kube_config._temp_files.values())
            assert all(files)
            for file in files:  # as the client's clean-up at exit does
                Path(str(file)).unlink()
            answer = transport.request("GET", "/api/v1/namespaces/default", JSON, b"")
        finally:
            events_sink.close()
            events_sink.api_client.close()
        assert answer.status == 200  # the certificate authenticated the request
        assert transport.connections_opened == 1


def test_a_kubeconfig_s_certificate_authority_data_outlives_the_clean_up_on_the_clients_path(
    tmp_path: Path,
) -> None:
    """The same on the official client's path (a proxy: ``proxy-url``, ``HTTPS_PROXY``),
    whose urllib3 pool read the CA file the client wrote at each new connection: the sink's
    own client holds a kubeconfig's ``certificate-authority-data`` in memory."""
    from kubernetes.config import kube_config

    with LocalApiServer(tls=True, token="s3cret") as server:
        path = tmp_path / "kubeconfig"
        server.kubeconfig(path)
        before = set(kube_config._temp_files.values())
        events_sink = sink.KubernetesEventSink(kubeconfig=str(path), qps=0)
        transport = _official.ClientTransport(events_sink.api_client, 5.0)
        try:
            for file in set(kube_config._temp_files.values()) - before:
                Path(file).unlink()  # as the client's clean-up at exit does
            answer = transport.request("GET", "/api/v1/namespaces/default", JSON, b"")
        finally:
            events_sink.close()
        assert answer.status == 200


class _ConnectProxy:
    """A forward proxy that tunnels each ``CONNECT`` to where it names, as a corporate
    proxy does for HTTPS; it counts the tunnels it opened."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.tunnels = 0
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                downstream, _ = self._listener.accept()
                thread = threading.Thread(target=self._tunnel, args=(downstream,), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _tunnel(self, downstream: socket.socket) -> None:
        with contextlib.suppress(OSError), downstream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += downstream.recv(4096) or b"\r\n\r\n"
            host, _, port = head.split()[1].decode().rpartition(":")
            with socket.create_connection((host, int(port)), timeout=10) as upstream:
                self.tunnels += 1
                downstream.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                back = threading.Thread(target=self._pipe, args=(upstream, downstream))
                back.start()
                self._pipe(downstream, upstream)
                back.join(10)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting (a shut down listener wakes ``accept``), and wait for the tunnels,
        which end as their client closes its connections."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for thread in self._threads:
            thread.join(10)


def test_a_kubeconfig_s_client_certificate_data_outlives_the_clean_up_behind_a_proxy(
    tmp_path: Path,
) -> None:
    """Behind a proxy (a cluster's ``proxy-url``), the sink's own client sends on the
    official client's path, whose urllib3 pool loads the client certificate and key from
    the files the client wrote for ``client-certificate-data``/``client-key-data`` at each
    new connection. The client deletes them at exit before ``logging.shutdown()`` flushes
    the handler (a forked child that ends normally, too): every connection of the exit
    flush failed (``No such file or directory``) and its events were lost. The sink's own
    client holds the certificate and key in memory, as it does the CA."""
    from kubernetes.config import kube_config

    proxy = _ConnectProxy()
    with LocalApiServer(tls=True, client_certificates=True) as server:
        path = tmp_path / "kubeconfig"
        text = json.loads(server.kubeconfig(client_certificate=server.client_certificate("a")))
        text["clusters"][0]["cluster"]["proxy-url"] = proxy.url
        path.write_text(json.dumps(text))
        before = set(kube_config._temp_files.values())
        events_sink = sink.KubernetesEventSink(kubeconfig=str(path), qps=0)
        try:
            assert isinstance(events_sink._transport, _official.ClientTransport)
            for file in set(kube_config._temp_files.values()) - before:
                Path(file).unlink()  # as the client's clean-up at exit does
            answer = events_sink._transport.request("GET", "/api/v1/namespaces/default", JSON, b"")
        finally:
            events_sink.close()
            proxy.close()
        assert answer.status == 200  # the certificate authenticated the request
        assert proxy.tunnels == 1


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*"])
def test_a_kubeconfig_s_proxy_url_carries_the_writes_whatever_no_proxy_says(
    no_proxy, monkeypatch, tmp_path: Path
) -> None:
    """A cluster reached through its kubeconfig's ``proxy-url`` (a bastion's proxy), on a
    machine whose ``NO_PROXY`` names the cluster's addresses (10.0.0.0/8, as corporate
    settings do): kubectl's transport takes ``proxy-url`` for every request and reads no
    ``NO_PROXY``, but the sink's client let ``NO_PROXY`` bypass it and wrote to the server
    directly, which only the proxy can reach. The write goes through the proxy."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    proxy = _ConnectProxy()
    with LocalApiServer(tls=True, token="s3cret") as server:
        text = json.loads(server.kubeconfig())
        text["clusters"][0]["cluster"]["proxy-url"] = proxy.url
        (tmp_path / "kubeconfig").write_text(json.dumps(text))
        events_sink = sink.KubernetesEventSink(kubeconfig=str(tmp_path / "kubeconfig"), qps=0)
        try:
            _write_one_and_close(events_sink)
        finally:
            proxy.close()
        assert proxy.tunnels == 1
        assert [event["metadata"]["name"] for event in server.events("default")] == ["web-0.1"]


class _Oversized:
    """A raw server that answers every request 201 with a body of ``size`` spaces, and
    counts the bytes it could send before the client went away."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="test-oversized", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError), self._listener.accept()[0] as conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % self.size)
            chunk = b" " * 65536
            while self.sent < self.size:
                conn.sendall(chunk)
                self.sent += len(chunk)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):  # the rest of the request: unread, the close would reset
                pass

    def close(self) -> None:
        self._listener.close()
        self._thread.join(10)


@pytest.mark.parametrize("path", ["channel", "official"])
def test_an_oversized_answer_is_refused_alike_and_never_read_whole(path, monkeypatch) -> None:
    """An answer larger than the parser's limit (a proxy's or a broken server's): the channel
    refused it, but the official client's path (behind a proxy) read it whole into memory,
    300 MB of it, before failing to decode it. Both refuse it as a transport error, having
    read no more than the limit (the limit is made 1 MiB here, the body 48 MiB)."""
    monkeypatch.setattr(_http_parser, "MAX_BODY", 1024 * 1024)
    server = _Oversized(48 * 1024 * 1024)
    events_sink = sink.KubernetesEventSink.from_url(server.url, qps=0, request_timeout=10)
    if path == "official":
        events_sink._transport = _official.ClientTransport(events_sink.api_client, 10)
    ref = models.ObjectReference(kind="Pod", namespace="default", name="web-0", api_version="v1")
    event = models.Event(name="web-0.1", namespace="default", involved_object=ref, reason="R")
    try:
        with pytest.raises(_http_parser.ProtocolError, match="more than 1048576"):
            events_sink.create(event)
    finally:
        events_sink.close()
        server.close()
    assert server.sent < server.size


@pytest.mark.parametrize("origin", ["url", "kubeconfig"])
@pytest.mark.parametrize("path", ["channel", "official"])
@pytest.mark.parametrize("no_proxy", ["127.0.0.1", None])
def test_a_loopback_server_is_reached_directly_with_a_proxy_in_the_environment(
    no_proxy, path, origin, monkeypatch, tmp_path
) -> None:
    """``HTTP_PROXY`` names a corporate proxy (here a closed port) and the API server is on
    the loopback interface (``kubectl proxy``, or a kubeconfig's local cluster): the sink
    writes to it directly, on its own channel or on the client's path, with a ``NO_PROXY``
    that names it or with none, as kubectl does (Go's transport never sends loopback
    through the environment's proxy). Without ``NO_PROXY``, every write went to the proxy,
    and failed."""
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    if no_proxy is not None:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    with refused_url() as proxy, LocalApiServer() as server:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        if origin == "url":
            events_sink = sink.KubernetesEventSink.from_url(server.url, qps=0)
        else:
            server.kubeconfig(tmp_path / "config")
            events_sink = sink.KubernetesEventSink(kubeconfig=str(tmp_path / "config"), qps=0)
        assert isinstance(events_sink._transport, _http.Channel)
        if path == "official":
            events_sink._transport = _official.ClientTransport(events_sink.api_client, 5.0)
        _write_one_and_close(events_sink)


@pytest.mark.parametrize(
    ("url", "pool"),
    [
        ("http://localhost:8001", "PoolManager"),
        ("http://[::1]:8001", "PoolManager"),
        ("http://127.0.0.2:8001", "PoolManager"),
        ("http://[::ffff:127.0.0.1]:8001", "PoolManager"),
        ("http://localhost.:8001", "ProxyManager"),
        ("http://192.0.2.1:8001", "ProxyManager"),
    ],
)
def test_only_a_loopback_server_bypasses_the_environments_proxy(url, pool, monkeypatch) -> None:
    """Go's rule: ``localhost`` and every loopback address (127.0.0.0/8, ::1, and 127.0.0.1
    written as IPv6, ``::ffff:127.0.0.1``, which went through the proxy: Python's
    ``is_loopback`` says it is none before 3.13); any other server, ``localhost.`` too, goes
    through ``HTTP_PROXY`` unless ``NO_PROXY`` names it (and a kubeconfig's ``proxy-url``
    applies to a loopback server too, as in Go: the client certificate test above tunnels
    through one)."""
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # never reached
    events_sink = sink.KubernetesEventSink.from_url(url, qps=0)
    events_sink.close()
    assert type(events_sink.api_client.rest_client.pool_manager).__name__ == pool


@pytest.mark.parametrize("proxy", ["http://127.0.0.1:9", "socks5://127.0.0.1:9"])
def test_all_proxy_alone_is_no_proxy_for_the_api_server(proxy, monkeypatch) -> None:
    """``ALL_PROXY`` set (a desktop's SOCKS tunnel, for other programs) and neither
    ``HTTPS_PROXY`` nor ``HTTP_PROXY``: Go's transport (kubectl's) never reads it and
    connects directly, but the client fell back on it: a SOCKS one failed the client's
    build (``No module named 'socks'``: every event lost), an http one took the writes
    through a proxy kubectl never uses. The sink connects directly, as kubectl."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.setenv("ALL_PROXY", proxy)
    events_sink = sink.KubernetesEventSink.from_url("https://192.0.2.1:6443", qps=0)
    events_sink.close()
    assert type(events_sink.api_client.rest_client.pool_manager).__name__ == "PoolManager"


@pytest.mark.parametrize("origin", ["url", "kubeconfig"])
def test_an_environment_proxy_without_a_scheme_is_an_http_proxy(
    origin, monkeypatch, tmp_path: Path
) -> None:
    """``HTTPS_PROXY=proxy.corp:3128``, as many machines set it: Go's transport (kubectl's)
    and curl take it for ``http://proxy.corp:3128``, but urllib3 refused it ("Proxy URL had
    no scheme"), so the sink's client was never built and every event was lost. It is the
    http proxy Go makes of it."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "127.0.0.1:9")  # never reached
    if origin == "url":
        events_sink = sink.KubernetesEventSink.from_url("https://192.0.2.1:6443", qps=0)
    else:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "https://192.0.2.1:6443"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
        (tmp_path / "config").write_text(json.dumps(config))
        events_sink = sink.KubernetesEventSink(kubeconfig=str(tmp_path / "config"), qps=0)
    events_sink.close()
    proxy = events_sink.api_client.rest_client.pool_manager.proxy
    assert proxy is not None
    assert proxy.url == "http://127.0.0.1:9"


_FAILING_PLUGIN = """#!{python}
# an exec credential plugin: a token (already expired, so that the next request runs the
# plugin again) until its {fail_at}th run, which prints what is no ExecCredential
import json, pathlib

runs = pathlib.Path(__file__).parent / "runs"
run = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(run))
if run >= {fail_at}:
    print("Please log in with: cloud auth login")
else:
    status = {{"token": "from-plugin", "expirationTimestamp": "2000-01-01T00:00:00Z"}}
    kind = {{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential"}}
    print(json.dumps({{**kind, "status": status}}))
"""

_APPLICATION = """
import logging, sys
from k8s_logging_events import KubernetesEventHandler

# a loaded machine may take more than the default 5 s to build the client and run the plugin;
# one try: the flush ends once the plugin has failed, not at its deadline (no retry can succeed)
handler = KubernetesEventHandler(
    component="app", sink="auto", kubeconfig=sys.argv[1], flush_timeout=30, max_tries=1
)
log = logging.getLogger("app")  # the application configures its own logger, not the root
log.addHandler(handler)
log.warning("Back-off", extra={"involved": {"kind": "Pod", "name": "web-0"}, "reason": "BackOff"})
handler.flush()
print("root handlers:", len(logging.getLogger().handlers))
logging.basicConfig(format="app-format %(message)s")  # the application's own, later
logging.getLogger("other").warning("the application's warning")
handler.close()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "fail_at", [1, 2], ids=["while-the-client-is-built", "while-a-token-is-refreshed"]
)
def test_a_failing_exec_plugin_leaves_the_applications_root_logger_alone(
    tmp_path: Path, fail_at: int
) -> None:
    """A kubeconfig ``exec`` plugin that prints something else than an ExecCredential (or
    fails) is reported by the client through ``logging.error()``, which, with no handler on
    the root logger, runs ``basicConfig()``. Run on the library's thread, that configured the
    application's root logger: its records went to standard error in logging's default
    format, and the application's own ``basicConfig()`` later did nothing. The failure is now
    the library's report, and the root logger stays the application's."""
    import yaml

    plugin = tmp_path / "plugin.py"
    plugin.write_text(_FAILING_PLUGIN.format(python=sys.executable, fail_at=fail_at))
    plugin.chmod(0o755)
    with LocalApiServer() as server:
        config = yaml.safe_load(server.kubeconfig(credentials=False))
        config["users"][0]["user"] = {
            "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
        }
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        done = run_python(_APPLICATION, str(kubeconfig), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "root handlers: 0" in done.stdout
    assert "app-format the application's warning" in done.stderr
    assert "ERROR:root:" not in done.stderr
    assert "k8s_logging_events: Kubernetes client: exec: failed to decode" in done.stderr


def test_the_clients_error_on_an_application_thread_keeps_its_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the library has stood in for ``logging`` in the client's kubeconfig loader, the
    application's own use of that loader is unchanged: its ``error()`` on an application
    thread is a record on the root logger, as before, whose file, function and line are
    the caller's (a format with ``%(filename)s`` showed the library's module instead)."""
    from kubernetes.config import kube_config

    with _official.plugin_may_run():
        pass
    stand_in: Any = getattr(kube_config, "logging")  # noqa: B009 - not exported
    with caplog.at_level(logging.ERROR):
        stand_in.error("exec: %s", "failed")
        line = sys._getframe().f_lineno - 1
    (record,) = [r for r in caplog.records if r.getMessage() == "exec: failed"]
    assert record.name == "root"
    assert (record.filename, record.funcName, record.lineno) == (
        "test_official.py",
        "test_the_clients_error_on_an_application_thread_keeps_its_caller",
        line,
    )


def test_the_clients_errors_on_a_library_thread_are_rate_limited(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exec plugin that keeps failing fails at every credential read, and the client
    says so each time: on the library's threads those lines are one report a minute, as
    every other report of the library, not one per write and retry. The limit is the
    process's: a reporter of the test's own, so that no earlier test's plugin error (within
    the minute) holds this one back, and none of this test's holds a later one back."""
    from kubernetes.config import kube_config

    monkeypatch.setattr(_official, "_CLIENT_ERRORS", _diagnostics.RateLimitedReporter())

    with _official.plugin_may_run():
        pass
    stand_in: Any = getattr(kube_config, "logging")  # noqa: B009 - not exported

    def library_thread() -> None:
        _diagnostics.become_own_thread()
        for _ in range(5):
            stand_in.error("exec: %s", "failed")

    with caplog.at_level(logging.ERROR, logger=_diagnostics.LOGGER_NAME):
        thread = threading.Thread(target=library_thread, name="test-writer")
        thread.start()
        thread.join(10)
    said = [r.getMessage() for r in caplog.records if "exec: failed" in r.getMessage()]
    assert said == ["Kubernetes client: exec: failed"], said


@pytest.mark.parametrize("front_door", ["handler", "recorder"])
def test_what_the_limit_on_the_clients_errors_held_back_is_said_at_flush_and_close(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, front_door: str
) -> None:
    """What the limit on the client's errors held back (a plugin failing at every write and
    retry of a short program) is summarised at every flush and at the close, as every other
    limit of the library: never left to a next error the program may not live to make. For
    the logging handler and for a program that uses client-go's recorder API alone."""
    from kubernetes.config import kube_config

    from k8s_logging_events.handler import KubernetesEventHandler
    from k8s_logging_events.recorder import EventBroadcaster
    from k8s_logging_events.testing import FakeEventSink

    monkeypatch.setattr(_official, "_CLIENT_ERRORS", _diagnostics.RateLimitedReporter())
    with _official.plugin_may_run():
        pass
    stand_in: Any = getattr(kube_config, "logging")  # noqa: B009 - not exported

    def fail(times: int) -> None:
        def library_thread() -> None:
            _diagnostics.become_own_thread()
            for _ in range(times):
                stand_in.error("exec: %s", "failed")

        thread = threading.Thread(target=library_thread, name="test-writer")
        thread.start()
        thread.join(10)

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "exec: failed" in r.getMessage()]

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"}}
    flush: Callable[[], object]
    close: Callable[[], object]
    if front_door == "handler":
        event_handler = KubernetesEventHandler(component="c", host="h", sink=FakeEventSink())
        log = logging.getLogger("test_official.held_back")
        log.propagate = False
        log.addHandler(event_handler)
        log.warning("the plugin failed to give its credentials", extra={"involved": pod})
        flush, close = event_handler.flush, event_handler.close

        def restore() -> None:
            log.removeHandler(event_handler)
            log.propagate = True
            event_handler.close()
    else:
        events = EventBroadcaster()
        events.start_recording_to_sink(FakeEventSink())
        events.new_recorder("c").event(pod, "Warning", "NoCredentials", "the plugin failed")
        flush, close, restore = events.flush, events.shutdown, events.shutdown
    try:
        with caplog.at_level(logging.ERROR, logger=_diagnostics.LOGGER_NAME):
            fail(5)
            flush()
            assert said()[1:] == [
                "Kubernetes client: exec: failed [4 report(s) like this since the last one]"
            ]
            fail(3)
            close()
            assert said()[2:] == [
                "Kubernetes client: exec: failed [3 report(s) like this since the last one]"
            ]
    finally:
        restore()


@pytest.mark.parametrize("timeout", [10.0, (10.0, 10.0)])
def test_the_official_path_ends_a_request_by_the_flushs_deadline(timeout) -> None:
    """A flush that writes on its own thread (no writer can start: Python 3.12 at exit)
    bounds its requests by its deadline (``_process.requests_end_by``). The channel did; on
    the official client's path (a proxy) a server that never answered held the exit for the
    whole ``request_timeout`` (10 s here) past a 1 s ``flush_timeout``."""
    with LocalApiServer() as server:
        server.inject("GET", path="/namespaces/default$", times=None, action="hang")
        events_sink = sink.KubernetesEventSink.from_url(server.url, qps=0)
        transport = _official.ClientTransport(events_sink.api_client, timeout)
        started = time.monotonic()
        try:
            with (
                _process.requests_end_by(started + 0.5),
                pytest.raises(Exception, match="timed out"),
            ):
                transport.request("GET", "/api/v1/namespaces/default", JSON, b"")
        finally:
            events_sink.close()
        assert time.monotonic() - started < 3
