"""The process around the pipeline: forked children, multiprocessing children, signal masks.

A child of ``os.fork()`` has one thread, the one that forked; every lock another thread held
stays held there. These tests fork while threads log, while every lock of the library is
held, and through ``multiprocessing``, with the handler's own broadcaster and with one the
application made (``broadcaster=``), and check that no child hangs, that each writes its own
events once, and that its counters add up.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import typing
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from k8s_logging_events import (
    _continuation,
    _diagnostics,
    _http,
    _pod,
    _process,
    _sanitise,
    correlator,
    models,
    recorder,
    series,
    sink,
)
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests._children import run_python
from tests.reliability_scenarios import (
    ListHandler,
    answer_from_fork,
    app_logger,
    check_forks,
    fork_quietly,
    on_library_logger,
    pod,
    read_child,
    run_forks,
    stored_counts,
    unaccounted,
)

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

OUTCOMES = ("dropped", "created", "patched", "coalesced", "failed", "discarded")


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer() as server:
        yield server


@pytest.fixture(name="users_sink")
def _users_sink(server: LocalApiServer) -> Iterator[sink.KubernetesEventSink]:
    """A sink on the server for the application's own broadcaster, which never closes it."""
    with contextlib.closing(sink.KubernetesEventSink.from_url(server.url, qps=0)) as made:
        yield made


# --- every lock held at the fork ------------------------------------------------------------

_LOCKS = (type(threading.Lock()), type(threading.RLock()), threading.Condition)


def _attributes(target: object) -> Iterator[object]:
    names = set(getattr(target, "__dict__", {}))
    for klass in type(target).__mro__:
        slots = getattr(klass, "__slots__", ())
        names.update((slots,) if isinstance(slots, str) else slots)
    for name in sorted(names):
        with contextlib.suppress(AttributeError):
            yield getattr(target, name)


def _locks_of(target: object) -> list[Any]:
    """The locks ``target`` holds as attributes (those inside its Events too)."""
    found = []
    for value in _attributes(target):
        if isinstance(value, threading.Event):
            value = value._cond  # type: ignore[attr-defined]
        if isinstance(value, _LOCKS):
            found.append(value)
    return found


def _hold(locks: list[Any], held: threading.Event, release: threading.Event) -> None:
    taken = [lock for lock in locks if lock.acquire(timeout=5)]
    try:
        if len(taken) == len(locks):
            held.set()
        release.wait(30)
    finally:
        for lock in reversed(taken):
            lock.release()


