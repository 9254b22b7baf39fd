"""The Clio plugin's hooks, called directly as the host calls them, against the sandbox.

Each test seeds the sandbox (``clio.state``), calls one hook with ``hook_ctx`` (the
host's own HTTP clients over the sandbox in process) and reads back what Clio holds.
"""

from __future__ import annotations

import csv
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import callbridge_clio as plugin
import httpx2
import pytest
from callbridge.context import HookContext
from callbridge.errors import PermanentError, SkipEvent, TransientError
from callbridge.events import ExternalParty
from callbridge.models import AppUser, Contact, LogTarget, Matter, Record
from callbridge_clio import ClioSettings, split_name
from callbridge_clio.api import ClioApi

from plugins.clio.tests.samples import call, fax, made_folders, only, sms

VECTORS = Path(__file__).parents[3] / "tests" / "phone-vectors.csv"
PDF = b"%PDF-1.4\n% fax"


def vectors(readable: bool) -> list[Any]:
    rows = [line for line in VECTORS.read_text().splitlines() if line and not line.startswith("#")]
    out = []
    for stored, region, e164, why in csv.reader(rows, delimiter="|"):
        if (e164 != "UNREADABLE") == readable:
            out.append(pytest.param(stored, region, e164, id=why))
    return out


# --- helpers ---------------------------------------------------------------------------


def with_options(ctx: HookContext, **changes: Any) -> HookContext:
    """``ctx`` with some of the plugin's options (ClioSettings) changed."""
    assert isinstance(ctx.options, ClioSettings)
    return dataclasses.replace(ctx, options=ctx.options.model_copy(update=changes))


def with_settings(ctx: HookContext, **changes: Any) -> HookContext:
    """``ctx`` with some of the host's settings for the app (AppSettings) changed."""
    return dataclasses.replace(ctx, settings=ctx.settings.model_copy(update=changes))


def with_region(ctx: HookContext, region: str) -> HookContext:
    return dataclasses.replace(ctx, tenant=ctx.tenant.model_copy(update={"default_region": region}))


def party(number: str | None = "+12125550142", email: str | None = None, region: str = "US") -> ExternalParty:
    return ExternalParty.model_validate({"number": number, "email": email}, context={"region": region})


@pytest.fixture
def dana(clio: Any) -> Contact:
    cid = clio.state.add_contact("Dana", "Whitfield", ["(212) 555-0142"], ["dana@example.com"])
    return Contact(id=str(cid), name="Dana Whitfield")


@pytest.fixture
def ann(clio: Any) -> AppUser:
    uid = clio.state.authorised_user
    return AppUser(id=str(uid), name="Ann Lee", email="ann@acme.example")


@pytest.fixture
def target(clio: Any, dana: Contact, ann: AppUser) -> LogTarget:
    matter = clio.state.add_matter(int(dana.id), "Lease dispute")
    return LogTarget(contacts=(dana,), matter=Matter(id=str(matter)), user=ann)


# --- the declaration and the connection ---------------------------------------------------


def test_the_declaration_names_every_capability_and_the_per_token_limit() -> None:
    declaration = plugin.declare()
    assert declaration.name == "clio" and declaration.hook_api_version == "2.1"
    assert {c.value for c in declaration.capabilities} >= {
        "calls", "sms", "fax", "contact_search_phone", "contact_search_email", "contact_creation",
        "contacts_changed", "matters", "users", "late_details", "file_attachments",
        "custom_fields", "closed_matter_events", "app_events"}
    assert declaration.without_contact == {"call", "sms", "fax"}
    assert declaration.settings_model is ClioSettings
    (bucket,) = declaration.rate_limits
    assert (bucket.requests, bucket.per_seconds, bucket.scope) == (50, 60.0, "token")


@pytest.mark.parametrize(("region", "host"), [("US", "app.clio.com"), ("EU", "eu.app.clio.com"),
                                              ("CA", "ca.app.clio.com"), ("AU", "au.app.clio.com")])
def test_each_region_has_its_own_api_and_oauth_host(region: str, host: str) -> None:
    conn = plugin.connection(ClioSettings(region=region))  # type: ignore[arg-type]
    assert conn.base_url == f"https://{host}/api/v4" and conn.auth == "oauth2"
    assert conn.oauth2 is not None
    assert (conn.oauth2.authorize_url, conn.oauth2.token_url, conn.oauth2.revoke_url) == (
        f"https://{host}/oauth/authorize", f"https://{host}/oauth/token",
        f"https://{host}/oauth/deauthorize")


def test_the_api_version_is_pinned_by_a_setting() -> None:
    assert plugin.connection(ClioSettings()).headers == {"X-API-VERSION": "4.0.13"}
    assert plugin.connection(ClioSettings(api_version="4.0.9")).headers == {"X-API-VERSION": "4.0.9"}


# --- finding contacts -----------------------------------------------------------------------


@pytest.mark.parametrize(("stored", "region", "e164"), vectors(readable=True))
async def test_a_contact_is_found_whatever_readable_form_its_number_is_stored_in(
        clio: Any, hook_ctx: HookContext, stored: str, region: str, e164: str) -> None:
    cid = clio.state.add_contact("Dana", "Whitfield", [stored])
    found = await plugin.find_contact(with_region(hook_ctx, region), party(e164, region=region))
    assert [(c.id, c.phones) for c in found] == [(str(cid), (stored,))]


@pytest.mark.parametrize(("stored", "region", "_e164"), vectors(readable=False))
async def test_an_unreadable_stored_number_is_never_matched(
        clio: Any, hook_ctx: HookContext, stored: str, region: str, _e164: str) -> None:
    clio.state.add_contact("Jane", "Roe", [stored])
    digits = "".join(ch for ch in stored if ch.isdigit())
    asked = f"+1{digits[:10]}" if len(digits) >= 10 else "+12125550142"
    assert await plugin.find_contact(with_region(hook_ctx, region), party(asked, region=region)) == []


