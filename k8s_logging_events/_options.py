"""The handler's options, checked once, when the handler is built.

This sits at the front door, beside :mod:`k8s_logging_events.handler`: ``dictConfig`` hands
the handler whatever a YAML or JSON file says, and a mistake there must surface as a clear
message when the configuration is applied, never as a stalled writer or a spinning thread
later. Every check names the option, the value and what is allowed; an unknown option names
the closest known one.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from k8s_logging_events import (
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

__all__ = [
    "Config",
    "check_known",
    "checked_correlator",
    "checked_sink",
    "component",
    "number",
    "open_sink",
    "timeout",
]

MIN_MESSAGE_BYTES = 16
"""The shortest ``max_message_bytes``: room for a word and the truncation mark."""

SinkOption = sinks.EventSink | str | Mapping[str, Any] | None
"""What ``sink=`` accepts: ``"auto"``, ``None``, a URL, an EventSink, or a ``"()"`` dict."""

Sink = sinks.EventSink | str | None


@dataclass(frozen=True, slots=True)
class Config:
    """The checked options of one handler."""

    sink: Sink
    namespace: str
    default_reason: str
    max_message_bytes: int
    queue_length: int
    qps: float
    burst: int
    drain_qps: float
    request_timeout: float | tuple[float, float] | None
    correlator: correlators.CorrelatorOptions | None
    flush_timeout: float
    structured_logging: bool | str
    exception_detail: str
    writers: int
    max_tries: int
    sleep_duration: float
    api: str
    kubeconfig: str | None
    context: str | None
    default_involved: str | None = None
    crash_events: bool = False
    event_names: str = _sanitise.DETERMINISTIC


def check_known(
    given: Iterable[str],
    known: Iterable[str],
    what: str,
    error: type[Exception] = TypeError,
) -> None:
    """Raise ``error`` for an option that does not exist, naming the closest known one."""
    known = sorted(known)
    for name in given:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
        raise error(f"{what} has no option {name!r}{hint}")


def number(
    name: str,
    value: object,
    *,
    minimum: float,
    integer: bool = False,
    meaning: str = "",
) -> float:
    """Return ``value`` as a finite number of at least ``minimum``, or raise ValueError.

    A number written as a string (``"5"``, as environment-driven configuration often
    gives it) is accepted; NaN, infinity, booleans and anything else are not.
    """
    allowed = f"{'a whole number' if integer else 'a number'} >= {minimum:g}"
    if meaning:
        allowed += f" ({meaning})"
    converted: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        converted = float(value)
    elif isinstance(value, str):
        try:
            converted = float(value.strip())
        except ValueError:
            converted = None
    if (
        converted is None
        or not math.isfinite(converted)
        or converted < minimum
        or (integer and not converted.is_integer())
    ):
        raise ValueError(f"{name} must be {allowed}, not {value!r}")
    return converted


def timeout(value: object) -> float | tuple[float, float] | None:
    """``request_timeout``: None, seconds for both, or ``[connect, read]`` seconds."""
    meaning = "seconds to connect and to read"
    if value is None:
        return None
    if isinstance(value, str | int | float):
        return number("request_timeout", value, minimum=0.001, meaning=meaning)
    if isinstance(value, Sequence) and len(value) == 2:
        connect, read = (
            number("request_timeout", item, minimum=0.001, meaning=meaning) for item in value
        )
        return connect, read
    raise ValueError(f"request_timeout must be a number or a pair of numbers, not {value!r}")


def choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """Return ``value`` when it is one of ``allowed``, or raise ValueError."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, not {value!r}")
    return value


