"""A hook's exception kept as a delivery's message never holds the input values that
pydantic quotes (a contact's name read from an app's answer)."""

from __future__ import annotations

from callbridge.pipeline import outcome_for_error
from callbridge.redact import describe_error
from pydantic import BaseModel, ValidationError


class Contact(BaseModel):
    id: int
    name: str


def _validation_error() -> ValidationError:
    try:
        Contact.model_validate({"id": "Dana Whitfield", "name": 7})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


def test_a_pydantic_error_is_described_by_field_and_problem_only() -> None:
    exc = _validation_error()
    assert "Dana Whitfield" in str(exc)  # what pydantic's own text would have kept
    text = describe_error(exc)
    assert "Dana Whitfield" not in text and "id: " in text and "name: " in text


def test_input_values_quoted_inside_another_message_are_cut() -> None:
    exc = RuntimeError("bad answer: [type=int_parsing, input_value='Dana Whitfield', input_type=str]")
    assert "Dana" not in describe_error(exc)


def test_the_delivery_message_of_a_failing_hook_holds_no_input_value() -> None:
    outcome = outcome_for_error(_validation_error(), attempt=1, max_attempts=3)
    assert outcome.message and "Dana Whitfield" not in outcome.message
