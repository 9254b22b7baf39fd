"""Every hook has a reference entry with its exact signature, and a test that calls it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from callbridge import hookspecs

ROOT = Path(__file__).resolve().parents[1]
ALL_HOOKS = [*hookspecs.FREE_HOOKS, *hookspecs.ROUTED_HOOKS]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_hook_docs", ROOT / "tools" / "gen_hook_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hook_reference_page_is_current() -> None:
    page = (ROOT / "docs" / "hooks.md").read_text()
    assert page == _generator().render(), "run: python tools/gen_hook_docs.py"


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_each_hook_has_its_signature_in_the_reference(hook: str) -> None:
    page = (ROOT / "docs" / "hooks.md").read_text()
    assert f"## `{hook}`" in page
    assert _generator().signature(hook) in page


@pytest.mark.parametrize("hook", ALL_HOOKS)
def test_each_hook_is_exercised_by_a_test(hook: str) -> None:
    sources = [p.read_text() for p in (ROOT / "tests").rglob("test_*.py")]
    sources += [p.read_text() for p in (ROOT / "plugins").rglob("test_*.py")]
    used = re.compile(rf"\b{hook}\b")
    users = [s for s in sources if used.search(s) and "test_docs" not in s[:200]]
    assert users, f"no test mentions the hook {hook}"
