"""The demo behind ``python -m k8s_logging_events demo`` (what ``./dev demo`` runs).

It sits on top of the whole pipeline, where an application would: logging is configured
with :func:`logging.config.dictConfig` from ``examples/logging.yaml`` (only the handler's
``sink`` is replaced), a simulated controller logs about a few pods with
:class:`~k8s_logging_events.handler.EventLoggerAdapter`, the handler is flushed, and the
events are read back from the API server and printed per pod as ``kubectl describe pod``
shows them (:func:`~k8s_logging_events.describe.format_events`), with the handler's
``stats()`` and a check that every count on the server matches what was logged.

The pods are simulated: they are manifest dicts, no Pod objects are created. Without a
cluster the events go to a :class:`~k8s_logging_events.testing.LocalApiServer` that the demo
starts and stops; with ``--kubeconfig`` (or ``KUBECONFIG``) they go to that cluster, where
they are events about pods that do not exist.

The YAML is read with PyYAML, which the ``kubernetes`` client depends on; the configuration
file is ``examples/logging.yaml`` (shipped inside the wheel, so that ``pip install .`` and
``python -m k8s_logging_events demo`` work from any directory), or ``--config``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from k8s_logging_events import describe, handler

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_NAMESPACE",
    "LOGGER_NAME",
    "DemoError",
    "DemoOptions",
    "DemoResult",
    "run",
]

_SHIPPED_CONFIG = Path(__file__).resolve().parent / "_examples" / "logging.yaml"
_CHECKOUT_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "logging.yaml"

DEFAULT_CONFIG = _SHIPPED_CONFIG if _SHIPPED_CONFIG.is_file() else _CHECKOUT_CONFIG
"""The logging configuration the demo loads: ``examples/logging.yaml``, which the wheel
ships inside the package (``_examples/``), read from the checkout in a development install."""

DEFAULT_NAMESPACE = "default"
"""The namespace of the simulated pods (and so of their events)."""

LOGGER_NAME = "demo.controller"
"""The simulated controller's logger (not under ``k8s_logging_events``: the handler ignores
the library's own logger)."""

_HANDLER_CLASS = "k8s_logging_events.handler.KubernetesEventHandler"
_LIBRARY_ONLY = "k8s_logging_events_only"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes
_RULE = "=" * 78

# what the simulated controller does
_IMAGE = "registry.example.com/shop/web:1.4.3"
_PULL_ATTEMPTS = 4
_BACKOFFS_PER_ATTEMPT = 3
_PROBE_FAILURES = 12
_MOUNT_FAILURES = 60


_API_NAMES = {
    "v1": "core/v1 (counts and aggregation, like client-go's tools/record)",
    "events.k8s.io/v1": "events.k8s.io/v1 (series, like client-go's tools/events)",
}


class DemoError(Exception):
    """The demo cannot run: a missing configuration file, no PyYAML, a bad kubeconfig."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``python -m k8s_logging_events demo`` was asked to do.

    Args:
        kubeconfig: write to the cluster of this kubeconfig; None: the one named by
            ``$KUBECONFIG``, if set, else a local Events API server.
        local: use a local Events API server even when ``$KUBECONFIG`` is set.
        namespace: the namespace of the simulated pods and their events.
        config: the logging configuration (YAML for dictConfig).
        show_logs: let the configuration's other handlers (the console) print every record;
            by default they print only the library's own reports.
    """

    kubeconfig: str | None = None
    local: bool = False
    namespace: str = DEFAULT_NAMESPACE
    config: Path = DEFAULT_CONFIG
    show_logs: bool = False
    api: str = "v1"
    """Which Events API to write and read back: ``v1`` or ``events.k8s.io/v1``."""


