"""The Smokeball plugin's contract tests: the kit's standard suite with every declared
capability mandatory, plus Smokeball's own rows.

Replays the cassettes beside this file, offline. They were recorded against the
Smokeball sandbox (``callbridge_smokeball.sandbox``) served in process through
``httpx2.ASGITransport`` at https://api.smokeball.com, so they read like Smokeball's
API. To re-record a case, delete its file and run
``CALLBRIDGE_RECORD_MODE=once python -m pytest plugins/smokeball/tests/test_contract.py -k <case>``,
then check the new exchanges against Smokeball's reference
(``plugins/smokeball/tools/check_openapi.py``).

Rows cover what the kit has no standard case for: ``contacts_changed`` and ``users``
(their hooks), ``activity_codes`` (an existing code, a created one),
``file_attachments`` (the fax upload), a call without a matter (a Task), an SMS
without a matter (a Task), a fax without a matter (skipped), and the retry of an
accepted write (found by its marker, not written twice).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import callbridge_smokeball
import yaml
from callbridge.capabilities import Capability
from callbridge.errors import PermanentError, SkipEvent
from callbridge.models import (
    AppRequest,
    AppSubscription,
    AppUser,
    ChangedContacts,
    Contact,
    LogResult,
    LogTarget,
    Matter,
)
from callbridge.testing import AppEventSamples, Row, Scenarios, contract_suite
from callbridge.testing.clock import FakeClock
from callbridge_smokeball.api import to_ticks
from callbridge_smokeball.sandbox import SandboxState, create_app
from callbridge_smokeball.webhooks import signature

from plugins.smokeball.tests.conftest import START, Delivery

CASSETTES = Path(__file__).parent / "cassettes"
#: The credential the kit's client sends as token and API key (callbridge.testing.suite).
KIT_TOKEN = "kit-placeholder-token"


def _id(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


ANN, BOB, DANA, SAM, LEE, LEASE = _id(1), _id(2), _id(4), _id(5), _id(6), _id(7)


def seeded_sandbox() -> Any:
    """The firm the scenarios expect; ids are given in this order (see :func:`_id`).

    Pages hold two records, so every list the plugin reads to the end is paged.
    """
    # Time stands still while recording (the sandbox's bucket is tested with a moving
    # clock in test_sandbox.py), so the recorded exchanges are the same each time.
    st = SandboxState(api_key=KIT_TOKEN, max_page_size=2, clock=FakeClock(START),
                      rate_limited=False)
    ids = st.seed({
        "staff": {"ann": {"firstName": "Ann", "lastName": "Lee", "email": "ann@firm.example"},
                  "bob": {"firstName": "Bob", "lastName": "Stone", "email": "bob@firm.example"},
                  "cy": {"firstName": "Cy", "lastName": "Adams", "email": "cy@firm.example",
                         "former": True, "enabled": False}},
        "contacts": {
            "dana": {"firstName": "Dana", "lastName": "Whitfield", "phone": ["212", "555-0142"],
                     "email": "dana@example.com"},
            "sam": {"firstName": "Sam", "lastName": "Ortiz", "cell": ["", "+1 646 555 0111"]},
            "lee": {"firstName": "Lee", "lastName": "Park", "phone2": ["212", "555 0150"]}},
        "matters": {
            "lease": {"title": "Lease dispute", "clients": ["dana"]},
            "old": {"title": "Old lease", "clients": ["dana"], "status": "Closed"},
            "estate": {"title": "Estate", "clients": ["sam"]},
            "trust": {"title": "Trust", "clients": ["sam"], "status": "Pending"}},
        "activityCodes": {"prt": {"code": "PRT", "description": "Preparation"},
                          "own": {"code": "cb-call", "description": "The firm's own",
                                  "isBillable": False, "rate": 410.0}},
    })
    st.issue_token(access_token=KIT_TOKEN, lifetime=10**9)
    assert (ids["ann"], ids["bob"], ids["dana"], ids["sam"], ids["lee"], ids["lease"]) == \
        (ANN, BOB, DANA, SAM, LEE, LEASE)
    return create_app(st)


STAFF = {"email": "bob@firm.example", "extension": "102", "number": "+12125550100"}
PDF = "JVBERi0xLjQKJSBTbW9rZWJhbGwgY29udHJhY3Qgc2FtcGxlCg=="  # a tiny fictional PDF
CALL: dict[str, Any] = {
    "kind": "call", "id": "sb-kit-call-1", "tenant": "kit", "direction": "inbound",
    "external": {"number": "+12125550142"}, "internal": STAFF,
    "started_at": "2026-03-02T15:00:00+00:00", "answered_at": "2026-03-02T15:00:06+00:00",
    "ended_at": "2026-03-02T15:04:18+00:00", "outcome": "completed",
    "notes": "Asked when the lease hearing is.",
}
SMS: dict[str, Any] = {
    "kind": "sms", "id": "sb-kit-sms-1", "tenant": "kit", "direction": "outbound",
    "external": {"number": "+12125550142"}, "internal": STAFF,
    "sent_at": "2026-03-02T16:30:00+00:00", "body": "Your hearing moved to Friday.",
}
FAX: dict[str, Any] = {
    "kind": "fax", "id": "sb-kit-fax-1", "tenant": "kit", "direction": "inbound",
    "external": {"number": "+12125550142"}, "internal": STAFF,
    "sent_at": "2026-03-02T17:00:00+00:00", "page_count": 2,
    "document": {"content": PDF, "content_type": "application/pdf",
                 "filename": "Lease addendum.pdf"},
}
DANA_C = Contact(id=DANA, name="Dana Whitfield")
BOB_U = AppUser(id=BOB, name="Bob Stone")
TARGET = LogTarget(contacts=(DANA_C,), matter=Matter(id=LEASE), user=BOB_U)
NO_MATTER = LogTarget(contacts=(DANA_C,), user=BOB_U)

def _notification(kind: str, payload: dict[str, Any]):  # type: ignore[no-untyped-def]
    """A builder of Smokeball's signed notification about the write ``<marker>:fee``. The
    kit's connection has no OAuth client, so the client id signed over is empty there."""
    def build(sub: AppSubscription, marker: str, now: datetime) -> AppRequest:
        ticks, request_id = str(to_ticks(now)), f"{marker}:fee"
        body = {"accountId": "00000000-0000-4000-8000-00000000acc7",
                "subscriptionId": sub.id, "type": kind, "source": "API", "payload": payload,
                "timestamp": int(ticks)}
        return AppRequest(headers={"timestamp": ticks, "requestid": request_id,
                                   "signature": signature(sub.secret or "", ticks, request_id, ""),
                                   "content-type": "application/json"},
                          body=json.dumps(body).encode(), received_at=now,
                          url="https://callbridge.example.com/v1/apps/kit/smokeball/events")
    return build


