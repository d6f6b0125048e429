"""From a ``logging.LogRecord`` to one occurrence, on the caller's thread (docs/architecture.md).

:func:`find_extras` finds the extras, :func:`read` snapshots them into an occurrence, repaired
where the server would refuse a field; :class:`CallSites` reports each problem once per site.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import re
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import cast

from k8s_logging_events import _diagnostics, _kinds, _sanitise, _tracebacks, models, references

EXCEPTION_DETAILS = ("summary", "traceback", "none")
"""What an event says of a record's exception: ``ExcType: text``, the traceback, or nothing."""

INVOLVED_NONE = (
    "Unable to refer to the involved object: the involved object is None (leave involved "
    "out of a record that is about no object)"
)

ABOUT_AN_EVENT = "Refusing to record an event about Event %s/%s: events about events multiply"
"""The report of an event about an Event (its namespace and name), refused by both front doors."""

EXTRAS = ("involved", "reason", "action", "related", "annotations", "event_type", "field_path")
"""The record attributes (``extra=`` keys) the handler reads."""

SKIP = "k8s_skip"  # Kopf's flag, honoured on any record: true means no event
KOPF_REF = "k8s_ref"  # Kopf's reference to the object a record is about: stands for involved
LOGURU_EXTRA = "extra"  # where loguru's standard-handler sink puts its bound values
# put by structlog's ProcessorFormatter.wrap_for_formatter (with _name): msg is the event dict
STRUCTLOG_MARK = "_logger"


_MAX_CALL_SITES = 4096
_SHOWN_MAX = 200  # characters of a bad value quoted in a report
_OWN_PREFIX = _diagnostics.LOGGER_NAME + "."
# the handler's own formatter: basicConfig gives its format (meant for a console, often
# with the time, which makes each repeat an event of its own) only to a handler without one
PLAIN = logging.Formatter("%(message)s")
# the built-in namespaced kinds of which no object is an Event, whatever its apiVersion
_PLAIN_KINDS = frozenset(
    kind
    for kind in _kinds.NAMESPACED_KINDS
    if not any(_sanitise.is_event(kind, version) for version in _sanitise.EVENT_API_VERSIONS)
)
_OPTIONAL_EXTRAS = EXTRAS[1:]

