"""POST /v1/sources/{tenant}/{source}: signed events stored before the answer; duplicates
and revisions; every refusal a JSON error naming the problem, kept in the quarantine."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.runtime import load
from callbridge.serve.app import build_app, make_state
from callbridge.serve.state import ServerState

from tests.conftest import Notebook, write_config
from tests.serving import KEY, OLD_KEY, SOURCES, signed

URL = "/v1/sources/acme/pbx"


def call(event_id: str = "c-1", **extra: Any) -> dict[str, Any]:
    return {"kind": "call", "id": event_id, "direction": "inbound",
            "external": {"number": "+1 212 555 0142"},
            "started_at": "2026-03-02T09:00:00+00:00", "ended_at": "2026-03-02T09:03:00+00:00",
            "outcome": "completed", **extra}


@pytest.fixture
def state(tmp_path: Path, notebook: Notebook, secret_key: str,
          monkeypatch: pytest.MonkeyPatch) -> ServerState:
    monkeypatch.setenv("TEST_PBX_KEY", KEY)
    monkeypatch.setenv("TEST_PBX_OLD_KEY", OLD_KEY)
    config = write_config(tmp_path / "callbridge.toml", notebook.url,
                          extra=SOURCES + "\n[serve]\nmax_body_bytes = 4096\n"
                          "metrics_access = \"open\"\n")
    return make_state(load(config), worker=False)


@pytest.fixture
async def client(state: ServerState) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=build_app(state))
    async with httpx2.AsyncClient(transport=transport, base_url="http://serve.test") as c:
        yield c
    await state.engine.aclose()


def deliveries(state: ServerState) -> list[tuple[str, str]]:
    return [(v.app, v.status) for v in state.engine.ledger.history(limit=1000)]


def quarantined(state: ServerState) -> list[tuple[str | None, str]]:
    return [(e.tenant, e.reason) for e in state.quarantine.entries()]


async def test_a_signed_event_is_stored_before_it_is_acknowledged(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    body, headers = signed(call())
    answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.json() == {"received": 1, "events": [
        {"id": "c-1", "kind": "call", "result": "new"}]}
    pk = state.engine.ledger.find_event("acme", "pbx", "call", "c-1")
    assert pk is not None  # the tenant from the URL, the source from the URL's key
    assert state.engine.ledger.load_event(pk).tenant == "acme"
    assert deliveries(state) == [("crm", "pending")]


async def test_a_duplicate_is_acknowledged_and_changes_nothing(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    body, headers = signed(call())
    assert (await client.post(URL, content=body, headers=headers)).status_code == 200
    again = await client.post(URL, content=body, headers=headers)  # the same request, replayed
    assert again.status_code == 200 and again.json()["events"][0]["result"] == "duplicate"
    assert deliveries(state) == [("crm", "pending")]


async def test_revisions_arriving_out_of_order_end_as_in_order(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    ended = call(state="ended", sequence=3)
    ringing = {k: v for k, v in call(state="ringing", sequence=1).items()
               if k not in ("ended_at", "outcome")}
    for payload in (ended, ringing):
        body, headers = signed(payload)
        assert (await client.post(URL, content=body, headers=headers)).status_code == 200
    pk = state.engine.ledger.find_event("acme", "pbx", "call", "c-1")
    assert pk is not None
    kept = state.engine.ledger.load_event(pk)
    assert kept.state == "ended" and kept.sequence == 3  # type: ignore[union-attr]
    assert deliveries(state) == [("crm", "pending")]


async def test_an_array_of_events_is_taken_whole(client: httpx2.AsyncClient,
                                                 state: ServerState) -> None:
    body, headers = signed([call("c-1"), call("c-2")])
    answer = await client.post(URL, content=body, headers=headers)
    assert [e["result"] for e in answer.json()["events"]] == ["new", "new"]
    bad, headers = signed([call("c-3"), call("c-4", direction="sideways")])
    refused = await client.post(URL, content=bad, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "[1].direction"
    assert state.engine.ledger.find_event("acme", "pbx", "call", "c-3") is None


async def test_a_body_naming_another_tenant_is_refused_and_quarantined(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    body, headers = signed(call(tenant="globex"))
    answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 403
    assert answer.json() == {"error": {"field": "tenant",
                                       "problem": "names another tenant than the source's"}}
    assert quarantined(state) == [("acme", "403 tenant: names another tenant than the source's")]
    assert state.quarantine.content(state.quarantine.entries()[0].id) == body
    assert deliveries(state) == []


@pytest.mark.parametrize(("headers", "problem"), [
    ({}, "missing"),
    ({"Callbridge-Signature": "v1=abc"}, "is not t=<unix time>"),
    ({"Callbridge-Signature": f"t=NOW,v1={'0' * 64}"}, "does not match"),  # signed when sent
])
async def test_an_unauthenticated_request_is_refused_and_quarantined(
        client: httpx2.AsyncClient, state: ServerState, headers: dict[str, str],
        problem: str) -> None:
    headers = {k: v.replace("NOW", str(int(time.time()))) for k, v in headers.items()}
    answer = await client.post(URL, content=json.dumps(call()).encode(), headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["field"] == "Callbridge-Signature"
    assert problem in answer.json()["error"]["problem"]
    assert len(quarantined(state)) == 1 and deliveries(state) == []


async def test_a_signature_older_than_the_replay_window_is_refused(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    body, headers = signed(call(), at=time.time() - 301)
    answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 401
    assert "sign each request, retries included" in answer.json()["error"]["problem"]
    body, headers = signed(call(), at=time.time() + 301)  # from a clock far ahead, too
    assert (await client.post(URL, content=body, headers=headers)).status_code == 401
    assert deliveries(state) == []


async def test_both_keys_are_taken_during_a_rotation(client: httpx2.AsyncClient,
                                                     state: ServerState) -> None:
    for n, key in enumerate((KEY, OLD_KEY)):
        body, headers = signed(call(f"c-{n}"), key)
        assert (await client.post(URL, content=body, headers=headers)).status_code == 200
    body, headers = signed(call("c-9"), "a-key-of-no-one")
    assert (await client.post(URL, content=body, headers=headers)).status_code == 401
    # A sender rotating its own key signs with both: one v1 per key.
    raw = json.dumps(call("c-10")).encode()
    _, first = signed(raw, "a-key-of-no-one")
    _, second = signed(raw, KEY)
    both = first["Callbridge-Signature"] + "," + second["Callbridge-Signature"].split(",")[1]
    answer = await client.post(URL, content=raw, headers={"Callbridge-Signature": both})
    assert answer.status_code == 200


async def test_malformed_and_invalid_bodies_are_refused_naming_the_problem(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    body, headers = signed(b'{"kind": "call", ')
    answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "(json)"
    body, headers = signed(call(external={"number": "+1 212 555 0142 ext. banana"}))
    answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "external.number"
    assert "banana" not in answer.text  # the value is never echoed
    body, headers = signed(b'"just a string"')
    assert (await client.post(URL, content=body, headers=headers)).status_code == 400
    assert len(quarantined(state)) == 3 and deliveries(state) == []


async def test_an_oversized_body_is_refused_and_its_beginning_quarantined(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    body, headers = signed(call(notes="x" * 5000))
    answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 413
    assert answer.json()["error"] == {"field": "(body)", "problem": "larger than 4096 bytes"}
    entry = state.quarantine.entries()[0]
    assert entry.tenant == "acme" and entry.size == 4097
    assert deliveries(state) == []


async def test_an_unknown_tenant_or_source_gets_the_same_404(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    body, headers = signed(call())
    for url in ("/v1/sources/acme/fax-server", "/v1/sources/nobody/pbx"):
        answer = await client.post(url, content=body, headers=headers)
        assert answer.status_code == 404
        assert answer.json()["error"] == {"field": "(path)",
                                          "problem": "no such source for this tenant"}
    assert quarantined(state) == [(None, "404 (path): no such source for this tenant"),
                                  ("acme", "404 (path): no such source for this tenant")]


async def test_a_source_whose_key_is_not_set_refuses_everything(
        client: httpx2.AsyncClient, state: ServerState, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_PBX_KEY")
    monkeypatch.delenv("TEST_PBX_OLD_KEY")
    body, headers = signed(call())
    answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 503
    assert answer.json()["error"]["problem"] == "the source's key is not set on the server"
    assert deliveries(state) == []


async def test_metrics_count_events_received_and_requests_refused(
        client: httpx2.AsyncClient) -> None:
    body, headers = signed(call())
    await client.post(URL, content=body, headers=headers)
    await client.post(URL, content=body, headers=headers)
    await client.post(URL, content=body, headers={})
    text = (await client.get("/metrics")).text
    for result in ("new", "duplicate"):
        assert (f'callbridge_events_received_total{{kind="call",result="{result}",'
                f'source="pbx",tenant="acme"}} 1.0') in text
    assert 'callbridge_requests_refused_total{reason="unauthenticated",status="401"} 1.0' in text
    assert "callbridge_ack_seconds_count 3.0" in text


def test_adapters_are_found_by_their_entry_point() -> None:
    from callbridge.errors import ConfigError
    from callbridge.sources.base import SourceAdapter, formats, load_adapter
    from callbridge.sources.native import NativeSource

    assert formats()["callbridge"].value == "callbridge.sources.native:NativeSource"
    adapter = load_adapter("callbridge")
    assert isinstance(adapter, NativeSource) and isinstance(adapter, SourceAdapter)
    assert load_adapter("callbridge") is adapter  # made once
    with pytest.raises(ConfigError, match="no source adapter for format 'nowhere'"):
        load_adapter("nowhere")


async def test_a_source_whose_format_is_not_installed_refuses_everything(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    path = state.runtime.settings.path
    assert path is not None
    path.write_text(path.read_text().replace('secret_env = "TEST_PBX_KEY"',
                                             'secret_env = "TEST_PBX_KEY"\nformat = "nowhere"'))
    body, headers = signed(call())
    answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 503
    assert answer.json()["error"]["problem"] == "the source's format is not installed on the server"
    assert deliveries(state) == [] and len(quarantined(state)) == 1


async def test_events_the_ledger_cannot_store_are_not_acknowledged(
        client: httpx2.AsyncClient, state: ServerState, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    async def broken(events: object) -> object:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(state.engine, "ingest_many", broken)
    body, headers = signed(call())
    answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["error"]["field"] == "(server)"
    assert "disk" not in answer.text
    assert quarantined(state) == []  # not the sender's fault: nothing to keep


async def test_an_internal_error_is_a_json_500(state: ServerState,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr("callbridge.serve.intake.load_adapter", broken)
    transport = httpx2.ASGITransport(app=build_app(state), raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://serve.test") as client:
        body, headers = signed(call())
        answer = await client.post(URL, content=body, headers=headers)
    assert answer.status_code == 500
    assert answer.json() == {"error": {"field": "(server)",
                                       "problem": "an internal error; it has been logged"}}
    await state.engine.aclose()


async def test_readyz_counts_the_sources_that_cannot_take_events(
        client: httpx2.AsyncClient, state: ServerState, monkeypatch: pytest.MonkeyPatch) -> None:
    from callbridge.serve.health import unready_sources

    assert (await client.get("/readyz")).json()["checks"]["sources"] == "ok"
    monkeypatch.delenv("TEST_PBX_KEY")
    monkeypatch.delenv("TEST_PBX_OLD_KEY")
    answer = await client.get("/readyz")
    assert answer.status_code == 200  # one source's problem does not stop the others
    assert answer.json()["checks"]["sources"].startswith("1 cannot take events")
    assert "acme" not in answer.text and "pbx" not in answer.text  # names only in the log
    assert unready_sources(state.runtime.settings.current()) == [
        "acme/pbx: its key (TEST_PBX_KEY) is not set"]


async def test_a_body_that_does_not_arrive_in_time_is_refused(
        tmp_path: Path, notebook: Notebook, secret_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from callbridge.testing.clock import FakeClock

    monkeypatch.setenv("TEST_PBX_KEY", KEY)
    clock = FakeClock(autojump=True)  # jumps over the server's wait once all else waits
    config = write_config(tmp_path / "callbridge.toml", notebook.url,
                          extra=SOURCES + "\n[serve]\nread_timeout_seconds = 30\n")
    state = make_state(load(config), clock=clock, worker=False)
    never = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"kind": "call", '
        await never.wait()  # the sender stalls
        yield b"}"

    transport = httpx2.ASGITransport(app=build_app(state))
    async with httpx2.AsyncClient(transport=transport, base_url="http://serve.test") as client:
        answer = await client.post(URL, content=slow_body())
    assert answer.status_code == 408
    assert answer.json()["error"] == {"field": "(body)", "problem": "not received within 30 s"}
    assert clock.jumped == 30
    assert [e.reason for e in state.quarantine.entries()] == [
        "408 (body): not received within 30 s"]
    assert state.quarantine.content(state.quarantine.entries()[0].id) == b'{"kind": "call", '
    await state.engine.aclose()


async def test_new_events_wake_the_scheduler_and_duplicates_do_not(
        client: httpx2.AsyncClient, state: ServerState, monkeypatch: pytest.MonkeyPatch) -> None:
    wakes: list[bool] = []
    monkeypatch.setattr(state.engine.scheduler, "wake", lambda: wakes.append(True))
    body, headers = signed(call())
    await client.post(URL, content=body, headers=headers)
    assert wakes == [True]  # worked now, not at the next due time of what waits
    await client.post(URL, content=body, headers=headers)
    assert wakes == [True]


async def test_a_body_cut_short_by_the_sender_is_read_as_such() -> None:
    from callbridge.clock import SYSTEM
    from callbridge.serve.intake import Deadlines, read_body

    messages = [{"type": "http.request", "body": b'{"kind": ', "more_body": True},
                {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    read = await read_body(receive, 4096, Deadlines(SYSTEM), 30)
    assert read.cut and not read.late and not read.too_long and read.data == b'{"kind": '


async def test_other_methods_and_longer_paths_are_answered_by_the_apps_routing(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    body, headers = signed(call())
    longer = await client.post(URL + "/more", content=body, headers=headers)
    assert longer.status_code == 404 and longer.json()["error"]["field"] == "(path)"
    got = await client.get(URL)
    assert got.status_code == 405 and got.json()["error"]["field"] == "(method)"
    assert deliveries(state) == [] and quarantined(state) == []