@dataclass
class DemoResult:
    """What the demo did and what the API server ended up with."""

    target: str
    """Where the events went: the local server's URL, or the cluster's."""
    pods: list[dict[str, Any]]
    """The simulated pods, as manifest dicts."""
    events: dict[str, list[dict[str, Any]]]
    """The events read back from the server after the flush, per pod name (JSON of ``api``)."""
    logged: dict[tuple[str, str], int]
    """Occurrences logged, per (pod name, reason), counted on the controller's logger."""
    stored: dict[tuple[str, str], int]
    """The occurrences the server's events stand for (``count``, or ``series.count``)."""
    stats: dict[str, int]
    """``handler.stats()`` after the flush."""
    flushed: bool
    """Whether the flush finished within the handler's ``flush_timeout``."""
    seconds: float
    """How long the demo took, from configuring logging to reading the events back."""
    api: str = "v1"
    """The Events API written and read back."""

    @property
    def counts_match(self) -> bool:
        """True when the server counts exactly the occurrences that were logged."""
        return bool(self.logged) and self.logged == self.stored

    @property
    def stats_add_up(self) -> bool:
        """True when every accepted occurrence has exactly one outcome and none is pending."""
        outcomes = sum(self.stats[key] for key in _OUTCOMES)
        return self.stats["pending"] == 0 and self.stats["accepted"] == outcomes

    @property
    def ok(self) -> bool:
        """True when the flush finished, the counts match and the stats add up."""
        return self.flushed and self.counts_match and self.stats_add_up


_OUTCOMES = ("created", "patched", "coalesced", "dropped", "failed")


def run(options: DemoOptions | None = None, *, out: TextIO | None = None) -> DemoResult:
    """Run the demo, print its report on ``out`` (standard output), and return the result.

    Raises:
        DemoError: the configuration cannot be loaded, or the kubeconfig is unusable.
    """
    options = options or DemoOptions()
    write = _Writer(out or sys.stdout)
    config = _load_config(options.config)
    kubeconfig = None if options.local else options.kubeconfig or os.environ.get("KUBECONFIG")
    with contextlib.ExitStack() as stack:
        if kubeconfig:
            api_client = _cluster_client(kubeconfig)
            stack.callback(api_client.close)
            _check_access(api_client, options.namespace)
            sink: object = _cluster_sink(api_client, config, options.api)
            target = str(api_client.configuration.host)
            where = f"the cluster at {target} (kubeconfig {kubeconfig})"
            note = "the pods are simulated: the cluster gets events about pods that do not exist"
        else:
            from k8s_logging_events.testing import LocalApiServer

            server = stack.enter_context(LocalApiServer(namespaces=[options.namespace]))
            api_client = stack.enter_context(server.api_client())
            sink = target = server.url
            where = f"a local Events API server at {target}, started by the demo"
            note = (
                "--local: KUBECONFIG is ignored"
                if options.local and os.environ.get("KUBECONFIG")
                else "no cluster configured: --kubeconfig FILE or KUBECONFIG names one"
            )
        _use_sink(config, sink, show_logs=options.show_logs, api=options.api)
        write.header(options, where, note)
        result = _run_controller(
            config, options.namespace, api_client, target, write, api=options.api
        )
    write.report(result)
    return result


# --- configuration ---------------------------------------------------------------------------


def _load_config(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        raise DemoError(
            "the demo reads its logging configuration with PyYAML, which is not installed: "
            "pip install pyyaml (./dev demo installs the dev extra, which has it)"
        ) from None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DemoError(
            f"cannot read the logging configuration {path}: {error.strerror}; pass --config FILE"
        ) from None
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict) or not _event_handler_configs(loaded):
        raise DemoError(f"{path} configures no {_HANDLER_CLASS}")
    return loaded


def _event_handler_configs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    handlers = config.get("handlers") or {}
    return [
        spec
        for spec in handlers.values()
        if isinstance(spec, dict) and _HANDLER_CLASS in (spec.get("class"), spec.get("()"))
    ]