# the named tuple's own __new__ is a Python function that makes this very call
_occurrence: Callable[[tuple[object, ...]], models.Occurrence] = functools.partial(
    tuple.__new__, models.Occurrence
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The handler options that shape an occurrence."""

    source: models.EventSource
    namespace: str  # where an event about a cluster-scoped object is filed
    default_reason: str
    max_message_bytes: int
    exception_detail: str
    formatter: logging.Formatter | logging.Handler | None  # a handler: its own format()


def find_extras(
    record: logging.LogRecord, default_involved: object = None
) -> dict[str, object] | None:
    """The extras of ``record`` (``involved`` among them), or None for no event (a true
    ``k8s_skip`` in any place, or no involved object). Each comes from the first place that has
    it (not None): the record's attributes, loguru's ``extra``, structlog's event dict;
    ``involved`` then from Kopf's ``k8s_ref`` in those places, then ``default_involved``."""
    attrs = record.__dict__
    get = attrs.get
    bound = get(LOGURU_EXTRA)
    loguru = bound if bound is not None and isinstance(bound, Mapping) else None
    event_dict = None if type(get("msg")) is str else structlog_event_dict(record)
    involved = get("involved")
    if involved is not None and loguru is None and event_dict is None:
        # the common case, extra={"involved": ...}: a plain loop (a comprehension is a call)
        if get(SKIP):
            return None
        found: dict[str, object] = {"involved": involved}
        for name in _OPTIONAL_EXTRAS:
            value = get(name)
            if value is not None:
                found[name] = value
        return found
    layers: list[Mapping[str, object]] = [m for m in (attrs, loguru, event_dict) if m is not None]
    if any(layer.get(SKIP) for layer in layers):
        return None
    found = {}
    for layer in reversed(layers):  # the first layer that has an extra wins
        found.update({name: value for name in EXTRAS if (value := layer.get(name)) is not None})
    if "involved" not in found:
        kopf = [ref for layer in layers if (ref := layer.get(KOPF_REF)) is not None]
        found["involved"] = kopf[0] if kopf else default_involved
    return None if found["involved"] is None else found


def involved_is_none(record: logging.LogRecord) -> bool:
    """True when a call gave ``involved`` as None (a lookup that found nothing: said) without
    ``k8s_skip``; not in loguru's ``extra``, where ``configure(extra=...)`` puts defaults."""
    attrs = record.__dict__
    found = [place for place in (attrs, structlog_event_dict(record)) if place is not None]
    return any(place.get("involved", False) is None for place in found) and not any(
        SKIP in place for place in found
    )


def structlog_event_dict(record: logging.LogRecord) -> dict[str, object] | None:
    """structlog's event dict, from ``wrap_for_formatter`` (marked ``_logger`` and ``_name``)."""
    attrs = record.__dict__
    message = attrs.get("msg")
    marked = STRUCTLOG_MARK in attrs and "_name" in attrs
    return message if isinstance(message, dict) and marked else None


def read(
    record: logging.LogRecord,
    extras: Mapping[str, object],
    settings: Settings,
    notes: Notes,
    now: datetime,
    seen: float,
) -> models.Occurrence | None:
    """Snapshot what the event needs from ``record`` and its :func:`find_extras`; None when
    it cannot be one."""
    get = extras.get
    ref = _reference(extras["involved"], get("field_path"), notes)
    if ref is None:
        return None
    message = _message(record, settings, notes)
    if message is None:
        return None
    # the optional extras are rare: no call for one that is absent (this runs on every record)
    annotations, action, related = get("annotations"), get("action"), get("related")
    wanted_type = get("event_type")
    try:
        by_level = models.WARNING if record.levelno >= logging.WARNING else models.NORMAL
    except Exception:  # makeLogRecord leaves levelno None unless it is given
        level, by_level = getattr(record, "levelno", None), models.NORMAL
        if wanted_type is None:  # said only where the level decides the type
            notes.repair(
                "level",
                "The record's level %s is not a number: recorded as a %s event",
                shown(level),
                models.NORMAL,
            )
    try:
        return _occurrence(
            (
                ref,
                ref.namespace or settings.namespace,
                by_level if wanted_type is None else _event_type(wanted_type, by_level, notes),
                _reason(get("reason"), settings.default_reason, notes),
                message,
                None if annotations is None else _annotations(annotations, notes),
                "" if action is None else _action(action, notes),
                None if related is None else _related(related, notes),
                settings.source,
                now,
                seen,
            )
        )
    except RecursionError:  # an extra's str() recursing (a lazy proxy): its problem, as involved's
        notes.refuse("extras", "Unable to read the extras: the text of one of them recurses")
        return None
    except Exception as error:  # an extra whose str() or == raises: say which ones were read
        notes.refuse(
            "extras",
            "Unable to read the extras (reason, event_type, annotations, action, related): one "
            "of them raised %r when made text or compared",
            error,
        )
        return None


def is_own(name: object) -> bool:
    """True for the library's own logger and its children: never an event (``name`` may be
    None: loguru's record of code run by ``exec``)."""
    return name == _diagnostics.LOGGER_NAME or (
        isinstance(name, str) and name.startswith(_OWN_PREFIX)
    )


class Notes:
    """The problems found in one record: at most one refusal, any number of repairs."""

    # defaults on the class, no __init__: one per record, and nearly all note nothing
    refusal: tuple[str, str, tuple[object, ...]] | None = None
    repairs: tuple[tuple[str, str, tuple[object, ...]], ...] = ()

    def refuse(self, kind: str, msg: str, *args: object) -> None:
        self.refusal = (kind, msg + " (no event)", args)

    def repair(self, kind: str, msg: str, *args: object) -> None:
        self.repairs = (*self.repairs, (kind, msg, args))

    def report(self, sites: CallSites, record: logging.LogRecord) -> None:
        """Report every note, once per call site and kind: a refusal alone (no event, no repair)."""
        for kind, msg, args in [self.refusal] if self.refusal else self.repairs:
            sites.report(record, kind, msg, *args)


_said = threading.local()  # .last: the record this thread said last, and its kinds said


class CallSites:
    """Reports each kind of problem once per call site (``pathname:lineno``), and a record
    that reaches several handlers of ours once."""

    def __init__(self, limit: int = _MAX_CALL_SITES) -> None:
        self._lock = threading.RLock()  # the caller's path: a signal handler may re-enter
        self._seen: set[tuple[str, int, str]] = set()
        self._limit = limit
        # past the limit (generated code?), once a minute per kind
        self._overflow = _diagnostics.RateLimitedReporter()

    def report(self, record: logging.LogRecord, kind: str, msg: str, *args: object) -> None:
        # makeLogRecord takes anything: a line that is no number, a path that is no text
        pathname = getattr(record, "pathname", None)
        pathname = pathname if isinstance(pathname, str) and pathname else "?"
        lineno = getattr(record, "lineno", 0)
        lineno = lineno if isinstance(lineno, int) else 0
        key = (pathname, lineno, kind)
        with self._lock:
            if key in self._seen:
                return
            fresh = len(self._seen) < self._limit
            if fresh:
                self._seen.add(key)
        last = getattr(_said, "last", None)
        if last is not None and last[0]() is record:
            if kind in last[1]:
                return  # the record reached another handler of ours first, which said it
            last[1].add(kind)  # each of its problems: a handler says them one after another
        else:
            with contextlib.suppress(TypeError):  # a record of no weakref-able class: said again
                _said.last = (weakref.ref(record), {kind})
        text = msg + " (logged at %s:%d)"
        try:
            if fresh:
                _diagnostics.report(logging.WARNING, text, *args, pathname, lineno)
            else:
                self._overflow.report(kind, logging.WARNING, text, *args, pathname, lineno)
        except BaseException:  # unsaid (no room left on the stack, a Ctrl-C): the next says it
            self._seen.discard(key)
            raise

    def summarise(self) -> None:
        """Say what the limit past the call sites held back (at flush and close)."""
        self._overflow.summarise()


def _reference(involved: object, field_path: object, notes: Notes) -> models.ObjectReference | None:
    # its type, not isinstance, which asks a proxy's __class__ (that may recurse)
    path = cast(str, field_path) if issubclass(type(field_path), str) else ""
    if field_path is not None and not issubclass(type(field_path), str):
        notes.repair(
            "field_path", "Ignoring field_path of type %s: not a string", type(field_path).__name__
        )
    try:
        # in the try: isinstance asks a proxy's __class__, which may raise
        if isinstance(involved, models.Event):
            notes.refuse("event-about-event", ABOUT_AN_EVENT, involved.namespace, involved.name)
            return None
        ref = references.object_reference(involved, field_path=path)
    except RecursionError:  # a lazy proxy gone wrong: its problem, and the stack has unwound
        notes.refuse("involved", "Unable to refer to the involved object: its attributes recurse")
        return None
    except Exception as error:  # InvalidObjectError, or an object whose attributes raise
        notes.refuse("involved", "Unable to refer to the involved object: %s", error)
        return None
    # the common case: nothing to refuse, repair or complete
    if ref.namespace and ref.api_version and ref.kind in _PLAIN_KINDS:
        return ref
    ref, repairs = references.repaired(ref, models.DEFAULT_NAMESPACE)
    # after the repair: ``kind: event`` is an Event too, once its case is put right
    if _sanitise.is_event(ref.kind, ref.api_version):
        notes.refuse("event-about-event", ABOUT_AN_EVENT, ref.namespace, ref.name)
        return None
    for kind, msg, args in repairs:
        notes.repair(kind, msg, *args)
    return ref


def _meant(value: object) -> object:
    """A plain ``Enum`` member's text value (``BackOff``), what a caller means, not its str()."""
    if isinstance(value, enum.Enum) and isinstance(value.value, str):
        return value.value
    return value


def _event_type(wanted: object, by_level: str, notes: Notes) -> str:
    wanted = _meant(wanted)
    if isinstance(wanted, str) and len(wanted) <= _SHOWN_MAX:  # a longer one is no type
        for known in (models.NORMAL, models.WARNING):
            if wanted.strip().lower() == known.lower():
                return known
    notes.repair(
        "event-type",
        "Unsupported event_type %s (only Normal and Warning): recorded as %s, from the level",
        shown(wanted),
        by_level,
    )
    return by_level


def _reason(value: object, default: str, notes: Notes) -> str:
    if value is None or value == "":
        return default
    # one short ASCII word, checked in C (in other scripts, bytes count, not characters)
    limit = _sanitise.REASON_MAX_BYTES
    if type(value) is str and len(value) <= limit and value.isascii() and value.isalnum():
        return value
    value = _meant(value)
    text = str.__str__(value) if isinstance(value, str) else str(value)
    fixed = _sanitise.camel_case(text)
    if fixed == text and isinstance(value, str):
        return fixed
    fixed = fixed or default
    notes.repair(
        "reason",
        "The reason %.80s is not one CamelCase word of at most %d bytes: recorded as %r",
        shown(value),
        _sanitise.REASON_MAX_BYTES,
        fixed,
    )
    return fixed


def shown(value: object) -> str:
    """``repr(value)`` for a report of bad input, cut short; a repr that raises must not turn
    the report into a logging error (or the record into a refusal)."""
    if isinstance(value, str | bytes) and len(value) > _SHOWN_MAX:
        value = value[:_SHOWN_MAX]  # a 10 MB text is not made a 10 MB repr to show 200
    try:
        text = repr(value)
    except Exception:
        return f"<a {type(value).__name__} that cannot be shown>"
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


def _action(value: object, notes: Notes) -> str:
    value = _meant(value)
    if value == "":
        return ""
    text = str.__str__(value) if isinstance(value, str) else str(value)
    # cut first: what the limit keeps is all that needs a look, on the caller's thread
    head = text[: _sanitise.ACTION_MAX_BYTES + 1]
    fixed = _sanitise.cut_bytes(_sanitise.safe_text(head), _sanitise.ACTION_MAX_BYTES)
    if fixed != text or not isinstance(value, str):
        notes.repair(
            "action", "The action %.80s was not a short string: recorded as %r", shown(value), fixed
        )
    return fixed


def _related(value: object, notes: Notes) -> models.ObjectReference | None:
    try:
        return references.object_reference(value)
    except (Exception, RecursionError) as error:  # a bad secondary object costs the link only
        notes.repair("related", "Ignoring the related object: %s", error)
        return None


def _annotations(value: object, notes: Notes) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        notes.repair(
            "annotations", "Ignoring annotations: a %s is not a mapping", type(value).__name__
        )
        return None
    result: dict[str, str] = {}
    coerced: list[str] = []
    dropped: list[str] = []
    size = 0  # in characters, at most the bytes: past the limit, stop looking
    for key in list(value):
        name = key if isinstance(key, str) else str(key)
        # a refused key counts too (as long as a key can be): each of a million was checked
        size += min(len(name), _sanitise.ANNOTATION_KEY_MAX_LENGTH)
        if size <= _sanitise.ANNOTATIONS_MAX_BYTES and not _sanitise.is_annotation_key(name):
            dropped.append(str.__str__(name[:_SHOWN_MAX]))  # quoted in a report: a piece
            continue
        item = value[key]
        if not isinstance(key, str) or not isinstance(item, str):
            coerced.append(name)
        text = item if isinstance(item, str) else str(item)
        size += len(text)
        if size > _sanitise.ANNOTATIONS_MAX_BYTES:
            notes.repair("annotation-size", _ANNOTATIONS_TOO_BIG)
            return None
        result[name] = _sanitise.safe_text(text)
    if dropped:
        notes.repair("annotation-key", "Dropping annotations with invalid keys: %s", shown(dropped))
    if coerced:
        notes.repair("annotation-value", "Annotations %s made strings with str()", shown(coerced))
    if _sanitise.annotations_bytes(result) > _sanitise.ANNOTATIONS_MAX_BYTES:
        notes.repair("annotation-size", _ANNOTATIONS_TOO_BIG)
        return None
    return result


_ANNOTATIONS_TOO_BIG = "Dropping annotations: more than 256 KiB in all"


def _message(record: logging.LogRecord, settings: Settings, notes: Notes) -> str | None:
    try:
        text = _format(record, settings)
    except RecursionError:
        raise
    except Exception as error:  # a bad format string is the caller's bug, not a crash
        notes.refuse("message", "Unable to format the message: %r", error)
        return None
    limit = settings.max_message_bytes
    if len(text) <= limit and text.isascii() and "\x00" not in text:
        return text  # short ASCII without NUL: the common message, checked in C
    # a character is at most 4 bytes: only a message this long can be over the limit
    head = text[: limit + 1] if len(text) * 4 > limit else text
    if _sanitise.has_unsafe_text(head):
        head = _sanitise.safe_text(head)
        notes.repair(
            "message-text", "NUL or unpaired surrogate characters in the message became U+FFFD"
        )
    cut = _sanitise.cut_bytes(head, limit, _sanitise.TRUNCATION_MARK)
    if cut is not head:
        notes.repair(
            "message-size",
            "The message is longer than %d bytes: cut at a character boundary, ending in %r",
            limit,
            _sanitise.TRUNCATION_MARK,
        )
    return cut


def _format(record: logging.LogRecord, settings: Settings) -> str:
    # on a copy: a formatter sets attributes on what it formats
    msg = record.msg
    if (
        type(msg) is str
        and "\x1b" in msg
        and isinstance(record.__dict__.get(LOGURU_EXTRA), Mapping)
    ):
        # loguru's colorize=True: its whole output, traceback included, is in terminal colours
        plain = logging.LogRecord.__new__(type(record))
        plain.__dict__.update(record.__dict__)
        plain.msg = _COLOURS.sub("", msg)
        record = plain
    detail = settings.exception_detail
    # args None: perhaps a QueueHandler's record (no call for the others, on every record)
    queued = _tracebacks.queued(record) if record.args is None and detail != "traceback" else None
    event_dict = None if type(record.msg) is str else structlog_event_dict(record)
    exc_info = record.exc_info
    if event_dict is not None and (exc_info is None or exc_info[0] is None):
        # aexception() logs on an executor thread, where there is no exception to take
        exc_info = _structlog_exc_info(event_dict.get("exc_info")) or exc_info
    # a record that came over a socket (SocketHandler's) has its traceback as text alone
    told = record.exc_text if not exc_info and type(record.exc_text) is str else None
    has_extra = exc_info is not None or record.stack_info is not None or bool(queued or told)
    if (settings.formatter is None or settings.formatter is PLAIN) and not has_extra:
        return record.getMessage() if event_dict is None else _structlog_message(event_dict)
    copy = logging.LogRecord.__new__(type(record))
    copy.__dict__.update(record.__dict__)
    if copy.exc_info:  # made again: another handler's formatter (in colour?) left its own
        copy.exc_text = None
    if queued:
        copy.msg = copy.message = queued[0]
    if _is_loguru_exception(record):
        # loguru puts its whole traceback (with diagnose=True, local variables) in the
        # message: the event gets loguru's message alone, and the exception as any record's
        copy.msg = _tracebacks.without_loguru_traceback(str(record.msg), record.exc_info)
        copy.args = ()
    if event_dict is not None:
        # the formatter sees the message, not the dict; without its marks a structlog
        # ProcessorFormatter takes the copy for a plain record, as it should
        copy.msg = _structlog_message(event_dict)
        copy.args = ()
        copy.exc_info = exc_info
        copy.__dict__.pop(STRUCTLOG_MARK, None)
        copy.__dict__.pop("_name", None)
    summary = _tracebacks.exception_summary(exc_info) if detail == "summary" else ""
    if detail == "summary" and (queued or told):
        summary = queued[1] if queued else _tracebacks.told(f"\n{told}")
    if detail != "traceback":
        copy.exc_info = None
        copy.exc_text = None
        copy.stack_info = None
    text = (settings.formatter or PLAIN).format(copy)
    return f"{text}: {summary}" if summary else text


_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # a terminal's colour and style sequences (SGR)


def _is_loguru_exception(record: logging.LogRecord) -> bool:
    """A loguru record with an exception: ``exc_text`` ``"\\n"`` (never the stdlib's)."""
    attrs = record.__dict__
    return (
        attrs.get("exc_text") == "\n"
        and isinstance(attrs.get(LOGURU_EXTRA), Mapping)
        and isinstance(attrs.get("msg"), str)
        and isinstance(record.exc_info, tuple)
        # None: opt(exception=True) outside an except block, where loguru writes _NONE_LINE
        and (record.exc_info[1] is None or isinstance(record.exc_info[1], BaseException))
    )


def _structlog_exc_info(
    value: object,
) -> tuple[type[BaseException], BaseException, TracebackType | None] | None:
    """The exception an event dict's ``exc_info`` names, as structlog reads it (true: the
    one being handled, on the caller's thread)."""
    if isinstance(value, tuple):
        value = value[1] if len(value) == 3 else None
    elif value and not isinstance(value, BaseException):
        value = sys.exception()
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    return None


def _structlog_message(event_dict: dict[str, object]) -> str:
    text = event_dict.get("event")  # structlog's own rule
    if text is None or isinstance(text, str):
        return text or ""
    return str(text)
