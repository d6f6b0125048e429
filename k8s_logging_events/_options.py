"""The handler's options: checked once, at the front door, into one frozen :class:`Options`.

A mistake in a ``dictConfig`` file surfaces when it is applied, naming the option and what is
allowed, never as a stalled thread later; the broadcaster gets :class:`BroadcasterOptions`
whole. Each option is described in ``docs/configuration.md``, and in code on the fields below.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from k8s_logging_events import (
    _apis,
    _continuation,
    _diagnostics,
    _kubeconfig,
    _pod,
    _records,
    _sanitise,
    models,
)
from k8s_logging_events import clock as clock_mod
from k8s_logging_events import correlator as correlators
from k8s_logging_events import sink as sinks
from k8s_logging_events._numbers import RATE, number, seconds, timeout, whole

MIN_MESSAGE_BYTES = 16  # room for a word and the truncation mark
MAX_MESSAGE_BYTES = 1024 * 1024
"""The longest ``max_message_bytes``: the rest of an event (annotations up to 256 KiB) still
fits under etcd's default request limit of 1.5 MiB, over which no write of it is stored."""

COMPONENT_ENV = "K8S_LOGGING_EVENTS_COMPONENT"
"""The environment variable that sets the default ``component`` (the ``From`` column)."""

CORRELATOR_KEYS = (
    *(name for name in correlators.CorrelatorOptions.__dataclass_fields__ if name != "event_names"),
    "spam_key",
)
"""The keys of the ``correlator`` option: CorrelatorOptions' fields, and the spam key's name."""

SinkOption = sinks.EventSink | str | Mapping[str, Any] | None
"""What ``sink=`` accepts: ``"auto"``, ``None``, a URL, an EventSink, or a ``"()"`` dict."""

Sink = sinks.EventSink | str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcasterOptions:
    """What one ``EventBroadcaster`` and its threads need, from the handler or its own keywords."""

    queue_length: int
    """Occurrences the queue holds, and events with a write pending per sink; beyond: dropped."""
    writers: int
    """Requests in flight at once (writer threads exist only while there is work)."""
    max_tries: int
    """Attempts per write before it is given up (a 429 spends none)."""
    sleep_duration: float
    """Seconds between write attempts; the first back-off is randomised below this."""
    correlator: correlators.CorrelatorOptions | None
    """The options every sink's correlator gets; None: client-go's."""
    event_names: str
    """``"deterministic"`` (continued after a restart) or client-go's ``"timestamp"``."""
    clock: clock_mod.Clock | None
    """The time of timestamps, correlation and back-offs (tests: FakeClock); None: the system's."""
    sleep: clock_mod.Sleeper | None
    """How back-offs and the rate limit wait (tests: ``clock.sleep``); None: interruptibly."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """The checked options of one handler (all but ``level`` and ``broadcaster``)."""

    component: str
    """Who reports the events (``From``), a qualified name; by default :func:`default_component`."""
    host: str
    """Where it runs (``source.host``, ``reportingInstance``); by default :func:`default_host`."""
    sink: Sink
    """Where events go: ``"auto"``, None, a URL or an EventSink (see docs/configuration.md)."""
    namespace: str
    """The namespace of events about cluster-scoped objects: only ``default`` is allowed."""
    default_reason: str
    """The reason of a record without a ``reason`` extra (one CamelCase word)."""
    max_message_bytes: int
    """The longest message in UTF-8 bytes (at least 16); longer ones are cut and marked."""
    qps: float
    """The sustained request rate of the sink's client-side rate limit (0: off)."""
    burst: int
    """Requests the sink may send at once after a quiet spell."""
    drain_qps: float
    """The request rate while ``flush()`` or ``close()`` drains (0: no limit)."""
    request_timeout: float | tuple[float, float] | None
    """Seconds to connect and to read (one number or a pair); None: the sink's default."""
    flush_timeout: float
    """Seconds ``flush()`` and ``close()`` may wait together; ``drain()``'s, a child's at exit."""
    structured_logging: bool | str
    """Also log every event as a JSON line to standard error (True), or on that logger."""
    exception_detail: str
    """What an event says of the record's exception: summary, traceback or none."""
    api: str
    """The Events API of the sinks the handler builds: v1, events.k8s.io/v1 or auto."""
    kubeconfig: str | None
    """The kubeconfig file for ``sink: auto``; None: in-cluster, ``KUBECONFIG``, ``~/.kube``."""
    context: str | None
    """The kubeconfig context for ``sink: auto``; None: the file's current one."""
    default_involved: str | None
    """``"pod"``: a record without an involved object is about this process's pod (else none)."""
    crash_events: bool
    """An uncaught exception becomes a ``Warning`` event about the ``default_involved`` pod."""
    broadcasting: BroadcasterOptions
    """The part the handler's own broadcaster is built with, passed to it whole."""


