"""Every option of the handler is checked when it is built, with a message that helps.

A configuration file is where these mistakes are made, and dictConfig applies it at start:
that is where they must surface, naming the option, the value and what is allowed, never
as a writer spinning on a NaN or a TypeError without a hint.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.machinery
import inspect
import logging
import logging.config
import math
import os
import sys
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from k8s_logging_events import _options, correlator, recorder, sink
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests._children import run_python


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"flush_timeout": math.nan}, ["flush_timeout", "nan"]),
        ({"sleep_duration": float("nan")}, ["sleep_duration", "nan"]),
        ({"qps": math.nan}, ["qps", "nan"]),
        ({"qps": "fast"}, ["qps", "'fast'", ">= 0"]),
        ({"drain_qps": -1}, ["drain_qps", "-1"]),
        ({"request_timeout": -1}, ["request_timeout", "-1"]),
        ({"request_timeout": [5, "x"]}, ["request_timeout", "'x'"]),
        ({"request_timeout": [1, 2, 3]}, ["request_timeout", "pair"]),
        ({"flush_timeout": math.inf}, ["flush_timeout", "inf"]),
        ({"writers": 2.5}, ["writers", "whole number"]),
        ({"writers": True}, ["writers", "True"]),
        ({"queue_length": 0}, ["queue_length", ">= 1"]),
        ({"max_message_bytes": 8}, ["max_message_bytes", ">= 16"]),
        ({"max_message_bytes": 2_000_000}, ["max_message_bytes", "2000000", "<= 1048576"]),
        ({"api": "v2"}, ["api", "'v2'", "'events.k8s.io/v1'"]),
        ({"exception_detail": "all"}, ["exception_detail", "'summary'"]),
        ({"correlator": {"qps": math.nan}}, ["correlator.qps", "nan"]),
        ({"correlator": {"burst_size": "many"}}, ["correlator.burst_size", "'many'"]),
        ({"kubeconfig": ""}, ["kubeconfig", "''"]),
        ({"qps": math.inf}, ["qps", "inf"]),
        ({"burst": 0}, ["burst", ">= 1"]),
        ({"request_timeout": [0, 5]}, ["request_timeout", ">= 0.001", "0"]),
        (
            {"correlator": {"spam_key": "object", "spam_key_func": correlator.get_spam_key}},
            ["spam_key", "spam_key_func", "not both"],
        ),
    ],
)
def test_a_bad_value_names_the_option_the_value_and_what_is_allowed(
    options: dict[str, Any], words: list[str]
) -> None:
    """Each message says which option, what it was given and what it accepts."""
    with pytest.raises(ValueError, match=r".") as error:
        KubernetesEventHandler(sink=None, **options)
    message = str(error.value)
    assert all(word in message for word in words), message


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}


def _written_message(**options: Any) -> str:
    """The message of the one event a handler built with ``options`` writes for a record of
    200 characters."""
    fake = FakeEventSink()
    handler = KubernetesEventHandler(sink=fake, **options)
    log = logging.getLogger("tests.options.strings")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("x" * 200, extra={"involved": POD})
        handler.flush()
    finally:
        log.removeHandler(handler)
        handler.close()
    (event,) = fake.events
    return event.message


@pytest.mark.parametrize("written", ["48", " 48 ", "48.0"])
def test_numbers_written_as_strings_are_taken_as_the_numbers_they_spell(written: str) -> None:
    """Environment-driven configuration often gives numbers as strings: ``max_message_bytes:
    "48"`` cuts a message where 48 does, and qps, flush_timeout and writers written as
    strings work as the numbers."""
    as_numbers = _written_message(max_message_bytes=48, qps=2.5, flush_timeout=5, writers=2)
    as_strings = _written_message(
        max_message_bytes=written, qps="2.5", flush_timeout="5", writers=" 2 "
    )
    assert len(as_numbers.encode()) <= 48
    assert as_strings == as_numbers


def test_any_real_number_is_a_number() -> None:
    """A Fraction (numpy's numbers too: any ``numbers.Real``) is a number: ``max_message_bytes=
    Fraction(48)`` was refused as "must be a whole number", now it cuts where 48 does."""
    as_numbers = _written_message(max_message_bytes=48, qps=2.5, flush_timeout=5, writers=2)
    as_fractions = _written_message(
        max_message_bytes=Fraction(48), qps=Fraction(5, 2), flush_timeout=Fraction(5), writers=2
    )
    assert as_fractions == as_numbers


def test_the_longest_max_message_bytes_makes_events_a_cluster_stores() -> None:
    """``max_message_bytes`` is at most 1 MiB: a message cut there, with 256 KiB of
    annotations besides, is an event under etcd's default 1.5 MiB request limit, stored
    through core/v1 (the one API without a 1024-byte limit); a longer one could never be,
    so one byte more is refused when the handler is built."""
    with pytest.raises(ValueError, match="max_message_bytes"):
        KubernetesEventHandler(sink=None, max_message_bytes=_options.MAX_MESSAGE_BYTES + 1)
    with LocalApiServer() as server:
        handler = KubernetesEventHandler(
            sink=server.url, api="v1", qps=0, max_message_bytes=_options.MAX_MESSAGE_BYTES
        )
        log = logging.getLogger("tests.options.longest")
        log.propagate = False
        log.addHandler(handler)
        annotations = {"example.com/dump": "a" * (256 * 1024 - len("example.com/dump"))}
        try:
            log.warning("x" * 2_000_000, extra={"involved": POD, "annotations": annotations})
            assert handler.drain(10)
        finally:
            log.removeHandler(handler)
            handler.close()
        (event,) = server.events()
    assert len(event["message"]) == _options.MAX_MESSAGE_BYTES
    assert event["metadata"]["annotations"] == annotations


@pytest.mark.parametrize(
    "build",
    [
        lambda **option: KubernetesEventHandler(sink=None, **option),
        lambda **option: sink.KubernetesEventSink.from_url("http://127.0.0.1:1", **option),
    ],
    ids=["handler", "sink"],
)
@pytest.mark.parametrize("name", ["qps", "burst", "drain_qps", "request_timeout"])
def test_a_number_too_large_for_a_float_is_a_value_error_naming_the_option(
    build: Any, name: str
) -> None:
    """``burst=10**400`` (an exponent's typo, a computed value) raised a bare OverflowError
    ("int too large to convert to float") that named no option: it is out of range, a
    ValueError naming the option like any other."""
    with pytest.raises(ValueError, match=f"^{name} must be"):
        build(**{name: 10**400})


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("flush_timout", "flush_timeout"),
        ("queue_lenght", "queue_length"),
        ("kubecontext", "context"),
        ("zzzz", ""),
    ],
)
def test_an_unknown_option_names_the_closest_known_one(name: str, closest: str) -> None:
    """A misspelt option gets a suggestion instead of Python's bare TypeError."""
    with pytest.raises(TypeError, match=name) as error:
        KubernetesEventHandler(sink=None, **{name: 1})  # type: ignore[arg-type]
    if closest:
        assert f"did you mean {closest!r}" in str(error.value)
    else:
        assert "known:" in str(error.value)


def test_an_unknown_correlator_option_names_the_closest_known_one() -> None:
    """The correlator mapping's keys are checked the same way."""
    with pytest.raises(ValueError, match="did you mean 'burst_size'"):
        KubernetesEventHandler(sink=None, correlator={"burst": 3})


@pytest.mark.parametrize("name", ["burst_size", "max_events", "spam_key", "lru_cache_size"])
def test_a_correlator_key_given_to_the_handler_itself_names_correlator(name: str) -> None:
    """``burst_size: 25`` written beside the handler's options rather than under
    ``correlator:`` was met with "did you mean 'burst'?" (the sink's rate limit, another
    thing altogether) and ``max_events`` with "did you mean 'crash_events'?". The message
    says where the key belongs."""
    with pytest.raises(TypeError, match=name) as error:
        KubernetesEventHandler(sink=None, **{name: 25})  # type: ignore[arg-type]
    assert f"correlator: {{{name}: ...}}" in str(error.value)
    assert "did you mean" not in str(error.value)


def _configuration(logger: str, **options: Any) -> dict[str, Any]:
    """A dictConfig configuration: a handler ``events`` with ``options``, used by ``logger``
    alone ("" for the root logger)."""
    handler = {"class": "k8s_logging_events.handler.KubernetesEventHandler", **options}
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"events": handler},
    }
    if logger:
        config["loggers"] = {logger: {"handlers": ["events"], "propagate": False}}
    else:
        config["root"] = {"handlers": ["events"]}
    return config


