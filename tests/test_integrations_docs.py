"""Every recipe of docs/integrations.md, run as written against the local Events API server.

Each test takes a tagged block from the page, points its ``sink: auto`` at a LocalApiServer,
runs it with the real package (kopf, loguru, structlog; Django and uvicorn only hand their
dict to ``logging.config.dictConfig``, which is what these tests do too), and reads the
events back from the server. Run with ``-s`` to see them printed.
"""

from __future__ import annotations

import logging
import logging.config
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s_logging_events import _pod, correlator
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import LocalApiServer
from k8s_logging_events.testing._logstate import LoggingState
from tests._children import run_python
from tests._recipes import code_blocks, recipe, recipes

WIDGET = {
    "apiVersion": "example.com/v1",
    "kind": "Widget",
    "metadata": {"name": "w1", "namespace": "shop", "uid": "uid-w1"},
}
CLUSTER_WIDGET = {
    "apiVersion": "example.com/v1",
    "kind": "ClusterWidget",
    "metadata": {"name": "cw1", "uid": "uid-cw1"},
}


@pytest.fixture
def server() -> Iterator[LocalApiServer]:
    with LocalApiServer(auto_create_namespaces=True) as running:
        yield running


@pytest.fixture
def pod_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    monkeypatch.setenv("POD_NAME", "shop-web-6f7c9-abcde")
    monkeypatch.setenv("POD_NAMESPACE", "shop")
    monkeypatch.setenv("POD_UID", "uid-shop-web")
    monkeypatch.setattr(_pod, "NAMESPACE_FILE", str(tmp_path / "absent"))
    return monkeypatch


def read_back(server: LocalApiServer, recipe_name: str) -> list[tuple[Any, ...]]:
    """(namespace, kind/name, uid, reason, count, message) per stored event; printed too."""
    rows = sorted(
        (
            e["metadata"]["namespace"],
            f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}",
            e["involvedObject"].get("uid", ""),
            e["reason"],
            e["count"],
            e["message"],
        )
        for e in server.events()
    )
    for row in rows:
        print(
            f"[{recipe_name}] {row[1]} (ns {row[0]}, uid {row[2] or '-'}) "
            f"reason={row[3]} count={row[4]} message={row[5]!r}"
        )
    return rows


def close_event_handlers(*names: str) -> None:
    for name in names:
        for handler in logging.getLogger(name or None).handlers:
            if isinstance(handler, KubernetesEventHandler):
                handler.close()


def test_every_code_block_is_a_tagged_recipe() -> None:
    assert len(recipes()) == code_blocks()
    assert set(recipes()) == {
        "kopf",
        "loguru",
        "loguru-intercept",
        "structlog-kwargs",
        "structlog-formatter",
        "django",
        "gunicorn",
        "uvicorn",
        "pod",
        "crash",
        "spam-key",
    }


def test_kopf(server: LocalApiServer) -> None:
    import kopf
    from kopf._core.actions.loggers import LocalObjectLogger, ObjectLogger

    kopf.configure()  # as kopf run does first (INFO)
    namespace: dict[str, Any] = {}
    exec(recipe("kopf", server.url), namespace)
    settings = kopf.OperatorSettings()
    settings.posting.loggers = True  # as an operator on a Kopf that posted records would be
    namespace["configure"](settings=settings)
    # Kopf's posting of log records off; its explicit kopf.event()/kopf.info() left on
    assert settings.posting.loggers is False
    assert settings.posting.enabled is True
    for body in (WIDGET, CLUSTER_WIDGET):
        logger = ObjectLogger(body=body, settings=settings)  # type: ignore[arg-type]
        for _ in range(3):
            namespace["create_widget"](logger=logger)
        logger.info("Widget synced")
    LocalObjectLogger(body=WIDGET, settings=settings).warning("watch: never an event")  # type: ignore[arg-type]
    close_event_handlers("kopf.objects")
    assert read_back(server, "kopf") == [
        (
            "default",
            "ClusterWidget/cw1",
            "uid-cw1",
            "BackendNotReady",
            3,
            "Backend not ready, retrying",
        ),
        ("default", "ClusterWidget/cw1", "uid-cw1", "Logging", 1, "Widget synced"),
        ("shop", "Widget/w1", "uid-w1", "BackendNotReady", 3, "Backend not ready, retrying"),
        ("shop", "Widget/w1", "uid-w1", "Logging", 1, "Widget synced"),
    ]


