"""The kubectl-describe renderer: ages, repeats, columns, and both API versions."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from k8s_logging_events import describe, models, sink
from k8s_logging_events.testing import LocalApiServer

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
POD = models.ObjectReference(kind="Pod", namespace="prod", name="web", uid="u1", api_version="v1")


def _event(
    reason: str = "Pulled",
    *,
    type: str = models.NORMAL,
    message: str = "Successfully pulled",
    first: timedelta = timedelta(seconds=5),
    last: timedelta | None = None,
    count: int = 1,
    component: str = "kubelet",
    **fields: Any,
) -> models.Event:
    """An event whose first and last occurrences were ``first`` and ``last`` before NOW."""
    return models.Event(
        name=f"web.{reason.lower()}",
        namespace="prod",
        involved_object=POD,
        reason=reason,
        message=message,
        type=type,
        count=count,
        source=models.EventSource(component=component),
        first_timestamp=NOW - first,
        last_timestamp=NOW - (last if last is not None else first),
        **fields,
    )


class TestHumanDuration:
    """``human_duration`` is apimachinery's ``HumanDuration``, case for case."""

    @pytest.mark.parametrize(
        ("delta", "expected"),
        [
            (timedelta(seconds=1), "1s"),
            (timedelta(seconds=70), "70s"),
            (timedelta(seconds=190), "3m10s"),
            (timedelta(minutes=70), "70m"),
            (timedelta(hours=47), "47h"),
            (timedelta(hours=49), "2d1h"),
            (timedelta(hours=8 * 24 + 2), "8d"),
            (timedelta(hours=367 * 24), "367d"),
            (timedelta(hours=365 * 2 * 24 + 25), "2y1d"),
            (timedelta(hours=365 * 8 * 24 + 2), "8y"),
        ],
    )
    def test_matches_the_go_examples(self, delta: timedelta, expected: str) -> None:
        """The examples of apimachinery's TestHumanDuration give the same text."""
        assert expected == describe.human_duration(delta)

    @pytest.mark.parametrize(
        ("delta", "expected"),
        [
            (timedelta(seconds=-2), "<invalid>"),
            (timedelta(seconds=-2, microseconds=1), "0s"),
            (timedelta(0), "0s"),
            (timedelta(seconds=1, milliseconds=-1), "0s"),
            (timedelta(minutes=2, milliseconds=-1), "119s"),
            (timedelta(minutes=2), "2m"),
            (timedelta(minutes=2, seconds=1), "2m1s"),
            (timedelta(minutes=10, milliseconds=-1), "9m59s"),
            (timedelta(minutes=10), "10m"),
            (timedelta(minutes=10, seconds=1), "10m"),
            (timedelta(hours=3, milliseconds=-1), "179m"),
            (timedelta(hours=3), "3h"),
            (timedelta(hours=3, minutes=1), "3h1m"),
            (timedelta(hours=8, milliseconds=-1), "7h59m"),
            (timedelta(hours=8), "8h"),
            (timedelta(hours=8, minutes=59), "8h"),
            (timedelta(days=2, milliseconds=-1), "47h"),
            (timedelta(days=2), "2d"),
            (timedelta(days=2, hours=1), "2d1h"),
            (timedelta(days=8, milliseconds=-1), "7d23h"),
            (timedelta(days=8), "8d"),
            (timedelta(days=8, hours=23), "8d"),
            (timedelta(days=730, milliseconds=-1), "729d"),
            (timedelta(days=730), "2y"),
            (timedelta(days=730, hours=23, minutes=59), "2y"),
            (timedelta(days=731, milliseconds=-1), "2y"),
            (timedelta(days=731), "2y1d"),
            (timedelta(days=3 * 365), "3y"),
            (timedelta(days=8 * 365, milliseconds=-1), "7y364d"),
            (timedelta(days=8 * 365), "8y"),
            (timedelta(days=8 * 365 + 364), "8y"),
            (timedelta(days=9 * 365), "9y"),
        ],
    )
    def test_matches_the_go_boundaries(self, delta: timedelta, expected: str) -> None:
        """Every boundary of apimachinery's TestHumanDurationBoundaries falls the same way."""
        assert expected == describe.human_duration(delta)


