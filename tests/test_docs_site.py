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


#: The pages a plugin author reads with only the installed wheel and the template.
OUTSIDER_PAGES = ["writing-a-plugin.md", "hooks.md", "objects.md", "kit-inputs.md",
                  "migrating-to-2.0.md", "api.md", "embedding.md", "events.md", "http.md"]
REPOSITORY_PATHS = re.compile(r"(?<![\w/.])(tests/plugins|plugins/\w+|core/callbridge|tools/|"
                              r"benchmarks/|noxfile\.py|\.ci/)")


def test_pages_for_plugin_authors_cite_no_path_of_the_repository() -> None:
    def visible(page: str) -> str:  # HTML comments are for maintainers, not readers
        return re.sub(r"<!--.*?-->", "", (ROOT / "docs" / page).read_text(), flags=re.S)

    found = {page: REPOSITORY_PATHS.findall(visible(page)) for page in OUTSIDER_PAGES}
    assert {page: paths for page, paths in found.items() if paths} == {}


def test_the_path_check_catches_a_repository_path() -> None:
    assert REPOSITORY_PATHS.findall("see `tests/plugins/notebook/` and plugins/clio/") == [
        "tests/plugins", "plugins/clio"]
    assert REPOSITORY_PATHS.findall("callbridge/examples/notebook/tests/") == []
