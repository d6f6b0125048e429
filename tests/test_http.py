"""The sink's keep-alive channel (``_http``) against the local API server, over real sockets.

Nothing here stands in for the HTTP layer: every request crosses a socket to a
``LocalApiServer`` (HTTP, or HTTPS with a token), which counts the connections it accepts,
closes kept-alive ones when it stops listening, drops, delays and chunks answers; or to a
small raw server, or through a relay, that sends bytes no request asked for.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import ssl
import struct
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from k8s_logging_events import (
    _errors,
    _http,
    _http_parser,
    _process,
    models,
    recorder,
    sink,
)
from k8s_logging_events.testing import FakeClock, LocalApiServer
from tests.test_sink import _event, _on_official_path

T0 = datetime(2024, 1, 1, tzinfo=UTC)
JSON = "application/json"


@pytest.fixture(name="served", params=[False, True], ids=["http", "https"])
def _served(request: pytest.FixtureRequest) -> Iterator[LocalApiServer]:
    """The local API server over HTTP, and over HTTPS with a self-signed CA and a token."""
    tls = bool(request.param)
    with LocalApiServer(tls=tls, token="s3cret" if tls else None) as server:
        yield server


@pytest.fixture(name="make_sink")
def _make_sink() -> Iterator[Any]:
    made: list[sink.KubernetesEventSink] = []

    def make(server: LocalApiServer, **options: Any) -> sink.KubernetesEventSink:
        options.setdefault("qps", 0)
        made.append(sink.KubernetesEventSink(server.api_client(), **options))
        return made[-1]

    yield make
    for events_sink in made:
        events_sink.close()
        events_sink.api_client.close()


def _channel(events_sink: sink.KubernetesEventSink) -> _http.Channel:
    transport = events_sink._transport
    assert isinstance(transport, _http.Channel), "not on the sink's channel"
    return transport


def _posts(server: LocalApiServer) -> list[Any]:
    return [r for r in server.requests if r.method == "POST"]


# -- keep-alive --------------------------------------------------------------------------


def test_writes_share_one_kept_alive_connection(served: LocalApiServer, make_sink: Any) -> None:
    """Creates, a patch and a replace, one after another: one connection carries them all."""
    events_sink = make_sink(served)
    for number in range(3):
        events_sink.create(_event(name=f"web-0.{number}"))
    stored = events_sink.patch(_event(name="web-0.0"), b'{"count":2}')
    events_sink.update(stored)
    channel = _channel(events_sink)
    assert (served.connections, channel.connections_opened, channel.idle_connections) == (1, 1, 1)
    assert [e["count"] for e in served.events("default")] == [2, 1, 1]


def test_concurrent_writers_open_no_more_connections_than_run_at_once(
    served: LocalApiServer, make_sink: Any
) -> None:
    """Four threads writing at once: at most four connections, all kept for reuse."""
    events_sink = make_sink(served)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def write(thread: int) -> None:
        start.wait()
        try:
            for number in range(15):
                events_sink.create(_event(name=f"t{thread}.{number}"))
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(served.events("default")) == 60
    channel = _channel(events_sink)
    assert served.connections == channel.connections_opened <= 4
    assert channel.idle_connections == channel.connections_opened


@pytest.mark.parametrize("idle_check", [False, True], ids=["sent-again", "checked-before-reuse"])
def test_a_kept_alive_connection_the_server_closed_is_replaced(
    served: LocalApiServer,
    make_sink: Any,
    monkeypatch: pytest.MonkeyPatch,
    idle_check: bool,
) -> None:
    """The server closes its idle connections (it stops listening and starts again).

    A connection is checked before reuse; when the close comes just after the check, the
    write that meets it before any answer is sent once more on a new connection. Either
    way the write succeeds, once.
    """
    if not idle_check:  # the close comes just after the check
        monkeypatch.setattr(_http._Connection, "quiet", lambda self: True)
    events_sink = make_sink(served)
    events_sink.create(_event(name="web-0.1"))
    served.refuse_connections()  # closes the kept-alive connection
    served.accept_connections()
    events_sink.create(_event(name="web-0.2"))
    assert served.connections == 2
    assert [r.body["metadata"]["name"] for r in _posts(served)] == ["web-0.1", "web-0.2"]
    assert len(served.events("default")) == 2
    assert _channel(events_sink).resends == (0 if idle_check else 1)


def test_a_request_dropped_on_a_kept_alive_connection_is_sent_once_more(
    served: LocalApiServer, make_sink: Any
) -> None:
    """No answer at all on a reused connection looks like the server's idle close: resent."""
    events_sink = make_sink(served)
    events_sink.create(_event(name="web-0.1"))
    served.inject("POST", action="drop")
    stored = events_sink.create(_event(name="web-0.2"))
    assert stored.name == "web-0.2"
    assert [(r.body["metadata"]["name"], r.fault) for r in _posts(served)] == [
        ("web-0.1", None),
        ("web-0.2", "drop"),
        ("web-0.2", None),
    ]
    assert served.connections == 2
    assert _channel(events_sink).resends == 1


