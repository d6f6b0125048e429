"""The one sanitiser: every rule the API server applies to an Event, and how events are named.

This sits with the rules, below the correlator and beside the pipeline: the handler repairs
a record's fields with it on the caller's thread, the recorder refuses what cannot be an
event, the correlator names events with it and events.k8s.io/v1 series make their fields
fit. The local API server in :mod:`k8s_logging_events.testing` validates on its own,
independently of this module, so that a bug here cannot pass unnoticed.

Each function says what the server would do with a value that breaks the rule, and what
is done instead: names that cannot be names become UUIDs, text is cut at a character
boundary to its byte limit, NUL and lone surrogates (which no UTF-8 can carry) become
U+FFFD, reasons become one UpperCamelCase word.

Event names: the recorder names each event it builds, the aggregator names its "(combined
from similar events)" events, events.k8s.io/v1 series name theirs, and the writer renames an
event whose name another event already holds, all through one :class:`EventNamer` per
broadcaster.

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

from k8s_logging_events import _process, models

__all__ = [
    "ACTION_MAX_BYTES",
    "ANNOTATIONS_MAX_BYTES",
    "DETERMINISTIC",
    "DNS_SUBDOMAIN_MAX_LENGTH",
    "EVENT_API_VERSIONS",
    "EVENT_NAMES",
    "FALLBACK_PREFIX",
    "HASH_HEX_DIGITS",
    "MESSAGE_MAX_BYTES",
    "NAME_SCHEME",
    "QUALIFIED_NAME_MAX_LENGTH",
    "REASON_MAX_BYTES",
    "TIMESTAMP",
    "TRUNCATION_MARK",
    "EventNamer",
    "camel_case",
    "check_event_names",
    "cut_bytes",
    "generate_event_name",
    "has_unsafe_text",
    "is_annotation_key",
    "is_dns_subdomain",
    "is_event",
    "is_qualified_name",
    "qualified_name",
    "readable_prefix",
    "replace_surrogates",
    "safe_text",
    "unix_nanos",
]

MESSAGE_MAX_BYTES = 1024
"""``note`` in events.k8s.io/v1 (and core/v1 ``message`` once ``eventTime`` is set)."""

REASON_MAX_BYTES = 128
"""``reason`` in events.k8s.io/v1, and core/v1 with ``eventTime``."""

TRUNCATION_MARK = " ..."
"""What ends a text that was cut to its limit."""

ACTION_MAX_BYTES = 128
"""``action``, and ``reportingInstance``."""

ANNOTATIONS_MAX_BYTES = 256 * 1024
"""The total size of an object's annotations, keys and values."""

DNS_SUBDOMAIN_MAX_LENGTH = 253
"""An object name (RFC 1123 subdomain)."""

QUALIFIED_NAME_MAX_LENGTH = 63
"""The name part of a qualified name (``[prefix/]name``)."""

EVENT_API_VERSIONS = frozenset({"", "v1", "events.k8s.io/v1", "events.k8s.io/v1beta1"})
"""The apiVersions under which ``kind: Event`` is an Event (none given counts too)."""

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_REASON_BREAKS = re.compile("[\\s\x00-\x1f\x7f\ud800-\udfff]+")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_PREFIX_CHARS = re.compile(r"[^a-z0-9.-]+")
_DEFAULT_NAME = "k8s-logging-events"


def is_dns_subdomain(value: str) -> bool:
    """Tell whether ``value`` is a DNS-1123 subdomain, the rule for object names.

    At most 253 characters of lowercase letters, digits, ``-`` and ``.``; each dot-separated
    label starts and ends with a letter or digit.
    """
    return len(value) <= DNS_SUBDOMAIN_MAX_LENGTH and _DNS_SUBDOMAIN.fullmatch(value) is not None


def is_qualified_name(value: str) -> bool:
    """Tell whether ``value`` is a qualified name: ``[dns-subdomain/]name``.

    The name is at most 63 letters, digits, ``-``, ``_`` and ``.``, starting and ending
    alphanumeric; the optional prefix is a DNS subdomain (``a..b`` is not one).
    """
    prefix, slash, name = value.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return False
    return len(name) <= QUALIFIED_NAME_MAX_LENGTH and _QUALIFIED_NAME.fullmatch(name) is not None


def is_annotation_key(key: str) -> bool:
    """The server's rule for annotation keys: a qualified name, checked in lower case."""
    return key.count("/") <= 1 and is_qualified_name(key.lower())


