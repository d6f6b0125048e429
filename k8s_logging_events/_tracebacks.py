"""An exception as an event tells it, on the caller's thread (docs/architecture.md).

:func:`exception_summary` is the one line (``ExcType: text``) an event gives an exception by
default; :func:`queued` and :func:`without_loguru_traceback` take apart the traceback text a
``QueueHandler`` or loguru has already written into a record's message.
"""

from __future__ import annotations

import itertools
import logging
import re
import traceback
from collections.abc import Iterable, Iterator

_NONE_LINE = "NoneType: None"  # what traceback (and loguru) writes for no exception
_TRACEBACK_STARTS = (
    "Traceback (most recent call last):",
    "  + Exception Group Traceback (most recent call last):",  # as loguru indents a group
    "Exception Group Traceback (most recent call last):",
)
_QUEUED_EXCEPTION = f"\n{_TRACEBACK_STARTS[0]}\n"
_QUEUED_STACK = "\nStack (most recent call last):\n"
_QUEUED_NONE = f"\n{_NONE_LINE}"  # what the stdlib formats for an exc_info of no exception
_QUEUED_STARTS = (_QUEUED_EXCEPTION, _QUEUED_STACK, f"\n{_TRACEBACK_STARTS[1]}\n")


def queued(record: logging.LogRecord) -> tuple[str, str] | None:
    """For a record a ``QueueHandler`` prepared (its traceback and stack text in its message),
    also one sent on over a socket: the message without them, and ``ExcType: text`` as
    :func:`exception_summary` has it; None for any other record."""
    attrs = record.__dict__
    text = attrs.get("msg")
    # QueueHandler.prepare's marks: the same text as message and msg, and no args (see caller);
    # SocketHandler sends no message (its receiver's record, args None, has none)
    if attrs.get("message", text) is not text or not isinstance(text, str):
        return None
    found = [index for start in _QUEUED_STARTS if (index := text.find(start)) >= 0]
    head = text[: min(found)] if found else text
    if head.endswith(_QUEUED_NONE):  # log.exception() outside an except block
        head = head[: -len(_QUEUED_NONE)]
    elif not found:
        return None
    exception = text[min(found) :].split(_QUEUED_STACK)[0] if found else ""  # a stack follows
    return head, told(exception)


def told(exception: str) -> str:
    """``ExcType: text`` of an exception as a traceback told it, after a newline (a queued
    message's, or ``exc_text`` of a record that came over a socket, without ``exc_info``)."""
    if exception.strip("\n") == _NONE_LINE:  # formatted from an exc_info of no exception
        return ""
    group = exception.rfind(_QUEUED_STARTS[2])
    if group > exception.rfind(_QUEUED_EXCEPTION):  # the exception raised last is a group
        return _group_summary(exception[group:].split("\n")[2:])
    return _exception_text(exception.split("\n"))


def _exception_text(lines: list[str]) -> str:
    """The exception's text after the last frame's indented source and carets in ``lines``
    (all of them for an exception never raised)."""
    frames = [index for index, line in enumerate(lines) if line.startswith("  File ")]
    start = frames[-1] + 1 if frames else 0
    while start < len(lines) and lines[start].startswith(" "):
        start += 1
    return _without_module("\n".join(lines[start:]).strip("\n"))


def _group_summary(lines: list[str]) -> str:
    """:func:`exception_summary` of a group from its traceback's ``lines`` (those after its
    first): each exception in it is a traceback of its own behind ``| ``, after a ``+---``
    line; one a ``+-+`` line follows is a group, ``+--- ... ---`` leads to none (``and 5
    more exceptions``)."""
    opened, sections = [""], [list[str]()]  # the line each section follows, and its lines
    for line in lines:
        line = line.lstrip(" ")
        if line.startswith("+"):
            opened.append(line)
            sections.append([])
        elif line.startswith("|"):
            sections[-1].append(line[2:])
    opened.append("")
    leaves = (
        _exception_text(section)
        for index, section in enumerate(sections[1:], 1)
        if section and " ... " not in opened[index] and not opened[index + 1].startswith("+-+")
    )
    # only this text's wording tells the group's text from its notes, which follow it
    text = _exception_text(sections[0])
    found = _GROUP_TEXT_END.search(text)
    end = found.end() if found else len(text)
    return _with_leaves(text[:end], leaves) + text[end:]