@needs_fork
@pytest.mark.timeout(90)
def test_a_child_renews_every_lock_a_thread_of_the_parent_held(server, users_sink) -> None:
    """A thread of the parent holds every lock of every object the library registered for
    renewal (namer, reporter, counters, runtime, correlators, sink, watchers, handlers ...)
    at the fork. In the child, through a broadcaster the application made and through the
    handler's own, an event is logged and flushed within seconds: no child hangs, each
    child's counters start at zero and add up, and the parent's events are not written
    again by the child."""
    first = next(_process._order)
    users = recorder.EventBroadcaster(queue_length=1000)
    users.start_recording_to_sink(users_sink)
    lines = ListHandler()
    structured = app_logger("structured")
    structured.addHandler(lines)
    users.start_structured_logging(structured)
    watched: list[str] = []
    users.start_event_watcher(lambda event: watched.append(event.involved_object.name))
    given = KubernetesEventHandler(component="fork", broadcaster=users, flush_timeout=10)
    owned = KubernetesEventHandler(component="fork", sink=server.url, qps=0, flush_timeout=10)
    log_given, log_owned = app_logger("given"), app_logger("owned")
    log_given.addHandler(given)
    log_owned.addHandler(owned)
    log_given.warning("parent", extra={"involved": pod("given-parent"), "reason": "Parent"})
    log_owned.warning("parent", extra={"involved": pod("owned-parent"), "reason": "Parent"})
    given.flush()
    owned.flush()

    registered = [t for k, t in list(_process._renewable.items()) if k > first]
    assert {type(t).__name__ for t in registered} >= {
        "Runtime",
        "EventBroadcaster",
        "Counters",
        "RateLimitedReporter",
        "EventNamer",
        "EventCorrelator",
        "KubernetesEventSink",
        "LazySink",
        "KubernetesEventHandler",
    }
    runtime = users._runtime
    watchers = [consumer.watcher for consumer in runtime._consumers]
    locks = [lock for target in [*registered, *watchers] for lock in _locks_of(target)]
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(locks, held, release), name="test-holder")
    holder.start()
    try:
        assert held.wait(10), "the test could not take every lock"
        read_end, write_end = os.pipe()
        pid = fork_quietly()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(read_end)
                before = (len(watched), len(lines.records))
                log_given.warning("child", extra={"involved": pod("given-child")})
                log_owned.warning("child", extra={"involved": pod("owned-child")})
                mine = {
                    "flushed": [users.flush(10), owned.broadcaster.flush(10)],  # type: ignore[union-attr]
                    "given": given.stats(),
                    "owned": owned.stats(),
                    "watched": watched[before[0] :],
                    "lines": len(lines.records) - before[1],
                }
                os.write(write_end, json.dumps(mine).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        report = read_child(read_end, pid, timeout=30)
    finally:
        release.set()
        holder.join(30)
        given.close()
        owned.close()
        users.shutdown(5)
    assert report is not None, "the child hung"
    assert report["flushed"] == [True, True]
    for stats in (report["given"], report["owned"]):
        assert stats["accepted"] == 1, stats
        assert stats["created"] == 1, stats
        assert unaccounted(stats) == 0
        assert sum(stats[name] for name in OUTCOMES) == 1
    assert report["watched"] == ["given-child"]
    assert report["lines"] == 1
    assert stored_counts(server) == Counter(
        {"given-parent": 1, "owned-parent": 1, "given-child": 1, "owned-child": 1}
    )


class _PodReader(FakeEventSink):
    def read_pod_uid(self, namespace: str, name: str) -> str:
        return f"uid-of-{name}"


_POD = models.ObjectReference(kind="Pod", api_version="v1", namespace="default", name="web-0")
_ABOUT_THE_POD = models.Event(
    name="web-0.1",
    namespace="default",
    involved_object=_POD,
    reason="Started",
    message="started",
    source=models.EventSource(component="fork"),
    first_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    last_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    count=1,
)
_LOCKED: dict[str, tuple[Callable[[], Any], Callable[[Any], object]]] = {
    "namer": (
        _sanitise.EventNamer,
        lambda namer: namer.name("web-0", _ABOUT_THE_POD.first_timestamp),
    ),
    "correlator": (correlator.EventCorrelator, lambda c: c.correlate(_ABOUT_THE_POD).skip),
    "series": (series.SeriesCorrelator, lambda s: s.observe(_ABOUT_THE_POD)[1]),
    "pod uid": (
        lambda: _pod.PodUidSink(_PodReader(), _POD),
        lambda pods: pods.create(_ABOUT_THE_POD).name,
    ),
    "lazy sink": (
        lambda: sink.LazySink(FakeEventSink, "fake", sink.CORE_V1),
        lambda lazy: (lazy.drain(True), lazy.create(_ABOUT_THE_POD).name),
    ),
    "continuation": (
        lambda: _continuation.Continuation(
            FakeEventSink(), _sanitise.EventNamer(), FakeClock(), _diagnostics.RateLimitedReporter()
        ),
        lambda continuation: continuation.known("default", "web-0.1"),
    ),
}


@needs_fork
@pytest.mark.timeout(60)
@pytest.mark.parametrize("what", list(_LOCKED))
def test_a_child_uses_at_once_what_a_thread_of_the_parent_held_locked(what: str) -> None:
    """Each object with a lock of its own (the namer, client-go's and the series correlator,
    the pod uid reader before its read, the lazy sink before its build, a write's
    continuation): a thread of the parent holds its locks at the fork, and the child, at
    once, makes the call that takes them, which returns."""
    make, use = _LOCKED[what]
    target = make()
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(
        target=_hold, args=(_locks_of(target), held, release), name="test-holder"
    )
    holder.start()
    try:
        assert held.wait(10), "the test could not take the locks"
        report = answer_from_fork(lambda: {"used": repr(use(target))}, timeout=10)
    finally:
        release.set()
        holder.join(10)
    assert report is not None, f"the child waited for the parent's {what} lock"


# --- forks under load -----------------------------------------------------------------------


@needs_fork
@pytest.mark.timeout(300)  # only a hang of the parent: a child's hang is found in 20 s
def test_two_hundred_forks_under_load_with_a_users_broadcaster(server) -> None:
    """200 forks, 5 ms apart, while two threads log through a handler whose broadcaster the
    application made: no child hangs (each answers within 20 s), each writes its own two
    events once with counters that add up (accepted 2), and the parent's events are on the
    server once each. (Before, about one fork in 25 inherited the namer's lock held.)"""
    result = run_forks(server, forks=200, child_events=2, pause=0.005, users_broadcaster=True)
    check_forks(result, child_events=2)


@needs_fork
def test_a_childs_counters_add_up_after_a_flush(server, users_sink) -> None:
    """The parent has written and counted events; its child's counters start at zero: after
    its own flush, accepted equals the sum of the outcomes (before: accepted 1, created 6)."""
    users = recorder.EventBroadcaster()
    users.start_recording_to_sink(users_sink)
    handler = KubernetesEventHandler(component="fork", broadcaster=users)
    log = app_logger("counts")
    log.addHandler(handler)
    for number in range(6):
        log.warning("parent", extra={"involved": pod(f"parent-{number}")})
    handler.flush()
    assert handler.stats()["created"] == 6

    def child() -> object:
        log.warning("child", extra={"involved": pod("child")})
        handler.flush()
        return handler.stats()

    try:
        stats = answer_from_fork(child)
    finally:
        handler.close()
        users.shutdown(5)
    assert stats is not None
    assert {name: stats[name] for name in ("accepted", *OUTCOMES, "pending")} == {
        "accepted": 1,
        "dropped": 0,
        "created": 1,
        "patched": 0,
        "coalesced": 0,
        "failed": 0,
        "discarded": 0,
        "pending": 0,
    }


@needs_fork
@pytest.mark.timeout(90)
def test_a_child_forked_after_shutdown_records_nothing() -> None:
    """A broadcaster shut down, then the process forks: the child's is shut down too. An
    event recorded there is dropped and said to come after shutdown, and starts no thread
    (a pipeline its parent closed, started again in the child)."""
    users = recorder.EventBroadcaster()
    users.start_recording_to_sink(FakeEventSink())
    record = users.new_recorder("closed")
    users.shutdown(5)
    read_end, write_end = os.pipe()
    pid = fork_quietly()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            with on_library_logger(ListHandler()) as reports:
                record.event(
                    models.ObjectReference(kind="Pod", namespace="default", name="late"),
                    models.NORMAL,
                    "Late",
                    "after shutdown",
                )
            stats = users.stats()
            said = {
                "counted": [stats["accepted"], stats["dropped"]],
                "threads": threading.active_count(),
                "said": reports.messages(),
            }
            os.write(write_end, json.dumps(said).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    answer = read_child(read_end, pid, timeout=20)
    assert answer is not None
    assert (answer["counted"], answer["threads"]) == ([1, 1], 1), answer
    assert [m for m in answer["said"] if "broadcaster was shut down" in m], answer


# --- a fork while a writer works inside OpenSSL ----------------------------------------------

_forking = threading.Event()
if hasattr(os, "register_at_fork"):
    # registered after the library's own hook, so it runs first: a fork has begun
    os.register_at_fork(before=_forking.set)


@needs_fork
@pytest.mark.timeout(90)
def test_a_fork_waits_while_a_writer_works_inside_openssl(monkeypatch) -> None:
    """OpenSSL's own locks (its algorithm store's) that a writer thread holds at a fork stay
    held in the child, where every later TLS connection, the application's too, waits for
    them forever (before: about one child in 150 of those forked while the parent logged
    over HTTPS never wrote an event). A writer is held inside the making of its TLS context
    until the application forks: the fork waits until the writer is out, and the parent's
    event is written."""
    inside: list[bool] = []
    making = threading.Event()
    made = _http.TlsSettings.context

    def context(settings: _http.TlsSettings) -> Any:
        inside.append(True)
        making.set()
        _forking.wait(30)  # OpenSSL's work goes on until a fork has begun
        try:
            return made(settings)
        finally:
            inside.pop()

    monkeypatch.setattr(_http.TlsSettings, "context", context)
    _forking.clear()
    with LocalApiServer(tls=True) as secured:
        users = recorder.EventBroadcaster()
        users_sink = sink.KubernetesEventSink(secured.api_client(), qps=0)
        users.start_recording_to_sink(users_sink)
        handler = KubernetesEventHandler(component="fork", broadcaster=users, flush_timeout=20)
        log = app_logger("openssl")
        log.addHandler(handler)
        try:
            log.warning("parent", extra={"involved": pod("tls-parent")})
            assert making.wait(30), "no writer made a TLS context"
            report = answer_from_fork(lambda: {"inside": bool(inside)})
            handler.flush()
        finally:
            handler.close()
            users.shutdown(5)
            users_sink.close()
            users_sink.api_client.close()
        assert report == {"inside": False}, "the fork came while a writer was inside OpenSSL"
        assert stored_counts(secured) == Counter({"tls-parent": 1})


# --- multiprocessing with fork ----------------------------------------------------------------

_MP: dict[str, Any] = {}
_tasks = itertools.count()


def _log_task(tag: str) -> tuple[int, dict[str, int]]:
    """In a pool worker: log two events about a pod of its own, flush, say how it counts."""
    log: logging.Logger = _MP["log"]
    for _ in range(2):
        log.warning("task", extra={"involved": pod(tag), "reason": "Task"})
    users: recorder.EventBroadcaster = _MP["users"]
    users.flush(10)
    return os.getpid(), dict(users.stats())


def _log_and_return(tag: str) -> None:
    """In a Process: log and return; the child writes at its exit (no flush here)."""
    for _ in range(2):
        _MP["log"].warning("proc", extra={"involved": pod(tag), "reason": "Proc"})


@needs_fork
@pytest.mark.timeout(120)
def test_multiprocessing_fork_children_of_a_users_broadcaster_under_load(
    server, users_sink
) -> None:
    """A Process and a Pool forked (multiprocessing's fork context) while a thread logs
    through a broadcaster the application made: every task's events are on the server once,
    each worker's counters add up from zero, and the parent's events are written once."""
    users = recorder.EventBroadcaster(queue_length=10_000)
    users.start_recording_to_sink(users_sink)
    handler = KubernetesEventHandler(component="mp", broadcaster=users, flush_timeout=10)
    log = app_logger("mp")
    log.addHandler(handler)
    _MP.update(log=log, users=users)
    stop = threading.Event()
    logged: Counter[str] = Counter()

    def load() -> None:
        while not stop.is_set():
            name = f"parent-{len(logged) % 7}"
            log.warning("load", extra={"involved": pod(name), "reason": "Load"})
            logged[name] += 1
            time.sleep(0.0005)

    loader = threading.Thread(target=load, name="test-load", daemon=True)
    loader.start()
    context = multiprocessing.get_context("fork")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            processes = [
                context.Process(target=_log_and_return, args=(f"proc-{n}",)) for n in range(4)
            ]
            for process in processes:
                process.start()
            pool = context.Pool(2)
        try:
            results = pool.map(_log_task, [f"task-{n}" for n in range(12)])
            pool.close()
            pool.join()
        finally:
            pool.terminate()
        for process in processes:
            process.join(30)
    finally:
        stop.set()
        loader.join(10)
        handler.flush()
        handler.close()
        users.shutdown(10)
        _MP.clear()
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    by_worker: dict[int, dict[str, int]] = {}
    for worker, stats in results:
        by_worker[worker] = stats  # its latest: after its last task's flush
        assert unaccounted(stats) == 0, stats
    assert sum(stats["accepted"] for stats in by_worker.values()) == 24
    counts = stored_counts(server)
    assert {k: v for k, v in counts.items() if k.startswith(("task-", "proc-"))} == {
        **{f"task-{n}": 2 for n in range(12)},
        **{f"proc-{n}": 2 for n in range(4)},
    }
    assert {k: v for k, v in counts.items() if k.startswith("parent-")} == dict(logged)


# --- signals: what a plugin started by the library inherits ----------------------------------

_PLUGIN = """#!{python}
# an exec credential plugin: a token (already expired, so that the next request runs the
# plugin again), but at its {hang_at}th run, which hangs (as a Go plugin does, it keeps the
# signal mask it was started with)
import json, os, pathlib, time

here = pathlib.Path(__file__).parent
runs = here / "runs"
run = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(run))
if run == {hang_at}:
    (here / "pid.tmp").write_text(str(os.getpid()))
    os.replace(here / "pid.tmp", here / "pid")
    time.sleep(60)
status = {{"token": "from-plugin", "expirationTimestamp": "2000-01-01T00:00:00Z"}}
kind = {{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential"}}
print(json.dumps({{**kind, "status": status}}))
"""


def _status(pid: int) -> dict[str, str]:
    """The fields of /proc/<pid>/status ({} once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return dict(line.split(":\t", 1) for line in status.read().splitlines())
    except OSError:
        return {}


def _ended(pid: int) -> bool:
    state = _status(pid).get("State", "Z")
    return state.startswith(("Z", "X"))


def _wait_for(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


def _plugin_kubeconfig(server: LocalApiServer, directory: Path, hang_at: int) -> str:
    """A kubeconfig file for ``server`` whose token comes from the ``exec`` plugin
    :data:`_PLUGIN`, which hangs at its ``hang_at``th run (both files in ``directory``)."""
    import yaml

    plugin = directory / "plugin.py"
    plugin.write_text(_PLUGIN.format(python=sys.executable, hang_at=hang_at))
    plugin.chmod(0o755)
    config = yaml.safe_load(server.kubeconfig(credentials=False))
    config["users"][0]["user"] = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
    }
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return str(kubeconfig)


def _hanging_plugin(directory: Path) -> int:
    """The pid of the plugin's run that hangs, once it runs."""
    pid_file = directory / "pid"
    assert _wait_for(pid_file.exists, 20), "the plugin never ran"
    return int(pid_file.read_text())


def _kill(pid: int | None) -> None:
    """End the plugin's run ``pid`` if it still runs (None: the test ended it)."""
    if pid is not None and not _ended(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "hang_at", [1, 2], ids=["while-the-client-is-built", "while-a-token-is-refreshed"]
)
def test_an_exec_plugin_the_library_started_is_ended_by_sigterm(server, tmp_path, hang_at) -> None:
    """A kubeconfig ``exec`` plugin (EKS, GKE, OIDC) runs on one of the library's threads,
    which block SIGTERM and SIGINT for the application's sake: when building the client
    (its first run) or when refreshing an expired token (before a write). A plugin that
    hangs there must not inherit that mask (/proc/<pid>/status SigBlk), and SIGTERM must end
    it; the write then goes on (with the token it had, or the plugin's next run's: never
    without one), and the handler closes promptly."""
    kubeconfig = _plugin_kubeconfig(server, tmp_path, hang_at)
    handler = KubernetesEventHandler(
        component="plugin", sink="auto", kubeconfig=kubeconfig, flush_timeout=30
    )
    log = app_logger("plugin")
    log.addHandler(handler)
    pid = None
    try:
        log.warning("Back-off", extra={"involved": pod("web-0"), "reason": "BackOff"})
        pid = _hanging_plugin(tmp_path)
        status = _status(pid)
        assert int(status["PPid"]) == os.getpid(), "started by this process"
        blocked = int(status["SigBlk"], 16)
        assert [s.name for s in _process.MAIN_THREAD_SIGNALS if blocked & (1 << (s - 1))] == []

        os.kill(pid, signal.SIGTERM)
        assert _wait_for(lambda: _ended(pid), 30), "SIGTERM did not end the plugin"
        pid = None
        handler.flush()
        assert stored_counts(server) == {"web-0": 1}
        sent = [r.headers for r in server.requests if r.method == "POST"]
        assert [h.get("Authorization", h.get("authorization")) for h in sent] == [
            "Bearer from-plugin"
        ]
    finally:
        _kill(pid)
        started = time.monotonic()
        handler.close()
        assert time.monotonic() - started < 6


@pytest.mark.timeout(60)
def test_a_flush_that_waits_for_a_hanging_exec_plugin_says_so_not_the_api_server(
    server, tmp_path
) -> None:
    """A kubeconfig ``exec`` plugin that hangs while the client is built holds the write on
    a writer thread, as a hanging request would, and a write of another namespace waits on
    another writer for that build. The flush's report said "in requests the API server had not
    answered (a hanging server or admission webhook; see request_timeout ...)", sending the
    user after the server, with request_timeout no help (the plugin has no timeout). It names
    the client's set-up or credentials, for both writes, and blames no server."""
    kubeconfig = _plugin_kubeconfig(server, tmp_path, hang_at=1)
    handler = KubernetesEventHandler(
        component="plugin", sink="auto", kubeconfig=kubeconfig, flush_timeout=1.5
    )
    log = app_logger("plugin")
    log.addHandler(handler)
    reports = ListHandler()
    own = logging.getLogger("k8s_logging_events")
    own.addHandler(reports)
    pid = None
    try:
        for namespace in ("default", "kube-system"):
            log.warning(
                "Back-off", extra={"involved": pod("web-0", namespace), "reason": "BackOff"}
            )
        pid = _hanging_plugin(tmp_path)
        assert _wait_for(lambda: len(_process.awaiting_credentials()) == 2, 20)
        handler.flush()  # both writes have waited longer than a stall by its end
        said = [r.getMessage() for r in reports.records if "Unable to write" in r.getMessage()]
        assert len(said) == 1, said
        assert "2 waiting for the Kubernetes client's set-up or credentials" in said[0]
        assert "API server had not answered" not in said[0], said[0]
    finally:
        own.removeHandler(reports)
        _kill(pid)
        handler.close()
        # the writers leave the build once the plugin is gone: no later report sees them
        assert _wait_for(lambda: not _process.awaiting_credentials(), 20)


def test_a_thread_that_blocks_the_signals_unblocks_them_only_while_a_subprocess_may_start() -> None:
    """The library's threads block the termination signals (the application handles them on
    its main thread); subprocesses_may_start() lifts that for its block, then restores it;
    on an application thread it changes nothing."""
    if not hasattr(signal, "pthread_sigmask"):
        pytest.skip("no pthread_sigmask here")
    seen: dict[str, set[int]] = {}

    def library_thread() -> None:
        _process.leave_signals_to_the_main_thread()
        seen["blocked"] = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        with _process.subprocesses_may_start():
            seen["inside"] = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        seen["after"] = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))

    def application_thread() -> None:
        with _process.subprocesses_may_start():
            seen["application"] = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))

    for target in (library_thread, application_thread):
        thread = threading.Thread(target=target, name="test-signals")
        thread.start()
        thread.join(10)
    wanted = set(_process.MAIN_THREAD_SIGNALS)
    assert wanted <= seen["blocked"]
    assert not wanted & seen["inside"]
    assert wanted <= seen["after"]
    assert not wanted & seen["application"]


