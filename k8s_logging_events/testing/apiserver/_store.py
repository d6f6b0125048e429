"""The object store of :class:`~k8s_logging_events.testing.LocalApiServer`.

Part of the local API server on the test side of the pipeline: one in-memory store of
Events (in their canonical core/v1 form, whichever API wrote them), Namespaces and Pods
(their part is in the base class ``_store_pods.PodStore``), behind one lock, with a global
resourceVersion that every write moves on. It runs the server-side steps of an event write
in the order the API server runs them:

1. NamespaceLifecycle admission (404 for a missing namespace, 403 ``NamespaceTerminating``
   for a create in a namespace being deleted);
2. name generation for ``generateName``;
3. the strategy's validation, then the generic metadata validation (422);
4. validating admission: ``EventRateLimit`` when configured (429, ``_admission``);
5. optimistic concurrency and storage (409 ``AlreadyExists`` / ``Conflict``; the
   resourceVersion precondition of an update is checked before validation, as the
   registry's update does). Body decoding and the namespace-in-body check come before,
   in the REST layer.

Every change to an object (create, update, patch, delete, expiry, eviction, a finalized
namespace, :meth:`Store.reset`) takes its own resourceVersion and is kept, as a
:class:`Change`, in its resource's bounded :class:`History`: the window a watch can resume
from (the watch cache's job in a real API server, which keeps one per resource).
``Store.changed`` is notified on every change.
"""

from __future__ import annotations

import json
import math
import random
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from k8s_logging_events.clock import Clock, monotonic_source
from k8s_logging_events.models import format_time
from k8s_logging_events.testing.apiserver._admission import WriteAttributes
from k8s_logging_events.testing.apiserver._auth import ANONYMOUS
from k8s_logging_events.testing.apiserver._errors import (
    already_exists,
    conflict,
    forbidden,
    invalid,
    name_mismatch,
    namespace_mismatch,
    not_found,
)
from k8s_logging_events.testing.apiserver._objects import (
    ADDED,
    CORE_API,
    DELETED,
    EVENTS_RESOURCE,
    MODIFIED,
    NAMESPACES_RESOURCE,
    PODS_RESOURCE,
    RESOURCES,
    Api,
    Change,
    Entry,
    History,
    check_create_version,
    check_preconditions,
    check_storable,
    check_uid_precondition,
    created_meta,
    in_selection,
    meta_with,
    select_page,
    simple_name,
    unique_name,
    update_version,
)
from k8s_logging_events.testing.apiserver._resources import resource_of
from k8s_logging_events.testing.apiserver._selectors import FieldSelector, LabelSelector
from k8s_logging_events.testing.apiserver._store_pods import PodStore
from k8s_logging_events.testing.apiserver._validation import (
    is_dns1123_label,
    validate_event_create,
    validate_event_update,
    validate_meta_common,
    validate_meta_update,
    validate_namespace_create,
)

IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
"""Namespaces that always exist and can never be deleted."""

DEFAULT_WATCH_HISTORY = 1000
"""How many event changes the store keeps for watches to resume from.

A real API server keeps a window of its own (the watch cache, at least 100 changes and up
to a few minutes of them; etcd keeps 5 minutes before compaction); a watch from an older
resourceVersion gets ``410 Expired``. A count, not a time, keeps tests deterministic.
"""


