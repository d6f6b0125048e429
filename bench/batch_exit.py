"""A batch job's events at exit: the table of docs/batch-jobs.md ("Sizing it").

    python bench/batch_exit.py

Each row runs a child process that logs one INFO record about each of N distinct pods
through a ``KubernetesEventHandler`` with the row's options, then returns from its script
with no further call (so ``logging.shutdown()`` flushes and closes the handler), or first
calls ``drain(timeout=60)``. The server is a ``LocalApiServer`` in this process, as in the
doc, with every create answered 50 ms late in the rows of a slow server. Printed: the
events on the server after the child ended, and the time from the child's last logging
call to its end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from _common import Table, machine

from k8s_logging_events.testing import LocalApiServer

CHILD = textwrap.dedent(
    """
    import json, logging, sys, time
    from k8s_logging_events import KubernetesEventHandler

    url, objects, drain = sys.argv[1], int(sys.argv[2]), sys.argv[4]
    options = json.loads(sys.argv[3])
    handler = KubernetesEventHandler(sink=url, component="bench-batch", **options)
    log = logging.getLogger("job")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    for number in range(objects):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"job-{number}", "namespace": "default"}}
        log.info("Step done", extra={"involved": pod, "reason": "Done"})
    print(json.dumps({"exiting": time.monotonic()}), flush=True)
    if drain == "drain":
        started = time.monotonic()
        drained = handler.drain(timeout=60)
        print(json.dumps({"drained": drained, "after": time.monotonic() - started}), flush=True)
    """
)

ROWS: list[tuple[int, float, dict[str, object], bool]] = [
    (100, 0.0, {}, False),
    (300, 0.0, {}, False),
    (1000, 0.0, {}, False),
    (300, 0.05, {}, False),
    (300, 0.05, {"writers": 16}, False),
    (1000, 0.05, {"writers": 16, "drain_qps": 0}, False),
    (1000, 0.05, {}, True),
]


def run_row(objects: int, delay: float, options: dict[str, object], drain: bool) -> list[str]:
    """One row: the child's events on a fresh server, and how long its exit took."""
    with LocalApiServer() as server:
        if delay:
            server.inject(method="POST", path=r"/events$", action="delay", delay=delay, times=None)
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                server.url,
                str(objects),
                json.dumps(options),
                "drain" if drain else "",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        ended = time.monotonic()
        stored = len(server.events("default"))
    said = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    exiting = next((line["exiting"] for line in said if "exiting" in line), float("nan"))
    drained = next((line for line in said if "drained" in line), None)
    on_server = f"{stored:,}"
    if stored < objects:
        on_server += f" ({objects - stored:,} not, {_reported(child.stderr)})"
    if drained is not None:
        on_server += f" (drain returned {drained['drained']} after {drained['after']:.1f} s)"
    shown = ", ".join(f"{key}: {value}" for key, value in options.items()) or "defaults"
    if drain:
        shown += ", then drain(timeout=60)"
    return [
        f"{objects:,}",
        f"{delay * 1000:g} ms" if delay else "at once",
        "  " + shown,
        "  " + on_server,
        f"{ended - exiting:.1f} s",
    ]


def _reported(stderr: str) -> str:
    return "reported" if "Unable to write" in stderr else "not reported"


def main() -> int:
    """Run every row and print the table."""
    print(machine())
    table = Table(
        [("events", 7), ("per create", 12), ("options", 48), ("on the server", 52), ("exit", 8)]
    )
    table.header()
    for row in ROWS:
        table.row(*run_row(*row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
