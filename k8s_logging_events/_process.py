"""The process around the pipeline: fork, a ``multiprocessing`` child's exit, signal masks.

Beside the pipeline, importing nothing of the library (docs/architecture.md).

**Fork.** ``os.fork()`` copies only the forking thread: a lock another thread held stays
held in the child. Whatever a library thread may hold registers with :func:`renew_in_child`
when made (a module: ``sys.modules[__name__]``; the list: docs/reliability.md, "Fork"), and
is renewed in the child, in the order made, first (or at :func:`renewed`: a log call from a
hook that runs before). The package's only ``os.register_at_fork``.

**Exit.** A ``multiprocessing`` child (and a Celery prefork worker) ends with
``os._exit()``: no ``atexit``, no ``logging.shutdown()`` (:func:`flush_when_child_ends`). At
exit Python 3.12 starts no thread (:func:`refused_at_exit`). As it begins, every runtime
drains at once (:func:`exit_begins`). The exit waits for a stop left to a thread of its own
(:data:`AT_EXIT`), which a Ctrl-C cuts short. The package's only ``atexit`` functions.

**Signals.** Signal handlers run on the main thread only, so the library's threads block the
termination signals (taken there, one is handled late or never), but while a subprocess may
start.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import operator
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Protocol

CUT_STOP_SECONDS = 1.0
"""What a stop cut short at exit gets to give its writes up, count and say them."""

FORK_IMPORT_WAIT_SECONDS = 10.0
"""The longest a fork waits for a thread's import of the client (and again, inside OpenSSL)."""

MAIN_THREAD_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
"""The signals the library's threads block: an application handles them on its main thread."""

_FAULTS = frozenset(
    getattr(signal, name)
    for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL")
    if hasattr(signal, name)
)
"""Never blocked by a fork's wait: a blocked fault ends the process without its stack."""


class Renewable(Protocol):
    def _after_fork_in_child(self) -> None: ...


class ExitFlushable(Protocol):
    def flush_at_child_exit(self) -> None: ...
    def drain_at_exit(self, began: float) -> None: ...


_order = itertools.count()
_renewable: weakref.WeakValueDictionary[int, Renewable] = weakref.WeakValueDictionary()
_importing = threading.Lock()
_openssl = threading.Lock()


class _Forks(threading.local):
    """Per forking thread (each releases only what it took), a stack (a fork within a fork's
    hooks: another library's, or a signal handler's) of the mask to restore and locks taken."""

    def __init__(self) -> None:
        self.stack: list[tuple[set[int | signal.Signals], list[threading.Lock]]] = []


_held_at_fork = _Forks()
_renewed_in = os.getpid()  # the process whose objects are its own, not a parent's copies
# one item per fork under way in this process (appended and popped in C: threads fork at
# once): only while it has one may this process be a child not renewed yet
_forking: list[None] = []


def renew_in_child(target: Renewable) -> None:
    """Have ``target._after_fork_in_child()`` run in every child forked from now on."""
    _renewable[next(_order)] = target


class Locked:
    """Owns ``_lock``, which a child after fork gets anew: a parent's thread may have held it."""

    # what the subclasses use of it, in a form typing.get_type_hints can evaluate: at run time
    # threading.Lock and threading.RLock are functions, and "|" between them raises TypeError
    _lock: contextlib.AbstractContextManager[bool]

    def __init__(self) -> None:
        self._after_fork_in_child()
        renew_in_child(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


def importing() -> threading.Lock:
    """The lock to hold while importing the ``kubernetes`` client on a library thread: a
    fork waits for it, as a child must not inherit a half-imported module."""
    return _importing


def openssl() -> threading.Lock:
    """The lock to hold while a library thread works inside OpenSSL (never while it waits for
    the network): a fork waits for it, as OpenSSL's locks held then stay held in the child."""
    return _openssl


def _before_fork() -> None:
    # the wait runs no handler of a signal this thread takes, as os.fork() alone runs none:
    # one that forks would recurse into this wait, one that raises (sys.exit on SIGTERM)
    # would cut it short and the child could inherit a half-made import
    _forking.append(None)
    _flush_when_celery_worker_ends()  # inherited: the child's first event may be too late
    forks = _held_at_fork.stack
    held = [lock for _, taken in forks for lock in taken]  # an outer fork's: no import runs
    taken: list[threading.Lock] = []
    forks.append((signal.pthread_sigmask(signal.SIG_BLOCK, ()), taken))
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - _FAULTS)
    waits = [lock for lock in (_importing, _openssl) if lock not in held]
    # in C, no handler runs between a lock's acquire and its append: after-hooks release it
    taken.extend(filter(operator.methodcaller("acquire", timeout=FORK_IMPORT_WAIT_SECONDS), waits))


