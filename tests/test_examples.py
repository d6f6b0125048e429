"""Every example under ``examples/`` runs as documented; each is run here.

The Python examples are imported from their files and their ``main()`` is called against the
``k8s_apiserver`` fixture (the quick start also runs as a script with its own server); the
pytest example runs in a pytest of its own; the YAML files are loaded and checked.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import logging
import logging.config
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
import yaml
from kubernetes import client

from k8s_logging_events import CorrelatorOptions, KubernetesEventHandler, _cli, _options
from k8s_logging_events.testing import LocalApiServer
from tests._recipes import recipe, recipes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SERVER_ENV = "EVENTS_API_SERVER"


def _load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a private module name."""
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_script(name: str) -> subprocess.CompletedProcess[str]:
    """Run ``python examples/<name>.py`` (no arguments); it must succeed."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done


def _counts(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    """(object name, type, reason) -> count, for the events a server stores."""
    return {
        (e["involvedObject"]["name"], e["type"], e["reason"]): e.get("count", 1) for e in events
    }


@pytest.fixture(autouse=True)
def _no_server_from_the_environment(monkeypatch) -> None:
    """The examples must not pick up a server URL from the developer's environment."""
    monkeypatch.delenv(SERVER_ENV, raising=False)


class TestQuickstart:
    """examples/quickstart.py."""

    def test_writes_one_counted_event(self, k8s_apiserver, capsys) -> None:
        """Three warnings are one BackOff event with count 3, printed like kubectl does."""
        _load("quickstart").main(k8s_apiserver.url)

        assert _counts(k8s_apiserver.events("default")) == {("web-0", "Warning", "BackOff"): 3}
        out = capsys.readouterr().out
        assert "BackOff" in out
        assert "(x3 over" in out

    def test_takes_the_server_from_the_environment(self, k8s_apiserver, monkeypatch) -> None:
        """$EVENTS_API_SERVER names the server when no argument does."""
        monkeypatch.setenv(SERVER_ENV, k8s_apiserver.url)
        _load("quickstart").main()

        assert len(k8s_apiserver.events("default")) == 1

    def test_runs_as_a_script_with_its_own_server(self) -> None:
        """``python examples/quickstart.py`` starts a local server when given none."""
        done = _run_script("quickstart")
        assert "(x3 over" in done.stdout
        assert "Back-off pulling image busybox" in done.stdout


class TestLoggingYaml:
    """examples/logging.yaml, the demo's configuration."""

    @pytest.fixture
    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / "logging.yaml").read_text())
        return loaded

    def test_an_event_arrives(self, config, k8s_apiserver, capsys) -> None:
        """dictConfig from the file, its sink pointed at the local server (as the demo does):
        a record with ``involved`` becomes an event; the console prints the records too."""
        config["handlers"]["events"]["sink"] = k8s_apiserver.url
        logging.config.dictConfig(config)
        (handler,) = [
            h for h in logging.getLogger().handlers if isinstance(h, KubernetesEventHandler)
        ]
        pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default"}}
        try:
            logging.getLogger("app").info("Synced", extra={"involved": pod, "reason": "Synced"})
            logging.getLogger("app").info("no object: no event")
            handler.flush()
        finally:
            handler.close()

        (event,) = k8s_apiserver.events("default")
        assert (event["type"], event["reason"], event["message"]) == ("Normal", "Synced", "Synced")
        assert event["source"]["component"] == "demo-controller"
        err = capsys.readouterr().err
        assert "INFO    app: Synced" in err
        assert "INFO    app: no object: no event" in err

    def test_the_spelled_out_options_are_the_defaults(self, config) -> None:
        """The file says 'the rest are the defaults': they are."""
        options = dict(config["handlers"]["events"])
        for key in ("class", "level", "formatter", "component", "sink", "correlator"):
            options.pop(key)
        parameters = inspect.signature(KubernetesEventHandler).parameters
        assert {key: parameters[key].default for key in options} == options

    def test_the_library_logger_stays_enabled(self, config) -> None:
        """Reports of drops and failures on k8s_logging_events are not silenced."""
        assert config["disable_existing_loggers"] is False


