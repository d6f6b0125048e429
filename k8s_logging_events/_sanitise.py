"""The one sanitiser: every rule the API server applies to an Event, and how events are named.

Beside the pipeline (docs/architecture.md): the handler repairs a record's fields with it on
the caller's thread, the recorder refuses what cannot be an event, the correlator and series
name events through one :class:`EventNamer` per broadcaster (docs/correlation.md#names). The
local API server in :mod:`k8s_logging_events.testing` validates independently of this module.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime

from k8s_logging_events import _process, models

# the API server's limits (_BYTES in UTF-8, _LENGTH in characters)
MESSAGE_MAX_BYTES = 1024  # events.k8s.io/v1 note (core/v1 message once eventTime is set)
REASON_MAX_BYTES = 128  # reason in events.k8s.io/v1, and core/v1 with eventTime
ACTION_MAX_BYTES = 128  # action, and reportingInstance
ANNOTATIONS_MAX_BYTES = 256 * 1024  # all of an object's annotations, keys and values
_DNS_SUBDOMAIN_MAX_LENGTH = 253  # an object name
_QUALIFIED_NAME_MAX_LENGTH = 63  # the name part of [prefix/]name
ANNOTATION_KEY_MAX_LENGTH = _DNS_SUBDOMAIN_MAX_LENGTH + 1 + _QUALIFIED_NAME_MAX_LENGTH

TRUNCATION_MARK = " ..."  # what ends a text that was cut to its limit
# the apiVersions under which kind: Event is an Event (none given counts too)
EVENT_API_VERSIONS = frozenset({"", "v1", "events.k8s.io/v1", "events.k8s.io/v1beta1"})

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_REASON_BREAKS = re.compile("[\\s\x00-\x1f\x7f\ud800-\udfff]+")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_PREFIX_CHARS = re.compile(r"[^a-z0-9.-]+")
_DEFAULT_NAME = "k8s-logging-events"
# what camel_case reads of a text: a reason keeps 128 bytes, so only blanks this long between
# its words could make a longer text matter
_CAMEL_CASE_SCAN = 4096


def is_dns_subdomain(value: str) -> bool:
    """Tell whether ``value`` is a DNS-1123 subdomain (an object name): at most 253 characters
    of lowercase letters, digits, ``-`` and ``.``, each label alphanumeric at both ends."""
    return len(value) <= _DNS_SUBDOMAIN_MAX_LENGTH and _DNS_SUBDOMAIN.fullmatch(value) is not None


def is_qualified_name(value: str) -> bool:
    """Tell whether ``value`` is ``[dns-subdomain/]name``, the name at most 63 letters, digits,
    ``-``, ``_`` and ``.``, alphanumeric at both ends."""
    prefix, slash, name = value.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return False
    return len(name) <= _QUALIFIED_NAME_MAX_LENGTH and _QUALIFIED_NAME.fullmatch(name) is not None


def is_annotation_key(key: str) -> bool:
    """The server's rule for annotation keys: a qualified name, checked in lower case."""
    return (
        len(key) <= ANNOTATION_KEY_MAX_LENGTH  # first: a 10 MB key is not lowered whole
        and key.count("/") <= 1
        and is_qualified_name(key.lower())
    )


def annotations_problem(annotations: object) -> str | None:
    """Why the API server would refuse ``annotations`` (None: it would take them)."""
    if not isinstance(annotations, Mapping):  # a str's letters would pass as keys
        return f"annotations must be a mapping, not a {type(annotations).__name__}"
    keys = [key for key in annotations if not isinstance(key, str) or not is_annotation_key(key)]
    if keys:
        return f"annotation keys the API server refuses: {keys!r}"
    keys = [key for key, value in annotations.items() if not isinstance(value, str)]
    if keys:
        return f"annotation values that are no str: {keys!r}"
    size = annotations_bytes(annotations)
    if size > ANNOTATIONS_MAX_BYTES:
        return f"annotations of {size} bytes, over 256 KiB"
    return None


def annotations_bytes(annotations: Mapping[str, str]) -> int:
    """What ``annotations`` count against :data:`ANNOTATIONS_MAX_BYTES`."""
    # keys are ASCII; a lone surrogate is stored as U+FFFD, three bytes as surrogatepass has it
    return sum(
        len(key) + len(value.encode("utf-8", "surrogatepass")) for key, value in annotations.items()
    )