def test_two_forks_at_once_each_hold_the_locks_until_their_own_fork_is_done(monkeypatch) -> None:
    """Two threads fork at once (a pool of threads each starting a process): the second fork
    waits for the locks the first holds, and once it has them it holds them until its own
    fork is done. The first fork's end in the parent releases only the locks it took: had it
    released the second's too, a writer could be inside OpenSSL or an import while the
    second child is made, and that child's TLS connections would wait forever."""
    importing, openssl = threading.Lock(), threading.Lock()
    second_waits, second_holds = threading.Event(), threading.Event()

    class ReleaseThenLetTheOtherIn:
        """A lock whose last release by the first fork waits until the second fork has them."""

        def __init__(self, lock: threading.Lock) -> None:
            self.lock = lock

        def acquire(self, timeout: float = -1) -> bool:
            if threading.current_thread().name == "second-fork":
                second_waits.set()
            return self.lock.acquire(timeout=timeout)

        def release(self) -> None:
            self.lock.release()
            last = not importing.locked() and not openssl.locked()
            if last and threading.current_thread().name == "first-fork":
                second_holds.wait(5)

    monkeypatch.setattr(_process, "_importing", ReleaseThenLetTheOtherIn(importing))
    monkeypatch.setattr(_process, "_openssl", ReleaseThenLetTheOtherIn(openssl))
    first_done, second_may_end = threading.Event(), threading.Event()
    held_after_first: list[bool] = []

    def first() -> None:
        _process._before_fork()
        second.start()
        assert second_waits.wait(10)  # the second fork waits for the locks
        _process._after_fork_in_parent()
        held_after_first.extend([importing.locked(), openssl.locked()])
        first_done.set()

    def second_fork() -> None:
        _process._before_fork()
        second_holds.set()
        second_may_end.wait(10)
        _process._after_fork_in_parent()

    second = threading.Thread(target=second_fork, name="second-fork")
    first_thread = threading.Thread(target=first, name="first-fork")
    first_thread.start()
    assert first_done.wait(20)
    second_may_end.set()
    for thread in (first_thread, second):
        thread.join(10)
    assert held_after_first == [True, True]
    assert not importing.locked()
    assert not openssl.locked()


