"""The sink's one request path (``_transport``): one body handling, one error mapping.

The mapping is tested on answers as values (what a transport returns); the path itself
against the local API server, through both transports -- the sink's own channel and the
official client's path -- and through a real forward proxy, where only the official client
can go.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from k8s_logging_events import (
    _apis,
    _errors,
    _http_parser,
    _official,
    _options,
    _transport,
    models,
    recorder,
    sink,
)
from k8s_logging_events._http_parser import Answer
from k8s_logging_events.testing import FakeClock, LocalApiServer
from tests._ports import refused_url
from tests.test_errors import _raw_server
from tests.test_sink import _event, _on_channel, _on_official_path, _ref

JSON = "application/json"


def _status(code: int, reason: str, **details: Any) -> bytes:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": f"a {reason}",
            "reason": reason,
            "code": code,
            "details": details,
        }
    ).encode()


# -- the mapping ---------------------------------------------------------------------------


def test_a_status_answer_is_read_into_an_api_status_error() -> None:
    """Reason, message, cause types, the name it is about, the wait asked for, the request."""
    body = _status(
        422,
        "Invalid",
        name="web-0.1",
        causes=[{"reason": "FieldValueInvalid"}, {"type": "FieldValueRequired"}, {}],
        retryAfterSeconds=4,
    )
    error = _transport.status_error(Answer(422, "Unprocessable Entity", {}, body), "POST", "/p")
    assert (error.status, error.reason, error.message, error.name) == (
        422,
        "Invalid",
        "a Invalid",
        "web-0.1",
    )
    assert error.causes == ("FieldValueInvalid", "FieldValueRequired")
    assert (error.retry_after, error.method, error.path) == (4.0, "POST", "/p")


@pytest.mark.parametrize(
    "body", [b"", b"<html>bad gateway</html>", b"[1, 2]", b'{"details": "no"}', b"\xff\xfe"]
)
def test_an_answer_that_is_no_status_keeps_the_http_reason(body: bytes) -> None:
    """A proxy's HTML page, an empty body, JSON that is no Status: the HTTP reason phrase."""
    error = _transport.status_error(Answer(502, "Bad Gateway", {}, body))
    assert (error.status, error.reason, error.message, error.causes) == (502, "Bad Gateway", "", ())
    assert error.is_retryable


def test_the_servers_text_in_an_error_is_one_bounded_line() -> None:
    """A Status's message is the server's text (an admission webhook's, a proxy's page): its
    line breaks and terminal escapes forged lines in the library's warnings and a 64 MB one
    was quoted whole (the pod read's warning). Controls are escaped, the text cut."""
    forged = "denied\nWARNING forged line\x1b[2J\u2028"
    with (
        LocalApiServer() as server,
        contextlib.closing(sink.KubernetesEventSink.from_url(server.url, qps=0)) as events,
    ):
        server.inject(method="POST", status=403, message=forged + "x" * 100_000)
        with pytest.raises(_errors.ApiStatusError) as caught:
            events.create(_event())
    text = str(caught.value)
    assert "denied\\nWARNING forged line\\x1b[2J\\u2028xxx" in text
    assert text.isprintable()
    assert len(caught.value.message) == _transport.MAX_SERVER_TEXT
    assert caught.value.message.endswith("x ...")


