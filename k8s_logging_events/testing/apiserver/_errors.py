"""Status bodies and field errors of :class:`~k8s_logging_events.testing.LocalApiServer`.

This is the error vocabulary of the local API server on the test side of the pipeline: every
answer it gives that is not a success goes through one of the constructors here, which copy
the shape, reason and message of the apimachinery ``errors`` package (``NewNotFound``,
``NewInvalid`` ...) and of ``field.Error``, so that the sink under test sees exactly what a
real kube-apiserver would send it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from k8s_logging_events.testing.apiserver._gofmt import go_quote, go_value

CONFLICT_MESSAGE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


class _Omit:
    """Marks a field error whose bad value is not printed (``field.OmitValue``)."""

    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()
"""Sentinel bad value: print only the error type, as Go does for ``field.Required``."""


class ApiError(Exception):
    """An error answer: the HTTP code and the ``metav1.Status`` body to send with it.

    Args:
        status: the Status body (a JSON-ready dict).
        headers: extra response headers (``Retry-After`` ...).
    """

    def __init__(self, status: dict[str, Any], headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(status.get("message", ""))
        self.status = status
        self.code: int = int(status.get("code", 500))
        self.headers = tuple(headers)


def status_body(
    code: int,
    reason: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a failure ``metav1.Status`` in the field order the API server writes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
    }
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def _details(
    name: str = "",
    group: str = "",
    kind: str = "",
    causes: list[dict[str, str]] | None = None,
    retry_after: int = 0,
) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    if causes:
        details["causes"] = causes
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return details


def qualified(resource: str, group: str) -> str:
    """Return ``GroupResource.String()``: ``events`` or ``events.events.k8s.io``."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    """404 ``NotFound``: ``events "e1" not found``."""
    message = f"{qualified(resource, group)} {go_quote(name)} not found"
    return ApiError(status_body(404, "NotFound", message, _details(name, group, resource)))


def not_found_path() -> ApiError:
    """404 for a path the server does not serve at all."""
    message = "the server could not find the requested resource"
    return ApiError(status_body(404, "NotFound", message, {}))


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    """409 ``AlreadyExists``: ``events "e1" already exists``."""
    message = f"{qualified(resource, group)} {go_quote(name)} already exists"
    return ApiError(status_body(409, "AlreadyExists", message, _details(name, group, resource)))


def generate_name_conflict(resource: str, name: str, group: str = "") -> ApiError:
    """409 ``AlreadyExists`` when every generated name collided (``NewGenerateNameConflict``)."""
    message = (
        f"{qualified(resource, group)} {go_quote(name)} already exists, "
        "the server was not able to generate a unique name for the object"
    )
    details = _details(name, group, resource, retry_after=1)
    return ApiError(status_body(409, "AlreadyExists", message, details))


def conflict(resource: str, name: str, group: str = "", reason: str = CONFLICT_MESSAGE) -> ApiError:
    """409 ``Conflict``: ``Operation cannot be fulfilled on events "e1": ...``."""
    message = (
        f"Operation cannot be fulfilled on {qualified(resource, group)} {go_quote(name)}: {reason}"
    )
    return ApiError(status_body(409, "Conflict", message, _details(name, group, resource)))


def forbidden(
    resource: str,
    name: str,
    why: str,
    group: str = "",
    causes: list[dict[str, str]] | None = None,
) -> ApiError:
    """403 ``Forbidden``: ``events "e1" is forbidden: <why>``."""
    target = qualified(resource, group)
    message = (
        f"{target} {go_quote(name)} is forbidden: {why}"
        if name
        else f"{target} is forbidden: {why}"
    )
    return ApiError(status_body(403, "Forbidden", message, _details(name, group, resource, causes)))


def bad_request(message: str) -> ApiError:
    """400 ``BadRequest`` without details."""
    return ApiError(status_body(400, "BadRequest", message))


def namespace_mismatch() -> ApiError:
    """400 when the body names another namespace than the URL."""
    return bad_request(
        "the namespace of the provided object does not match the namespace sent on the request"
    )


def name_mismatch(object_name: str, url_name: str) -> ApiError:
    """400 when the body names another object than the URL (PUT, PATCH)."""
    return bad_request(
        f"the name of the object ({object_name}) does not match the name on the URL ({url_name})"
    )


def unknown_error(message: str, code: int = 500) -> ApiError:
    """A Status without a reason: what the server sends for errors it did not classify."""
    return ApiError(status_body(code, "", message))


def unsupported_media_type(accepted: Iterable[str]) -> ApiError:
    """415 ``UnsupportedMediaType`` for a PATCH in a content type the server does not take."""
    message = (
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted)
    )
    return ApiError(status_body(415, "UnsupportedMediaType", message))


@dataclass(frozen=True, slots=True)
class FieldError:
    """One ``field.Error``: a cause of an ``Invalid`` Status.

    Args:
        type: the cause type (``FieldValueRequired``, ``FieldValueInvalid`` ...).
        field: the field path (``involvedObject.namespace``).
        bad_value: the offending value, or :data:`OMIT` to print none.
        detail: the explanation that follows the value.
    """

    type: str
    field: str
    bad_value: Any = OMIT
    detail: str = ""

    _TYPE_TEXT: ClassVar[dict[str, str]] = {
        "FieldValueRequired": "Required value",
        "FieldValueInvalid": "Invalid value",
        "FieldValueNotSupported": "Unsupported value",
        "FieldValueForbidden": "Forbidden",
        "FieldValueTooLong": "Too long",
        "FieldValueDuplicate": "Duplicate value",
        "FieldValueNotFound": "Not found",
        "InternalError": "Internal error",
    }

    @classmethod
    def required(cls, field: str, detail: str = "") -> FieldError:
        """``field.Required``: the value is missing."""
        return cls("FieldValueRequired", field, OMIT, detail)

    @classmethod
    def invalid(cls, field: str, value: Any, detail: str) -> FieldError:
        """``field.Invalid``: the value is wrong, and ``detail`` says why."""
        return cls("FieldValueInvalid", field, value, detail)

    def body(self) -> str:
        """Return ``ErrorBody()``: the message of the cause, without the field path."""
        text = self._TYPE_TEXT.get(self.type, self.type)
        if self.type not in ("FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong") and (
            self.bad_value is not OMIT
        ):
            text = f"{text}: {go_value(self.bad_value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, str]:
        """Return the ``StatusCause`` for this error."""
        return {"reason": self.type, "message": self.body(), "field": self.field}


def invalid(kind: str, name: str, errors: Sequence[FieldError], group: str = "") -> ApiError:
    """422 ``Invalid``: ``Event "e1" is invalid: [a, b]`` with one cause per error."""
    kind_text = f"{kind}.{group}" if group else kind
    messages: list[str] = []
    for error in errors:
        text = str(error)
        if text not in messages:
            messages.append(text)
    if not messages:
        message = f"{kind_text} {go_quote(name)} is invalid"
    elif len(messages) == 1:
        message = f"{kind_text} {go_quote(name)} is invalid: {messages[0]}"
    else:
        message = f"{kind_text} {go_quote(name)} is invalid: [{', '.join(messages)}]"
    details = _details(name, group, kind)
    details["causes"] = [error.cause() for error in errors]
    return ApiError(status_body(422, "Invalid", message, details))


_REASONS = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "the server has asked for the client to provide credentials"),
    403: ("Forbidden", "forbidden (injected by LocalApiServer)"),
    404: ("NotFound", "the server could not find the requested resource"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    406: (
        "NotAcceptable",
        "the server was unable to respond with a content type that the client supports",
    ),
    409: ("Conflict", "the server reported a conflict"),
    410: ("Expired", "the resource version is too old (injected by LocalApiServer)"),
    413: ("RequestEntityTooLarge", "Request entity too large: (injected by LocalApiServer)"),
    415: ("UnsupportedMediaType", "the body of the request was in an unknown format"),
    422: ("Invalid", "the server rejected our request due to an error in our request"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", ""),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", ""),
}


def fault_status(code: int, message: str | None, retry_after: float | None) -> ApiError:
    """Return the Status an injected fault answers with, shaped like the real one for ``code``.

    429 becomes ``TooManyRequests`` with ``details.retryAfterSeconds`` and a ``Retry-After``
    header (1 second unless ``retry_after`` says otherwise), 500 ``InternalError`` with a cause,
    503 ``ServiceUnavailable``, 504 ``Timeout``; other codes get the reason the apimachinery
    client would infer for them.
    """
    seconds = 0
    if retry_after is not None:
        seconds = max(0, math.ceil(retry_after))
    elif code == 429:
        seconds = 1
    headers: list[tuple[str, str]] = []
    if code == 429 or retry_after is not None:
        headers.append(("Retry-After", str(seconds)))
    reason, default = _REASONS.get(code, ("InternalError" if code >= 500 else "", ""))
    if code == 500:
        cause = message or "injected fault"
        body = status_body(
            500, reason, f"Internal error occurred: {cause}", {"causes": [{"message": cause}]}
        )
        if seconds:
            body["details"]["retryAfterSeconds"] = seconds
    elif code == 504:
        text = message or "request did not complete within the allotted timeout (injected fault)"
        body = status_body(504, reason, f"Timeout: {text}", _details(retry_after=seconds))
    else:
        text = message or default or f"injected fault with status {code}"
        details = _details(retry_after=seconds) if (seconds or code == 429) else None
        body = status_body(code, reason, text, details)
    return ApiError(body, headers)
