"""The demo behind ``python -m k8s_logging_events demo`` (what ``./dev demo`` runs).

It sits on top of the whole pipeline, where an application would: logging is configured
with :func:`logging.config.dictConfig` from ``examples/logging.yaml`` (only the handler's
``sink`` is replaced), a simulated controller logs about a few pods with
:class:`~k8s_logging_events.handler.EventLoggerAdapter`, the handler is flushed, and the
events are read back from the API server and printed per pod as ``kubectl describe pod``
shows them (:func:`~k8s_logging_events.describe.format_events`), with the handler's
``stats()`` and a check that every count on the server matches what was logged.

Without a cluster the events go to a :class:`~k8s_logging_events.testing.LocalApiServer`
that the demo starts and stops; the pods are then created there, as real Pods with the
status each story gives them, so that the events are about pods that exist, and the demo
ends with the real ``kubectl describe pod`` of one of them when kubectl is installed. With
``--kubeconfig`` (or ``KUBECONFIG``) the events go to that cluster and the pods are
simulated (manifest dicts): events about pods that do not exist. The parts: the simulated
controller and its pods in ``_controller``, the printed report in ``_report``.

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
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from k8s_logging_events import _kubeconfig, handler
from k8s_logging_events._demo._controller import (
    SCENARIOS,
    Tally,
    create_pods,
    generated_name,
    simulated_pod,
)
from k8s_logging_events._demo._report import Writer
from k8s_logging_events._demo._values import (
    DEFAULT_CONFIG,
    DEFAULT_NAMESPACE,
    DemoError,
    DemoOptions,
    DemoResult,
)

if TYPE_CHECKING:
    from k8s_logging_events.sink import KubernetesEventSink
    from k8s_logging_events.testing import LocalApiServer

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_NAMESPACE",
    "LOGGER_NAME",
    "DemoError",
    "DemoOptions",
    "DemoResult",
    "run",
]

LOGGER_NAME = "demo.controller"
"""The simulated controller's logger (not under ``k8s_logging_events``: the handler ignores
the library's own logger)."""

_HANDLER_CLASS = "k8s_logging_events.handler.KubernetesEventHandler"
# dictConfig takes the class under its module and under the package that re-exports it
_HANDLER_PATHS = (_HANDLER_CLASS, "k8s_logging_events.KubernetesEventHandler")
_LIBRARY_ONLY = "k8s_logging_events_only"
_KUBECTL_TIMEOUT = 30.0


def run(options: DemoOptions | None = None, *, out: TextIO | None = None) -> DemoResult:
    """Run the demo, print its report on ``out`` (standard output), and return the result.

    Raises:
        DemoError: the configuration cannot be loaded, or the kubeconfig is unusable.
    """
    options = options or DemoOptions()
    write = Writer(out or sys.stdout)
    config = _load_config(options.config)
    kubeconfig = None if options.local else options.kubeconfig or os.environ.get("KUBECONFIG")
    with contextlib.ExitStack() as stack:
        if kubeconfig:
            api_client = _cluster_client(kubeconfig)
            stack.callback(api_client.close)
            _check_access(api_client, options.namespace)
            # the handler does not close a sink it is given, and its connection is its own
            sink: object = stack.enter_context(
                contextlib.closing(_cluster_sink(api_client, config, options.api))
            )
            target = _kubeconfig.shown_url(str(api_client.configuration.host))
            where = f"the cluster at {target} (kubeconfig {kubeconfig})"
            note = "the pods are simulated: the cluster gets events about pods that do not exist"
            namespace = options.namespace

            def make_pods(names: list[str]) -> list[dict[str, Any]]:
                return [simulated_pod(name, namespace) for name in names]

            server = None
        else:
            from k8s_logging_events.testing import LocalApiServer

            try:
                server = stack.enter_context(LocalApiServer(namespaces=[options.namespace]))
            except ValueError as error:  # --namespace Bad_NS: no namespace could be called so
                raise DemoError(f"--namespace: {error}") from None
            api_client = stack.enter_context(server.api_client())
            sink = target = server.url
            where = f"a local Events API server at {target}, started by the demo"
            note = (
                "--local: KUBECONFIG is ignored"
                if options.local and os.environ.get("KUBECONFIG")
                else "no cluster configured: --kubeconfig FILE or KUBECONFIG names one"
            )
            local = server

            def make_pods(names: list[str]) -> list[dict[str, Any]]:
                return create_pods(local, names, options.namespace, datetime.now(UTC))

        _use_sink(config, sink, show_logs=options.show_logs, api=options.api)
        write.header(options, where, note, real_pods=server is not None)
        result = _run_controller(config, make_pods, api_client, target, write, api=options.api)
        if server is not None:
            _describe_with_kubectl(server, result)
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
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DemoError(f"cannot read the logging configuration {path}: {error}") from None
    if not isinstance(loaded, dict) or not _event_handler_configs(loaded):
        raise DemoError(f"{path} configures no {_HANDLER_CLASS}")
    return loaded


