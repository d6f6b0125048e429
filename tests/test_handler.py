"""KubernetesEventHandler and EventLoggerAdapter: the logging front door.

Events go to a FakeEventSink, and time and back-offs go through a FakeClock, so nothing here
waits on the wall clock except the few tests about timeouts, which say so.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import itertools
import json
import logging
import logging.config
import logging.handlers
import os
import queue
import re
import select
import signal
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from k8s_logging_events import _kubeconfig as kubeconfigs
from k8s_logging_events import _options, describe, handler, models, recorder
from k8s_logging_events import sink as sinks
from k8s_logging_events.handler import EventLoggerAdapter, KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests._children import REPO, run_python
from tests._typecheck import mypy_report
from tests.reliability_scenarios import ListHandler, on_library_logger, stored_counts

START = datetime(2024, 1, 1, tzinfo=UTC)
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-0", "namespace": "prod", "uid": "uid-web-0"},
}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "uid": "uid-node-1"}}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# dictConfig reaches these through ext:// and "()"; each test that uses them sets fresh ones
SINK = FakeEventSink()
CLOCK = FakeClock(START)


def make_sink() -> FakeEventSink:
    """A sink factory for dictConfig's ``"()"`` form."""
    return SINK


_names = itertools.count()


class SnapshotHandler(logging.Handler):
    """Keeps a copy of each record's attributes as they were when it got the record."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.snapshots.append(dict(record.__dict__))


class _Counting(KubernetesEventHandler):
    """A user's subclass that counts what it emits; the handler's own filter() decides."""

    emitted = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.emitted += 1
        super().emit(record)


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(name="fake")
def _fake() -> FakeEventSink:
    return FakeEventSink()


@pytest.fixture(name="made")
def _made() -> Iterator[list[KubernetesEventHandler]]:
    made: list[KubernetesEventHandler] = []
    yield made
    for event_handler in made:
        event_handler.close()


@pytest.fixture(name="make")
def _make(
    made: list[KubernetesEventHandler], fake: FakeEventSink, clock: FakeClock
) -> Callable[..., KubernetesEventHandler]:
    def make(
        kind: type[KubernetesEventHandler] = KubernetesEventHandler, **options: Any
    ) -> KubernetesEventHandler:
        settings: dict[str, Any] = {
            "component": "ctl",
            "host": "node-1",
            "sink": fake,
            "clock": clock,
            "sleep": clock.sleep,
        }
        settings.update(options)
        event_handler = kind(**settings)
        made.append(event_handler)
        return event_handler

    return make


def _our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(recorder.THREAD_NAME)]


def _app_logger() -> logging.Logger:
    logger = logging.getLogger(f"tests.handler.app{next(_names)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


@pytest.fixture(name="log")
def _log() -> logging.Logger:
    return _app_logger()


@pytest.fixture(name="reports")
def _reports() -> Iterator[ListHandler]:
    """What the library says about itself, on its own logger."""
    with on_library_logger(ListHandler()) as reports:
        yield reports


@pytest.fixture(name="config_logger")
def _config_logger() -> Iterator[str]:
    """A logger name for dictConfig tests; its handlers are closed afterwards."""
    name = f"tests.handler.configured{next(_names)}"
    yield name
    for event_handler in logging.getLogger(name).handlers:
        event_handler.close()


@pytest.fixture(name="fresh_module_objects")
def _fresh_module_objects(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeEventSink, FakeClock]:
    sink, clock = FakeEventSink(), FakeClock(START)
    monkeypatch.setattr(sys.modules[__name__], "SINK", sink)
    monkeypatch.setattr(sys.modules[__name__], "CLOCK", clock)
    return sink, clock


def _dict_config(config: dict[str, Any]) -> None:
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False, **config})


def _only_handler(name: str) -> KubernetesEventHandler:
    (found,) = logging.getLogger(name).handlers
    assert isinstance(found, KubernetesEventHandler)
    return found


def _flushed(event_handler: KubernetesEventHandler) -> None:
    active = event_handler.broadcaster
    assert active is not None
    assert active.flush(10)


# --- dictConfig --------------------------------------------------------------------------------


class TestDictConfig:
    """The handler is configured the way users configure logging."""

    def test_class_form_with_ext_references(self, config_logger, fresh_module_objects) -> None:
        """``class:`` with the sink and clock given as ``ext://`` objects of a test module."""
        sink, _ = fresh_module_objects
        _dict_config(
            {
                "handlers": {
                    "k8s": {
                        "class": "k8s_logging_events.handler.KubernetesEventHandler",
                        "level": "INFO",
                        "component": "from-yaml",
                        "sink": f"ext://{__name__}.SINK",
                        "clock": f"ext://{__name__}.CLOCK",
                        "sleep": f"ext://{__name__}.CLOCK.sleep",
                        "max_message_bytes": 64,
                    }
                },
                "loggers": {config_logger: {"handlers": ["k8s"], "level": "DEBUG"}},
            }
        )
        event_handler = _only_handler(config_logger)
        assert event_handler.level == logging.INFO
        logging.getLogger(config_logger).debug("below the level", extra={"involved": POD})
        logging.getLogger(config_logger).info("x" * 100, extra={"involved": POD})
        _flushed(event_handler)
        (event,) = sink.events
        assert event.source.component == "from-yaml"
        assert len(event.message.encode()) == 64

    def test_factory_form_with_cfg_references(self, config_logger, fresh_module_objects) -> None:
        """``"()"`` with the sink and the correlator options found through ``cfg://``."""
        sink, _ = fresh_module_objects
        _dict_config(
            {
                "sinks": {"fake": f"ext://{__name__}.SINK"},
                "correlation": {"max_events": 2},
                "handlers": {
                    "k8s": {
                        "()": "k8s_logging_events.handler.KubernetesEventHandler",
                        "sink": "cfg://sinks.fake",
                        "correlator": "cfg://correlation",
                    }
                },
                "loggers": {config_logger: {"handlers": ["k8s"], "level": "DEBUG"}},
            }
        )
        event_handler = _only_handler(config_logger)
        for attempt in range(3):
            logging.getLogger(config_logger).warning(
                "attempt %d failed", attempt, extra={"involved": POD, "reason": "Failed"}
            )
        _flushed(event_handler)
        # max_events=2 reached this correlator: the second distinct message aggregates
        assert any(
            event.message.startswith("(combined from similar events)") for event in sink.events
        )

    def test_a_handler_dictconfig_closed_but_left_attached_says_so_once(
        self, make, log, reports
    ) -> None:
        """A handler added in code, then a dictConfig that does not configure it (uvicorn's
        default log_config, say): dictConfig closes every handler there is, and this one stays
        on its logger, where a StreamHandler would go on printing. Its records are no events:
        counted as after_close, and said once on the library's logger, not dropped unseen."""
        event_handler = make()
        log.addHandler(event_handler)
        log.warning("before", extra={"involved": POD})
        _dict_config({"loggers": {"uvicorn": {"level": "INFO"}}})
        assert event_handler.closed
        log.warning("after", extra={"involved": POD})
        log.warning("after again", extra={"involved": POD})
        assert event_handler.stats()["after_close"] == 2
        said = [m for m in reports.messages() if "after_close" in m]
        assert len(said) == 1, reports.messages()
        assert "dictConfig" in said[0]

    def test_the_sink_can_be_built_by_a_nested_factory(
        self, config_logger, fresh_module_objects
    ) -> None:
        """``sink: {"()": factory}`` builds the sink with dictConfig's own machinery."""
        sink, _ = fresh_module_objects
        _dict_config(
            {
                "handlers": {
                    "k8s": {
                        "class": "k8s_logging_events.handler.KubernetesEventHandler",
                        "sink": {"()": f"{__name__}.make_sink"},
                    }
                },
                "loggers": {config_logger: {"handlers": ["k8s"], "level": "DEBUG"}},
            }
        )
        logging.getLogger(config_logger).info("hello", extra={"involved": POD})
        _flushed(_only_handler(config_logger))
        assert len(sink.events) == 1

    def test_a_sink_built_from_a_factory_is_closed_with_the_handler(self, config_logger) -> None:
        """No one but the handler holds the sink of ``sink: {"()": factory}``: closing the
        handler closes it, and its kept-alive connection (left open, it was collected with a
        ``ResourceWarning``, an error where a program runs with ``-W error``)."""
        built: list[weakref.ref[sinks.KubernetesEventSink]] = []

        def url_sink(url: str) -> sinks.KubernetesEventSink:
            made = sinks.KubernetesEventSink.from_url(url)
            built.append(weakref.ref(made))
            return made

        with LocalApiServer(namespaces=["prod"]) as server:
            sink_spec = {"()": url_sink, "url": server.url}
            _dict_config(
                {
                    "handlers": {
                        "k8s": {
                            "class": "k8s_logging_events.handler.KubernetesEventHandler",
                            "sink": sink_spec,
                        }
                    },
                    "loggers": {config_logger: {"handlers": ["k8s"], "level": "INFO"}},
                }
            )
            logging.getLogger(config_logger).warning("hello", extra={"involved": POD})
            _flushed(_only_handler(config_logger))
            assert len(server.events("prod")) == 1
            gc.collect()  # earlier tests' garbage: its warnings are not this test's
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResourceWarning)
                _dict_config({"loggers": {config_logger: {}}})  # replaces and closes it
                gc.collect()
        assert built[0]() is None  # collected: a warning it would give was given
        ours = f"'127.0.0.1', {server.port})"  # a socket to this server
        assert [str(w.message) for w in caught if ours in str(w.message)] == []

    @pytest.mark.parametrize("level", ["NOPE", 1.5])
    def test_a_refused_level_leaves_no_sink_open(self, level: object) -> None:
        """``level`` is checked before a ``"()"`` factory builds the sink: logging's own
        refusal of the level came after it, and the sink (its client, its connections) was
        left to the garbage collector, unclosed."""
        built: list[FakeEventSink] = []
        closed: list[FakeEventSink] = []

        class Sink(FakeEventSink):
            def __init__(self) -> None:
                super().__init__()
                built.append(self)

            def close(self) -> None:
                closed.append(self)

        with pytest.raises((ValueError, TypeError), match=r"[Ll]evel"):
            KubernetesEventHandler(sink={"()": Sink}, level=level)  # type: ignore[arg-type]
        assert built == closed

    def test_reconfiguring_closes_the_old_handler_and_the_new_one_works(
        self, config_logger, fresh_module_objects
    ) -> None:
        """A second dictConfig closes the first handler after writing what it had."""
        sink, _ = fresh_module_objects
        config = {
            "handlers": {
                "k8s": {
                    "class": "k8s_logging_events.handler.KubernetesEventHandler",
                    "sink": f"ext://{__name__}.SINK",
                }
            },
            "loggers": {config_logger: {"handlers": ["k8s"], "level": "DEBUG"}},
        }
        _dict_config(config)
        first = _only_handler(config_logger)
        logging.getLogger(config_logger).info("one", extra={"involved": POD, "reason": "One"})
        _dict_config(config)
        second = _only_handler(config_logger)
        assert first is not second
        assert first.closed
        assert [event.reason for event in sink.events] == ["One"]
        logging.getLogger(config_logger).info("two", extra={"involved": POD, "reason": "Two"})
        _flushed(second)
        assert [event.reason for event in sink.events] == ["One", "Two"]
        assert first.stats()["created"] == 1

    def test_the_documented_yaml_example_configures_the_handler(
        self, config_logger, monkeypatch, tmp_path, reports
    ) -> None:
        """The dictConfig example in docs/configuration.md loads as written."""
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
        match = re.search(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)
        assert match is not None
        config = yaml.safe_load(match.group(1))
        # run it on a test logger rather than on the root of the test session
        config["loggers"] = {config_logger: config.pop("root")}
        config["disable_existing_loggers"] = False
        logging.config.dictConfig(config)
        event_handler = next(
            h
            for h in logging.getLogger(config_logger).handlers
            if isinstance(h, KubernetesEventHandler)
        )
        logging.getLogger(config_logger).warning("Back-off", extra={"involved": POD})
        event_handler.flush()
        assert event_handler.stats()["accepted"] == 1


# --- what a record becomes ---------------------------------------------------------------------