def test_a_create_stored_before_its_connection_broke_is_reported_as_lost(
    served: LocalApiServer, make_sink: Any
) -> None:
    """The server stores the create and closes without an answer; the resend meets 409.

    The sink reports what the writer would have seen without the resend: a transport error,
    after which AlreadyExists means "our own create landed" (not a refusal).
    """
    events_sink = make_sink(served)
    events_sink.create(_event(name="web-0.1"))
    served.inject("POST", action="drop", commit=True)
    with pytest.raises(ConnectionError) as raised:
        events_sink.create(_event(name="web-0.2"))
    assert not isinstance(raised.value, sink.ApiStatusError)
    assert sink.is_retryable(raised.value)
    assert _errors.may_have_landed(raised.value)
    # not a bare "409": which send did what, in order (a 409 read as a conflict misleads)
    message = str(raised.value)
    assert message.startswith("the connection broke during POST /api/v1/namespaces/"), message
    assert message.endswith(
        ", which may have been carried out; sent again, it already existed: 409 Conflict"
    ), message
    assert [e["metadata"]["name"] for e in served.events("default")] == ["web-0.1", "web-0.2"]


def test_a_create_stored_before_its_connection_broke_whose_resend_is_refused_may_have_landed(
    served: LocalApiServer, make_sink: Any
) -> None:
    """The server stores the create, stops listening and closes without an answer; the
    resend is refused. A refused connection alone means nothing was sent, but here the first
    send may have been carried out, and it was: the writer must take it as maybe landed."""
    events_sink = make_sink(served)
    events_sink.create(_event(name="web-0.1"))
    served.inject("POST", action="refuse", commit=True)
    try:
        with pytest.raises(ConnectionError) as raised:
            events_sink.create(_event(name="web-0.2"))
    finally:
        served.accept_connections()
    assert _errors.may_have_landed(raised.value)
    # not "refused ... may have been carried out": which send did what, in order
    message = str(raised.value)
    assert message.startswith("the connection broke during POST /api/v1/namespaces/"), message
    assert ", which may have been carried out; sending it again failed: " in message, message
    assert [e["metadata"]["name"] for e in served.events("default")] == ["web-0.1", "web-0.2"]


def test_the_writer_counts_a_create_whose_answer_was_lost_once(
    served: LocalApiServer, make_sink: Any
) -> None:
    """Through the writer: the lost answer, the resend's 409 and a patch; nothing failed."""
    clock = FakeClock(T0)
    broadcaster = recorder.EventBroadcaster(
        clock=clock, sleep=clock.sleep, sleep_duration=0.0, rng=lambda: 0.5
    )
    events_sink = make_sink(served, request_timeout=(5.0, 10.0))
    broadcaster.start_recording_to_sink(events_sink)
    try:
        record = broadcaster.new_recorder(models.EventSource(component="ctl", host="node-1"))
        pod = models.ObjectReference(
            kind="Pod", namespace="default", name="a", uid="uid-a", api_version="v1"
        )
        record.event(pod, models.WARNING, "Warm", "the connection is kept alive after this")
        assert broadcaster.flush(10)
        served.inject("POST", action="drop", commit=True)
        record.event(pod, models.WARNING, "BackOff", "Back-off pulling image")
        assert broadcaster.flush(10)
        stats = broadcaster.stats()
    finally:
        broadcaster.shutdown(5)
    assert (stats["created"], stats["failed"]) == (2, 0)
    assert sorted((e["reason"], e["count"]) for e in served.events("default")) == [
        ("BackOff", 1),
        ("Warm", 1),
    ]


def test_no_answer_on_a_fresh_connection_is_a_transport_error(
    served: LocalApiServer, make_sink: Any
) -> None:
    """A new connection that closes without an answer is not sent again: the writer retries."""
    events_sink = make_sink(served)
    served.inject("POST", action="drop")
    with pytest.raises(_http_parser.ProtocolError):
        events_sink.create(_event(name="web-0.1"))
    assert len(_posts(served)) == 1
    events_sink.create(_event(name="web-0.1"))  # the writer's retry
    assert served.connections == 2


def test_a_late_answer_times_out_and_its_connection_is_not_reused(
    served: LocalApiServer, make_sink: Any
) -> None:
    """The answer comes after the read timeout: a timeout for the writer, and a new connection.

    The old connection may still carry the late answer, so it never goes back to the pool.
    """
    events_sink = make_sink(served, request_timeout=(5.0, 1.0))
    events_sink.create(_event(name="web-0.1"))
    served.inject("POST", action="delay", delay=60)  # ends when the server stops
    with pytest.raises(TimeoutError) as raised:
        events_sink.create(_event(name="web-0.2"))
    assert _errors.is_timeout(raised.value)
    assert sink.is_retryable(raised.value)
    events_sink.create(_event(name="web-0.3"))
    channel = _channel(events_sink)
    assert (served.connections, channel.idle_connections) == (2, 1)


