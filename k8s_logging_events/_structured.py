"""How the watchers at the end of the pipeline log an event: client-go's ``StartLogging`` line,
or an ``Event occurred`` record with the event's fields as extras (by default one JSON line
to standard error through python-json-logger).
"""

from __future__ import annotations

import json
import logging
import sys

from k8s_logging_events import _diagnostics, models


def log_line(event: models.Event) -> str:
    """One line per event, in client-go's ``StartLogging`` format."""
    ref = event.involved_object
    rendered = (
        f"v1.ObjectReference{{Kind:{_go_quote(ref.kind)}, Namespace:{_go_quote(ref.namespace)}, "
        f"Name:{_go_quote(ref.name)}, UID:{_go_quote(ref.uid)}, "
        f"APIVersion:{_go_quote(ref.api_version)}, "
        f"ResourceVersion:{_go_quote(ref.resource_version)}, "
        f"FieldPath:{_go_quote(ref.field_path)}}}"
    )
    return f"Event({rendered}): type: '{event.type}' reason: '{event.reason}' {event.message}"


def _go_quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def log_structured(target: logging.Logger, level: int, event: models.Event) -> None:
    """Log ``Event occurred`` with the event's fields as extras, never taking logging's lock."""
    ref = event.involved_object
    _diagnostics.log_safely(
        target,
        level,
        "Event occurred",
        object=f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name,
        fieldPath=ref.field_path,
        kind=ref.kind,
        apiVersion=ref.api_version,
        type=event.type,
        reason=event.reason,
        event_message=event.message,
    )


def json_event_logger() -> logging.Logger:
    """A private logger that writes each record as one JSON line to standard error."""
    # imported here, when the watcher is built, not by every import of the library
    from pythonjsonlogger.json import JsonFormatter

    # outside the logging tree: starting a watcher must not change the application's logging
    private = logging.Logger("k8s_logging_events.events", logging.DEBUG)  # noqa: LOG001
    handler = logging.StreamHandler(sys.stderr)
    renames = {"message": "msg", "event_message": "message"}
    handler.setFormatter(JsonFormatter("%(message)s", rename_fields=renames))
    private.addHandler(handler)
    private.propagate = False
    return private
