"""Event names: client-go's names from the time, or names that follow from the event itself.

This sits with the rules, below the correlator: the recorder names each event it builds, the
aggregator names its "(combined from similar events)" events, events.k8s.io/v1 series name
theirs, and the writer renames an event whose name another event already holds, all through
one :class:`EventNamer` per broadcaster.

client-go names an event ``<object name>.<event time in Unix nanoseconds, hex>``: every
process that starts again, every worker of a pre-fork server and every replica makes its own
event, and two processes naming one object in the same instant make the same name. A
*deterministic* name is a hash of what makes an event that event (its correlation key), so
that a restarted process, a second worker or another replica on the same node meets its own
event again and continues its count (see ``_continuation``):

* the input is a version tag and the key's fields, JSON-encoded (never client-go's
  concatenation without separators, where component ``ab`` on host ``c`` equals ``a`` on
  ``bc``); a change of scheme changes the tag, so it cannot meet today's names;
* the name is the involved object's name as a readable prefix, a dot and
  :data:`HASH_HEX_DIGITS` hex digits of SHA-256 (64 bits): a valid DNS subdomain within 253
  characters, the prefix cut (never the hash) and made valid where it is not.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import uuid
from datetime import UTC, datetime

from k8s_logging_events import _process, _sanitise, models

__all__ = [
    "DETERMINISTIC",
    "EVENT_NAMES",
    "FALLBACK_PREFIX",
    "HASH_HEX_DIGITS",
    "NAME_SCHEME",
    "TIMESTAMP",
    "EventNamer",
    "check_event_names",
    "generate_event_name",
    "is_dns_subdomain",
    "readable_prefix",
    "unix_nanos",
]

DETERMINISTIC = "deterministic"
"""Names from a hash of the correlation key: the handler's default."""

TIMESTAMP = "timestamp"
"""client-go's ``<object name>.<hex Unix nanoseconds>``: the client-go ports' default."""

EVENT_NAMES = (DETERMINISTIC, TIMESTAMP)
"""The values of the ``event_names`` options."""

NAME_SCHEME = "k8s-logging-events/event-name/1"
"""The version tag that starts every hash input; another scheme gets another tag."""

HASH_HEX_DIGITS = 16
"""Hex digits of the hash in a name: 64 bits, as many digits as client-go's time."""

FALLBACK_PREFIX = "event"
"""The prefix of a deterministic name when nothing of the object's name can be used."""

DEFAULT_SIZE = 4096
"""Objects (timestamp names) or keys (deterministic names) a namer remembers."""

