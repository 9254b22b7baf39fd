"""The data objects' reference page is generated from the code and describes every object."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_object_docs",
                                                  ROOT / "tools" / "gen_object_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
CLASSES = [cls for _section, classes in GEN.objects() for cls in classes]


def test_the_objects_page_is_current() -> None:
    assert (ROOT / "docs" / "objects.md").read_text() == GEN.render(), (
        "run: python tools/gen_object_docs.py")


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_every_object_has_its_own_description(cls: type) -> None:
    assert GEN.doc(cls).strip(), f"{cls.__name__} has no docstring of its own"


@pytest.mark.parametrize("name", ["ExternalParty", "Contact", "Matter", "AppUser", "LogTarget",
                                  "LogResult", "Record", "CallEvent", "SmsEvent", "FaxEvent",
                                  "BatchItem", "BatchResult", "Declaration"])
def test_the_objects_the_hook_reference_names_are_on_the_page(name: str) -> None:
    assert f"### `{name}`" in (ROOT / "docs" / "objects.md").read_text()


def test_fields_of_the_hook_models_are_described() -> None:
    from callbridge import capabilities, models

    for cls in (models.Contact, models.LogTarget, models.LogResult, models.Record,
                models.BatchItem, models.BatchResult, capabilities.Declaration):
        missing = [name for name, _t, _d, text in GEN.fields(cls) if not text]
        assert not missing, f"{cls.__name__}: no description for {', '.join(missing)}"


def test_a_field_description_comes_from_its_docstring_or_comment() -> None:
    from callbridge.models import LogTarget

    described = {name: text for name, _t, _d, text in GEN.fields(LogTarget)}
    assert described["notes"].startswith("notes chosen for a delayed or manual log")
    assert described["contacts"].startswith("The contacts to link")
