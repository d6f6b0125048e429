"""Crash events: an uncaught exception becomes a ``Warning`` event about the pod.

A front door beside :mod:`k8s_logging_events.handler`, for its ``crash_events`` option
(docs/integrations.md, "Crash loops and restarts"). Our ``sys.excepthook`` and
``threading.excepthook`` hand each watching handler a :func:`crash_record`, then call the
hook below, which always runs; the main thread's then flushes, as the process is ending.
Our part never raises. The hooks are restored when the last handler stops watching, only if
still on top. A forked child keeps hooks and handlers: its crash is its own event.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from k8s_logging_events import _diagnostics, _process, _tracebacks

REASON = "UncaughtException"
"""The reason of a crash event: ``kubectl describe pod`` shows ``UncaughtException (xN)``."""

NOT_CRASHES: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit)
"""Exceptions that stop a program on purpose: no crash event (``CancelledError`` makes one)."""

RECORD_NAME = "uncaught"
"""The ``name`` of a crash record (no logger made it), for formatters that show it."""

ExcInfo = tuple[type[BaseException], BaseException | None, types.TracebackType | None]
SysHook = Callable[[type[BaseException], BaseException, types.TracebackType | None], Any]
ThreadHook = Callable[[threading.ExceptHookArgs], Any]


class Watcher(Protocol):
    """What a crash is reported to: a :class:`~.handler.KubernetesEventHandler`, whose
    ``handle`` never raises nor waits, and whose ``_flush_before_exit`` waits at most
    ``flush_timeout`` and leaves what is left to the report of the close at exit."""

    def handle(self, record: logging.LogRecord) -> object: ...

    def _flush_before_exit(self) -> None: ...


def watch(handler: Watcher, exception_detail: str) -> None:
    """Report uncaught exceptions to ``handler``, held weakly (dropped without ``close()``,
    it stops watching when collected); install the hooks if they are not ours yet.
    ``exception_detail`` is its option of that name (see :func:`crash_record`)."""
    global _watchers, _sys_hook, _thread_hook
    with _lock:
        kept = tuple(entry for entry in _watchers if entry[0]() not in (None, handler))
        _watchers = (*kept, (weakref.ref(handler), exception_detail))
        # ours on top, unless they are there: over whatever is set now
        if _sys_hook is None or sys.excepthook is not _sys_hook:
            _sys_hook = _SysHook(sys.excepthook)
            sys.excepthook = _sys_hook
        if _thread_hook is None or threading.excepthook is not _thread_hook:
            _thread_hook = _ThreadHook(threading.excepthook)
            threading.excepthook = _thread_hook


def unwatch(handler: Watcher) -> None:
    """Stop reporting to ``handler``; when none is left, restore the hooks that are ours."""
    global _watchers, _sys_hook, _thread_hook
    with _lock:
        _watchers = tuple(entry for entry in _watchers if entry[0]() not in (None, handler))
        if _watchers:
            return
        # a hook set over ours chains to ours: it stays, and ours only passes calls on
        if _sys_hook is not None and sys.excepthook is _sys_hook:
            sys.excepthook = _sys_hook.previous
        if _thread_hook is not None and threading.excepthook is _thread_hook:
            threading.excepthook = _thread_hook.previous
        _sys_hook = _thread_hook = None


def crash_record(exc_info: ExcInfo, exception_detail: str) -> logging.LogRecord:
    """The record of an uncaught exception: CRITICAL, reason ``UncaughtException``, message
    ``ExcType: text`` (``exception_detail: none``: the type alone; ``traceback`` adds the
    traceback, rendered after the summary so a cut keeps it); where the traceback ends is
    the record's path, line and function."""
    shown = exc_info if exception_detail != "none" else (exc_info[0], "", None)
    message = _tracebacks.exception_summary(shown)
    path, line, function, tb = "(unknown file)", 0, None, exc_info[2]
    if tb is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        path, line, function = code.co_filename, tb.tb_lineno, code.co_name
    kept = exc_info if exception_detail == "traceback" else None
    factory = logging.getLogRecordFactory()
    record = factory(RECORD_NAME, logging.CRITICAL, path, line, message, (), kept, function)
    record.reason = REASON
    return record