async def test_an_unknown_number_finds_no_contact(clio: Any, hook_ctx: HookContext, dana: Contact) -> None:
    assert await plugin.find_contact(hook_ctx, party("+12125550199")) == []


async def test_a_contact_sharing_only_the_last_four_digits_is_not_a_match(
        clio: Any, hook_ctx: HookContext) -> None:
    clio.state.add_contact("Other", "Person", ["(646) 555-0142"])
    assert await plugin.find_contact(hook_ctx, party("+12125550142")) == []


async def test_a_contact_is_found_by_email_whatever_its_case(clio: Any, hook_ctx: HookContext,
                                                             dana: Contact) -> None:
    found = await plugin.find_contact(hook_ctx, party(None, email="DANA@Example.com"))
    assert [c.id for c in found] == [dana.id]


async def test_a_live_phone_search_asks_the_last_four_digits_and_every_common_form(
        clio: Any, hook_ctx: HookContext) -> None:
    await plugin.find_contact(hook_ctx, party("+12125550142"))
    asked = [r["query"]["query"] for r in clio.api_requests("GET", "/api/v4/contacts.json")]
    assert asked == ["0142", "+12125550142", "+1 212-555-0142", "(212) 555-0142", "2125550142",
                     "212-555-0142", "212.555.0142"]


@pytest.mark.parametrize("mode", ["token", "prefix", "exact"])
@pytest.mark.parametrize("stored", ["(212) 555-0142", "212-555-0142", "212.555.0142",
                                    "+1 212-555-0142", "2125550142", "+12125550142"])
async def test_a_strict_search_still_finds_a_number_stored_in_a_common_form(
        clio: Any, hook_ctx: HookContext, mode: str, stored: str) -> None:
    clio.state.search_mode = mode
    cid = clio.state.add_contact("Dana", "Whitfield", [stored])
    found = await plugin.find_contact(hook_ctx, party("+12125550142"))
    assert [c.id for c in found] == [str(cid)]


def test_a_number_whose_format_splits_the_last_four_digits_is_also_searched_as_written() -> None:
    assert "0491 570 156" in plugin.search_texts("+61491570156")


# --- creating contacts ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "first", "last"), [
    ("Mary Ann Lee", "Mary Ann", "Lee"), ("Rae Quinn", "Rae", "Quinn"), ("Cher", "", "Cher"),
    ("New callbridge Contact", "New callbridge", "Contact"), ("  ", "", "Contact")])
async def test_a_new_contact_is_a_person_named_by_a_split_at_the_last_space(
        clio: Any, hook_ctx: HookContext, name: str, first: str, last: str) -> None:
    created = await plugin.create_contact(hook_ctx, party("+17185550123"), name)
    person = clio.state.contacts[int(created.id)]
    assert (person["type"], person["first_name"], person["last_name"]) == ("Person", first, last)
    assert [(p["name"], p["number"]) for p in person["phone_numbers"]] == [("Work", "+17185550123")]
    assert created.phones == ("+17185550123",)


@pytest.mark.parametrize("name", ["", " ", "X", "名前", "A" * 100])
def test_a_split_name_always_has_a_last_name(name: str) -> None:
    assert split_name(name)[1]


async def test_a_new_contact_carries_the_events_email(clio: Any, hook_ctx: HookContext) -> None:
    created = await plugin.create_contact(hook_ctx, party("+17185550123", email="rae@example.com"),
                                          "Rae Quinn")
    assert clio.state.contacts[int(created.id)]["email_addresses"][0]["address"] == "rae@example.com"


# --- matters and users --------------------------------------------------------------------------


async def test_a_contact_without_matters_has_none(clio: Any, hook_ctx: HookContext, dana: Contact) -> None:
    assert await plugin.find_matters(hook_ctx, dana) == []


async def test_closed_matters_do_not_count(clio: Any, hook_ctx: HookContext, dana: Contact) -> None:
    clio.state.add_matter(int(dana.id), "Old case", status="Closed")
    assert await plugin.find_matters(hook_ctx, dana) == []


async def test_open_and_pending_matters_of_the_client_count(clio: Any, hook_ctx: HookContext,
                                                            dana: Contact) -> None:
    opened = clio.state.add_matter(int(dana.id), "Estate")
    pending = clio.state.add_matter(int(dana.id), "Trust", status="Pending")
    clio.state.add_matter(int(dana.id), "Old case", status="Closed")
    found = await plugin.find_matters(hook_ctx, dana)
    assert {(m.id, m.status) for m in found} == {(str(opened), "Open"), (str(pending), "Pending")}


async def test_a_matter_where_the_contact_is_a_related_party_counts(clio: Any, hook_ctx: HookContext,
                                                                    dana: Contact) -> None:
    client = clio.state.add_contact("Lee", "Park", ["212-555-0150"])
    matter = clio.state.add_matter(client, "Contract", related={int(dana.id): "Opposing party"})
    clio.state.add_matter(client, "Closed contract", status="Closed",
                          related={int(dana.id): "Opposing party"})
    assert [m.id for m in await plugin.find_matters(hook_ctx, dana)] == [str(matter)]


async def test_a_matter_where_the_contact_is_client_and_related_is_listed_once(
        clio: Any, hook_ctx: HookContext, dana: Contact) -> None:
    clio.state.add_matter(int(dana.id), "Estate", related={int(dana.id): "Executor"})
    assert len(await plugin.find_matters(hook_ctx, dana)) == 1


def with_clock(ctx: HookContext, clock: Any) -> HookContext:
    """``ctx`` on a clock the test moves."""
    return dataclasses.replace(ctx, clock=clock)