def test_dictconfig_reports_the_misspelt_option_with_the_suggestion() -> None:
    """What dictConfig says when the YAML has a typo: the handler's own words survive."""
    config = _configuration("", sink=None, flush_timout=5)
    with pytest.raises(ValueError, match="Unable to configure handler 'events'") as error:
        logging.config.dictConfig(config)
    assert "did you mean 'flush_timeout'" in str(error.value.__cause__)


def test_a_handler_that_failed_to_build_is_not_flushed_at_shutdown() -> None:
    """The checks run before logging.Handler.__init__ registers the handler: a broken one
    would otherwise fail in logging.shutdown() at exit."""
    before = list(logging._handlerList)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="qps"):
        KubernetesEventHandler(sink=None, qps=math.nan)
    assert list(logging._handlerList) == before  # type: ignore[attr-defined]


def test_a_broadcaster_that_is_not_one_is_refused_and_leaves_logging_working() -> None:
    """``broadcaster: x`` in a YAML file is a mistake like any other: a ValueError naming
    the option when dictConfig applies it, and no half-built handler left in logging's list
    for the next dictConfig or logging.shutdown() to flush (which then raised
    AttributeError and broke every later configuration)."""
    before = list(logging._handlerList)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="broadcaster") as error:
        KubernetesEventHandler(broadcaster="not a broadcaster")  # type: ignore[arg-type]
    assert "'not a broadcaster'" in str(error.value)
    del error  # the traceback's frames would keep a half-built handler alive
    assert list(logging._handlerList) == before  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("flush_timeout", 1e30),
        ("sleep_duration", "1e30"),
        ("request_timeout", 1e30),
        ("request_timeout", [5, 1e30]),
    ],
)
def test_seconds_too_many_to_wait_are_a_value_error_naming_the_option(
    option: str, value: object
) -> None:
    """A finite number of seconds beyond what a wait or a socket accepts
    (``threading.TIMEOUT_MAX``) is refused when dictConfig builds the handler. Accepted, a
    ``flush_timeout: 1e30`` made every close fail with OverflowError (threads left running)
    and a ``request_timeout: 1e30`` made every write fail, retried until lost."""
    with pytest.raises(ValueError, match="Unable to configure handler 'events'") as error:
        logging.config.dictConfig(_configuration("", sink=None, **{option: value}))
    cause = error.value.__cause__
    assert isinstance(cause, ValueError), repr(cause)
    assert option in str(cause), str(cause)
    assert "<=" in str(cause), str(cause)
    del error, cause


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("component", 123, ["component", "123", "string"]),
        ("component", ["billing"], ["component", "'billing'", "string"]),
        ("host", 123, ["host", "123", "string"]),
        ("host", ["node-1"], ["host", "'node-1'", "string"]),
        ("host", {"name": "node-1"}, ["host", "'node-1'", "string"]),
        ("clock", "system", ["clock", "'system'"]),
        ("sleep", "fast", ["sleep", "'fast'"]),
        ("correlator", {"key_func": "myapp.events.key"}, ["correlator.key_func", "ext://"]),
        ("correlator", {"spam_key_func": "per_reason"}, ["correlator.spam_key_func", "ext://"]),
        ("correlator", {"message_func": 5}, ["correlator.message_func", "5"]),
        ("correlator", {"clock": "system"}, ["correlator.clock", "'system'"]),
        ("correlator", {"key_func": os.getcwd}, ["correlator.key_func", "of (event)", "getcwd"]),
        ("correlator", {"message_func": lambda: "x"}, ["correlator.message_func", "of (event)"]),
        ("correlator", {"spam_key_func": lambda e, k: k}, ["correlator.spam_key_func", "(event)"]),
    ],
)
def test_a_value_of_the_wrong_kind_from_a_file_is_a_value_error_naming_the_option(
    option: str, value: object, words: list[str]
) -> None:
    """docs/configuration.md: every option is checked when dictConfig builds the handler, and
    an invalid value is a ValueError naming the option. A YAML ``host: 123``, a list, or a
    hook written without ``ext://`` once built a handler whose every event then failed on a
    writer (or, for an unhashable host, vanished uncounted), and a ``clock`` that is not
    one raised AttributeError and left a half-built handler in logging's list. So did a
    correlator hook that cannot take the event (``ext://os.getcwd``): every event failed on
    the dispatcher (a ``message_func`` at the first aggregation, minutes later)."""
    before = list(logging._handlerList)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="Unable to configure handler 'events'") as error:
        logging.config.dictConfig(_configuration("", sink=None, **{option: value}))
    cause = error.value.__cause__
    assert isinstance(cause, ValueError), repr(cause)
    assert all(word in str(cause) for word in words), str(cause)
    del error, cause  # the traceback's frames would keep a half-built handler alive
    # dictConfig takes out the handlers earlier tests left in the list (closed ones stay
    # until collected): only one this call added would be the half-built handler
    added = [ref for ref in logging._handlerList if ref not in before]  # type: ignore[attr-defined]
    assert added == []


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://", ["sink", "'http://'", "host"]),
        ("https://:6443", ["sink", "'https://:6443'", "host"]),
        ("http://127.0.0.1:99999", ["sink", "99999", "port"]),
        ("http://127.0.0.1:port", ["sink", "'http://127.0.0.1:port'", "port"]),
        ("http://[::1:8001", ["sink", "no URL", "IPv6"]),
    ],
)
def test_a_sink_url_without_a_host_or_port_is_a_value_error_naming_the_option(
    url: str, words: list[str]
) -> None:
    """A sink URL that names no host, or no port a socket can have, or is no URL at all (an
    unclosed IPv6 bracket, whose error named no option), is a mistake of the file:
    refused when dictConfig builds the handler, not met at every write (where each event
    spent its tries and was reported lost)."""
    with pytest.raises(ValueError, match="Unable to configure handler 'events'") as error:
        logging.config.dictConfig(_configuration("", sink=url))
    cause = error.value.__cause__
    assert isinstance(cause, ValueError), repr(cause)
    assert all(word in str(cause) for word in words), str(cause)
    del error, cause  # the traceback's frames would keep a half-built handler alive