def _use_sink(config: dict[str, Any], sink: object, *, show_logs: bool, api: str) -> None:
    """Point every event handler of ``config`` at ``sink`` and ``api``; quiet the others."""
    for spec in _event_handler_configs(config):
        spec["sink"] = sink
        spec["api"] = api
    if show_logs:
        return
    # the demo prints its own report; the console still shows the library's warnings
    config.setdefault("filters", {})[_LIBRARY_ONLY] = {"name": "k8s_logging_events"}
    event_specs = _event_handler_configs(config)
    for spec in (config.get("handlers") or {}).values():
        if isinstance(spec, dict) and not any(spec is other for other in event_specs):
            spec["filters"] = [*spec.get("filters", []), _LIBRARY_ONLY]


def _cluster_client(kubeconfig: str) -> Any:
    """A client for the kubeconfig's current context, in a private configuration."""
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    loader: Any = kube_config
    try:
        loader.load_kube_config(
            config_file=kubeconfig, client_configuration=configuration, persist_config=False
        )
    except Exception as error:  # ConfigException, a missing file, bad YAML ...
        raise DemoError(f"cannot use the kubeconfig {kubeconfig}: {error}") from None
    configuration.retries = False  # only the event writer retries
    return client.ApiClient(configuration)


def _check_access(api_client: Any, namespace: str) -> None:
    """Fail fast, before logging anything, when the cluster cannot be read."""
    from kubernetes import client

    host = api_client.configuration.host
    try:
        client.CoreV1Api(api_client).list_namespaced_event(
            namespace, limit=1, _preload_content=False, _request_timeout=10
        )
    except Exception as error:  # unreachable, unauthorised, no such namespace ...
        status = getattr(error, "status", None)
        reason = f"{status} {getattr(error, 'reason', '')}" if status else str(error)
        raise DemoError(
            f"cannot list events in namespace {namespace!r} at {host}: {reason}"
        ) from None


def _cluster_sink(api_client: Any, config: Mapping[str, Any], api: str) -> object:
    """The sink for a real cluster: it writes through the client the demo reads with.

    The configuration's ``qps`` and ``burst`` apply to it as to a sink the handler builds.
    """
    from k8s_logging_events.sink import KubernetesEventSink

    qps, burst = _rate_limit(config)
    return KubernetesEventSink(api_client, qps=qps, burst=burst, api=api)


@contextlib.contextmanager
def _logging_configured(config: dict[str, Any]) -> Iterator[list[handler.KubernetesEventHandler]]:
    """Apply ``config`` with dictConfig; afterwards close its handlers and restore the root."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    named = [logging.getLogger(name) for name in config.get("loggers") or {}]
    saved_named = [(lg, lg.handlers[:], lg.level) for lg in named]
    added: list[logging.Handler] = []
    try:
        try:
            logging.config.dictConfig(config)
        except (ValueError, TypeError, AttributeError, ImportError) as error:
            raise DemoError(f"cannot apply the logging configuration: {error}") from None
        added = [h for lg in [root, *named] for h in lg.handlers]
        yield [h for h in added if isinstance(h, handler.KubernetesEventHandler)]
    finally:
        # closed while still attached: what closing reports reaches the configured console
        for added_handler in added:
            added_handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for lg, handlers, level in saved_named:
            lg.handlers[:] = handlers
            lg.setLevel(level)


# --- the simulated controller ----------------------------------------------------------------


class _Tally(logging.Filter):
    """Counts the records about an object, per (object name, reason): the expected counts."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        involved = getattr(record, "involved", None)
        if isinstance(involved, Mapping):
            key = (str(involved["metadata"]["name"]), str(getattr(record, "reason", "")))
            self.counts[key] = self.counts.get(key, 0) + 1
        return True


def _pod(name: str, namespace: str) -> dict[str, Any]:
    """A simulated pod: a manifest dict with a fresh uid (events are looked up by it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
    }


def _generated_name(prefix: str, rng: random.Random) -> str:
    """``prefix-<10>-<5>``, as a Deployment's ReplicaSet names its pods."""
    template = "".join(rng.choice(_NAME_CHARS) for _ in range(10))
    suffix = "".join(rng.choice(_NAME_CHARS) for _ in range(5))
    return f"{prefix}-{template}-{suffix}"


