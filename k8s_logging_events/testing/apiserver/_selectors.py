"""Field and label selectors of :class:`~k8s_logging_events.testing.LocalApiServer` lists.

Part of the local API server on the test side of the pipeline. ``fieldSelector`` follows
``k8s.io/apimachinery/pkg/fields`` (terms joined by ``,``; ``=``, ``==`` and ``!=``;
backslash escapes) over the fields an Event offers for selection
(``ToSelectableFields`` in ``pkg/registry/core/event/strategy.go``), with the
events.k8s.io/v1 names mapped onto them as ``pkg/apis/events/v1/conversion.go`` does;
``labelSelector`` follows ``k8s.io/apimachinery/pkg/labels`` (equality, inequality, ``in``,
``notin``, exists, ``!`` not-exists, ``>`` and ``<``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(Exception):
    """A selector did not parse, or names a field that cannot be selected on."""


CORE_FIELD_LABELS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
        "metadata.namespace",
        "metadata.name",
    }
)
"""The field labels core/v1 accepts for Events (``AddFieldLabelConversionsForEvent``)."""

EVENTS_FIELD_LABELS = {
    "reason": "reason",
    "regarding.kind": "involvedObject.kind",
    "regarding.namespace": "involvedObject.namespace",
    "regarding.name": "involvedObject.name",
    "regarding.uid": "involvedObject.uid",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath",
    "reportingController": "reportingComponent",
    "source": "source",
    "type": "type",
    "metadata.namespace": "metadata.namespace",
    "metadata.name": "metadata.name",
}
"""events.k8s.io/v1 field labels and the core names they stand for."""

NAMESPACE_FIELD_LABELS = frozenset({"metadata.name", "status.phase"})


def event_fields(event: dict[str, Any]) -> dict[str, str]:
    """Return the selectable field set of a canonical core/v1 event."""
    involved = event["involvedObject"]
    meta = event["metadata"]
    source = event["source"].get("component", "") or event["reportingComponent"]
    return {
        "involvedObject.kind": involved.get("kind", ""),
        "involvedObject.namespace": involved.get("namespace", ""),
        "involvedObject.name": involved.get("name", ""),
        "involvedObject.uid": involved.get("uid", ""),
        "involvedObject.apiVersion": involved.get("apiVersion", ""),
        "involvedObject.resourceVersion": involved.get("resourceVersion", ""),
        "involvedObject.fieldPath": involved.get("fieldPath", ""),
        "reason": event.get("reason", ""),
        "reportingComponent": event["reportingComponent"],
        "source": source,
        "type": event.get("type", ""),
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
    }


def namespace_fields(namespace: dict[str, Any]) -> dict[str, str]:
    """Return the selectable field set of a stored namespace."""
    return {
        "metadata.name": namespace["metadata"].get("name", ""),
        "status.phase": namespace["status"].get("phase", ""),
    }


def namespace_field_label(label: str) -> str:
    """Check a namespace field selector's label (the message is the real server's)."""
    if label in NAMESPACE_FIELD_LABELS:
        return label
    raise SelectorError(
        f'"{label}" is not a known field selector: only "metadata.name", "status.phase"'
    )


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A parsed ``fieldSelector``: ``(field, operator, value)`` terms that must all hold."""

    terms: tuple[tuple[str, str, str], ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Return True when every term holds for ``fields``."""
        for name, op, value in self.terms:
            equal = fields.get(name, "") == value
            if equal != (op == "="):
                return False
        return True

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.terms


def _split_terms(text: str, *, escapes: bool = False, parentheses: bool = False) -> list[str]:
    """Split ``text`` at each comma that is not escaped by a backslash (with ``escapes``) nor
    inside parentheses (with ``parentheses``); the escapes stay in the parts."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    depth = 0
    for char in text:
        if escaped:
            escaped = False
        elif escapes and char == "\\":
            escaped = True
        elif parentheses and char in "()":
            depth += 1 if char == "(" else -1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise SelectorError(
                f"invalid field selector: unescaped character: {char!r} in value {value!r}"
            )
        else:
            out.append(char)
    if escaped:
        raise SelectorError("invalid field selector: trailing backslash")
    return "".join(out)


def parse_field_selector(
    selector: str, convert: Callable[[str], str] | None = None
) -> FieldSelector:
    """Parse ``selector``; ``convert`` maps each field label (and raises for unknown ones).

    Raises:
        SelectorError: the text does not parse, or ``convert`` refused a label; the message
            is the one the API server puts in its ``BadRequest``.
    """
    terms: list[tuple[str, str, str]] = []
    for part in sorted(_split_terms(selector, escapes=True)):
        if not part:
            continue
        for index in range(len(part)):
            rest = part[index:]
            op = next((op for op in ("!=", "==", "=") if rest.startswith(op)), None)
            if op is not None:
                name, value = part[:index], part[index + len(op) :]
                break
        else:
            raise SelectorError(f"invalid selector: '{selector}'; can't understand '{part}'")
        terms.append(("!=" if op == "!=" else "=", name, _unescape(value)))
    converted = []
    for op, name, value in terms:
        mapped = convert(name) if convert is not None else name
        converted.append((mapped, op, value))
    return FieldSelector(tuple(converted))


@dataclass(frozen=True, slots=True)
class _Requirement:
    key: str
    op: str
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "in":
            return present and labels[self.key] in self.values
        if self.op == "notin":
            return not present or labels[self.key] not in self.values
        if not present:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.op == "gt" else have < want


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed ``labelSelector``: requirements that must all hold."""

    requirements: tuple[_Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Return True when every requirement holds for ``labels``."""
        present = labels or {}
        return all(requirement.matches(present) for requirement in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements


_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_TERM = re.compile(rf"\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*\Z")
_EQ_TERM = re.compile(rf"\s*({_KEY})\s*(==|!=|=)\s*({_VALUE})\s*\Z")
_CMP_TERM = re.compile(rf"\s*({_KEY})\s*(>|<)\s*(-?[0-9]+)\s*\Z")
_EXISTS_TERM = re.compile(rf"\s*(!?)\s*({_KEY})\s*\Z")


def parse_label_selector(selector: str) -> LabelSelector:
    """Parse a ``labelSelector``.

    Raises:
        SelectorError: the text does not parse.
    """
    if not selector.strip():
        return LabelSelector()
    requirements = []
    for part in _split_terms(selector, parentheses=True):
        if match := _SET_TERM.match(part):
            values = tuple(value.strip() for value in match.group(3).split(","))
            if any(not re.fullmatch(_VALUE, value) for value in values):
                raise SelectorError(f"unable to parse requirement: invalid label value in {part!r}")
            requirements.append(_Requirement(match.group(1), match.group(2), values))
        elif match := _EQ_TERM.match(part):
            op = "notin" if match.group(2) == "!=" else "in"
            requirements.append(_Requirement(match.group(1), op, (match.group(3),)))
        elif match := _CMP_TERM.match(part):
            op = "gt" if match.group(2) == ">" else "lt"
            requirements.append(_Requirement(match.group(1), op, (match.group(3),)))
        elif match := _EXISTS_TERM.match(part):
            op = "!" if match.group(1) else "exists"
            requirements.append(_Requirement(match.group(2), op, ()))
        else:
            raise SelectorError(
                f"unable to parse requirement: found {part.strip()!r}, "
                "expected: in, notin, =, ==, !=, gt, lt"
            )
    return LabelSelector(tuple(requirements))
