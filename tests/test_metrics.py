"""k8s_logging_events.metrics: the handler's counters as Prometheus metrics.

Everything runs against the real ``prometheus_client`` and the local API server: handlers
log, flush, and a scrape (``generate_latest``, parsed back with prometheus_client's own
parser) must say what ``stats()`` says.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mypy.api
import prometheus_client
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from k8s_logging_events import KubernetesEventHandler, metrics, models, recorder
from k8s_logging_events._diagnostics import OUTCOMES
from k8s_logging_events.testing import FakeEventSink

ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count()


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}}


def _scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ours in the exposition text: (name, sorted labels) -> value."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("k8s_logging_events_")
    }


def _types(registry: CollectorRegistry) -> dict[str, str]:
    """The TYPE of each of our metric families, as exposed."""
    text = generate_latest(registry).decode()
    return {
        family.name: family.type
        for family in text_string_to_metric_families(text)
        if family.name.startswith("k8s_logging_events_")
    }


def _expected(component: str, stats: dict[str, int]) -> dict[Any, float]:
    """The samples a component's stats() should give."""
    label = ("component", component)
    samples: dict[Any, float] = {
        (metrics.ACCEPTED, (label,)): stats["accepted"],
        (metrics.PENDING, (label,)): stats["pending"],
        (metrics.PENDING_EVENTS, (label,)): stats["pending_events"],
        (metrics.REPAIRED, (label,)): stats["repaired"],
        (metrics.WATCHER_DROPPED, (label,)): stats["watcher_dropped"],
    }
    for outcome in OUTCOMES:
        samples[(metrics.OCCURRENCES, (label, ("outcome", outcome)))] = stats[outcome]
    for cause in metrics.REJECTED_CAUSES:
        samples[(metrics.REJECTED, (("cause", cause), label))] = stats[cause]
    return samples


@pytest.fixture(name="registry")
def _registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture(name="make")
def _make(
    make_handler: Callable[..., KubernetesEventHandler],
) -> Callable[..., KubernetesEventHandler]:
    """Build handlers on the local server (each on a logger of its own); close them after."""
    return make_handler


def _logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"test_metrics.{next(_names)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    return log


def _busy(log: logging.Logger) -> None:
    """Writes, a repeat, a refusal and a repair: several counters away from zero."""
    for _ in range(3):
        log.warning("Back-off", extra={"involved": _pod("web-0"), "reason": "BackOff"})
    log.info("Synced", extra={"involved": _pod("web-1"), "reason": "Synced"})
    log.warning("no such thing", extra={"involved": "just a string"})  # refused
    log.warning("x" * 5000, extra={"involved": _pod("web-2")})  # cut to size: repaired


class _Stats:
    """What register() reads of a handler: its source and fixed stats()."""

    def __init__(self, component: str, **counts: int) -> None:
        self.source = models.EventSource(component=component)
        self._counts = counts

    def stats(self) -> dict[str, int]:
        return dict(self._counts)


