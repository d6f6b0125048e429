"""A pre-fork server for real: gunicorn, two sync workers, logging set by ``logconfig_dict``.

The test writes a tiny WSGI app and the gunicorn configuration file of docs/integrations.md
(its ``sink`` pointed at a LocalApiServer), starts ``python -m
gunicorn`` on a loopback port, makes requests whose handlers log events, sends SIGTERM to the
master and checks that the local API server holds every occurrence exactly once. Every wait
is bounded; nothing sleeps on the wall clock. The test listens on the port itself and hands
the socket to gunicorn (``fd://``): a port found free, then bound by gunicorn once it has
started, could be taken meanwhile by any other process binding port 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from k8s_logging_events.testing import LocalApiServer
from tests._recipes import recipe

pytest.importorskip("gunicorn")

REQUESTS = 24

APP = """
import logging
import os

log = logging.getLogger("shop")


def app(environ, start_response):
    n = int(environ["PATH_INFO"].strip("/") or 0)
    # one object per request (each event counts 1) and one shared object (counts add up)
    log.warning("Order %d failed", n, extra={
        "involved": {"apiVersion": "v1", "kind": "ConfigMap", "name": f"order-{n}",
                     "namespace": "shop", "uid": f"uid-order-{n}"},
        "reason": "OrderFailed",
    })
    log.warning("Payment provider slow", extra={
        "involved": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop",
                     "namespace": "shop", "uid": "uid-shop"},
        "reason": "SlowUpstream",
    })
    # no event: the library reports it (once per call site) where gunicorn's errors go
    log.warning("Order lost", extra={"involved": 42, "reason": "OrderLost"})
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

# the test's own settings, after the recipe of docs/integrations.md (which sets the
# workers, the worker class and logconfig_dict)
TEST_SETTINGS = """
bind = "fd://{fd}"
graceful_timeout = 15
timeout = 30
control_socket_disable = True  # gunicorn 25.1+: no control socket in ~/.gunicorn
"""


def _listening_socket() -> socket.socket:
    """A socket listening on a free loopback port, for gunicorn to serve on: a connection
    made before the workers are up waits in its backlog instead of being refused."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener


def test_gunicorn_workers_write_each_occurrence_once_and_flush_on_sigterm(tmp_path: Path) -> None:
    """Every occurrence reaches the server once, SIGTERM included; the library's reports
    go where gunicorn's errors go (standard error), not to the access log's stdout."""
    with LocalApiServer(auto_create_namespaces=True) as server, _listening_socket() as listener:
        port = listener.getsockname()[1]
        (tmp_path / "shopapp.py").write_text(APP)
        config = tmp_path / "gunicorn_conf.py"
        settings = TEST_SETTINGS.format(fd=listener.fileno())
        config.write_text(recipe("gunicorn", server.url) + settings)
        log_file, out_file = tmp_path / "gunicorn.log", tmp_path / "stdout.log"
        with log_file.open("wb") as errors, out_file.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(config), "shopapp:app"],
                cwd=tmp_path,
                stdout=output,
                stderr=errors,
                env={**os.environ, "PYTHONPATH": str(tmp_path)},
                pass_fds=(listener.fileno(),),
            )
            listener.close()  # gunicorn's now: the requests wait for its workers to accept
            try:
                pids = set()
                for n in range(REQUESTS):
                    # the first request also waits for gunicorn to start (bounded as before)
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/{n}", timeout=30
                    ) as answer:
                        pids.add(answer.read().decode())
                process.send_signal(signal.SIGTERM)
                returncode = process.wait(timeout=40)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        log_text = log_file.read_text(errors="replace")
        out_text = out_file.read_text(errors="replace")
        assert returncode == 0, log_text
        stored = server.events("shop")
    for e in sorted(stored, key=lambda e: (e["reason"], e["involvedObject"]["name"])):
        ref = e["involvedObject"]
        print(  # the events read back, for -s
            f"[gunicorn] {ref['kind']}/{ref['name']} reason={e['reason']} count={e['count']} "
            f"message={e['message']!r} source.host={e['source'].get('host', '')}"
        )
    orders = sorted(e["involvedObject"]["name"] for e in stored if e["reason"] == "OrderFailed")
    assert orders == sorted(f"order-{n}" for n in range(REQUESTS)), log_text
    assert all(e["count"] == 1 for e in stored if e["reason"] == "OrderFailed")
    slow = [e for e in stored if e["reason"] == "SlowUpstream"]
    # the workers share a source: one event (deterministic names), counting every request
    assert [e["count"] for e in slow] == [REQUESTS], log_text
    assert len(pids) <= 2
    # the library's reports land beside gunicorn's errors, not in the stdout of the access log
    assert "Booting worker" in log_text, log_text
    assert "Unable to refer to the involved object" in log_text, log_text
    assert "Unable to refer" not in out_text, out_text
