"""What the local API server stores: entries, the two Events APIs, changes, object metadata.

Part of the local API server on the test side of the pipeline, under the
:class:`~._store.Store`: an :class:`Entry` is one stored object in its canonical form with
its JSON rendered once per API version; :data:`CORE_API` and :data:`EVENTS_API` are the two
APIs that serve events over the same store; a :class:`Change` is one change to an event as
a watch reports it, and a :class:`History` the bounded list of one resource's changes that
watches resume from; :func:`meta_with` keeps ``ObjectMeta`` in Go's field order,
:func:`created_meta` is what a create sets in it, and :func:`simple_name` is the real
server's ``generateName``.
"""

from __future__ import annotations

import collections
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from k8s_logging_events.models import format_time
from k8s_logging_events.testing.apiserver._errors import (
    already_exists,
    conflict,
    generate_name_conflict,
    unknown_error,
)
from k8s_logging_events.testing.apiserver._gofmt import go_json
from k8s_logging_events.testing.apiserver._schema import OBJECT_META, core_to_events
from k8s_logging_events.testing.apiserver._validation import CORE, EVENTS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from k8s_logging_events.testing.apiserver._selectors import FieldSelector, LabelSelector

GENERATED_NAME_LENGTH = 5


MAX_GENERATED_PREFIX = 63 - GENERATED_NAME_LENGTH


_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""``utilrand``'s alphabet: no vowels, no look-alike digits."""


ADDED = "ADDED"


MODIFIED = "MODIFIED"


DELETED = "DELETED"

EVENTS_RESOURCE = "events"
NAMESPACES_RESOURCE = "namespaces"
PODS_RESOURCE = "pods"
RESOURCES = (EVENTS_RESOURCE, NAMESPACES_RESOURCE, PODS_RESOURCE)
"""The resources the server stores, each with its own change history."""


@dataclass(frozen=True, slots=True)
class Api:
    """One of the two APIs that serve Events."""

    name: str
    """:data:`~._validation.CORE` or :data:`~._validation.EVENTS`."""
    group: str
    api_version: str

    @property
    def prefix(self) -> bytes:
        """The start of a single-object JSON body: kind and apiVersion first, as Go writes."""
        return f'{{"kind":"Event","apiVersion":"{self.api_version}",'.encode()


class HistoryExpiredError(Exception):
    """A watch asked for changes older than the history keeps.

    Args:
        requested: the resourceVersion asked for.
        floor: the oldest resourceVersion a watch can still start from.
    """

    def __init__(self, requested: int, floor: int) -> None:
        super().__init__(f"too old resource version: {requested} ({floor})")
        self.requested = requested
        self.floor = floor


@dataclass(slots=True, eq=False)
class Entry:
    """One stored object and its rendered JSON, cached per API version."""

    obj: dict[str, Any]
    """The canonical form (core/v1 for events), without kind and apiVersion."""
    rv: int
    written: float
    """When it was last written, on the store clock's monotonic reading (expiry is a duration)."""
    _core: bytes | None = field(default=None, repr=False)
    _events: bytes | None = field(default=None, repr=False)

    @property
    def namespace(self) -> str:
        """The object's namespace ("" for namespaces)."""
        return str(self.obj["metadata"].get("namespace", ""))

    @property
    def name(self) -> str:
        """The object's name."""
        return str(self.obj["metadata"]["name"])

    def item_json(self, api: str) -> bytes:
        """The object as a list item in ``api`` (no kind/apiVersion), cached."""
        if api == CORE:
            if self._core is None:
                self._core = go_json(self.obj)
            return self._core
        if self._events is None:
            self._events = go_json(core_to_events(self.obj))
        return self._events

    def view(self, api: str) -> dict[str, Any]:
        """A fresh copy of the object as list item in ``api``."""
        loaded: dict[str, Any] = json.loads(self.item_json(api))
        return loaded


@dataclass(frozen=True, slots=True)
class Change:
    """One change to an object (an event, a pod, a namespace), as a watch reports it."""

    rv: int
    """The resourceVersion the change took."""
    type: str
    """``ADDED``, ``MODIFIED`` or ``DELETED``."""
    entry: Entry
    """The object after the change; for a deletion, its last state at the deletion's version."""
    previous: Entry | None
    """The object before the change (None for a creation)."""