def _after_fork_in_parent() -> None:
    if _forking:
        _forking.pop()
    forks = _held_at_fork.stack
    if forks:
        mask, taken = forks.pop()
        for lock in reversed(taken):
            lock.release()
        # after the release: a handler that forks again finds the locks free
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def renewed() -> None:
    """Renew now in a forked child whose hooks have not reached ours (an earlier one may log).
    Cheap on the caller's path: no system call unless a fork is under way."""
    if _forking:
        _renew()


def _renew() -> None:
    global _importing, _openssl, _exit_hook_in, _renewed_in
    if _renewed_in == os.getpid():
        return
    _renewed_in = os.getpid()
    _importing, _openssl, _exit_hook_in = threading.Lock(), threading.Lock(), None
    _awaiting.clear()
    AT_EXIT.clear()  # the parent's stops: their threads are not here, their Events never set
    for target in list(_renewable.values()):
        # one object that cannot renew itself must not leave the others unrenewed
        with contextlib.suppress(Exception):
            target._after_fork_in_child()


def _after_fork_in_child() -> None:
    _renew()
    _forking.clear()  # the parent's; this process forks none yet
    forks = _held_at_fork.stack
    if forks:  # its locks were the parent's, renewed
        signal.pthread_sigmask(signal.SIG_SETMASK, forks.pop()[0])


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


_to_flush: weakref.WeakSet[ExitFlushable] = weakref.WeakSet()
_exit_hook_in: int | None = None
_celery_hooked = False
_finalized_in: int | None = None  # the process whose multiprocessing finalizers flush


def flush_when_child_ends(target: ExitFlushable) -> None:
    """In a ``multiprocessing`` child or a Celery worker process, call
    ``target.flush_at_child_exit()`` when it ends."""
    _to_flush.add(target)
    global _exit_hook_in
    pid = os.getpid()
    if _exit_hook_in == pid:
        return
    _exit_hook_in = pid
    _flush_when_celery_worker_ends()  # no fork of ours made the process (imported after it)
    util = sys.modules.get("multiprocessing.util")
    multiprocessing = sys.modules.get("multiprocessing")
    if util is None or multiprocessing is None:
        return
    if multiprocessing.parent_process() is not None:
        _when_child_begins(None)
    else:
        # not a child yet, maybe soon: a spawn or forkserver child imports the main module
        # (which may log) while it is prepared, then clears its finalizers and calls these
        util.register_after_fork(_to_flush, _when_child_begins)


def _flush_when_celery_worker_ends() -> None:
    # a prefork worker (billiard's fork) ends with os._exit after this signal, which a
    # receiver of it may send the process's first event from: connected after, that send
    # would not flush it. Once: Celery's lock is not taken again on the caller's path
    global _celery_hooked
    celery = sys.modules.get("celery.signals")
    if celery is not None and not _celery_hooked:
        with contextlib.suppress(Exception):
            celery.worker_process_shutdown.connect(_flush_all, weak=False, dispatch_uid=__name__)
            _celery_hooked = True


def _when_child_begins(_: object) -> None:
    # have this multiprocessing child's finalizers (just cleared, when it begins) flush
    global _exit_hook_in, _finalized_in
    util = sys.modules.get("multiprocessing.util")
    if util is None or _finalized_in == os.getpid():
        return
    _exit_hook_in = _finalized_in = os.getpid()
    util.Finalize(None, _flush_all, exitpriority=100)


def _flushable() -> list[ExitFlushable]:
    while True:  # a runtime another thread starts meanwhile changes the set: copy it again
        with contextlib.suppress(RuntimeError):
            return list(_to_flush)


_exit_began_in = 0
"""The process whose exit began: its runtimes drain from then, once."""


def exit_begins() -> None:
    """At our atexit function, or at a wait before it on the main thread once that has ended
    (an atexit function registered after ours: loguru's ``logger.remove`` closes its sinks):
    every runtime drains from then, once, or each would wait its own timeout after that one."""
    global _exit_began_in
    main = threading.main_thread()
    ended = threading.current_thread() is main and not main.is_alive()
    if ended and _exit_began_in != os.getpid():
        _exit_began_in = os.getpid()
        EXITING.set()
        _drain_all()


def _drain_all() -> None:
    # the exit flushes one after another (logging.shutdown(), a child's finalizer): all drain
    # at once, each within its timeout of now, or each would wait its own after the others'
    began = time.monotonic()
    for target in _flushable():
        with contextlib.suppress(Exception):
            target.drain_at_exit(began)


