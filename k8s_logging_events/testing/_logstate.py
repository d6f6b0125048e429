"""The logging configuration a test found, put back after it: what the fixtures protect.

On the test side of the pipeline. A test whose application calls ``dictConfig`` (with the
default ``disable_existing_loggers: true``), raises a logger's level or swaps handlers
changes the process's logging for every later test: a later test's logger that is still
disabled logs nothing, and its capture finds no event. :class:`LoggingState` records every
logger's handlers, filters, level, propagation and disabled flag (and ``logging.disable()``)
before the test and restores them after it; :func:`disabled_loggers` names the loggers a
failure message should mention.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass

_LIBRARY = "k8s_logging_events"
# every handler alive, as weak references: what logging.shutdown() flushes and closes at exit
_HANDLERS: list[weakref.ref[logging.Handler]] = vars(logging)["_handlerList"]
# the handlers by name, which an incremental dictConfig changes: cleared by any other one
_NAMED: weakref.WeakValueDictionary[str, logging.Handler] = vars(logging)["_handlers"]


@dataclass(frozen=True, slots=True)
class _Logger:
    handlers: tuple[logging.Handler, ...]
    filters: tuple[logging._FilterType, ...]
    level: int
    propagate: bool
    disabled: bool


class LoggingState:
    """The logging configuration at one moment, to restore later."""

    def __init__(self) -> None:
        self._loggers = {name: _snapshot(logger) for name, logger in _loggers().items()}
        self._root = _snapshot(logging.getLogger())
        self._disable = logging.root.manager.disable
        self._alive, self._named = list(_HANDLERS), dict(_NAMED)
        # dictConfig and basicConfig(force=True) close every handler alive (a MemoryHandler's
        # target, a QueueListener's too), and one closed may write nothing more (a
        # FileHandler of mode "w"): kept open till then
        found = {h for saved in [*self._loggers.values(), self._root] for h in saved.handlers}
        found.update(h for h in (ref() for ref in _HANDLERS) if h is not None)
        self._shielded = [h for h in found if "close" not in vars(h)]
        for handler in self._shielded:
            handler.close = handler.flush  # type: ignore[method-assign]

    @classmethod
    def save(cls) -> LoggingState:
        """Record the configuration now."""
        return cls()

    def restore(self) -> None:
        """Put every logger back as it was, its handlers open; loggers made since get a new
        logger's state.

        A logger created since the save (by the code under test) loses the handlers,
        level and propagation a configuration gave it, and is enabled; a ``NullHandler``
        stays, because a library adds one when it is imported, once.
        """
        for name, logger in _loggers().items():
            saved = self._loggers.get(name)
            if saved is None:
                kept = tuple(h for h in logger.handlers if isinstance(h, logging.NullHandler))
                saved = _Logger(kept, (), logging.NOTSET, True, False)
            _apply(logger, saved)
        _apply(logging.getLogger(), self._root)
        logging.disable(self._disable)
        # dictConfig empties the list: the handlers put back are flushed at exit again
        _HANDLERS[:] = [*self._alive, *(ref for ref in _HANDLERS if ref not in self._alive)]
        _NAMED.clear()
        _NAMED.update(self._named)
        for handler in self._shielded:
            del handler.close


def enable_library_logger(enabled: bool = True) -> bool:
    """Enable (or disable) the library's own logger; return whether it was disabled. Its
    reports are part of what a capture shows, and any ``dictConfig`` with the default
    ``disable_existing_loggers`` disables it: it exists from the plugin's start."""
    library = logging.getLogger(_LIBRARY)
    was_disabled, library.disabled = library.disabled, not enabled
    return was_disabled


def disabled_loggers() -> list[str]:
    """The names of the disabled loggers (the library's own aside), sorted."""
    return _others(lambda logger: logger.disabled)


def isolated_loggers() -> list[str]:
    """The names of the loggers that pass no record up (``propagate: false``; the library's
    own aside), sorted."""
    return _others(lambda logger: not logger.propagate)


def _others(chosen: Callable[[logging.Logger], bool]) -> list[str]:
    return sorted(
        name
        for name, logger in _loggers().items()
        if chosen(logger) and name != _LIBRARY and not name.startswith(_LIBRARY + ".")
    )


def _loggers() -> dict[str, logging.Logger]:
    return {
        name: logger
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if isinstance(logger, logging.Logger)
    }


def _snapshot(logger: logging.Logger) -> _Logger:
    return _Logger(
        tuple(logger.handlers),
        tuple(logger.filters),
        logger.level,
        logger.propagate,
        logger.disabled,
    )


def _apply(logger: logging.Logger, saved: _Logger) -> None:
    logger.handlers[:] = saved.handlers
    logger.filters[:] = saved.filters
    logger.setLevel(saved.level)
    logger.propagate = saved.propagate
    logger.disabled = saved.disabled