class History:
    """The latest changes to one resource, bounded: the window a watch can resume from.

    Args:
        size: how many changes to keep; older ones are forgotten, and a watch from before
            the oldest kept one is told its resourceVersion is too old.
    """

    def __init__(self, size: int) -> None:
        self._changes: collections.deque[Change] = collections.deque(maxlen=size)
        self._floor = 0

    def record(self, change: Change) -> None:
        """Keep ``change``, forgetting the oldest one when full."""
        changes = self._changes
        if len(changes) == changes.maxlen:
            self._floor = changes[0].rv
        changes.append(change)

    @property
    def last(self) -> int:
        """The resourceVersion of the latest change (the floor before any)."""
        return self._changes[-1].rv if self._changes else self._floor

    def since(self, rv: int) -> list[Change]:
        """The changes after resourceVersion ``rv``, oldest first.

        Raises:
            HistoryExpiredError: changes after ``rv`` have already been forgotten.
        """
        if rv < self._floor:
            raise HistoryExpiredError(rv, self._floor)
        newer: list[Change] = []
        for change in reversed(self._changes):
            if change.rv <= rv:
                break
            newer.append(change)
        newer.reverse()
        return newer


_META_ORDER = tuple(spec.name for spec in OBJECT_META.fields)


def meta_with(meta: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Return ``meta`` with ``changes`` applied, in Go field order, empty fields left out."""
    merged = {**meta, **changes}
    out: dict[str, Any] = {}
    for name in _META_ORDER:
        value = merged.get(name)
        if value or name == "creationTimestamp":
            out[name] = value
        elif value == 0 and value is not None and name == "deletionGracePeriodSeconds":
            out[name] = 0
    return out


def created_meta(
    meta: dict[str, Any], generate: Callable[[str], str], now: datetime, uid: str | None = None
) -> tuple[dict[str, Any], bool]:
    """The metadata of an object being created, and whether its name was generated.

    What the registry's ``BeforeCreate`` sets whatever the client sent: a name made from
    ``generateName`` when no name was given, a new uid (``uid`` when given), the creation
    time, and no deletion time, self link or managed fields.
    """
    generated = bool(meta.get("generateName")) and not meta.get("name")
    created = meta_with(
        meta,
        name=generate(meta["generateName"]) if generated else meta.get("name"),
        uid=uid or str(uuid.uuid4()),
        creationTimestamp=format_time(now),
        deletionTimestamp=None,
        deletionGracePeriodSeconds=None,
        selfLink=None,
        managedFields=None,
    )
    return created, generated


def in_selection(
    entry: Entry,
    labels: LabelSelector,
    fields: FieldSelector,
    fields_of: Callable[[dict[str, Any]], Mapping[str, str]],
) -> bool:
    """Whether a stored object is in a label and field selection (an empty one takes all)."""
    if not labels.empty and not labels.matches(entry.obj["metadata"].get("labels")):
        return False
    return fields.empty or fields.matches(fields_of(entry.obj))


def select_page(
    objects: Mapping[tuple[str, str], Entry],
    namespace: str | None,
    labels: LabelSelector,
    fields: FieldSelector,
    fields_of: Callable[[dict[str, Any]], Mapping[str, str]],
    *,
    limit: int = 0,
    start: tuple[str, str] | None = None,
) -> tuple[list[Entry], tuple[str, str] | None, int]:
    """Select a list's page: (entries, the next page's start key, how many remain).

    ``objects`` are keyed by (namespace, name); the page holds the selected ones of
    ``namespace`` (all when None) in key order from ``start``, at most ``limit`` (all when 0).
    """
    selected: list[Entry] = []
    for key in sorted(objects):
        if (namespace is not None and key[0] != namespace) or (start is not None and key < start):
            continue
        entry = objects[key]
        if in_selection(entry, labels, fields, fields_of):
            selected.append(entry)
    if limit and len(selected) > limit:
        following = selected[limit]
        return selected[:limit], (following.namespace, following.name), len(selected) - limit
    return selected, None, 0


def check_preconditions(kind: str, entry: Entry, preconditions: Mapping[str, Any] | None) -> None:
    """A delete's ``preconditions`` against the stored object, as ``rest.BeforeDelete`` checks
    them first: the uid, then the resourceVersion.

    Raises:
        ApiError: 409 ``Conflict`` on the object's ``kind`` (``Event``, ``Pod``), the name
            ``BeforeDelete`` gives its resource.
    """
    meta = entry.obj["metadata"]
    for key, label, meaning in (
        ("uid", "UID", "deleted and then recreated"),
        ("resourceVersion", "ResourceVersion", "modified"),
    ):
        wanted = (preconditions or {}).get(key)
        if wanted is not None and wanted != meta.get(key):
            raise conflict(
                kind,
                entry.name,
                reason=f"the {label} in the precondition ({wanted}) does not match the {label} "
                f"in record ({meta.get(key, '')}). The object might have been {meaning}",
            )


def check_uid_precondition(
    resource: str, namespace: str, name: str, uid: str | None, current: Entry | None, group: str
) -> None:
    """A PUT body's ``metadata.uid`` is a precondition on the stored object (none when it is
    missing): etcd's check, whose error the registry wraps in a 409 ``Conflict``."""
    stored = current.obj["metadata"].get("uid", "") if current is not None else ""
    if uid and uid != stored:
        raise conflict(
            resource,
            name,
            group,
            f"StorageError: invalid object, Code: 4, Key: /registry/{resource}/{namespace}/"
            f"{name}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in "
            f"precondition: {uid}, UID in object meta: {stored}",
        )


