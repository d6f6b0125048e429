"""Write amplification under spam: identical warnings about one object, in one burst.

Reuses ``bench/spam_burst.py``: ``ours`` runs the recording pipeline (recorder, broadcaster,
correlator, writer, Kubernetes sink with its default rate limit) against a LocalApiServer and
counts the API writes the server saw; ``client_go`` runs client-go's algorithm on the same
input (our correlator alone: one write per occurrence its spam filter lets through, nothing
for the ones it holds back). Ratios: API writes per occurrence, and occurrences lost
(``occurrences - final count on the server``).

    python bench/write_amplification.py [--occurrences 10000 1000]
"""

from __future__ import annotations

import argparse

import spam_burst
from _common import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--occurrences", type=int, nargs="+", default=[10_000, 1_000])
    args = parser.parse_args()
    table = Table(
        [
            ("input / algorithm", 41),
            ("occurrences", 12),
            ("API writes", 11),
            ("writes/occ.", 12),
            ("server count", 13),
            ("events", 7),
            ("lost", 7),
            ("writes vs c-go", 15),
        ]
    )
    table.header()
    for count in args.occurrences:
        ours = spam_burst.ours(count)
        go = spam_burst.client_go(count, 0.0)
        ours_writes = int(ours["writes"])  # type: ignore[call-overload]
        go_writes = int(go["writes"])  # type: ignore[call-overload]
        ours_count = int(ours["server_count"])  # type: ignore[call-overload]
        go_count = int(go["server_count"])  # type: ignore[call-overload]
        table.row(
            f"{count:,} in a burst: k8s-logging-events",
            count,
            ours_writes,
            ours_writes / count,
            ours_count,
            ours["events"],
            count - ours_count,
            ours_writes / go_writes,
        )
        table.row(
            f"{count:,} in a burst: client-go algorithm",
            count,
            go_writes,
            go_writes / count,
            go_count,
            1,
            count - go_count,
            1.0,
        )
        print(
            f"  ours: flushed={ours['flushed']} in {float(ours['seconds']):.2f} s; "  # type: ignore[arg-type]
            f"stats={ours['stats']}"
        )
    print(
        "\nclient-go writes the 25 occurrences its spam filter lets through (count 1..25) and"
        "\nloses the rest; we write a create and a few patches and keep the exact count."
    )


if __name__ == "__main__":
    main()
