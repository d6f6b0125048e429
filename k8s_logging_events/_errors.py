"""The library's errors, which of them are retried and when, and what each means to a human.

At the bottom of the pipeline beside the diagnostics: the sink's transports raise these
errors (``k8s_logging_events.sink`` exposes them by their public names), the pending writes
ask :class:`RetrySchedule` when to try again (a 429 spends no try: see
docs/correlation.md), :func:`explain` says what a failure means and what to do, and
:func:`unwritten_summary` what a flush or an exit could not write, and why.
"""

from __future__ import annotations

import collections
import errno
import json
import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import tenacity

from k8s_logging_events import _process

_T = TypeVar("_T")

MAX_WAIT_SECONDS = 86_400.0
"""The longest wait the writer schedules (a day): a ``Retry-After: 1e10`` or a spam filter
that never refills must not overflow the timers; the write is looked at again after it."""

THROTTLE_BASE_SECONDS = 1.0
"""The first wait after a 429 without ``Retry-After`` (or with a zero one); each further one
doubles it."""

CONTENTION_BASE_SECONDS = 0.1
"""The longest first wait after an attempt lost every round to other writers; each further
one doubles it (never beyond ``sleep_duration``), each scaled by [0, 1): workers that flush
one event at one instant (an exit) spread out within the exit's ``flush_timeout``."""

THROTTLED_WARNING_AFTER = 4
"""The 429 in a row at which a throttled write is reported as a WARNING (once per row)."""

THROTTLE_MAX_SECONDS = 30.0
"""The longest wait after a 429 without ``Retry-After`` (before jitter takes up to half off):
long enough for a bucket shared by a fleet to refill, short enough that an exit's flush
still gets its turn."""


RBAC_EXAMPLE = "examples/rbac.yaml"
"""The least RBAC for the sink, in the project's repository (docs/in-cluster.md shows it)."""

_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "GET": "get", "DELETE": "delete"}
_RESOURCE_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?"
    r"/(?P<resource>[^/]+)"
)
_DISCOVERY_PATH = re.compile(r"^/(?:api(?:/[^/]+)?|apis(?:/[^/]+){0,2})/?$")


class ApiStatusError(Exception):
    """The API server answered a write with a Status error.

    Args:
        status: the HTTP status code.
        reason: the Kubernetes reason (``AlreadyExists``, ``NotFound``, ``Invalid`` ...),
            not the HTTP reason phrase.
        message: the Status message.
        causes: the cause types from ``details.causes`` (``NamespaceTerminating`` ...).
        retry_after: seconds to wait (``Retry-After`` or ``details.retryAfterSeconds``), if
            the server said.
        name: the object the Status is about (``details.name``), if it said.
        method, path: the request's HTTP method and URL path, if the sink knows them.
    """

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        *,
        causes: Sequence[str] = (),
        retry_after: float | None = None,
        name: str = "",
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(status, reason, message)
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = tuple(causes)
        self.retry_after = retry_after
        self.name = name

    def __str__(self) -> str:
        # status 0: no HTTP answer (a TLS failure, as the official client reports it)
        text = f"{self.status or ''} {self.reason}".strip()
        return f"{text}: {self.message}" if self.message else text

    @property
    def is_not_found(self) -> bool:
        """True for a 404: the event expired on the server (or never existed)."""
        return self.status == 404

    @property
    def is_already_exists(self) -> bool:
        """True for a 409 whose reason is ``AlreadyExists`` (not a resourceVersion conflict)."""
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def is_namespace_terminating(self) -> bool:
        """True when the namespace is being deleted and refuses new content."""
        return "NamespaceTerminating" in self.causes

    @property
    def is_retryable(self) -> bool:
        """True for throttling (429) and server-side trouble (5xx), but for etcd's refusal of
        an object over its request limit (1.5 MiB by default; over 2 MiB, its client's refusal
        in gRPC's words): the server passes it on as an unclassified 500, with or without its
        gRPC code, and the same event meets it again on every try."""
        if self.status >= 500:
            message = self.message.lower()
            return "request is too large" not in message and "larger than max" not in message
        return self.status == 429


class RequestConstructionError(Exception):
    """The request could not be built (invalid data or a bug); retrying cannot help."""


