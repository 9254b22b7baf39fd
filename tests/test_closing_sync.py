"""The closed-matter sync's host: triggers, once per matter, held by a configuration
error, retries to a deadline, a restart, and the scheduler's work unit."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from callbridge.closing.schedule import poll_soon, run_due
from callbridge.closing.store import ClosingStore
from callbridge.closing.sync import sync_firm
from callbridge.testing.clock import FakeClock

from tests.closing_fakes import START, Destination, Source, closed, engine

MIXED = [closed("1", opted_in=True), closed("2", opted_in=True, opted_out=True),
         closed("3", opted_in=False), closed("4", opted_in=None),
         closed("5", opted_in=True, opted_out=False)]


async def run(tmp_path: Path, key: str, source: Source, dest: Destination, clock: FakeClock,
              **closed_settings: object) -> object:
    e = engine(tmp_path, key, source, dest, clock, **closed_settings)
    try:
        return await sync_firm(e, "acme")
    finally:
        await e.aclose()


async def test_mixed_opt_in_and_opt_out_send_exactly_the_opted_in_clients(
        tmp_path: Path, key: str) -> None:
    source, dest, clock = Source(MIXED), Destination(), FakeClock(START)
    report = await run(tmp_path, key, source, dest, clock)
    assert [(c, m) for c, m, _ in dest.sent] == [("c1", "1"), ("c5", "5")]
    fates = {x.matter: (x.fate, x.reason) for x in report.lines}  # type: ignore[attr-defined]
    assert fates == {"1": ("sent", None), "2": ("skipped", "opted_out"),
                     "3": ("skipped", "not_opted_in"), "4": ("skipped", "not_opted_in"),
                     "5": ("sent", None)}
    assert len({marker for _, _, marker in dest.sent}) == 2


async def test_a_second_run_and_a_page_read_again_send_nothing_twice(
        tmp_path: Path, key: str) -> None:
    source, dest, clock = Source(MIXED), Destination(), FakeClock(START)
    await run(tmp_path, key, source, dest, clock)
    again = await run(tmp_path, key, source, dest, clock)
    assert again.lines == [] and len(dest.sent) == 2  # type: ignore[attr-defined]
    # A crash after the sends were queued but before the position was kept: read again.
    e = engine(tmp_path, key, source, dest, clock)
    await e.db(e.ledger.kv_delete, "acme", "source", "closed:position")
    try:
        await sync_firm(e, "acme")
    finally:
        await e.aclose()
    assert len(dest.sent) == 2


async def test_a_restart_in_the_middle_neither_misses_nor_repeats(
        tmp_path: Path, key: str) -> None:
    source, dest, clock = Source(MIXED, fail_after_pages=1), Destination(), FakeClock(START)
    first = await run(tmp_path, key, source, dest, clock)
    assert first.error and [c for c, _, _ in dest.sent] == ["c1"]  # type: ignore[attr-defined]
    source.fail_after_pages = None
    await run(tmp_path, key, source, dest, clock)  # a new engine on the same ledger file
    assert [c for c, _, _ in dest.sent] == ["c1", "c5"]
    assert source.calls[-3:] == ["2", "2", "4"]  # from the kept position, not from the start


async def test_a_missing_field_holds_every_send_until_fixed(tmp_path: Path, key: str) -> None:
    source, dest, clock = Source(MIXED[:1]), Destination(), FakeClock(START)
    source.fields[("matter", "SendBroadlyThankYou")] = None  # not in the firm's app
    report = await run(tmp_path, key, source, dest, clock)
    assert dest.sent == [] and report.held == 1  # type: ignore[attr-defined]
    assert report.problems == [  # type: ignore[attr-defined]
        "the matter custom field 'SendBroadlyThankYou' does not exist in source (names are "
        "matched exactly, case included)"]
    source.matters.append(closed("5", opted_in=True))  # closes while the error stands
    source.fields[("matter", "SendBroadlyThankYou")] = "text_line"
    report = await run(tmp_path, key, source, dest, clock)
    assert dest.sent == [] and "not a checkbox" in report.problems[0]  # type: ignore[attr-defined]
    e = engine(tmp_path, key, source, dest, clock)
    assert await ClosingStore(e, "acme", "source", "dest").config_errors()
    await e.aclose()
    source.fields[("matter", "SendBroadlyThankYou")] = "checkbox"
    report = await run(tmp_path, key, source, dest, clock)
    assert [c for c, _, _ in dest.sent] == ["c1", "c5"] and not report.problems  # type: ignore[attr-defined]


async def test_a_failing_receiver_is_retried_with_backoff_under_one_idempotency_id(
        tmp_path: Path, key: str) -> None:
    source, dest, clock = Source(MIXED[:1]), Destination(failures=2), FakeClock(START)
    report = await run(tmp_path, key, source, dest, clock)
    assert report.lines[0].fate == "waiting" and dest.sent == []  # type: ignore[attr-defined]
    for _ in range(2):
        clock.advance(3600)
        await run(tmp_path, key, source, dest, clock)
    assert len(dest.attempts) == 3 and len(set(dest.attempts)) == 1
    assert [c for c, _, _ in dest.sent] == ["c1"]


async def test_past_its_deadline_a_send_is_dead_and_can_be_queued_again(
        tmp_path: Path, key: str) -> None:
    source, dest, clock = Source(MIXED[:1]), Destination(failures=100), FakeClock(START)
    await run(tmp_path, key, source, dest, clock, deadline_hours=1)
    clock.advance(2 * 3600)
    report = await run(tmp_path, key, source, dest, clock, deadline_hours=1)
    assert report.lines[0].fate == "dead"  # type: ignore[attr-defined]
    dest.failures = 0
    e = engine(tmp_path, key, source, dest, clock, deadline_hours=1)
    try:
        report = await sync_firm(e, "acme", requeue_failed=True)
    finally:
        await e.aclose()
    assert report.lines[0].fate == "sent" and len(dest.sent) == 1


async def test_a_permanent_refusal_fails_at_once(tmp_path: Path, key: str) -> None:
    source, dest = Source(MIXED[:1]), Destination(failures=1, permanent=True)
    report = await run(tmp_path, key, source, dest, FakeClock(START))
    assert report.lines[0].fate == "failed" and dest.sent == []  # type: ignore[attr-defined]


async def test_a_matter_closed_again_is_sent_again_only_when_the_firm_says_so(
        tmp_path: Path, key: str) -> None:
    source, dest, clock = Source([closed("1", opted_in=True)]), Destination(), FakeClock(START)
    await run(tmp_path, key, source, dest, clock)
    source.matters.append(closed("1", opted_in=True, on=date(2026, 3, 9)))
    await run(tmp_path, key, source, dest, clock)
    assert len(dest.sent) == 1
    other = tmp_path / "again"
    other.mkdir()
    source.pages_read, dest.sent = 0, []
    await run(other, key, Source(list(source.matters)), dest, clock,
              send_again_when_closed_again=True)
    assert [m for _, m, _ in dest.sent] == ["1", "1"] and dest.sent[0][2] != dest.sent[1][2]


async def test_no_trigger_sends_nothing_unless_every_closed_matter(
        tmp_path: Path, key: str) -> None:
    off = {"opt_out": {"enabled": False, "field": "BroadlyOptOut"},
           "opt_in": {"enabled": False, "field": "SendBroadlyThankYou"}}
    source, dest = Source(MIXED), Destination()
    report = await run(tmp_path, key, source, dest, FakeClock(START), **off)
    assert dest.sent == [] and {x.reason for x in report.lines} == {"no_trigger"}  # type: ignore[attr-defined]
    every = tmp_path / "every"
    every.mkdir()
    await run(every, key, Source(MIXED), dest, FakeClock(START), **off,
              send_every_closed_matter=True)
    assert len(dest.sent) == 5


async def test_a_matter_closed_before_the_sync_began_is_never_sent(
        tmp_path: Path, key: str) -> None:
    source, dest = Source([closed("1", opted_in=True, on=date(2026, 3, 1))]), Destination()
    await run(tmp_path, key, source, dest, FakeClock(START))
    assert dest.sent == []


async def test_the_scheduler_polls_every_poll_minutes_and_sooner_when_told(
        tmp_path: Path, key: str) -> None:
    source, dest, clock = Source(MIXED[:1]), Destination(), FakeClock(START)
    e = engine(tmp_path, key, source, dest, clock, poll_minutes=10)
    try:
        assert await run_due(e) == 1 and len(source.calls) == 1
        assert await run_due(e) == 0  # not due yet
        source.matters.append(closed("5", opted_in=True))
        await poll_soon(e, "acme")  # a matter-changed notice
        assert await run_due(e) == 1 and len(dest.sent) == 2
        clock.advance(9 * 60)
        assert await run_due(e) == 0
        clock.advance(60)
        assert await run_due(e) == 1
    finally:
        await e.aclose()


async def test_a_destination_that_logs_no_event_gets_no_delivery_of_calls(
        tmp_path: Path, key: str) -> None:
    e = engine(tmp_path, key, Source(), Destination(), FakeClock(START))
    try:
        tenant = e.config.tenant("acme")
        assert e.apps_for(tenant) == ["source"] == e.apps_for(tenant, automatic=False)
    finally:
        await e.aclose()


async def test_the_report_says_what_was_sent_and_skipped_and_why_and_doctor_the_errors(
        tmp_path: Path, key: str) -> None:
    from callbridge.closing.check import check_fields, doctor_checks
    from callbridge.closing.report import text

    source, dest = Source(MIXED[:3]), Destination()
    report = await run(tmp_path, key, source, dest, FakeClock(START))
    lines = text([report])  # type: ignore[list-item]
    assert lines[0] == "acme: source -> dest: 1 sent, 2 skipped"
    assert "  sent     matter M-1 (closed 2026-03-02): record d1" in lines
    assert "  skipped  matter M-2 (closed 2026-03-02): opted out: BroadlyOptOut is checked " \
           "on the client" in lines
    assert not any("Client" in x or "@" in x for x in lines)  # ids, never names or emails
    source.fields[("contact", "BroadlyOptOut")] = "text_area"
    e = engine(tmp_path, key, source, dest, FakeClock(START))
    try:
        assert await check_fields(e, "acme") == [
            "the contact custom field 'BroadlyOptOut' in source is a text_area field, not a "
            "checkbox"]
        assert await e.db(e.ledger.kv_get, "acme", "source", "closed:position") == '"3"'
        await sync_firm(e, "acme")
        checks = doctor_checks(e.ledger, e.registry, "acme", e.config.tenant("acme"))
    finally:
        await e.aclose()
    assert [c["status"] for c in checks] == ["fail"]
    assert "text_area field, not a checkbox" in checks[0]["detail"]


async def test_a_skipped_matter_ticked_later_is_sent_and_an_unchanged_one_is_not_reported_again(
        tmp_path: Path, key: str) -> None:
    source, dest, clock = Source([closed("3", opted_in=False)]), Destination(), FakeClock(START)
    first = await run(tmp_path, key, source, dest, clock)
    assert [x.fate for x in first.lines] == ["skipped"]  # type: ignore[attr-defined]
    source.matters.append(closed("3", opted_in=False))  # read again, still not opted in
    again = await run(tmp_path, key, source, dest, clock)
    assert again.lines == [] and dest.sent == []  # type: ignore[attr-defined]
    source.matters.append(closed("3", opted_in=True))  # the box ticked after closing
    ticked = await run(tmp_path, key, source, dest, clock)
    assert [x.fate for x in ticked.lines] == ["sent"] and len(dest.sent) == 1  # type: ignore[attr-defined]


async def test_an_erased_number_is_never_sent_and_its_details_are_dropped(
        tmp_path: Path, key: str) -> None:
    from callbridge.closing.erasure import erase_number

    source, dest, clock = Source(MIXED[:1]), Destination(failures=1), FakeClock(START)
    await run(tmp_path, key, source, dest, clock)  # waiting after a failure
    e = engine(tmp_path, key, source, dest, clock)
    try:
        tenant = e.config.tenant("acme")
        assert erase_number(e.ledger, "acme", tenant, "+12125550199") == 0
        assert erase_number(e.ledger, "acme", tenant, "+12125550142") == 1
        send = await ClosingStore(e, "acme", "source", "dest").send("1")
    finally:
        await e.aclose()
    assert send is not None and send.matter is None and send.reason == "erased"
    clock.advance(3600)
    report = await run(tmp_path, key, source, dest, clock)
    assert dest.sent == [] and report.lines == []  # type: ignore[attr-defined]


async def test_a_firm_whose_run_fails_outright_is_tried_again_and_stops_nothing(
        tmp_path: Path, key: str) -> None:
    source, dest, clock = Source(MIXED[:1]), Destination(), FakeClock(START)
    e = engine(tmp_path, key, source, dest, clock)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the ledger is unreachable")

    try:
        kv_get = e.ledger.kv_get
        e.ledger.kv_get = broken  # type: ignore[method-assign]
        assert await run_due(e) == 0  # logged, not raised
        e.ledger.kv_get = kv_get  # type: ignore[method-assign]
        assert await run_due(e) == 0  # not before a minute
        clock.advance(60)
        assert await run_due(e) == 1 and len(dest.sent) == 1
    finally:
        await e.aclose()
