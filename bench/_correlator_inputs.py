"""The inputs of the correlator benchmark, as plain tuples (no package imports here).

Shared by ``correlator_rate.py`` (this project's correlator, in the project's virtualenv)
and ``dragonk8s_correlate.py`` (dragonk8s's port of client-go, in a virtualenv of its own).
Each input is a list of ``(object index, reason, message)``; the source, the object's kind,
namespace and API version are fixed. Defaults are client-go's: a spam burst of 25 per
object, aggregation from the 10th distinct message per object and reason.
"""

from __future__ import annotations

OBJECTS = 1000
PER_OBJECT = 20  # below the spam burst of 25: repeats and aggregates are not filtered
AGGREGATE_FROM = 10  # client-go combines an object's 10th distinct message (and later ones)

Call = tuple[int, str, str]


def inputs(calls: int) -> dict[str, list[Call]]:
    """``calls`` occurrences for each input, in the order they are correlated."""
    # fewer objects for fewer calls (--quick), so that each still reaches its 10th message
    objects = max(1, min(OBJECTS, calls // AGGREGATE_FROM))
    rounds = min(PER_OBJECT, max(1, calls // objects))
    return {
        # 1,000 objects, each the same warning again and again (round-robin): repeats
        "repeated": [
            (obj, "BackOff", "Back-off pulling image busybox")
            for _ in range(rounds)
            for obj in range(objects)
        ],
        # 1,000 objects, each a new message every time: from the 10th on, combined
        "aggregated": [
            (obj, "BackOff", f"Back-off pulling image busybox:{step}")
            for step in range(rounds)
            for obj in range(objects)
        ],
        # one object, the same warning: 25 pass, the rest are held back by the spam filter
        "spam-filtered": [(0, "BackOff", "Back-off pulling image busybox")] * calls,
        # every occurrence about a new object: no cache hit, nothing combined or filtered
        "distinct": [(obj, "BackOff", "Back-off pulling image busybox") for obj in range(calls)],
    }
