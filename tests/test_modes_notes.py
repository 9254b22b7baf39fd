"""Delayed logging: notes taken during a call, cancelled before or after its end, late
notes, the grace period, a revision carrying notes, and timers that survive a restart.

Time is a FakeClock moved by hand: the call rings at 15:00 and ends at 15:04."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from callbridge.modes.notes import add_notes, cancel_notes
from callbridge.modes.refs import ManualRefused
from callbridge.testing.clock import FakeClock

from tests.modes_support import Book, call, engine_for, status

pytestmark = pytest.mark.usefixtures("secret_key")

END = datetime(2026, 1, 5, 15, 4, tzinfo=UTC)
DURING = datetime(2026, 1, 5, 15, 2, tzinfo=UTC)


def books() -> dict[str, Book]:
    crm, other = Book(), Book(name="other")
    crm.add("c1", "Ada Lovelace", "+12125550142")
    crm.add("c2", "Ada (work)", "+12125550142")
    other.add("o1", "Ada L.", "+12125550142")
    return {"crm": crm, "other": other}


def at(clock: FakeClock, when: datetime) -> None:
    clock.advance((when - clock.now()).total_seconds())


async def test_notes_during_the_call_delay_its_log_with_the_notes_and_the_chosen_contact(
        tmp_path: Path) -> None:
    apps, clock = books(), FakeClock()
    async with engine_for(tmp_path, apps, clock=clock) as engine:
        await engine.ingest(call("c-1", state="in_progress"))
        at(clock, DURING)
        done = await add_notes(engine, "c-1", {"crm": ["c2"]}, "Wants a call back", DURING)
        assert done == {"crm": "delayed"}
        at(clock, END)
        stored = await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        assert apps["other"].logs == []  # the grace period for late notes
        clock.advance(20)
        await engine.run_until_idle()
        assert [w.contacts for w in apps["other"].logs] == [[("o1", "Ada L.")]]
        assert status(engine, stored.event_pk, "crm") == ("waiting", "delay", "delayed")
        clock.advance(4 * 60 + 30)
        await engine.run_until_idle()
        assert apps["crm"].logs == []  # five minutes after the end, not before
        clock.advance(15)
        await engine.run_until_idle()
        assert status(engine, stored.event_pk, "crm") == ("logged", None, "delayed")
    [written] = apps["crm"].logs
    assert (written.contacts, written.notes) == ([("c2", "Ada (work)")], "Wants a call back")


async def test_notes_cancelled_before_the_end_leave_automatic_logging_as_usual(
        tmp_path: Path) -> None:
    apps, clock = books(), FakeClock()
    apps["crm"].contacts.pop("c2")
    async with engine_for(tmp_path, apps, clock=clock) as engine:
        await engine.ingest(call("c-1", state="in_progress"))
        await add_notes(engine, "c-1", {"crm": []}, "draft", clock.now())
        await cancel_notes(engine, "c-1")
        at(clock, END)
        stored = await engine.ingest(call("c-1"))
        clock.advance(20)
        await engine.run_until_idle()
        assert status(engine, stored.event_pk, "crm") == ("logged", None, "auto")
    [written] = apps["crm"].logs
    assert (written.contacts, written.notes) == ([("c1", "Ada Lovelace")], None)


async def test_notes_cancelled_after_the_end_stay_delayed_with_the_automatic_content(
        tmp_path: Path) -> None:
    apps, clock = books(), FakeClock()
    apps["crm"].contacts.pop("c2")
    async with engine_for(tmp_path, apps, clock=clock) as engine:
        await engine.ingest(call("c-1", state="in_progress"))
        await add_notes(engine, "c-1", {"crm": ["c1"]}, "draft", clock.now())
        at(clock, END)
        stored = await engine.ingest(call("c-1"))
        clock.advance(30)
        await cancel_notes(engine, "c-1")
        await engine.run_until_idle()
        assert apps["crm"].logs == []
        assert status(engine, stored.event_pk, "crm") == ("waiting", "delay", "delayed")
        clock.advance(5 * 60)
        await engine.run_until_idle()
    [written] = apps["crm"].logs
    assert (written.contacts, written.notes) == ([("c1", "Ada Lovelace")], None)


async def test_notes_started_during_the_call_but_arriving_after_the_end_still_delay_it(
        tmp_path: Path) -> None:
    apps, clock = books(), FakeClock()
    async with engine_for(tmp_path, apps, clock=clock) as engine:
        await engine.ingest(call("c-1", state="ringing"))
        at(clock, END)
        stored = await engine.ingest(call("c-1"))
        clock.advance(12)  # inside the grace period
        assert await add_notes(engine, "c-1", {"crm": ["c1"]}, "late typist", DURING) == {
            "crm": "delayed"}
        clock.advance(10)
        await engine.run_until_idle()
        assert apps["crm"].logs == [] and len(apps["other"].logs) == 1
        clock.advance(5 * 60)
        await engine.run_until_idle()
        assert status(engine, stored.event_pk, "crm") == ("logged", None, "delayed")
    assert [w.notes for w in apps["crm"].logs] == ["late typist"]  # once, never automatic too


async def test_notes_after_the_automatic_log_or_started_after_the_end_are_a_late_detail(
        tmp_path: Path) -> None:
    apps, clock = books(), FakeClock()
    apps["crm"].contacts.pop("c2")
    async with engine_for(tmp_path, apps, clock=clock) as engine:
        await engine.ingest(call("c-1", state="in_progress"))
        at(clock, END)
        await engine.ingest(call("c-1"))
        clock.advance(21)
        await engine.run_until_idle()
        assert len(apps["crm"].logs) == 1
        assert await add_notes(engine, "c-1", {"crm": []}, "typed late", DURING) == {
            "crm": "late_detail"}
        await engine.run_until_idle()
        assert await add_notes(engine, "c-1", {"other": []}, "after", END.replace(minute=5)) == {
            "other": "late_detail"}
        await engine.run_until_idle()
    assert len(apps["crm"].logs) == 1  # never a second log
    assert apps["crm"].updates[-1] == ("c-1", "typed late\n\nafter")


async def test_a_revision_carrying_notes_while_in_progress_delays_every_automatic_app(
        tmp_path: Path) -> None:
    apps, clock = books(), FakeClock()
    apps["crm"].contacts.pop("c2")
    async with engine_for(tmp_path, apps, clock=clock) as engine:
        await engine.ingest(call("c-1", state="in_progress", notes="from the handset"))
        at(clock, END)
        stored = await engine.ingest(call("c-1"))
        clock.advance(60)
        await engine.run_until_idle()
        assert (apps["crm"].logs, apps["other"].logs) == ([], [])
        assert status(engine, stored.event_pk, "other")[2] == "delayed"
        clock.advance(5 * 60)
        await engine.run_until_idle()
    assert [w.notes for w in apps["crm"].logs + apps["other"].logs] == ["from the handset"] * 2


async def test_a_delayed_log_survives_a_restart(tmp_path: Path) -> None:
    apps, clock = books(), FakeClock()
    async with engine_for(tmp_path, apps, clock=clock) as engine:
        await engine.ingest(call("c-1", state="in_progress"))
        await add_notes(engine, "c-1", {"crm": ["c1"]}, "kept", clock.now())
        at(clock, END)
        stored = await engine.ingest(call("c-1"))
    clock.advance(6 * 60)
    async with engine_for(tmp_path, apps, clock=clock) as engine:  # a new process, same ledger
        await engine.run_until_idle()
        assert status(engine, stored.event_pk, "crm") == ("logged", None, "delayed")
    assert [w.notes for w in apps["crm"].logs] == ["kept"]


async def test_bad_notes_are_refused_naming_the_field(tmp_path: Path) -> None:
    apps, clock = books(), FakeClock()
    async with engine_for(tmp_path, apps, clock=clock) as engine:
        await engine.ingest(call("c-1", state="in_progress"))
        for kwargs, field in (({"apps": {}}, "apps"), ({"text": ""}, "notes"),
                              ({"text": "x\x00"}, "notes"), ({"apps": {"crm": ["o1"]}}, "contact"),
                              ({"started_at": datetime(2026, 1, 5, 15, 1)}, "started_at")):
            args = {"apps": {"crm": []}, "text": "ok", "started_at": DURING, **kwargs}
            with pytest.raises(ManualRefused) as refused:
                await add_notes(engine, "c-1", **args)  # type: ignore[arg-type]
            assert refused.value.field == field


async def test_a_delayed_log_held_until_the_call_ends_leaves_nothing_to_wait_for(
        tmp_path: Path) -> None:
    from callbridge.drain import drain

    apps, clock = books(), FakeClock()
    async with engine_for(tmp_path, apps, clock=clock) as engine:
        await engine.ingest(call("c-1", state="in_progress", notes="from the handset"))
        drained = await asyncio.wait_for(drain(engine, wait_max=600), timeout=30)
        assert drained.left_open == 0 and clock.now() == datetime(2026, 1, 5, 15, tzinfo=UTC)
        assert (await engine.scheduler.due()).next_at is None
