"""The library's errors: when a failed write is tried again, and how a user reads a failure.

First client-go's schedule and the wait after a 429. Then write failures as a user reads
them (reported while the app runs, explained, counted), against the local Events API server
over real HTTP, with a FakeClock for every back-off and report interval: an unreachable
server, a 401 (which credentials were sent, never their value), a 403 (which permission,
and the Role to grant it), a 404 of events.k8s.io/v1 where the server does not serve it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client
from urllib3.exceptions import ProxyError

from k8s_logging_events import _errors, _process, _transport, models, sink
from k8s_logging_events._http_parser import Answer
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests._ports import blackholed_url, refused_url
from tests.reliability_scenarios import on_library_logger
from tests.test_sink import _event, _on_official_path

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}
SECRET = "s3cret-token-value"


def _throttled(retry_after: float | None = None) -> sink.ApiStatusError:
    return sink.ApiStatusError(429, "TooManyRequests", "slow down", retry_after=retry_after)


@dataclass
class Tries:
    """A write's counts, as the retry schedule reads and bumps them."""

    attempts: int = 0
    throttled: int = 0


def test_a_429_without_retry_after_backs_off_doubling_up_to_the_cap() -> None:
    """1, 2, 4 ... seconds, capped at 30, each scaled into [0.5, 1) by the random source."""
    high = _errors.RetrySchedule(2, 10.0, lambda: 0.999999)
    low = _errors.RetrySchedule(2, 10.0, lambda: 0.0)
    tries = Tries()
    waits = [high.after_failure(tries, _throttled()) for _ in range(8)]
    assert waits == pytest.approx([1, 2, 4, 8, 16, 30, 30, 30], rel=1e-5)
    assert tries == Tries(attempts=0, throttled=8)
    low_tries = Tries()
    assert [low.after_failure(low_tries, _throttled()) for _ in range(6)][::5] == [0.5, 15.0]
    assert _errors.THROTTLE_MAX_SECONDS == 30.0


def test_a_429_with_retry_after_waits_exactly_that_long() -> None:
    """Retry-After is the wait after a 429, shorter or longer than the back-off; at most a day."""
    schedule = _errors.RetrySchedule(2, 10.0, lambda: 0.5)
    assert schedule.after_failure(Tries(throttled=6), _throttled(retry_after=3.0)) == 3.0
    assert schedule.after_failure(Tries(), _throttled(retry_after=0.25)) == 0.25
    huge = _throttled(retry_after=1e12)
    assert schedule.after_failure(Tries(), huge) == _errors.MAX_WAIT_SECONDS


@pytest.mark.parametrize("retry_after", [0.0, -5.0, float("nan"), float("-inf")])
def test_a_429_with_a_zero_retry_after_backs_off_as_without_one(retry_after: float) -> None:
    """A 429 spends no try, so ``Retry-After: 0`` taken literally would retry at once for as
    long as the server throttles: a hot loop against it. It backs off as a 429 without one;
    so does a negative or NaN value, which only an application's own sink can give."""
    schedule = _errors.RetrySchedule(2, 10.0, lambda: 0.999999)
    tries = Tries()
    waits = [schedule.after_failure(tries, _throttled(retry_after=retry_after)) for _ in range(4)]
    assert waits == pytest.approx([1, 2, 4, 8], rel=1e-5)
    assert tries == Tries(attempts=0, throttled=4)


def test_failures_follow_client_go_s_schedule_and_stop_after_max_tries() -> None:
    """The first back-off is sleep_duration times the random number, then sleep_duration;
    an error that is not worth another try gives up at once."""
    schedule = _errors.RetrySchedule(3, 10.0, lambda: 0.25)
    error = ConnectionResetError("reset")
    tries = Tries()
    assert [schedule.after_failure(tries, error) for _ in range(3)] == [2.5, 10.0, None]
    assert tries == Tries(attempts=3, throttled=0)
    assert schedule.after_failure(Tries(), sink.ApiStatusError(422, "Invalid")) is None
    assert schedule.after_failure(Tries(), sink.RequestConstructionError("bad")) is None


@pytest.mark.parametrize(
    ("status", "retried"),
    [(429, True), (500, True), (503, True), (400, False), (404, False), (409, False), (422, False)],
)
def test_throttling_and_every_5xx_are_retried_other_statuses_are_not(
    status: int, retried: bool
) -> None:
    """The server's trouble (any 5xx, 500 too) and throttling are worth another try; a 4xx,
    the server refusing the write itself, is not."""
    error = sink.ApiStatusError(status, "Reason")
    assert sink.is_retryable(error) is retried
    schedule = _errors.RetrySchedule(3, 10.0, lambda: 0.25)
    assert (schedule.after_failure(Tries(), error) is not None) is retried


def test_a_429_never_spends_a_try_and_another_failure_ends_the_run_of_429s() -> None:
    """With one try allowed, 429s still wait; the next other failure gives up, and a 429
    after it starts its back-off again from 1 s."""
    schedule = _errors.RetrySchedule(1, 10.0, lambda: 0.999999)
    tries = Tries()
    assert schedule.after_failure(tries, _throttled()) == pytest.approx(1, rel=1e-5)
    assert schedule.after_failure(tries, _throttled()) == pytest.approx(2, rel=1e-5)
    assert schedule.after_failure(tries, sink.ApiStatusError(503, "ServiceUnavailable")) is None
    assert tries == Tries(attempts=1, throttled=0)
    assert schedule.after_failure(tries, _throttled()) == pytest.approx(1, rel=1e-5)


