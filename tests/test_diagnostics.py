"""The library's reports about itself: one path, always seen, counted truly.

The in-process tests drive the rate limits with a FakeClock; the last ones run the README's
quick start and a dictConfig program in a fresh interpreter and read its standard error,
as a user would see it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import logging.config
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from k8s_logging_events import _diagnostics
from k8s_logging_events.testing import FakeClock
from tests._children import REPO, run_python
from tests.reliability_scenarios import answer_from_fork


class ListHandler(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


class OwnHandler(ListHandler):
    """A handler that, like the event handler, ignores the library's reports."""

    ignores_library_reports = True


@pytest.fixture(autouse=True)
def _fresh_standard_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets a full budget of standard-error lines (the process shares one)."""
    monkeypatch.setattr(_diagnostics, "standard_error", _diagnostics.StandardError())


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="seen")
def _seen() -> ListHandler:
    """What a private logger of the library's tree was given."""
    return ListHandler()


@pytest.fixture(name="reporter")
def _reporter(request: pytest.FixtureRequest, clock: FakeClock, seen: ListHandler) -> Any:
    """A reporter on a private logger whose records ``seen`` keeps, on the fake clock."""
    target = private_logger(request.node.name)
    target.addHandler(seen)
    return _diagnostics.RateLimitedReporter(clock=clock, log=target)


def private_logger(name: str) -> logging.Logger:
    """A logger of the library's tree with one handler, not propagating to pytest's."""
    target = logging.getLogger(f"k8s_logging_events.tests.{name}")
    target.propagate = False
    target.setLevel(logging.DEBUG)
    return target


# --- counting truly -----------------------------------------------------------------------


def test_three_failures_within_a_minute_are_reported_as_three_occurrences(
    clock, seen, reporter
) -> None:
    """The first report goes out at once; the two the rate limit held back are summarised
    (at flush, by summarise()) with their occurrences and the total: 3, as stats() says."""
    for name in ("a", "b", "c"):
        reporter.report(
            "give-up",
            logging.WARNING,
            "Unable to write event %s",
            name,
            occurrences=1,
            outcome="lost",
        )
        clock.step(10)
    assert seen.messages() == ["Unable to write event a; 1 occurrence(s) lost"]
    reporter.summarise()
    assert len(seen.messages()) == 2
    summary = seen.messages()[1]
    assert summary.startswith("Unable to write event c")
    assert "2 report(s) like this since the last one" in summary
    assert "2 occurrence(s) lost since then" in summary
    assert "(3 occurrence(s) in all)" in summary
    reporter.summarise()  # nothing held back any more: nothing to say
    assert len(seen.messages()) == 2


def test_a_summary_says_how_old_the_report_it_repeats_is(clock, seen, reporter) -> None:
    """The summary at flush or close repeats the latest held-back report, whose text tells of
    its moment ("will retry in 2.0 s"): it says how long ago that was, so that a line at
    close, after the server came back and everything was written, does not read as a
    failure of now. A report under a second old needs no age."""
    for attempt in (1, 2):
        reporter.report(
            "retry",
            logging.WARNING,
            "Unable to write event e (attempt %d of 12, will retry in 2.0 s)",
            attempt,
            occurrences=1,
            outcome="delayed",
        )
        clock.step(2)
    clock.step(40)
    reporter.summarise()
    assert seen.messages()[1] == (
        "Unable to write event e (attempt 2 of 12, will retry in 2.0 s) [1 report(s) like this"
        " since the last one, the latest 42 s ago: 1 occurrence(s) delayed since then"
        " (2 occurrence(s) in all)]"
    )
    reporter.report("retry", logging.WARNING, "again", occurrences=1, outcome="delayed")
    reporter.summarise()  # held back just now: no age
    assert seen.messages()[2].endswith(
        "[1 report(s) like this since the last one: 1 occurrence(s) delayed since then"
        " (3 occurrence(s) in all)]"
    )


def test_a_held_retry_is_said_before_a_later_final_line_not_after_it(clock, seen, reporter) -> None:
    """A write retried (its line held back) and then given up: what the limit held of the
    retries is said before the "lost" line, and at flush "will retry" comes before "lost", so
    that no "will retry" follows the line that gave its write up and the last line is final."""

    def retry(name: str) -> None:
        reporter.report(
            "retry", logging.WARNING, "%s: will retry", name, occurrences=1, outcome="delayed"
        )

    def lost(name: str) -> None:
        reporter.report("give-up", logging.WARNING, "%s: lost", name, occurrences=1, outcome="lost")

    retry("a")
    retry("b")  # held back
    lost("b")
    retry("c")  # held back, then written: no final line of its own
    lost("a")  # held back
    reporter.summarise()
    said = [re.split(r" \[|; ", message)[0] for message in seen.messages()]
    assert said == ["a: will retry", "b: will retry", "b: lost", "c: will retry", "a: lost"]


def test_final_lines_of_many_kinds_say_held_retries_early_once_a_minute(
    clock, seen, reporter
) -> None:
    """A storm: a write's retries held back, and final lines of six kinds (each kind's first
    in the minute) one after another. What was held of the retries is said early, before the
    first final line, not before each: the retries' kind keeps to about one line a minute
    (two at most), not one more per kind of final line."""
    for second in range(60):
        reporter.report("retry", logging.WARNING, "will retry", occurrences=1, outcome="delayed")
        if second % 10 == 5:
            reporter.report(
                f"final-{second}", logging.WARNING, "lost", occurrences=1, outcome="lost"
            )
        clock.step(1)
    said = [message.split(" [")[0].split(";")[0] for message in seen.messages()]
    assert said[:3] == ["will retry", "will retry", "lost"]
    assert said.count("will retry") == 2, seen.messages()
    reporter.summarise()
    assert seen.messages()[-1].endswith(
        ": 54 occurrence(s) delayed since then (60 occurrence(s) in all)]"
    )  # none lost on the way


