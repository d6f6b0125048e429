"""The runtime: never hang, never lose what was logged at exit, bounded under any load.

Each test is one case that an earlier version got wrong (a deadlock, a silent loss, an
unbounded queue). Programs whose exit is the point run in a child process against the
local API server; everything else runs in this process with the autouse fixture that fails
a test leaving a thread behind.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import logging
import logging.config
import math
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from k8s_logging_events import (
    _diagnostics,
    _flush,
    _handoff,
    _pool,
    _process,
    _runtime,
    correlator,
    models,
    recorder,
    sink,
)
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests._children import run_python
from tests._sinks import SetUpHangs
from tests.reliability_scenarios import (
    ListHandler,
    on_library_logger,
    pod,
    stored_counts,
    thread_limit_once,
    unaccounted,
)

REPO = Path(__file__).resolve().parent.parent


_loggers = iter(range(1_000_000))


def app_logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"tests.runtime.app{next(_loggers)}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)
    return log


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer() as server:
        yield server


def run_child(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter (this one's version) with the repo importable."""
    return run_python(textwrap.dedent(script), *args, cwd=REPO, timeout=timeout)


# --- deadlocks ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_dictconfig_under_sixteen_logging_threads_with_drops_does_not_freeze(server) -> None:
    """dictConfig holds logging's lock while it closes the old handler; the closing waits
    for the runtime, whose drop reports must not need that lock (an earlier version froze
    here every time: a level change had cleared the loggers' caches)."""
    name = "tests.runtime.dictconfig"

    def configure(tag: str) -> None:
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "events": {
                        "class": "k8s_logging_events.handler.KubernetesEventHandler",
                        "component": f"dc-{tag}",
                        "sink": server.url,
                        "queue_length": 8,
                        "flush_timeout": 1.0,
                    }
                },
                "loggers": {name: {"level": "DEBUG", "handlers": ["events"], "propagate": False}},
            }
        )

    configure("first")
    log = logging.getLogger(name)
    handlers = list(log.handlers)
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            number = 0
            while not stop.is_set():
                log.warning(
                    "w%d", number % 5, extra={"involved": pod(f"dc-{worker}-{number % 50}")}
                )
                number += 1
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for worker in workers:
        worker.start()
    try:
        logging.getLogger("k8s_logging_events").setLevel(logging.INFO)  # clears level caches
        for tag in ("second", "third"):
            configure(tag)
            handlers.extend(log.handlers)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
        for handler in handlers:
            handler.close()
    assert errors == []
    stats = [h.stats() for h in handlers if isinstance(h, KubernetesEventHandler)]
    assert sum(s["dropped"] for s in stats) > 0, "the queue was small enough to drop"
    assert all(unaccounted(s) == 0 for s in stats), stats


SIGNAL_CHILD = """
import logging, signal, sys, json
from k8s_logging_events.handler import KubernetesEventHandler

handler = KubernetesEventHandler(component="sig", sink=sys.argv[1], qps=0, flush_timeout=10)
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(handler)
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sig", "namespace": "default"}}
other = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "main", "namespace": "default"}}
fired = [0]

def on_alarm(signum, frame):
    fired[0] += 1
    log.warning("alarm", extra={"involved": pod, "reason": "Alarm"})

signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
for number in range(int(sys.argv[2])):
    log.warning("tick %d", number % 3, extra={"involved": other, "reason": "Tick"})
signal.setitimer(signal.ITIMER_REAL, 0, 0)
handler.flush()
print(json.dumps({"fired": fired[0], "stats": handler.stats()}))
handler.close()
"""


def test_logging_from_a_signal_handler_while_the_main_thread_logs_never_freezes(server) -> None:
    """A SIGALRM handler that logs an event every millisecond interrupts the main thread
    in the middle of its own logging calls: nothing on that path may wait for a lock the
    interrupted frame holds, and no occurrence may be lost or counted twice."""
    records = 30_000
    result = run_child(SIGNAL_CHILD, server.url, str(records), timeout=90)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    stats, fired = report["stats"], report["fired"]
    assert fired > 100, "the alarm did interrupt the loop"
    assert stats["accepted"] == records + fired
    assert unaccounted(stats) == 0, stats
    counts = stored_counts(server, None)
    assert counts["main"] == records
    assert counts["sig"] == fired


def test_flushes_at_once_switch_the_sinks_drain_on_and_off_once() -> None:
    """A sink may be shared by several broadcasters (one ``sink: ext://...`` object for two
    handlers), so it drains until as many ends of drains as beginnings came: two flushes of one
    broadcaster at once must switch it on once and off once, or it would drain for good."""
    switches: list[bool] = []
    release = threading.Event()

    class SlowSink(FakeEventSink):
        def drain(self, on: bool) -> None:
            switches.append(on)

        def create(self, event: models.Event) -> models.Event:
            release.wait(10)
            return super().create(event)

    events = recorder.EventBroadcaster()
    events.start_recording_to_sink(SlowSink())
    events.new_recorder("app").event(pod("web-0"), "Normal", "Started", "Started")
    first = threading.Thread(target=events.flush, args=(10,), name="test-flush", daemon=True)
    try:
        first.start()
        assert not events.flush(0.2)  # a second flush meanwhile, while the write hangs
        release.set()
        first.join(10)
        assert switches == [True, False]
    finally:
        release.set()
        events.shutdown()


# --- processes ------------------------------------------------------------------------------

MP_CHILD = """
import json, logging, multiprocessing, sys
from k8s_logging_events.handler import KubernetesEventHandler

URL, METHOD = sys.argv[1], sys.argv[2]

def configure():
    log = logging.getLogger("app")
    if not log.handlers:
        log.setLevel(logging.INFO)
        log.addHandler(KubernetesEventHandler(component="mp", sink=URL, qps=0))
    return log

def target(tag):
    log = configure() if METHOD != "fork" else logging.getLogger("app")
    for number in range(15):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "%s-%d" % (tag, number % 5), "namespace": "default"}}
        log.warning("work %d", number, extra={"involved": pod})
    return tag

if __name__ == "__main__":
    if METHOD == "fork":
        configure()
    ctx = multiprocessing.get_context(METHOD)
    process = ctx.Process(target=target, args=("proc",))
    process.start()
    process.join(60)
    with ctx.Pool(2) as pool:
        done = pool.map(target, ["pool%d" % n for n in range(6)])
        pool.close()  # workers end, and write what they logged, before the block terminates
        pool.join()
    print(json.dumps({"exitcode": process.exitcode, "done": done}))
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_children_write_what_they_logged_once(server, method, tmp_path) -> None:
    """A Process child ends with os._exit after multiprocessing's finalizers, and so do a
    closed Pool's workers: both must write what they logged, once (a fork child does not
    write its parent's pending events either; a forkserver or spawn child configures the
    handler itself)."""
    script = tmp_path / "mp_child.py"
    script.write_text(textwrap.dedent(MP_CHILD))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("KUBECONFIG", None)
    # a session of its own: on a timeout the pool's workers are killed with their parent
    child = subprocess.Popen(
        [sys.executable, str(script), server.url, method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        raise AssertionError(f"the program did not end: {err}") from None
    result = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["exitcode"] == 0
    counts = stored_counts(server, None)
    expected = {
        f"{tag}-{n}": 3 for tag in ["proc"] + [f"pool{k}" for k in range(6)] for n in range(5)
    }
    assert dict(counts) == expected, result.stderr[-3000:]


MP_HUNG_CHILD = """
import logging, multiprocessing, os, sys
from k8s_logging_events.handler import KubernetesEventHandler

log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.addHandler(
    KubernetesEventHandler(
        component="mp", sink=os.environ["EVENTS_URL"], api=sys.argv[2], flush_timeout=0.5
    )
)

def target():
    for number in range(5):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "c-%d" % number, "namespace": "default"}}
        logging.getLogger("app").warning("work", extra={"involved": pod})

if __name__ == "__main__":
    process = multiprocessing.get_context(sys.argv[1]).Process(target=target)
    process.start()
    process.join(60)