class TestController:
    """examples/controller.py: the kubernetes client and EventLoggerAdapter."""

    def test_reconciles_v1pod_models(self, k8s_apiserver, capsys) -> None:
        """Each resync adds one occurrence per pod; the V1Pod models are the involved objects."""
        controller = _load("controller")
        controller.add_example_pods(k8s_apiserver, "default")
        controller.main(k8s_apiserver.url, resyncs=3)

        events = k8s_apiserver.events("default")
        assert _counts(events) == {
            ("web-1", "Warning", "ImagePullBackOff"): 3,
            ("web-2", "Normal", "Synced"): 3,
        }
        for event in events:
            involved = event["involvedObject"]
            assert (involved["kind"], involved["apiVersion"]) == ("Pod", "v1")
            assert involved["uid"].startswith("9b7c1d52-")
            assert event["action"] == "Reconcile"
        assert "Name:  web-1" in capsys.readouterr().out

    def test_lists_pods_where_the_server_has_them(self, monkeypatch) -> None:
        """Pods come from list_namespaced_pod when the server serves Pods."""
        controller = _load("controller")
        listed = [client.V1Pod(metadata=client.V1ObjectMeta(name="web-1"))]

        class Core:
            def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
                assert (namespace, label_selector) == ("default", "app=example")
                return type("V1PodList", (), {"items": listed})()

        assert controller.list_pods(Core(), "default") == listed


class TestAsyncio:
    """examples/asyncio_app.py: logging from coroutines."""

    def test_coroutines_log_events(self, k8s_apiserver, capsys) -> None:
        """Three jobs followed concurrently; each retry is counted on its job's event."""
        _load("asyncio_app").main(k8s_apiserver.url)

        counts = _counts(k8s_apiserver.events("default"))
        assert counts == {
            **{(job, "Normal", "Started"): 1 for job in ("nightly-report", "resize-images")},
            **{(job, "Normal", "Completed"): 1 for job in ("nightly-report", "resize-images")},
            ("sync-catalog", "Normal", "Started"): 1,
            ("sync-catalog", "Normal", "Completed"): 1,
            ("resize-images", "Warning", "BackOff"): 2,
            ("sync-catalog", "Warning", "BackOff"): 5,
        }
        assert "(x5 over" in capsys.readouterr().out


class TestMetrics:
    """examples/metrics.py: the counters on a prometheus_client endpoint."""

    def test_the_endpoint_shows_the_counts(self, k8s_apiserver, capsys) -> None:
        """Three warnings: accepted 3, one create and two repeats, nothing failed; the
        default registry is left as it was."""
        import prometheus_client

        text = _load("metrics").main(k8s_apiserver.url)

        labels = '{component="shop-operator"'
        samples = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if not line.startswith("#")
        }
        assert samples[f"k8s_logging_events_accepted_total{labels}}}"] == 3
        outcomes = {
            outcome: samples[f'k8s_logging_events_occurrences_total{labels},outcome="{outcome}"}}']
            for outcome in ("created", "patched", "coalesced", "failed", "dropped")
        }
        assert outcomes["created"] == 1
        assert outcomes["patched"] + outcomes["coalesced"] == 2
        assert outcomes["failed"] == outcomes["dropped"] == 0
        assert text in capsys.readouterr().out
        (event,) = k8s_apiserver.events("default")
        assert event["count"] == 3
        scraped = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
        assert "k8s_logging_events_" not in scraped

    def test_runs_as_a_script_with_its_own_server(self) -> None:
        """``python examples/metrics.py`` starts a local server when given none."""
        done = _run_script("metrics")
        assert 'k8s_logging_events_accepted_total{component="shop-operator"} 3.0' in done.stdout