def test_an_attempt_lost_to_other_writers_tries_again_soon_on_a_growing_jittered_wait() -> None:
    """A ContentionError (other processes wrote the event in every round of one attempt) is
    no failure of the server: the next try waits at most 0.1 s, then 0.2, 0.4 ... (never
    beyond sleep_duration), each scaled into [0, 1) by the random source, so that workers
    flushing one event at one instant (an exit) spread out and each gets its turn within
    the exit's flush_timeout (5 s), not after sleep_duration (10 s). Each spends a try."""
    high = _errors.RetrySchedule(12, 10.0, lambda: 0.999999)
    tries = Tries()
    waits = [high.after_failure(tries, _errors.ContentionError("others")) for _ in range(9)]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10], rel=1e-5)
    assert tries == Tries(attempts=9, throttled=0)
    low = _errors.RetrySchedule(12, 10.0, lambda: 0.0)
    assert low.after_failure(Tries(), _errors.ContentionError("others")) == 0.0
    short = _errors.RetrySchedule(2, 0.05, lambda: 0.999999)
    tries = Tries()
    assert [short.after_failure(tries, _errors.ContentionError("x")) for _ in range(2)] == [
        pytest.approx(0.05, rel=1e-5),
        None,
    ]


def test_a_5xx_waits_at_least_its_retry_after() -> None:
    """Retry-After on another failure lengthens the schedule's wait, never shortens it."""
    schedule = _errors.RetrySchedule(12, 10.0, lambda: 0.5)
    unavailable = sink.ApiStatusError(503, "ServiceUnavailable", retry_after=30.0)
    assert schedule.after_failure(Tries(), unavailable) == 30.0
    brief = sink.ApiStatusError(503, "ServiceUnavailable", retry_after=1.0)
    assert schedule.after_failure(Tries(attempts=1), brief) == 10.0


def test_the_wait_is_float_seconds_when_a_sink_gives_retry_after_as_an_int() -> None:
    """A sink of the application's own may raise ``ApiStatusError(429, retry_after=5)``: the
    wait, which reports pass on as a record's arguments, is still float seconds."""
    schedule = _errors.RetrySchedule(3, 10.0, lambda: 0.5)
    for status in (429, 503):
        error = sink.ApiStatusError(status, "Reason", retry_after=30)
        wait = schedule.after_failure(Tries(), error)
        assert (type(wait), wait) == (float, 30.0)


@pytest.mark.parametrize(
    ("error", "landed"),
    [
        (ConnectionResetError("reset"), True),
        (ConnectionRefusedError("refused"), False),
        (sink.ApiStatusError(500, "InternalError"), True),
        (sink.ApiStatusError(429, "TooManyRequests"), False),
        (sink.ApiStatusError(409, "Conflict"), False),
        (_errors.ContentionError("others wrote"), False),
        (sink.RequestConstructionError("bad"), False),
    ],
)
def test_what_may_have_landed(error: Exception, landed: bool) -> None:
    """Only a lost answer or a 5xx leaves open whether the server stored the write (a
    connection refused at connect sent nothing)."""
    assert _errors.may_have_landed(error) is landed
    assert _errors.is_throttled(error) is (getattr(error, "status", 0) == 429)


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
def test_a_write_refused_at_connect_never_landed_so_another_writer_costs_it_nothing(
    api: str,
) -> None:
    """The API server restarts (connections refused) while two workers of one source log
    about one pod: worker A's patch is refused before anything is sent, so it cannot have
    landed; meanwhile B writes its 5. A's retry meets B's newer event and must still add its
    own 2, not take them as written because the server's count went past its target: the
    server holds all 9 occurrences logged."""
    clock = FakeClock()
    gate, waiting = threading.Event(), threading.Event()

    def held_sleep(seconds: float, cancel: threading.Event) -> bool:
        waiting.set()  # A's write failed and waits for its retry until B has written
        gate.wait(30)
        return clock.sleep(seconds, cancel)

    with LocalApiServer(clock=clock) as server:
        handlers = [
            KubernetesEventHandler(
                component="ctl",
                host="node-1",
                sink=server.url,
                api=api,
                qps=0,
                clock=clock,
                sleep=sleep,
                sleep_duration=1,
                flush_timeout=20,
            )
            for sleep in (held_sleep, clock.sleep)
        ]
        logs = [_logger(f"refused{n}{api}", handler) for n, handler in enumerate(handlers)]
        try:
            for log, handler in zip(logs, handlers, strict=True):  # A creates, B continues
                log.warning("Back-off", extra={"involved": POD})
                assert handler.drain(10)
            server.refuse_connections()
            for _ in range(2):
                logs[0].warning("Back-off", extra={"involved": POD})
            assert waiting.wait(10)
            server.accept_connections()
            for _ in range(5):
                logs[1].warning("Back-off", extra={"involved": POD})
            assert handlers[1].drain(10)
            gate.set()
            assert handlers[0].drain(10)
        finally:
            gate.set()
            for handler in handlers:
                handler.close()
        if api == "v1":
            counts = [event["count"] for event in server.events()]
        else:
            counts = [event["series"]["count"] for event in server.events_v1()]
    assert counts == [9]


