"""The layout of the local API server (``k8s_logging_events/testing/apiserver/``).

The server stays independent of the library's own rules, so that a bug shared by both cannot
pass unnoticed; that, and the server's tiers, are import contracts in pyproject.toml, checked
by import-linter in ``./dev test``. Here: each module says what it is, and the exports.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import k8s_logging_events.testing
from k8s_logging_events.testing import apiserver

SERVER = pathlib.Path(apiserver.__file__).parent
MODULES = sorted(SERVER.glob("*.py"))


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