class TestPytestExample:
    """examples/test_with_fixtures.py, run by a pytest of its own."""

    def test_passes(self) -> None:
        """All its tests pass with the plugin's fixtures."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                str(EXAMPLES / "test_with_fixtures.py"),
                "-p",
                "no:cacheprovider",
                "-p",  # Hypothesis's plugin, which the example does not use, is slow to import
                "no:hypothesispytest",
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "6 passed" in done.stdout

    def test_is_not_collected_by_the_main_suite(self, pytestconfig) -> None:
        """testpaths keeps the main suite to tests/, so the example is not run twice."""
        assert pytestconfig.getini("testpaths") == ["tests"]


class TestDeployment:
    """examples/deployment.yaml: the Downward API variables and RBAC of default_involved: pod."""

    def test_the_downward_api_names_the_pod_and_the_role_allows_the_uid_read(self) -> None:
        docs = {
            doc["kind"]: doc
            for doc in yaml.safe_load_all((EXAMPLES / "deployment.yaml").read_text())
            if doc
        }
        assert set(docs) == {"ServiceAccount", "Role", "RoleBinding", "Deployment"}
        spec = docs["Deployment"]["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
        (container,) = spec["containers"]
        fields = {
            env["name"]: env["valueFrom"]["fieldRef"]["fieldPath"]
            for env in container["env"]
            if "valueFrom" in env
        }
        assert fields == {
            "POD_NAME": "metadata.name",
            "POD_NAMESPACE": "metadata.namespace",
            "POD_UID": "metadata.uid",
            "NODE_NAME": "spec.nodeName",
        }
        assert docs["Role"]["rules"] == [
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "get"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        ]
        assert docs["RoleBinding"]["roleRef"]["name"] == docs["Role"]["metadata"]["name"]


class TestRbac:
    """examples/rbac.yaml: the least RBAC the sink needs."""

    RULES: ClassVar[list[dict[str, list[str]]]] = [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "get"]},
        {
            "apiGroups": ["events.k8s.io"],
            "resources": ["events"],
            "verbs": ["create", "patch", "get"],
        },
    ]

    @staticmethod
    def _by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {doc["kind"]: doc for doc in documents if doc}

    def test_a_role_with_create_patch_and_get_on_events(self) -> None:
        """ServiceAccount, Role and RoleBinding, in one namespace, tied together."""
        text = (EXAMPLES / "rbac.yaml").read_text()
        docs = self._by_kind(list(yaml.safe_load_all(text)))

        assert set(docs) == {"ServiceAccount", "Role", "RoleBinding"}
        account, role, binding = docs["ServiceAccount"], docs["Role"], docs["RoleBinding"]
        assert role["rules"] == self.RULES
        namespace = account["metadata"]["namespace"]
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
        ]

    def test_the_commented_cluster_variant(self) -> None:
        """The ClusterRole variant in the comments parses and grants the same rules."""
        text = (EXAMPLES / "rbac.yaml").read_text()
        block = text.split("# BEGIN CLUSTER VARIANT\n", 1)[1].split("# END CLUSTER VARIANT", 1)[0]
        uncommented = "\n".join(line[2:] for line in block.splitlines())
        docs = self._by_kind(list(yaml.safe_load_all(uncommented)))

        assert set(docs) == {"ClusterRole", "ClusterRoleBinding"}
        assert docs["ClusterRole"]["rules"] == self.RULES
        assert docs["ClusterRoleBinding"]["roleRef"]["kind"] == "ClusterRole"

    @pytest.mark.parametrize("api", ["v1", "events.k8s.io/v1", "auto"])
    def test_the_sink_uses_no_other_verb(self, k8s_apiserver, api) -> None:
        """Creates, patches and gets on events of either API are all the handler ever sends
        (first try, retry, repeats, an event a previous run wrote), besides the discovery
        read of ``api="auto"``."""
        k8s_apiserver.inject(method="POST", times=1, status=503)
        handler = KubernetesEventHandler(sink=k8s_apiserver.url, sleep_duration=0, api=api)
        log = logging.getLogger("rbac-check")
        log.propagate = False  # keep the test's own report short
        log.addHandler(handler)
        pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default"}}
        try:
            for repeats in (1, 29):  # a first occurrence, then a burst beyond the spam filter
                for _ in range(repeats):
                    log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
                handler.flush()
        finally:
            log.removeHandler(handler)
            handler.close()
        restarted = KubernetesEventHandler(sink=k8s_apiserver.url, sleep_duration=0, api=api)
        log.addHandler(restarted)
        try:  # the same process started again: it reads the event to continue its count
            log.warning("Back-off", extra={"involved": pod, "reason": "BackOff"})
        finally:
            log.removeHandler(restarted)
            restarted.close()

        verbs = {"POST": "create", "PATCH": "patch", "GET": "get"}
        granted = {(rule["apiGroups"][0], verb) for rule in self.RULES for verb in rule["verbs"]}
        used = set()
        for request in k8s_apiserver.requests:
            if not request.path.endswith("/events") and "/events/" not in request.path:
                assert (request.method, request.path) == ("GET", "/apis/events.k8s.io/v1")
                continue  # discovery: a non-resource URL every authenticated user may read
            group = "events.k8s.io" if request.path.startswith("/apis/events.k8s.io/") else ""
            used.add((group, verbs.get(request.method, request.method)))
        assert used <= granted
        assert {verb for _, verb in used} == {"create", "patch", "get"}
        assert handler.stats()["failed"] == restarted.stats()["failed"] == 0


def test_the_examples_accept_a_server() -> None:
    """Every Python example (but the pytest one) takes a server URL, argument or variable."""
    for name in ("quickstart", "controller", "asyncio_app", "metrics"):
        module = _load(name)
        assert module.SERVER_ENV == SERVER_ENV
        assert "server" in inspect.signature(module.main).parameters


def test_a_local_server_is_what_the_examples_start(monkeypatch) -> None:
    """Without a URL the examples start a LocalApiServer (and stop it)."""
    started: list[LocalApiServer] = []

    class Recording(LocalApiServer):
        def start(self) -> Any:
            started.append(self)
            return super().start()

    module = _load("asyncio_app")
    monkeypatch.setattr(module, "LocalApiServer", Recording)
    module.main()

    assert len(started) == 1
    assert not started[0].running


class TestDocumentedConfigurations:
    """The YAML shown in the README and the quick start works as shown."""

    @staticmethod
    def _yaml_blocks(path: Path) -> list[Any]:
        blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(), re.DOTALL)
        return [yaml.safe_load(block) for block in blocks]

    @staticmethod
    def _is_part_of(part: Any, whole: Any) -> bool:
        if isinstance(part, dict):
            return isinstance(whole, dict) and all(
                key in whole and TestDocumentedConfigurations._is_part_of(value, whole[key])
                for key, value in part.items()
            )
        return bool(part == whole)

    def test_the_quick_start_shows_part_of_logging_yaml(self) -> None:
        """docs/quickstart.md cuts examples/logging.yaml down without changing it."""
        (config,) = self._yaml_blocks(ROOT / "docs" / "quickstart.md")
        example = yaml.safe_load((EXAMPLES / "logging.yaml").read_text())
        assert self._is_part_of(config, example)

    def test_the_readme_configuration_makes_events(self, k8s_apiserver) -> None:
        """The README's dictConfig YAML, pointed at the local server, records an event."""
        (config,) = self._yaml_blocks(ROOT / "README.md")
        config["handlers"]["events"]["sink"] = k8s_apiserver.url
        logging.config.dictConfig(config)
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler, KubernetesEventHandler)
        pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default"}}
        try:
            logging.getLogger("billing").info("Synced", extra={"involved": pod})
            handler.flush()
        finally:
            handler.close()

        (event,) = k8s_apiserver.events("default")
        assert (event["reason"], event["source"]["component"]) == ("Logging", "billing-controller")


