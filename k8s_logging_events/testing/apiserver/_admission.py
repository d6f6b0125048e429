"""The ``EventRateLimit`` admission plugin of the local API server.

Part of the local API server on the test side of the pipeline, called by the store
(:class:`~._store.Store`) at the point of a write where the real API server runs its
validating admission plugins: after the strategy's validation (an invalid event is a 422 and
costs nothing) and before storage (a create that then meets ``409 AlreadyExists`` was
charged). It follows ``plugin/pkg/admission/eventratelimit`` of kubernetes/kubernetes:

* the configuration is the plugin's own (``{"limits": [{"type": "Namespace", "qps": 50,
  "burst": 100, "cacheSize": 2000}]}``), checked as its validation checks it;
* only creates and updates of the core ``Event`` kind are limited: the plugin compares the
  request's group and kind with core's ``Event``, so writes through events.k8s.io/v1 (whose
  kind is ``events.k8s.io/Event``) pass untouched, and so do dry-run requests;
* each limit is a token bucket per key (``Server``: one; ``Namespace``: the request's
  namespace; ``User``: the authenticated user's name; ``SourceAndObject``: the event's
  source component and host and its involved object's kind, namespace, name, uid and
  apiVersion, run together), kept in an LRU of ``cacheSize`` keys (4096 by default), so that
  an evicted key comes back with a full bucket;
* every limit is charged for every request, even when another limit refuses it, and a
  refusal is ``429 TooManyRequests`` with ``Too many requests: limit reached on type T for
  key K`` (several refusals as ``[a, b]``), with no ``retryAfterSeconds`` and so no
  ``Retry-After`` header.

Buckets refill on the server's clock, measured on its monotonic reading
(:func:`k8s_logging_events.clock.monotonic_source`), so a ``FakeClock`` drives them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from k8s_logging_events.testing.apiserver._errors import ApiError, status_body
from k8s_logging_events.testing.apiserver._gofmt import go_value

ANONYMOUS = "system:anonymous"
"""The user name of a request the server takes without credentials."""

DEFAULT_CACHE_SIZE = 4096
"""The LRU size of a limit whose ``cacheSize`` is 0 or absent."""

LIMIT_TYPES = ("Namespace", "Server", "SourceAndObject", "User")
"""The limit types the plugin knows (sorted, as its error message lists them)."""

_INT32 = (-(2**31), 2**31 - 1)
_LIMIT_FIELDS = ("type", "qps", "burst", "cacheSize")
_NANOSECOND = 1e-9


@dataclass(frozen=True, slots=True)
class Limit:
    """One entry of ``limits``: a limit type and its rate."""

    type: str
    qps: int
    burst: int
    cache_size: int
    """0 means :data:`DEFAULT_CACHE_SIZE`; unused for ``Server``."""


@dataclass(frozen=True, slots=True)
class WriteAttributes:
    """What the plugin reads from one write (``admission.Attributes``)."""

    group: str
    """The API group of the request's kind: "" for core/v1, ``events.k8s.io`` for v1."""
    namespace: str
    """The namespace in the request's URL."""
    user: str
    """The authenticated user's name."""
    event: Mapping[str, Any]
    """The event as it would be stored (canonical core/v1 form, after a patch applied)."""
    dry_run: bool


# -- configuration ------------------------------------------------------------------------


def parse_configuration(config: Mapping[str, Any]) -> list[Limit]:
    """Read and check the plugin's configuration; return its limits.

    ``apiVersion`` and ``kind`` are accepted and ignored. The checks are the plugin's
    (``ValidateConfiguration``): at least one limit, a known type, ``qps`` and ``burst``
    positive, ``cacheSize`` not negative (but for ``Server``). The numbers are the plugin's
    ``int32`` fields, so they must be whole. Unknown fields are refused (the real decoder
    drops them silently, which hides a misspelt ``QPS`` until the limit never applies).

    Raises:
        ValueError: the configuration is not one the plugin would accept; the message lists
            every problem, as the plugin's aggregate error does.
    """
    if not isinstance(config, Mapping):
        raise ValueError(
            "invalid EventRateLimit configuration: expected a mapping like "
            '{"limits": [{"type": "Namespace", "qps": 50, "burst": 100}]}, '
            f"got {type(config).__name__}"
        )
    unknown = [key for key in config if key not in ("apiVersion", "kind", "limits")]
    if unknown:
        raise ValueError(
            f"invalid EventRateLimit configuration: unknown field {unknown[0]!r} "
            "(the fields are apiVersion, kind and limits)"
        )
    raw_limits = config.get("limits")
    if raw_limits is not None and not isinstance(raw_limits, list | tuple):
        raise ValueError(
            "invalid EventRateLimit configuration: limits must be a list, "
            f"got {type(raw_limits).__name__}"
        )
    problems: list[str] = []
    if not raw_limits:
        shown = "null" if raw_limits is None else "[]"
        problems.append(f"limits: Invalid value: {shown}: must not be empty")
    limits = [_parse_limit(index, raw, problems) for index, raw in enumerate(raw_limits or ())]
    if problems:
        unique = list(dict.fromkeys(problems))
        text = unique[0] if len(unique) == 1 else f"[{', '.join(unique)}]"
        raise ValueError(f"invalid EventRateLimit configuration: {text}")
    return limits