class Store(PodStore):
    """Events, Namespaces and Pods, one lock, one resourceVersion counter.

    Args:
        clock: creation timestamps (``now()``) and expiry (its monotonic reading).
        namespaces: namespaces to create beside ``default``, ``kube-system``, ``kube-public``.
        auto_create_namespaces: create a missing namespace on the first write into it
            instead of answering 404 as a real server does.
        event_ttl: seconds after its last write an event expires (None: never).
        max_events: the most events kept; the least recently written go first.
        name_generator: makes a name from a ``generateName`` prefix.
        seed: seeds the default name generator.
        watch_history: how many changes of each resource to keep for watches to resume from.
        admission: the validating admission of event writes (creates and updates): raises
            an ``ApiError`` to refuse one (None: every write is admitted).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        namespaces: Iterable[str] = (),
        auto_create_namespaces: bool = False,
        event_ttl: float | None = None,
        max_events: int | None = None,
        name_generator: Callable[[str], str] | None = None,
        seed: int | None = None,
        watch_history: int = DEFAULT_WATCH_HISTORY,
        admission: Callable[[WriteAttributes], None] | None = None,
    ) -> None:
        # bool is an int; 0 or "x" kept nothing or failed every write, answering none
        for option, count in (("watch_history", watch_history), ("max_events", max_events)):
            valid = isinstance(count, int) and not isinstance(count, bool) and count >= 1
            if not valid and (count is not None or option != "max_events"):
                raise ValueError(f"{option} must be a whole number >= 1, not {count!r}")
        if isinstance(namespaces, str):  # "shop" would create s, h, o and p
            raise ValueError(f"namespaces must be a list ([{namespaces!r}]), not {namespaces!r}")
        given: object = event_ttl  # typed float, but a caller may pass anything
        valid = (
            isinstance(given, int | float) and not isinstance(given, bool) and 0 < given < math.inf
        )
        if given is not None and not valid:
            raise ValueError(f"event_ttl must be a positive number of seconds, not {event_ttl!r}")
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        """Notified (under :attr:`lock`) after every change to a stored object."""
        self._histories = {resource: History(watch_history) for resource in RESOURCES}
        self._clock = clock
        self._monotonic = monotonic_source(clock)
        self._initial_namespaces = tuple(dict.fromkeys((*IMMORTAL_NAMESPACES, *namespaces)))
        for name in self._initial_namespaces:
            if not isinstance(name, str) or is_dns1123_label(name):
                raise ValueError(f"namespace {name!r} is not a valid namespace name")
        self.auto_create_namespaces = auto_create_namespaces
        self._ttl = event_ttl
        self._max_events = max_events
        rng = random.Random(seed)
        self._generate = name_generator or (lambda prefix: simple_name(prefix, rng))
        self._admission = admission
        self._rv = 0
        self._events: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._namespaces: dict[str, Entry] = {}
        self._pods: dict[tuple[str, str], Entry] = {}
        self.reset()

    # -- bookkeeping ------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every event, pod and namespace, then create the initial namespaces again;
        keep the resourceVersion counter going.

        Watches see a ``DELETED`` for each object (and an ``ADDED`` for each new namespace).
        """
        with self.lock:
            while self._events:
                self._drop_event(next(iter(self._events)))
            self._drop_pods(None)
            for name in sorted(self._namespaces):
                self._drop_namespace(name)
            for name in self._initial_namespaces:
                self._put_namespace(self._new_namespace(name))

    @property
    def resource_version(self) -> int:
        """The resourceVersion of the last write."""
        with self.lock:
            self._expire()
            return self._rv

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _now(self) -> datetime:
        return self._clock.now()

    def _written_at(self) -> float:
        return self._monotonic()

    def _expire(self) -> None:
        """Drop events whose TTL ran out, as etcd's leases would: on the monotonic reading,
        so that a step of the wall clock neither expires events nor keeps them."""
        if self._ttl is None or not self._events:
            return
        deadline = self._written_at() - self._ttl
        while self._events:
            key, entry = next(iter(self._events.items()))
            if entry.written > deadline:
                break
            self._drop_event(key)

    def _store_event(self, key: tuple[str, str], entry: Entry) -> None:
        previous = self._events.get(key)
        self._events[key] = entry
        self._events.move_to_end(key)
        change = Change(entry.rv, ADDED if previous is None else MODIFIED, entry, previous)
        self._record(EVENTS_RESOURCE, change)
        if self._max_events is not None:
            while len(self._events) > self._max_events:
                self._drop_event(next(iter(self._events)))

    def _drop_event(self, key: tuple[str, str]) -> Entry:
        """Delete one event: a new resourceVersion and a ``DELETED`` change for watches."""
        return self._drop(EVENTS_RESOURCE, self._events.pop(key))

    def _drop(self, resource: str, entry: Entry) -> Entry:
        """Record the deletion of ``entry`` (already removed): a new resourceVersion and a
        ``DELETED`` change carrying its last state at that version."""
        rv = self._next_rv()
        last = {**entry.obj, "metadata": meta_with(entry.obj["metadata"], resourceVersion=str(rv))}
        self._record(resource, Change(rv, DELETED, Entry(last, rv, self._written_at()), entry))
        return entry

    def _record(self, resource: str, change: Change) -> None:
        self._histories[resource].record(change)
        self.changed.notify_all()

    # -- watch history ----------------------------------------------------------------

    def last_change(self, resource: str) -> int:
        """The resourceVersion of the latest change to ``resource`` (0 before any)."""
        with self.lock:
            return self._histories[resource].last

    def changes_since(self, resource: str, rv: int) -> list[Change]:
        """Return the changes to ``resource`` after resourceVersion ``rv``, oldest first.

        Raises:
            HistoryExpiredError: changes after ``rv`` have already left the history.
        """
        with self.lock:
            self._expire()
            return self._histories[resource].since(rv)

    def entries(self, resource: str, namespace: str | None) -> list[Entry]:
        """The stored objects of ``resource`` (of one namespace, or all), in key order."""
        if resource == EVENTS_RESOURCE:
            return self.events(namespace)
        if resource == PODS_RESOURCE:
            return self.pod_entries(namespace)
        return list(self.iter_namespaces())

    def expire(self) -> None:
        """Let events whose TTL ran out go now (watches call this while they wait)."""
        with self.lock:
            self._expire()

    # -- namespaces -------------------------------------------------------------------

    def _new_namespace(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        all_labels = dict(labels or {})
        all_labels["kubernetes.io/metadata.name"] = name
        meta = meta_with(
            {},
            name=name,
            uid=str(uuid.uuid4()),
            creationTimestamp=format_time(self._now()),
            labels=all_labels,
        )
        return {
            "metadata": meta,
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def _put_namespace(self, namespace: dict[str, Any]) -> Entry:
        rv = self._next_rv()
        namespace["metadata"] = meta_with(namespace["metadata"], resourceVersion=str(rv))
        entry = Entry(namespace, rv, self._written_at())
        name = namespace["metadata"]["name"]
        previous = self._namespaces.get(name)
        self._namespaces[name] = entry
        change = Change(rv, ADDED if previous is None else MODIFIED, entry, previous)
        self._record(NAMESPACES_RESOURCE, change)
        return entry

    def _drop_namespace(self, name: str) -> None:
        self._drop(NAMESPACES_RESOURCE, self._namespaces.pop(name))

    def create_namespace(self, namespace: dict[str, Any]) -> Entry:
        """Create a namespace from a decoded body (POST /api/v1/namespaces)."""
        with self.lock:
            meta = namespace["metadata"]
            if not meta.get("name") and meta.get("generateName"):
                meta = meta_with(meta, name=self._generate(meta["generateName"]))
            name = meta.get("name", "")
            errors = validate_namespace_create({"metadata": meta})
            if errors:
                raise invalid("Namespace", name, errors)
            check_create_version(meta)
            if name in self._namespaces:
                raise already_exists("namespaces", name)
            fresh = self._new_namespace(name, meta.get("labels"))
            extra = {
                k: meta[k] for k in ("annotations", "finalizers", "ownerReferences") if k in meta
            }
            fresh["metadata"] = meta_with(fresh["metadata"], **extra)
            finalizers = namespace.get("spec", {}).get("finalizers")
            if finalizers:
                fresh["spec"] = {"finalizers": finalizers}
            return self._put_namespace(fresh)

    def get_namespace(self, name: str) -> Entry:
        """Return a namespace, or raise 404."""
        with self.lock:
            entry = self._namespaces.get(name)
            if entry is None:
                raise not_found("namespaces", name)
            return entry

    def list_namespaces(
        self, labels: LabelSelector, fields: FieldSelector
    ) -> tuple[list[Entry], int]:
        """Return the selected namespaces in name order and the current resourceVersion."""
        with self.lock:
            fields_of = resource_of(CORE_API, NAMESPACES_RESOURCE).fields_of
            entries = [
                entry
                for name, entry in sorted(self._namespaces.items())
                if in_selection(entry, labels, fields, fields_of)
            ]
            return entries, self._rv

    def terminate_namespace(self, name: str) -> Entry:
        """Put a namespace into ``Terminating`` (what DELETE does to it), or raise."""
        with self.lock:
            if name in IMMORTAL_NAMESPACES:
                raise forbidden("namespaces", name, "this namespace may not be deleted")
            entry = self.get_namespace(name)
            if entry.obj["status"].get("phase") == "Terminating":
                return entry
            namespace = json.loads(json.dumps(entry.obj))
            namespace["metadata"] = meta_with(
                namespace["metadata"], deletionTimestamp=format_time(self._now())
            )
            namespace["status"] = {"phase": "Terminating"}
            return self._put_namespace(namespace)

    def finalize_namespace(self, name: str) -> None:
        """Finish deleting a namespace: drop every event and pod in it, then the namespace
        itself (the namespace controller's job)."""
        with self.lock:
            if name in IMMORTAL_NAMESPACES:
                raise forbidden("namespaces", name, "this namespace may not be deleted")
            self.get_namespace(name)
            for key in [key for key in self._events if key[0] == name]:
                self._drop_event(key)
            self._drop_pods(name)
            self._drop_namespace(name)

    def _admit(
        self,
        namespace: str,
        creating: bool,
        resource_name: str,
        api: Api,
        resource: str = EVENTS_RESOURCE,
    ) -> None:
        """NamespaceLifecycle: the namespace must exist, and a create must not be terminating."""
        entry = self._namespaces.get(namespace)
        if entry is None:
            if creating and self.auto_create_namespaces and not is_dns1123_label(namespace):
                self._put_namespace(self._new_namespace(namespace))
                return
            raise not_found("namespaces", namespace)
        if creating and entry.obj["status"].get("phase") == "Terminating":
            cause = {
                "reason": "NamespaceTerminating",
                "message": f"namespace {namespace} is being terminated",
                "field": "metadata.namespace",
            }
            raise forbidden(
                resource,
                resource_name or "Unknown",
                f"unable to create new content in namespace {namespace} "
                "because it is being terminated",
                api.group,
                [cause],
            )

    # -- events -----------------------------------------------------------------------

    def events(self, namespace: str | None = None) -> list[Entry]:
        """Return the stored events (optionally of one namespace) in key order."""
        with self.lock:
            self._expire()
            return [
                self._events[key]
                for key in sorted(self._events)
                if namespace is None or key[0] == namespace
            ]

    def get_event(self, api: Api, namespace: str, name: str) -> Entry:
        """Return one event, or raise 404."""
        with self.lock:
            self._expire()
            entry = self._events.get((namespace, name))
            if entry is None:
                raise not_found("events", name, api.group)
            return entry

    def list_page(
        self,
        resource: str,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        limit: int = 0,
        start: tuple[str, str] | None = None,
    ) -> tuple[list[Entry], int, tuple[str, str] | None, int]:
        """Return a page of the selected events or pods (``resource``): the entries, the
        resourceVersion, the next page's start key and how many remain after it."""
        objects: Mapping[tuple[str, str], Entry] = (
            self._events if resource == EVENTS_RESOURCE else self._pods
        )
        # events are stored in their core form, whichever API wrote them
        fields_of = resource_of(CORE_API, resource).fields_of
        with self.lock:
            self._expire()
            page, following, remaining = select_page(
                objects, namespace, labels, fields, fields_of, limit=limit, start=start
            )
            return page, self._rv, following, remaining

    def create_event(
        self, api: Api, event: dict[str, Any], *, dry_run: bool = False, user: str = ANONYMOUS
    ) -> Entry:
        """Create an event from its decoded canonical form (namespace already checked)."""
        with self.lock:
            self._expire()
            meta = event["metadata"]
            namespace = meta["namespace"]
            resource_name = meta.get("name") or meta.get("generateName", "")
            self._admit(namespace, True, resource_name, api)
            meta, generated = created_meta(meta, self._generate, self._now())
            event = {**event, "metadata": meta}
            self._validate_create(api, event)
            self._admit_write(api, namespace, event, user, dry_run)
            check_create_version(meta)
            meta = unique_name(self._events, meta, generated, self._generate, "events", api.group)
            event = {**event, "metadata": meta}
            return self._commit((namespace, meta["name"]), event, dry_run=dry_run)

    def _validate_create(self, api: Api, event: dict[str, Any]) -> None:
        name = event["metadata"].get("name", "")
        errors = validate_event_create(event, api.name)
        if errors:
            raise invalid("Event", name, errors)
        errors = validate_meta_common(event["metadata"])
        if errors:
            raise invalid("Event", name, errors)

    def _admit_write(
        self, api: Api, namespace: str, event: dict[str, Any], user: str, dry_run: bool
    ) -> None:
        if self._admission is not None:
            self._admission(WriteAttributes(api.group, namespace, user, event, dry_run))

    def _commit(self, key: tuple[str, str], event: dict[str, Any], *, dry_run: bool) -> Entry:
        if dry_run:
            event["metadata"] = meta_with(event["metadata"], resourceVersion=None)
            return Entry(event, 0, self._written_at())
        check_storable(event)
        rv = self._next_rv()
        event["metadata"] = meta_with(event["metadata"], resourceVersion=str(rv))
        entry = Entry(event, rv, self._written_at())
        self._store_event(key, entry)
        return entry

    def update_event(
        self,
        api: Api,
        namespace: str,
        name: str,
        make: Callable[[Entry | None], dict[str, Any]],
        *,
        allow_create: bool,
        dry_run: bool = False,
        user: str = ANONYMOUS,
        uid: str | None = None,
    ) -> tuple[Entry, bool]:
        """Replace or patch an event: ``make`` builds the new canonical form from the current
        (``uid``: a PUT body's, which the stored event must have).

        Returns the stored entry and whether it was created.
        """
        with self.lock:
            self._expire()
            key = (namespace, name)
            current = self._events.get(key)
            if current is None and not allow_create:
                raise not_found("events", name, api.group)
            event = make(current)
            meta = event["metadata"]
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise namespace_mismatch()
            if meta.get("name", "") != name:
                raise name_mismatch(meta.get("name", ""), name)
            check_uid_precondition("events", namespace, name, uid, current, api.group)
            meta = meta_with(meta, namespace=namespace, managedFields=None, selfLink=None)
            version = update_version(meta)
            if current is None:
                self._admit(namespace, True, name, api)
                meta = meta_with(
                    meta,
                    uid=str(uuid.uuid4()),
                    creationTimestamp=format_time(self._now()),
                    deletionTimestamp=None,
                    deletionGracePeriodSeconds=None,
                    resourceVersion=None,
                )
                event = {**event, "metadata": meta}
                self._validate_create(api, event)
                self._admit_write(api, namespace, event, user, dry_run)
                return self._commit(key, event, dry_run=dry_run), True
            self._admit(namespace, False, name, api)
            old = current.obj
            old_meta = old["metadata"]
            if version not in (0, current.rv):
                raise conflict("events", name, api.group)
            meta = meta_with(
                meta,
                uid=meta.get("uid") or old_meta.get("uid"),
                creationTimestamp=old_meta.get("creationTimestamp"),
                generation=old_meta.get("generation"),
                deletionTimestamp=old_meta.get("deletionTimestamp"),
                deletionGracePeriodSeconds=old_meta.get("deletionGracePeriodSeconds"),
                resourceVersion=old_meta["resourceVersion"],
            )
            event = {**event, "metadata": meta}
            errors = validate_meta_common(meta) + validate_meta_update(meta, old_meta)
            errors += validate_event_update(event, old, api.name)
            if errors:
                raise invalid("Event", name, errors)
            self._admit_write(api, namespace, event, user, dry_run)
            if event == old or dry_run:
                return (
                    current if event == old else Entry(event, current.rv, self._written_at())
                ), False
            return self._commit(key, event, dry_run=False), False

    def delete_event(
        self, api: Api, namespace: str, name: str, preconditions: dict[str, Any] | None = None
    ) -> Entry:
        """Delete one event and return what was stored."""
        with self.lock:
            self._expire()
            entry = self._events.get((namespace, name))
            if entry is None:
                raise not_found("events", name, api.group)
            check_preconditions("Event", entry, preconditions)
            return self._drop_event((namespace, name))

    def delete_events(
        self,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        *,
        dry_run: bool = False,
    ) -> list[Entry]:
        """Delete every selected event (DELETE on a collection; only list them on a dry
        run) and return them."""
        with self.lock:
            doomed, _, _, _ = self.list_page(EVENTS_RESOURCE, namespace, labels, fields)
            for entry in doomed if not dry_run else ():
                self._drop_event((entry.namespace, entry.name))
            return doomed

    def iter_namespaces(self) -> Iterator[Entry]:
        """Every namespace, in name order."""
        with self.lock:
            entries = [self._namespaces[name] for name in sorted(self._namespaces)]
        yield from entries