def test_a_summary_of_retries_that_add_no_occurrence_says_what_its_total_counts(
    clock, seen, reporter
) -> None:
    """One write failing again and again: its later reports add no occurrence, and their
    summary gives the total with its outcome ("1 occurrence(s) delayed in all"), not a bare
    "1 occurrence(s) in all" that says not whether they were lost, dropped or delayed."""
    for attempt, occurrences in ((1, 1), (2, 0), (3, 0)):
        reporter.report(
            "retry",
            logging.WARNING,
            "Unable to write event e (attempt %d of 12)",
            attempt,
            occurrences=occurrences,
            outcome="delayed",
        )
    reporter.summarise()
    assert seen.messages()[1] == (
        "Unable to write event e (attempt 3 of 12) [2 report(s) like this since the last one"
        " (1 occurrence(s) delayed in all)]"
    )


def test_a_report_that_adds_no_occurrence_says_no_count(clock, seen, reporter) -> None:
    """A write that fails again after its occurrences were reported as delayed adds none: its
    line goes out without a "0 occurrence(s) delayed" that reads as if nothing were at stake."""
    for attempt, occurrences in ((1, 3), (2, 0)):
        reporter.report(
            "retry",
            logging.WARNING,
            "Unable to write event e (attempt %d of 12)",
            attempt,
            occurrences=occurrences,
            outcome="delayed",
        )
        clock.step(120)
    assert seen.messages() == [
        "Unable to write event e (attempt 1 of 12); 3 occurrence(s) delayed",
        "Unable to write event e (attempt 2 of 12)",
    ]


def test_the_next_report_after_the_interval_carries_what_was_held_back(
    clock, seen, reporter
) -> None:
    """Past the interval (a minute) a report goes out with the count of the ones held back."""
    reporter.report("drop", logging.ERROR, "dropped %d", 1, occurrences=5, outcome="dropped")
    reporter.report("drop", logging.ERROR, "dropped %d", 2, occurrences=7, outcome="dropped")
    reporter.report("drop", logging.ERROR, "dropped %d", 3, occurrences=11, outcome="dropped")
    clock.step(61)
    reporter.report("drop", logging.ERROR, "dropped %d", 4, occurrences=13, outcome="dropped")
    first, second = seen.messages()
    assert first == "dropped 1; 5 occurrence(s) dropped"
    # 7 + 11 held back, 13 now: 31 since the last line, 36 in all
    assert second == (
        "dropped 4; 31 occurrence(s) dropped since the last report (36 occurrence(s) in all) "
        "[2 more report(s) like this were held back]"
    )


def test_a_summary_starts_the_interval_again(clock, seen, reporter) -> None:
    """What summarise() said counts as a line of its kind: a report of that kind right
    after it is held back for the interval, not written again at once."""
    for _ in range(2):
        reporter.report("drop", logging.ERROR, "dropped", occurrences=1, outcome="dropped")
    clock.step(50)
    reporter.summarise()
    clock.step(30)  # 80 s after the first line, 30 s after the summary
    reporter.report("drop", logging.ERROR, "dropped", occurrences=1, outcome="dropped")
    assert len(seen.messages()) == 2


def test_a_report_without_a_count_says_how_many_like_it_were_held_back(seen, reporter) -> None:
    """Reports that stand for no occurrences (a failing watcher) count lines."""
    for _ in range(4):
        reporter.report("watcher", logging.ERROR, "Event watcher failed")
    reporter.summarise()
    assert seen.messages() == [
        "Event watcher failed",
        "Event watcher failed [3 report(s) like this since the last one]",
    ]


def test_the_rate_limit_is_measured_on_the_monotonic_clock(clock, seen, reporter) -> None:
    """A wall clock stepped back (or forward) neither frees nor holds the next report."""
    reporter.report("k", logging.WARNING, "one")
    clock.step_wall(3600)
    reporter.report("k", logging.WARNING, "two")
    assert seen.messages() == ["one"]


def test_settle_writes_deferred_reports_before_returning(seen, reporter) -> None:
    """A report kept by defer() (written later, outside a lock) is out once settle returns."""
    reporter.defer("x", logging.WARNING, "deferred %s", "report", occurrences=2, outcome="lost")
    assert seen.messages() == []
    assert reporter.settle(1.0)
    assert seen.messages() == ["deferred report; 2 occurrence(s) lost"]


def test_reports_deferred_in_a_burst_all_count(seen, reporter) -> None:
    """A batch that finds the pending writes full defers one report per event it drops (under
    the runtime's lock); past 1,024 kept, the oldest were forgotten, occurrences and all:
    32,000 dropped were reported as 9,216 "in all"."""
    for n in range(5_000):
        reporter.defer("full", logging.ERROR, "dropped %d", n, occurrences=1, outcome="dropped")
    reporter.emit_deferred()
    reporter.summarise()
    first, summary = seen.messages()
    assert first == "dropped 0; 1 occurrence(s) dropped", first
    assert summary.endswith(
        "[4999 report(s) like this since the last one: 4999 occurrence(s) dropped since then "
        "(5000 occurrence(s) in all)]"
    ), summary