# -- answers -----------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_chunked_answers_are_put_together(make_sink: Any, tls: bool) -> None:
    """Bodies sent in chunks, successes and a Status alike; the connection stays usable."""
    with LocalApiServer(tls=tls, chunked_answers=True) as server:
        events_sink = make_sink(server)
        stored = events_sink.create(_event())
        assert stored.count == 1
        assert events_sink.patch(stored, b'{"count":5}').count == 5
        with pytest.raises(sink.ApiStatusError) as raised:
            events_sink.create(_event())
        assert (raised.value.status, raised.value.reason) == (409, "AlreadyExists")
        assert raised.value.message == 'events "web-0.1" already exists'
        assert server.connections == 1


def _same_failure(official: BaseException, lean: BaseException) -> None:
    assert isinstance(official, sink.ApiStatusError), official
    assert isinstance(lean, sink.ApiStatusError), lean
    fields = ("status", "reason", "message", "causes", "retry_after", "is_retryable")
    assert {f: getattr(lean, f) for f in fields} == {f: getattr(official, f) for f in fields}


@pytest.mark.parametrize(
    "failure",
    ["429", "503", "500-message", "missing-namespace", "exists", "invalid", "unauthorized"],
)
def test_error_answers_read_as_through_the_official_client(
    served: LocalApiServer, make_sink: Any, failure: str
) -> None:
    """The same refusal through both paths gives the same ApiStatusError, Retry-After too."""
    event = _event()
    lean, official = make_sink(served), _on_official_path(make_sink(served))
    if failure == "429":
        served.inject("POST", status=429, retry_after=7, times=2)
    elif failure == "503":
        served.inject("POST", status=503, times=2)
    elif failure == "500-message":
        served.inject("POST", status=500, message="etcd is unhappy", times=2)
    elif failure == "missing-namespace":
        event = _event(namespace="nowhere")
    elif failure == "exists":
        lean.create(event)
    elif failure == "invalid":  # the involved object is in another namespace
        event = _event(
            involved_object=models.ObjectReference(
                kind="Pod", namespace="elsewhere", name="web-0", uid="u", api_version="v1"
            )
        )
    elif failure == "unauthorized":
        if served.token is None:
            pytest.skip("the plain server asks for no credentials")
        for events_sink in (lean, official):
            events_sink.api_client.configuration.api_key = {"authorization": "wrong"}
    with pytest.raises(sink.ApiStatusError) as through_client:
        official.create(event)
    with pytest.raises(sink.ApiStatusError) as on_channel:
        lean.create(event)
    _same_failure(through_client.value, on_channel.value)
    if failure == "429":
        assert on_channel.value.retry_after == 7.0


def test_a_credential_that_would_inject_a_header_is_never_sent(
    served: LocalApiServer, make_sink: Any
) -> None:
    """A line break in the token: refused before sending, as http.client refuses it."""
    events_sink = make_sink(served)
    events_sink.api_client.configuration.api_key = {"authorization": "tok\r\nX-Injected: 1"}
    with pytest.raises(ValueError, match="line break"):
        events_sink.create(_event())
    assert served.requests == []


# -- the process and the sink's lifetime -------------------------------------------------


def test_close_closes_the_idle_connections(served: LocalApiServer, make_sink: Any) -> None:
    events_sink = make_sink(served)
    events_sink.create(_event())
    channel = _channel(events_sink)
    assert channel.idle_connections == 1
    events_sink.close()
    assert channel.idle_connections == 0


def test_interrupt_ends_a_hung_request_at_once_and_sends_it_no_more(
    served: LocalApiServer, make_sink: Any
) -> None:
    """The server never answers a write on a kept-alive connection. ``interrupt()`` (the
    handler's close, once it gave the write up) ends it at once, over TLS too, rather than
    at the read timeout; its connection's end is not taken for the server's close of an idle
    one, which sent the write once more on a new connection, to hang again."""
    events_sink = make_sink(served)
    events_sink.create(_event())
    served.inject("POST", action="hang", times=None)
    failures: list[BaseException] = []

    def write() -> None:
        try:
            events_sink.create(_event("web-0.2"))
        except Exception as error:  # what the writer would meet
            failures.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    assert served.wait_for_request(lambda r: r.fault == "hang", timeout=10) is not None
    _channel(events_sink).interrupt()
    writer.join(2)  # the read timeout is 10 s
    assert not writer.is_alive()
    assert [type(f) for f in failures] == [_http_parser.ProtocolError], failures
    assert len(_posts(served)) == 2
    assert _channel(events_sink).connections_opened == 1


