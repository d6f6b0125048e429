"""The demo (``python -m k8s_logging_events demo``) end to end: its table matches the server."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s_logging_events import _cli, _demo
from k8s_logging_events.testing import LocalApiServer
from tests._ports import refused_url

# what the simulated controller logs, per pod prefix and reason
EXPECTED = {
    ("web", "Pulling"): 4,
    ("web", "Failed"): 4,
    ("web", "BackOff"): 12,
    ("orders-db-0", "Started"): 1,
    ("orders-db-0", "Unhealthy"): 12,
    ("cache", "FailedMount"): 60,
    ("cache", "Started"): 1,
}

_ROW = re.compile(r"^  (Normal|Warning)\s+(\S+)\s+(\S+(?: \(x(\d+) over \S+\))?)\s+(\S+)\s+(.*)$")


def _tables(output: str) -> dict[str, list[dict[str, Any]]]:
    """The Events rows printed under each ``Name:`` section, with their counts (the demo's
    own tables, before the ``kubectl describe pod`` it may print at the end)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    rows: list[dict[str, Any]] | None = None
    for line in output.split("\n$ kubectl describe pod", 1)[0].splitlines():
        if line.startswith("Name:"):
            rows = tables.setdefault(line.split()[1], [])
        elif not line.strip():
            rows = None
        elif rows is not None and (match := _ROW.match(line)):
            kind, reason, _, count, source, message = match.groups()
            rows.append(
                {
                    "type": kind,
                    "reason": reason,
                    "count": int(count or 1),
                    "from": source,
                    "message": message,
                }
            )
    return tables


def _counts(tables: dict[str, list[dict[str, Any]]]) -> Counter[tuple[str, str]]:
    """Sum of counts per (pod, reason)."""
    totals: Counter[tuple[str, str]] = Counter()
    for pod, rows in tables.items():
        for row in rows:
            totals[pod, row["reason"]] += row["count"]
    return totals


