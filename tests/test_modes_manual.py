"""Manual logging: once per app, unresolved events resolved by a checked choice, the
chosen contact named in the log as an automatic one would be."""

from __future__ import annotations

from pathlib import Path

import pytest
from callbridge.modes.manual import ManualRefused, log_manually

from tests.modes_support import Book, call, engine_for, status

pytestmark = pytest.mark.usefixtures("secret_key")


def two_matches() -> Book:
    book = Book()
    book.add("c1", "Ada Lovelace", "+12125550142")
    book.add("c2", "Ada L. (old)", "+12125550142")
    book.add("c3", "Someone Else", "+12125550199")
    return book


async def test_an_unresolved_call_is_logged_to_the_chosen_candidate_by_name(tmp_path: Path) -> None:
    book = two_matches()
    async with engine_for(tmp_path, {"crm": book}) as engine:
        stored = await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        assert status(engine, stored.event_pk, "crm")[:2] == ("unresolved", "several_contacts")

        with pytest.raises(ManualRefused) as no_choice:
            await log_manually(engine, "c-1", "crm", None)
        assert no_choice.value.field == "contact"

        outcome = await log_manually(engine, "c-1", "crm", "c2")
    assert outcome.status.value == "logged"
    [written] = book.logs
    assert written.contacts == [("c2", "Ada L. (old)")]  # named, as an automatic log is


@pytest.mark.parametrize("contact", ["c3", "c404"])
async def test_a_contact_neither_candidate_nor_confirmed_by_the_app_is_refused(
        tmp_path: Path, contact: str) -> None:
    book = two_matches()
    async with engine_for(tmp_path, {"crm": book}) as engine:
        stored = await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        with pytest.raises(ManualRefused) as refused:
            await log_manually(engine, "c-1", "crm", contact)
        assert refused.value.field == "contact" and refused.value.status == 422
        assert contact not in str(refused.value)  # never echoes what was sent
        assert status(engine, stored.event_pk, "crm")[0] == "unresolved"
    assert book.logs == []


async def test_a_contact_the_app_confirms_is_accepted_though_not_a_candidate(tmp_path: Path) -> None:
    book = Book()
    async with engine_for(tmp_path, {"crm": book},
                          app_settings={"crm": {"exclusive_contact_association": True}}) as engine:
        stored = await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        assert status(engine, stored.event_pk, "crm")[:2] == ("skipped", "no_contact")
        book.add("c9", "Grace Hopper", "+12125550142")  # created in the app since
        outcome = await log_manually(engine, f"#{stored.event_pk}", "crm", "c9")
    assert outcome.status.value == "logged"
    assert book.logs[0].contacts == [("c9", "Grace Hopper")]


async def test_an_app_that_already_has_the_event_is_refused(tmp_path: Path) -> None:
    book = Book()
    book.add("c1", "Ada Lovelace", "+12125550142")
    async with engine_for(tmp_path, {"crm": book}) as engine:
        await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        with pytest.raises(ManualRefused) as refused:
            await log_manually(engine, "c-1", "crm", None)
        assert refused.value.field == "app" and "already logged" in refused.value.problem
    assert len(book.logs) == 1


async def test_an_app_without_automatic_logging_gets_the_event_by_hand_once(tmp_path: Path) -> None:
    auto, by_hand = Book(), Book(name="hand")
    auto.add("c1", "Ada Lovelace", "+12125550142")
    by_hand.add("h1", "Ada (hand)", "+12125550142")
    async with engine_for(tmp_path, {"crm": auto, "hand": by_hand},
                          app_settings={"hand": {"automatic_logging": False}}) as engine:
        stored = await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        assert engine.ledger.find_delivery("acme", "hand", stored.event_pk) is None
        outcome = await log_manually(engine, "c-1", "hand", None)
        assert outcome.status.value == "logged"
        assert status(engine, stored.event_pk, "hand")[2] == "manual"
        with pytest.raises(ManualRefused):
            await log_manually(engine, "c-1", "hand", None)
    assert [w.contacts for w in by_hand.logs] == [[("h1", "Ada (hand)")]]


async def test_unknown_events_apps_and_calls_in_progress_are_refused(tmp_path: Path) -> None:
    book = Book()
    async with engine_for(tmp_path, {"crm": book}) as engine:
        await engine.ingest(call("c-2", state="in_progress"))
        with pytest.raises(ManualRefused) as unknown:
            await log_manually(engine, "nope", "crm", None)
        assert unknown.value.status == 404
        with pytest.raises(ManualRefused) as app:
            await log_manually(engine, "c-2", "other", None)
        assert app.value.field == "app"
        with pytest.raises(ManualRefused) as live:
            await log_manually(engine, "c-2", "crm", None)
        assert "not ended" in live.value.problem
    assert book.logs == []