@pytest.mark.parametrize(
    ("header", "details", "seconds"),
    [
        ("3", {}, 3.0),
        ("4", {"retryAfterSeconds": 9}, 4.0),  # the header first
        (None, {"retryAfterSeconds": 9}, 9.0),
        (None, {"retryAfterSeconds": "2"}, 2.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", {}, None),  # a date: the writer's schedule
        ("-5", {}, 0.0),
        ("1e12", {}, _transport.MAX_RETRY_AFTER_SECONDS),
        ("nan", {}, None),
        (None, {"retryAfterSeconds": True}, None),
        (None, {"retryAfterSeconds": 10**400}, _transport.MAX_RETRY_AFTER_SECONDS),
        (None, {}, None),
    ],
)
def test_retry_after_is_the_header_else_the_status_details(
    header: str | None, details: dict[str, Any], seconds: float | None
) -> None:
    assert _transport.retry_after(header, details) == seconds


@pytest.mark.parametrize("code", [429, 422])
def test_a_wait_too_big_for_a_float_still_leaves_the_status_an_api_status_error(code: int) -> None:
    """A Status whose ``retryAfterSeconds`` is an integer too big for a float (JSON allows
    it): reading the wait raised OverflowError out of the answer, so a 429 was not waited
    out but retried as a broken connection, and a 422 retried instead of given up, each
    reported as "int too large to convert to float". It is the longest wait honoured."""
    body = b'{"kind":"Status","code":%d,"details":{"retryAfterSeconds":1%s}}' % (code, b"0" * 400)
    error = _transport.status_error(Answer(code, "", {}, body))
    assert (error.status, error.retry_after) == (code, _transport.MAX_RETRY_AFTER_SECONDS)
    assert error.is_retryable is (code == 429)


def test_both_transports_give_headers_by_lower_case_name() -> None:
    """So that one reading of ``Retry-After`` serves both."""
    answer = Answer(429, "Too Many Requests", {"retry-after": "7"}, _status(429, "TooManyRequests"))
    assert _transport.status_error(answer).retry_after == 7.0


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT"])
@pytest.mark.parametrize("status", [409, 403, 500])
def test_a_write_sent_twice_is_a_transport_error_whatever_else_the_second_send_met(
    method: str, status: int
) -> None:
    """The first send may have been stored before its connection broke."""
    answer = Answer(status, "Whatever", {}, _status(status, "Whatever"), resent=True)
    with pytest.raises(_http_parser.ProtocolError) as raised:
        _transport.read(answer, method, "/p")
    assert sink.is_retryable(raised.value)
    # what a human reads: the first send may have landed, then what the second one met
    met = "it already existed" if (method, status) == ("POST", 409) else "it was answered"
    assert str(raised.value) == (
        f"the connection broke during {method} /p, which may have been carried out; "
        f"sent again, {met}: {status} Whatever"
    )


def test_a_read_sent_twice_is_answered_as_it_was() -> None:
    answer = Answer(404, "Not Found", {}, _status(404, "NotFound"), resent=True)
    with pytest.raises(sink.ApiStatusError) as raised:
        _transport.read(answer, "GET", "/p")
    assert raised.value.is_not_found


@pytest.mark.parametrize("body", [b"", b"{", b"\xff"])
def test_a_success_that_cannot_be_read_is_worth_a_retry(body: bytes) -> None:
    """The write may have landed: a ValueError, which the writer retries."""
    with pytest.raises(ValueError, match="unreadable answer to POST /p") as raised:
        _transport.read(Answer(201, "Created", {}, body), "POST", "/p")
    assert sink.is_retryable(raised.value)


def test_a_success_its_caller_cannot_parse_is_worth_a_retry_too() -> None:
    """JSON that is no event (a proxy's object) fails as undecodable JSON does, in one text."""
    answer = Answer(201, "Created", {}, b'{"metadata": 5}')
    with pytest.raises(ValueError, match=r"^unreadable answer to POST /p: ") as raised:
        _transport.read(answer, "POST", "/p", models.Event.from_api)
    assert sink.is_retryable(raised.value)


@pytest.mark.parametrize(
    "body",
    [b'{"metadata": {"name": "e"}, "count": 1e400}', b"[" * 100_000],
    ids=["a-count-past-any-integer", "nested-past-the-decoder-s-depth"],
)
def test_any_answer_its_caller_cannot_read_is_said_unreadable(body: bytes) -> None:
    """Odd JSON that fails neither as ValueError nor TypeError (an OverflowError, a
    RecursionError) is still said to be an unreadable answer, and retried."""
    answer = Answer(201, "Created", {}, body)
    with pytest.raises(ValueError, match=r"^unreadable answer to POST /p: ") as raised:
        _transport.read(answer, "POST", "/p", models.Event.from_api)
    assert sink.is_retryable(raised.value)


def test_a_success_is_read_once_as_json() -> None:
    assert _transport.read(Answer(200, "OK", {}, b'{"a": [1]}'), "GET", "/p") == {"a": [1]}


def test_the_body_is_encoded_once_as_compact_utf8_json() -> None:
    """Bytes go as they are (a patch); None is no body; a lone surrogate, which UTF-8 cannot
    carry, as JSON's escape (an API server reads it as U+FFFD)."""
    assert _transport.encode("POST", "/p", {"a": "é", "b": [1]}) == '{"a":"é","b":[1]}'.encode()
    assert _transport.encode("POST", "/p", {"a": "\udc80"}) == b'{"a":"\\udc80"}'
    assert _transport.encode("PATCH", "/p", b'{"count": 2}') == b'{"count": 2}'
    assert _transport.encode("GET", "/p", None) == b""


@pytest.mark.parametrize("body", [{"count": float("nan")}, {"when": object()}, {1j: 2}])
def test_a_body_that_cannot_be_json_is_a_construction_error(body: Any) -> None:
    with pytest.raises(sink.RequestConstructionError, match="cannot encode POST /p"):
        _transport.encode("POST", "/p", body)


def test_tls_errors_are_told_apart_on_both_transports() -> None:
    import ssl

    from urllib3.exceptions import MaxRetryError, SSLError

    assert _transport.is_tls_error(ssl.SSLError("bad certificate"))
    assert _transport.is_tls_error(SSLError("bad certificate"))
    assert _transport.is_tls_error(MaxRetryError(None, "/", SSLError("bad certificate")))  # type: ignore[arg-type]
    assert not _transport.is_tls_error(ConnectionRefusedError())
    assert not _transport.is_tls_error(MaxRetryError(None, "/", ConnectionRefusedError()))  # type: ignore[arg-type]


class _ClosesFirstConnection:
    """A TCP relay to ``port`` that closes its first connection as soon as the client has
    spoken, with a FIN, as a load balancer with no backend ready (or a server that is
    stopping) does."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._relayed: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="test-relay", daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            first = self._listener.accept()[0]
            with first:
                # the client's first flight (its ClientHello) is read first: a socket closed
                # with bytes unread sends a reset, not the FIN this relay is about
                first.settimeout(10)
                first.recv(65536)
            while True:
                inside, _ = self._listener.accept()
                outside = socket.create_connection(("127.0.0.1", self._port))
                self._relayed += [inside, outside]
                for a, b in ((inside, outside), (outside, inside)):
                    thread = threading.Thread(
                        target=self._pipe, args=(a, b), name="test-relay-pipe", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (Linux)
        self._listener.close()
        self._threads[0].join(5)
        # a client's closed connection may wait for the garbage collector (a response's file
        # object holds it): end the relayed ones here
        for relayed in self._relayed:
            with contextlib.suppress(OSError):
                relayed.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        for relayed in self._relayed:
            relayed.close()


@pytest.mark.parametrize("path", ["channel", "official"])
def test_a_connection_closed_during_the_tls_handshake_is_retried(path: str) -> None:
    """An HTTPS connection the server (or a load balancer) closes before the handshake is
    done fails with the ``ssl`` module's EOF error. That is a connection closed, not a
    certificate refused: a transport error the writer retries, as a reset is (before, the
    event was given up at once, "will not retry")."""
    with LocalApiServer(tls=True, token="s3cret") as server, server.api_client() as api_client:
        relay = _ClosesFirstConnection(server.port)
        try:
            api_client.configuration.host = f"https://127.0.0.1:{relay.port}"
            relayed = client.ApiClient(api_client.configuration)
            events_sink = sink.KubernetesEventSink(relayed, qps=0, api="v1")
            if path == "official":
                _on_official_path(events_sink)
            try:
                events_sink.create(_event())
            except Exception as error:  # the ssl module's or urllib3's (not kept: its frames
                # hold the client's connection open)
                failure = (type(error).__name__, sink.is_retryable(error), str(error))
            assert "EOF occurred in violation of protocol" in failure[2], failure  # not a reset
            assert failure[0] != "ApiStatusError"
            assert failure[1], failure
            assert events_sink.create(_event()).count == 1
        finally:
            events_sink.close()
            relayed.close()
            relay.close()


@pytest.mark.parametrize("path", ["channel", "official"])
@pytest.mark.parametrize("interim", [b"102 Processing", b"103 Early Hints\r\nLink: </a>"])
def test_an_interim_answer_is_never_taken_for_the_answer(path: str, interim: bytes) -> None:
    """A server (or a proxy) sends an interim answer, then the final one, after storing the
    event. The channel reads past the interim answer; the official client's http.client
    skips only 100 Continue and returns the 102 or 103 as the answer. That answer once
    became a refusal, not retried (a 4xx-like status): the event, stored, was counted as
    failed. It is a transport error there, retried, and the event may have landed."""
    stored = json.dumps(_event().to_api()).encode()
    answer = b"HTTP/1.1 %s\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (
        interim,
        len(stored),
        stored,
    )
    with _raw_server(answer) as url:
        events_sink = sink.KubernetesEventSink.from_url(url, qps=0, request_timeout=10)
        try:
            if path == "official":
                _on_official_path(events_sink)
            try:
                outcome: object = events_sink.create(_event()).name
            except Exception as error:  # whatever the transport raises
                outcome = (sink.is_retryable(error), _errors.may_have_landed(error), str(error))
        finally:
            events_sink.close()
    if path == "channel":
        assert outcome == _event().name
    else:
        assert isinstance(outcome, tuple), outcome
        assert outcome[:2] == (True, True), outcome
        assert "an interim answer" in outcome[2], outcome


# -- one path, both transports -------------------------------------------------------------


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer() as server:
        yield server


@pytest.fixture(name="either", params=["channel", "official"])
def _either(request: pytest.FixtureRequest, server: LocalApiServer) -> Iterator[Any]:
    """A sink on its own channel, and one on the official client's path."""
    events_sink = sink.KubernetesEventSink(server.api_client(), qps=0, api="auto")
    if request.param == "official":
        _on_official_path(events_sink)
    yield events_sink
    events_sink.close()
    events_sink.api_client.close()


def test_the_transport_is_chosen_once_at_the_start(server: LocalApiServer) -> None:
    """The sink's own channel where it can connect as the client would."""
    events_sink = sink.KubernetesEventSink(server.api_client(), qps=0)
    try:
        transport = events_sink._transport
        events_sink.create(_event(name="a.1"))
        events_sink.read(_event(name="a.1"))
        assert events_sink._transport is transport
        assert _on_channel(events_sink)
    finally:
        events_sink.close()


def test_every_request_takes_the_one_path(server: LocalApiServer, either: Any) -> None:
    """Discovery, a create, a patch, a read and a pod read: through one transport each, and
    the same bytes on the wire whichever it is."""
    uid = server.add_pod("web-0")["metadata"]["uid"]
    assert either.api == sink.EVENTS_V1
    event = _event(action="Pull", reporting_controller="c", reporting_instance="i")
    stored = either.create(event)
    either.patch(stored, b'{"series":{"count":2,"lastObservedTime":"2024-01-01T00:00:01.000000Z"}}')
    assert either.read(stored).name == stored.name
    assert either.read_pod_uid("default", "web-0") == uid
    requests = [(r.method, r.path) for r in server.requests]
    assert requests[0] == ("GET", "/apis/events.k8s.io/v1")
    assert [method for method, _ in requests] == ["GET", "POST", "PATCH", "GET", "GET"]
    (post,) = [r for r in server.requests if r.method == "POST"]
    assert post.raw_body == _transport.encode("POST", "", _apis.BY_NAME[either.api].body(event))


@pytest.mark.parametrize("transport", ["channel", "official"])
def test_the_longest_message_of_two_byte_characters_is_sent_within_the_body_limit(
    server: LocalApiServer, transport: str
) -> None:
    """A core/v1 event whose message is ``max_message_bytes`` at its largest (1 MiB) of
    Cyrillic text is stored, as one of ASCII is: sent as UTF-8, its body is 1 MiB. As
    \\u escapes it was over 3 MiB, and the event was refused before sending, never stored."""
    events_sink = sink.KubernetesEventSink(server.api_client(), qps=0, api="v1")
    if transport == "official":
        _on_official_path(events_sink)
    message = "д" * (_options.MAX_MESSAGE_BYTES // 2)
    try:
        events_sink.create(_event(message=message))
    finally:
        events_sink.close()
        events_sink.api_client.close()
    (stored,) = server.events()
    assert stored["message"] == message


def test_a_patch_over_the_servers_body_limit_is_refused_without_being_sent(
    server: LocalApiServer, either: Any
) -> None:
    """The create's rule holds for a patch too (an aggregate whose latest message is larger
    than its first's): a body over 3 MiB is never sent, as a real server would cut the
    connection while it is on its way, and the retries would meet that again."""
    stored = either.create(_event(action="Pull", reporting_controller="c", reporting_instance="i"))
    note = "x" * _transport.MAX_BODY_BYTES
    with pytest.raises(sink.RequestConstructionError, match="over the API server's limit"):
        either.patch(stored, json.dumps({"note": note}).encode())
    assert [r.method for r in server.requests if r.method == "PATCH"] == []


@pytest.mark.parametrize("path", ["channel", "official"])
def test_credentials_that_cannot_be_read_for_now_are_retried_on_both_transports(
    path: str,
) -> None:
    """The client's refresh hook (an in-cluster token file caught mid-rotation, an auth
    provider's token endpoint down) raises: the write fails with that error, worth a retry,
    on the sink's channel as on the official client's path, never given up at once as a
    request that cannot be built; the next attempt, with the credentials back, lands. The
    official path sends them as the channel does, a token file's line break trimmed."""
    with LocalApiServer(token="s3cret") as server, server.api_client() as api_client:
        configuration = api_client.configuration
        failures = [FileNotFoundError(2, "No such file or directory", "token")]

        def refresh(configuration: Any) -> None:
            configuration.api_key["authorization"] = "s3cret\n"
            if failures:
                raise failures.pop()

        configuration.refresh_api_key_hook = refresh
        events_sink = sink.KubernetesEventSink(api_client, qps=0)
        if path == "official":
            _on_official_path(events_sink)
        try:
            with pytest.raises(FileNotFoundError) as raised:
                events_sink.create(_event())
            assert sink.is_retryable(raised.value)
            assert events_sink.create(_event()).name == _event().name
        finally:
            events_sink.close()
        (post,) = [r for r in server.requests if r.method == "POST"]
        assert post.headers["authorization"] == "Bearer s3cret"


def test_an_unreachable_server_is_answered_core_v1_by_discovery() -> None:
    """A server that cannot be reached does not serve events.k8s.io/v1 (core/v1 is safe)."""
    with refused_url() as url:
        events_sink = sink.KubernetesEventSink.from_url(url, qps=0, api="auto")
        try:
            assert events_sink.api == sink.CORE_V1
        finally:
            events_sink.close()


# -- behind a proxy: the official client's path ------------------------------------------------


class _ForwardProxy(http.server.ThreadingHTTPServer):
    """An HTTP forward proxy: each request, in absolute form, is sent on to its server."""

    daemon_threads = True

    def __init__(self, authorization: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.authorization = authorization  # the Proxy-Authorization it asks for, if any
        self.targets: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, name="k8s-apiserver-proxy")
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ForwardProxy

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        wanted = self.server.authorization
        if wanted is not None and self.headers.get("Proxy-Authorization") != wanted:
            self.send_response(407, "Proxy Authentication Required")
            self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.targets.append(self.path)
        target = urlsplit(self.path)
        # the servers are on this machine, whatever name the client knows them by
        upstream = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            hop = ("proxy-connection", "proxy-authorization")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
            upstream.request(self.command, path, body or None, headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = _forward  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what the proxy carried from ``targets``."""


def test_behind_a_proxy_every_request_goes_through_it() -> None:
    """With ``configuration.proxy``, the official client's pool carries the requests (in
    absolute form, to the proxy); answers and refusals mean the same as on the channel."""
    proxy = _ForwardProxy()
    try:
        with LocalApiServer() as server:
            configuration = server.api_client().configuration
            configuration.proxy = proxy.url
            events_sink = sink.KubernetesEventSink(client.ApiClient(configuration), qps=0)
            try:
                assert isinstance(events_sink._transport, _official.ClientTransport)
                stored = events_sink.create(_event(name="web-0.1"))
                assert events_sink.patch(stored, b'{"count":2}').count == 2
                server.inject("POST", status=429, retry_after=3)
                with pytest.raises(sink.ApiStatusError) as raised:
                    events_sink.create(_event(name="web-0.2"))
            finally:
                events_sink.close()
                events_sink.api_client.close()
            assert [e["count"] for e in server.events("default")] == [2]
    finally:
        proxy.close()
    assert (raised.value.status, raised.value.retry_after) == (429, 3.0)
    assert len(proxy.targets) == 3
    assert all(target.startswith(server.url + "/api/v1/") for target in proxy.targets)


@pytest.mark.parametrize(
    ("userinfo", "sent"),
    [
        ("admin:p%2Fss%20w", b"admin:p/ss w"),
        ("admin:caf%E9", b"admin:caf\xe9"),  # Latin-1, not UTF-8: the byte itself
        ("admin:caf\udce9", b"admin:caf\xe9"),  # that byte unencoded, as os.environ has it
    ],
    ids=["encoded", "latin-1", "raw-byte"],
)
def test_a_proxy_urls_user_name_and_password_are_sent_as_basic_proxy_authorization(
    monkeypatch: pytest.MonkeyPatch, userinfo: str, sent: bytes
) -> None:
    """``HTTP_PROXY=http://admin:p%2Fss%20w@proxy``: Go's transport (kubectl's) sends the
    URL's user name and password, decoded, as Basic ``Proxy-Authorization``; urllib3 sends
    nothing, so every write met the proxy's 407 and was given up, with no word of why. They
    are sent, and the proxy carries the writes. Seen before the fix: a byte that is not
    UTF-8 (``%E9``, a Latin-1 password's) was sent as U+FFFD, and the proxy answered 407 as
    before; unencoded in the environment, the sink could not be built (UnicodeEncodeError).
    Go sends the bytes themselves."""
    proxy = _ForwardProxy(authorization="Basic " + base64.b64encode(sent).decode())
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("//", f"//{userinfo}@"))
    try:
        with LocalApiServer() as server:
            # a name, not loopback: the environment's proxy is never for a loopback server
            url = server.url.replace("127.0.0.1", "apiserver.test")
            events_sink = sink.KubernetesEventSink.from_url(url, qps=0)
            try:
                events_sink.create(_event(name="web-0.1"))
            finally:
                events_sink.close()
                events_sink.api_client.close()
            assert [e["metadata"]["name"] for e in server.events("default")] == ["web-0.1"]
    finally:
        proxy.close()
    assert [urlsplit(target).path for target in proxy.targets] == [
        "/api/v1/namespaces/default/events"
    ]


def test_a_429_met_by_the_resend_after_a_broken_connection_is_waited_out_as_any_429(
    server: LocalApiServer,
) -> None:
    """The server stores a create and closes its kept-alive connection without an answer;
    sent again on a new one, the create meets 429 with Retry-After: 7. The writer took that
    for a broken connection: it spent a try (with one try, the event was given up, counted
    failed) and did not wait the 7 s. It waits them out, spends no try, and still knows the
    first send may have landed: the retry's AlreadyExists is its own create, stored once."""
    clock = FakeClock()
    broadcaster = recorder.EventBroadcaster(clock=clock, sleep=clock.sleep, max_tries=1)
    events_sink = sink.KubernetesEventSink(server.api_client(), qps=0)
    try:
        broadcaster.start_recording_to_sink(events_sink)
        record = broadcaster.new_recorder(models.EventSource(component="ctl", host="node-1"))
        record.event(_ref("warm"), models.NORMAL, "Started", "x")  # a connection to reuse
        assert broadcaster.flush(10)
        server.inject("POST", action="drop", commit=True)
        server.inject("POST", status=429, retry_after=7)
        record.event(_ref("web-0"), models.WARNING, "BackOff", "x")
        assert broadcaster.flush(10)
        assert 7.0 in clock.sleeps
        assert (broadcaster.stats()["created"], broadcaster.stats()["failed"]) == (2, 0)
        assert [(e["involvedObject"]["name"], e["count"]) for e in server.events()] == [
            ("warm", 1),
            ("web-0", 1),
        ]
    finally:
        broadcaster.shutdown(5)
        events_sink.close()
        events_sink.api_client.close()