def optional_text(name: str, value: object) -> str | None:
    """None, or a non-empty string."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string or null, not {value!r}")
    return value


def namespace(value: object) -> str:
    """Only ``default`` can hold core/v1 events without eventTime about cluster objects."""
    if value != models.DEFAULT_NAMESPACE:
        raise ValueError(
            f"namespace must be 'default', not {value!r}: the API server accepts core/v1 "
            "events without eventTime about cluster-scoped objects only there"
        )
    return models.DEFAULT_NAMESPACE


def reason(value: object) -> str:
    """``default_reason``: one UpperCamelCase word the server accepts."""
    if not isinstance(value, str) or not value or _sanitise.camel_case(value) != value:
        raise ValueError(f"default_reason must be one CamelCase word, not {value!r}")
    return value


def structured(value: object, given: object) -> bool | str:
    """``structured_logging``: a bool, or the name of a logger."""
    if not isinstance(value, bool | str):
        raise ValueError(f"structured_logging must be true, false or a logger name, not {value!r}")
    if value and given is not None:
        raise ValueError("structured_logging cannot be set together with broadcaster")
    return value


def exception_detail(value: object) -> str:
    """``exception_detail``: summary, traceback or none."""
    return choice("exception_detail", value, _records.EXCEPTION_DETAILS)


def event_names(value: object) -> str:
    """``event_names``: deterministic (the default) or timestamp (client-go's names)."""
    return _sanitise.check_event_names(value)


def default_involved(value: object) -> str | None:
    """``default_involved``: None, or ``"pod"`` (the pod the process runs in)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, str) and value.strip().lower() == "pod":
        return "pod"
    raise ValueError(
        "default_involved must be 'pod' (events about the pod this process runs in, from "
        f"the Downward API) or null, not {value!r}"
    )


def crash_events(value: object, involved: object) -> bool:
    """``crash_events``: a bool, true only with ``default_involved: pod`` (what it is about)."""
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
    """``sink``: "auto", None, an http(s) URL, an EventSink or a ``"()"`` dict."""
    if isinstance(option, str):
        lowered = option.strip().lower()
        if lowered in ("none", ""):
            return None
        if lowered == "auto":
            return "auto" if given is None else None
        if given is None and lowered.startswith(("http://", "https://")):
            return option.strip()
    if given is not None and option is not None:
        raise ValueError("sink cannot be set together with broadcaster: the handler starts no sink")
    if option is None or isinstance(option, sinks.EventSink):
        return option
    if isinstance(option, Mapping) and "()" in option:
        return sinks.sink_from_config(option)
    raise ValueError(
        f"sink must be 'auto', None, an http(s) URL, an EventSink or a '()' dict, not {option!r}"
    )


def checked_correlator(
    option: object,
) -> correlators.CorrelatorOptions | None:
    """``correlator``: CorrelatorOptions, or a mapping of its field names.

    The mapping may also name the spam key: ``spam_key: object`` (client-go's default, one
    bucket per object) or ``spam_key: per-reason`` (one bucket per object and reason).
    """
    if option is None or isinstance(option, correlators.CorrelatorOptions):
        return option
    if not isinstance(option, Mapping):
        raise ValueError(f"correlator must be a mapping of correlator options, not {option!r}")
    if "event_names" in option:
        raise ValueError("correlator: set event_names on the handler itself, not here")
    fields = correlators.CorrelatorOptions.__dataclass_fields__
    known = [*(name for name in fields if name != "event_names"), "spam_key"]
    check_known([str(k) for k in option if k not in known], known, "correlator", ValueError)
    # indexed access: dictConfig converts ext:// and cfg:// values only that way
    values = {str(key): option[key] for key in option}
    if "spam_key" in values:
        named = choice("correlator.spam_key", values.pop("spam_key"), tuple(correlators.SPAM_KEYS))
        if values.get("spam_key_func") is not None:
            raise ValueError("correlator: set spam_key or spam_key_func, not both")
        values["spam_key_func"] = correlators.SPAM_KEYS[named]
    for name in ("lru_cache_size", "burst_size", "max_events"):
        if name in values:
            values[name] = int(number(f"correlator.{name}", values[name], minimum=0, integer=True))
    for name in ("qps", "max_interval_seconds"):
        if name in values:
            values[name] = number(f"correlator.{name}", values[name], minimum=0)
    return correlators.CorrelatorOptions(**values)


def component(value: str) -> str:
    """``component``: a qualified name, as ``reportingController`` must be; repaired if not.

    ``Bad Name!`` becomes ``Bad-Name`` (the one rule: ``_sanitise.qualified_name``), and
    the repair is reported once, here, when the handler is built.
    """
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


def open_sink(
    config: Config,
    *,
    clock: clock_mod.Clock | None,
    sleep: clock_mod.Sleeper | None,
    pod: models.ObjectReference | None,
) -> tuple[sinks.EventSink | None, sinks.LazySink | None]:
    """The sink the options name, and the lazy one among them (which the handler closes).

    ``auto`` without any configuration is reported once (what was tried, what to set); the
    client itself is built on a writer thread at the first write. With ``pod`` and no uid
    for it, the sink reads the uid first (``kubectl describe`` selects by uid).
    """
    option = config.sink
    lazy = None
    if option is None or isinstance(option, sinks.EventSink):
        built: sinks.EventSink | None = option
    elif option == "auto":
        found = _kubeconfig.find_configuration(config.kubeconfig, config.context)
        if found is None:
            _diagnostics.report(
                logging.WARNING,
                "%s",
                _kubeconfig.not_found_report(config.kubeconfig, config.context),
            )
            return None, None
        built = lazy = sinks.LazySink(_factory(config, None, clock, sleep), found, config.api)
    else:
        built = lazy = sinks.LazySink(_factory(config, option, clock, sleep), option, config.api)
    if built is not None and pod is not None and not pod.uid:
        return _pod.PodUidSink(built, pod), lazy
    return built, lazy


def _factory(
    config: Config,
    url: str | None,
    clock: clock_mod.Clock | None,
    sleep: clock_mod.Sleeper | None,
) -> Callable[[], sinks.EventSink]:
    options: dict[str, Any] = {
        "qps": config.qps,
        "burst": config.burst,
        "clock": clock,
        "sleep": sleep,
        "api": config.api,
        "drain_qps": config.drain_qps,
    }
    if config.request_timeout is not None:
        options["request_timeout"] = config.request_timeout
    if url is None:
        options["kubeconfig"] = config.kubeconfig
        options["context"] = config.context
        return lambda: sinks.KubernetesEventSink(**options)
    return lambda: sinks.KubernetesEventSink.from_url(url, **options)
