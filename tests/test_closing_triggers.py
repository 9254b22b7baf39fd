"""The firm's triggers: which fields must exist, and which closed matters are sent."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from callbridge.closing.triggers import decide, field_problems
from callbridge.models import ClientContact, ClosedMatter, CustomField
from callbridge.settings import ClosedMatterSettings, TenantSettings
from pydantic import ValidationError


def firm(opt_out: bool = False, opt_in: bool = False, **more: Any) -> ClosedMatterSettings:
    return ClosedMatterSettings.model_validate({
        "source": "clio", "destination": "review",
        "opt_out": {"enabled": opt_out, "field": "BroadlyOptOut"},
        "opt_in": {"enabled": opt_in, "field": "SendBroadlyThankYou"}, **more})


def matter(opted_out: object = None, opted_in: object = None) -> ClosedMatter:
    contact_fields = {} if opted_out == "absent" else {"BroadlyOptOut": opted_out}
    matter_fields = {} if opted_in == "absent" else {"SendBroadlyThankYou": opted_in}
    return ClosedMatter(id="7", closed_on=date(2026, 3, 2), custom_fields=matter_fields,
                        client=ClientContact(id="3", custom_fields=contact_fields))


BOTH = [CustomField(name="BroadlyOptOut", on="contact", field_type="checkbox"),
        CustomField(name="SendBroadlyThankYou", on="matter", field_type="checkbox")]


@pytest.mark.parametrize(("opted_out", "opted_in", "sent"), [
    (False, True, True), (None, True, True), ("absent", True, True),
    (True, True, False), (False, False, False), (False, None, False), (True, False, False),
])
def test_with_both_triggers_a_client_is_sent_when_opted_in_and_not_opted_out(
        opted_out: object, opted_in: object, sent: bool) -> None:
    assert decide(firm(opt_out=True, opt_in=True), matter(opted_out, opted_in)).send is sent


def test_opt_out_alone_sends_unless_checked_and_says_why() -> None:
    settings = firm(opt_out=True)
    assert decide(settings, matter(None, None)).send
    skipped = decide(settings, matter(True, None))
    assert (skipped.send, skipped.reason) == (False, "opted_out")
    assert "BroadlyOptOut" in skipped.why


def test_opt_in_alone_sends_only_when_checked() -> None:
    settings = firm(opt_in=True)
    assert decide(settings, matter(True, True)).send
    skipped = decide(settings, matter(None, None))
    assert (skipped.send, skipped.reason) == (False, "not_opted_in")


def test_a_text_true_is_not_a_checked_box() -> None:
    assert not decide(firm(opt_in=True), matter(None, "true")).send


def test_with_no_trigger_nothing_is_sent_unless_the_firm_sends_every_closed_matter() -> None:
    assert decide(firm(), matter()).reason == "no_trigger"
    assert decide(firm(send_every_closed_matter=True), matter(True, False)).send


def test_an_enabled_triggers_field_must_exist_by_exact_name_and_be_a_checkbox() -> None:
    settings = firm(opt_out=True, opt_in=True)
    assert field_problems(settings, BOTH, "clio") == []
    wrong_case = [CustomField(name="broadlyoptout", on="contact", field_type="checkbox"),
                  CustomField(name="BroadlyOptOut", on="contact", field_type=None),
                  CustomField(name="SendBroadlyThankYou", on="matter", field_type="text_line")]
    problems = field_problems(settings, wrong_case, "clio")
    assert problems == [
        "the contact custom field 'BroadlyOptOut' does not exist in clio (names are matched "
        "exactly, case included)",
        "the matter custom field 'SendBroadlyThankYou' in clio is a text_line field, not a "
        "checkbox"]
    assert field_problems(firm(), [], "clio") == []  # no trigger, no field needed


def test_a_field_on_the_wrong_kind_of_record_does_not_count() -> None:
    on_matter = [CustomField(name="BroadlyOptOut", on="matter", field_type="checkbox")]
    assert field_problems(firm(opt_out=True), on_matter, "clio")


def test_the_sync_names_apps_of_the_tenant() -> None:
    apps = {"clio": {}, "review": {"plugin": "webhook_out"}}
    TenantSettings.model_validate({"apps": apps, "closed_matters": {
        "source": "clio", "destination": "review"}})
    with pytest.raises(ValidationError, match=r"closed_matters\.destination names no app"):
        TenantSettings.model_validate({"apps": apps, "closed_matters": {
            "source": "clio", "destination": "broadly"}})
    with pytest.raises(ValidationError, match="needs a time zone"):
        ClosedMatterSettings.model_validate({"source": "a", "destination": "b",
                                             "since": "2026-03-01T00:00:00"})
