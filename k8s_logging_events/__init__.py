"""Turn Python logging calls into Kubernetes Events, counted and aggregated like client-go.

The front door is :class:`KubernetesEventHandler` (a :class:`logging.Handler`); underneath are
the pieces of client-go's ``tools/record``: :class:`EventRecorder`, :class:`EventBroadcaster`,
:class:`EventCorrelator` and an :class:`EventSink`. Every public name is importable from here.
"""

# This is the one module that imports names rather than modules: it is the public face.
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


def __getattr__(name: str) -> str:
    # the version lives in the package metadata only
    if name == "__version__":
        from importlib.metadata import version

        return version("k8s-logging-events")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