@pytest.mark.parametrize(
    ("field_path_bytes", "refusal"),
    [(2_000_000, "request is too large"), (2_200_000, "larger than max")],
    ids=["etcds-request-limit", "etcds-client-send-limit"],
)
def test_an_event_over_etcds_limits_is_given_up_after_one_attempt(
    field_path_bytes: int, refusal: str
) -> None:
    """An involved object's fieldPath of 2 MB (the one field without a limit of its own)
    makes a body under the 3 MiB the API server reads but an event over etcd's request
    limit (1.5 MiB; over 2 MiB its client refuses it first, in gRPC's words): the server's
    500 would come again on every try, each one resending the megabytes and holding back the
    object's other events, so the write is given up at the first, counted failed and said so."""
    clock = FakeClock()
    involved = models.ObjectReference(
        kind="Pod", namespace="default", name="web-0", field_path="x" * field_path_bytes
    )
    with LocalApiServer(clock=clock) as server:
        handler = KubernetesEventHandler(
            component="ctl", sink=server.url, clock=clock, sleep=clock.sleep, flush_timeout=20
        )
        log = _logger("etcd-limit", handler)
        with on_library_logger(ClockedReports(clock)) as reports:
            try:
                log.error("dump", extra={"involved": involved})
                assert handler.drain(10)
                stats = handler.stats()
            finally:
                log.removeHandler(handler)
                handler.close()
        posts = [r for r in server.requests if r.method == "POST"]
    assert (len(posts), stats["failed"], clock.sleeps) == (1, 1, [])
    assert any(refusal in text for text in reports.messages()), reports.messages()


@pytest.mark.parametrize(
    "message",
    [
        "rpc error: code = ResourceExhausted desc = trying to send message larger than max "
        "(2200431 vs. 2097152)",
        "rpc error: code = InvalidArgument desc = etcdserver: request is too large",
        "etcdserver: Request is too large",
    ],
)
def test_etcds_refusal_of_a_large_event_is_not_retried_in_any_wording(message: str) -> None:
    """Over 2 MiB, etcd's client refuses the write in gRPC's words before etcd sees it, and
    the refusal may come with its gRPC code or another casing: each is the same
    unclassified 500 that no retry mends."""
    assert not sink.ApiStatusError(500, "", message).is_retryable
    assert sink.ApiStatusError(500, "", "etcdserver: request timed out").is_retryable


class ClockedReports(logging.Handler):
    """Keeps the library's reports with the fake clock's monotonic reading when each came."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.seen: list[tuple[float, logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((self.clock.monotonic(), record))

    def messages(self) -> list[str]:
        return [record.getMessage() for _, record in self.seen]


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer(token=SECRET) as server:
        yield server


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="reports")
def _reports(clock: FakeClock) -> Iterator[ClockedReports]:
    with on_library_logger(ClockedReports(clock)) as reports:
        yield reports


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"tests.failures.{name}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    return log


def _kubeconfig(server: LocalApiServer, path: Path, token: str | None) -> str:
    """A kubeconfig for ``server`` whose user has ``token`` (or nothing)."""
    config = json.loads(server.kubeconfig())
    user = config["users"][0]["user"]
    user.pop("token", None)
    if token is not None:
        user["token"] = token
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def _write(clock: FakeClock, times: int = 1, **options: Any) -> KubernetesEventHandler:
    """Log ``times`` warnings about POD through a new handler, drain it, close it.

    The handler's first wait (a back-off, on ``clock``) lasts until every warning is
    logged: on fake time a whole run of retries would otherwise take less than the
    scheduler may leave between two logging calls, and the later warnings would come after
    it rather than join the retried write."""
    logged = threading.Event()

    def sleep(seconds: float, cancel: threading.Event) -> bool:
        logged.wait(10)
        return clock.sleep(seconds, cancel)

    handler = KubernetesEventHandler(component="ctl", clock=clock, sleep=sleep, qps=0, **options)
    log = _logger(f"write{id(handler)}", handler)
    try:
        for _ in range(times):
            log.warning("Back-off", extra={"involved": POD})
        logged.set()
        assert handler.drain(10)
    finally:
        logged.set()
        handler.close()
    return handler


def test_an_unreachable_server_warns_at_once_then_summarises_with_true_counts(
    server, clock, reports
) -> None:
    """A refused connection is a WARNING at the first failed write (not INFO), naming the
    server; the retries the rate limit held back are summarised at flush with the true
    number of occurrences delayed, and the give-up says how many were lost."""
    handler = KubernetesEventHandler(
        component="ctl", sink=server.url, clock=clock, sleep=clock.sleep, qps=0, max_tries=4
    )
    log = _logger("refused", handler)
    server.refuse_connections()
    try:
        for _ in range(3):
            log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        assert handler.drain(10)
    finally:
        handler.close()
        server.accept_connections()
    stats = handler.stats()
    assert stats["failed"] == 3, stats
    messages = reports.messages()
    first_time, first = reports.seen[0]
    assert first.levelno == logging.WARNING
    assert first_time <= 10.0  # on the fake clock, from the first failed write at 0
    assert "attempt 1 of 4" in first.getMessage()
    assert f"the API server at {server.url} is unreachable" in first.getMessage()
    assert all(record.levelno >= logging.WARNING for _, record in reports.seen)
    retries = [m for m in messages if "will retry" in m]
    # the first line, then the held-back attempts summarised: each occurrence counted once
    assert any(re.search(r"\(3 occurrence\(s\) (delayed )?in all\)", m) for m in retries), messages
    lost = [m for m in messages if "retry limit" in m]
    assert lost, messages
    # one write of all three, or (when a loaded machine lets the writer start before the
    # second log call) the first alone and the other two behind it: one line or a line and
    # its summary, whose running total is the true count either way
    assert any("3 occurrence(s) lost" in m or "(3 occurrence(s) in all)" in m for m in lost), (
        messages
    )


NO_WAY_THERE = [
    OSError(errno.EHOSTUNREACH, "No route to host"),
    OSError(errno.ENETUNREACH, "Network is unreachable"),
    socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
]


@pytest.mark.parametrize("error", NO_WAY_THERE, ids=["no-route", "no-network", "no-name", "dns"])
def test_a_server_without_a_route_or_a_name_is_reported_as_unreachable(
    error, clock, reports
) -> None:
    """No route to the API server's host, no network, a name that does not resolve (as the
    sink's channel raises them): the server is unreachable as surely as one that refuses
    connections. The first report says so, and what a deadline gives up is summarised as
    connection errors, not as ``OSError`` or ``gaierror``."""
    fake = FakeEventSink()
    fake.fail_next("create", error, times=3)
    _write(clock, sink=fake, max_tries=3)
    first = reports.messages()[0]
    assert "attempt 1 of 3" in first, reports.messages()
    assert "(the API server is unreachable)" in first, first

    @dataclass
    class Pending:
        occurrences: int = 2
        attempts: int = 1
        throttled: int = 0
        last_error: Exception | None = error
        in_flight: bool = False
        started: float | None = None
        writer: int | None = None

    summary = _errors.unwritten_summary([Pending()], [], when="at exit")
    assert "2 after connection errors (the API server is unreachable)" in summary, summary


def test_an_error_that_holds_itself_among_its_args_is_reported_not_a_dead_writer(
    clock, reports
) -> None:
    """A sink's error that holds itself among its args (a wrapper handed its own cause back):
    asking whether the server was unreachable looked inside the args without end, so the
    writer died with a RecursionError printed to standard error. It is an error like any
    other: reported, tried again, given up and counted as failed, the writer alive."""
    error = RuntimeError("boom")
    error.args = ("boom", error)
    fake = FakeEventSink()
    fake.fail_next("create", error, times=2)
    stats = _write(clock, sink=fake, max_tries=2).stats()
    assert (stats["failed"], stats["pending"]) == (1, 0), stats
    assert "attempt 1 of 2" in reports.messages()[0], reports.messages()
    assert not _errors.unreachable(error)


def _read_request(connection: socket.socket) -> None:
    """Read one request whole: a close with bytes unread would reset the connection."""
    received = b""
    while b"\r\n\r\n" not in received and (data := connection.recv(4096)):
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    wanted = int(length[1]) if length else 0
    while len(body) < wanted and (data := connection.recv(4096)):
        body += data


@contextlib.contextmanager
def _raw_server(answer: bytes | None) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a server that reads each request and then sends
    ``answer`` and closes (None: resets the connection, as a crashed peer or a firewall
    does). The API server's misbehaviour is the point: the local one answers properly."""
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()
    over = threading.Event()

    def serve() -> None:
        with listener:
            while True:
                connection, _ = listener.accept()
                if over.is_set():  # the test's own connection, to end the accept
                    connection.close()
                    return
                with connection, contextlib.suppress(OSError):  # a client gone: the next
                    connection.settimeout(10)
                    _read_request(connection)
                    if answer is None:  # linger 0: the close sends a reset
                        connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    else:
                        connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        over.set()
        with contextlib.suppress(OSError):
            socket.create_connection(address, timeout=10).close()
        thread.join(10)


