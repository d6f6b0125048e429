"""Running a program in a fresh interpreter, as a user runs it, for tests that read its output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

NO_CLUSTER = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
"""The environment variables that would point a child at a cluster."""


def run_python(
    code: str, *args: str, cwd: Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this interpreter, the repository importable and no cluster in
    sight (``env`` adds or replaces variables); capture its output as text."""
    environment = {k: v for k, v in os.environ.items() if k not in NO_CLUSTER}
    environment.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=str(cwd),
        timeout=timeout,
        check=False,
    )
