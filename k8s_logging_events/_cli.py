"""The command line: ``python -m k8s_logging_events <command>``.

Each command is an ``argparse`` subcommand, one row of ``_COMMANDS``: its name, the function
that declares its arguments, and the function that runs it (stored in ``args.run``), whose
docstring is the command's help:

``demo``
    The demo that ``./dev demo`` runs (:mod:`k8s_logging_events._demo`): logging configured
    from ``examples/logging.yaml``, a simulated controller, and the events it produced as
    ``kubectl describe`` shows them, on a local API server (with real pods, and kubectl's
    own ``describe pod`` at the end) unless a cluster is named by ``--kubeconfig`` or
    ``KUBECONFIG``.

``apiserver``
    Run a :class:`~k8s_logging_events.testing.LocalApiServer` in the foreground until
    Ctrl-C (or SIGTERM), printing its URL: the local Events API (with Namespaces and Pods)
    that the demo, ``kubectl`` and hand-run experiments talk to when no cluster is at hand,
    optionally enforcing the EventRateLimit admission plugin.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import select
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from types import FrameType
from typing import Any

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="python -m k8s_logging_events",
        description="Kubernetes Events from Python logging: tools.",
    )
    parser.add_argument(
        "--version", action="version", version=metadata.version("k8s-logging-events")
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add_arguments, run in _COMMANDS:
        summary, _, details = (inspect.getdoc(run) or name).partition("\n\n")
        command = commands.add_parser(name, help=summary, description=details)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` (``sys.argv[1:]`` by default); return the exit code."""
    args = build_parser().parse_args(argv)
    run: Command = args.run
    return run(args)


# -- demo -----------------------------------------------------------------------------


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("where the events go")
    target.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="write to the cluster of this kubeconfig's current context (default: $KUBECONFIG "
        "if set, else a local server); the pods are simulated, so the cluster gets events "
        "about pods that do not exist",
    )
    target.add_argument(
        "--local",
        action="store_true",
        help="use a local Events API server even when KUBECONFIG is set",
    )
    target.add_argument(
        "--namespace",
        default="default",
        metavar="NAME",
        help="namespace of the simulated pods and their events (default: default)",
    )
    target.add_argument(
        "--api",
        choices=("v1", "events.k8s.io/v1"),
        default="v1",
        help="which Events API to write: core/v1 with counts (default) or events.k8s.io/v1 "
        "with series",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the logging configuration, YAML for dictConfig (default: examples/logging.yaml, "
        "a copy of which ships inside the package); its event handlers' sink and api are "
        "replaced (by where the events go and --api)",
    )
    parser.add_argument(
        "--show-logs",
        action="store_true",
        help="let the configuration's console handler print every record on stderr",
    )


def _run_demo(args: argparse.Namespace) -> int:
    """run the demo: a simulated controller whose logging becomes Kubernetes Events

    Configure logging from examples/logging.yaml, reconcile three pods (image-pull back-offs,
    aggregated probe failures, a burst for the spam filter), flush, and print the events as
    kubectl describe shows them, with the handler's counters. Without a cluster (no
    --kubeconfig, no KUBECONFIG) the events go to a local API server that the demo starts and
    stops, the pods are created there, and the demo ends with kubectl describe pod of one of
    them when kubectl is installed.
    """
    from pathlib import Path

    from k8s_logging_events import _demo  # imported only for this command

    options = _demo.DemoOptions(
        kubeconfig=args.kubeconfig,
        local=args.local,
        namespace=args.namespace,
        config=Path(args.config) if args.config else _demo.DEFAULT_CONFIG,
        show_logs=args.show_logs,
        api=args.api,
    )
    try:
        result = _demo.run(options)
    except _demo.DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # ``... demo | head``: stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail too
        return 1
    return 0 if result.ok else 1


# -- apiserver ------------------------------------------------------------------------


def _apiserver_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=0, help="port to listen on (0, the default, picks a free one)"
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NAME",
        help="create this namespace at start (repeatable); default, kube-system and "
        "kube-public always exist",
    )
    parser.add_argument(
        "--auto-create-namespaces",
        action="store_true",
        help="create a missing namespace on the first write into it instead of answering 404",
    )
    parser.add_argument(
        "--event-ttl",
        type=float,
        default=None,
        metavar="SECONDS",
        help="forget events this long after their last write (default: keep them)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a throwaway CA (needs the trustme package); use --kubeconfig "
        "to hand the CA to kubectl",
    )
    parser.add_argument(
        "--token",
        default=None,
        metavar="TOKEN",
        help="require this bearer token on every request (others get 401 Unauthorized)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        metavar="FILE",
        help="write a kubeconfig for the server (URL, CA, token) to FILE once it listens",
    )
    parser.add_argument(
        "--event-rate-limit",
        type=_event_rate_limit,
        default=None,
        metavar="FILE|JSON",
        help="enforce the EventRateLimit admission plugin with this configuration: a YAML or "
        "JSON file (the plugin's own, or an AdmissionConfiguration that holds it) or inline "
        'JSON such as \'{"limits": [{"type": "Namespace", "qps": 50, "burst": 100}]}\'',
    )
    parser.add_argument(
        "--delay",
        type=_delay,
        default=0.0,
        metavar="SECONDS",
        help="answer every request this many seconds late (a network round trip to a real "
        "cluster; default 0)",
    )


def _port(value: str) -> int:
    """Read ``--port``: a number a socket can bind (argparse's ``type``)."""
    port = int(value) if value.strip().isdecimal() else -1  # isdigit() takes "²"
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (0 to 65535)")
    return port


