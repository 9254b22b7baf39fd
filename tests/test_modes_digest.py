"""The digest: calls of the look-back not logged yet are matched again (a contact
created since gets the call); each state handled as docs/logging-modes.md says;
re-runs and overlapping runs never log twice; its timer lives in the ledger."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from callbridge.modes import store
from callbridge.modes.digest import DigestTimer, run_digest
from callbridge.settings import Settings, SettingsSource
from callbridge.testing.clock import FakeClock

from tests.modes_support import Book, call, engine_for, status

pytestmark = pytest.mark.usefixtures("secret_key")

EXCLUSIVE = {"crm": {"exclusive_contact_association": True}}


def change_settings(engine: Any, **app: Any) -> None:
    data = engine.config.model_dump(mode="json")
    data["tenants"]["acme"]["apps"]["crm"].update(app)
    engine.settings = SettingsSource(None, default=Settings.model_validate(data))


async def test_a_contact_created_after_the_call_gets_it_at_the_next_digest_once(
        tmp_path: Path) -> None:
    book, clock = Book(), FakeClock()
    async with engine_for(tmp_path, {"crm": book}, clock=clock, app_settings=EXCLUSIVE) as engine:
        first = await engine.ingest(call("c-1"))
        other = await engine.ingest(call("c-2", number="+12125550177"))
        await engine.run_until_idle()
        assert status(engine, first.event_pk, "crm")[:2] == ("skipped", "no_contact")
        book.add("c9", "Grace Hopper", "+12125550142")  # created in the app since
        clock.advance(3600)
        report = await run_digest(engine, "acme", clock.now(), work=True)
        assert (len(report.requeued), dict(report.after)) == (2, {"logged": 1, "skipped": 1})
        assert status(engine, first.event_pk, "crm") == ("logged", None, "digest")
        assert status(engine, other.event_pk, "crm")[:2] == ("skipped", "no_contact")
        again = await run_digest(engine, "acme", clock.now(), work=True)
        assert again.left["logged"] == 1 and len(again.requeued) == 1  # only the still-skipped
    assert [w.contacts for w in book.logs] == [[("c9", "Grace Hopper")]]


async def test_unresolved_is_left_for_a_user_unless_the_policy_changed(tmp_path: Path) -> None:
    book, clock = Book(), FakeClock()
    book.add("c1", "Ada", "+12125550142")
    book.add("c2", "Ada again", "+12125550142")
    async with engine_for(tmp_path, {"crm": book}, clock=clock) as engine:
        stored = await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        left = await run_digest(engine, "acme", clock.now(), work=True)
        assert left.requeued == [] and left.left["unresolved"] == 1
        change_settings(engine, several_matches="all")
        report = await run_digest(engine, "acme", clock.now(), work=True)
        assert len(report.requeued) == 1
        assert status(engine, stored.event_pk, "crm")[0] == "logged"
    assert len(book.logs) == 1


async def test_calls_outside_the_look_back_and_other_states_are_left(tmp_path: Path) -> None:
    book, clock = Book(), FakeClock()
    async with engine_for(tmp_path, {"crm": book}, clock=clock, app_settings=EXCLUSIVE) as engine:
        await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        book.add("c9", "Grace Hopper", "+12125550142")
        clock.advance(5 * 3600)  # the call started more than 4 hours ago
        report = await run_digest(engine, "acme", clock.now(), work=True)
    assert (report.requeued, report.added, book.logs) == ([], [], [])


async def test_an_app_switched_to_automatic_logging_after_the_call_gets_it(tmp_path: Path) -> None:
    book, clock = Book(), FakeClock()
    book.add("c1", "Ada", "+12125550142")
    async with engine_for(tmp_path, {"crm": book}, clock=clock,
                          app_settings={"crm": {"automatic_logging": False}}) as engine:
        stored = await engine.ingest(call("c-1"))
        in_progress = await engine.ingest(call("c-3", state="in_progress"))
        await engine.run_until_idle()
        change_settings(engine, automatic_logging=True)
        report = await run_digest(engine, "acme", clock.now(), work=True)
        assert len(report.added) == 1 and dict(report.after) == {"logged": 1}
        assert status(engine, stored.event_pk, "crm") == ("logged", None, "digest")
        assert engine.ledger.find_delivery("acme", "crm", in_progress.event_pk) is None
    assert len(book.logs) == 1


async def test_overlapping_digests_run_once_and_a_stale_change_is_refused(tmp_path: Path) -> None:
    book, clock = Book(), FakeClock()
    async with engine_for(tmp_path, {"crm": book}, clock=clock, app_settings=EXCLUSIVE) as engine:
        stored = await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        book.add("c9", "Grace Hopper", "+12125550142")
        one, two = await asyncio.gather(run_digest(engine, "acme", clock.now(), work=True),
                                        run_digest(engine, "acme", clock.now(), work=True))
        assert sorted([one.ran, two.ran]) == [False, True]
        assert "another digest" in (two if not two.ran else one).summary()
        view = engine.ledger.find_delivery("acme", "crm", stored.event_pk)
        # A change decided on a state read before another run changed it: refused.
        assert not store.reopen(engine.ledger, view.delivery_id, now=clock.now(), mode="digest",
                                status="skipped", reason="no_contact",
                                since=view.updated_at - timedelta(seconds=1))
    assert len(book.logs) == 1


async def test_the_digest_timer_lives_in_the_ledger(tmp_path: Path) -> None:
    book, clock = Book(), FakeClock()
    async with engine_for(tmp_path, {"crm": book}, clock=clock, app_settings=EXCLUSIVE,
                          modes={"digest_every_minutes": 60}) as engine:
        await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        book.add("c9", "Grace Hopper", "+12125550142")
        assert await engine.scheduler.digests() == 0  # first sight: due an hour from now
        clock.advance(30 * 60)
        engine.scheduler._digests = DigestTimer()  # a restart: only the ledger remembers
        assert await engine.scheduler.digests() == 0
        clock.advance(31 * 60)
        assert await engine.scheduler.digests() == 1
        assert await engine.scheduler.digests() == 0  # the next one is an hour away
        await engine.run_until_idle()
    assert len(book.logs) == 1


async def test_the_digest_gives_a_delayed_log_its_time_if_a_process_stopped_before(
        tmp_path: Path) -> None:
    from callbridge.modes.notes import add_notes

    book, clock = Book(), FakeClock()
    async with engine_for(tmp_path, {"crm": book}, clock=clock) as engine:
        stored = await engine.ingest(call("c-1", state="in_progress"))
        await add_notes(engine, "c-1", {"crm": []}, "kept", clock.now())
        # The ended copy stored, and the process stopped before the delayed log got its time.
        engine.ledger.store_event(call("c-1"), apps=["crm"])
        view = engine.ledger.find_delivery("acme", "crm", stored.event_pk)
        assert view is not None and view.next_attempt_at is None
        await run_digest(engine, "acme", clock.now())
        view = engine.ledger.find_delivery("acme", "crm", stored.event_pk)
        assert view is not None and view.next_attempt_at is not None
        assert (view.status, view.mode) == ("waiting", "delayed")
        assert view.next_attempt_at.isoformat() == "2026-01-05T15:09:00+00:00"  # end + 5 min


async def test_two_processes_digesting_at_once_run_it_once(tmp_path: Path) -> None:
    book, clock = Book(), FakeClock()
    async with engine_for(tmp_path, {"crm": book}, clock=clock, app_settings=EXCLUSIVE) as one, \
            engine_for(tmp_path, {"crm": book}, clock=clock, app_settings=EXCLUSIVE) as two:
        # Two engines on one ledger file: two processes' ledgers and executors.
        for i in range(5):
            await one.ingest(call(f"c-{i}"))
        await one.run_until_idle()
        book.add("c9", "Grace Hopper", "+12125550142")
        reports = await asyncio.gather(run_digest(one, "acme", clock.now(), work=True),
                                       run_digest(two, "acme", clock.now(), work=True))
        assert sorted(r.ran for r in reports) == [False, True]
        await two.run_until_idle()
    assert len(book.logs) == 5 and len({w.event_id for w in book.logs}) == 5