def _without_module(summary: str) -> str:
    """``ExcType: text`` of a traceback's ``module.ExcType: text``."""
    name, colon, text = summary.partition(":")
    parts = name.split(".")
    if len(parts) == 1 or not all(part.isidentifier() for part in parts):
        return summary
    # the module's names are lower case by convention, the class's capitalised
    first = next((i for i, part in enumerate(parts) if part[0].isupper()), len(parts) - 1)
    return ".".join(parts[first:]) + colon + text


def without_loguru_traceback(text: str, exc_info: object) -> str:
    """Loguru's output up to where its exception text begins: the chain's first traceback,
    or the ``Type: text`` line of an exception never raised. A message that contains such a
    start loses more, never less."""
    exc = exc_info[1] if isinstance(exc_info, tuple) else None
    unraised = [_exception_line(e) for e in _chain(exc)[1:] if e.__traceback__ is None]
    starts = [*_TRACEBACK_STARTS, *unraised]
    found = [index for start in starts if start and (index := text.find(start)) >= 0]
    if found:
        return text[: min(found)].rstrip("\n")
    # the exception alone, never raised: loguru wrote only its last lines
    last = _exception_line(exc) if exc is not None else _NONE_LINE
    index = text.rfind(last) if last else -1
    return text[:index].rstrip("\n") if index >= 0 else text


def _chain(exc: BaseException | None) -> list[BaseException]:  # as loguru walks it
    chain: list[BaseException] = []
    while exc is not None and exc not in chain and len(chain) < 64:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return chain


def _exception_line(exc: BaseException) -> str:
    try:
        lines = traceback.format_exception_only(type(exc), exc)
    except Exception:  # an exception whose __str__ fails: loguru's line differs anyway
        return ""
    return next((line.rstrip("\n") for line in lines if not line.startswith(" ")), "")


def exception_summary(exc_info: object) -> str:
    """``ExcType: text`` of an ``exc_info`` triple (``ExcType`` without text); "" for none.
    A group's is followed by those of the exceptions in it (``: A: a; B: b``)."""
    if not isinstance(exc_info, tuple) or len(exc_info) < 2 or exc_info[0] is None:
        return ""
    exc_type, exc = exc_info[0], exc_info[1]
    lines = _summary(exc_type, exc)
    if isinstance(exc, BaseExceptionGroup):  # after its text, before its notes
        leaves = ("\n".join(_summary(type(leaf), leaf)) for leaf in _leaves(exc))
        lines[0] = _with_leaves(lines[0], leaves)
    return "\n".join(lines)


_GROUP_SHOWN = 10  # distinct summaries of a group's exceptions, of its first hundred
_GROUP_READ = 100
_GROUP_TEXT_END = re.compile(r" \(\d+ sub-exceptions?\)$", re.MULTILINE)  # BaseExceptionGroup's


def _with_leaves(summary: str, leaves: Iterable[str]) -> str:
    # asyncio's TaskGroup: the group's own text says how many failed, never why
    seen = dict.fromkeys(itertools.islice(leaves, _GROUP_READ))
    return f"{summary}: {'; '.join(itertools.islice(seen, _GROUP_SHOWN))}"


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    # no recursion: a frame per nested group raised RecursionError into the caller's log call
    todo: list[BaseException] = [group]
    while todo:
        exc = todo.pop()
        if isinstance(exc, BaseExceptionGroup):  # never empty: a leaf a child at least
            todo.extend(reversed(exc.exceptions[:_GROUP_READ]))
        else:
            yield exc


def _summary(exc_type: object, exc: object) -> list[str]:
    """``ExcType: text`` and the exception's notes."""
    name = getattr(exc_type, "__qualname__", None) or str(exc_type)
    text = _shown(exc, "<unprintable>")  # an exception whose __str__ fails still has a type
    try:  # add_note's, on lines after the text as a traceback (a QueueHandler's record) has them
        notes = getattr(exc, "__notes__", None)
    except Exception:  # a property that fails: no notes, never no event
        notes = None
    notes = notes if isinstance(notes, list | tuple) else ()
    lines = [_shown(note, "<note str() failed>") for note in notes]
    return [f"{name}: {text}" if text else str(name), *lines]


def _shown(value: object, failed: str) -> str:
    try:
        return str(value)
    except Exception:  # one that fails loses its own text, never the others'
        return failed
