"""LocalApiServer over HTTPS with credentials: a CA to trust, bearer tokens, client certificates.

What a cluster asks of a client, through the official client, ``load_kube_config`` and
``kubectl``: trust the cluster's CA, and bring a token or a client certificate on every
request, or get the real server's ``401 Unauthorized`` Status.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from k8s_logging_events.testing import LocalApiServer
from k8s_logging_events.testing.apiserver._http import JOIN_TIMEOUT
from tests._api import apiserver_command, failure

UNAUTHORIZED = failure(401, "Unauthorized", "Unauthorized")


def event(name: str) -> Any:
    """A core/v1 event body."""
    return {
        "metadata": {"name": name},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Started",
        "message": "Started container web",
        "type": "Normal",
    }


@pytest.fixture
def secured() -> Any:
    """An HTTPS server that wants the bearer token ``s3cret``."""
    with LocalApiServer(tls=True, token="s3cret") as server:
        yield server


def test_https_with_the_ca_and_token_works(secured):
    """api_client() trusts the server's CA and sends its token: writes and reads succeed."""
    assert secured.url.startswith("https://127.0.0.1:")
    assert secured.ca_pem is not None
    assert secured.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    with secured.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_event("default", event("e1"))
        assert [e.metadata.name for e in core.list_namespaced_event("default").items] == ["e1"]
    sent = {name.lower(): value for name, value in secured.requests[0].headers.items()}
    assert sent["authorization"] == "Bearer s3cret"


def test_a_client_that_does_not_trust_the_ca_fails_the_handshake(secured):
    """Without the CA the certificate does not verify, as with a real cluster."""
    configuration = client.Configuration(host=secured.url)
    configuration.retries = False
    with (
        client.ApiClient(configuration) as api_client,
        pytest.raises((urllib3.exceptions.SSLError, ApiException)) as error,
    ):
        client.CoreV1Api(api_client).list_namespaced_event("default")
    assert "CERTIFICATE_VERIFY_FAILED" in str(error.value)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0"])
def test_requests_without_the_token_get_the_real_401_status(secured, authorization):
    """No token, a wrong one, another scheme: 401 with the real server's Status body."""
    with secured.api_client(credentials=False) as api_client:
        headers = {"Accept": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        params = api_client.param_serialize(
            "GET", "/api/v1/namespaces/default/events", header_params=headers
        )
        response = api_client.call_api(*params)
        response.read()
    assert response.status == 401
    assert json.loads(response.data) == UNAUTHORIZED


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("bearer s3cret", 200),  # the scheme's case does not matter
        ("Bearer  s3cret", 401),  # a second space leaves the token empty
        ("Bearer s3cret trailing", 200),  # only the second word is the token
        ("Bearer ", 401),
    ],
)
def test_the_bearer_header_is_split_as_kube_apiserver_splits_it(secured, authorization, status):
    """The token is the second of at most three space-separated parts, as in the real server's
    bearer token authenticator: a header a cluster refuses is refused here too."""
    with secured.api_client(credentials=False) as api_client:
        headers = {"Accept": "application/json", "Authorization": authorization}
        params = api_client.param_serialize(
            "GET", "/api/v1/namespaces/default/events", header_params=headers
        )
        response = api_client.call_api(*params)
        response.read()
    assert response.status == status


def test_kubeconfig_works_with_load_kube_config(secured, tmp_path):
    """kubeconfig(path) holds the URL, the CA and the token: load_kube_config reaches the server."""
    path = tmp_path / "kubeconfig"
    text = secured.kubeconfig(path)
    assert path.read_text() == text
    api_client = config.new_client_from_config(str(path), persist_config=False)
    try:
        listed = client.CoreV1Api(api_client).list_namespace()
    finally:
        api_client.close()
    assert len(listed.items) == 3


def test_watch_works_over_https_with_a_token(secured):
    """The official client's Watch streams over TLS with the token too."""
    with secured.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_event("default", event("e1"))
        w = watch.Watch()
        for item in w.stream(core.list_namespaced_event, "default", timeout_seconds=10):
            assert (item["type"], item["object"].metadata.name) == ("ADDED", "e1")
            w.stop()


def test_client_certificates_authenticate_without_a_token():
    """client_certificates=True: a certificate signed by the server's CA is the credential."""
    with LocalApiServer(tls=True, client_certificates=True) as server:
        with server.api_client() as api_client:
            client.CoreV1Api(api_client).create_namespaced_event("default", event("e1"))
        alice = server.client_certificate("alice", ["dev"])
        with server.api_client(credentials=False, client_certificate=alice) as api_client:
            assert len(client.CoreV1Api(api_client).list_namespaced_event("default").items) == 1
        with (
            server.api_client(credentials=False) as api_client,
            pytest.raises(ApiException) as error,
        ):
            client.CoreV1Api(api_client).list_namespaced_event("default")
    assert error.value.status == 401
    assert (alice.user, alice.groups) == ("alice", ("dev",))


def test_a_verified_certificate_authenticates_whatever_token_comes_beside_it():
    """kube-apiserver asks its x509 authenticator before its token authenticators, and the
    first that authenticates wins: a good client certificate beside a wrong (or stale) token
    is the certificate's user, not a 401. Without the certificate the wrong token is a 401."""
    with LocalApiServer(tls=True, token="s3cret", client_certificates=True) as server:
        alice = server.client_certificate("alice")
        with server.api_client(credentials=False, client_certificate=alice) as api_client:
            api_client.configuration.api_key = {"authorization": "wrong"}
            api_client.configuration.api_key_prefix = {"authorization": "Bearer"}
            client.CoreV1Api(api_client).create_namespaced_event("default", event("e1"))
        with server.api_client(credentials=False) as api_client:
            api_client.configuration.api_key = {"authorization": "wrong"}
            api_client.configuration.api_key_prefix = {"authorization": "Bearer"}
            with pytest.raises(ApiException) as error:
                client.CoreV1Api(api_client).list_namespaced_event("default")
        assert error.value.status == 401
        assert [r.status for r in server.requests] == [201, 401]