class TestDocumentedSnippets:
    """The tagged code blocks of docs/quickstart.md and docs/configuration.md do what the
    text around them says."""

    QUICKSTART = ROOT / "docs" / "quickstart.md"
    CONFIGURATION = ROOT / "docs" / "configuration.md"
    TESTING = ROOT / "docs" / "testing.md"
    POD: ClassVar[dict[str, Any]] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default"},
    }

    def test_the_quick_starts_local_server_prints_the_counted_event(self) -> None:
        """The snippet runs as a program and prints one BackOff event counted three times
        (the namespace it logs into exists on its server)."""
        done = subprocess.run(
            [sys.executable, "-c", recipe("local-server", doc=self.QUICKSTART)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        (row,) = [line for line in done.stdout.splitlines() if "BackOff" in line]
        assert "(x3 over" in row
        assert row.endswith("billing-controller  Back-off pulling image shop:2.1")
        assert done.stderr == ""  # no write was refused

    def _info_events(self, name: str, server: LocalApiServer) -> int:
        """Apply recipe ``name`` (its sink at ``server``) in a fresh process's logging state,
        log one INFO record about a pod, and return how many events the server stores."""
        logging.getLogger().setLevel(logging.WARNING)  # what a new process starts with
        logging.config.dictConfig(yaml.safe_load(recipe(name, server.url, self.CONFIGURATION)))
        (handler,) = [
            h for h in logging.getLogger().handlers if isinstance(h, KubernetesEventHandler)
        ]
        try:
            logging.getLogger("shop").info("Pulled image", extra={"involved": self.POD})
            assert handler.drain(10)
        finally:
            handler.close()
        return len(server.events("default"))

    def test_an_info_event_needs_the_logger_at_info(self, k8s_apiserver) -> None:
        """'Levels': with the handler at INFO and the root left at WARNING, an INFO record
        makes no event; with the root at INFO it does."""
        assert self._info_events("levels-mistake", k8s_apiserver) == 0
        assert self._info_events("levels-fixed", k8s_apiserver) == 1

    def test_the_handler_is_found_by_its_name(self) -> None:
        """'Getting the handler that dictConfig built': the snippet finds the handler named
        ``events`` (getHandlerByName on 3.12+, the root's handlers on 3.11)."""
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "console": {"class": "logging.NullHandler"},
                    "events": {
                        "class": "k8s_logging_events.handler.KubernetesEventHandler",
                        "sink": None,
                    },
                },
                "root": {"handlers": ["console", "events"]},
            }
        )
        namespace: dict[str, Any] = {}
        exec(recipe("handler-by-name", doc=self.CONFIGURATION), namespace)
        found = namespace["handler"]
        try:
            assert isinstance(found, KubernetesEventHandler)
            assert found in logging.getLogger().handlers
        finally:
            found.close()

    def test_the_testing_pages_blocks_pass_as_one_test_module(self, tmp_path: Path) -> None:
        """docs/testing.md's tagged blocks, in the page's order, make one test module that
        pytest passes with the plugin's fixtures alone (later blocks use the first block's
        names, and ``pytest``, which a later block imports)."""
        blocks = [code for _, code in recipes(self.TESTING).values()]
        module = tmp_path / "test_testing_page.py"
        module.write_text("import pytest\n\n" + "\n\n".join(blocks))
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module.name],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        tests = sum(len(re.findall(r"^def test_", code, re.MULTILINE)) for code in blocks)
        assert tests >= 7, blocks
        assert re.search(rf"^{tests} passed in ", done.stdout, re.MULTILINE), (
            done.stdout + done.stderr
        )


