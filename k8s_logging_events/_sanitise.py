"""The one sanitiser: every rule the API server applies to an Event, in one place.

This sits beside the pipeline and below it: the handler repairs a record's fields with it
on the caller's thread, the recorder refuses what cannot be an event, the correlator names
events with it and events.k8s.io/v1 series make their fields fit. The local API server in
:mod:`k8s_logging_events.testing` validates on its own, independently of this module, so
that a bug here cannot pass unnoticed.

Each function says what the server would do with a value that breaks the rule, and what
is done instead: names that cannot be names become UUIDs, text is cut at a character
boundary to its byte limit, NUL and lone surrogates (which no UTF-8 can carry) become
U+FFFD, reasons become one UpperCamelCase word.
"""

from __future__ import annotations

import re
import uuid

__all__ = [
    "ACTION_MAX_BYTES",
    "ANNOTATIONS_MAX_BYTES",
    "DNS_SUBDOMAIN_MAX_LENGTH",
    "EVENT_API_VERSIONS",
    "MESSAGE_MAX_BYTES",
    "QUALIFIED_NAME_MAX_LENGTH",
    "REASON_MAX_BYTES",
    "TRUNCATION_MARK",
    "camel_case",
    "cut_bytes",
    "event_name",
    "has_unsafe_text",
    "is_annotation_key",
    "is_dns_subdomain",
    "is_event",
    "is_qualified_name",
    "qualified_name",
    "replace_surrogates",
    "safe_text",
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
_DOTS = re.compile(r"\.{2,}")
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
    prefix = _DOTS.sub(".", _PREFIX_CHARS.sub("-", prefix.lower()))
    labels = [label.strip("-") for label in prefix.split(".")]
    prefix = ".".join(label for label in labels if label)[:DNS_SUBDOMAIN_MAX_LENGTH].strip("-.")
    return f"{prefix}/{name}" if prefix and is_dns_subdomain(prefix) else name


def event_name(ref_name: str, unix_nanos: int) -> str:
    """Name an event after its object and time, as client-go does; a UUID when that is invalid.

    ``"<ref_name>.<unix_nanos in lowercase hex>"`` (a negative time gets a leading ``-``, as
    Go's ``%x`` writes it), or a random UUID when that is not a DNS subdomain (an upper-case,
    over-long, ``web/0`` or ``50%`` object name, for instance).
    """
    name = f"{ref_name}.{unix_nanos:x}"
    return name if is_dns_subdomain(name) else str(uuid.uuid4())


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
