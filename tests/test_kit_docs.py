"""The plugin authors' guide states what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from callbridge.capabilities import REQUIRED_HOOKS, Capability
from callbridge.testing.suite import ContractSuite

GUIDE = Path(__file__).parents[1] / "docs" / "writing-a-plugin.md"


def _generator():  # type: ignore[no-untyped-def]
    import importlib.util

    path = Path(__file__).parents[1] / "tools" / "gen_hook_docs.py"
    spec = importlib.util.spec_from_file_location("gen_hook_docs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_guide_capability_table_is_generated_from_the_specs() -> None:
    assert GUIDE.read_text() == _generator().guide(GUIDE.read_text()), (
        "run: python tools/gen_hook_docs.py")


def test_the_guide_lists_every_capability_with_the_hooks_it_obliges() -> None:
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", GUIDE.read_text(), re.MULTILINE)
    table = {name: set(re.findall(r"`(\w+)`", hooks)) for name, hooks in rows
             if name in {c.value for c in Capability}}
    assert table == {cap.value: set(hooks) for cap, hooks in REQUIRED_HOOKS.items()}


def documented_tests(text: str) -> set[str]:
    """Test names in the guide; "`test_log_call` / `_sms`" names test_log_call and test_log_sms."""
    names = set()
    for base, more in re.findall(r"`(test_\w+)`((?: / `_\w+`)*)", text):
        names.add(base)
        stem = base.rsplit("_", 1)[0]
        names |= {stem + alt for alt in re.findall(r"`(_\w+)`", more)}
    return names


def test_the_guide_names_every_standard_test_of_the_suite() -> None:
    standard = {name for name in dir(ContractSuite) if name.startswith("test_")}
    assert standard - documented_tests(GUIDE.read_text()) == set()


def test_the_guide_links_the_hook_reference_and_the_http_guide() -> None:
    text = GUIDE.read_text()
    assert "(hooks.md)" in text and "(http.md)" in text


def test_the_kit_inputs_page_is_generated_from_the_kit() -> None:
    page = GUIDE.parent / "kit-inputs.md"
    assert page.read_text() == _generator().kit_inputs(), "run: python tools/gen_hook_docs.py"


def test_the_guide_links_the_kit_inputs_page() -> None:
    assert "(kit-inputs.md)" in GUIDE.read_text()
