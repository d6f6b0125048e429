"""Shared fixtures: no test may leave a thread running or change global logging state."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from k8s_logging_events import KubernetesEventHandler
from k8s_logging_events.testing import LocalApiServer

# Threads that belong to the test machinery or to a LocalApiServer fixture scoped wider than
# one test are not leaks of the code under test.
_ALLOWED_PREFIXES = ("k8s-apiserver", "pytest_timeout")


def _library_threads() -> set[threading.Thread]:
    return {
        t
        for t in threading.enumerate()
        if t is not threading.main_thread()
        and t.is_alive()
        and not t.name.startswith(_ALLOWED_PREFIXES)
    }


SLOW_ENV = "K8S_LOGGING_EVENTS_SLOW"


@pytest.fixture(autouse=True)
def _slow_only_when_selected(request: pytest.FixtureRequest) -> None:
    """Run tests marked ``slow`` only under ``-m slow`` (or with K8S_LOGGING_EVENTS_SLOW=1)."""
    if request.node.get_closest_marker("slow") is None:
        return
    selected = "slow" in (request.config.option.markexpr or "")
    if not selected and os.environ.get(SLOW_ENV) != "1":
        pytest.skip(f"a long reliability case: run it with -m slow or {SLOW_ENV}=1")


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail any test that leaves a thread of its own running (goleak's job in client-go)."""
    before = _library_threads()
    yield
    # a stopped thread may still be unwinding its last frame; join it briefly, never sleep
    deadline = time.monotonic() + 2.0
    leaked = _library_threads() - before
    for thread in leaked:
        thread.join(max(0.0, deadline - time.monotonic()))
    still = sorted(t.name for t in _library_threads() - before)
    assert still == [], f"threads left running: {still}"


@pytest.fixture(autouse=True)
def _restore_recursion_limit() -> Iterator[None]:
    """Put back the recursion limit: ``mypy.api.run``, which the type-checking tests run in
    this process, raises it to 2**14 for good, and a later test that recurses on purpose
    then overflows the C stack (a crash of the run) before it meets ``RecursionError``."""
    limit = sys.getrecursionlimit()
    yield
    sys.setrecursionlimit(limit)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put back every logger's handlers, level, propagation and disabled flag after a test."""
    manager = logging.Logger.manager
    root = logging.getLogger()
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    root_saved = (list(root.handlers), root.level)
    yield
    for name, lg in list(manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):
            continue
        handlers, level, propagate, disabled = saved.get(name, ([], logging.NOTSET, True, False))
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled
    root.handlers[:] = root_saved[0]
    root.setLevel(root_saved[1])


@pytest.fixture
def make_handler(k8s_apiserver: LocalApiServer) -> Iterator[Callable[..., KubernetesEventHandler]]:
    """Build handlers that write to the local server without sleeping between tries (the
    options given replace those); each is closed after the test."""
    made: list[KubernetesEventHandler] = []

    def make(**options: Any) -> KubernetesEventHandler:
        built = KubernetesEventHandler(
            **{"sink": k8s_apiserver.url, "sleep_duration": 0, **options}
        )
        made.append(built)
        return built

    yield make
    for built in made:
        built.close()