def _delay(value: str) -> float:
    """Read ``--delay``: seconds, zero or more (argparse's ``type``)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):  # NaN fails both
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0 or more)")
    return seconds


def _event_rate_limit(value: str) -> dict[str, Any]:
    """Read ``--event-rate-limit``: inline JSON, or a YAML/JSON file (argparse's ``type``)."""
    import json
    from pathlib import Path

    import yaml  # the kubernetes client depends on PyYAML

    path: Path | None = None
    try:
        if value.lstrip().startswith("{"):
            loaded = json.loads(value)
        else:
            path = Path(value)
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {value}: {error.strerror}") from None
    except ValueError as error:  # JSONDecodeError, and yaml's errors below
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"{value} is not YAML: {error}") from None
    if isinstance(loaded, dict) and loaded.get("kind") == "AdmissionConfiguration":
        loaded = _plugin_configuration(loaded, path)
    if not isinstance(loaded, dict):
        raise argparse.ArgumentTypeError(
            f"expected a mapping with limits, got {type(loaded).__name__}"
        )
    return loaded


def _plugin_configuration(admission: dict[str, Any], path: Any) -> Any:
    """The EventRateLimit configuration inside an ``AdmissionConfiguration`` (inline or a
    ``path``, relative to the file), as kube-apiserver's ``--admission-control-config-file``
    reads it."""
    import yaml

    for plugin in admission.get("plugins") or ():
        if isinstance(plugin, dict) and plugin.get("name") == "EventRateLimit":
            if "configuration" in plugin:
                return plugin["configuration"]
            if plugin.get("path"):
                where = path.parent / plugin["path"] if path is not None else plugin["path"]
                try:
                    with open(where, encoding="utf-8") as file:
                        return yaml.safe_load(file)
                except (OSError, yaml.YAMLError) as error:
                    raise argparse.ArgumentTypeError(f"cannot read {where}: {error}") from None
    raise argparse.ArgumentTypeError("the AdmissionConfiguration has no EventRateLimit plugin")


def _run_apiserver(args: argparse.Namespace) -> int:
    """run a local Kubernetes Events API server until Ctrl-C

    Serve core/v1 and events.k8s.io/v1 Events (and Namespaces and Pods) on HOST:PORT until
    interrupted. Point kubectl at it with --server, or a kubernetes client with
    Configuration(host=URL).
    """
    from k8s_logging_events.testing import LocalApiServer  # imported only for this command

    try:
        server = LocalApiServer(
            host=args.host,
            port=args.port,
            namespaces=args.namespace,
            auto_create_namespaces=args.auto_create_namespaces,
            event_ttl=args.event_ttl,
            tls=args.tls,
            token=args.token,
            event_rate_limit=args.event_rate_limit,
        )
    except (ValueError, RuntimeError) as error:  # RuntimeError: --tls without trustme
        print(f"apiserver: {error}", file=sys.stderr)
        return 2
    with _interrupt_wakes(signal.SIGINT, signal.SIGTERM) as interrupted:
        if args.delay > 0:
            server.inject(action="delay", delay=args.delay, times=None)
        try:
            server.start()
        except OSError as error:
            print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
            return 1
        try:
            try:
                _print_serving(server, args)
            except OSError as error:  # --kubeconfig FILE that cannot be written
                print(f"apiserver: cannot write {args.kubeconfig}: {error}", file=sys.stderr)
                return 1
            while not select.select([interrupted], [], [], 3600)[0]:
                pass
        finally:
            server.stop()
    print("stopped", flush=True)
    return 0


def _print_serving(server: Any, args: argparse.Namespace) -> None:
    print(f"Kubernetes Events API on {server.url}", flush=True)
    if args.event_rate_limit is not None:
        limits = ", ".join(
            f"{limit['type']} {limit['qps']}/s burst {limit['burst']}"
            for limit in args.event_rate_limit["limits"]
        )
        print(f"  EventRateLimit: {limits}", flush=True)
    if args.kubeconfig:
        server.kubeconfig(args.kubeconfig)
        print(f"  kubectl --kubeconfig {args.kubeconfig} get events -A", flush=True)
    else:
        print(f"  kubectl --server {server.url} get events -A", flush=True)
    print("Press Ctrl-C to stop.", flush=True)


@contextlib.contextmanager
def _interrupt_wakes(*signals: signal.Signals) -> Iterator[socket.socket]:
    """While the block runs, each of ``signals`` makes the socket it yields readable.

    The Python-level handler does nothing: a handler that took a lock (``Event.set``) would
    hang for ever if the signal came while the main thread held that lock, which it does
    for a moment on its way into ``Event.wait``. The interpreter's own C handler writes to
    the wakeup socket whichever thread the signal lands on.
    """
    readable, writable = socket.socketpair()
    writable.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writable.fileno(), warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, _ignore) for sig in signals}
    try:
        yield readable
    finally:
        # the wakeup first: a signal between the two steps then meets the quiet handler,
        # never the application's with our socket still set as the interpreter's wakeup
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        readable.close()
        writable.close()


def _ignore(signum: int, frame: FrameType | None) -> None:
    del signum, frame


_COMMANDS: tuple[tuple[str, Callable[[argparse.ArgumentParser], None], Command], ...] = (
    ("demo", _demo_arguments, _run_demo),
    ("apiserver", _apiserver_arguments, _run_apiserver),
)
"""Each subcommand: its name, what declares its arguments, and what runs it, whose docstring
gives the ``--help`` (the summary line in the command list, the rest as the description).
A further subcommand is one more row."""
