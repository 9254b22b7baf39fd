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


# --- hostile text (a number is read before anything else looks at it) ------------------


def test_text_longer_than_the_limit_is_unreadable_before_any_pattern_runs() -> None:
    from callbridge.phones import MAX_LENGTH

    with pytest.raises(UnreadableNumber, match=f"longer than {MAX_LENGTH}"):
        to_e164("1" + " " * 32000 + "x", "US")
    assert try_e164("+1 212 555 0142".ljust(MAX_LENGTH), "US") == "+12125550142"
    assert try_e164("+1 212 555 0142".ljust(MAX_LENGTH + 1), "US") is None


def test_the_extension_pattern_does_not_rescan_a_run_of_spaces() -> None:
    import time

    from callbridge import phones

    # Searched directly, past the length limit: a pattern that could start inside
    # the run of spaces takes minutes here (quadratic); this one is linear.
    text = "1" + " " * 300_000 + "x"
    began = time.perf_counter()
    assert phones._EXTENSION.search(text) is None
    assert phones._EXTENSION.search(text + "12") is not None
    assert time.perf_counter() - began < 2.0


@pytest.mark.parametrize("text", ["+1 212 555 0142 x12", "(212) 555-0142 ext. 7",
                                  "212-555-0142 extension 1234567", "2125550142#99"])
def test_an_extension_is_ignored(text: str) -> None:
    assert to_e164(text, "US") == "+12125550142"


def test_the_cache_is_bounded() -> None:
    from callbridge import phones

    info = phones._read.cache_info()
    assert info.maxsize is not None and info.maxsize <= 4096


def test_a_long_caller_id_name_of_spaces_is_read_quickly() -> None:
    import time

    began = time.perf_counter()
    assert caller_name("a" + " " * 200_000 + "!") is not None
    assert caller_name("SEATTLE" + " " * 100 + "WA") is None
    assert time.perf_counter() - began < 2.0