@needs_fork
@pytest.mark.timeout(60)
def test_a_signal_during_a_forks_wait_is_handled_once_the_fork_is_done(monkeypatch) -> None:
    """A fork waits while a writer imports the client; a signal that comes meanwhile is not
    handled inside that wait, as ``os.fork()`` alone handles none there. Before, its handler
    ran in the middle of the fork's hooks: one that forked (under a periodic timer) recursed
    into the wait, fork inside fork (three forks asked for made six, nested six deep), and
    one that raised (``sys.exit`` on SIGTERM) cut the wait short. Now the handler runs once,
    after the locks are released."""
    importing = threading.Lock()
    waiting, handled = threading.Event(), threading.Event()
    seen: list[bool] = []

    class Waited:
        def acquire(self, timeout: float = -1) -> bool:
            waiting.set()
            return importing.acquire(timeout=timeout)

        def release(self) -> None:
            importing.release()

    def signalled(*_: object) -> None:
        seen.append(importing.locked())
        handled.set()

    def writer_importing() -> None:
        assert waiting.wait(10)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
        handled.wait(0.5)  # handled at once, unless the fork's wait keeps it out
        importing.release()

    monkeypatch.setattr(_process, "_importing", Waited())
    previous = signal.signal(signal.SIGUSR1, signalled)
    importing.acquire()
    writer = threading.Thread(target=writer_importing)
    writer.start()
    try:
        _process._before_fork()
        handled_in_the_wait = handled.is_set()
        _process._after_fork_in_parent()
    finally:
        writer.join(10)
        signal.signal(signal.SIGUSR1, previous)
    assert not handled_in_the_wait
    assert seen == [False]  # once, with the locks released