def _server_counts(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    totals: Counter[tuple[str, str]] = Counter()
    for event in events:
        totals[event["involvedObject"]["name"], event["reason"]] += event.get("count") or 1
    return totals


def _by_prefix(counts: Counter[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Key the counts by the pod name's prefix (the generated part of the name dropped)."""
    result: dict[tuple[str, str], int] = {}
    for (pod, reason), count in counts.items():
        prefix = pod if pod == "orders-db-0" else pod.split("-")[0]
        result[prefix, reason] = result.get((prefix, reason), 0) + count
    return result


def _stats(output: str) -> dict[str, int]:
    """The counters printed after ``handler.stats() after flush():``."""
    block = output.split("handler.stats() after flush():", 1)[1].split("\n\n", 1)[0]
    return {key: int(value) for key, value in re.findall(r"([a-z_]+) (\d+)", block)}


def _kubeconfig(tmp_path: Path, url: str) -> Path:
    """A kubeconfig whose current context is the server at ``url``, without credentials."""
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": url}}],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "nobody"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _fast_config(tmp_path: Path) -> Path:
    """examples/logging.yaml without the sink's client-side rate limit (qps 0)."""
    config = yaml.safe_load(_demo.DEFAULT_CONFIG.read_text())
    config["handlers"]["events"]["qps"] = 0
    path = tmp_path / "logging.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run_in_shop(
    server: LocalApiServer, tmp_path: Path, **options: Any
) -> tuple[_demo.DemoResult, str]:
    """Run the demo through ``--kubeconfig`` against ``server``, in namespace ``shop``, with
    ``options``: its result and what it printed."""
    out = io.StringIO()
    result = _demo.run(
        _demo.DemoOptions(
            kubeconfig=str(_kubeconfig(tmp_path, server.url)),
            namespace="shop",
            config=_fast_config(tmp_path),
            **options,
        ),
        out=out,
    )
    return result, out.getvalue()


class TestEndToEnd:
    """The demo's printed table, its counters and the server agree."""

    def test_the_cli_runs_the_demo_on_a_local_server(self, capsys, monkeypatch) -> None:
        """``demo`` with no cluster configured: exit 0, and every printed count adds up."""
        monkeypatch.delenv("KUBECONFIG", raising=False)

        assert _cli.main(["demo"]) == 0

        output = capsys.readouterr().out
        assert "a local Events API server at http://127.0.0.1:" in output
        tables = _tables(output)
        assert len(tables) == 3
        assert _by_prefix(_counts(tables)) == EXPECTED
        rows = [row for rows in tables.values() for row in rows]
        assert {row["from"] for row in rows} == {"demo-controller"}
        combined = [row for row in rows if row["message"].startswith("(combined from similar")]
        assert [(row["reason"], row["count"]) for row in combined] == [("Unhealthy", 3)]
        assert len([row for row in rows if row["reason"] == "Unhealthy"]) == 10
        stats = _stats(output)
        outcomes = ("created", "patched", "coalesced", "dropped", "failed")
        assert stats["accepted"] == sum(EXPECTED.values()) == sum(stats[k] for k in outcomes)
        assert stats["pending"] == stats["failed"] == stats["dropped"] == 0
        assert stats["created"] == len(rows)
        assert f"OK: the server counts all {sum(EXPECTED.values())} occurrences" in output

    def test_the_table_matches_what_the_server_stores(self, tmp_path) -> None:
        """Run through --kubeconfig against a server the test owns, then read it directly."""
        with LocalApiServer(namespaces=["shop"]) as server:
            result, output = _run_in_shop(server, tmp_path)
            stored = server.events("shop")

        assert result.ok
        assert f"the cluster at {server.url}" in output
        assert "events about pods that do not exist" in output
        assert _counts(_tables(output)) == _server_counts(stored)
        assert sum(event["count"] for event in stored) == result.stats["accepted"]
        assert {event["metadata"]["namespace"] for event in stored} == {"shop"}
        assert result.logged == result.stored
        assert result.seconds < 10

    def test_on_a_cluster_the_demo_closes_the_sink_it_made(self, tmp_path, monkeypatch) -> None:
        """Seen before the fix: the demo run through --kubeconfig closed its ApiClient but not
        the sink it built on it, whose own connection to the cluster stayed open (an unclosed
        socket's ResourceWarning). Every sink it makes is closed when it returns."""
        made: list[Any] = []

        def cluster_sink(*args: Any) -> Any:
            made.append(cluster_sink_before(*args))
            return made[-1]

        cluster_sink_before = _demo._cluster_sink
        monkeypatch.setattr(_demo, "_cluster_sink", cluster_sink)
        with LocalApiServer(namespaces=["shop"]) as server:
            result, _ = _run_in_shop(server, tmp_path)

        assert result.ok
        assert len(made) == 1
        assert made[0]._closed.is_set()
        assert made[0]._transport.idle_connections == 0

    def test_the_demo_writes_events_k8s_io_v1_series_with_exact_counts(self, tmp_path) -> None:
        """``--api events.k8s.io/v1``: one Event per reason, each series counts every occurrence."""
        with LocalApiServer(namespaces=["shop"]) as server:
            result, output = _run_in_shop(server, tmp_path, api="events.k8s.io/v1")
            stored = server.events_v1("shop")
            bad = [r for r in server.requests if r.status in (400, 422)]

        assert result.ok
        assert bad == []
        assert "events.k8s.io/v1 (series" in output
        assert result.logged == result.stored
        series_counts = sorted(
            (e["reason"], (e.get("series") or {}).get("count", 1)) for e in stored
        )
        assert ("FailedMount", 60) in series_counts
        assert ("Unhealthy", 12) in series_counts
        assert len(stored) == 7

    def test_kubeconfig_from_the_environment_and_local_overriding_it(
        self, tmp_path, monkeypatch
    ) -> None:
        """KUBECONFIG names the cluster; --local ignores it."""
        with LocalApiServer() as server:
            monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, server.url)))
            from_env = _demo.run(
                _demo.DemoOptions(config=_fast_config(tmp_path)), out=io.StringIO()
            )
            local = _demo.run(
                _demo.DemoOptions(local=True, config=_fast_config(tmp_path)), out=io.StringIO()
            )
            stored = server.events()

        assert from_env.ok
        assert from_env.target == server.url
        assert _server_counts(stored) == Counter(from_env.stored)
        assert local.ok
        assert local.target != server.url

    def test_of_several_kubeconfig_files_the_first_current_context_is_the_cluster(
        self, tmp_path, monkeypatch
    ) -> None:
        """KUBECONFIG lists two files that each name a current context: kubectl (and the
        sink's own client) use the first's, the demo used the last's (the Kubernetes client's
        rule): it wrote to another cluster than the one kubectl then showed."""
        with LocalApiServer() as first, LocalApiServer() as last:
            (tmp_path / "a").mkdir()
            (tmp_path / "b").mkdir()
            files = [_kubeconfig(tmp_path / "a", first.url), _kubeconfig(tmp_path / "b", last.url)]
            text = yaml.safe_load(files[1].read_text())
            for entry in ("clusters", "contexts"):
                text[entry][0]["name"] = "other"
            text["contexts"][0]["context"]["cluster"] = "other"
            text["current-context"] = "other"
            files[1].write_text(yaml.safe_dump(text))
            monkeypatch.setenv("KUBECONFIG", os.pathsep.join(map(str, files)))
            result = _demo.run(_demo.DemoOptions(config=_fast_config(tmp_path)), out=io.StringIO())
            assert result.ok
            assert result.target == first.url
            assert last.events() == []
            assert _server_counts(first.events()) == Counter(result.stored)


