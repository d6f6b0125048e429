"""capture_events: the events a test's logging produced, and readable assertion failures."""

from __future__ import annotations

import asyncio
import itertools
import logging
import logging.config
import re
from pathlib import Path

import mypy.api
import pytest

from k8s_logging_events import models
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.sink import ApiStatusError
from k8s_logging_events.testing import _capture
from k8s_logging_events.testing._capture import CapturedEvents, capture_events

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "prod"}}
DB = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db-0", "namespace": "prod"}}

_names = itertools.count()


@pytest.fixture(name="log")
def _log() -> logging.Logger:
    """An application logger that propagates to the root, as most do."""
    return logging.getLogger(f"tests.capture.app{next(_names)}")


def test_events_logged_in_the_block_are_captured(log) -> None:
    """Type, reason, message, object and count of what was logged are there to assert."""
    with capture_events() as events:
        for _ in range(3):
            log.warning("Back-off pulling image", extra={"involved": POD, "reason": "BackOff"})
        log.info("Pulled image", extra={"involved": DB, "reason": "Pulled"})
    event = events.assert_has(reason="BackOff", type=models.WARNING, object_name="web-0", count=3)
    assert event.message == "Back-off pulling image"
    events.assert_has(reason="Pulled", type=models.NORMAL, involved=DB, count=1)
    assert len(events) == 2


def test_kind_name_and_namespace_are_accepted_as_wait_for_event_names_them(log) -> None:
    """``kind=``, ``name=`` and ``namespace=`` select as ``object_kind=``, ``object_name=`` and
    ``object_namespace=`` do, in every look, so a test written from ``wait_for_event``'s words
    works on the capture too; a criterion given under both of its names is a mistake."""
    with capture_events() as events:
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        log.warning("Back-off", extra={"involved": DB, "reason": "BackOff"})
    found = events.wait_for(kind="Pod", name="web-0", reason="BackOff", timeout=1)
    assert found.involved_object.name == "web-0"
    assert events.assert_has(name="db-0", namespace="prod").involved_object.name == "db-0"
    assert len(events.find(kind="Pod", namespace="prod")) == 2
    events.assert_none(kind="Node")
    events.assert_none(name="web-0", namespace="default")
    with pytest.raises(TypeError, match="object_name= or name=, not both"):
        events.find(object_name="web-0", name="web-0")


def test_involved_finds_the_event_about_the_object_as_it_was_logged(log) -> None:
    """``involved=`` is the object the test logged about, even where the handler filed it
    otherwise (a Pod manifest without a namespace, a kind spelled ``pod``, a Node given a
    namespace): the criterion is repaired as the handler repaired the object."""
    objects = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}},
        {"kind": "pod", "name": "web-1", "namespace": "prod"},
        {"apiVersion": "v1", "kind": "Node", "name": "node-1", "namespace": "prod"},
    ]
    with capture_events() as events:
        for index, involved in enumerate(objects):
            log.warning("Not ready", extra={"involved": involved, "reason": f"NotReady{index}"})
    for index, involved in enumerate(objects):
        assert events.assert_has(involved=involved).reason == f"NotReady{index}"
    events.assert_none(involved={"kind": "Pod", "name": "web-0", "namespace": "prod"})


def test_info_records_reach_the_handler_under_the_default_root_level(log) -> None:
    """The root's level is INFO during the block, and is restored afterwards."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    with capture_events() as events:
        log.info("Started", extra={"involved": POD, "reason": "Started"})
        assert root.level == logging.INFO
    assert root.level == logging.WARNING
    events.assert_has(reason="Started")


def test_a_logger_already_more_verbose_keeps_its_level(log, caplog) -> None:
    """The capture only lowers the level: a root at DEBUG stays at DEBUG, so that caplog and
    the application's handlers still see the DEBUG records the code under test logs."""
    caplog.set_level(logging.DEBUG)
    with capture_events() as events:
        log.debug("Reconciling web-0")
        log.info("Started", extra={"involved": POD, "reason": "Started"})
        assert logging.getLogger().level == logging.DEBUG
    assert [record.getMessage() for record in caplog.records] == ["Reconciling web-0", "Started"]
    events.assert_has(reason="Started")