def _failed_create(
    served: contextlib.AbstractContextManager[str], transport: str
) -> tuple[str, sink.KubernetesEventSink, Exception]:
    """The URL ``served`` gives, the sink (closed) and what its create there raised, through
    ``transport`` (``channel`` or ``official``), with 0.2 s to connect."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(served)
        events_sink = sink.KubernetesEventSink.from_url(url, qps=0, request_timeout=(0.2, 10))
        stack.callback(events_sink.close)
        if transport == "official":
            _on_official_path(events_sink)
        with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever each transport raises
            events_sink.create(_event())
    return url, events_sink, raised.value


@pytest.mark.parametrize("transport", ["channel", "official"])
@pytest.mark.parametrize(
    ("answer", "unreachable"),
    [
        ("refused", True),
        ("blackholed", True),
        (None, True),
        (b"", False),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False),
        (b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{", False),
    ],
    ids=["refused", "connect-timeout", "reset", "closed-without-answer", "not-http", "cut-short"],
)
def test_a_server_is_called_unreachable_alike_on_both_transports(
    transport: str, answer: bytes | str | None, unreachable: bool
) -> None:
    """A refused or reset connection, or one not made within the connect timeout (a firewall
    or a NetworkPolicy that drops packets), means the API server could not be reached: the
    report says it is unreachable and names it, on the sink's own channel as on the official
    client's path (behind a proxy; urllib3 wraps the reset in an error of its own). The
    channel once said only "timed out" for a connect timeout. A server that took the
    connection and then closed it without a word, or answered what is not HTTP, or cut its
    answer short, was reached: neither transport calls it unreachable."""
    served = (
        {"refused": refused_url, "blackholed": blackholed_url}[answer]()
        if isinstance(answer, str)
        else _raw_server(answer)
    )
    url, events_sink, error = _failed_create(served, transport)
    assert sink.is_retryable(error)
    explained = _errors.explain(error, events_sink)
    assert ("is unreachable" in explained) is unreachable, explained
    assert (f"the API server at {url} is unreachable" in explained) is unreachable, explained
    assert _errors.unreachable(error) is unreachable, repr(error)


@contextlib.contextmanager
def _unresolvable_url() -> Iterator[str]:
    yield "http://k8s-logging-events.invalid:6443"  # .invalid never resolves (RFC 6761)


@pytest.mark.parametrize("transport", ["channel", "official"])
@pytest.mark.parametrize(
    ("server", "landed"),
    [(refused_url, False), (blackholed_url, False), (_unresolvable_url, False), (None, True)],
    ids=["refused", "connect-timeout", "unresolvable", "reset-after-sending"],
)
def test_a_write_that_found_no_connection_never_landed_on_both_transports(
    transport: str, server: Any, landed: bool
) -> None:
    """A create that got no connection (refused, not made within the connect timeout, a
    name that does not resolve) sent nothing: the writer must not take a later
    ``AlreadyExists`` for its own create, which would take another worker's event of the
    same name for it and count its occurrence as written. Only a refusal was told apart;
    the others were "may have landed". A reset after the request was sent may have."""
    _, _, error = _failed_create(_raw_server(None) if server is None else server(), transport)
    assert sink.is_retryable(error)
    assert _errors.may_have_landed(error) is landed, repr(error)


@pytest.mark.parametrize(
    "proxy", [None, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"], ids=["refused", "403"]
)
def test_a_proxy_that_fails_is_named_and_not_the_api_server(proxy: bytes | None) -> None:
    """``HTTPS_PROXY`` (or a kubeconfig's ``proxy-url``) names a proxy that refuses
    connections, or will not tunnel to the server (a ``NO_PROXY`` that misses the cluster's
    address): the report says the proxy failed and where to look; it once said the API
    server was unreachable, which sent the user to look at a server that was fine."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(LocalApiServer(tls=True))
        configuration = server.api_client().configuration
        configuration.proxy = stack.enter_context(
            refused_url() if proxy is None else _raw_server(proxy)
        )
        events_sink = sink.KubernetesEventSink(client.ApiClient(configuration), qps=0)
        stack.callback(events_sink.api_client.close)
        stack.callback(events_sink.close)
        with pytest.raises(Exception) as raised:  # noqa: PT011 - what urllib3 raises
            events_sink.create(_event())
    explained = _errors.explain(raised.value, events_sink)
    assert "is unreachable" not in explained, explained
    assert (
        f"the proxy the client goes through to the API server at {server.url} failed" in explained
    )
    assert "HTTPS_PROXY and NO_PROXY" in explained, explained
    assert not _errors.unreachable(raised.value)
    assert sink.is_retryable(raised.value)
    assert server.events("default") == []


def test_a_server_answering_429_with_retry_after_0_is_not_hammered(server, clock, tmp_path) -> None:
    """Three 429s with ``Retry-After: 0`` and no client-side limit: the writer still waits
    between them (1, 2, 4 s scaled into [0.5, 1)), then the create lands; nothing lost."""
    path = _kubeconfig(server, tmp_path / "config", SECRET)
    server.inject(method="POST", path="/events", status=429, retry_after=0, times=3)
    start = clock.monotonic()
    handler = _write(clock, kubeconfig=path, drain_qps=0)
    posts = [r.status for r in server.requests if r.method == "POST" and "/events" in r.path]
    assert posts == [429, 429, 429, 201]
    assert clock.monotonic() - start >= 0.5 * (1 + 2 + 4)
    assert handler.stats()["created"] == 1
    assert len(server.events("default")) == 1


def test_a_server_that_keeps_throttling_is_a_warning_within_ten_seconds(
    server, clock, reports, tmp_path
) -> None:
    """A 429 spends no try and is only INFO, but a server that throttles every write (an
    EventRateLimit bucket that never refills) would then go unseen while the app runs: the
    fourth 429 in a row is a WARNING, within 10 s of the first (1, 2, 4 s of back-off at most),
    with the occurrences that wait; the write still lands once the server takes it."""
    path = _kubeconfig(server, tmp_path / "config", SECRET)
    server.inject(method="POST", path="/events", status=429, times=6)
    handler = _write(clock, times=3, kubeconfig=path, drain_qps=0)
    warnings = [
        (at, record.getMessage())
        for at, record in reports.seen
        if record.levelno >= logging.WARNING and "throttle" in record.getMessage()
    ]
    assert warnings, reports.messages()
    at, line = warnings[0]
    assert at <= 10.0, (at, line)
    assert "4 time(s) in a row" in line, line
    assert "3 occurrence(s)" in line, line
    assert len(warnings) == 1, warnings  # once per run of 429s, not at every one after
    assert handler.stats()["created"] == 1
    assert server.events("default")[0]["count"] == 3


def test_a_401_says_which_credentials_were_sent_never_their_value(
    server, clock, reports, tmp_path
) -> None:
    """The kubeconfig's token is wrong: the report names the kind of credentials and where
    they came from (the kubeconfig, its context and user), and never the token."""
    wrong = "not-the-token-0123456789"
    path = _kubeconfig(server, tmp_path / "config", wrong)
    handler = _write(clock, kubeconfig=path)
    (line,) = [m for m in reports.messages() if "401" in m]
    assert "did not accept the credentials sent" in line
    assert "a bearer token written in the kubeconfig" in line
    assert path in line
    assert "k8s-logging-events-local" in line  # the context and user names
    assert wrong not in line
    assert all(wrong not in m and SECRET not in m for m in reports.messages())
    assert handler.stats()["failed"] == 1


GKE_HINT = (
    "Install gke-gcloud-auth-plugin for use with kubectl by following\n"
    "        https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl"
    "#install_plugin"
)


def test_a_plugin_that_is_not_installed_is_reported_with_its_whole_install_hint(
    server, clock, reports, tmp_path, monkeypatch
) -> None:
    """GKE's kubeconfig on a machine without its plugin: the report cut the error at 300
    characters, so the install hint ended mid-URL ("https://cloud.google....") and the exit's
    summary named a class ("1 after NoCredentialsError"). The hint is said whole, as kubectl
    says it, and the summary says what is missing."""
    config = json.loads(server.kubeconfig())
    name = "gke_my-project-123456_europe-west1-b_production-cluster"
    config["contexts"][0]["name"] = config["current-context"] = name
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "gke-gcloud-auth-plugin",
            "installHint": GKE_HINT,
            "provideClusterInfo": True,
        }
    }
    path = tmp_path / "config"
    path.write_text(json.dumps(config), encoding="utf-8")
    monkeypatch.setenv("PATH", str(tmp_path))  # the plugin is on no directory of it
    _write(clock, kubeconfig=str(path), max_tries=2)
    hint = " ".join(GKE_HINT.split())
    lines = [m for m in reports.messages() if "no credentials" in m]
    assert lines, reports.messages()
    assert all(f"({hint}); it runs again at the next try" in m for m in lines), lines
    write = _Write(1)
    write.attempts, write.last_error = 1, _errors.NoCredentialsError("no credentials: ...")
    summary = _errors.unwritten_summary([write], [], when="at exit")
    assert "1 after no credentials (the kubeconfig's exec plugin gave no token)" in summary


