"""SPEC §2, one event × one app -> one outcome, through the engine, a real SQLite
ledger and the notebook plugin over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.ledger import DeliveryView
from callbridge.runtime import load

from tests.conftest import Notebook, write_config

pytestmark = pytest.mark.usefixtures("secret_key")

MakeEngine = Callable[..., Any]


@pytest.fixture
async def make_engine(tmp_path: Path, notebook: Notebook,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeEngine]:
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    engines: list[Engine] = []

    def make(app: str = "", tenant: str = "", extra: str = "") -> Engine:
        path = write_config(tmp_path / "callbridge.toml", notebook.url, app=app, tenant=tenant,
                            extra=extra)
        engine = load(path, strict=True).engine()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.aclose()


def call(**over: Any) -> Any:
    data: dict[str, Any] = {
        "kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
        "external": {"number": "(212) 555-0142", "name": "Dana Whitfield"},
        "internal": {"email": "ann@acme.example"},
        "started_at": "2026-03-02T10:00:00Z", "answered_at": "2026-03-02T10:00:10Z",
        "ended_at": "2026-03-02T10:05:00Z", "outcome": "completed"}
    data.update(over)
    return parse_event(data)


def sms(**over: Any) -> Any:
    data: dict[str, Any] = {"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "inbound",
                            "external": {"number": "2125550142"}, "sent_at": "2026-03-02T10:00:00Z",
                            "body": "Running late"}
    data.update(over)
    return parse_event(data)


def fax(**over: Any) -> Any:
    data: dict[str, Any] = {"kind": "fax", "id": "f-1", "tenant": "acme", "direction": "inbound",
                            "external": {"number": "2125550142"}, "sent_at": "2026-03-02T10:00:00Z",
                            "page_count": 2, "document": {"content": "JVBERi0xLjQ="}}
    data.update(over)
    return parse_event(data)


async def deliver(engine: Engine, event: Any, app: str = "crm") -> DeliveryView:
    stored = await engine.ingest(event)
    await engine.run_until_idle(event_pks=[stored.event_pk])
    view = engine.ledger.find_delivery(event.tenant, app, stored.event_pk)
    assert view is not None
    return view


def logs(nb: Notebook) -> list[dict[str, Any]]:
    return list(nb.state.logs.values())


# --- step 1: contact matching ------------------------------------------------------


async def test_a_known_caller_is_matched_whatever_format_the_number_is_stored_in(
        make_engine: MakeEngine, notebook: Notebook) -> None:
    cid = notebook.state.add_contact("Dana Whitfield", ["212.555.0142"])
    view = await deliver(make_engine(), call())
    assert view.status == "logged"
    assert logs(notebook)[0]["contact_ids"] == [cid]


async def test_the_firms_own_number_is_skipped_as_internal(make_engine: MakeEngine,
                                                           notebook: Notebook) -> None:
    view = await deliver(make_engine(), call(external={"number": "212-555-0100"}))
    assert (view.status, view.reason) == ("skipped", "internal")
    assert logs(notebook) == []


async def test_a_call_from_an_extension_is_skipped_as_internal(make_engine: MakeEngine) -> None:
    view = await deliver(make_engine(), call(external={"number": "102"}))
    assert (view.status, view.reason) == ("skipped", "internal")


async def test_several_matches_ask_leaves_the_event_unresolved_with_candidates(
        make_engine: MakeEngine, notebook: Notebook) -> None:
    a = notebook.state.add_contact("Dana Whitfield", ["2125550142"])
    b = notebook.state.add_contact("Sam Whitfield", ["+1 (212) 555-0142"])
    engine = make_engine()
    view = await deliver(engine, call())
    assert view.status == "unresolved" and {c.id for c in view.candidates} == {a, b}
    assert logs(notebook) == []
    engine.ledger.choose(view.delivery_id, [b])
    await engine.run_until_idle()
    assert engine.ledger.delivery(view.delivery_id).status == "logged"
    assert logs(notebook)[0]["contact_ids"] == [b]


async def test_several_matches_most_recent_takes_the_contact_updated_last(
        make_engine: MakeEngine, notebook: Notebook) -> None:
    notebook.state.add_contact("Dana Whitfield", ["2125550142"])
    await asyncio.sleep(0.01)
    later = notebook.state.add_contact("Sam Whitfield", ["2125550142"])
    await deliver(make_engine(app='several_matches = "most_recent"'), call())
    assert logs(notebook)[0]["contact_ids"] == [later]


async def test_several_matches_all_links_one_log_to_every_match(make_engine: MakeEngine,
                                                                notebook: Notebook) -> None:
    a = notebook.state.add_contact("Dana Whitfield", ["2125550142"])
    b = notebook.state.add_contact("Sam Whitfield", ["2125550142"])
    await deliver(make_engine(app='several_matches = "all"'), call())
    assert len(logs(notebook)) == 1 and sorted(logs(notebook)[0]["contact_ids"]) == sorted([a, b])


async def test_a_contact_whose_number_is_unreadable_is_not_matched(make_engine: MakeEngine,
                                                                   notebook: Notebook) -> None:
    notebook.state.add_contact("Jane", ["212-555-0142 (Jane's Number)"])
    view = await deliver(make_engine(), call())
    assert view.status == "logged" and logs(notebook)[0]["contact_ids"] == []


# --- step 2: contact creation -------------------------------------------------------


async def test_an_unknown_caller_creates_a_contact_when_the_policy_admits_the_event(
        make_engine: MakeEngine, notebook: Notebook) -> None:
    view = await deliver(make_engine(app='contact_creation = ["missed"]'),
                         call(outcome="voicemail", answered_at=None))
    created = list(notebook.state.contacts.values())
    assert [c["name"] for c in created] == ["Dana Whitfield"]
    assert created[0]["phones"] == ["+12125550142"]
    assert logs(notebook)[0]["contact_ids"] == [created[0]["id"]]
    assert ("contact", created[0]["id"]) in {(r.kind, r.id) for r in view.records}


async def test_an_event_the_policy_does_not_admit_creates_no_contact(make_engine: MakeEngine,
                                                                     notebook: Notebook) -> None:
    view = await deliver(make_engine(app='contact_creation = ["missed"]'), call())
    assert notebook.state.contacts == {} and view.status == "logged"
    assert logs(notebook)[0]["contact_ids"] == []


async def test_generic_caller_id_text_gives_the_placeholder_name(make_engine: MakeEngine,
                                                                 notebook: Notebook) -> None:
    engine = make_engine(app='contact_creation = "all"\nplaceholder_name = "New Caller"')
    await deliver(engine, call(external={"number": "2125550142", "name": "WIRELESS CALLER"}))
    assert [c["name"] for c in notebook.state.contacts.values()] == ["New Caller"]


async def test_faxes_create_contacts_only_by_the_fax_type(make_engine: MakeEngine,
                                                          notebook: Notebook) -> None:
    await deliver(make_engine(app='contact_creation = "all"'), fax())
    assert notebook.state.contacts == {}
    await deliver(make_engine(app='contact_creation = ["fax"]'), fax(id="f-2"))
    assert len(notebook.state.contacts) == 1


async def test_a_withheld_caller_never_creates_a_contact(make_engine: MakeEngine,
                                                         notebook: Notebook) -> None:
    view = await deliver(make_engine(app='contact_creation = "all"'),
                         call(external={"number": "anonymous"}))
    assert notebook.state.contacts == {} and view.status == "logged"


async def test_a_short_code_sms_never_creates_a_contact(make_engine: MakeEngine,
                                                        notebook: Notebook) -> None:
    view = await deliver(make_engine(app='contact_creation = "all"'), sms(external={"number": "72345"}))
    assert notebook.state.contacts == {} and view.status == "logged"


# --- step 3: exclusive contact association ------------------------------------------


@pytest.mark.parametrize("event", [call(external={"number": "anonymous"}), sms(), fax()],
                         ids=["withheld call", "sms", "fax"])
async def test_exclusive_association_skips_an_event_without_contact(make_engine: MakeEngine,
                                                                    notebook: Notebook, event: Any) -> None:
    view = await deliver(make_engine(app="exclusive_contact_association = true"), event)
    assert (view.status, view.reason) == ("skipped", "no_contact")
    assert logs(notebook) == []


# --- step 4: matters and users -------------------------------------------------------


@pytest.mark.parametrize(("matters", "linked"), [(0, False), (1, True), (2, False)])
async def test_the_log_is_linked_to_a_matter_only_when_exactly_one_is_open(
        make_engine: MakeEngine, notebook: Notebook, matters: int, linked: bool) -> None:
    cid = notebook.state.add_contact("Dana Whitfield", ["2125550142"])
    ids = [notebook.state.add_matter(cid, f"Matter {i}") for i in range(matters)]
    notebook.state.add_matter(cid, "Closed one", status="closed")
    await deliver(make_engine(), call())
    assert logs(notebook)[0]["matter_id"] == (ids[0] if linked else None)


async def test_the_user_is_matched_by_email_then_extension_else_the_default(
        make_engine: MakeEngine, notebook: Notebook) -> None:
    ann = notebook.state.add_user("Ann", "ann@acme.example")
    bob = notebook.state.add_user("Bob", "bob@acme.example")
    aaron = notebook.state.add_user("Aaron", "aaron@acme.example")
    engine = make_engine()
    await deliver(engine, call(id="by-email"))
    await deliver(engine, call(id="by-ext", internal={"extension": "102"}))
    await deliver(engine, call(id="nobody", internal={"email": "temp@acme.example"}))
    assert [entry["user_id"] for entry in logs(notebook)] == [ann, bob, aaron]


# --- kinds, switches, outcomes ------------------------------------------------------


async def test_fax_logging_off_skips_faxes_with_that_reason(make_engine: MakeEngine) -> None:
    view = await deliver(make_engine(app="fax_logging = false"), fax())
    assert (view.status, view.reason) == ("skipped", "fax_logging_off")


async def test_the_same_event_again_is_a_duplicate_and_logs_nothing_more(
        make_engine: MakeEngine, notebook: Notebook) -> None:
    engine = make_engine()
    first = await deliver(engine, call())
    again = await engine.ingest(call())
    await engine.run_until_idle()
    assert again.status == "duplicate" and len(logs(notebook)) == 1
    assert engine.ledger.delivery(first.delivery_id).attempts == 1


async def test_a_recording_arriving_later_updates_the_log_in_place(make_engine: MakeEngine,
                                                                   notebook: Notebook) -> None:
    engine = make_engine()
    await deliver(engine, call())
    revised = await engine.ingest(call(recording_url="https://rec.example.com/r/1.mp3"))
    await engine.run_until_idle()
    assert revised.status == "revision"
    assert len(logs(notebook)) == 1
    assert logs(notebook)[0]["recording_url"] == "https://rec.example.com/r/1.mp3"


async def test_one_apps_failure_leaves_the_other_app_untouched(make_engine: MakeEngine,
                                                               notebook: Notebook) -> None:
    engine = make_engine(extra="""
    [tenants.acme.apps.down]
    plugin = "notebook"
    [tenants.acme.apps.down.options]
    base_url = "http://127.0.0.1:9"
    """)
    stored = await engine.ingest(call())
    await engine.process_due(event_pks=[stored.event_pk])
    ok = engine.ledger.find_delivery("acme", "crm", stored.event_pk)
    down = engine.ledger.find_delivery("acme", "down", stored.event_pk)
    assert ok is not None and down is not None
    assert ok.status == "logged" and len(logs(notebook)) == 1
    assert (down.status, down.reason) == ("waiting", "backoff")
    assert down.next_attempt_at is not None and "TransientError" in (down.message or "")


async def test_a_transient_app_error_is_retried_until_logged(make_engine: MakeEngine,
                                                             notebook: Notebook) -> None:
    engine = make_engine()
    notebook.faults.fail_next = [400]  # refused for good: not retried
    view = await deliver(engine, call(id="refused"))
    assert view.status == "failed" and not view.retryable
    attempts = engine.ledger.attempts(view.delivery_id)
    assert [a.status for a in attempts] == ["failed"]


# --- the phone index ----------------------------------------------------------------


async def test_after_a_sync_a_known_number_costs_no_lookup_request(make_engine: MakeEngine,
                                                                   notebook: Notebook) -> None:
    cid = notebook.state.add_contact("Dana Whitfield", ["(212) 555-0142"])
    engine = make_engine()
    await engine.sync_indexes()
    notebook.faults.requests.clear()
    await deliver(engine, call())
    searches = [r for r in notebook.faults.requests if r[1] == "GET" and r[2] == "/contacts"]
    assert searches == [] and logs(notebook)[0]["contact_ids"] == [cid]


async def test_an_idle_pass_syncs_a_few_indexes_the_longest_unsynced_first(
        make_engine: MakeEngine, notebook: Notebook) -> None:
    more = "".join(f"""
