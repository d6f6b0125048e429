"""The module layering of ARCHITECTURE.md, checked by reading the imports."""

from __future__ import annotations

import ast
import pathlib

import pytest

import k8s_logging_events

PACKAGE = pathlib.Path(k8s_logging_events.__file__).parent


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "k8s_logging_events":
                names.update(f"k8s_logging_events.{alias.name}" for alias in node.names)
    return names


def test_the_broadcaster_knows_nothing_of_kubernetes() -> None:
    """broadcaster imports neither the kubernetes client nor any other module of ours."""
    imports = _imports("broadcaster")
    assert not [n for n in imports if n.startswith(("kubernetes", "k8s_logging_events"))]


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("models", ("recorder", "handler", "sink", "correlator", "broadcaster")),
        ("correlator", ("recorder", "handler", "sink", "broadcaster")),
        ("sink", ("recorder", "handler", "correlator", "broadcaster")),
        ("recorder", ("handler",)),
        ("clock", ("models", "recorder", "handler", "sink", "correlator")),
        ("series", ("recorder", "handler", "sink", "correlator", "broadcaster")),
    ],
)
def test_imports_flow_one_way(module: str, forbidden: tuple[str, ...]) -> None:
    """handler -> recorder -> (correlator, sink) -> (broadcaster, clock) -> models."""
    imports = _imports(module)
    bad = [n for n in imports for f in forbidden if n == f"k8s_logging_events.{f}"]
    assert bad == []


def test_the_package_exports_a_sorted_all_of_real_names() -> None:
    """__all__ is sorted (upper-case constants first, as isort sorts) and every name exists."""
    names = list(k8s_logging_events.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n[0].islower(), n))
    for name in names:
        assert getattr(k8s_logging_events, name) is not None