class _SysHook:
    """``sys.excepthook``: the main thread's; the process is about to end, so flush."""

    def __init__(self, previous: SysHook) -> None:
        self.previous = previous

    def __call__(
        self, exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None
    ) -> None:
        if hasattr(sys, "ps1") and _at_prompt(tb):  # the session goes on: no crash
            self.previous(exc_type, exc, tb)
            return
        # threading calls it on a dying thread when threading.excepthook raises: the
        # process goes on there, so nothing waits
        flush = threading.current_thread() is threading.main_thread()
        _chain((exc_type, exc, tb), lambda: self.previous(exc_type, exc, tb), flush=flush)


def _at_prompt(tb: types.TracebackType | None) -> bool:
    """True for an error typed at a prompt: a ``code`` module console (a framework's shell,
    3.13's REPL) calls the hook from its frames, ``python -i`` ran it as ``<stdin>``; ``sys.ps1``
    alone tells little: 3.11 and 3.12 leave it set after ``code.interact()`` returns."""
    if tb is not None and tb.tb_frame.f_code.co_filename == "<stdin>":
        return True
    frame: types.FrameType | None = sys._getframe()
    while frame is not None and frame.f_globals.get("__name__") != "code":
        frame = frame.f_back
    return frame is not None


class _ThreadHook:
    """``threading.excepthook``: another thread's; the process may go on, nothing waits."""

    def __init__(self, previous: ThreadHook) -> None:
        self.previous = previous

    def __call__(self, args: threading.ExceptHookArgs) -> None:
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        _chain(exc_info, lambda: self.previous(args), flush=False)


def _chain(exc_info: ExcInfo, previous: Callable[[], object], *, flush: bool) -> None:
    # the hook it was installed over always runs, whatever our part does
    if getattr(_in_hook, "on", False):  # an older hook of ours down the chain: reported
        previous()
        return
    _in_hook.on = True
    try:
        reported = _report(exc_info)
        try:
            previous()
        finally:
            if flush:
                _flush(reported)
    finally:
        _in_hook.on = False


def _report(exc_info: ExcInfo) -> list[Watcher]:
    """Hand the crash to every watching handler; return those that took it. Never raises."""
    if not isinstance(exc_info[0], type) or issubclass(exc_info[0], NOT_CRASHES):
        return []
    group = exc_info[1]
    # a group of stops on purpose alone (trio's and anyio's task groups raise Ctrl-C so); a
    # group subclass's derive() failing: a crash as it stands
    with contextlib.suppress(Exception):
        if isinstance(group, BaseExceptionGroup) and group.split(NOT_CRASHES)[1] is None:
            return []
    handed: list[Watcher] = []
    for ref, detail in _watchers:  # a snapshot: no lock on the way out of a crash
        handler = ref()
        if handler is None:
            continue
        try:
            handler.handle(crash_record(exc_info, detail))
        except Exception as error:  # a crash report must not add a crash of its own
            _diagnostics.report(logging.WARNING, "No event for an uncaught exception: %r", error)
        else:
            handed.append(handler)
    return handed


def _flush(handlers: list[Watcher]) -> None:
    for handler in handlers:
        try:
            handler._flush_before_exit()
        except (Exception, KeyboardInterrupt):  # Ctrl-C while waiting: stop waiting, quietly
            return


def _after_fork_in_child() -> None:  # the lock a thread of the parent may have held
    global _lock
    _lock = threading.Lock()


# the watching handlers, as an immutable snapshot that the hooks read without a lock
_watchers: tuple[tuple[weakref.ref[Watcher], str], ...] = ()
_sys_hook: _SysHook | None = None
_thread_hook: _ThreadHook | None = None
# set on a thread while one of our hooks runs there: a second one of ours in the same chain
# (a hook set over ours, then ours again on top) only passes the call on
_in_hook = threading.local()
_lock = threading.Lock()
_process.renew_in_child(sys.modules[__name__])
