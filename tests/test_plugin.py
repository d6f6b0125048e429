"""The pytest plugin's ``k8s_events`` fixture protects the tests after the one that uses it.

Each case is a small test file run by pytest's ``pytester`` in a fresh interpreter (the
plugin is loaded from its ``pytest11`` entry point, as in any project that installs the
library), so that the inner tests' ``dictConfig`` cannot touch this run's logging.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import mypy.api
import pytest

from k8s_logging_events import testing
from k8s_logging_events.testing import CapturedEvents
from k8s_logging_events.testing._logstate import LoggingState, disabled_loggers

pytest_plugins = ["pytester"]

APP = '''
import logging, logging.config

log = logging.getLogger("shop.app")  # created at import, as applications do


def configure():
    """The application's logging setup: dictConfig with the default
    disable_existing_loggers (true), which disables shop.app."""
    logging.config.dictConfig({
        "version": 1,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {"shop.noisy": {"level": "ERROR", "propagate": False}},
    })


def back_off(pod):
    log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
'''

POD = '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop"}}'


def _run(pytester: pytest.Pytester, tests: str) -> pytest.RunResult:
    pytester.makepyfile(shop_app=APP)
    pytester.makepyfile(test_shop=textwrap.dedent(tests))
    # without Hypothesis's plugin, which no case uses: importing it is most of the child's start
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q"
    )


def test_a_test_that_configures_logging_does_not_break_the_next_one(
    pytester: pytest.Pytester,
) -> None:
    """The first test's dictConfig disables the app's logger; with the fixture's restore,
    the second test, which logs through that logger, captures its event."""
    result = _run(
        pytester,
        f"""
        import logging
        import shop_app

        POD = {POD}

        def test_first_configures_logging(k8s_events):
            shop_app.configure()
            assert logging.getLogger("shop.app").disabled

        def test_second_logs_through_the_app(k8s_events):
            assert not logging.getLogger("shop.app").disabled
            assert logging.getLogger("shop.noisy").level == logging.NOTSET
            shop_app.back_off(POD)
            k8s_events.assert_has(reason="BackOff", object_name="web-0")
        """,
    )
    result.assert_outcomes(passed=2)


def test_a_handler_the_test_found_still_writes_after_the_test_replaced_it(
    pytester: pytest.Pytester,
) -> None:
    """dictConfig closes the handlers it replaces: the session's log file (mode "w", which a
    closed FileHandler never reopens) that the fixture puts back is still written to."""
    pytester.makeconftest(
        """
        import logging
        logging.getLogger().addHandler(logging.FileHandler("session.log", mode="w"))
        """
    )
    result = _run(
        pytester,
        """
        import logging
        import shop_app

        def test_first_configures_logging(k8s_events):
            shop_app.configure()

        def test_second_writes_to_the_session_log():
            logging.getLogger("shop.other").warning("after the first test")
            assert open("session.log").read() == "after the first test\\n"
        """,
    )
    result.assert_outcomes(passed=2)


def test_handlers_on_no_logger_still_write_after_the_test_replaced_the_configuration(
    pytester: pytest.Pytester,
) -> None:
    """dictConfig closes every handler alive, not only the loggers': a MemoryHandler's
    target and a QueueListener's handler (log files of mode "w") still write after it."""
    pytester.makeconftest(
        """
        import logging, logging.handlers, queue
        buffered = logging.handlers.MemoryHandler(1, target=logging.FileHandler("b.log", "w"))
        records = queue.Queue()
        listener = logging.handlers.QueueListener(records, logging.FileHandler("q.log", "w"))
        listener.start()
        logging.getLogger().addHandler(buffered)
        logging.getLogger().addHandler(logging.handlers.QueueHandler(records))
        """
    )
    result = _run(
        pytester,
        """
        import logging
        import conftest, shop_app

        def test_first_configures_logging(k8s_events):
            shop_app.configure()

        def test_second_writes_to_both_files():
            logging.getLogger("shop.other").warning("after the first test")
            conftest.listener.stop()
            assert open("b.log").read() == open("q.log").read() == "after the first test\\n"
        """,
    )
    result.assert_outcomes(passed=2)


