"""Reading a record into an occurrence on the caller's thread (``_records``).

Most of this module is specified through the handler (``test_handler``, ``test_integrations``);
these tests pin what the handler cannot show: the exact occurrence read from a record, and
what is noted about it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import logging.handlers
import pickle
import queue
import re
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from k8s_logging_events import _records, _sanitise, models
from tests.reliability_scenarios import ListHandler, on_library_logger

NOW = datetime(2024, 1, 1, tzinfo=UTC)
SOURCE = models.EventSource(component="tests", host="node-1")


def _settings() -> _records.Settings:
    return _records.Settings(
        source=SOURCE,
        namespace="fallback",
        default_reason="Logging",
        max_message_bytes=1024,
        exception_detail="summary",
        formatter=None,
    )


def _record(level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    return logging.getLogger("tests.records").makeRecord(
        "tests.records", level, __file__, 1, "Pulling %s", ("busybox",), None, extra=extra
    )


def _pod() -> client.V1Pod:
    metadata = client.V1ObjectMeta(name="web-0", namespace="prod", uid="u1")
    return client.V1Pod(api_version="v1", kind="Pod", metadata=metadata)


def test_a_record_is_read_into_a_whole_occurrence_field_by_field() -> None:
    """Every field of Occurrence holds what the record says, in its place, with nothing noted.

    The reader builds the named tuple without its ``__new__`` (that costs a Python call per
    record): a field added to Occurrence and not here must fail this test.
    """
    record = _record(involved=_pod(), reason="BackOff", action="Pulling", annotations={"a": "b"})
    extras = _records.find_extras(record)
    assert extras is not None
    notes = _records.Notes()
    occurrence = _records.read(record, extras, _settings(), notes, NOW, 0.0)
    assert occurrence is not None
    assert len(occurrence) == len(models.Occurrence._fields)
    assert occurrence._asdict() == {
        "ref": models.ObjectReference(
            kind="Pod", namespace="prod", name="web-0", uid="u1", api_version="v1"
        ),
        "namespace": "prod",
        "type": models.WARNING,
        "reason": "BackOff",
        "message": "Pulling busybox",
        "annotations": {"a": "b"},
        "action": "Pulling",
        "related": None,
        "source": SOURCE,
        "time": NOW,
        "seen": 0.0,
    }
    assert (notes.refusal, notes.repairs) == (None, ())


def test_each_repair_is_noted_and_notes_are_not_shared() -> None:
    """Two repairs in one record are both noted, in order; a fresh Notes starts empty."""
    record = _record(logging.INFO, involved=_pod(), reason="back off", event_type="Fatal")
    extras = _records.find_extras(record)
    assert extras is not None
    notes = _records.Notes()
    occurrence = _records.read(record, extras, _settings(), notes, NOW, 0.0)
    assert occurrence is not None
    assert (occurrence.type, occurrence.reason) == (models.NORMAL, "BackOff")
    assert [kind for kind, _, _ in notes.repairs] == ["event-type", "reason"]
    assert _records.Notes().repairs == ()
    assert _records.Notes().refusal is None


def test_a_record_without_a_numeric_level_but_with_its_event_type_needs_no_repair() -> None:
    """``logging.makeLogRecord`` leaves ``levelno`` None; with ``event_type`` given the level
    decides nothing: the event has the type asked for, and no repair is noted (the report
    said the event was recorded as Normal, and it was a Warning)."""
    fields = {"msg": "m", "involved": _pod(), "event_type": "Warning"}
    record = logging.makeLogRecord(fields)
    extras = _records.find_extras(record)
    assert extras is not None
    notes = _records.Notes()
    occurrence = _records.read(record, extras, _settings(), notes, NOW, 0.0)
    assert occurrence is not None
    assert occurrence.type == models.WARNING
    assert notes.repairs == ()


def test_the_common_case_reads_the_same_extras_as_the_general_one() -> None:
    """``extra={"involved": ...}`` alone takes a short way: same extras, Nones left out."""
    pod = _pod()
    plain = _record(involved=pod, reason="BackOff", action=None, field_path="spec")
    assert _records.find_extras(plain) == {
        "involved": pod,
        "reason": "BackOff",
        "field_path": "spec",
    }
    assert _records.find_extras(_record(involved=pod, k8s_skip=True)) is None
    # the general way (loguru's bound values too): the record's own attribute still wins
    layered = _record(involved=pod, extra={"reason": "Bound", "action": "Act"}, reason="Own")
    assert _records.find_extras(layered) == {"involved": pod, "reason": "Own", "action": "Act"}


def test_a_cluster_scoped_object_files_its_event_in_the_settings_namespace() -> None:
    """A Node has no namespace: its event goes to the handler's ``namespace`` option."""
    node = client.V1Node(api_version="v1", kind="Node", metadata=client.V1ObjectMeta(name="n1"))
    record = _record(involved=node)
    extras = _records.find_extras(record)
    assert extras is not None
    occurrence = _records.read(record, extras, _settings(), _records.Notes(), NOW, 0.0)
    assert occurrence is not None
    assert (occurrence.ref.namespace, occurrence.namespace) == ("", "fallback")


