"""flush(), drain() and close(): one wait at exit, a report when time runs out, exact pending.

The sink is a FakeEventSink whose writes can be held (a server that does not answer) and
back-offs run on a FakeClock. The waits themselves are real (a flush waits for threads):
the tests that measure them use generous bounds and assert what was waited for, not how
fast; the batch job runs in a fresh interpreter, as at a real exit.
"""

from __future__ import annotations

import fractions
import json
import logging
import re
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from k8s_logging_events import _deadlines, _flush, _runtime, models, recorder, sink
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests._children import run_python
from tests.reliability_scenarios import on_library_logger

OUTCOMES = ("dropped", "created", "patched", "coalesced", "failed", "discarded")


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "prod"}}


class HeldSink(FakeEventSink):
    """A FakeEventSink whose creates wait until ``release`` is set (a server not answering)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.on_create = self._hold

    def _hold(self, event: models.Event) -> None:
        self.release.wait(30)


@pytest.fixture(name="held")
def _held() -> Iterator[HeldSink]:
    held = HeldSink()
    yield held
    held.release.set()


@pytest.fixture(name="make")
def _make(held: HeldSink) -> Iterator[Callable[..., KubernetesEventHandler]]:
    made: list[KubernetesEventHandler] = []

    def make(**options: Any) -> KubernetesEventHandler:
        clock = FakeClock()
        settings: dict[str, Any] = {
            "component": "job",
            "sink": held,
            "clock": clock,
            "sleep": clock.sleep,
            "flush_timeout": 0.3,
        }
        settings.update(options)
        handler = KubernetesEventHandler(**settings)
        made.append(handler)
        return handler

    yield make
    held.release.set()
    for handler in made:
        handler.close()


def app_logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"tests.deadlines.{id(handler)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    return log


class Reports(logging.Handler):
    """The library's reports."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(name="reports")
def _reports() -> Iterator[Reports]:
    with on_library_logger(Reports()) as reports:
        yield reports


