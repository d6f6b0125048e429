"""How fast is LocalApiServer? Creates and patches per second, official client vs raw HTTP.

The local Events API server must not be what limits the library's benchmarks. This script
measures, in one process and one run (client and server share the interpreter, so this is
the one-core figure):

* creates/s and patches/s through ``kubernetes.client.CoreV1Api`` (the sink's path), and
* the same requests sent with bare ``http.client`` on one keep-alive connection, the
  baseline that shows what the server itself costs,

and prints them with the ratio. Run it with::

    .venv/bin/python bench/apiserver_throughput.py [--count 2000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from k8s_logging_events.testing import LocalApiServer

BODY_TEMPLATE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Event",
    "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "apiVersion": "v1"},
    "reason": "BackOff",
    "message": "Back-off restarting failed container",
    "source": {"component": "kubelet", "host": "node-1"},
    "firstTimestamp": "2024-01-01T00:00:05Z",
    "lastTimestamp": "2024-01-01T00:00:05Z",
    "count": 1,
    "type": "Warning",
}
PATCH = {"count": 2, "lastTimestamp": "2024-01-01T00:00:15Z", "message": "Back-off again"}


def _body(name: str) -> Any:
    """The event body the client converts to a model (a dict, as the sink sends it)."""
    return {**BODY_TEMPLATE, "metadata": {"name": name, "namespace": "default"}}


def _rate(count: int, action: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for index in range(count):
        action(index)
    return count / (time.perf_counter() - started)


def measure_client(server: LocalApiServer, count: int, prefix: str) -> tuple[float, float]:
    """Creates/s and patches/s through the official client's CoreV1Api."""
    with server.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        core.list_namespaced_event("default")  # connect and warm up

        def create(index: int) -> None:
            core.create_namespaced_event("default", _body(f"{prefix}{index}"))

        def patch(index: int) -> None:
            core.patch_namespaced_event(f"{prefix}{index}", "default", PATCH)

        return _rate(count, create), _rate(count, patch)


def measure_raw(server: LocalApiServer, count: int, prefix: str) -> tuple[float, float]:
    """The same requests with bare http.client on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port)
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    patch_headers = {**headers, "Content-Type": "application/strategic-merge-patch+json"}
    patch_body = json.dumps(PATCH)

    def send(method: str, path: str, body: str, sent: dict[str, str], expect: int) -> None:
        connection.request(method, path, body, sent)
        response = connection.getresponse()
        response.read()
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status}")

    def create(index: int) -> None:
        body = json.dumps(_body(f"{prefix}{index}"))
        send("POST", "/api/v1/namespaces/default/events", body, headers, 201)

    def patch(index: int) -> None:
        path = f"/api/v1/namespaces/default/events/{prefix}{index}"
        send("PATCH", path, patch_body, patch_headers, 200)

    try:
        return _rate(count, create), _rate(count, patch)
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="requests of each kind")
    args = parser.parse_args(argv)
    with LocalApiServer(max_requests=1000) as server:
        raw_create, raw_patch = measure_raw(server, args.count, "raw-")
        client_create, client_patch = measure_client(server, args.count, "client-")
    print(f"LocalApiServer throughput, {args.count} requests of each kind, one process")
    print()
    print(f"{'':<24}{'creates/s':>12}{'patches/s':>12}")
    print(f"{'kubernetes CoreV1Api':<24}{client_create:>12.0f}{client_patch:>12.0f}")
    print(f"{'raw http.client':<24}{raw_create:>12.0f}{raw_patch:>12.0f}")
    print(
        f"{'client / raw':<24}{client_create / raw_create:>12.2f}{client_patch / raw_patch:>12.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
