"""SPEC §2 and §3 (Smokeball) end to end: the engine, a real SQLite ledger, the plugin
loaded by its entry point, and the sandbox over real HTTP on loopback (the API on
127.0.0.1, the upload's storage on localhost: another origin)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from plugins.smokeball.tests.conftest import Served, deliver
from plugins.smokeball.tests.samples import call, fax, missed, sms


def only(served: Served, kind: str) -> dict[str, Any]:
    rows = served.state.rows(kind)
    assert len(rows) == 1, f"expected one {kind}, found {len(rows)}"
    return rows[0]


async def test_a_call_with_one_matter_is_an_accepted_fee(engine: Any, served: Served) -> None:
    view = await deliver(engine(), call())
    fee = only(served, "fees")
    assert view.status == "accepted"
    assert [(r.kind, r.id) for r in view.records] == [("fee", f"{served.ids['lease']}/{fee['id']}")]
    assert fee["staffId"] == served.ids["bob"] and fee["duration"] == 6
    assert fee["activityCode"] == "CB-CALL" and fee["isBillable"] is False
    code = only(served, "activitycodes")
    assert code["code"] == "CB-CALL"


async def test_fees_follow_the_default_billable_setting(engine: Any, served: Served) -> None:
    await deliver(engine("default_billable = true"), call())
    assert only(served, "fees")["isBillable"] is True


async def test_a_missed_call_with_one_matter_is_a_fee_of_zero_minutes(engine: Any,
                                                                     served: Served) -> None:
    await deliver(engine(), missed())
    fee = only(served, "fees")
    assert fee["duration"] == 0 and fee["durationWorked"] == 0


async def test_a_call_with_two_matters_is_a_task_for_the_matched_staff_member(
        engine: Any, served: Served) -> None:
    view = await deliver(engine(), call("+16465550111"))
    task = only(served, "tasks")
    assert view.status == "accepted" and served.state.rows("fees") == []
    assert task["assignees"] == [{"id": served.ids["bob"]}] and task["matter"] is None


async def test_a_call_with_no_matter_and_no_known_staff_goes_to_the_default_user(
        engine: Any, served: Served) -> None:
    await deliver(engine(), call("+16465550120", internal={"extension": "199"}))
    task = only(served, "tasks")
    assert task["assignees"] == [{"id": served.ids["ann"]}]  # Lee before Stone; Adams is former


async def test_an_unknown_caller_is_created_with_the_marker_and_gets_a_task(
        engine: Any, served: Served) -> None:
    event = missed("+12125550177")
    view = await deliver(engine('contact_creation = ["missed"]'), event)
    created = [c for c in served.state.rows("contacts")
               if ((c.get("person") or {}).get("phone") or {}).get("number") == "+12125550177"]
    assert len(created) == 1 and view.status == "accepted"
    # The marker goes in externalSystemId wherever the host hands it to create_contact.
    given = created[0].get("externalSystemId")
    assert given is None or re.match(r"^cb\d+-[0-9a-f]+$", given)
    task = only(served, "tasks")
    assert task["subject"].startswith("Missed call from") and task["isCompleted"] is False


async def test_an_sms_with_one_matter_is_a_memo_and_with_two_a_task(engine: Any,
                                                                   served: Served) -> None:
    built = engine()
    await deliver(built, sms())
    await deliver(built, sms("+16465550111", id="sb-sms-2"))
    assert only(served, "memos")["matterId"] == served.ids["lease"]
    assert only(served, "tasks")["subject"].startswith("SMS to Sam Ortiz")


async def test_a_fax_with_one_matter_is_filed_and_uploaded(engine: Any, served: Served) -> None:
    view = await deliver(engine(), fax())
    stored = only(served, "files")
    assert view.status == "accepted"
    assert [(r.kind, r.step) for r in view.records] == [("document", "document"),
                                                        ("document", "uploaded")]
    assert stored["isUploaded"] is True and served.state.uploads[stored["id"]].startswith(b"%PDF")


@pytest.mark.parametrize(("number", "reason"), [
    ("+16465550111", "no_matter"),   # Sam: two open matters
    ("+16465550120", "no_matter"),   # Acme: none
    ("+12125550199", "no_contact"),  # nobody, and faxes create no contact by default
])
async def test_a_fax_without_a_contact_or_one_matter_is_skipped(
        engine: Any, served: Served, number: str, reason: str) -> None:
    view = await deliver(engine(), fax(number))
    assert view.status == "skipped" and view.reason == reason
    assert served.state.rows("files") == []


async def test_late_details_edit_the_logged_fee(engine: Any, served: Served) -> None:
    built = engine()
    await deliver(built, call())
    view = await deliver(built, call(recording_url="https://recordings.example.com/sb-1.mp3"))
    fee = only(served, "fees")
    assert "Recording: https://recordings.example.com/sb-1.mp3" in fee["description"]
    assert view.status in ("accepted", "logged")
    posts = [r for r in served.state.requests if r["method"] == "POST" and "/fees" in r["path"]]
    assert len(posts) == 1


async def test_client_credentials_fetch_their_own_token_and_put_the_account_first(
        engine: Any, served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    options = (f'grant = "client_credentials"\n    account_id = "{served.state.account_id}"\n'
               '    acting_user_id = "user-0a11ce"')
    built = engine(options=options, token=False)
    view = await deliver(built, call())
    assert view.status == "accepted" and len(served.state.rows("fees")) == 1
    api = [r for r in served.state.requests]
    assert api and all(r["account"] and r["user_id"] == "user-0a11ce" for r in api)
    # The client authenticates with HTTP Basic, as Smokeball's token endpoint asks.
    assert served.state.token_requests == [{"grant": "client_credentials", "basic": True}]
    stored = built.ledger.token_get("acme", "smokeball")
    assert stored is not None and "refresh_token" not in stored


async def test_an_expiring_token_is_refreshed_before_use_with_basic_client_auth(
        engine: Any, served: Served) -> None:
    built = engine(token=False)
    built.ledger.token_set("acme", "smokeball", {**served.state.issue_token(lifetime=30),
                                                 "expires_at": time.time() + 30})
    view = await deliver(built, call())
    assert view.status == "accepted"
    assert served.state.token_requests == [{"grant": "refresh_token", "basic": True}]


async def test_an_expired_refresh_token_asks_for_reauthorisation_not_a_retry_loop(
        engine: Any, served: Served) -> None:
    built = engine(token=False)
    token = served.state.issue_token(lifetime=0)
    served.state.refresh_tokens.clear()  # the 30 days are over
    built.ledger.token_set("acme", "smokeball", {**token, "expires_at": time.time() - 1})
    view = await deliver(built, call())
    # Parked until `callbridge auth` connects it again: never retried on its own.
    assert (view.status, view.reason) == ("parked", "reauthorise")
    assert view.attempts == 1 and served.state.rows("fees") == []
    assert [r["grant"] for r in served.state.token_requests] == ["refresh_token"]