def _parse_limit(index: int, raw: Any, problems: list[str]) -> Limit:
    path = f"limits[{index}]"
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"invalid EventRateLimit configuration: {path} must be a mapping with type, qps "
            f"and burst, got {type(raw).__name__}"
        )
    for key in raw:
        if key not in _LIMIT_FIELDS:
            raise ValueError(
                f"invalid EventRateLimit configuration: {path}: unknown field {key!r} "
                "(the fields are type, qps, burst and cacheSize)"
            )
    kind = raw.get("type", "")
    if not isinstance(kind, str):
        raise ValueError(
            f"invalid EventRateLimit configuration: {path}.type must be a string, got {kind!r}"
        )
    qps, burst, cache_size = (
        _int32(f"{path}.{key}", raw.get(key, 0)) for key in ("qps", "burst", "cacheSize")
    )
    if kind not in LIMIT_TYPES:
        supported = ", ".join(f'"{name}"' for name in LIMIT_TYPES)
        problems.append(
            f"{path}.type: Unsupported value: {go_value(kind)}: supported values: {supported}"
        )
    if burst <= 0:
        problems.append(f"{path}.burst: Invalid value: {burst}: must be positive")
    if qps <= 0:
        problems.append(f"{path}.qps: Invalid value: {qps}: must be positive")
    if kind != "Server" and cache_size < 0:
        problems.append(f"{path}.cacheSize: Invalid value: {cache_size}: must not be negative")
    return Limit(kind, qps, burst, cache_size)


def _int32(path: str, value: Any) -> int:
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise ValueError(
            f"invalid EventRateLimit configuration: {path} must be a whole number "
            f"(the plugin's field is an int32), got {value!r}"
        )
    number = int(value)
    if not _INT32[0] <= number <= _INT32[1]:
        raise ValueError(
            f"invalid EventRateLimit configuration: {path} is out of the int32 range: {number}"
        )
    return number


# -- enforcement --------------------------------------------------------------------------


class _Bucket:
    """A token bucket as ``golang.org/x/time/rate`` keeps it: full at first, refilled at
    ``qps`` per second up to ``burst``; a refused take costs nothing."""

    __slots__ = ("_last", "_tokens")

    def __init__(self, burst: int, now: float) -> None:
        self._tokens = float(burst)
        self._last = now

    def try_accept(self, qps: int, burst: int, now: float) -> bool:
        elapsed = max(0.0, now - self._last)  # a clock that went back refills nothing
        tokens = min(float(burst), self._tokens + elapsed * qps) - 1.0
        if tokens < 0 and -tokens / qps >= _NANOSECOND:
            return False
        self._tokens = tokens
        self._last = now
        return True


def _source_and_object_key(event: Mapping[str, Any]) -> str:
    source = event.get("source") or {}
    involved = event.get("involvedObject") or {}
    parts = (
        source.get("component", ""),
        source.get("host", ""),
        *(involved.get(key, "") for key in ("kind", "namespace", "name", "uid", "apiVersion")),
    )
    return "".join(str(part or "") for part in parts)


_KEYS: dict[str, Callable[[WriteAttributes], str]] = {
    "Server": lambda _attributes: "",
    "Namespace": lambda attributes: attributes.namespace,
    "User": lambda attributes: attributes.user,
    "SourceAndObject": lambda attributes: _source_and_object_key(attributes.event),
}


class _Enforcer:
    """One limit: a bucket per key, the keys in an LRU (one bucket for ``Server``)."""

    def __init__(self, limit: Limit) -> None:
        self._limit = limit
        self._key = _KEYS[limit.type]
        self._size = 1 if limit.type == "Server" else limit.cache_size or DEFAULT_CACHE_SIZE
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def accept(self, attributes: WriteAttributes, now: float) -> str | None:
        """Charge the request's key; return the refusal's text, or None when accepted."""
        limit = self._limit
        key = self._key(attributes)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit.burst, now)
            if len(self._buckets) > self._size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.try_accept(limit.qps, limit.burst, now):
            return None
        return f"limit reached on type {limit.type} for key {key}"


class EventRateLimit:
    """The plugin: its limits, and the check of one write against all of them.

    Args:
        config: the plugin's configuration (see :func:`parse_configuration`).
        monotonic: the clock buckets refill on, in seconds.

    Raises:
        ValueError: the configuration is invalid.
    """

    def __init__(self, config: Mapping[str, Any], monotonic: Callable[[], float]) -> None:
        self.limits = parse_configuration(config)
        self._enforcers = [_Enforcer(limit) for limit in self.limits]
        self._monotonic = monotonic
        self._lock = threading.Lock()

    def validate(self, attributes: WriteAttributes) -> None:
        """Admit one create or update, or raise the plugin's 429.

        Raises:
            ApiError: 429 ``TooManyRequests`` when a limit refused the write.
        """
        if attributes.group or attributes.dry_run:
            return
        with self._lock:
            now = self._monotonic()
            refusals = [enforcer.accept(attributes, now) for enforcer in self._enforcers]
        messages = list(dict.fromkeys(text for text in refusals if text is not None))
        if not messages:
            return
        text = messages[0] if len(messages) == 1 else f"[{', '.join(messages)}]"
        raise ApiError(status_body(429, "TooManyRequests", f"Too many requests: {text}"))