def test_interrupt_ends_a_tls_handshake_the_server_never_answers_at_once() -> None:
    """The server took the connection and never answers the TLS handshake (an API server
    too busy to, a load balancer without a backend). ``interrupt()`` (the handler's close,
    once it gave the write up) ends that request at once too: it waited out the connect
    timeout (5 s by default) after the close, a thread of ours left behind."""
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never speaks
        tls = _http.TlsSettings("127.0.0.1")
        channel = _local_channel(listener.getsockname()[1], connect_timeout=10, tls=tls)
        failures: list[BaseException] = []

        def write() -> None:
            try:
                channel.request("POST", "/api/v1/namespaces/default/events", "json", b"{}")
            except Exception as error:  # what the writer would meet
                failures.append(error)

        writer = threading.Thread(target=write)
        writer.start()
        listener.settimeout(10)
        accepted, _ = listener.accept()
        with accepted:
            channel.interrupt()
            writer.join(2)  # the connect timeout is 10 s
            assert not writer.is_alive()
    assert [isinstance(f, OSError) for f in failures] == [True], failures


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_opens_a_connection_of_its_own(
    served: LocalApiServer, make_sink: Any
) -> None:
    """The parent's kept-alive connection stays the parent's: the child writes on its own."""
    events_sink = make_sink(served)
    events_sink.create(_event(name="parent.1"))
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanup
        report: dict[str, Any]
        try:
            events_sink.create(_event(name="child.1"))
            report = {"opened": _channel(events_sink).connections_opened, "error": None}
        except BaseException as error:
            report = {"opened": None, "error": repr(error)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = json.loads(pipe.read() or b"{}")
    os.waitpid(pid, 0)
    assert report == {"opened": 2, "error": None}  # the parent's count, inherited, plus one
    events_sink.create(_event(name="parent.2"))  # still on the parent's first connection
    assert served.connections == 2
    assert _channel(events_sink).connections_opened == 1
    names = sorted(e["metadata"]["name"] for e in served.events("default"))
    assert names == ["child.1", "parent.1", "parent.2"]


# -- answers that belong to their requests ---------------------------------------------


def _read_request(conn: socket.socket, pending: bytes) -> tuple[bytes, bytes] | None:
    """One request's line off ``conn`` (after what is already read); None once it closes."""
    data = pending
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return None
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        more = conn.recv(65536)
        if not more:
            return None
        rest += more
    return head.split(b"\r\n", 1)[0], rest[length:]


def _answer(number: int, request_line: bytes) -> bytes:
    body = json.dumps({"answer": number, "request": request_line.decode()}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


class _StrayServer:
    """A raw HTTP server that answers each request, then sends its answer again: ``late``
    (once the test says the client has read the answer and the connection is idle, by
    releasing ``copy_now``) or at once, in the same send. ``strays`` is set each time the
    copy is out."""

    def __init__(self, *, late: bool) -> None:
        self.late = late
        self.strays = threading.Semaphore(0)
        self.copy_now = threading.Semaphore(0)
        self.answered = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, name="k8s-apiserver-stray")]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            thread = threading.Thread(target=self._serve, args=(conn,), name="k8s-apiserver-s")
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        with conn, contextlib.suppress(OSError):  # the client closes with copies unread
            while (request := _read_request(conn, pending)) is not None:
                line, pending = request
                self.answered += 1
                answer = _answer(self.answered, line)
                if self.late:
                    conn.sendall(answer)
                    # the fault: a copy while the connection is idle. A fixed pause would let
                    # a slow client read both at once, which is the other test's case.
                    if self.copy_now.acquire(timeout=5):
                        conn.sendall(answer)
                else:
                    conn.sendall(answer + answer)
                self.strays.release()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture(name="stray")
def _stray(request: pytest.FixtureRequest) -> Iterator[_StrayServer]:
    server = _StrayServer(late=request.param)
    try:
        yield server
    finally:
        server.close()


def _local_channel(port: int, **settings: Any) -> _http.Channel:
    """A channel to 127.0.0.1:``port``, 5 s to connect and to read unless ``settings`` say."""
    settings = {"connect_timeout": 5, "read_timeout": 5, **settings}
    return _http.Channel("127.0.0.1", port, [("Host", f"127.0.0.1:{port}")], **settings)


@pytest.mark.parametrize("stray", [True], indirect=True, ids=["late"])
@pytest.mark.parametrize("method", ["POST", "PATCH", "GET"])
def test_bytes_that_come_while_a_connection_is_idle_are_never_an_answer(stray, method) -> None:
    """The server sends each answer again after the client has read it, while the
    connection is idle. The check before reuse finds the copy: that connection is closed, and every
    request gets its own answer (before, each got the previous one's from then on)."""
    channel = _local_channel(stray.port)
    try:
        for number in range(1, 6):
            answer = channel.request(method, f"/r{number}", JSON, b"{}")
            assert json.loads(answer.body)["request"] == f"{method} /r{number} HTTP/1.1"
            stray.copy_now.release()
            assert stray.strays.acquire(timeout=5)  # the copy has come
        assert channel.out_of_step == 4  # every reuse met a copy
        assert channel.connections_opened == 5
        assert channel.resends == 0  # found before any request was sent on it
    finally:
        channel.close()