def test_wait_for_in_a_coroutine_says_that_it_blocked_the_event_loop(log) -> None:
    """An async test's wait_for blocks the loop the code under test runs on, so that code
    never logs: the failure says so, rather than only that nothing was captured."""

    async def operator() -> None:
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})

    async def async_test(events: CapturedEvents) -> None:
        task = asyncio.create_task(operator())
        try:
            events.wait_for(reason="BackOff", timeout=0)
        finally:
            await task

    with capture_events() as events:
        with pytest.raises(AssertionError, match="this thread runs an asyncio event loop"):
            asyncio.run(async_test(events))
        with pytest.raises(AssertionError) as outside_a_loop:
            events.wait_for(reason="Pulled", timeout=0)
    assert "asyncio" not in str(outside_a_loop.value)


def test_a_failed_assertion_shows_what_was_captured(log) -> None:
    """The message names the criteria and prints the events as kubectl describe does."""
    with capture_events() as events:
        log.warning("Back-off pulling image", extra={"involved": POD, "reason": "BackOff"})
        with pytest.raises(AssertionError) as failure:
            events.assert_has(reason="Killing", count=2)
    text = str(failure.value)
    assert "No captured event with reason='Killing', count=2." in text
    assert "  Type     Reason   Age   From    Message" in text
    assert "  Warning  BackOff  0s    pytest  Back-off pulling image\n" in text
    assert "Pod prod/web-0 (count 1, Warning BackOff)" in text


def test_a_failed_assertion_names_the_involved_object_by_its_reference(log) -> None:
    """``involved=`` a client model (as the code under test has it, read from the API) is
    named in the failure as kubectl names objects, not by the model's repr, which is the
    whole object, a hundred lines or more before the table."""
    from kubernetes import client

    pod = client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=client.V1ObjectMeta(name="db-0", namespace="prod", uid="uid-db-0"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="postgres")]),
    )
    with capture_events() as events:
        log.warning("Back-off pulling image", extra={"involved": POD, "reason": "BackOff"})
        with pytest.raises(AssertionError) as failure:
            events.assert_has(involved=pod, reason="BackOff")
    first = str(failure.value).splitlines()[0]
    assert first == "No captured event with involved='Pod prod/db-0', reason='BackOff'."


def test_several_matches_are_an_error_too(log) -> None:
    """assert_has wants exactly one event; ``find`` returns them all."""
    with capture_events() as events:
        log.warning("a", extra={"involved": POD, "reason": "BackOff"})
        log.warning("b", extra={"involved": DB, "reason": "BackOff"})
        with pytest.raises(AssertionError, match="2 captured events with reason='BackOff'"):
            events.assert_has(reason="BackOff")
        assert sorted(event.involved_object.name for event in events.find(reason="BackOff")) == [
            "db-0",
            "web-0",
        ]


def test_assert_none_fails_with_the_table(log) -> None:
    """assert_none passes when nothing matches and lists the events when something does."""
    with capture_events() as events:
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        events.assert_none(type=models.NORMAL)
        with pytest.raises(AssertionError, match="expected none"):
            events.assert_none(message_contains="Back")


def test_the_handler_is_closed_and_removed_after_the_block(log) -> None:
    """Nothing stays attached or running; the events stay readable."""
    with capture_events() as events:
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
    assert not any(isinstance(h, KubernetesEventHandler) for h in logging.getLogger().handlers)
    assert events.handler.closed
    log.warning("after the block", extra={"involved": POD, "reason": "Later"})
    events.assert_none(reason="Later")
    events.assert_has(reason="BackOff")


def test_a_named_logger_and_handler_options(log) -> None:
    """The handler can go on one logger, with any handler option."""
    with capture_events(log.name, max_message_bytes=32, default_reason="Logged") as events:
        log.warning("x" * 100, extra={"involved": POD})
        logging.getLogger("tests.capture.elsewhere").warning("no", extra={"involved": DB})
    event = events.assert_has(reason="Logged")
    assert len(event.message.encode()) == 32
    events.assert_none(object_name="db-0")


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"clock": 5}, "takes a FakeClock as clock, not 5"),
        ({"sink": "http://127.0.0.1:1"}, "it takes no sink or sleep"),
        ({"sleep": lambda seconds: None}, "it takes no sink or sleep"),
    ],
)
def test_a_wrong_option_is_refused_naming_it(log, given, said) -> None:
    """A clock that is none, or a sink or sleeper of one's own, is refused before anything
    is attached, with the option's name (not an error from inside the handler's making)."""
    handlers = list(log.handlers)
    with pytest.raises(TypeError, match=said), capture_events(log, **given):
        pass
    assert log.handlers == handlers


def test_spam_is_counted_exactly_without_waiting(log) -> None:
    """Past the spam filter's burst, held-back occurrences are still counted (fake clock)."""
    with capture_events() as events:
        for _ in range(100):
            log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        events.assert_has(reason="BackOff", count=100)