def _flush_all(**_: object) -> None:
    _drain_all()
    for target in _flushable():
        with contextlib.suppress(Exception):
            target.flush_at_child_exit()
    _wait_for_stops()  # os._exit follows, no atexit: a stop's daemon thread would be killed


AT_EXIT: dict[threading.Event, tuple[float, Callable[[], None]]] = {}
"""Stops on (daemon) threads of their own, each with the longest the exit waits until its
Event is set, and what cuts it short."""


def _wait_for_stops() -> None:
    try:
        for stopped, (bound, _) in list(AT_EXIT.items()):
            stopped.wait(bound)
    except (KeyboardInterrupt, SystemExit):  # they give their writes up at once
        cut_exit()
        for _, cut in list(AT_EXIT.values()):
            cut()
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            for stopped in list(AT_EXIT):
                stopped.wait(CUT_STOP_SECONDS)


EXITING = threading.Event()
"""Set when the interpreter's exit begins (:func:`exit_begins`, before the stops are waited
for and ``logging.shutdown()``): a client built from then on was built after the kubernetes
client's clean-up at exit, or registered it too late to run."""

EXIT_CUT = threading.Event()
"""Set when a Ctrl-C (or a SIGTERM handler's exit) ended a wait at exit: the user wants out,
so every handler's wait after it gives its writes up at once, not only the interrupted one's."""


def cut_exit() -> None:
    """A wait met a Ctrl-C where the main thread has ended: if the exit has begun, end it."""
    if EXITING.is_set():  # else a thread's own (a test's), which must not outlive it
        EXIT_CUT.set()


atexit.register(_wait_for_stops)  # after logging's: it runs before logging.shutdown()
atexit.register(exit_begins)


def refused_at_exit(error: BaseException) -> bool:
    """True when a thread's ``start()`` raised ``error`` because the interpreter exits (3.12):
    none will start again. Not a thread limit ("can't start new thread"), which passes."""
    return isinstance(error, RuntimeError) and "interpreter shutdown" in str(error)


_requests = threading.local()


@contextlib.contextmanager
def requests_end_by(end: float) -> Iterator[None]:
    """Requests made on this thread in the block end by ``end`` (:func:`time.monotonic`): a
    flush writing on its own thread (3.12 at exit) keeps its deadline."""
    previous = getattr(_requests, "end", None)
    _requests.end = end if previous is None else min(previous, end)
    try:
        yield
    finally:
        _requests.end = previous


def request_seconds(seconds: float) -> float:
    """``seconds``, a request's timeout, or less: what is left of :func:`requests_end_by`."""
    end = getattr(_requests, "end", None)
    return seconds if end is None else max(0.001, min(seconds, end - time.monotonic()))


@contextlib.contextmanager
def requests_given_up_by(given_up: threading.Event) -> Iterator[None]:
    """Requests made on this thread in the block are not sent once ``given_up`` is set (a
    shutdown counted their write failed), whatever the sink, which may outlive it, waits for."""
    previous, _requests.given_up = getattr(_requests, "given_up", None), given_up
    try:
        yield
    finally:
        _requests.given_up = previous


def request_cancel(default: threading.Event) -> threading.Event:
    """What a wait before this thread's request waits on: :func:`requests_given_up_by`'s
    event (the sink's close sets it too), else ``default`` (the sink's close)."""
    given_up: threading.Event | None = getattr(_requests, "given_up", None)
    return given_up or default


_mask = threading.local()
# a write held by an exec plugin (no timeout) waits for that, not the server: reports say which
_awaiting: set[int] = set()


def awaiting_credentials() -> frozenset[int]:
    """The threads now waiting for the client's set-up or credentials (an exec plugin)."""
    return frozenset(_awaiting)


@contextlib.contextmanager
def await_credentials() -> Iterator[None]:
    """Count the calling thread in :func:`awaiting_credentials` for this block."""
    ident = threading.get_ident()
    outermost = ident not in _awaiting
    _awaiting.add(ident)
    try:
        yield
    finally:
        if outermost:
            _awaiting.discard(ident)


def leave_signals_to_the_main_thread() -> None:
    """Block :data:`MAIN_THREAD_SIGNALS` on the calling thread, one of the library's."""
    if not hasattr(signal, "pthread_sigmask"):
        return
    with contextlib.suppress(OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
        _mask.blocked = True


@contextlib.contextmanager
def subprocesses_may_start() -> Iterator[None]:
    """Unblock :data:`MAIN_THREAD_SIGNALS` on this thread while a subprocess may start (it
    inherits the mask through ``exec``), counted as awaiting credentials meanwhile."""
    with await_credentials():
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
