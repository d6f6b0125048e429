"""Reliability: faults, outages, shutdown, threads, fork, hostile input, feedback, secrets.

Every case runs the real pipeline against a :class:`LocalApiServer` through the official
client, from ``logging`` calls to the server's stored counts, and checks the accounting:
each accepted occurrence ends in exactly one outcome, and the server holds what was logged.
These are the fast versions (a few seconds each). The long ones are in
``tests/test_reliability_slow.py`` (``pytest -m slow``) and ``bench/reliability.py``, which
use the scenario runners defined here; ``docs/reliability.md`` explains what each proves.
"""

from __future__ import annotations

import base64
import contextvars
import http.client
import itertools
import json
import logging
import logging.config
import os
import subprocess
import sys
import threading
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8s_logging_events import _records, models, sink
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, LocalApiServer
from tests.reliability_scenarios import (
    FORK_DURING_IMPORT_CHILD,
    LIBRARY_LOGGER,
    RECONFIGURE_BEFORE_THE_CLIENT,
    RECONFIGURE_WITH_THE_CLIENT_IMPORTED,
    REPO,
    ListHandler,
    TimedSink,
    app_logger,
    check_chaos,
    check_forks,
    check_outage,
    check_threads,
    fork_quietly,
    pod,
    read_child,
    run_chaos,
    run_exit_child,
    run_forks,
    run_outage,
    run_threads,
    stderr_problems,
    stored_counts,
    unaccounted,
)


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer() as server:
        yield server


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
@pytest.mark.parametrize("commit", [False, True], ids=["before-stored", "after-stored"])
def test_chaos_every_count_on_the_server_is_what_was_logged(server, commit, api) -> None:
    """2,000 warnings about 50 Pods from 8 threads while ~18% of the writes fail, through
    either Events API (events.k8s.io/v1 counts in a series, and patches only the series).

    Faults before the write is stored: retried until written. Faults after it (lost
    answers): a create met by AlreadyExists on its retry is recognised as ours and patched,
    nothing is counted as failed, and no count on the server runs ahead of the logs.
    """
    check_chaos(run_chaos(server, occurrences=2_000, objects=50, commit=commit, api=api))


def test_outage_logging_stays_fast_and_everything_is_written_after_recovery(server) -> None:
    """Refused connections for 0.6 s, then hanging requests for 0.6 s, then recovery."""
    check_outage(run_outage(server, refuse_seconds=0.6, hang_seconds=0.6))


@pytest.mark.parametrize("mode", ["exit", "shutdown"])
def test_exit_writes_pending_events_when_the_server_is_up(server, mode) -> None:
    """A program that just ends (or calls logging.shutdown()) leaves nothing unwritten."""
    result = run_exit_child(server.url, mode, flush_timeout=10, records=200, objects=10)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.late["closed"] is True
    assert result.late["threads"] == [], "no thread of the library is left"
    stats = result.late["stats"]
    assert stats["accepted"] == 200
    assert unaccounted(stats) == 0
    assert stats["failed"] == 0
    stored = stored_counts(server)
    assert stored == Counter({f"exit-{mode}-{n}": 20 for n in range(10)})


def test_exit_is_prompt_when_the_server_hangs(server) -> None:
    """Every request hangs: the exit waits for its writes one flush_timeout, not two (a
    loaded machine may stretch one by a second), and the process ends quietly."""
    server.inject(action="hang", times=None)
    flush_timeout = 2.0
    result = run_exit_child(server.url, "exit", flush_timeout=flush_timeout, records=50)
    assert result.returncode == 0, result.stderr
    assert result.exit_seconds < 2 * flush_timeout, result.exit_seconds
    assert stderr_problems(result.stderr) == [], result.stderr
    stats = result.late["stats"]
    assert stats["accepted"] == 50
    assert unaccounted(stats) == 0, "what could not be written is counted as failed"
    # what may be left (a writer still ending its interrupted request, a watcher still
    # handing its last events to them) are daemon threads: they never hold up the exit
    left = result.late["threads"]
    assert all(daemon and name.startswith("k8s-events-") for name, daemon in left), left


@pytest.mark.timeout(60)
def test_threads_and_a_dictconfig_in_the_middle(server) -> None:
    """16 threads x 500 records about 300 Pods; dictConfig replaces the handler meanwhile."""
    result = run_threads(server, threads=16, records=500)
    check_threads(result)
    assert all(s["failed"] == 0 for s in result.stats)


