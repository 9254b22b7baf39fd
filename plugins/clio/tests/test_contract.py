"""The Clio plugin's contract tests: the kit's standard suite, every declared capability
mandatory, plus Clio's own rows.

Replays the cassettes beside this file. They were recorded against the Clio sandbox
(callbridge_clio.sandbox) presented as https://app.clio.com; to re-record one, delete it
and run ``CALLBRIDGE_RECORD_MODE=once python -m pytest plugins/clio/tests/test_contract.py``.
A maintainer with a Clio developer account can record against Clio itself with
``CALLBRIDGE_RECORD_AGAINST=app`` and ``CALLBRIDGE_RECORD_CREDENTIAL=<access token>``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import callbridge_clio
from callbridge.errors import PermanentError
from callbridge.models import AppUser, ChangedContacts, Contact, LogTarget, Matter
from callbridge.testing import Row, Scenarios, contract_suite
from callbridge_clio.sandbox import SandboxState, create_app

KIT_TOKEN = "kit-placeholder-token"


def seeded_sandbox() -> Any:
    """The firm the scenarios expect; ids are given out in this order from 1001."""
    st = SandboxState()
    st.tokens[KIT_TOKEN] = time.time() + 10**9
    ann = st.add_user("Ann Lee", "ann@firm.example", authorised=True)  # 1001
    st.add_user("Bob Stone", "bob@firm.example")  # 1002
    dana = st.add_contact("Dana", "Whitfield", ["(212) 555-0142"], ["dana@example.com"],
                          updated_at="2026-03-01T09:00:00Z")  # 1003 (+2 nested ids)
    lee = st.add_contact("Lee", "Park", ["212.555.0150"], updated_at="2026-03-01T09:00:00Z")  # 1006
    sam = st.add_contact("Sam", "Ortiz", ["+1 646 555 0111"], updated_at="2026-03-01T09:00:00Z")  # 1008
    one = st.add_matter(dana, "Lease dispute")  # 1010
    st.add_matter(dana, "Old lease", status="Closed")  # 1011
    st.add_matter(sam, "Estate")  # 1012
    st.add_matter(sam, "Trust", status="Pending")  # 1013
    assert (ann, dana, lee, sam, one) == (1001, 1003, 1006, 1008, 1010), (ann, dana, lee, sam, one)
    return create_app(st, faults=False)


SCENARIOS = Scenarios(
    known_number="+12125550142", unknown_number="+12125550199", known_email="dana@example.com",
    new_contact_name="Rae Quinn",
    contact_one_matter="1003", contact_no_matters="1006", contact_several_matters="1008",
    log_target=LogTarget(contacts=(Contact(id="1003", name="Dana Whitfield"),),
                         matter=Matter(id="1010"), user=AppUser(id="1001", name="Ann Lee")),
)

SETTINGS: dict[str, Any] = {"region": "US"}

ROWS = [
    Row("user-by-email", "find_user", {"email": "BOB@firm.example", "extension": None},
        expect=lambda user: isinstance(user, AppUser) and user.id == "1002"),
    Row("user-unknown", "find_user", {"email": "nobody@firm.example", "extension": None}, expect=None),
    Row("default-user-is-who-authorised", "pick_default_user", {},
        expect=lambda user: user.id == "1001" and user.name == "Ann Lee"),
    Row("changed-contacts-since", "contacts_changed_since",
        {"since": datetime(2026, 1, 1, tzinfo=UTC), "cursor": None},
        expect=lambda page: isinstance(page, ChangedContacts) and len(page.contacts) == 3
        and page.cursor is None and page.high_water is not None),
    Row("one-word-name-is-a-last-name", "create_contact",
        {"party": SCENARIOS.party("+12125550188"), "name": "Cher"},
        expect=lambda contact: contact.name == "Cher" and contact.phones == ("+12125550188",)),
    Row("bad-request-is-permanent", "find_matters", {"contact": Contact(id="1003")},
        expect=PermanentError, fault=400),
]

TestClio = contract_suite(
    plugin=callbridge_clio, settings=SETTINGS, cassettes=Path(__file__).parent / "cassettes",
    scenarios=SCENARIOS, extra_rows=ROWS, sandbox=seeded_sandbox)