def test_a_deadline_that_gives_up_writes_a_proxy_failed_says_the_proxy_failed() -> None:
    """HTTPS_PROXY names a proxy that refuses connections: the exit's summary said "1 after
    ProxyError", a class name, where the retries' reports had named the proxy. It says what
    failed, as it says "connection errors (the API server is unreachable)"."""
    write = _Write(1)
    write.attempts = 1
    write.last_error = ProxyError("Unable to connect to proxy", ConnectionRefusedError(111, "x"))
    summary = _errors.unwritten_summary([write], [], when="at exit")
    assert "1 after proxy errors (the proxy to the API server failed)" in summary, summary


def test_a_401_through_a_url_sink_says_no_credentials_were_sent(server, clock, reports) -> None:
    """``sink: URL`` sends no credentials: the 401 says so."""
    _write(clock, sink=server.url)
    (line,) = [m for m in reports.messages() if "401" in m]
    assert "no credentials (the sink option names the URL" in line


def test_an_injected_401_with_a_right_token_still_names_the_token_not_its_value(
    server, clock, reports, tmp_path
) -> None:
    """A token the server refuses later (rotated, revoked): the kind and source, no value."""
    path = _kubeconfig(server, tmp_path / "config", SECRET)
    server.inject(method="POST", status=401, times=None)
    _write(clock, kubeconfig=path)
    (line,) = [m for m in reports.messages() if "401" in m]
    assert "a bearer token written in the kubeconfig" in line
    assert SECRET not in line