def _reconcile_image_pull(log: logging.LoggerAdapter[logging.Logger]) -> None:
    """A pod whose image does not exist: pulls fail, back-offs repeat (and are counted)."""
    for _ in range(_PULL_ATTEMPTS):
        log.info('Pulling image "%s"', _IMAGE, extra={"reason": "Pulling"})
        log.warning(
            'Failed to pull image "%s": manifest unknown', _IMAGE, extra={"reason": "Failed"}
        )
        for _ in range(_BACKOFFS_PER_ATTEMPT):
            log.warning('Back-off pulling image "%s"', _IMAGE, extra={"reason": "BackOff"})


def _reconcile_probe(log: logging.LoggerAdapter[logging.Logger]) -> None:
    """A pod whose readiness probe fails with a new message each time: they aggregate."""
    log.info("Started container postgres", extra={"reason": "Started"})
    for attempt in range(_PROBE_FAILURES):
        lag = 14 + 3 * attempt
        log.warning(
            "Readiness probe failed: replication lag %ds exceeds 10s",
            lag,
            extra={"reason": "Unhealthy"},
        )


def _reconcile_mount(log: logging.LoggerAdapter[logging.Logger]) -> None:
    """A pod that retries a mount in a tight loop: a burst for the spam filter."""
    for _ in range(_MOUNT_FAILURES):
        log.warning(
            'MountVolume.SetUp failed for volume "config": configmap "cache-config" not found',
            extra={"reason": "FailedMount"},
        )
    log.info("Started container redis", extra={"reason": "Started"})


_SCENARIOS = (
    ("web", _reconcile_image_pull, f"image {_IMAGE} does not exist"),
    ("orders-db-0", _reconcile_probe, "readiness probe fails, a new message each time"),
    ("cache", _reconcile_mount, "a missing config map: a tight retry loop"),
)


def _run_controller(
    config: dict[str, Any],
    namespace: str,
    api_client: Any,
    target: str,
    write: _Writer,
    *,
    api: str = "v1",
) -> DemoResult:
    """Configure logging, reconcile the pods, flush, and read the events back."""
    rng = random.Random()
    pods = [
        _pod(prefix if prefix[-1].isdigit() else _generated_name(prefix, rng), namespace)
        for prefix, _, _ in _SCENARIOS
    ]
    logger = logging.getLogger(LOGGER_NAME)
    tally = _Tally()
    started = time.monotonic()
    logger.addFilter(tally)
    try:
        with _logging_configured(config) as event_handlers:
            if not event_handlers:
                raise DemoError("the configuration attaches no event handler to a logger")
            logging_started = time.monotonic()
            for pod, (_, reconcile, story) in zip(pods, _SCENARIOS, strict=True):
                reconcile(handler.EventLoggerAdapter(logger, pod))
                write.reconciled(pod["metadata"]["name"], story, tally.counts)
            logged_at = time.monotonic()
            for event_handler in event_handlers:
                event_handler.flush()
            flushed_at = time.monotonic()
            stats = _summed(event_handler.stats() for event_handler in event_handlers)
            write.flushed(logged_at - logging_started, flushed_at - logged_at, _rate_limit(config))
    finally:
        logger.removeFilter(tally)
    try:
        events = {pod["metadata"]["name"]: _read_events(api_client, pod, api) for pod in pods}
    except Exception as error:  # an unreachable or refusing server: say so, no traceback
        raise DemoError(f"cannot read the events back from {target}: {error}") from None
    stored: dict[tuple[str, str], int] = {}
    for name, items in events.items():
        for item in items:
            key = (name, str(item.get("reason", "")))
            stored[key] = stored.get(key, 0) + _occurrences(item)
    return DemoResult(
        target=target,
        pods=pods,
        events=events,
        logged=dict(tally.counts),
        stored=stored,
        stats=stats,
        flushed=stats["pending"] == 0,
        seconds=time.monotonic() - started,
        api=api,
    )


