"""SPEC §1: numbers compared in E.164; stored contact numbers read as phone-vectors.csv says."""

from __future__ import annotations

from pathlib import Path

import pytest
from callbridge.phones import (
    UnreadableNumber,
    caller_name,
    mask_number,
    search_forms,
    to_e164,
    try_e164,
)

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "phone-vectors.csv"
LOCAL_VECTORS = Path(__file__).with_name("phone-vectors.csv")


def _vectors() -> list[tuple[str, str, str, str]]:
    path = VECTORS if VECTORS.exists() else LOCAL_VECTORS
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        text, region, expected, why = line.split("|")
        rows.append((text, region, expected, why))
    return rows


@pytest.mark.parametrize(("text", "region", "expected", "why"), _vectors(),
                         ids=[r[3] for r in _vectors()])
def test_stored_number_reads_as_the_vector_says(text: str, region: str, expected: str, why: str) -> None:
    got = try_e164(text, region) or "UNREADABLE"
    assert got == expected, why


def test_three_spellings_of_one_number_are_one_party() -> None:
    forms = ["(212) 555-0142", "+1 212-555-0142", "2125550142"]
    assert {to_e164(f, "US") for f in forms} == {"+12125550142"}


def test_unreadable_number_error_does_not_echo_the_text() -> None:
    with pytest.raises(UnreadableNumber) as info:
        to_e164("212 555 01", "US")
    assert "212" not in str(info.value)


def test_mask_keeps_only_the_last_four_digits() -> None:
    assert mask_number("+12125550142") == "+*******0142"


def test_search_forms_include_e164_national_and_bare_digits() -> None:
    forms = search_forms("+12125550142")
    assert "+12125550142" in forms and "(212) 555-0142" in forms and "2125550142" in forms


@pytest.mark.parametrize("text", ["WIRELESS CALLER", "UNKNOWN", "Anonymous", "SEATTLE WA",
                                  "New York, NY", "+1 212 555 0142", "2125550142", "  "])
def test_generic_caller_id_text_counts_as_no_name(text: str) -> None:
    assert caller_name(text, "+12125550142") is None


@pytest.mark.parametrize("text", ["Dana Whitfield", "JOHN SMITH", "Jo Li"])
def test_a_real_caller_id_name_is_kept(text: str) -> None:
    assert caller_name(text, "+12125550142") == text
