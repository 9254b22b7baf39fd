"""The operator API's read side and re-queueing (issue 13 point 6), over a real
ledger and the notebook app on loopback, served by Starlette."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.models import Contact, Outcome, OutcomeStatus, Record
from callbridge.runtime import load
from callbridge.serve.app import build_app, make_state
from callbridge.serve.auth import token_hash
from callbridge.testing.clock import FakeClock
from starlette.testclient import TestClient

from tests.conftest import Notebook, write_config

pytestmark = pytest.mark.usefixtures("secret_key")

ALL = "cbo_all-tenants-operator-token-0123456789"
ACME = "cbo_acme-only-operator-token-0123456789ab"
OPERATORS = f"""
[operators.ops]
token_sha256 = "{token_hash(ALL)}"
tenants = "all"

[operators.desk]
token_sha256 = "{token_hash(ACME)}"
tenants = ["acme"]

[tenants.globex]
default_region = "US"
[tenants.globex.apps.crm]
plugin = "notebook"
"""


@dataclass
class Served:
    client: TestClient
    engine: Engine
    ledger: Ledger
    pks: dict[str, int]
    path: Path


def call(event_id: str, tenant: str = "acme", minute: int = 0, **over: Any) -> Any:
    start = datetime(2026, 3, 2, 10, minute, tzinfo=UTC)
    data: dict[str, Any] = {
        "kind": "call", "id": event_id, "tenant": tenant, "direction": "inbound",
        "external": {"number": "(212) 555-0142", "name": "Dana Whitfield"},
        "internal": {"email": "ann@acme.example"},
        "started_at": start.isoformat(), "ended_at": (start + timedelta(minutes=3)).isoformat(),
        "outcome": "completed", **over}
    return parse_event(data)


def finish(ledger: Ledger, pk: int, outcome: Outcome) -> None:
    """Settle a stored event's delivery as a worker would."""
    (claim,) = ledger.claim(owner="test", limit=1, lease_seconds=30, event_pks=[pk])
    for record in outcome.records:
        ledger.remember(claim, record)
    ledger.finish(claim, outcome)