def is_retryable(error: BaseException) -> bool:
    """Return True when a write that failed with ``error`` is worth another try."""
    if isinstance(error, ApiStatusError):
        return error.is_retryable
    return not isinstance(error, RequestConstructionError)


class ContentionError(Exception):
    """Other writers changed the event in every round of one attempt: the occurrences were
    not written; retried soon, on a short jittered wait that grows (it spends a try), so
    that writers spread out."""


class NotSentError(ConnectionAbortedError):
    """A request the sink did not send (closed, its write given up, or a flush's deadline
    before its rate limit's token): tried again as unsent, never as maybe landed."""


class Tries(Protocol):
    """What a retry decision counts on a write (``_pending.Write``)."""

    attempts: int
    """Tries spent: failures other than 429s."""
    throttled: int
    """429s in a row: they spend no try, but the wait after each grows."""


class RetrySchedule:
    """When a failed write is tried again (tenacity's retry, stop and wait strategies).

    Errors :func:`is_retryable` accepts are retried until ``max_tries`` tries are spent (a
    429 spends none). The wait is the server's ``Retry-After`` (exactly after a 429, at least
    after other failures); else ``sleep_duration`` scaled by ``rng()`` in [0, 1) the first
    time and whole after, and after a 429 one doubling from :data:`THROTTLE_BASE_SECONDS` to
    :data:`THROTTLE_MAX_SECONDS`, scaled by [0.5, 1); after a :class:`ContentionError` one
    doubling from :data:`CONTENTION_BASE_SECONDS` up to ``sleep_duration``, scaled by [0, 1);
    never beyond :data:`MAX_WAIT_SECONDS`.
    """

    def __init__(self, max_tries: int, sleep_duration: float, rng: Callable[[], float]) -> None:
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_retryable),
            stop=tenacity.stop_after_attempt(max(1, max_tries)),
        )
        self._throttled = tenacity.wait_exponential(
            multiplier=THROTTLE_BASE_SECONDS, max=THROTTLE_MAX_SECONDS
        )
        self._contended = tenacity.wait_exponential(
            multiplier=CONTENTION_BASE_SECONDS, max=max(0.0, sleep_duration)
        )
        self._sleep_duration = sleep_duration
        self._rng = rng

    def after_failure(self, tries: Tries, error: Exception) -> float | None:
        """Count ``error`` on ``tries`` (a 429 one more in a row; any other error a try, and
        the row ends); return seconds until the next try, None to give up."""
        throttled = is_throttled(error)
        if throttled:
            tries.throttled += 1
        else:
            tries.throttled = 0
            tries.attempts += 1
        state = tenacity.RetryCallState(self._retrying, None, (), {})
        state.attempt_number = tries.throttled if throttled else tries.attempts
        state.set_exception((type(error), error, error.__traceback__))
        # a 429 spends no try: the stop never counts one
        if not self._retrying.retry(state) or (not throttled and self._retrying.stop(state)):
            return None
        wait = asked(error)
        if throttled:
            # a Retry-After of zero (or less, or NaN) is taken as none: 429s that spend no try
            # and wait nothing would retry in a hot loop for as long as the server throttles
            seconds = wait or self._throttled(state) * (0.5 + 0.5 * self._rng())
        elif isinstance(error, ContentionError):
            # no fault of the server: a writer of the same event won the round
            seconds = self._contended(state) * self._rng()
        else:
            # jittered the first time: clients started together must not retry in lockstep
            first = self._rng() if state.attempt_number == 1 else 1.0
            seconds = max(self._sleep_duration * first, wait)
        return float(finite(seconds))


def asked(error: BaseException) -> float:
    """Seconds the server asked a retry after ``error`` to wait (``Retry-After``); 0 when it
    asked none (or zero, less, or NaN)."""
    wait = error.retry_after if isinstance(error, ApiStatusError) else None
    return 0.0 if wait is None else float(finite(wait))  # a sink may give an int


def is_throttled(error: BaseException | None) -> bool:
    """True for a 429: the server asks for fewer requests; the write is not at fault."""
    return isinstance(error, ApiStatusError) and error.status == 429


def finite(seconds: float) -> float:
    """A wait that arithmetic and timers can hold: never NaN, never beyond a day."""
    return min(seconds, MAX_WAIT_SECONDS) if seconds >= 0 else 0.0  # NaN too