@pytest.mark.timeout(60)
def test_reconfiguring_while_the_server_is_down_does_not_stall_the_threads(server) -> None:
    """dictConfig closes the old handler, which waits flush_timeout for writes that cannot
    be made (the server refuses connections until the new handler is in place): the threads
    that keep logging must not wait for that."""
    result = run_threads(
        server, threads=8, records=400, refuse_during_reconfigure=True, flush_timeout=1.0
    )
    check_threads(result)
    first, second = result.stats
    assert first["failed"] > 0
    assert second["failed"] == 0
    assert result.reconfigure_seconds >= 0.9  # the old handler did wait for its writes
    assert result.logged_while_closing > 0, result  # the threads went on meanwhile


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("scenario", "imported"),
    [(RECONFIGURE_BEFORE_THE_CLIENT, False), (RECONFIGURE_WITH_THE_CLIENT_IMPORTED, True)],
    ids=["client-being-imported", "client-imported-by-the-application"],
)
def test_configuring_logging_again_before_the_client_is_built_neither_stalls_nor_loses(
    server, scenario: str, imported: bool
) -> None:
    """dictConfig closes the handler it replaces while it holds logging's lock; a writer still
    building the kubernetes client needs that lock (importing it, or, in an application that
    imported it itself, making its Configuration, which gets and sets loggers), so the close
    must not wait for it there (it used to wait the whole flush_timeout, then count the event
    failed). dictConfig returns at once, the first handler's event is still written, and
    closing that handler again waits for it, so that its counters are final."""
    done = subprocess.run(
        [sys.executable, "-c", scenario, server.url],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=str(REPO),
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["imported"] is imported, "the scenario's client was not where it should be"
    assert report["seconds"] < 10, report  # flush_timeout is 20
    assert report["stats"]["created"] == 1, report
    assert unaccounted(report["stats"]) == 0, report
    assert stored_counts(server) == Counter({"first": 1}), done.stderr
    assert stderr_problems(done.stderr) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(90)
def test_fork_while_threads_log(server) -> None:
    """8 forks while two threads log: each process writes its own events, once."""
    check_forks(run_forks(server, forks=8))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(60)
def test_a_fork_while_a_thread_names_an_event_does_not_deadlock_the_child(server) -> None:
    """Event names come from the broadcaster's namer, under a lock; a thread of the parent
    holds it at the fork (as the dispatcher naming an event at that instant does). The
    child's first event must not wait for a thread it does not have."""
    handler = KubernetesEventHandler(component="fork", host="node-1", sink=server.url, qps=0)
    log = app_logger("fork")
    log.addHandler(handler)
    log.warning("parent", extra={"involved": pod("fork-parent"), "reason": "Parent"})
    assert handler.broadcaster is not None
    name_lock = handler.broadcaster._namer._lock
    held, release = threading.Event(), threading.Event()

    def hold_the_name_lock() -> None:
        with name_lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_name_lock, name="test-holder")
    holder.start()
    try:
        assert held.wait(10)
        read_end, write_end = os.pipe()
        pid = fork_quietly()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(read_end)
                log.warning("child", extra={"involved": pod("fork-child"), "reason": "Child"})
                active = handler.broadcaster
                os.write(write_end, json.dumps({"flushed": active and active.flush(10)}).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        report = read_child(read_end, pid, timeout=10)
    finally:
        release.set()
        holder.join(10)
        handler.close()
    assert report == {"flushed": True}, "the child's first event deadlocked"
    assert stored_counts(server) == Counter({"fork-child": 1, "fork-parent": 1})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_while_the_client_is_being_imported_does_not_deadlock_the_child(server) -> None:
    """A child must not inherit a half-imported module whose import lock a missing thread
    holds: its writer thread would wait for it forever and its events never be written."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", FORK_DURING_IMPORT_CHILD, server.url],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["importing"], "the fork came while the client was being imported"
    assert report["child"] == 0, "the child's events were never written"
    assert stored_counts(server)["import-child"] == 1


_SURROGATES = st.sampled_from(["\ud800", "\udcff", "\udfff"])


_AWKWARD = st.sampled_from(["\x00", "é", "日本", "🙂", " ", "\n", "%", "/", "\u2028", "K"])


_TEXT = st.lists(st.one_of(st.text(max_size=20), _SURROGATES, _AWKWARD), max_size=6).map("".join)


_NAMES = st.one_of(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True), _TEXT)


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), _TEXT, st.binary(max_size=8)
)


_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=8,
)


def _metadata() -> st.SearchStrategy[Any]:
    return st.one_of(
        _VALUES,
        st.fixed_dictionaries(
            {},
            optional={
                "name": st.one_of(_NAMES, _SCALARS),
                "namespace": st.one_of(
                    st.sampled_from(["default", "prod", "kube-system", ""]), _NAMES, _SCALARS
                ),
                "uid": st.one_of(_TEXT, _SCALARS),
                "resourceVersion": st.one_of(_TEXT, _SCALARS),
            },
        ),
    )


def _manifest() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {},
        optional={
            "apiVersion": st.one_of(
                st.sampled_from(["v1", "apps/v1", "events.k8s.io/v1"]), _VALUES
            ),
            "kind": st.one_of(st.sampled_from(["Pod", "Event", "Node", ""]), _VALUES),
            "metadata": _metadata(),
        },
    )


def _cyclic_dict(name: str) -> dict[str, Any]:
    manifest = pod(name or "cyclic")
    manifest["metadata"]["owner"] = manifest
    manifest["self"] = manifest
    return manifest


def _cyclic_list(name: str) -> list[Any]:
    items: list[Any] = [name]
    items.append(items)
    return items


def _model(name: str, namespace: Any, kind: Any) -> object:
    metadata = types.SimpleNamespace(name=name, namespace=namespace, uid=None)
    return types.SimpleNamespace(kind=kind, api_version="v1", metadata=metadata)


def _client_models() -> list[object]:
    from kubernetes import client

    # built once, here: building them inside a strategy touches the random module
    return [
        client.V1Pod(),  # no metadata
        client.V1Pod(metadata=client.V1ObjectMeta()),  # no name
        client.V1Pod(metadata=client.V1ObjectMeta(name="web-0", namespace="default")),
        client.V1Node(metadata=client.V1ObjectMeta(name="node-1")),
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="e.1", namespace="default"),
            involved_object=client.V1ObjectReference(kind="Pod", name="web-0"),
        ),
    ]


_INVOLVED = st.one_of(
    _VALUES,
    _manifest(),
    st.builds(_cyclic_dict, _NAMES),
    st.builds(_cyclic_list, _TEXT),
    st.builds(_model, _NAMES, st.one_of(_NAMES, _SCALARS), st.one_of(st.just("Pod"), _SCALARS)),
    st.builds(types.SimpleNamespace),  # no metadata at all
    st.builds(lambda: types.SimpleNamespace(metadata=None, kind="Pod")),
    st.sampled_from(_client_models()),
    st.builds(
        lambda name: models.Event(
            name=f"{name}.1", namespace="default", involved_object=models.ObjectReference()
        ),
        _NAMES,
    ),
    st.builds(pod, _NAMES, st.sampled_from(["default", "prod", "ns-new"])),
)


_MESSAGES = st.one_of(
    _TEXT,
    st.builds(lambda c, n: c * n, st.one_of(_AWKWARD, _SURROGATES), st.integers(0, 300_000)),
    st.sampled_from(["%d pods", "%s and %s", "100%", "%(name)s"]),
)


@dataclass(frozen=True)
class HostileRecord:
    """One generated log call."""

    level: int
    msg: Any
    args: tuple[Any, ...]
    extra: dict[str, Any]


_RECORDS = st.builds(
    HostileRecord,
    level=st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]),
    msg=st.one_of(_MESSAGES, _VALUES),
    args=st.one_of(st.just(()), st.tuples(_VALUES), st.tuples(_VALUES, _VALUES)),
    extra=st.fixed_dictionaries(
        {"involved": _INVOLVED},
        optional={
            "reason": st.one_of(_TEXT, _SCALARS, st.just("R" * 500), st.just("image pull failed")),
            "annotations": st.one_of(
                _VALUES, st.dictionaries(st.one_of(_TEXT, st.integers()), _VALUES, max_size=4)
            ),
            "event_type": st.one_of(st.sampled_from(["Normal", "warning", "Error", ""]), _VALUES),
            "action": st.one_of(_TEXT, _SCALARS, st.just("A" * 500)),
            "field_path": st.one_of(_TEXT, _SCALARS),
            "related": st.one_of(_INVOLVED, st.none()),
        },
    ),
)


_lines = itertools.count(100_000)


def check_hostile_input(max_examples: int, api: str = "v1") -> None:
    """Run ``max_examples`` generated log calls through one handler and one server, written
    through the Events API ``api``."""
    with LocalApiServer(auto_create_namespaces=True) as server:
        clock = FakeClock()
        inner = sink.KubernetesEventSink.from_url(
            server.url, qps=0, clock=clock, sleep=clock.sleep, api=api
        )
        timed = TimedSink(inner, clock)
        handler = KubernetesEventHandler(
            component="hostile",
            host="node-1",
            sink=timed,
            clock=clock,
            sleep=clock.sleep,
            sleep_duration=0.0,
            flush_timeout=30,
        )
        reports = ListHandler()
        library = logging.getLogger(LIBRARY_LOGGER)
        library.addHandler(reports)
        library.setLevel(logging.DEBUG)
        log = logging.getLogger("tests.reliability.hostile")

        @settings(
            deadline=None, max_examples=max_examples, suppress_health_check=[HealthCheck.too_slow]
        )
        @given(record=_RECORDS)
        def one_call(record: HostileRecord) -> None:
            line = next(_lines)
            made = log.makeRecord(
                log.name,
                record.level,
                __file__,
                line,
                record.msg,
                record.args,
                None,
                extra=record.extra,
            )
            before, seen = handler.stats(), len(reports.records)
            # past the call sites and kinds it remembers, a kind is said once a minute
            remembers = len(handler._sites._seen) < _records._MAX_CALL_SITES
            handler.handle(made)  # must not raise
            after = handler.stats()
            new = [r.getMessage() for r in reports.records[seen:]]
            assert not [m for m in new if m.startswith("No event for this record")], new
            if after["refused"] > before["refused"] or after["repaired"] > before["repaired"]:
                assert not remembers or any(f"{__file__}:{line}" in m for m in new), (record, new)
            assert after["invalid"] == 0, "the handler refuses before the recorder has to"

        try:
            one_call()
            active = handler.broadcaster
            assert active is None or active.flush(30)
        finally:
            handler.close()
            inner.close()
        stats = handler.stats()
        assert unaccounted(stats) == 0, stats
        requests = server.requests
    # nothing was retried: every write was answered, and what failed failed for good
    retried = [a for a in timed.attempts if a.error is not None and sink.is_retryable(a.error)]
    assert retried == [], [(a.method, repr(a.error)) for a in retried[:5]]
    answered = Counter((r.method, r.status, r.reason) for r in requests)
    bad = {k: n for k, n in answered.items() if k[1] not in (200, 201)}
    # a namespace that is not a DNS label cannot exist: 404 NotFound, as on a real server
    assert all(status == 404 and reason == "NotFound" for _, status, reason in bad), answered


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
def test_hostile_input_never_raises_and_never_reaches_the_server_invalid(api) -> None:
    """Whatever the application logs, it sees no exception; each refused or repaired record
    is reported on the library's logger, naming its call site; the server gets only valid
    writes (no 400, no 422: the request log says so) and the accounting adds up. Through
    either Events API: events.k8s.io/v1 validates more (a required action, a 1 KiB note).

    One server and one handler for the whole hypothesis run; each generated call gets a
    call site of its own, as reports are once per call site.
    """
    check_hostile_input(max_examples=100, api=api)


def test_a_namespace_no_url_can_carry_is_refused_before_any_write(server) -> None:
    """Found by the hypothesis run: a lone surrogate in the involved object's namespace
    cannot be encoded into a URL. That is permanent: it is no DNS label, so the record is
    refused on the caller's thread (counted, its call site named), and nothing is sent."""
    clock = FakeClock()
    inner = sink.KubernetesEventSink.from_url(server.url, qps=0, clock=clock, sleep=clock.sleep)
    timed = TimedSink(inner, clock)
    handler = KubernetesEventHandler(
        component="c", host="h", sink=timed, clock=clock, sleep=clock.sleep, sleep_duration=0.0
    )
    log = app_logger("surrogate")
    log.addHandler(handler)
    try:
        log.warning("x", extra={"involved": pod("web", namespace="ns\udcff")})
        handler.flush()
        stats = handler.stats()
    finally:
        handler.close()
        inner.close()
    assert (stats["refused"], stats["failed"], timed.attempts) == (1, 0, [])


def test_the_librarys_own_warnings_are_rate_limited_and_never_become_events(server) -> None:
    """Every write fails. The application sends every logger to the handler (the library's
    own, directly and through the root; urllib3's at DEBUG) and a record factory gives every
    record the object being reconciled, as ``involved``. The library's reports stay few, and
    nothing logged on the library's behalf (its own reports, the HTTP client's records on
    its writer threads) becomes an event."""
    handler = KubernetesEventHandler(
        component="feedback",
        host="node-1",
        sink=server.url,
        qps=0,
        # never reached here (the server answers 500 or refuses at once): a loaded machine's
        # slow answer must not add a timeout's report to the few this test counts
        request_timeout=5,
        sleep_duration=0.01,
        max_tries=3,
        flush_timeout=10,
    )
    everything = ListHandler()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    root.addHandler(everything)
    library = logging.getLogger(LIBRARY_LOGGER)
    library.setLevel(logging.DEBUG)
    library.addHandler(handler)  # routed twice: directly, and through the root
    reconciling: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
        "reconciling", default=None
    )
    elsewhere = pod("fb-context")  # what a record made outside any reconcile gets
    factory = logging.getLogRecordFactory()

    def with_context(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made = factory(*args, **kwargs)
        made.involved = reconciling.get() or elsewhere
        return made

    app = logging.getLogger("tests.reliability.feedback")
    logging.setLogRecordFactory(with_context)
    try:
        reconciling.set(pod("fb-first"))
        app.info("sync started")
        active = handler.broadcaster
        assert active is not None
        assert active.flush(10)
        logging.getLogger("urllib3").setLevel(logging.DEBUG)  # after the client was built
        server.inject(path=r"/events", times=None, status=500)
        for number in range(200):
            reconciling.set(pod(f"fb-{number % 20}"))
            app.warning("sync failed %d", number % 4)
        active.flush(10)
        server.clear_faults()
        with server.refusing():
            for number in range(100):
                reconciling.set(pod(f"fb-{number % 20}"))
                app.warning("sync failed")
            active.flush(10)
    finally:
        logging.setLogRecordFactory(factory)
        handler.close()
    own = [r for r in everything.records if r.name.startswith(LIBRARY_LOGGER)]
    # the urllib3 record refused once; per failure (500, refused) at most: the first retry,
    # the retries held before the first loss (said before it), that loss, then at the flush
    # the retries and the losses held back since
    assert 1 <= len(own) <= 11, [r.getMessage() for r in own]
    stats = handler.stats()
    assert stats["accepted"] == 301, "only the application's own records became events"
    assert unaccounted(stats) == 0
    posted = [r.body for r in server.requests if r.method == "POST"]
    assert {b["involvedObject"]["name"] for b in posted} <= {"fb-first"} | {
        f"fb-{n}" for n in range(20)
    }
    assert {b["message"].split(" ")[0] for b in posted} == {"sync"}


TOKEN = "tok-" + "s3cr3t" * 8


CLIENT_KEY = (
    "-----BEGIN PRIVATE KEY-----\n" + "S3CR3TK3YMATERIAL" * 4 + "\n-----END PRIVATE KEY-----\n"
)


CLIENT_CERT = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _kubeconfig(path: Path, server_url: str, **cluster: Any) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server_url, **cluster}}],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "token": TOKEN,
                            "client-certificate-data": _b64(CLIENT_CERT),
                            "client-key-data": _b64(CLIENT_KEY),
                        },
                    }
                ],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


