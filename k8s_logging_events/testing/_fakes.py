"""In-memory doubles for the recorder and the sink.

These stand in for the two ends of the pipeline in unit tests: :class:`FakeRecorder` for
``EventRecorder`` (what the handler calls), :class:`FakeEventSink` for the sink (what the
writer calls), without threads of their own or HTTP. A patch merges as the local API
server merges one (the same function: for an Event's fields a strategic merge patch
behaves as a JSON merge patch).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from k8s_logging_events import _diagnostics, models, recorder, sink
from k8s_logging_events.recorder import Notes
from k8s_logging_events.testing.apiserver._patch import apply_merge_patch


class FakeRecorder(recorder.EventRecorder):
    """An :class:`~k8s_logging_events.recorder.EventRecorder` that keeps one string per call
    instead of recording anything (no broadcaster behind it, and its ``source`` is empty).

    Each call appends ``"<type> <reason> <message>"`` to :attr:`events`, as client-go's
    ``FakeRecorder`` does: with ``include_object``, `` involvedObject{kind=Pod,apiVersion=v1}``
    follows (from the object's own kind and apiVersion, empty when it has none), and
    annotations follow as `` map[a:1 b:2]`` with sorted keys. ``eventf`` and
    ``annotated_eventf`` format their message as an ``EventRecorder`` does: a format
    its arguments do not fit keeps no string and is reported on the ``k8s_logging_events``
    logger, as the recorder makes no event of it (a call never raises). Nothing else is
    validated.

    Args:
        include_object: add the involved object's kind and apiVersion to each string.
    """

    def __init__(self, *, include_object: bool = False) -> None:  # nothing to broadcast to
        self._source = models.EventSource()
        self.include_object = include_object
        self.events: list[str] = []
        """One string per recorded call, in order."""
        self._lock = threading.Lock()

    def _refuse_format(self, msg: str, *args: object) -> None:  # no broadcaster to count it
        _diagnostics.report(logging.ERROR, msg, *args)

    def _record_call(self, obj: object, notes: Notes, type: str, reason: str, message: str) -> None:
        self._keep(obj, f"{type} {reason} {message}", notes)

    def record(self, obj: object, type: str, reason: str, message: str, **fields: object) -> bool:
        """Keep the call like :meth:`event`, with its ``annotations`` (the other fields are
        not kept); always returns True."""
        self._keep(obj, f"{type} {reason} {message}", fields.get("annotations"))
        return True

    def _keep(self, obj: object, text: str, annotations: object) -> None:
        if self.include_object:
            kind, api_version = _type_meta(obj)
            text += f" involvedObject{{kind={kind},apiVersion={api_version}}}"
        # a fake validates nothing and never raises: what is no mapping is no annotations
        if isinstance(annotations, Mapping) and annotations:
            pairs = " ".join(f"{key}:{annotations[key]}" for key in sorted(annotations, key=str))
            text += f" map[{pairs}]"
        with self._lock:
            self.events.append(text)


def _type_meta(obj: object) -> tuple[str, str]:
    if isinstance(obj, models.ObjectReference):
        return obj.kind, obj.api_version
    if isinstance(obj, Mapping):
        return str(obj.get("kind") or ""), str(obj.get("apiVersion") or "")
    kind = getattr(obj, "kind", None) or ""
    api_version = getattr(obj, "api_version", None) or getattr(obj, "apiVersion", None) or ""
    return str(kind), str(api_version)


@dataclass(frozen=True, slots=True)
class SinkCall:
    """One call made on a :class:`FakeEventSink`."""

    method: str
    """``create``, ``update``, ``patch`` or ``read``."""
    event: models.Event
    """The event as the caller passed it."""
    data: bytes | None = None
    """The patch body, for ``patch``."""


class FakeEventSink:
    """An :class:`~k8s_logging_events.sink.EventSink` that stores events in memory.

    ``create`` refuses a name that exists (409 ``AlreadyExists``), ``patch``, ``update`` and
    ``read`` refuse a missing one (404 ``NotFound``); every write bumps a global
    resourceVersion, and a patch or update that carries a stale ``metadata.resourceVersion``
    is refused as the API server refuses it (409 ``Conflict``). Failures are scripted with
    :meth:`fail_next`, or with ``on_create``/``on_patch``/``on_update``/``on_read`` hooks
    that may raise or return a replacement result. Every call is kept in :attr:`calls`.
    Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._called = threading.Condition(self._lock)
        self._stored: dict[tuple[str, str], models.Event] = {}
        self._versions = itertools.count(1)
        self._failures: dict[str, deque[BaseException]] = {
            "create": deque(),
            "update": deque(),
            "patch": deque(),
            "read": deque(),
        }
        self.calls: list[SinkCall] = []
        """Every call, in order, including the failed ones."""
        self.on_create: Callable[[models.Event], models.Event | None] | None = None
        """Called before a create is applied; raise to fail it, return an event to answer."""
        self.on_patch: Callable[[models.Event, bytes], models.Event | None] | None = None
        """Called before a patch is applied; raise to fail it, return an event to answer."""
        self.on_update: Callable[[models.Event], models.Event | None] | None = None
        """Called before an update is applied; raise to fail it, return an event to answer."""
        self.on_read: Callable[[models.Event], models.Event | None] | None = None
        """Called before a read; raise to fail it, return an event to answer."""

    def fail_next(self, method: str, error: BaseException, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error`` (without storing)."""
        with self._lock:
            self._failures[method].extend([error] * times)

    @property
    def events(self) -> list[models.Event]:
        """The stored events, in creation order."""
        with self._lock:
            return list(self._stored.values())

    def get(self, namespace: str, name: str) -> models.Event | None:
        """Return the stored event ``namespace/name``, if any."""
        with self._lock:
            return self._stored.get((namespace, name))

    def create(self, event: models.Event) -> models.Event:
        """Store a new event."""
        self._begin("create", event, None)
        if self.on_create is not None and (answer := self.on_create(event)) is not None:
            return answer
        with self._lock:
            if (event.namespace, event.name) in self._stored:
                raise sink.ApiStatusError(
                    409, "AlreadyExists", f'events "{event.name}" already exists'
                )
            return self._store(event, event)

    def update(self, event: models.Event) -> models.Event:
        """Replace a stored event."""
        self._begin("update", event, None)
        if self.on_update is not None and (answer := self.on_update(event)) is not None:
            return answer
        with self._lock:
            _check_version(event.resource_version, self._current(event))
            return self._store(event, event)

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        """Merge ``data`` (a JSON merge patch, RFC 7386) into a stored event."""
        self._begin("patch", event, data)
        if self.on_patch is not None and (answer := self.on_patch(event, data)) is not None:
            return answer
        with self._lock:
            current = self._current(event)
            patch = json.loads(data)
            if isinstance(patch, dict) and isinstance(patch.get("metadata"), dict):
                _check_version(str(patch["metadata"].get("resourceVersion") or ""), current)
            merged = apply_merge_patch(current.to_api(), patch)
            return self._store(event, models.Event.from_api(merged))

    def read(self, event: models.Event) -> models.Event:
        """Return the stored event of ``event``'s namespace and name (404 if there is none)."""
        self._begin("read", event, None)
        if self.on_read is not None and (answer := self.on_read(event)) is not None:
            return answer
        with self._lock:
            return self._current(event)

    def wait_for_calls(self, count: int, timeout: float | None = None) -> bool:
        """Wait until :attr:`calls` holds at least ``count`` calls; False on timeout."""
        with self._called:
            return self._called.wait_for(lambda: len(self.calls) >= count, timeout=timeout)

    def _current(self, event: models.Event) -> models.Event:
        """The stored event of ``event``'s namespace and name, or 404 (under the lock)."""
        current = self._stored.get((event.namespace, event.name))
        if current is None:
            raise _not_found(event)
        return current

    def _store(self, named: models.Event, event: models.Event) -> models.Event:
        """Store ``event`` under ``named``'s namespace and name, in a new resourceVersion."""
        stored = dataclasses.replace(event, resource_version=str(next(self._versions)))
        self._stored[(named.namespace, named.name)] = stored
        return stored

    def _begin(self, method: str, event: models.Event, data: bytes | None) -> None:
        with self._lock:
            self.calls.append(SinkCall(method, event, data))
            self._called.notify_all()
            failures = self._failures[method]
            error = failures.popleft() if failures else None
        if error is not None:
            raise error


def _check_version(wanted: str, current: models.Event) -> None:
    """A resourceVersion in a write is a precondition: stale means 409 Conflict."""
    if wanted and wanted != current.resource_version:
        raise sink.ApiStatusError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on events "{current.name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
        )


def _not_found(event: models.Event) -> sink.ApiStatusError:
    return sink.ApiStatusError(404, "NotFound", f'events "{event.name}" not found')