KUBECTL = shutil.which("kubectl")


def _kubectl_section(output: str) -> list[str]:
    """The lines kubectl printed, between the ``$ kubectl describe pod`` header and the end."""
    after = output.split("\n$ kubectl describe pod ", 1)[1]
    return after.split("\n", 2)[2].split("\nFinished in ", 1)[0].splitlines()


class TestPodsOnTheLocalServer:
    """On the local server the demo's pods are real, and kubectl describes one of them."""

    def test_the_events_are_about_pods_that_exist(self, tmp_path) -> None:
        """Real Pods (their kind, uid and status as the server stored them), and every event
        refers to its pod by that uid; the header says so."""
        out = io.StringIO()
        result = _demo.run(_demo.DemoOptions(local=True, config=_fast_config(tmp_path)), out=out)
        assert result.ok
        assert "Reconciling 3 pods, created on the local server (real Pod objects)," in (
            out.getvalue()
        )
        phases = {}
        for pod in result.pods:
            assert (pod["kind"], pod["apiVersion"]) == ("Pod", "v1")
            assert pod["spec"]["nodeName"] == "local-node"
            name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
            phases[name.split("-")[0]] = pod["status"]["phase"]
            assert result.events[name]
            assert {e["involvedObject"]["uid"] for e in result.events[name]} == {uid}
        assert phases == {"web": "Pending", "orders": "Running", "cache": "Running"}

    @pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on the PATH")
    def test_it_ends_with_kubectl_describe_pod_of_the_web_pod(self, tmp_path) -> None:
        """The last section is what ``kubectl describe pod`` printed for the web pod: its
        waiting container, and its events with their counts at the bottom."""
        out = io.StringIO()
        result = _demo.run(_demo.DemoOptions(local=True, config=_fast_config(tmp_path)), out=out)
        output = out.getvalue()
        web = result.pods[0]["metadata"]["name"]
        assert result.kubectl_command == f"kubectl describe pod {web} --namespace default"
        assert f"\n$ {result.kubectl_command}\n" in output
        lines = _kubectl_section(output)
        assert lines[0].split() == ["Name:", web]
        assert "Status:           Pending" in lines
        assert "      Reason:       ImagePullBackOff" in lines
        events = lines[next(i for i, line in enumerate(lines) if line.startswith("Events:")) :]
        # kubectl sorts by lastTimestamp, in whole seconds; within one second the server's
        # order stays, which is by name, and the handler's names are hashes, not times
        assert sorted(line.split()[:2] for line in events[3:]) == [
            ["Normal", "Pulling"],
            ["Warning", "BackOff"],
            ["Warning", "Failed"],
        ]
        (back_off,) = [line for line in events[3:] if line.split()[1] == "BackOff"]
        assert "(x12 over" in back_off
        assert output.rstrip().splitlines()[-1].startswith("Finished in ")

    def test_without_kubectl_one_line_says_it_was_skipped(self, tmp_path, monkeypatch) -> None:
        """No kubectl on the PATH: one line instead of the section, and the demo is OK."""
        monkeypatch.setenv("PATH", str(tmp_path))
        out = io.StringIO()
        result = _demo.run(_demo.DemoOptions(local=True, config=_fast_config(tmp_path)), out=out)
        assert result.ok
        assert result.kubectl_output is None
        skipped = [line for line in out.getvalue().splitlines() if "skipped" in line]
        assert skipped == [f"(kubectl is not installed: `{result.kubectl_command}` skipped.)"]

    def test_a_failing_kubectl_is_one_line_too(self, tmp_path, monkeypatch) -> None:
        """A kubectl that fails is reported in one line with its last error line."""
        fake = tmp_path / "kubectl"
        fake.write_text("#!/bin/sh\necho 'error: you must be logged in' >&2\nexit 1\n")
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", str(tmp_path))
        out = io.StringIO()
        result = _demo.run(_demo.DemoOptions(local=True, config=_fast_config(tmp_path)), out=out)
        assert result.ok
        assert (
            f"(kubectl failed (error: you must be logged in): `{result.kubectl_command}` skipped.)"
        ) in out.getvalue()

    def test_on_a_cluster_the_pods_are_simulated_and_kubectl_is_not_run(self, tmp_path) -> None:
        """Against a cluster the pods are manifest dicts; no kubectl section, no pods made."""
        with LocalApiServer() as server:
            out = io.StringIO()
            result = _demo.run(
                _demo.DemoOptions(
                    kubeconfig=str(_kubeconfig(tmp_path, server.url)),
                    config=_fast_config(tmp_path),
                ),
                out=out,
            )
            assert server.pods() == []
        assert result.kubectl_command is None
        assert "$ kubectl" not in out.getvalue()
        assert "kubectl is not installed" not in out.getvalue()
        assert "Reconciling 3 simulated pods" in out.getvalue()