def _rendered(record: logging.LogRecord) -> str:
    """Everything a handler could write about ``record``."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    parts = [formatter.format(record), repr(record.args), repr(record.msg)]
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def test_no_token_or_client_key_in_anything_logged_even_at_debug(
    server, tmp_path, monkeypatch, capfd
) -> None:
    """A kubeconfig with a bearer token and a client key; writes fail every way there is
    (5xx, 401, 403, 409, dropped, hung, refused) with every logger at DEBUG."""
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", server.url)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    everything = ListHandler()
    root = logging.getLogger()
    root.addHandler(everything)
    handler = KubernetesEventHandler(
        component="secrets",
        host="node-1",
        sink="auto",
        qps=0,
        request_timeout=(0.3, 0.3),
        sleep_duration=0.01,
        max_tries=2,
        flush_timeout=10,
    )
    log = app_logger("secrets")
    log.addHandler(handler)

    def every_logger_at_debug() -> None:
        root.setLevel(logging.DEBUG)
        for name in [
            LIBRARY_LOGGER,
            "urllib3",
            "client",
            "kubernetes",
            *logging.root.manager.loggerDict,
        ]:
            logging.getLogger(name).setLevel(logging.DEBUG)

    failures: list[dict[str, Any]] = [
        {"status": 500},
        {"status": 503},
        {"status": 401},
        {"status": 403},
        {"status": 409},
        {"action": "drop"},
        {"action": "hang"},
    ]
    try:
        every_logger_at_debug()
        log.warning("ok", extra={"involved": pod("secret-ok")})
        active = handler.broadcaster
        assert active is not None
        assert active.flush(10)
        every_logger_at_debug()  # again, for the loggers that appeared meanwhile
        for number, failure in enumerate(failures):
            server.inject(path=r"/events", times=None, **failure)
            log.warning("x", extra={"involved": pod(f"secret-{number}")})
            active.flush(10)
            server.clear_faults()
        with server.refusing():
            log.warning("x", extra={"involved": pod("secret-refused")})
            active.flush(10)
    finally:
        handler.close()
    headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
    assert headers["authorization"] == f"Bearer {TOKEN}"  # the token was in use
    assert handler.stats()["failed"] >= len(failures)
    assert len(everything.records) >= len(failures)  # a report of each lost write, at least
    out, err = capfd.readouterr()
    texts = [_rendered(record) for record in everything.records] + [out, err]
    secrets = [TOKEN, TOKEN[4:20], "S3CR3TK3YMATERIAL", _b64(CLIENT_KEY)[:24], "Bearer"]
    leaks = [(s, t[:200]) for t in texts for s in secrets if s in t]
    assert leaks == []


def test_building_the_client_leaves_the_applications_logging_alone(server, tmp_path) -> None:
    """Building the client must not touch the application's logging: the official client's
    Configuration sets the "urllib3" and "client" loggers to WARNING and http.client's debug
    level to 0 whenever its ``debug`` is set (so does every deep copy of one, which every
    client model's constructor makes). An application that asked for urllib3's DEBUG
    records (to capture everything while it investigates) keeps them."""
    urllib3_logger = logging.getLogger("urllib3")
    urllib3_logger.setLevel(logging.DEBUG)
    logging.getLogger("client").setLevel(logging.INFO)
    debuglevel = http.client.HTTPConnection.debuglevel
    handler = KubernetesEventHandler(component="c", host="h", sink=server.url, qps=0)
    log = app_logger("levels")
    log.addHandler(handler)
    try:
        log.warning("x", extra={"involved": pod("levels")})
        active = handler.broadcaster
        assert active is not None
        assert active.flush(10)
    finally:
        handler.close()
    assert urllib3_logger.level == logging.DEBUG
    assert logging.getLogger("client").level == logging.INFO
    assert http.client.HTTPConnection.debuglevel == debuglevel


@pytest.mark.parametrize(
    ("cluster", "verify"),
    [
        ({}, True),
        ({"certificate-authority-data": _b64(CLIENT_CERT)}, True),
        ({"insecure-skip-tls-verify": True}, False),  # only when the user says so
    ],
    ids=["default", "own-ca", "explicitly-insecure"],
)
def test_tls_verification_stays_on_unless_turned_off(
    tmp_path, monkeypatch, cluster, verify
) -> None:
    """An https kubeconfig or URL verifies the server's certificate by default."""
    url = "https://127.0.0.1:6443"
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", url, **cluster)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    from_kubeconfig = sink.KubernetesEventSink(qps=0)
    from_url = sink.KubernetesEventSink.from_url(url, qps=0)
    try:
        assert from_kubeconfig.api_client.configuration.verify_ssl is verify
        assert from_url.api_client.configuration.verify_ssl is True
        if "certificate-authority-data" in cluster:
            assert from_kubeconfig.api_client.configuration.ssl_ca_cert
    finally:
        from_kubeconfig.close()
        from_url.close()