def qualified_name(component: str) -> str:
    """Turn a component name into a qualified name (``reportingController`` must be one):
    other characters become ``-``, the prefix a DNS subdomain or nothing, an empty name
    ``k8s-logging-events``."""
    if is_qualified_name(component):
        return component
    prefix, _, name = component.rpartition("/")
    name = _NAME_CHARS.sub("-", name)[:_QUALIFIED_NAME_MAX_LENGTH].strip("-_.") or _DEFAULT_NAME
    prefix = _subdomain_of(prefix, _DNS_SUBDOMAIN_MAX_LENGTH)
    return f"{prefix}/{name}" if is_dns_subdomain(prefix) else name


def _subdomain_of(text: str, limit: int) -> str:
    """``text`` lower-cased, other characters ``-``, cut to ``limit`` ("" when none remain)."""
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
    """Cut ``text`` to ``limit`` UTF-8 bytes at a character boundary; ``mark`` (counted in the
    limit) ends it when something was cut."""
    # a character is at most 4 bytes: only text this long can be over the limit
    if len(text) * 4 <= limit:
        return text
    data = text[: limit + 1].encode("utf-8", "replace")
    if len(data) <= limit and len(text) <= limit:
        return text
    return data[: limit - len(mark.encode())].decode("utf-8", "ignore") + mark


def camel_case(text: str) -> str:
    """Join the words of ``text`` in UpperCamelCase and cut it to :data:`REASON_MAX_BYTES`
    (read from its first 4,096 characters: a 10 MB text is not split whole)."""
    text = text[:_CAMEL_CASE_SCAN]
    if _REASON_BREAKS.search(text) is not None:
        text = "".join(word[:1].upper() + word[1:] for word in _REASON_BREAKS.split(text))
    return cut_bytes(text, REASON_MAX_BYTES)


# -- event names -------------------------------------------------------------------------

DETERMINISTIC = "deterministic"
"""Names from a hash of the correlation key: the handler's default."""

TIMESTAMP = "timestamp"
"""client-go's ``<object name>.<hex Unix nanoseconds>``: the client-go ports' default."""

_EVENT_NAMES = (DETERMINISTIC, TIMESTAMP)

NAME_SCHEME = "k8s-logging-events/event-name/1"
"""The version tag that starts every hash input; another scheme gets another tag."""

HASH_HEX_DIGITS = 16
"""Hex digits of the hash in a name: 64 bits, as many digits as client-go's time."""

FALLBACK_PREFIX = "event"
"""The prefix of a deterministic name when nothing of the object's name can be used."""

_MAX_PREFIX = _DNS_SUBDOMAIN_MAX_LENGTH - 1 - HASH_HEX_DIGITS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_event_names(value: object, option: str = "event_names") -> str:
    """Return ``value`` when it is ``"deterministic"`` or ``"timestamp"``; else ValueError."""
    if not isinstance(value, str) or value not in _EVENT_NAMES:
        allowed = " or ".join(map(repr, _EVENT_NAMES))
        raise ValueError(f"{option} must be {allowed}, not {value!r}")
    return value