def test_the_handlers_put_back_are_flushed_at_exit(pytester: pytest.Pytester) -> None:
    """dictConfig empties the list logging.shutdown flushes at exit: a buffering handler put
    back after the test still writes what it holds when the session's interpreter exits."""
    pytester.makeconftest(
        """
        import logging, logging.handlers
        target = logging.FileHandler("exit.log")
        logging.getLogger().addHandler(logging.handlers.MemoryHandler(100, target=target))
        """
    )
    result = _run(
        pytester,
        """
        import logging
        import shop_app

        def test_first_configures_logging(k8s_events):
            shop_app.configure()

        def test_second_logs_into_the_buffer():
            logging.getLogger("shop.other").warning("held until exit")
        """,
    )
    result.assert_outcomes(passed=2)
    assert (pytester.path / "exit.log").read_text() == "held until exit\n"


def test_a_conftests_named_handler_is_found_by_name_after_the_test_reconfigured(
    pytester: pytest.Pytester,
) -> None:
    """dictConfig forgets the handlers' names: a later incremental dictConfig of the
    conftest's handler found none of that name, or the test's handler that took it; the
    names are put back with the test."""
    pytester.makeconftest(
        """
        import logging.config
        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": False,
            "handlers": {"console": {"class": "logging.StreamHandler"}},
            "root": {"handlers": ["console"]},
        })
        """
    )
    result = _run(
        pytester,
        """
        import logging, logging.config
        import shop_app

        def test_first_configures_logging(k8s_events):
            shop_app.configure()

        def test_second_quiets_the_conftests_handler():
            logging.config.dictConfig(
                {"version": 1, "incremental": True, "handlers": {"console": {"level": "ERROR"}}}
            )
            assert logging.getLogger().handlers[0].level == logging.ERROR
        """,
    )
    result.assert_outcomes(passed=2)


def test_a_filter_the_test_put_on_a_logger_is_removed_after_it(
    pytester: pytest.Pytester,
) -> None:
    """A dictConfig's filter on the app's logger, added during a test, silenced its records
    in every later test; after the test each logger has the filters it had before."""
    result = _run(
        pytester,
        f"""
        import logging, logging.config
        import shop_app

        def test_first_filters_every_record(k8s_events):
            logging.config.dictConfig({{
                "version": 1, "disable_existing_loggers": False,
                "filters": {{"none": {{"()": lambda: lambda record: False}}}},
                "loggers": {{"shop.app": {{"filters": ["none"]}}}},
            }})

        def test_second_captures_its_event(k8s_events):
            shop_app.back_off({POD})
            k8s_events.assert_has(reason="BackOff")
        """,
    )
    result.assert_outcomes(passed=2)


