"""Size limits on every field, control characters refused, hostile JSON read safely."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from callbridge.errors import EventValidationError
from callbridge.events import DOCUMENT_MAX_BYTES, json_schema, parse_event


def sms(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "inbound",
                            "external": {"number": "+12125550142"},
                            "sent_at": "2026-03-02T10:00:00Z", "body": "hello"}
    base.update(over)
    return base


def fax_with(content: str) -> dict[str, Any]:
    return {"kind": "fax", "id": "f-1", "tenant": "acme", "direction": "inbound",
            "external": {"number": "+12125550142"}, "sent_at": "2026-03-02T10:00:00Z",
            "page_count": 1, "document": {"content": content}}


def problems(payload: Any) -> dict[str, str]:
    with pytest.raises(EventValidationError) as info:
        parse_event(payload)
    return {p.location: p.problem for p in info.value.problems}


def test_a_document_over_the_cap_is_refused_before_it_is_decoded() -> None:
    small = base64.b64encode(b"%PDF" + b"\0" * 1000).decode()
    assert parse_event(fax_with(small))
    big = "A" * (4 * (DOCUMENT_MAX_BYTES // 3) + 8)
    assert problems(fax_with(big)) == {"document.content": "is larger than 10 MiB"}


@pytest.mark.parametrize(("field", "size"), [("body", 20001), ("id", 201), ("source", 101)])
def test_text_over_its_limit_is_refused(field: str, size: int) -> None:
    assert field in problems(sms(**{field: "a" * size}))


@pytest.mark.parametrize("text", ["a\x00b", "ring\x1b[31m", "a\x07", "x\x9by"])
def test_control_characters_are_refused_in_text_sent_to_apps(text: str) -> None:
    found = problems(sms(body=text))
    assert list(found) == ["body"] and "control character" in found["body"]
    assert "external.name" in problems(sms(external={"number": "+12125550142", "name": text}))


def test_a_lone_surrogate_is_refused() -> None:
    assert list(problems(sms(body="lone \ud800"))) == ["body"]


@pytest.mark.parametrize("text", ["line one\nline two\r\n\tindented", "a\u2028b\u2029c\x85d"])
def test_line_breaks_and_tabs_are_kept_in_multi_line_text(text: str) -> None:
    event = parse_event(sms(body=text))
    assert event.body == text  # type: ignore[union-attr]


def test_a_line_break_in_a_name_is_refused() -> None:
    assert "external.name" in problems(sms(external={"number": "+12125550142", "name": "a\nb"}))


@pytest.mark.parametrize(("text", "where", "why"), [
    (b"\xff\xfe{}", "(json)", "not UTF-8 text"),
    ("[" * 100_000 + "]" * 100_000, "(json)", "nested too deeply"),
    ('{"page_count": ' + "9" * 5000 + "}", "(json)", "more than 20 digits"),
    ('{"sequence": NaN}', "(json)", "NaN is not a JSON number"),
    ("[1, 2]", "(event)", "must be a JSON object"),
])
def test_hostile_json_is_a_problem_not_a_crash(text: str | bytes, where: str, why: str) -> None:
    found = problems(text)
    assert where in found and why in found[where]


def test_a_key_holding_markup_or_escapes_is_never_echoed() -> None:
    payload = json.dumps(sms(**{"[/yellow]": 1, "\x1b]0;pwned\x07": 2}))
    found = problems(payload)
    assert found == {"(unknown field)": "is not a field of this object"}


def test_many_problems_are_capped() -> None:
    found = problems(sms(**{f"k{i}": i for i in range(500)}, direction="x"))
    assert len(found) <= 21 and "direction" in found


def test_the_schema_states_the_limits() -> None:
    schema = json_schema()
    defs = schema["$defs"]
    assert defs["SmsEvent"]["properties"]["body"]["maxLength"] == 20000
    content = defs["FaxDocument"]["properties"]["content"]["anyOf"][0]
    assert content["maxLength"] >= DOCUMENT_MAX_BYTES
    assert defs["CallEvent"]["properties"]["state"]
    for name, model in defs.items():
        assert model.get("description"), name
        for field, spec in model.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field}"