class TestRecordToEvent:
    """Which records become events, and what the events say."""

    def test_records_without_involved_never_reach_emit(self, make, log, monkeypatch) -> None:
        """Without ``involved`` the filter rejects the record: no recorder, no thread."""
        event_handler = make()
        emitted: list[logging.LogRecord] = []
        monkeypatch.setattr(event_handler, "emit", emitted.append)
        log.addHandler(event_handler)
        for number in range(1000):
            log.warning("plain record %d", number)
        log.warning("other extras only", extra={"reason": "NotAnEvent"})
        assert emitted == []
        assert event_handler.broadcaster is None
        assert event_handler.stats()["accepted"] == 0

    def test_a_handler_filter_may_add_the_involved_object(self, make, log, fake) -> None:
        """``filters`` are applied as for any handler (docs/configuration.md): a filter on the
        handler runs before the handler looks for ``involved``, so one that adds it (and a
        reason) to every record it passes makes events, and one that rejects a record keeps
        it from becoming one."""
        event_handler = make()

        def about_the_pod(record: logging.LogRecord) -> bool:
            if record.getMessage().startswith("private"):
                return False
            record.involved = POD
            record.reason = "Disk"
            return True

        event_handler.addFilter(about_the_pod)
        log.addHandler(event_handler)
        log.warning("disk almost full")
        log.warning("private matter", extra={"involved": POD})
        _flushed(event_handler)
        assert [(e.reason, e.message, e.involved_object.name) for e in fake.events] == [
            ("Disk", "disk almost full", "web-0")
        ]

    @pytest.mark.skipif(sys.version_info < (3, 12), reason="filters return records from 3.12")
    @pytest.mark.parametrize("kind", [KubernetesEventHandler, _Counting])
    def test_a_handler_filter_may_return_the_record_to_make_the_event_of(
        self, make, log, fake, kind: type[KubernetesEventHandler]
    ) -> None:
        """From Python 3.12 a filter may return a record in place of the one logged: the event
        is made of that record (its object, its message), the logged one is left as it was;
        also in a subclass with its own ``emit()`` (that one was handed the logged record, and
        made no event: it was about no object)."""
        event_handler = make(kind=kind)
        logged: list[logging.LogRecord] = []

        def about_the_pod(record: logging.LogRecord) -> logging.LogRecord:
            logged.append(record)
            return logging.makeLogRecord({**vars(record), "msg": "disk full", "involved": POD})

        event_handler.addFilter(about_the_pod)
        log.addHandler(event_handler)
        log.warning("disk almost full")
        _flushed(event_handler)
        assert [(e.message, e.involved_object.name) for e in fake.events] == [
            ("disk full", "web-0")
        ]
        assert "involved" not in vars(logged[0])

    def test_a_handler_filter_that_raises_never_breaks_the_program_that_logs(
        self, make, log, fake, reports
    ) -> None:
        """The handler's filters now see every record, also those about no object: a filter
        written for records about objects (``record.involved["kind"]``) raises on the others.
        That costs no log call its record (no exception into the application, the other
        handlers still see it); a record about an object whose filter raised makes no event,
        counted as refused and said once for its call site."""
        event_handler = make()
        seen = SnapshotHandler()

        def pods_only(record: logging.LogRecord) -> bool:
            return bool(vars(record)["involved"]["kind"] == "Pod")

        def boom(record: logging.LogRecord) -> bool:
            if vars(record).get("reason") == "Boom":
                raise RuntimeError("a broken filter")
            return True

        event_handler.addFilter(pods_only)
        event_handler.addFilter(boom)
        log.addHandler(event_handler)
        log.addHandler(seen)
        log.warning("no object here")
        log.warning("about the node", extra={"involved": NODE})
        log.warning("about the pod", extra={"involved": POD})
        for _ in range(2):
            log.warning("broken", extra={"involved": POD, "reason": "Boom"})
        _flushed(event_handler)
        assert [event.message for event in fake.events] == ["about the pod"]
        assert len(seen.snapshots) == 5
        assert event_handler.stats()["refused"] == 2
        said = [text for text in reports.messages() if "a broken filter" in text]
        assert len(said) == 1, reports.messages()

    def test_a_record_logged_by_an_event_watcher_is_refused_and_said(
        self, make, log, fake, reports
    ) -> None:
        """An event watcher's handler runs on the library's thread: a record about an object
        logged there makes no event (each event could make the next), but it is counted as
        refused and said once, not lost in silence."""
        event_handler = make()
        log.addHandler(event_handler)
        watched = recorder.EventBroadcaster()

        def mirror(event: models.Event) -> None:
            for _ in range(2):
                log.warning("Saw %s", event.reason, extra={"involved": POD, "reason": "Seen"})

        watched.start_event_watcher(mirror)
        watched.new_recorder("ctl").event(NODE, models.NORMAL, "Started", "Started")
        watched.shutdown(10)
        assert event_handler.stats()["refused"] == 2
        assert fake.events == []
        said = [text for text in reports.messages() if "an event watcher's handler" in text]
        assert len(said) == 1, reports.messages()

    def test_a_finaliser_the_collector_runs_on_the_librarys_thread_still_makes_its_event(
        self, make, log, fake
    ) -> None:
        """A ``__del__`` that logs about an object runs wherever the cyclic collector does,
        often on one of the library's busy threads: its record was refused as if an event
        watcher had logged it (a third of 3,000 in a run). Code the collector runs there is
        the application's: its record is an event. The watcher's own record is still refused."""
        event_handler = make()
        log.addHandler(event_handler)
        watched = recorder.EventBroadcaster()

        class Leaky:
            def __init__(self) -> None:
                self.cycle = self  # only the cyclic collector frees it

            def __del__(self) -> None:
                log.warning("Leaked a connection", extra={"involved": POD, "reason": "Leaked"})

        def collect(event: models.Event) -> None:
            Leaky()
            gc.collect()  # here, on the watcher's thread
            log.warning("Saw %s", event.reason, extra={"involved": POD, "reason": "Seen"})

        enabled = gc.isenabled()
        gc.disable()  # no collection elsewhere first: only the watcher's
        try:
            watched.start_event_watcher(collect)
            watched.new_recorder("ctl").event(NODE, models.NORMAL, "Started", "Started")
            watched.shutdown(10)
        finally:
            if enabled:
                gc.enable()
        assert event_handler.stats()["refused"] == 1  # the watcher's own record
        _flushed(event_handler)
        assert [event.reason for event in fake.events] == ["Leaked"]

    @pytest.mark.parametrize(
        ("level", "expected"),
        [
            (logging.DEBUG, models.NORMAL),
            (logging.INFO, models.NORMAL),
            (logging.WARNING, models.WARNING),
            (logging.ERROR, models.WARNING),
            (logging.CRITICAL, models.WARNING),
        ],
    )
    def test_warning_and_above_become_warning_events(
        self, make, log, fake, level, expected
    ) -> None:
        """The level chooses the type: WARNING and above are ``Warning``, the rest ``Normal``."""
        event_handler = make()
        log.addHandler(event_handler)
        log.log(level, "something", extra={"involved": POD})
        _flushed(event_handler)
        assert [expected] == [event.type for event in fake.events]

    def test_event_type_overrides_the_level(self, make, log, fake) -> None:
        """``event_type`` wins over the level, whatever its case."""
        event_handler = make()
        log.addHandler(event_handler)
        log.error("handled", extra={"involved": POD, "event_type": "normal"})
        _flushed(event_handler)
        assert [event.type for event in fake.events] == [models.NORMAL]

    def test_extras_fill_in_the_event(self, make, log, fake) -> None:
        """reason, action, related, annotations and field_path reach the event."""
        event_handler = make()
        log.addHandler(event_handler)
        log.info(
            "Scaled up",
            extra={
                "involved": POD,
                "reason": "ScalingReplicaSet",
                "action": "Scale",
                "related": NODE,
                "annotations": {"example.com/revision": "7"},
                "field_path": "spec.containers{app}",
            },
        )
        _flushed(event_handler)
        (event,) = fake.events
        assert (
            event.reason,
            event.action,
            event.message,
        ) == ("ScalingReplicaSet", "Scale", "Scaled up")
        assert event.related is not None
        assert event.related.name == "node-1"
        assert dict(event.annotations) == {"example.com/revision": "7"}
        assert event.involved_object.field_path == "spec.containers{app}"
        assert models.EventSource("ctl", "node-1") == event.source

    def test_the_event_is_what_the_call_saw_whatever_the_caller_changes_after(
        self, make, log, fake
    ) -> None:
        """emit snapshots on the caller's thread: a controller that reuses one manifest, one
        annotations dict and one argument list, changing them after each call, gets one event
        per call as it was logged, never the objects' later state."""
        event_handler = make()
        log.addHandler(event_handler)
        pod: dict[str, Any] = copy.deepcopy(POD)
        node: dict[str, Any] = copy.deepcopy(NODE)
        annotations = {"example.com/try": "0"}
        args = ["image:0"]
        for number in range(3):
            log.warning(
                "Back-off pulling %s",
                args,
                extra={
                    "involved": pod,
                    "related": node,
                    "annotations": annotations,
                    "reason": "BackOff",
                },
            )
            pod["metadata"].update(name=f"web-{number + 1}", uid=f"uid-web-{number + 1}")
            node["metadata"]["name"] = f"node-{number + 2}"
            annotations["example.com/try"] = str(number + 1)
            args[0] = f"image:{number + 1}"
        _flushed(event_handler)
        seen = sorted(
            (
                event.involved_object.name,
                event.involved_object.uid,
                event.related.name if event.related else None,
                dict(event.annotations),
                event.message,
            )
            for event in fake.events
        )
        assert seen == [
            (f"web-{n}", f"uid-web-{n}", f"node-{n + 1}", {"example.com/try": str(n)}, message)
            for n, message in enumerate(f"Back-off pulling ['image:{n}']" for n in range(3))
        ]

    def test_the_default_reason_is_used_without_one(self, make, log, fake) -> None:
        """A record without ``reason`` gets the handler's default reason."""
        event_handler = make(default_reason="Observed")
        log.addHandler(event_handler)
        log.info("hello", extra={"involved": POD})
        _flushed(event_handler)
        assert [event.reason for event in fake.events] == ["Observed"]

    def test_cluster_scoped_objects_get_events_in_default(self, make, log, fake) -> None:
        """A Node has no namespace: its event goes to ``default``, the one the server allows."""
        event_handler = make()
        log.addHandler(event_handler)
        log.warning("NotReady", extra={"involved": NODE})
        _flushed(event_handler)
        (event,) = fake.events
        assert (event.namespace, event.involved_object.namespace) == ("default", "")

    def test_the_formatter_shapes_the_message(self, make, log, fake) -> None:
        """With a formatter set, the event's message is the formatted record."""
        event_handler = make()
        event_handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        log.addHandler(event_handler)
        log.warning("pulled %s", "nginx", extra={"involved": POD})
        _flushed(event_handler)
        assert [event.message for event in fake.events] == ["[WARNING] pulled nginx"]

    def test_basicconfigs_console_format_stays_out_of_the_events(self, make, fake) -> None:
        """``basicConfig(format=..., handlers=[console, events])`` gives its format to every
        handler without a formatter: with a time in it, each repeat was an event of its own,
        `count: 1`, its message starting with the time. The event is the message alone."""
        event_handler = make()
        logging.getLogger().handlers.clear()  # basicConfig does nothing on a configured root
        logging.basicConfig(
            format="%(asctime)s %(levelname)s %(message)s", handlers=[event_handler]
        )
        app = logging.getLogger("tests.handler.basic")
        for _ in range(3):
            app.warning("pulled %s", "nginx", extra={"involved": POD})
        _flushed(event_handler)
        assert [(event.message, event.count) for event in fake.events] == [("pulled nginx", 3)]

    def test_the_librarys_own_logger_never_makes_events(self, make, fake) -> None:
        """Records of ``k8s_logging_events`` (and children) are ignored even if routed here."""
        event_handler = make()
        for name in ("k8s_logging_events", "k8s_logging_events.writer"):
            own = logging.getLogger(name)
            own.addHandler(event_handler)
            own.setLevel(logging.DEBUG)
            own.warning("about the library", extra={"involved": POD})
        assert event_handler.broadcaster is None
        assert fake.events == []

    def test_a_subclass_filter_emit_and_format_are_called_as_logging_calls_them(
        self, fake, clock
    ) -> None:
        """A subclass's own ``filter`` (adding the object, keeping a record out), ``emit``
        (counting) and ``format`` (redacting) are what a logging call reaches, as for any
        ``logging.Handler``: all three were passed over, the record went straight into the
        queue (and a record the subclass's filter kept out became an event)."""
        event_handler = _Redacting(component="ctl", sink=fake, clock=clock, sleep=clock.sleep)
        log = _app_logger()
        log.addHandler(event_handler)
        try:
            log.warning("login as %s", "admin:hunter2")
            try:
                raise ValueError("no route")
            except ValueError:
                log.exception("login as %s", "root:toor", extra={"involved": POD})
            log.warning("token refreshed", extra={"involved": POD, "private": True})
            _flushed(event_handler)
        finally:
            event_handler.close()
        assert event_handler.emitted == 2
        assert sorted(event.message for event in fake.events) == [
            "login as admin:***",
            "login as root:***: ValueError: no route",
        ]

    def test_the_handlers_level_holds_where_logging_leaves_it_unchecked(
        self, make, log, fake
    ) -> None:
        """A ``QueueListener`` hands every record to its handlers unless told
        ``respect_handler_level`` (dictConfig's ``QueueHandler`` with ``handlers:`` does not
        tell it by default), and a ``MemoryHandler`` flushes all it buffered: at ``level:
        WARNING``, set so that INFO lines make no events, every INFO line made one."""
        event_handler = make(level="WARNING")
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(records, event_handler)
        buffered = logging.handlers.MemoryHandler(100, logging.ERROR, target=event_handler)
        log.handlers = [logging.handlers.QueueHandler(records), buffered]
        listener.start()
        try:
            log.info("Synced", extra={"involved": POD, "reason": "Synced"})
            log.debug("Body", extra={"involved": POD, "reason": "Body"})
            log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        finally:
            listener.stop()
            buffered.close()
        _flushed(event_handler)
        assert [(event.reason, event.count) for event in fake.events] == [("BackOff", 2)]