@pytest.fixture
async def served(tmp_path: Path, notebook: Notebook, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[Served]:
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    path = write_config(tmp_path / "callbridge.toml", notebook.url, extra=OPERATORS)
    runtime = load(path, strict=True)
    engine = runtime.engine()
    ledger = engine.ledger
    pks: dict[str, int] = {}
    for name, event in [("logged", call("c-logged-0001", minute=1)),
                        ("unresolved", call("c-unresolved-0002", minute=2)),
                        ("dead", call("c-dead-0003", minute=3)),
                        ("failed", call("c-failed-0004", minute=4)),
                        ("parked", call("c-parked-0005", minute=5)),
                        ("globex", call("c-globex-0006", tenant="globex", minute=6)),
                        ("ringing", call("c-ringing-0007", minute=7, state="ringing",
                                         ended_at=None, outcome=None))]:
        apps = [] if name == "ringing" else ["crm"]
        pks[name] = ledger.store_event(event, apps=apps).event_pk
    finish(ledger, pks["logged"], Outcome(status=OutcomeStatus.LOGGED,
                                          records=(Record(kind="log", id="L-1"),)))
    finish(ledger, pks["unresolved"], Outcome(
        status=OutcomeStatus.UNRESOLVED, reason="several_matches",
        candidates=(Contact(id="C-1", name="Dana Whitfield"), Contact(id="C-2", name="Sam Whitfield"))))
    finish(ledger, pks["dead"], Outcome(status=OutcomeStatus.DEAD, reason="deadline",
                                        message="gave up at the deadline after 1 attempt(s)"))
    finish(ledger, pks["failed"], Outcome(status=OutcomeStatus.FAILED, reason="validation",
                                          message="the app refused the log"))
    finish(ledger, pks["parked"], Outcome(status=OutcomeStatus.PARKED, reason="reauthorise",
                                          message="re-authorise"))
    finish(ledger, pks["globex"], Outcome(status=OutcomeStatus.DEAD, reason="deadline"))
    # The server as `callbridge serve` builds it (the worker is run by the tests).
    with TestClient(build_app(make_state(runtime, engine=engine, worker=False))) as client:
        yield Served(client, engine, ledger, pks, path)
    await engine.aclose()


def get(served: Served, url: str, token: str = ALL) -> Any:
    answer = served.client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_events_are_listed_newest_first_with_their_outcome_per_app(served: Served) -> None:
    body = get(served, "/v1/operator/events")
    pks = served.pks
    assert [e["event"] for e in body["events"]] == sorted(pks.values(), reverse=True)
    by_pk = {e["event"]: e for e in body["events"]}
    logged = by_pk[pks["logged"]]
    assert logged["tenant"] == "acme" and logged["kind"] == "call"
    assert logged["event_id"] == "*********0001"  # masked, as `callbridge history` shows it
    assert logged["outcomes"]["crm"]["status"] == "logged"
    assert logged["outcomes"]["crm"]["records"] == [{"kind": "log", "id": "L-1", "step": "log"}]
    assert by_pk[pks["ringing"]]["outcomes"] == {}  # a call in progress: nothing to log yet
    assert by_pk[pks["parked"]]["outcomes"]["crm"]["reason"] == "reauthorise"


def test_no_phone_number_and_no_event_content_is_shown(served: Served) -> None:
    text = served.client.get("/v1/operator/events?limit=500",
                             headers={"Authorization": f"Bearer {ALL}"}).text
    # (times carry microseconds, so a number is looked for in the forms it was sent in)
    for fragment in ("2125550142", "555-0142", "555 0142", "(212)", "ann@acme", "c-logged",
                     "T10:09:00"):
        assert fragment not in text  # numbers, emails, event ids, event contents (an end)
    assert text.count("Dana Whitfield") == 1  # the unresolved event's candidate, not the caller


def test_filters_and_pages(served: Served) -> None:
    pks = served.pks
    dead = get(served, "/v1/operator/events?status=dead,failed")
    assert {e["event"] for e in dead["events"]} == {pks["dead"], pks["failed"], pks["globex"]}
    acme = get(served, "/v1/operator/events?tenant=globex&app=crm")
    assert [e["event"] for e in acme["events"]] == [pks["globex"]]
    assert get(served, "/v1/operator/events?since=2026-03-02T10:06:00%2B00:00")["events"][0][
        "event"] == pks["ringing"]
    seen: list[int] = []
    url = "/v1/operator/events?limit=3"
    while True:
        page = get(served, url)
        seen += [e["event"] for e in page["events"]]
        if page["next_before"] is None:
            break
        url = f"/v1/operator/events?limit=3&before={page['next_before']}"
    assert seen == sorted(pks.values(), reverse=True)


def test_an_operator_sees_only_its_tenants(served: Served) -> None:
    body = get(served, "/v1/operator/events", token=ACME)
    assert served.pks["globex"] not in {e["event"] for e in body["events"]}
    assert len(body["events"]) == len(served.pks) - 1
    dead = get(served, "/v1/operator/dead", token=ACME)
    assert [d["event"] for d in dead["deliveries"]] == [served.pks["dead"]]
    headers = {"Authorization": f"Bearer {ACME}"}
    assert served.client.get("/v1/operator/events?tenant=globex",
                             headers=headers).status_code == 403
    globex_delivery = get(served, "/v1/operator/dead?tenant=globex")["deliveries"][0]
    for url in (f"/v1/operator/events/{served.pks['globex']}",
                f"/v1/operator/deliveries/{globex_delivery['delivery']}"):
        assert served.client.get(url, headers=headers).json()["error"]["field"] == "tenant"
    answer = served.client.post(
        f"/v1/operator/deliveries/{globex_delivery['delivery']}/requeue", headers=headers)
    assert answer.status_code == 403
    assert served.ledger.delivery(globex_delivery["delivery"]).status == "dead"


def test_unresolved_events_come_with_their_candidates(served: Served) -> None:
    (item,) = get(served, "/v1/operator/unresolved")["deliveries"]
    assert item["event"] == served.pks["unresolved"] and item["status"] == "unresolved"
    assert item["candidates"] == [{"id": "C-1", "name": "Dana Whitfield"},
                                  {"id": "C-2", "name": "Sam Whitfield"}]


def test_one_event_shows_each_deliverys_attempts(served: Served) -> None:
    body = get(served, f"/v1/operator/events/{served.pks['dead']}")
    (attempt,) = body["outcomes"]["crm"]["history"]
    assert attempt["status"] == "dead" and attempt["reason"] == "deadline"
    assert served.client.get("/v1/operator/events/999999",
                             headers={"Authorization": f"Bearer {ALL}"}).status_code == 404


@pytest.mark.parametrize(("url", "field"), [
    ("/v1/operator/events?status=lost", "status"),
    ("/v1/operator/events?limit=0", "limit"),
    ("/v1/operator/events?limit=501", "limit"),
    ("/v1/operator/events?before=-1", "before"),
    ("/v1/operator/events?since=yesterday", "since"),
    ("/v1/operator/events?since=2026-03-02T10:00:00", "since"),
    ("/v1/operator/events?tenant=a%20b", "tenant"),
    ("/v1/operator/events?colour=blue", "colour"),
    ("/v1/operator/unresolved?status=dead", "status"),
])
def test_a_bad_parameter_is_a_400_naming_it(served: Served, url: str, field: str) -> None:
    answer = served.client.get(url, headers={"Authorization": f"Bearer {ALL}"})
    assert answer.status_code == 400 and answer.json()["error"]["field"] == field
    assert "blue" not in answer.text and "yesterday" not in answer.text


def test_every_endpoint_needs_a_token(served: Served) -> None:
    for route in served.client.app.routes:  # type: ignore[attr-defined]
        if not route.path.startswith("/v1/operator/") or route.path.endswith("openapi.json"):
            continue  # (the API's description is public, as the intake's is)
        path = (route.path.replace("{event:int}", "1").replace("{delivery:int}", "1")
                .replace("{app}", "crm"))
        method = "POST" if path.endswith(("requeue", "links")) else "GET"
        answer = served.client.request(method, path)
        assert answer.status_code == 401, path
        assert answer.json()["error"]["field"] == "authorization"


async def test_a_dead_delivery_requeued_is_logged_and_others_are_refused(
        served: Served, notebook: Notebook) -> None:
    notebook.state.add_contact("Dana Whitfield", ["2125550142"])
    headers = {"Authorization": f"Bearer {ACME}"}
    views = {name: served.ledger.find_delivery("acme", "crm", pk)
             for name, pk in served.pks.items() if name not in ("ringing", "globex")}
    for name, problem in [("logged", "is logged: it is never logged twice"),
                          ("parked", "is parked: it resumes on its own"),
                          ("unresolved", "is unresolved: only a dead or failed delivery")]:
        view = views[name]
        assert view is not None
        answer = served.client.post(f"/v1/operator/deliveries/{view.delivery_id}/requeue",
                                    headers=headers)
        assert answer.status_code == 409 and problem in answer.json()["error"]["problem"]
        assert served.ledger.delivery(view.delivery_id).status == view.status
    dead = views["dead"]
    assert dead is not None
    answer = served.client.post(f"/v1/operator/deliveries/{dead.delivery_id}/requeue",
                                headers=headers)
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    assert served.client.post(f"/v1/operator/deliveries/{dead.delivery_id}/requeue",
                              headers=headers).status_code == 409  # once
    await served.engine.run_until_idle(event_pks=[served.pks["dead"]])
    after = get(served, f"/v1/operator/deliveries/{dead.delivery_id}", token=ACME)
    assert after["status"] == "logged" and [h["status"] for h in after["history"]] == [
        "dead", "logged"]
    assert len(notebook.state.logs) == 1
    assert served.client.post("/v1/operator/deliveries/999999/requeue",
                              headers=headers).status_code == 404


async def test_two_operators_requeueing_at_once_requeue_once(served: Served) -> None:
    view = served.ledger.find_delivery("acme", "crm", served.pks["failed"])
    assert view is not None
    results = await asyncio.gather(*[
        asyncio.to_thread(served.ledger.requeue_ended, view.delivery_id) for _ in range(4)])
    assert sorted(results) == [False, False, False, True]


def test_metrics_need_an_operator_of_every_tenant_unless_opened(served: Served) -> None:
    client = served.client
    assert client.get("/metrics").status_code == 401
    scoped = client.get("/metrics", headers={"Authorization": f"Bearer {ACME}"})
    assert scoped.status_code == 403 and scoped.json()["error"]["field"] == "authorization"
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {ALL}"})
    assert answer.status_code == 200
    assert 'callbridge_operator_auth_failures_total{reason="unauthenticated"} 1.0' in answer.text
    assert 'callbridge_operator_auth_failures_total{reason="forbidden_tenant"} 1.0' in answer.text
    assert 'callbridge_deliveries{app="crm",reason="deadline",status="dead"} 2.0' in answer.text
    # A changed settings file applies from the next request.
    served.path.write_text(served.path.read_text() + '\n[serve]\nmetrics_access = "open"\n')
    assert client.get("/metrics").status_code == 200


async def test_a_requeued_delivery_is_worked_at_once_by_a_sleeping_scheduler(
        tmp_path: Path, notebook: Notebook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    notebook.state.add_contact("Dana Whitfield", ["2125550142"])
    extra = OPERATORS[:OPERATORS.index("[tenants.globex]")]
    runtime = load(write_config(tmp_path / "callbridge.toml", notebook.url, extra=extra))
    # The scheduler's time stands still: only a wake-up makes it look for work again.
    engine = runtime.engine(clock=FakeClock())
    pk = engine.ledger.store_event(call("c-dead-0009"), apps=["crm"]).event_pk
    finish(engine.ledger, pk, Outcome(status=OutcomeStatus.DEAD, reason="deadline"))
    logged = asyncio.Event()
    engine.worker.finished.append(
        lambda claim, outcome: logged.set() if outcome.status == OutcomeStatus.LOGGED else None)
    stop = asyncio.Event()
    running = asyncio.create_task(engine.serve(stop))
    transport = httpx2.ASGITransport(app=build_app(make_state(runtime, engine=engine,
                                                              worker=False)))
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="http://serve.test") as client:
            view = engine.ledger.find_delivery("acme", "crm", pk)
            assert view is not None
            answer = await client.post(f"/v1/operator/deliveries/{view.delivery_id}/requeue",
                                       headers={"Authorization": f"Bearer {ACME}"})
            assert answer.status_code == 200
            await asyncio.wait_for(logged.wait(), timeout=30)
        assert engine.ledger.delivery(view.delivery_id).status == "logged"
    finally:
        stop.set()
        await running
        await engine.aclose()


def test_every_answer_reads_back_as_the_model_the_document_publishes(served: Served) -> None:
    from callbridge.serve.operator_models import (
        DeliveryOut,
        DeliveryPage,
        EventOut,
        EventPage,
        WhoAmIOut,
    )

    delivery = get(served, "/v1/operator/dead")["deliveries"][0]["delivery"]
    for url, model in [("/v1/operator/events", EventPage), ("/v1/operator/deliveries", DeliveryPage),
                       ("/v1/operator/unresolved", DeliveryPage),
                       (f"/v1/operator/events/{served.pks['unresolved']}", EventOut),
                       (f"/v1/operator/deliveries/{delivery}", DeliveryOut),
                       ("/v1/operator/whoami", WhoAmIOut)]:
        body = get(served, url)
        assert model.model_validate(body).model_dump(mode="json", exclude_none=True) == \
            _without_none(body), url


def _without_none(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_none(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_without_none(v) for v in node]
    return node