def _rate_limit(config: Mapping[str, Any]) -> tuple[float, int]:
    """The (qps, burst) of the first event handler's sink, as configured or by default."""
    spec = _event_handler_configs(config)[0]
    return float(spec.get("qps", 5.0)), int(spec.get("burst", 10))


def _summed(all_stats: Iterator[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for stats in all_stats:
        for key, value in stats.items():
            total[key] = total.get(key, 0) + value
    return total


def _occurrences(item: Mapping[str, Any]) -> int:
    """How many occurrences one stored event stands for: its series or its count."""
    series = item.get("series") or {}
    return int(series.get("count") or item.get("count") or item.get("deprecatedCount") or 1)


def _read_events(api_client: Any, pod: Mapping[str, Any], api: str) -> list[dict[str, Any]]:
    """List the events about ``pod`` (by uid) as JSON dicts of ``api``, as a GET returns them."""
    from kubernetes import client

    metadata = pod["metadata"]
    # without _preload_content the client returns a urllib3 response, not a model
    if api == "events.k8s.io/v1":
        response: Any = client.EventsV1Api(api_client).list_namespaced_event(
            metadata["namespace"],
            field_selector=f"regarding.uid={metadata['uid']}",
            _preload_content=False,
        )
    else:
        response = client.CoreV1Api(api_client).list_namespaced_event(
            metadata["namespace"],
            field_selector=f"involvedObject.uid={metadata['uid']}",
            _preload_content=False,
        )
    items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return items


# --- the report ------------------------------------------------------------------------------


class _Writer:
    """Prints the demo's report."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def line(self, text: str = "") -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def header(self, options: DemoOptions, where: str, note: str) -> None:
        self.line(_RULE)
        self.line("k8s-logging-events demo: Python logging -> Kubernetes Events")
        self.line(_RULE)
        self.line(f"Logging:    dictConfig from {_shown_path(options.config)} (sink replaced)")
        self.line(f"Events to:  {where}")
        self.line(f"            ({note})")
        self.line(f"Namespace:  {options.namespace}")
        self.line(f"API:        {_API_NAMES[options.api]}")
        self.line()
        self.line(
            f"Reconciling {len(_SCENARIOS)} simulated pods (manifest dicts: no Pod objects are "
            "created),"
        )
        self.line("logging about each through EventLoggerAdapter:")

    def reconciled(self, pod: str, story: str, counts: Mapping[tuple[str, str], int]) -> None:
        logged = ", ".join(f"{n} x {reason}" for (name, reason), n in counts.items() if name == pod)
        self.line(f"  {pod:<26} {story}")
        self.line(f"  {'':<26} logged {logged}")

    def flushed(
        self, logging_seconds: float, flush_seconds: float, rate: tuple[float, int]
    ) -> None:
        self.line(
            f"Logging took {logging_seconds * 1000:.0f} ms: emit() never waits for the API. "
            f"flush() took {flush_seconds:.1f} s"
        )
        qps, burst = rate
        if qps > 0:
            self.line(f"(the sink's rate limit: {qps:g} requests/s after a burst of {burst}).")

    def report(self, result: DemoResult) -> None:
        self.line()
        self.line(_RULE)
        self.line("Events read back from the API server, as `kubectl describe pod` shows them")
        self.line(_RULE)
        for pod in result.pods:
            metadata = pod["metadata"]
            self.line()
            self.line(f"Name:         {metadata['name']}")
            self.line(f"Namespace:    {metadata['namespace']}")
            self._out.write(describe.format_events(result.events[metadata["name"]]))
        self.line()
        self.notes(result.api)
        self.counts(result)
        self.stats(result.stats)
        self.line()
        self.verdict(result)

    def notes(self, api: str) -> None:
        self.line("What happened:")
        if api == "events.k8s.io/v1":
            self._wrapped(
                "  - ",
                "events.k8s.io/v1 groups repeats of one event (same object, reason and "
                "action, whatever the message) into a series: the first occurrence is "
                "created, the second patches series.count 2, later ones are written six "
                "minutes after the last one, every 30 minutes while they go on, and at "
                "flush(), so the series count on the server is exact.",
            )
            return
        for text in (
            f"BackOff: {_PULL_ATTEMPTS * _BACKOFFS_PER_ATTEMPT} identical warnings are one "
            "event with a count; repeats are patches of count and lastTimestamp.",
            f"Unhealthy: {_PROBE_FAILURES} distinct messages with one reason. The first 9 are "
            "events of their own; from the 10th on (within 10 minutes) they are combined into "
            'one "(combined from similar events): ..." event.',
            f"FailedMount: a burst of {_MOUNT_FAILURES}. The spam filter lets 25 occurrences "
            "per object through at once, then one per 5 minutes; the count it held back was "
            "written at flush(), so the server shows the exact number.",
        ):
            self._wrapped("  - ", text)

    def counts(self, result: DemoResult) -> None:
        self.line()
        self.line(
            "Occurrences logged vs. counted on the server (sum of `count` or `series.count`):"
        )
        self.line(f"  {'POD':<26} {'REASON':<12} {'LOGGED':>6} {'SERVER':>6} {'EVENTS':>6}")
        keys = list(result.logged) + [k for k in result.stored if k not in result.logged]
        shown = ""
        for name, reason in keys:
            n_events = sum(1 for item in result.events[name] if item.get("reason") == reason)
            logged = result.logged.get((name, reason), 0)
            stored = result.stored.get((name, reason), 0)
            mark = "" if logged == stored else "  <- MISMATCH"
            pod = name if name != shown else ""
            shown = name
            self.line(f"  {pod:<26} {reason:<12} {logged:>6} {stored:>6} {n_events:>6}{mark}")
        total_events = sum(len(items) for items in result.events.values())
        self.line(
            f"  {'total':<26} {'':<12} {sum(result.logged.values()):>6} "
            f"{sum(result.stored.values()):>6} {total_events:>6}"
        )

    def stats(self, stats: Mapping[str, int]) -> None:
        self.line()
        self.line("handler.stats() after flush():")
        outcomes = " + ".join(f"{key} {stats[key]}" for key in _OUTCOMES)
        self.line(f"  accepted {stats['accepted']} = {outcomes}")
        others = ", ".join(
            f"{key} {stats[key]}"
            for key in ("pending", "invalid", "refused", "repaired", "after_close")
        )
        self.line(f"  {others}")
        writes = stats["created"] + stats["patched"]
        self._wrapped(
            "  ",
            f"{stats['accepted']} occurrences took {_plural(writes, 'API write')} "
            f"({_plural(stats['created'], 'create')}, {_plural(stats['patched'], 'patch')}); "
            f"the other {stats['coalesced']} were coalesced into them.",
        )

    def verdict(self, result: DemoResult) -> None:
        total = sum(result.logged.values())
        if result.counts_match:
            self.line(f"OK: the server counts all {total} occurrences that were logged.")
        else:
            self.line("FAILED: the counts on the server differ from what was logged.")
        if result.stats_add_up:
            self.line("OK: every accepted occurrence has exactly one outcome; none is pending.")
        else:
            self.line("FAILED: the handler's counters do not add up (see above).")
        self.line(f"Finished in {result.seconds:.1f} s.")

    def _wrapped(self, first: str, text: str, width: int = 80) -> None:
        prefix, line = first, ""
        for word in text.split():
            if line and len(prefix) + len(line) + 1 + len(word) > width:
                self.line(prefix + line)
                prefix, line = " " * len(first), word
            else:
                line = f"{line} {word}" if line else word
        if line:
            self.line(prefix + line)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun[-1] == 'h' else 's'}"


def _shown_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)