def test_a_403_names_the_verb_resource_and_namespace_and_points_to_the_role(
    server, clock, reports, tmp_path
) -> None:
    """Forbidden: which verb on which resource in which namespace, and where the Role is."""
    path = _kubeconfig(server, tmp_path / "config", SECRET)
    server.inject(method="POST", path="/events", status=403, times=None)
    handler = _write(clock, times=3, kubeconfig=path)
    forbidden = [m for m in reports.messages() if "403" in m]
    assert forbidden, reports.messages()
    assert "may not create events in namespace default" in forbidden[0]
    assert 'the verb create on events in the API group "" (core)' in forbidden[0]
    assert _errors.RBAC_EXAMPLE in forbidden[0]
    # coalesced into one write or not, the reports count the 3 occurrences stats() counts
    assert handler.stats()["failed"] == 3
    lost = [int(n) for m in forbidden for n in re.findall(r"(\d+) occurrence\(s\) lost", m)]
    assert sum(lost) == 3, forbidden


def test_explain_names_the_group_of_an_events_k8s_io_write() -> None:
    """A 403 on events.k8s.io/v1 names that API group; a patch is the verb patch."""
    error = sink.ApiStatusError(
        403,
        "Forbidden",
        "forbidden",
        method="PATCH",
        path="/apis/events.k8s.io/v1/namespaces/shop/events/web-0.1",
    )
    text = _errors.explain(error)
    assert "may not patch events.events.k8s.io in namespace shop" in text
    assert 'in the API group "events.k8s.io"' in text


def test_events_k8s_io_v1_where_the_server_does_not_serve_it_says_to_choose_another_api(
    clock, reports
) -> None:
    """``api: events.k8s.io/v1`` on a cluster without that group: every create is the
    server's plain 404 for a path it does not serve. The report says so, and what to set;
    a 404 about a named object (a namespace that does not exist) keeps its own words."""
    with LocalApiServer() as bare:
        bare.inject(path="^/apis/events.k8s.io/", status=404, times=None)
        handler = _write(clock, times=3, sink=bare.url, api="events.k8s.io/v1")
    lost = [m for m in reports.messages() if "404" in m]
    assert lost, reports.messages()
    assert all("does not serve events.k8s.io/v1" in m for m in lost), lost
    assert "set api: auto" in lost[0]
    assert handler.stats()["failed"] == 3
    missing = sink.ApiStatusError(
        404,
        "NotFound",
        'namespaces "shop" not found',
        name="shop",
        method="POST",
        path="/apis/events.k8s.io/v1/namespaces/shop/events",
    )
    assert _errors.explain(missing) == '404 NotFound: namespaces "shop" not found'


def test_a_url_that_is_not_the_api_servers_is_said_to_be_the_thing_to_check(clock, reports) -> None:
    """A sink URL without the path of the proxy in front of the API server (or the URL of
    another web server) answers every create with a 404 naming no object. The report said
    only ``404 NotFound: the server could not find the requested resource``: neither where
    nor why. It names the URL and what to check; a 404 about a named object (a namespace
    that does not exist) keeps its own words."""
    with LocalApiServer() as server:
        url = f"{server.url}/k8s/clusters/c-1"
        handler = _write(clock, times=2, sink=url)
    lost = [m for m in reports.messages() if "404" in m]
    assert lost, reports.messages()
    expected = f"the server at {url} is not a Kubernetes API server, or not at this path"
    assert all(expected in m for m in lost), lost
    assert "check that the URL" in lost[0]
    assert handler.stats()["failed"] == 2
    missing = sink.ApiStatusError(
        404,
        "NotFound",
        'namespaces "shop" not found',
        name="shop",
        method="POST",
        path="/api/v1/namespaces/shop/events",
    )
    assert _errors.explain(missing) == '404 NotFound: namespaces "shop" not found'


