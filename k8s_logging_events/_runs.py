"""Runs of repeats: a batch of queued occurrences cut into runs to correlate at once.

Between the runtime's queue and the correlators, on the dispatcher: the runtime drains the
queue in batches, and a correlator counts a run of repeats (occurrences identical but for
their time) from its last occurrence (and its first, when that one is a new event), so
that in a burst most occurrences never become an Event. Correlating a batch in runs must
write exactly what correlating its occurrences one by one, in the order they came, would
have written (client-go's order):

* when a sink's correlation state never crosses objects (client-go's key functions, or a
  series), occurrences may be taken object by object: those of one object keep their order,
  and a run gathers every repeat of a batch that is not interrupted by another occurrence
  of the same object, however the threads that logged interleaved;
* otherwise (a ``key_func`` or ``spam_key_func`` that groups occurrences of several
  objects together) runs are only cut from consecutive occurrences, in arrival order.

One difference remains with client-go's key functions: with more keys in play than the
correlator's ``lru_cache_size``, the caches may evict a different key first, since an
object's occurrences are counted together rather than interleaved with the others'.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, overload

from k8s_logging_events import models

__all__ = ["Keys", "Run", "cut"]

Keys = Callable[[Any], tuple[Hashable, object]]
"""An item's correlation group (the object, source and type: items of different groups share
no correlation state under client-go's key functions) and the rest of what a repeat has in
common with it (all but the time)."""

Build = Callable[[Any], models.Event]


class Run(Sequence[models.Event]):
    """Queued items identical for correlation, each built into an Event when first read.

    A correlator reads the last (and maybe the first) of a run of repeats, so in a burst most
    occurrences are counted without ever becoming an Event (building one means naming it
    and a dataclass of 18 fields). What is built is kept, by position in the batch, for
    every run cut from that batch: every sink reads the same Event, and a slice
    (``run[1:]``) shares the run's items and built events. A failure to build raises
    where the event is read, and costs the run.
    """

    __slots__ = ("_build", "_built", "_items", "_positions")

    def __init__(
        self,
        items: Sequence[Any],
        build: Build,
        positions: Sequence[int] | None = None,
        built: dict[int, models.Event] | None = None,
    ) -> None:
        self._items = items
        self._build = build
        self._positions = range(len(items)) if positions is None else positions
        self._built = {} if built is None else built

    def __len__(self) -> int:
        return len(self._positions)

    @overload
    def __getitem__(self, index: int) -> models.Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[models.Event]: ...

    def __getitem__(self, index: int | slice) -> models.Event | Sequence[models.Event]:
        if isinstance(index, slice):
            return Run(self._items, self._build, self._positions[index], self._built)
        position = self._positions[index]  # negative indices, IndexError
        event = self._built.get(position)
        if event is None:
            event = self._built[position] = self._build(self._items[position])
        return event


def cut(
    items: Sequence[Any],
    keys: Keys,
    build: Build,
    *,
    by_object: bool,
    built: dict[int, models.Event] | None = None,
) -> list[Run]:
    """Cut a batch into runs of occurrences identical for correlation, to correlate at once.

    With ``by_object``, occurrences go by correlation group, in their order within each
    group, and inside a group consecutive identical occurrences form one run: only for a
    correlation whose state never crosses groups. Without it, runs are consecutive
    identical occurrences, in arrival order. ``built`` shares the built Events with the
    runs of another cut of the same batch.
    """
    built = {} if built is None else built
    if not by_object:
        return _in_order(items, keys, build, built)
    # per group: its runs' positions, and the key of its last occurrence (one lookup of a
    # group's key per occurrence: a tuple's hash is not cached)
    groups: dict[Hashable, tuple[list[list[int]], list[object]]] = {}
    for position, item in enumerate(items):
        group_key, key = keys(item)
        group = groups.get(group_key)
        if group is None:
            groups[group_key] = ([[position]], [key])
            continue
        runs, last = group
        if last[0] == key:
            runs[-1].append(position)
        else:
            runs.append([position])
            last[0] = key
    return [Run(items, build, run, built) for runs, _ in groups.values() for run in runs]


def _in_order(
    items: Sequence[Any], keys: Keys, build: Build, built: dict[int, models.Event]
) -> list[Run]:
    runs: list[Run] = []
    start = 0
    last: object = _NOTHING
    for position, item in enumerate(items):
        both = keys(item)
        if both != last and position > start:
            runs.append(Run(items, build, range(start, position), built))
            start = position
        last = both
    if start < len(items):
        runs.append(Run(items, build, range(start, len(items)), built))
    return runs


_NOTHING = object()