@pytest.mark.parametrize("stray", [False], indirect=True, ids=["at-once"])
def test_bytes_right_after_an_answer_fail_a_post_and_resend_a_get(stray) -> None:
    """The copy follows the answer in the same read: that answer may have been meant for
    another request. A POST (or a PATCH) may have been carried out: a transport error, for
    the writer to retry as it may. A GET is sent once more, on a new connection."""
    channel = _local_channel(stray.port)
    try:
        for method in ("POST", "PATCH"):
            with pytest.raises(_http_parser.ProtocolError) as raised:
                channel.request(method, "/events", JSON, b"{}")
            assert sink.is_retryable(raised.value)
            assert _errors.may_have_landed(raised.value)
        answered = stray.answered
        with pytest.raises(_http_parser.ProtocolError):  # the resent GET meets a copy again
            channel.request("GET", "/pods/web-0", JSON, b"")
        assert stray.answered == answered + 2
        assert channel.resends == 1
        assert channel.out_of_step == 4
        assert channel.idle_connections == 0
    finally:
        channel.close()


class _Scripted(_StrayServer):
    """A raw HTTP server that answers each request with the next of ``answers``, once."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        super().__init__(late=False)

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        with conn, contextlib.suppress(OSError):
            while (request := _read_request(conn, pending)) is not None:
                pending = request[1]
                conn.sendall(self.answers.pop(0))


class _Trickling(_StrayServer):
    """A raw HTTP server that answers each request one byte every ``pause`` seconds."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.done = threading.Event()  # set when the test has its result: stop trickling
        super().__init__(late=False)

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            if (request := _read_request(conn, b"")) is not None:
                for byte in _answer(1, request[0]):
                    conn.sendall(bytes([byte]))
                    if self.done.wait(self.pause):
                        return


def _seconds_to_time_out(channel: _http.Channel, method: str, path: str) -> float:
    """How long ``method path`` on ``channel`` takes to end in the TimeoutError it must."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        channel.request(method, path, JSON, b"{}" if method == "POST" else b"")
    return time.monotonic() - started


def _trickled_request_seconds(pause: float, read_timeout: float) -> float:
    """The seconds to time out of a POST to a server that answers a byte every ``pause``."""
    server = _Trickling(pause)
    channel = _local_channel(server.port, read_timeout=read_timeout)
    try:
        return _seconds_to_time_out(channel, "POST", "/r1")
    finally:
        server.done.set()
        channel.close()
        server.close()


def test_an_answer_that_trickles_in_times_out_within_the_read_timeout_in_all() -> None:
    """A server (or a proxy) that answers one byte at a time never lets a single read wait
    out the read timeout, yet the request must end near it: ``request_timeout`` is
    seconds per request (docs/configuration.md). Each request once took as long as the
    server pleased (an answer of 100 bytes at one a second held a writer 100 s)."""
    # the whole answer takes over 5 s
    assert _trickled_request_seconds(pause=0.05, read_timeout=0.3) < 4.5


def test_an_answer_that_stalls_after_its_first_bytes_ends_at_the_read_timeout() -> None:
    """A server whose answer starts just before the read timeout runs out, then stalls: the
    request ends at the read timeout, not one more read timeout after the answer's first
    bytes (it once took nearly twice ``request_timeout``, which bounds the whole answer)."""
    # the next byte comes at 0.9 s, the one after at 1.8 s: one more read timeout after
    # the first byte would end at 1.9 s at the earliest
    assert _trickled_request_seconds(pause=0.9, read_timeout=1.0) < 1.8


class _TlsBreaksSecondAnswer:
    """An HTTPS server whose first answer on each connection is an event, and whose second
    is bytes that are not TLS (a middlebox that writes into the stream)."""

    def __init__(self) -> None:
        import trustme  # the dev extra's

        self._ca = trustme.CA()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1").configure_cert(self._context)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="test-tls-breaks")]
        self._threads[0].start()

    def configuration(self, directory: str) -> Any:
        from kubernetes import client

        configuration = client.Configuration(host=f"https://127.0.0.1:{self.port}")
        configuration.ssl_ca_cert = os.path.join(directory, "ca.pem")
        self._ca.cert_pem.write_to_path(configuration.ssl_ca_cert)
        return configuration

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn = self._context.wrap_socket(self._listener.accept()[0], server_side=True)
                self._open.append(conn)
                conn.settimeout(5)
                self._threads.append(threading.Thread(target=self._serve, args=(conn,)))
                self._threads[-1].start()

    @staticmethod
    def _serve(conn: ssl.SSLSocket) -> None:
        stored = json.dumps(_event().to_api()).encode()
        with contextlib.suppress(OSError):
            _read_request(conn, b"")
            conn.sendall(
                b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(stored), stored)
            )
            if _read_request(conn, b"") is None:
                return
            with socket.socket(fileno=os.dup(conn.fileno())) as raw:  # under the TLS layer
                raw.sendall(b"HTTP/1.1 408 Request Timeout\r\n\r\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (Linux)
        self._listener.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        for conn in self._open:
            conn.close()


def test_a_tls_connection_that_breaks_after_answering_is_a_transport_error(
    tmp_path: Any,
) -> None:
    """A kept-alive HTTPS connection whose next answer is not TLS (a middlebox writing into
    the stream, a corrupted record): its handshake and certificates proved good, so this
    is a connection broken, retried (the write may have landed), not a TLS failure. It was
    reported as one ("check the CA the client trusts ..."), and the write was not retried."""
    server = _TlsBreaksSecondAnswer()
    try:
        events_sink = sink.KubernetesEventSink(
            client.ApiClient(server.configuration(str(tmp_path))), qps=0
        )
        try:
            events_sink.create(_event())
            with pytest.raises(Exception) as raised:  # noqa: PT011 - a transport's error
                events_sink.create(_event())
            assert events_sink.create(_event()).name == _event().name  # a new connection
        finally:
            events_sink.close()
            events_sink.api_client.close()
    finally:
        server.close()
    assert not isinstance(raised.value, sink.ApiStatusError), raised.value
    assert sink.is_retryable(raised.value)
    assert _errors.may_have_landed(raised.value)
    assert "the TLS connection broke" in str(raised.value)


class _TricklingRelay:
    """A TCP relay to ``port`` that passes the client's bytes on at once and the server's
    one byte every ``pause`` seconds (a congested or hostile middlebox)."""

    def __init__(self, port: int, pause: float) -> None:
        self._port = port
        self._pause = pause
        self._done = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        self._threads = [threading.Thread(target=self._relay, name="test-trickling-relay")]
        self._threads[0].start()

    def _relay(self) -> None:
        with contextlib.suppress(OSError):
            inside = self._listener.accept()[0]
            outside = socket.create_connection(("127.0.0.1", self._port))
            self._sockets += [inside, outside]
            forward = threading.Thread(target=self._pipe, args=(inside, outside, 0.0))
            self._threads.append(forward)
            forward.start()
            self._pipe(outside, inside, self._pause)

    def _pipe(self, source: socket.socket, target: socket.socket, pause: float) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 if pause else 65536):
                target.sendall(data)
                if self._done.wait(pause):
                    return

    def close(self) -> None:
        self._done.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()


def test_a_tls_handshake_that_trickles_in_ends_within_the_connect_timeout() -> None:
    """A server (or a middlebox) that sends its part of the TLS handshake a byte at a time
    never lets one wait run out the connect timeout; the handshake must end within it all
    the same, as urllib3's does (the ssl module gives a handshake one deadline). It once
    held the request for as long as the server's certificates took to trickle in."""
    with LocalApiServer(tls=True) as server:
        relay = _TricklingRelay(server.port, pause=0.02)  # the server's part takes over 20 s
        ca_file = server.api_client().configuration.ssl_ca_cert
        tls = _http.TlsSettings("127.0.0.1", ca_file=ca_file)
        channel = _local_channel(relay.port, connect_timeout=0.5, tls=tls)
        try:
            # the whole handshake takes over 20 s
            assert _seconds_to_time_out(channel, "GET", "/api/v1") < 10
        finally:
            channel.close()
            relay.close()


