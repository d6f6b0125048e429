"""What the type-checking tests share: mypy run on a user's program beside one module.

``--follow-imports=skip`` checks the module alone (a user's mypy run sees the same
signatures, in a second); the module's own imports are not followed, so its errors about them
are expected and only the user's lines count.
"""

from __future__ import annotations

from pathlib import Path

import mypy.api


def mypy_report(tmp_path: Path, program: str, module: str, *flags: str) -> tuple[Path, str]:
    """The user's file and mypy's report on it beside ``module`` (a file path). Fails when
    mypy refused to check (status 2: the package installed in site-packages, say), which
    says nothing about the program."""
    user = tmp_path / "app.py"
    user.write_text(program, encoding="utf-8")
    report, errors, status = mypy.api.run(
        [*flags, "--follow-imports=skip", "--no-incremental", str(user), module]
    )
    assert status != 2, report + errors
    return user, report