def waits_asked(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """From now on, the timeout of each wait for the handler's writes (a flush's, a drain's)."""
    asked: list[float | None] = []
    original = recorder.EventBroadcaster._flush

    def wait(self: recorder.EventBroadcaster, timeout: float | None, *, report: bool) -> bool:
        asked.append(timeout)
        return original(self, timeout, report=report)

    monkeypatch.setattr(recorder.EventBroadcaster, "_flush", wait)
    return asked


# --- the rules, on their own --------------------------------------------------------------------


class Ticks:
    """A monotonic reading that tests move by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _after_a_flush_that_ran_out(written: int) -> _deadlines.ExitWaits:
    """Exit waits of a 5 s ``flush_timeout`` after a whole flush ran out of time with
    ``written`` occurrences written."""
    ticks = Ticks()
    waits = _deadlines.ExitWaits(5.0, ticks)
    assert waits.for_flush(written=written) == 5.0
    ticks.now += 5.0
    waits.ended(False, written=written)
    return waits


def test_after_a_wait_that_ran_out_nothing_waits_again_until_something_is_written() -> None:
    """A timed-out flush: while nothing more is written (the server takes nothing), the
    next flush and the close wait 0 s; once a write lands, waits are whole again."""
    waits = _after_a_flush_that_ran_out(written=10)
    assert waits.for_flush(written=10) == 0.0
    waits.ended(False, written=10)
    assert waits.for_close(written=10) == 0.0
    assert waits.for_flush(written=11) == 5.0


def test_a_write_that_lands_during_a_flush_that_did_not_wait_counts_as_written_since() -> None:
    """The rule is "nothing written since the wait that ran out": a flush that did not wait
    ran out of nothing, so a write that landed while it returned still makes the next
    flush (the exit's) wait, instead of moving the mark past it."""
    waits = _after_a_flush_that_ran_out(written=10)
    assert waits.for_flush(written=10) == 0.0
    waits.ended(False, written=11)  # one write landed meanwhile
    assert waits.for_flush(written=11) == 5.0


def test_a_close_right_after_a_flush_shares_its_deadline() -> None:
    """logging.shutdown()'s pair: the close gets what is left of the flush's timeout."""
    ticks = Ticks()
    waits = _deadlines.ExitWaits(5.0, ticks)
    waits.for_flush(written=3)
    ticks.now += 1.5
    waits.ended(True, written=3)
    ticks.now += 0.5
    assert waits.for_close(written=3) == pytest.approx(3.0)
    ticks.now += 10
    assert waits.for_close(written=3) == 5.0  # long after: a close of its own


def test_a_flush_cut_short_at_exit_leaves_the_close_after_it_no_time() -> None:
    """A Ctrl-C that ended the exit's flush one second into its five: the close that
    follows gives the writes up at once, it does not wait the four seconds left."""
    ticks = Ticks()
    waits = _deadlines.ExitWaits(5.0, ticks)
    waits.for_flush(written=3)
    ticks.now += 1.0
    waits.cut()
    waits.ended(False, written=3)
    assert waits.for_close(written=4) == 0.0
    assert waits.cut_short


def test_drain_always_waits_as_asked() -> None:
    """drain(timeout) is a question: it waits its timeout even after a timed-out flush."""
    waits = _deadlines.ExitWaits(5.0, Ticks())
    waits.ended(False, written=4)
    assert waits.for_drain(None) == 5.0
    assert waits.for_drain(2.0) == 2.0
    assert waits.for_drain(-1) == 0.0


def test_a_short_drain_that_ran_out_takes_nothing_from_the_exit() -> None:
    """drain(0) (a poll) or any drain shorter than flush_timeout that ran out gave the
    writes no deadline: the flush and the close after it still wait their whole timeout,
    and a close right after it is no half of logging.shutdown()'s pair. A drain that waited
    a whole flush_timeout in vain counts as a flush that did."""
    ticks = Ticks()
    waits = _deadlines.ExitWaits(5.0, ticks)
    waits.for_drain(0)
    waits.ended(False, written=3, drain=True)
    assert waits.for_close(written=3) == 5.0
    assert waits.for_flush(written=3) == 5.0
    waits.for_drain(5.0)
    ticks.now += 5.0
    waits.ended(False, written=3, drain=True)
    ticks.now += 10
    assert waits.for_flush(written=3) == 0.0


# --- the handler ------------------------------------------------------------------------------


def test_flush_keeps_the_handler_signature_and_drain_answers(make, held) -> None:
    """flush() returns None as logging.Handler's does; drain() says whether it finished."""
    handler = make()
    log = app_logger(handler)
    assert handler.drain() is True  # nothing recorded yet
    log.warning("waiting", extra={"involved": pod("a")})
    assert handler.flush() is None
    assert handler.drain(0.2) is False
    held.release.set()
    assert handler.drain(10) is True
    assert handler.stats()["created"] == 1


def test_drain_takes_a_fraction_of_a_second_as_any_number(make, held) -> None:
    """A Fraction is a real number, as for every option: ``drain(Fraction(10))`` answered
    False at once ("drain() waits a number of seconds, not Fraction(10, 1)") whatever the
    writes did; it waits as asked."""
    handler = make()
    app_logger(handler).warning("waiting", extra={"involved": pod("a")})
    held.release.set()
    ten: Any = fractions.Fraction(10)  # typed float, as numbers.Real cannot be
    assert handler.drain(ten) is True
    assert handler.stats()["created"] == 1


def test_a_flush_that_runs_out_of_time_says_once_what_is_pending_and_why(
    make, held, reports, monkeypatch
) -> None:
    """The first timed-out flush reports the pending occurrences and the option that helps;
    while nothing is written, later flushes neither wait nor report again (what was logged
    meanwhile is in the exit's report); once the server answers, a flush waits again."""
    handler = make(flush_timeout=1.0)
    log = app_logger(handler)
    for _ in range(3):
        log.warning("waiting", extra={"involved": pod("a")})
    started = time.monotonic()
    handler.flush()
    assert time.monotonic() - started >= 1.0
    unfinished = [m for m in reports.messages if "still pending" in m]
    assert len(unfinished) == 1, reports.messages
    assert "3 event occurrence(s)" in unfinished[0]
    assert "flush_timeout" in unfinished[0]
    log.warning("more", extra={"involved": pod("b")})  # meets the same server
    waits = waits_asked(monkeypatch)
    for _ in range(2):
        handler.flush()
    assert waits == [0.0, 0.0]
    assert len([m for m in reports.messages if "still pending" in m]) == 1
    held.release.set()
    assert handler.drain(10)
    assert len([m for m in reports.messages if "still pending" in m]) == 1
    assert handler.stats()["created"] == 2


def test_a_wait_after_something_was_written_again_is_whole(make, held) -> None:
    """The server answers again: the next flush waits its whole timeout for what is new."""
    handler = make(flush_timeout=0.3)
    log = app_logger(handler)
    log.warning("first", extra={"involved": pod("a")})
    handler.flush()  # times out: the create is held
    held.release.set()
    assert handler.drain(10)
    held.release.clear()
    log.warning("second", extra={"involved": pod("b")})
    started = time.monotonic()
    handler.flush()
    assert time.monotonic() - started >= 0.3


def test_close_after_a_timed_out_flush_does_not_wait_the_deadline_again(
    make, held, reports, monkeypatch
) -> None:
    """The batch job's exit: flush() waited flush_timeout and timed out; logging.shutdown()
    then flushes and closes: neither waits for the same writes again, and the writes are
    given up (failed) with one exit report."""
    handler = make(flush_timeout=1.0)
    log = app_logger(handler)
    given: list[float | None] = []
    original = recorder.EventBroadcaster.shutdown

    def shutdown(self: recorder.EventBroadcaster, timeout: float | None = None) -> None:
        given.append(timeout)
        original(self, timeout)

    monkeypatch.setattr(recorder.EventBroadcaster, "shutdown", shutdown)
    log.warning("job done", extra={"involved": pod("job")})
    started = time.monotonic()
    handler.flush()
    assert time.monotonic() - started >= 1.0
    waits = waits_asked(monkeypatch)
    logging.shutdown([lambda: handler])  # what the interpreter's exit does: flush, close
    assert waits == [0.0]  # the flush's
    assert given == [0.0]  # the close's
    stats = handler.stats()
    assert (stats["failed"], stats["pending"]) == (1, 0)
    assert len([m for m in reports.messages if "before the deadline of shutdown" in m]) == 1


def test_the_exit_report_counts_what_was_still_queued_at_close(reports) -> None:
    """A batch job's end after a flush that ran out of time: the close waits no more, and
    what it could not write is said once, every occurrence in it: the writes it gave up
    and the occurrences still queued, dropped without a write (before, the report left
    those out, and only stats() knew)."""
    clock = FakeClock()  # never moved: the sink's rate limit lets its burst of 10 writes go
    with LocalApiServer(namespaces=["prod"]) as server:
        handler = KubernetesEventHandler(  # no drain rate: a flush's bucket would bring 10 more
            component="job", sink=server.url, clock=clock, flush_timeout=0.3, drain_qps=5
        )
        log = app_logger(handler)
        for index in range(12):
            log.warning("step %d failed", index, extra={"involved": pod(f"job-{index}")})
        handler.flush()  # times out: two creates wait for the rate limit
        for index in range(10):
            log.warning("late", extra={"involved": pod(f"late-{index}")})
        logging.shutdown([lambda: handler])
    stats = handler.stats()
    lost = stats["failed"] + stats["dropped"]
    assert stats["created"] <= 10, stats
    assert lost >= 12, stats  # the late ones at least, and two of the first
    assert stats["accepted"] == sum(stats[k] for k in OUTCOMES), stats
    exits = [m for m in reports.messages if "before the deadline of shutdown" in m]
    assert exits == [exits[0]], reports.messages
    assert exits[0].startswith(f"Unable to write {lost} event occurrence(s)"), exits[0]


def test_pending_counts_occurrences_and_accounting_stays_exact(make, held) -> None:
    """Five occurrences of one event and three of another wait behind unanswered creates:
    pending is 8 (occurrences), pending_events 2, and accepted = outcomes + pending."""
    handler = make()
    log = app_logger(handler)
    for _ in range(5):
        log.warning("first", extra={"involved": pod("a")})
    for _ in range(3):
        log.warning("second", extra={"involved": pod("b")})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = handler.stats()
        if stats["pending_events"] == 2 and len(held.calls) == 2:
            break
        held.wait_for_calls(2, timeout=0.05)
    stats = handler.stats()
    assert stats["pending_events"] == 2, stats
    assert stats["pending"] == 8, stats
    assert stats["accepted"] == sum(stats[k] for k in OUTCOMES) + stats["pending"]
    held.release.set()
    assert handler.drain(10)
    stats = handler.stats()
    assert stats["pending"] == stats["pending_events"] == 0
    assert stats["accepted"] == sum(stats[k] for k in OUTCOMES) == 8


def test_reports_are_out_before_flush_returns(make, caplog) -> None:
    """Three writes refused with 403: right after flush(), caplog has the first report and
    the summary of the two held back, saying 3 occurrence(s) as stats() says failed 3."""
    fake = FakeEventSink()
    fake.fail_next("create", sink.ApiStatusError(403, "Forbidden", "no"), times=3)
    handler = make(sink=fake, flush_timeout=10)  # a bound for a hang: the flush must finish
    log = app_logger(handler)
    for name in ("a", "b", "c"):
        log.warning("refused", extra={"involved": pod(name)})
    caplog.set_level(logging.WARNING, logger="k8s_logging_events")
    handler.flush()
    texts = [r.getMessage() for r in caplog.records if r.name == "k8s_logging_events"]
    assert handler.stats()["failed"] == 3
    assert any(t.endswith("; 1 occurrence(s) lost") for t in texts), texts
    assert any("(3 occurrence(s) in all)" in t for t in texts), texts
    lost = [int(n) for t in texts for n in re.findall(r"(\d+) occurrence\(s\) lost", t)]
    assert sum(lost) == 3, texts  # 1 at once, then 2 held back: the lines add up


BATCH_JOB = """
import atexit, json, sys, time

# registered before logging is imported, so it runs after logging.shutdown()
atexit.register(lambda: print(json.dumps({"exited": time.monotonic()}), flush=True))

import logging, threading
from k8s_logging_events.handler import KubernetesEventHandler

handler = KubernetesEventHandler(component="job", sink=sys.argv[1], flush_timeout=3, qps=0)
log = logging.getLogger("job")
log.addHandler(handler)
for number in range(5):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "job-%d" % number, "namespace": "default"}}
    log.warning("step failed", extra={"involved": pod})

def heartbeat():  # a thread that keeps logging: what it logs meets the same server
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "beat", "namespace": "default"}}
    while True:
        log.warning("still alive", extra={"involved": pod})
        time.sleep(0.01)

threading.Thread(target=heartbeat, daemon=True).start()
print(json.dumps({"flushing": time.monotonic()}), flush=True)
handler.flush()
print(json.dumps({"flushed": time.monotonic()}), flush=True)
"""


def test_a_batch_job_that_flushes_then_exits_waits_once(tmp_path) -> None:
    """Against a server that does not answer: the job's flush() waits flush_timeout (3 s)
    and says what is pending; the exit that follows does not wait 3 s more (nothing was
    written since, though a thread kept logging), and says once what it gave up."""
    with LocalApiServer() as server:
        server.inject(action="hang", times=None)
        result = run_python(textwrap.dedent(BATCH_JOB), server.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    times: dict[str, float] = {}
    for line in result.stdout.splitlines():
        times.update(json.loads(line))
    assert times["flushed"] - times["flushing"] >= 3.0
    # a second full deadline would take 3 s; the threads' grace is a quarter of a second,
    # which a loaded machine may stretch to more than one
    assert times["exited"] - times["flushed"] < 3.0, times
    pending = [line for line in result.stderr.splitlines() if "still pending" in line]
    given_up = [line for line in result.stderr.splitlines() if "deadline of shutdown" in line]
    assert len(pending) == 1, result.stderr
    assert len(given_up) == 1, result.stderr
    assert "event occurrence(s)" in given_up[0]


INTERRUPTED_EXIT = """
import atexit, json, os, signal, sys, threading, time

# registered before logging is imported, so it runs after logging.shutdown()
atexit.register(lambda: print(json.dumps(handler.stats()), flush=True))

import logging, logging.handlers
from k8s_logging_events.handler import KubernetesEventHandler

SIGNAL = getattr(signal, sys.argv[2])
if SIGNAL == signal.SIGTERM:  # a service's graceful stop: SIGTERM ends the program
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
else:  # Ctrl-C raises, as in a terminal: a test run a shell put in the background (&)
    # passes on SIGINT ignored, and Python leaves it so
    signal.signal(signal.SIGINT, signal.default_int_handler)

buffered = logging.handlers.MemoryHandler(
    100, flushLevel=logging.CRITICAL, target=logging.StreamHandler(sys.stdout)
)
# no read times out while the exit waits, on a loaded machine too: a timeout's retry would
# be reported before the signal comes
handler = KubernetesEventHandler(
    component="job", sink=sys.argv[1], flush_timeout=30, request_timeout=(5, 120)
)
log = logging.getLogger("job")
log.addHandler(buffered)  # made first, so logging.shutdown() closes it after the handler
log.addHandler(handler)
for number in range(3):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "job-%d" % number, "namespace": "default"}}
    log.warning("step %d failed", number, extra={"involved": pod})

# the three writes reach the silent server before the exit begins: what the signal then
# gives up is in flight (failed), not still queued (dropped), on a loaded machine too
waited_until = time.monotonic() + 30
while handler.stats()["pending_events"] < 3 and time.monotonic() < waited_until:
    time.sleep(0.01)

main = threading.main_thread()

def waiting_at_exit():
    frame = None if main.is_alive() else sys._current_frames().get(main.ident)
    # the flush's waits: for the dispatcher (3.12 at exit: it writes itself), for the writes
    while frame is not None and frame.f_code.co_name not in ("wait_reached", "wait_written"):
        frame = frame.f_back
    return frame is not None

def interrupt():  # once logging.shutdown() waits for the writes
    while not waiting_at_exit():
        time.sleep(0.01)
    os.kill(os.getpid(), SIGNAL)

threading.Thread(target=interrupt, daemon=True).start()
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_exit_waits_gives_the_writes_up_and_closes_the_other_handlers(
    tmp_path, signal_name
) -> None:
    """Ctrl-C (or SIGTERM, where a handler of the program exits) while logging.shutdown()
    waits for a server that does not answer cuts the wait short: what was pending is counted
    as failed and said once, and the handlers after this one are still flushed and closed (a
    MemoryHandler's lines are not lost), no traceback. The report says the wait was cut
    short, not that a deadline of 30 s passed, and no cause in it advises raising
    flush_timeout (it said "see request_timeout and flush_timeout"): that would not help."""
    with LocalApiServer() as server:
        server.inject(action="hang", times=None)
        code = textwrap.dedent(INTERRUPTED_EXIT)
        result = run_python(code, server.url, signal_name, cwd=tmp_path)
    assert "Exception ignored" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["step 0 failed", "step 1 failed", "step 2 failed"], result.stdout
    stats = json.loads(lines[-1])
    assert (stats["failed"], stats["pending"]) == (3, 0), stats
    given_up = [line for line in result.stderr.splitlines() if "Unable to write" in line]
    assert len(given_up) == 1, result.stderr
    assert "when shutdown was cut short (Ctrl-C or an exit)" in given_up[0], given_up
    assert "deadline" not in given_up[0], given_up
    assert "flush_timeout" not in given_up[0], given_up  # nor the advice to raise it


def test_a_ctrl_c_at_exit_cuts_every_handlers_wait_short_not_only_the_one_it_met(
    tmp_path,
) -> None:
    """Two handlers, their server silent: the Ctrl-C that ends the first one's wait at exit
    ends the exit's waiting, the second gives its writes up at once too (counted, said cut
    short) where it waited out its own flush_timeout of 30 s, reported as a deadline."""
    second = """
other = KubernetesEventHandler(
    component="job", sink=sys.argv[1], flush_timeout=30, request_timeout=(5, 120)
)
log.addHandler(other)  # made last: logging.shutdown() flushes it first, where Ctrl-C lands
for number in range(3):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "other-%d" % number, "namespace": "default"}}
    log.warning("other %d failed", number, extra={"involved": pod})
while other.stats()["pending_events"] < 3 and time.monotonic() < waited_until:
    time.sleep(0.01)
"""
    code = (
        textwrap.dedent(INTERRUPTED_EXIT)
        .replace("main = threading.main_thread()", second + "main = threading.main_thread()")
        .replace("json.dumps(handler.stats())", "json.dumps([handler.stats(), other.stats()])")
    )
    with LocalApiServer() as server:
        server.inject(action="hang", times=None)
        result = run_python(code, server.url, "SIGINT", cwd=tmp_path)
    assert "Exception ignored" not in result.stderr, result.stderr
    first, other = json.loads(result.stdout.splitlines()[-1])  # first saw other's 3 too
    assert [(s["failed"], s["pending"]) for s in (first, other)] == [(6, 0), (3, 0)], first
    given_up = [line for line in result.stderr.splitlines() if "Unable to write" in line]
    assert len(given_up) == 2, result.stderr
    assert all("when shutdown was cut short" in line for line in given_up), given_up


class _CountingHandler(KubernetesEventHandler):
    """A user's subclass whose flush does something of its own, then the handler's."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@pytest.mark.parametrize("make_kind", ["handler", "subclass"])
def test_logging_shutdown_reports_what_it_gives_up_once(held, reports, make_kind) -> None:
    """At exit (logging.shutdown(): flush, then close, under the handler's lock) the
    writes that cannot be made are said once, by the close that gives them up, not also
    by the flush before it as still pending: for the handler and for a subclass whose
    flush calls the handler's (the flush knows it runs inside shutdown's pair by the lock
    it holds, not by who called it)."""
    clock = FakeClock()
    kind = KubernetesEventHandler if make_kind == "handler" else _CountingHandler
    handler = kind(component="job", sink=held, clock=clock, sleep=clock.sleep, flush_timeout=0.3)
    try:
        log = app_logger(handler)
        log.warning("job done", extra={"involved": pod("job")})
        logging.shutdown([lambda: handler])
    finally:
        held.release.set()
        handler.close()
    messages = reports.messages
    assert [m for m in messages if "within the flush's" in m] == []
    assert len([m for m in messages if "before the deadline of shutdown" in m]) == 1


def test_a_flush_outside_shutdown_says_what_is_still_pending(held, reports) -> None:
    """The same handler's own flush() (no lock held) does say what it could not write."""
    clock = FakeClock()
    handler = _CountingHandler(
        component="job", sink=held, clock=clock, sleep=clock.sleep, flush_timeout=0.3
    )
    try:
        app_logger(handler).warning("job done", extra={"involved": pod("job")})
        handler.flush()
        assert len([m for m in reports.messages if "within the flush's" in m]) == 1
    finally:
        held.release.set()
        handler.close()


def test_a_poll_with_drain_0_says_true_once_everything_has_an_outcome(make, held) -> None:
    """``drain(0)`` is the poll of docs/batch-jobs.md: once every occurrence accepted so far
    has an outcome (``pending`` 0), it answers True without waiting, before and after
    ``close()``; it said False whenever the timeout was 0."""
    held.release.set()
    handler = make(flush_timeout=10)
    log = app_logger(handler)
    log.warning("job done", extra={"involved": pod("job")})
    assert handler.drain(10) is True
    assert handler.stats()["pending"] == 0
    assert handler.drain(0) is True
    handler.close()
    assert handler.drain(0) is True


@pytest.mark.parametrize(
    "timeout", ["2", b"2", [2], object()], ids=["str", "bytes", "list", "object"]
)
def test_a_drain_timeout_that_is_no_number_is_reported_not_raised(
    make, held, reports, timeout
) -> None:
    """``drain()`` never raises: a timeout that is no number of seconds (a string read from
    the environment, say) is reported on the library's logger, and the answer is False
    (nothing was waited for); the writes go on, and a later drain still answers."""
    handler = make()
    log = app_logger(handler)
    log.warning("waiting", extra={"involved": pod("a")})
    assert handler.drain(timeout) is False
    assert any("drain" in m and "number" in m for m in reports.messages), reports.messages
    held.release.set()
    assert handler.drain(10) is True
    assert handler.stats()["created"] == 1
    handler.close()


def test_a_poll_with_drain_0_before_exit_loses_nothing(make, held) -> None:
    """``drain(0)`` says False while a write is in flight; the exit after it still waits
    for that write (the server answers 0.2 s later) instead of giving it up at once."""
    handler = make(flush_timeout=10)
    log = app_logger(handler)
    log.warning("job done", extra={"involved": pod("job")})
    assert held.wait_for_calls(1, timeout=10)
    assert handler.drain(0) is False
    threading.Timer(0.2, held.release.set).start()
    logging.shutdown([lambda: handler])
    stats = handler.stats()
    assert (stats["created"], stats["failed"]) == (1, 0), stats


def _in_a_wait(thread: threading.Thread) -> bool:
    """True while ``thread`` waits in a flush for the dispatcher or for the writes."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None and frame.f_code.co_name not in ("wait_reached", "wait_written"):
        frame = frame.f_back
    return frame is not None


def _when_waiting(thread: threading.Thread, then: Callable[[], None]) -> threading.Thread:
    """Call ``then`` on a thread of its own once ``thread`` waits in a flush (within 30 s)."""

    def watch() -> None:
        until = time.monotonic() + 30
        while not _in_a_wait(thread) and time.monotonic() < until:
            time.sleep(0.005)
        then()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


@pytest.mark.parametrize("wait", ["flush", "drain"])
def test_a_flush_a_signal_handler_ends_is_no_wait_that_ran_out(make, held, wait) -> None:
    """A pod being stopped: SIGTERM, whose handler calls sys.exit(), lands while the program's
    own flush() (or drain()) waits for a write in flight. That wait did not run out of time:
    the close at exit still waits its flush_timeout, and the write that lands meanwhile is
    created, not given up at once as after a wait that ran out."""
    main = threading.current_thread()
    assert main is threading.main_thread()
    handler = make(flush_timeout=30)
    log = app_logger(handler)
    log.warning("stopping", extra={"involved": pod("web")})
    assert held.wait_for_calls(1, timeout=30)  # the write is in flight

    def on_term(signum: int, frame: object) -> None:
        sys.exit(143)

    def wait_for_the_write() -> None:
        handler.flush() if wait == "flush" else handler.drain()
        time.sleep(30)  # the signal is on its way

    previous = signal.signal(signal.SIGUSR1, on_term)
    try:
        interrupter = _when_waiting(
            main, lambda: signal.pthread_kill(main.ident or 0, signal.SIGUSR1)
        )
        with pytest.raises(SystemExit):
            wait_for_the_write()
        interrupter.join(30)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    releaser = _when_waiting(main, held.release.set)  # the server answers once close waits
    handler.close()
    held.release.set()
    releaser.join(30)
    stats = handler.stats()
    assert (stats["created"], stats["failed"]) == (1, 0), stats


class _Ended(threading.Thread):
    """The main thread as logging.shutdown() sees it at exit: no longer alive."""

    def is_alive(self) -> bool:
        return False


@pytest.mark.parametrize("when", ["running", "at exit"])
def test_a_close_a_signal_handler_ends_gives_the_writes_up_and_lets_the_exit_go_on(
    make, held, reports, monkeypatch, when
) -> None:
    """SIGTERM (whose handler calls sys.exit()) lands while close() waits for a write in
    flight. The close is done, not left half-way: what was pending is counted as failed and
    said once, and the threads are stopped (it was left pending, unaccounted and unsaid, the
    dispatcher running, and the exit's own close returned at once). A close the program
    made lets SystemExit reach it; the close logging.shutdown() makes at exit keeps it, as
    a flush there does, so that the other handlers are still closed."""
    main = threading.current_thread()
    assert main is threading.main_thread()
    handler = make(flush_timeout=30)
    log = app_logger(handler)
    log.warning("stopping", extra={"involved": pod("web")})
    assert held.wait_for_calls(1, timeout=30)
    if when == "at exit":
        monkeypatch.setattr(threading, "main_thread", lambda: _Ended())
    exits: list[int] = []

    def on_term(signum: int, frame: object) -> None:
        sys.exit(143)

    def close_then_idle() -> None:
        handler.close()
        time.sleep(30)  # the signal is on its way (at exit: it was kept)

    previous = signal.signal(signal.SIGUSR1, on_term)
    try:
        interrupter = _when_waiting(
            main, lambda: signal.pthread_kill(main.ident or 0, signal.SIGUSR1)
        )
        try:
            handler.close() if when == "at exit" else close_then_idle()
        except SystemExit as stop:
            exits.append(int(stop.code or 0))
        interrupter.join(30)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert exits == ([143] if when == "running" else [])
    held.release.set()
    handler.close()  # the exit's, as logging.shutdown() makes it
    stats = handler.stats()
    assert (stats["pending"], stats["failed"]) == (0, 1), stats
    assert len([m for m in reports.messages if "Unable to write 1 event" in m]) == 1
    assert handler.broadcaster is not None
    dispatcher = [t for t in handler.threads() if "dispatcher" in t.name]
    assert dispatcher == []  # stopped; a writer ends once its request does (it was held)


def test_a_second_ctrl_c_while_a_cut_close_stops_still_leaves_it_closed(
    make, held, reports, monkeypatch
) -> None:
    """Ctrl-C cuts close()'s wait short, and a second Ctrl-C (an impatient user) lands while
    the close stops the threads. The close still ends closed: what was pending counts as
    failed and is said once, the dispatcher stops, and the first Ctrl-C reaches the program.
    It was left half closed: the writes pending, uncounted and unsaid, and the exit's own
    flush waited the whole flush_timeout again for them."""
    handler = make(flush_timeout=30)
    log = app_logger(handler)
    log.warning("stopping", extra={"involved": pod("web")})
    assert held.wait_for_calls(1, timeout=30)
    runtime, join = _runtime.Runtime, _flush.join
    second: list[KeyboardInterrupt] = []

    def first_ctrl_c(self: object, timeout: float | None) -> bool:
        raise KeyboardInterrupt

    def second_ctrl_c(thread: threading.Thread | None, deadline: Any) -> None:
        if not second:
            second.append(KeyboardInterrupt())
            raise second[0]
        join(thread, deadline)

    monkeypatch.setattr(runtime, "flush", first_ctrl_c)
    monkeypatch.setattr(_flush, "join", second_ctrl_c)
    with pytest.raises(KeyboardInterrupt) as raised:
        handler.close()
    assert second
    assert raised.value is not second[0]  # the first one, the program's
    held.release.set()
    stats = handler.stats()
    assert (stats["pending"], stats["failed"]) == (0, 1), stats
    assert len([m for m in reports.messages if "Unable to write 1 event" in m]) == 1
    assert [t for t in handler.threads() if "dispatcher" in t.name] == []
