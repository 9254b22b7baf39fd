"""The logging modes over the operator API: POST /v1/events/{id}/log, /contact and
/notes (POST, DELETE), behind operator authentication, against the notebook app on
loopback and a real ledger, through the server's own app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.runtime import load
from callbridge.serve.app import build_app, make_state
from callbridge.serve.auth import token_hash

from tests.conftest import Notebook, write_config

pytestmark = pytest.mark.usefixtures("secret_key")

ALL = "cbo_all-tenants-operator-token-0123456789"
DESK = "cbo_globex-only-operator-token-012345678"
OPERATORS = f"""
[operators.ops]
token_sha256 = "{token_hash(ALL)}"
tenants = "all"

[operators.desk]
token_sha256 = "{token_hash(DESK)}"
tenants = ["globex"]

[tenants.globex.apps.crm]
plugin = "notebook"
"""


@dataclass
class Api:
    client: httpx2.AsyncClient
    engine: Engine
    notebook: Notebook

    async def call(self, method: str, url: str, body: Any = None, token: str | None = ALL,
                   ) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.request(method, url, json=body, headers=headers)


def call(event_id: str, *, minutes_ago: int = 10, ended: bool = True, **over: Any) -> Any:
    start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    data: dict[str, Any] = {"kind": "call", "id": event_id, "tenant": "acme",
                            "direction": "inbound", "external": {"number": "(212) 555-0142"},
                            "started_at": start.isoformat(), **over}
    if ended:
        data.update(ended_at=(start + timedelta(minutes=3)).isoformat(), outcome="completed")
    else:
        data["state"] = "in_progress"
    return parse_event(data)


@pytest.fixture
async def api(tmp_path: Path, notebook: Notebook, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[Api]:
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    runtime = load(write_config(tmp_path / "callbridge.toml", notebook.url, extra=OPERATORS),
                   strict=True)
    state = make_state(runtime, worker=False)
    transport = httpx2.ASGITransport(app=build_app(state))
    async with httpx2.AsyncClient(transport=transport, base_url="http://cb.test") as client:
        yield Api(client, state.engine, notebook)
    await state.engine.aclose()


async def test_an_unresolved_call_is_resolved_among_its_candidates_then_refused_twice(
        api: Api) -> None:
    first = api.notebook.state.add_contact("Ada Lovelace", ["+1 212 555 0142"])
    second = api.notebook.state.add_contact("Ada L.", ["2125550142"])
    stored = await api.engine.ingest(call("call-501"))
    await api.engine.run_until_idle()
    url = "/v1/events/call-501"
    stranger = await api.call("POST", url + "/contact", {"app": "crm", "contact": "c999"})
    assert stranger.status_code == 422 and stranger.json()["error"]["field"] == "contact"
    assert "c999" not in stranger.text
    chosen = await api.call("POST", url + "/contact", {"app": "crm", "contact": second})
    assert chosen.status_code == 200, chosen.text
    body = chosen.json()
    assert (body["event"], body["status"]) == (stored.event_pk, "logged")
    again = await api.call("POST", f"/v1/events/{stored.event_pk}/log", {"app": "crm"})
    assert again.status_code == 409 and "already logged" in again.json()["error"]["problem"]
    assert [log["contact_ids"] for log in api.notebook.state.logs.values()] == [[second]]
    assert first != second


async def test_notes_during_a_call_then_cancelled_and_the_refusals(api: Api) -> None:
    stored = await api.engine.ingest(call("call-502", ended=False, minutes_ago=1))
    url = "/v1/events/call-502/notes"
    added = await api.call("POST", url, {"apps": ["crm"], "text": "Asked about the lease"})
    assert added.status_code == 200, added.text
    assert added.json()["apps"] == {"crm": "delayed"}
    view = api.engine.ledger.find_delivery("acme", "crm", stored.event_pk)
    assert view is not None and (view.status, view.reason, view.mode) == (
        "waiting", "delay", "delayed")
    cancelled = await api.call("DELETE", url)
    assert cancelled.status_code == 200 and cancelled.json()["changed"] == 1
    assert api.engine.ledger.find_delivery("acme", "crm", stored.event_pk) is None
    for body, field in (({"apps": [], "text": "x"}, "apps"), ({"apps": ["crm"]}, "text"),
                        ({"apps": ["crm"], "text": "x", "started_at": "yesterday"}, "started_at"),
                        ({"apps": ["nope"], "text": "x"}, "app"),
                        ({"apps": ["crm"], "text": "x", "colour": 1}, "colour")):
        refused = await api.call("POST", url, body)
        assert refused.status_code in (400, 422) and refused.json()["error"]["field"] == field


async def test_every_action_needs_an_operator_allowed_for_the_events_tenant(api: Api) -> None:
    await api.engine.ingest(call("call-503"))
    for method, suffix in (("POST", "log"), ("POST", "contact"), ("POST", "notes"),
                           ("DELETE", "notes")):
        url = f"/v1/events/call-503/{suffix}"
        assert (await api.call(method, url, {"app": "crm"}, token=None)).status_code == 401
        forbidden = await api.call(method, url, {"app": "crm"}, token=DESK)
        assert forbidden.status_code in (403, 404)  # the desk's tenant has no such event
    assert (await api.call("POST", "/v1/events/nope/log", {"app": "crm"})).status_code == 404
    assert api.notebook.state.logs == {}