class TestScrape:
    """A scrape says what stats() says."""

    def test_the_scraped_values_equal_stats(self, make, registry) -> None:
        """After a flush, every exposed sample is the matching stats() field."""
        handler = make(component="shop")
        metrics.register(handler, registry=registry)
        _busy(_logger(handler))
        handler.flush()

        stats = handler.stats()
        assert stats["created"] > 0
        assert stats["patched"] + stats["coalesced"] > 0
        assert stats["refused"] == 1
        assert stats["repaired"] == 1
        assert _scrape(registry) == _expected("shop", stats)

    def test_the_counters_are_read_at_scrape_time(self, make, registry) -> None:
        """Registered before anything is logged: zeros first, then what happened since."""
        handler = make(component="shop")
        metrics.register(handler, registry=registry)
        assert set(_scrape(registry).values()) == {0}

        log = _logger(handler)
        log.warning("Back-off", extra={"involved": _pod("web-0"), "reason": "BackOff"})
        handler.flush()
        scraped = _scrape(registry)
        assert scraped[(metrics.ACCEPTED, (("component", "shop"),))] == 1
        assert scraped[(metrics.OCCURRENCES, (("component", "shop"), ("outcome", "created")))] == 1

    def test_nothing_is_read_on_the_logging_path(self, make, registry, monkeypatch) -> None:
        """Logging never calls stats(); each scrape calls it once per handler."""
        handler = make(component="shop")
        calls: list[None] = []
        real = handler.stats

        def counting() -> Any:
            calls.append(None)
            return real()

        monkeypatch.setattr(handler, "stats", counting)
        metrics.register(handler, registry=registry)
        _busy(_logger(handler))
        handler.flush()
        assert calls == []
        generate_latest(registry)
        assert len(calls) == 1

    def test_conventional_types(self, make, registry) -> None:
        """Counters end in _total and are counters; pending and pending_events are gauges."""
        metrics.register(make(component="shop"), registry=registry)
        types = _types(registry)
        # the parser names a counter family without its _total suffix
        assert types == {
            metrics.ACCEPTED.removesuffix("_total"): "counter",
            metrics.OCCURRENCES.removesuffix("_total"): "counter",
            metrics.REJECTED.removesuffix("_total"): "counter",
            metrics.REPAIRED.removesuffix("_total"): "counter",
            metrics.WATCHER_DROPPED.removesuffix("_total"): "counter",
            metrics.PENDING: "gauge",
            metrics.PENDING_EVENTS: "gauge",
        }
        text = generate_latest(registry).decode()
        assert f"# TYPE {metrics.PENDING} gauge" in text
        assert f"# TYPE {metrics.ACCEPTED} counter" in text

    def test_the_pending_help_says_what_is_held_back(self, make, registry) -> None:
        """pending counts what the spam filter or an events.k8s.io/v1 series holds back (for
        minutes): the HELP an SRE reads says so, or a flat gauge reads as a stuck write."""
        metrics.register(make(component="shop"), registry=registry)
        text = generate_latest(registry).decode()
        helps = {
            family.name: family.documentation for family in text_string_to_metric_families(text)
        }
        assert "held back" in helps[metrics.PENDING]
        assert "spam filter" in helps[metrics.PENDING]
        assert "series" in helps[metrics.PENDING]

    def test_every_stats_field_is_exposed(self, make) -> None:
        """Each field of stats() has its series: a new counter needs a decision here."""
        exposed = {"accepted", "pending", "pending_events", "repaired", "watcher_dropped"}
        exposed |= set(OUTCOMES)
        exposed |= set(metrics.REJECTED_CAUSES)
        assert set(make().stats()) == exposed

    def test_a_closed_handler_keeps_its_final_counts(self, make, registry) -> None:
        """close() does not take the series away: they stay at the last values."""
        handler = make(component="shop")
        metrics.register(handler, registry=registry)
        log = _logger(handler)
        log.warning("Back-off", extra={"involved": _pod("web-0")})
        handler.close()
        log.warning("after close", extra={"involved": _pod("web-0")})

        stats = handler.stats()
        assert stats["after_close"] == 1
        assert _scrape(registry) == _expected("shop", stats)


