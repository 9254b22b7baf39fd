"""The event format page and the published JSON Schema state what the models do."""

from __future__ import annotations

import json
from pathlib import Path

from callbridge.cli import app
from callbridge.events import (
    CallEvent,
    ExternalParty,
    FaxDocument,
    FaxEvent,
    InternalUser,
    SmsEvent,
)
from callbridge.events import json_schema as build
from typer.testing import CliRunner

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_callbridge_schema_prints_the_schema_built_from_the_models() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == build()


def test_the_published_schema_is_current() -> None:
    published = (DOCS / "event.schema.json").read_text()
    assert published == json.dumps(build(), indent=2, sort_keys=True) + "\n", (
        "run: callbridge schema > docs/event.schema.json")


def test_the_format_page_names_every_field() -> None:
    page = (DOCS / "events.md").read_text()
    for model in (CallEvent, SmsEvent, FaxEvent, ExternalParty, InternalUser, FaxDocument):
        for name in model.model_fields:
            assert f"`{name}`" in page, f"{model.__name__}.{name} is not on docs/events.md"


def test_every_event_model_and_field_has_a_docstring() -> None:
    for model in (CallEvent, SmsEvent, FaxEvent, ExternalParty, InternalUser, FaxDocument):
        assert model.__doc__ and "pydantic" not in model.__doc__.lower(), model.__name__
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"
