"""What a failed write means to a human: the words of every write failure the library reports.

Beside the writer (:mod:`k8s_logging_events._writer`), which decides what to do about a
failure, this says it: :func:`explain` turns an error into a line that names the cause and
what to do (a 401 says which credentials were sent, a 403 which permission is missing and
where the Role is, a refused connection which server is unreachable), and
:func:`unwritten_summary` says, at a flush that ran out of time or at exit, how many
occurrences were not written, why, and which option would help.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

__all__ = ["RBAC_EXAMPLE", "cause", "describe_error", "explain", "unwritten_summary"]

RBAC_EXAMPLE = "examples/rbac.yaml"
"""The least RBAC for the sink, in the project's repository (docs/in-cluster.md shows it)."""

_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "GET": "get", "DELETE": "delete"}
_RESOURCE_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?"
    r"/(?P<resource>[^/]+)"
)


class _Write(Protocol):
    """What a summary reads of a pending write (``_writer.Write``)."""

    occurrences: int
    attempts: int
    throttled: int
    last_error: Exception | None

    @property
    def in_flight(self) -> bool: ...


def cause(error: Exception) -> str:
    """What kind of failure ``error`` is, for counting reports: its class and status."""
    return f"{type(error).__name__}:{getattr(error, 'status', '')}"


def describe_error(error: Exception) -> str:
    """A short text for ``error``: its message, cut to 300 characters."""
    text = str(error) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def explain(error: Exception, sink: object = None) -> str:
    """:func:`describe_error`, then what it means and what to do, for the errors a user can fix.

    A 401 says which credentials were sent (their kind and source, never their value); a
    403 names the verb, resource and namespace that are not allowed and points to the Role
    of :data:`RBAC_EXAMPLE`; an unreachable server is named.
    """
    text = describe_error(error)
    status = getattr(error, "status", None)
    if status == 401:
        sent = str(getattr(sink, "credentials", "") or "unknown credentials")
        return (
            f"{text} (the API server did not accept the credentials sent: {sent}; check "
            "that they are meant for this server and not expired)"
        )
    if status == 403:
        return f"{text} ({_forbidden(error)})"
    if _unreachable(error):
        host = str(getattr(sink, "host", "") or "")
        return f"{text} (the API server{f' at {host}' if host else ''} is unreachable)"
    return text


def _forbidden(error: Any) -> str:
    verb = _VERBS.get(str(getattr(error, "method", "")).upper(), "")
    match = _RESOURCE_PATH.match(str(getattr(error, "path", "")))
    if not verb or match is None:
        return (
            "the client's credentials may not do this: grant create and patch on events "
            f"with a Role and a RoleBinding like those of {RBAC_EXAMPLE}"
        )
    group = match["group"] or ""
    resource = match["resource"] + (f".{group}" if group else "")
    where = f" in namespace {match['namespace']}" if match["namespace"] else ""
    api_group = f'"{group}"' if group else '"" (core)'
    return (
        f"the client's credentials may not {verb} {resource}{where}: grant the verb "
        f"{verb} on {match['resource']} in the API group {api_group}{where} with a Role "
        f"and a RoleBinding, as the Role in {RBAC_EXAMPLE} does"
    )


def _unreachable(error: Exception) -> bool:
    if getattr(error, "status", None) is not None:
        return False
    text = str(error).lower()
    return isinstance(error, ConnectionError) or "refused" in text or "name or service" in text


def unwritten_summary(
    writes: Sequence[_Write], sinks: Iterable[object], *, when: str, queued: int = 0
) -> str:
    """Say how many occurrences were not written by ``when``, why, and which option helps.

    ``writes`` are the pending (or given up) writes; ``queued`` the occurrences not yet
    correlated.
    """
    occurrences = sum(write.occurrences for write in writes) + queued
    rate_limited = sum(int(getattr(s, "waiting_for_rate_limit", 0) or 0) for s in sinks)
    waiting = unanswered = retrying = 0
    errors: dict[str, int] = {}
    for write in writes:
        if write.in_flight and rate_limited > 0:
            rate_limited -= 1
            waiting += write.occurrences
        elif write.in_flight:
            unanswered += write.occurrences
        elif write.attempts or write.throttled:
            retrying += write.occurrences
            why = _why(write.last_error)
            errors[why] = errors.get(why, 0) + write.occurrences
        else:
            waiting += write.occurrences
    parts = []
    if waiting and unanswered:
        parts.append(f"{waiting} queued behind those requests (raise writers or flush_timeout)")
    elif waiting:
        parts.append(
            f"{waiting} waiting for the client-side rate limit or a free writer "
            "(raise drain_qps, writers or flush_timeout)"
        )
    if unanswered:
        parts.insert(
            0,
            f"{unanswered} in requests the API server had not answered "
            "(a hanging server or admission webhook; see request_timeout and flush_timeout)",
        )
    if retrying:
        causes = ", ".join(f"{n} after {why}" for why, n in sorted(errors.items()))
        parts.append(f"{retrying} waiting to retry ({causes}; see flush_timeout)")
    if queued:
        parts.append(f"{queued} not yet handed to a writer (see flush_timeout)")
    return f"Unable to write {occurrences} event occurrence(s) {when}: {'; '.join(parts)}"


def _why(error: Exception | None) -> str:
    if error is None:
        return "an error"
    status = getattr(error, "status", None)
    if status == 429:
        return "429 Too Many Requests (the API server throttles)"
    if isinstance(status, int):
        return f"{status} {getattr(error, 'reason', '')}".strip()
    if isinstance(error, ConnectionError) or "refused" in str(error).lower():
        return "connection errors (the API server is unreachable)"
    if "timed out" in str(error).lower() or isinstance(error, TimeoutError):
        return "timeouts"
    return type(error).__name__
