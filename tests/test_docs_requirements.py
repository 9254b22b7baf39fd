"""docs/requirements.md cites tests that exist: every file, and every test named in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "requirements.md"
CITED = re.compile(r"`([\w./-]*\.py)?(::[\w*]+)?`")


def citations(text: str) -> list[tuple[str, str | None]]:
    """(file, test or None) for each cited test; ``::name`` belongs to the file cited before it."""
    out: list[tuple[str, str | None]] = []
    for row in text.splitlines():
        current = None
        for path, test in CITED.findall(row):
            if path:
                current = path
            if current is None or not current.startswith(("tests/", "plugins/")):
                continue
            out.append((current, test[2:] if test else None))
    return out


def test_every_cited_test_exists() -> None:
    missing = []
    found = citations(PAGE.read_text())
    assert len(found) > 100
    for path, test in found:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
            continue
        if test and "*" not in test and not re.search(rf"def {re.escape(test)}\b|^{re.escape(test)}\b",
                                                      file.read_text(), re.M):
            missing.append(f"{path}::{test}")
    assert not missing, f"docs/requirements.md cites tests that do not exist: {missing}"


def test_a_name_after_a_file_belongs_to_that_file() -> None:
    row = "| 1 | x | `tests/a.py::one`, `::two`, `plugins/b/tests/c.py` (all) |"
    assert citations(row) == [("tests/a.py", "one"), ("tests/a.py", "two"),
                              ("plugins/b/tests/c.py", None)]