def unix_nanos(value: datetime) -> int:
    """Return ``value`` as whole nanoseconds since the Unix epoch, exactly (Go's ``UnixNano``)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def generate_event_name(ref_name: str, unix_nanos: int) -> str:
    """Return client-go's name of an event about ``ref_name`` at ``unix_nanos`` (nanoseconds
    since the Unix epoch): ``"<ref_name>.<unix_nanos in lowercase hex>"`` (``-`` before a
    negative time, as Go's ``%x``), or a random UUID when that is no DNS-1123 subdomain."""
    name = f"{ref_name}.{unix_nanos:x}"
    return name if is_dns_subdomain(name) else str(uuid.uuid4())


def _reference_parts(ref: models.ObjectReference) -> tuple[str, ...]:
    # never the resourceVersion: events about successive versions of an object are one event
    return (ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version, ref.field_path)


class EventNamer(_process.Locked):
    """Names new events, by time as client-go does or deterministically; one per broadcaster
    (docs/correlation.md#names). ``"timestamp"``: client-go's names, but a time no later than
    the last name given for the object gets one nanosecond more (Python clocks tick in
    microseconds, a test clock may not move), so its create meets no ``AlreadyExists``.
    ``"deterministic"``: ``<readable prefix>.<64-bit hash>`` of the event's key, remembered for
    recent keys. ``size``: objects (or keys) remembered; least recently named go first."""

    def __init__(self, size: int = 4096, *, event_names: str = TIMESTAMP) -> None:
        super().__init__()
        self.event_names = check_event_names(event_names)
        self._size = max(1, size)
        # least recently named first; ordered dicts: a plain dict's first key, once others
        # before it were deleted, is found past every deleted slot (2 us a name when full)
        self._last: OrderedDict[str, int] = OrderedDict()
        self._hashed: OrderedDict[tuple[str, ...], str] = OrderedDict()

    @property
    def deterministic(self) -> bool:
        """True when names follow from the events themselves."""
        return self.event_names == DETERMINISTIC

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
                last_names.popitem(last=False)
        return generate_event_name(ref_name, nanos)

    def fresh(self, ref_name: str, time: datetime) -> str:
        """A time name no other process is likely to hold: a random number of nanoseconds
        added, where another process's name from a Python clock ends in ``000``."""
        jitter = random.randrange(1, 1000)  # not a secret
        return generate_event_name(ref_name, unix_nanos(time) + jitter)

    def event_name(
        self,
        source: models.EventSource,
        ref: models.ObjectReference,
        type: str,
        reason: str,
        message: str,
        time: datetime,
    ) -> str:
        """Name a new core/v1 event: from client-go's event key without the resourceVersion
        (deterministic), else from ``time``."""
        if not self.deterministic:
            return self.name(ref.name, time)
        parts = ("event", source.component, source.host, *_reference_parts(ref))
        return self._hashed_name(ref.name, (*parts, type, reason, message))

    def combined_name(self, event: models.Event, aggregate_key: str, time: datetime) -> str:
        """Name a "(combined from similar events)" event of ``aggregate_key``'s group
        (deterministic: its hash, with a marker that keeps it apart from plain events)."""
        if not self.deterministic:
            return self.name(event.involved_object.name, time)
        return self._hashed_name(event.involved_object.name, ("combined", aggregate_key))

    def series_name(self, event: models.Event) -> str:
        """Name an events.k8s.io/v1 event after its series key: client-go's isomorphic key
        without the resourceVersion (timestamp names: the event keeps its name)."""
        if not self.deterministic:
            return event.name
        ref, related = event.involved_object, event.related
        parts: tuple[str, ...] = ("series", event.type, event.action, event.reason)
        parts += (event.reporting_controller, event.reporting_instance, *_reference_parts(ref))
        if related is not None:
            parts += ("related", *_reference_parts(related), related.resource_version)
        return self._hashed_name(ref.name, parts)

    def renamed(self, event: models.Event, attempt: int, time: datetime) -> str:
        """A new name for ``event`` whose name another event holds (``attempt`` from 1): a hash
        of its name and ``attempt``, which a restarted process finds again, or :meth:`fresh`."""
        if not self.deterministic:
            return self.fresh(event.involved_object.name, time)
        return self._hashed_name(event.involved_object.name, ("renamed", event.name, str(attempt)))

    def _hashed_name(self, ref_name: str, parts: tuple[str, ...]) -> str:
        hashed = self._hashed
        name = hashed.get(parts)
        if name is not None:
            return name
        data = json.dumps((NAME_SCHEME, *parts), separators=(",", ":"))  # ASCII: escapes all else
        digest = hashlib.sha256(data.encode("ascii")).hexdigest()[:HASH_HEX_DIGITS]
        prefix = ref_name  # the object's name as a short enough subdomain, or FALLBACK_PREFIX
        if len(ref_name) > _MAX_PREFIX or not is_dns_subdomain(ref_name):
            prefix = _subdomain_of(ref_name, _MAX_PREFIX)
            prefix = prefix if is_dns_subdomain(prefix) else FALLBACK_PREFIX
        name = f"{prefix}.{digest}"
        with self._lock:
            hashed[parts] = name
            if len(hashed) > self._size:
                hashed.popitem(last=False)
        return name