def test_a_tls_handshake_ends_by_the_flushs_deadline() -> None:
    """A flush writing on its own thread (no writer can start: Python 3.12 at exit) ends its
    requests by its deadline (``_process.requests_end_by``), the TLS handshake included: a
    server that accepted the connection and never answered the handshake held it for the
    whole connect timeout (5 s here) past a 0.5 s deadline."""
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never speaks
        tls = _http.TlsSettings("127.0.0.1")
        channel = _local_channel(listener.getsockname()[1], tls=tls)
        try:
            with _process.requests_end_by(time.monotonic() + 0.5):
                assert _seconds_to_time_out(channel, "GET", "/api/v1") < 2.5
        finally:
            channel.close()


def _raw(status: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        len(data),
        data,
    )


def _status(code: int, reason: str, name: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "details": {"name": name, "kind": "events"},
    }


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("POST", _raw("201 Created", _event(name="web-9.1").to_api())),
        ("PATCH", _raw("200 OK", _event(name="web-0.1", namespace="other").to_api())),
        ("PATCH", _raw("409 Conflict", _status(409, "AlreadyExists", "web-0.1"))),
        ("POST", _raw("409 Conflict", _status(409, "AlreadyExists", "web-9.1"))),
        ("PATCH", _raw("404 Not Found", _status(404, "NotFound", "web-9.1"))),
    ],
    ids=[
        "created-another-event",
        "patched-in-another-namespace",
        "already-exists-to-a-patch",
        "already-exists-about-another",
        "not-found-about-another",
    ],
)
def test_an_answer_about_another_object_is_never_taken_for_the_write(method, answer) -> None:
    """What the channel's check before reuse may come too early to see (bytes that arrive
    between the check and the answer): an answer that is not about the event written. It
    fails the write as in transport (it may have been carried out), and the idle
    connections are closed."""
    server = _Scripted([answer])
    events_sink = sink.KubernetesEventSink.from_url(f"http://127.0.0.1:{server.port}", qps=0)
    try:
        event = _event(name="web-0.1")

        def write() -> models.Event:
            if method == "POST":
                return events_sink.create(event)
            return events_sink.patch(event, b'{"count":2}')

        with pytest.raises(_http_parser.ProtocolError, match="meant for another request") as raised:
            write()
        assert sink.is_retryable(raised.value)
        assert _errors.may_have_landed(raised.value)
        assert _channel(events_sink).idle_connections == 0
    finally:
        events_sink.close()
        server.close()