def test_capturing_nothing_while_a_logger_is_disabled_says_so(
    pytester: pytest.Pytester,
) -> None:
    """A first test without the fixture leaves shop.app disabled: the second test's
    failure names the disabled logger, says when it was disabled and how to fix it."""
    result = _run(
        pytester,
        f"""
        import shop_app

        POD = {POD}

        def test_first_configures_logging_without_the_fixture():
            shop_app.configure()

        def test_second_logs_through_the_app(k8s_events):
            shop_app.back_off(POD)
            k8s_events.assert_has(reason="BackOff", object_name="web-0")
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "Captured 0 event(s)" in output
    assert "'shop.app'" in output
    assert "since before this test" in output
    assert "disable_existing_loggers: false" in output


def test_a_logger_disabled_during_the_test_is_named_too(pytester: pytest.Pytester) -> None:
    """The test's own dictConfig disabled the logger it then uses: the failure says so."""
    result = _run(
        pytester,
        f"""
        import shop_app

        POD = {POD}

        def test_configures_then_logs(k8s_events):
            shop_app.configure()
            shop_app.back_off(POD)
            k8s_events.wait_for(reason="BackOff", timeout=0.2)
        """,
    )
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "during this test" in output
    assert "'shop.app'" in output


def test_the_library_reports_reach_caplog_after_an_earlier_test_disabled_its_logger(
    pytester: pytest.Pytester,
) -> None:
    """The library's logger exists from the plugin's start, so an earlier test's dictConfig
    (default disable_existing_loggers, no fixture) disables it: while k8s_events captures,
    the library's reports still reach caplog; after the test it is as the test found it."""
    result = _run(
        pytester,
        """
        import logging
        import shop_app

        def test_first_configures_logging_without_the_fixture():
            shop_app.configure()
            assert logging.getLogger("k8s_logging_events").disabled

        def test_second_sees_the_report_of_bad_input(k8s_events, caplog):
            logging.getLogger("shop.other").warning("x", extra={"involved": 42})
            assert "Unable to refer to the involved object" in caplog.text

        def test_third_finds_the_logger_as_the_second_found_it():
            assert logging.getLogger("k8s_logging_events").disabled
        """,
    )
    result.assert_outcomes(passed=3)


def test_the_library_reports_reach_caplog_in_a_k8s_apiserver_test_after_a_conftest_dictconfig(
    pytester: pytest.Pytester,
) -> None:
    """A conftest's dictConfig (default disable_existing_loggers) disables the library's
    logger, which exists from the plugin's start: a test of the user's own handler on the
    k8s_apiserver fixture still sees the library's reports in caplog."""
    pytester.makeconftest("import shop_app\nshop_app.configure()\n")
    result = _run(
        pytester,
        """
        import logging
        from k8s_logging_events import KubernetesEventHandler

        def test_a_refused_object_is_reported(k8s_apiserver, caplog):
            handler = KubernetesEventHandler(sink=k8s_apiserver.url)
            try:
                handler.handle(logging.makeLogRecord({"involved": 42, "msg": "x"}))
            finally:
                handler.close()
            assert "Unable to refer to the involved object" in caplog.text

        def test_after_it_the_logger_is_as_the_test_found_it():
            assert logging.getLogger("k8s_logging_events").disabled
        """,
    )
    result.assert_outcomes(passed=2)


@pytest.mark.k8s_events("tests.plugin.operator")
def test_the_markers_positional_argument_is_the_logger_captured(k8s_events: CapturedEvents) -> None:
    """``@pytest.mark.k8s_events("name")`` attaches the fixture's handler to that logger, as
    ``capture_events("name")`` does, rather than dropping the argument for the root."""
    assert k8s_events.handler in logging.getLogger("tests.plugin.operator").handlers
    assert k8s_events.handler not in logging.getLogger().handlers


def test_the_state_restores_levels_handlers_and_disabled_flags() -> None:
    """What LoggingState puts back: each logger as it was, new loggers as new ones (but
    the NullHandler a library adds at import stays), and logging.disable()."""
    known = logging.getLogger("tests.plugin.known")
    known.setLevel(logging.INFO)
    own = logging.StreamHandler()
    known.addHandler(own)
    saved = LoggingState.save()
    known.disabled = True
    known.setLevel(logging.CRITICAL)
    known.handlers.clear()
    known.propagate = False
    fresh = logging.getLogger("tests.plugin.fresh")
    fresh.setLevel(logging.ERROR)
    fresh.addHandler(logging.StreamHandler())
    library_handler = logging.NullHandler()
    fresh.addHandler(library_handler)
    fresh.disabled = True
    logging.disable(logging.CRITICAL)
    assert "tests.plugin.known" in disabled_loggers()
    saved.restore()
    assert (known.disabled, known.level, known.handlers, known.propagate) == (
        False,
        logging.INFO,
        [own],
        True,
    )
    assert (fresh.disabled, fresh.level, fresh.handlers, fresh.propagate) == (
        False,
        logging.NOTSET,
        [library_handler],
        True,
    )
    assert logging.root.manager.disable == logging.NOTSET
    assert "tests.plugin.known" not in disabled_loggers()


def test_a_session_that_uses_no_fixture_imports_none_of_the_pipeline(
    pytester: pytest.Pytester,
) -> None:
    """The plugin is in every pytest session of a project that installs the library: one
    whose tests use none of its fixtures imports neither the handler and the rest of the
    pipeline, nor the local API server, nor kubernetes; only the plugin, the package (its
    fork and exit hooks) and the logging state the fixtures restore."""
    result = _run(
        pytester,
        """
        import sys

        def test_plain(request):
            assert request.config.pluginmanager.hasplugin("k8s_logging_events")

        def test_last_nothing_heavy_was_imported():
            assert "kubernetes" not in sys.modules
            ours = {name for name in sys.modules if name.startswith("k8s_logging_events")}
            assert ours == {
                "k8s_logging_events",
                "k8s_logging_events._process",
                "k8s_logging_events.testing",
                "k8s_logging_events.testing._clock",
                "k8s_logging_events.testing._logstate",
                "k8s_logging_events.testing._plugin",
                "k8s_logging_events.testing._wait",
            }
        """,
    )
    result.assert_outcomes(passed=2)


def test_dir_of_the_testing_package_lists_the_names_it_loads_lazily() -> None:
    """``dir(k8s_logging_events.testing)`` (a REPL's completion, ``help()``) shows every
    public name, the ones imported only when first used among them."""
    assert set(testing.__all__) <= set(dir(testing))


def test_a_type_checker_reports_a_misspelt_name_of_the_testing_package(tmp_path: Path) -> None:
    """The lazily loaded names are typed by their imports; a name the package does not have
    is an error for mypy, not an ``object`` answered by the module's ``__getattr__``."""
    user = tmp_path / "test_operator.py"
    user.write_text("from k8s_logging_events.testing import LocalApiSrver\n", encoding="utf-8")
    # the package's own module only: a user's mypy run sees the same names, in a second
    report, _, status = mypy.api.run(
        ["--follow-imports=skip", "--no-incremental", str(user), str(testing.__file__)]
    )
    assert status == 1
    assert 'has no attribute "LocalApiSrver"; maybe "LocalApiServer"?' in report


def test_a_failed_test_shows_what_it_captured_as_caplog_shows_its_records(
    pytester: pytest.Pytester,
) -> None:
    """A plain ``assert`` that fails in a test using ``k8s_events`` shows a "Captured events
    call" section with the capture's table, as caplog shows "Captured log call"; a test that
    passes, or fails without the fixture, shows none."""
    result = _run(
        pytester,
        f"""
        import shop_app

        POD = {POD}

        def test_fails_with_a_plain_assert(k8s_events):
            shop_app.back_off(POD)
            assert len(k8s_events.events) == 2

        def test_passes(k8s_events):
            shop_app.back_off(POD)

        def test_fails_without_the_fixture():
            assert False
        """,
    )
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    assert text.count("Captured events call") == 1
    result.stdout.re_match_lines(
        [
            r".*Captured events call.*",
            r"Captured 1 event\(s\):",
            r"Events:",
            r"\s+Type\s+Reason\s+Age\s+From\s+Message",
            r".*",
            r"\s+Warning\s+BackOff\s+0s\s+pytest\s+Back-off",
            r"Involved objects, in the same order:",
            r"\s+Pod shop/web-0 \(count 1, Warning BackOff\)",
        ]
    )


# pytest 6.2 has no StashKey, and pluggy before 1.2 (pytest 7 accepts 0.12 on) no new-style
# wrapper: the plugin is loaded into every session of a project that installs the library
OLD_PYTEST = """
import importlib, sys, pytest
from _pytest.config import default_plugins

for name in default_plugins:  # pytest's own, as they are: only the plugins loaded after
    importlib.import_module(f"_pytest.{name}")
del pytest.StashKey
new = pytest.hookimpl

def hookimpl(function=None, hookwrapper=False, optionalhook=False, tryfirst=False,
             trylast=False, specname=None):
    return new(function, hookwrapper=hookwrapper, optionalhook=optionalhook,
               tryfirst=tryfirst, trylast=trylast, specname=specname)

pytest.hookimpl = hookimpl
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_a_project_on_an_older_pytest_or_pluggy_still_runs_and_captures(
    pytester: pytest.Pytester,
) -> None:
    """A project whose lock file has pytest 6.2, or pytest 7 with pluggy 1.0, runs its suite
    after installing the library: the plugin uses what those offer, and a failed test that
    used ``k8s_events`` still shows what it captured."""
    pytester.makepyfile(shop_app=APP)
    pytester.makepyfile(
        test_shop=textwrap.dedent(
            f"""
            import shop_app

            def test_fails_with_a_plain_assert(k8s_events):
                shop_app.back_off({POD})
                assert not k8s_events.events

            def test_plain():
                pass
            """
        )
    )
    # pytest-timeout, a plugin of this suite's, needs a newer pytest itself
    plugins_off = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:timeout"]
    result = pytester.run(sys.executable, "-c", OLD_PYTEST, *plugins_off)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Captured events call*", "*Warning*BackOff*Back-off*"])


def test_the_markers_help_shows_the_logger_the_k8s_events_marker_takes(
    pytester: pytest.Pytester,
) -> None:
    """``pytest --markers`` says the ``k8s_events`` marker takes the logger to capture first,
    as ``@pytest.mark.k8s_events("my.operator", api="auto")`` in the docs, not only keywords."""
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.k8s_events(logger=None, **options): *"])