def _event_handler_configs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    handlers = config.get("handlers")
    if not isinstance(handlers, Mapping):  # none, or written as a list
        return []
    return [
        spec
        for spec in handlers.values()
        if isinstance(spec, dict)
        and any(path in _HANDLER_PATHS for path in (spec.get("class"), spec.get("()")))
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


# a newcomer whose KUBECONFIG points at nothing usable may not know the demo runs without one
_LOCAL_HINT = " (--local runs the demo on a local API server instead)"


def _cluster_client(kubeconfig: str) -> Any:
    """A client for the kubeconfig's current context (of several files, the first's, as
    kubectl's), as the sink makes its own: urllib3's retries off (only the writer retries)."""
    try:
        api_client, _ = _kubeconfig.default_api_client(kubeconfig)
    except Exception as error:  # ConfigException, a missing file, bad YAML ...
        raise DemoError(f"cannot use the kubeconfig {kubeconfig}: {error}{_LOCAL_HINT}") from None
    try:
        _kubeconfig.check_readable(str(api_client.configuration.host))
    except ValueError as error:
        api_client.close()
        raise DemoError(f"cannot use the kubeconfig {kubeconfig}: {error}{_LOCAL_HINT}") from None
    return api_client


def _check_access(api_client: Any, namespace: str) -> None:
    """Fail fast, before logging anything, when the cluster cannot be read."""
    from kubernetes import client

    host = _kubeconfig.shown_url(str(api_client.configuration.host))
    try:
        client.CoreV1Api(api_client).list_namespaced_event(
            namespace, limit=1, _preload_content=False, _request_timeout=10
        )
    except Exception as error:  # unreachable, unauthorised, no such namespace ...
        status = getattr(error, "status", None)
        reason = f"{status} {getattr(error, 'reason', '')}" if status else str(error)
        raise DemoError(
            f"cannot list events in namespace {namespace!r} at {host}: {reason}{_LOCAL_HINT}"
        ) from None


def _cluster_sink(api_client: Any, config: Mapping[str, Any], api: str) -> KubernetesEventSink:
    """The sink for a real cluster: it writes through the client the demo reads with.

    The configuration's ``qps``, ``burst`` and ``drain_qps`` apply to it as to a sink the
    handler builds.
    """
    from k8s_logging_events.sink import KubernetesEventSink

    qps, burst, drain_qps = _rate_limit(config)
    return KubernetesEventSink(api_client, qps=qps, burst=burst, api=api, drain_qps=drain_qps)


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
            why = f": {error.__cause__}" if error.__cause__ is not None else ""
            raise DemoError(f"cannot apply the logging configuration: {error}{why}") from None
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


def _run_controller(
    config: dict[str, Any],
    make_pods: Callable[[list[str]], list[dict[str, Any]]],
    api_client: Any,
    target: str,
    write: Writer,
    *,
    api: str = "v1",
) -> DemoResult:
    """Make the pods, configure logging, reconcile the pods, flush, read the events back."""
    rng = random.Random()
    pods = make_pods(
        [
            prefix if prefix[-1].isdigit() else generated_name(prefix, rng)
            for prefix, _, _ in SCENARIOS
        ]
    )
    logger = logging.getLogger(LOGGER_NAME)
    tally = Tally()
    started = time.monotonic()
    logger.addFilter(tally)
    try:
        with _logging_configured(config) as event_handlers:
            if not event_handlers:
                raise DemoError("the configuration attaches no event handler to a logger")
            logging_started = time.monotonic()
            for pod, (_, reconcile, story) in zip(pods, SCENARIOS, strict=True):
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


def _rate_limit(config: Mapping[str, Any]) -> tuple[float, int, float]:
    """The (qps, burst, drain_qps) of the first event handler's sink, as configured or by
    default."""
    spec = _event_handler_configs(config)[0]
    return (
        float(spec.get("qps", 5.0)),
        int(spec.get("burst", 10)),
        float(spec.get("drain_qps", 100.0)),
    )


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


def _describe_with_kubectl(server: LocalApiServer, result: DemoResult) -> None:
    """Run ``kubectl describe pod`` for the first pod against the local server, when
    kubectl is installed; keep what it printed (or why it did not) in ``result``."""
    metadata = result.pods[0]["metadata"]
    command = f"kubectl describe pod {metadata['name']} --namespace {metadata['namespace']}"
    result.kubectl_command = command
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        result.kubectl_note = "kubectl is not installed"
        return
    with tempfile.TemporaryDirectory(prefix="k8s-logging-events-demo-") as scratch:
        kubeconfig = os.path.join(scratch, "kubeconfig")
        server.kubeconfig(kubeconfig)
        arguments = [kubectl, "--kubeconfig", kubeconfig, "--cache-dir", scratch]
        try:
            done = subprocess.run(  # noqa: S603 - kubectl from PATH, arguments of our own
                [*arguments, *command.split()[1:]],
                capture_output=True,
                text=True,
                timeout=_KUBECTL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            result.kubectl_note = f"kubectl did not run ({error})"
            return
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        result.kubectl_note = f"kubectl failed ({reason})"
        return
    result.kubectl_output = done.stdout