def check_create_version(meta: Mapping[str, Any]) -> None:
    """etcd3's create refuses a body with a resourceVersion, read as its versioner reads one:
    ``"0"``, or text that is no number at all, counts as none."""
    text = meta.get("resourceVersion") or ""
    if text.isascii() and text.isdigit() and int(text):
        raise unknown_error("resourceVersion should not be set on objects to be created")


def update_version(meta: Mapping[str, Any]) -> int:
    """The resourceVersion an update's body asks for (the registry's ``ParseUint``): 0, an
    unconditional update, when it is unset or ``"0"``; a 500 when it is no number."""
    text = meta.get("resourceVersion") or "0"
    if not (text.isascii() and text.isdigit()):
        raise unknown_error(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    return int(text)


ETCD_MAX_REQUEST_BYTES = 1536 * 1024
"""etcd's default ``--max-request-bytes``: a write of a larger event (measured as its compact
JSON, close to the protobuf a real server stores) fails with the unclassified 500 that
kube-apiserver passes on from etcd, although its body was under the 3 MiB it reads."""

GRPC_MAX_SEND_BYTES = 2 * 1024 * 1024
"""etcd's client refuses to send a write over 2 MiB, before etcd sees it: another wording of
the same unclassified 500."""


def check_storable(event: dict[str, Any]) -> None:
    """Refuse an event etcd would not take, with the unclassified 500 a real server answers."""
    stored = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)
    size = len(stored.encode("utf-8", "surrogatepass"))
    if size > GRPC_MAX_SEND_BYTES:
        raise unknown_error(
            "rpc error: code = ResourceExhausted desc = trying to send message larger "
            f"than max ({size} vs. {GRPC_MAX_SEND_BYTES})"
        )
    if size > ETCD_MAX_REQUEST_BYTES:
        raise unknown_error("etcdserver: request is too large")


GENERATE_NAME_ATTEMPTS = 8
"""How often a generated name that collided is tried again (``RetryGenerateName``)."""


def unique_name(
    objects: Mapping[tuple[str, str], Entry],
    meta: dict[str, Any],
    generated: bool,
    generate: Callable[[str], str],
    resource: str,
    group: str = "",
) -> dict[str, Any]:
    """The metadata of a create, with a name no stored object of ``resource`` has.

    A name that was ``generated`` (from ``generateName``) is generated again, up to
    :data:`GENERATE_NAME_ATTEMPTS` times in all; a name that was given is taken as it is.

    Raises:
        ApiError: 409 ``AlreadyExists`` (with ``retryAfterSeconds`` for a generated name).
    """
    attempts = 1
    while (meta["namespace"], meta["name"]) in objects:
        if not generated:
            raise already_exists(resource, meta["name"], group)
        if attempts >= GENERATE_NAME_ATTEMPTS:
            raise generate_name_conflict(resource, meta["name"])
        attempts += 1
        meta = meta_with(meta, name=generate(meta["generateName"]))
    return meta


def simple_name(prefix: str, rng: random.Random) -> str:
    """``names.SimpleNameGenerator``: the prefix (cut to 58) and five random characters."""
    prefix = prefix[:MAX_GENERATED_PREFIX]
    return prefix + "".join(rng.choice(_NAME_ALPHABET) for _ in range(GENERATED_NAME_LENGTH))


CORE_API = Api(CORE, "", "v1")
"""Events through ``/api/v1``."""
EVENTS_API = Api(EVENTS, "events.k8s.io", "events.k8s.io/v1")
"""Events through ``/apis/events.k8s.io/v1``."""
