"""KubernetesEventSink and the writer against the local Events API server, over real HTTP."""

from __future__ import annotations

import inspect
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml
from kubernetes import client
from urllib3.exceptions import InsecureRequestWarning

from k8s_logging_events import _errors, _http, _kubeconfig, _official, models, recorder, sink
from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, FakeEventSink, LocalApiServer
from tests._children import run_python
from tests._sinks import WithoutRead
from tests._typecheck import mypy_report
from tests.reliability_scenarios import writers_never_start

T0 = datetime(2024, 1, 1, tzinfo=UTC)
OUTCOMES = ("dropped", "created", "patched", "coalesced", "failed")


def _ref(name: str = "web-0", namespace: str = "default") -> models.ObjectReference:
    return models.ObjectReference(
        kind="Pod", namespace=namespace, name=name, uid=f"uid-{name}", api_version="v1"
    )


def _event(name: str = "web-0.1", namespace: str = "default", **changes: Any) -> models.Event:
    values: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "involved_object": _ref(namespace=namespace),
        "reason": "BackOff",
        "message": "Back-off pulling image",
        "source": models.EventSource(component="test", host="node-1"),
        "first_timestamp": T0,
        "last_timestamp": T0,
        "count": 1,
        "type": models.WARNING,
    }
    values.update(changes)
    return models.Event(**values)


def _on_official_path(events_sink: sink.KubernetesEventSink) -> sink.KubernetesEventSink:
    """The sink made to send through the official client's path, as behind a proxy."""
    transport = _official.ClientTransport(events_sink.api_client, events_sink._timeout)
    events_sink._transport = transport
    return events_sink


def _on_channel(events_sink: sink.KubernetesEventSink) -> bool:
    """Whether the sink sends on its own keep-alive channel."""
    return isinstance(events_sink._transport, _http.Channel)


@pytest.fixture(name="server")
def _server() -> Iterator[LocalApiServer]:
    with LocalApiServer() as server:
        yield server


@pytest.fixture(name="events_sink")
def _events_sink(server: LocalApiServer) -> Iterator[sink.KubernetesEventSink]:
    s = sink.KubernetesEventSink(server.api_client(), qps=0)
    yield s
    s.close()
    s.api_client.close()