@pytest.mark.parametrize("url", ["ftp://admin:S3cretPw@host", "admin:S3cretPw@127.0.0.1:8001"])
def test_a_sink_that_is_no_http_url_is_refused_without_its_password(url: str) -> None:
    """A sink option that is no http(s) URL (another scheme, none) but holds a user name and
    password: the refusal quoted it whole, password included, into the log of dictConfig's
    failure. It shows the URL as the reports do, without them."""
    with pytest.raises(ValueError, match="sink must be") as error:
        KubernetesEventHandler(sink=url)
    assert "S3cret" not in str(error.value)
    assert "admin" not in str(error.value)


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("false", False),
        ("True", True),
        (" FALSE ", False),
        ("yes", True),
        ("No", False),
        ("on", True),
        ("OFF", False),
        ("1", True),
        ("0", False),
    ],
)
def test_true_and_false_written_as_strings_are_the_booleans(written: str, meant: bool) -> None:
    """An ini file (fileConfig) or a quoted YAML value gives "false" (or "yes", "off" ...) as
    a string: for ``structured_logging`` it meant a logger named "false" or "yes"
    (structured logging on), and ``crash_events`` refused it; both take what configparser's
    ``getboolean`` (and YAML 1.1, unquoted) reads as a boolean as that boolean, as numbers
    written as strings are taken as numbers."""
    handler = KubernetesEventHandler(sink=None, structured_logging=written)
    try:
        assert handler._options.structured_logging is meant
    finally:
        handler.close()
    env = {"POD_NAME": "p", "POD_NAMESPACE": "n", "POD_UID": "u"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        options: dict[str, Any] = {"default_involved": "pod", "crash_events": written}
        handler = KubernetesEventHandler(sink=None, **options)
    try:
        assert handler._options.crash_events is meant
    finally:
        handler.close()


@pytest.mark.parametrize("option", ["kubeconfig", "context"])
@pytest.mark.parametrize("given", ["http://127.0.0.1:8001", FakeEventSink()], ids=["url", "object"])
def test_kubeconfig_or_context_with_a_sink_of_its_own_is_refused(option: str, given: Any) -> None:
    """``kubeconfig`` and ``context`` choose the cluster of ``sink: auto``; beside a sink URL
    or an EventSink they were silently ignored, and the events went elsewhere than the
    user meant. The handler refuses the pair when it is built, naming both options, as it
    refuses ``sink`` beside ``broadcaster``."""
    options: dict[str, Any] = {option: "x"}
    with pytest.raises(ValueError, match=f"{option} cannot be set together with a sink"):
        KubernetesEventHandler(sink=given, **options)


def test_events_v1_asked_of_a_sink_that_writes_core_v1_is_refused() -> None:
    """A sink object writes its own ``api``: asked for ``events.k8s.io/v1`` beside one that
    writes core/v1 (a sink without ``api`` does), the handler silently wrote counts where the
    user meant series. It refuses the pair when built, and closes a sink it built from a
    ``"()"`` factory for it; a sink that writes events.k8s.io/v1 itself, and ``auto``, are
    taken."""
    with pytest.raises(ValueError, match=r"api 'events\.k8s\.io/v1' cannot be set with a sink"):
        KubernetesEventHandler(sink=FakeEventSink(), api="events.k8s.io/v1")
    closed: list[FakeEventSink] = []

    class ClosedSink(FakeEventSink):
        def close(self) -> None:
            closed.append(self)

    config: dict[str, Any] = {
        "version": 1,
        "handlers": {
            "k8s": {
                "class": "k8s_logging_events.KubernetesEventHandler",
                "sink": {"()": ClosedSink},
                "api": "events.k8s.io/v1",
            }
        },
    }
    with pytest.raises(ValueError, match="Unable to configure handler 'k8s'") as error:
        logging.config.dictConfig(config)
    assert "sink that writes 'v1'" in str(error.value.__cause__)
    assert len(closed) == 1
    with LocalApiServer() as server:
        for api in ("events.k8s.io/v1", "auto"):
            with sink.KubernetesEventSink.from_url(server.url, api="events.k8s.io/v1") as own:
                KubernetesEventHandler(sink=own, api=api).close()


@pytest.mark.parametrize("written", ["none", "None", " NONE ", "null", "", None])
def test_structured_logging_written_as_none_is_off(written: str | None) -> None:
    """``structured_logging: none`` in a YAML file is the string "none", as ``sink: none``
    and ``default_involved: none`` are, and means what it says there: no structured
    logging, not a logger named "none" that every event is logged on (and that propagates
    to the root's console handlers)."""
    options: dict[str, Any] = {"structured_logging": written}  # None: not in the signature
    handler = KubernetesEventHandler(sink=None, **options)
    try:
        assert handler._options.structured_logging is False
    finally:
        handler.close()


def _one_argument_sleep(seconds: float) -> None:
    """A sleep written for ``time.sleep``'s shape, not the writer's ``(seconds, cancel)``."""


@pytest.mark.parametrize(
    "sleep", [time.sleep, _one_argument_sleep, lambda: None], ids=["time.sleep", "one", "none"]
)
def test_a_sleep_of_another_shape_than_seconds_and_cancel_is_refused(sleep: Any) -> None:
    """``sleep`` is called as ``sleep(seconds, cancel)``: ``time.sleep`` or a function of
    another shape made the dispatcher fail every wait in a loop (hundreds of thousands of
    reports, the occurrence pending until exit); it is a ValueError naming the option."""
    with pytest.raises(ValueError, match="sleep"):
        KubernetesEventHandler(sink=None, sleep=sleep)


def test_a_mock_sink_is_a_sink_on_every_python() -> None:
    """``sink=MagicMock()`` was refused from Python 3.12 ("sink must be ... an EventSink"),
    where ``isinstance`` on a protocol no longer finds attributes a ``Mock`` makes on access,
    and taken on 3.11. It is taken on every Python, as are the methods it is called with."""
    mocked = mock.MagicMock()
    handler = KubernetesEventHandler(sink=mocked, component="c")
    try:
        assert handler._options.sink is mocked
    finally:
        handler.close()


def test_a_sink_class_rather_than_an_instance_is_refused() -> None:
    """``sink=MySink`` (or ``"ext://mymodule.MySink"`` in dictConfig) names a class whose
    ``create``/``update``/``patch`` lack their instance: it was taken, and every write then
    failed on a TypeError, retried for minutes. It is refused at once, naming the class."""
    classes: tuple[Any, ...] = (FakeEventSink, sink.KubernetesEventSink)  # as dictConfig gives
    for given in classes:
        with pytest.raises(ValueError, match=given.__name__):
            KubernetesEventHandler(sink=given)


def test_a_sleep_of_the_writers_shape_is_taken() -> None:
    """A FakeClock's ``sleep`` and any ``(seconds, cancel)`` function are accepted."""
    for sleep in (FakeClock().sleep, lambda seconds, cancel: False):
        KubernetesEventHandler(sink=None, sleep=sleep).close()


@pytest.mark.parametrize(
    "name", ["lru_cache_size", "burst_size", "qps", "max_events", "max_interval_seconds"]
)
def test_a_null_correlator_number_means_its_default(name: str) -> None:
    """docs/configuration.md: "0 or null means the default". YAML's ``burst_size:`` with no
    value (or ``~``) is null, and must build the same correlator as leaving the key out."""
    checked = _options.checked_correlator({name: None})
    assert checked == correlator.CorrelatorOptions()
    KubernetesEventHandler(sink=None, correlator={name: None}).close()


def test_the_correlators_rate_and_interval_may_be_fractions() -> None:
    """qps and max_interval_seconds are numbers of any kind, the other keys whole numbers."""
    checked = _options.checked_correlator({"qps": "0.25", "max_interval_seconds": 90.5})
    assert checked == correlator.CorrelatorOptions(qps=0.25, max_interval_seconds=90.5)


def test_structured_logging_with_a_broadcaster_of_ones_own_is_refused() -> None:
    """docs/configuration.md: with a broadcaster of one's own the handler starts no watcher
    on it, so setting structured_logging too is an error, not an option silently ignored."""
    broadcaster = recorder.EventBroadcaster()
    try:
        with pytest.raises(ValueError, match="structured_logging cannot be set together"):
            KubernetesEventHandler(broadcaster=broadcaster, structured_logging=True)
    finally:
        broadcaster.shutdown()


def test_a_missing_kubeconfig_is_named_and_its_occurrences_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """KUBECONFIG=/nonexistent and sink: auto: the warning names the path, and every
    occurrence has an outcome (discarded) instead of none at all."""
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    handler = KubernetesEventHandler(component="lost")
    log = logging.getLogger("tests.options.missing")
    log.propagate = False
    log.addHandler(handler)
    with caplog.at_level(logging.WARNING, logger="k8s_logging_events"):
        for _ in range(3):
            log.warning("nowhere", extra={"involved": {"kind": "Pod", "metadata": {"name": "p"}}})
        handler.flush()
    handler.close()
    assert "/nonexistent/kubeconfig" in caplog.text
    stats = handler.stats()
    assert stats["accepted"] == 3
    assert stats["discarded"] == 3


def test_the_kubeconfig_and_context_options_choose_the_cluster(tmp_path) -> None:
    """A dictConfig file can name the cluster: kubeconfig (and its context) for sink auto."""
    with LocalApiServer(token="s3cret", auto_create_namespaces=True) as server:
        path = tmp_path / "kubeconfig"
        server.kubeconfig(path)
        config = _configuration("tests.options.kubeconfig", kubeconfig=str(path), qps=0)
        logging.config.dictConfig(config)
        log = logging.getLogger("tests.options.kubeconfig")
        handler = log.handlers[0]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "kc", "namespace": "default"},
        }
        log.warning("chosen", extra={"involved": pod})
        handler.flush()
        handler.close()
        assert [e["involvedObject"]["name"] for e in server.events()] == ["kc"]


