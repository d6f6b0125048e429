"""The handler as a drop-in for other stacks: Kopf, loguru, structlog, the pod itself.

Each test logs through the real package (kopf, loguru, structlog) into a handler writing to a
LocalApiServer over HTTP, and reads the events back from that server. Global state each
package keeps is put back: loguru sinks are removed, structlog is reset, and the conftest
restores stdlib logging.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from k8s_logging_events import _pod, _records, correlator, models, recorder
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from k8s_logging_events.testing._capture import capture_events
from tests.reliability_scenarios import ListHandler, on_library_logger

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-0", "namespace": "prod", "uid": "uid-web-0"},
}
WIDGET = {
    "apiVersion": "example.com/v1",
    "kind": "Widget",
    "metadata": {"name": "w1", "namespace": "shop", "uid": "uid-w1"},
    "spec": {},
}
CLUSTER_WIDGET = {
    "apiVersion": "example.com/v1",
    "kind": "ClusterWidget",
    "metadata": {"name": "cw1", "uid": "uid-cw1"},
    "spec": {},
}


@pytest.fixture
def server() -> Iterator[LocalApiServer]:
    with LocalApiServer(auto_create_namespaces=True) as running:
        yield running


def summary(server: LocalApiServer, namespace: str | None = None) -> list[tuple[Any, ...]]:
    """(kind/name, uid, reason, count, message) of each stored event, sorted."""
    return sorted(
        (
            f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}",
            e["involvedObject"].get("uid", ""),
            e["reason"],
            e["count"],
            e["message"],
        )
        for e in server.events(namespace)
    )


def events_handler(server: LocalApiServer, **options: Any) -> KubernetesEventHandler:
    options = {"component": "test", "host": "node-1", **options}
    return KubernetesEventHandler(sink=server.url, **options)


# --- the cheap first look ---------------------------------------------------------------------


def test_the_filter_spells_out_exactly_the_markers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record without one of the four markers (and a handler without ``default_involved``) is
    no event; filter() spells them out, a dict lookup each: each alone gets past the first look."""
    markers = {"involved", _records.KOPF_REF, _records.LOGURU_EXTRA, _records.STRUCTLOG_MARK}
    looked: list[str] = []
    monkeypatch.setattr(_records, "find_extras", lambda record, default: looked.append("x"))
    event_handler = KubernetesEventHandler(sink=None)
    assert not event_handler.filter(logging.makeLogRecord({"name": "app", "msg": "plain"}))
    assert looked == []
    for marker in sorted(markers):
        event_handler.filter(logging.makeLogRecord({"name": "app", "msg": "m", marker: None}))
        assert len(looked) == 1, marker
        looked.clear()
    assert {"involved", "k8s_ref", "extra", "_logger"} == markers
    event_handler.close()


def test_k8s_skip_on_any_record_means_no_event() -> None:
    """Application code may set Kopf's flag too, as an attribute or in loguru's extra."""
    with capture_events() as events:
        log = logging.getLogger("tests.integrations.skip")
        log.warning("skipped", extra={"involved": POD, "k8s_skip": True})
        log.warning("skipped too", extra={"extra": {"involved": POD, "k8s_skip": 1}})
        log.warning("kept", extra={"involved": POD, "k8s_skip": False})
        assert [e.message for e in events.events] == ["kept"]


# --- Kopf -------------------------------------------------------------------------------------


def test_kopf_object_loggers_make_events_about_their_objects(server: LocalApiServer) -> None:
    """ObjectLogger's k8s_ref is the involved object; LocalObjectLogger's k8s_skip is honoured."""
    import kopf
    from kopf._core.actions.loggers import LocalObjectLogger, ObjectLogger

    settings = kopf.OperatorSettings()
    event_handler = events_handler(server, component="kopf-operator")
    logging.getLogger("kopf.objects").addHandler(event_handler)
    logging.getLogger("kopf.objects").setLevel(logging.INFO)
    namespaced = ObjectLogger(body=WIDGET, settings=settings)  # type: ignore[arg-type]
    cluster = ObjectLogger(body=CLUSTER_WIDGET, settings=settings)  # type: ignore[arg-type]
    local = LocalObjectLogger(body=WIDGET, settings=settings)  # type: ignore[arg-type]
    for _ in range(3):
        namespaced.warning("Handler 'reconcile' failed temporarily: not ready")
    namespaced.info("Synced", extra={"reason": "Synced"})
    cluster.error("Quota exceeded")
    local.warning("A watch handler's line, never an event")
    event_handler.close()
    assert summary(server, "shop") == [
        ("Widget/w1", "uid-w1", "Logging", 3, "Handler 'reconcile' failed temporarily: not ready"),
        ("Widget/w1", "uid-w1", "Synced", 1, "Synced"),
    ]
    # a cluster-scoped object: its event lives in "default", the object has no namespace
    (stored,) = server.events("default")
    assert stored["involvedObject"] == {
        "apiVersion": "example.com/v1",
        "kind": "ClusterWidget",
        "name": "cw1",
        "uid": "uid-cw1",
    }
    assert (stored["reason"], stored["count"], stored["type"]) == ("Logging", 1, "Warning")