def test_the_clock_moves_only_when_the_test_steps_it(log) -> None:
    """A count the spam filter holds back waits for the test's ``clock.step()`` or a look:
    the handler's threads never move the fake clock on to the next token (300 s), so the
    ages and spans in the table are the test's own."""
    with capture_events(correlator={"burst_size": 2}) as events:
        for written in (1, 2):  # the burst: a create, then a patch
            log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
            assert events.sink.wait_for_calls(written, timeout=10)
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})  # held back
        assert not events.sink.wait_for_calls(3, timeout=0.5), "written without a token"
        assert (events.clock.monotonic(), events.clock.sleeps) == (0.0, [])
        events.assert_has(reason="BackOff", count=3)
        assert "0s (x3 over 0s)" in events.table()
        assert events.clock.monotonic() == 0.0


def test_events_are_in_the_tables_order_a_series_by_its_first_occurrence(log) -> None:
    """``events`` lists what ``table()`` shows, in its order (kubectl's, by lastTimestamp):
    an events.k8s.io/v1 series keeps its first occurrence's, so a series repeated after a
    later event still comes first, and the report's objects line up with its rows."""
    with capture_events(api="events.k8s.io/v1") as events:
        for pod, message in ((POD, "first"), (DB, "second"), (POD, "third")):
            log.warning(message, extra={"involved": pod, "reason": "BackOff"})
            events.flush()
            events.clock.step(60)
        assert [event.involved_object.name for event in events.events] == ["web-0", "db-0"]
        rows = [line.split()[-1] for line in events.table().splitlines()[3:]]
        assert rows == ["first", "second"]


def test_the_table_measures_ages_from_the_fake_clock(log) -> None:
    """Moving the clock ages the events in the table and in failure messages."""
    with capture_events() as events:
        log.info("Pulled", extra={"involved": POD, "reason": "Pulled"})
        events.flush()
        events.clock.step(150)
        assert "2m30s" in events.table()
    assert isinstance(events, CapturedEvents)
    assert repr(events) == "<CapturedEvents: 1 event(s)>"


@pytest.mark.parametrize("api", ["events.k8s.io/v1", "auto"])
def test_events_k8s_io_v1_repeats_form_one_series_without_aggregation_or_spam_filter(
    log, api
) -> None:
    """Code that writes events.k8s.io/v1 (``auto`` chooses it on every cluster since
    Kubernetes 1.19) sees its repeats as production writes them: one Event per object and
    reason, keeping its first note, counted by its series; never core/v1's "(combined from
    similar events)" rows, nor its spam filter, which holds back past 25 at once."""
    with capture_events(api=api) as events:
        for lag in range(30):
            log.warning("Readiness probe failed: lag %ds", lag, extra={"involved": POD})
    event = events.assert_has(object_name="web-0", count=30)
    assert event.message == "Readiness probe failed: lag 0s"
    assert event.series is not None
    assert event.series.count == 30
    assert "(count 30, Warning" in events.report()
    events.assert_none(message_contains="combined from similar events")


@pytest.mark.k8s_events(api="events.k8s.io/v1")
def test_the_k8s_events_marker_passes_handler_options_to_the_fixture(k8s_events) -> None:
    """``@pytest.mark.k8s_events(api=...)``: the fixture captures as that API writes."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop"}}
    log = logging.getLogger("tests.capture.fixture")
    for lag in range(12):
        log.warning("Probe failed: lag %ds", lag, extra={"involved": pod, "reason": "Unhealthy"})
    event = k8s_events.wait_for(reason="Unhealthy", min_count=12, timeout=5)
    assert event.series is not None
    assert event.series.count == 12
    assert len(k8s_events) == 1


def test_the_k8s_events_fixture_captures_what_the_test_logged(k8s_events) -> None:
    """The pytest plugin's fixture sees a record with `involved`, counted."""
    import logging

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop"}}
    log = logging.getLogger("tests.capture.fixture")
    for _ in range(3):
        log.warning("Back-off pulling image", extra={"involved": pod, "reason": "BackOff"})
    event = k8s_events.assert_has(reason="BackOff", object_name="web-0", count=3)
    assert event.type == "Warning"