def test_the_kubeconfig_option_takes_a_path_object(tmp_path: Path) -> None:
    """``kubeconfig=tmp_path / "kubeconfig"`` (a ``pathlib.Path``, as ``LocalApiServer.kubeconfig``
    takes one) was refused as no string: in code a file is named by a Path as often as by
    text, so it is taken, and it chooses the cluster as the same path written as text does."""
    with LocalApiServer() as server:
        path = tmp_path / "kubeconfig"
        server.kubeconfig(path)
        handler = KubernetesEventHandler(kubeconfig=path, qps=0)
        log = logging.getLogger("tests.options.kubeconfig_path")
        log.propagate = False
        log.addHandler(handler)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
        log.warning("chosen", extra={"involved": pod})
        assert handler.drain(10)
        log.removeHandler(handler)
        handler.close()
        assert [e["involvedObject"]["name"] for e in server.events()] == ["p"]


def test_an_unknown_context_is_reported_and_its_writes_counted(tmp_path, caplog) -> None:
    """A context the kubeconfig does not have: the client cannot be built, once said."""
    with LocalApiServer() as server:
        path = tmp_path / "kubeconfig"
        server.kubeconfig(path)
        handler = KubernetesEventHandler(kubeconfig=str(path), context="nope", qps=0)
        log = logging.getLogger("tests.options.context")
        log.propagate = False
        log.addHandler(handler)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c", "namespace": "default"}}
        with caplog.at_level(logging.WARNING, logger="k8s_logging_events"):
            log.warning("x", extra={"involved": pod})
            handler.flush()
        handler.close()
        assert "nope" in caplog.text
        assert handler.stats()["failed"] == 1
        assert server.events() == []