_MAX_PREFIX = _sanitise.DNS_SUBDOMAIN_MAX_LENGTH - 1 - HASH_HEX_DIGITS
_NOT_IN_NAMES = re.compile(r"[^a-z0-9.-]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_event_names(value: object, option: str = "event_names") -> str:
    """Return ``value`` when it is ``"deterministic"`` or ``"timestamp"``; else ValueError."""
    if not isinstance(value, str) or value not in EVENT_NAMES:
        allowed = " or ".join(map(repr, EVENT_NAMES))
        raise ValueError(f"{option} must be {allowed}, not {value!r}")
    return value


def unix_nanos(value: datetime) -> int:
    """Return ``value`` as whole nanoseconds since the Unix epoch, exactly (Go's ``UnixNano``)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def is_dns_subdomain(value: str) -> bool:
    """Tell whether ``value`` is a DNS-1123 subdomain, the rule for Event names.

    At most 253 characters of lowercase letters, digits, ``-`` and ``.``; each dot-separated
    label starts and ends with a letter or digit.
    """
    return _sanitise.is_dns_subdomain(value)


def generate_event_name(ref_name: str, unix_nanos: int) -> str:
    """Name a new event after the object it is about and the time it happened.

    Args:
        ref_name: the involved object's name.
        unix_nanos: the event time in nanoseconds since the Unix epoch.

    Returns:
        ``"<ref_name>.<unix_nanos in lowercase hex>"`` (a negative time gets a leading
        ``-``, as Go's ``%x`` writes it), or a random UUID when that is not a valid
        DNS-1123 subdomain (an upper-case, over-long or IPv6 object name, for instance).
    """
    return _sanitise.event_name(ref_name, unix_nanos)


def readable_prefix(ref_name: str) -> str:
    """The start of a deterministic name: the object's name, made a valid DNS subdomain.

    A valid name short enough is kept as it is. Otherwise it is lower-cased, every run of
    characters a name cannot hold becomes ``-``, empty labels and the ``-`` at the ends of
    labels go, and it is cut to fit; :data:`FALLBACK_PREFIX` when nothing remains (an empty
    name, or one of symbols only). The hash after it tells events apart, not the prefix.
    """
    if len(ref_name) <= _MAX_PREFIX and _sanitise.is_dns_subdomain(ref_name):
        return ref_name
    cleaned = _NOT_IN_NAMES.sub("-", ref_name.lower())
    labels = (label.strip("-") for label in cleaned.split("."))
    prefix = ".".join(label for label in labels if label)[:_MAX_PREFIX]
    # the cut may end a label in "-" or leave a trailing "."
    prefix = prefix.rstrip("-.")
    return prefix if _sanitise.is_dns_subdomain(prefix) else FALLBACK_PREFIX


def _digest(parts: tuple[str, ...]) -> str:
    data = json.dumps((NAME_SCHEME, *parts), separators=(",", ":"))  # ASCII: escapes all else
    return hashlib.sha256(data.encode("ascii")).hexdigest()[:HASH_HEX_DIGITS]


def _reference_parts(ref: models.ObjectReference) -> tuple[str, ...]:
    # never the resourceVersion: events about successive versions of an object are one event
    return (ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version, ref.field_path)


class EventNamer:
    """Names new events, by time as client-go does or deterministically.

    One belongs to one broadcaster: its recorders, its correlators' combined events, its
    series and its writers' renames all go through it.

    With ``event_names="timestamp"``, names are client-go's. Python clocks have
    microseconds, and a test clock may not move at all, so two events about one object can
    share a time: the second then gets one nanosecond more than the last name given for
    that object, so that its create does not meet ``AlreadyExists``. The first name for an
    object follows from its time alone. Not in client-go, whose clock has nanoseconds.

    With ``event_names="deterministic"``, a name is ``<readable prefix>.<64-bit hash>`` of
    the event's correlation key (see the module's docstring); the names of recent keys are
    remembered, so a burst hashes each key once.

    Args:
        size: how many objects (or keys) are remembered; least recently named go first.
        event_names: ``"timestamp"`` (client-go's names) or ``"deterministic"``.
    """

    def __init__(self, size: int = DEFAULT_SIZE, *, event_names: str = TIMESTAMP) -> None:
        self.event_names = check_event_names(event_names)
        self._lock = threading.Lock()
        self._size = max(1, size)
        # least recently named first: plain dicts, because this runs for each event built
        self._last: dict[str, int] = {}
        self._hashed: dict[tuple[str, ...], str] = {}
        _process.renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        # the parent's dispatcher holds the lock for every event it names
        self._lock = threading.Lock()

    @property
    def deterministic(self) -> bool:
        """True when names follow from the events themselves."""
        return self.event_names == DETERMINISTIC

    # -- client-go's names --------------------------------------------------------------

    def name(self, ref_name: str, time: datetime) -> str:
        """Return client-go's name of a new event about ``ref_name`` that happened at ``time``."""
        nanos = unix_nanos(time)
        last_names = self._last
        with self._lock:
            last = last_names.pop(ref_name, None)
            if last is not None and nanos <= last:
                nanos = last + 1
            last_names[ref_name] = nanos
            if len(last_names) > self._size:
                del last_names[next(iter(last_names))]
        return generate_event_name(ref_name, nanos)

    def fresh(self, ref_name: str, time: datetime) -> str:
        """A time name no other process is likely to hold, for an event that needs a new one.

        client-go's form with a random number of nanoseconds added: Python clocks tick in
        microseconds, so a name another process took from its clock ends in ``000`` in
        decimal nanoseconds, and this one does not.
        """
        nanos = unix_nanos(time) + random.randrange(1, 1000)  # jitter, not a secret
        name = f"{ref_name}.{nanos:x}"
        return name if _sanitise.is_dns_subdomain(name) else str(uuid.uuid4())

    # -- names of events ----------------------------------------------------------------

    def event_name(
        self,
        source: models.EventSource,
        ref: models.ObjectReference,
        type: str,
        reason: str,
        message: str,
        time: datetime,
    ) -> str:
        """Name a new core/v1 event: from its key (deterministic), else from ``time``.

        The key is client-go's event key: the source's component and host, the involved
        object (kind, namespace, name, uid, apiVersion, fieldPath; not its
        resourceVersion), the type, the reason and the message.
        """
        if not self.deterministic:
            return self.name(ref.name, time)
        parts = ("event", source.component, source.host, *_reference_parts(ref))
        return self._hashed_name(ref.name, (*parts, type, reason, message))

    def combined_name(self, event: models.Event, aggregate_key: str, time: datetime) -> str:
        """Name a "(combined from similar events)" event of ``aggregate_key``'s group.

        Deterministic: a hash of the aggregate key (the correlator's ``key_func`` decides
        what is similar) and a marker that keeps it apart from every plain event.
        """
        if not self.deterministic:
            return self.name(event.involved_object.name, time)
        return self._hashed_name(event.involved_object.name, ("combined", aggregate_key))

    def series_name(self, event: models.Event) -> str:
        """Name an events.k8s.io/v1 event after its series key (deterministic names only).

        The key is client-go's isomorphic key without the involved object's resourceVersion:
        type, action, reason, reporting controller and instance, the involved object and the
        related one. The note is not in it, as it is not in the series. With timestamp
        names, the event keeps the name it has.
        """
        if not self.deterministic:
            return event.name
        ref, related = event.involved_object, event.related
        parts: tuple[str, ...] = ("series", event.type, event.action, event.reason)
        parts += (event.reporting_controller, event.reporting_instance, *_reference_parts(ref))
        if related is not None:
            parts += ("related", *_reference_parts(related), related.resource_version)
        return self._hashed_name(ref.name, parts)

    def renamed(self, event: models.Event, attempt: int, time: datetime) -> str:
        """A new name for ``event`` whose name another event holds (``attempt`` from 1).

        Deterministic: a hash of the name it had and ``attempt``, so that the same process
        started again finds the renamed event under the same new name. Timestamp names: a
        :meth:`fresh` one.
        """
        if not self.deterministic:
            return self.fresh(event.involved_object.name, time)
        return self._hashed_name(event.involved_object.name, ("renamed", event.name, str(attempt)))

    def _hashed_name(self, ref_name: str, parts: tuple[str, ...]) -> str:
        hashed = self._hashed
        name = hashed.get(parts)
        if name is not None:
            return name
        name = f"{readable_prefix(ref_name)}.{_digest(parts)}"
        with self._lock:
            hashed[parts] = name
            if len(hashed) > self._size:
                del hashed[next(iter(hashed))]
        return name