def _signalled_by_another_thread_during_the_wait(
    monkeypatch, handler: Any
) -> tuple[threading.Lock, threading.Thread]:
    """``_process``'s import lock held by a writer thread, which, once a fork on the main
    thread waits for it, takes SIGUSR1 (a signal sent to the process goes to any thread that
    does not block it) and then releases it: Python runs ``handler`` on the main thread,
    after the wait, within the fork's hooks."""
    importing = threading.Lock()
    status = f"/proc/self/task/{threading.main_thread().native_id}/status"

    def fork_waits() -> bool:  # the main thread blocks the signals, then waits
        with open(status) as lines:
            blocked = next(line for line in lines if line.startswith("SigBlk:"))
        return bool(int(blocked.split()[1], 16) >> (signal.SIGUSR1 - 1) & 1)

    def writer_importing() -> None:
        deadline = time.monotonic() + 10
        while not fork_waits() and time.monotonic() < deadline:
            time.sleep(0.001)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        importing.release()

    monkeypatch.setattr(_process, "_importing", importing)
    monkeypatch.setattr(_process, "FORK_IMPORT_WAIT_SECONDS", 5.0)
    signal.signal(signal.SIGUSR1, handler)
    importing.acquire()
    writer = threading.Thread(target=writer_importing)
    writer.start()
    return importing, writer


