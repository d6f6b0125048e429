"""The package's public face; its layering is import-linter's (pyproject.toml)."""

from __future__ import annotations

import pathlib

import k8s_logging_events

PACKAGE = pathlib.Path(k8s_logging_events.__file__).parent


def test_the_import_contracts_are_declared() -> None:
    """The layering itself is checked by import-linter (``./dev test`` runs ``lint-imports``
    with the contracts of pyproject.toml); this only keeps those contracts from vanishing."""
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'type = "layers"' in pyproject
    assert "The broadcaster knows nothing of Kubernetes" in pyproject


def test_the_package_exports_a_sorted_all_of_real_names() -> None:
    """__all__ is sorted (upper-case constants first, as isort sorts) and every name exists."""
    names = list(k8s_logging_events.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n[0].islower(), n))
    for name in names:
        assert getattr(k8s_logging_events, name) is not None