def test_a_redirect_is_said_to_come_from_no_api_server() -> None:
    """An API server never redirects a write; a proxy in front of it that wants a login does
    (``302 Found``, to its login page). The report said only ``302 Found``: it says what
    answered and what to check."""
    error = sink.ApiStatusError(
        302, "Found", method="POST", path="/api/v1/namespaces/default/events"
    )
    assert _errors.explain(error).startswith(
        "302 Found (the server is not a Kubernetes API server, or not at this path: check "
        "that the URL"
    )


def test_a_success_no_api_server_sends_is_said_to_come_from_another_server() -> None:
    """A sink URL that is a web application's answers a create ``200 OK`` with its page. The
    report said only ``unreadable answer to POST ...: Expecting value: line 1 column 1 (char
    0)``, at each of its twelve tries: it names the server and what to check."""
    page = Answer(200, "OK", {"content-type": "text/html"}, b"<html>Welcome</html>")
    with pytest.raises(ValueError, match=r"^unreadable answer") as raised:
        _transport.read(page, "POST", "/api/v1/namespaces/default/events")
    said = _errors.explain(raised.value, SimpleNamespace(host="http://shop.example:8080"))
    assert said.startswith("unreadable answer to POST /api/v1/namespaces/default/events: ")
    assert said.endswith(
        "(the server at http://shop.example:8080 is not a Kubernetes API server, or not at "
        "this path: check that the URL, the sink's or the kubeconfig's server, is the API "
        "server's, with the path of any proxy in front of it)"
    )
    # a template's page often begins with blank lines: still no JSON from its first character
    page = Answer(200, "OK", {"content-type": "text/html"}, b"\r\n\n  <!DOCTYPE html><html>")
    with pytest.raises(ValueError, match=r"^unreadable answer") as raised:
        _transport.read(page, "POST", "/api/v1/namespaces/default/events")
    assert "is not a Kubernetes API server" in _errors.explain(raised.value)
    # JSON that is no event (a count past any number) may be an API server's: no advice
    odd = Answer(201, "Created", {}, b'{"metadata": {"name": "e"}, "count": 1e400}')
    with pytest.raises(ValueError, match=r"^unreadable answer") as raised:
        _transport.read(odd, "POST", "/api/v1/namespaces/default/events", models.Event.from_api)
    assert "API server" not in _errors.explain(raised.value, SimpleNamespace(host="http://s"))


def test_a_403_of_a_terminating_namespace_gives_no_rbac_advice() -> None:
    """A create refused because its namespace is being deleted (403 with the cause
    NamespaceTerminating) is no missing permission: its report told the user to grant the
    verb create on events with a Role, which changes nothing. It keeps its own words."""
    message = (
        'events "p.1" is forbidden: unable to create new content in namespace dying because '
        "it is being terminated"
    )
    error = sink.ApiStatusError(
        403,
        "Forbidden",
        message,
        causes=("NamespaceTerminating",),
        method="POST",
        path="/api/v1/namespaces/dying/events",
    )
    assert _errors.explain(error) == f"403 Forbidden: {message}"


def test_explain_leaves_other_errors_as_they_are() -> None:
    """An error a user cannot fix by configuration keeps its own words."""
    error = sink.ApiStatusError(422, "Invalid", "bad name")
    assert _errors.explain(error) == "422 Invalid: bad name"


def test_a_certificate_the_client_does_not_trust_reads_without_a_status_code(
    clock, reports
) -> None:
    """An ``https://`` URL sink checks the server against the system's CAs; a server whose
    certificate they do not vouch for is a TLS failure, which had no HTTP answer and so no
    status code: the report says ``SSLError: ... CERTIFICATE_VERIFY_FAILED``, not
    ``0 SSLError``."""
    with LocalApiServer(tls=True) as secured:
        handler = _write(clock, sink=secured.url)
    (line,) = [m for m in reports.messages() if "CERTIFICATE_VERIFY_FAILED" in m]
    assert "): SSLError: " in line, line
    assert handler.stats()["failed"] == 1


def test_a_tls_failure_names_the_server_and_what_to_check(clock, reports) -> None:
    """A refused certificate said only OpenSSL's words (``unable to get local issuer
    certificate``), neither the server nor the settings that decide it. The report names
    the server and the kubeconfig's and the pod's settings to check."""
    with LocalApiServer(tls=True) as secured:
        _write(clock, sink=secured.url)
    (line,) = [m for m in reports.messages() if "CERTIFICATE_VERIFY_FAILED" in m]
    assert f"TLS with the API server at {secured.url} failed" in line, line
    assert "certificate-authority-data" in line
    assert "ca.crt" in line
    assert "tls-server-name" in line


# --- what a deadline could not write --------------------------------------------------------


class _Write:
    """What :func:`_errors.unwritten_summary` reads of a pending write."""

    def __init__(
        self, occurrences: int, started: float | None = None, writer: int | None = None
    ) -> None:
        self.occurrences = occurrences
        self.attempts = 0
        self.throttled = 0
        self.last_error: Exception | None = None
        self.started = started
        self.writer = writer

    @property
    def in_flight(self) -> bool:
        return self.started is not None


