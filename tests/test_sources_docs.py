"""docs/sources.md: its settings read as the server reads them, and the guide's example
adapter and its tests run as written."""

from __future__ import annotations

import re
import sys
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from callbridge.settings import SourceSettings
from callbridge.sources.aircall import AircallSource
from callbridge.sources.twilio import CALL_STATES, MESSAGE_STATES

PAGE = (Path(__file__).resolve().parents[1] / "docs" / "sources.md").read_text()
PYTHON = re.findall(r"```python\n(.*?)```", PAGE, re.S)
TOML = re.findall(r"```toml\n(.*?)```", PAGE, re.S)


def test_each_sources_settings_on_the_page_are_valid() -> None:
    formats = set()
    for block in TOML:
        tenants = tomllib.loads(block).get("tenants", {})
        for tenant in tenants.values():
            for source in tenant.get("sources", {}).values():
                formats.add(SourceSettings.model_validate(source).format)
    assert formats == {"twilio", "aircall"}


def test_the_page_lists_every_status_the_twilio_adapter_maps() -> None:
    for status in [*CALL_STATES, *MESSAGE_STATES]:
        assert f"`{status}`" in PAGE, status
    assert AircallSource.name in PAGE


@pytest.fixture
def example_package() -> Iterator[types.ModuleType]:
    (code,) = [b for b in PYTHON if "class ExamplePbxSource" in b]
    module = types.ModuleType("examplepbx_callbridge")
    exec(compile(code, "docs/sources.md (the example adapter)", "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_the_example_adapter_is_a_source_adapter(example_package: types.ModuleType) -> None:
    from callbridge.sources.base import SourceAdapter

    assert isinstance(example_package.ExamplePbxSource(), SourceAdapter)
    (entry,) = [b for b in TOML if "callbridge.sources" in b]
    assert tomllib.loads(entry)["project"]["entry-points"]["callbridge.sources"] == {
        "examplepbx": "examplepbx_callbridge:ExamplePbxSource"}


def test_the_example_tests_pass_as_written(example_package: types.ModuleType) -> None:
    (code,) = [b for b in PYTHON if "def test_" in b]
    namespace: dict[str, Any] = {"__name__": "guide_example"}
    exec(compile(code, "docs/sources.md (the example tests)", "exec"), namespace)
    tests = sorted(name for name in namespace if name.startswith("test_"))
    assert len(tests) == 3
    for name in tests:
        namespace[name]()