# --- loguru -----------------------------------------------------------------------------------


def test_loguru_bound_values_make_counted_events(server: LocalApiServer) -> None:
    """logger.add(handler, format="{message}") with bind(): 10 warnings, one event, count 10."""
    from loguru import logger

    event_handler = events_handler(server)
    sink_id = logger.add(event_handler, format="{message}", level="WARNING")
    try:
        for _ in range(10):
            logger.bind(involved=POD, reason="BackOff").warning("Back-off pulling {}", "nginx")
        logger.bind(involved=POD, k8s_skip=True).warning("not an event")
        logger.warning("no object: not an event")
        logger.bind(
            involved=POD, event_type="Normal", action="Pulling", annotations={"a.io/x": "1"}
        ).warning("typed")
    finally:
        logger.remove(sink_id)  # closes the handler (loguru's StandardSink.stop)
    assert summary(server, "prod") == [
        ("Pod/web-0", "uid-web-0", "BackOff", 10, "Back-off pulling nginx"),
        ("Pod/web-0", "uid-web-0", "Logging", 1, "typed"),
    ]
    typed = next(e for e in server.events("prod") if e["message"] == "typed")
    assert typed["type"] == "Normal"
    assert typed["metadata"]["annotations"] == {"a.io/x": "1"}


def test_loguru_keeps_to_the_handlers_own_level(server: LocalApiServer) -> None:
    """loguru hands its standard-library sink every record at or above loguru's level
    (DEBUG unless told), never asking the handler's: a handler at WARNING, as the pod
    recipe advises, still makes events of warnings alone, not of every DEBUG and INFO line."""
    from loguru import logger

    sink_id = logger.add(events_handler(server, level="WARNING"), format="{message}")
    try:
        for level in ("DEBUG", "INFO", "WARNING"):
            logger.bind(involved=POD, reason=level.title()).log(level, "Back-off")
    finally:
        logger.remove(sink_id)
    assert summary(server, "prod") == [("Pod/web-0", "uid-web-0", "Warning", 1, "Back-off")]


def test_loguru_re_adding_a_removed_handler_is_said(server: LocalApiServer) -> None:
    """logger.remove() closes the handler; adding the same handler again makes no events.
    The first record it gets is said on the library's logger (it names the fix: a new
    handler), and every one is counted as after_close. Before, every later event was lost
    without a word."""
    from loguru import logger

    event_handler = events_handler(server)
    sink_id = logger.add(event_handler, format="{message}", level="WARNING")
    logger.bind(involved=POD, reason="Before").warning("written")
    logger.remove(sink_id)
    with on_library_logger(ListHandler()) as reports:
        sink_id = logger.add(event_handler, format="{message}", level="WARNING")
        try:
            for _ in range(3):
                logger.bind(involved=POD, reason="After").warning("lost")
        finally:
            logger.remove(sink_id)
    said = [text for text in reports.messages() if "closed" in text]
    assert len(said) == 1, reports.messages()
    assert "new KubernetesEventHandler" in said[0]
    assert event_handler.stats()["after_close"] == 3
    assert [e["reason"] for e in server.events("prod")] == ["Before"]


PASSWORD = "hunter2-5f1c9e"  # the secret the events must never hold


def _connect(user: str) -> None:
    password = PASSWORD
    # the failing line names the local: loguru's diagnose=True prints its value under it
    _log_in(user, password)


def _log_in(user: str, password: str) -> None:
    raise ConnectionError(f"login refused for {user} ({len(password)} characters)")


def _loguru_events(
    server: LocalApiServer, log_calls: Any, **options: Any
) -> tuple[list[dict[str, Any]], list[str]]:
    """Log through loguru's documented recipe (``format="{message}"``, ``diagnose=True``)
    into a handler, and through a plain sink that shows loguru's own output."""
    from loguru import logger

    event_handler = events_handler(server, **options)
    shown: list[str] = []
    sink_id = logger.add(event_handler, format="{message}", level="WARNING", diagnose=True)
    plain_id = logger.add(shown.append, format="{message}", level="WARNING", diagnose=True)
    try:
        log_calls(logger)
    finally:
        logger.remove(sink_id)
        logger.remove(plain_id)
    return server.events("prod"), shown


def _loguru_version() -> tuple[int, ...]:
    return tuple(int(part) for part in importlib.metadata.version("loguru").split(".")[:3])


