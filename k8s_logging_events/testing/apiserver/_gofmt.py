"""Values written as Go writes them, for the local API server: one place for all of it.

Part of the local API server on the test side of the pipeline. A real kube-apiserver is a Go
program, and what the sink under test reads from it -- messages of ``Status`` bodies and
field errors, JSON bodies -- carries Go's formatting: ``%q`` quoting (:func:`go_quote`),
``%#v`` structs and ``%v`` values (:func:`go_value`, :class:`GoStruct`, :class:`GoText`),
``time.Time.String()`` (:func:`go_time_text`), ``encoding/json``'s compact output
(:func:`go_json`), its syntax errors (:func:`go_json_error`), apimachinery's
``summarizeData`` (:func:`summarize_data`), and its replacement of invalid UTF-16 in decoded
strings (:func:`go_strings`). Durations in Tables are
:func:`k8s_logging_events.describe.human_duration` and times are
:func:`k8s_logging_events.models.format_time` / ``format_micro_time``: pure formatting that
the library and the server share (rules are never shared; see ``_validation``).
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from k8s_logging_events import models

ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
"""Go's zero ``time.Time``, which the server writes as ``null``."""


def go_json(value: Any) -> bytes:
    """Encode ``value`` as Go's ``encoding/json`` does for the API: compact, UTF-8 as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def go_quote(text: str) -> str:
    """Quote ``text`` the way Go's ``%q`` does (printable Unicode kept, controls escaped)."""
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


class GoStruct:
    """A value printed with Go's ``%#v`` (``core.ObjectReference{Kind:"Pod", ...}``)."""

    __slots__ = ("fields", "type_name")

    def __init__(self, type_name: str, fields: Sequence[tuple[str, Any]]) -> None:
        self.type_name = type_name
        self.fields = tuple(fields)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, GoStruct)
            and other.type_name == self.type_name
            and other.fields == self.fields
        )

    def __hash__(self) -> int:
        return hash((self.type_name, self.fields))

    def go_syntax(self) -> str:
        """Return the ``%#v`` text."""
        inner = ", ".join(f"{name}:{go_value(value, syntax=True)}" for name, value in self.fields)
        return f"{self.type_name}{{{inner}}}"


class GoText:
    """A value printed through its Go ``String()`` method (times)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoText) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def go_value(value: Any, *, syntax: bool = False) -> str:
    """Print ``value`` as ``field.Error`` does: strings quoted, numbers bare, structs ``%#v``."""
    if value is None:
        return "null" if not syntax else "(*core.ObjectReference)(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, GoStruct):
        return value.go_syntax()
    if isinstance(value, GoText):
        return value.text
    return go_quote(str(value))


def go_time_text(value: str | None) -> GoText:
    """Return what Go's ``time.Time.String()`` prints for a stored time (UTC location)."""
    moment = models.parse_time(value) or ZERO_TIME
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return GoText(f"{text} +0000 UTC")


def go_struct_value(kind: str, value: dict[str, Any] | None) -> GoStruct | None:
    """Return the ``%#v`` printable form of a stored ObjectReference or EventSource."""
    if value is None:
        return None
    names: tuple[tuple[str, str], ...]
    if kind == "ObjectReference":
        names = (
            ("Kind", "kind"),
            ("Namespace", "namespace"),
            ("Name", "name"),
            ("UID", "uid"),
            ("APIVersion", "apiVersion"),
            ("ResourceVersion", "resourceVersion"),
            ("FieldPath", "fieldPath"),
        )
    else:
        names = (("Component", "component"), ("Host", "host"))
    return GoStruct(f"core.{kind}", [(go, value.get(key, "")) for go, key in names])


def go_json_error(text: bytes) -> str:
    """Describe why ``text`` is not JSON the way Go's decoder would."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(exc.doc) or not exc.doc[exc.pos :].strip():
            return "unexpected end of JSON input"
        char = exc.doc[exc.pos]
        where = (
            "looking for beginning of value"
            if "Expecting value" in exc.msg
            else "after top-level value"
        )
        if "delimiter" in exc.msg or "property name" in exc.msg:
            where = (
                "after object key"
                if "':'" in exc.msg
                else "looking for beginning of object key string"
            )
        return f"invalid character {char!r} {where}"
    except ValueError:
        pass
    return "invalid JSON"


def summarize_data(data: bytes) -> str:
    """``summarizeData``: the first 30 bytes, as text when it looks like JSON, else hex."""
    if not data:
        return "<empty>"
    head = data[:30]
    suffix = " ..." if len(data) > 30 else ""
    if data[:1] == b"{":
        return head.decode("utf-8", "replace") + suffix
    return binascii.hexlify(head).decode() + suffix


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def go_strings(value: Any) -> Any:
    """Go's decoder replaces invalid UTF-16 and UTF-8 (a lone surrogate) with U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [go_strings(item) for item in value]
    if isinstance(value, dict):
        return {go_strings(key): go_strings(item) for key, item in value.items()}
    return value
