"""The guide's hand-written hook test runs as written, against the shipped notebook example."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from callbridge.testing import make_context

PAGE = Path(__file__).resolve().parents[1] / "docs" / "writing-a-plugin.md"
SECTION = PAGE.read_text().split("### Testing one hook by hand", 1)[1].split("\n## ", 1)[0]
BLOCKS = re.findall(r"```python\n(.*?)```", SECTION, re.S)


def _example() -> dict[str, Any]:
    (code,) = [block for block in BLOCKS if "def test_" in block]
    namespace: dict[str, Any] = {"__name__": "guide_example"}
    exec(compile(code, f"{PAGE.name} (Testing one hook by hand)", "exec"), namespace)
    return namespace


EXAMPLE = _example()
TESTS = sorted(name for name in EXAMPLE if name.startswith("test_"))


def test_the_section_shows_make_context_with_its_real_parameters() -> None:
    (signature,) = [block for block in BLOCKS if block.lstrip().startswith("make_context(")]
    shown = re.findall(r"(\w+)=", signature)
    assert shown == list(inspect.signature(make_context).parameters)[1:]
    assert "retry" in " ".join(TESTS) and len(TESTS) >= 3


def test_the_example_cites_only_modules_in_the_wheel() -> None:
    (code,) = [block for block in BLOCKS if "def test_" in block]
    for module in re.findall(r"^(?:from|import) ([\w.]+)", code, re.M):
        assert module.split(".")[0] in {"callbridge", "datetime"}, module


@pytest.mark.parametrize("name", TESTS)
def test_the_guides_hook_test_passes(name: str) -> None:
    asyncio.run(EXAMPLE[name]())
