"""The sink's keep-alive channel (``_http``) against the local API server, over real sockets.

Nothing here stands in for the HTTP layer: every request crosses a socket to a
``LocalApiServer`` (HTTP, or HTTPS with a token), which counts the connections it accepts,
closes kept-alive ones when it stops listening, drops, delays and chunks answers.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from k8s_logging_events import _http, _retry, models, recorder, sink
from k8s_logging_events.testing import FakeClock, LocalApiServer
from tests.test_sink import _event

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
    channel = events_sink._lean()
    assert channel is not None, "the write path is the official client's, not the channel"
    return channel


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

    A connection that has been idle is checked before reuse; a busy one is not, and the
    write that meets the close before any answer is sent once more on a new connection.
    Either way the write succeeds, once.
    """
    monkeypatch.setattr(_http, "IDLE_CHECK_SECONDS", 0.0 if idle_check else math.inf)
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
    assert _retry.may_have_landed(raised.value)
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
    with pytest.raises(_http.ProtocolError):
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
    events_sink = make_sink(served, request_timeout=(5.0, 0.2))
    events_sink.create(_event(name="web-0.1"))
    served.inject("POST", action="delay", delay=60)  # ends when the server stops
    with pytest.raises(TimeoutError) as raised:
        events_sink.create(_event(name="web-0.2"))
    assert _retry.is_timeout(raised.value)
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
    events_sink = make_sink(served)
    if failure == "429":
        served.inject("POST", status=429, retry_after=7, times=2)
    elif failure == "503":
        served.inject("POST", status=503, times=2)
    elif failure == "500-message":
        served.inject("POST", status=500, message="etcd is unhappy", times=2)
    elif failure == "missing-namespace":
        event = _event(namespace="nowhere")
    elif failure == "exists":
        events_sink.create(event)
    elif failure == "invalid":  # the involved object is in another namespace
        event = _event(
            involved_object=models.ObjectReference(
                kind="Pod", namespace="elsewhere", name="web-0", uid="u", api_version="v1"
            )
        )
    elif failure == "unauthorized":
        if served.token is None:
            pytest.skip("the plain server asks for no credentials")
        events_sink.api_client.configuration.api_key = {"authorization": "wrong"}
    path = events_sink._path(event.namespace)
    with pytest.raises(sink.ApiStatusError) as official:
        events_sink._call("POST", path, events_sink._body(event), JSON)
    with pytest.raises(sink.ApiStatusError) as lean:
        events_sink.create(event)
    _same_failure(official.value, lean.value)
    if failure == "429":
        assert lean.value.retry_after == 7.0


def test_retry_after_is_read_from_the_header_in_any_case() -> None:
    """The channel keeps header names in lower case; the Retry-After reading takes both."""
    assert sink._retry_after({"retry-after": "3"}, {}) == 3.0
    assert sink._retry_after({"Retry-After": "4"}, {"retryAfterSeconds": 9}) == 4.0
    assert sink._retry_after({}, {"retryAfterSeconds": 9}) == 9.0


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


# -- what a server must not send ---------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 20 OK",  # a two-digit status
        b"HTTP/1.1 2000 OK",
        b"ICY 200 OK",  # not HTTP
        b"HTTP/2 200",  # not HTTP/1.x
        b"HTTP/1.1 200 OK\r\nno colon here",
        b"HTTP/1.1 200 OK\r\nX-Ok: 1\r\n folded: value",  # obsolete line folding
        b"HTTP/1.1 200 OK\r\n: no name",
        b"HTTP/1.1 200 OK\r\nName : space before the colon",
    ],
)
def test_an_answer_head_that_is_not_http_is_a_protocol_error(head: bytes) -> None:
    with pytest.raises(_http.ProtocolError):
        _http._parse_head(head)


def test_an_answer_head_is_read_by_lower_case_name() -> None:
    version, status, reason, headers = _http._parse_head(
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nX-A: 1\r\nx-a: 2"
    )
    assert (version, status, reason) == (b"HTTP/1.1", 429, "Too Many Requests")
    assert headers == {"retry-after": "3", "x-a": "1, 2"}


@pytest.mark.parametrize("value", ["5, 6", "-1", "+5", "1e3", " ", "٣", str(2**40)])
def test_a_content_length_that_cannot_be_trusted_is_a_protocol_error(value: str) -> None:
    """Conflicting copies, signs, non-ASCII digits, absurd sizes: never read as a length."""
    with pytest.raises(_http.ProtocolError):
        _http._content_length(value)


def test_repeated_equal_content_lengths_are_one() -> None:
    assert _http._content_length("12, 12") == 12