def checked(given: Mapping[str, Any]) -> Options:
    """The handler's keywords (all, by name) checked into :class:`Options`; else ValueError."""
    sink = checked_sink(given["sink"], given["broadcaster"])
    try:
        return _checked(given, sink)
    except BaseException:
        if isinstance(given["sink"], Mapping):  # built from "()" here, no handler to close it
            _apis.call_optional(sink, "close")
        raise


def _checked(given: Mapping[str, Any], sink: Sink) -> Options:
    if given["namespace"] != models.DEFAULT_NAMESPACE:
        raise ValueError(
            f"namespace must be 'default', not {given['namespace']!r}: the API server accepts "
            "core/v1 events without eventTime about cluster-scoped objects only there"
        )
    reason = given["default_reason"]
    if not isinstance(reason, str) or not reason or _sanitise.camel_case(reason) != reason:
        raise ValueError(f"default_reason must be one CamelCase word, not {reason!r}")
    return Options(
        sink=sink,
        namespace=models.DEFAULT_NAMESPACE,
        default_reason=reason,
        max_message_bytes=whole(
            "max_message_bytes",
            given["max_message_bytes"],
            minimum=MIN_MESSAGE_BYTES,
            maximum=MAX_MESSAGE_BYTES,
        ),
        qps=number("qps", given["qps"], minimum=0, meaning=RATE),
        burst=whole("burst", given["burst"], minimum=1),
        drain_qps=number("drain_qps", given["drain_qps"], minimum=0, meaning=RATE),
        request_timeout=timeout(given["request_timeout"]),
        flush_timeout=seconds("flush_timeout", given["flush_timeout"], minimum=0),
        structured_logging=structured(given["structured_logging"], given["broadcaster"]),
        exception_detail=choice(
            "exception_detail", given["exception_detail"], _records.EXCEPTION_DETAILS
        ),
        api=api_for(given["api"], sink),
        kubeconfig=for_auto("kubeconfig", given["kubeconfig"], sink),
        context=for_auto("context", given["context"], sink),
        default_involved=default_involved(given["default_involved"]),
        crash_events=crash_events(given["crash_events"], given["default_involved"]),
        broadcasting=broadcasting(
            **{name: given[name] for name in BroadcasterOptions.__dataclass_fields__}
        ),
        # last: its repair is reported, and only for a handler that is built
        component=component(optional_name("component", given["component"]) or default_component()),
        host=optional_name("host", given["host"]) or default_host(),
    )


def broadcasting(**given: Any) -> BroadcasterOptions:
    """The broadcaster's part, checked: the handler's keywords and ``EventBroadcaster``'s."""
    return BroadcasterOptions(
        queue_length=whole("queue_length", given["queue_length"], minimum=1),
        writers=whole("writers", given["writers"], minimum=1),
        max_tries=whole("max_tries", given["max_tries"], minimum=1),
        sleep_duration=seconds("sleep_duration", given["sleep_duration"], minimum=0),
        correlator=checked_correlator(given["correlator"]),
        event_names=_sanitise.check_event_names(given["event_names"]),
        clock=clock_mod.checked(given["clock"]),
        # sleep(seconds, cancel): time.sleep would fail every wait of the writer, over and over
        sleep=clock_mod.checked_sleeper(hook("sleep", given["sleep"])),
    )


def check_known(
    given: Iterable[str], known: Iterable[str], what: str, error: type[Exception] = TypeError
) -> None:
    """Raise ``error`` for an unknown option, naming the closest known one, or ``correlator``
    when it is one of its keys (``burst_size`` is no misspelt ``burst``)."""
    known = sorted(known)
    for name in given:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
        if name in CORRELATOR_KEYS:
            hint = f": it is a key of correlator (correlator: {{{name}: ...}})"
        raise error(f"{what} has no option {name!r}{hint}")


def choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, not {value!r}")
    return value


def api_for(value: object, sink: Sink) -> str:
    """``api``, which an EventSink's own ``api`` overrides: asked for series, a sink known to
    write core/v1 would silently write counts instead."""
    api = choice("api", value, (sinks.CORE_V1, sinks.EVENTS_V1, "auto"))
    if (
        api == sinks.EVENTS_V1
        and _continuation.is_event_sink(sink)
        and _apis.api_known(sink)
        and _apis.api_of(sink) is not _apis.EVENTS_V1
    ):
        raise ValueError(
            f"api {api!r} cannot be set with a sink that writes {_apis.api_of(sink).name!r}: "
            "a sink object writes its own api (KubernetesEventSink(client, api=...))"
        )
    return api