class TestSeveralHandlers:
    """Handlers share a registry, told apart by component."""

    def test_two_components_in_one_registry(self, make, registry) -> None:
        """Each component's series are its own handler's stats()."""
        shop, billing = make(component="shop"), make(component="billing")
        metrics.register(shop, registry=registry)
        metrics.register(billing, registry=registry)
        _busy(_logger(shop))
        _logger(billing).warning("Late", extra={"involved": _pod("invoice-0"), "reason": "Late"})
        shop.flush()
        billing.flush()

        assert shop.stats() != billing.stats()
        expected = {**_expected("shop", shop.stats()), **_expected("billing", billing.stats())}
        assert _scrape(registry) == expected

    def test_handlers_of_one_component_are_summed(self, make, registry) -> None:
        """Two handlers with the same component make one series per name: their sum."""
        first, second = make(component="shop"), make(component="shop")
        metrics.register(first, registry=registry)
        metrics.register(second, registry=registry)
        _busy(_logger(first))
        _logger(second).warning("Late", extra={"involved": _pod("web-9")})
        first.flush()
        second.flush()

        one, two = first.stats(), second.stats()
        summed = {name: one[name] + two[name] for name in one}
        assert _scrape(registry) == _expected("shop", summed)

    def test_one_registry_per_handler_works_too(self, make) -> None:
        """The same handler in two registries: both expose it."""
        handler = make(component="shop")
        first, second = CollectorRegistry(), CollectorRegistry()
        metrics.register(handler, registry=first)
        metrics.register(handler, registry=second)
        assert _scrape(first) == _scrape(second) == _expected("shop", handler.stats())

    def test_registering_a_handler_twice_in_a_registry_fails(self, make, registry) -> None:
        """A second registration would double every count: ValueError, and the first stays."""
        handler = make(component="shop")
        metrics.register(handler, registry=registry)
        with pytest.raises(ValueError, match="already registered"):
            metrics.register(handler, registry=registry)
        assert _scrape(registry) == _expected("shop", handler.stats())

    def test_handlers_given_one_broadcaster_are_not_both_registered(self, registry) -> None:
        """Handlers given one broadcaster (``broadcaster=``) each read its counters whole:
        registered both, every occurrence was counted once per handler (3 logged, 9 in the
        sums). The second is a ValueError, as a handler registered twice is."""
        events = recorder.EventBroadcaster()
        events.start_recording_to_sink(FakeEventSink())
        billing = KubernetesEventHandler(component="billing", broadcaster=events)
        shipping = KubernetesEventHandler(component="shipping", broadcaster=events)
        try:
            metrics.register(billing, registry=registry)
            with pytest.raises(ValueError, match="count twice"):
                metrics.register(shipping, registry=registry)
            _logger(billing).warning("Late", extra={"involved": _pod("web-0")})
            _logger(shipping).warning("Lost", extra={"involved": _pod("web-0")})
            assert events.flush(10)
            assert _scrape(registry) == _expected("billing", billing.stats())
            assert billing.stats()["accepted"] == 2
        finally:
            billing.close()
            shipping.close()
            events.shutdown()

    def test_a_handler_replacing_another_of_its_broadcaster_counts_it_once(self, registry) -> None:
        """The documented path for a handler that replaces another of one broadcaster (as
        dictConfig does): unregister the old, register the new. While another handler of the
        component stayed registered, what the old had counted was kept in the series and read
        again from the broadcaster through the new: 1 logged, 2 accepted in the series. What
        the old handler counted itself (repaired) is not the broadcaster's, and stays."""
        events = recorder.EventBroadcaster()
        events.start_recording_to_sink(FakeEventSink())
        staying = KubernetesEventHandler(component="shop", sink=FakeEventSink())
        old = KubernetesEventHandler(component="shop", broadcaster=events)
        new = KubernetesEventHandler(component="shop", broadcaster=events)
        try:
            metrics.register(staying, registry=registry)
            leaving = metrics.register(old, registry=registry)
            _logger(old).warning("x" * 5000, extra={"involved": _pod("web-0")})  # repaired
            assert events.flush(10)
            old.close()
            leaving.unregister()
            metrics.register(new, registry=registry)
            shop = {"component": "shop"}
            assert registry.get_sample_value(metrics.ACCEPTED, shop) == 1
            # the old handler's own counter is not the broadcaster's: it stays, never falls
            assert registry.get_sample_value(metrics.REPAIRED, shop) == 1
        finally:
            for handler in (staying, old, new):
                handler.close()
            events.shutdown()

    @pytest.mark.parametrize("given", [None, "events", logging.NullHandler()])
    def test_what_is_not_a_handler_of_ours_fails_at_once(self, make, registry, given) -> None:
        """``logging.getHandlerByName()`` gives None for a name not configured: register()
        raises TypeError, rather than break every later scrape of the registry (the
        application's own metrics included)."""
        prometheus_client.Counter("app_requests", "the application's", registry=registry).inc()
        with pytest.raises(TypeError, match="KubernetesEventHandler"):
            metrics.register(given, registry=registry)
        assert "app_requests_total 1.0" in generate_latest(registry).decode()
        handler = make(component="shop")
        metrics.register(handler, registry=registry)  # the registry takes a real one after
        assert _scrape(registry) == _expected("shop", handler.stats())

    def test_a_clash_with_another_collector_fails(self, make, registry) -> None:
        """Another collector that owns one of the names: register() raises ValueError."""
        prometheus_client.Gauge(metrics.PENDING, "someone else's", registry=registry)
        with pytest.raises(ValueError, match=metrics.PENDING):
            metrics.register(make(), registry=registry)


