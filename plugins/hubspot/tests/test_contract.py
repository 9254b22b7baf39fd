"""The HubSpot plugin's contract tests: the kit's standard suite, every declared capability
mandatory, plus HubSpot's own rows.

Replays the cassettes beside this file, offline. They were recorded against the
callbridge HubSpot sandbox (``callbridge_hubspot.sandbox``), served in process
through ``httpx2.ASGITransport`` at https://api.hubapi.com so they read like
HubSpot's API. To re-record one case, delete its file and run
``CALLBRIDGE_RECORD_MODE=once python -m pytest plugins/hubspot/tests/test_contract.py -k <case>``;
``test_conformance.py`` then reads every exchange through HubSpot's own client models.
A maintainer with a HubSpot developer test account can record against HubSpot itself
with ``CALLBRIDGE_RECORD_AGAINST=app`` and ``CALLBRIDGE_RECORD_CREDENTIAL=<private app
token>`` after seeding the account as :func:`seeded_sandbox` does.

Capabilities with no standard test are covered by rows: ``contacts_changed`` and
``users`` (their hooks), logging without a contact, ``multi_contact_link`` and
``file_attachments`` (a log hook with such a target).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import callbridge_hubspot
from callbridge.capabilities import Capability
from callbridge.models import AppUser, ChangedContacts, Contact, LogResult, LogTarget
from callbridge.testing import Row, Scenarios, contract_suite
from callbridge_hubspot.portal import Portal
from callbridge_hubspot.sandbox import create_app

CASSETTES = Path(__file__).parent / "cassettes"
KIT_TOKEN = "kit-placeholder-token"  # what the kit's client sends (callbridge.testing.suite)


def seeded_portal() -> Portal:
    """The portal the scenarios expect; ids are given out in this order from 101."""
    portal = Portal(tokens={KIT_TOKEN})
    portal.add_owner("Ann", "Lee", "ann@firm.example")  # 101
    portal.add_owner("Bob", "Stone", "bob@firm.example")  # 102
    portal.add_contact("Dana", "Whitfield", "(212) 555-0142", email="dana@example.com",
                       modified="2026-03-01T09:00:00.000Z")  # 103
    portal.add_contact("Sam", "Ortiz", "+1 646 555 0111", "646.555.0112",
                       modified="2026-03-01T10:00:00.000Z")  # 104
    portal.add_contact("Kim", "Ortiz", mobile="212.555.0150",
                       modified="2025-06-01T09:00:00.000Z")  # 105
    return portal


def seeded_sandbox() -> Any:
    return create_app(seeded_portal(), faults=False)


DANA = Contact(id="103", name="Dana Whitfield")
SAM = Contact(id="104", name="Sam Ortiz")
ANN = AppUser(id="101", name="Ann Lee")
STAFF = {"email": "ann@firm.example", "extension": "101", "number": "+12125550100"}
PDF = "JVBERi0xLjQKJSBIdWJTcG90IGNvbnRyYWN0IHNhbXBsZSBmYXgK"

CALL: dict[str, Any] = {
    "kind": "call", "id": "hs-call-1", "tenant": "kit", "direction": "inbound",
    "external": {"number": "+12125550142"}, "internal": STAFF,
    "started_at": "2026-03-02T15:00:00+00:00", "answered_at": "2026-03-02T15:00:06+00:00",
    "ended_at": "2026-03-02T15:04:12+00:00", "outcome": "completed",
    "notes": "Asked about the renewal.",
}
SMS: dict[str, Any] = {
    "kind": "sms", "id": "hs-sms-1", "tenant": "kit", "direction": "outbound",
    "external": {"number": "+12125550142"}, "internal": STAFF,
    "sent_at": "2026-03-02T16:30:00+00:00", "body": "Your renewal is ready to sign.",
}
FAX: dict[str, Any] = {
    "kind": "fax", "id": "hs-fax-1", "tenant": "kit", "direction": "inbound",
    "external": {"number": "+12125550142"}, "internal": STAFF,
    "sent_at": "2026-03-02T17:00:00+00:00", "page_count": 2,
    "document": {"content": PDF, "content_type": "application/pdf", "filename": "Renewal.pdf"},
}

SCENARIOS = Scenarios(
    known_number="+12125550142", unknown_number="+12125550199", known_email="dana@example.com",
    new_contact_name="Rae Quinn", call=CALL, sms=SMS, fax=FAX, known_user_email="bob@firm.example",
    log_target=LogTarget(contacts=(DANA,), user=ANN),
)

SETTINGS: dict[str, Any] = {"portal_time_zone": "America/New_York",
                            "default_owner_email": "ann@firm.example",
                            # The seeded sandbox's search sees a write at once (no delay set), so
                            # a retry looks for its record without waiting: no test sleeps on a
                            # host whose context has no clock to jump.
                            "search_settle_seconds": 0}


def _kinds(result: LogResult) -> list[str]:
    return [r.kind for r in result.records]


def _changed(page: ChangedContacts) -> bool:
    return ([c.id for c in page.contacts] == ["103", "104"] and page.cursor is None
            and page.high_water == datetime(2026, 3, 1, 10, tzinfo=UTC))


ROWS = [
    Row("owner-by-email", "find_user", {"email": "BOB@firm.example", "extension": None},
        expect=lambda user: isinstance(user, AppUser) and user.id == "102"),
    Row("owner-unknown", "find_user", {"email": "nobody@firm.example", "extension": None},
        expect=None),
    Row("default-owner-from-the-settings", "pick_default_user", {},
        expect=lambda user: user.id == "101" and user.name == "Ann Lee"),
    Row("changed-contacts-since", "contacts_changed_since",
        {"since": datetime(2026, 1, 1, tzinfo=UTC), "cursor": None}, expect=_changed),
    Row("mobile-number-found", "find_contact", {"party": "+12125550150"},
        expect=lambda found: [c.id for c in found] == ["105"]),
    Row("missed-call", "log_call",
        {"event": {**CALL, "id": "hs-call-2", "answered_at": None, "outcome": "missed"},
         "target": SCENARIOS.log_target},
        expect=lambda r: _kinds(r) == ["call"]),
    Row("call-without-contact", "log_call",
        {"event": {**CALL, "id": "hs-call-3", "external": {"number": "+12125550199"}},
         "target": LogTarget(user=ANN)},
        expect=lambda r: _kinds(r) == ["call"]),
    Row("sms-to-two-contacts", "log_sms",
        {"event": SMS, "target": LogTarget(contacts=(DANA, SAM), user=ANN)},
        expect=lambda r: _kinds(r) == ["communication"],
        capability=Capability.MULTI_CONTACT_LINK),
    Row("fax-with-its-document", "log_fax",
        {"event": FAX, "target": LogTarget(contacts=(DANA,), user=ANN)},
        expect=lambda r: _kinds(r) == ["note", "file"], capability=Capability.FILE_ATTACHMENTS),
]

TestHubSpot = contract_suite(
    plugin=callbridge_hubspot, settings=SETTINGS, cassettes=CASSETTES, scenarios=SCENARIOS,
    extra_rows=ROWS, sandbox=seeded_sandbox)