# --- one frozen options object, checked once, passed down whole ------------------------------

_NOT_OPTIONS = {"level", "broadcaster"}  # logging.Handler's level; the object to record into


def _fields(cls: type) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def test_every_keyword_of_the_handler_is_one_field_of_its_options() -> None:
    """The handler's signature and its options object name the same options: each keyword
    (but ``level`` and ``broadcaster``) is a field of Options or of its broadcaster part,
    and no field is in both, nor without a keyword."""
    keywords = {
        name
        for name, parameter in inspect.signature(KubernetesEventHandler).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    handler_part = _fields(_options.Options) - {"broadcasting"}
    broadcaster_part = _fields(_options.BroadcasterOptions)
    assert not handler_part & broadcaster_part
    assert handler_part | broadcaster_part == keywords - _NOT_OPTIONS


def test_every_field_of_the_options_says_what_it_means() -> None:
    """Each option is documented once in code: a docstring under each field of both
    dataclasses (docs/configuration.md is the users' reference)."""
    tree = ast.parse(Path(_options.__file__).read_text())
    classes = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name in ("Options", "BroadcasterOptions")
    }
    assert set(classes) == {"Options", "BroadcasterOptions"}
    for cls in classes.values():
        body = cls.body
        undocumented = [
            statement.target.id
            for statement, following in zip(body, [*body[1:], None], strict=True)
            if isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and not (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
                and following.value.value.strip()
            )
        ]
        assert undocumented == [], cls.name
        fields = [s for s in body if isinstance(s, ast.AnnAssign)]
        assert len(fields) == len(_fields(getattr(_options, cls.name)))