DOCS = ROOT / "docs"


class TestConfigurationReference:
    """docs/configuration.md lists every option of the handler and of LocalApiServer with its
    default, and every counter of stats(), as the code has them."""

    DOC = ROOT / "docs" / "configuration.md"
    _ROW = re.compile(r"^\| ((?:`\w+`(?:, )?)+) \| ([^|]*) \|", re.MULTILINE)

    def _table(self, heading: str) -> dict[str, str]:
        """name -> default cell of the first table under ``## heading``."""
        text = self.DOC.read_text()
        start = text.index(f"\n## {heading}\n")
        end = text.find("\n## ", start + 1)
        rows: dict[str, str] = {}
        for names, cell in self._ROW.findall(text[start:end]):
            for name in re.findall(r"`(\w+)`", names):
                rows[name] = cell.strip()
        return rows

    @staticmethod
    def _documented(cell: str, read: Any) -> Any:
        """The first backticked value of a default cell, read by ``read``; ... for prose."""
        match = re.match(r"`([^`]+)`", cell)
        return read(match.group(1)) if match else ...

    @staticmethod
    def _defaults(signature: inspect.Signature) -> dict[str, Any]:
        return {
            name: parameter.default
            for name, parameter in signature.parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def test_every_handler_option_with_its_default(self) -> None:
        """The Options table names each keyword of KubernetesEventHandler once, and a
        default written as a value (YAML, as dictConfig reads it) is the signature's."""
        rows = self._table("Options")
        defaults = self._defaults(inspect.signature(KubernetesEventHandler))
        assert set(rows) == set(defaults)

        def read(text: str) -> Any:
            spelled = {"None": None, "NOTSET": logging.NOTSET}
            return spelled[text] if text in spelled else yaml.safe_load(text)

        documented = {name: self._documented(cell, read) for name, cell in rows.items()}
        written = {name: value for name, value in documented.items() if value is not ...}
        assert written == {name: defaults[name] for name in written}
        assert len(written) >= len(defaults) - 4  # only component, host, clock, sleep in prose

    def test_every_local_api_server_option_with_its_default(self) -> None:
        """The LocalApiServer table names each of its options with the signature's default."""
        rows = self._table("The local API server's options")
        defaults = self._defaults(inspect.signature(LocalApiServer))
        documented = {name: self._documented(cell, ast.literal_eval) for name, cell in rows.items()}
        assert documented == defaults

    def test_every_correlator_key_with_its_default(self) -> None:
        """The ``correlator`` row names each key the option takes, and each default it gives
        in parentheses (``burst_size`` (25), ``qps`` (1/300)) is the one a 0 resolves to."""
        row = next(
            line for line in self.DOC.read_text().splitlines() if line.startswith("| `correlator`")
        )
        assert [key for key in _options.CORRELATOR_KEYS if not re.search(f"`{key}[`:]", row)] == []
        resolved = CorrelatorOptions().resolved()
        stated = re.findall(r"`(\w+)` \((\d+)(?:/(\d+))?\)", row)
        assert len(stated) == 5
        for key, number, per in stated:
            assert getattr(resolved, key) == pytest.approx(int(number) / int(per or 1)), key

    def test_every_environment_variable_the_library_reads(self) -> None:
        """Each variable the package reads (``os.environ.get("NAME")``, or a named constant)
        is named somewhere in docs/ or the README: one read nowhere said is a setting no
        user can find."""
        read = {_options.COMPONENT_ENV, "NODE_NAME"}  # named by a constant, read in a loop
        for path in (ROOT / "k8s_logging_events").rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get"
                    and "env" in ast.unparse(node.func.value)
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    read.add(str(node.args[0].value))
        docs = "".join(page.read_text() for page in [ROOT / "README.md", *DOCS.glob("*.md")])
        assert len(read) >= 9
        assert sorted(name for name in read if f"`{name}`" not in docs) == []

    @pytest.mark.parametrize("command", ["demo", "apiserver"])
    def test_every_command_line_flag(self, command: str) -> None:
        """Each flag of ``python -m k8s_logging_events COMMAND`` is named in a paragraph (or
        a command line) of docs/ or the README that names the command."""
        parser = _cli.build_parser()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        flags = {
            flag
            for action in commands.choices[command]._actions
            for flag in action.option_strings
            if flag not in ("-h", "--help")
        }
        docs = "".join(page.read_text() for page in [ROOT / "README.md", *DOCS.glob("*.md")])
        paragraphs = [text for text in docs.split("\n\n") if command in text]
        said = {flag for flag in flags for text in paragraphs if re.search(rf"{flag}\b", text)}
        assert sorted(flags - said) == []

    def test_every_counter(self) -> None:
        """The Counters table names every key of handler.stats()."""
        handler = KubernetesEventHandler(sink=None)
        try:
            assert set(self._table("Counters")) == set(handler.stats())
        finally:
            handler.close()