class _Redacting(KubernetesEventHandler):
    """A user's subclass: events about POD by default, none for private records; counts what
    it emits, and keeps passwords out of its messages."""

    emitted = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "private", False):
            return False
        record.__dict__.setdefault("involved", POD)
        return super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        self.emitted += 1
        super().emit(record)

    def format(self, record: logging.LogRecord) -> str:
        return re.sub(r":\S+", ":***", super().format(record))


class TestExceptions:
    """A record with an exception: a summary by default, configurable."""

    @staticmethod
    def _log_failure(log: logging.Logger) -> None:
        try:
            raise ValueError("image not found")
        except ValueError:
            log.exception("Reconcile failed", extra={"involved": POD})

    def test_the_exception_type_and_message_by_default(self, make, log, fake) -> None:
        """``summary``: the message, then ``ExcType: text``; no traceback."""
        event_handler = make()
        log.addHandler(event_handler)
        self._log_failure(log)
        _flushed(event_handler)
        (event,) = fake.events
        assert event.message == "Reconcile failed: ValueError: image not found"
        assert event.type == models.WARNING

    def test_the_summary_follows_the_formatted_message(self, make, log, fake) -> None:
        """With a formatter, the traceback is left out and the summary appended."""
        event_handler = make()
        event_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(event_handler)
        self._log_failure(log)
        _flushed(event_handler)
        assert [event.message for event in fake.events] == [
            "ERROR Reconcile failed: ValueError: image not found"
        ]

    def test_the_whole_traceback_when_asked(self, make, log, fake) -> None:
        """``traceback``: the message as the formatter renders it, traceback included."""
        event_handler = make(exception_detail="traceback", max_message_bytes=4096)
        log.addHandler(event_handler)
        self._log_failure(log)
        _flushed(event_handler)
        (event,) = fake.events
        assert event.message.startswith("Reconcile failed\nTraceback (most recent call last):")
        assert event.message.endswith("ValueError: image not found")

    @pytest.mark.parametrize(
        ("detail", "expected"),
        [
            ("summary", "Reconcile failed: ValueError: image not found"),
            ("none", "Reconcile failed"),
        ],
    )
    def test_a_record_through_a_queue_handler_gets_no_traceback_either(
        self, make, log, fake, detail: str, expected: str
    ) -> None:
        """The stdlib's QueueHandler (before a QueueListener, or dictConfig's ``queue``
        handler) formats a record before it queues it: the traceback and any stack become
        part of its message, and its exception is dropped. The event still follows
        ``exception_detail``: no traceback text unless asked for."""
        event_handler = make(exception_detail=detail)
        queued: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(queued, event_handler)
        log.addHandler(logging.handlers.QueueHandler(queued))
        listener.start()
        try:
            self._log_failure(log)
            log.warning("Where from?", stack_info=True, extra={"involved": POD})
            log.error("No exception", exc_info=True, extra={"involved": POD})  # noqa: LOG014
        finally:
            listener.stop()
        _flushed(event_handler)
        messages = sorted(event.message for event in fake.events)
        assert messages == sorted([expected, "Where from?", "No exception"])

    def test_nothing_about_the_exception_when_asked(self, make, log, fake) -> None:
        """``none``: the message alone."""
        event_handler = make(exception_detail="none")
        log.addHandler(event_handler)
        self._log_failure(log)
        _flushed(event_handler)
        assert [event.message for event in fake.events] == ["Reconcile failed"]

    @pytest.mark.parametrize(
        ("detail", "expected"),
        [
            ("summary", "Reconcile failed: ValueError: image not found\nin registry"),
            ("none", "Reconcile failed"),
        ],
    )
    def test_behind_a_queue_handler_no_traceback_either(
        self, make, log, fake, detail, expected
    ) -> None:
        """A ``QueueHandler`` in front formats the record before queueing it (traceback and
        stack in its message, ``exc_info`` gone): the event still says only what
        ``exception_detail`` asks for, no frame of any stack."""
        event_handler = make(exception_detail=detail)
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        log.addHandler(logging.handlers.QueueHandler(records))
        try:
            try:
                raise KeyError("cause")
            except KeyError as cause:
                raise ValueError("image not found\nin registry") from cause
        except ValueError:
            log.exception("Reconcile failed", stack_info=True, extra={"involved": POD})
        event_handler.handle(records.get_nowait())
        _flushed(event_handler)
        assert [event.message for event in fake.events] == [expected]

    def test_behind_a_queue_handler_an_exception_text_with_indented_lines_is_summarised_whole(
        self, make, log, fake
    ) -> None:
        """An exception whose text has indented lines (a validation error listing its
        fields, as pydantic's does) is summarised behind a ``QueueHandler`` as without one:
        its whole text, not cut at (or lost after) its last indented line."""
        text = "2 validation errors for Pod\nspec.image\n  Field required\nspec.name\n  Too long"
        event_handler = make(exception_detail="summary")
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        log.addHandler(logging.handlers.QueueHandler(records))
        try:
            raise ValueError(text)
        except ValueError:
            log.exception("Reconcile failed", extra={"involved": POD})
        event_handler.handle(records.get_nowait())
        _flushed(event_handler)
        assert [event.message for event in fake.events] == [f"Reconcile failed: ValueError: {text}"]

    def test_behind_a_queue_handler_an_exception_of_a_module_is_named_as_without_one(
        self, make, log, fake
    ) -> None:
        """An exception whose class lives in a module (``client.ApiException``, one of the
        application's) is named by its class behind a ``QueueHandler`` as without one, not
        by the module path the formatted traceback gives it (``kubernetes.client...``)."""
        event_handler = make(exception_detail="summary")
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        for error in (client.ApiException(status=404, reason="Not Found"), _ModuleError("boom")):
            for queued in (False, True):
                log.handlers = [logging.handlers.QueueHandler(records) if queued else event_handler]
                try:
                    raise error
                except Exception:
                    log.exception(
                        "Reconcile failed", extra={"involved": POD, "reason": f"Queued{queued}"}
                    )
            event_handler.handle(records.get_nowait())
        _flushed(event_handler)
        messages = [event.message.rstrip("\n") for event in fake.events]
        assert messages[0].startswith("Reconcile failed: ApiException: (404)"), messages
        assert messages[2] == "Reconcile failed: _ModuleError: boom"
        assert messages[1::2] == messages[0::2]


class _ModuleError(Exception):
    """An exception class of the application's (its module is this test's)."""


# --- the record is the application's ----------------------------------------------------------


