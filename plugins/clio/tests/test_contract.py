"""The Clio plugin's contract tests: the kit's standard suite, every declared capability
mandatory, plus Clio's own rows.

Replays the cassettes beside this file, offline. They were recorded against the
callbridge Clio sandbox (``callbridge_clio.sandbox``), served in process through
``httpx2.ASGITransport`` at https://app.clio.com/api/v4 so they read like Clio's API.
To re-record one case, delete its file and run
``CALLBRIDGE_RECORD_MODE=once python -m pytest plugins/clio/tests/test_contract.py -k <case>``;
then review the diff (``test_openapi.py`` checks the new exchanges against Clio's
document). A maintainer with a Clio developer account can record against Clio itself
with ``CALLBRIDGE_RECORD_AGAINST=app`` and ``CALLBRIDGE_RECORD_CREDENTIAL=<access token>``
after seeding the account as :func:`seeded_sandbox` does.

Declared capabilities the kit has no standard test for are covered by rows:
``contacts_changed`` and ``users`` (their hooks), logging without a contact (the
declaration's ``without_contact``), ``multi_contact_link`` and ``file_attachments``
(a log hook with such a target).
``custom_fields`` obliges no hook and has nothing to call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import callbridge_clio
import yaml
from callbridge.capabilities import Capability
from callbridge.clock import SYSTEM, Clock
from callbridge.errors import PermanentError
from callbridge.models import (
    AppRequest,
    AppSubscription,
    AppUser,
    ChangedContacts,
    ClosedMatter,
    ClosedMatterPage,
    Contact,
    LogResult,
    LogTarget,
    Matter,
    MatterChanged,
)
from callbridge.testing import AppEventSamples, Row, Scenarios, contract_suite
from callbridge_clio.sandbox import SandboxState, create_app

CASSETTES = Path(__file__).parent / "cassettes"
#: The credential the kit's client sends (callbridge.testing.suite.KIT_TOKEN).
KIT_TOKEN = "kit-placeholder-token"
#: Contacts changed since this instant: Dana, Lee and Sam (Kim changed before it).
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
#: The closed-matter sync began here: the four matters closed in February come back.
CLOSED_SINCE = datetime(2026, 1, 15, tzinfo=UTC)


def seeded_sandbox(clock: Clock = SYSTEM) -> Any:
    """The firm the scenarios expect; the sandbox gives out ids in this order from 1001.

    Numbers are stored as people type them, not in E.164. Pages hold two records,
    so a list of three pages and ``contacts_changed_since`` hands back a cursor. The kit's
    clock drives it when recording (a webhook's expiry is checked against it).
    """
    st = SandboxState(host="https://app.clio.com", max_page_size=2, rate_limit=None, clock=clock)
    ann = st.add_user("Ann Lee", "ann@firm.example", authorised=True)  # 1001
    st.add_user("Bob Stone", "bob@firm.example")  # 1002
    st.issue_token(ann, access_token=KIT_TOKEN, lifetime=10**9)
    changed = "2026-03-01T09:00:00Z"
    dana = st.add_contact("Dana", "Whitfield", ["(212) 555-0142"], ["dana@example.com"],
                          updated_at=changed)  # 1003; her phone 1004, e-mail 1005
    lee = st.add_contact("Lee", "Park", ["212.555.0150"], updated_at=changed)  # 1006
    sam = st.add_contact("Sam", "Ortiz", ["+1 646 555 0111"], updated_at=changed)  # 1008
    kim = st.add_contact("Kim", "Ortiz", ["646-555-0112"], updated_at="2025-06-01T09:00:00Z")
    lease = st.add_matter(dana, "Lease dispute")  # 1012: Dana's one open matter
    st.add_matter(dana, "Old lease", status="Closed", close_date="2025-12-01",
                  updated_at="2025-12-01T09:00:00Z")
    st.add_matter(sam, "Estate")  # open, Sam the client
    st.add_matter(kim, "Trust", status="Pending", related={sam: "Trustee"})  # Sam related
    st.add_matter(kim, "Old will", status="Closed", related={lee: "Witness"},  # closed: not Lee's
                  updated_at="2025-12-01T09:00:00Z")
    assert (dana, lee, sam, kim, lease) == (1003, 1006, 1008, 1010, 1012)
    seed_closed_matters(st)
    return create_app(st, faults=False)


def seed_closed_matters(st: SandboxState) -> None:
    """The closed-matter sync's fields and four matters closed in February 2026.

    Clients changed before :data:`SINCE` (the changed-contacts rows stay as they were).
    Noor has BroadlyOptOut unchecked, Max checked, Ivy none set; Noor's lease renewal is
    opted in (SendBroadlyThankYou checked), Max's deposit claim too, Ivy's estate plan
    unchecked, Noor's traffic ticket unset.
    """
    opt_out = st.add_custom_field("BroadlyOptOut", "Contact")
    opt_in = st.add_custom_field("SendBroadlyThankYou", "Matter")
    note = st.add_custom_field("ReviewNote", "Matter", "text_line")
    old = "2025-06-01T09:00:00Z"
    noor = st.add_contact("Noor", "Haddad", ["(212) 555-0161"], ["noor@example.com"],
                          updated_at=old, custom_fields={opt_out: "false"})
    hale = st.add_contact("Max", "Hale", ["(212) 555-0162"], ["max@example.com"],
                          updated_at=old, custom_fields={opt_out: "true"})
    ivy = st.add_contact("Ivy", "Chen", ["(212) 555-0163"], updated_at=old)
    for client, what, day, fields in (
            (noor, "Lease renewal", "02", {opt_in: "true"}),
            (hale, "Deposit claim", "03", {opt_in: "true", note: "Happy"}),
            (ivy, "Estate plan", "04", {opt_in: "false"}),
            (noor, "Traffic ticket", "05", {})):
        st.add_matter(client, what, status="Closed", close_date=f"2026-02-{day}",
                      custom_fields=fields, updated_at=f"2026-02-{day}T10:00:00Z")


DANA = Contact(id="1003", name="Dana Whitfield")
SAM = Contact(id="1008", name="Sam Ortiz")
ANN = AppUser(id="1001", name="Ann Lee")
STAFF = {"email": "ann@firm.example", "extension": "101", "number": "+12125550100"}
PDF = "JVBERi0xLjQKJSBDbGlvIGNvbnRyYWN0IHNhbXBsZSBmYXgK"  # a tiny (fictional) PDF

CALL: dict[str, Any] = {
    "kind": "call", "id": "clio-call-1", "tenant": "kit", "direction": "inbound",
    "external": {"number": "+12125550142"}, "internal": STAFF,
    "started_at": "2026-03-02T15:00:00+00:00", "answered_at": "2026-03-02T15:00:06+00:00",
    "ended_at": "2026-03-02T15:04:12+00:00", "outcome": "completed",
    "notes": "Asked when the lease hearing is.",
}
SMS: dict[str, Any] = {
    "kind": "sms", "id": "clio-sms-1", "tenant": "kit", "direction": "outbound",
    "external": {"number": "+12125550142"}, "internal": STAFF,
    "sent_at": "2026-03-02T16:30:00+00:00", "body": "Your hearing moved to Friday at 10am.",
}
FAX: dict[str, Any] = {
    "kind": "fax", "id": "clio-fax-1", "tenant": "kit", "direction": "inbound",
    "external": {"number": "+12125550142"}, "internal": STAFF,
    "sent_at": "2026-03-02T17:00:00+00:00", "page_count": 2,
    "document": {"content": PDF, "content_type": "application/pdf",
                 "filename": "Lease addendum.pdf"},
}

def matter_closed(subscription: AppSubscription, matter_id: str, now: datetime) -> AppRequest:
    """Clio's webhook delivery for a matter closed, signed as Clio signs (X-Hook-Signature:
    the hex HMAC-SHA256 of the body keyed with the webhook's shared secret)."""
    raw = json.dumps({"data": {"id": matter_id, "status": "Closed", "close_date": "2026-01-05",
                               "updated_at": "2026-01-05T15:00:00Z"},
                      "meta": {"event": "matter_closed", "webhook_id": 4041}}).encode()
    signature = hmac.new(str(subscription.secret).encode(), raw, hashlib.sha256).hexdigest()
    return AppRequest(headers={"content-type": "application/json", "x-hook-signature": signature},
                      body=raw, url="https://callbridge.example.com/v1/apps/kit/clio/events",
                      received_at=now)


SCENARIOS = Scenarios(
    known_number="+12125550142", unknown_number="+12125550199", known_email="dana@example.com",
    new_contact_name="Rae Quinn", known_user_email="bob@firm.example",
    contact_one_matter="1003", contact_no_matters="1006", contact_several_matters="1008",
    call=CALL, sms=SMS, fax=FAX,
    log_target=LogTarget(contacts=(DANA,), matter=Matter(id="1012"), user=ANN),
    closed_since=CLOSED_SINCE,
    app_events=AppEventSamples(matter_changed=lambda sub, matter_id, now: matter_closed(
        sub, matter_id, now)),
)

SETTINGS: dict[str, Any] = {"region": "US"}

#: The cursor the first page of changed contacts hands back: the page token of the
#: sandbox's ``next`` URL, as recorded in row-changed-contacts-first-page-has-a-cursor.yaml
#: (re-recorded against Clio itself, copy it from there: the page token is Clio's own).
SECOND_PAGE = "MTAwNg=="
#: The position after the first page of closed matters (two a page in the sandbox): as
#: recorded in row-closed-fields-present.yaml.
SECOND_CLOSED_PAGE = ('{"start":"2026-01-15","since":"2026-01-15T00:00:00Z","cursor":"MTAzMQ==",'
                      '"high":"2026-02-03T10:00:00Z"}')


def _kinds(result: LogResult) -> list[tuple[str, str]]:
    return [(r.kind, r.step) for r in result.records]


def _first_page(page: ChangedContacts) -> bool:
    return ([c.id for c in page.contacts] == ["1003", "1006"] and page.cursor == SECOND_PAGE
            and page.high_water == datetime(2026, 3, 1, 9, tzinfo=UTC))


ROWS = [
    Row("user-by-email", "find_user", {"email": "BOB@firm.example", "extension": None},
        expect=lambda user: isinstance(user, AppUser) and user.id == "1002"),
    Row("user-unknown", "find_user", {"email": "nobody@firm.example", "extension": None},
        expect=None),
    Row("default-user-is-who-authorised", "pick_default_user", {},
        expect=lambda user: user.id == "1001" and user.name == "Ann Lee"),
    Row("changed-contacts-first-page-has-a-cursor", "contacts_changed_since",
        {"since": SINCE, "cursor": None}, expect=_first_page),
    Row("changed-contacts-from-a-cursor", "contacts_changed_since",
        {"since": SINCE, "cursor": SECOND_PAGE},
        expect=lambda page: [c.id for c in page.contacts] == ["1008"] and page.cursor is None),
    Row("one-word-name-is-a-last-name", "create_contact",
        {"party": "+12125550188", "name": "Cher"},
        expect=lambda contact: contact.name == "Cher" and contact.phones == ("+12125550188",)),
    # The plugin never sends a Person without names (a one-word or empty name becomes the
    # last name), so Clio's 422 for one stands in as the fault here.
    Row("contact-refused-by-clio-is-permanent", "create_contact",
        {"party": "+12125550177", "name": "Rae Quinn"}, expect=PermanentError, fault=422),
    Row("bad-request-is-permanent", "find_matters", {"contact": "1003"},
        expect=PermanentError, fault=400),
    Row("completed-call-has-a-time-entry", "log_call",
        {"event": CALL, "target": SCENARIOS.log_target},
        expect=lambda r: _kinds(r) == [("communication", "communication"),
                                       ("time_entry", "time_entry")]),
    Row("missed-call-has-no-time-entry", "log_call",
        {"event": {**CALL, "id": "clio-call-2", "answered_at": None, "outcome": "missed"},
         "target": SCENARIOS.log_target},
        expect=lambda r: _kinds(r) == [("communication", "communication")]),
    Row("call-without-contact", "log_call",
        {"event": {**CALL, "id": "clio-call-3"}, "target": LogTarget(user=ANN)},
        expect=lambda r: [k for k, _ in _kinds(r)] == ["communication", "time_entry"]),
    Row("sms-linked-to-two-contacts", "log_sms",
        {"event": SMS, "target": LogTarget(contacts=(DANA, SAM), user=ANN)},
        expect=lambda r: [k for k, _ in _kinds(r)] == ["communication"],
        capability=Capability.MULTI_CONTACT_LINK),
    # No matter: the document goes in the contact's fax folder.
    Row("fax-without-matter-uploaded-to-the-contact", "log_fax",
        {"event": FAX, "target": LogTarget(contacts=(DANA,), user=ANN)},
        expect=lambda r: _kinds(r) == [("communication", "communication"),
                                       ("document", "document_uploaded")],
        capability=Capability.FILE_ATTACHMENTS),
]

def _closed(contact: list[str], matter: list[str]) -> dict[str, Any]:
    return {"position": None, "since": CLOSED_SINCE, "contact_fields": contact,
            "matter_fields": matter}


BOTH = _closed(["BroadlyOptOut"], ["SendBroadlyThankYou"])


def _defined(page: ClosedMatterPage) -> dict[tuple[str, str], str | None]:
    return {(f.on, f.name): f.field_type for f in page.fields}


def _by_name(page: ClosedMatterPage) -> dict[str, ClosedMatter]:
    return {m.description or "": m for m in page.matters}


def _values(page: ClosedMatterPage, opt_out: dict[str, object], opt_in: dict[str, object]) -> bool:
    got = _by_name(page)
    return all(got[what].client.custom_fields == {"BroadlyOptOut": value}
               for what, value in opt_out.items()) and all(
        got[what].custom_fields == {"SendBroadlyThankYou": value}
        for what, value in opt_in.items())


#: The closed-matter source (SPEC §5): the fields' definitions by exact name, and the
#: values of checkboxes checked, unchecked and never set.
CLOSED_ROWS = [
    Row("closed-fields-present", "closed_matters_since", BOTH,
        expect=lambda page: _defined(page) == {("contact", "BroadlyOptOut"): "checkbox",
                                               ("matter", "SendBroadlyThankYou"): "checkbox"}
        and len(page.matters) == 2 and page.more),
    Row("closed-field-missing", "closed_matters_since",
        _closed([], ["SendThankYou"]),
        expect=lambda page: _defined(page) == {("matter", "SendThankYou"): None}
        and all(m.custom_fields == {} for m in page.matters)),
    Row("closed-field-not-a-checkbox", "closed_matters_since", _closed([], ["ReviewNote"]),
        expect=lambda page: _defined(page) == {("matter", "ReviewNote"): "text_line"}),
    Row("closed-field-named-in-another-case", "closed_matters_since",
        _closed(["broadlyoptout"], ["sendbroadlythankyou"]),
        expect=lambda page: set(_defined(page).values()) == {None}
        and all(not m.client.custom_fields for m in page.matters)),
    Row("closed-fields-checked", "closed_matters_since", BOTH,
        expect=lambda page: _values(page, {"Deposit claim": True},
                                    {"Lease renewal": True, "Deposit claim": True})),
    Row("closed-fields-unchecked", "closed_matters_since", BOTH,
        expect=lambda page: _values(page, {"Lease renewal": False}, {})),
    Row("closed-fields-unset", "closed_matters_since",
        {**BOTH, "position": SECOND_CLOSED_PAGE},
        expect=lambda page: _values(page, {"Estate plan": None}, {"Traffic ticket": None,
                                                                  "Estate plan": False})
        and not page.more),
    Row("closed-client-details", "closed_matters_since", BOTH,
        expect=lambda page: _by_name(page)["Lease renewal"].client.model_dump(
            include={"name", "email", "phones"}) == {
                "name": "Noor Haddad", "email": "noor@example.com",
                "phones": ("+12125550161",)}
        and str(_by_name(page)["Lease renewal"].closed_on) == "2026-02-02"),
]


#: Clio's webhooks as app events: the handshake means nothing; a delivery names its matter.
HOOK_SUB = AppSubscription(id="4041", secret="kit-app-events-secret")
WEBHOOK_ROWS = [
    Row("webhook-handshake-means-nothing", "parse_app_event",
        {"request": AppRequest(headers={"x-hook-secret": "kit-app-events-secret"}, body=b"",
                               url="https://callbridge.example.com/v1/apps/kit/clio/events",
                               received_at=SINCE),
         "subscription": HOOK_SUB}, expect=[]),
    Row("webhook-matter-closed", "parse_app_event",
        {"request": matter_closed(HOOK_SUB, "1030", SINCE), "subscription": HOOK_SUB},
        expect=[MatterChanged(matter_id="1030", closed=True,
                              changed_at=datetime(2026, 1, 5, 15, tzinfo=UTC))]),
]


TestClio = contract_suite(
    plugin=callbridge_clio, settings=SETTINGS, cassettes=CASSETTES, scenarios=SCENARIOS,
    extra_rows=ROWS + CLOSED_ROWS + WEBHOOK_ROWS, sandbox=seeded_sandbox)


# --- what the recorded exchanges show -------------------------------------------------
# The replay proves the hooks ask for nothing unrecorded; these read what they sent when
# recorded. test_hooks.py checks the same behaviour live against the sandbox.


def _exchanges(case: str) -> list[tuple[str, str, Any]]:
    """(method, URL, JSON request body) of each exchange in a case's cassette."""
    cassette = yaml.safe_load((CASSETTES / f"{case}.yaml").read_text())
    out = []
    for item in cassette["interactions"]:
        request = item["request"]
        text = request.get("body") or ""
        out.append((request["method"], request["uri"],
                    yaml.safe_load(text) if text.startswith("{") else None))
    return out


def test_late_details_patch_the_logged_communication() -> None:
    """update_log rewrites the body of the communication log_call created: no second log."""
    exchanges = _exchanges("update_log")
    posts = [url for method, url, _ in exchanges if method == "POST" and "/communications" in url]
    patches = [(url, body) for method, url, body in exchanges if method == "PATCH"]
    assert len(posts) == 1
    assert len(patches) == 1
    url, body = patches[0]
    assert "/api/v4/communications/" in url
    text = body["data"]["body"]
    assert "Recording: https://recordings.example.com/kit-call-1.mp3" in text
    assert "Transcript:\nKit sample transcript." in text
    assert "Notes:\nAsked when the lease hearing is." in text


def test_a_message_to_two_contacts_names_both_as_receivers() -> None:
    exchanges = _exchanges("row-sms-linked-to-two-contacts")
    (body,) = [b for m, url, b in exchanges if m == "POST" and "/communications.json" in url]
    assert body["data"]["receivers"] == [{"id": 1003, "type": "Contact"},
                                         {"id": 1008, "type": "Contact"}]
    assert body["data"]["senders"] == [{"id": 1001, "type": "User"}]
