"""The process around the pipeline: fork, a ``multiprocessing`` child's exit, signal masks.

This sits beside the pipeline, under everything that holds state: it imports nothing of the
library, and whatever a background thread of the library may be using registers here. It is
the one place that knows what a child renews after ``os.fork()`` (the only
``os.register_at_fork`` of the package), what a ``multiprocessing`` child writes when its
target returns, and which signals the library's threads leave to the application.

**Fork.** ``os.fork()`` copies one thread, the one that forks; every lock another thread
held at that instant stays held in the child, by a thread the child does not have. So
everything such a thread may be holding is renewed in the child, before anything else runs
there. The objects register themselves with :func:`renew_in_child` when they are made, and
each renews its own state in ``_after_fork_in_child()`` (renewed in the order they were
made):

======================  ==============================================================
registered              what the child renews
======================  ==============================================================
Runtime                 its queue, threads (started again on the next event), pending
                        writes, correlators (made again on the next event), the queues
                        of its watchers; the parent's queued and pending occurrences stay
                        the parent's, so nothing is written twice
EventBroadcaster        its ``invalid`` counter
Counters                every outcome counter, back to zero
RateLimitedReporter     its locks; reports the parent deferred, held back or counted are
                        the parent's to write
StandardError           its lock (the limit on what reaches standard error)
EventNamer              its lock (a dispatcher holds it for every event it names)
EventCorrelator,        their locks
SeriesCorrelator
Continuation            its lock (a writer holds it to note what it saw of an event)
KubernetesEventSink     its rate-limit lock, its keep-alive connections (the child's
                        copies are closed: the parent's stay open), the official client's
                        connection pool
LazySink, PodUidSink    their locks (a client build or a pod read under way in the parent
                        is made again in the child when it needs it)
KubernetesEventHandler  its lock, counters and call sites; its own broadcaster is left to
                        the parent, and the child makes a new one at its next record
_crash, metrics         their module locks (the uncaught-exception hooks', a scrape's)
======================  ==============================================================

(Modules register themselves: ``renew_in_child(sys.modules[__name__])`` with a
module-level ``_after_fork_in_child()``.)

A child's counters therefore start at zero and add up on their own: after a flush,
``accepted`` equals the sum of the outcomes of what the child logged.

Process-wide, a fork waits (a bounded time) while a writer thread imports the ``kubernetes``
client, so that no child inherits a half-imported module (:func:`importing`).

**Exit.** A ``multiprocessing`` child ends with ``os._exit()`` after running its finalizers:
``atexit`` (so ``logging.shutdown()``) never runs there. What registers with
:func:`flush_when_child_ends` is flushed (``flush_at_child_exit()``) when the target returns.

**Signals.** A signal sent to the process goes to any thread that does not block it, and
CPython runs its Python handler only when the main thread next runs Python code: one taken
by a library thread while the main thread waits in a lock (a ``Pool`` worker between tasks)
is handled late or never. The library's threads therefore block the termination signals
(:func:`leave_signals_to_the_main_thread`). A subprocess inherits the mask of the thread
that starts it, and a blocked SIGTERM or SIGINT would make it unstoppable, so a library
thread unblocks them while it may start one: building the client or reading credentials,
where a kubeconfig ``exec`` plugin runs (:func:`subprocesses_may_start`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Protocol

__all__ = [
    "MAIN_THREAD_SIGNALS",
    "flush_when_child_ends",
    "importing",
    "leave_signals_to_the_main_thread",
    "renew_in_child",
    "subprocesses_may_start",
]

FORK_IMPORT_WAIT_SECONDS = 10.0
"""The longest a fork waits for a writer thread's import of the ``kubernetes`` client."""

MAIN_THREAD_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
"""The signals the library's threads block: an application handles them on its main thread."""


class Renewable(Protocol):
    """Something a thread of the library may be using, with what a child must renew."""

    def _after_fork_in_child(self) -> None: ...


class ExitFlushable(Protocol):
    """Something that writes what it holds when a ``multiprocessing`` child ends."""

    def flush_at_child_exit(self) -> None: ...


# --- fork --------------------------------------------------------------------------------

_order = itertools.count()
_renewable: weakref.WeakValueDictionary[int, Renewable] = weakref.WeakValueDictionary()
_importing = threading.Lock()
_fork_holds_import = False


def renew_in_child(target: Renewable) -> None:
    """Have ``target._after_fork_in_child()`` run in every child forked from now on."""
    _renewable[next(_order)] = target


def importing() -> threading.Lock:
    """The lock to hold while importing the ``kubernetes`` client on a library thread.

    A fork waits for it (at most :data:`FORK_IMPORT_WAIT_SECONDS`): a child must not inherit
    a module half imported, whose import lock belongs to a thread it does not have.
    """
    return _importing


def _before_fork() -> None:
    global _fork_holds_import
    _fork_holds_import = _importing.acquire(timeout=FORK_IMPORT_WAIT_SECONDS)


def _after_fork_in_parent() -> None:
    global _fork_holds_import
    if _fork_holds_import:
        _fork_holds_import = False
        _importing.release()


def _after_fork_in_child() -> None:
    global _importing, _fork_holds_import, _exit_hook_in
    _importing = threading.Lock()
    _fork_holds_import = False
    _exit_hook_in = None
    for target in list(_renewable.values()):
        # one object that cannot renew itself must not leave the others unrenewed
        with contextlib.suppress(Exception):
            target._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


# --- a multiprocessing child's exit ------------------------------------------------------

_to_flush: weakref.WeakSet[ExitFlushable] = weakref.WeakSet()
_exit_hook_in: int | None = None


def flush_when_child_ends(target: ExitFlushable) -> None:
    """In a ``multiprocessing`` child, call ``target.flush_at_child_exit()`` when it ends."""
    _to_flush.add(target)
    global _exit_hook_in
    pid = os.getpid()
    if _exit_hook_in == pid:
        return
    _exit_hook_in = pid
    process = sys.modules.get("multiprocessing")
    if process is None or process.parent_process() is None:
        return
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, _flush_all, exitpriority=100)


def _flush_all() -> None:
    for target in list(_to_flush):
        with contextlib.suppress(Exception):
            target.flush_at_child_exit()


# --- signals -----------------------------------------------------------------------------

_mask = threading.local()


def leave_signals_to_the_main_thread() -> None:
    """Block :data:`MAIN_THREAD_SIGNALS` on the calling thread, one of the library's."""
    if not hasattr(signal, "pthread_sigmask"):
        return
    with contextlib.suppress(OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
        _mask.blocked = True


@contextlib.contextmanager
def subprocesses_may_start() -> Iterator[None]:
    """Unblock :data:`MAIN_THREAD_SIGNALS` on this thread while a subprocess may start.

    A subprocess inherits its thread's signal mask, through ``exec`` too: one started with
    SIGTERM and SIGINT blocked ignores both, and may outlive the application. Nothing to do
    on a thread that does not block them (the application's).
    """
    if not getattr(_mask, "blocked", False):
        yield
        return
    signal.pthread_sigmask(signal.SIG_UNBLOCK, MAIN_THREAD_SIGNALS)
    _mask.blocked = False
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
        _mask.blocked = True
