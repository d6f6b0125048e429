"""What the tests of the local API server share: bodies to send and answers to expect.

The expected ``Status`` bodies are written out here, by the tests, not taken from the
server's own code: a mistake shared by both would pass unnoticed.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

T0 = datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)
"""The first and last timestamps of :func:`core_event`."""


def core_event(name: str, namespace: str = "default", **fields: Any) -> Any:
    """A core/v1 event body in the style of client-go's recorder (no eventTime) about pod
    ``web``: a dict, which the official client sends as it is; ``fields`` replace whole
    fields."""
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "kind": "Pod",
            "name": "web",
            "namespace": namespace,
            "apiVersion": "v1",
        },
        "reason": "Started",
        "message": "Started container web",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": T0,
        "lastTimestamp": T0,
        "count": 1,
        "type": "Normal",
    }
    body.update(fields)
    return body


def status(error: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    """The Status body of an API error."""
    body: dict[str, Any] = json.loads(error.value.body or "{}")
    return body


def failure(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The Status body the API server answers a failed request with."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    body.update(status="Failure", message=message, reason=reason)
    if details is not None:
        body["details"] = details
    return {**body, "code": code}


@dataclass
class Command:
    """``python -m k8s_logging_events apiserver`` while it runs, and what it printed."""

    process: subprocess.Popen[str]
    out: str = ""
    """Its standard output after the first line, once it has stopped."""
    first_line: str = ""
    """The first line it printed: ``Kubernetes Events API on <url>``."""

    @property
    def url(self) -> str:
        """The URL the first line names."""
        return self.first_line.split()[-1]

    def readline(self) -> str:
        """The next line of its standard output."""
        assert self.process.stdout is not None
        return self.process.stdout.readline()


@contextlib.contextmanager
def apiserver_command(*args: str) -> Iterator[Command]:
    """Run ``python -m k8s_logging_events apiserver ARGS`` until the block ends, then
    interrupt it (Ctrl-C): it must stop cleanly, with exit code 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "k8s_logging_events", "apiserver", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    command = Command(process)
    try:
        command.first_line = command.readline()
        yield command
        process.send_signal(signal.SIGINT)
        command.out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