@contextlib.contextmanager
def _signal_mask_kept() -> Iterator[frozenset[int]]:
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        yield frozenset(mask)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.timeout(60)
def test_a_handler_that_forks_within_a_forks_hooks_leaves_no_signal_blocked(monkeypatch) -> None:
    """A signal another thread takes during a fork's wait has its handler run on the main
    thread as soon as the wait ends, within the fork's hooks. One that forks again (a fork
    from a timer's handler, in a program with threads) neither waits for the locks its own
    outer fork holds nor leaves signals blocked. Before, the inner fork took the outer's saved
    mask: the main thread, and the child, blocked every signal for good (SIGTERM never
    handled), and the inner fork waited out FORK_IMPORT_WAIT_SECONDS for its own lock."""
    took: list[float] = []

    def forks_again(*_: object) -> None:
        start = time.monotonic()
        _process._before_fork()  # the inner fork's hooks, as os.fork() runs them
        _process._after_fork_in_parent()
        took.append(time.monotonic() - start)

    with _signal_mask_kept() as mask:
        importing, writer = _signalled_by_another_thread_during_the_wait(monkeypatch, forks_again)
        try:
            _process._before_fork()
            _process._after_fork_in_parent()
            after = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        finally:
            writer.join(10)
    assert after == mask
    assert len(took) == 1
    assert took[0] < 1  # not FORK_IMPORT_WAIT_SECONDS (5)
    assert not importing.locked()


@pytest.mark.timeout(60)
def test_a_handler_that_raises_within_a_forks_hooks_leaves_no_lock_held(monkeypatch) -> None:
    """A signal another thread takes during a fork's wait has its handler run on the main
    thread as soon as the wait ends; one that raises (``sys.exit`` on SIGTERM) ends the fork's
    hook early (Python prints the exception and forks), and the fork's end still releases
    the locks it took. Before, the import lock stayed held: every later fork waited
    FORK_IMPORT_WAIT_SECONDS, and the writer's next import for ever."""

    def exits(*_: object) -> None:
        raise SystemExit(143)

    with _signal_mask_kept() as mask:
        importing, writer = _signalled_by_another_thread_during_the_wait(monkeypatch, exits)
        try:
            with pytest.raises(SystemExit):
                _process._before_fork()
            _process._after_fork_in_parent()
            after = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        finally:
            writer.join(10)
    assert not importing.locked()
    assert after == mask


_LOGS_AT_IMPORT = """
import logging, multiprocessing, os, sys
from k8s_logging_events.handler import KubernetesEventHandler

log = logging.getLogger("worker")
log.propagate = False
log.addHandler(KubernetesEventHandler(component="worker", sink=os.environ["EVENTS_URL"]))
# a module that says it is loaded (with default_involved: pod, every record does): in a
# forkserver child this runs while multiprocessing prepares it, before it is its child
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loaded", "namespace": "default"}}
log.warning("loaded", extra={"involved": pod})

def work():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "work", "namespace": "default"}}
    for step in range(3):
        log.warning("step %d", step, extra={"involved": pod})

if __name__ == "__main__":
    child = multiprocessing.get_context(sys.argv[1]).Process(target=work)
    child.start()
    child.join(60)
    print(child.exitcode)
"""


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_child_whose_module_logs_while_multiprocessing_prepares_it_still_writes(
    server, tmp_path, method
) -> None:
    """A forkserver (or spawn) child imports the main module again while multiprocessing
    prepares it, before it is its child; a module that logs an event there started the
    handler then. The child still writes what its target logged when it ends with
    os._exit (before: nothing of the child reached the server, and nothing was said)."""
    result = run_python(
        _LOGS_AT_IMPORT,
        method,
        cwd=tmp_path,
        timeout=120,
        file="worker.py",
        EVENTS_URL=server.url,
    )
    assert result.stdout.split() == ["0"], result.stderr
    assert stored_counts(server)["work"] == 3, result.stderr


