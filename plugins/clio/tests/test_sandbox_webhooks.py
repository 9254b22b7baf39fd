"""The sandbox's webhooks: created pending with a handshake, activated by the shared
secret, renewed up to 31 days ahead, and signed deliveries for matter changes."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from callbridge.testing.clock import FakeClock
from callbridge_clio.sandbox import SandboxState, create_app

API = "https://app.clio.com/api/v4"
NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
HOOK = {"url": "https://callbridge.firm.example/v1/apps/acme/clio/events", "model": "matter",
        "fields": "id,status,close_date", "events": ["matter_closed", "updated"]}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def state(clock: FakeClock) -> SandboxState:
    st = SandboxState(clock=clock)
    st.add_user("Ann Lee", "ann@acme.example", authorised=True)
    return st


@pytest.fixture
async def api(state: SandboxState) -> AsyncIterator[httpx2.AsyncClient]:
    token = state.issue_token()["access_token"]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(state)),
                                  base_url=API,
                                  headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


async def create(api: httpx2.AsyncClient, **data: object) -> dict[str, object]:
    r = await api.post("/webhooks.json", params={"fields": "id,status,shared_secret,expires_at"},
                       json={"data": {**HOOK, **data}})
    assert r.status_code == 201, r.text
    created: dict[str, object] = r.json()["data"]
    return created


async def test_a_webhook_is_pending_until_activated_with_its_secret(
        api: httpx2.AsyncClient, state: SandboxState) -> None:
    hook = await create(api)
    assert hook["status"] == "pending" and hook["expires_at"] == "2026-03-05T09:00:00Z"
    (handshake,) = state.outbox
    assert handshake.headers["x-hook-secret"] == hook["shared_secret"] and handshake.body == b""
    wrong = await api.put(f"/webhooks/{hook['id']}/activate", headers={"X-Hook-Secret": "nope"})
    assert wrong.status_code == 403
    right = await api.put(f"/webhooks/{hook['id']}/activate", params={"fields": "status"},
                          headers={"X-Hook-Secret": str(hook["shared_secret"])})
    assert right.json()["data"]["status"] == "enabled"


async def test_only_https_urls_and_at_most_31_days(api: httpx2.AsyncClient) -> None:
    plain = await api.post("/webhooks.json", json={"data": {**HOOK, "url": "http://x.example/"}})
    assert plain.status_code == 422
    late = (NOW + timedelta(days=32)).isoformat()
    assert (await api.post("/webhooks.json", json={"data": {**HOOK, "expires_at": late}})
            ).status_code == 422


async def test_a_closed_matter_is_delivered_signed_while_the_webhook_lives(
        api: httpx2.AsyncClient, state: SandboxState, clock: FakeClock) -> None:
    hook = await create(api)
    await api.put(f"/webhooks/{hook['id']}/activate",
                  headers={"X-Hook-Secret": str(hook["shared_secret"])})
    client = state.add_contact("Dana", "Whitfield")
    matter = state.add_matter(client, "Lease")
    state.outbox.clear()
    state.close_matter(matter, on="2026-03-02")
    (delivery,) = state.outbox
    expected = hmac.new(str(hook["shared_secret"]).encode(), delivery.body,
                        hashlib.sha256).hexdigest()
    assert delivery.headers["x-hook-signature"] == expected
    assert json.loads(delivery.body) == {
        "data": {"id": matter, "status": "Closed", "close_date": "2026-03-02"},
        "meta": {"event": "matter_closed", "webhook_id": hook["id"]}}
    renewed = (NOW + timedelta(days=30)).isoformat()
    r = await api.patch(f"/webhooks/{hook['id']}.json", params={"fields": "expires_at"},
                        json={"data": {"expires_at": renewed}})
    assert r.json()["data"]["expires_at"] == "2026-04-01T09:00:00Z"
    clock.advance(31 * 86400)
    state.outbox.clear()
    state.reopen_matter(matter)
    assert state.outbox == []  # expired: nothing is delivered