def test_the_options_are_checked_into_a_frozen_object_that_owes_nothing_to_the_caller() -> None:
    """Options cannot change once checked: neither by assignment nor by the caller changing
    the mapping it passed (``correlator``), and the handler's values are the checked ones
    (numbers written as strings are numbers)."""
    given = {"burst_size": "3", "max_events": 4}
    handler = KubernetesEventHandler(
        sink=None,
        correlator=given,
        queue_length="7",
        qps="2.5",
    )
    try:
        options = handler._options
        given["burst_size"] = 99
        with pytest.raises(dataclasses.FrozenInstanceError):
            options.qps = 1.0  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            options.broadcasting.queue_length = 1  # type: ignore[misc]
        assert options.qps == 2.5
        assert options.broadcasting.queue_length == 7
        assert options.broadcasting.correlator is not None
        assert options.broadcasting.correlator.burst_size == 3
        assert options.broadcasting.correlator.max_events == 4
    finally:
        handler.close()


def test_the_handler_gives_its_broadcaster_its_options_whole() -> None:
    """The broadcaster the handler builds holds the very object the handler checked (not
    keywords copied out of it), and acts on it: timestamp names, the handler's clock."""
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    fake = FakeEventSink()
    handler = KubernetesEventHandler(
        sink=fake, clock=clock, sleep=clock.sleep, queue_length=3, event_names="timestamp"
    )
    log = logging.getLogger("tests.options.whole")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("once", extra={"involved": POD})
        handler.flush()
        active = handler.broadcaster
        assert active is not None
        assert active._options is handler._options.broadcasting
        assert active.event_names == "timestamp"
        (event,) = fake.events
        assert event.first_timestamp == clock.now()
        assert event.name.startswith("p.")
    finally:
        log.removeHandler(handler)
        handler.close()


def test_the_broadcasters_keywords_make_the_same_options_as_the_handlers() -> None:
    """``EventBroadcaster(...)`` builds the object the handler passes, field for field,
    from its own keywords (``correlator_options`` is the field ``correlator``)."""
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    wanted = correlator.CorrelatorOptions(burst_size=3)
    values: dict[str, Any] = {
        "queue_length": 7,
        "writers": 2,
        "max_tries": 3,
        "sleep_duration": 0.5,
        "event_names": "deterministic",
        "clock": clock,
        "sleep": clock.sleep,
    }
    handler = KubernetesEventHandler(sink=None, correlator=wanted, **values)
    built = recorder.EventBroadcaster(correlator_options=wanted, **values)
    try:
        assert built._options == handler._options.broadcasting
    finally:
        built.shutdown(0)
        handler.close()