class TestAgeColumn:
    """The Age column: one age, or ``last (xN over first)``."""

    def test_a_single_occurrence_shows_its_age(self) -> None:
        """An event counted once shows how long ago it happened."""
        (row,) = describe.event_rows([_event(first=timedelta(seconds=5))], now=NOW)
        assert row[2] == "5s"

    def test_a_repeated_event_shows_the_count_and_the_span(self) -> None:
        """kubectl's wording: ``%s (x%d over %s)``, last occurrence first."""
        event = _event(count=12, first=timedelta(minutes=3), last=timedelta(seconds=10))
        (row,) = describe.event_rows([event], now=NOW)
        assert row[2] == "10s (x12 over 3m)"

    def test_a_series_counts_from_its_last_observed_time(self) -> None:
        """With a series, its count and last observed time win over the classic fields."""
        series = models.EventSeries(count=4, last_observed_time=NOW - timedelta(seconds=30))
        event = _event(
            first=timedelta(minutes=5), series=series, event_time=NOW - timedelta(hours=1)
        )
        (row,) = describe.event_rows([event], now=NOW)
        assert row[2] == "30s (x4 over 60m)"

    def test_a_naive_now_is_local_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``now=datetime.now()``, naive, raised TypeError (naive and aware datetimes do not
        subtract); it is read as local time, as ``datetime.now()`` gives it."""
        monkeypatch.setenv("TZ", "EST+5")  # five hours behind UTC, all year
        time.tzset()
        try:
            local_now = datetime(2024, 1, 1, 7, 0, 0)  # noqa: DTZ001 - the case under test
            (row,) = describe.event_rows([_event(first=timedelta(seconds=5))], now=local_now)
        finally:
            monkeypatch.undo()
            time.tzset()
        assert row[2] == "5s"

    def test_missing_timestamps_read_unknown(self) -> None:
        """An event without any timestamp is ``<unknown>``, as in kubectl."""
        event = models.Event(name="e", namespace="prod", involved_object=POD, count=1)
        (row,) = describe.event_rows([event], now=NOW)
        assert row[2] == "<unknown>"


class TestTable:
    """The whole ``Events:`` block."""

    def test_columns_are_aligned_like_kubectl(self) -> None:
        """Two spaces of indent, two between columns, the header's dashes, sorted by last."""
        pulled = _event(first=timedelta(seconds=5))
        backoff = _event(
            "BackOff",
            type=models.WARNING,
            message='Back-off pulling image "nginx"',
            count=12,
            first=timedelta(minutes=3),
            last=timedelta(seconds=10),
        )
        expected = (
            "Events:\n"
            "  Type     Reason   Age                From     Message\n"
            "  ----     ------   ----               ----     -------\n"
            '  Warning  BackOff  10s (x12 over 3m)  kubelet  Back-off pulling image "nginx"\n'
            "  Normal   Pulled   5s                 kubelet  Successfully pulled\n"
        )
        assert expected == describe.format_events([pulled, backoff], now=NOW)

    def test_terminal_escapes_are_written_as_kubectl_writes_them(self) -> None:
        """Anyone who may create events in the namespace writes the cells: the demo printed
        an escape sequence (a window title, a cleared screen) or a carriage return (a line
        written over) as it came, into the reader's terminal. As kubectl's describe, ESC is
        written ``^[`` and a carriage return ``\\r``."""
        event = _event("Pulled\x1b[2J", message="ok\rhidden \x1b]0;title\x07", component="k\x1b")
        text = describe.format_events([event], now=NOW)
        assert "\x1b" not in text
        assert "\r" not in text
        assert text.endswith("  Normal  Pulled^[[2J  5s    k^[   ok\\rhidden ^[]0;title\x07\n")

    def test_no_events_read_none(self) -> None:
        """An empty list renders kubectl's one line."""
        assert describe.format_events([], now=NOW) == "Events:  <none>\n"

    def test_from_falls_back_to_the_reporting_controller(self) -> None:
        """Without a source component, the reporting controller fills the From column."""
        event = _event(component="", reporting_controller="example.com/ctl")
        (row,) = describe.event_rows([event], now=NOW)
        assert row[3] == "example.com/ctl"

    def test_from_can_show_the_host_as_older_kubectl_did(self) -> None:
        """``show_host`` writes ``component, host``."""
        event = dataclasses.replace(_event(), source=models.EventSource("kubelet", "node-1"))
        (row,) = describe.event_rows([event], now=NOW, show_host=True)
        assert row[3] == "kubelet, node-1"

    def test_the_field_path_prefixes_the_trimmed_message(self) -> None:
        """kubectl writes ``fieldPath: message`` and trims the message's spaces."""
        ref = dataclasses.replace(POD, field_path="spec.containers{app}")
        event = dataclasses.replace(_event(message="  Started  \n"), involved_object=ref)
        (row,) = describe.event_rows([event], now=NOW)
        assert row[4] == "spec.containers{app}: Started"

    def test_events_keep_their_order_when_last_times_are_equal(self) -> None:
        """The sort by last timestamp is stable."""
        events = [_event(reason) for reason in ("A", "B", "C")]
        assert [row[1] for row in describe.event_rows(events, now=NOW)] == ["A", "B", "C"]


