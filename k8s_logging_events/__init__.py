"""Turn Python logging calls into Kubernetes Events, counted and aggregated like client-go.

The front door is :class:`KubernetesEventHandler` (a :class:`logging.Handler`); underneath are
the pieces of client-go's ``tools/record``: :class:`EventRecorder`, :class:`EventBroadcaster`,
:class:`EventCorrelator` and an :class:`EventSink`. Every public name is importable from here,
its module imported when the name is first asked for.
"""

import importlib
import logging
from typing import TYPE_CHECKING

# done at import as ever: the fork and exit hooks (registered after logging's atexit function,
# so that ours run before logging.shutdown()) and the library's logger, which a dictConfig
# made after the import disables unless told not to (docs/configuration.md)
from k8s_logging_events import _process  # noqa: F401

logging.getLogger(__name__)

# This is the one module that imports names rather than modules: it is the public face.
if TYPE_CHECKING:
    from k8s_logging_events.broadcaster import (
        ADDED,
        DELETED,
        ERROR,
        MODIFIED,
        Broadcaster,
        BroadcasterStopped,
        FullChannelBehavior,
        Watcher,
        WatchEvent,
    )
    from k8s_logging_events.clock import Clock, Sleeper, SystemClock
    from k8s_logging_events.correlator import (
        CorrelateResult,
        CorrelatorOptions,
        EventCorrelator,
        aggregate_by_reason,
        combined_message,
        count_patch,
        generate_event_name,
        get_event_key,
        get_spam_key,
        spam_key_per_reason,
        validate_event_type,
    )
    from k8s_logging_events.describe import format_events
    from k8s_logging_events.handler import EventLoggerAdapter, KubernetesEventHandler
    from k8s_logging_events.models import (
        NORMAL,
        WARNING,
        Event,
        EventSeries,
        EventSource,
        ObjectReference,
        object_reference,
    )
    from k8s_logging_events.recorder import EventBroadcaster, EventRecorder
    from k8s_logging_events.references import InvalidObjectError
    from k8s_logging_events.sink import (
        ApiStatusError,
        EventSink,
        KubernetesEventSink,
        RequestConstructionError,
    )

    __version__: str

__all__ = [
    "ADDED",
    "DELETED",
    "ERROR",
    "MODIFIED",
    "NORMAL",
    "WARNING",
    "ApiStatusError",
    "Broadcaster",
    "BroadcasterStopped",
    "Clock",
    "CorrelateResult",
    "CorrelatorOptions",
    "Event",
    "EventBroadcaster",
    "EventCorrelator",
    "EventLoggerAdapter",
    "EventRecorder",
    "EventSeries",
    "EventSink",
    "EventSource",
    "FullChannelBehavior",
    "InvalidObjectError",
    "KubernetesEventHandler",
    "KubernetesEventSink",
    "ObjectReference",
    "RequestConstructionError",
    "Sleeper",
    "SystemClock",
    "WatchEvent",
    "Watcher",
    "__version__",
    "aggregate_by_reason",
    "combined_message",
    "count_patch",
    "format_events",
    "generate_event_name",
    "get_event_key",
    "get_spam_key",
    "object_reference",
    "spam_key_per_reason",
    "validate_event_type",
]


# each public name's module, imported on first use: the pytest plugin lives in this package,
# so every pytest session of a project that installs the library imports it, most of them
# never making a handler (docs/performance.md, "Import time")
_HOMES = {
    "broadcaster": "ADDED DELETED ERROR MODIFIED Broadcaster BroadcasterStopped "
    "FullChannelBehavior Watcher WatchEvent",
    "clock": "Clock Sleeper SystemClock",
    "correlator": "CorrelateResult CorrelatorOptions EventCorrelator aggregate_by_reason "
    "combined_message count_patch generate_event_name get_event_key get_spam_key "
    "spam_key_per_reason validate_event_type",
    "describe": "format_events",
    "handler": "EventLoggerAdapter KubernetesEventHandler",
    "models": "NORMAL WARNING Event EventSeries EventSource ObjectReference object_reference",
    "recorder": "EventBroadcaster EventRecorder",
    "references": "InvalidObjectError",
    "series": "",  # public, none of its names re-exported
    "sink": "ApiStatusError EventSink KubernetesEventSink RequestConstructionError",
}
_HOME = {name: module for module, names in _HOMES.items() for name in names.split()}


# hidden from type checkers, which see the imports above: given a module __getattr__, they
# would take any other name (a misspelt one) as an object instead of reporting it
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name == "__version__":  # it lives in the package metadata only
            from importlib.metadata import version

            return version("k8s-logging-events")
        if name in _HOMES:  # a public module, an attribute of the package once imported
            return importlib.import_module(f"{__name__}.{name}")
        if name not in _HOME:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module = importlib.import_module(f"{__name__}.{_HOME[name]}")
        globals()[name] = found = getattr(module, name)  # asked once
        return found


def __dir__() -> list[str]:
    # the names not imported yet are public too: dir(), a REPL's completion and help() list them
    return sorted(globals().keys() | set(__all__))
