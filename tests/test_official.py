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
import ssl
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from urllib3.exceptions import InsecureRequestWarning

from k8s_logging_events import _official
from k8s_logging_events.testing import LocalApiServer

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
                _one_request(_official.ChannelTransport(api_client, channel))
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
