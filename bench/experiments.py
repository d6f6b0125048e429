"""EXPERIMENT, not the package: the proposed application-thread changes, applied to one
handler instance so that a benchmark can measure them side by side with the real handler.

Nothing here is imported by the package or its tests; the package is unchanged. Each
proposal is written up in ``docs/performance.md`` with the file and function it would
change. What :class:`ExperimentalHandler` does differently from ``KubernetesEventHandler``:

P1  ``references._from_model``: read the camelCase spelling of a metadata field only when
    the object has no snake_case attribute at all, not whenever the snake_case value is
    empty. For a ``kubernetes`` client model (pydantic in client 37) an empty field such as
    ``resource_version`` otherwise costs a failed attribute lookup through pydantic's
    ``__getattr__`` (an ``AttributeError`` raised and caught) on every record.
P2  ``handler.KubernetesEventHandler._emit`` / ``recorder.EventRecorder._build``: build the
    ``models.Event`` (name, unique nanoseconds under a lock, DNS check, dataclass with a
    ``MappingProxyType``) on the broadcaster's thread instead of the caller's. The caller
    snapshots what can change (the reference, type, reason, message, annotations, the time)
    into one small slotted object and queues that.
P4  ``references.object_reference``: decide once per class which branch an ``involved``
    object takes (reference, manifest, client reference, model), instead of an ABC
    ``isinstance(obj, Mapping)`` check and a ``hasattr`` on every record.
P3  ``handler._Notes.report``: skip it (and its list building) when a record needed no
    repair and no refusal, which is nearly always.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from k8s_logging_events import broadcaster, correlator, handler, models, recorder, references

__all__ = ["ExperimentalHandler", "fast_object_reference"]

_MISSING = object()
_IS_MODEL: dict[type, bool] = {}


def _attr(obj: object, snake: str, camel: str, original: object) -> str:
    value = getattr(obj, snake, _MISSING)
    if value is _MISSING and camel != snake:
        value = getattr(obj, camel, None)
    if value is None or value is _MISSING:
        return ""
    if not isinstance(value, str):
        raise references.InvalidObjectError(
            f"cannot refer to {type(original).__name__}: {snake} is a {type(value).__name__}, "
            "not a string"
        )
    return value


def fast_object_reference(obj: object, *, field_path: str = "") -> models.ObjectReference:
    """P1: ``references.object_reference`` with the camelCase fallback only when missing."""
    cls = type(obj)
    is_model = _IS_MODEL.get(cls)
    if is_model is None:
        # P4: which branch a class takes is decided once per class, not per record
        is_model = _IS_MODEL[cls] = not (
            isinstance(obj, models.ObjectReference | Mapping)
            or references._is_client_object_reference(obj)
            or not hasattr(obj, "metadata")
        )
    if not is_model:
        return references.object_reference(obj, field_path=field_path)
    metadata: Any = obj.metadata  # type: ignore[attr-defined]
    if metadata is None or isinstance(metadata, Mapping):
        return references.object_reference(obj, field_path=field_path)
    kind = _attr(obj, "kind", "kind", obj)
    api_version = _attr(obj, "api_version", "apiVersion", obj)
    if not kind or not api_version:
        class_kind, class_api_version = references.type_meta_for_model(type(obj))
        kind = kind or class_kind
        api_version = api_version or class_api_version
    ref = models.ObjectReference(
        kind=kind,
        api_version=api_version,
        name=_attr(metadata, "name", "name", obj),
        namespace=_attr(metadata, "namespace", "namespace", obj),
        uid=_attr(metadata, "uid", "uid", obj),
        resource_version=_attr(metadata, "resource_version", "resourceVersion", obj),
        field_path=field_path,
    )
    return references._checked(ref, obj)


def _reference(involved: object, field_path: object, notes: Any) -> models.ObjectReference | None:
    # handler._reference with P1's lookup
    if isinstance(involved, models.Event):
        notes.refuse("event-about-event", "Refusing to record an event about an Event")
        return None
    path = field_path if isinstance(field_path, str) else ""
    try:
        ref = fast_object_reference(involved, field_path=path)
    except RecursionError:
        raise
    except Exception as error:
        notes.refuse("involved", "Unable to refer to the involved object: %s", error)
        return None
    if ref.kind == "Event" and ref.api_version in handler._EVENT_API_VERSIONS:
        notes.refuse("event-about-event", "Refusing to record an event about an Event")
        return None
    return ref


class _Deferred:
    """P2: what the caller's thread snapshots; the broadcaster's thread builds the Event."""

    __slots__ = (
        "action",
        "annotations",
        "message",
        "now",
        "reason",
        "recorder",
        "ref",
        "related",
        "type",
    )

    def __init__(
        self,
        recorder: recorder.EventRecorder,
        ref: models.ObjectReference,
        type: str,
        reason: str,
        message: str,
        annotations: dict[str, str] | None,
        action: str,
        related: models.ObjectReference | None,
        now: datetime,
    ) -> None:
        self.recorder = recorder
        self.ref = ref
        self.type = type
        self.reason = reason
        self.message = message
        self.annotations = annotations
        self.action = action
        self.related = related
        self.now = now

    def build(self) -> models.Event:
        """recorder.EventRecorder._build's construction, on the broadcaster's thread."""
        ref, now, source = self.ref, self.now, self.recorder.source
        return models.Event(
            name=correlator.generate_event_name(ref.name, correlator.unique_unix_nanos(now)),
            namespace=ref.namespace or recorder.DEFAULT_NAMESPACE,
            involved_object=ref,
            reason=self.reason,
            message=self.message,
            source=source,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            type=self.type,
            action=self.action,
            related=self.related,
            reporting_controller=source.component,
            reporting_instance=source.host,
            annotations=dict(self.annotations) if self.annotations else {},
        )


def _build_on_loop(active: recorder.EventBroadcaster) -> None:
    """Make the broadcaster's distributing thread turn deferred snapshots into Events."""
    inner = active._broadcaster
    distribute = inner._distribute

    def build_then_distribute(events: list[broadcaster.WatchEvent]) -> None:
        distribute(
            [
                broadcaster.WatchEvent(item.type, item.object.build())
                if isinstance(item.object, _Deferred)
                else item
                for item in events
            ]
        )

    inner._distribute = build_then_distribute  # type: ignore[method-assign]