def for_auto(name: str, value: object, sink: Sink) -> str | None:
    """``kubeconfig`` and ``context``, which choose the cluster of ``sink: auto`` alone."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):  # a file named in code: a pathlib.Path, pytest's tmp_path
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string or null, not {value!r}")
    if sink not in (None, "auto"):
        raise ValueError(
            f"{name} cannot be set together with a sink URL or EventSink: it chooses the "
            "cluster for sink 'auto' only (leave sink unset, or drop the option)"
        )
    return value


def optional_name(name: str, value: object) -> str:
    """``component`` and ``host``: text (a YAML ``123`` would fail every event later), stripped
    (a name read from a file ends with a newline), or empty or null for the default."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, or null for the default, not {value!r}")
    return value.strip()


def hook(name: str, value: object, shape: str = "") -> Any:
    """A function option, or null: a name without ``ext://`` is a string, and one that takes
    no argument (``ext://os.getcwd``) would fail every event later, on the dispatcher."""
    fits = value is None or (correlators.takes_event(value) if shape else callable(value))
    if not fits:
        raise ValueError(
            f"{name} must be a function{' of ' + shape if shape else ''} (in dictConfig: "
            f"ext://module.name) or null, not {value!r}"
        )
    return value


# configparser's BOOLEAN_STATES, without importing configparser for this one dict
_FLAGS = dict.fromkeys(("1", "yes", "true", "on"), True) | dict.fromkeys(
    ("0", "no", "false", "off"), False
)


def _flag(value: object) -> object:
    """Text ``configparser.getboolean`` reads as a boolean (an ini file's) as that boolean."""
    if isinstance(value, str):
        return _FLAGS.get(value.strip().lower(), value)
    return value


def structured(value: object, given: object) -> bool | str:
    # null, or "none" as YAML spells it unquoted (as for sink), is off, not a logger's name
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return False
    value = _flag(value)
    if not isinstance(value, bool | str):
        raise ValueError(f"structured_logging must be true, false or a logger name, not {value!r}")
    if value and given is not None:
        raise ValueError("structured_logging cannot be set together with broadcaster")
    if value is True:
        # now, as the handler is built: its pipeline starts inside the first emit, where an
        # import could block (another thread importing) or fail (at exit)
        importlib.import_module("pythonjsonlogger.json")
    return value


def default_involved(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, str) and value.strip().lower() == "pod":
        return "pod"
    raise ValueError(
        "default_involved must be 'pod' (events about the pod this process runs in, from "
        f"the Downward API) or null, not {value!r}"
    )


def crash_events(value: object, involved: object) -> bool:
    value = _flag(value)
    if not isinstance(value, bool):
        raise ValueError(f"crash_events must be true or false, not {value!r}")
    if value and default_involved(involved) is None:
        raise ValueError(
            "crash_events needs default_involved: 'pod': an uncaught exception becomes an "
            "event about the pod this process runs in, and without default_involved there "
            "is nothing for it to be about"
        )
    return value


def checked_sink(option: object, given: object) -> Sink:
    if isinstance(option, str):
        lowered = option.strip().lower()
        if lowered in ("none", ""):
            return None
        if lowered == "auto":
            return "auto" if given is None else None
        if given is None and lowered.startswith(("http://", "https://")):
            return _kubeconfig.url_without_credentials(option.strip())
    if given is not None and option is not None:
        raise ValueError("sink cannot be set together with broadcaster: the handler starts no sink")
    if option is None or _continuation.is_event_sink(option):
        return option
    if isinstance(option, Mapping) and "()" in option:
        return sinks.sink_from_config(option)
    shown = _kubeconfig.shown_url(option) if isinstance(option, str) else option
    raise ValueError(
        f"sink must be 'auto', None, an http(s) URL, an EventSink or a '()' dict, not {shown!r}"
    )


def checked_correlator(option: object) -> correlators.CorrelatorOptions | None:
    """``correlator``: CorrelatorOptions, or a mapping of its fields, where ``spam_key`` may
    name the spam key (``object``, client-go's, or ``per-reason``)."""
    if isinstance(option, correlators.CorrelatorOptions):
        # its now() read here, as a mapping's is, not at each copy of the options (a ticking
        # clock would move): a naive one lost every combined event on the dispatcher
        clock_mod.checked(option.clock, "CorrelatorOptions.clock")
    if option is None or isinstance(option, correlators.CorrelatorOptions):
        return option
    if not isinstance(option, Mapping):
        raise ValueError(f"correlator must be a mapping of correlator options, not {option!r}")
    if "event_names" in option:
        raise ValueError("correlator: set event_names on the handler itself, not here")
    known = CORRELATOR_KEYS
    check_known([str(k) for k in option if k not in known], known, "correlator", ValueError)
    # indexed access: dictConfig converts ext:// and cfg:// values only that way
    values = {str(key): option[key] for key in option}
    if "spam_key" in values:
        named = choice("correlator.spam_key", values.pop("spam_key"), tuple(correlators.SPAM_KEYS))
        if values.get("spam_key_func") is not None:
            raise ValueError("correlator: set spam_key or spam_key_func, not both")
        values["spam_key_func"] = correlators.SPAM_KEYS[named]
    for name in ("key_func", "message_func", "spam_key_func"):
        hook(f"correlator.{name}", values.get(name), "(event)")
    clock_mod.checked(values.get("clock"), "correlator.clock")
    for name in ("lru_cache_size", "burst_size", "max_events", "qps", "max_interval_seconds"):
        if values.get(name) is None:  # null, as 0, means the default
            values.pop(name, None)
        else:
            integer = name not in ("qps", "max_interval_seconds")
            value = number(f"correlator.{name}", values[name], minimum=0, integer=integer)
            values[name] = int(value) if integer else value
    return correlators.CorrelatorOptions(**values)