_HOOK_BEFORE_THE_LIBRARY = """
import logging, os
log = logging.getLogger("hooked")
log.propagate = False
hooked = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hook", "namespace": "default"}}
# an application's own hook, registered before the library is imported (as before a
# dictConfig that names the handler's class): in the child it runs before the library's
os.register_at_fork(after_in_child=lambda: log.warning("forked", extra={"involved": hooked}))

from k8s_logging_events.handler import KubernetesEventHandler

handler = KubernetesEventHandler(component="hooked", sink=os.environ["EVENTS_URL"])
log.addHandler(handler)
parent = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "parent", "namespace": "default"}}
log.warning("parent", extra={"involved": parent})
handler.flush()
pid = os.fork()
if pid == 0:
    handler.flush()
    os._exit(0 if handler.stats()["created"] == 1 else 1)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@needs_fork
def test_an_event_logged_by_a_fork_hook_that_runs_before_the_librarys_is_written(
    server, tmp_path
) -> None:
    """A child's fork hooks run in the order registered: one registered before the library
    was imported runs before the library renews itself in the child, and may log. Its event
    is written by the child (before: it went into the parent's queue, which the renewal then
    forgot: no event, no count, nothing said)."""
    result = run_python(
        _HOOK_BEFORE_THE_LIBRARY, cwd=tmp_path, timeout=120, file="hooked.py", EVENTS_URL=server.url
    )
    assert result.stdout.split() == ["0"], result.stderr
    assert stored_counts(server) == Counter({"parent": 1, "hook": 1}), result.stderr


def test_a_log_call_asks_the_system_nothing_to_tell_a_forks_child(server, monkeypatch) -> None:
    """The handler tells a child whose fork hooks have not renewed the library yet without a
    system call, unless a fork is under way: ``os.getpid()`` is one, and on every record it
    cost the caller 0.7 microseconds (2 under load) in a sandboxed container."""
    handler = KubernetesEventHandler(component="calls", sink=server.url)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
    record = logging.LogRecord("calls", logging.WARNING, __file__, 1, "up", None, None)
    record.involved = pod
    calls: list[int] = []
    getpid, caller = os.getpid, threading.get_ident()

    def counted() -> int:
        if threading.get_ident() == caller:  # not the library's threads
            calls.append(1)
        return getpid()

    try:
        handler.handle(record)  # the first makes the pipeline
        monkeypatch.setattr(os, "getpid", counted)
        handler.handle(record)
        handler.emit(record)
        monkeypatch.undo()
        handler.flush()
    finally:
        handler.close()
    assert calls == []
    assert stored_counts(server)["p"] == 3


_CRASH_IN_A_FORK_HOOK = """
import ctypes, faulthandler, os
faulthandler.enable()
# a C library's fork hook that crashes, registered before the library's: it runs after it
os.register_at_fork(before=lambda: ctypes.string_at(0))
import k8s_logging_events.handler
os.fork()
"""


@needs_fork
def test_a_crash_within_a_forks_hooks_still_shows_where(tmp_path) -> None:
    """A segmentation fault in another library's fork hook, or in ``fork()`` itself, while
    the fork's hooks block the signals: faulthandler still prints the Python stack. Before,
    the fault was blocked too, and the kernel ended the process with no word."""
    result = run_python(_CRASH_IN_A_FORK_HOOK, cwd=tmp_path, timeout=120, file="crash.py")
    assert result.returncode == -signal.SIGSEGV
    assert "Segmentation fault" in result.stderr
    assert "crash.py" in result.stderr


_FORK_WHILE_A_STOP_RUNS = """
import os, sys, time, warnings
import logging, logging.config
from k8s_logging_events.handler import KubernetesEventHandler
from tests._children import hold_the_client_build

building, release = hold_the_client_build()  # the writer builds the client as dictConfig runs
handler = KubernetesEventHandler(component="job", sink=sys.argv[1], flush_timeout=30)
log = logging.getLogger("job")
log.addHandler(handler)
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job", "namespace": "default"}}
log.warning("step failed", extra={"involved": pod})
building.wait(30)
logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
release.set()  # the stop on k8s-events-close now waits for the hanging server
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    pid = os.fork()
if pid == 0:
    sys.exit(0)  # a worker's normal end: the interpreter's exit, atexit hooks included
began = time.monotonic()
os.waitpid(pid, 0)
print(time.monotonic() - began, flush=True)
os._exit(0)  # the parent's own stop (30 s against a hanging server) is not this test's
"""


@needs_fork
def test_a_forked_child_does_not_wait_at_exit_for_a_stop_running_in_its_parent(
    tmp_path,
) -> None:
    """dictConfig left a handler's stop to a thread of its own (``k8s-events-close``) and the
    program forked a worker meanwhile: the worker has no such thread, yet its exit waited
    for it, the stop's whole bound (flush_timeout and a second: 31 s here). A child's exit
    waits only for stops of its own."""
    with LocalApiServer() as server:
        server.inject(action="hang", times=None)
        result = run_python(_FORK_WHILE_A_STOP_RUNS, server.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split()[-1]) < 10, result.stdout


_CHILD_ENDS_WHILE_A_STOP_RUNS = """
import logging, logging.config, multiprocessing, sys
from k8s_logging_events.handler import KubernetesEventHandler
from tests._children import hold_the_client_build

def work(url):
    building, release = hold_the_client_build()  # the writer builds it as dictConfig runs
    handler = KubernetesEventHandler(component="work", sink=url, flush_timeout=30)
    log = logging.getLogger("work")
    log.addHandler(handler)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
    log.warning("step failed", extra={"involved": pod})
    building.wait(30)
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    release.set()  # the stop goes on on k8s-events-close as the target returns

child = multiprocessing.get_context("fork").Process(target=work, args=(sys.argv[1],))
child.start()
child.join(60)
print(child.exitcode)
"""


@needs_fork
def test_a_multiprocessing_child_ends_once_a_stop_left_by_dictconfig_wrote(
    server, tmp_path
) -> None:
    """In a multiprocessing child, dictConfig replaced a handler while its writer built the
    client, so the handler stopped on a thread of its own; the target then returned and the
    child ended with os._exit, which no exit hook precedes: that thread was killed, the
    event never written, never counted, nothing said. The child's end waits for the stop
    as an interpreter's exit does."""
    result = run_python(_CHILD_ENDS_WHILE_A_STOP_RUNS, server.url, cwd=tmp_path)
    assert result.stdout.split() == ["0"], result.stderr
    assert stored_counts(server)["p"] == 1, result.stderr


