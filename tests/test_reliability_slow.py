"""The long reliability cases: the full-size versions of tests/test_reliability.py.

Skipped unless selected, because together they take a few minutes:

    .venv/bin/python -m pytest -m slow tests/test_reliability_slow.py
    K8S_LOGGING_EVENTS_SLOW=1 .venv/bin/python -m pytest tests/test_reliability_slow.py

``bench/reliability.py`` runs the same scenarios and prints their figures as a table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from k8s_logging_events.testing import LocalApiServer
from tests.reliability_scenarios import (
    check_chaos,
    check_forks,
    check_outage,
    check_threads,
    run_chaos,
    run_exit_child,
    run_forks,
    run_outage,
    run_threads,
    unaccounted,
)
from tests.test_reliability import check_hostile_input

pytestmark = pytest.mark.slow  # skipped unless selected: see conftest.py


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer() as server:
        yield server


@pytest.mark.timeout(300)
@pytest.mark.parametrize("commit", [False, True], ids=["before-stored", "after-stored"])
def test_chaos_50000_occurrences_over_500_objects_from_8_threads(server, commit) -> None:
    """The issue's chaos run at full size, in both fault modes."""
    result = run_chaos(
        server, occurrences=50_000, objects=500, threads=8, commit=commit, flush_timeout=120
    )
    check_chaos(result)


@pytest.mark.timeout(120)
def test_a_long_outage(server) -> None:
    """Three seconds of refused connections, then three of hanging requests, with a retry
    schedule (12 tries, 0.5 s apart) that outlasts them."""
    result = run_outage(
        server,
        refuse_seconds=3.0,
        hang_seconds=3.0,
        objects_per_phase=50,
        min_calls=5_000,
        sleep_duration=0.5,
        read_timeout=0.5,
    )
    check_outage(result)


def test_exit_with_the_default_flush_timeout_while_the_server_hangs(server) -> None:
    """flush_timeout 5 s (the default) and 1,000 pending events: the exit waits 6 s at most."""
    server.inject(action="hang", times=None)
    result = run_exit_child(server.url, "exit", flush_timeout=5.0, records=1_000, objects=100)
    assert result.returncode == 0, result.stderr
    assert result.exit_seconds <= 6.0, result.exit_seconds
    assert "Traceback" not in result.stderr
    assert unaccounted(result.late["stats"]) == 0


@pytest.mark.timeout(600)
def test_16_threads_log_10000_records_each_through_a_dictconfig(server) -> None:
    result = run_threads(server, threads=16, records=10_000, objects=1_000)
    check_threads(result)
    assert all(s["failed"] == 0 for s in result.stats)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(600)
def test_fifty_forks_while_threads_log(server) -> None:
    check_forks(run_forks(server, forks=50, threads=4))


@pytest.mark.timeout(600)
def test_a_thousand_hostile_log_calls() -> None:
    check_hostile_input(max_examples=1_000)
