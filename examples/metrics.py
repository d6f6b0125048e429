"""Metrics: the handler's counters on a Prometheus endpoint (needs the ``metrics`` extra).

Run it with ``python examples/metrics.py`` (after ``pip install
'k8s-logging-events[metrics]'``). Without a server it starts the library's local Events API
server and writes there; ``--server URL`` (or ``$EVENTS_API_SERVER``) names another, e.g.
``kubectl proxy``'s ``http://127.0.0.1:8001``. It logs a few warnings, serves the metrics
with ``prometheus_client.start_http_server`` on a free port, scrapes that endpoint once as
Prometheus would, and prints the library's lines.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import urllib.request

import prometheus_client

from k8s_logging_events import KubernetesEventHandler, metrics
from k8s_logging_events.testing import LocalApiServer

SERVER_ENV = "EVENTS_API_SERVER"
"""The environment variable that names the API server (as a URL) instead of ``--server``."""

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}


def main(server: str | None = None, port: int = 0) -> str:
    """Log, serve the metrics on ``port`` (0: a free one), scrape them; print and return ours."""
    with contextlib.ExitStack() as stack:
        url = server or os.environ.get(SERVER_ENV) or stack.enter_context(LocalApiServer()).url

        # --- the part your program needs -----------------------------------------------------
        handler = KubernetesEventHandler(component="shop-operator", sink=url)
        exported = metrics.register(handler)  # prometheus_client's default registry
        http_server, thread = prometheus_client.start_http_server(port, addr="127.0.0.1")
        # ---------------------------------------------------------------------------------------

        stack.callback(handler.close)
        stack.callback(exported.unregister)
        stack.callback(thread.join, 5.0)
        stack.callback(http_server.server_close)
        stack.callback(http_server.shutdown)

        log = logging.getLogger("shop-operator")
        log.addHandler(handler)
        stack.callback(log.removeHandler, handler)
        for _ in range(3):
            log.warning("Back-off pulling image", extra={"involved": POD, "reason": "BackOff"})
        handler.flush()

        endpoint = f"http://127.0.0.1:{http_server.server_port}/metrics"
        with urllib.request.urlopen(endpoint, timeout=10) as response:
            text: str = response.read().decode()
    ours = "".join(line + "\n" for line in text.splitlines() if "k8s_logging_events_" in line)
    print(ours, end="")
    return ours


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--server", help=f"the API server's URL (default: ${SERVER_ENV}, or local)")
    parser.add_argument("--port", type=int, default=0, help="the metrics port (default: any)")
    arguments = parser.parse_args()
    main(arguments.server, arguments.port)
