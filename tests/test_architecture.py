"""The package's public face and the shape of its imports.

The import contracts of pyproject.toml -- the layers of the pipeline and of the test
doubles, what may not import what, and no cycle between the children of any package -- are
checked by import-linter in ``./dev test`` (``lint-imports``). Here is what a contract cannot
say: that no module reaches itself again through its imports, counting the imports of a
package's own ``__init__``, those made only for type checking and those inside functions.
"""

from __future__ import annotations

import importlib
import json
import textwrap
from pathlib import Path

import grimp
import pytest

import k8s_logging_events
from tests._children import run_python

# An import cycle that is known and not yet broken, as (importer, imported) pairs: each must
# go from here once it is broken, and none may be added.
KNOWN_CYCLE_IMPORTS: set[tuple[str, str]] = set()


def _imports_on_a_cycle(graph: grimp.ImportGraph) -> dict[tuple[str, str], list[str]]:
    """Every direct import that the imported module's own imports lead back from, with the
    shortest way back."""
    found: dict[tuple[str, str], list[str]] = {}
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                found[(importer, imported)] = [importer, *back]
    return found


def test_no_module_reaches_itself_through_its_imports() -> None:
    """No import cycle anywhere in the package, testing/ included, at any depth."""
    graph = grimp.build_graph("k8s_logging_events", cache_dir=None)
    found = _imports_on_a_cycle(graph)
    new = {edge: chain for edge, chain in found.items() if edge not in KNOWN_CYCLE_IMPORTS}
    assert not new, "import cycles:\n" + "\n".join(" -> ".join(c) for c in new.values())
    assert set(found) == KNOWN_CYCLE_IMPORTS, "a known cycle is broken: take it off the list"


def test_a_cycle_is_found_where_there_is_one() -> None:
    """The search above sees a cycle through a package's __init__ and one of two siblings."""
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg", imported="pkg.a")
    graph.add_import(importer="pkg.a", imported="pkg")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.b")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert set(_imports_on_a_cycle(graph)) == {
        ("pkg", "pkg.a"),
        ("pkg.a", "pkg"),
        ("pkg.b", "pkg.c"),
        ("pkg.c", "pkg.b"),
    }


def test_the_package_exports_a_sorted_all_of_real_names() -> None:
    """__all__ is sorted (upper-case constants first, as isort sorts) and every name exists."""
    names = list(k8s_logging_events.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n[0].islower(), n))
    for name in names:
        assert getattr(k8s_logging_events, name) is not None


def test_the_package_imports_a_public_names_module_when_the_name_is_first_asked_for(
    tmp_path: Path,
) -> None:
    """``import k8s_logging_events`` (an application configuring logging, every pytest
    session through the plugin) imports none of the pipeline, yet ``dir()`` lists every
    public name, and each is there when asked for: an attribute, ``from ... import``, a
    ``*``, or a dictConfig reference (``class`` or ``()``) to the package's name."""
    code = """
        import json, logging.config, sys
        import k8s_logging_events as package
        ours = sorted(name for name in sys.modules if name.startswith("k8s_logging_events"))
        listed = sorted(set(package.__all__) - set(dir(package)))
        modules = [package.sink.__name__, package.describe.__name__, hasattr(package, "sinks")]
        resolve = logging.config.BaseConfigurator({}).resolve
        handler = resolve("k8s_logging_events.KubernetesEventHandler")
        from k8s_logging_events.handler import KubernetesEventHandler
        from k8s_logging_events import *
        star = sorted(set(package.__all__) - set(globals()))
        print(json.dumps([ours, listed, handler is KubernetesEventHandler, star, modules]))
    """
    result = run_python(textwrap.dedent(code), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ours, not_listed, resolved, not_imported, modules = json.loads(result.stdout)
    assert ours == ["k8s_logging_events", "k8s_logging_events._process"]
    assert not_listed == []
    assert resolved
    assert not_imported == []
    # the public modules are the package's attributes, as when it imported them all
    assert modules == ["k8s_logging_events.sink", "k8s_logging_events.describe", False]


@pytest.mark.parametrize("module", ["series", "sink"])
def test_each_public_module_is_an_attribute_of_the_package_from_its_import(
    tmp_path: Path, module: str
) -> None:
    """Every public module is reached from ``import k8s_logging_events`` alone, as when the
    package imported them all: ``series``, whose names the package does not re-export, was
    an ``AttributeError`` until some other name had imported it."""
    code = f"import k8s_logging_events as package; print(package.{module}.__name__)"
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"k8s_logging_events.{module}"]


def test_the_package_registers_its_fork_and_exit_hooks_at_import_after_loggings(
    tmp_path: Path,
) -> None:
    """Imported before ``logging``, the package still registers its ``atexit`` functions
    after logging's (they run in reverse), so that the stops left to threads end before
    ``logging.shutdown()`` closes the handlers; and its fork hooks, before any handler."""
    code = """
        import atexit, json, os
        registered = []
        def noting(register):
            def note(*hooks, **named):
                for f in (*hooks, *named.values()):
                    registered.append(f"{f.__module__}.{f.__qualname__}")
                return register(*hooks, **named)
            return note
        atexit.register = noting(atexit.register)
        os.register_at_fork = noting(os.register_at_fork)
        import k8s_logging_events
        print(json.dumps(registered))
    """
    result = run_python(textwrap.dedent(code), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    registered = json.loads(result.stdout)
    ours = "k8s_logging_events._process._wait_for_stops"
    assert registered.index("logging.shutdown") < registered.index(ours), registered
    assert "k8s_logging_events._process._after_fork_in_child" in registered, registered


@pytest.mark.parametrize(
    ("public", "home", "names"),
    [
        (
            "correlator",
            "_correlation",
            [
                "COMBINED_MESSAGE_PREFIX",
                "SPAM_KEYS",
                "KeyFunc",
                "MessageFunc",
                "SpamKeyFunc",
                "aggregate_by_reason",
                "combined_message",
                "get_event_key",
                "get_spam_key",
                "spam_key_per_reason",
            ],
        ),
        (
            "correlator",
            "_sanitise",
            ["EventNamer", "generate_event_name", "is_dns_subdomain", "unix_nanos"],
        ),
        ("handler", "_options", ["COMPONENT_ENV", "default_component", "default_host"]),
        ("handler", "_records", ["EXCEPTION_DETAILS", "EXTRAS"]),
        ("handler", "_sanitise", ["TRUNCATION_MARK"]),
    ],
)
def test_names_a_public_module_keeps_from_a_private_one_are_the_same_objects(
    public: str, home: str, names: list[str]
) -> None:
    """A name kept public in ``correlator`` or ``handler`` but living in a private module is
    listed in the public module's ``__all__`` and is that very object, not a copy or a
    wrapper, so that a patch, an ``is`` test or an ``isinstance`` sees one thing."""
    public_module = importlib.import_module(f"k8s_logging_events.{public}")
    home_module = importlib.import_module(f"k8s_logging_events.{home}")
    for name in names:
        assert name in public_module.__all__
        assert getattr(public_module, name) is getattr(home_module, name)