def test_the_broadcasters_public_keywords_and_defaults_stay_client_gos() -> None:
    """The public keyword signature of EventBroadcaster is unchanged by the options object:
    every keyword, keyword-only, with client-go's defaults."""
    parameters = inspect.signature(recorder.EventBroadcaster).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    defaults = {name: parameter.default for name, parameter in parameters.items()}
    assert defaults == {
        "sleep_duration": 10.0,
        "correlator_options": None,
        "queue_length": 1000,
        "clock": None,
        "writers": 4,
        "max_tries": 12,
        "sleep": None,
        "rng": None,
        "name": "k8s-events",
        "event_names": "timestamp",
    }
    with pytest.raises(ValueError, match="event_names"):
        recorder.EventBroadcaster(event_names="hash")


@pytest.mark.parametrize(
    "url", ["http://admin:S3cretPw@127.0.0.1:8001", "https://admin@api.example:6443"]
)
def test_a_url_sink_with_credentials_in_it_is_refused_without_showing_them(url: str) -> None:
    """A URL sink sends no credentials: a user name and password written into the URL would
    be ignored (every write a 401) and shown in every report that names the server. The
    handler refuses it when it is built, naming the option and where credentials go, never
    their value; so does a URL sink built by hand."""
    with pytest.raises(ValueError, match="sink") as error:
        KubernetesEventHandler(sink=url)
    assert "kubeconfig" in str(error.value)
    assert "S3cretPw" not in str(error.value)
    assert "admin" not in str(error.value)
    with pytest.raises(ValueError, match="kubeconfig") as error:
        sink.KubernetesEventSink.from_url(url)
    assert "S3cretPw" not in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/?token=S3cretTok",
        "http://127.0.0.1:8001?access_token=S3cretTok",
        "https://api.example:6443/#S3cretTok",
    ],
)
def test_a_url_sink_with_a_query_or_fragment_is_refused_without_showing_it(url: str) -> None:
    """A URL sink is the server's base URL: the client puts each request's path after it, so a
    query (``?token=...``) or a fragment made every write go to ``/`` and fail, and the query,
    often a token, was printed in every report that named the server. The handler refuses it
    when it is built, naming the option, never the query's value; so does a URL sink built
    by hand."""
    with pytest.raises(ValueError, match="sink") as error:
        KubernetesEventHandler(sink=url)
    assert "S3cretTok" not in str(error.value)
    with pytest.raises(ValueError, match="sink") as error:
        sink.KubernetesEventSink.from_url(url)
    assert "S3cretTok" not in str(error.value)


@pytest.mark.parametrize("mark", ["/", "#", "?"])
def test_a_url_sink_whose_password_holds_a_slash_hash_or_question_mark_is_refused_unshown(
    mark: str,
) -> None:
    """A password written into a URL sink unencoded may hold ``/``, ``#`` or ``?``, which end
    the URL's host part early: the user name and password then read as a host and port, or
    the rest as a path or fragment. The URL is still refused for its credentials, and the
    refusal shows neither the user name nor any part of the password."""
    url = f"http://admin:S3cr{mark}etPw@127.0.0.1:8001"
    with pytest.raises(ValueError, match="sink") as error:
        KubernetesEventHandler(sink=url)
    assert "S3cr" not in str(error.value)
    assert "etPw" not in str(error.value)
    assert "admin" not in str(error.value)
    with pytest.raises(ValueError, match="kubeconfig") as error:
        sink.KubernetesEventSink.from_url(url)
    assert "S3cr" not in str(error.value)
    assert "admin" not in str(error.value)


@pytest.mark.parametrize(
    ("keywords", "words"),
    [
        ({"sleep_duration": "soon"}, ["sleep_duration", "'soon'"]),
        ({"sleep_duration": -1}, ["sleep_duration", "-1"]),
        ({"sleep_duration": math.nan}, ["sleep_duration", "nan"]),
        ({"writers": 0}, ["writers", ">= 1"]),
        ({"writers": "four"}, ["writers", "'four'"]),
        ({"queue_length": 0}, ["queue_length", ">= 1"]),
        ({"max_tries": 0}, ["max_tries", ">= 1"]),
        ({"clock": "x"}, ["clock", "'x'"]),
        ({"correlator_options": []}, ["correlator", "[]"]),
    ],
)
def test_the_broadcasters_keywords_are_checked_as_the_handlers_options(
    keywords: dict[str, Any], words: list[str]
) -> None:
    """``EventBroadcaster(sleep_duration="soon")`` was built and failed at
    ``start_recording_to_sink`` with a bare TypeError; ``sleep_duration=-1`` or NaN retried at
    once, ``writers=0`` and ``queue_length=0`` were quietly taken as 1, and ``max_tries=0``
    as one try. Each is a ValueError naming the keyword, as the handler's option is (and a
    number written as a string is that number, as there)."""
    with pytest.raises(ValueError, match=r".") as error:
        recorder.EventBroadcaster(**keywords)
    assert all(word in str(error.value) for word in words), str(error.value)
    built = recorder.EventBroadcaster(sleep_duration="1")
    assert built._options.sleep_duration == 1.0
    built.shutdown(0)