class TestApiDicts:
    """Input as the API returns it."""

    def test_core_v1_dicts_render_like_models(self) -> None:
        """A core/v1 body reads back into the same row as its model."""
        event = _event(count=3, first=timedelta(minutes=2), last=timedelta(seconds=1))
        assert describe.event_rows([event], now=NOW) == describe.event_rows(
            [event.to_api()], now=NOW
        )

    def test_an_event_list_is_accepted(self) -> None:
        """An ``EventList`` dict renders its items."""
        body = {"kind": "EventList", "items": [_event().to_api()]}
        assert len(describe.event_rows(body, now=NOW)) == 1

    def test_events_k8s_io_v1_fields_are_mapped(self) -> None:
        """``regarding``, ``note``, ``deprecated*`` and ``reportingController`` are read."""
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "prod"},
            "regarding": {"kind": "Pod", "namespace": "prod", "name": "web"},
            "note": "Back-off restarting",
            "reason": "BackOff",
            "type": "Warning",
            "reportingController": "kubelet",
            "deprecatedCount": 5,
            "deprecatedFirstTimestamp": "2024-01-01T11:50:00Z",
            "deprecatedLastTimestamp": "2024-01-01T11:59:00Z",
        }
        event = describe.event_from_api(body)
        assert (event.involved_object.kind, event.involved_object.name) == ("Pod", "web")
        (row,) = describe.event_rows([body], now=NOW)
        assert row == ("Warning", "BackOff", "60s (x5 over 10m)", "kubelet", "Back-off restarting")

    def test_both_api_views_of_the_server_render_the_same_table(self) -> None:
        """The local server's core/v1 and events.k8s.io/v1 views of the same events agree."""
        with LocalApiServer(namespaces=["prod"]) as server:
            api = sink.KubernetesEventSink.from_url(server.url, qps=0)
            try:
                created = api.create(_event(first=timedelta(seconds=40)))
                repeated = dataclasses.replace(created, count=2, last_timestamp=NOW)
                api.patch(repeated, b'{"count": 2, "lastTimestamp": "2024-01-01T12:00:00Z"}')
                api.create(_event("BackOff", type=models.WARNING, first=timedelta(seconds=3)))
            finally:
                api.close()
            core = describe.format_events(server.events("prod"), now=NOW)
            v1 = describe.format_events(server.events_v1("prod"), now=NOW)
        assert core == v1
        assert "0s (x2 over 40s)" in core

    def test_the_kubernetes_clients_models_render_like_the_api_dicts(self) -> None:
        """What ``CoreV1Api.list_namespaced_event`` returns, the list or its items, renders
        as the API's dicts do: the list was iterated as pairs of its fields (``TypeError:
        expected an Event or an API dict, not tuple``), an item refused as ``CoreV1Event``."""
        with LocalApiServer(namespaces=["prod"]) as server, server.api_client() as api_client:
            api = sink.KubernetesEventSink.from_url(server.url, qps=0)
            try:
                api.create(_event(count=3, first=timedelta(seconds=40)))
                api.create(_event("BackOff", type=models.WARNING, first=timedelta(seconds=3)))
            finally:
                api.close()
            listed = client.CoreV1Api(api_client).list_namespaced_event("prod")
            expected = describe.format_events(server.events("prod"), now=NOW)
        assert describe.format_events(listed, now=NOW) == expected
        assert describe.format_events(listed.items, now=NOW) == expected
        assert "BackOff" in expected
