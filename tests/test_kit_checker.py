"""The cassette checker: secrets and real numbers are found, named, masked; placeholders pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from callbridge.testing.checker import FIX, check_cassette, check_cassettes

NOTEBOOK_CASSETTES = Path(__file__).parent / "plugins" / "notebook" / "tests" / "cassettes"
TOKEN = "q7Zt4KxW9mRb2LcV8nHs3JdF6gPy1TaE5uQo0XiN"


def interaction(*, uri: str = "https://app.example.com/contacts", request_headers: Any = None,
                request_body: str = "", response_headers: Any = None,
                response_body: str = "{}") -> dict[str, Any]:
    return {
        "request": {"method": "GET", "uri": uri, "body": request_body,
                    "headers": request_headers or {}},
        "response": {"status": {"code": 200, "message": "OK"},
                     "headers": response_headers or {}, "body": {"string": response_body}},
    }


def cassette(tmp_path: Path, *interactions: dict[str, Any], metadata: bool = True) -> Path:
    data: dict[str, Any] = {"version": 1, "interactions": list(interactions)}
    if metadata:
        data["metadata"] = {"recorded": "recorded against the Example sandbox on 2026-11-22"}
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_notebook_cassettes_are_clean() -> None:
    assert check_cassettes(NOTEBOOK_CASSETTES) == []


def test_a_bearer_token_is_named_with_file_interaction_masked_value_and_fix(tmp_path: Path) -> None:
    path = cassette(tmp_path, interaction(),
                    interaction(request_headers={"Authorization": [f"Bearer {TOKEN}"]}))
    [problem] = check_cassette(path)
    assert str(problem) == (f"{path}: interaction 1 (GET /contacts), request header "
                            f"Authorization: bearer token Bearer q7Zt***; fix: {FIX}")


def test_a_token_field_in_a_response_body_is_found(tmp_path: Path) -> None:
    path = cassette(tmp_path, interaction(response_body=f'{{"refresh_token": "{TOKEN}"}}'))
    [problem] = check_cassette(path)
    assert (problem.where, problem.kind, problem.masked) == (
        "response body", "secret field 'refresh_token'", "q7Zt***")


def test_an_api_key_in_a_query_string_is_found(tmp_path: Path) -> None:
    path = cassette(tmp_path, interaction(uri=f"https://app.example.com/x?api_key={TOKEN}"))
    [problem] = check_cassette(path)
    assert (problem.where, problem.masked) == ("request URI", "q7Zt***")


def test_a_session_cookie_in_a_response_header_is_found(tmp_path: Path) -> None:
    path = cassette(tmp_path, interaction(
        response_headers={"Set-Cookie": [f"session={TOKEN}; HttpOnly"]}))
    [problem] = check_cassette(path)
    assert (problem.where, problem.masked) == ("response header Set-Cookie", "q7Zt***")


def test_placeholders_and_short_values_pass(tmp_path: Path) -> None:
    path = cassette(tmp_path, interaction(
        request_headers={"Authorization": ["Bearer SCRUBBED"], "Cookie": ["SCRUBBED"]},
        response_body='{"access_token": "[redacted]", "token": "short", '
                      '"api_key": "xxxxxxxxxxxxxxxxxxxxxx"}'))
    assert check_cassette(path) == []


def test_a_real_number_is_named_masked(tmp_path: Path) -> None:
    path = cassette(tmp_path, interaction(response_body='{"phone": "+1 312 867 5309"}'))
    [problem] = check_cassette(path)
    assert (problem.where, problem.masked) == ("response body", "+* *** *** 5309")
    assert "867" not in str(problem)


def test_a_url_encoded_real_number_in_a_query_is_found(tmp_path: Path) -> None:
    path = cassette(tmp_path, interaction(uri="https://app.example.com/c?phone=%2B13128675309"))
    [problem] = check_cassette(path)
    assert (problem.where, problem.masked) == ("request URI", "+*******5309")


def test_fictional_numbers_of_each_country_pass(tmp_path: Path) -> None:
    body = ('{"us": "+1 646 555 0101", "uk": "020 7946 0123", "uk2": "+442079460999", '
            '"au": "+61 2 5550 1234", "au_mobile": "+61491570157"}')
    assert check_cassette(cassette(tmp_path, interaction(response_body=body))) == []


def test_a_cassette_without_its_recording_date_is_reported(tmp_path: Path) -> None:
    [problem] = check_cassette(cassette(tmp_path, interaction(), metadata=False))
    assert "no 'recorded' entry in its metadata" in str(problem)


def test_a_file_that_is_not_a_cassette_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "notes.yaml"
    path.write_text("just: text\n")
    [problem] = check_cassette(path)
    assert "is not a vcrpy cassette" in str(problem)