def qualified_name(component: str) -> str:
    """Turn a component name into a qualified name (``reportingController`` must be one).

    Characters a name cannot hold become ``-``; the prefix is made a DNS subdomain (empty
    labels, as in ``a..b``, are dropped) or left out when nothing of it remains; an empty
    name becomes ``k8s-logging-events``.
    """
    if is_qualified_name(component):
        return component
    prefix, _, name = component.rpartition("/")
    name = _NAME_CHARS.sub("-", name)[:QUALIFIED_NAME_MAX_LENGTH].strip("-_.") or _DEFAULT_NAME
    prefix = _subdomain_of(prefix, DNS_SUBDOMAIN_MAX_LENGTH)
    return f"{prefix}/{name}" if is_dns_subdomain(prefix) else name


def _subdomain_of(text: str, limit: int) -> str:
    """``text`` made a DNS subdomain of at most ``limit`` characters ("" if nothing remains).

    Lower-cased; every run of characters a subdomain cannot hold becomes ``-``; empty labels
    (``a..b``) and the ``-`` at the ends of labels go; cut to ``limit``, never ending in ``-``
    or ``.``.
    """
    cleaned = _PREFIX_CHARS.sub("-", text.lower())
    labels = (label.strip("-") for label in cleaned.split("."))
    return ".".join(label for label in labels if label)[:limit].rstrip("-.")


def is_event(kind: str, api_version: str) -> bool:
    """True for an Event object: events about events multiply, and are refused."""
    return kind == "Event" and api_version in EVENT_API_VERSIONS


def safe_text(text: str) -> str:
    """Replace what UTF-8 or a C string cannot carry (NUL, lone surrogates) with U+FFFD."""
    return _UNSAFE_TEXT.sub("\ufffd", text) if _UNSAFE_TEXT.search(text) else text


def replace_surrogates(text: str) -> str:
    """Replace lone surrogates with U+FFFD, as Go's JSON encoder does with invalid UTF-8."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def has_unsafe_text(text: str) -> bool:
    """True when :func:`safe_text` would change ``text``."""
    return _UNSAFE_TEXT.search(text) is not None


def cut_bytes(text: str, limit: int, mark: str = "") -> str:
    """Cut ``text`` to ``limit`` UTF-8 bytes at a character boundary, ending in ``mark``.

    ``mark`` counts towards the limit and is added only when something was cut.
    """
    # a character is at most 4 bytes: only text this long can be over the limit
    if len(text) * 4 <= limit:
        return text
    data = text[: limit + 1].encode("utf-8", "replace")
    if len(data) <= limit and len(text) <= limit:
        return text
    return data[: limit - len(mark.encode())].decode("utf-8", "ignore") + mark


def camel_case(text: str) -> str:
    """Join the words of ``text`` in UpperCamelCase and cut it to :data:`REASON_MAX_BYTES`."""
    if _REASON_BREAKS.search(text) is not None:
        text = "".join(word[:1].upper() + word[1:] for word in _REASON_BREAKS.split(text))
    return cut_bytes(text, REASON_MAX_BYTES)


# -- event names -------------------------------------------------------------------------

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

_MAX_PREFIX = DNS_SUBDOMAIN_MAX_LENGTH - 1 - HASH_HEX_DIGITS
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
    name = f"{ref_name}.{unix_nanos:x}"
    return name if is_dns_subdomain(name) else str(uuid.uuid4())


def readable_prefix(ref_name: str) -> str:
    """The start of a deterministic name: the object's name, made a valid DNS subdomain.

    A valid name short enough is kept as it is. Otherwise it is lower-cased, every run of
    characters a name cannot hold becomes ``-``, empty labels and the ``-`` at the ends of
    labels go, and it is cut to fit; :data:`FALLBACK_PREFIX` when nothing remains (an empty
    name, or one of symbols only). The hash after it tells events apart, not the prefix.
    """
    if len(ref_name) <= _MAX_PREFIX and is_dns_subdomain(ref_name):
        return ref_name
    prefix = _subdomain_of(ref_name, _MAX_PREFIX)
    return prefix if is_dns_subdomain(prefix) else FALLBACK_PREFIX


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
        jitter = random.randrange(1, 1000)  # not a secret
        return generate_event_name(ref_name, unix_nanos(time) + jitter)

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