def test_an_event_named_in_another_case_is_still_refused_as_an_event() -> None:
    """``kind: event`` (and ``EVENT``) is the built-in Event once its case is put right: an
    event about it is refused as an event about an Event, not repaired into one."""
    for kind in ("event", "EVENT"):
        for involved in (
            {"kind": kind, "name": "web.17a", "namespace": "prod"},
            {"apiVersion": "v1", "kind": kind, "metadata": {"name": "e", "namespace": "prod"}},
            {"apiVersion": "events.k8s.io/v1", "kind": kind, "metadata": {"name": "web.17a"}},
        ):
            record = _record(involved=involved, reason="BackOff")
            extras = _records.find_extras(record)
            assert extras is not None
            notes = _records.Notes()
            assert _records.read(record, extras, _settings(), notes, NOW, 0.0) is None, involved
            assert notes.refusal is not None
            assert notes.refusal[0] == "event-about-event"
            assert notes.repairs == ()


class _Hostile:
    """A value whose text, comparison and truth all raise (a broken proxy, say)."""

    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparison")

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise RuntimeError("no truth")


def test_an_extra_whose_text_or_comparison_raises_is_a_refusal_that_names_the_extras() -> None:
    """A ``reason``, ``action`` or annotation value that cannot be read raised out of the
    reader, and the handler's last-resort catch said only "No event for this record:
    RuntimeError(...)": the refusal names the extras it read and what they raised."""
    for extra in (
        {"reason": _Hostile()},
        {"action": _Hostile()},
        {"annotations": {"a": _Hostile()}},
    ):
        record = _record(involved=_pod(), **extra)
        extras = _records.find_extras(record)
        assert extras is not None
        notes = _records.Notes()
        assert _records.read(record, extras, _settings(), notes, NOW, 0.0) is None, extra
        assert notes.refusal is not None, extra
        kind, msg, args = notes.refusal
        text = msg % args
        assert kind == "extras", text
        assert all(word in text for word in ("reason", "annotations", "RuntimeError")), text


