"""An exception as an event tells it: the one-line summary, and traceback text taken apart.

The handler's tests show these through whole records (QueueHandler, loguru, structlog); these
pin the rules themselves, on records and texts made here.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys

import pytest

from k8s_logging_events import _tracebacks


def _raised(error: BaseException) -> tuple[type[BaseException], BaseException, object]:
    try:
        raise error
    except BaseException:
        info = sys.exc_info()
    assert info[0] is not None
    assert info[1] is not None
    return info[0], info[1], info[2]


def _queued(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` as a ``QueueHandler`` puts it on its queue: traceback text in the message."""
    handler = logging.handlers.QueueHandler(queue.SimpleQueue())
    prepared = handler.prepare(record)
    assert isinstance(prepared, logging.LogRecord)
    return prepared


def _record(msg: str, exc_info: object = None, **attrs: object) -> logging.LogRecord:
    record = logging.LogRecord("shop", logging.ERROR, __file__, 1, msg, None, exc_info)  # type: ignore[arg-type]
    record.__dict__.update(attrs)
    return record


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_the_summary_is_the_exception_type_and_its_text() -> None:
    """``ExcType: text``; the type alone without text; nothing without an exception."""
    assert _tracebacks.exception_summary(_raised(KeyError("web-0"))) == "KeyError: 'web-0'"
    assert _tracebacks.exception_summary(_raised(ValueError())) == "ValueError"
    assert _tracebacks.exception_summary((None, None, None)) == ""
    assert _tracebacks.exception_summary(None) == ""
    assert _tracebacks.exception_summary(True) == ""


def test_an_exception_groups_summary_names_the_exceptions_in_it() -> None:
    """asyncio's TaskGroup raises a group whose own text says how many tasks failed, not why:
    the event said ``ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions)``
    and nothing more. The summaries of the exceptions in it (nested groups included) follow,
    each once, at most ten."""
    group = ExceptionGroup(
        "unhandled errors in a TaskGroup",
        [ConnectionError("refused"), ExceptionGroup("inner", [KeyError("web-0")])],
    )
    assert _tracebacks.exception_summary(_raised(group)) == (
        "ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions): "
        "ConnectionError: refused; KeyError: 'web-0'"
    )
    many = ExceptionGroup("gather", [ValueError("same")] * 3 + [ValueError(n) for n in range(20)])
    summary = _tracebacks.exception_summary(_raised(many))
    assert summary.startswith("ExceptionGroup: gather (23 sub-exceptions): ValueError: same; ")
    assert summary.endswith("; ValueError: 8")  # ten distinct, the repeats said once


def test_a_group_nested_deeper_than_the_stack_is_summarised() -> None:
    """Each nested group took a frame: a group nested as deep as the stack left room for (a
    log call in deep code, nested TaskGroups) raised RecursionError into the log call."""
    group: ExceptionGroup[Exception] = ExceptionGroup("inner", [KeyError("web-0")])
    for _ in range(2 * sys.getrecursionlimit()):
        group = ExceptionGroup("outer", [group])
    summary = _tracebacks.exception_summary(_raised(group))
    assert summary == "ExceptionGroup: outer (1 sub-exception): KeyError: 'web-0'"


def test_an_exception_whose_text_raises_still_has_a_summary() -> None:
    """The type is named, its text said to be unprintable; nothing raises."""
    summary = _tracebacks.exception_summary(_raised(_UnprintableError()))
    assert summary == "_UnprintableError: <unprintable>"


def test_a_queued_record_gives_its_message_and_the_exceptions_last_line() -> None:
    """A ``QueueHandler`` formats the traceback into the message and drops the exception:
    the message comes back without it, and the summary reads ``ExcType: text`` from its last
    line, the module's name taken off as the summary of a live exception has it."""
    prepared = _queued(_record("pull failed", _raised(TimeoutError("no answer in 10 s"))))
    assert "Traceback (most recent call last)" in prepared.msg
    assert _tracebacks.queued(prepared) == ("pull failed", "TimeoutError: no answer in 10 s")
    error = json.JSONDecodeError("Expecting value", "x", 0)
    prepared = _queued(_record("bad answer", _raised(error)))
    assert "json.decoder.JSONDecodeError" in prepared.msg
    summary = _tracebacks.exception_summary(_raised(error))
    assert _tracebacks.queued(prepared) == ("bad answer", summary)
    assert summary.startswith("JSONDecodeError: Expecting value")