@pytest.mark.parametrize(
    "answer",
    [
        _raw(
            "201 Created",
            {
                **_event(name="web-0.1").to_api(),
                "metadata": {"name": "web-0.1", "namespace": "default", "uid": "uid-of-an-event"},
            },
        ),
        _raw(
            "200 OK",
            {
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": {"name": "web-1", "namespace": "default", "uid": "uid-of-web-1"},
            },
        ),
        _raw("404 Not Found", _status(404, "NotFound", "web-0.1")),
    ],
    ids=["an-event", "another-pod", "not-found-about-an-event"],
)
def test_an_answer_about_another_object_is_never_taken_for_the_pods_uid(answer) -> None:
    """The read of the pod's uid (``default_involved: pod`` without ``POD_UID``) takes only
    an answer about that pod: another request's answer (an event's uid, another pod's, a
    Status about an event) would put a wrong uid into every event about the pod, or none,
    for good. It fails as in transport, to be read again, and the idle connections close."""
    server = _Scripted([answer])
    events_sink = sink.KubernetesEventSink.from_url(f"http://127.0.0.1:{server.port}", qps=0)
    try:
        with pytest.raises(_http_parser.ProtocolError, match="meant for another request") as raised:
            events_sink.read_pod_uid("default", "web-0")
        assert sink.is_retryable(raised.value)
        assert _channel(events_sink).idle_connections == 0
    finally:
        events_sink.close()
        server.close()


def test_an_answer_about_the_event_written_is_taken() -> None:
    """AlreadyExists about the event a create wrote, NotFound about the event a patch
    wrote: real answers, which the writer acts on."""
    server = _Scripted(
        [
            _raw("409 Conflict", _status(409, "AlreadyExists", "web-0.1")),
            _raw("404 Not Found", _status(404, "NotFound", "web-0.1")),
        ]
    )
    events_sink = sink.KubernetesEventSink.from_url(f"http://127.0.0.1:{server.port}", qps=0)
    try:
        with pytest.raises(sink.ApiStatusError) as exists:
            events_sink.create(_event(name="web-0.1"))
        with pytest.raises(sink.ApiStatusError) as missing:
            events_sink.patch(_event(name="web-0.1"), b'{"count":2}')
    finally:
        events_sink.close()
        server.close()
    assert (exists.value.is_already_exists, exists.value.name) == (True, "web-0.1")
    assert missing.value.is_not_found


@pytest.mark.parametrize("method", ["POST", "PATCH", "GET"])
def test_a_success_whose_body_is_no_event_is_a_retryable_value_error(method) -> None:
    """A 2xx answer whose JSON is not an event (a proxy's page, a truncated object): the
    write may have landed, so it is a ValueError naming the request, which the writer
    retries; the sink's own read of the body never escapes as an AttributeError."""
    server = _Scripted([_raw("200 OK", {"metadata": 5})])
    events_sink = sink.KubernetesEventSink.from_url(f"http://127.0.0.1:{server.port}", qps=0)
    event = _event(name="web-0.1")
    calls = {
        "POST": lambda: events_sink.create(event),
        "PATCH": lambda: events_sink.patch(event, b'{"count":2}'),
        "GET": lambda: events_sink.read(event),
    }
    try:
        with pytest.raises(ValueError, match=r"^unreadable answer to ") as raised:
            calls[method]()
    finally:
        events_sink.close()
        server.close()
    path = "/api/v1/namespaces/default/events" + ("" if method == "POST" else "/web-0.1")
    assert str(raised.value).startswith(f"unreadable answer to {method} {path}: ")
    assert type(raised.value) is ValueError
    assert sink.is_retryable(raised.value)


