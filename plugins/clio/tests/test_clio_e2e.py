"""SPEC §2 and §3 (Clio) end to end: the engine, a real SQLite ledger, the Clio plugin
and the Clio sandbox over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from callbridge.engine import Engine
from callbridge.ledger import DeliveryView

from plugins.clio.tests.samples import call, fax, made_folders, only, sms


async def deliver(engine: Engine, event: Any, *, until: float = 0) -> DeliveryView:
    stored = await engine.ingest(event)
    deadline = time.monotonic() + until
    while True:
        await engine.run_until_idle(event_pks=[stored.event_pk])
        view = engine.ledger.find_delivery("acme", "clio", stored.event_pk)
        assert view is not None
        if view.status != "waiting" or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.2)


async def test_a_completed_call_is_a_communication_and_a_linked_time_entry(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    view = await deliver(clio_engine(), call())
    comm = only(sandbox.state.communications)
    entry = only(sandbox.state.activities)
    assert view.status == "logged"
    assert {(r.kind, r.id) for r in view.records} == {("communication", str(comm["id"])),
                                                      ("time_entry", str(entry["id"]))}
    assert comm["type"] == "PhoneCommunication"
    assert comm["subject"] == "Inbound call from Dana Whitfield (+1 212-555-0142)"
    assert comm["senders"] == [{"id": firm["dana"], "type": "Contact"}]
    assert comm["receivers"] == [{"id": firm["ann"], "type": "User"}]
    assert comm["matter"] == {"id": firm["dana_matter"]}
    assert "Duration: 6m 12s (talk time 6m 00s)" in comm["body"] and "Hearing moved." in comm["body"]
    assert entry["quantity"] == 360 and entry["non_billable"] is True
    assert entry["communication"] == {"id": comm["id"]} and entry["matter"] == {"id": firm["dana_matter"]}


async def test_billable_time_entries_follow_the_app_option(clio_engine: Any, sandbox: Any,
                                                          firm: dict[str, int]) -> None:
    await deliver(clio_engine(app="default_billable = true"), call())
    assert only(sandbox.state.activities)["non_billable"] is False


async def test_a_missed_call_is_a_communication_only(clio_engine: Any, sandbox: Any,
                                                     firm: dict[str, int]) -> None:
    await deliver(clio_engine(), call(outcome="missed", answered_at=None))
    assert only(sandbox.state.communications)["subject"].startswith("Missed call from Dana")
    assert sandbox.state.activities == {}


async def test_an_outbound_call_is_sent_by_the_user_to_the_contact(clio_engine: Any, sandbox: Any,
                                                                   firm: dict[str, int]) -> None:
    await deliver(clio_engine(), call(direction="outbound", internal={"email": "bob@acme.example"}))
    comm = only(sandbox.state.communications)
    assert comm["senders"] == [{"id": firm["bob"], "type": "User"}]
    assert comm["receivers"] == [{"id": firm["dana"], "type": "Contact"}]


async def test_an_sms_is_a_communication_only(clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    view = await deliver(clio_engine(), sms())
    comm = only(sandbox.state.communications)
    assert view.status == "logged" and sandbox.state.activities == {}
    assert comm["subject"].startswith("SMS from Dana") and "Running late" in comm["body"]


async def test_a_fax_uploads_its_document_into_the_matters_fax_folder(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    view = await deliver(clio_engine(), fax())
    comm = only(sandbox.state.communications)
    doc = only(sandbox.state.documents)
    folder = only(made_folders(sandbox.state))
    assert view.status == "logged" and view.reason is None
    matter_folder = sandbox.state.matters[firm["dana_matter"]]["folder"]["id"]
    assert folder["name"] == "Faxes" and folder["parent"] == {"id": matter_folder, "type": "Folder"}
    assert doc["parent"] == {"id": folder["id"], "type": "Folder"}
    assert doc["communication_id"] == comm["id"]
    assert doc["latest_document_version"]["fully_uploaded"] is True
    assert sandbox.state.storage[doc["latest_document_version"]["uuid"]] == b"%PDF-1.4\n% fax"
    (put,) = sandbox.state.storage_requests
    # The storage is an origin of its own: none of the API's credentials or headers cross.
    assert put["headers"]["host"] != urlsplit(sandbox.url).netloc
    assert "authorization" not in put["headers"] and "x-api-version" not in put["headers"]
    assert put["headers"]["x-amz-server-side-encryption"] == "AES256"


async def test_a_fax_without_contact_or_matter_is_logged_with_its_document_missing(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    view = await deliver(clio_engine(), fax(external={"number": "+1 212 555 0199"}))
    assert (view.status, view.reason) == ("logged", "document_missing")
    assert "document is missing" in only(sandbox.state.communications)["body"]
    assert sandbox.state.documents == {}


async def test_an_upload_that_keeps_failing_ends_logged_with_the_document_missing(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    sandbox.state.storage_down = True
    engine = clio_engine()
    stored = await engine.ingest(fax())
    for _ in range(3):  # the host retries the delivery; each attempt resumes
        await engine.run_until_idle(event_pks=[stored.event_pk])
        view = engine.ledger.find_delivery("acme", "clio", stored.event_pk)
        assert view is not None
        if view.status in ("failed", "waiting"):
            engine.ledger.requeue(view.delivery_id, mode="auto")  # rather than wait for the backoff
    view = engine.ledger.find_delivery("acme", "clio", stored.event_pk)
    assert view is not None and (view.status, view.reason) == ("logged", "document_missing")
    assert len(sandbox.state.communications) == 1 and len(sandbox.state.documents) == 1
    assert "the upload failed" in only(sandbox.state.communications)["body"]


@pytest.mark.parametrize(("contact", "matter"), [("dana", "dana_matter"), ("opp", "opp_matter"),
                                                 ("sam", None), ("lee", "opp_matter")])
async def test_matters_count_when_open_or_pending_as_client_or_related_party(
        clio_engine: Any, sandbox: Any, firm: dict[str, int], contact: str, matter: str | None) -> None:
    number = {"dana": "2125550142", "opp": "2125550160", "sam": "6465550111", "lee": "2125550150"}[contact]
    await deliver(clio_engine(), call(external={"number": number}, outcome="missed", answered_at=None))
    comm = only(sandbox.state.communications)
    assert comm["matter"] == ({"id": firm[matter]} if matter else None)


async def test_an_unknown_caller_becomes_a_person_with_split_names(clio_engine: Any, sandbox: Any,
                                                                   firm: dict[str, int]) -> None:
    before = set(sandbox.state.contacts)
    await deliver(clio_engine(app='contact_creation = ["missed"]'),
                  call(external={"number": "+1 718 555 0123", "name": "Mary Ann Lee"},
                       outcome="missed", answered_at=None))
    (new,) = set(sandbox.state.contacts) - before
    person = sandbox.state.contacts[new]
    assert (person["type"], person["first_name"], person["last_name"]) == ("Person", "Mary Ann", "Lee")
    assert [p["number"] for p in person["phone_numbers"]] == ["+17185550123"]
    assert only(sandbox.state.communications)["senders"] == [{"id": new, "type": "Contact"}]


async def test_generic_caller_id_gives_a_placeholder_person_never_a_422(clio_engine: Any, sandbox: Any,
                                                                        firm: dict[str, int]) -> None:
    before = set(sandbox.state.contacts)
    view = await deliver(clio_engine(app='contact_creation = "all"'),
                         call(external={"number": "+1 718 555 0124", "name": "WIRELESS CALLER"}))
    (new,) = set(sandbox.state.contacts) - before
    assert view.status == "logged"
    assert sandbox.state.contacts[new]["name"] == "New callbridge Contact"


async def test_an_unreadable_stored_number_is_never_matched(clio_engine: Any, sandbox: Any,
                                                            firm: dict[str, int]) -> None:
    await deliver(clio_engine(), call(external={"number": "+1 437 555 0142"}, outcome="missed",
                                      answered_at=None))
    assert only(sandbox.state.communications)["senders"] == []


async def test_late_details_update_the_communication_in_place(clio_engine: Any, sandbox: Any,
                                                              firm: dict[str, int]) -> None:
    engine = clio_engine()
    await deliver(engine, call())
    await deliver(engine, call(recording_url="https://rec.example.com/r/1.mp3", transcript="Hello."))
    comm = only(sandbox.state.communications)
    assert "Recording: https://rec.example.com/r/1.mp3" in comm["body"] and "Hello." in comm["body"]
    assert len(sandbox.state.activities) == 1


async def test_the_same_events_again_change_nothing(clio_engine: Any, sandbox: Any,
                                                   firm: dict[str, int]) -> None:
    engine = clio_engine()
    for event in (call(), sms(), fax()):
        await deliver(engine, event)
    counts = (len(sandbox.state.communications), len(sandbox.state.activities), len(sandbox.state.documents))
    for event in (call(), sms(), fax()):
        await deliver(engine, event)
    assert (len(sandbox.state.communications), len(sandbox.state.activities),
            len(sandbox.state.documents)) == counts == (3, 1, 1)


# --- no duplicate after a timeout that follows a create -------------------------------


@pytest.mark.parametrize(("path", "event", "table"), [
    ("/api/v4/communications.json", "call", "communications"),
    ("/api/v4/activities.json", "call", "activities"),
    ("/api/v4/documents.json", "fax", "documents"),
    ("/api/v4/contacts.json", "new_caller", "contacts"),
])
async def test_a_timeout_after_create_is_retried_without_a_duplicate(
        clio_engine: Any, sandbox: Any, firm: dict[str, int], path: str, event: str, table: str) -> None:
    events = {"call": call(), "fax": fax(),
              "new_caller": call(external={"number": "+1 718 555 0125", "name": "Rae Quinn"})}
    engine = clio_engine(app='contact_creation = "all"')
    before = len(getattr(sandbox.state, table))
    sandbox.faults.fail_on[("POST", path)] = ["drop_after"]
    view = await deliver(engine, events[event], until=20)
    assert view.status == "logged", (view.reason, view.message)
    assert len(getattr(sandbox.state, table)) == before + 1
    assert sandbox.faults.count(method="POST", path=path) == 1 or table == "contacts"


async def test_a_log_that_failed_midway_resumes_from_the_records_kept(clio_engine: Any, sandbox: Any,
                                                                      firm: dict[str, int]) -> None:
    engine = clio_engine()
    sandbox.faults.fail_on[("POST", "/api/v4/activities.json")] = [400]
    first = await deliver(engine, call())
    assert first.status == "failed" and [r.kind for r in first.records] == ["communication"]
    engine.ledger.requeue(first.delivery_id, mode="auto")
    sandbox.faults.requests.clear()
    second = await deliver(engine, call())
    assert second.status == "logged" and len(sandbox.state.communications) == 1
    assert sandbox.faults.count(method="POST", path="/api/v4/communications.json") == 0


# --- the connection --------------------------------------------------------------------


async def test_an_expired_token_is_refreshed_once_and_stored(clio_engine: Any, sandbox: Any,
                                                             firm: dict[str, int]) -> None:
    engine = clio_engine()
    old = engine.ledger.token_get("acme", "clio")
    sandbox.state.expire_tokens()
    view = await deliver(engine, sms())
    assert view.status == "logged"
    assert sandbox.faults.count(method="POST", path="/oauth/token") == 1
    new = engine.ledger.token_get("acme", "clio")
    assert new["access_token"] != old["access_token"] and new["refresh_token"] == old["refresh_token"]


async def test_a_429_storm_is_waited_out_with_no_early_request_and_no_duplicate(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    engine = clio_engine()
    sandbox.faults.storm_retry_after = 2
    sandbox.faults.storm_until = time.monotonic() + 10
    views = [await deliver(engine, e, until=40) for e in (call(), sms())]
    assert [v.status for v in views] == ["logged", "logged"]
    assert len(sandbox.state.communications) == 2 and len(sandbox.state.activities) == 1
    log = sorted(sandbox.faults.requests)
    for (at, *_rest, status), (later, *_r2) in itertools.pairwise(log):
        if status == 429:
            assert later >= at + 2 - 0.05, "a request went out before its Retry-After"


async def test_every_request_sends_fields_and_the_pinned_api_version(clio_engine: Any, sandbox: Any,
                                                                     firm: dict[str, int]) -> None:
    engine = clio_engine(app='contact_creation = "all"')
    for event in (call(), sms(), fax(), call(id="c-9", external={"number": "+1 718 555 0126"})):
        await deliver(engine, event)
    api = [r for r in sandbox.state.requests if r["path"].startswith("/api/v4/")]
    assert api and all("fields" in r["query"] for r in api)
    assert {r["api_version"] for r in api} == {"4.0.13"}


async def test_after_the_first_sync_a_known_number_costs_no_search(clio_engine: Any, sandbox: Any,
                                                                   firm: dict[str, int]) -> None:
    engine = clio_engine()
    await engine.sync_indexes()
    sandbox.state.requests.clear()
    await deliver(engine, call())
    searches = [r for r in sandbox.state.requests if r["path"] == "/api/v4/contacts.json"]
    assert searches == []
    assert only(sandbox.state.communications)["senders"] == [{"id": firm["dana"], "type": "Contact"}]


async def test_paging_is_followed_to_the_end_when_syncing(clio_engine: Any, sandbox: Any,
                                                          firm: dict[str, int]) -> None:
    for i in range(450):
        sandbox.state.add_contact(f"Client{i}", "Bulk", [f"+1 917 555 01{i % 100:02d}"])
    engine = clio_engine()
    seen = await engine.sync_indexes()
    pages = [r for r in sandbox.state.requests if r["path"] == "/api/v4/contacts.json"]
    assert seen == len(sandbox.state.contacts) and len(pages) == 3


# --- SPEC §2 for SMS and faxes ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["sms", "fax"])
async def test_exclusive_association_skips_an_sms_or_fax_without_contact(
        clio_engine: Any, sandbox: Any, firm: dict[str, int], kind: str) -> None:
    event = (sms if kind == "sms" else fax)(external={"number": "+1 718 555 0140"})
    view = await deliver(clio_engine(app="exclusive_contact_association = true"), event)
    assert (view.status, view.reason) == ("skipped", "no_contact")
    assert sandbox.state.communications == {} and sandbox.state.documents == {}


async def test_an_sms_creates_a_contact_by_its_direction(clio_engine: Any, sandbox: Any,
                                                         firm: dict[str, int]) -> None:
    before = set(sandbox.state.contacts)
    await deliver(clio_engine(app='contact_creation = ["incoming"]'),
                  sms(external={"number": "+1 718 555 0141"}))
    await deliver(clio_engine(app='contact_creation = ["incoming"]'),
                  sms(id="s-2", direction="outbound", external={"number": "+1 718 555 0142"}))
    assert len(set(sandbox.state.contacts) - before) == 1


@pytest.mark.parametrize(("policy", "created"), [('"all"', 0), ('["fax"]', 1)])
async def test_a_fax_creates_a_contact_only_under_the_fax_type(
        clio_engine: Any, sandbox: Any, firm: dict[str, int], policy: str, created: int) -> None:
    before = set(sandbox.state.contacts)
    view = await deliver(clio_engine(app=f"contact_creation = {policy}"),
                         fax(external={"number": "+1 718 555 0143"}))
    assert len(set(sandbox.state.contacts) - before) == created
    assert view.status == "logged"
    assert (view.reason == "document_missing") == (created == 0)


async def test_several_contacts_on_one_number_wait_unresolved_then_log_to_the_choice(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    twin = sandbox.state.add_contact("Dane", "Whitfield", ["212 555 0142"])
    engine = clio_engine()
    view = await deliver(engine, call())
    assert view.status == "unresolved" and {c.id for c in view.candidates} == {str(firm["dana"]), str(twin)}
    assert sandbox.state.communications == {}
    engine.ledger.choose(view.delivery_id, [str(twin)])
    await engine.run_until_idle()
    assert engine.ledger.delivery(view.delivery_id).status == "logged"
    assert only(sandbox.state.communications)["senders"] == [{"id": twin, "type": "Contact"}]


async def test_doctor_lists_contacts_whose_stored_numbers_cannot_be_read(
        clio_engine: Any, sandbox: Any, firm: dict[str, int], tmp_path: Any) -> None:
    from callbridge.doctor import diagnose

    engine = clio_engine()
    await engine.sync_indexes()
    report = diagnose(tmp_path / "callbridge.toml")
    flagged = [c for c in report["checks"] if " contact " in c["name"]]
    assert [(c["name"], c["status"]) for c in flagged] == [(f"acme/clio contact {firm['jane']}", "warn")]
    assert "cannot be read" in flagged[0]["detail"]
    assert "437" not in str(report) and "555-0142" not in str(report)  # never the number