class TestOutput:
    """What the demo prints besides the tables."""

    def test_the_console_shows_only_the_librarys_reports_unless_asked(
        self, tmp_path, capsys
    ) -> None:
        """The records go to the events; --show-logs lets the console print them too."""
        _demo.run(_demo.DemoOptions(local=True, config=_fast_config(tmp_path)), out=io.StringIO())
        quiet = capsys.readouterr().err
        _demo.run(
            _demo.DemoOptions(local=True, config=_fast_config(tmp_path), show_logs=True),
            out=io.StringIO(),
        )
        loud = capsys.readouterr().err

        assert "Back-off pulling image" not in quiet
        assert loud.count("Back-off pulling image") == EXPECTED["web", "BackOff"]

    def test_the_flush_line_names_the_rate_flush_drains_at(self, tmp_path) -> None:
        """flush() drains at drain_qps (100 requests/s by default), not at the 5 a second of
        normal running: the line that gives flush()'s time says so, with the configuration's
        numbers, and a sink the demo builds for a cluster drains at that rate too."""
        out = io.StringIO()
        _demo.run(_demo.DemoOptions(local=True), out=out)
        text = " ".join(out.getvalue().split())
        assert "it drains at 100 requests/s (drain_qps)" in text
        assert "otherwise the sink's rate limit is 5 requests/s after a burst of 10" in text

        config = yaml.safe_load(_demo.DEFAULT_CONFIG.read_text())
        # drain_qps: not the default, and quick to drain (at 7/s the demo's flush took 1.5 s)
        config["handlers"]["events"].update(qps=2, burst=3, drain_qps=70)
        path = tmp_path / "logging.yaml"
        path.write_text(yaml.safe_dump(config))
        with LocalApiServer(namespaces=["shop"]) as server:
            out = io.StringIO()
            _demo.run(
                _demo.DemoOptions(
                    kubeconfig=str(_kubeconfig(tmp_path, server.url)), namespace="shop", config=path
                ),
                out=out,
            )
            with (
                server.api_client() as api_client,
                contextlib.closing(_demo._cluster_sink(api_client, config, "v1")) as sink,
            ):
                sink.drain(True)  # the bucket a drain takes from
                assert sink._draining is not None
                assert sink._draining._qps == 70
        assert "it drains at 70 requests/s (drain_qps)" in " ".join(out.getvalue().split())

    def test_the_handler_class_under_the_package_name_is_found_too(self, tmp_path) -> None:
        """``k8s_logging_events.KubernetesEventHandler``, the re-exported spelling dictConfig
        takes as well: the demo refused such a configuration as one with no event handler."""
        config = yaml.safe_load(_demo.DEFAULT_CONFIG.read_text())
        config["handlers"]["events"]["class"] = "k8s_logging_events.KubernetesEventHandler"
        path = tmp_path / "logging.yaml"
        path.write_text(yaml.safe_dump(config))
        result = _demo.run(_demo.DemoOptions(local=True, config=path), out=io.StringIO())
        assert result.stored == result.logged