def test_a_request_sent_just_before_the_deadline_is_not_called_a_hanging_server() -> None:
    """A batch job of 1,000 events against a fast server, out of time at the drain rate: the
    exit said "1 in requests the API server had not answered (a hanging server or admission
    webhook ...); 911 queued behind those requests (raise writers ...)", sending the user after
    a webhook, with writers no help. A request counts as unanswered once it has been in flight
    as long as a stalled one; the rest wait for the rate limit or a writer."""
    now = 1000.0
    young = [_Write(1, started=now - 0.01)] + [_Write(1) for _ in range(911)]
    summary = _errors.unwritten_summary(young, [], when="at exit", now=now)
    assert "hanging" not in summary, summary
    assert "912 waiting for the client-side rate limit or a free writer" in summary, summary
    stalled = [_Write(2, started=now - _errors.STALL_SECONDS), _Write(1)]
    summary = _errors.unwritten_summary(stalled, [], when="at exit", now=now)
    assert "2 in requests the API server had not answered (a hanging server" in summary, summary
    assert "1 queued behind those requests" in summary, summary


def test_a_write_is_said_to_wait_for_credentials_only_when_its_own_writer_does() -> None:
    """Two handlers: one's writer waits for a hanging exec plugin, the other's requests hang
    on its API server. The second's flush said its writes waited "for the Kubernetes
    client's set-up or credentials" (any thread of the process counted), sending its user
    after a plugin it does not have. A write is said to wait for credentials when the
    thread making its request does."""
    now = 1000.0
    started = now - _errors.STALL_SECONDS
    with _process.await_credentials():  # this thread: the other handler's writer
        ours = threading.get_ident()
        elsewhere = [_Write(1, started=started, writer=-1), _Write(1, started=started, writer=-2)]
        summary = _errors.unwritten_summary(elsewhere, [], when="at exit", now=now)
        assert "2 in requests the API server had not answered" in summary, summary
        assert "credentials" not in summary, summary
        held = [_Write(1, started=started, writer=-1), _Write(3, started=started, writer=ours)]
        summary = _errors.unwritten_summary(held, [], when="at exit", now=now)
    assert "3 waiting for the Kubernetes client's set-up or credentials" in summary, summary
    assert "1 in requests the API server had not answered" in summary, summary


def test_a_write_waiting_for_credentials_is_said_so_however_young() -> None:
    """A job with flush_timeout 0.5 s exited while its writers still built the Kubernetes
    client: the exit said "5 waiting for the client-side rate limit or a free writer (raise
    drain_qps, writers ...)", neither of which helps, because the writes had started less
    than a second before. A writer held by the client's set-up is said to be, at any age."""
    now = 1000.0
    with _process.await_credentials():
        ours = threading.get_ident()
        young = [_Write(4, started=now - 0.3, writer=ours), _Write(1)]
        summary = _errors.unwritten_summary(young, [], when="at exit", now=now)
    assert "4 waiting for the Kubernetes client's set-up or credentials" in summary, summary
    assert "1 queued behind those requests" in summary, summary


def test_a_write_waiting_for_the_clients_set_up_is_not_blamed_on_a_plugin() -> None:
    """A sink given as a URL, no kubeconfig, and a client merely slow to import and build:
    the exit blamed "a kubeconfig exec plugin or auth provider", which there was none of.
    What was waited for is said as the runtime knows it: the client's import and build, and
    any plugin its kubeconfig runs; none of them has a timeout."""
    now = 1000.0
    with _process.await_credentials():
        held = [_Write(2, started=now - 0.3, writer=threading.get_ident())]
        summary = _errors.unwritten_summary(held, [], when="at exit", now=now)
        cut = _errors.unwritten_summary(held, [], when="at exit", now=now, cut_short=True)
    assert (
        "2 waiting for the Kubernetes client's set-up or credentials (importing and building "
        "the client, and any exec plugin or auth provider its kubeconfig runs, have no "
        "timeout: see flush_timeout)"
    ) in summary, summary
    assert "have no timeout)" in cut, cut


def test_a_wait_cut_short_is_never_told_to_raise_flush_timeout() -> None:
    """A Ctrl-C (or an exit) that ends the exit's wait is no deadline: the summary said
    "when shutdown was cut short (Ctrl-C or an exit)" and then, for each cause, "raise
    drain_qps, writers or flush_timeout", "see flush_timeout" ..., advice that would not
    have helped. Cut short, no cause advises flush_timeout; at a deadline, every one does."""
    now = 1000.0
    started = now - _errors.STALL_SECONDS
    retrying = _Write(1)
    retrying.attempts, retrying.last_error = 1, ConnectionRefusedError(111, "refused")
    with _process.await_credentials():
        every_cause = [_Write(1, started=started, writer=threading.get_ident()), retrying]
        cases = [every_cause, [_Write(1, started=started, writer=-1)], [_Write(1)]]
        for writes in cases:
            cut, ran_out = (
                _errors.unwritten_summary(
                    writes, [], when="w", queued=1, preparing=1, now=now, cut_short=cut_short
                )
                for cut_short in (True, False)
            )
            assert "flush_timeout" not in cut, cut
            causes = cut.count(" waiting ") + cut.count(" in requests ") + cut.count(" not yet ")
            assert ran_out.count("flush_timeout") == causes, (cut, ran_out)


def test_a_write_throttled_only_waits_to_retry_after_its_429s_and_every_part_is_counted() -> None:
    """A write met only 429s (no try spent) is waiting to retry after them, not for the
    client-side rate limit; the total counts the occurrences still queued and those whose
    sink is being set up as well as the pending writes'."""
    throttled = _Write(3)
    throttled.throttled, throttled.last_error = 2, _throttled()
    summary = _errors.unwritten_summary(
        [throttled, _Write(1)], [], when="at exit", queued=4, preparing=5, now=1000.0
    )
    assert summary.startswith("Unable to write 13 event occurrence(s) at exit: "), summary
    assert "3 waiting to retry (3 after 429 Too Many Requests" in summary, summary
    assert "1 waiting for the client-side rate limit or a free writer" in summary, summary
    assert "5 waiting for their sink to be set up" in summary, summary
    assert "4 not yet handed to a writer" in summary, summary
