"""LocalApiServer(event_rate_limit=...): the EventRateLimit admission plugin, emulated.

What ``plugin/pkg/admission/eventratelimit`` does to event writes, seen through the official
client: a token bucket per limit type and key, every bucket charged for every write,
``429 TooManyRequests`` with the plugin's message and no ``Retry-After``, buckets refilled
on the server's (fake) clock, an LRU of keys whose evicted buckets come back full. The
configuration is the plugin's own and is checked as the plugin checks it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s_logging_events.handler import KubernetesEventHandler
from k8s_logging_events.testing import FakeClock, LocalApiServer
from tests._api import apiserver_command, core_event, failure, status

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def event(name: str, namespace: str = "default", **fields: Any) -> Any:
    """A core/v1 event about pod ``web`` (uid ``u-1``) as a recorder writes a back-off."""
    back_off = {
        "involvedObject": {
            "kind": "Pod",
            "name": "web",
            "namespace": namespace,
            "uid": "u-1",
            "apiVersion": "v1",
        },
        "reason": "BackOff",
        "message": "Back-off pulling image",
        "type": "Warning",
    }
    return core_event(name, namespace, **{**back_off, **fields})


def limits(*entries: tuple[str, int, int], **extra: Any) -> dict[str, Any]:
    """``{"limits": [...]}`` from (type, qps, burst) tuples; ``cacheSize`` etc. via extra."""
    return {"limits": [{"type": t, "qps": q, "burst": b, **extra} for t, q, b in entries]}


def create(core: Any, name: str, namespace: str = "default", **fields: Any) -> int:
    """Create an event; return the HTTP status (201, or the error's)."""
    try:
        core.create_namespaced_event(namespace, event(name, namespace, **fields))
    except ApiException as error:
        return int(error.status)
    return 201


def refusal(key_type: str, key: str) -> str:
    """The plugin's message for one refusing limit."""
    return f"Too many requests: limit reached on type {key_type} for key {key}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def serve(clock: FakeClock, config: dict[str, Any], **options: Any) -> LocalApiServer:
    """A server with the limit, to start and stop with ``with``."""
    return LocalApiServer(clock=clock, event_rate_limit=config, **options)


# -- burst, refusal, the answer -----------------------------------------------------------


def test_namespace_limit_admits_the_burst_then_answers_the_plugins_429(clock):
    """Namespace qps 1 burst 3: three creates pass, the fourth gets the plugin's exact 429
    (no details, no retryAfterSeconds, no Retry-After header), and is not stored."""
    with serve(clock, limits(("Namespace", 1, 3))) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert [create(core, f"e{i}") for i in range(3)] == [201, 201, 201]
        with pytest.raises(ApiException) as error:
            core.create_namespaced_event("default", event("e3"))
    assert error.value.status == 429
    assert status(error) == failure(429, "TooManyRequests", refusal("Namespace", "default"))
    headers = {name.lower() for name in (error.value.headers or {})}
    assert "retry-after" not in headers
    assert [e["metadata"]["name"] for e in server.events()] == ["e0", "e1", "e2"]
    assert [r.status for r in server.requests] == [201, 201, 201, 429]
    assert server.requests[-1].reason == "TooManyRequests"


def test_namespace_buckets_are_per_namespace(clock):
    """A namespace that used its burst does not hold back another namespace."""
    config = limits(("Namespace", 1, 2))
    with serve(clock, config, namespaces=["shop"]) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert [create(core, f"e{i}") for i in range(3)] == [201, 201, 429]
        assert [create(core, f"s{i}", "shop") for i in range(3)] == [201, 201, 429]


def test_server_limit_is_one_bucket_for_every_namespace(clock):
    """Server: one bucket for all writes; its key is empty ("for key " ends the message)."""
    config = limits(("Server", 1, 2))
    with serve(clock, config, namespaces=["shop"]) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert [create(core, "e1"), create(core, "s1", "shop")] == [201, 201]
        with pytest.raises(ApiException) as error:
            core.create_namespaced_event("shop", event("s2", "shop"))
    assert status(error)["message"] == "Too many requests: " + (
        "limit reached on type Server for key "
    )


def test_source_and_object_key_is_source_and_involved_object_run_together(clock):
    """SourceAndObject: one bucket per source component+host and involved object
    kind+namespace+name+uid+apiVersion, concatenated without separators; another object or
    another host has a bucket of its own, another reason or message does not."""
    with serve(clock, limits(("SourceAndObject", 1, 2))) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert create(core, "a1") == 201
        assert create(core, "a2", reason="Failed", message="another message") == 201
        with pytest.raises(ApiException) as error:
            core.create_namespaced_event("default", event("a3"))
        other_pod = {"kind": "Pod", "name": "db", "namespace": "default", "uid": "u-2"}
        assert create(core, "b1", involvedObject=other_pod) == 201
        assert create(core, "c1", source={"component": "kubelet", "host": "node-2"}) == 201
    assert status(error)["message"] == refusal("SourceAndObject", "kubeletnode-1Poddefaultwebu-1v1")


def test_user_key_is_the_client_certificates_common_name(clock):
    """User: a bucket per authenticated user; a client certificate's user is its CN."""
    with serve(clock, limits(("User", 1, 1)), tls=True, client_certificates=True) as server:
        alice = server.client_certificate("alice")
        bob = server.client_certificate("bob")
        with (
            server.api_client(client_certificate=alice) as as_alice,
            server.api_client(client_certificate=bob) as as_bob,
        ):
            core_alice, core_bob = client.CoreV1Api(as_alice), client.CoreV1Api(as_bob)
            assert [create(core_alice, "a1"), create(core_bob, "b1")] == [201, 201]
            with pytest.raises(ApiException) as error:
                core_alice.create_namespaced_event("default", event("a2"))
            assert create(core_bob, "b2") == 429
    assert status(error)["message"] == refusal("User", "alice")


@pytest.mark.parametrize(
    ("options", "user"),
    [({}, "system:anonymous"), ({"token": "s3cret"}, "local-admin")],
    ids=["anonymous", "token"],
)
def test_user_key_without_certificates(clock, options, user):
    """Without credentials the user is system:anonymous; the server's token is local-admin."""
    with serve(clock, limits(("User", 1, 1)), **options) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert create(core, "e1") == 201
        with pytest.raises(ApiException) as error:
            core.create_namespaced_event("default", event("e2"))
    assert status(error)["message"] == refusal("User", user)


# -- refill ---------------------------------------------------------------------------------


def test_buckets_refill_at_qps_on_the_servers_monotonic_clock(clock):
    """qps 2 burst 2: empty after two; half a second of the clock gives one more, a wall
    clock jump gives none, a long pause refills only up to the burst."""
    with serve(clock, limits(("Namespace", 2, 2))) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert [create(core, "a"), create(core, "b"), create(core, "c")] == [201, 201, 429]
        clock.step(0.49)
        assert create(core, "d") == 429
        clock.step(0.01)
        assert [create(core, "e"), create(core, "f")] == [201, 429]
        clock.step_wall(3600)  # NTP moved the wall clock: durations are monotonic
        assert create(core, "g") == 429
        clock.step(3600)
        assert [create(core, f"h{i}") for i in range(3)] == [201, 201, 429]


def test_a_refused_write_costs_no_tokens_of_its_refusing_bucket(clock):
    """A refused write leaves its bucket as it was: the refill is not set back."""
    with serve(clock, limits(("Namespace", 1, 1))) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert create(core, "a") == 201
        clock.step(0.5)
        assert create(core, "b") == 429
        clock.step(0.5)
        assert create(core, "c") == 201


# -- every enforcer charged ----------------------------------------------------------------


def test_every_limit_is_charged_even_when_another_refuses(clock):
    """Server burst 4 and Namespace burst 1: the two writes the Namespace limit refuses in
    ``a`` still take Server tokens, so the fifth write (in ``c``) meets the Server limit."""
    config = limits(("Server", 1, 4), ("Namespace", 1, 1))
    with serve(clock, config, namespaces=["a", "b", "c"]) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert [create(core, f"a{i}", "a") for i in range(3)] == [201, 429, 429]
        assert create(core, "b0", "b") == 201
        with pytest.raises(ApiException) as error:
            core.create_namespaced_event("c", event("c0", "c"))
        assert status(error)["message"] == refusal("Server", "")
        with pytest.raises(ApiException) as both:
            core.create_namespaced_event("a", event("a3", "a"))
    assert status(both)["message"] == (
        "Too many requests: [limit reached on type Server for key , "
        "limit reached on type Namespace for key a]"
    )


# -- which writes count ---------------------------------------------------------------------


def test_patch_and_put_are_updates_and_are_charged(clock):
    """A count patch and a PUT each take a token; reads and deletes take none."""
    with serve(clock, limits(("Namespace", 1, 3))) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert create(core, "e1") == 201
        core.patch_namespaced_event("e1", "default", {"count": 2})
        stored = core.read_namespaced_event("e1", "default")
        core.list_namespaced_event("default")
        stored.count = 3
        core.replace_namespaced_event("e1", "default", stored)
        with pytest.raises(ApiException) as error:
            core.patch_namespaced_event("e1", "default", {"count": 4})
        assert error.value.status == 429
        core.delete_namespaced_event("e1", "default")
    assert [(r.method, r.status) for r in server.requests] == [
        ("POST", 201),
        ("PATCH", 200),
        ("GET", 200),
        ("GET", 200),
        ("PUT", 200),
        ("PATCH", 429),
        ("DELETE", 200),
    ]


def test_events_k8s_io_writes_are_not_limited(clock):
    """The plugin compares the request's kind with core's Event: events.k8s.io/v1 Events
    (kind events.k8s.io/Event) are neither refused nor charged."""
    v1_event: Any = {
        "metadata": {"name": "v1-0"},
        "eventTime": T0.replace(microsecond=1),
        "reportingController": "example.com/ctl",
        "reportingInstance": "ctl-1",
        "action": "Pull",
        "reason": "BackOff",
        "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
        "type": "Warning",
    }
    with serve(clock, limits(("Server", 1, 1))) as server, server.api_client() as api:
        core, events = client.CoreV1Api(api), client.EventsV1Api(api)
        for i in range(3):
            body: Any = {**v1_event, "metadata": {"name": f"v{i}"}}
            events.create_namespaced_event("default", body)
        assert [create(core, "e1"), create(core, "e2")] == [201, 429]
        events.patch_namespaced_event("v0", "default", {"series": None})


def test_writes_refused_before_admission_are_not_charged(clock):
    """An invalid event (422), a missing namespace (404), a stale resourceVersion (409
    Conflict) and a dry run never reach the plugin; an AlreadyExists (409) does."""
    with serve(clock, limits(("Server", 1, 2))) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert create(core, "e1") == 201
        assert create(core, "bad", involvedObject={"kind": "Pod", "namespace": "other"}) == 422
        assert create(core, "e2", "nowhere") == 404
        with pytest.raises(ApiException) as stale:
            core.patch_namespaced_event(
                "e1", "default", {"metadata": {"resourceVersion": "1"}, "count": 2}
            )
        assert stale.value.status == 409
        core.create_namespaced_event("default", event("dry"), dry_run="All")
        assert create(core, "e1") == 409  # AlreadyExists: charged, the bucket is now empty
        assert create(core, "e3") == 429


# -- the LRU of keys -------------------------------------------------------------------------


def test_an_evicted_key_comes_back_with_a_full_bucket(clock):
    """cacheSize 2: a third namespace evicts the least recently used one, whose bucket is
    new (full) when it comes back; a namespace used recently stays and stays empty."""
    config = limits(("Namespace", 1, 1), cacheSize=2)
    with serve(clock, config, namespaces=["a", "b", "c"]) as server, server.api_client() as api:
        core = client.CoreV1Api(api)
        assert [create(core, "a1", "a"), create(core, "a2", "a")] == [201, 429]
        assert create(core, "b1", "b") == 201
        assert create(core, "a3", "a") == 429  # ``a`` is now the most recently used
        assert create(core, "c1", "c") == 201  # evicts ``b``
        assert create(core, "a4", "a") == 429  # ``a`` kept its empty bucket
        assert create(core, "b2", "b") == 201  # ``b`` came back full (and evicted ``c``)
        assert create(core, "c2", "c") == 201  # so did ``c`` (evicting ``a``)
        assert create(core, "a5", "a") == 201  # and ``a``


def test_cache_size_defaults_to_4096_keys(clock):
    """Without cacheSize, 4096 namespaces keep their buckets; the 4097th evicts the first."""
    from k8s_logging_events.testing.apiserver._admission import EventRateLimit, WriteAttributes

    plugin = EventRateLimit(limits(("Namespace", 1, 1)), clock.monotonic)

    def write(namespace: str) -> bool:
        try:
            plugin.validate(WriteAttributes("", namespace, "u", {}, False))
        except Exception:
            return False
        return True

    assert all(write(f"ns-{i}") for i in range(4096))
    assert write("ns-0") is False
    assert write("ns-4096") is True  # evicts ns-1, the least recently used
    assert write("ns-1") is True
    assert write("ns-0") is False


# -- a fleet ---------------------------------------------------------------------------------


def test_a_fleet_sharing_one_user_gets_every_occurrence_counted(clock):
    """The example of docs/local-apiserver.md: twenty handlers sharing one User bucket meet
    429s, and every occurrence ends up counted on the server."""
    limit = {"limits": [{"type": "User", "qps": 5, "burst": 20}]}
    loggers = []
    with LocalApiServer(clock=clock, event_rate_limit=limit) as server:
        fleet = [
            KubernetesEventHandler(
                sink=server.url, component="shop", host=f"node-{i}", clock=clock, sleep=clock.sleep
            )
            for i in range(20)
        ]
        try:
            for i, handler in enumerate(fleet):
                logger = logging.getLogger(f"test.ratelimit.replica-{i}")
                logger.propagate = False
                logger.addHandler(handler)
                loggers.append(logger)
                pod = {
                    "kind": "Pod",
                    "namespace": "default",
                    "name": f"web-{i}",
                    "apiVersion": "v1",
                }
                for n in range(5):
                    logger.warning(
                        "cache unreachable", extra={"involved": pod, "reason": f"Cache{n}"}
                    )
            for handler in fleet:
                handler.flush()
        finally:
            for handler, logger in zip(fleet, loggers, strict=False):
                logger.removeHandler(handler)
                logger.propagate = True
            for handler in fleet:
                handler.close()
        refused = [r for r in server.requests if r.status == 429]
        assert refused
        assert sum(event["count"] for event in server.events()) == 100


# -- the configuration -------------------------------------------------------------------------


def test_the_plugins_own_file_with_its_header_is_accepted(clock):
    """apiVersion and kind, as in the plugin's documented file, are accepted and ignored."""
    config = {
        "apiVersion": "eventratelimit.admission.k8s.io/v1alpha1",
        "kind": "Configuration",
        "limits": [
            {"type": "Namespace", "qps": 50, "burst": 100, "cacheSize": 2000},
            {"type": "User", "qps": 10, "burst": 50},
        ],
    }
    with serve(clock, config) as server, server.api_client() as api:
        assert create(client.CoreV1Api(api), "e1") == 201


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "limits: Invalid value: null: must not be empty"),
        ({"limits": []}, "limits: Invalid value: []: must not be empty"),
        (
            {"limits": [{"type": "Pod", "qps": 1, "burst": 1}]},
            'limits[0].type: Unsupported value: "Pod": supported values: '
            '"Namespace", "Server", "SourceAndObject", "User"',
        ),
        (
            {"limits": [{"type": "Namespace", "burst": 5}]},
            "limits[0].qps: Invalid value: 0: must be positive",
        ),
        (
            {"limits": [{"type": "Namespace", "qps": 5}]},
            "limits[0].burst: Invalid value: 0: must be positive",
        ),
        (
            {"limits": [{"type": "User", "qps": 5, "burst": 5, "cacheSize": -1}]},
            "limits[0].cacheSize: Invalid value: -1: must not be negative",
        ),
        (
            {"limits": [{"type": "Server", "qps": -1, "burst": 0}]},
            "[limits[0].burst: Invalid value: 0: must be positive, "
            "limits[0].qps: Invalid value: -1: must be positive]",
        ),
        ({"limits": [{"type": "Server", "qps": 0.5, "burst": 1}]}, "must be a whole number"),
        ({"limits": [{"type": "Server", "qps": "5", "burst": 1}]}, "must be a whole number"),
        ({"limits": [{"type": "Server", "QPS": 5, "burst": 1}]}, "unknown field 'QPS'"),
        ({"limit": []}, "unknown field 'limit'"),
        ({"limits": {"type": "Server"}}, "limits must be a list"),
        ({"limits": ["Server"]}, "limits[0] must be a mapping"),
    ],
)
def test_invalid_configurations_are_refused_as_the_plugin_refuses_them(config, message):
    """The plugin's validation: qps and burst required and positive, a known type, a
    cacheSize not negative; problems listed together; whole numbers only (int32 fields)."""
    with pytest.raises(ValueError, match="invalid EventRateLimit configuration") as error:
        LocalApiServer(event_rate_limit=config)
    assert message in str(error.value)