class TestUnregister:
    """EventMetrics.unregister takes a handler's series away."""

    def test_a_dropped_registry_takes_its_handlers_along(self, k8s_apiserver) -> None:
        """A registry the user drops (one per test, say) is collected with its collector and
        the handlers registered in it, closed or not unregistered: the package keeps none."""
        handler = KubernetesEventHandler(sink=k8s_apiserver.url, component="shop")
        log = _logger(handler)
        log.warning("Back-off", extra={"involved": _pod("web-0")})
        registry = CollectorRegistry()
        metrics.register(handler, registry=registry)
        log.removeHandler(handler)
        handler.close()
        handler_ref, registry_ref = weakref.ref(handler), weakref.ref(registry)
        del handler, registry
        gc.collect()
        assert (handler_ref(), registry_ref()) == (None, None)

    def test_the_series_go(self, make, registry) -> None:
        """After unregister() a scrape shows none of ours; a second call changes nothing."""
        handler = make(component="shop")
        exported = metrics.register(handler, registry=registry)
        assert (exported.handler, exported.registry, exported.component) == (
            handler,
            registry,
            "shop",
        )
        exported.unregister()
        assert _scrape(registry) == {}
        exported.unregister()
        assert _scrape(registry) == {}

    def test_the_other_handlers_stay(self, make, registry) -> None:
        """Unregistering one component keeps the other's series."""
        shop, billing = make(component="shop"), make(component="billing")
        metrics.register(shop, registry=registry)
        metrics.register(billing, registry=registry).unregister()
        assert _scrape(registry) == _expected("shop", shop.stats())

    def test_a_counter_of_a_component_never_goes_down(self, make, registry) -> None:
        """Two handlers of one component: when one leaves, what it counted stays in the
        series' counters (a fall would read as a counter reset, and rate() would spike),
        and only its gauges leave; the series goes with the component's last handler, and
        a series begun afresh starts from its handler's own counts."""
        first, second = make(component="shop"), make(component="shop")
        staying = metrics.register(first, registry=registry)
        leaving = metrics.register(second, registry=registry)
        _busy(_logger(first))
        log = _logger(second)
        log.warning("Late", extra={"involved": _pod("web-9"), "reason": "Late"})
        first.flush()
        second.flush()
        gone = second.stats()
        assert gone["created"] == 1

        leaving.unregister()
        log.warning("Later", extra={"involved": _pod("web-8")})  # no longer exposed
        _logger(first).warning("Again", extra={"involved": _pod("web-7"), "reason": "Again"})
        first.flush()
        second.flush()
        gauges = ("pending", "pending_events")
        kept = {name: value * (name not in gauges) for name, value in gone.items()}
        summed = {name: value + kept[name] for name, value in first.stats().items()}
        assert _scrape(registry) == _expected("shop", summed)

        staying.unregister()
        assert _scrape(registry) == {}
        metrics.register(second, registry=registry)
        assert _scrape(registry) == _expected("shop", second.stats())

    def test_a_leaving_handlers_pending_leaves_the_gauges(self, registry) -> None:
        """A handler of a component that stays leaves with what it still had pending: the
        gauges say the staying handler's, while its counters keep what the leaver counted."""
        staying = _Stats("shop", accepted=4, created=4, pending=0, pending_events=0)
        leaving = _Stats("shop", accepted=9, created=2, pending=7, pending_events=3)
        metrics.register(staying, registry=registry)
        metrics.register(leaving, registry=registry).unregister()
        label = (("component", "shop"),)
        scraped = _scrape(registry)
        assert scraped[(metrics.PENDING, label)] == 0
        assert scraped[(metrics.PENDING_EVENTS, label)] == 0
        assert scraped[(metrics.ACCEPTED, label)] == 13

    def test_the_last_handler_leaving_frees_the_metric_names(self, make, registry) -> None:
        """Once a registry's last handler is unregistered, its metric names are free for
        another collector (the application's own, or a fresh registration)."""
        metrics.register(make(component="shop"), registry=registry).unregister()
        prometheus_client.Gauge(metrics.PENDING, "taken by another", registry=registry)

    def test_a_handler_registered_again_is_counted_once(self, make, registry) -> None:
        """A handler that left while its component's series lived, registered again: the
        counts kept for it are its own, now read from it again, not added a second time."""
        first, second = make(component="shop"), make(component="shop")
        metrics.register(first, registry=registry)
        leaving = metrics.register(second, registry=registry)
        log = _logger(second)
        log.warning("Late", extra={"involved": _pod("web-9"), "reason": "Late"})
        second.flush()
        leaving.unregister()
        log.warning("Later", extra={"involved": _pod("web-8"), "reason": "Later"})
        _busy(_logger(first))
        first.flush()
        second.flush()
        before = _scrape(registry)

        metrics.register(second, registry=registry)
        one, two = first.stats(), second.stats()
        assert _scrape(registry) == _expected("shop", {name: one[name] + two[name] for name in one})
        counters = {key for key in before if not key[0].startswith(metrics.PENDING)}
        assert all(_scrape(registry)[key] >= before[key] for key in counters)

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_a_forked_child_does_not_inherit_what_left_in_the_parent(self) -> None:
        """In the parent, an unregistered handler's counts stay in its component's series;
        a forked child's handlers start their counters afresh, and so does its series: a
        scrape in the child says what the child's stats() says."""
        done = subprocess.run(
            [sys.executable, "-c", _FORKING],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        parent, child = (json.loads(line) for line in done.stdout.splitlines())
        assert parent == {"scraped": 4.0, "stats": 1}
        assert child["scraped"] == child["stats"]

    def test_the_names_are_free_again(self, make, registry) -> None:
        """The last unregister() takes the collector out: the names can be used again."""
        handler = make(component="shop")
        metrics.register(handler, registry=registry).unregister()
        metrics.register(handler, registry=registry)
        assert _scrape(registry) == _expected("shop", handler.stats())

    def test_the_default_registry(self, make) -> None:
        """Without registry= the metrics go to prometheus_client.REGISTRY, and leave it."""
        handler = make(component="default-registry-test")
        exported = metrics.register(handler)
        try:
            assert exported.registry is prometheus_client.REGISTRY
            scraped = _scrape(prometheus_client.REGISTRY)
            assert scraped == _expected("default-registry-test", handler.stats())
        finally:
            exported.unregister()
        assert _scrape(prometheus_client.REGISTRY) == {}


# Two handlers of one component (no sink: occurrences are discarded); one logs three times
# and leaves; the other logs once. Prints the accepted series and stats() in the parent, then
# in a forked child.
_FORKING = textwrap.dedent(
    """
    import json, logging, os, sys
    from prometheus_client import CollectorRegistry
    from k8s_logging_events import KubernetesEventHandler, metrics

    registry = CollectorRegistry()
    staying = KubernetesEventHandler(component="web", sink=None)
    leaving = KubernetesEventHandler(component="web", sink=None)
    metrics.register(staying, registry=registry)
    exposed = metrics.register(leaving, registry=registry)
    pod = {"kind": "Pod", "name": "web-0", "namespace": "default"}
    for handler, times in ((leaving, 3), (staying, 1)):
        log = logging.getLogger(f"forking.{times}")
        log.propagate = False
        log.addHandler(handler)
        for _ in range(times):
            log.warning("Back-off", extra={"involved": pod})
        handler.flush()
    exposed.unregister()

    def report():
        value = registry.get_sample_value(metrics.ACCEPTED, {"component": "web"})
        print(json.dumps({"scraped": value, "stats": staying.stats()["accepted"]}), flush=True)

    report()
    pid = os.fork()
    if pid == 0:
        report()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


# Makes ``prometheus_client`` impossible to import, as if it were not installed.
_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "prometheus_client":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    for name in [n for n in sys.modules if n.split(".")[0] == "prometheus_client"]:
        del sys.modules[name]
    sys.meta_path.insert(0, Missing())
    """
)


def _run_without_prometheus(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )


class TestWithoutPrometheusClient:
    """The extra is optional: only k8s_logging_events.metrics needs it."""

    def test_importing_metrics_says_what_to_install(self) -> None:
        """ImportError naming the extra to install, chained to the original one; the command
        quoted as docs/metrics.md quotes it, so that it runs as pasted in zsh too (unquoted,
        zsh answers "no matches found" for the brackets)."""
        done = _run_without_prometheus(
            """
            try:
                from k8s_logging_events import metrics
            except ImportError as error:
                print(error)
                print(type(error.__cause__).__name__, error.__cause__.name)
            else:
                raise SystemExit("imported without prometheus_client")
            """
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert "pip install 'k8s-logging-events[metrics]'" in lines[0]
        assert lines[1] == "ModuleNotFoundError prometheus_client"

    def test_no_other_module_needs_it(self) -> None:
        """Every other module of the package imports without prometheus_client."""
        done = _run_without_prometheus(
            """
            import importlib, pkgutil, sys
            import k8s_logging_events as package

            skipped = {"k8s_logging_events.metrics", "k8s_logging_events.__main__"}
            names = [
                info.name
                for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                if info.name not in skipped
            ]
            for name in names:
                importlib.import_module(name)
            assert not any(n.startswith("prometheus_client") for n in sys.modules)
            print(len(names))
            """
        )
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) > 20

    def test_the_package_does_not_import_it(self) -> None:
        """``import k8s_logging_events`` loads no prometheus_client, even when installed."""
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, k8s_logging_events; "
                "print(any(n.startswith('prometheus_client') for n in sys.modules))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.stdout.strip() == "False", done.stderr


class TestDocs:
    """docs/metrics.md speaks of the metrics the module exposes."""

    DOC = ROOT / "docs" / "metrics.md"

    def test_every_metric_named_is_exposed(self, make, registry) -> None:
        """Each k8s_logging_events_* name of the page (table, rules) is a real series, and
        the table lists every one."""
        metrics.register(make(), registry=registry)
        exposed = {name for name, _ in _scrape(registry)}
        named = set(re.findall(r"k8s_logging_events_[a-z_]+", self.DOC.read_text()))
        assert named == exposed

    def test_the_alert_rules_parse_and_use_real_outcomes(self) -> None:
        """The rule file is YAML with groups of rules; its outcome matchers name outcomes."""
        (block,) = re.findall(r"```yaml\n(.*?)```", self.DOC.read_text(), re.DOTALL)
        rules = yaml.safe_load(block)["groups"][0]["rules"]
        assert {rule["alert"] for rule in rules} >= {
            "KubernetesEventsFailing",
            "KubernetesEventsDropped",
        }
        used = set()
        for rule in rules:
            for matcher in re.findall(r'outcome=~?"([^"]+)"', rule["expr"]):
                used.update(matcher.split("|"))
        assert used == {"failed", "dropped", "discarded"}
        assert used <= set(OUTCOMES)

    def test_the_readme_links_the_page(self) -> None:
        """The README's Documentation list has it."""
        assert "(docs/metrics.md)" in (ROOT / "README.md").read_text()


def test_a_type_checker_takes_the_handler_as_the_docs_get_it(tmp_path: Path) -> None:
    """``metrics.register(logging.getHandlerByName("events"))``, the docs' recipe for a
    handler ``dictConfig`` built, passes ``mypy --strict``: ``register`` takes what
    ``getHandlerByName`` returns (a ``Handler`` or None) and checks it when called."""
    user = tmp_path / "app.py"
    user.write_text(
        "import logging\n"
        "from k8s_logging_events import metrics\n"
        'metrics.register(logging.getHandlerByName("events"))\n'
        'metrics.register(logging.getLogger("shop"))\n',
        encoding="utf-8",
    )
    # the module alone: a user's mypy run sees the same signature, in a second; on 3.12,
    # which has getHandlerByName
    flags = ["--strict", "--python-version=3.12", "--follow-imports=skip", "--no-incremental"]
    report, _, _ = mypy.api.run([*flags, str(user), metrics.__file__])
    errors = [line.split(": error: ")[0] for line in report.splitlines() if ": error: " in line]
    assert [line for line in errors if line.startswith(str(user))] == [f"{user}:4"], report