class _RecursingClass:
    """A lazy proxy gone wrong: looking up its ``__class__`` (as isinstance does) recurses."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return self.__class__


def test_a_field_path_whose_class_recurses_is_ignored_not_raised() -> None:
    """Seen before: ``extra={"involved": pod, "field_path": proxy}`` with a proxy whose
    ``__class__`` recurses raised RecursionError out of ``log.warning`` (and the handlers
    after this one never got the record). Like any field_path that is no string, it is
    left out, and the event recorded without it."""
    record = _record(involved=_pod(), field_path=_RecursingClass())
    extras = _records.find_extras(record)
    assert extras is not None
    notes = _records.Notes()
    occurrence = _records.read(record, extras, _settings(), notes, NOW, 0.0)
    assert occurrence is not None
    assert occurrence.ref.field_path == ""
    assert [kind for kind, _, _ in notes.repairs] == ["field_path"]


def test_a_call_site_whose_line_is_not_a_number_is_still_reported() -> None:
    """A record rebuilt by ``logging.makeLogRecord`` (from JSON, say) may carry a line number
    that is no number: the report of its bad input raised out of the handler into the log
    call. The report names the file and line 0."""
    record = logging.makeLogRecord({"msg": "m", "pathname": "shipped.py", "lineno": "x"})
    reported: list[str] = []

    class Keep(logging.Handler):
        def emit(self, report: logging.LogRecord) -> None:
            reported.append(report.getMessage())

    library = logging.getLogger("k8s_logging_events")
    keep = Keep()
    library.addHandler(keep)
    try:
        _records.CallSites().report(record, "involved", "Unable to refer to %s", "it")
    finally:
        library.removeHandler(keep)
    assert reported == ["Unable to refer to it (logged at shipped.py:0)"]


def test_a_report_with_no_room_left_on_the_stack_is_said_by_a_later_record() -> None:
    """A record with bad input logged at the end of the stack (deep in a recursion): its
    report raised RecursionError (as logging does there), and its call site counted as said,
    so every later record of that site, at any depth, was refused unsaid. The first record
    with room for the report says it, once."""
    sites = _records.CallSites()

    def deepest() -> None:
        try:
            deepest()
        except RecursionError:  # each frame on the way back up logs once more, with more room
            record = logging.makeLogRecord({"msg": "m", "pathname": "app.py", "lineno": 7})
            sites.report(record, "involved", "Unable to refer to %s", "it")

    with on_library_logger(ListHandler()) as reports:
        deepest()
    assert [report.getMessage() for report in reports.records] == [
        "Unable to refer to it (logged at app.py:7)"
    ]


def test_a_record_that_reaches_two_handlers_is_reported_once() -> None:
    """A library's handler on its logger and the application's on the root: a record with
    bad input reached both, and each said the same report, word for word. The second handler
    still refuses it (counted by each), but the record's report is said once; another
    record is said as before."""
    first, second = _records.CallSites(), _records.CallSites()  # each handler has its own
    record = logging.makeLogRecord({"msg": "m", "pathname": "app.py", "lineno": 7})
    other = logging.makeLogRecord({"msg": "m", "pathname": "app.py", "lineno": 8})
    with on_library_logger(ListHandler()) as reports:
        first.report(record, "involved", "Unable to refer to %s", "it")
        second.report(record, "involved", "Unable to refer to %s", "it")
        second.report(other, "involved", "Unable to refer to %s", "it")
    assert [report.getMessage() for report in reports.records] == [
        "Unable to refer to it (logged at app.py:7)",
        "Unable to refer to it (logged at app.py:8)",
    ]


def test_a_record_with_two_problems_that_reaches_two_handlers_says_each_once() -> None:
    """A record whose field_path and reason are both wrong reached a library's handler and
    the application's: each handler says both problems, one after the other, so each was
    said twice (only the last problem said was recognised). Now each problem is said once."""
    first, second = _records.CallSites(), _records.CallSites()  # each handler has its own
    record = logging.makeLogRecord({"msg": "m", "pathname": "app.py", "lineno": 7})
    with on_library_logger(ListHandler()) as reports:
        for sites in (first, second):
            sites.report(record, "field_path", "Ignoring %s", "field_path")
            sites.report(record, "reason", "Recorded %s", "reason")
    assert [report.getMessage() for report in reports.records] == [
        "Ignoring field_path (logged at app.py:7)",
        "Recorded reason (logged at app.py:7)",
    ]


class _LongestScan:
    """A sanitiser pattern that keeps the length of the longest text it was given."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self._pattern = pattern
        self.longest = 0

    def __getattr__(self, name: str) -> object:
        method = getattr(self._pattern, name)

        def scan(text: str, *args: object) -> object:
            self.longest = max(self.longest, len(text))
            return method(text, *args)

        return scan