def test_settle_waits_for_a_report_another_thread_is_writing() -> None:
    """A report a writer thread took from the deferred ones but has not finished writing (its
    handler is slow) is not out yet: settle() says so when its time runs out."""
    entered, release = threading.Event(), threading.Event()

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            entered.set()
            release.wait(10)

    slow = Slow()
    target = private_logger("slow")
    target.addHandler(slow)
    reporter = _diagnostics.RateLimitedReporter(log=target)
    writer = threading.Thread(target=reporter.emit_deferred)
    try:
        reporter.defer("slow", logging.WARNING, "slow report")
        writer.start()
        assert entered.wait(10)
        assert not reporter.settle(0.05)
    finally:
        release.set()
        writer.join(10)
        target.removeHandler(slow)
    assert reporter.settle(1.0)


# --- reaching a human ---------------------------------------------------------------------


def test_a_disabled_library_logger_still_reaches_standard_error(capsys) -> None:
    """dictConfig's default disables the library's logger: its warnings go to stderr."""
    target = private_logger("disabled")
    seen = ListHandler()
    target.addHandler(seen)
    target.disabled = True
    _diagnostics.log_safely(target, logging.WARNING, "lost %d", 3)
    _diagnostics.log_safely(target, logging.INFO, "an info line stays quiet")
    assert seen.records == []
    assert capsys.readouterr().err == "k8s_logging_events.tests.disabled: lost 3\n"


def test_the_level_of_the_library_logger_still_quietens_it(capsys) -> None:
    """The way to silence the reports: the logger's level (disabled or not)."""
    target = private_logger("quiet")
    target.setLevel(logging.ERROR)
    target.disabled = True
    _diagnostics.log_safely(target, logging.WARNING, "not shown")
    assert capsys.readouterr().err == ""


def test_only_our_own_handlers_mean_standard_error(capsys) -> None:
    """A handler that ignores the library's reports (the event handler) shows nothing."""
    target = private_logger("own")
    own = OwnHandler()
    target.addHandler(own)
    _diagnostics.log_safely(target, logging.WARNING, "seen only on stderr")
    assert capsys.readouterr().err == "k8s_logging_events.tests.own: seen only on stderr\n"


def test_a_handler_whose_level_hides_the_report_does_not_count_as_showing_it(capsys) -> None:
    """An ERROR handler would not show a WARNING: standard error does."""
    target = private_logger("levels")
    strict = ListHandler(logging.ERROR)
    target.addHandler(strict)
    _diagnostics.log_safely(target, logging.WARNING, "a warning")
    _diagnostics.log_safely(target, logging.ERROR, "an error")
    assert strict.messages() == ["an error"]
    assert capsys.readouterr().err == "k8s_logging_events.tests.levels: a warning\n"


def test_a_handler_whose_filter_drops_the_report_does_not_count_as_showing_it(capsys) -> None:
    """A console handler that keeps the application's records alone (a ``logging.Filter``
    on its logger names, a common set-up) shows no report of the library's: every one was
    lost, none reached standard error. The handler's filter decides, as its level does."""
    target = private_logger("filtered")
    app_only = ListHandler()
    app_only.addFilter(logging.Filter("shop"))
    target.addHandler(app_only)
    _diagnostics.log_safely(target, logging.WARNING, "dropped by the filter")
    assert app_only.records == []
    assert capsys.readouterr().err == "k8s_logging_events.tests.filtered: dropped by the filter\n"