def test_kopf_verbose_keeps_its_debug_lines_on_the_console_not_in_events(
    server: LocalApiServer,
) -> None:
    """Under ``kopf run --verbose`` (the root at DEBUG) the recipe used to set ``kopf.objects``
    to INFO, hiding Kopf's per-object DEBUG lines from the console; without that, they became
    events (whole bodies among them). The logger stays as Kopf set it, the handler at INFO."""
    import kopf
    from kopf._core.actions.loggers import ObjectLogger

    logging.getLogger().setLevel(logging.DEBUG)  # what kopf run --verbose does first
    exec(recipe("kopf", server.url), {})
    objects = logging.getLogger("kopf.objects")
    assert objects.getEffectiveLevel() == logging.DEBUG
    logger = ObjectLogger(body=WIDGET, settings=kopf.OperatorSettings())  # type: ignore[arg-type]
    logger.debug("Resuming is in progress: %r", WIDGET)
    logger.info("Widget synced")
    close_event_handlers("kopf.objects")
    assert [row[4:] for row in read_back(server, "kopf")] == [(1, "Widget synced")]


def test_kopf_quiet_keeps_its_info_lines_off_the_console(server: LocalApiServer, capsys) -> None:
    """Under ``kopf run --quiet`` (the root at WARNING) the recipe raised ``kopf.objects`` to
    INFO, taking it for ``kopf.run()`` in code: every per-object INFO line was printed. The
    logger stays as Kopf set it: warnings alone reach the console, and the events, as Kopf's
    own posting did."""
    import kopf
    from kopf._core.actions.loggers import ObjectLogger

    kopf.configure(quiet=True)  # what kopf run --quiet does first
    exec(recipe("kopf", server.url), {})
    logger = ObjectLogger(body=WIDGET, settings=kopf.OperatorSettings())  # type: ignore[arg-type]
    logger.info("Widget synced")
    logger.warning("Backend not ready")
    close_event_handlers("kopf.objects")
    err = capsys.readouterr().err
    assert "Backend not ready" in err
    assert "Widget synced" not in err
    assert [row[4:] for row in read_back(server, "kopf")] == [(1, "Backend not ready")]


def test_loguru(server: LocalApiServer) -> None:
    from loguru import logger

    namespace: dict[str, Any] = {}
    try:
        exec(recipe("loguru", server.url), namespace)
    finally:
        if "sink_id" in namespace:
            logger.remove(namespace["sink_id"])
    assert read_back(server, "loguru") == [
        ("shop", "Pod/web-0", "uid-1", "BackOff", 10, "Back-off pulling image shop:2.1"),
    ]


def test_loguru_taking_over_the_standard_library(server: LocalApiServer, capsys) -> None:
    """loguru's InterceptHandler on the root: a report made while loguru hands the handler a
    record (a repaired reason) reaches loguru's other sinks, and the recipe's filter keeps it
    from re-entering the handler's sink (loguru's "Logging error" and its traceback)."""
    from loguru import logger

    shown: list[str] = []
    console = logger.add(lambda message: shown.append(str(message)), level="WARNING")
    namespace: dict[str, Any] = {}
    saved = LoggingState.save()
    try:
        exec(recipe("loguru-intercept", server.url), namespace)
    finally:
        if "sink_id" in namespace:
            logger.remove(namespace["sink_id"])
        logger.remove(console)
        saved.restore()
    assert "Logging error in Loguru Handler" not in capsys.readouterr().err
    assert any("recorded as 'BackOff'" in line for line in shown)
    assert read_back(server, "loguru-intercept") == [
        ("shop", "Pod/web-0", "uid-1", "BackOff", 1, "Back-off pulling image shop:2.1"),
    ]


