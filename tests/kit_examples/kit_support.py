"""Builds the contract suite for a copy of the notebook plugin, with the notebook's inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from callbridge.testing import contract_suite

NOTEBOOK_TESTS = Path(__file__).resolve().parents[2] / "core" / "callbridge" / "examples" / "notebook" / "tests"


def notebook_contract() -> ModuleType:
    """The notebook's test_contract.py, loaded by path for its scenarios, rows and sandbox."""
    spec = importlib.util.spec_from_file_location("notebook_contract_inputs",
                                                  NOTEBOOK_TESTS / "test_contract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def suite_for(plugin: object, cassettes: Path | str, **overrides: Any) -> type:
    inputs = notebook_contract()
    options: dict[str, Any] = {
        "plugin": plugin, "settings": inputs.SETTINGS, "cassettes": Path(cassettes),
        "scenarios": inputs.SCENARIOS, "extra_rows": inputs.ROWS,
        "sandbox": inputs.seeded_sandbox, **overrides}
    return contract_suite(**options)
