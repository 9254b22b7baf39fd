"""A real headless browser for the page tests: Debian's ``chromium``, driven by Playwright.

Playwright's own browser downloads are never used: the browser is the system's
(``CALLBRIDGE_CHROMIUM`` names another binary). Where it is missing, a test
using :func:`browser` is skipped on a workstation and FAILS in CI (``CI`` set), so
a CI machine without the browser cannot pass by skipping the page's tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

#: The names Debian (and some other distributions) give the browser's launcher.
NAMES = ("chromium", "chromium-browser")
INSTALL = "install Debian's chromium: apt-get install -y --no-install-recommends chromium"


def in_ci(env: Mapping[str, str]) -> bool:
    return env.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_chromium(env: Mapping[str, str] = os.environ,
                  which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The browser's path: ``CALLBRIDGE_CHROMIUM`` if set (and present), else the first
    launcher on the PATH."""
    named = env.get("CALLBRIDGE_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in NAMES:
        if found := which(name):
            return found
    return None


def missing(problem: str, env: Mapping[str, str] = os.environ) -> None:
    """Fail in CI, skip elsewhere."""
    if in_ci(env):
        pytest.fail(f"{problem} (CI is set, so this fails instead of skipping); {INSTALL}")
    pytest.skip(f"{problem}; {INSTALL}")


def require_chromium(env: Mapping[str, str] = os.environ,
                     which: Callable[[str], str | None] = shutil.which) -> str:
    path = find_chromium(env, which)
    if path is None:
        missing("no chromium browser found", env)
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium per test module (a page per test: ``browser.new_page()``)."""
    path = require_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the testing extra installs it
        missing("Playwright's Python package is not installed")
        raise
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield launched
        finally:
            launched.close()