class TestRecordsStayIntact:
    """caplog and the other handlers see the record exactly as logged."""

    @pytest.mark.parametrize("detail", ["summary", "traceback"])
    def test_caplog_sees_every_record_unchanged(self, make, caplog, detail) -> None:
        """Nothing the handler does (formatting included) shows on the record afterwards."""
        caplog.set_level(logging.INFO)
        logger = logging.getLogger(f"tests.handler.caplog{next(_names)}")
        before, after = SnapshotHandler(), SnapshotHandler()
        event_handler = make(exception_detail=detail)
        event_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        for each in (before, event_handler, after):
            logger.addHandler(each)
        logger.info("pulled %s", "nginx", extra={"involved": POD, "reason": "Pulled"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed", extra={"involved": POD})
        logger.warning("no object here")
        assert before.snapshots == after.snapshots
        for snapshot in after.snapshots:
            assert {"message", "asctime", "exc_text"}.isdisjoint(
                key for key, value in snapshot.items() if value is not None
            )
        assert [record.getMessage() for record in caplog.records] == [
            "pulled nginx",
            "failed",
            "no object here",
        ]
        assert vars(caplog.records[0])["involved"] is POD


# --- bad input ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadInput:
    """One kind of bad input: how it is logged, what is reported, what becomes of it."""

    report: str
    extra: dict[str, Any] = field(default_factory=dict)
    msg: str = "something happened"
    args: tuple[object, ...] = ()
    level: int = logging.WARNING
    check: Callable[[models.Event], bool] | None = None
    """None: no event; else a check of the event that was recorded."""


EVENT_OBJECT = models.Event(
    name="web-0.17a",
    namespace="prod",
    involved_object=models.ObjectReference(kind="Pod", namespace="prod", name="web-0"),
)


class _Unrepresentable:
    """A value whose ``str()`` and ``repr()`` raise (a broken proxy, a half-built object)."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _UnprintableError(Exception):
    """An exception whose ``str()`` and ``repr()`` raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _RaisesUnprintable:
    """A format argument whose ``str()`` raises an exception that cannot be shown."""

    def __str__(self) -> str:
        raise _UnprintableError


class _BrokenProxy:
    """A lazy proxy whose target failed to load: even its ``__class__`` raises (as a
    ``SimpleLazyObject``'s does when its factory raises)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("the proxied object could not be loaded")


class _AmbiguousTruth:
    """A value whose truth raises, as a numpy array's does."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array is ambiguous")


class _UnreadableMapping(Mapping[str, object]):
    """A mapping whose every lookup raises (a broken lazy proxy)."""

    def __getitem__(self, key: str) -> object:
        raise RuntimeError("unreadable")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("unreadable")

    def __len__(self) -> int:
        raise RuntimeError("unreadable")


BAD_INPUTS = {
    "string-as-involved": BadInput("Unable to refer to the involved object", {"involved": "web-0"}),
    "proxy-whose-class-raises": BadInput(
        "Unable to refer to the involved object: the proxied object could not be loaded",
        {"involved": _BrokenProxy()},
    ),
    "dict-without-kind": BadInput(
        "has no kind", {"involved": {"apiVersion": "v1", "metadata": {"name": "web-0"}}}
    ),
    "reference-without-a-name": BadInput(
        "has no name", {"involved": models.ObjectReference(kind="Pod", namespace="prod")}
    ),
    "client-reference-without-a-kind": BadInput(
        "has no kind", {"involved": client.V1ObjectReference(name="web-0", namespace="prod")}
    ),
    # the server refuses it: it was sent, and counted failed with no call site named
    "namespace-that-is-no-dns-label": BadInput(
        "its namespace 'Shop Bad' is no DNS label",
        {"involved": {"kind": "Pod", "name": "web-0", "namespace": "Shop Bad"}},
    ),
    "event-model-as-involved": BadInput("events about events", {"involved": EVENT_OBJECT}),
    "event-manifest-as-involved": BadInput(
        "events about events",
        {"involved": {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}}},
    ),
    "event-manifest-with-its-kind-in-another-case": BadInput(
        "events about events",
        {"involved": {"apiVersion": "v1", "kind": "event", "metadata": {"name": "e"}}},
    ),
    "bad-format-arguments": BadInput("Unable to format the message", msg="%d pods", args=("many",)),
    # the report named the error with %r: a logging error in every handler that showed it
    "format-argument-raising-an-error-that-cannot-be-shown": BadInput(
        "Unable to format the message: <a _UnprintableError that cannot be shown>",
        msg="%s",
        args=(_RaisesUnprintable(),),
    ),
    "lone-surrogates": BadInput(
        "U+FFFD",
        msg="read b'\\xff' as \udcff",
        check=lambda event: event.message == "read b'\\xff' as \ufffd",
    ),
    "nul": BadInput(
        "U+FFFD", msg="before\x00after", check=lambda event: event.message == "before\ufffdafter"
    ),
    "a-1-mb-message": BadInput(
        "cut at a character boundary",
        msg="é" * 500_000,
        check=lambda event: (
            len(event.message.encode()) <= 1024 and event.message.endswith(handler.TRUNCATION_MARK)
        ),
    ),
    "reason-with-spaces": BadInput(
        "not one CamelCase word",
        {"reason": "image pull failed"},
        check=lambda event: event.reason == "ImagePullFailed",
    ),
    "reason-of-500-chars": BadInput(
        "not one CamelCase word",
        {"reason": "R" * 500},
        check=lambda event: event.reason == "R" * 128,
    ),
    "annotations-with-non-string-values": BadInput(
        "made strings with str()",
        {"annotations": {"attempt": 3, "retry": True}},
        check=lambda event: dict(event.annotations) == {"attempt": "3", "retry": "True"},
    ),
    "annotation-key-the-server-rejects": BadInput(
        "invalid keys",
        {"annotations": {"not a key": "x", "example.com/ok": "y"}},
        check=lambda event: dict(event.annotations) == {"example.com/ok": "y"},
    ),
    "annotations-not-a-mapping": BadInput(
        "not a mapping", {"annotations": ["a=b"]}, check=lambda event: not event.annotations
    ),
    "unknown-event-type": BadInput(
        "Unsupported event_type",
        {"event_type": "Error"},
        level=logging.INFO,
        check=lambda event: event.type == models.NORMAL,
    ),
    "event-type-whose-repr-raises": BadInput(
        "Unsupported event_type",
        {"event_type": _Unrepresentable()},
        check=lambda event: event.type == models.WARNING,
    ),
    "field-path-that-is-not-a-string": BadInput(
        "Ignoring field_path of type int: not a string",
        {"field_path": 5},
        check=lambda event: not event.involved_object.field_path,
    ),
    "related-that-is-not-an-object": BadInput(
        "Ignoring the related object",
        {"related": "node-1"},
        check=lambda event: event.related is None,
    ),
}


class TestBadInput:
    """Bad input never reaches the application as an exception."""

    @pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
    def test_is_reported_once_per_call_site_and_the_record_still_flows(
        self, make, fake, reports, capsys, case: BadInput
    ) -> None:
        """No exception, one report for a call site logged twice, other handlers see both."""
        # made here, not in a fixture: pytest's own capture handler would format (and fail
        # on) the bad record of a logger that is already non-propagating when the test starts
        log = _app_logger()
        event_handler = make()
        others = ListHandler()
        log.addHandler(event_handler)
        log.addHandler(others)
        extra = {"involved": POD, **case.extra}
        for _ in range(2):
            log.log(case.level, case.msg, *case.args, extra=extra)
        assert len(others.records) == 2
        matching = [text for text in reports.messages() if case.report in text]
        assert len(matching) == 1, reports.messages()
        assert f"{__file__}:" in matching[0]  # the call site is named
        assert "Logging error" not in capsys.readouterr().err
        stats = event_handler.stats()
        if case.check is None:
            assert stats["refused"] == 2
            assert event_handler.broadcaster is None or fake.events == []
            return
        assert stats["repaired"] == 2
        _flushed(event_handler)
        (event,) = fake.events
        assert case.check(event), event
        assert event.count == 2

    @pytest.mark.parametrize("levelno", [None, "WARNING"], ids=["none", "a-level-name"])
    def test_a_record_without_a_numeric_level_becomes_a_normal_event(
        self, make, fake, reports, levelno: object
    ) -> None:
        """``logging.makeLogRecord`` (a record rebuilt from JSON, a test's hand-made record)
        leaves ``levelno`` None unless given: the comparison with WARNING raised inside the
        handler, which refused the record with a bare TypeError. The event is Normal, and the
        record's level is said once."""
        event_handler = make()
        fields = {"msg": "made by hand", "involved": POD, "pathname": "made.py", "lineno": 7}
        record = logging.makeLogRecord({**fields, "levelno": levelno})
        assert event_handler.handle(record)
        assert event_handler.handle(logging.makeLogRecord({**fields, "levelno": levelno}))
        stats = event_handler.stats()
        assert (stats["refused"], stats["repaired"]) == (0, 2), stats
        matching = [text for text in reports.messages() if "is not a number" in text]
        assert len(matching) == 1, reports.messages()
        assert "made.py:7" in matching[0]
        _flushed(event_handler)
        (event,) = fake.events
        assert (event.type, event.message, event.count) == (models.NORMAL, "made by hand", 2)

    def test_a_record_without_a_name_is_no_exception(self, make, fake) -> None:
        """A record built by hand without ``name`` (``LogRecord.__new__`` filled from a dict,
        as some log shippers rebuild them) raised AttributeError out of ``handle()``: the
        handler read ``record.name``. It is read as absent, and the record is an event."""
        event_handler = make()
        record = logging.LogRecord.__new__(logging.LogRecord)
        vars(record).update(
            logging.makeLogRecord({"msg": "rebuilt", "involved": POD, "levelno": 30}).__dict__
        )
        del record.name
        assert event_handler.handle(record)
        event_handler.emit(record)
        _flushed(event_handler)
        (event,) = fake.events
        assert (event.message, event.count) == ("rebuilt", 2)

    def test_an_involved_object_that_is_none_is_said_and_counted(self, make, log, reports) -> None:
        """``extra={"involved": pod}`` with ``pod`` None (not fetched yet, a lookup that found
        nothing) made no event and no word: the user saw events missing without a cause. It
        is refused, counted and said once per call site; the record flows on as any other.
        With ``k8s_skip`` or ``default_involved`` it is no refusal."""
        event_handler = make()
        others = ListHandler()
        log.addHandler(event_handler)
        log.addHandler(others)
        for _ in range(2):
            log.warning("Back-off pulling image", extra={"involved": None, "reason": "BackOff"})
        log.warning("skipped", extra={"involved": None, "k8s_skip": True})
        log.warning("plain record")
        assert len(others.records) == 4
        assert event_handler.stats()["refused"] == 2
        matching = [text for text in reports.messages() if "involved object is None" in text]
        assert len(matching) == 1, reports.messages()
        assert f"{__file__}:" in matching[0]
        assert event_handler.broadcaster is None

    def test_an_involved_none_is_the_pod_with_default_involved(
        self, make, log, reports, monkeypatch
    ) -> None:
        """``default_involved: pod`` stands for a record without an object of its own."""
        monkeypatch.setenv("POD_NAME", "web-0")
        monkeypatch.setenv("POD_NAMESPACE", "shop")
        monkeypatch.setenv("POD_UID", "uid-1")
        event_handler = make(default_involved="pod")
        log.addHandler(event_handler)
        log.warning("about the pod", extra={"involved": None})
        stats = event_handler.stats()
        assert (stats["refused"], stats["accepted"]) == (0, 1), stats
        assert not [text for text in reports.messages() if "is None" in text]

    def test_a_second_call_site_is_reported_again(self, make, log, reports) -> None:
        """Once per call site, not once per process: another line gets its own report."""
        log.addHandler(make())
        log.warning("first site", extra={"involved": "web-0"})
        log.warning("second site", extra={"involved": "web-0"})
        assert sum("Unable to refer" in text for text in reports.messages()) == 2

    @pytest.mark.parametrize(
        "extra",
        [
            {"event_type": "Warn" * 250_000},
            {"annotations": {"not a key " * 100_000: "x"}},
            {"annotations": {f"attempt-{n}": n for n in range(50_000)}},
        ],
        ids=["huge-event-type", "huge-invalid-annotation-key", "many-non-string-annotations"],
    )
    def test_a_huge_bad_extra_gets_a_short_report(
        self, make, reports, extra: dict[str, object]
    ) -> None:
        """The report of a bad extra quotes it cut short, as it does an involved object: a
        1 MB value must not make a 1 MB warning line (on standard error, in the logs)."""
        log = _app_logger()
        log.addHandler(make())
        log.warning("big extra", extra={"involved": POD, **extra})
        assert reports.records
        for text in reports.messages():
            assert len(text) < 1000, text[:300]
            assert f"{__file__}:" in text

    @pytest.mark.parametrize("ending", ["flush", "close"])
    def test_what_the_call_site_limit_held_back_is_summarised_at_flush_and_close(
        self, make, reports, ending: str
    ) -> None:
        """Past 4,096 call sites (generated code) a kind of problem is reported once a
        minute; the reports that limit held back are summarised when the handler is flushed
        or closed, as every rate-limited report is, so a short program does not lose them."""
        event_handler = make(sink=None)
        sites = 4096 + 3
        for lineno in range(1, sites + 1):
            record = logging.LogRecord("app", logging.WARNING, "gen.py", lineno, "m", (), None)
            record.involved = "web-0"
            event_handler.handle(record)
        assert event_handler.stats()["refused"] == sites
        assert len(reports.records) == 4096 + 1  # the first past the limit is said at once
        getattr(event_handler, ending)()
        summaries = [text for text in reports.messages()[4097:] if "Unable to refer" in text]
        assert len(summaries) == 1, reports.messages()[4097:]
        assert "2 report(s) like this" in summaries[0]

    def test_an_involved_object_whose_attributes_recurse_is_refused_not_raised(
        self, make, log, reports
    ) -> None:
        """A buggy lazy proxy whose attribute lookup recurses: the recursion is the object's,
        not the handler's, so log.warning(...) returns and the refusal is reported."""

        class Recursive:
            def __getattr__(self, name: str) -> object:
                return getattr(self, name)  # recurses until RecursionError

        handler = make()
        log.addHandler(handler)
        log.warning("lazy", extra={"involved": Recursive()})
        assert handler.stats()["refused"] == 1
        assert any("recurse" in text for text in reports.messages())

    @pytest.mark.parametrize(
        "extra",
        [
            {"involved": POD, "k8s_skip": _AmbiguousTruth()},
            {"extra": {"involved": POD, "k8s_skip": _AmbiguousTruth()}},
            {"involved": POD, "extra": _UnreadableMapping()},
        ],
        ids=["k8s-skip-whose-truth-raises", "loguru-k8s-skip-whose-truth-raises", "bad-extra"],
    )
    def test_extras_that_raise_when_read_are_refused_not_raised(
        self, make, reports, extra: dict[str, object]
    ) -> None:
        """Reading the extras happens before the event is made, still on the caller's path:
        a ``k8s_skip`` whose truth raises (a numpy array) or an ``extra`` mapping whose
        lookups raise costs only this record's event (refused, reported); the call returns
        and the other handlers get the record."""
        log = _app_logger()
        handler = make()
        others = ListHandler()
        log.addHandler(handler)
        log.addHandler(others)
        log.warning("hostile extras", extra=extra)
        assert len(others.records) == 1
        assert handler.stats()["refused"] == 1
        assert any("No event for this record" in text for text in reports.messages())

    @pytest.mark.parametrize("name", ["reason", "action", "annotations", "k8s_skip"])
    def test_an_extra_whose_text_recurses_is_refused_not_raised(
        self, make, reports, name: str
    ) -> None:
        """A buggy lazy proxy as ``reason``, ``action``, an annotation's value or ``k8s_skip``:
        its ``str()`` (or truth) recursing is the object's problem, as for ``involved``; the
        logging call returns, the handlers after this one get the record, and it is counted
        refused and reported."""

        class Recursive:
            def __str__(self) -> str:
                return str(self)

            def __bool__(self) -> bool:
                return bool(self)

        value: object = {"key": Recursive()} if name == "annotations" else Recursive()
        log = _app_logger()
        event_handler = make()
        others = ListHandler()
        log.addHandler(event_handler)
        log.addHandler(others)
        log.warning("lazy extra", extra={"involved": POD, name: value})
        assert len(others.records) == 1
        assert event_handler.stats()["refused"] == 1
        assert any("recurs" in text.lower() for text in reports.messages()), reports.messages()

    def test_a_recursion_error_in_the_formatter_still_propagates(self, make, reports) -> None:
        """As in the stdlib handlers, a RecursionError of the logging machinery itself (here
        the formatter) propagates; nothing else does. The record made no event: it is
        counted refused and said (it was neither, the one record about an object without
        an outcome)."""

        class Looping(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                raise RecursionError("maximum recursion depth exceeded")

        handler = make()
        handler.setFormatter(Looping())
        record = logging.LogRecord("app", logging.WARNING, __file__, 1, "m", (), None)
        record.involved = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
        with pytest.raises(RecursionError):
            handler.handle(record)
        assert handler.stats()["refused"] == 1
        assert any("RecursionError" in text for text in reports.messages()), reports.messages()


class TestRepairs:
    """Every repair is reported and counted: what kubectl would not find is filed where it can."""

    def test_a_pod_without_a_namespace_is_filed_in_default_with_one_warning_per_call_site(
        self, make, log, fake, reports
    ) -> None:
        """A Pod manifest without metadata.namespace: object and event in 'default', one
        warning per call site that says so and how to give the namespace; counted."""
        event_handler = make()
        log.addHandler(event_handler)
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}}
        for _ in range(3):
            log.warning("no namespace", extra={"involved": manifest})
        log.warning("elsewhere", extra={"involved": manifest})
        _flushed(event_handler)
        filed = [t for t in reports.messages() if "has no namespace" in t]
        assert len(filed) == 2, reports.messages()
        assert "filed in namespace 'default'" in filed[0]
        assert "metadata.namespace" in filed[0]
        assert event_handler.stats()["repaired"] == 4
        events = sorted(fake.events, key=lambda e: e.message)
        assert [(e.namespace, e.involved_object.namespace) for e in events] == [
            ("default", "default"),
            ("default", "default"),
        ]

    def test_a_refused_record_reports_no_repair_of_the_event_it_did_not_make(
        self, make, fake, reports
    ) -> None:
        """A record refused for one problem (its message cannot be formatted) makes no event:
        no report claims that its event was filed in 'default'. The repair is reported when
        that call site first makes an event."""
        log = _app_logger()  # not the fixture's: pytest's capture would format the bad record
        event_handler = make()
        log.addHandler(event_handler)
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}}
        for count in ("many", 3):
            log.warning("%d pods", count, extra={"involved": manifest})
            if count == "many":
                assert not [t for t in reports.messages() if "has no namespace" in t]
                assert [t for t in reports.messages() if "Unable to format" in t]
        _flushed(event_handler)
        assert sum("has no namespace" in t for t in reports.messages()) == 1
        assert event_handler.stats()["refused"] == event_handler.stats()["repaired"] == 1
        assert [e.namespace for e in fake.events] == ["default"]

    def test_a_cluster_scoped_or_custom_kind_without_a_namespace_is_left_alone(
        self, make, log, fake, reports
    ) -> None:
        """A Node has no namespace, and a custom kind's scope is unknown: no repair."""
        event_handler = make()
        log.addHandler(event_handler)
        widget = {"apiVersion": "example.com/v1", "kind": "pod", "metadata": {"name": "w"}}
        log.warning("node", extra={"involved": NODE})
        log.warning("widget", extra={"involved": widget})
        _flushed(event_handler)
        assert event_handler.stats()["repaired"] == 0
        assert reports.messages() == []
        refs = sorted((e.involved_object.kind, e.involved_object.namespace) for e in fake.events)
        assert refs == [("Node", ""), ("pod", "")]

    def test_a_cluster_scoped_object_given_a_namespace_is_filed_without_it_in_default(
        self, make, log, fake, reports
    ) -> None:
        """A Node (or a ClusterRole) given with a namespace by mistake: the event was filed
        in that namespace with the namespace on the object, where ``kubectl describe node``
        (which selects ``involvedObject.namespace=""``) never finds it. The object keeps no
        namespace and the event goes to ``default``, as for any cluster-scoped object; one
        warning per call site, counted as repaired. A custom kind's scope is unknown: its
        namespace stays."""
        event_handler = make()
        log.addHandler(event_handler)
        node = {"kind": "Node", "name": "node-1", "namespace": "shop", "apiVersion": "v1"}
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "reader", "namespace": "default"},
        }
        widget = {"apiVersion": "example.com/v1", "kind": "Node", "metadata": {"name": "w"}}
        for _ in range(2):
            log.warning("node", extra={"involved": node})
        log.warning("role", extra={"involved": role})
        log.warning(
            "widget", extra={"involved": {**widget, "metadata": {"name": "w", "namespace": "shop"}}}
        )
        _flushed(event_handler)
        filed = [t for t in reports.messages() if "cluster-scoped" in t]
        assert len(filed) == 2, reports.messages()
        assert "'shop'" in filed[0]
        assert event_handler.stats()["repaired"] == 3
        placed = sorted(
            (e.involved_object.kind, e.namespace, e.involved_object.namespace) for e in fake.events
        )
        assert placed == [
            ("ClusterRole", "default", ""),
            ("Node", "default", ""),
            ("Node", "shop", "shop"),
        ]

    def test_a_flat_reference_with_a_lower_case_kind_gets_the_kinds_spelling(
        self, make, log, fake, reports
    ) -> None:
        """kind: pod is stored as Pod (kubectl selects events by the exact kind); reported
        and counted."""
        event_handler = make()
        log.addHandler(event_handler)
        flat = {"kind": "pod", "name": "web-0", "namespace": "shop"}
        for _ in range(2):
            log.warning("lower case", extra={"involved": flat})
        _flushed(event_handler)
        (event,) = fake.events
        assert (event.involved_object.kind, event.count) == ("Pod", 2)
        (report,) = [t for t in reports.messages() if "case-sensitive" in t]
        assert "'pod' is recorded as 'Pod'" in report
        assert event_handler.stats()["repaired"] == 2

    def test_a_built_in_kind_without_an_api_version_gets_its_one_api_version(
        self, make, log, fake, reports
    ) -> None:
        """A flat reference ``{"kind": "Pod", "name": ..., "namespace": ...}`` without
        apiVersion made an event that ``kubectl events --for pod/NAME`` (which selects
        ``involvedObject.apiVersion=v1``) never lists. A built-in kind served in one version
        gets it, silently, as list items do; a kind of several versions (an HPA) or a
        custom one stays as given."""
        event_handler = make()
        log.addHandler(event_handler)
        for kind in ("Pod", "pod", "Deployment", "Node", "HorizontalPodAutoscaler", "Widget"):
            flat = {"kind": kind, "name": f"{kind.lower()}-1", "namespace": "shop"}
            log.warning("no apiVersion", extra={"involved": flat, "reason": kind.title()})
        _flushed(event_handler)
        versions = {e.reason: e.involved_object.api_version for e in fake.events}
        assert versions == {
            "Pod": "v1",
            "Deployment": "apps/v1",
            "Node": "v1",
            "Horizontalpodautoscaler": "",
            "Widget": "",
        }, versions
        assert event_handler.stats()["repaired"] == 2  # the kind's case, the Node's namespace
        assert not [t for t in reports.messages() if "apiVersion" in t]

    def test_an_invalid_component_is_repaired_said_once_and_every_event_counted_repaired(
        self, make, log, fake, reports
    ) -> None:
        """component 'Bad Name!' becomes 'Bad-Name' (a qualified name, as the reporting
        controller must be), said once when the handler is built, not per event; each record
        whose event carries the repaired name counts as ``repaired``, as every repair does."""
        event_handler = make(component="Bad Name!")
        assert event_handler.source.component == "Bad-Name"
        log.addHandler(event_handler)
        for _ in range(3):
            log.warning("from a bad name", extra={"involved": POD})
        _flushed(event_handler)
        (report,) = [t for t in reports.messages() if "not a qualified name" in t]
        assert "'Bad Name!'" in report
        assert "'Bad-Name'" in report
        (event,) = fake.events
        assert (event.source.component, event.reporting_controller) == ("Bad-Name", "Bad-Name")
        assert event_handler.stats()["repaired"] == 3


