"""The Smokeball hooks called as the host calls them, over the sandbox in process.

Each test reads what reached the sandbox (its records and its request log), so
what is asserted is what Smokeball would hold.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import callbridge_smokeball as plugin
import pytest
from callbridge.errors import RateLimited, SkipEvent, TransientError, UnknownActivityCode
from callbridge.events import ExternalParty
from callbridge.http import UncertainWrite
from callbridge.models import AppUser, Contact, LogStatus, LogTarget, Matter, Record
from callbridge.settings import AppSettings
from callbridge_smokeball import SmokeballSettings
from callbridge_smokeball.api import FILE_MARKER_KEY

from plugins.smokeball.tests.conftest import Delivery, Smokeball, build_ctx, locks, shared
from plugins.smokeball.tests.samples import call, fax, missed, sms


def party(number: str, email: str | None = None) -> ExternalParty:
    data: dict[str, Any] = {"number": number}
    if email:
        data["email"] = email
    return ExternalParty.model_validate(data, context={"region": "US"})


def only(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    assert len(records) == 1, f"expected one record, found {len(records)}"
    return next(iter(records.values()))


def target(sb: Smokeball, contact: str | None = "dana", matter: str | None = "lease",
           user: str | None = "bob") -> LogTarget:
    return LogTarget(
        contacts=(Contact(id=sb.ids[contact], name="Dana Whitfield"),) if contact else (),
        matter=Matter(id=sb.ids[matter]) if matter else None,
        user=AppUser(id=sb.ids[user], name="Bob Stone") if user else None)


# --- contacts ------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "who"), [
    ("+12125550142", "dana"),   # person phone {212, 555-0142}
    ("+16465550111", "sam"),    # person cell typed with +1 and spaces
    ("+12125550150", "lee"),    # person phone2 {212, 555 0150}
    ("+16465550120", "acme"),   # company phone
    ("+12125550160", "olive"),  # one run of digits, no area code
])
async def test_a_contact_is_found_by_any_of_its_numbers(hook_ctx: Any, sb: Smokeball,
                                                         number: str, who: str) -> None:
    found = await plugin.find_contact(hook_ctx, party(number))
    assert [c.id for c in found] == [sb.ids[who]]
    searched = [v for r in sb.api("GET", "/contacts") for k, v in r["query"] if k == "Search"]
    assert searched == [f"phone:*{number[-4:]}*"]


async def test_a_number_grouped_in_threes_is_found_by_its_last_three_digits(
        hook_ctx: Any, sb: Smokeball) -> None:
    sb.state.add_contact("Ava", "Grant", cell=("", "+61 491 570 156"))
    found = await plugin.find_contact(hook_ctx, party("+61491570156"))
    assert [c.name for c in found] == ["Ava Grant"]
    searched = [v for r in sb.api("GET", "/contacts") for k, v in r["query"] if k == "Search"]
    assert searched == ["phone:*0156*", "phone:*156*"]


async def test_an_unknown_number_finds_nobody_and_a_candidate_sharing_digits_is_refused(
        hook_ctx: Any, sb: Smokeball) -> None:
    sb.state.add_contact("Not", "Him", phone=("646", "555-0142"))  # same last four digits
    assert await plugin.find_contact(hook_ctx, party("+12125550199")) == []
    found = await plugin.find_contact(hook_ctx, party("+12125550142"))
    assert [c.id for c in found] == [sb.ids["dana"]]


async def test_a_contact_is_found_by_email(hook_ctx: Any, sb: Smokeball) -> None:
    found = await plugin.find_contact(hook_ctx, party("+12125550199", "DANA@example.com"))
    assert [c.id for c in found] == [sb.ids["dana"]]


async def test_a_created_contact_carries_the_marker_and_a_retry_finds_it(sb: Smokeball) -> None:
    delivery = Delivery()
    delivery.marker = "cb1-0123456789abcdef0123456789abcdef"  # type: ignore[attr-defined]
    ctx = build_ctx(sb, delivery=delivery)
    sb.faults.fail_on[("POST", "/contacts")] = ["drop_after"]  # created, answer lost
    with pytest.raises(UncertainWrite):
        await plugin.create_contact(ctx, party("+12125550188"), "Rae Quinn")
    delivery.retry()
    created = await plugin.create_contact(ctx, party("+12125550188"), "Rae Quinn")
    stored = sb.state.data["contacts"][created.id]
    assert stored["externalSystemId"] == "cb1-0123456789abcdef0123456789abcdef"
    assert stored["person"]["firstName"] == "Rae" and stored["person"]["lastName"] == "Quinn"
    assert stored["person"]["phone"] == {"areaCode": "", "number": "+12125550188"}
    assert len(sb.api("POST", "/contacts")) == 1
    assert sb.api("POST", "/contacts")[0]["request_id"] == \
        "cb1-0123456789abcdef0123456789abcdef:contact"


async def test_contacts_changed_since_pages_with_a_cursor(hook_ctx: Any, sb: Smokeball) -> None:
    sb.state.max_page_size = 2
    first = await plugin.contacts_changed_since(hook_ctx, since=None, cursor=None)
    assert len(first.contacts) == 2 and first.cursor == "2"
    seen = [c.id for c in first.contacts]
    cursor = first.cursor
    while cursor:
        page = await plugin.contacts_changed_since(hook_ctx, since=None, cursor=cursor)
        seen += [c.id for c in page.contacts]
        cursor = page.cursor
    assert sorted(seen) == sorted(sb.state.data["contacts"])
    assert first.high_water is not None
    later = await plugin.contacts_changed_since(
        hook_ctx, since=datetime(2027, 3, 2, 15, tzinfo=UTC), cursor=None)
    assert later.contacts == () and later.cursor is None
    ticks = [v for r in sb.api("GET", "/contacts") for k, v in r["query"] if k == "UpdatedSince"]
    assert ticks == ["639395964000000000"]  # 2027-03-02T15:00Z in .NET ticks


# --- matters and staff ------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "expected"), [
    ("dana", ["lease"]), ("sam", ["estate", "trust"]), ("olive", ["contract"]), ("acme", []),
])
async def test_matters_are_the_open_and_pending_ones_the_contact_is_on(
        hook_ctx: Any, sb: Smokeball, who: str, expected: list[str]) -> None:
    matters = await plugin.find_matters(hook_ctx, Contact(id=sb.ids[who]))
    assert sorted(m.id for m in matters) == sorted(sb.ids[m] for m in expected)
    (request,) = sb.api("GET", "/matters")
    assert ("ContactId", sb.ids[who]) in request["query"]
    assert [v for k, v in request["query"] if k == "Status"] == ["Open", "Pending"]


async def test_find_user_skips_former_and_disabled_staff(hook_ctx: Any, sb: Smokeball) -> None:
    assert (await plugin.find_user(hook_ctx, "BOB@firm.example")).id == sb.ids["bob"]
    assert await plugin.find_user(hook_ctx, "cy@firm.example") is None
    assert await plugin.find_user(hook_ctx, "dee@firm.example") is None
    assert len(sb.api("GET", "/staff")) == 1  # kept for the next calls


@pytest.mark.parametrize(("sort", "expected"), [("last_name", "Zoe Abbott"),
                                                 ("display_name", "Ann Lee")])
async def test_the_default_user_is_the_first_enabled_staff_member_by_the_sort_key(
        sb: Smokeball, sort: str, expected: str) -> None:
    sb.state.add_staff("Zoe", "Abbott", "zoe@firm.example")
    ctx = build_ctx(sb, options=SmokeballSettings(default_user_sort=sort))  # type: ignore[arg-type]
    user = await plugin.pick_default_user(ctx)
    assert user is not None and user.name == expected  # Cy Adams is former: skipped


# --- the activity code ---------------------------------------------------------------------------


async def test_an_existing_code_is_used_as_it_is_whatever_its_settings(sb: Smokeball) -> None:
    existing = sb.state.add_activity_code("cb-call", description="Firm's own", billable=False,
                                          rate=410.0)
    before = dict(sb.state.data["activitycodes"][existing])
    ctx = build_ctx(sb)
    assert await plugin.ensure_activity_code(ctx, "CB-CALL") == "cb-call"
    assert sb.api("POST", "/activitycodes") == [] and sb.state.data["activitycodes"][existing] \
        == before


async def test_a_missing_code_is_created_once_as_a_time_code(sb: Smokeball) -> None:
    ctx = build_ctx(sb)
    assert await plugin.ensure_activity_code(ctx, "CB-CALL") == "CB-CALL"
    assert await plugin.ensure_activity_code(ctx, "CB-CALL") == "CB-CALL"
    code = next(c for c in sb.state.data["activitycodes"].values() if c["code"] == "CB-CALL")
    assert code["type"] == 1 and code["rateType"] == 0
    assert len(sb.api("POST", "/activitycodes")) == 1


async def test_a_code_deleted_by_the_firm_is_ensured_again_after_the_typed_error(
        sb: Smokeball) -> None:
    code = sb.state.add_activity_code("CB-CALL")
    host = shared(sb)
    await plugin.log_call(build_ctx(sb, **host), call(), target(sb))
    sb.state.data["activitycodes"][code]["isDeleted"] = True  # the firm deleted it
    with pytest.raises(UnknownActivityCode):
        await plugin.log_call(build_ctx(sb, **host), call(id="sb-call-2"), target(sb))
    await plugin.log_call(build_ctx(sb, **host), call(id="sb-call-2"), target(sb))
    assert len(sb.state.rows("fees")) == 2 and len(sb.api("POST", "/activitycodes")) == 1


async def test_two_processes_racing_create_one_code_even_before_smokeball_shows_it(
        sb: Smokeball) -> None:
    sb.state.write_delay = 600.0  # the created code is not readable for ten minutes
    shared_lock, host = locks(), shared(sb)  # the ledger's lock, store and cache
    one = build_ctx(sb, lock=shared_lock, **host)
    two = build_ctx(sb, lock=shared_lock, **host)
    codes = await asyncio.gather(plugin.ensure_activity_code(one, "CB-CALL"),
                                 plugin.ensure_activity_code(two, "CB-CALL"))
    assert codes == ["CB-CALL", "CB-CALL"]
    assert len(sb.api("POST", "/activitycodes")) == 1


# --- calls ------------------------------------------------------------------------------------------


async def test_a_call_with_one_matter_is_a_fee_in_billed_minutes(hook_ctx: Any,
                                                                sb: Smokeball) -> None:
    result = await plugin.log_call(hook_ctx, call(), target(sb))
    fee = only(sb.state.data["fees"])
    assert result.status == LogStatus.ACCEPTED
    assert result.records == (Record(kind="fee", id=f"{sb.ids['lease']}/{fee['id']}", step="fee"),)
    assert fee["matterId"] == sb.ids["lease"] and fee["feeType"] == 1
    assert fee["duration"] == 6 and fee["durationWorked"] == 5  # 4m 12s of talk, 6-minute units
    assert fee["activityCode"] == "CB-CALL" and fee["staffId"] == sb.ids["bob"]
    assert fee["isBillable"] is False and fee["feeDate"] == "2026-03-02"
    assert fee["subject"] == "Call from Dana Whitfield (+1 212-555-0142)"
    assert "Asked when the lease hearing is." in fee["description"]
    assert fee["description"].endswith(f"callbridge ref: {call().marker}")
    (post,) = sb.api("POST", f"/matters/{sb.ids['lease']}/fees")
    assert post["request_id"] == f"{call().marker}:fee"


async def test_the_billing_unit_and_billable_status_are_settings(sb: Smokeball) -> None:
    ctx = build_ctx(sb, options=SmokeballSettings(billing_unit_minutes=15),
                    settings=AppSettings(plugin="smokeball", default_billable=True))
    await plugin.log_call(ctx, call(), target(sb))
    fee = only(sb.state.data["fees"])
    assert fee["duration"] == 15 and fee["isBillable"] is True


async def test_an_unanswered_call_with_one_matter_is_a_fee_of_zero_minutes(
        hook_ctx: Any, sb: Smokeball) -> None:
    await plugin.log_call(hook_ctx, missed(), target(sb))
    fee = only(sb.state.data["fees"])
    assert fee["duration"] == 0 and fee["durationWorked"] == 0
    assert fee["subject"].startswith("Missed call from")


async def test_a_call_without_a_matter_is_a_task_for_the_matched_staff_member(
        hook_ctx: Any, sb: Smokeball) -> None:
    result = await plugin.log_call(hook_ctx, call(), target(sb, matter=None))
    task = only(sb.state.data["tasks"])
    assert result.records == (Record(kind="task", id=task["id"], step="task"),)
    assert task["assignees"] == [{"id": sb.ids["bob"]}] and task["createdBy"] == {"id": sb.ids["bob"]}
    assert task["matter"] is None and task["duration"] == "PT4M12S"
    assert task["isCompleted"] is True and sb.state.data["fees"] == {}


async def test_a_missed_call_task_without_a_user_goes_open_to_the_default_user(
        hook_ctx: Any, sb: Smokeball) -> None:
    await plugin.log_call(hook_ctx, missed(), target(sb, matter=None, user=None))
    task = only(sb.state.data["tasks"])
    assert task["assignees"] == [{"id": sb.ids["ann"]}]  # Lee before Stone
    assert task["isCompleted"] is False and task["dueDateOnly"] == "2026-03-02"


# --- SMS and faxes ---------------------------------------------------------------------------------


async def test_an_sms_with_one_matter_is_a_memo_else_a_task(hook_ctx: Any, sb: Smokeball) -> None:
    result = await plugin.log_sms(hook_ctx, sms(), target(sb))
    memo = only(sb.state.data["memos"])
    assert result.records[0].kind == "memo" and memo["matterId"] == sb.ids["lease"]
    assert memo["title"] == "SMS to Dana Whitfield (+1 212-555-0142)"
    assert "Your hearing moved to Friday." in memo["text"]
    await plugin.log_sms(hook_ctx, sms(id="sb-sms-2"), target(sb, matter=None))
    assert only(sb.state.data["tasks"])["subject"].startswith("SMS to")


async def test_a_fax_is_uploaded_to_the_matter_through_a_bare_put(hook_ctx: Any,
                                                                  sb: Smokeball) -> None:
    result = await plugin.log_fax(hook_ctx, fax(), target(sb))
    stored = only(sb.state.data["files"])
    assert [(r.kind, r.step) for r in result.records] == [("document", "document"),
                                                          ("document", "uploaded")]
    assert stored["isUploaded"] is True and stored["name"] == "Lease addendum.pdf"
    assert stored["_folderPath"] == "Faxes"
    assert stored["additionalData"] == {FILE_MARKER_KEY: fax().marker}
    assert sb.state.uploads[stored["id"]].startswith(b"%PDF-1.4")


@pytest.mark.parametrize(("contact", "matter", "reason"), [
    (None, "lease", "no_contact"), ("dana", None, "no_matter")])
async def test_a_fax_without_a_contact_or_one_matter_is_skipped(
        hook_ctx: Any, sb: Smokeball, contact: str | None, matter: str | None,
        reason: str) -> None:
    with pytest.raises(SkipEvent) as info:
        await plugin.log_fax(hook_ctx, fax(), target(sb, contact=contact, matter=matter))
    assert info.value.reason == reason
    assert sb.state.data["files"] == {}


async def test_an_upload_that_keeps_failing_is_a_partial_success(sb: Smokeball) -> None:
    delivery = Delivery()
    ctx = build_ctx(sb, delivery=delivery)
    sb.state.storage_fault = 503
    for attempt in (1, 2):
        with pytest.raises(TransientError):
            await plugin.log_fax(ctx, fax(), target(sb))
        assert delivery.attempt == attempt
        delivery.retry()
    result = await plugin.log_fax(ctx, fax(), target(sb))
    assert result.status == LogStatus.ACCEPTED
    assert [(r.kind, r.step) for r in result.records] == [("document", "document")]
    assert (getattr(result, "missing", None) or (result.note,)) in (("document",),
                                                                    ("document missing",))
    assert len(sb.state.data["files"]) == 1 and sb.state.uploads == {}


async def test_a_rate_limit_on_the_last_upload_attempt_is_waited_out_not_a_missing_document(
        sb: Smokeball) -> None:
    """A full window met while the file is uploaded is the host's wait (``RateLimited``
    reaches it as it is: the delivery waits for room, its attempt not counted), even on
    the last upload attempt: the document is not given up for it."""
    from callbridge.errors import RateLimited

    delivery = Delivery()
    ctx = build_ctx(sb, delivery=delivery)
    sb.state.storage_fault = 503
    for _ in (1, 2):
        with pytest.raises(TransientError):
            await plugin.log_fax(ctx, fax(), target(sb))
        delivery.retry()
    sb.state.storage_fault = None
    sb.faults.fail_next = [(429, 60.0)]
    with pytest.raises(RateLimited):
        await plugin.log_fax(ctx, fax(), target(sb))
    assert len(sb.state.data["files"]) == 1 and sb.state.uploads == {}


# --- late details, confirmation, retries -------------------------------------------------------------


async def test_late_details_edit_the_fee_and_the_task_in_place(hook_ctx: Any,
                                                               sb: Smokeball) -> None:
    late = {"recording_url": "https://recordings.example.com/sb-call-1.mp3",
            "transcript": "Hello."}
    logged = await plugin.log_call(hook_ctx, call(), target(sb))
    await plugin.update_log(hook_ctx, call(**late), list(logged.records))
    fee = only(sb.state.data["fees"])
    assert "Recording: https://recordings.example.com/sb-call-1.mp3" in fee["description"]
    assert "Asked when the lease hearing is." in fee["description"]
    assert fee["description"].endswith(f"callbridge ref: {call().marker}")
    assert fee["duration"] == 6  # only the description changed
    tasked = await plugin.log_call(hook_ctx, call(id="sb-call-2"), target(sb, matter=None))
    await plugin.update_log(hook_ctx, call(id="sb-call-2", **late), list(tasked.records))
    task = only(sb.state.data["tasks"])
    assert "Transcript:\nHello." in task["note"] and task["assignees"] == [{"id": sb.ids["bob"]}]
    assert len(sb.state.data["fees"]) == 1 and len(sb.state.data["tasks"]) == 1


async def test_a_revised_sms_rewrites_the_memo_text_in_place(hook_ctx: Any,
                                                             sb: Smokeball) -> None:
    logged = await plugin.log_sms(hook_ctx, sms(), target(sb))
    await plugin.update_log(hook_ctx, sms(body="Your hearing moved to Monday."),
                            list(logged.records))
    memo = only(sb.state.data["memos"])
    assert "Monday" in memo["text"] and "Friday" not in memo["text"]
    assert memo["text"].startswith("Direction: outbound")
    assert memo["text"].endswith(f"callbridge ref: {sms().marker}")
    assert memo["title"].startswith("SMS to Dana Whitfield")


async def test_an_update_keeps_the_marker_the_record_was_written_with(hook_ctx: Any,
                                                                      sb: Smokeball) -> None:
    logged = await plugin.log_call(hook_ctx, call(), target(sb, matter=None))
    hook_ctx.delivery.marker = "cb2-00112233445566778899aabbccddeeff"  # type: ignore[union-attr]
    await plugin.update_log(hook_ctx, call(transcript="Hello."), list(logged.records))
    assert only(sb.state.data["tasks"])["note"].endswith(f"callbridge ref: {call().marker}")


async def test_confirmation_finds_accepted_records_once_readable_and_never_a_lost_one(
        hook_ctx: Any, sb: Smokeball) -> None:
    sb.state.write_delay = 90.0
    since = sb.clock.now()
    fee = (await plugin.log_call(hook_ctx, call(), target(sb))).records[0]
    task = (await plugin.log_call(hook_ctx, call(id="sb-call-2"), target(sb, matter=None))
            ).records[0]
    sb.state.lose_next_writes = 1
    lost = (await plugin.log_sms(hook_ctx, sms(), target(sb))).records[0]
    records = [fee, task, lost]
    assert await plugin.logs.confirm_accepted(hook_ctx, records, since) == {
        fee.id: False, task.id: False, lost.id: False}
    sb.clock.advance(120)
    sb.state.requests.clear()
    assert await plugin.logs.confirm_accepted(hook_ctx, records, since) == {
        fee.id: True, task.id: True, lost.id: False}
    assert len(sb.state.requests) == 3  # tasks once, the matter's fees once, its memos once


async def test_a_write_accepted_then_lost_is_created_again_once(sb: Smokeball) -> None:
    sb.state.add_activity_code("CB-CALL")
    sb.state.lose_next_writes = 1
    first = Delivery()
    await plugin.log_call(build_ctx(sb, delivery=first), call(), target(sb))
    # The confirmation found nothing: the host drops the record and tries again.
    again = Delivery(attempt=2)
    result = await plugin.log_call(build_ctx(sb, delivery=again), call(), target(sb))
    visible = sb.state.rows("fees")
    assert [f"{sb.ids['lease']}/{f['id']}" for f in visible] == [result.records[0].id]
    assert len(sb.api("POST", f"/matters/{sb.ids['lease']}/fees")) == 2


async def test_an_uncertain_write_is_found_by_its_marker_not_written_twice(sb: Smokeball) -> None:
    delivery = Delivery()
    ctx = build_ctx(sb, delivery=delivery)
    sb.faults.fail_on[("POST", "/tasks")] = ["drop_after"]
    with pytest.raises(UncertainWrite):
        await plugin.log_call(ctx, call(), target(sb, matter=None))
    delivery.retry()
    result = await plugin.log_call(ctx, call(), target(sb, matter=None))
    assert result.records[0].id == only(sb.state.data["tasks"])["id"]
    assert len(sb.api("POST", "/tasks")) == 1


async def test_a_429_storm_slows_the_writes_and_duplicates_nothing(sb: Smokeball) -> None:
    sb.state.rate, sb.state.burst = 0.5, 2  # another deployment shares the partner's bucket
    events = [call(id=f"sb-storm-{i}") for i in range(6)]
    host = shared(sb)  # the host's store and cache outlive an attempt
    for event in events:
        delivery = Delivery()
        for _ in range(20):
            try:
                await plugin.log_call(build_ctx(sb, delivery=delivery, **host), event,
                                      target(sb))
                break
            except RateLimited:
                sb.clock.advance(5)  # the host waits for room; the attempt count is unchanged
        else:
            pytest.fail("the storm never let a write through")
    assert sum(1 for r in sb.state.requests if r["status"] == 429) > 0
    fees = sb.state.rows("fees")
    assert len(fees) == 6 and len({f["description"] for f in fees}) == 6