@pytest.mark.parametrize(
    ("argv0", "named"),
    [
        ("/srv/billing.pyz", "billing"),
        ("./billing/", "billing"),
        ("/srv/billing/__main__.py", "billing"),
    ],
)
def test_a_zipapp_or_a_directory_run_as_a_script_is_named_after_its_path(
    monkeypatch: pytest.MonkeyPatch, argv0: str, named: str
) -> None:
    """``python billing.pyz`` (a zipapp, as shiv builds) and ``python billing/`` run its
    ``__main__.py`` as a module named ``__main__``: the default component was ``main``, with a
    warning that the component ``'__main__'`` (which no one wrote) is not a qualified name.
    Such a program is named after its path, as a script is; and so is the package directory
    of ``python billing/__main__.py`` (a container's ``CMD``), which was named ``main`` too."""
    monkeypatch.delenv(_options.COMPONENT_ENV, raising=False)
    main = type(sys)("__main__")
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [argv0])
    assert _options.default_component() == named


@pytest.mark.parametrize("argv0", [".", "./", "billing/.."])
def test_the_current_directory_run_as_a_script_is_named_after_the_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv0: str
) -> None:
    """``python .`` (a container's ``CMD ["python", "."]``, a project's own directory) was
    named ``.`` (``..`` for ``python billing/..``), with a warning that the component ``'.'``,
    which no one wrote, is not a qualified name: it is named after the directory it is."""
    (tmp_path / "billing-api" / "billing").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "billing-api")
    monkeypatch.delenv(_options.COMPONENT_ENV, raising=False)
    main = type(sys)("__main__")
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [argv0])
    assert _options.default_component() == "billing-api"


@pytest.mark.parametrize("blank", ["  ", "\n", " \t"])
def test_component_and_host_are_stripped_and_blank_means_the_default(
    monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    """``host=Path("/etc/hostname").read_text()`` ends with a newline, which went into every
    event's ``source.host`` and ``reportingInstance``; a blank ``component`` became
    ``k8s-logging-events`` with a warning about a name no one meant, where an empty one is
    the default. Both are stripped, as ``K8S_LOGGING_EVENTS_COMPONENT`` and ``NODE_NAME``
    are: blank means the default."""
    monkeypatch.setenv(_options.COMPONENT_ENV, "billing")
    monkeypatch.setenv("NODE_NAME", "node-7")
    handler = KubernetesEventHandler(sink=None, component=blank, host=blank)
    read = KubernetesEventHandler(sink=None, component=" shop\n", host="node-1\n")
    try:
        assert (handler.source.component, handler.source.host) == ("billing", "node-7")
        assert (read.source.component, read.source.host) == ("shop", "node-1")
    finally:
        handler.close()
        read.close()


class _NaiveClock:
    """A clock of one's own whose ``now()`` forgot the time zone (``datetime.now()``)."""

    def now(self) -> datetime:
        return datetime(2024, 1, 1)  # noqa: DTZ001 - the mistake under test

    def monotonic(self) -> float:
        return 0.0


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: KubernetesEventHandler(sink=FakeEventSink(), clock=_NaiveClock()), "clock"),
        (lambda: recorder.EventBroadcaster(clock=_NaiveClock()), "clock"),
        (
            lambda: KubernetesEventHandler(
                sink=FakeEventSink(), correlator={"clock": _NaiveClock()}
            ),
            "correlator.clock",
        ),
        (
            lambda: recorder.EventBroadcaster(
                correlator_options=correlator.CorrelatorOptions(clock=_NaiveClock())
            ),
            "CorrelatorOptions.clock",
        ),
        (
            lambda: KubernetesEventHandler(
                sink=FakeEventSink(), correlator=correlator.CorrelatorOptions(clock=_NaiveClock())
            ),
            "CorrelatorOptions.clock",
        ),
    ],
)
def test_a_clock_whose_now_is_naive_is_refused_when_built(build: Any, named: str) -> None:
    """A ``clock`` whose ``now()`` returns a naive datetime was taken, and every occurrence
    that met an event on the server (a restart's, another worker's) failed on the writer
    ("can't compare offset-naive and offset-aware datetimes"), retried, then counted as
    failed; one in ``CorrelatorOptions`` lost every combined event on the dispatcher ("can't
    subtract offset-naive and offset-aware datetimes"). It is a ValueError when the handler
    or broadcaster is built, naming the option."""
    with pytest.raises(ValueError, match=rf"^{named} must .*aware") as error:
        build()
    assert "2024-01-01 00:00:00" in str(error.value)


def test_the_json_formatter_is_imported_when_a_handler_needs_it_and_not_before(tmp_path) -> None:
    """``import k8s_logging_events`` imports neither python-json-logger nor configparser;
    a handler built with ``structured_logging: true`` has imported the JSON formatter before
    its first event (the pipeline starts inside emit, where no import may happen)."""
    code = """
import sys
import k8s_logging_events
print(sorted({"pythonjsonlogger", "configparser"} & set(sys.modules)))
from k8s_logging_events.testing import FakeEventSink
k8s_logging_events.KubernetesEventHandler(sink=FakeEventSink(), structured_logging=True)
print("pythonjsonlogger.json" in sys.modules)
"""
    child = run_python(code, cwd=tmp_path)
    assert (child.returncode, child.stdout.split("\n")[:2]) == (0, ["[]", "True"]), child.stderr
