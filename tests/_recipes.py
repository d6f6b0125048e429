"""The tagged code blocks of docs/integrations.md, for the tests that run them."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
_TAGGED = re.compile(r"<!-- recipe: ([\w-]+) -->\n```(python|yaml)\n(.*?)```", re.DOTALL)
_SINK_AUTO = re.compile(r"""(sink=|"sink": |sink: )("auto"|auto)""")


def recipes() -> dict[str, tuple[str, str]]:
    """Every tagged block: name -> (language, code)."""
    return {name: (language, code) for name, language, code in _TAGGED.findall(DOC.read_text())}


def code_blocks() -> int:
    """How many python or yaml blocks the page has, tagged or not."""
    return len(re.findall(r"^```(?:python|yaml)$", DOC.read_text(), re.MULTILINE))


def recipe(name: str, url: str | None = None) -> str:
    """The code of recipe ``name``, its ``sink: auto`` pointed at ``url`` when given."""
    code = recipes()[name][1]
    if url is None:
        return code
    pointed, replaced = _SINK_AUTO.subn(
        lambda m: m.group(1) + (f'"{url}"' if m.group(2).startswith('"') else url), code
    )
    assert replaced, f"recipe {name} has no sink: auto to point at the test server"
    return pointed