_CELERY_PREFORK_WORKER = """
import logging, os, sys
import celery.signals  # the worker has imported it before its pool forks
from k8s_logging_events.handler import KubernetesEventHandler

log = logging.getLogger("task")
log.propagate = False
log.addHandler(KubernetesEventHandler(component="worker", sink=sys.argv[1]))
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
pid = os.fork()  # billiard forks a pool process, without exec
if pid == 0:
    for _ in range(7):  # its tasks, up to --max-tasks-per-child 7
        log.warning("Failed to sync", extra={"involved": pod})
    # billiard's Worker._do_exit: Celery's on_exit sends this signal, then os._exit
    celery.signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    os._exit(0)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@needs_fork
def test_a_celery_prefork_worker_process_writes_its_events_before_its_os_exit(
    server, tmp_path
) -> None:
    """Celery's prefork pool (billiard) forks its worker processes without exec; one ends
    (after ``--max-tasks-per-child`` tasks, on a warm shutdown, under ``--autoscale``) with
    ``os._exit()``, no atexit, no multiprocessing finalizer, after Celery's
    ``worker_process_shutdown`` signal alone. Its events are written then (before: a worker
    that logged 200 warnings in tasks of 7 left 4 on the server, and nothing said so).
    The signal is Celery's own; the fork and the ``os._exit`` are billiard's."""
    result = run_python(_CELERY_PREFORK_WORKER, server.url, cwd=tmp_path)
    assert result.stdout.split() == ["0"], result.stderr
    assert stored_counts(server)["p"] == 7, result.stderr


_CELERY_GOODBYE = """
import logging, os, sys
import celery.signals
from k8s_logging_events.handler import KubernetesEventHandler

log = logging.getLogger("task")
log.propagate = False
log.addHandler(KubernetesEventHandler(component="worker", sink=sys.argv[1]))
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}


@celery.signals.worker_process_shutdown.connect  # the application's, connected as it imports
def goodbye(**_):
    log.warning("Worker process exiting", extra={"involved": pod})


pid = os.fork()  # billiard forks a pool process, without exec
if pid == 0:  # no task logged: its first event is the goodbye
    celery.signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    os._exit(0)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@needs_fork
def test_a_celery_worker_process_writes_the_first_event_a_shutdown_receiver_logs(
    server, tmp_path
) -> None:
    """An event a ``worker_process_shutdown`` receiver of the application logs, the first of
    its process, is written before billiard's ``os._exit`` (before: the flush was connected
    at the process's first event, too late for the signal being sent, and it was lost)."""
    result = run_python(_CELERY_GOODBYE, server.url, cwd=tmp_path)
    assert result.stdout.split() == ["0"], result.stderr
    assert stored_counts(server)["p"] == 1, result.stderr


_REGISTRARS = """
import atexit, json, os, pkgutil, sys, importlib
seen = []
def registrar(name, real):
    def register(*args, **kwargs):
        seen.append([name, sys._getframe(1).f_globals["__name__"]])
        return real(*args, **kwargs)
    return register
atexit.register = registrar("atexit", atexit.register)
os.register_at_fork = registrar("fork", os.register_at_fork)
import k8s_logging_events
for module in pkgutil.walk_packages(k8s_logging_events.__path__, "k8s_logging_events."):
    if module.name.split(".")[1] != "__main__":
        importlib.import_module(module.name)
print(json.dumps(sorted(seen)))
"""


def test_the_packages_only_fork_and_exit_hooks_are_the_process_registrys(tmp_path) -> None:
    """Importing every module of the package registers one ``os.register_at_fork`` hook
    and the ``atexit`` functions, all from ``_process``: what else must be renewed in a
    child or done at exit registers there (a module with its own atexit function once
    ran it in an order of its own)."""
    child = run_python(_REGISTRARS, cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    registered = [r for r in json.loads(child.stdout) if r[1].startswith("k8s_logging_events")]
    assert {module for _, module in registered} == {"k8s_logging_events._process"}
    assert [kind for kind, _ in registered].count("fork") == 1


def test_the_exit_drains_every_runtime_though_another_thread_starts_one_meanwhile(
    monkeypatch,
) -> None:
    """The exit copies the set of live runtimes to drain them all at once; a runtime that
    another thread starts during the copy changed the set under it (``RuntimeError: Set
    changed size during iteration``) and the exit's drain was skipped, every handler then
    waiting its own ``flush_timeout`` one after another. The copy is made again."""
    drained: list[str] = []

    class Runtime:
        def __init__(self, name: str) -> None:
            self.name = name

        def drain_at_exit(self, began: float) -> None:
            drained.append(self.name)

    first, started_meanwhile = Runtime("first"), Runtime("meanwhile")

    class Changing(weakref.WeakSet[Runtime]):  # another thread adds while the exit iterates
        def __iter__(self):
            for item in super().__iter__():
                if started_meanwhile not in self:
                    self.add(started_meanwhile)
                yield item

    live = Changing([first])
    monkeypatch.setattr(_process, "_to_flush", live)
    _process._drain_all()
    assert sorted(drained) == ["first", "meanwhile"]


@pytest.mark.parametrize("cls", [correlator.EventCorrelator, series.SeriesCorrelator])
def test_the_type_hints_of_a_class_that_owns_a_renewed_lock_can_be_read(cls: type) -> None:
    """``typing.get_type_hints`` (Sphinx, pydantic, cattrs, dependency injectors) reads
    the public classes built on ``Locked`` as any other: its lock's annotation is no union
    of ``threading.Lock`` and ``threading.RLock``, which are functions at run time."""
    assert "_lock" in typing.get_type_hints(cls)
