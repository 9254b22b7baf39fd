"""The documentation site lists every page, and its first section is for plugin authors."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = (ROOT / "mkdocs.yml").read_text()


def nav_pages() -> list[str]:
    return re.findall(r":\s+([\w/.-]+\.md)\s*$", CONFIG, re.MULTILINE)


def test_every_page_is_in_the_site_navigation() -> None:
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages - set(nav_pages()) == set(), "add the page to mkdocs.yml's nav"
    assert set(nav_pages()) - pages == set(), "mkdocs.yml names a page that does not exist"


def test_the_guide_is_the_first_page_for_plugin_authors() -> None:
    assert nav_pages()[0] == "writing-a-plugin.md"


def test_the_site_builds_strictly_with_the_mkdocs_1_line() -> None:
    noxfile = (ROOT / "noxfile.py").read_text()
    assert '"mkdocs>=1.6,<2"' in noxfile and '"build", "--strict"' in noxfile
    assert "strict: true" in CONFIG