async def test_the_matter_index_is_synced_only_when_older_than_its_staleness(
        clio: Any, hook_ctx: HookContext, dana: Contact) -> None:
    from callbridge.testing.clock import FakeClock

    clock = FakeClock(datetime.now(UTC))
    ctx = with_clock(hook_ctx, clock)
    first = clio.state.add_matter(int(dana.id), "Estate")
    assert [m.id for m in await plugin.find_matters(ctx, dana)] == [str(first)]
    second = clio.state.add_matter(int(dana.id), "Trust")
    clio.state.touch(clio.state.matters, first, status="Closed")
    clock.advance(299)  # still fresh: what changed is not seen yet, and nothing is asked
    assert [m.id for m in await plugin.find_matters(ctx, dana)] == [str(first)]
    assert len(clio.api_requests("GET", "/api/v4/matters.json")) == 1
    clock.advance(2)  # stale: the changes since the last sync
    assert [m.id for m in await plugin.find_matters(ctx, dana)] == [str(second)]
    (_, changed) = clio.api_requests("GET", "/api/v4/matters.json")
    assert "updated_since" in changed["query"] and "status" not in changed["query"]


async def test_a_relationship_made_later_is_seen_once_the_index_is_stale(
        clio: Any, hook_ctx: HookContext, dana: Contact) -> None:
    from callbridge.testing.clock import FakeClock

    clock = FakeClock(datetime.now(UTC))
    ctx = with_clock(hook_ctx, clock)
    matter = clio.state.add_matter(clio.state.add_contact("Lee", "Park"), "Contract")
    assert await plugin.find_matters(ctx, dana) == []
    clio.state.relate(int(dana.id), matter, "Witness")
    clock.advance(301)
    assert [m.id for m in await plugin.find_matters(ctx, dana)] == [str(matter)]
    (_, changed) = clio.api_requests("GET", "/api/v4/relationships.json")
    assert "updated_since" in changed["query"]


async def test_a_deleted_relationship_leaves_the_index_at_the_daily_full_read(
        clio: Any, hook_ctx: HookContext, dana: Contact) -> None:
    from callbridge.testing.clock import FakeClock

    clock = FakeClock(datetime.now(UTC))
    ctx = with_clock(hook_ctx, clock)
    matter = clio.state.add_matter(clio.state.add_contact("Lee", "Park"), "Contract",
                                   related={int(dana.id): "Witness"})
    assert len(await plugin.find_matters(ctx, dana)) == 1
    clio.state.relationships.clear()  # deleted in Clio: no change feed reports it
    clock.advance(301)
    assert len(await plugin.find_matters(ctx, dana)) == 1
    clock.advance(24 * 3600)
    assert await plugin.find_matters(ctx, dana) == [] and matter in clio.state.matters


async def test_a_user_is_found_by_email_whatever_its_case(clio: Any, hook_ctx: HookContext) -> None:
    bob = clio.state.add_user("Bob Stone", "bob@acme.example")
    user = await plugin.find_user(hook_ctx, "BOB@acme.example")
    assert user is not None and (user.id, user.name) == (str(bob), "Bob Stone")
    assert await plugin.find_user(hook_ctx, "nobody@acme.example") is None


async def test_the_default_user_is_who_authorised_the_connection(clio: Any, hook_ctx: HookContext,
                                                                 ann: AppUser) -> None:
    clio.state.add_user("Aaron Abel", "aaron@acme.example")  # first by name, yet not the default
    user = await plugin.pick_default_user(hook_ctx)
    assert user is not None and (user.id, user.name) == (ann.id, "Ann Lee")
    assert clio.api_requests("GET", "/api/v4/users/who_am_i.json")


# --- calls ------------------------------------------------------------------------------------


