"""The kit's cassettes: record mode from the environment, matching, misses, a thin entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import yaml
from callbridge.testing.cassettes import CassetteMiss, CassetteTransport, open_cassette, record_mode
from callbridge.testing.checker import check_cassette
from callbridge.testing.scrub import Scrubber
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from vcr.errors import CannotOverwriteExistingCassetteException


def echo_app() -> Starlette:
    """Answers each write with its own body, and each search with a stored number."""

    async def things(request: Request) -> JSONResponse:
        if request.method == "POST":
            return JSONResponse({"got": await request.json()}, status_code=201)
        return JSONResponse({"phone": request.query_params.get("phone"),
                             "owner": "jane.doe@lawfirm.com"})

    return Starlette(routes=[Route("/things", things, methods=["GET", "POST"])])


async def exchange(path: Path, mode: str, calls: list[tuple[str, dict[str, object] | None]],
                   ) -> list[httpx2.Response]:
    inner = httpx2.ASGITransport(app=echo_app()) if mode != "none" else None
    out = []
    with open_cassette(path, scrubber=Scrubber(), mode=mode) as cassette:
        async with httpx2.AsyncClient(transport=CassetteTransport(cassette, inner),
                                      base_url="https://app.example.com") as client:
            for query, body in calls:
                if body is None:
                    out.append(await client.get("/things", params={"phone": query}))
                else:
                    out.append(await client.post("/things", json=body))
    return out


def test_the_record_mode_is_none_unless_the_environment_says_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLBRIDGE_RECORD_MODE", raising=False)
    assert record_mode() == "none"
    monkeypatch.setenv("CALLBRIDGE_RECORD_MODE", "once")
    assert record_mode() == "once"


async def test_writes_to_one_url_replayed_in_the_other_order_get_their_own_answers(
        tmp_path: Path) -> None:
    path = tmp_path / "writes.yaml"
    await exchange(path, "once", [("", {"n": 1}), ("", {"n": 2})])
    replayed = await exchange(path, "none", [("", {"n": 2}), ("", {"n": 1})])
    assert [r.json()["got"]["n"] for r in replayed] == [2, 1]


async def test_json_key_order_does_not_matter_for_matching(tmp_path: Path) -> None:
    path = tmp_path / "order.yaml"
    await exchange(path, "once", [("", {"a": 1, "b": 2})])
    [replayed] = await exchange(path, "none", [("", {"b": 2, "a": 1})])
    assert replayed.status_code == 201


async def test_a_real_number_is_stored_fictional_and_its_replay_still_matches(
        tmp_path: Path) -> None:
    path = tmp_path / "search.yaml"
    [live] = await exchange(path, "once", [("+13128675309", None)])
    assert live.json()["phone"] == "+13128675309"  # the plugin saw the real answer
    text = path.read_text()
    assert "3128675309" not in text and "jane.doe@lawfirm.com" not in text
    [replayed] = await exchange(path, "none", [("+13128675309", None)])
    assert replayed.json()["phone"].startswith("+1312555")
    assert replayed.json()["owner"].endswith("@example.com")


async def test_a_request_with_no_recording_raises_a_cassette_miss_naming_it(
        tmp_path: Path) -> None:
    path = tmp_path / "miss.yaml"
    await exchange(path, "once", [("", {"n": 1})])
    with pytest.raises(CannotOverwriteExistingCassetteException) as info:
        await exchange(path, "none", [("", {"n": 3})])
    assert isinstance(info.value, CassetteMiss)
    assert str(info.value).startswith(
        f"no recording for POST /things in {path}; record it with "
        "CALLBRIDGE_RECORD_MODE=once against the sandbox (delete the file first: once never "
        "adds to an existing cassette)")


async def test_a_miss_keeps_the_closest_recording_and_drops_advice_the_kit_cannot_take(
        tmp_path: Path) -> None:
    path = tmp_path / "miss.yaml"
    await exchange(path, "once", [("", {"n": 1})])
    with pytest.raises(CassetteMiss) as info:
        await exchange(path, "none", [("", {"n": 3})])
    text = str(info.value)
    assert "body_of_writes" in text  # which matcher the closest recording failed
    assert "How to fix" not in text and "record_mode='new_episodes'" not in text


async def test_a_miss_message_masks_the_number_it_searched_for(tmp_path: Path) -> None:
    with pytest.raises(CassetteMiss) as info:
        await exchange(tmp_path / "absent.yaml", "none", [("+13128675309", None)])
    assert "3128675309" not in str(info.value)
    assert "(the cassette file does not exist)" in str(info.value)


async def test_replay_never_writes_the_cassette(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(CassetteMiss):
        await exchange(path, "none", [("", {"n": 1})])
    assert not path.exists()


async def test_a_recorded_cassette_passes_the_checker(tmp_path: Path) -> None:
    path = tmp_path / "clean.yaml"
    await exchange(path, "once", [("+447911123456", None), ("", {"phone": "+61412345678"})])
    data = yaml.safe_load(path.read_text())
    data["metadata"] = {"recorded": "recorded against the echo sandbox on 2026-11-22"}
    path.write_text(yaml.safe_dump(data))
    assert check_cassette(path) == []


def test_the_pytest_entry_point_imports_neither_vcrpy_nor_the_http_layer() -> None:
    code = ("import sys, callbridge.testing.pytest_plugin; "
            "print(sorted(m for m in ('vcr', 'callbridge.http', 'callbridge.testing.suite') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
