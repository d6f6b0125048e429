"""The layout of the local API server (``k8s_logging_events/testing/apiserver/``).

ARCHITECTURE.md: the server stays independent of the library's own rules, so that a bug
shared by both cannot pass unnoticed. It may share pure formatting with the library (times,
durations) and its clock, nothing else.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import k8s_logging_events.testing
from k8s_logging_events.testing import apiserver

SERVER = pathlib.Path(apiserver.__file__).parent
MODULES = sorted(SERVER.glob("*.py"))
SHARED = {
    "k8s_logging_events.clock",
    "k8s_logging_events.describe",
    "k8s_logging_events.models",
    "k8s_logging_events.testing._wait",
}
"""What the server may import beside its own modules: the library's clock and pure
formatting, and the testing package's wait helper (behind ``LocalApiServer.wait_for_event``)."""


def _library_imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "k8s_logging_events":
                names.update(f"k8s_logging_events.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return {name for name in names if name.startswith("k8s_logging_events")}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_the_server_imports_no_rule_of_the_library(path: pathlib.Path) -> None:
    """Only the clock, models' and describe's formatting, and the server's own modules."""
    imports = _library_imports(path)
    own = "k8s_logging_events.testing.apiserver"
    assert sorted(n for n in imports if n not in SHARED and not n.startswith(own)) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_each_module_says_what_it_is(path: pathlib.Path) -> None:
    """Every module of the server has a docstring (where it sits and what it owns)."""
    assert ast.get_docstring(ast.parse(path.read_text()))


def test_the_public_names_are_exported_sorted_from_both_packages() -> None:
    """apiserver's __all__ is sorted, and its public names are also in testing's."""
    names = list(apiserver.__all__)
    assert names == sorted(names)
    for name in ("ClientCertificate", "Fault", "LocalApiServer", "RecordedRequest"):
        assert getattr(k8s_logging_events.testing, name) is getattr(apiserver, name)