HUGE = 10_000_000


def _read_scanned(
    monkeypatch: pytest.MonkeyPatch,
    patterns: tuple[str, ...],
    record: logging.LogRecord,
    notes: _records.Notes,
) -> models.Occurrence:
    """``record`` read into an occurrence, checking that none of the sanitiser's
    ``patterns`` was given more than 4,096 characters to scan."""
    scans = {name: _LongestScan(getattr(_sanitise, name)) for name in patterns}
    for name, scan in scans.items():
        monkeypatch.setattr(_sanitise, name, scan)
    extras = _records.find_extras(record)
    assert extras is not None
    occurrence = _records.read(record, extras, _settings(), notes, NOW, 0.0)
    assert occurrence is not None
    assert max(scan.longest for scan in scans.values()) <= 4096
    return occurrence


class _WatchedText(str):
    """A text that keeps its length whenever it is stripped, lowered or quoted whole."""

    scanned = 0

    def strip(self, chars: str | None = None) -> str:
        _WatchedText.scanned = max(_WatchedText.scanned, len(self))
        return super().strip(chars)

    def lower(self) -> str:
        _WatchedText.scanned = max(_WatchedText.scanned, len(self))
        return super().lower()

    def __repr__(self) -> str:
        _WatchedText.scanned = max(_WatchedText.scanned, len(self))
        return super().__repr__()


