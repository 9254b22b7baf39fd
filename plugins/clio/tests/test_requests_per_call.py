"""How many Clio API requests one logged call costs (the figures in docs/plugins/clio.md)."""

from __future__ import annotations

from typing import Any

from callbridge.events import parse_event


def call(i: int, number: str = "2125550142") -> Any:
    return parse_event({
        "kind": "call", "id": f"c-{i}", "tenant": "acme", "direction": "inbound",
        "external": {"number": number}, "internal": {"extension": "101"},
        "started_at": "2026-03-02T15:00:00Z", "answered_at": "2026-03-02T15:00:12Z",
        "ended_at": "2026-03-02T15:06:12Z", "outcome": "completed"})


def api_requests(sandbox: Any) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in sandbox.state.requests if r["path"].startswith("/api/v4/")]


async def test_requests_for_a_first_and_a_repeat_call_from_a_known_contact(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    engine = clio_engine()
    await engine.sync_indexes()
    sandbox.state.requests.clear()
    await engine.ingest(call(1))
    await engine.run_until_idle()
    first = api_requests(sandbox)
    sandbox.state.requests.clear()
    await engine.ingest(call(2))
    await engine.run_until_idle()
    repeat = api_requests(sandbox)
    assert first == ["GET /api/v4/matters.json", "GET /api/v4/relationships.json",
                     "GET /api/v4/users.json", "POST /api/v4/communications.json",
                     "POST /api/v4/activities.json"]
    assert repeat == ["GET /api/v4/matters.json", "GET /api/v4/relationships.json",
                      "POST /api/v4/communications.json", "POST /api/v4/activities.json"]


async def test_requests_for_a_call_before_any_index_sync(clio_engine: Any, sandbox: Any,
                                                          firm: dict[str, int]) -> None:
    engine = clio_engine()
    sandbox.state.requests.clear()
    await engine.ingest(call(1))
    await engine.run_until_idle()
    # A live search: the last four digits, the E.164 form and the national digits.
    assert api_requests(sandbox)[:3] == ["GET /api/v4/contacts.json"] * 3
    assert len(api_requests(sandbox)) == 8


async def test_requests_for_a_new_caller_who_gets_a_contact(clio_engine: Any, sandbox: Any,
                                                            firm: dict[str, int]) -> None:
    engine = clio_engine(app='contact_creation = "all"')
    await engine.sync_indexes()
    sandbox.state.requests.clear()
    await engine.ingest(call(1, "+1 718 555 0130"))
    await engine.run_until_idle()
    assert api_requests(sandbox) == [
        "GET /api/v4/contacts.json",  # the catch-up sync confirms the index's miss
        "POST /api/v4/contacts.json", "GET /api/v4/matters.json", "GET /api/v4/relationships.json",
        "GET /api/v4/users.json", "POST /api/v4/communications.json", "POST /api/v4/activities.json"]