def is_timeout(error: Exception) -> bool:
    """True for a request that got no answer in time (the server or its webhooks hang)."""
    if isinstance(error, TimeoutError):
        return True
    return "timed out" in str(error).lower() or "timeout" in type(error).__name__.lower()


def may_have_landed(error: Exception) -> bool:
    """Tell whether a write that failed with ``error`` may have been stored all the same:
    after a lost answer or a 5xx (which can come after the store), not after a 4xx (unless
    a broken connection, its cause, lost the answer to the first send), a
    :class:`ContentionError` or a connection not made (refused, a name that does not
    resolve, the connect timeout), when nothing was sent."""
    if isinstance(error, ApiStatusError):
        return error.status >= 500 or isinstance(error.__cause__, ConnectionError)
    return not isinstance(error, ContentionError | RequestConstructionError) and not _unsent(error)


def _unsent(error: BaseException | None) -> bool:
    # no connection made (or raised from that): taking AlreadyExists for our own create then
    # would take another worker's event of the same name for ours
    exceptions = sys.modules.get("urllib3.exceptions")  # its ConnectTimeoutError: refused too
    unsent = (
        NotSentError,
        ConnectionRefusedError,
        socket.gaierror,
        getattr(exceptions, "ConnectTimeoutError", ()),
    )
    while error is not None:
        if isinstance(error, unsent) or (
            isinstance(error, TimeoutError) and "(connect timeout=" in str(error)  # the channel's
        ):
            return True
        error = error.__cause__
    return False


def cause(error: Exception) -> str:
    """What kind of failure ``error`` is, for counting reports: its class and status."""
    return f"{type(error).__name__}:{getattr(error, 'status', '')}"


def explain(error: Exception, sink: object = None) -> str:
    """The error described, then what it means and what to do, for the errors a user can fix:
    a 401 names the credentials sent (never their value), a 403 what is not allowed and the
    Role of :data:`RBAC_EXAMPLE`, a 404 of an API not served the api option, a TLS failure
    and an unreachable server their host, a proxy that failed the proxy settings."""
    text = describe_error(error)
    status = getattr(error, "status", None)
    if status == 401:
        sent = optional(sink, "credentials", str, "") or "unknown credentials"
        return (
            f"{text} (the API server did not accept the credentials sent: {sent}; check "
            "that they are meant for this server and not expired)"
        )
    # a namespace being deleted refuses everyone: no Role would help
    if status == 403 and not getattr(error, "is_namespace_terminating", False):
        return f"{text} ({_forbidden(error)})"
    host = optional(sink, "host", str, "")
    at = f" at {host}" if host else ""
    # a 404 naming no object (no event, no namespace) is the server's for a path it lacks
    written = _RESOURCE_PATH.match(str(getattr(error, "path", "")))
    missing = status == 404 and not getattr(error, "name", "") and written is not None
    if missing and written is not None and written["group"]:
        return (
            f"{text} (the API server does not serve events.k8s.io/v1, the Events API the "
            "api option chose: set api: auto, which writes core/v1 there, or api: v1)"
        )
    # every API server serves core/v1, redirects no request (a login page's proxy does) and
    # answers in JSON (a web application's page is not JSON from its first byte, past the
    # blank lines a template often puts before it)
    cause = error.__cause__
    page = isinstance(cause, json.JSONDecodeError) and not cause.doc[: cause.pos].strip()
    if missing or page or (isinstance(status, int) and 300 <= status < 400):
        return (
            f"{text} (the server{at} is not a Kubernetes API server, or not at this path: "
            "check that the URL, the sink's or the kubeconfig's server, is the API server's, "
            "with the path of any proxy in front of it)"
        )
    if status == 0 and str(getattr(error, "reason", "")).startswith("SSLError"):
        return (
            f"{text} (TLS with the API server{at} failed: check "
            "the CA the client trusts (a kubeconfig's certificate-authority or "
            "certificate-authority-data; in a pod, the service account's ca.crt), the name "
            "it checks (the server's, or tls-server-name) and the client certificate)"
        )
    if _through_proxy(error):
        return (
            f"{text} (the proxy the client goes through to the API server{at} failed: check "
            "the proxy and the settings that choose it, HTTPS_PROXY and NO_PROXY, or a "
            "kubeconfig's proxy-url)"
        )
    if unreachable(error):
        return f"{text} (the API server{at} is unreachable)"
    return text