APP_EVENTS = AppEventSamples(
    write_done=_notification("fee.created", {"id": _id(40), "matterId": LEASE}),
    write_failed=_notification("error", {"message": "Fee could not be saved.",
                                         "resourceName": "fee", "resourceId": _id(40)}),
    kind="fee")

SCENARIOS = Scenarios(
    known_number="+12125550142", unknown_number="+12125550199", known_email="dana@example.com",
    new_contact_name="Rae Quinn", known_user_email="bob@firm.example",
    contact_one_matter=DANA, contact_no_matters=LEE, contact_several_matters=SAM,
    call=CALL, sms=SMS, fax=FAX, log_target=TARGET, app_events=APP_EVENTS,
)
SETTINGS: dict[str, Any] = {"region": "US"}


def kinds(result: LogResult) -> list[tuple[str, str]]:
    return [(r.kind, r.step) for r in result.records]


def _all_changed(page: ChangedContacts) -> bool:
    return [c.id for c in page.contacts] == [DANA, SAM] and page.cursor == "2" \
        and page.high_water is not None


ROWS = [
    Row("user-by-email", "find_user", {"email": "BOB@firm.example", "extension": None},
        expect=lambda user: isinstance(user, AppUser) and user.id == BOB),
    Row("user-former-is-skipped", "find_user", {"email": "cy@firm.example", "extension": None},
        expect=None),
    Row("default-user-first-by-last-name", "pick_default_user", {},
        expect=lambda user: user.id == ANN and user.name == "Ann Lee"),
    Row("changed-contacts-first-page-has-a-cursor", "contacts_changed_since",
        {"since": datetime(2026, 1, 1, tzinfo=UTC), "cursor": None}, expect=_all_changed),
    Row("changed-contacts-from-a-cursor", "contacts_changed_since",
        {"since": datetime(2026, 1, 1, tzinfo=UTC), "cursor": "2"},
        expect=lambda page: [c.id for c in page.contacts] == [LEE] and page.cursor is None),
    Row("activity-code-existing-is-used-as-spelt", "ensure_activity_code", {"label": "CB-CALL"},
        expect="cb-call"),
    Row("activity-code-missing-is-created", "ensure_activity_code", {"label": "CB-FAX"},
        expect="CB-FAX"),
    Row("call-without-matter-is-a-task", "log_call",
        {"event": {**CALL, "id": "sb-kit-call-2"}, "target": NO_MATTER},
        expect=lambda r: kinds(r) == [("task", "task")] and r.status == "accepted"),
    Row("sms-without-matter-is-a-task", "log_sms",
        {"event": {**SMS, "id": "sb-kit-sms-2"}, "target": NO_MATTER},
        expect=lambda r: kinds(r) == [("task", "task")]),
    Row("fax-without-matter-is-skipped", "log_fax",
        {"event": {**FAX, "id": "sb-kit-fax-2"}, "target": NO_MATTER}, expect=SkipEvent),
    Row("fax-is-uploaded-to-the-matter", "log_fax",
        {"event": {**FAX, "id": "sb-kit-fax-3"}, "target": TARGET},
        expect=lambda r: kinds(r) == [("document", "document"), ("document", "uploaded")],
        capability=Capability.FILE_ATTACHMENTS),
    Row("bad-request-is-permanent", "find_matters", {"contact": DANA},
        expect=PermanentError, fault=400),
]