class TestKubernetesEventSink:
    def test_create_posts_the_event_and_returns_what_the_server_stored(
        self, server: LocalApiServer, events_sink: sink.KubernetesEventSink
    ) -> None:
        """The answer carries the server's resourceVersion; the server has our fields."""
        stored = events_sink.create(_event())
        assert stored.resource_version
        (body,) = server.events("default")
        assert body["count"] == 1
        assert body["involvedObject"]["name"] == "web-0"
        assert body["firstTimestamp"] == "2024-01-01T00:00:00Z"
        assert body["source"] == {"component": "test", "host": "node-1"}

    def test_patch_sends_a_strategic_merge_patch(
        self, server: LocalApiServer, events_sink: sink.KubernetesEventSink
    ) -> None:
        """A count patch goes as application/strategic-merge-patch+json and is applied."""
        events_sink.create(_event())
        data = b'{"count":2,"lastTimestamp":"2024-01-01T00:00:05Z","message":"again"}'
        stored = events_sink.patch(_event(), data)
        assert (stored.count, stored.message) == (2, "again")
        patch = [r for r in server.requests if r.method == "PATCH"][-1]
        assert patch.content_type == "application/strategic-merge-patch+json"
        assert patch.body == json.loads(data)

    def test_a_create_past_the_int32_count_is_stored_at_the_largest_and_taken(
        self, server: LocalApiServer, events_sink: sink.KubernetesEventSink
    ) -> None:
        """Seen before the fix: an event counted past 2**31 - 1 (weeks of a hot loop) that
        expired and was created again: the server's answer (count 2147483647, the largest
        the API holds) was taken for another request's ("count 2147483647, not
        2147483649"), and the write retried."""
        stored = events_sink.create(_event(count=2**31 + 1))
        assert stored.count == models.MAX_COUNT
        assert server.events("default")[0]["count"] == models.MAX_COUNT

    def test_update_replaces_the_event(
        self, server: LocalApiServer, events_sink: sink.KubernetesEventSink
    ) -> None:
        """PUT writes the whole event."""
        events_sink.create(_event())
        stored = events_sink.update(_event(message="replaced", count=3))
        assert (stored.count, stored.message) == (3, "replaced")

    @pytest.mark.parametrize(
        ("arrange", "status", "reason", "causes"),
        [
            ("exists", 409, "AlreadyExists", ()),
            ("terminating", 403, "Forbidden", ("NamespaceTerminating",)),
            ("invalid", 422, "Invalid", ("FieldValueInvalid",)),
        ],
    )
    def test_status_answers_become_api_status_errors_with_reason_and_causes(
        self,
        server: LocalApiServer,
        events_sink: sink.KubernetesEventSink,
        arrange: str,
        status: int,
        reason: str,
        causes: tuple[str, ...],
    ) -> None:
        """The Kubernetes reason and cause types are read from the Status body."""
        event = _event()
        if arrange == "exists":
            events_sink.create(event)
        elif arrange == "terminating":
            server.create_namespace("doomed")
            server.terminate_namespace("doomed")
            event = _event(namespace="doomed")
        else:
            event = _event(involved_object=_ref(namespace="elsewhere"))
        with pytest.raises(sink.ApiStatusError) as info:
            events_sink.create(event)
        assert (info.value.status, info.value.reason) == (status, reason)
        assert tuple(info.value.causes) == causes
        assert not info.value.is_retryable

    def test_patch_of_a_missing_event_is_not_found(
        self, events_sink: sink.KubernetesEventSink
    ) -> None:
        """404 NotFound from a patch is what makes the writer create instead."""
        with pytest.raises(sink.ApiStatusError) as info:
            events_sink.patch(_event(), b'{"count":2}')
        assert info.value.is_not_found

    def test_throttling_carries_retry_after(
        self, server: LocalApiServer, events_sink: sink.KubernetesEventSink
    ) -> None:
        """429 is retryable and says how long to wait."""
        server.inject("POST", status=429, retry_after=2)
        with pytest.raises(sink.ApiStatusError) as info:
            events_sink.create(_event())
        assert (info.value.status, info.value.retry_after, info.value.is_retryable) == (
            429,
            2.0,
            True,
        )

    def test_transport_errors_pass_through_as_retryable(
        self, server: LocalApiServer, events_sink: sink.KubernetesEventSink
    ) -> None:
        """A dropped connection is not a status error: the writer retries it."""
        server.inject("POST", action="drop")
        with pytest.raises(Exception) as info:  # noqa: PT011 - urllib3's own classes
            events_sink.create(_event())
        assert not isinstance(info.value, sink.ApiStatusError)
        assert sink.is_retryable(info.value)

    @pytest.mark.parametrize("namespace", ["", "a/b", "..", "50%"])
    def test_a_request_that_cannot_be_built_is_a_construction_error(
        self, server: LocalApiServer, events_sink: sink.KubernetesEventSink, namespace: str
    ) -> None:
        """Nothing is sent for a namespace that cannot be a path segment."""
        with pytest.raises(sink.RequestConstructionError):
            events_sink.create(_event(namespace=namespace))
        assert server.requests == []

    def test_the_client_side_rate_limit_waits_for_tokens(self, server: LocalApiServer) -> None:
        """By default client-go's REST limit, qps 5 and burst 10: the first 10 writes go at
        once, then one every 0.2 s."""
        clock = FakeClock(T0)
        s = sink.KubernetesEventSink(server.api_client(), clock=clock, sleep=clock.sleep)
        try:
            for i in range(12):
                s.create(_event(name=f"web-0.{i}"))
        finally:
            s.close()
            s.api_client.close()
        assert [round(x, 6) for x in clock.sleeps] == [0.2, 0.2]
        assert len(server.events()) == 12

    def test_a_sleep_given_alone_waits_for_each_token_in_one_call(
        self, server: LocalApiServer
    ) -> None:
        """``sleep=`` without a clock it moves (here a stub): an uncut sleep has waited its
        seconds. The rate limit asked again until real time had passed, a busy loop."""
        asked: list[float] = []

        def record(seconds: float, cancel: threading.Event) -> bool:
            asked.append(seconds)
            return False

        with (
            server.api_client() as api_client,
            sink.KubernetesEventSink(api_client, qps=1, burst=1, sleep=record) as s,
        ):
            for i in range(3):
                s.create(_event(name=f"web-0.{i}"))
        # one call a token, of about a second: less only by the real time each create took
        assert len(asked) == 2
        assert all(0.5 < x <= 1.0 for x in asked), asked
        assert len(server.events()) == 3

    def test_a_with_block_closes_the_sink_and_not_a_given_client(
        self, server: LocalApiServer
    ) -> None:
        """``with KubernetesEventSink(api_client) as sink:`` closes the sink's own connections
        at the block's end (a later write is refused); the client given stays usable."""
        with server.api_client() as api_client:
            with sink.KubernetesEventSink(api_client) as s:
                s.create(_event(name="web-0.a"))
            with pytest.raises(ConnectionAbortedError) as refused:
                s.create(_event(name="web-0.b"))
            # never sent: a writer's next attempt takes it for no request in doubt
            assert not _errors.may_have_landed(refused.value)
            assert client.CoreV1Api(api_client).list_namespaced_event("default").items
        assert [e["metadata"]["name"] for e in server.events()] == ["web-0.a"]

    @pytest.mark.parametrize("sleep", [time.sleep, lambda seconds: None], ids=["time", "one"])
    def test_a_sleep_of_another_shape_is_refused(self, sleep: Any) -> None:
        """``KubernetesEventSink(sleep=time.sleep)`` was taken: every create or patch the rate
        limit made wait then raised TypeError (retried twelve times by a broadcaster, then
        lost). It is refused when the sink is built, as the handler and the broadcaster refuse
        it: the rate limit calls ``sleep(seconds, cancel)``."""
        with pytest.raises(ValueError, match="sleep"):
            sink.KubernetesEventSink(client.ApiClient(), sleep=sleep)

    @pytest.mark.parametrize("chosen", [{"kubeconfig": "kc"}, {"context": "prod"}])
    def test_a_kubeconfig_or_context_beside_a_client_or_url_is_refused(
        self, server: LocalApiServer, chosen: dict[str, Any]
    ) -> None:
        """``KubernetesEventSink(api_client, context="prod")`` (or ``from_url(url,
        kubeconfig=...)``) was taken and wrote to the client's cluster, the option silently
        ignored. They choose the cluster of a sink that builds its own client alone, so they
        are refused beside one, as the handler refuses them beside a sink URL or object."""
        with server.api_client() as api_client, pytest.raises(ValueError, match="without an api"):
            sink.KubernetesEventSink(api_client, **chosen)
        with pytest.raises(ValueError, match="without an api"):
            sink.KubernetesEventSink.from_url(server.url, **chosen)

    def test_without_a_client_it_reads_the_kubeconfig_into_a_private_configuration(
        self, server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """KUBECONFIG is honoured, and the process-global default configuration is untouched."""
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"token": "s3cr3t-token-value"})
        default_before = client.Configuration.get_default_copy().host
        s = sink.KubernetesEventSink(qps=0)
        try:
            s.create(_event())
            assert s.host == server.url
            assert s.api_client.configuration.retries is False
        finally:
            s.close()
        assert client.Configuration.get_default_copy().host == default_before
        headers = {k.lower(): v for k, v in server.requests[-1].headers.items()}
        assert headers["authorization"] == "Bearer s3cr3t-token-value"

    def test_the_kubeconfig_may_be_named_by_a_path_object(
        self, server: LocalApiServer, tmp_path: Path
    ) -> None:
        """``KubernetesEventSink(kubeconfig=tmp_path / "kubeconfig")`` raised AttributeError
        (``'PosixPath' object has no attribute 'split'``): a ``pathlib.Path`` names the file
        as its text does."""
        path = tmp_path / "kubeconfig"
        server.kubeconfig(path)
        with sink.KubernetesEventSink(qps=0, kubeconfig=path) as s:
            s.create(_event())
            assert s.host == server.url
        assert [e["metadata"]["name"] for e in server.events()] == ["web-0.1"]

    def test_tokens_never_appear_in_what_the_library_logs(
        self,
        server: LocalApiServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Even at DEBUG, failed writes are reported without credentials; TLS checks stay on."""
        caplog.set_level(logging.DEBUG)
        token = "tok-" + "x" * 40
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"token": token})
        s = sink.KubernetesEventSink(qps=0)
        assert s.api_client.configuration.verify_ssl is True
        server.inject("POST", times=None, status=500)
        assert _one_event_fails(s)
        assert caplog.records
        assert not [r for r in caplog.records if token in r.getMessage()]

    def test_a_password_in_the_kubeconfigs_server_url_never_appears_in_a_report(
        self,
        server: LocalApiServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A kubeconfig whose ``server`` holds a user name and password (``https://admin:pw@
        host``): a report of an unreachable server named it whole, the password with it. It
        names the server without them."""
        caplog.set_level(logging.DEBUG)
        host = server.url.replace("http://", "http://admin:S3cretPw@")
        _use_kubeconfig(tmp_path, monkeypatch, host, {})
        server.refuse_connections()
        try:
            assert _one_event_fails(sink.KubernetesEventSink(qps=0))
        finally:
            server.accept_connections()
        unreachable = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert unreachable, [r.getMessage() for r in caplog.records]
        assert all(server.url in text for text in unreachable), unreachable
        assert not [r for r in caplog.records if "S3cretPw" in r.getMessage()]

    @pytest.mark.parametrize("mark", ["/", "#", "?"])
    def test_a_password_with_a_slash_hash_or_question_mark_never_appears_either(
        self,
        server: LocalApiServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        mark: str,
    ) -> None:
        """The same with a password written unencoded that holds ``/``, ``#`` or ``?``: the
        URL's host part ends early, so the user name and password read as a host and port,
        and the client's every error quoted them. Such a server URL is refused when the sink
        is built (no request could reach it), and neither the refusal, nor a handler's report
        of it, nor a URL as shown, holds the user name or any part of the password."""
        caplog.set_level(logging.DEBUG)
        host = server.url.replace("http://", f"http://admin:S3cr{mark}etPw@")
        assert "S3cr" not in _kubeconfig.shown_url(host)
        assert "admin" not in _kubeconfig.shown_url(host)
        _use_kubeconfig(tmp_path, monkeypatch, host, {})
        with pytest.raises(ValueError, match="percent-encode") as error:
            sink.KubernetesEventSink(qps=0)
        assert "S3cr" not in str(error.value)
        assert "admin" not in str(error.value)
        handler = KubernetesEventHandler()
        try:
            app = logging.getLogger("test.sink.password")
            app.addHandler(handler)
            try:
                app.warning("one", extra={"involved": _ref()})
                handler.flush()
            finally:
                app.removeHandler(handler)
        finally:
            handler.close()
        texts = [r.getMessage() for r in caplog.records]
        assert [t for t in texts if "percent-encode" in t], texts
        assert not [t for t in texts if "S3cr" in t or "etPw" in t or "admin:" in t], texts


@pytest.mark.parametrize("where", ["proxy-url", "HTTP_PROXY"])
@pytest.mark.parametrize(
    "proxy", ["http://admin:S3cr/et#Pw@127.0.0.1:9", "http://admin:S3cretPw@127.0.0.1:99999"]
)
def test_a_proxy_password_with_a_slash_or_hash_never_appears_in_a_report(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
    proxy: str,
) -> None:
    """A proxy URL (a kubeconfig's ``proxy-url``, or the environment's) whose password
    holds an unencoded ``/`` or ``#``: urllib3 cannot read its host as the client is built,
    and the warning quoted its error, ``Failed to parse: 'admin:S3cr' is not a valid host
    or port``, the user name and part of the password. As a server URL's, it is refused
    without them. Seen before the fix: one with a port out of range (99999), whose error
    urllib3 words ``Failed to parse: http://admin:S3cretPw@...``, showed the whole password
    in each report; it is refused alike."""
    caplog.set_level(logging.DEBUG)
    # no loopback server: the environment's proxy is never for one
    _use_kubeconfig(tmp_path, monkeypatch, "http://10.0.0.1:8001", {"token": "t"})
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    if where == "proxy-url":
        _set_proxy_url(tmp_path / "config", proxy)
    else:
        monkeypatch.setenv(where, proxy)
    with pytest.raises(ValueError, match=r"the proxy URL \(http://127.0.0.1:\d+\) cannot") as error:
        sink.KubernetesEventSink(qps=0)
    assert "S3cr" not in str(error.value)
    assert "admin" not in str(error.value)
    texts = _reports_of_one_record(caplog)
    assert [t for t in texts if "proxy URL" in t], texts
    assert not [t for t in texts if "S3cr" in t or "admin" in t], texts


def _set_proxy_url(kubeconfig: Path, url: str) -> None:
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["proxy-url"] = url
    kubeconfig.write_text(yaml.safe_dump(config))


def _reports_of_one_record(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What a handler built from the environment reports as it handles one record and closes."""
    handler = KubernetesEventHandler()
    try:
        handler.handle(logging.makeLogRecord({"msg": "one", "involved": _ref()}))
        handler.flush()
    finally:
        handler.close()
    return [r.getMessage() for r in caplog.records]


def test_a_socks_proxy_url_without_pysocks_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A kubeconfig whose ``proxy-url`` is ``socks5://`` (an ``ssh -D`` tunnel), which kubectl
    takes: the warning said only "Unable to build a Kubernetes client from the kubeconfig
    ...: No module named 'socks'", naming no proxy and nothing to install. It names the
    proxy and PySocks, the client's optional dependency for SOCKS."""
    caplog.set_level(logging.WARNING, logger="k8s_logging_events")
    monkeypatch.setitem(sys.modules, "socks", None)  # PySocks not installed
    _use_kubeconfig(tmp_path, monkeypatch, "https://10.0.0.1:6443", {"token": "t"})
    _set_proxy_url(tmp_path / "config", "socks5://127.0.0.1:1080")
    texts = [t for t in _reports_of_one_record(caplog) if "Unable to build" in t]
    assert texts, [r.getMessage() for r in caplog.records]
    assert "the proxy URL (socks5://127.0.0.1:1080) is a SOCKS proxy" in texts[0], texts
    assert "pip install pysocks" in texts[0], texts


@pytest.mark.parametrize("empty", ["", "# written by an installer\n"])
def test_an_empty_file_in_kubeconfig_s_list_is_read_as_no_configuration(
    server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty: str
) -> None:
    """``KUBECONFIG=~/.kube/config:cluster.yaml`` where the first file is empty (touched by
    an installer, or of comments alone): kubectl reads it as no configuration and uses the
    others, but the client refused the whole list ("Invalid kube-config. ... file is
    empty"), so the sink could not be built and every write failed. It writes to the
    server the other file names."""
    (tmp_path / "config").write_text(empty)
    server.kubeconfig(tmp_path / "cluster.yaml")
    monkeypatch.setenv(
        "KUBECONFIG", f"{tmp_path / 'config'}{os.pathsep}{tmp_path / 'cluster.yaml'}"
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with sink.KubernetesEventSink(qps=0) as events_sink:
        events_sink.create(_event())
    assert [event["metadata"]["name"] for event in server.events()] == ["web-0.1"]


def test_a_kubeconfig_of_one_file_is_parsed_no_more_for_empty_files(
    server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a list of several files can leave an empty one out: a single kubeconfig was
    parsed once more to look (half a second for a file of a megabyte, before the first write)
    and kept whatever it held."""
    server.kubeconfig(tmp_path / "config")
    parsed: list[object] = []
    real = yaml.safe_load

    def safe_load(stream: Any) -> Any:
        parsed.append(stream)
        return real(stream)

    monkeypatch.setattr(yaml, "safe_load", safe_load)
    kept = _kubeconfig._without_empty_files(str(tmp_path / "config"))
    assert kept == str(tmp_path / "config")
    assert parsed == []


@pytest.mark.parametrize("port", ["6443x", "99999"])
def test_a_kubeconfig_server_whose_port_is_no_port_is_refused_once_and_never_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, port: str
) -> None:
    """A kubeconfig's ``server: https://10.0.0.1:6443x`` (a typo; or 99999, or an in-cluster
    ``KUBERNETES_SERVICE_PORT`` that is a name): kubectl refuses the URL at once, but the
    sink was built and every write failed on urllib3's ``Failed to parse``, each one retried
    ``max_tries`` times and reported as delayed. The sink is refused when it is built, the
    handler says why once, and its writes fail at their first try."""
    caplog.set_level(logging.WARNING, logger="k8s_logging_events")
    _use_kubeconfig(tmp_path, monkeypatch, f"https://10.0.0.1:{port}", {"token": "t"})
    with pytest.raises(ValueError, match=rf"the API server URL \(https://10.0.0.1:{port}\)"):
        sink.KubernetesEventSink(qps=0)
    clock = FakeClock(T0)
    handler = KubernetesEventHandler(clock=clock, sleep=clock.sleep, sleep_duration=0.0)
    try:
        for name in ("web-0", "web-1"):
            handler.handle(logging.makeLogRecord({"msg": "one", "involved": _ref(name)}))
        handler.flush()
        assert handler.stats()["failed"] == 2
    finally:
        handler.close()
    texts = [r.getMessage() for r in caplog.records]
    assert len([t for t in texts if "Unable to build a Kubernetes client" in t]) == 1, texts
    assert not [t for t in texts if "will retry" in t], texts


@pytest.mark.parametrize(
    "url", ["admin:S3cretPw@127.0.0.1:8001", "127.0.0.1:8001", "ftp://127.0.0.1:8001"]
)
def test_from_url_refuses_what_is_no_http_url_without_showing_a_password(url: str) -> None:
    """``from_url("admin:S3cretPw@127.0.0.1:8001")``, the scheme left out: the check for a
    user name looked only after ``//``, so the sink was built, its every write failed ("No
    host specified") and its ``host`` and ``credentials``, which the reports of a 401 or an
    unreachable server quote, held the password. It is refused as the handler's sink option
    is (``ValueError``), and the refusal never shows the password."""
    with pytest.raises(ValueError, match=r"credentials|host") as error:
        sink.KubernetesEventSink.from_url(url)
    assert "S3cret" not in str(error.value)
    assert "S3cret" not in _kubeconfig.shown_url(url)


def test_from_url_refuses_an_environment_proxy_it_cannot_read_without_showing_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``HTTP_PROXY`` with an unencoded ``/`` in its password, and a URL sink (the client
    reads the environment's proxy): urllib3's error, ``Failed to parse: 'admin:S3cr' is not
    a valid host or port``, showed the user name and part of the password, as the
    kubeconfig's path no longer does. It is the same ``ValueError`` without them."""
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://admin:S3cr/et@127.0.0.1:9")
    with pytest.raises(ValueError, match=r"the proxy URL .*percent-encode") as error:
        sink.KubernetesEventSink.from_url("http://10.0.0.1:8001")
    assert "S3cr" not in str(error.value)
    assert "admin" not in str(error.value)


def test_a_context_naming_a_user_the_kubeconfig_lacks_says_so_in_the_401s_report(
    server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A context whose user is not in the kubeconfig (a typo, a file of KUBECONFIG's list
    left out) gives no credentials, in the official client as in client-go: the report of
    the 401 said "no credentials (..., user 'ci')" as if that user had none. It says the
    kubeconfig has no such user."""
    _use_kubeconfig(tmp_path, monkeypatch, server.url, {"token": "t"})
    config = yaml.safe_load((tmp_path / "config").read_text())
    config["contexts"][0]["context"]["user"] = "ci"
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    s = sink.KubernetesEventSink(qps=0)
    s.close()
    assert s.credentials == (
        f"no credentials (the kubeconfig {tmp_path / 'config'} (context 'c', user 'ci', "
        "which it does not have))"
    )


def test_the_first_file_of_kubeconfig_that_names_a_current_context_wins(
    server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KUBECONFIG lists several files: kubectl and client-go take the current context of the
    first file that names one (as every other key), the official client the last's: the
    sink wrote to the cluster, as the user, of a context kubectl did not use."""
    for name in ("first", "second"):
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": server.url}}],
            "users": [{"name": name, "user": {"token": f"token-of-{name}"}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
        (tmp_path / name).write_text(yaml.safe_dump(config))
    files = [str(tmp_path / "none"), str(tmp_path / "first"), str(tmp_path / "second")]
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(files))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    s = sink.KubernetesEventSink(qps=0)
    try:
        s.create(_event())
    finally:
        s.close()
    assert "(context 'first', user 'first')" in s.credentials
    assert _sent_tokens(server) == ["Bearer token-of-first"]


# -- credentials loaded again, as client-go loads them ---------------------------------------------


def _sent_tokens(server: LocalApiServer, method: str = "POST") -> list[str]:
    """The ``Authorization`` header of each ``method`` request ("" for none)."""
    sent = [r.headers for r in server.requests if r.method == method]
    return [next((v for k, v in h.items() if k.lower() == "authorization"), "") for h in sent]


_PLUGIN_FAILING_ONCE = """#!{python}
# an exec credential plugin whose first run fails (its identity provider unreachable)
import json, pathlib, sys

runs = pathlib.Path(__file__).parent / "runs"
run = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(run))
if run == 1:
    sys.exit("cannot reach the identity provider")
kind = {{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential"}}
print(json.dumps({{**kind, "status": {{"token": "from-plugin-run-" + str(run)}}}}))
"""


_PLUGIN_EXPIRED_FIRST = """#!{python}
# an exec credential plugin whose first token is already expired, and whose runs take a while
import json, pathlib, time

runs = pathlib.Path(__file__).parent / "runs"
run = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(run))
time.sleep(0.3 if run > 1 else 0)
expiry = "2000-01-01T00:00:00Z" if run == 1 else "2999-01-01T00:00:00Z"
status = {{"token": "from-plugin-run-" + str(run), "expirationTimestamp": expiry}}
kind = {{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential"}}
print(json.dumps({{**kind, "status": status}}))
"""


_PLUGIN_SIGNALLING = """#!{python}
# an exec credential plugin whose first token is already expired; its next run signals the
# process that started it (SIGUSR1) while it runs
import json, os, pathlib, signal, time

runs = pathlib.Path(__file__).parent / "runs"
run = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(run))
if run == 2:
    os.kill(os.getppid(), signal.SIGUSR1)
    time.sleep(0.5)
expiry = "2000-01-01T00:00:00Z" if run == 1 else "2999-01-01T00:00:00Z"
status = {{"token": "from-plugin-run-" + str(run), "expirationTimestamp": expiry}}
kind = {{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential"}}
print(json.dumps({{**kind, "status": status}}))
"""


class TestCredentialsLoadedAgain:
    """The official client loads a kubeconfig's credentials once (an exec plugin's token
    again past its expiry) and the in-cluster token once a minute; client-go loads them again
    where they may have changed. The sink's own client follows client-go."""

    def test_an_exec_plugin_that_failed_while_the_client_was_built_runs_again(
        self, server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An exec plugin that failed once while the client was built (its identity provider
        unreachable for a moment) left the client with no token and no way to get one: every
        write of the process's life went without credentials (401 on a real server). While it
        has given no token, the plugin runs again at the next request."""
        plugin = tmp_path / "plugin.py"
        plugin.write_text(_PLUGIN_FAILING_ONCE.format(python=sys.executable))
        plugin.chmod(0o755)
        exec_ = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"exec": exec_})  # type: ignore[dict-item]
        s = sink.KubernetesEventSink(qps=0)
        try:
            assert (tmp_path / "runs").read_text() == "1"  # it failed while the client was built
            s.create(_event(name="web-0.1"))
            s.create(_event(name="web-0.2"))
        finally:
            s.close()
        assert _sent_tokens(server) == ["Bearer from-plugin-run-2"] * 2

    def test_a_write_is_not_sent_without_the_token_an_exec_plugin_keeps_failing_to_give(
        self, server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While the plugin fails, a write fails before anything is sent, with an error the
        writer retries (as client-go's request fails), and the plugin runs at each try."""
        plugin = tmp_path / "plugin.py"
        plugin.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('no identity provider')\n")
        plugin.chmod(0o755)
        exec_ = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"exec": exec_})  # type: ignore[dict-item]
        s = sink.KubernetesEventSink(qps=0)
        try:
            for _ in range(2):
                with pytest.raises(_errors.NoCredentialsError) as info:
                    s.create(_event())
                assert str(info.value).startswith(
                    f"no credentials: the exec plugin of the kubeconfig {tmp_path / 'config'} "
                    "(context 'c', user 'u') gave no token"
                )
                assert sink.is_retryable(info.value)
        finally:
            s.close()
        assert "exec plugin" in s.credentials
        assert server.requests == []

    def test_a_plugin_that_is_not_installed_is_said_so_with_its_install_hint(
        self, server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An exec plugin whose command is on no directory of PATH: the report says so and
        gives the kubeconfig's ``installHint``, as kubectl does (the client's own error says
        only "No such file or directory")."""
        exec_ = {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "cloud-login",
            "installHint": "cloud-login is needed:\n  pip install cloud-login",
        }
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"exec": exec_})  # type: ignore[dict-item]
        monkeypatch.setenv("PATH", str(tmp_path))
        s = sink.KubernetesEventSink(qps=0)
        try:
            with pytest.raises(_errors.NoCredentialsError) as info:
                s.create(_event())
        finally:
            s.close()
        assert (
            "its command 'cloud-login' is on no directory of PATH (cloud-login is needed: pip "
            "install cloud-login); it runs again at the next try"
        ) in str(info.value)
        assert server.requests == []

    def test_an_auth_provider_the_client_lacks_is_no_plugin_to_wait_for(
        self, server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An auth provider the client no longer has (``azure``) never gives a token: the
        write goes as the client sends it (a 401 on a real server, reported at once), and is
        not retried as if a plugin might give one at the next try."""
        provider = {"name": "azure", "config": {"access-token": "t"}}
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"auth-provider": provider})  # type: ignore[dict-item]
        s = sink.KubernetesEventSink(qps=0)
        try:
            s.create(_event())
        finally:
            s.close()
        assert _sent_tokens(server) == [""]

    def test_a_kubeconfig_token_file_is_read_again_each_minute(
        self, server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A kubeconfig's ``tokenFile`` (a projected token that another process renews) was
        read once, when the client was built: once that token expired, every write was refused
        for the process's life. It is read again when the token sent is a minute old."""
        token = tmp_path / "token"
        token.write_text("first\n")
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"tokenFile": str(token)})
        clock = FakeClock(T0)
        s = sink.KubernetesEventSink(qps=0, clock=clock)
        try:
            s.create(_event(name="web-0.1"))
            token.write_text("second\n")
            clock.step(59)
            s.create(_event(name="web-0.2"))
            clock.step(1)
            s.create(_event(name="web-0.3"))
        finally:
            s.close()
        assert _sent_tokens(server) == ["Bearer first", "Bearer first", "Bearer second"]

    def test_after_a_401_the_in_cluster_token_is_read_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """In a pod, the client reads the service account token again once a minute: a token
        the server refused (401: rotated and expired, or revoked) was sent until then, and
        every event meanwhile lost. A 401 has the next request read the token file again."""
        with LocalApiServer(tls=True) as server:
            token = _in_a_pod(server, tmp_path, monkeypatch)
            s = sink.KubernetesEventSink(qps=0)
            try:
                assert s.credentials.endswith("(in-cluster)")
                token.write_text("second")  # the kubelet renewed it
                server.inject("POST", status=401)
                with pytest.raises(sink.ApiStatusError):
                    s.create(_event(name="web-0.1"))
                s.create(_event(name="web-0.2"))
            finally:
                s.close()
            assert _sent_tokens(server) == ["bearer first", "bearer second"]

    def test_a_401_storm_runs_the_exec_plugin_once_a_minute_at_most(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A server that refuses the plugin's token (a role mapping removed) refused every
        write, and each 401 ran the plugin again before the next request: a process spawned
        per event (``aws eks get-token`` takes a second of CPU), all the while every event was
        lost anyway. After a 401 the plugin runs again at once, then a minute later at most."""
        plugin = tmp_path / "plugin.py"
        plugin.write_text(_PLUGIN_FAILING_ONCE.format(python=sys.executable))
        plugin.chmod(0o755)
        (tmp_path / "runs").write_text("1")  # its runs give tokens from the first on
        exec_ = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
        with LocalApiServer(token="s3cret") as server:
            _use_kubeconfig(tmp_path, monkeypatch, server.url, {"exec": exec_})  # type: ignore[dict-item]
            clock = FakeClock(T0)
            s = sink.KubernetesEventSink(qps=0, clock=clock)
            try:
                for number in range(6):
                    with pytest.raises(sink.ApiStatusError):
                        s.create(_event(name=f"web-0.{number}"))
                    clock.step(20)
            finally:
                s.close()
        # built; after the first 401; after the 401 a minute later
        runs = [2] + [3] * 3 + [4] * 2
        assert _sent_tokens(server) == [f"Bearer from-plugin-run-{run}" for run in runs]

    def test_writers_that_find_a_plugins_token_expired_together_run_it_once(
        self, server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The plugin's token expires (here the first run's, already expired) while several
        writers send: each of them ran the plugin (``aws eks get-token`` a second of CPU
        each; an interactive plugin prompted once per writer). As in client-go, one runs it
        and the others send its token."""
        plugin = tmp_path / "plugin.py"
        plugin.write_text(_PLUGIN_EXPIRED_FIRST.format(python=sys.executable))
        plugin.chmod(0o755)
        exec_ = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"exec": exec_})  # type: ignore[dict-item]
        s = sink.KubernetesEventSink(qps=0)
        start = threading.Barrier(4)

        def write(number: int) -> None:
            start.wait(10)
            s.create(_event(name=f"web-0.{number}"))

        threads = [threading.Thread(target=write, args=(number,)) for number in range(4)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        finally:
            s.close()
        assert (tmp_path / "runs").read_text() == "2"
        assert _sent_tokens(server) == ["Bearer from-plugin-run-2"] * 4

    @pytest.mark.timeout(20)
    @pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
    def test_a_signal_handlers_write_during_a_plugins_run_on_its_thread_does_not_hang(
        self, server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write on the application's thread (a flush where no writer can start: at exit)
        runs the plugin for an expired token; a signal arrives meanwhile (SIGTERM, as a pod
        stops) and its handler flushes, writing on that same thread. The second write waited
        for the first's renewal, which waited for the handler to return: the process hung
        until it was killed. The handler's write loads the token itself, as before."""
        plugin = tmp_path / "plugin.py"
        plugin.write_text(_PLUGIN_SIGNALLING.format(python=sys.executable))
        plugin.chmod(0o755)
        exec_ = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"exec": exec_})  # type: ignore[dict-item]
        s = sink.KubernetesEventSink(qps=0)
        written: list[str] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if not written:
                written.append("by the handler")
                s.create(_event(name="web-0.2"))

        previous = signal.signal(signal.SIGUSR1, on_signal)
        try:
            s.create(_event(name="web-0.1"))
        finally:
            signal.signal(signal.SIGUSR1, previous)
            s.close()
        assert written == ["by the handler"]
        assert sorted(e["metadata"]["name"] for e in server.events()) == ["web-0.1", "web-0.2"]

    def test_a_copy_of_the_sinks_client_configuration_writes_with_its_credentials(
        self, server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``Configuration.set_default`` (and ``copy.deepcopy``) of the sink's client's
        configuration, to make the application's other clients alike, raised ``TypeError:
        cannot pickle '_thread.lock' object`` (its token's renewal holds a lock). The copy
        sends the same token, renewed as the sink's."""
        token = tmp_path / "token"
        token.write_text("first")
        _use_kubeconfig(tmp_path, monkeypatch, server.url, {"tokenFile": str(token)})
        s = sink.KubernetesEventSink(qps=0)
        try:
            client.Configuration.set_default(s.api_client.configuration)
            try:
                other = client.CoreV1Api(client.ApiClient())
                body: Any = _event().to_api()  # the client takes its JSON too
                other.create_namespaced_event("default", body)
            finally:
                client.Configuration.set_default(None)
        finally:
            s.close()
        assert _sent_tokens(server) == ["Bearer first"]

    @pytest.mark.parametrize(
        "closer",
        ["", "import atexit; atexit.register(handler.close)  # as loguru's logger.remove\n"],
        ids=["at-logging-shutdown", "by-an-atexit-function-run-before-the-librarys"],
    )
    def test_a_client_first_built_at_exit_leaves_no_key_behind(
        self, tmp_path: Path, closer: str
    ) -> None:
        """A short program (a Job, a cron task) logs a warning and ends: the sink's client
        is built by the exit flush, after the Kubernetes client's clean-up at exit ran, and
        the files it wrote for the kubeconfig's ``-data`` (the CA, the client certificate
        and its private key) were left in the temporary directory for good, a set a run.
        The sink deletes them as it closes at exit; the warning is still written. So when the
        close comes from an atexit function that runs before the library's (loguru closes
        its sinks in one registered at its import, after ours): the exit begins there."""
        with LocalApiServer(tls=True, client_certificates=True) as server:
            server.kubeconfig(tmp_path / "config", client_certificate=server.client_certificate())
            temporary = tmp_path / "tmp"
            temporary.mkdir()
            child = run_python(
                "import logging\n"
                "from k8s_logging_events import KubernetesEventHandler\n"
                "handler = KubernetesEventHandler(component='job', host='node-1')\n"
                f"{closer}"
                "log = logging.getLogger('job')\n"
                "log.addHandler(handler)\n"
                "log.warning('done', extra={'involved': {'kind': 'Pod', 'namespace': "
                "'default', 'name': 'job-0', 'uid': 'u'}, 'reason': 'Done'})\n",
                cwd=tmp_path,
                KUBECONFIG=str(tmp_path / "config"),
                TMPDIR=str(temporary),
            )
            assert child.returncode == 0, child.stderr
            assert [e["reason"] for e in server.events()] == ["Done"]
        assert list(temporary.iterdir()) == []

    def test_each_401_reads_a_rotated_token_file_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Reading a token file costs little: unlike a plugin's, it is read again after each
        401, however close together (a token rotated twice within a minute)."""
        with LocalApiServer(tls=True) as server:
            token = _in_a_pod(server, tmp_path, monkeypatch)
            clock = FakeClock(T0)
            s = sink.KubernetesEventSink(qps=0, clock=clock)
            try:
                for number, renewed in enumerate(["second", "third"]):
                    server.inject("POST", status=401)
                    with pytest.raises(sink.ApiStatusError):
                        s.create(_event(name=f"web-0.{number}"))
                    token.write_text(renewed)  # the kubelet renewed it
                    clock.step(10)
                s.create(_event(name="web-0.9"))
            finally:
                s.close()
            assert _sent_tokens(server) == ["bearer first", "bearer second", "bearer third"]


def _in_a_pod(server: LocalApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``server`` this process's in-cluster API server, with the service account's
    token (``first``) and CA in ``tmp_path``; return the token file, for the kubelet's
    renewals."""
    from kubernetes.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("first")
    ca.write_bytes(server.ca_pem or b"")
    monkeypatch.setattr(_kubeconfig, "SERVICE_ACCOUNT_TOKEN", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
    return token


def _use_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str, user: dict[str, str]
) -> None:
    """KUBECONFIG names a kubeconfig of one context: ``server`` and ``user``."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def _one_event_fails(s: sink.KubernetesEventSink) -> bool:
    """Record one event through ``s`` (two tries, no waits); True when it failed."""
    clock = FakeClock(T0)
    b = recorder.EventBroadcaster(clock=clock, sleep=clock.sleep, sleep_duration=0.0, max_tries=2)
    try:
        b.start_recording_to_sink(s)
        b.new_recorder("c").event(_ref(), models.WARNING, "R", "x")
        assert b.flush(10)
    finally:
        b.shutdown(5)
        s.close()
    return b.stats()["failed"] == 1


# --- the writer and the sink together ----------------------------------------------------------


@pytest.fixture(name="pipeline")
def _pipeline(server: LocalApiServer) -> Iterator[Any]:
    made: list[tuple[recorder.EventBroadcaster, sink.KubernetesEventSink]] = []

    def build(**kw: Any) -> tuple[recorder.EventBroadcaster, recorder.EventRecorder]:
        clock = kw.pop("clock", None) or FakeClock(T0)
        options: dict[str, Any] = {
            "clock": clock,
            "sleep": clock.sleep,
            "sleep_duration": 0.0,
            "rng": lambda: 0.5,
        }
        options.update(kw)
        b = recorder.EventBroadcaster(**options)
        s = sink.KubernetesEventSink(server.api_client(), qps=0, request_timeout=(1.0, 2.0))
        b.start_recording_to_sink(s)
        made.append((b, s))
        return b, b.new_recorder(models.EventSource(component="ctl", host="node-1"))

    yield build
    for b, s in made:
        b.shutdown(5)
        s.close()
        s.api_client.close()


def _writes(server: LocalApiServer) -> list[Any]:
    return [r for r in server.requests if r.method in ("POST", "PATCH", "PUT")]


def _accounted(stats: Any) -> bool:
    return bool(stats["accepted"] == sum(stats[k] for k in OUTCOMES))


def test_ten_thousand_identical_warnings_make_one_event_counted_exactly(server, pipeline) -> None:
    """One Event with count 10,000, reached with at most 30 API writes."""
    # a real (interruptible) sleeper: the burst happens at one instant of the fake clock; a
    # sleeper that moved it would hand the spam filter new tokens while the burst lasts
    b, rec = pipeline(queue_length=10_000, sleep=None)
    for _ in range(10_000):
        rec.event(_ref(), models.WARNING, "BackOff", "Back-off pulling image busybox")
    assert b.flush(60)
    (event,) = server.events()
    assert event["count"] == 10_000
    assert len(_writes(server)) <= 30
    assert _accounted(b.stats())


def test_ten_thousand_distinct_messages_aggregate_and_the_counts_add_up(server, pipeline) -> None:
    """Distinct messages aggregate as client-go does; the server's counts sum to 10,000."""
    b, rec = pipeline(queue_length=10_000)
    for i in range(10_000):
        rec.event(_ref(), models.WARNING, "BackOff", f"Back-off pulling image busybox:{i}")
    assert b.flush(60)
    events = server.events()
    assert sum(e["count"] for e in events) == 10_000
    combined = [e for e in events if e["message"].startswith("(combined from similar events): ")]
    assert len(combined) == 1
    assert len(events) == 10  # nine on their own, then one combined
    assert _accounted(b.stats())


def test_a_failing_object_does_not_hold_up_other_objects(server, pipeline) -> None:
    """Every write for one object fails with 500 while the others are written at once."""
    server.create_namespace("broken")
    server.inject("POST", path="/namespaces/broken/", times=None, status=500)
    b, rec = pipeline(sleep=None, sleep_duration=30.0)  # real, long back-offs
    rec.event(_ref("bad", namespace="broken"), models.WARNING, "Failed", "x")
    for i in range(20):
        rec.event(_ref(f"good-{i}"), models.NORMAL, "Ok", "x")
    # until the writer has counted every answer, not only until the server stored the last
    # event: shutdown(0.5) is not a bound for the rest of a write in flight
    deadline = time.monotonic() + 10
    while b.stats()["created"] < 20 and time.monotonic() < deadline:
        threading.Event().wait(0.01)  # polling, not sleeping the code under test
    assert len(server.events("default")) == 20
    b.shutdown(0.5)
    stats = b.stats()
    assert (stats["created"], stats["failed"]) == (20, 1)
    assert _accounted(stats)


def test_retry_after_is_waited_out(server, pipeline) -> None:
    """A 429 with Retry-After: 2 makes the writer wait 2 s (on the injected clock)."""
    clock = FakeClock(T0)
    server.inject("POST", status=429, retry_after=2)
    b, rec = pipeline(clock=clock, sleep=clock.sleep)
    rec.event(_ref(), models.WARNING, "BackOff", "x")
    assert b.flush(10)
    assert clock.sleeps == [2.0]
    assert len(server.events()) == 1


@pytest.mark.parametrize("case", ["terminating", "exists", "invalid"])
def test_permanent_refusals_are_given_up_after_one_attempt(server, pipeline, case) -> None:
    """403 NamespaceTerminating, 409 AlreadyExists and 422 are not retried."""
    namespace = "default"
    if case == "terminating":
        server.create_namespace("doomed")
        server.terminate_namespace("doomed")
        namespace = "doomed"
    elif case == "exists":
        server.inject("POST", status=409)
    else:
        server.inject("POST", status=422)
    b, rec = pipeline()
    rec.event(_ref(namespace=namespace), models.WARNING, "R", "x")
    assert b.flush(10)
    assert len([r for r in server.requests if r.method == "POST"]) == 1
    assert b.stats()["failed"] == 1


def test_an_event_over_the_servers_body_limit_is_given_up_without_being_sent(
    server, pipeline, caplog
) -> None:
    """An event whose body is over the API server's 3 MiB limit (here an involved object's
    fieldPath of 4 MiB) is never sent: a real server answers 413 or cuts the connection while
    the body is on its way, which a retry would meet again. Counted failed, and said so."""
    b, rec = pipeline()
    ref = models.ObjectReference(
        kind="Pod", namespace="default", name="web-0", field_path="x" * (4 * 1024 * 1024)
    )
    with caplog.at_level(logging.WARNING, logger="k8s_logging_events"):
        rec.event(ref, models.WARNING, "R", "x")
        assert b.flush(10)
    assert [r.method for r in server.requests if r.method == "POST"] == []
    assert b.stats()["failed"] == 1
    assert server.events() == []
    said = [
        r.getMessage() for r in caplog.records if "over the API server's limit" in r.getMessage()
    ]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]


def test_a_server_down_for_the_whole_test_does_not_delay_shutdown(server, pipeline) -> None:
    """shutdown(timeout=1) returns in about a second and accounts for every occurrence."""
    server.refuse_connections()
    b, rec = pipeline(sleep=None, sleep_duration=10.0)
    for i in range(50):
        rec.event(_ref(f"p{i % 5}"), models.WARNING, "R", "x")
    started = time.monotonic()
    b.shutdown(timeout=1)
    assert time.monotonic() - started < 5  # a retry's back-off alone is 10 s
    stats = b.stats()
    assert stats["accepted"] == 50
    assert _accounted(stats)
    server.accept_connections()


def test_writes_shutdown_gave_up_are_never_sent_by_the_sink_that_outlives_it(server) -> None:
    """shutdown(timeout) counts the writes still waiting for the sink's rate limit as failed
    and stops every thread. A sink that outlives the broadcaster (shared, or closed later)
    sent them all the same once its tokens came, from writer threads left waiting for them:
    the server held what stats() called failed. They end at once now, sending nothing."""
    b = recorder.EventBroadcaster()
    # one request at once, then one every 100 s, draining too
    with (
        server.api_client() as api_client,
        sink.KubernetesEventSink(api_client, qps=0.01, burst=1, drain_qps=0.01) as s,
    ):
        b.start_recording_to_sink(s)
        rec = b.new_recorder(models.EventSource(component="ctl", host="node-1"))
        rec.event(_ref("web-0"), models.WARNING, "R", "x")
        deadline = time.monotonic() + 10
        while b.stats()["created"] < 1 and time.monotonic() < deadline:
            threading.Event().wait(0.01)  # polling, not sleeping the code under test
        for i in (1, 2):  # no token left: both wait for the next one
            rec.event(_ref(f"web-{i}"), models.WARNING, "R", "x")
        b.shutdown(timeout=0.5)
        for thread in b.threads():
            thread.join(5)  # at once with the fix; the next token is 100 s away without it
        assert b.threads() == []
        stats = b.stats()
        assert (stats["created"], stats["failed"]) == (1, 2)
        assert len(server.events()) == 1


def test_close_ends_a_writers_wait_for_the_rate_limit_at_once(server) -> None:
    """close() ends every wait for the rate limit, a broadcaster's writer's too: its sleep is
    handed an event that close() sets. A writer's sleep was handed its shutdown's event alone,
    which close() never sets: it slept on to the end of its second (a user's own sleep, to
    the end of what it was asked), then found the sink closed."""
    cancels: queue.SimpleQueue[threading.Event] = queue.SimpleQueue()

    def sleep(seconds: float, cancel: threading.Event) -> bool:
        cancels.put(cancel)
        return cancel.wait(10)

    b = recorder.EventBroadcaster()
    with (
        server.api_client() as api_client,
        sink.KubernetesEventSink(api_client, qps=0.01, burst=1, sleep=sleep) as s,
    ):
        b.start_recording_to_sink(s)
        rec = b.new_recorder(models.EventSource(component="ctl", host="node-1"))
        for i in (0, 1):  # the second waits for the next token, 100 s away
            rec.event(_ref(f"web-{i}"), models.WARNING, "R", "x")
        cancel = cancels.get(timeout=10)
        s.close()
        assert cancel.is_set()
        b.shutdown(timeout=0)
    assert len(server.events()) == 1


def test_a_discovery_its_close_cut_short_says_nothing(server, caplog) -> None:
    """``api="auto"``: the handler's sink asks the server which Events API it serves, and
    the server never answers. Its close gives the question up and ends the request at once;
    the discovery then said it "could not learn" because "the server closed the connection
    without answering", after the close's own report, of a close the server never made.
    The sink was closed: nothing more is said."""
    server.inject("GET", path="^/apis/events.k8s.io/v1$", action="hang", times=None)
    lazy = sink.LazySink(
        lambda: sink.KubernetesEventSink.from_url(server.url, qps=0, api="auto"),
        server.url,
        "auto",
    )
    asking = threading.Thread(target=lambda: lazy.api)
    with caplog.at_level(logging.DEBUG, logger="k8s_logging_events"):
        asking.start()
        assert server.wait_for_request(timeout=10) is not None  # the question hangs
        lazy.close()
        asking.join(5)  # the read timeout is 10 s
    assert not asking.is_alive()
    assert [r.getMessage() for r in caplog.records] == []


def test_an_expired_event_is_created_again_with_the_accumulated_count(server, pipeline) -> None:
    """The patch meets 404 (the server's TTL removed the event): a create follows."""
    b, rec = pipeline()
    for _ in range(3):
        rec.event(_ref(), models.WARNING, "BackOff", "x")
    assert b.flush(10)
    (stored,) = server.events()
    api = client.CoreV1Api(server.api_client())
    api.delete_namespaced_event(stored["metadata"]["name"], "default")
    rec.event(_ref(), models.WARNING, "BackOff", "x")
    assert b.flush(10)
    (recreated,) = server.events()
    assert recreated["count"] == 4
    assert recreated["metadata"]["name"] == stored["metadata"]["name"]
    methods = [r.method for r in _writes(server)]
    assert methods[-2:] == ["PATCH", "POST"]


@pytest.mark.parametrize("reads", [True, False], ids=["takeover", "client-go"])
@pytest.mark.parametrize("status", [429, 403])
def test_a_write_sent_again_may_have_landed_whatever_the_second_send_met(
    server, reads, status
) -> None:
    """The POST was stored, then its kept-alive connection closed without an answer; the
    channel sent it again, and that send met a 429 (or any refusal). The first send may have
    landed all the same: the retry's AlreadyExists is our own event, so one occurrence is
    count 1 on the server, created, neither counted twice nor given up as failed."""
    clock = FakeClock(T0)
    b = recorder.EventBroadcaster(
        clock=clock, sleep=clock.sleep, sleep_duration=0.5, rng=lambda: 0.5
    )
    s = sink.KubernetesEventSink(server.api_client(), qps=0, request_timeout=(1.0, 2.0))
    b.start_recording_to_sink(s if reads else WithoutRead(s))
    rec = b.new_recorder(models.EventSource(component="ctl", host="node-1"))
    try:
        rec.event(_ref("web-0"), models.WARNING, "BackOff", "first")
        assert b.flush(10)  # the connection is kept alive now
        server.inject(method="POST", action="drop", commit=True)
        server.inject(method="POST", status=status, retry_after=0.1)
        rec.event(_ref("web-1"), models.WARNING, "BackOff", "second")
        assert b.flush(10)
        stats = b.stats()
    finally:
        b.shutdown(5)
        s.close()
    assert (stats["created"], stats["patched"], stats["failed"]) == (2, 0, 0), stats
    assert sorted(e["count"] for e in server.events()) == [1, 1]
    assert [r.status for r in server.requests if r.method == "POST"][1:3] == [None, status]


# -- the lean request path: authentication and TLS still work ------------------------------------


class TestLeanRequestPath:
    """Writes go through a keep-alive pool with pre-built headers, not the client's
    serialisation; the client's configuration still decides TLS and credentials."""

    def test_https_with_a_bearer_token(self) -> None:
        with LocalApiServer(tls=True, token="s3cret") as server:
            events_sink = sink.KubernetesEventSink(server.api_client(), qps=0)
            try:
                stored = events_sink.create(_event())
                patched = events_sink.patch(stored, b'{"count":2}')
                assert patched.count == 2
                assert _on_channel(events_sink)
            finally:
                events_sink.close()
            assert server.events("default")[0]["count"] == 2
            assert server.connections == 1  # one TLS handshake for both

    def test_a_wrong_token_is_a_401(self) -> None:
        with LocalApiServer(tls=True, token="s3cret") as server:
            api_client = server.api_client()
            api_client.configuration.api_key = {"authorization": "wrong"}
            events_sink = sink.KubernetesEventSink(api_client, qps=0)
            try:
                with pytest.raises(sink.ApiStatusError) as raised:
                    events_sink.create(_event())
                assert raised.value.status == 401
                assert not raised.value.is_retryable
            finally:
                events_sink.close()

    def test_a_token_read_with_its_file_s_line_break_still_authenticates(self) -> None:
        """The official client's in-cluster loader keeps a token file's trailing line break
        (``"bearer " + content``); like client-go, which trims it, the sink sends the token
        without it, where every write failed as "cannot be sent" and was retried in vain."""
        with LocalApiServer(tls=True, token="s3cret") as server:
            api_client = server.api_client()
            api_client.configuration.api_key = {"authorization": "s3cret\n"}
            events_sink = sink.KubernetesEventSink(api_client, qps=0)
            try:
                assert events_sink.create(_event()).name == "web-0.1"
            finally:
                events_sink.close()

    def test_the_refresh_hook_runs_at_each_request(self) -> None:
        with LocalApiServer(tls=True, token="fresh") as server:
            api_client = server.api_client()
            configuration = api_client.configuration
            configuration.api_key = {"authorization": "expired"}
            refreshed: list[int] = []

            def refresh(config: Any) -> None:  # an exec plugin's refresh, as the client calls it
                refreshed.append(1)
                if len(refreshed) > 1:
                    config.api_key = {"authorization": "fresh"}

            configuration.refresh_api_key_hook = refresh
            events_sink = sink.KubernetesEventSink(api_client, qps=0)
            try:
                with pytest.raises(sink.ApiStatusError) as raised:
                    events_sink.create(_event(name="web-0.1"))
                assert raised.value.status == 401
                events_sink.create(_event(name="web-0.2"))  # the hook refreshed the token
            finally:
                events_sink.close()
            assert [e["metadata"]["name"] for e in server.events("default")] == ["web-0.2"]
            assert len(refreshed) == 2

    @pytest.mark.parametrize("path", ["lean", "official"])
    def test_credentials_are_those_of_the_clients_configuration_at_each_request(
        self, path: str
    ) -> None:
        """Each request reads the credentials of the configuration the client has then, on
        either path: one the application puts in the client's place after the sink was made
        (a rotated token) is the one sent."""
        with LocalApiServer(tls=True, token="s3cret") as server:
            api_client = server.api_client()
            api_client.configuration.api_key = {"authorization": "expired"}
            events_sink = sink.KubernetesEventSink(api_client, qps=0)
            if path == "official":
                _on_official_path(events_sink)
            try:
                assert _on_channel(events_sink) == (path == "lean")
                with pytest.raises(sink.ApiStatusError):
                    events_sink.create(_event(name="web-0.1"))
                api_client.configuration = server.api_client().configuration
                events_sink.create(_event(name="web-0.2"))
            finally:
                events_sink.close()
            assert [e["metadata"]["name"] for e in server.events("default")] == ["web-0.2"]

    def test_client_certificates(self) -> None:
        with LocalApiServer(tls=True, client_certificates=True) as server:
            events_sink = sink.KubernetesEventSink(server.api_client(), qps=0)
            anonymous = sink.KubernetesEventSink(server.api_client(credentials=False), qps=0)
            try:
                events_sink.create(_event())
                with pytest.raises(sink.ApiStatusError) as raised:
                    anonymous.create(_event(name="web-0.2"))
                assert raised.value.status == 401
            finally:
                events_sink.close()
                anonymous.close()
            assert len(server.events("default")) == 1

    def test_the_server_certificate_is_verified(self) -> None:
        with (
            LocalApiServer(tls=True, token="s3cret") as server,
            LocalApiServer(tls=True) as other,
        ):
            configuration = server.api_client().configuration
            configuration.ssl_ca_cert = other.ca_file  # not the CA that signed it
            events_sink = sink.KubernetesEventSink(client.ApiClient(configuration), qps=0)
            try:
                with pytest.raises(sink.ApiStatusError, match=r"CERTIFICATE_VERIFY_FAILED") as info:
                    events_sink.create(_event())
                assert info.value.status == 0  # as the official client reports it
                assert not info.value.is_retryable
            finally:
                events_sink.close()
            assert server.events("default") == []

    @pytest.mark.parametrize(
        ("settings", "works"),
        [
            ({"tls_server_name": "localhost"}, True),
            ({"tls_server_name": "elsewhere.example"}, False),
            ({"tls_server_name": "elsewhere.example", "assert_hostname": False}, True),
            ({"ssl_ca_cert": None}, False),  # the system's CAs never signed the server's
            ({"ssl_ca_cert": None, "verify_ssl": False}, True),
        ],
        ids=["server-name", "wrong-server-name", "no-hostname-check", "no-ca", "no-verify"],
    )
    def test_tls_settings_decide_as_in_the_official_client(
        self, settings: dict[str, Any], works: bool
    ) -> None:
        """SNI and the hostname check, verification off: both paths agree on each."""
        with LocalApiServer(tls=True, token="s3cret") as server:
            configuration = server.api_client().configuration
            for name, value in settings.items():
                setattr(configuration, name, value)
            events_sink = sink.KubernetesEventSink(client.ApiClient(configuration), qps=0)
            official = _on_official_path(
                sink.KubernetesEventSink(client.ApiClient(configuration), qps=0)
            )
            outcomes = []
            try:
                assert _on_channel(events_sink)
                for write in (
                    lambda: official.create(_event(name="web-0.1")),
                    lambda: events_sink.create(_event(name="web-0.2")),
                ):
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        try:
                            write()
                            outcome = "written"
                        except sink.ApiStatusError as error:
                            outcome = f"{error.status} {error.reason[:8]}"
                    unverified = [w for w in caught if w.category is InsecureRequestWarning]
                    outcomes.append(f"{outcome}{', warned' if unverified else ''}")
            finally:
                events_sink.close()
                official.close()
            expected = "written" if works else "0 SSLError"
            if settings.get("verify_ssl") is False:
                expected += ", warned"
            assert outcomes == [expected, expected]

    @pytest.mark.parametrize("setting", ["assert_hostname", "pool_option"])
    def test_what_the_channel_cannot_mirror_stays_with_the_official_client(
        self, setting: str
    ) -> None:
        """A name to match other than the server's, a pool option it does not know."""
        import ssl

        with LocalApiServer(tls=True, token="s3cret") as server:
            configuration = server.api_client().configuration
            if setting == "assert_hostname":
                configuration.assert_hostname = "localhost"
            api_client = client.ApiClient(configuration)
            if setting == "pool_option":
                pool_options = api_client.rest_client.pool_manager.connection_pool_kw
                pool_options["ssl_minimum_version"] = ssl.TLSVersion.TLSv1_2
            events_sink = sink.KubernetesEventSink(api_client, qps=0)
            try:
                assert not _on_channel(events_sink)
                events_sink.create(_event())
            finally:
                events_sink.close()
            assert len(server.events("default")) == 1

    def test_a_proxy_takes_the_official_path(self) -> None:
        """A client made with a proxy (its pool is the proxy's) keeps its own path."""
        with LocalApiServer() as server:
            configuration = server.api_client().configuration
            configuration.proxy = "http://127.0.0.1:9"
            api_client = client.ApiClient(configuration)
            events_sink = sink.KubernetesEventSink(api_client, qps=0)
            try:
                assert not _on_channel(events_sink)
            finally:
                events_sink.close()


# -- reading an event, and guarded patches (issue 19) ----------------------------------------------


@pytest.fixture(name="either_path", params=["lean", "official"])
def _either_path(
    request: pytest.FixtureRequest, server: LocalApiServer
) -> Iterator[sink.KubernetesEventSink]:
    """The sink on its own channel, and on the official client's path."""
    s = sink.KubernetesEventSink(server.api_client(), qps=0)
    if request.param == "official":
        _on_official_path(s)
    yield s
    assert _on_channel(s) == (request.param == "lean")
    s.close()


class TestReadAndGuardedPatches:
    def test_read_returns_the_stored_event(self, either_path: sink.KubernetesEventSink) -> None:
        """GET of the event's namespace and name, read as the API returned it."""
        stored = either_path.create(_event(count=4))
        read = either_path.read(_event())
        assert read == stored
        assert read.count == 4
        assert read.resource_version == stored.resource_version

    def test_read_of_a_missing_event_is_not_found(
        self, either_path: sink.KubernetesEventSink
    ) -> None:
        with pytest.raises(sink.ApiStatusError) as raised:
            either_path.read(_event(name="nope.1"))
        assert raised.value.is_not_found

    def test_read_refused_is_a_403(
        self, server: LocalApiServer, either_path: sink.KubernetesEventSink
    ) -> None:
        """A Role without get on events: 403 Forbidden, as the API server answers."""
        either_path.create(_event())
        server.inject(method="GET", status=403)
        with pytest.raises(sink.ApiStatusError) as raised:
            either_path.read(_event())
        assert raised.value.status == 403

    @pytest.mark.parametrize("api", [sink.CORE_V1, sink.EVENTS_V1])
    def test_a_strategic_merge_patch_with_a_stale_resource_version_is_a_conflict(
        self, server: LocalApiServer, either_path: sink.KubernetesEventSink, api: str
    ) -> None:
        """The server checks ``metadata.resourceVersion`` in a strategic-merge patch as a
        precondition, in both APIs: the current one passes, a stale one is 409 Conflict."""
        either_path._api = api
        v1_fields = {"action": "Pull", "reporting_controller": "test", "reporting_instance": "n1"}
        first = either_path.create(_event(**(v1_fields if api == sink.EVENTS_V1 else {})))
        body: dict[str, Any] = {
            "series": {"count": 2, "lastObservedTime": "2024-01-01T00:00:05.000000Z"}
        }
        if api == sink.CORE_V1:
            body = {"count": 2}
        current = {**body, "metadata": {"resourceVersion": first.resource_version}}
        second = either_path.patch(first, json.dumps(current).encode())
        assert second.resource_version != first.resource_version
        with pytest.raises(sink.ApiStatusError) as raised:
            either_path.patch(first, json.dumps(current).encode())
        assert (raised.value.status, raised.value.reason) == (409, "Conflict")
        assert server.requests[-1].content_type == "application/strategic-merge-patch+json"

    def test_the_lazy_sink_reads_through_the_real_one(self, server: LocalApiServer) -> None:
        lazy = sink.LazySink(
            lambda: sink.KubernetesEventSink.from_url(server.url, qps=0), "a test", "v1"
        )
        try:
            stored = lazy.create(_event())
            assert lazy.read(_event()) == stored
        finally:
            lazy.close()

    def test_a_lazy_sink_closed_while_its_client_is_built_sends_nothing(
        self, server: LocalApiServer
    ) -> None:
        """A handler closed (its deadline at exit passed, what was pending counted as
        failed) while a writer still builds the client (an exec plugin, a slow in-cluster
        set-up): the write that waited for the client is not sent once it is built; an
        event on the server would be one that ``stats()`` counts as failed."""
        building, built = threading.Event(), threading.Event()

        def factory() -> sink.KubernetesEventSink:
            building.set()
            assert built.wait(30)  # only a hang reaches the bound
            return sink.KubernetesEventSink.from_url(server.url, qps=0)

        lazy = sink.LazySink(factory, "a slow client", "v1")
        raised: list[BaseException] = []

        def write() -> None:
            try:
                lazy.create(_event())
            except Exception as error:  # what the writer would meet
                raised.append(error)

        writer = threading.Thread(target=write)
        writer.start()
        assert building.wait(30)
        lazy.close()
        built.set()
        writer.join(30)
        assert [isinstance(error, ConnectionAbortedError) for error in raised] == [True]
        assert server.requests == []

    def test_a_flush_that_begins_as_the_client_is_published_still_drains_it(self) -> None:
        """``drain(True)`` from a flush that lands between the build's look at the drain
        state and the moment the built sink is published still switches that sink to its
        drain rate (else a batch job's exit writes at the normal rate, 5 a second)."""
        rates: list[bool] = []

        class Draining(FakeEventSink):
            def drain(self, on: bool) -> None:
                rates.append(on)

        lazy = sink.LazySink(Draining, "a test sink", "v1")
        lines, first = inspect.getsourcelines(sink.LazySink._build)
        publish = first + next(i for i, line in enumerate(lines) if "self._real = built" in line)
        drainer = threading.Thread(target=lazy.drain, args=(True,), name="test-flush")

        def at_publish(frame: FrameType, event: str, arg: object) -> Any:
            if event == "line" and frame.f_lineno == publish and drainer.ident is None:
                drainer.start()
                while drainer.is_alive():  # until it is done, or waits at drain()'s lock
                    top = sys._current_frames().get(drainer.ident or -1)
                    if top is not None and top.f_code is sink.LazySink.drain.__code__:
                        break
                    drainer.join(0.001)
            return at_publish

        def tracer(frame: FrameType, event: str, arg: object) -> Any:
            return at_publish if frame.f_code is sink.LazySink._build.__code__ else None

        previous = sys.gettrace()
        sys.settrace(tracer)
        try:
            lazy.create(_event())
        finally:
            sys.settrace(previous)
        drainer.join(30)
        assert rates == [True]

    def test_the_lazy_sink_says_when_its_real_sink_cannot_read(
        self, server: LocalApiServer
    ) -> None:
        """A real sink without ``read`` or ``read_pod_uid`` (a user's, as the EventSink
        Protocol has it): the lazy sink raises TypeError naming itself and what cannot be
        read, which the writer takes for "keep client-go's ways"; its writes still go."""
        real = sink.KubernetesEventSink.from_url(server.url, qps=0)
        lazy = sink.LazySink(lambda: WithoutRead(real), "a test sink", "v1")
        try:
            with pytest.raises(TypeError, match=r"^a test sink: this sink cannot read events$"):
                lazy.read(_event())
            with pytest.raises(TypeError, match=r"^a test sink: this sink cannot read pods$"):
                lazy.read_pod_uid("default", "web-0")
            assert [r.method for r in server.requests] == []
            assert lazy.create(_event()).name == "web-0.1"
        finally:
            lazy.close()
            real.close()


def test_a_child_forked_while_the_parent_drains_writes_at_the_normal_rate(server) -> None:
    """``drain`` lifts the rate limit while the parent's flush drains; a child forked then
    has no flush of its own under way, so it writes at ``qps``, not ``drain_qps`` (renewed
    as ``_process`` renews it in the child), whether or not its real sink was built yet."""
    clock = FakeClock(T0)
    real = sink.KubernetesEventSink.from_url(
        server.url, qps=1, burst=1, drain_qps=1000, clock=clock, sleep=clock.sleep
    )
    lazy = sink.LazySink(lambda: real, "a test", "v1")
    try:
        lazy.drain(True)
        real.drain(True)
        real._after_fork_in_child()  # what a child forked now runs first
        lazy._after_fork_in_child()
        for number in range(3):
            lazy.create(_event(f"web-0.{number}"))
        assert sum(clock.sleeps) >= 2.0, clock.sleeps  # one a second after the burst of one
    finally:
        lazy.close()


def test_a_switch_to_the_drain_rate_waits_for_no_writer(server) -> None:
    """A flush switches the sink's rate on the caller's thread, under the runtime's lock; a
    writer holding the rate's lock (it waits for a token under it) must not hold the switch
    up: a signal handler's flush landing in a switch that waited would keep the runtime's
    lock from every writer until its timeout. The switch is one assignment, taking no lock."""
    s = sink.KubernetesEventSink.from_url(server.url, qps=1, drain_qps=10)
    switched: list[bool] = []

    def switch() -> None:
        s.drain(True)
        switched.append(True)

    thread = threading.Thread(target=switch, name="test-switch", daemon=True)
    try:
        with s._limit_lock:  # where a writer holds it while it waits for a token
            thread.start()
            thread.join(10)  # reached only by a switch that waits for the writer
        assert switched == [True]
    finally:
        thread.join(10)
        s.close()


def test_a_lazy_sink_drain_may_be_switched_from_inside_a_switch_on_the_same_thread() -> None:
    """The handler's sink is a LazySink: a flush switches its rate on the caller's thread,
    holding the lock that makes the switch and the build's publication agree; a signal
    handler that flushes (an application's SIGTERM handler) may interrupt that switch there
    and switch again: that lock is reentrant, so the inner switch does not wait for ever
    for its own thread, and reaches the real sink."""
    rates: list[bool] = []

    class Draining(FakeEventSink):
        def drain(self, on: bool) -> None:
            rates.append(on)

    lazy = sink.LazySink(Draining, "a test sink", "v1")
    lazy.create(_event())  # the real sink is built
    switched: list[bool] = []

    def inner_switch() -> None:
        with lazy._drain_lock:  # where the outer switch holds it when the signal lands
            lazy.drain(True)
            switched.append(True)

    thread = threading.Thread(target=inner_switch, name="test-lazy-switch", daemon=True)
    try:
        thread.start()
        thread.join(10)  # reached only by a hang
        assert switched == [True]
        assert rates == [True]
    finally:
        lazy.close()


@pytest.mark.parametrize(
    ("keywords", "words"),
    [
        ({"request_timeout": -1}, ["request_timeout", "-1"]),
        ({"request_timeout": "soon"}, ["request_timeout", "'soon'"]),
        ({"request_timeout": [1]}, ["request_timeout", "pair"]),
        ({"request_timeout": float("inf")}, ["request_timeout", "inf"]),
        ({"qps": float("nan")}, ["qps", "nan"]),
        ({"burst": 0}, ["burst", ">= 1"]),
        ({"drain_qps": "fast"}, ["drain_qps", "'fast'"]),
    ],
)
def test_the_sinks_keywords_are_checked_as_the_handlers_options(
    keywords: dict[str, Any], words: list[str]
) -> None:
    """The sink's ``qps``, ``burst``, ``drain_qps`` and ``request_timeout`` are "as the
    handler's options of those names", but were taken unchecked: ``request_timeout=-1``,
    ``"5"``, ``[1]`` or infinity built a sink (in dictConfig, ``sink: {"()": ...}``) whose
    every write then failed on a writer, and a NaN qps quietly meant no rate limit. Each is
    a ValueError naming the keyword when the sink is built; a number written as a string is
    that number, as for the handler."""
    with pytest.raises(ValueError, match=r".") as error:
        sink.KubernetesEventSink.from_url("http://127.0.0.1:1", **keywords)
    assert all(word in str(error.value) for word in words), str(error.value)
    built = sink.KubernetesEventSink.from_url("http://127.0.0.1:1", request_timeout="5", qps="2")
    try:
        assert built._timeout == 5.0
    finally:
        built.close()


def test_a_shared_sink_drains_until_the_last_of_its_flushes_ends(server) -> None:
    """One sink given to two handlers (``sink: ext://...``) is switched by both broadcasters'
    flushes: the end of one flush must not bring back the normal rate while the other still
    drains (its writes at ``qps`` ran out of ``flush_timeout`` at exit)."""
    clock = FakeClock(T0)
    s = sink.KubernetesEventSink.from_url(
        server.url, qps=1, burst=1, drain_qps=1000, clock=clock, sleep=clock.sleep
    )
    try:
        s.drain(True)  # one broadcaster's flush begins
        s.drain(True)  # the other's
        s.drain(False)  # the first ends
        for number in range(3):
            s.create(_event(f"web-0.{number}"))
        assert sum(clock.sleeps) < 0.01, clock.sleeps
        s.drain(False)  # the last ends: the normal rate again
        for number in range(3, 5):
            s.create(_event(f"web-0.{number}"))
        assert sum(clock.sleeps) >= 1.0, clock.sleeps
    finally:
        s.close()


def test_a_switch_off_with_no_drain_on_leaves_the_next_drain_whole(server) -> None:
    """``drain(False)`` called once more than ``drain(True)`` (by a caller of its own) ends
    no drain: the next flush's ``drain(True)`` drains. It was counted as an end all the same,
    so every later flush's drain was one short and wrote at ``qps`` (a job's exit, 5 a second)."""
    clock = FakeClock(T0)
    s = sink.KubernetesEventSink.from_url(
        server.url, qps=1, burst=1, drain_qps=1000, clock=clock, sleep=clock.sleep
    )
    try:
        s.drain(False)
        s.drain(True)
        for number in range(3):
            s.create(_event(f"web-0.{number}"))
        assert sum(clock.sleeps) < 0.01, clock.sleeps
    finally:
        s.close()


@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_flush_ending_inside_a_lone_switch_off_leaves_the_next_drain_whole(server, step) -> None:
    """A lone ``drain(False)`` while a flush ends its drain (on another thread, or in a
    signal handler that lands at any ``step`` of the lone one): together they end the one
    drain there was, no more, and the next flush drains. Both looked at the counts first,
    both then ended a drain, and every later flush's drain was one short (at ``qps``)."""
    clock = FakeClock(T0)
    s = sink.KubernetesEventSink.from_url(
        server.url, qps=1, burst=1, drain_qps=1000, clock=clock, sleep=clock.sleep
    )
    steps = 0

    def flush_ends(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal steps
        steps += event == "line"
        if steps == step and event == "line":
            s.drain(False)  # untraced: trace functions are not traced
        return flush_ends

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        return flush_ends if frame.f_code is sink.KubernetesEventSink.drain.__code__ else None

    try:
        s.drain(True)  # the flush's drain
        previous = sys.gettrace()
        sys.settrace(tracer)
        try:
            s.drain(False)  # the lone switch off
        finally:
            sys.settrace(previous)
        if steps < step:  # the lone one was done first
            s.drain(False)
        s.drain(True)  # the next flush
        for number in range(3):
            s.create(_event(f"web-0.{number}"))
        assert sum(clock.sleeps) < 0.01, clock.sleeps
    finally:
        s.close()


def test_a_flush_writing_on_its_own_thread_waits_for_no_token_past_its_deadline(
    server, monkeypatch
) -> None:
    """Where no writer can start, a flush makes the writes on the caller's thread, within its
    timeout: its requests' timeouts keep that deadline, but the rate limit's wait did not, and
    the caller (an exit's flush) waited for the next token, however far (a second at a time).
    A token due past the deadline is not waited for: the request is not sent (tried again, not
    taken as maybe landed), and the flush returns by its deadline."""
    writers_never_start(monkeypatch)
    clock = FakeClock()  # the rate limit's time: its waits take no real time
    b = recorder.EventBroadcaster()
    with (
        server.api_client() as api_client,
        sink.KubernetesEventSink(
            api_client, qps=0.01, burst=1, drain_qps=0.01, clock=clock, sleep=clock.sleep
        ) as s,
    ):
        b.start_recording_to_sink(s)
        rec = b.new_recorder(models.EventSource(component="ctl", host="node-1"))
        try:
            for i in (0, 1):  # the second waits for the next token, 100 s away
                rec.event(_ref(f"web-{i}"), models.WARNING, "R", "x")
            done = b.flush(0.5)
        finally:
            b.shutdown(0)
    assert [seconds for seconds in clock.sleeps if seconds > 0.5] == []
    assert done is False
    assert len(server.events()) == 1
    assert b.stats()["failed"] == 1


def test_a_type_checker_takes_the_numbers_the_sink_takes_as_text(tmp_path: Path) -> None:
    """The sink's numbers are checked as the handler's are, so a number written as text
    (from the environment) and a ``[connect, read]`` list are taken by mypy too."""
    user, report = mypy_report(
        tmp_path,
        "import os\n"
        "from k8s_logging_events.sink import KubernetesEventSink\n"
        "text = os.environ.get('N', '5')\n"
        "KubernetesEventSink(qps=text, burst=text, drain_qps=text, request_timeout=[text, 10])\n",
        sink.__file__,
    )
    assert f"{user}:" not in report, report