def test_a_queued_record_without_an_exception_is_not_taken_apart() -> None:
    """A plain queued record, and any record that a QueueHandler did not prepare: None."""
    assert _tracebacks.queued(_queued(_record("plain"))) is None
    assert _tracebacks.queued(_record("Traceback (most recent call last):\n  File x")) is None


def test_a_queued_exception_text_of_several_lines_is_kept_whole() -> None:
    """Lines of the exception's own text after the frames belong to the summary."""
    prepared = _queued(_record("bad", _raised(ValueError("first line\nsecond line"))))
    queued = _tracebacks.queued(prepared)
    assert queued is not None
    assert queued == ("bad", "ValueError: first line\nsecond line")


def _group_during_another() -> ExceptionGroup[Exception]:
    """A group raised while another exception was handled, of raised exceptions, one of them
    raised while handling a third."""
    raised = []
    for error in (ValueError("bad size"), KeyError("web-0")):
        try:
            try:
                raise error
            except KeyError as inner:
                raise LookupError("no pod") from inner
        except Exception as caught:  # collected, as a TaskGroup does
            raised.append(caught)
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        try:
            raise ExceptionGroup("unhandled errors in a TaskGroup", raised)
        except ExceptionGroup as group:
            return group


@pytest.mark.parametrize(
    "group",
    [
        ExceptionGroup("unhandled errors in a TaskGroup", [ValueError("bad"), KeyError("web-0")]),
        ExceptionGroup("outer", [ExceptionGroup("inner", [ValueError("a\nb")]), TypeError("t")]),
        ExceptionGroup("gather", [ValueError(n) for n in range(20)]),
        ExceptionGroup("decode", [json.JSONDecodeError("Expecting value", "x", 0)]),
        _group_during_another(),
    ],
    ids=["flat", "nested", "wider-than-shown", "module", "chained"],
)
def test_a_queued_exception_group_has_the_summary_of_a_direct_record(
    group: ExceptionGroup[Exception],
) -> None:
    """Behind a QueueHandler, a group's event said nothing of it (the summary was empty), or,
    raised while another exception was handled, gave the whole group's traceback as its
    summary. Read from the traceback text, the summary is the group's and those of the
    exceptions in it, as a direct record's."""
    info = _raised(group)
    prepared = _queued(
        _record("reconcile failed", info, stack_info="Stack (most recent call last):\n  x")
    )
    assert "Exception Group Traceback" in prepared.msg
    summary = _tracebacks.exception_summary(info)
    assert _tracebacks.queued(prepared) == ("reconcile failed", summary)


def _noted(error: Exception, *notes: str) -> Exception:
    for note in notes:
        error.add_note(note)
    return error


@pytest.mark.parametrize(
    ("error", "summary"),
    [
        (
            _noted(KeyError("web-0"), "while reconciling shop/web"),
            "KeyError: 'web-0'\nwhile reconciling shop/web",
        ),
        (_noted(ValueError(), "a\nb", "c"), "ValueError\na\nb\nc"),
        (
            ExceptionGroup("g", [_noted(ValueError("bad"), "item 5")]),
            "ExceptionGroup: g (1 sub-exception): ValueError: bad\nitem 5",
        ),
        (
            _noted(ExceptionGroup("g", [ValueError("bad"), KeyError("k")]), "shard 3"),
            "ExceptionGroup: g (2 sub-exceptions): ValueError: bad; KeyError: 'k'\nshard 3",
        ),
    ],
    ids=["one", "no-text", "in-a-group", "a-groups-own"],
)
def test_an_exceptions_notes_are_in_its_summary_queued_or_not(
    error: Exception, summary: str
) -> None:
    """``add_note``: a QueueHandler's record, whose traceback text shows the notes after the
    exception's text, had them in its summary, a direct record's did not, though the docs
    say both are treated alike. Both have them, on lines after the text, as a traceback.
    Seen before the fix: a group's own note came between its text and its exceptions',
    read as their label (``g (2 sub-exceptions)\nshard 3: ValueError: bad; ...``); it
    comes after them."""
    info = _raised(error)
    assert _tracebacks.exception_summary(info) == summary
    assert _tracebacks.queued(_queued(_record("failed", info))) == ("failed", summary)


