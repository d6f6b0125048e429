"""crash_events: an uncaught exception becomes a Warning event about the pod (``_crash``).

The end-to-end cases run a small program in a child process, with the Downward API
variables set and ``sink=`` the local API server's URL, and read what it left on the server
and on its standard error. The hook's rules (chaining, restoring, several handlers, what is
not a crash, never raising) are checked in this process, calling the hooks as the
interpreter would.
"""

from __future__ import annotations

import code
import functools
import gc
import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import threading
import types
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from k8s_logging_events import KubernetesEventHandler, _crash, _pod
from k8s_logging_events.testing import LocalApiServer

ROOT = Path(__file__).resolve().parent.parent
POD_ENV = {"POD_NAME": "web-0", "POD_NAMESPACE": "default", "POD_UID": "uid-web-0"}


def _child(
    server: LocalApiServer, body: str, *, before: str = "", options: str = ""
) -> subprocess.Popen[str]:
    """Start ``body`` in a child process with a crash_events handler on ``server``
    (``before`` runs before the handler is built; ``options`` are more of its keywords)."""
    script = (
        "import logging, os, sys, threading\n"
        + textwrap.dedent(before)
        + textwrap.dedent(
            f"""
            from k8s_logging_events import KubernetesEventHandler

            handler = KubernetesEventHandler(
                sink={server.url!r}, component="crashy", default_involved="pod",
                crash_events=True, level="WARNING", sleep_duration=0{options},
            )
            logging.getLogger().addHandler(handler)
            """
        )
        + textwrap.dedent(body)
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, **POD_ENV, "PYTHONWARNINGS": "error"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _run(server: LocalApiServer, body: str, **kwargs: Any) -> tuple[int, str, str]:
    child = _child(server, body, **kwargs)
    out, err = child.communicate(timeout=60)
    return child.returncode, out, err


def _crashes(server: LocalApiServer) -> list[dict[str, Any]]:
    return [e for e in server.events("default") if e["reason"] == _crash.REASON]


def _one_crash(server: LocalApiServer) -> dict[str, Any]:
    """The one crash event on the server, written for one occurrence."""
    (event,) = _crashes(server)
    assert event.get("count", 1) == 1, event
    return event


def _counted(server: LocalApiServer) -> dict[str, int]:
    """Crash occurrences on the server by component (events' counts added up)."""
    counts: dict[str, int] = {}
    for event in _crashes(server):
        component = event["source"]["component"]
        counts[component] = counts.get(component, 0) + event.get("count", 1)
    return counts


class TestInAChildProcess:
    """What a crashing program leaves on the server and on its standard error."""

    def test_an_uncaught_exception_leaves_its_event(self, k8s_apiserver) -> None:
        """A Warning UncaughtException event about the pod, the summary as its message;
        the traceback is still printed and the exit status is still 1."""
        code, _, err = _run(
            k8s_apiserver,
            """
            def load():
                raise ValueError("bad config: port=abc")
            load()
            """,
        )
        assert code == 1
        assert "Traceback (most recent call last)" in err
        assert "ValueError: bad config: port=abc" in err
        event = _one_crash(k8s_apiserver)
        assert (event["type"], event["message"]) == ("Warning", "ValueError: bad config: port=abc")
        involved = event["involvedObject"]
        assert (involved["kind"], involved["name"], involved["namespace"], involved["uid"]) == (
            "Pod",
            "web-0",
            "default",
            "uid-web-0",
        )
        assert event["source"]["component"] == "crashy"

    def test_the_previous_excepthook_still_runs(self, k8s_apiserver) -> None:
        """A hook the program set before the handler was built runs too, after the event
        was handed over."""
        code, _, err = _run(
            k8s_apiserver,
            """
            raise KeyError("missing")
            """,
            before="""
            def mine(*args):
                print("previous hook ran", file=sys.stderr)
                sys.__excepthook__(*args)
            sys.excepthook = mine
            """,
        )
        assert code == 1
        assert "previous hook ran" in err
        assert "KeyError: 'missing'" in err
        event = _one_crash(k8s_apiserver)
        assert event["message"] == "KeyError: 'missing'"

    def test_written_before_the_process_ends(self, k8s_apiserver) -> None:
        """A non-daemon thread keeps the process alive after the main thread died: the
        event is on the server already (the hook flushed; it did not wait for the exit)."""
        child = _child(
            k8s_apiserver,
            """
            threading.Thread(target=sys.stdin.read).start()
            raise RuntimeError("main died")
            """,
        )
        try:
            event = k8s_apiserver.wait_for_event(reason=_crash.REASON, timeout=30)
            assert event["message"] == "RuntimeError: main died"
            assert child.poll() is None  # still running: written before the end
        finally:
            child.communicate("", timeout=60)
        assert child.returncode == 1

    def test_written_even_when_the_exit_skips_logging_shutdown(self, k8s_apiserver) -> None:
        """An exit that never reaches logging.shutdown() (an atexit function that calls
        os._exit first), and a first write that fails after a second: the hook's own flush
        retried it, so the event is there."""
        k8s_apiserver.inject(method="POST", path="/events", status=503, delay=1.0)
        code, _, err = _run(
            k8s_apiserver,
            "raise ValueError('abrupt')",
            before="import atexit\natexit.register(os._exit, 7)\n",
            # the first write imports the Kubernetes client: on a loaded machine that, the
            # second's delay and two requests came near the default 5 s; what is checked is
            # that this flush retries, not how fast
            options=", flush_timeout=30",
        )
        assert code == 7
        assert "ValueError: abrupt" in err
        event = _one_crash(k8s_apiserver)
        assert event["message"] == "ValueError: abrupt"
        assert [r.status for r in k8s_apiserver.requests if r.method == "POST"] == [503, 201]

    def test_a_thread_that_dies_while_the_process_goes_on(self, k8s_apiserver) -> None:
        """An exception in another thread is an event at once, while the program runs on;
        the thread's traceback is printed as before."""
        child = _child(
            k8s_apiserver,
            """
            def work():
                raise ZeroDivisionError("no workers")
            worker = threading.Thread(target=work, name="worker")
            worker.start()
            worker.join()
            print("still running", flush=True)
            sys.stdin.read()
            """,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "still running\n"
            event = k8s_apiserver.wait_for_event(reason=_crash.REASON, timeout=30)
            assert event["message"] == "ZeroDivisionError: no workers"
            assert child.poll() is None
        finally:
            _, err = child.communicate("", timeout=60)
        assert child.returncode == 0
        assert "Exception in thread worker" in err

    @pytest.mark.parametrize(
        ("body", "code"),
        # an uncaught KeyboardInterrupt ends the process by SIGINT, as Ctrl-C would
        [("raise KeyboardInterrupt", -2), ("raise SystemExit(3)", 3), ("sys.exit('bye')", 1)],
    )
    def test_stopping_on_purpose_is_not_a_crash(self, k8s_apiserver, body, code) -> None:
        """KeyboardInterrupt and SystemExit make no event."""
        returned, _, _ = _run(k8s_apiserver, body)
        assert returned == code
        assert _crashes(k8s_apiserver) == []

    def test_a_restart_makes_another_occurrence(self, k8s_apiserver) -> None:
        """Two crashes of the same program are one event about the pod counted twice, so
        that ``kubectl describe pod`` shows the crash loop as one row, x2."""
        for _ in range(2):
            code, _, _ = _run(k8s_apiserver, "raise ValueError('bad config')")
            assert code == 1
        (crash,) = _crashes(k8s_apiserver)
        assert crash["count"] == 2
        assert crash["message"] == "ValueError: bad config"

    def test_the_exit_stays_bounded_when_the_server_is_down(self, k8s_apiserver) -> None:
        """With the server refusing connections the crashing program still ends, its
        traceback printed, within the deadlines (flush_timeout 0.5 s here)."""
        with k8s_apiserver.refusing():
            code, _, err = _run(
                k8s_apiserver, "raise ValueError('down')", options=", flush_timeout=0.5"
            )
        assert code == 1
        assert "ValueError: down" in err
        assert _crashes(k8s_apiserver) == []

    def test_a_crash_on_a_hanging_server_says_once_what_was_not_written(
        self, k8s_apiserver
    ) -> None:
        """The crash's flush and the exit's close share one deadline and one report: the
        occurrences that could not be written are told once, by the exit (docs/reliability.md,
        "One report when something could not be written"). The crash's flush once said it
        too, so the same occurrences were reported twice."""
        k8s_apiserver.inject(action="hang", times=None)
        code, _, err = _run(
            k8s_apiserver, "raise ValueError('hung')", options=", flush_timeout=0.5"
        )
        assert code == 1
        assert "ValueError: hung" in err
        assert err.count("Unable to write") == 1, err

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_a_forked_child_reports_its_own_crash(self, k8s_apiserver) -> None:
        """After fork the child keeps the hooks: its crash is its event; the parent ends
        cleanly and writes none."""
        code, out, _ = _run(
            k8s_apiserver,
            """
            import warnings
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
            pid = os.fork()
            if pid == 0:
                raise ValueError("child crashed")
            _, status = os.waitpid(pid, 0)
            print(os.waitstatus_to_exitcode(status))
            """,
        )
        assert code == 0
        assert out.strip() == "1"
        event = _one_crash(k8s_apiserver)
        assert event["message"] == "ValueError: child crashed"


# --- the hooks, in this process -----------------------------------------------------------------


def _raised(exc: BaseException) -> tuple[type[BaseException], BaseException, types.TracebackType]:
    try:
        raise exc
    except BaseException as caught:
        traceback = caught.__traceback__
    assert traceback is not None
    return type(exc), exc, traceback


@pytest.fixture(name="pod_env")
def _pod_env(monkeypatch) -> None:
    for name, value in POD_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(name="hooks")
def _hooks(monkeypatch) -> dict[str, list[Any]]:
    """Recording hooks in place of the interpreter's (and pytest's), restored after."""
    calls: dict[str, list[Any]] = {"sys": [], "thread": []}
    monkeypatch.setattr(sys, "excepthook", lambda *args: calls["sys"].append(args))
    monkeypatch.setattr(threading, "excepthook", lambda args: calls["thread"].append(args))
    return calls


@pytest.fixture(name="make")
def _make(pod_env, hooks, make_handler) -> Callable[..., KubernetesEventHandler]:
    """Handlers that make crash events about the pod of ``pod_env`` (closed after the test,
    before the hooks are put back)."""
    return functools.partial(make_handler, default_involved="pod", crash_events=True)


class TestHooks:
    """Installing, chaining and restoring the interpreter's hooks."""

    def test_installed_at_construction_and_restored_at_close(self, make, hooks) -> None:
        """Both hooks are ours while the handler lives; close() puts the previous back."""
        previous_sys, previous_thread = sys.excepthook, threading.excepthook
        handler = make()
        assert sys.excepthook is not previous_sys
        assert threading.excepthook is not previous_thread
        handler.close()
        assert sys.excepthook is previous_sys
        assert threading.excepthook is previous_thread
        handler.close()
        assert sys.excepthook is previous_sys

    def test_off_by_default(self, k8s_apiserver, pod_env, hooks) -> None:
        """Without crash_events, default_involved alone installs nothing."""
        previous = sys.excepthook
        handler = KubernetesEventHandler(sink=k8s_apiserver.url, default_involved="pod")
        try:
            assert sys.excepthook is previous
        finally:
            handler.close()

    def test_outside_a_pod_a_crash_makes_no_event(
        self, k8s_apiserver, hooks, monkeypatch, tmp_path
    ) -> None:
        """No pod to be about: the hooks chain as always, and a crash writes nothing."""
        for name in (*POD_ENV, "HOSTNAME"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(_pod, "NAMESPACE_FILE", str(tmp_path / "absent"))
        handler = KubernetesEventHandler(
            sink=k8s_apiserver.url, default_involved="pod", crash_events=True
        )
        try:
            sys.excepthook(*_raised(ValueError("nowhere")))
            assert len(hooks["sys"]) == 1
            assert handler.stats()["accepted"] == 0
        finally:
            handler.close()
        assert _crashes(k8s_apiserver) == []

    def test_the_main_thread_hook_writes_and_chains(self, make, hooks, k8s_apiserver) -> None:
        """sys.excepthook: the event is on the server when the hook returns (it flushed),
        and the previous hook got the same exception."""
        make()
        exc_info = _raised(ValueError("boom"))
        sys.excepthook(*exc_info)
        assert hooks["sys"] == [exc_info]
        event = _one_crash(k8s_apiserver)
        assert (event["type"], event["message"]) == ("Warning", "ValueError: boom")

    def test_a_thread_s_uncaught_exception_makes_an_event(self, make, hooks, k8s_apiserver) -> None:
        """A real thread that dies: one event, and the previous threading hook ran."""
        handler = make()

        def work() -> None:
            raise LookupError("no such tenant")

        worker = threading.Thread(target=work, name="tenant-worker")
        worker.start()
        worker.join()
        handler.flush()

        ((args),) = hooks["thread"]
        assert (args.exc_type, args.thread) == (LookupError, worker)
        event = _one_crash(k8s_apiserver)
        assert event["message"] == "LookupError: no such tenant"

    def test_several_handlers_one_event_each_hooks_once(self, make, hooks, k8s_apiserver) -> None:
        """Two handlers: the hooks are installed once (the previous hook runs once) and
        each handler writes its event; closing one keeps the other's."""
        original = sys.excepthook
        first, second = make(component="first"), make(component="second")
        sys.excepthook(*_raised(ValueError("twice")))
        assert len(hooks["sys"]) == 1
        assert _counted(k8s_apiserver) == {"first": 1, "second": 1}

        first.close()
        assert sys.excepthook is not original
        sys.excepthook(*_raised(ValueError("once")))
        assert [
            e["source"]["component"] for e in _crashes(k8s_apiserver) if "once" in e["message"]
        ] == ["second"]
        second.close()
        assert sys.excepthook is original

    def test_a_hook_set_over_ours_is_left_alone(self, make, hooks, k8s_apiserver) -> None:
        """Another library chained over ours: close() leaves its hook in place, and ours,
        still in its chain, passes calls on without events."""
        handler = make()
        ours = sys.excepthook

        def theirs(*args: Any) -> None:
            ours(*args)

        sys.excepthook = theirs
        handler.close()
        assert sys.excepthook is theirs
        sys.excepthook(*_raised(ValueError("after close")))
        assert len(hooks["sys"]) == 1
        assert _crashes(k8s_apiserver) == []

    def test_ours_twice_in_a_chain_reports_once(self, make, hooks, k8s_apiserver) -> None:
        """A handler built while another hook is over ours puts ours on top again: one
        event per handler and every previous hook once, however often ours is chained."""
        make(component="first")
        ours = sys.excepthook
        theirs_ran: list[object] = []

        def theirs(*args: Any) -> None:
            theirs_ran.append(args)
            ours(*args)

        sys.excepthook = theirs
        make(component="second")
        assert sys.excepthook is not theirs
        sys.excepthook(*_raised(ValueError("chained")))
        assert (len(theirs_ran), len(hooks["sys"])) == (1, 1)
        assert _counted(k8s_apiserver) == {"first": 1, "second": 1}

    def test_a_hook_that_removed_ours_gets_ours_again(self, make, hooks, k8s_apiserver) -> None:
        """A library that put back the hook ours replaced (a context manager, say): the
        next handler with crash_events installs ours again."""
        replaced = sys.excepthook
        first = make()
        sys.excepthook = replaced
        make()
        sys.excepthook(*_raised(ValueError("seen")))
        assert len(hooks["sys"]) == 1
        assert sum(_counted(k8s_apiserver).values()) == 2
        first.close()

    def test_a_thread_hook_that_calls_sys_excepthook(self, make, hooks, k8s_apiserver) -> None:
        """A previous threading hook that routes to sys.excepthook (an old idiom): one event,
        and the thread's exception is not mistaken for the main thread's."""
        handler = make()
        calls: list[object] = []
        ours = _crash._thread_hook
        assert ours is not None

        def routes_to_sys(args: Any) -> None:
            calls.append(args)
            sys.excepthook(args.exc_type, args.exc_value, args.exc_traceback)

        ours.previous = routes_to_sys
        worker = threading.Thread(target=lambda: 1 / 0)
        worker.start()
        worker.join()
        handler.flush()
        assert len(calls) == len(hooks["sys"]) == 1
        assert sum(_counted(k8s_apiserver).values()) == 1

    def test_a_thread_hook_that_raises_makes_no_wait_on_that_thread(
        self, make, hooks, k8s_apiserver, monkeypatch
    ) -> None:
        """When the hook below ours in threading.excepthook raises, the threading module
        hands that error to sys.excepthook on the dying thread. The process goes on, so
        nothing waits there: only the main thread's uncaught exception flushes."""
        handler = make()
        ours = _crash._thread_hook
        assert ours is not None
        flushed_on: list[str] = []
        monkeypatch.setattr(
            handler,
            "_flush_before_exit",
            lambda: flushed_on.append(threading.current_thread().name),
        )

        def raises(args: Any) -> None:
            raise RuntimeError("the hook below ours is broken")

        ours.previous = raises
        worker = threading.Thread(target=lambda: 1 / 0, name="tenant-worker")
        worker.start()
        worker.join()
        handler.flush()
        assert flushed_on == []
        assert [args[0] for args in hooks["sys"]] == [RuntimeError]  # still passed on

    def test_an_error_at_an_interactive_prompt_is_no_crash(
        self, make, hooks, k8s_apiserver, monkeypatch
    ) -> None:
        """``kubectl exec`` into the pod and ``python manage.py shell`` (code.interact), or
        ``python -i``: every mistyped line went through sys.excepthook and became an
        ``UncaughtException`` event about the pod, each after a flush, though the session
        went on. At a prompt (a console of the ``code`` module's, or the interpreter's,
        which runs what was typed as ``<stdin>``) the previous hook alone runs."""
        handler = make()
        monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
        code.InteractiveConsole().push("undefined_name")
        with pytest.raises(NameError) as typed:
            exec(compile("undefined_name\n", "<stdin>", "single"), {})
        sys.excepthook(NameError, typed.value, typed.tb.tb_next)  # the interpreter's prompt
        assert [args[0] for args in hooks["sys"]] == [NameError, NameError]
        handler.flush()
        assert handler.stats()["accepted"] == 0
        assert _crashes(k8s_apiserver) == []

    def test_a_crash_after_a_debug_console_closed_is_still_one(
        self, make, hooks, k8s_apiserver, monkeypatch
    ) -> None:
        """Python 3.11 and 3.12 leave ``sys.ps1`` set after ``code.interact()`` returns (a
        debug console of a service, pdb's ``interact``): the service's real crash later made
        no event, for the rest of the process's life. Only a prompt's own errors are none."""
        handler = make()
        monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
        sys.excepthook(*_raised(RuntimeError("the real crash")))
        handler.flush()
        assert len(_crashes(k8s_apiserver)) == 1

    @pytest.mark.parametrize(
        "exc",
        [
            KeyboardInterrupt(),
            SystemExit(2),
            BaseExceptionGroup("nursery", [KeyboardInterrupt()]),
            BaseExceptionGroup("", [SystemExit(0), BaseExceptionGroup("", [KeyboardInterrupt()])]),
        ],
    )
    def test_stopping_on_purpose_is_passed_on_without_an_event(
        self, make, hooks, k8s_apiserver, exc
    ) -> None:
        """KeyboardInterrupt and SystemExit reach the previous hooks, and make no event; so
        does a group of them alone, as trio's and anyio's task groups raise Ctrl-C (it was
        an ``UncaughtException`` event, ``BaseExceptionGroup: ...: KeyboardInterrupt``)."""
        handler = make()
        sys.excepthook(*_raised(exc))
        thread_args = threading.ExceptHookArgs((type(exc), exc, None, None))
        threading.excepthook(thread_args)
        handler.flush()
        assert len(hooks["sys"]) == len(hooks["thread"]) == 1
        assert handler.stats()["accepted"] == 0
        assert _crashes(k8s_apiserver) == []

    def test_the_hook_never_raises(self, make, hooks, monkeypatch, caplog) -> None:
        """A handler that fails to take the crash: the hook returns, the previous hook ran,
        and the failure is reported."""
        handler = make()

        def broken(record: logging.LogRecord) -> bool:
            raise RuntimeError("handler broken")

        monkeypatch.setattr(handler, "handle", broken)
        sys.excepthook(*_raised(ValueError("boom")))
        threading.excepthook(threading.ExceptHookArgs((ValueError, ValueError("t"), None, None)))
        assert len(hooks["sys"]) == len(hooks["thread"]) == 1
        reports = [r.getMessage() for r in caplog.records if r.name == "k8s_logging_events"]
        assert reports == ["No event for an uncaught exception: RuntimeError('handler broken')"] * 2

    def test_a_closed_handler_writes_nothing(self, make, hooks, k8s_apiserver) -> None:
        """After close() a crash makes no event (and counts nothing as after_close)."""
        handler = make()
        handler.close()
        sys.excepthook(*_raised(ValueError("late")))
        assert handler.stats()["after_close"] == 0
        assert _crashes(k8s_apiserver) == []

    def test_a_dropped_handler_stops_watching(self, k8s_apiserver, pod_env, hooks) -> None:
        """Held weakly: a handler dropped without close() is not kept alive by the hooks."""
        handler = KubernetesEventHandler(sink=None, default_involved="pod", crash_events=True)
        ref = weakref.ref(handler)
        del handler
        gc.collect()
        assert ref() is None
        sys.excepthook(*_raised(ValueError("nobody")))
        assert len(hooks["sys"]) == 1


class TestMessage:
    """What the event says, by exception_detail."""

    @pytest.mark.parametrize(
        ("detail", "expected"),
        [("summary", "ValueError: password=hunter2"), ("none", "ValueError")],
    )
    def test_summary_and_none(self, make, hooks, k8s_apiserver, detail, expected) -> None:
        """summary: ``ExcType: text``; none: the type alone (the text may hold secrets)."""
        make(exception_detail=detail)
        sys.excepthook(*_raised(ValueError("password=hunter2")))
        event = _one_crash(k8s_apiserver)
        assert event["message"] == expected

    def test_traceback_puts_the_summary_first(self, make, hooks, k8s_apiserver) -> None:
        """traceback: the summary, then the traceback (a cut keeps the summary)."""
        make(exception_detail="traceback")
        sys.excepthook(*_raised(ValueError("deep")))
        event = _one_crash(k8s_apiserver)
        first, *rest = event["message"].splitlines()
        assert first == "ValueError: deep"
        assert rest[0] == "Traceback (most recent call last):"
        assert "_raised" in event["message"]

    def test_the_record(self) -> None:
        """CRITICAL, reason UncaughtException, where the traceback ends; the exception
        rides along only for traceback."""
        exc_info = _raised(ValueError("x"))
        record = _crash.crash_record(exc_info, "summary")
        assert (record.levelno, record.getMessage(), record.__dict__["reason"]) == (
            logging.CRITICAL,
            "ValueError: x",
            "UncaughtException",
        )
        assert (record.pathname, record.funcName) == (__file__, "_raised")
        assert record.exc_info is None
        assert _crash.crash_record(exc_info, "traceback").exc_info == exc_info

    def test_an_unprintable_exception(self) -> None:
        """An exception whose str() fails still has a type."""

        class UnprintableError(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        record = _crash.crash_record(_raised(UnprintableError()), "summary")
        assert record.getMessage().endswith("UnprintableError: <unprintable>")


class TestConfiguration:
    """The option is checked when the handler is built."""

    def test_without_default_involved_construction_fails(self, hooks) -> None:
        """A clear ValueError naming default_involved; no hook is installed."""
        previous = sys.excepthook
        with pytest.raises(ValueError, match="crash_events needs default_involved: 'pod'"):
            KubernetesEventHandler(sink=None, crash_events=True)
        assert sys.excepthook is previous

    def test_dictconfig_reports_it(self, hooks) -> None:
        """dictConfig names the handler, with the option's message as the cause."""
        config = {
            "version": 1,
            "handlers": {
                "events": {
                    "class": "k8s_logging_events.KubernetesEventHandler",
                    "sink": None,
                    "crash_events": True,
                }
            },
        }
        with pytest.raises(ValueError, match="Unable to configure handler 'events'") as raised:
            logging.config.dictConfig(config)
        assert "crash_events needs default_involved" in str(raised.value.__cause__)

    @pytest.mark.parametrize("value", ["enabled", 1, None])
    def test_a_bool_only(self, value) -> None:
        """A boolean, or text that configparser's getboolean reads as one ("yes"), nothing
        else that merely looks like one."""
        with pytest.raises(ValueError, match="crash_events must be true or false"):
            KubernetesEventHandler(sink=None, default_involved="pod", crash_events=value)

    def test_from_dictconfig(self, k8s_apiserver, pod_env, hooks) -> None:
        """``crash_events: true`` with ``default_involved: pod`` in a dictConfig file."""
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "events": {
                        "class": "k8s_logging_events.KubernetesEventHandler",
                        "sink": k8s_apiserver.url,
                        "default_involved": "pod",
                        "crash_events": True,
                    }
                },
                "root": {"handlers": ["events"], "level": "WARNING"},
            }
        )
        (handler,) = logging.getLogger().handlers
        try:
            sys.excepthook(*_raised(OSError("disk full")))
            event = _one_crash(k8s_apiserver)
            assert event["message"] == "OSError: disk full"
        finally:
            handler.close()
