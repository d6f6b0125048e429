"""Running a program in a fresh interpreter, as a user runs it, for tests that read its output;
and set-up such programs share."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from k8s_logging_events import sink as sinks

REPO = Path(__file__).resolve().parent.parent

NO_CLUSTER = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
"""The environment variables that would point a child at a cluster."""


def run_python(
    code: str, *args: str, cwd: Path, timeout: float = 60, file: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this interpreter, the repository importable and no cluster in
    sight (``env`` adds or replaces variables); capture its output as text. With ``file``,
    ``code`` is that file in ``cwd``, run as a script (a traceback names it; multiprocessing's
    spawn imports it again)."""
    environment = {k: v for k, v in os.environ.items() if k not in NO_CLUSTER}
    environment.update(PYTHONPATH=str(REPO), **env)
    if file:
        (cwd / file).write_text(code)
    return subprocess.run(
        [sys.executable, *([str(cwd / file)] if file else ["-c", code]), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=str(cwd),
        timeout=timeout,
        check=False,
    )


def hold_the_client_build() -> tuple[threading.Event, threading.Event]:
    """In a child program: ``(building, release)``. The handler's writer, as it builds its
    client (``KubernetesEventSink.from_url``), sets ``building``, then waits for ``release``
    (at most 30 s): the program acts (dictConfig, a fork) while that build is held."""
    real = sinks.KubernetesEventSink.from_url
    building, release = threading.Event(), threading.Event()

    def held_build(url: str, **keywords: Any) -> Any:
        building.set()
        release.wait(30)
        return real(url, **keywords)

    sinks.KubernetesEventSink.from_url = held_build  # type: ignore[method-assign]
    return building, release