def _exception(logger: Any) -> None:
    try:
        _connect("admin")
    except ConnectionError:
        logger.bind(involved=POD, reason="LoginFailed").exception("Unable to log in")


def test_loguru_extra_involved_none_is_a_default_not_a_refusal(
    server: LocalApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """loguru users give ``extra`` defaults (``logger.configure(extra={"involved": None})``)
    so that a format naming ``{extra[involved]}`` works: a record without an object of its
    own is then no refusal and no report, bound or configured, while a bound object still
    makes its event."""
    from loguru import logger

    event_handler = events_handler(server)
    logger.configure(extra={"involved": None})
    sink_id = logger.add(event_handler, format="{message}", level="WARNING")
    try:
        logger.warning("no object: no event, no word")
        logger.bind(involved=None).warning("bound None: the same")
        logger.bind(involved=POD, reason="BackOff").warning("Back-off pulling image")
        assert event_handler.drain(10)
        stats = event_handler.stats()
    finally:
        logger.remove(sink_id)
        logger.configure(extra={})
    assert (stats["refused"], stats["accepted"]) == (0, 1), stats
    assert not [r for r in caplog.records if "is None" in r.getMessage()]
    assert [event["reason"] for event in server.events()] == ["BackOff"]


def test_loguru_exception_with_diagnose_never_puts_a_local_value_in_the_event(
    server: LocalApiServer,
) -> None:
    """loguru's own output holds the password (diagnose=True shows locals); the event holds
    loguru's message and the exception's summary (exception_detail's default) only."""
    events, shown = _loguru_events(server, _exception)
    assert any(PASSWORD in text for text in shown), "loguru showed the local: the test can fail"
    (event,) = events
    assert event["message"] == (
        "Unable to log in: ConnectionError: login refused for admin (14 characters)"
    )
    assert PASSWORD not in repr(event)
    assert "Traceback" not in event["message"]


def test_loguru_exception_follows_exception_detail_like_a_standard_record(
    server: LocalApiServer,
) -> None:
    """traceback: the standard library's traceback (source lines, no local values); none:
    the message alone."""
    events, _ = _loguru_events(server, _exception, exception_detail="traceback")
    (event,) = events
    assert event["message"].startswith("Unable to log in\nTraceback (most recent call last):")
    assert "ConnectionError: login refused for admin" in event["message"]
    assert PASSWORD not in event["message"]
    assert "└" not in event["message"]  # loguru's diagnose marks
    server.reset()
    events, _ = _loguru_events(server, _exception, exception_detail="none")
    assert [e["message"] for e in events] == ["Unable to log in"]


def test_loguru_exception_flag_without_an_exception_leaves_the_message_alone(
    server: LocalApiServer,
) -> None:
    """``logger.opt(exception=True)`` (or ``.exception()``) outside an ``except`` block:
    loguru appends ``NoneType: None`` to its output. The event gets loguru's message alone,
    as a standard record logged with ``exc_info=True`` there does."""

    def log_calls(logger: Any) -> None:
        logger.opt(exception=True).bind(involved=POD, reason="NoException").error("No error")
        logger.bind(involved=POD, reason="NoExceptionEither").exception("Nothing raised")

    events, shown = _loguru_events(server, log_calls)
    assert any("NoneType: None" in text for text in shown), "loguru wrote it: the test can fail"
    assert sorted(event["message"] for event in events) == ["No error", "Nothing raised"]


def test_loguru_chained_and_unraised_exceptions_leave_the_message_alone(
    server: LocalApiServer,
) -> None:
    """loguru writes a chain's first traceback right after the message (no newline), and an
    exception that was never raised as a bare line: neither reaches the event."""

    def calls(logger: Any) -> None:
        try:
            try:
                _connect("root")
            except ConnectionError as error:
                raise RuntimeError("setup failed") from error
        except RuntimeError:
            logger.bind(involved=POD, reason="Chained").exception("Two lines\nof message")
        cause = KeyError("never raised")
        try:
            raise ValueError("with an unraised cause") from cause
        except ValueError:
            logger.bind(involved=POD, reason="Unraised").exception("Caused")
        logger.bind(involved=POD, reason="Bare").opt(exception=ValueError("bare")).error("Bare")

    events, shown = _loguru_events(server, calls)
    assert any(PASSWORD in text for text in shown)
    messages = {e["reason"]: e["message"] for e in events}
    assert messages == {
        "Chained": "Two lines\nof message: RuntimeError: setup failed",
        "Unraised": "Caused: ValueError: with an unraised cause",
        "Bare": "Bare: ValueError: bare",
    }
    assert all(PASSWORD not in repr(e) for e in events)


def test_loguru_colorize_puts_no_terminal_colours_in_the_event(server: LocalApiServer) -> None:
    """``logger.add(handler, colorize=True)`` (a sink setting copied from a console's) has
    loguru colour its whole output: the event holds the message and the summary alone, as
    without colours, with no escape sequence for a terminal in it."""
    from loguru import logger

    event_handler = events_handler(server)
    sink_id = logger.add(
        event_handler, format="<red>{message}</red>", level="WARNING", colorize=True
    )
    try:
        for _ in range(2):
            logger.bind(involved=POD, reason="BackOff").warning("Back-off pulling image")
        try:
            _connect("admin")
        except ConnectionError:
            logger.bind(involved=POD, reason="LoginFailed").exception("Unable to log in")
        unraised = logger.opt(exception=ValueError("bad port")).bind(involved=POD, reason="Bad")
        unraised.warning("Unable to parse")
    finally:
        logger.remove(sink_id)
    assert [(row[2], row[3], row[4]) for row in summary(server, "prod")] == [
        ("BackOff", 2, "Back-off pulling image"),
        ("Bad", 1, "Unable to parse: ValueError: bad port"),
        (
            "LoginFailed",
            1,
            "Unable to log in: ConnectionError: login refused for admin (14 characters)",
        ),
    ]


def test_loguru_exception_group_leaves_the_message_alone(server: LocalApiServer) -> None:
    """An ExceptionGroup (asyncio's TaskGroup raises one): loguru indents its traceback
    under ``  + ``; the event gets loguru's message and the group's summary (with that of the
    exception in it), nothing of the traceback's decoration."""

    def calls(logger: Any) -> None:
        try:
            try:
                _connect("admin")
            except ConnectionError as error:
                raise ExceptionGroup("unhandled errors in a TaskGroup", [error]) from None
        except ExceptionGroup:
            logger.bind(involved=POD, reason="SyncFailed").exception("Unable to sync")

    events, shown = _loguru_events(server, calls)
    # loguru 0.7.0, the oldest the dev extra allows, writes a group's traceback as any
    # other (no indented sub-exceptions): the event must be the same whichever it has
    indented = any("+ Exception Group Traceback" in text for text in shown)
    assert indented or _loguru_version() < (0, 7, 1), "the test can fail"
    assert [e["message"] for e in events] == [
        "Unable to sync: ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception): "
        "ConnectionError: login refused for admin (14 characters)"
    ]
    assert all(PASSWORD not in repr(e) for e in events)


# --- structlog --------------------------------------------------------------------------------


@pytest.fixture
def structlog_reset() -> Iterator[Any]:
    import structlog

    yield structlog
    structlog.reset_defaults()


def test_structlog_render_to_log_kwargs_puts_the_extras_on_the_record(
    server: LocalApiServer, structlog_reset: Any
) -> None:
    structlog = structlog_reset
    structlog.configure(
        processors=[structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    event_handler = events_handler(server)
    logging.getLogger("tests.integrations.kw").addHandler(event_handler)
    log = structlog.get_logger("tests.integrations.kw").bind(involved=POD)
    for _ in range(4):
        log.warning("Back-off pulling image", reason="BackOff")
    event_handler.close()
    assert summary(server, "prod") == [
        ("Pod/web-0", "uid-web-0", "BackOff", 4, "Back-off pulling image"),
    ]


def test_structlog_wrap_for_formatter_event_dict_gives_extras_and_message(
    server: LocalApiServer, structlog_reset: Any
) -> None:
    """The record's msg is the event dict: extras from it, the message from ``event``."""
    structlog = structlog_reset
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    event_handler = events_handler(server)
    logging.getLogger("tests.integrations.pf").addHandler(event_handler)
    log = structlog.get_logger("tests.integrations.pf")
    for _ in range(3):
        log.warning("Back-off pulling image", involved=POD, reason="BackOff")
    log.warning("skipped", involved=POD, k8s_skip=True)
    # a renderer set on the handler formats the message, never the dict's repr
    event_handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=structlog.dev.ConsoleRenderer(colors=False))
    )
    log.warning("rendered", involved=POD, reason="Rendered")
    event_handler.close()
    stored = summary(server, "prod")
    assert stored[0] == ("Pod/web-0", "uid-web-0", "BackOff", 3, "Back-off pulling image")
    assert [row[2] for row in stored] == ["BackOff", "Rendered"]
    assert "{" not in stored[1][4]
    assert "rendered" in stored[1][4]


def _wrapping_for_formatter(structlog: Any) -> Any:
    """``structlog``, configured as its docs' stdlib recipe: the event dict goes to logging
    as the record's msg (``ProcessorFormatter.wrap_for_formatter``)."""
    structlog.configure(
        processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return structlog


def test_structlog_event_dict_involved_none_is_said_and_counted(
    server: LocalApiServer, structlog_reset: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """``log.warning(..., involved=pod)`` with ``pod`` None through ``wrap_for_formatter``
    (the event dict as the record's msg) is refused, counted and said, not silently dropped."""
    structlog = _wrapping_for_formatter(structlog_reset)
    event_handler = events_handler(server)
    logging.getLogger("tests.integrations.none").addHandler(event_handler)
    log = structlog.get_logger("tests.integrations.none")
    for _ in range(2):
        log.warning("Back-off pulling image", involved=None, reason="BackOff")
    log.warning("no object: no event, no word", status=503)
    stats = event_handler.stats()
    event_handler.close()
    assert (stats["refused"], stats["accepted"]) == (2, 0), stats
    said = [r.getMessage() for r in caplog.records if "involved object is None" in r.getMessage()]
    assert len(said) == 1, said
    assert server.events() == []


def test_structlog_wrap_for_formatter_exc_info_in_the_event_dict_gives_the_summary(
    server: LocalApiServer, structlog_reset: Any
) -> None:
    """``log.error(..., exc_info=True)`` (or an exception object) through ``wrap_for_formatter``
    leaves the exception in the event dict, not on the record (``aexception()`` logs on an
    executor thread, where the record's is empty): the event still ends in the exception's
    summary, as ``log.exception()`` and a standard record's do."""
    structlog = _wrapping_for_formatter(structlog_reset)
    event_handler = events_handler(server)
    logging.getLogger("tests.integrations.pfexc").addHandler(event_handler)
    log = structlog.get_logger("tests.integrations.pfexc").bind(involved=POD)
    try:
        raise KeyError("replica-3")
    except KeyError as error:
        log.error("Unable to sync", reason="SyncFailed", exc_info=True)
        log.error("Unable to scale", reason="ScaleFailed", exc_info=error)
        asyncio.run(log.aexception("Unable to resize", reason="ResizeFailed"))
    log.error("Nothing raised", reason="Quiet", exc_info=True)  # noqa: LOG014 (no exception: none)
    event_handler.close()
    assert [(row[2], row[4]) for row in summary(server, "prod")] == [
        ("Quiet", "Nothing raised"),
        ("ResizeFailed", "Unable to resize: KeyError: 'replica-3'"),
        ("ScaleFailed", "Unable to scale: KeyError: 'replica-3'"),
        ("SyncFailed", "Unable to sync: KeyError: 'replica-3'"),
    ]


def test_a_plain_dict_message_stays_a_message() -> None:
    """Only structlog's records (``_logger`` and ``_name`` set) have their dict read."""
    with capture_events() as events:
        logging.getLogger("tests.integrations.dict").warning({"a": 1}, extra={"involved": POD})
        assert events.events[0].message == "{'a': 1}"


# --- the pod itself ---------------------------------------------------------------------------


@pytest.fixture
def no_pod_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    for name in ("POD_NAME", "POD_NAMESPACE", "POD_UID", "HOSTNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_pod, "NAMESPACE_FILE", str(tmp_path / "absent"))
    return monkeypatch


def test_default_involved_pod_uses_the_downward_api(
    server: LocalApiServer, no_pod_env: pytest.MonkeyPatch
) -> None:
    no_pod_env.setenv("POD_NAME", "shop-api-7d9f-x2x")
    no_pod_env.setenv("POD_NAMESPACE", "shop")
    no_pod_env.setenv("POD_UID", "uid-shop-api")
    event_handler = events_handler(server, default_involved="pod", level="WARNING")
    log = logging.getLogger("tests.integrations.pod")
    log.addHandler(event_handler)
    for _ in range(5):
        log.warning("Payment provider slow: %d ms", 1200)
    log.info("below the level: no event")
    log.warning("about another object", extra={"involved": POD, "reason": "Other"})
    event_handler.close()
    assert summary(server, "shop") == [
        ("Pod/shop-api-7d9f-x2x", "uid-shop-api", "Logging", 5, "Payment provider slow: 1200 ms")
    ]
    assert summary(server, "prod") == [
        ("Pod/web-0", "uid-web-0", "Other", 1, "about another object")
    ]
    assert not [r for r in server.requests if "/pods/" in r.path]


def test_without_pod_uid_the_uid_is_read_once_from_the_api_server(
    server: LocalApiServer, no_pod_env: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Name from HOSTNAME, namespace from the service-account file, uid from a GET."""
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("shop\n")
    no_pod_env.setattr(_pod, "NAMESPACE_FILE", str(namespace_file))
    no_pod_env.setenv("HOSTNAME", "shop-api-1")
    pod = server.add_pod("shop-api-1", "shop")
    event_handler = events_handler(server, default_involved="pod")
    log = logging.getLogger("tests.integrations.poduid")
    log.addHandler(event_handler)
    for _ in range(3):
        log.warning("slow")
    log.error("down", extra={"reason": "Down"})
    event_handler.close()
    uid = pod["metadata"]["uid"]
    assert summary(server, "shop") == [
        ("Pod/shop-api-1", uid, "Down", 1, "down"),
        ("Pod/shop-api-1", uid, "Logging", 3, "slow"),
    ]
    assert len([r for r in server.requests if "/pods/" in r.path]) == 1


def test_a_crash_looping_pod_continues_its_own_event_on_every_restart(
    server: LocalApiServer, no_pod_env: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """default_involved="pod" without POD_UID: each restart reads the uid, meets the event
    the last run wrote about the pod (through the uid-filling sink) and continues it, so
    ``kubectl describe pod`` shows one row with the total."""
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("shop\n")
    no_pod_env.setattr(_pod, "NAMESPACE_FILE", str(namespace_file))
    no_pod_env.setenv("HOSTNAME", "shop-api-1")
    pod = server.add_pod("shop-api-1", "shop")
    for _ in range(4):  # the first run and three restarts
        event_handler = events_handler(server, default_involved="pod", level="WARNING")
        log = logging.getLogger("tests.integrations.crashloop")
        log.addHandler(event_handler)
        for _ in range(5):
            log.warning("Cannot reach the database")
        event_handler.close()
        log.removeHandler(event_handler)
    assert summary(server, "shop") == [
        ("Pod/shop-api-1", pod["metadata"]["uid"], "Logging", 20, "Cannot reach the database")
    ]


def test_a_pod_made_anew_under_its_name_never_continues_the_event_of_the_pod_before(
    server: LocalApiServer, no_pod_env: pytest.MonkeyPatch
) -> None:
    """default_involved="pod" without POD_UID, in a StatefulSet's pod ``web-0`` that a
    rolling update deleted and made again (same name, new uid): the new pod's event is its
    own, with its uid, so that ``kubectl describe pod web-0`` shows it; the old pod's event
    under the same name keeps its count."""
    no_pod_env.setenv("POD_NAME", "web-0")
    no_pod_env.setenv("POD_NAMESPACE", "shop")
    for uid in ("uid-before", "uid-after"):
        server.add_pod("web-0", "shop", uid=uid)
        event_handler = events_handler(server, default_involved="pod", level="WARNING")
        log = logging.getLogger("tests.integrations.recreated")
        log.addHandler(event_handler)
        for _ in range(3):
            log.warning("Invalid configuration")
        event_handler.close()
        log.removeHandler(event_handler)
        with server.api_client() as api_client:
            client.CoreV1Api(api_client).delete_namespaced_pod("web-0", "shop")
    assert summary(server, "shop") == [
        ("Pod/web-0", "uid-after", "Logging", 3, "Invalid configuration"),
        ("Pod/web-0", "uid-before", "Logging", 3, "Invalid configuration"),
    ]


def test_a_forbidden_uid_read_writes_without_uid_and_says_why_once(
    server: LocalApiServer, no_pod_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_pod_env.setenv("POD_NAME", "shop-api-1")
    no_pod_env.setenv("POD_NAMESPACE", "shop")
    server.add_pod("shop-api-1", "shop")
    server.inject("GET", "/pods/", status=403, times=None, message="pods is forbidden")
    event_handler = events_handler(server, default_involved="pod")
    log = logging.getLogger("tests.integrations.pod403")
    log.addHandler(event_handler)
    log.warning("one")
    log.warning("two", extra={"reason": "Two"})
    event_handler.close()
    assert summary(server, "shop") == [
        ("Pod/shop-api-1", "", "Logging", 1, "one"),
        ("Pod/shop-api-1", "", "Two", 1, "two"),
    ]
    reports = [r.getMessage() for r in caplog.records if r.name == "k8s_logging_events"]
    (report,) = [m for m in reports if "without its uid" in m]
    assert "kubectl describe pod" in report
    assert "not permitted to get pods" in report
    assert "POD_UID" in report


def test_outside_a_pod_default_involved_is_reported_once_and_makes_no_events(
    no_pod_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FakeEventSink()
    clock = FakeClock()
    event_handler = KubernetesEventHandler(
        sink=sink, default_involved="pod", clock=clock, sleep=clock.sleep
    )
    log = logging.getLogger("tests.integrations.nopod")
    log.addHandler(event_handler)
    log.warning("no pod")
    log.warning("still about an object", extra={"involved": POD})
    event_handler.close()
    assert [e.message for e in sink.events] == ["still about an object"]
    (report,) = [
        r.getMessage() for r in caplog.records if "does not run in a pod" in r.getMessage()
    ]
    assert "POD_NAME" in report


@pytest.mark.parametrize("namespace", ["$(NS)", "Shop Bad"])
def test_a_namespace_that_is_no_dns_label_is_reported_once_as_no_pod(
    no_pod_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, namespace: str
) -> None:
    """A POD_NAMESPACE the server would refuse (``$(NS)`` that Kubernetes left unexpanded) is
    said once, when the handler is built, by the rule for every namespace; records without an
    involved object then make no events, as outside a pod, and no report of their own."""
    caplog.set_level(logging.DEBUG, logger="k8s_logging_events")
    no_pod_env.setenv("POD_NAME", "shop-api-1")
    no_pod_env.setenv("POD_NAMESPACE", namespace)
    sink = FakeEventSink()
    clock = FakeClock()
    event_handler = KubernetesEventHandler(
        sink=sink, default_involved="pod", clock=clock, sleep=clock.sleep
    )
    log = logging.getLogger("tests.integrations.badpodnamespace")
    log.addHandler(event_handler)
    log.warning("one")
    log.warning("two")
    log.warning("still about an object", extra={"involved": POD})
    event_handler.close()
    assert [e.message for e in sink.events] == ["still about an object"]
    (report,) = [r.getMessage() for r in caplog.records if r.name == "k8s_logging_events"]
    assert f"namespace {namespace!r} is no DNS label" in report
    assert "POD_NAMESPACE" in report
    assert "Records without an involved object make no events" in report


@pytest.mark.parametrize(
    ("variables", "missing"),
    [
        (
            {},
            "found neither a name (POD_NAME or HOSTNAME) nor a namespace (POD_NAMESPACE or {file})",
        ),
        ({"HOSTNAME": "web-0"}, "found no namespace (POD_NAMESPACE or {file})"),
        ({"POD_NAMESPACE": "shop"}, "found no name (POD_NAME or HOSTNAME)"),
    ],
    ids=["neither", "no-namespace", "no-name"],
)
def test_outside_a_pod_the_report_names_what_is_missing(
    no_pod_env: pytest.MonkeyPatch, variables: dict[str, str], missing: str
) -> None:
    """The report says which of the pod's name and namespace could not be found, and
    where each was looked for (the namespace file as it is set when the handler is built)."""
    for name, value in variables.items():
        no_pod_env.setenv(name, value)
    identity = _pod.from_environment()
    assert identity.ref is None
    expected = missing.format(file=_pod.NAMESPACE_FILE)
    assert f"cannot tell which: it {expected}. Records without" in identity.problem


def test_a_given_broadcaster_without_pod_uid_is_reported_once_when_the_handler_is_built(
    no_pod_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With a broadcaster of the application's, the handler owns no sink to read the pod's
    uid through: events about the pod go without it, and the fix (POD_UID) is said once,
    when the handler is built, on the library's logger."""
    caplog.set_level(logging.DEBUG, logger="k8s_logging_events")
    no_pod_env.setenv("POD_NAME", "shop-api-1")
    no_pod_env.setenv("POD_NAMESPACE", "shop")
    fake = FakeEventSink()
    clock = FakeClock()
    given = recorder.EventBroadcaster(clock=clock, sleep=clock.sleep)
    given.start_recording_to_sink(fake)
    try:
        event_handler = KubernetesEventHandler(broadcaster=given, default_involved="pod")
        (report,) = [r for r in caplog.records if "without its uid" in r.getMessage()]
        log = logging.getLogger("tests.integrations.givenpod")
        log.addHandler(event_handler)
        log.warning("one")
        log.warning("two")
        event_handler.close()
        assert given.flush(5)
    finally:
        given.shutdown(2)
    assert [(e.message, e.involved_object.name, e.involved_object.uid) for e in fake.events] == [
        ("one", "shop-api-1", ""),
        ("two", "shop-api-1", ""),
    ]
    assert report.name == "k8s_logging_events"
    assert report.levelno == logging.WARNING
    message = report.getMessage()
    assert message.startswith("Events about pod shop/shop-api-1 are written without its uid")
    assert "through a given broadcaster" in message
    assert "POD_UID" in message
    assert len([r for r in caplog.records if "without its uid" in r.getMessage()]) == 1


def test_a_hostname_of_63_characters_is_reported_as_possibly_cut(
    no_pod_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_pod_env.setenv("HOSTNAME", "a" * 63)
    no_pod_env.setenv("POD_NAMESPACE", "shop")
    identity = _pod.from_environment()
    assert identity.ref is not None
    assert identity.ref.name == "a" * 63
    assert "cuts to 63" in identity.problem


def test_a_hostname_cut_to_63_then_without_its_final_dash_is_reported_as_possibly_cut(
    no_pod_env: pytest.MonkeyPatch,
) -> None:
    """The kubelet cuts a pod name of over 63 characters to 63, then drops a '-' or '.' that
    the cut left at the end: a pod ``<62 characters>-x7k2p`` has a HOSTNAME of 62."""
    pod_name = "shop-web-" + "a" * 53 + "-x7k2p"
    hostname = pod_name[:63].rstrip("-.")
    assert len(hostname) == 62
    no_pod_env.setenv("HOSTNAME", hostname)
    no_pod_env.setenv("POD_NAMESPACE", "shop")
    assert "cuts to 63" in _pod.from_environment().problem
    no_pod_env.setenv("HOSTNAME", "a" * 61)  # shorter than any cut leaves it (but '--')
    assert _pod.from_environment().problem == ""


@pytest.mark.parametrize("value", ["node", 5, True])
def test_default_involved_is_checked(value: object) -> None:
    with pytest.raises(ValueError, match="default_involved must be 'pod'"):
        KubernetesEventHandler(sink=None, default_involved=value)  # type: ignore[arg-type]


def test_default_involved_pod_through_dictconfig(no_pod_env: pytest.MonkeyPatch) -> None:
    no_pod_env.setenv("POD_NAME", "p")
    no_pod_env.setenv("POD_NAMESPACE", "n")
    no_pod_env.setenv("POD_UID", "u")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "events": {
                    "class": "k8s_logging_events.handler.KubernetesEventHandler",
                    "sink": None,
                    "default_involved": "pod",
                    "level": "WARNING",
                }
            },
            "loggers": {"tests.integrations.dc": {"handlers": ["events"]}},
        }
    )
    (event_handler,) = logging.getLogger("tests.integrations.dc").handlers
    assert isinstance(event_handler, KubernetesEventHandler)
    assert event_handler._default_involved is not None
    assert event_handler._default_involved.uid == "u"
    event_handler.close()


# --- the spam key -----------------------------------------------------------------------------


def test_the_per_reason_spam_key_keeps_one_noisy_reason_from_silencing_others() -> None:
    """With client-go's key a burst of BackOff holds back Unhealthy; per reason, it does not."""
    ref = models.ObjectReference(kind="Pod", namespace="prod", name="web-0", api_version="v1")
    held_back = {}
    for key in ("object", "per-reason"):
        options = KubernetesEventHandler(
            sink=None, correlator={"burst_size": 3, "spam_key": key, "clock": FakeClock()}
        )._options.broadcasting.correlator
        events = correlator.EventCorrelator(options)

        def skipped(reason: str, message: str, events: Any = events) -> bool:
            event = models.Event(
                name="e", namespace="prod", involved_object=ref, reason=reason, message=message
            )
            return bool(events.correlate(event).skip)

        backoffs = [skipped("BackOff", f"Back-off {i}") for i in range(5)]
        assert backoffs == [False, False, False, True, True]
        held_back[key] = skipped("Unhealthy", "Readiness probe failed")
    assert held_back == {"object": True, "per-reason": False}


def test_the_spam_key_option_is_checked() -> None:
    with pytest.raises(ValueError, match=r"correlator\.spam_key must be one of 'object'"):
        KubernetesEventHandler(sink=None, correlator={"spam_key": "per-object"})
    with pytest.raises(ValueError, match="not both"):
        KubernetesEventHandler(
            sink=None,
            correlator={"spam_key": "object", "spam_key_func": correlator.get_spam_key},
        )
    options = KubernetesEventHandler(
        sink=None, correlator={"spam_key": "per-reason"}
    )._options.broadcasting
    assert options.correlator is not None
    assert options.correlator.spam_key_func is correlator.spam_key_per_reason


# --- the fixture and the application's own dictConfig -----------------------------------------

APP_CONFIG: dict[str, Any] = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler", "level": "INFO"}},
    "root": {"level": "INFO", "handlers": ["console"]},
}


def test_capture_goes_on_after_the_application_calls_dictconfig() -> None:
    with capture_events() as events:
        log = logging.getLogger("tests.integrations.appconfig")
        logging.config.dictConfig({**APP_CONFIG, "disable_existing_loggers": False})
        log.warning("after dictConfig", extra={"involved": POD, "reason": "After"})
        events.assert_has(reason="After", count=1)
        assert not events.handler.closed


def test_the_capture_says_what_dictconfig_disabled() -> None:
    log = logging.getLogger("tests.integrations.disabled")
    with capture_events() as events:
        logging.config.dictConfig(APP_CONFIG)  # disable_existing_loggers defaults to True
        log.warning("lost", extra={"involved": POD, "reason": "Lost"})
        with pytest.raises(AssertionError, match="disable_existing_loggers: false"):
            events.assert_has(reason="Lost")


def test_a_capture_whose_handler_was_removed_fails_with_the_fix() -> None:
    with capture_events() as events:
        logging.basicConfig(force=True)
        with pytest.raises(AssertionError, match=r"was removed from the root logger.*addHandler"):
            events.assert_has(reason="Any")
        logging.getLogger().addHandler(events.handler)
        logging.getLogger("tests.integrations.re").warning("x", extra={"involved": POD})
        events.assert_has(message="x")