async def test_a_completed_call_is_a_communication_and_a_linked_non_billable_time_entry(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    result = await plugin.log_call(hook_ctx, call(), target)
    comm, entry = only(clio.state.communications), only(clio.state.activities)
    assert [(r.kind, r.id) for r in result.records] == [("communication", str(comm["id"])),
                                                        ("time_entry", str(entry["id"]))]
    assert comm["type"] == "PhoneCommunication" and comm["received_at"] == "2026-03-02T15:00:00+00:00"
    assert comm["matter"] == {"id": int(target.matter.id)}  # type: ignore[union-attr]
    for text in ("Direction: inbound", "External number: +1 212-555-0142", "Outcome: completed",
                 "Duration: 6m 12s (talk time 6m 00s)", "Hearing moved."):
        assert text in comm["body"]
    assert (entry["type"], entry["quantity"], entry["non_billable"]) == ("TimeEntry", 360, True)
    assert entry["communication"] == {"id": comm["id"]} and entry["date"] == "2026-03-02"
    assert entry["user"] == {"id": int(target.user.id)}  # type: ignore[union-attr]


async def test_each_record_is_remembered_as_soon_as_it_is_written(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    await plugin.log_call(hook_ctx, call(), target)
    assert [(r.kind, r.step) for r in hook_ctx.delivery.records] == [  # type: ignore[union-attr]
        ("communication", "communication"), ("time_entry", "time_entry")]


async def test_a_completed_call_without_an_answer_time_bills_its_whole_duration(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    await plugin.log_call(hook_ctx, call(answered_at=None), target)
    assert only(clio.state.activities)["quantity"] == 372


@pytest.mark.parametrize("outcome", ["missed", "voicemail", "busy", "failed"])
async def test_a_call_that_was_not_completed_is_a_communication_only(
        clio: Any, hook_ctx: HookContext, target: LogTarget, outcome: str) -> None:
    result = await plugin.log_call(hook_ctx, call(outcome=outcome, answered_at=None), target)
    assert [r.kind for r in result.records] == ["communication"]
    assert len(clio.state.communications) == 1 and clio.state.activities == {}


@pytest.mark.parametrize(("direction", "senders", "receivers"), [
    ("inbound", "Contact", "User"), ("outbound", "User", "Contact")])
async def test_the_direction_decides_who_sent_and_who_received(
        clio: Any, hook_ctx: HookContext, target: LogTarget, direction: str, senders: str,
        receivers: str) -> None:
    await plugin.log_call(hook_ctx, call(direction=direction), target)
    comm = only(clio.state.communications)
    assert [p["type"] for p in comm["senders"]] == [senders]
    assert [p["type"] for p in comm["receivers"]] == [receivers]


async def test_a_call_without_a_contact_or_matter_is_logged_to_the_user_alone(
        clio: Any, hook_ctx: HookContext, ann: AppUser) -> None:
    await plugin.log_call(hook_ctx, call(outcome="missed", answered_at=None), LogTarget(user=ann))
    comm = only(clio.state.communications)
    assert (comm["senders"], comm["matter"]) == ([], None)
    assert comm["receivers"] == [{"id": int(ann.id), "type": "User"}]


async def test_several_contacts_are_all_named_on_one_communication(
        clio: Any, hook_ctx: HookContext, dana: Contact, ann: AppUser) -> None:
    twin = Contact(id=str(clio.state.add_contact("Dane", "Whitfield", ["212 555 0142"])))
    await plugin.log_call(hook_ctx, call(direction="outbound", outcome="missed", answered_at=None),
                          LogTarget(contacts=(dana, twin), user=ann))
    comm = only(clio.state.communications)
    assert comm["receivers"] == [{"id": int(dana.id), "type": "Contact"},
                                 {"id": int(twin.id), "type": "Contact"}]


async def test_notes_chosen_for_the_log_replace_the_events_notes(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    chosen = target.model_copy(update={"notes": "Chosen notes."})
    await plugin.log_call(hook_ctx, call(), chosen)
    body = only(clio.state.communications)["body"]
    assert "Chosen notes." in body and "Hearing moved." not in body


async def test_a_recording_link_is_in_the_body(clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    await plugin.log_call(hook_ctx, call(recording_url="https://rec.example.com/1.mp3"), target)
    assert "Recording: https://rec.example.com/1.mp3" in only(clio.state.communications)["body"]


async def test_time_entries_are_billable_when_the_app_option_says_so(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    await plugin.log_call(with_settings(hook_ctx, default_billable=True), call(), target)
    assert only(clio.state.activities)["non_billable"] is False


async def test_the_plugin_setting_overrides_the_apps_billable_default(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    ctx = with_options(with_settings(hook_ctx, default_billable=True), time_entry_billable=False)
    await plugin.log_call(ctx, call(), target)
    assert only(clio.state.activities)["non_billable"] is True


async def test_the_firms_activity_description_is_looked_up_once(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    described = clio.state.add_activity_description("Telephone")
    ctx = with_options(hook_ctx, activity_description="Telephone")
    await plugin.log_call(ctx, call(), target)
    await plugin.log_call(dataclasses.replace(ctx, delivery=type(ctx.delivery)()), call(id="c-2"), target)
    assert [a["activity_description"] for a in clio.state.activities.values()] == [{"id": described}] * 2
    assert len(clio.api_requests("GET", "/api/v4/activity_descriptions.json")) == 1


# --- SMS ----------------------------------------------------------------------------------------


async def test_an_sms_is_a_communication_only(clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    result = await plugin.log_sms(hook_ctx, sms(), target)
    comm = only(clio.state.communications)
    assert [r.kind for r in result.records] == ["communication"] and clio.state.activities == {}
    assert comm["subject"] == "SMS from Dana Whitfield (+1 212-555-0142)"
    assert comm["body"].endswith("\n\nRunning late")


async def test_the_activity_code_is_found_by_its_label_or_created_once(
        clio: Any, hook_ctx: HookContext) -> None:
    import asyncio

    codes = await asyncio.gather(*(plugin.ensure_activity_code(hook_ctx, "CB-CALL") for _ in range(3)))
    (made,) = [d for d in clio.state.activity_descriptions.values() if d["name"] == "CB-CALL"]
    assert codes == [str(made["id"])] * 3
    assert len(clio.api_requests("POST", "/api/v4/activity_descriptions.json")) == 1
    assert await plugin.ensure_activity_code(hook_ctx, "CB-CALL") == str(made["id"])


async def test_a_time_entry_carries_the_activity_code_the_host_passes(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    code = await plugin.ensure_activity_code(hook_ctx, "CB-CALL")
    await plugin.log_call(hook_ctx, call(), target.model_copy(update={"activity_code": code}))
    assert only(clio.state.activities)["activity_description"] == {"id": int(code)}


async def test_an_activity_code_clio_no_longer_knows_is_reported_as_unknown(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    from callbridge.errors import UnknownActivityCode

    code = await plugin.ensure_activity_code(hook_ctx, "CB-CALL")
    del clio.state.activity_descriptions[int(code)]  # removed in Clio meanwhile
    with pytest.raises(UnknownActivityCode):
        await plugin.log_call(hook_ctx, call(), target.model_copy(update={"activity_code": code}))
    assert len(clio.state.communications) == 1 and clio.state.activities == {}


# --- faxes ----------------------------------------------------------------------------------------


async def test_a_fax_document_is_put_with_the_bare_client_and_linked_to_its_communication(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    result = await plugin.log_fax(hook_ctx, fax(), target)
    comm, doc = only(clio.state.communications), only(clio.state.documents)
    assert [(r.kind, r.id) for r in result.records] == [("communication", str(comm["id"])),
                                                        ("document", str(doc["id"]))]
    assert result.missing == ()
    assert doc["communication_id"] == comm["id"]
    version = doc["latest_document_version"]
    assert version["fully_uploaded"] is True and clio.state.storage[version["uuid"]] == PDF
    (put,) = clio.state.storage_requests
    assert not {"authorization", "x-api-version"} & set(put["headers"])
    assert set(put["query"]) == {"X-Amz-Algorithm", "X-Amz-Date", "X-Amz-Expires",
                                 "X-Amz-SignedHeaders", "X-Amz-Signature"}  # no parameter of ours
    assert put["headers"]["content-type"] == "application/pdf"


async def test_a_fax_is_filed_in_the_fax_folder_of_its_matter(clio: Any, hook_ctx: HookContext,
                                                              target: LogTarget) -> None:
    await plugin.log_fax(hook_ctx, fax(), target)
    await plugin.log_fax(dataclasses.replace(hook_ctx, delivery=type(hook_ctx.delivery)()),
                         fax(id="f-2"), target)
    folder = only(made_folders(clio.state))  # made once, then found by name
    assert folder["name"] == "Faxes"
    matter_folder = clio.state.matters[int(target.matter.id)]["folder"]["id"]  # type: ignore[union-attr]
    assert folder["parent"] == {"id": matter_folder, "type": "Folder"}
    assert [d["parent"] for d in clio.state.documents.values()] == [
        {"id": folder["id"], "type": "Folder"}] * 2


async def test_a_fax_folder_of_another_matter_is_not_this_ones(clio: Any, hook_ctx: HookContext,
                                                               target: LogTarget, dana: Contact) -> None:
    other = clio.state.add_matter(int(dana.id), "Other")
    clio.state.add_folder("Faxes", clio.state.matters[other]["folder"]["id"])
    await plugin.log_fax(hook_ctx, fax(), target)
    mine = clio.state.matters[int(target.matter.id)]["folder"]["id"]  # type: ignore[union-attr]
    assert sorted(f["parent"]["id"] for f in made_folders(clio.state).values()) == sorted(
        [mine, clio.state.matters[other]["folder"]["id"]])


async def test_a_fax_without_a_matter_is_filed_under_its_contact(clio: Any, hook_ctx: HookContext,
                                                                 dana: Contact) -> None:
    await plugin.log_fax(with_options(hook_ctx, fax_folder="Incoming faxes"), fax(),
                         LogTarget(contacts=(dana,)))
    folder = only(made_folders(clio.state))
    contact_folder = clio.state.contacts[int(dana.id)]["folder"]["id"]
    assert (folder["name"], folder["parent"]) == ("Incoming faxes", {"id": contact_folder, "type": "Folder"})


async def test_without_a_fax_folder_the_document_sits_at_the_matters_root(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    await plugin.log_fax(with_options(hook_ctx, fax_folder=None), fax(), target)
    assert made_folders(clio.state) == {}
    matter_folder = clio.state.matters[int(target.matter.id)]["folder"]["id"]  # type: ignore[union-attr]
    assert only(clio.state.documents)["parent"] == {"id": matter_folder, "type": "Folder"}


async def test_a_fax_with_nowhere_to_file_it_says_its_document_is_missing(
        clio: Any, hook_ctx: HookContext, ann: AppUser) -> None:
    result = await plugin.log_fax(hook_ctx, fax(), LogTarget(user=ann))
    assert result.missing == ("document",) and clio.state.documents == {}
    assert "The fax document is missing" in only(clio.state.communications)["body"]


async def test_an_upload_that_keeps_failing_ends_with_the_document_missing(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    clio.state.storage_down = True
    for _ in range(plugin.UPLOAD_ATTEMPTS - 1):  # the host retries the delivery meanwhile
        with pytest.raises(TransientError):
            await plugin.log_fax(hook_ctx, fax(), target)
        hook_ctx.delivery.retry()  # type: ignore[union-attr]
    result = await plugin.log_fax(hook_ctx, fax(), target)
    assert result.missing == ("document",) and [r.kind for r in result.records] == ["communication"]
    assert len(clio.state.communications) == 1 and len(clio.state.documents) == 1
    assert "the upload failed" in only(clio.state.communications)["body"]


async def test_a_rate_limit_met_while_filing_the_fax_is_a_wait_not_a_failed_upload(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    """A full window (Clio's 429 here; the host's own bucket, shared by every worker on
    PostgreSQL, raises the same) while the document is filed is the host's wait:
    ``RateLimited`` reaches the host as it is, so the delivery waits for room with its
    attempt not counted, instead of a quick retry that spends one of the upload's
    ``UPLOAD_ATTEMPTS`` (after which the document would be given up)."""
    from callbridge.errors import RateLimited

    clio.faults.fail_on[("POST", "/api/v4/documents.json")] = [(429, 60.0)]
    with pytest.raises(RateLimited) as held:
        await plugin.log_fax(hook_ctx, fax(), target)
    assert held.value.retry_after is not None and held.value.retry_after > 50
    assert "missing" not in only(clio.state.communications)["body"]
    assert clio.state.documents == {}


async def test_an_upload_that_fails_once_is_finished_on_the_retry(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    clio.state.storage_down = True
    with pytest.raises(TransientError):
        await plugin.log_fax(hook_ctx, fax(), target)
    clio.state.storage_down = False
    hook_ctx.delivery.retry()  # type: ignore[union-attr]
    result = await plugin.log_fax(hook_ctx, fax(), target)
    assert result.missing == () and len(clio.state.documents) == 1
    assert only(clio.state.documents)["latest_document_version"]["fully_uploaded"] is True


async def test_an_unfinished_upload_without_a_new_url_ends_with_the_document_missing(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    clio.state.storage_down = True
    with pytest.raises(TransientError):
        await plugin.log_fax(hook_ctx, fax(), target)
    clio.state.storage_down, clio.state.put_url_on_create_only = False, True
    for _ in range(plugin.UPLOAD_ATTEMPTS - 2):
        hook_ctx.delivery.retry()  # type: ignore[union-attr]
        with pytest.raises(TransientError):
            await plugin.log_fax(hook_ctx, fax(), target)
    hook_ctx.delivery.retry()  # type: ignore[union-attr]
    result = await plugin.log_fax(hook_ctx, fax(), target)
    assert result.missing == ("document",) and len(clio.state.documents) == 1
    assert only(clio.state.documents)["latest_document_version"]["fully_uploaded"] is False


async def test_a_mark_whose_answer_was_lost_counts_once_clio_shows_the_upload(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    # The first mark lands but its answer is lost; the client's retry is refused (Clio's
    # mark is not idempotent); the document read again shows it uploaded.
    doc_id = clio.state.next_free_id + 1  # the communication first, then the document
    clio.faults.fail_on[("PATCH", f"/api/v4/documents/{doc_id}.json")] = ["drop_after"]
    result = await plugin.log_fax(hook_ctx, fax(), target)
    assert [r.kind for r in result.records] == ["communication", "document"]
    assert clio.faults.count(method="PATCH") == 2
    assert only(clio.state.documents)["latest_document_version"]["fully_uploaded"] is True


async def test_an_upload_verification_that_times_out_is_retried(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    clio.state.upload_timeouts = 1
    with pytest.raises(TransientError) as raised:
        await plugin.log_fax(hook_ctx, fax(), target)
    assert "timed out verifying" in str(raised.value.__cause__)
    hook_ctx.delivery.retry()  # type: ignore[union-attr]
    result = await plugin.log_fax(hook_ctx, fax(), target)
    assert [r.kind for r in result.records] == ["communication", "document"]
    assert only(clio.state.documents)["latest_document_version"]["fully_uploaded"] is True


# --- late details -------------------------------------------------------------------------------


async def test_late_details_edit_the_communication_in_place(clio: Any, hook_ctx: HookContext,
                                                            target: LogTarget) -> None:
    chosen = target.model_copy(update={"notes": "Chosen notes."})
    written = await plugin.log_call(hook_ctx, call(notes=None), chosen)
    revised = call(notes=None, recording_url="https://rec.example.com/1.mp3", transcript="Hello.",
                   summary="Asked about the hearing.")
    result = await plugin.update_log(hook_ctx, revised, list(written.records))
    comm = only(clio.state.communications)
    assert result.records == written.records and len(clio.state.activities) == 1
    assert comm["body"].endswith("Staff: Ann Lee\nOutcome: completed\nDuration: 6m 12s (talk time 6m 00s)"
                                 "\n\nNotes:\nChosen notes.\n\nSummary:\nAsked about the hearing."
                                 "\n\nRecording: https://rec.example.com/1.mp3\n\nTranscript:\nHello.")
    assert len(clio.api_requests("PATCH", f"/api/v4/communications/{comm['id']}.json")) == 1


async def test_a_second_revision_replaces_the_late_details_it_brings(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    written = await plugin.log_call(hook_ctx, call(transcript="First."), target)
    await plugin.update_log(hook_ctx, call(transcript="Second.", notes="New notes."), list(written.records))
    body = only(clio.state.communications)["body"]
    assert body.endswith("\n\nNotes:\nNew notes.\n\nTranscript:\nSecond.")
    assert "First." not in body and "Hearing moved." not in body


async def test_late_details_without_a_communication_are_skipped(hook_ctx: HookContext) -> None:
    with pytest.raises(SkipEvent):
        await plugin.update_log(hook_ctx, call(), [Record(kind="time_entry", id="1")])


# --- no duplicate after a timeout that follows a create ---------------------------------------


@pytest.mark.parametrize(("hook", "path", "table"), [
    ("log_call", "/api/v4/communications.json", "communications"),
    ("log_call", "/api/v4/activities.json", "activities"),
    ("log_sms", "/api/v4/communications.json", "communications"),
    ("log_fax", "/api/v4/communications.json", "communications"),
    ("log_fax", "/api/v4/documents.json", "documents"),
])
async def test_a_timeout_after_a_create_is_retried_without_a_duplicate(
        clio: Any, hook_ctx: HookContext, target: LogTarget, hook: str, path: str, table: str) -> None:
    event = {"log_call": call, "log_sms": sms, "log_fax": fax}[hook]()
    clio.faults.fail_on[("POST", path)] = ["drop_after"]  # created in Clio, then no answer
    with pytest.raises(TransientError):
        await getattr(plugin, hook)(hook_ctx, event, target)
    hook_ctx.delivery.retry()  # type: ignore[union-attr]
    result = await getattr(plugin, hook)(hook_ctx, event, target)
    assert len(getattr(clio.state, table)) == 1
    assert clio.faults.count(method="POST", path=path) == 1
    assert result.missing == ()


async def test_a_contact_created_before_a_timeout_is_found_on_the_retry(
        clio: Any, hook_ctx: HookContext) -> None:
    before = set(clio.state.contacts)
    clio.faults.fail_on[("POST", "/api/v4/contacts.json")] = ["drop_after"]
    with pytest.raises(TransientError):
        await plugin.create_contact(hook_ctx, party("+17185550125"), "Rae Quinn")
    hook_ctx.delivery.retry()  # type: ignore[union-attr]
    again = await plugin.create_contact(hook_ctx, party("+17185550125"), "Rae Quinn")
    (new,) = set(clio.state.contacts) - before
    assert again.id == str(new)
    assert clio.faults.count(method="POST", path="/api/v4/contacts.json") == 1
    (look,) = clio.api_requests("GET", "/api/v4/contacts.json")  # a filter, not the text search
    assert "created_since" in look["query"] and "query" not in look["query"]


async def test_a_retry_does_not_take_an_older_contact_with_the_number_for_its_own(
        clio: Any, hook_ctx: HookContext) -> None:
    clio.state.add_contact("Old", "Client", ["+1 718 555 0125"], updated_at="2026-01-01T00:00:00Z")
    hook_ctx.delivery.retry()  # type: ignore[union-attr]
    await plugin.create_contact(hook_ctx, party("+17185550125"), "Rae Quinn")
    assert clio.faults.count(method="POST", path="/api/v4/contacts.json") == 1


async def test_a_log_that_failed_midway_resumes_after_its_remembered_records(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    clio.faults.fail_on[("POST", "/api/v4/activities.json")] = [400]
    with pytest.raises(PermanentError):
        await plugin.log_call(hook_ctx, call(), target)
    assert [r.kind for r in hook_ctx.delivery.records] == ["communication"]  # type: ignore[union-attr]
    hook_ctx.delivery.retry()  # type: ignore[union-attr]
    clio.state.requests.clear()
    result = await plugin.log_call(hook_ctx, call(), target)
    assert [r.kind for r in result.records] == ["communication", "time_entry"]
    assert [(r["method"], r["path"]) for r in clio.state.requests] == [
        ("GET", "/api/v4/activities.json"), ("POST", "/api/v4/activities.json")]


async def test_a_fax_whose_upload_was_remembered_writes_nothing_again(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    first = await plugin.log_fax(hook_ctx, fax(), target)
    hook_ctx.delivery.retry()  # type: ignore[union-attr]
    clio.state.requests.clear()
    again = await plugin.log_fax(hook_ctx, fax(), target)
    assert again.records == first.records and clio.state.requests == []


# --- the phone index feed, paging, fields ----------------------------------------------------


async def test_changed_contacts_are_paged_to_the_end_with_their_numbers(
        clio: Any, hook_ctx: HookContext) -> None:
    for i in range(450):
        clio.state.add_contact(f"Client{i}", "Bulk", [f"+1 917 555 01{i % 100:02d}"],
                               updated_at=f"2026-03-01T09:{i // 60:02d}:{i % 60:02d}Z")
    seen: list[Contact] = []
    pages, cursor = 0, None
    while True:
        page = await plugin.contacts_changed_since(hook_ctx, since=None, cursor=cursor)
        seen += page.contacts
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
    assert pages == 3 and len({c.id for c in seen}) == 450
    assert all(c.phones and c.updated_at for c in seen)
    assert page.high_water == datetime(2026, 3, 1, 9, 7, 29, tzinfo=UTC)


async def test_changed_contacts_since_a_time_leave_older_ones_out(clio: Any, hook_ctx: HookContext) -> None:
    clio.state.add_contact("Old", "One", ["2125550101"], updated_at="2026-01-01T00:00:00Z")
    new = clio.state.add_contact("New", "One", ["2125550102"], updated_at="2026-03-01T00:00:00Z")
    page = await plugin.contacts_changed_since(hook_ctx, since=datetime(2026, 2, 1, tzinfo=UTC),
                                               cursor=None)
    assert [c.id for c in page.contacts] == [str(new)] and page.cursor is None


async def test_a_search_with_several_pages_is_followed_to_the_end(clio: Any, hook_ctx: HookContext) -> None:
    for i in range(205):
        clio.state.add_contact(f"Twin{i}", "Bulk", ["(212) 555-0142"])
    assert len(await plugin.find_contact(hook_ctx, party("+12125550142"))) == 205


async def test_every_request_sends_fields_and_the_pinned_version(
        clio: Any, hook_ctx: HookContext, target: LogTarget) -> None:
    ctx = with_options(hook_ctx, activity_description="Telephone")
    await plugin.find_contact(ctx, party("+12125550142", email="dana@example.com"))
    await plugin.create_contact(ctx, party("+17185550123"), "Rae Quinn")
    await plugin.find_matters(ctx, target.contacts[0])
    await plugin.find_user(ctx, "ann@acme.example")
    await plugin.pick_default_user(ctx)
    written = await plugin.log_call(ctx, call(), target)
    await plugin.update_log(ctx, call(transcript="Hello."), list(written.records))
    await plugin.log_sms(ctx, sms(), target)
    await plugin.log_fax(ctx, fax(), target)
    await plugin.contacts_changed_since(ctx, since=None, cursor=None)
    requests = clio.api_requests()
    assert len({r["path"] for r in requests}) >= 12
    assert [r for r in requests if "fields" not in r["query"]] == []
    assert {r["api_version"] for r in requests} == {"4.0.13"}


#: Clio's list endpoints without an ``order`` parameter (they page by id regardless).
UNORDERED = {"/api/v4/relationships.json", "/api/v4/activity_descriptions.json"}


async def test_every_paged_list_asks_for_order_by_id(clio: Any, hook_ctx: HookContext,
                                                     target: LogTarget) -> None:
    ctx = with_options(hook_ctx, activity_description="Telephone")
    await plugin.find_contact(ctx, party("+12125550142", email="dana@example.com"))
    await plugin.find_matters(ctx, target.contacts[0])
    await plugin.find_user(ctx, "ann@acme.example")
    await plugin.log_call(ctx, call(), target)
    await plugin.log_fax(ctx, fax(), target)
    await plugin.contacts_changed_since(ctx, since=None, cursor=None)
    lists = [r for r in clio.api_requests("GET") if not r["path"].split("/")[-1][0].isdigit()
             and r["path"] != "/api/v4/users/who_am_i.json"]
    assert {r["path"] for r in lists} >= {"/api/v4/contacts.json", "/api/v4/matters.json",
                                          "/api/v4/users.json", "/api/v4/folders.json"} | UNORDERED
    assert [r["path"] for r in lists
            if r["path"] not in UNORDERED and r["query"].get("order") != "id(asc)"] == []
    assert [r["path"] for r in lists if r["path"] in UNORDERED and "order" in r["query"]] == []


async def test_a_next_page_is_asked_from_the_base_url_never_from_the_answers_link(
        clio: Any, hook_ctx: HookContext) -> None:
    clio.state.host = "https://elsewhere.example"  # the links the sandbox hands out
    for i in range(205):
        clio.state.add_contact(f"Twin{i}", "Bulk", ["(212) 555-0142"])
    await plugin.contacts_changed_since(hook_ctx, since=None, cursor=None)
    page = await plugin.contacts_changed_since(hook_ctx, since=None, cursor=None)
    assert page.cursor is not None and "elsewhere" not in page.cursor
    second = await plugin.contacts_changed_since(hook_ctx, since=None, cursor=page.cursor)
    assert len(second.contacts) == 5 and second.cursor is None
    assert {r["host"] for r in clio.api_requests()} == {"app.clio.com"}


async def test_disabled_users_are_not_asked_for(clio: Any, hook_ctx: HookContext) -> None:
    clio.state.add_user("Old Hand", "old@acme.example", enabled=False)
    assert await plugin.find_user(hook_ctx, "old@acme.example") is None
    (asked,) = clio.api_requests("GET", "/api/v4/users.json")
    assert asked["query"]["enabled"] == "true"


async def test_the_users_are_loaded_once_for_the_tenant(clio: Any, hook_ctx: HookContext) -> None:
    clio.state.add_user("Bob Stone", "bob@acme.example")
    for email in ("ann@acme.example", "bob@acme.example", "nobody@acme.example"):
        await plugin.find_user(hook_ctx, email)
    assert len(clio.api_requests("GET", "/api/v4/users.json")) == 1


@pytest.mark.parametrize(("zone", "started", "date"), [
    ("America/New_York", "2026-03-03T02:30:00Z", "2026-03-02"),  # 9:30 pm the day before
    ("Australia/Sydney", "2026-03-02T15:00:00Z", "2026-03-03"),  # 2 am the day after
    ("UTC", "2026-03-02T15:00:00Z", "2026-03-02"),
])
async def test_a_time_entrys_date_is_the_calls_date_where_the_firm_is(
        clio: Any, hook_ctx: HookContext, target: LogTarget, zone: str, started: str,
        date: str) -> None:
    ctx = dataclasses.replace(hook_ctx, tenant=hook_ctx.tenant.model_copy(update={"time_zone": zone}))
    end = datetime.fromisoformat(started) + timedelta(minutes=5)
    await plugin.log_call(ctx, call(started_at=started, answered_at=started,
                                    ended_at=end.isoformat()), target)
    assert only(clio.state.activities)["date"] == date


@pytest.mark.parametrize("answer", [{"meta": {}}, {"data": None}, [1, 2], "not json"])
async def test_an_answer_without_data_is_a_transient_error_not_a_key_error(answer: Any) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if answer == "not json":
            return httpx2.Response(200, text="<html>maintenance</html>")
        return httpx2.Response(200, json=answer)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler),
                                  base_url="https://app.clio.com/api/v4") as http:
        api = ClioApi(http)
        with pytest.raises(TransientError, match="Clio answered GET /api/v4/"):
            await api.users()
        with pytest.raises(TransientError, match="Clio answered"):
            await api.who_am_i()


# --- the connection ------------------------------------------------------------------------------


async def test_an_expired_token_is_refreshed_through_oauth_token_and_kept(
        clio: Any, hook_ctx: HookContext) -> None:
    old = await clio.tokens.load("acme", "clio")
    clio.state.expire_tokens()
    assert await plugin.find_user(hook_ctx, "ann@acme.example") is not None
    assert clio.faults.count(method="POST", path="/oauth/token") == 1
    new = await clio.tokens.load("acme", "clio")
    assert new["access_token"] != old["access_token"] and new["refresh_token"] == old["refresh_token"]


# --- what later work reads: closed matters and custom fields (api.py) -------------------------


async def test_matters_changed_since_carry_status_close_date_and_custom_field_values(
        clio: Any, hook_ctx: HookContext, dana: Contact) -> None:
    opt_in = clio.state.add_custom_field("SendBroadlyThankYou", "Matter")
    clio.state.add_matter(int(dana.id), "Open one")
    closed = clio.state.add_matter(int(dana.id), "Closed one", status="Closed", close_date="2026-03-01",
                                   custom_fields={opt_in: "true"})
    found = await ClioApi(hook_ctx.http).matters_changed(
        since=datetime(2026, 1, 1, tzinfo=UTC), status="closed", custom_field_ids=[opt_in])
    (matter,) = found
    assert (matter.id, matter.status, matter.close_date) == (closed, "Closed", "2026-03-01")
    assert matter.client is not None and matter.client.id == int(dana.id)
    assert [(v["value"], v["custom_field"]) for v in matter.custom_field_values] == [("true", {"id": opt_in})]


async def test_custom_fields_are_listed_by_parent_type(clio: Any, hook_ctx: HookContext) -> None:
    opt_out = clio.state.add_custom_field("BroadlyOptOut", "Contact")
    clio.state.add_custom_field("SendBroadlyThankYou", "Matter")
    fields = await ClioApi(hook_ctx.http).custom_fields("Contact")
    assert [(f.id, f.name, f.field_type, f.parent_type) for f in fields] == [
        (opt_out, "BroadlyOptOut", "checkbox", "Contact")]
    (asked,) = clio.api_requests("GET", "/api/v4/custom_fields.json")
    assert asked["query"]["parent_type"] == "contact"  # the filter takes lower case


async def test_clios_unix_reset_narrows_the_hosts_bucket_so_no_429_is_met(clio: Any) -> None:
    """The sandbox allows 2 requests a window (another client spent the rest); its
    X-RateLimit-Remaining 0 and X-RateLimit-Reset (a Unix time, on the same fake clock)
    make the host's limiter hold the third request until the window's end (too long to
    wait inline: RateLimited, which the worker turns into a waiting delivery) instead of
    sending it into a 429."""
    from callbridge.errors import RateLimited
    from callbridge.http import Credentials, MemoryTokenStore, build_client
    from callbridge.ratelimit import LimiterRegistry
    from callbridge.testing.clock import FakeClock
    from callbridge_clio.sandbox import create_app

    clock = FakeClock()
    clio.state.rate_limit = (2, 60.0)
    faults = create_app(clio.state, clock=clock)
    tokens = MemoryTokenStore({("acme", "clio"): clio.state.issue_token(lifetime=10**9)})
    declaration = plugin.declare()
    http = build_client(
        tenant="acme", app="clio", plugin="clio", plugin_version=declaration.version,
        connection=plugin.connection(ClioSettings()),
        credentials=Credentials(client_id=clio.state.client_id, client_secret=clio.state.client_secret),
        buckets=declaration.rate_limits, limiters=LimiterRegistry(clock), tokens=tokens,
        transport=httpx2.ASGITransport(app=faults))
    api = ClioApi(http)
    try:
        await api.who_am_i()
        await api.who_am_i()
        with pytest.raises(RateLimited) as held:
            await api.who_am_i()
        assert held.value.retry_after is not None and 59 <= held.value.retry_after <= 62
        assert faults.count() == 2  # the third never left
        clock.advance(held.value.retry_after)
        await api.who_am_i()
    finally:
        await http.aclose()
    assert faults.count(status=429) == 0 and faults.count(status=200) == 3