def component(value: str) -> str:
    """``component`` as a qualified name (``Bad Name!``: ``Bad-Name``, reported once)."""
    fixed = _sanitise.qualified_name(value)
    if fixed != value:
        _diagnostics.report(
            logging.WARNING,
            "The component %r is not a qualified name (letters, digits, '-', '_' and '.', "
            "with an optional DNS prefix and '/'), as an event's reporting controller must "
            "be: events name %r as their source",
            value,
            fixed,
        )
    return fixed


def default_component() -> str:
    """The default ``component``: ``$K8S_LOGGING_EVENTS_COMPONENT``, else the module run with
    ``python -m`` (without ``.__main__``), else the script's name without ``.py`` (a zipapp's
    without ``.pyz``, a directory's, a ``__main__.py``'s directory's), else python."""
    if configured := os.environ.get(COMPONENT_ENV, "").strip():
        return configured
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = str(getattr(spec, "name", "") or "")
    if module not in ("", "__main__"):  # a zipapp's or a directory's is named __main__
        return module.removesuffix(".__main__")
    # absolute: python . (or ./, billing/..) is the directory it names, not "."
    path = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    script = os.path.basename(path)
    if script == "__main__.py":  # python billing/__main__.py: the directory is the program
        script = os.path.basename(os.path.dirname(path))
    if script and script not in ("-c", "-"):
        return script.removesuffix(".pyz").removesuffix(".py")
    return "python"


def default_host() -> str:
    """The default ``host``: ``$NODE_NAME``, else ``$HOSTNAME``, else the host name. In a pod,
    set ``NODE_NAME`` from the Downward API (``spec.nodeName``) to report the node, as the
    kubelet does; ``HOSTNAME`` is the pod's name."""
    for variable in ("NODE_NAME", "HOSTNAME"):
        if value := os.environ.get(variable, "").strip():
            return value
    try:
        return socket.gethostname()
    except OSError:  # pragma: no cover - a host without a name
        return ""


def open_sink(
    options: Options, pod: models.ObjectReference | None
) -> tuple[sinks.EventSink | None, sinks.LazySink | None]:
    """The sink the options name, and the lazy one among them (which the handler closes);
    its client is built on a writer at the first write. ``auto`` without any configuration
    is reported once. With ``pod`` and no uid, the sink reads it first (kubectl selects by uid)."""
    option = options.sink
    lazy = None
    if not isinstance(option, str):  # checked: None or an EventSink
        built: sinks.EventSink | None = option
    elif option == "auto":
        found = _kubeconfig.find_configuration(options.kubeconfig, options.context)
        if found is None:
            tried = _kubeconfig.not_found_report(options.kubeconfig, options.context)
            _diagnostics.report(logging.WARNING, "%s", tried)
            return None, None
        built = lazy = sinks.LazySink(_factory(options, None), found, options.api)
    else:
        built = lazy = sinks.LazySink(_factory(options, option), option, options.api)
    if built is not None and pod is not None and not pod.uid:
        return _pod.PodUidSink(built, pod), lazy
    return built, lazy


def _factory(options: Options, url: str | None) -> Callable[[], sinks.EventSink]:
    keywords: dict[str, Any] = {
        "qps": options.qps,
        "burst": options.burst,
        "clock": options.broadcasting.clock,
        "sleep": options.broadcasting.sleep,
        "api": options.api,
        "drain_qps": options.drain_qps,
    }
    if options.request_timeout is not None:
        keywords["request_timeout"] = options.request_timeout
    if url is None:
        keywords["kubeconfig"] = options.kubeconfig
        keywords["context"] = options.context
        return lambda: sinks.KubernetesEventSink(**keywords)
    return lambda: sinks.KubernetesEventSink.from_url(url, **keywords)
