"""The quick start: one handler, three identical warnings, one Event with count 3.

Run it with ``python examples/quickstart.py``. Without a server it starts the library's
local Events API server and writes there; ``--server URL`` (or ``$EVENTS_API_SERVER``) names
another, e.g. ``kubectl proxy``'s ``http://127.0.0.1:8001`` to write to a real cluster. It
prints the event as ``kubectl describe pod web-0`` would show it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from typing import Any

from kubernetes import client

from k8s_logging_events import KubernetesEventHandler, format_events
from k8s_logging_events.testing import LocalApiServer

SERVER_ENV = "EVENTS_API_SERVER"
"""The environment variable that names the API server (as a URL) instead of ``--server``."""

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}
"""The object the event is about: a manifest dict here; a ``V1Pod`` from the client works too."""


def main(server: str | None = None) -> str:
    """Log three warnings about a pod, print the resulting Event, and return the table."""
    with contextlib.ExitStack() as stack:
        url = server or os.environ.get(SERVER_ENV) or stack.enter_context(LocalApiServer()).url

        # --- the part your program needs -----------------------------------------------------
        handler = KubernetesEventHandler(component="quickstart", sink=url)
        log = logging.getLogger("quickstart")
        log.addHandler(handler)
        for _ in range(3):
            log.warning(
                "Back-off pulling image %s", "busybox", extra={"involved": POD, "reason": "BackOff"}
            )
        # ---------------------------------------------------------------------------------------

        log.removeHandler(handler)
        handler.close()  # flushes: the three warnings are one event with count 3
        table = format_events(events_about(url, POD))
    print(table, end="")
    return table


def events_about(url: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Read back the events about ``obj`` from the API server at ``url`` (as JSON dicts)."""
    configuration = client.Configuration()
    configuration.host = url
    with client.ApiClient(configuration) as api_client:
        metadata = obj["metadata"]
        response: Any = client.CoreV1Api(api_client).list_namespaced_event(
            metadata["namespace"],
            field_selector=f"involvedObject.name={metadata['name']}",
            _preload_content=False,
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return items


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--server", help=f"the API server's URL (default: ${SERVER_ENV}, or local)")
    main(parser.parse_args().server)