@pytest.mark.parametrize("kind", ["function", "Filter subclass"])
def test_a_console_kept_to_the_apps_loggers_by_any_filter_does_not_count_as_showing_it(
    capsys, kind: str
) -> None:
    """A console kept to the application's loggers by a function (``addFilter(lambda r:
    r.name.startswith("shop"))``) or a ``logging.Filter`` subclass used to count as showing
    every report, which it dropped: none was seen anywhere. What the handler's filters
    answered, asked once as the handler asks them, decides."""

    def shop_only(record: logging.LogRecord) -> bool:
        return record.name.startswith("shop")

    class ShopOnly(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return shop_only(record)

    target = private_logger(f"kept-{kind}")
    console = ListHandler()
    console.addFilter(shop_only if kind == "function" else ShopOnly())
    target.addHandler(console)
    _diagnostics.log_safely(target, logging.WARNING, "dropped by the %s", kind)
    assert console.records == []
    assert capsys.readouterr().err == f"{target.name}: dropped by the {kind}\n"


def test_a_frozen_interpreters_logging_still_counts_as_logging_own(monkeypatch, capsys) -> None:
    """In a frozen application (PyInstaller) ``logging.__file__`` names the unpacked bundle
    while logging's compiled code names the path it was built from: its own dispatch was
    taken for a patched one, and a console whose function filter drops the report was
    foretold to show it, which nothing did."""
    monkeypatch.setattr(logging, "__file__", "/tmp/_MEIabc123/logging/__init__.pyc")
    target = private_logger("frozen")
    console = ListHandler()
    console.addFilter(lambda record: record.name.startswith("shop"))
    target.addHandler(console)
    _diagnostics.log_safely(target, logging.WARNING, "dropped by the function")
    assert console.records == []
    assert capsys.readouterr().err == f"{target.name}: dropped by the function\n"


@pytest.mark.parametrize("named", [False, True], ids=["own name", "the wrapped one's name"])
def test_a_patched_call_handlers_still_sees_every_report(monkeypatch, capsys, named) -> None:
    """Sentry's logging integration (on by default) patches ``Logger.callHandlers`` to see
    every record: the library's reports pass through it as any record does, and what its
    handlers show is still told from what they would show. New Relic's agent wraps it with
    a wrapper that takes the wrapped function's name and module (``functools.wraps`` does
    too): that wrapper saw none of the reports, taken for logging's own dispatch."""
    seen: list[str] = []
    original = logging.Logger.callHandlers

    def patched(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.append(record.getMessage())
        original(self, record)

    if named:
        patched = functools.wraps(original)(patched)
    monkeypatch.setattr(logging.Logger, "callHandlers", patched)
    target = private_logger("patched")
    console = ListHandler()
    target.addHandler(console)
    _diagnostics.log_safely(target, logging.WARNING, "shown by the console")
    target.removeHandler(console)
    target.addHandler(OwnHandler())
    _diagnostics.log_safely(target, logging.WARNING, "shown by no one")
    assert seen == ["shown by the console", "shown by no one"]
    assert console.messages() == ["shown by the console"]
    assert capsys.readouterr().err == f"{target.name}: shown by no one\n"


def test_a_filter_with_state_is_asked_once_and_the_report_is_not_printed_twice(capsys) -> None:
    """A filter of the application's that keeps state (the cookbook's one that lets each
    message through once) would answer differently when asked again: it is asked only by
    the handler, which showed the report, so standard error does not print it a second time."""

    class OncePerMessage(logging.Filter):
        def __init__(self) -> None:
            super().__init__()
            self.seen: set[str] = set()

        def filter(self, record: logging.LogRecord) -> bool:
            message = record.getMessage()
            fresh = message not in self.seen
            self.seen.add(message)
            return fresh

    target = private_logger("once")
    console = ListHandler()
    console.addFilter(OncePerMessage())
    target.addHandler(console)
    _diagnostics.log_safely(target, logging.WARNING, "shown once")
    assert console.messages() == ["shown once"]
    assert capsys.readouterr().err == ""


def test_a_queue_handler_that_feeds_only_our_handler_does_not_count_as_showing_it(
    capsys,
) -> None:
    """docs/configuration.md's set-up on 3.12+: dictConfig's ``QueueHandler`` with
    ``handlers: [events]``. Its listener hands the reports to the event handler alone, which
    ignores them: every report was lost. What the listener's handlers show decides, as for
    the logger's own handlers; a listener with a handler of the user's shows it, while it
    runs. Once stopped (``atexit.register(listener.stop)``, which runs before
    ``logging.shutdown()``), it shows nothing: the exit's report went into a queue no one
    read."""
    _reports_behind_listeners(capsys, "queued", named_by_the_handler=True)


def test_a_queue_listener_of_the_users_making_decides_as_dictconfigs_does(capsys) -> None:
    """docs/configuration.md's set-up by hand (3.11 has no dictConfig for it): a
    ``QueueHandler`` on the root, a ``QueueListener`` feeding the console and the event
    handler, ``atexit.register(listener.stop)``. No handler names that listener, so the
    ``QueueHandler`` counted as showing every report: the exit's summary of unwritten events,
    and the reports about the last records, went into a queue no one read any more, and
    nothing was shown. The running listener that reads the queue is found by its thread;
    with none, a queue of this process is read by no one."""
    _reports_behind_listeners(capsys, "by-hand", named_by_the_handler=False)


def _reports_behind_listeners(capsys, name: str, *, named_by_the_handler: bool) -> None:
    """A report through a ``QueueHandler`` is shown to stderr when its listener feeds only our
    handler, by the user's handler when the listener has one, and to stderr once stopped;
    the listener named on the handler (as dictConfig does) or found reading the queue."""
    import logging.handlers
    import queue

    target = private_logger(name)
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    queued = logging.handlers.QueueHandler(records)
    target.addHandler(queued)
    user = ListHandler()
    own_only = logging.handlers.QueueListener(records, OwnHandler())
    with_user = logging.handlers.QueueListener(records, OwnHandler(), user)
    try:
        for listener, text in ((own_only, "behind a queue"), (with_user, "shown by the user's")):
            if named_by_the_handler:
                queued.listener = listener  # type: ignore[attr-defined]  # as dictConfig sets it
            listener.start()
            try:
                _diagnostics.log_safely(target, logging.WARNING, text)
            finally:
                listener.stop()
        assert capsys.readouterr().err == f"k8s_logging_events.tests.{name}: behind a queue\n"
        assert user.messages() == ["shown by the user's"]
        _diagnostics.log_safely(target, logging.WARNING, "after the listener stopped")
        err = capsys.readouterr().err
        assert err == f"k8s_logging_events.tests.{name}: after the listener stopped\n"
    finally:
        target.removeHandler(queued)


def test_a_queue_read_in_another_process_counts_as_showing_reports(capsys) -> None:
    """The multiprocessing recipe: a worker's ``QueueHandler`` on a queue its parent's
    listener reads. No listener of the worker reads it, and the reports still reach a
    human: they are not written to the worker's standard error as well."""
    import logging.handlers

    class CrossProcessQueue(list[logging.LogRecord]):  # multiprocessing.Queue's one call
        def put_nowait(self, item: logging.LogRecord) -> None:
            self.append(item)

    target = private_logger("worker")
    sent = CrossProcessQueue()
    queued = logging.handlers.QueueHandler(sent)  # type: ignore[arg-type]
    target.addHandler(queued)
    try:
        _diagnostics.log_safely(target, logging.WARNING, "to the parent")
    finally:
        target.removeHandler(queued)
    assert [record.getMessage() for record in sent] == ["to the parent"]
    assert capsys.readouterr().err == ""


def test_a_log_file_closed_before_the_exits_report_does_not_count_as_showing_it(
    capsys, tmp_path
) -> None:
    """dictConfig with the event handler and a ``FileHandler`` of mode ``"w"`` (a log file
    written afresh each run). ``logging.shutdown()`` closes the newer handler first, the
    file, and a closed ``FileHandler`` of mode ``"w"`` drops what it is given: the reports
    made while the event handler closed (writes given up, the exit's summary) were in the
    file no more, nor anywhere else. They go to standard error; a file of mode ``"a"``,
    which ``FileHandler`` opens again, still shows them."""
    target = private_logger("file")
    for mode, shown in (("w", False), ("a", True)):
        path = tmp_path / f"app-{mode}.log"
        log_file = logging.FileHandler(path, mode=mode)
        target.addHandler(log_file)
        try:
            log_file.close()  # as logging.shutdown() does, before it closes ours
            _diagnostics.log_safely(target, logging.WARNING, f"after the close ({mode})")
        finally:
            target.removeHandler(log_file)
            log_file.close()
        err = capsys.readouterr().err
        assert ("after the close" in path.read_text()) is shown
        assert ("after the close" in err) is not shown, err


def test_a_filter_of_the_application_that_raises_fails_no_report_and_no_caller(capsys) -> None:
    """A filter on the library's logger that raises (the application's bug) went up through
    every report: into the log call whose input was bad, out of ``drain()``, and it ended a
    writer thread. The report goes to standard error instead, and its caller carries on."""

    def broken(record: logging.LogRecord) -> bool:
        raise RuntimeError("a broken filter")

    target = private_logger("broken-filter")
    seen = ListHandler()
    target.addHandler(seen)
    target.addFilter(broken)
    try:
        _diagnostics.log_safely(target, logging.WARNING, "reported %d", 1)
        target.removeHandler(seen)  # no handler: the filter is still asked
        _diagnostics.log_safely(target, logging.WARNING, "reported %d", 2)
    finally:
        target.removeFilter(broken)
    assert seen.records == []
    assert capsys.readouterr().err.splitlines() == [
        "k8s_logging_events.tests.broken-filter: reported 1",
        "k8s_logging_events.tests.broken-filter: reported 2",
    ]


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_report_naming_an_error_that_cannot_be_shown_is_still_shown(capsys) -> None:
    """A report quoting the application's exception (``Unable to format the message: %r``)
    whose ``str()`` and ``repr()`` raise was a ``--- Logging error ---`` traceback in every
    handler that showed it. The error is named by its type, the rest of the report kept."""
    target = private_logger("unprintable")
    seen = ListHandler()
    target.addHandler(seen)
    try:
        _diagnostics.log_safely(target, logging.WARNING, "failed %d: %r", 3, _UnprintableError())
    finally:
        target.removeHandler(seen)
    assert seen.messages() == ["failed 3: <a _UnprintableError that cannot be shown>"]
    assert "Logging error" not in capsys.readouterr().err


def test_standard_error_is_rate_limited_and_says_what_it_held_back(capsys) -> None:
    """A burst, then one line every few seconds; the next line says how many it held back."""
    clock = FakeClock()
    fallback = _diagnostics.StandardError(burst=2, per_second=0.5, monotonic=clock.monotonic)
    record = logging.LogRecord("k8s_logging_events", logging.WARNING, "", 0, "m%d", (1,), None)
    written = [fallback.write(record) for _ in range(5)]
    assert written == [True, True, False, False, False]
    clock.step(2)
    assert fallback.write(record)
    clock.step(2)
    assert fallback.write(record)  # those three were said: the next line is plain
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "k8s_logging_events: m1",
        "k8s_logging_events: m1",
        "k8s_logging_events: m1 [3 earlier report(s) held back from standard error]",
        "k8s_logging_events: m1",
    ]


def test_held_retries_said_early_are_not_lost_to_standard_errors_limit(monkeypatch, capsys) -> None:
    """No handler shows the reports: standard error does. Bad call sites spent its burst, and
    retries held back are said early, before a write's "lost" line; that line keeps to the
    once-a-minute limit alone, as every report's own line does, so that the retries' delayed
    occurrences are said, not held back (and forgotten: their report already went)."""
    clock = FakeClock()
    fallback = _diagnostics.StandardError(burst=1, per_second=0.001, monotonic=clock.monotonic)
    monkeypatch.setattr(_diagnostics, "standard_error", fallback)
    reporter = _diagnostics.RateLimitedReporter(clock=clock, log=private_logger("early"))
    _diagnostics.log_safely(private_logger("site"), logging.WARNING, "a bad call site")
    for name in ("a", "b", "c"):
        reporter.report("retry", logging.WARNING, name, occurrences=1, outcome="delayed")
    reporter.report("give-up", logging.WARNING, "a: lost", occurrences=1, outcome="lost")
    assert capsys.readouterr().err.splitlines()[1:] == [
        "k8s_logging_events.tests.early: a; 1 occurrence(s) delayed",
        "k8s_logging_events.tests.early: c [2 report(s) like this since the last one: "
        "2 occurrence(s) delayed since then (3 occurrence(s) in all)]",
        "k8s_logging_events.tests.early: a: lost; 1 occurrence(s) lost",
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_does_not_repeat_what_its_parent_held_back_from_standard_error() -> None:
    """The lines standard error's limit held back in the parent are the parent's to
    summarise: a forked child starts with none (as its reporter's counts start at zero)."""
    clock = FakeClock()
    fallback = _diagnostics.StandardError(burst=1, per_second=0.5, monotonic=clock.monotonic)
    record = logging.LogRecord("k8s_logging_events", logging.WARNING, "", 0, "m", (), None)
    with contextlib.redirect_stderr(io.StringIO()):
        fallback.write(record)
        assert not fallback.write(record)
    assert fallback.held_back == 1
    assert answer_from_fork(lambda: {"held_back": fallback.held_back}) == {"held_back": 0}
    assert fallback.held_back == 1


class _BrokenStream:
    """A standard error that cannot be written to (a closed pipe)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError("closed")

    def flush(self) -> None:
        raise BrokenPipeError("closed")


@pytest.mark.parametrize("stream", [None, _BrokenStream()], ids=["none", "broken"])
def test_a_standard_error_that_cannot_be_written_fails_no_caller(monkeypatch, stream) -> None:
    """pythonw, a daemon that closed its standard error, a closed pipe: the fallback says
    False (not written) and raises nothing into the report's caller, on any thread."""
    monkeypatch.setattr("sys.stderr", stream)
    clock = FakeClock()
    fallback = _diagnostics.StandardError(burst=2, per_second=0.5, monotonic=clock.monotonic)
    record = logging.LogRecord("k8s_logging_events", logging.WARNING, "", 0, "m", (), None)
    assert fallback.write(record) is False
    monkeypatch.setattr(_diagnostics, "standard_error", fallback)
    _diagnostics.log_safely(private_logger("unwritable"), logging.ERROR, "nowhere to go")


# --- in a fresh interpreter, as a user sees it -------------------------------------------------


def _quick_start() -> str:
    """The README's quick start, as a user copies it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's quick start has a python block"
    return match.group(1)


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with no cluster anywhere: an empty HOME, no KUBECONFIG, no pod."""
    home = tmp_path / "home"
    home.mkdir()
    return run_python(code, cwd=tmp_path, HOME=str(home))


@pytest.mark.parametrize("console", [True, False], ids=["as-written", "no-console-handler"])
def test_the_readme_quick_start_without_a_cluster_says_why_nothing_was_written(
    tmp_path, console: bool
) -> None:
    """The quick start, as written (a console handler from ``basicConfig()``) or without
    that line (the event handler alone, where the library writes to standard error
    itself): the missing configuration is said once on standard error, with the sources
    tried and what to set, and the record itself reaches the console where there is one."""
    code = _quick_start()
    assert "logging.basicConfig()" in code
    if not console:
        code = "\n".join(line for line in code.splitlines() if "basicConfig" not in line)
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    found = [line for line in lines if "No Kubernetes configuration found" in line]
    assert len(found) == 1, result.stderr
    line = found[0]
    prefix = "WARNING:k8s_logging_events:" if console else "k8s_logging_events: "
    assert line.startswith(prefix), line
    assert ("WARNING:billing:Back-off pulling image shop:2.1" in lines) is console, lines
    for needed in ("in-cluster", "KUBECONFIG", "kubeconfig=", "sink=URL", "~/.kube/config"):
        assert needed in line, (needed, line)
    assert "discarded" in line


def test_a_dictconfig_with_the_default_disable_existing_loggers_still_shows_bad_input(
    tmp_path,
) -> None:
    """disable_existing_loggers: true (the default) disables the library's logger; a bad
    input (a string as the involved object, a reason the server would refuse) is still
    reported on standard error, once per call site."""
    code = textwrap.dedent(
        """
        import logging, logging.config
        logging.config.dictConfig({
            "version": 1,
            "handlers": {"events": {
                "class": "k8s_logging_events.handler.KubernetesEventHandler", "sink": None,
            }},
            "root": {"handlers": ["events"], "level": "INFO"},
        })
        assert logging.getLogger("k8s_logging_events").disabled
        log = logging.getLogger("app")
        for _ in range(3):
            log.warning("about a name", extra={"involved": "web-0"})
        pod = {"kind": "Pod", "name": "web-0", "namespace": "shop"}
        log.warning("odd reason", extra={"involved": pod, "reason": "not a reason"})
        """
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    refused = [line for line in lines if "Unable to refer to the involved object" in line]
    assert len(refused) == 1, result.stderr
    assert "str 'web-0'" in refused[0]
    assert any("The reason 'not a reason'" in line for line in lines), result.stderr
    assert "No Kubernetes configuration" not in result.stderr  # sink: None says nothing


_PLACEMENTS = {
    "root": "logging.getLogger().addHandler(KubernetesEventHandler(sink=None))\n"
    "log = logging.getLogger('app')\n",
    # nothing on the root (no basicConfig): no handler anywhere shows the reports
    "named-logger": "log = logging.getLogger('app')\n"
    "log.propagate = False\n"
    "log.addHandler(KubernetesEventHandler(sink=None))\n",
}


@pytest.mark.parametrize("placement", list(_PLACEMENTS))
def test_what_standard_error_held_back_is_said_at_exit(tmp_path, placement) -> None:
    """More reports than standard error takes at once (a program with many bad call
    sites), the event handler on the root or on the application's own logger alone: the
    reports go to standard error through its rate limit (not one unlimited line each through
    ``logging.lastResort``), and the lines it held back are not lost silently when no later
    line comes; the exit (the handler's flush and close) says how many there were."""
    sites = _diagnostics.STDERR_BURST + 7
    calls = "\n".join(f"log.warning('m', extra={{'involved': 'site-{n}'}})" for n in range(sites))
    code = (
        "import logging\n"
        "from k8s_logging_events import KubernetesEventHandler\n"
        f"{_PLACEMENTS[placement]}"
        f"{calls}\n"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    shown = [line for line in lines if "Unable to refer to the involved object" in line]
    assert len(shown) == _diagnostics.STDERR_BURST, result.stderr
    assert all(line.startswith("k8s_logging_events: ") for line in shown), result.stderr
    held = [line for line in lines if "held back from standard error" in line]
    assert len(held) == 1, result.stderr
    assert f" {sites - _diagnostics.STDERR_BURST} " in held[0], held[0]
    assert "k8s_logging_events logger" in held[0], held[0]


def test_summaries_at_frequent_flushes_do_not_flood_standard_error(monkeypatch, capsys) -> None:
    """An application polling ``drain(0)`` (or flushing after each request) while every
    write fails: each flush summarised what the once-a-minute limit held back since the last
    one, a line per flush, all of them on standard error (and once its limit held those
    back, a line per flush saying so). Those summaries keep to its limit (the burst, then
    one every few seconds), and what it held back is counted."""
    clock = FakeClock()
    fallback = _diagnostics.StandardError(monotonic=clock.monotonic)
    monkeypatch.setattr(_diagnostics, "standard_error", fallback)
    target = private_logger("polled")  # no handler: standard error shows it
    reporter = _diagnostics.RateLimitedReporter(clock=clock, log=target)
    flushes = _diagnostics.STDERR_BURST * 5
    for _ in range(flushes):
        reporter.report("give-up", logging.WARNING, "Unable to write", occurrences=1)
        reporter.report("give-up", logging.WARNING, "Unable to write", occurrences=1)
        reporter.summarise()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == _diagnostics.STDERR_BURST + 1, lines  # the report, then the burst
    clock.step(1 / _diagnostics.STDERR_PER_SECOND)
    reporter.summarise()
    said = capsys.readouterr().err.splitlines()
    assert said == [
        f"k8s_logging_events: {flushes - _diagnostics.STDERR_BURST} more report(s) "
        "were held back from standard error (its rate limit); a handler on the "
        "k8s_logging_events logger shows every one"
    ], said


def test_the_count_of_lost_occurrences_held_back_is_said_at_exit_past_the_limit(
    tmp_path,
) -> None:
    """Standard error's burst spent on bad call sites, then a second failed write within
    the minute: the exit's summary of what the once-a-minute limit held back (the lost
    occurrences' count) is the last chance to say it, and is not held back by the limit
    that keeps the flushes' summaries from flooding."""
    code = (
        "import atexit, logging\n"
        "from k8s_logging_events import _diagnostics\n"
        "target = logging.getLogger('k8s_logging_events.tests.exit')\n"
        "target.propagate = False\n"
        "reporter = _diagnostics.RateLimitedReporter(log=target)\n"
        "atexit.register(reporter.summarise)\n"
        "for n in range(_diagnostics.STDERR_BURST):\n"
        "    _diagnostics.report(logging.WARNING, 'bad call site %d', n)\n"
        "for lost in (1, 2):\n"
        "    reporter.report('give-up', logging.WARNING, 'Unable to write', occurrences=lost)\n"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "k8s_logging_events.tests.exit: Unable to write [1 report(s) like this since the last "
        "one: 2 occurrence(s) affected since then (3 occurrence(s) in all)]"
    ), result.stderr


def test_the_exits_summary_of_lost_occurrences_is_not_held_back_after_many_bad_call_sites(
    tmp_path,
) -> None:
    """More bad call sites than standard error takes at once, then an event the server
    never takes: the exit's line saying what was not written, and why, came after the limit
    had spent its burst, and only "1 more report(s) were held back" was printed. The limit
    is for what may come in thousands (each bad call site says itself once); reports limited
    per kind (lost occurrences, the exit's summary) are never held back by it."""
    sites = _diagnostics.STDERR_BURST + 7
    calls = "\n".join(f"log.warning('m', extra={{'involved': 'site-{n}'}})" for n in range(sites))
    with socket.socket() as unused:  # bound, never listening: every connection is refused
        unused.bind(("127.0.0.1", 0))
        code = (
            "import logging\n"
            "from k8s_logging_events import KubernetesEventHandler\n"
            "logging.getLogger().addHandler(KubernetesEventHandler(\n"
            f"    sink='http://127.0.0.1:{unused.getsockname()[1]}', flush_timeout=0.5))\n"
            "log = logging.getLogger('app')\n"
            f"{calls}\n"
            "log.warning('lost', extra={'involved': {'kind': 'Node', 'name': 'n1'}})\n"
        )
        result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    lost = [line for line in lines if "Unable to write 1 event occurrence(s)" in line]
    assert len(lost) == 1, result.stderr
    assert lost[0].startswith("k8s_logging_events: "), lost[0]
    assert "flush_timeout" in lost[0], lost[0]


_FLUSH_FROM_A_SIGNAL_INSIDE_STATS = """
import json, logging, signal, sys
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import LocalApiServer

with LocalApiServer() as server:
    handler = KubernetesEventHandler(component="sig", sink=server.url, qps=0, flush_timeout=10)
    log = logging.getLogger("app")
    log.propagate = False
    log.addHandler(handler)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
    log.warning("one", extra={"involved": pod})
    handler.flush()  # written: a flush in the signal handler has nothing to wait for
    nested = []

    def on_signal(signum, frame):  # an application's SIGTERM handler, say
        handler.flush()
        nested.append(handler.stats()["created"])

    def profile(frame, event, arg):
        # the signal lands while the main thread reads the counters, under the runtime's lock
        if event == "call" and frame.f_code.co_name == "snapshot" and not fired:
            fired.append(True)
            signal.raise_signal(signal.SIGUSR1)

    fired = []
    signal.signal(signal.SIGUSR1, on_signal)
    sys.setprofile(profile)
    outer = handler.stats()
    sys.setprofile(None)
    print(json.dumps({"fired": fired, "nested": nested, "accepted": outer["accepted"]}))
    handler.close()
"""


def test_a_signal_handler_that_flushes_while_the_main_thread_reads_the_counters_returns(
    tmp_path,
) -> None:
    """A signal handler (an application's SIGTERM handler) that flushes, or reads stats(),
    while the main thread it interrupted reads the counters (stats(), under the runtime's
    lock) does not wait for that lock for ever: it is reentrant, as every lock on the
    caller's path is, and with everything written the flush has nothing to wait for."""
    result = run_python(_FLUSH_FROM_A_SIGNAL_INSIDE_STATS, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"fired": [True], "nested": [1], "accepted": 1}


_COLLECTING_SERVICE = """
import gc, signal, sys
import k8s_logging_events

signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))  # the graceful stop
heap = [[n] for n in range(300_000)]  # a service's objects, each in a cycle
for item in heap:
    item.append(item)
print("ready", flush=True)
while True:  # nearly all its time in the collector: the signal lands there
    gc.collect()
"""


def test_a_sigterm_that_lands_while_the_collector_runs_still_stops_the_program(
    tmp_path,
) -> None:
    """The library's garbage-collector callbacks run no Python code: a SIGTERM that arrives
    while the collector runs has its handler run by the first Python code after it, and what
    a gc callback raises is swallowed. The program's sys.exit() must reach the program, not
    be printed as "Exception ignored in" while the pod goes on until it is killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_COLLECTING_SERVICE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=str(tmp_path),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        _, err = child.communicate()
        raise AssertionError(f"SIGTERM did not stop the program: {err[-2000:]}") from None
    assert child.returncode == 3, err
    assert "Exception ignored" not in err, err


def test_a_report_queued_behind_its_listeners_stop_marker_is_shown_to_standard_error(
    capsys,
) -> None:
    """``atexit.register(listener.stop)`` with the event handler behind the listener: the
    stop marker is queued, and the listener's thread hands the event handler the records
    before it. A report the handler makes there (about those records) was queued after the
    marker, where no one reads it, and counted as shown: lost. It goes to standard error."""
    import logging.handlers
    import queue

    target = private_logger("stopping")
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    queued = logging.handlers.QueueHandler(records)
    target.addHandler(queued)

    class Reporting(OwnHandler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "last record":
                _diagnostics.log_safely(target, logging.WARNING, "about the last record")

    user = ListHandler()
    listener = logging.handlers.QueueListener(records, Reporting(), user)
    records.put(logging.makeLogRecord({"msg": "last record"}))
    listener.enqueue_sentinel()  # as stop() does, before the thread reaches the record
    listener.start()
    try:
        listener.stop()
    finally:
        target.removeHandler(queued)
    assert user.messages() == ["last record"]
    assert capsys.readouterr().err == "k8s_logging_events.tests.stopping: about the last record\n"


def test_the_exit_report_through_loguru_s_intercept_handler_is_not_lost(tmp_path) -> None:
    """docs/integrations.md's loguru-intercept recipe, against a server that never answers:
    loguru removes its sinks at exit (its atexit function) before the handler is closed, so
    the one report of what could not be written went through the InterceptHandler into a
    loguru with no sink left, and was seen nowhere. Where loguru has no sink, a handler of
    another kind than a stream (or queue) handler shows nothing: the report goes to
    standard error."""
    from k8s_logging_events.testing import LocalApiServer
    from tests._recipes import recipe

    with LocalApiServer() as server:
        server.inject("POST", action="hang", times=None)
        sink = f'sink="{server.url}"'
        code = recipe("loguru-intercept", server.url)
        assert sink + ")" in code
        child = run_python(code.replace(sink + ")", sink + ", flush_timeout=0.5)"), cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    reports = [line for line in child.stderr.splitlines() if "Unable to write 1 event" in line]
    assert len(reports) == 1, child.stderr


def test_a_null_handler_still_silences_reports_where_loguru_has_no_sink(
    capsys, monkeypatch
) -> None:
    """Where loguru has no sink (at exit) a handler of another kind shows no report, but a
    ``NullHandler`` on the library's logger is there to silence them, and still does."""
    # loguru as its atexit function leaves it (imported here, its stderr sink would hold
    # capsys's stream for the tests after this one)
    without_sinks = SimpleNamespace(logger=SimpleNamespace(_core=SimpleNamespace(handlers={})))
    monkeypatch.setitem(sys.modules, "loguru", without_sinks)
    target = private_logger("silenced")
    silencer = logging.NullHandler()
    target.addHandler(silencer)
    try:
        _diagnostics.log_safely(target, logging.WARNING, "not to be seen")
    finally:
        target.removeHandler(silencer)
    assert capsys.readouterr().err == ""


def test_a_tally_adds_many_at_once_and_counts_on_from_there() -> None:
    tally = _diagnostics.Tally()
    tally.add_many(3)
    tally.add_many(0)
    assert tally.value == 3
    assert tally.add() == 3
    assert tally.value == 4