def test_a_server_limit_ignores_a_negative_cache_size():
    """cacheSize is checked only for the keyed types, as in the plugin."""
    LocalApiServer(
        event_rate_limit={"limits": [{"type": "Server", "qps": 1, "burst": 1, "cacheSize": -5}]}
    )


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["inline", "yaml", "admission-configuration"])
def test_cli_enforces_the_limit_from_inline_json_or_a_file(tmp_path, form):
    """``apiserver --event-rate-limit`` takes inline JSON, the plugin's YAML file, or an
    AdmissionConfiguration that points at it, and enforces it."""
    plugin_yaml = (
        "apiVersion: eventratelimit.admission.k8s.io/v1alpha1\n"
        "kind: Configuration\n"
        "limits:\n"
        "- type: Server\n"
        "  qps: 1\n"
        "  burst: 1\n"
    )
    (tmp_path / "erl.yaml").write_text(plugin_yaml)
    (tmp_path / "admission.yaml").write_text(
        "apiVersion: apiserver.config.k8s.io/v1\n"
        "kind: AdmissionConfiguration\n"
        "plugins:\n"
        "- name: EventRateLimit\n"
        "  path: erl.yaml\n"
    )
    value = {
        "inline": '{"limits": [{"type": "Server", "qps": 1, "burst": 1}]}',
        "yaml": str(tmp_path / "erl.yaml"),
        "admission-configuration": str(tmp_path / "admission.yaml"),
    }[form]
    with apiserver_command("--port", "0", "--event-rate-limit", value) as command:
        assert command.readline().strip() == "EventRateLimit: Server 1/s burst 1"
        configuration = client.Configuration(host=command.url)
        configuration.retries = False
        with client.ApiClient(configuration) as api:
            core = client.CoreV1Api(api)
            assert [create(core, "e1"), create(core, "e2")] == [201, 429]


def test_cli_refuses_an_invalid_limit_with_the_plugins_reason():
    """An invalid configuration ends the command at once with exit code 2 and the reason."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "k8s_logging_events",
            "apiserver",
            "--event-rate-limit",
            '{"limits": [{"type": "Server", "qps": 0, "burst": 1}]}',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "limits[0].qps: Invalid value: 0: must be positive" in result.stderr