def test_options_that_do_not_fit_together_are_refused():
    """Client certificates need TLS; an empty token is a mistake."""
    with pytest.raises(ValueError, match="needs tls=True"):
        LocalApiServer(client_certificates=True)
    with pytest.raises(ValueError, match="token"):
        LocalApiServer(token=" ")
    with LocalApiServer() as server, pytest.raises(RuntimeError, match="tls=True"):
        server.client_certificate()
    assert (server.ca_pem, server.ca_file, server.token) == (None, None, None)


def test_stop_is_prompt_with_a_connection_stuck_before_its_handshake(secured):
    """A client that connects and never starts TLS does not hold stop() up."""
    stuck = socket.create_connection(("127.0.0.1", secured.port))
    try:
        with secured.api_client() as api_client:  # a served request: the server is up
            client.CoreV1Api(api_client).list_namespaced_event("default")
        started = time.monotonic()
        secured.stop()
        assert time.monotonic() - started < JOIN_TIMEOUT  # a join that waited the thread out
    finally:
        stuck.close()


def _shutting_connections_down_done(stopper: threading.Thread) -> bool:
    """True once ``stopper``, running ``stop()``, has shut every connection down and joins
    the connections' threads."""
    frame = sys._current_frames().get(stopper.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "stop" and "threads" in frame.f_locals:
            return True
        frame = frame.f_back
    return False


def test_stop_is_prompt_when_it_comes_while_a_connection_turns_to_tls(monkeypatch):
    """A stop() that shuts the connections down while one is being wrapped in TLS (its plain
    socket handed over to the wrapper, the wrapped one not yet recorded) still ends that
    connection at once: the handshake does not start once the server stops."""
    server = LocalApiServer(tls=True).start()
    context = server._transport._ssl_context
    assert context is not None
    wrap = context.wrap_socket
    stopper = threading.Thread(target=server.stop)
    stopping = threading.Event()
    handshaking: list[threading.Thread] = []

    def wrap_then_stop(sock: socket.socket, **kwargs: Any) -> Any:
        wrapped = wrap(sock, **kwargs)
        handshaking.append(threading.current_thread())
        stopper.start()
        stopping.set()
        bound = time.monotonic() + 60  # only a hang reaches it
        while not _shutting_connections_down_done(stopper) and time.monotonic() < bound:
            time.sleep(0.001)
        return wrapped

    monkeypatch.setattr(context, "wrap_socket", wrap_then_stop)
    stuck = socket.create_connection(("127.0.0.1", server.port))
    try:
        assert stopping.wait(60)  # only a hang reaches the bound
        stopper.join(60)
        assert not stopper.is_alive()
        # stop() joined it: it did not wait out the handshake's timeout
        assert handshaking
        assert not handshaking[0].is_alive()
    finally:
        stuck.close()
        server.stop()


# -- kubectl --------------------------------------------------------------------------

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on the PATH")


def _kubectl(tmp_path: Any, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [KUBECTL, *args], capture_output=True, text=True, env=env, timeout=30, check=False
    )


@needs_kubectl
def test_kubectl_reads_events_over_https_with_the_token(secured, tmp_path):
    """kubectl --kubeconfig: verifies the server with the CA and sends the token."""
    with secured.api_client() as api_client:
        client.CoreV1Api(api_client).create_namespaced_event("default", event("e1"))
    kubeconfig = tmp_path / "config"
    secured.kubeconfig(kubeconfig)
    result = _kubectl(tmp_path, "--kubeconfig", str(kubeconfig), "get", "events", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert [item["metadata"]["name"] for item in json.loads(result.stdout)["items"]] == ["e1"]


@needs_kubectl
def test_kubectl_with_a_wrong_token_is_unauthorized(secured, tmp_path):
    """kubectl reports the 401 as it does for a cluster: you must be logged in."""
    kubeconfig = tmp_path / "config"
    secured.kubeconfig(kubeconfig)
    result = _kubectl(
        tmp_path, "--kubeconfig", str(kubeconfig), "--token", "wrong", "get", "events"
    )
    assert result.returncode != 0
    # kubectl words the 401 of its discovery request this way, whatever the Status says
    assert "error: You must be logged in to the server" in result.stderr


def test_cli_serves_https_with_a_token_and_writes_a_kubeconfig(tmp_path):
    """``apiserver --tls --token T --kubeconfig F``: F reaches the server with the CA and token."""
    kubeconfig = tmp_path / "config"
    with apiserver_command("--tls", "--token", "t0k", "--kubeconfig", str(kubeconfig)) as command:
        assert command.first_line.startswith("Kubernetes Events API on https://127.0.0.1:")
        assert "--kubeconfig" in command.readline()
        api_client = config.new_client_from_config(str(kubeconfig), persist_config=False)
        try:
            assert client.CoreV1Api(api_client).list_namespaced_event("default").items == []
        finally:
            api_client.close()
        assert json.loads(kubeconfig.read_text())["users"][0]["user"] == {"token": "t0k"}
