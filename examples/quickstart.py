"""The quick start: one handler, one log call, one Event.

Run it with ``python examples/quickstart.py``; with no cluster configured it writes to a
local Events API server and prints what ``kubectl describe`` would show.
"""

from __future__ import annotations

import logging

from k8s_logging_events import KubernetesEventHandler, format_events
from k8s_logging_events.testing import LocalApiServer


def main() -> None:
    """Log three warnings about a pod and print the resulting Event."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}
    with LocalApiServer() as server:
        handler = KubernetesEventHandler(component="quickstart", sink=server.url)
        log = logging.getLogger("quickstart")
        log.addHandler(handler)
        for _ in range(3):
            log.warning(
                "Back-off pulling image %s", "busybox", extra={"involved": pod, "reason": "BackOff"}
            )
        handler.close()
        print(format_events(server.events()))


if __name__ == "__main__":
    main()
