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


#: Every page is for someone with only the installed wheels, except this one.
EXEMPT_PAGES = {
    # The maintainers' map from each requirement to the tests that show it: it names the
    # repository's test files on purpose, for people working in a checkout.
    "requirements.md",
}
OUTSIDER_PAGES = sorted(p.relative_to(ROOT / "docs").as_posix()
                        for p in (ROOT / "docs").rglob("*.md")
                        if p.relative_to(ROOT / "docs").as_posix() not in EXEMPT_PAGES)
REPOSITORY_PATHS = re.compile(r"(?<![\w/.])(tests/[\w/.-]*|plugins/\w+|core/callbridge|tools/|"
                              r"benchmarks/|requirements/|noxfile\.py|\.ci/)")


def repository_paths(text: str) -> list[str]:
    """Paths of this repository in `text`; `tests/...` counts only where the repository has it
    (a plugin's own `tests/test_contract.py`, as the guide describes, is the reader's)."""
    def ours(path: str) -> bool:
        inner = path.removeprefix("tests/").rstrip("/.")
        return not path.startswith("tests/") or (bool(inner) and (ROOT / "tests" / inner).exists())
    return [path for path in REPOSITORY_PATHS.findall(text) if ours(path)]


def test_no_page_cites_a_path_of_the_repository() -> None:
    def visible(page: str) -> str:  # HTML comments are for maintainers, not readers
        return re.sub(r"<!--.*?-->", "", (ROOT / "docs" / page).read_text(), flags=re.S)

    assert "writing-a-plugin.md" in OUTSIDER_PAGES and "plugins/clio.md" in OUTSIDER_PAGES
    found = {page: repository_paths(visible(page)) for page in OUTSIDER_PAGES}
    assert {page: paths for page, paths in found.items() if paths} == {}


def test_the_path_check_catches_a_repository_path() -> None:
    assert repository_paths("see `tests/plugins/notebook/` and plugins/clio/") == [
        "tests/plugins/notebook/", "plugins/clio"]
    assert repository_paths("run `python benchmarks/bench.py -r requirements/dev.txt`") == [
        "benchmarks/", "requirements/"]
    assert repository_paths("callbridge/examples/notebook/tests/") == []
    assert repository_paths("your package's `tests/test_contract.py` and tests/cassettes/") == []


def test_no_page_installs_this_projects_packages_as_if_from_the_index() -> None:
    # The packages come from this project's wheels: a bare `pip install callbridge-clio`
    # would send the reader to the package index for them.
    installs = [(page, line) for page in OUTSIDER_PAGES
                for line in (ROOT / "docs" / page).read_text().splitlines()
                if re.search(r"pip install [^`\n]*\bcallbridge", line)]
    assert installs, "the pages show how the packages are installed"
    assert [(page, line) for page, line in installs
            if "--find-links" not in line and ".whl" not in line] == []