@pytest.mark.parametrize(
    "extra",
    [
        {"annotations": {_WatchedText("k" * HUGE): "v", "team": "shop"}},
        {"event_type": _WatchedText("Warning" * (HUGE // 7))},
    ],
    ids=["annotation-key", "event-type"],
)
def test_a_huge_annotation_key_or_event_type_is_refused_without_a_scan(
    monkeypatch, extra: dict[str, Any]
) -> None:
    """A 10 MB annotation key was matched against the key rule whole, then quoted whole in
    the report's list of dropped keys; a 10 MB event_type was stripped and lowered whole,
    twice: 20-30 ms of the logging call. Neither can be valid: each is refused on its length,
    the report quotes a short piece, and the valid annotation stays."""
    _WatchedText.scanned = 0
    record = _record(involved=_pod(), **extra)
    notes = _records.Notes()
    occurrence = _read_scanned(monkeypatch, ("_DNS_SUBDOMAIN", "_QUALIFIED_NAME"), record, notes)
    assert _WatchedText.scanned <= 4096
    ((_, _, args),) = notes.repairs
    assert all(len(str(arg)) <= 4096 for arg in args), [len(str(arg)) for arg in args]
    if "annotations" in extra:
        assert occurrence.annotations == {"team": "shop"}
    else:  # the type the level gives, as for any unsupported event_type
        assert occurrence.type == (models.WARNING if record.levelno >= 30 else models.NORMAL)


def test_annotations_are_read_no_further_than_the_limit(monkeypatch) -> None:
    """100,000 annotations whose keys the server refuses (1.3 MB of keys): each key was
    checked against the rule and quoted in the report's list, a quarter of a second of every
    logging call (a million keys: seconds). Past 256 KiB of keys the annotations are over
    the limit whatever their keys: dropped without reading the rest."""
    checked: list[str] = []
    rule = _sanitise.is_annotation_key

    def counted(key: str) -> bool:
        checked.append(key)
        return rule(key)

    monkeypatch.setattr(_sanitise, "is_annotation_key", counted)
    record = _record(involved=_pod(), annotations={f"bad key {i:05}": "v" for i in range(100_000)})
    extras = _records.find_extras(record)
    assert extras is not None
    notes = _records.Notes()
    occurrence = _records.read(record, extras, _settings(), notes, NOW, 0.0)
    assert occurrence is not None
    assert occurrence.annotations is None
    assert [kind for kind, _, _ in notes.repairs] == ["annotation-size"]
    assert len(checked) <= _sanitise.ANNOTATIONS_MAX_BYTES // len("bad key 00000") + 1


@pytest.mark.parametrize(
    "extra",
    [
        {"reason": "image pull " * (HUGE // 11)},
        {"action": "\udcff" * HUGE},
        {"annotations": {"body": "\udcff" * HUGE}},
    ],
    ids=["reason", "action", "annotation-value"],
)
def test_a_huge_extra_is_cut_before_it_is_scanned(monkeypatch, extra: dict[str, Any]) -> None:
    """A 10 MB reason, action or annotation value is read on the caller's thread: split
    into words or searched whole, it took the logging call a second of CPU (a message that
    size takes a millisecond: it is cut first). Only what a limit can keep is scanned; the
    event carries the same repair as before."""
    record = _record(involved=_pod(), **extra)
    notes = _records.Notes()
    occurrence = _read_scanned(monkeypatch, ("_REASON_BREAKS", "_UNSAFE_TEXT"), record, notes)
    assert notes.refusal is None
    assert len(notes.repairs) == 1, notes.repairs
    made = {
        "reason": occurrence.reason,
        "action": occurrence.action,
        "annotations": occurrence.annotations,
    }
    expected = {
        "reason": ("ImagePull" * 15)[:128],  # the reason's 128 bytes
        "action": "\ufffd" * 42,  # the most U+FFFD (3 bytes each) in the action's 128
        "annotations": None,  # over 256 KiB in all: dropped
    }
    (name,) = extra
    assert made[name] == expected[name]


class _Reason(enum.Enum):
    BACK_OFF = "BackOff"
    PULLED = "image pulled"


class _Type(enum.Enum):
    WARNING = "Warning"


class _Action(enum.Enum):
    PULL = "Pulling"


def test_a_plain_enum_member_stands_for_its_text_value() -> None:
    """``reason=Reason.BACK_OFF`` of a plain ``Enum`` (not a ``str`` one) is its value, as a
    ``StrEnum``'s is: its ``str()`` is ``Reason.BACK_OFF``, which was recorded as the reason
    and reported as repaired. So are an event_type's and an action's; a value that needs a
    repair still gets one."""
    record = _record(
        logging.INFO,
        involved=_pod(),
        reason=_Reason.BACK_OFF,
        event_type=_Type.WARNING,
        action=_Action.PULL,
    )
    extras = _records.find_extras(record)
    assert extras is not None
    notes = _records.Notes()
    occurrence = _records.read(record, extras, _settings(), notes, NOW, 0.0)
    assert occurrence is not None
    assert (occurrence.reason, occurrence.type, occurrence.action) == (
        "BackOff",
        "Warning",
        "Pulling",
    )
    assert notes.repairs == ()
    record = _record(involved=_pod(), reason=_Reason.PULLED)
    notes = _records.Notes()
    occurrence = _records.read(
        record, _records.find_extras(record) or {}, _settings(), notes, NOW, 0.0
    )
    assert occurrence is not None
    assert (occurrence.reason, [kind for kind, _, _ in notes.repairs]) == (
        "ImagePulled",
        ["reason"],
    )


class _ColourFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return f"\x1b[31m{super().formatException(ei)}\x1b[0m"


def test_a_traceback_another_handler_formatted_first_is_rendered_anew() -> None:
    """With ``exception_detail="traceback"``, a console handler ahead of this one whose
    formatter colours tracebacks leaves its rendering on the record (``exc_text``, the stdlib
    formatter's cache): the event's message was the console's, terminal colours and all.
    The handler's own formatter renders the exception itself."""
    try:
        raise ValueError("bad size")
    except ValueError:
        record = _record(involved=_pod())
        record.exc_info = sys.exc_info()
    _ColourFormatter().format(record)
    assert "\x1b[31m" in str(record.exc_text)
    settings = dataclasses.replace(
        _settings(), exception_detail="traceback", formatter=_records.PLAIN
    )
    occurrence = _records.read(
        record, _records.find_extras(record) or {}, settings, _records.Notes(), NOW, 0.0
    )
    assert occurrence is not None
    assert occurrence.message.startswith("Pulling busybox\nTraceback (most recent call last):")
    assert occurrence.message.endswith("ValueError: bad size")
    assert "\x1b[31m" in str(record.exc_text)  # the record itself is left as it was


def _over_a_socket(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` as a socket server makes it again from what ``SocketHandler`` sent."""
    sent = logging.handlers.SocketHandler("127.0.0.1", None).makePickle(record)
    return logging.makeLogRecord(pickle.loads(sent[4:]))  # the length prefix off


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("summary", "Pulling busybox: ValueError: bad size\nin registry"),
        ("traceback", "Pulling busybox\nTraceback (most recent call last):"),
        ("none", "Pulling busybox"),
    ],
)
def test_a_record_from_another_process_tells_its_exception_as_one_logged_here(
    detail: str, expected: str
) -> None:
    """A record that came over a socket (``SocketHandler``, ``DatagramHandler``: the logging
    cookbook's way to gather the records of many processes) has its exception only as the
    traceback's text (``exc_text``; ``exc_info`` is None). Its event follows
    ``exception_detail`` as a record logged here does: the summary was left out, and with the
    default formatter so was the traceback."""
    try:
        raise ValueError("bad size\nin registry")
    except ValueError:
        record = _record(involved=_pod())
        record.exc_info = sys.exc_info()
    received = _over_a_socket(record)
    assert received.exc_info is None
    settings = dataclasses.replace(_settings(), exception_detail=detail, formatter=_records.PLAIN)
    occurrence = _records.read(
        received, _records.find_extras(received) or {}, settings, _records.Notes(), NOW, 0.0
    )
    assert occurrence is not None
    assert occurrence.message.startswith(expected)
    assert occurrence.message.endswith("in registry") or detail == "none"
    # logged with exc_info=True outside an except block: no exception, as for a record here
    no_exception = _record(involved=_pod())
    no_exception.exc_info = (None, None, None)
    received = _over_a_socket(no_exception)
    occurrence = _records.read(
        received, _records.find_extras(received) or {}, settings, _records.Notes(), NOW, 0.0
    )
    assert occurrence is not None
    assert occurrence.message.split("\n")[0] == "Pulling busybox"
    assert occurrence.message == "Pulling busybox" or detail == "traceback"


def test_a_queued_record_sent_on_over_a_socket_tells_its_exception_as_one_logged_here() -> None:
    """Workers' records gathered by a ``QueueListener`` whose handler is a ``SocketHandler``
    (the cookbook's two recipes together) arrive prepared, traceback in the message, and
    without the ``message`` a queued record has: the event's message was the whole
    traceback, file paths and source lines, whatever ``exception_detail`` said."""
    try:
        raise ValueError("bad size")
    except ValueError:
        record = _record(involved=_pod())
        record.exc_info = sys.exc_info()
    received = _over_a_socket(logging.handlers.QueueHandler(queue.SimpleQueue()).prepare(record))
    for detail, expected in (
        ("summary", "Pulling busybox: ValueError: bad size"),
        ("none", "Pulling busybox"),
    ):
        settings = dataclasses.replace(_settings(), exception_detail=detail)
        occurrence = _records.read(
            received, _records.find_extras(received) or {}, settings, _records.Notes(), NOW, 0.0
        )
        assert occurrence is not None
        assert occurrence.message == expected