TestSmokeball = contract_suite(
    plugin=callbridge_smokeball, settings=SETTINGS, cassettes=CASSETTES, scenarios=SCENARIOS,
    extra_rows=ROWS, sandbox=seeded_sandbox)


# --- what the recorded exchanges show ------------------------------------------------------


def exchanges(case: str) -> list[dict[str, Any]]:
    cassette = yaml.safe_load((CASSETTES / f"{case}.yaml").read_text())
    return [item["request"] for item in cassette["interactions"]]


def test_every_write_carries_a_request_id_of_the_marker_and_step() -> None:
    for case in ("log_call", "log_sms", "log_fax", "create_contact"):
        writes = [r for r in exchanges(case) if r["method"] in ("POST", "PUT", "PATCH")
                  and "_storage" not in r["uri"]]
        assert writes, case
        for request in writes:
            headers = {k.lower(): v for k, v in request["headers"].items()}
            value = headers["requestid"][0] if isinstance(headers["requestid"], list) \
                else headers["requestid"]
            assert re.match(r"^(cb\d+-[0-9a-f]+|callbridge):[a-z_]+$", value), case


def test_the_upload_reaches_storage_with_no_credential_and_an_empty_content_type() -> None:
    (put,) = [r for r in exchanges("log_fax") if "_storage" in r["uri"]]
    headers = {k.lower(): v for k, v in put["headers"].items()}
    assert "authorization" not in headers and "x-api-key" not in headers
    assert headers.get("content-type") in ([""], "", None)


# --- retries and confirmation, recorded through the kit's own machinery --------------------
# The kit's standard cases run a first attempt; these run the same hook again as the host
# retries a delivery whose kept records were lost (attempt 2, nothing kept): the record is
# found by its marker, never written twice. Their cassettes are checked like the others.

KIT = TestSmokeball.kit


def _twice(hook: str, event: dict[str, Any], target: LogTarget) -> tuple[LogResult, LogResult]:
    from callbridge.events import parse_event

    parsed = parse_event(event, region="US")

    async def body(h: Any, ctx: Any) -> tuple[LogResult, LogResult]:
        first = await getattr(h, hook)(ctx.with_delivery(Delivery()), event=parsed, target=target)
        again = await getattr(h, hook)(ctx.with_delivery(Delivery(attempt=2)), event=parsed,
                                       target=target)
        return first, again

    result: tuple[LogResult, LogResult] = KIT.run(f"retry-{hook}-{event['id']}", body)
    return result