# --- lifecycle -----------------------------------------------------------------------------------


class TestLifecycle:
    """flush, close, logging.shutdown, owned and shared broadcasters."""

    def test_reports_of_one_of_several_handlers_name_its_component(
        self, make, log, reports
    ) -> None:
        """Two libraries' handlers in one program: what one of them could not write at its
        close, and a record reaching it closed, are said naming its component; two lines
        alike ("Unable to write 1 event occurrence(s) before the deadline of shutdown") left
        the user guessing which handler's server or flush_timeout they were about."""
        release = threading.Event()
        hanging = FakeEventSink()

        def hang(event: models.Event) -> None:
            release.wait(10)

        hanging.on_create = hang
        billing = make(component="billing")
        shipping = make(component="shipping", sink=hanging, flush_timeout=0.2)
        other = _app_logger()
        log.addHandler(billing)
        other.addHandler(shipping)
        try:
            log.warning("Charged", extra={"involved": POD})
            other.warning("Not shipped", extra={"involved": POD, "reason": "Late"})
            billing.close()
            shipping.close()
        finally:
            release.set()
        other.warning("After", extra={"involved": POD, "reason": "Late"})
        unwritten = [m for m in reports.messages() if m.startswith("Unable to write")]
        assert len(unwritten) == 1, reports.messages()
        assert "event occurrence(s) of shipping before the deadline" in unwritten[0]
        closed = [m for m in reports.messages() if "after_close" in m]
        assert len(closed) == 1, reports.messages()
        assert "closed event handler of shipping:" in closed[0]

    def test_close_writes_what_was_logged_and_is_idempotent(self, make, log, fake) -> None:
        """close() drains first; a second close() does nothing; later records are dropped."""
        event_handler = make()
        log.addHandler(event_handler)
        for name in ("a", "b", "c"):
            log.info("m", extra={"involved": POD, "reason": name.upper()})
        event_handler.close()
        event_handler.close()
        assert sorted(event.reason for event in fake.events) == ["A", "B", "C"]
        log.info("after close", extra={"involved": POD})
        assert event_handler.stats()["after_close"] == 1
        assert len(fake.events) == 3

    def test_records_reaching_a_closed_handler_are_said_once(self, make, log, fake, reports):
        """A closed handler still attached (or attached again, as logging allows) makes no
        events: each record is counted as after_close, and the first one is said on the
        library's logger, with what to do instead. Before, they were lost without a word."""
        event_handler = make()
        log.addHandler(event_handler)
        event_handler.close()
        for number in range(3):
            log.warning("after close %d", number, extra={"involved": POD})
        said = [text for text in reports.messages() if "closed" in text]
        assert len(said) == 1, reports.messages()
        assert "KubernetesEventHandler" in said[0]
        assert event_handler.stats()["after_close"] == 3
        assert fake.events == []

    def test_a_record_meeting_a_dictconfig_under_way_is_counted_not_said(
        self, make, log, reports
    ) -> None:
        """A thread logging while dictConfig replaces a handler it names (a reload, Kopf or
        gunicorn configuring logging) reaches the old one, closed, before the new one is in
        place: counted as after_close, as docs/reliability.md says, but not said with advice
        to name the handler in the configuration it is named in (3 times in 20 reloads).
        A record once no configuration holds logging's lock is still said, once."""
        event_handler = make()
        log.addHandler(event_handler)
        event_handler.close()
        assert log.isEnabledFor(logging.WARNING)  # cached: no wait for logging's lock below
        held, release = threading.Event(), threading.Event()

        def configuring() -> None:
            with logging._lock:  # type: ignore[attr-defined]  # what dictConfig holds
                held.set()
                release.wait(30)

        thread = threading.Thread(target=configuring)
        thread.start()
        try:
            assert held.wait(30)
            log.warning("during", extra={"involved": POD})
        finally:
            release.set()
            thread.join(30)
        assert event_handler.stats()["after_close"] == 1
        assert not [m for m in reports.messages() if "closed" in m], reports.messages()
        log.warning("after", extra={"involved": POD})
        log.warning("after again", extra={"involved": POD})
        assert len([m for m in reports.messages() if "closed" in m]) == 1, reports.messages()

    def test_a_thread_logging_after_the_exits_close_is_counted_not_said(self, tmp_path) -> None:
        """At exit, once the main thread has returned and logging.shutdown() closed the
        handler, a thread that goes on logging (a daemon heartbeat) is the exit, not a
        handler added again: its records are counted as after_close, and nothing advising
        a new handler is printed (it was, now and then, at the end of every such program)."""
        code = textwrap.dedent(
            """
            import logging, threading
            from k8s_logging_events import KubernetesEventHandler
            from k8s_logging_events.testing import FakeEventSink
            handler = KubernetesEventHandler(sink=FakeEventSink())
            logging.getLogger().addHandler(handler)
            pod = {"kind": "Pod", "metadata": {"name": "p", "namespace": "d"}}
            def late():
                threading.main_thread().join()
                logging.shutdown()  # as at exit
                logging.getLogger("beat").warning("tick", extra={"involved": pod})
                print("after_close", handler.stats()["after_close"])
            threading.Thread(target=late).start()
            """
        )
        done = run_python(code, cwd=tmp_path)
        assert "after_close 1" in done.stdout, (done.stdout, done.stderr)
        assert "closed event handler" not in done.stderr, done.stderr

    def test_logging_shutdown_flushes_and_closes(self, make, log, fake) -> None:
        """What interpreter exit does (flush, then close) writes everything and stops."""
        event_handler = make()
        log.addHandler(event_handler)
        log.warning("at exit", extra={"involved": POD})
        logging.shutdown([weakref.ref(event_handler)])
        assert event_handler.closed
        assert len(fake.events) == 1

    def test_close_does_not_wait_twice_for_a_sink_that_hangs(self, make, log, fake) -> None:
        """After a flush gave up on a hung write, close() only waits briefly (wall clock)."""
        gate = threading.Event()
        fake.on_create = _held_by(gate)
        event_handler = make(flush_timeout=1.0)
        log.addHandler(event_handler)
        log.warning("stuck", extra={"involved": POD})
        try:
            started = time.monotonic()
            event_handler.flush()
            flushed = time.monotonic()
            event_handler.close()
            closed = time.monotonic()
        finally:
            gate.set()
        assert flushed - started >= 0.9
        assert closed - flushed < 1.0  # a second wait would take the whole flush_timeout
        assert event_handler.stats()["failed"] == 1

    @pytest.mark.parametrize("api", [sinks.CORE_V1, sinks.EVENTS_V1])
    def test_no_thread_of_ours_outlives_a_close_against_a_hung_server(
        self, log, made, reports, api
    ) -> None:
        """The server takes the write and never answers; close() gives it up at
        ``flush_timeout`` (failed, said once). Its writer thread, blocked in the request,
        lived on until the read timeout (10 s): a test looking for threads left after close
        failed. The handler built the sink, so its close ends that request at once: no
        thread of ours is left a moment later, and nothing more is said or counted."""
        with LocalApiServer() as server:
            server.inject(action="hang", times=None)
            event_handler = KubernetesEventHandler(sink=server.url, api=api, flush_timeout=0.1)
            made.append(event_handler)
            log.addHandler(event_handler)
            log.warning("stuck", extra={"involved": POD})
            assert server.wait_for_request(timeout=10) is not None  # the write hangs
            event_handler.close()
            said = reports.messages()
            deadline = time.monotonic() + 2  # the read timeout is 10 s
            for thread in _our_threads():
                thread.join(max(0.0, deadline - time.monotonic()))
            assert _our_threads() == []
            assert event_handler.stats()["failed"] == 1
        assert reports.messages() == said
        assert ["Unable to write 1" in m for m in said] == [True], said

    def test_a_handler_dropped_without_close_still_writes_at_exit(self) -> None:
        """A handler removed from its logger and dropped without ``close()`` (a task's own
        handler, say): ``logging.shutdown()`` flushes only the handlers still alive, and
        the dropped one's threads kept on without it, so at exit all it had accepted was
        lost and nothing said so. A started handler stays alive until it is closed: the
        exit writes its events."""
        child = textwrap.dedent(
            """
            import gc, logging, sys
            from k8s_logging_events.handler import KubernetesEventHandler

            def task():
                handler = KubernetesEventHandler(sink=sys.argv[1], qps=0, flush_timeout=30)
                log = logging.getLogger("task")
                log.addHandler(handler)
                for number in range(20):
                    pod = {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "task-%d" % number, "namespace": "default"}}
                    log.warning("Done", extra={"involved": pod})
                log.removeHandler(handler)

            task()
            gc.collect()
            """
        )
        with LocalApiServer() as server:
            result = run_python(child, server.url, cwd=REPO)
            counts = stored_counts(server)
        assert result.returncode == 0, result.stderr
        assert counts == {f"task-{number}": 1 for number in range(20)}, result.stderr

    def test_a_given_broadcaster_is_used_but_not_owned(self, make, log, fake, clock) -> None:
        """The handler records into it and flushes it, but leaves it running."""
        shared = recorder.EventBroadcaster(clock=clock, sleep=clock.sleep)
        try:
            shared.start_recording_to_sink(fake)
            event_handler = make(sink="auto", broadcaster=shared)
            log.addHandler(event_handler)
            log.info("shared", extra={"involved": POD})
            event_handler.close()
            assert len(fake.events) == 1
            shared.new_recorder("other").event(POD, models.NORMAL, "Still", "running")
            assert shared.flush(10)
            assert len(fake.events) == 2
        finally:
            shared.shutdown(10)

    def test_a_close_that_cannot_stop_says_so_once_and_a_second_close_does_not_wait(
        self, make, log, fake, clock, reports
    ) -> None:
        """A given broadcaster whose flush raises (a user's subclass): close() does not raise,
        says "Unable to close the event handler cleanly" once, and counts the stop as over,
        so a close from another thread returns at once (not after ``flush_timeout``) and
        says nothing more."""

        class Broken(recorder.EventBroadcaster):
            def flush(self, timeout: float | None = None) -> bool:
                raise RuntimeError("cannot flush")

        shared = Broken(clock=clock, sleep=clock.sleep)
        try:
            shared.start_recording_to_sink(fake)
            event_handler = make(sink="auto", broadcaster=shared, flush_timeout=30)
            log.addHandler(event_handler)
            log.warning("one", extra={"involved": POD})
            event_handler.close()
            assert event_handler.closed
            again = threading.Thread(target=event_handler.close, name="test-close-again")
            again.start()
            again.join(10)  # only a wait for the stop that already ended reaches the bound
            assert not again.is_alive()
            said = [t for t in reports.messages() if "Unable to close the event handler" in t]
            assert said == [
                "Unable to close the event handler cleanly: RuntimeError('cannot flush')"
            ]
        finally:
            shared.shutdown(10)

    def test_a_close_under_logging_lock_that_fails_reports_from_its_own_thread(
        self, make, log, reports, monkeypatch
    ) -> None:
        """dictConfig closes a handler under logging's lock while its writer still builds the
        client: the stop runs on a thread of its own (``k8s-events-close``, a daemon the
        exit waits for). When that stop fails it is said once, from that thread, and a
        close after dictConfig returns once the stop is over, without saying it again."""
        building, built = threading.Event(), threading.Event()
        fake = FakeEventSink()

        def held_build(url: str, **keywords: Any) -> FakeEventSink:
            building.set()
            built.wait(10)  # until the close is under way; only a hang reaches the bound
            return fake

        monkeypatch.setattr(sinks.KubernetesEventSink, "from_url", held_build)
        event_handler = make(sink="http://127.0.0.1:1", flush_timeout=30)
        log.addHandler(event_handler)
        log.warning("one", extra={"involved": POD})
        assert building.wait(10)
        active = event_handler.broadcaster
        assert active is not None
        shutdown = active.shutdown

        def failing(timeout: float | None = None) -> None:
            shutdown(timeout)
            raise RuntimeError("cannot stop")

        monkeypatch.setattr(active, "shutdown", failing)
        started = set(threading.enumerate())
        with logging._lock:  # type: ignore[attr-defined]  # what dictConfig holds
            event_handler.close()
        built.set()
        (closing,) = [t for t in threading.enumerate() if t not in started]
        assert (closing.name, closing.daemon) == ("k8s-events-close", True)
        event_handler.close()  # after dictConfig: waits for the stop on that thread
        closing.join(10)  # ended already: the close above waited for it
        assert not closing.is_alive()
        said = [r for r in reports.records if "Unable to close the event handler" in r.msg]
        assert [(r.threadName, r.getMessage()) for r in said] == [
            (
                "k8s-events-close",
                "Unable to close the event handler cleanly: RuntimeError('cannot stop')",
            )
        ]
        assert event_handler.stats()["created"] == 1

    def test_a_given_broadcasters_clock_dates_the_events(self, make, log, fake) -> None:
        """With a given broadcaster and no ``clock`` of its own, the handler dates each
        occurrence on the broadcaster's clock, as the broadcaster's own recorders do, from
        the first record on: the clock comes with the broadcaster's way in."""
        theirs = FakeClock(datetime(2031, 5, 6, tzinfo=UTC))
        shared = recorder.EventBroadcaster(clock=theirs, sleep=theirs.sleep)
        try:
            shared.start_recording_to_sink(fake)
            event_handler = make(sink="auto", broadcaster=shared, clock=None, sleep=None)
            log.addHandler(event_handler)
            log.warning("dated", extra={"involved": POD})
            theirs.step(60)
            log.warning("later", extra={"involved": POD})
            assert shared.flush(10)
            assert [event.first_timestamp for event in fake.events] == [
                datetime(2031, 5, 6, tzinfo=UTC),
                datetime(2031, 5, 6, 0, 1, tzinfo=UTC),
            ]
        finally:
            shared.shutdown(10)

    def test_sink_none_records_without_writing(self, make, log) -> None:
        """``sink=None``: events are counted but go nowhere, and nobody is warned."""
        event_handler = make(sink=None)
        log.addHandler(event_handler)
        log.info("counted", extra={"involved": POD})
        event_handler.flush()
        assert event_handler.stats()["accepted"] == 1
        assert event_handler.stats()["created"] == 0

    def test_auto_without_any_configuration_warns_once(
        self, make, log, reports, monkeypatch, tmp_path
    ) -> None:
        """``sink="auto"`` with no cluster and no kubeconfig: one warning, no API writes."""
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
        event_handler = make(sink="auto")
        log.addHandler(event_handler)
        log.info("one", extra={"involved": POD})
        log.info("two", extra={"involved": POD})
        event_handler.flush()
        assert sum("No Kubernetes configuration" in text for text in reports.messages()) == 1
        assert event_handler.stats()["accepted"] == 2

    def test_a_context_in_a_pod_asks_for_a_kubeconfig_and_says_when_there_is_none(
        self, make, log, reports, monkeypatch, tmp_path
    ) -> None:
        """In a pod, ``context`` names a kubeconfig context: the service account is not
        used, and with no kubeconfig that is the one warning (``discarded``), not failed
        writes through a client that cannot be built."""
        token = tmp_path / "token"
        token.write_text("sa-token")
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
        monkeypatch.setattr(kubeconfigs, "SERVICE_ACCOUNT_TOKEN", str(token))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
        event_handler = make(sink="auto", context="staging")
        log.addHandler(event_handler)
        log.warning("lost", extra={"involved": POD, "reason": "Lost"})
        event_handler.flush()
        (report,) = [text for text in reports.messages() if "No Kubernetes configuration" in text]
        assert "context option 'staging'" in report
        assert event_handler.stats()["discarded"] == 1
        assert event_handler.stats()["failed"] == 0

    def test_auto_finds_a_kubeconfig_and_writes_through_it(
        self, log, made, monkeypatch, tmp_path
    ) -> None:
        """``sink="auto"`` loads the kubeconfig (on a writer thread) and writes to that server."""
        with LocalApiServer(namespaces=["prod"]) as server:
            kubeconfig = tmp_path / "config"
            kubeconfig.write_text(_kubeconfig(server.url))
            monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
            monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
            event_handler = KubernetesEventHandler(component="ctl", host="node-1")
            made.append(event_handler)
            log.addHandler(event_handler)
            log.warning("through the kubeconfig", extra={"involved": POD, "reason": "Found"})
            event_handler.close()
            assert [event["reason"] for event in server.events("prod")] == ["Found"]

    def test_a_broken_kubeconfig_is_reported_once_and_its_writes_fail(
        self, make, log, reports, monkeypatch, tmp_path
    ) -> None:
        """A kubeconfig that cannot be loaded: one report, and the writes count as failed."""
        kubeconfig = tmp_path / "config"
        kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        event_handler = make(sink="auto")
        log.addHandler(event_handler)
        log.warning("first", extra={"involved": POD, "reason": "One"})
        log.warning("second", extra={"involved": NODE, "reason": "Two"})
        event_handler.close()
        assert sum("Unable to build a Kubernetes client" in t for t in reports.messages()) == 1
        assert event_handler.stats()["failed"] == 2

    def test_a_url_sink_writes_to_that_server(self, log, made) -> None:
        """A URL (``kubectl proxy`` style) sink: the table matches what the server stored."""
        with LocalApiServer(namespaces=["prod"]) as server:
            event_handler = KubernetesEventHandler(component="ctl", host="node-1", sink=server.url)
            made.append(event_handler)
            log.addHandler(event_handler)
            for _ in range(3):
                log.warning("Back-off pulling image", extra={"involved": POD, "reason": "BackOff"})
            event_handler.close()
            (stored,) = server.events("prod")
            assert stored["count"] == 3
            assert "(x3 over" in describe.format_events(server.events("prod"))

    def test_structured_logging_to_a_named_logger(self, make, log) -> None:
        """``structured_logging`` with a logger name: one record per event, fields as extras."""
        target = logging.getLogger(f"tests.handler.events{next(_names)}")
        target.setLevel(logging.DEBUG)
        target.propagate = False
        lines = ListHandler()
        target.addHandler(lines)
        event_handler = make(structured_logging=target.name)
        log.addHandler(event_handler)
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        _flushed(event_handler)
        (line,) = lines.records
        assert (vars(line)["reason"], vars(line)["object"]) == ("BackOff", "prod/web-0")

    def test_structured_logging_as_json_lines(self, make, log, capsys) -> None:
        """``structured_logging: true`` writes one JSON line per event to standard error."""
        event_handler = make(structured_logging=True)
        log.addHandler(event_handler)
        log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})
        _flushed(event_handler)
        (line,) = capsys.readouterr().err.splitlines()
        fields = json.loads(line)
        assert (fields["object"], fields["reason"], fields["message"]) == (
            "prod/web-0",
            "BackOff",
            "Back-off",
        )

    @pytest.mark.parametrize(
        "options",
        [
            {"namespace": "kube-system"},
            {"exception_detail": "full"},
            {"max_message_bytes": 3},
            {"queue_length": 0},
            {"sink": "ftp://example.com"},
            {"sink": 42},
            {"correlator": {"no_such_option": 1}},
            {"default_reason": "two words"},
            {"sink": FakeEventSink(), "broadcaster": recorder.EventBroadcaster()},
            {"structured_logging": True, "broadcaster": recorder.EventBroadcaster()},
            {"request_timeout": [1, 2, 3]},
        ],
    )
    def test_invalid_options_fail_at_construction(self, options) -> None:
        """A configuration error surfaces when the handler is built (dictConfig reports it)."""
        with pytest.raises(ValueError, match=r"."):
            KubernetesEventHandler(**options)


