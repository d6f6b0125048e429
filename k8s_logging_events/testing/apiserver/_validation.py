"""Validation rules of :class:`~k8s_logging_events.testing.LocalApiServer`.

Part of the local API server on the test side of the pipeline. These are the checks a real
API server runs before it stores an Event, transcribed from ``pkg/apis/core/validation/
events.go`` (``legacyValidateEvent``, ``ValidateEventCreate``, ``ValidateEventUpdate``) and
from apimachinery's object-metadata and name validation, with the same field paths and
messages. Events are passed in their canonical core/v1 form; ``api`` says which API the
request came through, because events.k8s.io/v1 adds strict rules on create and makes most
fields immutable on update.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from k8s_logging_events.testing.apiserver._errors import FieldError
from k8s_logging_events.testing.apiserver._gofmt import go_struct_value, go_time_text

CORE = "core"
"""Requests through ``/api/v1``."""
EVENTS = "events"
"""Requests through ``/apis/events.k8s.io/v1``."""

REPORTING_INSTANCE_LENGTH_LIMIT = 128
ACTION_LENGTH_LIMIT = 128
REASON_LENGTH_LIMIT = 128
NOTE_LENGTH_LIMIT = 1024
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT + r"\Z")
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT + r"\Z")
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME = re.compile(_QUALIFIED_NAME_FMT + r"\Z")
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT + r"\Z")

_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character"
)
_IMMUTABLE = "field is immutable"


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """Return apimachinery's ``RegexError`` text (with its odd ``',  or '`` joins)."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    text = message + " (e.g. "
    for index, example in enumerate(examples):
        if index:
            text += " or "
        text += f"'{example}', "
    return text + f"regex used for validation is '{fmt}')"


def _max_len(length: int) -> str:
    return f"must be no more than {length} characters"


def _blen(value: str) -> int:
    """Go's ``len``: the length in UTF-8 bytes."""
    return len(value.encode("utf-8"))


@functools.lru_cache(maxsize=4096)
def is_dns1123_subdomain(value: str) -> tuple[str, ...]:
    """Return why ``value`` is not a DNS-1123 subdomain (empty when it is one)."""
    errors: list[str] = []
    if _blen(value) > 253:
        errors.append(_max_len(253))
    if not _DNS1123_SUBDOMAIN.match(value):
        errors.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return tuple(errors)


@functools.lru_cache(maxsize=4096)
def is_dns1123_label(value: str) -> tuple[str, ...]:
    """Return why ``value`` is not a DNS-1123 label (empty when it is one)."""
    errors: list[str] = []
    if _blen(value) > 63:
        errors.append(_max_len(63))
    if not _DNS1123_LABEL.match(value):
        if _DNS1123_SUBDOMAIN.match(value):
            errors.append("must not contain dots")
        else:
            errors.append(
                _regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc")
            )
    return tuple(errors)


@functools.lru_cache(maxsize=4096)
def is_qualified_name(value: str) -> tuple[str, ...]:
    """Return why ``value`` is not a qualified name (``[prefix/]name``)."""
    errors: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend("prefix part " + msg for msg in is_dns1123_subdomain(prefix))
    else:
        return (
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        )
    if not name:
        errors.append("name part must be non-empty")
    elif _blen(name) > 63:
        errors.append("name part " + _max_len(63))
    if not _QUALIFIED_NAME.match(name):
        errors.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return tuple(errors)


@functools.lru_cache(maxsize=4096)
def _is_label_value(value: str) -> tuple[str, ...]:
    errors: list[str] = []
    if _blen(value) > 63:
        errors.append(_max_len(63))
    if not _LABEL_VALUE.match(value):
        errors.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return tuple(errors)


@functools.lru_cache(maxsize=4096)
def _path_segment(name: str, prefix: bool) -> tuple[str, ...]:
    """``path.ValidatePathSegmentName``: not ``.``/``..``, no ``/`` or ``%``."""
    if not prefix and name in (".", ".."):
        return (f"may not be '{name}'",)
    return tuple(f"may not contain '{bad}'" for bad in ("/", "%") if bad in name)


def _dns_subdomain_name(name: str, prefix: bool) -> tuple[str, ...]:
    """``NameIsDNSSubdomain``: a generateName prefix may end in a dash."""
    if prefix and len(name) > 1 and name.endswith("-"):
        name = name[:-1] + "a"
    return is_dns1123_subdomain(name)


def _dns_label_name(name: str, prefix: bool) -> tuple[str, ...]:
    if prefix and len(name) > 1 and name.endswith("-"):
        name = name[:-1] + "a"
    return is_dns1123_label(name)


_NAME_RULES: dict[str, Callable[[str, bool], tuple[str, ...]]] = {
    "path": _path_segment,
    "subdomain": _dns_subdomain_name,
    "label": _dns_label_name,
}


