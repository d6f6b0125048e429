"""The tagged code blocks of the docs (docs/integrations.md by default), for the tests that
run them."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC = DOCS / "integrations.md"
_TAGGED = re.compile(r"<!-- recipe: ([\w-]+) -->\n```(python|yaml)\n(.*?)```", re.DOTALL)
_SINK_AUTO = re.compile(r"""(sink=|"sink": |sink: )("auto"|auto)""")


def recipes(doc: Path = DOC) -> dict[str, tuple[str, str]]:
    """Every tagged block of ``doc``: name -> (language, code)."""
    return {name: (language, code) for name, language, code in _TAGGED.findall(doc.read_text())}


def code_blocks(doc: Path = DOC) -> int:
    """How many python or yaml blocks ``doc`` has, tagged or not."""
    return len(re.findall(r"^```(?:python|yaml)$", doc.read_text(), re.MULTILINE))


def recipe(name: str, url: str | None = None, doc: Path = DOC) -> str:
    """The code of recipe ``name`` of ``doc``, its ``sink: auto`` pointed at ``url`` when
    given."""
    code = recipes(doc)[name][1]
    if url is None:
        return code
    pointed, replaced = _SINK_AUTO.subn(
        lambda m: m.group(1) + (f'"{url}"' if m.group(2).startswith('"') else url), code
    )
    assert replaced, f"recipe {name} has no sink: auto to point at the test server"
    return pointed