@pytest.fixture
def structlog_reset() -> Iterator[None]:
    import structlog

    yield
    structlog.reset_defaults()


def test_structlog_render_to_log_kwargs(server: LocalApiServer, structlog_reset: None) -> None:
    exec(recipe("structlog-kwargs", server.url), {})
    close_event_handlers("")
    assert read_back(server, "structlog-kwargs") == [
        ("shop", "Pod/web-0", "uid-1", "BackOff", 3, "Back-off pulling image"),
    ]


def test_structlog_wrap_for_formatter(
    server: LocalApiServer, structlog_reset: None, capsys: pytest.CaptureFixture[str]
) -> None:
    exec(recipe("structlog-formatter", server.url), {})
    close_event_handlers("")
    # the console still renders the whole event dict
    assert "status=503" in capsys.readouterr().err
    assert read_back(server, "structlog-formatter") == [
        ("shop", "Pod/web-0", "uid-1", "Unhealthy", 3, "Readiness probe failed"),
    ]


def test_django_logging(server: LocalApiServer, pod_env: pytest.MonkeyPatch) -> None:
    """As Django's configure_logging does: dictConfig(settings.LOGGING)."""
    namespace: dict[str, Any] = {}
    exec(recipe("django", server.url), namespace)
    logging.config.dictConfig(namespace["LOGGING"])
    for _ in range(3):
        logging.getLogger("shop.views").warning("Payment provider slow: %d ms", 1800)
    logging.getLogger("django.request").warning(
        "Not Found: %s", "/cart/42", extra={"status_code": 404}
    )
    logging.getLogger("shop.views").info("below WARNING: no event")
    cart = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cart-42", "namespace": "shop"}
    logging.getLogger("shop.views").error("Cart lost", extra={"involved": cart, "reason": "Lost"})
    close_event_handlers("")
    assert read_back(server, "django") == [
        ("shop", "ConfigMap/cart-42", "", "Lost", 1, "Cart lost"),
        ("shop", "Pod/shop-web-6f7c9-abcde", "uid-shop-web", "Logging", 1, "Not Found: /cart/42"),
        (
            "shop",
            "Pod/shop-web-6f7c9-abcde",
            "uid-shop-web",
            "Logging",
            3,
            "Payment provider slow: 1800 ms",
        ),
    ]


def test_uvicorn_log_config(server: LocalApiServer) -> None:
    """As uvicorn's Config.configure_logging does with a dict: dictConfig(log_config)."""
    namespace: dict[str, Any] = {}
    exec(recipe("uvicorn", server.url), namespace)
    logging.config.dictConfig(namespace["LOG_CONFIG"])
    logging.getLogger("uvicorn.error").warning("uvicorn's own line: not an event")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "shop-api",
        "namespace": "shop",
        "uid": "uid-shop-api",
    }
    for _ in range(4):
        logging.getLogger("shop.api").warning(
            "Upstream timeout", extra={"involved": deployment, "reason": "UpstreamTimeout"}
        )
    close_event_handlers("")
    assert read_back(server, "uvicorn") == [
        ("shop", "Deployment/shop-api", "uid-shop-api", "UpstreamTimeout", 4, "Upstream timeout"),
    ]