def test_a_retried_fee_is_found_by_its_marker() -> None:
    first, again = _twice("log_call", {**CALL, "id": "sb-kit-retry-1"}, TARGET)
    assert again.records == first.records and kinds(first) == [("fee", "fee")]


def test_a_retried_task_is_found_by_its_marker() -> None:
    first, again = _twice("log_call", {**CALL, "id": "sb-kit-retry-2"}, NO_MATTER)
    assert again.records == first.records and kinds(first) == [("task", "task")]


def test_a_retried_memo_is_found_by_its_marker() -> None:
    first, again = _twice("log_sms", {**SMS, "id": "sb-kit-retry-3"}, TARGET)
    assert again.records == first.records and kinds(first) == [("memo", "memo")]


def test_a_retried_fax_file_is_found_and_not_uploaded_again() -> None:
    first, again = _twice("log_fax", {**FAX, "id": "sb-kit-retry-4"}, TARGET)
    assert again.records == first.records
    puts = [r for r in exchanges("retry-log_fax-sb-kit-retry-4") if "_storage" in r["uri"]]
    assert len(puts) == 1


def test_confirmation_reads_every_kind_of_accepted_record() -> None:
    from callbridge.events import parse_event

    async def body(h: Any, ctx: Any) -> dict[str, bool | None]:
        records = []
        for hook, event, target in (("log_call", CALL, TARGET), ("log_call", CALL, NO_MATTER),
                                    ("log_sms", SMS, TARGET), ("log_fax", FAX, TARGET)):
            parsed = parse_event({**event, "id": f"sb-kit-confirm-{len(records)}"}, region="US")
            result = await getattr(h, hook)(ctx.with_delivery(Delivery()), event=parsed,
                                            target=target)
            records.append(result.records[0])
        confirmed: dict[str, bool | None] = await h.confirm_accepted(
            ctx, records=records, since=START)
        return confirmed

    confirmed = KIT.run("confirm_accepted", body)
    assert len(confirmed) == 4 and all(confirmed.values())


def test_late_details_rewrite_a_tasks_note_with_its_other_fields_kept() -> None:
    from callbridge.events import parse_event

    first = parse_event({**CALL, "id": "sb-kit-late-task"}, region="US")
    late = parse_event({**CALL, "id": "sb-kit-late-task", "transcript": "Kit transcript."},
                       region="US")

    async def body(h: Any, ctx: Any) -> LogResult:
        logged: LogResult = await h.log_call(ctx, event=first, target=NO_MATTER)
        updated: LogResult = await h.update_log(ctx, event=late, records=list(logged.records))
        return updated

    KIT.run("update_log-task", body)
    put = next(r for r in exchanges("update_log-task") if r["method"] == "PUT")
    sent = yaml.safe_load(put["body"])
    assert "Transcript:\nKit transcript." in sent["note"]
    assert sent["assigneeIds"] == [BOB] and sent["staffId"] == BOB and sent["subject"]


def test_a_file_created_but_not_uploaded_gets_a_fresh_upload_url_on_retry() -> None:
    from callbridge.events import parse_event
    from callbridge_smokeball.api import FILE_MARKER_KEY, SmokeballApi

    event = parse_event({**FAX, "id": "sb-kit-retry-upload"}, region="US")

    async def body(h: Any, ctx: Any) -> LogResult:
        # What an earlier attempt left: the file record, its upload never made.
        await SmokeballApi(ctx.http).add_file(LEASE, {
            "fileName": "Lease addendum.pdf", "fileAdditionalData": {FILE_MARKER_KEY: event.marker}},
            request_id=f"{event.marker}:document")
        result: LogResult = await h.log_fax(ctx.with_delivery(Delivery(attempt=2)), event=event,
                                            target=TARGET)
        return result

    result = KIT.run("retry-log_fax-upload-url", body)
    assert kinds(result) == [("document", "document"), ("document", "uploaded")]
    requests = [(r["method"], r["uri"].split("?")[0].rsplit("/", 1)[-1])
                for r in exchanges("retry-log_fax-upload-url")]
    assert ("GET", "upload") in requests and len([m for m, _ in requests if m == "POST"]) == 1