class ExperimentalHandler(handler.KubernetesEventHandler):
    """KubernetesEventHandler with P1 to P4 applied (an experiment for the benchmarks)."""

    def _new_broadcaster(self) -> recorder.EventBroadcaster:
        active = super()._new_broadcaster()
        _build_on_loop(active)
        return active

    def _emit(self, record: logging.LogRecord) -> None:
        involved = getattr(record, "involved", None)
        if involved is None or handler._is_own(record.name):
            return
        if self._closed:
            self._counters.add("after_close")
            return
        notes = handler._Notes()
        ref = _reference(involved, getattr(record, "field_path", None), notes)
        message = None if ref is None else self._message(record, notes)
        if ref is None or message is None:
            notes.report(self._sites, record)
            self._counters.add("refused")
            return
        event_type = handler._event_type(record, notes)
        reason = handler._reason(
            getattr(record, "reason", None), self._config.default_reason, notes
        )
        annotations = handler._annotations(getattr(record, "annotations", None), notes)
        action = handler._action(getattr(record, "action", None), notes)
        related = handler._related(getattr(record, "related", None), notes)
        if notes.repairs or notes.refusal:  # P3
            notes.report(self._sites, record)
            self._counters.add("repaired")
        active = self._recorder or self._start()
        owner = self._broadcaster
        if active is None or owner is None:
            self._counters.add("after_close")
            return
        snapshot = _Deferred(
            active,
            ref,
            event_type,
            reason,
            message,
            annotations,
            action,
            related,
            active._clock.now(),
        )
        owner._counters.add("accepted")
        try:
            queued = owner._broadcaster.action_or_drop(broadcaster.ADDED, snapshot)
        except broadcaster.BroadcasterStopped:
            queued = False
        if not queued:
            owner._counters.add("dropped")
