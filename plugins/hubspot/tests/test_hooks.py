"""The plugin's hooks called as the host calls them, over the sandbox in process."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import callbridge_hubspot as hs
import httpx2
import pytest
from callbridge.errors import RateLimited, SkipEvent
from callbridge.events import ExternalParty, parse_event
from callbridge.http import Credentials, MemoryTokenStore, RetryPolicy, build_client
from callbridge.models import AppUser, Contact, LogTarget, Record
from callbridge.ratelimit import LimiterRegistry
from callbridge_hubspot import limits
from callbridge_hubspot.portal import Portal

from plugins.hubspot.tests.conftest import Delivery, api_requests, make_ctx

ANN = AppUser(id="101", name="Ann Lee", email="ann@acme.example")
DANA = Contact(id="103", name="Dana Whitfield")


def party(number: str | None = None, email: str | None = None) -> ExternalParty:
    data: dict[str, Any] = {"number": number} if number else {"number": "+12125550199"}
    if email:
        data["email"] = email
    return ExternalParty.model_validate(data, context={"region": "US"})


def call(**changes: Any) -> Any:
    data: dict[str, Any] = {
        "kind": "call", "id": "hs-call-1", "tenant": "acme", "direction": "inbound",
        "external": {"number": "+12125550142"},
        "internal": {"email": "ann@acme.example", "extension": "101", "number": "+12125550100"},
        "started_at": "2026-03-02T15:00:00+00:00", "answered_at": "2026-03-02T15:00:06+00:00",
        "ended_at": "2026-03-02T15:04:12+00:00", "outcome": "completed",
        "notes": "Asked about the renewal."}
    return parse_event({**data, **changes}, region="US")


def only(rows: dict[str, Any]) -> dict[str, Any]:
    assert len(rows) == 1, f"expected one record, found {len(rows)}"
    return next(iter(rows.values()))


# --- contacts ---------------------------------------------------------------------------------


async def test_a_number_is_found_through_the_normalised_phone_properties(hook_ctx: Any,
                                                                         portal: Portal) -> None:
    found = await hs.find_contact(hook_ctx, party("+1 212 555 0142"))
    assert [c.id for c in found] == ["103"]
    (search,) = api_requests(portal, "POST", "/crm/v3/objects/contacts/search")
    groups = search["json"]["filterGroups"]
    assert groups[0]["filters"] == [{"propertyName": "hs_searchable_calculated_phone_number",
                                     "operator": "EQ", "value": "2125550142"}]
    assert groups[1]["filters"][0]["propertyName"] == "hs_searchable_calculated_mobile_number"


async def test_a_mobile_number_is_found_too(hook_ctx: Any) -> None:
    found = await hs.find_contact(hook_ctx, party("+12125550150"))
    assert [(c.id, c.phones) for c in found] == [("105", ("212-555-0150",))]


async def test_a_candidate_whose_stored_number_does_not_read_as_the_party_is_dropped(
        hook_ctx: Any, portal: Portal) -> None:
    # HubSpot's calculated property reads digits out of "437-555-0142 (Jane's Number)";
    # callbridge reads the stored text as unreadable, so Jane is no match.
    assert portal.objects["contacts"]["106"]["properties"][
        "hs_searchable_calculated_phone_number"] == "4375550142"
    assert await hs.find_contact(hook_ctx, party("+14375550142")) == []


async def test_a_contact_is_found_by_email_in_the_same_search(hook_ctx: Any, portal: Portal) -> None:
    found = await hs.find_contact(hook_ctx, party("+12125550199", "DANA@example.com"))
    assert [c.id for c in found] == ["103"]
    assert len(api_requests(portal, "POST")) == 1


async def test_a_new_contact_is_searchable_only_after_hubspots_delay(hook_ctx: Any, portal: Portal,
                                                                     clock: Any) -> None:
    portal.search_delay = 5.0
    created = await hs.create_contact(hook_ctx, party("+12125550177"), "Rae Quinn")
    assert await hs.find_contact(hook_ctx, party("+12125550177")) == []
    clock.advance(5.0)
    assert [c.id for c in await hs.find_contact(hook_ctx, party("+12125550177"))] == [created.id]


async def test_a_created_contact_has_the_name_and_the_number(hook_ctx: Any, portal: Portal) -> None:
    created = await hs.create_contact(hook_ctx, party("+12125550177"), "New callbridge Contact")
    props = portal.objects["contacts"][created.id]["properties"]
    assert (props["firstname"], props["lastname"], props["phone"]) == (
        "New callbridge", "Contact", "+12125550177")
    assert created.phones == ("+12125550177",)
    assert hook_ctx.delivery.records == (Record(kind="contact", id=created.id,
                                                step="create_contact"),)


async def test_a_contact_created_before_a_lost_answer_is_found_not_made_again(
        hook_ctx: Any, portal: Portal, hub: Any) -> None:
    portal.search_delay = 3.0
    hub.fail_on[("POST", "/crm/v3/objects/contacts")] = ["drop_after"]
    with pytest.raises(Exception):  # noqa: B017 - the host's uncertain write
        await hs.create_contact(hook_ctx, party("+12125550177"), "Rae Quinn")
    hook_ctx.delivery.retry()
    again = await hs.create_contact(hook_ctx, party("+12125550177"), "Rae Quinn")
    made = [c for c in portal.objects["contacts"].values()
            if c["properties"].get("phone") == "+12125550177"]
    assert [c["id"] for c in made] == [again.id]


async def test_contacts_changed_since_pages_by_last_modified(hook_ctx: Any) -> None:
    since = datetime(2026, 1, 3, tzinfo=UTC)
    page = await hs.contacts_changed_since(hook_ctx, since, None)
    assert [c.id for c in page.contacts] == ["104", "105", "106"]
    assert page.cursor is None
    assert page.high_water == datetime(2026, 1, 4, 10, tzinfo=UTC)


async def test_changed_contacts_come_in_pages_with_a_cursor(hook_ctx: Any, portal: Portal) -> None:
    for i in range(205):
        portal.add_contact("Bulk", f"Contact {i}", f"+1212555{i % 100:04d}",
                           modified="2026-02-01T00:00:00.000Z")
    first = await hs.contacts_changed_since(hook_ctx, datetime(2026, 1, 15, tzinfo=UTC), None)
    second = await hs.contacts_changed_since(hook_ctx, datetime(2026, 1, 15, tzinfo=UTC),
                                             first.cursor)
    assert (len(first.contacts), first.cursor, len(second.contacts), second.cursor) == (
        200, "200", 5, None)


# --- owners -----------------------------------------------------------------------------------


async def test_the_owner_is_found_by_email_and_the_list_is_cached(hook_ctx: Any,
                                                                  portal: Portal) -> None:
    bob = await hs.find_user(hook_ctx, "BOB@acme.example")
    again = await hs.find_user(hook_ctx, "ann@acme.example")
    assert (bob.id if bob else None, again.id if again else None) == ("102", "101")
    assert len(api_requests(portal, "GET", "/crm/v3/owners")) == 1
    assert await hs.find_user(hook_ctx, "nobody@acme.example") is None


async def test_the_default_owner_is_the_one_the_settings_name(hub: Any, clock: Any) -> None:
    ctx = make_ctx(hub, clock, options=hs.HubSpotSettings(default_owner_email="bob@acme.example"))
    assert (await hs.pick_default_user(ctx)).id == "102"  # type: ignore[union-attr]
    ctx2 = make_ctx(hub, clock)
    assert await hs.pick_default_user(ctx2) is None


# --- logging ----------------------------------------------------------------------------------


async def test_a_completed_call_is_a_call_associated_with_the_contact(hook_ctx: Any,
                                                                      portal: Portal) -> None:
    result = await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,), user=ANN))
    record = only(portal.objects["calls"])
    p = record["properties"]
    assert result.records == (Record(kind="call", id=record["id"], step="log"),)
    assert (p["hs_call_direction"], p["hs_call_status"], p["hs_call_duration"]) == (
        "INBOUND", "COMPLETED", "246000")
    assert p["hs_call_title"] == "Inbound call from Dana Whitfield (+1 212-555-0142)"
    assert (p["hs_call_from_number"], p["hs_call_to_number"]) == ("+12125550142", "+12125550100")
    assert p["hs_timestamp"] == "2026-03-02T15:00:00.000Z" and p["hubspot_owner_id"] == "101"
    assert "Notes:<br>Asked about the renewal." in p["hs_call_body"]
    assert p["callbridge_event"] == hook_ctx.delivery.marker  # the host's marker for the delivery
    assert portal.associated("calls", record["id"]) == [("contacts", "103", 194)]


async def test_the_marker_property_is_made_once(hook_ctx: Any, portal: Portal) -> None:
    await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,)))
    hook_ctx.delivery = Delivery(marker="cb1-second")
    await hs.log_call(hook_ctx, call(id="hs-call-2"), LogTarget(contacts=(DANA,)))
    assert len(api_requests(portal, "POST", "/crm/v3/properties/calls")) == 1
    assert portal.custom_properties["calls"]["callbridge_event"]["type"] == "string"
    assert len(api_requests(portal, "POST", "/crm/v3/objects/calls")) == 2


@pytest.mark.parametrize(("changes", "status", "title"), [
    ({"outcome": "missed", "answered_at": None}, "NO_ANSWER", "Missed call from"),
    ({"outcome": "voicemail", "answered_at": None}, "NO_ANSWER", "Voicemail from"),
    ({"outcome": "busy", "answered_at": None, "direction": "outbound"}, "BUSY", "Outbound call to"),
])
async def test_the_status_follows_the_outcome(hook_ctx: Any, portal: Portal, changes: dict[str, Any],
                                              status: str, title: str) -> None:
    await hs.log_call(hook_ctx, call(**changes), LogTarget(contacts=(DANA,)))
    p = only(portal.objects["calls"])["properties"]
    assert p["hs_call_status"] == status and p["hs_call_title"].startswith(title)
    assert p["hs_call_duration"] == "0"


async def test_a_call_without_a_contact_is_logged_unassociated(hook_ctx: Any, portal: Portal) -> None:
    await hs.log_call(hook_ctx, call(external={"number": "+12125550199"}), LogTarget(user=ANN))
    record = only(portal.objects["calls"])
    assert portal.associated("calls", record["id"]) == []


async def test_an_sms_is_a_communication_of_channel_sms(hook_ctx: Any, portal: Portal) -> None:
    sms = parse_event({"kind": "sms", "id": "s1", "tenant": "acme", "direction": "outbound",
                       "external": {"number": "+12125550142"}, "sent_at": "2026-03-02T16:30:00Z",
                       "body": "Your renewal is ready."}, region="US")
    result = await hs.log_sms(hook_ctx, sms, LogTarget(contacts=(DANA,), user=ANN))
    record = only(portal.objects["communications"])
    p = record["properties"]
    assert result.records[0].kind == "communication"
    assert (p["hs_communication_channel_type"], p["hs_communication_logged_from"]) == ("SMS", "CRM")
    assert p["hs_communication_body"] == "[Outbound SMS to +1 212-555-0142] Your renewal is ready."
    assert portal.associated("communications", record["id"]) == [("contacts", "103", 81)]


async def test_a_fax_is_a_note_with_the_document_attached(hook_ctx: Any, portal: Portal) -> None:
    fax = parse_event({"kind": "fax", "id": "f1", "tenant": "acme", "direction": "inbound",
                       "external": {"number": "+12125550142"}, "sent_at": "2026-03-02T17:00:00Z",
                       "page_count": 2, "document": {"content": "JVBERi0xLjQKJSBmYXgK",
                                                     "content_type": "application/pdf"}},
                      region="US")
    result = await hs.log_fax(hook_ctx, fax, LogTarget(contacts=(DANA,)))
    note = only(portal.objects["notes"])
    (file,) = portal.files.values()
    assert [r.kind for r in result.records] == ["note", "file"]
    assert note["properties"]["hs_attachment_ids"] == file["id"]
    assert portal.file_bytes[file["id"]] == b"%PDF-1.4\n% fax\n"
    assert file["access"] == "PRIVATE" and file["path"].startswith("/callbridge/faxes/")
    assert portal.associated("notes", note["id"]) == [("contacts", "103", 202)]


async def test_late_details_edit_the_call_in_place(hook_ctx: Any, portal: Portal) -> None:
    logged = await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,)))
    late = call(recording_url="https://rec.example.com/1.mp3", transcript="Hello.")
    updated = await hs.update_log(hook_ctx, late, list(logged.records))
    p = only(portal.objects["calls"])["properties"]
    assert updated.records == logged.records
    assert p["hs_call_recording_url"] == "https://rec.example.com/1.mp3"
    assert p["hs_call_body"].endswith(
        "Notes:<br>Asked about the renewal.<br><br>Recording: https://rec.example.com/1.mp3"
        "<br><br>Transcript:<br>Hello.")
    # A second revision rewrites the late details, never doubles them.
    await hs.update_log(hook_ctx, late, list(logged.records))
    assert only(portal.objects["calls"])["properties"]["hs_call_body"].count("Recording:") == 1


async def test_update_without_a_call_is_skipped(hook_ctx: Any) -> None:
    with pytest.raises(SkipEvent):
        await hs.update_log(hook_ctx, call(), [])


# --- uncertain writes and rate limits ---------------------------------------------------------


async def test_a_call_written_before_a_lost_answer_is_found_after_the_search_settles(
        hook_ctx: Any, portal: Portal, hub: Any, clock: Any) -> None:
    portal.search_delay = 8.0
    await hs.marker_property(hook_ctx, await hs.api_for(hook_ctx), "calls")
    hub.fail_on[("POST", "/crm/v3/objects/calls")] = ["drop_after"]
    started = clock.now()
    with pytest.raises(Exception):  # noqa: B017 - the host's uncertain write
        await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,)))
    hook_ctx.delivery.retry()
    result = await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,)))
    assert result.records[0].id == only(portal.objects["calls"])["id"]
    assert hook_ctx.delivery.finds == 1
    # The search waited for HubSpot's index (10 s setting > 8 s delay), not for a guess.
    assert (clock.now() - started).total_seconds() >= 10


async def test_a_daily_429_parks_until_the_portals_midnight_and_sends_nothing_more(
        hook_ctx: Any, portal: Portal, hub: Any, clock: Any) -> None:
    from callbridge_hubspot.sandbox import Limits

    limits_ = hub.app.state.sandbox.limits
    assert isinstance(limits_, Limits)
    limits_.daily = 0
    with pytest.raises(limits.DailyLimitReached) as info:
        await hs.find_contact(hook_ctx, party("+12125550142"))
    assert len(portal.requests) == 1  # the host's client does not retry a day's limit inline
    # 15:00 UTC on 5 January is 10:00 in New York: midnight there is 05:00 UTC next day.
    assert info.value.resets_at == datetime(2026, 1, 6, 5, 0, tzinfo=UTC)  # type: ignore[attr-defined]
    sent = len(portal.requests)
    with pytest.raises(limits.DailyLimitReached):
        await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,)))
    assert len(portal.requests) == sent


async def test_the_last_request_of_the_day_parks_what_follows(hook_ctx: Any, portal: Portal,
                                                              hub: Any) -> None:
    hub.app.state.sandbox.limits.daily = 4
    await hs.find_user(hook_ctx, "ann@acme.example")  # the owners list
    await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,)))  # property GET and POST, the call
    sent = len(portal.requests)
    hook_ctx.delivery = Delivery(marker="cb1-other")
    with pytest.raises(limits.DailyLimitReached):
        await hs.log_call(hook_ctx, call(id="other"), LogTarget(contacts=(DANA,)))
    assert len(portal.requests) == sent


async def test_a_ten_secondly_429_waits_for_the_window(hook_ctx: Any, hub: Any) -> None:
    hub.app.state.sandbox.limits.burst = 0
    with pytest.raises(RateLimited) as info:
        await hs.find_user(hook_ctx, "ann@acme.example")
    assert not isinstance(info.value, limits.DailyLimitReached)
    assert info.value.retry_after == limits.BURST_WINDOW_SECONDS


def test_the_portals_midnight_follows_its_time_zone() -> None:
    now = datetime(2026, 3, 8, 4, 30, tzinfo=UTC)  # 23:30 on the 7th in New York
    assert limits.next_midnight(now, "America/New_York") == datetime(2026, 3, 8, 5, tzinfo=UTC)
    assert limits.next_midnight(now, "Australia/Sydney") == datetime(2026, 3, 8, 13, tzinfo=UTC)


async def test_the_time_zone_comes_from_the_account_when_not_set(hub: Any, clock: Any,
                                                                 portal: Portal) -> None:
    portal.time_zone = "Europe/London"
    ctx = make_ctx(hub, clock, options=hs.HubSpotSettings())
    api = await hs.api_for(ctx)
    assert await hs.portal_time_zone(ctx, api) == "Europe/London"
    assert await hs.portal_time_zone(ctx, api) == "Europe/London"
    assert len(api_requests(portal, "GET", "/account-info/v3/details")) == 1


def test_the_buckets_follow_the_plan() -> None:
    burst, search = limits.buckets("professional")
    assert (burst.requests, burst.per_seconds, search.requests, search.per_seconds,
            search.purpose) == (190, 10.0, 5, 1.0, "search")
    assert limits.buckets("starter", increases=1)[0].requests == 250
    assert limits.buckets(oauth=True)[0].requests == 110


async def test_an_oauth_connection_refreshes_its_token_through_hubspots_endpoint(
        hub: Any, portal: Portal) -> None:
    sandbox = hub.app.state.sandbox
    options = hs.HubSpotSettings(auth="oauth", api_base_url="https://api.hubapi.com")
    connection = hs.connection(options)
    assert connection.oauth2 is not None
    assert connection.oauth2.token_url == "https://api.hubapi.com/oauth/v1/token"
    stale = sandbox.issue(lifetime=1)
    stale["expires_at"] = 0  # expired
    tokens = MemoryTokenStore({("acme", "hubspot"): stale})
    http = build_client(
        tenant="acme", app="hubspot", plugin="hubspot", plugin_version="0",
        connection=connection, credentials=Credentials(
            client_id=sandbox.oauth.client_id, client_secret=sandbox.oauth.client_secret),
        buckets=(), limiters=LimiterRegistry(),
        tokens=tokens, retry=RetryPolicy(enabled=False),
        transport=httpx2.ASGITransport(app=hub))
    try:
        assert (await http.get("/crm/v3/owners")).status_code == 200
    finally:
        await http.aclose()
    assert tokens.saves == [("acme", "hubspot")]


async def test_a_fax_whose_upload_hubspot_refuses_is_a_note_saying_so(hook_ctx: Any, portal: Portal,
                                                                      hub: Any) -> None:
    fax = parse_event({"kind": "fax", "id": "f2", "tenant": "acme", "direction": "inbound",
                       "external": {"number": "+12125550142"}, "sent_at": "2026-03-02T17:00:00Z",
                       "page_count": 1, "document": {"content": "JVBERi0xLjQK",
                                                     "content_type": "application/pdf"}},
                      region="US")
    hub.fail_on[("POST", "/files/v3/files")] = [403]
    result = await hs.log_fax(hook_ctx, fax, LogTarget(contacts=(DANA,)))
    note = only(portal.objects["notes"])
    assert [r.kind for r in result.records] == ["note"]
    assert getattr(result, "missing", ("document",)) == ("document",)
    assert "The fax document is missing: HubSpot refused the upload." in note["properties"][
        "hs_note_body"]
    assert "hs_attachment_ids" not in note["properties"]


async def test_searches_are_paced_by_the_search_bucket_before_hubspot_refuses(
        portal: Portal, hub: Any, clock: Any) -> None:
    import asyncio

    # The host's own wait for room (the limiter sleeps on the test's clock).
    ctx = make_ctx(hub, clock, retry=RetryPolicy(attempts=1, inline_max_wait=5.0))
    start = clock.monotonic()
    await asyncio.gather(*(hs.find_contact(ctx, party(f"+1212555{i:04d}"))
                           for i in range(150, 157)))
    assert len(api_requests(portal, "POST", "/crm/v3/objects/contacts/search")) == 7
    assert hub.count(status=429) == 0  # the sandbox allows 5 a second, like HubSpot
    assert clock.monotonic() - start >= 1.0


async def test_the_plugin_keeps_nothing_per_call_once_it_is_logged(hook_ctx: Any) -> None:
    await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,)))
    assert not [k for k in hook_ctx.store.data if k.startswith("write:")]


async def test_a_transcript_longer_than_hubspot_holds_is_cut_and_says_so(hook_ctx: Any,
                                                                        portal: Portal) -> None:
    long = call(transcript="word " * 40_000)  # 200,000 characters, as events allow
    await hs.log_call(hook_ctx, long, LogTarget(contacts=(DANA,)))
    body = only(portal.objects["calls"])["properties"]["hs_call_body"]
    assert len(body) <= 65_000 and body.endswith("(truncated: the rest did not fit in HubSpot)")
    assert "Notes:<br>Asked about the renewal." in body


class OlderDelivery:
    """A delivery as a 1.x host gives it: records, attempt and remember only."""

    def __init__(self) -> None:
        self.attempt, self.first_attempt_at, self.kept = 1, datetime(2026, 1, 5, 15, tzinfo=UTC), []

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(self.kept)

    async def remember(self, record: Record) -> None:
        self.kept.append(record)


async def test_on_a_host_without_the_write_protocol_the_plugin_keeps_it_itself(
        hook_ctx: Any, portal: Portal, hub: Any) -> None:
    hook_ctx.delivery = OlderDelivery()
    await hs.marker_property(hook_ctx, await hs.api_for(hook_ctx), "calls")
    hub.fail_on[("POST", "/crm/v3/objects/calls")] = ["drop_after"]
    with pytest.raises(Exception):  # noqa: B017 - the host's uncertain write
        await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,)))
    hook_ctx.delivery.attempt = 2
    result = await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,)))
    record = only(portal.objects["calls"])
    assert record["properties"]["callbridge_event"] == call().marker  # the event's own
    assert result.records[0].id == record["id"] and hook_ctx.delivery.records == result.records