def _held_by(gate: threading.Event) -> Callable[[models.Event], models.Event | None]:
    """An ``on_create`` hook that holds each create until ``gate`` is set (at most 10 s)."""

    def hold(event: models.Event) -> None:
        gate.wait(10)

    return hold


def _kubeconfig(url: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": url}}],
            "users": [{"name": "local", "user": {}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
            "current-context": "local",
        }
    )


# --- threads, asyncio, fork ----------------------------------------------------------------------


class TestConcurrency:
    """Threads, event loops and pre-fork servers."""

    def test_many_threads_logging_are_counted_exactly(self, make, log, fake) -> None:
        """Eight threads log the same warning 250 times each: one event, count 2000."""
        event_handler = make()
        log.addHandler(event_handler)

        def spam() -> None:
            for _ in range(250):
                log.warning("Back-off", extra={"involved": POD, "reason": "BackOff"})

        threads = [threading.Thread(target=spam, name=f"test-spam-{n}") for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        _flushed(event_handler)
        (event,) = fake.events
        assert event.count == 2000
        stats = event_handler.stats()
        assert stats["dropped"] == 0
        assert stats["accepted"] == stats["created"] + stats["patched"] + stats["coalesced"]

    def test_logging_from_coroutines_never_blocks_the_loop(self, make, fake) -> None:
        """While the sink hangs, a coroutine logs 50 warnings and finishes; then they arrive."""
        gate = threading.Event()
        fake.on_create = _held_by(gate)
        event_handler = make()
        logger = logging.getLogger(f"tests.handler.async{next(_names)}")
        logger.propagate = False
        logger.addHandler(event_handler)

        async def reconcile() -> int:
            for attempt in range(50):
                logger.warning("attempt %d", attempt, extra={"involved": POD, "reason": "Retry"})
                await asyncio.sleep(0)
            return attempt + 1

        try:
            assert asyncio.run(asyncio.wait_for(reconcile(), timeout=30)) == 50
        finally:
            gate.set()
        _flushed(event_handler)
        assert sum(event.count for event in fake.events) == 50

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_after_fork_the_child_writes_only_its_own_events(self, log, made) -> None:
        """The parent's queued events stay the parent's; the child starts fresh threads.

        The parent's writes hang in the sink (a gate only the parent waits on), so at the
        fork its broadcaster and writers hold queued and in-flight events, while another
        thread keeps logging. The child logs one event, flushes, and reports through a pipe
        what its sink saw after the fork: only its own event.
        """
        sink = _ForkSink(os.getpid())
        event_handler = KubernetesEventHandler(component="web", host="h", sink=sink)
        made.append(event_handler)
        log.addHandler(event_handler)
        for number in range(10):
            pod = _pod(f"parent-{number}")
            log.warning("queued in the parent", extra={"involved": pod, "reason": "Parent"})
        ticking = threading.Event()
        logger_thread = threading.Thread(
            target=_log_ticks, args=(log, ticking), name="test-ticker", daemon=True
        )
        logger_thread.start()
        assert ticking.wait(10)
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            _run_child(log, event_handler, sink, write_end)
        os.close(write_end)
        try:
            report = json.loads(_read_child(read_end, pid) or b"{}")
        finally:
            sink.gate.set()
            logger_thread.join(30)
        assert report == {"written": [["create", "Child", "child-0"]], "accepted": 1}
        _flushed(event_handler)
        assert "Child" not in {reason for _, reason, _ in sink.calls}
        assert sum(reason == "Parent" for _, reason, _ in sink.calls) == 10


class _ForkSink:
    """Keeps (method, reason, object) per write; in the parent, writes hang until the gate."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.gate = threading.Event()
        # list.append needs no lock, so a fork cannot leave one held in the child
        self.calls: list[tuple[str, str, str]] = []

    def _keep(self, method: str, event: models.Event) -> models.Event:
        self.calls.append((method, event.reason, event.involved_object.name))
        if os.getpid() == self.parent:
            self.gate.wait(10)
        return replace(event, resource_version="1")

    def create(self, event: models.Event) -> models.Event:
        return self._keep("create", event)

    def update(self, event: models.Event) -> models.Event:
        return self._keep("update", event)

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        return self._keep("patch", event)


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "prod"}}


def _log_ticks(log: logging.Logger, ticking: threading.Event) -> None:
    for number in range(2000):
        log.info("tick", extra={"involved": _pod("ticker"), "reason": "Tick"})
        if number == 50:
            ticking.set()


def _run_child(
    log: logging.Logger, event_handler: KubernetesEventHandler, sink: _ForkSink, pipe: int
) -> None:  # pragma: no cover - runs in the forked child
    code = 1
    try:
        before = len(sink.calls)
        log.warning("from the child", extra={"involved": _pod("child-0"), "reason": "Child"})
        event_handler.flush()
        report = {
            "written": [list(call) for call in sink.calls[before:]],
            "accepted": event_handler.stats()["accepted"],
        }
        os.write(pipe, json.dumps(report).encode())
        code = 0
    except BaseException as error:
        os.write(pipe, json.dumps({"error": repr(error)}).encode())
    finally:
        os._exit(code)


def _read_child(fd: int, pid: int, timeout: float = 30.0) -> bytes:
    """Read the child's report until it exits; kill it if it takes longer than ``timeout``."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, b"".join(chunks)
    return b"".join(chunks)


# --- the adapter and the defaults ---------------------------------------------------------------


class TestEventLoggerAdapter:
    """EventLoggerAdapter binds ``involved`` and default extras."""

    def test_binds_involved_and_default_extras(self, log) -> None:
        """Every record carries the bound object and extras."""
        records = ListHandler()
        log.addHandler(records)
        adapter = EventLoggerAdapter(log, POD, reason="Sync")
        adapter.info("synced")
        (record,) = records.records
        assert (vars(record)["involved"], vars(record)["reason"]) == (POD, "Sync")
        assert POD is adapter.involved

    def test_call_extras_merge_over_the_bound_ones(self, log) -> None:
        """A call's extras win key by key; neither the bound nor the call's dict changes."""
        records = ListHandler()
        log.addHandler(records)
        adapter = EventLoggerAdapter(log, POD, reason="Sync", action="Reconcile")
        call_extra = {"reason": "Failed", "involved": NODE}
        adapter.warning("failed", extra=call_extra)
        adapter.info("synced")
        first, second = records.records
        assert (
            vars(first)["involved"],
            vars(first)["reason"],
            vars(first)["action"],
        ) == (NODE, "Failed", "Reconcile")
        assert (vars(second)["involved"], vars(second)["reason"]) == (POD, "Sync")
        assert call_extra == {"reason": "Failed", "involved": NODE}
        assert adapter.extra == {"reason": "Sync", "action": "Reconcile", "involved": POD}

    def test_call_extras_as_pairs_merge_as_a_dict_update_takes_them(self, log) -> None:
        """A call's ``extra`` given as key-value pairs (what ``dict.update`` accepts) is merged
        key by key like a mapping, and the log call does not raise into the application."""
        records = ListHandler()
        log.addHandler(records)
        adapter = EventLoggerAdapter(log, POD, reason="Sync")
        pairs = [("reason", "Failed"), ("action", "Retry")]  # untyped callers pass these
        adapter.warning("failed", extra=pairs)  # type: ignore[arg-type]
        (record,) = records.records
        assert (vars(record)["involved"], vars(record)["reason"], vars(record)["action"]) == (
            POD,
            "Failed",
            "Retry",
        )

    def test_each_call_gets_its_own_dict(self, log) -> None:
        """The extras handed to the logger are a new dict every time."""
        adapter = EventLoggerAdapter(log, POD)
        _, first = adapter.process("m", {})
        _, second = adapter.process("m", {})
        assert first["extra"] is not second["extra"]
        assert first["extra"] is not adapter.extra

    def test_events_come_out_of_the_adapter(self, make, log, fake) -> None:
        """Through a handler, the adapter's records become events about the bound object."""
        log.addHandler(event_handler := make())
        EventLoggerAdapter(log, POD, reason="Pulled").info("Pulled image")
        _flushed(event_handler)
        assert [(event.involved_object.name, event.reason) for event in fake.events] == [
            ("web-0", "Pulled")
        ]


class TestDefaults:
    """component and host come from the environment when not given."""

    def test_component_from_the_environment_variable(self, monkeypatch) -> None:
        """``K8S_LOGGING_EVENTS_COMPONENT`` names the component."""
        monkeypatch.setenv(handler.COMPONENT_ENV, "billing-controller")
        assert handler.default_component() == "billing-controller"

    def test_component_from_the_program(self, monkeypatch) -> None:
        """Without the variable, the program's name (here pytest's) is the component."""
        monkeypatch.delenv(handler.COMPONENT_ENV, raising=False)
        assert handler.default_component()

    def test_host_from_node_name_then_hostname(self, monkeypatch) -> None:
        """``NODE_NAME`` (Downward API) wins over ``HOSTNAME``."""
        monkeypatch.setenv("NODE_NAME", "node-7")
        monkeypatch.setenv("HOSTNAME", "web-0")
        assert handler.default_host() == "node-7"
        monkeypatch.delenv("NODE_NAME")
        assert handler.default_host() == "web-0"

    def test_the_handler_uses_the_defaults(self, monkeypatch) -> None:
        """A handler built without component and host reports them from the environment."""
        monkeypatch.setenv(handler.COMPONENT_ENV, "ctl")
        monkeypatch.setenv("NODE_NAME", "node-7")
        event_handler = KubernetesEventHandler(sink=None)
        event_handler.close()
        assert models.EventSource("ctl", "node-7") == event_handler.source


def _stack(thread: threading.Thread) -> list[str]:
    """The names of the functions on ``thread``'s stack right now, innermost first."""
    frame = sys._current_frames().get(thread.ident or -1)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def test_a_close_while_another_thread_closes_returns_once_that_close_is_done() -> None:
    """Two threads close the handler at once (an application's shutdown thread, and
    ``logging.shutdown()`` at exit): the second returns only once the first has written or
    given up everything, so that its counters are final when it returns, as after any close."""
    entered, go = threading.Event(), threading.Event()

    class Held(FakeEventSink):
        def create(self, event: models.Event) -> models.Event:
            entered.set()
            go.wait(10)
            return super().create(event)

    events = KubernetesEventHandler(component="twice", sink=Held(), flush_timeout=10)
    log = logging.getLogger("tests.handler.twice")
    log.propagate = False
    log.addHandler(events)
    try:
        log.warning("one", extra={"involved": {"kind": "Pod", "name": "web", "namespace": "ns"}})
        assert entered.wait(10)
        first = threading.Thread(target=events.close, name="test-close-first")
        first.start()
        seen: list[dict[str, int]] = []

        def close_and_read() -> None:
            events.close()
            seen.append(events.stats())

        second = threading.Thread(target=close_and_read, name="test-close-second")
        bound = time.monotonic() + 10  # reached only by a hang
        while "wait_written" not in _stack(first) and time.monotonic() < bound:
            first.join(0.001)
        second.start()
        while second.is_alive() and time.monotonic() < bound:
            if _stack(second)[:2] == ["wait", "wait"] and "close" in _stack(second):
                break  # it waits for the first close
            second.join(0.001)
        go.set()
        for thread in (first, second):
            thread.join(10)
        assert [(stats["created"], stats["pending"]) for stats in seen] == [(1, 0)], seen
    finally:
        go.set()
        log.removeHandler(events)
        events.close()


def test_a_close_on_a_library_thread_while_the_handler_closes_does_not_wait_for_it() -> None:
    """A close that runs on one of the library's threads (an application object's
    ``__del__`` that closes the handler, collected on a writer) while the handler closes
    returns at once: the close under way waits for that very thread, which would otherwise
    wait for it in turn until the deadline, and its write would count as failed."""
    logged = threading.Event()

    class ClosesOnItsThread(FakeEventSink):
        def create(self, event: models.Event) -> models.Event:
            assert logged.wait(10)  # only a hang reaches the bound
            bound = time.monotonic() + 10
            while not events.closed and time.monotonic() < bound:
                logged.wait(0.001)  # until the first close is under way
            events.close()  # what the __del__ does, on this writer
            return super().create(event)

    events = KubernetesEventHandler(component="own", sink=ClosesOnItsThread(), flush_timeout=2)
    log = logging.getLogger("tests.handler.own")
    log.propagate = False
    log.addHandler(events)
    try:
        log.warning("one", extra={"involved": {"kind": "Pod", "name": "web", "namespace": "ns"}})
        logged.set()
        events.close()
        stats = events.stats()
        assert (stats["created"], stats["failed"], stats["pending"]) == (1, 0, 0), stats
    finally:
        log.removeHandler(events)
        events.close()


def test_a_flush_on_a_library_thread_leaves_the_close_its_whole_wait() -> None:
    """A flush that runs on one of the library's threads (an application object's ``__del__``
    that flushes the logging handlers, collected on a writer) cannot wait for that writer, and
    returns at once. It is no wait that ran out of time: the close after it, with the write
    still in flight, gave up at once (``failed``, "before the deadline of shutdown", the
    server answering); it waits its ``flush_timeout``, and the write is created."""
    flushed, answer = threading.Event(), threading.Event()

    class FlushesOnItsThread(FakeEventSink):
        def create(self, event: models.Event) -> models.Event:
            events.flush()  # what the __del__ does, on this writer
            flushed.set()
            answer.wait(10)  # the server answers once the close waits
            return super().create(event)

    events = KubernetesEventHandler(component="own", sink=FlushesOnItsThread(), flush_timeout=10)
    log = logging.getLogger("tests.handler.own-flush")
    log.propagate = False
    log.addHandler(events)
    try:
        log.warning("one", extra={"involved": {"kind": "Pod", "name": "web", "namespace": "ns"}})
        assert flushed.wait(10)
        main = threading.current_thread()
        answering = threading.Thread(target=lambda: _when_in(main, "wait_written", answer))
        answering.start()
        events.close()
        answer.set()
        answering.join(10)
        stats = events.stats()
        assert (stats["created"], stats["failed"], stats["pending"]) == (1, 0, 0), stats
    finally:
        answer.set()
        log.removeHandler(events)
        events.close()


@pytest.mark.parametrize("message", ["stopping", "x" * 5000], ids=["plain", "repaired"])
def test_a_signal_handler_that_closes_the_handler_as_it_starts_leaves_nothing_running(
    monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    """A SIGTERM handler that closes the handler (``logging.shutdown()``) lands while the
    first record about an object builds the pipeline. The close found nothing started yet,
    and the build went on after it: a closed handler with its dispatcher and writer running
    for good, and the record accepted but pending forever. The record now comes after the
    close (``after_close``), and no thread is left. One whose message was cut to size is not
    counted ``repaired`` as well (a part of ``accepted``, it was counted twice)."""
    events = KubernetesEventHandler(component="term", sink=FakeEventSink())
    opening = _options.open_sink

    def open_sink(*args: Any) -> Any:
        signal.raise_signal(signal.SIGUSR1)  # the handler runs here, on this thread
        return opening(*args)

    monkeypatch.setattr(_options, "open_sink", open_sink)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: events.close())
    log = logging.getLogger("tests.handler.term")
    log.propagate = False
    log.addHandler(events)
    try:
        log.warning(message, extra={"involved": POD})
        assert events.closed
        assert events.threads() == []
        stats = events.stats()
        counted = ("accepted", "pending", "after_close", "repaired")
        assert [stats[name] for name in counted] == [0, 0, 1, 0], stats
    finally:
        signal.signal(signal.SIGUSR1, previous)
        log.removeHandler(events)
        events.close()


def _when_in(thread: threading.Thread, function: str, then: threading.Event) -> None:
    """Set ``then`` once ``thread`` runs ``function`` (at most 10 s)."""
    bound = time.monotonic() + 10
    while function not in _stack(thread) and time.monotonic() < bound:
        then.wait(0.005)
    then.set()


_STOP_LEFT_BY_DICTCONFIG = """
import atexit, json, os, signal, sys, threading, time

signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's `&` started us ignoring it
# registered before logging is imported, so it runs last at exit; timed from the Ctrl-C,
# not from the start: a loaded machine took 30 s to import and log before the exit began
interrupted_at = []
atexit.register(lambda: print(json.dumps({**handler.stats(), "seconds": time.monotonic()
    - interrupted_at[0] if interrupted_at else None}), flush=True))

import logging, logging.config
from k8s_logging_events.handler import KubernetesEventHandler
from tests._children import hold_the_client_build

building, release = hold_the_client_build()  # the writer builds the client as dictConfig runs
handler = KubernetesEventHandler(component="job", sink=sys.argv[1], flush_timeout=30)
log = logging.getLogger("job")
log.addHandler(handler)
for number in range(3):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "job-%d" % number, "namespace": "default"}}
    log.warning("step %d failed", number, extra={"involved": pod})
building.wait(30)
logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
release.set()
waited_until = time.monotonic() + 30
while handler.stats()["pending_events"] < 3 and time.monotonic() < waited_until:
    time.sleep(0.01)

def waits_in(thread, name, inner=""):  # ``inner`` (called from ``name``) too, if given
    frame = sys._current_frames().get(thread.ident)
    while frame is not None and frame.f_code.co_name != name:
        inner, frame = "" if frame.f_code.co_name == inner else inner, frame.f_back
    return frame is not None and not inner

def interrupt():  # once the exit waits for the stop (not still in threading's own
    # shutdown, nor entering the wait), and the stop waits for the writes
    closing = [t for t in threading.enumerate() if t.name.endswith("-close")]
    while not (waits_in(threading.main_thread(), "_wait_for_stops", "wait")
               and any(waits_in(thread, "wait_written") for thread in closing)):
        time.sleep(0.01)
    interrupted_at.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
"""


def test_ctrl_c_while_the_exit_waits_for_a_stop_dictconfig_left_cuts_it_short(
    tmp_path: Path,
) -> None:
    """dictConfig replaced the handler while its writer built the client, so the handler
    stopped on a thread of its own (``k8s-events-close``), and the exit waits for it; the
    server does not answer. Ctrl-C during that wait printed "Exception ignored in: <module
    'threading'> ... KeyboardInterrupt" and the exit went on while the stop still waited: the
    three writes were never counted nor said, and the process lived on for the stop's 30 s.
    Ctrl-C cuts that stop short as it cuts a close: the writes count as failed, said once
    as cut short, and the process ends at once, without a traceback."""
    with LocalApiServer() as server:
        server.inject(action="hang", times=None)
        result = run_python(textwrap.dedent(_STOP_LEFT_BY_DICTCONFIG), server.url, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    stats = json.loads(result.stdout.splitlines()[-1])
    assert (stats["failed"], stats["pending"]) == (3, 0), stats
    assert stats["seconds"] is not None, result.stderr  # None: the Ctrl-C was never sent
    assert stats["seconds"] < 15, stats  # from the Ctrl-C: the stop's 30 s not waited out
    given_up = [line for line in result.stderr.splitlines() if "Unable to write" in line]
    assert len(given_up) == 1, result.stderr
    assert "when shutdown was cut short (Ctrl-C or an exit)" in given_up[0], given_up


def test_a_type_checker_reports_a_misspelt_option(tmp_path: Path) -> None:
    """``KubernetesEventHandler(compnent=...)`` is an error for a type checker, as for
    the handler at run time: the keywords it takes for its own suggestion ("did you mean
    'component'") are typed as none at all, not as anything."""
    user, report = mypy_report(
        tmp_path,
        "from k8s_logging_events.handler import KubernetesEventHandler\n"
        'KubernetesEventHandler(compnent="billing", sink=None)\n',
        handler.__file__,
    )
    assert f'{user}:2: error: Argument "compnent" to "KubernetesEventHandler"' in report


def test_a_type_checker_takes_the_option_values_the_handler_documents(tmp_path: Path) -> None:
    """What docs/configuration.md says the handler takes, mypy takes too: a number written
    as text (``qps=os.environ.get("QPS", "5")``, as a file or the environment gives it),
    ``crash_events`` as text read as a boolean, and ``structured_logging`` null."""
    user, report = mypy_report(
        tmp_path,
        "import os\n"
        "from k8s_logging_events.handler import KubernetesEventHandler\n"
        "text = os.environ.get('N', '5')\n"
        "KubernetesEventHandler(sink=None, max_message_bytes=text, queue_length=text, qps=text,\n"
        "    burst=text, drain_qps=text, request_timeout=[text, 1.5], flush_timeout=text,\n"
        "    writers=text, max_tries=text, sleep_duration=text, crash_events='false',\n"
        "    structured_logging=None)\n",
        handler.__file__,
    )
    assert f"{user}:" not in report, report


def test_a_drain_given_no_number_says_it_did_not_wait(make, reports) -> None:
    """``drain("soon")`` answers False at once: its report says so, as shutdown's says the
    seconds it waits instead, so that no one reads the False as writes still pending."""
    event_handler = make()
    assert event_handler.drain("soon") is False
    assert reports.messages() == [
        "drain() waits a number of seconds, not 'soon': it did not wait, and answers False"
    ]
