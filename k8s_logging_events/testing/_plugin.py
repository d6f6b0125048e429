"""The pytest plugin of ``k8s_logging_events``: a local Events API server per test.

Installed with the package (the ``pytest11`` entry point ``k8s_logging_events``), so any
project that depends on the library gets these fixtures without a ``conftest.py``. They sit
on the test side of the pipeline: the sink under test writes to a
:class:`~k8s_logging_events.testing.LocalApiServer` instead of a cluster.

Fixtures (all function-scoped):

``k8s_apiserver``
    A started :class:`~k8s_logging_events.testing.LocalApiServer`, stopped (threads
    joined) after the test. Configure it with the ``k8s_apiserver`` marker, whose keyword
    arguments go to the constructor::

        @pytest.mark.k8s_apiserver(namespaces=["shop"], auto_create_namespaces=True)
        def test_something(k8s_apiserver): ...

``k8s_api_client``
    A ``kubernetes.client.ApiClient`` for ``k8s_apiserver`` (private configuration,
    ``retries = False``), closed after the test.

``k8s_core_v1``
    ``kubernetes.client.CoreV1Api`` on ``k8s_api_client``.

``k8s_events_v1``
    ``kubernetes.client.EventsV1Api`` on ``k8s_api_client``.

``k8s_events``
    Captures the events the test's logging produces: a
    :class:`~k8s_logging_events.testing.CapturedEvents` whose handler is attached to the root
    logger (at INFO) for the test and writes to an in-memory sink. Read ``k8s_events.events``
    or assert with ``k8s_events.assert_has(reason="BackOff", count=3)``; a failed assertion
    prints the captured events as ``kubectl describe`` would, and, when nothing was
    captured while loggers are disabled, names them. The ``k8s_events`` marker's arguments go
    to :func:`capture_events`: ``@pytest.mark.k8s_events("my.operator", api="auto")``. After
    the test the logging configuration is restored as the test found it (handlers, filters,
    levels, propagation, disabled flags), whatever the test's code configured. A test that
    fails shows what it captured, as caplog its records, in a "Captured events call" section.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from k8s_logging_events.testing._logstate import LoggingState, enable_library_logger

# the fixtures import what they use: this module is loaded into every pytest session of a
# project that installs the library, most of which never start a server
if TYPE_CHECKING:
    import pluggy

    from k8s_logging_events.testing._capture import CapturedEvents
    from k8s_logging_events.testing.apiserver import LocalApiServer

__all__ = [
    "k8s_api_client",
    "k8s_apiserver",
    "k8s_core_v1",
    "k8s_events",
    "k8s_events_v1",
    "pytest_configure",
    "pytest_runtest_makereport",
]

# what pytest 6.2 and pluggy 1.0 offer (no StashKey, no new-style wrapper): the plugin is
# loaded into every session of a project that installs the library, on whatever pytest it has
_CAPTURED: dict[pytest.Item, CapturedEvents] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``k8s_apiserver`` marker (so that ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        "k8s_apiserver(**kwargs): keyword arguments for the LocalApiServer of the "
        "k8s_apiserver fixture",
    )
    config.addinivalue_line(
        "markers",
        "k8s_events(logger=None, **options): capture_events' arguments for the k8s_events "
        "fixture: the logger to capture (the root by default), then handler options",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """A failed test that used ``k8s_events`` shows what it captured, as caplog its records."""
    report = (yield).get_result()
    captured = _CAPTURED.get(item)
    if captured is not None and report.failed and report.when == "call":
        try:
            shown = captured.report()
        except AssertionError as error:  # the handler was removed, or writes still hang
            shown = str(error)
        report.sections.append(("Captured events call", shown))


@pytest.fixture
def k8s_apiserver(request: pytest.FixtureRequest) -> Iterator[LocalApiServer]:
    """A running :class:`LocalApiServer` for one test, set up by the ``k8s_apiserver`` marker."""
    from k8s_logging_events.testing.apiserver import LocalApiServer

    marker = request.node.get_closest_marker("k8s_apiserver") or pytest.mark.k8s_apiserver.mark
    # the reports of the test's handlers reach caplog, as with k8s_events: the logger exists
    # from this plugin's start, so a conftest's dictConfig has disabled it
    library_was_disabled = enable_library_logger()
    try:
        # its positional arguments too: dropped, they would be a setting silently not applied
        with LocalApiServer(*marker.args, **marker.kwargs) as server:
            yield server
    finally:
        enable_library_logger(not library_was_disabled)


@pytest.fixture
def k8s_api_client(k8s_apiserver: LocalApiServer) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` talking to ``k8s_apiserver``, closed afterwards."""
    api_client: Any = k8s_apiserver.api_client()
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def k8s_core_v1(k8s_api_client: Any) -> Any:
    """``kubernetes.client.CoreV1Api`` on the local server."""
    from kubernetes import client  # slow to import: only when used

    return client.CoreV1Api(k8s_api_client)


@pytest.fixture
def k8s_events_v1(k8s_api_client: Any) -> Any:
    """``kubernetes.client.EventsV1Api`` on the local server."""
    from kubernetes import client  # slow to import: only when used

    return client.EventsV1Api(k8s_api_client)


@pytest.fixture
def k8s_events(request: pytest.FixtureRequest) -> Iterator[CapturedEvents]:
    """The events the test's logging produced (records with ``extra={"involved": ...}``),
    captured with the ``k8s_events`` marker's arguments (the logger, ``api=...``, any handler
    option) as :func:`capture_events`'s.

    After the test, the logging configuration is put back as the test found it (every
    logger's handlers, filters, level, propagation and disabled flag), so that a test whose code
    calls ``dictConfig`` does not silence the loggers of the tests after it.
    """
    from k8s_logging_events.testing._capture import capture_events

    marker = request.node.get_closest_marker("k8s_events") or pytest.mark.k8s_events.mark
    saved = LoggingState.save()
    try:
        with capture_events(*marker.args, **marker.kwargs) as captured:
            _CAPTURED[request.node] = captured
            yield captured
    finally:
        _CAPTURED.pop(request.node, None)  # its events are the test's, not kept for the session
        saved.restore()