def test_the_library_reports_reach_caplog_after_the_code_under_test_runs_dictconfig(
    caplog,
) -> None:
    """The code under test configures logging (dictConfig's default disables every existing
    logger, the library's own too): the capture keeps its handler, and the library's reports
    of bad input still reach caplog, nor is its logger named among those disabled."""
    with capture_events() as events:
        logging.config.dictConfig({"version": 1, "loggers": {"shop": {"level": "INFO"}}})
        log = logging.getLogger(f"tests.capture.app{next(_names)}")  # the application's, new
        log.warning("bad", extra={"involved": 42})
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
    assert "Unable to refer to the involved object" in caplog.text
    events.assert_has(reason="BackOff")
    hint = events._hint()  # other tests' loggers may be named; never the library's own
    assert not re.search(r"[(, ]k8s_logging_events[,)]", hint), hint


def test_the_dictconfig_wrapper_outside_its_capture_configures_as_logging_does() -> None:
    """A test that patched dictConfig before its capture began gets the capture's wrapper
    back from monkeypatch after the capture ended: outside a capture the wrapper does what
    the configuration says, and leaves the library's logger disabled as it says."""
    with capture_events():
        outliving = logging.config.dictConfig
    outliving({"version": 1})  # disable_existing_loggers: true
    assert logging.getLogger("k8s_logging_events").disabled


def test_reports_made_as_the_block_ends_reach_caplog_too(log, caplog) -> None:
    """The library's logger starts disabled (an earlier test's dictConfig): a write that
    fails when the block's end flushes it is reported as the capture closes its handler,
    and that report reaches caplog, as those made inside the block do; after it, the logger
    is disabled again."""
    library = logging.getLogger("k8s_logging_events")
    library.disabled = True
    with capture_events() as events:
        events.sink.fail_next("create", ApiStatusError(403, "Forbidden", "events is forbidden"))
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
    assert "403 Forbidden" in caplog.text
    assert library.disabled


def test_a_logger_the_code_under_tests_dictconfig_stops_from_propagating_is_named_with_the_fix(
    log,
) -> None:
    """The application's dictConfig gives its logger handlers of its own and ``propagate:
    false`` (as many Django and service configurations do): its records never reach the root,
    where the capture listens. The failure says so and how to capture them; once attached
    there, they are captured."""
    with capture_events() as events:
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"console": {"class": "logging.NullHandler"}},
                "loggers": {log.name: {"handlers": ["console"], "propagate": False}},
            }
        )
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        with pytest.raises(AssertionError) as failure:
            events.assert_has(reason="BackOff")
        assert f"propagate: false on 1 logger(s) ({log.name})" in str(failure.value)
        assert f"logging.getLogger({log.name!r}).addHandler(k8s_events.handler)" in str(
            failure.value
        )
        logging.getLogger(log.name).addHandler(events.handler)
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        events.assert_has(reason="BackOff", count=1)


def test_a_configuration_dictconfig_refuses_half_way_leaves_the_capture_attached(log) -> None:
    """dictConfig removes the root's handlers before it finds that the root names a handler
    the configuration lacks, and raises: the application may catch that and go on logging,
    and the capture goes on too (no "removed" failure that blames the test)."""
    with capture_events() as events:
        with pytest.raises(ValueError, match="Unable to configure root logger"):
            logging.config.dictConfig(
                {"version": 1, "disable_existing_loggers": False, "root": {"handlers": ["none"]}}
            )
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        events.assert_has(reason="BackOff", count=1)


def test_a_type_checker_reports_a_misspelt_or_mistyped_criterion(tmp_path: Path) -> None:
    """The assertions take :meth:`CapturedEvents.find`'s criteria by name and type, so a
    user's type checker reports ``assert_has(reasn=...)`` or ``wait_for(count="3")``
    before the test runs, as it does for ``find``."""
    user = tmp_path / "test_operator.py"
    user.write_text(
        "from k8s_logging_events.testing._capture import CapturedEvents\n"
        "def test_it(k8s_events: CapturedEvents) -> None:\n"
        '    k8s_events.assert_has(reasn="BackOff")\n'
        '    k8s_events.wait_for(count="3")\n'
        '    k8s_events.assert_none(object_nme="web-0")\n'
        '    k8s_events.assert_has(reason="BackOff", count=3, involved={"kind": "Pod"})\n',
        encoding="utf-8",
    )
    # the capture's own module only: a user's mypy run sees the same signatures, in a second
    report, _, _ = mypy.api.run(
        ["--follow-imports=skip", "--no-incremental", str(user), _capture.__file__]
    )
    errors = [line.split(": error: ")[0] for line in report.splitlines() if ": error: " in line]
    assert [line for line in errors if line.startswith(str(user))] == [
        f"{user}:3",
        f"{user}:4",
        f"{user}:5",
    ], report
