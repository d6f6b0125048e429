"""Test doubles and a local Kubernetes Events API server, for this library's tests and yours.

Nothing here is needed in production. ``FakeClock`` drives time by hand, ``FakeRecorder``
keeps what it was asked to record as strings, ``FakeEventSink`` stores events in memory with
create/patch semantics and scripted failures, and ``LocalApiServer`` serves the Events API
(with the Namespaces and Pods events live in and are about) over real HTTP(S) on 127.0.0.1
for the official ``kubernetes`` client and ``kubectl``, with watches; ``wait_for_event``
waits, through a watch, until an event is on a server. ``capture_events`` (and the pytest
plugin's fixtures) put these together for a test.
"""

import importlib
from typing import TYPE_CHECKING

from k8s_logging_events.testing._clock import FakeClock
from k8s_logging_events.testing._wait import events_table, wait_for_event

if TYPE_CHECKING:
    from k8s_logging_events.testing._capture import CapturedEvents, capture_events
    from k8s_logging_events.testing._fakes import FakeEventSink, FakeRecorder, SinkCall
    from k8s_logging_events.testing.apiserver import (
        ClientCertificate,
        Fault,
        LocalApiServer,
        RecordedRequest,
    )

__all__ = [
    "CapturedEvents",
    "ClientCertificate",
    "FakeClock",
    "FakeEventSink",
    "FakeRecorder",
    "Fault",
    "LocalApiServer",
    "RecordedRequest",
    "SinkCall",
    "capture_events",
    "events_table",
    "wait_for_event",
]

# imported when first asked for: the pytest plugin lives in this package, and every pytest
# session of a project that installs the library loads it, most without using the server
_LAZY = {
    "CapturedEvents": "_capture",
    "capture_events": "_capture",
    "FakeEventSink": "_fakes",
    "FakeRecorder": "_fakes",
    "SinkCall": "_fakes",
    "ClientCertificate": "apiserver",
    "Fault": "apiserver",
    "LocalApiServer": "apiserver",
    "RecordedRequest": "apiserver",
}


# hidden from type checkers, which see the imports above: given a module __getattr__, they
# would take any other name (a misspelt one) as an object instead of reporting it
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


def __dir__() -> list[str]:
    # the lazy names are public too: dir(), a REPL's completion and help() list them
    return sorted(globals().keys() | _LAZY.keys())