def _through_proxy(error: BaseException) -> bool:
    """True for a proxy that could not be reached or would not carry the request (urllib3's
    ``ProxyError``): the API server itself may be fine."""
    exceptions = sys.modules.get("urllib3.exceptions")  # not imported: nothing it raised
    return exceptions is not None and isinstance(error, exceptions.ProxyError)


def _forbidden(error: Any) -> str:
    verb = _VERBS.get(str(getattr(error, "method", "")).upper(), "")
    path = str(getattr(error, "path", ""))
    match = _RESOURCE_PATH.match(path)
    if verb == "get" and _DISCOVERY_PATH.match(path):  # api "auto" asking what is served
        return (
            f"the client's credentials may not get {path}, the server's list of what it "
            "serves: the system:discovery ClusterRole grants it to every authenticated user"
        )
    if not verb or match is None:
        return (
            "the client's credentials may not do this: grant create, patch and get on events "
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


# -- what a failure means to a human, and what a flush or an exit left unwritten --------


def optional(owner: object, name: str, convert: Callable[[Any], _T], default: _T) -> _T:
    """``convert(owner.name)`` of an attribute ``owner`` need not have (a sink's ``host``,
    ``credentials``), else ``default``, also when reading or converting it raises: a report
    about a failure must not fail, nor kill the writer thread that makes it."""
    try:
        return convert(getattr(owner, name, default) or default)
    except Exception:
        return default


def readable(error: BaseException) -> Exception:
    """``error``, or, when its text cannot be read (its ``__str__`` or ``__repr__`` raises)
    or it is no Exception (a sink's SystemExit), a RuntimeError caused by it that names it:
    the retry decision and every report read an error's text, and must not raise on a
    writer thread."""
    try:
        str(error)
        text = repr(error)
    except Exception:
        text = f"{type(error).__name__} (its text cannot be read)"
    else:
        if isinstance(error, Exception):
            return error
    stand_in = RuntimeError(text)
    stand_in.__cause__ = error
    return stand_in


class NoCredentialsError(RuntimeError):
    """The kubeconfig's user gave no token yet (an exec plugin failed): the write is retried,
    and the credentials loaded again first. Its text is the library's, read whole."""


def describe_error(error: Exception) -> str:
    """A short text for ``error``: its message, cut to 300 characters (a server's or a
    client's may be a page long), but for :class:`NoCredentialsError`, whose install hint,
    a URL at its end, was cut to nothing of use."""
    text = str(error) or type(error).__name__
    fits = len(text) <= 300 or isinstance(error, NoCredentialsError)
    return text if fits else text[:297] + "..."


STALL_SECONDS = 1.0
"""A request in flight this long is stalled: it no longer counts against ``writers``, its
namespace gets no second request until it ends, and a deadline calls it unanswered."""


class _Write(Tries, Protocol):
    """What a summary reads of a ``_pending.Write``."""

    occurrences: int
    last_error: Exception | None
    started: float | None
    writer: int | None

    @property
    def in_flight(self) -> bool: ...


def unwritten_summary(
    writes: Sequence[_Write],
    sinks: Iterable[object],
    *,
    when: str,
    queued: int = 0,
    preparing: int = 0,
    now: float | None = None,
    cut_short: bool = False,
) -> str:
    """Say how many occurrences were not written by ``when``, why, and which option helps.
    ``writes``: pending or given-up writes; ``queued``: occurrences not yet correlated;
    ``preparing``: those kept aside while their sink is set up; ``now``:
    ``time.monotonic()`` (the clock of ``started``) by default; ``cut_short``: a Ctrl-C or an
    exit ended the wait, which no more ``flush_timeout`` would have helped."""
    now = time.monotonic() if now is None else now

    def more(joined: str) -> str:  # the advice that more time helps, not after a Ctrl-C
        return "" if cut_short else f"{joined} flush_timeout"

    occurrences = sum(write.occurrences for write in writes) + queued + preparing
    rate_limited = sum(optional(s, "waiting_for_rate_limit", int, 0) for s in sinks)
    plugins = _process.awaiting_credentials()  # the threads a credential plugin holds
    waiting = unanswered = in_plugins = retrying = 0
    errors: collections.Counter[str] = collections.Counter()
    for write in writes:
        if write.in_flight and write.writer in plugins:  # not sent yet, however young
            in_plugins += write.occurrences
        elif write.in_flight and rate_limited > 0:
            rate_limited -= 1
            waiting += write.occurrences
        elif write.in_flight and now - (write.started or now) < STALL_SECONDS:
            waiting += write.occurrences  # sent just before: no sign of a hanging server
        elif write.in_flight:
            unanswered += write.occurrences
        elif write.attempts or write.throttled:
            retrying += write.occurrences
            errors[_why(write.last_error)] += write.occurrences
        else:
            waiting += write.occurrences
    parts = []
    if unanswered:
        parts.append(
            f"{unanswered} in requests the API server had not answered "
            f"(a hanging server or admission webhook; see request_timeout{more(' and')})"
        )
    if in_plugins:
        parts.append(
            f"{in_plugins} waiting for the Kubernetes client's set-up or credentials (importing "
            "and building the client, and any exec plugin or auth provider its kubeconfig runs, "
            f"have no timeout{more(': see')})"
        )
    if waiting and (unanswered or in_plugins):
        parts.append(f"{waiting} queued behind those requests (raise writers{more(' or')})")
    elif waiting:
        advice = "drain_qps or writers" if cut_short else "drain_qps, writers or flush_timeout"
        parts.append(
            f"{waiting} waiting for the client-side rate limit or a free writer (raise {advice})"
        )
    if retrying:
        causes = ", ".join(f"{n} after {why}" for why, n in sorted(errors.items()))
        parts.append(f"{retrying} waiting to retry ({causes}{more('; see')})")
    if preparing:
        parts.append(
            f"{preparing} waiting for their sink to be set up (its client built, the server "
            f"asked which Events API it serves{more('; see')})"
        )
    if queued:
        parts.append(
            f"{queued} not yet handed to a writer{'' if cut_short else ' (see flush_timeout)'}"
        )
    return f"Unable to write {occurrences} event occurrence(s) {when}: {'; '.join(parts)}"


def unreachable(error: BaseException, _depth: int = 0) -> bool:
    """True when the API server could not be reached at all: a connection refused, reset or
    not made within the connect timeout, no route or no network to its host, a name that does
    not resolve; never an answer, even one cut short or not HTTP, nor a connection closed
    without one. The socket's own errors say it (they carry an ``errno``, which the
    transports' errors of their making lack), on the channel as they are, on the official
    client's path inside urllib3's."""
    if getattr(error, "status", None) is not None or _through_proxy(error):
        return False
    if isinstance(error, socket.gaierror):
        return True
    if isinstance(error, OSError) and error.errno is not None:
        return isinstance(error, ConnectionError) or error.errno in (
            errno.ENETUNREACH,
            errno.EHOSTUNREACH,
        )
    inner = [e for e in error.args if isinstance(e, BaseException)] if _depth < 3 else []
    if any(unreachable(e, _depth + 1) for e in inner):  # bounded: an error may hold itself
        return True  # urllib3's ProtocolError("Connection aborted.", ConnectionResetError(...))
    text = str(error).lower()  # the official client's urllib3 errors carry the cause as text
    return any(cause in text for cause in _UNREACHABLE_TEXTS)


_UNREACHABLE_TEXTS = (
    "refused",
    "connect timeout",  # urllib3's and the channel's: dropped packets (a firewall, a NetworkPolicy)
    "name or service not known",
    "temporary failure in name resolution",
    "no route to host",
    "network is unreachable",
)


def _why(error: Exception | None) -> str:
    if error is None:
        return "an error"
    status = getattr(error, "status", None)
    if status == 429:
        return "429 Too Many Requests (the API server throttles)"
    if isinstance(status, int):
        return f"{status} {getattr(error, 'reason', '')}".strip()
    if unreachable(error):
        return "connection errors (the API server is unreachable)"
    if _through_proxy(error):
        return "proxy errors (the proxy to the API server failed)"
    if "timed out" in str(error).lower() or isinstance(error, TimeoutError):
        return "timeouts"
    if isinstance(error, NoCredentialsError):
        return "no credentials (the kubeconfig's exec plugin gave no token)"
    return type(error).__name__