def _labels(labels: dict[str, str], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for key in sorted(labels):
        errors.extend(FieldError.invalid(path, key, msg) for msg in is_qualified_name(key))
        errors.extend(
            FieldError.invalid(path, labels[key], msg) for msg in _is_label_value(labels[key])
        )
    return errors


def _annotations(annotations: dict[str, str], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    total = 0
    for key in sorted(annotations):
        errors.extend(FieldError.invalid(path, key, msg) for msg in is_qualified_name(key.lower()))
        total += _blen(key) + _blen(annotations[key])
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errors.append(
            FieldError(
                "FieldValueTooLong",
                path,
                detail=f"must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes",
            )
        )
    return errors


def _object_meta(
    meta: dict[str, Any], name_kind: str, *, namespaced: bool = True
) -> list[FieldError]:
    """``ValidateObjectMetaAccessor`` with the name rule ``name_kind``."""
    name_fn = _NAME_RULES[name_kind]
    errors: list[FieldError] = []
    generate_name = meta.get("generateName", "")
    if generate_name:
        errors.extend(
            FieldError.invalid("metadata.generateName", generate_name, msg)
            for msg in name_fn(generate_name, True)
        )
    name = meta.get("name", "")
    if not name:
        errors.append(FieldError.required("metadata.name", "name or generateName is required"))
    else:
        errors.extend(
            FieldError.invalid("metadata.name", name, msg) for msg in name_fn(name, False)
        )
    namespace = meta.get("namespace", "")
    if namespaced:
        if not namespace:
            errors.append(FieldError.required("metadata.namespace"))
        else:
            errors.extend(
                FieldError.invalid("metadata.namespace", namespace, msg)
                for msg in _dns_label_name(namespace, False)
            )
    elif namespace:
        errors.append(
            FieldError(
                "FieldValueForbidden", "metadata.namespace", detail="not allowed on this type"
            )
        )
    generation = meta.get("generation", 0)
    if generation < 0:
        errors.append(
            FieldError.invalid(
                "metadata.generation", generation, "must be greater than or equal to 0"
            )
        )
    errors.extend(_labels(meta.get("labels") or {}, "metadata.labels"))
    errors.extend(_annotations(meta.get("annotations") or {}, "metadata.annotations"))
    return errors


def validate_meta_common(meta: dict[str, Any], *, namespaced: bool = True) -> list[FieldError]:
    """The generic metadata check every create and update runs after the strategy's own."""
    return _object_meta(meta, "path", namespaced=namespaced)


def validate_meta_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """``ValidateObjectMetaAccessorUpdate``: identity fields are immutable."""
    errors = [
        FieldError.invalid(f"metadata.{key}", new.get(key, ""), _IMMUTABLE)
        for key in ("name", "namespace", "uid")
        if new.get(key, "") != old.get(key, "")
    ]
    errors.extend(_labels(new.get("labels") or {}, "metadata.labels"))
    errors.extend(_annotations(new.get("annotations") or {}, "metadata.annotations"))
    return errors


def _legacy(event: dict[str, Any], api: str) -> list[FieldError]:
    """``legacyValidateEvent``: the rules every event passes, whatever API it came through.

    The controller's field is named as the request's API names it: ``reportingComponent``
    through core/v1, ``reportingController`` otherwise (``reportingControllerFieldName``).
    """
    controller_field = "reportingComponent" if api == CORE else "reportingController"
    errors: list[FieldError] = []
    namespace = event["metadata"].get("namespace", "")
    involved_namespace = event["involvedObject"].get("namespace", "")
    mismatch = FieldError.invalid(
        "involvedObject.namespace", involved_namespace, "does not match event.namespace"
    )
    if event["eventTime"] is None:
        if not involved_namespace:
            if namespace not in ("", "default"):
                errors.append(mismatch)
        elif namespace != involved_namespace:
            errors.append(mismatch)
    else:
        if not involved_namespace and namespace not in ("default", "kube-system"):
            errors.append(mismatch)
        controller = event["reportingComponent"]
        if not controller:
            errors.append(FieldError.required(controller_field))
        errors.extend(
            FieldError.invalid(controller_field, controller, msg)
            for msg in is_qualified_name(controller)
        )
        instance = event["reportingInstance"]
        if not instance:
            errors.append(FieldError.required("reportingInstance"))
        if _blen(instance) > REPORTING_INSTANCE_LENGTH_LIMIT:
            errors.append(
                FieldError.invalid(
                    "reportingInstance",
                    "",
                    f"can have at most {REPORTING_INSTANCE_LENGTH_LIMIT} characters",
                )
            )
        action = event.get("action", "")
        if not action:
            errors.append(FieldError.required("action"))
        if _blen(action) > ACTION_LENGTH_LIMIT:
            errors.append(
                FieldError.invalid(
                    "action", "", f"can have at most {ACTION_LENGTH_LIMIT} characters"
                )
            )
        reason = event.get("reason", "")
        if not reason:
            errors.append(FieldError.required("reason"))
        if _blen(reason) > REASON_LENGTH_LIMIT:
            errors.append(
                FieldError.invalid(
                    "reason", "", f"can have at most {REASON_LENGTH_LIMIT} characters"
                )
            )
        if _blen(event.get("message", "")) > NOTE_LENGTH_LIMIT:
            errors.append(
                FieldError.invalid(
                    "message", "", f"can have at most {NOTE_LENGTH_LIMIT} characters"
                )
            )
    errors.extend(
        FieldError.invalid("namespace", namespace, msg) for msg in is_dns1123_subdomain(namespace)
    )
    return errors


def _series(event: dict[str, Any]) -> list[FieldError]:
    series = event.get("series")
    if series is None:
        return []
    errors = []
    if series.get("count", 0) < 2:
        errors.append(FieldError.invalid("series.count", "", "should be at least 2"))
    if series.get("lastObservedTime") is None:
        errors.append(FieldError.required("series.lastObservedTime"))
    return errors


def validate_event_create(event: dict[str, Any], api: str) -> list[FieldError]:
    """``ValidateEventCreate`` for a request through ``api`` (:data:`CORE` or :data:`EVENTS`)."""
    errors = _legacy(event, api)
    if api == CORE:
        return errors
    errors.extend(_object_meta(event["metadata"], "subdomain"))
    errors.extend(_series(event))
    if event["eventTime"] is None:
        errors.append(FieldError.required("eventTime"))
    event_type = event.get("type", "")
    if event_type not in ("Normal", "Warning"):
        errors.append(FieldError.invalid("type", "", f"has invalid value: {event_type}"))
    if event["firstTimestamp"] is not None:
        errors.append(FieldError.invalid("firstTimestamp", "", "needs to be unset"))
    if event["lastTimestamp"] is not None:
        errors.append(FieldError.invalid("lastTimestamp", "", "needs to be unset"))
    if event.get("count", 0) != 0:
        errors.append(FieldError.invalid("count", "", "needs to be unset"))
    if event["source"]:
        errors.append(FieldError.invalid("source", "", "needs to be unset"))
    return errors


def _immutable(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """The ``ValidateImmutableField`` calls of ``ValidateEventUpdate``, in their order."""
    checks: list[tuple[str, Any, Any]] = [
        (
            "involvedObject",
            go_struct_value("ObjectReference", new["involvedObject"]),
            go_struct_value("ObjectReference", old["involvedObject"]),
        ),
        ("reason", new.get("reason", ""), old.get("reason", "")),
        ("message", new.get("message", ""), old.get("message", "")),
        (
            "source",
            go_struct_value("EventSource", new["source"]),
            go_struct_value("EventSource", old["source"]),
        ),
        (
            "firstTimestamp",
            go_time_text(new["firstTimestamp"]),
            go_time_text(old["firstTimestamp"]),
        ),
        ("lastTimestamp", go_time_text(new["lastTimestamp"]), go_time_text(old["lastTimestamp"])),
        ("count", new.get("count", 0), old.get("count", 0)),
        ("reason", new.get("reason", ""), old.get("reason", "")),
        ("type", new.get("type", ""), old.get("type", "")),
        ("eventTime", go_time_text(new["eventTime"]), go_time_text(old["eventTime"])),
        ("action", new.get("action", ""), old.get("action", "")),
        (
            "related",
            go_struct_value("ObjectReference", new.get("related")),
            go_struct_value("ObjectReference", old.get("related")),
        ),
        ("reportingController", new["reportingComponent"], old["reportingComponent"]),
        ("reportingInstance", new["reportingInstance"], old["reportingInstance"]),
    ]
    return [
        FieldError.invalid(path, value, _IMMUTABLE)
        for path, value, before in checks
        if value != before
    ]


def validate_event_update(new: dict[str, Any], old: dict[str, Any], api: str) -> list[FieldError]:
    """``ValidateEventUpdate`` for a request through ``api``."""
    errors = _legacy(new, api)
    if api == CORE:
        return errors
    errors.extend(validate_meta_update(new["metadata"], old["metadata"]))
    if new.get("series") != old.get("series"):
        errors.extend(_series(new))
    errors.extend(_immutable(new, old))
    return errors


def validate_namespace_create(namespace: dict[str, Any]) -> list[FieldError]:
    """``ValidateNamespace``: the name is a DNS-1123 label; a namespace has no namespace."""
    return _object_meta(namespace["metadata"], "label", namespaced=False)


def validate_pod_meta(meta: dict[str, Any]) -> list[FieldError]:
    """``ValidateObjectMeta`` with ``ValidatePodName``: the name is a DNS subdomain."""
    return _object_meta(meta, "subdomain")