class _UnreadableNotesError(Exception):
    @property
    def __notes__(self) -> list[str]:  # type: ignore[override]
        raise RuntimeError("no notes")


class _UnprintableNote(str):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_notes_that_cannot_be_shown_leave_the_exceptions_own_text() -> None:
    """Seen before the fix: a note whose str() raises made the summary
    ``ValueError: <unprintable>``, the exception's own text lost; a ``__notes__`` that raises
    (a property of the exception's class) made the log call's event fail ("Unable to
    format the message", no event). The text stays; such a note is shown as Python's
    traceback shows it, and notes that cannot be read are left out."""
    noted = _noted(ValueError("real text"), _UnprintableNote("n"), "kept")
    summary = _tracebacks.exception_summary(_raised(noted))
    assert summary == "ValueError: real text\n<note str() failed>\nkept"
    summary = _tracebacks.exception_summary(_raised(_UnreadableNotesError("own text")))
    assert summary == "_UnreadableNotesError: own text"


def test_loguru_output_loses_its_traceback_and_keeps_its_message() -> None:
    """Loguru's sink writes its message, then the traceback: the message alone is kept; an
    exception never raised (only its ``Type: text`` line written) is cut there too."""
    raised = _raised(OSError("disk full"))
    text = "12:00 | ERROR | write failed\nTraceback (most recent call last):\n  File ...\nOSError"
    assert _tracebacks.without_loguru_traceback(text, raised) == "12:00 | ERROR | write failed"
    unraised = ValueError("bad value")
    text = "12:00 | ERROR | check failed\nValueError: bad value"
    info = (ValueError, unraised, None)
    assert _tracebacks.without_loguru_traceback(text, info) == "12:00 | ERROR | check failed"


def test_loguru_output_without_an_exception_loses_the_none_line() -> None:
    """``opt(exception=True)`` outside an ``except`` block: loguru writes ``NoneType: None``."""
    text = "12:00 | ERROR | nothing raised\nNoneType: None"
    assert _tracebacks.without_loguru_traceback(text, (None, None, None)) == (
        "12:00 | ERROR | nothing raised"
    )


class _CustomTextGroup(ExceptionGroup[Exception]):
    def __str__(self) -> str:  # as some libraries' groups: no "(N sub-exceptions)"
        return "3 shards failed"


@pytest.mark.parametrize(
    "group",
    [
        _noted(_CustomTextGroup("g", [ValueError("bad")]), "shard 3"),
        _noted(ExceptionGroup("x (2 sub-exceptions)\ny", [ValueError("bad")]), "shard 3"),
    ],
    ids=["own-str", "count-like-line-in-text"],
)
def test_a_groups_exceptions_come_after_its_whole_text_and_before_its_notes(
    group: Exception,
) -> None:
    """Seen before the fix: the exceptions were placed after the first line ending in
    ``(N sub-exceptions)``, so a group whose ``__str__`` has none had them after its note
    (``3 shards failed\nshard 3: ValueError: bad``, read as the note's label), one whose
    text has such a line in its middle had them inside its text. Where the group is at
    hand, its text and notes are told apart by what they are, not by that wording."""
    text = str(group)
    summary = _tracebacks.exception_summary(_raised(group))
    assert summary == f"{type(group).__qualname__}: {text}: ValueError: bad\nshard 3"
