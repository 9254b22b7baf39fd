"""The page tests' browser: Debian's chromium, found on the PATH, and never a silent skip in CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from callbridge.faults import serve_in_thread
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.browser import browser, find_chromium, require_chromium

__all__ = ["browser"]


def nowhere(name: str) -> str | None:
    return None


def test_a_missing_browser_fails_in_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"no chromium browser found.*CI is set"):
        require_chromium({"CI": "true"}, nowhere)


def test_a_missing_browser_skips_on_a_workstation() -> None:
    with pytest.raises(pytest.skip.Exception, match="apt-get install"):
        require_chromium({}, nowhere)
    with pytest.raises(pytest.skip.Exception):
        require_chromium({"CI": "false"}, nowhere)


def test_the_browser_is_found_on_the_path_or_named(tmp_path: Path) -> None:
    assert find_chromium({}, {"chromium-browser": "/opt/c"}.get) == "/opt/c"
    named = tmp_path / "chrome"
    named.write_text("")
    assert find_chromium({"CALLBRIDGE_CHROMIUM": str(named)}, nowhere) == str(named)
    assert find_chromium({"CALLBRIDGE_CHROMIUM": str(tmp_path / "absent")},
                         {"chromium": "/usr/bin/chromium"}.get) is None


@pytest.mark.slow
def test_the_browser_renders_a_page_served_on_loopback(browser: Any) -> None:
    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>t</title><h1>Calls</h1>"
                            "<label for=n>Notes</label><textarea id=n></textarea>")

    with serve_in_thread(Starlette(routes=[Route("/", page)])) as url:
        tab = browser.new_page()
        tab.goto(url)
        assert tab.get_by_role("heading", level=1).inner_text() == "Calls"
        tab.get_by_label("Notes").fill("hello")
        assert tab.get_by_label("Notes").input_value() == "hello"
        tab.close()