class TestErrors:
    """A demo that cannot run says why, with exit code 2 and no traceback."""

    def test_a_missing_configuration_file(self, tmp_path, capsys) -> None:
        """--config naming no file."""
        assert _cli.main(["demo", "--local", "--config", str(tmp_path / "none.yaml")]) == 2
        assert "cannot read the logging configuration" in capsys.readouterr().err

    def test_a_configuration_without_an_event_handler(self, tmp_path, capsys) -> None:
        """A YAML file that configures no KubernetesEventHandler."""
        path = tmp_path / "logging.yaml"
        path.write_text("version: 1\nroot: {level: INFO}\n")
        assert _cli.main(["demo", "--local", "--config", str(path)]) == 2
        assert "configures no k8s_logging_events.handler.KubernetesEventHandler" in (
            capsys.readouterr().err
        )

    def test_an_unusable_kubeconfig(self, tmp_path, capsys) -> None:
        """--kubeconfig naming no file: the error says how to run without a cluster."""
        assert _cli.main(["demo", "--kubeconfig", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err
        assert "cannot use the kubeconfig" in err
        assert "--local runs the demo on a local API server" in err

    @pytest.mark.parametrize("text", ["root:x:0:0:root:/root:/bin/bash\n", "- a\n- b\n"])
    def test_a_file_that_is_no_kubeconfig_is_called_so(self, tmp_path, capsys, text) -> None:
        """KUBECONFIG naming another kind of file (``/etc/passwd``, a YAML list): the client's
        words ("'str' object does not support item assignment") said nothing a user could act
        on; the handler's report and the demo's error now say it holds no kubeconfig."""
        path = tmp_path / "passwd"
        path.write_text(text)
        assert _cli.main(["demo", "--kubeconfig", str(path)]) == 2
        assert "it holds no kubeconfig (a YAML mapping of clusters" in capsys.readouterr().err

    def test_an_unreachable_cluster_fails_before_logging(self, tmp_path, capsys) -> None:
        """The access check comes first: no events are logged at a server that is not there."""
        with refused_url() as url:
            assert _cli.main(["demo", "--kubeconfig", str(_kubeconfig(tmp_path, url))]) == 2
        captured = capsys.readouterr()
        assert "cannot list events in namespace 'default'" in captured.err
        assert "Reconciling" not in captured.out

    def test_a_configuration_that_is_not_yaml(self, tmp_path, capsys) -> None:
        """--config naming a file PyYAML cannot parse: one line naming the file and where, not
        PyYAML's traceback."""
        path = tmp_path / "logging.yaml"
        path.write_text("version: 1\nhandlers: [\n")
        assert _cli.main(["demo", "--local", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"cannot read the logging configuration {path}" in err, err
        assert "line 3" in err, err

    def test_a_password_in_the_kubeconfigs_server_url_is_not_printed(
        self, tmp_path, capsys
    ) -> None:
        """A kubeconfig whose server URL holds a user name and password: the access check's
        error named the server with them."""
        with refused_url() as url:
            with_password = url.replace("http://", "http://admin:S3cretPw@")
            kubeconfig = _kubeconfig(tmp_path, with_password)
            assert _cli.main(["demo", "--kubeconfig", str(kubeconfig)]) == 2
        err = capsys.readouterr().err
        assert f"cannot list events in namespace 'default' at {url}:" in err, err
        assert "S3cretPw" not in err, err

    @pytest.mark.parametrize("mark", ["/", "#", "?"])
    def test_a_password_that_hides_the_host_is_not_printed_either(
        self, tmp_path, capsys, mark
    ) -> None:
        """A password holding an unencoded ``/``, ``#`` or ``?``: the client read the host
        from the password, and its error quoted the part before the mark."""
        with refused_url() as url:
            with_password = url.replace("http://", f"http://admin:S3cr{mark}etPw@")
            kubeconfig = _kubeconfig(tmp_path, with_password)
            assert _cli.main(["demo", "--kubeconfig", str(kubeconfig)]) == 2
        err = capsys.readouterr().err
        assert "percent-encode them" in err, err
        assert "S3cr" not in err, err

    def test_handlers_that_are_not_a_mapping(self, tmp_path, capsys) -> None:
        """``handlers:`` written as a list: the demo said nothing but a traceback."""
        path = tmp_path / "logging.yaml"
        path.write_text("version: 1\nhandlers: [events, console]\n")
        assert _cli.main(["demo", "--local", "--config", str(path)]) == 2
        assert "configures no k8s_logging_events.handler.KubernetesEventHandler" in (
            capsys.readouterr().err
        )

    def test_a_namespace_no_server_could_have(self, capsys) -> None:
        """--namespace that is no DNS label, on the local server the demo starts."""
        assert _cli.main(["demo", "--local", "--namespace", "Bad_NS"]) == 2
        captured = capsys.readouterr()
        assert "'Bad_NS' is not a valid namespace name" in captured.err
        assert "Reconciling" not in captured.out

    def test_without_pyyaml(self, monkeypatch, capsys) -> None:
        """PyYAML is in the dev extra; without it the demo says how to get it."""
        monkeypatch.setitem(sys.modules, "yaml", None)
        assert _cli.main(["demo", "--local"]) == 2
        assert "pip install pyyaml" in capsys.readouterr().err


def test_the_help_names_the_options(capsys) -> None:
    """The options of the demo are documented in its --help."""
    with pytest.raises(SystemExit):
        _cli.main(["demo", "--help"])
    text = capsys.readouterr().out
    for option in ("--kubeconfig", "--local", "--namespace", "--config", "--show-logs"):
        assert option in text


def test_the_cli_says_its_version(capsys) -> None:
    """``python -m k8s_logging_events --version``: the installed version, as pip knows it."""
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == importlib.metadata.version("k8s-logging-events")


def test_a_configuration_dictconfig_refuses(tmp_path, capsys) -> None:
    """An invalid handler option is reported as dictConfig words it, without a traceback."""
    config = yaml.safe_load(_demo.DEFAULT_CONFIG.read_text())
    config["handlers"]["events"]["max_message_bytes"] = 1
    path = tmp_path / "logging.yaml"
    path.write_text(yaml.safe_dump(config))

    assert _cli.main(["demo", "--local", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cannot apply the logging configuration: Unable to configure handler 'events'" in err
    # and why, as the handler says it (dictConfig keeps it only as the cause)
    assert "max_message_bytes" in err, err
