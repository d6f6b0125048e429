"""Logging events from asyncio coroutines: the event loop is never blocked.

``emit`` only snapshots the record and hands it to a queue, so coroutines log as they would
to any handler: no ``await``, no executor. The API writes happen on the handler's own
threads. Only the final ``flush()`` waits for the API server, so it runs in a worker
thread (``asyncio.to_thread``) while the loop stays free.

Run it with ``python examples/asyncio_app.py``. Without a server it starts the library's
local Events API server; ``--server URL`` (or ``$EVENTS_API_SERVER``) names another, e.g.
``kubectl proxy``'s ``http://127.0.0.1:8001``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
from typing import Any

from kubernetes import client

from k8s_logging_events import EventLoggerAdapter, KubernetesEventHandler, format_events
from k8s_logging_events.testing import LocalApiServer

SERVER_ENV = "EVENTS_API_SERVER"
"""The environment variable that names the API server (as a URL) instead of ``--server``."""

log = logging.getLogger("example.asyncio")


def job(name: str) -> dict[str, Any]:
    """A batch Job as a manifest dict: the object the events are about."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
    }


async def watch_job(obj: dict[str, Any], retries: int) -> None:
    """Follow one job: retry its failing step ``retries`` times, then report success."""
    events = EventLoggerAdapter(log, obj)
    events.info("Started job %s", obj["metadata"]["name"], extra={"reason": "Started"})
    for _ in range(retries):
        await asyncio.sleep(0)  # stands in for awaiting the work (an HTTP call, a queue ...)
        events.warning(
            "Step download failed, retrying: connection reset by peer", extra={"reason": "BackOff"}
        )
    events.info("Job completed", extra={"reason": "Completed"})


async def run(url: str) -> list[dict[str, Any]]:
    """Follow three jobs concurrently, flush off the loop, and return the jobs."""
    handler = KubernetesEventHandler(component="example-asyncio", sink=url)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    retries = {"nightly-report": 0, "resize-images": 2, "sync-catalog": 5}
    jobs = [job(name) for name in retries]
    try:
        await asyncio.gather(*(watch_job(obj, retries[obj["metadata"]["name"]]) for obj in jobs))
        # flush() waits for the API server: in a thread, so the loop keeps running
        await asyncio.to_thread(handler.flush)
    finally:
        log.removeHandler(handler)
        handler.close()  # quick after the flush; at exit, logging.shutdown() would do it
    return jobs


def main(server: str | None = None) -> str:
    """Run the program against a server (a local one by default) and print the events."""
    with contextlib.ExitStack() as stack:
        url = server or os.environ.get(SERVER_ENV) or stack.enter_context(LocalApiServer()).url
        jobs = asyncio.run(run(url))
        report = "\n".join(f"Name:  {obj['metadata']['name']}\n{table(url, obj)}" for obj in jobs)
    print(report, end="")
    return report


def table(url: str, obj: dict[str, Any]) -> str:
    """``kubectl describe``'s Events block for ``obj``, read back from the server."""
    configuration = client.Configuration()
    configuration.host = url
    with client.ApiClient(configuration) as api_client:
        metadata = obj["metadata"]
        response: Any = client.CoreV1Api(api_client).list_namespaced_event(
            metadata["namespace"],
            field_selector=f"involvedObject.uid={metadata['uid']}",
            _preload_content=False,
        )
        return format_events(json.loads(response.data))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--server", help=f"the API server's URL (default: ${SERVER_ENV}, or local)")
    main(parser.parse_args().server)
