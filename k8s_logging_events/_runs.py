"""Runs of repeats: a batch of queued occurrences cut into runs to correlate at once.

On the dispatcher, between the runtime's queue and the correlators, which count a run of
repeats (identical but for their time) from its last occurrence (and its first, when new):
in a burst most occurrences never become an Event. Runs write exactly what correlating one
by one in arrival order would: object by object where a sink's correlation state never
crosses objects (client-go's key and message functions); otherwise (functions of one's own,
which may read an occurrence's time and raise for one repeat, or the events.k8s.io/v1
series) one occurrence a run, in arrival order. One difference remains: with more keys than
``lru_cache_size``, the caches may evict another key first than client-go would.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, overload

from k8s_logging_events import models

Keys = Callable[[Any], tuple[Hashable, object]]
"""An item's correlation group (object, source, type: groups share no correlation state
under client-go's key functions) and what a repeat has in common with it (all but time)."""

Build = Callable[[Any], models.Event]
Built = dict[int, models.Event]


class Run(Sequence[models.Event]):
    """Queued items identical for correlation, each built into an Event when first read
    (kept by position, shared by every run and slice cut from the batch); a failure to build
    raises where the event is read: it costs the run."""

    __slots__ = ("_build", "_built", "_items", "_positions")

    def __init__(
        self, items: Sequence[Any], build: Build, positions: Sequence[int], built: Built
    ) -> None:
        self._items = items
        self._build = build
        self._positions = positions
        self._built = built

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
    items: Sequence[Any], keys: Keys, build: Build, *, by_object: bool, built: Built | None = None
) -> list[Run]:
    """Cut a batch into runs: with ``by_object`` (a correlation whose state never crosses
    groups), by correlation group, each in its order; without, one occurrence a run, in
    arrival order. ``built`` shares the built Events with another cut of the same batch."""
    built = {} if built is None else built
    if not by_object:
        return one_by_one(items, build, built)
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


def one_by_one(items: Sequence[Any], build: Build, built: Built) -> list[Run]:
    """Each occurrence a run of its own, in arrival order."""
    return [Run(items, build, [position], built) for position in range(len(items))]