"""


@pytest.mark.parametrize(
    ("api", "said"),
    [
        ("v1", "Unable to write 5 event occurrence(s) of mp "),
        ("auto", "5 occurrences of mp were not written: their sink was still being set up"),
    ],
)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_multiprocessing_child_that_cannot_write_says_so(
    server, tmp_path, method, api, said
) -> None:
    """A child's target returned while the server hangs: its events cannot be written
    within ``flush_timeout``. A fork child ends with os._exit, where logging.shutdown()
    never reports; a spawn child's exit runs it next, which must neither wait nor say it
    again. One report on the child's standard error says how many occurrences were not
    written and why (lost without a word before; a spawn child waited and said it twice),
    naming the handler's component, as the exit's report does. With ``api: auto``, the
    question which API the server serves hangs: the report says so, as the exit's does,
    once (the child's summary said them again)."""
    server.inject(action="hang", times=None)
    script = tmp_path / "mp_hung_child.py"
    script.write_text(textwrap.dedent(MP_HUNG_CHILD))
    env = {**os.environ, "PYTHONPATH": str(REPO), "EVENTS_URL": server.url}
    env.pop("KUBECONFIG", None)
    result = subprocess.run(
        [sys.executable, str(script), method, api],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    reports = [line for line in result.stderr.splitlines() if "occurrence" in line]
    assert len(reports) == 1, result.stderr
    assert said in reports[0], result.stderr


def test_a_child_says_once_what_is_set_aside_as_it_gives_up(monkeypatch) -> None:
    """A ``multiprocessing`` child's flush runs out of time with an occurrence in the
    dispatcher's hands; as the child gives up, the dispatcher sets it aside for its sink,
    still being set up. One report says it was not written, and why: the child's summary,
    from a look taken before giving up, said it again as never handed to a writer."""
    entered, released, handed = threading.Event(), threading.Event(), threading.Event()
    hand_on = _handoff.HandOff._hand_on

    def held(self: _handoff.HandOff, items: list[Any], consumers: list[Any]) -> None:
        entered.set()
        released.wait(10)
        hand_on(self, items, consumers)
        handed.set()

    monkeypatch.setattr(_handoff.HandOff, "_hand_on", held)
    b = recorder.EventBroadcaster()
    hanging = SetUpHangs()
    b.start_recording_to_sink(hanging)
    runtime = b._runtime
    runtime.exit_timeout = 0.1
    close = runtime.close

    def close_as_it_is_set_aside(timeout: float | None) -> Any:
        released.set()
        assert handed.wait(10)
        return close(timeout)

    monkeypatch.setattr(runtime, "close", close_as_it_is_set_aside)
    try:
        b.new_recorder("child").event(REF, models.NORMAL, "Late", "message")
        assert entered.wait(10)
        with on_library_logger(ListHandler()) as reports:
            runtime.flush_at_child_exit()
    finally:
        released.set()
        hanging.gate.set()
    said = [text for text in reports.messages() if "occurrence" in text]
    assert len(said) == 1, said
    assert said[0].startswith("1 occurrences were not written: their sink was still"), said
    assert (b.stats()["failed"], unaccounted(dict(b.stats()))) == (1, 0)


BATCH_CHILD = """
import logging, sys
from k8s_logging_events.handler import KubernetesEventHandler

logging.getLogger().addHandler(
    KubernetesEventHandler(component="batch", sink=sys.argv[1], api=sys.argv[2])
)
log = logging.getLogger("job")
for number in range(100):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "batch-%d" % number, "namespace": "default"}}
    log.warning("Processed with errors", extra={"involved": pod, "reason": "Partial"})
"""


@pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1"])
def test_a_batch_job_finds_all_its_events_after_exit_with_default_options(server, api) -> None:
    """100 distinct objects and an ordinary exit: the client-side rate limit (5/s) must not
    be why events are lost, so the drain at exit runs at drain_qps, through either API."""
    result = run_child(BATCH_CHILD, server.url, api)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert stored_counts(server, None) == Counter({f"batch-{n}": 1 for n in range(100)})


HANG_CHILD = """
import atexit, json, sys, time

# registered before logging is imported, so it runs after logging.shutdown()
atexit.register(lambda: print(json.dumps({"shut_down": time.monotonic()}), flush=True))

import logging, threading
from k8s_logging_events.handler import KubernetesEventHandler

log = logging.getLogger("app")
log.addHandler(KubernetesEventHandler(component="hang", sink=sys.argv[1], flush_timeout=2.0))

def chatter():
    number = 0
    while True:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "daemon-%d" % (number % 40), "namespace": "default"}}
        log.warning("still here", extra={"involved": pod})
        number += 1
        time.sleep(0.001)

for number in range(30):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "main-%d" % number, "namespace": "default"}}
    log.warning("stopping", extra={"involved": pod})
threading.Thread(target=chatter, daemon=True).start()
time.sleep(0.2)
print(json.dumps({"exiting": time.monotonic()}), flush=True)
"""


def test_exit_with_a_hanging_server_and_a_daemon_still_logging_takes_one_deadline(server) -> None:
    """logging.shutdown() calls flush() then close(): they share flush_timeout (2 s here),
    whatever the server does, and the one report says what was not written and why."""
    server.inject(action="hang", times=None)
    result = run_child(HANG_CHILD, server.url)
    assert result.returncode == 0, result.stderr
    times: dict[str, float] = {}
    for line in result.stdout.splitlines():
        times.update(json.loads(line))
    # from the program's last statement to the end of logging.shutdown(): the deadline plus
    # the quarter second the threads get, stretched by a loaded machine; not two deadlines
    assert times["shut_down"] - times["exiting"] < 2 * 2.0, times
    reports = [line for line in result.stderr.splitlines() if "Unable to write" in line]
    assert len(reports) == 1, result.stderr
    assert "request_timeout" in reports[0] or "flush_timeout" in reports[0]


@pytest.mark.parametrize(
    "fault",
    [
        {"action": "refuse"},
        {"action": "drop"},
        {"status": 500},
        {"status": 429, "retry_after": 1e10},
    ],
    ids=["refused", "dropped", "failing", "throttled"],
)
def test_flush_then_close_keep_one_deadline_whatever_the_server_does(server, fault) -> None:
    """Not only a hanging server: refused connections, dropped answers, 500s and a 429 with
    a huge Retry-After also leave flush() then close() (logging.shutdown()'s pair) within
    flush_timeout plus half a second, while a thread still logs, every occurrence counted."""
    server.inject(times=None, **fault)
    handler = KubernetesEventHandler(component="deadline", sink=server.url, flush_timeout=1.0)
    log = app_logger(handler)
    stop = threading.Event()

    def keep_logging() -> None:
        number = 0
        while not stop.is_set():
            log.warning("still", extra={"involved": pod(f"daemon-{number % 20}")})
            number += 1
            stop.wait(0.002)

    thread = threading.Thread(target=keep_logging, daemon=True)
    thread.start()
    try:
        for number in range(100):
            log.warning("batch", extra={"involved": pod(f"batch-{number}")})
        started = time.monotonic()
        handler.flush()
        handler.close()
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
        server.clear_faults()
        server.accept_connections()
    assert took <= 1.0 + 0.5, took
    assert unaccounted(handler.stats()) == 0, handler.stats()


SEVERAL_HANDLERS_AT_EXIT = """
import atexit, json, sys

# registered before logging is imported, so it runs after logging.shutdown()
atexit.register(lambda: print(json.dumps([ends, [h.stats() for h in handlers]]), flush=True))

import logging
from k8s_logging_events import _flush
from k8s_logging_events.handler import KubernetesEventHandler

ends, wait_reached = [], _flush.wait_reached

def recorded(marker, deadline, alive, pump):  # a flush's wait (a close's has its own deadline)
    if deadline is not pump.__self__._close_deadline:
        ends.append(deadline.end)
    return wait_reached(marker, deadline, alive, pump)

_flush.wait_reached = recorded
handlers = []
# logging.shutdown() flushes the last made first: the two whose server hangs, then the slow one
for namespace, qps, objects in (("default", 1, 20), ("stuck", 5, 3), ("stuck", 5, 3)):
    handler = KubernetesEventHandler(
        component="exit", sink=sys.argv[1], flush_timeout=2.0, qps=qps, burst=1
    )
    handlers.append(handler)
    log = logging.getLogger("app%d" % len(handlers))
    log.addHandler(handler)
    for number in range(objects):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "exit-%d" % number, "namespace": namespace}}
        log.warning("bye", extra={"involved": pod})
"""


def test_several_handlers_drain_together_at_exit_within_one_flush_timeout(server) -> None:
    """logging.shutdown() flushes and closes one handler after another. Each waited its own
    flush_timeout (2 s) for a hanging server, the exit three times as long, and a handler
    wrote at its qps until its turn. Now all drain at drain_qps from the exit's start and
    every flush ends at the same moment: the slow one's 20 events are written meanwhile, the
    others' counted failed, said once each."""
    server.inject("POST", path="/namespaces/stuck/events", times=None, action="hang")
    result = run_child(SEVERAL_HANDLERS_AT_EXIT, server.url)
    assert result.returncode == 0, result.stderr
    ends, stats = json.loads(result.stdout)
    assert len(ends) >= 2, ends
    assert len(set(ends)) == 1, ends  # one deadline, not one after another's
    assert [(s["created"], s["failed"], s["pending"]) for s in stats] == [
        (20, 0, 0),
        (0, 3, 0),
        (0, 3, 0),
    ]
    reports = [line for line in result.stderr.splitlines() if "Unable to write" in line]
    assert len(reports) == 2, result.stderr
    assert all("before the deadline of shutdown" in line for line in reports), reports


CLOSED_BY_A_LATER_ATEXIT_FUNCTION = """
import atexit, json, sys, time

atexit.register(lambda: print(json.dumps(ends), flush=True))  # runs last: after logging's
import logging
from k8s_logging_events import _flush
from k8s_logging_events.handler import KubernetesEventHandler

ends, wait_reached = [], _flush.wait_reached

def recorded(marker, deadline, alive, pump):  # every wait: the flushes' and the closes'
    ends.append(max(deadline.end, time.monotonic()))  # one already past ends at once
    return wait_reached(marker, deadline, alive, pump)

_flush.wait_reached = recorded
handlers = [
    KubernetesEventHandler(component="exit", sink=sys.argv[1], flush_timeout=2.0)
    for _ in range(2)
]
# as loguru's logger.remove at exit: registered after the library's import, it runs first,
# and closes each handler that is one of loguru's sinks (argv[2] of them), one after another
atexit.register(lambda: [handler.close() for handler in handlers[: int(sys.argv[2])]])
for number, handler in enumerate(handlers):
    log = logging.getLogger("app%d" % number)
    log.addHandler(handler)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
    log.warning("bye", extra={"involved": pod})
"""


@pytest.mark.parametrize("closed", [1, 2], ids=["one-by-loguru", "both-by-loguru"])
def test_a_close_at_exit_before_the_librarys_atexit_function_begins_the_one_deadline(
    server, closed
) -> None:
    """loguru closes its sinks, this handler among them, in an atexit function registered at
    its import, after the library's (``import k8s_logging_events`` sorts before ``import
    loguru``), so it ran before the exit's drain began: that close waited its flush_timeout,
    then the other handlers theirs (two handlers, a hanging server: 4.5 s, not 2.25 s). The
    first wait at exit on the main thread begins the exit's one deadline for all, the close
    of a second handler by the same function included (it counted its own from its start)."""
    server.inject("POST", times=None, action="hang")
    result = run_child(CLOSED_BY_A_LATER_ATEXIT_FUNCTION, server.url, str(closed))
    assert result.returncode == 0, result.stderr
    ends = json.loads(result.stdout)
    assert len(ends) >= 2, ends
    assert max(ends) - min(ends) < 1.0, ends  # one deadline, not one after the other's


LOGGED_AFTER_THE_DRAIN_BEGAN = """
import atexit, json, sys

atexit.register(lambda: print(json.dumps([cleaned, handler.stats()]), flush=True))
import logging  # its shutdown runs before the print above, after the cleanup below
cleaned = []

def cleanup():  # the application's, registered before the library's import: it runs later
    logging.getLogger("app").warning("cleaned up", extra={"involved": pod})
    cleaned.append(True)

atexit.register(cleanup)
from k8s_logging_events import _runtime
from k8s_logging_events.handler import KubernetesEventHandler

drain = _runtime.Runtime.drain_at_exit
# the exit's own atexit functions (a pool's join, say) took 10 s before the cleanup ran
_runtime.Runtime.drain_at_exit = lambda self, began: drain(self, began - 10)
handler = KubernetesEventHandler(component="exit", sink=sys.argv[1], flush_timeout=2.0)
logging.getLogger("app").addHandler(handler)
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}
logging.getLogger("app").warning("started", extra={"involved": pod})
handler.flush()  # written: the drain at exit, those 10 s, would have written it meanwhile
"""


def test_an_event_logged_at_exit_after_the_drain_began_gets_its_flush_timeout(server) -> None:
    """Every handler drains from the exit's start; an atexit function that runs after that
    (one registered before the library's import) and logs, more than ``flush_timeout`` later,
    found its flush's deadline already past: its event, on a server that answers at once, was
    lost ('1 not yet handed to a writer (see flush_timeout)'). What was recorded since the
    exit began gets the whole ``flush_timeout`` from the flush, as before any exit."""
    result = run_child(LOGGED_AFTER_THE_DRAIN_BEGAN, server.url)
    assert result.returncode == 0, result.stderr
    cleaned, stats = json.loads(result.stdout)
    assert cleaned == [True]
    assert (stats["created"], stats["failed"], stats["dropped"]) == (2, 0, 0)
    assert sorted(e["message"] for e in server.events("default")) == ["cleaned up", "started"]
    assert "Unable to write" not in result.stderr


def test_occurrences_whose_sink_is_still_being_set_up_at_exit_are_reported_once(
    server, caplog
) -> None:
    """``api: auto`` asks the server which Events API it serves before the first write;
    when that question hangs past the deadline, one report says the occurrences were not
    written and why. They were told twice, by that report and by the exit's summary."""
    server.inject(action="hang", times=None)
    handler = KubernetesEventHandler(
        component="exit", sink=server.url, api="auto", flush_timeout=0.3, request_timeout=1
    )
    log = logging.getLogger("app.setup")
    log.addHandler(handler)
    for number in range(10):
        log.warning("bye", extra={"involved": pod(f"setup-{number}")})
    # until the dispatcher has set all ten aside for the sink: what it has not taken off the
    # queue by the deadline is dropped, not waiting for the set-up
    assert handler.broadcaster is not None
    runtime = handler.broadcaster._runtime
    deadline = time.monotonic() + 10
    while runtime._handoff.taken() < 10 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    with caplog.at_level(logging.WARNING, logger=_diagnostics.LOGGER_NAME):
        handler.close()
    said = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    said += [r.getMessage() for r in caplog.records if "Unable to write" in r.getMessage()]
    assert len(said) == 1, said
    assert "10 occurrences" in said[0], said
    assert handler.stats()["failed"] == 10


EXIT_ON_ANY_PYTHON = """
import logging, sys
from k8s_logging_events.handler import KubernetesEventHandler

log = logging.getLogger("app")
log.addHandler(KubernetesEventHandler(component="exit", sink=sys.argv[1], writers=2))
for number in range(40):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "exit-%d" % (number % 8), "namespace": "default"}}
    log.warning("bye", extra={"involved": pod})
"""


def test_exit_writes_everything_on_this_python_even_where_no_thread_can_start(server) -> None:
    """Python 3.12 refuses new threads during interpreter exit; writers that must start at
    exit are replaced by the threads that exist (the suite runs on 3.11, 3.12 and 3.13)."""
    result = run_child(EXIT_ON_ANY_PYTHON, server.url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert stored_counts(server, None) == Counter({f"exit-{n}": 5 for n in range(8)})


WRITERS_REFUSED_AT_EXIT = """
import atexit, json, logging, socket, sys, threading, time
from k8s_logging_events import _pool
from k8s_logging_events.handler import KubernetesEventHandler

_pool.WRITER_LINGER_SECONDS = 0.0  # the writers end once idle; the dispatcher waits on
handler = KubernetesEventHandler(component="exit", sink=sys.argv[1])
log = logging.getLogger("app")
log.addHandler(handler)

def pod(number):
    return {"kind": "Pod", "metadata": {"name": "exit-%d" % number, "namespace": "default"}}

log.warning("hello", extra={"involved": pod(0)})
assert handler.drain(10)
pool = handler.broadcaster._runtime._pool
deadline = time.monotonic() + 10
while pool.threads() and time.monotonic() < deadline:
    threading.Event().wait(0.01)

senders = set()
sendall = socket.socket.sendall
def recorded(sock, *args):
    senders.add(threading.current_thread().name)
    return sendall(sock, *args)
socket.socket.sendall = recorded

def refuse(thread):  # Python 3.12 and later, once the interpreter exits
    raise RuntimeError("can't create new thread at interpreter shutdown")

def at_exit():
    threading.Thread.start = refuse
    for number in range(1, 9):
        log.warning("bye", extra={"involved": pod(number)})
    handler.flush()  # as logging.shutdown() does next
    print(json.dumps(sorted(senders)), flush=True)

atexit.register(at_exit)
"""


def test_writes_no_writer_can_start_at_exit_are_made_by_the_flush_and_the_dispatcher(
    server,
) -> None:
    """Python 3.12 starts no thread at exit: the dispatcher hands on what was logged there,
    and the two threads that exist make the writes side by side, the flush's and the
    dispatcher (rule 10's one exception). The flush alone made them, one at a time (8
    requests of 0.25 s: 2 s of the exit's ``flush_timeout``)."""
    server.inject("POST", action="delay", delay=0.25, times=None)
    result = run_child(WRITERS_REFUSED_AT_EXIT, server.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["MainThread", "k8s-events-dispatcher-0"]
    assert stored_counts(server, None) == Counter({f"exit-{n}": 1 for n in range(9)})


AFTER_THE_MAIN_THREAD_RETURNS = """
import json, logging, sys, threading, time
from k8s_logging_events import _pool
from k8s_logging_events.handler import KubernetesEventHandler

_pool.WRITER_LINGER_SECONDS = 0.0  # each writer ends once idle: every write wants a new one
handler = KubernetesEventHandler(component="late", sink=sys.argv[1])
log = logging.getLogger("app")
log.addHandler(handler)

def pod(number):
    return {"kind": "Pod", "metadata": {"name": "late-%d" % number, "namespace": "default"}}

log.warning("started", extra={"involved": pod(0)})  # the dispatcher starts
assert handler.drain(10)

def work():  # an application's thread, logging on after the main thread has returned
    deadline = time.monotonic() + 10
    while threading.main_thread().is_alive() and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    try:
        threading.Thread(target=lambda: None).start()
        refused = False
    except RuntimeError:  # Python 3.12.0 to 3.12.2, from now on
        refused = True
    written = []
    for number in range(1, 6):
        log.warning("working", extra={"involved": pod(number)})
        deadline = time.monotonic() + 5  # unflushed, no longer than this
        while handler.stats()["created"] <= number and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        written.append(handler.stats()["created"])
    print(json.dumps({"refused": refused, "written": written}), flush=True)

threading.Thread(target=work).start()
"""


@pytest.mark.skipif(
    not (3, 12, 0) <= sys.version_info[:3] < (3, 12, 3),
    reason="only Python 3.12.0 to 3.12.2 refuse threads while the program still runs",
)
def test_events_logged_after_the_main_thread_returns_are_written_as_they_come(server) -> None:
    """Python 3.12.0 to 3.12.2 refuse every new thread from the moment the main thread
    returns, while the application's other threads still run and log: each event reaches
    the server as it is logged, with no flush. They all waited for
    the exit (whose flush has ``flush_timeout`` for everything), however long the program
    ran on. (The same state, simulated on every Python: test_pool.)"""
    result = run_child(AFTER_THE_MAIN_THREAD_RETURNS, server.url)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    if not seen["refused"]:
        pytest.skip("this interpreter started a thread after the main thread returned")
    assert seen["written"] == [2, 3, 4, 5, 6], result.stderr
    assert stored_counts(server) == Counter({f"late-{n}": 1 for n in range(6)})


def test_a_flush_and_a_close_wake_a_dispatcher_waiting_in_a_tests_sleeper(server) -> None:
    """``sleep`` given a sleeper that waits until its ``cancel`` is set: the dispatcher,
    waiting there for a retry's back-off, is woken by a flush, which gets what was logged
    since written, and by a close. The cancel was never set: the occurrence logged meanwhile
    waited out the back-off, the flush its whole timeout, the dispatcher past the close."""
    asleep = threading.Event()

    def sleeper(seconds: float, cancel: threading.Event) -> bool:
        asleep.set()
        return cancel.wait(30)  # the clock is a FakeClock: only a wake ends the back-off

    server.inject("POST", path="/events", status=500)
    clock = FakeClock()
    handler = KubernetesEventHandler(
        sink=server.url, component="s", clock=clock, sleep=sleeper, flush_timeout=1
    )
    log = app_logger(handler)
    try:
        log.warning("first", extra={"involved": pod("web-0")})
        assert asleep.wait(10), "the retry's back-off never began"
        log.warning("second", extra={"involved": pod("web-1")})
        assert not handler.drain(1)  # the first waits for its retry: the clock stands still
        assert stored_counts(server) == {"web-1": 1}
    finally:
        handler.close()
    assert not [t for t in handler.threads() if "dispatcher" in t.name]


def test_a_signal_handlers_flush_on_a_thread_inside_stats_returns_at_once(
    server, monkeypatch
) -> None:
    """A signal handler (SIGTERM's, say) flushes on the main thread while that thread is
    inside stats(), which holds the runtime's lock: the flush returns False at once, and
    once the handler has returned a flush writes everything. It waited its whole timeout
    instead, the dispatcher waiting for the lock the flushing thread held."""
    handler = KubernetesEventHandler(sink=server.url, component="signal")
    log = app_logger(handler)
    log.warning("first", extra={"involved": pod("web-0")})
    events = handler.broadcaster
    assert events is not None
    flushed: list[tuple[bool, float]] = []

    def on_signal(signum: int, frame: object) -> None:
        started = time.monotonic()
        flushed.append((events.flush(3), time.monotonic() - started))

    snapshot = _diagnostics.Counters.snapshot

    def interrupted(counters: _diagnostics.Counters) -> Any:
        if not flushed:
            signal.raise_signal(signal.SIGUSR1)  # handled here, inside the runtime's lock
        return snapshot(counters)

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        monkeypatch.setattr(_diagnostics.Counters, "snapshot", interrupted)
        events.stats()
        assert events.flush(10)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        handler.close()
    assert [ok for ok, _ in flushed] == [False]
    assert flushed[0][1] < 1, flushed
    assert stored_counts(server) == {"web-0": 1}


HANGING_SERVER_AT_EXIT = """
import atexit, json, logging, sys, threading, time
from k8s_logging_events import _pool
from k8s_logging_events.handler import KubernetesEventHandler

_pool.WRITER_LINGER_SECONDS = 0.0  # the writers end once idle; the dispatcher waits on
handler = KubernetesEventHandler(component="exit", sink=sys.argv[1], flush_timeout=1)
log = logging.getLogger("app")
log.addHandler(handler)

def pod(namespace, name="web"):
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace}}

log.warning("hello", extra={"involved": pod("kube-system")})  # the server answers there
assert handler.drain(10)
pool = handler.broadcaster._runtime._pool
deadline = time.monotonic() + 10
while pool.threads() and time.monotonic() < deadline:
    threading.Event().wait(0.01)

def refuse(thread):  # Python 3.12 and later, once the interpreter exits
    raise RuntimeError("can't create new thread at interpreter shutdown")

def at_exit():
    threading.Thread.start = refuse
    for name in ("web", "db"):  # one request on the dispatcher, one on the flush's thread
        log.warning("bye", extra={"involved": pod("default", name)})  # the server hangs there
    started = time.monotonic()
    handler.flush()  # as logging.shutdown() does next
    handler.close()
    print(json.dumps([time.monotonic() - started, handler.broadcaster.stats()["failed"]]))

atexit.register(at_exit)
"""


def test_a_flush_writing_at_exit_on_its_own_thread_keeps_its_deadline(server) -> None:
    """No writer can start at exit (3.12): the flush makes a request on its own thread (the
    dispatcher another), to a server that never answers. Flush and close end within
    ``flush_timeout`` (1 s) and their grace, both occurrences counted as failed; the flush's
    request's own read timeout (10 s) held the exit instead."""
    server.inject("POST", path="/namespaces/default/events", times=None, action="hang")
    result = run_child(HANGING_SERVER_AT_EXIT, server.url)
    assert result.returncode == 0, result.stderr
    elapsed, failed = json.loads(result.stdout)
    assert elapsed < 3, result.stderr
    assert failed == 2


STRUCTURED_AT_EXIT = """
import atexit, logging, sys, threading
from k8s_logging_events.handler import KubernetesEventHandler

log = logging.getLogger("app")
log.addHandler(KubernetesEventHandler(component="exit", sink=sys.argv[1], structured_logging=True))

def refuse(thread):  # Python 3.12 and later, once the interpreter exits
    raise RuntimeError("can't create new thread at interpreter shutdown")

def first_at_exit():
    threading.Thread.start = refuse
    log.warning("bye", extra={"involved": {"kind": "Pod", "name": "last", "namespace": "default"}})

atexit.register(first_at_exit)
"""


def test_structured_logging_writes_its_line_at_exit_where_no_thread_can_start(server) -> None:
    """A program whose first event comes at exit (an atexit handler), where Python 3.12 and
    later start no thread: the flush at shutdown writes the event on its own thread, and the
    structured line with it. Once structured logging had a thread of its own, its line
    waited for a thread that never came: written nowhere, counted nowhere."""
    result = run_child(STRUCTURED_AT_EXIT, server.url)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["object"], line["message"]) for line in lines] == [("default/last", "bye")]
    assert stored_counts(server, None) == Counter({"last": 1})


STRUCTURED_INTO_ITS_OWN_HANDLER = """
import atexit, logging, sys, threading
from k8s_logging_events.handler import KubernetesEventHandler

handler = KubernetesEventHandler(
    component="exit", sink=sys.argv[1], structured_logging="app.events", default_involved="pod"
)
logging.getLogger().addHandler(handler)  # the structured lines propagate back to it
logging.getLogger().setLevel(logging.INFO)

def refuse(thread):  # Python 3.12 and later, once the interpreter exits
    raise RuntimeError("can't create new thread at interpreter shutdown")

def first_at_exit():
    threading.Thread.start = refuse
    logging.getLogger("app").warning("bye")

atexit.register(first_at_exit)
"""


def test_structured_lines_written_at_exit_make_no_events_of_their_own(server) -> None:
    """With ``default_involved: pod``, every record becomes an event, but the structured
    lines the library writes on its own threads never do. At exit, where no thread can
    start, the flush writes them on the application's thread: they became events about the
    pod too, each line one more event, until the deadline."""
    result = run_python(
        textwrap.dedent(STRUCTURED_INTO_ITS_OWN_HANDLER),
        server.url,
        cwd=REPO,
        POD_NAME="web-0",
        POD_NAMESPACE="default",
        POD_UID="u-1",
    )
    assert result.returncode == 0, result.stderr
    assert [e["message"] for e in server.events("default")] == ["bye"], result.stderr


def test_a_dispatcher_that_cannot_start_is_said_and_the_next_occurrence_starts_it(
    monkeypatch, caplog
) -> None:
    """No thread to be had while the program runs (a container's pids limit): the start of
    the dispatcher raised RuntimeError, which was taken for the interpreter's exit. Nothing
    was written until a flush, nothing said so, and no later occurrence tried again. The
    failure is reported, and the next occurrence starts the dispatcher."""
    limit = thread_limit_once(monkeypatch, "dispatcher")
    fake = FakeEventSink()
    handler = KubernetesEventHandler(component="pids", sink=fake)
    log = app_logger(handler)
    try:
        with caplog.at_level(logging.WARNING, logger=_diagnostics.LOGGER_NAME):
            log.warning("first", extra={"involved": pod("web-0")})
            assert limit.refused
            assert [t for t in handler.threads() if "dispatcher" in t.name] == []
            log.warning("second", extra={"involved": pod("web-1")})
            started = [t for t in handler.threads() if "dispatcher" in t.name]
        reports = [r.getMessage() for r in caplog.records if "dispatcher" in r.getMessage()]
    finally:
        handler.close()
    assert len(started) == 1
    assert len(reports) == 1, reports
    assert "can't start new thread" in reports[0]
    assert sorted(e.involved_object.name for e in fake.events) == ["web-0", "web-1"]


def test_a_watcher_whose_thread_cannot_start_for_a_moment_is_said_and_started_later(
    monkeypatch, caplog
) -> None:
    """start_event_watcher() while no thread is to be had for a moment (a pids limit): the
    watcher was stopped, unsaid, and its handler never called. It stays, the failure is
    reported, and a later event gives it its thread."""
    b = recorder.EventBroadcaster()
    handled, seen = threading.Event(), []

    def handle(event: models.Event) -> None:
        seen.append((event.message, threading.current_thread().name))
        handled.set()

    try:
        b.start_recording_to_sink(FakeEventSink())
        rec = b.new_recorder("limited")
        rec.event(pod("web-0"), models.WARNING, "BackOff", "first")
        assert b.flush(10)
        limit = thread_limit_once(monkeypatch, "watcher")
        with caplog.at_level(logging.WARNING, logger=_diagnostics.LOGGER_NAME):
            watcher = b.start_event_watcher(handle)
            assert limit.refused
            assert not watcher.stopped
            rec.event(pod("web-0"), models.WARNING, "BackOff", "second")
            assert handled.wait(10)  # only a hang waits this long
        reports = [r.getMessage() for r in caplog.records if "watcher" in r.getMessage()]
    finally:
        b.shutdown(2)
    assert [message for message, _ in seen] == ["second"]
    assert "watcher" in seen[0][1]  # on a thread of its own, started after all
    assert len(reports) == 1, reports
    assert "can't start new thread" in reports[0]


AFTER_MAIN_RETURNED = """
import json, logging, sys, threading
from k8s_logging_events.handler import KubernetesEventHandler

handler = KubernetesEventHandler(component="late", sink=sys.argv[1])
log = logging.getLogger("app")
log.addHandler(handler)
start = threading.Thread.start

def no_thread_for_the_first_dispatcher(thread):  # a pids limit, reached for a moment
    threading.Thread.start = start
    raise RuntimeError("can't start new thread")

def worker():  # a thread of the application's that goes on after the main thread returned
    threading.main_thread().join(60)
    threading.Thread.start = no_thread_for_the_first_dispatcher
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late", "namespace": "default"}}
    log.warning("first", extra={"involved": pod, "reason": "First"})
    log.warning("second", extra={"involved": pod, "reason": "Second"})
    threads = [t.name.rsplit("-", 1)[0] for t in handler.threads()]
    handler.flush()
    print(json.dumps({"threads": threads, "stats": handler.stats()}))

threading.Thread(target=worker, daemon=False).start()
"""


def test_a_thread_limit_after_the_main_thread_returned_is_no_exit(server) -> None:
    """A dispatcher that cannot start (RuntimeError "can't start new thread": a pids limit)
    while a thread of the application still runs after the main thread has returned. That
    was taken for the interpreter's exit (the main thread is no longer alive): nothing said,
    no later occurrence tried again, every event waited for the exit. Only the interpreter's
    own refusal at exit means exit; this one is said, and the next occurrence starts it."""
    result = run_child(AFTER_MAIN_RETURNED, server.url)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    if (3, 12) <= sys.version_info[:3] < (3, 12, 3):
        # there, once the main thread returned, the interpreter refuses every thread itself
        # (CPython's gh-113964): the second occurrence meets that, and the flush writes both
        assert outcome["threads"] == [], result.stderr
    else:
        assert "k8s-events-dispatcher" in outcome["threads"], result.stderr
    said = [line for line in result.stderr.splitlines() if "dispatcher" in line]
    assert len(said) == 1, result.stderr
    assert "can't start new thread" in said[0]
    assert outcome["stats"]["created"] + outcome["stats"]["patched"] == 2
    assert sorted(e["reason"] for e in server.events("default")) == ["First", "Second"]


# --- bounds and hangs -----------------------------------------------------------------------


def check_bounded(server: LocalApiServer, objects: int, queue_length: int) -> None:
    """Log about ``objects`` distinct objects at the default rate (5/s): almost nothing can
    be written, so pending writes stop at queue_length, the rest is dropped and counted,
    memory stays flat, and close() keeps its deadline."""
    handler = KubernetesEventHandler(
        component="bound", sink=server.url, flush_timeout=0.5, queue_length=queue_length
    )
    log = app_logger(handler)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    manifest = pod("x")
    for number in range(objects):
        manifest["metadata"] = {"name": f"bound-{number}", "namespace": "default"}
        log.warning("distinct", extra={"involved": manifest})
    handler.flush()
    stats = handler.stats()
    assert 0 < stats["pending_events"] <= queue_length
    assert stats["pending_events"] <= stats["pending"]
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, grown_mib
    closing = time.monotonic()
    handler.close()
    assert time.monotonic() - closing < 10  # the pending writes, at 5/s, would take far longer
    stats = handler.stats()
    assert stats["accepted"] == objects
    assert stats["dropped"] > objects // 2
    assert stats["pending"] == stats["pending_events"] == 0
    assert unaccounted(stats) == 0, stats


@pytest.mark.timeout(120)
def test_many_distinct_objects_keep_pending_writes_and_memory_bounded(server) -> None:
    """50,000 distinct objects with a queue of 5,000: the proportions of the long run."""
    check_bounded(server, 50_000, 5_000)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_hundred_thousand_distinct_objects_with_default_options(server) -> None:
    """The full size: 200,000 distinct objects, default queue_length (10,000)."""
    check_bounded(server, 200_000, 10_000)


def test_requests_that_hang_in_one_namespace_do_not_hold_up_other_objects(server) -> None:
    """Four distinct events about one object in a namespace whose requests hang (a stuck
    admission webhook) take at most one writer: twenty healthy objects go ahead."""
    server.create_namespace("stuck")
    server.create_namespace("healthy")
    server.inject(path="/namespaces/stuck/", action="hang", times=None)
    handler = KubernetesEventHandler(
        component="hol", sink=server.url, qps=0, request_timeout=(5, 30), flush_timeout=0.5
    )
    log = app_logger(handler)
    for reason in ("A", "B", "C", "D"):
        log.warning("webhook %s", reason, extra={"involved": pod("web", "stuck"), "reason": reason})
    for number in range(20):
        log.warning("fine", extra={"involved": pod(f"ok-{number}", "healthy")})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(server.events("healthy")) < 20:
        # polling the server, not sleeping: each call is a real request
        threading.Event().wait(0.02)
    try:
        assert len(server.events("healthy")) == 20
        busy = [t for t in handler.threads() if "writer" in t.name]
        # the four writers, and the stuck namespace's one request once it is stalled (in flight
        # for STALL_SECONDS it no longer counts against them: a loaded machine may still be
        # writing the healthy ones then); its four requests at once would make eight
        assert len(busy) <= 4 + 1
    finally:
        server.clear_faults()
        handler.close()
    assert unaccounted(handler.stats()) == 0


def test_a_huge_retry_after_does_not_kill_the_writers(server) -> None:
    """A 429 with Retry-After: 1e10 once overflowed the writer's timers and killed every
    writer thread in turn; the wait is capped, and other events are written meanwhile."""
    server.create_namespace("throttled")
    server.inject(path="/namespaces/throttled/", status=429, retry_after=1e10, times=1)
    handler = KubernetesEventHandler(component="ra", sink=server.url, qps=0, flush_timeout=0.5)
    log = app_logger(handler)
    log.warning("first", extra={"involved": pod("throttled", "throttled")})
    for number in range(5):
        log.warning("later", extra={"involved": pod(f"fine-{number}")})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(stored_counts(server)) < 5:
        threading.Event().wait(0.02)
    handler.close()
    counts = stored_counts(server, None)
    assert all(counts[f"fine-{n}"] == 1 for n in range(5))
    stats = handler.stats()
    assert stats["failed"] == 1, "the throttled one waits past close and is counted"
    assert unaccounted(stats) == 0


def test_an_extreme_spam_filter_rate_neither_overflows_nor_spins() -> None:
    """A correlator qps so small that a token never comes: the held count waits (capped),
    and flush still writes it."""
    clock = FakeClock()
    fake = FakeEventSink()
    b = recorder.EventBroadcaster(
        clock=clock,
        sleep=clock.sleep,
        correlator_options=correlator.CorrelatorOptions(burst_size=1, qps=1e-300),
    )
    try:
        b.start_recording_to_sink(fake)
        rec = b.new_recorder("spam")
        ref = models.ObjectReference(kind="Pod", namespace="ns", name="p", api_version="v1")
        for _ in range(5):
            rec.event(ref, models.WARNING, "Spam", "again")
        assert b.flush(5)
        (event,) = fake.events
        assert event.count == 5
        assert all(math.isfinite(s) for s in clock.sleeps)
    finally:
        b.shutdown(2)


def test_stopped_watchers_and_sinks_are_let_go() -> None:
    """A broadcaster that lives for weeks, its sinks and watchers started and stopped over and
    over (a leadership won and lost): each stopped one is let go once its work is done, as
    client-go's broadcaster forgets a stopped watcher (an earlier version kept every one, with
    its caches: 13 KiB a sink, 5 KiB a watcher, for good)."""
    clock = FakeClock()
    b = recorder.EventBroadcaster(clock=clock, sleep=clock.sleep)
    events = b.new_recorder("shop")
    kept: list[weakref.ref[object]] = []
    try:
        for _ in range(20):
            event_sink = FakeEventSink()

            def handle(event: models.Event) -> None:
                pass

            started = (b.start_recording_to_sink(event_sink), b.start_event_watcher(handle))
            events.event(pod("web-0"), "Normal", "Synced", "synced")
            assert b.flush(10)
            for watcher in started:
                watcher.stop()
            kept += [weakref.ref(event_sink), weakref.ref(handle)]
            del event_sink, handle
        events.event(pod("web-0"), "Normal", "Synced", "synced")
        assert b.flush(10)
        gc.collect()
        # the last ones may wait for their watcher's thread to end, and a straggler or two
        assert sum(ref() is not None for ref in kept) <= 4
    finally:
        b.shutdown(5)


# --- accounting -----------------------------------------------------------------------------


REF = models.ObjectReference(kind="Pod", namespace="ns", name="p", api_version="v1")


@contextlib.contextmanager
def _recording(
    name: str, **options: Any
) -> Iterator[tuple[recorder.EventBroadcaster, recorder.EventRecorder, FakeEventSink]]:
    """A broadcaster (of ``options``) recording to a fake sink, its recorder, and the sink;
    shut down after."""
    fake = FakeEventSink()
    b = recorder.EventBroadcaster(**options)
    try:
        b.start_recording_to_sink(fake)
        yield b, b.new_recorder(name), fake
    finally:
        b.shutdown(2)


def test_an_event_that_cannot_be_built_is_counted_as_failed(monkeypatch) -> None:
    """An exception while the dispatcher builds one event costs that occurrence only."""
    original = models.Occurrence.materialize

    def materialize(self: models.Occurrence, namer: correlator.EventNamer) -> models.Event:
        if self.reason == "Broken":
            raise RuntimeError("boom")
        return original(self, namer)

    monkeypatch.setattr(models.Occurrence, "materialize", materialize)
    with _recording("build") as (b, rec, _):
        rec.event(REF, models.NORMAL, "Fine", "one")
        rec.event(REF, models.NORMAL, "Broken", "two")
        rec.event(REF, models.NORMAL, "Fine", "three")
        assert b.flush(5)
        stats = dict(b.stats())
        assert stats["failed"] == 1
        assert stats["created"] == 2
        assert unaccounted(stats) == 0


@contextlib.contextmanager
def _one_batch(b: recorder.EventBroadcaster) -> Iterator[None]:
    """What is recorded inside the block reaches the dispatcher as one batch: it starts
    after the block."""
    runtime = b._runtime
    runtime._started = True
    try:
        yield
    finally:
        runtime._started = False
        runtime._start()


def test_the_queue_takes_queue_length_occurrences_and_drops_the_rest() -> None:
    """With queue_length 3 and the dispatcher not yet taking any, five occurrences: three
    are queued (pending meanwhile) and written (one event, count 3), two are dropped and
    counted."""
    fake = FakeEventSink()
    b = recorder.EventBroadcaster(queue_length=3)
    try:
        b.start_recording_to_sink(fake)
        rec = b.new_recorder("bound")
        with _one_batch(b):
            for _ in range(5):
                rec.event(REF, models.NORMAL, "Fine", "message")
            assert b.stats()["pending"] == 3  # queued, not yet handed on: pending all the same
        assert b.flush(5)
        stats = dict(b.stats())
        assert (stats["accepted"], stats["dropped"]) == (5, 2), stats
        assert [event.count for event in fake.events] == [3]
        assert unaccounted(stats) == 0, stats
    finally:
        b.shutdown(2)


def test_occurrences_still_queued_at_shutdown_are_counted_and_reported_as_unwritten(
    monkeypatch,
) -> None:
    """The dispatcher stuck with its first batch at shutdown: the four occurrences queued
    behind it are dropped, counted, and the exit report says four were not written. The
    one it held, handed on once the threads were stopped, is dropped too, not failed: it
    was never tried (docs/metrics.md)."""
    entered, released = threading.Event(), threading.Event()
    hand_on = _handoff.HandOff._hand_on

    def held(self: _handoff.HandOff, items: list[Any], consumers: list[Any]) -> None:
        entered.set()
        released.wait(10)
        hand_on(self, items, consumers)

    monkeypatch.setattr(_handoff.HandOff, "_hand_on", held)
    b = recorder.EventBroadcaster()
    try:
        b.start_recording_to_sink(FakeEventSink())
        rec = b.new_recorder("stuck")
        rec.event(REF, models.NORMAL, "First", "message")
        assert entered.wait(10)
        for _ in range(4):
            rec.event(REF, models.NORMAL, "Queued", "message")
        with on_library_logger(ListHandler()) as reports:
            b.shutdown(0.1)
    finally:
        released.set()
    (summary,) = [text for text in reports.messages() if "deadline of shutdown" in text]
    assert summary.startswith("Unable to write 4 event occurrence(s)"), summary
    assert b._runtime._dispatcher is not None
    b._runtime._dispatcher.join(10)
    stats = dict(b.stats())
    assert (stats["dropped"], stats["failed"], unaccounted(stats)) == (5, 0, 0), stats


def test_a_write_in_flight_at_the_deadline_gets_the_grace_and_no_writer_outlives_shutdown(
    monkeypatch,
) -> None:
    """shutdown(0) while a write is in a request that answers in time (the API server is up):
    the writer gets the quarter second every thread gets, so the write is counted as
    ``created``, not abandoned, and no writer outlives the call. A writer in a request had no
    grace at all: shutdown returned with it running, its write counted ``failed`` though the
    server stored it a moment later."""
    entered, released = threading.Event(), threading.Event()
    join = _flush.join

    def answered_as_shutdown_waits(thread: threading.Thread | None, deadline: Any) -> None:
        if thread is not None and thread.name.startswith("k8s-events-writer"):
            released.set()
        join(thread, deadline)

    class AnswersAsShutdownWaits(FakeEventSink):
        def create(self, event: models.Event) -> models.Event:
            entered.set()
            released.wait(10)
            return super().create(event)

    monkeypatch.setattr(_flush, "join", answered_as_shutdown_waits)
    b = recorder.EventBroadcaster()
    b.start_recording_to_sink(AnswersAsShutdownWaits())
    b.new_recorder("c").event(REF, models.NORMAL, "Started", "up")
    assert entered.wait(10)
    try:
        b.shutdown(0)
    finally:
        released.set()
    writers = [t.name for t in threading.enumerate() if t.name.startswith("k8s-events-writer")]
    stats = dict(b.stats())
    assert (writers, stats["created"], stats["failed"]) == ([], 1, 0), (writers, stats)


def test_a_run_correlated_as_shutdown_stops_the_writers_is_never_left_pending(
    monkeypatch,
) -> None:
    """Shutdown stops the writers while the dispatcher, past its grace, correlates the
    first run of a batch: that run's write, never sent, gets an outcome (``dropped``: never
    tried), as do the runs after it; none is left pending. It was submitted after close()
    gave up every write, and stayed pending for good: ``pending`` 1 after shutdown, and
    ``accepted`` never the sum of the outcomes (docs/metrics.md). The runs after it, never
    correlated, were counted ``failed``, which says the server was tried (an alert for
    the server's side), where ``stats()`` had them queued."""
    gates = {"Zero": threading.Event(), "First": threading.Event()}
    held = {reason: threading.Event() for reason in gates}
    correlate = _pool.Recording.correlate

    def correlated(self: _pool.Recording, run: Any) -> Any:
        reason = run[-1].reason
        if reason in gates:
            held[reason].set()
            gates[reason].wait(10)
        return correlate(self, run)

    monkeypatch.setattr(_pool.Recording, "correlate", correlated)
    b = recorder.EventBroadcaster()
    try:
        b.start_recording_to_sink(FakeEventSink())
        rec = b.new_recorder("stopped")
        rec.event(REF, models.NORMAL, "Zero", "message")
        assert held["Zero"].wait(10)
        for reason in ("First", "Second", "Third"):  # one batch, three runs
            rec.event(REF, models.NORMAL, reason, "message")
        gates["Zero"].set()
        assert held["First"].wait(10)
        b.shutdown(0.1)
    finally:
        for gate in gates.values():
            gate.set()
    assert b._runtime._dispatcher is not None
    b._runtime._dispatcher.join(10)
    stats = dict(b.stats())
    assert (stats["created"], stats["pending"], unaccounted(stats)) == (1, 0, 0), stats
    assert (stats["dropped"], stats["failed"]) == (3, 0), stats


def test_a_flush_waiting_on_another_thread_returns_when_shutdown_drops_the_queue(
    monkeypatch,
) -> None:
    """The dispatcher stuck with its first batch, a thread flushes with a long timeout, and
    the application shuts down: what was queued is dropped (an outcome each), and the
    waiting flush returns then, not at its own deadline."""
    entered, released = threading.Event(), threading.Event()
    hand_on = _handoff.HandOff._hand_on

    def held(self: _handoff.HandOff, items: list[Any], consumers: list[Any]) -> None:
        entered.set()
        released.wait(60)
        hand_on(self, items, consumers)

    waiting = threading.Event()
    wait_reached = _flush.wait_reached

    def noted(*args: Any) -> bool:
        waiting.set()  # its marker is queued
        return wait_reached(*args)

    monkeypatch.setattr(_handoff.HandOff, "_hand_on", held)
    monkeypatch.setattr(_flush, "wait_reached", noted)
    b = recorder.EventBroadcaster()
    answers: list[bool] = []
    flusher = threading.Thread(target=lambda: answers.append(b.flush(60)))
    try:
        b.start_recording_to_sink(FakeEventSink())
        rec = b.new_recorder("stuck")
        rec.event(REF, models.NORMAL, "First", "message")
        assert entered.wait(10)
        rec.event(REF, models.NORMAL, "Queued", "message")
        flusher.start()
        assert waiting.wait(10)
        b.shutdown(0.1)
        flusher.join(20)
        assert not flusher.is_alive()
    finally:
        released.set()
        flusher.join(60)
    assert answers == [True]
    assert b.stats()["dropped"] == 1


def test_a_flush_on_a_library_thread_returns_false_at_once() -> None:
    """A watcher that flushes (its handler calls flush()) would wait for itself: its flush
    says False at once, and the application's flush, which waits for that watcher, still
    finds everything written."""
    answers: list[bool] = []
    with _recording("own") as (b, rec, fake):
        b.start_event_watcher(lambda event: answers.append(b.flush(30)))
        rec.event(REF, models.NORMAL, "Fine", "message")
        assert b.flush(10)
        assert answers == [False]
        assert len(fake.events) == 1


def test_an_occurrence_whose_keys_fail_costs_only_itself(monkeypatch) -> None:
    """An exception while the dispatcher cuts a batch into runs (an occurrence's keys cannot
    be computed) costs no other occurrence of the batch, and every one is counted."""
    original = models.correlation_keys

    def correlation_keys(item: models.Occurrence) -> tuple[object, object]:
        if item.reason == "Unkeyed":
            raise TypeError("unhashable")
        return original(item)

    monkeypatch.setattr(models, "correlation_keys", correlation_keys)
    with _recording("keys") as (b, rec, fake):
        with _one_batch(b):
            for reason in ("Fine", "Unkeyed", "AlsoFine"):
                rec.event(REF, models.NORMAL, reason, "message")
        assert b.flush(5)
        stats = dict(b.stats())
        assert unaccounted(stats) == 0, stats
        assert {event.reason for event in fake.events} >= {"Fine", "AlsoFine"}
        assert stats["created"] + stats["failed"] == 3, stats


def test_occurrences_that_cannot_be_correlated_are_reported_as_many_as_failed(caplog) -> None:
    """A user's correlation hook that raises costs the occurrences it was given: the report
    (and the summary of those like it) counts them as stats() does, not one per report."""

    def key_func(event: models.Event) -> tuple[str, str]:
        if event.reason == "Broken":
            raise KeyError("the hook cannot key this event")
        return correlator.aggregate_by_reason(event)

    fake = FakeEventSink()
    b = recorder.EventBroadcaster(
        correlator_options=correlator.CorrelatorOptions(key_func=key_func)
    )
    try:
        b.start_recording_to_sink(fake)
        rec = b.new_recorder("hooks")
        ref = models.ObjectReference(kind="Pod", namespace="ns", name="p", api_version="v1")
        with caplog.at_level(logging.ERROR, logger=_diagnostics.LOGGER_NAME):
            for _ in range(6):
                rec.event(ref, models.WARNING, "Broken", "message")
            rec.event(ref, models.WARNING, "Fine", "message")
            assert b.flush(5)
        stats = dict(b.stats())
    finally:
        b.shutdown(2)
    assert stats["failed"] == 6, stats
    said = [r.getMessage() for r in caplog.records if "correlate" in r.getMessage()]
    lost = [int(n) for m in said for n in re.findall(r"(\d+) occurrence\(s\) lost", m)]
    totals = [int(n) for m in said for n in re.findall(r"\((\d+) occurrence\(s\) in all\)", m)]
    assert (totals[-1] if totals else sum(lost)) == 6, said


@pytest.mark.parametrize(
    "error", [SystemExit(1), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"]
)
def test_a_hook_or_watcher_raising_what_is_no_exception_costs_its_event_not_a_thread(
    error: BaseException,
) -> None:
    """A correlation hook or a watcher's handler raised a BaseException that is no Exception
    (a helper's sys.exit()): it killed the dispatcher, so nothing more was written until a
    flush and the occurrence it was correlating had no outcome; the watcher's thread died
    too. Each costs only its own event: counted failed, said, and the threads go on."""

    def spam_key_func(event: models.Event) -> str:
        if event.reason == "Broken":
            raise error
        return correlator.get_spam_key(event)

    died: list[threading.ExceptHookArgs] = []
    watched: list[str] = []

    def watch(event: models.Event) -> None:
        if event.reason == "Broken":
            raise error
        watched.append(event.reason)

    hook, threading.excepthook = threading.excepthook, died.append
    options = correlator.CorrelatorOptions(spam_key_func=spam_key_func)
    try:
        with _recording("hooks", correlator_options=options) as (b, rec, fake):
            b.start_event_watcher(watch)
            rec.event(REF, models.WARNING, "Broken", "message")
            rec.event(REF, models.WARNING, "Fine", "message")
            bound = time.monotonic() + 10
            while (not fake.events or not watched) and time.monotonic() < bound:
                threading.Event().wait(0.01)  # no flush: the threads write and watch
            assert [event.reason for event in fake.events] == ["Fine"]
            assert watched == ["Fine"]
            assert b.flush(5)
            stats = dict(b.stats())
    finally:
        threading.excepthook = hook
    assert died == []
    assert (stats["created"], stats["failed"], unaccounted(stats)) == (1, 1, 0), stats


# --- coalescing before correlating ------------------------------------------------------------


def test_repeats_queued_together_build_only_the_first_and_last_event_of_their_run(
    monkeypatch,
) -> None:
    """A burst of repeats is counted from the first and the last occurrence of each run:
    the ones between never become an Event, and the stored counts are exact."""
    built: list[str] = []
    original = models.Occurrence.materialize

    def materialize(self: models.Occurrence, namer: correlator.EventNamer) -> models.Event:
        built.append(self.message)
        return original(self, namer)

    monkeypatch.setattr(models.Occurrence, "materialize", materialize)
    with _recording("burst") as (b, rec, fake):
        with _one_batch(b):
            for message in ("first", "second"):
                for _ in range(300):
                    rec.event(REF, models.WARNING, "BackOff", message)
        assert b.flush(5)
        assert Counter(built) == {"first": 2, "second": 2}
        counts = {event.message: event.count for event in fake.events}
        assert counts == {"first": 300, "second": 300}
        assert unaccounted(dict(b.stats())) == 0


def test_a_flush_cuts_the_dispatchers_linger_short(monkeypatch) -> None:
    """After a batch of a burst the dispatcher lets the next one gather; a flush does not
    wait for that (a linger of an hour here: the flush would time out if it did), and
    neither does the next burst's flush."""
    monkeypatch.setattr(_runtime, "LINGER_SECONDS", 3600.0)
    fake = FakeEventSink()
    b = recorder.EventBroadcaster()
    try:
        b.start_recording_to_sink(fake)
        rec = b.new_recorder("linger")
        for burst in ("p", "q"):
            for index in range(3 * _runtime.LINGER_BATCH):
                ref = models.ObjectReference(kind="Pod", namespace="ns", name=f"{burst}-{index}")
                rec.event(ref, models.NORMAL, "Started", "started")
            assert b.flush(10)
        assert len(fake.events) == 6 * _runtime.LINGER_BATCH
    finally:
        b.shutdown(2)


@pytest.mark.parametrize("sink", [None, "auto"])
def test_without_a_sink_every_occurrence_is_discarded_and_counted(sink, monkeypatch) -> None:
    """sink: None (or "auto" where no configuration exists) writes nothing, and says so in
    the counters: accepted equals discarded after flush."""
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    handler = KubernetesEventHandler(component="none", sink=sink)
    log = app_logger(handler)
    for number in range(7):
        log.warning("nowhere", extra={"involved": pod(f"n-{number}")})
    handler.flush()
    stats = handler.stats()
    handler.close()
    assert stats["accepted"] == 7
    assert stats["discarded"] == 7
    assert unaccounted(stats) == 0


def test_an_application_thread_named_like_ours_still_makes_events(server) -> None:
    """The library recognises its threads by identity: a thread of the application that
    happens to be called k8s-events-writer-0 is not one of them."""
    handler = KubernetesEventHandler(component="named", sink=server.url, qps=0)
    log = app_logger(handler)

    def work() -> None:
        log.warning("from a look-alike", extra={"involved": pod("lookalike")})

    thread = threading.Thread(target=work, name="k8s-events-writer-0")
    thread.start()
    thread.join(10)
    handler.flush()
    handler.close()
    assert stored_counts(server, None) == Counter({"lookalike": 1})
    assert handler.stats()["accepted"] == 1


REPORT_CHILD = """
import logging, sys
from k8s_logging_events.handler import KubernetesEventHandler

logging.getLogger().addHandler(KubernetesEventHandler(component="rep", sink=sys.argv[1], qps=0))
log = logging.getLogger("app")
for number in range(50):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "rep-%d" % number, "namespace": "default"}}
    log.warning("lost", extra={"involved": pod})
logging.getLogger().handlers[0].flush()
"""


def test_reports_reach_stderr_when_only_our_handler_is_configured(server) -> None:
    """With the handler alone on the root logger, nothing else would show the library's
    own warnings: they go to standard error, rate-limited: the first failure at once, and
    the flush summarises the 49 the rate limit held back, with the true count."""
    server.inject(method="POST", status=404, times=None)
    result = run_child(REPORT_CHILD, server.url)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "Unable to write event" in line]
    assert len(lines) == 2, result.stderr
    assert all("404" in line for line in lines)
    assert lines[0].endswith("; 1 occurrence(s) lost")
    assert "49 report(s) like this" in lines[1]
    assert "49 occurrence(s) lost since then (50 occurrence(s) in all)" in lines[1]


def test_an_idle_handler_keeps_one_thread_and_writers_end_after_the_work(server) -> None:
    """Writer threads exist only while there are writes; the dispatcher stays."""
    handler = KubernetesEventHandler(component="idle", sink=server.url, qps=0)
    log = app_logger(handler)
    for number in range(40):
        log.warning("busy", extra={"involved": pod(f"idle-{number}")})
    handler.flush()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(handler.threads()) > 1:
        threading.Event().wait(0.05)
    names = [t.name for t in handler.threads()]
    handler.close()
    assert len(names) == 1, names
    assert "dispatcher" in names[0]
    assert handler.threads() == []


class _HeldSink(FakeEventSink):
    """A fake sink whose creates wait until the test lets them go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def create(self, event: models.Event) -> models.Event:
        self.entered.set()
        self.go.wait(10)
        return super().create(event)


def test_stats_add_up_while_the_dispatcher_hands_a_batch_on() -> None:
    """accepted equals the outcomes plus pending at any moment, even in the middle of a
    hand-off: here, read by a report that the dispatcher writes after it queued (and
    dropped) a batch's writes and before it marked the batch as handed on."""
    fake = _HeldSink()
    b = recorder.EventBroadcaster(queue_length=1, writers=1)
    b.start_recording_to_sink(fake)
    rec = b.new_recorder(models.EventSource(component="ctl", host="node-1"))
    seen: list[dict[str, int]] = []

    class Reading(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(dict(b.stats()))

    library = logging.getLogger("k8s_logging_events")
    reading = Reading(logging.ERROR)
    library.addHandler(reading)
    try:
        rec.event(pod("web-0"), models.WARNING, "BackOff", "first")
        assert fake.entered.wait(10)  # its write is in flight: pending_events is full
        rec.event(pod("web-1"), models.WARNING, "BackOff", "second")  # a write dropped
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        fake.go.set()
        assert b.flush(10)
    finally:
        library.removeHandler(reading)
        fake.go.set()
        b.shutdown(2)
    assert seen
    for stats in [*seen, dict(b.stats())]:
        outcomes = sum(stats[name] for name in _diagnostics.OUTCOMES)
        assert stats["accepted"] == outcomes + stats["pending"], stats


def _stack_names(thread: threading.Thread) -> set[str]:
    """The names of the functions on ``thread``'s stack right now."""
    frame = sys._current_frames().get(thread.ident or -1)
    names = set()
    while frame is not None:
        names.add(frame.f_code.co_name)
        frame = frame.f_back
    return names


def _hold_the_start(
    monkeypatch: pytest.MonkeyPatch, where: str, entered: threading.Event, gate: threading.Event
) -> None:
    """Hold the first log call's start of the dispatcher at ``where`` until ``gate`` opens."""

    def hold() -> None:
        entered.set()
        gate.wait(10)

    if where == "making":  # marked started, its thread not yet made (under the start lock)
        original_hook = _process.flush_when_child_ends

        def flush_when_child_ends(target: _process.ExitFlushable) -> None:
            if threading.current_thread().name == "test-logs":
                hold()
            original_hook(target)

        monkeypatch.setattr(_process, "flush_when_child_ends", flush_when_child_ends)
    elif where == "starting":  # made, Thread.start() not yet called
        original_start = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            if "dispatcher" in thread.name:
                hold()
            original_start(thread)

        monkeypatch.setattr(threading.Thread, "start", start)
    else:  # booting: the new thread has its identity, but is_alive() is still False
        original_native_id = threading.Thread._set_native_id  # type: ignore[attr-defined]

        def set_native_id(thread: threading.Thread) -> None:
            original_native_id(thread)
            if "dispatcher" in thread.name:
                hold()

        monkeypatch.setattr(threading.Thread, "_set_native_id", set_native_id)


@pytest.mark.parametrize("where", ["making", "starting", "booting"])
def test_a_flush_while_the_first_log_call_starts_the_dispatcher_leaves_the_queue_to_it(
    monkeypatch, where
) -> None:
    """A flush that comes while the first log call is still starting the dispatcher (its
    thread not yet made, not yet started, or booting) waits for it rather than draining the
    queue on its own thread: the two side by side would hand a spam-held occurrence's lower
    count on after a higher one, over-counting the event."""
    entered, gate = threading.Event(), threading.Event()
    start = threading.Thread.start  # the test's own threads start unheld
    _hold_the_start(monkeypatch, where, entered, gate)
    handled_on: list[str] = []
    original_handle = _runtime.Runtime._handle_batch

    def handle_batch(self: _runtime.Runtime, batch: list[object]) -> bool:
        handled_on.append(threading.current_thread().name)
        return original_handle(self, batch)

    monkeypatch.setattr(_runtime.Runtime, "_handle_batch", handle_batch)
    with _recording(where) as (b, rec, fake):
        logging_thread = threading.Thread(
            target=rec.event, args=(REF, models.WARNING, "BackOff", "m"), name="test-logs"
        )
        start(logging_thread)
        assert entered.wait(10)
        flushed: list[bool] = []
        flusher = threading.Thread(target=lambda: flushed.append(b.flush(10)), name="test-flush")
        start(flusher)
        # it waits for the log call to finish making the thread, or for the dispatcher
        waits = {"_start"} if where == "making" else {"wait_reached", "wait"}
        bound = time.monotonic() + 10  # reached only by a hang
        while not handled_on and flusher.is_alive() and time.monotonic() < bound:
            if waits <= _stack_names(flusher):
                break
            flusher.join(0.001)
        gate.set()
        for thread in (logging_thread, flusher):
            thread.join(10)
        assert flushed == [True]
        assert [event.count for event in fake.events] == [1]
    assert "test-flush" not in handled_on, handled_on


def _waits_at(thread: threading.Thread, function: Callable[..., Any], text: str) -> bool:
    """True when ``thread`` is blocked in ``function``, on a line that holds ``text``."""
    lines, first = inspect.getsourcelines(function)
    at = {first + n for n, line in enumerate(lines) if text in line}
    frame = sys._current_frames().get(thread.ident or -1)
    return frame is not None and frame.f_code is function.__code__ and frame.f_lineno in at


def _waits_for_the_start_lock(thread: threading.Thread) -> bool:
    """True when ``thread`` is blocked taking the runtime's start lock."""
    return _waits_at(thread, _runtime.Runtime._start, "with self._start_lock")


def test_a_watcher_added_while_the_first_log_call_starts_the_threads_gets_one_thread(
    monkeypatch,
) -> None:
    """An event watcher added on one thread while another thread's first log call starts
    the runtime's threads gets exactly one thread of its own, not one from each: two would
    call its handler side by side, events out of order."""
    added, gate = threading.Event(), threading.Event()
    original_add = _handoff.Consumers.add

    def add(self: _handoff.Consumers, consumer: Any, *, closing: bool) -> object:
        watcher = original_add(self, consumer, closing=closing)
        if threading.current_thread().name == "test-watch":
            added.set()
            gate.wait(10)
        return watcher

    monkeypatch.setattr(_handoff.Consumers, "add", add)
    seen: list[str] = []
    with _recording("watching") as (b, rec, _):
        watching = threading.Thread(
            target=b.start_event_watcher,
            args=(lambda e: seen.append(e.message),),
            name="test-watch",
        )
        watching.start()
        assert added.wait(10)
        logging_thread = threading.Thread(  # the first log call: starts the threads
            target=rec.event, args=(REF, models.WARNING, "BackOff", "m"), name="test-logs"
        )
        logging_thread.start()
        bound = time.monotonic() + 10  # reached only by a hang
        while logging_thread.is_alive() and time.monotonic() < bound:
            if _waits_for_the_start_lock(logging_thread):
                break  # it waits for the watcher to be added
            logging_thread.join(0.001)
        gate.set()
        for thread in (watching, logging_thread):
            thread.join(10)
        assert b.flush(10)
        loops = [t.name for t in threading.enumerate() if "-watcher-" in t.name]
        assert len(loops) == 1, loops
    assert seen == ["m"]


def test_a_shutdown_while_another_thread_shuts_down_returns_once_that_one_is_done() -> None:
    """``shutdown()`` from two threads at once: the second returns only once the first has
    written or given up everything, so that the counters are final when either returns."""
    fake = _HeldSink()
    b = recorder.EventBroadcaster()
    b.start_recording_to_sink(fake)
    rec = b.new_recorder("twice")
    try:
        rec.event(REF, models.WARNING, "BackOff", "m")
        assert fake.entered.wait(10)
        first = threading.Thread(target=b.shutdown, args=(10,), name="test-shutdown-first")
        first.start()
        seen: list[dict[str, int]] = []

        def shut_down_and_read() -> None:
            b.shutdown(10)
            seen.append(dict(b.stats()))

        second = threading.Thread(target=shut_down_and_read, name="test-shutdown-second")
        bound = time.monotonic() + 10  # reached only by a hang
        while "wait_written" not in _stack_names(first) and time.monotonic() < bound:
            first.join(0.001)
        second.start()
        while second.is_alive() and time.monotonic() < bound:
            if {"close", "wait_for"} <= _stack_names(second):
                break  # it waits for the first
            second.join(0.001)
        fake.go.set()
        for thread in (first, second):
            thread.join(10)
        assert [(stats["created"], stats["pending"]) for stats in seen] == [(1, 0)], seen
    finally:
        fake.go.set()
        b.shutdown(2)


FLUSH_INSIDE_A_FLUSH_CHILD = """
import json, signal, sys, threading
from k8s_logging_events import models, recorder
from k8s_logging_events.testing import FakeEventSink

ref = models.ObjectReference(kind="Pod", namespace="ns", name="p", api_version="v1")
rounds = []
for step in range(8):
    entered, go = threading.Event(), threading.Event()

    class Held(FakeEventSink):
        def create(self, event):
            entered.set()
            go.wait(30)
            return super().create(event)

    b = recorder.EventBroadcaster()
    b.start_recording_to_sink(Held())
    runtime = b._runtime
    b.new_recorder("sig").event(ref, models.WARNING, "BackOff", "m")
    assert entered.wait(30)
    calls, nested = [0], []

    def on_signal(signum, frame):  # an application's SIGTERM handler that flushes
        nested.append(b.flush(0.2))
        go.set()

    def profile(frame, event, arg):
        # the step-th call the flush makes once it counts itself, under the runtime's lock
        if event in ("call", "c_call") and runtime._flushes and not nested:
            if calls[0] == step:
                signal.raise_signal(signal.SIGUSR1)
            calls[0] += 1

    signal.signal(signal.SIGUSR1, on_signal)
    sys.setprofile(profile)
    outer = b.flush(30)
    sys.setprofile(None)
    rounds.append([outer, len(nested)])
    b.shutdown(5)
print(json.dumps(rounds))
"""


def test_a_signal_handler_that_flushes_inside_a_flush_never_hangs() -> None:
    """A signal handler that flushes (an application's SIGTERM handler), landing at each of
    the first steps of a flush on the main thread, under the runtime's lock, returns: nothing
    it takes there is a lock the interrupted flush may hold and that is not reentrant (the
    flag that cuts the dispatcher's linger short was an Event, whose lock is not)."""
    result = run_child(FLUSH_INSIDE_A_FLUSH_CHILD, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[True, 1]] * 8


FLUSH_WHILE_THE_FLUSH_WAITS_CHILD = """
import json, signal, sys, threading
from k8s_logging_events import models, recorder
from k8s_logging_events.testing import FakeEventSink

ref = models.ObjectReference(kind="Pod", namespace="ns", name="p", api_version="v1")
b = recorder.EventBroadcaster()
b.start_recording_to_sink(FakeEventSink())
go = threading.Event()
handoff = b._runtime._handoff
hand_on = handoff._hand_on


def held(items, consumers):  # holds the dispatcher until the signal
    go.wait(30)
    hand_on(items, consumers)


handoff._hand_on = held
dispatcher = []
nested = []


def blocked_in_reach():
    frame = sys._current_frames().get(dispatcher[0].ident)
    names = set()
    while frame is not None:
        names.add(frame.f_code.co_name)
        frame = frame.f_back
    return {"_reach", "set"} <= names


def on_signal(signum, frame):  # an application's SIGTERM handler that flushes
    go.set()
    for _ in range(100_000):  # until the dispatcher waits for the marker's lock
        if blocked_in_reach():
            break
        threading.Event().wait(0.0001)
    nested.append(b.flush(0.2))


def profile(frame, event, arg):
    # the flush waits for its marker, inside the marker's own lock (Condition.wait's start)
    if event == "call" and frame.f_code.co_name == "wait" and not nested and not fired:
        caller = frame.f_back
        if caller is not None and caller.f_code.co_name == "wait" and "wait_reached" in (
            caller.f_back.f_code.co_name if caller.f_back else ""
        ):
            fired.append(True)
            signal.raise_signal(signal.SIGUSR1)


fired = []
b.new_recorder("sig").event(ref, models.WARNING, "BackOff", "m")
dispatcher.extend(t for t in b.threads() if "dispatcher" in t.name)
signal.signal(signal.SIGUSR1, on_signal)
sys.setprofile(profile)
outer = b.flush(30)
sys.setprofile(None)
b.shutdown(5)
print(json.dumps({"fired": fired, "outer": outer, "nested": len(nested)}))
"""


def test_a_signal_handler_that_flushes_while_a_flush_waits_for_its_marker_never_hangs() -> None:
    """A signal handler that flushes, landing while the main thread's flush waits for its
    marker (inside the marker's lock) just as the dispatcher reaches that marker, returns:
    the dispatcher marks a marker reached outside the runtime's lock, so the handler's flush
    can take that lock (it waits its own short timeout, then the first flush completes)."""
    result = run_child(FLUSH_WHILE_THE_FLUSH_WAITS_CHILD, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"fired": [True], "outer": True, "nested": 1}


def test_a_log_call_interrupted_while_it_starts_the_dispatcher_leaves_flush_working(
    monkeypatch,
) -> None:
    """A KeyboardInterrupt that reaches the first log call while it starts the dispatcher
    (before the thread exists) goes to the application, and costs nothing more: the next
    log call starts the dispatcher, and a flush writes everything at once rather than
    waiting its whole timeout for a thread that never began."""
    original_start = threading.Thread.start
    interrupts = [KeyboardInterrupt()]

    def start(thread: threading.Thread) -> None:
        if "dispatcher" in thread.name and interrupts:
            raise interrupts.pop()
        original_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    with _recording("interrupted") as (b, rec, fake):
        with pytest.raises(KeyboardInterrupt):
            rec.event(REF, models.NORMAL, "First", "m")
        rec.event(REF, models.NORMAL, "Second", "m")
        assert b.flush(5)
        assert sorted(event.reason for event in fake.events) == ["First", "Second"]
        assert any("dispatcher" in thread.name for thread in b._runtime.threads())


def test_occurrences_dropped_by_a_full_queue_are_reported_in_true_numbers(monkeypatch) -> None:
    """A queue that is full drops each further occurrence: the reports say how many
    occurrences were dropped (one line, then held-back lines summarised at the flush with
    the count since and in all), and that number is stats()'s dropped."""
    released = threading.Event()
    hand_on = _handoff.HandOff._hand_on

    def held(self: _handoff.HandOff, items: list[Any], consumers: list[Any]) -> None:
        released.wait(10)  # the dispatcher waits with its first batch: the queue fills
        hand_on(self, items, consumers)

    monkeypatch.setattr(_handoff.HandOff, "_hand_on", held)
    handler = KubernetesEventHandler(component="ctl", sink=None, queue_length=2)
    log = logging.getLogger("tests.runtime.queue-full")
    log.propagate = False
    log.addHandler(handler)
    reports = ListHandler()
    try:
        with on_library_logger(reports):
            for index in range(12):
                log.warning("x %d", index, extra={"involved": pod(f"web-{index}")})
            released.set()
            assert handler.drain(10)
    finally:
        released.set()
        log.removeHandler(handler)
        handler.close()
    dropped = handler.stats()["dropped"]
    assert dropped > 0
    lines = [text for text in reports.messages() if "queued already" in text]
    first = re.search(r"; (\d+) occurrence\(s\) dropped$", lines[0])
    assert first is not None, lines
    in_all = re.search(r"\((\d+) occurrence\(s\) in all\)", lines[-1])
    assert int(in_all.group(1) if in_all else first.group(1)) == dropped, lines


class _InterruptAt:
    """A tracer that raises KeyboardInterrupt at the ``step``-th opcode of the runtime's
    ``offer`` (as a Ctrl-C, or a SIGTERM handler's sys.exit(), may land between two steps
    of a log call on the main thread); ``fired`` once it did."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.fired = False

    def __call__(self, frame: Any, event: str, arg: object) -> Any:
        if event != "call" or frame.f_code is not _runtime.Runtime.offer.__code__:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace = self._opcode
        sys.settrace(self)  # 3.12 and later instrument the frame for opcodes only then
        return self._opcode

    def _opcode(self, frame: Any, event: str, arg: object) -> Any:
        if event == "opcode" and not self.fired:
            self.step -= 1
            if self.step == 0:
                self.fired = True
                raise KeyboardInterrupt
        return self._opcode


@pytest.mark.parametrize("closed", [False, True], ids=["queued", "after-shutdown"])
def test_an_interrupt_at_any_step_of_an_offer_leaves_every_occurrence_accounted(
    closed: bool,
) -> None:
    """Wherever an interrupt lands in the offer of an occurrence (queued, or dropped after a
    shutdown), the occurrence was either accepted and has an outcome once flushed, or was
    never accepted: ``accepted`` is the sum of the outcomes and nothing stays pending (an
    interrupt between the count and the queue left an accepted occurrence that never had
    one, ``pending`` 1 for ever)."""
    previous = sys.gettrace()
    for step in range(1, 500):
        interrupt = _InterruptAt(step)
        with _recording("interrupted") as (b, rec, _):
            if closed:
                b.shutdown(2)
            sys.settrace(interrupt)
            try:
                rec.event(REF, models.NORMAL, "Interrupted", "m")
            except KeyboardInterrupt:
                pass
            finally:
                sys.settrace(previous)
            assert b.flush(5)
            stats = dict(b.stats())
        assert (unaccounted(stats), stats["pending"]) == (0, 0), (step, stats)
        if not interrupt.fired:
            break  # past the offer's last step
    assert not interrupt.fired  # the loop ran past the offer's end
    assert step > 10


# --- one thread hands occurrences on at a time ------------------------------------------------


def _pids_limit(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """A lasting pids limit: none of the broadcaster's threads starts while ``limit[0]``
    (the tests' own threads do)."""
    start, limit = threading.Thread.start, [True]

    def start_or_refuse(thread: threading.Thread) -> None:
        if limit[0] and thread.name.startswith(recorder.THREAD_NAME):
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_or_refuse)
    return limit


def _hold_first_hand_on(
    monkeypatch: pytest.MonkeyPatch, holder: str, entered: threading.Event, gate: threading.Event
) -> tuple[list[tuple[str, list[object]]], threading.Event]:
    """Note each hand-on as it begins (the thread's name, its occurrences' times); hold the
    first on the thread named ``holder`` until ``gate`` opens. The event is set once another
    thread hands on, or waits for its turn to (rule 11's baton, of every runtime made after)."""
    handed: list[tuple[str, list[object]]] = []
    other = threading.Event()
    original, fresh = _handoff.HandOff.deliver, _runtime.Runtime._fresh

    def deliver(self: _handoff.HandOff, items: list[Any]) -> None:
        name = threading.current_thread().name
        handed.append((name, [item.time for item in items]))
        if name != holder:
            other.set()
        elif not entered.is_set():
            entered.set()
            gate.wait(10)
        original(self, items)

    def fresh_with_a_noted_baton(self: _runtime.Runtime) -> None:
        fresh(self)
        self._baton = _NotedBaton(self._baton, other)  # type: ignore[assignment]

    monkeypatch.setattr(_handoff.HandOff, "deliver", deliver)
    monkeypatch.setattr(_runtime.Runtime, "_fresh", fresh_with_a_noted_baton)
    return handed, other


class _NotedBaton:
    """A lock that sets ``waited`` when a thread cannot take it at once (another holds it):
    an event to wait for, where a look at the thread's stack is a guess (a source file
    edited since it was imported has other line numbers)."""

    def __init__(self, lock: Any, waited: threading.Event) -> None:
        self._lock, self._waited = lock, waited

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        self._waited.set()
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def _is_owned(self) -> bool:
        return bool(self._lock._is_owned())


def _log_repeats(rec: recorder.EventRecorder, clock: FakeClock, times: int) -> list[object]:
    """Log one event ``times`` times, 5 s apart; the times of the occurrences."""
    logged: list[object] = []
    for _ in range(times):
        logged.append(clock.now())
        rec.event(REF, models.WARNING, "BackOff", "m")
        clock.step(5)
    return logged


def test_two_flushes_while_no_thread_can_start_hand_occurrences_on_one_at_a_time(
    monkeypatch,
) -> None:
    """A lasting pids limit: no dispatcher, so a flush hands the queued occurrences on
    itself. Two flushes at once both did, side by side, through what is built for one caller
    (a batch's outcomes, the correlator): the second handed a later repeat on while the first
    still held an earlier one, and the event kept the older time as its last. One thread
    hands occurrences on at a time, in the order they were logged."""
    _pids_limit(monkeypatch)
    entered, gate = threading.Event(), threading.Event()
    handed, other = _hold_first_hand_on(monkeypatch, "test-flush-a", entered, gate)
    clock = FakeClock()
    with _recording("two-flushes", clock=clock) as (b, rec, fake):
        logged = _log_repeats(rec, clock, 2)
        flushed: dict[str, bool] = {}
        # flushes' time beyond the waits below: they keep none of it once done
        first, second = (
            threading.Thread(target=lambda n=n: flushed.update({n: b.flush(60)}), name=n)
            for n in ("test-flush-a", "test-flush-b")
        )
        first.start()
        assert entered.wait(10)
        second.start()
        assert other.wait(10)  # the second flush hands on, or waits for its turn
        gate.set()
        for thread in (first, second):
            thread.join(10)
        assert flushed == {"test-flush-a": True, "test-flush-b": True}
        (event,) = fake.events
        assert (event.count, event.last_timestamp) == (2, logged[-1])
    assert [t for _, times in handed for t in times] == logged


def test_a_dispatcher_started_while_a_flush_hands_occurrences_on_waits_for_that_flush(
    monkeypatch,
) -> None:
    """A pids limit that lifts while a flush hands the queued occurrences on itself: the
    next log call started the dispatcher, which took the rest of the queue and handed it on
    while the flush still held the first occurrence, and the event kept an older time as its
    last. The dispatcher hands on once the flush let go, after the occurrence it held."""
    limit = _pids_limit(monkeypatch)
    entered, gate = threading.Event(), threading.Event()
    handed, other = _hold_first_hand_on(monkeypatch, "test-flush", entered, gate)
    clock = FakeClock()
    with _recording("lifted", clock=clock) as (b, rec, fake):
        logged = _log_repeats(rec, clock, 2)
        flushed: list[bool] = []
        # the flush's time beyond the waits below: it keeps none of it once done
        flusher = threading.Thread(target=lambda: flushed.append(b.flush(60)), name="test-flush")
        flusher.start()
        assert entered.wait(10)
        limit[0] = False
        logged += _log_repeats(rec, clock, 1)  # starts the dispatcher
        assert len([t for t in b._runtime.threads() if "dispatcher" in t.name]) == 1
        assert other.wait(10)  # the dispatcher hands on, or waits for its turn
        gate.set()
        flusher.join(10)
        assert flushed == [True]
        assert b.flush(10)
        (event,) = fake.events
        assert (event.count, event.last_timestamp) == (3, logged[-1])
    assert [t for _, times in handed for t in times] == logged


def test_a_signal_handlers_flush_inside_a_flush_handing_occurrences_on_returns_false(
    monkeypatch,
) -> None:
    """A signal handler that flushes (an application's SIGTERM handler) on the thread it
    interrupted while that one's flush hands occurrences on (no dispatcher: a pids limit):
    the nested flush handed the rest of the queue on inside the outer one's hand-on, a later
    repeat first, and cleared what the outer one had counted. It returns False at once
    (it would wait for itself); the outer flush hands everything on, in order."""
    _pids_limit(monkeypatch)
    clock = FakeClock()
    nested: list[bool] = []
    with _recording("nested", clock=clock) as (b, rec, fake):
        logged = _log_repeats(rec, clock, 2)
        hand_on = _handoff.HandOff._hand_on.__code__

        def profile(frame: Any, event: str, arg: object) -> None:
            if event == "call" and frame.f_code is hand_on and not nested:
                nested.append(b.flush(0.2))  # as a signal handler landing here would

        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            outer = b.flush(10)
        finally:
            sys.setprofile(previous)
        (event,) = fake.events
        assert (event.count, event.last_timestamp) == (2, logged[-1])
        assert (outer, nested) == (True, [False])
        stats = dict(b.stats())
        assert (unaccounted(stats), stats["pending"]) == (0, 0), stats


def test_a_flush_where_no_thread_can_start_waits_out_a_retrys_back_off_without_spinning(
    monkeypatch,
) -> None:
    """A lasting pids limit (no dispatcher, no writer) and a write waiting out its retry
    back-off: the flush had nothing to do on its own thread until the back-off ended, yet
    looked again at once, over and over (some sixty thousand times a second, a core busy
    until its deadline). Finding nothing to do, it waits a moment before it looks again."""
    _pids_limit(monkeypatch)
    pumps: list[float] = []
    original = _runtime.Runtime._pump

    def pump(self: _runtime.Runtime, deadline: _flush.Deadline) -> bool:
        pumps.append(deadline.remaining())
        return original(self, deadline)

    monkeypatch.setattr(_runtime.Runtime, "_pump", pump)
    fake = FakeEventSink()
    fake.fail_next("create", sink.ApiStatusError(500, "InternalError", "boom"))
    b = recorder.EventBroadcaster(clock=FakeClock())  # the back-off ends only if it moves
    try:
        b.start_recording_to_sink(fake)
        b.new_recorder("patient").event(REF, models.WARNING, "BackOff", "m")
        assert not b.flush(0.5)
        looks = len(pumps)
        assert (len(fake.calls), b.stats()["pending"]) == (1, 1)
    finally:
        b.shutdown(0)
    assert looks <= 2 * 0.5 / _flush.POLL_SECONDS, looks