[tenants.firm{n}.apps.crm]
plugin = "notebook"
[tenants.firm{n}.apps.crm.options]
base_url = "{notebook.url}"
""" for n in range(3))
    engine = make_engine(extra=more)
    await engine.scheduler.sync_indexes(stale_after=0, tenants=["firm0"])
    first = engine.ledger.index_sync_times()
    assert list(first) == [("firm0", "crm")]
    await engine.scheduler.sync_indexes(stale_after=300, limit=2)  # never synced ones first
    second = engine.ledger.index_sync_times()
    assert len(second) == 3 and ("firm0", "crm") in second
    assert second[("firm0", "crm")] == first[("firm0", "crm")]  # fresh: left for later
    await engine.scheduler.sync_indexes(stale_after=300, limit=2)
    assert len(engine.ledger.index_sync_times()) == 4


async def test_a_contact_added_after_the_sync_is_found_not_duplicated(make_engine: MakeEngine,
                                                                      notebook: Notebook) -> None:
    engine = make_engine(app='contact_creation = "all"')
    await engine.sync_indexes()
    cid = notebook.state.add_contact("Dana Whitfield", ["2125550142"])
    await deliver(engine, call())
    assert list(notebook.state.contacts) == [cid]
    assert logs(notebook)[0]["contact_ids"] == [cid]


async def test_a_withheld_caller_is_skipped_where_the_app_cannot_log_without_a_contact(
        tmp_path: Path, secret_key: str) -> None:
    from callbridge.capabilities import Capability, Declaration
    from callbridge.hookspecs import hookimpl
    from callbridge.models import LogResult, Record
    from callbridge.plugins import Registry
    from callbridge.settings import Settings, SettingsSource

    class NeedsContact:
        @hookimpl
        def declare(self) -> Declaration:
            return Declaration(name="strict", version="1", hook_api_version="1.0",
                               capabilities=frozenset({Capability.CALLS}))

        @hookimpl
        async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
            return LogResult(records=(Record(kind="log", id="1"),))

    registry = Registry()
    registry.add(NeedsContact())
    settings = Settings.model_validate({"tenants": {"acme": {"apps": {"strict": {}}}}})
    from callbridge.ledger import Ledger
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.migrate()
    engine = Engine(settings=SettingsSource(None, default=settings), registry=registry, ledger=ledger)
    try:
        stored = await engine.ingest(call(external={"number": "anonymous"}))
        await engine.run_until_idle()
        view = ledger.find_delivery("acme", "strict", stored.event_pk)
        assert view is not None and (view.status, view.reason) == ("skipped", "no_contact")
        assert "cannot log without one" in (view.message or "")
    finally:
        await engine.aclose()


async def test_the_index_reports_contacts_whose_numbers_cannot_be_read(make_engine: MakeEngine,
                                                                       notebook: Notebook) -> None:
    import json

    bad = notebook.state.add_contact("Jane", ["437-555-0142 (Jane's Number)"])
    good = notebook.state.add_contact("Dana", ["(212) 555-0142"])
    engine = make_engine()
    await engine.sync_indexes()
    report = json.loads(engine.ledger.kv_get("acme", "crm", "index:unreadable") or "{}")
    assert report == {bad: 1}
    assert [e.contact_id for e in engine.ledger.index_lookup("acme", "crm", "+12125550142")] == [good]