_UVICORN_STOPPED = """
import asyncio, logging, logging.config, signal
import recipe  # the uvicorn recipe, its sink pointed at the test's server

logging.config.dictConfig(recipe.LOG_CONFIG)  # uvicorn's Config.configure_logging
api = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-api", "namespace": "shop"}
log = logging.getLogger("shop.api")


async def serve():  # uvicorn's lifespan around serving: startup, requests, then SIGTERM
    async with recipe.lifespan(None):
        for n in range(40):  # distinct: more writes than the sink's rate limit lets out
            log.warning("Upstream %d timed out", n, extra={"involved": api, "reason": "Timeout"})


asyncio.run(serve())
# uvicorn's Server.capture_signals, once it has shut down on SIGTERM: it raises the signal
# again under the disposition it found, Python's default, which ends the process at once
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.raise_signal(signal.SIGTERM)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_the_uvicorn_recipe_writes_everything_before_uvicorns_sigterm_ends_the_process(
    server: LocalApiServer, tmp_path: Path
) -> None:
    """uvicorn (``uvicorn app:app`` and each ``--workers`` process) ends on SIGTERM by
    raising it again with the default action: the process is killed, no atexit, no
    ``logging.shutdown()``. The recipe's lifespan drains the handler at its end, so what the
    app logged is on the server (before: a FastAPI app's 101 warnings left 18)."""
    (tmp_path / "recipe.py").write_text(recipe("uvicorn", server.url))
    child = run_python(_UVICORN_STOPPED, cwd=tmp_path)
    assert child.returncode == -signal.SIGTERM, child.stderr
    assert sum(event["count"] for event in server.events("shop")) == 40, child.stderr


def test_the_pod_itself(server: LocalApiServer, pod_env: pytest.MonkeyPatch) -> None:
    logging.config.dictConfig(yaml.safe_load(recipe("pod", server.url)))
    log = logging.getLogger("legacy.service")
    for _ in range(5):
        log.warning("Cache miss ratio high: %d%%", 85)
    log.info("an INFO line: no event")
    close_event_handlers("")
    assert read_back(server, "pod") == [
        (
            "shop",
            "Pod/shop-web-6f7c9-abcde",
            "uid-shop-web",
            "Logging",
            5,
            "Cache miss ratio high: 85%",
        ),
    ]


def test_the_pod_itself_without_pod_uid(
    server: LocalApiServer, pod_env: pytest.MonkeyPatch
) -> None:
    """The uid is read once from the API server (RBAC: get on pods)."""
    pod_env.delenv("POD_UID")
    pod = server.add_pod("shop-web-6f7c9-abcde", "shop", uid="uid-read-from-server")
    logging.config.dictConfig(yaml.safe_load(recipe("pod", server.url)))
    for _ in range(2):
        logging.getLogger("legacy.service").warning("Disk almost full")
    close_event_handlers("")
    assert read_back(server, "pod-without-POD_UID") == [
        (
            "shop",
            "Pod/shop-web-6f7c9-abcde",
            pod["metadata"]["uid"],
            "Logging",
            2,
            "Disk almost full",
        ),
    ]


def test_crash_events(server: LocalApiServer, pod_env: pytest.MonkeyPatch) -> None:
    """An uncaught exception (the interpreter calls sys.excepthook) is a Warning event
    about the pod; the hook that was set before still runs."""
    previous: list[object] = []
    pod_env.setattr(sys, "excepthook", lambda *args: previous.append(args))
    logging.config.dictConfig(yaml.safe_load(recipe("crash", server.url)))
    try:
        raise ValueError("bad config: port=abc")
    except ValueError as error:
        sys.excepthook(type(error), error, error.__traceback__)
    assert len(previous) == 1
    close_event_handlers("")
    assert read_back(server, "crash") == [
        (
            "shop",
            "Pod/shop-web-6f7c9-abcde",
            "uid-shop-web",
            "UncaughtException",
            1,
            "ValueError: bad config: port=abc",
        ),
    ]
    assert server.events("shop")[0]["type"] == "Warning"


def test_the_spam_key_snippet() -> None:
    options = yaml.safe_load(recipe("spam-key"))
    handler = KubernetesEventHandler(sink=None, **options)
    assert handler._options.broadcasting.correlator is not None
    assert handler._options.broadcasting.correlator.spam_key_func is correlator.spam_key_per_reason
    handler.close()