def _relay(
    upstream: int, stop: threading.Event
) -> tuple[socket.socket, list[threading.Thread], list[socket.socket]]:
    """A TCP relay to ``upstream`` (a proxy that misbehaves): it sends every second answer
    chunk of the server twice, the copy 3 ms later when the client has sent nothing since
    (bytes that come while the connection is idle), else at once behind the answer (bytes
    that follow an answer). Its connections' sockets, for the caller to close once its
    threads are joined."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    threads: list[threading.Thread] = []
    sockets: list[socket.socket] = []

    def forward(source: socket.socket, target: socket.socket, sent: list[int]) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sent[0] += 1
                target.sendall(chunk)

    def answer(source: socket.socket, target: socket.socket, sent: list[int]) -> None:
        with contextlib.suppress(OSError):
            for number in itertools.count(1):
                chunk = source.recv(65536)
                if not chunk:
                    break
                if number % 2:
                    target.sendall(chunk)
                    continue
                requests = sent[0]
                target.sendall(chunk)
                time.sleep(0.003)
                if sent[0] == requests:  # idle: the copy comes while no request is out
                    target.sendall(chunk)
                else:  # a request went out meanwhile: the next answer brings the copy along
                    chunk = source.recv(65536)
                    if not chunk:
                        break
                    target.sendall(chunk + chunk)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            sockets.append(client)
            server = socket.create_connection(("127.0.0.1", upstream))
            sockets.append(server)
            server.settimeout(None)
            sent = [0]
            for target, args in (
                (forward, (client, server, sent)),
                (answer, (server, client, sent)),
            ):
                thread = threading.Thread(target=target, args=args, name="k8s-apiserver-relay")
                threads.append(thread)
                thread.start()

    acceptor = threading.Thread(target=accept, name="k8s-apiserver-relay")
    threads.append(acceptor)
    acceptor.start()
    return listener, threads, sockets


def test_writes_through_a_proxy_that_repeats_answers_are_counted_against_their_events() -> None:
    """Between the sink and the server, a proxy sends every second answer twice (3 ms later
    while the connection is idle, or right behind the next answer), while 1 POST in 5
    fails with a 500. 300 occurrences about 30 pods from 3
    threads: every pod's count on the server is what was logged, and the writer counts
    each write against its own event (nothing failed, nothing unaccounted). Before, each
    answer after the first copy was read as the next request's."""
    stop = threading.Event()
    with LocalApiServer() as server:
        server.inject("POST", "/events", times=None, status=500, probability=0.2, seed=7)
        listener, threads, sockets = _relay(server.port, stop)
        relayed = sink.KubernetesEventSink.from_url(
            f"http://127.0.0.1:{listener.getsockname()[1]}", qps=0
        )
        broadcaster = recorder.EventBroadcaster(sleep_duration=0.05)
        broadcaster.start_recording_to_sink(relayed)
        try:
            record = broadcaster.new_recorder(models.EventSource(component="ctl", host="n1"))

            logged = [Counter[str]() for _ in range(3)]

            def log(thread: int) -> None:
                for number in range(100):
                    name = f"web-{(thread * 7 + number) % 30}"
                    pod = models.ObjectReference(
                        kind="Pod", namespace="default", name=name, uid="u", api_version="v1"
                    )
                    record.event(pod, models.WARNING, "BackOff", "Back-off pulling image")
                    logged[thread][name] += 1

            loggers = [threading.Thread(target=log, args=(n,)) for n in range(3)]
            for thread in loggers:
                thread.start()
            for thread in loggers:
                thread.join(30)
            assert broadcaster.flush(30)
            stats = dict(broadcaster.stats())
            counts = Counter[str]()
            for event in server.events("default"):
                counts[event["involvedObject"]["name"]] += event["count"]
        finally:
            broadcaster.shutdown(5)
            relayed.close()
            stop.set()
            listener.close()
    for thread in threads:
        thread.join(5)
    for relayed_socket in sockets:
        relayed_socket.close()
    assert counts == sum(logged, Counter[str]())
    assert len(counts) == 30
    assert (stats["accepted"], stats["failed"], stats["dropped"]) == (300, 0, 0)
    assert stats["created"] + stats["patched"] + stats["coalesced"] == 300
    assert _channel(relayed).out_of_step > 0


@pytest.mark.parametrize(
    ("seconds", "timeval"),
    [
        (10.0, (10, 0)),
        (2.5, (2, 500_000)),
        (0.25, (0, 250_000)),
        (0.000_001, (0, 1)),
        (0.999_999_6, (1, 0)),  # rounds up into the next whole second, never 1,000,000 µs
        (3.000_000_4, (3, 0)),
        (1e-9, (0, 1)),  # below a microsecond: the shortest timeout, not none
        (0.0, (0, 1)),
    ],
)
def test_the_kernel_timeout_is_the_read_timeout_to_the_microsecond_and_never_none(
    seconds: float, timeval: tuple[int, int]
) -> None:
    """On Linux a plain connection's read and send timeouts are the kernel's
    (``SO_RCVTIMEO``/``SO_SNDTIMEO``): a ``struct timeval`` of the read timeout, rounded to
    the microsecond, its microseconds below a million, and never all zero, which the
    kernel takes for "wait forever"."""
    packed = _http._timeval(seconds)
    assert struct.unpack("@ll", packed) == timeval


def test_tls_settings_never_show_the_private_key_they_keep() -> None:
    """The settings keep the client key's bytes (for a file the official client deletes at
    exit): their repr, which a debugger or a report of the channel's locals shows, held the
    key. It names the files, never their contents."""
    key = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
    settings = _http.TlsSettings("api", key_file="/tmp/client.key", kept={"/tmp/client.key": key})
    assert "/tmp/client.key" in repr(settings)
    assert "PRIVATE KEY" not in repr(settings)
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in repr(settings)
