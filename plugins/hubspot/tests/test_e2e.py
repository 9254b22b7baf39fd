"""SPEC §2 and §3 (a sales CRM) end to end: the host's engine, a real SQLite ledger, the
HubSpot plugin and the HubSpot sandbox over real HTTP on loopback."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from callbridge.doctor import diagnose
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.faults import FaultInjector, serve_in_thread
from callbridge.ledger import DeliveryView, Ledger
from callbridge.runtime import load
from callbridge_hubspot.portal import Portal
from callbridge_hubspot.sandbox import Limits, create_app

TOKEN = "pat-na1-e2e-0000"
NEW = ["+12125550171", "+12125550172", "+12125550173", "+12125550174"]


@dataclass
class Served:
    portal: Portal
    limits: Limits
    faults: FaultInjector
    url: str


@pytest.fixture
def served() -> Iterator[Served]:
    portal = Portal(tokens={TOKEN})
    portal.add_owner("Ann", "Lee", "ann@acme.example")  # 101
    portal.add_owner("Bob", "Stone", "bob@acme.example")  # 102
    portal.add_contact("Dana", "Whitfield", "(212) 555-0142", email="dana@example.com")  # 103
    limits = Limits(burst=100, daily=250_000)
    faults = create_app(portal, limits=limits)
    with serve_in_thread(faults) as url:
        yield Served(portal, limits, faults, url)


@pytest.fixture
async def engine(tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[Callable[..., Engine]]:
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    monkeypatch.setenv("ACME_HUBSPOT_TOKEN", TOKEN)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "hubspot")
    made: list[Engine] = []

    def make(app: str = "") -> Engine:
        path = tmp_path / "callbridge.toml"
        path.write_text(textwrap.dedent(f"""
        [ledger]
        url = "sqlite:///{tmp_path / 'ledger.db'}"
        lease_seconds = 10

        [tenants.acme]
        default_region = "US"
        own_numbers = ["+1 212 555 0100"]
        extensions = {{ "101" = "ann@acme.example", "102" = "bob@acme.example" }}

        [tenants.acme.apps.hubspot]
        credentials_env = "ACME_HUBSPOT"
        {app}

        [tenants.acme.apps.hubspot.options]
        api_base_url = "{served.url}"
        portal_time_zone = "America/New_York"
        search_settle_seconds = 0
        """))
        built = load(path, strict=True).engine()
        made.append(built)
        return built

    yield make
    for built in made:
        await built.aclose()


def call(number: str, *, direction: str = "inbound", outcome: str = "completed",
         ident: str | None = None, **changes: Any) -> Any:
    data: dict[str, Any] = {
        "kind": "call", "id": ident or f"{direction}-{outcome}-{number}", "tenant": "acme",
        "direction": direction, "external": {"number": number},
        "internal": {"extension": "101", "number": "+12125550100"},
        "started_at": "2026-03-02T15:00:00+00:00", "ended_at": "2026-03-02T15:04:12+00:00",
        "outcome": outcome}
    if outcome == "completed":
        data["answered_at"] = "2026-03-02T15:00:06+00:00"
    return parse_event({**data, **changes}, region="US")


async def deliver(engine: Engine, *events: Any) -> list[DeliveryView]:
    stored = [await engine.ingest(e) for e in events]
    await engine.run_until_idle(event_pks=[s.event_pk for s in stored])
    views = [engine.ledger.find_delivery("acme", "hubspot", s.event_pk) for s in stored]
    assert all(v is not None for v in views)
    return [v for v in views if v is not None]


def contacts_with(portal: Portal, number: str) -> list[str]:
    return [c["id"] for c in portal.objects["contacts"].values()
            if c["properties"].get("phone") == number]


KINDS = [("inbound", "completed"), ("inbound", "missed"), ("outbound", "completed"),
         ("outbound", "missed")]
ADMITTED = {
    "incoming": {("inbound", "completed"), ("inbound", "missed")},
    "outgoing": {("outbound", "completed"), ("outbound", "missed")},
    "missed": {("inbound", "missed"), ("outbound", "missed")},
    "completed": {("inbound", "completed"), ("outbound", "completed")},
    "all": set(KINDS),
    "none": set(),
}


@pytest.mark.parametrize("policy", sorted(ADMITTED))
async def test_the_creation_policy_decides_for_each_kind_of_call(
        engine: Callable[..., Engine], served: Served, policy: str) -> None:
    built = engine(f'contact_creation = ["{policy}"]' if policy != "none" else "")
    events = [call(number, direction=d, outcome=o) for number, (d, o) in zip(NEW, KINDS, strict=True)]
    views = await deliver(built, *events)
    for number, kind, view in zip(NEW, KINDS, views, strict=True):
        made = contacts_with(served.portal, number)
        assert view.status == "logged", (kind, view.status, view.message)
        (record,) = [r for r in view.records if r.kind == "call"]
        linked = served.portal.associated("calls", record.id)
        if kind in ADMITTED[policy]:
            assert len(made) == 1, (policy, kind)
            assert linked == [("contacts", made[0], 194)]
        else:
            assert made == [], (policy, kind)
            assert linked == []  # logged unassociated


async def test_a_known_caller_is_linked_and_the_owner_matched_by_email(
        engine: Callable[..., Engine], served: Served) -> None:
    (view,) = await deliver(engine(), call("+1 212 555 0142", ident="known",
                                                 internal={"extension": "102"}))
    record = served.portal.objects["calls"][view.records[0].id]
    assert served.portal.associated("calls", record["id"]) == [("contacts", "103", 194)]
    assert record["properties"]["hubspot_owner_id"] == "102"  # Bob, by his extension's email


async def test_two_events_from_one_new_number_make_one_contact(
        engine: Callable[..., Engine], served: Served) -> None:
    built = engine('contact_creation = ["all"]')
    views = await deliver(built, call(NEW[0], ident="first"), call(NEW[0], ident="second",
                                                                   outcome="missed"))
    assert [v.status for v in views] == ["logged", "logged"]
    (contact,) = contacts_with(served.portal, NEW[0])
    for view in views:
        (record,) = [r for r in view.records if r.kind == "call"]
        assert served.portal.associated("calls", record.id) == [("contacts", contact, 194)]


async def test_the_daily_limit_parks_until_the_portals_midnight_without_a_storm(
        engine: Callable[..., Engine], served: Served, tmp_path: Path) -> None:
    served.limits.daily = 0
    built = engine()
    views = await deliver(built, call("+12125550142", ident="a"), call("+12125550142", ident="b"))
    sent = len(served.portal.requests)
    assert sent <= 2  # the first answer parks the portal; the rest is not sent
    now = datetime.now(ZoneInfo("America/New_York"))
    midnight = datetime(now.year, now.month, now.day, tzinfo=ZoneInfo("America/New_York"))
    for view in views:
        assert (view.status, view.reason) == ("parked", "daily_limit"), view
        assert view.next_attempt_at is not None
        wait = (view.next_attempt_at - midnight).total_seconds()
        assert 86400 - 120 <= wait <= 86400 + 120  # the next midnight in New York
    await built.run_until_idle()
    assert len(served.portal.requests) == sent
    report = diagnose(tmp_path / "callbridge.toml")
    (line,) = [c for c in report["checks"] if c["name"].startswith("acme/hubspot")
               and ("daily" in c["name"] or "daily_limit" in c["detail"])]
    assert line["status"] == "warn" and "2 deliveries" in line["detail"]


async def test_a_known_contacts_call_costs_one_request_with_the_index_and_owners_warm(
        engine: Callable[..., Engine], served: Served) -> None:
    built = engine()
    await built.sync_indexes()
    await deliver(built, call("+12125550142", ident="warm-up"))  # owners, marker property
    before = len(served.portal.requests)
    (view,) = await deliver(built, call("+12125550142", ident="measured"))
    sent = [f"{r['method']} {r['path']}" for r in served.portal.requests[before:]]
    assert view.status == "logged" and sent == ["POST /crm/v3/objects/calls"]


async def test_a_backlog_of_a_thousand_calls_through_the_engine(
        engine: Callable[..., Engine], served: Served) -> None:
    """The backlog figure at host level: 900 calls from 300 known contacts and 100 from
    unknown numbers (creation policy none), with the index synced."""
    for i in range(300):
        served.portal.add_contact("Client", f"No {i}", f"+1{(212, 646, 718)[i // 100]}555{i % 100:04d}")
    built = engine()
    before_sync = len(served.portal.requests)
    await built.sync_indexes()
    synced = len(served.portal.requests) - before_sync  # syncs count too
    # Without the host's batches each call is one write, paced by HubSpot's burst limit
    # (100 per 10 s): minutes of waiting. Five calls show which host this is.
    probe = len(served.portal.requests)
    await deliver(built, *[call("+12125550142", ident=f"probe-{i}") for i in range(5)])
    assert [r for r in served.portal.requests[probe:] if r["path"].endswith("/batch/create")], \
        "the host's worker sends due deliveries of one portal with log_batch"
    start = len(served.portal.requests)
    events = [call(f"+1{(212, 646, 718)[(i // 3) // 100]}555{(i // 3) % 100:04d}", ident=f"bl-{i}")
              for i in range(900)]
    events += [call(f"+1917555{i % 100:04d}", ident=f"bl-new-{i}") for i in range(100)]
    views = await deliver(built, *events)
    assert all(v.status == "logged" for v in views)
    spent = len(served.portal.requests) - start + synced
    kinds = Counter(f"{r['method']} {r['path']}" for r in served.portal.requests[start:])
    print(f"\nbacklog through the engine: {spent} requests for 1,000 calls = {spent / 1000:.3f}"
          f" (index sync {synced}; {dict(kinds)})")
    assert spent / 1000 <= 0.05, spent
